//! The Cedar side of the `policy` stage: the built-in schema, a directory of
//! policies loaded and checked against it, and one decision.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationError, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde_json::Value;

/// The schema every policy is checked against (`shadowcat policy schema`).
pub const SCHEMA: &str = r#"// The entities and actions of Shadowcat's `policy` stage.
namespace Shadowcat {
  // A route of the gateway (its path, "/mcp").
  entity Route;
  // An upstream MCP server, by its name in the configuration.
  entity Upstream in [Route];
  // Who calls: the token's subject, or "" when no `auth` stage named anyone
  // (forward stdio). `claims` holds every claim of the token: any
  // `principal.claims.<name>` may be used, and is an error (the policy does
  // not apply) when the token has no such claim.
  entity User {
    groups: Set<String>,
    scopes: Set<String>,
    client_id: String,
    issuer: String,
    claims: {},
  };
  // What a call is on; `name` and `uri` repeat the entity's id, so that
  // policies can match them (`resource.uri like "file:///srv/*"`).
  entity Tool in [Upstream, Route] { name: String };
  entity Resource in [Upstream, Route] { uri: String };
  entity Prompt in [Upstream, Route] { name: String };

  // `arguments` holds the call's arguments as JSON (`context.arguments.<name>`,
  // like claims); `time` is in seconds since 1970.
  type Call = {
    arguments: {},
    route: String,
    protocol: String,
    method: String,
    time: Long,
  };

  action call_tool appliesTo { principal: User, resource: Tool, context: Call };
  action read_resource appliesTo { principal: User, resource: Resource, context: Call };
  action get_prompt appliesTo { principal: User, resource: Prompt, context: Call };
  action complete appliesTo { principal: User, resource: [Prompt, Resource], context: Call };
  action list_tools appliesTo { principal: User, resource: Upstream, context: Call };
  action list_resources appliesTo { principal: User, resource: Upstream, context: Call };
  action list_resource_templates appliesTo { principal: User, resource: Upstream, context: Call };
  action list_prompts appliesTo { principal: User, resource: Upstream, context: Call };
}
"#;

/// JSON nested deeper than this is left out of `claims` and `arguments`.
const MAX_DEPTH: usize = 16;

/// The actions, by their Cedar names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `tools/call`.
    CallTool,
    /// `resources/read`, `resources/subscribe`; the entries of resource lists.
    ReadResource,
    /// `prompts/get`.
    GetPrompt,
    /// `completion/complete`.
    Complete,
    /// `tools/list`.
    ListTools,
    /// `resources/list`.
    ListResources,
    /// `resources/templates/list`.
    ListResourceTemplates,
    /// `prompts/list`.
    ListPrompts,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 8] = [
        Action::CallTool,
        Action::ReadResource,
        Action::GetPrompt,
        Action::Complete,
        Action::ListTools,
        Action::ListResources,
        Action::ListResourceTemplates,
        Action::ListPrompts,
    ];

    /// Whether it lists (its resource is the upstream).
    pub fn is_list(self) -> bool {
        matches!(self, Action::ListTools | Action::ListResources | Action::ListResourceTemplates | Action::ListPrompts)
    }

    /// Its name (`Shadowcat::Action::"<name>"`).
    pub fn name(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::ReadResource => "read_resource",
            Action::GetPrompt => "get_prompt",
            Action::Complete => "complete",
            Action::ListTools => "list_tools",
            Action::ListResources => "list_resources",
            Action::ListResourceTemplates => "list_resource_templates",
            Action::ListPrompts => "list_prompts",
        }
    }

    /// The action named `name` (with or without `Shadowcat::Action::` and quotes).
    pub fn parse(name: &str) -> Option<Action> {
        let bare = name.strip_prefix("Shadowcat::Action::").unwrap_or(name).trim_matches('"');
        Action::ALL.into_iter().find(|a| a.name() == bare)
    }

    fn uid(self) -> EntityUid {
        uid("Action", self.name())
    }
}

