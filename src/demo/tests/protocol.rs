//! Lifecycle, framing and JSON-RPC error handling.

use serde_json::{json, Value};

use super::{full_capabilities, Client};

#[tokio::test]
async fn initialize_negotiates_the_version() {
    for (requested, expected) in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut client = Client::start();
        let result = client.initialize(requested, json!({})).await;
        assert_eq!(result["protocolVersion"], expected, "requested {requested}");
        client.finish().await;
    }
}

#[tokio::test]
async fn initialize_reports_server_info_and_capabilities() {
    let mut client = Client::start();
    let result = client.initialize("2025-06-18", full_capabilities()).await;
    assert_eq!(result["serverInfo"]["name"], "shadowcat-demo");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    let caps = &result["capabilities"];
    assert_eq!(caps["tools"], json!({ "listChanged": true }));
    assert_eq!(caps["resources"], json!({ "subscribe": true, "listChanged": true }));
    assert_eq!(caps["prompts"], json!({ "listChanged": true }));
    assert_eq!(caps["logging"], json!({}));
    assert_eq!(caps["completions"], json!({}));
    // Notifications are accepted silently.
    client.notify("notifications/initialized", json!({})).await;
    client.notify("notifications/roots/list_changed", json!({})).await;
    client.notify("notifications/something/else", json!({})).await;
    client.expect_silence(100).await;
    assert_eq!(client.request_ok("ping", json!({})).await, json!({}));
    client.finish().await;
}

#[tokio::test]
async fn ids_are_echoed_unchanged() {
    let mut client = Client::start();
    for id in [json!("abc"), json!(0), json!(-5), json!(9_007_199_254_740_993_u64), json!("42")] {
        client.send(json!({ "jsonrpc": "2.0", "id": id, "method": "ping" })).await;
        let response = client.recv().await;
        assert_eq!(response["id"], id);
        assert_eq!(response["result"], json!({}));
    }
    client.finish().await;
}

#[tokio::test]
async fn malformed_json_is_a_parse_error_and_serving_goes_on() {
    let mut client = Client::start();
    client.send_raw("{not json").await;
    let response = client.recv().await;
    assert_eq!(response["error"]["code"], -32700);
    assert_eq!(response["id"], Value::Null);
    // Invalid UTF-8 is a parse error too.
    client.input_bytes(b"\xff\xfe\n").await;
    assert_eq!(client.recv().await["error"]["code"], -32700);
    // Blank lines are ignored.
    client.send_raw("   ").await;
    assert_eq!(client.request_ok("ping", json!({})).await, json!({}));
    client.finish().await;
}

#[tokio::test]
async fn invalid_requests_are_rejected() {
    let mut client = Client::start();
    let cases = [
        (json!([1, 2]), Value::Null),
        (json!("hello"), Value::Null),
        (json!({ "id": 3, "method": "ping" }), json!(3)),
        (json!({ "jsonrpc": "2.0", "id": 4, "method": 12 }), json!(4)),
        (json!({ "jsonrpc": "2.0", "id": null, "method": "ping" }), Value::Null),
        (json!({ "jsonrpc": "2.0", "id": { "x": 1 }, "method": "ping" }), Value::Null),
        (json!({ "jsonrpc": "2.0", "id": 5 }), json!(5)),
    ];
    for (message, id) in cases {
        client.send(message.clone()).await;
        let response = client.recv().await;
        assert_eq!(response["error"]["code"], -32600, "for {message}");
        assert_eq!(response["id"], id, "for {message}");
    }
    assert_eq!(client.request_ok("ping", json!({})).await, json!({}));
    client.finish().await;
}

#[tokio::test]
async fn unknown_methods_and_bad_params() {
    let mut client = Client::connected(json!({})).await;
    let error = client.request_err("no/such/method", json!({})).await;
    assert_eq!(error["code"], -32601);
    let id = client.send_request("ping", json!([1, 2])).await;
    assert_eq!(client.recv_response(&id).await.0["error"]["code"], -32602);
    for (method, params) in [
        ("tools/call", json!({})),
        ("tools/call", json!({ "name": 7 })),
        ("tools/call", json!({ "name": "echo", "arguments": [1] })),
        ("tools/call", json!({ "name": "no_such_tool" })),
        ("resources/read", json!({})),
        ("prompts/get", json!({ "name": "no_such_prompt" })),
        ("logging/setLevel", json!({ "level": "loud" })),
        ("completion/complete", json!({ "ref": { "type": "ref/prompt", "name": "greeting" } })),
    ] {
        let error = client.request_err(method, params.clone()).await;
        assert_eq!(error["code"], -32602, "{method} {params}");
    }
    client.finish().await;
}

#[tokio::test]
async fn requests_run_concurrently() {
    let mut client = Client::connected(json!({})).await;
    let slow = client
        .send_request("tools/call", json!({ "name": "slow", "arguments": { "steps": 3, "delay_ms": 300 } }))
        .await;
    let ping = client.send_request("ping", json!({})).await;
    let first = client.recv().await;
    assert_eq!(first["id"], ping, "ping must not wait for the slow tool");
    let (response, _) = client.recv_response(&slow).await;
    assert_eq!(response["result"]["content"][0]["text"], "done after 3 steps");
    client.finish().await;
}

#[tokio::test]
async fn eof_lets_running_requests_finish() {
    let mut client = Client::connected(json!({})).await;
    let id =
        client.send_request("tools/call", json!({ "name": "slow", "arguments": { "steps": 2, "delay_ms": 50 } })).await;
    let Client { input, mut output, server, .. } = client;
    drop(input);
    let line = output.next_line().await.expect("read").expect("a response after EOF");
    let response: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(response["id"], id);
    assert!(output.next_line().await.expect("read").is_none(), "output is shut down");
    assert!(server.await.expect("join").is_ok());
}

#[tokio::test]
async fn tools_list_ignores_a_cursor() {
    let mut client = Client::connected(json!({})).await;
    for method in ["tools/list", "resources/list", "resources/templates/list", "prompts/list"] {
        let plain = client.request_ok(method, json!({})).await;
        let with_cursor = client.request_ok(method, json!({ "cursor": "whatever" })).await;
        assert_eq!(plain, with_cursor, "{method}");
        assert!(plain.get("nextCursor").is_none());
    }
    client.finish().await;
}

impl Client {
    async fn input_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.input.write_all(bytes).await.expect("write");
    }
}
