//! Server-to-client requests: sampling, elicitation, roots; capability checks; withdrawal on cancel.

use serde_json::{json, Value};

use super::{first_text, full_capabilities, Client};

/// Calls tool `name`, answers the one server request it makes with `answer`, and returns
/// that server request and the tool result.
async fn call_with_answer(client: &mut Client, name: &str, arguments: Value, answer: Value) -> (Value, Value) {
    let id = client.send_request("tools/call", json!({ "name": name, "arguments": arguments })).await;
    let request = client.recv().await;
    let server_id = request["id"].clone();
    assert!(server_id.as_str().is_some_and(|s| s.starts_with("demo-")), "{request}");
    let mut reply = json!({ "jsonrpc": "2.0", "id": server_id });
    if answer.get("code").is_some() {
        reply["error"] = answer;
    } else {
        reply["result"] = answer;
    }
    client.send(reply).await;
    let (response, _) = client.recv_response(&id).await;
    (request, response["result"].clone())
}

#[tokio::test]
async fn sampling_round_trip() {
    let mut client = Client::connected(full_capabilities()).await;
    let answer = json!({
        "role": "assistant",
        "content": { "type": "text", "text": "It is 4." },
        "model": "test-model",
        "stopReason": "endTurn",
    });
    let (request, result) = call_with_answer(&mut client, "sample", json!({ "prompt": "2+2?" }), answer.clone()).await;
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(request["params"]["messages"][0]["content"]["text"], "2+2?");
    assert_eq!(request["params"]["maxTokens"], 100);
    assert_eq!(first_text(&result), "It is 4.");

    let (_, result) = call_with_answer(&mut client, "test_sampling", json!({ "prompt": "hi" }), answer).await;
    assert_eq!(first_text(&result), "LLM response: It is 4.");

    let refusal = json!({ "code": -1, "message": "User rejected sampling" });
    let (_, result) = call_with_answer(&mut client, "sample", json!({ "prompt": "x" }), refusal).await;
    assert_eq!(result["isError"], true);
    assert!(first_text(&result).contains("User rejected sampling"));
    client.finish().await;
}

#[tokio::test]
async fn server_requests_need_the_client_capability() {
    let mut client = Client::connected(json!({})).await;
    for (tool, args) in
        [("sample", json!({ "prompt": "x" })), ("elicit", json!({ "message": "x" })), ("roots", json!({}))]
    {
        let result = client.call_tool(tool, args).await;
        assert_eq!(result["isError"], true, "{tool}");
        assert!(first_text(&result).contains("capability"), "{tool}");
    }
    client.finish().await;
}

#[tokio::test]
async fn concurrent_server_requests_are_routed_by_id() {
    let mut client = Client::connected(full_capabilities()).await;
    let first = client.send_request("tools/call", json!({ "name": "sample", "arguments": { "prompt": "one" } })).await;
    let second = client.send_request("tools/call", json!({ "name": "sample", "arguments": { "prompt": "two" } })).await;
    let (a, b) = (client.recv().await, client.recv().await);
    // Answer in reverse order, echoing each prompt back.
    for request in [&b, &a] {
        let prompt = request["params"]["messages"][0]["content"]["text"].clone();
        let content = json!({ "type": "text", "text": prompt });
        let result = json!({ "role": "assistant", "content": content, "model": "m" });
        client.send(json!({ "jsonrpc": "2.0", "id": request["id"], "result": result })).await;
    }
    let mut texts = std::collections::HashMap::new();
    while texts.len() < 2 {
        let response = client.recv().await;
        texts.insert(response["id"].to_string(), first_text(&response["result"]).to_string());
    }
    assert_eq!(texts[&first.to_string()], "one");
    assert_eq!(texts[&second.to_string()], "two");
    // A response nobody waits for is ignored.
    client.send(json!({ "jsonrpc": "2.0", "id": "demo-999", "result": {} })).await;
    client.expect_silence(100).await;
    client.finish().await;
}

