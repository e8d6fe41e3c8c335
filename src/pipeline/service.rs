//! [`McpService`]: the service every stage wraps and every front calls, shared
//! rather than copied.
//!
//! A front calls the pipeline once per request, and a tower service is called
//! through `&mut self`, so each call starts from a clone. A boxed clonable service
//! (`BoxCloneSyncService`) clones by re-boxing, all the way down: one allocation per
//! stage per call before anything runs. `McpService` is an `Arc` instead: a clone is
//! one reference count. A stage ([`StageLayer`](super::StageLayer)) is called
//! through its `Arc` without any clone of the stage; another service (the router, a
//! `service_fn`) runs each call on a clone of itself, made ready first.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Service, ServiceExt};

use super::{McpReply, McpRequest};
use crate::error::GatewayError;

/// The service every stage wraps and every front calls (see the module docs).
#[derive(Clone)]
pub struct McpService(Arc<dyn Start>);

/// A service that starts a call from a shared handle (a stage keeps the handle in
/// the call's future, to finish the call with).
pub(crate) trait Start: Send + Sync + 'static {
    fn start(self: Arc<Self>, req: McpRequest) -> BoxFuture<'static, Result<McpReply, GatewayError>>;
}

/// A clonable service behind the `Arc`: each call runs on a clone of it, made ready
/// first (`oneshot`), as a tower service expects.
struct Erased<S>(S);

impl<S> Start for Erased<S>
where
    S: Service<McpRequest, Response = McpReply, Error = GatewayError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn start(self: Arc<Self>, req: McpRequest) -> BoxFuture<'static, Result<McpReply, GatewayError>> {
        Box::pin(self.0.clone().oneshot(req))
    }
}

impl McpService {
    /// Shares `service`.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<McpRequest, Response = McpReply, Error = GatewayError> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        McpService(Arc::new(Erased(service)))
    }

    /// A service that is already shared (a stage's node).
    pub(crate) fn shared(start: Arc<dyn Start>) -> Self {
        McpService(start)
    }

    /// Starts a call (what `oneshot` does, without `&mut` or a clone).
    pub fn start(&self, req: McpRequest) -> BoxFuture<'static, Result<McpReply, GatewayError>> {
        self.0.clone().start(req)
    }
}

impl Service<McpRequest> for McpService {
    type Response = McpReply;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<McpReply, GatewayError>>;

    /// Always ready: readiness is awaited inside each call, on its own clone.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: McpRequest) -> Self::Future {
        self.start(req)
    }
}

impl std::fmt::Debug for McpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("McpService")
    }
}
