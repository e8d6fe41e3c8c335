//! One stateless request served by a pooled legacy session, and the multi-round-trip
//! (MRTR) emulation for the methods that may ask the client for input.
//!
//! A call is driven by a task of its own that relays the upstream's answer to the
//! client's stream. When the upstream asks the client something (elicitation,
//! sampling, roots) the task waits `bridge.input_settle` for further questions, then
//! *parks* the call (the upstream call stays open, its session's input slot held) and
//! answers the client `input_required` with one `inputRequests` entry per question and
//! a sealed `requestState`. The retry opens the state, takes the parked call (once),
//! feeds each answer back as the JSON-RPC response to its question, and drives the
//! call on: to the result, or to another round. A call nobody resumes is cancelled
//! upstream after `bridge.state_ttl`, which frees its session.
//!
//! Keys of `inputRequests`: a legacy server cannot name them, so the gateway takes
//! `params._meta["dev.shadowcat/inputKey"]` of the server's request when present (and
//! unique), else mints `elicitation`, `sampling` or `roots` (with `_2`, `_3`, … when
//! asked twice in a round).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, OwnedMutexGuard};

use super::pool::Pooled;
use super::seal::{request_digest, State};
use super::{now_ms, result_message, Bridge};
use crate::error::GatewayError;
use crate::pipeline::{McpReply, MessageStream, ReplyBody};
use crate::protocol::id_value;
use crate::protocol::modern::{Envelope, META_SERVER_INFO};
use crate::protocol::{codes, Message, MessageKind};

/// `_meta` key a legacy server may put on its request to name its `inputRequests` key.
pub const INPUT_KEY_HINT: &str = "dev.shadowcat/inputKey";
/// Messages buffered towards the client.
const OUT_BUFFER: usize = 64;
/// The log levels, lowest first.
const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// A question the upstream asked and the client has not answered.
struct Question {
    key: String,
    /// The upstream request's id (JSON text).
    upstream_id: String,
    /// `{method, params}` as the client sees it.
    request: Value,
}

/// A call in progress on a pooled session.
struct Call {
    pooled: Arc<Pooled>,
    method: String,
    /// The upstream request's id (JSON text).
    upstream_id: String,
    /// Progress token sent upstream, and the one the current client request used.
    upstream_token: Option<String>,
    client_token: Option<String>,
    log_level: Option<usize>,
    capabilities: Map<String, Value>,
    digest: String,
    round: u32,
    replies: MessageStream,
    inbox: Option<mpsc::Receiver<Message>>,
    questions: Vec<Question>,
    /// Answers the client gave before being asked (a first request with
    /// `inputResponses`).
    presupplied: Map<String, Value>,
    /// The client's params, for sending the call again.
    params: Map<String, Value>,
    /// The upstream call ended asking for a URL elicitation (-32042): the retry sends
    /// the call again instead of answering questions.
    reissue: bool,
    stamp: super::Stamp,
    /// Who asked (for the per-client bound of parked calls).
    client: Option<Arc<str>>,
    /// A stateless (2026-07-28) upstream: the request and answer pass as they are, only
    /// the id and progress token rewritten.
    modern: bool,
    /// This (stateless) call receives the process's log messages (see `start_modern`).
    log_inbox: bool,
    /// The session's input slot, held while the call runs (not while it is parked).
    slot: Option<OwnedMutexGuard<()>>,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.pooled.busy.fetch_sub(1, Ordering::Relaxed);
        self.release_input();
        if self.log_inbox {
            *self.pooled.inbox.lock() = None;
        }
    }
}

impl Call {
    /// Gives up the session's input slot (and with it the session's server-to-client
    /// requests).
    fn release_input(&mut self) {
        if self.slot.take().is_some() {
            *self.pooled.inbox.lock() = None;
        }
    }

