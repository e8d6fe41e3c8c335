//! An issuer's verification keys: a static JWKS file, or a shared secret for HMAC
//! (only when one is configured), each key kept with the algorithm family it may
//! verify, so that a key of one family is never used for another (an RSA public key
//! taken as an HMAC secret, the classic `alg` confusion).

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// One key.
pub struct Key {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// The one algorithm it was published for (`alg`), if the JWK says.
    pub alg: Option<Algorithm>,
    /// What it verifies.
    pub family: AlgorithmFamily,
    /// The key itself.
    pub key: DecodingKey,
}

/// The keys of one issuer.
#[derive(Default)]
pub struct Keys(Vec<Key>);

impl Keys {
    /// The keys of a JWKS document (`{"keys": [...]}`); `origin` names it in errors.
    /// Keys for encryption only (`use: enc`) are left out.
    pub fn from_jwks(text: &str, origin: &str) -> Result<Keys, String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("{origin}: not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if jwk.common.public_key_use.as_ref().is_some_and(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Encryption) {
                continue;
            }
            keys.push(key_of(jwk).map_err(|e| format!("{origin}: keys[{i}]: {e}"))?);
        }
        if keys.is_empty() {
            return Err(format!("{origin}: no signing key in the JWKS document"));
        }
        Ok(Keys(keys))
    }

    /// An HMAC secret.
    pub fn from_secret(secret: &[u8]) -> Result<Keys, String> {
        let key = DecodingKey::from_secret(secret).map_err(|e| format!("secret: {e}"))?;
        Ok(Keys(vec![Key { kid: None, alg: None, family: AlgorithmFamily::Hmac, key }]))
    }

    /// The key that verifies a token signed with `alg` and naming `kid`: its `kid`
    /// must match when the token names one (else the only key of the family), and
    /// its family (and `alg`, when published) must be the algorithm's.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        let fits = |k: &&Key| k.family == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self.0.iter().filter(fits).find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut fitting = self.0.iter().filter(fits);
                let first = fitting.next();
                first.filter(|_| fitting.next().is_none())
            }
        }
    }
}

fn key_of(jwk: &Jwk) -> Result<Key, String> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let family = match &jwk.algorithm {
        P::RSA(_) => AlgorithmFamily::Rsa,
        P::EllipticCurve(_) => AlgorithmFamily::Ec,
        P::OctetKeyPair(_) => AlgorithmFamily::Ed,
        // A symmetric key in a JWKS would let anyone who can read the document sign.
        P::OctetKey(_) => return Err("a symmetric (oct) key: give it as the issuer's `secret` instead".into()),
        _ => return Err("a key type this build does not verify with".into()),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(algorithm_of(a).ok_or_else(|| format!("alg {a:?} is not a signing algorithm"))?),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key { kid: jwk.common.key_id.clone(), alg, family, key })
}

fn algorithm_of(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
