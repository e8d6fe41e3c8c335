//! `intercept`: rules that match MCP messages (by direction, method, tool) and act on
//! them: let through, drop, block with an error of your choosing, answer with a mock,
//! delay. The rule file format is in `docs/intercept.md`; the rules are compiled once
//! at load ([`rules`]).
//!
//! ```yaml
//! pipeline:
//!   - metrics
//!   - access_log
//!   - intercept: { rules: rules.yaml }
//! ```
//!
//! Or `--rules FILE` on `gateway`, `forward stdio` and `forward http`. The file is
//! watched while serving and reloaded when it changes (`reload.rs`).
//!
//! Per message, the rules indexed under its method and tool, under its method alone,
//! and those without an exact method are tried, highest priority first. A response has no method of its own: a rule
//! with a `direction` matches it by its request's method and tool (`direction:
//! server_to_client, method: tools/call` is the answer to a `tools/call`; `direction:
//! client_to_server, method: elicitation/create` the client's answer to one); a rule
//! without a direction matches only messages that carry the method. The
//! first enabled rule that matches and is due to fire (`after`, `times`) acts, and no
//! later rule is tried. What each action does, per kind of message:
//!
//! | action | a request (either way) | a notification | a response |
//! |---|---|---|---|
//! | `continue` | passes | passes | passes |
//! | `drop` | answered to its sender with an error (`-32052`), so nothing hangs | discarded | discarded |
//! | `block` | answered to its sender with the rule's error (or, for a client's request with `status`, refused with that HTTP status and headers) | discarded | replaced by the rule's error |
//! | `mock` | answered to its sender with the rule's result or error; the other side never sees it | passes | its result or error replaced |
//! | `delay` | held, then passed | held, then passed | held, then passed |
//! | `modify` | changed by JSONPath, then passed | the same | the same |
//! | `fault` | the call fails as if below: `hang` (never answered), `timeout` (held, then 504), `upstream_error` (502), `too_many_requests` (429 with `Retry-After`) | the same | the same (on a stream, the error ends it) |
//! | `fault` on the client's wire: `malformed`, `reset`, `dribble` | a client's: passes, and its answer is marked ([`AnswerFault`]); a server's: marked | to the client: marked | to the client: marked |
//!
//! A marked message ([`Message::with_wire_fault`]) is whole for every stage; the
//! front that writes it to the client does what the mark says (`server::wire`,
//! `server::sse`, forward stdio's writer).

mod modify;
mod operate;
mod reload;
pub mod rules;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{BuildContext, StageDef, StageFn};
use crate::error::{GatewayError, Rejection};
use crate::pipeline::{
    AdminCall, AdminReply, Change, ChangeObservers, Direction, Flow, McpRequest, MessageContext, Shared, Stage,
    StageControl, StageLayer, Verdict,
};
use crate::protocol::{Message, MessageKind, WireFault, WireFaultBy};
use crate::upstream::{WireActor, WireContext, WireDirection, WireFlow, WireOrigin, WireVerdict};
use operate::{Decision, Fired, Operations};
use rules::{Action, Facts, Fault, Rule, RuleSet};

/// The registry entry.
pub const STAGE: StageDef = StageDef { name: "intercept", build, must_follow: &[] };

/// The JSON-RPC code a dropped request is answered with.
pub const DROPPED_CODE: i32 = -32052;

/// The JSON-RPC code a paused request is answered with when no operator resumed it
/// in time.
pub const PAUSE_TIMED_OUT_CODE: i32 = -32053;

/// Options of the `intercept` stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The rule file (YAML or JSON).
    rules: PathBuf,
}

