//! A tape read as a script: the client's recorded requests in order, each with the
//! server's recorded messages that answered it, and matching of a live request to
//! a recorded one.

use std::collections::HashMap;

use jsonpath_rust::query::queryable::Queryable;
use jsonpath_rust::JsonPath;
use serde_json::Value;

use crate::config::Matching;
use crate::tape::{Dir, Side, Tape};

/// One server message of a recorded call, and how long after the one before it
/// (or the request) it came.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) after_us: u64,
    pub(super) msg: Value,
}

/// A recorded client request and what the server sent for it.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    /// The logical call (the rounds of a multi-round-trip request share it).
    pub(super) call: u64,
    pub(super) method: String,
    /// Its params without `_meta` and ignored paths (what matching compares).
    pub(super) key: Value,
    pub(super) steps: Vec<Step>,
}

/// The whole tape, ready to serve.
#[derive(Debug)]
pub struct Script {
    pub(super) file: String,
    pub(super) requests: Vec<Recorded>,
    /// The recorded `initialize` result, if the tape has one.
    pub(super) initialize: Option<Value>,
    /// The server's recorded answer to `server/discover`, if any (a 2026-07-28 tape).
    pub(super) discover: Option<Value>,
    /// The server's `serverInfo` as a 2026-07-28 result's `_meta` gives it.
    pub(super) server_info: Option<Value>,
    /// Messages of the server-to-client (GET) stream.
    pub(super) get_stream: Vec<Step>,
    /// The client's recorded answers to server requests, by the server request's id.
    pub(super) answers: HashMap<String, Value>,
    pub(super) ignore: Vec<String>,
}

/// Params as matching sees them: no `_meta`, no ignored paths.
pub(super) fn match_key(params: Option<&Value>, ignore: &[String]) -> Value {
    let mut p = params.cloned().unwrap_or(Value::Null);
    if let Value::Object(map) = &mut p {
        map.remove("_meta");
    }
    if p == Value::Object(Default::default()) {
        p = Value::Null;
    }
    for path in ignore {
        let Ok(found) = p.query_only_path(path) else { continue };
        for at in found {
            if let Some(node) = p.reference_mut(at) {
                *node = Value::Null;
            }
        }
    }
    p
}

impl Script {
    /// The script of `tape` (read from `file`); `ignore` are JSONPaths into params.
    pub fn new(file: &str, tape: &Tape, ignore: &[String]) -> Result<Script, String> {
        if tape.header.side != "client" {
            return Err(format!(
                "{file}: a tape of the upstream side (side: {}) cannot be replayed as a server",
                tape.header.side
            ));
        }
        for (i, p) in ignore.iter().enumerate() {
            jsonpath_rust::parser::parse_json_path(p)
                .map_err(|e| format!("replay.ignore[{i}] {p:?}: not a JSONPath: {e}"))?;
        }
        let mut script = Script {
            file: file.to_owned(),
            requests: Vec::new(),
            initialize: None,
            discover: None,
            server_info: None,
            get_stream: Vec::new(),
            answers: HashMap::new(),
            ignore: ignore.to_vec(),
        };
        // The request a server message belongs to: the latest request of its call.
        let mut by_call: HashMap<u64, (usize, u64)> = HashMap::new();
        // Calls whose final response has not come yet, latest last: a server request
        // sent on the GET stream meanwhile is replayed as part of the latest.
        let mut open: Vec<u64> = Vec::new();
        let mut init_call = None;
        let mut last_get = None;
        for f in tape.frames.iter().filter(|f| f.side == Side::Client) {
            let Ok(msg) = serde_json::from_str::<Value>(f.msg.get()) else { continue };
            let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
            let has_id = msg.get("id").is_some_and(|id| !id.is_null());
            match (f.dir, method) {
                (Dir::ClientToServer, Some(method)) if has_id => {
                    if method == "initialize" {
                        init_call = Some(f.call);
                        continue;
                    }
                    let key = match_key(msg.get("params"), ignore);
                    script.requests.push(Recorded { call: f.call, method, key, steps: Vec::new() });
                    by_call.insert(f.call, (script.requests.len() - 1, f.t_us));
                    open.retain(|c| *c != f.call);
                    open.push(f.call);
                }
                (Dir::ClientToServer, None) => {
                    // The client's answer to a server request.
                    if let Some(id) = msg.get("id") {
                        script.answers.insert(id.to_string(), msg.clone());
                    }
                }
                (Dir::ClientToServer, Some(_)) => {}
                (Dir::ServerToClient, _) if init_call == Some(f.call) && f.carrier != "get_stream" => {
                    if msg.get("result").is_some() {
                        script.initialize = msg.get("result").cloned();
                    }
                }
                (Dir::ServerToClient, Some(_)) if f.carrier == "get_stream" && has_id && !open.is_empty() => {
                    let call = open[open.len() - 1];
                    if let Some((index, last)) = by_call.get_mut(&call) {
                        let after_us = f.t_us.saturating_sub(*last);
                        *last = f.t_us;
                        script.requests[*index].steps.push(Step { after_us, msg });
                    }
                }
                (Dir::ServerToClient, _) if f.carrier == "get_stream" => {
                    let after_us = last_get.map_or(0, |t| f.t_us.saturating_sub(t));
                    last_get = Some(f.t_us);
                    script.get_stream.push(Step { after_us, msg });
                }
                (Dir::ServerToClient, method) => {
                    if method.is_none() {
                        open.retain(|c| *c != f.call);
                    }
                    let Some((index, last)) = by_call.get_mut(&f.call) else { continue };
                    let after_us = f.t_us.saturating_sub(*last);
                    *last = f.t_us;
                    if script.server_info.is_none() {
                        script.server_info = msg.pointer("/result/_meta/io.modelcontextprotocol~1serverInfo").cloned();
                    }
                    if script.requests[*index].method == "server/discover" && msg.get("result").is_some() {
                        script.discover = msg.get("result").cloned();
                    }
                    script.requests[*index].steps.push(Step { after_us, msg });
                }
            }
        }
        script.unfold_rounds();
        if script.requests.is_empty() && script.initialize.is_none() {
            return Err(format!("{file}: the tape holds no client request to replay"));
        }
        Ok(script)
    }

