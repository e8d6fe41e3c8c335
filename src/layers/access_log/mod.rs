//! `access_log`: one structured `tracing` event per request, when its reply is
//! complete (for a stream, when the final response has passed).
//!
//! Fields: `session` (the session's tag, never its id), `method`, `tool`, `id`, `route`, `upstream`, `status`,
//! `duration_ms`, and `policy` when the `policy` stage allowed the call (`allow by eng-tools`). The events have target `shadowcat::access`, so they can be routed
//! or filtered on their own (`RUST_LOG=shadowcat::access=info`).
//!
//! ```yaml
//! pipeline:
//!   - access_log              # defaults
//!   - access_log: { level: debug }
//! ```

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use std::sync::atomic::{AtomicU64, Ordering};

use super::{BuildContext, StageDef, StageFn};
use crate::pipeline::{CallEnd, McpRequest, Stage, StageControl, StageLayer};

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

fn build(options: &serde_json::Value, ctx: &BuildContext) -> Result<StageFn, String> {
    let options: Options = super::stage_options(options)?;
    let logger = AccessLogger::new(options.level);
    ctx.controls.register(Arc::new(logger.clone()));
    let layer: AccessLogLayer = StageLayer::new(logger);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// The `access_log` layer.
pub type AccessLogLayer = StageLayer<AccessLogger>;

/// Logs one event per call.
#[derive(Clone, Default)]
pub struct AccessLogger {
    level: Level,
    logged: Arc<AtomicU64>,
}

impl AccessLogger {
    /// A logger at `level`.
    pub fn new(level: Level) -> Self {
        AccessLogger { level, logged: Arc::default() }
    }
}

/// `GET /stages/access_log` on the admin listener: the level and the events logged.
impl StageControl for AccessLogger {
    fn name(&self) -> &str {
        STAGE.name
    }

    fn status(&self) -> serde_json::Value {
        let level = match self.level {
            Level::Info => "info",
            Level::Debug => "debug",
        };
        serde_json::json!({ "level": level, "logged": self.logged.load(Ordering::Relaxed) })
    }
}

/// What the logger keeps about a call.
pub struct Entry {
    session: Option<Arc<crate::session::Session>>,
    method: String,
    tool: Option<String>,
    id: Option<Arc<str>>,
    route: Arc<str>,
    started: Instant,
    /// What an earlier stage decided ([`AccessNote`](crate::pipeline::AccessNote)).
    note: Option<Arc<str>>,
}

impl AccessLogger {
    fn enabled(&self) -> bool {
        match self.level {
            Level::Info => tracing::enabled!(target: "shadowcat::access", tracing::Level::INFO),
            Level::Debug => tracing::enabled!(target: "shadowcat::access", tracing::Level::DEBUG),
        }
    }
}

impl Stage for AccessLogger {
    type Call = Option<Entry>;

    fn begin(&self, req: &McpRequest) -> Option<Entry> {
        if !self.enabled() {
            return None;
        }
        Some(Entry {
            session: req.session.clone(),
            method: req.method_label().to_owned(),
            tool: req.msg().and_then(|m| m.tool_name()).map(str::to_owned),
            id: req.msg().and_then(|m| m.id_shared()),
            route: req.route.clone(),
            started: req.received_at,
            note: req.context.extensions.get::<crate::pipeline::AccessNote>().map(|n| n.0.clone()),
        })
    }

    fn end(&self, e: &Option<Entry>, end: &CallEnd<'_>) {
        let Some(e) = e else { return };
        self.logged.fetch_add(1, Ordering::Relaxed);
        let duration_ms = e.started.elapsed().as_secs_f64() * 1000.0;
        let new_session = end.new_session.map(|s| s.tag());
        let session = new_session.or(e.session.as_ref().map(|s| s.tag())).unwrap_or("-");
        let tool = e.tool.as_deref().unwrap_or("-");
        let id = e.id.as_deref().unwrap_or("-");
        let upstream = end.upstream.unwrap_or("-");
        let status = end.outcome.label();
        let policy = e.note.as_deref().map(tracing::field::display);
        match self.level {
            Level::Info => tracing::info!(
                target: "shadowcat::access",
                session = %session, method = %e.method, tool = %tool, id = %id, route = %e.route,
                upstream = %upstream, status = %status, duration_ms, policy,
                "request"
            ),
            Level::Debug => tracing::debug!(
                target: "shadowcat::access",
                session = %session, method = %e.method, tool = %tool, id = %id, route = %e.route,
                upstream = %upstream, status = %status, duration_ms, policy,
                "request"
            ),
        }
    }
}