fn build(options: &Value, ctx: &BuildContext) -> Result<StageFn, String> {
    if options.is_null() {
        return Err("needs a rule file: `intercept: { rules: FILE }`".into());
    }
    let options: Options = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
    let origin = options.rules.display().to_string();
    let text = std::fs::read_to_string(&options.rules).map_err(|e| format!("{origin}: cannot read: {e}"))?;
    let set = RuleSet::parse(&text, &origin)?;
    for warning in &set.warnings {
        tracing::warn!(%warning, "intercept rule file");
    }
    let mut interceptor = Interceptor::new(set);
    interceptor.changes = ctx.changes.clone();
    ctx.controls.register(Arc::new(interceptor.clone()));
    ctx.wire.register_actor(Arc::new(interceptor.clone()));
    ctx.lifecycles.register(Arc::new(reload::watch(&options.rules, interceptor.rules.clone(), text)));
    let layer = StageLayer::new(interceptor);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// The `intercept` stage.
#[derive(Clone)]
pub struct Interceptor {
    rules: Shared<RuleSet>,
    ops: Arc<Operations>,
    /// Who hears of what a rule changed (`record`).
    changes: ChangeObservers,
}

impl Interceptor {
    /// A stage running `rules`.
    pub fn new(rules: RuleSet) -> Self {
        Interceptor { rules: Shared::new(rules), ops: Arc::default(), changes: ChangeObservers::default() }
    }
}

/// `GET /stages/intercept` on the admin listener: the rules and their counts; its
/// own endpoints are in `operate.rs`.
impl StageControl for Interceptor {
    fn name(&self) -> &str {
        STAGE.name
    }

    fn status(&self) -> Value {
        self.rules_json()
    }

    fn call(&self, call: AdminCall) -> AdminReply {
        self.admin(call)
    }
}

/// What the stage keeps about a call.
pub struct CallRules {
    /// The rule set the call started under (kept while it runs).
    rules: Arc<RuleSet>,
    /// The client's request's method and tool, for matching its response.
    method: Option<Box<str>>,
    tool: Option<Box<str>>,
    /// The client's request, when a template may need it.
    request: Option<Message>,
    /// The client's request headers, when a rule matches headers.
    headers: Option<http::HeaderMap>,
    /// The authenticated principal, when a rule matches claims.
    principal: Option<crate::pipeline::Principal>,
    /// A wire fault a rule put on the request, for the messages answering it.
    answer_fault: std::sync::OnceLock<Arc<AnswerFault>>,
}

/// A wire fault on a request's answer: `malformed` its response, `reset` at the
/// first message to the client, `dribble` every message to the client.
struct AnswerFault {
    fault: Fault,
    rule: Arc<str>,
    /// `reset` has happened: the call has nothing more to send.
    spent: std::sync::atomic::AtomicBool,
}

impl AnswerFault {
    /// `msg` (to the client, answering the request) under the fault, if it applies.
    fn apply(&self, msg: Message, request_id: Option<&str>) -> Message {
        let answers = msg.kind() == MessageKind::Response && msg.id_key() == request_id;
        let applies = match &self.fault {
            Fault::Truncated => answers,
            Fault::Wire(by) => match by.fault {
                WireFault::Malformed(_) => answers,
                WireFault::Reset => !self.spent.swap(true, Ordering::Relaxed),
                WireFault::Dribble { .. } => true,
            },
            _ => false,
        };
        if applies {
            on_the_wire(&self.fault, &self.rule, msg)
        } else {
            msg
        }
    }
}

/// `msg` to be carried on the client's wire as `fault` (a wire fault) says.
fn on_the_wire(fault: &Fault, rule: &str, msg: Message) -> Message {
    match fault {
        Fault::Wire(by) => msg.with_wire_fault(by.clone()),
        Fault::Truncated => {
            let half = msg.bytes().slice(..msg.bytes().len() / 2);
            msg.with_wire_fault(Arc::new(WireFaultBy { fault: WireFault::Malformed(half), rule: rule.into() }))
        }
        _ => msg,
    }
}

impl Stage for Interceptor {
    type Call = CallRules;

    fn begin(&self, req: &McpRequest) -> CallRules {
        let rules = self.rules.load();
        let msg = req.msg().filter(|m| m.is_request());
        CallRules {
            method: msg.and_then(|m| m.method()).map(Box::from),
            tool: msg.and_then(|m| m.tool_name()).map(Box::from),
            request: msg.filter(|_| rules.uses_templates).cloned(),
            headers: rules.uses_headers.then(|| req.headers.clone()),
            principal: if rules.uses_claims { req.context.principal().cloned() } else { None },
            rules,
            answer_fault: std::sync::OnceLock::new(),
        }
    }

    fn on_message(&self, call: &CallRules, ctx: &MessageContext<'_>, msg: Message) -> Flow {
        if call.rules.rules.is_empty() {
            return Flow::pass(msg);
        }
        let flow = self.decide(call, ctx, msg);
        // What the rules let through to the client, under a fault its request got.
        match call.answer_fault.get() {
            Some(fault) if ctx.direction == Direction::ServerToClient => match flow {
                Flow::Now(Verdict::Pass(m)) => {
                    let marked = fault.apply(m, ctx.call.request_id.as_deref());
                    if marked.wire_fault().is_some() && !self.changes.is_empty() {
                        let change = Change {
                            direction: ctx.direction,
                            by: &fault.rule,
                            action: "fault",
                            before: &marked,
                            after: Some(&marked),
                            answer: None,
                        };
                        self.changes.notify(ctx.call, &change);
                    }
                    Flow::pass(marked)
                }
                Flow::Later(later) => {
                    let (fault, request_id) = (fault.clone(), ctx.call.request_id.clone());
                    Flow::Later(Box::pin(async move { later.await.map(|m| fault.apply(m, request_id.as_deref())) }))
                }
                flow => flow,
            },
            _ => flow,
        }
    }
}

impl Interceptor {
    /// The first rule due to fire on `msg`, and what its action makes of it.
    fn decide(&self, call: &CallRules, ctx: &MessageContext<'_>, msg: Message) -> Flow {
        // A response is matched by the method (and tool) of the request it answers.
        let (method, tool) = match msg.kind() {
            MessageKind::Response if ctx.direction == Direction::ServerToClient => {
                if msg.id_key().is_some() && msg.id_key() == ctx.call.request_id.as_deref() {
                    (call.method.as_deref(), call.tool.as_deref())
                } else {
                    (None, None)
                }
            }
            MessageKind::Response => (ctx.call.answers.as_ref().map(|a| &*a.method), None),
            _ => (msg.method(), msg.tool_name()),
        };
        let is_response = msg.kind() == MessageKind::Response;
        let value = std::cell::OnceCell::new();
        let facts = Facts {
            direction: ctx.direction,
            method,
            tool,
            revision: Some(ctx.call.version),
            route: &ctx.call.route,
            upstream: ctx.upstream,
            headers: call.headers.as_ref(),
            session: ctx.call.session.as_deref().map(|s| s.id()),
            claims: call.principal.as_ref().map(|p| &*p.claims),
            message: &msg,
            value: &value,
        };
        if let Some(rule) = first_due(call.rules.candidates(method, tool), &facts, is_response) {
            tracing::debug!(rule = %rule.id, method = method.unwrap_or("-"), direction = ?ctx.direction, "intercept rule fired");
            let started = std::time::Instant::now();
            let (method, tool) = (method.map(str::to_owned), tool.map(str::to_owned));
            let fired = Fired { rule, direction: ctx.direction, method, tool, kind: msg.kind() };
            let before = (!self.changes.is_empty()).then(|| msg.clone());
            let at = ActAt {
                direction: ctx.direction,
                stateless: ctx.call.version.is_stateless(),
                request: call.request.as_ref(),
                rules: &call.rules,
                answer_fault: Some(&call.answer_fault),
            };
            let flow = timed(rule, started, act(&fired, &self.ops, &at, msg));
            return match before {
                Some(before) => self.report(rule, ctx, before, flow),
                None => flow,
            };
        }
        Flow::pass(msg)
    }

    /// Tells the change observers what `rule` made of `before` (once decided).
    fn report(&self, rule: &Rule, ctx: &MessageContext<'_>, before: Message, flow: Flow) -> Flow {
        let action = rule.action.name();
        match flow {
            Flow::Now(verdict) => {
                tell(
                    &self.changes,
                    ctx.call,
                    ChangeOf { by: &rule.id, action, direction: ctx.direction, before: &before },
                    &verdict,
                );
                Flow::Now(verdict)
            }
            Flow::Later(later) => {
                let (changes, info, by, direction) =
                    (self.changes.clone(), ctx.call.clone(), rule.id.clone(), ctx.direction);
                Flow::Later(Box::pin(async move {
                    let verdict = later.await;
                    tell(&changes, &info, ChangeOf { by: &by, action, direction, before: &before }, &verdict);
                    verdict
                }))
            }
        }
    }
}

/// A rule's action on a message, before its verdict.
struct ChangeOf<'a> {
    by: &'a str,
    action: &'static str,
    direction: Direction,
    before: &'a Message,
}

