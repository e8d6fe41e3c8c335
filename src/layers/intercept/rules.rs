//! Rule files: the format (`version: 1`), loading and checking, and the compiled
//! rule set the stage runs. See `docs/intercept.md` for the reference.
//!
//! Everything a rule needs at run time is compiled here, once, at load: method and
//! name patterns, templates. A file either loads whole or not at all; errors name the
//! file, the line, the rule and the key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::pipeline::Direction;

/// The rule file format version this build reads.
pub const VERSION: u64 = 1;

// === the file, as written ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u64,
    /// Seeds the rules' `probability` draws, so that a run can be reproduced.
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    priority: i64,
    #[serde(rename = "match", default)]
    matcher: MatchSpec,
    action: ActionSpec,
    #[serde(default)]
    times: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    probability: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Which way a message goes, as rule files spell it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DirectionSpec {
    ClientToServer,
    ServerToClient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    #[serde(default)]
    direction: Option<DirectionSpec>,
    #[serde(default)]
    method: Option<PatternSpec>,
    #[serde(default)]
    tool: Option<PatternSpec>,
    #[serde(default)]
    jsonpath: Option<OneOrMany>,
    #[serde(default)]
    revision: Option<OneOrMany>,
    #[serde(default)]
    route: Option<PatternSpec>,
    #[serde(default)]
    upstream: Option<PatternSpec>,
    #[serde(default)]
    all: Option<Vec<MatchSpec>>,
    #[serde(default)]
    any: Option<Vec<MatchSpec>>,
    #[serde(default)]
    not: Option<Box<MatchSpec>>,
}

