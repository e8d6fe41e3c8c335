//! The fixtures of the 2026-07-28 `input-required-result-*` scenarios, driven as a bridging
//! gateway would: the server-to-client requests each makes, their key hints, the answers the
//! conformance harness gives, and the rounds (requests outstanding at the same time).

use serde_json::{json, Value};

use super::{first_text, full_capabilities, Client};

const FIXTURE_TOOLS: [&str; 8] = [
    "test_input_required_result_elicitation",
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities",
];

fn accept(content: Value) -> Value {
    json!({ "action": "accept", "content": content })
}

/// The sampling answer the conformance harness sends.
fn paris() -> Value {
    json!({
        "role": "assistant",
        "content": { "type": "text", "text": "The capital of France is Paris." },
        "model": "test-model",
        "stopReason": "endTurn",
    })
}

/// The roots answer the conformance harness sends.
fn test_root() -> Value {
    json!({ "roots": [{ "uri": "file:///test/root", "name": "Test Root" }] })
}

fn one_field_form(name: &str, kind: &str) -> Value {
    json!({ "type": "object", "properties": { name: { "type": kind } }, "required": [name] })
}

/// Starts `tools/call` of `name` without arguments; returns the call's id.
async fn start_call(client: &mut Client, name: &str) -> Value {
    client.send_request("tools/call", json!({ "name": name, "arguments": {} })).await
}

/// Waits for the result of call `id`, asserting that nothing else arrives first.
async fn finish_call(client: &mut Client, id: &Value) -> Value {
    let (response, before) = client.recv_response(id).await;
    assert!(before.is_empty(), "unexpected messages before the result: {before:?}");
    response["result"].clone()
}

