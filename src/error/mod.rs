//! The one error type of the request path.
//!
//! Every stage and upstream returns [`GatewayError`]; each front renders it in one
//! place: the HTTP front as a status plus a JSON-RPC error body (or a JSON-RPC error
//! event once a stream has started), the stdio front as a JSON-RPC error line.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use crate::protocol::{codes, Message};

mod challenge;

pub use challenge::Challenge;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something the gateway refuses.
    Client,
    /// The upstream failed or could not be reached.
    Upstream,
    /// The gateway itself.
    Internal,
}

/// An error on the request path.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// No MCP endpoint at this path.
    #[error("no MCP endpoint at {0}")]
    NoRoute(String),
    /// `Origin` or `Host` is not allowed (DNS rebinding protection).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The HTTP method is not served on this endpoint.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// `Accept` lacks a required media type.
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    /// `Content-Type` is not `application/json`.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("parse error: {0}")]
    Parse(String),
    /// The body is not a valid JSON-RPC 2.0 message, or breaks a transport rule.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `MCP-Protocol-Version` names a revision the gateway does not speak.
    #[error("unsupported protocol version {0:?} (supported: {supported})", supported = crate::protocol::ProtocolVersion::supported_list())]
    UnsupportedVersion(String),
    /// 2026-07-28: a routing header is missing, malformed or disagrees with the body.
    #[error("header mismatch: {0}")]
    HeaderMismatch(String),
    /// The request's params are invalid (for the gateway: a stateless request's
    /// `_meta` envelope lacks a required key).
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The method does not exist in the request's protocol revision (or is not
    /// served on this route).
    #[error("method not found: {0}")]
    MethodNotFound(String),
    /// Serving the request needs client capabilities it did not declare.
    #[error("missing required client capability: {detail}")]
    MissingCapability {
        /// What is needed, as a `ClientCapabilities` object (`{"sampling":{}}`).
        required: serde_json::Value,
        /// What asked for it.
        detail: String,
    },
    /// A request other than `initialize` came without `Mcp-Session-Id`.
    #[error("missing Mcp-Session-Id header: only initialize may be sent without a session")]
    MissingSession,
    /// The session is unknown, expired or ended.
    #[error("session not found: it is unknown, expired or has ended")]
    UnknownSession,
    /// The resource is already in use (a second GET stream on one session).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bound was hit (sessions per upstream, requests in flight, streams per session).
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// A per-client bound was hit (sessions per client): HTTP 429.
    #[error("too many requests: {detail}")]
    TooManyRequests {
        /// Which bound, and what to do.
        detail: String,
        /// When to try again, if that is known (sent as `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The upstream could not be reached or failed.
    #[error("upstream {upstream} unavailable: {detail}")]
    UpstreamUnavailable {
        /// The upstream's name in the config.
        upstream: String,
        /// What happened.
        detail: String,
    },
    /// The upstream refused the gateway's credentials (HTTP 401): what its challenge
    /// and metadata say about where a token comes from.
    #[error("upstream {upstream} requires authorization: {}", challenge.describe())]
    UpstreamUnauthorized {
        /// The upstream's name in the config.
        upstream: String,
        /// Its challenge and the authorization servers its metadata names.
        challenge: Box<Challenge>,
    },
    /// The upstream did not answer in time.
    #[error("upstream {upstream} did not answer within {after:?}")]
    UpstreamTimeout {
        /// The upstream's name in the config.
        upstream: String,
        /// How long the gateway waited.
        after: Duration,
    },
    /// A gateway bug or an unexpected internal state.
    #[error("internal error: {0}")]
    Internal(String),
    /// A stage refused the call with a status, code and headers of its own (401 with
    /// `WWW-Authenticate`, 403, 429 with `Retry-After`).
    #[error("{}", .0.message)]
    Rejected(Box<Rejection>),
}

/// A stage's refusal: what the HTTP front answers with (status, headers and a
/// JSON-RPC error body) and the stdio front writes (the JSON-RPC error).
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON-RPC error code.
    pub code: i32,
    /// The error message (the client sees it).
    pub message: String,
    /// The JSON-RPC error's `data`, if any.
    pub data: Option<serde_json::Value>,
    /// Headers of the HTTP answer (`WWW-Authenticate`, `Retry-After`).
    pub headers: HeaderMap,
    /// A short label for metrics and logs (`unauthorized`, `rate_limited`).
    pub label: &'static str,
}

impl Rejection {
    /// A refusal with this status, JSON-RPC code and message (label `rejected`).
    pub fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        Rejection { status, code, message: message.into(), data: None, headers: HeaderMap::new(), label: "rejected" }
    }

    /// Adds a header to the HTTP answer.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the error's `data`.
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the label for metrics and logs.
    pub fn label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }
}

impl From<Rejection> for GatewayError {
    fn from(r: Rejection) -> Self {
        GatewayError::Rejected(Box::new(r))
    }
}

impl GatewayError {
    /// A stage's refusal with this status, JSON-RPC code and message; see
    /// [`Rejection`] for headers and data.
    pub fn rejected(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        Rejection::new(status, code, message).into()
    }

    /// Headers the HTTP answer must carry besides those the front sets.
    pub fn headers(&self) -> Option<&HeaderMap> {
        match self {
            GatewayError::Rejected(r) => Some(&r.headers),
            _ => None,
        }
    }