/// Tells `changes` what `verdict` makes of a message, unless it passes as it was (a
/// delay, `continue`, a pause resumed unedited).
fn tell(changes: &ChangeObservers, call: &crate::pipeline::CallInfo, of: ChangeOf<'_>, verdict: &Verdict) {
    let (after, answer) = match verdict {
        Verdict::Pass(m) if m.bytes() == of.before.bytes() && m.wire_fault().is_none() => return,
        Verdict::Pass(m) => (Some(m), None),
        Verdict::Answer(a) => (None, Some(a)),
        Verdict::Drop | Verdict::Fail(_) => (None, None),
    };
    let change = Change { direction: of.direction, by: of.by, action: of.action, before: of.before, after, answer };
    changes.notify(call, &change);
}

/// `side: upstream` rules, on the upstream's wire: the sessions the bridge pools for
/// 2026-07-28 clients (a legacy server's `elicitation/create` during a bridged call,
/// the bridge's answer) and the gateway's stateless requests.
impl WireActor for Interceptor {
    fn wants(&self, origin: WireOrigin) -> bool {
        // A client's own session carries the client's messages on both wires: its
        // `side: client` rules act on them there.
        origin != WireOrigin::ClientSession
    }

    fn active(&self) -> bool {
        !self.rules.load().upstream.is_empty()
    }

