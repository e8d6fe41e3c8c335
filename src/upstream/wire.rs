//! The upstream wire: every message the gateway exchanges with an upstream, where
//! it differs from the client's wire or not. A client session's messages mostly
//! cross both wires alike; the sessions the bridge pools for 2026-07-28 clients (their
//! `initialize`, the `elicitation/create` a legacy server sends during a bridged call
//! and the bridge's answer, the gateway's own `tools/list` reads) and the stateless
//! requests the gateway sends for them exist only here.
//!
//! A stage that keeps or counts this wire registers a [`WireTap`] at build time
//! (`layers::BuildContext::wire`). Taps see messages; they do not change them. A
//! stage that acts on this wire (`intercept`'s `side: upstream` rules) registers a
//! [`WireActor`]: it lets each message through (changed or not), drops it, answers
//! it in the other side's place, or fails the exchange. Actors act before the taps
//! see a message going upstream, and after they saw one coming from it, so that a
//! tape of this wire holds what crossed it. With neither registered, nothing is
//! wrapped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use http::HeaderMap;
use parking_lot::{Mutex, RwLock};

use super::session::{SessionSide, SideFuture};
use crate::error::GatewayError;
use crate::protocol::Message;
use crate::reply::{McpReply, ReplyBody};

/// Which way a message crosses the upstream wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireDirection {
    /// From the gateway to the upstream.
    ToUpstream,
    /// From the upstream to the gateway.
    FromUpstream,
}

impl WireDirection {
    /// A short label (`to_upstream`, `from_upstream`).
    pub fn label(self) -> &'static str {
        match self {
            WireDirection::ToUpstream => "to_upstream",
            WireDirection::FromUpstream => "from_upstream",
        }
    }
}

/// Whose exchange it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireOrigin {
    /// A client's own session: the messages are the client's, relayed.
    ClientSession,
    /// A session the bridge keeps in its pool to serve 2026-07-28 clients; every
    /// message on it is the gateway's (rewritten ids, its own handshake and reads).
    Pooled,
    /// A stateless request the gateway sends (a 2026-07-28 client's, relayed to a
    /// 2026-07-28 server, or the gateway's own for a 2025 client of one).
    Stateless,
}

impl WireOrigin {
    /// A short label (`client_session`, `pooled`, `stateless`).
    pub fn label(self) -> &'static str {
        match self {
            WireOrigin::ClientSession => "client_session",
            WireOrigin::Pooled => "pooled",
            WireOrigin::Stateless => "stateless",
        }
    }
}

/// Where a message on the upstream wire is.
pub struct WireContext<'a> {
    /// Which way it goes.
    pub direction: WireDirection,
    /// Whose exchange it is.
    pub origin: WireOrigin,
    /// The upstream's name in the config.
    pub upstream: &'a str,
    /// The upstream session's tag (never a client's session id), or `stateless`.
    pub session: &'a str,
    /// For a response: the method and tool (or prompt) of the request it answers,
    /// when known (given to actors, not taps).
    pub request: Option<(&'a str, Option<&'a str>)>,
}

/// What an actor makes of a message on the upstream wire.
pub enum WireVerdict {
    /// Let it through, as it is or changed.
    Pass(Message),
    /// Discard it (a request should be answered instead, so that nothing hangs).
    Drop,
    /// Answer it in the other side's place: a request to the upstream is answered to
    /// the gateway, a request from the upstream is answered to the upstream.
    Answer(Message),
    /// Fail the gateway's exchange (a message to the upstream), or put this error in
    /// the place of a message from it.
    Fail(GatewayError),
}

/// A verdict now, or later (a delay, a pause).
pub enum WireFlow {
    /// Decided.
    Now(WireVerdict),
    /// Decided when the future completes; later messages of the exchange wait.
    Later(Pin<Box<dyn Future<Output = WireVerdict> + Send>>),
}

impl WireFlow {
    async fn decided(self) -> WireVerdict {
        match self {
            WireFlow::Now(v) => v,
            WireFlow::Later(f) => f.await,
        }
    }
}

