//! The conformance suite's client scenarios with a real SDK client (the TypeScript client
//! 2.4 over stdio, tests/clients/conformance_client.mjs) connected through
//! `shadowcat forward stdio --upstream <scenario server URL>`: what the suite's servers
//! check of a client, Shadowcat must pass on the client's behalf (its handshake, tool
//! calls, elicitation relayed both ways, SSE reconnection with `retry` and
//! `Last-Event-ID`).

mod common;

use common::conformance::run_client_scenario;
use common::{bin, deps, fixture};
use serde_json::Value;

/// Runs `scenario` and asserts every check it makes passed (no failure, no warning) and
/// that the checks named in `expected` were made.
fn passes(scenario: &str, expected: &[&str]) {
    let d = deps();
    let command = format!("{} {} {}", d.node, fixture("../clients/conformance_client.mjs"), bin());
    let checks = run_client_scenario(&command, scenario);
    let bad: Vec<&Value> = checks.iter().filter(|c| c["status"] == "FAILURE" || c["status"] == "WARNING").collect();
    assert!(bad.is_empty(), "{scenario}: {bad:#?}");
    for id in expected {
        assert!(
            checks.iter().any(|c| c["id"] == *id && c["status"] == "SUCCESS"),
            "{scenario}: no successful {id} check in {checks:#?}"
        );
    }
}

#[test]
fn initialize_through_forward_stdio() {
    passes("initialize", &["mcp-client-initialization"]);
}

#[test]
fn tools_call_through_forward_stdio() {
    passes("tools_call", &["tool-add-numbers"]);
}

#[test]
fn elicitation_defaults_through_forward_stdio() {
    passes(
        "elicitation-sep1034-client-defaults",
        &[
            "client-elicitation-sep1034-string-default",
            "client-elicitation-sep1034-integer-default",
            "client-elicitation-sep1034-number-default",
            "client-elicitation-sep1034-enum-default",
            "client-elicitation-sep1034-boolean-default",
        ],
    );
}

#[test]
fn sse_retry_through_forward_stdio() {
    passes("sse-retry", &["client-sse-graceful-reconnect", "client-sse-retry-timing", "client-sse-last-event-id"]);
}
