//! The HTTP front as a `tower::Service`, assembled with `ServiceBuilder`:
//!
//! ```text
//! SetSensitiveRequestHeaders (Authorization, Proxy-Authorization, Cookie, Mcp-Session-Id)
//!  └ SetRequestId / PropagateRequestId (x-request-id: the client's, else a new one)
//!     └ Shed (server.max_concurrent_requests: 503 at once, never a queue)
//!        └ FrontService (Front::handle: the MCP endpoints and other endpoints)
//! ```
//!
//! The listener calls it for every request (see `serve`). tower-http layers fit here:
//! a layer added to [`http_service`] sees every request, GET resumptions and non-MCP
//! endpoints included. Endpoints that are not MCP endpoints (protected resource
//! metadata, for one) are registered on the [`Front`] with [`Front::with_endpoint`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue, Request, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use super::response::error_response;
use super::{client_of, Front, ResponseBody};
use crate::error::GatewayError;
use crate::pipeline::{Refusal, RefusalObservers, Transport};

/// The front's service stack over `front`, bounded by `shed` (shared by every stack
/// built with it).
pub fn http_service<B>(
    front: Arc<Front>,
    shed: &ShedLayer,
) -> impl Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let sensitive: [HeaderName; 4] =
        [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, HeaderName::from_static(super::SESSION_HEADER)];
    ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new(sensitive))
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(shed.clone())
        .service(FrontService { front })
}

// === impl FrontService ===

/// [`Front::handle`] as a service.
#[derive(Clone)]
pub struct FrontService {
    front: Arc<Front>,
}

impl<B> Service<Request<B>> for FrontService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    // Boxed: hyper keeps one slot for the request future per connection, as big as
    // the future, for as long as the connection lives; the whole request path
    // (about 3 KiB) would otherwise stay allocated for every idle keep-alive
    // connection. One allocation per request instead.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let front = self.front.clone();
        Box::pin(async move { Ok(front.handle(req).await) })
    }
}

// === impl NewRequestId ===

/// `x-request-id` for requests that come without one: 16 random hex digits.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = rand::random::<u64>();
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

// === impl ShedLayer ===

/// Answers 503 at once past `max` requests in progress (no queue: a client told to
/// retry is better off than one left waiting behind a stuck upstream).
///
/// The count is one shared atomic: taking and giving back a place is one atomic add
/// each, with no lock (a semaphore's release takes its waiters' lock, and nothing
/// here ever waits).
#[derive(Clone)]
pub struct ShedLayer {
    in_flight: Option<Arc<AtomicUsize>>,
    max: usize,
    refusals: RefusalObservers,
}

impl ShedLayer {
    /// At most `max` requests at once (0: no bound); refusals are told to `refusals`.
    pub fn new(max: usize, refusals: RefusalObservers) -> Self {
        ShedLayer { in_flight: (max > 0).then(|| Arc::new(AtomicUsize::new(0))), max, refusals }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, layer: Arc::new(self.clone()) }
    }
}

/// The service of [`ShedLayer`].
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    // Behind one Arc: the listener clones the whole stack for every request.
    layer: Arc<ShedLayer>,
}

impl<S, B> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let permit = match &self.layer.in_flight {
            None => None,
            Some(count) => match Place::take(count, self.layer.max) {
                Some(place) => Some(place),
                None => return ShedFuture { inner: None, shed: Some(self.shed(&req)), _permit: None },
            },
        };
        ShedFuture { inner: Some(self.inner.call(req)), shed: None, _permit: permit }
    }
}

impl<S> Shed<S> {
    fn shed<B>(&self, req: &Request<B>) -> Response<ResponseBody> {
        let e = GatewayError::Overloaded(format!(
            "the gateway is working on server.max_concurrent_requests ({}) requests; retry shortly",
            self.layer.max
        ));
        let peer = client_of(req.extensions());
        self.layer.refusals.notify(&Refusal {
            error: &e,
            transport: Transport::Http,
            peer: peer.as_deref(),
            method: req.method().as_str(),
            path: req.uri().path(),
            headers: req.headers(),
            id: None,
        });
        error_response(&e, None)
    }
}

/// One of the `max` places of requests in progress, given back when dropped.
pub struct Place(Arc<AtomicUsize>);

