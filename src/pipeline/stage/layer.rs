//! [`StageLayer`]: a [`Stage`] as a `tower::Layer`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Layer, Service, ServiceExt};

use super::stream::Tapped;
use super::{CallEnd, CallInfo, Carrier, Direction, Flow, MessageContext, ReplyStart, Stage, Verdict};
use crate::error::GatewayError;
use crate::pipeline::{McpReply, McpRequest, Outcome, ReplyBody};

/// Sends a request to the service below a stage (for answers a stage gives in place
/// of the client, and for requests whose verdict came later).
pub(super) type Below = Arc<dyn Fn(McpRequest) -> BoxFuture<'static, Result<McpReply, GatewayError>> + Send + Sync>;

// === impl StageLayer ===

/// Wraps a service in a [`Stage`].
#[derive(Clone)]
pub struct StageLayer<T> {
    stage: T,
}

impl<T> StageLayer<T> {
    /// A layer running `stage`.
    pub fn new(stage: T) -> Self {
        StageLayer { stage }
    }
}

impl<S, T> Layer<S> for StageLayer<T>
where
    S: Service<McpRequest, Response = McpReply, Error = GatewayError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    T: Stage,
{
    type Service = StageService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        let below_inner = inner.clone();
        let below: Below = Arc::new(move |req| Box::pin(below_inner.clone().oneshot(req)));
        StageService { inner, stage: self.stage.clone(), below }
    }
}

// === impl StageService ===

/// The service of [`StageLayer`].
#[derive(Clone)]
pub struct StageService<S, T> {
    inner: S,
    stage: T,
    below: Below,
}

impl<S, T> Service<McpRequest> for StageService<S, T>
where
    S: Service<McpRequest, Response = McpReply, Error = GatewayError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    T: Stage,
{
    type Response = McpReply;
    type Error = GatewayError;
    type Future = ResponseFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: McpRequest) -> Self::Future {
        let call = self.stage.begin(&req);
        let info = CallInfo::of(&req);
        let flow = self.stage.on_request(&call, &info, req);
        let finish = Finish(Some(Parts { stage: self.stage.clone(), call, info, below: self.below.clone() }));
        match flow {
            Flow::Now(Verdict::Pass(req)) => {
                ResponseFuture { state: State::Calling { inner: self.inner.call(req) }, finish: Some(finish) }
            }
            Flow::Now(verdict) => ResponseFuture::boxed(Box::pin(async move { finish.settle(verdict) })),
            Flow::Later(decision) => ResponseFuture::boxed(Box::pin(async move {
                match decision.await {
                    Verdict::Pass(req) => {
                        let below = finish.below();
                        let result = below(req).await;
                        finish.reply(result).await
                    }
                    verdict => finish.settle(verdict),
                }
            })),
        }
    }
}

// === impl Finish ===

/// What a call's future keeps to finish it; dropped unfinished (the client went
/// away), the call ends as `Dropped`.
struct Finish<T: Stage>(Option<Parts<T>>);

impl<T: Stage> Drop for Finish<T> {
    fn drop(&mut self) {
        if let Some(parts) = self.0.take() {
            parts.end(&Outcome::Dropped, None, None);
        }
    }
}

impl<T: Stage> Finish<T> {
    fn take(mut self) -> Parts<T> {
        match self.0.take() {
            Some(parts) => parts,
            // Built with `Some` and taken once, by value.
            None => unreachable!("a call finished twice"),
        }
    }

    fn below(&self) -> Below {
        match &self.0 {
            Some(parts) => parts.below.clone(),
            None => unreachable!("a call finished twice"),
        }
    }

    fn settle(self, verdict: Verdict<McpRequest>) -> Result<McpReply, GatewayError> {
        self.take().settle(verdict)
    }

    fn reply(self, result: Result<McpReply, GatewayError>) -> BoxFuture<'static, Result<McpReply, GatewayError>> {
        self.take().reply(result)
    }

    fn reply_now(
        self,
        result: Result<McpReply, GatewayError>,
    ) -> Result<Result<McpReply, GatewayError>, BoxFuture<'static, Result<McpReply, GatewayError>>> {
        self.take().reply_now(result)
    }
}

/// What a call's future keeps to finish it.
struct Parts<T: Stage> {
    stage: T,
    call: T::Call,
    info: CallInfo,
    below: Below,
}

impl<T: Stage> Parts<T> {
    /// A request the stage did not pass on: its reply.
    fn settle(self, verdict: Verdict<McpRequest>) -> Result<McpReply, GatewayError> {
        let is_request = self.info.request_id.is_some();
        let (reply, outcome) = match verdict {
            Verdict::Fail(e) => {
                self.failed(&e);
                return Err(e);
            }
            Verdict::Answer(m) if is_request => {
                let outcome = Outcome::of_message(&m);
                self.stage.end(
                    &self.call,
                    &CallEnd { upstream: None, new_session: None, outcome: &outcome, response: Some(&m), error: None },
                );
                return Ok(McpReply::message(m));
            }
            // A request dropped gets no answer: its reply is an empty stream.
            Verdict::Drop if is_request => {
                (McpReply::stream(Box::pin(futures_util::stream::empty())), Outcome::Incomplete)
            }
            Verdict::Pass(_) | Verdict::Drop | Verdict::Answer(_) => (McpReply::accepted(), Outcome::Accepted),
        };
        self.end(&outcome, None, None);
        Ok(reply)
    }

