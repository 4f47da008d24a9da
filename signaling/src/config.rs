//! The server's typed configuration: defaults, overridden by a TOML file, overridden by
//! `SAMTAL_*` environment variables (`SAMTAL_LISTEN`, `SAMTAL_AUTH__SECRET`, `SAMTAL_MEDIA__UDP_PORT`, …;
//! a double underscore separates nested keys), overridden by command-line flags.
//! Every field is documented in `docs/configuration.md`.

use crate::error::{Error, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use samtal_protocol::{IceServer, Role};
pub use samtal_records::compliance::retention::RetentionConfig;
use samtal_sfu::MediaConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP and websocket address.
    pub listen: SocketAddr,
    /// Where the server keeps its files (the transcript database, later).
    pub data_dir: PathBuf,
    /// Directory of the web client; empty: the `web/` folder next to the binary's source tree.
    pub web_dir: Option<PathBuf>,
    /// Transcript store: `sqlite://PATH` or `postgres://USER@HOST/DB`. Empty: SQLite at `<data_dir>/samtal.db`.
    pub database_url: Option<String>,
    pub auth: AuthConfig,
    pub media: MediaConfig,
    /// STUN/TURN servers handed to clients in `joined`. None by default: no public server is ever used.
    pub ice_servers: Vec<IceServer>,
    /// A TURN server whose credentials are minted per join (`[turn]`).
    pub turn: crate::turn::TurnConfig,
    pub limits: Limits,
    pub embed: EmbedConfig,
    pub transcription: TranscriptionConfig,
    pub retention: RetentionConfig,
    pub audit: AuditConfig,
    /// Matrix bot and delivery of notices and summaries (`[matrix]`); off without a homeserver.
    pub matrix: crate::delivery::MatrixConfig,
    /// Signed webhooks to the operator's receivers (`[webhooks]`); off without endpoints.
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// Several nodes sharing a NATS server (`[cluster]`); off without `nats_url`.
    pub cluster: crate::cluster::ClusterConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Reverse proxies whose `X-Forwarded-For` is believed: for requests from these addresses the
    /// audit trail records the first forwarded address as the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// After a restart, a transcription that was running resumes; if nobody rejoins its room within
    /// this many seconds it is stopped (its meeting ends).
    pub resume_grace_secs: u64,
    /// The key transcription workers register with (`samtal-transcriber --token KEY`): a random string of
    /// at least 32 bytes. Unset: only a service-role token (with `auth.secret` or `auth.jwks_url`) registers
    /// a worker; on an open server, no worker can register and transcription is unavailable.
    pub worker_key: Option<String>,
    /// Keep the chat of a transcribed meeting with its transcript: each message written while
    /// transcription runs (not those of participants who opted out), under the same retention,
    /// legal hold and audit trail.
    pub keep_chat: bool,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self {
            resume_grace_secs: 120,
            worker_key: None,
            keep_chat: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// Origins (`https://intranet.example.org`) allowed to embed the meeting page in an iframe and
    /// drive it by postMessage. Empty: only this server's own origin.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 shared secret for tokens. Without a secret or a JWKS the server runs open.
    pub secret: Option<String>,
    /// URL of a JWKS document (RS256/ES256 keys of an OpenID Connect provider).
    pub jwks_url: Option<String>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Where tokens carry the role: a claim name or a dotted path into nested objects (Keycloak:
    /// `realm_access.roles`); its value is a role name or an array of them. Unset: `role`.
    pub role_claim: Option<String>,
    /// Role names of the identity provider mapped to Samtal roles, e.g. `{ "records-officer" = "compliance" }`.
    /// Names not in the map are taken as they are, with or without a `samtal-` prefix.
    pub role_map: BTreeMap<String, Role>,
    /// API keys of service accounts; only their SHA-256 is configured.
    pub api_keys: Vec<ApiKey>,
    /// Sign-in on the officer pages through the identity provider (authorization code flow with PKCE,
    /// as a public client); its tokens are then checked against `jwks_url` like any other.
    pub oidc: Option<OidcLogin>,
    /// A token naming a key id the JWKS does not have makes the server fetch the JWKS again, at most
    /// once in this many seconds; other such tokens are refused without a fetch.
    pub jwks_min_refetch_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            role_claim: None,
            role_map: BTreeMap::new(),
            api_keys: Vec::new(),
            oidc: None,
            jwks_min_refetch_secs: 30,
        }
    }
}

/// The identity provider's endpoints for browser sign-in (Keycloak:
/// `https://HOST/realms/REALM/protocol/openid-connect/auth` and `…/token`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcLogin {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// A public client (no secret) whose valid redirect URIs include `https://THIS-SERVER/officer.html`.
    pub client_id: String,
    /// Scopes asked for; default `openid`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The button's label, e.g. "Sign in with Keycloak".
    #[serde(default = "default_oidc_label")]
    pub label: String,
}

