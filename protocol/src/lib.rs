//! The signaling protocol, version 1, as typed messages (see `docs/protocol.md`).
//!
//! This crate only describes messages and (de)serialises them, plus the one retry schedule
//! ([`retry`]) every reconnecting part uses; it must never do I/O, so the server, the Rust client,
//! the transcriber and tests can all share it.

use serde::{Deserialize, Serialize};

pub mod retry;

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// Which of a participant's two peer connections a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcKind {
    /// Client offers, server answers; carries what the client sends.
    Publish,
    /// Server offers, client answers; carries what the client receives.
    Subscribe,
}

/// Where a published track comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
}

impl TrackSource {
    /// The source a track has when the client did not say.
    pub fn default_for(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Participant,
    Moderator,
    /// A service account such as the transcriber: may join hidden and send transcript segments.
    Service,
    /// Reads, searches and exports transcripts; does not join meetings by that role.
    Compliance,
    /// Everything a compliance officer may, plus deletion and the audit trail.
    Administrator,
}

/// An ICE candidate as browsers give it (`RTCIceCandidateInit`), with snake_case names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default)]
    pub sdp_mline_index: Option<u16>,
}

/// Maps a track id in the client's SDP (`a=msid`) to what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackDeclaration {
    pub track_id: String,
    pub source: TrackSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub track_id: String,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub muted: bool,
    /// Media stream id in the subscribe connection: the publisher's participant id.
    pub stream_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tracks: Vec<TrackInfo>,
    /// The participant opted out of transcription: their audio is not transcribed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub transcription_opt_out: bool,
    /// When the participant raised its hand ([`unix_ms`]); absent while the hand is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_raised_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerateAction {
    Mute,
    Remove,
    /// Lower the participant's raised hand.
    LowerHand,
}

/// What a moderator does to the whole room (`room_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomAction {
    /// Ask every participant who is not a moderator to mute its microphone.
    MuteAll,
    /// Remove everyone, the moderator included: the meeting is over.
    End,
}

/// A room's settings, as moderators set them (`room_settings`) and everyone is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoomSettings {
    /// Nobody but moderators may join.
    #[serde(default)]
    pub locked: bool,
    /// "Knock": a joiner who is not a moderator waits in the lobby (`lobby_waiting`) until a
    /// moderator admits or rejects it (`lobby_decision`). Turning it off admits everyone waiting.
    #[serde(default)]
    pub lobby: bool,
}

/// Someone waiting in a room's lobby, as its moderators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbyEntry {
    /// The participant id the joiner will have once admitted.
    pub id: String,
    pub name: String,
    /// When it started waiting ([`unix_ms`]).
    pub since: i64,
}

/// A chat message as the room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique in the room.
    pub id: String,
    pub participant_id: String,
    pub name: String,
    pub text: String,
    /// When the server received it ([`unix_ms`]).
    pub at: i64,
}

