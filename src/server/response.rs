//! Building HTTP responses: JSON, SSE, 202, and the one place errors are rendered.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

use super::checks::SESSION_HEADER;
use super::sse::SseBody;
use super::wire::{Cut, Dribble};
use crate::error::GatewayError;
use crate::protocol::{Message, WireFault};

/// Why a response body stopped before its end (only ever an `intercept` rule's
/// `fault: reset`: hyper then cuts the connection off).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, BodyError>;

/// A whole body.
pub fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn with_session(mut resp: Response<ResponseBody>, session: Option<&str>) -> Response<ResponseBody> {
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert(SESSION_HEADER, value);
    }
    resp
}

/// 202 Accepted, no body.
pub fn accepted(session: Option<&str>) -> Response<ResponseBody> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    with_session(resp, session)
}

/// 200 OK, no body.
pub fn empty_ok() -> Response<ResponseBody> {
    Response::new(empty())
}

/// The body of a JSON answer: the message's bytes, or what a wire fault on it says.
fn json_body(m: &Message) -> ResponseBody {
    let Some(by) = m.wire_fault() else { return full(m.bytes().clone()) };
    tracing::info!(rule = %by.rule, fault = by.fault.name(), "intercept: a JSON answer goes out under a wire fault");
    match &by.fault {
        WireFault::Malformed(bytes) => full(bytes.clone()),
        WireFault::Reset => Cut::new(&by.rule).boxed_unsync(),
        WireFault::Dribble { chunk, every } => Dribble::new(m.bytes().clone(), *chunk, *every).boxed_unsync(),
    }
}

/// 200 with one JSON-RPC message.
pub fn json_response(m: Message, session: Option<&str>) -> Response<ResponseBody> {
    let mut resp = Response::new(json_body(&m));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_session(resp, session)
}

/// 200 with an SSE stream.
pub fn sse_response(body: SseBody, session: Option<&str>) -> Response<ResponseBody> {
    let mut resp = Response::new(body.boxed_unsync());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    with_session(resp, session)
}

/// An error before the response has started: its status and a JSON-RPC error body
/// answering `id` (the request's id text, or `null`).
pub fn error_response(e: &GatewayError, id: Option<&str>) -> Response<ResponseBody> {
    let mut resp = Response::new(full(e.to_message(id).bytes().clone()));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match e {
        GatewayError::MethodNotAllowed(_) => {
            h.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        GatewayError::Overloaded(_) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        GatewayError::TooManyRequests { retry_after: Some(after), .. } => {
            // Whole seconds, rounded up: `Retry-After: 0` would invite a retry at once.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        _ => {}
    }
    if let Some(extra) = e.headers() {
        for (name, value) in extra {
            h.append(name.clone(), value.clone());
        }
    }
    if e.status().is_server_error() {
        tracing::warn!(error = %e, "request failed");
    } else {
        tracing::debug!(error = %e, "request refused");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Rejection;

    #[test]
    fn a_stages_rejection_carries_its_status_and_headers() {
        let challenge = HeaderValue::from_static(r#"Bearer resource_metadata="http://127.0.0.1/.well-known/x""#);
        let e: GatewayError = Rejection::new(StatusCode::UNAUTHORIZED, -32001, "token required")
            .header(header::WWW_AUTHENTICATE, challenge.clone())
            .label("unauthorized")
            .into();
        let resp = error_response(&e, Some("4"));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers().get(header::WWW_AUTHENTICATE), Some(&challenge));
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()), Some(&b"application/json"[..]));
        let body = e.to_message(Some("4")).to_value().expect("json");
        assert_eq!(
            (body["id"].clone(), body["error"]["code"].clone()),
            (serde_json::json!(4), serde_json::json!(-32001))
        );
        assert_eq!(e.label(), "unauthorized");
    }

    #[test]
    fn too_many_requests_sends_retry_after_in_whole_seconds() {
        let after = |d: Option<std::time::Duration>| {
            let e = GatewayError::TooManyRequests { detail: "x".into(), retry_after: d };
            let resp = error_response(&e, Some("1"));
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            resp.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap_or("").to_owned())
        };
        assert_eq!(after(None), None);
        assert_eq!(after(Some(std::time::Duration::from_millis(1500))).as_deref(), Some("2"));
        assert_eq!(after(Some(std::time::Duration::ZERO)).as_deref(), Some("1"));
    }
}