    fn act(&self, ctx: &WireContext<'_>, msg: Message) -> WireFlow {
        let rules = self.rules.load();
        let direction = match ctx.direction {
            WireDirection::ToUpstream => Direction::ClientToServer,
            WireDirection::FromUpstream => Direction::ServerToClient,
        };
        let is_response = msg.kind() == MessageKind::Response;
        let (method, tool) = match ctx.request {
            Some((method, tool)) if is_response => (Some(method), tool),
            _ if is_response => (None, None),
            _ => (msg.method(), msg.tool_name()),
        };
        let value = std::cell::OnceCell::new();
        let facts = Facts {
            direction,
            method,
            tool,
            revision: None,
            route: "",
            upstream: Some(ctx.upstream),
            headers: None,
            session: None,
            claims: None,
            message: &msg,
            value: &value,
        };
        if let Some(rule) = first_due(rules.upstream.iter().map(|&i| &rules.rules[i]), &facts, is_response) {
            tracing::debug!(rule = %rule.id, method = method.unwrap_or("-"), direction = ?direction, upstream = ctx.upstream, "intercept rule fired on the upstream's wire");
            let started = std::time::Instant::now();
            let (method, tool) = (method.map(str::to_owned), tool.map(str::to_owned));
            let fired = Fired { rule, direction, method, tool, kind: msg.kind() };
            let at = ActAt {
                direction,
                stateless: ctx.origin == WireOrigin::Stateless,
                request: None,
                rules: &rules,
                answer_fault: None,
            };
            return match timed(rule, started, act(&fired, &self.ops, &at, msg)) {
                Flow::Now(verdict) => WireFlow::Now(wire_verdict(verdict)),
                Flow::Later(later) => WireFlow::Later(Box::pin(async move { wire_verdict(later.await) })),
            };
        }
        WireFlow::Now(WireVerdict::Pass(msg))
    }
}

/// The first of `rules` that matches and is due to fire (`after`, `probability`,
/// `times`), counting the matches on the way.
fn first_due<'a>(rules: impl Iterator<Item = &'a Rule>, facts: &Facts<'_>, is_response: bool) -> Option<&'a Rule> {
    rules.into_iter().find(|rule| {
        // A response carries no method of its own: it is matched by its request's only
        // by rules that say which way they look.
        let by_request = is_response && rule.matcher.direction.is_none() && rule.matcher.method.is_some();
        if by_request || !rule.enabled.load(Ordering::Relaxed) || !rule.matcher.matches(facts) {
            return false;
        }
        rule.metrics.matches.increment(1);
        rule.take()
    })
}

fn wire_verdict(verdict: Verdict) -> WireVerdict {
    match verdict {
        Verdict::Pass(m) => WireVerdict::Pass(m),
        Verdict::Drop => WireVerdict::Drop,
        Verdict::Answer(m) => WireVerdict::Answer(m),
        Verdict::Fail(e) => WireVerdict::Fail(e),
    }
}

