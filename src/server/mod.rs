//! The Streamable HTTP front: decodes POST/GET/DELETE into [`McpRequest`]s, runs the
//! transport checks, calls the pipeline and renders replies and errors.

pub mod admin;
mod checks;
mod cors;
mod listen;
mod modern;
mod post;
mod response;
mod service;
pub mod sse;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use tokio::sync::watch;

pub use checks::{OriginPolicy, LAST_EVENT_ID, SESSION_HEADER, VERSION_HEADER};
pub use listen::{
    serve, serve_with, Acceptor, ConnLimits, ConnectionGate, HttpService, PeerAddr, PlainTcp, MIN_HEADER_BYTES,
};
pub use response::ResponseBody;
pub use service::{http_service, FrontService, Shed, ShedLayer};

/// An endpoint on the MCP listener that is not an MCP endpoint (protected resource
/// metadata, for one): it gets the request with its body read (bounded by
/// `server.max_body_bytes`) after the `Origin`/`Host` check.
pub type Endpoint = tower::util::BoxCloneSyncService<Request<Bytes>, Response<ResponseBody>, std::convert::Infallible>;

use crate::error::GatewayError;
use crate::pipeline::{
    McpRequest, McpService, MessageStream, Refusal, RefusalObservers, RequestContext, RequestKind, Transport,
};
use crate::protocol::{Message, ProtocolVersion};
use crate::session::{Session, SessionStore};
use response::{error_response, json_response, sse_response};
use sse::{SseBody, SseOptions};

/// Settings of the front, from `server:` in the config.
#[derive(Clone)]
pub struct FrontSettings {
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// SSE keep-alive interval.
    pub sse_keepalive: Duration,
    /// `retry` advised to 2025-11-25+ clients.
    pub sse_retry: Duration,
}

/// The HTTP front.
pub struct Front {
    service: McpService,
    store: Arc<SessionStore>,
    routes: HashMap<String, Arc<str>>,
    policy: OriginPolicy,
    settings: FrontSettings,
    shutdown: watch::Receiver<bool>,
    refusals: RefusalObservers,
    endpoints: HashMap<String, Endpoint>,
    /// Some upstream tells its server who the client is (`forwarded: true`).
    hand_down_peer: bool,
}

impl Front {
    /// A front serving `routes` (paths) through `service`.
    pub fn new(
        service: McpService,
        store: Arc<SessionStore>,
        routes: impl IntoIterator<Item = String>,
        policy: OriginPolicy,
        settings: FrontSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let routes = routes.into_iter().map(|p| (p.clone(), Arc::from(p.as_str()))).collect();
        let refusals = RefusalObservers::default();
        let endpoints = HashMap::new();
        Front { service, store, routes, policy, settings, shutdown, refusals, endpoints, hand_down_peer: false }
    }

    /// Hands the peer's address down in [`PEER_HEADER`](crate::upstream::PEER_HEADER)
    /// (for upstreams with `forwarded: true`); a client's own is always replaced.
    pub fn with_peer_handed_down(mut self, on: bool) -> Self {
        self.hand_down_peer = on;
        self
    }

    /// The client's headers as the pipeline gets them: as sent, but for the peer
    /// header, which is the gateway's. Taken out of `parts`, not copied: once the
    /// request is in the pipeline, the front reads no header of it.
    fn pipeline_headers(&self, parts: &mut http::request::Parts) -> http::HeaderMap {
        let mut headers = std::mem::take(&mut parts.headers);
        if self.hand_down_peer {
            headers.remove(crate::upstream::PEER_HEADER);
            let peer = parts.extensions.get::<PeerAddr>().and_then(|p| http::HeaderValue::from_str(&p.1).ok());
            if let Some(peer) = peer {
                headers.insert(crate::upstream::PEER_HEADER, peer);
            }
        }
        headers
    }

