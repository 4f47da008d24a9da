//! The bot account: login, a persistent store, a sync loop that accepts invitations, and sends.
//!
//! **One device across restarts.** The state and crypto store (SQLite) lives in `store_dir`, and
//! next to it `session.json` keeps the user id, device id and access token. At start the bot
//! restores that session; if the homeserver no longer accepts its token it logs in again with the
//! password *and the same device id*, so its identity keys, its room keys and the homeserver's
//! memory of its transaction ids stay those of one device. A configured access token is used as
//! is (the homeserver says whose and which device it is). If the store belongs to another device
//! than the session (an access token for a new device, say), the old store is moved aside.
//!
//! **Encrypted rooms** are handled by matrix-sdk: a send to an encrypted room shares the room key
//! with the devices of the joined members (querying their keys first) and encrypts the event;
//! attachments are encrypted before upload.
//!
//! **Idempotent sends.** [`Bot::send_notice`] and [`Bot::send_file`] take a transaction id: the
//! homeserver answers a repeated transaction id from the same device with the first event's id
//! instead of posting again. (A repeated file send uploads the file again, but posts no second event.)

use crate::config::MatrixConfig;
use crate::error::{Error, Result};
use crate::message::Formatted;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::ruma::api::error::ErrorKind;
use matrix_sdk::ruma::events::room::member::StrippedRoomMemberEvent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedTransactionId, RoomId};
use matrix_sdk::store::RoomLoadSettings;
use matrix_sdk::{Client, Room, RoomState, SessionMeta, SessionTokens};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Whether the bot accepts an invitation from `inviter` (a user id): listed in `allowed` by user id
/// or server name, or — with nothing listed — a user of the bot's own server.
pub fn invite_allowed(inviter: &str, bot_user: &str, allowed: &[String]) -> bool {
    let server = |user: &str| user.split_once(':').map(|(_, server)| server.to_ascii_lowercase());
    let Some(inviter_server) = server(inviter) else {
        return false;
    };
    if allowed.is_empty() {
        return server(bot_user).is_some_and(|own| own == inviter_server);
    }
    allowed.iter().map(|a| a.trim()).any(|a| {
        if a.starts_with('@') {
            a == inviter
        } else {
            a.trim_start_matches(':').eq_ignore_ascii_case(&inviter_server)
        }
    })
}

