//! What a rule matches: direction, method and tool patterns, JSONPath queries,
//! the client's headers and session,
//! revision, route, upstream, and `all`/`any`/`not`, compiled from the file's
//! `match:` once at load.

use serde::Deserialize;
use serde_json::Value;

use crate::pipeline::Direction;

/// Which way a message goes, as rule files spell it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum DirectionSpec {
    ClientToServer,
    ServerToClient,
}

/// Which wire a rule looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The client's wire (the default).
    #[default]
    Client,
    /// The upstream's wire, where it differs from the client's: the sessions the
    /// bridge pools for 2026-07-28 clients and the gateway's stateless requests.
    Upstream,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchSpec {
    #[serde(default)]
    side: Option<Side>,
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
    headers: Option<std::collections::BTreeMap<String, PatternSpec>>,
    #[serde(default)]
    session: Option<PatternSpec>,
    #[serde(default)]
    claims: Option<std::collections::BTreeMap<String, PatternSpec>>,
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
pub(super) enum OneOrMany {
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
pub(super) enum PatternSpec {
    Text(String),
    Regex { regex: String },
}

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

    pub(super) fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(exact) => Some(exact),
            Pattern::Regex(_) => None,
        }
    }
}

/// What a rule looks at: every key given must match.
#[derive(Debug, Default)]
pub struct Match {
    /// The wire (a rule's top-level `match` only).
    pub side: Side,
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
    /// Headers of the client's HTTP request that carries the call: each named one
    /// must be there with a value that matches.
    pub headers: Vec<(http::HeaderName, Pattern)>,
    /// The session id the client holds (`Mcp-Session-Id`).
    pub session: Option<Pattern>,
    /// Claims of the authenticated principal, by name (a dotted path into nested
    /// claims): each named one must be there with a value that matches.
    pub claims: Vec<(Vec<String>, Pattern)>,
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
    /// The revision in force (not known on the upstream's wire).
    pub revision: Option<crate::protocol::ProtocolVersion>,
    /// The endpoint path.
    pub route: &'a str,
    /// The upstream, once known.
    pub upstream: Option<&'a str>,
    /// The client's request headers (when a rule looks at them; none over stdio).
    pub headers: Option<&'a http::HeaderMap>,
    /// The client's session id, if any.
    pub session: Option<&'a str>,
    /// The authenticated principal's claims, when a stage authenticated the client
    /// (and a rule looks at them).
    pub claims: Option<&'a Value>,
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
            && (self.revision.is_empty() || facts.revision.is_some_and(|r| self.revision.contains(&r)))
            && name(&self.route, Some(facts.route))
            && name(&self.upstream, facts.upstream)
            && name(&self.session, facts.session)
            && self.headers.iter().all(|(header, p)| {
                facts.headers.is_some_and(|h| h.get_all(header).iter().any(|v| v.to_str().is_ok_and(|v| p.matches(v))))
            })
            && self.claims.iter().all(|(path, p)| facts.claims.is_some_and(|c| claim_matches(c, path, p)))
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

    /// Whether it (or a rule inside it) looks at headers.
    pub fn uses_headers(&self) -> bool {
        !self.headers.is_empty()
            || self.all.iter().chain(&self.any).any(Match::uses_headers)
            || self.not.as_ref().is_some_and(|m| m.uses_headers())
    }

    /// Whether it (or a match inside it) looks at the principal's claims.
    pub fn uses_claims(&self) -> bool {
        !self.claims.is_empty()
            || self.all.iter().chain(&self.any).any(Match::uses_claims)
            || self.not.as_ref().is_some_and(|m| m.uses_claims())
    }

