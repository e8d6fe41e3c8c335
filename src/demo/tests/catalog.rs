//! Resources (read, templates, subscriptions), prompts and completion.

use serde_json::{json, Value};

use super::{first_text, Client};

#[tokio::test]
async fn resources_list_and_read() {
    let mut client = Client::connected(json!({})).await;
    let listed = client.request_ok("resources/list", json!({})).await;
    let uris: Vec<&str> =
        listed["resources"].as_array().expect("list").iter().filter_map(|r| r["uri"].as_str()).collect();
    for uri in ["demo://readme", "demo://logo", "test://static-text", "test://static-binary", "test://watched-resource"]
    {
        assert!(uris.contains(&uri), "missing {uri}");
    }
    let templates = client.request_ok("resources/templates/list", json!({})).await;
    let templates: Vec<&str> = templates["resourceTemplates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["uriTemplate"].as_str())
        .collect();
    assert_eq!(templates, ["demo://items/{id}", "test://template/{id}/data"]);

    let text = client.request_ok("resources/read", json!({ "uri": "test://static-text" })).await;
    assert_eq!(
        text["contents"][0],
        json!({ "uri": "test://static-text", "mimeType": "text/plain", "text": "This is the content of the static text resource." })
    );
    let blob = client.request_ok("resources/read", json!({ "uri": "test://static-binary" })).await;
    assert_eq!(blob["contents"][0]["mimeType"], "image/png");
    assert!(blob["contents"][0]["blob"].as_str().is_some_and(|b| b.starts_with("iVBOR")));
    let logo = client.request_ok("resources/read", json!({ "uri": "demo://logo" })).await;
    assert!(logo["contents"][0]["blob"].is_string());
    let readme = client.request_ok("resources/read", json!({ "uri": "demo://readme" })).await;
    assert_eq!(readme["contents"][0]["mimeType"], "text/markdown");

    let data = client.request_ok("resources/read", json!({ "uri": "test://template/123/data" })).await;
    let content = &data["contents"][0];
    assert_eq!(content["uri"], "test://template/123/data");
    let parsed: Value = serde_json::from_str(content["text"].as_str().expect("text")).expect("json");
    assert_eq!(parsed, json!({ "id": "123", "templateTest": true, "data": "Data for ID: 123" }));
    let item = client.request_ok("resources/read", json!({ "uri": "demo://items/7" })).await;
    assert_eq!(item["contents"][0]["text"], "{\"id\":\"7\",\"name\":\"Item 7\"}");

    let missing = client.request_err("resources/read", json!({ "uri": "demo://missing" })).await;
    assert_eq!(missing["code"], -32002);
    assert_eq!(missing["data"], json!({ "uri": "demo://missing" }));
    client.finish().await;
}

#[tokio::test]
async fn subscriptions_get_updates() {
    let mut client = Client::connected(json!({})).await;
    let uri = "test://watched-resource";
    let touch = json!({ "name": "touch_resource", "arguments": { "uri": uri } });
    let id = client.send_request("tools/call", touch.clone()).await;
    let (response, before) = client.recv_response(&id).await;
    assert!(before.is_empty(), "no subscription yet");
    assert!(first_text(&response["result"]).contains("no subscribers"));

    assert_eq!(client.request_ok("resources/subscribe", json!({ "uri": uri })).await, json!({}));
    let id = client.send_request("tools/call", touch.clone()).await;
    let (_, before) = client.recv_response(&id).await;
    assert_eq!(
        before,
        [json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": uri } })]
    );

    assert_eq!(client.request_ok("resources/unsubscribe", json!({ "uri": uri })).await, json!({}));
    let id = client.send_request("tools/call", touch).await;
    assert!(client.recv_response(&id).await.1.is_empty());
    client.finish().await;
}

#[tokio::test]
async fn prompts_list_and_get() {
    let mut client = Client::connected(json!({})).await;
    let listed = client.request_ok("prompts/list", json!({})).await;
    let prompts = listed["prompts"].as_array().expect("prompts");
    let names: Vec<&str> = prompts.iter().filter_map(|p| p["name"].as_str()).collect();
    for name in [
        "greeting",
        "code_review",
        "test_simple_prompt",
        "test_prompt_with_arguments",
        "test_prompt_with_embedded_resource",
        "test_prompt_with_image",
    ] {
        assert!(names.contains(&name), "missing {name}");
    }
    assert!(prompts.iter().all(|p| p["description"].is_string()));
    let greeting = prompts.iter().find(|p| p["name"] == "greeting").expect("greeting");
    assert_eq!(greeting["arguments"][0], json!({ "name": "name", "description": "Who to greet", "required": true }));

    let got = client.request_ok("prompts/get", json!({ "name": "greeting", "arguments": { "name": "Ada" } })).await;
    assert!(got["messages"][0]["content"]["text"].as_str().is_some_and(|t| t.contains("Ada")));
    let error = client.request_err("prompts/get", json!({ "name": "greeting" })).await;
    assert_eq!(error["code"], -32602);
    let review =
        client.request_ok("prompts/get", json!({ "name": "code_review", "arguments": { "code": "fn x() {}" } })).await;
    assert!(review["messages"][0]["content"]["text"].as_str().is_some_and(|t| t.contains("fn x() {}")));

    let simple = client.request_ok("prompts/get", json!({ "name": "test_simple_prompt" })).await;
    assert_eq!(
        simple["messages"],
        json!([{ "role": "user", "content": { "type": "text", "text": "This is a simple prompt for testing." } }])
    );
    let args = json!({ "arg1": "testValue1", "arg2": "testValue2" });
    let with_args =
        client.request_ok("prompts/get", json!({ "name": "test_prompt_with_arguments", "arguments": args })).await;
    assert_eq!(
        with_args["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='testValue1', arg2='testValue2'"
    );
    let args = json!({ "resourceUri": "test://example-resource" });
    let embedded = client
        .request_ok("prompts/get", json!({ "name": "test_prompt_with_embedded_resource", "arguments": args }))
        .await;
    assert_eq!(embedded["messages"][0]["content"]["type"], "resource");
    assert_eq!(embedded["messages"][0]["content"]["resource"]["uri"], "test://example-resource");
    let image = client.request_ok("prompts/get", json!({ "name": "test_prompt_with_image" })).await;
    assert_eq!(image["messages"][0]["content"]["type"], "image");
    assert_eq!(image["messages"][0]["content"]["mimeType"], "image/png");
    client.finish().await;
}

#[tokio::test]
async fn completion_filters_by_prefix() {
    let mut client = Client::connected(json!({})).await;
    let mut complete = async |reference: Value, name: &str, value: &str| {
        let params = json!({ "ref": reference, "argument": { "name": name, "value": value } });
        client.request("completion/complete", params).await
    };
    let prompt = |name: &str| json!({ "type": "ref/prompt", "name": name });
    let template = |uri: &str| json!({ "type": "ref/resource", "uri": uri });

    let fixture = complete(prompt("test_prompt_with_arguments"), "arg1", "par").await;
    assert_eq!(
        fixture["result"]["completion"],
        json!({ "values": ["paris", "park", "party"], "total": 3, "hasMore": false })
    );
    let fixture = complete(prompt("test_prompt_with_arguments"), "arg1", "test").await;
    assert_eq!(fixture["result"]["completion"]["values"], json!(["test", "testValue"]));
    let names = complete(prompt("greeting"), "name", "Al").await;
    assert_eq!(names["result"]["completion"]["values"], json!(["Alan", "Alice"]));
    let languages = complete(prompt("code_review"), "language", "").await;
    assert_eq!(languages["result"]["completion"]["total"], 6);
    let ids = complete(template("demo://items/{id}"), "id", "4").await;
    assert_eq!(ids["result"]["completion"]["values"], json!(["42"]));
    let ids = complete(template("test://template/{id}/data"), "id", "pa").await;
    assert_eq!(ids["result"]["completion"]["values"], json!(["paris", "park", "party"]));
    let none = complete(prompt("greeting"), "unknown", "").await;
    assert_eq!(none["result"]["completion"]["values"], json!([]));
    let unknown = complete(prompt("nope"), "x", "").await;
    assert_eq!(unknown["error"]["code"], -32602);
    let unknown = complete(template("nope://x"), "x", "").await;
    assert_eq!(unknown["error"]["code"], -32602);
    client.finish().await;
}
