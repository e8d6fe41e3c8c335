//! Operating the stage live: the admin endpoints under `/stages/intercept/` (the
//! admin listener checks `admin.token` first), the messages a `pause` rule holds,
//! and the stream of rule matches.
//!
//! | endpoint | what it does |
//! |---|---|
//! | `GET rules` | the rules, with their counts |
//! | `GET rules/<id>` | one rule |
//! | `POST rules/<id>/enable`, `POST rules/<id>/disable` | switches a rule (until the file is next reloaded) |
//! | `PUT rules` | loads a rule file (the body, YAML or JSON), checked whole first |
//! | `GET paused` | the messages held by `pause` rules |
//! | `POST paused/<n>/resume` | lets one go on; a body (a JSON-RPC message with the same id) replaces it |
//! | `POST paused/<n>/drop` | drops one, as the `drop` action would |
//! | `GET watch` | SSE: one event per rule that acts |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

use super::rules::{Rule, RuleSet};
use super::Interceptor;
use crate::pipeline::{AdminCall, AdminReply, Direction};
use crate::protocol::{Message, MessageKind};

/// How many match events a slow watcher may fall behind before it misses some.
const WATCH_BACKLOG: usize = 1024;

/// What an operator decided about a held message.
pub enum Decision {
    /// Let it go on: as it was, or as edited.
    Resume(Option<Message>),
    /// Drop it.
    Drop,
}

/// A message a `pause` rule holds.
struct Held {
    rule: String,
    direction: Direction,
    method: Option<String>,
    kind: MessageKind,
    id: Option<String>,
    message: Value,
    since: SystemTime,
    timeout: Duration,
    decide: oneshot::Sender<Decision>,
}

/// The held messages and the match stream, shared by every copy of the stage.
pub struct Operations {
    paused: Mutex<BTreeMap<u64, Held>>,
    next: AtomicU64,
    events: broadcast::Sender<Value>,
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            paused: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            events: broadcast::channel(WATCH_BACKLOG).0,
        }
    }
}

/// Takes a held message out of the list when its call ends, however it ends.
pub struct Unhold(Arc<Operations>, u64);

impl Drop for Unhold {
    fn drop(&mut self) {
        self.0.paused.lock().remove(&self.1);
    }
}

/// What a fired rule reports to watchers.
pub struct Fired<'a> {
    pub rule: &'a Rule,
    pub direction: Direction,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub kind: MessageKind,
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::ClientToServer => "client_to_server",
        Direction::ServerToClient => "server_to_client",
    }
}