/// What an action is on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `Shadowcat::Tool::"<name>"`.
    Tool(String),
    /// `Shadowcat::Resource::"<uri>"`.
    Resource(String),
    /// `Shadowcat::Prompt::"<name>"`.
    Prompt(String),
    /// `Shadowcat::Upstream::"<upstream>"` itself (the list actions).
    Upstream,
}

impl Target {
    /// `Shadowcat::Tool::"x"`, `Tool::"x"` and the other kinds; `None` for other text.
    pub fn parse(text: &str) -> Option<Target> {
        let bare = text.strip_prefix("Shadowcat::").unwrap_or(text);
        let (kind, id) = bare.split_once("::")?;
        let id = id.strip_prefix('"')?.strip_suffix('"')?.to_owned();
        match kind {
            "Tool" => Some(Target::Tool(id)),
            "Resource" => Some(Target::Resource(id)),
            "Prompt" => Some(Target::Prompt(id)),
            "Upstream" => Some(Target::Upstream),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Target::Tool(_) => "Tool",
            Target::Resource(_) => "Resource",
            Target::Prompt(_) => "Prompt",
            Target::Upstream => "Upstream",
        }
    }

    /// How it reads in a log line (`Tool::"echo"`).
    pub fn describe(&self, upstream: &str) -> String {
        let id = match self {
            Target::Tool(s) | Target::Resource(s) | Target::Prompt(s) => s.as_str(),
            Target::Upstream => upstream,
        };
        format!("{}::{id:?}", self.kind())
    }
}

/// The entity types, parsed once.
fn type_name(kind: &str) -> EntityTypeName {
    static TYPES: OnceLock<HashMap<&'static str, EntityTypeName>> = OnceLock::new();
    let types = TYPES.get_or_init(|| {
        ["Action", "User", "Tool", "Resource", "Prompt", "Upstream", "Route"]
            .into_iter()
            .map(|k| {
                // The type names are ours and valid.
                let name = EntityTypeName::from_str(&format!("Shadowcat::{k}")).unwrap_or_else(|_| unreachable!("{k}"));
                (k, name)
            })
            .collect()
    });
    match types.get(kind) {
        Some(t) => t.clone(),
        None => unreachable!("no entity type {kind}"),
    }
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name(kind), EntityId::new(id))
}

/// Who calls, as policies see it (`Shadowcat::User`).
#[derive(Debug, Clone)]
pub struct Subject {
    uid: EntityUid,
    /// The subject (`sub`), for logs.
    pub sub: String,
    entity: Entity,
}

impl Subject {
    /// The subject of a verified token's claims: `sub`, `iss`, `groups` (a list or a
    /// string), `scope`/`scp`, `client_id` (or `azp`), and every claim as `claims`.
    pub fn from_claims(claims: &Value) -> Subject {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let list = |names: &[&str]| -> Vec<String> {
            crate::layers::auth::claim_words(claims, names).map(str::to_owned).collect()
        };
        let client_id = match text("client_id") {
            id if id.is_empty() => text("azp"),
            id => id,
        };
        let sub = text("sub");
        let strings =
            |items: Vec<String>| RestrictedExpression::new_set(items.into_iter().map(RestrictedExpression::new_string));
        let attrs = HashMap::from([
            ("groups".to_owned(), strings(list(&["groups"]))),
            ("scopes".to_owned(), strings(list(&["scope", "scp"]))),
            ("client_id".to_owned(), RestrictedExpression::new_string(client_id)),
            ("issuer".to_owned(), RestrictedExpression::new_string(text("iss"))),
            ("claims".to_owned(), to_cedar(claims, 0).unwrap_or_else(empty_record)),
        ]);
        let uid = uid("User", &sub);
        let entity = Entity::new(uid.clone(), attrs, HashSet::new())
            .unwrap_or_else(|_| Entity::new_no_attrs(uid.clone(), HashSet::new()));
        Subject { uid, sub, entity }
    }

