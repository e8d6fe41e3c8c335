//! What a session handle and its reply streams share: the upstream session id, the
//! protocol version, the session's state, the requests in flight, and how requests
//! to the upstream are built.
//!
//! Every request carries the client headers the allow-list lets through (`OutboundHeaders`), then the upstream's static
//! headers (which win over client headers of the same name), then the transport
//! headers the gateway owns (`Accept`, `Content-Type`, `Mcp-Session-Id`,
//! `Last-Event-ID`, and `MCP-Protocol-Version` when the client sent none).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::watch;

use super::Target;
use crate::error::GatewayError;
use crate::protocol::Message;

/// `Mcp-Session-Id`.
const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
const VERSION_HEADER: &str = "mcp-protocol-version";
/// `Last-Event-ID`.
const LAST_EVENT_ID: &str = "last-event-id";
/// What a POST accepts.
pub(super) const ACCEPT_POST: &str = "application/json, text/event-stream";
/// What a GET accepts.
pub(super) const ACCEPT_SSE: &str = "text/event-stream";
/// Bytes of an error answer read to tell what it says.
pub(super) const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Bound on the requests the gateway sends on its own (DELETE, cancellations).
pub(super) const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The session serves.
const ALIVE: u8 = 0;
/// The upstream no longer knows the session.
const GONE: u8 = 1;
/// The gateway ended the session.
const CLOSED: u8 = 2;

/// State shared by a session handle and its reply streams.
pub(crate) struct SessionShared {
    /// The upstream.
    pub target: Arc<Target>,
    /// The gateway's session id, for logs.
    pub tag: String,
    upstream_id: Mutex<Option<HeaderValue>>,
    /// The protocol version for requests whose client headers have none (the last
    /// the client sent, else the one negotiated at initialize).
    version: Mutex<Option<HeaderValue>>,
    state: AtomicU8,
    /// Turns true when the session ends, for whatever reason: open streams stop.
    closed: watch::Sender<bool>,
    /// Requests in flight by id; each sender turns true if the client cancels it.
    in_flight: Mutex<HashMap<Box<str>, watch::Sender<bool>>>,
}

/// A request in flight: its id stays registered (and counts against
/// `max_in_flight`) until this is dropped.
pub(crate) struct InFlight {
    shared: Arc<SessionShared>,
    id: Box<str>,
    /// Turns true when the client cancels the request.
    pub cancelled: watch::Receiver<bool>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.lock().remove(&self.id);
    }
}

