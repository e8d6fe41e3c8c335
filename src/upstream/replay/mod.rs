//! `replay`: a recorded tape served as the server. To the gateway it is a 2025
//! (session-era) upstream like any other, so every client revision is served the
//! usual way (2026-07-28 clients through the bridge's pool).
//!
//! - `initialize` is answered with the recorded result (with the revision the client
//!   asks for, when it is a 2025 one); a tape of a 2026-07-28 client, which has no
//!   handshake, answers with the capabilities of its recorded `server/discover`, else
//!   of the methods it holds.
//! - Each request is matched to a recorded one ([`Matching`]) and answered with what
//!   the server sent for it, in order: notifications (a progress token is the live
//!   request's), server-to-client requests (sampling, elicitation, roots: the replay
//!   waits for the client's answer and checks it against the recording), and the
//!   response, with the live request's id. No match: a JSON-RPC error naming the
//!   closest recorded request and where it differs.
//! - Timing: the recorded delays, divided by `speed`, or none (`instant`).
//! - Notifications from the client are accepted; `ping` is answered whether
//!   recorded or not.

mod script;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use script::Script;

use super::session::{SessionSide, SideFuture};
use crate::config::{Matching, ReplayConfig};
use crate::error::GatewayError;
use crate::protocol::{Message, ProtocolVersion};
use crate::reply::McpReply;

/// How long a replayed server request waits for the client's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A tape as an upstream.
pub struct ReplayUpstream {
    script: Arc<Script>,
    matching: Matching,
    /// Delays are multiplied by this (0: none).
    scale: f64,
}

impl ReplayUpstream {
    /// Reads the tape of `cfg` (errors name the file and line).
    pub fn new(name: &str, cfg: &ReplayConfig) -> Result<Arc<Self>, String> {
        let file = cfg.tape.display().to_string();
        let tape = crate::tape::read(&cfg.tape).map_err(|e| format!("upstreams.{name}.replay.tape: {e}"))?;
        if let Some(cut) = &tape.cut_short {
            tracing::warn!(tape = %file, line = cut.last_whole_line, "the tape was cut short; replaying what it holds");
        }
        let script = Script::new(&file, &tape, &cfg.ignore).map_err(|e| format!("upstreams.{name}.{e}"))?;
        let scale = if cfg.instant { 0.0 } else { 1.0 / cfg.speed };
        Ok(Arc::new(ReplayUpstream { script: Arc::new(script), matching: cfg.matching, scale }))
    }

    /// A replayed session.
    pub fn open(self: &Arc<Self>) -> ReplaySession {
        ReplaySession {
            upstream: self.clone(),
            state: Arc::new(Mutex::new(State { used: vec![false; self.script.requests.len()], cursor: 0 })),
            waiting: Arc::new(Mutex::new(HashMap::new())),
            alive: AtomicBool::new(true),
        }
    }

    fn delay(&self, after_us: u64) -> Duration {
        Duration::from_secs_f64(after_us as f64 / 1e6 * self.scale)
    }
}

struct State {
    used: Vec<bool>,
    cursor: usize,
}

/// One client session served from the tape.
pub struct ReplaySession {
    upstream: Arc<ReplayUpstream>,
    state: Arc<Mutex<State>>,
    /// Server requests replayed to the client, waiting for its answer, by id.
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>,
    alive: AtomicBool,
}

fn response(id: &Value, result: Value) -> Message {
    Message::from_value(&json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

fn error(id: &Value, code: i64, message: String) -> Message {
    Message::from_value(&json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }))
}

impl ReplaySession {
    fn initialize(&self, id: &Value, params: Option<&Value>) -> Message {
        let script = &self.upstream.script;
        let asked = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
        let asked_2025 = asked.and_then(ProtocolVersion::parse).filter(|v| !v.is_stateless());
        let mut result = match &script.initialize {
            Some(r) => r.clone(),
            None => {
                let capabilities =
                    script.discover.as_ref().and_then(|d| d.get("capabilities").cloned()).unwrap_or_else(|| {
                        let has = |prefix: &str| script.requests.iter().any(|r| r.method.starts_with(prefix));
                        let mut caps = serde_json::Map::new();
                        for (prefix, cap) in [("tools/", "tools"), ("prompts/", "prompts"), ("resources/", "resources")]
                        {
                            if has(prefix) {
                                caps.insert(cap.into(), json!({}));
                            }
                        }
                        Value::Object(caps)
                    });
                let info = script
                    .discover
                    .as_ref()
                    .and_then(|d| d.get("serverInfo").cloned())
                    .or_else(|| script.server_info.clone())
                    .unwrap_or_else(|| json!({ "name": "shadowcat-replay", "version": env!("CARGO_PKG_VERSION") }));
                json!({ "capabilities": capabilities, "serverInfo": info })
            }
        };
        let version = asked_2025.map(ProtocolVersion::as_str).unwrap_or(ProtocolVersion::LATEST_HANDSHAKE.as_str());
        result["protocolVersion"] = json!(version);
        response(id, result)
    }

