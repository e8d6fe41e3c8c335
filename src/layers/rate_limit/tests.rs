//! Rates, keys, refusals and bounds, over a `service_fn` upstream (no sockets).
//! End-to-end runs over HTTP and stdio are in `tests/policy.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tower::{service_fn, ServiceExt};

use super::*;
use crate::pipeline::{McpReply, McpService, Principal};
use crate::protocol::{id_value, Message, ProtocolVersion};

fn upstream(calls: Arc<AtomicUsize>) -> McpService {
    McpService::new(service_fn(move |req: McpRequest| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let id = req.msg().and_then(|m| m.id_key()).map(id_value).unwrap_or(Value::Null);
            Ok::<_, GatewayError>(McpReply::message(Message::from_value(&json!({"jsonrpc":"2.0","id":id,"result":{}}))))
        }
    }))
}

fn stage(options: Value) -> (McpService, Arc<AtomicUsize>) {
    let ctx = BuildContext::default();
    let wrap = build(&options, &ctx).expect("valid options");
    let calls = Arc::new(AtomicUsize::new(0));
    (wrap(upstream(calls.clone())), calls)
}

fn request(who: &str, method: &str, tool: &str) -> McpRequest {
    let m = Message::from_value(&json!({"jsonrpc":"2.0","id":1,"method":method,"params":{"name":tool}}));
    let mut req = McpRequest::message(m, "/mcp".into(), ProtocolVersion::V2025_06_18);
    req.context.extensions.insert(Principal { id: who.into(), claims: Arc::new(json!({})) });
    req
}

async fn outcome(svc: &McpService, req: McpRequest) -> Result<(), GatewayError> {
    svc.clone().oneshot(req).await.map(|_| ())
}

#[test]
fn rates_parse_and_bad_ones_say_why() {
    assert_eq!(parse_rate("10/s"), Ok((10, Duration::from_secs(1))));
    assert_eq!(parse_rate("600/m"), Ok((600, Duration::from_secs(60))));
    assert_eq!(parse_rate("5/100ms"), Ok((5, Duration::from_millis(100))));
    assert_eq!(parse_rate("1/h"), Ok((1, Duration::from_secs(3600))));
    for bad in ["10", "x/s", "0/s", "10/fortnight", "-1/s"] {
        assert!(parse_rate(bad).is_err(), "{bad}");
    }
    let ctx = BuildContext::default();
    let err = |o: Value| build(&o, &ctx).err().expect("refused");
    assert!(err(json!({"limits": [{"key": ["principal"], "rate": "ten per second"}]})).starts_with("limits[0]: rate"));
    assert!(err(json!({"limits": [{"key": ["colour"], "rate": "1/s"}]})).contains("colour"));
    assert!(err(json!({"limits": [{"key": [], "rate": "1/s"}]})).contains("`key` is empty"));
    assert!(err(json!({"limits": [{"key": ["route"], "rate": "1/s", "burst": 0}]})).contains("burst"));
    assert!(err(json!({"limits": []})).contains("empty"));
    let twice = json!({"limits": [{"key": ["route"], "rate": "1/s"}, {"key": ["route"], "rate": "2/s"}]});
    assert!(err(twice).contains("named \"route\""));
    assert!(err(Value::Null).contains("limits"));
}

#[tokio::test]
async fn a_burst_passes_then_429_with_retry_after_per_key() {
    let (svc, calls) = stage(json!({"limits": [{"key": ["principal", "tool"], "rate": "1/h", "burst": 2}]}));
    for _ in 0..2 {
        outcome(&svc, request("alice", "tools/call", "echo")).await.expect("within the burst");
    }
    let e = outcome(&svc, request("alice", "tools/call", "echo")).await.expect_err("over the limit");
    assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = e.headers().and_then(|h| h.get(http::header::RETRY_AFTER)).expect("Retry-After");
    let seconds: u64 = retry.to_str().expect("text").parse().expect("seconds");
    assert!((3500..=3600).contains(&seconds), "the next cell of 1/h comes in an hour: {seconds}");
    let reply = e.to_message(Some("1"));
    let v = reply.to_value().expect("json");
    assert_eq!(v["error"]["code"], RATE_LIMITED_CODE);
    assert_eq!(v["error"]["data"]["limit"], "principal+tool");
    assert!(v["error"]["data"]["retryAfterMs"].as_u64().expect("ms") > 3_500_000);
    // Another tool, another principal: buckets of their own. Other methods are not
    // counted by a class keyed by tool.
    outcome(&svc, request("alice", "tools/call", "add")).await.expect("another tool");
    outcome(&svc, request("bob", "tools/call", "echo")).await.expect("another principal");
    for _ in 0..5 {
        outcome(&svc, request("alice", "tools/list", "")).await.expect("lists are not tool calls");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2 + 2 + 5, "the refused call never reached the upstream");
}

