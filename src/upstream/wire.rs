//! The upstream wire: every message the gateway exchanges with an upstream, where
//! it differs from the client's wire or not. A client session's messages mostly
//! cross both wires alike; the sessions the bridge pools for 2026-07-28 clients (their
//! `initialize`, the `elicitation/create` a legacy server sends during a bridged call
//! and the bridge's answer, the gateway's own `tools/list` reads) and the stateless
//! requests the gateway sends for them exist only here.
//!
//! A stage that keeps or counts this wire registers a [`WireTap`] at build time
//! (`layers::BuildContext::wire`). Taps see messages; they do not change them. With
//! no tap registered, nothing is wrapped.

use std::sync::Arc;

use futures_util::StreamExt;
use http::HeaderMap;
use parking_lot::RwLock;

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
}

impl WireTaps {
    /// Registers a tap (at build time).
    pub fn register(&self, tap: Arc<dyn WireTap>) {
        self.taps.write().push(tap);
    }

    /// Whether any tap is registered.
    pub fn is_empty(&self) -> bool {
        self.taps.read().is_empty()
    }

    /// Whether any tap wants the exchanges of `origin`.
    pub fn wanted(&self, origin: WireOrigin) -> bool {
        self.taps.read().iter().any(|t| t.wants(origin))
    }

    fn notify(&self, ctx: &WireContext<'_>, m: &Message) {
        for tap in self.taps.read().iter() {
            tap.on_wire(ctx, m);
        }
    }

    /// Tells the taps of a message going upstream.
    pub(super) fn tap_sent(&self, origin: WireOrigin, upstream: &str, session: &str, m: &Message) {
        self.notify(&WireContext { direction: WireDirection::ToUpstream, origin, upstream, session }, m);
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
                    };
                    taps.notify(&ctx, m);
                })))
            }
        };
        reply
    }
}

/// A session side whose exchanges the taps see.
pub(super) struct TappedSide {
    pub(super) inner: Box<dyn SessionSide>,
    pub(super) taps: WireTaps,
    pub(super) origin: WireOrigin,
    pub(super) upstream: Arc<str>,
    pub(super) session: Arc<str>,
}

impl SessionSide for TappedSide {
    fn send<'a>(&'a self, m: Message, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(async move {
            self.taps.tap_sent(self.origin, &self.upstream, &self.session, &m);
            let reply = self.inner.send(m, headers).await?;
            Ok(self.taps.tap_reply(self.origin, self.upstream.clone(), self.session.clone(), reply))
        })
    }

    fn open_stream<'a>(&'a self, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(async move {
            let reply = self.inner.open_stream(headers).await?;
            Ok(self.taps.tap_reply(self.origin, self.upstream.clone(), self.session.clone(), reply))
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
