//! A reply stream as a stage sees it: each message through [`Stage::on_message`], in
//! order, and the call's end once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream;

use super::layer::Node;
use super::{CallEnd, CallInfo, Direction, Flow, LaterVerdict, MessageContext, Stage, Verdict};
use crate::pipeline::{McpRequest, MessageStream, Outcome, RequestContext, RequestKind, ServerRequest};
use crate::protocol::{Message, MessageKind};
use crate::session::Session;

/// What a message was, kept while the stage's verdict on it is pending.
struct Original {
    kind: MessageKind,
    /// A request's method (kept for requests only: they are few).
    method: Option<Arc<str>>,
}

impl Original {
    fn of(m: &Message) -> Self {
        let method = if m.is_request() { m.method().map(Arc::from) } else { None };
        Original { kind: m.kind(), method }
    }
}

/// A reply stream through a stage.
pub(super) struct Tapped<T: Stage> {
    inner: MessageStream,
    node: Arc<Node<T>>,
    call: T::Call,
    /// `Stage::end` was called.
    finished: bool,
    info: CallInfo,
    upstream: Option<Arc<str>>,
    new_session: Option<Arc<Session>>,
    pending: Option<(LaterVerdict<Message>, Original)>,
    /// The stage failed the call: its error was the last message.
    ended: bool,
}

impl<T: Stage> Tapped<T> {
    pub(super) fn new(
        inner: MessageStream,
        node: Arc<Node<T>>,
        call: T::Call,
        info: CallInfo,
        upstream: Option<Arc<str>>,
        new_session: Option<Arc<Session>>,
    ) -> Self {
        Tapped { inner, node, call, finished: false, info, upstream, new_session, pending: None, ended: false }
    }

    fn end(&mut self, outcome: Outcome, response: Option<&Message>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let end = CallEnd {
            upstream: self.upstream.as_deref(),
            new_session: self.new_session.as_ref(),
            outcome: &outcome,
            response,
            error: None,
        };
        self.node.stage.end(&self.call, &end);
    }

    /// A message that goes on to the client: the call ends with its final response.
    fn deliver(&mut self, m: Message) -> Message {
        if !self.finished
            && m.kind() == MessageKind::Response
            && self.info.request_id.is_some()
            && m.id_key() == self.info.request_id.as_deref()
        {
            self.end(Outcome::of_message(&m), Some(&m));
        }
        m
    }

    /// Applies a verdict: `Some` is a message for the client.
    fn apply(&mut self, verdict: Verdict, original: Original) -> Option<Message> {
        match verdict {
            Verdict::Pass(m) => Some(self.deliver(m)),
            Verdict::Drop => None,
            Verdict::Answer(answer) => {
                if original.kind == MessageKind::Request {
                    self.answer_upstream(answer, original);
                }
                None
            }
            Verdict::Fail(e) => {
                let m = e.to_message(self.info.request_id.as_deref());
                self.end(Outcome::of_message(&m), Some(&m));
                self.ended = true;
                Some(m)
            }
        }
    }

    /// Sends the stage's answer to a server-to-client request upstream, as the
    /// client's response would go.
    fn answer_upstream(&self, answer: Message, original: Original) {
        let Some(session) = self.info.session.clone() else {
            tracing::warn!(call = %self.info.call, "a stage answered a server request outside a session; dropped");
            return;
        };
        let during = (self.info.carrier != super::Carrier::GetStream).then_some(self.info.call);
        let mut context = RequestContext::new(self.info.transport, None);
        context.call = self.info.call;
        context.answers = original.method.map(|method| ServerRequest { method, during });
        let req = McpRequest {
            kind: RequestKind::Message(answer),
            session: Some(session),
            route: self.info.route.clone(),
            headers: http::HeaderMap::new(),
            version: self.info.version,
            received_at: Instant::now(),
            context,
        };
        let sent = self.node.below.start(req);
        let call = self.info.call;
        tokio::spawn(async move {
            if let Err(e) = sent.await {
                tracing::warn!(%call, error = %e, "a stage's answer to a server request could not be sent");
            }
        });
    }
}

impl<T: Stage> Stream for Tapped<T> {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        loop {
            if let Some((fut, _)) = &mut this.pending {
                let verdict = std::task::ready!(fut.as_mut().poll(cx));
                let Some((_, original)) = this.pending.take() else { continue };
                if let Some(m) = this.apply(verdict, original) {
                    return Poll::Ready(Some(m));
                }
                continue;
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(m) = std::task::ready!(this.inner.as_mut().poll_next(cx)) else {
                this.end(Outcome::Incomplete, None);
                return Poll::Ready(None);
            };
            let ctx = MessageContext {
                direction: Direction::ServerToClient,
                carrier: this.info.carrier,
                call: &this.info,
                upstream: this.upstream.as_deref(),
            };
            let original = Original::of(&m);
            match this.node.stage.on_message(&this.call, &ctx, m) {
                Flow::Now(verdict) => {
                    if let Some(m) = this.apply(verdict, original) {
                        return Poll::Ready(Some(m));
                    }
                }
                Flow::Later(fut) => this.pending = Some((fut, original)),
            }
        }
    }
}

impl<T: Stage> Drop for Tapped<T> {
    fn drop(&mut self) {
        self.end(Outcome::Dropped, None);
    }
}
