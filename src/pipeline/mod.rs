//! The pipeline: the request and reply types every stage sees, and the builder that
//! turns the YAML `pipeline:` list into one [`McpService`].
//!
//! Every stage is a `tower::Layer` over [`McpService`]. The first stage in the list
//! is the outermost: it sees the request first and the reply last.

mod call_observer;
mod observe;
pub mod registry;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_core::Stream;
use http::HeaderMap;
use tower::util::BoxCloneSyncService;

use crate::error::GatewayError;
use crate::protocol::{Message, ProtocolVersion};
use crate::session::Session;

pub use call_observer::{CallEnd, CallObserver, Observe, ObserveLayer};
pub use observe::{Observed, Outcome};
pub use registry::{build_pipeline, BuildContext, StageDef, StageFn, STAGES};

/// The service every stage wraps and every front calls.
pub type McpService = BoxCloneSyncService<McpRequest, McpReply, GatewayError>;

/// Server-to-client messages on their way to the client, in order. A stream that
/// answers a request ends after the final response.
pub type MessageStream = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// What the client asks for.
#[derive(Debug, Clone)]
pub enum RequestKind {
    /// One JSON-RPC message (request, notification, or a response to a
    /// server-to-client request).
    Message(Message),
    /// Open the server-to-client stream (the GET of Streamable HTTP).
    OpenStream,
    /// End the session (the DELETE of Streamable HTTP).
    EndSession,
}

/// A client-to-server message with its context.
#[derive(Clone)]
pub struct McpRequest {
    /// What is asked.
    pub kind: RequestKind,
    /// The session, once there is one. `None` for `initialize` and, from the stateless
    /// 2026-07-28 revision on, for every request.
    pub session: Option<Arc<Session>>,
    /// The endpoint path the request came in on (`/mcp`); the router maps it to an upstream.
    pub route: Arc<str>,
    /// The client's HTTP headers (empty on stdio). Credentials are removed before any
    /// upstream sees them.
    pub headers: HeaderMap,
    /// The protocol revision in force for this request.
    pub version: ProtocolVersion,
    /// When the front received the request.
    pub received_at: Instant,
    /// Who the client is, for per-client bounds: the peer's IP address on HTTP (the
    /// authenticated principal, once authentication exists); `None` on stdio.
    pub client: Option<Arc<str>>,
}

impl McpRequest {
    /// A request carrying one message.
    pub fn message(message: Message, route: Arc<str>, version: ProtocolVersion) -> Self {
        McpRequest {
            kind: RequestKind::Message(message),
            session: None,
            route,
            headers: HeaderMap::new(),
            version,
            received_at: Instant::now(),
            client: None,
        }
    }

    /// The message, if this request carries one.
    pub fn msg(&self) -> Option<&Message> {
        match &self.kind {
            RequestKind::Message(m) => Some(m),
            _ => None,
        }
    }

    /// Whether the front has checked this request's routing headers (`Mcp-Method`,
    /// `Mcp-Name`, `MCP-Protocol-Version`) against its body: true for stateless
    /// (2026-07-28) requests only. A stage may route, authorize or rate-limit from
    /// those headers only when this is true; otherwise it must read the message.
    pub fn headers_validated(&self) -> bool {
        self.version.is_stateless() && self.session.is_none()
    }

    /// A label for logs and metrics: the JSON-RPC method, or `GET`/`DELETE`.
    pub fn method_label(&self) -> &str {
        match &self.kind {
            RequestKind::Message(m) => m.method().unwrap_or("response"),
            RequestKind::OpenStream => "GET",
            RequestKind::EndSession => "DELETE",
        }
    }
}

/// The body of a reply.
pub enum ReplyBody {
    /// Accepted, nothing to say (HTTP 202).
    Accepted,
    /// One message (HTTP 200, `application/json`).
    Message(Message),
    /// Messages as they come (HTTP 200, `text/event-stream`).
    Stream(MessageStream),
}

/// The answer to an [`McpRequest`].
pub struct McpReply {
    /// What goes back.
    pub body: ReplyBody,
    /// Set when this call created a session (`initialize`): the front announces it.
    pub new_session: Option<Arc<Session>>,
    /// The upstream that served the call, for logs and metrics.
    pub upstream: Option<Arc<str>>,
}

impl McpReply {
    /// A reply with this body.
    pub fn new(body: ReplyBody) -> Self {
        McpReply { body, new_session: None, upstream: None }
    }

    /// HTTP 202.
    pub fn accepted() -> Self {
        Self::new(ReplyBody::Accepted)
    }

    /// The body as a stream of messages (a message is a stream of one, 202 an empty one).
    pub fn into_stream(self) -> MessageStream {
        match self.body {
            ReplyBody::Stream(s) => s,
            ReplyBody::Message(m) => Box::pin(futures_util::stream::once(async { m })),
            ReplyBody::Accepted => Box::pin(futures_util::stream::empty()),
        }
    }

    /// Calls `done` once the reply is complete: at once for a message, when the final
    /// response passes (or the stream ends or is dropped) for a stream.
    pub fn observe<F>(mut self, request_id: Option<String>, done: F) -> Self
    where
        F: FnOnce(Outcome, Option<&Message>) + Send + 'static,
    {
        self.body = match self.body {
            ReplyBody::Accepted => {
                done(Outcome::Accepted, None);
                ReplyBody::Accepted
            }
            ReplyBody::Message(m) => {
                done(Outcome::of_message(&m), Some(&m));
                ReplyBody::Message(m)
            }
            ReplyBody::Stream(s) => ReplyBody::Stream(Box::pin(Observed::new(s, request_id, done))),
        };
        self
    }
}

impl std::fmt::Debug for McpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = match &self.body {
            ReplyBody::Accepted => "accepted",
            ReplyBody::Message(_) => "message",
            ReplyBody::Stream(_) => "stream",
        };
        f.debug_struct("McpReply").field("body", &body).field("upstream", &self.upstream).finish()
    }
}
