//! stdio upstreams through the real binary: process per session, warm pool, bounds,
//! failures (crash, stall, garbage, oversized lines), process-group cleanup, env.

mod common;

use std::time::Duration;

use common::{children_of, demo_config, deps, fixture, group_members, wait_until, Gateway, McpClient};
use serde_json::json;

fn fake_config(mode: &str, extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  fake:\n    stdio:\n      command: python3\n      args: ['{}', '{mode}']\n{extra}",
        fixture("fake_upstream.py")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_per_session_and_delete_stops_the_whole_group() {
    // The upstream starts a grandchild in its process group, then becomes the demo server.
    let script = format!("sleep 300 & exec {} demo-server", common::bin());
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  up:\n    stdio:\n      command: sh\n      args: ['-c', '{script}']\n      kill_grace: 500ms\n"
    );
    let gw = Gateway::start(&yaml);
    let before = children_of(gw.pid()).len();
    let mut a = McpClient::new(&gw.mcp_url);
    a.initialize("2025-11-25").await;
    let mut b = McpClient::new(&gw.mcp_url);
    b.initialize("2025-11-25").await;
    assert!(wait_until(Duration::from_secs(5), || children_of(gw.pid()).len() == before + 2), "a process per session");
    let kids = children_of(gw.pid());
    let groups: Vec<Vec<i32>> = kids.iter().map(|pid| group_members(*pid)).collect();
    assert!(groups.iter().all(|g| g.len() >= 2), "each child has its sleep grandchild: {groups:?}");

    assert_eq!(a.delete().await.status, 200);
    assert!(wait_until(Duration::from_secs(5), || children_of(gw.pid()).len() == before + 1));
    let alive = |pid: &i32| common::processes().iter().any(|(p, _, _)| p == pid);
    let (live, dead): (Vec<_>, Vec<_>) = groups.iter().partition(|g| g.iter().any(alive));
    assert_eq!((live.len(), dead.len()), (1, 1), "b's group lives on, a's is gone: {groups:?}");
    assert!(wait_until(Duration::from_secs(5), || !dead[0].iter().any(alive)), "no member of a's group survives");
    assert_eq!(
        b.request("tools/call", json!({"name": "echo", "arguments": {"message": "still here"}})).await["result"]
            ["content"][0]["text"],
        "still here"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_pool_is_prespawned_and_refilled() {
    let gw = Gateway::start(&demo_config("", "      warm: 2\n"));
    assert!(wait_until(Duration::from_secs(10), || children_of(gw.pid()).len() == 2), "two warm processes");
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    assert!(wait_until(Duration::from_secs(10), || children_of(gw.pid()).len() == 3), "one in use, two warm again");
}

#[tokio::test(flavor = "multi_thread")]
async fn bounds_answer_503() {
    let gw = Gateway::start(&demo_config("", "      max_sessions: 1\n      max_in_flight: 1\n"));
    let mut a = McpClient::new(&gw.mcp_url);
    a.initialize("2025-11-25").await;
    let mut b = McpClient::new(&gw.mcp_url);
    b.version = "2025-11-25".into();
    let r = b.post_raw(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), -32000);
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("max_sessions"), "{}", r.text());

    let (_, status, _, _slow) = a
        .open_post(
            "tools/call",
            json!({"name": "slow", "arguments": {"steps": 50, "delay_ms": 100}, "_meta": {"progressToken": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, r) = a.call("ping", json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("max_in_flight"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_process_fails_its_requests_then_404() {
    let gw = Gateway::start(&fake_config("crash", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let r = c.request("tools/call", json!({"name": "work", "arguments": {}})).await;
    let msg = r["error"]["message"].as_str().unwrap_or("").to_owned();
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(msg.contains("exited") || msg.contains("closed its stdout"), "{msg}");
    let (_, later) = c.call("ping", json!({})).await;
    assert_eq!(later.status, 404, "{}", later.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_times_out_and_is_cancelled_upstream() {
    let dir = common::scratch_dir("cancel");
    let log = dir.join("cancelled.log");
    let extra = format!(
        "      request_timeout: 300ms\n      max_request_timeout: 1s\n      env:\n        FAKE_LOG: '{}'\n",
        log.display()
    );
    let gw = Gateway::start(&fake_config("cancel-log", &extra));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let r = c.request("tools/call", json!({"name": "work", "arguments": {}})).await;
    assert_eq!(r["error"]["code"], -32004, "{r}");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("requestId"))),
        "upstream got notifications/cancelled"
    );
    // The session goes on.
    assert_eq!(c.request("ping", json!({})).await["result"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_lines_are_logged_and_skipped() {
    let gw = Gateway::start(&fake_config("garbage", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let r = c.request("tools/call", json!({"name": "work", "arguments": {}})).await;
    assert_eq!(r["result"]["content"][0]["text"], "worked");
    assert!(gw.wait_log("not a JSON-RPC message", Duration::from_secs(5)), "{}", gw.log());
    assert!(gw.log().contains("this line is not JSON"), "the log shows the line");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_line_fails_its_request_clearly() {
    let gw = Gateway::start(&fake_config("oversized", "      max_message_bytes: 1048576\n"));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let r = c.request("tools/call", json!({"name": "work", "arguments": {}})).await;
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or("").contains("max_message_bytes"), "{r}");
    assert_eq!(c.request("ping", json!({})).await["result"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_is_logged_with_the_session_and_early_notifications_are_tolerated() {
    let gw = Gateway::start(&fake_config("stderr", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let session = c.session.clone().expect("session");
    assert!(gw.wait_log("fake-stderr initialize", Duration::from_secs(5)), "{}", gw.log());
    let line = gw.log().lines().find(|l| l.contains("fake-stderr initialize")).map(str::to_owned).unwrap_or_default();
    // Tagged with the session's log tag (the first 8 hex digits of the id's SHA-256),
    // never the id: it is a bearer credential.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session.as_bytes());
    let tag: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert!(line.contains(&format!("session={tag}")), "stderr line tagged with the session: {line}");
    assert!(!gw.log().contains(&session), "the session id is never logged: {line}");

    let gw = Gateway::start(&fake_config("early-notify", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    let init = c.initialize("2025-06-18").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "fake-early-notify");
    // The early notification waits for the next stream.
    let (_, mut get) = c.open_get(None).await;
    let m = get.next_message(Duration::from_secs(5)).await.expect("backlog delivered");
    assert_eq!(m["method"], "notifications/tools/list_changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn children_get_only_the_configured_environment() {
    let d = deps();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  everything:\n    stdio:\n      command: {}\n      args: ['{}', stdio]\n      env:\n        SHADOWCAT_GIVEN: given-value\n",
        d.node, d.everything_js
    );
    // The gateway's own environment holds a secret that must not reach the child.
    let dir = common::scratch_dir("env");
    let path = dir.join("c.yaml");
    std::fs::write(&path, yaml).expect("write");
    let mut child = std::process::Command::new(common::bin())
        .args(["gateway", "--config", path.to_str().expect("utf8")])
        .env("SHADOWCAT_SECRET_TOKEN", "do-not-leak")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let url = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let line = lines.find_map(|l| l.ok().filter(|l| l.starts_with("shadowcat listening:"))).expect("listening");
        std::thread::spawn(move || for _ in lines {});
        line.split_whitespace().find_map(|p| p.strip_prefix("mcp=")).expect("url").replace("127.0.0.1", "localhost")
    };
    let mut c = McpClient::new(&url);
    c.initialize("2025-06-18").await;
    let r = c.request("tools/call", json!({"name": "get-env", "arguments": {}})).await;
    let text = r["result"]["content"][0]["text"].as_str().unwrap_or("").to_owned();
    common::signal(child.id() as i32, "TERM");
    let _ = child.wait();
    assert!(text.contains("given-value"), "configured env reaches the child: {text}");
    assert!(text.contains("PATH"), "PATH is inherited: {text}");
    assert!(!text.contains("do-not-leak"), "the gateway's secrets do not: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_expire_and_free_their_process() {
    let gw = Gateway::start(&demo_config("  session_idle_timeout: 500ms\n", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    assert!(wait_until(Duration::from_secs(5), || children_of(gw.pid()).len() == 1));
    assert!(wait_until(Duration::from_secs(10), || children_of(gw.pid()).is_empty()), "process freed on expiry");
    let (_, r) = c.call("ping", json!({})).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_closes_streams_and_stops_children() {
    let mut gw = Gateway::start(&demo_config("", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (_, mut get) = c.open_get(None).await;
    let (id, _, _, mut post) = c
        .open_post(
            "tools/call",
            json!({"name": "slow", "arguments": {"steps": 4, "delay_ms": 250}, "_meta": {"progressToken": 2}}),
        )
        .await;
    let kids = children_of(gw.pid());
    assert!(!kids.is_empty());
    let pid = gw.pid();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        common::signal(pid, "TERM");
    });
    let mut done = false;
    while let Some(m) = post.next_message(Duration::from_secs(10)).await {
        if m["id"] == id {
            done = m["result"]["content"][0]["text"] == "done after 4 steps";
            break;
        }
    }
    assert!(done, "the in-flight call finished after SIGTERM");
    // The GET stream was closed (after a retry hint for 2025-11-25).
    let mut closed = false;
    for _ in 0..5 {
        if get.next(Duration::from_secs(5)).await.is_none() {
            closed = get.ended;
            break;
        }
    }
    assert!(closed, "GET stream closed on shutdown");
    stopper.join().expect("stopper");
    let status = gw.stop();
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
    assert!(kids.iter().all(|k| !common::processes().iter().any(|(p, _, _)| p == k)), "children stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_a_pooled_session_sends_outside_any_call_are_answered_by_the_gateway() {
    let dir = common::scratch_dir("asks-outside");
    let log = dir.join("answers.log");
    // Pinned legacy: the fake would not answer the era probe.
    let extra = format!("      era: legacy\n      env:\n        FAKE_LOG: '{}'\n", log.display());
    let gw = Gateway::start(&fake_config("asks-outside", &extra));
    let client = common::modern::ModernClient::new(&gw.mcp_url);
    let (status, r) = client.call("tools/list", json!({}), &json!({"roots": {}})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["tools"][0]["name"], "work", "{r}");
    let answered = |t: &str| t.contains("srv-ping") && t.contains("srv-roots");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log).is_ok_and(|t| answered(&t))),
        "the fake got answers: {:?}",
        std::fs::read_to_string(&log)
    );
    let answers: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let by_id = |id: &str| answers.iter().find(|a| a["id"] == id).cloned().unwrap_or_default();
    assert_eq!(by_id("srv-ping")["result"], json!({}), "{answers:?}");
    // No client to ask: an error, not a made-up empty list the server could keep.
    assert!(
        by_id("srv-roots")["error"]["message"].as_str().is_some_and(|m| m.contains("no client request")),
        "{answers:?}"
    );
}

/// The gateway's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_stderr_line_is_cut_and_bytes_that_are_not_utf8_do_not_stop_the_reading() {
    let gw = Gateway::start(&fake_config("stderr-flood", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    // The fake writes 128 MiB of stderr without a newline before it answers.
    c.initialize("2025-06-18").await;
    assert!(
        gw.wait_log("fake-stderr-after-flood", Duration::from_secs(30)),
        "stderr is still read after a line that is not UTF-8: {}",
        gw.log().chars().take(2000).collect::<String>()
    );
    assert!(gw.log().contains("[stderr line cut]"), "the long line is logged as cut");
    assert!(gw.log().contains("not utf-8"), "the line that is not UTF-8 is logged (lossily)");
    let r = c.request("tools/call", json!({"name": "work", "arguments": {}})).await;
    assert_eq!(r["result"]["content"][0]["text"], "worked", "{r}");
    let peak = peak_rss_kib(gw.pid());
    assert!(peak < 64 * 1024, "the gateway's peak RSS stays under 64 MiB: {peak} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spawn_failure_logs_the_command_but_never_sends_it_to_the_client() {
    let yaml = "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  gone:\n    stdio:\n      command: /nonexistent/shadowcat-test-server\n      args: ['--token=sk-test-SECRET-4242']\n      era: legacy\n";
    let gw = Gateway::start(yaml);
    let c = McpClient::new(&gw.mcp_url);
    let r = c.post_raw(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), -32003);
    assert!(r.text().contains("cannot start its command"), "{}", r.text());
    assert!(!r.text().contains("SECRET") && !r.text().contains("/nonexistent"), "no command line: {}", r.text());
    // 2026-07-28 through the bridge: the same.
    let modern = common::modern::ModernClient::new(&gw.mcp_url);
    let (status, m) = modern.call("tools/list", json!({}), &json!({})).await;
    assert!(status >= 500, "{status} {m}");
    assert!(!m.to_string().contains("SECRET"), "no command line: {m}");
    assert!(gw.wait_log("sk-test-SECRET-4242", Duration::from_secs(5)), "the log has the command line: {}", gw.log());
}