    /// Serves `endpoint` at `path`, beside the MCP endpoints.
    pub fn with_endpoint(mut self, path: impl Into<String>, endpoint: Endpoint) -> Self {
        self.endpoints.insert(path.into(), endpoint);
        self
    }

    /// A request for an endpoint that is not an MCP one.
    async fn endpoint<B>(&self, endpoint: Endpoint, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(e) = self.policy.check(req.headers(), req.uri().host()) {
            return self.refuse(&req, &e, None);
        }
        let (parts, body) = req.into_parts();
        let limit = self.settings.max_body_bytes;
        let bytes = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return error_response(&GatewayError::PayloadTooLarge { limit }, None),
        };
        match tower::ServiceExt::oneshot(endpoint, Request::from_parts(parts, bytes)).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// Tells `refusals` of every request refused before the pipeline.
    pub fn with_refusals(mut self, refusals: RefusalObservers) -> Self {
        self.refusals = refusals;
        self
    }

    /// An error answered before the pipeline: observers hear of it first.
    fn refuse<B>(&self, req: &Request<B>, e: &GatewayError, id: Option<&str>) -> Response<ResponseBody> {
        self.tell_refused(req.method(), req.uri().path(), req.headers(), req.extensions(), e, id);
        error_response(e, id)
    }

    fn tell_refused(
        &self,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
        e: &GatewayError,
        id: Option<&str>,
    ) {
        if self.refusals.is_empty() {
            return;
        }
        let peer = client_of(extensions);
        let refusal = Refusal {
            error: e,
            transport: Transport::Http,
            peer: peer.as_deref(),
            method: method.as_str(),
            path,
            headers,
            id,
        };
        self.refusals.notify(&refusal);
    }

