//! One gateway session bound to one upstream HTTP session.
//!
//! The upstream's `Mcp-Session-Id` (from the `initialize` response) is kept and sent
//! on every later POST, GET and DELETE; the client never sees it. An upstream that no
//! longer knows the session (404, or a 400 that says so) ends the gateway session:
//! [`HttpSession::is_alive`] turns false and the front answers 404 from then on.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use super::shared::{
    is_sse, preview, read_body, ReadError, SessionShared, ACCEPT_POST, CONTROL_TIMEOUT, ERROR_BODY_LIMIT,
};
use super::stream::{idle_until_closed, Deadline, ListenStream, ReplyStream};
use super::Target;
use crate::error::GatewayError;
use crate::protocol::{parse_body, Message, MessageKind};
use crate::reply::{McpReply, ReplyBody};

/// A client session on an HTTP upstream.
pub struct HttpSession {
    shared: Arc<SessionShared>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl HttpSession {
    pub(super) fn new(target: Arc<Target>, tag: String, permit: OwnedSemaphorePermit) -> Self {
        HttpSession { shared: Arc::new(SessionShared::new(target, tag)), _permit: Some(permit) }
    }

    /// A handle for one stateless request: no upstream session, no session bound.
    pub(super) fn stateless(target: Arc<Target>) -> Self {
        HttpSession { shared: Arc::new(SessionShared::new(target, "stateless".into())), _permit: None }
    }

    /// Whether the session can still serve (the upstream knows it and it has not
    /// been closed).
    pub fn is_alive(&self) -> bool {
        self.shared.is_alive()
    }

    fn unavailable(&self, detail: impl Into<String>) -> GatewayError {
        self.shared.target.unavailable(detail)
    }

    /// Sends one client message upstream. `headers` are the client's headers (the allow-list picks what goes).
    pub async fn send(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        if !self.is_alive() {
            return Err(GatewayError::UnknownSession);
        }
        self.shared.remember_version(headers);
        match m.kind() {
            MessageKind::Request => self.send_request(m, headers).await,
            MessageKind::Notification => {
                if m.method() == Some("notifications/cancelled") {
                    self.shared.client_cancelled(&m);
                }
                self.send_other(m, headers).await
            }
            MessageKind::Response => self.send_other(m, headers).await,
        }
    }

    async fn send_request(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        let Some(id) = m.id_key().map(Box::<str>::from) else {
            return Err(GatewayError::InvalidRequest("request without id".into()));
        };
        let limits = &self.shared.target.limits;
        let in_flight = self.shared.begin(&id)?;
        let is_init = m.method() == Some("initialize");
        let sent_session = self.shared.has_upstream_id();
        let deadline = Deadline::new(limits);
        let resp = match tokio::time::timeout_at(deadline.current(), self.shared.post(&m, headers)).await {
            Ok(resp) => resp?,
            Err(_) => return Err(self.timed_out(&id, headers, &deadline)),
        };
        if is_init {
            self.shared.adopt_session_id(&resp);
        }
        let status = resp.status();
        if status.is_success() && is_sse(&resp) {
            let stream = ReplyStream::new(self.shared.clone(), id, is_init, headers.clone(), resp, deadline, in_flight);
            return Ok(McpReply::new(ReplyBody::Stream(stream.into_stream())));
        }
        if status == StatusCode::ACCEPTED {
            return Err(self.unavailable("answered 202 Accepted to a request, so no response will come"));
        }
        let max = limits.max_message_bytes;
        let limit = if status.is_success() { max } else { ERROR_BODY_LIMIT.min(max) };
        let body = match tokio::time::timeout_at(deadline.current(), read_body(resp, limit)).await {
            Err(_) => return Err(self.timed_out(&id, headers, &deadline)),
            Ok(Err(ReadError::TooLarge)) if status.is_success() => {
                tracing::warn!(upstream = %self.shared.target.name, session = %self.shared.tag, id = %id, max,
                    "upstream response exceeds max_message_bytes; dropped");
                return Err(self.unavailable(format!("its response exceeds max_message_bytes ({max} bytes)")));
            }
            Ok(Err(ReadError::TooLarge)) => Bytes::new(),
            Ok(Err(ReadError::Failed(e))) => return Err(self.unavailable(format!("reading its response failed ({e})"))),
            Ok(Ok(body)) => body,
        };
        if !status.is_success() {
            return self.failed(status, &body, &id, sent_session);
        }
        match parse_body(&body) {
            Ok((messages, _)) => {
                if is_init {
                    if let Some(r) = messages.iter().find(|r| r.id_key() == Some(&*id)) {
                        self.shared.learn_version(r);
                    }
                }
                let mut messages = messages.into_iter();
                match (messages.next(), messages.len()) {
                    (Some(one), 0) => Ok(McpReply::new(ReplyBody::Message(one))),
                    (first, _) => {
                        let all: Vec<Message> = first.into_iter().chain(messages).collect();
                        Ok(McpReply::new(ReplyBody::Stream(Box::pin(futures_util::stream::iter(all)))))
                    }
                }
            }
            Err(e) => {
                tracing::warn!(upstream = %self.shared.target.name, session = %self.shared.tag, id = %id, error = %e,
                    body = %preview(&body), "upstream reply is not a JSON-RPC message");
                Err(self.unavailable(format!("its reply is not a JSON-RPC message ({e})")))
            }
        }
    }

    /// An error answer to a request: the session is gone, or the upstream's own
    /// JSON-RPC error (passed on, answering this request), or a transport failure.
    fn failed(&self, status: StatusCode, body: &[u8], id: &str, sent_session: bool) -> Result<McpReply, GatewayError> {
        if self.shared.session_gone(status, body, sent_session) {
            self.shared.mark_gone(status);
            return Err(GatewayError::UnknownSession);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error: ErrorObject,
        }
        #[derive(Deserialize)]
        struct ErrorObject {
            code: i32,
            message: String,
            #[serde(default)]
            data: Option<serde_json::Value>,
        }
        tracing::warn!(upstream = %self.shared.target.name, url = %self.shared.target.display,
            session = %self.shared.tag, %status, body = %preview(body), "upstream answered with an error status");
        if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
            let m = Message::error_response(Some(id), e.error.code, &e.error.message, e.error.data);
            return Ok(McpReply::new(ReplyBody::Message(m)));
        }
        Err(self.unavailable(format!("it answered HTTP {status}")))
    }

