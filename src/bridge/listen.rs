//! `subscriptions/listen`: the streams that carry a stateless client's notifications.
//!
//! On a legacy upstream, a listen is fed from the pool's `list_changed` and
//! `resources/updated` notifications; its `resourceSubscriptions` are subscribed
//! upstream once per resource, reference counted across listens ([`Subscriptions`]).
//! On a stateless (2026-07-28) stdio upstream, the listen goes to one of its processes
//! and its frames come back retagged ([`ListenGuard`] cancels it when the client goes).

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::pool::Pooled;
use super::{call, Bridge};
use crate::error::GatewayError;
use crate::protocol::id_value;
use crate::protocol::modern::META_SUBSCRIPTION_ID;
use crate::protocol::{Message, MessageKind};
use crate::reply::{McpReply, MessageStream, ReplyBody};

/// An open listen on a stateless stdio upstream: when the client's stream goes, the
/// upstream gets `notifications/cancelled` for it (unless the server ended it).
struct ListenGuard {
    pooled: Arc<Pooled>,
    upstream_id: String,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        if self.pooled.listens.lock().remove(&self.upstream_id).is_some() {
            let (pooled, id) = (self.pooled.clone(), self.upstream_id.clone());
            tokio::spawn(async move { pooled.cancel(&id, "the client closed the subscription").await });
        }
    }
}

/// The resource subscriptions of one listen; released when the listen ends.
struct Subscriptions {
    bridge: Arc<Bridge>,
    uris: Vec<String>,
}

impl Subscriptions {
    /// Whether a notification goes to this listen: a list change it asked for, or an
    /// update of a subscribed resource (or a sub-resource of one).
    fn wants(&self, m: &Message, lists: &[&str]) -> bool {
        match m.method() {
            Some("notifications/resources/updated") => {
                let uri = m
                    .params::<Map<String, Value>>()
                    .and_then(|p| p.get("uri").and_then(Value::as_str).map(str::to_owned));
                uri.is_some_and(|uri| {
                    self.uris.iter().any(|s| uri == *s || uri.starts_with(&format!("{}/", s.trim_end_matches('/'))))
                })
            }
            Some(method) => lists.contains(&method),
            None => false,
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for uri in &self.uris {
            release_subscription(&self.bridge, uri);
        }
    }
}

/// One listen less wants `uri`; the last one unsubscribes upstream (in the background).
fn release_subscription(bridge: &Arc<Bridge>, uri: &str) {
    let last = {
        let mut counts = bridge.subscriptions.lock();
        match counts.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                counts.remove(uri);
                true
            }
            None => false,
        }
    };
    let session = bridge.subscription_session.lock().clone();
    if let (true, Some(session)) = (last, session) {
        let uri = uri.to_owned();
        tokio::spawn(async move {
            upstream_subscription(&session, "resources/unsubscribe", &uri).await;
        });
    }
}

/// Sends `resources/subscribe` or `resources/unsubscribe` for `uri`; true on success.
async fn upstream_subscription(session: &Pooled, method: &str, uri: &str) -> bool {
    let id = session.next_id("sub");
    let id_json = id_value(&id);
    let m = Message::from_value(&json!({"jsonrpc": "2.0", "id": id_json, "method": method, "params": {"uri": uri}}));
    let Ok(reply) = session.send(m).await else { return false };
    let ok = reply.first_response(&id).await.is_some_and(|r| !r.is_error());
    if !ok {
        tracing::warn!(session = %session.tag, method, uri, "the upstream refused a resource subscription");
    }
    ok
}

// === impl Bridge: listens ===

