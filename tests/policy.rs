//! The `policy` and `rate_limit` stages end to end: the real binary in front of the
//! demo server behind `auth` (bearer JWTs signed here, the issuer's JWKS in a file),
//! a 2025-11-25 session client and a 2026-07-28 client through the bridge; hot
//! reload of the policy directory; 429s over HTTP and the retry delay on stdio; the
//! `shadowcat policy` commands; the example configuration.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::jwt::{key_pair, sign};
use common::modern::{all_caps, ModernClient};
use common::{scratch_dir, Gateway, Http, Reply};
use http::Method;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

const RESOURCE: &str = "http://localhost/mcp";
const ISSUER: &str = "https://issuer.test";

const POLICIES: &str = r#"
@id("list")
permit (principal, action == Shadowcat::Action::"list_tools", resource);

@id("eng-tools")
permit (principal, action == Shadowcat::Action::"call_tool", resource in Shadowcat::Upstream::"up")
when { principal.groups.contains("eng") };

@id("only-echo-and-add")
forbid (principal, action == Shadowcat::Action::"call_tool", resource)
unless { resource == Shadowcat::Tool::"echo" || resource == Shadowcat::Tool::"add" };

@id("no-drop")
forbid (principal, action == Shadowcat::Action::"call_tool", resource == Shadowcat::Tool::"echo")
when { context.arguments.message like "DROP*" };
"#;

/// A policy directory under `dir` holding `file` with `text`.
fn policy_dir(dir: &Path, file: &str, text: &str) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join(file), text).unwrap();
    policies
}

fn bearer(key: &EncodingKey, extra: Value) -> String {
    format!("Bearer {}", sign(key, "k1", ISSUER, RESOURCE, extra))
}

/// A gateway over the demo server with `auth`, then `stages`.
fn gateway(dir: &Path, jwks: &str, stages: &str) -> Gateway {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).unwrap();
    let yaml = format!(
        "{}pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {ISSUER}\n          jwks_file: {}\n{stages}",
        common::demo_config("", ""),
        path.display()
    );
    Gateway::start_logged(&yaml, "info,shadowcat::policy=debug")
}

async fn post(gw: &Gateway, authorization: &str, session: Option<&str>, body: Value) -> Reply {
    let mut h: Vec<(&str, &str)> = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("authorization", authorization),
    ];
    if let Some(s) = session {
        h.push(("mcp-session-id", s));
        h.push(("mcp-protocol-version", "2025-11-25"));
    }
    Http::new().send(Method::POST, &gw.mcp_url, &h, Some(&body.to_string())).await
}

/// Opens a 2025-11-25 session as `authorization`.
async fn open(gw: &Gateway, authorization: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "policy-test", "version": "0"}}});
    let r = post(gw, authorization, None, init).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("mcp-session-id").unwrap()
}

fn call(id: u64, tool: &str, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"message": message, "a": 1, "b": 2}}})
}

fn list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}})
}

