//! `shadowcat forward stdio -- COMMAND`: a stdio client launches Shadowcat as if it were
//! the server. A real SDK client through it, and the exit rules (stdin closed, child
//! exit, signals) with no process left behind.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bin, children_of, deps, fixture, group_members, processes, signal, wait_until};
use serde_json::{json, Value};

/// The Python SDK's stdio client launching `forward stdio -- shadowcat demo-server`.
fn python_through_forward(mode: &str) -> Value {
    python_through(&["--mode", mode], &["forward", "stdio", "--", bin(), "demo-server"])
}

/// The Python SDK's stdio client (with `flags`) launching `shadowcat <args>`.
fn python_through(flags: &[&str], args: &[&str]) -> Value {
    let d = deps();
    let out = Command::new(&d.python)
        .arg(fixture("../clients/forward_stdio_client.py"))
        .args(flags)
        .args(["--", bin()])
        .args(args)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("no result line: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["ok"], true, "{v}\n{}", String::from_utf8_lossy(&out.stderr));
    v
}

#[test]
fn the_python_sdk_lists_and_calls_tools_through_forward_stdio() {
    for (mode, era) in [("legacy", "2025-11-25"), ("default", "2026-07-28")] {
        let v = python_through_forward(mode);
        assert_eq!(v["protocol_version"], era, "{mode}: {v}");
        let tools: Vec<&str> = v["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
        assert!(tools.contains(&"echo") && tools.contains(&"slow"), "{mode}: {tools:?}");
        assert_eq!(v["slow"], json!(["done after 3 steps"]), "{mode}: {v}");
        assert_eq!(v["progress"], json!([1.0, 2.0, 3.0]), "{mode}: progress relayed: {v}");
        assert_eq!(v["elicited"], json!(["Hello, Ada!"]), "{mode}: elicitation answered: {v}");
    }
}

#[test]
fn the_python_sdk_uses_server_everything_through_forward_stdio() {
    let d = deps();
    for (mode, era) in [("legacy", "2025-11-25"), ("default", "2026-07-28")] {
        let v = python_through(
            &["--mode", mode, "--sampling"],
            &["forward", "stdio", "--", &d.node, &d.everything_js, "stdio"],
        );
        assert_eq!(v["protocol_version"], era, "{mode}: {v}");
        let tools: Vec<&str> = v["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
        for tool in ["trigger-long-running-operation", "trigger-elicitation-request", "trigger-sampling-request"] {
            assert!(
                tools.contains(&tool),
                "{mode}: {tool} listed (the client's capabilities reached the server): {tools:?}"
            );
        }
        assert_eq!(v["progress"], json!([1.0, 2.0, 3.0]), "{mode}: progress relayed: {v}");
        assert!(v["slow"][0].as_str().is_some_and(|t| t.contains("Steps: 3")), "{mode}: {v}");
        assert!(
            v["elicited"][1].as_str().is_some_and(|t| t.contains("Name: Ada")),
            "{mode}: elicitation answered: {v}"
        );
        assert!(
            v["sampled"][0].as_str().is_some_and(|t| t.contains("sampled") && t.contains("context: hi")),
            "{mode}: sampling answered: {v}"
        );
        assert!(
            v["roots"][0].as_str().is_some_and(|t| t.contains("file:///work/project")),
            "{mode}: roots answered: {v}"
        );
    }
}

/// `shadowcat forward stdio <args>` with piped stdin/stdout/stderr, in a process group
/// of its own.
fn spawn_with(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(bin())
        .args(["forward", "stdio"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn forward stdio");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdout)
}

/// `forward stdio -- <server>`.
fn spawn_forward(server: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    spawn_with(&[&["--"], server].concat())
}

/// `forward stdio --upstream URL`.
fn spawn_remote(url: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    spawn_with(&["--upstream", url])
}

fn send(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().expect("stdin");
    stdin.write_all(line.as_bytes()).expect("write");
    stdin.write_all(b"\n").expect("write");
    stdin.flush().expect("flush");
}

fn read(stdout: &mut BufReader<std::process::ChildStdout>) -> Value {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// The next response (notifications the server sends meanwhile are skipped).
fn read_response(stdout: &mut BufReader<std::process::ChildStdout>) -> Value {
    loop {
        let m = read(stdout);
        if m.get("id").is_some() && m.get("method").is_none() {
            return m;
        }
    }
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

/// Initializes and calls echo (a line of garbage in between is skipped); returns the pid.
fn initialized(child: &mut Child, stdout: &mut BufReader<std::process::ChildStdout>) -> i32 {
    send(child, INIT);
    assert_eq!(read(stdout)["id"], 1);
    send(child, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send(child, "this line is not JSON");
    let stdin = child.stdin.as_mut().expect("stdin");
    stdin.write_all(b"\xff\xfe not UTF-8\n").expect("write");
    send(
        child,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
    );
    let r = read(stdout);
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    i32::try_from(child.id()).expect("pid")
}

/// Closes forward mode's stdin and expects it to exit 0.
fn close_stdin_expect_0(child: &mut Child) {
    drop(child.stdin.take());
    assert_eq!(wait_exit(child), Some(0));
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status.and_then(|s| s.code())
}

#[test]
fn stdin_closed_stops_the_child_and_exits_0() {
    let (mut child, mut stdout) = spawn_forward(&[bin(), "demo-server"]);
    let pid = initialized(&mut child, &mut stdout);
    assert!(!children_of(pid).is_empty(), "the server runs as a child");
    close_stdin_expect_0(&mut child);
    assert!(wait_until(Duration::from_secs(5), || group_members(pid).is_empty()), "no process left: {:?}", processes());
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err);
    assert!(err.contains("not a JSON-RPC message"), "the garbage line is logged: {err}");
}

#[test]
fn sigterm_and_sigint_stop_the_child_and_exit_0() {
    for sig in ["TERM", "INT"] {
        let (mut child, mut stdout) = spawn_forward(&[bin(), "demo-server"]);
        let pid = initialized(&mut child, &mut stdout);
        signal(pid, sig);
        assert_eq!(wait_exit(&mut child), Some(0), "SIG{sig}");
        let gone = wait_until(Duration::from_secs(5), || group_members(pid).is_empty());
        assert!(gone, "SIG{sig}: no process left: {:?}", processes());
    }
}

#[test]
fn the_child_exiting_ends_forward_mode_with_its_status() {
    let (mut child, mut stdout) = spawn_forward(&["python3", &fixture("fake_upstream.py"), "crash"]);
    send(&mut child, INIT);
    assert_eq!(read(&mut stdout)["id"], 1);
    send(&mut child, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let pid = i32::try_from(child.id()).expect("pid");
    send(&mut child, r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"work","arguments":{}}}"#);
    let r = read(&mut stdout);
    assert!(r["error"].is_object(), "the call in flight gets an error: {r}");
    assert_eq!(wait_exit(&mut child), Some(3), "the child's exit status");
    assert!(wait_until(Duration::from_secs(5), || group_members(pid).is_empty()), "no process left: {:?}", processes());
}

#[test]
fn forward_stdio_reaches_a_remote_streamable_http_server() {
    let server = common::ModernServer::start();
    let dir = common::scratch_dir("fwd-remote");
    let log = dir.join("forward.log");
    let log_path = log.to_str().expect("utf8");
    for (mode, era) in [("legacy", "2025-11-25"), ("default", "2026-07-28")] {
        let args =
            ["forward", "stdio", "--log-file", log_path, "--upstream", &server.url, "--header", "X-Secret: hunter2"];
        let v = python_through(&["--mode", mode], &args);
        assert_eq!(v["protocol_version"], era, "{mode}: {v}");
        let tools: Vec<&str> = v["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
        assert!(tools.contains(&"test_simple_text"), "{mode}: {tools:?}");
        assert_eq!(v["elicited"][0].as_str().map(|t| t.contains("Ada")), Some(true), "{mode}: {v}");
    }
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("upstream"), "the run was logged: {text}");
    assert!(!text.contains("hunter2"), "a --header value never reaches the logs: {text}");
}

#[test]
fn log_file_takes_the_logs_and_stderr_stays_quiet() {
    let dir = common::scratch_dir("fwd-log");
    let log = dir.join("forward.log");
    let (mut child, mut stdout) = spawn_with(&["--log-file", log.to_str().expect("utf8"), "--", bin(), "demo-server"]);
    initialized(&mut child, &mut stdout);
    close_stdin_expect_0(&mut child);
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err);
    assert!(!err.contains("INFO") && !err.contains("WARN"), "stderr has no logs: {err}");
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("not a JSON-RPC message"), "{text}");
}

#[test]
fn a_remote_upstream_that_is_down_gets_a_clear_error_and_no_hang() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let (mut child, mut stdout) = spawn_remote(&url);
    send(&mut child, INIT);
    let r = read(&mut stdout);
    assert_eq!(r["id"], 1, "{r}");
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("cannot connect")), "{r}");
    // A stateless request too, then stdin closes: exit 0.
    send(&mut child, &stateless_list(2));
    let r = read(&mut stdout);
    assert_eq!((r["id"].as_i64(), r["error"]["code"].as_i64()), (Some(2), Some(-32003)), "{r}");
    close_stdin_expect_0(&mut child);
}

#[test]
fn an_oversized_line_is_logged_and_skipped() {
    let dir = common::scratch_dir("fwd-big");
    let config = dir.join("c.yaml");
    std::fs::write(&config, "server:\n  max_body_bytes: 4096\nupstreams:\n  x:\n    stdio:\n      command: self\n")
        .expect("write");
    let (mut child, mut stdout) = spawn_with(&["--config", config.to_str().expect("utf8"), "--", bin(), "demo-server"]);
    send(&mut child, INIT);
    assert_eq!(read(&mut stdout)["id"], 1);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(8192)
    );
    send(&mut child, &big);
    send(
        &mut child,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"message":"after"}}}"#,
    );
    let r = read(&mut stdout);
    assert_eq!((r["id"].as_i64(), r["result"]["content"][0]["text"].as_str()), (Some(6), Some("after")), "{r}");
    close_stdin_expect_0(&mut child);
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err);
    assert!(err.contains("exceeds server.max_body_bytes"), "{err}");
}