/// Whether the server hears a participant's media connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    Connected,
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Removed,
    Timeout,
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Join {
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        hidden: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
        /// The Matrix room this meeting belongs to (set by the Matrix widget); summaries go there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        matrix_room: Option<String>,
        /// Join already opted out of transcription (no audio of ours is ever transcribed).
        #[serde(default, skip_serializing_if = "is_false")]
        transcription_opt_out: bool,
        /// This client resumes its session after a dropped websocket (docs/protocol.md, "Resuming
        /// a session"); the server then keeps the session for a while when the websocket drops.
        #[serde(default, skip_serializing_if = "is_false")]
        resumable: bool,
    },
    Offer {
        pc: PcKind,
        sdp: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tracks: Vec<TrackDeclaration>,
    },
    Answer {
        pc: PcKind,
        sdp: String,
    },
    Candidate {
        pc: PcKind,
        candidate: Candidate,
    },
    Mute {
        source: TrackSource,
        muted: bool,
    },
    Moderate {
        action: ModerateAction,
        participant: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<TrackSource>,
    },
    /// How one received video track is shown: its tile's size in device pixels, or not shown
    /// (`width` and `height` 0). The server forwards the smallest layer that covers the tile and
    /// nothing for a hidden one.
    VideoTile {
        track_id: String,
        width: u32,
        height: u32,
    },
    /// Whether a negotiated publish track carries media, without renegotiating: `false` unpublishes
    /// it (its m-section stays negotiated, its packets are dropped), `true` lets its next packet
    /// publish it again. For a screen share sent with `replaceTrack` on a section negotiated ahead.
    TrackActive {
        track_id: String,
        active: bool,
    },
    Leave,
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// Moderator: turn transcription of this meeting on or off.
    Transcription {
        enabled: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
    },
    /// Opt out of transcription (`opt_out: true`: from now on our audio is not transcribed) or back in.
    TranscriptionConsent {
        opt_out: bool,
    },
    /// Service (transcriber, joined hidden): a recognised utterance of one speaker.
    Segment(Segment),
    /// Service, instead of `join`: this connection is a transcription worker waiting for jobs.
    Worker {
        token: Option<String>,
        #[serde(default)]
        capacity: Option<u32>,
    },
    /// A chat message to everyone in the room.
    Chat {
        text: String,
    },
    /// Raise or lower one's hand.
    Hand {
        raised: bool,
    },
    /// Moderators: change the room's settings.
    RoomSettings(RoomSettings),
    /// Moderators: act on the whole room.
    RoomAction {
        action: RoomAction,
    },
    /// Moderators: let someone waiting in the lobby in (`admit: true`) or turn it away.
    LobbyDecision {
        participant: String,
        admit: bool,
    },
}

/// Now, in wall-clock milliseconds since the Unix epoch: the protocol's time (0 if the clock is
/// before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A recognised utterance. Times are wall-clock milliseconds since the Unix epoch ([`unix_ms`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Stable id chosen by the worker (e.g. speaker id + start time): storing twice keeps one copy.
    pub utterance_id: String,
    /// The speaker's participant id.
    pub participant_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// 0..1, mean token probability. Anything else (a number too large for `f32`, which would
    /// become infinite) is refused when the message is read.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "unit_interval")]
    pub confidence: Option<f32>,
    /// false: an interim caption that a later segment with the same utterance id replaces.
    #[serde(default = "yes", rename = "final")]
    pub is_final: bool,
}

fn yes() -> bool {
    true
}

fn unit_interval<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f32>, D::Error> {
    match Option::<f32>::deserialize(deserializer)? {
        Some(c) if !(0.0..=1.0).contains(&c) => Err(serde::de::Error::custom(format!(
            "confidence must be from 0 to 1, not {c}"
        ))),
        c => Ok(c),
    }
}

/// One point of a meeting summary, with who said it where that is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryPoint {
    pub speaker: Option<String>,
    pub text: String,
}

/// A meeting's summary as the archive stores it (`GET /api/meetings/{id}/summary` gives the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingSummary {
    pub meeting_id: String,
    /// Which summarizer wrote it: `extractive`, or `llm:<model>`.
    pub source: String,
    pub key_points: Vec<SummaryPoint>,
    pub decisions: Vec<SummaryPoint>,
    pub action_items: Vec<SummaryPoint>,
}

/// Transcription state of a meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptionStatus {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The transcript's meeting id while enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<String>,
    /// Whether a transcription worker is connected to serve it.
    pub available: bool,
    /// While enabled: the chat is kept with the transcript (each message written from now on,
    /// except those of participants who opted out of transcription).
    #[serde(default, skip_serializing_if = "is_false")]
    pub chat_kept: bool,
}

