//! The SSE response body: messages from a [`MessageStream`] as numbered events,
//! kept in the session's [`SseStream`] for resumption.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::response::BodyError;
use super::wire::{Cut, Dribble};
use crate::pipeline::MessageStream;
use crate::protocol::{Message, WireFault};
use crate::session::SseStream;

/// Encodes one message as an SSE event with `id`.
pub fn encode_event(id: &str, m: &Message) -> Bytes {
    encode_data(id, m.bytes())
}

/// Encodes `data` (one message's bytes, or what a `malformed` fault puts there) as
/// an SSE event with `id`.
fn encode_data(id: &str, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + id.len() + 32);
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_slice(b"\nevent: message\n");
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The priming event of 2025-11-25: an id, the advised `retry`, and empty data.
pub fn priming_event(id: &str, retry: Duration) -> Bytes {
    Bytes::from(format!("id: {id}\nretry: {}\ndata: \n\n", retry.as_millis()))
}

/// Options of one SSE body.
#[derive(Clone)]
pub struct SseOptions {
    /// Interval of keep-alive comments.
    pub keepalive: Duration,
    /// `retry` to send before the gateway closes a live stream (2025-11-25+ only).
    pub retry_on_close: Option<Duration>,
    /// Ends the stream when it flips to `true` (GET streams close on shutdown;
    /// POST streams finish their request instead).
    pub shutdown: Option<watch::Receiver<bool>>,
}

/// A streaming `text/event-stream` body.
pub struct SseBody {
    stream: Arc<SseStream>,
    source: Option<MessageStream>,
    queued: VecDeque<Bytes>,
    keepalive_every: Duration,
    keepalive: Pin<Box<Sleep>>,
    retry_on_close: Option<Duration>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
    /// An event going out in pieces (`fault: dribble`): nothing else is sent meanwhile.
    dribbling: Option<Dribble>,
    /// The stream is to be cut off (`fault: reset`) once what went before is out:
    /// whether hyper has had its turn to write that.
    cut: Option<(Cut, bool)>,
}

impl SseBody {
    /// A body that first sends `queued` (priming, replay), then events from `source`.
    pub fn new(stream: Arc<SseStream>, source: Option<MessageStream>, queued: Vec<Bytes>, options: SseOptions) -> Self {
        let shutdown: Pin<Box<dyn Future<Output = ()> + Send>> = match options.shutdown {
            Some(mut rx) => Box::pin(async move {
                let _ = rx.wait_for(|down| *down).await;
            }),
            None => Box::pin(std::future::pending()),
        };
        SseBody {
            stream,
            source,
            queued: queued.into(),
            keepalive_every: options.keepalive,
            keepalive: Box::pin(tokio::time::sleep(options.keepalive)),
            retry_on_close: options.retry_on_close,
            shutdown,
            done: false,
            dribbling: None,
            cut: None,
        }
    }

    fn reset_keepalive(&mut self) {
        let next = tokio::time::Instant::now() + self.keepalive_every;
        self.keepalive.as_mut().reset(next);
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(b) = self.queued.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if let Some(dribble) = self.dribbling.as_mut() {
            match dribble.poll_piece(cx) {
                Poll::Ready(Some(piece)) => return Poll::Ready(Some(Ok(Frame::data(piece)))),
                Poll::Ready(None) => self.dribbling = None,
                // Mid-event: no keep-alive or anything else may come in between.
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some((mut cut, flushed)) = self.cut.take() {
            if !flushed {
                // Pending once, so that hyper writes out the events before the cut
                // (a body error drops what it still holds).
                self.cut = Some((cut, true));
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.done = true;
            return Pin::new(&mut cut).poll_frame(cx);
        }
        if self.done {
            return Poll::Ready(None);
        }
        let Some(source) = self.source.as_mut() else {
            self.done = true;
            return Poll::Ready(None);
        };
        match source.as_mut().poll_next(cx) {
            Poll::Ready(Some(m)) => {
                self.reset_keepalive();
                let Some(by) = m.wire_fault() else {
                    let bytes = self.stream.record(|id| encode_event(id, &m));
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                };
                tracing::info!(rule = %by.rule, fault = by.fault.name(), "intercept: an SSE event goes out under a wire fault");
                match &by.fault {
                    WireFault::Malformed(data) => {
                        let bytes = self.stream.record(|id| encode_data(id, data));
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    WireFault::Reset => {
                        // Kept for resumption, as an event the client never got.
                        self.stream.record(|id| encode_event(id, &m));
                        self.cut = Some((Cut::new(&by.rule), false));
                    }
                    WireFault::Dribble { chunk, every } => {
                        let bytes = self.stream.record(|id| encode_event(id, &m));
                        self.dribbling = Some(Dribble::new(bytes, *chunk, *every));
                    }
                }
                // Its first piece, or the cut, right away.
                return self.poll_frame(cx);
            }
            Poll::Ready(None) => {
                self.done = true;
                self.source = None;
                self.stream.finish();
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            // The gateway is going away: end the stream (the source stays with the
            // session for as long as the session lives).
            self.done = true;
            if let Some(retry) = self.retry_on_close {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!("retry: {}\n\n", retry.as_millis()))))));
            }
            return Poll::Ready(None);
        }
        if self.keepalive.as_mut().poll(cx).is_ready() {
            self.reset_keepalive();
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n")))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queued.is_empty()
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.stream.detach(self.source.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_multiline_data() {
        let m = Message::parse(b"{\"jsonrpc\":\"2.0\",\n\"method\":\"x\"}".to_vec()).expect("valid");
        let e = encode_event("3-1", &m);
        assert_eq!(&e[..], b"id: 3-1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"x\"}\n\n");
        assert_eq!(&priming_event("3-0", Duration::from_millis(1500))[..], b"id: 3-0\nretry: 1500\ndata: \n\n");
    }
}