#[tokio::test]
async fn fixtures_are_listed() {
    let mut client = Client::connected(json!({})).await;
    let tools = client.request_ok("tools/list", json!({})).await;
    let names: Vec<&str> =
        tools["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    for name in FIXTURE_TOOLS {
        assert!(names.contains(&name), "missing tool {name}");
    }
    let prompts = client.request_ok("prompts/list", json!({})).await;
    let prompt = prompts["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .find(|p| p["name"] == "test_input_required_result_prompt")
        .expect("the input-required prompt is listed");
    assert!(prompt.get("arguments").is_none(), "{prompt}");
    client.finish().await;
}

#[tokio::test]
async fn one_request_fixtures_hint_their_keys_and_use_the_answers() {
    let mut client = Client::connected(full_capabilities()).await;

    let id = start_call(&mut client, "test_input_required_result_elicitation").await;
    let request = client.recv_server_request("elicitation/create", "user_name").await;
    assert_eq!(request["params"]["requestedSchema"], one_field_form("name", "string"));
    client.reply(&request, accept(json!({ "name": "Alice" }))).await;
    assert_eq!(first_text(&finish_call(&mut client, &id).await), "Hello, Alice!");

    let id = start_call(&mut client, "test_input_required_result_sampling").await;
    let request = client.recv_server_request("sampling/createMessage", "capital_question").await;
    assert_eq!(request["params"]["messages"][0]["content"]["text"], "What is the capital of France?");
    assert_eq!(request["params"]["maxTokens"], 100);
    client.reply(&request, paris()).await;
    assert_eq!(first_text(&finish_call(&mut client, &id).await), "Sampled: The capital of France is Paris.");

    let id = start_call(&mut client, "test_input_required_result_list_roots").await;
    let request = client.recv_server_request("roots/list", "client_roots").await;
    assert_eq!(request["params"], json!({ "_meta": { "dev.shadowcat/inputKey": "client_roots" } }));
    client.reply(&request, test_root()).await;
    assert_eq!(first_text(&finish_call(&mut client, &id).await), "Roots: Test Root <file:///test/root>");
    client.finish().await;
}

#[tokio::test]
async fn state_fixtures_confirm_with_a_boolean() {
    let mut client = Client::connected(full_capabilities()).await;
    for tool in ["test_input_required_result_request_state", "test_input_required_result_tampered_state"] {
        let id = start_call(&mut client, tool).await;
        let request = client.recv_server_request("elicitation/create", "confirm").await;
        assert_eq!(request["params"]["requestedSchema"], one_field_form("ok", "boolean"), "{tool}");
        client.reply(&request, accept(json!({ "ok": true }))).await;
        let result = finish_call(&mut client, &id).await;
        assert!(result.get("isError").is_none(), "{tool}: {result}");
        assert!(first_text(&result).contains("state-ok"), "{tool}: {result}");

        let id = start_call(&mut client, tool).await;
        let request = client.recv_server_request("elicitation/create", "confirm").await;
        client.reply(&request, accept(json!({ "ok": false }))).await;
        let result = finish_call(&mut client, &id).await;
        assert_eq!(result["isError"], true, "{tool}: {result}");
        assert!(!first_text(&result).contains("state-ok"), "{tool}: {result}");
    }
    client.finish().await;
}

#[tokio::test]
async fn failed_answers_are_tool_errors() {
    let mut client = Client::connected(full_capabilities()).await;
    let id = start_call(&mut client, "test_input_required_result_elicitation").await;
    let request = client.recv_server_request("elicitation/create", "user_name").await;
    client.reply(&request, json!({ "action": "decline" })).await;
    let result = finish_call(&mut client, &id).await;
    assert_eq!(result["isError"], true);
    assert!(first_text(&result).contains("decline"), "{result}");

    // What a bridge might feed back for a malformed input response.
    let id = start_call(&mut client, "test_input_required_result_elicitation").await;
    let request = client.recv_server_request("elicitation/create", "user_name").await;
    client.reply(&request, json!(12345)).await;
    assert_eq!(finish_call(&mut client, &id).await["isError"], true);

    let id = start_call(&mut client, "test_input_required_result_sampling").await;
    let request = client.recv_server_request("sampling/createMessage", "capital_question").await;
    let refusal = json!({ "code": -32600, "message": "sampling refused" });
    client.send(json!({ "jsonrpc": "2.0", "id": request["id"], "error": refusal })).await;
    let result = finish_call(&mut client, &id).await;
    assert_eq!(result["isError"], true);
    assert!(first_text(&result).contains("sampling refused"), "{result}");
    client.finish().await;
}

#[tokio::test]
async fn requests_need_the_declared_capability() {
    let mut client = Client::connected(json!({})).await;
    for tool in FIXTURE_TOOLS {
        let id = start_call(&mut client, tool).await;
        // The result comes first: no server-to-client request was sent.
        let result = finish_call(&mut client, &id).await;
        assert_eq!(result["isError"], true, "{tool}: {result}");
        assert!(first_text(&result).contains("capabilit"), "{tool}: {result}");
    }
    client.finish().await;
}

#[tokio::test]
async fn multiple_inputs_are_all_outstanding_before_any_answer() {
    let mut client = Client::connected(full_capabilities()).await;
    let id = start_call(&mut client, "test_input_required_result_multiple_inputs").await;
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(client.recv().await);
    }
    client.expect_silence(100).await;
    let keyed = |key: &str| {
        requests
            .iter()
            .find(|r| r["params"]["_meta"]["dev.shadowcat/inputKey"] == key)
            .unwrap_or_else(|| panic!("no request with key {key}: {requests:?}"))
            .clone()
    };
    let (name, greeting, roots) = (keyed("user_name"), keyed("greeting"), keyed("client_roots"));
    assert_eq!(name["method"], "elicitation/create");
    assert_eq!(name["params"]["requestedSchema"], one_field_form("name", "string"));
    assert_eq!(greeting["method"], "sampling/createMessage");
    assert_eq!(roots["method"], "roots/list");
    // Answered in any order; the call completes only with all three.
    client.reply(&roots, test_root()).await;
    client.reply(&greeting, paris()).await;
    client.expect_silence(100).await;
    client.reply(&name, accept(json!({ "name": "Alice" }))).await;
    let result = finish_call(&mut client, &id).await;
    assert_eq!(
        first_text(&result),
        "All inputs received: name=Alice, greeting=The capital of France is Paris., roots=Test Root <file:///test/root>"
    );
    client.finish().await;
}