impl ClientMessage {
    /// Every `type` tag a client may send; a test holds it to serde's own list of variants, so it
    /// cannot drift from the enum.
    pub const TYPES: &'static [&'static str] = &[
        "join",
        "offer",
        "answer",
        "candidate",
        "mute",
        "moderate",
        "video_tile",
        "track_active",
        "leave",
        "ping",
        "transcription",
        "transcription_consent",
        "segment",
        "worker",
        "chat",
        "hand",
        "room_settings",
        "room_action",
        "lobby_decision",
    ];

    /// Whether `tag` names a client message type (its fields may still be wrong).
    pub fn is_known_type(tag: &str) -> bool {
        Self::TYPES.contains(&tag)
    }

    /// The `type` tag, for errors and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::Moderate { .. } => "moderate",
            ClientMessage::VideoTile { .. } => "video_tile",
            ClientMessage::TrackActive { .. } => "track_active",
            ClientMessage::Leave => "leave",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::Transcription { .. } => "transcription",
            ClientMessage::TranscriptionConsent { .. } => "transcription_consent",
            ClientMessage::Segment(_) => "segment",
            ClientMessage::Worker { .. } => "worker",
            ClientMessage::Chat { .. } => "chat",
            ClientMessage::Hand { .. } => "hand",
            ClientMessage::RoomSettings(_) => "room_settings",
            ClientMessage::RoomAction { .. } => "room_action",
            ClientMessage::LobbyDecision { .. } => "lobby_decision",
        }
    }
}

/// Error codes, as listed in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadMessage,
    UnknownType,
    TooLarge,
    RateLimited,
    NotJoined,
    AlreadyJoined,
    Unauthorized,
    Forbidden,
    BadRoom,
    RoomFull,
    NegotiationFailed,
    UnknownParticipant,
    Internal,
    /// The connection did not `join` (or register as a worker) in time.
    JoinTimeout,
    /// Too many connections are waiting to join; try again later.
    ServerBusy,
    /// This token already holds the most sessions one identity may hold in the room.
    TooManySessions,
    /// A resume was refused: the token is unknown or expired (the session ended), or the
    /// messages the client missed are no longer kept. Join again as a new participant.
    ResumeFailed,
    /// This server is draining (about to stop for maintenance) and takes no new rooms; join again
    /// (through the deployment's address, which no longer routes new connections here).
    Draining,
    /// The room is locked: only moderators may join.
    RoomLocked,
    /// A moderator turned the joiner away from the lobby, or the meeting ended while it waited.
    LobbyRejected,
    /// Nobody admitted the joiner within the lobby's time limit, or the lobby is full.
    LobbyTimeout,
}

impl ErrorCode {
    /// Whether the server closes the connection after sending this error.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::Unauthorized
                | ErrorCode::BadRoom
                | ErrorCode::RoomFull
                | ErrorCode::JoinTimeout
                | ErrorCode::ServerBusy
                | ErrorCode::TooManySessions
                | ErrorCode::ResumeFailed
                | ErrorCode::Draining
                | ErrorCode::RoomLocked
                | ErrorCode::LobbyRejected
                | ErrorCode::LobbyTimeout
        )
    }
}

