//! The bench upstream over Streamable HTTP: HTTP/1.1 with keep-alive, one endpoint
//! path, JSON responses only (never SSE), sessions minted on `initialize` and ended by
//! `DELETE`. A GET (the optional server-to-client stream) gets 405, which the spec
//! allows for a server that offers none.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::mcp::{answer, Answer};

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Sessions known to the server, at most this many (the oldest are not tracked: the
/// bench creates a few hundred at most).
const MAX_SESSIONS: usize = 1_000_000;

struct State {
    path: String,
    sessions: Mutex<HashSet<u64>>,
    next: AtomicU64,
    seed: u64,
}

/// Serves the MCP endpoint `path` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, path: String) {
    let seed =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64) ^ std::process::id() as u64;
    let state = Arc::new(State { path, sessions: Mutex::new(HashSet::new()), next: AtomicU64::new(1), seed });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("mcp-bench-upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(state.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                if !e.is_incomplete_message() {
                    eprintln!("mcp-bench-upstream: connection error: {e}");
                }
            }
        });
    }
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != self.path {
            return json(StatusCode::NOT_FOUND, error_body("no MCP endpoint at this path"));
        }
        match *req.method() {
            Method::POST => self.post(req).await,
            Method::DELETE => match self.session_of(&req) {
                Ok(id) => {
                    self.sessions.lock().remove(&id);
                    empty(StatusCode::OK)
                }
                Err(refused) => refused.response(),
            },
            _ => {
                let mut r = json(StatusCode::METHOD_NOT_ALLOWED, error_body("this server offers no GET stream"));
                r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
                r
            }
        }
    }

    async fn post(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let session = self.session_of(&req);
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return json(StatusCode::BAD_REQUEST, error_body(&format!("cannot read the body: {e}"))),
        };
        match answer(&body) {
            Answer::Initialized(b) => {
                let id = self.mint();
                let mut r = json(StatusCode::OK, b);
                if let Ok(v) = HeaderValue::from_str(&format!("{id:016x}")) {
                    r.headers_mut().insert(SESSION_HEADER, v);
                }
                r
            }
            Answer::Invalid(b) => json(StatusCode::BAD_REQUEST, b),
            other => match session {
                Err(refused) => refused.response(),
                Ok(_) => match other {
                    Answer::Reply(b) => json(StatusCode::OK, b),
                    _ => empty(StatusCode::ACCEPTED),
                },
            },
        }
    }

    fn mint(&self) -> u64 {
        let id = splitmix64(self.seed ^ self.next.fetch_add(1, Ordering::Relaxed));
        let mut sessions = self.sessions.lock();
        if sessions.len() < MAX_SESSIONS {
            sessions.insert(id);
        }
        id
    }

    fn session_of<B>(&self, req: &Request<B>) -> Result<u64, Refused> {
        let header = req.headers().get(SESSION_HEADER).ok_or(Refused::NoSession)?;
        let id = header.to_str().ok().and_then(|s| u64::from_str_radix(s, 16).ok());
        match id {
            Some(id) if self.sessions.lock().contains(&id) => Ok(id),
            _ => Err(Refused::UnknownSession),
        }
    }
}

/// Why a request that needs a session is refused.
enum Refused {
    NoSession,
    UnknownSession,
}

impl Refused {
    fn response(self) -> Response<Full<Bytes>> {
        match self {
            Refused::NoSession => json(StatusCode::BAD_REQUEST, error_body("Mcp-Session-Id is required")),
            Refused::UnknownSession => json(StatusCode::NOT_FOUND, error_body("unknown session")),
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn error_body(message: &str) -> Vec<u8> {
    let message = serde_json::Value::from(message).to_string();
    format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32000,"message":{message}}}}}"#).into_bytes()
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