    /// No one named (no `auth` stage, forward stdio): `Shadowcat::User::""`.
    pub fn anonymous() -> Subject {
        Subject::from_claims(&Value::Object(Default::default()))
    }
}

fn empty_record() -> RestrictedExpression {
    RestrictedExpression::new_record(std::iter::empty()).unwrap_or_else(|_| unreachable!())
}

/// JSON as a Cedar value: strings, booleans, integers, sets (arrays) and records
/// (objects). Cedar has no null (left out) nor fractions (their decimal text, as a
/// string). Built field by field, so a client's `{"__entity": ...}` is a record like
/// any other, never an entity reference.
fn to_cedar(value: &Value, depth: usize) -> Option<RestrictedExpression> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(|v| to_cedar(v, depth + 1))),
        Value::Object(map) => {
            RestrictedExpression::new_record(map.iter().filter_map(|(k, v)| Some((k.clone(), to_cedar(v, depth + 1)?))))
                .ok()?
        }
    })
}

/// One request to decide.
pub struct Query<'a> {
    /// Who asks.
    pub subject: &'a Subject,
    /// What for.
    pub action: Action,
    /// On what.
    pub target: &'a Target,
    /// The upstream serving the call (the target's parent).
    pub upstream: &'a str,
    /// The route it came on (the target's and the upstream's parent).
    pub route: &'a str,
    /// The call's arguments (`context.arguments`), if any.
    pub arguments: Option<&'a Value>,
    /// The protocol revision (`context.protocol`).
    pub protocol: &'a str,
    /// The MCP method (`context.method`).
    pub method: &'a str,
}

/// What was decided, and by which policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The ids of the policies that decided (for a denial with none: the default).
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they are ignored, as Cedar does).
    pub errors: Vec<String>,
}

/// What of a request's context the policies read: paths below `context`
/// (`["arguments", "query"]`), found in the policies' JSON form. `None` when a
/// decision cannot be kept (a policy reads `context.time`, or `context` whole).
fn context_reads(set: &PolicySet) -> Option<Vec<Vec<String>>> {
    fn chain(e: &Value) -> Option<Vec<String>> {
        if e.get("Var").and_then(Value::as_str) == Some("context") {
            return Some(Vec::new());
        }
        let access = e.get(".")?;
        let mut path = chain(access.get("left")?)?;
        path.push(access.get("attr")?.as_str()?.to_owned());
        Some(path)
    }
    fn walk(v: &Value, reads: &mut Vec<Vec<String>>) -> bool {
        match v {
            Value::Object(map) => {
                if map.get("Var").and_then(Value::as_str) == Some("context") {
                    return false; // `context` itself, not one of its attributes
                }
                for op in [".", "has"] {
                    let Some(node) = map.get(op) else { continue };
                    if let Some(mut path) = node.get("left").and_then(chain) {
                        match node.get("attr") {
                            Some(Value::String(a)) => path.push(a.clone()),
                            Some(Value::Array(more)) => {
                                path.extend(more.iter().filter_map(Value::as_str).map(str::to_owned))
                            }
                            _ => return false,
                        }
                        reads.push(path);
                        return true;
                    }
                }
                map.values().all(|v| walk(v, reads))
            }
            Value::Array(items) => items.iter().all(|v| walk(v, reads)),
            _ => true,
        }
    }
    let mut reads = Vec::new();
    for policy in set.policies() {
        let json = policy.to_json().ok()?;
        if !walk(&json, &mut reads) {
            return None;
        }
    }
    if reads.iter().any(|p| p.first().is_none_or(|a| a == "time")) {
        return None;
    }
    reads.sort();
    reads.dedup();
    Some(reads)
}

/// Decisions kept at most per policy set (when full, all are made again).
const DECISIONS: usize = 16_384;