/// How a dropped websocket resumes its session: connect to `/ws?resume=TOKEN&received=N` within
/// `grace_secs` of the drop, where N counts the text messages received from the server in this
/// session so far (docs/protocol.md, "Resuming a session"). The token holds the session: keep it
/// as secret as the join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeInfo {
    pub token: String,
    pub grace_secs: u64,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        participant_id: String,
        room: String,
        role: Role,
        ice_servers: Vec<IceServer>,
        participants: Vec<ParticipantInfo>,
        transcription: TranscriptionStatus,
        /// How to resume this session on a new websocket if this one drops (absent when the
        /// server does not offer resumption).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeInfo>,
    },
    /// The server's first new message on a resumed websocket (after the ones it sent again): how
    /// many client messages it has received in this session, so that the client sends again the
    /// ones after that. The session's resume token stays the same.
    Resumed {
        received: u64,
    },
    Offer {
        pc: PcKind,
        sdp: String,
    },
    Answer {
        pc: PcKind,
        sdp: String,
    },
    Candidate {
        pc: PcKind,
        candidate: Candidate,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
        reason: LeaveReason,
    },
    TrackPublished {
        participant_id: String,
        track: TrackInfo,
    },
    TrackUnpublished {
        participant_id: String,
        track_id: String,
    },
    /// The room's dominant speaker changed (decided by the media server from audio levels); also
    /// sent right after `joined` when the room has one. Sent to everyone, the speaker included.
    DominantSpeaker {
        participant_id: String,
    },
    /// Last-N: the participants whose cameras this participant receives now; every other camera is
    /// paused toward it (show an avatar). Sent on each change while the room has more cameras than
    /// the server's limit allows.
    VideoForwarded {
        participant_ids: Vec<String>,
    },
    /// Dynacast, to a publisher: of its simulcast track `track_id` (its own track id, from the
    /// offer's `a=msid`), send only the encodings whose rids are in `active`; the others are
    /// received by nobody. Stop those (`active: false` on the encoding) until the next message.
    PublishLayers {
        track_id: String,
        active: Vec<String>,
    },
    /// A participant's media connection to the server was interrupted (nothing heard from it for
    /// a while: others receive nothing from it, which is not the same as muted) or works again.
    MediaState {
        participant_id: String,
        state: MediaState,
    },
    MuteChanged {
        participant_id: String,
        source: TrackSource,
        muted: bool,
    },
    MuteRequest {
        source: TrackSource,
        by: String,
    },
    Removed {
        by: String,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// To the transcription service: the final segment with this utterance id is in the transcript
    /// store (also when it already was: storing is idempotent by utterance id).
    SegmentStored {
        utterance_id: String,
    },
    /// To the transcription service: the segment with this utterance id was not stored. With
    /// `retry`, sending it again later may succeed (the store failed); without, it never will (its
    /// speaker is not one whose audio the service was sent, or has left).
    SegmentRefused {
        utterance_id: String,
        code: ErrorCode,
        message: String,
        retry: bool,
    },
    /// Transcription was turned on or off (also sent when a worker appears or goes away).
    TranscriptionStatus(TranscriptionStatus),
    /// A participant opted out of transcription or back in (to everyone, the participant included).
    TranscriptionConsent {
        participant_id: String,
        opt_out: bool,
    },
    /// To the room's moderators, once the summary of the meeting whose transcription ended has
    /// been made and stored (a few seconds after the end).
    MeetingSummary(MeetingSummary),
    /// A caption for everyone in the meeting: `segment` plus the speaker's display name.
    Caption {
        #[serde(flatten)]
        segment: Segment,
        name: String,
    },
    /// To a worker: start or stop transcribing a room.
    Job(Job),
    /// A chat message, to everyone in the room (its sender included); after `joined`, the room's
    /// recent messages, oldest first.
    Chat(ChatMessage),
    /// A participant raised (`raised_at` set) or lowered its hand; `by` names the moderator who
    /// lowered it, when one did.
    HandChanged {
        participant_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raised_at: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The room's settings changed (`by`: the moderator's name); also after `joined` when any is set.
    RoomSettings {
        #[serde(flatten)]
        settings: RoomSettings,
        by: String,
    },
    /// To a joiner of a room set to knock: it waits in the lobby; `joined` follows when a
    /// moderator admits it, a fatal `lobby_rejected` error when it is turned away.
    LobbyWaiting {
        room: String,
        participant_id: String,
    },
    /// To the room's moderators: who waits in the lobby, in order of arrival (sent on every change,
    /// and after `joined` when anyone waits).
    Lobby {
        waiting: Vec<LobbyEntry>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ref_type: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        fatal: bool,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>, ref_type: Option<&str>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            ref_type: ref_type.map(str::to_owned),
            fatal: code.is_fatal(),
        }
    }
}

