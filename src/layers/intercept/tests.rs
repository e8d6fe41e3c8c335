//! The stage's actions on each kind of message, with `service_fn` upstreams and
//! `oneshot` (no sockets). End-to-end runs with real clients and servers are in
//! `tests/intercept.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tower::{service_fn, ServiceExt};

use super::*;
use crate::pipeline::{McpReply, McpService, ReplyBody};
use crate::protocol::{id_value, ProtocolVersion};

fn msg(v: Value) -> Message {
    Message::from_value(&v)
}

fn call(id: u64, tool: &str, text: &str) -> McpRequest {
    let m =
        msg(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"message":text}}}));
    McpRequest::message(m, "/mcp".into(), ProtocolVersion::V2025_06_18)
}

/// An upstream that answers every request with `{"echo": <tool>}` after a progress
/// notification and a log message (as an SSE stream), counting the calls it got.
fn upstream(calls: Arc<AtomicUsize>) -> McpService {
    McpService::new(service_fn(move |req: McpRequest| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let m = req.msg().cloned().ok_or_else(|| GatewayError::Internal("no message".into()))?;
            let id = m.id_key().map(id_value).unwrap_or(Value::Null);
            let tool = m.tool_name().unwrap_or("").to_owned();
            let messages = vec![
                msg(json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"log"}})),
                msg(json!({"jsonrpc":"2.0","id":id,"result":{"echo":tool}})),
            ];
            Ok::<_, GatewayError>(McpReply::stream(Box::pin(futures_util::stream::iter(messages))))
        }
    }))
}

fn stage(text: &str) -> (McpService, Arc<AtomicUsize>) {
    let set = RuleSet::parse(text, "rules.yaml").expect("valid rules");
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = StageLayer::new(Interceptor::new(set)).service(upstream(calls.clone()));
    (svc, calls)
}

async fn messages(reply: McpReply) -> Vec<Value> {
    match reply.body {
        ReplyBody::Message(m) => vec![m.to_value().expect("json")],
        ReplyBody::Stream(s) => s.map(|m| m.to_value().expect("json")).collect().await,
        ReplyBody::Accepted => vec![],
    }
}

