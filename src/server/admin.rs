//! The admin listener: `/healthz` (the process is up), `/readyz` (every upstream can
//! serve), `/metrics` (Prometheus text format), `/stages` (the stages with an admin
//! handle, as a JSON list of names) and `/stages/<name>` (that stage's state, JSON).
//! Everything here is read-only.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use metrics_exporter_prometheus::PrometheusHandle;

use super::ResponseBody;
use crate::pipeline::StageControls;
use crate::upstream::Upstream;

/// What the admin endpoints look at.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Upstreams by name, for `/readyz`.
    pub upstreams: Vec<(String, Upstream)>,
    /// The stages' handles, for `/stages`.
    pub controls: StageControls,
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut resp = text(status, format!("{value}\n"));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

impl Admin {
    /// Serves one admin request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<ResponseBody> {
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "the admin listener is read-only\n".into());
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match req.uri().path() {
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
}
