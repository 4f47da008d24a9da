//! The server's typed configuration: defaults, overridden by a TOML file, overridden by
//! `SAMTAL_*` environment variables (`SAMTAL_LISTEN`, `SAMTAL_AUTH__SECRET`, `SAMTAL_MEDIA__UDP_PORT`, …;
//! a double underscore separates nested keys), overridden by command-line flags.
//! Every field is documented in `docs/configuration.md`.

use crate::error::{Error, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use samtal_protocol::IceServer;
use samtal_sfu::MediaConfig;
use serde::{Deserialize, Serialize};
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
    pub limits: Limits,
    pub embed: EmbedConfig,
    pub transcription: TranscriptionConfig,
    /// Matrix bot and delivery of notices and summaries (`[matrix]`); off without a homeserver.
    pub matrix: crate::delivery::MatrixConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// After a restart, a transcription that was running resumes; if nobody rejoins its room within
    /// this many seconds it is stopped (its meeting ends).
    pub resume_grace_secs: u64,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self { resume_grace_secs: 120 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// Origins (`https://intranet.example.org`) allowed to embed the meeting page in an iframe and
    /// drive it by postMessage. Empty: only this server's own origin.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
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
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_message_bytes: 64 * 1024, max_messages_per_second: 50, heartbeat_timeout_secs: 30, max_participants: 100 }
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
            limits: Limits::default(),
            embed: EmbedConfig::default(),
            transcription: TranscriptionConfig::default(),
            matrix: Default::default(),
        }
    }
}

/// Top-level keys, for picking configuration out of the environment.
const SECTIONS: &[&str] = &["listen", "data_dir", "web_dir", "database_url", "auth", "media", "ice_servers", "limits", "embed", "transcription", "matrix"];

impl Config {
    /// Defaults, then the file (if given), then `SAMTAL_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Error::Config(format!("configuration file {} does not exist", file.display())));
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

    /// True when tokens are checked.
    pub fn auth_enabled(&self) -> bool {
        self.auth.secret.is_some() || self.auth.jwks_url.is_some()
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("samtal.db").display()))
    }

    pub fn web_dir(&self) -> PathBuf {
        self.web_dir.clone().unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_override_defaults() {
        let dir = std::env::temp_dir().join(format!("samtal-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samtal.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\n[media]\nudp_port = 12000\n[limits]\nmax_participants = 7\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.media.udp_port, 12000);
        assert_eq!(config.limits.max_participants, 7);
        assert_eq!(config.limits.max_message_bytes, 64 * 1024, "untouched fields keep defaults");
        assert!(!config.auth_enabled());
    }

    #[test]
    fn the_shipped_example_configuration_loads() {
        let example = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/samtal.example.toml"));
        let config = Config::load(Some(example)).unwrap();
        assert_eq!(config.media.udp_port, 10000);
        assert!(config.auth_enabled());
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
