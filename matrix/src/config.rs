//! The `[matrix]` configuration section (see `docs/configuration.md` and `docs/matrix.md`): how the
//! bot reaches its homeserver and who it is, and how the server delivers notices and summaries
//! through it. One type for both, read by the server and handed to [`Bot::connect`](crate::Bot::connect).

use samtal_summaries::llm::LlmConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatrixConfig {
    /// `https://matrix.example.org` (the client-server API's base URL); empty: no Matrix delivery.
    pub homeserver_url: String,
    /// The bot's user: `@samtal:example.org` or the local part `samtal`. Needed with `password`.
    pub user: String,
    /// The bot's password; or give `access_token`.
    pub password: Option<String>,
    /// An access token of the bot's account (with its device); used instead of a password login.
    pub access_token: Option<String>,
    /// Display name of the bot's device, shown to room members verifying devices.
    pub device_name: String,
    /// Folder of the bot's state and crypto store and its session; unset: `<data_dir>/matrix`.
    pub store_dir: Option<PathBuf>,
    /// Passphrase that encrypts the store on disk, if set.
    pub store_passphrase: Option<String>,
    /// Seconds one homeserver request may take.
    pub request_timeout_secs: u64,
    /// Who may invite the bot into a room (and so receive summaries and transcripts there): user ids
    /// (`@clerk:agency.se`) and server names (`agency.se`). Empty: users of the bot's own server only.
    pub invite_from: Vec<String>,
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
            invite_from: Vec::new(),
            notices: true,
            summary_delay_secs: 5,
            retry_initial_secs: 5,
            retry_max_secs: 600,
            llm: LlmConfig::default(),
        }
    }
}

impl MatrixConfig {
    /// Whether Matrix delivery is on (a homeserver is configured).
    pub fn enabled(&self) -> bool {
        !self.homeserver_url.trim().is_empty()
    }

    /// The bot's store folder: `store_dir`, or `<data_dir>/matrix`.
    pub fn store_dir_in(&self, data_dir: &Path) -> PathBuf {
        self.store_dir.clone().unwrap_or_else(|| data_dir.join("matrix"))
    }
}
