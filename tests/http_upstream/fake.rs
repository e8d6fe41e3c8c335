//! Small fake Streamable HTTP upstreams, for the failures a real server will not
//! produce on demand. A hyper server on loopback (plain, or TLS with h2 and
//! HTTP/1.1 by ALPN) records every request and answers it with the test's script,
//! or, where the script has nothing to say, as a minimal MCP server would.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The session id the fake assigns at initialize.
pub const SESSION: &str = "fake-upstream-session-7";

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Reply = Response<Body>;
type Script = Arc<dyn Fn(&Seen) -> Option<Reply> + Send + Sync>;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn rpc_method(&self) -> Option<&str> {
        self.body["method"].as_str()
    }

    /// The tool name of a `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        (self.rpc_method() == Some("tools/call")).then(|| self.body["params"]["name"].as_str()).flatten()
    }

    /// A JSON-RPC result answering this request.
    pub fn result(&self, result: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": self.body["id"], "result": result})
    }
}

/// A running fake upstream.
pub struct Fake {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Fake {
    /// Starts a plain-HTTP fake on 127.0.0.1.
    pub async fn start(script: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static) -> Fake {
        Fake::serve(Fake::bind_any().await, Arc::new(script), None)
    }

    /// Starts a TLS fake on 127.0.0.1 (reach it as `localhost`).
    pub async fn start_tls(
        script: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> Fake {
        Fake::serve(Fake::bind_any().await, Arc::new(script), Some(tokio_rustls::TlsAcceptor::from(tls)))
    }

    /// Starts a plain-HTTP fake on a given loopback port.
    pub async fn start_on(port: u16, script: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Fake::serve(listener, Arc::new(script), None)
    }

    async fn bind_any() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    fn serve(listener: TcpListener, script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Fake {
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (script, seen, tls) = (script.clone(), seen2.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (script, seen) = (script.clone(), seen.clone());
                        async move { Ok::<_, Infallible>(answer(req, &script, &seen).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Fake { port, seen, connections, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Waits for a request that `pred` accepts.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.seen().into_iter().find(|s| pred(s)) {
                return Some(s);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(req: Request<Incoming>, script: &Script, seen: &Mutex<Vec<Seen>>) -> Reply {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let s = Seen {
        method: parts.method,
        version: parts.version,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    seen.lock().push(s.clone());
    let reply = script(&s).unwrap_or_else(|| default_reply(&s));
    if reply.headers().contains_key(STALL_HEADERS) {
        std::future::pending::<()>().await;
    }
    reply
}

/// Marks a reply whose headers are never sent.
const STALL_HEADERS: &str = "x-fake-stall-headers";

/// An answer that never comes (not even its headers).
pub fn stall_headers() -> Reply {
    let mut r = status(StatusCode::OK);
    r.headers_mut().insert(STALL_HEADERS, "1".parse().unwrap());
    r
}

/// A minimal MCP server: initialize (assigning [`SESSION`]), 202 for notifications
/// and responses, the `echo` tool, no GET stream (405), DELETE accepted.
pub fn default_reply(s: &Seen) -> Reply {
    match s.method {
        Method::GET => status(StatusCode::METHOD_NOT_ALLOWED),
        Method::DELETE => status(StatusCode::OK),
        _ if s.body.get("id").is_none() || s.rpc_method().is_none() => status(StatusCode::ACCEPTED),
        _ => match s.rpc_method() {
            Some("initialize") => {
                let result = s.result(json!({
                    "protocolVersion": s.body["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "fake", "version": "0"},
                }));
                let mut r = json_reply(StatusCode::OK, &result);
                r.headers_mut().insert("mcp-session-id", SESSION.parse().unwrap());
                r
            }
            Some("tools/call") if s.tool() == Some("echo") => {
                let text = s.body["params"]["arguments"]["message"].clone();
                json_reply(StatusCode::OK, &s.result(json!({"content": [{"type": "text", "text": text}]})))
            }
            // The same as one SSE event, as SDK servers answer by default.
            Some("tools/call") if s.tool() == Some("echo_sse") => {
                let text = s.body["params"]["arguments"]["message"].clone();
                sse(vec![event(Some("e-1"), &s.result(json!({"content": [{"type": "text", "text": text}]})))])
            }
            Some("ping") => json_reply(StatusCode::OK, &s.result(json!({}))),
            _ => json_reply(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": s.body["id"], "error": {"code": -32601, "message": "no such method"}}),
            ),
        },
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// An empty answer with `code`.
pub fn status(code: StatusCode) -> Reply {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// A JSON answer.
pub fn json_reply(code: StatusCode, value: &Value) -> Reply {
    raw_reply(code, "application/json", value.to_string())
}

/// Any body with any content type.
pub fn raw_reply(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert("content-type", content_type.parse().unwrap());
    r
}

/// One step of a scripted SSE body.
pub enum Step {
    /// Raw SSE text.
    Send(String),
    /// A pause.
    Wait(Duration),
    /// Never send anything again (the body stays open).
    Stall,
}

/// An SSE event carrying `data` (and `id`, if given).
pub fn event(id: Option<&str>, data: &Value) -> Step {
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    Step::Send(format!("{id}event: message\ndata: {data}\n\n"))
}

/// A streamed SSE answer: the steps in order, then the body ends (unless it stalls).
pub fn sse(steps: Vec<Step>) -> Reply {
    let stream = futures_util::stream::unfold(steps.into_iter(), |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Send(text) => return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), steps)),
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Stall => std::future::pending::<()>().await,
            }
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
    r.headers_mut().insert("cache-control", "no-cache".parse().unwrap());
    r
}

/// A progress notification for `token`.
pub fn progress(token: &Value, n: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": n}})
}
