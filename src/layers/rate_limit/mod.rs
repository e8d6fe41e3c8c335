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
use crate::pipeline::{CallInfo, Flow, Lifecycle, McpRequest, Shared, Stage, StageControl, StageLayer};
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    #[serde(default)]
    limits: Vec<LimitOptions>,
    /// The limits in a file of their own (`limits: [...]`), reloaded when it changes.
    #[serde(default)]
    file: Option<std::path::PathBuf>,
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

/// A file of limits (`rate_limit: { file: ... }`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    limits: Vec<LimitOptions>,
}

/// One key class.
struct Class {
    /// What it was made from (a reload keeps a class, and its buckets, whose
    /// definition did not change).
    spec: LimitOptions,
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

/// The classes of `limits`, each error prefixed by `at(i)`; classes of `old` with
/// the same definition are kept as they are (with their buckets).
fn classes(
    limits: &[LimitOptions],
    max_keys: usize,
    old: &[Arc<Class>],
    at: &dyn Fn(usize) -> String,
) -> Result<Vec<Arc<Class>>, String> {
    if limits.is_empty() {
        return Err("`limits` is empty".into());
    }
    let mut classes: Vec<Arc<Class>> = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let here = |e: String| format!("{}: {e}", at(i));
        if l.key.is_empty() {
            return Err(here("`key` is empty (one bucket for everyone: use `key: [route]`)".into()));
        }
        let (count, period) = parse_rate(&l.rate).map_err(here)?;
        let burst = l.burst.unwrap_or(count);
        if burst == 0 {
            return Err(here("`burst` must be at least 1".into()));
        }
        let name: Arc<str> = match &l.name {
            Some(n) => n.as_str().into(),
            None => l.key.iter().map(|p| p.name()).collect::<Vec<_>>().join("+").into(),
        };
        if classes.iter().any(|c| c.name == name) {
            return Err(here(format!("two limits are named {name:?}; give one a `name`")));
        }
        if let Some(same) = old.iter().find(|c| c.spec == *l) {
            classes.push(same.clone());
            continue;
        }
        let mut methods = l.methods.clone();
        if methods.is_empty() && l.key.contains(&Part::Tool) {
            methods.push("tools/call".into());
        }
        let limiter = LocalLimiter::new(count, period, burst, max_keys).map_err(here)?;
        let class = name.to_string();
        classes.push(Arc::new(Class {
            spec: l.clone(),
            allowed: metrics::counter!(REQUESTS, "class" => class.clone(), "outcome" => "allowed"),
            limited: metrics::counter!(REQUESTS, "class" => class.clone(), "outcome" => "limited"),
            keys: metrics::gauge!("shadowcat_rate_limit_keys", "class" => class),
            name,
            parts: l.key.clone(),
            methods,
            limiter: Arc::new(limiter),
        }));
    }
    Ok(classes)
}

/// The classes of a limits file's `text`; errors name the file and line.
fn parse_file(text: &str, origin: &str, max_keys: usize, old: &[Arc<Class>]) -> Result<Vec<Arc<Class>>, String> {
    let file: LimitsFile = serde_saphyr::from_str(text).map_err(|e| {
        let e = e.to_string();
        let line = e.split_once("line ").and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next());
        match line.filter(|l| !l.is_empty()) {
            Some(line) => format!("{origin}:{line}: {e}"),
            None => format!("{origin}: {e}"),
        }
    })?;
    // The line of each limit: where its `rate` is, in order.
    let mut lines = Vec::new();
    let mut from = 0;
    for l in &file.limits {
        let found =
            text.lines().enumerate().skip(from).find(|(_, t)| t.contains("rate") && t.contains(l.rate.as_str()));
        let line = found.map_or(0, |(n, _)| n);
        from = line + 1;
        lines.push(line + 1);
    }
    classes(&file.limits, max_keys, old, &|i| format!("{origin}:{}: limits[{i}]", lines.get(i).copied().unwrap_or(1)))
}

fn build(options: &Value, ctx: &BuildContext) -> Result<StageFn, String> {
    if options.is_null() {
        return Err("needs `limits`: a list of { key: [...], rate: N/s, burst: N } (or `file`)".into());
    }
    let o: Options = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
    if o.max_keys == 0 {
        return Err("`max_keys` must be at least 1".into());
    }
    let (list, text) = match (&o.file, o.limits.is_empty()) {
        (Some(_), false) => return Err("`limits` or `file`: one or the other".into()),
        (None, _) => (classes(&o.limits, o.max_keys, &[], &|i| format!("limits[{i}]"))?, None),
        (Some(path), true) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
            (parse_file(&text, &origin, o.max_keys, &[])?, Some(text))
        }
    };
    let limits = RateLimit { classes: Shared::new(list), routes: ctx.routes.clone() };
    ctx.controls.register(Arc::new(limits.clone()));
    ctx.lifecycles.register(Arc::new(Sweeper {
        classes: limits.classes.clone(),
        every: o.sweep,
        task: Mutex::new(None),
    }));
    if let (Some(path), Some(text)) = (o.file, text) {
        let (classes, max_keys, loaded) = (limits.classes.clone(), o.max_keys, Mutex::new(text));
        let dir = path.parent().map(std::path::Path::to_owned).unwrap_or_default();
        ctx.lifecycles.register(Arc::new(super::watch::DirWatch::new(dir, "rate_limit", move || {
            reload(&path, &classes, max_keys, &loaded)
        })));
    }
    let layer = StageLayer::new(limits);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// Reads the limits file again and swaps its classes in if it changed and loads;
/// a file that does not load is logged (file and line) and the old limits stay.
fn reload(path: &std::path::Path, classes: &Shared<Vec<Arc<Class>>>, max_keys: usize, loaded: &Mutex<String>) {
    let origin = path.display().to_string();
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let mut last = loaded.lock();
    if *last == text {
        return;
    }
    *last = text;
    match parse_file(&last, &origin, max_keys, &classes.load()) {
        Ok(list) => {
            let count = list.len();
            classes.replace(list);
            tracing::info!(file = %origin, limits = count, "rate limits reloaded");
        }
        Err(error) => tracing::error!(%error, "rate limits rejected; the old limits stay"),
    }
}

/// The `rate_limit` stage.
#[derive(Clone)]
pub struct RateLimit {
    classes: Shared<Vec<Arc<Class>>>,
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
        for class in self.classes.load().iter().filter(|c| c.applies(method)) {
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
            .load()
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
    classes: Shared<Vec<Arc<Class>>>,
    every: Duration,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Lifecycle for Sweeper {
    fn start(&self) -> Result<(), String> {
        let (classes, every) = (self.classes.clone(), self.every.max(Duration::from_millis(10)));
        *self.task.lock() = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for class in classes.load().iter() {
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
        f.debug_struct("RateLimit").field("classes", &self.classes.load().len()).finish()
    }
}

#[cfg(test)]
mod tests;
