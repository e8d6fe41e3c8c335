//! `rate_limit`: how often a client may call, per key class.
//!
//! ```yaml
//! pipeline:
//!   - auth: { ... }
//!   - rate_limit:
//!       limits:
//!         - { key: [principal, tool], rate: 10/s, burst: 20 }
//!         - { key: [client], rate: 600/m }
//! ```
//!
//! Each limit is a key class: the parts of a request its buckets are keyed by
//! (`principal`, `client` (the peer's address), `route`, `upstream`, `method`,
//! `tool`), a rate (`N/s`, `N/m`, `N/h`, `N/d`, or `N/<duration>` such as
//! `N/100ms`) and a burst (default: N). Every client request is counted in every
//! class that applies to it (a class keyed by `tool`, or given `methods`, applies
//! to those calls only); the later rounds of a multi-round-trip call are not
//! counted again. A request over a limit is refused: over HTTP with 429, a
//! `Retry-After` header and a JSON-RPC error; on stdio with the JSON-RPC error,
//! whose `data.retryAfterMs` says when to try again.
//!
//! Buckets are GCRA (`governor`), behind [`Limiter`] so that a limiter shared by
//! replicas can take the place of the local one. Each class keeps at most
//! `max_keys` keys (keys beyond share one bucket until a sweep makes room); full
//! buckets are swept every `sweep`. Metrics per class, never per key:
//! `shadowcat_rate_limit_requests_total{class, outcome}` and
//! `shadowcat_rate_limit_keys{class}`.

mod limiter;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderValue, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{BuildContext, StageDef, StageFn};
use crate::error::{GatewayError, Rejection};
use crate::pipeline::{CallInfo, Flow, Lifecycle, McpRequest, Stage, StageControl, StageLayer};
pub use limiter::{Limiter, LocalLimiter};

/// The registry entry.
pub const STAGE: StageDef = StageDef {
    name: "rate_limit",
    build,
    must_follow: &[("auth", "limits keyed by principal need the principal `auth` names")],
};

/// The JSON-RPC code of a request refused for its rate.
pub const RATE_LIMITED_CODE: i32 = -32013;

/// The counter of requests per class and outcome.
const REQUESTS: &str = "shadowcat_rate_limit_requests_total";

/// What a bucket is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Part {
    /// The authenticated principal (`""` without one).
    Principal,
    /// The client's address (`""` on stdio).
    #[serde(alias = "client_address", alias = "address")]
    Client,
    Route,
    Upstream,
    Method,
    /// The tool of a `tools/call` (a class keyed by tool counts only those).
    Tool,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Principal => "principal",
            Part::Client => "client",
            Part::Route => "route",
            Part::Upstream => "upstream",
            Part::Method => "method",
            Part::Tool => "tool",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitOptions {
    key: Vec<Part>,
    rate: String,
    #[serde(default)]
    burst: Option<u32>,
    /// The class's name in metrics and errors (default: its key parts, `principal+tool`).
    #[serde(default)]
    name: Option<String>,
    /// Only these methods count (default: all, or `tools/call` for a class keyed by tool).
    #[serde(default)]
    methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    limits: Vec<LimitOptions>,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
    #[serde(default = "default_sweep", with = "crate::config::duration")]
    sweep: Duration,
}

fn default_max_keys() -> usize {
    100_000
}

fn default_sweep() -> Duration {
    Duration::from_secs(60)
}

/// `10/s`, `600/m`, `5/100ms`: the count and the period it is allowed in.
fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("rate {text:?}: expected COUNT/PERIOD, such as 10/s, 600/m, 1000/h or 5/100ms");
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("rate {text:?}: the count must be at least 1"));
    }
    let period = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other).map_err(|_| bad())?,
    };
    if period.is_zero() || period / count == Duration::ZERO {
        return Err(format!("rate {text:?}: the period is too short for the count"));
    }
    Ok((count, period))
}

/// One key class.
struct Class {
    name: Arc<str>,
    parts: Vec<Part>,
    /// The methods it counts (empty: all).
    methods: Vec<String>,
    limiter: Arc<dyn Limiter>,
    allowed: metrics::Counter,
    limited: metrics::Counter,
    keys: metrics::Gauge,
}

impl Class {
    fn applies(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// The bucket key of a request (parts joined by a separator no part carries).
    fn key(&self, req: &McpRequest, upstream: &str, method: &str, tool: &str) -> String {
        let mut key = String::new();
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                key.push('\u{1f}');
            }
            key.push_str(match part {
                Part::Principal => req.context.principal().map_or("", |p| &p.id),
                Part::Client => req.context.peer.as_deref().unwrap_or(""),
                Part::Route => &req.route,
                Part::Upstream => upstream,
                Part::Method => method,
                Part::Tool => tool,
            });
        }
        key
    }
}

