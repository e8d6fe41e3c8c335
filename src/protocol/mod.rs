//! The MCP wire: JSON-RPC messages, protocol revisions and error codes.

mod message;
pub mod modern;

pub use message::{id_value, parse_body, Message, MessageError, MessageKind, WireFault, WireFaultBy};

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
    /// 2025 revisions: the resource does not exist (2026-07-28 uses -32602 instead).
    pub const LEGACY_RESOURCE_NOT_FOUND: i32 = -32002;
    /// 2025-11-25: URL-mode elicitation required (retired in 2026-07-28).
    pub const URL_ELICITATION_REQUIRED: i32 = -32042;
    /// 2026-07-28: an HTTP header is missing or disagrees with the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// 2026-07-28: serving the request needs a capability the client did not declare.
    pub const MISSING_REQUIRED_CAPABILITY: i32 = -32021;
    /// 2026-07-28: the requested protocol version is not served.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
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
    /// 2026-07-28: stateless; no handshake, no session, the version and client
    /// capabilities in every request's `_meta`.
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every revision the gateway speaks, oldest first.
    pub const ALL: [ProtocolVersion; 4] = [
        ProtocolVersion::V2025_03_26,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_11_25,
        ProtocolVersion::V2026_07_28,
    ];

    /// The newest revision.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2026_07_28;

    /// The newest revision with the `initialize` handshake.
    pub const LATEST_HANDSHAKE: ProtocolVersion = ProtocolVersion::V2025_11_25;

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
            ProtocolVersion::V2026_07_28 => "2026-07-28",
        }
    }

    /// Stateless ("modern", 2026-07-28 on): every request stands alone, and its HTTP
    /// routing headers must agree with its body (so stages may trust them).
    pub fn is_stateless(self) -> bool {
        self >= ProtocolVersion::V2026_07_28
    }

    /// JSON-RPC batches are allowed only in 2025-03-26.
    pub fn allows_batches(self) -> bool {
        self == ProtocolVersion::V2025_03_26
    }

    /// SSE priming events and `retry` are sent only to 2025-11-25 (2026-07-28 dropped
    /// resumability).
    pub fn sse_priming(self) -> bool {
        self == ProtocolVersion::V2025_11_25
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

/// `value` as JSON text with every object's members sorted by name, so that two
/// equal values give equal text whatever order their members came in (keys and
/// digests of client input). Objects keep their members in order otherwise (a
/// dependency turns on serde_json's `preserve_order`).
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut members: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.cmp(b.0));
                serde_json::Value::Object(members.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
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
        assert!(!ProtocolVersion::V2026_07_28.sse_priming());
        assert!(ProtocolVersion::V2026_07_28.is_stateless());
        assert!(!ProtocolVersion::V2025_11_25.is_stateless());
    }
}
