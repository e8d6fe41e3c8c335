//! Bodies for faults on the client's wire (`intercept`'s `fault: reset` and
//! `fault: dribble`; `malformed` needs no body of its own).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::time::Sleep;

use super::response::BodyError;

/// Why a connection was cut off: a rule said so.
#[derive(Debug)]
pub struct CutByRule(pub Box<str>);

impl std::fmt::Display for CutByRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection reset by intercept rule {} (fault: reset)", self.0)
    }
}

impl std::error::Error for CutByRule {}

/// A body that fails at once: hyper cuts the connection off (HTTP/1.1) or resets
/// the stream (HTTP/2) without a complete answer.
pub struct Cut(Option<CutByRule>);

impl Cut {
    /// Cut by `rule`.
    pub fn new(rule: &str) -> Self {
        Cut(Some(CutByRule(rule.into())))
    }
}

impl Body for Cut {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Poll::Ready(self.0.take().map(|e| Err(Box::new(e) as BodyError)))
    }
}

/// Bytes given out in pieces of `chunk`, `every` apart (the first at once).
pub struct Dribble {
    rest: Bytes,
    chunk: usize,
    every: Duration,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Dribble {
    /// `bytes` in pieces.
    pub fn new(bytes: Bytes, chunk: usize, every: Duration) -> Self {
        Dribble { rest: bytes, chunk: chunk.max(1), every, wait: None }
    }

    /// The next piece, once its time has come; `None` when all are out.
    pub fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let piece = self.rest.split_to(self.chunk.min(self.rest.len()));
        self.wait = (!self.rest.is_empty()).then(|| Box::pin(tokio::time::sleep(self.every)));
        Poll::Ready(Some(piece))
    }
}

impl Body for Dribble {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.poll_piece(cx).map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_dribble_gives_its_bytes_in_pieces_apart() {
        let started = tokio::time::Instant::now();
        let mut body = Dribble::new(Bytes::from_static(b"abcdefghij"), 4, Duration::from_millis(100));
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("no error").into_data().expect("data");
            pieces.push((String::from_utf8_lossy(&data).into_owned(), started.elapsed().as_millis()));
        }
        assert_eq!(pieces, [("abcd".to_owned(), 0), ("efgh".to_owned(), 100), ("ij".to_owned(), 200)]);
    }

    #[tokio::test]
    async fn a_cut_body_fails_and_names_its_rule() {
        let mut body = Cut::new("cut-echo");
        let err = body.frame().await.expect("a frame").expect_err("an error");
        assert_eq!(err.to_string(), "connection reset by intercept rule cut-echo (fault: reset)");
        assert!(body.frame().await.is_none());
    }
}