    /// The HTTP status the HTTP front answers with before a response has started.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Parse(_)
            | GatewayError::InvalidRequest(_)
            | GatewayError::UnsupportedVersion(_)
            | GatewayError::HeaderMismatch(_)
            | GatewayError::InvalidParams(_)
            | GatewayError::MissingCapability { .. }
            | GatewayError::MissingSession => StatusCode::BAD_REQUEST,
            GatewayError::UnknownSession | GatewayError::NoRoute(_) | GatewayError::MethodNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::UpstreamUnavailable { .. } | GatewayError::UpstreamUnauthorized { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Rejected(r) => r.status,
        }
    }

    /// The JSON-RPC error code that goes with it.
    pub fn jsonrpc_code(&self) -> i32 {
        match self {
            GatewayError::Parse(_) => codes::PARSE_ERROR,
            GatewayError::InvalidRequest(_) | GatewayError::MissingSession => codes::INVALID_REQUEST,
            GatewayError::UnsupportedVersion(_) => codes::UNSUPPORTED_PROTOCOL_VERSION,
            GatewayError::HeaderMismatch(_) => codes::HEADER_MISMATCH,
            GatewayError::InvalidParams(_) => codes::INVALID_PARAMS,
            GatewayError::MethodNotFound(_) => codes::METHOD_NOT_FOUND,
            GatewayError::MissingCapability { .. } => codes::MISSING_REQUIRED_CAPABILITY,
            GatewayError::UnknownSession => codes::SESSION_NOT_FOUND,
            GatewayError::UpstreamUnavailable { .. } | GatewayError::UpstreamUnauthorized { .. } => {
                codes::UPSTREAM_ERROR
            }
            GatewayError::UpstreamTimeout { .. } => codes::REQUEST_TIMEOUT,
            GatewayError::Internal(_) => codes::INTERNAL_ERROR,
            GatewayError::Rejected(r) => r.code,
            GatewayError::NoRoute(_)
            | GatewayError::Forbidden(_)
            | GatewayError::MethodNotAllowed(_)
            | GatewayError::NotAcceptable(_)
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::Conflict(_)
            | GatewayError::Overloaded(_)
            | GatewayError::TooManyRequests { .. } => codes::TRANSPORT_ERROR,
        }
    }

    /// Where the error came from.
    pub fn source_side(&self) -> ErrorSource {
        match self {
            GatewayError::UpstreamUnavailable { .. }
            | GatewayError::UpstreamUnauthorized { .. }
            | GatewayError::UpstreamTimeout { .. } => ErrorSource::Upstream,
            GatewayError::Internal(_) => ErrorSource::Internal,
            _ => ErrorSource::Client,
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn retryable(&self) -> bool {
        match self {
            GatewayError::Rejected(r) => {
                r.status == StatusCode::TOO_MANY_REQUESTS || r.status == StatusCode::SERVICE_UNAVAILABLE
            }
            _ => matches!(
                self,
                GatewayError::Overloaded(_)
                    | GatewayError::TooManyRequests { .. }
                    | GatewayError::UpstreamUnavailable { .. }
                    | GatewayError::UpstreamTimeout { .. }
            ),
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::NoRoute(_) => "no_route",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::NotAcceptable(_) => "not_acceptable",
            GatewayError::UnsupportedMediaType(_) => "unsupported_media_type",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::Parse(_) => "parse_error",
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::UnsupportedVersion(_) => "unsupported_version",
            GatewayError::HeaderMismatch(_) => "header_mismatch",
            GatewayError::InvalidParams(_) => "invalid_params",
            GatewayError::MethodNotFound(_) => "method_not_found",
            GatewayError::MissingCapability { .. } => "missing_capability",
            GatewayError::MissingSession => "missing_session",
            GatewayError::UnknownSession => "unknown_session",
            GatewayError::Conflict(_) => "conflict",
            GatewayError::Overloaded(_) => "overloaded",
            GatewayError::TooManyRequests { .. } => "too_many_requests",
            GatewayError::UpstreamUnavailable { .. } => "upstream_unavailable",
            GatewayError::UpstreamUnauthorized { .. } => "upstream_unauthorized",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::Internal(_) => "internal",
            GatewayError::Rejected(r) => r.label,
        }
    }

    /// The JSON-RPC error message for this error, answering the request `id`
    /// (the id's JSON text; `None` answers with `"id": null`).
    pub fn to_message(&self, id: Option<&str>) -> Message {
        let data = match self {
            GatewayError::UnsupportedVersion(requested) => Some(json!({
                "supported": crate::protocol::ProtocolVersion::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                "requested": requested,
            })),
            GatewayError::MissingCapability { required, .. } => Some(json!({ "requiredCapabilities": required })),
            GatewayError::UpstreamUnauthorized { challenge, .. } => Some(challenge.data()),
            GatewayError::Rejected(r) => r.data.clone(),
            _ => None,
        };
        Message::error_response(id, self.jsonrpc_code(), &self.to_string(), data).with_status(self.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_status_and_code() {
        let e = GatewayError::UnknownSession;
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let m = e.to_message(Some("3"));
        let v = m.to_value().expect("json");
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], codes::SESSION_NOT_FOUND);
        let v = GatewayError::UnsupportedVersion("1999-01-01".into()).to_message(None).to_value().expect("json");
        assert_eq!(v["error"]["data"]["supported"][0], "2025-03-26");
        assert_eq!(v["error"]["data"]["requested"], "1999-01-01");
        assert_eq!(v["error"]["code"], codes::UNSUPPORTED_PROTOCOL_VERSION);
        assert!(v["id"].is_null());
    }

    #[test]
    fn too_many_requests_is_429_and_retryable() {
        let e = GatewayError::TooManyRequests { detail: "per client".into(), retry_after: None };
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.jsonrpc_code(), codes::TRANSPORT_ERROR);
        assert!(e.retryable());
        assert_eq!(e.source_side(), ErrorSource::Client);
        assert_eq!(e.label(), "too_many_requests");
    }
}
