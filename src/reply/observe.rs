//! Watching a reply stream for its end, for stages that report on whole calls
//! (metrics, access log).

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::MessageStream;
use crate::protocol::{Message, MessageKind};

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted without a reply (notifications, responses).
    Accepted,
    /// A successful result.
    Ok,
    /// A JSON-RPC error with this code.
    RpcError(i64),
    /// The gateway failed the call with this error label.
    Failed(&'static str),
    /// The stream ended without a final response.
    Incomplete,
    /// The client went away before the final response.
    Dropped,
}

impl Outcome {
    /// The outcome a final response stands for.
    pub fn of_message(m: &Message) -> Outcome {
        if !m.is_error() {
            return Outcome::Ok;
        }
        let code =
            m.to_value().and_then(|v| v.get("error").and_then(|e| e.get("code")).and_then(|c| c.as_i64())).unwrap_or(0);
        Outcome::RpcError(code)
    }

    /// A short label for metrics and logs.
    ///
    /// JSON-RPC error codes outside the reserved range (-32768 to -32000) are labelled
    /// `rpc_error_other`: an upstream cannot blow up label cardinality either.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Outcome::Accepted => "accepted".into(),
            Outcome::Ok => "ok".into(),
            Outcome::RpcError(code) if (-32768..=-32000).contains(code) => format!("rpc_error_{code}").into(),
            Outcome::RpcError(_) => "rpc_error_other".into(),
            Outcome::Failed(label) => (*label).into(),
            Outcome::Incomplete => "incomplete".into(),
            Outcome::Dropped => "dropped".into(),
        }
    }
}

type Done = Box<dyn FnOnce(Outcome, Option<&Message>) + Send>;

/// A stream that reports its outcome once.
pub struct Observed {
    inner: MessageStream,
    request_id: Option<String>,
    done: Option<Done>,
}

impl Observed {
    /// Wraps `inner`; `done` is called when the response to `request_id` passes,
    /// when the stream ends, or when it is dropped, whichever comes first.
    pub fn new<F: FnOnce(Outcome, Option<&Message>) + Send + 'static>(
        inner: MessageStream,
        request_id: Option<String>,
        done: F,
    ) -> Self {
        Observed { inner, request_id, done: Some(Box::new(done)) }
    }

    fn finish(&mut self, outcome: Outcome, message: Option<&Message>) {
        if let Some(done) = self.done.take() {
            done(outcome, message);
        }
    }
}

impl Stream for Observed {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(m)) => {
                if m.kind() == MessageKind::Response && m.id_key() == self.request_id.as_deref() {
                    let outcome = Outcome::of_message(m);
                    if let Some(done) = self.done.take() {
                        done(outcome, Some(m));
                    }
                }
            }
            Poll::Ready(None) => self.finish(Outcome::Incomplete, None),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish(Outcome::Dropped, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use parking_lot::Mutex;
    use std::sync::Arc;

    #[tokio::test]
    async fn reports_final_response_once() {
        let msgs = vec![
            Message::notification("notifications/progress", serde_json::json!({"progressToken": 1})),
            Message::parse(br#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"bad"}}"#.to_vec())
                .expect("valid"),
        ];
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let stream: MessageStream = Box::pin(futures_util::stream::iter(msgs));
        let mut observed = Observed::new(stream, Some("4".into()), move |o, _| seen2.lock().push(o));
        while observed.next().await.is_some() {}
        drop(observed);
        assert_eq!(*seen.lock(), vec![Outcome::RpcError(-32602)]);
    }

    #[tokio::test]
    async fn reports_drop_before_response() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let stream: MessageStream = Box::pin(futures_util::stream::pending());
        let observed = Observed::new(stream, Some("1".into()), move |o, _| seen2.lock().push(o));
        drop(observed);
        assert_eq!(*seen.lock(), vec![Outcome::Dropped]);
    }
}
