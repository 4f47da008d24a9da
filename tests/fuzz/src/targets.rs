//! The targets. Each reads its input with [`Bytes`], calls the server's own code the way the
//! server calls it, and checks what must hold whatever the input was.

use samtal_protocol::{
    ClientMessage, ErrorCode, LobbyEntry, MediaKind, ParticipantInfo, Role, RoomSettings, ServerMessage, TrackInfo,
    TrackSource,
};
use samtal_sfu::forward::{Incoming, PublishedTrack, RedFormat, codec, vp8};
use samtal_signaling::auth::Verifier;
use samtal_signaling::config::AuthConfig;
use samtal_signaling::export::{Format, render};
use samtal_signaling::rooms::{JoinLimits, Knock, Rooms};
use samtal_signaling::session;
use samtal_signaling::store::{Meeting, Participant, Transcript, TranscriptSegment};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A reader of structured values from fuzz input; past the end it yields zeros and empty strings.
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }
    /// Up to `max` bytes (the length is the next byte).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = (self.u8() as usize).min(max).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }
    pub fn string(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// A websocket text frame through the signaling decoder: it is a message or a classified error,
/// a decoded message survives encoding and decoding again, and names and rooms are checked as at join.
pub fn signaling_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match session::decode(&text) {
        Ok(message) => {
            let again = serde_json::to_string(&message).expect("a decoded message encodes");
            let back = session::decode(&again).unwrap_or_else(|e| panic!("{again} does not decode again: {e:?}"));
            assert_eq!(back, message, "round trip of {again}");
            if let ClientMessage::Join { room, name, .. } = &message {
                let _ = session::valid_room(room);
                if let Ok(name) = session::checked_display_name(name) {
                    assert!(
                        !name.is_empty()
                            && name.chars().count() <= 64
                            && !name.chars().any(samtal_signaling::export::is_unsafe_char)
                    );
                }
            }
        }
        Err((code, explanation)) => {
            assert!(
                matches!(code, ErrorCode::BadMessage | ErrorCode::UnknownType),
                "{code:?}"
            );
            assert!(!explanation.is_empty());
        }
    }
}

