//! Interception rules end to end: the official Python SDK client against the demo
//! server (and server-everything) through the gateway's HTTP front (2025 sessions and bridged stateless
//! 2026-07-28 calls) and through forward stdio, with the rule files of the README;
//! `intercept rules validate`; and bad rule files and stage options.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bin, deps, scratch_dir, Gateway, Http};
use http::Method;
use serde_json::{json, Value};

// The examples in config/rules, so that they cannot rot.
const BLOCK_SLOW_QUIET: &str = include_str!("../config/rules/block-slow-quiet.yaml");
const MOCK_ECHO: &str = include_str!("../config/rules/mock-echo.yaml");
const ANSWER_ELICITATION: &str = include_str!("../config/rules/answer-elicitation.yaml");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The client's calls: one JSON line per call (see `tests/clients/intercept_client.py`).
fn client(target: &[&str], mode: &str, calls: Value) -> Vec<Value> {
    client_outcome(target, mode, calls).unwrap_or_else(|e| panic!("client {target:?}: {e}"))
}

fn calls() -> Value {
    json!([["echo", {"message": "hi"}], ["add", {"a": 2, "b": 3}], ["log", {}]])
}

fn gateway_with(pipeline: &str) -> Gateway {
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: 127.0.0.1:0\npipeline:\n{pipeline}upstreams:\n  up:\n    stdio:\n      command: {}\n      args: [demo-server]\n",
        bin()
    );
    Gateway::start(&yaml)
}

async fn stage_status(gw: &Gateway) -> Value {
    let admin = gw.admin_url.clone().expect("admin listener");
    Http::new().send(Method::GET, &format!("{admin}/stages/intercept"), &[], None).await.json()
}