#[tokio::test]
async fn cancelling_a_tool_withdraws_its_server_request() {
    let mut client = Client::connected(full_capabilities()).await;
    let id = client.send_request("tools/call", json!({ "name": "sample", "arguments": { "prompt": "x" } })).await;
    let request = client.recv().await;
    assert_eq!(request["method"], "sampling/createMessage");
    client.notify("notifications/cancelled", json!({ "requestId": id })).await;
    let note = client.recv().await;
    assert_eq!(note["method"], "notifications/cancelled");
    assert_eq!(note["params"]["requestId"], request["id"]);
    // A late answer is ignored, and the cancelled call never gets a response.
    let result = json!({ "role": "assistant", "content": { "type": "text", "text": "late" }, "model": "m" });
    client.send(json!({ "jsonrpc": "2.0", "id": request["id"], "result": result })).await;
    client.expect_silence(200).await;
    client.finish().await;
}

#[tokio::test]
async fn elicitation_round_trips() {
    let mut client = Client::connected(full_capabilities()).await;
    let answer = json!({ "action": "accept", "content": { "name": "Ada", "confirm": true } });
    let (request, result) = call_with_answer(&mut client, "elicit", json!({ "message": "Who?" }), answer).await;
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["message"], "Who?");
    assert_eq!(request["params"]["requestedSchema"]["type"], "object");
    assert_eq!(first_text(&result), "action=accept, content={\"name\":\"Ada\",\"confirm\":true}");

    let answer = json!({ "action": "accept", "content": { "username": "u", "email": "e@x" } });
    let (request, result) = call_with_answer(&mut client, "test_elicitation", json!({ "message": "m" }), answer).await;
    let schema = &request["params"]["requestedSchema"];
    assert_eq!(schema["required"], json!(["username", "email"]));
    assert_eq!(schema["properties"]["email"]["type"], "string");
    assert!(first_text(&result).starts_with("User response: action=accept, content="));

    let (request, result) =
        call_with_answer(&mut client, "test_elicitation_sep1034_defaults", json!({}), json!({ "action": "decline" }))
            .await;
    let props = &request["params"]["requestedSchema"]["properties"];
    assert_eq!(props["name"]["default"], "John Doe");
    assert_eq!(props["age"], json!({ "type": "integer", "description": "User age", "default": 30 }));
    assert_eq!(props["score"]["default"], 95.5);
    assert_eq!(props["status"]["enum"], json!(["active", "inactive", "pending"]));
    assert_eq!(props["status"]["default"], "active");
    assert_eq!(props["verified"]["default"], true);
    assert_eq!(first_text(&result), "Elicitation completed: action=decline, content={}");

    let (request, _) =
        call_with_answer(&mut client, "test_elicitation_sep1330_enums", json!({}), json!({ "action": "cancel" })).await;
    let props = &request["params"]["requestedSchema"]["properties"];
    assert_eq!(props["untitledSingle"]["enum"], json!(["option1", "option2", "option3"]));
    assert!(props["untitledSingle"].get("oneOf").is_none());
    assert_eq!(props["titledSingle"]["oneOf"][0], json!({ "const": "value1", "title": "First Option" }));
    assert!(props["titledSingle"].get("enum").is_none());
    assert_eq!(props["legacyEnum"]["enumNames"], json!(["Option One", "Option Two", "Option Three"]));
    assert_eq!(props["untitledMulti"]["type"], "array");
    assert_eq!(props["untitledMulti"]["items"]["enum"], json!(["option1", "option2", "option3"]));
    assert_eq!(props["titledMulti"]["items"]["anyOf"][2], json!({ "const": "value3", "title": "Third Choice" }));
    client.finish().await;
}

#[tokio::test]
async fn roots_round_trip() {
    let mut client = Client::connected(full_capabilities()).await;
    let roots = json!({ "roots": [{ "uri": "file:///work", "name": "work" }] });
    let (request, result) = call_with_answer(&mut client, "roots", json!({}), roots).await;
    assert_eq!(request["method"], "roots/list");
    assert_eq!(first_text(&result), "[{\"uri\":\"file:///work\",\"name\":\"work\"}]");
    client.finish().await;
}
