//! Replay: real sessions recorded through the gateway and forward mode (the
//! official Python SDK against the demo server and server-everything, both eras),
//! each tape served again with `shadowcat replay` and driven by the same client:
//! the same results. Plus what a replay says when nothing matches, and bad tapes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{bin, deps, scratch_dir, Gateway, McpClient};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn client_tape(dir: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.to_string_lossy().ends_with(".tape.jsonl")
                && std::fs::read_to_string(p).unwrap().lines().next().is_some_and(|h| h.contains(r#""side":"client""#))
        })
        .collect();
    assert_eq!(found.len(), 1, "one client tape in {}: {found:?}", dir.display());
    found.remove(0)
}

/// The Python SDK client's scenario against `url`: its step lines (timings removed).
fn python(url: &str, scenario: &str, mode: &str) -> Vec<Value> {
    let d = deps();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_client.py");
    let out = Command::new(&d.python).args([script, url, scenario, "--mode", mode]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python {scenario} --mode {mode} at {url}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("ms");
            }
            v
        })
        .collect()
}

fn replay(tape: &Path, extra: &[&str]) -> Gateway {
    let mut args = vec!["replay", tape.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Gateway::start_args(&args)
}

/// Records `scenario` in `mode` through a gateway over `upstream` (YAML of one
/// upstream named `up`), returning the client's steps and the tape.
fn record(upstream: &str, scenario: &str, mode: &str) -> (Vec<Value>, PathBuf) {
    let dir = scratch_dir("replay-rec");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: null\npipeline:\n  - record: {{ dir: {} }}\nupstreams:\n  up:\n{upstream}",
        dir.display()
    );
    let mut gw = Gateway::start(&yaml);
    let steps = python(&gw.mcp_url, scenario, mode);
    assert!(gw.stop().success());
    (steps, client_tape(&dir))
}

fn demo_upstream() -> String {
    format!("    stdio:\n      command: {}\n      args: [demo-server]\n", bin())
}

/// Steps whose results depend on the era negotiated are compared without it.
fn without_era(steps: &[Value]) -> Vec<Value> {
    steps
        .iter()
        .filter(|s| {
            !matches!(
                s["step"].as_str(),
                Some("initialize" | "protocol_version" | "negotiation" | "summary" | "result")
            )
        })
        .cloned()
        .collect()
}

#[test]
fn a_2025_session_of_the_demo_server_replays_to_clients_of_both_eras() {
    let (recorded, tape) = record(&demo_upstream(), "demo", "legacy");
    assert!(recorded.iter().any(|s| s["step"] == "call_elicit"), "{recorded:?}");
    for speed in [&["--instant"][..], &["--speed", "10"][..]] {
        let gw = replay(&tape, speed);
        let again = python(&gw.mcp_url, "demo", "legacy");
        assert_eq!(again, recorded, "the same results ({speed:?})");
    }
    // A 2026-07-28 client of the 2025 tape: bridged like any 2025 server.
    let gw = replay(&tape, &["--instant"]);
    let modern = python(&gw.mcp_url, "demo", "auto");
    assert!(modern.iter().any(|s| s["step"] == "initialize" && s["protocol_version"] == "2026-07-28"), "{modern:?}");
    assert_eq!(without_era(&modern), without_era(&recorded));
}

#[test]
fn a_2026_conversation_replays_its_rounds_to_clients_of_both_eras() {
    let (recorded, tape) = record(&demo_upstream(), "demo", "auto");
    assert!(
        recorded.iter().any(|s| s["step"] == "initialize" && s["protocol_version"] == "2026-07-28"),
        "{recorded:?}"
    );
    let text = std::fs::read_to_string(&tape).unwrap();
    assert!(text.contains("input_required"), "the tape has a multi-round-trip call");
    let gw = replay(&tape, &["--instant"]);
    assert_eq!(python(&gw.mcp_url, "demo", "auto"), recorded);
    let legacy = python(&gw.mcp_url, "demo", "legacy");
    assert_eq!(without_era(&legacy), without_era(&recorded));
}

#[test]
fn a_session_of_server_everything_replays() {
    let d = deps();
    let upstream = format!("    stdio:\n      command: {}\n      args: ['{}', stdio]\n", d.node, d.everything_js);
    let (recorded, tape) = record(&upstream, "everything", "legacy");
    let gw = replay(&tape, &["--instant"]);
    assert_eq!(python(&gw.mcp_url, "everything", "legacy"), recorded);
}

