//! `policy`: which tools, resources and prompts each principal may use, decided by
//! Cedar policies (a directory of `*.cedar` files, checked against the built-in
//! schema [`engine::SCHEMA`]). Default deny; `forbid` beats `permit`.
//!
//! ```yaml
//! pipeline:
//!   - auth: { ... }                      # names the principal
//!   - policy: { dir: /etc/shadowcat/policies }
//! ```
//!
//! Each call is one Cedar request: principal `Shadowcat::User::"<sub>"` (from the
//! `auth` stage's principal; `""` when there is none), the action of its method
//! (`tools/call` is `call_tool`, `tools/list` is `list_tools`, ...), the tool,
//! resource or prompt (the list actions: the upstream), and the call's arguments as
//! `context.arguments`. Each round of a multi-round-trip call is a `tools/call` of
//! its own and is decided again. A denied tool, resource or prompt is invisible: a
//! call to it gets the error an unknown one gets, and lists show only what the
//! principal may use (a denied list is empty); `notifications/resources/updated`
//! for a resource the principal may not read is dropped. Methods with no action
//! (`initialize`, `ping`, notifications, `logging/setLevel`, `server/discover`,
//! `subscriptions/listen`, responses, tasks) pass.
//!
//! Every decision is logged (target `shadowcat::policy`) with the policies that made
//! it. The directory is watched: a change is parsed, checked and swapped in whole;
//! a directory that does not load keeps the old policies (logged with file and
//! line).

pub mod engine;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::watch::DirWatch;
use super::{BuildContext, StageDef, StageFn};
use crate::pipeline::{
    AccessNote, CallInfo, Direction, Flow, McpRequest, MessageContext, Principal, Shared, Stage, StageControl,
    StageLayer, Verdict,
};
use crate::protocol::Message;
use engine::{Action, Decision, Kept, Policies, Query, Subject, Target};

/// Subjects and entity sets kept at most (when full, they are all made again).
const MADE: usize = 4096;

/// What earlier calls made, so that a principal's next call costs lookups: its
/// subject (by the principal's claims, which the `auth` stage shares between the
/// requests of one token) and the entities of each target. An entry holds what its
/// key points to, so that no address is reused while it is there.
struct Made {
    /// By the address of the principal's claims: the claims (held) and the subject.
    subjects: Kept<usize, (Arc<Value>, Arc<Subject>)>,
    entities: Kept<EntitiesKey, (Arc<Subject>, Arc<cedar_policy::Entities>)>,
}

/// The subject's address, the target, the upstream and the route.
type EntitiesKey = (usize, Target, Arc<str>, Arc<str>);

impl Default for Made {
    fn default() -> Self {
        Made { subjects: Kept::new(MADE), entities: Kept::new(MADE) }
    }
}

impl Made {
    fn subject(&self, principal: Option<&Principal>) -> Arc<Subject> {
        static ANONYMOUS: OnceLock<Arc<Subject>> = OnceLock::new();
        let Some(p) = principal else { return ANONYMOUS.get_or_init(|| Arc::new(Subject::anonymous())).clone() };
        let key = Arc::as_ptr(&p.claims) as usize;
        if let Some((_, s)) = self.subjects.get(&key) {
            return s;
        }
        let subject = Arc::new(Subject::from_claims(&p.claims));
        self.subjects.insert(key, (p.claims.clone(), subject.clone()));
        subject
    }

    fn entities(
        &self,
        subject: &Arc<Subject>,
        target: &Target,
        upstream: &Arc<str>,
        route: &Arc<str>,
    ) -> Result<Arc<cedar_policy::Entities>, String> {
        let key = (Arc::as_ptr(subject) as usize, target.clone(), upstream.clone(), route.clone());
        if let Some((_, e)) = self.entities.get(&key) {
            return Ok(e);
        }
        let made = Arc::new(engine::entities(subject, target, upstream, route)?);
        self.entities.insert(key, (subject.clone(), made.clone()));
        Ok(made)
    }
}

/// The registry entry.
pub const STAGE: StageDef =
    StageDef { name: "policy", build, must_follow: &[("auth", "the policies decide for the principal `auth` names")] };

/// The JSON-RPC code of an unknown tool or prompt (the MCP specification's).
const INVALID_PARAMS: i32 = -32602;

