//! The MCP answers of the bench upstream, shared by its HTTP and stdio transports:
//! `initialize`, `ping`, `tools/list` and `tools/call echo`. Notifications and client
//! responses are accepted and ignored. Everything is written straight into the reply
//! bytes: the request's `id` and the echoed text are copied as raw JSON, never decoded
//! and encoded again.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

/// The revision the upstream answers `initialize` with.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// What to send back for one incoming message.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A JSON-RPC response (result or error) to a request.
    Reply(Vec<u8>),
    /// The response to `initialize`: over HTTP, a new session goes with it.
    Initialized(Vec<u8>),
    /// A notification or a client's response: nothing to answer (HTTP 202).
    Accepted,
    /// Not a JSON-RPC message: this error, with a `null` id (HTTP 400).
    Invalid(Vec<u8>),
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<EchoArguments<'a>>,
}

#[derive(Deserialize)]
struct EchoArguments<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

const INITIALIZE_RESULT: &str = concat!(
    r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":false}},"#,
    r#""serverInfo":{"name":"mcp-bench-upstream","version":"0.1.0"}}"#
);

const TOOLS_LIST_RESULT: &str = concat!(
    r#"{"tools":[{"name":"echo","description":"Returns its text argument.","#,
    r#""inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}]}"#
);

/// Nanoseconds each `tools/call` spends in a busy loop (see [`set_call_work`]).
static CALL_WORK_NS: AtomicU64 = AtomicU64::new(0);

/// Makes each `tools/call` spend `work` in a busy loop before answering, so that the
/// upstream stands in for one that does real work per call (0: none, the default).
/// Throughput ratios through a gateway depend on how much the upstream costs.
pub fn set_call_work(work: Duration) {
    CALL_WORK_NS.store(u64::try_from(work.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

fn spend_call_work() {
    let ns = CALL_WORK_NS.load(Ordering::Relaxed);
    if ns == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_nanos(ns);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Answers one JSON-RPC message (a single message; batches are refused).
pub fn answer(body: &[u8]) -> Answer {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Answer::Invalid(error(None, -32600, "invalid request: expected one JSON-RPC object (no batches)"));
    }
    let Ok(msg) = serde_json::from_slice::<Incoming<'_>>(body) else {
        return Answer::Invalid(error(None, -32700, "parse error: not a JSON-RPC message"));
    };
    let Some(method) = msg.method else {
        return Answer::Accepted; // a client's response to a server request
    };
    let Some(id) = msg.id else {
        return Answer::Accepted; // a notification
    };
    match method.as_ref() {
        "tools/call" => Answer::Reply(call(id, msg.params)),
        "initialize" => Answer::Initialized(result(id, INITIALIZE_RESULT)),
        "ping" => Answer::Reply(result(id, "{}")),
        "tools/list" => Answer::Reply(result(id, TOOLS_LIST_RESULT)),
        other => Answer::Reply(error(Some(id), -32601, &format!("method not found: {other}"))),
    }
}

fn call(id: &RawValue, params: Option<&RawValue>) -> Vec<u8> {
    let parsed = params.map(|p| serde_json::from_str::<CallParams<'_>>(p.get()));
    let Some(Ok(params)) = parsed else {
        return error(Some(id), -32602, "tools/call needs params with a tool name");
    };
    if params.name != "echo" {
        return error(Some(id), -32602, "unknown tool (this upstream has only echo)");
    }
    spend_call_work();
    let text = params.arguments.and_then(|a| a.text).map_or(r#""""#, RawValue::get);
    let mut out = Vec::with_capacity(80 + id.get().len() + text.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","result":{"content":[{"type":"text","text":"#);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"}]}}");
    out
}

fn result(id: &RawValue, result: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + id.get().len() + result.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result.as_bytes());
    out.push(b'}');
    out
}

fn error(id: Option<&RawValue>, code: i32, message: &str) -> Vec<u8> {
    let id = id.map_or("null", RawValue::get);
    let message = serde_json::Value::from(message).to_string();
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#).into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(a: Answer) -> String {
        match a {
            Answer::Reply(b) | Answer::Initialized(b) | Answer::Invalid(b) => String::from_utf8(b).unwrap_or_default(),
            Answer::Accepted => "accepted".into(),
        }
    }

    #[test]
    fn initialize_answers_the_revision() {
        let a = answer(br#"{"jsonrpc":"2.0","id":"i-1","method":"initialize","params":{}}"#);
        assert!(matches!(a, Answer::Initialized(_)));
        let v: serde_json::Value = serde_json::from_str(&text(a)).unwrap();
        assert_eq!(v["id"], "i-1");
        assert_eq!(v["result"]["protocolVersion"], PROTOCOL_VERSION);
    }

    #[test]
    fn echo_copies_escaped_text_verbatim() {
        let a = answer(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\"b\u00e9"}}}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&text(a)).unwrap();
        assert_eq!(v["result"]["content"][0]["text"], "a\"b\u{e9}");
        assert_eq!(v["id"], 3);
    }

    #[test]
    fn notifications_and_responses_are_accepted() {
        assert_eq!(answer(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Answer::Accepted);
        assert_eq!(answer(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), Answer::Accepted);
    }

    #[test]
    fn errors_keep_the_id() {
        let v: serde_json::Value =
            serde_json::from_str(&text(answer(br#"{"jsonrpc":"2.0","id":9,"method":"nope"}"#))).unwrap();
        assert_eq!(v["error"]["code"], -32601);
        assert_eq!(v["id"], 9);
        let unknown_tool = text(answer(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x"}}"#));
        assert!(unknown_tool.contains("-32602"));
        assert!(matches!(answer(b"[1,2"), Answer::Invalid(_)));
        let v: serde_json::Value = serde_json::from_str(&text(answer(b"[]"))).unwrap();
        assert!(v["id"].is_null());
    }

    #[test]
    fn ping_and_tools_list() {
        assert_eq!(
            text(answer(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)),
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&text(answer(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#))).unwrap();
        assert_eq!(v["result"]["tools"][0]["name"], "echo");
    }
}
