//! A 2025-era client on a modern-only (2026-07-28) upstream: the gateway owns the
//! session.
//!
//! The gateway answers `initialize` (from the upstream's `server/discover`), `ping`
//! and `logging/setLevel` itself, and keeps the session's declared capabilities,
//! client info and log level. Every other request goes upstream statelessly with the
//! `_meta` envelope and the routing headers built from them. An `input_required`
//! answer becomes real server-to-client requests on the request's own SSE stream; the
//! client's answers (POSTed responses) are collected and the request is retried
//! upstream with `inputResponses` and the `requestState`, up to [`MAX_ROUNDS`] rounds.
//! The GET stream is fed from an upstream `subscriptions/listen` (list changes, and the
//! resources the client subscribed to with `resources/subscribe`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::Bridge;
use crate::error::GatewayError;
use crate::protocol::id_value;
use crate::protocol::modern::{
    self, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_PROTOCOL_VERSION, META_SERVER_INFO,
    META_SUBSCRIPTION_ID,
};
use crate::protocol::{codes, Message, MessageKind, ProtocolVersion};
use crate::reply::{McpReply, ReplyBody};

/// Most `input_required` rounds of one request.
pub const MAX_ROUNDS: u32 = 8;
/// Time the client gets to answer one round of questions.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// Messages buffered towards the client per request.
const OUT_BUFFER: usize = 64;

/// What the upstream's `server/discover` said.
#[derive(Debug, Clone)]
struct Discovered {
    capabilities: Map<String, Value>,
    server_info: Value,
    instructions: Option<String>,
}

#[derive(Default)]
struct State {
    version: Option<ProtocolVersion>,
    capabilities: Map<String, Value>,
    client_info: Option<Value>,
    log_level: Option<String>,
    subscriptions: BTreeSet<String>,
    /// Server-to-client requests the client has not answered yet, by id (JSON text).
    questions: HashMap<String, oneshot::Sender<Value>>,
    /// Requests in flight, by the client's id, so `notifications/cancelled` can stop them.
    in_flight: HashMap<String, AbortHandle>,
    get_sink: Option<mpsc::Sender<Message>>,
    listener: Option<AbortHandle>,
}

/// The upstream side of a gateway-owned session on a modern-only upstream.
pub struct ModernSession {
    /// Serves the stateless requests (the upstream is modern: passed through).
    upstream: Arc<Bridge>,
    tag: String,
    discovered: Discovered,
    state: Mutex<State>,
    alive: AtomicBool,
    seq: AtomicU64,
}

impl ModernSession {
    /// Asks the upstream's `server/discover` and makes the session.
    pub async fn open(upstream: Arc<Bridge>, tag: &str) -> Result<Arc<Self>, GatewayError> {
        let discover = envelope_request("server/discover", json!({}), "\"sc-discover\"", &Map::new(), None, None);
        let reply = stateless(&upstream, discover.0, &discover.1).await?;
        let answer = reply.first_response("\"sc-discover\"").await.and_then(|m| m.to_value()).unwrap_or_default();
        let Some(result) = answer.get("result") else {
            return Err(GatewayError::UpstreamUnavailable {
                upstream: tag.to_owned(),
                detail: format!("server/discover failed: {}", answer.get("error").cloned().unwrap_or_default()),
            });
        };
        let discovered = Discovered {
            capabilities: result.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default(),
            server_info: result
                .pointer(&format!("/_meta/{}", META_SERVER_INFO.replace('/', "~1")))
                .or_else(|| result.get("serverInfo"))
                .cloned()
                .unwrap_or_else(|| json!({"name": "unknown", "version": "0"})),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
        };
        Ok(Arc::new(ModernSession {
            upstream,
            tag: tag.to_owned(),
            discovered,
            state: Mutex::new(State::default()),
            alive: AtomicBool::new(true),
            seq: AtomicU64::new(1),
        }))
    }

