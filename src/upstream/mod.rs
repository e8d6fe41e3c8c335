//! Upstream MCP servers: the connectors the router hands sessions to.

pub mod era;
pub mod http;
mod outbound;
pub mod replay;
mod session;
pub mod stdio;
mod wire;

pub use http::Challenge;
pub use outbound::{OutboundHeaders, PEER_HEADER};
pub use session::{SessionSide, SideFuture, UpstreamSession};
pub use wire::{WireActor, WireContext, WireDirection, WireFlow, WireOrigin, WireTap, WireTaps, WireVerdict};

use std::sync::Arc;

use ::http::HeaderMap;

use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use crate::protocol::Message;
use crate::reply::McpReply;

/// One configured upstream. Callers (the router, the sessions, the bridge) use its
/// methods only and never see its kind: a new kind is a variant of `Kind` and an arm
/// in each method here, nothing elsewhere.
#[derive(Clone)]
pub struct Upstream {
    kind: Kind,
    name: Arc<str>,
    /// Who sees the upstream wire.
    wire: WireTaps,
}

#[derive(Clone)]
enum Kind {
    /// Spawned processes.
    Stdio(Arc<stdio::StdioUpstream>),
    /// A remote Streamable HTTP server.
    Http(Arc<http::HttpUpstream>),
    /// A recorded tape.
    Replay(Arc<replay::ReplayUpstream>),
}

impl Upstream {
    /// Builds an upstream from its config; `wire` sees what crosses its wire.
    pub fn from_config(name: &str, cfg: &UpstreamConfig, wire: WireTaps) -> Result<Upstream, String> {
        let kind = match cfg {
            UpstreamConfig::Stdio(s) => Kind::Stdio(stdio::StdioUpstream::new(name, s)?),
            UpstreamConfig::Http(h) => {
                Kind::Http(http::HttpUpstream::new(name, h).map_err(|e| format!("upstreams.{name}.http.{e}"))?)
            }
            UpstreamConfig::Replay(r) => Kind::Replay(replay::ReplayUpstream::new(name, r)?),
        };
        Ok(Upstream { kind, name: name.into(), wire })
    }

    /// Its name in the config.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Starts background work (warm pools, health checks).
    pub async fn start(&self) {
        match &self.kind {
            Kind::Stdio(u) => u.start().await,
            Kind::Http(u) => u.start().await,
            Kind::Replay(_) => {}
        }
    }

    /// Whether the upstream can serve.
    pub fn is_ready(&self) -> bool {
        match &self.kind {
            Kind::Stdio(u) => u.is_ready(),
            Kind::Http(u) => u.is_ready(),
            Kind::Replay(_) => true,
        }
    }

    /// Opens an upstream session for `origin` (a client's session, or one the
    /// bridge pools), logged as `session_tag`.
    pub async fn open(&self, session_tag: &str, origin: WireOrigin) -> Result<UpstreamSession, GatewayError> {
        let (wire, name) = (&self.wire, &self.name);
        Ok(match &self.kind {
            Kind::Stdio(u) => UpstreamSession::tapped(u.open(session_tag).await?, wire, origin, name, session_tag),
            Kind::Http(u) => UpstreamSession::tapped(u.open(session_tag).await?, wire, origin, name, session_tag),
            Kind::Replay(u) => UpstreamSession::tapped(u.open(), wire, origin, name, session_tag),
        })
    }

    /// The upstream's protocol era: pinned by config, else probed once and cached
    /// by the upstream itself (the one place it is kept).
    pub async fn era(&self) -> Result<era::Era, GatewayError> {
        match &self.kind {
            Kind::Stdio(u) => u.era().await,
            Kind::Http(u) => u.era().await,
            Kind::Replay(_) => Ok(era::Era::Legacy),
        }
    }

    /// The era if it can be known without starting a process: an HTTP upstream is
    /// asked (once); a stdio one answers only when pinned or probed before.
    pub async fn era_without_spawning(&self) -> Option<era::Era> {
        match &self.kind {
            Kind::Stdio(u) => u.known_era(),
            Kind::Replay(_) => Some(era::Era::Legacy),
            Kind::Http(u) => match u.era().await {
                Ok(era) => Some(era),
                Err(e) => {
                    tracing::debug!(error = %e, "era unknown; the session goes upstream as is");
                    None
                }
            },
        }
    }

    /// Whether the upstream takes a stateless (2026-07-28) request as it is, without
    /// a session (a remote server; a process needs a session of its own).
    pub fn takes_stateless_requests(&self) -> bool {
        matches!(self.kind, Kind::Http(_))
    }

    /// Whether requests reach the upstream with HTTP headers (then a 2026-07-28
    /// server checks its own `Mcp-Param-*` headers).
    pub fn receives_headers(&self) -> bool {
        matches!(self.kind, Kind::Http(_))
    }

    /// Sends a stateless request as it is (see [`takes_stateless_requests`](Self::takes_stateless_requests)).
    pub async fn send_stateless(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        let Kind::Http(u) = &self.kind else {
            return Err(GatewayError::Internal("a stdio upstream takes stateless requests only on a session".into()));
        };
        if !self.wire.wanted(WireOrigin::Stateless) {
            return u.send_stateless(m, headers).await;
        }
        self.wire.stateless(&self.name, m, |m| Box::pin(u.send_stateless(m, headers))).await
    }

    /// Stops background work and idle resources.
    pub async fn shutdown(&self) {
        match &self.kind {
            Kind::Stdio(u) => u.shutdown().await,
            Kind::Http(u) => u.shutdown().await,
            Kind::Replay(_) => {}
        }
    }
}
