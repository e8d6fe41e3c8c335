//! The Streamable HTTP front against the real binary: the README's table of checks,
//! sessions, batches, GET streams, priming and resumption.

mod common;

use std::time::Duration;

use common::{demo_config, Gateway, Http, McpClient};
use http::Method;
use serde_json::json;

/// Headers of one test request.
type Headers<'a> = Vec<(&'a str, &'a str)>;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
const PING: &str = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;

fn readme_table() -> Vec<(String, u16, i64)> {
    common::readme_checks("## The HTTP front: checks in order")
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_answer_as_the_readme_table_says_in_its_order() {
    let gw = Gateway::start(&demo_config("  max_body_bytes: 2048\n", ""));
    let http = Http::new();
    let mut client = McpClient::new(&gw.mcp_url);
    client.initialize("2025-11-25").await;
    let sid = client.session.clone().expect("session");
    let good = [("accept", "application/json, text/event-stream"), ("content-type", "application/json")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut h: Vec<(&str, &str)> = good.to_vec();
        for (k, v) in extra {
            h.retain(|(hk, _)| hk != k);
            h.push((k, v));
        }
        h
    };
    let sid_ref: &'static str = Box::leak(sid.into_boxed_str());
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(4096));
    let base = gw.base.clone();
    // One request per row, in the README's order.
    let cases: Vec<(Method, String, Headers, String)> = vec![
        (Method::POST, format!("{base}/nope"), with(&[]), PING.into()),
        (Method::POST, gw.mcp_url.clone(), with(&[("origin", "http://evil.example")]), INIT.into()),
        (Method::PUT, gw.mcp_url.clone(), with(&[]), INIT.into()),
        (Method::POST, gw.mcp_url.clone(), with(&[("accept", "application/json")]), INIT.into()),
        (Method::POST, gw.mcp_url.clone(), with(&[("content-type", "text/plain")]), INIT.into()),
        (Method::POST, gw.mcp_url.clone(), with(&[]), big.clone()),
        (Method::POST, gw.mcp_url.clone(), with(&[("mcp-session-id", sid_ref)]), "{not json".into()),
        (Method::POST, gw.mcp_url.clone(), with(&[("mcp-session-id", sid_ref)]), r#"{"id":1,"method":"ping"}"#.into()),
        (
            Method::POST,
            gw.mcp_url.clone(),
            with(&[("mcp-session-id", sid_ref), ("mcp-protocol-version", "1999-01-01")]),
            PING.into(),
        ),
        (Method::POST, gw.mcp_url.clone(), with(&[]), PING.into()),
        (Method::POST, gw.mcp_url.clone(), with(&[("mcp-session-id", "0123456789abcdef")]), PING.into()),
    ];
    let table = readme_table();
    assert_eq!(table.len(), cases.len(), "README table rows: {table:?}");
    for ((label, status, code), (method, url, headers, body)) in table.iter().zip(cases) {
        let reply = http.send(method, &url, &headers, Some(&body)).await;
        assert_eq!(reply.status, *status, "row {label}: {}", reply.text());
        assert_eq!(reply.error_code(), *code, "row {label}: {}", reply.text());
        assert_eq!(reply.json()["jsonrpc"], "2.0", "row {label}");
    }

    // Earlier checks win over later ones.
    let order: Vec<(Headers, String, u16)> = vec![
        (with(&[("origin", "http://evil.example"), ("accept", "text/html")]), PING.into(), 403),
        (with(&[("accept", "text/html"), ("content-type", "text/plain")]), "{bad".into(), 406),
        (with(&[("content-type", "text/plain"), ("mcp-session-id", "nope")]), big.clone(), 415),
        (with(&[("mcp-session-id", "nope")]), big, 413),
        (with(&[("mcp-session-id", "nope"), ("mcp-protocol-version", "1999-01-01")]), "{bad".into(), 400),
        (with(&[("mcp-session-id", "nope"), ("mcp-protocol-version", "1999-01-01")]), PING.into(), 400),
    ];
    for (headers, body, status) in order {
        let reply = http.send(Method::POST, &gw.mcp_url, &headers, Some(&body)).await;
        assert_eq!(reply.status, status, "{headers:?}: {}", reply.text());
    }
    let reply = http.send(Method::PUT, &gw.mcp_url, &good, Some(PING)).await;
    assert_eq!(reply.header("allow").as_deref(), Some("GET, POST, DELETE"));
    let reply = http
        .send(
            Method::POST,
            &gw.mcp_url,
            &with(&[("mcp-session-id", sid_ref), ("mcp-protocol-version", "2024-01-01")]),
            Some(PING),
        )
        .await;
    assert_eq!(
        reply.json()["error"]["data"]["supported"],
        json!(["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"])
    );
    // The request's id is echoed when it is known.
    let reply = http.send(Method::POST, &gw.mcp_url, &with(&[("mcp-session-id", "nope")]), Some(PING)).await;
    assert_eq!(reply.json()["id"], 7);
    // Loopback origins and hosts are allowed when bound to loopback.
    let reply = http.send(Method::POST, &gw.mcp_url, &with(&[("origin", "http://localhost:3000")]), Some(INIT)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = http.send(Method::POST, &gw.mcp_url, &with(&[("host", "evil.example")]), Some(INIT)).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn request_heads_are_bounded_by_max_header_bytes() {
    let filler = "f".repeat(9000);
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("x-filler", filler.as_str()),
    ];
    let gw = Gateway::start(&demo_config("", ""));
    let http = Http::new();
    let r = http.send(Method::POST, &gw.mcp_url, &headers, Some(INIT)).await;
    assert_eq!(r.status, 431, "a head over the default 8 KiB: {}", r.text());
    // The connection's limit does not outlive the refusal: a normal request works.
    let r = http.send(Method::POST, &gw.mcp_url, &headers[..2], Some(INIT)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let gw = Gateway::start(&demo_config("  max_header_bytes: 32768\n", ""));
    let r = http.send(Method::POST, &gw.mcp_url, &headers, Some(INIT)).await;
    assert_eq!(r.status, 200, "raised limit: {}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_minted_used_and_ended() {
    let gw = Gateway::start(&demo_config("", ""));
    let mut a = McpClient::new(&gw.mcp_url);
    let init = a.initialize("2025-06-18").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    let mut b = McpClient::new(&gw.mcp_url);
    b.initialize("2025-11-25").await;
    let (sa, sb) = (a.session.clone().expect("a"), b.session.clone().expect("b"));
    assert_ne!(sa, sb);
    assert!(sa.len() >= 32 && sa.bytes().all(|c| c.is_ascii_hexdigit()), "{sa}");

    // Responses and notifications: 202, no body.
    let r = a.post_raw(r#"{"jsonrpc":"2.0","id":"x-1","result":{}}"#).await;
    assert_eq!((r.status, r.body.len()), (202, 0));
    // No version header: the negotiated one is used.
    a.version = String::new();
    let h = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-session-id", sa.as_str()),
    ];
    let r = a.http.send(Method::POST, &gw.mcp_url, &h, Some(PING)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], json!({}));
    a.version = "2025-06-18".into();

    let echo = a.request("tools/call", json!({"name": "echo", "arguments": {"message": "hi"}})).await;
    assert_eq!(echo["result"]["content"][0]["text"], "hi");

    let d = a.delete().await;
    assert_eq!(d.status, 200, "{}", d.text());
    let (_, r) = a.call("ping", json!({})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), -32001);
    assert_eq!(a.delete().await.status, 404);
    // The other session is untouched.
    assert_eq!(b.request("ping", json!({})).await["result"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_only_in_2025_03_26() {
    let gw = Gateway::start(&demo_config("", ""));
    let mut old = McpClient::new(&gw.mcp_url);
    old.initialize("2025-03-26").await;
    let batch = r#"[{"jsonrpc":"2.0","id":11,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"n","progress":1}},{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":{"message":"b"}}}]"#;
    let r = old.post_raw(batch).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = r.messages();
    assert!(msgs.iter().any(|m| m["id"] == 11 && m["result"] == json!({})), "{msgs:?}");
    assert!(msgs.iter().any(|m| m["id"] == 12 && m["result"]["content"][0]["text"] == "b"), "{msgs:?}");
    let r = old.post_raw(r#"[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]"#).await;
    assert_eq!(r.status, 202);
    let r = old.post_raw(&format!("[{INIT}]")).await;
    assert_eq!((r.status, r.error_code()), (400, -32600));
    let r = old.post_raw("[]").await;
    assert_eq!((r.status, r.error_code()), (400, -32600));

    let mut new = McpClient::new(&gw.mcp_url);
    new.initialize("2025-06-18").await;
    let r = new.post_raw(batch).await;
    assert_eq!((r.status, r.error_code()), (400, -32600), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn get_stream_priming_conflict_and_routing() {
    let gw = Gateway::start(&demo_config("", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (status, mut get) = c.open_get(None).await;
    assert_eq!(status, 200);
    let priming = get.next(Duration::from_secs(5)).await.expect("priming event");
    assert!(priming.id.is_some() && priming.data.is_empty() && priming.retry.is_some(), "{priming:?}");
    let (status, _) = c.open_get(None).await;
    assert_eq!(status, 409);

    // With the GET stream open, log notifications go there; the POST gets its result.
    c.request("logging/setLevel", json!({"level": "debug"})).await;
    let r = c.request("tools/call", json!({"name": "log", "arguments": {}})).await;
    assert!(r["result"].is_object(), "{r}");
    let note = get.next_message(Duration::from_secs(5)).await.expect("log on GET");
    assert_eq!(note["method"], "notifications/message");
    // Progress still goes to the request that owns the token.
    let (id, status, _, mut post) = c
        .open_post(
            "tools/call",
            json!({"name": "slow", "arguments": {"steps": 2, "delay_ms": 10}, "_meta": {"progressToken": "t1"}}),
        )
        .await;
    assert_eq!(status, 200);
    let mut progress = 0;
    while let Some(m) = post.next_message(Duration::from_secs(10)).await {
        if m["method"] == "notifications/progress" {
            assert_eq!(m["params"]["progressToken"], "t1");
            progress += 1;
        }
        if m["id"] == id {
            break;
        }
    }
    assert_eq!(progress, 2);

    // Older revisions get no priming event.
    let mut old = McpClient::new(&gw.mcp_url);
    old.initialize("2025-06-18").await;
    let (_, mut get_old) = old.open_get(None).await;
    old.request("tools/call", json!({"name": "log", "arguments": {}})).await;
    let first = get_old.next(Duration::from_secs(5)).await.expect("event");
    assert!(first.json().is_some(), "first event must be a message, not priming: {first:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_round_trip_on_the_post_stream() {
    let gw = Gateway::start(&demo_config("", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (id, status, headers, mut post) =
        c.open_post("tools/call", json!({"name": "sample", "arguments": {"prompt": "hi"}})).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")));
    let req = post.next_message(Duration::from_secs(10)).await.expect("sampling request");
    assert_eq!(req["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc":"2.0","id":req["id"],"result":{"role":"assistant","content":{"type":"text","text":"sampled!"},"model":"m"}});
    assert_eq!(c.post_raw(&answer.to_string()).await.status, 202);
    let result = post.next_message(Duration::from_secs(10)).await.expect("result");
    assert_eq!(result["id"], id);
    assert!(result["result"]["content"][0]["text"].as_str().unwrap_or("").contains("sampled!"), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_a_dropped_stream_with_last_event_id() {
    let gw = Gateway::start(&demo_config("", ""));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    let (id, _, _, mut post) = c
        .open_post(
            "tools/call",
            json!({"name": "slow", "arguments": {"steps": 4, "delay_ms": 150}, "_meta": {"progressToken": 9}}),
        )
        .await;
    let priming = post.next(Duration::from_secs(5)).await.expect("priming");
    let first = post.next(Duration::from_secs(5)).await.expect("first progress");
    assert!(first.json().is_some_and(|m| m["method"] == "notifications/progress"));
    let last_id = first.id.clone().expect("event id");
    drop(post); // the client goes away mid-call
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, mut resumed) = c.open_get(Some(&last_id)).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while let Some(ev) = resumed.next(Duration::from_secs(10)).await {
        let m = ev.json().expect("message");
        let done = m["id"] == id;
        seen.push((ev.id.clone().expect("id"), m));
        if done {
            break;
        }
    }
    let progress: Vec<_> = seen.iter().filter(|(_, m)| m["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 3, "events 2..4 replayed or live: {seen:?}");
    assert_eq!(seen.last().map(|(_, m)| m["id"].clone()), Some(json!(id)));
    let stream = priming.id.expect("id").split('-').next().map(str::to_owned);
    assert!(seen.iter().all(|(eid, _)| eid.split('-').next().map(str::to_owned) == stream), "same stream ids");
    // An id that names no stream of this session.
    let (status, _) = c.open_get(Some("999-1")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_its_route() {
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nroutes:\n  - {{path: /a/mcp, upstream: a}}\n  - {{path: /b/mcp, upstream: b}}\nupstreams:\n  a:\n    stdio: {{command: {bin}, args: [demo-server]}}\n  b:\n    stdio: {{command: {bin}, args: [demo-server]}}\n",
        bin = common::bin()
    );
    let gw = Gateway::start(&yaml);
    let mut a = McpClient::new(&format!("{}/a/mcp", gw.base));
    a.initialize("2025-11-25").await;
    assert_eq!(a.request("ping", json!({})).await["result"], json!({}));
    let mut wrong = McpClient::new(&format!("{}/b/mcp", gw.base));
    wrong.session = a.session.clone();
    let (_, r) = wrong.call("ping", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let (_, r) = McpClient::new(&format!("{}/c/mcp", gw.base)).call("ping", json!({})).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_or_silent_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(&demo_config("  header_read_timeout: 300ms\n", ""));
    let addr = gw.base.trim_start_matches("http://").replace("localhost", "127.0.0.1");
    let closed_within = |mut s: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 256];
        let started = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        (matches!(read, Ok(Ok(0)) | Ok(Err(_))), started.elapsed())
    };
    // Connects and says nothing.
    let silent = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (closed, after) = closed_within(silent).await;
    assert!(closed && after < Duration::from_secs(3), "silent connection closed ({after:?})");
    // Sends half a request head and stalls.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\n").await.expect("write");
    let mut buf = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    // hyper may answer 408 before closing; either way nothing more is served.
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("a stalled request head was not timed out"),
    }
    // A well-behaved client is unaffected.
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    assert_eq!(c.request("ping", json!({})).await["result"], json!({}));
}