    pub(super) fn compile(spec: MatchSpec, key: &str) -> Result<Match, (String, String)> {
        let at = |k: &str| format!("{key}.{k}");
        if spec.side.is_some() && key != "match" {
            return Err((at("side"), "only at the top of a rule's match: a rule looks at one wire".into()));
        }
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
        let headers = spec
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(name, p)| {
                let header = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| (at("headers"), format!("{name:?} is not a header name")))?;
                Pattern::compile(p).map(|p| (header, p)).map_err(|e| (format!("{}.{name}", at("headers")), e))
            })
            .collect::<Result<_, _>>()?;
        let claims = spec
            .claims
            .unwrap_or_default()
            .into_iter()
            .map(|(name, p)| {
                let path: Vec<String> = name.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err((at("claims"), format!("{name:?} is not a claim name (names joined by dots)")));
                }
                Pattern::compile(p).map(|p| (path, p)).map_err(|e| (format!("{}.{name}", at("claims")), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Match {
            side: spec.side.unwrap_or_default(),
            claims,
            headers,
            session: pattern(spec.session, "session")?,
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

/// Whether the claim at `path` in `claims` matches `p`: a string claim (`scope` and
/// `scp` split on spaces, as OAuth writes them), any string of an array claim, or a
/// number's or boolean's JSON text.
fn claim_matches(claims: &Value, path: &[String], p: &Pattern) -> bool {
    let Some(claim) = path.iter().try_fold(claims, |v, name| v.get(name)) else { return false };
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    match claim {
        Value::Array(items) => items.iter().filter_map(scalar).any(|s| p.matches(&s)),
        Value::String(s) if matches!(path.last().map(String::as_str), Some("scope" | "scp")) => {
            s.split(' ').any(|scope| p.matches(scope))
        }
        other => scalar(other).is_some_and(|s| p.matches(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::intercept::rules::RuleSet;

    fn facts_of<'a>(m: &'a crate::protocol::Message, value: &'a std::cell::OnceCell<Option<Value>>) -> Facts<'a> {
        Facts {
            direction: Direction::ClientToServer,
            method: m.method(),
            tool: m.tool_name(),
            revision: Some(crate::protocol::ProtocolVersion::V2025_06_18),
            route: "/mcp",
            upstream: None,
            headers: None,
            session: None,
            claims: None,
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
        facts.revision = Some(crate::protocol::ProtocolVersion::V2026_07_28);
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
    fn headers_and_session() {
        let text = "version: 1\nrules:\n  - id: h\n    match: { headers: { X-Team: { regex: '^(a|b)$' }, x-env: prod }, session: 's-*' }\n    action: drop\n";
        let set = RuleSet::parse(text, "r.yaml").expect("valid");
        assert!(set.uses_headers);
        let m = crate::protocol::Message::from_value(&serde_json::json!({"jsonrpc":"2.0","method":"notifications/x"}));
        let value = std::cell::OnceCell::new();
        let mut headers = http::HeaderMap::new();
        headers.append("x-team", http::HeaderValue::from_static("c"));
        headers.append("x-team", http::HeaderValue::from_static("b"));
        headers.insert("x-env", http::HeaderValue::from_static("prod"));
        let mut facts = facts_of(&m, &value);
        let hit = |f: &Facts<'_>| set.rules[0].matcher.matches(f);
        assert!(!hit(&facts), "no headers (stdio), no session");
        facts.headers = Some(&headers);
        facts.session = Some("s-1");
        assert!(hit(&facts), "one of the values matches");
        facts.session = Some("t-1");
        assert!(!hit(&facts));
        headers.insert("x-env", http::HeaderValue::from_static("dev"));
        let mut facts = facts_of(&m, &value);
        facts.headers = Some(&headers);
        facts.session = Some("s-1");
        assert!(!hit(&facts));
        let plain =
            RuleSet::parse("version: 1\nrules:\n  - id: p\n    match: { method: x }\n    action: drop\n", "r.yaml");
        assert!(!plain.expect("valid").uses_headers, "only rules on headers keep them");
    }

    #[test]
    fn bad_jsonpath_revision_and_probability_are_errors() {
        let cases = [
            ("match: { headers: { 'bad header': x } }", "match.headers", "not a header name"),
            ("match: { headers: { x-a: { regex: '(' } } }", "match.headers.x-a", "regex"),
            ("match: { session: { regex: '[' } }", "match.session", "regex"),
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
}
