//! The admin listener, the metrics and access-log stages, and the command line.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{bin, demo_config, Gateway, Http, McpClient};
use http::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_and_bounded_metric_labels() {
    let gw = Gateway::start(&demo_config("", ""));
    let admin = gw.admin_url.clone().expect("admin listener");
    let http = Http::new();
    let health = http.send(Method::GET, &format!("{admin}/healthz"), &[], None).await;
    assert_eq!(health.status, 200);
    let mut ready = false;
    for _ in 0..100 {
        if http.send(Method::GET, &format!("{admin}/readyz"), &[], None).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz turns 200 once the upstream has started");

    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    // Before tools/list, a tool name is not a known label.
    c.request("tools/call", json!({"name": "echo", "arguments": {"message": "a"}})).await;
    c.request("tools/list", json!({})).await;
    c.request("tools/call", json!({"name": "echo", "arguments": {"message": "b"}})).await;
    // A name the upstream never listed, and a method outside the MCP list.
    c.request("tools/call", json!({"name": "no-such-tool-xyz", "arguments": {}})).await;
    c.request("evil/method-name", json!({})).await;

    let metrics = http.send(Method::GET, &format!("{admin}/metrics"), &[], None).await.text();
    let line = |needle: &[&str]| {
        metrics
            .lines()
            .filter(|l| l.starts_with("shadowcat_requests_total{") && needle.iter().all(|n| l.contains(n)))
            .map(|l| l.rsplit(' ').next().unwrap_or("0").parse::<f64>().unwrap_or(0.0))
            .sum::<f64>()
    };
    assert_eq!(line(&["method=\"tools/call\"", "tool=\"echo\"", "status=\"ok\""]), 1.0, "{metrics}");
    assert_eq!(line(&["method=\"tools/call\"", "tool=\"other\""]), 2.0, "{metrics}");
    assert_eq!(line(&["method=\"other\""]), 1.0, "{metrics}");
    assert!(!metrics.contains("no-such-tool-xyz") && !metrics.contains("evil/method-name"), "{metrics}");
    assert!(metrics.contains("shadowcat_request_duration_seconds_bucket{"), "{metrics}");
    assert!(metrics.contains("upstream=\"up\""), "{metrics}");

    // access_log: one event per request with session, method, tool, status, duration.
    let session = c.session.clone().expect("session");
    assert!(gw.wait_log("tool=echo", Duration::from_secs(5)), "{}", gw.log());
    let log = gw.log();
    let echo_line = log
        .lines()
        .find(|l| l.contains("shadowcat::access") && l.contains("tool=echo"))
        .unwrap_or_else(|| panic!("no access line for echo:\n{log}"));
    // The session's log tag (the first 8 hex digits of its id's SHA-256), never its id.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session.as_bytes());
    let tag: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!log.contains(&session), "the session id is never logged:\n{log}");
    for field in [format!("session={tag}"), "method=tools/call".into(), "status=ok".into(), "duration_ms=".into()] {
        assert!(echo_line.contains(&field), "{field} missing from {echo_line}");
    }

    // A client's control characters cannot forge log lines or reach a terminal: they
    // are escaped wherever they land in a line.
    let forged = "x\n2026-01-01T00:00:00.000000Z  INFO shadowcat::access: request forged=yes\u{1b}[31m";
    c.request("tools/call", json!({"name": forged, "arguments": {}})).await;
    assert!(gw.wait_log("forged=yes", Duration::from_secs(5)), "{}", gw.log());
    let log = gw.log();
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01T")), "a forged line:\n{log}");
    assert!(!log.contains('\u{1b}'), "an escape character reached the log:\n{log}");
    let escaped = log.lines().find(|l| l.contains("forged=yes")).expect("the line");
    assert!(escaped.contains("tool=x\\n2026-01-01T") && escaped.contains("\\u{1b}[31m"), "{escaped}");
    assert_eq!(http.send(Method::GET, &format!("{admin}/nope"), &[], None).await.status, 404);
}

