//! Tapes: the `record` stage through the real gateway and forward mode, with the
//! built-in demo server as upstream; `shadowcat tape validate` on what they write,
//! on tapes cut short by kill -9, and on files that are not good tapes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::modern::{all_caps, ModernClient};
use common::{bin, demo_config, scratch_dir, wait_until, Gateway, McpClient};
use http::Method;
use serde_json::{json, Value};

fn record_config(dir: &Path, options: &str) -> String {
    format!("{}pipeline:\n  - record:\n      dir: {}\n{options}", demo_config("", ""), dir.display())
}

fn tapes(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".tape.jsonl"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn closed(path: &Path) -> bool {
    lines(path).last().is_some_and(|l| l["type"] == "trailer")
}

/// `shadowcat tape validate FILE`: exit code, stdout, stderr.
fn validate(path: &Path) -> (i32, String, String) {
    let out = Command::new(bin()).args(["tape", "validate"]).arg(path).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Every byte under `dir`.
fn everything(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        if entry.path().is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()));
        }
    }
    all
}

fn client_tapes(dir: &Path) -> Vec<PathBuf> {
    tapes(dir).into_iter().filter(|p| lines(p).first().is_some_and(|h| h["side"] == "client")).collect()
}

#[tokio::test]
async fn a_session_is_recorded_whole_and_keeps_no_secrets() {
    let dir = scratch_dir("tapes");
    let options = "      redact:\n        patterns: ['sk-[a-z0-9]{10}']\n";
    let gw = Gateway::start(&record_config(&dir, options));
    let mut c = McpClient::new(&gw.mcp_url);
    let init = c.initialize("2025-11-25").await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let session = c.session.clone().unwrap();
    // A client's credentials: sent, never recorded.
    let mut h = c.headers();
    h.push(("authorization", "Bearer tok-SECRET-4711".into()));
    h.push(("cookie", "sid=cookie-SECRET-99".into()));
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = json!({"jsonrpc":"2.0","id":50,"method":"tools/call","params":{"name":"echo","arguments":{"message":"key sk-abcdefghij here"}}});
    let reply = c.http.send(Method::POST, &c.url, &h, Some(&body.to_string())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("sk-abcdefghij"), "the client gets the real value: {}", reply.text());
    let listed = c.request("tools/list", json!({})).await;
    assert!(listed["result"]["tools"].is_array());
    let (_, unknown) = c.call("nope/x", json!({})).await;
    assert_eq!(unknown.error_code(), -32601);
    assert_eq!(c.delete().await.status, 200);

    assert!(
        wait_until(Duration::from_secs(10), || client_tapes(&dir).first().is_some_and(|p| closed(p))),
        "no closed tape in {}",
        dir.display()
    );
    let files = client_tapes(&dir);
    assert_eq!(files.len(), 1, "one tape per session: {files:?}");
    let (code, out, err) = validate(&files[0]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok: tape ") && out.contains("closed (session_ended)"), "{out}");

    let all = lines(&files[0]);
    let header = &all[0];
    assert_eq!(header["format"], "shadowcat-tape");
    assert_eq!(header["version"], 2);
    assert_eq!(header["mode"], "gateway");
    assert_eq!(header["upstream"], "up");
    assert_eq!(header["route"], "/mcp");
    assert_eq!(header["client"]["info"]["name"], "shadowcat-tests");
    assert!(header["server"]["info"]["name"].is_string(), "{header}");
    assert_eq!(header["revisions"], json!(["2025-11-25"]));
    assert_eq!(header["session"].as_str().map(str::len), Some(8), "the session's tag: {header}");
    let frames: Vec<&Value> = all.iter().filter(|l| l["type"] == "frame").collect();
    let methods: Vec<&str> = frames.iter().filter_map(|f| f["msg"]["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["initialize", "notifications/initialized", "tools/call", "tools/list", "nope/x"],
        "{frames:?}"
    );
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["seq"], i as u64 + 1);
        assert_eq!(f["side"], "client");
    }
    let call = frames.iter().find(|f| f["msg"]["method"] == "tools/call").unwrap();
    assert_eq!(call["dir"], "c2s");
    assert_eq!(call["rev"], "2025-11-25");
    assert_eq!(call["route"], "/mcp");
    assert_eq!(call["headers"]["mcp-protocol-version"], "2025-11-25");
    assert!(call["headers"].get("authorization").is_none() && call["headers"].get("cookie").is_none(), "{call}");
    assert!(call["headers"].get("mcp-session-id").is_none(), "{call}");
    let answer = frames.iter().find(|f| f["dir"] == "s2c" && f["msg"]["id"] == 50).expect("the tools/call response");
    assert_eq!(answer["call"], call["call"], "one logical call");
    assert_eq!(answer["upstream"], "up");
    assert!(answer["t_us"].as_u64() >= call["t_us"].as_u64());
    let offsets: Vec<u64> = frames.iter().map(|f| f["t_us"].as_u64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "monotonic offsets: {offsets:?}");
    // Redaction: the same secret, the same placeholder, in the request and in the echo.
    assert_eq!(call["msg"]["params"]["arguments"]["message"], "key <redacted:1> here");
    assert!(answer["msg"].to_string().contains("<redacted:1>"), "{answer}");
    let trailer = all.last().unwrap();
    assert_eq!(trailer["frames"], frames.len());
    assert_eq!(trailer["dropped"], 0);
    assert!(trailer["redacted"].as_u64() >= Some(2), "{trailer}");

    let bytes = everything(&dir);
    for secret in ["tok-SECRET-4711", "cookie-SECRET-99", "sk-abcdefghij", session.as_str()] {
        assert!(!bytes.contains(secret), "{secret} is in the tapes");
    }
    for secret in ["tok-SECRET-4711", "cookie-SECRET-99", session.as_str()] {
        assert!(!gw.log().contains(secret), "{secret} is in the log");
    }
}