/// One string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A name to match: exact, a glob when it has `*` or `?`, or `{ regex: ... }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PatternSpec {
    Text(String),
    Regex { regex: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ActionSpec {
    Continue,
    Drop,
    Block(BlockSpec),
    Mock(MockSpec),
    Delay(DelaySpec),
    Modify(super::modify::ModifySpec),
    Fault(FaultSpec),
}

/// A failure to inject.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    /// Never answer (the sender's own timeout decides).
    Hang,
    /// Hold, then fail as an upstream that did not answer in time.
    Timeout(#[serde(with = "crate::config::duration")] Duration),
    /// Fail as an unreachable or failing upstream (HTTP 502).
    UpstreamError(#[serde(default)] Option<String>),
    /// Refuse with HTTP 429 and `Retry-After`.
    TooManyRequests {
        #[serde(with = "crate::config::duration")]
        retry_after: Duration,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockSpec {
    #[serde(default = "block_code")]
    code: i32,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    /// An HTTP status instead of a JSON-RPC error in a 200 (client requests only).
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    headers: HashMap<String, String>,
}

fn block_code() -> i32 {
    -32050
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockSpec {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<MockError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockError {
    code: i32,
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum DelaySpec {
    /// Always this long.
    Fixed(#[serde(with = "crate::config::duration")] Duration),
    /// Uniformly between the two (drawn from the file's seed).
    Uniform(#[serde(with = "duration_pair")] (Duration, Duration)),
    /// `base`, times `factor` for each earlier firing of the rule, at most `max`.
    Exponential {
        #[serde(with = "crate::config::duration")]
        base: Duration,
        #[serde(default = "two")]
        factor: f64,
        #[serde(with = "crate::config::duration")]
        max: Duration,
    },
}

fn two() -> f64 {
    2.0
}

/// `[100ms, 500ms]`: two durations.
mod duration_pair {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(Duration, Duration), D::Error> {
        let [low, high] = <[String; 2]>::deserialize(d)?;
        let parse = |t: &str| crate::config::duration::parse(t).map_err(serde::de::Error::custom);
        Ok((parse(&low)?, parse(&high)?))
    }
}

/// How long a `delay` holds a message.
#[derive(Debug, Clone, Copy)]
pub enum Delay {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between the two.
    Uniform(Duration, Duration),
    /// `base * factor^n` for the rule's n-th firing, at most `max`.
    Exponential {
        /// The first delay.
        base: Duration,
        /// The growth per firing.
        factor: f64,
        /// The cap.
        max: Duration,
    },
}

impl Delay {
    /// The delay for the rule's `n`-th firing, drawing from `seed`.
    pub fn for_firing(&self, n: u64, seed: u64) -> Duration {
        match *self {
            Delay::Fixed(d) => d,
            Delay::Uniform(low, high) => {
                let draw = (splitmix64(seed ^ n.rotate_left(32)) >> 11) as f64 / (1u64 << 53) as f64;
                low + (high - low).mul_f64(draw)
            }
            Delay::Exponential { base, factor, max } => {
                let exp = i32::try_from(n).unwrap_or(i32::MAX);
                base.mul_f64(factor.powi(exp).min(max.as_secs_f64() / base.as_secs_f64().max(1e-9))).min(max)
            }
        }
    }
}

/// A failure a `fault` injects.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Never answer.
    Hang,
    /// Hold this long, then fail as an upstream timeout (504).
    Timeout(Duration),
    /// Fail as an upstream error (502), with this detail.
    UpstreamError(String),
    /// Refuse with 429 and `Retry-After`.
    TooManyRequests(Duration),
}

// === compiled ===

/// A compiled name pattern.
#[derive(Debug)]
pub enum Pattern {
    /// The exact name.
    Exact(String),
    /// A glob or a regex, compiled.
    Regex(regex::Regex),
}

impl Pattern {
    fn compile(spec: PatternSpec) -> Result<Pattern, String> {
        match spec {
            PatternSpec::Text(text) if !text.contains(['*', '?']) => Ok(Pattern::Exact(text)),
            PatternSpec::Text(glob) => {
                // A glob is a regex of its own: `*` any run of characters, `?` one.
                let mut re = String::from("^");
                for c in glob.chars() {
                    match c {
                        '*' => re.push_str(".*"),
                        '?' => re.push('.'),
                        c => re.push_str(&regex::escape(&c.to_string())),
                    }
                }
                re.push('$');
                regex::Regex::new(&re).map(Pattern::Regex).map_err(|e| format!("glob {glob:?}: {e}"))
            }
            PatternSpec::Regex { regex } => {
                regex::Regex::new(&regex).map(Pattern::Regex).map_err(|e| format!("regex {regex:?}: {e}"))
            }
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == name,
            Pattern::Regex(re) => re.is_match(name),
        }
    }

    fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(exact) => Some(exact),
            Pattern::Regex(_) => None,
        }
    }
}

/// What a rule looks at: every key given must match.
#[derive(Debug, Default)]
pub struct Match {
    /// The direction, if any.
    pub direction: Option<Direction>,
    /// The method (for a response: its request's method).
    pub method: Option<Pattern>,
    /// The tool or prompt name (`params.name` of `tools/call` and `prompts/get`).
    pub tool: Option<Pattern>,
    /// JSONPath queries (RFC 9535) over the whole message: each must select something.
    pub jsonpath: Vec<(String, jsonpath_rust::parser::model::JpQuery)>,
    /// Protocol revisions, any of them.
    pub revision: Vec<crate::protocol::ProtocolVersion>,
    /// The endpoint path.
    pub route: Option<Pattern>,
    /// The upstream's config name (known for server-to-client messages).
    pub upstream: Option<Pattern>,
    /// Every one of these.
    pub all: Vec<Match>,
    /// At least one of these (when given).
    pub any: Vec<Match>,
    /// Not this.
    pub not: Option<Box<Match>>,
}

/// What a message is, as rules look at it.
pub struct Facts<'a> {
    /// Which way it goes.
    pub direction: Direction,
    /// Its method (a response: its request's, when known).
    pub method: Option<&'a str>,
    /// Its tool or prompt name (a response: its request's).
    pub tool: Option<&'a str>,
    /// The revision in force.
    pub revision: crate::protocol::ProtocolVersion,
    /// The endpoint path.
    pub route: &'a str,
    /// The upstream, once known.
    pub upstream: Option<&'a str>,
    /// The message itself.
    pub message: &'a crate::protocol::Message,
    /// The message as JSON, parsed the first time a JSONPath needs it.
    pub value: &'a std::cell::OnceCell<Option<Value>>,
}

impl Match {
    /// Whether `facts` match.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        let name = |p: &Option<Pattern>, v: Option<&str>| p.as_ref().is_none_or(|p| v.is_some_and(|v| p.matches(v)));
        self.direction.is_none_or(|d| d == facts.direction)
            && name(&self.method, facts.method)
            && name(&self.tool, facts.tool)
            && (self.revision.is_empty() || self.revision.contains(&facts.revision))
            && name(&self.route, Some(facts.route))
            && name(&self.upstream, facts.upstream)
            && self.all.iter().all(|m| m.matches(facts))
            && (self.any.is_empty() || self.any.iter().any(|m| m.matches(facts)))
            && self.not.as_ref().is_none_or(|m| !m.matches(facts))
            && (self.jsonpath.is_empty() || {
                let value = facts.value.get_or_init(|| facts.message.to_value());
                value.as_ref().is_some_and(|v| {
                    self.jsonpath
                        .iter()
                        .all(|(_, q)| jsonpath_rust::query::js_path_process(q, v).is_ok_and(|found| !found.is_empty()))
                })
            })
    }

    fn compile(spec: MatchSpec, key: &str) -> Result<Match, (String, String)> {
        let at = |k: &str| format!("{key}.{k}");
        let pattern = |p: Option<PatternSpec>, k: &str| p.map(Pattern::compile).transpose().map_err(|e| (at(k), e));
        let jsonpath = spec
            .jsonpath
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .map(|p| match jsonpath_rust::parser::parse_json_path(&p) {
                Ok(q) => Ok((p, q)),
                Err(e) => Err((at("jsonpath"), format!("{p:?} is not a JSONPath (RFC 9535): {e}"))),
            })
            .collect::<Result<_, _>>()?;
        let revision = spec
            .revision
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                crate::protocol::ProtocolVersion::parse(&r)
                    .ok_or_else(|| (at("revision"), format!("{r:?} is not a protocol revision")))
            })
            .collect::<Result<_, _>>()?;
        let list = |v: Option<Vec<MatchSpec>>, k: &str| {
            v.unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, m)| Match::compile(m, &format!("{key}.{k}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Match {
            direction: spec.direction.map(|d| match d {
                DirectionSpec::ClientToServer => Direction::ClientToServer,
                DirectionSpec::ServerToClient => Direction::ServerToClient,
            }),
            method: pattern(spec.method, "method")?,
            tool: pattern(spec.tool, "tool")?,
            jsonpath,
            revision,
            route: pattern(spec.route, "route")?,
            upstream: pattern(spec.upstream, "upstream")?,
            all: list(spec.all, "all")?,
            any: list(spec.any, "any")?,
            not: spec.not.map(|m| Match::compile(*m, &at("not")).map(Box::new)).transpose()?,
        })
    }
}

/// A string of a mock's result, made from a template or given as it is.
#[derive(Debug)]
pub enum Piece {
    /// Any JSON value, as written.
    Fixed(Value),
    /// A string with `{{...}}` in it: the name of its compiled template.
    Template(String),
    /// An object whose values are pieces.
    Object(Vec<(String, Piece)>),
    /// An array of pieces.
    Array(Vec<Piece>),
}

/// What a rule does.
#[derive(Debug)]
pub enum Action {
    /// Let the message through as it is (and stop looking at later rules).
    Continue,
    /// Discard it (a request is answered with an error, so that nothing hangs).
    Drop,
    /// Answer with a JSON-RPC error, or refuse with an HTTP status.
    Block {
        /// The JSON-RPC error code.
        code: i32,
        /// The error message.
        message: String,
        /// The error's `data`.
        data: Option<Value>,
        /// An HTTP status (with headers) in place of a JSON-RPC error in a 200.
        status: Option<(http::StatusCode, http::HeaderMap)>,
    },
    /// Answer without the other side: a result (maybe templated) or an error.
    Mock {
        /// The result, when it is one.
        result: Option<Piece>,
        /// The error, when it is one (code, message, data).
        error: Option<(i32, String, Option<Value>)>,
    },
    /// Hold the message, then let it through.
    Delay(Delay),
    /// Fail the call as something below would.
    Fault(Fault),
    /// Change the message by JSONPath, then let it through.
    Modify(super::modify::Modify),
}

/// A compiled rule, with its counters.
#[derive(Debug)]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// What it is for.
    pub description: Option<String>,
    /// Whether it fires at all.
    pub enabled: bool,
    /// Higher first; equal priorities in file order.
    pub priority: i64,
    /// What it looks at.
    pub matcher: Match,
    /// What it does.
    pub action: Action,
    /// Fire this many times at most.
    pub times: Option<u64>,
    /// Skip the first this many matches.
    pub after: u64,
    /// Fire on this share of the matches that are due (drawn from the file's seed).
    pub probability: Option<f64>,
    /// The seed of this rule's draws.
    pub seed: u64,
    /// Messages it matched.
    pub matches: AtomicU64,
    /// Times it acted.
    pub fired: AtomicU64,
}

impl Rule {
    /// Counts a match; whether the rule acts on it (`after` and `times`).
    pub fn take(&self) -> bool {
        let seen = self.matches.fetch_add(1, Ordering::Relaxed);
        if seen < self.after {
            return false;
        }
        if let Some(p) = self.probability {
            // The n-th match's draw depends only on the seed and n: a run with the
            // same seed fires on the same messages.
            let draw = (splitmix64(self.seed ^ seen) >> 11) as f64 / (1u64 << 53) as f64;
            if draw >= p {
                return false;
            }
        }
        match self.times {
            None => {
                self.fired.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(times) => {
                self.fired.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < times).then_some(n + 1)).is_ok()
            }
        }
    }
}