/// The logged-in bot, syncing in the background while it lives.
#[derive(Debug)]
pub struct Bot {
    client: Client,
    sync: tokio::task::JoinHandle<()>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

const SESSION_FILE: &str = "session.json";

#[derive(Debug, Serialize, Deserialize)]
struct SavedSession {
    homeserver_url: String,
    session: MatrixSession,
}

impl Bot {
    /// Logs in (or restores the saved session), syncs once so that the bot knows its rooms, and
    /// starts the sync loop that accepts invitations.
    pub async fn connect(config: &MatrixConfig, store_dir: &Path) -> Result<Bot> {
        if config.homeserver_url.trim().is_empty() {
            return Err(Error::Config("matrix.homeserver_url is not set".into()));
        }
        if config.password.is_none() && config.access_token.is_none() {
            return Err(Error::Config(
                "the Matrix bot needs matrix.password or matrix.access_token".into(),
            ));
        }
        let dir = store_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        let saved = read_session(dir).filter(|s| s.homeserver_url == config.homeserver_url);

        // Which session to use, decided before the store is opened (it belongs to one device).
        let session = match (&config.access_token, &saved) {
            (Some(token), Some(s)) if &s.session.tokens.access_token == token => Some(s.session.clone()),
            (Some(token), _) => Some(whoami(config, token).await?),
            (None, Some(s)) => Some(s.session.clone()),
            (None, None) => None,
        };
        let store_device = saved.as_ref().map(|s| s.session.meta.device_id.to_string());
        let new_device = session.as_ref().map(|s| s.meta.device_id.to_string());
        if store_device != new_device && (saved.is_some() || store_has_files(dir)) {
            set_store_aside(dir)?;
        }

        let client = build_client(config, store_dir).await?;
        let had_session = session.is_some();
        let restored = match session {
            Some(session) => {
                client
                    .matrix_auth()
                    .restore_session(session.clone(), RoomLoadSettings::default())
                    .await
                    .map_err(|e| Error::Store(format!("cannot restore the bot's session: {e}")))?;
                match client.whoami().await {
                    Ok(_) => true,
                    Err(e) if kind_of_http(&e).is_some_and(|k| matches!(k, ErrorKind::UnknownToken(_))) => {
                        if config.access_token.is_some() {
                            return Err(login_error(config, "the homeserver does not accept the access token"));
                        }
                        false
                    }
                    Err(e) if kind_of_http(&e).is_some() => {
                        return Err(login_error(config, &e.to_string()));
                    }
                    Err(e) => return Err(Error::Unavailable(e.to_string())),
                }
            }
            None => false,
        };
        let client = if restored {
            client
        } else {
            // A password login, keeping the device of the saved session (and of the store) if there is one.
            let password = config
                .password
                .as_deref()
                .ok_or_else(|| login_error(config, "no password configured"))?;
            // A client whose restored session was refused starts over on the same store.
            let client = if had_session {
                drop(client);
                build_client(config, store_dir).await?
            } else {
                client
            };
            let mut login = client
                .matrix_auth()
                .login_username(&config.user, password)
                .initial_device_display_name(&config.device_name);
            if let Some(device) = &store_device {
                login = login.device_id(device);
            }
            login.send().await.map_err(|e| match e.client_api_error_kind() {
                Some(ErrorKind::LimitExceeded(_)) => Error::Unavailable(e.to_string()),
                Some(_) => login_error(config, &e.to_string()),
                None => Error::Unavailable(e.to_string()),
            })?;
            client
        };
        let session = client
            .matrix_auth()
            .session()
            .ok_or_else(|| Error::Matrix("no session after login".into()))?;
        write_session(
            dir,
            &SavedSession {
                homeserver_url: config.homeserver_url.clone(),
                session,
            },
        )?;
        tracing::info!(user = ?client.user_id(), device = ?client.device_id(), "Matrix bot logged in");

        let invite_from = config.invite_from.clone();
        client.add_event_handler(
            move |event: StrippedRoomMemberEvent, room: Room, client: Client| {
                let invite_from = invite_from.clone();
                async move {
                    let Some(bot) = client.user_id() else { return };
                    if event.state_key.as_str() != bot.as_str() {
                        return;
                    }
                    if !invite_allowed(event.sender.as_str(), bot.as_str(), &invite_from) {
                        // Whoever invites the bot chooses where transcripts may go: only configured inviters.
                        tracing::warn!(room = %room.room_id(), inviter = %event.sender, "Matrix invitation refused: the inviter is not in matrix.invite_from");
                        tokio::spawn(async move { decline_invite(room).await });
                        return;
                    }
                    tokio::spawn(async move { accept_invite(room).await });
                }
            },
        );
        client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await
            .map_err(|e| Error::Unavailable(format!("first sync: {e}")))?;
        let sync = tokio::spawn(sync_loop(client.clone()));
        Ok(Bot { client, sync })
    }

    /// The bot's user id.
    pub fn user_id(&self) -> String {
        self.client.user_id().map(ToString::to_string).unwrap_or_default()
    }

    /// The bot's device id.
    pub fn device_id(&self) -> String {
        self.client.device_id().map(ToString::to_string).unwrap_or_default()
    }

    /// The matrix-sdk client (for tests and tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Posts an `m.notice` with plain and HTML bodies; returns the event id.
    pub async fn send_notice(&self, room: &str, message: &Formatted, txn_id: &str) -> Result<String> {
        let room = self.joined_room(room).await?;
        let content = RoomMessageEventContent::notice_html(message.plain.clone(), message.html.clone());
        let sent = room
            .send(content)
            .with_transaction_id(OwnedTransactionId::from(txn_id))
            .await
            .map_err(send_error)?;
        Ok(sent.response.event_id.to_string())
    }