#[tokio::test]
async fn kill_9_leaves_a_tape_readable_to_its_last_frame() {
    let dir = scratch_dir("tapes-kill");
    let gw = Gateway::start(&record_config(&dir, ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    for i in 0..3 {
        c.request("tools/call", json!({"name":"echo","arguments":{"message": format!("m{i}")}})).await;
    }
    // initialize, its response, notifications/initialized, three calls and their responses.
    let want = 9;
    let frames = |p: &Path| lines(p).iter().filter(|l| l["type"] == "frame").count();
    assert!(
        wait_until(Duration::from_secs(10), || client_tapes(&dir).first().is_some_and(|p| frames(p) == want)),
        "the writer flushes once it has caught up"
    );
    common::signal(gw.pid(), "KILL");
    std::thread::sleep(Duration::from_millis(300));
    let file = client_tapes(&dir).remove(0);
    let (code, out, err) = validate(&file);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("cut short: readable up to line 10 (9 frames); no trailer"), "{out}");

    // A last line torn in the middle of a write.
    let torn = dir.join("torn.tape.jsonl");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(br#"{"type":"frame","seq":10,"t_us":9"#);
    std::fs::write(&torn, bytes).unwrap();
    let (code, out, _) = validate(&torn);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("readable up to line 10 (9 frames); line 11 is incomplete"), "{out}");
    drop(gw);
}

#[tokio::test]
async fn sigterm_closes_every_open_tape() {
    let dir = scratch_dir("tapes-term");
    let mut gw = Gateway::start(&record_config(&dir, ""));
    for version in ["2025-06-18", "2025-11-25"] {
        let mut c = McpClient::new(&gw.mcp_url);
        c.initialize(version).await;
        c.request("tools/list", json!({})).await;
    }
    assert!(gw.stop().success(), "{}", gw.log());
    let files = client_tapes(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in files {
        let (code, out, err) = validate(&f);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("closed (shutdown)"), "{out}");
    }
}

#[tokio::test]
async fn a_stateless_client_gets_a_conversation_tape_and_the_pool_an_upstream_tape() {
    let dir = scratch_dir("tapes-modern");
    let mut gw = Gateway::start(&record_config(&dir, ""));
    let c = ModernClient::new(&gw.mcp_url);
    let (status, listed) = c.call("tools/list", json!({}), &all_caps()).await;
    assert_eq!(status, 200, "{listed}");
    let (status, echoed) = c.call("tools/call", json!({"name":"echo","arguments":{"message":"hi"}}), &all_caps()).await;
    assert_eq!(status, 200, "{echoed}");
    assert!(gw.stop().success());
    let files = tapes(&dir);
    let client: Vec<&PathBuf> = files.iter().filter(|p| lines(p)[0]["side"] == "client").collect();
    assert_eq!(client.len(), 1, "one conversation: {files:?}");
    let all = lines(client[0]);
    assert_eq!(all[0]["revisions"], json!(["2026-07-28"]));
    assert!(all[0].get("session").is_none(), "{}", all[0]);
    let methods: Vec<&str> = all.iter().filter_map(|l| l["msg"]["method"].as_str()).collect();
    assert_eq!(methods, ["tools/list", "tools/call"]);
    let call = all.iter().find(|l| l["msg"]["method"] == "tools/call").unwrap();
    assert_eq!(call["headers"]["mcp-name"], "echo");
    // The demo server speaks 2025 only: the bridge serves the client from a pooled
    // session, whose own handshake is on the upstream side.
    let upstream: Vec<&PathBuf> = files.iter().filter(|p| lines(p)[0]["side"] == "upstream").collect();
    assert!(!upstream.is_empty(), "{files:?}");
    let wire: Vec<Value> = upstream.iter().flat_map(|p| lines(p)).filter(|l| l["type"] == "frame").collect();
    assert!(
        wire.iter().any(|f| f["msg"]["method"] == "initialize" && f["dir"] == "c2s" && f["side"] == "upstream"),
        "{wire:?}"
    );
    assert!(wire.iter().any(|f| f["msg"]["method"] == "tools/call"), "{wire:?}");
    for f in files {
        assert_eq!(validate(&f).0, 0, "{}", f.display());
    }
}

#[test]
fn forward_stdio_records_with_the_same_stage() {
    let dir = scratch_dir("tapes-forward");
    let dir_arg = dir.to_str().unwrap();
    let (mut child, mut stdin, mut stdout) =
        common::spawn_piped(&["forward", "stdio", "--record", dir_arg, "--", bin(), "demo-server"]);
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fwd","version":"1"}}}),
    );
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("serverInfo"), "{line}");
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}));
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"tools\""), "{line}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let files = client_tapes(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let (code, out, err) = validate(&files[0]);
    assert_eq!(code, 0, "{out}{err}");
    let all = lines(&files[0]);
    assert_eq!(all[0]["mode"], "forward");
    assert_eq!(all[0]["client"]["info"]["name"], "fwd");
    let methods: Vec<&str> = all.iter().filter_map(|l| l["msg"]["method"].as_str()).collect();
    assert_eq!(methods, ["initialize", "notifications/initialized", "tools/list"]);
}