/// Acts on messages of the upstream wire (see the module docs). Called on the
/// message's task.
pub trait WireActor: Send + Sync + 'static {
    /// Whether it may act on the exchanges of `origin` (asked when a session opens:
    /// sessions no tap or actor wants are not wrapped).
    fn wants(&self, origin: WireOrigin) -> bool;

    /// Whether it acts now (asked per exchange: a rule file reloaded without rules
    /// for this wire costs its sessions nothing but this question).
    fn active(&self) -> bool {
        true
    }

    /// One message.
    fn act(&self, ctx: &WireContext<'_>, message: Message) -> WireFlow;
}

/// Sees every message on the upstream wire. Called on the message's task: keep it
/// quick (count, or queue for a writer).
pub trait WireTap: Send + Sync + 'static {
    /// Whether the tap wants the exchanges of `origin` (asked when a session opens:
    /// sessions no tap wants are not wrapped at all).
    fn wants(&self, origin: WireOrigin) -> bool {
        let _ = origin;
        true
    }

    /// One message.
    fn on_wire(&self, ctx: &WireContext<'_>, message: &Message);
}

/// The registered taps, shared by the builder and the upstreams.
#[derive(Clone, Default)]
pub struct WireTaps {
    taps: Arc<RwLock<Vec<Arc<dyn WireTap>>>>,
    actors: Arc<RwLock<Vec<Arc<dyn WireActor>>>>,
}

impl WireTaps {
    /// Registers a tap (at build time).
    pub fn register(&self, tap: Arc<dyn WireTap>) {
        self.taps.write().push(tap);
    }

    /// Registers an actor (at build time).
    pub fn register_actor(&self, actor: Arc<dyn WireActor>) {
        self.actors.write().push(actor);
    }

    /// Whether any tap or actor is registered.
    pub fn is_empty(&self) -> bool {
        self.taps.read().is_empty() && self.actors.read().is_empty()
    }

    /// Whether any tap or actor wants the exchanges of `origin`.
    pub fn wanted(&self, origin: WireOrigin) -> bool {
        self.taps.read().iter().any(|t| t.wants(origin)) || self.actors.read().iter().any(|a| a.wants(origin))
    }

    /// Whether any actor acts on the exchanges of `origin` now.
    pub fn acting(&self, origin: WireOrigin) -> bool {
        self.actors.read().iter().any(|a| a.wants(origin) && a.active())
    }

    /// `m` through every actor in turn, until one does other than let it through.
    async fn act(&self, ctx: &WireContext<'_>, mut m: Message) -> WireVerdict {
        let actors: Vec<Arc<dyn WireActor>> =
            self.actors.read().iter().filter(|a| a.wants(ctx.origin) && a.active()).cloned().collect();
        for actor in actors {
            match actor.act(ctx, m).decided().await {
                WireVerdict::Pass(next) => m = next,
                other => return other,
            }
        }
        WireVerdict::Pass(m)
    }

    fn notify(&self, ctx: &WireContext<'_>, m: &Message) {
        for tap in self.taps.read().iter() {
            tap.on_wire(ctx, m);
        }
    }

    /// Tells the taps of a message going upstream.
    pub(super) fn tap_sent(&self, origin: WireOrigin, upstream: &str, session: &str, m: &Message) {
        self.notify(&WireContext { direction: WireDirection::ToUpstream, origin, upstream, session, request: None }, m);
    }

    /// Tells the taps of every message of a reply, as it comes.
    pub(super) fn tap_reply(
        &self,
        origin: WireOrigin,
        upstream: Arc<str>,
        session: Arc<str>,
        mut reply: McpReply,
    ) -> McpReply {
        let body = std::mem::replace(&mut reply.body, ReplyBody::Accepted);
        reply.body = match body {
            ReplyBody::Accepted => ReplyBody::Accepted,
            ReplyBody::Message(m) => {
                let ctx = WireContext {
                    direction: WireDirection::FromUpstream,
                    origin,
                    upstream: &upstream,
                    session: &session,
                    request: None,
                };
                self.notify(&ctx, &m);
                ReplyBody::Message(m)
            }
            ReplyBody::Stream(s) => {
                let taps = self.clone();
                ReplyBody::Stream(Box::pin(s.inspect(move |m| {
                    let ctx = WireContext {
                        direction: WireDirection::FromUpstream,
                        origin,
                        upstream: &upstream,
                        session: &session,
                        request: None,
                    };
                    taps.notify(&ctx, m);
                })))
            }
        };
        reply
    }
}