    /// Uploads `data` through the media API (encrypted in encrypted rooms) and posts it as
    /// `m.file`; returns the event id.
    pub async fn send_file(&self, room: &str, name: &str, mime: &str, data: Vec<u8>, txn_id: &str) -> Result<String> {
        let room = self.joined_room(room).await?;
        let mime: mime::Mime = mime
            .parse()
            .map_err(|e| Error::Matrix(format!("bad content type {mime:?}: {e}")))?;
        let config = matrix_sdk::attachment::AttachmentConfig::new().txn_id(OwnedTransactionId::from(txn_id));
        let sent = room
            .send_attachment(name, &mime, data, config)
            .await
            .map_err(send_error)?;
        Ok(sent.event_id.to_string())
    }

    /// The room, joined: accepts a pending invitation (or joins a room open to the bot).
    async fn joined_room(&self, room: &str) -> Result<Room> {
        let id = RoomId::parse(room).map_err(|_| Error::BadRoomId(room.to_owned()))?;
        if let Some(r) = self.client.get_room(&id)
            && r.state() == RoomState::Joined
        {
            return Ok(r);
        }
        match self.client.join_room_by_id(&id).await {
            Ok(r) => Ok(r),
            Err(e) => match e.client_api_error_kind() {
                Some(ErrorKind::LimitExceeded(_)) => Err(Error::Unavailable(e.to_string())),
                Some(_) => Err(Error::NotInRoom {
                    room: room.to_owned(),
                    reason: e.to_string(),
                }),
                None if is_network(&e) => Err(Error::Unavailable(e.to_string())),
                None => Err(Error::NotInRoom {
                    room: room.to_owned(),
                    reason: e.to_string(),
                }),
            },
        }
    }
}

async fn build_client(config: &MatrixConfig, store_dir: &Path) -> Result<Client> {
    let timeout = Duration::from_secs(config.request_timeout_secs.max(1));
    Client::builder()
        .homeserver_url(&config.homeserver_url)
        .sqlite_store(store_dir, config.store_passphrase.as_deref())
        // A few quick retries; longer outages are the outbox's to wait out.
        .request_config(RequestConfig::new().retry_limit(2).timeout(timeout))
        .build()
        .await
        .map_err(|e| Error::Store(format!("cannot open the Matrix store in {}: {e}", store_dir.display())))
}

/// The user and device an access token belongs to.
async fn whoami(config: &MatrixConfig, token: &str) -> Result<MatrixSession> {
    let url = format!(
        "{}/_matrix/client/v3/account/whoami",
        config.homeserver_url.trim_end_matches('/')
    );
    let http = matrix_sdk::reqwest::Client::builder()
        .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
        .build()
        .map_err(|e| Error::Matrix(e.to_string()))?;
    let response = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| Error::Unavailable(format!("{url}: {e}")))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| Error::Unavailable(format!("{url}: {e}")))?;
    if status.is_server_error() {
        return Err(Error::Unavailable(format!("{url} answered {status}")));
    }
    if !status.is_success() {
        return Err(login_error(
            config,
            &format!("the homeserver does not accept the access token ({status}: {body})"),
        ));
    }
    #[derive(Deserialize)]
    struct WhoAmI {
        user_id: String,
        device_id: Option<String>,
    }
    let who: WhoAmI = serde_json::from_str(&body).map_err(|e| Error::Matrix(format!("whoami answer: {e}")))?;
    let device_id = who
        .device_id
        .ok_or_else(|| login_error(config, "the access token has no device (an appservice token?)"))?;
    let user_id = who
        .user_id
        .as_str()
        .try_into()
        .map_err(|e| Error::Matrix(format!("whoami user id: {e}")))?;
    Ok(MatrixSession {
        meta: SessionMeta {
            user_id,
            device_id: device_id.as_str().into(),
        },
        tokens: SessionTokens {
            access_token: token.to_owned(),
            refresh_token: None,
        },
    })
}

fn login_error(config: &MatrixConfig, reason: &str) -> Error {
    let user = if config.user.is_empty() {
        "(access token)".to_owned()
    } else {
        config.user.clone()
    };
    Error::Login {
        user,
        reason: reason.to_owned(),
    }
}

fn kind_of_http(e: &matrix_sdk::HttpError) -> Option<&ErrorKind> {
    e.client_api_error_kind()
}

