//! Both runtime models: `server.thread_per_core: true` (one single-threaded runtime
//! per front thread) and `false` (the default: one shared multi-threaded runtime) serve
//! the same traffic and shut down the same way.

mod common;

use std::time::Duration;

use common::{children_of, demo_config, wait_until, Gateway, McpClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn thread_per_core_serves_sessions_streams_and_shuts_down_cleanly() {
    serves_sessions_streams_and_shuts_down_cleanly(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_runtime_serves_sessions_streams_and_shuts_down_cleanly() {
    serves_sessions_streams_and_shuts_down_cleanly(false).await;
}

async fn serves_sessions_streams_and_shuts_down_cleanly(per_core: bool) {
    let mut gw = Gateway::start(&demo_config(&format!("  thread_per_core: {per_core}\n  worker_threads: 2\n"), ""));
    // Several clients (so, several connections spread over the front threads).
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = McpClient::new(&gw.mcp_url);
        c.initialize("2025-11-25").await;
        let r = c.request("tools/call", json!({"name": "echo", "arguments": {"message": format!("m{i}")}})).await;
        assert_eq!(r["result"]["content"][0]["text"], format!("m{i}"));
        clients.push(c);
    }
    assert!(wait_until(Duration::from_secs(5), || children_of(gw.pid()).len() == 6), "a process per session");
    // Server-to-client round trip and progress on one of them.
    let c = &mut clients[0];
    let (id, _, _, mut post) =
        c.open_post("tools/call", json!({"name": "sample", "arguments": {"prompt": "hi"}})).await;
    let req = post.next_message(Duration::from_secs(10)).await.expect("sampling request");
    let answer = json!({"jsonrpc":"2.0","id":req["id"],"result":{"role":"assistant","content":{"type":"text","text":"ok!"},"model":"m"}});
    assert_eq!(c.post_raw(&answer.to_string()).await.status, 202);
    let result = post.next_message(Duration::from_secs(10)).await.expect("result");
    assert_eq!(result["id"], id);
    // DELETE frees the process; SIGTERM stops the rest and exits 0.
    assert_eq!(clients[1].delete().await.status, 200);
    assert!(wait_until(Duration::from_secs(5), || children_of(gw.pid()).len() == 5));
    let kids = children_of(gw.pid());
    let status = gw.stop();
    assert!(status.success(), "{status:?}");
    assert!(kids.iter().all(|k| !common::processes().iter().any(|(p, _, _)| p == k)), "children stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connection_does_not_hold_up_shutdown() {
    for per_core in [false, true] {
        let mut gw = Gateway::start(&demo_config(&format!("  thread_per_core: {per_core}\n"), ""));
        let addr = gw.base.trim_start_matches("http://").replace("localhost", "127.0.0.1");
        // Like a client's spare pooled connection: connected, nothing sent.
        let _silent = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(gw.stop().success());
        let log = gw.log();
        assert!(!log.contains("still open after the shutdown grace period"), "per_core={per_core}: {log}");
    }
}
