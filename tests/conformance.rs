//! The official MCP conformance suite (server scenarios, 0.1.16) through the gateway.

mod common;

use common::conformance::{failures, passed, run_server_suite};
use common::{demo_config, deps, everything_http, free_port, Gateway};

#[test]
fn every_scenario_passes_through_the_gateway_in_front_of_the_demo_server() {
    let gw = Gateway::start(&demo_config(common::MANY_SESSIONS, "      warm: 2\n"));
    let results = run_server_suite(&gw.mcp_url, &[]);
    assert!(results.len() >= 32, "all scenarios ran: {:?}", results.keys());
    assert_eq!(failures(&results), "", "scenarios failed through the gateway");
}

/// Runs the suite against server-everything over HTTP directly, then through a gateway
/// configured with `upstream_yaml` (the `upstreams.everything` body), and asserts that
/// no scenario that passed directly fails through the gateway.
fn assert_no_regression_through_gateway(upstream_yaml: impl FnOnce(u16) -> String) {
    let port = free_port();
    let _server = everything_http(port);
    let direct_passed = passed(&run_server_suite(&format!("http://localhost:{port}/mcp"), &[]));
    assert!(direct_passed.len() >= 5, "server-everything passes some scenarios directly: {direct_passed:?}");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  everything:\n{}",
        upstream_yaml(port)
    );
    let gw = Gateway::start(&yaml);
    let via = run_server_suite(&gw.mcp_url, &[]);
    let lost: Vec<&String> = direct_passed.iter().filter(|s| !via.get(*s).is_some_and(|r| r.passed)).collect();
    assert!(lost.is_empty(), "passed directly but failed through the gateway: {lost:?}\n{}", failures(&via));
}

#[test]
fn no_scenario_that_passes_against_server_everything_directly_fails_through_the_gateway() {
    let d = deps();
    assert_no_regression_through_gateway(|_| {
        format!("    stdio:\n      command: {}\n      args: ['{}', stdio]\n      warm: 2\n", d.node, d.everything_js)
    });
}

#[test]
fn no_scenario_that_passes_against_server_everything_over_http_fails_through_the_gateways_http_upstream() {
    assert_no_regression_through_gateway(|port| format!("    http:\n      url: http://127.0.0.1:{port}/mcp\n"));
}

#[test]
fn every_scenario_passes_through_two_gateways_chained_over_http() {
    let inner = Gateway::start(&demo_config(common::MANY_SESSIONS, "      warm: 2\n"));
    let inner_url = inner.mcp_url.replace("localhost", "127.0.0.1");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  inner:\n    http:\n      url: {inner_url}\n"
    );
    let outer = Gateway::start(&yaml);
    let results = run_server_suite(&outer.mcp_url, &[]);
    assert!(results.len() >= 32, "all scenarios ran: {:?}", results.keys());
    assert_eq!(failures(&results), "", "scenarios failed through two gateways");
}