/// Joins, leaves, track and consent changes, chat, hands, locks and lobbies in the room registry,
/// in any order: the limits hold after every step, a locked room takes no participant, only a
/// knocking room holds joiners, chat text is clean, and nothing is left once everyone has left.
pub fn session_rooms(data: &[u8]) {
    let mut input = Bytes::new(data);
    let rooms = Rooms::default();
    let limits = JoinLimits {
        max_participants: 3,
        max_per_identity: 2,
        may_start: true,
        admitted: false,
    };
    let mut present: Vec<(String, String)> = Vec::new();
    // Rooms a moderator locked (a room forgets its lock when it empties).
    let mut locked: Vec<String> = Vec::new();
    let mut receivers = Vec::new();
    let room_name = |b: u8| format!("r{}", b % 3);
    for step in 0..64 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let room = room_name(input.u8());
        match op % 8 {
            0 | 1 => {
                let id = format!("p{step}");
                let hidden = op & 0x10 != 0;
                let identity = (op & 0x20 != 0).then(|| format!("sub:{}", input.u8() % 2));
                let info = ParticipantInfo {
                    id: id.clone(),
                    name: input.string(16),
                    role: if op & 0x80 != 0 {
                        Role::Moderator
                    } else {
                        Role::Participant
                    },
                    tracks: Vec::new(),
                    transcription_opt_out: false,
                    hand_raised_at: None,
                };
                let moderator = info.role == Role::Moderator;
                let (tx, rx) = mpsc::channel(4);
                receivers.push(rx);
                // Now and then as a draining server would: no room may start.
                let limits = JoinLimits {
                    may_start: op & 0x40 == 0,
                    ..limits
                };
                let was_empty = !present.iter().any(|(r, _)| *r == room);
                let joined = rooms.join(&room, info, hidden, identity, tx, limits, |_| ServerMessage::Pong {
                    nonce: None,
                });
                assert!(
                    limits.may_start || !was_empty || joined.is_err(),
                    "a room started while starting was not allowed"
                );
                assert!(
                    !locked.contains(&room) || moderator || hidden || joined.is_err(),
                    "a participant joined a locked room"
                );
                if joined.is_ok() {
                    present.push((room.clone(), id));
                }
            }
            2 if !present.is_empty() => {
                let (room, id) = present.remove(input.u8() as usize % present.len());
                assert!(rooms.leave(&room, &id).is_some(), "{id} was in {room}");
                if !present.iter().any(|(r, _)| *r == room) {
                    locked.retain(|r| *r != room);
                }
            }
            3 if !present.is_empty() => {
                let (room, id) = present[input.u8() as usize % present.len()].clone();
                let track = TrackInfo {
                    track_id: input.string(8),
                    kind: MediaKind::Audio,
                    source: TrackSource::Microphone,
                    muted: false,
                    stream_id: id.clone(),
                };
                assert!(rooms.update_tracks(&room, &id, |tracks| tracks.push(track)));
                rooms.set_muted(&room, &id, TrackSource::Microphone, op & 0x40 != 0);
            }
            4 if !present.is_empty() => {
                let (room, id) = present[input.u8() as usize % present.len()].clone();
                rooms.set_opt_out(&room, &id, op & 0x40 != 0);
                if let Some(speaker) = rooms.speaker(&room, &id) {
                    assert_eq!(speaker.transcribable(), speaker.published_audio && !speaker.opted_out);
                }
            }
            5 if !present.is_empty() => {
                let (room, id) = present[input.u8() as usize % present.len()].clone();
                let text = input.string(64);
                if let Ok(clean) = samtal_signaling::chat::clean(&text) {
                    assert!(!clean.is_empty() && clean.chars().count() <= samtal_signaling::chat::MAX_CHARS);
                    assert!(!clean.contains("\n\n\n\n"), "more than two blank lines: {clean:?}");
                    assert!(
                        !clean
                            .chars()
                            .any(|c| c != '\n' && samtal_signaling::export::is_unsafe_char(c)),
                        "unsafe character kept: {clean:?}"
                    );
                    let _ = rooms.chat(&room, &id, clean);
                }
            }
            6 if !present.is_empty() => {
                let (room, id) = present[input.u8() as usize % present.len()].clone();
                rooms.set_hand(&room, &id, op & 0x40 != 0, None);
            }
            7 => {
                // Only a room that exists keeps a lock or a lobby.
                let lock = op & 0x40 != 0;
                let lobby = op & 0x20 != 0;
                let exists = present.iter().any(|(r, _)| *r == room);
                let settings = RoomSettings { locked: lock, lobby };
                rooms.set_settings(&room, settings, String::new());
                locked.retain(|r| *r != room);
                if lock && exists {
                    locked.push(room.clone());
                }
                // Someone knocks: only a room that exists, knocks and is not locked holds it (two at
                // most), and a waiting joiner is decided once; undecided ones wait until the room ends.
                let knocks = lobby && !lock && exists;
                let id = format!("w{step}");
                let entry = LobbyEntry {
                    id: id.clone(),
                    name: input.string(16),
                    since: 0,
                };
                match rooms.knock(&room, entry, 2) {
                    Knock::Enter => assert!(!knocks, "a knocking room let a joiner straight in"),
                    Knock::Full => assert!(knocks && rooms.lobby(&room).len() == 2),
                    Knock::Wait(_) => {
                        assert!(knocks, "a joiner waits for a room that does not knock");
                        if op & 0x10 != 0 {
                            assert!(rooms.decide(&room, &id, op & 0x08 != 0, String::new()));
                            assert!(!rooms.decide(&room, &id, true, String::new()), "decided twice");
                        }
                    }
                }
            }
            _ => {
                let _ = rooms.link_matrix(&room, &input.string(16));
                rooms.broadcast(&room, "", &ServerMessage::Pong { nonce: None });
            }
        }
        for r in 0..3u8 {
            assert!(
                rooms.visible(&room_name(r)).len() <= limits.max_participants,
                "room r{r} over its limit"
            );
        }
    }
    assert_eq!(rooms.participant_count(), present.len());
    for (room, id) in present.drain(..) {
        assert!(rooms.leave(&room, &id).is_some());
    }
    assert_eq!(
        (rooms.room_count(), rooms.participant_count()),
        (0, 0),
        "rooms left behind"
    );
    for r in 0..3u8 {
        assert!(rooms.lobby(&room_name(r)).is_empty(), "a lobby outlived its room");
    }
}

/// A publish offer through the media server's publish path (size bound, ICE-lite peer connection,
/// answer, rollback of a refused offer).
pub fn sdp_publish(data: &[u8]) {
    samtal_sfu::router::fuzzing::publish_offer(&String::from_utf8_lossy(data));
}

