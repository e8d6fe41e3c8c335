//! Upstream MCP servers: the connectors the router hands sessions to.

pub mod era;
pub mod http;
mod outbound;
pub mod stdio;

pub use http::Challenge;
pub use outbound::OutboundHeaders;

use std::sync::Arc;

use ::http::HeaderMap;

use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use crate::pipeline::McpReply;
use crate::protocol::Message;

/// One configured upstream.
#[derive(Clone)]
pub enum Upstream {
    /// Spawned processes.
    Stdio(Arc<stdio::StdioUpstream>),
    /// A remote Streamable HTTP server.
    Http(Arc<http::HttpUpstream>),
}

impl Upstream {
    /// Builds an upstream from its config.
    pub fn from_config(name: &str, cfg: &UpstreamConfig) -> Result<Upstream, String> {
        match cfg {
            UpstreamConfig::Stdio(s) => Ok(Upstream::Stdio(stdio::StdioUpstream::new(name, s)?)),
            UpstreamConfig::Http(h) => {
                Ok(Upstream::Http(http::HttpUpstream::new(name, h).map_err(|e| format!("upstreams.{name}.http.{e}"))?))
            }
        }
    }

    /// Starts background work (warm pools, health checks).
    pub async fn start(&self) {
        match self {
            Upstream::Stdio(u) => u.start().await,
            Upstream::Http(u) => u.start().await,
        }
    }

    /// Whether the upstream can serve.
    pub fn is_ready(&self) -> bool {
        match self {
            Upstream::Stdio(u) => u.is_ready(),
            Upstream::Http(u) => u.is_ready(),
        }
    }

    /// Opens an upstream session for a new client session.
    pub async fn open(&self, session_tag: &str) -> Result<UpstreamSession, GatewayError> {
        match self {
            Upstream::Stdio(u) => Ok(UpstreamSession::Stdio(u.open(session_tag).await?)),
            Upstream::Http(u) => Ok(UpstreamSession::Http(u.open(session_tag).await?)),
        }
    }

    /// Stops background work and idle resources.
    pub async fn shutdown(&self) {
        match self {
            Upstream::Stdio(u) => u.shutdown().await,
            Upstream::Http(u) => u.shutdown().await,
        }
    }
}

/// The upstream side of one client session.
pub enum UpstreamSession {
    /// A process of a stdio upstream.
    Stdio(stdio::StdioSession),
    /// A session on a remote Streamable HTTP server.
    Http(http::HttpSession),
    /// A session the gateway owns, for a 2025-era client of a modern-only upstream.
    Modern(Arc<crate::bridge::legacy_client::ModernSession>),
}

impl UpstreamSession {
    /// Sends one client message with the client's headers; an HTTP upstream gets only
    /// those [`OutboundHeaders`] allows.
    pub async fn send(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        match self {
            UpstreamSession::Stdio(s) => {
                let _ = headers; // a process has no headers
                s.send(m).await
            }
            UpstreamSession::Http(s) => s.send(m, headers).await,
            UpstreamSession::Modern(s) => s.send(m, headers).await,
        }
    }

    /// Opens the server-to-client stream.
    pub async fn open_stream(&self, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        match self {
            UpstreamSession::Stdio(s) => {
                let _ = headers;
                s.open_stream()
            }
            UpstreamSession::Http(s) => s.open_stream(headers).await,
            UpstreamSession::Modern(s) => s.open_stream(),
        }
    }

    /// For a stateless (2026-07-28) stdio server: no handshake will come (see
    /// `StdioSession::set_stateless`).
    pub fn set_stateless(&self) {
        if let UpstreamSession::Stdio(s) = self {
            s.set_stateless();
        }
    }

    /// A stdio process's exit code, if it exited on its own (waiting up to `within`
    /// for it to be gone).
    pub async fn exit_code(&self, within: std::time::Duration) -> Option<i32> {
        match self {
            UpstreamSession::Stdio(s) => s.exit_code(within).await,
            _ => None,
        }
    }

    /// Whether the upstream side is a process of this session's own (stdio).
    pub fn is_process(&self) -> bool {
        matches!(self, UpstreamSession::Stdio(_))
    }

    /// Whether the upstream side still exists.
    pub fn is_alive(&self) -> bool {
        match self {
            UpstreamSession::Stdio(s) => s.is_alive(),
            UpstreamSession::Http(s) => s.is_alive(),
            UpstreamSession::Modern(s) => s.is_alive(),
        }
    }

    /// Ends the upstream side and frees what it holds.
    pub async fn close(&self) {
        match self {
            UpstreamSession::Stdio(s) => s.close().await,
            UpstreamSession::Http(s) => s.close().await,
            UpstreamSession::Modern(s) => s.close().await,
        }
    }
}
