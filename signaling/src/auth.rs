//! Tokens: who may join which room with which role.
//!
//! A token is a JWT with claims `room` (a room name, or `*` for any room), `name` (display name,
//! optional), a role and `exp`. It is signed either with the configured HS256 secret, or by an
//! identity provider whose keys are published as a JWKS (RSA and EC keys only: RS*, PS*, ES256/384).
//! The JWKS is fetched when a token names a key id it does not have, at most once per
//! `auth.jwks_min_refetch_secs`, one fetch at a time, with a 5-second limit; `exp` and `nbf` are checked. The role is read from `auth.role_claim` (default `role`,
//! Keycloak: `realm_access.roles`), a role name or an array of them; names are mapped through
//! `auth.role_map`, else taken as they are with or without a `samtal-` prefix, and of several the
//! most privileged wins. Service accounts use API keys (`samtal_…`), configured by their SHA-256.

use crate::config::AuthConfig;
use crate::error::{Error, Result};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use samtal_protocol::Role;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest a JWKS fetch may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

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
        self.room == "*" || (!self.room.is_empty() && self.room == room)
    }
}

/// Who a caller of the HTTP API is: the claims and the name the audit trail records.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub claims: Claims,
    /// `preferred_username`, `name` or `sub` of a token (the first present), `apikey:<name>` for an API key.
    pub actor: String,
}

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "samtal_";

/// A new random API key and its SHA-256 (for `auth.api_keys`).
pub fn new_api_key() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let key = format!("{API_KEY_PREFIX}{}", hex::encode(bytes));
    let hash = crate::compliance::sha256_hex(key.as_bytes());
    (key, hash)
}

/// Order of privilege, for tokens that carry several roles.
fn rank(role: Role) -> u8 {
    match role {
        Role::Participant => 0,
        Role::Service => 1,
        Role::Moderator => 2,
        Role::Compliance => 3,
        Role::Administrator => 4,
    }
}

fn role_named(name: &str) -> Option<Role> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// Mints an HS256 token (for `samtal token` and tests).
pub fn mint(secret: &str, room: &str, name: Option<&str>, role: Role, ttl: Duration) -> Result<String> {
    let exp = (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        room: room.to_owned(),
        name: name.map(str::to_owned),
        role,
        exp,
        sub: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Token(e.to_string()))
}

