//! Rule files: the format (`version: 1`), loading and checking, and the compiled
//! rule set the stage runs. See `docs/intercept.md` for the reference.
//!
//! Everything a rule needs at run time is compiled here, once, at load: method and
//! name patterns, JSONPaths, templates. A file either loads whole or not at all;
//! errors name the file, the line, the rule and the key. What a rule matches is in
//! [`matching`], what it does in [`action`]; this module reads the file, orders and
//! indexes the rules, and counts their firings.

mod action;
mod matching;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Deserialize;

use crate::pipeline::Direction;

use action::{compile_action, ActionSpec};
pub use action::{Action, Delay, Fault, Piece};
use matching::MatchSpec;
pub use matching::{Facts, Match, Pattern, Side};

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

/// A compiled rule, with its counters.
#[derive(Debug)]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// What it is for.
    pub description: Option<String>,
    /// The line of the rule file it starts on.
    pub line: usize,
    /// Whether it fires at all (switched live by the admin API).
    pub enabled: AtomicBool,
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
    /// Its metrics, registered once at load.
    pub metrics: RuleMetrics,
}

/// A rule's metrics (label `rule`, and `action` on the last two).
pub struct RuleMetrics {
    /// `shadowcat_intercept_rule_matches_total`: messages it matched.
    pub matches: metrics::Counter,
    /// `shadowcat_intercept_rule_actions_total`: times it acted.
    pub actions: metrics::Counter,
    /// `shadowcat_intercept_rule_seconds`: how long each action took (a held
    /// message: until it went on).
    pub seconds: metrics::Histogram,
}

impl RuleMetrics {
    fn register(id: &str, action: &'static str) -> RuleMetrics {
        let labels = [("rule", id.to_owned()), ("action", action.to_owned())];
        RuleMetrics {
            matches: metrics::counter!("shadowcat_intercept_rule_matches_total", "rule" => id.to_owned()),
            actions: metrics::counter!("shadowcat_intercept_rule_actions_total", &labels),
            seconds: metrics::histogram!("shadowcat_intercept_rule_seconds", &labels),
        }
    }
}

impl std::fmt::Debug for RuleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleMetrics")
    }
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
    /// Rules of the upstream's wire (`side: upstream`), in the order they are tried
    /// (none of them is in the indexes above).
    pub upstream: Vec<usize>,
    /// The mocks' templates.
    pub templates: handlebars::Handlebars<'static>,
    /// Whether any rule renders a template (the request is kept for it).
    pub uses_templates: bool,
    /// Whether a rule matches headers (then each call keeps its request's).
    pub uses_headers: bool,
    /// Whether a rule matches the principal's claims (then each call keeps its
    /// principal).
    pub uses_claims: bool,
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
            upstream: Vec::new(),
            templates: handlebars::Handlebars::new(),
            uses_templates: false,
            uses_headers: false,
            uses_claims: false,
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
            // Without a direction a rule matches the messages that carry its method:
            // requests and notifications, never a result or an error.
            if matcher.method.is_some() && matcher.direction.is_none() {
                let answers_only = matcher.jsonpath.iter().find(|(p, _)| {
                    ["$.result", "$.error", "$['result']", "$['error']"].iter().any(|f| p.starts_with(f))
                });
                if let Some((path, _)) = answers_only {
                    set.warnings.push(format!(
                        "{origin}:{line}: rule {:?}: match.jsonpath: never matches: {path:?} looks at a response, and a rule with a method but no direction matches only the requests and notifications that carry it (add a direction to match their answers)",
                        spec.id
                    ));
                }
            }
            if matcher.side == Side::Upstream {
                let client_only = [
                    ("headers", !matcher.headers.is_empty()),
                    ("session", matcher.session.is_some()),
                    ("route", matcher.route.is_some()),
                    ("revision", !matcher.revision.is_empty()),
                    ("claims", matcher.uses_claims()),
                ];
                for (key, _) in client_only.iter().filter(|(_, given)| *given) {
                    set.warnings.push(format!(
                        "{origin}:{line}: rule {:?}: match.{key}: never matches: the upstream's wire has no client {key}",
                        spec.id
                    ));
                }
            }
            set.uses_headers |= matcher.uses_headers();
            set.uses_claims |= matcher.uses_claims();
            let action = compile_action(spec.action, &spec.id, &mut set).map_err(|(key, e)| at(&key, e))?;
            if let (Side::Upstream, Action::Fault(Fault::Wire(_) | Fault::Truncated)) = (matcher.side, &action) {
                return Err(at(
                    "action.fault",
                    "malformed, reset and dribble act on the client's wire, not with side: upstream".into(),
                ));
            }
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
                metrics: RuleMetrics::register(&spec.id, action.name()),
                id: spec.id,
                line,
                description: spec.description,
                enabled: AtomicBool::new(spec.enabled),
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
            if rule.matcher.side == Side::Upstream {
                set.upstream.push(i);
                continue;
            }
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
    use std::time::Duration;

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
}