/// A bounded map of things made once and looked up after (when full, it empties).
pub struct Kept<K, V> {
    map: parking_lot::Mutex<HashMap<K, V>>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> Kept<K, V> {
    /// At most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Kept { map: parking_lot::Mutex::new(HashMap::new()), cap }
    }

    /// The entry of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.map.lock().get(key).cloned()
    }

    /// Keeps `value` for `key`.
    pub fn insert(&self, key: K, value: V) {
        let mut map = self.map.lock();
        if map.len() >= self.cap {
            map.clear();
        }
        map.insert(key, value);
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded, checked set of policies.
pub struct Policies {
    set: PolicySet,
    /// What of the context decisions depend on (`None`: they are not kept).
    pub(super) reads: Option<Vec<Vec<String>>>,
    /// Decisions by what they depend on; each entry holds its subject, so that the
    /// subject's address in the key is not reused while the entry is there.
    pub(super) decisions: Kept<String, (std::sync::Arc<Subject>, Decision)>,
    authorizer: Authorizer,
    /// Policy id -> where it is (`file.cedar:3`).
    places: HashMap<String, String>,
    /// The files' names with their texts, to tell when a reload changes nothing.
    pub sources: Vec<(String, String)>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").field("count", &self.len()).finish()
    }
}

/// The built-in schema, with `User.claims` and `Call.arguments` open (any
/// attribute may be there; the Cedar format cannot say so, its JSON form can).
pub fn schema() -> Schema {
    let fragment = match cedar_policy::SchemaFragment::from_cedarschema_str(SCHEMA) {
        Ok((fragment, _)) => fragment,
        Err(e) => unreachable!("the built-in schema does not parse: {e}"),
    };
    let mut json = fragment.to_json_value().unwrap_or_else(|e| unreachable!("the built-in schema: {e}"));
    for open in
        ["/Shadowcat/entityTypes/User/shape/attributes/claims", "/Shadowcat/commonTypes/Call/attributes/arguments"]
    {
        match json.pointer_mut(open).and_then(Value::as_object_mut) {
            Some(record) => record.insert("additionalAttributes".into(), Value::Bool(true)),
            None => unreachable!("the built-in schema has no {open}"),
        };
    }
    Schema::from_json_value(json).unwrap_or_else(|e| unreachable!("the built-in schema: {e}"))
}

/// The `*.cedar` files of `dir`, sorted by name, with their texts.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "cedar") && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    Ok(files)
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `file:line:col: message` for a diagnostic of `text`.
fn placed(file: &str, text: &str, diag: &dyn Diagnostic) -> String {
    let offset = diag.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    let mut out = match offset {
        Some(o) => {
            let (line, col) = line_col(text, o);
            format!("{file}:{line}:{col}: {diag}")
        }
        None => format!("{file}: {diag}"),
    };
    if let Some(help) = diag.help() {
        out.push_str(&format!(" ({help})"));
    }
    out
}

/// Whether a validation error is an access into `claims` or `arguments`, which hold
/// whatever the token or the call carries: the schema declares them open, and strict
/// validation still reports a read of an attribute it cannot name (`has` tests are
/// typed as they should be).
fn is_open_access(e: &ValidationError) -> bool {
    if !matches!(e, ValidationError::UnsafeAttributeAccess(_)) {
        return false;
    }
    let text = e.to_string();
    text.contains("attribute `arguments.") || text.contains("attribute `claims.")
}