/// Checks tokens against the configured secret and/or JWKS.
#[derive(Clone)]
pub struct Verifier {
    config: AuthConfig,
    jwks: Arc<RwLock<JwkSet>>,
    /// When the JWKS was last fetched; the lock also makes fetches one at a time.
    last_fetch: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl Verifier {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            jwks: Arc::new(RwLock::new(JwkSet { keys: Vec::new() })),
            last_fetch: Default::default(),
        }
    }

    /// A verifier that already holds `set`, as if just fetched from `auth.jwks_url`, and fetches
    /// again only after `auth.jwks_min_refetch_secs`: for tests and fuzz targets.
    pub fn with_jwks(config: AuthConfig, set: JwkSet) -> Self {
        Self {
            config,
            jwks: Arc::new(RwLock::new(usable_keys(set))),
            last_fetch: Arc::new(tokio::sync::Mutex::new(Some(Instant::now()))),
        }
    }

    /// Whether join tokens are checked (a secret or a JWKS is configured).
    pub fn enabled(&self) -> bool {
        self.config.secret.is_some() || self.config.jwks_url.is_some()
    }

    /// Whether the HTTP API can authenticate anyone (tokens or API keys).
    pub fn api_enabled(&self) -> bool {
        self.enabled() || !self.config.api_keys.is_empty()
    }

    /// A Samtal role for an identity provider's role name, if it names one.
    fn map_role(&self, name: &str) -> Option<Role> {
        self.config
            .role_map
            .get(name)
            .copied()
            .or_else(|| role_named(name))
            .or_else(|| name.strip_prefix("samtal-").and_then(role_named))
    }

    /// The role in `claims` at `auth.role_claim`: absent is `participant`, a string must name a
    /// role, of an array the most privileged role named wins (other entries are ignored).
    fn role_of(&self, claims: &serde_json::Value) -> Result<Role> {
        let path = self.config.role_claim.as_deref().unwrap_or("role");
        let value = path.split('.').try_fold(claims, |v, key| v.get(key));
        match value {
            None | Some(serde_json::Value::Null) => Ok(Role::Participant),
            Some(serde_json::Value::String(name)) => self
                .map_role(name)
                .ok_or_else(|| Error::Token(format!("unknown role {name:?} in claim {path}"))),
            Some(serde_json::Value::Array(names)) => Ok(names
                .iter()
                .filter_map(|n| n.as_str())
                .filter_map(|n| self.map_role(n))
                .max_by_key(|r| rank(*r))
                .unwrap_or_default()),
            Some(_) => Err(Error::Token(format!(
                "claim {path} must be a role name or an array of role names"
            ))),
        }
    }

    /// The service account whose API key this is.
    pub fn api_key(&self, key: &str) -> Result<Identity> {
        let hash = crate::compliance::sha256_hex(key.trim().as_bytes());
        let account = self
            .config
            .api_keys
            .iter()
            .find(|k| k.sha256.trim().eq_ignore_ascii_case(&hash))
            .ok_or_else(|| Error::Token("unknown API key".into()))?;
        let actor = format!("apikey:{}", account.name);
        Ok(Identity {
            claims: Claims {
                room: "*".into(),
                name: Some(account.name.clone()),
                role: account.role,
                exp: u64::MAX,
                sub: Some(actor.clone()),
            },
            actor,
        })
    }

    /// A bearer credential of the HTTP API: an API key (`samtal_…`) or a JWT.
    pub async fn identify(&self, credential: &str) -> Result<Identity> {
        if credential.starts_with(API_KEY_PREFIX) {
            return self.api_key(credential);
        }
        let (claims, raw) = self.verify_raw(credential).await?;
        let text = |key: &str| {
            raw.get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let actor = text("preferred_username")
            .or_else(|| text("name"))
            .or_else(|| text("sub"))
            .unwrap_or_else(|| "unknown".into());
        Ok(Identity { claims, actor })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = 30;
        v.validate_nbf = true;
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
        Ok(self.verify_raw(token).await?.0)
    }

    /// [`Verifier::verify`], also returning every claim as it was in the token.
    async fn verify_raw(&self, token: &str) -> Result<(Claims, serde_json::Value)> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Error::Token(format!("malformed token: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 => {
                let secret = self
                    .config
                    .secret
                    .as_ref()
                    .ok_or_else(|| Error::Token("HS256 tokens are not accepted here".into()))?;
                DecodingKey::from_secret(secret.as_bytes())
            }
            alg if jwks_algorithm(alg) => self.jwks_key(header.kid.as_deref(), alg).await?,
            alg => {
                return Err(Error::Token(format!(
                    "{alg:?} tokens are not accepted (HS256 with auth.secret, or RS*/PS*/ES* from the JWKS)"
                )));
            }
        };
        let raw = jsonwebtoken::decode::<serde_json::Value>(token, &key, &self.validation(header.alg))
            .map(|data| data.claims)
            .map_err(|e| Error::Token(e.to_string()))?;
        let text = |key: &str| -> Result<Option<String>> {
            match raw.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::Token(format!("claim {key} must be a string"))),
            }
        };
        let claims = Claims {
            room: text("room")?.unwrap_or_default(),
            name: text("name")?,
            role: self.role_of(&raw)?,
            exp: raw
                .get("exp")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| Error::Token("claim exp must be a number".into()))?,
            sub: text("sub")?,
        };
        Ok((claims, raw))
    }

    async fn jwks_key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey> {
        let url = self
            .config
            .jwks_url
            .clone()
            .ok_or_else(|| Error::Token(format!("{alg:?} tokens need a JWKS (auth.jwks_url)")))?;
        let kid = kid
            .ok_or_else(|| Error::Token("token has no key id (kid)".into()))?
            .to_owned();
        if let Some(key) = self.find(&kid)? {
            return Ok(key);
        }
        // One fetch at a time; whoever waited may find the key the fetch before it brought.
        let mut last_fetch = self.last_fetch.lock().await;
        if let Some(key) = self.find(&kid)? {
            return Ok(key);
        }
        let min_interval = Duration::from_secs(self.config.jwks_min_refetch_secs);
        if let Some(at) = *last_fetch
            && at.elapsed() < min_interval
        {
            return Err(Error::Token(format!(
                "unknown key id {kid} (the JWKS was fetched {}s ago)",
                at.elapsed().as_secs()
            )));
        }
        *last_fetch = Some(Instant::now());
        let set = tokio::task::spawn_blocking(move || fetch_jwks(&url))
            .await
            .map_err(|e| Error::Token(format!("JWKS fetch task failed: {e}")))??;
        *self.jwks.write().expect("jwks lock") = usable_keys(set);
        drop(last_fetch);
        self.find(&kid)?
            .ok_or_else(|| Error::Token(format!("unknown key id {kid}")))
    }

    fn find(&self, kid: &str) -> Result<Option<DecodingKey>> {
        let set = self.jwks.read().expect("jwks lock");
        set.find(kid)
            .map(|jwk| DecodingKey::from_jwk(jwk).map_err(|e| Error::Token(format!("bad JWK {kid}: {e}"))))
            .transpose()
    }
}

/// Algorithms whose keys come from the JWKS: public-key signatures with RSA or elliptic-curve keys.
/// HS* would let whoever reads a published symmetric key sign tokens; EdDSA is not offered by the
/// identity providers Samtal supports.
fn jwks_algorithm(alg: Algorithm) -> bool {
    use Algorithm::*;
    matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384)
}

/// The RSA and EC keys of a JWKS; symmetric (`oct`) and other keys are dropped.
fn usable_keys(set: JwkSet) -> JwkSet {
    let keys = set
        .keys
        .into_iter()
        .filter(|k| {
            matches!(
                k.algorithm,
                AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
            )
        })
        .collect();
    JwkSet { keys }
}

