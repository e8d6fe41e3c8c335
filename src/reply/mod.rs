//! Replies: 202, one message, or a stream of messages, as upstreams give them and
//! stages and fronts see them. A leaf: it knows messages, not sessions. What a layer
//! above adds to a reply (the session an `initialize` created, a stream taken up
//! again) travels in [`McpReply::extensions`], with typed accessors where that layer
//! lives (`session`).

mod observe;

use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

pub use observe::{Observed, Outcome};

use crate::protocol::Message;

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
}

/// The answer to an `McpRequest`.
pub struct McpReply {
    /// What goes back.
    pub body: ReplyBody,
    /// The upstream that served the call, for logs and metrics.
    pub upstream: Option<Arc<str>>,
    /// What layers above attach (see the module docs).
    pub extensions: http::Extensions,
}

impl McpReply {
    /// A reply with this body.
    pub fn new(body: ReplyBody) -> Self {
        McpReply { body, upstream: None, extensions: http::Extensions::new() }
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
    /// one).
    pub fn into_stream(self) -> MessageStream {
        match self.body {
            ReplyBody::Stream(s) => s,
            ReplyBody::Message(m) => Box::pin(futures_util::stream::once(async { m })),
            ReplyBody::Accepted => Box::pin(futures_util::stream::empty()),
        }
    }

    /// Waits for the response with id `id` (JSON text): the message itself, or the
    /// one on the stream; `None` if the reply has none.
    pub async fn first_response(self, id: &str) -> Option<Message> {
        use futures_util::StreamExt;
        if let ReplyBody::Message(m) = &self.body {
            return (m.kind() == crate::protocol::MessageKind::Response).then(|| m.clone());
        }
        let mut s = self.into_stream();
        while let Some(m) = s.next().await {
            if m.kind() == crate::protocol::MessageKind::Response && m.id_key() == Some(id) {
                return Some(m);
            }
        }
        None
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