/// Work for a transcription worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub action: JobAction,
    pub room: String,
    pub meeting_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A service token the worker uses to join the room hidden.
    pub token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    Start,
    Stop,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's own list of the enum's tags, read from its "unknown variant" error.
    fn serde_variants() -> Vec<String> {
        let err = serde_json::from_str::<ClientMessage>(r#"{"type":"no-such-type"}"#)
            .unwrap_err()
            .to_string();
        let list = err
            .split("expected one of")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected serde error: {err}"));
        list.split(',')
            .map(|v| {
                v.trim()
                    .trim_matches(|c: char| c == '`' || c.is_whitespace())
                    .split('`')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Found by fuzzing: `1e300` read as `f32` is infinite, and was stored and echoed as such.
    #[test]
    fn a_segment_s_confidence_is_a_finite_number_from_0_to_1() {
        let segment = |c: &str| {
            let text = format!(
                r#"{{"type":"segment","utterance_id":"u","participant_id":"p","start_ms":0,"end_ms":1,"text":"hej","confidence":{c}}}"#
            );
            serde_json::from_str::<ClientMessage>(&text)
        };
        for bad in ["1e300", "-1e300", "1.5", "-0.1"] {
            let err = segment(bad).unwrap_err().to_string();
            assert!(err.contains("confidence"), "{bad}: {err}");
        }
        for good in ["0", "0.75", "1", "null"] {
            assert!(segment(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_type_list_is_the_enum_s_own() {
        let mut from_serde = serde_variants();
        let mut ours: Vec<String> = ClientMessage::TYPES.iter().map(|t| t.to_string()).collect();
        from_serde.sort();
        ours.sort();
        assert_eq!(
            ours, from_serde,
            "ClientMessage::TYPES must list exactly the enum's variants"
        );
        let leave: ClientMessage = serde_json::from_str(r#"{"type":"leave"}"#).unwrap();
        assert!(ClientMessage::is_known_type(leave.type_name()) && !ClientMessage::is_known_type("dance"));
    }

    #[test]
    fn join_parses_with_defaults() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"join","room":"weekly","name":"Alice"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                room: "weekly".into(),
                name: "Alice".into(),
                token: None,
                hidden: false,
                protocol: None,
                matrix_room: None,
                transcription_opt_out: false,
                resumable: false,
            }
        );
    }

    #[test]
    fn offer_with_tracks_round_trips() {
        let text =
            r#"{"type":"offer","pc":"publish","sdp":"v=0","tracks":[{"track_id":"t1","source":"screen_share"}]}"#;
        let m: ClientMessage = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), text);
    }

    #[test]
    fn unknown_types_are_rejected_and_extra_fields_ignored() {
        // Extra fields are ignored so newer clients keep working with an older server.
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"leave","x":1}"#).unwrap(),
            ClientMessage::Leave
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
    }

    #[test]
    fn segment_and_caption_shapes() {
        let text = r#"{"type":"segment","utterance_id":"p1-100","participant_id":"p1","start_ms":100,"end_ms":900,"text":"Hej","language":"sv","final":false}"#;
        let m: ClientMessage = serde_json::from_str(text).unwrap();
        let ClientMessage::Segment(seg) = &m else {
            panic!("{m:?}")
        };
        assert!(!seg.is_final);
        let caption = ServerMessage::Caption {
            segment: seg.clone(),
            name: "Anna".into(),
        };
        let v = serde_json::to_value(&caption).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["name"].as_str(), v["text"].as_str()),
            (Some("caption"), Some("Anna"), Some("Hej"))
        );
        let back: ServerMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, caption);
    }

    #[test]
    fn fatal_flag_follows_code() {
        let e = ServerMessage::error(ErrorCode::Unauthorized, "expired", Some("join"));
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "unauthorized");
        assert_eq!(v["fatal"], true);
        let e = ServerMessage::error(ErrorCode::BadMessage, "no", None);
        assert!(serde_json::to_value(&e).unwrap().get("fatal").is_none());
    }
}