impl Bridge {
    /// `subscriptions/listen` on a legacy upstream: fed from the pool's notifications.
    pub(super) async fn listen(self: &Arc<Self>, m: &Message) -> Result<McpReply, GatewayError> {
        let filter: Option<Map<String, Value>> =
            m.params::<Map<String, Value>>().and_then(|p| p.get("notifications").and_then(Value::as_object).cloned());
        let Some(filter) = filter else {
            return Err(GatewayError::InvalidParams(
                "subscriptions/listen needs params.notifications (an object)".into(),
            ));
        };
        let facts = self.facts().await?;
        let caps = Self::advertised(&facts);
        let supports =
            |cap: &str| caps.get(cap).and_then(|c| c.get("listChanged")).and_then(Value::as_bool) == Some(true);
        let mut honored = Map::new();
        for (field, cap) in
            [("toolsListChanged", "tools"), ("promptsListChanged", "prompts"), ("resourcesListChanged", "resources")]
        {
            if filter.get(field).and_then(Value::as_bool) == Some(true) && supports(cap) {
                honored.insert(field.into(), json!(true));
            }
        }
        let id_text = m.id_key().unwrap_or("null").to_owned();
        let id = id_value(&id_text);
        let asked: Vec<String> = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|uris| uris.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let can_subscribe =
            facts.capabilities.get("resources").and_then(|r| r.get("subscribe")).and_then(Value::as_bool) == Some(true);
        let subscribed = if can_subscribe && !asked.is_empty() {
            self.subscribe(&asked).await
        } else {
            Subscriptions { bridge: self.clone(), uris: Vec::new() }
        };
        if !subscribed.uris.is_empty() {
            honored.insert("resourceSubscriptions".into(), json!(subscribed.uris));
        }
        let ack = Message::notification(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": honored, "_meta": {META_SUBSCRIPTION_ID: id}}),
        );
        let wanted: Vec<&'static str> = [
            ("toolsListChanged", "notifications/tools/list_changed"),
            ("promptsListChanged", "notifications/prompts/list_changed"),
            ("resourcesListChanged", "notifications/resources/list_changed"),
        ]
        .into_iter()
        .filter(|(field, _)| honored.contains_key(*field))
        .map(|(_, method)| method)
        .collect();
        let rx = self.events.subscribe();
        let state = (rx, wanted, id, subscribed);
        let updates = futures_util::stream::unfold(state, |(mut rx, wanted, id, subscribed)| async move {
            loop {
                match rx.recv().await {
                    Ok(m) if subscribed.wants(&m, &wanted) => {
                        let mut params: Map<String, Value> = m.params().unwrap_or_default();
                        let meta = params.entry("_meta").or_insert_with(|| json!({}));
                        if let Some(meta) = meta.as_object_mut() {
                            meta.insert(META_SUBSCRIPTION_ID.into(), id.clone());
                        }
                        let tagged = Message::notification(m.method().unwrap_or_default(), Value::Object(params));
                        return Some((tagged, (rx, wanted, id, subscribed)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let stream: MessageStream = Box::pin(futures_util::stream::once(async move { ack }).chain(updates));
        Ok(McpReply::new(ReplyBody::Stream(stream)))
    }

    /// Subscribes upstream (once per resource, reference counted across listens) to
    /// `uris`, on the pool's capability-less session; returns those subscribed.
    async fn subscribe(self: &Arc<Self>, uris: &[String]) -> Subscriptions {
        let mut done = Subscriptions { bridge: self.clone(), uris: Vec::new() };
        let Ok((session, _)) = self.session_for(&Map::new(), false, None).await else { return done };
        for uri in uris {
            let first = {
                let mut counts = self.subscriptions.lock();
                let n = counts.entry(uri.clone()).or_insert(0);
                *n += 1;
                *n == 1
            };
            let ok = !first || upstream_subscription(&session, "resources/subscribe", uri).await;
            if ok {
                done.uris.push(uri.clone());
            } else {
                release_subscription(self, uri);
            }
        }
        *self.subscription_session.lock() = Some(session);
        done
    }

    /// `subscriptions/listen` on a stateless stdio upstream: the request goes to one of
    /// its processes under an id of the gateway's; the frames tagged with that id come
    /// back retagged with the client's; closing the client's stream sends
    /// `notifications/cancelled` for it, and the server ending it ends the client's.
    pub(super) async fn listen_stdio(self: &Arc<Self>, m: Message) -> Result<McpReply, GatewayError> {
        let pooled = self.modern_session().await?;
        let client_id = m.id_key().unwrap_or("null").to_owned();
        let upstream_id = pooled.next_id("listen");
        let (tx, frames) = tokio::sync::mpsc::channel(64);
        pooled.listens.lock().insert(upstream_id.clone(), tx);
        let guard = ListenGuard { pooled: pooled.clone(), upstream_id: upstream_id.clone() };
        let replies = pooled.send(call::retarget_request(&m, &upstream_id, None)).await?.into_stream();
        let client_value = id_value(&client_id);
        let state = (frames, replies, guard, client_value, client_id, false);
        let stream =
            futures_util::stream::unfold(state, |(mut frames, mut replies, guard, value, id, done)| async move {
                if done {
                    return None;
                }
                let (m, end) = tokio::select! {
                    Some(f) = frames.recv() => {
                        if f.method() == Some("notifications/cancelled") {
                            return None; // the server ended the subscription
                        }
                        let mut params: Map<String, Value> = f.params().unwrap_or_default();
                        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                            meta.insert(META_SUBSCRIPTION_ID.into(), value.clone());
                        }
                        (Message::notification(f.method().unwrap_or_default(), Value::Object(params)), false)
                    }
                    r = replies.next() => match r {
                        Some(r) if r.kind() == MessageKind::Response => (call::answer_with_id(&r, &id), true),
                        Some(other) => (other, false),
                        None => return None,
                    },
                };
                Some((m, (frames, replies, guard, value, id, end)))
            });
        Ok(McpReply::new(ReplyBody::Stream(Box::pin(stream))))
    }
}