    fn request(&self, m: &Message, v: Value) -> McpReply {
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let method = m.method().unwrap_or_default();
        if method == "initialize" {
            return McpReply::message(self.initialize(&id, v.get("params")));
        }
        let script = &self.upstream.script;
        let key = script::match_key(v.get("params"), &script.ignore);
        let found = {
            let mut st = self.state.lock();
            let found = script.find(self.upstream.matching, method, &key, &st.used, st.cursor);
            if let Ok(i) = found {
                st.used[i] = true;
                if self.upstream.matching != Matching::MethodParams {
                    st.cursor = i + 1;
                }
            }
            found
        };
        let index = match found {
            Ok(i) => i,
            // Housekeeping a client (or the bridge) may send whether recorded or not.
            Err(_) if matches!(method, "ping" | "logging/setLevel") => {
                return McpReply::message(response(&id, json!({})))
            }
            Err(why) => {
                tracing::info!(tape = %script.file, method, "no recorded request matches");
                return McpReply::message(error(&id, -32000, format!("replay of {}: {why}", script.file)));
            }
        };
        let token = v.pointer("/params/_meta/progressToken").cloned();
        let steps = script.requests[index].steps.clone();
        let upstream = self.upstream.clone();
        let waiting = self.waiting.clone();
        let answers = script.answers.clone();
        let file = script.file.clone();
        // One message at a time, each after its recorded delay; after a server request,
        // the client's answer first.
        let stream = futures_util::stream::unfold(
            (steps.into_iter(), None::<oneshot::Receiver<Value>>),
            move |(mut steps, wait)| {
                let (upstream, waiting, answers, id, token, file) =
                    (upstream.clone(), waiting.clone(), answers.clone(), id.clone(), token.clone(), file.clone());
                async move {
                    if let Some(rx) = wait {
                        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                            Ok(Ok(_)) => {}
                            _ => {
                                tracing::warn!(tape = %file, "the client did not answer a replayed server request; going on")
                            }
                        }
                    }
                    let step = steps.next()?;
                    let delay = upstream.delay(step.after_us);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let mut msg = step.msg;
                    let mut next_wait = None;
                    let is_response = msg.get("method").is_none();
                    if is_response {
                        msg["id"] = id.clone();
                    } else if msg.get("id").is_some() {
                        // A server request: the client's answer is awaited before the next step.
                        let key = msg["id"].to_string();
                        let (tx, rx) = oneshot::channel();
                        waiting.lock().insert(key.clone(), tx);
                        next_wait = Some(rx);
                        if !answers.contains_key(&key) {
                            tracing::debug!(tape = %file, "a replayed server request has no recorded answer");
                        }
                    } else if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
                        if let Some(token) = &token {
                            msg["params"]["progressToken"] = token.clone();
                        }
                    }
                    Some((Message::from_value(&msg), (steps, next_wait)))
                }
            },
        );
        McpReply::stream(Box::pin(stream))
    }

    /// The client's answer to a replayed server request.
    fn answer(&self, v: &Value) {
        let key = v.get("id").map(Value::to_string).unwrap_or_default();
        let recorded = self.upstream.script.answers.get(&key);
        let strip = |x: Option<&Value>| x.map(|a| script::match_key(Some(a), &[]));
        let (live, was) = (
            strip(v.get("result").or(v.get("error"))),
            strip(recorded.and_then(|r| r.get("result").or(r.get("error")))),
        );
        if recorded.is_some() && live != was {
            let at =
                crate::tape::diff::paths(was.as_ref().unwrap_or(&Value::Null), live.as_ref().unwrap_or(&Value::Null));
            tracing::warn!(tape = %self.upstream.script.file, differs_at = ?at, "the client's answer differs from the recorded one");
        }
        if let Some(tx) = self.waiting.lock().remove(&key) {
            let _ = tx.send(v.clone());
        }
    }
}

impl SessionSide for ReplaySession {
    fn send<'a>(&'a self, m: Message, _headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(async move {
            let v = m.to_value().ok_or_else(|| GatewayError::Internal("an unreadable message".into()))?;
            if m.method().is_none() {
                self.answer(&v);
                return Ok(McpReply::accepted());
            }
            if !m.is_request() {
                return Ok(McpReply::accepted());
            }
            Ok(self.request(&m, v))
        })
    }

    fn open_stream<'a>(&'a self, _headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        let steps = self.upstream.script.get_stream.clone();
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let replayed = futures_util::stream::iter(steps).then(move |step| {
                let delay = upstream.delay(step.after_us);
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Message::from_value(&step.msg)
                }
            });
            // Then open, quiet, as a server's GET stream is.
            Ok(McpReply::stream(Box::pin(replayed.chain(futures_util::stream::pending()))))
        })
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    fn close(&self) -> SideFuture<'_, ()> {
        self.alive.store(false, Ordering::Relaxed);
        self.waiting.lock().clear();
        Box::pin(std::future::ready(()))
    }
}
