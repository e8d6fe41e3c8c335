//! Tokens made here with a key made here: the checks, one by one, without sockets.
//! End-to-end runs through the gateway are in `tests/auth.rs`.

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};

use super::*;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://issuer.test";

/// An ES256 key pair: the signing key and its JWKS (with `kid`).
fn key_pair(kid: &str) -> (EncodingKey, String, Vec<u8>) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("pair");
    let point = pair.public_key().as_ref().to_vec();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwks.to_string(), point)
}

fn auth_with(jwks: &str, extra: Value) -> Auth {
    let dir = std::env::temp_dir().join(format!("shadowcat-auth-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).expect("jwks");
    let mut options = json!({"resource": RESOURCE, "issuers": [{"issuer": ISSUER, "jwks_file": path}],
        "tool_scopes": {"run_sql": ["db:write"]}});
    if let (Value::Object(o), Value::Object(extra)) = (&mut options, extra) {
        o.extend(extra);
    }
    Auth::new(serde_json::from_value(options).expect("options")).expect("auth")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn token(key: &EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).expect("token")
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "exp": now() + 600, "scope": "mcp:tools"});
    if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
        c.extend(extra);
    }
    c
}

fn request(tool: &str, authorization: &[&str]) -> McpRequest {
    let m = crate::protocol::Message::from_value(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {}}}));
    let mut req = McpRequest::message(m, "/mcp".into(), crate::protocol::ProtocolVersion::V2025_11_25);
    req.context.transport = Transport::Http;
    for a in authorization {
        req.headers.append(http::header::AUTHORIZATION, HeaderValue::from_str(a).expect("header"));
    }
    req
}

/// What the stage makes of `req`: the principal's id, or the status and challenge.
fn outcome(auth: &Auth, req: McpRequest) -> Result<(String, bool), (u16, String)> {
    let info = CallInfo::of(&req);
    match auth.on_request(&(), &info, req) {
        Flow::Now(crate::pipeline::Verdict::Pass(req)) => {
            let id = req.context.principal().map(|p| p.id.to_string()).unwrap_or_default();
            Ok((id, req.headers.contains_key(http::header::AUTHORIZATION)))
        }
        Flow::Now(crate::pipeline::Verdict::Fail(e)) => {
            let challenge = e
                .headers()
                .and_then(|h| h.get(http::header::WWW_AUTHENTICATE))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Err((e.status().as_u16(), challenge))
        }
        _ => Err((0, "another verdict".into())),
    }
}

#[test]
fn a_good_token_passes_and_goes_no_further() {
    let (key, jwks, _) = key_pair("k1");
    let auth = auth_with(&jwks, json!({}));
    let t = token(&key, "k1", claims(json!({})));
    let bearer = format!("Bearer {t}");
    let (id, kept) = outcome(&auth, request("echo", &[&bearer])).expect("passes");
    assert_eq!(id, format!("{ISSUER} alice"));
    assert!(!kept, "the Authorization header is removed");
    // Again: from the cache, the same principal.
    assert_eq!(outcome(&auth, request("echo", &[&bearer])).expect("passes").0, id);
}

