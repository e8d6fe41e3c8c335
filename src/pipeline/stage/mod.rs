//! The stage API: what a pipeline stage sees of the traffic and what it may do to it.
//!
//! A stage is a type implementing [`Stage`]; [`StageLayer`] turns it into a
//! `tower::Layer` over [`McpService`](super::McpService). The layer does the stream
//! plumbing, so a stage is a handful of methods:
//!
//! - [`Stage::begin`]: a call starts (a client request, notification or response, a
//!   GET that opens or resumes a stream, a DELETE). The stage keeps what it needs
//!   about the call in its own [`Stage::Call`] value, for example the state it started
//!   under (see [`Shared`](super::Shared)).
//! - [`Stage::on_request`]: the request itself, before anything below the stage sees
//!   it. By default this hands the request's message (if any) to
//!   [`Stage::on_message`]; override it to act on requests without a message (a GET
//!   resuming a stream, a DELETE) or on the request's context (set a
//!   [`Principal`](super::Principal)).
//! - [`Stage::on_reply`]: the reply is back from below, before the front sends the
//!   client anything ([`ReplyStart`]: the upstream, and the session an `initialize`
//!   created, before the client can know its id).
//! - [`Stage::on_message`]: every message of the call, both directions, in order: the
//!   client's message, then each server-to-client message of the reply (one JSON
//!   reply, or every message of the SSE stream answering a POST, of the GET stream,
//!   and of those streams when a client takes them up again). [`MessageContext`]
//!   says which way it goes, on what, in which session and logical call, on which
//!   route, for which upstream and protocol revision.
//! - [`Stage::end`]: the call is complete (its final response passed, or its stream
//!   ended or was dropped, or it failed), with its [`Outcome`](super::Outcome).
//!
//! Each hook answers with a [`Flow`]: a [`Verdict`] now, or a future of one (a
//! delay, a pause, a lookup). A verdict passes the message on (changed or not), drops
//! it, answers it in place of the other side, or fails the call with a
//! [`GatewayError`] (any error the fronts render: [`GatewayError::rejected`] carries
//! an HTTP status and headers, for a 401 with `WWW-Authenticate`, a 403, a 429 with
//! `Retry-After`). The fronts render errors for HTTP and stdio, before or after a
//! stream has started. What each verdict means per direction is on [`Verdict`].
//!
//! Messages of one call pass a stage one at a time, in order: while a `Later` flow is
//! pending, the next message waits. A stage is built once, from its options; the
//! gateway then wraps a clone of it around each front thread's pipeline
//! ([`StageLayer::service`], through `layers::Pipeline`), so state in an `Arc` (a
//! rule set, rate-limit buckets) is shared by all threads and calls, while plain
//! fields are per thread copies of the options.
//!
//! Besides calls, a stage can register at build time (see
//! `layers::BuildContext`): a [`RefusalObserver`](super::RefusalObserver),
//! told of every request the fronts refuse before the pipeline (Origin, Accept, size,
//! JSON, version and session checks), a [`StageControl`](super::StageControl),
//! which the admin listener serves read-only at `/stages/<name>`, and a
//! [`WireTap`](crate::upstream::WireTap), which sees the upstream wire: what the
//! gateway itself exchanges with upstreams (the bridge's pooled sessions, with their
//! `initialize` and the bridge's answers to a legacy server's questions, and the
//! stateless requests it sends), which never crosses the client's wire. A stage that
//! taps both wires (a recorder) implements both.
//!
//! # Example
//!
//! A stage that answers `tools/call` for the tool `forbidden` itself, counts the
//! server-to-client messages it lets through, and delays nothing:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use shadowcat::error::GatewayError;
//! use shadowcat::pipeline::{
//!     Direction, Flow, McpReply, McpRequest, McpService, MessageContext, Stage, StageLayer, Verdict,
//! };
//! use shadowcat::protocol::{Message, ProtocolVersion};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! #[derive(Clone, Default)]
//! struct Guard {
//!     seen: Arc<AtomicUsize>,
//! }
//!
//! impl Stage for Guard {
//!     type Call = ();
//!     fn begin(&self, _req: &McpRequest) {}
//!     fn on_message(&self, _call: &(), ctx: &MessageContext<'_>, msg: Message) -> Flow {
//!         match ctx.direction {
//!             Direction::ClientToServer if msg.tool_name() == Some("forbidden") => {
//!                 let status = http::StatusCode::FORBIDDEN;
//!                 Flow::fail(GatewayError::rejected(status, -32003, "this tool is not for you"))
//!             }
//!             Direction::ServerToClient => {
//!                 self.seen.fetch_add(1, Ordering::Relaxed);
//!                 Flow::pass(msg)
//!             }
//!             _ => Flow::pass(msg),
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let upstream = McpService::new(service_fn(|req: McpRequest| async move {
//!     let id = req.msg().and_then(|m| m.id_key()).unwrap_or("null").to_owned();
//!     let reply = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
//!     Ok::<_, GatewayError>(McpReply::message(Message::parse(reply.into_bytes()).unwrap()))
//! }));
//! let guard = Guard::default();
//! let svc = StageLayer::new(guard.clone()).layer(upstream);
//! let call = |tool: &str| {
//!     let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
//!     let m = Message::parse(body.into_bytes()).unwrap();
//!     McpRequest::message(m, "/mcp".into(), ProtocolVersion::V2025_06_18)
//! };
//! let err = svc.clone().oneshot(call("forbidden")).await.unwrap_err();
//! assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
//! svc.oneshot(call("echo")).await.unwrap();
//! assert_eq!(guard.seen.load(Ordering::Relaxed), 1);
//! # });
//! ```

mod layer;
mod stream;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use layer::{StageLayer, StageService};

use super::{CallId, McpRequest, Outcome, RequestKind, ServerRequest, Transport};
use crate::error::GatewayError;
use crate::protocol::{Message, ProtocolVersion};
use crate::session::Session;

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client towards the server: requests, notifications, and the client's
    /// responses to server-to-client requests.
    ClientToServer,
    /// From the server towards the client: responses, notifications, and
    /// server-to-client requests (sampling, elicitation, roots).
    ServerToClient,
}

/// What carries a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The body of the client's request (a POST, a stdin line).
    Request,
    /// A single JSON reply.
    Reply,
    /// The SSE stream answering a POST (on stdio: the messages of one call).
    PostStream,
    /// The server-to-client (GET) stream, also when a client takes it up again.
    GetStream,
}

/// What a stage knows of the call a message belongs to.
#[derive(Clone)]
pub struct CallInfo {
    /// The session, if any (see [`Session::tag`] for logs).
    pub session: Option<Arc<Session>>,
    /// The endpoint path.
    pub route: Arc<str>,
    /// The protocol revision in force.
    pub version: ProtocolVersion,
    /// The logical call.
    pub call: CallId,
    /// How the request came in.
    pub transport: Transport,
    /// Who the client is ([`McpRequest::client_key`]).
    pub client: Option<Arc<str>>,
    /// The id of the client's request (its JSON text), when the call is a request.
    pub request_id: Option<Arc<str>>,
    /// For a client's response: the server-to-client request it answers.
    pub answers: Option<ServerRequest>,
    /// What carries the server's messages of this call.
    pub carrier: Carrier,
}

impl CallInfo {
    /// What a request says about its call.
    pub fn of(req: &McpRequest) -> CallInfo {
        let request_id = match &req.kind {
            RequestKind::Message(m) if m.is_request() => m.id_shared(),
            _ => None,
        };
        let carrier = match req.kind {
            RequestKind::OpenStream { .. } => Carrier::GetStream,
            _ => Carrier::PostStream,
        };
        CallInfo {
            session: req.session.clone(),
            route: req.route.clone(),
            version: req.version,
            call: req.context.call,
            transport: req.context.transport,
            // The principal's id or the peer's address: shared, not copied.
            client: req.context.principal().map(|p| p.id.clone()).or_else(|| req.context.peer.clone()),
            request_id,
            answers: req.context.answers.clone(),
            carrier,
        }
    }
}

/// Where a message is and what it belongs to.
pub struct MessageContext<'a> {
    /// Which way it goes.
    pub direction: Direction,
    /// What carries it.
    pub carrier: Carrier,
    /// The call.
    pub call: &'a CallInfo,
    /// The upstream serving the call, once known (server-to-client messages).
    pub upstream: Option<&'a str>,
}