    fn end(self, outcome: &Outcome, upstream: Option<&str>, response: Option<&crate::protocol::Message>) {
        self.stage.end(&self.call, &CallEnd { upstream, new_session: None, outcome, response, error: None });
    }

    fn failed(self, e: &GatewayError) {
        let end = CallEnd {
            upstream: None,
            new_session: None,
            outcome: &Outcome::Failed(e.label()),
            response: None,
            error: Some(e),
        };
        self.stage.end(&self.call, &end);
    }

    /// The reply from below, through the stage.
    fn reply(self, result: Result<McpReply, GatewayError>) -> BoxFuture<'static, Result<McpReply, GatewayError>> {
        match self.reply_now(result) {
            Ok(done) => Box::pin(std::future::ready(done)),
            Err(later) => later,
        }
    }

    /// The reply from below, through the stage: done, or a future when the stage's
    /// verdict on a JSON reply comes later.
    fn reply_now(
        self,
        result: Result<McpReply, GatewayError>,
    ) -> Result<Result<McpReply, GatewayError>, BoxFuture<'static, Result<McpReply, GatewayError>>> {
        let mut reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                self.failed(&e);
                return Ok(Err(e));
            }
        };
        self.stage.on_reply(
            &self.call,
            &ReplyStart { upstream: reply.upstream.as_deref(), new_session: reply.new_session() },
        );
        let body = std::mem::replace(&mut reply.body, ReplyBody::Accepted);
        match body {
            ReplyBody::Accepted => {
                self.ended(&reply, &Outcome::Accepted, None);
                Ok(Ok(reply))
            }
            ReplyBody::Stream(s) => {
                let upstream = reply.upstream.clone();
                let new_session = reply.new_session().cloned();
                let tapped = Tapped::new(s, self.stage, self.call, self.info, upstream, new_session, self.below);
                reply.body = ReplyBody::Stream(Box::pin(tapped));
                Ok(Ok(reply))
            }
            ReplyBody::Message(m) => {
                let ctx = MessageContext {
                    direction: Direction::ServerToClient,
                    carrier: Carrier::Reply,
                    call: &self.info,
                    upstream: reply.upstream.as_deref(),
                };
                match self.stage.on_message(&self.call, &ctx, m) {
                    Flow::Now(verdict) => Ok(Ok(self.apply(reply, verdict))),
                    Flow::Later(fut) => {
                        let finish = Finish(Some(self));
                        Err(Box::pin(async move {
                            let verdict = fut.await;
                            Ok(finish.take().apply(reply, verdict))
                        }))
                    }
                }
            }
        }
    }

    /// A stage's verdict on a JSON reply.
    fn apply(self, mut reply: McpReply, verdict: Verdict) -> McpReply {
        match verdict {
            Verdict::Pass(m) => {
                self.ended(&reply, &Outcome::of_message(&m), Some(&m));
                reply.body = ReplyBody::Message(m);
            }
            Verdict::Fail(e) => {
                let m = e.to_message(self.info.request_id.as_deref());
                self.ended(&reply, &Outcome::of_message(&m), Some(&m));
                reply.body = ReplyBody::Message(m);
            }
            Verdict::Drop | Verdict::Answer(_) => {
                self.ended(&reply, &Outcome::Incomplete, None);
                reply.body = ReplyBody::Stream(Box::pin(futures_util::stream::empty()));
            }
        }
        reply
    }

    fn ended(self, reply: &McpReply, outcome: &Outcome, response: Option<&crate::protocol::Message>) {
        let end = CallEnd {
            upstream: reply.upstream.as_deref(),
            new_session: reply.new_session(),
            outcome,
            response,
            error: None,
        };
        self.stage.end(&self.call, &end);
    }
}

// === impl ResponseFuture ===

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] inner: F },
        Boxed { fut: BoxFuture<'static, Result<McpReply, GatewayError>> },
        Done,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`StageService`].
    pub struct ResponseFuture<F, T: Stage> {
        #[pin]
        state: State<F>,
        finish: Option<Finish<T>>,
    }
}

impl<F, T: Stage> ResponseFuture<F, T> {
    fn boxed(fut: BoxFuture<'static, Result<McpReply, GatewayError>>) -> Self {
        ResponseFuture { state: State::Boxed { fut }, finish: None }
    }
}

impl<F, T> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<McpReply, GatewayError>>,
    T: Stage,
{
    type Output = Result<McpReply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { inner } => {
                    let result = std::task::ready!(inner.poll(cx));
                    let Some(finish) = this.finish.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    match finish.reply_now(result) {
                        Ok(done) => {
                            this.state.set(State::Done);
                            return Poll::Ready(done);
                        }
                        Err(later) => this.state.set(State::Boxed { fut: later }),
                    }
                }
                StateProj::Boxed { fut } => {
                    let out = std::task::ready!(fut.as_mut().poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => {
                    return Poll::Ready(Err(GatewayError::Internal(
                        "a stage's future was polled after it completed".into(),
                    )))
                }
            }
        }
    }
}
