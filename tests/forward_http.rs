//! `shadowcat forward http -- COMMAND`: a local stdio server exposed over Streamable
//! HTTP with the gateway's whole front, checked with the conformance suites.

mod common;

use std::process::Command;

use common::conformance::{failures, required_scenarios, run_requirements, run_server_suite};
use common::{bin, Gateway};

fn forward_demo() -> Gateway {
    Gateway::start_args(&["forward", "http", "--listen", "127.0.0.1:0", "--", bin(), "demo-server"])
}

#[test]
fn every_scenario_passes_against_forward_http_in_front_of_the_demo_server() {
    let fwd = forward_demo();
    assert!(fwd.admin_url.is_none(), "no admin listener unless asked");
    let results = run_server_suite(&fwd.mcp_url, &[]);
    assert!(results.len() >= 32, "all scenarios ran: {:?}", results.keys());
    assert_eq!(failures(&results), "", "scenarios failed through forward http");
}

#[test]
fn stateless_clients_are_bridged_by_forward_http_too() {
    let fwd = forward_demo();
    let results = run_requirements(&fwd.mcp_url, "2026-07-28");
    let failed: Vec<String> =
        required_scenarios("2026-07-28").into_iter().filter(|s| !results.get(s).is_some_and(|r| r.passed)).collect();
    assert!(failed.is_empty(), "required 2026-07-28 scenarios failed: {failed:?}\n{}", failures(&results));
}

#[test]
fn forward_http_needs_a_command() {
    let out = Command::new(bin()).args(["forward", "http"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("COMMAND"), "{err}");
}