#[test]
fn every_refusal_has_its_status_and_challenge() {
    let (key, jwks, point) = key_pair("k1");
    let auth = auth_with(&jwks, json!({"scopes": ["mcp:tools"]}));
    let metadata = "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"";
    let refused = |req: McpRequest| outcome(&auth, req).expect_err("refused");

    let (status, challenge) = refused(request("echo", &[]));
    assert_eq!(status, 401);
    assert!(challenge.starts_with(metadata) && challenge.contains("scope=\"mcp:tools\""), "{challenge}");
    assert!(!challenge.contains("error="), "no error code without a token: {challenge}");

    let bad = |c: Value| format!("Bearer {}", token(&key, "k1", claims(c)));
    let cases = [
        ("expired", bad(json!({"exp": now() - 3600})), "expired"),
        ("another audience", bad(json!({"aud": "https://other.example.com/mcp"})), "another resource"),
        ("another issuer", bad(json!({"iss": "https://evil.test"})), "not trusted"),
        ("not yet", bad(json!({"nbf": now() + 3600})), "not valid yet"),
        (
            "no sub",
            format!("Bearer {}", token(&key, "k1", json!({"iss": ISSUER, "aud": RESOURCE, "exp": now() + 60}))),
            "sub",
        ),
        ("unknown kid", format!("Bearer {}", token(&key, "k2", claims(json!({})))), "no key"),
        ("garbage", "Bearer not.a.jwt".to_owned(), "not a JWT"),
    ];
    for (what, authorization, says) in cases {
        let (status, challenge) = refused(request("echo", &[&authorization]));
        assert_eq!(status, 401, "{what}");
        assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains(says), "{what}: {challenge}");
    }

    // Another key's signature, under the same kid.
    let (other, _, _) = key_pair("k1");
    let forged = format!("Bearer {}", token(&other, "k1", claims(json!({}))));
    assert!(refused(request("echo", &[&forged])).1.contains("signature"));

    // alg confusion: the published public key taken as an HMAC secret; and `none`.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused =
        jsonwebtoken::encode(&header, &claims(json!({})), &EncodingKey::from_secret(&point).expect("k")).expect("t");
    assert!(refused(request("echo", &[&format!("Bearer {confused}")])).1.contains("HS256 is not accepted"));
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("Bearer {}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(claims(json!({}))));
    assert_eq!(refused(request("echo", &[&none])).0, 401);

    // Two credentials: 400 invalid_request.
    let good = bad(json!({}));
    let (status, challenge) = refused(request("echo", &[&good, &good]));
    assert_eq!(status, 400);
    assert!(challenge.contains("error=\"invalid_request\""), "{challenge}");

    // A tool that needs more scope: 403 with what it needs (step-up).
    let (status, challenge) = refused(request("run_sql", &[&good]));
    assert_eq!(status, 403);
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"db:write mcp:tools\""),
        "{challenge}"
    );
    let granted = bad(json!({"scope": "mcp:tools db:write"}));
    assert!(outcome(&auth, request("run_sql", &[&granted])).is_ok());
}

#[test]
fn bad_options_are_refused() {
    let (_, jwks, _) = key_pair("k1");
    let dir = std::env::temp_dir().join(format!("shadowcat-auth-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("jwks.json");
    std::fs::write(&good, &jwks).expect("write");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"keys\": 3}").expect("write");
    let try_build = |o: Value| Auth::new(serde_json::from_value(o).expect("options")).err().unwrap_or_default();
    let issuer = json!([{"issuer": ISSUER, "jwks_file": good}]);
    assert!(try_build(json!({"resource": "http://mcp.example.com/mcp", "issuers": issuer})).contains("loopback only"));
    assert!(try_build(json!({"resource": "/mcp", "issuers": issuer})).contains("absolute URI"));
    assert!(try_build(json!({"resource": RESOURCE, "issuers": []})).contains("at least one issuer"));
    let plain = json!([{"issuer": "http://issuer.example.com"}]);
    assert!(try_build(json!({"resource": RESOURCE, "issuers": plain})).contains("discovery needs an https:// issuer"));
    assert!(Auth::new(
        serde_json::from_value(json!({"resource": RESOURCE, "issuers": [{"issuer": ISSUER}]})).expect("o")
    )
    .is_ok());
    let broken_issuer = json!([{"issuer": ISSUER, "jwks_file": broken}]);
    assert!(try_build(json!({"resource": RESOURCE, "issuers": broken_issuer})).contains("not a JWKS document"));
    let short = json!([{"issuer": ISSUER, "secret": "short"}]);
    assert!(try_build(json!({"resource": RESOURCE, "issuers": short})).contains("at least 32 bytes"));
    let algs = json!({"resource": RESOURCE, "issuers": issuer, "algorithms": ["none"]});
    assert!(try_build(algs).contains("never accepted"));
    assert!(Auth::new(
        serde_json::from_value(json!({"resource": "http://127.0.0.1/mcp", "issuers": issuer})).expect("o")
    )
    .is_ok());
}

#[test]
fn the_metadata_names_the_resource_and_its_servers() {
    let (_, jwks, _) = key_pair("k1");
    let auth = auth_with(&jwks, json!({"scopes": ["mcp:tools"]}));
    assert_eq!(auth.inner.resource.metadata_path, "/.well-known/oauth-protected-resource/mcp");
    let doc: Value = serde_json::from_slice(&auth.metadata_document(&auth.inner.resource)).expect("json");
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"], json!([ISSUER]));
    assert_eq!(doc["scopes_supported"], json!(["db:write", "mcp:tools"]));
}
