//! [`StageLayer`]: a [`Stage`] as a `tower::Layer`.
//!
//! A stage and the service below it are one shared node: a call holds the node's
//! `Arc` (one reference count) to reach the stage again when the reply comes, and
//! to send requests below it (answers a stage gives in place of the client,
//! requests whose verdict came later). Nothing is cloned per call besides.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::stream::Tapped;
use super::{CallEnd, CallInfo, Carrier, Direction, Flow, MessageContext, ReplyStart, Stage, Verdict};
use crate::error::GatewayError;
use crate::pipeline::service::Start;
use crate::pipeline::{McpReply, McpRequest, McpService, Outcome, ReplyBody};

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

impl<T: Stage> StageLayer<T> {
    /// The stage over `inner`, as the pipeline's service type.
    pub fn service(&self, inner: McpService) -> McpService {
        McpService::shared(Arc::new(Node { stage: self.stage.clone(), below: inner }))
    }
}

impl<T: Stage> Layer<McpService> for StageLayer<T> {
    type Service = StageService<T>;

    fn layer(&self, inner: McpService) -> Self::Service {
        StageService(Arc::new(Node { stage: self.stage.clone(), below: inner }))
    }
}

/// A stage and the service below it.
pub(super) struct Node<T> {
    pub(super) stage: T,
    /// The service below the stage.
    pub(super) below: McpService,
}

// === impl StageService ===

/// The service of [`StageLayer`] (see also [`StageLayer::service`]).
pub struct StageService<T>(Arc<Node<T>>);

impl<T> Clone for StageService<T> {
    fn clone(&self) -> Self {
        StageService(self.0.clone())
    }
}

impl<T: Stage> Service<McpRequest> for StageService<T> {
    type Response = McpReply;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<McpReply, GatewayError>>;

    /// Always ready: the service below is an [`McpService`], which is.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: McpRequest) -> Self::Future {
        self.0.clone().start(req)
    }
}

impl<T: Stage> From<StageService<T>> for McpService {
    fn from(service: StageService<T>) -> McpService {
        McpService::shared(service.0)
    }
}

impl<T: Stage> Start for Node<T> {
    fn start(self: Arc<Self>, req: McpRequest) -> BoxFuture<'static, Result<McpReply, GatewayError>> {
        let call = self.stage.begin(&req);
        let info = CallInfo::of(&req);
        let flow = self.stage.on_request(&call, &info, req);
        match flow {
            Flow::Now(Verdict::Pass(req)) => {
                let inner = self.below.start(req);
                let finish = Finish(Some(Parts { node: self, call, info }));
                Box::pin(ResponseFuture { state: State::Calling { inner }, finish: Some(finish) })
            }
            Flow::Now(verdict) => {
                let finish = Finish(Some(Parts { node: self, call, info }));
                Box::pin(std::future::ready(finish.settle(verdict)))
            }
            Flow::Later(decision) => {
                let finish = Finish(Some(Parts { node: self, call, info }));
                Box::pin(async move {
                    match decision.await {
                        Verdict::Pass(req) => {
                            let result = finish.below().start(req).await;
                            finish.reply(result).await
                        }
                        verdict => finish.settle(verdict),
                    }
                })
            }
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

    fn below(&self) -> McpService {
        match &self.0 {
            Some(parts) => parts.node.below.clone(),
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
    node: Arc<Node<T>>,
    call: T::Call,
    info: CallInfo,
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
                self.node.stage.end(
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
        self.node.stage.end(&self.call, &CallEnd { upstream, new_session: None, outcome, response, error: None });
    }

    fn failed(self, e: &GatewayError) {
        let end = CallEnd {
            upstream: None,
            new_session: None,
            outcome: &Outcome::Failed(e.label()),
            response: None,
            error: Some(e),
        };
        self.node.stage.end(&self.call, &end);
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
        self.node.stage.on_reply(
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
                let tapped = Tapped::new(s, self.node, self.call, self.info, upstream, new_session);
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
                match self.node.stage.on_message(&self.call, &ctx, m) {
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
        self.node.stage.end(&self.call, &end);
    }
}

// === impl ResponseFuture ===

enum State {
    /// The call is below the stage.
    Calling {
        inner: BoxFuture<'static, Result<McpReply, GatewayError>>,
    },
    /// The stage's verdict on the reply comes later.
    Boxed {
        fut: BoxFuture<'static, Result<McpReply, GatewayError>>,
    },
    Done,
}

/// A passed request's future: the call below, then the reply through the stage.
struct ResponseFuture<T: Stage> {
    state: State,
    finish: Option<Finish<T>>,
}

impl<T: Stage> Future for ResponseFuture<T> {
    type Output = Result<McpReply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Calling { inner } => {
                    let result = std::task::ready!(inner.as_mut().poll(cx));
                    let Some(finish) = this.finish.take() else {
                        this.state = State::Done;
                        return Poll::Ready(result);
                    };
                    match finish.reply_now(result) {
                        Ok(done) => {
                            this.state = State::Done;
                            return Poll::Ready(done);
                        }
                        Err(later) => this.state = State::Boxed { fut: later },
                    }
                }
                State::Boxed { fut } => {
                    let out = std::task::ready!(fut.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(out);
                }
                State::Done => {
                    return Poll::Ready(Err(GatewayError::Internal(
                        "a stage's future was polled after it completed".into(),
                    )))
                }
            }
        }
    }
}
