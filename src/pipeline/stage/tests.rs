//! The stage API on each path, with `service_fn` upstreams and `oneshot` (no sockets).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::error::Rejection;
use crate::pipeline::links::CallLinks;
use crate::pipeline::{McpReply, McpService, MessageStream, ReplyBody};
use crate::session::{Session, StreamRegistry};

fn msg(v: serde_json::Value) -> Message {
    Message::from_value(&v)
}

fn call(id: u64, tool: &str) -> Message {
    msg(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}}))
}

fn result(id: &str, v: serde_json::Value) -> Message {
    msg(json!({"jsonrpc":"2.0","id":crate::protocol::id_value(id),"result":v}))
}

fn req(m: Message) -> McpRequest {
    McpRequest::message(m, "/mcp".into(), ProtocolVersion::V2025_06_18)
}

/// A session whose upstream is never contacted (the services below stand in for it).
async fn session() -> Arc<Session> {
    let cfg: crate::config::HttpConfig =
        serde_json::from_value(json!({"url": "http://127.0.0.1:9/mcp"})).expect("http config");
    let upstream = crate::upstream::http::HttpUpstream::new("up", &cfg).expect("upstream");
    let side = upstream.open("test").await.expect("open");
    let streams = StreamRegistry::new(16, 4);
    Arc::new(Session::new(
        crate::session::mint_id(),
        "/mcp".into(),
        "up".into(),
        crate::upstream::UpstreamSession::new(side),
        streams,
    ))
}

/// What a test stage saw: direction, carrier, a label of the message, the call.
type Seen = Arc<Mutex<Vec<(Direction, Carrier, String, CallId)>>>;

fn label(m: &Message) -> String {
    match m.method() {
        Some(method) => method.to_owned(),
        None => format!("response {}", m.id_key().unwrap_or("null")),
    }
}

/// Records every message and every end; acts on tools by name:
/// `mock` is answered, `deny` fails with 429 + Retry-After, `lose` is dropped,
/// `slow` is delayed; server requests are answered by the stage; the notification
/// `notifications/message` is dropped; a response to `fail-late` fails the call.
#[derive(Clone, Default)]
struct Probe {
    seen: Seen,
    ends: Arc<Mutex<Vec<Outcome>>>,
}

impl Stage for Probe {
    type Call = ();

    fn begin(&self, _req: &McpRequest) {}

    fn on_message(&self, _call: &(), ctx: &MessageContext<'_>, m: Message) -> Flow {
        self.seen.lock().push((ctx.direction, ctx.carrier, label(&m), ctx.call.call));
        match (ctx.direction, m.tool_name(), m.method()) {
            (Direction::ClientToServer, Some("mock"), _) => {
                Flow::answer(result(m.id_key().unwrap_or("null"), json!({"content":[], "mocked": true})))
            }
            (Direction::ClientToServer, Some("deny"), _) => {
                let r = Rejection::new(StatusCode::TOO_MANY_REQUESTS, -32000, "slow down")
                    .header(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
                Flow::fail(r.into())
            }
            (Direction::ClientToServer, Some("lose"), _) => Flow::drop_it(),
            (Direction::ClientToServer, Some("slow"), _) => Flow::delay(Duration::from_secs(5), Verdict::Pass(m)),
            (Direction::ServerToClient, _, Some("sampling/createMessage")) => {
                Flow::answer(result(m.id_key().unwrap_or("null"), json!({"role":"assistant"})))
            }
            (Direction::ServerToClient, _, Some("notifications/message")) => Flow::drop_it(),
            (Direction::ServerToClient, _, None) if m.bytes().windows(9).any(|w| w == b"fail-late") => {
                Flow::fail(GatewayError::Internal("the stage failed it".into()))
            }
            _ => Flow::pass(m),
        }
    }

    fn end(&self, _call: &(), end: &CallEnd<'_>) {
        self.ends.lock().push(end.outcome.clone());
    }
}

/// An upstream: `tools/call` answers on a stream (progress, a log notification, a
/// sampling request, the result); other requests get a JSON result; everything else
/// (the client's responses) is recorded in `received` and accepted.
fn upstream(received: Arc<Mutex<Vec<McpRequest>>>) -> McpService {
    McpService::new(service_fn(move |req: McpRequest| {
        let received = received.clone();
        async move {
            let m = match &req.kind {
                RequestKind::Message(m) if m.is_request() => m.clone(),
                RequestKind::OpenStream { .. } => {
                    let s: MessageStream = Box::pin(futures_util::stream::iter(vec![msg(
                        json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
                    )]));
                    return Ok(McpReply::stream(s));
                }
                _ => {
                    received.lock().push(req);
                    return Ok(McpReply::accepted());
                }
            };
            let id = m.id_key().unwrap_or("null").to_owned();
            if m.method() != Some("tools/call") {
                return Ok(McpReply::message(result(&id, json!({"tools": []}))));
            }
            let tool = m.tool_name().unwrap_or("").to_owned();
            let s: MessageStream = Box::pin(futures_util::stream::iter(vec![
                msg(
                    json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}),
                ),
                msg(json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}})),
                msg(json!({"jsonrpc":"2.0","id":"s-1","method":"sampling/createMessage","params":{}})),
                result(&id, json!({"content":[{"type":"text","text":tool}]})),
            ]));
            Ok::<_, GatewayError>(McpReply::stream(s))
        }
    }))
}