#[tokio::test]
async fn block_answers_with_the_rules_error_without_the_upstream() {
    let (svc, calls) = stage(
        "version: 1\nrules:\n  - id: block-echo\n    match: { method: tools/call, tool: echo }\n    action: { block: { code: -32050, message: \"blocked by rule block-echo\" } }\n",
    );
    let out = messages(svc.clone().oneshot(call(1, "echo", "hi")).await.expect("reply")).await;
    assert_eq!(out, [json!({"jsonrpc":"2.0","id":1,"error":{"code":-32050,"message":"blocked by rule block-echo"}})]);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the upstream never saw it");
    let out = messages(svc.oneshot(call(2, "add", "hi")).await.expect("reply")).await;
    assert_eq!(out.last().map(|m| m["result"]["echo"].clone()), Some(json!("add")), "other tools pass");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn block_with_a_status_refuses_over_http() {
    let (svc, _) = stage(
        "version: 1\nrules:\n  - id: limited\n    match: { method: tools/call }\n    action: { block: { status: 429, code: -32029, message: slow down, headers: { retry-after: '7' } } }\n",
    );
    let err = svc.oneshot(call(1, "echo", "hi")).await.expect_err("refused");
    assert_eq!(err.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.headers().and_then(|h| h.get("retry-after")).map(|v| v.as_bytes()), Some(&b"7"[..]));
}

#[tokio::test]
async fn mock_renders_the_request_into_its_result() {
    let (svc, calls) = stage(
        "version: 1\nrules:\n  - id: mock-echo\n    match: { method: tools/call, tool: echo }\n    action:\n      mock:\n        result: { content: [ { type: text, text: \"mocked {{request.params.arguments.message}}\" } ] }\n",
    );
    let out = messages(svc.oneshot(call(3, "echo", "a \"quoted\" {word}")).await.expect("reply")).await;
    assert_eq!(out[0]["id"], 3);
    assert_eq!(out[0]["result"]["content"][0]["text"], "mocked a \"quoted\" {word}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_template_that_does_not_render_is_a_clear_error() {
    let (svc, _) = stage(
        "version: 1\nrules:\n  - id: m\n    action: { mock: { result: { text: \"{{request.params.nothing}}\" } } }\n",
    );
    let out = messages(svc.oneshot(call(4, "echo", "x")).await.expect("reply")).await;
    assert_eq!(out[0]["error"]["code"], -32603);
    let text = out[0]["error"]["message"].as_str().unwrap_or("");
    assert!(text.contains("rule m: the mock's template did not render"), "{text}");
}

#[tokio::test]
async fn drop_discards_notifications_and_answers_requests() {
    let (svc, _) = stage(
        "version: 1\nrules:\n  - id: no-logs\n    match: { direction: server_to_client, method: notifications/message }\n    action: drop\n",
    );
    let out = messages(svc.oneshot(call(5, "echo", "x")).await.expect("reply")).await;
    assert_eq!(out.len(), 1, "the log message is gone: {out:?}");
    assert_eq!(out[0]["result"]["echo"], "echo");

    let (svc, calls) = stage("version: 1\nrules:\n  - id: gone\n    match: { method: tools/call }\n    action: drop\n");
    let out = messages(svc.oneshot(call(6, "echo", "x")).await.expect("reply")).await;
    assert_eq!(out[0]["error"]["code"], DROPPED_CODE);
    assert_eq!(out[0]["error"]["message"], "dropped by rule gone");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn responses_are_matched_by_their_requests_method() {
    let (svc, calls) = stage(
        "version: 1\nrules:\n  - id: patch\n    match: { direction: server_to_client, method: tools/call, tool: echo }\n    action: { mock: { result: { patched: true } } }\n",
    );
    let out = messages(svc.oneshot(call(7, "echo", "x")).await.expect("reply")).await;
    assert_eq!(out.last().cloned(), Some(json!({"jsonrpc":"2.0","id":7,"result":{"patched":true}})));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the upstream answered; its answer was replaced");
}

#[tokio::test(start_paused = true)]
async fn delay_holds_the_request() {
    let (svc, calls) =
        stage("version: 1\nrules:\n  - id: slow\n    match: { method: tools/call }\n    action: { delay: { fixed: 300ms } }\n");
    let started = tokio::time::Instant::now();
    let out = messages(svc.oneshot(call(8, "add", "x")).await.expect("reply")).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(out.last().map(|m| m["result"]["echo"].clone()), Some(json!("add")));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn disabled_rules_and_spent_rules_let_later_ones_act() {
    let (svc, _) = stage(
        "version: 1\nrules:\n  - id: off\n    enabled: false\n    action: drop\n  - id: once\n    times: 1\n    match: { method: tools/call }\n    action: { block: { message: first } }\n  - id: then\n    match: { method: tools/call }\n    action: { block: { message: second } }\n",
    );
    let first = messages(svc.clone().oneshot(call(1, "a", "x")).await.expect("reply")).await;
    let second = messages(svc.oneshot(call(2, "a", "x")).await.expect("reply")).await;
    assert_eq!(first[0]["error"]["message"], "first");
    assert_eq!(second[0]["error"]["message"], "second");
}

#[tokio::test]
async fn a_rule_without_a_direction_leaves_the_response_alone() {
    let set = RuleSet::parse(
        "version: 1\nrules:\n  - id: any-way\n    match: { method: tools/call }\n    action: continue\n",
        "r.yaml",
    )
    .expect("valid");
    let interceptor = Interceptor::new(set);
    let svc = StageLayer::new(interceptor.clone()).service(upstream(Arc::new(AtomicUsize::new(0))));
    messages(svc.oneshot(call(1, "echo", "x")).await.expect("reply")).await;
    let status = interceptor.status();
    assert_eq!(status["rules"][0]["matches"], 1, "the request only, not its response: {status}");
}

#[tokio::test]
async fn a_mock_for_a_stateless_client_says_its_result_is_complete() {
    let (svc, _) = stage("version: 1\nrules:\n  - id: m\n    match: { method: tools/call }\n    action: { mock: { result: { content: [] } } }\n");
    let mut req = call(1, "echo", "x");
    req.version = ProtocolVersion::V2026_07_28;
    let out = messages(svc.oneshot(req).await.expect("reply")).await;
    assert_eq!(out[0]["result"], json!({"content": [], "resultType": "complete"}));
}

#[tokio::test]
async fn faults_fail_the_call_as_something_below_would() {
    let (svc, calls) = stage(
        "version: 1\nrules:\n  - id: busy\n    match: { tool: busy }\n    action: { fault: { too_many_requests: { retry_after: 7s } } }\n  - id: down\n    match: { tool: down }\n    action: { fault: { upstream_error: gone } }\n",
    );
    let err = svc.clone().oneshot(call(1, "busy", "x")).await.expect_err("429");
    assert_eq!(err.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert!(err.to_string().contains("fault injected by rule busy"), "{err}");
    let err = svc.oneshot(call(2, "down", "x")).await.expect_err("502");
    assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
    assert!(err.to_string().contains("gone"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_holds_then_fails_and_hang_never_answers() {
    let (svc, _) = stage(
        "version: 1\nrules:\n  - id: slow\n    match: { tool: slow }\n    action: { fault: { timeout: 5s } }\n  - id: stuck\n    match: { tool: stuck }\n    action: { fault: hang }\n",
    );
    let started = tokio::time::Instant::now();
    let err = svc.clone().oneshot(call(1, "slow", "x")).await.expect_err("504");
    assert_eq!(err.status(), http::StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_secs(5));
    let hung = tokio::time::timeout(Duration::from_secs(3600), svc.oneshot(call(2, "stuck", "x"))).await;
    assert!(hung.is_err(), "no answer within an hour");
}

#[test]
fn uniform_and_exponential_delays() {
    let text = "version: 1\nseed: 3\nrules:\n  - id: u\n    action: { delay: { uniform: [100ms, 200ms] } }\n  - id: e\n    action: { delay: { exponential: { base: 100ms, factor: 2, max: 1s } } }\n";
    let set = RuleSet::parse(text, "r.yaml").expect("valid");
    let (Action::Delay(u), Action::Delay(e)) = (&set.rules[0].action, &set.rules[1].action) else { panic!("delays") };
    let draws: Vec<Duration> = (0..20).map(|n| u.for_firing(n, set.rules[0].seed)).collect();
    assert!(draws.iter().all(|d| (Duration::from_millis(100)..=Duration::from_millis(200)).contains(d)), "{draws:?}");
    assert!(draws.windows(2).any(|w| w[0] != w[1]), "they vary: {draws:?}");
    assert_eq!(draws, (0..20).map(|n| u.for_firing(n, set.rules[0].seed)).collect::<Vec<_>>(), "and repeat");
    let grown: Vec<u128> = (0..6).map(|n| e.for_firing(n, 0).as_millis()).collect();
    assert_eq!(grown, [100, 200, 400, 800, 1000, 1000]);
    let bad = "version: 1\nrules:\n  - id: b\n    action: { delay: { uniform: [2s, 1s] } }\n";
    assert!(RuleSet::parse(bad, "r.yaml").expect_err("bounds").contains("action.delay.uniform"));
}

/// The wire fault each message of a reply carries (its name), in order.
async fn wire_faults(reply: McpReply) -> Vec<Option<&'static str>> {
    let fault = |m: &Message| m.wire_fault().map(|by| by.fault.name());
    match reply.body {
        ReplyBody::Message(m) => vec![fault(&m)],
        ReplyBody::Stream(s) => s.map(|m| fault(&m)).collect().await,
        ReplyBody::Accepted => vec![],
    }
}

#[tokio::test]
async fn wire_faults_mark_the_answer_the_first_message_or_every_one() {
    let (svc, calls) = stage(
        "version: 1\nrules:\n  - id: g\n    match: { method: tools/call, tool: garble }\n    action: { fault: malformed }\n  - id: c\n    match: { method: tools/call, tool: cut }\n    action: { fault: reset }\n  - id: d\n    match: { method: tools/call, tool: drip }\n    action: { fault: { dribble: { chunk: 3 } } }\n  - id: n\n    match: { direction: server_to_client, method: notifications/message }\n    action: { fault: { malformed: oops } }\n",
    );
    // malformed on a request: only its answer; the log before it is the `n` rule's.
    let reply = svc.clone().oneshot(call(1, "garble", "x")).await.expect("reply");
    assert_eq!(wire_faults(reply).await, [Some("malformed"), Some("malformed")]);
    let reply = svc.clone().oneshot(call(2, "garble", "x")).await.expect("reply");
    let answer = match reply.body {
        ReplyBody::Stream(s) => s.collect::<Vec<_>>().await.pop().expect("the answer"),
        _ => panic!("a stream"),
    };
    let Some(WireFault::Malformed(half)) = answer.wire_fault().map(|by| &by.fault) else { panic!("malformed") };
    assert_eq!(&half[..], &answer.bytes()[..answer.bytes().len() / 2], "the first half of its bytes");
    assert_eq!(answer.to_value().expect("the message itself is whole")["result"]["echo"], "garble");
    // reset: the first message to the client, whatever it is; dribble: every one.
    let reply = svc.clone().oneshot(call(3, "cut", "x")).await.expect("reply");
    assert_eq!(wire_faults(reply).await, [Some("reset"), None]);
    let reply = svc.clone().oneshot(call(4, "drip", "x")).await.expect("reply");
    assert_eq!(wire_faults(reply).await, [Some("dribble"), Some("dribble")]);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "every request reached the upstream");
    let bad = "version: 1\nrules:\n  - id: b\n    action: { fault: { dribble: { chunk: 0 } } }\n";
    assert!(RuleSet::parse(bad, "r.yaml").expect_err("chunk").contains("action.fault.dribble.chunk"));
}

#[tokio::test(start_paused = true)]
async fn a_stall_stops_a_stream_at_its_message() {
    let (svc, _) = stage(
        "version: 1\nrules:\n  - id: s\n    match: { direction: server_to_client, method: tools/call }\n    action: { fault: stall }\n",
    );
    let ReplyBody::Stream(mut s) = svc.oneshot(call(1, "echo", "x")).await.expect("reply").body else {
        panic!("a stream")
    };
    let first = s.next().await.expect("the log before it").to_value().expect("json");
    assert_eq!(first["method"], "notifications/message");
    let stalled = tokio::time::timeout(Duration::from_secs(3600), s.next()).await;
    assert!(stalled.is_err(), "nothing more within an hour, and the stream is still open");
}

#[test]
fn side_is_checked_at_load() {
    let nested = "version: 1\nrules:\n  - id: n\n    match: { not: { side: upstream } }\n    action: drop\n";
    assert!(RuleSet::parse(nested, "r.yaml").expect_err("nested").contains("match.not.side: only at the top"));
    let wire = "version: 1\nrules:\n  - id: w\n    match: { side: upstream }\n    action: { fault: reset }\n";
    assert!(RuleSet::parse(wire, "r.yaml")
        .expect_err("wire fault")
        .contains("action.fault: malformed, reset and dribble"));
    let client_keys =
        "version: 1\nrules:\n  - id: h\n    match: { side: upstream, headers: { user-agent: x } }\n    action: drop\n";
    let set = RuleSet::parse(client_keys, "r.yaml").expect("valid");
    assert!(set.warnings.iter().any(|w| w.contains("match.headers: never matches")), "{:?}", set.warnings);
    assert_eq!(set.upstream, [0], "kept apart from the client's rules");
    let bad = "version: 1\nrules:\n  - id: b\n    match: { side: sideways }\n    action: drop\n";
    assert!(RuleSet::parse(bad, "r.yaml").is_err());
}

#[tokio::test]
async fn upstream_side_rules_leave_the_clients_wire_alone() {
    let (svc, calls) = stage(
        "version: 1\nrules:\n  - id: u\n    match: { side: upstream, method: tools/call }\n    action: { block: { code: -32050 } }\n",
    );
    let out = messages(svc.oneshot(call(1, "echo", "x")).await.expect("reply")).await;
    assert_eq!(out.last().map(|m| m["result"]["echo"].clone()), Some(json!("echo")), "{out:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rules_match_the_principals_claims() {
    let (svc, calls) = stage(concat!(
        "version: 1\nrules:\n",
        "  - id: admins-only\n    match: { method: tools/call, tool: drop_table, not: { claims: { groups: admin } } }\n    action: { block: { code: -32050, message: admins only } }\n",
        "  - id: readers\n    match: { method: tools/call, claims: { scope: \"mcp:read\", realm.tier: \"gold*\" } }\n    action: { mock: { result: { content: [] } } }\n",
    ));
    let with = |id: u64, tool: &str, claims: Value| {
        let mut req = call(id, tool, "x");
        req.context.extensions.insert(crate::pipeline::Principal { id: "alice".into(), claims: Arc::new(claims) });
        req
    };
    let admin = json!({"sub": "alice", "groups": ["staff", "admin"], "scope": "mcp:tools"});
    let out = messages(svc.clone().oneshot(with(1, "drop_table", admin)).await.expect("reply")).await;
    assert_eq!(out.last().map(|m| m["result"]["echo"].clone()), Some(json!("drop_table")), "an admin passes: {out:?}");
    let staff = json!({"sub": "bob", "groups": ["staff"]});
    let out = messages(svc.clone().oneshot(with(2, "drop_table", staff)).await.expect("reply")).await;
    assert_eq!(out[0]["error"]["message"], "admins only", "{out:?}");
    // No principal (no authentication stage): no claims, so `not: { claims }` matches.
    let out = messages(svc.clone().oneshot(call(3, "drop_table", "x")).await.expect("reply")).await;
    assert_eq!(out[0]["error"]["message"], "admins only", "{out:?}");
    let reader = json!({"sub": "carol", "scope": "mcp:tools mcp:read", "realm": {"tier": "gold-2"}});
    let out = messages(svc.clone().oneshot(with(4, "search", reader)).await.expect("reply")).await;
    assert_eq!(out[0]["result"], json!({"content": []}), "scope split on spaces, a dotted claim: {out:?}");
    let silver = json!({"sub": "dan", "scope": "mcp:read", "realm": {"tier": "silver"}});
    let out = messages(svc.oneshot(with(5, "search", silver)).await.expect("reply")).await;
    assert_eq!(out.last().map(|m| m["result"]["echo"].clone()), Some(json!("search")), "{out:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the admin's call and dan's reached the upstream");
    let bad = "version: 1\nrules:\n  - id: b\n    match: { claims: { \"a..b\": x } }\n    action: drop\n";
    assert!(RuleSet::parse(bad, "r.yaml").expect_err("bad name").contains("match.claims"));
}
