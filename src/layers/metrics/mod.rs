//! `metrics`: Prometheus counters and latency histograms per method, tool, route and
//! upstream.
//!
//! Label values are bounded: methods outside the MCP method list and tool names the
//! upstream never listed in a `tools/list` result are counted as `other`, so a client
//! cannot blow up label cardinality.
//!
//! ```
//! use shadowcat::layers::metrics::{MetricsLayer, KnownTools};
//! use shadowcat::pipeline::{McpReply, McpRequest, McpService};
//! use shadowcat::protocol::{Message, ProtocolVersion};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio_test_block(async {
//! let inner = McpService::new(service_fn(|_req: McpRequest| async { Ok(McpReply::accepted()) }));
//! let svc = MetricsLayer::new(KnownTools::default()).layer(inner);
//! let msg = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()).unwrap();
//! let reply = svc.oneshot(McpRequest::message(msg, "/mcp".into(), ProtocolVersion::LATEST)).await.unwrap();
//! # let _ = reply; });
//! # fn tokio_test_block<F: std::future::Future>(f: F) { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f); }
//! ```

mod known_tools;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::Deserialize;
use tower::{Layer, Service};

pub use known_tools::KnownTools;

use crate::error::GatewayError;
use crate::pipeline::{BuildContext, McpReply, McpRequest, McpService, Outcome, StageDef, StageFn};

/// Counter of finished calls.
pub const REQUESTS_TOTAL: &str = "shadowcat_requests_total";
/// Histogram of call latency in seconds (until the final response).
pub const REQUEST_DURATION: &str = "shadowcat_request_duration_seconds";

/// The registry entry.
pub const STAGE: StageDef = StageDef { name: "metrics", build, must_follow: &[] };

/// Options of the `metrics` stage (none yet).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {}

fn build(options: &serde_json::Value, ctx: &BuildContext) -> Result<StageFn, String> {
    let _options: Options = super::stage_options(options)?;
    let layer = MetricsLayer::new(ctx.known_tools.clone());
    Ok(Arc::new(move |inner| McpService::new(layer.layer(inner))))
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

// === impl MetricsLayer ===

/// Records request counts and latencies.
#[derive(Clone, Default)]
pub struct MetricsLayer {
    known_tools: KnownTools,
}

impl MetricsLayer {
    /// A layer that takes tool-name labels from `known_tools`.
    pub fn new(known_tools: KnownTools) -> Self {
        MetricsLayer { known_tools }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics { inner, known_tools: self.known_tools.clone() }
    }
}

// === impl Metrics ===

/// The `metrics` service.
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    known_tools: KnownTools,
}

struct CallLabels {
    method: &'static str,
    tool: Option<String>,
    route: String,
    request_id: Option<String>,
    started: Instant,
}

impl<S> Service<McpRequest> for Metrics<S>
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
        let labels = CallLabels {
            method: method_label(req.method_label()),
            tool: req.msg().and_then(|m| m.tool_name()),
            route: req.route.to_string(),
            request_id: req.msg().and_then(|m| m.id_key()).map(str::to_owned),
            started: req.received_at,
        };
        ResponseFuture { inner: self.inner.call(req), labels: Some(labels), known_tools: self.known_tools.clone() }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        labels: Option<CallLabels>,
        known_tools: KnownTools,
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
        let Some(labels) = this.labels.take() else {
            return Poll::Ready(result);
        };
        let known_tools = this.known_tools.clone();
        Poll::Ready(match result {
            Ok(reply) => {
                let upstream = reply.upstream.as_deref().unwrap_or("none").to_owned();
                let id = labels.request_id.clone();
                Ok(reply.observe(id, move |outcome, final_message| {
                    if labels.method == "tools/list" {
                        if let Some(m) = final_message {
                            known_tools.learn(&upstream, m);
                        }
                    }
                    record(&labels, &upstream, &outcome.label(), &known_tools);
                }))
            }
            Err(err) => {
                record(&labels, "none", &Outcome::Failed(err.label()).label(), &known_tools);
                Err(err)
            }
        })
    }
}

fn record(labels: &CallLabels, upstream: &str, status: &str, known_tools: &KnownTools) {
    let tool = match &labels.tool {
        Some(name) if known_tools.contains(upstream, name) => name.clone(),
        Some(_) => "other".to_owned(),
        None => String::new(),
    };
    let elapsed = labels.started.elapsed().as_secs_f64();
    let common = [
        ("method", labels.method.to_owned()),
        ("tool", tool),
        ("route", labels.route.clone()),
        ("upstream", upstream.to_owned()),
    ];
    let mut with_status = common.to_vec();
    with_status.push(("status", status.to_owned()));
    metrics::counter!(REQUESTS_TOTAL, &with_status).increment(1);
    metrics::histogram!(REQUEST_DURATION, &common).record(elapsed);
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
