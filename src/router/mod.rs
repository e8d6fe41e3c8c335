//! The innermost service: maps a route to its upstream, creates sessions on
//! `initialize`, and hands each request to the session's upstream side.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Deserialize;
use tower::Service;

use crate::bridge::Bridge;
use crate::error::GatewayError;
use futures_util::future::BoxFuture;

use crate::pipeline::{McpReply, McpRequest, McpService, Outcome, RequestKind, Start};
use crate::protocol::{Message, ProtocolVersion};
use crate::session::{log_tag, mint_id, Session, SessionStore, StreamRegistry};

/// How SSE streams of new sessions are bounded.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Events kept per stream.
    pub buffer_events: usize,
    /// Bytes of events kept per stream.
    pub buffer_bytes: usize,
    /// Finished streams kept per session.
    pub retained_streams: usize,
}

/// Route path -> (upstream name, the bridge in front of that upstream).
pub type RouteTable = HashMap<Arc<str>, (Arc<str>, Arc<Bridge>)>;

/// Hands requests to upstream sessions. It knows each route's [`Bridge`] (the
/// adapter that serves every revision from one upstream), never the upstream's kind.
#[derive(Clone)]
pub struct Router {
    routes: Arc<RouteTable>,
    store: Arc<SessionStore>,
    limits: StreamLimits,
}

impl Router {
    /// A router over `routes`, keeping sessions in `store`.
    pub fn new(routes: RouteTable, store: Arc<SessionStore>, limits: StreamLimits) -> Self {
        Router { routes: Arc::new(routes), store, limits }
    }

    async fn initialize(&self, req: McpRequest, m: Message) -> Result<McpReply, GatewayError> {
        let (name, bridge) = self
            .routes
            .get(&req.route)
            .cloned()
            .ok_or_else(|| GatewayError::Internal(format!("no upstream for route {}", req.route)))?;
        // Taken before anything is opened upstream; given back when the session ends.
        let client = req.client_key().map(Arc::<str>::from);
        let client_slot = self.store.client_slot(client.as_ref())?;
        let id = mint_id();
        // The upstream side logs the session by its tag: the id is a credential.
        let tag = log_tag(&id);
        let upstream_session = bridge.open_session(&tag).await?;
        let streams = StreamRegistry::new(self.limits.buffer_events, self.limits.retained_streams)
            .with_buffer_bytes(self.limits.buffer_bytes);
        let session = Arc::new(
            Session::new(id, req.route.clone(), name.clone(), upstream_session, streams)
                .with_client_slot(client_slot)
                .with_owner(req.context.principal().map(|p| p.id.clone())),
        );
        session.set_version(requested_version(&m).unwrap_or(req.version));
        self.store.insert(session.clone());
        let reply = match session.upstream().send(m.clone(), &req.headers).await {
            Ok(reply) => reply,
            Err(e) => {
                self.store.end(session.id()).await;
                return Err(e);
            }
        };
        let store = self.store.clone();
        let observed = session.clone();
        let reply = reply.observe(m.id_key().map(str::to_owned), move |outcome, message| {
            if let Some(v) = message.and_then(negotiated_version) {
                observed.set_version(v);
            }
            if outcome != Outcome::Ok {
                tracing::info!(session = observed.tag(), outcome = %outcome.label(), "initialize failed; session ended");
                let id = observed.id().to_owned();
                tokio::spawn(async move { store.end(&id).await });
            }
        });
        let mut reply = reply.with_new_session(session);
        reply.upstream = Some(name);
        Ok(reply)
    }
}

impl Router {
    /// A stateless (2026-07-28) request: no session; the route's upstream serves it.
    async fn stateless(&self, req: McpRequest) -> Result<McpReply, GatewayError> {
        let (name, bridge) = self
            .routes
            .get(&req.route)
            .cloned()
            .ok_or_else(|| GatewayError::Internal(format!("no upstream for route {}", req.route)))?;
        let RequestKind::Message(m) = req.kind else {
            return Err(GatewayError::Internal("a stateless request without a message".into()));
        };
        let principal = req.context.principal().map(|p| p.id.clone());
        let mut reply = bridge.serve(m, &req.headers, req.context.client_key().map(Arc::from), principal).await?;
        reply.upstream = Some(name);
        Ok(reply)
    }
}

fn requested_version(m: &Message) -> Option<ProtocolVersion> {
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    ProtocolVersion::parse(&m.params::<Params>()?.protocol_version).filter(|v| !v.is_stateless())
}

fn negotiated_version(m: &Message) -> Option<ProtocolVersion> {
    #[derive(Deserialize)]
    struct Result {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    #[derive(Deserialize)]
    struct Envelope {
        result: Result,
    }
    let env: Envelope = serde_json::from_slice(m.bytes()).ok()?;
    ProtocolVersion::parse(&env.result.protocol_version)
}

impl Service<McpRequest> for Router {
    type Response = McpReply;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<McpReply, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: McpRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.serve(req).await })
    }
}

/// The router as the pipeline's innermost service, called through its `Arc`.
impl Start for Router {
    fn start(self: Arc<Self>, req: McpRequest) -> BoxFuture<'static, Result<McpReply, GatewayError>> {
        Box::pin(async move { self.serve(req).await })
    }
}

impl Router {
    /// The router as the service the pipeline wraps.
    pub fn into_service(self) -> McpService {
        McpService::shared(Arc::new(self))
    }

    async fn serve(&self, req: McpRequest) -> Result<McpReply, GatewayError> {
        let Some(session) = req.session.clone() else {
            if req.version.is_stateless() {
                return self.stateless(req).await;
            }
            return match &req.kind {
                RequestKind::Message(m) if m.method() == Some("initialize") && m.is_request() => {
                    let m = m.clone();
                    self.initialize(req, m).await
                }
                _ => Err(GatewayError::MissingSession),
            };
        };
        let name = session.upstream_name().clone();
        let mut reply = match req.kind {
            RequestKind::Message(m) => session.upstream().send(m, &req.headers).await?,
            RequestKind::OpenStream { resume: Some(last) } => McpReply::resumed(session.streams.resume(&last)?),
            RequestKind::OpenStream { resume: None } => match session.streams.reattach_get()? {
                Some(reattached) => McpReply::resumed(reattached),
                None => session.upstream().open_stream(&req.headers).await?,
            },
            RequestKind::EndSession => {
                self.store.end(session.id()).await;
                McpReply::accepted()
            }
        };
        reply.upstream = Some(name);
        Ok(reply)
    }
}