/// SplitMix64's output function: a well-mixed 64-bit value from any input (a few
/// lines, not a dependency: the draws must stay the same across builds, which a
/// general-purpose generator's stream does not promise).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A loaded rule file.
#[derive(Debug)]
pub struct RuleSet {
    /// Where it came from.
    pub origin: String,
    /// Its rules, in the order they are tried (priority, then file order).
    pub rules: Vec<Rule>,
    /// Rules by exact method and exact tool name: indexes into `rules`.
    by_name: HashMap<(String, String), Vec<usize>>,
    /// Rules by exact method, for any tool: indexes into `rules`.
    by_method: HashMap<String, Vec<usize>>,
    /// Rules without an exact method (tried for every message).
    any_method: Vec<usize>,
    /// The mocks' templates.
    pub templates: handlebars::Handlebars<'static>,
    /// Whether any rule renders a template (the request is kept for it).
    pub uses_templates: bool,
    /// Warnings found at load (rules that can never match).
    pub warnings: Vec<String>,
}

impl RuleSet {
    /// An empty set.
    pub fn empty(origin: &str) -> RuleSet {
        RuleSet {
            origin: origin.to_owned(),
            rules: Vec::new(),
            by_name: HashMap::new(),
            by_method: HashMap::new(),
            any_method: Vec::new(),
            templates: handlebars::Handlebars::new(),
            uses_templates: false,
            warnings: Vec::new(),
        }
    }

