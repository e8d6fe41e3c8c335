//! The gateway's own access tokens for an HTTP upstream, by the OAuth 2.1 client
//! credentials grant: asked for at the token endpoint with the client's credentials
//! (`client_secret_basic`, `client_secret_post` or `private_key_jwt`), kept until
//! shortly before they expire, asked for again after that or after the upstream
//! refuses one. A client's own token never goes upstream.

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full, Limited};
use parking_lot::Mutex;
use serde_json::Value;

use super::connect::{build_clients, describe, Clients};
use crate::config::{TokenEndpointAuth, UpstreamOAuth};

/// The longest a token request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest token response read.
const MAX_ANSWER: usize = 64 * 1024;

/// A token's lifetime when the authorization server does not say (`expires_in`).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// How the client proves itself at the token endpoint.
enum Credentials {
    Basic(String),
    Post(String),
    Jwt { key: Box<jsonwebtoken::EncodingKey>, alg: jsonwebtoken::Algorithm, kid: Option<String> },
}

/// One upstream's client.
pub struct ClientCredentials {
    endpoint: String,
    client_id: String,
    credentials: Credentials,
    scope: Option<String>,
    resource: String,
    refresh_before: Duration,
    clients: Clients,
    /// The current token (`Bearer ...`, sensitive) and when it is to be replaced.
    token: Mutex<Option<(HeaderValue, Instant)>>,
    /// One token request at a time.
    asking: tokio::sync::Mutex<()>,
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The DER inside a PEM block, and the block's label (`PRIVATE KEY`). By hand: a
/// PEM block is Base64 between two marker lines, and the `pem` crate would come with
/// jsonwebtoken's `use_pem` feature and its ASN.1 parser besides.
fn pem_block(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let body: String = rest.get(body_start..end)?.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    Some((label, der))
}

/// The signing key of `private_key_jwt`: PKCS#8 EC P-256 (`PRIVATE KEY`, ES256) or
/// PKCS#1 RSA (`RSA PRIVATE KEY`, RS256).
fn signing_key(pem: &str) -> Result<(jsonwebtoken::EncodingKey, jsonwebtoken::Algorithm), String> {
    let bad = || "oauth.private_key: not a PEM PKCS#8 EC (P-256) or PKCS#1 RSA private key".to_owned();
    let (label, der) = pem_block(pem).ok_or_else(bad)?;
    match label.as_str() {
        "PRIVATE KEY" | "EC PRIVATE KEY" => {
            // Checked now, so that a bad key is a start-up error rather than a failed call.
            aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
            )
            .map_err(|_| bad())?;
            Ok((jsonwebtoken::EncodingKey::from_ec_der(&der), jsonwebtoken::Algorithm::ES256))
        }
        "RSA PRIVATE KEY" => {
            aws_lc_rs::rsa::KeyPair::from_der(&der).map_err(|_| bad())?;
            Ok((jsonwebtoken::EncodingKey::from_rsa_der(&der), jsonwebtoken::Algorithm::RS256))
        }
        _ => Err(bad()),
    }
}

/// POSTs a form to an OAuth endpoint (token, introspection) and reads its JSON
/// answer, within [`TIMEOUT`] and [`MAX_ANSWER`]: the status and the JSON.
pub async fn post_form(
    clients: &Clients,
    url: &str,
    authorization: Option<&str>,
    body: String,
) -> Result<(http::StatusCode, Value), String> {
    let mut req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::ACCEPT, "application/json");
    if let Some(a) = authorization {
        req = req.header(http::header::AUTHORIZATION, a);
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
    let ask = async {
        let resp = clients.get().request(req).await.map_err(|e| describe(&e))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        let answer = serde_json::from_slice(&bytes).map_err(|_| format!("HTTP {status}, the answer is not JSON"))?;
        Ok((status, answer))
    };
    tokio::time::timeout(TIMEOUT, ask).await.map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}

