//! `auth`: the gateway as an OAuth 2.1 resource server (the MCP authorization
//! specification, RFC 6750, RFC 8707, RFC 9728). Every request of every client over
//! HTTP carries a bearer JWT; the stage checks its signature, issuer, audience (this
//! resource), lifetime and scopes, and attaches the [`Principal`] for later stages;
//! anything else is refused with the challenge the specification asks for. The
//! token itself goes no further (upstreams never get a client's `Authorization`).
//!
//! ```yaml
//! pipeline:
//!   - auth:
//!       resource: https://mcp.example.com/mcp     # the audience; the metadata's `resource`
//!       issuers:
//!         - issuer: https://issuer.internal
//!           jwks_file: /etc/shadowcat/jwks.json   # the issuer's signing keys
//!       scopes: [mcp:tools]                       # needed by every request (optional)
//!       tool_scopes: { run_sql: [db:write] }      # and by these tools' calls
//! ```
//!
//! The protected resource metadata (RFC 9728) is served at the path-suffixed
//! well-known URL of `resource` (`/.well-known/oauth-protected-resource/mcp`).
//! Verified tokens are cached by a digest of the token until they expire, so a
//! client's repeated token costs a lookup, not a signature check. Forward stdio has
//! no credentials to check: its one client is the local process that started it.

mod discovery;
mod introspect;
mod keys;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{BuildContext, StageDef, StageFn};
use crate::config::SecretValue;
use crate::error::{GatewayError, Rejection};
use crate::pipeline::{CallInfo, Flow, McpRequest, Principal, Stage, StageLayer, Transport, Verdict};
use discovery::Discovered;
use keys::Keys;

/// The registry entry.
pub const STAGE: StageDef = StageDef { name: "auth", build, must_follow: &[] };

/// The JSON-RPC code of a request refused for its credentials (HTTP 401 or 400).
pub const UNAUTHORIZED_CODE: i32 = -32010;

/// The JSON-RPC code of a request refused for want of scope (HTTP 403).
pub const FORBIDDEN_CODE: i32 = -32011;

/// Verified tokens kept at most (when full, the expired ones go; then all).
const TOKEN_CACHE: usize = 10_000;

/// The asymmetric algorithms accepted by default (HMAC only for an issuer with a
/// `secret`; `none` never).
const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerOptions {
    issuer: String,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    /// An HMAC secret (then HS256/384/512 are accepted from this issuer only).
    #[serde(default)]
    secret: Option<SecretValue>,
    /// Its introspection endpoint (RFC 7662), for opaque tokens.
    #[serde(default)]
    introspection: Option<introspect::IntrospectionOptions>,
}

/// A static API key, for machine clients without OAuth: its SHA-256, never the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyOptions {
    /// Who presents it (the principal's subject).
    id: String,
    /// The hex SHA-256 of the key (`shadowcat auth hash-key`).
    sha256: String,
    /// The scopes it carries.
    #[serde(default)]
    scopes: Vec<String>,
    /// More claims for later stages (`groups`, ...).
    #[serde(default)]
    claims: serde_json::Map<String, Value>,
}

/// The issuer a principal of an API key has (`principal.issuer` in policies).
pub const API_KEY_ISSUER: &str = "shadowcat:api-key";

/// Options of the `auth` stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    resource: String,
    /// Other routes' identifiers (route path -> resource URI), each with its own
    /// metadata and audience; routes not named use `resource`.
    #[serde(default)]
    route_resources: BTreeMap<String, String>,
    #[serde(default)]
    issuers: Vec<IssuerOptions>,
    #[serde(default)]
    api_keys: Vec<ApiKeyOptions>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    method_scopes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    tool_scopes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default = "default_leeway", with = "crate::config::duration")]
    leeway: Duration,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default = "default_min_refresh", with = "crate::config::duration")]
    keys_min_refresh: Duration,
}