    /// A 2026-07-28 call that asked for input (`input_required`, then the client's
    /// retry with `inputResponses`) is replayed as a 2025 server would serve it: its
    /// input requests as server-to-client requests, then the final result of the last
    /// round. (The replay is a 2025 server to the gateway, which bridges 2026-07-28
    /// clients back to rounds.)
    fn unfold_rounds(&mut self) {
        for i in 0..self.requests.len() {
            let asked = match self.requests[i].steps.last() {
                Some(last)
                    if last.msg.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required") =>
                {
                    last.msg.pointer("/result/inputRequests").and_then(Value::as_object).cloned().unwrap_or_default()
                }
                _ => continue,
            };
            let call = self.requests[i].call;
            let Some(next) = (i + 1..self.requests.len()).find(|j| self.requests[*j].call == call) else { continue };
            let mut steps = self.requests[i].steps.clone();
            let Some(last) = steps.pop() else { continue };
            for (n, (key, ask)) in asked.into_iter().enumerate() {
                let msg = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": format!("replay-{i}-{n}-{key}"),
                    "method": ask.get("method").cloned().unwrap_or(Value::Null),
                    "params": ask.get("params").cloned().unwrap_or(Value::Null),
                });
                steps.push(Step { after_us: if n == 0 { last.after_us } else { 0 }, msg });
            }
            steps.extend(self.requests[next].steps.iter().cloned());
            self.requests[i].steps = steps;
        }
    }

    /// The recorded request `method` with `key` stands for, given which ones have
    /// been answered (`used`) and how far a sequential replay is (`cursor`); else why
    /// none does, naming the closest.
    pub(super) fn find(
        &self,
        matching: Matching,
        method: &str,
        key: &Value,
        used: &[bool],
        cursor: usize,
    ) -> Result<usize, String> {
        let same = |r: &Recorded| r.method == method && &r.key == key;
        let found = match matching {
            Matching::MethodParams => {
                let mut all = self.requests.iter().enumerate().filter(|(_, r)| same(r)).map(|(i, _)| i);
                let first = all.next();
                first.and_then(|f| std::iter::once(f).chain(all).find(|i| !used[*i]).or(Some(f)))
            }
            Matching::Sequential => (cursor..self.requests.len()).find(|i| self.requests[*i].method == method),
            Matching::Strict => (cursor < self.requests.len() && same(&self.requests[cursor])).then_some(cursor),
        };
        found.ok_or_else(|| self.no_match(matching, method, key, cursor))
    }

    fn no_match(&self, matching: Matching, method: &str, key: &Value, cursor: usize) -> String {
        if matching == Matching::Strict {
            let Some(next) = self.requests.get(cursor) else {
                return format!("the tape has no more requests (all {} were replayed)", self.requests.len());
            };
            return format!(
                "the next recorded request is {} {}: {}",
                next.method,
                next.key,
                differences(&next.key, key, next.method == method)
            );
        }
        let same_method: Vec<&Recorded> = self.requests.iter().filter(|r| r.method == method).collect();
        if same_method.is_empty() {
            let mut methods: Vec<&str> = self.requests.iter().map(|r| r.method.as_str()).collect();
            methods.sort_unstable();
            methods.dedup();
            return format!("no recorded request has method {method:?}; the tape has {}", methods.join(", "));
        }
        if matching == Matching::Sequential {
            return format!("every recorded {method} request was replayed ({})", same_method.len());
        }
        let closest = same_method
            .iter()
            .min_by_key(|r| crate::tape::diff::paths(&r.key, key).len())
            .copied()
            .unwrap_or(same_method[0]);
        format!(
            "no recorded {method} request has these params; the closest is {}: {}",
            closest.key,
            differences(&closest.key, key, true)
        )
    }
}

