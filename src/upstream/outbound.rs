//! Which of a client's headers travel to an HTTP upstream: one allow-list for every
//! path (a client session's requests, the bridge's pooled sessions, the sessions the
//! gateway owns for 2025 clients of stateless servers), applied where a request
//! leaves for the upstream.
//!
//! Allowed: `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, the W3C
//! trace headers (`traceparent`, `tracestate`, `baggage`), `User-Agent`, and the
//! headers the upstream's `forward_headers` names. Everything else stays behind:
//! credentials (`Authorization`, cookies: the MCP authorization spec forbids passing
//! a client's token through), `X-Forwarded-*` / `Forwarded` (unless named), hop-by-hop
//! headers, and the transport headers the gateway sets itself (`Content-Type`,
//! `Accept`, `Mcp-Session-Id` rewritten to the upstream's, `Last-Event-ID` where the
//! gateway resumes).

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header in which the front hands the peer's address down to HTTP upstreams
/// configured with `forwarded: true` (the front replaces any the client sent; no
/// upstream ever receives it).
pub const PEER_HEADER: &str = "x-shadowcat-peer";

/// Client headers every upstream gets.
const ALLOWED: &[&str] =
    &["mcp-protocol-version", "mcp-method", "mcp-name", "traceparent", "tracestate", "baggage", "user-agent"];

/// A prefix of allowed client headers (2026-07-28 parameter headers).
const ALLOWED_PREFIX: &str = "mcp-param-";

/// The allow-list of one upstream.
#[derive(Debug, Clone, Default)]
pub struct OutboundHeaders {
    extra: Vec<HeaderName>,
    forwarded: bool,
}

impl OutboundHeaders {
    /// With the gateway's own `Forwarded` / `X-Forwarded-*` (`forwarded: true`).
    pub fn with_forwarded(mut self, forwarded: bool) -> Self {
        self.forwarded = forwarded;
        self
    }

    /// The default list plus `forward_headers` from the upstream's config.
    pub fn new(forward_headers: &[String]) -> Result<Self, String> {
        let mut extra = Vec::with_capacity(forward_headers.len());
        for (i, name) in forward_headers.iter().enumerate() {
            extra.push(crate::config::forward_header(name).map_err(|e| format!("forward_headers[{i}]: {e}"))?);
        }
        Ok(OutboundHeaders { extra, forwarded: false })
    }

    /// Whether a client header with this name may reach the upstream.
    pub fn allows(&self, name: &HeaderName) -> bool {
        let n = name.as_str();
        ALLOWED.contains(&n) || n.starts_with(ALLOWED_PREFIX) || self.extra.contains(name)
    }

    /// Appends the client's allowed headers to `out`; with `forwarded`, the
    /// gateway's own `Forwarded`, `X-Forwarded-For` and `X-Forwarded-Proto` from the
    /// peer address the front handed down.
    pub fn copy(&self, client: &HeaderMap, out: &mut HeaderMap) {
        for (name, value) in client {
            if self.allows(name) {
                out.append(name.clone(), value.clone());
            }
        }
        if !self.forwarded {
            return;
        }
        for name in ["forwarded", "x-forwarded-for", "x-forwarded-proto"] {
            out.remove(name);
        }
        if let Some(peer) = client.get(PEER_HEADER).and_then(|v| v.to_str().ok()) {
            let node = if peer.contains(':') { format!("\"[{peer}]\"") } else { peer.to_owned() };
            if let Ok(v) = HeaderValue::from_str(&format!("for={node};proto=http")) {
                out.insert("forwarded", v);
            }
            if let Ok(v) = HeaderValue::from_str(peer) {
                out.insert("x-forwarded-for", v);
            }
            out.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_goes_upstream() {
        let client = crate::test_support::headers(&[
            ("authorization", "Bearer secret"),
            ("cookie", "a=b"),
            ("proxy-authorization", "Basic x"),
            ("x-api-key", "k"),
            ("x-auth-token", "t"),
            ("forwarded", "for=10.0.0.1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "keep-alive"),
            ("mcp-session-id", "the-client-session"),
            ("last-event-id", "1-2"),
            ("content-type", "application/json"),
            ("host", "gateway"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-region", "eu"),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("tracestate", "a=b"),
            ("baggage", "k=v"),
            ("user-agent", "client/1"),
            ("x-tenant-id", "acme"),
        ]);
        let mut out = HeaderMap::new();
        OutboundHeaders::default().copy(&client, &mut out);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "baggage",
                "mcp-method",
                "mcp-name",
                "mcp-param-region",
                "mcp-protocol-version",
                "traceparent",
                "tracestate",
                "user-agent"
            ]
        );
        let mut out = HeaderMap::new();
        let tenant = OutboundHeaders::new(&["X-Tenant-Id".into(), "x-forwarded-for".into()]).expect("valid");
        tenant.copy(&client, &mut out);
        assert_eq!(out.get("x-tenant-id").map(|v| v.as_bytes()), Some(&b"acme"[..]));
        assert_eq!(out.get("x-forwarded-for").map(|v| v.as_bytes()), Some(&b"10.0.0.1"[..]));
        assert!(out.get("authorization").is_none());
    }

    #[test]
    fn forwarded_headers_are_the_gateways_own_when_asked_for() {
        let client = crate::test_support::headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            (PEER_HEADER, "127.0.0.7"),
        ]);
        let mut out = HeaderMap::new();
        OutboundHeaders::default().copy(&client, &mut out);
        assert!(out.is_empty(), "neither the client's nor ours without forwarded: {out:?}");
        let mut out = HeaderMap::new();
        let named = OutboundHeaders::new(&["x-forwarded-for".into()]).expect("valid").with_forwarded(true);
        named.copy(&client, &mut out);
        assert_eq!(
            out.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
            ["127.0.0.7"],
            "ours replace the client's"
        );
        assert_eq!(out["forwarded"], "for=127.0.0.7;proto=http");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert!(out.get(PEER_HEADER).is_none());
        let v6 = crate::test_support::headers(&[(PEER_HEADER, "::1")]);
        let mut out = HeaderMap::new();
        OutboundHeaders::default().with_forwarded(true).copy(&v6, &mut out);
        assert_eq!(out["forwarded"], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn credentials_and_transport_headers_cannot_be_named() {
        for name in ["Authorization", "cookie", "mcp-session-id", "connection"] {
            let err = OutboundHeaders::new(&[name.into()]).expect_err(name);
            assert!(err.contains("forward_headers[0]") && err.contains("cannot be forwarded"), "{err}");
        }
        let err = OutboundHeaders::new(&["bad header".into()]).expect_err("not a name");
        assert!(err.contains("not a header name"), "{err}");
    }
}