/// RTP and RTCP as a publisher's connection delivers them, through the forwarding core: packets
/// with any sequence numbers, timestamps and payloads (keyframe detection parses VP8 and H.264
/// payloads) on any simulcast layer, subscribers coming and going, layer choices, pauses, mutes and
/// keyframe requests; audio sent as RED (RFC 2198) to subscribers with and without RED. Every
/// forward goes to a current subscriber, with the payload type it has and a payload inside the
/// packet.
pub fn rtp_forward(data: &[u8]) {
    use rtc::rtcp;
    use rtc::shared::marshal::Unmarshal;
    let mut input = Bytes::new(data);
    let (kind, mime, clock) = match input.u8() % 4 {
        0 => (MediaKind::Audio, "audio/opus", 48_000),
        1 => (MediaKind::Video, "video/VP8", 90_000),
        2 => (MediaKind::Video, "video/H264", 90_000),
        _ => (MediaKind::Video, "video/VP9", 90_000),
    };
    let mut track = PublishedTrack::<u8>::new(kind, mime, clock);
    const RED: RedFormat = RedFormat { red: 63, primary: 111 };
    if kind == MediaKind::Audio {
        track.set_red(Some(RED));
    }
    // Any number of simulcast layers, also more than the SFU takes.
    track.set_layers(input.u8() % 5);
    let t0 = Instant::now();
    let mut now = t0;
    let mut subscribers: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    while !input.is_empty() {
        now += Duration::from_millis(u64::from(input.u8()));
        match input.u8() % 10 {
            0 => {
                let sink = input.u8() % 8;
                if !subscribers.contains(&sink) {
                    subscribers.push(sink);
                    let _ = track.add_subscriber(sink, input.u32(), now);
                    track.set_payload_type(sink, Some(96 + sink));
                    // Odd subscribers take RED as it comes.
                    track.set_red_payload_type(sink, (sink % 2 == 1).then_some(RED.red));
                }
            }
            1 => {
                let sink = input.u8() % 8;
                subscribers.retain(|s| *s != sink);
                track.remove_subscriber(sink);
            }
            2 => {
                let _ = track.set_muted(input.u8() & 1 == 1, now);
            }
            3 => {
                let _ = track.keyframe_requested(now);
                let _ = track.poll_keyframe(now);
            }
            5 => {
                let layer = input.u8();
                let _ = track.set_target(input.u8() % 8, (layer & 0x80 == 0).then_some(layer % 4), now);
                let _ = track.keyframe_layers() | track.wanted_layers();
            }
            6 => {
                let _ = track.set_paused(input.u8() % 8, input.u8() & 1 == 1, now);
                track.rates_mut().roll(now);
                let _ = track.rates().costs(track.layers(), input.u8());
            }
            4 => {
                let raw = input.bytes(255);
                let _ = rtc::rtp::Packet::unmarshal(&mut &raw[..]);
                if let Ok(packets) = rtcp::packet::unmarshal(&mut &raw[..]) {
                    let _ = packets.len();
                }
                let _ = codec::audio_level(raw);
            }
            _ => {
                let (layer, seq, ts) = (input.u8() % 4, input.u16(), input.u32());
                let payload_type = if input.u8() & 1 == 1 { RED.red } else { RED.primary };
                let payload = input.bytes(255);
                out.clear();
                let packet = Incoming {
                    layer,
                    seq,
                    ts,
                    payload_type,
                    payload,
                };
                track.route(packet, now, &mut out);
                for f in &out {
                    assert!(
                        subscribers.contains(&f.sink),
                        "forward to a sink that is not subscribed"
                    );
                    assert!(
                        f.payload_start <= f.payload_end && f.payload_end <= payload.len(),
                        "forwarded bytes outside the payload"
                    );
                    assert!(
                        !f.recovered || f.sink % 2 == 0,
                        "recovered audio goes only where RED does not"
                    );
                    if let Some(patch) = f.vp8 {
                        // New picture numbers land where the descriptor had them: same length,
                        // same fields, and the rest of the payload untouched.
                        let mut copy = payload.to_vec();
                        patch.apply(&mut copy);
                        let (before, after) = (vp8::numbers(payload), vp8::numbers(&copy));
                        assert_eq!(
                            before.picture_id.map(|p| (p.1, p.2)),
                            after.picture_id.map(|p| (p.1, p.2))
                        );
                        assert_eq!(before.tl0_pic_idx.map(|t| t.1), after.tl0_pic_idx.map(|t| t.1));
                        let end = after
                            .tl0_pic_idx
                            .map(|t| t.1 + 1)
                            .or(after.picture_id.map(|p| p.2 + 1 + usize::from(p.1)));
                        assert_eq!(copy[end.unwrap_or(0)..], payload[end.unwrap_or(0)..]);
                    }
                    let whole_red = kind == MediaKind::Audio && payload_type == RED.red && f.sink % 2 == 1;
                    if whole_red {
                        assert_eq!((f.payload_type, f.payload_start), (RED.red, 0));
                    } else {
                        assert_eq!(f.payload_type, 96 + f.sink);
                    }
                }
            }
        }
    }
}

