//! Unit tests of what a session sends: headers, session ids, versions, bounds.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use super::shared::SessionShared;
use super::stream::Deadline;
use super::HttpUpstream;
use crate::config::HttpConfig;
use crate::error::GatewayError;
use crate::protocol::Message;

fn upstream(extra: serde_json::Value) -> Arc<HttpUpstream> {
    let mut cfg = json!({ "url": "http://user:pw@127.0.0.1:9/mcp?key=k" });
    if let (Some(base), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    let cfg: HttpConfig = serde_json::from_value(cfg).expect("config");
    HttpUpstream::new("up", &cfg).expect("upstream")
}

fn session(extra: serde_json::Value) -> Arc<SessionShared> {
    Arc::new(SessionShared::new(upstream(extra).target.clone(), "tag".into()))
}

fn client_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn requests_carry_client_then_static_then_transport_headers() {
    let s = session(json!({
        "headers": { "X-Team": "platform", "X-Override": "from-config" },
        "forward_headers": ["x-trace", "x-override"],
    }));
    let client = client_headers(&[
        ("x-override", "from-client"),
        ("x-trace", "t"),
        ("host", "evil.example"),
        ("content-length", "999"),
        ("accept", "text/html"),
        ("mcp-session-id", "the-gateways-own-id"),
        ("mcp-protocol-version", "2025-06-18"),
    ]);
    let req = s.request(Method::POST, &client, "application/json, text/event-stream", Some("{}".into()), None);
    let req = req.expect("request");
    assert_eq!(req.uri().to_string(), "http://127.0.0.1:9/mcp?key=k", "no user info on the wire");
    let h = req.headers();
    assert_eq!(h.get_all("x-override").iter().collect::<Vec<_>>(), ["from-config"]);
    assert_eq!(h["x-team"], "platform");
    assert!(h["x-team"].is_sensitive());
    assert_eq!(h["x-trace"], "t");
    assert!(h.get("host").is_none() && h.get("content-length").is_none());
    assert!(h.get("mcp-session-id").is_none(), "no upstream session yet, and never the client's id");
    assert_eq!(h["accept"], "application/json, text/event-stream");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["mcp-protocol-version"], "2025-06-18");
}

#[test]
fn the_negotiated_version_fills_in_for_clients_that_send_none() {
    let s = session(json!({}));
    let init = Message::parse(
        br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26","capabilities":{}}}"#.to_vec(),
    )
    .expect("message");
    s.learn_version(&init);
    let req = s.request(Method::GET, &HeaderMap::new(), "text/event-stream", None, Some("ev-3")).expect("request");
    assert_eq!(req.headers()["mcp-protocol-version"], "2025-03-26");
    assert_eq!(req.headers()["last-event-id"], "ev-3");
    assert!(req.headers().get("content-type").is_none());
    s.remember_version(&client_headers(&[("mcp-protocol-version", "2025-06-18")]));
    let req = s.request(Method::DELETE, &HeaderMap::new(), "text/event-stream", None, None).expect("request");
    assert_eq!(req.headers()["mcp-protocol-version"], "2025-06-18", "the client's last word wins");
}

#[test]
fn tells_a_forgotten_session_from_other_errors() {
    let s = session(json!({}));
    let unknown = br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#;
    assert!(s.session_gone(StatusCode::NOT_FOUND, b"", true));
    assert!(s.session_gone(StatusCode::BAD_REQUEST, unknown, true));
    assert!(s.session_gone(StatusCode::BAD_REQUEST, b"Session not found", true));
    assert!(!s.session_gone(StatusCode::BAD_REQUEST, b"Invalid params", true));
    assert!(!s.session_gone(StatusCode::NOT_FOUND, b"", false), "a 404 before any session is a wrong URL");
    assert!(!s.session_gone(StatusCode::INTERNAL_SERVER_ERROR, unknown, true));
    assert!(s.is_alive());
    s.mark_gone(StatusCode::NOT_FOUND);
    assert!(!s.is_alive());
    assert!(*s.closed().borrow(), "open streams are told");
}

