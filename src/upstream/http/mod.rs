//! HTTP upstreams: remote Streamable HTTP MCP servers (revisions 2025-03-26,
//! 2025-06-18 and 2025-11-25).
//!
//! Pooled hyper-util clients per upstream, one per thread (keep-alive; HTTP/1.1, or h2
//! over TLS when the server offers it), serve every session. A gateway session maps to one
//! upstream session: [`HttpUpstream::open`] contacts nobody, the client's `initialize`
//! goes upstream like any other message, and the `Mcp-Session-Id` the upstream
//! answers with is sent on every later request of that session (the client only ever
//! sees the gateway's id). Replies are relayed as they come: JSON as one message,
//! SSE event by event, resumed with `Last-Event-ID` when the upstream closes a stream
//! before the response (see `stream`).

mod challenge;
pub mod connect;
pub mod oauth;
mod session;
mod shared;
mod sse;
mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

pub use challenge::Challenge;
pub use connect::install_crypto_provider;
pub use session::HttpSession;

use super::era::{self, Era, Verdict};
use crate::config::{EraSetting, HttpConfig};
use crate::error::GatewayError;
use crate::protocol::Message;
use crate::reply::McpReply;
use connect::Clients;
use shared::{is_sse, read_body, SessionShared, ACCEPT_POST, CONTROL_TIMEOUT, ERROR_BODY_LIMIT};

/// How often readiness is checked until the upstream has answered once.
const PROBE_EVERY: Duration = Duration::from_secs(3);
/// The bound on the first readiness check, which start-up waits for.
const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Limits of each session, from the upstream's config.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub max_request_timeout: Duration,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
}

/// What every session of one upstream shares: where it is, how to reach it, what to
/// send with each request, and its limits.
pub(crate) struct Target {
    pub name: Arc<str>,
    /// The URL requests go to (without user info).
    pub uri: Uri,
    /// The URL for logs (without user info and query).
    pub display: String,
    /// One pooled client per thread (see [`connect`]).
    pub clients: Clients,
    /// The config's `headers`, resolved once at start-up.
    pub static_headers: HeaderMap,
    /// Which client headers this upstream gets.
    pub outbound: super::OutboundHeaders,
    pub limits: Limits,
    ready: AtomicBool,
    probe_address: (String, u16),
    /// The last 401's discovery, and when it was made.
    challenge: Mutex<Option<(std::time::Instant, Arc<Challenge>)>>,
    /// The gateway's own client credentials for this upstream (`oauth`).
    oauth: Option<oauth::ClientCredentials>,
}

impl Target {
    /// Sends one request; a transport failure (refused, DNS, TLS, reset) is
    /// `UpstreamUnavailable` at once, and a 401 is `UpstreamUnauthorized` naming the
    /// authorization server. Any HTTP answer marks the upstream ready.
    pub async fn exchange(&self, req: Request<Full<Bytes>>, session: &str) -> Result<Response<Incoming>, GatewayError> {
        let method = req.method().clone();
        let result = match &self.oauth {
            None => self.clients.get().request(req).await,
            Some(oauth) => {
                // With the gateway's own token; one the upstream refuses is replaced
                // once, in case it was revoked or the server's keys rotated.
                let (parts, body) = req.into_parts();
                let mut first = Request::from_parts(parts.clone(), body.clone());
                first.headers_mut().insert(http::header::AUTHORIZATION, self.upstream_token(oauth).await?);
                match self.clients.get().request(first).await {
                    Ok(resp) if resp.status() == http::StatusCode::UNAUTHORIZED => {
                        oauth.refused();
                        let mut again = Request::from_parts(parts, body);
                        again.headers_mut().insert(http::header::AUTHORIZATION, self.upstream_token(oauth).await?);
                        self.clients.get().request(again).await
                    }
                    other => other,
                }
            }
        };
        match result {
            Ok(resp) if resp.status() == http::StatusCode::UNAUTHORIZED => {
                self.ready.store(true, Ordering::SeqCst);
                Err(self.unauthorized(resp.headers(), session, &method).await)
            }
            Ok(resp) => {
                self.ready.store(true, Ordering::SeqCst);
                Ok(resp)
            }
            Err(e) => {
                let cause = connect::describe(&e);
                tracing::warn!(upstream = %self.name, url = %self.display, session, %method, error = %cause,
                    "upstream request failed");
                let detail = if e.is_connect() {
                    format!("cannot connect ({cause})")
                } else {
                    format!("the {method} request failed ({cause})")
                };
                Err(GatewayError::UpstreamUnavailable { upstream: self.name.to_string(), detail })
            }
        }
    }

