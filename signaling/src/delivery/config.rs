//! The `[matrix]` configuration section (see `docs/configuration.md` and `docs/matrix.md`).

use samtal_matrix::BotConfig;
use samtal_matrix::summary::llm::LlmConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatrixConfig {
    /// Client-server API base URL of the bot's homeserver; empty: no Matrix delivery.
    pub homeserver_url: String,
    /// The bot's user id (`@samtal:example.org`) or local part.
    pub user: String,
    /// The bot's password (or give `access_token`).
    pub password: Option<String>,
    /// An access token of the bot's account, instead of a password.
    pub access_token: Option<String>,
    /// Display name of the bot's device.
    pub device_name: String,
    /// The bot's state and crypto store; empty: `<data_dir>/matrix`.
    pub store_dir: Option<PathBuf>,
    /// Encrypts the store on disk when set.
    pub store_passphrase: Option<String>,
    /// Seconds one homeserver request may take.
    pub request_timeout_secs: u64,
    /// Post a notice when transcription starts and stops.
    pub notices: bool,
    /// Seconds after a meeting ends before its summary is made (lets the worker's last segments arrive).
    pub summary_delay_secs: u64,
    /// First wait before retrying a failed delivery; doubles with every failure.
    pub retry_initial_secs: u64,
    /// Longest wait between retries.
    pub retry_max_secs: u64,
    /// The LLM summarizer; with no `url`, summaries are extractive.
    pub llm: LlmConfig,
    /// Who may invite the bot into rooms: user ids (`@clerk:agency.se`) and server names
    /// (`agency.se`). Empty: users of the bot's own homeserver only.
    pub invite_from: Vec<String>,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        Self {
            homeserver_url: String::new(),
            user: String::new(),
            password: None,
            access_token: None,
            device_name: "Samtal".into(),
            store_dir: None,
            store_passphrase: None,
            request_timeout_secs: 30,
            notices: true,
            summary_delay_secs: 5,
            retry_initial_secs: 5,
            retry_max_secs: 600,
            llm: LlmConfig::default(),
            invite_from: Vec::new(),
        }
    }
}

impl MatrixConfig {
    /// Whether Matrix delivery is on (a homeserver is configured).
    pub fn enabled(&self) -> bool {
        !self.homeserver_url.trim().is_empty()
    }

    /// The bot's settings, with the store in `<data_dir>/matrix` unless configured.
    pub fn bot(&self, data_dir: &Path) -> BotConfig {
        BotConfig {
            homeserver_url: self.homeserver_url.trim().to_owned(),
            user: self.user.clone(),
            password: self.password.clone(),
            access_token: self.access_token.clone(),
            device_name: self.device_name.clone(),
            store_dir: self.store_dir.clone().unwrap_or_else(|| data_dir.join("matrix")),
            store_passphrase: self.store_passphrase.clone(),
            request_timeout_secs: self.request_timeout_secs,
            invite_from: self.invite_from.clone(),
        }
    }
}