#[test]
fn requests_in_flight_are_bounded_and_cancellable() {
    let s = session(json!({ "max_in_flight": 2 }));
    let a = s.begin("1").expect("first");
    assert!(matches!(s.begin("1"), Err(GatewayError::InvalidRequest(_))), "ids are unique in flight");
    let _b = s.begin("\"two\"").expect("second");
    assert!(matches!(s.begin("3"), Err(GatewayError::Overloaded(_))));
    let cancel =
        Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#.to_vec())
            .expect("message");
    s.client_cancelled(&cancel);
    assert!(*a.cancelled.borrow());
    drop(a);
    assert!(s.begin("3").is_ok(), "a finished request frees its slot");
}

#[test]
fn bad_static_headers_are_config_errors() {
    let cfg: HttpConfig =
        serde_json::from_value(json!({ "url": "http://127.0.0.1:9/mcp", "headers": { "X-Bad": "a\nb" } }))
            .expect("cfg");
    let err = HttpUpstream::new("up", &cfg).err().expect("refused");
    assert!(err.starts_with("headers.X-Bad"), "{err}");
    let cfg: HttpConfig = serde_json::from_value(json!({ "url": "ftp://127.0.0.1/mcp" })).expect("cfg");
    assert!(HttpUpstream::new("up", &cfg).is_err());
}

#[test]
fn bad_oauth_settings_are_config_errors() {
    let refused = |oauth: serde_json::Value| {
        let cfg: HttpConfig =
            serde_json::from_value(json!({ "url": "http://127.0.0.1:9/mcp", "oauth": oauth })).expect("cfg");
        HttpUpstream::new("up", &cfg).err().expect("refused")
    };
    let base = json!({ "token_endpoint": "http://127.0.0.1:9/token", "client_id": "gw" });
    let with = |extra: serde_json::Value| {
        let mut o = base.clone();
        o.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        o
    };
    assert!(refused(base.clone()).contains("needs client_secret"));
    let e = refused(with(json!({ "auth_method": "private_key_jwt" })));
    assert!(e.contains("needs private_key"), "{e}");
    let e = refused(with(json!({ "auth_method": "private_key_jwt", "private_key": "not a key" })));
    assert!(e.contains("not a PEM"), "{e}");
    let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let e = refused(with(json!({ "auth_method": "private_key_jwt", "private_key": garbage })));
    assert!(e.contains("not a PEM"), "{e}");
    let e = refused(with(json!({ "client_secret": { "env": "SHADOWCAT_TEST_NO_SUCH_VARIABLE" } })));
    assert!(e.contains("client_secret"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn progress_extends_the_deadline_up_to_the_hard_limit() {
    let up = upstream(json!({ "request_timeout": "1s", "max_request_timeout": "2500ms" }));
    let mut d = Deadline::new(&up.target.limits);
    let start = d.current() - Duration::from_secs(1);
    tokio::time::advance(Duration::from_millis(800)).await;
    d.extend();
    assert_eq!(d.current() - start, Duration::from_millis(1800));
    tokio::time::advance(Duration::from_millis(1000)).await;
    d.extend();
    assert_eq!(d.current() - start, Duration::from_millis(2500), "never past max_request_timeout");
    assert_eq!(d.elapsed(), Duration::from_millis(1800));
}

#[tokio::test]
async fn open_contacts_nobody_and_bounds_sessions() {
    let up = upstream(json!({ "max_sessions": 1 }));
    let first = up.open("a").await.expect("a session");
    assert!(first.is_alive());
    assert!(matches!(up.open("b").await, Err(GatewayError::Overloaded(_))));
    drop(first);
    assert!(up.open("c").await.is_ok());
    assert!(!up.is_ready(), "nothing was contacted");
}
