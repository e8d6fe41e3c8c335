//! Redaction at capture time: values at configured JSONPaths (RFC 9535) and text
//! matching configured patterns are replaced by placeholders, `<redacted:N>`, before
//! a frame is written. The same secret gets the same placeholder within a tape, so a
//! replay still matches requests that carried it.

use std::collections::HashMap;

use jsonpath_rust::query::queryable::Queryable;
use jsonpath_rust::JsonPath;
use regex::Regex;
use serde_json::Value;

/// What to redact.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    paths: Vec<String>,
    patterns: Vec<Regex>,
}

impl Redaction {
    /// Checks and keeps `paths` (JSONPath, applied to each message) and `patterns`
    /// (regular expressions, applied to every string in each message).
    pub fn new(paths: &[String], patterns: &[String]) -> Result<Self, String> {
        for (i, p) in paths.iter().enumerate() {
            jsonpath_rust::parser::parse_json_path(p)
                .map_err(|e| format!("redact.paths[{i}] {p:?}: not a JSONPath: {e}"))?;
        }
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Regex::new(p).map_err(|e| format!("redact.patterns[{i}] {p:?}: not a regular expression: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Redaction { paths: paths.to_vec(), patterns })
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.patterns.is_empty()
    }
}

/// One tape's placeholders.
#[derive(Debug, Default)]
pub struct Placeholders {
    seen: HashMap<String, usize>,
    /// How many values were replaced.
    pub replaced: u64,
}

impl Placeholders {
    fn placeholder(&mut self, secret: String) -> String {
        let next = self.seen.len() + 1;
        let n = *self.seen.entry(secret).or_insert(next);
        self.replaced += 1;
        format!("<redacted:{n}>")
    }

    /// Redacts `message` in place; whether anything changed.
    pub fn apply(&mut self, redaction: &Redaction, message: &mut Value) -> bool {
        let before = self.replaced;
        for path in &redaction.paths {
            let Ok(found) = message.query_only_path(path) else { continue };
            for at in found {
                if let Some(node) = message.reference_mut(at) {
                    let secret = match &mut *node {
                        Value::String(s) => std::mem::take(s),
                        other => other.to_string(),
                    };
                    *node = Value::String(self.placeholder(secret));
                }
            }
        }
        if !redaction.patterns.is_empty() {
            self.patterns(&redaction.patterns, message);
        }
        self.replaced != before
    }

    fn patterns(&mut self, patterns: &[Regex], value: &mut Value) {
        match value {
            Value::String(s) => {
                for re in patterns {
                    if !re.is_match(s) {
                        continue;
                    }
                    let mut out = String::with_capacity(s.len());
                    let mut last = 0;
                    for m in re.find_iter(s) {
                        out.push_str(&s[last..m.start()]);
                        out.push_str(&self.placeholder(m.as_str().to_owned()));
                        last = m.end();
                    }
                    out.push_str(&s[last..]);
                    *s = out;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.patterns(patterns, v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.patterns(patterns, v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_secret_gets_the_same_placeholder() {
        let r = Redaction::new(&["$.params.arguments.password".into()], &["sk-[a-z0-9]{8}".into()]).expect("valid");
        let mut p = Placeholders::default();
        let mut m = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"login","arguments":{"password":"hunter2","note":"key sk-abcdefgh and sk-abcdefgh"}}});
        assert!(p.apply(&r, &mut m));
        assert_eq!(m["params"]["arguments"]["password"], "<redacted:1>");
        assert_eq!(m["params"]["arguments"]["note"], "key <redacted:2> and <redacted:2>");
        let mut again = json!({"params":{"arguments":{"password":"hunter2"}}});
        p.apply(&r, &mut again);
        assert_eq!(again["params"]["arguments"]["password"], "<redacted:1>", "stable within a tape");
        let mut other = json!({"params":{"arguments":{"password":"other"}}});
        p.apply(&r, &mut other);
        assert_eq!(other["params"]["arguments"]["password"], "<redacted:3>");
        assert_eq!(p.replaced, 5);
        let mut clean = json!({"result":{}});
        assert!(!p.apply(&r, &mut clean));
    }

    #[test]
    fn bad_paths_and_patterns_are_refused() {
        let e = Redaction::new(&["$.[".into()], &[]).expect_err("bad path");
        assert!(e.contains("redact.paths[0]") && e.contains("JSONPath"), "{e}");
        let e = Redaction::new(&[], &["(".into()]).expect_err("bad pattern");
        assert!(e.contains("redact.patterns[0]"), "{e}");
    }
}
