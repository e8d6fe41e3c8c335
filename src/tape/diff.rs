//! Comparing two recordings of the same flow (`tape diff`, `tape verify`): the
//! client's requests in order, each with the server's answer, compared after what
//! always differs between runs is set aside (JSON-RPC ids, `_meta`, progress tokens,
//! `requestState`, and the paths the caller names). A changed `tools/list` is shown as
//! schema drift: tools added, removed, and changed field by field.

use std::collections::BTreeMap;

use jsonpath_rust::query::queryable::Queryable;
use jsonpath_rust::JsonPath;
use serde_json::Value;

use super::format::{Dir, Side};
use super::read::Tape;

/// One request of the client and what the server answered.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request's method.
    pub method: String,
    /// A short label: the method and, for a call, the tool or resource.
    pub label: String,
    /// The params, normalized.
    pub params: Value,
    /// The final response (`result` or `error`), normalized; `None` if none came.
    pub answer: Option<Value>,
    /// The methods of the server's other messages for it, in order.
    pub notes: Vec<String>,
}

/// How one exchange compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The same in both.
    Same,
    /// Only in the second recording.
    Added,
    /// Only in the first.
    Removed,
    /// Different: what differs, one line each.
    Changed(Vec<String>),
}

/// The comparison of two recordings, exchange by exchange.
#[derive(Debug)]
pub struct Report {
    /// Per exchange (by position): its label and how it compares.
    pub items: Vec<(String, Change)>,
}

impl Report {
    /// Whether the recordings are equal.
    pub fn is_equal(&self) -> bool {
        self.items.iter().all(|(_, c)| *c == Change::Same)
    }

    /// The report as text, one line per exchange that differs and a summary.
    pub fn render(&self, a: &str, b: &str) -> String {
        let same = self.items.iter().filter(|(_, c)| *c == Change::Same).count();
        let mut out = format!("{a} -> {b}: {same} of {} exchanges equal\n", self.items.len());
        for (i, (label, change)) in self.items.iter().enumerate() {
            let n = i + 1;
            match change {
                Change::Same => {}
                Change::Added => out.push_str(&format!("+ #{n} {label}: only in {b}\n")),
                Change::Removed => out.push_str(&format!("- #{n} {label}: only in {a}\n")),
                Change::Changed(what) => {
                    out.push_str(&format!("~ #{n} {label}\n"));
                    for w in what {
                        out.push_str(&format!("    {w}\n"));
                    }
                }
            }
        }
        out
    }

    /// A JUnit XML report: one test case per exchange.
    pub fn junit(&self, suite: &str) -> String {
        let failures = self.items.iter().filter(|(_, c)| *c != Change::Same).count();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            xml(suite),
            self.items.len()
        );
        for (i, (label, change)) in self.items.iter().enumerate() {
            let name = xml(&format!("#{} {label}", i + 1));
            let failure = match change {
                Change::Same => None,
                Change::Added => Some("only in the new run".to_owned()),
                Change::Removed => Some("not in the new run".to_owned()),
                Change::Changed(what) => Some(what.join("\n")),
            };
            match failure {
                None => out.push_str(&format!("  <testcase classname=\"{}\" name=\"{name}\"/>\n", xml(suite))),
                Some(f) => out.push_str(&format!(
                    "  <testcase classname=\"{}\" name=\"{name}\">\n    <failure message=\"differs\">{}</failure>\n  </testcase>\n",
                    xml(suite),
                    xml(&f)
                )),
            }
        }
        out.push_str("</testsuite>\n");
        out
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Sets aside what differs between any two runs, and the `ignore` paths.
fn normalize(v: &Value, ignore: &[String]) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("_meta");
                map.remove("requestState");
                map.remove("progressToken");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = v.clone();
    strip(&mut v);
    for path in ignore {
        let Ok(found) = v.query_only_path(path) else { continue };
        for at in found {
            if let Some(node) = v.reference_mut(at) {
                *node = Value::Null;
            }
        }
    }
    v
}