fn default_min_refresh() -> Duration {
    discovery::MIN_REFRESH
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}

fn build(options: &Value, ctx: &BuildContext) -> Result<StageFn, String> {
    if options.is_null() {
        return Err("needs `resource` (this resource's URI, the audience tokens must carry) and `issuers`".into());
    }
    let o: Options = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
    if !ctx.routes.is_empty() {
        if let Some(route) = o.route_resources.keys().find(|r| !ctx.routes.contains_key(*r)) {
            return Err(format!("route_resources: there is no route {route:?}"));
        }
    }
    let auth = Auth::new(o)?;
    for r in std::iter::once(&auth.inner.resource).chain(auth.inner.routes.values()) {
        ctx.endpoints.register(&r.metadata_path, "application/json", auth.metadata_document(r));
    }
    let layer = StageLayer::new(auth);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// The `auth` stage.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

/// A protected resource: its identifier (the audience its tokens carry) and where
/// its metadata is.
struct Resource {
    /// Its place in the token cache's keys (0: `resource`; then the routes').
    index: usize,
    uri: String,
    /// The path of the protected resource metadata, and its absolute URL.
    metadata_path: String,
    metadata_url: String,
}

impl Resource {
    /// The resource `uri` (absolute, https or http on loopback, no query or fragment).
    fn new(index: usize, uri: &str, key: &str) -> Result<Resource, String> {
        let parsed: http::Uri = uri.parse().map_err(|e| format!("{key}: {uri:?} is not a URI: {e}"))?;
        let (Some(scheme), Some(authority)) = (parsed.scheme_str(), parsed.authority()) else {
            return Err(format!("{key}: {uri:?} must be an absolute URI (https://host/path)"));
        };
        match scheme {
            "https" => {}
            "http" if is_loopback(authority.host()) => {}
            "http" => return Err(format!("{key}: {uri:?}: http:// is accepted on loopback only")),
            other => return Err(format!("{key}: {uri:?}: scheme {other} is not https")),
        }
        if parsed.query().is_some() || uri.contains('#') {
            return Err(format!("{key}: {uri:?} must have no query or fragment (RFC 8707)"));
        }
        let path = parsed.path().trim_end_matches('/');
        let metadata_path = format!("/.well-known/oauth-protected-resource{path}");
        let metadata_url = format!("{scheme}://{authority}{metadata_path}");
        Ok(Resource { index, uri: uri.to_owned(), metadata_path, metadata_url })
    }
}

struct Inner {
    /// This resource (every route not in `routes`).
    resource: Resource,
    /// Routes with identifiers of their own.
    routes: HashMap<String, Resource>,
    issuers: HashMap<String, IssuerKeys>,
    scopes: Vec<String>,
    method_scopes: BTreeMap<String, Vec<String>>,
    tool_scopes: BTreeMap<String, Vec<String>>,
    authorization_servers: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    /// Verified tokens by the SHA-256 of the token and the resource they were
    /// verified for: the principal, its scopes and when the token expires (seconds
    /// since the epoch).
    verified: Mutex<HashMap<([u8; 32], usize), Verified>>,
    /// Static API keys by their SHA-256.
    api_keys: HashMap<[u8; 32], Verified>,
    /// The issuers that introspect opaque tokens, in the order configured.
    introspectors: Vec<Arc<introspect::Introspector>>,
    /// Opaque tokens every introspection endpoint called inactive, and when: asked
    /// again only after [`INACTIVE_TTL`], so that a client repeating a dead token
    /// does not make the gateway ask the issuer each time.
    inactive: Mutex<HashMap<[u8; 32], std::time::Instant>>,
}

/// How long an opaque token found inactive is refused without asking again.
const INACTIVE_TTL: Duration = Duration::from_secs(30);

/// Where an issuer's keys come from.
enum IssuerKeys {
    /// A JWKS file or a secret, read at start.
    Fixed(Arc<Keys>),
    /// Its metadata, fetched when needed.
    Discovered(Arc<Discovered>),
}

/// Why a token did not pass (yet).
enum Failure {
    /// Refused, with what to tell the client.
    Refused(String),
    /// Its issuer's keys are to be fetched first.
    Fetch(Arc<Discovered>),
    /// Not a JWT: the issuers' introspection endpoints are to be asked.
    Introspect,
}

impl From<&str> for Failure {
    fn from(why: &str) -> Failure {
        Failure::Refused(why.to_owned())
    }
}

#[derive(Clone)]
struct Verified {
    principal: Principal,
    scopes: Arc<HashSet<String>>,
    expires: u64,
}

/// The principals of the configured API keys, by the keys' SHA-256.
fn api_keys(list: &[ApiKeyOptions]) -> Result<HashMap<[u8; 32], Verified>, String> {
    let mut out = HashMap::new();
    for (i, k) in list.iter().enumerate() {
        let at = |e: &str| format!("api_keys[{i}] ({}): {e}", k.id);
        if k.id.is_empty() {
            return Err(at("`id` is empty"));
        }
        let hex = k.sha256.trim().to_ascii_lowercase();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|j| hex.get(j..j + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect();
        let digest: [u8; 32] = match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(d) if hex.len() == 64 => d,
            _ => return Err(at("`sha256` must be 64 hex digits (the SHA-256 of the key: `shadowcat auth hash-key`)")),
        };
        let mut claims = k.claims.clone();
        claims.insert("sub".into(), Value::String(k.id.clone()));
        claims.insert("iss".into(), Value::String(API_KEY_ISSUER.into()));
        claims.entry("client_id").or_insert_with(|| Value::String(k.id.clone()));
        claims.insert("scope".into(), Value::String(k.scopes.join(" ")));
        let principal =
            Principal { id: Arc::from(format!("{API_KEY_ISSUER} {}", k.id)), claims: Arc::new(Value::Object(claims)) };
        let verified = Verified { principal, scopes: Arc::new(k.scopes.iter().cloned().collect()), expires: u64::MAX };
        if out.insert(digest, verified).is_some() {
            return Err(at("the same key is listed twice"));
        }
    }
    Ok(out)
}

/// The hex SHA-256 of an API key, as `api_keys[].sha256` wants it.
pub fn hash_key(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `host` is a loopback name or address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Auth {
    fn new(o: Options) -> Result<Auth, String> {
        let resource = Resource::new(0, &o.resource, "resource")?;
        let mut routes = HashMap::new();
        for (i, (route, uri)) in o.route_resources.iter().enumerate() {
            routes.insert(route.clone(), Resource::new(i + 1, uri, &format!("route_resources.{route}"))?);
        }
        if o.issuers.is_empty() && o.api_keys.is_empty() {
            return Err("issuers: at least one issuer (or `api_keys`) is needed".into());
        }
        let api_keys = api_keys(&o.api_keys)?;
        let mut issuers = HashMap::new();
        let mut introspectors = Vec::new();
        let mut hmac = false;
        for (i, issuer) in o.issuers.iter().enumerate() {
            let at = |e: String| format!("issuers[{i}] ({}): {e}", issuer.issuer);
            if let Some(options) = &issuer.introspection {
                introspectors.push(Arc::new(introspect::Introspector::new(&issuer.issuer, options).map_err(at)?));
            }
            let keys = match (&issuer.jwks_file, &issuer.secret) {
                (Some(path), None) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| at(format!("jwks_file: cannot read {}: {e}", path.display())))?;
                    IssuerKeys::Fixed(Arc::new(Keys::from_jwks(&text, &path.display().to_string()).map_err(at)?))
                }
                (None, Some(secret)) => {
                    hmac = true;
                    let secret = secret.resolve().map_err(|e| at(format!("secret: {e}")))?;
                    if secret.len() < 32 {
                        return Err(at("secret: at least 32 bytes for HMAC".into()));
                    }
                    IssuerKeys::Fixed(Arc::new(Keys::from_secret(secret.as_bytes()).map_err(at)?))
                }
                (Some(_), Some(_)) => return Err(at("jwks_file and secret: one or the other".into())),
                (None, None) => {
                    IssuerKeys::Discovered(Arc::new(Discovered::new(&issuer.issuer, o.keys_min_refresh).map_err(at)?))
                }
            };
            if issuers.insert(issuer.issuer.clone(), keys).is_some() {
                return Err(at("listed twice".into()));
            }
        }
        let algorithms = match &o.algorithms {
            None => {
                let mut all = DEFAULT_ALGORITHMS.to_vec();
                if hmac {
                    all.extend([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
                }
                all
            }
            Some(names) => names
                .iter()
                .map(|n| match n.parse::<Algorithm>() {
                    Ok(a) => Ok(a),
                    Err(_) => Err(format!("algorithms: {n:?} is not a JWS algorithm (and `none` is never accepted)")),
                })
                .collect::<Result<_, _>>()?,
        };
        let authorization_servers = if o.authorization_servers.is_empty() {
            o.issuers.iter().map(|i| i.issuer.clone()).collect()
        } else {
            o.authorization_servers
        };
        Ok(Auth {
            inner: Arc::new(Inner {
                resource,
                routes,
                issuers,
                scopes: o.scopes,
                method_scopes: o.method_scopes,
                tool_scopes: o.tool_scopes,
                authorization_servers,
                algorithms,
                leeway: o.leeway,
                verified: Mutex::new(HashMap::new()),
                api_keys,
                introspectors,
                inactive: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The protected resource metadata document (RFC 9728).
    fn metadata_document(&self, r: &Resource) -> bytes::Bytes {
        let i = &self.inner;
        let mut scopes: Vec<&String> =
            i.scopes.iter().chain(i.method_scopes.values().flatten()).chain(i.tool_scopes.values().flatten()).collect();
        scopes.sort();
        scopes.dedup();
        let doc = json!({
            "resource": r.uri,
            "authorization_servers": i.authorization_servers,
            "bearer_methods_supported": ["header"],
            "scopes_supported": scopes,
            "resource_name": "Shadowcat",
        });
        bytes::Bytes::from(doc.to_string())
    }

    /// The `WWW-Authenticate` challenge: the metadata URL, the scopes to ask for,
    /// and the error (none when no token was given).
    fn challenge(&self, r: &Resource, scope: &[&str], error: Option<(&str, &str)>) -> HeaderValue {
        let mut text = format!("Bearer resource_metadata=\"{}\"", r.metadata_url);
        if !scope.is_empty() {
            text.push_str(&format!(", scope=\"{}\"", scope.join(" ")));
        }
        if let Some((error, description)) = error {
            // A description with a quote or a backslash would end the quoted string.
            let description: String = description.chars().filter(|c| *c != '"' && *c != '\\').collect();
            text.push_str(&format!(", error=\"{error}\", error_description=\"{description}\""));
        }
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// The scopes a request needs: those of every request, its method's, its tool's.
    fn needed<'a>(&'a self, req: &McpRequest) -> Vec<&'a str> {
        let msg = req.msg();
        let method = msg.and_then(|m| m.method());
        let tool = msg.and_then(|m| m.tool_name());
        let i = &self.inner;
        let mut needed: Vec<&str> = i.scopes.iter().map(String::as_str).collect();
        for s in method.and_then(|m| i.method_scopes.get(m)).into_iter().flatten() {
            needed.push(s);
        }
        for s in tool.and_then(|t| i.tool_scopes.get(t)).into_iter().flatten() {
            needed.push(s);
        }
        needed.sort_unstable();
        needed.dedup();
        needed
    }

    fn refuse(&self, status: StatusCode, code: i32, message: &str, challenge: HeaderValue) -> Verdict<McpRequest> {
        let label = if status == StatusCode::FORBIDDEN { "forbidden" } else { "unauthorized" };
        let rejection =
            Rejection::new(status, code, message).header(http::header::WWW_AUTHENTICATE, challenge).label(label);
        Verdict::Fail(GatewayError::from(rejection))
    }

    /// The principal of `token`, verified now or earlier; `may_fetch`: a token whose
    /// discovered issuer's keys are due to be fetched asks for that first.
    fn verify(&self, token: &str, may_fetch: bool, r: &Resource) -> Result<Verified, Failure> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if let Some(v) = self.inner.api_keys.get(&key) {
            return Ok(v.clone());
        }
        let now = jsonwebtoken::get_current_timestamp();
        let key = (key, r.index);
        if let Some(v) = self.inner.verified.lock().get(&key) {
            if v.expires + self.inner.leeway.as_secs() > now {
                return Ok(v.clone());
            }
        }
        let verified = self.check(token, may_fetch, r)?;
        self.remember(key, &verified, now);
        Ok(verified)
    }

    /// Keeps a verified token for its next requests (bounded: when full, the expired
    /// ones go; then all).
    fn remember(&self, key: ([u8; 32], usize), verified: &Verified, now: u64) {
        let mut cache = self.inner.verified.lock();
        if cache.len() >= TOKEN_CACHE {
            cache.retain(|_, v| v.expires > now);
            if cache.len() >= TOKEN_CACHE {
                cache.clear();
            }
        }
        cache.insert(key, verified.clone());
    }

    /// An opaque token, by introspection at each issuer that offers it, in order.
    async fn introspect(&self, token: &str, r: &Resource) -> Result<Verified, String> {
        const INACTIVE: &str = "the token is not active";
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if self.inner.inactive.lock().get(&key).is_some_and(|at| at.elapsed() < INACTIVE_TTL) {
            return Err(INACTIVE.into());
        }
        let mut why = INACTIVE.to_owned();
        let mut all_inactive = true;
        for i in &self.inner.introspectors {
            match i.introspect(token).await {
                Ok(answer) => {
                    let verified = self.introspected(i, answer, r)?;
                    self.remember((key, r.index), &verified, jsonwebtoken::get_current_timestamp());
                    return Ok(verified);
                }
                Err(e) => {
                    all_inactive &= e == INACTIVE;
                    why = e;
                }
            }
        }
        // Only a definite answer is kept: an issuer that could not answer is asked again.
        if all_inactive {
            let mut inactive = self.inner.inactive.lock();
            if inactive.len() >= TOKEN_CACHE {
                inactive.retain(|_, at| at.elapsed() < INACTIVE_TTL);
                if inactive.len() >= TOKEN_CACHE {
                    inactive.clear();
                }
            }
            inactive.insert(key, std::time::Instant::now());
        }
        Err(why)
    }

    /// The principal of an active token's introspection answer, after the checks a
    /// JWT gets: its audience (when given) is this resource, its issuer (when given)
    /// the one asked, it has not expired.
    fn introspected(&self, i: &introspect::Introspector, answer: Value, r: &Resource) -> Result<Verified, String> {
        let now = jsonwebtoken::get_current_timestamp();
        let Value::Object(mut claims) = answer else { return Err("the introspection answer is not an object".into()) };
        let exp = claims.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|e| e + self.inner.leeway.as_secs() <= now) {
            return Err("the token has expired".into());
        }
        let for_us = match claims.get("aud") {
            None => true,
            Some(Value::String(a)) => *a == r.uri,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(r.uri.as_str())),
            Some(_) => false,
        };
        if !for_us {
            return Err("the token is for another resource".into());
        }
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if iss != i.issuer => return Err("the token's issuer is not trusted here".into()),
            Some(_) => {}
            None => {
                claims.insert("iss".into(), Value::String(i.issuer.clone()));
            }
        }
        let sub = claims
            .get("sub")
            .or_else(|| claims.get("client_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        claims.entry("sub").or_insert_with(|| Value::String(sub.clone()));
        let claims = Value::Object(claims);
        let scopes = scopes_of(&claims);
        let cached_until = now + i.cache.as_secs();
        let principal = Principal { id: Arc::from(format!("{} {sub}", i.issuer)), claims: Arc::new(claims) };
        Ok(Verified { principal, scopes: Arc::new(scopes), expires: exp.map_or(cached_until, |e| e.min(cached_until)) })
    }

    /// Checks `token` whole: its header's algorithm and key, then signature, issuer,
    /// audience and lifetime.
    fn check(&self, token: &str, may_fetch: bool, r: &Resource) -> Result<Verified, Failure> {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) if !self.inner.introspectors.is_empty() => return Err(Failure::Introspect),
            Err(e) => return Err(Failure::Refused(format!("not a JWT: {e}"))),
        };
        if !self.inner.algorithms.contains(&header.alg) {
            return Err(Failure::Refused(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let issuer = unverified_issuer(token).ok_or("the token names no issuer")?;
        let keys = match self.inner.issuers.get(&issuer).ok_or("the token's issuer is not trusted here")? {
            IssuerKeys::Fixed(keys) => keys.clone(),
            IssuerKeys::Discovered(d) => {
                let keys = d.keys();
                let known = keys.find(header.kid.as_deref(), header.alg).is_some();
                if may_fetch && d.due(!known) {
                    return Err(Failure::Fetch(d.clone()));
                }
                keys
            }
        };
        let key = keys.find(header.kid.as_deref(), header.alg).ok_or("no key of the issuer verifies this token")?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&r.uri]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.inner.leeway.as_secs();
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| Failure::Refused(describe(&e)))?;
        let claims = data.claims;
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let scopes = scopes_of(&claims);
        let principal = Principal { id: Arc::from(format!("{issuer} {sub}")), claims: Arc::new(claims) };
        Ok(Verified { principal, scopes: Arc::new(scopes), expires })
    }

    /// What becomes of `req` with the outcome of its token's check.
    /// The resource a route is (its own, or `resource`).
    fn resource_for(&self, route: &str) -> &Resource {
        self.inner.routes.get(route).unwrap_or(&self.inner.resource)
    }

    fn decide(&self, mut req: McpRequest, outcome: Result<Verified, String>) -> Verdict<McpRequest> {
        let r = self.resource_for(&req.route);
        let needed = self.needed(&req);
        let verified = match outcome {
            Ok(v) => v,
            Err(why) => {
                tracing::debug!(reason = %why, "a bearer token was refused");
                let challenge = self.challenge(r, &needed, Some(("invalid_token", &why)));
                return self.refuse(
                    StatusCode::UNAUTHORIZED,
                    UNAUTHORIZED_CODE,
                    &format!("invalid token: {why}"),
                    challenge,
                );
            }
        };
        let missing: Vec<&str> = needed.iter().copied().filter(|s| !verified.scopes.contains(*s)).collect();
        if !missing.is_empty() {
            let challenge =
                self.challenge(r, &needed, Some(("insufficient_scope", "the token lacks a scope this call needs")));
            let message = format!("insufficient scope: this call needs {}", missing.join(" "));
            return self.refuse(StatusCode::FORBIDDEN, FORBIDDEN_CODE, &message, challenge);
        }
        // A session is its opener's: another principal holding its id is told what a
        // client with an unknown id is.
        if let Some(owner) = req.session.as_ref().and_then(|s| s.owner()) {
            if owner != &*verified.principal.id {
                tracing::warn!(
                    session = req.session.as_ref().map_or("", |s| s.tag()),
                    "auth: a principal presented another principal's session id"
                );
                return Verdict::Fail(GatewayError::UnknownSession);
            }
        }
        // The token goes no further than this stage.
        req.headers.remove(http::header::AUTHORIZATION);
        req.context.extensions.insert(verified.principal);
        Verdict::Pass(req)
    }
}

/// What a failed check tells the client (never the token).
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet".into(),
        K::InvalidAudience => "the token is for another resource".into(),
        K::InvalidIssuer => "the token's issuer is not trusted here".into(),
        K::InvalidSignature => "the token's signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        K::InvalidAlgorithm => "the token's algorithm does not fit its key".into(),
        _ => "the token is not valid".into(),
    }
}

/// The `iss` claim, read before verification (only to pick the issuer's keys).
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token).ok()?.iss
}