    /// `Bearer <token>` of the gateway's own client, or why there is none.
    async fn upstream_token(&self, oauth: &oauth::ClientCredentials) -> Result<HeaderValue, GatewayError> {
        oauth.authorization().await.map_err(|e| {
            tracing::warn!(upstream = %self.name, error = %e, "no access token for the upstream");
            GatewayError::UpstreamUnavailable {
                upstream: self.name.to_string(),
                detail: format!("no access token: {e}"),
            }
        })
    }

    /// The error for a 401: where the upstream wants tokens from (discovered, or
    /// reused from a discovery less than `challenge::KEEP_FOR` old).
    async fn unauthorized(&self, headers: &HeaderMap, session: &str, method: &http::Method) -> GatewayError {
        let kept = self.challenge.lock().clone().filter(|(at, _)| at.elapsed() < challenge::KEEP_FOR);
        let found = match kept {
            Some((_, c)) => c,
            None => {
                let c = Arc::new(challenge::discover(self.clients.get(), &self.uri, 401, headers).await);
                *self.challenge.lock() = Some((std::time::Instant::now(), c.clone()));
                c
            }
        };
        tracing::warn!(upstream = %self.name, url = %self.display, session, %method,
            authorization_servers = ?found.authorization_servers, "upstream answered 401: the gateway has no valid token for it");
        GatewayError::UpstreamUnauthorized { upstream: self.name.to_string(), challenge: Box::new((*found).clone()) }
    }

    /// An `UpstreamUnavailable` for this upstream.
    pub fn unavailable(&self, detail: impl Into<String>) -> GatewayError {
        GatewayError::UpstreamUnavailable { upstream: self.name.to_string(), detail: detail.into() }
    }

    /// One TCP connect to the upstream's host and port.
    async fn probe(&self, within: Duration) -> bool {
        let (host, port) = (&self.probe_address.0, self.probe_address.1);
        let ok = matches!(
            tokio::time::timeout(within, tokio::net::TcpStream::connect((host.as_str(), port))).await,
            Ok(Ok(_))
        );
        if ok {
            self.ready.store(true, Ordering::SeqCst);
        }
        ok
    }
}

/// An HTTP upstream: its clients, its session bound and its readiness.
pub struct HttpUpstream {
    target: Arc<Target>,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
    /// Bounds stateless requests in flight.
    stateless: Arc<Semaphore>,
    probe: Mutex<Option<AbortHandle>>,
    /// The era, once known (pinned by config, or probed).
    era: Mutex<Option<Era>>,
    /// One era probe at a time.
    era_probe: tokio::sync::Mutex<()>,
}