impl ClientCredentials {
    /// The client of `o`, for an upstream at `upstream_url`. Reads its secrets now;
    /// contacts nobody.
    pub fn new(o: &UpstreamOAuth, upstream_url: &str) -> Result<ClientCredentials, String> {
        let uri: http::Uri = o.token_endpoint.parse().map_err(|e| format!("oauth.token_endpoint: {e}"))?;
        let secret = || -> Result<String, String> {
            o.client_secret
                .as_ref()
                .ok_or_else(|| format!("oauth: {:?} needs client_secret", o.auth_method))?
                .resolve()
                .map_err(|e| format!("oauth.client_secret: {e}"))
        };
        let credentials = match o.auth_method {
            TokenEndpointAuth::ClientSecretBasic => {
                let pair = format!("{}:{}", form(&o.client_id), form(&secret()?));
                Credentials::Basic(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            TokenEndpointAuth::ClientSecretPost => Credentials::Post(secret()?),
            TokenEndpointAuth::PrivateKeyJwt => {
                let pem = o
                    .private_key
                    .as_ref()
                    .ok_or("oauth: private_key_jwt needs private_key (PEM)")?
                    .resolve()
                    .map_err(|e| format!("oauth.private_key: {e}"))?;
                let (key, alg) = signing_key(&pem)?;
                Credentials::Jwt { key: Box::new(key), alg, kid: o.key_id.clone() }
            }
        };
        Ok(ClientCredentials {
            endpoint: o.token_endpoint.clone(),
            client_id: o.client_id.clone(),
            credentials,
            scope: o.scope.clone(),
            resource: o.resource.clone().unwrap_or_else(|| upstream_url.to_owned()),
            refresh_before: o.refresh_before,
            clients: build_clients(&uri, TIMEOUT)?,
            token: Mutex::new(None),
            asking: tokio::sync::Mutex::new(()),
        })
    }

    /// `Bearer <token>` for the next request: the kept one, or a new one.
    pub async fn authorization(&self) -> Result<HeaderValue, String> {
        if let Some(h) = self.current() {
            return Ok(h);
        }
        let _one = self.asking.lock().await;
        // Another request asked meanwhile.
        if let Some(h) = self.current() {
            return Ok(h);
        }
        let (token, lifetime) = self.ask().await?;
        let mut value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "the token is not a header value")?;
        value.set_sensitive(true);
        let replace_at = Instant::now() + lifetime.saturating_sub(self.refresh_before).max(lifetime / 2);
        *self.token.lock() = Some((value.clone(), replace_at));
        Ok(value)
    }

    /// The upstream refused the token: the next request asks for a new one.
    pub fn refused(&self) {
        self.token.lock().take();
    }

    fn current(&self) -> Option<HeaderValue> {
        match &*self.token.lock() {
            Some((h, until)) if Instant::now() < *until => Some(h.clone()),
            _ => None,
        }
    }

    /// The form of a token request: the grant, the scope, the resource and, by the
    /// method, the client's credentials.
    fn form(&self) -> Result<String, String> {
        let mut body = format!("grant_type=client_credentials&resource={}", form(&self.resource));
        if let Some(scope) = &self.scope {
            body.push_str(&format!("&scope={}", form(scope)));
        }
        match &self.credentials {
            Credentials::Basic(_) => {}
            Credentials::Post(secret) => {
                body.push_str(&format!("&client_id={}&client_secret={}", form(&self.client_id), form(secret)));
            }
            Credentials::Jwt { key, alg, kid } => {
                let now = jsonwebtoken::get_current_timestamp();
                let mut jti = [0u8; 16];
                aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no random bytes for the assertion")?;
                let claims = serde_json::json!({
                    "iss": self.client_id, "sub": self.client_id, "aud": self.endpoint,
                    "iat": now, "exp": now + 60,
                    "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
                });
                let mut header = jsonwebtoken::Header::new(*alg);
                header.kid = kid.clone();
                let assertion = jsonwebtoken::encode(&header, &claims, key).map_err(|e| format!("assertion: {e}"))?;
                body.push_str(&format!(
                    "&client_id={}&client_assertion_type={}&client_assertion={assertion}",
                    form(&self.client_id),
                    form("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                ));
            }
        }
        Ok(body)
    }

    /// A new token and its lifetime. Errors say what the server said, never a secret.
    async fn ask(&self) -> Result<(String, Duration), String> {
        let basic = match &self.credentials {
            Credentials::Basic(basic) => Some(basic.as_str()),
            _ => None,
        };
        let (status, answer) = post_form(&self.clients, &self.endpoint, basic, self.form()?)
            .await
            .map_err(|e| format!("the token endpoint {}: {e}", self.endpoint))?;
        if !status.is_success() {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("no error code");
            return Err(format!("the token endpoint {}: HTTP {status}: {error}", self.endpoint));
        }
        let token = answer.get("access_token").and_then(Value::as_str).ok_or("no access_token in the answer")?;
        let lifetime = answer.get("expires_in").and_then(Value::as_u64).map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((token.to_owned(), lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form("abc-._*"), "abc-._*");
    }
}