impl Place {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Place> {
        // Relaxed: the count guards no other memory.
        if count.fetch_add(1, Ordering::Relaxed) >= max {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Place(count.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Shed`]: the inner one (holding a permit), or the 503.
    pub struct ShedFuture<F> {
        #[pin]
        inner: Option<F>,
        shed: Option<Response<ResponseBody>>,
        _permit: Option<Place>,
    }
}

impl<F> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>>,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => Poll::Ready(Ok(this.shed.take().unwrap_or_else(|| {
                error_response(&GatewayError::Internal("a shed request was polled twice".into()), None)
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt, Full};
    use serde_json::Value;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;
    use crate::pipeline::{McpReply, McpRequest, McpService};
    use crate::protocol::Message;
    use crate::session::SessionStore;

    /// A front whose pipeline answers every request with an empty result, waiting for `gate` first when given.
    fn front(gate: Option<Arc<Notify>>) -> Front {
        let pipeline = McpService::new(tower::service_fn(move |req: McpRequest| {
            let gate = gate.clone();
            async move {
                if let Some(gate) = gate {
                    gate.notified().await;
                }
                let id = req.msg().and_then(|m| m.id_key()).unwrap_or("null").to_owned();
                let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
                Message::parse(body.into_bytes())
                    .map(McpReply::message)
                    .map_err(|e| GatewayError::Internal(e.to_string()))
            }
        }));
        let bound = "127.0.0.1:8080".parse().expect("addr");
        let settings = super::super::FrontSettings {
            max_body_bytes: 1024,
            sse_keepalive: Duration::from_secs(20),
            sse_retry: Duration::from_secs(1),
        };
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        Front::new(
            pipeline,
            SessionStore::new(Duration::from_secs(60)),
            ["/mcp".to_owned()],
            super::super::OriginPolicy::new(bound, &[], &[]),
            settings,
            shutdown,
        )
    }

    fn stateless_list(request_id: Option<&str>) -> Request<Full<Bytes>> {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let mut b = Request::post("http://127.0.0.1:8080/mcp")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list");
        if let Some(id) = request_id {
            b = b.header("x-request-id", id);
        }
        b.body(Full::new(Bytes::from_static(body.as_bytes()))).expect("request")
    }

    #[tokio::test]
    async fn request_ids_are_kept_or_made() {
        let svc = http_service::<Full<Bytes>>(Arc::new(front(None)), &ShedLayer::new(0, RefusalObservers::default()));
        let resp = svc.clone().oneshot(stateless_list(Some("client-id-1"))).await.expect("response");
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(resp.headers().get("x-request-id").map(|v| v.as_bytes()), Some(&b"client-id-1"[..]));
        let resp = svc.oneshot(stateless_list(None)).await.expect("response");
        let made = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(made.len(), 16, "{made}");
    }

    #[tokio::test]
    async fn past_the_bound_requests_get_503_at_once() {
        let gate = Arc::new(Notify::new());
        // Two stacks (two front threads) built with one bound share it.
        let bound = ShedLayer::new(1, RefusalObservers::default());
        let svc = http_service::<Full<Bytes>>(Arc::new(front(Some(gate.clone()))), &bound);
        let other_thread = http_service::<Full<Bytes>>(Arc::new(front(Some(gate.clone()))), &bound);
        let held = tokio::spawn(svc.clone().oneshot(stateless_list(None)));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let shed = other_thread.oneshot(stateless_list(None)).await.expect("response");
        assert_eq!(shed.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
        let body: Value =
            serde_json::from_slice(&shed.into_body().collect().await.expect("body").to_bytes()).expect("json");
        assert_eq!(body["error"]["code"], -32000);
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("max_concurrent_requests")), "{body}");
        gate.notify_one();
        assert_eq!(held.await.expect("join").expect("response").status(), http::StatusCode::OK);
        gate.notify_one();
        let after = svc.oneshot(stateless_list(None)).await.expect("response");
        assert_eq!(after.status(), http::StatusCode::OK, "the permit came back");
    }

    #[tokio::test]
    async fn other_endpoints_sit_beside_the_mcp_ones() {
        let doc = tower::util::BoxCloneSyncService::new(tower::service_fn(|req: Request<Bytes>| async move {
            let hidden = req.headers().get("authorization").is_none_or(|v| v.is_sensitive());
            let text = format!("{} {} sensitive={hidden}", req.method(), req.uri().path());
            Ok::<_, Infallible>(Response::new(crate::server::response::full(Bytes::from(text))))
        }));
        let front = front(None).with_endpoint("/.well-known/oauth-protected-resource/mcp", doc);
        let svc = http_service::<Full<Bytes>>(Arc::new(front), &ShedLayer::new(0, RefusalObservers::default()));
        let get = |path: &str, origin: Option<&str>| {
            let mut b = Request::get(format!("http://127.0.0.1:8080{path}")).header("authorization", "Bearer t");
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            b.body(Full::new(Bytes::new())).expect("request")
        };
        let resp = svc.clone().oneshot(get("/.well-known/oauth-protected-resource/mcp", None)).await.expect("response");
        assert_eq!(resp.status(), http::StatusCode::OK);
        let text = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            &text[..],
            b"GET /.well-known/oauth-protected-resource/mcp sensitive=true",
            "credentials are marked sensitive"
        );
        let foreign = get("/.well-known/oauth-protected-resource/mcp", Some("https://evil.example"));
        assert_eq!(svc.clone().oneshot(foreign).await.expect("response").status(), http::StatusCode::FORBIDDEN);
        assert_eq!(svc.oneshot(get("/elsewhere", None)).await.expect("response").status(), http::StatusCode::NOT_FOUND);
    }
}
