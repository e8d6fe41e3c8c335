//! `shadowcat tape verify` and `tape diff`: a tape recorded from a real server
//! (tests/fixtures/drift_server.py, the official Python SDK's MCPServer) sent again
//! to the same server (equal) and to a changed one (a tool renamed, an output changed,
//! a schema field added: exactly those, nothing else); across revisions both ways;
//! `--update`, `--junit`, and runs that cannot happen.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, deps, fixture, scratch_dir};
use serde_json::{json, Value};

/// Records `requests` (JSON-RPC messages) sent through `forward stdio --record` to
/// `server`; returns the client tape.
fn record(server: &[String], requests: &[Value]) -> PathBuf {
    let dir = scratch_dir("verify-rec");
    let mut args: Vec<&str> = vec!["forward", "stdio", "--record", dir.to_str().unwrap(), "--"];
    args.extend(server.iter().map(String::as_str));
    let (mut child, mut stdin, mut stdout) = common::spawn_piped(&args);
    for r in requests {
        writeln!(stdin, "{r}").unwrap();
        if r.get("id").is_some() {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert!(line.contains(&format!("\"id\":{}", r["id"])), "{r} got {line}");
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let tapes: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tape.jsonl"))
        .filter(|p| std::fs::read_to_string(p).unwrap().lines().next().unwrap().contains(r#""side":"client""#))
        .collect();
    assert_eq!(tapes.len(), 1, "{tapes:?}");
    tapes[0].clone()
}

fn verify(tape: &Path, extra: &[&str], server: &[String]) -> (i32, String, String) {
    let out =
        Command::new(bin()).args(["tape", "verify"]).arg(tape).args(extra).arg("--").args(server).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn drift(changed: bool) -> Vec<String> {
    let mut v = vec![deps().python, fixture("drift_server.py")];
    if changed {
        v.push("--changed".into());
    }
    v
}

fn session_2025(calls: &[(&str, Value)]) -> Vec<Value> {
    let mut out = vec![
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"verify-test","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    ];
    for (i, (method, params)) in calls.iter().enumerate() {
        out.push(json!({"jsonrpc":"2.0","id":i + 2,"method":method,"params":params}));
    }
    out
}

fn drift_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("tools/list", json!({})),
        ("tools/call", json!({"name":"echo","arguments":{"message":"hi"}})),
        ("tools/call", json!({"name":"add","arguments":{"a":2,"b":3}})),
    ]
}

/// The lines of a report that name a change.
fn changes(report: &str) -> Vec<String> {
    report.lines().skip(1).map(|l| l.trim().to_owned()).collect()
}

#[test]
fn verify_finds_exactly_what_changed_in_a_server() {
    let tape = record(&drift(false), &session_2025(&drift_calls()));
    let (code, out, err) = verify(&tape, &[], &drift(false));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 of 4 exchanges equal"), "{out}");

    let (code, out, err) = verify(&tape, &[], &drift(true));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 of 4 exchanges equal"), "{out}");
    let expected = [
        "~ #2 tools/list",
        "schema drift: tool \"add\" removed",
        "schema drift: tool \"sum\" added",
        "schema drift: tool \"echo\" inputSchema/properties/loud: (absent) -> {\"default\":false,\"title\":\"Loud\",\"type\":\"boolean\"}",
        "~ #3 tools/call echo",
        "result/content/0/text: \"hi\" -> \"HI\"",
        "result/structuredContent/result: \"hi\" -> \"HI\"",
        "~ #4 tools/call add",
        "result/content/0/text: \"5\" -> \"Unknown tool: add\"",
        "result/isError: false -> true",
        "result/structuredContent: {\"result\":5} -> (absent)",
    ];
    assert_eq!(changes(&out), expected, "{out}");

    // An ignored path is not a difference.
    let (code, out, _) = verify(
        &tape,
        &["--ignore", "$.result.content[0].text", "--ignore", "$.result.structuredContent"],
        &drift(true),
    );
    assert_eq!(code, 1);
    assert!(!out.contains("~ #3"), "{out}");
}

#[test]
fn update_rerecords_the_golden_tape_and_junit_reports() {
    let tape = record(&drift(false), &session_2025(&drift_calls()));
    let golden = scratch_dir("verify-golden").join("golden.tape.jsonl");
    std::fs::copy(&tape, &golden).unwrap();
    let junit = golden.with_file_name("report.xml");
    let (code, out, _) = verify(&golden, &["--junit", junit.to_str().unwrap(), "--update"], &drift(true));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("re-recorded from the live server"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"4\" failures=\"3\""), "{xml}");
    assert!(
        xml.contains("<testcase classname=") && xml.contains("schema drift: tool &quot;add&quot; removed"),
        "{xml}"
    );
    let (code, out, err) = verify(&golden, &[], &drift(true));
    assert_eq!(code, 0, "the new golden tape: {out}{err}");
    let out = Command::new(bin()).args(["tape", "validate"]).arg(&golden).output().unwrap();
    assert!(out.status.success());

    // tape diff between the two recordings.
    let out = Command::new(bin()).args(["tape", "diff"]).arg(&tape).arg(&golden).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("schema drift: tool \"sum\" added"), "{text}");
    let out = Command::new(bin()).args(["tape", "diff"]).arg(&tape).arg(&tape).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn tapes_verify_servers_of_the_other_revision() {
    let d = deps();
    let modern = |only: bool| -> Vec<String> {
        let mut v = vec![
            "env".into(),
            format!("SHADOWCAT_NODE_MODULES={}", d.node_modules),
            d.node.clone(),
            fixture("modern-server.mjs"),
            "--stdio".into(),
        ];
        if only {
            v.push("--modern-only".into());
        }
        v
    };
    let simple = [("tools/call", json!({"name":"test_simple_text","arguments":{}}))];
    // A 2025-11-25 session, recorded from the dual-era server speaking 2025, verifies
    // the same server when it speaks only 2026-07-28.
    let tape = record(&modern(false), &session_2025(&simple));
    assert!(std::fs::read_to_string(&tape).unwrap().contains(r#""revisions":["2025-11-25"]"#));
    let (code, out, err) = verify(&tape, &["--era", "modern"], &modern(true));
    assert_eq!(code, 0, "{out}{err}");

    // A 2026-07-28 conversation verifies the demo server, which speaks only 2025.
    let meta =
        json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    let stateless = vec![
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":meta}}),
    ];
    let tape = record(&modern(false), &stateless);
    assert!(std::fs::read_to_string(&tape).unwrap().contains(r#""rev":"2026-07-28""#));
    let (code, out, err) = verify(&tape, &[], &[bin().to_owned(), "demo-server".to_owned()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_run_that_cannot_happen_exits_2() {
    let tape = record(&drift(false), &session_2025(&drift_calls()[..1]));
    let (code, _, err) = verify(&tape, &[], &["/no/such/server".to_owned()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("could not run"), "{err}");
    let out = Command::new(bin()).args(["tape", "verify", "/no/such.tape.jsonl", "--", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.tape.jsonl:0: cannot read"));
    let out =
        Command::new(bin()).args(["tape", "verify"]).arg(&tape).args(["--ignore", "$.[", "--", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JSONPath"));
}

#[test]
fn a_remote_server_is_verified_by_its_url() {
    let tape = record(&drift(false), &session_2025(&drift_calls()));
    let mut args: Vec<String> =
        vec!["forward".into(), "http".into(), "--listen".into(), "127.0.0.1:0".into(), "--".into()];
    args.extend(drift(true));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let remote = common::Gateway::start_args(&args);
    let out =
        Command::new(bin()).args(["tape", "verify"]).arg(&tape).args(["--upstream", &remote.mcp_url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("schema drift: tool \"sum\" added"), "{text}");
    let dead = Command::new(bin())
        .args(["tape", "verify"])
        .arg(&tape)
        .args(["--upstream", "http://127.0.0.1:9/mcp"])
        .output()
        .unwrap();
    assert_eq!(dead.status.code(), Some(2), "{}", String::from_utf8_lossy(&dead.stdout));
    assert!(String::from_utf8_lossy(&dead.stderr).contains("could not run"));
}
