//! What an upstream that answers 401 says about where a token comes from.
//!
//! The MCP authorization spec (2025-06-18 on) makes a protected MCP server publish
//! RFC 9728 protected resource metadata naming its authorization servers, found from
//! the `resource_metadata` parameter of its `WWW-Authenticate: Bearer` challenge, or
//! else at the well-known URI with the server's path inserted
//! (`/.well-known/oauth-protected-resource/<path>`), then at the root one. A 2025-03-26
//! server has none: its own origin is the authorization server, with RFC 8414 metadata
//! at `/.well-known/oauth-authorization-server`.
//!
//! The gateway does not run the OAuth flow for an upstream (that comes with the
//! authentication work); it turns the 401 into an error that says which authorization
//! server to get a token from. The discovery is bounded (a few small GETs, each within
//! the control timeout) and its outcome kept for a while, so a client retrying does not
//! make the gateway fetch the metadata again on every request.
//!
//! `WWW-Authenticate` is parsed here by hand: only the `Bearer` challenge's auth-params
//! (RFC 9110 §11.2: `token` or quoted-string values) are needed, and no well-kept crate
//! parses them without pulling a whole OAuth client in.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::Value;

use super::connect::HttpClient;
use super::shared::{read_body, ERROR_BODY_LIMIT};

/// How long a discovery's outcome is reused.
pub(super) const KEEP_FOR: Duration = Duration::from_secs(30);

pub use crate::error::Challenge;

/// Finds where the upstream at `upstream` wants tokens from, given its 401's headers.
pub(super) async fn discover(client: &HttpClient, upstream: &Uri, status: u16, headers: &HeaderMap) -> Challenge {
    let params = headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer_params)
        .unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let mut challenge = Challenge {
        status,
        authorization_servers: Vec::new(),
        found_at: None,
        tried: Vec::new(),
        by_default: false,
        scope: param("scope"),
        error: param("error"),
    };
    let mut candidates: Vec<String> = param("resource_metadata").into_iter().collect();
    candidates.extend(well_known(upstream, "oauth-protected-resource"));
    for url in candidates {
        if challenge.tried.contains(&url) {
            continue;
        }
        challenge.tried.push(url.clone());
        if let Some(doc) = fetch_json(client, &url).await {
            let servers: Vec<String> = doc["authorization_servers"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            if !servers.is_empty() {
                challenge.authorization_servers = servers;
                challenge.found_at = Some(url);
                return challenge;
            }
        }
    }
    // 2025-03-26: the MCP server's origin is its authorization server.
    if let Some(url) = origin(upstream).map(|o| format!("{o}/.well-known/oauth-authorization-server")) {
        challenge.tried.push(url.clone());
        if let Some(doc) = fetch_json(client, &url).await {
            let issuer = doc["issuer"].as_str().map(str::to_owned).or_else(|| origin(upstream));
            if let Some(issuer) = issuer.filter(|_| doc["authorization_endpoint"].is_string()) {
                challenge.authorization_servers = vec![issuer];
                challenge.found_at = Some(url);
                return challenge;
            }
        }
        challenge.authorization_servers = origin(upstream).into_iter().collect();
        challenge.by_default = true;
    }
    challenge
}

/// `scheme://authority` of an absolute URI.
fn origin(uri: &Uri) -> Option<String> {
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// The well-known URIs for `suffix` at the upstream: with its path inserted, then at
/// the root (RFC 9728 §3.1; the MCP spec's order).
fn well_known(uri: &Uri, suffix: &str) -> Vec<String> {
    let Some(origin) = origin(uri) else { return Vec::new() };
    let path = uri.path().trim_end_matches('/');
    let root = format!("{origin}/.well-known/{suffix}");
    if path.is_empty() {
        vec![root]
    } else {
        vec![format!("{root}{path}"), root]
    }
}

/// GETs a small JSON document; `None` on any failure (this only improves an error).
async fn fetch_json(client: &HttpClient, url: &str) -> Option<Value> {
    let uri: Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(http::header::ACCEPT, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::new()))
        .ok()?;
    let fetch = async {
        let resp = client.request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = read_body(resp, ERROR_BODY_LIMIT).await.ok()?;
        serde_json::from_slice::<Value>(&body).ok().filter(Value::is_object)
    };
    tokio::time::timeout(super::shared::CONTROL_TIMEOUT, fetch).await.ok().flatten()
}