fn default_scope() -> String {
    "openid".into()
}

fn default_oidc_label() -> String {
    "Sign in with your organisation's account".into()
}

/// A service account's API key (made by `samtal api-key`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Names the account in the audit trail (`apikey:<name>`).
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest websocket message accepted, in bytes; larger ones get error `too_large`.
    pub max_message_bytes: usize,
    /// Messages per second one client may send (burst: twice this); excess gets `rate_limited`.
    pub max_messages_per_second: u32,
    /// Seconds without any message after which a client is dropped.
    pub heartbeat_timeout_secs: u64,
    /// Participants per room (hidden ones not counted).
    pub max_participants: usize,
    /// Seconds a new websocket connection has to `join` (or register as a worker) before it is closed.
    pub join_timeout_secs: u64,
    /// Websocket connections that have not joined yet, server-wide; more are refused with `server_busy`.
    pub max_unjoined_connections: usize,
    /// Sessions one token identity (its `sub`, else the token itself) may hold in one room at once.
    pub max_joins_per_identity: usize,
    /// Open HTTP connections (websockets included), server-wide; more are answered `503` and closed.
    /// Capped below the process's open-file limit.
    pub max_http_connections: usize,
    /// Seconds a client has to send a request's headers; also how long a kept-alive connection may
    /// sit idle between requests.
    pub http_header_timeout_secs: u64,
    /// Seconds open requests get to finish when the server stops; then their connections are closed.
    pub shutdown_grace_secs: u64,
    /// Seconds a participant whose websocket dropped keeps its place (tracks, peer connections,
    /// the others see no leave) while its client resumes the session on a new websocket; `0`
    /// turns resumption off (a drop is a leave).
    pub resume_grace_secs: u64,
    /// Seconds a server stopped by SIGTERM drains before it stops: it takes no new rooms (its
    /// readiness check fails, joins to rooms it does not hold get `draining`) while the meetings it
    /// holds go on, and it stops as soon as they are over or this time has passed. `0`: stop at once.
    pub drain_secs: u64,
    /// Seconds a joiner may wait in a knocking room's lobby before it gets `lobby_timeout`.
    pub lobby_wait_secs: u64,
    /// Joiners waiting in one room's lobby at once; one more gets `lobby_timeout` at once.
    pub max_lobby_waiting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_messages_per_second: 50,
            heartbeat_timeout_secs: 30,
            max_participants: 100,
            join_timeout_secs: 10,
            max_unjoined_connections: 256,
            max_joins_per_identity: 4,
            max_http_connections: 4096,
            http_header_timeout_secs: 10,
            shutdown_grace_secs: 10,
            resume_grace_secs: 30,
            drain_secs: 30,
            lobby_wait_secs: 600,
            max_lobby_waiting: 50,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("data"),
            web_dir: None,
            database_url: None,
            auth: AuthConfig::default(),
            media: MediaConfig::default(),
            ice_servers: Vec::new(),
            turn: Default::default(),
            limits: Limits::default(),
            embed: EmbedConfig::default(),
            transcription: TranscriptionConfig::default(),
            retention: RetentionConfig::default(),
            audit: AuditConfig::default(),
            matrix: Default::default(),
            webhooks: Default::default(),
            cluster: Default::default(),
        }
    }
}

/// Top-level keys, for picking configuration out of the environment.
const SECTIONS: &[&str] = &[
    "listen",
    "data_dir",
    "web_dir",
    "database_url",
    "auth",
    "media",
    "ice_servers",
    "turn",
    "limits",
    "embed",
    "transcription",
    "retention",
    "audit",
    "matrix",
    "webhooks",
    "cluster",
];

impl Config {
    /// Defaults, then the file (if given), then `SAMTAL_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Error::Config(format!(
                    "configuration file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            .merge(Env::prefixed("SAMTAL_").split("__").filter(|key| {
                // Other SAMTAL_* variables (SAMTAL_LOG, SAMTAL_CONFIG, test settings) are not configuration keys.
                let top = key.as_str().split('.').next().unwrap_or_default().to_ascii_lowercase();
                SECTIONS.contains(&top.as_str())
            }))
            .extract()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Refuses settings that would make the server insecure while it looks secured: an empty, short or
    /// placeholder `auth.secret` (anyone could sign an administrator token with it) or
    /// `transcription.worker_key`. The message names the key and says why.
    pub fn validate(&self) -> Result<()> {
        if let Some(secret) = &self.auth.secret {
            check_secret("auth.secret", secret, "tokens")?;
        }
        if let Some(key) = &self.transcription.worker_key {
            check_secret("transcription.worker_key", key, "transcription workers")?;
        }
        if let Some(secret) = &self.turn.secret {
            check_secret("turn.secret", secret, "TURN credentials")?;
            if self.turn.urls.is_empty() {
                return Err(Error::Config("turn.secret is set but turn.urls is empty".into()));
            }
        }
        self.webhooks
            .validate(|key, secret| check_secret(key, secret, "webhook signatures"))?;
        self.cluster.validate()?;
        Ok(())
    }

    /// True when join tokens are checked.
    pub fn auth_enabled(&self) -> bool {
        self.auth.secret.is_some() || self.auth.jwks_url.is_some()
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("samtal.db").display()))
    }

    pub fn web_dir(&self) -> PathBuf {
        self.web_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web")))
    }
}

