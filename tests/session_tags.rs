//! A session id is a bearer credential for its session: the gateway's log carries a
//! short one-way tag of it, never the id, whatever the route a session takes (requests,
//! a GET stream, errors, DELETE, idle expiry).

mod common;

use std::time::Duration;

use common::{demo_config, Gateway, McpClient};
use serde_json::json;

/// The tag the log should carry: the first 8 hex digits of the id's SHA-256.
fn tag_of(id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_carries_session_tags_never_session_ids() {
    let gw = Gateway::start_logged(&demo_config("  session_idle_timeout: 1s\n", ""), "debug");
    let mut ended = McpClient::new(&gw.mcp_url);
    ended.initialize("2025-11-25").await;
    let r = ended.request("tools/call", json!({"name": "echo", "arguments": {"message": "hi"}})).await;
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    let (status, _get) = ended.open_get(None).await;
    assert_eq!(status, 200);
    let (_, refused) = ended.call("no/such/method", json!({})).await;
    assert_eq!(refused.status, 200, "{}", refused.text());
    assert_eq!(ended.delete().await.status, 200);

    let mut expired = McpClient::new(&gw.mcp_url);
    expired.initialize("2025-06-18").await;
    assert_eq!(expired.request("ping", json!({})).await["result"], json!({}));
    let expired_tag = tag_of(expired.session.as_deref().expect("id"));
    let expiry_logged = || gw.log().lines().any(|l| l.contains("session expired") && l.contains(&expired_tag));
    assert!(common::wait_until(Duration::from_secs(10), expiry_logged), "the idle session expired: {}", gw.log());
    let (_, gone) = expired.call("ping", json!({})).await;
    assert_eq!(gone.status, 404);

    let log = gw.log();
    for client in [&ended, &expired] {
        let id = client.session.as_deref().expect("id");
        assert_eq!(id.len(), 40);
        assert!(!log.contains(id), "the session id {id} is in the log:\n{log}");
        // Half of it is not there either (no prefix passes for a tag).
        assert!(!log.contains(&id[..20]), "part of the session id {id} is in the log:\n{log}");
        let tag = tag_of(id);
        assert!(log.contains(&format!("session={tag}")), "the log names the session {tag}:\n{log}");
    }
}
