//! Tools: listing, the demo's own tools, progress, cancellation, logging and the
//! conformance fixtures that need no client round trip.

use serde_json::{json, Value};

use super::{first_text, Client};

const FIXTURE_TOOLS: [&str; 14] = [
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_tool_with_logging",
    "test_tool_with_progress",
    "test_error_handling",
    "test_reconnection",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "json_schema_2020_12_tool",
];

#[tokio::test]
async fn tools_list_has_every_tool_with_description_and_schema() {
    let mut client = Client::connected(json!({})).await;
    let result = client.request_ok("tools/list", json!({})).await;
    let tools = result["tools"].as_array().expect("tools array");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    let own = ["echo", "add", "slow", "sample", "elicit", "roots", "log", "touch_resource"];
    for name in FIXTURE_TOOLS.iter().chain(own.iter()) {
        assert!(names.contains(name), "missing tool {name}");
    }
    for tool in tools {
        assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()), "{tool}");
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
    }
    let schema_tool = tools.iter().find(|t| t["name"] == "json_schema_2020_12_tool").expect("tool");
    let schema = &schema_tool["inputSchema"];
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(schema["$defs"]["address"].is_object());
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["address"]["$ref"], "#/$defs/address");
    let add = tools.iter().find(|t| t["name"] == "add").expect("add");
    assert_eq!(add["outputSchema"]["properties"]["sum"]["type"], "number");
    client.finish().await;
}

#[tokio::test]
async fn echo_and_add() {
    let mut client = Client::connected(json!({})).await;
    let echoed = client.call_tool("echo", json!({ "message": "héllo\nworld" })).await;
    assert_eq!(first_text(&echoed), "héllo\nworld");
    assert!(echoed.get("isError").is_none());

    let sum = client.call_tool("add", json!({ "a": 2, "b": 40 })).await;
    assert_eq!(first_text(&sum), "42");
    assert_eq!(sum["structuredContent"], json!({ "sum": 42 }));
    let sum = client.call_tool("add", json!({ "a": 1.5, "b": -0.25 })).await;
    assert_eq!(first_text(&sum), "1.25");
    assert_eq!(sum["structuredContent"]["sum"], 1.25);
    let sum = client.call_tool("add", json!({ "a": i64::MAX, "b": 1 })).await;
    assert!(sum["structuredContent"]["sum"].as_f64().is_some_and(|s| s > 9.2e18));

    for bad in [json!({ "a": 1 }), json!({ "a": "1", "b": 2 }), json!({ "a": 1e308, "b": 1e308 })] {
        let result = client.call_tool("add", bad.clone()).await;
        assert_eq!(result["isError"], true, "{bad}");
    }
    let missing = client.call_tool("echo", json!({})).await;
    assert_eq!(missing["isError"], true);
    client.finish().await;
}

#[tokio::test]
async fn slow_reports_progress_with_the_token_as_given() {
    let mut client = Client::connected(json!({})).await;
    for token in [json!("tok-1"), json!(17)] {
        let params = json!({
            "name": "slow",
            "arguments": { "steps": 3, "delay_ms": 10 },
            "_meta": { "progressToken": token },
        });
        let id = client.send_request("tools/call", params).await;
        let (response, before) = client.recv_response(&id).await;
        assert_eq!(response["result"]["content"][0]["text"], "done after 3 steps");
        assert_eq!(before.len(), 3);
        for (step, note) in before.iter().enumerate() {
            assert_eq!(note["method"], "notifications/progress");
            assert_eq!(note["params"]["progressToken"], token);
            assert_eq!(note["params"]["progress"], step + 1);
            assert_eq!(note["params"]["total"], 3);
            assert_eq!(note["params"]["message"], format!("step {} of 3", step + 1));
        }
    }
    // Without a token there is no progress at all.
    let id =
        client.send_request("tools/call", json!({ "name": "slow", "arguments": { "steps": 2, "delay_ms": 1 } })).await;
    let (_, before) = client.recv_response(&id).await;
    assert!(before.is_empty());
    let bad = client.call_tool("slow", json!({ "steps": -1 })).await;
    assert_eq!(bad["isError"], true);
    client.finish().await;
}

#[tokio::test]
async fn cancelled_requests_stop_and_send_nothing() {
    let mut client = Client::connected(json!({})).await;
    let params = json!({
        "name": "slow",
        "arguments": { "steps": 50, "delay_ms": 20 },
        "_meta": { "progressToken": "p" },
    });
    let id = client.send_request("tools/call", params).await;
    let first = client.recv().await;
    assert_eq!(first["method"], "notifications/progress");
    client.notify("notifications/cancelled", json!({ "requestId": id, "reason": "test" })).await;
    // The cancel is handled before the ping that follows it; anything before the ping's
    // answer can only be progress sent before the cancel.
    let ping = client.send_request("ping", json!({})).await;
    let (_, before) = client.recv_response(&ping).await;
    assert!(before.iter().all(|m| m["method"] == "notifications/progress"), "{before:?}");
    client.expect_silence(300).await;
    // A string id that was never used, and a cancel for a finished request, are ignored.
    client.notify("notifications/cancelled", json!({ "requestId": "nope" })).await;
    client.notify("notifications/cancelled", json!({ "requestId": id })).await;
    assert_eq!(client.request_ok("ping", json!({})).await, json!({}));
    client.finish().await;
}

