//! The reply stream of one request to a stdio upstream: what the process sends for
//! it, ending with the final response, under a timeout that progress extends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::session::Shared;
use crate::error::GatewayError;
use crate::protocol::{Message, MessageKind};

/// Messages for one pending request.
pub struct RequestStream {
    pub(super) rx: mpsc::Receiver<Message>,
    pub(super) first: VecDeque<Message>,
    pub(super) id: Box<str>,
    pub(super) shared: Arc<Shared>,
    pub(super) idle_timeout: Duration,
    pub(super) hard_deadline: Instant,
    pub(super) sleep: Pin<Box<Sleep>>,
    pub(super) started: Instant,
    pub(super) done: bool,
}

impl RequestStream {
    fn extend_deadline(&mut self) {
        let next = (Instant::now() + self.idle_timeout).min(self.hard_deadline);
        self.sleep.as_mut().reset(next);
    }
}

impl Stream for RequestStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(m) = self.first.pop_front() {
            return Poll::Ready(Some(m));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(m)) => {
                if m.kind() == MessageKind::Response && m.id_key() == Some(&*self.id) {
                    self.done = true;
                } else if m.method() == Some("notifications/progress") {
                    self.extend_deadline();
                }
                return Poll::Ready(Some(m));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            let after = self.started.elapsed();
            self.shared.abandon(&self.id, "the gateway's request timeout expired");
            let err = GatewayError::UpstreamTimeout { upstream: self.shared.upstream.to_string(), after };
            return Poll::Ready(Some(err.to_message(Some(&self.id))));
        }
        Poll::Pending
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.done {
            // Nobody will read the answer any more: forget the request so its slot
            // is free. (A client that merely disconnects keeps its stream for resumption.)
            self.shared.forget(&self.id);
        }
    }
}

/// Messages for the server-to-client (GET) stream.
pub struct ListenStream {
    pub(super) first: VecDeque<Message>,
    pub(super) rx: mpsc::Receiver<Message>,
}

impl Stream for ListenStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if let Some(m) = self.first.pop_front() {
            return Poll::Ready(Some(m));
        }
        self.rx.poll_recv(cx)
    }
}