fn build(options: &Value, ctx: &BuildContext) -> Result<StageFn, String> {
    if options.is_null() {
        return Err("needs `limits`: a list of { key: [...], rate: N/s, burst: N }".into());
    }
    let o: Options = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
    if o.limits.is_empty() {
        return Err("`limits` is empty".into());
    }
    if o.max_keys == 0 {
        return Err("`max_keys` must be at least 1".into());
    }
    let mut classes = Vec::new();
    for (i, l) in o.limits.into_iter().enumerate() {
        let here = |e: String| format!("limits[{i}]: {e}");
        if l.key.is_empty() {
            return Err(here("`key` is empty (one bucket for everyone: use `key: [route]`)".into()));
        }
        let (count, period) = parse_rate(&l.rate).map_err(here)?;
        let burst = l.burst.unwrap_or(count);
        if burst == 0 {
            return Err(here("`burst` must be at least 1".into()));
        }
        let name: Arc<str> = match l.name {
            Some(n) => n.into(),
            None => l.key.iter().map(|p| p.name()).collect::<Vec<_>>().join("+").into(),
        };
        if classes.iter().any(|c: &Class| c.name == name) {
            return Err(here(format!("two limits are named {name:?}; give one a `name`")));
        }
        let mut methods = l.methods;
        if methods.is_empty() && l.key.contains(&Part::Tool) {
            methods.push("tools/call".into());
        }
        let limiter = LocalLimiter::new(count, period, burst, o.max_keys).map_err(here)?;
        let class = name.to_string();
        classes.push(Class {
            allowed: metrics::counter!(REQUESTS, "class" => class.clone(), "outcome" => "allowed"),
            limited: metrics::counter!(REQUESTS, "class" => class.clone(), "outcome" => "limited"),
            keys: metrics::gauge!("shadowcat_rate_limit_keys", "class" => class),
            name,
            parts: l.key,
            methods,
            limiter: Arc::new(limiter),
        });
    }
    let limits = RateLimit { classes: Arc::new(classes), routes: ctx.routes.clone() };
    ctx.controls.register(Arc::new(limits.clone()));
    ctx.lifecycles.register(Arc::new(Sweeper {
        classes: limits.classes.clone(),
        every: o.sweep,
        task: Mutex::new(None),
    }));
    let layer = StageLayer::new(limits);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// The `rate_limit` stage.
#[derive(Clone)]
pub struct RateLimit {
    classes: Arc<Vec<Class>>,
    /// Route -> upstream.
    routes: Arc<std::collections::HashMap<String, String>>,
}

impl RateLimit {
    /// The refusal of a request over `class`'s limit, to retry after `wait`.
    fn refuse(class: &Class, wait: Duration) -> GatewayError {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let seconds = ms.div_ceil(1000);
        let message = format!("rate limited ({}): retry after {seconds} s", class.name);
        Rejection::new(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED_CODE, message)
            .header(http::header::RETRY_AFTER, HeaderValue::from(seconds))
            .data(json!({ "limit": &*class.name, "retryAfter": seconds, "retryAfterMs": ms }))
            .label("rate_limited")
            .into()
    }
}

impl Stage for RateLimit {
    type Call = ();

    fn begin(&self, _req: &McpRequest) {}

    fn on_request(&self, _call: &(), _info: &CallInfo, req: McpRequest) -> Flow<McpRequest> {
        let Some(msg) = req.msg().filter(|m| m.is_request()) else { return Flow::pass(req) };
        if req.context.later_round {
            return Flow::pass(req);
        }
        let method = msg.method().unwrap_or_default();
        let tool = msg.tool_name().unwrap_or_default();
        let upstream = self.routes.get(&*req.route).map_or("", String::as_str);
        for class in self.classes.iter().filter(|c| c.applies(method)) {
            let key = class.key(&req, upstream, method, tool);
            match class.limiter.check(&key) {
                Ok(()) => class.allowed.increment(1),
                Err(wait) => {
                    class.limited.increment(1);
                    tracing::debug!(class = %class.name, wait_ms = wait.as_millis() as u64, "rate limited");
                    return Flow::fail(RateLimit::refuse(class, wait));
                }
            }
        }
        Flow::pass(req)
    }
}

impl StageControl for RateLimit {
    fn name(&self) -> &str {
        STAGE.name
    }

    fn status(&self) -> Value {
        let classes: Vec<Value> = self
            .classes
            .iter()
            .map(|c| {
                let parts: Vec<&str> = c.parts.iter().map(|p| p.name()).collect();
                json!({ "name": &*c.name, "key": parts, "methods": c.methods, "limit": c.limiter.describe(), "keys": c.limiter.len() })
            })
            .collect();
        json!({ "classes": classes })
    }
}

/// Sweeps full buckets out of every class's key map.
struct Sweeper {
    classes: Arc<Vec<Class>>,
    every: Duration,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Lifecycle for Sweeper {
    fn start(&self) -> Result<(), String> {
        let (classes, every) = (self.classes.clone(), self.every.max(Duration::from_millis(10)));
        *self.task.lock() = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for class in classes.iter() {
                    class.limiter.sweep();
                    class.keys.set(class.limiter.len() as f64);
                }
            }
        }));
        Ok(())
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        Box::pin(std::future::ready(()))
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("classes", &self.classes.len()).finish()
    }
}

#[cfg(test)]
mod tests;
