//! The bridge: 2026-07-28 (stateless) clients served through the gateway by the legacy
//! demo server over stdio, from the gateway's pool of sessions. Each test runs the real
//! binary; several record what the gateway writes to the demo's stdin (see
//! `common::modern::Recorder`) to check what goes upstream.

mod common;

use std::time::{Duration, Instant};

use common::modern::{all_caps, ModernClient, ModernReply, Recorder, META_LOG_LEVEL};
use common::{demo_config, Gateway};
use serde_json::{json, Value};

const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const ELICIT_TOOL: &str = "test_input_required_result_elicitation";
const MULTI_ROUND_TOOL: &str = "test_input_required_result_multi_round";

fn tool(name: &str) -> Value {
    json!({"name": name, "arguments": {}})
}

/// The params of a retry: `params` with `inputResponses` and `requestState`.
fn retry(params: &Value, state: &Value, responses: Value) -> Value {
    let mut p = params.clone();
    p["requestState"] = state.clone();
    p["inputResponses"] = responses;
    p
}

fn accept(field: &str, value: &str) -> Value {
    json!({"action": "accept", "content": {field: value}})
}

/// The first text block of a tool result.
fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text in {response}")).to_owned()
}

/// Asserts an `input_required` answer to `id` and returns it (the result).
fn input_required(status: u16, response: &Value, id: &Value) -> Value {
    assert_eq!(status, 200, "{response}");
    assert_eq!(&response["id"], id, "{response}");
    let result = &response["result"];
    assert_eq!(result["resultType"], "input_required", "{response}");
    assert!(result["requestState"].as_str().is_some_and(|s| !s.is_empty()), "{response}");
    assert_eq!(result["_meta"][SERVER_INFO]["name"], "shadowcat-demo", "{response}");
    result.clone()
}

/// Asserts a JSON-RPC error reply and returns its message.
fn error(status: u16, response: &Value, want_status: u16, want_code: i64) -> String {
    assert_eq!((status, response["error"]["code"].as_i64()), (want_status, Some(want_code)), "{response}");
    assert!(response.get("result").is_none(), "{response}");
    response["error"]["message"].as_str().unwrap_or_default().to_owned()
}