/// The JSON-RPC code of an unknown resource (the MCP specification's).
const RESOURCE_NOT_FOUND: i32 = -32002;

/// Options of the `policy` stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The directory of `*.cedar` files.
    dir: PathBuf,
    /// Watch the directory and reload on change (default on).
    #[serde(default = "yes")]
    reload: bool,
}

fn yes() -> bool {
    true
}

fn build(options: &Value, ctx: &BuildContext) -> Result<StageFn, String> {
    if options.is_null() {
        return Err("needs a directory of Cedar policies: `policy: { dir: DIR }`".into());
    }
    let options: Options = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
    let (policies, warnings) = Policies::load_dir(&options.dir)?;
    for warning in &warnings {
        tracing::warn!(%warning, "policy");
    }
    tracing::info!(dir = %options.dir.display(), policies = policies.len(), "policies loaded");
    // Allowed calls are logged in the access log's line when it comes later.
    let noted = ctx.stages.iter().skip_while(|s| s.as_str() != STAGE.name).any(|s| s == "access_log");
    let guard = Guard { policies: Shared::new(policies), routes: ctx.routes.clone(), made: Arc::default(), noted };
    ctx.controls.register(Arc::new(guard.clone()));
    if options.reload {
        let (dir, policies) = (options.dir.clone(), guard.policies.clone());
        let busy = Mutex::new(());
        ctx.lifecycles.register(Arc::new(DirWatch::new(options.dir, "policy", move || {
            let _one_at_a_time = busy.lock();
            reload(&dir, &policies)
        })));
    }
    let layer = StageLayer::new(guard);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// Reads the directory again and swaps its policies in if they changed and load.
fn reload(dir: &std::path::Path, policies: &Shared<Policies>) {
    let sources = match engine::read_dir(dir) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "policies not reloaded; the old policies stay");
            return;
        }
    };
    if sources == policies.load().sources {
        return;
    }
    match Policies::from_sources(sources) {
        Ok((loaded, warnings)) => {
            for warning in &warnings {
                tracing::warn!(%warning, "policy");
            }
            let count = loaded.len();
            policies.replace(loaded);
            tracing::info!(dir = %dir.display(), policies = count, generation = policies.generation(), "policies reloaded");
        }
        Err(error) => tracing::error!(%error, "policies rejected; the old policies stay"),
    }
}

/// The `policy` stage.
#[derive(Clone)]
pub struct Guard {
    policies: Shared<Policies>,
    /// Route -> upstream.
    routes: Arc<HashMap<String, String>>,
    made: Arc<Made>,
    /// Whether `access_log` comes later (it then logs allowed calls' decisions).
    noted: bool,
}

impl StageControl for Guard {
    fn name(&self) -> &str {
        STAGE.name
    }

    fn status(&self) -> Value {
        let p = self.policies.load();
        let files: Vec<&str> = p.sources.iter().map(|(f, _)| f.as_str()).collect();
        json!({ "policies": p.len(), "generation": self.policies.generation(), "files": files })
    }
}

/// What the stage keeps about a call.
pub struct PolicyCall {
    /// The policies the call started under.
    policies: Arc<Policies>,
    principal: Option<Principal>,
    subject: OnceLock<Arc<Subject>>,
    made: Arc<Made>,
    upstream: Arc<str>,
    route: Arc<str>,
    protocol: &'static str,
    /// A list request's action and id, to filter its response.
    list: Option<(Action, Arc<str>)>,
    /// What the client's request asks, if it is subject to policy.
    request: Option<(Action, Target, Option<Value>)>,
}

impl PolicyCall {
    fn subject(&self) -> &Arc<Subject> {
        self.subject.get_or_init(|| self.made.subject(self.principal.as_ref()))
    }

    fn decide(&self, action: Action, target: &Target, arguments: Option<&Value>, method: &str) -> Decision {
        let entities = match self.made.entities(self.subject(), target, &self.upstream, &self.route) {
            Ok(e) => e,
            Err(why) => return Decision { allowed: false, policies: Vec::new(), errors: vec![why] },
        };
        let q = Query {
            subject: self.subject(),
            action,
            target,
            upstream: &self.upstream,
            route: &self.route,
            arguments,
            protocol: self.protocol,
            method,
        };
        self.policies.decide_kept(self.subject(), &q, &entities)
    }

