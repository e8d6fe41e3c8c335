//! The pool of initialized sessions of a legacy upstream that serves stateless
//! clients, one set per declared client capability set.
//!
//! Each pooled session is initialized by the gateway (declaring the capability set it
//! is keyed by) and has its server-to-client stream open, read by a task of its own:
//! server-to-client requests go to the one call on that session that may ask for
//! input (see [`Pooled::input`]), or are answered by the gateway when there is none
//! (`ping` with `{}`, anything else, `roots/list` too, with an error: no client is
//! there to ask, and an empty roots list would be a guess a server may keep);
//! `list_changed` and `resources/updated` notifications go to the bridge's listeners.
//!
//! The bridge's choice of a session from the pool is here too: by capability set, with
//! the input slot when the call may ask the client (`Bridge::session_for`), the least
//! busy process of a stateless stdio upstream (`Bridge::modern_session`), and closing
//! idle sessions (`Bridge::close_idle`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::{Bridge, SLOT_WAIT};
use crate::error::GatewayError;
use crate::protocol::id_value;
use crate::protocol::modern::META_SUBSCRIPTION_ID;
use crate::protocol::{codes, Message, MessageKind, ProtocolVersion};
use crate::reply::{McpReply, MessageStream, ReplyBody};
use crate::upstream::{Upstream, UpstreamSession};

/// What the upstream said about itself at initialize.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `serverInfo`.
    pub server_info: Value,
    /// `capabilities`.
    pub capabilities: Map<String, Value>,
    /// `instructions`.
    pub instructions: Option<String>,
}

/// One initialized upstream session in the pool.
pub struct Pooled {
    /// For logs.
    pub tag: String,
    /// The session.
    pub session: UpstreamSession,
    /// Held by the one call that may receive the session's server-to-client requests
    /// (a stdio server does not say which call a request belongs to).
    pub input: Arc<tokio::sync::Mutex<()>>,
    /// Where server-to-client requests and log messages of the input call go.
    pub inbox: Mutex<Option<mpsc::Sender<Message>>>,
    /// Requests in flight.
    pub busy: AtomicUsize,
    /// Last time a request was sent.
    pub last_used: Mutex<Instant>,
    /// Asks the reader of the server-to-client stream to pass on everything the process
    /// has sent so far, then to answer (see [`Pooled::flush`]).
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    seq: AtomicU64,
    /// Open `subscriptions/listen` requests of a stateless (2026-07-28) stdio server, by
    /// the upstream request id (JSON text): where their frames go.
    pub listens: Mutex<HashMap<String, mpsc::Sender<Message>>>,
}

