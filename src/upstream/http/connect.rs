//! The pooled HTTP clients of one upstream: plain TCP or TLS (rustls with the aws-lc-rs
//! provider and the system's roots), HTTP/1.1 or h2 by ALPN, with a connect timeout.
//!
//! One client (and so one connection pool) per thread that sends: a pooled connection
//! is driven by a task on the runtime that opened it, so a connection shared between
//! threads would cost two cross-thread wake-ups per request (request in, response
//! out). With `server.thread_per_core` a request is then read, proxied and answered
//! on one thread; on the multi-threaded runtime the pools follow the worker threads.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// One thread's client of an upstream.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The clients of one upstream, one per thread that uses it, built on first use from
/// one connector (one TLS configuration).
pub struct Clients {
    connector: HttpsConnector<HttpConnector>,
    per_thread: thread_local::ThreadLocal<HttpClient>,
}

impl Clients {
    /// The calling thread's client.
    pub fn get(&self) -> &HttpClient {
        self.per_thread.get_or(|| {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(POOL_MAX_IDLE)
                .build(self.connector.clone())
        })
    }
}

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host.
const POOL_MAX_IDLE: usize = 32;

/// Makes aws-lc-rs the process-wide rustls provider (once; a provider installed
/// earlier stays), so that every TLS user in the process agrees on one.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Builds the clients for an upstream at `uri` (the TLS configuration now, each
/// thread's client on its first request).
pub fn build_clients(uri: &Uri, connect_timeout: Duration) -> Result<Clients, String> {
    install_crypto_provider();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(60)));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(uri)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(Clients { connector, per_thread: thread_local::ThreadLocal::new() })
}

fn tls_config(uri: &Uri) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    // The system's roots are read only for https:// upstreams: a plain-HTTP upstream
    // must not need a CA bundle on the machine.
    let builder = if uri.scheme_str() == Some("https") {
        builder.with_native_roots().map_err(|e| {
            format!("cannot load the system's root certificates (install ca-certificates or set SSL_CERT_FILE): {e}")
        })?
    } else {
        builder.with_root_certificates(rustls::RootCertStore::empty())
    };
    Ok(builder.with_no_client_auth())
}

/// An error with its causes, outermost first, without repeats
/// ("client error (Connect): tcp connect error: Connection refused (os error 111)").
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

/// The URL for logs and errors: scheme, host, port and path; no user info (it may
/// hold a password) and no query (it may hold a key).
pub fn display_url(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
        None => format!("{scheme}://{host}{}", uri.path()),
    }
}

/// The URL without user info, for requests (user info is never sent on the wire).
pub fn request_uri(uri: &Uri) -> Result<Uri, String> {
    let Some(authority) = uri.authority() else {
        return Err("the URL has no host".into());
    };
    let host_port = authority.as_str().rsplit_once('@').map_or(authority.as_str(), |(_, hp)| hp);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let scheme = uri.scheme_str().unwrap_or("http");
    format!("{scheme}://{host_port}{path}").parse().map_err(|e| format!("invalid URL: {e}"))
}

/// Host and port to probe for readiness (brackets of an IPv6 literal removed).
pub fn probe_address(uri: &Uri) -> (String, u16) {
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials() {
        let uri: Uri = "https://user:secret@example.com:8443/mcp?key=abc".parse().expect("uri");
        assert_eq!(display_url(&uri), "https://example.com:8443/mcp");
        assert_eq!(request_uri(&uri).expect("uri").to_string(), "https://example.com:8443/mcp?key=abc");
        assert_eq!(probe_address(&uri), ("example.com".to_owned(), 8443));
        let v6: Uri = "http://[::1]/mcp".parse().expect("uri");
        assert_eq!(probe_address(&v6), ("::1".to_owned(), 80));
    }

    #[test]
    fn errors_list_their_causes_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(describe(&io), "refused");
    }
}