    /// The rules that may match a message whose method (or whose request's method)
    /// is `method`, for the tool `tool`, in the order they are tried: those indexed
    /// under both, under the method alone, and those without an exact method.
    pub fn candidates<'a>(&'a self, method: Option<&str>, tool: Option<&str>) -> impl Iterator<Item = &'a Rule> + 'a {
        let none: &[usize] = &[];
        let (named, for_method) = match method {
            Some(m) => {
                let named = tool.and_then(|t| self.by_name.get(&(m.to_owned(), t.to_owned())));
                (named.map_or(none, Vec::as_slice), self.by_method.get(m).map_or(none, Vec::as_slice))
            }
            None => (none, none),
        };
        merge(merge(named.iter().copied(), for_method.iter().copied()), self.any_method.iter().copied())
            .map(move |i| &self.rules[i])
    }

    /// Loads and checks a file (YAML or JSON).
    pub fn load(path: &Path) -> Result<RuleSet, String> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        RuleSet::parse(&text, &origin)
    }

    /// Parses and checks rule file text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, String> {
        // YAML is a superset of JSON: one parser reads both.
        let file: File = serde_saphyr::from_str(text).map_err(|e| syntax_error(text, origin, &e.to_string()))?;
        if file.version != VERSION {
            return Err(format!(
                "{origin}:{}: version {} is not supported (this build reads version {VERSION})",
                line_of(text, "version").unwrap_or(1),
                file.version
            ));
        }
        let mut set = RuleSet::empty(origin);
        set.templates.set_strict_mode(true);
        set.templates.register_escape_fn(handlebars::no_escape);
        let mut seen = HashMap::new();
        let seed = file.seed.unwrap_or_else(rand::random);
        for (index, spec) in file.rules.into_iter().enumerate() {
            let line = rule_line(text, &spec.id).unwrap_or(1);
            let at = |key: &str, message: String| format!("{origin}:{line}: rule {:?}: {key}: {message}", spec.id);
            if spec.id.is_empty() {
                return Err(format!("{origin}:{line}: rules[{index}]: id: must not be empty"));
            }
            if let Some(first) = seen.insert(spec.id.clone(), line) {
                return Err(at("id", format!("used twice (first on line {first})")));
            }
            let matcher = Match::compile(spec.matcher, "match").map_err(|(key, e)| at(&key, e))?;
            if let Some(p) = spec.probability {
                if !(0.0..=1.0).contains(&p) {
                    return Err(at("probability", format!("{p} is not between 0 and 1")));
                }
            }
            if let (Some(Pattern::Exact(method)), Some(_)) = (&matcher.method, &matcher.tool) {
                if method != "tools/call" && method != "prompts/get" {
                    set.warnings.push(format!(
                        "{origin}:{line}: rule {:?}: match.tool: never matches: only tools/call and prompts/get name a tool or prompt (method is {method:?})",
                        spec.id
                    ));
                }
            }
            let action = compile_action(spec.action, &spec.id, &mut set).map_err(|(key, e)| at(&key, e))?;
            if let (Action::Block { status: Some(_), .. }, Some(Direction::ServerToClient)) =
                (&action, matcher.direction)
            {
                set.warnings.push(format!(
                    "{origin}:{line}: rule {:?}: action.block.status: an HTTP status only answers a client's request; server-to-client messages get the JSON-RPC error",
                    spec.id
                ));
            }
            let rule_seed = splitmix64(seed ^ fnv1a(&spec.id));
            set.rules.push(Rule {
                id: spec.id,
                description: spec.description,
                enabled: spec.enabled,
                priority: spec.priority,
                matcher,
                action,
                times: spec.times,
                after: spec.after.unwrap_or(0),
                probability: spec.probability,
                seed: rule_seed,
                matches: AtomicU64::new(0),
                fired: AtomicU64::new(0),
            });
        }
        // Higher priority first; a stable sort keeps file order among equals.
        set.rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        for (i, rule) in set.rules.iter().enumerate() {
            let method = rule.matcher.method.as_ref().and_then(Pattern::exact);
            let tool = rule.matcher.tool.as_ref().and_then(Pattern::exact);
            match (method, tool) {
                (Some(method), Some(tool)) => {
                    set.by_name.entry((method.to_owned(), tool.to_owned())).or_default().push(i)
                }
                // A tool pattern that is not exact: tried for every tool of the method.
                (Some(method), None) => set.by_method.entry(method.to_owned()).or_default().push(i),
                (None, _) => set.any_method.push(i),
            }
        }
        Ok(set)
    }
}