fn names(result: &Value) -> Vec<String> {
    let mut n: Vec<String> =
        result["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    n.sort();
    n
}

async fn session_names(gw: &Gateway, who: &str, session: &str) -> Vec<String> {
    let r = post(gw, who, Some(session), list(2)).await;
    names(&r.messages()[0]["result"])
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_tools_are_invisible_in_both_eras_and_decisions_are_logged() {
    let dir = scratch_dir("policy-e2e");
    let policies = policy_dir(&dir, "tools.cedar", POLICIES);
    let (key, jwks) = key_pair("k1");
    let stages = format!("  - policy: {{ dir: {} }}\n", policies.display());
    let mut gw = gateway(&dir, &jwks, &stages);
    let alice = bearer(&key, json!({"groups": ["eng"]}));
    let bob = bearer(&key, json!({"sub": "bob", "groups": ["sales"]}));

    // The demo server has more tools; alice sees the two she may call.
    let session = open(&gw, &alice).await;
    assert_eq!(session_names(&gw, &alice, &session).await, ["add", "echo"]);
    let ok = post(&gw, &alice, Some(&session), call(3, "echo", "SELECT 1")).await;
    assert_eq!(ok.messages()[0]["result"]["content"][0]["text"], "SELECT 1", "{}", ok.text());
    // An argument-level forbid, and a tool she may not see: an unknown tool's error.
    let dropped = post(&gw, &alice, Some(&session), call(4, "echo", "DROP TABLE users")).await;
    assert_eq!(dropped.status, 200);
    let e = &dropped.messages()[0]["error"];
    assert_eq!((e["code"].as_i64(), e["message"].as_str()), (Some(-32602), Some("Unknown tool: echo")), "{e}");
    let hidden = post(&gw, &alice, Some(&session), call(5, "slow", "")).await;
    assert_eq!(hidden.messages()[0]["error"]["message"], "Unknown tool: slow");
    // The demo server's own answer to a tool it does not have is the same.
    let nothing = post(&gw, &alice, Some(&session), call(6, "no_such_tool", "")).await;
    let e = &nothing.messages()[0]["error"];
    assert_eq!((e["code"].as_i64(), e["message"].as_str()), (Some(-32602), Some("Unknown tool: no_such_tool")), "{e}");

    // Bob may list but call nothing: he sees no tools.
    let bobs = open(&gw, &bob).await;
    assert!(session_names(&gw, &bob, &bobs).await.is_empty());
    let refused = post(&gw, &bob, Some(&bobs), call(3, "echo", "hi")).await;
    assert_eq!(refused.messages()[0]["error"]["code"], -32602);

    // A 2026-07-28 client, through the bridge to the 2025 demo server.
    let mut modern = ModernClient::new(&gw.mcp_url);
    modern.authorization = Some(alice.clone());
    let (status, listed) = modern.call("tools/list", json!({}), &all_caps()).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(names(&listed["result"]), ["add", "echo"]);
    let (_, called) =
        modern.call("tools/call", json!({"name": "echo", "arguments": {"message": "DROP it"}}), &all_caps()).await;
    assert_eq!(called["error"]["message"], "Unknown tool: echo", "{called}");
    let (_, added) =
        modern.call("tools/call", json!({"name": "add", "arguments": {"a": 2, "b": 3}}), &all_caps()).await;
    assert!(added["result"]["content"][0]["text"].as_str().unwrap().contains('5'), "{added}");

    // Every decision is logged with the policies that made it.
    assert!(gw.wait_log("policies=[\"no-drop\"]", Duration::from_secs(5)), "{}", gw.log());
    let log = gw.log();
    assert!(log.contains("decision=\"allow\"") || log.contains("decision=allow"), "{log}");
    assert!(log.contains("policies=[\"list\"]") && log.contains("policy list filtered"), "{log}");
    assert!(!log.contains("Bearer ey"), "no token in the log");
    gw.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_is_reloaded_and_a_bad_file_keeps_the_old_policies() {
    let dir = scratch_dir("policy-reload");
    let policies = policy_dir(&dir, "tools.cedar", POLICIES);
    let (key, jwks) = key_pair("k1");
    // With `access_log` after it, an allowed call's decision is in the access line.
    let stages = format!("  - policy: {{ dir: {} }}\n  - access_log\n", policies.display());
    let mut gw = gateway(&dir, &jwks, &stages);
    let alice = bearer(&key, json!({"groups": ["eng"]}));
    let session = open(&gw, &alice).await;
    assert_eq!(session_names(&gw, &alice, &session).await, ["add", "echo"]);
    assert_eq!(post(&gw, &alice, Some(&session), call(9, "echo", "hi")).await.status, 200);
    assert!(gw.wait_log("allow by eng-tools", Duration::from_secs(5)), "{}", gw.log());
    let access = gw.log().lines().find(|l| l.contains("allow by eng-tools")).unwrap_or_default().to_owned();
    assert!(access.contains("shadowcat::access") && access.contains("tool=echo"), "{access}");

    // A second file forbids add: picked up without a restart.
    std::fs::write(
        policies.join("no-add.cedar"),
        "@id(\"no-add\")\nforbid (principal, action == Shadowcat::Action::\"call_tool\", resource == Shadowcat::Tool::\"add\");\n",
    )
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = session_names(&gw, &alice, &session).await;
        if seen == ["echo"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, ["echo"], "{}", gw.log());

    // A broken file: rejected with file and line, the policies in force stay.
    std::fs::write(policies.join("broken.cedar"), "permit (principal, action, resource)\nwhen { principal. };\n")
        .unwrap();
    assert!(gw.wait_log("policies rejected", Duration::from_secs(5)), "{}", gw.log());
    assert!(gw.log().contains("broken.cedar:2:"), "{}", gw.log());
    assert_eq!(session_names(&gw, &alice, &session).await, ["echo"]);
    gw.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_rate_429_with_retry_after_per_principal_and_tool() {
    let dir = scratch_dir("rate-e2e");
    let (key, jwks) = key_pair("k1");
    let stages =
        "  - rate_limit:\n      limits:\n        - { key: [principal, tool], rate: 1/h, burst: 2 }\n  - metrics\n";
    let mut gw = gateway(&dir, &jwks, stages);
    let alice = bearer(&key, json!({}));
    let bob = bearer(&key, json!({"sub": "bob"}));
    let session = open(&gw, &alice).await;
    for id in 3..5 {
        let r = post(&gw, &alice, Some(&session), call(id, "echo", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let limited = post(&gw, &alice, Some(&session), call(5, "echo", "hi")).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&retry), "{retry}");
    let body = limited.json();
    assert_eq!((body["id"].as_i64(), body["error"]["code"].as_i64()), (Some(5), Some(-32013)), "{body}");
    assert_eq!(body["error"]["data"]["limit"], "principal+tool");
    // Another tool, another principal, and other methods: not limited.
    assert_eq!(post(&gw, &alice, Some(&session), call(6, "add", "")).await.status, 200);
    assert_eq!(post(&gw, &alice, Some(&session), list(7)).await.status, 200);
    let bobs = open(&gw, &bob).await;
    assert_eq!(post(&gw, &bob, Some(&bobs), call(3, "echo", "hi")).await.status, 200);
    // Metrics per class, never per key.
    let metrics = Http::new().send(Method::GET, &format!("{}/metrics", gw.admin_url.clone().unwrap()), &[], None).await;
    let text = metrics.text();
    assert!(
        text.contains("shadowcat_rate_limit_requests_total{class=\"principal+tool\",outcome=\"limited\"} 1"),
        "{text}"
    );
    assert!(!text.contains("alice"), "no principal in metrics");
    gw.stop();
}

#[test]
fn on_stdio_the_error_carries_the_retry_delay() {
    let dir = scratch_dir("rate-stdio");
    let config = dir.join("c.yaml");
    std::fs::write(
        &config,
        "pipeline:\n  - rate_limit: { limits: [ { key: [method], rate: 1/m, burst: 1, methods: [tools/call] } ] }\nupstreams:\n  x:\n    stdio:\n      command: self\n",
    )
    .unwrap();
    let (mut child, mut stdin, mut stdout) = common::spawn_piped(&[
        "forward",
        "stdio",
        "--config",
        config.to_str().unwrap(),
        "--",
        common::bin(),
        "demo-server",
    ]);
    let mut exchange = |line: Value| -> Value {
        writeln!(stdin, "{line}").unwrap();
        let mut out = String::new();
        stdout.read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    assert_eq!(exchange(init)["id"], 1);
    assert!(exchange(call(2, "echo", "one"))["result"].is_object());
    let limited = exchange(call(3, "echo", "two"));
    assert_eq!(limited["error"]["code"], -32013, "{limited}");
    let ms = limited["error"]["data"]["retryAfterMs"].as_u64().unwrap();
    assert!((50_000..=60_000).contains(&ms), "{limited}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn shadowcat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn policy_validate_schema_and_check() {
    let dir = scratch_dir("policy-cli");
    let good = dir.join("good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(good.join("tools.cedar"), POLICIES).unwrap();
    let g = good.to_str().unwrap();

    let (code, out, _) = shadowcat(&["policy", "validate", g]);
    assert_eq!((code, out.contains("ok (4 policies)")), (0, true), "{out}");
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("typo.cedar"),
        "permit (principal, action, resource)\nwhen { principal.groupz.contains(\"x\") };\n",
    )
    .unwrap();
    let (code, _, err) = shadowcat(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("typo.cedar:2:") && err.contains("groupz") && err.contains("groups"), "{err}");

    // The example policies of config/ (config/policy.yaml names them).
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policies");
    let (code, out, err) = shadowcat(&["policy", "validate", examples]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.is_empty(), "the examples raise no warnings: {err}");

    let (code, schema, _) = shadowcat(&["policy", "schema"]);
    assert_eq!(code, 0);
    assert!(schema.contains("namespace Shadowcat") && schema.contains("action call_tool"), "{schema}");

    let check = |principal: &str, claims: &str, resource: &str, context: &str| {
        let mut args = vec!["policy", "check", "--dir", g, "--principal", principal, "--claims", claims];
        args.extend(["--action", "call_tool", "--resource", resource]);
        if !context.is_empty() {
            args.extend(["--context", context]);
        }
        shadowcat(&args)
    };
    let (code, out, _) =
        check("alice", r#"{"groups":["eng"]}"#, r#"Tool::"echo""#, r#"{"arguments":{"message":"hi"}}"#);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("allowed by eng-tools (tools.cedar:"), "{out}");
    let (code, out, _) = check(
        "Shadowcat::User::\"alice\"",
        r#"{"groups":["eng"]}"#,
        r#"Tool::"echo""#,
        r#"{"arguments":{"message":"DROP x"}}"#,
    );
    assert_eq!((code, out.starts_with("denied by no-drop")), (1, true), "{out}");
    let (code, out, _) = check("bob", "{}", r#"Tool::"echo""#, "");
    assert_eq!((code, out.contains("default deny")), (1, true), "{out}");
    let (code, _, err) = check("bob", "{}", "echo", "");
    assert_eq!((code, err.contains("Tool::")), (2, true), "{err}");
    let (code, _, err) = check("bob", "not json", r#"Tool::"echo""#, "");
    assert_eq!((code, err.contains("--claims")), (2, true), "{err}");
}

#[test]
fn bad_stage_options_are_refused_at_start() {
    let dir = scratch_dir("policy-bad");
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("x.cedar"), "\n\nforbid (principal, action, resource) when { 1 + };").unwrap();
    let cases = [
        (format!("  - policy: {{ dir: {} }}\n", broken.display()), "x.cedar:3:"),
        ("  - policy: { dir: /no/such/dir }\n".to_owned(), "/no/such/dir"),
        ("  - policy\n".to_owned(), "needs a directory"),
        ("  - rate_limit: { limits: [ { key: [principal], rate: fast } ] }\n".to_owned(), "rate \"fast\""),
        ("  - rate_limit: { limits: [ { key: [who], rate: 1/s } ] }\n".to_owned(), "unknown variant `who`"),
    ];
    for (stage, says) in cases {
        let path = dir.join("config.yaml");
        std::fs::write(&path, format!("{}pipeline:\n{stage}", common::demo_config("", ""))).unwrap();
        let (code, _, err) = shadowcat(&["config", "validate", path.to_str().unwrap()]);
        assert!(code == 1 && err.contains(says), "{stage}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_state_is_its_principals_and_every_round_is_decided() {
    let dir = scratch_dir("policy-mrtr");
    let text = r#"permit (principal, action == Shadowcat::Action::"call_tool", resource == Shadowcat::Tool::"test_input_required_result_elicitation");
@id("no-mallory-rounds")
forbid (principal == Shadowcat::User::"mallory", action, resource) when { context.arguments has late };"#;
    let policies = policy_dir(&dir, "p.cedar", text);
    let (key, jwks) = key_pair("k1");
    let mut gw = gateway(&dir, &jwks, &format!("  - policy: {{ dir: {} }}\n", policies.display()));
    let mut alice = ModernClient::new(&gw.mcp_url);
    alice.authorization = Some(bearer(&key, json!({})));
    let mut bob = ModernClient::new(&gw.mcp_url);
    bob.authorization = Some(bearer(&key, json!({"sub": "bob"})));

    let params = json!({"name": "test_input_required_result_elicitation", "arguments": {}});
    let (status, first) = alice.call("tools/call", params.clone(), &all_caps()).await;
    assert_eq!((status, first["result"]["resultType"].as_str()), (200, Some("input_required")), "{first}");
    let state = first["result"]["requestState"].clone();
    let mut retry = params.clone();
    retry["requestState"] = state;
    retry["inputResponses"] = json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});

    // Bob holds alice's state: it does not fit him.
    let (status, stolen) = bob.call("tools/call", retry.clone(), &all_caps()).await;
    assert_eq!((status, stolen["error"]["code"].as_i64()), (400, Some(-32602)), "{stolen}");
    // Alice's own retry completes the call.
    let (status, done) = alice.call("tools/call", retry.clone(), &all_caps()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "Hello, Ada!", "{done}");

    // A later round is decided again: mallory's first round passes, her retry with
    // an argument the forbid names is refused.
    let mut mallory = ModernClient::new(&gw.mcp_url);
    mallory.authorization = Some(bearer(&key, json!({"sub": "mallory"})));
    let (_, first) = mallory.call("tools/call", params.clone(), &all_caps()).await;
    let mut late = params.clone();
    late["arguments"] = json!({"late": true});
    late["requestState"] = first["result"]["requestState"].clone();
    late["inputResponses"] = json!({"user_name": {"action": "accept", "content": {"name": "M"}}});
    let (_, refused) = mallory.call("tools/call", late, &all_caps()).await;
    assert_eq!(refused["error"]["message"], "Unknown tool: test_input_required_result_elicitation", "{refused}");
    gw.stop();
}

/// Two principals' stateless calls through the bridge: pooled upstream sessions of
/// their own, unless the configuration shares them.
async fn pooled_sessions_opened(share: bool) -> usize {
    let dir = scratch_dir("pool-owner");
    let (key, jwks) = key_pair("k1");
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).unwrap();
    let bridge = if share { "bridge:\n  share_pool_across_principals: true\n" } else { "" };
    let yaml = format!(
        "{}{bridge}pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {ISSUER}\n          jwks_file: {}\n",
        common::demo_config("", ""),
        path.display()
    );
    let mut gw = Gateway::start(&yaml);
    for who in ["alice", "bob", "alice", "bob"] {
        let mut c = ModernClient::new(&gw.mcp_url);
        c.authorization = Some(bearer(&key, json!({"sub": who})));
        let (status, r) =
            c.call("tools/call", json!({"name": "echo", "arguments": {"message": who}}), &all_caps()).await;
        assert_eq!((status, r["result"]["content"][0]["text"].as_str()), (200, Some(who)), "{r}");
    }
    gw.stop();
    let log = gw.log();
    log.lines().filter(|l| l.contains("pooled upstream session opened") && l.contains("elicitation")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn pooled_upstream_sessions_are_per_principal_unless_shared() {
    assert_eq!(pooled_sessions_opened(false).await, 2, "one for alice, one for bob");
    assert_eq!(pooled_sessions_opened(true).await, 1, "shared when configured");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limits_file_is_reloaded_and_a_bad_one_keeps_the_old_limits() {
    let dir = scratch_dir("rate-file");
    let limits = dir.join("limits").join("limits.yaml");
    std::fs::create_dir_all(limits.parent().unwrap()).unwrap();
    std::fs::write(&limits, "limits:\n  - { key: [principal, tool], rate: 1/h, burst: 1 }\n").unwrap();
    let (key, jwks) = key_pair("k1");
    let mut gw = gateway(&dir, &jwks, &format!("  - rate_limit: {{ file: {} }}\n", limits.display()));
    let alice = bearer(&key, json!({}));
    let session = open(&gw, &alice).await;
    assert_eq!(post(&gw, &alice, Some(&session), call(3, "echo", "1")).await.status, 200);
    assert_eq!(post(&gw, &alice, Some(&session), call(4, "echo", "2")).await.status, 429);

    // A wider limit: picked up without a restart.
    std::fs::write(&limits, "limits:\n  - { key: [principal, tool], rate: 1000/s }\n").unwrap();
    let mut status = 0;
    for id in 5..105 {
        status = post(&gw, &alice, Some(&session), call(id, "echo", "3")).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "{}", gw.log());

    // A broken file: rejected with file and line; the limits in force stay.
    std::fs::write(&limits, "limits:\n  - { key: [principal], rate: 1000/s }\n  - { key: [tool], rate: sometimes }\n")
        .unwrap();
    assert!(gw.wait_log("rate limits rejected", Duration::from_secs(5)), "{}", gw.log());
    assert!(gw.log().contains("limits.yaml:3: limits[1]: rate"), "{}", gw.log());
    assert_eq!(post(&gw, &alice, Some(&session), call(200, "echo", "4")).await.status, 200);
    gw.stop();
}