#[tokio::test]
async fn log_respects_set_level() {
    let mut client = Client::connected(json!({})).await;
    let id = client.send_request("tools/call", json!({ "name": "log" })).await;
    let (response, before) = client.recv_response(&id).await;
    let levels: Vec<&str> = before.iter().filter_map(|m| m["params"]["level"].as_str()).collect();
    assert_eq!(levels, ["debug", "info", "warning", "error"]);
    assert!(before.iter().all(|m| m["method"] == "notifications/message"));
    assert_eq!(response["result"]["content"][0]["text"], "sent 4 of 4 log messages");

    assert_eq!(client.request_ok("logging/setLevel", json!({ "level": "warning" })).await, json!({}));
    let id = client.send_request("tools/call", json!({ "name": "log" })).await;
    let (_, before) = client.recv_response(&id).await;
    let levels: Vec<&str> = before.iter().filter_map(|m| m["params"]["level"].as_str()).collect();
    assert_eq!(levels, ["warning", "error"]);

    // The fixture logs at info: filtered at warning, delivered at debug.
    let id = client.send_request("tools/call", json!({ "name": "test_tool_with_logging" })).await;
    assert!(client.recv_response(&id).await.1.is_empty());
    client.request_ok("logging/setLevel", json!({ "level": "debug" })).await;
    let id = client.send_request("tools/call", json!({ "name": "test_tool_with_logging" })).await;
    let (response, before) = client.recv_response(&id).await;
    let data: Vec<&str> = before.iter().filter_map(|m| m["params"]["data"].as_str()).collect();
    assert_eq!(data, ["Tool execution started", "Tool processing data", "Tool execution completed"]);
    assert!(before.iter().all(|m| m["params"]["level"] == "info"));
    assert_eq!(response["result"]["content"][0]["text"], "Tool with logging executed successfully");
    client.finish().await;
}

#[tokio::test]
async fn fixture_progress_counts() {
    let mut client = Client::connected(json!({})).await;
    let params = json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": 3 } });
    let id = client.send_request("tools/call", params).await;
    let (response, before) = client.recv_response(&id).await;
    let progress: Vec<&Value> = before.iter().map(|m| &m["params"]["progress"]).collect();
    assert_eq!(progress, [&json!(0), &json!(50), &json!(100)]);
    assert!(before.iter().all(|m| m["params"]["total"] == 100 && m["params"]["progressToken"] == 3));
    assert_eq!(response["result"]["content"][0]["text"], "Tool with progress executed successfully");
    client.finish().await;
}

#[tokio::test]
async fn fixture_contents() {
    let mut client = Client::connected(json!({})).await;
    let text = client.call_tool("test_simple_text", json!({})).await;
    assert_eq!(text["content"], json!([{ "type": "text", "text": "This is a simple text response for testing." }]));

    let image = client.call_tool("test_image_content", json!({})).await;
    assert_eq!(image["content"][0]["type"], "image");
    assert_eq!(image["content"][0]["mimeType"], "image/png");
    assert!(image["content"][0]["data"].as_str().is_some_and(|d| d.starts_with("iVBOR")));

    let audio = client.call_tool("test_audio_content", json!({})).await;
    assert_eq!(audio["content"][0]["type"], "audio");
    assert_eq!(audio["content"][0]["mimeType"], "audio/wav");
    assert!(audio["content"][0]["data"].as_str().is_some_and(|d| d.starts_with("UklGR")));

    let embedded = client.call_tool("test_embedded_resource", json!({})).await;
    let resource = &embedded["content"][0]["resource"];
    assert_eq!(embedded["content"][0]["type"], "resource");
    assert_eq!(resource["uri"], "test://embedded-resource");
    assert_eq!(resource["mimeType"], "text/plain");
    assert_eq!(resource["text"], "This is an embedded resource content.");

    let mixed = client.call_tool("test_multiple_content_types", json!({})).await;
    let types: Vec<&str> =
        mixed["content"].as_array().expect("content").iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types, ["text", "image", "resource"]);
    assert_eq!(mixed["content"][2]["resource"]["text"], "{\"test\":\"data\",\"value\":123}");

    let error = client.call_tool("test_error_handling", json!({})).await;
    assert_eq!(error["isError"], true);
    assert_eq!(first_text(&error), "This tool intentionally returns an error for testing");

    let reconnection = client.call_tool("test_reconnection", json!({})).await;
    assert_eq!(first_text(&reconnection), "Reconnection test completed successfully");
    assert!(reconnection.get("isError").is_none());

    let schema = client.call_tool("json_schema_2020_12_tool", json!({ "name": "x" })).await;
    assert_eq!(first_text(&schema), "Received: {\"name\":\"x\"}");
    // No arguments at all is fine for the argument-less fixtures.
    let bare = client.request_ok("tools/call", json!({ "name": "test_simple_text" })).await;
    assert_eq!(first_text(&bare), "This is a simple text response for testing.");
    client.finish().await;
}
