//! Bounds per client and per listener through the real binary: open sessions per
//! client (`server.max_sessions_per_client`, 429) and open connections
//! (`server.max_connections`, one 503 then close), with their metrics.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{demo_config, fixture, wait_until, Gateway, Http, McpClient};
use http::Method;
use serde_json::json;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

async fn metrics(gw: &Gateway) -> String {
    let admin = gw.admin_url.clone().expect("admin listener");
    Http::new().send(Method::GET, &format!("{admin}/metrics"), &[], None).await.text()
}

/// The value of the metric line that starts with `series`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_past_max_sessions_per_client_gets_429_and_others_are_not_locked_out() {
    let gw = Gateway::start(&demo_config("  max_sessions_per_client: 3\n", ""));
    let mut mine = Vec::new();
    for _ in 0..3 {
        let mut c = McpClient::new(&gw.mcp_url);
        c.initialize("2025-11-25").await;
        mine.push(c);
    }
    let extra = McpClient::new(&gw.mcp_url);
    let r = extra.post_raw(INIT).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), -32000);
    assert_eq!(r.json()["id"], 1, "the error answers the initialize");
    assert!(r.text().contains("max_sessions_per_client"), "{}", r.text());
    assert!(r.header("mcp-session-id").is_none());

    // Another client (another source address) is not affected.
    let mut other = McpClient::new(&gw.mcp_url);
    other.http = Http::from_address("127.0.0.2".parse().expect("an address"));
    other.initialize("2025-11-25").await;

    // Ending one of mine (DELETE) gives its slot back.
    assert_eq!(mine[0].delete().await.status, 200);
    let mut again = McpClient::new(&gw.mcp_url);
    again.initialize("2025-11-25").await;
    assert_eq!(extra.post_raw(INIT).await.status, 429, "the bound still holds");

    let text = metrics(&gw).await;
    assert_eq!(metric(&text, "shadowcat_sessions_refused_total{reason=\"per_client\"}"), Some(2.0), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_whose_upstream_died_do_not_count_against_their_client() {
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  max_sessions_per_client: 2\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  fake:\n    stdio:\n      command: python3\n      args: ['{}', crash]\n",
        fixture("fake_upstream.py")
    );
    let gw = Gateway::start(&yaml);
    for _ in 0..2 {
        let mut c = McpClient::new(&gw.mcp_url);
        c.initialize("2025-06-18").await;
        // The fake exits on its first tools/call.
        let r = c.request("tools/call", json!({"name": "work", "arguments": {}})).await;
        assert_eq!(r["error"]["code"], -32003, "{r}");
    }
    let mut c = McpClient::new(&gw.mcp_url);
    c.initialize("2025-06-18").await;
}

/// One HTTP/1.1 request on `stream` (kept alive); the reply's head and body.
fn roundtrip(stream: &mut TcpStream, host: &str) -> String {
    let req = format!("DELETE /mcp HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    read_reply(stream)
}

fn read_reply(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_past_max_connections_gets_one_503_and_is_closed() {
    let gw = Gateway::start(&demo_config("  max_connections: 3\n", ""));
    let host = gw.base.trim_start_matches("http://").replace("localhost", "127.0.0.1");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&host).expect("connect");
        let reply = roundtrip(&mut s, &host);
        assert!(reply.starts_with("HTTP/1.1 400"), "served: {reply}");
        open.push(s);
    }
    let mut over = TcpStream::connect(&host).expect("connect");
    let reply = read_reply(&mut over);
    assert!(reply.starts_with("HTTP/1.1 503"), "refused clearly: {reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("connection: close") && lower.contains("retry-after: 1"), "{reply}");
    let body: serde_json::Value = serde_json::from_str(reply.split_once("\r\n\r\n").expect("a body").1).expect("JSON");
    assert_eq!(body["error"]["code"], -32000, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("max_connections"), "{body}");
    let mut rest = Vec::new();
    assert_eq!(over.read_to_end(&mut rest).unwrap_or(0), 0, "then closed");

    // The three still work, keep-alive.
    assert!(roundtrip(&mut open[1], &host).starts_with("HTTP/1.1 400"));
    let text = metrics(&gw).await;
    assert_eq!(metric(&text, "shadowcat_connections_open"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "shadowcat_connections_refused_total"), Some(1.0), "{text}");

    // Closing one lets a new one in.
    drop(open.remove(0));
    let served = wait_until(Duration::from_secs(10), || {
        let mut s = TcpStream::connect(&host).expect("connect");
        let ok = roundtrip(&mut s, &host).starts_with("HTTP/1.1 400");
        if ok {
            open.push(s);
        }
        ok
    });
    assert!(served, "a connection is served again once one has closed");
}
