//! The request every stage sees: one client-to-server message (or a stream to open or
//! a session to end) with its typed context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use crate::protocol::{Message, ProtocolVersion};
use crate::session::Session;

/// What the client asks for.
#[derive(Debug, Clone)]
pub enum RequestKind {
    /// One JSON-RPC message (request, notification, or a response to a
    /// server-to-client request).
    Message(Message),
    /// Open the server-to-client stream (the GET of Streamable HTTP), or, with
    /// `resume`, resume a stream of the session after that `Last-Event-ID`. A GET
    /// with neither re-attaches the session's GET stream if no client reads it.
    OpenStream {
        /// The `Last-Event-ID` the client sent, if any.
        resume: Option<String>,
    },
    /// End the session (the DELETE of Streamable HTTP).
    EndSession,
}

/// How the request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP (the gateway's front, `forward http`).
    Http,
    /// stdin/stdout (`forward stdio`).
    Stdio,
}

/// The logical call a message belongs to: every round of one multi-round-trip
/// (`input_required`) call shares it; otherwise each client request is a call of its
/// own. Unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

/// Call ids each thread takes from the shared counter at a time: a call id costs
/// no shared write (front threads would otherwise pass one cache line back and forth
/// on every request).
const CALL_ID_BLOCK: u64 = 1024;

impl CallId {
    /// A new call id.
    pub fn next() -> CallId {
        static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static BLOCK: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
        }
        BLOCK.with(|block| {
            let (mut next, mut end) = block.get();
            if next == end {
                next = NEXT_BLOCK.fetch_add(CALL_ID_BLOCK, Ordering::Relaxed);
                end = next + CALL_ID_BLOCK;
            }
            block.set((next + 1, end));
            CallId(next)
        })
    }

    /// Its number (for logs and tapes).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The authenticated client, set by an authentication stage and read by later ones
/// (authorization, rate limits, per-client bounds, logs).
#[derive(Debug, Clone)]
pub struct Principal {
    /// A stable identifier (for example `iss` + `sub` of a verified token).
    pub id: Arc<str>,
    /// What the stage verified about it (claims), for policies.
    pub claims: Arc<serde_json::Value>,
}

/// A stage's decision about a request, for the `access_log` line of the call (the
/// `policy` stage's: `allow by eng-tools`), so that it costs no log line of its own.
#[derive(Debug, Clone)]
pub struct AccessNote(pub Arc<str>);

/// A server-to-client request, as the client's response to it is linked to it.
#[derive(Debug, Clone)]
pub struct ServerRequest {
    /// Its method (`sampling/createMessage`, `elicitation/create`, `roots/list`).
    pub method: Arc<str>,
    /// The logical call it was sent during (the client call it belongs to), if it
    /// came on a POST's stream; `None` on the GET stream.
    pub during: Option<CallId>,
}

/// Who asks, how it came, and which call it belongs to.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// How the request came in.
    pub transport: Transport,
    /// The peer's IP address on HTTP; `None` on stdio.
    pub peer: Option<Arc<str>>,
    /// The logical call.
    pub call: CallId,
    /// For a client's response to a server-to-client request: that request.
    pub answers: Option<ServerRequest>,
    /// Whether this request is a later round of a multi-round-trip call (it brought
    /// back a `requestState` an earlier round's result carried, and shares its `call`).
    pub later_round: bool,
    /// Anything else a stage sets for later ones (the [`Principal`], for one).
    pub extensions: http::Extensions,
}

impl RequestContext {
    /// The context of a new call that came over `transport` from `peer`.
    pub fn new(transport: Transport, peer: Option<Arc<str>>) -> Self {
        RequestContext {
            transport,
            peer,
            call: CallId::next(),
            answers: None,
            later_round: false,
            extensions: http::Extensions::new(),
        }
    }

    /// The authenticated principal, once a stage has set one.
    pub fn principal(&self) -> Option<&Principal> {
        self.extensions.get::<Principal>()
    }

    /// Who the client is, for per-client bounds: the principal once authenticated,
    /// else the peer address; `None` on stdio (one client by construction).
    pub fn client_key(&self) -> Option<&str> {
        self.principal().map(|p| &*p.id).or(self.peer.as_deref())
    }
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
    /// The client's HTTP headers (empty on stdio), credentials included: stages such
    /// as authentication read them. Only an allow-list of them reaches an upstream
    /// (see `upstream::OutboundHeaders`). When an upstream has `forwarded: true`, the
    /// front puts the peer's address in `upstream::PEER_HEADER` (the client's own is
    /// replaced); it never leaves the gateway.
    pub headers: HeaderMap,
    /// The protocol revision in force for this request.
    pub version: ProtocolVersion,
    /// When the front received the request.
    pub received_at: Instant,
    /// Who asks, how it came, which call it belongs to.
    pub context: RequestContext,
}

impl McpRequest {
    /// A request carrying one message, over HTTP from no known peer (tests, tools).
    pub fn message(message: Message, route: Arc<str>, version: ProtocolVersion) -> Self {
        McpRequest {
            kind: RequestKind::Message(message),
            session: None,
            route,
            headers: HeaderMap::new(),
            version,
            received_at: Instant::now(),
            context: RequestContext::new(Transport::Http, None),
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
            RequestKind::OpenStream { .. } => "GET",
            RequestKind::EndSession => "DELETE",
        }
    }

    /// Who the client is, for per-client bounds (see [`RequestContext::client_key`]).
    pub fn client_key(&self) -> Option<&str> {
        self.context.client_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_unique_across_threads() {
        let ids: Vec<Vec<CallId>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4).map(|_| s.spawn(|| (0..3000).map(|_| CallId::next()).collect())).collect();
            workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
        });
        let mut all: Vec<CallId> = ids.into_iter().flatten().collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 12_000);
    }
}
