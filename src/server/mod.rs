//! The Streamable HTTP front: decodes POST/GET/DELETE into [`McpRequest`]s, runs the
//! transport checks, calls the pipeline and renders replies and errors.

pub mod admin;
mod checks;
mod headers;
mod listen;
mod modern;
mod response;
pub mod sse;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use tokio::sync::watch;
use tower::ServiceExt;

pub use checks::{OriginPolicy, LAST_EVENT_ID, SESSION_HEADER, VERSION_HEADER};
pub use headers::forwardable;
pub use listen::{serve, ConnLimits, ConnectionGate, PeerAddr, MIN_HEADER_BYTES};
pub use response::ResponseBody;

use crate::error::GatewayError;
use crate::pipeline::{McpReply, McpRequest, McpService, MessageStream, ReplyBody, RequestKind};
use crate::protocol::{parse_body, Message, MessageError, MessageKind, ProtocolVersion};
use crate::session::{Session, SessionStore};
use response::{accepted, error_response, json_response, sse_response};
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
        Front { service, store, routes, policy, settings, shutdown }
    }

    /// Serves one HTTP request. Never fails: every error becomes a response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let received = Instant::now();
        let Some(route) = self.routes.get(req.uri().path()).cloned() else {
            return error_response(&GatewayError::NoRoute(req.uri().path().to_owned()), None);
        };
        let checked = self
            .policy
            .check(req.headers(), req.uri().host())
            .and_then(|_| checks::check_method(req.method()))
            .and_then(|_| checks::check_accept(req.method(), req.headers()));
        if let Err(e) = checked {
            return error_response(&e, None);
        }
        if *req.method() != Method::POST && modern::header_is_stateless(req.headers()) {
            let e = GatewayError::MethodNotAllowed(format!(
                "{} is not part of protocol version 2026-07-28: every request is a POST",
                req.method()
            ));
            let mut resp = error_response(&e, None);
            resp.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return resp;
        }
        let client = client_of(req.extensions());
        let result = match *req.method() {
            Method::POST => self.post(req, route, received, client).await,
            Method::GET => self.get(req, route, received, client).await,
            _ => self.delete(req, route, received, client).await,
        };
        result.unwrap_or_else(|(e, id)| error_response(&e, id.as_deref()))
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

    async fn post<B>(
        &self,
        req: Request<B>,
        route: Arc<str>,
        received: Instant,
        client: Option<Arc<str>>,
    ) -> Result<Response<ResponseBody>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        checks::check_content_type(req.headers()).map_err(no_id)?;
        let limit = self.settings.max_body_bytes;
        let too_large = GatewayError::PayloadTooLarge { limit };
        let declared_len =
            req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > limit as u64) {
            return Err((too_large, None));
        }
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err((too_large, None)),
            Err(e) => return Err(no_id(GatewayError::InvalidRequest(format!("could not read the request body: {e}")))),
        };
        let (messages, is_batch) = parse_body(&bytes).map_err(|e| match e {
            MessageError::Parse(d) => no_id(GatewayError::Parse(d)),
            MessageError::Invalid(d) => no_id(GatewayError::InvalidRequest(d)),
        })?;
        let first_id = (!is_batch).then(|| messages[0].id_key().map(str::to_owned)).flatten();
        if modern::is_stateless(&parts.headers, &messages) {
            return self.post_stateless(parts, messages, is_batch, first_id, route, received).await;
        }
        let fail = |e: GatewayError| (e, first_id.clone());
        let declared = checks::declared_version(&parts.headers).map_err(fail)?;
        let is_init = messages.iter().any(|m| m.method() == Some("initialize"));
        if is_init && is_batch {
            return Err(fail(GatewayError::InvalidRequest("initialize must not be part of a batch".into())));
        }
        let session = if is_init { None } else { Some(self.session(&parts.headers, &route).map_err(fail)?) };
        let version =
            declared.or_else(|| session.as_ref().and_then(|s| s.version())).unwrap_or(ProtocolVersion::V2025_03_26);
        if is_batch && !version.allows_batches() {
            return Err(fail(GatewayError::InvalidRequest(format!(
                "JSON-RPC batches are not allowed in protocol version {version}"
            ))));
        }
        let forward = headers::forwardable(&parts.headers);
        if !is_batch {
            let m = messages.into_iter().next().ok_or_else(|| fail(GatewayError::Internal("empty body".into())))?;
            let is_request = m.is_request();
            let req = McpRequest {
                kind: RequestKind::Message(m),
                session: session.clone(),
                route,
                headers: forward,
                version,
                received_at: received,
                client: client.clone(),
            };
            let reply = self.service.clone().oneshot(req).await.map_err(fail)?;
            return Ok(self.render_post(reply, first_id, is_request, session, version).await);
        }
        let make = |m: Message| McpRequest {
            kind: RequestKind::Message(m),
            session: session.clone(),
            route: route.clone(),
            headers: forward.clone(),
            version,
            received_at: received,
            client: client.clone(),
        };
        let session_for_batch = session.clone();
        self.post_batch(messages, make, session_for_batch, version).await
    }

    /// A stateless (2026-07-28) POST: one request, checked as the revision requires,
    /// served without a session.
    async fn post_stateless(
        &self,
        parts: http::request::Parts,
        messages: Vec<Message>,
        is_batch: bool,
        id: Option<String>,
        route: Arc<str>,
        received: Instant,
    ) -> Result<Response<ResponseBody>, Failure> {
        let fail = |e: GatewayError| (e, id.clone());
        let client = client_of(&parts.extensions);
        let m = match messages.into_iter().next() {
            Some(m) if !is_batch => m,
            _ => return Err(no_id(GatewayError::InvalidRequest("JSON-RPC batches do not exist in 2026-07-28".into()))),
        };
        match m.kind() {
            MessageKind::Request => {}
            MessageKind::Notification => {
                // No client notification is defined for HTTP in 2026-07-28 (closing a
                // response stream is how a request is cancelled): accepted, not relayed.
                tracing::debug!(method = m.method().unwrap_or(""), "stateless notification accepted and dropped");
                return Ok(accepted(None));
            }
            MessageKind::Response => {
                return Err(fail(GatewayError::InvalidRequest(
                    "a 2026-07-28 client never sends responses (input is given by retrying with inputResponses)".into(),
                )))
            }
        }
        modern::check_request(&parts.headers, &m).map_err(fail)?;
        let req = McpRequest {
            kind: RequestKind::Message(m),
            session: None,
            route,
            headers: headers::forwardable(&parts.headers),
            version: ProtocolVersion::V2026_07_28,
            received_at: received,
            client: client.clone(),
        };
        let reply = self.service.clone().oneshot(req).await.map_err(fail)?;
        Ok(match reply.body {
            ReplyBody::Accepted => accepted(None),
            ReplyBody::Message(m) => stateless_json(m),
            ReplyBody::Stream(mut s) => {
                let Some(first) = s.next().await else {
                    return Ok(self.sse_reply(
                        Box::pin(futures_util::stream::empty()),
                        None,
                        ProtocolVersion::V2026_07_28,
                        None,
                    ));
                };
                if first.kind() == MessageKind::Response && first.id_key() == id.as_deref() {
                    return Ok(stateless_json(first));
                }
                let rest: MessageStream = Box::pin(futures_util::stream::once(async { first }).chain(s));
                self.sse_reply(rest, None, ProtocolVersion::V2026_07_28, None)
            }
        })
    }

    async fn post_batch(
        &self,
        messages: Vec<Message>,
        make: impl Fn(Message) -> McpRequest,
        session: Option<Arc<Session>>,
        version: ProtocolVersion,
    ) -> Result<Response<ResponseBody>, Failure> {
        let has_requests = messages.iter().any(|m| m.kind() == MessageKind::Request);
        let calls = messages.into_iter().map(|m| {
            let id = m.id_key().map(str::to_owned);
            let svc = self.service.clone();
            let req = make(m);
            async move {
                match svc.oneshot(req).await {
                    Ok(McpReply { body: ReplyBody::Stream(s), .. }) => s,
                    Ok(McpReply { body: ReplyBody::Message(m), .. }) => {
                        Box::pin(futures_util::stream::once(async { m }))
                    }
                    Ok(McpReply { body: ReplyBody::Accepted, .. }) => Box::pin(futures_util::stream::empty()),
                    Err(e) => {
                        let m = e.to_message(id.as_deref());
                        Box::pin(futures_util::stream::once(async { m })) as MessageStream
                    }
                }
            }
        });
        let streams = futures_util::future::join_all(calls).await;
        if !has_requests {
            return Ok(accepted(None));
        }
        let merged: MessageStream = Box::pin(futures_util::stream::select_all(streams));
        Ok(self.sse_reply(merged, session.as_ref(), version, None))
    }

    async fn render_post(
        &self,
        reply: McpReply,
        id: Option<String>,
        is_request: bool,
        session: Option<Arc<Session>>,
        version: ProtocolVersion,
    ) -> Response<ResponseBody> {
        let new_session = reply.new_session.clone();
        let session = new_session.clone().or(session);
        let announce = new_session.as_ref().map(|s| s.id().to_owned());
        match reply.body {
            ReplyBody::Accepted => accepted(announce.as_deref()),
            ReplyBody::Message(m) => json_response(m, announce.as_deref()),
            ReplyBody::Stream(mut s) if is_request => {
                let Some(first) = s.next().await else {
                    // The call ended without an answer (cancelled): an empty stream.
                    return self.sse_reply(
                        Box::pin(futures_util::stream::empty()),
                        session.as_ref(),
                        version,
                        announce,
                    );
                };
                if first.kind() == MessageKind::Response && first.id_key() == id.as_deref() {
                    return json_response(first, announce.as_deref());
                }
                let version = session.as_ref().and_then(|s| s.version()).unwrap_or(version);
                let rest: MessageStream = Box::pin(futures_util::stream::once(async { first }).chain(s));
                self.sse_reply(rest, session.as_ref(), version, announce)
            }
            ReplyBody::Stream(s) => self.sse_reply(s, session.as_ref(), version, announce),
        }
    }

    fn sse_reply(
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

    async fn get<B>(
        &self,
        req: Request<B>,
        route: Arc<str>,
        received: Instant,
        client: Option<Arc<str>>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (session, version) = self.session_and_version(req.headers(), &route)?;
        if let Some(last) = req.headers().get(LAST_EVENT_ID) {
            let last = last.to_str().unwrap_or("");
            let resumed = session.streams.resume(last).map_err(no_id)?;
            if resumed.lost > 0 {
                metrics::counter!("shadowcat_sse_events_lost_total").increment(resumed.lost);
                tracing::warn!(
                    session = session.tag(),
                    last_event_id = last,
                    lost = resumed.lost,
                    "resumed stream: events older than the buffer were lost"
                );
            }
            let is_get = resumed.stream.is_get();
            let body = SseBody::new(resumed.stream, resumed.source, resumed.replay, self.sse_options(version, is_get));
            return Ok(sse_response(body, None));
        }
        let source = match session.streams.take_detached_get().map_err(no_id)? {
            Some(source) => source,
            None => {
                let req = McpRequest {
                    kind: RequestKind::OpenStream,
                    session: Some(session.clone()),
                    route,
                    headers: headers::forwardable(req.headers()),
                    version,
                    received_at: received,
                    client: client.clone(),
                };
                self.service.clone().oneshot(req).await.map_err(no_id)?.into_stream()
            }
        };
        let stream = session.streams.create(true);
        let mut queued = Vec::new();
        if version.sse_priming() {
            queued.push(stream.record(|id| sse::priming_event(id, self.settings.sse_retry)));
        }
        Ok(sse_response(SseBody::new(stream, Some(source), queued, self.sse_options(version, true)), None))
    }

    async fn delete<B>(
        &self,
        req: Request<B>,
        route: Arc<str>,
        received: Instant,
        client: Option<Arc<str>>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (session, version) = self.session_and_version(req.headers(), &route)?;
        let req = McpRequest {
            kind: RequestKind::EndSession,
            session: Some(session),
            route,
            headers: headers::forwardable(req.headers()),
            version,
            received_at: received,
            client: client.clone(),
        };
        self.service.clone().oneshot(req).await.map_err(no_id)?;
        Ok(response::empty_ok())
    }
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

/// An error and the id of the request it answers.
type Failure = (GatewayError, Option<String>);

fn no_id(e: GatewayError) -> Failure {
    (e, None)
}
