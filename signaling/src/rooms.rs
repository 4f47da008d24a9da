//! Who is in which room, as signaling sees it: names, roles, published tracks and each
//! participant's outbound channel. Rooms appear on first join and vanish with their last
//! participant. Media forwarding state lives in the SFU; this registry only knows what the
//! protocol tells participants.

use samtal_protocol::{
    ChatMessage, MediaKind, ParticipantInfo, Role, RoomSettings, ServerMessage, TrackInfo, TrackSource,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

mod lobby;
pub use lobby::{Decision, Knock, Waiting};

/// What a session's writer receives.
#[derive(Debug)]
pub enum Outbound {
    Message(ServerMessage),
    /// A moderator removed the participant: send `removed`, then close.
    Removed {
        by: String,
    },
    /// The session is over: send a close frame with this code and reason, then stop.
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// Outbound queue depth per participant; a client that lets it fill up is too slow and is dropped.
pub const OUTBOUND_QUEUE: usize = 256;

struct Member {
    info: ParticipantInfo,
    hidden: bool,
    /// Who holds the token this member joined with, if a token was checked.
    identity: Option<String>,
    /// Whether it ever published audio (which the media server then forwards to transcription).
    published_audio: bool,
    tx: mpsc::Sender<Outbound>,
    /// Broadcasts this member missed because its queue was full.
    dropped: AtomicU64,
}

/// A participant as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub info: ParticipantInfo,
    /// Joined hidden (the transcriber): not listed to the others.
    pub hidden: bool,
}

impl Member {
    fn view(&self) -> MemberView {
        MemberView {
            info: self.info.clone(),
            hidden: self.hidden,
        }
    }
}

/// What the room registry checks on join.
#[derive(Debug, Clone, Copy)]
pub struct JoinLimits {
    /// Visible participants per room.
    pub max_participants: usize,
    /// Sessions of one token identity per room (hidden ones not counted).
    pub max_per_identity: usize,
    /// Whether a room nobody is in may start (not while the server drains).
    pub may_start: bool,
    /// A moderator admitted the joiner from the lobby: the room's lock does not keep it out.
    pub admitted: bool,
}

/// A participant as the transcript sees it: whether their words may be attributed to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Speaker {
    pub name: String,
    pub published_audio: bool,
    pub opted_out: bool,
}

impl Speaker {
    /// Whether the media server sends this participant's audio to the transcription service.
    pub fn transcribable(&self) -> bool {
        self.published_audio && !self.opted_out
    }
}

/// Sends `message` to the moderators of `room`; returns how many it reached.
fn send_moderators(rooms: &HashMap<String, HashMap<String, Member>>, room: &str, message: &ServerMessage) -> usize {
    rooms
        .get(room)
        .into_iter()
        .flatten()
        .filter(|(_, m)| m.info.role == Role::Moderator)
        .filter(|(_, m)| m.tx.try_send(Outbound::Message(message.clone())).is_ok())
        .count()
}

/// Sends `message` to every member of `room` but `except`. A full queue means a stalled client: it misses this.
fn send_each(rooms: &HashMap<String, HashMap<String, Member>>, room: &str, except: &str, message: &ServerMessage) {
    for (id, member) in rooms.get(room).into_iter().flatten() {
        if id != except && member.tx.try_send(Outbound::Message(message.clone())).is_err() {
            // The first drop and then every 1000th: a stalled client must not flood the log.
            let dropped = member.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped % 1000 == 0 {
                tracing::warn!(room, participant = %id, dropped = dropped + 1, "outbound queue full; messages dropped");
            }
        }
    }
}

#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, HashMap<String, Member>>>,
    /// Room → the Matrix room it is linked to (the first one a participant named), while the room exists.
    matrix: Mutex<HashMap<String, String>>,
    /// Room → its dominant speaker as last announced. Locked only while `rooms` is held, so that a
    /// newcomer's snapshot and an announcement cannot cross.
    dominant: Mutex<HashMap<String, String>>,
    /// Room → its settings and recent chat, while the room exists. Locked only while `rooms` is held.
    meta: Mutex<HashMap<String, RoomMeta>>,
}

