//! A small HTTP client for the tests: whole replies, streamed SSE, and an MCP
//! session helper on top.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// A whole HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body text when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The JSON-RPC error code of the body.
    pub fn error_code(&self) -> i64 {
        self.json()["error"]["code"].as_i64().unwrap_or_else(|| panic!("no error code in {}", self.text()))
    }

    pub fn is_sse(&self) -> bool {
        self.header("content-type").is_some_and(|c| c.starts_with("text/event-stream"))
    }

    /// The SSE events of a finished stream.
    pub fn events(&self) -> Vec<SseEvent> {
        parse_events(&self.text())
    }

    /// The JSON-RPC messages in the reply (one for JSON, the data of each event for SSE).
    pub fn messages(&self) -> Vec<Value> {
        if self.is_sse() {
            self.events().into_iter().filter_map(|e| e.json()).collect()
        } else {
            vec![self.json()]
        }
    }
}

/// One SSE event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

impl SseEvent {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Parses complete events out of SSE text (comments skipped).
pub fn parse_events(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut ev = SseEvent::default();
        let mut any = false;
        let mut data_lines = Vec::new();
        for line in block.lines() {
            if line.starts_with(':') || line.is_empty() {
                continue;
            }
            let (field, value) =
                line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
            any = true;
            match field {
                "id" => ev.id = Some(value.to_owned()),
                "event" => ev.event = Some(value.to_owned()),
                "data" => data_lines.push(value.to_owned()),
                "retry" => ev.retry = value.parse().ok(),
                _ => {}
            }
        }
        if any {
            ev.data = data_lines.join("\n");
            out.push(ev);
        }
    }
    out
}

/// A streaming SSE reader over a response body.
pub struct SseReader {
    body: Incoming,
    buf: String,
    pub ended: bool,
    /// The body failed (the connection was cut off) rather than ending.
    pub cut: bool,
    /// Data frames read so far.
    pub frames: usize,
}

impl SseReader {
    /// The next event, or `None` at the end of the stream or after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                if let Some(ev) = parse_events(&block).into_iter().next() {
                    return Some(ev);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => self.ended = true,
                Ok(Some(Err(_))) => {
                    self.ended = true;
                    self.cut = true;
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.frames += 1;
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// Reads events until one carries a JSON-RPC message; returns it.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await?;
            if let Some(v) = ev.json() {
                return Some(v);
            }
        }
    }
}

/// An HTTP client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Http { client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// A client whose connections come from `local` (on Linux any 127.0.0.0/8 address
    /// reaches a loopback listener: another client, as the gateway sees it).
    pub fn from_address(local: std::net::IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Http { client: Client::builder(TokioExecutor::new()).build(connector) }
    }

    fn build(method: Method, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Request<Full<Bytes>> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned()))).unwrap()
    }

    /// Sends a request and reads the whole reply (30 s limit).
    pub async fn send(&self, method: Method, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        self.try_send(method, url, headers, body).await.map(|(reply, _)| reply).unwrap()
    }

    /// Sends a request and reads the whole reply, counting its body's data frames;
    /// an error (the connection cut off before or during the reply) as text.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<(Reply, usize), String> {
        let req = Self::build(method, url, headers, body);
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| format!("request: {e:?}"))?;
            let (parts, mut body) = resp.into_parts();
            let (mut bytes, mut frames) = (Vec::new(), 0);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("body: {e:?}"))?;
                if let Ok(data) = frame.into_data() {
                    frames += 1;
                    bytes.extend_from_slice(&data);
                }
            }
            Ok((Reply { status: parts.status.as_u16(), headers: parts.headers, body: Bytes::from(bytes) }, frames))
        };
        tokio::time::timeout(Duration::from_secs(30), fut).await.expect("reply within 30 s")
    }

    /// Sends a request and returns status, headers and a streaming reader.
    pub async fn open(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, HeaderMap, SseReader) {
        let req = Self::build(method, url, headers, body);
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("headers in 30 s")
            .unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status.as_u16(),
            parts.headers,
            SseReader { body, buf: String::new(), ended: false, cut: false, frames: 0 },
        )
    }
}

pub const ACCEPT_BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");
pub const JSON: (&str, &str) = ("content-type", "application/json");

/// An MCP session over the gateway.
pub struct McpClient {
    pub http: Http,
    pub url: String,
    pub session: Option<String>,
    pub version: String,
    next_id: u64,
}

impl McpClient {
    pub fn new(url: &str) -> Self {
        McpClient { http: Http::new(), url: url.to_owned(), session: None, version: "2025-11-25".into(), next_id: 1 }
    }

    /// Headers of a POST in this session.
    pub fn headers(&self) -> Vec<(&str, String)> {
        let mut h = vec![("accept", ACCEPT_BOTH.1.to_owned()), ("content-type", "application/json".to_owned())];
        if let Some(s) = &self.session {
            h.push(("mcp-session-id", s.clone()));
            h.push(("mcp-protocol-version", self.version.clone()));
        }
        h
    }

    pub async fn post_raw(&self, body: &str) -> Reply {
        let h = self.headers();
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.http.send(Method::POST, &self.url, &h, Some(body)).await
    }

    /// Initializes a session with `version` and sends `notifications/initialized`.
    pub async fn initialize(&mut self, version: &str) -> Value {
        self.version = version.to_owned();
        self.session = None;
        let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": version,
            "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
            "clientInfo": {"name": "shadowcat-tests", "version": "0"}}});
        let reply = self.post_raw(&body.to_string()).await;
        assert_eq!(reply.status, 200, "initialize failed: {}", reply.text());
        self.session = Some(reply.header("mcp-session-id").expect("session id on initialize"));
        let result = reply.messages().into_iter().find(|m| m["id"] == 0).expect("initialize response");
        let note = self.notify("notifications/initialized", json!({})).await;
        assert_eq!(note.status, 202, "{}", note.text());
        result
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends a request; returns the whole reply.
    pub async fn call(&mut self, method: &str, params: Value) -> (u64, Reply) {
        let id = self.next_id();
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        (id, self.post_raw(&body.to_string()).await)
    }

    /// Sends a request and returns its final response message.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let (id, reply) = self.call(method, params).await;
        assert_eq!(reply.status, 200, "{method} failed: {}", reply.text());
        reply
            .messages()
            .into_iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no response to {method} in {}", reply.text()))
    }

    pub async fn notify(&self, method: &str, params: Value) -> Reply {
        self.post_raw(&json!({"jsonrpc":"2.0","method":method,"params":params}).to_string()).await
    }

    /// Opens the GET stream.
    pub async fn open_get(&self, last_event_id: Option<&str>) -> (u16, SseReader) {
        let mut h = vec![("accept", "text/event-stream".to_owned())];
        if let Some(s) = &self.session {
            h.push(("mcp-session-id", s.clone()));
            h.push(("mcp-protocol-version", self.version.clone()));
        }
        if let Some(l) = last_event_id {
            h.push(("last-event-id", l.to_owned()));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, reader) = self.http.open(Method::GET, &self.url, &h, None).await;
        (status, reader)
    }

    /// POSTs a request and returns the streaming reply.
    pub async fn open_post(&mut self, method: &str, params: Value) -> (u64, u16, HeaderMap, SseReader) {
        let id = self.next_id();
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
        let h = self.headers();
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, headers, reader) = self.http.open(Method::POST, &self.url, &h, Some(&body)).await;
        (id, status, headers, reader)
    }

    pub async fn delete(&self) -> Reply {
        let s = self.session.clone().unwrap_or_default();
        self.http.send(Method::DELETE, &self.url, &[("mcp-session-id", &s)], None).await
    }
}