    /// Serves one HTTP request. Never fails: every error becomes a response. A
    /// browser's CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) is answered here; every answer to an allowed
    /// `Origin` says so and exposes the headers an MCP client reads.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let origin =
            origin.filter(|o| o.to_str().is_ok_and(|o| self.policy.origin_allowed(&o.trim().to_ascii_lowercase())));
        if req.method() == Method::OPTIONS && req.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD) {
            return self.preflight(&req, origin);
        }
        let mut resp = self.serve(req).await;
        if let Some(origin) = origin {
            cors::allow(resp.headers_mut(), origin);
            resp.headers_mut().insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, cors::exposed());
        }
        resp
    }

    /// A CORS preflight: 204 with what may be sent, for an allowed origin and a path
    /// served here; else refused as the request itself would be.
    fn preflight<B>(&self, req: &Request<B>, origin: Option<http::HeaderValue>) -> Response<ResponseBody> {
        let path = req.uri().path();
        if !self.routes.contains_key(path) && !self.endpoints.contains_key(path) {
            return self.refuse(req, &GatewayError::NoRoute(path.to_owned()), None);
        }
        let Some(origin) = origin else {
            let e = match self.policy.check(req.headers(), req.uri().host()) {
                Err(e) => e,
                Ok(()) => GatewayError::Forbidden("a CORS preflight needs an Origin".into()),
            };
            return self.refuse(req, &e, None);
        };
        let mut resp = Response::new(response::full(Bytes::new()));
        *resp.status_mut() = http::StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        cors::allow(h, origin);
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            http::HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, cors::allowed_headers(req.headers()));
        h.insert(http::header::ACCESS_CONTROL_MAX_AGE, http::HeaderValue::from_static("600"));
        resp
    }

    async fn serve<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let received = Instant::now();
        if !self.endpoints.is_empty() {
            if let Some(endpoint) = self.endpoints.get(req.uri().path()).cloned() {
                return self.endpoint(endpoint, req).await;
            }
        }
        let Some(route) = self.routes.get(req.uri().path()).cloned() else {
            return self.refuse(&req, &GatewayError::NoRoute(req.uri().path().to_owned()), None);
        };
        let checked = self
            .policy
            .check(req.headers(), req.uri().host())
            .and_then(|_| checks::check_method(req.method()))
            .and_then(|_| checks::check_accept(req.method(), req.headers()));
        if let Err(e) = checked {
            return self.refuse(&req, &e, None);
        }
        if *req.method() != Method::POST && modern::header_is_stateless(req.headers()) {
            let e = GatewayError::MethodNotAllowed(format!(
                "{} is not part of protocol version 2026-07-28: every request is a POST",
                req.method()
            ));
            let mut resp = self.refuse(&req, &e, None);
            resp.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return resp;
        }
        let context = RequestContext::new(Transport::Http, client_of(req.extensions()));
        let (mut parts, body) = req.into_parts();
        let result = match parts.method {
            Method::POST => self.post(&mut parts, body, route, received, context).await,
            Method::GET => self.get(&mut parts, route, received, context).await,
            _ => self.delete(&mut parts, route, received, context).await,
        };
        result.unwrap_or_else(|f| {
            if f.before_pipeline {
                let (method, path) = (&parts.method, parts.uri.path());
                self.tell_refused(method, path, &parts.headers, &parts.extensions, &f.error, f.id.as_deref());
            }
            error_response(&f.error, f.id.as_deref())
        })
    }

    fn session(&self, headers: &http::HeaderMap, route: &str) -> Result<Arc<Session>, GatewayError> {
        let id = checks::session_id(headers).ok_or(GatewayError::MissingSession)?;
        let session = self.store.get(id).filter(|s| s.route() == route).ok_or(GatewayError::UnknownSession)?;
        session.touch();
        Ok(session)
    }

    /// For GET and DELETE: the version check, then the session check.
    fn session_and_version(
        &self,
        headers: &http::HeaderMap,
        route: &str,
    ) -> Result<(Arc<Session>, ProtocolVersion), Failure> {
        let declared = checks::declared_version(headers).map_err(no_id)?;
        let session = self.session(headers, route).map_err(no_id)?;
        let version = declared.or(session.version()).unwrap_or(ProtocolVersion::V2025_03_26);
        Ok((session, version))
    }

    fn sse_options(&self, version: ProtocolVersion, is_get: bool) -> SseOptions {
        SseOptions {
            keepalive: self.settings.sse_keepalive,
            retry_on_close: version.sse_priming().then_some(self.settings.sse_retry),
            shutdown: is_get.then(|| self.shutdown.clone()),
        }
    }

    /// An SSE reply on a new stream of `session` (or a stream of its own, without one).
    pub(crate) fn sse_reply(
        &self,
        source: MessageStream,
        session: Option<&Arc<Session>>,
        version: ProtocolVersion,
        announce: Option<String>,
    ) -> Response<ResponseBody> {
        let registry_owned;
        let registry = match session {
            Some(s) => &s.streams,
            None => {
                registry_owned = crate::session::StreamRegistry::new(1, 1);
                &registry_owned
            }
        };
        let stream = registry.create(false);
        let mut queued = Vec::new();
        if version.sse_priming() {
            queued.push(stream.record(|id| sse::priming_event(id, self.settings.sse_retry)));
        }
        sse_response(SseBody::new(stream, Some(source), queued, self.sse_options(version, false)), announce.as_deref())
    }

    /// A GET: opens the session's server-to-client stream, re-attaches it, or (with
    /// `Last-Event-ID`) resumes a stream; each passes the pipeline as a request.
    async fn get(
        &self,
        parts: &mut http::request::Parts,
        route: Arc<str>,
        received: Instant,
        context: RequestContext,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (session, version) = self.session_and_version(&parts.headers, &route)?;
        let resume = parts.headers.get(LAST_EVENT_ID).map(|v| v.to_str().unwrap_or("").to_owned());
        let req = McpRequest {
            kind: RequestKind::OpenStream { resume },
            session: Some(session.clone()),
            route,
            headers: self.pipeline_headers(parts),
            version,
            received_at: received,
            context,
        };
        let reply = self.service.start(req).await.map_err(piped(None))?;
        let (stream, source, queued) = match reply.take_resumed() {
            Some(resumed) if !resumed.reattached => {
                if resumed.lost > 0 {
                    metrics::counter!("shadowcat_sse_events_lost_total").increment(resumed.lost);
                    tracing::warn!(
                        session = session.tag(),
                        stream = resumed.stream.id(),
                        lost = resumed.lost,
                        "resumed stream: events older than the buffer were lost"
                    );
                }
                let is_get = resumed.stream.is_get();
                let body =
                    SseBody::new(resumed.stream, resumed.source, resumed.replay, self.sse_options(version, is_get));
                return Ok(sse_response(body, None));
            }
            Some(resumed) => (resumed.stream, resumed.source, Vec::new()),
            None => (session.streams.create(true), Some(reply.into_stream()), Vec::new()),
        };
        let mut queued = queued;
        if version.sse_priming() {
            queued.push(stream.record(|id| sse::priming_event(id, self.settings.sse_retry)));
        }
        Ok(sse_response(SseBody::new(stream, source, queued, self.sse_options(version, true)), None))
    }

    async fn delete(
        &self,
        parts: &mut http::request::Parts,
        route: Arc<str>,
        received: Instant,
        context: RequestContext,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (session, version) = self.session_and_version(&parts.headers, &route)?;
        let req = McpRequest {
            kind: RequestKind::EndSession,
            session: Some(session),
            route,
            headers: self.pipeline_headers(parts),
            version,
            received_at: received,
            context,
        };
        self.service.start(req).await.map_err(piped(None))?;
        Ok(response::empty_ok())
    }
}