    /// Logs a call's decision.
    fn log(&self, action: Action, target: &Target, d: &Decision) {
        let resource = target.describe(&self.upstream);
        let decision = if d.allowed { "allow" } else { "deny" };
        tracing::info!(
            target: "shadowcat::policy",
            principal = %self.subject().sub,
            action = action.name(),
            %resource,
            upstream = %self.upstream,
            decision,
            policies = ?d.policies,
            "policy decision"
        );
    }
}

/// What a client's request asks, as an action on a target.
fn classify(msg: &Message) -> Option<(Action, Target, Option<Value>)> {
    let method = msg.method()?;
    const DECIDED: [&str; 9] = [
        "tools/call",
        "prompts/get",
        "resources/read",
        "resources/subscribe",
        "completion/complete",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
    ];
    // Plumbing passes without its params being parsed.
    if !DECIDED.contains(&method) {
        return None;
    }
    let params: Value = msg.params().unwrap_or(Value::Null);
    let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(match method {
        "tools/call" => (Action::CallTool, Target::Tool(text("name")?), params.get("arguments").cloned()),
        "prompts/get" => (Action::GetPrompt, Target::Prompt(text("name")?), params.get("arguments").cloned()),
        "resources/read" | "resources/subscribe" => (Action::ReadResource, Target::Resource(text("uri")?), None),
        "completion/complete" => {
            let reference = params.get("ref")?;
            let field = |name: &str| reference.get(name).and_then(Value::as_str).map(str::to_owned);
            let target = match reference.get("type").and_then(Value::as_str)? {
                "ref/prompt" => Target::Prompt(field("name")?),
                "ref/resource" => Target::Resource(field("uri")?),
                _ => return None,
            };
            let argument = params.get("argument");
            let arguments = argument.and_then(|a| Some(json!({ a.get("name")?.as_str()?: a.get("value")? })));
            (Action::Complete, target, arguments)
        }
        "tools/list" => (Action::ListTools, Target::Upstream, None),
        "resources/list" => (Action::ListResources, Target::Upstream, None),
        "resources/templates/list" => (Action::ListResourceTemplates, Target::Upstream, None),
        "prompts/list" => (Action::ListPrompts, Target::Upstream, None),
        _ => return None,
    })
}

/// The answer to a request for something the principal may not use: what an
/// unknown one gets, by the MCP specification (or, for a list, an empty list).
fn invisible(id: Option<&str>, action: Action, target: &Target) -> Message {
    match (action, target) {
        (Action::ListTools, _) => Message::result_response(id, &json!({ "tools": [] })),
        (Action::ListResources, _) => Message::result_response(id, &json!({ "resources": [] })),
        (Action::ListResourceTemplates, _) => Message::result_response(id, &json!({ "resourceTemplates": [] })),
        (Action::ListPrompts, _) => Message::result_response(id, &json!({ "prompts": [] })),
        (_, Target::Tool(name)) => Message::error_response(id, INVALID_PARAMS, &format!("Unknown tool: {name}"), None),
        (_, Target::Prompt(name)) => {
            Message::error_response(id, INVALID_PARAMS, &format!("Unknown prompt: {name}"), None)
        }
        (_, Target::Resource(uri)) => {
            Message::error_response(id, RESOURCE_NOT_FOUND, "Resource not found", Some(json!({ "uri": uri })))
        }
        (_, Target::Upstream) => Message::error_response(id, INVALID_PARAMS, "Unknown target", None),
    }
}

/// The field of a list result, the key of its entries, and the action their use is.
fn list_shape(action: Action) -> (&'static str, &'static str, Action) {
    match action {
        Action::ListTools => ("tools", "name", Action::CallTool),
        Action::ListResources => ("resources", "uri", Action::ReadResource),
        Action::ListResourceTemplates => ("resourceTemplates", "uriTemplate", Action::ReadResource),
        _ => ("prompts", "name", Action::GetPrompt),
    }
}

