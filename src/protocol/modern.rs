//! The stateless revision (2026-07-28): the per-request `_meta` envelope, the methods
//! it has and has removed, and the HTTP routing headers (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`) that must agree with the body.
//!
//! ```
//! use shadowcat::protocol::{modern, Message};
//! let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
//!   "io.modelcontextprotocol/protocolVersion":"2026-07-28",
//!   "io.modelcontextprotocol/clientCapabilities":{}}}}"#.to_vec()).unwrap();
//! let envelope = modern::Envelope::of(&m).unwrap();
//! assert_eq!(envelope.version, "2026-07-28");
//! ```

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Message;

/// `_meta` key: the request's protocol version (required).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's capabilities for this request (required).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: the client's name and version (recommended).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the lowest log level the client wants as `notifications/message`.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key on results: the server's name and version.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key on `subscriptions/listen` frames: the listen request's id.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// `Mcp-Method`.
pub const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name`.
pub const NAME_HEADER: &str = "mcp-name";

/// Methods 2026-07-28 removed: a stateless request for one of them is answered 404
/// (-32601) and never relayed.
pub const REMOVED_METHODS: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
];

/// The client request methods of the core 2026-07-28 protocol.
pub const CLIENT_METHODS: &[&str] = &[
    "server/discover",
    "completion/complete",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
];

/// Methods that may answer `resultType: "input_required"` (MRTR).
pub const INPUT_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// Methods whose complete results must carry `ttlMs` and `cacheScope`.
pub const CACHEABLE_METHODS: &[&str] =
    &["server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"];

/// The `params` member `Mcp-Name` mirrors for `method`, if it has one. (The tasks
/// extension's `tasks/*` methods name their task.)
pub fn name_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The per-request envelope of a stateless request.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `io.modelcontextprotocol/protocolVersion`.
    pub version: String,
    /// `io.modelcontextprotocol/clientCapabilities`.
    pub capabilities: Map<String, Value>,
    /// `io.modelcontextprotocol/logLevel`, if the request opts in to log messages.
    pub log_level: Option<String>,
}

/// Why a request's envelope is not usable (answered 400 with -32602).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    /// The missing or malformed keys.
    pub problems: Vec<String>,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid per-request _meta envelope for 2026-07-28: {}", self.problems.join("; "))
    }
}

#[derive(Deserialize)]
struct Params {
    #[serde(rename = "_meta")]
    meta: Option<Value>,
}

impl Envelope {
    /// Reads the envelope of a request: `params._meta` with the protocol version (a
    /// string) and the client capabilities (an object).
    pub fn of(m: &Message) -> Result<Envelope, EnvelopeError> {
        let missing = |what: &str| EnvelopeError { problems: vec![what.to_owned()] };
        let Some(raw) = m.params_raw() else {
            return Err(missing("params is missing (it must carry _meta)"));
        };
        let params: Params =
            serde_json::from_str(raw).map_err(|_| missing("params must be an object carrying _meta"))?;
        let Some(Value::Object(mut meta)) = params.meta else {
            return Err(missing("params._meta is missing or not an object"));
        };
        let mut problems = Vec::new();
        let version = match meta.remove(META_PROTOCOL_VERSION) {
            Some(Value::String(v)) => v,
            Some(_) => {
                problems.push(format!("{META_PROTOCOL_VERSION} must be a string"));
                String::new()
            }
            None => {
                problems.push(format!("{META_PROTOCOL_VERSION} is missing"));
                String::new()
            }
        };
        let capabilities = match meta.remove(META_CLIENT_CAPABILITIES) {
            Some(Value::Object(c)) => c,
            Some(_) => {
                problems.push(format!("{META_CLIENT_CAPABILITIES} must be an object"));
                Map::new()
            }
            None => {
                problems.push(format!("{META_CLIENT_CAPABILITIES} is missing"));
                Map::new()
            }
        };
        let log_level = match meta.remove(META_LOG_LEVEL) {
            Some(Value::String(level)) => Some(level),
            _ => None,
        };
        if problems.is_empty() {
            Ok(Envelope { version, capabilities, log_level })
        } else {
            Err(EnvelopeError { problems })
        }
    }

    /// The capabilities as a JSON object value.
    pub fn capabilities_value(&self) -> Value {
        Value::Object(self.capabilities.clone())
    }
}

/// The protocol version a message's body declares in `params._meta`, if any: how a
/// stateless request is told from a session-era one when the header says nothing.
pub fn declared_version(m: &Message) -> Option<String> {
    let raw = m.params_raw()?;
    if !raw.contains(META_PROTOCOL_VERSION) {
        return None; // the common session-era case, without parsing
    }
    let params: Params = serde_json::from_str(raw).ok()?;
    match params.meta?.get(META_PROTOCOL_VERSION)? {
        Value::String(v) => Some(v.clone()),
        _ => None,
    }
}

/// Whether a message's body declares a stateless revision: a `_meta` protocol version
/// that is not one of the handshake-era ones (an unknown one counts: it is then refused
/// as unsupported, the stateless way).
pub fn declares_stateless(m: &Message) -> bool {
    declared_version(m)
        .is_some_and(|v| super::ProtocolVersion::parse(&v).is_none_or(super::ProtocolVersion::is_stateless))
}

/// The value `Mcp-Name` must carry for this request (`params.name`, `params.uri` or
/// `params.taskId` as text), or `None` when the method names nothing or the body has
/// no such member.
pub fn name_value(m: &Message) -> Option<String> {
    let member = name_member(m.method()?)?;
    let params: Map<String, Value> = m.params()?;
    match params.get(member)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Decodes a routing header's value as the 2026-07-28 transport says: optional
/// whitespace around it is not part of it, and `=?base64?…?=` carries the UTF-8 bytes
/// of the value in canonical, padded Base64. A value with only one of the markers is
/// literal.
pub fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "the value is not ASCII/UTF-8".to_owned())?;
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err("the value has control characters".into());
    }
    let Some(encoded) = text.strip_prefix("=?base64?").and_then(|t| t.strip_suffix("?=")) else {
        return Ok(text.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the =?base64?…?= value is not canonical Base64 ({e})"))?;
    String::from_utf8(bytes).map_err(|_| "the =?base64?…?= value is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(text.as_bytes().to_vec()).expect("message")
    }

    #[test]
    fn envelope_requires_version_and_capabilities() {
        let ok = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/logLevel":"info"}}}"#,
        );
        let e = Envelope::of(&ok).expect("envelope");
        assert_eq!(e.version, "2026-07-28");
        assert!(e.capabilities.contains_key("sampling"));
        assert_eq!(e.log_level.as_deref(), Some("info"));
        assert_eq!(declared_version(&ok).as_deref(), Some("2026-07-28"));

        assert!(Envelope::of(&msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)).is_err());
        assert!(Envelope::of(&msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)).is_err());
        let no_caps = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        let err = Envelope::of(&no_caps).expect_err("no capabilities");
        assert!(err.problems[0].contains("clientCapabilities"), "{err}");
        let neither = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{}}}"#);
        assert_eq!(Envelope::of(&neither).expect_err("empty").problems.len(), 2);
        assert_eq!(declared_version(&neither), None);
    }

    #[test]
    fn name_values() {
        let call = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
        assert_eq!(name_value(&call).as_deref(), Some("echo"));
        let read = msg(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://x"}}"#);
        assert_eq!(name_value(&read).as_deref(), Some("test://x"));
        let list = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#);
        assert_eq!(name_value(&list), None);
    }

    #[test]
    fn header_values_decode_as_the_transport_says() {
        assert_eq!(decode_header_value(b"  echo\t").as_deref(), Ok("echo"));
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(), Ok("Hello, 世界"));
        assert_eq!(decode_header_value(b"=?base64?IHBhZGRlZCA=?=").as_deref(), Ok(" padded "));
        assert!(decode_header_value(b"=?base64?SGVsbG8?=").is_err(), "missing padding");
        assert!(decode_header_value(b"=?base64?SGVs!!!bG8=?=").is_err(), "bad characters");
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8=").as_deref(), Ok("=?base64?SGVsbG8="), "no suffix: literal");
        assert_eq!(decode_header_value(b"SGVsbG8=?=").as_deref(), Ok("SGVsbG8=?="), "no prefix: literal");
    }
}