/// The auth-params of the `Bearer` challenge in one `WWW-Authenticate` value, if it
/// has one: `Bearer realm="x", resource_metadata="https://..."` -> [(realm, x), ...].
/// A value may hold several challenges (`Basic realm="a", Bearer scope="b"`); a
/// malformed one yields what was read before the fault.
pub fn bearer_params(value: &str) -> Option<Vec<(String, String)>> {
    let mut p = Parser { s: value.as_bytes(), i: 0 };
    let mut in_bearer = false;
    let mut params = Vec::new();
    loop {
        p.skip(b" \t,");
        let Some(token) = p.token() else { break };
        p.skip(b" \t");
        if p.peek() == Some(b'=') && !p.is_token68_end() {
            // name = value, within the current challenge.
            p.i += 1;
            p.skip(b" \t");
            let Some(v) = (if p.peek() == Some(b'"') { p.quoted() } else { p.token() }) else { break };
            if in_bearer {
                params.push((token, v));
            }
        } else {
            // A new challenge's scheme, or a token68 (its padding is skipped).
            p.skip(b"=");
            if in_bearer {
                return Some(params);
            }
            in_bearer = token.eq_ignore_ascii_case("bearer");
        }
    }
    in_bearer.then_some(params)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|c| set.contains(&c)) {
            self.i += 1;
        }
    }

    /// Whether the `=` here ends a token68 (`abc==`) rather than starting a value.
    fn is_token68_end(&self) -> bool {
        let rest = &self.s[self.i..];
        let eqs = rest.iter().take_while(|&&c| c == b'=').count();
        rest[eqs..].iter().find(|c| !b" \t".contains(c)).is_none_or(|&c| c == b',')
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c)) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    self.i += 1;
                    out.push(self.peek()?);
                }
                c => out.push(c),
            }
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: &str) -> Option<Vec<(String, String)>> {
        bearer_params(v)
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn reads_the_bearer_challenge_params() {
        assert_eq!(
            params(
                r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#
            ),
            pairs(&[
                ("resource_metadata", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
                ("scope", "files:read files:write")
            ])
        );
        assert_eq!(params("bearer error=invalid_token"), pairs(&[("error", "invalid_token")]));
        assert_eq!(params("Bearer"), pairs(&[]));
        assert_eq!(params(r#"Bearer realm="a \"quoted\" realm""#), pairs(&[("realm", r#"a "quoted" realm"#)]));
    }

    #[test]
    fn finds_bearer_among_other_challenges() {
        assert_eq!(
            params(r#"Basic realm="x", Bearer scope="a", error="insufficient_scope", Negotiate abc=="#),
            pairs(&[("scope", "a"), ("error", "insufficient_scope")])
        );
        assert_eq!(params(r#"Negotiate abc==, Bearer scope="s""#), pairs(&[("scope", "s")]));
        assert_eq!(params(r#"Basic realm="x""#), None);
    }

    #[test]
    fn malformed_values_yield_what_was_read() {
        assert_eq!(params(r#"Bearer scope="unterminated"#), pairs(&[]));
        assert_eq!(params(""), None);
        // `Bearer =oops` reads as a parameter named Bearer, outside any challenge.
        assert_eq!(params("Bearer =oops"), None);
    }

    #[test]
    fn well_known_uris_insert_the_path_then_try_the_root() {
        let uri: Uri = "https://mcp.example.com/tenant/mcp/".parse().expect("uri");
        assert_eq!(
            well_known(&uri, "oauth-protected-resource"),
            vec![
                "https://mcp.example.com/.well-known/oauth-protected-resource/tenant/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource"
            ]
        );
        let root: Uri = "http://127.0.0.1:8080".parse().expect("uri");
        assert_eq!(
            well_known(&root, "oauth-protected-resource"),
            vec!["http://127.0.0.1:8080/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn describes_where_the_token_comes_from() {
        let mut c = Challenge {
            status: 401,
            authorization_servers: vec!["https://auth.example.com".into()],
            found_at: Some("https://mcp.example.com/.well-known/oauth-protected-resource".into()),
            tried: vec![],
            by_default: false,
            scope: Some("mcp".into()),
            error: None,
        };
        let text = c.describe();
        assert!(text.contains("authorization server https://auth.example.com"), "{text}");
        assert!(text.contains("named by https://mcp.example.com/.well-known/oauth-protected-resource"), "{text}");
        assert_eq!(c.data()["authorizationServers"][0], "https://auth.example.com");
        assert_eq!(c.data()["scope"], "mcp");
        c.authorization_servers.clear();
        c.tried = vec!["https://a".into(), "https://b".into()];
        let text = c.describe();
        assert!(text.contains("names no authorization server (tried https://a, https://b)"), "{text}");
        c.authorization_servers = vec!["https://mcp.example.com".into()];
        c.found_at = None;
        c.by_default = true;
        let text = c.describe();
        assert!(
            text.contains("by the 2025-03-26 default its authorization server is its origin https://mcp.example.com"),
            "{text}"
        );
        assert_eq!(c.data()["byDefault"], true);
    }
}
