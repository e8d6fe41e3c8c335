//! `access_log`: one structured `tracing` event per request, when its reply is
//! complete (for a stream, when the final response has passed).
//!
//! Fields: `session`, `method`, `tool`, `id`, `route`, `upstream`, `status`,
//! `duration_ms`. The events have target `shadowcat::access`, so they can be routed
//! or filtered on their own (`RUST_LOG=shadowcat::access=info`).
//!
//! ```yaml
//! pipeline:
//!   - access_log              # defaults
//!   - access_log: { level: debug }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::Deserialize;
use tower::{Layer, Service};

use crate::error::GatewayError;
use crate::pipeline::{BuildContext, McpReply, McpRequest, McpService, Outcome, StageDef, StageFn};

/// The registry entry.
pub const STAGE: StageDef = StageDef { name: "access_log", build, must_follow: &[] };

/// The level access events are logged at.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `INFO` (default).
    #[default]
    Info,
    /// `DEBUG`.
    Debug,
}

/// Options of the `access_log` stage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The level of the events (`info` or `debug`).
    #[serde(default)]
    level: Level,
}

fn build(options: &serde_json::Value, _ctx: &BuildContext) -> Result<StageFn, String> {
    let options: Options = super::stage_options(options)?;
    let layer = AccessLogLayer { level: options.level };
    Ok(Arc::new(move |inner| McpService::new(layer.layer(inner))))
}

// === impl AccessLogLayer ===

/// Logs one event per request.
#[derive(Clone, Copy, Default)]
pub struct AccessLogLayer {
    level: Level,
}

impl AccessLogLayer {
    /// A layer that logs at `level`.
    pub fn new(level: Level) -> Self {
        AccessLogLayer { level }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner, level: self.level }
    }
}

// === impl AccessLog ===

/// The `access_log` service.
#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    level: Level,
}

struct Entry {
    level: Level,
    session: Option<String>,
    method: String,
    tool: Option<String>,
    id: Option<String>,
    route: String,
    started: Instant,
}

impl Entry {
    fn emit(&self, upstream: &str, status: &str, session: Option<&str>) {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let session = session.or(self.session.as_deref()).unwrap_or("-");
        let tool = self.tool.as_deref().unwrap_or("-");
        let id = self.id.as_deref().unwrap_or("-");
        match self.level {
            Level::Info => tracing::info!(
                target: "shadowcat::access",
                session = %session, method = %self.method, tool = %tool, id = %id, route = %self.route,
                upstream = %upstream, status = %status, duration_ms,
                "request"
            ),
            Level::Debug => tracing::debug!(
                target: "shadowcat::access",
                session = %session, method = %self.method, tool = %tool, id = %id, route = %self.route,
                upstream = %upstream, status = %status, duration_ms,
                "request"
            ),
        }
    }
}

impl<S> Service<McpRequest> for AccessLog<S>
where
    S: Service<McpRequest, Response = McpReply, Error = GatewayError>,
{
    type Response = McpReply;
    type Error = GatewayError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: McpRequest) -> Self::Future {
        let entry = Entry {
            level: self.level,
            session: req.session.as_ref().map(|s| s.id().to_owned()),
            method: req.method_label().to_owned(),
            tool: req.msg().and_then(|m| m.tool_name()),
            id: req.msg().and_then(|m| m.id_key()).map(str::to_owned),
            route: req.route.to_string(),
            started: req.received_at,
        };
        ResponseFuture { inner: self.inner.call(req), entry: Some(entry) }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`AccessLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        entry: Option<Entry>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<McpReply, GatewayError>>,
{
    type Output = Result<McpReply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(entry) = this.entry.take() else {
            return Poll::Ready(result);
        };
        Poll::Ready(match result {
            Ok(reply) => {
                let upstream = reply.upstream.as_deref().unwrap_or("-").to_owned();
                let new_session = reply.new_session.as_ref().map(|s| s.id().to_owned());
                let id = entry.id.clone();
                Ok(reply.observe(id, move |outcome, _| {
                    entry.emit(&upstream, &outcome.label(), new_session.as_deref());
                }))
            }
            Err(err) => {
                entry.emit("-", &Outcome::Failed(err.label()).label(), None);
                Err(err)
            }
        })
    }
}
