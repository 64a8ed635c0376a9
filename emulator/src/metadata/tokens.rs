//! The credentials the metadata server hands out: opaque access tokens, and ID tokens — ES256
//! JWTs signed by a P-256 key generated when the run starts, published as a JWKS so a service
//! (or a test) can verify them the way it verifies Google's. Nothing is stored: a key lives as
//! long as its `emu up`, so a token from an earlier run no longer verifies.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use serde::Serialize;

/// Google's ID tokens name this issuer; libraries that check `iss` expect it.
pub const ISSUER: &str = "https://accounts.google.com";
/// How long a token is good for, as Google's (an hour; access tokens say 3599 s left).
const LIFETIME_SECS: u64 = 3600;

/// The run's signing key and its public half as a JWKS.
pub struct Signer {
    key: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

/// Why the run's key could not be made (the crypto library refused; not expected).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the metadata server's signing key: {0}")]
pub struct KeyError(String);

/// An ID token's claims, as Google's metadata server writes them for a service account.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'static str,
    aud: &'a str,
    azp: &'a str,
    sub: &'a str,
    email: &'a str,
    email_verified: bool,
    iat: u64,
    exp: u64,
}

impl Signer {
    /// A fresh P-256 key, named by a random key id.
    pub fn generate() -> Result<Signer, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| KeyError(e.to_string()))?;
        let pkcs8 = pair.to_pkcs8v1().map_err(|e| KeyError(e.to_string()))?;
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let kid = random_hex(20);
        let mut jwk =
            Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| KeyError(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        Ok(Signer {
            key,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
        })
    }

    /// The public key set that verifies this run's ID tokens.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// A signed ID token for `audience`, naming service account `email` (unique id `sub`).
    pub fn id_token(&self, audience: &str, email: &str, sub: &str) -> Result<String, KeyError> {
        let iat = now_secs();
        let claims = Claims {
            iss: ISSUER,
            aud: audience,
            azp: sub,
            sub,
            email,
            email_verified: true,
            iat,
            exp: iat + LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| KeyError(e.to_string()))
    }
}

/// An access token as the metadata server's token endpoint gives it. It is opaque: nothing
/// checks it locally, but it has Google's shape so a client library takes it.
pub fn access_token() -> serde_json::Value {
    serde_json::json!({
        "access_token": format!("ya29.emu-local.{}", random_hex(32)),
        "expires_in": LIFETIME_SECS - 1,
        "token_type": "Bearer",
    })
}

/// A service account's unique id (the `sub` of its tokens): 21 digits, as Google's are,
/// derived from the email so it is the same on every run.
pub fn unique_id(email: &str) -> String {
    let d = digest(&SHA256, email.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    format!("1{:020}", u64::from_be_bytes(first))
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn an_id_token_verifies_against_the_jwks_and_names_the_account() {
        let s = Signer::generate().unwrap();
        let t = s
            .id_token("https://aud.example", "a@p.iam.gserviceaccount.com", "1")
            .unwrap();
        let jwk = &s.jwks().keys[0];
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["https://aud.example"]);
        v.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&t, &key, &v).unwrap();
        assert_eq!(data.claims["email"], "a@p.iam.gserviceaccount.com");
        assert_eq!(data.header.kid, jwk.common.key_id);
        // Another run's key does not verify it.
        let other = Signer::generate().unwrap();
        let key = DecodingKey::from_jwk(&other.jwks().keys[0]).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&t, &key, &v).is_err());
        assert_eq!(unique_id("a@b.c").len(), 21);
        assert_eq!(unique_id("a@b.c"), unique_id("a@b.c"));
    }
}