/// A response to `to` (a request) with `result`. A 2026-07-28 client gets the
/// `resultType` that revision requires of every result (`complete`, unless the mock
/// gives its own).
fn result_for(to: &Message, mut result: Value, stateless: bool) -> Message {
    if stateless {
        if let Value::Object(fields) = &mut result {
            fields.entry("resultType").or_insert_with(|| Value::String("complete".into()));
        }
    }
    Message::result_response(to.id_key(), &result)
}

/// Counts what `rule` did and the time it took since `started` (for a held
/// message, until it goes on).
fn timed(rule: &Rule, started: std::time::Instant, flow: Flow) -> Flow {
    rule.metrics.actions.increment(1);
    match flow {
        Flow::Now(verdict) => {
            rule.metrics.seconds.record(started.elapsed().as_secs_f64());
            Flow::Now(verdict)
        }
        Flow::Later(later) => {
            let seconds = rule.metrics.seconds.clone();
            Flow::Later(Box::pin(async move {
                let verdict = later.await;
                seconds.record(started.elapsed().as_secs_f64());
                verdict
            }))
        }
    }
}

/// What a dropped message becomes: a request is answered with an error (so that
/// nothing hangs), anything else is discarded.
fn dropped(rule: &str, msg: &Message) -> Verdict {
    match msg.kind() {
        MessageKind::Request => {
            let text = format!("dropped by rule {rule}");
            Verdict::Answer(Message::error_response(msg.id_key(), DROPPED_CODE, &text, None))
        }
        _ => Verdict::Drop,
    }
}

/// Holds `msg` until an operator decides, or `timeout` passes: then a request is
/// answered with an error ([`PAUSE_TIMED_OUT_CODE`]), a response is replaced by
/// one, a notification is discarded.
fn pause(fired: &Fired<'_>, ops: &Arc<Operations>, msg: Message, timeout: std::time::Duration) -> Flow {
    let (n, unhold, decided) = ops.hold(fired, &msg, timeout);
    ops.fired(fired, Some(n));
    let rule = fired.rule.id.clone();
    tracing::info!(rule = %rule, paused = n, "intercept: a message is paused until an operator resumes or drops it");
    Flow::Later(Box::pin(async move {
        let _unhold = unhold;
        match tokio::time::timeout(timeout, decided).await {
            Ok(Ok(Decision::Resume(edited))) => Verdict::Pass(edited.unwrap_or(msg)),
            Ok(Ok(Decision::Drop)) => dropped(&rule, &msg),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(rule = %rule, paused = n, "intercept: a paused message was not resumed in time");
                let text = format!(
                    "paused by rule {rule} (paused message {n}) and not resumed within {}",
                    humantime::format_duration(timeout)
                );
                match msg.kind() {
                    MessageKind::Request => {
                        Verdict::Answer(Message::error_response(msg.id_key(), PAUSE_TIMED_OUT_CODE, &text, None))
                    }
                    MessageKind::Response => {
                        Verdict::Pass(Message::error_response(msg.id_key(), PAUSE_TIMED_OUT_CODE, &text, None))
                    }
                    MessageKind::Notification => Verdict::Drop,
                }
            }
        }
    }))
}

/// Where a rule acts: what [`act`] needs of the call and the wire.
struct ActAt<'a> {
    direction: Direction,
    /// Whether a mocked result needs 2026-07-28's `resultType`.
    stateless: bool,
    /// The request a response answers (for a template), when kept.
    request: Option<&'a Message>,
    rules: &'a RuleSet,
    /// The call's slot for a fault on its answer (the client's wire only).
    answer_fault: Option<&'a std::sync::OnceLock<Arc<AnswerFault>>>,
}