#[test]
fn config_validate_and_default() {
    let out = Command::new(bin()).args(["config", "default"]).output().expect("run");
    assert!(out.status.success());
    let default = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(default.contains("demo-server") && default.contains("127.0.0.1:8080"), "{default}");

    let dir = common::scratch_dir("validate");
    let good = dir.join("good.yaml");
    std::fs::write(&good, &default).expect("write");
    let out = Command::new(bin()).args(["config", "validate", good.to_str().expect("utf8")]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "server:\n  listen: 127.0.0.1:1\n  max_bdy_bytes: 10\nupstreams: {a: {stdio: {command: x}}}\n",
    )
    .expect("write");
    let out = Command::new(bin()).args(["config", "validate", bad.to_str().expect("utf8")]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("max_bdy_bytes") && err.contains('3'), "file, key, line: {err}");

    // The pipeline is checked as the gateway builds it: names, order, options.
    for (pipeline, expect) in
        [("[metrics, nope]", "unknown stage \"nope\""), ("[{access_log: {levle: info}}]", "levle")]
    {
        let file = dir.join("bad-stage.yaml");
        std::fs::write(&file, format!("pipeline: {pipeline}\nupstreams: {{a: {{stdio: {{command: x}}}}}}\n"))
            .expect("write");
        let out = Command::new(bin()).args(["config", "validate"]).arg(&file).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{pipeline}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad-stage.yaml") && err.contains("pipeline[") && err.contains(expect), "{err}");
    }

    // Every example in config/ passes, pipeline included.
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = Command::new(bin()).args(["config", "validate"]).arg(&path).output().expect("run");
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} examples");

    let missing = Command::new(bin()).args(["config", "validate", "/no/such/file.yaml"]).output().expect("run");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/file.yaml"));
}

#[test]
fn refuses_non_loopback_unless_configured() {
    let out =
        Command::new(bin()).args(["gateway", "--listen", "0.0.0.0:0", "--admin", "127.0.0.1:0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_non_loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_and_command_line_upstream() {
    // No file: the embedded default (the demo server), on the ports given.
    let gw = Gateway::start_args(&["gateway", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    let mut c = McpClient::new(&gw.mcp_url);
    let init = c.initialize("2025-11-25").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "shadowcat-demo");

    // `reverse` is an alias; `-- COMMAND` replaces the upstreams.
    let gw = Gateway::start_args(&[
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--",
        bin(),
        "demo-server",
    ]);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let r = c.request("tools/call", json!({"name": "add", "arguments": {"a": 2, "b": 3}})).await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 5);
    assert!(gw.wait_log("upstream=cli", Duration::from_secs(5)), "the command-line upstream is named cli");
}

#[test]
fn a_command_that_cannot_start_is_reported() {
    let yaml = "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  broken:\n    stdio:\n      command: /no/such/program\n";
    let gw = Gateway::start(yaml);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let admin = gw.admin_url.clone().expect("admin");
        let ready = Http::new().send(Method::GET, &format!("{admin}/readyz"), &[], None).await;
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(ready.text().contains("broken"));
        let mut c = McpClient::new(&gw.mcp_url);
        let r = c
            .post_raw(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#)
            .await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.error_code(), -32003);
        // The command line goes to the log, never to the client (it may hold secrets).
        assert!(!r.text().contains("/no/such/program"), "{}", r.text());
        assert!(r.text().contains("cannot start its command"), "{}", r.text());
        assert!(gw.log().contains("/no/such/program"), "{}", gw.log());
        c.session = None;
    });
}

#[test]
fn a_state_key_that_cannot_be_read_stops_the_gateway_at_start() {
    let dir = common::scratch_dir("state-key");
    let file = dir.join("gw.yaml");
    let yaml = "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: null\nupstreams:\n  demo:\n    stdio:\n      command: self\n      args: [demo-server]\nbridge:\n  state_key: { env: SHADOWCAT_TEST_NO_SUCH_VARIABLE }\n";
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(bin())
        .args(["gateway", "-c", file.to_str().expect("utf8")])
        .env_remove("SHADOWCAT_TEST_NO_SUCH_VARIABLE")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bridge.state_key") && err.contains("SHADOWCAT_TEST_NO_SUCH_VARIABLE"), "{err}");
}
