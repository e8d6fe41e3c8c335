//! The admin listener: `/healthz` (the process is up), `/readyz` (every upstream can
//! serve), `/metrics` (Prometheus text format), `/stages` (the stages with an admin
//! handle, as a JSON list of names) and `/stages/<name>` (that stage's state, JSON)
//! are open to anyone who reaches the listener. `/stages/<name>/...` are the stage's
//! own endpoints (the intercept stage's rules and paused messages): with `admin.token`
//! set, every one of them needs `Authorization: Bearer <token>`; without it, those
//! that change anything are refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusHandle;

use super::ResponseBody;
use crate::pipeline::{AdminCall, AdminReply, StageControls};
use crate::upstream::Upstream;

/// What the admin endpoints look at.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Upstreams by name, for `/readyz`.
    pub upstreams: Vec<(String, Upstream)>,
    /// The stages' handles, for `/stages`.
    pub controls: StageControls,
    /// `admin.token`, resolved.
    pub token: Option<String>,
}

/// The largest body a stage endpoint takes (a rule file, an edited message).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// How often an idle event stream sends a comment, so that proxies keep it open.
const EVENTS_KEEPALIVE: Duration = Duration::from_secs(15);

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut resp = text(status, format!("{value}\n"));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(super::response::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

impl Admin {
    /// Serves one admin request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_owned();
        if let Some((name, rest)) = path.strip_prefix("/stages/").and_then(|p| p.split_once('/')) {
            return self.stage_call(name, rest, req).await;
        }
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "this endpoint is read-only\n".into());
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match path.as_str() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let waiting: Vec<&str> =
                    self.upstreams.iter().filter(|(_, u)| !u.is_ready()).map(|(n, _)| n.as_str()).collect();
                if waiting.is_empty() {
                    text(StatusCode::OK, "ready\n".into())
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", waiting.join(", ")))
                }
            }
            "/metrics" => match &self.metrics {
                Some(handle) => {
                    let mut resp = text(StatusCode::OK, handle.render());
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                    resp
                }
                None => text(StatusCode::NOT_FOUND, "metrics recorder not installed\n".into()),
            },
            "/stages" => json(StatusCode::OK, &serde_json::json!(self.controls.names())),
            path => match path.strip_prefix("/stages/").and_then(|name| self.controls.get(name)) {
                Some(control) => json(StatusCode::OK, &control.status()),
                None => text(StatusCode::NOT_FOUND, "not found\n".into()),
            },
        }
    }

    /// `/stages/<name>/<rest>`: authorized here, then the stage's.
    async fn stage_call<B>(&self, name: &str, rest: &str, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(control) = self.controls.get(name) else {
            return error(StatusCode::NOT_FOUND, &format!("no stage named {name} has admin endpoints"));
        };
        let reads = req.method() == http::Method::GET || req.method() == http::Method::HEAD;
        match &self.token {
            None if !reads => {
                return error(
                    StatusCode::FORBIDDEN,
                    "admin.token is not set: endpoints that change anything are refused",
                );
            }
            None => {}
            Some(token) => {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim);
                if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
                    let what = if given.is_some() { "the admin token is wrong" } else { "an admin token is required" };
                    let mut resp = error(StatusCode::UNAUTHORIZED, what);
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return resp;
                }
            }
        }
        let (parts, body) = req.into_parts();
        let body = match http_body_util::Limited::new(body, BODY_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("cannot read the body (at most {BODY_LIMIT} bytes): {e}"),
                )
            }
        };
        let path = rest.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        match control.call(AdminCall { method: parts.method, path, body }) {
            AdminReply::Json(status, value) => json(status, &value),
            AdminReply::Events(events) => event_stream(events),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<ResponseBody> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Serves `events` as SSE: one `data:` line of JSON each, a comment when idle.
fn event_stream(
    events: std::pin::Pin<Box<dyn futures_core::Stream<Item = serde_json::Value> + Send>>,
) -> Response<ResponseBody> {
    use futures_util::StreamExt;
    let ticks = futures_util::stream::unfold(tokio::time::interval(EVENTS_KEEPALIVE), |mut every| async move {
        every.tick().await;
        Some((Bytes::from_static(b": keep-alive\n\n"), every))
    });
    let data = events.map(|v| Bytes::from(format!("data: {v}\n\n")));
    let body = futures_util::stream::select(data, ticks)
        .map(|b| Ok::<_, super::response::BodyError>(http_body::Frame::data(b)));
    let mut resp = Response::new(http_body_util::StreamBody::new(body).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
