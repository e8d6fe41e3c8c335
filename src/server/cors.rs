//! CORS for browser-based MCP clients: the origins `server.allowed_origins` allows
//! (and loopback ones on a loopback listener) may call the MCP endpoints and read
//! what a client needs of the answers.

use http::{HeaderMap, HeaderValue};

/// The request headers a browser client may send (and any `Mcp-Param-*`).
const ALLOWED: [&str; 9] = [
    "accept",
    "authorization",
    "content-type",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
    "traceparent",
];

/// Says `origin` may read the answer.
pub fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer headers a browser client may read.
pub fn exposed() -> HeaderValue {
    HeaderValue::from_static("Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, Retry-After")
}

/// The headers a preflight allows: every one it asks for that is allowed here.
pub fn allowed_headers(request: &HeaderMap) -> HeaderValue {
    let asked = request
        .get_all(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| ALLOWED.contains(&h.as_str()) || h.starts_with("mcp-param-"));
    let mut list: Vec<String> = ALLOWED.iter().map(|h| (*h).to_owned()).collect();
    list.extend(asked.filter(|h| h.starts_with("mcp-param-")));
    HeaderValue::from_str(&list.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("content-type"))
}