/// What a room keeps besides its members.
#[derive(Default)]
struct RoomMeta {
    settings: RoomSettings,
    chat: VecDeque<ChatMessage>,
    chat_count: u64,
    /// Joiners waiting to be admitted, in order of arrival. Dropped with the room: each waiter
    /// then learns that the meeting ended.
    lobby: Vec<lobby::Waiter>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinRefused {
    Full,
    /// The token's identity already holds `max_per_identity` sessions in the room.
    TooManySessions,
    /// The room has nobody in it and `may_start` was false.
    Draining,
    /// The room is locked and the joiner is not a moderator.
    Locked,
}

/// What a participant's leaving did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// It was a visible participant (the others were told it joined).
    pub visible: bool,
    /// It was the last one in the room (hidden participants count): the room is gone.
    pub last: bool,
}

impl Rooms {
    /// Adds a participant. `welcome` turns the visible participants already there into the first
    /// message the newcomer gets; it is queued under the lock, so no broadcast can overtake it.
    /// `Ok(true)`: the room had nobody before (hidden participants count), so it starts now.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        room: &str,
        info: ParticipantInfo,
        hidden: bool,
        identity: Option<String>,
        tx: mpsc::Sender<Outbound>,
        limits: JoinLimits,
        welcome: impl FnOnce(Vec<ParticipantInfo>) -> ServerMessage,
    ) -> Result<bool, JoinRefused> {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let members = rooms.entry(room.to_owned()).or_default();
        let first = members.is_empty();
        let visible = || members.values().filter(|m| !m.hidden);
        let mut meta = self.meta.lock().expect("meta lock");
        let locked = meta.get(room).is_some_and(|m| m.settings.locked);
        let refused = if first && !limits.may_start {
            Some(JoinRefused::Draining)
        } else if hidden {
            None
        } else if locked && info.role != Role::Moderator && !limits.admitted {
            Some(JoinRefused::Locked)
        } else if visible().count() >= limits.max_participants {
            Some(JoinRefused::Full)
        } else if identity.is_some() && visible().filter(|m| m.identity == identity).count() >= limits.max_per_identity
        {
            Some(JoinRefused::TooManySessions)
        } else {
            None
        };
        if let Some(refused) = refused {
            if members.is_empty() {
                rooms.remove(room);
            }
            return Err(refused);
        }
        let present = visible().map(|m| m.info.clone()).collect();
        let _ = tx.try_send(Outbound::Message(welcome(present)));
        if let Some(speaker) = self.dominant.lock().expect("dominant lock").get(room) {
            let _ = tx.try_send(Outbound::Message(ServerMessage::DominantSpeaker {
                participant_id: speaker.clone(),
            }));
        }
        let meta = meta.entry(room.to_owned()).or_default();
        if meta.settings != RoomSettings::default() {
            let _ = tx.try_send(Outbound::Message(ServerMessage::RoomSettings {
                settings: meta.settings,
                by: String::new(),
            }));
        }
        if info.role == Role::Moderator && !meta.lobby.is_empty() {
            let _ = tx.try_send(Outbound::Message(lobby::message(&meta.lobby)));
        }
        if !hidden {
            for message in &meta.chat {
                let _ = tx.try_send(Outbound::Message(ServerMessage::Chat(message.clone())));
            }
        }
        let member = Member {
            info,
            hidden,
            identity,
            published_audio: false,
            tx,
            dropped: AtomicU64::new(0),
        };
        members.insert(member.info.id.clone(), member);
        Ok(first)
    }

    /// Removes a participant (`None`: it was not there). Drops the room when empty.
    pub fn leave(&self, room: &str, id: &str) -> Option<Left> {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let members = rooms.get_mut(room)?;
        let member = members.remove(id)?;
        let mut dominant = self.dominant.lock().expect("dominant lock");
        if members.is_empty() || dominant.get(room).is_some_and(|d| d == id) {
            dominant.remove(room);
        }
        let last = members.is_empty();
        if last {
            rooms.remove(room);
            self.matrix.lock().expect("matrix lock").remove(room);
            self.meta.lock().expect("meta lock").remove(room);
        }
        Some(Left {
            visible: !member.hidden,
            last,
        })
    }

    /// Sends to everyone in the room but `except`. A full queue means a stalled client: it misses this.
    pub fn broadcast(&self, room: &str, except: &str, message: &ServerMessage) {
        let rooms = self.rooms.lock().expect("rooms lock");
        send_each(&rooms, room, except, message);
    }

    /// Sends to the room's moderators; returns how many it reached.
    pub fn send_to_moderators(&self, room: &str, message: &ServerMessage) -> usize {
        send_moderators(&self.rooms.lock().expect("rooms lock"), room, message)
    }

    /// `id` became the room's dominant speaker: remembered for newcomers and sent to everyone.
    pub fn announce_dominant(&self, room: &str, id: &str) {
        let rooms = self.rooms.lock().expect("rooms lock");
        if !rooms.get(room).is_some_and(|m| m.contains_key(id)) {
            return;
        }
        self.dominant
            .lock()
            .expect("dominant lock")
            .insert(room.to_owned(), id.to_owned());
        let message = ServerMessage::DominantSpeaker {
            participant_id: id.to_owned(),
        };
        send_each(&rooms, room, "", &message);
    }

    /// The room's dominant speaker as last announced.
    pub fn dominant(&self, room: &str) -> Option<String> {
        let _rooms = self.rooms.lock().expect("rooms lock");
        self.dominant.lock().expect("dominant lock").get(room).cloned()
    }

    pub fn send_to(&self, room: &str, id: &str, outbound: Outbound) -> bool {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms
            .get(room)
            .and_then(|m| m.get(id))
            .is_some_and(|m| m.tx.try_send(outbound).is_ok())
    }

    pub fn contains(&self, room: &str, id: &str) -> bool {
        self.rooms
            .lock()
            .expect("rooms lock")
            .get(room)
            .is_some_and(|m| m.contains_key(id))
    }

    /// Edits a participant's published tracks; returns false if it is not there.
    pub fn update_tracks(&self, room: &str, id: &str, edit: impl FnOnce(&mut Vec<TrackInfo>)) -> bool {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        match rooms.get_mut(room).and_then(|m| m.get_mut(id)) {
            Some(member) => {
                edit(&mut member.info.tracks);
                member.published_audio |= member.info.tracks.iter().any(|t| t.kind == MediaKind::Audio);
                true
            }
            None => false,
        }
    }

    pub fn set_muted(&self, room: &str, id: &str, source: TrackSource, muted: bool) {
        self.update_tracks(room, id, |tracks| {
            tracks
                .iter_mut()
                .filter(|t| t.source == source)
                .for_each(|t| t.muted = muted)
        });
    }

    /// Records a participant's transcription opt-out; false if it is not in the room or nothing changed.
    pub fn set_opt_out(&self, room: &str, id: &str, opt_out: bool) -> bool {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        match rooms.get_mut(room).and_then(|r| r.get_mut(id)) {
            Some(m) if m.info.transcription_opt_out != opt_out => {
                m.info.transcription_opt_out = opt_out;
                true
            }
            _ => false,
        }
    }

    pub fn name(&self, room: &str, id: &str) -> Option<String> {
        self.rooms
            .lock()
            .expect("rooms lock")
            .get(room)?
            .get(id)
            .map(|m| m.info.name.clone())
    }

    /// A visible participant of the room, as a speaker in its transcript.
    pub fn speaker(&self, room: &str, id: &str) -> Option<Speaker> {
        let rooms = self.rooms.lock().expect("rooms lock");
        let member = rooms.get(room)?.get(id).filter(|m| !m.hidden)?;
        Some(Speaker {
            name: member.info.name.clone(),
            published_audio: member.published_audio,
            opted_out: member.info.transcription_opt_out,
        })
    }

    /// Visible participants of a room, with names (for meeting records).
    pub fn visible(&self, room: &str) -> Vec<ParticipantInfo> {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms
            .get(room)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|m| !m.hidden)
            .map(|m| m.info.clone())
            .collect()
    }

    pub fn role(&self, room: &str, id: &str) -> Option<Role> {
        self.rooms
            .lock()
            .expect("rooms lock")
            .get(room)?
            .get(id)
            .map(|m| m.info.role)
    }

    /// Links the room to a Matrix room unless it already is; returns the link in force.
    pub fn link_matrix(&self, room: &str, matrix_room: &str) -> String {
        self.matrix
            .lock()
            .expect("matrix lock")
            .entry(room.to_owned())
            .or_insert_with(|| matrix_room.to_owned())
            .clone()
    }

    pub fn matrix_room(&self, room: &str) -> Option<String> {
        self.matrix.lock().expect("matrix lock").get(room).cloned()
    }

    /// Every live room with everyone in it, hidden participants included.
    pub fn snapshot(&self) -> Vec<(String, Vec<MemberView>)> {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms
            .iter()
            .map(|(room, members)| (room.clone(), members.values().map(Member::view).collect()))
            .collect()
    }

    /// Everyone in `room`, hidden participants included; `None` when the room does not exist.
    pub fn members(&self, room: &str) -> Option<Vec<MemberView>> {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms.get(room).map(|m| m.values().map(Member::view).collect())
    }

    /// Removes a participant as a moderator's `remove` does: its session sends `removed` (by `by`)
    /// and closes, and then leaves the room. Returns whether the participant was there.
    pub fn remove(&self, room: &str, id: &str, by: String) -> bool {
        let rooms = self.rooms.lock().expect("rooms lock");
        let Some(member) = rooms.get(room).and_then(|m| m.get(id)) else {
            return false;
        };
        // A full queue still gets the removal through: waiting here would hold every room's lock,
        // so the send happens on a task.
        if let Err(mpsc::error::TrySendError::Full(outbound)) = member.tx.try_send(Outbound::Removed { by }) {
            let tx = member.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(outbound).await;
            });
        }
        true
    }

    /// Removes everyone in `room` as [`Rooms::remove`] does; how many were there.
    pub fn end(&self, room: &str, by: &str) -> usize {
        let ids: Vec<String> = self.members(room).into_iter().flatten().map(|m| m.info.id).collect();
        ids.iter().filter(|id| self.remove(room, id, by.to_owned())).count()
    }

    /// `id` says `text` (already cleaned): kept for newcomers and sent to every visible member,
    /// the sender included. None when `id` is not a visible member.
    pub fn chat(&self, room: &str, id: &str, text: String) -> Option<ChatMessage> {
        let rooms = self.rooms.lock().expect("rooms lock");
        let member = rooms.get(room)?.get(id).filter(|m| !m.hidden)?;
        let mut meta = self.meta.lock().expect("meta lock");
        let meta = meta.entry(room.to_owned()).or_default();
        meta.chat_count += 1;
        let message = ChatMessage {
            id: meta.chat_count.to_string(),
            participant_id: id.to_owned(),
            name: member.info.name.clone(),
            text,
            at: samtal_protocol::unix_ms(),
        };
        if meta.chat.len() == crate::chat::HISTORY {
            meta.chat.pop_front();
        }
        meta.chat.push_back(message.clone());
        // Not to hidden members: the transcriber has no use for chat.
        let chat = ServerMessage::Chat(message.clone());
        for member in rooms
            .get(room)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|m| !m.hidden)
        {
            let _ = member.tx.try_send(Outbound::Message(chat.clone()));
        }
        Some(message)
    }

    /// Raises or lowers `id`'s hand and tells everyone (`by`: the moderator who lowered it). False
    /// when it is not there or nothing changed.
    pub fn set_hand(&self, room: &str, id: &str, raised: bool, by: Option<String>) -> bool {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let Some(member) = rooms.get_mut(room).and_then(|m| m.get_mut(id)).filter(|m| !m.hidden) else {
            return false;
        };
        if member.info.hand_raised_at.is_some() == raised {
            return false;
        }
        member.info.hand_raised_at = raised.then(samtal_protocol::unix_ms);
        let message = ServerMessage::HandChanged {
            participant_id: id.to_owned(),
            raised_at: member.info.hand_raised_at,
            by,
        };
        send_each(&rooms, room, "", &message);
        true
    }

    /// Sets the room's settings and tells everyone; false when they were already so.
    pub fn set_settings(&self, room: &str, settings: RoomSettings, by: String) -> bool {
        let rooms = self.rooms.lock().expect("rooms lock");
        if !rooms.contains_key(room) {
            return false;
        }
        let mut meta = self.meta.lock().expect("meta lock");
        let meta = meta.entry(room.to_owned()).or_default();
        if meta.settings == settings {
            return false;
        }
        meta.settings = settings;
        send_each(&rooms, room, "", &ServerMessage::RoomSettings { settings, by });
        if !settings.lobby && !meta.lobby.is_empty() {
            // The room no longer knocks: whoever waits comes in.
            for waiter in meta.lobby.drain(..) {
                waiter.admit();
            }
            send_moderators(&rooms, room, &lobby::message(&meta.lobby));
        }
        true
    }

    pub fn room_names(&self) -> Vec<String> {
        self.rooms.lock().expect("rooms lock").keys().cloned().collect()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.lock().expect("rooms lock").len()
    }

    pub fn participant_count(&self) -> usize {
        self.rooms.lock().expect("rooms lock").values().map(|m| m.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> ParticipantInfo {
        ParticipantInfo {
            id: id.into(),
            name: id.to_uppercase(),
            role: Role::Participant,
            tracks: vec![],
            transcription_opt_out: false,
            hand_raised_at: None,
        }
    }

    /// Joins and returns the ids listed in the welcome message.
    fn join(rooms: &Rooms, id: &str, hidden: bool, max: usize) -> Result<Vec<String>, JoinRefused> {
        join_as(
            rooms,
            id,
            hidden,
            None,
            JoinLimits {
                max_participants: max,
                max_per_identity: 2,
                may_start: true,
                admitted: false,
            },
        )
    }

    fn join_as(
        rooms: &Rooms,
        id: &str,
        hidden: bool,
        identity: Option<&str>,
        limits: JoinLimits,
    ) -> Result<Vec<String>, JoinRefused> {
        let (tx, _rx) = mpsc::channel(4);
        let mut listed = Vec::new();
        rooms
            .join(
                "r",
                info(id),
                hidden,
                identity.map(str::to_owned),
                tx,
                limits,
                |present| {
                    listed = present.iter().map(|p| p.id.clone()).collect();
                    ServerMessage::Pong { nonce: None }
                },
            )
            .map(|_| listed)
    }

    #[test]
    fn a_draining_server_lets_people_into_its_rooms_but_starts_none() {
        let rooms = Rooms::default();
        let draining = JoinLimits {
            max_participants: 10,
            max_per_identity: 10,
            may_start: false,
            admitted: false,
        };
        assert_eq!(join_as(&rooms, "a", false, None, draining), Err(JoinRefused::Draining));
        assert_eq!(
            join_as(&rooms, "svc", true, None, draining),
            Err(JoinRefused::Draining),
            "hidden too"
        );
        assert_eq!(rooms.room_count(), 0, "the refused room is not left behind");
        assert!(join(&rooms, "a", false, 10).is_ok(), "started before the drain");
        assert_eq!(join_as(&rooms, "b", false, None, draining).unwrap(), vec!["a"]);
    }

    #[test]
    fn join_lists_visible_members_and_enforces_capacity() {
        let rooms = Rooms::default();
        assert!(join(&rooms, "a", false, 2).unwrap().is_empty());
        assert_eq!(join(&rooms, "svc", true, 2).unwrap(), vec!["a"]);
        assert_eq!(join(&rooms, "b", false, 2).unwrap(), vec!["a"], "hidden not listed");
        assert_eq!(join(&rooms, "c", false, 2), Err(JoinRefused::Full));
        let left = |id| rooms.leave("r", id).map(|l| (l.visible, l.last));
        assert_eq!(left("svc"), Some((false, false)));
        assert_eq!(left("a"), Some((true, false)));
        assert_eq!(left("b"), Some((true, true)), "the last one out ends the room");
        assert_eq!(left("b"), None);
        assert_eq!(rooms.room_count(), 0, "empty room is dropped");
    }

    #[test]
    fn the_dominant_speaker_reaches_everyone_and_newcomers_and_goes_with_them() {
        let rooms = Rooms::default();
        let limits = JoinLimits {
            max_participants: 10,
            max_per_identity: 10,
            may_start: true,
            admitted: false,
        };
        let welcome = |_| ServerMessage::Pong { nonce: None };
        let (tx_a, mut rx_a) = mpsc::channel(8);
        assert!(
            rooms.join("r", info("a"), false, None, tx_a, limits, welcome).unwrap(),
            "the first one in starts the room"
        );
        rooms.announce_dominant("r", "nobody");
        assert_eq!(rooms.dominant("r"), None, "only a member can hold the floor");
        rooms.announce_dominant("r", "a");
        let speaker = |rx: &mut mpsc::Receiver<Outbound>| {
            std::iter::from_fn(|| rx.try_recv().ok()).find_map(|o| match o {
                Outbound::Message(ServerMessage::DominantSpeaker { participant_id }) => Some(participant_id),
                _ => None,
            })
        };
        assert_eq!(speaker(&mut rx_a).as_deref(), Some("a"), "the speaker is told too");
        let (tx_b, mut rx_b) = mpsc::channel(8);
        assert!(
            !rooms.join("r", info("b"), false, None, tx_b, limits, welcome).unwrap(),
            "the room was already on"
        );
        let first = rx_b.try_recv().unwrap();
        assert!(
            matches!(first, Outbound::Message(ServerMessage::Pong { .. })),
            "welcome first"
        );
        assert_eq!(speaker(&mut rx_b).as_deref(), Some("a"), "a newcomer learns who speaks");
        rooms.leave("r", "a");
        assert_eq!(rooms.dominant("r"), None, "the floor goes with the speaker");
        rooms.leave("r", "b");
        rooms
            .join("r", info("c"), false, None, mpsc::channel(8).0, limits, welcome)
            .unwrap();
        assert_eq!(rooms.dominant("r"), None);
    }

    #[test]
    fn broadcast_skips_sender_and_survives_full_queues() {
        let rooms = Rooms::default();
        let (tx_a, mut rx_a) = mpsc::channel(1);
        let (tx_b, mut rx_b) = mpsc::channel(1);
        let welcome = |_| ServerMessage::Pong {
            nonce: Some("welcome".into()),
        };
        let limits = JoinLimits {
            max_participants: 10,
            max_per_identity: 10,
            may_start: true,
            admitted: false,
        };
        rooms.join("r", info("a"), false, None, tx_a, limits, welcome).unwrap();
        rooms.join("r", info("b"), false, None, tx_b, limits, welcome).unwrap();
        rx_a.try_recv().unwrap();
        rx_b.try_recv().unwrap();
        let msg = ServerMessage::Pong { nonce: None };
        rooms.broadcast("r", "a", &msg);
        rooms.broadcast("r", "a", &msg); // b's queue is full: dropped, no panic, no block
        assert!(rx_a.try_recv().is_err());
        assert!(matches!(
            rx_b.try_recv(),
            Ok(Outbound::Message(ServerMessage::Pong { .. }))
        ));
        assert!(rx_b.try_recv().is_err());
    }

    #[test]
    fn one_identity_cannot_fill_a_room() {
        let rooms = Rooms::default();
        let limits = JoinLimits {
            max_participants: 100,
            max_per_identity: 2,
            may_start: true,
            admitted: false,
        };
        assert!(join_as(&rooms, "a1", false, Some("sub:anna"), limits).is_ok());
        assert!(join_as(&rooms, "a2", false, Some("sub:anna"), limits).is_ok());
        assert_eq!(
            join_as(&rooms, "a3", false, Some("sub:anna"), limits),
            Err(JoinRefused::TooManySessions)
        );
        assert!(
            join_as(&rooms, "b1", false, Some("sub:bo"), limits).is_ok(),
            "others still get in"
        );
        assert!(join_as(&rooms, "open", false, None, limits).is_ok());
        rooms.leave("r", "a1");
        assert!(
            join_as(&rooms, "a4", false, Some("sub:anna"), limits).is_ok(),
            "a place frees up on leave"
        );
    }

    #[test]
    fn only_published_unopted_audio_is_transcribable() {
        let rooms = Rooms::default();
        join(&rooms, "a", false, 10).unwrap();
        join(&rooms, "svc", true, 10).unwrap();
        assert_eq!(
            rooms.speaker("r", "a").map(|s| s.transcribable()),
            Some(false),
            "no audio published yet"
        );
        assert_eq!(rooms.speaker("r", "svc"), None, "hidden participants are no speakers");
        let mic = TrackInfo {
            track_id: "m".into(),
            kind: MediaKind::Audio,
            source: TrackSource::Microphone,
            muted: false,
            stream_id: "a".into(),
        };
        rooms.update_tracks("r", "a", |t| t.push(mic));
        assert!(rooms.speaker("r", "a").unwrap().transcribable());
        rooms.update_tracks("r", "a", |t| t.clear());
        assert!(
            rooms.speaker("r", "a").unwrap().transcribable(),
            "audio sent earlier may still be recognised"
        );
        rooms.set_opt_out("r", "a", true);
        assert!(!rooms.speaker("r", "a").unwrap().transcribable());
    }
}
