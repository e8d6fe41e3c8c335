//! A 2026-07-28 (stateless) client for the tests: every request carries the routing
//! headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) and the `_meta` envelope
//! (`io.modelcontextprotocol/protocolVersion`, `io.modelcontextprotocol/clientCapabilities`).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

use super::client::{parse_events, Http, SseReader};

/// The revision this client speaks.
pub const VERSION: &str = "2026-07-28";
/// `_meta` key of the declared protocol version.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the declared client capabilities.
pub const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the requested log level.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the server's info on results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Every capability a client can declare for server-to-client requests.
pub fn all_caps() -> Value {
    json!({"elicitation": {}, "sampling": {}, "roots": {}})
}

/// A whole reply to one stateless request.
#[derive(Debug)]
pub struct ModernReply {
    pub status: u16,
    pub headers: HeaderMap,
    /// Whether it came as `text/event-stream`.
    pub sse: bool,
    /// Every JSON-RPC message in it, in order.
    pub messages: Vec<Value>,
    /// The response whose id is the request's (`Value::Null` if there is none).
    pub response: Value,
    /// The raw body, for failure messages.
    pub text: String,
}

impl ModernReply {
    /// The notifications in the reply with method `method`.
    pub fn notifications(&self, method: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m.get("id").is_none() && m["method"] == method).collect()
    }

    /// The JSON-RPC error code of the response.
    pub fn error_code(&self) -> Option<i64> {
        self.response["error"]["code"].as_i64()
    }
}

/// A stateless (2026-07-28) client of one MCP endpoint.
#[derive(Clone)]
pub struct ModernClient {
    pub http: Http,
    pub url: String,
    /// An `Authorization` header every request carries (`Bearer ...`).
    pub authorization: Option<String>,
}

/// Ids unique across every client of a test binary (tests that want a given id use
/// [`ModernClient::call_with_id`]).
static NEXT_ID: AtomicU64 = AtomicU64::new(1000);

impl ModernClient {
    pub fn new(url: &str) -> Self {
        ModernClient { http: Http::new(), url: url.to_owned(), authorization: None }
    }

    /// A fresh request id.
    pub fn next_id() -> Value {
        json!(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }

    /// The request body: `params` with the `_meta` envelope added (members of
    /// `params._meta` the caller set, such as `progressToken`, are kept).
    pub fn body(id: &Value, method: &str, params: &Value, caps: &Value) -> String {
        let mut params = params.as_object().cloned().unwrap_or_default();
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        meta.insert(META_VERSION.into(), json!(VERSION));
        meta.insert(META_CAPS.into(), caps.clone());
        params.insert("_meta".into(), Value::Object(meta));
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    }

    /// The headers of a request: both `Accept` types, JSON, the version, the method and
    /// (for `tools/call`, `prompts/get` and `resources/read`) the name.
    pub fn headers(method: &str, params: &Value) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("accept", "application/json, text/event-stream".to_owned()),
            ("content-type", "application/json".to_owned()),
            ("mcp-protocol-version", VERSION.to_owned()),
            ("mcp-method", method.to_owned()),
        ];
        let name = match method {
            "tools/call" | "prompts/get" => params["name"].as_str(),
            "resources/read" => params["uri"].as_str(),
            _ => None,
        };
        if let Some(name) = name {
            h.push(("mcp-name", name.to_owned()));
        }
        h
    }

    /// Sends a request with a fresh id; returns the HTTP status and the response
    /// message (the one whose id matches; `Value::Null` if there is none).
    pub async fn call(&self, method: &str, params: Value, caps: &Value) -> (u16, Value) {
        let reply = self.call_with_id(&Self::next_id(), method, params, caps).await;
        (reply.status, reply.response)
    }

    /// Sends a request with id `id` and reads the whole reply (30 s limit).
    pub async fn call_with_id(&self, id: &Value, method: &str, params: Value, caps: &Value) -> ModernReply {
        let body = Self::body(id, method, &params, caps);
        let mut headers = Self::headers(method, &params);
        headers.extend(self.authorization.clone().map(|a| ("authorization", a)));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = self.http.send(Method::POST, &self.url, &headers, Some(&body)).await;
        let text = reply.text();
        let sse = reply.is_sse();
        let messages: Vec<Value> = if sse {
            parse_events(&text).into_iter().filter_map(|e| e.json()).collect()
        } else if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))]
        };
        let response = messages
            .iter()
            .find(|m| m.get("method").is_none() && m.get("id") == Some(id))
            .cloned()
            .unwrap_or(Value::Null);
        ModernReply { status: reply.status, headers: reply.headers, sse, messages, response, text }
    }

    /// Sends a request and returns the status, headers and a streaming reader of the
    /// reply (dropping the reader closes the response stream).
    pub async fn open(&self, id: &Value, method: &str, params: Value, caps: &Value) -> (u16, HeaderMap, SseReader) {
        let body = Self::body(id, method, &params, caps);
        let headers = Self::headers(method, &params);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.http.open(Method::POST, &self.url, &headers, Some(&body)).await
    }
}

/// Reads messages from `reader` until the response with id `id`, or `None` when the
/// stream ends or `timeout` passes first; also returns what came before it.
pub async fn read_until_response(reader: &mut SseReader, id: &Value, timeout: Duration) -> (Vec<Value>, Option<Value>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = reader.next_message(left).await else { return (seen, None) };
        if m.get("method").is_none() && m.get("id") == Some(id) {
            return (seen, Some(m));
        }
        seen.push(m);
    }
}

/// A demo-server upstream whose stdin is recorded: the stdio command is
/// `sh -c 'tee <dir>/stdin.<pid> | shadowcat demo-server'`, so every message the gateway
/// writes to each demo process (one file per process) can be read back.
pub struct Recorder {
    pub dir: std::path::PathBuf,
}

impl Recorder {
    pub fn new(tag: &str) -> Self {
        Recorder { dir: super::scratch_dir(tag) }
    }

    /// Like [`super::demo_config`]: `server_extra` goes after `server.listen` (top-level
    /// keys such as `bridge:` fit there too), `stdio_extra` under `upstreams.up.stdio`.
    pub fn config(&self, server_extra: &str, stdio_extra: &str) -> String {
        format!(
            "server:\n  listen: 127.0.0.1:0\n{server_extra}admin:\n  listen: 127.0.0.1:0\nupstreams:\n  up:\n    stdio:\n      command: /bin/sh\n      args: ['-c', 'tee \"$0/stdin.$$\" | exec \"$1\" demo-server', '{}', '{}']\n{stdio_extra}",
            self.dir.display(),
            super::bin()
        )
    }

    /// Every message written to any demo process so far (each process's in order).
    pub fn messages(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return out };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with("stdin.") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            // Only complete lines: a process may be writing the last one.
            let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
            out.extend(complete.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()));
        }
        out
    }

    /// Waits (polling) until a recorded message satisfies `pred`; returns it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let mut found = None;
        super::wait_until(timeout, || {
            found = self.messages().into_iter().find(|m| pred(m));
            found.is_some()
        });
        found
    }

    /// The `tools/call` of tool `name` the demo processes received (the gateway's
    /// rewritten request), waiting up to `timeout` for it.
    pub fn tool_call(&self, name: &str, timeout: Duration) -> Option<Value> {
        self.wait_for(timeout, |m| m["method"] == "tools/call" && m["params"]["name"] == name)
    }
}