impl Pooled {
    /// A request id unique on this session (JSON text).
    pub fn next_id(&self, kind: &str) -> String {
        format!("\"sc-{kind}-{}\"", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a message of the gateway's own to the upstream session.
    pub async fn send(&self, m: Message) -> Result<McpReply, GatewayError> {
        self.send_for_client(m, &HeaderMap::new()).await
    }

    /// Sends a client's request (its ids rewritten) with the client's headers; which
    /// of them reach the upstream is decided where the request leaves (see
    /// `upstream::OutboundHeaders`).
    /// The client's 2026-07-28 routing headers (`MCP-Protocol-Version`, `Mcp-Method`,
    /// `Mcp-Name`, `Mcp-Param-*`) describe its stateless request, not the session-era
    /// request that leaves: they stay behind, and the session's own version goes.
    pub async fn send_for_client(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        *self.last_used.lock() = Instant::now();
        let mut kept = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let n = name.as_str();
            if !(n == "mcp-protocol-version" || n == "mcp-method" || n == "mcp-name" || n.starts_with("mcp-param-")) {
                kept.append(name.clone(), value.clone());
            }
        }
        self.session.send(m, &kept).await
    }

    /// Answers a server-to-client request (`id` is its JSON text).
    pub async fn answer(&self, id: &str, result: Result<Value, (i32, String)>) {
        let m = match result {
            Ok(result) => Message::result_response(Some(id), &result),
            Err((code, message)) => Message::error_response(Some(id), code, &message, None),
        };
        if let Err(e) = self.send(m).await {
            tracing::debug!(session = %self.tag, error = %e, "could not answer the upstream's request");
        }
    }

    /// A barrier: resolves once every server-to-client message the process sent before
    /// now has been handed on (to the input call's inbox, or answered). A stdio process
    /// writes its messages in order, but a call gets its response on its own stream and
    /// log messages through the session's stream and the reader task, so without this
    /// the response can overtake the log messages sent before it.
    pub fn flush(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        // No reader (no server-to-client stream): the receiver resolves at once.
        let _ = self.flush.send(tx);
        rx
    }

    /// Tells the upstream a request is cancelled.
    pub async fn cancel(&self, id: &str, reason: &str) {
        let id_json = id_value(id);
        let note = Message::notification("notifications/cancelled", json!({"requestId": id_json, "reason": reason}));
        if let Err(e) = self.send(note).await {
            tracing::debug!(session = %self.tag, error = %e, "could not send notifications/cancelled upstream");
        }
    }
}

/// Opens and initializes a pooled session declaring `capabilities`.
pub async fn open(
    upstream: &Upstream,
    tag: String,
    capabilities: Map<String, Value>,
    events: broadcast::Sender<Message>,
) -> Result<(Arc<Pooled>, Facts), GatewayError> {
    let session = upstream.open(&tag, crate::upstream::WireOrigin::Pooled).await?;
    let (pooled, flushes) = new_pooled(tag, session);
    match initialize(&pooled, capabilities, events, flushes).await {
        Ok(facts) => Ok((pooled, facts)),
        Err(e) => {
            pooled.session.close().await;
            Err(e)
        }
    }
}

fn new_pooled(tag: String, session: UpstreamSession) -> (Arc<Pooled>, mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
    let (flush, flushes) = mpsc::unbounded_channel();
    let pooled = Arc::new(Pooled {
        tag,
        session,
        input: Arc::new(tokio::sync::Mutex::new(())),
        inbox: Mutex::new(None),
        busy: AtomicUsize::new(0),
        last_used: Mutex::new(Instant::now()),
        flush,
        seq: AtomicU64::new(1),
        listens: Mutex::new(HashMap::new()),
    });
    (pooled, flushes)
}

/// Opens a session of a stateless (2026-07-28) stdio server: no handshake; its
/// server-to-client stream is read for `subscriptions/listen` frames.
pub async fn open_raw(
    upstream: &Upstream,
    tag: String,
    events: broadcast::Sender<Message>,
) -> Result<Arc<Pooled>, GatewayError> {
    let session = upstream.open(&tag, crate::upstream::WireOrigin::Pooled).await?;
    session.set_stateless();
    let (pooled, flushes) = new_pooled(tag, session);
    listen(&pooled, events, flushes).await;
    Ok(pooled)
}

async fn initialize(
    pooled: &Arc<Pooled>,
    capabilities: Map<String, Value>,
    events: broadcast::Sender<Message>,
    flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) -> Result<Facts, GatewayError> {
    let id = pooled.next_id("init");
    let init = Message::from_value(&json!({
        "jsonrpc": "2.0",
        "id": id_value(&id),
        "method": "initialize",
        "params": {
            "protocolVersion": ProtocolVersion::LATEST_HANDSHAKE.as_str(),
            "capabilities": capabilities,
            "clientInfo": { "name": "shadowcat-bridge", "version": env!("CARGO_PKG_VERSION") },
        },
    }));
    let reply = pooled.send(init).await?;
    let response = reply.first_response(&id).await.ok_or_else(|| GatewayError::UpstreamUnavailable {
        upstream: pooled.tag.clone(),
        detail: "it did not answer initialize".into(),
    })?;
    let value = response.to_value().unwrap_or_default();
    let Some(result) = value.get("result").and_then(Value::as_object) else {
        return Err(GatewayError::UpstreamUnavailable {
            upstream: pooled.tag.clone(),
            detail: format!("it refused initialize: {}", value.get("error").cloned().unwrap_or_default()),
        });
    };
    let facts = Facts {
        server_info: result.get("serverInfo").cloned().unwrap_or_else(|| json!({"name": "unknown", "version": "0"})),
        capabilities: result.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default(),
        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
    };
    pooled.send(Message::notification("notifications/initialized", json!({}))).await?;
    if facts.capabilities.contains_key("logging") {
        // Every message comes to the gateway, which forwards each to the stateless
        // requests that asked for its level.
        let id = pooled.next_id("log");
        let set = Message::from_value(&json!({
            "jsonrpc": "2.0", "id": id_value(&id),
            "method": "logging/setLevel", "params": {"level": "debug"},
        }));
        if let Ok(reply) = pooled.send(set).await {
            let _ = reply.first_response(&id).await;
        }
    }
    listen(pooled, events, flushes).await;
    Ok(facts)
}

/// Opens the session's server-to-client stream, if it has one, and reads it in the
/// background (`read_unsolicited`).
async fn listen(
    pooled: &Arc<Pooled>,
    events: broadcast::Sender<Message>,
    flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    match pooled.session.open_stream(&HeaderMap::new()).await {
        Ok(McpReply { body: ReplyBody::Stream(stream), .. }) => {
            tokio::spawn(read_unsolicited(pooled.clone(), stream, events, flushes));
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(session = %pooled.tag, error = %e, "no server-to-client stream"),
    }
}

/// Reads the session's server-to-client stream until it ends; on a flush, hands on
/// what the stream already holds, then answers it.
async fn read_unsolicited(
    pooled: Arc<Pooled>,
    mut stream: MessageStream,
    events: broadcast::Sender<Message>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    loop {
        let m = tokio::select! {
            m = stream.next() => match m {
                Some(m) => m,
                None => break,
            },
            Some(done) = flushes.recv() => {
                // The process wrote these before whatever prompted the flush.
                while let Some(Some(m)) = stream.next().now_or_never() {
                    unsolicited(&pooled, m, &events).await;
                }
                let _ = done.send(());
                continue;
            }
        };
        unsolicited(&pooled, m, &events).await;
    }
    tracing::debug!(session = %pooled.tag, "pooled session's server-to-client stream ended");
}

/// One message of the session's server-to-client stream.
async fn unsolicited(pooled: &Pooled, m: Message, events: &broadcast::Sender<Message>) {
    if to_listen(pooled, &m).await {
        return;
    }
    let method = m.method().unwrap_or_default().to_owned();
    match m.kind() {
        MessageKind::Request | MessageKind::Notification if to_input_call(pooled, &m).await => {}
        MessageKind::Request => {
            let id = m.id_key().unwrap_or("null").to_owned();
            let answer = match method.as_str() {
                "ping" => Ok(json!({})),
                other => Err((
                    codes::INVALID_REQUEST,
                    format!("{other}: no client request is in progress on this session to ask"),
                )),
            };
            pooled.answer(&id, answer).await;
        }
        MessageKind::Notification
            if method.ends_with("/list_changed") || method == "notifications/resources/updated" =>
        {
            let _ = events.send(m);
        }
        _ => {}
    }
}

/// A frame of an open `subscriptions/listen` (tagged with its id), or the server's
/// `notifications/cancelled` ending one: to that listen.
async fn to_listen(pooled: &Pooled, m: &Message) -> bool {
    if m.kind() != MessageKind::Notification {
        return false;
    }
    let key = if m.method() == Some("notifications/cancelled") {
        m.param_key("requestId")
    } else {
        m.params::<Map<String, Value>>()
            .and_then(|p| p.get("_meta").and_then(|meta| meta.get(META_SUBSCRIPTION_ID)).map(|id| id.to_string()))
    };
    let Some(key) = key else { return false };
    let ending = m.method() == Some("notifications/cancelled");
    let sink = if ending { pooled.listens.lock().remove(&key) } else { pooled.listens.lock().get(&key).cloned() };
    match sink {
        Some(tx) => {
            let _ = tx.send(m.clone()).await;
            true
        }
        None => false,
    }
}

async fn to_input_call(pooled: &Pooled, m: &Message) -> bool {
    let is_for_call = m.is_request() || m.method() == Some("notifications/message");
    if !is_for_call {
        return false;
    }
    let inbox = pooled.inbox.lock().clone();
    match inbox {
        Some(tx) => tx.send(m.clone()).await.is_ok(),
        None => false,
    }
}

// === impl Bridge: choosing a pooled session ===

impl Bridge {
    /// A pooled session for the capability set `caps`; with `for_input`, one whose
    /// input slot is free (waiting for one when the pool is full), returned with the slot.
    /// `owner`: the principal the session is for (`None`: anyone's); principals get
    /// sessions of their own unless `bridge.share_pool_across_principals`.
    pub(super) async fn session_for(
        self: &Arc<Self>,
        caps: &Map<String, Value>,
        for_input: bool,
        owner: Option<&str>,
    ) -> Result<(Arc<Pooled>, Option<tokio::sync::OwnedMutexGuard<()>>), GatewayError> {
        let caps_key = pool_key(caps);
        let owner = owner.filter(|_| !self.settings.config.share_pool_across_principals);
        let key = match owner {
            Some(owner) => format!("{owner}{OWNER_SEPARATOR}{caps_key}"),
            None => caps_key.clone(),
        };
        let max = self.pool_config.max.max(1);
        loop {
            let sessions: Vec<Arc<Pooled>> = {
                let mut pools = self.pools.lock();
                let list = pools.entry(key.clone()).or_default();
                list.retain(|p| p.session.is_alive());
                list.clone()
            };
            if for_input {
                for p in &sessions {
                    if let Ok(slot) = p.input.clone().try_lock_owned() {
                        return Ok((p.clone(), Some(slot)));
                    }
                }
            } else if let Some(p) = sessions.iter().min_by_key(|p| p.busy.load(Ordering::Relaxed)) {
                if sessions.len() >= max || p.busy.load(Ordering::Relaxed) == 0 {
                    return Ok((p.clone(), None));
                }
            }
            if sessions.len() < max {
                let _one = self.creating.lock().await;
                let count =
                    self.pools.lock().get(&key).map_or(0, |l| l.iter().filter(|p| p.session.is_alive()).count());
                if count < max {
                    let n = self.next_session.fetch_add(1, Ordering::Relaxed);
                    let tag = format!("{}-pool-{n}", self.name);
                    let (p, facts) = open(&self.upstream, tag, normalized_caps(caps), self.events.clone()).await?;
                    tracing::info!(upstream = %self.name, session = %p.tag, capabilities = %caps_key, per_principal = owner.is_some(), "pooled upstream session opened");
                    self.facts.lock().get_or_insert(facts);
                    self.pools.lock().entry(key.clone()).or_default().push(p.clone());
                    let slot = if for_input { p.input.clone().try_lock_owned().ok() } else { None };
                    return Ok((p, slot));
                }
                continue;
            }
            // Full: wait (bounded) for the least busy session's input slot.
            // A waiter counts as busy, so waiters spread over the sessions (shortest queue).
            let Some(p) = sessions.iter().min_by_key(|p| p.busy.load(Ordering::Relaxed)).cloned() else { continue };
            p.busy.fetch_add(1, Ordering::Relaxed);
            let waited = tokio::time::timeout(SLOT_WAIT, p.input.clone().lock_owned()).await;
            p.busy.fetch_sub(1, Ordering::Relaxed);
            let Ok(slot) = waited else {
                return Err(GatewayError::Overloaded(format!(
                    "all {max} pooled sessions of upstream {} are busy with calls (some may be waiting for client \
                     input); raise pool.max",
                    self.name
                )));
            };
            if p.session.is_alive() {
                return Ok((p, Some(slot)));
            }
        }
    }

    /// The least busy session of a stateless (2026-07-28) stdio upstream, opening one
    /// (no handshake) while there are fewer than `pool.max`.
    pub(super) async fn modern_session(self: &Arc<Self>) -> Result<Arc<Pooled>, GatewayError> {
        const KEY: &str = "stateless";
        let max = self.pool_config.max.max(1);
        // Looked at once without the lock, then again under it: a burst of requests
        // that all found the pool short must not each open a process.
        let mut creating = None;
        loop {
            let sessions: Vec<Arc<Pooled>> = {
                let mut pools = self.pools.lock();
                let list = pools.entry(KEY.into()).or_default();
                list.retain(|p| p.session.is_alive());
                list.clone()
            };
            let least = sessions.iter().min_by_key(|p| p.busy.load(Ordering::Relaxed)).cloned();
            if let Some(p) = &least {
                if sessions.len() >= max || p.busy.load(Ordering::Relaxed) == 0 {
                    return Ok(p.clone());
                }
            }
            if creating.is_none() {
                creating = Some(self.creating.lock().await);
                continue;
            }
            let n = self.next_session.fetch_add(1, Ordering::Relaxed);
            let p = open_raw(&self.upstream, format!("{}-stateless-{n}", self.name), self.events.clone()).await?;
            tracing::info!(upstream = %self.name, session = %p.tag, "stateless upstream process opened");
            self.pools.lock().entry(KEY.into()).or_default().push(p.clone());
            return Ok(p);
        }
    }

    /// Closes idle sessions beyond `pool.min` and every session at shutdown.
    pub async fn close_idle(&self, everything: bool) {
        let idle = self.pool_config.idle_timeout;
        let mut closing = Vec::new();
        {
            let mut pools = self.pools.lock();
            for (key, list) in pools.iter_mut() {
                // `pool.min` is kept warm for anyone; a principal's own sessions all go when idle.
                let floor = if key.contains(OWNER_SEPARATOR) { 0 } else { self.pool_config.min };
                let mut keep = Vec::new();
                for p in list.drain(..) {
                    let idle_now = p.busy.load(Ordering::Relaxed) == 0 && p.last_used.lock().elapsed() >= idle;
                    if everything || !p.session.is_alive() || (idle_now && keep.len() >= floor) {
                        closing.push(p);
                    } else {
                        keep.push(p);
                    }
                }
                *list = keep;
            }
            pools.retain(|key, list| !list.is_empty() || !key.contains(OWNER_SEPARATOR));
        }
        for p in closing {
            if everything {
                tracing::debug!(session = %p.tag, "closing pooled upstream session");
            } else {
                tracing::info!(upstream = %self.name, session = %p.tag, "pooled upstream session closed (idle or gone)");
            }
            p.session.close().await;
        }
    }
}

/// Between the principal and the capabilities in a pool key of a principal's own.
const OWNER_SEPARATOR: char = '\u{1f}';

/// The client capabilities a pooled session declares: the ones that let a server ask
/// the client something (`sampling`, `elicitation`, `roots`), as declared.
fn normalized_caps(caps: &Map<String, Value>) -> Map<String, Value> {
    caps.iter()
        .filter(|(k, _)| matches!(k.as_str(), "sampling" | "elicitation" | "roots"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The pool key of a capability set.
fn pool_key(caps: &Map<String, Value>) -> String {
    crate::protocol::canonical_json(&Value::Object(normalized_caps(caps)))
}
