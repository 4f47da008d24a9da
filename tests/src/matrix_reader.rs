//! A second Matrix user for the tests: a matrix-sdk client (with end-to-end encryption and its own
//! store) that creates rooms, invites the bot, syncs in the background (receiving room keys) and
//! reads back what was posted, downloading (and decrypting) attached files.

use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::FileMessageEventContent;
use matrix_sdk::ruma::{OwnedUserId, RoomId, uint};
use serde_json::Value;
use std::time::Duration;

pub struct Reader {
    pub client: Client,
    sync: tokio::task::JoinHandle<()>,
    _store: tempfile::TempDir,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

/// A message as the reader sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub sender: String,
    /// `m.room.message`, or `m.room.encrypted` for one the reader could not decrypt.
    pub event_type: String,
    pub content: Value,
}

impl Message {
    pub fn msgtype(&self) -> &str {
        self.content["msgtype"].as_str().unwrap_or("")
    }
    pub fn body(&self) -> &str {
        self.content["body"].as_str().unwrap_or("")
    }
    pub fn file_name(&self) -> &str {
        self.content["filename"].as_str().unwrap_or_else(|| self.body())
    }
}

impl Reader {
    pub async fn login(homeserver: &str, user: &str, password: &str) -> Reader {
        let store = tempfile::Builder::new()
            .prefix("samtal-reader-")
            .tempdir()
            .expect("temporary directory");
        let client = Client::builder()
            .homeserver_url(homeserver)
            .sqlite_store(store.path(), None)
            .build()
            .await
            .expect("reader client");
        client
            .matrix_auth()
            .login_username(user, password)
            .initial_device_display_name("test reader")
            .send()
            .await
            .expect("reader logs in");
        // The first sync uploads the device's keys, so that the bot can encrypt to it.
        client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await
            .expect("reader syncs");
        let c = client.clone();
        let sync = tokio::spawn(async move {
            loop {
                if c.sync_once(SyncSettings::default().timeout(Duration::from_secs(5)))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Reader {
            client,
            sync,
            _store: store,
        }
    }

    /// Creates a private room (end-to-end encrypted if `encrypted`) inviting `invite`; returns its id.
    pub async fn create_room(&self, name: &str, encrypted: bool, invite: &[&str]) -> String {
        let mut request = create_room::v3::Request::new();
        request.name = Some(name.to_owned());
        request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
        request.invite = invite
            .iter()
            .map(|u| OwnedUserId::try_from(*u).expect("user id"))
            .collect();
        if encrypted {
            request.initial_state = vec![
                InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
                    .to_raw_any(),
            ];
        }
        let room = self.client.create_room(request).await.expect("create room");
        room.room_id().to_string()
    }

    /// Whether `user` has joined the room, as the homeserver says.
    pub async fn is_joined(&self, room: &str, user: &str) -> bool {
        let Some(room) = self.client.get_room(&RoomId::parse(room).expect("room id")) else {
            return false;
        };
        let Ok(user) = OwnedUserId::try_from(user) else {
            return false;
        };
        let _ = room.sync_members().await;
        matches!(room.get_member_no_sync(&user).await, Ok(Some(m)) if *m.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join)
    }

    /// The room's messages (`m.room.message`, and undecryptable `m.room.encrypted`), oldest first.
    pub async fn messages(&self, room: &str) -> Vec<Message> {
        let room_id = RoomId::parse(room).expect("room id");
        let Some(room) = self.client.get_room(&room_id) else {
            return Vec::new();
        };
        let mut options = MessagesOptions::backward();
        options.limit = uint!(100);
        let Ok(messages) = room.messages(options).await else {
            return Vec::new();
        };
        let mut out: Vec<Message> = messages
            .chunk
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e.raw().json().get()).ok())
            .filter(|v| v["type"] == "m.room.message" || v["type"] == "m.room.encrypted")
            .map(|v| Message {
                sender: v["sender"].as_str().unwrap_or("").to_owned(),
                event_type: v["type"].as_str().unwrap_or("").to_owned(),
                content: v["content"].clone(),
            })
            .collect();
        out.reverse();
        out
    }

    /// Downloads (and decrypts) the file of an `m.file` message.
    pub async fn download(&self, message: &Message) -> Vec<u8> {
        let content: FileMessageEventContent = serde_json::from_value(message.content.clone()).expect("m.file content");
        self.client
            .media()
            .get_file(&content, false)
            .await
            .expect("download")
            .expect("the message has a file")
    }
}