/// A 2026-07-28 `tools/list` with id `id`, as a stdio line.
fn stateless_list(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

fn legacy_call(id: u64, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"message": "m"}}})
        .to_string()
}

/// `forward stdio --upstream` to a server that `start` starts on a port, stops and
/// starts again: a 2025 session and 2026-07-28 requests get errors at once while it is
/// down, and stateless requests are served again once it is back. Returns the answer
/// to the 2025 session's first call after the restart, the forward process and the server.
fn drop_and_return<S>(tool: &str, start: impl Fn(u16) -> S) -> (Value, Child, BufReader<std::process::ChildStdout>, S) {
    let port = common::free_port();
    let server = start(port);
    let (mut child, mut stdout) = spawn_remote(&format!("http://127.0.0.1:{port}/mcp"));
    send(&mut child, INIT);
    assert!(read_response(&mut stdout)["result"].is_object());
    send(&mut child, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send(&mut child, &legacy_call(2, tool));
    let r = read_response(&mut stdout);
    assert!(r["result"]["content"].is_array(), "{r}");
    // A 2025 client sees a 2025 result, whatever the server's era.
    assert!(r["result"].get("resultType").is_none(), "{r}");
    assert!(r["result"].pointer("/_meta/io.modelcontextprotocol~1serverInfo").is_none(), "{r}");
    send(&mut child, &stateless_list(3));
    let r = read_response(&mut stdout);
    assert!(r["result"]["tools"].is_array(), "{r}");

    // The server goes away: each request gets -32003 at once, none hangs.
    drop(server);
    send(&mut child, &stateless_list(4));
    let r = read_response(&mut stdout);
    assert_eq!((r["id"].as_i64(), r["error"]["code"].as_i64()), (Some(4), Some(-32003)), "{r}");
    send(&mut child, &legacy_call(5, tool));
    let r = read_response(&mut stdout);
    assert_eq!((r["id"].as_i64(), r["error"]["code"].as_i64()), (Some(5), Some(-32003)), "{r}");

    // Back on the same port: the next stateless request reconnects.
    let server = start(port);
    send(&mut child, &stateless_list(6));
    let r = read_response(&mut stdout);
    assert!(r["result"]["tools"].is_array(), "reconnected: {r}");
    send(&mut child, &legacy_call(7, tool));
    let after = read_response(&mut stdout);
    (after, child, stdout, server)
}

#[test]
fn a_modern_remote_upstream_that_drops_mid_session_gets_clear_errors_and_is_reconnected() {
    // The 2025 session on a modern upstream is the gateway's own (stateless requests
    // underneath): it carries on once the server is back.
    let (after, mut child, _, _server) =
        drop_and_return("test_simple_text", |port| common::ModernServer::start_on(port, &[]));
    assert!(after["result"]["content"].is_array(), "the session carries on: {after}");
    close_stdin_expect_0(&mut child);
}

#[test]
fn a_legacy_remote_upstream_that_drops_mid_session_gets_clear_errors_and_a_new_session_works() {
    // server-everything keeps sessions in memory: the 2025 session died with it (-32001,
    // the client re-initializes); 2026-07-28 requests are bridged on pooled sessions,
    // which the gateway opens again by itself.
    let (after, mut child, mut stdout, _server) = drop_and_return("echo", common::everything_http);
    assert_eq!((after["id"].as_i64(), after["error"]["code"].as_i64()), (Some(7), Some(-32001)), "{after}");
    send(&mut child, &INIT.replace(r#""id":1"#, r#""id":8"#));
    assert!(read_response(&mut stdout)["result"].is_object());
    send(&mut child, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send(&mut child, &legacy_call(9, "echo"));
    let r = read_response(&mut stdout);
    assert!(r["result"]["content"].is_array(), "a new session: {r}");
    close_stdin_expect_0(&mut child);
}

#[test]
fn the_clients_cancellation_reaches_the_server() {
    let dir = common::scratch_dir("fwd-cancel");
    let log = dir.join("cancelled.log");
    let fake_log = format!("FAKE_LOG={}", log.display());
    let fake = fixture("fake_upstream.py");
    let (mut child, mut stdout) = spawn_forward(&["env", &fake_log, "python3", &fake, "cancel-log"]);
    send(&mut child, INIT);
    assert_eq!(read(&mut stdout)["id"], 1);
    send(&mut child, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send(&mut child, r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"work","arguments":{}}}"#);
    send(
        &mut child,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"user"}}"#,
    );
    let cancelled = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(5), || cancelled().contains("\"requestId\": 2")), "{}", cancelled());
    close_stdin_expect_0(&mut child);
}

