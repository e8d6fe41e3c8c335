//! The stage seams through the real binary: every GET (opened, resumed with
//! `Last-Event-ID`, re-attached) passes the pipeline; refusals before the pipeline
//! reach the stages' observers; stage handles on the admin listener.

mod common;

use std::time::Duration;

use common::{demo_config, Gateway, Http, McpClient};
use http::Method;
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

async fn metrics(http: &Http, admin: &str) -> String {
    http.send(Method::GET, &format!("{admin}/metrics"), &[], None).await.text()
}

/// The sum of a counter's series whose labels contain every needle.
fn counter(metrics: &str, name: &str, needles: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && needles.iter().all(|n| l.contains(n)))
        .map(|l| l.rsplit(' ').next().unwrap_or("0").parse::<f64>().unwrap_or(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_get_stream_passes_the_pipeline() {
    let gw = Gateway::start(&demo_config("", ""));
    let admin = gw.admin_url.clone().expect("admin");
    let http = Http::new();
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;

    // Opened: the priming event names the stream; the client goes away.
    let (status, mut get) = c.open_get(None).await;
    assert_eq!(status, 200);
    let priming = get.next(SECS).await.expect("priming event");
    let last = priming.id.clone().expect("an event id");
    drop(get);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Resumed with Last-Event-ID, then dropped again.
    let (status, resumed) = c.open_get(Some(&last)).await;
    assert_eq!(status, 200);
    drop(resumed);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Re-attached: a GET without Last-Event-ID takes the detached stream up.
    let (status, mut again) = c.open_get(None).await;
    assert_eq!(status, 200);
    assert!(again.next(SECS).await.is_some(), "the re-attached stream is primed");
    // And it still carries the server's messages: the demo's list_changed on request.
    drop(again);

    // The resumption and the re-attachment are calls of their own, done once the
    // stream is handed over; the first GET's call lasts as long as its stream.
    let text = metrics(&http, &admin).await;
    assert_eq!(counter(&text, "shadowcat_requests_total", &["method=\"GET\""]), 2.0, "{text}");

    // A resumption naming no stream is refused by the pipeline's router, as before.
    let (status, _) = c.open_get(Some("999-1")).await;
    assert_eq!(status, 400);

    // Ending the session ends the first GET's stream, and with it its call.
    assert_eq!(c.delete().await.status, 200);
    let mut counted = 0.0;
    for _ in 0..50 {
        let text = metrics(&http, &admin).await;
        counted = counter(&text, "shadowcat_requests_total", &["method=\"GET\""]);
        if counted >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 4.0, "open, resume, re-attach and the refused resumption");
    let access_gets =
        || gw.log().lines().filter(|l| l.contains("shadowcat::access") && l.contains("method=GET")).count();
    for _ in 0..50 {
        if access_gets() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(access_gets(), 4, "one access line per GET:\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_before_the_pipeline_are_observed() {
    let gw = Gateway::start(&demo_config("", ""));
    let admin = gw.admin_url.clone().expect("admin");
    let http = Http::new();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    // No Accept: 406; an unknown session: 404; not JSON: 400.
    let r = http.send(Method::POST, &gw.mcp_url, &[("content-type", "application/json")], Some(ping)).await;
    assert_eq!(r.status, 406);
    let both = ("accept", "application/json, text/event-stream");
    let json_type = ("content-type", "application/json");
    let r = http.send(Method::POST, &gw.mcp_url, &[both, json_type, ("mcp-session-id", "nope")], Some(ping)).await;
    assert_eq!(r.status, 404);
    let r = http.send(Method::POST, &gw.mcp_url, &[both, json_type], Some("{not json")).await;
    assert_eq!(r.status, 400);
    let text = metrics(&http, &admin).await;
    for reason in ["not_acceptable", "unknown_session", "parse_error"] {
        let needle = format!("reason=\"{reason}\"");
        assert_eq!(counter(&text, "shadowcat_refused_total", &[&needle]), 1.0, "{reason}: {text}");
    }
    // A request the pipeline served is not a refusal.
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    c.request("ping", json!({})).await;
    let text = metrics(&http, &admin).await;
    assert_eq!(counter(&text, "shadowcat_refused_total", &[]), 3.0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_handles_are_served_read_only_on_the_admin_listener() {
    let gw = Gateway::start(&demo_config("", ""));
    let admin = gw.admin_url.clone().expect("admin");
    let http = Http::new();
    let list = http.send(Method::GET, &format!("{admin}/stages"), &[], None).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json(), json!(["access_log"]));
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    c.request("ping", json!({})).await;
    assert!(gw.wait_log("method=ping", SECS));
    let status = http.send(Method::GET, &format!("{admin}/stages/access_log"), &[], None).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.header("content-type").as_deref(), Some("application/json"));
    let v: Value = status.json();
    assert_eq!(v["level"], "info");
    assert!(v["logged"].as_u64().is_some_and(|n| n >= 2), "{v}");
    let missing = http.send(Method::GET, &format!("{admin}/stages/nope"), &[], None).await;
    assert_eq!(missing.status, 404);
    let post = http.send(Method::POST, &format!("{admin}/stages/access_log"), &[], Some("{}")).await;
    assert_eq!(post.status, 405, "nothing on the admin listener changes a stage yet");
}

#[tokio::test(flavor = "multi_thread")]
async fn stages_see_the_upstream_wire_where_the_gateway_talks_itself() {
    // A 2026-07-28 client of the (2025) demo server: the bridge pools a session,
    // initializes it and relays the call on it; none of that is on the client's wire.
    let gw = Gateway::start(&demo_config("", "      era: legacy\n"));
    let admin = gw.admin_url.clone().expect("admin");
    let http = Http::new();
    let client = common::modern::ModernClient::new(&gw.mcp_url);
    let (status, list) = client.call("tools/list", json!({}), &json!({})).await;
    assert_eq!(status, 200, "{list}");
    let text = metrics(&http, &admin).await;
    let sent = counter(&text, "shadowcat_upstream_messages_total", &["origin=\"pooled\"", "direction=\"to_upstream\""]);
    let got =
        counter(&text, "shadowcat_upstream_messages_total", &["origin=\"pooled\"", "direction=\"from_upstream\""]);
    // initialize, notifications/initialized, tools/list; their answers.
    assert!(sent >= 3.0, "{text}");
    assert!(got >= 2.0, "{text}");
    assert!(text.contains("upstream=\"up\""), "{text}");
    // A 2025 client's own session is the client's wire: not counted here.
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-11-25").await;
    c.request("ping", json!({})).await;
    let text = metrics(&http, &admin).await;
    assert_eq!(counter(&text, "shadowcat_upstream_messages_total", &["origin=\"client_session\""]), 0.0, "{text}");
}
