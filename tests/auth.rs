//! The `auth` stage end to end: the real binary over the demo server, bearer JWTs
//! signed here with a key whose JWKS the gateway reads from a file; the protected
//! resource metadata, every refusal over HTTP, the principal reaching `intercept`'s
//! claims, and bad stage options.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use base64::Engine;
use common::jwt::key_pair;
use common::{scratch_dir, Gateway, Http, Reply};
use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const RESOURCE: &str = "http://localhost/mcp";
const ISSUER: &str = "https://issuer.test";

fn token(key: &EncodingKey, extra: Value) -> String {
    common::jwt::sign(key, "k1", ISSUER, RESOURCE, extra)
}

fn gateway(dir: &Path, jwks: &str, more_stages: &str) -> Gateway {
    gateway_with(dir, jwks, more_stages, "")
}

fn gateway_with(dir: &Path, jwks: &str, more_stages: &str, server: &str) -> Gateway {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).unwrap();
    let stages = format!(
        "pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {ISSUER}\n          jwks_file: {}\n      scopes: [mcp:tools]\n      tool_scopes: {{ add: [math] }}\n{more_stages}",
        path.display()
    );
    Gateway::start(&format!("{}{stages}", common::demo_config(server, "")))
}

async fn post(gw: &Gateway, authorization: &[&str], session: Option<&str>, body: Value) -> Reply {
    let mut h: Vec<(&str, &str)> =
        vec![("accept", "application/json, text/event-stream"), ("content-type", "application/json")];
    h.extend(authorization.iter().map(|a| ("authorization", *a)));
    if let Some(s) = session {
        h.push(("mcp-session-id", s));
        h.push(("mcp-protocol-version", "2025-11-25"));
    }
    Http::new().send(Method::POST, &gw.mcp_url, &h, Some(&body.to_string())).await
}

fn init() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "auth-test", "version": "0"}}})
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

/// An `initialize` POSTed to `url` with `token` as the bearer.
async fn init_at(url: String, token: String) -> Reply {
    let bearer = format!("Bearer {token}");
    let h = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    Http::new().send(Method::POST, &url, &h, Some(&init().to_string())).await
}

