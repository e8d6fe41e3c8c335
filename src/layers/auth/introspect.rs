//! Opaque access tokens, checked by the issuer's introspection endpoint (RFC 7662):
//! the gateway posts the token, authenticating as its own client
//! (`client_secret_basic`), and gets whether it is active with its claims.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::config::SecretValue;
use crate::upstream::http::connect::{build_clients, Clients};
use crate::upstream::http::oauth::{form, post_form};

/// The longest a connection to the endpoint may take (the request as a whole:
/// [`post_form`]'s bound).
const TIMEOUT: Duration = Duration::from_secs(5);

/// `issuers[].introspection` of the `auth` stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionOptions {
    /// The issuer's introspection endpoint.
    pub endpoint: String,
    /// The gateway's client at the issuer.
    pub client_id: String,
    /// Its secret (a secret value: literal, `{env: ...}` or `{file: ...}`).
    pub client_secret: SecretValue,
    /// How long an answer is used at most (less if the token expires sooner).
    #[serde(default = "default_cache", with = "crate::config::duration")]
    pub cache: Duration,
}

fn default_cache() -> Duration {
    Duration::from_secs(60)
}

/// One issuer's introspection endpoint.
pub struct Introspector {
    /// The issuer it speaks for.
    pub issuer: String,
    endpoint: String,
    /// `Basic base64(client_id:client_secret)`, both form-encoded (RFC 6749 2.3.1).
    authorization: String,
    /// How long an answer is used at most.
    pub cache: Duration,
    clients: Clients,
}

impl Introspector {
    /// The introspector of `issuer` (`https`, or `http` on loopback).
    pub fn new(issuer: &str, o: &IntrospectionOptions) -> Result<Introspector, String> {
        let uri: http::Uri = o.endpoint.parse().map_err(|e| format!("introspection.endpoint {:?}: {e}", o.endpoint))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => {}
            (Some("http"), Some(host)) if super::is_loopback(host) => {}
            _ => return Err(format!("introspection.endpoint {:?}: https:// (http:// on loopback only)", o.endpoint)),
        }
        let secret = o.client_secret.resolve().map_err(|e| format!("introspection.client_secret: {e}"))?;
        let pair = format!("{}:{}", form(&o.client_id), form(&secret));
        let authorization = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        Ok(Introspector {
            issuer: issuer.to_owned(),
            endpoint: o.endpoint.clone(),
            authorization,
            cache: o.cache,
            clients: build_clients(&uri, TIMEOUT)?,
        })
    }

    /// The claims of `token` if the issuer says it is active; why not otherwise.
    pub async fn introspect(&self, token: &str) -> Result<Value, String> {
        let body = format!("token={}&token_type_hint=access_token", form(token));
        let answer = post_form(&self.clients, &self.endpoint, Some(&self.authorization), body)
            .await
            .and_then(|(status, answer)| if status.is_success() { Ok(answer) } else { Err(format!("HTTP {status}")) });
        let answer = answer.map_err(|e| {
            // What went wrong is the operator's to know; the client hears only that
            // the token could not be checked.
            tracing::warn!(issuer = %self.issuer, error = %e, "auth: token introspection failed");
            "the token could not be checked".to_owned()
        })?;
        if answer.get("active").and_then(Value::as_bool) != Some(true) {
            return Err("the token is not active".into());
        }
        Ok(answer)
    }
}