fn fired(status: &Value, id: &str) -> u64 {
    let rules = status["rules"].as_array().cloned().unwrap_or_default();
    rules.iter().find(|r| r["id"] == id).and_then(|r| r["fired"].as_u64()).unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn block_delay_and_drop_through_the_http_front_both_eras() {
    let dir = scratch_dir("intercept-http");
    let rules = write(&dir, "rules.yaml", BLOCK_SLOW_QUIET);
    // Without rules first: what the demo server does on its own.
    let mut plain = gateway_with("  - metrics\n");
    let before = client(&[&plain.mcp_url], "legacy", calls());
    assert_eq!(before[0]["text"], json!(["hi"]), "{before:?}");
    assert!(before[2]["logs"].as_u64().unwrap_or(0) >= 1, "the log tool logs: {before:?}");
    assert!(plain.stop().success());

    let pipeline = format!("  - metrics\n  - intercept: {{ rules: {} }}\n", rules.display());
    let mut gw = gateway_with(&pipeline);
    // A 2025 session, then stateless 2026-07-28 calls bridged to the 2025 demo server.
    for (mode, round) in [("legacy", 1), ("default", 2)] {
        let out = client(&[&gw.mcp_url], mode, calls());
        assert_eq!(out[0]["ok"], false, "{mode}: {out:?}");
        assert_eq!(out[0]["error"], json!({"code": -32050, "message": "blocked by rule block-echo"}), "{mode}");
        assert_eq!(out[1]["text"], json!(["5"]), "{mode}: the delayed call still answers: {out:?}");
        assert_eq!(out[2]["ok"], true, "{mode}: {out:?}");
        assert_eq!(out[2]["logs"], 0, "{mode}: the server's log messages were dropped: {out:?}");
        let status = stage_status(&gw).await;
        assert_eq!(fired(&status, "block-echo"), round, "{status}");
        assert_eq!(fired(&status, "slow-add"), round, "{status}");
        assert!(fired(&status, "no-logs") >= round, "{status}");
    }
    assert!(gw.stop().success());
}

#[test]
fn mock_through_forward_stdio_and_the_rules_flag() {
    let dir = scratch_dir("intercept-stdio");
    let rules = write(&dir, "mock.yaml", MOCK_ECHO);
    let rules = rules.to_str().unwrap();
    let target = [bin(), "forward", "stdio", "--rules", rules, "--", bin(), "demo-server"];
    let out = client(&target, "legacy", json!([["echo", {"message": "a \"quoted\" word"}], ["add", {"a": 1, "b": 1}]]));
    assert_eq!(out[0]["text"], json!(["mocked a \"quoted\" word"]), "{out:?}");
    assert_eq!(out[1]["text"], json!(["2"]), "other tools reach the server: {out:?}");
}

#[test]
fn a_server_request_answered_by_a_rule_through_both_fronts() {
    let dir = scratch_dir("intercept-elicit");
    let rules = write(&dir, "answer.yaml", ANSWER_ELICITATION);
    let rules = rules.to_str().unwrap();
    let elicit = json!([["elicit", {"message": "who?"}]]);
    let direct = client(&[bin(), "demo-server"], "legacy", elicit.clone());
    assert!(direct[0]["text"][0].as_str().unwrap_or("").starts_with("action=decline"), "{direct:?}");
    let forward =
        client(&[bin(), "forward", "stdio", "--rules", rules, "--", bin(), "demo-server"], "legacy", elicit.clone());
    assert_eq!(forward[0]["text"], json!([r#"action=accept, content={"name":"Rule"}"#]), "{forward:?}");
    let pipeline = format!("  - intercept: {{ rules: {rules} }}\n");
    let mut gw = gateway_with(&pipeline);
    let http = client(&[&gw.mcp_url], "legacy", elicit);
    assert_eq!(http[0]["text"], json!([r#"action=accept, content={"name":"Rule"}"#]), "{http:?}");
    assert!(gw.stop().success());
}

#[test]
fn the_rules_flag_on_the_gateway_and_forward_http() {
    let dir = scratch_dir("intercept-flag");
    let rules = write(&dir, "mock.yaml", MOCK_ECHO);
    let rules = rules.to_str().unwrap();
    let gateway = ["gateway", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    let forward = ["forward", "http", "--listen", "127.0.0.1:0"];
    for (command, mode, text) in [(&gateway[..], "legacy", "gw"), (&forward[..], "default", "fwd")] {
        let mut args = command.to_vec();
        args.extend_from_slice(&["--rules", rules, "--", bin(), "demo-server"]);
        let mut gw = Gateway::start_args(&args);
        let out = client(&[&gw.mcp_url], mode, json!([["echo", {"message": text}]]));
        assert_eq!(out[0]["text"], json!([format!("mocked {text}")]), "{command:?}: {out:?}");
        assert!(gw.stop().success());
    }
}

fn validate(path: &Path) -> (i32, String, String) {
    let out = Command::new(bin()).args(["intercept", "rules", "validate", path.to_str().unwrap()]).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn validate_names_file_line_rule_and_key() {
    let dir = scratch_dir("intercept-validate");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let (code, stdout, stderr) = validate(&path);
        assert_eq!(code, 0, "{}: {stdout}{stderr}", path.display());
        assert!(stdout.contains("ok (") && stderr.is_empty(), "{stdout}{stderr}");
        checked += 1;
    }
    assert!(checked >= 3, "{checked} examples");
    let cases = [
        ("malformed.yaml", "version: 1\nrules:\n  - id: a\n    action: [drop\n", ":4: rule \"a\": "),
        ("unknown-action.yaml", "version: 1\nrules:\n  - id: x\n    action: { explode: {} }\n", ":4: rule \"x\": "),
        (
            "bad-regex.yaml",
            "version: 1\nrules:\n  - id: r\n    match: { method: { regex: '([' } }\n    action: drop\n",
            ":3: rule \"r\": match.method: regex",
        ),
        (
            "bad-template.yaml",
            "version: 1\nrules:\n  - id: t\n    action: { mock: { result: { text: '{{#each}}' } } }\n",
            ":3: rule \"t\": action.mock.result: template",
        ),
        ("unknown-key.yaml", "version: 1\nrules:\n  - id: k\n    actoin: drop\n", "actoin"),
    ];
    for (name, text, expected) in cases {
        let path = write(&dir, name, text);
        let (code, stdout, stderr) = validate(&path);
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(stderr.contains(&format!("{}", path.display())) && stderr.contains(expected), "{name}: {stderr}");
    }
    let path = write(
        &dir,
        "never.yaml",
        "version: 1\nrules:\n  - id: n\n    match: { method: tools/list, tool: x }\n    action: drop\n  - id: r\n    match: { method: tools/call, jsonpath: '$.result.isError' }\n    action: drop\n  - id: ok\n    match: { direction: server_to_client, method: tools/call, jsonpath: '$.result.isError' }\n    action: drop\n",
    );
    let (code, _, stderr) = validate(&path);
    assert_eq!(code, 0, "a warning is not an error: {stderr}");
    assert!(stderr.contains("warning:") && stderr.contains("rule \"n\": match.tool: never matches"), "{stderr}");
    assert!(
        stderr.contains("rule \"r\": match.jsonpath: never matches"),
        "a response-only field on a request rule: {stderr}"
    );
    assert!(!stderr.contains("rule \"ok\""), "with a direction it matches the answers: {stderr}");
}

#[test]
fn bad_stage_options_and_rule_files_stop_the_start() {
    let dir = scratch_dir("intercept-bad");
    let bad = write(&dir, "bad.yaml", "version: 1\nrules:\n  - id: x\n    action: { explode: {} }\n");
    let check = |pipeline: &str| {
        let yaml = format!(
            "pipeline:\n{pipeline}upstreams:\n  up:\n    stdio:\n      command: {}\n      args: [demo-server]\n",
            bin()
        );
        let config = write(&dir, "config.yaml", &yaml);
        let out = Command::new(bin()).args(["config", "validate", config.to_str().unwrap()]).output().unwrap();
        assert!(!out.status.success(), "{pipeline}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check(&format!("  - intercept: {{ rules: {} }}\n", bad.display()));
    assert!(err.contains("intercept") && err.contains("bad.yaml:4") && err.contains("explode"), "{err}");
    let err = check(&format!("  - intercept: {{ rules: {}/missing.yaml }}\n", dir.display()));
    assert!(err.contains("missing.yaml: cannot read"), "{err}");
    let err = check("  - intercept\n");
    assert!(err.contains("needs a rule file"), "{err}");
    let err = check("  - intercept: { rulez: x.yaml }\n");
    assert!(err.contains("rulez"), "{err}");
    // The gateway itself refuses to start on the bad file, naming it.
    let out = Command::new(bin())
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--rules",
            bad.to_str().unwrap(),
            "--",
            bin(),
            "demo-server",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:4"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Polls the stage's status until its rule set's generation is `generation` (a
/// generous bound: the reload itself is measured in the README).
async fn wait_generation(gw: &Gateway, generation: u64) -> Value {
    for _ in 0..200 {
        let status = stage_status(gw).await;
        if status["generation"] == generation {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the rules did not reach generation {generation}: {}", stage_status(gw).await);
}

fn mock_text(text: &str) -> String {
    format!("version: 1\nrules:\n  - id: mock-echo\n    match: {{ method: tools/call, tool: echo }}\n    action: {{ mock: {{ result: {{ content: [ {{ type: text, text: \"{text}\" }} ] }} }} }}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn rule_files_reload_and_bad_changes_are_rejected() {
    let dir = scratch_dir("intercept-reload");
    let rules = write(&dir, "rules.yaml", &mock_text("first"));
    let mut gw = gateway_with(&format!("  - intercept: {{ rules: {} }}\n", rules.display()));
    let echo = || json!([["echo", {"message": "x"}]]);
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo())[0]["text"], json!(["first"]));

    // Written in place.
    std::fs::write(&rules, mock_text("second")).unwrap();
    wait_generation(&gw, 2).await;
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo())[0]["text"], json!(["second"]));

    // A bad change: rejected with file and line in the log, the old rules still enforced.
    std::fs::write(&rules, "version: 1\nrules:\n  - id: broken\n    action: { explode: {} }\n").unwrap();
    let needle = format!("{}:4: rule \\\"broken\\\"", rules.display());
    assert!(
        gw.wait_log("intercept rules rejected", std::time::Duration::from_secs(10)),
        "no rejection logged:\n{}",
        gw.log()
    );
    assert!(gw.log().contains(&needle) || gw.log().contains(&needle.replace("\\\"", "\"")), "{}", gw.log());
    assert_eq!(stage_status(&gw).await["generation"], 2);
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo())[0]["text"], json!(["second"]));

    // An editor's save: the file deleted, then written anew by rename.
    std::fs::remove_file(&rules).unwrap();
    let tmp = write(&dir, ".rules.yaml.swp", &mock_text("third"));
    std::fs::rename(&tmp, &rules).unwrap();
    wait_generation(&gw, 3).await;
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo())[0]["text"], json!(["third"]));

    // A Kubernetes ConfigMap: the file is a symlink into a data directory that is swapped.
    std::fs::create_dir(dir.join("v1")).unwrap();
    std::fs::write(dir.join("v1/rules.yaml"), mock_text("fourth")).unwrap();
    std::os::unix::fs::symlink(dir.join("v1"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_file(&rules).unwrap();
    std::os::unix::fs::symlink(dir.join("..data/rules.yaml"), &rules).unwrap();
    wait_generation(&gw, 4).await;
    std::fs::create_dir(dir.join("v2")).unwrap();
    std::fs::write(dir.join("v2/rules.yaml"), mock_text("fifth")).unwrap();
    std::os::unix::fs::symlink(dir.join("v2"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    wait_generation(&gw, 5).await;
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo())[0]["text"], json!(["fifth"]));
    assert!(gw.stop().success());
}

#[test]
fn probability_with_a_seed_fires_on_the_same_calls_in_two_runs() {
    let dir = scratch_dir("intercept-seed");
    let text = "version: 1\nseed: 11\nrules:\n  - id: flaky-echo\n    probability: 0.5\n    match: { method: tools/call, tool: echo, jsonpath: \"$.params[?@.message]\" }\n    action: { block: { message: flaky } }\n";
    let rules = write(&dir, "flaky.yaml", text);
    let calls: Vec<Value> = (0..20).map(|i| json!(["echo", {"message": format!("m{i}")}])).collect();
    let run = || {
        let mut gw = gateway_with(&format!("  - intercept: {{ rules: {} }}\n", rules.display()));
        let out = client(&[&gw.mcp_url], "legacy", Value::Array(calls.clone()));
        assert!(gw.stop().success());
        out.iter().map(|line| line["ok"] == false).collect::<Vec<bool>>()
    };
    let first = run();
    assert_eq!(first, run(), "the same seed blocks the same calls");
    let blocked = first.iter().filter(|b| **b).count();
    assert!(blocked > 0 && blocked < 20, "some blocked, some not: {first:?}");
}

/// `calls` with `rules` through the gateway's HTTP front (a 2025 session and bridged
/// 2026-07-28 calls) and through forward stdio; `expect` checks each run's lines.
fn through_every_front(rules: &str, calls: &Value, expect: impl Fn(&[Value], &str)) {
    let mut gw = gateway_with(&format!("  - intercept: {{ rules: {rules} }}\n"));
    for mode in ["legacy", "default"] {
        expect(&client(&[&gw.mcp_url], mode, calls.clone()), mode);
    }
    assert!(gw.stop().success());
    let forward = [bin(), "forward", "stdio", "--rules", rules, "--", bin(), "demo-server"];
    expect(&client(&forward, "legacy", calls.clone()), "stdio");
}

#[test]
fn modify_both_ways_through_the_http_front_and_forward_stdio() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules/modify.yaml");
    let calls = json!([["echo", {"message": "original"}], ["add", {"a": 2, "b": 2}]]);
    let expect = |out: &[Value], how: &str| {
        assert_eq!(out[0]["text"], json!(["rewritten"]), "{how}: the server saw the changed request: {out:?}");
        assert_eq!(out[1]["text"], json!(["sum=4"]), "{how}: the client saw the changed answer: {out:?}");
    };
    through_every_front(rules, &calls, expect);
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_through_the_http_front_and_forward_stdio() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules/faults.yaml");
    let mut gw = gateway_with(&format!("  - intercept: {{ rules: {rules} }}\n"));
    let mut c = common::McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (_, busy) = c.call("tools/call", json!({"name": "echo", "arguments": {"message": "x"}})).await;
    assert_eq!(busy.status, 429, "{}", busy.text());
    assert_eq!(busy.header("retry-after").as_deref(), Some("7"));
    assert!(busy.text().contains("fault injected by rule busy-echo"), "{}", busy.text());
    let (_, first) = c.call("tools/call", json!({"name": "add", "arguments": {"a": 1, "b": 1}})).await;
    assert_eq!(first.status, 200, "after: 1 lets the first through: {}", first.text());
    let (_, down) = c.call("tools/call", json!({"name": "add", "arguments": {"a": 1, "b": 1}})).await;
    assert_eq!(down.status, 502, "{}", down.text());
    assert!(down.text().contains("the adder is down"), "{}", down.text());
    let (_, slow) = c.call("tools/call", json!({"name": "slow", "arguments": {"steps": 1, "delay_ms": 1}})).await;
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert!(gw.stop().success());

    // Over stdio the same faults are JSON-RPC errors the SDK raises.
    let target = [bin(), "forward", "stdio", "--rules", rules, "--", bin(), "demo-server"];
    let out = client(
        &target,
        "legacy",
        json!([["echo", {"message": "x"}], ["add", {"a": 1, "b": 1}], ["add", {"a": 1, "b": 1}]]),
    );
    assert_eq!(out[0]["ok"], false, "{out:?}");
    assert!(out[0]["error"]["message"].as_str().unwrap_or("").contains("busy-echo"), "{out:?}");
    assert_eq!(out[1]["text"], json!(["2"]), "{out:?}");
    assert!(out[2]["error"]["message"].as_str().unwrap_or("").contains("the adder is down"), "{out:?}");
}

const PAUSE: &str = include_str!("../config/rules/pause.yaml");
const TOKEN: &str = "admin-T0KEN-5e2b";

/// A gateway over the demo server with `rules`, its admin listener holding `token`.
fn operated_gateway(rules: &Path, token: Option<&str>) -> Gateway {
    let token = token.map(|t| format!("  token: {t}\n")).unwrap_or_default();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: 127.0.0.1:0\n{token}pipeline:\n  - intercept: {{ rules: {} }}\nupstreams:\n  up:\n    stdio:\n      command: {}\n      args: [demo-server]\n",
        rules.display(),
        bin()
    );
    Gateway::start(&yaml)
}

fn admin_of(gw: &Gateway) -> String {
    gw.admin_url.clone().expect("admin listener")
}

/// `shadowcat intercept ARGS --admin URL`, with `token` in `SHADOWCAT_ADMIN_TOKEN`.
fn cli(admin: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("intercept").args(args).args(["--admin", admin]);
    match token {
        Some(t) => cmd.env("SHADOWCAT_ADMIN_TOKEN", t),
        None => cmd.env_remove("SHADOWCAT_ADMIN_TOKEN"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a paused message that no earlier step took; its JSON.
fn next_paused(admin: &str, after: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, out, err) = cli(admin, Some(TOKEN), &["paused", "--json"]);
        // A forward mode that is still starting is waited for.
        assert!(code == 0 || err.contains("cannot reach the admin listener"), "{err}");
        let list: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
        if let Some(p) = list.into_iter().find(|p| p["id"].as_u64().unwrap_or(0) > after) {
            return p;
        }
        assert!(std::time::Instant::now() < deadline, "no paused message after {after}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn paused_calls_are_resumed_edited_or_time_out_through_the_cli() {
    let dir = scratch_dir("intercept-pause");
    let rules = write(&dir, "pause.yaml", PAUSE);
    let mut gw = operated_gateway(&rules, Some(TOKEN));
    let url = gw.mcp_url.clone();
    let calls = json!([["echo", {"message": "one"}], ["echo", {"message": "two"}], ["add", {"a": 2, "b": 3}]]);
    let running = std::thread::spawn(move || client(&[&url], "legacy", calls));

    // Without the token (or with a wrong one) nothing is listed or resumed.
    let first = next_paused(&admin_of(&gw), 0);
    assert_eq!((first["rule"].clone(), first["method"].clone()), (json!("hold-echo"), json!("tools/call")), "{first}");
    let n = first["id"].to_string();
    for token in [None, Some("wrong")] {
        let (code, _, err) = cli(&admin_of(&gw), token, &["resume", &n]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("401") && err.contains("token"), "{err}");
        assert!(!err.contains(TOKEN));
    }
    let (code, table, _) = cli(&admin_of(&gw), Some(TOKEN), &["paused"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("ID") && table.contains("hold-echo"), "a table on a terminal: {table}");
    let (code, out, err) = cli(&admin_of(&gw), Some(TOKEN), &["resume", &n]);
    assert_eq!((code, out.trim()), (0, format!("{n}: resumed").as_str()), "{err}");
    let (code, _, err) = cli(&admin_of(&gw), Some(TOKEN), &["resume", &n]);
    assert_eq!(code, 1, "a message goes on once");
    assert!(err.contains("no paused message"), "{err}");

    // The second goes on edited; an edit that changes the id is refused first.
    let second = next_paused(&admin_of(&gw), first["id"].as_u64().unwrap());
    let n = second["id"].to_string();
    let mut edited = second["message"].clone();
    assert_eq!(edited["params"]["arguments"]["message"], "two", "{second}");
    edited["params"]["arguments"]["message"] = json!("edited by an operator");
    let mut wrong = edited.clone();
    wrong["id"] = json!("another");
    let wrong_file = write(&dir, "wrong.json", &wrong.to_string());
    let (code, _, err) = cli(&admin_of(&gw), Some(TOKEN), &["resume", &n, "--edit", wrong_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("same id"), "{err}");
    let garbage = write(&dir, "garbage.json", "{not json");
    let (code, _, err) = cli(&admin_of(&gw), Some(TOKEN), &["resume", &n, "--edit", garbage.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a JSON-RPC message"), "{err}");
    let file = write(&dir, "edited.json", &edited.to_string());
    let (code, _, err) = cli(&admin_of(&gw), Some(TOKEN), &["resume", &n, "--edit", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    // The third is left alone: its caller gets a clear error when the pause runs out.
    let out = running.join().unwrap();
    assert_eq!(out[0]["text"], json!(["one"]), "{out:?}");
    assert_eq!(out[1]["text"], json!(["edited by an operator"]), "it reached the server edited: {out:?}");
    assert_eq!(out[2]["ok"], false, "{out:?}");
    assert_eq!(out[2]["error"]["code"], intercept_code("PAUSE_TIMED_OUT"), "{out:?}");
    let message = out[2]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("hold-add-briefly") && message.contains("not resumed within 1s"), "{message}");
    assert!(gw.stop().success());
}

/// The codes the stage answers with (see docs/intercept.md).
fn intercept_code(name: &str) -> Value {
    match name {
        "DROPPED" => json!(-32052),
        "PAUSE_TIMED_OUT" => json!(-32053),
        _ => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_call_is_dropped_and_rules_are_switched_loaded_and_watched() {
    let dir = scratch_dir("intercept-operate");
    let rules = write(&dir, "rules.yaml", BLOCK_SLOW_QUIET);
    let mut gw = operated_gateway(&rules, Some(TOKEN));
    let echo = json!([["echo", {"message": "hi"}]]);

    let (code, table, err) = cli(&admin_of(&gw), Some(TOKEN), &["rules", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.starts_with("ID") && table.contains("block-echo") && table.contains("slow-add"), "{table}");
    let (code, out, _) = cli(&admin_of(&gw), Some(TOKEN), &["rules", "show", "block-echo", "--json"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((shown["action"].clone(), shown["enabled"].clone()), (json!("block"), json!(true)), "{shown}");
    let (code, _, err) = cli(&admin_of(&gw), Some(TOKEN), &["rules", "show", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("nope"), "{err}");

    // The live stream: one line per rule that acts.
    let admin = gw.admin_url.clone().unwrap();
    let mut watch = std::process::Command::new(bin())
        .args(["intercept", "watch", "--json", "--admin", &admin])
        .env("SHADOWCAT_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let watching = || async { stage_status(&gw).await["watchers"] == 1 };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !watching().await {
        assert!(std::time::Instant::now() < deadline, "the watcher never subscribed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = client(&[&gw.mcp_url], "legacy", echo.clone());
    assert_eq!(out[0]["error"]["code"], -32050, "{out:?}");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let seen: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (seen["rule"].clone(), seen["action"].clone(), seen["tool"].clone()),
        (json!("block-echo"), json!("block"), json!("echo")),
        "{seen}"
    );
    let _ = watch.kill();
    let _ = watch.wait();

    // Per rule metrics: matches, actions and the time they took.
    let metrics = common::Http::new().send(Method::GET, &format!("{admin}/metrics"), &[], None).await.text();
    for wanted in [
        "shadowcat_intercept_rule_matches_total{rule=\"block-echo\"} 1",
        "shadowcat_intercept_rule_actions_total{rule=\"block-echo\",action=\"block\"} 1",
        "shadowcat_intercept_rule_seconds_count{rule=\"block-echo\",action=\"block\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == wanted), "{wanted} in\n{metrics}");
    }

    // Disabled, the rule lets echo through; enabled again, it blocks.
    assert_eq!(cli(&admin_of(&gw), Some(TOKEN), &["rules", "disable", "block-echo"]).0, 0);
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo.clone())[0]["text"], json!(["hi"]));
    assert_eq!(cli(&admin_of(&gw), Some(TOKEN), &["rules", "enable", "block-echo"]).0, 0);
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo.clone())[0]["error"]["code"], -32050);

    // A bad file is refused whole, naming its line; the old rules stay.
    let bad = write(
        &dir,
        "bad.yaml",
        "version: 1\nrules:\n  - id: x\n    match: { method: \"[\" }\n    action: { explode: {} }\n",
    );
    let (code, _, err) = cli(&admin_of(&gw), Some(TOKEN), &["rules", "load", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("400") && err.contains("(loaded through the admin API):5:") && err.contains("explode"),
        "{err}"
    );
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo.clone())[0]["error"]["code"], -32050);
    // A good one is swapped in.
    let pause = write(&dir, "pause.yaml", PAUSE);
    let (code, out, err) = cli(&admin_of(&gw), Some(TOKEN), &["rules", "load", pause.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("loaded (2 rules"), "{out}");

    // A paused call dropped by the operator is answered with an error, not left
    // hanging (a stateless 2026-07-28 call, bridged to the 2025 demo server).
    let url = gw.mcp_url.clone();
    let running = std::thread::spawn(move || client(&[&url], "default", echo));
    let held = next_paused(&admin_of(&gw), 0);
    let (code, out, err) = cli(&admin_of(&gw), Some(TOKEN), &["drop", &held["id"].to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped"), "{out}");
    let out = running.join().unwrap();
    assert_eq!(out[0]["error"]["code"], intercept_code("DROPPED"), "{out:?}");
    assert!(gw.stop().success());
}

#[test]
fn without_an_admin_token_nothing_is_changed() {
    let dir = scratch_dir("intercept-no-token");
    let rules = write(&dir, "rules.yaml", BLOCK_SLOW_QUIET);
    let mut gw = operated_gateway(&rules, None);
    // Reads work (the listener is on loopback); changes are refused, with or without a token.
    let (code, out, err) = cli(&admin_of(&gw), None, &["rules", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["rules"].as_array().map(Vec::len), Some(3));
    for token in [None, Some("anything")] {
        let (code, _, err) = cli(&admin_of(&gw), token, &["rules", "disable", "block-echo"]);
        assert_eq!(code, 1);
        assert!(err.contains("403") && err.contains("admin.token is not set"), "{err}");
    }
    let echo = json!([["echo", {"message": "hi"}]]);
    assert_eq!(client(&[&gw.mcp_url], "legacy", echo)[0]["error"]["code"], -32050, "the rule is still on");
    // A token that cannot be read stops the start, naming the key (never a value).
    let config = write(
        &dir,
        "unset-token.yaml",
        &format!(
            "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: {{ env: SHADOWCAT_TEST_UNSET_TOKEN }}\nupstreams:\n  up:\n    stdio:\n      command: {}\n      args: [demo-server]\n",
            bin()
        ),
    );
    let out = Command::new(bin())
        .args(["gateway", "--config", config.to_str().unwrap()])
        .env_remove("SHADOWCAT_TEST_UNSET_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("admin.token") && err.contains("SHADOWCAT_TEST_UNSET_TOKEN is not set"), "{err}");

    // An admin listener nobody listens on: a clear error.
    let (code, _, err) = {
        let out =
            Command::new(bin()).args(["intercept", "rules", "list", "--admin", "http://127.0.0.1:9"]).output().unwrap();
        (out.status.code().unwrap_or(-1), (), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin listener"), "{err}");
    assert!(gw.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_match_the_clients_headers_and_session() {
    let dir = scratch_dir("intercept-headers");
    let rules = write(
        &dir,
        "rules.yaml",
        "version: 1\nrules:\n  - id: probe-header\n    match: { method: tools/call, tool: echo, headers: { x-probe: \"break-*\" } }\n    action: { block: { code: -32051, message: probed } }\n  - id: sessions-only\n    match: { method: tools/call, tool: add, session: { regex: \".\" } }\n    action: { block: { code: -32054, message: in a session } }\n",
    );
    let mut gw = gateway_with(&format!("  - intercept: {{ rules: {} }}\n", rules.display()));
    let mut c = common::McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let echo = |probe: Option<&str>| {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m"}}});
        let mut headers = c.headers();
        if let Some(p) = probe {
            headers.push(("x-probe", p.to_owned()));
        }
        (body, headers)
    };
    for (probe, blocked) in [(Some("break-1"), true), (Some("fine"), false), (None, false)] {
        let (body, headers) = echo(probe);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = c.http.send(Method::POST, &c.url, &headers, Some(&body.to_string())).await;
        let last = reply.messages().pop().unwrap_or(Value::Null);
        if blocked {
            assert_eq!(last["error"]["code"], -32051, "{probe:?}: {last}");
        } else {
            assert_eq!(last["result"]["content"][0]["text"], "m", "{probe:?}: {last}");
        }
    }
    // A 2025 client holds a session; stateless 2026-07-28 calls have none.
    let add = json!([["add", {"a": 2, "b": 3}]]);
    assert_eq!(client(&[&gw.mcp_url], "legacy", add.clone())[0]["error"]["code"], -32054);
    assert_eq!(client(&[&gw.mcp_url], "default", add)[0]["text"], json!(["5"]));
    assert!(gw.stop().success());
}

#[test]
fn a_tool_the_server_lacks_is_listed_and_answered_by_rules() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules/add-tool.yaml");
    let calls = json!([["__list_tools__", {}], ["weather", {"city": "Oslo"}], ["echo", {"message": "real"}]]);
    let expect = |out: &[Value], how: &str| {
        let tools = out[0]["tools"].as_array().cloned().unwrap_or_default();
        assert!(tools.contains(&json!("weather")) && tools.contains(&json!("echo")), "{how}: {out:?}");
        assert_eq!(out[1]["text"], json!(["sunny in Oslo"]), "{how}: {out:?}");
        assert_eq!(out[2]["text"], json!(["real"]), "{how}: the server's own tools still answer: {out:?}");
    };
    through_every_front(rules, &calls, expect);
}

#[test]
fn forward_stdio_is_operated_through_its_admin_listener() {
    let dir = scratch_dir("intercept-stdio-admin");
    let rules = write(&dir, "pause.yaml", PAUSE);
    // Its upstreams are replaced by the command.
    let yaml = format!("admin:\n  token: {TOKEN}\nupstreams:\n  replaced:\n    stdio:\n      command: unused\n");
    let config = write(&dir, "config.yaml", &yaml);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("127.0.0.1:{port}");
    let (rules, config) = (rules.to_str().unwrap().to_owned(), config.to_str().unwrap().to_owned());
    let forward = move || {
        let target = [
            bin(),
            "forward",
            "stdio",
            "--config",
            &config,
            "--admin",
            &admin,
            "--rules",
            &rules,
            "--",
            bin(),
            "demo-server",
        ];
        client(&target, "legacy", json!([["echo", {"message": "held in stdio"}]]))
    };
    let running = std::thread::spawn(forward);
    let admin = format!("http://127.0.0.1:{port}");
    let held = next_paused(&admin, 0);
    assert_eq!(held["message"]["params"]["arguments"]["message"], "held in stdio", "{held}");
    let (code, _, err) = cli(&admin, Some(TOKEN), &["resume", &held["id"].to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(running.join().unwrap()[0]["text"], json!(["held in stdio"]));
}

const WIRE_FAULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules/wire-faults.yaml");

fn tool_call(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn wire_faults_reach_the_http_clients_wire_and_a_cut_stream_resumes() {
    let mut gw = gateway_with(&format!("  - intercept: {{ rules: {WIRE_FAULTS} }}\n"));
    let mut c = common::McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let owned: Vec<(String, String)> = c.headers().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let (http, url) = (c.http.clone(), gw.mcp_url.clone());
    let post = |body: String| {
        let (http, url, owned) = (http.clone(), url.clone(), owned.clone());
        async move {
            let h: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            http.try_send(Method::POST, &url, &h, Some(&body)).await
        }
    };

    // malformed: half of the JSON answer, as JSON's content type says.
    let (garbled, _) = post(tool_call(10, "echo", json!({"message": "hi"}))).await.expect("an answer");
    assert_eq!((garbled.status, garbled.header("content-type").as_deref()), (200, Some("application/json")));
    assert!(serde_json::from_slice::<Value>(&garbled.body).is_err(), "not JSON: {}", garbled.text());
    assert!(garbled.text().starts_with('{') && garbled.text().contains("\"jsonrpc\":\"2.0\""), "{}", garbled.text());
    let (html, _) = post(tool_call(11, "test_simple_text", json!({}))).await.expect("an answer");
    assert_eq!(html.text(), "<html><body>502 Bad Gateway</body></html>");

    // reset: no answer at all; the session goes on.
    let cut = post(tool_call(12, "add", json!({"a": 1, "b": 2}))).await;
    assert!(cut.is_err(), "the connection is cut off: {cut:?}");
    let listed = c.request("tools/list", json!({})).await;
    assert!(listed["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{listed}");

    // reset on a message to the client: the stream is cut off at the answer, after
    // the log events; the answer is kept, and a GET with Last-Event-ID resumes it.
    let (id, status, _, mut stream) = c.open_post("tools/call", json!({"name": "test_tool_with_logging"})).await;
    assert_eq!(status, 200);
    let mut last = None;
    let mut logs = 0;
    while let Some(ev) = stream.next(Duration::from_secs(10)).await {
        last = ev.id.clone().or(last);
        let m = ev.json();
        assert!(m.as_ref().is_none_or(|m| m["method"] == "notifications/message"), "only logs before the cut: {m:?}");
        logs += usize::from(m.is_some());
    }
    assert!(stream.cut && logs == 3, "cut after the three log events (cut {}, {logs} logs)", stream.cut);
    let (status, mut resumed) = c.open_get(last.as_deref()).await;
    assert_eq!(status, 200);
    let answer = resumed.next_message(Duration::from_secs(10)).await.expect("the answer, resumed");
    assert_eq!(answer["id"], id, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "Tool with logging executed successfully");

    // malformed on a notification to the client: each progress event's data, then
    // the answer whole.
    let params = json!({"name": "test_tool_with_progress", "_meta": {"progressToken": "p1"}});
    let (_, reply) = c.call("tools/call", params).await;
    let events: Vec<_> = reply.events().into_iter().filter(|e| !e.data.is_empty()).collect();
    let garbled: Vec<_> = events.iter().filter(|e| e.json().is_none()).map(|e| e.data.as_str()).collect();
    assert_eq!(garbled, [r#"{"jsonrpc": "2.0", "method": "notifications/prog"#; 3], "{}", reply.text());
    assert!(events.last().and_then(|e| e.json()).is_some_and(|m| m["result"].is_object()), "{}", reply.text());

    // dribble: every message of log's answer in pieces, each whole when put together.
    let (drip, frames) = post(tool_call(14, "log", json!({}))).await.expect("an answer");
    let messages = drip.messages();
    assert_eq!(messages.len(), 5, "four logs and the answer: {}", drip.text());
    assert_eq!(messages[4]["result"]["content"][0]["text"], "sent 4 of 4 log messages");
    assert!(frames > 2 * messages.len(), "{frames} frames for {} messages", messages.len());

    let status = stage_status(&gw).await;
    for rule in ["garbled-echo", "html-for-text", "cut-add", "cut-after-logs", "drip-logs"] {
        assert_eq!(fired(&status, rule), 1, "{rule}: {status}");
    }
    assert_eq!(fired(&status, "garbled-progress"), 3, "{status}");
    assert!(gw.stop().success());
}

/// The Python SDK's calls, one client each, or how the client failed.
fn client_outcome(target: &[&str], mode: &str, calls: Value) -> Result<Vec<Value>, String> {
    let d = deps();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/intercept_client.py");
    let calls = calls.to_string();
    let mut args = vec![script, "--mode", mode, "--calls", &calls, "--"];
    args.extend_from_slice(target);
    let out = Command::new(&d.python).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    match lines.iter().find_map(|l| l["client_failed"].as_str()) {
        Some(failed) => Err(failed.to_owned()),
        None if out.status.success() => Ok(lines),
        None => Err(format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn the_python_sdk_meets_wire_faults_in_both_eras() {
    let mut gw = gateway_with(&format!("  - intercept: {{ rules: {WIRE_FAULTS} }}\n"));
    for mode in ["legacy", "default"] {
        let out = client_outcome(&[&gw.mcp_url], mode, json!([["echo", {"message": "hi"}], ["log", {}]])).unwrap();
        assert_eq!(out[0]["error"]["code"], -32700, "{mode}: the SDK cannot parse the answer: {out:?}");
        assert_eq!(out[1]["text"], json!(["sent 4 of 4 log messages"]), "{mode}: dribbled, whole: {out:?}");
        let cut = client_outcome(&[&gw.mcp_url], mode, json!([["add", {"a": 1, "b": 2}]]));
        assert!(cut.as_ref().is_err_and(|e| e.contains("disconnected")), "{mode}: {cut:?}");
    }
    assert!(gw.stop().success());
    let forward = [bin(), "forward", "stdio", "--rules", WIRE_FAULTS, "--", bin(), "demo-server"];
    let out = client_outcome(&forward, "legacy", json!([["log", {}], ["add", {"a": 1, "b": 2}]])).unwrap();
    assert_eq!(out[0]["text"], json!(["sent 4 of 4 log messages"]), "{out:?}");
    assert_eq!(out[1]["error"]["message"], "Connection closed", "stdout cut off: {out:?}");
}

/// Forward stdio over the demo server, spoken to line by line.
struct Forward {
    child: std::process::Child,
    lines: std::io::BufReader<std::process::ChildStdout>,
}

impl Forward {
    fn start(rules: &str) -> Forward {
        let mut child = Command::new(bin())
            .args(["forward", "stdio", "--rules", rules, "--", bin(), "demo-server"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap());
        Forward { child, lines }
    }

    fn say(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The next line, without its ending (`None` at the end of stdout).
    fn hear(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = String::new();
        (self.lines.read_line(&mut line).unwrap() > 0).then(|| line.trim_end().to_owned())
    }
}

#[test]
fn wire_faults_through_forward_stdio() {
    let mut fwd = Forward::start(WIRE_FAULTS);
    fwd.say(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#);
    assert!(fwd.hear().is_some_and(|l| l.contains("serverInfo")));
    fwd.say(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    fwd.say(&tool_call(2, "echo", json!({"message": "hi"})));
    let garbled = fwd.hear().unwrap();
    assert!(serde_json::from_str::<Value>(&garbled).is_err() && garbled.contains("\"id\":2"), "{garbled}");
    fwd.say(&tool_call(3, "test_simple_text", json!({})));
    assert_eq!(fwd.hear().as_deref(), Some("<html><body>502 Bad Gateway</body></html>"));
    fwd.say(&tool_call(4, "log", json!({})));
    // (The logs come on the session's stream, beside the call's answer.)
    let dribbled: Vec<Value> = (0..5).map(|_| serde_json::from_str(&fwd.hear().unwrap()).unwrap()).collect();
    let answer = dribbled.iter().find(|m| m["id"] == 4);
    assert_eq!(answer.map(|m| &m["result"]["content"][0]["text"]), Some(&json!("sent 4 of 4 log messages")));
    // reset: stdout ends, and so does forward mode, as if its server had crashed.
    fwd.say(&tool_call(5, "add", json!({"a": 1, "b": 2})));
    assert_eq!(fwd.hear(), None, "stdout is cut off");
    let status = fwd.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}");
}

#[test]
fn tapes_record_what_each_rule_changed_in_either_pipeline_order() {
    let dir = scratch_dir("intercept-tapes");
    let rules = write(
        &dir,
        "rules.yaml",
        &(include_str!("../config/rules/modify.yaml").to_owned()
            + "  - id: garble-text\n    match: { method: tools/call, tool: test_simple_text }\n    action: { fault: malformed }\n  - id: no-logs\n    match: { direction: server_to_client, method: notifications/message }\n    action: drop\n"),
    );
    let secret = "S3CRET-7f3a91";
    let record = |tapes: &Path| {
        format!("  - record:\n      dir: {}\n      redact: {{ patterns: [\"S3CRET-[0-9a-f]+\"] }}\n", tapes.display())
    };
    let intercept = format!("  - intercept: {{ rules: {} }}\n", rules.display());
    for (order, record_first) in [("record, intercept", true), ("intercept, record", false)] {
        let tapes = dir.join(if record_first { "outer" } else { "inner" });
        let pipeline = if record_first { record(&tapes) + &intercept } else { intercept.clone() + &record(&tapes) };
        let mut gw = gateway_with(&pipeline);
        let calls =
            json!([["echo", {"message": format!("original {secret}")}], ["add", {"a": 2, "b": 2}], ["log", {}]]);
        let out = client(&[&gw.mcp_url], "legacy", calls);
        assert_eq!(
            (out[0]["text"].clone(), out[1]["text"].clone()),
            (json!(["rewritten"]), json!(["sum=4"])),
            "{order}"
        );
        assert_eq!(out[2]["logs"], 0, "{order}: {out:?}");
        let garbled = client_outcome(&[&gw.mcp_url], "legacy", json!([["test_simple_text", {}]])).unwrap();
        assert_eq!(garbled[0]["error"]["code"], -32700, "{order}: {garbled:?}");
        assert!(gw.stop().success());

        let mut changes = Vec::new();
        for entry in std::fs::read_dir(&tapes).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if !path.to_string_lossy().ends_with(".tape.jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(secret), "{order}: the secret is in {}", path.display());
            let validated = Command::new(bin()).args(["tape", "validate"]).arg(&path).output().unwrap();
            assert!(validated.status.success(), "{order}: {}", String::from_utf8_lossy(&validated.stderr));
            let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let found: Vec<Value> = lines.iter().filter(|l| l["type"] == "change").cloned().collect();
            let trailer = lines.last().unwrap();
            assert_eq!(trailer["changes"], found.len(), "{order}: {trailer}");
            changes.extend(found);
        }
        let by = |rule: &str| -> Vec<&Value> { changes.iter().filter(|c| c["rule"] == rule).collect() };
        let echo = by("rewrite-echo");
        assert_eq!(echo.len(), 1, "{order}: {changes:?}");
        assert_eq!((echo[0]["action"].as_str(), echo[0]["dir"].as_str()), (Some("modify"), Some("c2s")));
        assert_eq!(echo[0]["before"]["params"]["arguments"]["message"], "original <redacted:1>", "{order}");
        assert_eq!(echo[0]["after"]["params"]["arguments"]["message"], "rewritten", "{order}");
        let sums = by("label-sums");
        assert_eq!(sums.len(), 1, "{order}: {changes:?}");
        assert_eq!(sums[0]["before"]["result"]["content"][0]["text"], "4", "{order}");
        assert_eq!(sums[0]["after"]["result"]["content"][0]["text"], "sum=4", "{order}");
        let logs = by("no-logs");
        assert_eq!(logs.len(), 4, "{order}: the four log messages, dropped: {changes:?}");
        assert!(logs.iter().all(|c| c["action"] == "drop" && c.get("after").is_none()), "{order}: {logs:?}");
        let garbled = by("garble-text");
        assert_eq!((garbled.len(), garbled[0]["wire"].as_str()), (1, Some("malformed")), "{order}: {changes:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_side_rules_act_on_the_bridges_pooled_sessions_only() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules/upstream-elicitation.yaml");
    let dir = scratch_dir("intercept-upstream-side");
    let tapes = dir.join("tapes");
    let mut gw =
        gateway_with(&format!("  - record: {{ dir: {} }}\n  - intercept: {{ rules: {rules} }}\n", tapes.display()));
    let calls = json!([["test_elicitation", {"message": "Who are you?"}], ["echo", {"message": "hi"}]]);
    // A 2026-07-28 client, bridged: the server's elicitation is answered by the rule
    // (the client would decline), and echo's request was changed on its way up.
    let bridged = client(&[&gw.mcp_url], "default", calls.clone());
    let answer = bridged[0]["text"][0].as_str().unwrap_or_default();
    assert!(answer.contains("action=accept") && answer.contains("ada@example.com"), "{bridged:?}");
    assert_eq!(bridged[1]["text"], json!(["bridged: hi"]), "{bridged:?}");
    // A 2025 client's own session: no rule of the upstream's wire touches it.
    let own = client(&[&gw.mcp_url], "legacy", calls);
    assert!(own[0]["text"][0].as_str().unwrap_or_default().contains("action=decline"), "{own:?}");
    assert_eq!(own[1]["text"], json!(["hi"]), "{own:?}");
    let status = stage_status(&gw).await;
    assert_eq!((fired(&status, "fill-in-the-form"), fired(&status, "tag-bridged-echo")), (1, 1), "{status}");
    assert!(gw.stop().success());
    // The upstream's tape holds what crossed that wire: the server's question and the
    // rule's answer to it.
    let upstream_lines: Vec<Value> = std::fs::read_dir(&tapes)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .filter(|t| t.lines().next().is_some_and(|h| h.contains(r#""side":"upstream""#)))
        .flat_map(|t| t.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect::<Vec<_>>())
        .collect();
    let asked = upstream_lines.iter().find(|l| l["msg"]["method"] == "elicitation/create").expect("the question");
    let id = &asked["msg"]["id"];
    let answered =
        upstream_lines.iter().find(|l| l["dir"] == "c2s" && l["msg"]["id"] == *id && l["msg"].get("result").is_some());
    assert_eq!(answered.map(|l| &l["msg"]["result"]["action"]), Some(&json!("accept")), "{upstream_lines:?}");
}

#[test]
fn actions_against_server_everything_through_every_front() {
    let d = deps();
    let dir = scratch_dir("intercept-everything");
    let rules = write(
        &dir,
        "rules.yaml",
        concat!(
            "version: 1\nrules:\n",
            "  - id: mock-echo\n    match: { method: tools/call, tool: echo }\n    action: { mock: { result: { content: [ { type: text, text: \"mocked {{request.params.arguments.message}}\" } ] } } }\n",
            "  - id: relabel-sum\n    match: { direction: server_to_client, method: tools/call, tool: get-sum }\n    action: { modify: { transform: { \"$.result.content[0].text\": { prefix: \"sum: \" } } } }\n",
            "  - id: no-env\n    match: { method: tools/call, tool: get-env }\n    action: { block: { code: -32050, message: no env here } }\n",
            "  - id: slow-annotated\n    match: { method: tools/call, tool: get-annotated-message }\n    action: { delay: { fixed: 100ms } }\n",
        ),
    );
    let rules = rules.to_str().unwrap();
    let calls = json!([["echo", {"message": "hi"}], ["get-sum", {"a": 2, "b": 3}], ["get-env", {}],
        ["get-annotated-message", {"messageType": "success"}]]);
    let expect = |out: &[Value], how: &str| {
        assert_eq!(out[0]["text"], json!(["mocked hi"]), "{how}: {out:?}");
        assert_eq!(out[1]["text"], json!(["sum: The sum of 2 and 3 is 5."]), "{how}: {out:?}");
        assert_eq!(out[2]["error"]["message"], "no env here", "{how}: {out:?}");
        assert_eq!(out[3]["ok"], true, "{how}: {out:?}");
    };
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\npipeline:\n  - intercept: {{ rules: {rules} }}\nupstreams:\n  everything:\n    stdio:\n      command: {}\n      args: ['{}', stdio]\n",
        d.node, d.everything_js
    );
    let mut gw = Gateway::start(&yaml);
    for mode in ["legacy", "default"] {
        expect(&client(&[&gw.mcp_url], mode, calls.clone()), mode);
    }
    assert!(gw.stop().success());
    let forward = [bin(), "forward", "stdio", "--rules", rules, "--", &d.node, &d.everything_js, "stdio"];
    expect(&client(&forward, "legacy", calls), "stdio");
}
