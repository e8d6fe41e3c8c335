//! The bench against its own upstream, in-process, for a moment: sessions open, calls
//! succeed, percentiles and CPU figures come out, idle sessions are counted.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use shadowcat_loadtest::idle::{self, IdleOptions};
use shadowcat_loadtest::load::{self, LoadOptions, Watch};

async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(shadowcat_loadtest::server::serve(listener, "/mcp".into()));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_run_counts_requests_without_errors() {
    let url = upstream().await;
    let me = Watch { name: "self".into(), pid: std::process::id() };
    let opts = LoadOptions {
        url,
        sessions: 4,
        stateless: false,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        payload_bytes: 16,
        timeout: Duration::from_secs(5),
        watch: vec![me],
        watch_children: vec![],
        bearer: None,
    };
    let out = load::run(&opts).await.unwrap();
    assert!(out["requests"].as_u64().unwrap() > 10, "{out}");
    assert_eq!(out["errors"], 0, "{out}");
    assert!(out["p50_us"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["p99_us"].as_f64().unwrap() >= out["p50_us"].as_f64().unwrap(), "{out}");
    assert!(out["cpu"]["self"]["us_per_req"].is_number(), "{out}");
    assert!(out["cpu"]["client"]["us_per_req"].is_number(), "{out}");
}

#[tokio::test]
async fn idle_run_holds_sessions() {
    let url = upstream().await;
    let opts = IdleOptions {
        url,
        sessions: 20,
        hold: Duration::from_millis(100),
        drop_connections: true,
        timeout: Duration::from_secs(5),
        watch: vec![Watch { name: "self".into(), pid: std::process::id() }],
        bearer: None,
    };
    let out = idle::run(&opts).await.unwrap();
    assert_eq!(out["sessions"], 20, "{out}");
    assert!(out["memory"]["self"]["per_session_kib"].is_number(), "{out}");
}

#[tokio::test]
async fn a_refused_url_is_an_error_not_a_panic() {
    let opts = LoadOptions {
        url: "http://127.0.0.1:1/mcp".into(),
        sessions: 2,
        stateless: false,
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        payload_bytes: 1,
        timeout: Duration::from_secs(1),
        watch: vec![],
        watch_children: vec![],
        bearer: None,
    };
    let err = load::run(&opts).await.unwrap_err();
    assert!(err.contains("could not open 2 sessions"), "{err}");
}

#[tokio::test]
async fn stateless_against_a_server_without_it_fails_up_front() {
    // The bench upstream serves only sessions: the first stateless call (no
    // Mcp-Session-Id) gets 400, so the run stops before it starts.
    let opts = LoadOptions {
        url: upstream().await,
        sessions: 2,
        stateless: true,
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        payload_bytes: 1,
        timeout: Duration::from_secs(5),
        watch: vec![],
        watch_children: vec![],
        bearer: None,
    };
    let err = load::run(&opts).await.unwrap_err();
    assert!(err.contains("could not open 2 stateless clients"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
}
