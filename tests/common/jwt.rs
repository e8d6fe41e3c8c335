//! Signing keys and bearer JWTs made in the test, for gateways that read the
//! issuer's keys from a JWKS file.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A new P-256 key: its PKCS#8 document, and the JWKS that publishes its public half as `kid`.
fn new_key(kid: &str) -> (Vec<u8>, String) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    (pkcs8.as_ref().to_vec(), jwks.to_string())
}

/// A P-256 signing key and the JWKS that publishes it as `kid`.
pub fn key_pair(kid: &str) -> (EncodingKey, String) {
    let (pkcs8, jwks) = new_key(kid);
    (EncodingKey::from_ec_der(&pkcs8), jwks)
}

/// An ES256 token for `iss`/`aud` valid for ten minutes, signed as `kid`, with
/// `sub` alice and scope `mcp:tools` unless `extra` says otherwise.
pub fn sign(key: &EncodingKey, kid: &str, iss: &str, aud: &str, extra: Value) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"iss": iss, "sub": "alice", "aud": aud, "exp": now + 600, "scope": "mcp:tools"});
    if let (Value::Object(c), Value::Object(extra)) = (&mut claims, extra) {
        c.extend(extra);
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// A P-256 private key as PKCS#8 PEM, and the JWKS that publishes its public half
/// as `kid` (for a client that authenticates by `private_key_jwt`).
pub fn key_pair_pem(kid: &str) -> (String, String) {
    let (pkcs8, jwks) = new_key(kid);
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    (format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")), jwks)
}
