//! One MCP client of the load generator, on a Streamable HTTP connection of its own
//! (HTTP/1.1 keep-alive, one request in flight). A session (2025 revisions):
//! `initialize`, `notifications/initialized`, then `tools/call echo` as often as
//! asked, `DELETE` at the end. A stateless client (revision 2026-07-28): no handshake
//! and no session; every `tools/call echo` carries the `_meta` envelope
//! (`io.modelcontextprotocol/protocolVersion`, `io.modelcontextprotocol/clientCapabilities`)
//! and the routing headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`).
//! Replies are checked (status, id, result, echoed text), whether they come as JSON
//! or as an SSE stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;

/// `Mcp-Session-Id`.
const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
const VERSION_HEADER: &str = "mcp-protocol-version";
/// `Mcp-Method` (2026-07-28).
const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name` (2026-07-28).
const NAME_HEADER: &str = "mcp-name";
/// The revision a session asks for.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// The revision a stateless client declares on every request.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The `_meta` envelope of a stateless request (no client capabilities declared).
const STATELESS_META: &str = concat!(
    r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientCapabilities":{}}"#
);
/// The headers of a stateless `tools/call echo`.
const STATELESS_CALL_HEADERS: [(&str, &str); 3] =
    [(VERSION_HEADER, STATELESS_VERSION), (METHOD_HEADER, "tools/call"), (NAME_HEADER, "echo")];
/// Largest reply body read.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://HOST:PORT/PATH`.
    #[error("bad URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TCP connect or HTTP handshake failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// `HOST:PORT`.
        addr: String,
        /// The cause.
        reason: String,
    },
    /// The connection failed during a request.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// No complete reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// A status other than the expected one.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A JSON-RPC error reply.
    #[error("JSON-RPC error: {0}")]
    Rpc(String),
    /// A reply that is not the expected response.
    #[error("unexpected reply: {0}")]
    Reply(String),
}

impl ClientError {
    /// A short label to count errors by.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Url { .. } => "url".into(),
            ClientError::Connect { .. } => "connect".into(),
            ClientError::Http(_) => "http".into(),
            ClientError::Timeout(_) => "timeout".into(),
            ClientError::Status { status, .. } => format!("status_{status}"),
            ClientError::Rpc(_) => "jsonrpc_error".into(),
            ClientError::Reply(_) => "bad_reply".into(),
        }
    }

    /// Whether the session no longer exists on the server (it needs a new `initialize`).
    pub fn is_session_gone(&self) -> bool {
        matches!(self, ClientError::Status { status: 404, .. })
    }
}

/// Where the sessions go: the parsed `--url`.
#[derive(Debug)]
pub struct Target {
    addr: String,
    host: HeaderValue,
    path: Uri,
    /// `Authorization` values (a gateway with `auth`): one for every request, or
    /// several taken in turn (each request a token the gateway has not seen yet).
    authorization: Vec<HeaderValue>,
    next_token: std::sync::atomic::AtomicUsize,
}