#[tokio::test]
async fn multiple_inputs_asks_nothing_unless_every_capability_is_declared() {
    let mut client = Client::connected(json!({ "sampling": {}, "elicitation": {} })).await;
    let id = start_call(&mut client, "test_input_required_result_multiple_inputs").await;
    let result = finish_call(&mut client, &id).await;
    assert_eq!(result["isError"], true);
    assert!(first_text(&result).contains("roots"), "{result}");
    client.finish().await;
}

#[tokio::test]
async fn multi_round_asks_the_second_question_after_the_first_answer() {
    let mut client = Client::connected(full_capabilities()).await;
    let id = start_call(&mut client, "test_input_required_result_multi_round").await;
    let step1 = client.recv_server_request("elicitation/create", "step1").await;
    assert_eq!(step1["params"]["requestedSchema"], one_field_form("name", "string"));
    client.expect_silence(100).await;
    client.reply(&step1, accept(json!({ "name": "Alice" }))).await;
    let step2 = client.recv_server_request("elicitation/create", "step2").await;
    assert_eq!(step2["params"]["requestedSchema"], one_field_form("color", "string"));
    assert_ne!(step1["id"], step2["id"]);
    client.reply(&step2, accept(json!({ "color": "blue" }))).await;
    assert_eq!(first_text(&finish_call(&mut client, &id).await), "Done: Alice likes blue");
    client.finish().await;
}

#[tokio::test]
async fn capabilities_fixture_asks_only_for_what_was_declared() {
    let tool = "test_input_required_result_capabilities";
    let mut client = Client::connected(json!({ "sampling": {} })).await;
    let id = start_call(&mut client, tool).await;
    let request = client.recv_server_request("sampling/createMessage", "greeting").await;
    client.reply(&request, paris()).await;
    let result = finish_call(&mut client, &id).await;
    assert_eq!(first_text(&result), "capability-scoped inputs received: greeting=The capital of France is Paris.");
    client.finish().await;

    let mut client = Client::connected(full_capabilities()).await;
    let id = start_call(&mut client, tool).await;
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(client.recv().await);
    }
    let mut keys: Vec<&str> =
        requests.iter().filter_map(|r| r["params"]["_meta"]["dev.shadowcat/inputKey"].as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["client_roots", "greeting", "user_name"]);
    for request in &requests {
        let answer = match request["method"].as_str() {
            Some("elicitation/create") => accept(json!({ "name": "Alice" })),
            Some("sampling/createMessage") => paris(),
            _ => test_root(),
        };
        client.reply(request, answer).await;
    }
    let result = finish_call(&mut client, &id).await;
    assert!(first_text(&result).contains("name=Alice"), "{result}");
    assert!(first_text(&result).contains("roots=Test Root"), "{result}");
    client.finish().await;
}

#[tokio::test]
async fn prompt_elicits_its_context() {
    let mut client = Client::connected(full_capabilities()).await;
    let id = client.send_request("prompts/get", json!({ "name": "test_input_required_result_prompt" })).await;
    let request = client.recv_server_request("elicitation/create", "user_context").await;
    assert_eq!(request["params"]["requestedSchema"], one_field_form("context", "string"));
    client.reply(&request, accept(json!({ "context": "test context" }))).await;
    let result = finish_call(&mut client, &id).await;
    assert_eq!(result["messages"][0]["role"], "user");
    assert_eq!(result["messages"][0]["content"]["text"], "Context: test context");

    // A prompt has no isError: a declined form is a JSON-RPC error.
    let id = client.send_request("prompts/get", json!({ "name": "test_input_required_result_prompt" })).await;
    let request = client.recv_server_request("elicitation/create", "user_context").await;
    client.reply(&request, json!({ "action": "cancel" })).await;
    let (response, _) = client.recv_response(&id).await;
    assert_eq!(response["error"]["code"], -32603, "{response}");
    client.finish().await;

    let mut client = Client::connected(json!({ "sampling": {} })).await;
    let error = client.request_err("prompts/get", json!({ "name": "test_input_required_result_prompt" })).await;
    assert!(error["message"].as_str().is_some_and(|m| m.contains("elicitation")), "{error}");
    client.finish().await;
}
