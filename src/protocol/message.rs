//! One JSON-RPC 2.0 message, kept as the bytes it arrived as.
//!
//! The envelope (`id`, `method`, and where `params`, `result` and `error` sit) is
//! parsed once, eagerly; the members themselves are parsed only when a stage asks.
//! A message nobody changed is forwarded as the very bytes that came in.
//!
//! ```
//! use shadowcat::protocol::Message;
//! let m = Message::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#.to_vec()).unwrap();
//! assert_eq!(m.method(), Some("tools/call"));
//! assert_eq!(m.id_key(), Some("7"));
//! assert_eq!(m.tool_name(), Some("echo"));
//! ```

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Why some bytes are not one JSON-RPC 2.0 message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The bytes are not JSON at all (JSON-RPC code -32700).
    #[error("parse error: {0}")]
    Parse(String),
    /// The bytes are JSON but not a JSON-RPC 2.0 message (JSON-RPC code -32600).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// What kind of JSON-RPC message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `result` or `error`.
    Response,
}

/// One JSON-RPC 2.0 message.
#[derive(Clone)]
pub struct Message {
    raw: Bytes,
    kind: MessageKind,
    /// The id's JSON text exactly as sent (`7`, `"abc"`); `None` for notifications
    /// and for responses whose id is `null`.
    id: Option<Range<usize>>,
    method: Option<Box<str>>,
    params: Option<Range<usize>>,
    is_error: bool,
    /// For an error the gateway made itself: the HTTP status it calls for, used when
    /// the message ends up as a whole HTTP answer.
    status: Option<u16>,
    /// `params.name` of a `tools/call` or `prompts/get`, parsed once when first asked.
    tool: std::sync::OnceLock<Option<Box<str>>>,
    /// The id's text as a shared string, made when first asked (every stage a call
    /// passes keeps it: one allocation per message, not one per stage).
    id_text: std::sync::OnceLock<Option<std::sync::Arc<str>>>,
    /// How the client's wire is to carry it, when an `intercept` fault says other
    /// than as it is (the message itself stays whole for the gateway's own use).
    wire: Option<std::sync::Arc<WireFaultBy>>,
}

/// A fault on the client's wire: what a front does with a message instead of writing
/// it as it is (`intercept`'s `fault: malformed | reset | dribble`).
#[derive(Debug)]
pub enum WireFault {
    /// Written as these bytes (not JSON) in its place.
    Malformed(Bytes),
    /// The connection (an HTTP response, its stream, or forward mode's stdout) is cut
    /// off where the message would have gone.
    Reset,
    /// Written in pieces of `chunk` bytes, `every` apart.
    Dribble {
        /// Bytes per piece (at least 1).
        chunk: usize,
        /// The pause before each piece after the first.
        every: std::time::Duration,
    },
}

impl WireFault {
    /// Its name in a rule file (what logs say: never the bytes).
    pub fn name(&self) -> &'static str {
        match self {
            WireFault::Malformed(_) => "malformed",
            WireFault::Reset => "reset",
            WireFault::Dribble { .. } => "dribble",
        }
    }
}

