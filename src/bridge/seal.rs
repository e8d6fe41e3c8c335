//! Sealing the `requestState` of bridged `input_required` answers.
//!
//! The state is attacker-controlled input when it comes back, so it is sealed with
//! AES-256-GCM (aws-lc-rs, already built for rustls): a random 96-bit nonce per state,
//! the sealed JSON of [`State`] after it, Base64url without padding. It names the
//! replica and the parked call, binds a digest of the request (without
//! `inputResponses`, `requestState` and `_meta`) and expires.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a sealed state says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The replica (gateway process) that parked the call.
    pub replica: String,
    /// The parked call.
    pub call: u64,
    /// The round this state answers (1 for the first `input_required`).
    pub round: u32,
    /// Hex SHA-256 of the request's method and params (see [`request_digest`]).
    pub digest: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// Why a returned state is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not something this gateway sealed, or altered.
    #[error("requestState is invalid: it was not issued by this gateway or has been altered")]
    Forged,
    /// Sealed by another replica.
    #[error("requestState was issued by another gateway replica ({0}); retries must reach the replica that answered input_required")]
    OtherReplica(String),
    /// Too old.
    #[error("requestState has expired")]
    Expired,
    /// The retry's method or params differ from the request that got the state.
    #[error(
        "the retry differs from the request that received this requestState (same method and params are required)"
    )]
    Changed,
}

/// Seals and opens states with one key.
pub struct Sealer {
    key: LessSafeKey,
    replica: String,
}

impl Sealer {
    /// A sealer whose AEAD key is SHA-256 of `secret`.
    pub fn new(secret: &[u8], replica: String) -> Self {
        let hash = digest::digest(&digest::SHA256, secret);
        let key = match UnboundKey::new(&AES_256_GCM, hash.as_ref()) {
            Ok(k) => k,
            // A 32-byte key always fits AES-256; unreachable, but never panic.
            Err(_) => unreachable_key(),
        };
        Sealer { key: LessSafeKey::new(key), replica }
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Seals a state.
    pub fn seal(&self, state: &State) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut sealed = serde_json::to_vec(state).unwrap_or_default();
        if self.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed).is_err() {
            sealed.clear();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a state and checks it: sealed here, by this replica, not expired, for a
    /// request with this digest.
    pub fn open(&self, text: &str, digest_hex: &str, now_ms: u64) -> Result<State, Refusal> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| Refusal::Forged)?;
        if raw.len() <= NONCE_LEN {
            return Err(Refusal::Forged);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Refusal::Forged)?;
        let mut buf = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut buf).map_err(|_| Refusal::Forged)?;
        let state: State = serde_json::from_slice(plain).map_err(|_| Refusal::Forged)?;
        if state.replica != self.replica {
            return Err(Refusal::OtherReplica(state.replica));
        }
        if state.expires_ms <= now_ms {
            return Err(Refusal::Expired);
        }
        if state.digest != digest_hex {
            return Err(Refusal::Changed);
        }
        Ok(state)
    }
}

fn unreachable_key() -> UnboundKey {
    // Only reached if aws-lc-rs rejected a 32-byte AES-256 key, which it does not.
    #[allow(clippy::expect_used)]
    UnboundKey::new(&AES_256_GCM, &[0u8; 32]).expect("a 32-byte key")
}

/// Hex SHA-256 over the principal (if any), the method and the params without
/// `inputResponses`, `requestState` and `_meta` (in canonical form, so equal params
/// give equal bytes whatever their members' order).
pub fn request_digest(method: &str, params: Option<&Map<String, Value>>, principal: Option<&str>) -> String {
    let mut kept = params.cloned().unwrap_or_default();
    for key in ["inputResponses", "requestState", "_meta"] {
        kept.remove(key);
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    if let Some(p) = principal {
        // Length-prefixed: no principal id can be confused with another plus a method.
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    ctx.update(method.as_bytes());
    ctx.update(b"\n");
    ctx.update(crate::protocol::canonical_json(&Value::Object(kept)).as_bytes());
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(digest: &str) -> State {
        State { replica: "r1".into(), call: 7, round: 1, digest: digest.into(), expires_ms: 2_000 }
    }

    #[test]
    fn seal_and_open() {
        let sealer = Sealer::new(b"secret", "r1".into());
        let params = json!({"name": "t", "arguments": {"a": 1}, "_meta": {"x": 1}, "inputResponses": {"k": {}}});
        let d = request_digest("tools/call", params.as_object(), None);
        let same = request_digest("tools/call", json!({"arguments": {"a": 1}, "name": "t"}).as_object(), None);
        assert_eq!(d, same, "inputResponses, requestState and _meta do not count, nor the members' order");
        let alice = request_digest("tools/call", params.as_object(), Some("iss alice"));
        assert_ne!(alice, d, "a principal's state is its own");
        assert_ne!(alice, request_digest("tools/call", params.as_object(), Some("iss bob")));
        let text = sealer.seal(&state(&d));
        assert_eq!(sealer.open(&text, &d, 1_000), Ok(state(&d)));
        assert_ne!(sealer.seal(&state(&d)), text, "a fresh nonce each time");
        assert_eq!(sealer.open(&text, &d, 2_000), Err(Refusal::Expired));
        let other = request_digest("tools/call", json!({"name": "t", "arguments": {"a": 2}}).as_object(), None);
        assert_eq!(sealer.open(&text, &other, 1_000), Err(Refusal::Changed));
        assert_eq!(sealer.open(&format!("{text}-TAMPERED"), &d, 1_000), Err(Refusal::Forged));
        let mut flipped = text.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(sealer.open(&String::from_utf8(flipped).expect("ascii"), &d, 1_000), Err(Refusal::Forged));
        assert_eq!(Sealer::new(b"other", "r1".into()).open(&text, &d, 1_000), Err(Refusal::Forged));
        assert_eq!(Sealer::new(b"secret", "r2".into()).open(&text, &d, 1_000), Err(Refusal::OtherReplica("r1".into())));
    }
}