/// FNV-1a of a rule id (each rule draws from a stream of its own).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Two ascending index sequences merged, ascending (the order rules are tried in).
fn merge(a: impl Iterator<Item = usize>, b: impl Iterator<Item = usize>) -> impl Iterator<Item = usize> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x <= y => a.next(),
        (_, Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, None) => None,
    })
}

fn compile_action(spec: ActionSpec, id: &str, set: &mut RuleSet) -> Result<Action, (String, String)> {
    Ok(match spec {
        ActionSpec::Continue => Action::Continue,
        ActionSpec::Drop => Action::Drop,
        ActionSpec::Delay(d) => Action::Delay(match d {
            DelaySpec::Fixed(d) => Delay::Fixed(d),
            DelaySpec::Uniform((low, high)) if low <= high => Delay::Uniform(low, high),
            DelaySpec::Uniform(_) => {
                return Err(("action.delay.uniform".to_owned(), "the first bound is above the second".into()))
            }
            DelaySpec::Exponential { base, factor, max } if factor >= 1.0 && !base.is_zero() && base <= max => {
                Delay::Exponential { base, factor, max }
            }
            DelaySpec::Exponential { .. } => {
                return Err((
                    "action.delay.exponential".to_owned(),
                    "needs base > 0, base <= max and factor >= 1".into(),
                ))
            }
        }),
        ActionSpec::Fault(f) => Action::Fault(match f {
            FaultSpec::Hang => Fault::Hang,
            FaultSpec::Timeout(d) => Fault::Timeout(d),
            FaultSpec::UpstreamError(detail) => {
                Fault::UpstreamError(detail.unwrap_or_else(|| format!("fault injected by rule {id}")))
            }
            FaultSpec::TooManyRequests { retry_after } => Fault::TooManyRequests(retry_after),
        }),
        ActionSpec::Modify(m) => Action::Modify(super::modify::Modify::compile(m)?),
        ActionSpec::Block(b) => {
            let status = match b.status {
                None => {
                    if !b.headers.is_empty() {
                        return Err(("action.block.headers".to_owned(), "headers need a status".into()));
                    }
                    None
                }
                Some(code) => {
                    let status = http::StatusCode::from_u16(code)
                        .ok()
                        .filter(|s| s.is_client_error() || s.is_server_error())
                        .ok_or((
                            "action.block.status".to_owned(),
                            format!("{code} is not an HTTP error status (400-599)"),
                        ))?;
                    let mut headers = http::HeaderMap::new();
                    for (name, value) in &b.headers {
                        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                            ("action.block.headers".to_owned(), format!("{name:?} is not a header name"))
                        })?;
                        let value = http::HeaderValue::from_str(value).map_err(|_| {
                            ("action.block.headers".to_owned(), format!("the value of {name} is not a header value"))
                        })?;
                        headers.append(name, value);
                    }
                    Some((status, headers))
                }
            };
            let message = b.message.unwrap_or_else(|| format!("blocked by rule {id}"));
            Action::Block { code: b.code, message, data: b.data, status }
        }
        ActionSpec::Mock(m) => match (m.result, m.error) {
            (Some(result), None) => {
                let mut n = 0;
                let piece = compile_piece(result, id, &mut n, set).map_err(|e| ("action.mock.result".to_owned(), e))?;
                Action::Mock { result: Some(piece), error: None }
            }
            (None, Some(e)) => Action::Mock { result: None, error: Some((e.code, e.message, e.data)) },
            _ => return Err(("action.mock".to_owned(), "give exactly one of result and error".into())),
        },
    })
}

