//! The task that drives a call: it relays the upstream's messages to the client's
//! stream (the final response, progress, the log messages asked for), collects the
//! upstream's questions, and parks the call answering `input_required` when they wait
//! for the client.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::questions::{ask, url_elicitations, url_round};
use super::{answer_with_id, Call, OUT_BUFFER};
use crate::bridge::seal::State;
use crate::bridge::{now_ms, result_message, Bridge};
use crate::error::GatewayError;
use crate::protocol::id_value;
use crate::protocol::modern::META_SERVER_INFO;
use crate::protocol::{codes, Message, MessageKind};
use crate::reply::{McpReply, ReplyBody};

/// The log levels, lowest first.
const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// What ended a drive.
pub(super) enum Step {
    /// The final response went to the client.
    Done,
    /// The client closed its stream: the call is cancelled.
    ClientGone,
    /// Questions are waiting: park.
    Park,
    /// The call cannot go on (the client gets the message).
    Refused(Message),
}

// === the drive ===

/// Starts the task that drives `call`; the client's reply is the stream it feeds.
pub(super) fn spawn_drive(bridge: Arc<Bridge>, call: Call, client_id: String) -> McpReply {
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

// === progress and log messages ===

/// A progress notification with the client's token.
fn retoken(m: &Message, client_token: &str) -> Message {
    let mut params: Map<String, Value> = m.params().unwrap_or_default();
    params.insert("progressToken".into(), id_value(client_token));
    Message::notification("notifications/progress", Value::Object(params))
}

/// The position of a log level in [`LEVELS`].
pub(super) fn level_index(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Whether a log message goes to a request that asked for `wanted` and above.
fn log_wanted(m: &Message, wanted: Option<usize>) -> bool {
    let Some(wanted) = wanted else { return false };
    let level =
        m.params::<Map<String, Value>>().and_then(|p| p.get("level").and_then(Value::as_str).and_then(level_index));
    level.is_some_and(|l| l >= wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_filter() {
        let warn = Message::notification("notifications/message", json!({"level": "warning", "data": "x"}));
        assert!(!log_wanted(&warn, None));
        assert!(log_wanted(&warn, level_index("info")));
        assert!(!log_wanted(&warn, level_index("error")));
    }
}