/// The client's requests of `tape`, in order, with the server's answers. `ignore`
/// paths apply to whole messages (`$.result.content[0].text`, `$.params.arguments.at`).
pub fn exchanges(tape: &Tape, ignore: &[String]) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    // The exchange a server message belongs to: by call, the latest request in it.
    let mut by_call: BTreeMap<u64, usize> = BTreeMap::new();
    for f in tape.frames.iter().filter(|f| f.side == Side::Client) {
        let Ok(msg) = serde_json::from_str::<Value>(f.msg.get()) else { continue };
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        let has_id = msg.get("id").is_some_and(|i| !i.is_null());
        match (f.dir, method) {
            (Dir::ClientToServer, Some(method)) if has_id => {
                let name = msg.pointer("/params/name").or(msg.pointer("/params/uri")).and_then(Value::as_str);
                let label = match name {
                    Some(n) => format!("{method} {n}"),
                    None => method.clone(),
                };
                let params = normalize(&msg, ignore).get("params").cloned().unwrap_or(Value::Null);
                out.push(Exchange { method, label, params, answer: None, notes: Vec::new() });
                by_call.insert(f.call, out.len() - 1);
            }
            (Dir::ServerToClient, m) => {
                let Some(&i) = by_call.get(&f.call) else { continue };
                match m {
                    Some(m) => out[i].notes.push(m),
                    None => {
                        let n = normalize(&msg, ignore);
                        out[i].answer = n.get("result").or(n.get("error")).map(|a| {
                            let kind = if n.get("error").is_some() { "error" } else { "result" };
                            serde_json::json!({ kind: a })
                        });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Compares two recordings of the same flow.
pub fn compare(a: &[Exchange], b: &[Exchange]) -> Report {
    let mut items = Vec::new();
    for i in 0..a.len().max(b.len()) {
        let item = match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => (y.label.clone(), compare_one(x, y)),
            (Some(x), None) => (x.label.clone(), Change::Removed),
            (None, Some(y)) => (y.label.clone(), Change::Added),
            (None, None) => continue,
        };
        items.push(item);
    }
    Report { items }
}

fn compare_one(a: &Exchange, b: &Exchange) -> Change {
    let mut what = Vec::new();
    if a.label != b.label {
        what.push(format!("request: {} -> {}", a.label, b.label));
    }
    if a.params != b.params && a.method == b.method {
        for p in paths(&a.params, &b.params) {
            what.push(format!("params{p}: {} -> {}", at(&a.params, &p), at(&b.params, &p)));
        }
    }
    if a.notes != b.notes {
        what.push(format!("server messages: [{}] -> [{}]", a.notes.join(", "), b.notes.join(", ")));
    }
    match (&a.answer, &b.answer) {
        (Some(x), Some(y)) if x != y => {
            if a.method == "tools/list" && x.get("result").is_some() && y.get("result").is_some() {
                what.extend(schema_drift(x, y));
            } else {
                for p in paths(x, y).into_iter().take(20) {
                    what.push(format!("{}: {} -> {}", p.trim_start_matches('/'), at(x, &p), at(y, &p)));
                }
            }
        }
        (Some(_), None) => what.push("no response in the new run".into()),
        (None, Some(_)) => what.push("a response in the new run only".into()),
        _ => {}
    }
    if what.is_empty() {
        Change::Same
    } else {
        Change::Changed(what)
    }
}

/// A changed `tools/list`: tools added, removed, and changed field by field.
fn schema_drift(a: &Value, b: &Value) -> Vec<String> {
    let tools = |v: &Value| -> BTreeMap<String, Value> {
        v.pointer("/result/tools")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(|t| Some((t.get("name")?.as_str()?.to_owned(), t.clone()))).collect())
            .unwrap_or_default()
    };
    let (x, y) = (tools(a), tools(b));
    let mut out = Vec::new();
    for name in x.keys().filter(|n| !y.contains_key(*n)) {
        out.push(format!("schema drift: tool {name:?} removed"));
    }
    for name in y.keys().filter(|n| !x.contains_key(*n)) {
        out.push(format!("schema drift: tool {name:?} added"));
    }
    for (name, old) in &x {
        let Some(new) = y.get(name) else { continue };
        for p in paths(old, new) {
            out.push(format!(
                "schema drift: tool {name:?} {}: {} -> {}",
                p.trim_start_matches('/'),
                at(old, &p),
                at(new, &p)
            ));
        }
    }
    let rest = |v: &Value| {
        let mut v = v.clone();
        if let Some(r) = v.get_mut("result").and_then(Value::as_object_mut) {
            r.remove("tools");
        }
        v
    };
    for p in paths(&rest(a), &rest(b)) {
        out.push(format!("{}: {} -> {}", p.trim_start_matches('/'), at(a, &p), at(b, &p)));
    }
    out
}

fn at(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(x) => {
            let s = x.to_string();
            if s.len() > 80 {
                format!("{}...", &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)])
            } else {
                s
            }
        }
        None => "(absent)".into(),
    }
}