impl SessionShared {
    /// A session of `target`, alive, with no upstream session yet.
    pub fn new(target: Arc<Target>, tag: String) -> Self {
        let (closed, _) = watch::channel(false);
        SessionShared {
            target,
            tag,
            upstream_id: Mutex::new(None),
            version: Mutex::new(None),
            state: AtomicU8::new(ALIVE),
            closed,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Registers request `id` as in flight, within `max_in_flight`.
    pub fn begin(self: &Arc<Self>, id: &str) -> Result<InFlight, GatewayError> {
        let max = self.target.limits.max_in_flight;
        let mut in_flight = self.in_flight.lock();
        if in_flight.contains_key(id) {
            return Err(GatewayError::InvalidRequest(format!("request id {id} is already in flight in this session")));
        }
        if in_flight.len() >= max {
            return Err(GatewayError::Overloaded(format!(
                "{max} requests already in flight in this session (max_in_flight)"
            )));
        }
        let (tx, cancelled) = watch::channel(false);
        in_flight.insert(id.into(), tx);
        Ok(InFlight { shared: self.clone(), id: id.into(), cancelled })
    }

    /// The client cancelled a request (`notifications/cancelled`): its reply stream ends.
    pub fn client_cancelled(&self, m: &Message) {
        if let Some(id) = m.param_key("requestId") {
            if let Some(tx) = self.in_flight.lock().get(id.as_str()) {
                tx.send_replace(true);
            }
        }
    }

    /// Whether the session can serve: the upstream knows it and it has not ended.
    pub fn is_alive(&self) -> bool {
        self.state.load(Ordering::SeqCst) == ALIVE
    }

    /// A receiver that turns true when the session ends.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The gateway ends the session: open streams stop. True if it was alive (and
    /// so the upstream should hear of it).
    pub fn end(&self) -> bool {
        let was = self.state.swap(CLOSED, Ordering::SeqCst);
        self.closed.send_replace(true);
        was == ALIVE
    }

    /// The upstream forgot the session: it ends here too.
    pub fn mark_gone(&self, status: StatusCode) {
        if self.state.compare_exchange(ALIVE, GONE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            tracing::info!(upstream = %self.target.name, url = %self.target.display, session = %self.tag, %status,
                "the upstream no longer knows this session; ending it");
            self.closed.send_replace(true);
        }
    }

    /// Whether the upstream assigned a session id (at initialize).
    pub fn has_upstream_id(&self) -> bool {
        self.upstream_id.lock().is_some()
    }

    /// The request headers: the client's the allow-list lets through, then static,
    /// then ours. The one place a client's headers leave for an upstream.
    fn headers(&self, client: &HeaderMap, accept: &'static str, json: bool, last_event_id: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(client.len() + self.target.static_headers.len() + 5);
        self.target.outbound.copy(client, &mut h);
        for name in self.target.static_headers.keys() {
            h.remove(name);
        }
        for (name, value) in &self.target.static_headers {
            h.append(name.clone(), value.clone());
        }
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        if json {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(id) = self.upstream_id.lock().clone() {
            h.insert(SESSION_HEADER, id);
        }
        if !h.contains_key(VERSION_HEADER) {
            if let Some(v) = self.version.lock().clone() {
                h.insert(VERSION_HEADER, v);
            }
        }
        if let Some(last) = last_event_id.and_then(|l| HeaderValue::from_str(l).ok()) {
            h.insert(LAST_EVENT_ID, last);
        }
        h
    }

    /// A request to the upstream with the session's headers.
    pub fn request(
        &self,
        method: Method,
        client: &HeaderMap,
        accept: &'static str,
        body: Option<Bytes>,
        last_event_id: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, GatewayError> {
        let headers = self.headers(client, accept, body.is_some(), last_event_id);
        let mut req = Request::builder()
            .method(method)
            .uri(self.target.uri.clone())
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| {
                GatewayError::Internal(format!("cannot build a request to upstream {}: {e}", self.target.name))
            })?;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// POSTs one message.
    pub async fn post(&self, m: &Message, client: &HeaderMap) -> Result<Response<Incoming>, GatewayError> {
        let req = self.request(Method::POST, client, ACCEPT_POST, Some(m.bytes().clone()), None)?;
        self.target.exchange(req, &self.tag).await
    }

    /// GETs the server-to-client stream, or resumes one after `last_event_id`.
    pub async fn get(
        &self,
        client: &HeaderMap,
        last_event_id: Option<&str>,
    ) -> Result<Response<Incoming>, GatewayError> {
        let req = self.request(Method::GET, client, ACCEPT_SSE, None, last_event_id)?;
        self.target.exchange(req, &self.tag).await
    }

    /// Tells the upstream (in the background) that request `id` is cancelled.
    pub fn cancel(self: &Arc<Self>, id: &str, client: &HeaderMap, reason: &str) {
        if !self.is_alive() {
            return;
        }
        let request_id = serde_json::from_str::<serde_json::Value>(id).unwrap_or(serde_json::Value::Null);
        let note = Message::notification(
            "notifications/cancelled",
            serde_json::json!({ "requestId": request_id, "reason": reason }),
        );
        let this = self.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let bound = this.target.limits.request_timeout.min(CONTROL_TIMEOUT);
            match tokio::time::timeout(bound, this.post(&note, &client)).await {
                Ok(Ok(resp)) => {
                    tracing::debug!(upstream = %this.target.name, session = %this.tag, status = %resp.status(), "sent notifications/cancelled")
                }
                Ok(Err(_)) => {} // logged by exchange
                Err(_) => {
                    tracing::debug!(upstream = %this.target.name, session = %this.tag, "notifications/cancelled timed out")
                }
            }
        });
    }

    /// Keeps the `Mcp-Session-Id` the upstream assigned at initialize.
    pub fn adopt_session_id(&self, resp: &Response<Incoming>) {
        // Copied, not cloned: a clone would share (and so keep alive) hyper's whole
        // read buffer for as long as the session lives.
        if let Some(Ok(mut id)) = resp.headers().get(SESSION_HEADER).map(|v| HeaderValue::from_bytes(v.as_bytes())) {
            id.set_sensitive(true);
            *self.upstream_id.lock() = Some(id);
            tracing::debug!(upstream = %self.target.name, session = %self.tag, "upstream session established");
        }
    }

    /// Keeps the `MCP-Protocol-Version` the client sent last, for the requests the
    /// gateway sends on its own (resumption, cancellation, DELETE).
    pub fn remember_version(&self, client: &HeaderMap) {
        if let Some(v) = client.get(VERSION_HEADER) {
            let mut current = self.version.lock();
            if current.as_ref().map(HeaderValue::as_bytes) != Some(v.as_bytes()) {
                // Copied for the same reason as the session id.
                *current = HeaderValue::from_bytes(v.as_bytes()).ok();
            }
        }
    }

    /// Learns the negotiated version from the `initialize` response, for requests
    /// whose client sends no `MCP-Protocol-Version`.
    pub fn learn_version(&self, response: &Message) {
        #[derive(Deserialize)]
        struct InitResult {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        #[derive(Deserialize)]
        struct Envelope {
            result: InitResult,
        }
        let Ok(env) = serde_json::from_slice::<Envelope>(response.bytes()) else { return };
        if let Ok(v) = HeaderValue::from_str(&env.result.protocol_version) {
            self.version.lock().get_or_insert(v);
        }
    }

    /// Whether an error answer means the upstream no longer knows the session.
    pub fn session_gone(&self, status: StatusCode, body: &[u8], sent_session: bool) -> bool {
        if !sent_session {
            return false;
        }
        if status == StatusCode::NOT_FOUND {
            return true;
        }
        if status != StatusCode::BAD_REQUEST {
            return false;
        }
        let text = String::from_utf8_lossy(body).to_ascii_lowercase();
        text.contains("session")
            && ["unknown", "invalid", "not found", "no valid", "expired", "terminated"].iter().any(|w| text.contains(w))
    }
}

/// Whether a response is an SSE stream.
pub(super) fn is_sse(resp: &Response<Incoming>) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// Why a body could not be read.
pub(super) enum ReadError {
    TooLarge,
    Failed(String),
}

/// Reads a whole body of at most `limit` bytes.
pub(super) async fn read_body(resp: Response<Incoming>, limit: usize) -> Result<Bytes, ReadError> {
    let declared = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    match Limited::new(resp.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Failed(e.to_string())),
    }
}

/// The start of a body, for logs.
pub(super) fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}
