//! The official Python SDK (`mcp` on PyPI) as a real client through the gateway.

mod common;

use std::process::Command;

use common::{demo_config, deps, Gateway};

fn run_client(url: &str, scenario: &str) {
    let d = deps();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_client.py");
    let out = Command::new(&d.python).args([script, url, scenario]).output().expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client ({scenario}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l.contains("\"step\": \"summary\"") && l.contains("\"ok\": true")), "{stdout}");
}

#[test]
fn python_sdk_lists_calls_reads_and_prompts_through_the_gateway_to_the_demo_server() {
    let gw = Gateway::start(&demo_config("", ""));
    run_client(&gw.mcp_url, "demo");
}

#[test]
fn python_sdk_through_the_gateway_to_server_everything_over_stdio() {
    let d = deps();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  everything:\n    stdio:\n      command: {}\n      args: ['{}', stdio]\n",
        d.node, d.everything_js
    );
    let gw = Gateway::start(&yaml);
    run_client(&gw.mcp_url, "everything");
}