/// A session side whose exchanges the taps see and the actors act on.
pub(super) struct TappedSide {
    pub(super) inner: Arc<dyn SessionSide>,
    pub(super) taps: WireTaps,
    pub(super) origin: WireOrigin,
    pub(super) upstream: Arc<str>,
    pub(super) session: Arc<str>,
    /// Requests in flight both ways, by direction and id: the method and tool a
    /// response answers (kept only while actors act on this session).
    pub(super) asked: Arc<Asked>,
}

/// The method and tool of the requests in flight on one upstream session.
#[derive(Default)]
pub(super) struct Asked(Mutex<HashMap<(bool, Box<str>), Request>>);

/// A request's method and tool.
type Request = (Box<str>, Option<Box<str>>);

/// Requests remembered at most (a session whose answers never come forgets them all).
const MAX_ASKED: usize = 4096;

impl Asked {
    /// Notes `m` going `to_upstream` if it is a request; for a response, what it answers.
    fn note(&self, to_upstream: bool, m: &Message) -> Option<Request> {
        let id = m.id_key()?;
        let mut asked = self.0.lock();
        match m.kind() {
            crate::protocol::MessageKind::Request => {
                if asked.len() >= MAX_ASKED {
                    asked.clear();
                }
                let method = m.method().unwrap_or_default().into();
                asked.insert((to_upstream, id.into()), (method, m.tool_name().map(Box::from)));
                None
            }
            crate::protocol::MessageKind::Response => asked.remove(&(!to_upstream, Box::from(id))),
            crate::protocol::MessageKind::Notification => None,
        }
    }
}

impl TappedSide {
    fn context<'a>(&'a self, direction: WireDirection, request: Option<&'a Request>) -> WireContext<'a> {
        WireContext {
            direction,
            origin: self.origin,
            upstream: &self.upstream,
            session: &self.session,
            request: request.map(|(m, t)| (&**m, t.as_deref())),
        }
    }

    /// What the actors make of a reply's messages from the upstream: each let
    /// through, dropped, answered to the upstream, or replaced by an error (a JSON
    /// reply stays one).
    async fn acted_reply(&self, reply: McpReply) -> McpReply {
        if !self.taps.acting(self.origin) {
            return reply;
        }
        let from = FromUpstream {
            taps: self.taps.clone(),
            inner: Some(self.inner.clone()),
            asked: self.asked.clone(),
            origin: self.origin,
            upstream: self.upstream.clone(),
            session: self.session.clone(),
        };
        from.reply(reply).await
    }
}

impl FromUpstream {
    /// `reply` with the actors' verdicts on its messages.
    async fn reply(self, mut reply: McpReply) -> McpReply {
        reply.body = match std::mem::replace(&mut reply.body, ReplyBody::Accepted) {
            ReplyBody::Accepted => ReplyBody::Accepted,
            ReplyBody::Message(m) => self.act(m).await.map_or(ReplyBody::Accepted, ReplyBody::Message),
            ReplyBody::Stream(s) => ReplyBody::Stream(Box::pin(s.filter_map(move |m| {
                let from = self.clone();
                async move { from.act(m).await }
            }))),
        };
        reply
    }
}

impl WireTaps {
    /// A stateless request to `upstream` through the actors and taps: `send` sends
    /// what the actors let through; its reply's messages pass them back.
    pub(super) async fn stateless<'a, F>(
        &self,
        upstream: &Arc<str>,
        m: Message,
        send: F,
    ) -> Result<McpReply, GatewayError>
    where
        F: FnOnce(Message) -> Pin<Box<dyn Future<Output = Result<McpReply, GatewayError>> + Send + 'a>>,
    {
        let origin = WireOrigin::Stateless;
        let session: Arc<str> = Arc::from("stateless");
        let acting = self.acting(origin);
        let m = if acting {
            let ctx = WireContext {
                direction: WireDirection::ToUpstream,
                origin,
                upstream,
                session: &session,
                request: None,
            };
            match self.act(&ctx, m).await {
                WireVerdict::Pass(m) => m,
                WireVerdict::Drop => return Ok(McpReply::accepted()),
                WireVerdict::Answer(answer) => return Ok(McpReply::message(answer)),
                WireVerdict::Fail(e) => return Err(e),
            }
        } else {
            m
        };
        let asked = Arc::new(Asked::default());
        asked.note(true, &m);
        self.tap_sent(origin, upstream, &session, &m);
        let reply = send(m).await?;
        let reply = self.tap_reply(origin, upstream.clone(), session.clone(), reply);
        if !acting {
            return Ok(reply);
        }
        let from = FromUpstream { taps: self.clone(), inner: None, asked, origin, upstream: upstream.clone(), session };
        Ok(from.reply(reply).await)
    }
}