/// The words of the claims `names`, each a space-separated string or a list of
/// strings (`scope`, `scp`, `groups`).
pub fn claim_words<'a>(claims: &'a Value, names: &'a [&str]) -> impl Iterator<Item = &'a str> + 'a {
    names.iter().filter_map(|n| claims.get(*n)).flat_map(|v| {
        let words: Vec<&str> = match v {
            Value::String(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        words
    })
}

/// The token's scopes: `scope` (space-separated, RFC 8693 and RFC 9068) or `scp`
/// (a list or a string).
fn scopes_of(claims: &Value) -> HashSet<String> {
    claim_words(claims, &["scope", "scp"]).map(str::to_owned).collect()
}

/// The bearer token of a request, `Ok(None)` when it has none; more than one
/// credential is an error.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, &'static str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let text = first.to_str().map_err(|_| "the Authorization header is not text")?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme is no bearer token: answered like none (RFC 6750 section 3).
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err("the bearer token is empty or has spaces in it");
    }
    Ok(Some(token))
}

impl Stage for Auth {
    type Call = ();

    fn begin(&self, _req: &McpRequest) {}

    fn on_request(&self, _call: &(), _info: &CallInfo, req: McpRequest) -> Flow<McpRequest> {
        if req.context.transport == Transport::Stdio {
            return Flow::pass(req);
        }
        let token = match bearer(&req.headers) {
            Ok(Some(token)) => token.to_owned(),
            Ok(None) => {
                let challenge = self.challenge(self.resource_for(&req.route), &self.needed(&req), None);
                return Flow::Now(self.refuse(
                    StatusCode::UNAUTHORIZED,
                    UNAUTHORIZED_CODE,
                    "authentication required: a bearer token from one of this resource's authorization servers",
                    challenge,
                ));
            }
            Err(why) => {
                let challenge =
                    self.challenge(self.resource_for(&req.route), &self.needed(&req), Some(("invalid_request", why)));
                return Flow::Now(self.refuse(StatusCode::BAD_REQUEST, UNAUTHORIZED_CODE, why, challenge));
            }
        };
        let r = self.resource_for(&req.route);
        match self.verify(&token, true, r) {
            Ok(v) => Flow::Now(self.decide(req, Ok(v))),
            Err(Failure::Refused(why)) => Flow::Now(self.decide(req, Err(why))),
            Err(Failure::Fetch(issuer)) => {
                let this = self.clone();
                Flow::Later(Box::pin(async move {
                    issuer.refresh().await;
                    let r = this.resource_for(&req.route);
                    let outcome = match this.verify(&token, false, r) {
                        Ok(v) => Ok(v),
                        Err(Failure::Refused(why)) => Err(why),
                        Err(Failure::Fetch(_)) => Err("the issuer's keys could not be fetched".to_owned()),
                        Err(Failure::Introspect) => this.introspect(&token, r).await,
                    };
                    this.decide(req, outcome)
                }))
            }
            Err(Failure::Introspect) => {
                let this = self.clone();
                Flow::Later(Box::pin(async move {
                    let outcome = this.introspect(&token, this.resource_for(&req.route)).await;
                    this.decide(req, outcome)
                }))
            }
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("resource", &self.inner.resource.uri).finish()
    }
}

#[cfg(test)]
mod tests;