impl HttpUpstream {
    /// Builds the upstream from its config: resolves the static headers (secrets are
    /// read now) and the TLS configuration. Contacts nobody.
    pub fn new(name: &str, cfg: &HttpConfig) -> Result<Arc<Self>, String> {
        let parsed: Uri = cfg.url.parse().map_err(|e| format!("url: {e}"))?;
        if !matches!(parsed.scheme_str(), Some("http") | Some("https")) || parsed.host().is_none() {
            return Err(format!("url: {} must be an absolute http:// or https:// URL", connect::display_url(&parsed)));
        }
        if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
            tracing::warn!(upstream = name, "user info in the upstream URL is ignored; put credentials in `headers`");
        }
        let uri = connect::request_uri(&parsed).map_err(|e| format!("url: {e}"))?;
        let mut static_headers = HeaderMap::new();
        for (key, value) in &cfg.headers {
            let header =
                HeaderName::from_bytes(key.as_bytes()).map_err(|_| format!("headers.{key}: not a header name"))?;
            let resolved = value.resolve().map_err(|e| format!("headers.{key}: {e}"))?;
            let mut v =
                HeaderValue::from_str(&resolved).map_err(|_| format!("headers.{key}: not a valid header value"))?;
            v.set_sensitive(true);
            static_headers.append(header, v);
        }
        let clients = connect::build_clients(&uri, cfg.connect_timeout).map_err(|e| format!("url: {e}"))?;
        let target = Target {
            name: name.into(),
            display: connect::display_url(&uri),
            probe_address: connect::probe_address(&uri),
            uri,
            clients,
            static_headers,
            outbound: super::OutboundHeaders::new(&cfg.forward_headers)?.with_forwarded(cfg.forwarded),
            limits: Limits {
                max_in_flight: cfg.max_in_flight.max(1),
                request_timeout: cfg.request_timeout,
                max_request_timeout: cfg.max_request_timeout.max(cfg.request_timeout),
                max_message_bytes: cfg.max_message_bytes,
                connect_timeout: cfg.connect_timeout,
            },
            ready: AtomicBool::new(false),
            challenge: Mutex::new(None),
            oauth: match &cfg.oauth {
                Some(o) => Some(oauth::ClientCredentials::new(o, &cfg.url)?),
                None => None,
            },
        };
        Ok(Arc::new(HttpUpstream {
            target: Arc::new(target),
            sessions: Arc::new(Semaphore::new(cfg.max_sessions)),
            max_sessions: cfg.max_sessions,
            stateless: Arc::new(Semaphore::new(cfg.max_sessions.saturating_mul(cfg.max_in_flight.max(1)).max(1))),
            probe: Mutex::new(None),
            era: Mutex::new(match cfg.era {
                EraSetting::Auto => None,
                EraSetting::Modern => Some(Era::Modern { versions: vec!["2026-07-28".into()] }),
                EraSetting::Legacy => Some(Era::Legacy),
            }),
            era_probe: tokio::sync::Mutex::new(()),
        }))
    }

    /// Checks readiness once; until the upstream is reachable, again every few
    /// seconds in the background.
    pub async fn start(self: &Arc<Self>) {
        let target = self.target.clone();
        let first = target.limits.connect_timeout.min(FIRST_PROBE_TIMEOUT);
        if target.probe(first).await {
            tracing::info!(upstream = %target.name, url = %target.display, "upstream reachable");
            return;
        }
        tracing::warn!(upstream = %target.name, url = %target.display,
            "upstream not reachable yet; checking again every {PROBE_EVERY:?}");
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if target.ready.load(Ordering::SeqCst) || target.probe(target.limits.connect_timeout).await {
                    tracing::info!(upstream = %target.name, url = %target.display, "upstream reachable");
                    break;
                }
            }
        });
        *self.probe.lock() = Some(task.abort_handle());
    }

    /// Whether the upstream has been reached (a TCP connect or any HTTP answer).
    pub fn is_ready(&self) -> bool {
        self.target.ready.load(Ordering::SeqCst)
    }

    /// A session for a new client session. Nothing is sent: the client's
    /// `initialize` creates the upstream session.
    pub async fn open(self: &Arc<Self>, session_tag: &str) -> Result<HttpSession, GatewayError> {
        let permit = self.sessions.clone().try_acquire_owned().map_err(|_| {
            GatewayError::Overloaded(format!(
                "upstream {} has reached max_sessions ({})",
                self.target.name, self.max_sessions
            ))
        })?;
        Ok(HttpSession::new(self.target.clone(), session_tag.to_owned(), permit))
    }

    /// The era, when known without asking the upstream.
    pub fn known_era(&self) -> Option<Era> {
        self.era.lock().clone()
    }

    /// The upstream's era: pinned by config, else probed once with `server/discover`
    /// and cached. A probe without a verdict (unreachable, 5xx, 401) is an error and is
    /// tried again on the next call.
    pub async fn era(&self) -> Result<Era, GatewayError> {
        if let Some(era) = self.era.lock().clone() {
            return Ok(era);
        }
        let _one = self.era_probe.lock().await;
        if let Some(era) = self.era.lock().clone() {
            return Ok(era);
        }
        match self.probe_era().await? {
            Verdict::Known(era) => {
                tracing::info!(upstream = %self.target.name, url = %self.target.display, ?era, "upstream era probed");
                *self.era.lock() = Some(era.clone());
                Ok(era)
            }
            Verdict::Unknown(why) => {
                tracing::warn!(upstream = %self.target.name, url = %self.target.display, %why,
                    "cannot tell the upstream's protocol era yet");
                Err(self.target.unavailable(format!("its protocol era is unknown: {why}")))
            }
        }
    }

    async fn probe_era(&self) -> Result<Verdict, GatewayError> {
        let shared = SessionShared::new(self.target.clone(), "era-probe".into());
        let probe = era::probe_message();
        let mut headers = HeaderMap::new();
        headers.insert("mcp-protocol-version", HeaderValue::from_static("2026-07-28"));
        headers.insert("mcp-method", HeaderValue::from_static("server/discover"));
        let req = shared.request(http::Method::POST, &headers, ACCEPT_POST, Some(probe.bytes().clone()), None)?;
        let bound = self.target.limits.request_timeout.min(CONTROL_TIMEOUT);
        let exchange = async {
            let resp = self.target.exchange(req, "era-probe").await?;
            let status = resp.status().as_u16();
            let sse = is_sse(&resp);
            let body = read_body(resp, ERROR_BODY_LIMIT).await.unwrap_or_default();
            Ok::<_, GatewayError>((status, sse, body))
        };
        let (status, sse, body) = tokio::time::timeout(bound, exchange)
            .await
            .map_err(|_| self.target.unavailable(format!("the era probe got no answer within {bound:?}")))??;
        let answer = if sse { sse::find_response(&body, era::PROBE_ID) } else { Some(body) };
        let answer = answer.filter(|b| serde_json::from_slice::<serde_json::Value>(b).is_ok());
        Ok(era::classify_http(status, answer.as_deref()))
    }

    /// Sends one stateless (2026-07-28) request as it came: no session, the client's
    /// routing headers forwarded, the reply relayed as JSON or SSE. The client closing
    /// its response stream closes the upstream one.
    ///
    /// At most `max_sessions` × `max_in_flight` run at once; more get 503.
    pub async fn send_stateless(&self, m: Message, headers: &HeaderMap) -> Result<McpReply, GatewayError> {
        let permit = self.stateless.clone().try_acquire_owned().map_err(|_| {
            GatewayError::Overloaded(format!(
                "upstream {} has {} stateless requests in flight (max_sessions x max_in_flight)",
                self.target.name,
                self.max_sessions * self.target.limits.max_in_flight
            ))
        })?;
        let mut reply = HttpSession::stateless(self.target.clone()).send(m, headers).await?;
        if let crate::reply::ReplyBody::Stream(stream) = reply.body {
            // The permit is held until the reply stream ends or is dropped.
            let held = futures_util::StreamExt::map(stream, move |m| {
                let _ = &permit;
                m
            });
            reply.body = crate::reply::ReplyBody::Stream(Box::pin(held));
        }
        Ok(reply)
    }

    /// Stops the readiness checks (sessions are closed by the session store).
    pub async fn shutdown(&self) {
        if let Some(probe) = self.probe.lock().take() {
            probe.abort();
        }
    }
}

#[cfg(test)]
mod tests;