fn act(fired: &Fired<'_>, ops: &Arc<Operations>, at: &ActAt<'_>, msg: Message) -> Flow {
    let rule = fired.rule;
    let kind = msg.kind();
    if let Action::Pause(timeout) = &rule.action {
        return pause(fired, ops, msg, *timeout);
    }
    ops.fired(fired, None);
    match &rule.action {
        Action::Continue | Action::Pause(_) => Flow::pass(msg),
        Action::Delay(delay) => {
            let n = rule.fired.load(Ordering::Relaxed).saturating_sub(1);
            let d = delay.for_firing(n, rule.seed);
            Flow::Later(Box::pin(async move {
                tokio::time::sleep(d).await;
                Verdict::Pass(msg)
            }))
        }
        Action::Fault(fault) => {
            let by = format!("(fault injected by rule {})", rule.id);
            match fault.clone() {
                Fault::Hang => Flow::Later(Box::pin(std::future::pending())),
                Fault::Timeout(after) => Flow::Later(Box::pin(async move {
                    tokio::time::sleep(after).await;
                    Verdict::Fail(GatewayError::UpstreamTimeout { upstream: by, after })
                })),
                Fault::UpstreamError(detail) => Flow::fail(GatewayError::UpstreamUnavailable { upstream: by, detail }),
                Fault::TooManyRequests(retry_after) => {
                    Flow::fail(GatewayError::TooManyRequests { detail: by, retry_after: Some(retry_after) })
                }
                wire @ (Fault::Wire(_) | Fault::Truncated) => match (at.direction, kind) {
                    (Direction::ServerToClient, _) => Flow::pass(on_the_wire(&wire, &rule.id, msg)),
                    (Direction::ClientToServer, MessageKind::Request) => {
                        let fault = AnswerFault { fault: wire, rule: Arc::from(&*rule.id), spent: Default::default() };
                        if let Some(slot) = at.answer_fault {
                            let _ = slot.set(Arc::new(fault));
                        }
                        Flow::pass(msg)
                    }
                    // The upstream's wire is not the client's: nothing to do there.
                    (Direction::ClientToServer, _) => {
                        tracing::debug!(rule = %rule.id, "intercept: a wire fault on a message to the server acts on nothing; passed as it is");
                        Flow::pass(msg)
                    }
                },
            }
        }
        Action::Modify(modify) => {
            let Some(mut value) = msg.to_value() else { return Flow::pass(msg) };
            if !modify.apply(&mut value) {
                return Flow::pass(msg);
            }
            match serde_json::to_vec(&value)
                .map_err(|e| e.to_string())
                .and_then(|b| Message::parse(b).map_err(|e| e.to_string()))
            {
                Ok(changed) => Flow::pass(changed),
                Err(e) => {
                    tracing::warn!(rule = %rule.id, error = %e, "an intercept modify made an invalid message; the message goes on unchanged");
                    Flow::pass(msg)
                }
            }
        }
        Action::Drop => Flow::Now(dropped(&rule.id, &msg)),
        Action::Block { code, message, data, status } => match kind {
            MessageKind::Request => match status {
                Some((status, headers)) if at.direction == Direction::ClientToServer => {
                    let mut rejection = Rejection::new(*status, *code, message.clone()).label("intercepted");
                    for (name, value) in headers {
                        rejection = rejection.header(name.clone(), value.clone());
                    }
                    if let Some(data) = data {
                        rejection = rejection.data(data.clone());
                    }
                    Flow::fail(GatewayError::from(rejection))
                }
                _ => Flow::answer(Message::error_response(msg.id_key(), *code, message, data.clone())),
            },
            MessageKind::Notification => Flow::drop_it(),
            MessageKind::Response => Flow::pass(Message::error_response(msg.id_key(), *code, message, data.clone())),
        },
        Action::Mock { result, error } => {
            if kind == MessageKind::Notification {
                return Flow::pass(msg);
            }
            let reply = match (result, error) {
                (_, Some((code, message, data))) => Message::error_response(msg.id_key(), *code, message, data.clone()),
                (Some(piece), None) => {
                    // The request in the template's context: this message, or the one a response answers.
                    let request = if kind == MessageKind::Request { Some(&msg) } else { at.request };
                    let context =
                        serde_json::json!({ "request": request.and_then(|m| m.to_value()).unwrap_or(Value::Null) });
                    match piece.render(&at.rules.templates, &context) {
                        Ok(value) => result_for(&msg, value, at.stateless),
                        Err(e) => {
                            tracing::warn!(rule = %rule.id, error = %e, "an intercept mock's template did not render");
                            let text = format!("rule {}: the mock's template did not render: {e}", rule.id);
                            Message::error_response(msg.id_key(), -32603, &text, None)
                        }
                    }
                }
                (None, None) => return Flow::pass(msg),
            };
            match kind {
                MessageKind::Request => Flow::answer(reply),
                _ => Flow::pass(reply),
            }
        }
    }
}

#[cfg(test)]
mod tests;