#[tokio::test]
async fn later_rounds_count_once_and_notifications_not_at_all() {
    let (svc, _) = stage(json!({"limits": [{"key": ["principal"], "rate": "1/h"}]}));
    outcome(&svc, request("alice", "tools/call", "ask")).await.expect("first round");
    let mut round = request("alice", "tools/call", "ask");
    round.context.later_round = true;
    outcome(&svc, round).await.expect("a later round of the same call");
    let note = Message::from_value(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}));
    let mut req = McpRequest::message(note, "/mcp".into(), ProtocolVersion::V2025_06_18);
    req.context.extensions.insert(Principal { id: "alice".into(), claims: Arc::new(json!({})) });
    outcome(&svc, req).await.expect("notifications are not requests");
    outcome(&svc, request("alice", "ping", "")).await.expect_err("a new call is counted");
}

#[test]
fn the_key_map_is_bounded_and_swept() {
    let limiter = LocalLimiter::new(1, Duration::from_millis(20), 1, 3).expect("limiter");
    for key in ["a", "b", "c"] {
        assert!(limiter.check(key).is_ok());
    }
    assert_eq!(limiter.len(), 3);
    // Beyond the bound, new keys share one bucket: the first passes, the next waits.
    assert!(limiter.check("d").is_ok());
    assert!(limiter.check("e").is_err());
    assert_eq!(limiter.len(), 3, "no more keys were kept");
    std::thread::sleep(Duration::from_millis(60));
    limiter.sweep();
    assert_eq!(limiter.len(), 0, "full buckets are forgotten");
    assert!(limiter.check("e").is_ok());
}

#[test]
fn a_limits_file_names_file_and_line_and_a_reload_keeps_unchanged_buckets() {
    let text = "limits:\n  - { key: [principal], rate: 10/s }\n  - key: [tool]\n    rate: lots\n";
    let e = parse_file(text, "limits.yaml", 10, &[]).err().expect("refused");
    assert!(e.starts_with("limits.yaml:4: limits[1]: rate \"lots\""), "{e}");
    let e = parse_file("limits:\n  - { key: [principal], rate: 1/s, colour: red }\n", "l.yaml", 10, &[])
        .err()
        .expect("refused");
    assert!(e.starts_with("l.yaml:2:") && e.contains("colour"), "{e}");
    let good = "limits:\n  - { key: [principal], rate: 1/h }\n  - { key: [tool], rate: 1/h }\n";
    let first = parse_file(good, "l.yaml", 10, &[]).expect("loads");
    assert!(first[0].limiter.check("alice").is_ok());
    assert!(first[0].limiter.check("alice").is_err(), "the bucket is spent");
    let changed = "limits:\n  - { key: [principal], rate: 1/h }\n  - { key: [tool], rate: 5/h }\n";
    let second = parse_file(changed, "l.yaml", 10, &first).expect("loads");
    assert!(Arc::ptr_eq(&first[0], &second[0]), "an unchanged limit keeps its buckets");
    assert!(second[0].limiter.check("alice").is_err());
    assert!(!Arc::ptr_eq(&first[1], &second[1]));
    let ctx = BuildContext::default();
    let both = json!({"limits": [{"key": ["route"], "rate": "1/s"}], "file": "/x.yaml"});
    assert!(build(&both, &ctx).err().expect("refused").contains("one or the other"));
    let missing = build(&json!({"file": "/no/such/limits.yaml"}), &ctx).err().expect("refused");
    assert!(missing.starts_with("/no/such/limits.yaml: cannot read"), "{missing}");
}