/// What acting on a message from the upstream needs, owned (a stream holds it).
#[derive(Clone)]
struct FromUpstream {
    taps: WireTaps,
    /// Where an answer to the upstream's request goes (none for stateless requests:
    /// a stateless server asks nothing).
    inner: Option<Arc<dyn SessionSide>>,
    asked: Arc<Asked>,
    origin: WireOrigin,
    upstream: Arc<str>,
    session: Arc<str>,
}

impl FromUpstream {
    /// The message the gateway gets in `m`'s place, if any.
    async fn act(&self, m: Message) -> Option<Message> {
        let answered = self.asked.note(false, &m);
        let ctx = WireContext {
            direction: WireDirection::FromUpstream,
            origin: self.origin,
            upstream: &self.upstream,
            session: &self.session,
            request: answered.as_ref().map(|(m, t)| (&**m, t.as_deref())),
        };
        let id = m.id_key().map(str::to_owned);
        let is_request = m.is_request();
        match self.taps.act(&ctx, m).await {
            WireVerdict::Pass(m) => Some(m),
            WireVerdict::Drop => None,
            // The upstream's request answered in the gateway's place.
            WireVerdict::Answer(answer) => {
                self.answer(answer).await;
                None
            }
            WireVerdict::Fail(e) if is_request => {
                self.answer(e.to_message(id.as_deref())).await;
                None
            }
            WireVerdict::Fail(e) => id.is_some().then(|| e.to_message(id.as_deref())),
        }
    }

    async fn answer(&self, answer: Message) {
        let Some(inner) = &self.inner else {
            tracing::warn!(upstream = %self.upstream, "an answer to a request on a stateless exchange has nowhere to go");
            return;
        };
        self.taps.tap_sent(self.origin, &self.upstream, &self.session, &answer);
        if let Err(e) = inner.send(answer, &HeaderMap::new()).await {
            tracing::warn!(upstream = %self.upstream, error = %e, "an answer to the upstream's request was not delivered");
        }
    }
}

impl SessionSide for TappedSide {
    fn send<'a>(&'a self, m: Message, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(async move {
            let m = if self.taps.acting(self.origin) {
                let answered = self.asked.note(true, &m);
                let ctx = self.context(WireDirection::ToUpstream, answered.as_ref());
                match self.taps.act(&ctx, m).await {
                    WireVerdict::Pass(m) => m,
                    WireVerdict::Drop => return Ok(McpReply::accepted()),
                    WireVerdict::Answer(answer) => return Ok(McpReply::message(answer)),
                    WireVerdict::Fail(e) => return Err(e),
                }
            } else {
                m
            };
            self.taps.tap_sent(self.origin, &self.upstream, &self.session, &m);
            let reply = self.inner.send(m, headers).await?;
            let reply = self.taps.tap_reply(self.origin, self.upstream.clone(), self.session.clone(), reply);
            Ok(self.acted_reply(reply).await)
        })
    }

    fn open_stream<'a>(&'a self, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(async move {
            let reply = self.inner.open_stream(headers).await?;
            let reply = self.taps.tap_reply(self.origin, self.upstream.clone(), self.session.clone(), reply);
            Ok(self.acted_reply(reply).await)
        })
    }

    fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    fn close(&self) -> SideFuture<'_, ()> {
        self.inner.close()
    }

    fn set_stateless(&self) {
        self.inner.set_stateless();
    }

    fn is_process(&self) -> bool {
        self.inner.is_process()
    }

    fn exit_code(&self, within: std::time::Duration) -> SideFuture<'_, Option<i32>> {
        self.inner.exit_code(within)
    }
}