fn probed() -> (Probe, McpService, Arc<Mutex<Vec<McpRequest>>>) {
    let probe = Probe::default();
    let received = Arc::new(Mutex::new(Vec::new()));
    let svc = McpService::new(StageLayer::new(probe.clone()).layer(upstream(received.clone())));
    (probe, svc, received)
}

async fn collect(reply: McpReply) -> Vec<Message> {
    reply.into_stream().collect().await
}

#[tokio::test]
async fn sees_request_and_json_reply() {
    let (probe, svc, _) = probed();
    let m = msg(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}));
    let reply = svc.oneshot(req(m)).await.expect("reply");
    assert!(matches!(reply.body, ReplyBody::Message(_)));
    let seen = probe.seen.lock().clone();
    let kinds: Vec<_> = seen.iter().map(|(d, c, l, _)| (*d, *c, l.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (Direction::ClientToServer, Carrier::Request, "tools/list"),
            (Direction::ServerToClient, Carrier::Reply, "response 3"),
        ]
    );
    assert_eq!(seen[0].3, seen[1].3, "one logical call");
    assert_eq!(*probe.ends.lock(), vec![Outcome::Ok]);
}

#[tokio::test]
async fn sees_a_post_stream_in_order_and_acts_on_it() {
    let (probe, svc, received) = probed();
    let mut request = req(call(5, "echo"));
    request.session = Some(session().await);
    let messages = collect(svc.oneshot(request).await.expect("reply")).await;
    // The log notification was dropped and the sampling request answered by the stage.
    let labels: Vec<String> = messages.iter().map(label).collect();
    assert_eq!(labels, vec!["notifications/progress".to_owned(), "response 5".to_owned()]);
    let seen: Vec<String> = probe.seen.lock().iter().map(|(_, c, l, _)| format!("{c:?} {l}")).collect();
    assert_eq!(
        seen,
        vec![
            "Request tools/call",
            "PostStream notifications/progress",
            "PostStream notifications/message",
            "PostStream sampling/createMessage",
            "PostStream response 5",
        ]
    );
    assert_eq!(*probe.ends.lock(), vec![Outcome::Ok]);
    // The stage's answer went below it as the client's response, linked to the request.
    for _ in 0..100 {
        if !received.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answered = received.lock();
    assert_eq!(answered.len(), 1);
    let answer = &answered[0];
    assert_eq!(answer.msg().and_then(|m| m.id_key()), Some("\"s-1\""));
    assert!(answer.session.is_some());
    let link = answer.context.answers.as_ref().expect("linked");
    assert_eq!(&*link.method, "sampling/createMessage");
    assert_eq!(link.during, Some(probe.seen.lock()[0].3));
}

#[tokio::test]
async fn answers_fails_and_drops_requests() {
    let (probe, svc, _) = probed();
    let reply = svc.clone().oneshot(req(call(1, "mock"))).await.expect("mock");
    let ReplyBody::Message(m) = reply.body else { panic!("a JSON answer") };
    assert!(m.to_value().expect("json")["result"]["mocked"].as_bool().unwrap_or(false));

    let err = svc.clone().oneshot(req(call(2, "deny"))).await.expect_err("refused");
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.headers().and_then(|h| h.get("retry-after")).map(|v| v.as_bytes()), Some(&b"7"[..]));
    assert_eq!(err.to_message(Some("2")).to_value().expect("json")["error"]["code"], -32000);

    let lost = collect(svc.clone().oneshot(req(call(3, "lose"))).await.expect("dropped")).await;
    assert!(lost.is_empty(), "a dropped request gets no answer");

    let note = msg(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    assert!(matches!(svc.oneshot(req(note)).await.expect("note").body, ReplyBody::Accepted));
    let ends = probe.ends.lock().clone();
    assert_eq!(ends, vec![Outcome::Ok, Outcome::Failed("rejected"), Outcome::Incomplete, Outcome::Accepted]);
}

#[tokio::test(start_paused = true)]
async fn delays_a_request() {
    let (_, svc, _) = probed();
    let started = tokio::time::Instant::now();
    let messages = collect(svc.oneshot(req(call(4, "slow"))).await.expect("reply")).await;
    assert!(started.elapsed() >= Duration::from_secs(5), "the verdict waited for the delay");
    assert_eq!(messages.last().map(label).as_deref(), Some("response 4"));
}

#[tokio::test]
async fn fails_a_call_mid_stream() {
    let (probe, svc, _) = probed();
    let messages = collect(svc.oneshot(req(call(6, "fail-late"))).await.expect("reply")).await;
    let last = messages.last().expect("an error").to_value().expect("json");
    assert_eq!(last["id"], 6);
    assert_eq!(last["error"]["code"], crate::protocol::codes::INTERNAL_ERROR);
    assert_eq!(*probe.ends.lock(), vec![Outcome::RpcError(-32603)]);
}

#[tokio::test]
async fn sees_get_streams_and_passes_resumed_ones() {
    let (probe, svc, _) = probed();
    let s = session().await;
    let open =
        McpRequest { kind: RequestKind::OpenStream { resume: None }, session: Some(s.clone()), ..req(call(0, "x")) };
    let messages = collect(svc.clone().oneshot(open).await.expect("get")).await;
    assert_eq!(messages.len(), 1);
    let seen = probe.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].0, seen[0].1), (Direction::ServerToClient, Carrier::GetStream));

    // A resumed stream: the stage sees the request, not the messages again.
    let resumed_svc = StageLayer::new(probe.clone()).layer(McpService::new(service_fn(|req: McpRequest| async move {
        let session = req.session.clone().expect("session");
        let stream = session.streams.create(true);
        stream.detach(None);
        let resumed = session.streams.resume(&stream.event_id(0)).map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok::<_, GatewayError>(McpReply::resumed(resumed))
    })));
    let resume = McpRequest {
        kind: RequestKind::OpenStream { resume: Some("1-0".into()) },
        session: Some(s),
        ..req(call(0, "x"))
    };
    let reply = resumed_svc.oneshot(resume).await.expect("resumed");
    assert!(reply.take_resumed().is_some(), "the resumed stream reaches the front");
    assert_eq!(probe.seen.lock().len(), 1, "no message seen a second time");
}

