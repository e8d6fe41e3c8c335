//! HTTP upstreams against the real binary: in front of server-everything over
//! Streamable HTTP, in front of a second gateway, and in front of small fakes for the
//! failures a real server will not produce on demand.

mod common;
#[path = "http_upstream/fake.rs"]
mod fake;
#[path = "http_upstream/servers.rs"]
mod servers;

use std::time::Duration;

use common::{demo_config, free_port, wait_until, Gateway, Http, McpClient, Reply, SseEvent};
use fake::{event, json_reply, progress, raw_reply, sse, status, Fake, Seen, Step, SESSION};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use servers::{private_ca, EnvGateway, Everything};

const SECS: Duration = Duration::from_secs(10);
const PING: &str = r#"{"jsonrpc":"2.0","id":99,"method":"ping"}"#;

/// A gateway config with one HTTP upstream `up` at `url`, plus upstream keys.
fn http_config(url: &str, upstream_extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  up:\n    http:\n      url: {url}\n{upstream_extra}"
    )
}

/// The text of the first content item of a tool result.
fn first_text(response: &Value) -> String {
    response["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// The last message of a reply (the response, on a stream).
fn last_message(reply: &Reply) -> Value {
    reply.messages().pop().unwrap_or_else(|| panic!("no message in {}", reply.text()))
}

async fn readyz(gw: &Gateway) -> u16 {
    let url = format!("{}/readyz", gw.admin_url.as_deref().expect("admin"));
    Http::new().send(Method::GET, &url, &[], None).await.status
}

/// Reads a reply stream to the response to `id`; returns the messages before it and it.
async fn until_response(reader: &mut common::client::SseReader, id: u64) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let m =
            reader.next_message(SECS).await.unwrap_or_else(|| panic!("stream ended before the response: {before:?}"));
        if m["id"] == id && m.get("method").is_none() {
            return (before, m);
        }
        before.push(m);
    }
}

// === server-everything ===

#[tokio::test(flavor = "multi_thread")]
async fn in_front_of_server_everything() {
    let everything = Everything::start();
    let gw = Gateway::start(&http_config(&everything.url(), ""));
    assert_eq!(readyz(&gw).await, 200, "a reachable upstream is ready");
    let mut c = McpClient::new(&gw.mcp_url);
    let init = c.initialize("2025-11-25").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert!(init["result"]["serverInfo"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{init}");

    let tools = c.request("tools/list", json!({})).await;
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    for want in ["echo", "trigger-long-running-operation", "trigger-sampling-request"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let echo = c.request("tools/call", json!({"name": "echo", "arguments": {"message": "hello"}})).await;
    assert_eq!(first_text(&echo), "Echo: hello");
    // The older revisions too, each in a session of its own.
    for version in ["2025-03-26", "2025-06-18"] {
        let mut old = McpClient::new(&gw.mcp_url);
        let init = old.initialize(version).await;
        assert_eq!(init["result"]["protocolVersion"], version, "{init}");
        let echo = old.request("tools/call", json!({"name": "echo", "arguments": {"message": version}})).await;
        assert_eq!(first_text(&echo), format!("Echo: {version}"));
        assert_eq!(old.delete().await.status, 200);
    }

    // A slow tool: its progress is relayed on the POST's SSE stream before its result.
    let (id, status, headers, mut post) = c
        .open_post(
            "tools/call",
            json!({"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 3},
                   "_meta": {"progressToken": "p-1"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")));
    let (before, result) = until_response(&mut post, id).await;
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "p-1"));
    assert!(first_text(&result).contains("Long running operation completed"), "{result}");

    // The first event reaches the client before the upstream has finished: the tool
    // cannot finish until the client answers the request that event carries.
    let (id, _, _, mut post) =
        c.open_post("tools/call", json!({"name": "trigger-sampling-request", "arguments": {"prompt": "hi"}})).await;
    let ask = post.next_message(SECS).await.expect("sampling request");
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"role": "assistant", "content": {"type": "text", "text": "sampled!"}, "model": "m"}});
    assert_eq!(c.post_raw(&answer.to_string()).await.status, 202);
    let (_, result) = until_response(&mut post, id).await;
    assert!(result.to_string().contains("sampled!"), "{result}");

    // The GET stream carries what the server sends outside any request.
    let (status, mut get) = c.open_get(None).await;
    assert_eq!(status, 200);
    c.request("tools/call", json!({"name": "toggle-simulated-logging", "arguments": {}})).await;
    let note = get.next_message(SECS).await.expect("a log message on the GET stream");
    assert_eq!(note["method"], "notifications/message", "{note}");

    // DELETE ends the session here and at the upstream.
    assert_eq!(c.delete().await.status, 200);
    let everything_log = || everything.log();
    assert!(
        wait_until(SECS, || everything_log().contains("Received session termination request")),
        "no DELETE upstream; log:\n{}",
        everything.log()
    );
    let after = c.post_raw(PING).await;
    assert_eq!(after.status, 404, "{}", after.text());
}

// === a gateway in front of a gateway ===

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_relay_server_requests_and_progress() {
    let inner = Gateway::start(&demo_config("", ""));
    let outer = Gateway::start(&http_config(&inner.mcp_url.replace("localhost", "127.0.0.1"), ""));
    let mut c = McpClient::new(&outer.mcp_url);
    c.initialize("2025-11-25").await;

    // Sampling: the request comes down both gateways' streams, the answer goes up as POSTs.
    let (id, _, _, mut post) =
        c.open_post("tools/call", json!({"name": "sample", "arguments": {"prompt": "hi"}})).await;
    let ask = post.next_message(SECS).await.expect("sampling request");
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"role": "assistant", "content": {"type": "text", "text": "twice relayed"}, "model": "m"}});
    assert_eq!(c.post_raw(&answer.to_string()).await.status, 202);
    let (_, result) = until_response(&mut post, id).await;
    assert!(first_text(&result).contains("twice relayed"), "{result}");

    // Elicitation, the same way.
    let (id, _, _, mut post) =
        c.open_post("tools/call", json!({"name": "elicit", "arguments": {"message": "Who?"}})).await;
    let ask = post.next_message(SECS).await.expect("elicitation request");
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"name": "Ada", "confirm": true}}});
    assert_eq!(c.post_raw(&answer.to_string()).await.status, 202);
    let (_, result) = until_response(&mut post, id).await;
    assert_eq!(first_text(&result), "action=accept, content={\"name\":\"Ada\",\"confirm\":true}");

    // Progress from the demo's slow tool, event by event.
    let (id, _, _, mut post) = c
        .open_post(
            "tools/call",
            json!({"name": "slow", "arguments": {"steps": 3, "delay_ms": 100}, "_meta": {"progressToken": 5}}),
        )
        .await;
    let (before, result) = until_response(&mut post, id).await;
    assert_eq!(before.iter().filter(|m| m["method"] == "notifications/progress").count(), 3, "{before:?}");
    assert_eq!(first_text(&result), "done after 3 steps");

    assert_eq!(c.delete().await.status, 200);
    assert_eq!(c.post_raw(PING).await.status, 404);
}