fn challenge(r: &Reply) -> String {
    r.header("www-authenticate").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_checked_on_every_request() {
    let dir = scratch_dir("auth-e2e");
    let (key, jwks) = key_pair("k1");
    let mut gw = gateway(&dir, &jwks, "");
    let base = gw.mcp_url.trim_end_matches("/mcp").to_owned();

    // The metadata, where the challenge says.
    let doc =
        Http::new().send(Method::GET, &format!("{base}/.well-known/oauth-protected-resource/mcp"), &[], None).await;
    assert_eq!(doc.status, 200, "{}", doc.text());
    assert_eq!(doc.json()["resource"], RESOURCE);
    assert_eq!(doc.json()["authorization_servers"], json!([ISSUER]));

    // No token: 401, the metadata URL and the scope, no error code.
    let none = post(&gw, &[], None, init()).await;
    assert_eq!(none.status, 401, "{}", none.text());
    let c = challenge(&none);
    assert!(
        c.starts_with("Bearer resource_metadata=\"http://localhost/.well-known/oauth-protected-resource/mcp\"")
            && c.contains("scope=\"mcp:tools\"")
            && !c.contains("error="),
        "{c}"
    );
    assert!(!none.text().contains("Bearer ey"), "{}", none.text());

    // A good token: a session, and calls in it.
    let good = format!("Bearer {}", token(&key, json!({})));
    let opened = post(&gw, &[&good], None, init()).await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let session = opened.header("mcp-session-id").unwrap();
    let echoed = post(&gw, &[&good], Some(&session), call(2, "echo", json!({"message": "hi"}))).await;
    assert_eq!(echoed.messages()[0]["result"]["content"][0]["text"], "hi", "{}", echoed.text());

    // Another principal holding alice's session id: as if there were no such session.
    let mallory = format!("Bearer {}", token(&key, json!({"sub": "mallory"})));
    let stolen = post(&gw, &[&mallory], Some(&session), call(3, "echo", json!({"message": "hi"}))).await;
    assert_eq!(stolen.status, 404, "{}", stolen.text());
    let again = post(&gw, &[&good], Some(&session), call(3, "echo", json!({"message": "still mine"}))).await;
    assert_eq!(again.messages()[0]["result"]["content"][0]["text"], "still mine", "{}", again.text());

    // Every request of the session needs it.
    let bare = post(&gw, &[], Some(&session), call(3, "echo", json!({"message": "hi"}))).await;
    assert_eq!(bare.status, 401);

    // Bad tokens: 401 invalid_token; no secret in the answer.
    let (other_key, _) = key_pair("k1");
    let expired = token(&key, json!({"exp": jsonwebtoken::get_current_timestamp() - 3600}));
    for (what, t) in [
        ("expired", expired),
        ("foreign audience", token(&key, json!({"aud": "https://elsewhere.test/mcp"}))),
        ("forged", token(&other_key, json!({}))),
    ] {
        let r = post(&gw, &[&format!("Bearer {t}")], Some(&session), call(4, "echo", json!({"message": "x"}))).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(challenge(&r).contains("error=\"invalid_token\""), "{what}: {}", challenge(&r));
        assert!(!r.text().contains(&t) && !challenge(&r).contains(&t), "{what}: the token is not echoed");
    }

    // Two credentials: 400 invalid_request.
    let twice = post(&gw, &[&good, &good], Some(&session), call(5, "echo", json!({"message": "x"}))).await;
    assert_eq!(twice.status, 400);
    assert!(challenge(&twice).contains("error=\"invalid_request\""));

    // More scope needed for add: 403 with the scope to ask for; with it, the call.
    let add = call(6, "add", json!({"a": 1, "b": 2}));
    let short = post(&gw, &[&good], Some(&session), add.clone()).await;
    assert_eq!(short.status, 403, "{}", short.text());
    assert!(
        challenge(&short).contains("error=\"insufficient_scope\"")
            && challenge(&short).contains("scope=\"math mcp:tools\"")
    );
    let wider = format!("Bearer {}", token(&key, json!({"scope": "mcp:tools math"})));
    let added = post(&gw, &[&wider], Some(&session), add).await;
    assert_eq!(added.messages()[0]["result"]["content"][0]["text"], "3", "{}", added.text());
    assert!(gw.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_principals_claims_reach_intercept_rules() {
    let dir = scratch_dir("auth-claims");
    let (key, jwks) = key_pair("k1");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "version: 1\nrules:\n  - id: staff-only-echo\n    match: { method: tools/call, tool: echo, not: { claims: { groups: staff } } }\n    action: { block: { code: -32050, message: staff only } }\n",
    )
    .unwrap();
    let mut gw = gateway(&dir, &jwks, &format!("  - intercept: {{ rules: {} }}\n", rules.display()));
    for (groups, allowed) in [(json!(["staff", "ops"]), true), (json!(["guests"]), false)] {
        let bearer = format!("Bearer {}", token(&key, json!({"groups": groups})));
        let opened = post(&gw, &[&bearer], None, init()).await;
        let session = opened.header("mcp-session-id").unwrap();
        let r = post(&gw, &[&bearer], Some(&session), call(2, "echo", json!({"message": "hi"}))).await;
        let m = &r.messages()[0];
        if allowed {
            assert_eq!(m["result"]["content"][0]["text"], "hi", "{groups}: {m}");
        } else {
            assert_eq!(m["error"]["message"], "staff only", "{groups}: {m}");
        }
    }
    assert!(gw.stop().success());
}

#[test]
fn bad_auth_options_stop_the_start() {
    let dir = scratch_dir("auth-bad");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "not json").unwrap();
    let cases = [
        ("  - auth\n".to_owned(), "needs `resource`"),
        (
            format!("  - auth: {{ resource: http://mcp.example.com/mcp, issuers: [{{ issuer: {ISSUER}, jwks_file: {} }}] }}\n", broken.display()),
            "loopback only",
        ),
        (
            format!("  - auth: {{ resource: {RESOURCE}, issuers: [{{ issuer: {ISSUER}, jwks_file: {} }}] }}\n", broken.display()),
            "not a JWKS document",
        ),
        (format!("  - auth: {{ resource: {RESOURCE}, issuers: [{{ issuer: 'http://issuer.example.com' }}] }}\n"), "discovery needs an https:// issuer"),
        (
            format!("  - auth: {{ resource: {RESOURCE}, issuers: [{{ issuer: {ISSUER}, introspection: {{ endpoint: 'http://idp.example.com/introspect', client_id: gw, client_secret: s }} }}] }}\n"),
            "introspection.endpoint",
        ),
        (
            format!("  - auth: {{ resource: {RESOURCE}, route_resources: {{ /mcp: 'http://mcp.example.com/mcp' }}, issuers: [{{ issuer: {ISSUER} }}] }}\n"),
            "route_resources./mcp",
        ),
    ];
    for (stage, says) in cases {
        let path = dir.join("config.yaml");
        std::fs::write(&path, format!("{}pipeline:\n{stage}", common::demo_config("", ""))).unwrap();
        let out = std::process::Command::new(common::bin()).args(["config", "validate"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{stage}: {err}");
    }
}

/// The OpenID provider of `tests/fixtures/oidc_provider.mjs`, issuing tokens for
/// `resource`; killed on drop.
struct Provider {
    child: std::process::Child,
    issuer: String,
}

impl Provider {
    fn start(resource: &str) -> Provider {
        Provider::start_with(resource, false)
    }

    /// `opaque`: access tokens are opaque, checked by introspection.
    fn start_with(resource: &str, opaque: bool) -> Provider {
        Provider::start_env(resource, opaque, &[])
    }

    /// With more environment for the fixture (`JWT_CLIENT_JWKS`).
    fn start_env(resource: &str, opaque: bool, env: &[(&str, &str)]) -> Provider {
        use std::io::BufRead;
        let d = common::deps();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc_provider.mjs");
        let mut child = std::process::Command::new(&d.node)
            .arg(script)
            .arg(resource)
            .env("SHADOWCAT_NODE_MODULES", &d.node_modules)
            .env("OPAQUE", if opaque { "1" } else { "0" })
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer =
            lines.find_map(|l| l.ok()?.strip_prefix("issuer=").map(str::to_owned)).expect("the provider's issuer line");
        // What the provider prints later is read (and dropped), so that it never
        // writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Provider { child, issuer }
    }

    /// An access token by client credentials, with `scope`.
    async fn token(&self, scope: &str) -> String {
        let basic = base64::engine::general_purpose::STANDARD
            .encode("shadowcat-test:test-secret-of-the-test-client-0123456789");
        let auth = format!("Basic {basic}");
        let body = format!("grant_type=client_credentials&scope={scope}&resource={RESOURCE}").replace(' ', "%20");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        let r = Http::new().send(Method::POST, &format!("{}/token", self.issuer), &headers, Some(&body)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn rotate(&self) {
        let r = Http::new().send(Method::POST, &format!("{}/rotate", self.issuer), &[], None).await;
        assert_eq!(r.status, 204);
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_a_real_openid_provider_with_discovery_and_key_rotation() {
    let provider = Provider::start(RESOURCE);
    let stages = format!(
        "pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {}\n      scopes: [mcp:tools]\n      keys_min_refresh: 100ms\n",
        provider.issuer
    );
    let mut gw = Gateway::start(&format!("{}{stages}", common::demo_config("", "")));
    let call_with = |token: String| init_at(gw.mcp_url.clone(), token);
    // Keys found through the provider's discovery metadata, on the first token.
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    let first_token = provider.token("mcp:tools").await;
    let first_kid = kid(&first_token);
    let first = call_with(first_token).await;
    assert_eq!(first.status, 200, "{}", first.text());
    // Not enough scope: the provider issues a token without mcp:tools.
    let narrow = call_with(provider.token("math").await).await;
    assert_eq!(narrow.status, 403, "{}", narrow.text());
    // A new signing key at the provider: its tokens name a kid the gateway fetches.
    provider.rotate().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let rotated = provider.token("mcp:tools").await;
    assert_ne!(kid(&rotated), first_kid, "the provider signs with its new key");
    let spare = provider.token("mcp:tools").await;
    let after = call_with(rotated).await;
    assert_eq!(after.status, 200, "after the rotation: {}", after.text());
    // The provider gone: a token whose key the gateway has still passes.
    drop(provider);
    let down = call_with(spare).await;
    assert_eq!(down.status, 200, "with the issuer down: {}", down.text());
    assert!(gw.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_clients_get_cors_from_allowed_origins() {
    let dir = scratch_dir("auth-cors");
    let (key, jwks) = key_pair("k1");
    let mut gw = gateway_with(&dir, &jwks, "", "  allowed_origins: [\"https://app.example.com\"]\n");
    let app = "https://app.example.com";
    let preflight = |origin: &'static str| {
        let url = gw.mcp_url.clone();
        async move {
            let h = [
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization, content-type, mcp-param-region"),
            ];
            Http::new().send(Method::OPTIONS, &url, &h, None).await
        }
    };
    let ok = preflight("https://app.example.com").await;
    assert_eq!(ok.status, 204, "{}", ok.text());
    assert_eq!(ok.header("access-control-allow-origin").as_deref(), Some(app));
    assert!(ok.header("access-control-allow-methods").unwrap_or_default().contains("POST"));
    let allowed = ok.header("access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("authorization") && allowed.contains("mcp-param-region"), "{allowed}");
    assert_eq!(preflight("https://evil.example.com").await.status, 403);

    // The answers themselves: readable by the app, with the headers a client needs.
    let h = [("origin", app), ("accept", "application/json, text/event-stream"), ("content-type", "application/json")];
    let refused = Http::new().send(Method::POST, &gw.mcp_url, &h, Some(&init().to_string())).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin").as_deref(), Some(app));
    let exposed = refused.header("access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("Mcp-Session-Id") && exposed.contains("WWW-Authenticate"), "{exposed}");
    let bearer = format!("Bearer {}", token(&key, json!({})));
    let mut with_token = h.to_vec();
    with_token.push(("authorization", &bearer));
    let opened = Http::new().send(Method::POST, &gw.mcp_url, &with_token, Some(&init().to_string())).await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    assert_eq!(opened.header("access-control-allow-origin").as_deref(), Some(app));
    assert!(gw.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_that_cannot_be_reached_is_a_clear_refusal() {
    let (key, _) = key_pair("k1");
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let stages =
        format!("pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {dead}\n");
    let mut gw = Gateway::start(&format!("{}{stages}", common::demo_config("", "")));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": dead, "sub": "alice", "aud": RESOURCE, "exp": now + 600});
    let t = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let r = post(&gw, &[&format!("Bearer {t}")], None, init()).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(challenge(&r).contains("error=\"invalid_token\""), "{}", challenge(&r));
    assert!(r.text().contains("no key of the issuer"), "{}", r.text());
    assert!(gw.wait_log("could not be fetched", std::time::Duration::from_secs(5)), "{}", gw.log());
    assert!(gw.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn static_api_keys_are_stored_hashed_and_name_their_principal() {
    // The key's hash, as an operator makes it.
    let mut hasher = std::process::Command::new(common::bin())
        .args(["auth", "hash-key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let key = "sc_build-bot-key-of-the-test-0123456789";
    std::io::Write::write_all(&mut hasher.stdin.take().unwrap(), format!("{key}\n").as_bytes()).unwrap();
    let out = hasher.wait_with_output().unwrap();
    assert!(out.status.success());
    let sha = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(sha.len(), 64, "{sha}");
    let generated =
        std::process::Command::new(common::bin()).args(["auth", "hash-key", "--generate"]).output().unwrap();
    let text = String::from_utf8(generated.stdout).unwrap();
    assert!(text.starts_with("key:    sc_") && text.contains("sha256: "), "{text}");

    let dir = scratch_dir("auth-keys");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "version: 1\nrules:\n  - id: ci-only\n    match: { method: tools/call, tool: add, claims: { groups: ci } }\n    action: { mock: { result: { content: [{ type: text, text: by-ci }] } } }\n",
    )
    .unwrap();
    let stages = format!(
        "pipeline:\n  - auth:\n      resource: {RESOURCE}\n      api_keys:\n        - {{ id: build-bot, sha256: {sha}, scopes: [mcp:tools], claims: {{ groups: [ci] }} }}\n      scopes: [mcp:tools]\n  - intercept: {{ rules: {} }}\n",
        rules.display()
    );
    let mut gw = Gateway::start(&format!("{}{stages}", common::demo_config("", "")));
    let good = format!("Bearer {key}");
    let opened = post(&gw, &[&good], None, init()).await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let session = opened.header("mcp-session-id").unwrap();
    let added = post(&gw, &[&good], Some(&session), call(2, "add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(added.messages()[0]["result"]["content"][0]["text"], "by-ci", "the key's claims reach later stages");
    let wrong = post(&gw, &["Bearer sc_not-the-key"], None, init()).await;
    assert_eq!(wrong.status, 401);
    assert!(challenge(&wrong).contains("error=\"invalid_token\""), "{}", challenge(&wrong));
    gw.stop();
    assert!(!gw.log().contains(key), "the key is never logged");

    // A bad hash is refused at start.
    let path = dir.join("bad.yaml");
    let bad = format!(
        "{}pipeline:\n  - auth: {{ resource: {RESOURCE}, api_keys: [{{ id: x, sha256: not-hex }}] }}\n",
        common::demo_config("", "")
    );
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(common::bin()).args(["config", "validate"]).arg(&path).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("64 hex digits"));
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_are_introspected_and_the_answer_cached() {
    let provider = Provider::start_with(RESOURCE, true);
    let token = provider.token("mcp:tools").await;
    assert_eq!(token.matches('.').count(), 0, "an opaque token: {token}");
    let stages = format!(
        "pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {issuer}\n          introspection:\n            endpoint: {issuer}/token/introspection\n            client_id: shadowcat-test\n            client_secret: test-secret-of-the-test-client-0123456789\n            cache: 5m\n      scopes: [mcp:tools]\n",
        issuer = provider.issuer
    );
    let mut gw = Gateway::start(&format!("{}{stages}", common::demo_config("", "")));
    let bearer = format!("Bearer {token}");
    let opened = post(&gw, &[&bearer], None, init()).await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let narrow = format!("Bearer {}", provider.token("math").await);
    assert_eq!(post(&gw, &[&narrow], None, init()).await.status, 403, "its scopes come from the answer");
    let unknown = post(&gw, &["Bearer an-opaque-token-the-provider-never-issued"], None, init()).await;
    assert_eq!(unknown.status, 401, "{}", unknown.text());
    assert!(challenge(&unknown).contains("error=\"invalid_token\""), "{}", challenge(&unknown));
    // The provider gone: the answer for the token it issued is still held, and the
    // dead token is refused as inactive without asking again.
    drop(provider);
    assert_eq!(post(&gw, &[&bearer], None, init()).await.status, 200);
    let again = post(&gw, &["Bearer an-opaque-token-the-provider-never-issued"], None, init()).await;
    assert!(challenge(&again).contains("not active"), "{}", challenge(&again));
    let other = post(&gw, &["Bearer another-opaque-token-never-seen"], None, init()).await;
    assert!(challenge(&other).contains("could not be checked"), "{}", challenge(&other));
    gw.stop();
    assert!(!gw.log().contains(&token), "the token is never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tokens_by_client_credentials_with_each_client_authentication() {
    let (pem, client_jwks) = common::jwt::key_pair_pem("jwt-client");
    let provider = Provider::start_env(RESOURCE, false, &[("JWT_CLIENT_JWKS", &client_jwks)]);
    let dir = scratch_dir("upstream-oauth");
    let key_file = dir.join("client-key.pem");
    std::fs::write(&key_file, pem).unwrap();
    // The upstream: a gateway that takes only this provider's tokens for RESOURCE.
    let inner_stages = format!(
        "pipeline:\n  - auth:\n      resource: {RESOURCE}\n      issuers:\n        - issuer: {}\n      scopes: [mcp:tools]\n",
        provider.issuer
    );
    let mut inner = Gateway::start(&format!("{}{inner_stages}", common::demo_config("", "")));
    let outer_config = |oauth: &str| {
        format!(
            "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  up:\n    http:\n      url: {}\n{oauth}",
            inner.mcp_url
        )
    };
    let token_endpoint = format!("{}/token", provider.issuer);
    let methods = [
        (
            "client_secret_basic",
            "client_id: shadowcat-test\n        client_secret: test-secret-of-the-test-client-0123456789".to_owned(),
        ),
        (
            "client_secret_post",
            "client_id: shadowcat-post\n        client_secret: post-secret-of-the-test-client-0123456789".to_owned(),
        ),
        (
            "private_key_jwt",
            format!(
                "client_id: shadowcat-jwt\n        private_key: {{ file: {} }}\n        key_id: jwt-client",
                key_file.display()
            ),
        ),
    ];
    for (method, client) in methods {
        let oauth = format!(
            "      oauth:\n        token_endpoint: {token_endpoint}\n        auth_method: {method}\n        {client}\n        scope: mcp:tools\n        resource: {RESOURCE}\n"
        );
        let mut outer = Gateway::start(&outer_config(&oauth));
        let mut c = common::McpClient::new(&outer.mcp_url);
        c.initialize("2025-11-25").await;
        for n in 0..2 {
            let r = c
                .request("tools/call", json!({"name": "echo", "arguments": {"message": format!("via {method} {n}")}}))
                .await;
            assert_eq!(r["result"]["content"][0]["text"], format!("via {method} {n}"), "{method}: {r}");
        }
        outer.stop();
        let log = outer.log();
        assert!(!log.contains("secret-of-the-test-client") && !log.contains("Bearer ey"), "{method}: {log}");
    }
    // Without credentials the upstream refuses, and the client is told where tokens come from.
    let mut bare = Gateway::start(&outer_config(""));
    // The upstream's own metadata is the upstream's: the gateway never relays a
    // /.well-known document (with an `auth` stage it serves its own).
    let base = bare.mcp_url.trim_end_matches("/mcp").to_owned();
    let relayed =
        Http::new().send(Method::GET, &format!("{base}/.well-known/oauth-protected-resource/mcp"), &[], None).await;
    assert_eq!(relayed.status, 404, "{}", relayed.text());
    let c = common::McpClient::new(&bare.mcp_url);
    let refused = c.post_raw(&init().to_string()).await;
    assert_ne!(refused.status, 200, "{}", refused.text());
    bare.stop();
    inner.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_route_is_a_resource_of_its_own() {
    let dir = scratch_dir("auth-routes");
    let (key, jwks) = key_pair("k1");
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).unwrap();
    let other = "http://localhost/other";
    let yaml = format!(
        "{}routes:\n  - {{ path: /mcp, upstream: up }}\n  - {{ path: /other, upstream: up }}\npipeline:\n  - auth:\n      resource: {RESOURCE}\n      route_resources: {{ /other: {other} }}\n      issuers:\n        - issuer: {ISSUER}\n          jwks_file: {}\n",
        common::demo_config("", ""),
        path.display()
    );
    let mut gw = Gateway::start(&yaml);
    let base = gw.mcp_url.trim_end_matches("/mcp").to_owned();
    let doc =
        Http::new().send(Method::GET, &format!("{base}/.well-known/oauth-protected-resource/other"), &[], None).await;
    assert_eq!(doc.json()["resource"], other, "{}", doc.text());
    let send = |route: &'static str, token: String| init_at(format!("{base}{route}"), token);
    let for_mcp = token(&key, json!({}));
    let for_other = token(&key, json!({"aud": other}));
    assert_eq!(send("/mcp", for_mcp.clone()).await.status, 200);
    assert_eq!(send("/other", for_other.clone()).await.status, 200);
    let wrong = send("/other", for_mcp).await;
    assert_eq!(wrong.status, 401, "a token for /mcp is not for /other");
    let c = challenge(&wrong);
    assert!(c.contains("/.well-known/oauth-protected-resource/other") && c.contains("another resource"), "{c}");
    assert_eq!(send("/mcp", for_other).await.status, 401);
    gw.stop();

    let bad = dir.join("bad.yaml");
    let text = yaml.replace("/other: ", "/nowhere: ");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(common::bin()).args(["config", "validate"]).arg(&bad).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no route \"/nowhere\""));
}