/// A [`WireFault`] and the rule that asked for it (for the front's log line).
#[derive(Debug)]
pub struct WireFaultBy {
    /// What to do.
    pub fault: WireFault,
    /// The rule's id.
    pub rule: Box<str>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    jsonrpc: Option<&'a str>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// Tells "not JSON" (-32700) from "JSON, but not a JSON-RPC message" (-32600).
fn classify(raw: &[u8], e: serde_json::Error) -> MessageError {
    if e.is_syntax() || e.is_eof() || serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err() {
        MessageError::Parse(e.to_string())
    } else {
        MessageError::Invalid(e.to_string())
    }
}

fn span_of(outer: &[u8], inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

impl Message {
    /// Parses one message (not a batch) from `bytes`, keeping them.
    pub fn parse(bytes: impl Into<Bytes>) -> Result<Self, MessageError> {
        let raw: Bytes = bytes.into();
        let env: Envelope<'_> = match serde_json::from_slice(&raw) {
            Ok(env) => env,
            Err(e) => return Err(classify(&raw, e)),
        };
        if env.jsonrpc != Some("2.0") {
            return Err(MessageError::Invalid("\"jsonrpc\" must be \"2.0\"".into()));
        }
        let id = match env.id {
            Some(id) => {
                let text = id.get();
                let first = text.as_bytes().first().copied().unwrap_or(b'n');
                if !(first == b'"' || first == b'-' || first.is_ascii_digit()) {
                    return Err(MessageError::Invalid("\"id\" must be a string or a number".into()));
                }
                Some(span_of(&raw, text))
            }
            None => None,
        };
        let kind = match (&env.method, env.result.is_some() || env.error.is_some()) {
            (Some(_), false) if id.is_some() => MessageKind::Request,
            (Some(_), false) => MessageKind::Notification,
            (None, true) => MessageKind::Response,
            (Some(_), true) => {
                return Err(MessageError::Invalid(
                    "a message cannot have both \"method\" and \"result\"/\"error\"".into(),
                ))
            }
            (None, false) => {
                return Err(MessageError::Invalid("a message needs \"method\", \"result\" or \"error\"".into()))
            }
        };
        if env.result.is_some() && env.error.is_some() {
            return Err(MessageError::Invalid("a response cannot have both \"result\" and \"error\"".into()));
        }
        if let Some(p) = env.params {
            let first = p.get().as_bytes().first().copied();
            if !matches!(first, Some(b'{') | Some(b'[')) {
                return Err(MessageError::Invalid("\"params\" must be an object or an array".into()));
            }
        }
        Ok(Message {
            kind,
            id,
            method: env.method.map(|m| m.into_owned().into_boxed_str()),
            params: env.params.map(|p| span_of(&raw, p.get())),
            is_error: env.error.is_some(),
            status: None,
            tool: std::sync::OnceLock::new(),
            id_text: std::sync::OnceLock::new(),
            wire: None,
            raw,
        })
    }

    /// Builds a message from a JSON value (for messages the gateway makes itself).
    pub fn from_value(value: &Value) -> Self {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        // A value we built ourselves is always a valid envelope; fall back to an
        // internal error message rather than panicking if a caller passes junk.
        Message::parse(bytes).unwrap_or_else(|_| {
            Message::error_response(None, super::codes::INTERNAL_ERROR, "gateway built an invalid message", None)
        })
    }

    /// A JSON-RPC result response with the given id text (`None` gives `"id":null`).
    pub fn result_response(id: Option<&str>, result: &Value) -> Self {
        let id = id.map_or(Value::Null, id_value);
        Message::from_value(&serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result }))
    }

    /// A JSON-RPC error response with the given id text (`None` gives `"id":null`).
    pub fn error_response(id: Option<&str>, code: i32, message: &str, data: Option<Value>) -> Self {
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(data) = data {
            error["data"] = data;
        }
        let id_text = id.unwrap_or("null");
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
            id_text,
            serde_json::to_string(&error).unwrap_or_default()
        );
        let raw = Bytes::from(body);
        let id_range = id.map(|text| {
            let start = r#"{"jsonrpc":"2.0","id":"#.len();
            start..start + text.len()
        });
        Message {
            raw,
            kind: MessageKind::Response,
            id: id_range,
            method: None,
            params: None,
            is_error: true,
            status: None,
            tool: std::sync::OnceLock::new(),
            id_text: std::sync::OnceLock::new(),
            wire: None,
        }
    }

    /// A JSON-RPC notification built by the gateway.
    pub fn notification(method: &str, params: Value) -> Self {
        Message::from_value(&serde_json::json!({ "jsonrpc": "2.0", "method": method, "params": params }))
    }

    /// This error (made by the gateway) calls for HTTP status `status` when it is a
    /// whole HTTP answer.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// This message, to be carried on the client's wire as `fault` says.
    pub fn with_wire_fault(mut self, fault: std::sync::Arc<WireFaultBy>) -> Self {
        self.wire = Some(fault);
        self
    }

    /// The fault its client's wire is to carry it with, if any.
    pub fn wire_fault(&self) -> Option<&WireFaultBy> {
        self.wire.as_deref()
    }

    /// The HTTP status the gateway gave this error, if it made it.
    pub fn status_hint(&self) -> Option<u16> {
        self.status
    }

    /// The bytes of the message, exactly as received (or built).
    pub fn bytes(&self) -> &Bytes {
        &self.raw
    }

    /// Request, notification or response.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        self.kind == MessageKind::Request
    }

    /// True for responses that carry `error`.
    pub fn is_error(&self) -> bool {
        self.is_error
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The id's JSON text exactly as sent (`7` or `"abc"`): a key that tells ids apart.
    pub fn id_key(&self) -> Option<&str> {
        let range = self.id.clone()?;
        std::str::from_utf8(&self.raw[range]).ok()
    }

    /// [`id_key`](Message::id_key) as a shared string (made on the first call).
    pub fn id_shared(&self) -> Option<std::sync::Arc<str>> {
        self.id_text.get_or_init(|| self.id_key().map(std::sync::Arc::from)).clone()
    }

    /// The raw JSON text of `params`, if any.
    pub fn params_raw(&self) -> Option<&str> {
        let range = self.params.clone()?;
        std::str::from_utf8(&self.raw[range]).ok()
    }

    /// `params` parsed into `T`.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.params_raw()?).ok()
    }

    /// The whole message as a JSON value (parses the bytes again).
    pub fn to_value(&self) -> Option<Value> {
        serde_json::from_slice(&self.raw).ok()
    }

    /// `params.name` of a `tools/call` or `prompts/get` (parsed on the first call).
    pub fn tool_name(&self) -> Option<&str> {
        #[derive(Deserialize)]
        struct Named {
            name: Option<Box<str>>,
        }
        if !matches!(self.method(), Some("tools/call") | Some("prompts/get")) {
            return None;
        }
        self.tool.get_or_init(|| self.params::<Named>().and_then(|n| n.name)).as_deref()
    }

    /// `params._meta.progressToken` as JSON text, if the request asks for progress.
    pub fn progress_token(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, rename = "progressToken")]
            progress_token: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow, rename = "_meta")]
            meta: Option<Meta<'a>>,
        }
        let raw = self.params_raw()?;
        let params: Params<'_> = serde_json::from_str(raw).ok()?;
        params.meta?.progress_token.map(|t| t.get().to_owned())
    }

    /// For `notifications/progress` and `notifications/cancelled`: the JSON text of
    /// `params.progressToken` or `params.requestId`.
    pub fn param_key(&self, field: &str) -> Option<String> {
        let raw = self.params_raw()?;
        let map: std::collections::HashMap<&str, &RawValue> = serde_json::from_str(raw).ok()?;
        map.get(field).map(|v| v.get().to_owned())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("id", &self.id_key())
            .field("method", &self.method())
            .field("len", &self.raw.len())
            .finish()
    }
}