/// What a stage does with a message.
///
/// | verdict | client-to-server message | server-to-client message |
/// |---|---|---|
/// | `Pass(m)` | `m` goes on (changed or not) | `m` goes on to the client |
/// | `Drop` | a request gets no answer (its reply is an empty stream); a notification or response is accepted (202) and not relayed | not delivered; a dropped final response leaves the call without one |
/// | `Answer(m)` | a request is answered with `m` (a mock) without the upstream; for a notification or response it is `Drop` | a server-to-client request is answered with `m` (a response) in place of the client, which never sees it; for other messages it is `Drop` |
/// | `Fail(e)` | the call fails with `e`, rendered by the front (status and headers over HTTP) | the call ends with `e` as its final response, on the stream |
#[derive(Debug)]
pub enum Verdict<T = Message> {
    /// Let it through, as it is or changed.
    Pass(T),
    /// Remove it.
    Drop,
    /// Answer it in place of the other side.
    Answer(Message),
    /// Fail the call.
    Fail(GatewayError),
}

impl<T> Verdict<T> {
    /// Changes what passes.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Verdict<U> {
        match self {
            Verdict::Pass(t) => Verdict::Pass(f(t)),
            Verdict::Drop => Verdict::Drop,
            Verdict::Answer(m) => Verdict::Answer(m),
            Verdict::Fail(e) => Verdict::Fail(e),
        }
    }
}