    /// Takes the session's input slot again (waiting, bounded, for the call holding
    /// it) and becomes the receiver of the session's server-to-client requests.
    async fn take_input(&mut self) -> Result<(), GatewayError> {
        let slot =
            tokio::time::timeout(super::SLOT_WAIT, self.pooled.input.clone().lock_owned()).await.map_err(|_| {
                GatewayError::Overloaded(format!(
                    "upstream session {} is busy with another call; retry later",
                    self.pooled.tag
                ))
            })?;
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        *self.pooled.inbox.lock() = Some(tx);
        self.inbox = Some(rx);
        self.slot = Some(slot);
        Ok(())
    }
}

impl Call {
    /// Cancels the upstream call and answers its open questions, so the upstream
    /// handler ends.
    async fn cancel(self, reason: &str) {
        for q in self.questions.iter().filter(|q| !q.upstream_id.is_empty()) {
            self.pooled.answer(&q.upstream_id, Err((codes::INTERNAL_ERROR, reason.to_owned()))).await;
        }
        self.pooled.cancel(&self.upstream_id, reason).await;
    }
}

/// Calls parked waiting for the client's retry.
#[derive(Default)]
pub(super) struct ParkedCalls {
    calls: Mutex<HashMap<u64, Call>>,
    next: AtomicU64,
}

/// What ended a drive.
enum Step {
    /// The final response went to the client.
    Done,
    /// The client closed its stream: the call is cancelled.
    ClientGone,
    /// Questions are waiting: park.
    Park,
    /// The call cannot go on (the client gets the message).
    Refused(Message),
}