fn is_network(e: &matrix_sdk::Error) -> bool {
    match e {
        matrix_sdk::Error::Http(http) => http.client_api_error_kind().is_none(),
        _ => false,
    }
}

/// A failed send: the homeserver being away is worth retrying; a refusal names its reason.
fn send_error(e: matrix_sdk::Error) -> Error {
    match e.client_api_error_kind() {
        Some(ErrorKind::LimitExceeded(_)) => Error::Unavailable(e.to_string()),
        Some(_) => Error::Matrix(e.to_string()),
        None if is_network(&e) => Error::Unavailable(e.to_string()),
        None => Error::Matrix(e.to_string()),
    }
}

async fn decline_invite(room: Room) {
    if let Err(e) = room.leave().await {
        tracing::warn!(room = %room.room_id(), "cannot decline the invitation: {e}");
    }
}

async fn accept_invite(room: Room) {
    let mut wait = Duration::from_secs(1);
    for _ in 0..8 {
        match room.join().await {
            Ok(()) => {
                tracing::info!(room = %room.room_id(), "Matrix bot accepted an invitation");
                return;
            }
            Err(e) => {
                tracing::warn!(room = %room.room_id(), "cannot accept the invitation yet: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    }
}

async fn sync_loop(client: Client) {
    let mut wait = Duration::from_secs(1);
    loop {
        match client
            .sync_once(SyncSettings::default().timeout(Duration::from_secs(30)))
            .await
        {
            Ok(_) => wait = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!("Matrix sync failed (retrying in {} s): {e}", wait.as_secs());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn read_session(dir: &Path) -> Option<SavedSession> {
    let text = std::fs::read_to_string(dir.join(SESSION_FILE)).ok()?;
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("ignoring unreadable {}: {e}", dir.join(SESSION_FILE).display());
            None
        }
    }
}

fn write_session(dir: &Path, saved: &SavedSession) -> Result<()> {
    let path = dir.join(SESSION_FILE);
    let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
    let text = serde_json::to_string_pretty(saved).map_err(|e| Error::Store(e.to_string()))?;
    write_private(&tmp, text.as_bytes()).map_err(|e| Error::Store(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::Store(format!("cannot write {}: {e}", path.display())))
}

/// Writes a file only its owner may read (it holds an access token).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(data)
}

fn store_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sqlite3"))))
        .unwrap_or(false)
}

/// Moves the store of another device into `<dir>/old-<time>/`, keeping it for the operator.
fn set_store_aside(dir: &Path) -> Result<()> {
    let aside = dir.join(format!(
        "old-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    ));
    tracing::warn!(
        "the Matrix store in {} belongs to another device: moved to {}",
        dir.display(),
        aside.display()
    );
    std::fs::create_dir_all(&aside).map_err(|e| Error::Store(e.to_string()))?;
    for entry in std::fs::read_dir(dir)
        .map_err(|e| Error::Store(e.to_string()))?
        .flatten()
    {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.contains(".sqlite3") || name_str == SESSION_FILE {
            std::fs::rename(entry.path(), aside.join(&name)).map_err(|e| Error::Store(e.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::invite_allowed;

    #[test]
    fn only_configured_inviters_choose_where_transcripts_go() {
        let bot = "@samtal:agency.se";
        assert!(invite_allowed("@clerk:agency.se", bot, &[]), "own server by default");
        assert!(!invite_allowed("@attacker:evil.example", bot, &[]));
        assert!(!invite_allowed("not-a-user-id", bot, &[]));
        let allowed = vec!["partner.se".to_owned(), "@chair:other.se".to_owned()];
        assert!(
            invite_allowed("@anyone:partner.se", bot, &allowed) && invite_allowed("@chair:other.se", bot, &allowed)
        );
        assert!(
            !invite_allowed("@clerk:agency.se", bot, &allowed),
            "a list replaces the default"
        );
        assert!(!invite_allowed("@intern:other.se", bot, &allowed));
        assert!(!invite_allowed("@x:evil.example", bot, &["evil.exampl".to_owned()]));
    }
}
