//! The diagnostic fixtures of the 2026-07-28 scenarios: the deliberately ungated sampling
//! request, the streamed elicitation, logging, the list-change triggers, and the
//! resource-not-found error.

use serde_json::{json, Value};

use super::{first_text, full_capabilities, Client};

fn names<'a>(list: &'a Value, member: &str) -> Vec<&'a str> {
    list[member].as_array().expect("a list").iter().filter_map(|item| item["name"].as_str()).collect()
}

#[tokio::test]
async fn missing_capability_asks_for_sampling_anyway() {
    let mut client = Client::connected(json!({})).await;
    let id = client.send_request("tools/call", json!({ "name": "test_missing_capability" })).await;
    let request = client.recv_server_request("sampling/createMessage", "needs_sampling").await;
    let answer = json!({ "role": "assistant", "content": { "type": "text", "text": "hello" }, "model": "m" });
    client.reply(&request, answer).await;
    let (response, _) = client.recv_response(&id).await;
    assert_eq!(first_text(&response["result"]), "Sampled: hello");

    // What a bridge answers for a client without the capability.
    let id = client.send_request("tools/call", json!({ "name": "test_missing_capability" })).await;
    let request = client.recv_server_request("sampling/createMessage", "needs_sampling").await;
    let refusal = json!({ "code": -32600, "message": "the client did not declare sampling" });
    client.send(json!({ "jsonrpc": "2.0", "id": request["id"], "error": refusal })).await;
    let (response, _) = client.recv_response(&id).await;
    assert_eq!(response["result"]["isError"], true);
    client.finish().await;
}

#[tokio::test]
async fn streaming_elicitation_asks_for_a_stream_name() {
    let mut client = Client::connected(full_capabilities()).await;
    let id = client.send_request("tools/call", json!({ "name": "test_streaming_elicitation" })).await;
    let request = client.recv_server_request("elicitation/create", "stream_name").await;
    assert!(request["params"]["message"].as_str().is_some_and(|m| m.contains("stream")), "{request}");
    client.reply(&request, json!({ "action": "accept", "content": { "name": "alpha" } })).await;
    let (response, _) = client.recv_response(&id).await;
    assert_eq!(first_text(&response["result"]), "Stream name: alpha");
    client.finish().await;

    let mut client = Client::connected(json!({})).await;
    let result = client.call_tool("test_streaming_elicitation", json!({})).await;
    assert_eq!(result["isError"], true);
    client.finish().await;
}

#[tokio::test]
async fn logging_tool_logs_at_info_when_the_level_allows() {
    let mut client = Client::connected(json!({})).await;
    let id = client.send_request("tools/call", json!({ "name": "test_logging_tool" })).await;
    let (response, before) = client.recv_response(&id).await;
    let data: Vec<&str> = before.iter().filter_map(|m| m["params"]["data"].as_str()).collect();
    assert_eq!(data, ["Tool execution started", "Tool execution completed"]);
    assert!(before.iter().all(|m| m["method"] == "notifications/message" && m["params"]["level"] == "info"));
    assert_eq!(first_text(&response["result"]), "Tool with logging executed successfully");

    client.request_ok("logging/setLevel", json!({ "level": "warning" })).await;
    let id = client.send_request("tools/call", json!({ "name": "test_logging_tool" })).await;
    let (response, before) = client.recv_response(&id).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(first_text(&response["result"]), "Tool with logging executed successfully");
    client.finish().await;
}

#[tokio::test]
async fn trigger_tool_change_toggles_a_tool_and_notifies() {
    let mut client = Client::connected(json!({})).await;
    let listed = client.request_ok("tools/list", json!({})).await;
    assert!(!names(&listed, "tools").contains(&"test_dynamic_tool"));
    let unknown = client.request_err("tools/call", json!({ "name": "test_dynamic_tool" })).await;
    assert_eq!(unknown["code"], -32602);

    let id = client.send_request("tools/call", json!({ "name": "test_trigger_tool_change" })).await;
    let (response, before) = client.recv_response(&id).await;
    assert_eq!(before, [json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {} })]);
    assert_eq!(first_text(&response["result"]), "added tool test_dynamic_tool");
    let listed = client.request_ok("tools/list", json!({})).await;
    assert!(names(&listed, "tools").contains(&"test_dynamic_tool"));
    let called = client.call_tool("test_dynamic_tool", json!({})).await;
    assert!(called.get("isError").is_none(), "{called}");

    let id = client.send_request("tools/call", json!({ "name": "test_trigger_tool_change" })).await;
    let (response, before) = client.recv_response(&id).await;
    assert_eq!(before[0]["method"], "notifications/tools/list_changed");
    assert_eq!(first_text(&response["result"]), "removed tool test_dynamic_tool");
    let listed = client.request_ok("tools/list", json!({})).await;
    assert!(!names(&listed, "tools").contains(&"test_dynamic_tool"));
    client.finish().await;
}

#[tokio::test]
async fn trigger_prompt_change_toggles_a_prompt_and_notifies() {
    let mut client = Client::connected(json!({})).await;
    let error = client.request_err("prompts/get", json!({ "name": "test_dynamic_prompt" })).await;
    assert_eq!(error["code"], -32602);

    let id = client.send_request("tools/call", json!({ "name": "test_trigger_prompt_change" })).await;
    let (response, before) = client.recv_response(&id).await;
    assert_eq!(before, [json!({ "jsonrpc": "2.0", "method": "notifications/prompts/list_changed", "params": {} })]);
    assert_eq!(first_text(&response["result"]), "added prompt test_dynamic_prompt");
    let listed = client.request_ok("prompts/list", json!({})).await;
    assert!(names(&listed, "prompts").contains(&"test_dynamic_prompt"));
    let got = client.request_ok("prompts/get", json!({ "name": "test_dynamic_prompt" })).await;
    assert_eq!(got["messages"][0]["role"], "user");

    client.call_tool("test_trigger_prompt_change", json!({})).await;
    let listed = client.request_ok("prompts/list", json!({})).await;
    assert!(!names(&listed, "prompts").contains(&"test_dynamic_prompt"));
    client.finish().await;
}

#[tokio::test]
async fn unknown_resource_is_the_legacy_not_found_error() {
    let mut client = Client::connected(json!({})).await;
    let uri = "test://nonexistent-resource-for-conformance-testing";
    let error = client.request_err("resources/read", json!({ "uri": uri })).await;
    assert_eq!(error["code"], -32002);
    assert_eq!(error["data"], json!({ "uri": uri }));
    client.finish().await;
}