/// The entities a request on `target` by `subject` needs: the user, the target (with
/// its upstream and route as parents), the upstream and the route.
pub fn entities(subject: &Subject, target: &Target, upstream: &str, route: &str) -> Result<Entities, String> {
    let route = uid("Route", route);
    let upstream = uid("Upstream", upstream);
    let parents = HashSet::from([upstream.clone(), route.clone()]);
    let resource_entity = match target {
        Target::Upstream => None,
        t @ (Target::Tool(id) | Target::Resource(id) | Target::Prompt(id)) => {
            let uid = uid(t.kind(), id);
            let field = if matches!(t, Target::Resource(_)) { "uri" } else { "name" };
            let attrs = HashMap::from([(field.to_owned(), RestrictedExpression::new_string(id.clone()))]);
            Some(
                Entity::new(uid.clone(), attrs, parents.clone()).unwrap_or_else(|_| Entity::new_no_attrs(uid, parents)),
            )
        }
    };
    let all = [
        subject.entity.clone(),
        Entity::new_no_attrs(upstream, HashSet::from([route.clone()])),
        Entity::new_no_attrs(route, HashSet::new()),
    ]
    .into_iter()
    .chain(resource_entity);
    Entities::from_entities(all, None).map_err(|e| e.to_string())
}

impl Policies {
    /// Loads and checks every `*.cedar` file of `dir` (see [`Policies::from_sources`]).
    pub fn load_dir(dir: &Path) -> Result<(Policies, Vec<String>), String> {
        Policies::from_sources(read_dir(dir)?)
    }