/// JSON Pointers where `a` and `b` differ.
pub fn paths(a: &Value, b: &Value) -> Vec<String> {
    fn walk(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(p, q, &path, out),
                        _ => out.push(path),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, &format!("{at}/{i}"), out);
                }
            }
            _ if a == b => {}
            _ => out.push(at.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk(a, b, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ex(method: &str, answer: Value) -> Exchange {
        Exchange {
            method: method.into(),
            label: method.into(),
            params: Value::Null,
            answer: Some(answer),
            notes: vec![],
        }
    }

    #[test]
    fn a_changed_tools_list_is_schema_drift() {
        let a = ex(
            "tools/list",
            json!({"result":{"tools":[
            {"name":"echo","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}}},
            {"name":"old","inputSchema":{}}]}}),
        );
        let b = ex(
            "tools/list",
            json!({"result":{"tools":[
            {"name":"echo","inputSchema":{"type":"object","properties":{"message":{"type":"string"},"loud":{"type":"boolean"}}}},
            {"name":"new","inputSchema":{}}]}}),
        );
        let report = compare(std::slice::from_ref(&a), &[b]);
        let Change::Changed(what) = &report.items[0].1 else { panic!("{report:?}") };
        assert!(what.contains(&"schema drift: tool \"old\" removed".to_owned()), "{what:?}");
        assert!(what.contains(&"schema drift: tool \"new\" added".to_owned()), "{what:?}");
        assert!(
            what.contains(
                &"schema drift: tool \"echo\" inputSchema/properties/loud: (absent) -> {\"type\":\"boolean\"}"
                    .to_owned()
            ),
            "{what:?}"
        );
        assert!(compare(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_equal());
    }

    #[test]
    fn added_removed_and_changed_exchanges() {
        let one = ex("tools/call", json!({"result":{"content":[{"type":"text","text":"a"}]}}));
        let two = ex("tools/call", json!({"result":{"content":[{"type":"text","text":"b"}]}}));
        let report = compare(&[one.clone(), one], std::slice::from_ref(&two));
        assert_eq!(report.items[0].1, Change::Changed(vec!["result/content/0/text: \"a\" -> \"b\"".into()]));
        assert_eq!(report.items[1].1, Change::Removed);
        assert_eq!(compare(&[], &[two]).items[0].1, Change::Added);
        let text = report.render("old", "new");
        assert!(text.starts_with("old -> new: 0 of 2 exchanges equal"), "{text}");
        let junit = report.junit("t.tape.jsonl");
        assert!(junit.contains("tests=\"2\" failures=\"2\"") && junit.contains("<failure"), "{junit}");
    }

    #[test]
    fn what_always_differs_is_set_aside() {
        let a = json!({"jsonrpc":"2.0","id":1,"result":{"_meta":{"x":1},"requestState":"s1","v":1,"at":"t1"}});
        let b = json!({"jsonrpc":"2.0","id":2,"result":{"_meta":{"x":2},"requestState":"s2","v":1,"at":"t2"}});
        let ignore = ["$.result.at".to_owned()];
        assert_eq!(normalize(&a, &ignore).get("result"), normalize(&b, &ignore).get("result"));
    }
}
