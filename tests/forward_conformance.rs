//! The conformance suite's client scenarios with a real SDK client (the TypeScript client
//! 2.4 over stdio, tests/clients/conformance_client.mjs) connected through
//! `shadowcat forward stdio --upstream <scenario server URL>`: what the suite's servers
//! check of a client, Shadowcat must pass on the client's behalf (its handshake, tool
//! calls, elicitation relayed both ways, SSE reconnection with `retry` and
//! `Last-Event-ID`).
//!
//! The suite's auth scenarios serve real OAuth-protected MCP servers (401 with
//! `WWW-Authenticate`, protected resource metadata at each place the spec allows, and a
//! 2025-03-26 server with only authorization server metadata, or none). Shadowcat runs
//! no OAuth flow for an upstream, so those scenarios cannot pass; what they show is that
//! the client gets a clear error naming the authorization server the metadata names.

mod common;

use common::conformance::run_client_scenario;
use common::{bin, deps, fixture};
use serde_json::Value;

/// One scenario at a time: `sse-retry` checks the reconnection delay to within 200 ms,
/// which a loaded 2-core machine running the others beside it could miss.
static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn run_one(scenario: &str) -> common::conformance::ClientRun {
    let _one = ONE_AT_A_TIME.lock();
    run_client_scenario(&client_command(), scenario)
}

fn client_command() -> String {
    let d = deps();
    format!("{} {} {}", d.node, fixture("../clients/conformance_client.mjs"), bin())
}

/// Runs `scenario` and asserts every check it makes passed (no failure, no warning) and
/// that the checks named in `expected` were made.
fn passes(scenario: &str, expected: &[&str]) {
    let run = run_one(scenario);
    assert!(run.passed, "{scenario}: the suite failed:\n{}", run.log);
    let checks = run.checks;
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

/// Runs an auth scenario; returns the error the client got (`{code, message, data}`)
/// and the scenario's checks.
fn refused(scenario: &str) -> (Value, Vec<Value>) {
    let run = run_one(scenario);
    let line = run.client_stdout.lines().last().unwrap_or_default();
    let error: Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("{scenario}: no error line from the client:\n{}", run.log));
    (error, run.checks)
}

fn check_passed(checks: &[Value], id: &str) -> bool {
    checks.iter().any(|c| c["id"] == id && c["status"] == "SUCCESS")
}

#[test]
fn a_401_names_the_authorization_server_from_the_protected_resource_metadata() {
    // (scenario, where the metadata is, how the authorization server URL ends)
    let cases = [
        ("auth/metadata-default", "/.well-known/oauth-protected-resource/mcp", ""),
        ("auth/metadata-var1", "/.well-known/oauth-protected-resource/mcp", ""),
        ("auth/metadata-var2", "/.well-known/oauth-protected-resource", "/tenant1"),
        ("auth/metadata-var3", "/custom/metadata/location.json", "/tenant1"),
    ];
    for (scenario, metadata, suffix) in cases {
        let (error, checks) = refused(scenario);
        assert_eq!(error["code"], -32003, "{scenario}: {error}");
        assert_eq!(error["data"]["httpStatus"], 401, "{scenario}: {error}");
        let server = error["data"]["authorizationServers"][0].as_str().unwrap_or_else(|| panic!("{scenario}: {error}"));
        assert!(server.starts_with("http://localhost:") && server.ends_with(suffix), "{scenario}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("authorization server {server}")),
            "{scenario}: the message names it: {message}"
        );
        let at = error["data"]["metadata"].as_str().unwrap_or_default();
        assert!(at.ends_with(metadata), "{scenario}: read from {at}");
        assert!(check_passed(&checks, "prm-pathbased-requested"), "{scenario}: the metadata was fetched: {checks:#?}");
    }
}

#[test]
fn a_401_from_a_2025_03_26_server_names_its_origin() {
    let (error, _) = refused("auth/2025-03-26-oauth-metadata-backcompat");
    let server = error["data"]["authorizationServers"][0].as_str().unwrap_or_default();
    assert!(server.starts_with("http://localhost:"), "{error}");
    assert!(
        error["data"]["metadata"].as_str().is_some_and(|m| m.ends_with("/.well-known/oauth-authorization-server")),
        "{error}"
    );
    // No metadata at all: the 2025-03-26 default (the origin, default endpoints).
    let (error, _) = refused("auth/2025-03-26-oauth-endpoint-fallback");
    assert_eq!(error["data"]["byDefault"], true, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("its origin http://localhost:"), "{message}");
    assert!(message.contains("/.well-known/oauth-protected-resource"), "the URLs tried are named: {message}");
}