    /// Parses each `(file, text)` and checks all against the built-in schema. Each
    /// policy's id is its `@id("...")` annotation, or `file.cedar:LINE`. Errors name
    /// file, line and column; the warnings come back with the policies.
    pub fn from_sources(sources: Vec<(String, String)>) -> Result<(Policies, Vec<String>), String> {
        let mut set = PolicySet::new();
        let mut places = HashMap::new();
        let mut texts: HashMap<String, (&str, &str)> = HashMap::new();
        let mut errors = Vec::new();
        for (file, text) in &sources {
            let short = Path::new(file).file_name().map_or(file.clone(), |n| n.to_string_lossy().into_owned());
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(e) => {
                    errors.extend(e.iter().map(|d| placed(file, text, d)));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                errors.push(format!("{file}: templates (policies with ?principal or ?resource) are not supported"));
                continue;
            }
            // Policies come in the order of the text: find each one's start after the last.
            let mut cursor = 0;
            for policy in parsed.policies() {
                let source = policy.to_string();
                let start = text[cursor..].find(source.as_str()).map(|i| cursor + i);
                if let Some(s) = start {
                    cursor = s + source.len();
                }
                let line = start.map_or(0, |s| line_col(text, s).0);
                let place = format!("{short}:{line}");
                let id = policy.annotation("id").map_or_else(|| place.clone(), str::to_owned);
                if let Some(other) = places.get(&id) {
                    errors.push(format!("{file}:{line}: policy id {id:?} is used twice (also at {other})"));
                    continue;
                }
                if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
                    errors.push(format!("{file}:{line}: {e}"));
                    continue;
                }
                places.insert(id.clone(), place);
                texts.insert(id, (file.as_str(), text.as_str()));
            }
        }
        let validator = Validator::new(schema());
        let result = validator.validate(&set, ValidationMode::Strict);
        let locate = |id: &PolicyId, diag: &dyn Diagnostic| match texts.get(id.to_string().as_str()) {
            Some((file, text)) => placed(file, text, diag),
            None => format!("policy {id}: {diag}"),
        };
        for e in result.validation_errors() {
            if !is_open_access(e) {
                errors.push(locate(e.policy_id(), e));
            }
        }
        let warnings = result.validation_warnings().map(|w| locate(w.policy_id(), w)).collect();
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        drop(texts);
        let reads = context_reads(&set);
        let decisions = Kept::new(DECISIONS);
        Ok((Policies { set, reads, decisions, authorizer: Authorizer::new(), places, sources }, warnings))
    }

    /// How many policies there are.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Whether there are none (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Where policy `id` is (`file.cedar:3`).
    pub fn place(&self, id: &str) -> Option<&str> {
        self.places.get(id).map(String::as_str)
    }

    /// Decides `q`: allowed only if a `permit` applies and no `forbid` does.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        match entities(q.subject, q.target, q.upstream, q.route) {
            Ok(entities) => self.decide_with(q, &entities),
            Err(why) => Decision { allowed: false, policies: Vec::new(), errors: vec![why] },
        }
    }

    /// What a decision for `q` by `subject` depends on, when decisions are kept.
    fn decision_key(&self, subject: &std::sync::Arc<Subject>, q: &Query<'_>) -> Option<String> {
        use std::fmt::Write;
        let reads = self.reads.as_ref()?;
        let mut key = format!(
            "{:x}\u{1f}{}\u{1f}{:?}\u{1f}{}\u{1f}{}",
            std::sync::Arc::as_ptr(subject) as usize,
            q.action.name(),
            q.target,
            q.upstream,
            q.route
        );
        for path in reads {
            key.push('\u{1f}');
            let value = match path.first().map(String::as_str) {
                Some("arguments") => {
                    let mut v = q.arguments;
                    for p in &path[1..] {
                        v = v.and_then(|v| v.get(p));
                    }
                    match v {
                        Some(v) => crate::protocol::canonical_json(v),
                        None => "\u{0}".to_owned(),
                    }
                }
                Some("route") => q.route.to_owned(),
                Some("protocol") => q.protocol.to_owned(),
                Some("method") => q.method.to_owned(),
                _ => return None,
            };
            let _ = write!(key, "{}:{value}", value.len());
        }
        Some(key)
    }

    /// Decides `q` as [`Policies::decide_with`] does, keeping the decision when the
    /// policies allow (they read nothing of the context that the key does not hold).
    pub fn decide_kept(&self, subject: &std::sync::Arc<Subject>, q: &Query<'_>, entities: &Entities) -> Decision {
        let Some(key) = self.decision_key(subject, q) else { return self.decide_with(q, entities) };
        if let Some((_, d)) = self.decisions.get(&key) {
            return d;
        }
        // Kept with its errors too: given what the key holds, they come again.
        let d = self.decide_with(q, entities);
        self.decisions.insert(key, (subject.clone(), d.clone()));
        d
    }

    /// Decides `q` with its entities made already ([`entities`]: they depend on the
    /// subject and the target only, so a caller may keep them).
    pub fn decide_with(&self, q: &Query<'_>, entities: &Entities) -> Decision {
        let deny = |why: String| Decision { allowed: false, policies: Vec::new(), errors: vec![why] };
        let resource = match q.target {
            Target::Upstream => uid("Upstream", q.upstream),
            t @ (Target::Tool(id) | Target::Resource(id) | Target::Prompt(id)) => uid(t.kind(), id),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let arguments = q.arguments.and_then(|a| to_cedar(a, 1)).unwrap_or_else(empty_record);
        let context = Context::from_pairs([
            ("arguments".to_owned(), arguments),
            ("route".to_owned(), RestrictedExpression::new_string(q.route.to_owned())),
            ("protocol".to_owned(), RestrictedExpression::new_string(q.protocol.to_owned())),
            ("method".to_owned(), RestrictedExpression::new_string(q.method.to_owned())),
            ("time".to_owned(), RestrictedExpression::new_long(i64::try_from(now).unwrap_or(i64::MAX))),
        ]);
        let context = match context {
            Ok(c) => c,
            Err(e) => return deny(e.to_string()),
        };
        let request = match Request::new(q.subject.uid.clone(), q.action.uid(), resource, context, None) {
            Ok(r) => r,
            Err(e) => return deny(e.to_string()),
        };
        let response = self.authorizer.is_authorized(&request, &self.set, entities);
        let diagnostics = response.diagnostics();
        Decision {
            allowed: response.decision() == CedarDecision::Allow,
            policies: diagnostics.reason().map(ToString::to_string).collect(),
            errors: diagnostics.errors().map(ToString::to_string).collect(),
        }
    }
}