fn fetch_jwks(url: &str) -> Result<JwkSet> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(JWKS_FETCH_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| Error::Token(format!("cannot fetch JWKS from {url}: {e}")))?;
    response
        .body_mut()
        .read_json::<JwkSet>()
        .map_err(|e| Error::Token(format!("JWKS at {url} is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secret: &str) -> Verifier {
        Verifier::new(AuthConfig {
            secret: Some(secret.into()),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn minted_token_round_trips() {
        let token = mint(
            "s3cret",
            "weekly",
            Some("Alice"),
            Role::Moderator,
            Duration::from_secs(60),
        )
        .unwrap();
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
        let claims = Claims {
            room: "weekly".into(),
            name: None,
            role: Role::Participant,
            exp,
            sub: None,
        };
        let expired = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret")).unwrap();
        let err = verifier("s3cret").verify(&expired).await.unwrap_err().to_string();
        assert!(err.contains("xpired"), "{err}");
        assert!(verifier("s3cret").verify("not.a.jwt").await.is_err());
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[tokio::test]
    async fn a_token_not_valid_yet_is_refused() {
        let claims = serde_json::json!({"room": "weekly", "exp": now() + 3600, "nbf": now() + 600});
        let early = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret")).unwrap();
        let err = verifier("s3cret").verify(&early).await.unwrap_err().to_string();
        assert!(
            err.contains("mmature") || err.contains("nbf") || err.contains("before"),
            "{err}"
        );
        let claims = serde_json::json!({"room": "weekly", "exp": now() + 3600, "nbf": now() - 10});
        let ready = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret")).unwrap();
        assert!(verifier("s3cret").verify(&ready).await.is_ok());
    }

    /// A JWKS on loopback that counts how often it is fetched; it holds one RSA key (`k1`) and one
    /// symmetric key (`sym`) whose bytes anyone reading the JWKS knows.
    async fn counting_jwks() -> (String, Arc<std::sync::atomic::AtomicUsize>, EncodingKey) {
        use jsonwebtoken::jwk::Jwk;
        let der = include_bytes!("api/testdata/oidc-key.der");
        let rsa = EncodingKey::from_rsa_der(der);
        let mut jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("k1".into());
        // k = base64url("published")
        let oct: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "cHVibGlzaGVk", "kid": "sym"})).unwrap();
        let set = JwkSet { keys: vec![jwk, oct] };
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = fetches.clone();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let set = set.clone();
                async move { axum::Json(set) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, fetches, rsa)
    }

    fn signed(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &serde_json::json!({"room": "weekly", "exp": now() + 600}), key).unwrap()
    }

    #[tokio::test]
    async fn unknown_key_ids_do_not_refetch_the_jwks_every_time() {
        let (url, fetches, rsa) = counting_jwks().await;
        let v = Verifier::new(AuthConfig {
            jwks_url: Some(url),
            ..Default::default()
        });
        assert_eq!(
            v.verify(&signed(Algorithm::RS256, "k1", &rsa)).await.unwrap().room,
            "weekly"
        );
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        for i in 0..20 {
            let err = v
                .verify(&signed(Algorithm::RS256, &format!("nope-{i}"), &rsa))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown key id"), "{err}");
        }
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "fetched again within jwks_min_refetch_secs"
        );
        let v = Verifier::new(AuthConfig {
            jwks_url: v.config.jwks_url.clone(),
            jwks_min_refetch_secs: 0,
            ..Default::default()
        });
        let _ = v.verify(&signed(Algorithm::RS256, "nope", &rsa)).await;
        let _ = v.verify(&signed(Algorithm::RS256, "nope", &rsa)).await;
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "with no minimum interval each unknown kid fetches"
        );
    }

    #[tokio::test]
    async fn symmetric_and_eddsa_tokens_are_not_taken_from_the_jwks() {
        let (url, fetches, _) = counting_jwks().await;
        let v = Verifier::new(AuthConfig {
            jwks_url: Some(url),
            ..Default::default()
        });
        let forged = signed(Algorithm::HS384, "sym", &EncodingKey::from_secret(b"published"));
        let err = v.verify(&forged).await.unwrap_err().to_string();
        assert!(err.contains("not accepted"), "{err}");
        // {"alg":"EdDSA","kid":"sym"}: jsonwebtoken panicked on a short Ed25519 JWKS key (found by fuzzing).
        let eddsa = "eyJhbGciOiJFZERTQSIsImtpZCI6InN5bSJ9.e30.AAAA";
        let err = v.verify(eddsa).await.unwrap_err().to_string();
        assert!(err.contains("not accepted"), "{err}");
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "refused before any fetch"
        );
        // Even when an RS256 token names the symmetric key, the JWKS keeps only RSA and EC keys.
        let err = v
            .verify(&signed(
                Algorithm::RS256,
                "sym",
                &EncodingKey::from_rsa_der(include_bytes!("api/testdata/oidc-key.der")),
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key id sym"), "{err}");
    }
}
