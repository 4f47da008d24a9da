//! Tokens: who may join which room with which role.
//!
//! A token is a JWT with claims `room` (a room name, or `*` for any room), `name` (display name,
//! optional), `role` (`participant`, `moderator`, `service`) and `exp`. It is signed either with
//! the configured HS256 secret, or by an identity provider whose keys are published as a JWKS
//! (RS256/ES256; fetched at start and again when a token names an unknown key id).

use crate::config::AuthConfig;
use crate::error::{Error, Result};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use samtal_protocol::Role;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl Claims {
    pub fn allows_room(&self, room: &str) -> bool {
        self.room == "*" || self.room == room
    }
}

/// Mints an HS256 token (for `samtal token` and tests).
pub fn mint(secret: &str, room: &str, name: Option<&str>, role: Role, ttl: Duration) -> Result<String> {
    let exp = (SystemTime::now() + ttl).duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = Claims { room: room.to_owned(), name: name.map(str::to_owned), role, exp, sub: None };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| Error::Token(e.to_string()))
}

/// Checks tokens against the configured secret and/or JWKS.
#[derive(Clone)]
pub struct Verifier {
    config: AuthConfig,
    jwks: Arc<RwLock<JwkSet>>,
}

impl Verifier {
    pub fn new(config: AuthConfig) -> Self {
        Self { config, jwks: Arc::new(RwLock::new(JwkSet { keys: Vec::new() })) }
    }

    pub fn enabled(&self) -> bool {
        self.config.secret.is_some() || self.config.jwks_url.is_some()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = 30;
        match &self.config.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
        }
        v
    }

    /// Validates signature, expiry, issuer and audience; returns the claims.
    pub async fn verify(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Error::Token(format!("malformed token: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 => {
                let secret = self.config.secret.as_ref().ok_or_else(|| Error::Token("HS256 tokens are not accepted here".into()))?;
                DecodingKey::from_secret(secret.as_bytes())
            }
            alg => self.jwks_key(header.kid.as_deref(), alg).await?,
        };
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation(header.alg))
            .map(|data| data.claims)
            .map_err(|e| Error::Token(e.to_string()))
    }

    async fn jwks_key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey> {
        let url = self.config.jwks_url.clone().ok_or_else(|| Error::Token(format!("{alg:?} tokens need a JWKS (auth.jwks_url)")))?;
        let kid = kid.ok_or_else(|| Error::Token("token has no key id (kid)".into()))?.to_owned();
        if let Some(key) = self.find(&kid)? {
            return Ok(key);
        }
        let set = tokio::task::spawn_blocking(move || fetch_jwks(&url))
            .await
            .map_err(|e| Error::Token(format!("JWKS fetch task failed: {e}")))??;
        *self.jwks.write().expect("jwks lock") = set;
        self.find(&kid)?.ok_or_else(|| Error::Token(format!("unknown key id {kid}")))
    }

    fn find(&self, kid: &str) -> Result<Option<DecodingKey>> {
        let set = self.jwks.read().expect("jwks lock");
        set.find(kid).map(|jwk| DecodingKey::from_jwk(jwk).map_err(|e| Error::Token(format!("bad JWK {kid}: {e}")))).transpose()
    }
}

fn fetch_jwks(url: &str) -> Result<JwkSet> {
    let mut response = ureq::get(url).call().map_err(|e| Error::Token(format!("cannot fetch JWKS from {url}: {e}")))?;
    response.body_mut().read_json::<JwkSet>().map_err(|e| Error::Token(format!("JWKS at {url} is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secret: &str) -> Verifier {
        Verifier::new(AuthConfig { secret: Some(secret.into()), ..Default::default() })
    }

    #[tokio::test]
    async fn minted_token_round_trips() {
        let token = mint("s3cret", "weekly", Some("Alice"), Role::Moderator, Duration::from_secs(60)).unwrap();
        let claims = verifier("s3cret").verify(&token).await.unwrap();
        assert_eq!(claims.room, "weekly");
        assert_eq!(claims.name.as_deref(), Some("Alice"));
        assert_eq!(claims.role, Role::Moderator);
        assert!(claims.allows_room("weekly") && !claims.allows_room("other"));
    }

    #[tokio::test]
    async fn wrong_secret_expired_and_garbage_are_refused() {
        let token = mint("other", "weekly", None, Role::Participant, Duration::from_secs(60)).unwrap();
        assert!(verifier("s3cret").verify(&token).await.is_err());
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 3600;
        let claims = Claims { room: "weekly".into(), name: None, role: Role::Participant, exp, sub: None };
        let expired = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret")).unwrap();
        let err = verifier("s3cret").verify(&expired).await.unwrap_err().to_string();
        assert!(err.contains("xpired"), "{err}");
        assert!(verifier("s3cret").verify("not.a.jwt").await.is_err());
    }
}
