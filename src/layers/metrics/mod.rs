//! `metrics`: Prometheus counters and latency histograms per method, tool, route and
//! upstream.
//!
//! Label values are bounded: methods outside the MCP method list and tool names the
//! upstream never listed in a `tools/list` result are counted as `other`, so a client
//! cannot blow up label cardinality.
//!
//! ```yaml
//! pipeline:
//!   - metrics
//! ```

mod handles;
mod known_tools;

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

pub use known_tools::KnownTools;

use super::{BuildContext, StageDef, StageFn};
use crate::pipeline::{CallEnd, McpRequest, Refusal, RefusalObserver, Stage, StageLayer};
use crate::upstream::{WireContext, WireOrigin, WireTap};

/// Counter of finished calls.
pub const REQUESTS_TOTAL: &str = "shadowcat_requests_total";
/// Histogram of call latency in seconds (until the final response).
pub const REQUEST_DURATION: &str = "shadowcat_request_duration_seconds";
/// Counter of requests the front refused before the pipeline, by reason.
pub const REFUSED_TOTAL: &str = "shadowcat_refused_total";
/// Counter of the messages the gateway itself exchanges with upstreams (pooled
/// sessions, stateless requests), by upstream, origin and direction.
pub const UPSTREAM_MESSAGES_TOTAL: &str = "shadowcat_upstream_messages_total";

/// The registry entry.
pub const STAGE: StageDef = StageDef { name: "metrics", build, must_follow: &[] };

/// Options of the `metrics` stage (none yet).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {}

fn build(options: &serde_json::Value, ctx: &BuildContext) -> Result<StageFn, String> {
    let _options: Options = super::stage_options(options)?;
    ctx.refusals.register(Arc::new(RefusalCounter));
    ctx.wire.register(Arc::new(WireCounter));
    let layer: MetricsLayer = StageLayer::new(Recorder::new(ctx.known_tools.clone()));
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// MCP methods that are counted under their own name.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "GET",
    "DELETE",
    "response",
];

fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

/// The `metrics` layer.
pub type MetricsLayer = StageLayer<Recorder>;

/// Counts refusals before the pipeline (`shadowcat_refused_total{reason}`; the
/// reasons are the error labels, a fixed set).
struct RefusalCounter;

/// Counts the upstream wire where it is the gateway's own (a client session's
/// messages are the client's, counted as requests already). Labels: the upstream's
/// config name, the origin and the direction, all bounded.
struct WireCounter;

impl WireTap for WireCounter {
    fn wants(&self, origin: WireOrigin) -> bool {
        origin != WireOrigin::ClientSession
    }

    fn on_wire(&self, ctx: &WireContext<'_>, _message: &crate::protocol::Message) {
        metrics::counter!(UPSTREAM_MESSAGES_TOTAL,
            "upstream" => ctx.upstream.to_owned(), "origin" => ctx.origin.label(), "direction" => ctx.direction.label())
        .increment(1);
    }
}

impl RefusalObserver for RefusalCounter {
    fn refused(&self, refusal: &Refusal<'_>) {
        metrics::counter!(REFUSED_TOTAL, "reason" => refusal.error.label()).increment(1);
    }
}

/// Records request counts and latencies.
#[derive(Clone, Default)]
pub struct Recorder {
    known_tools: KnownTools,
    handles: Arc<handles::Handles>,
}

impl Recorder {
    /// A recorder that takes tool-name labels from `known_tools`.
    pub fn new(known_tools: KnownTools) -> Self {
        Recorder { known_tools, handles: Arc::default() }
    }
}

/// What the recorder keeps about a call.
pub struct CallLabels {
    method: &'static str,
    tool: Option<String>,
    route: Arc<str>,
    started: Instant,
}

impl Stage for Recorder {
    type Call = CallLabels;

    fn begin(&self, req: &McpRequest) -> CallLabels {
        CallLabels {
            method: method_label(req.method_label()),
            tool: req.msg().and_then(|m| m.tool_name()).map(str::to_owned),
            route: req.route.clone(),
            started: req.received_at,
        }
    }

    fn end(&self, call: &CallLabels, end: &CallEnd<'_>) {
        let upstream = end.upstream.unwrap_or("none");
        if call.method == "tools/list" {
            if let Some(m) = end.response {
                self.known_tools.learn(upstream, m);
            }
        }
        let tool = match &call.tool {
            Some(name) if self.known_tools.contains(upstream, name) => name.as_str(),
            Some(_) => "other",
            None => "",
        };
        let labels = handles::Labels { method: call.method, tool, route: &call.route, upstream };
        self.handles.record(&labels, &end.outcome.label(), call.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("x/../../evil"), "other");
    }
}