#[test]
fn bad_tapes_are_named_with_their_line() {
    let dir = scratch_dir("tapes-bad");
    let header = r#"{"type":"header","format":"shadowcat-tape","version":1,"tape":"t","started_at":"2026-12-02T00:00:00Z","shadowcat":"0.1.0","mode":"gateway","side":"client","revisions":[]}"#;
    let frame = |seq: u64| {
        format!(
            r#"{{"type":"frame","seq":{seq},"t_us":1,"at":"2026-12-02T00:00:00Z","dir":"c2s","side":"client","call":1,"carrier":"request","msg":{{"jsonrpc":"2.0","id":{seq},"method":"ping"}}}}"#
        )
    };
    let v2 = header.replace("\"version\":1", "\"version\":2");
    let change = r#"{"type":"change","t_us":2,"at":"2026-12-02T00:00:00Z","dir":"c2s","side":"client","call":1,"rule":"r","action":"modify","before":{"jsonrpc":"2.0","id":1,"method":"ping"},"after":{"jsonrpc":"2.0","id":1,"method":"pong"}}"#;
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), ":1: empty file: not a tape"),
        ("not-json", "hello\n".into(), ":1: not a tape: the first line is not JSON"),
        ("not-a-tape", "{\"a\":1}\n".into(), ":1: not a tape: the first line is not a shadowcat-tape header"),
        ("future", header.replace("\"version\":1", "\"version\":7") + "\n", ":1: format version 7 is newer than this Shadowcat reads (2)"),
        ("corrupt-line", format!("{header}\n{}\n{{oops\n{}\n", frame(1), frame(2)), ":3: not a tape line"),
        ("bad-seq", format!("{header}\n{}\n{}\n", frame(1), frame(3)), ":3: frame seq 3 where 2 was expected"),
        ("not-json-rpc", format!("{header}\n{}\n", frame(1).replace(r#""jsonrpc":"2.0","#, "")), ":2: frame 1: not a JSON-RPC message"),
        ("change-in-v1", format!("{header}\n{}\n{change}\n", frame(1)), ":3: not a tape line: unknown line type \"change\""),
        ("bad-change", format!("{v2}\n{}\n{}\n", frame(1), change.replace(r#""id":1,"#, r#""id":true,"#)), ":3: a change's before is not a JSON-RPC message"),
        (
            "bad-checksum",
            format!("{header}\n{}\n{{\"type\":\"trailer\",\"ended_at\":\"x\",\"reason\":\"shutdown\",\"frames\":1,\"dropped\":0,\"redacted\":0,\"checksum\":\"sha256:00\"}}\n", frame(1)),
            ":3: checksum mismatch",
        ),
    ];
    for (name, text, want) in cases {
        let path = dir.join(format!("{name}.tape.jsonl"));
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = validate(&path);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(&format!("{}{want}", path.display())), "{name}: {err}");
    }
    let (code, _, err) = validate(&dir.join("missing.tape.jsonl"));
    assert_eq!(code, 2);
    assert!(err.contains("missing.tape.jsonl:0: cannot read"), "{err}");
}

#[test]
fn bad_record_options_are_refused_by_config_validate() {
    let dir = scratch_dir("tapes-config");
    let cases = [
        ("  - record\n", "needs a `dir`"),
        ("  - record: { dir: t, redact: { paths: ['$.['] } }\n", "redact.paths[0]"),
        ("  - record: { dir: t, redact: { patterns: ['('] } }\n", "redact.patterns[0]"),
        ("  - record: { dir: t, queue_frames: 0 }\n", "queue_frames: must be greater than 0"),
        ("  - record: { dir: t, when_full: maybe }\n", "unknown variant `maybe`"),
        ("  - record: { dir: t, stateless_gap: soon }\n", "invalid duration"),
        ("  - record: { dir: t, dri: u }\n", "unknown field `dri`"),
        ("  - record: { dir: t, max_tape_bytes: lots }\n", "invalid size"),
        ("  - record: { dir: t, retention: { max_age: soon } }\n", "invalid duration"),
        ("  - record: { dir: t, retention: { max_total_bytes: 5 parsecs } }\n", "invalid size unit"),
    ];
    for (i, (stage, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("c{i}.yaml"));
        std::fs::write(&path, format!("{}pipeline:\n{stage}", demo_config("", ""))).unwrap();
        let out = Command::new(bin()).args(["config", "validate"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stage}: {err}");
        assert!(err.contains("(record)") && err.contains(want), "{stage}: {err}");
    }
    assert!(!dir.join("t").exists(), "checking a config creates no directory");
}

#[test]
fn an_unwritable_record_dir_stops_the_start_with_a_clear_error() {
    let dir = scratch_dir("tapes-unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let config = dir.join("c.yaml");
    std::fs::write(&config, record_config(&file.join("tapes"), "")).unwrap();
    let out = Command::new(bin()).args(["gateway", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("record: cannot create") && err.contains("a-file/tapes"), "{err}");
}

fn tape_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).arg("tape").args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn the_index_lists_shows_exports_imports_and_deletes_tapes() {
    let dir = scratch_dir("tapes-index");
    let d = dir.to_str().unwrap();
    let gw = Gateway::start(&record_config(&dir, ""));
    let mut a = McpClient::new(&gw.mcp_url);
    a.initialize("2025-11-25").await;
    a.request("tools/call", json!({"name":"echo","arguments":{"message":"one"}})).await;
    let (_, missing) = a.call("nope/x", json!({})).await;
    assert_eq!(missing.error_code(), -32601);
    assert_eq!(a.delete().await.status, 200);
    let mut b = McpClient::new(&gw.mcp_url);
    b.initialize("2025-06-18").await;
    b.request("tools/list", json!({})).await;
    assert_eq!(b.delete().await.status, 200);
    let listed = || -> Vec<Value> {
        let (code, out, err) = tape_cmd(&["list", "--dir", d, "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    };
    assert!(wait_until(Duration::from_secs(10), || listed().len() == 2), "{:?}", listed());
    let all = listed();
    // Newest first.
    assert_eq!(all[0]["revisions"], "2025-06-18");
    assert_eq!(all[1]["requests"], 3, "initialize, tools/call, nope/x: {}", all[1]);
    assert_eq!(all[1]["errors"], 1);
    assert_eq!(all[1]["client"], "shadowcat-tests 0");
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["list", "--dir", d, "--json"];
        full.extend_from_slice(args);
        let (code, out, err) = tape_cmd(&full);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    let first = all[1]["id"].as_str().unwrap().to_owned();
    let second = all[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&["--tool", "echo"]), vec![first.clone()]);
    assert_eq!(ids(&["--method", "tools/list"]), vec![second.clone()]);
    assert_eq!(ids(&["--errors"]), vec![first.clone()]);
    assert_eq!(ids(&["--session", all[0]["session"].as_str().unwrap()]), vec![second.clone()]);
    assert_eq!(ids(&["--since", "1h"]).len(), 2);
    assert!(ids(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let (code, _, err) = tape_cmd(&["list", "--dir", d, "--since", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("neither a time"), "{err}");
    let (code, table, _) = tape_cmd(&["list", "--dir", d]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("ID ") && table.contains(&first) && !table.contains('\x1b'),
        "no colour when piped: {table}"
    );

    // show, by a unique start of the id.
    let (code, shown, err) = tape_cmd(&["show", &first[..20], "--dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("-> tools/call echo #"), "{shown}");
    assert!(shown.contains("response to tools/call #") && shown.contains(" ms)"), "latency: {shown}");
    assert!(shown.contains("ERROR: method not found"), "{shown}");
    assert!(shown.contains("closed: session_ended"), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown}");
    let (_, json_show, _) = tape_cmd(&["show", &first, "--dir", d, "--json"]);
    let v: Value = serde_json::from_str(&json_show).unwrap();
    assert!(v["frames"].as_array().unwrap().iter().any(|f| f["latency_us"].is_u64()));

    // export: the lines as they are, or HAR.
    let file = all[1]["file"].as_str().unwrap();
    let (_, jsonl, _) = tape_cmd(&["export", &first, "--dir", d]);
    assert_eq!(jsonl, std::fs::read_to_string(file).unwrap());
    let (code, har, _) = tape_cmd(&["export", &first, "--dir", d, "--format", "har"]);
    assert_eq!(code, 0);
    let har: Value = serde_json::from_str(&har).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    let call =
        entries.iter().find(|e| e["request"]["postData"]["text"].as_str().unwrap().contains("tools/call")).unwrap();
    assert_eq!(call["request"]["method"], "POST");
    assert!(call["response"]["content"]["text"].as_str().unwrap().contains("one"), "{call}");

    // stats.
    let (code, stats, _) = tape_cmd(&["stats", "--dir", d, "--json"]);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["tapes"], 2);
    let echo = stats["rows"].as_array().unwrap().iter().find(|r| r["tool"] == "echo").unwrap();
    assert_eq!(echo["count"], 1);
    assert!(echo["p50_us"].is_u64());

    // import: from elsewhere, copied in; a bad file is named and the exit is 1.
    let other = scratch_dir("tapes-index-other");
    let copy = other.join("copy.tape.jsonl");
    // Another tape id, and without its trailer (a tape whose writer was killed).
    let text = std::fs::read_to_string(file).unwrap().replacen(&first, "20260101T000000Z-00000000", 1);
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&copy, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let bad = other.join("bad.tape.jsonl");
    std::fs::write(&bad, "nope\n").unwrap();
    let (code, out, err) = tape_cmd(&["import", copy.to_str().unwrap(), bad.to_str().unwrap(), "--dir", d]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("copy.tape.jsonl: imported (cut short at line"), "{out}");
    assert!(out.contains("bad.tape.jsonl:1: not a tape"), "{out}");
    assert_eq!(listed().len(), 3);

    // delete: asks (refused without a terminal), then --yes.
    let (code, _, err) = tape_cmd(&["delete", &second, "--dir", d]);
    assert_eq!(code, 2);
    assert!(err.contains("give --yes"), "{err}");
    let (code, out, _) = tape_cmd(&["delete", &second, "--dir", d, "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(listed().len(), 2);
    assert!(!dir.join(format!("{second}.tape.jsonl")).exists());

    // Nothing else under the directory ends in .json or .jsonl.
    for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(name.ends_with(".tape.jsonl") || name.starts_with("index.sqlite"), "{name}");
    }
    // --dir that is not there; --config naming the record directory.
    let (code, _, err) = tape_cmd(&["list", "--dir", "/no/such/dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("no such tape directory"), "{err}");
    let config = scratch_dir("tapes-index-config").join("c.yaml");
    std::fs::write(&config, record_config(&dir, "")).unwrap();
    let (code, out, _) = tape_cmd(&["list", "--config", config.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 2);
}

#[tokio::test]
async fn long_tapes_rotate_into_parts() {
    let dir = scratch_dir("tapes-rotate");
    // tools/list of the demo server is about 14 KiB: every answer starts a new part.
    let gw = Gateway::start(&record_config(&dir, "      max_tape_bytes: 8KiB\n"));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    for _ in 0..3 {
        c.request("tools/list", json!({})).await;
    }
    assert_eq!(c.delete().await.status, 200);
    let parts = || -> Vec<PathBuf> { client_tapes(&dir) };
    let ended = |p: &PathBuf| lines(p).last().is_some_and(|l| l["reason"] == "session_ended");
    assert!(
        wait_until(Duration::from_secs(10), || parts().iter().any(ended) && parts().iter().all(|p| closed(p))),
        "{:?}",
        parts()
    );
    let mut files = parts();
    files.sort_by_key(|p| lines(p)[0]["part"].as_u64().unwrap_or(1));
    let first = lines(&files[0])[0]["tape"].as_str().unwrap().to_owned();
    let mut frames = 0;
    for (i, f) in files.iter().enumerate() {
        let (code, out, err) = validate(f);
        assert_eq!(code, 0, "every part is a whole tape: {out}{err}");
        let all = lines(f);
        let header = &all[0];
        let trailer = all.last().unwrap();
        if i == 0 {
            assert!(header.get("part").is_none());
        } else {
            assert_eq!(header["part"], i as u64 + 1, "{header}");
            assert_eq!(header["continues"], first.as_str());
            assert_eq!(header["tape"], format!("{first}.{}", i + 1));
        }
        let last = i == files.len() - 1;
        assert_eq!(trailer["reason"], if last { "session_ended" } else { "rotated" }, "{trailer}");
        frames += trailer["frames"].as_u64().unwrap();
    }
    // initialize and its answer, notifications/initialized, three tools/list and answers.
    assert_eq!(frames, 9);
}

#[tokio::test]
async fn retention_keeps_the_newest_tapes_within_the_total() {
    let dir = scratch_dir("tapes-retain");
    let gw = Gateway::start(&record_config(&dir, "      retention: { max_total_bytes: 30KiB, max_age: 30d }\n"));
    let mut first = None;
    for _ in 0..4 {
        let mut c = McpClient::new(&gw.mcp_url);
        c.initialize("2025-11-25").await;
        c.request("tools/list", json!({})).await;
        assert_eq!(c.delete().await.status, 200);
        assert!(wait_until(Duration::from_secs(10), || client_tapes(&dir).iter().any(|p| closed(p))));
        if first.is_none() {
            first = client_tapes(&dir).first().map(|p| p.file_name().unwrap().to_string_lossy().to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = first.unwrap();
    let total = || -> u64 { tapes(&dir).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum() };
    assert!(
        wait_until(Duration::from_secs(15), || total() <= 30 * 1024
            && !tapes(&dir).iter().any(|p| p.to_string_lossy().contains(&first))),
        "{} bytes in {:?}",
        total(),
        tapes(&dir)
    );
    // The index follows the deletions (retention removes a file, then its row: a
    // listing taken in between sees one more, so the two are compared until they agree).
    let listed = || -> (usize, String) {
        let (code, out, err) = tape_cmd(&["list", "--dir", dir.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{err}");
        let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
        (listed.len(), out)
    };
    assert!(
        wait_until(Duration::from_secs(10), || listed().0 == tapes(&dir).len()),
        "the index follows the deletions: {} listed, {:?} on disk",
        listed().1,
        tapes(&dir)
    );
    assert!(!tapes(&dir).is_empty(), "the newest tapes stay");
}

#[tokio::test]
async fn forward_http_records_and_an_upstream_token_never_reaches_a_tape() {
    // forward http, recording, serves the demo server over HTTP; a recording gateway
    // in front of it holds a token for it in its config (sent, never recorded).
    let inner_dir = scratch_dir("tapes-fwd-http");
    let inner = Gateway::start_args(&[
        "forward",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--record",
        inner_dir.to_str().unwrap(),
        "--",
        bin(),
        "demo-server",
    ]);
    let dir = scratch_dir("tapes-token");
    let token = "upstream-TOKEN-8c1f0e";
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: null\npipeline:\n  - record: {{ dir: {} }}\nupstreams:\n  remote:\n    http:\n      url: {}\n      headers:\n        Authorization: Bearer {token}\n",
        dir.display(),
        inner.mcp_url
    );
    let mut gw = Gateway::start(&yaml);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    c.request("tools/call", json!({"name":"echo","arguments":{"message":"through two"}})).await;
    assert_eq!(c.delete().await.status, 200);
    // A 2026-07-28 client too: the gateway's own exchanges with the upstream are recorded.
    let m = ModernClient::new(&gw.mcp_url);
    let (status, _) = m.call("tools/list", json!({}), &all_caps()).await;
    assert_eq!(status, 200);
    assert!(gw.stop().success());
    let mut inner = inner;
    assert!(inner.stop().success());
    for d in [&dir, &inner_dir] {
        assert!(!client_tapes(d).is_empty(), "tapes in {}", d.display());
        for f in tapes(d) {
            assert_eq!(validate(&f).0, 0, "{}", f.display());
        }
        assert!(!everything(d).contains(token), "the upstream's token is in {}", d.display());
    }
    // The 2025 session and the outer gateway's pooled session: client sessions both,
    // to forward http.
    let forwarded: Vec<Value> = client_tapes(&inner_dir).iter().flat_map(|p| lines(p)).collect();
    assert!(forwarded.iter().filter(|l| l["type"] == "header").all(|h| h["mode"] == "forward"));
    assert!(forwarded.iter().any(|l| l["msg"]["params"]["arguments"]["message"] == "through two"));
}