/// An endpoint answering `GET` and `HEAD` with `doc` (405 otherwise).
pub fn document_endpoint(doc: crate::pipeline::Document) -> Endpoint {
    let doc = Arc::new(doc);
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |req: Request<Bytes>| {
        let doc = doc.clone();
        async move {
            let mut resp = if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
                let mut resp = Response::new(response::full(doc.body.clone()));
                resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(doc.content_type));
                resp
            } else {
                let mut resp = Response::new(response::full(Bytes::new()));
                *resp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                resp.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
                resp
            };
            resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300"));
            Ok::<_, std::convert::Infallible>(resp)
        }
    }))
}

/// Who the client is, for per-client bounds: the peer's IP address (the authenticated
/// principal, once authentication exists).
fn client_of(extensions: &http::Extensions) -> Option<Arc<str>> {
    extensions.get::<PeerAddr>().map(|p| p.1.clone())
}

/// A JSON answer to a stateless request, with the status its error code calls for.
fn stateless_json(m: Message) -> Response<ResponseBody> {
    let status = modern::error_status(&m);
    let mut resp = json_response(m, None);
    *resp.status_mut() = status;
    resp
}

/// An error, the id of the request it answers, and whether the front refused the
/// request before the pipeline (observers hear of those).
pub(crate) struct Failure {
    /// Boxed: a refusal's error is large, and the success path should not pay for it.
    error: Box<GatewayError>,
    id: Option<String>,
    before_pipeline: bool,
}

/// A refusal before the pipeline, answering no id.
fn no_id(e: GatewayError) -> Failure {
    Failure { error: Box::new(e), id: None, before_pipeline: true }
}

/// A refusal before the pipeline, answering `id`.
fn refused(id: &Option<String>) -> impl Fn(GatewayError) -> Failure + '_ {
    move |e| Failure { error: Box::new(e), id: id.clone(), before_pipeline: true }
}

/// An error from the pipeline, answering `id`.
fn piped(id: Option<String>) -> impl Fn(GatewayError) -> Failure {
    move |e| Failure { error: Box::new(e), id: id.clone(), before_pipeline: false }
}