/// A verdict that comes later.
pub type LaterVerdict<T> = Pin<Box<dyn Future<Output = Verdict<T>> + Send>>;

/// A verdict now, or later (a stage that waits: a delay, a pause, a lookup).
pub enum Flow<T = Message> {
    /// Decided.
    Now(Verdict<T>),
    /// Decided when the future completes; later messages of the call wait for it.
    Later(LaterVerdict<T>),
}

impl<T: Send + 'static> Flow<T> {
    /// Let it through.
    pub fn pass(t: T) -> Self {
        Flow::Now(Verdict::Pass(t))
    }

    /// Remove it.
    pub fn drop_it() -> Self {
        Flow::Now(Verdict::Drop)
    }

    /// Answer it with `m`.
    pub fn answer(m: Message) -> Self {
        Flow::Now(Verdict::Answer(m))
    }

    /// Fail the call with `e`.
    pub fn fail(e: GatewayError) -> Self {
        Flow::Now(Verdict::Fail(e))
    }

    /// The verdict of `future`.
    pub fn later(future: impl Future<Output = Verdict<T>> + Send + 'static) -> Self {
        Flow::Later(Box::pin(future))
    }

    /// `verdict`, after `delay`.
    pub fn delay(delay: std::time::Duration, verdict: Verdict<T>) -> Self {
        Flow::later(async move {
            tokio::time::sleep(delay).await;
            verdict
        })
    }

    /// Changes what passes, now or later.
    pub fn map<U: Send + 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Flow<U> {
        match self {
            Flow::Now(v) => Flow::Now(v.map(f)),
            Flow::Later(fut) => Flow::later(async move { fut.await.map(f) }),
        }
    }
}

/// How a call ended, as a stage sees it.
pub struct CallEnd<'a> {
    /// The upstream that served it, if it got that far.
    pub upstream: Option<&'a str>,
    /// The session the call created (`initialize`), if any.
    pub new_session: Option<&'a Arc<Session>>,
    /// Its outcome.
    pub outcome: &'a Outcome,
    /// The final response, when there was one.
    pub response: Option<&'a Message>,
    /// The error the call failed with before any reply (the front renders it: an
    /// HTTP status and a JSON-RPC error), when it did.
    pub error: Option<&'a GatewayError>,
}

/// A reply as it comes back through a stage, before any of its messages (and before
/// the front sends the client anything: a new session's id included).
pub struct ReplyStart<'a> {
    /// The upstream serving the call.
    pub upstream: Option<&'a str>,
    /// The session the call created (`initialize`), if any.
    pub new_session: Option<&'a Arc<Session>>,
}

/// A pipeline stage: see the module docs.
pub trait Stage: Clone + Send + Sync + Unpin + 'static {
    /// What the stage keeps about one call, from [`begin`](Stage::begin) to
    /// [`end`](Stage::end).
    type Call: Send + Sync + Unpin + 'static;

    /// A call starts.
    fn begin(&self, req: &McpRequest) -> Self::Call;

    /// The request, before anything below this stage sees it. The default hands its
    /// message, if any, to [`on_message`](Stage::on_message).
    fn on_request(&self, call: &Self::Call, info: &CallInfo, mut req: McpRequest) -> Flow<McpRequest> {
        if !matches!(req.kind, RequestKind::Message(_)) {
            return Flow::pass(req);
        }
        let RequestKind::Message(m) = std::mem::replace(&mut req.kind, RequestKind::EndSession) else {
            return Flow::pass(req);
        };
        let ctx = MessageContext {
            direction: Direction::ClientToServer,
            carrier: Carrier::Request,
            call: info,
            upstream: None,
        };
        self.on_message(call, &ctx, m).map(move |m| {
            req.kind = RequestKind::Message(m);
            req
        })
    }

    /// The reply has come back from below (called once, unless the call failed
    /// first); its messages follow through [`on_message`](Stage::on_message).
    fn on_reply(&self, call: &Self::Call, reply: &ReplyStart<'_>) {
        let _ = (call, reply);
    }

    /// One message of the call; see [`Verdict`] for what each answer does.
    fn on_message(&self, call: &Self::Call, ctx: &MessageContext<'_>, msg: Message) -> Flow {
        let _ = (call, ctx);
        Flow::pass(msg)
    }

    /// The call is complete (called once). Messages that come after its final
    /// response (rare: a late notification) still pass [`on_message`](Stage::on_message).
    fn end(&self, call: &Self::Call, end: &CallEnd<'_>) {
        let _ = (call, end);
    }
}
