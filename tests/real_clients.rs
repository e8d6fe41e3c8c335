//! Real SDK clients through the gateway, each to a legacy upstream (the demo server over
//! stdio) and to a modern one (`tests/fixtures/modern-server.mjs`, TypeScript SDK v2,
//! dual-era, over HTTP): list tools, call a tool that elicits input (the client answers),
//! read a resource.
//!
//! | client | mode | era it must reach through the gateway |
//! |---|---|---|
//! | Python `mcp` 2.3.x (`tests/clients/python_client.py fixtures`) | the SDK's default (`auto`) | 2026-07-28 |
//! | TypeScript `@modelcontextprotocol/client` 2.4.x (`tests/clients/ts_client.mjs`) | `legacy` | a 2025 revision |
//! | the same | `auto` | 2026-07-28 |
//!
//! The gateway serves 2026-07-28 on every route (the bridge in front of a legacy upstream,
//! pass-through in front of a modern one), so a probing client is modern on both. Each script
//! prints one JSON line per step and a final `result` line; the era is read from the SDK itself
//! (negotiated version, `DiscoverResult` vs `initialize`) and from the wire (methods sent, the
//! `MCP-Protocol-Version` header on every POST, whether any `Mcp-Session-Id` came back).

mod common;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use common::{demo_config, deps, Gateway, ModernServer};

const FIXTURE_TOOL: &str = "test_input_required_result_elicitation";
const RESOURCE_TEXT: &str = "This is the content of the static text resource.";
const LEGACY_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    /// Python `mcp`, `Client(...)` without `mode=`.
    PythonDefault,
    TsLegacy,
    TsAuto,
}

#[derive(Clone, Copy, Debug)]
enum Upstream {
    /// The demo server over stdio: 2025 revisions only.
    LegacyDemo,
    /// `modern-server.mjs` over HTTP: 2026-07-28 and the 2025 revisions.
    ModernTs,
}

impl Client {
    fn modern(self) -> bool {
        self != Client::TsLegacy
    }
}

fn http_upstream(url: &str) -> String {
    format!("server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  modern:\n    http:\n      url: {url}\n")
}

/// Runs `client` against a fresh gateway in front of `upstream` and checks its report.
fn run(client: Client, upstream: Upstream) {
    let started = Instant::now();
    let (_server, gw) = match upstream {
        Upstream::LegacyDemo => (None, Gateway::start(&demo_config("", ""))),
        Upstream::ModernTs => {
            let server = ModernServer::start();
            let gw = Gateway::start(&http_upstream(&server.url));
            (Some(server), gw)
        }
    };
    let answer = format!("Ada {client:?} via {upstream:?}");
    let expect = if client.modern() { "2026-07-28" } else { "2025" };
    let d = deps();
    let mut cmd = match client {
        Client::PythonDefault => {
            let mut c = Command::new(&d.python);
            c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_client.py")).args([
                gw.mcp_url.as_str(),
                "fixtures",
                "--mode",
                "default",
            ]);
            c
        }
        Client::TsLegacy | Client::TsAuto => {
            let mut c = Command::new(&d.node);
            let mode = if client == Client::TsAuto { "auto" } else { "legacy" };
            c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ts_client.mjs"))
                .args([gw.mcp_url.as_str(), "--mode", mode])
                .env("SHADOWCAT_NODE_MODULES", &d.node_modules);
            c
        }
    };
    cmd.args(["--expect-version", expect, "--answer", &answer, "--timeout", "60"]);
    let client_started = Instant::now();
    let out = cmd.output().expect("run the client script");
    let client_ms = client_started.elapsed().as_millis();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = || {
        format!(
            "{client:?} via {upstream:?}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        )
    };
    assert!(out.status.success(), "the client failed ({}): {}", out.status, context());

    let steps: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let result =
        steps.iter().find(|s| s["step"] == "result").unwrap_or_else(|| panic!("no result line: {}", context()));
    let strs = |key: &str| -> Vec<&str> {
        result[key].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
    };

    // The three operations.
    assert!(strs("tools").contains(&FIXTURE_TOOL), "{FIXTURE_TOOL} not listed: {}", context());
    let text = result["tool_text"].as_str().unwrap_or_default();
    assert_eq!(text, format!("Hello, {answer}!"), "{}", context());
    assert_eq!(result["resource_text"], RESOURCE_TEXT, "{}", context());

    if client == Client::PythonDefault {
        // `--mode default` passes no `mode=`; this is what the SDK filled in.
        assert_eq!(result["sdk_default_mode"], "auto", "{}", context());
    }

    // The era, from the SDK and from the wire.
    let version = result["protocol_version"].as_str().unwrap_or_default();
    if client.modern() {
        assert_eq!(version, "2026-07-28", "{}", context());
        assert_eq!(result["era"], "modern", "{}", context());
        assert_eq!(result["initialize_sent"], false, "{}", context());
        assert_eq!(strs("post_protocol_versions"), ["2026-07-28"], "{}", context());
        assert_eq!(result["session_id_received"], false, "{}", context());
        assert_eq!(result["elicitation_via"], "input_required", "{}", context());
    } else {
        assert!(LEGACY_VERSIONS.contains(&version), "negotiated {version}: {}", context());
        assert_eq!(result["era"], "legacy", "{}", context());
        assert_eq!(result["initialize_sent"], true, "{}", context());
        assert_eq!(result["session_id_received"], true, "{}", context());
        assert_eq!(result["elicitation_via"], "elicitation/create", "{}", context());
    }
    let step_ms: Vec<String> =
        steps.iter().filter_map(|s| Some(format!("{}={}", s["step"].as_str()?, s.get("ms")?))).collect();
    eprintln!(
        "{client:?} via {upstream:?}: {version}, client {client_ms} ms, total {} ms ({})",
        started.elapsed().as_millis(),
        step_ms.join(" ")
    );
}

#[test]
fn python_default_mode_reaches_2026_through_the_gateway_to_the_legacy_demo_server() {
    run(Client::PythonDefault, Upstream::LegacyDemo);
}

#[test]
fn python_default_mode_reaches_2026_through_the_gateway_to_the_modern_ts_server() {
    run(Client::PythonDefault, Upstream::ModernTs);
}

#[test]
fn ts_client_legacy_mode_stays_on_2025_through_the_gateway_to_the_legacy_demo_server() {
    run(Client::TsLegacy, Upstream::LegacyDemo);
}

#[test]
fn ts_client_legacy_mode_stays_on_2025_through_the_gateway_to_the_modern_ts_server() {
    run(Client::TsLegacy, Upstream::ModernTs);
}

#[test]
fn ts_client_auto_mode_reaches_2026_through_the_gateway_to_the_legacy_demo_server() {
    run(Client::TsAuto, Upstream::LegacyDemo);
}

#[test]
fn ts_client_auto_mode_reaches_2026_through_the_gateway_to_the_modern_ts_server() {
    run(Client::TsAuto, Upstream::ModernTs);
}
