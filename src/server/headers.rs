//! Which client headers travel with a request into the pipeline (and on to HTTP
//! upstreams): never credentials, never hop-by-hop headers, never the transport
//! headers the gateway itself answers.

use http::HeaderMap;

/// Headers removed before a request goes upstream.
const DROPPED: &[&str] = &[
    // credentials: the client's never reach an upstream
    "authorization",
    "cookie",
    "proxy-authorization",
    // hop-by-hop (RFC 9110 section 7.6.1)
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // this hop's framing and transport state, which the gateway owns
    "host",
    "content-length",
    "accept-encoding",
    "mcp-session-id",
    "last-event-id",
    "origin",
];

/// The client's headers minus credentials, hop-by-hop headers (including those named
/// in `Connection`) and the gateway's own transport headers.
pub fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named_in_connection: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if DROPPED.contains(&n) || named_in_connection.iter().any(|c| c == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_credentials_and_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert("cookie", HeaderValue::from_static("a=b"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("mcp-protocol-version", HeaderValue::from_static("2025-06-18"));
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        let out = forwardable(&h);
        assert!(out.get("authorization").is_none());
        assert!(out.get("cookie").is_none());
        assert!(out.get("connection").is_none());
        assert!(out.get("x-private").is_none());
        assert_eq!(out.get("mcp-protocol-version").map(|v| v.as_bytes()), Some(&b"2025-06-18"[..]));
        assert!(out.get("x-request-id").is_some());
    }
}