impl Target {
    /// Parses `http://HOST:PORT/PATH` (plain HTTP only: the bench runs on loopback).
    pub fn parse(url: &str) -> Result<Target, ClientError> {
        let bad = |reason| ClientError::Url { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or(bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = format!("{}:{port}", authority.host());
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("host is not a header value"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|_| bad("bad path"))?;
        Ok(Target { addr, host, path, authorization: Vec::new(), next_token: Default::default() })
    }

    /// Every request carries `Authorization: Bearer <token>`; with one token per
    /// line, requests take them in turn.
    pub fn with_bearer(mut self, tokens: Option<&str>) -> Result<Target, ClientError> {
        let lines = tokens.into_iter().flat_map(str::lines).map(str::trim).filter(|t| !t.is_empty());
        self.authorization = lines
            .map(|t| {
                HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| ClientError::Url {
                    url: "--bearer-file".into(),
                    reason: "a token is not a header value",
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The `Authorization` of the next request, if any.
    fn authorization(&self) -> Option<&HeaderValue> {
        match self.authorization.len() {
            0 => None,
            1 => self.authorization.first(),
            n => {
                let i = self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.authorization.get(i % n)
            }
        }
    }
}

/// One client and its connection: a session (2025 revisions), or a stateless client
/// (2026-07-28) that only sends `tools/call echo`.
pub struct Session {
    target: Arc<Target>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    session_id: Option<HeaderValue>,
    next_id: u64,
    stateless: bool,
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

impl Session {
    /// Connects, initializes and sends `notifications/initialized`; each step within
    /// `timeout`.
    pub async fn open(target: Arc<Target>, timeout: Duration) -> Result<Session, ClientError> {
        let mut s = Session { target, timeout, sender: None, session_id: None, next_id: 1, stateless: false };
        s.initialize().await?;
        Ok(s)
    }

    /// A stateless client (2026-07-28): connects and makes one `tools/call echo`, so
    /// that an endpoint that does not serve stateless calls fails here, not on every
    /// request of the run; within `timeout`.
    pub async fn open_stateless(target: Arc<Target>, timeout: Duration) -> Result<Session, ClientError> {
        let mut s = Session { target, timeout, sender: None, session_id: None, next_id: 1, stateless: true };
        s.call_echo("ready").await?;
        Ok(s)
    }

    /// Whether this is a stateless client (no session, nothing to re-initialize).
    pub fn is_stateless(&self) -> bool {
        self.stateless
    }

    /// The session id the server gave.
    pub fn id(&self) -> Option<&str> {
        self.session_id.as_ref().and_then(|v| v.to_str().ok())
    }

    /// (Re)initializes: a new session on the server.
    pub async fn initialize(&mut self) -> Result<(), ClientError> {
        if self.stateless {
            return Ok(()); // nothing to initialize
        }
        self.session_id = None;
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcp-bench","version":"0.1.0"}}}}}}"#
        );
        let (status, headers, body) = self.send(Method::POST, Bytes::from(init), &[]).await?;
        expect_status(status, &[StatusCode::OK], &body)?;
        check_reply(&headers, &body, "0", None)?;
        let id = headers.get(SESSION_HEADER).cloned();
        if id.is_none() {
            return Err(ClientError::Reply("initialize answered without Mcp-Session-Id".into()));
        }
        self.session_id = id;
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let (status, _, body) = self.send(Method::POST, note, &[]).await?;
        expect_status(status, &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT], &body)
    }

    /// One `tools/call echo` with `text` (plain characters, no JSON escapes); checks
    /// that the reply is its response and carries the text. A stateless client sends
    /// the `_meta` envelope and the routing headers with it.
    pub async fn call_echo(&mut self, text: &str) -> Result<(), ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let (body, headers): (String, &'static [(&'static str, &'static str)]) = if self.stateless {
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},"_meta":{STATELESS_META}}}}}"#
                ),
                &STATELESS_CALL_HEADERS,
            )
        } else {
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
                ),
                &[],
            )
        };
        let (status, headers, reply) = self.send(Method::POST, Bytes::from(body), headers).await?;
        expect_status(status, &[StatusCode::OK], &reply)?;
        check_reply(&headers, &reply, &id.to_string(), Some(text))
    }

    /// Ends the session on the server (`DELETE`).
    pub async fn delete(&mut self) -> Result<(), ClientError> {
        if self.session_id.is_none() {
            return Ok(());
        }
        let (status, _, body) = self.send(Method::DELETE, Bytes::new(), &[]).await?;
        self.session_id = None;
        expect_status(status, &[StatusCode::OK, StatusCode::ACCEPTED, StatusCode::NO_CONTENT], &body)
    }

    /// Closes the connection (the session stays on the server; the next request
    /// opens a new connection).
    pub fn disconnect(&mut self) {
        self.sender = None;
    }

    /// One request with `extra` headers (name, value; static).
    async fn send(
        &mut self,
        method: Method,
        body: Bytes,
        extra: &[(&'static str, &'static str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(method, body, extra)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None; // a reply may still come on it: never reuse
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        body: Bytes,
        extra: &[(&'static str, &'static str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.sender = Some(connect(&self.target).await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(ClientError::Reply("no connection".into()));
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = self.target.path.clone();
        let h = req.headers_mut();
        h.insert(HOST, self.target.host.clone());
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = self.target.authorization() {
            h.insert(AUTHORIZATION, a.clone());
        }
        if let Some(id) = &self.session_id {
            h.insert(SESSION_HEADER, id.clone());
            h.insert(VERSION_HEADER, HeaderValue::from_static(PROTOCOL_VERSION));
        }
        for &(name, value) in extra {
            h.insert(name, HeaderValue::from_static(value));
        }
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Reply(format!("cannot read the reply body: {e}")))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    let failed = |reason: String| ClientError::Connect { addr: target.addr.clone(), reason };
    let stream = tokio::net::TcpStream::connect(&target.addr).await.map_err(|e| failed(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await; // ends when the sender is dropped or the peer closes
    });
    Ok(sender)
}

fn expect_status(status: StatusCode, allowed: &[StatusCode], body: &[u8]) -> Result<(), ClientError> {
    if allowed.contains(&status) {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Err(ClientError::Status { status: status.as_u16(), body })
}

/// Checks that `body` (JSON, or SSE whose events carry JSON) holds the response to
/// request `id` with a result (containing `expect`, when given).
fn check_reply(headers: &HeaderMap, body: &[u8], id: &str, expect: Option<&str>) -> Result<(), ClientError> {
    let is_sse = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    if !is_sse {
        return check_message(body, id, expect);
    }
    let text = std::str::from_utf8(body).map_err(|_| ClientError::Reply("SSE body is not UTF-8".into()))?;
    let mut last_error = ClientError::Reply(format!("SSE stream without the response to request {id}"));
    for event in text.split("\n\n") {
        let data: Vec<&str> =
            event.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
        if data.is_empty() || data.iter().all(|d| d.is_empty()) {
            continue; // priming event or comment
        }
        match check_message(data.join("\n").as_bytes(), id, expect) {
            Ok(()) => return Ok(()),
            Err(e @ ClientError::Rpc(_)) => return Err(e),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn check_message(json: &[u8], id: &str, expect: Option<&str>) -> Result<(), ClientError> {
    let reply: Reply<'_> = serde_json::from_slice(json)
        .map_err(|e| ClientError::Reply(format!("not a JSON-RPC message ({e}): {}", preview(json))))?;
    if reply.id.map(RawValue::get) != Some(id) {
        return Err(ClientError::Reply(format!("not the response to request {id}: {}", preview(json))));
    }
    if let Some(error) = reply.error {
        return Err(ClientError::Rpc(preview(error.get().as_bytes())));
    }
    let Some(result) = reply.result else {
        return Err(ClientError::Reply(format!("response without result: {}", preview(json))));
    };
    if expect.is_some_and(|text| !result.get().contains(text)) {
        return Err(ClientError::Reply(format!("echo without the text sent: {}", preview(json))));
    }
    Ok(())
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(ct: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8080/mcp").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/mcp");
        assert!(Target::parse("https://127.0.0.1/mcp").is_err());
        assert!(Target::parse("nonsense url").is_err());
    }

    #[test]
    fn checks_json_replies() {
        let json = headers("application/json");
        let ok = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hey"}]}}"#;
        assert!(check_reply(&json, ok, "5", Some("hey")).is_ok());
        assert!(check_reply(&json, ok, "6", Some("hey")).is_err());
        assert!(check_reply(&json, ok, "5", Some("other")).is_err());
        let err = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32000,"message":"x"}}"#;
        assert_eq!(check_reply(&json, err, "5", None).unwrap_err().kind(), "jsonrpc_error");
    }

    #[test]
    fn checks_sse_replies() {
        let sse = headers("text/event-stream");
        let body = "id: 0-0\nretry: 1000\ndata:\n\nevent: message\nid: 0-1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\nid: 0-2\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"x\":\"hey\"}}\n\n";
        assert!(check_reply(&sse, body.as_bytes(), "5", Some("hey")).is_ok());
        assert!(check_reply(&sse, b": keep-alive\n\n", "5", None).is_err());
    }
}