fn differences(recorded: &Value, live: &Value, same_method: bool) -> String {
    if !same_method {
        return "another method".into();
    }
    let paths = crate::tape::diff::paths(recorded, live);
    let shown: Vec<&str> = paths.iter().take(5).map(String::as_str).collect();
    format!("differs at {}{}", shown.join(", "), if paths.len() > 5 { ", ..." } else { "" })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tape(frames: &[(u64, &str, Value)]) -> Tape {
        let header = r#"{"type":"header","format":"shadowcat-tape","version":1,"tape":"t","started_at":"x","shadowcat":"0","mode":"gateway","side":"client","revisions":[]}"#;
        let mut text = format!("{header}\n");
        for (i, (call, dir, msg)) in frames.iter().enumerate() {
            let f = json!({"type":"frame","seq":i+1,"t_us":i*10,"at":"x","dir":dir,"side":"client","call":call,"carrier":"post_stream","msg":msg});
            text.push_str(&f.to_string());
            text.push('\n');
        }
        crate::tape::read::parse(text.as_bytes()).expect("tape")
    }

    fn call(id: u64, name: &str, arg: &str) -> Value {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"x":arg},"_meta":{"progressToken":id}}})
    }

    fn result(id: u64, text: &str) -> Value {
        json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}})
    }

    fn script() -> Script {
        let t = tape(&[
            (1, "c2s", call(1, "echo", "a")),
            (1, "s2c", result(1, "A")),
            (2, "c2s", call(2, "echo", "b")),
            (2, "s2c", result(2, "B")),
            (3, "c2s", call(3, "echo", "a")),
            (3, "s2c", result(3, "A2")),
        ]);
        Script::new("t.tape.jsonl", &t, &[]).expect("script")
    }

    #[test]
    fn method_params_takes_unused_matches_first_then_repeats() {
        let s = script();
        let key = match_key(call(9, "echo", "a").get("params"), &[]);
        let mut used = vec![false; 3];
        assert_eq!(s.find(Matching::MethodParams, "tools/call", &key, &used, 0), Ok(0));
        used[0] = true;
        assert_eq!(s.find(Matching::MethodParams, "tools/call", &key, &used, 0), Ok(2), "ids and _meta are ignored");
        used[2] = true;
        assert_eq!(s.find(Matching::MethodParams, "tools/call", &key, &used, 0), Ok(0), "all used: the first again");
        let other = match_key(call(9, "echo", "zzz").get("params"), &[]);
        let err = s.find(Matching::MethodParams, "tools/call", &other, &used, 0).expect_err("no match");
        assert!(err.contains("closest") && err.contains("/arguments/x"), "{err}");
        let ignoring = Script::new(
            "t",
            &tape(&[(1, "c2s", call(1, "echo", "a")), (1, "s2c", result(1, "A"))]),
            &["$.arguments.x".into()],
        )
        .expect("script");
        let key = match_key(call(9, "echo", "zzz").get("params"), &["$.arguments.x".into()]);
        assert_eq!(ignoring.find(Matching::MethodParams, "tools/call", &key, &[false], 0), Ok(0), "an ignored path");
    }

    #[test]
    fn sequential_and_strict_follow_the_tape() {
        let s = script();
        let b = match_key(call(9, "echo", "b").get("params"), &[]);
        let used = vec![false; 3];
        assert_eq!(s.find(Matching::Sequential, "tools/call", &b, &used, 0), Ok(0), "order, whatever the params");
        assert_eq!(
            s.find(Matching::Sequential, "tools/call", &b, &used, 3).map_err(|e| e.contains("every recorded")),
            Err(true)
        );
        assert_eq!(s.find(Matching::Strict, "tools/call", &b, &used, 1), Ok(1));
        let err = s.find(Matching::Strict, "tools/call", &b, &used, 0).expect_err("strict");
        assert!(err.contains("the next recorded request is tools/call"), "{err}");
    }

    #[test]
    fn rounds_of_a_2026_call_become_server_requests() {
        let ask = json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","requestState":"s",
            "inputRequests":{"who":{"method":"elicitation/create","params":{"message":"who?"}}}}});
        let retry = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"e","inputResponses":{"who":{}},"requestState":"s"}});
        let t =
            tape(&[(7, "c2s", call(1, "e", "")), (7, "s2c", ask), (7, "c2s", retry), (7, "s2c", result(2, "done"))]);
        let s = Script::new("t", &t, &[]).expect("script");
        let steps: Vec<&Value> = s.requests[0].steps.iter().map(|st| &st.msg).collect();
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!(steps[0]["method"], "elicitation/create");
        assert_eq!(steps[0]["params"]["message"], "who?");
        assert_eq!(steps[1]["result"]["content"][0]["text"], "done");
    }

    #[test]
    fn diff_paths_are_json_pointers() {
        let a = json!({"a":{"b":1,"c":[1,2]},"d/e":1});
        let b = json!({"a":{"b":2,"c":[1,3]},"x":1});
        assert_eq!(crate::tape::diff::paths(&a, &b), ["/a/b", "/a/c/1", "/d~1e", "/x"]);
    }
}
