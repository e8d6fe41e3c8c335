//! The transport checks of the HTTP front, in the order they run (the README's
//! table): Origin/Host, method, Accept, Content-Type, size, JSON, version, session.

use std::net::SocketAddr;

use http::{header, HeaderMap, Method};

use crate::error::GatewayError;
use crate::protocol::ProtocolVersion;

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// `Last-Event-ID`.
pub const LAST_EVENT_ID: &str = "last-event-id";

const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1", "[::1]"];

/// Which `Origin` and `Host` values are allowed.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    loopback: bool,
    origins: Vec<String>,
    hosts: Vec<String>,
}

impl OriginPolicy {
    /// The policy for a listener bound to `bound`.
    pub fn new(bound: SocketAddr, origins: &[String], hosts: &[String]) -> Self {
        OriginPolicy {
            loopback: bound.ip().is_loopback(),
            origins: origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        (self.loopback && LOOPBACK_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)))
            || self.hosts.iter().any(|h| h == "*" || h.eq_ignore_ascii_case(name))
    }

    /// Checks `Host` and `Origin` (DNS rebinding protection): 403 when not allowed.
    pub fn check(&self, headers: &HeaderMap, uri_host: Option<&str>) -> Result<(), GatewayError> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(uri_host);
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(GatewayError::Forbidden(format!("Host {host:?} is not allowed")));
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if self.origin_allowed(&origin) {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(format!("Origin {origin:?} is not allowed")))
        }
    }

    /// Whether a request with this `Origin` (lower case) is served.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || *o == origin)
            || (self.loopback && origin_host(origin).is_some_and(|h| LOOPBACK_NAMES.contains(&h)))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn origin_host(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(strip_port(rest.split('/').next()?))
}

/// 405 unless the method is GET, POST or DELETE.
pub fn check_method(method: &Method) -> Result<(), GatewayError> {
    if matches!(*method, Method::GET | Method::POST | Method::DELETE) {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed(format!("{method} is not served here; use POST, GET or DELETE")))
    }
}

fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let media = item.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case(wanted)
            || media == "*/*"
            || media.strip_suffix("/*").is_some_and(|k| k.eq_ignore_ascii_case(kind))
    })
}

/// 406 unless `Accept` covers what the method needs: POST both `application/json` and
/// `text/event-stream`, GET `text/event-stream`.
pub fn check_accept(method: &Method, headers: &HeaderMap) -> Result<(), GatewayError> {
    let needed: &[&str] = match *method {
        Method::POST => &["application/json", "text/event-stream"],
        Method::GET => &["text/event-stream"],
        _ => &[],
    };
    match needed.iter().find(|m| !accepts(headers, m)) {
        None => Ok(()),
        Some(missing) => Err(GatewayError::NotAcceptable(format!("the Accept header must include {missing}"))),
    }
}

/// 415 unless a POST body is `application/json`.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType(format!("Content-Type must be application/json, not {ct:?}")))
    }
}

/// The version the client declared: `Ok(None)` when it declared none, 400 when it is
/// not one the gateway speaks.
pub fn declared_version(headers: &HeaderMap) -> Result<Option<ProtocolVersion>, GatewayError> {
    let Some(value) = headers.get(VERSION_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    ProtocolVersion::parse(text).map(Some).ok_or_else(|| GatewayError::UnsupportedVersion(text.to_owned()))
}

/// The session id the client sent, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn origin_policy_on_loopback() {
        let p = OriginPolicy::new("127.0.0.1:8080".parse().expect("addr"), &["https://app.example".into()], &[]);
        assert!(p.check(&headers(&[("host", "localhost:8080")]), None).is_ok());
        assert!(p.check(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://localhost:3000")]), None).is_ok());
        assert!(p.check(&headers(&[("host", "[::1]:8080")]), None).is_ok());
        assert!(p.check(&headers(&[("host", "localhost"), ("origin", "https://app.example")]), None).is_ok());
        assert!(p.check(&headers(&[("host", "evil.example")]), None).is_err());
        assert!(p.check(&headers(&[("host", "localhost"), ("origin", "http://evil.example")]), None).is_err());
        assert!(p.check(&headers(&[("host", "localhost"), ("origin", "null")]), None).is_err());
    }

    #[test]
    fn origin_policy_off_loopback() {
        let p = OriginPolicy::new("0.0.0.0:8080".parse().expect("addr"), &[], &["mcp.example".into()]);
        assert!(p.check(&headers(&[("host", "mcp.example:8080")]), None).is_ok());
        assert!(p.check(&headers(&[("host", "localhost:8080")]), None).is_err());
        assert!(p.check(&headers(&[("host", "mcp.example"), ("origin", "http://localhost")]), None).is_err());
    }

    #[test]
    fn accept_rules() {
        assert!(check_accept(&Method::POST, &headers(&[("accept", "application/json, text/event-stream")])).is_ok());
        assert!(check_accept(&Method::POST, &headers(&[("accept", "*/*")])).is_ok());
        assert!(check_accept(&Method::POST, &headers(&[("accept", "application/json")])).is_err());
        assert!(check_accept(&Method::POST, &HeaderMap::new()).is_err());
        assert!(check_accept(&Method::GET, &headers(&[("accept", "text/event-stream")])).is_ok());
        assert!(check_accept(&Method::GET, &headers(&[("accept", "application/json")])).is_err());
        assert!(check_accept(&Method::DELETE, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn content_type_and_version() {
        assert!(check_content_type(&headers(&[("content-type", "application/json; charset=utf-8")])).is_ok());
        assert!(check_content_type(&headers(&[("content-type", "text/plain")])).is_err());
        assert_eq!(
            declared_version(&headers(&[("mcp-protocol-version", "2025-06-18")])).ok().flatten(),
            Some(ProtocolVersion::V2025_06_18)
        );
        assert!(declared_version(&headers(&[("mcp-protocol-version", "1999-01-01")])).is_err());
        assert_eq!(declared_version(&HeaderMap::new()).ok().flatten(), None);
    }
}