/// Shortest secret accepted, in bytes (as long as the HS256 key it becomes).
pub const MIN_SECRET_BYTES: usize = 32;

/// Placeholder words of example configurations; a secret containing one was never changed.
const PLACEHOLDERS: &[&str] = &["change-me", "changeme", "replace-me", "your-secret"];

fn check_secret(key: &str, value: &str, guards: &str) -> Result<()> {
    let how = "set a random value of at least 32 bytes (e.g. `openssl rand -base64 32`)";
    if value.trim().is_empty() {
        return Err(Error::Config(format!(
            "{key} is empty: anyone could forge {guards} with an empty key; {how}, or remove the key"
        )));
    }
    if value.len() < MIN_SECRET_BYTES {
        return Err(Error::Config(format!(
            "{key} is {} bytes long, shorter than {MIN_SECRET_BYTES}: it can be guessed; {how}",
            value.len()
        )));
    }
    let lower = value.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDERS.iter().find(|w| lower.contains(*w)) {
        return Err(Error::Config(format!(
            "{key} still holds the example's placeholder ({word:?}): everyone who read the example knows it; {how}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_short_and_placeholder_secrets_are_refused() {
        let with_secret = |s: &str| Config {
            auth: AuthConfig {
                secret: Some(s.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        for (secret, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("short-secret", "shorter than 32"),
            ("change-me-to-a-long-random-string", "placeholder"),
        ] {
            let err = with_secret(secret).validate().unwrap_err().to_string();
            assert!(err.contains("auth.secret") && err.contains(why), "{secret:?}: {err}");
        }
        assert!(with_secret("0123456789abcdef0123456789abcdef").validate().is_ok());
        assert!(
            Config::default().validate().is_ok(),
            "an open server has no secret to check"
        );
        let mut config = Config::default();
        config.transcription.worker_key = Some("worker".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("transcription.worker_key")
        );
    }

    #[test]
    fn file_and_environment_override_defaults() {
        let dir = std::env::temp_dir().join(format!("samtal-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samtal.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[media]\nudp_port = 12000\n[limits]\nmax_participants = 7\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.media.udp_port, 12000);
        assert_eq!(config.limits.max_participants, 7);
        assert_eq!(
            config.limits.max_message_bytes,
            64 * 1024,
            "untouched fields keep defaults"
        );
        assert!(!config.auth_enabled());
    }

    #[test]
    fn the_shipped_example_configuration_loads() {
        let example = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/samtal.example.toml"));
        let config = Config::load(Some(example)).unwrap();
        assert_eq!(config.media.udp_port, 10000);
        assert!(config.auth_enabled());
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("auth.secret") && err.contains("placeholder"),
            "the example's secret must be replaced: {err}"
        );
    }

    #[test]
    fn compliance_settings_load_from_a_file() {
        let dir = std::env::temp_dir().join(format!("samtal-config-compliance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samtal.toml");
        std::fs::write(
            &file,
            "[auth]\njwks_url = \"http://127.0.0.1:1/certs\"\nrole_claim = \"realm_access.roles\"\n\
             role_map = { records-officer = \"compliance\" }\n\
             [[auth.api_keys]]\nname = \"archiver\"\nrole = \"compliance\"\nsha256 = \"00ff\"\n\
             [retention]\ndays = 90\npurge_interval_secs = 60\nrooms = { board = 3650, scratch = 7 }\n\
             [audit]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.auth.role_claim.as_deref(), Some("realm_access.roles"));
        assert_eq!(config.auth.role_map.get("records-officer"), Some(&Role::Compliance));
        assert_eq!(config.auth.api_keys[0].name, "archiver");
        assert_eq!(
            (config.retention.days_for("board"), config.retention.days_for("other")),
            (3650, 90)
        );
        assert!(config.retention.enabled());
        assert!(!RetentionConfig::default().enabled());
        assert_eq!(
            config.audit.trusted_proxies,
            ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("samtal-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samtal.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(Config::load(Some(&dir.join("nope.toml"))).is_err());
    }
}