/// Starts serving a stateless request on the pool. `input` for the methods that may
/// answer `input_required`.
pub(super) async fn start(
    bridge: Arc<Bridge>,
    m: Message,
    envelope: Envelope,
    input: bool,
    client: Option<Arc<str>>,
    headers: &HeaderMap,
) -> Result<McpReply, GatewayError> {
    let method = m.method().unwrap_or_default().to_owned();
    let client_id = m.id_key().unwrap_or("null").to_owned();
    let params: Map<String, Value> = m.params().unwrap_or_default();
    let digest = request_digest(&method, Some(&params));
    let log_level = envelope.log_level.as_deref().and_then(level_index);
    if input {
        match params.get("requestState") {
            Some(Value::String(state)) => {
                let state = state.clone();
                return resume(bridge, &m, &params, &state, envelope, digest, client_id, headers).await;
            }
            Some(_) => return Err(GatewayError::InvalidParams("requestState must be a string".into())),
            None => {}
        }
        if params.get("inputResponses").is_some_and(|r| !r.is_object()) {
            return Err(GatewayError::InvalidParams("inputResponses must be an object".into()));
        }
    }
    // A pooled session the upstream no longer knows (it restarted, or expired it) did
    // not serve the request: it is sent once more, on a new session.
    let mut retried = false;
    loop {
        let (pooled, slot) = bridge.session_for(&envelope.capabilities, input).await?;
        let facts = bridge.facts().await?;
        let upstream_id = pooled.next_id("req");
        let client_token = m.progress_token();
        let upstream_token = client_token.as_ref().map(|_| pooled.next_id("progress"));
        let request = upstream_request(&method, &params, &upstream_id, upstream_token.as_deref());
        let inbox = input.then(|| {
            let (tx, rx) = mpsc::channel(OUT_BUFFER);
            *pooled.inbox.lock() = Some(tx);
            rx
        });
        pooled.busy.fetch_add(1, Ordering::Relaxed);
        let mut call = Call {
            pooled: pooled.clone(),
            method: method.clone(),
            upstream_id,
            upstream_token,
            client_token,
            log_level,
            capabilities: envelope.capabilities.clone(),
            digest: digest.clone(),
            round: 0,
            replies: Box::pin(futures_util::stream::empty()),
            inbox,
            questions: Vec::new(),
            presupplied: params.get("inputResponses").and_then(Value::as_object).cloned().unwrap_or_default(),
            params: params.clone(),
            reissue: false,
            stamp: bridge.stamp(&facts),
            client: client.clone(),
            modern: false,
            log_inbox: false,
            slot,
        };
        match pooled.send_for_client(request, headers).await {
            Ok(reply) => {
                call.replies = reply.into_stream();
                return Ok(spawn_drive(bridge, call, client_id));
            }
            Err(GatewayError::UnknownSession) if !retried => {
                tracing::info!(session = %pooled.tag, "the upstream no longer knows this pooled session; the request goes to a new one");
                retried = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts a request on a stateless (2026-07-28) stdio upstream: passed as it came, with
/// an id and progress token unique on the process; the server's own `input_required`,
/// `requestState` and errors pass back unchanged. Closing the response stream sends
/// `notifications/cancelled` (the stdio way to cancel).
pub(super) async fn start_modern(bridge: Arc<Bridge>, m: Message) -> Result<McpReply, GatewayError> {
    let pooled = bridge.modern_session().await?;
    let client_id = m.id_key().unwrap_or("null").to_owned();
    let upstream_id = pooled.next_id("req");
    let client_token = m.progress_token();
    let upstream_token = client_token.as_ref().map(|_| pooled.next_id("progress"));
    let request = retarget_request(&m, &upstream_id, upstream_token.as_deref());
    // stdio gives a log message no request to belong to: the process's messages go to
    // the one call on it that asked for them (a call that finds another one holding
    // them gets none; the server has filtered them by the level asked).
    let log_level = Envelope::of(&m).ok().and_then(|e| e.log_level).as_deref().and_then(level_index);
    let mut inbox = None;
    if log_level.is_some() {
        let mut holder = pooled.inbox.lock();
        if holder.is_none() {
            let (tx, rx) = mpsc::channel(OUT_BUFFER);
            *holder = Some(tx);
            inbox = Some(rx);
        }
    }
    let log_inbox = inbox.is_some();
    pooled.busy.fetch_add(1, Ordering::Relaxed);
    let mut call = Call {
        pooled: pooled.clone(),
        method: m.method().unwrap_or_default().to_owned(),
        upstream_id,
        upstream_token,
        client_token,
        log_level,
        capabilities: Map::new(),
        digest: String::new(),
        round: 0,
        replies: Box::pin(futures_util::stream::empty()),
        inbox,
        questions: Vec::new(),
        presupplied: Map::new(),
        params: Map::new(),
        reissue: false,
        stamp: super::Stamp { server_info: Value::Null, ttl_ms: 0, scope: crate::config::CacheScope::Private },
        client: None,
        modern: true,
        log_inbox,
        slot: None,
    };
    call.replies = pooled.send(request).await?.into_stream();
    Ok(spawn_drive(bridge, call, client_id))
}

/// `m` with another id and (if it has one) progress token; nothing else changes.
pub(super) fn retarget_request(m: &Message, id: &str, token: Option<&str>) -> Message {
    let mut v = m.to_value().unwrap_or_default();
    v["id"] = id_value(id);
    if let (Some(token), Some(meta)) = (token, v.pointer_mut("/params/_meta").and_then(Value::as_object_mut)) {
        meta.insert("progressToken".into(), id_value(token));
    }
    Message::from_value(&v)
}

/// A response with the client's id.
pub(super) fn answer_with_id(m: &Message, client_id: &str) -> Message {
    let mut v = m.to_value().unwrap_or_default();
    v["id"] = id_value(client_id);
    Message::from_value(&v)
}

/// The retry of a parked call.
#[allow(clippy::too_many_arguments)]
async fn resume(
    bridge: Arc<Bridge>,
    m: &Message,
    params: &Map<String, Value>,
    state: &str,
    envelope: Envelope,
    digest: String,
    client_id: String,
    headers: &HeaderMap,
) -> Result<McpReply, GatewayError> {
    let opened = bridge
        .settings
        .sealer
        .open(state, &digest, now_ms())
        .map_err(|refusal| GatewayError::InvalidParams(refusal.to_string()))?;
    let Some(mut call) = bridge.parked.calls.lock().remove(&opened.call) else {
        return Err(GatewayError::InvalidParams(
            "requestState was already used, or its call has ended (expired or cancelled); send the request again \
             without requestState"
                .into(),
        ));
    };
    if let Err(e) = call.take_input().await {
        // Still parked: the same state works once the session is free.
        bridge.parked.calls.lock().insert(opened.call, call);
        return Err(e);
    }
    call.client_token = m.progress_token();
    call.log_level = envelope.log_level.as_deref().and_then(level_index);
    call.capabilities = envelope.capabilities;
    if std::mem::take(&mut call.reissue) {
        // The URL step happened out of band (or not: the upstream will say so again).
        call.questions.clear();
        call.upstream_id = call.pooled.next_id("req");
        let request = upstream_request(&call.method, &call.params, &call.upstream_id, call.upstream_token.as_deref());
        call.replies = call.pooled.send_for_client(request, headers).await?.into_stream();
        return Ok(spawn_drive(bridge, call, client_id));
    }
    let answers = params.get("inputResponses").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut open = Vec::new();
    for q in std::mem::take(&mut call.questions) {
        match answers.get(&q.key) {
            Some(answer @ Value::Object(_)) => call.pooled.answer(&q.upstream_id, Ok(answer.clone())).await,
            // Missing or malformed: asked again in the next round.
            _ => open.push(q),
        }
    }
    call.questions = open;
    Ok(spawn_drive(bridge, call, client_id))
}

fn spawn_drive(bridge: Arc<Bridge>, call: Call, client_id: String) -> McpReply {
    let (out, rx) = mpsc::channel(OUT_BUFFER);
    tokio::spawn(drive(bridge, call, client_id, out));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    McpReply::new(ReplyBody::Stream(Box::pin(stream)))
}

async fn drive(bridge: Arc<Bridge>, mut call: Call, client_id: String, out: mpsc::Sender<Message>) {
    match run(&mut call, &client_id, &out, &bridge).await {
        Step::Done => {}
        Step::ClientGone => call.cancel("the client closed its response stream").await,
        Step::Refused(m) => {
            let _ = out.send(m).await;
            call.cancel("the gateway refused the call").await;
        }
        Step::Park => park(&bridge, call, &client_id, &out).await,
    }
}

async fn recv(inbox: &mut Option<mpsc::Receiver<Message>>) -> Option<Message> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn run(call: &mut Call, client_id: &str, out: &mpsc::Sender<Message>, bridge: &Bridge) -> Step {
    let settle = bridge.settings.config.input_settle;
    loop {
        let waiting = !call.questions.is_empty();
        let quiet = async {
            if waiting {
                tokio::time::sleep(settle).await
            } else {
                std::future::pending::<()>().await
            }
        };
        let next = tokio::select! {
            biased;
            _ = out.closed() => return Step::ClientGone,
            m = call.replies.next() => match m {
                Some(m) => m,
                None => {
                    let e = GatewayError::UpstreamUnavailable {
                        upstream: call.pooled.tag.clone(),
                        detail: "it ended the call without answering".into(),
                    };
                    let _ = out.send(e.to_message(Some(client_id))).await;
                    return Step::Done;
                }
            },
            Some(m) = recv(&mut call.inbox) => m,
            _ = quiet => return Step::Park,
        };
        if let Some(step) = handle(call, next, client_id, out).await {
            return step;
        }
    }
}

/// One message from the upstream during a call.
async fn handle(call: &mut Call, m: Message, client_id: &str, out: &mpsc::Sender<Message>) -> Option<Step> {
    match m.kind() {
        MessageKind::Response if m.id_key() == Some(call.upstream_id.as_str()) && call.modern => {
            flush_logs(call, out).await;
            let _ = out.send(answer_with_id(&m, client_id)).await;
            Some(Step::Done)
        }
        MessageKind::Request if call.modern => {
            let id = m.id_key().unwrap_or("null").to_owned();
            let text = "a 2026-07-28 server does not send requests (it answers input_required)".to_owned();
            call.pooled.answer(&id, Err((codes::METHOD_NOT_FOUND, text))).await;
            None
        }
        MessageKind::Response if m.id_key() == Some(call.upstream_id.as_str()) => {
            if call.inbox.is_some() {
                if let Some(elicitations) = url_elicitations(&m) {
                    return Some(url_round(call, elicitations, client_id));
                }
            }
            flush_logs(call, out).await;
            let _ = out.send(call.stamp.response(&call.method, &m, client_id)).await;
            Some(Step::Done)
        }
        MessageKind::Response => None,
        MessageKind::Notification => {
            match m.method() {
                Some("notifications/progress") => {
                    if let (Some(up), Some(client)) = (&call.upstream_token, &call.client_token) {
                        if m.param_key("progressToken").as_deref() == Some(up.as_str()) {
                            let _ = out.send(retoken(&m, client)).await;
                        }
                    }
                }
                Some("notifications/message") if log_wanted(&m, call.log_level) => {
                    let _ = out.send(m).await;
                }
                _ => {}
            }
            None
        }
        MessageKind::Request => ask(call, m, client_id).await,
    }
}

/// Before the final response: the log messages the upstream sent before it, which come
/// through the session's stream and may not have reached the inbox yet.
async fn flush_logs(call: &mut Call, out: &mpsc::Sender<Message>) {
    let Some(inbox) = call.inbox.as_mut() else { return };
    let mut flushed = call.pooled.flush();
    let mut late = Vec::new();
    loop {
        tokio::select! {
            // Keep the inbox drained: the reader may be waiting to put a message in it.
            Some(m) = inbox.recv() => late.push(m),
            _ = &mut flushed => break,
        }
    }
    while let Ok(m) = inbox.try_recv() {
        late.push(m);
    }
    for m in late {
        if m.method() == Some("notifications/message") && log_wanted(&m, call.log_level) {
            let _ = out.send(m).await;
        }
    }
}

/// The upstream asks the client something.
async fn ask(call: &mut Call, m: Message, client_id: &str) -> Option<Step> {
    let id = m.id_key().unwrap_or("null").to_owned();
    let method = m.method().unwrap_or_default().to_owned();
    let mut params: Map<String, Value> = m.params().unwrap_or_default();
    if method == "ping" {
        call.pooled.answer(&id, Ok(json!({}))).await;
        return None;
    }
    let Some(required) = required_capability(&method, &params) else {
        call.pooled
            .answer(&id, Err((codes::METHOD_NOT_FOUND, format!("{method} cannot be relayed to the client"))))
            .await;
        return None;
    };
    if call.inbox.is_none() || !declared(&call.capabilities, &required) {
        let detail = format!("the upstream asked {method}, which the client did not declare");
        call.pooled.answer(&id, Err((codes::INVALID_REQUEST, format!("the client did not declare {required}")))).await;
        let e = GatewayError::MissingCapability { required, detail };
        return Some(Step::Refused(e.to_message(Some(client_id))));
    }
    let hint = params
        .get_mut("_meta")
        .and_then(Value::as_object_mut)
        .and_then(|meta| meta.remove(INPUT_KEY_HINT))
        .and_then(|h| h.as_str().map(str::to_owned));
    if params.get("_meta").and_then(Value::as_object).is_some_and(Map::is_empty) {
        params.remove("_meta");
    }
    let key = unique_key(call, hint.as_deref().unwrap_or(short_name(&method)));
    if let Some(answer) = call.presupplied.remove(&key).filter(Value::is_object) {
        call.pooled.answer(&id, Ok(answer)).await;
        return None;
    }
    call.questions.push(Question { key, upstream_id: id, request: json!({"method": method, "params": params}) });
    None
}

/// The `data.elicitations` of a 2025-11-25 "URL elicitation required" error (-32042).
fn url_elicitations(m: &Message) -> Option<Vec<Value>> {
    if !m.is_error() {
        return None;
    }
    let v = m.to_value()?;
    let error = v.get("error")?;
    if error.get("code").and_then(Value::as_i64) != Some(i64::from(codes::URL_ELICITATION_REQUIRED)) {
        return None;
    }
    error.pointer("/data/elicitations").and_then(Value::as_array).cloned()
}

/// A -32042 becomes a round of URL-mode elicitations (without the 2025 `elicitationId`);
/// the retry sends the call again.
fn url_round(call: &mut Call, elicitations: Vec<Value>, client_id: &str) -> Step {
    let required = json!({"elicitation": {"url": {}}});
    if !declared(&call.capabilities, &required) {
        let detail = "the upstream needs a URL elicitation, which the client did not declare".to_owned();
        let e = GatewayError::MissingCapability { required, detail };
        return Step::Refused(e.to_message(Some(client_id)));
    }
    for e in elicitations {
        let mut params = Map::new();
        params.insert("mode".into(), json!("url"));
        for field in ["message", "url"] {
            if let Some(v) = e.get(field) {
                params.insert(field.into(), v.clone());
            }
        }
        let key = unique_key(call, "elicitation");
        let request = json!({"method": "elicitation/create", "params": params});
        call.questions.push(Question { key, upstream_id: String::new(), request });
    }
    call.reissue = true;
    Step::Park
}

/// Parks a call whose questions wait for the client, answering `input_required`.
async fn park(bridge: &Arc<Bridge>, mut call: Call, client_id: &str, out: &mpsc::Sender<Message>) {
    let config = &bridge.settings.config;
    call.round += 1;
    let refuse = if call.round > config.max_rounds {
        Some(GatewayError::InvalidRequest(format!(
            "the call needed more than {} rounds of input (bridge.max_rounds)",
            config.max_rounds
        )))
    } else if bridge.parked.calls.lock().len() >= config.max_parked {
        Some(GatewayError::Overloaded(format!(
            "{} calls are already waiting for client input (bridge.max_parked)",
            config.max_parked
        )))
    } else if call.client.is_some()
        && bridge.parked.calls.lock().values().filter(|c| c.client == call.client).count()
            >= config.max_parked_per_client
    {
        Some(GatewayError::Overloaded(format!(
            "this client already has {} calls waiting for its input (bridge.max_parked_per_client)",
            config.max_parked_per_client
        )))
    } else {
        None
    };
    if let Some(e) = refuse {
        let _ = out.send(e.to_message(Some(client_id))).await;
        call.cancel(&e.to_string()).await;
        return;
    }
    let n = bridge.parked.next.fetch_add(1, Ordering::Relaxed);
    let state = bridge.settings.sealer.seal(&State {
        replica: bridge.settings.sealer.replica().to_owned(),
        call: n,
        round: call.round,
        digest: call.digest.clone(),
        expires_ms: now_ms() + config.state_ttl.as_millis() as u64,
    });
    let mut requests = Map::new();
    for q in &call.questions {
        requests.insert(q.key.clone(), q.request.clone());
    }
    let mut result = Map::new();
    result.insert("resultType".into(), json!("input_required"));
    result.insert("inputRequests".into(), Value::Object(requests));
    result.insert("requestState".into(), json!(state));
    result.insert("_meta".into(), json!({ META_SERVER_INFO: call.stamp.server_info.clone() }));
    tracing::debug!(session = %call.pooled.tag, call = n, round = call.round, questions = call.questions.len(),
        "call parked for client input");
    // A parked upstream handler waits for its answers: the session may serve another
    // input call meanwhile; the retry takes the slot back.
    call.release_input();
    bridge.parked.calls.lock().insert(n, call);
    let _ = out.send(result_message(Some(client_id), result)).await;
    let ttl = config.state_ttl;
    let weak = Arc::downgrade(bridge);
    tokio::spawn(async move {
        tokio::time::sleep(ttl).await;
        let Some(bridge) = weak.upgrade() else { return };
        let expired = bridge.parked.calls.lock().remove(&n);
        if let Some(call) = expired {
            tracing::info!(session = %call.pooled.tag, call = n, "the client never retried a parked call; cancelled");
            call.cancel("the client did not retry within bridge.state_ttl").await;
        }
    });
}

/// The request sent upstream: a session-unique id and progress token, without the
/// 2026-07-28 members (`inputResponses`, `requestState`, the reserved `_meta` keys).
fn upstream_request(method: &str, params: &Map<String, Value>, id: &str, token: Option<&str>) -> Message {
    let mut params = params.clone();
    params.remove("inputResponses");
    params.remove("requestState");
    let mut meta = match params.remove("_meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    meta.remove("progressToken");
    if let Some(token) = token.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        meta.insert("progressToken".into(), token);
    }
    if !meta.is_empty() {
        params.insert("_meta".into(), Value::Object(meta));
    }
    let id = id_value(id);
    Message::from_value(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

/// A progress notification with the client's token.
fn retoken(m: &Message, client_token: &str) -> Message {
    let mut params: Map<String, Value> = m.params().unwrap_or_default();
    params.insert("progressToken".into(), id_value(client_token));
    Message::notification("notifications/progress", Value::Object(params))
}

fn level_index(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Whether a log message goes to a request that asked for `wanted` and above.
fn log_wanted(m: &Message, wanted: Option<usize>) -> bool {
    let Some(wanted) = wanted else { return false };
    let level =
        m.params::<Map<String, Value>>().and_then(|p| p.get("level").and_then(Value::as_str).and_then(level_index));
    level.is_some_and(|l| l >= wanted)
}

/// The client capability a server-to-client request needs, as a `ClientCapabilities`
/// object; `None` for requests a client cannot be asked.
fn required_capability(method: &str, params: &Map<String, Value>) -> Option<Value> {
    match method {
        "elicitation/create" => Some(match params.get("mode").and_then(Value::as_str) {
            Some("url") => json!({"elicitation": {"url": {}}}),
            _ => json!({"elicitation": {"form": {}}}),
        }),
        "sampling/createMessage" if params.contains_key("tools") || params.contains_key("toolChoice") => {
            Some(json!({"sampling": {"tools": {}}}))
        }
        "sampling/createMessage" => Some(json!({"sampling": {}})),
        "roots/list" => Some(json!({"roots": {}})),
        _ => None,
    }
}

/// Whether `caps` covers `required`. An `elicitation` without modes means form.
fn declared(caps: &Map<String, Value>, required: &Value) -> bool {
    let Some(required) = required.as_object() else { return false };
    required.iter().all(|(name, sub)| {
        let Some(have) = caps.get(name).and_then(Value::as_object) else { return false };
        sub.as_object().is_none_or(|sub| {
            sub.keys().all(|mode| {
                have.contains_key(mode) || (name == "elicitation" && mode == "form" && !have.contains_key("url"))
            })
        })
    })
}

fn short_name(method: &str) -> &str {
    match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        other => other,
    }
}

fn unique_key(call: &Call, base: &str) -> String {
    let taken = |k: &str| call.questions.iter().any(|q| q.key == k);
    if !taken(base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}_{n}")).find(|k| !taken(k)).unwrap_or_else(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_checked_by_mode() {
        let form_only = json!({"elicitation": {}, "sampling": {}}).as_object().cloned().unwrap_or_default();
        assert!(declared(&form_only, &json!({"elicitation": {"form": {}}})));
        assert!(!declared(&form_only, &json!({"elicitation": {"url": {}}})));
        assert!(declared(&form_only, &json!({"sampling": {}})));
        assert!(!declared(&form_only, &json!({"sampling": {"tools": {}}})));
        assert!(!declared(&form_only, &json!({"roots": {}})));
        let url_only = json!({"elicitation": {"url": {}}}).as_object().cloned().unwrap_or_default();
        assert!(!declared(&url_only, &json!({"elicitation": {"form": {}}})));
        assert!(declared(&url_only, &json!({"elicitation": {"url": {}}})));
    }

    #[test]
    fn upstream_requests_lose_the_modern_members() {
        let params = json!({
            "name": "t", "inputResponses": {"a": {}}, "requestState": "s",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "progressToken": "p1", "custom": 1}
        });
        let m =
            upstream_request("tools/call", params.as_object().expect("obj"), "\"sc-req-1\"", Some("\"sc-progress-2\""));
        let v = m.to_value().expect("json");
        assert_eq!(v["id"], "sc-req-1");
        assert_eq!(v["params"], json!({"name": "t", "_meta": {"progressToken": "sc-progress-2", "custom": 1}}));
    }

    #[test]
    fn log_levels_filter() {
        let warn = Message::notification("notifications/message", json!({"level": "warning", "data": "x"}));
        assert!(!log_wanted(&warn, None));
        assert!(log_wanted(&warn, level_index("info")));
        assert!(!log_wanted(&warn, level_index("error")));
    }
}
