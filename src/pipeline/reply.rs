//! The reply every stage sees: 202, one message, or a stream of messages.

use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use super::{Observed, Outcome};
use crate::protocol::Message;
use crate::session::{Resumed, Session};

/// Server-to-client messages on their way to the client, in order. A stream that
/// answers a request ends after the final response.
pub type MessageStream = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// The body of a reply.
pub enum ReplyBody {
    /// Accepted, nothing to say (HTTP 202).
    Accepted,
    /// One message (HTTP 200, `application/json`).
    Message(Message),
    /// Messages as they come (HTTP 200, `text/event-stream`).
    Stream(MessageStream),
    /// A stream of the session taken up again (`Last-Event-ID`, or a GET stream no
    /// client was reading): events to replay, then its live source. Its messages
    /// passed the stages when the stream was first opened, and still do as they
    /// come: stages see the request that resumed it, not its messages a second time.
    Resumed(Box<Resumed>),
}

/// The answer to an [`McpRequest`](super::McpRequest).
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

    /// One message.
    pub fn message(m: Message) -> Self {
        Self::new(ReplyBody::Message(m))
    }

    /// A stream of messages.
    pub fn stream(s: MessageStream) -> Self {
        Self::new(ReplyBody::Stream(s))
    }

    /// The body as a stream of messages (a message is a stream of one, 202 an empty
    /// one; a resumed stream is its live source, without the events to replay).
    pub fn into_stream(self) -> MessageStream {
        match self.body {
            ReplyBody::Stream(s) => s,
            ReplyBody::Message(m) => Box::pin(futures_util::stream::once(async { m })),
            ReplyBody::Accepted => Box::pin(futures_util::stream::empty()),
            ReplyBody::Resumed(r) => r.source.unwrap_or_else(|| Box::pin(futures_util::stream::empty())),
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
            ReplyBody::Resumed(r) => {
                done(Outcome::Ok, None);
                ReplyBody::Resumed(r)
            }
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
            ReplyBody::Resumed(_) => "resumed",
        };
        f.debug_struct("McpReply").field("body", &body).field("upstream", &self.upstream).finish()
    }
}
