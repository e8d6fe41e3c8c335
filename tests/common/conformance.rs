//! Running the official MCP conformance suite (`@modelcontextprotocol/conformance`)
//! and reading its per-scenario results.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// One scenario's result: passed (no FAILURE check) and its failing checks.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub passed: bool,
    pub failures: Vec<String>,
}

/// Runs the server suite (`--suite all`) against `url`; results by scenario name.
pub fn run_server_suite(url: &str, extra: &[&str]) -> BTreeMap<String, Scenario> {
    let deps = super::deps();
    let mut args = vec!["--suite", "all"];
    args.extend_from_slice(extra);
    run_suite(&deps.conformance_js, url, &args)
}

/// Runs the 0.2 suite with `--requirements <revision>` against `url`.
pub fn run_requirements(url: &str, revision: &str) -> BTreeMap<String, Scenario> {
    let deps = super::deps();
    run_suite(&deps.conformance_next_js, url, &["--requirements", revision])
}

/// The server scenarios a revision requires (the `server:` list of the 0.2 suite's
/// frozen requirements file).
pub fn required_scenarios(revision: &str) -> Vec<String> {
    let deps = super::deps();
    let js = std::path::Path::new(&deps.conformance_next_js);
    let file = js.parent().and_then(|d| d.parent()).unwrap().join("requirements").join(format!("{revision}.yaml"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .skip_while(|l| l.trim_end() != "server:")
        .skip(1)
        .take_while(|l| l.starts_with("  - ") || l.trim().is_empty() || l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix("  - ").map(|s| s.trim().to_owned()))
        .collect()
}

fn run_suite(js: &str, url: &str, extra: &[&str]) -> BTreeMap<String, Scenario> {
    let deps = super::deps();
    let out = super::scratch_dir("conformance");
    let output = Command::new(&deps.node)
        .arg(js)
        .args(["server", "--url", url, "-o"])
        .arg(&out)
        .args(extra)
        .output()
        .expect("run the conformance CLI");
    let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let mut results = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        let dir = entry.file_name().to_string_lossy().into_owned();
        // server-<scenario>-<24-char timestamp>
        let Some(name) = dir.strip_prefix("server-").filter(|n| n.len() > 25).map(|n| n[..n.len() - 25].to_owned())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) else {
            results.insert(name, Scenario { passed: false, failures: vec!["no checks.json".into()] });
            continue;
        };
        let checks: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
        let failures: Vec<String> = checks
            .iter()
            .filter(|c| c["status"] == "FAILURE")
            .map(|c| format!("{}: {}", c["id"], c["errorMessage"].as_str().or(c["description"].as_str()).unwrap_or("")))
            .collect();
        results.insert(name, Scenario { passed: failures.is_empty(), failures });
    }
    assert!(!results.is_empty(), "the suite produced no results; its output:\n{log}");
    results
}

/// Names of the scenarios that passed.
pub fn passed(results: &BTreeMap<String, Scenario>) -> Vec<String> {
    results.iter().filter(|(_, s)| s.passed).map(|(n, _)| n.clone()).collect()
}

/// A readable list of failed scenarios and their failing checks.
pub fn failures(results: &BTreeMap<String, Scenario>) -> String {
    results
        .iter()
        .filter(|(_, s)| !s.passed)
        .map(|(n, s)| format!("{n}: {}", s.failures.join("; ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One client scenario's run.
pub struct ClientRun {
    /// The suite's verdict (exit 0).
    pub passed: bool,
    /// The scenario's checks.
    pub checks: Vec<Value>,
    /// What the client printed on stdout.
    pub client_stdout: String,
    /// The suite's own output.
    pub log: String,
}

/// Runs one client scenario of the suite with `command` as the client (the suite
/// appends the scenario server's URL).
pub fn run_client_scenario(command: &str, scenario: &str) -> ClientRun {
    let deps = super::deps();
    let out = super::scratch_dir("conformance-client");
    let output = Command::new(&deps.node)
        .arg(&deps.conformance_js)
        .args(["client", "--command", command, "--scenario", scenario, "-o"])
        .arg(&out)
        .env("SHADOWCAT_NODE_MODULES", &deps.node_modules)
        .output()
        .expect("run the conformance CLI");
    let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    // The results are in <out>/<scenario>-<timestamp>/ (auth scenarios: <out>/auth/...).
    let mut dirs = vec![out];
    let mut found = None;
    while let Some(dir) = dirs.pop() {
        if dir.join("checks.json").is_file() {
            found = Some(dir);
            break;
        }
        dirs.extend(std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let dir = found.unwrap_or_else(|| panic!("{scenario}: no checks.json; the suite's output:\n{log}"));
    let checks = serde_json::from_str(&std::fs::read_to_string(dir.join("checks.json")).unwrap()).unwrap();
    let client_stdout = std::fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default();
    ClientRun { passed: output.status.success(), checks, client_stdout, log }
}