impl PolicyCall {
    /// A list result with only the entries the principal may use.
    fn filter_list(&self, action: Action, msg: Message) -> Message {
        let (field, key, use_action) = list_shape(action);
        let Some(mut value) = msg.to_value() else { return msg };
        let Some(entries) = value.pointer_mut(&format!("/result/{field}")).and_then(Value::as_array_mut) else {
            return msg;
        };
        let before = entries.len();
        let mut hidden = Vec::new();
        entries.retain(|entry| {
            let Some(id) = entry.get(key).and_then(Value::as_str) else { return false };
            let target = match use_action {
                Action::CallTool => Target::Tool(id.to_owned()),
                Action::GetPrompt => Target::Prompt(id.to_owned()),
                _ => Target::Resource(id.to_owned()),
            };
            let d = self.decide(use_action, &target, None, action.name());
            tracing::debug!(
                target: "shadowcat::policy",
                principal = %self.subject().sub,
                action = use_action.name(),
                resource = %target.describe(&self.upstream),
                decision = if d.allowed { "allow" } else { "deny" },
                policies = ?d.policies,
                "list entry"
            );
            if !d.allowed {
                hidden.push(id.to_owned());
            }
            d.allowed
        });
        tracing::info!(
            target: "shadowcat::policy",
            principal = %self.subject().sub,
            action = action.name(),
            upstream = %self.upstream,
            shown = before - hidden.len(),
            hidden = hidden.len(),
            "policy list filtered"
        );
        if hidden.is_empty() {
            return msg;
        }
        Message::from_value(&value)
    }
}

impl Stage for Guard {
    type Call = PolicyCall;

    fn begin(&self, req: &McpRequest) -> PolicyCall {
        let request = req.msg().filter(|m| m.is_request()).and_then(classify);
        let list = match &request {
            Some((action, _, _)) if action.is_list() => req.msg().and_then(Message::id_shared).map(|id| (*action, id)),
            _ => None,
        };
        let upstream = self.routes.get(&*req.route).map_or_else(|| Arc::from(""), |u| Arc::from(u.as_str()));
        PolicyCall {
            policies: self.policies.load(),
            principal: req.context.principal().cloned(),
            subject: OnceLock::new(),
            made: self.made.clone(),
            upstream,
            route: req.route.clone(),
            protocol: req.version.as_str(),
            list,
            request,
        }
    }

    fn on_request(&self, call: &PolicyCall, _info: &CallInfo, mut req: McpRequest) -> Flow<McpRequest> {
        let (Some((action, target, arguments)), Some(msg)) = (&call.request, req.msg()) else {
            return Flow::pass(req);
        };
        let d = call.decide(*action, target, arguments.as_ref(), msg.method().unwrap_or_default());
        for error in &d.errors {
            tracing::warn!(target: "shadowcat::policy", %error, "a policy failed to evaluate and was skipped");
        }
        if !d.allowed {
            call.log(*action, target, &d);
            return Flow::Now(Verdict::Answer(invisible(msg.id_key(), *action, target)));
        }
        if self.noted {
            // The access log line carries it: no line of its own.
            let note = format!("allow by {}", d.policies.join(","));
            req.context.extensions.insert(AccessNote(note.into()));
        } else {
            call.log(*action, target, &d);
        }
        Flow::pass(req)
    }

    fn on_message(&self, call: &PolicyCall, ctx: &MessageContext<'_>, msg: Message) -> Flow {
        match ctx.direction {
            // Decided in `on_request`.
            Direction::ClientToServer => Flow::pass(msg),
            Direction::ServerToClient => {
                if let Some((action, id)) = &call.list {
                    if msg.method().is_none() && msg.id_key() == Some(&**id) && !msg.is_error() {
                        return Flow::pass(call.filter_list(*action, msg));
                    }
                }
                if msg.method() == Some("notifications/resources/updated") {
                    let Some(uri) = msg.params::<Value>().and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
                    else {
                        return Flow::pass(msg);
                    };
                    let d = call.decide(
                        Action::ReadResource,
                        &Target::Resource(uri),
                        None,
                        "notifications/resources/updated",
                    );
                    if !d.allowed {
                        return Flow::drop_it();
                    }
                }
                Flow::pass(msg)
            }
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("policies", &self.policies.load().len()).finish()
    }
}

#[cfg(test)]
mod tests;
