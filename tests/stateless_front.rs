//! Stateless (2026-07-28) requests on the HTTP front: the README's table of checks,
//! in order, against the real binary. None of these requests reaches the upstream.

mod common;

use common::{demo_config, Gateway, Http};
use http::Method;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

fn call(method: &str, params: &str) -> String {
    let sep = if params.is_empty() { "" } else { "," };
    format!(r#"{{"jsonrpc":"2.0","id":9,"method":"{method}","params":{{{params}{sep}{META}}}}}"#)
}

/// Headers, body, expected status and JSON-RPC code.
type Probe<'a> = (Vec<(&'a str, &'a str)>, String, u16, i64);

fn readme_table() -> Vec<(String, u16, i64)> {
    common::readme_checks("## Stateless requests (2026-07-28): checks in order")
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_checks_answer_as_the_readme_table_says_in_its_order() {
    let gw = Gateway::start(&demo_config("", ""));
    let http = Http::new();
    let base: Vec<(&str, &str)> = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2026-07-28"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = base.clone();
        h.extend_from_slice(extra);
        h
    };
    let list = call("tools/list", "");
    let echo = call("tools/call", r#""name":"echo","arguments":{"message":"hi"}"#);
    let no_caps = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let v999 = list.replace("2026-07-28", "v999.0.0");
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (with(&[("mcp-method", "tools/list")]), format!("[{list}]")),
        (with(&[("mcp-method", "TOOLS/LIST")]), list.clone()),
        (with(&[("mcp-method", "tools/list")]), no_caps.to_owned()),
        (vec![base[0], base[1], ("mcp-protocol-version", "v999.0.0"), ("mcp-method", "tools/list")], v999.clone()),
        (with(&[("mcp-method", "tools/call")]), echo.clone()),
        (with(&[("mcp-method", "ping")]), call("ping", "")),
    ];
    let table = readme_table();
    assert_eq!(table.len(), cases.len(), "README table rows: {table:?}");
    for ((label, status, code), (headers, body)) in table.iter().zip(cases) {
        let reply = http.send(Method::POST, &gw.mcp_url, &headers, Some(&body)).await;
        assert_eq!(reply.status, *status, "row {label}: {}", reply.text());
        assert_eq!(reply.error_code(), *code, "row {label}: {}", reply.text());
        assert!(reply.header("mcp-session-id").is_none(), "row {label}");
    }

    // Each probe of the conformance suite's server-stateless scenario, and more.
    let probes: Vec<Probe> = vec![
        // the header version and the body's differ: a mismatch, before the version check
        (with(&[("mcp-method", "tools/list")]), v999.clone(), 400, -32020),
        // the body alone says 2026-07-28: the header is then required
        (vec![base[0], base[1], ("mcp-method", "tools/list")], list.clone(), 400, -32020),
        (with(&[]), list.clone(), 400, -32020),
        (with(&[("mcp-method", "tools/list"), ("mcp-method", "tools/list")]), list.clone(), 400, -32020),
        (
            with(&[("mcp-method", "tools/list")]),
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}"#.into(),
            400,
            -32602,
        ),
        (
            with(&[("mcp-method", "tools/list")]),
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#.into(),
            400,
            -32602,
        ),
        (with(&[("mcp-method", "tools/call"), ("mcp-name", "other")]), echo.clone(), 400, -32020),
        (with(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?ZWNobw?=")]), echo.clone(), 400, -32020),
        (with(&[("mcp-method", "resources/read")]), call("resources/read", r#""uri":"demo://readme""#), 400, -32020),
        (with(&[("mcp-method", "initialize")]), call("initialize", ""), 404, -32601),
        (with(&[("mcp-method", "logging/setLevel")]), call("logging/setLevel", r#""level":"info""#), 404, -32601),
        (with(&[("mcp-method", "resources/subscribe")]), call("resources/subscribe", r#""uri":"x""#), 404, -32601),
        (with(&[("mcp-method", "tools/list")]), r#"{"jsonrpc":"2.0","id":9,"result":{}}"#.into(), 400, -32600),
    ];
    for (headers, body, status, code) in probes {
        let reply = http.send(Method::POST, &gw.mcp_url, &headers, Some(&body)).await;
        assert_eq!((reply.status, reply.error_code()), (status, code), "{headers:?} {body}: {}", reply.text());
        if body.contains(r#""id":9"#) && !body.contains("result") {
            assert_eq!(reply.json()["id"], 9, "the request's id is echoed: {}", reply.text());
        }
    }
    let both_v999 = vec![base[0], base[1], ("mcp-protocol-version", "v999.0.0"), ("mcp-method", "tools/list")];
    let reply = http.send(Method::POST, &gw.mcp_url, &both_v999, Some(&v999)).await;
    let data = &reply.json()["error"]["data"];
    assert_eq!(data["requested"], "v999.0.0");
    assert!(data["supported"].as_array().expect("supported").iter().any(|v| v == "2026-07-28"), "{data}");

    // A notification is accepted and not relayed; GET and DELETE do not exist.
    let note = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    let reply = http.send(Method::POST, &gw.mcp_url, &with(&[]), Some(note)).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    for method in [Method::GET, Method::DELETE] {
        let reply = http.send(method.clone(), &gw.mcp_url, &[("accept", "text/event-stream"), base[2]], None).await;
        assert_eq!(reply.status, 405, "{method}: {}", reply.text());
        assert_eq!(reply.header("allow").as_deref(), Some("POST"), "{method}");
    }
}