/// A request id's JSON text (as [`Message::id_key`] gives it) back as a JSON value;
/// `null` if it is not JSON.
pub fn id_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Splits a request body into messages: one object, or (2025-03-26 only) an array.
/// Returns the messages and whether the body was a batch.
pub fn parse_body(body: &Bytes) -> Result<(Vec<Message>, bool), MessageError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'[') {
        return Ok((vec![Message::parse(body.clone())?], false));
    }
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| classify(body, e))?;
    if items.is_empty() {
        return Err(MessageError::Invalid("an empty batch is not a valid request".into()));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let span = span_of(body, item.get());
        out.push(Message::parse(body.slice(span))?);
    }
    Ok((out, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_and_parses_envelope() {
        let text = r#"{"jsonrpc":"2.0", "id":"a-1","method":"tools/call","params":{"name":"add","_meta":{"progressToken":5}}}"#;
        let m = Message::parse(text.as_bytes().to_vec()).expect("valid");
        assert_eq!(m.bytes().as_ref(), text.as_bytes());
        assert_eq!(m.kind(), MessageKind::Request);
        assert_eq!(m.id_key(), Some(r#""a-1""#));
        assert_eq!(m.tool_name(), Some("add"));
        assert_eq!(m.progress_token().as_deref(), Some("5"));
    }

    #[test]
    fn classifies_kinds() {
        let n = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()).expect("ok");
        assert_eq!(n.kind(), MessageKind::Notification);
        let r = Message::parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec()).expect("ok");
        assert_eq!(r.kind(), MessageKind::Response);
        assert!(!r.is_error());
        let e =
            Message::parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#.to_vec()).expect("ok");
        assert!(e.is_error());
        assert_eq!(e.id_key(), None);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Message::parse(b"{nope".to_vec()), Err(MessageError::Parse(_))));
        assert!(matches!(Message::parse(b"[1,".to_vec()), Err(MessageError::Parse(_))));
        assert!(matches!(Message::parse(br#"{"id":1,"method":"x"}"#.to_vec()), Err(MessageError::Invalid(_))));
        assert!(matches!(Message::parse(br#"{"jsonrpc":"1.0","method":"x"}"#.to_vec()), Err(MessageError::Invalid(_))));
        assert!(matches!(Message::parse(br#"{"jsonrpc":"2.0"}"#.to_vec()), Err(MessageError::Invalid(_))));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#.to_vec()),
            Err(MessageError::Invalid(_))
        ));
        assert!(matches!(Message::parse(br#"42"#.to_vec()), Err(MessageError::Invalid(_))));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","method":"x","params":3}"#.to_vec()),
            Err(MessageError::Invalid(_))
        ));
    }

    #[test]
    fn error_response_is_well_formed() {
        let e = Message::error_response(Some("\"x\""), -32600, "bad \"thing\"", None);
        let v = e.to_value().expect("json");
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(e.id_key(), Some("\"x\""));
    }

    #[test]
    fn batches_split_into_slices() {
        let body = Bytes::from_static(br#" [{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#);
        let (msgs, batch) = parse_body(&body).expect("ok");
        assert!(batch);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].bytes().as_ref(), br#"{"jsonrpc":"2.0","method":"b"}"#);
        assert!(parse_body(&Bytes::from_static(b"[]")).is_err());
    }
}