#[test]
fn lines_from_the_server_that_are_not_json_rpc_are_logged_and_skipped() {
    let (mut child, mut stdout) = spawn_forward(&["python3", &fixture("fake_upstream.py"), "garbage"]);
    send(&mut child, INIT);
    assert_eq!(read(&mut stdout)["id"], 1, "the garbage before the answer is skipped");
    send(&mut child, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send(&mut child, r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"work","arguments":{}}}"#);
    let r = read(&mut stdout);
    assert_eq!(r["result"]["content"][0]["text"], "worked", "{r}");
    close_stdin_expect_0(&mut child);
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err);
    assert!(err.contains("this line is not JSON"), "the skipped line is logged with its text: {err}");
}

#[test]
fn the_servers_notifications_reach_the_client() {
    let (mut child, mut stdout) = spawn_forward(&[bin(), "demo-server"]);
    initialized(&mut child, &mut stdout);
    send(
        &mut child,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_trigger_tool_change","arguments":{}}}"#,
    );
    let mut seen = Vec::new();
    loop {
        let m = read(&mut stdout);
        if m["id"] == 3 {
            assert!(m["result"].is_object(), "{m}");
            break;
        }
        seen.push(m["method"].as_str().unwrap_or_default().to_owned());
    }
    // The notification may come on the call's stream or the session's: either way
    // before or just after the result.
    if !seen.iter().any(|m| m == "notifications/tools/list_changed") {
        let m = read(&mut stdout);
        assert_eq!(m["method"], "notifications/tools/list_changed", "{m}");
    }
    send(&mut child, r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#);
    let list = read_response(&mut stdout);
    let names: Vec<&str> =
        list["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"test_dynamic_tool"), "{names:?}");
    close_stdin_expect_0(&mut child);
}
