//! The upstream side of one client session, whatever serves it: a [`SessionSide`]
//! behind one handle, [`UpstreamSession`]. The sessions and the router hold the
//! handle and never ask what is behind it; a new kind of upstream (a tape replayed as
//! a server, several servers behind one route) brings its own `SessionSide`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::HeaderMap;

use crate::error::GatewayError;
use crate::protocol::Message;
use crate::reply::McpReply;

/// A future of a [`SessionSide`] method.
pub type SideFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What serves one client session on the upstream side.
pub trait SessionSide: Send + Sync + 'static {
    /// Sends one client message with the client's headers (an HTTP upstream gets
    /// only those [`OutboundHeaders`](super::OutboundHeaders) allows).
    fn send<'a>(&'a self, m: Message, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>>;

    /// Opens the server-to-client stream.
    fn open_stream<'a>(&'a self, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>>;

    /// Whether the side still exists.
    fn is_alive(&self) -> bool;

    /// Ends the side and frees what it holds.
    fn close(&self) -> SideFuture<'_, ()>;

    /// For a stateless (2026-07-28) server: no handshake will come.
    fn set_stateless(&self) {}

    /// Whether the side is a process of this session's own (its exit ends forward mode).
    fn is_process(&self) -> bool {
        false
    }

    /// A process's exit code, if it exited on its own (waiting up to `within`).
    fn exit_code(&self, within: Duration) -> SideFuture<'_, Option<i32>> {
        let _ = within;
        Box::pin(std::future::ready(None))
    }
}

/// The upstream side of one client session.
pub struct UpstreamSession {
    side: Box<dyn SessionSide>,
}

impl UpstreamSession {
    /// A handle on `side`.
    pub fn new(side: impl SessionSide) -> Self {
        UpstreamSession { side: Box::new(side) }
    }

    /// A handle on `side` whose exchanges `taps` see (a plain one with no tap).
    pub fn tapped(
        side: impl SessionSide,
        taps: &super::WireTaps,
        origin: super::WireOrigin,
        upstream: &std::sync::Arc<str>,
        session: &str,
    ) -> Self {
        if !taps.wanted(origin) {
            return UpstreamSession::new(side);
        }
        UpstreamSession::new(super::wire::TappedSide {
            inner: std::sync::Arc::new(side),
            taps: taps.clone(),
            origin,
            upstream: upstream.clone(),
            session: session.into(),
            asked: Default::default(),
        })
    }

    /// Sends one client message with the client's headers.
    pub async fn send(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        self.side.send(m, headers).await
    }

    /// Opens the server-to-client stream.
    pub async fn open_stream(&self, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        self.side.open_stream(headers).await
    }

    /// For a stateless (2026-07-28) server: no handshake will come.
    pub fn set_stateless(&self) {
        self.side.set_stateless();
    }

    /// A process's exit code, if it exited on its own (waiting up to `within`).
    pub async fn exit_code(&self, within: Duration) -> Option<i32> {
        self.side.exit_code(within).await
    }

    /// Whether the upstream side is a process of this session's own (stdio).
    pub fn is_process(&self) -> bool {
        self.side.is_process()
    }

    /// Whether the upstream side still exists.
    pub fn is_alive(&self) -> bool {
        self.side.is_alive()
    }

    /// Ends the upstream side and frees what it holds.
    pub async fn close(&self) {
        self.side.close().await
    }
}

// === impl SessionSide for the stdio and HTTP sessions ===

impl SessionSide for super::stdio::StdioSession {
    fn send<'a>(&'a self, m: Message, _headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        // A process has no headers.
        Box::pin(super::stdio::StdioSession::send(self, m))
    }

    fn open_stream<'a>(&'a self, _headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(std::future::ready(super::stdio::StdioSession::open_stream(self)))
    }

    fn is_alive(&self) -> bool {
        super::stdio::StdioSession::is_alive(self)
    }

    fn close(&self) -> SideFuture<'_, ()> {
        Box::pin(super::stdio::StdioSession::close(self))
    }

    fn set_stateless(&self) {
        super::stdio::StdioSession::set_stateless(self);
    }

    fn is_process(&self) -> bool {
        true
    }

    fn exit_code(&self, within: Duration) -> SideFuture<'_, Option<i32>> {
        Box::pin(super::stdio::StdioSession::exit_code(self, within))
    }
}

impl SessionSide for super::http::HttpSession {
    fn send<'a>(&'a self, m: Message, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(super::http::HttpSession::send(self, m, headers))
    }

    fn open_stream<'a>(&'a self, headers: &'a HeaderMap) -> SideFuture<'a, Result<McpReply, GatewayError>> {
        Box::pin(super::http::HttpSession::open_stream(self, headers))
    }

    fn is_alive(&self) -> bool {
        super::http::HttpSession::is_alive(self)
    }

    fn close(&self) -> SideFuture<'_, ()> {
        Box::pin(super::http::HttpSession::close(self))
    }
}