    fn timed_out(&self, id: &str, headers: &HeaderMap, deadline: &Deadline) -> GatewayError {
        self.shared.cancel(id, headers, "the gateway's request timeout expired");
        GatewayError::UpstreamTimeout { upstream: self.shared.target.name.to_string(), after: deadline.elapsed() }
    }

    /// Notifications and responses (to server-to-client requests): the upstream
    /// answers 202.
    async fn send_other(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        let sent_session = self.shared.has_upstream_id();
        let bound = self.shared.target.limits.request_timeout;
        let timeout = || GatewayError::UpstreamTimeout { upstream: self.shared.target.name.to_string(), after: bound };
        let exchange = async {
            let resp = self.shared.post(&m, headers).await?;
            let status = resp.status();
            let body = if status.is_success() {
                Bytes::new()
            } else {
                read_body(resp, ERROR_BODY_LIMIT).await.unwrap_or_default()
            };
            Ok::<_, GatewayError>((status, body))
        };
        let (status, body) = tokio::time::timeout(bound, exchange).await.map_err(|_| timeout())??;
        if status.is_success() {
            return Ok(McpReply::accepted());
        }
        if self.shared.session_gone(status, &body, sent_session) {
            self.shared.mark_gone(status);
            return Err(GatewayError::UnknownSession);
        }
        tracing::warn!(upstream = %self.shared.target.name, url = %self.shared.target.display,
            session = %self.shared.tag, %status, method = m.method().unwrap_or("response"), body = %preview(&body),
            "upstream refused a message");
        Err(self.unavailable(format!("it answered HTTP {status}")))
    }

    /// Opens the server-to-client stream (GET). An upstream without one (405) gets a
    /// stream that stays open and yields nothing until the session ends.
    pub async fn open_stream(&self, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        if !self.is_alive() {
            return Err(GatewayError::UnknownSession);
        }
        self.shared.remember_version(headers);
        let sent_session = self.shared.has_upstream_id();
        let bound = self.shared.target.limits.request_timeout;
        let resp = tokio::time::timeout(bound, self.shared.get(headers, None)).await.map_err(|_| {
            GatewayError::UpstreamTimeout { upstream: self.shared.target.name.to_string(), after: bound }
        })??;
        let status = resp.status();
        if status.is_success() && is_sse(&resp) {
            let stream = ListenStream::new(self.shared.clone(), headers.clone(), resp);
            return Ok(McpReply::new(ReplyBody::Stream(stream.into_stream())));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            tracing::debug!(upstream = %self.shared.target.name, session = %self.shared.tag,
                "upstream offers no GET stream (405); the client's stays open and idle");
            return Ok(McpReply::new(ReplyBody::Stream(idle_until_closed(self.shared.closed()))));
        }
        let body = tokio::time::timeout(bound, read_body(resp, ERROR_BODY_LIMIT))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if self.shared.session_gone(status, &body, sent_session) {
            self.shared.mark_gone(status);
            return Err(GatewayError::UnknownSession);
        }
        tracing::warn!(upstream = %self.shared.target.name, url = %self.shared.target.display,
            session = %self.shared.tag, %status, body = %preview(&body), "upstream refused the GET stream");
        Err(self.unavailable(format!("it answered the GET stream with HTTP {status}")))
    }

    /// Ends the session: open streams stop, and the upstream gets a DELETE (a 405,
    /// "sessions cannot be ended by clients", is fine).
    pub async fn close(&self) {
        if !self.shared.end() || !self.shared.has_upstream_id() {
            return;
        }
        let shared = &self.shared;
        let req = match shared.request(Method::DELETE, &HeaderMap::new(), ACCEPT_POST, None, None) {
            Ok(req) => req,
            Err(e) => {
                tracing::warn!(upstream = %shared.target.name, session = %shared.tag, error = %e, "cannot end the upstream session");
                return;
            }
        };
        let bound = shared.target.limits.request_timeout.min(CONTROL_TIMEOUT);
        match tokio::time::timeout(bound, shared.target.exchange(req, &shared.tag)).await {
            Ok(Ok(resp)) if resp.status().is_success() || resp.status() == StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(upstream = %shared.target.name, session = %shared.tag, status = %resp.status(), "upstream session ended")
            }
            Ok(Ok(resp)) => {
                tracing::info!(upstream = %shared.target.name, session = %shared.tag, status = %resp.status(),
                    "upstream answered the session's DELETE with an error")
            }
            Ok(Err(_)) => {} // logged by exchange
            Err(_) => {
                tracing::warn!(upstream = %shared.target.name, session = %shared.tag, "the session's DELETE timed out")
            }
        }
    }
}
