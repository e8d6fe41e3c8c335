//! A layer for stages that report on whole calls (metrics, access log): it tells a
//! [`CallObserver`] when a call begins and, once the reply is complete (for a stream,
//! when the final response has passed), how it ended.
//!
//! ```
//! use shadowcat::pipeline::{CallEnd, CallObserver, McpReply, McpRequest, McpService, ObserveLayer};
//! use shadowcat::protocol::{Message, ProtocolVersion};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! #[derive(Clone)]
//! struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
//! impl CallObserver for Count {
//!     type Call = ();
//!     fn begin(&self, _req: &McpRequest) {}
//!     fn end(&self, _call: (), _end: CallEnd<'_>) {
//!         self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let seen = Count(Default::default());
//! let inner = McpService::new(service_fn(|_req: McpRequest| async { Ok(McpReply::accepted()) }));
//! let svc = ObserveLayer::new(seen.clone()).layer(inner);
//! let msg = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()).unwrap();
//! svc.oneshot(McpRequest::message(msg, "/mcp".into(), ProtocolVersion::LATEST)).await.unwrap();
//! assert_eq!(seen.0.load(std::sync::atomic::Ordering::SeqCst), 1);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{McpReply, McpRequest, Outcome};
use crate::error::GatewayError;
use crate::protocol::Message;

/// How a call ended, as an observer sees it.
pub struct CallEnd<'a> {
    /// The upstream that served it, if it got that far.
    pub upstream: Option<&'a str>,
    /// The tag of the session the call created (`initialize`), if any: never its id
    /// (see `Session::tag`).
    pub new_session: Option<&'a str>,
    /// Its outcome.
    pub outcome: &'a Outcome,
    /// The final response, when there was one.
    pub response: Option<&'a Message>,
}

/// What a call-reporting stage does at the start and end of each call.
pub trait CallObserver: Clone + Send + Sync + 'static {
    /// What the stage keeps about a call between its start and its end.
    type Call: Send + 'static;
    /// A call starts.
    fn begin(&self, req: &McpRequest) -> Self::Call;
    /// The call ended.
    fn end(&self, call: Self::Call, end: CallEnd<'_>);
}

// === impl ObserveLayer ===

/// Wraps a service so that `O` sees every call.
#[derive(Clone)]
pub struct ObserveLayer<O> {
    observer: O,
}

impl<O> ObserveLayer<O> {
    /// A layer reporting to `observer`.
    pub fn new(observer: O) -> Self {
        ObserveLayer { observer }
    }
}

impl<S, O: Clone> Layer<S> for ObserveLayer<O> {
    type Service = Observe<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, observer: self.observer.clone() }
    }
}

// === impl Observe ===

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> Service<McpRequest> for Observe<S, O>
where
    S: Service<McpRequest, Response = McpReply, Error = GatewayError>,
    O: CallObserver,
{
    type Response = McpReply;
    type Error = GatewayError;
    type Future = ResponseFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: McpRequest) -> Self::Future {
        let call = self.observer.begin(&req);
        let request_id = req.msg().and_then(|m| m.id_key()).map(str::to_owned);
        ResponseFuture { inner: self.inner.call(req), state: Some((self.observer.clone(), call, request_id)) }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Observe`].
    pub struct ResponseFuture<F, O: CallObserver> {
        #[pin]
        inner: F,
        state: Option<(O, O::Call, Option<String>)>,
    }
}

impl<F, O> Future for ResponseFuture<F, O>
where
    F: Future<Output = Result<McpReply, GatewayError>>,
    O: CallObserver,
{
    type Output = Result<McpReply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some((observer, call, request_id)) = this.state.take() else {
            return Poll::Ready(result);
        };
        Poll::Ready(match result {
            Ok(reply) => {
                let upstream = reply.upstream.clone();
                let new_session = reply.new_session.as_ref().map(|s| s.tag().to_owned());
                Ok(reply.observe(request_id, move |outcome, response| {
                    let end = CallEnd {
                        upstream: upstream.as_deref(),
                        new_session: new_session.as_deref(),
                        outcome: &outcome,
                        response,
                    };
                    observer.end(call, end);
                }))
            }
            Err(err) => {
                let outcome = Outcome::Failed(err.label());
                observer.end(call, CallEnd { upstream: None, new_session: None, outcome: &outcome, response: None });
                Err(err)
            }
        })
    }
}