#[test]
fn forward_mode_records_and_replay_serves_on_stdio() {
    let d = deps();
    let dir = scratch_dir("replay-forward");
    let client = |command: &[&str]| -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/forward_stdio_client.py");
        let out = Command::new(&d.python).arg(script).arg("--").args(command).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
    };
    let dir_arg = dir.to_str().unwrap();
    let recorded = client(&[bin(), "forward", "stdio", "--record", dir_arg, "--", bin(), "demo-server"]);
    assert_eq!(recorded["ok"], true, "{recorded}");
    assert!(recorded["progress"].as_array().is_some_and(|p| !p.is_empty()), "{recorded}");
    let tape = client_tape(&dir);
    let replayed = client(&[bin(), "replay", tape.to_str().unwrap(), "--stdio", "--instant"]);
    for key in ["ok", "tools", "slow", "progress", "elicited", "protocol_version"] {
        assert_eq!(replayed[key], recorded[key], "{key}: {replayed} vs {recorded}");
    }
}

#[tokio::test]
async fn a_request_the_tape_does_not_have_gets_an_error_naming_the_closest() {
    let dir = scratch_dir("replay-miss");
    let yaml = format!("{}pipeline:\n  - record: {{ dir: {} }}\n", common::demo_config("", ""), dir.display());
    let mut gw = Gateway::start(&yaml);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    c.request("tools/call", json!({"name":"echo","arguments":{"message":"recorded"}})).await;
    c.request("tools/list", json!({})).await;
    assert!(gw.stop().success());
    let tape = client_tape(&dir);

    let gw = replay(&tape, &["--instant"]);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let same = c.request("tools/call", json!({"name":"echo","arguments":{"message":"recorded"}})).await;
    assert!(same.to_string().contains("recorded"), "{same}");
    let other = c.request("tools/call", json!({"name":"echo","arguments":{"message":"something else"}})).await;
    let message = other["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no recorded tools/call request has these params"), "{other}");
    assert!(message.contains("/arguments/message"), "names where it differs: {other}");
    assert!(message.contains(tape.file_name().unwrap().to_str().unwrap()), "{other}");
    let unknown = c.request("prompts/list", json!({})).await;
    let message = unknown["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no recorded request has method \"prompts/list\"")
            && message.contains("tools/call, tools/list"),
        "{unknown}"
    );
    // ping is answered whether recorded or not.
    assert_eq!(c.request("ping", json!({})).await["result"], json!({}));

    // sequential: the recorded tools/call answers whatever the params, once.
    let gw = replay(&tape, &["--instant", "--matching", "sequential"]);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let first = c.request("tools/call", json!({"name":"echo","arguments":{"message":"different"}})).await;
    assert!(first.to_string().contains("recorded"), "{first}");
    let second = c.request("tools/call", json!({"name":"echo","arguments":{"message":"different"}})).await;
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("every recorded tools/call request was replayed"),
        "{second}"
    );
    drop(gw);
}

#[test]
fn bad_tapes_stop_a_replay_with_the_file_and_line() {
    let dir = scratch_dir("replay-bad");
    let not_a_tape = dir.join("x.tape.jsonl");
    std::fs::write(&not_a_tape, "{\"hello\":1}\n").unwrap();
    let missing = dir.join("missing.tape.jsonl");
    let upstream_side = dir.join("up.tape.jsonl");
    std::fs::write(
        &upstream_side,
        r#"{"type":"header","format":"shadowcat-tape","version":1,"tape":"u","started_at":"2026-12-02T00:00:00Z","shadowcat":"0","mode":"gateway","side":"upstream","revisions":[]}
"#,
    )
    .unwrap();
    let cases = [
        (&not_a_tape, "x.tape.jsonl:1: not a tape"),
        (&missing, "missing.tape.jsonl:0: cannot read"),
        (&upstream_side, "a tape of the upstream side (side: upstream) cannot be replayed"),
    ];
    for (path, want) in cases {
        let out = Command::new(bin()).args(["replay"]).arg(path).args(["--listen", "127.0.0.1:0"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }
    let out = Command::new(bin()).args(["replay"]).arg(&not_a_tape).args(["--speed", "50"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("replay.speed: 50 is outside 0.1 to 10"));
}

#[test]
fn the_replay_example_config_serves_its_tape() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/replay.yaml");
    let gw = Gateway::start_args(&["gateway", "--config", config, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    let steps = python(&gw.mcp_url, "demo", "legacy");
    assert!(steps.iter().any(|s| s["step"] == "summary" && s["ok"] == true), "{steps:?}");
}