fn kind_name(k: MessageKind) -> &'static str {
    match k {
        MessageKind::Request => "request",
        MessageKind::Notification => "notification",
        MessageKind::Response => "response",
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Operations {
    /// Tells watchers (if any) that a rule acted; `paused` is the held message's
    /// number.
    pub fn fired(&self, f: &Fired<'_>, paused: Option<u64>) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let mut event = json!({
            "time_ms": unix_ms(SystemTime::now()),
            "rule": f.rule.id,
            "action": f.rule.action.name(),
            "direction": direction_name(f.direction),
            "kind": kind_name(f.kind),
            "method": f.method,
            "tool": f.tool,
        });
        if let Some(n) = paused {
            event["paused"] = json!(n);
        }
        let _ = self.events.send(event);
    }

    /// Holds `msg` for an operator; the receiver gets the decision.
    pub fn hold(
        self: &Arc<Self>,
        f: &Fired<'_>,
        msg: &Message,
        timeout: Duration,
    ) -> (u64, Unhold, oneshot::Receiver<Decision>) {
        let (decide, decided) = oneshot::channel();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let held = Held {
            rule: f.rule.id.clone(),
            direction: f.direction,
            method: f.method.clone(),
            kind: msg.kind(),
            id: msg.id_key().map(str::to_owned),
            message: msg.to_value().unwrap_or(Value::Null),
            since: SystemTime::now(),
            timeout,
            decide,
        };
        self.paused.lock().insert(n, held);
        (n, Unhold(self.clone(), n), decided)
    }

    fn paused_list(&self) -> Value {
        let paused = self.paused.lock();
        let list: Vec<Value> = paused
            .iter()
            .map(|(n, h)| {
                json!({
                    "id": n,
                    "rule": h.rule,
                    "direction": direction_name(h.direction),
                    "kind": kind_name(h.kind),
                    "method": h.method,
                    "since_ms": unix_ms(h.since),
                    "timeout_ms": h.timeout.as_millis() as u64,
                    "message": h.message,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Resumes (maybe edited) or drops held message `n`.
    fn decide(&self, n: &str, what: &str, body: &bytes::Bytes) -> AdminReply {
        let Ok(n) = n.parse::<u64>() else {
            return AdminReply::error(StatusCode::BAD_REQUEST, format!("{n:?} is not a paused message's number"));
        };
        // An edit is parsed before the list is locked.
        let edited = match what {
            "drop" => None,
            "resume" if body.iter().all(u8::is_ascii_whitespace) => None,
            "resume" => match Message::parse(body.clone()) {
                Ok(m) => Some(m),
                Err(e) => {
                    let text = format!("the edited message is not a JSON-RPC message: {e}");
                    return AdminReply::error(StatusCode::BAD_REQUEST, text);
                }
            },
            _ => return AdminReply::not_found(),
        };
        let mut paused = self.paused.lock();
        let Some(held) = paused.get(&n) else {
            let text = format!("no paused message {n} (resumed, dropped or timed out)");
            return AdminReply::error(StatusCode::NOT_FOUND, text);
        };
        if let Some(edited) = &edited {
            if edited.kind() != held.kind || edited.id_key() != held.id.as_deref() {
                let text = format!(
                    "the edited message must stay a {} with the same id ({})",
                    kind_name(held.kind),
                    held.id.as_deref().unwrap_or("none")
                );
                return AdminReply::error(StatusCode::BAD_REQUEST, text);
            }
        }
        let Some(held) = paused.remove(&n) else { return AdminReply::not_found() };
        drop(paused);
        let (decision, done) = match what {
            "drop" => (Decision::Drop, "dropped"),
            _ => (Decision::Resume(edited), "resumed"),
        };
        if held.decide.send(decision).is_err() {
            return AdminReply::error(StatusCode::GONE, format!("paused message {n}'s call ended first"));
        }
        AdminReply::ok(json!({ "id": n, "done": done }))
    }

    fn watch(&self) -> AdminReply {
        let events = self.events.subscribe();
        let stream = futures_util::stream::unfold(events, |mut events| async move {
            match events.recv().await {
                Ok(event) => Some((event, events)),
                Err(broadcast::error::RecvError::Lagged(missed)) => Some((json!({ "missed": missed }), events)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        AdminReply::Events(Box::pin(stream))
    }
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "id": r.id,
        "description": r.description,
        "line": r.line,
        "enabled": r.enabled.load(Ordering::Relaxed),
        "priority": r.priority,
        "action": r.action.name(),
        "times": r.times,
        "after": r.after,
        "probability": r.probability,
        "matches": r.matches.load(Ordering::Relaxed),
        "fired": r.fired.load(Ordering::Relaxed),
    })
}

impl Interceptor {
    /// The rules and their counts (`GET /stages/intercept` and `GET .../rules`).
    pub(super) fn rules_json(&self) -> Value {
        let set = self.rules.load();
        let rules: Vec<Value> = set.rules.iter().map(rule_json).collect();
        json!({
            "file": set.origin,
            "generation": self.rules.generation(),
            "rules": rules,
            "paused": self.ops.paused.lock().len(),
            "watchers": self.ops.events.receiver_count(),
        })
    }

    /// `/stages/intercept/<path>`.
    pub(super) fn admin(&self, call: AdminCall) -> AdminReply {
        let path: Vec<&str> = call.path.iter().map(String::as_str).collect();
        let get = call.method == Method::GET || call.method == Method::HEAD;
        let post = call.method == Method::POST;
        match (path.as_slice(), get, post) {
            (["rules"], true, _) => AdminReply::ok(self.rules_json()),
            (["rules"], false, _) if call.method == Method::PUT || post => self.load(&call.body),
            (["rules", id], true, _) => match self.rules.load().rules.iter().find(|r| r.id == *id) {
                Some(r) => AdminReply::ok(rule_json(r)),
                None => AdminReply::error(StatusCode::NOT_FOUND, format!("no rule {id:?}")),
            },
            (["rules", id, switch @ ("enable" | "disable")], _, true) => {
                let set = self.rules.load();
                match set.rules.iter().find(|r| r.id == *id) {
                    Some(r) => {
                        r.enabled.store(*switch == "enable", Ordering::Relaxed);
                        tracing::info!(rule = %r.id, enabled = *switch == "enable", "intercept rule switched by the admin API");
                        AdminReply::ok(rule_json(r))
                    }
                    None => AdminReply::error(StatusCode::NOT_FOUND, format!("no rule {id:?}")),
                }
            }
            (["paused"], true, _) => AdminReply::ok(self.ops.paused_list()),
            (["paused", n, what @ ("resume" | "drop")], _, true) => self.ops.decide(n, what, &call.body),
            (["watch"], true, _) => self.ops.watch(),
            _ => AdminReply::not_found(),
        }
    }

    /// `PUT rules`: the body is a rule file; checked whole, then swapped in.
    fn load(&self, body: &[u8]) -> AdminReply {
        let Ok(text) = std::str::from_utf8(body) else {
            return AdminReply::error(StatusCode::BAD_REQUEST, "the rule file is not UTF-8");
        };
        match RuleSet::parse(text, "(loaded through the admin API)") {
            Ok(set) => {
                let (rules, warnings) = (set.rules.len(), set.warnings.clone());
                self.rules.replace(set);
                tracing::info!(rules, "intercept rules loaded through the admin API");
                AdminReply::ok(json!({ "generation": self.rules.generation(), "rules": rules, "warnings": warnings }))
            }
            Err(e) => AdminReply::error(StatusCode::BAD_REQUEST, e),
        }
    }
}