#[tokio::test]
async fn a_dropped_reply_ends_the_call_once() {
    let (probe, svc, _) = probed();
    let reply = svc.oneshot(req(call(8, "echo"))).await.expect("reply");
    let mut stream = reply.into_stream();
    let first = stream.next().await.expect("progress");
    assert_eq!(first.method(), Some("notifications/progress"));
    drop(stream);
    assert_eq!(*probe.ends.lock(), vec![Outcome::Dropped]);
}

/// `inner` behind the pipeline's linking stage, as `layers::build_pipeline` puts it.
fn linked(inner: McpService) -> McpService {
    McpService::new(StageLayer::new(CallLinks::default()).layer(inner))
}

#[tokio::test]
async fn links_client_responses_and_input_rounds() {
    let received = Arc::new(Mutex::new(Vec::new()));
    // The real pipeline builder puts the linking stage outermost.
    let svc = linked(upstream(received.clone()));

    // A session's server request, then the client's response to it.
    let s = session().await;
    let mut first = req(call(1, "plain"));
    first.session = Some(s.clone());
    let messages = collect(svc.clone().oneshot(first).await.expect("call")).await;
    assert!(messages.iter().any(|m| m.method() == Some("sampling/createMessage")));
    let response = msg(json!({"jsonrpc":"2.0","id":"s-1","result":{"role":"user"}}));
    let mut answer = req(response);
    answer.session = Some(s);
    let before = received.lock().len();
    svc.clone().oneshot(answer).await.expect("accepted");
    let link = {
        let got = received.lock();
        assert_eq!(got.len(), before + 1);
        got[before].context.answers.clone().expect("the response names its request")
    };
    assert_eq!(&*link.method, "sampling/createMessage");
    assert!(link.during.is_some(), "sent during a client call");

    // Two rounds of one stateless call share a call id.
    let rounds = McpService::new(service_fn(|req: McpRequest| async move {
        let m = req.msg().cloned().expect("message");
        let id = m.id_key().unwrap_or("null").to_owned();
        let retry = m.params_raw().is_some_and(|p| p.contains("requestState"));
        let body = if retry {
            json!({"resultType":"complete","content":[]})
        } else {
            json!({"resultType":"input_required","inputRequests":{},"requestState":"opaque-1"})
        };
        let mut reply = McpReply::message(result(&id, body));
        reply.upstream = Some(req.context.call.to_string().into());
        Ok::<_, GatewayError>(reply)
    }));
    let svc = linked(rounds);
    let stateless = |m: Message| McpRequest::message(m, "/mcp".into(), ProtocolVersion::V2026_07_28);
    let round1 = svc.clone().oneshot(stateless(call(1, "ask"))).await.expect("round 1");
    let retry = msg(json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"ask","requestState":"opaque-1","inputResponses":{}}}));
    let round2 = svc.clone().oneshot(stateless(retry)).await.expect("round 2");
    assert_eq!(round1.upstream, round2.upstream, "the retry carries the first round's call id");
    let other = svc.oneshot(stateless(call(3, "ask"))).await.expect("another call");
    assert_ne!(other.upstream, round1.upstream);
}