const JWT_SECRET: &str = "fuzz-secret-0123456789abcdef-0123456789";

/// A bearer token through the HS256 verifier: refused unless it really is signed with the secret,
/// and a token that passes carries a room and an expiry.
pub fn jwt(data: &[u8]) {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        Verifier::new(AuthConfig {
            secret: Some(JWT_SECRET.into()),
            ..Default::default()
        })
    });
    let token = String::from_utf8_lossy(data);
    if let Ok(claims) = runtime().block_on(verifier.verify(&token)) {
        // Only a token made with the secret verifies; the fuzzer cannot sign, so this is a forgery.
        panic!("a token the fuzzer made verified: {claims:?}");
    }
}

/// A JWKS document (as an identity provider could serve it) and a token checked against it: no
/// document or token panics the verifier, and no token verifies without a valid signature.
pub fn jwks(data: &[u8]) {
    let mut input = Bytes::new(data);
    let token = input.string(255);
    let document = input.rest();
    let Ok(set) = serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(document) else {
        return;
    };
    let config = AuthConfig {
        jwks_url: Some("http://127.0.0.1:9/certs".into()),
        jwks_min_refetch_secs: 3600,
        ..Default::default()
    };
    let verifier = Verifier::with_jwks(config, set);
    if let Ok(claims) = runtime().block_on(verifier.verify(&token)) {
        panic!("a token the fuzzer made verified against its own JWKS: {claims:?}");
    }
}

/// A hostile transcript exported in every format: names and text cannot forge lines, only the
/// cues' timing lines carry `-->`, and JSON round-trips.
pub fn export(data: &[u8]) {
    let mut input = Bytes::new(data);
    let started_at = input.i64();
    let meeting = Meeting {
        id: input.string(16),
        room: input.string(16),
        started_at,
        ended_at: (input.u8() & 1 == 1).then(|| input.i64()),
        language: (input.u8() & 1 == 1).then(|| input.string(8)),
        matrix_room: None,
        transcript_digest: (input.u8() & 1 == 1).then(|| input.string(64)),
        prompt: None,
    };
    let participants = (0..input.u8() % 4)
        .map(|_| Participant {
            participant_id: input.string(8),
            name: input.string(32),
            first_seen: input.i64(),
            opted_out_at: (input.u8() & 1 == 1).then(|| input.i64()),
        })
        .collect();
    let segments: Vec<TranscriptSegment> = (0..input.u8() % 8)
        .map(|_| TranscriptSegment {
            utterance_id: input.string(8),
            participant_id: input.string(8),
            speaker_name: input.string(32),
            start_ms: input.i64(),
            end_ms: input.i64(),
            text: input.string(128),
            language: None,
            confidence: (input.u8() & 1 == 1).then(|| f32::from(input.u8()) / 255.0),
        })
        .collect();
    let transcript = Transcript {
        meeting,
        participants,
        segments,
    };
    let cues = transcript.segments.len();
    for format in [Format::WebVtt, Format::Srt] {
        let out = render(&transcript, format);
        let arrows = out.lines().filter(|l| l.contains("-->")).count();
        assert_eq!(arrows, cues, "{format:?}: only the cues' timing lines have -->:\n{out}");
    }
    let text = render(&transcript, Format::Text);
    let lines = text
        .lines()
        .skip_while(|l| !l.is_empty())
        .filter(|l| l.starts_with('['))
        .count();
    assert_eq!(lines, cues, "text export: one line per segment:\n{text}");
    let json = render(&transcript, Format::Json);
    let back: Transcript = serde_json::from_str(&json).expect("exported JSON parses");
    assert_eq!(back, transcript);
}
