//! POST: one message, a batch (2025-03-26), or a stateless (2026-07-28) request.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http::request::Parts;
use http::Response;
use http_body_util::{BodyExt, Limited};

use super::response::{accepted, json_response};
use super::{checks, modern, no_id, piped, refused, stateless_json, Failure, Front, ResponseBody};
use crate::error::GatewayError;
use crate::pipeline::{McpReply, McpRequest, MessageStream, ReplyBody, RequestContext, RequestKind};
use crate::protocol::{parse_body, Message, MessageError, MessageKind, ProtocolVersion};
use crate::session::Session;

impl Front {
    pub(super) async fn post<B>(
        &self,
        parts: &mut Parts,
        body: B,
        route: Arc<str>,
        received: Instant,
        context: RequestContext,
    ) -> Result<Response<ResponseBody>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        checks::check_content_type(&parts.headers).map_err(no_id)?;
        let limit = self.settings.max_body_bytes;
        let too_large = GatewayError::PayloadTooLarge { limit };
        let declared_len =
            parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > limit as u64) {
            return Err(no_id(too_large));
        }
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(no_id(too_large)),
            Err(e) => return Err(no_id(GatewayError::InvalidRequest(format!("could not read the request body: {e}")))),
        };
        let (messages, is_batch) = parse_body(&bytes).map_err(|e| match e {
            MessageError::Parse(d) => no_id(GatewayError::Parse(d)),
            MessageError::Invalid(d) => no_id(GatewayError::InvalidRequest(d)),
        })?;
        let first_id = (!is_batch).then(|| messages[0].id_key().map(str::to_owned)).flatten();
        if modern::is_stateless(&parts.headers, &messages) {
            return self.post_stateless(parts, messages, is_batch, first_id, route, received, context).await;
        }
        let fail = refused(&first_id);
        let declared = checks::declared_version(&parts.headers).map_err(&fail)?;
        let is_init = messages.iter().any(|m| m.method() == Some("initialize"));
        if is_init && is_batch {
            return Err(fail(GatewayError::InvalidRequest("initialize must not be part of a batch".into())));
        }
        let session = if is_init { None } else { Some(self.session(&parts.headers, &route).map_err(&fail)?) };
        let version =
            declared.or_else(|| session.as_ref().and_then(|s| s.version())).unwrap_or(ProtocolVersion::V2025_03_26);
        if is_batch && !version.allows_batches() {
            return Err(fail(GatewayError::InvalidRequest(format!(
                "JSON-RPC batches are not allowed in protocol version {version}"
            ))));
        }
        if !is_batch {
            let m = messages.into_iter().next().ok_or_else(|| fail(GatewayError::Internal("empty body".into())))?;
            let is_request = m.is_request();
            let req = McpRequest {
                kind: RequestKind::Message(m),
                session: session.clone(),
                route,
                headers: self.pipeline_headers(parts),
                version,
                received_at: received,
                context,
            };
            let reply = self.service.start(req).await.map_err(piped(first_id.clone()))?;
            return Ok(self.render_post(reply, first_id.clone(), is_request, session, version).await);
        }
        // Each message of a batch is a call of its own.
        let headers = self.pipeline_headers(parts);
        let make = |m: Message| McpRequest {
            kind: RequestKind::Message(m),
            session: session.clone(),
            route: route.clone(),
            headers: headers.clone(),
            version,
            received_at: received,
            context: RequestContext::new(context.transport, context.peer.clone()),
        };
        let session_for_batch = session.clone();
        self.post_batch(messages, make, session_for_batch, version).await
    }

    /// A stateless (2026-07-28) POST: one request, checked as the revision requires,
    /// served without a session.
    #[allow(clippy::too_many_arguments)]
    async fn post_stateless(
        &self,
        parts: &mut Parts,
        messages: Vec<Message>,
        is_batch: bool,
        id: Option<String>,
        route: Arc<str>,
        received: Instant,
        context: RequestContext,
    ) -> Result<Response<ResponseBody>, Failure> {
        let fail = refused(&id);
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
        modern::check_request(&parts.headers, &m).map_err(&fail)?;
        let req = McpRequest {
            kind: RequestKind::Message(m),
            session: None,
            route,
            headers: self.pipeline_headers(parts),
            version: ProtocolVersion::V2026_07_28,
            received_at: received,
            context,
        };
        let reply = self.service.start(req).await.map_err(piped(id.clone()))?;
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
                match svc.start(req).await {
                    Ok(reply) => reply.into_stream(),
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
        let new_session = reply.new_session().cloned();
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
}