    /// Whether the session still serves.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Ends the session: requests in flight and the listener stop.
    pub async fn close(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let mut state = self.state.lock();
        for (_, task) in state.in_flight.drain() {
            task.abort();
        }
        if let Some(listener) = state.listener.take() {
            listener.abort();
        }
        state.get_sink = None;
        state.questions.clear();
    }

    fn next_id(&self, kind: &str) -> String {
        format!("\"sc-{kind}-{}\"", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// One message from the client, with the client's headers (those the upstream
    /// may get travel with the gateway's stateless requests).
    pub async fn send(self: &Arc<Self>, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        if !self.is_alive() {
            return Err(GatewayError::UnknownSession);
        }
        match m.kind() {
            MessageKind::Response => {
                let id = m.id_key().unwrap_or("null").to_owned();
                let waiting = self.state.lock().questions.remove(&id);
                if let Some(tx) = waiting {
                    let _ = tx.send(m.to_value().unwrap_or_default());
                }
                Ok(McpReply::accepted())
            }
            MessageKind::Notification => {
                if m.method() == Some("notifications/cancelled") {
                    if let Some(id) = m.param_key("requestId") {
                        if let Some(task) = self.state.lock().in_flight.remove(&id) {
                            task.abort();
                        }
                    }
                }
                Ok(McpReply::accepted())
            }
            MessageKind::Request => self.request(m, headers).await,
        }
    }

    async fn request(self: &Arc<Self>, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        let id = m.id_key().unwrap_or("null").to_owned();
        let params: Map<String, Value> = m.params().unwrap_or_default();
        let method = m.method().unwrap_or_default().to_owned();
        let local = match method.as_str() {
            "initialize" => Some(self.initialize(&params)),
            "ping" => Some(json!({})),
            "logging/setLevel" => {
                self.state.lock().log_level = params.get("level").and_then(Value::as_str).map(str::to_owned);
                Some(json!({}))
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                    return Err(GatewayError::InvalidParams(format!("{method} needs params.uri")));
                };
                {
                    let mut state = self.state.lock();
                    if method == "resources/subscribe" {
                        state.subscriptions.insert(uri.to_owned());
                    } else {
                        state.subscriptions.remove(uri);
                    }
                }
                self.restart_listener();
                Some(json!({}))
            }
            _ => None,
        };
        if let Some(result) = local {
            return Ok(McpReply::new(ReplyBody::Message(Message::result_response(Some(&id), &result))));
        }
        let (out, rx) = mpsc::channel(OUT_BUFFER);
        let this = self.clone();
        let client_id = id.clone();
        let client_headers = headers.clone();
        let task = tokio::spawn(async move {
            let answer = this.run(&method, params, &client_id, &client_headers, &out).await;
            let _ = out.send(answer).await;
            this.state.lock().in_flight.remove(&client_id);
        });
        self.state.lock().in_flight.insert(id, task.abort_handle());
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(McpReply::new(ReplyBody::Stream(Box::pin(stream))))
    }

    fn initialize(&self, params: &Map<String, Value>) -> Value {
        let requested = params.get("protocolVersion").and_then(Value::as_str).and_then(ProtocolVersion::parse);
        let version = requested.filter(|v| !v.is_stateless()).unwrap_or(ProtocolVersion::LATEST_HANDSHAKE);
        {
            let mut state = self.state.lock();
            state.version = Some(version);
            state.capabilities = params.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default();
            state.client_info = params.get("clientInfo").cloned();
        }
        let mut capabilities = self.discovered.capabilities.clone();
        capabilities.entry("logging").or_insert_with(|| json!({}));
        let mut result = json!({
            "protocolVersion": version.as_str(),
            "capabilities": capabilities,
            "serverInfo": self.discovered.server_info,
        });
        if let Some(instructions) = &self.discovered.instructions {
            result["instructions"] = json!(instructions);
        }
        result
    }

    /// Serves one request upstream, answering rounds of input with the client.
    async fn run(
        &self,
        method: &str,
        params: Map<String, Value>,
        client_id: &str,
        client_headers: &HeaderMap,
        out: &mpsc::Sender<Message>,
    ) -> Message {
        let (caps, info, level) = {
            let state = self.state.lock();
            (state.capabilities.clone(), state.client_info.clone(), state.log_level.clone())
        };
        let mut answers: Option<Value> = None;
        let mut request_state: Option<Value> = None;
        for _round in 0..=MAX_ROUNDS {
            let mut p = params.clone();
            if let Some(a) = answers.take() {
                p.insert("inputResponses".into(), a);
            }
            if let Some(s) = request_state.take() {
                p.insert("requestState".into(), s);
            }
            let up_id = self.next_id("req");
            let (msg, mut headers) =
                envelope_request(method, Value::Object(p), &up_id, &caps, info.as_ref(), level.as_deref());
            for (name, value) in client_headers {
                if !headers.contains_key(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            let reply = match stateless(&self.upstream, msg, &headers).await {
                Ok(r) => r,
                Err(e) => return e.to_message(Some(client_id)),
            };
            let mut replies = reply.into_stream();
            let mut final_answer = None;
            while let Some(m) = replies.next().await {
                if m.kind() == MessageKind::Response && m.id_key() == Some(up_id.as_str()) {
                    final_answer = Some(m);
                    break;
                }
                if m.kind() == MessageKind::Notification {
                    let _ = out.send(m).await;
                }
            }
            let Some(answer) = final_answer else {
                let e = GatewayError::UpstreamUnavailable {
                    upstream: self.tag.clone(),
                    detail: "it ended the request without answering".into(),
                };
                return e.to_message(Some(client_id));
            };
            let mut value = answer.to_value().unwrap_or_default();
            let is_input = value.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required");
            if !is_input {
                value["id"] = id_value(client_id);
                if let Some(Value::Object(result)) = value.get_mut("result") {
                    super::stamp::to_legacy_result(result);
                }
                return Message::from_value(&value);
            }
            let result = value.get("result").cloned().unwrap_or_default();
            request_state = result.get("requestState").cloned();
            let requests = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
            match self.ask_client(method, &requests, &caps, client_id, out).await {
                Ok(collected) => answers = Some(Value::Object(collected)),
                Err(refusal) => return refusal,
            }
            if requests.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Message::error_response(
            Some(client_id),
            codes::INTERNAL_ERROR,
            &format!("the upstream asked for input more than {MAX_ROUNDS} times"),
            None,
        )
    }

    /// Sends each embedded request to the client on this request's stream and
    /// collects the answers by key.
    async fn ask_client(
        &self,
        method: &str,
        requests: &Map<String, Value>,
        caps: &Map<String, Value>,
        client_id: &str,
        out: &mpsc::Sender<Message>,
    ) -> Result<Map<String, Value>, Message> {
        let mut waiting = Vec::new();
        for (key, request) in requests {
            let kind = request.get("method").and_then(Value::as_str).unwrap_or_default();
            if !caps.contains_key(capability_of(kind)) {
                let text = format!("the server needs {kind}, which this client did not declare");
                return Err(if method == "tools/call" {
                    let id = id_value(client_id);
                    Message::from_value(&json!({"jsonrpc": "2.0", "id": id,
                        "result": {"isError": true, "content": [{"type": "text", "text": text}]}}))
                } else {
                    Message::error_response(Some(client_id), codes::INTERNAL_ERROR, &text, None)
                });
            }
            let mut params = request.get("params").cloned().unwrap_or_else(|| json!({}));
            if kind == "elicitation/create" && params.get("mode").and_then(Value::as_str) == Some("url") {
                // 2025-11-25 URL elicitations carry an id; 2026-07-28 ones do not.
                params["elicitationId"] = json!(format!("sc-{:016x}", rand::random::<u64>()));
            }
            let id = self.next_id("ask");
            let (tx, rx) = oneshot::channel();
            self.state.lock().questions.insert(id.clone(), tx);
            let id_json = id_value(&id);
            let ask = Message::from_value(&json!({"jsonrpc": "2.0", "id": id_json, "method": kind, "params": params}));
            if out.send(ask).await.is_err() {
                return Err(GatewayError::InvalidRequest("the client went away".into()).to_message(Some(client_id)));
            }
            waiting.push((key.clone(), id, rx));
        }
        let mut collected = Map::new();
        for (key, id, rx) in waiting {
            match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                Ok(Ok(answer)) => {
                    if let Some(result) = answer.get("result") {
                        collected.insert(key, result.clone());
                    }
                }
                _ => {
                    self.state.lock().questions.remove(&id);
                    let e = GatewayError::UpstreamTimeout { upstream: self.tag.clone(), after: ANSWER_TIMEOUT };
                    return Err(e.to_message(Some(client_id)));
                }
            }
        }
        Ok(collected)
    }

    /// The server-to-client stream, fed from an upstream `subscriptions/listen`.
    pub fn open_stream(self: &Arc<Self>) -> Result<McpReply, GatewayError> {
        if !self.is_alive() {
            return Err(GatewayError::UnknownSession);
        }
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        self.state.lock().get_sink = Some(tx);
        self.restart_listener();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(McpReply::new(ReplyBody::Stream(Box::pin(stream))))
    }

    /// (Re)opens the upstream listen with the session's current filter.
    fn restart_listener(self: &Arc<Self>) {
        let (sink, subscriptions, caps, info) = {
            let mut state = self.state.lock();
            if let Some(old) = state.listener.take() {
                old.abort();
            }
            let Some(sink) = state.get_sink.clone() else { return };
            (sink, state.subscriptions.clone(), state.capabilities.clone(), state.client_info.clone())
        };
        let advertised = &self.discovered.capabilities;
        let list_changed =
            |cap: &str| advertised.get(cap).and_then(|c| c.get("listChanged")).and_then(Value::as_bool) == Some(true);
        let mut filter = Map::new();
        for (field, cap) in
            [("toolsListChanged", "tools"), ("promptsListChanged", "prompts"), ("resourcesListChanged", "resources")]
        {
            if list_changed(cap) {
                filter.insert(field.into(), json!(true));
            }
        }
        if !subscriptions.is_empty() {
            filter.insert("resourceSubscriptions".into(), json!(subscriptions));
        }
        if filter.is_empty() {
            return;
        }
        let this = self.clone();
        let task = tokio::spawn(async move {
            let id = this.next_id("listen");
            let (m, headers) = envelope_request(
                "subscriptions/listen",
                json!({"notifications": filter}),
                &id,
                &caps,
                info.as_ref(),
                None,
            );
            let mut stream = match stateless(&this.upstream, m, &headers).await {
                Ok(McpReply { body: ReplyBody::Stream(s), .. }) => s,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(session = %this.tag, error = %e, "cannot listen to the upstream's notifications");
                    return;
                }
            };
            while let Some(m) = stream.next().await {
                if m.kind() != MessageKind::Notification
                    || m.method() == Some("notifications/subscriptions/acknowledged")
                {
                    continue;
                }
                let mut params: Map<String, Value> = m.params().unwrap_or_default();
                if let Some(Value::Object(meta)) = params.get_mut("_meta") {
                    meta.remove(META_SUBSCRIPTION_ID);
                    if meta.is_empty() {
                        params.remove("_meta");
                    }
                }
                if sink
                    .send(Message::notification(m.method().unwrap_or_default(), Value::Object(params)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        self.state.lock().listener = Some(task.abort_handle());
    }
}

/// A stateless request to the (modern) upstream. Boxed: the bridge's futures may
/// contain a session's, so the future types would otherwise be recursive.
fn stateless<'a>(
    bridge: &'a Arc<Bridge>,
    m: Message,
    headers: &'a HeaderMap,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<McpReply, GatewayError>> + Send + 'a>> {
    Box::pin(bridge.serve(m, headers, None, None))
}

/// The capability a client needs to be asked `method`.
fn capability_of(method: &str) -> &'static str {
    match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        _ => "experimental",
    }
}

/// A stateless request with the envelope and its routing headers.
pub(super) fn envelope_request(
    method: &str,
    params: Value,
    id: &str,
    caps: &Map<String, Value>,
    client_info: Option<&Value>,
    log_level: Option<&str>,
) -> (Message, HeaderMap) {
    let mut params = match params {
        Value::Object(p) => p,
        _ => Map::new(),
    };
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(META_PROTOCOL_VERSION.into(), json!(ProtocolVersion::LATEST.as_str()));
        meta.insert(META_CLIENT_CAPABILITIES.into(), Value::Object(caps.clone()));
        meta.insert(
            META_CLIENT_INFO.into(),
            client_info.cloned().unwrap_or_else(|| json!({"name": "shadowcat", "version": env!("CARGO_PKG_VERSION")})),
        );
        if let Some(level) = log_level {
            meta.insert(META_LOG_LEVEL.into(), json!(level));
        }
    }
    let id_json = id_value(id);
    let m = Message::from_value(&json!({"jsonrpc": "2.0", "id": id_json, "method": method, "params": params}));
    let headers = routing_headers(&m);
    (m, headers)
}

/// The 2026-07-28 routing headers of a stateless request, from its body:
/// `MCP-Protocol-Version`, `Mcp-Method` and (for the methods that name something)
/// `Mcp-Name`, encoded when it is not plain ASCII.
pub fn routing_headers(m: &Message) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let version = modern::declared_version(m).unwrap_or_else(|| ProtocolVersion::LATEST.as_str().to_owned());
    if let Ok(v) = HeaderValue::from_str(&version) {
        headers.insert("mcp-protocol-version", v);
    }
    if let Some(v) = m.method().and_then(|method| HeaderValue::from_str(method).ok()) {
        headers.insert(modern::METHOD_HEADER, v);
    }
    if let Some(name) = modern::name_value(m) {
        if let Ok(v) = HeaderValue::from_str(&encode_header_value(&name)) {
            headers.insert(modern::NAME_HEADER, v);
        }
    }
    headers
}

/// A routing header's value as the 2026-07-28 transport sends it: plain when it is
/// safe visible ASCII, else `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    let visible = value.bytes().all(|b| (0x20..=0x7e).contains(&b) || b == b'\t');
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let looks_encoded = value.starts_with("=?base64?") && value.ends_with("?=");
    let plain = !value.is_empty() && visible && !padded && !looks_encoded;
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value.as_bytes()))
    }
}

// === impl SessionSide for the gateway-owned session ===

/// The upstream side of a 2025 client's session on a 2026-07-28-only upstream.
pub struct OwnedSession(pub Arc<ModernSession>);

impl crate::upstream::SessionSide for OwnedSession {
    fn send<'a>(
        &'a self,
        m: Message,
        headers: &'a HeaderMap,
    ) -> crate::upstream::SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(self.0.send(m, headers))
    }

    fn open_stream<'a>(
        &'a self,
        _headers: &'a HeaderMap,
    ) -> crate::upstream::SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(std::future::ready(self.0.open_stream()))
    }

    fn is_alive(&self) -> bool {
        self.0.is_alive()
    }

    fn close(&self) -> crate::upstream::SideFuture<'_, ()> {
        Box::pin(self.0.close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip() {
        for value in ["echo", "Hello, 世界", " padded ", "=?base64?abc?=", "tab\tinside"] {
            let encoded = encode_header_value(value);
            assert_eq!(modern::decode_header_value(encoded.as_bytes()).as_deref(), Ok(value), "{encoded}");
        }
        assert_eq!(encode_header_value("test://static-text"), "test://static-text");
    }
}
