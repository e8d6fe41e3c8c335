//! Keys from an issuer's metadata: OpenID Connect discovery
//! (`<issuer>/.well-known/openid-configuration`), else RFC 8414
//! (`<origin>/.well-known/oauth-authorization-server<path>`), then its `jwks_uri`.
//! Kept for [`KEYS_TTL`], fetched again when a token names a `kid` the keys lack (at
//! most once per [`MIN_REFRESH`], so that forged `kid`s cannot make the gateway hammer
//! the issuer). An issuer that cannot be reached keeps the keys it had.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use parking_lot::Mutex;
use serde_json::Value;

use super::keys::Keys;
use crate::upstream::http::connect::{build_clients, describe, Clients};

/// How long fetched keys are used before they are fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(300);

/// The least time between two fetches for an unknown `kid`, by default
/// (`auth.keys_min_refresh`).
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

/// The longest a metadata or JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest metadata or JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One issuer whose keys come from its metadata.
pub struct Discovered {
    issuer: String,
    clients: Clients,
    min_refresh: Duration,
    state: Mutex<State>,
    /// One fetch at a time (the others wait for it, then use its keys).
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Arc<Keys>,
    fetched: Option<Instant>,
    tried: Option<Instant>,
}

impl Discovered {
    /// An issuer at `issuer` (`https`, or `http` on loopback); nothing is fetched yet.
    pub fn new(issuer: &str, min_refresh: Duration) -> Result<Discovered, String> {
        let uri: http::Uri = issuer.parse().map_err(|e| format!("{issuer:?} is not a URL: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => {}
            (Some("http"), Some(host)) if super::is_loopback(host) => {}
            _ => return Err(format!("{issuer:?}: discovery needs an https:// issuer (http:// on loopback only)")),
        }
        Ok(Discovered {
            issuer: issuer.to_owned(),
            clients: build_clients(&uri, FETCH_TIMEOUT)?,
            min_refresh,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The keys fetched so far.
    pub fn keys(&self) -> Arc<Keys> {
        self.state.lock().keys.clone()
    }

    /// Whether the keys should be fetched (again) before a token is refused: never
    /// fetched, older than [`KEYS_TTL`], or (`unknown_kid`) lacking the token's key
    /// and not tried within the least time between fetches.
    pub fn due(&self, unknown_kid: bool) -> bool {
        let s = self.state.lock();
        let tried_lately = s.tried.is_some_and(|t| t.elapsed() < self.min_refresh);
        match s.fetched {
            None => !tried_lately,
            Some(f) if f.elapsed() >= KEYS_TTL => !tried_lately,
            Some(_) => unknown_kid && !tried_lately,
        }
    }

    /// Fetches the metadata and the keys; on failure (logged) the old keys stay.
    pub async fn refresh(&self) {
        let started = Instant::now();
        let _one = self.fetching.lock().await;
        // Another request fetched meanwhile.
        if self.state.lock().tried.is_some_and(|t| t >= started) {
            return;
        }
        self.state.lock().tried = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let mut s = self.state.lock();
                s.keys = Arc::new(keys);
                s.fetched = Some(Instant::now());
                tracing::info!(issuer = %self.issuer, "auth: the issuer's keys were fetched");
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "auth: the issuer's keys could not be fetched; the old ones stay")
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let base = self.issuer.trim_end_matches('/');
        let oidc = format!("{base}/.well-known/openid-configuration");
        let metadata = match self.get_json(&oidc).await {
            Ok(m) => m,
            Err(first) => {
                let uri: http::Uri = self.issuer.parse().map_err(|e| format!("{e}"))?;
                let path = uri.path().trim_end_matches('/');
                let origin =
                    format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map_or("", |a| a.as_str()));
                let rfc8414 = format!("{origin}/.well-known/oauth-authorization-server{path}");
                self.get_json(&rfc8414).await.map_err(|second| format!("{first}; {second}"))?
            }
        };
        // RFC 8414 section 3.3: the metadata must name the issuer it was fetched for.
        if metadata.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err("the metadata's issuer is not the configured one".into());
        }
        let jwks_uri = metadata.get("jwks_uri").and_then(Value::as_str).ok_or("the metadata has no jwks_uri")?;
        let jwks = self.get(jwks_uri).await?;
        Keys::from_jwks(&String::from_utf8_lossy(&jwks), jwks_uri)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let body = self.get(url).await?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// The body of a `GET` of `url` (a success, within the time and size bounds).
    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let fetch = async {
            let resp = self.clients.get().request(req).await.map_err(|e| format!("{url}: {}", describe(&e)))?;
            if !resp.status().is_success() {
                return Err(format!("{url}: HTTP {}", resp.status()));
            }
            Limited::new(resp.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{url}: cannot read the body: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
    }
}