/// Calls the elicitation tool and returns (params, requestState) of its `input_required`.
async fn elicitation_state(c: &ModernClient, caps: &Value) -> (Value, Value) {
    let params = tool(ELICIT_TOOL);
    let id = ModernClient::next_id();
    let reply = c.call_with_id(&id, "tools/call", params.clone(), caps).await;
    let result = input_required(reply.status, &reply.response, &id);
    (params, result["requestState"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_and_discover_are_stamped_and_answered_from_the_pool() {
    let gw = Gateway::start(&demo_config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();

    let reply = c.call_with_id(&json!(1), "tools/list", json!({}), &caps).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.headers.get("mcp-session-id").is_none(), "stateless: no session id");
    let r = &reply.response;
    assert_eq!(r["id"], 1, "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(r["result"]["ttlMs"], 0, "{r}");
    assert_eq!(r["result"]["cacheScope"], "private", "{r}");
    assert_eq!(r["result"]["_meta"][SERVER_INFO]["name"], "shadowcat-demo", "{r}");
    assert!(r["result"]["_meta"][SERVER_INFO]["version"].is_string(), "{r}");
    let tools = r["result"]["tools"].as_array().expect("tools");
    for name in ["echo", ELICIT_TOOL, MULTI_ROUND_TOOL, "test_logging_tool", "test_tool_with_progress"] {
        assert!(tools.iter().any(|t| t["name"] == name), "{name} listed");
    }

    let (status, r) = c.call("server/discover", json!({}), &caps).await;
    assert_eq!(status, 200, "{r}");
    let result = &r["result"];
    let versions: Vec<&str> =
        result["supportedVersions"].as_array().expect("supportedVersions").iter().filter_map(Value::as_str).collect();
    for v in ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"] {
        assert!(versions.contains(&v), "{v} in {versions:?}");
    }
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true, "{r}");
    assert!(result["capabilities"]["logging"].is_object(), "{r}");
    assert_eq!(result["capabilities"]["resources"]["subscribe"], true, "served as resourceSubscriptions: {r}");
    assert_eq!(result["ttlMs"], 0, "{r}");
    assert_eq!(result["cacheScope"], "private", "{r}");
    assert_eq!(result["resultType"], "complete", "{r}");
    assert_eq!(result["_meta"][SERVER_INFO]["name"], "shadowcat-demo", "{r}");

    // A plain call: stamped complete, no cache hints (tools/call is not cacheable).
    let (status, r) = c.call("tools/call", json!({"name": "echo", "arguments": {"message": "hi there"}}), &caps).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(text(&r), "hi there");
    assert!(r["result"].get("ttlMs").is_none() && r["result"].get("cacheScope").is_none(), "{r}");
    assert_eq!(r["result"]["_meta"][SERVER_INFO]["name"], "shadowcat-demo", "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elicitation_round_trips_and_the_retry_uses_a_new_id() {
    let rec = Recorder::new("bridge-elicit");
    let gw = Gateway::start(&rec.config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let params = tool(ELICIT_TOOL);

    let reply = c.call_with_id(&json!(1), "tools/call", params.clone(), &caps).await;
    let result = input_required(reply.status, &reply.response, &json!(1));
    let requests = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.keys().collect::<Vec<_>>(), ["user_name"], "{result}");
    let asked = &requests["user_name"];
    assert_eq!(asked["method"], "elicitation/create", "{result}");
    assert_eq!(asked["params"]["requestedSchema"]["properties"]["name"]["type"], "string", "{result}");
    assert!(asked.get("id").is_none() && asked.get("jsonrpc").is_none(), "an embedded request: {asked}");
    assert!(asked["params"]["_meta"].get("dev.shadowcat/inputKey").is_none(), "the key hint is consumed: {asked}");

    let state = result["requestState"].clone();
    let answer = retry(&params, &state, json!({"user_name": accept("name", "Ada Lovelace")}));
    let reply = c.call_with_id(&json!(2), "tools/call", answer, &caps).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let r = &reply.response;
    assert_eq!(r["id"], 2, "the retry's own id: {r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(text(r), "Hello, Ada Lovelace!");
    assert_eq!(r["result"]["_meta"][SERVER_INFO]["name"], "shadowcat-demo", "{r}");

    // Upstream: one tools/call with the gateway's id and without the 2026 members, and
    // the client's answer as the JSON-RPC response to the demo's elicitation.
    let calls: Vec<Value> = rec
        .messages()
        .into_iter()
        .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == ELICIT_TOOL)
        .collect();
    assert_eq!(calls.len(), 1, "one upstream call for both client requests: {calls:?}");
    let up = &calls[0];
    assert!(up["id"].as_str().is_some_and(|id| id.starts_with("sc-")), "rewritten id: {up}");
    assert!(up["params"].get("requestState").is_none() && up["params"].get("inputResponses").is_none(), "{up}");
    assert!(up["params"].get("_meta").is_none(), "the envelope stays at the gateway: {up}");
    let answered = rec
        .wait_for(Duration::from_secs(5), |m| {
            m["result"]["content"]["name"] == "Ada Lovelace" && m["id"].as_str().is_some_and(|i| i.starts_with("demo-"))
        })
        .expect("the answer went upstream as a response");
    assert_eq!(answered["result"]["action"], "accept", "{answered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_round_call_gets_a_new_state_each_round_and_old_ones_are_spent() {
    let gw = Gateway::start(&demo_config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let params = tool(MULTI_ROUND_TOOL);

    let (status, r) = c.call("tools/call", params.clone(), &caps).await;
    let id1 = r["id"].clone();
    let round1 = input_required(status, &r, &id1);
    assert_eq!(round1["inputRequests"].as_object().expect("requests").keys().collect::<Vec<_>>(), ["step1"]);
    let state1 = round1["requestState"].clone();

    let (status, r) =
        c.call("tools/call", retry(&params, &state1, json!({"step1": accept("name", "Grace")})), &caps).await;
    let id2 = r["id"].clone();
    assert_ne!(id1, id2);
    let round2 = input_required(status, &r, &id2);
    assert_eq!(round2["inputRequests"].as_object().expect("requests").keys().collect::<Vec<_>>(), ["step2"]);
    assert_eq!(round2["inputRequests"]["step2"]["method"], "elicitation/create", "{round2}");
    let state2 = round2["requestState"].clone();
    assert_ne!(state1, state2, "each round has its own state");

    // The first round's state was used: refused, and the call it named goes on.
    let (status, r) =
        c.call("tools/call", retry(&params, &state1, json!({"step1": accept("name", "Grace")})), &caps).await;
    let message = error(status, &r, 400, -32602);
    assert!(message.contains("already used"), "{message}");

    let (status, r) =
        c.call("tools/call", retry(&params, &state2, json!({"step2": accept("color", "teal")})), &caps).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(text(&r), "Done: Grace likes teal");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_question_is_asked_again() {
    let gw = Gateway::start(&demo_config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let (params, state) = elicitation_state(&c, &caps).await;
    // The retry answers another key, and a malformed value: asked again, new state.
    let (status, r) = c
        .call(
            "tools/call",
            retry(&params, &state, json!({"unrelated": accept("name", "x"), "user_name": "Ada"})),
            &caps,
        )
        .await;
    let again = input_required(status, &r, &r["id"].clone());
    assert_eq!(again["inputRequests"].as_object().expect("requests").keys().collect::<Vec<_>>(), ["user_name"]);
    assert_ne!(again["requestState"], state);
    let (status, r) = c
        .call("tools/call", retry(&params, &again["requestState"], json!({"user_name": accept("name", "Ada")})), &caps)
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Ada!");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tampered_changed_reused_and_malformed_states_are_refused() {
    let gw = Gateway::start(&demo_config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let (params, state) = elicitation_state(&c, &caps).await;
    let sealed = state.as_str().expect("a string").to_owned();
    let answers = json!({"user_name": accept("name", "Mallory")});

    let mut flipped = sealed.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let forged: Vec<(&str, String)> = vec![
        ("random text", "this-is-not-a-state".into()),
        ("random base64", "q8bJmVt7m1n0kJzW4hX9cYl2aRrP0sTuVwXyZ-_aBcDeFgHiJkLmNoPqRsTuVwXy".into()),
        ("suffix", format!("{sealed}-TAMPERED")),
        ("one character flipped", flipped),
        ("truncated", sealed[..sealed.len() - 4].to_owned()),
        ("empty", String::new()),
    ];
    for (what, bad) in forged {
        let (status, r) = c.call("tools/call", retry(&params, &json!(bad), answers.clone()), &caps).await;
        let message = error(status, &r, 400, -32602);
        assert!(message.contains("requestState is invalid"), "{what}: {message}");
    }

    for (what, bad) in [("a number", json!(42)), ("an object", json!({"state": sealed})), ("null", Value::Null)] {
        let (status, r) = c.call("tools/call", retry(&params, &bad, answers.clone()), &caps).await;
        let message = error(status, &r, 400, -32602);
        assert!(message.contains("requestState must be a string"), "{what}: {message}");
    }
    let mut bad_responses = params.clone();
    bad_responses["inputResponses"] = json!(["not", "an", "object"]);
    let (status, r) = c.call("tools/call", bad_responses, &caps).await;
    let message = error(status, &r, 400, -32602);
    assert!(message.contains("inputResponses must be an object"), "{message}");

    // A retry whose params or method changed.
    let mut changed_args = retry(&params, &state, answers.clone());
    changed_args["arguments"] = json!({"extra": true});
    let mut changed_tool = retry(&params, &state, answers.clone());
    changed_tool["name"] = json!("test_input_required_result_request_state");
    let changed_method =
        json!({"name": "test_input_required_result_prompt", "requestState": state, "inputResponses": answers});
    for (what, method, changed) in [
        ("arguments", "tools/call", changed_args),
        ("tool name", "tools/call", changed_tool),
        ("method", "prompts/get", changed_method),
    ] {
        let (status, r) = c.call(method, changed, &caps).await;
        let message = error(status, &r, 400, -32602);
        assert!(message.contains("differs from the request"), "{what}: {message}");
    }

    // None of the refused retries spent the state: the genuine one completes, once.
    let genuine = retry(&params, &state, json!({"user_name": accept("name", "Ada")}));
    let (status, r) = c.call("tools/call", genuine.clone(), &caps).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Ada!");
    let (status, r) = c.call("tools/call", genuine, &caps).await;
    let message = error(status, &r, 400, -32602);
    assert!(message.contains("already used"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_from_another_gateway_is_refused() {
    // Random keys: B cannot open A's state.
    let a = Gateway::start(&demo_config("", ""));
    let b = Gateway::start(&demo_config("", ""));
    let (ca, cb) = (ModernClient::new(&a.mcp_url), ModernClient::new(&b.mcp_url));
    let caps = all_caps();
    let (params, state) = elicitation_state(&ca, &caps).await;
    let answers = json!({"user_name": accept("name", "Ada")});
    let (status, r) = cb.call("tools/call", retry(&params, &state, answers.clone()), &caps).await;
    let message = error(status, &r, 400, -32602);
    assert!(message.contains("requestState is invalid"), "{message}");
    // A still honours it.
    let (status, r) = ca.call("tools/call", retry(&params, &state, answers.clone()), &caps).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Ada!");

    // A shared key: B opens the state and names the replica that issued it.
    let shared = "bridge:\n  state_key: bridge-tests-shared-secret\n";
    let a = Gateway::start(&demo_config(shared, ""));
    let b = Gateway::start(&demo_config(shared, ""));
    let (ca, cb) = (ModernClient::new(&a.mcp_url), ModernClient::new(&b.mcp_url));
    let (params, state) = elicitation_state(&ca, &caps).await;
    let (status, r) = cb.call("tools/call", retry(&params, &state, answers.clone()), &caps).await;
    let message = error(status, &r, 400, -32602);
    assert!(message.contains("another gateway replica"), "{message}");
    let (status, r) = ca.call("tools/call", retry(&params, &state, answers), &caps).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Ada!");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_nobody_resumes_is_cancelled_after_the_ttl_and_frees_its_place() {
    let rec = Recorder::new("bridge-expiry");
    let bridge = "bridge:\n  state_ttl: 2s\n  max_parked: 1\n";
    let gw = Gateway::start(&rec.config(bridge, "      pool:\n        max: 1\n"));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();

    // A parks a call on the one pooled session and never retries.
    let sent_at = Instant::now();
    let (params, state_a) = elicitation_state(&c, &caps).await;
    let first = rec.tool_call(ELICIT_TOOL, Duration::from_secs(5)).expect("A's call went upstream");

    // While it is parked, no other call can park (max_parked: 1) ...
    // (the gateway's own refusal: 503, though the upstream had already asked)
    let (status, r) = c.call("tools/call", tool(ELICIT_TOOL), &caps).await;
    let message = error(status, &r, 503, -32000);
    assert!(message.contains("max_parked"), "{message}");
    // ... but calls that need no input, and lists, are served on the same session.
    let (status, r) = c.call("tools/list", json!({}), &caps).await;
    assert_eq!((status, r["result"]["resultType"].as_str()), (200, Some("complete")), "{r}");
    let (status, r) = c.call("tools/call", json!({"name": "echo", "arguments": {"message": "meanwhile"}}), &caps).await;
    assert_eq!((status, text(&r).as_str()), (200, "meanwhile"), "{r}");

    // After the TTL, A's call is cancelled upstream.
    let cancelled = rec
        .wait_for(Duration::from_secs(10), |m| {
            m["method"] == "notifications/cancelled" && m["params"]["requestId"] == first["id"]
        })
        .unwrap_or_else(|| panic!("no notifications/cancelled for the expired call: {:?}", rec.messages()));
    // The TTL runs from the park, which came after the request was sent.
    let waited = sent_at.elapsed();
    assert!(waited >= Duration::from_secs(2), "cancelled at the TTL (2 s), not before: {waited:?}");
    assert!(cancelled["params"]["reason"].as_str().is_some_and(|r| r.contains("state_ttl")), "{cancelled}");
    assert!(gw.wait_log("the client never retried a parked call; cancelled", Duration::from_secs(2)), "{}", gw.log());

    // Its place is free: another call parks, and its retry completes on the session.
    let (status, r) = c.call("tools/call", tool(ELICIT_TOOL), &caps).await;
    let result_b = input_required(status, &r, &r["id"].clone());
    let (status, r) = c
        .call(
            "tools/call",
            retry(&params, &result_b["requestState"], json!({"user_name": accept("name", "Bea")})),
            &caps,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Bea!");

    // A's retry, too late.
    let (status, r) =
        c.call("tools/call", retry(&params, &state_a, json!({"user_name": accept("name", "Al")})), &caps).await;
    let message = error(status, &r, 400, -32602);
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_call_gives_up_the_input_slot_and_its_retry_takes_it_back() {
    let rec = Recorder::new("bridge-slot");
    let gw = Gateway::start(&rec.config("", "      pool:\n        max: 1\n"));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let (params, state_a) = elicitation_state(&c, &caps).await;

    // B takes the one session's input slot while A is parked, and holds it ~1 s.
    let started = Instant::now();
    let b = {
        let c = c.clone();
        let caps = caps.clone();
        tokio::spawn(async move {
            let slow = json!({"name": "slow", "arguments": {"steps": 5, "delay_ms": 200}});
            c.call("tools/call", slow, &caps).await
        })
    };
    rec.tool_call("slow", Duration::from_secs(10)).expect("B's call runs upstream");
    assert!(!b.is_finished(), "B runs");

    // A's retry waits for the slot, then completes (its upstream handler kept waiting).
    let answers = json!({"user_name": accept("name", "Ada")});
    let (status, r) =
        tokio::time::timeout(Duration::from_secs(20), c.call("tools/call", retry(&params, &state_a, answers), &caps))
            .await
            .expect("A's retry is served once B is done");
    let a_done = Instant::now();
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Ada!");
    let (status, r) = tokio::time::timeout(Duration::from_secs(20), b).await.expect("B ends").expect("join");
    assert_eq!((status, text(&r).as_str()), (200, "done after 5 steps"), "{r}");
    // B's tool takes 1 s from when it started, after `started`; A needed its slot.
    assert!(a_done - started >= Duration::from_secs(1), "A's retry waited for B: {:?}", a_done - started);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_the_client_cannot_answer_is_refused_with_32021() {
    let rec = Recorder::new("bridge-caps");
    let gw = Gateway::start(&rec.config("", ""));
    let c = ModernClient::new(&gw.mcp_url);

    let (status, r) = c.call("tools/call", tool("test_missing_capability"), &json!({})).await;
    let message = error(status, &r, 400, -32021);
    assert!(message.contains("sampling/createMessage"), "{message}");
    assert!(r["error"]["data"]["requiredCapabilities"]["sampling"].is_object(), "{r}");
    // Upstream: the sampling request got an error, and the call was cancelled.
    let up = rec.tool_call("test_missing_capability", Duration::from_secs(5)).expect("the call went upstream");
    let refused = rec.wait_for(Duration::from_secs(5), |m| {
        m["id"].as_str().is_some_and(|i| i.starts_with("demo-")) && m["error"]["code"].is_i64()
    });
    assert!(refused.is_some(), "the demo's sampling request was answered with an error: {:?}", rec.messages());
    assert!(
        rec.wait_for(Duration::from_secs(5), |m| m["method"] == "notifications/cancelled"
            && m["params"]["requestId"] == up["id"])
            .is_some(),
        "the refused call was cancelled upstream: {:?}",
        rec.messages()
    );

    // Only sampling declared: the call asks only for what the client can answer.
    let params = tool("test_input_required_result_capabilities");
    let sampling_only = json!({"sampling": {}});
    let (status, r) = c.call("tools/call", params.clone(), &sampling_only).await;
    let result = input_required(status, &r, &r["id"].clone());
    let requests = result["inputRequests"].as_object().expect("inputRequests");
    assert!(!requests.is_empty(), "{result}");
    assert!(requests.values().all(|q| q["method"] == "sampling/createMessage"), "no elicitation or roots: {result}");
    assert!(requests.values().all(|q| q["method"] != "elicitation/create"), "{result}");
    let answers: serde_json::Map<String, Value> = requests
        .keys()
        .map(|k| {
            (
                k.clone(),
                json!({"role": "assistant", "content": {"type": "text", "text": "Bonjour"}, "model": "test-model"}),
            )
        })
        .collect();
    let (status, r) =
        c.call("tools/call", retry(&params, &result["requestState"], Value::Object(answers)), &sampling_only).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "capability-scoped inputs received: greeting=Bonjour");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_messages_reach_only_requests_that_ask_for_their_level() {
    let gw = Gateway::start(&demo_config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let logs = |reply: &ModernReply| reply.notifications("notifications/message").len();

    let reply = c.call_with_id(&ModernClient::next_id(), "tools/call", tool("test_logging_tool"), &caps).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(text(&reply.response), "Tool with logging executed successfully");
    assert_eq!(logs(&reply), 0, "no logLevel, no log messages: {}", reply.text);

    let mut params = tool("test_logging_tool");
    params["_meta"] = json!({META_LOG_LEVEL: "debug"});
    let reply = c.call_with_id(&ModernClient::next_id(), "tools/call", params.clone(), &caps).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(text(&reply.response), "Tool with logging executed successfully");
    let messages = reply.notifications("notifications/message");
    assert!(!messages.is_empty(), "logLevel debug: the demo's info messages: {}", reply.text);
    assert!(messages.iter().all(|m| m["params"]["level"] == "info"), "{}", reply.text);
    assert!(reply.sse, "notifications need an SSE reply");
    let last = reply.messages.last().expect("messages");
    assert_eq!(last, &reply.response, "the response comes last");

    params["_meta"] = json!({META_LOG_LEVEL: "error"});
    let reply = c.call_with_id(&ModernClient::next_id(), "tools/call", params, &caps).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(logs(&reply), 0, "info messages are below error: {}", reply.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_carries_the_clients_token() {
    let rec = Recorder::new("bridge-progress");
    let gw = Gateway::start(&rec.config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let mut params = tool("test_tool_with_progress");
    params["_meta"] = json!({"progressToken": "p-1"});
    let reply = c.call_with_id(&json!(7), "tools/call", params, &all_caps()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.sse, "progress needs an SSE reply: {}", reply.text);
    let progress = reply.notifications("notifications/progress");
    assert!(!progress.is_empty(), "{}", reply.text);
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p-1"), "{}", reply.text);
    let values: Vec<f64> = progress.iter().filter_map(|p| p["params"]["progress"].as_f64()).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "non-decreasing: {values:?}");
    assert_eq!(reply.messages.last(), Some(&reply.response), "then the result: {}", reply.text);
    assert_eq!(reply.response["id"], 7);
    assert_eq!(text(&reply.response), "Tool with progress executed successfully");

    // Upstream saw the gateway's token, not the client's.
    let up = rec.tool_call("test_tool_with_progress", Duration::from_secs(5)).expect("upstream call");
    let token = &up["params"]["_meta"]["progressToken"];
    assert!(token.as_str().is_some_and(|t| t != "p-1" && t.starts_with("sc-")), "rewritten token: {up}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_using_the_same_id_at_once_each_get_their_own_answer() {
    let rec = Recorder::new("bridge-ids");
    let gw = Gateway::start(&rec.config("", "      pool:\n        max: 2\n"));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let slow = |steps: u64| json!({"name": "slow", "arguments": {"steps": steps, "delay_ms": 150}});
    let complete = |prefix: &str| json!({"ref": {"type": "ref/prompt", "name": "greeting"}, "argument": {"name": "name", "value": prefix}});
    let one = json!(1);
    let (s3, s4, ca, cg, list) = tokio::join!(
        c.call_with_id(&one, "tools/call", slow(3), &caps),
        c.call_with_id(&one, "tools/call", slow(4), &caps),
        async {
            // Sent while both slow calls run (each holds one of the two sessions).
            tokio::time::sleep(Duration::from_millis(150)).await;
            c.call_with_id(&one, "completion/complete", complete("A"), &caps).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            c.call_with_id(&one, "completion/complete", complete("G"), &caps).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            c.call_with_id(&one, "tools/list", json!({}), &caps).await
        },
    );
    for reply in [&s3, &s4, &ca, &cg, &list] {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.response["id"], 1, "{}", reply.text);
        assert!(reply.response.get("error").is_none(), "{}", reply.text);
    }
    assert_eq!(text(&s3.response), "done after 3 steps");
    assert_eq!(text(&s4.response), "done after 4 steps");
    let values = |r: &ModernReply| r.response["result"]["completion"]["values"].clone();
    assert_eq!(values(&ca), json!(["Ada", "Alan", "Alice"]), "{}", ca.text);
    assert_eq!(values(&cg), json!(["Grace"]), "{}", cg.text);
    assert!(list.response["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{}", list.text);

    // Upstream, every request had an id of the gateway's, distinct per session.
    let sent: Vec<Value> = rec
        .messages()
        .into_iter()
        .filter(|m| matches!(m["method"].as_str(), Some("tools/call" | "completion/complete" | "tools/list")))
        .collect();
    // (the client's five, and the gateway's own tools/list read to check Mcp-Param headers)
    let calls = sent.iter().filter(|m| m["method"] != "tools/list").count();
    assert_eq!(calls, 4, "{sent:?}");
    assert!(sent.len() >= 5, "{sent:?}");
    assert!(sent.iter().all(|m| m["id"] != 1 && m["id"].as_str().is_some_and(|i| i.starts_with("sc-"))), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_the_response_stream_cancels_the_call_upstream() {
    let rec = Recorder::new("bridge-cancel");
    let gw = Gateway::start(&rec.config("", "      pool:\n        max: 1\n"));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let params =
        json!({"name": "slow", "arguments": {"steps": 100, "delay_ms": 100}, "_meta": {"progressToken": "slow-1"}});
    let id = json!(5);
    let (status, headers, mut reader) = c.open(&id, "tools/call", params, &caps).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")), "{headers:?}");
    // The call runs: its first progress notification arrives (a step is 100 ms).
    let first = reader.next_message(Duration::from_secs(10)).await.expect("a message on the stream");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert_eq!(first["params"]["progressToken"], "slow-1", "{first}");
    let up = rec.tool_call("slow", Duration::from_secs(5)).expect("the call went upstream");
    let closed_at = Instant::now();
    drop(reader);

    let cancelled = rec
        .wait_for(Duration::from_secs(5), |m| {
            m["method"] == "notifications/cancelled" && m["params"]["requestId"] == up["id"]
        })
        .unwrap_or_else(|| panic!("no notifications/cancelled upstream for {}: {:?}", up["id"], rec.messages()));
    assert!(
        cancelled["params"]["reason"].as_str().is_some_and(|r| r.contains("closed its response stream")),
        "{cancelled}"
    );
    // The call's session (the only one) is free long before the slow tool would end.
    let (status, r) = tokio::time::timeout(Duration::from_secs(5), async {
        c.call("tools/call", json!({"name": "echo", "arguments": {"message": "next"}}), &caps).await
    })
    .await
    .expect("the slot is free");
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "next");
    assert!(closed_at.elapsed() < Duration::from_secs(6), "well before the slow tool's 10 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_subscriptions_of_listens_are_reference_counted_upstream() {
    let rec = Recorder::new("bridge-subscriptions");
    let gw = Gateway::start(&rec.config("", ""));
    let c = ModernClient::new(&gw.mcp_url);
    let none = json!({});
    let listen = |uris: Value| json!({"notifications": {"resourceSubscriptions": uris}});
    let (status, _, mut a) =
        c.open(&json!("sub-a"), "subscriptions/listen", listen(json!(["demo://readme"])), &none).await;
    assert_eq!(status, 200);
    let ack = a.next_message(Duration::from_secs(5)).await.expect("ack");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["notifications"]["resourceSubscriptions"], json!(["demo://readme"]), "{ack}");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-a", "{ack}");
    let (_, _, mut b) = c.open(&json!(7), "subscriptions/listen", listen(json!(["demo://readme"])), &none).await;
    b.next_message(Duration::from_secs(5)).await.expect("second ack");

    // One upstream subscription for both listens.
    let subscribes = |rec: &Recorder| rec.messages().iter().filter(|m| m["method"] == "resources/subscribe").count();
    assert_eq!(subscribes(&rec), 1, "{:?}", rec.messages());

    // An update reaches both, tagged with each listen's id; other resources do not.
    let touch = |uri: &str| json!({"name": "touch_resource", "arguments": {"uri": uri}});
    let (status, r) = c.call("tools/call", touch("demo://logo"), &none).await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = c.call("tools/call", touch("demo://readme"), &none).await;
    assert_eq!(status, 200, "{r}");
    for (reader, id) in [(&mut a, json!("sub-a")), (&mut b, json!(7))] {
        let update = reader.next_message(Duration::from_secs(5)).await.expect("an update");
        assert_eq!(update["method"], "notifications/resources/updated", "{update}");
        assert_eq!(update["params"]["uri"], "demo://readme", "only the subscribed resource: {update}");
        assert_eq!(update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], id, "{update}");
    }

    // Closing one listen keeps the upstream subscription; closing the last ends it.
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rec.messages().iter().any(|m| m["method"] == "resources/unsubscribe"), "{:?}", rec.messages());
    drop(b);
    let unsubscribed = rec.wait_for(Duration::from_secs(5), |m| m["method"] == "resources/unsubscribe");
    assert_eq!(unsubscribed.map(|m| m["params"]["uri"].clone()), Some(json!("demo://readme")));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_park_more_than_its_share() {
    let rec = Recorder::new("bridge-per-client");
    let gw = Gateway::start(&format!("bridge:\n  max_parked_per_client: 1\n{}", rec.config("", "")));
    let c = ModernClient::new(&gw.mcp_url);
    let caps = all_caps();
    let (params, state) = elicitation_state(&c, &caps).await;
    // The same client (same address) asks for a second parked call: refused.
    let (status, r) = c.call("tools/call", tool(ELICIT_TOOL), &caps).await;
    let message = error(status, &r, 503, -32000);
    assert!(message.contains("max_parked_per_client"), "{message}");
    // Its parked call is untouched and completes.
    let (status, r) =
        c.call("tools/call", retry(&params, &state, json!({"user_name": accept("name", "Cy")})), &caps).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(text(&r), "Hello, Cy!");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_pooled_sessions_beyond_min_are_closed() {
    let rec = Recorder::new("bridge-idle");
    let pool = "      pool:\n        min: 0\n        max: 2\n        idle_timeout: 500ms\n";
    let gw = Gateway::start(&rec.config("", pool));
    let c = ModernClient::new(&gw.mcp_url);
    let (status, r) = c.call("tools/list", json!({}), &json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert!(
        gw.wait_log("pooled upstream session closed (idle or gone)", Duration::from_secs(10)),
        "an idle session beyond pool.min is closed: {}",
        gw.log()
    );
    // The pool opens a new one when needed.
    let (status, r) = c.call("tools/list", json!({}), &json!({})).await;
    assert_eq!(status, 200, "{r}");

    // With pool.min: 1 the one session stays open however idle.
    let rec = Recorder::new("bridge-idle-min");
    let pool = "      pool:\n        min: 1\n        idle_timeout: 300ms\n";
    let gw = Gateway::start(&rec.config("", pool));
    let c = ModernClient::new(&gw.mcp_url);
    let (status, r) = c.call("tools/list", json!({}), &json!({})).await;
    assert_eq!(status, 200, "{r}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!gw.log().contains("pooled upstream session closed"), "{}", gw.log());
}

/// Sends `n` stateless `tools/call`s of `name` at once while counting the gateway's
/// child processes; returns the most seen at any time and the count once all are
/// answered.
async fn burst(gw: &Gateway, n: usize, name: &str) -> (usize, usize) {
    let pid = gw.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(common::children_of(pid).len());
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let calls = (0..n).map(|i| {
        // A client (and so a connection) each.
        let client = ModernClient::new(&gw.mcp_url);
        let name = name.to_owned();
        async move {
            client
                .call("tools/call", json!({"name": name, "arguments": {"message": format!("m{i}")}}), &json!({}))
                .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (status, r) in &answers {
        assert_eq!(*status, 200, "{r}");
        assert!(r.get("result").is_some(), "{r}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().expect("watcher");
    (most, common::children_of(pid).len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_stateless_requests_opens_no_more_than_pool_max_sessions_of_a_legacy_upstream() {
    let gw = Gateway::start(&demo_config("", "      era: legacy\n      pool:\n        max: 2\n"));
    let (most, after) = burst(&gw, 16, "echo").await;
    assert!(most <= 2 && after <= 2, "at most pool.max processes: {most} at once, {after} after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_stateless_requests_opens_no_more_than_pool_max_processes_of_a_stateless_stdio_upstream() {
    let d = common::deps();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  modern:\n    stdio:\n      command: {}\n      args: [{}, --stdio, --modern-only]\n      era: modern\n      env:\n        SHADOWCAT_NODE_MODULES: {}\n      pool:\n        max: 2\n",
        d.node,
        common::fixture("modern-server.mjs"),
        d.node_modules
    );
    let gw = Gateway::start(&yaml);
    // The check at start spawns the command once and stops it.
    assert!(common::wait_until(Duration::from_secs(20), || common::children_of(gw.pid()).is_empty()));
    let (most, after) = burst(&gw, 16, "test_simple_text").await;
    assert!(most <= 2 && after <= 2, "at most pool.max processes: {most} at once, {after} after");
}
