//! A 2025-11-25 upstream's "URL elicitation required" error (-32042) reaches a
//! 2026-07-28 client as an `input_required` URL elicitation; the retry sends the call
//! again.

mod common;

use common::{demo_config, Gateway, Http};
use http::Method;
use serde_json::{json, Value};

async fn call(http: &Http, url: &str, id: u64, caps: Value, extra: Value) -> (u16, Value) {
    let mut params = json!({
        "name": "test_url_elicitation_required",
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": caps,
        },
    });
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string();
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "test_url_elicitation_required"),
    ];
    let reply = http.send(Method::POST, url, &headers, Some(&body)).await;
    let answer = reply.messages().into_iter().find(|m| m["id"] == id).unwrap_or_else(|| reply.json());
    (reply.status, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn url_elicitation_required_becomes_input_required_and_the_retry_calls_again() {
    let gw = Gateway::start(&demo_config("", "      pool:\n        max: 1\n"));
    let http = Http::new();
    let url_caps = json!({"elicitation": {"url": {}}});

    let (status, first) = call(&http, &gw.mcp_url, 1, url_caps.clone(), json!({})).await;
    assert_eq!(status, 200, "{first}");
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let ask = &result["inputRequests"]["elicitation"];
    assert_eq!(ask["method"], "elicitation/create", "{first}");
    assert_eq!(ask["params"]["mode"], "url");
    assert_eq!(ask["params"]["url"], "https://auth.example/authorize?session=demo");
    assert!(ask["params"].get("elicitationId").is_none(), "2026-07-28 has no elicitationId: {ask}");
    let state = result["requestState"].as_str().expect("requestState").to_owned();

    let retry = json!({"inputResponses": {"elicitation": {"action": "accept"}}, "requestState": state});
    let (status, done) = call(&http, &gw.mcp_url, 2, url_caps, retry).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "authorized", "{done}");

    // A client without URL elicitation gets -32021 (on a fresh upstream session).
    let gw = Gateway::start(&demo_config("", ""));
    let (status, refused) = call(&http, &gw.mcp_url, 3, json!({"elicitation": {}}), json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_i64()), (400, Some(-32021)), "{refused}");
    assert!(refused["error"]["data"]["requiredCapabilities"]["elicitation"]["url"].is_object(), "{refused}");
}
