//! Which protocol era an upstream speaks, found once with a `server/discover` probe.
//!
//! The verdict follows the 2026-07-28 rules for detecting a legacy server, which do
//! not hinge on one error code: a `DiscoverResult` naming a stateless version, or a
//! recognised modern error (-32022 whose `supported` names a stateless version), means
//! modern; any other JSON-RPC answer, an HTTP 4xx without one, or (stdio) silence or
//! an exit means legacy. Authentication failures (401/403), 5xx answers, unreadable
//! 2xx bodies and, on HTTP, timeouts and network errors are no verdict: the probe is
//! tried again on the next request.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::protocol::modern::{META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION};
use crate::protocol::{Message, ProtocolVersion};

/// The id of the probe request.
pub const PROBE_ID: &str = "\"shadowcat-discover-probe\"";

/// An upstream's era.
#[derive(Debug, Clone, PartialEq)]
pub enum Era {
    /// It serves 2026-07-28 requests; `versions` is its `supportedVersions` (which may
    /// include handshake-era ones: a dual-era server).
    Modern {
        /// Every version it says it serves.
        versions: Vec<String>,
    },
    /// It speaks only the handshake-era revisions.
    Legacy,
}

impl Era {
    /// Whether the upstream also serves session-era clients directly.
    pub fn serves_legacy(&self) -> bool {
        match self {
            Era::Legacy => true,
            Era::Modern { versions } => {
                versions.iter().any(|v| ProtocolVersion::parse(v).is_some_and(|p| !p.is_stateless()))
            }
        }
    }

    /// Whether stateless requests can be passed through unchanged.
    pub fn is_modern(&self) -> bool {
        matches!(self, Era::Modern { .. })
    }
}

/// The probe: `server/discover` at 2026-07-28 with an empty capability set.
pub fn probe_message() -> Message {
    Message::from_value(&json!({
        "jsonrpc": "2.0",
        "id": "shadowcat-discover-probe",
        "method": "server/discover",
        "params": { "_meta": {
            META_PROTOCOL_VERSION: ProtocolVersion::LATEST.as_str(),
            META_CLIENT_INFO: { "name": "shadowcat", "version": env!("CARGO_PKG_VERSION") },
            META_CLIENT_CAPABILITIES: {},
        }},
    }))
}

/// What a probe's answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The era is known.
    Known(Era),
    /// No verdict (say why); try again later.
    Unknown(String),
}

#[derive(Deserialize)]
struct Answer {
    result: Option<Value>,
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    data: Option<Value>,
}

fn stateless_versions(list: Option<&Value>) -> Option<Vec<String>> {
    let list: Vec<String> = list?.as_array()?.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    list.iter().any(|v| ProtocolVersion::parse(v).is_some_and(ProtocolVersion::is_stateless)).then_some(list)
}

/// Classifies the JSON-RPC answer to the probe.
pub fn classify_message(m: &[u8]) -> Verdict {
    let Ok(answer) = serde_json::from_slice::<Answer>(m) else {
        return Verdict::Known(Era::Legacy);
    };
    if let Some(result) = answer.result {
        return match stateless_versions(result.get("supportedVersions")) {
            Some(versions) => Verdict::Known(Era::Modern { versions }),
            None => Verdict::Known(Era::Legacy),
        };
    }
    if let Some(e) = answer.error {
        if e.code == i64::from(crate::protocol::codes::UNSUPPORTED_PROTOCOL_VERSION) {
            if let Some(versions) = stateless_versions(e.data.as_ref().and_then(|d| d.get("supported"))) {
                return Verdict::Known(Era::Modern { versions });
            }
        }
    }
    Verdict::Known(Era::Legacy)
}

/// Classifies an HTTP answer to the probe: `status`, and the JSON-RPC message that
/// answers it (`None` when the body held none).
pub fn classify_http(status: u16, answer: Option<&[u8]>) -> Verdict {
    match status {
        401 | 403 => Verdict::Unknown(format!("the probe needs authentication (HTTP {status})")),
        500.. => Verdict::Unknown(format!("the probe failed (HTTP {status})")),
        200..=299 => match answer {
            Some(m) => classify_message(m),
            None => Verdict::Unknown("the probe's 2xx answer holds no JSON-RPC response".into()),
        },
        _ => match answer {
            Some(m) => classify_message(m),
            None => Verdict::Known(Era::Legacy),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern(v: &[&str]) -> Verdict {
        Verdict::Known(Era::Modern { versions: v.iter().map(|s| s.to_string()).collect() })
    }

    #[test]
    fn verdicts() {
        let discover =
            br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28","2025-11-25"],"capabilities":{}}}"#;
        assert_eq!(classify_http(200, Some(discover)), modern(&["2026-07-28", "2025-11-25"]));
        let legacy_only = br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"]}}"#;
        assert_eq!(classify_http(200, Some(legacy_only)), Verdict::Known(Era::Legacy));
        let unsupported =
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2026-07-28"]}}}"#;
        assert_eq!(classify_http(400, Some(unsupported)), modern(&["2026-07-28"]));
        let legacy_32022 =
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2025-06-18"]}}}"#;
        assert_eq!(classify_http(400, Some(legacy_32022)), Verdict::Known(Era::Legacy));
        for code in [-32601, -32600, -32000, -32001, -32020, -32021, -32602] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{code},"message":"no"}}}}"#);
            assert_eq!(classify_http(400, Some(body.as_bytes())), Verdict::Known(Era::Legacy), "{code}");
        }
        assert_eq!(classify_http(404, None), Verdict::Known(Era::Legacy));
        assert!(matches!(classify_http(401, None), Verdict::Unknown(_)));
        assert!(matches!(classify_http(503, Some(discover)), Verdict::Unknown(_)));
        assert!(matches!(classify_http(200, None), Verdict::Unknown(_)));
        assert!(Era::Modern { versions: vec!["2026-07-28".into(), "2025-06-18".into()] }.serves_legacy());
        assert!(!Era::Modern { versions: vec!["2026-07-28".into()] }.serves_legacy());
    }
}