/// Compiles the templates in a mock's result (strings with `{{`).
fn compile_piece(value: Value, id: &str, n: &mut usize, set: &mut RuleSet) -> Result<Piece, String> {
    Ok(match value {
        Value::String(s) if s.contains("{{") => {
            let name = format!("{id}#{n}");
            *n += 1;
            set.templates.register_template_string(&name, &s).map_err(|e| format!("template {s:?}: {e}"))?;
            set.uses_templates = true;
            Piece::Template(name)
        }
        Value::Object(map) => Piece::Object(
            map.into_iter().map(|(k, v)| Ok((k, compile_piece(v, id, n, set)?))).collect::<Result<_, String>>()?,
        ),
        Value::Array(items) => {
            Piece::Array(items.into_iter().map(|v| compile_piece(v, id, n, set)).collect::<Result<_, String>>()?)
        }
        other => Piece::Fixed(other),
    })
}

impl Piece {
    /// The value, with its templates rendered against `context`.
    pub fn render(&self, templates: &handlebars::Handlebars<'_>, context: &Value) -> Result<Value, String> {
        Ok(match self {
            Piece::Fixed(v) => v.clone(),
            Piece::Template(name) => Value::String(templates.render(name, context).map_err(|e| e.to_string())?),
            Piece::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, p)| Ok((k.clone(), p.render(templates, context)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Piece::Array(items) => {
                Value::Array(items.iter().map(|p| p.render(templates, context)).collect::<Result<_, String>>()?)
            }
        })
    }
}

/// A parse error, with the file and line in front and the rule it is in, if any.
fn syntax_error(text: &str, origin: &str, error: &str) -> String {
    let line = error
        .split_once("line ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let Some(line) = line else { return format!("{origin}: {error}") };
    // The rule the line is in: the last `id:` at or before it.
    let rule = text.lines().take(line).filter_map(id_on_line).last();
    match rule {
        Some(id) => format!("{origin}:{line}: rule {id:?}: {error}"),
        None => format!("{origin}:{line}: {error}"),
    }
}

/// The id a line names (`- id: x`, `id: "x"`, `{"id": "x", ...`), if it does.
fn id_on_line(line: &str) -> Option<String> {
    let line = line.trim_start().trim_start_matches("- ").trim_start_matches(['{', '[']).trim_start();
    let rest = line.strip_prefix("id:").or_else(|| line.strip_prefix("\"id\":"))?;
    let value = rest.trim().split(',').next()?.trim().trim_end_matches('}').trim();
    let unquoted = value.trim_matches('"').trim_matches('\'');
    (!unquoted.is_empty()).then(|| unquoted.to_owned())
}

/// The line (1-based) where the rule with `id` starts: the line naming it.
fn rule_line(text: &str, id: &str) -> Option<usize> {
    text.lines().position(|line| id_on_line(line).is_some_and(|named| named == id)).map(|i| i + 1)
}

/// The first line with `key:` at its start.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().trim_start_matches('"').starts_with(key)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"version: 1
rules:
  - id: block-echo
    match: { method: tools/call, tool: echo }
    action: { block: { code: -32050, message: "blocked by rule block-echo" } }
  - id: slow-add
    match: { method: tools/call, tool: add }
    action: { delay: { fixed: 300ms } }
  - id: no-logs
    match: { direction: server_to_client, method: notifications/message }
    action: drop
"#;

    #[test]
    fn reads_the_example_and_indexes_by_method() {
        let set = RuleSet::parse(EXAMPLE, "rules.yaml").expect("valid");
        assert_eq!(set.rules.len(), 3);
        let ids: Vec<_> = set.candidates(Some("tools/call"), Some("echo")).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["block-echo"], "indexed by method and tool");
        let ids: Vec<_> = set.candidates(Some("tools/call"), Some("add")).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["slow-add"]);
        assert_eq!(set.candidates(Some("tools/call"), Some("other")).count(), 0);
        assert_eq!(set.candidates(Some("tools/list"), None).count(), 0);
        assert!(matches!(set.rules[1].action, Action::Delay(Delay::Fixed(d)) if d == Duration::from_millis(300)));
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    }

    #[test]
    fn priority_orders_rules_and_globs_are_tried_for_every_method() {
        let text = "version: 1\nrules:\n  - id: late\n    match: { method: 'tools/*' }\n    action: continue\n  - id: first\n    priority: 5\n    match: { method: tools/call }\n    action: drop\n";
        let set = RuleSet::parse(text, "r.yaml").expect("valid");
        let ids: Vec<_> = set.candidates(Some("tools/call"), Some("x")).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["first", "late"]);
        let ids: Vec<_> = set.candidates(Some("tools/list"), None).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["late"]);
        assert!(set.rules[1].matcher.method.as_ref().is_some_and(|p| p.matches("tools/list") && !p.matches("x")));
    }

    #[test]
    fn errors_name_file_line_rule_and_key() {
        let bad_regex = "version: 1\nrules:\n  - id: ok\n    action: drop\n  - id: bad\n    match: { method: { regex: '(' } }\n    action: drop\n";
        let err = RuleSet::parse(bad_regex, "r.yaml").expect_err("bad regex");
        assert!(err.starts_with("r.yaml:5: rule \"bad\": match.method: regex"), "{err}");
        let unknown_action = "version: 1\nrules:\n  - id: x\n    action: { explode: {} }\n";
        let err = RuleSet::parse(unknown_action, "r.yaml").expect_err("unknown action");
        assert!(err.starts_with("r.yaml:4: rule \"x\": ") && err.contains("explode"), "{err}");
        let unknown_key = "version: 1\nrules:\n  - id: x\n    match: { methd: tools/call }\n    action: drop\n";
        let err = RuleSet::parse(unknown_key, "r.yaml").expect_err("unknown key");
        assert!(err.contains("methd"), "{err}");
        let err = RuleSet::parse("version: 2\nrules: []\n", "r.yaml").expect_err("version");
        assert!(err.contains("r.yaml:1: version 2"), "{err}");
        let err =
            RuleSet::parse("version: 1\nrules:\n  - id: a\n    action: drop\n  - id: a\n    action: drop\n", "r.yaml")
                .expect_err("twice");
        assert!(err.contains("used twice (first on line 3)"), "{err}");
        let err = RuleSet::parse("rules: [\n", "r.yaml").expect_err("malformed");
        assert!(err.starts_with("r.yaml:1: ") && err.contains("bracket"), "{err}");
        let bad_template = "version: 1\nrules:\n  - id: t\n    action: { mock: { result: { text: 'hi {{#if}}' } } }\n";
        let err = RuleSet::parse(bad_template, "r.yaml").expect_err("template");
        assert!(err.contains("r.yaml:3: rule \"t\": action.mock.result: template"), "{err}");
        let bad_status = "version: 1\nrules:\n  - id: s\n    action: { block: { status: 200 } }\n";
        let err = RuleSet::parse(bad_status, "r.yaml").expect_err("status");
        assert!(err.contains("action.block.status"), "{err}");
    }

    #[test]
    fn a_thousand_rules_for_other_tools_are_not_tried() {
        let mut text = String::from("version: 1\nrules:\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "  - id: r{i}\n    match: {{ method: tools/call, tool: t{i} }}\n    action: drop\n"
            ));
        }
        text.push_str(
            "  - id: glob\n    priority: -1\n    match: { method: tools/call, tool: 'e*' }\n    action: drop\n",
        );
        let set = RuleSet::parse(&text, "r.yaml").expect("valid");
        let ids: Vec<_> = set.candidates(Some("tools/call"), Some("echo")).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["glob"], "only the rule that can match is tried");
        let ids: Vec<_> = set.candidates(Some("tools/call"), Some("t7")).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r7", "glob"]);
    }

    fn facts_of<'a>(m: &'a crate::protocol::Message, value: &'a std::cell::OnceCell<Option<Value>>) -> Facts<'a> {
        Facts {
            direction: Direction::ClientToServer,
            method: m.method(),
            tool: m.tool_name(),
            revision: crate::protocol::ProtocolVersion::V2025_06_18,
            route: "/mcp",
            upstream: None,
            message: m,
            value,
        }
    }

    #[test]
    fn jsonpath_revision_and_any_all_not() {
        let text = r#"version: 1
rules:
  - id: secret
    match:
      method: tools/call
      jsonpath: "$.params[?@.message == 'secret']"
      revision: [2025-06-18, 2025-11-25]
      not: { route: /other }
      any: [ { tool: echo }, { tool: shout } ]
    action: drop
"#;
        let set = RuleSet::parse(text, "r.yaml").expect("valid");
        let rule = &set.rules[0];
        let call = |tool: &str, message: &str| {
            crate::protocol::Message::from_value(
                &serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{"message":message}}}),
            )
        };
        let hit = |m: &crate::protocol::Message| rule.matcher.matches(&facts_of(m, &std::cell::OnceCell::new()));
        assert!(hit(&call("echo", "secret")));
        assert!(hit(&call("shout", "secret")));
        assert!(!hit(&call("echo", "public")), "the JSONPath selects nothing");
        assert!(!hit(&call("add", "secret")), "no `any` matches");
        let m = call("echo", "secret");
        let value = std::cell::OnceCell::new();
        let mut facts = facts_of(&m, &value);
        facts.route = "/other";
        assert!(!rule.matcher.matches(&facts), "`not` matches");
        facts.route = "/mcp";
        facts.revision = crate::protocol::ProtocolVersion::V2026_07_28;
        assert!(!rule.matcher.matches(&facts), "another revision");

        // The other examples of docs/intercept.md.
        let matches = |path: &str, m: &crate::protocol::Message| {
            let text =
                format!("version: 1\nrules:\n  - id: j\n    match: {{ jsonpath: \"{path}\" }}\n    action: drop\n");
            let set = RuleSet::parse(&text, "r.yaml").expect("valid");
            set.rules[0].matcher.matches(&facts_of(m, &std::cell::OnceCell::new()))
        };
        let error = |code: i32| crate::protocol::Message::error_response(Some("1"), code, "bad", None);
        assert!(matches("$[?@.code == -32602]", &error(-32602)));
        assert!(!matches("$[?@.code == -32602]", &error(-32600)));
        let progress = crate::protocol::Message::from_value(
            &serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}),
        );
        assert!(matches("$.params._meta.progressToken", &progress));
        assert!(!matches("$.params._meta.progressToken", &call("echo", "x")));
    }

    #[test]
    fn bad_jsonpath_revision_and_probability_are_errors() {
        let cases = [
            ("match: { jsonpath: '$.params[' }", "match.jsonpath", "not a JSONPath"),
            ("match: { revision: 2024-01-01 }", "match.revision", "not a protocol revision"),
            ("match: { any: [ { method: { regex: '(' } } ] }", "match.any[0].method", "regex"),
            ("probability: 1.5", "probability", "between 0 and 1"),
        ];
        for (rule, key, what) in cases {
            let text = format!("version: 1\nrules:\n  - id: x\n    {rule}\n    action: drop\n");
            let err = RuleSet::parse(&text, "r.yaml").expect_err(rule);
            assert!(err.contains(&format!("rule \"x\": {key}: ")) && err.contains(what), "{rule}: {err}");
        }
    }

    #[test]
    fn probability_with_a_seed_fires_on_the_same_matches() {
        let file = |seed: u64| {
            format!("version: 1\nseed: {seed}\nrules:\n  - id: p\n    probability: 0.5\n    action: drop\n")
        };
        let run = |seed: u64| {
            let set = RuleSet::parse(&file(seed), "r.yaml").expect("valid");
            (0..64).map(|_| set.rules[0].take()).collect::<Vec<bool>>()
        };
        let first = run(7);
        assert_eq!(first, run(7), "the same seed, the same firings");
        assert_ne!(first, run(8), "another seed, other firings");
        let fired = first.iter().filter(|f| **f).count();
        assert!((16..=48).contains(&fired), "about half: {fired} of 64");
        let never = RuleSet::parse("version: 1\nrules:\n  - id: p\n    probability: 0\n    action: drop\n", "r")
            .expect("valid");
        assert!((0..32).all(|_| !never.rules[0].take()));
    }

    #[test]
    fn json_files_load_too_and_impossible_rules_warn() {
        let json = r#"{"version": 1, "rules": [{"id": "j", "match": {"method": "tools/list", "tool": "x"}, "action": "drop"}]}"#;
        let set = RuleSet::parse(json, "r.json").expect("valid");
        assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
        assert!(set.warnings[0].contains("rule \"j\": match.tool: never matches"), "{:?}", set.warnings);
    }

    #[test]
    fn times_and_after_bound_firing() {
        let text = "version: 1\nrules:\n  - id: r\n    action: drop\n    after: 1\n    times: 2\n";
        let set = RuleSet::parse(text, "r.yaml").expect("valid");
        let fired: Vec<bool> = (0..5).map(|_| set.rules[0].take()).collect();
        assert_eq!(fired, [false, true, true, false, false]);
        assert_eq!(set.rules[0].matches.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn templates_render_strictly() {
        let text = "version: 1\nrules:\n  - id: m\n    action: { mock: { result: { content: [ { type: text, text: 'mocked {{request.params.arguments.message}}' } ] } } }\n";
        let set = RuleSet::parse(text, "r.yaml").expect("valid");
        let Action::Mock { result: Some(piece), .. } = &set.rules[0].action else { panic!("a mock") };
        let ctx = serde_json::json!({ "request": { "params": { "arguments": { "message": "a \"quoted\" word" } } } });
        let out = piece.render(&set.templates, &ctx).expect("renders");
        assert_eq!(out["content"][0]["text"], "mocked a \"quoted\" word");
        let err = piece.render(&set.templates, &serde_json::json!({ "request": {} })).expect_err("strict");
        assert!(!err.is_empty());
    }
}
