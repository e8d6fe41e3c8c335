//! The MCP wire: JSON-RPC messages, protocol revisions and error codes.

mod message;

pub use message::{parse_body, Message, MessageError, MessageKind};

/// JSON-RPC error codes the gateway answers with.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// The body is JSON but not a valid JSON-RPC 2.0 request, or breaks a transport rule.
    pub const INVALID_REQUEST: i32 = -32600;
    /// The method is unknown.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The params are invalid.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Something failed inside the gateway.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// A transport-level refusal (Origin, Accept, media type, method, conflict, overload).
    pub const TRANSPORT_ERROR: i32 = -32000;
    /// The session is unknown or has ended.
    pub const SESSION_NOT_FOUND: i32 = -32001;
    /// The upstream failed, was unreachable, or did not answer in time.
    pub const UPSTREAM_ERROR: i32 = -32003;
    /// The request was cancelled or timed out.
    pub const REQUEST_TIMEOUT: i32 = -32004;
}

/// A revision of the MCP specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2025-03-26: Streamable HTTP introduced, batches allowed.
    V2025_03_26,
    /// 2025-06-18: batches removed, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: SSE priming events and polling.
    V2025_11_25,
}

impl ProtocolVersion {
    /// Every revision the gateway speaks, oldest first.
    pub const ALL: [ProtocolVersion; 3] =
        [ProtocolVersion::V2025_03_26, ProtocolVersion::V2025_06_18, ProtocolVersion::V2025_11_25];

    /// The newest revision.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

    /// Parses the revision string (`"2025-06-18"`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == text.trim())
    }

    /// The revision string.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
        }
    }

    /// JSON-RPC batches are allowed only in 2025-03-26.
    pub fn allows_batches(self) -> bool {
        self == ProtocolVersion::V2025_03_26
    }

    /// SSE priming events and `retry` are sent only to 2025-11-25 and later.
    pub fn sse_priming(self) -> bool {
        self >= ProtocolVersion::V2025_11_25
    }

    /// The list of supported revisions, for error messages.
    pub fn supported_list() -> String {
        Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_order() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(ProtocolVersion::parse("2024-11-05"), None);
        assert!(ProtocolVersion::V2025_11_25.sse_priming());
        assert!(!ProtocolVersion::V2025_06_18.sse_priming());
        assert!(ProtocolVersion::V2025_03_26.allows_batches());
    }
}
