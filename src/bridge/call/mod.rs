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
//!
//! Here: the [`Call`] and its entry points (`start`, `start_modern`, and `resume` for
//! a retry); the task that drives a call and parks it is in [`drive`], the upstream's
//! questions to the client in [`questions`].

mod drive;
mod questions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, OwnedMutexGuard};

use super::pool::Pooled;
use super::seal::request_digest;
use super::{now_ms, Bridge};
use crate::error::GatewayError;
use crate::protocol::id_value;
use crate::protocol::modern::Envelope;
use crate::protocol::{codes, Message};
use crate::reply::{McpReply, MessageStream};
use drive::{level_index, spawn_drive};

/// `_meta` key a legacy server may put on its request to name its `inputRequests` key.
pub const INPUT_KEY_HINT: &str = "dev.shadowcat/inputKey";
/// Messages buffered towards the client.
const OUT_BUFFER: usize = 64;

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

/// Starts serving a stateless request on the pool. `input` for the methods that may
/// answer `input_required`.
pub(super) async fn start(
    bridge: Arc<Bridge>,
    m: Message,
    envelope: Envelope,
    input: bool,
    (client, principal): (Option<Arc<str>>, Option<Arc<str>>),
    headers: &HeaderMap,
) -> Result<McpReply, GatewayError> {
    let method = m.method().unwrap_or_default().to_owned();
    let client_id = m.id_key().unwrap_or("null").to_owned();
    let params: Map<String, Value> = m.params().unwrap_or_default();
    // The state is bound to the request and to its principal: another principal's
    // retry with it does not fit.
    let digest = request_digest(&method, Some(&params), principal.as_deref());
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
        let (pooled, slot) = bridge.session_for(&envelope.capabilities, input, principal.as_deref()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