// === failures, with fakes ===

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_a_502_at_once() {
    let port = free_port(); // bound and released: nothing listens there
    let gw = Gateway::start(&http_config(&format!("http://127.0.0.1:{port}/mcp"), ""));
    let c = McpClient::new(&gw.mcp_url);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    // The default request_timeout is 60 s; the harness gives up after 30: an answer means "at once".
    let reply = c.post_raw(&init.to_string()).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.error_code(), -32003);
    assert_eq!(reply.json()["id"], 1);
    assert!(
        reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("cannot connect")),
        "{}",
        reply.text()
    );
    assert_eq!(readyz(&gw).await, 503);

    // Once something listens there, readiness follows, and so do sessions.
    let fake = Fake::start_on(port, |_: &Seen| None).await;
    let ready = async {
        for _ in 0..100 {
            if readyz(&gw).await == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(ready.await, "the gateway keeps checking an upstream that is not ready");
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    assert!(fake.wait_for(SECS, |s| s.rpc_method() == Some("initialize")).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn stalls_time_out_progress_extends_and_upstreams_hear_cancelled() {
    let fake = Fake::start(|s: &Seen| match s.tool()? {
        "stall_headers" => Some(fake::stall_headers()),
        "stall_sse" => Some(sse(vec![Step::Send("id: s-0\ndata: \n\n".into()), Step::Stall])),
        "steady" => {
            let token = &s.body["params"]["_meta"]["progressToken"];
            let mut steps = Vec::new();
            for n in 1..=5 {
                steps.push(Step::Wait(Duration::from_millis(300)));
                steps.push(event(None, &progress(token, n)));
            }
            steps.push(event(None, &s.result(json!({"content": [{"type": "text", "text": "steady"}]}))));
            Some(sse(steps))
        }
        "endless" => {
            let token = &s.body["params"]["_meta"]["progressToken"];
            let steps =
                (1..=1000).flat_map(|n| [Step::Wait(Duration::from_millis(200)), event(None, &progress(token, n))]);
            Some(sse(steps.collect()))
        }
        _ => None,
    })
    .await;
    let gw =
        Gateway::start(&http_config(&fake.url(), "      request_timeout: 1s\n      max_request_timeout: 2500ms\n"));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let cancelled_for = |id: u64| {
        move |s: &Seen| s.rpc_method() == Some("notifications/cancelled") && s.body["params"]["requestId"] == id
    };

    // No headers at all: 504 with a JSON-RPC error for that id.
    let (id, reply) = c.call("tools/call", json!({"name": "stall_headers"})).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.error_code(), -32004);
    assert_eq!(reply.json()["id"], id);
    assert!(fake.wait_for(SECS, cancelled_for(id)).await.is_some(), "no notifications/cancelled for {id}");

    // A stream that goes quiet: the request gets a JSON-RPC error all the same.
    let (id, reply) = c.call("tools/call", json!({"name": "stall_sse"})).await;
    assert_eq!(reply.status, 200);
    let last = last_message(&reply);
    assert_eq!((last["id"].clone(), last["error"]["code"].clone()), (json!(id), json!(-32004)), "{last}");
    assert!(fake.wait_for(SECS, cancelled_for(id)).await.is_some(), "no notifications/cancelled for {id}");

    // Progress every 300 ms keeps a 1 s timeout from expiring for 1.5 s...
    let steady = c.request("tools/call", json!({"name": "steady", "_meta": {"progressToken": "t"}})).await;
    assert_eq!(first_text(&steady), "steady");
    // ... but not past max_request_timeout.
    let (id, reply) = c.call("tools/call", json!({"name": "endless", "_meta": {"progressToken": "e"}})).await;
    let messages = reply.messages();
    let last = messages.last().expect("a message");
    assert_eq!((last["id"].clone(), last["error"]["code"].clone()), (json!(id), json!(-32004)), "{last}");
    assert!(messages.iter().filter(|m| m["method"] == "notifications/progress").count() >= 3);
    assert!(fake.wait_for(SECS, cancelled_for(id)).await.is_some(), "no notifications/cancelled for {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_forgets_the_session_ends_it() {
    let fake = Fake::start(|s: &Seen| match s.tool()? {
        "forget_404" => Some(status(StatusCode::NOT_FOUND)),
        // What server-everything answers for a session it no longer has.
        "forget_400" => Some(json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"jsonrpc": "2.0", "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}}),
        )),
        "bad_params" => Some(json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"jsonrpc": "2.0", "id": s.body["id"], "error": {"code": -32602, "message": "Invalid params: x"}}),
        )),
        _ => None,
    })
    .await;
    let gw = Gateway::start(&http_config(&fake.url(), ""));
    for tool in ["forget_404", "forget_400"] {
        let mut c = McpClient::new(&gw.mcp_url);
        c.initialize("2025-06-18").await;
        let (id, reply) = c.call("tools/call", json!({"name": tool})).await;
        assert_eq!(reply.status, 404, "{tool}: {}", reply.text());
        assert_eq!(reply.error_code(), -32001);
        assert_eq!(reply.json()["id"], id);
        let next = c.post_raw(PING).await;
        assert_eq!(next.status, 404, "{tool}: the next request: {}", next.text());
    }
    // Another 400 is the upstream's own JSON-RPC error, passed on; the session lives.
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (id, reply) = c.call("tools/call", json!({"name": "bad_params"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!((reply.json()["id"].clone(), reply.error_code()), (json!(id), -32602));
    assert_eq!(c.post_raw(PING).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_oversized_replies_are_clear_errors() {
    let big = "x".repeat(10_000);
    let fake = Fake::start(move |s: &Seen| match s.tool()? {
        "garbage" => Some(raw_reply(StatusCode::OK, "application/json", "<html>oops</html>")),
        "big_json" => Some(json_reply(StatusCode::OK, &s.result(json!({"content": [{"type": "text", "text": big}]})))),
        "big_sse" => Some(sse(vec![
            Step::Send("id: b-0\ndata: \n\n".into()),
            event(Some("b-1"), &s.result(json!({"content": [{"type": "text", "text": big}]}))),
            Step::Stall,
        ])),
        "garbage_sse" => Some(sse(vec![
            Step::Send("data: this is not JSON\n\n".into()),
            event(None, &s.result(json!({"content": [{"type": "text", "text": "fine"}]}))),
        ])),
        _ => None,
    })
    .await;
    let gw = Gateway::start(&http_config(&fake.url(), "      max_message_bytes: 2048\n"));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let message = |v: &Value| v["error"]["message"].as_str().unwrap_or_default().to_owned();

    let (id, reply) = c.call("tools/call", json!({"name": "garbage"})).await;
    assert_eq!((reply.status, reply.error_code()), (502, -32003), "{}", reply.text());
    assert_eq!(reply.json()["id"], id);
    assert!(message(&reply.json()).contains("not a JSON-RPC message"), "{}", reply.text());

    let (id, reply) = c.call("tools/call", json!({"name": "big_json"})).await;
    assert_eq!((reply.status, reply.error_code()), (502, -32003), "{}", reply.text());
    assert_eq!(reply.json()["id"], id);
    assert!(message(&reply.json()).contains("max_message_bytes"), "{}", reply.text());

    let (id, reply) = c.call("tools/call", json!({"name": "big_sse"})).await;
    let last = last_message(&reply);
    assert_eq!((last["id"].clone(), last["error"]["code"].clone()), (json!(id), json!(-32003)), "{last}");
    assert!(message(&last).contains("max_message_bytes"), "{last}");

    // An SSE event that is not JSON-RPC is skipped; the response after it arrives.
    let fine = c.request("tools/call", json!({"name": "garbage_sse"})).await;
    assert_eq!(first_text(&fine), "fine");
    let echo = c.request("tools/call", json!({"name": "echo", "arguments": {"message": "still here"}})).await;
    assert_eq!(first_text(&echo), "still here");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_stream_is_resumed_with_last_event_id() {
    let fake = Fake::start(|s: &Seen| {
        if s.method == Method::GET {
            return match s.header("last-event-id").as_deref() {
                // The first reconnection brings nothing new and is closed again (polling).
                Some("ev-1") => Some(sse(vec![Step::Send("id: ev-1b\nretry: 30\ndata: \n\n".into())])),
                Some("ev-1b") => {
                    let done = json!({"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "resumed"}]}});
                    Some(sse(vec![event(Some("ev-2"), &done)]))
                }
                _ => None,
            };
        }
        match s.tool()? {
            // Priming event, one progress event, then the upstream closes the stream.
            "cut" => Some(sse(vec![
                Step::Send("id: ev-0\nretry: 50\ndata: \n\n".into()),
                event(Some("ev-1"), &progress(&s.body["params"]["_meta"]["progressToken"], 1)),
            ])),
            "cut_without_id" => Some(sse(vec![event(None, &progress(&json!(1), 1))])),
            _ => None,
        }
    })
    .await;
    let gw = Gateway::start(&http_config(&fake.url(), ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (id, status, _, mut post) =
        c.open_post("tools/call", json!({"name": "cut", "_meta": {"progressToken": 8}})).await;
    assert_eq!((id, status), (2, 200));
    let (before, result) = until_response(&mut post, id).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["method"], "notifications/progress");
    assert_eq!(first_text(&result), "resumed");
    let gets: Vec<Seen> = fake.seen().into_iter().filter(|s| s.method == Method::GET).collect();
    let ids: Vec<Option<String>> = gets.iter().map(|g| g.header("last-event-id")).collect();
    assert_eq!(ids, [Some("ev-1".to_owned()), Some("ev-1b".to_owned())]);
    for get in &gets {
        assert_eq!(get.header("mcp-session-id").as_deref(), Some(SESSION));
        assert_eq!(get.header("mcp-protocol-version").as_deref(), Some("2025-11-25"));
        assert_eq!(get.header("accept").as_deref(), Some("text/event-stream"));
    }

    // Without an event id there is nothing to resume from: a clear error.
    let (id, reply) = c.call("tools/call", json!({"name": "cut_without_id"})).await;
    let last = last_message(&reply);
    assert_eq!((last["id"].clone(), last["error"]["code"].clone()), (json!(id), json!(-32003)), "{last}");
    assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("no event id")), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_and_session_ids_are_mapped() {
    let fake = Fake::start(|_: &Seen| None).await;
    let gw = Gateway::start(&http_config(
        &fake.url(),
        "      headers:\n        X-Team: platform\n        X-Override: from-config\n      forward_headers: [x-trace]\n",
    ));
    assert_eq!(readyz(&gw).await, 200);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let ours = c.session.clone().expect("session");
    assert_ne!(ours, SESSION, "the client sees the gateway's id, never the upstream's");
    let init = fake.wait_for(SECS, |s| s.rpc_method() == Some("initialize")).await.expect("initialize");
    assert_eq!(init.header("mcp-session-id"), None);

    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m"}}});
    let mut headers = c.headers();
    headers.extend([
        ("x-override", "from-client".to_owned()),
        ("x-trace", "t-1".to_owned()),
        ("authorization", "Bearer client-secret".to_owned()),
        ("cookie", "a=b".to_owned()),
    ]);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = c.http.send(Method::POST, &c.url, &headers, Some(&body.to_string())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let call = fake.wait_for(SECS, |s| s.tool() == Some("echo")).await.expect("tools/call");
    assert_eq!(call.header("mcp-session-id").as_deref(), Some(SESSION));
    assert_eq!(call.header("mcp-protocol-version").as_deref(), Some("2025-11-25"));
    assert_eq!(call.header("x-team").as_deref(), Some("platform"));
    assert_eq!(call.headers.get_all("x-override").iter().collect::<Vec<_>>(), ["from-config"], "static headers win");
    assert_eq!(call.header("x-trace").as_deref(), Some("t-1"), "named in forward_headers");
    assert_eq!(call.header("authorization"), None);
    assert_eq!(call.header("cookie"), None);
    assert_eq!(call.header("host"), Some(format!("127.0.0.1:{}", fake.port)));

    // Keep-alive: sequential requests, JSON or SSE, reuse pooled connections. A
    // connection goes back to the pool once its connection task has seen the reply
    // end, which can lose a race with the next request on a loaded machine (hyper then
    // dials while it waits): a margin of two for that. Without keep-alive there would
    // be 13 connections.
    for n in 0..10 {
        let tool = if n % 2 == 0 { "echo_sse" } else { "echo" };
        let echo = c.request("tools/call", json!({"name": tool, "arguments": {"message": "again"}})).await;
        assert_eq!(first_text(&echo), "again");
    }
    assert!(fake.connections() <= 4, "{} connections for 13 sequential POSTs", fake.connections());

    // The upstream offers no GET stream (405): the client's stays open, empty.
    let (status, mut get) = c.open_get(None).await;
    assert_eq!(status, 200);
    let priming: SseEvent = get.next(SECS).await.expect("the gateway's priming event");
    assert_eq!(priming.data, "");
    assert!(get.next_message(Duration::from_millis(700)).await.is_none());
    assert!(!get.ended, "the GET stream stays open");
    assert!(fake.wait_for(SECS, |s| s.method == Method::GET).await.is_some());

    assert_eq!(c.delete().await.status, 200);
    let delete = fake.wait_for(SECS, |s| s.method == Method::DELETE).await.expect("DELETE upstream");
    assert_eq!(delete.header("mcp-session-id").as_deref(), Some(SESSION));
    assert_eq!(delete.header("mcp-protocol-version").as_deref(), Some("2025-11-25"));
    assert_eq!(delete.header("x-team").as_deref(), Some("platform"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_requests_in_flight_are_bounded() {
    let fake = Fake::start(|s: &Seen| match s.tool()? {
        "busy" => Some(sse(vec![event(None, &progress(&json!("b"), 1)), Step::Stall])),
        _ => None,
    })
    .await;
    let gw = Gateway::start(&http_config(&fake.url(), "      max_sessions: 1\n      max_in_flight: 1\n"));
    let mut first = McpClient::new(&gw.mcp_url);
    first.initialize("2025-11-25").await;
    let second = McpClient::new(&gw.mcp_url);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let reply = second.post_raw(&init.to_string()).await;
    assert_eq!((reply.status, reply.error_code()), (503, -32000), "{}", reply.text());

    let (_, status, _, mut in_flight) = first.open_post("tools/call", json!({"name": "busy"})).await;
    assert_eq!(status, 200);
    assert!(in_flight.next_message(SECS).await.is_some_and(|m| m["method"] == "notifications/progress"));
    let (_, reply) = first.call("tools/call", json!({"name": "echo", "arguments": {"message": "m"}})).await;
    assert_eq!((reply.status, reply.error_code()), (503, -32000), "{}", reply.text());

    // The client cancels the busy request: its stream ends, the upstream hears of it,
    // and the slot is free again.
    let busy = fake.wait_for(SECS, |s| s.tool() == Some("busy")).await.expect("busy call");
    let cancel = first.notify("notifications/cancelled", json!({"requestId": busy.body["id"]})).await;
    assert_eq!(cancel.status, 202);
    assert!(in_flight.next_message(SECS).await.is_none());
    assert!(in_flight.ended, "the cancelled request's stream ended");
    assert!(fake.wait_for(SECS, |s| s.rpc_method() == Some("notifications/cancelled")).await.is_some());
    let echo = first.request("tools/call", json!({"name": "echo", "arguments": {"message": "free"}})).await;
    assert_eq!(first_text(&echo), "free");
}

// === https ===

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_verified_and_speak_h2() {
    let (ca_pem, tls) = private_ca();
    let fake = Fake::start_tls(|_: &Seen| None, tls).await;
    let dir = common::scratch_dir("tls");
    let trusted = dir.join("ca.pem");
    std::fs::write(&trusted, &ca_pem).expect("write CA");
    let url = format!("https://localhost:{}/mcp", fake.port);
    let gw = EnvGateway::start(&http_config(&url, ""), &[("SSL_CERT_FILE", trusted.to_str().expect("path"))]);
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let echo = c.request("tools/call", json!({"name": "echo", "arguments": {"message": "over TLS"}})).await;
    assert_eq!(first_text(&echo), "over TLS");
    let call = fake.wait_for(SECS, |s| s.tool() == Some("echo")).await.expect("tools/call");
    assert_eq!(call.version, http::Version::HTTP_2, "h2 negotiated by ALPN");
    assert_eq!(call.header("mcp-session-id").as_deref(), Some(SESSION));

    // Trusting another CA, the same upstream is refused.
    let (other_pem, _) = private_ca();
    let other = dir.join("other.pem");
    std::fs::write(&other, other_pem).expect("write CA");
    let gw = EnvGateway::start(&http_config(&url, ""), &[("SSL_CERT_FILE", other.to_str().expect("path"))]);
    let c = McpClient::new(&gw.mcp_url);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let reply = c.post_raw(&init.to_string()).await;
    assert_eq!((reply.status, reply.error_code()), (502, -32003), "{}", reply.text());
}

/// A gateway config with one HTTP upstream `name` at `url` (`extra`: more keys for it).
fn one_http_upstream(name: &str, url: &str, extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  {name}:\n    http:\n      url: {url}\n{extra}"
    )
}

/// A fake's answer to `server/discover`: a 2026-07-28-only server with tools.
fn modern_discover(s: &Seen) -> fake::Reply {
    json_reply(
        StatusCode::OK,
        &s.result(json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
            "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})),
    )
}

/// Sets the flag when dropped: a fake upstream's response body ended on the server side.
struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_client_closing_its_stream_closes_the_modern_upstreams_stream() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let fake = Fake::start(move |s: &Seen| match s.rpc_method() {
        Some("server/discover") => Some(modern_discover(s)),
        Some("tools/call") => {
            // One progress event, then the stream stays open until the gateway drops it.
            let guard = DropFlag(flag.clone());
            let first = format!("event: message\ndata: {}\n\n", progress(&json!("p"), 1));
            let body = futures_util::stream::unfold((Some(first), guard), |(next, guard)| async move {
                match next {
                    Some(text) => Some((
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(text))),
                        (None, guard),
                    )),
                    None => std::future::pending().await,
                }
            });
            let mut r =
                http::Response::new(http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(body)));
            r.headers_mut().insert("content-type", "text/event-stream".parse().expect("header"));
            Some(r)
        }
        _ => None,
    })
    .await;
    let yaml = one_http_upstream("modern", &fake.url(), "");
    let gw = Gateway::start(&yaml);
    let client = common::modern::ModernClient::new(&gw.mcp_url);
    let params = json!({"name": "slow", "arguments": {}, "_meta": {"progressToken": "p"}});
    let (status, _, mut reader) = client.open(&json!(1), "tools/call", params, &json!({})).await;
    assert_eq!(status, 200);
    let first = reader.next_message(Duration::from_secs(5)).await.expect("the progress event");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert!(!closed.load(Ordering::SeqCst), "the upstream stream is open while the client reads");
    let call =
        fake.seen().into_iter().find(|s| s.rpc_method() == Some("tools/call")).expect("tools/call went upstream");
    assert_eq!(call.header("mcp-method").as_deref(), Some("tools/call"), "routing headers forwarded");
    assert_eq!(call.header("mcp-name").as_deref(), Some("slow"));
    assert!(call.header("mcp-session-id").is_none());
    drop(reader);
    assert!(
        wait_until(Duration::from_secs(5), || closed.load(Ordering::SeqCst)),
        "closing the client's stream closes the upstream stream (the cancellation of 2026-07-28)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_client_is_bridged_to_a_legacy_http_upstream() {
    let everything = Everything::start();
    let yaml = one_http_upstream("everything", &everything.url(), "");
    let gw = Gateway::start(&yaml);
    let client = common::modern::ModernClient::new(&gw.mcp_url);
    let (status, list) = client.call("tools/list", json!({}), &json!({})).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["result"]["resultType"], "complete", "{list}");
    assert_eq!(list["result"]["cacheScope"], "private", "{list}");
    let names: Vec<&str> =
        list["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo"), "{names:?}");
    let (status, echo) =
        client.call("tools/call", json!({"name": "echo", "arguments": {"message": "over http"}}), &json!({})).await;
    assert_eq!(status, 200, "{echo}");
    let text = echo["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("over http"), "{echo}");
    assert!(gw.wait_log("era=Legacy", Duration::from_secs(5)), "probed as legacy: {}", gw.log());
    // 2025 clients keep their own sessions on the same route.
    let mut legacy = McpClient::new(&gw.mcp_url);
    legacy.initialize("2025-06-18").await;
    let tools = legacy.request("tools/list", json!({})).await;
    assert!(tools["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{tools}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_era_client_of_a_modern_only_upstream_gets_list_changes_on_its_get_stream() {
    let server = common::ModernServer::start_args(&["--modern-only"]);
    let yaml = one_http_upstream("modern", &server.url, "");
    let gw = Gateway::start(&yaml);
    let mut client = McpClient::new(&gw.mcp_url);
    let init = client.initialize("2025-11-25").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "shadowcat-modern-fixture", "from server/discover: {init}");
    let pong = client.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "answered by the gateway: {pong}");
    let (status, mut get) = client.open_get(None).await;
    assert_eq!(status, 200);
    // Give the upstream listen time to be acknowledged before the change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed = client.request("tools/call", json!({"name": "test_trigger_tool_change", "arguments": {}})).await;
    assert!(changed.get("result").is_some(), "{changed}");
    let mut seen = Vec::new();
    let found = loop {
        let Some(m) = get.next_message(Duration::from_secs(5)).await else { break false };
        if m["method"] == "notifications/tools/list_changed" {
            assert!(m["params"]["_meta"].get("io.modelcontextprotocol/subscriptionId").is_none(), "{m}");
            break true;
        }
        seen.push(m);
    };
    assert!(found, "tools/list_changed on the GET stream; saw {seen:?}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_requests_to_a_modern_upstream_are_bounded() {
    let fake = Fake::start(|s: &Seen| match s.rpc_method() {
        Some("server/discover") => Some(modern_discover(s)),
        // The call streams one progress event, then stalls.
        Some("tools/call") => Some(sse(vec![event(None, &progress(&json!("p"), 1)), Step::Stall])),
        _ => None,
    })
    .await;
    let yaml = one_http_upstream("modern", &fake.url(), "      max_sessions: 1\n      max_in_flight: 1\n");
    let gw = Gateway::start(&yaml);
    let client = common::modern::ModernClient::new(&gw.mcp_url);
    let params = json!({"name": "slow", "arguments": {}, "_meta": {"progressToken": "p"}});
    let (status, _, mut first) = client.open(&json!(1), "tools/call", params.clone(), &json!({})).await;
    assert_eq!(status, 200);
    assert!(first.next_message(Duration::from_secs(5)).await.is_some());
    let (status, refused) = client.call("tools/call", params.clone(), &json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_i64()), (503, Some(-32000)), "{refused}");
    // Closing the first frees its place.
    drop(first);
    let freed = {
        let mut ok = false;
        for _ in 0..50 {
            let (status, _, mut again) = client.open(&json!(3), "tools/call", params.clone(), &json!({})).await;
            if status == 200 && again.next_message(Duration::from_secs(2)).await.is_some() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ok
    };
    assert!(freed, "the place is free again once the first stream is closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_era_client_of_a_modern_only_upstream_gets_updates_of_resources_it_subscribed_to() {
    let server = common::ModernServer::start_args(&["--modern-only"]);
    let yaml = one_http_upstream("modern", &server.url, "");
    let gw = Gateway::start(&yaml);
    let mut client = McpClient::new(&gw.mcp_url);
    client.initialize("2025-11-25").await;
    let (status, mut get) = client.open_get(None).await;
    assert_eq!(status, 200);
    let sub = client.request("resources/subscribe", json!({"uri": "test://watched-resource"})).await;
    assert_eq!(sub["result"], json!({}), "{sub}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let touched = client
        .request(
            "tools/call",
            json!({"name": "test_trigger_resource_update", "arguments": {"uri": "test://watched-resource"}}),
        )
        .await;
    assert!(touched.get("result").is_some(), "{touched}");
    let mut seen = Vec::new();
    let found = loop {
        let Some(m) = get.next_message(Duration::from_secs(5)).await else { break false };
        if m["method"] == "notifications/resources/updated" {
            assert_eq!(m["params"]["uri"], "test://watched-resource", "{m}");
            break true;
        }
        seen.push(m);
    };
    assert!(found, "resources/updated on the GET stream; saw {seen:?}\n{}", gw.log());
}

/// Headers a client sends on every path of the allow-list test: what must arrive and
/// what must not.
const CLIENT_EXTRA: &[(&str, &str)] = &[
    ("authorization", "Bearer client-secret"),
    ("cookie", "sid=client-cookie"),
    ("x-api-key", "client-api-key"),
    ("x-auth-token", "client-auth-token"),
    ("forwarded", "for=10.9.9.9"),
    ("x-forwarded-for", "10.9.9.9"),
    ("x-forwarded-host", "evil.example"),
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("user-agent", "header-test/1"),
    ("x-tenant-id", "acme"),
];

/// What an upstream request carried of `CLIENT_EXTRA`.
fn assert_allow_list(seen: &Seen, path: &str) {
    for name in
        ["authorization", "cookie", "x-api-key", "x-auth-token", "forwarded", "x-forwarded-for", "x-forwarded-host"]
    {
        assert_eq!(seen.header(name), None, "{path}: {name} reached the upstream");
    }
    assert_eq!(
        seen.header("traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        "{path}: trace context"
    );
    assert_eq!(seen.header("user-agent").as_deref(), Some("header-test/1"), "{path}: user-agent");
    assert_eq!(seen.header("x-tenant-id").as_deref(), Some("acme"), "{path}: forward_headers");
}

/// A fake 2026-07-28-only server: discover, and `echo` as a complete result.
fn modern_fake(s: &Seen) -> Option<fake::Reply> {
    match s.rpc_method() {
        Some("server/discover") => Some(modern_discover(s)),
        Some("tools/call") => {
            let text = s.body["params"]["arguments"]["message"].clone();
            let result = json!({"resultType": "complete", "content": [{"type": "text", "text": text}]});
            Some(json_reply(StatusCode::OK, &s.result(result)))
        }
        _ => None,
    }
}

/// POSTs `body` to `url` with `headers` plus `CLIENT_EXTRA`; the upstream's copy of
/// the request whose `echo` message is `message`, checked against the allow-list.
async fn post_extra(fake: &Fake, url: &str, headers: Vec<(String, String)>, body: &str, message: &str) -> Seen {
    let mut headers = headers;
    headers.extend(CLIENT_EXTRA.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = Http::new().send(Method::POST, url, &headers, Some(body)).await;
    assert_eq!(reply.status, 200, "{message}: {}", reply.text());
    let seen = fake.wait_for(SECS, |s| s.body["params"]["arguments"]["message"] == message).await;
    let seen = seen.unwrap_or_else(|| panic!("{message}: no request upstream"));
    assert_allow_list(&seen, message);
    seen
}

/// A 2025 client's `tools/call echo` as (headers, body).
fn session_echo(c: &McpClient, message: &str) -> (Vec<(String, String)>, String) {
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": message}}});
    (c.headers().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), body.to_string())
}

/// A 2026-07-28 client's `tools/call echo` as (headers, body).
fn stateless_echo(message: &str) -> (Vec<(String, String)>, String) {
    use common::modern::ModernClient;
    let params = json!({"name": "echo", "arguments": {"message": message}});
    let body = ModernClient::body(&ModernClient::next_id(), "tools/call", &params, &json!({}));
    (ModernClient::headers("tools/call", &params).into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), body)
}

#[tokio::test(flavor = "multi_thread")]
async fn client_headers_follow_one_allow_list_on_every_path() {
    let forward = "      forward_headers: [x-tenant-id]\n";

    // 1. A 2025 client's session, relayed to a 2025 server.
    let fake = Fake::start(|_: &Seen| None).await;
    let gw = Gateway::start(&one_http_upstream("up", &fake.url(), &format!("      era: legacy\n{forward}")));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (headers, body) = session_echo(&c, "session");
    post_extra(&fake, &gw.mcp_url, headers, &body, "session").await;

    // 2. A 2026-07-28 client, pooled onto a 2025 server by the bridge.
    let (headers, body) = stateless_echo("pooled");
    let call = post_extra(&fake, &gw.mcp_url, headers, &body, "pooled").await;
    assert_eq!(call.header("mcp-protocol-version").as_deref(), Some("2025-11-25"), "the pooled session's own version");
    assert_eq!(call.header("mcp-method"), None, "the stateless routing headers stay behind");
    drop(gw);

    // 3. A 2026-07-28 client of a 2026-07-28 server.
    let fake = Fake::start(modern_fake).await;
    let gw = Gateway::start(&one_http_upstream("up", &fake.url(), &format!("      era: modern\n{forward}")));
    let (headers, body) = stateless_echo("stateless");
    let call = post_extra(&fake, &gw.mcp_url, headers, &body, "stateless").await;
    assert_eq!(call.header("mcp-name").as_deref(), Some("echo"), "routing headers go to a modern server");

    // 4. A 2025 client of that server: the session the gateway owns.
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
    let (headers, body) = session_echo(&c, "owned");
    let call = post_extra(&fake, &gw.mcp_url, headers, &body, "owned").await;
    assert_eq!(call.header("mcp-protocol-version").as_deref(), Some("2026-07-28"));
}

#[test]
fn forward_headers_cannot_name_credentials() {
    let dir = std::env::temp_dir().join(format!("shadowcat-fwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.yaml");
    let yaml = one_http_upstream("up", "http://127.0.0.1:9/mcp", "      forward_headers: [Authorization]\n");
    std::fs::write(&file, yaml).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shadowcat"))
        .args(["config", "validate"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("forward_headers[0]") && err.contains("passed through"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_are_made_by_the_gateway_when_an_upstream_asks() {
    let fake = Fake::start(|_: &Seen| None).await;
    let gw = Gateway::start(&one_http_upstream("up", &fake.url(), "      era: legacy\n      forwarded: true\n"));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (mut headers, body) = session_echo(&c, "forwarded");
    // A client cannot pass for someone else: its own values are replaced.
    headers.push(("x-forwarded-for".into(), "6.6.6.6".into()));
    headers.push(("x-shadowcat-peer".into(), "9.9.9.9".into()));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = Http::new().send(Method::POST, &gw.mcp_url, &headers, Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let call = fake.wait_for(SECS, |s| s.body["params"]["arguments"]["message"] == "forwarded").await.expect("call");
    assert_eq!(call.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(call.header("forwarded").as_deref(), Some("for=127.0.0.1;proto=http"));
    assert_eq!(call.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(call.header("x-shadowcat-peer"), None, "the hand-down header never leaves the gateway");
}
