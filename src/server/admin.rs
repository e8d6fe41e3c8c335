//! The admin listener: `/healthz` (the process is up), `/readyz` (every upstream can
//! serve), `/metrics` (Prometheus text format).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use metrics_exporter_prometheus::PrometheusHandle;

use super::ResponseBody;
use crate::upstream::Upstream;

/// What the admin endpoints look at.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Upstreams by name, for `/readyz`.
    pub upstreams: Vec<(String, Upstream)>,
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
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}
