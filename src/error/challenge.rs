//! What an upstream's 401 says about where a token comes from, as an error carries
//! it (the discovery itself is `upstream::http::challenge`).

use serde_json::{json, Value};

/// An upstream's authorization challenge and what its metadata names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The HTTP status the upstream answered with (401).
    pub status: u16,
    /// The authorization servers to get a token from (empty when none was found).
    pub authorization_servers: Vec<String>,
    /// Where they were read from: the protected resource metadata's URL, or the
    /// upstream origin's authorization server metadata (2025-03-26).
    pub found_at: Option<String>,
    /// The metadata URLs tried.
    pub tried: Vec<String>,
    /// No metadata was found: the authorization server named is the upstream's origin,
    /// by the 2025-03-26 rule for servers without metadata (default endpoints
    /// `/authorize`, `/token`, `/register`).
    pub by_default: bool,
    /// The challenge's `scope`, when it names one.
    pub scope: Option<String>,
    /// The challenge's `error` (`invalid_token`, `insufficient_scope`, ...).
    pub error: Option<String>,
}

impl Challenge {
    /// One sentence on where a token comes from.
    pub fn describe(&self) -> String {
        let why = match self.error.as_deref() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        match (self.authorization_servers.as_slice(), &self.found_at) {
            ([], _) => format!(
                "it answered HTTP {}{why} and names no authorization server (tried {})",
                self.status,
                self.tried.join(", ")
            ),
            ([origin], None) if self.by_default => format!(
                "it answered HTTP {}{why} and publishes no authorization metadata (tried {}); by the 2025-03-26 \
                 default its authorization server is its origin {origin} (/authorize, /token, /register)",
                self.status,
                self.tried.join(", ")
            ),
            (servers, found_at) => format!(
                "it answered HTTP {}{why}; get a token from its authorization server {}{}",
                self.status,
                servers.join(" or "),
                found_at.as_ref().map(|u| format!(" (named by {u})")).unwrap_or_default()
            ),
        }
    }

    /// The JSON-RPC error's `data`.
    pub fn data(&self) -> Value {
        let mut data = json!({
            "httpStatus": self.status,
            "authorizationServers": self.authorization_servers,
        });
        if let Some(u) = &self.found_at {
            data["metadata"] = json!(u);
        }
        if self.by_default {
            data["byDefault"] = json!(true);
        }
        if let Some(s) = &self.scope {
            data["scope"] = json!(s);
        }
        if let Some(e) = &self.error {
            data["error"] = json!(e);
        }
        data
    }
}
