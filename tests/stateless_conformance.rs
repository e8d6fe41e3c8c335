//! The conformance suite's 2026-07-28 scenarios (0.2.0-alpha.12, `--requirements`)
//! through the gateway: in front of a modern upstream (TypeScript SDK v2, passed
//! through), in front of the legacy demo server over stdio (bridged), and 2025 clients
//! in front of a modern-only upstream (a session the gateway owns).

mod common;

use std::time::Duration;

use common::conformance::{failures, required_scenarios, run_requirements};
use common::{demo_config, Gateway, ModernServer};

fn http_upstream(url: &str) -> String {
    format!("server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  modern:\n    http:\n      url: {url}\n")
}

/// Every scenario `revision` requires passed, and the unscored ones in `also`.
fn assert_required_pass(url: &str, revision: &str, also: &[&str]) {
    let results = run_requirements(url, revision);
    let mut required = required_scenarios(revision);
    assert!(required.len() >= 20, "{revision} requires {required:?}");
    required.extend(also.iter().map(|s| s.to_string()));
    let failed: Vec<&String> = required.iter().filter(|s| !results.get(*s).is_some_and(|r| r.passed)).collect();
    assert!(failed.is_empty(), "{revision}: required scenarios failed: {failed:?}\n{}", failures(&results));
}

#[test]
fn every_required_2026_scenario_passes_through_the_gateway_to_a_modern_upstream() {
    let server = ModernServer::start();
    let gw = Gateway::start(&http_upstream(&server.url));
    // The pending header scenarios too: the gateway checks the routing headers and
    // forwards `Mcp-Param-*` for the upstream to check.
    assert_required_pass(
        &gw.mcp_url,
        "2026-07-28",
        &["http-header-validation", "http-custom-header-server-validation"],
    );
}

#[test]
fn every_2025_11_25_scenario_passes_through_the_gateway_to_a_modern_upstream() {
    let server = ModernServer::start();
    let gw = Gateway::start(&http_upstream(&server.url));
    assert_required_pass(&gw.mcp_url, "2025-11-25", &[]);
}

#[test]
fn every_2025_11_25_scenario_passes_through_a_gateway_owned_session_to_a_modern_only_upstream() {
    let server = ModernServer::start_args(&["--modern-only"]);
    let gw = Gateway::start(&http_upstream(&server.url));
    assert_required_pass(&gw.mcp_url, "2025-11-25", &[]);
    assert!(gw.wait_log("era=Modern", Duration::from_secs(5)), "the upstream was probed as modern: {}", gw.log());
}

#[test]
fn every_required_2026_scenario_passes_through_the_bridge_to_the_legacy_demo_server() {
    let gw = Gateway::start(&demo_config(common::MANY_SESSIONS, "      warm: 1\n"));
    assert_required_pass(&gw.mcp_url, "2026-07-28", &["http-header-validation"]);
}

/// The gateway in front of `modern-server.mjs --stdio` (the SDK's serveStdio: one
/// connection per process, 2026-07-28 and, unless `--modern-only`, the 2025 handshake).
fn stdio_modern_upstream() -> String {
    stdio_modern_upstream_with("", "")
}

/// The same with extra fixture arguments and upstream keys. Two processes are kept
/// warm: a node process takes a while to start on a loaded machine, and some scenarios
/// read their frames within 600-800 ms.
fn stdio_modern_upstream_with(args: &str, keys: &str) -> String {
    let d = common::deps();
    format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  modern:\n    stdio:\n      command: {}\n      args: [{}, --stdio{args}]\n      warm: 2\n      env:\n        SHADOWCAT_NODE_MODULES: {}\n{keys}",
        d.node,
        common::fixture("modern-server.mjs"),
        d.node_modules
    )
}

#[test]
fn every_required_2026_scenario_passes_through_the_gateway_to_a_stateless_stdio_upstream() {
    let gw = Gateway::start(&stdio_modern_upstream());
    // The custom-header scenario too: stdio carries no headers, so the gateway checks
    // `Mcp-Param-*` against the tool's `x-mcp-header` itself.
    assert_required_pass(
        &gw.mcp_url,
        "2026-07-28",
        &["http-header-validation", "http-custom-header-server-validation"],
    );
    assert!(gw.wait_log("era=Modern", Duration::from_secs(5)), "the stdio upstream was probed as modern: {}", gw.log());
}

#[test]
fn every_2025_11_25_scenario_passes_through_the_gateway_to_a_dual_era_stdio_upstream() {
    let gw = Gateway::start(&stdio_modern_upstream());
    assert_required_pass(&gw.mcp_url, "2025-11-25", &[]);
}

#[test]
fn every_2025_11_25_scenario_passes_through_a_gateway_owned_session_to_a_modern_only_stdio_upstream() {
    // A stdio upstream's era is not probed at initialize (that would start a process):
    // pinned here.
    let gw = Gateway::start(&stdio_modern_upstream_with(", --modern-only", "      era: modern\n"));
    assert_required_pass(&gw.mcp_url, "2025-11-25", &[]);
}
