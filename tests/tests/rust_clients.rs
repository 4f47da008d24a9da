//! webrtc-rs participants (samtal-client) meet through the whole server in-process and publish
//! synthetic, stamped Opus and VP8. Every check is on what arrives: RTP headers (SSRC, sequence
//! numbers), the stamps in the payloads (magic, per-track counter), the rest of the payload bytes,
//! protocol events, and the publishers' and media server's counters.

use samtal_client::samtal_protocol::{ClientMessage, LeaveReason, MediaKind, ServerMessage, TrackSource};
use samtal_client::synthetic::{
    STAMP_LEN, Stamp, Vp8Config, opus_strip_padding, parse_vp8_descriptor, vp8_is_keyframe_start,
};
use samtal_client::{Participant, ParticipantEvent, ParticipantOptions, Received};
use samtal_e2e::events::EventLog;
use samtal_e2e::ws::eventually;
use samtal_e2e::*;
use samtal_sfu::Stats;
use samtal_signaling::RunningServer;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Deadline for anything that should happen within a second or two on an idle machine.
const WAIT: Duration = Duration::from_secs(20);

/// What the tests keep of one received packet.
#[derive(Debug, Clone)]
struct Rec {
    participant_id: String,
    track_id: String,
    kind: MediaKind,
    ssrc: u32,
    seq: u16,
    stamp: Option<Stamp>,
    keyframe_start: bool,
    intact: bool,
}

/// The silent Opus frame the synthetic source sends (inside Opus padding that carries the stamp).
const SILENT_OPUS_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Whether a synthetic payload arrived byte for byte as the client makes it.
fn payload_intact(kind: MediaKind, payload: &[u8]) -> bool {
    if Stamp::from_payload(payload).is_none() {
        return false;
    }
    match kind {
        // A code-3 packet (one frame plus padding) of the silent frame's configuration.
        MediaKind::Audio => {
            payload.first() == Some(&(SILENT_OPUS_FRAME[0] | 0x03))
                && opus_strip_padding(payload) == Some(&SILENT_OPUS_FRAME[1..])
        }
        MediaKind::Video => {
            let Some(d) = parse_vp8_descriptor(payload) else {
                return false;
            };
            let Some(picture_id) = d.picture_id else {
                return false;
            };
            let mut header = d.len;
            if d.start {
                header += 3; // frame tag
                if payload.get(d.len).is_some_and(|tag| tag & 0x01 == 0) {
                    header += 7; // start code, width, height
                }
            }
            let Some(filler) = payload
                .len()
                .checked_sub(STAMP_LEN)
                .and_then(|end| payload.get(header..end))
            else {
                return false;
            };
            // The filler counts up from the frame number's low byte (= the picture id's).
            let seed = picture_id as u8;
            filler.iter().enumerate().all(|(i, &b)| b == seed.wrapping_add(i as u8))
        }
    }
}

impl Rec {
    fn of(r: &Received) -> Rec {
        Rec {
            participant_id: r.participant_id.clone(),
            track_id: r.track_id.clone(),
            kind: r.kind,
            ssrc: r.ssrc,
            seq: r.sequence_number,
            stamp: r.stamp(),
            keyframe_start: r.kind == MediaKind::Video && vp8_is_keyframe_start(&r.payload),
            intact: payload_intact(r.kind, &r.payload),
        }
    }
}

/// Every packet a participant received, in arrival order, collected by a task.
#[derive(Clone, Default)]
struct MediaLog(Arc<Mutex<Vec<Rec>>>);

impl MediaLog {
    fn spawn(mut rx: mpsc::Receiver<Received>) -> MediaLog {
        let log = MediaLog::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                sink.0.lock().unwrap().push(Rec::of(&r));
            }
        });
        log
    }

    fn all(&self) -> Vec<Rec> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, from: &str, kind: MediaKind) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.participant_id == from && r.kind == kind)
            .count()
    }

    /// Packets of `from`'s `kind` track whose stamp counter is at least `counter`.
    fn count_from_counter(&self, from: &str, kind: MediaKind, counter: u64) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.participant_id == from && r.kind == kind && r.stamp.is_some_and(|s| s.counter >= counter))
            .count()
    }

    fn last(&self, from: &str, kind: MediaKind) -> Option<Rec> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.participant_id == from && r.kind == kind)
            .cloned()
    }

    fn max_counter(&self, from: &str, kind: MediaKind) -> Option<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.participant_id == from && r.kind == kind)
            .filter_map(|r| r.stamp.map(|s| s.counter))
            .max()
    }
}

/// A joined participant with its media and events being collected.
struct Member {
    p: Participant,
    media: MediaLog,
    events: EventLog,
}

impl Member {
    fn id(&self) -> String {
        self.p.id().to_owned()
    }
}

async fn join(server: &RunningServer, room: &str, name: &str, publish: bool) -> Member {
    let mut options = ParticipantOptions::new(room, name);
    if publish {
        options = options.with_audio().with_video();
    }
    // Small video keeps three participants light on a shared machine.
    options.video_config = Vp8Config {
        bitrate_bps: 300_000,
        fps: 15,
        ..Vp8Config::default()
    };
    options.timeout = WAIT;
    let mut p = Participant::join(&server.ws_url(), options)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
    let media = MediaLog::spawn(p.take_media().expect("media channel"));
    let events = EventLog::spawn(p.take_events().expect("event channel"));
    Member { p, media, events }
}

/// Polls until `check` holds; fails with `what` at the deadline.
async fn until(what: &str, check: impl Fn() -> bool) {
    assert!(
        eventually(WAIT * 2, || std::future::ready(check())).await,
        "timed out waiting until {what}"
    );
}

/// Until `sub` received at least `audio` audio and `video` video packets from each of `from`.
async fn until_receiving(sub: &Member, from: &[&Member], audio: usize, video: usize) {
    let ids: Vec<String> = from.iter().map(|m| m.id()).collect();
    let what = format!(
        "{} receives {audio} audio and {video} video packets from each of {ids:?}",
        sub.id()
    );
    until(&what, || {
        ids.iter()
            .all(|id| sub.media.count(id, MediaKind::Audio) >= audio && sub.media.count(id, MediaKind::Video) >= video)
    })
    .await;
}

/// What one subscriber saw of one remote track.
#[derive(Debug, Default)]
struct TrackCheck {
    kind: Option<MediaKind>,
    packets: u64,
    ssrcs: BTreeSet<u32>,
    /// Sequence numbers skipped between consecutive arrivals.
    seq_missing: u64,
    /// Arrivals whose sequence number did not move forward.
    seq_disorder: u64,
    /// Packets without a stamp (magic missing) or whose bytes differ from what the source makes.
    damaged: u64,
    /// Stamp counters skipped / not moving forward.
    counter_missing: u64,
    counter_disorder: u64,
    /// Consecutive arrivals whose sequence step differs from their counter step.
    step_mismatch: u64,
    first_counter: Option<u64>,
    last_counter: Option<u64>,
    first_is_keyframe: bool,
}

fn check_tracks(recs: &[Rec]) -> BTreeMap<(String, String), TrackCheck> {
    let mut tracks: BTreeMap<(String, String), TrackCheck> = BTreeMap::new();
    let mut last: BTreeMap<(String, String), (u16, Option<u64>)> = BTreeMap::new();
    for r in recs {
        let key = (r.participant_id.clone(), r.track_id.clone());
        let t = tracks.entry(key.clone()).or_default();
        if t.packets == 0 {
            t.first_is_keyframe = r.keyframe_start;
            t.first_counter = r.stamp.map(|s| s.counter);
        }
        t.kind = Some(r.kind);
        t.packets += 1;
        t.ssrcs.insert(r.ssrc);
        if !r.intact {
            t.damaged += 1;
        }
        let counter = r.stamp.map(|s| s.counter);
        if let Some((prev_seq, prev_counter)) = last.get(&key).copied() {
            let step = r.seq.wrapping_sub(prev_seq);
            match step {
                1 => {}
                2..0x8000 => t.seq_missing += u64::from(step - 1),
                _ => t.seq_disorder += 1,
            }
            if let (Some(c), Some(p)) = (counter, prev_counter) {
                if c <= p {
                    t.counter_disorder += 1;
                } else {
                    t.counter_missing += c - p - 1;
                }
                if c.wrapping_sub(p) != u64::from(step) {
                    t.step_mismatch += 1;
                }
            }
        }
        last.insert(key, (r.seq, counter));
        if let Some(c) = counter {
            t.last_counter = Some(t.last_counter.map_or(c, |l| l.max(c)));
        }
    }
    tracks
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// Stamp counters the publisher used so far on its audio / video track (= packets made).
fn packets_made(m: &Member, kind: MediaKind) -> u64 {
    let s = m.p.stats();
    match kind {
        MediaKind::Audio => s.audio_packets_sent,
        MediaKind::Video => s.video_packets_sent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_receive_every_track_intact_and_in_order() {
    let server = start_server(test_config()).await;
    let members = meeting(&server, "three", &["Alice", "Bob", "Carol"]).await;
    let failures = every_track_arrives_intact(members).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.shutdown().await;
}

/// Two rooms on a server with two media loops: each room is placed on a loop of its own, and both
/// meetings get the same guarantees as on one loop, at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_two_media_loops_receive_every_track_intact_and_in_order() {
    let mut config = test_config();
    config.media.loops = 2;
    let server = start_server(config).await;
    assert_eq!(server.state.media.local_addrs().len(), 2, "a socket per loop");
    let (left, right) = tokio::join!(
        meeting(&server, "left", &["Alice", "Bob", "Carol"]),
        meeting(&server, "right", &["Dave", "Erin", "Frank"]),
    );
    let loop_of = |members: &[Member]| -> BTreeSet<Option<usize>> {
        members.iter().map(|m| server.state.media.loop_of(&m.id())).collect()
    };
    let (l, r) = (loop_of(&left), loop_of(&right));
    assert!(
        l.len() == 1 && r.len() == 1 && l != r && !l.contains(&None),
        "each room on a loop of its own: left {l:?}, right {r:?}"
    );
    let (left, right) = tokio::join!(every_track_arrives_intact(left), every_track_arrives_intact(right));
    let failures = [left, right].concat();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each loop reports its part of the shared gauges, and gives it back.
    let stats = server.state.media.stats().clone();
    until("the rooms and participants gauges back at 0", || {
        Stats::get(&stats.rooms) == 0 && Stats::get(&stats.participants) == 0
    })
    .await;
    server.shutdown().await;
}

/// `names` join `room` one after the other, publishing audio and video.
async fn meeting(server: &RunningServer, room: &str, names: &[&str]) -> Vec<Member> {
    let mut members = Vec::new();
    for name in names {
        members.push(join(server, room, name, true).await);
    }
    members
}

/// The members send media until each receives enough from all the others, then stop; returns what
/// went wrong: any track not received completely, in order, intact and with the announced id.
/// The members leave at the end.
async fn every_track_arrives_intact(mut members: Vec<Member>) -> Vec<String> {
    for m in &mut members {
        m.p.start_media();
    }
    for (i, sub) in members.iter().enumerate() {
        let others: Vec<&Member> = members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| m)
            .collect();
        until_receiving(sub, &others, 150, 100).await;
    }
    for m in &mut members {
        m.p.stop_media();
    }
    // Pacing stopped: every subscriber must get each track up to the publisher's last packet.
    let complete = eventually(WAIT, || {
        let done = members.iter().all(|sub| {
            members.iter().filter(|o| o.id() != sub.id()).all(|o| {
                [MediaKind::Audio, MediaKind::Video]
                    .into_iter()
                    .all(|kind| sub.media.max_counter(&o.id(), kind).map(|c| c + 1) == Some(packets_made(o, kind)))
            })
        });
        async move { done }
    })
    .await;

    let mut failures = Vec::new();
    for sub in &members {
        let me = sub.id();
        let recs = sub.media.all();
        let tracks = check_tracks(&recs);
        let stats = sub.p.stats();
        if stats.media_dropped > 0 || stats.send_errors > 0 {
            failures.push(format!(
                "{me}: {} packets dropped by a slow reader, {} send errors",
                stats.media_dropped, stats.send_errors
            ));
        }
        if tracks.keys().any(|(from, _)| *from == me) {
            failures.push(format!("{me} received its own media"));
        }
        // Exactly one audio and one video track from each of the others, each with its own SSRC.
        let mut expected: BTreeSet<(String, &str)> = BTreeSet::new();
        for o in members.iter().filter(|o| o.id() != me) {
            expected.insert((o.id(), "audio"));
            expected.insert((o.id(), "video"));
        }
        let got: BTreeSet<(String, &str)> = tracks
            .iter()
            .map(|((from, _), t)| (from.clone(), kind_name(t.kind.unwrap())))
            .collect();
        if got != expected || tracks.len() != 4 {
            failures.push(format!(
                "{me} received tracks {:?}, expected {expected:?}",
                tracks.keys().collect::<Vec<_>>()
            ));
        }
        let all_ssrcs: Vec<u32> = tracks.values().flat_map(|t| t.ssrcs.iter().copied()).collect();
        if all_ssrcs.iter().collect::<BTreeSet<_>>().len() != all_ssrcs.len() {
            failures.push(format!("{me}: tracks share SSRCs {all_ssrcs:?}"));
        }
        // The track ids are the ones the server announced in track_published.
        let announced: BTreeSet<(String, String)> = sub
            .events
            .find(|e| match e {
                ParticipantEvent::Server(ServerMessage::TrackPublished { participant_id, track }) => {
                    Some((participant_id.clone(), track.track_id.clone()))
                }
                _ => None,
            })
            .into_iter()
            .collect();
        let received: BTreeSet<(String, String)> = tracks.keys().cloned().collect();
        if announced != received {
            failures.push(format!(
                "{me}: received tracks {received:?} but track_published announced {announced:?}"
            ));
        }
        for ((from, track), t) in &tracks {
            let kind = t.kind.unwrap();
            let publisher = members.iter().find(|m| m.id() == *from).expect("a member");
            let made = packets_made(publisher, kind);
            println!(
                "{me} <- {from} {} {track}: {t:?} (publisher made {made})",
                kind_name(kind)
            );
            let problems: Vec<&str> = [
                (t.ssrcs.len() != 1, "more than one SSRC"),
                (
                    t.seq_missing > 0 || t.seq_disorder > 0,
                    "sequence numbers skip or go backwards",
                ),
                (t.damaged > 0, "payloads damaged (stamp magic or bytes)"),
                (
                    t.counter_missing > 0 || t.counter_disorder > 0,
                    "stamp counters skip or go backwards",
                ),
                (t.step_mismatch > 0, "sequence steps differ from counter steps"),
                (
                    t.last_counter.map(|c| c + 1) != Some(made) || t.packets != made - t.first_counter.unwrap_or(made),
                    "incomplete tail",
                ),
                (
                    kind == MediaKind::Video && !t.first_is_keyframe,
                    "video does not start with a keyframe",
                ),
            ]
            .into_iter()
            .filter_map(|(bad, what)| bad.then_some(what))
            .collect();
            if !problems.is_empty() {
                failures.push(format!(
                    "{me} <- {from} {} {track}: {problems:?}: {t:?}; publisher made {made} packets",
                    kind_name(kind)
                ));
            }
        }
    }
    if !complete {
        failures.push("tracks incomplete: not every subscriber got each track up to its last packet".into());
    }
    for m in members {
        m.p.close().await;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_existing_tracks_and_publishers_get_a_keyframe_request() {
    let server = start_server(test_config()).await;
    let room = "late";
    let mut a = join(&server, room, "Alice", true).await;
    let mut b = join(&server, room, "Bob", true).await;
    a.p.start_media();
    b.p.start_media();
    until_receiving(&a, &[&b], 25, 30).await;
    until_receiving(&b, &[&a], 25, 30).await;
    let stats = server.state.media.stats().clone();
    let (a_requests, b_requests) = (a.p.stats().keyframe_requests, b.p.stats().keyframe_requests);
    let sfu_requests = Stats::get(&stats.keyframe_requests);

    let c = join(&server, room, "Carol", false).await;
    // `joined` lists both publishers with their audio and video tracks.
    let listed: BTreeMap<String, BTreeSet<(String, &str)>> =
        c.p.joined()
            .participants
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    p.tracks
                        .iter()
                        .map(|t| (t.track_id.clone(), kind_name(t.kind)))
                        .collect(),
                )
            })
            .collect();
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([a.id(), b.id()]),
        "joined: {listed:?}"
    );
    for tracks in listed.values() {
        assert_eq!(
            tracks.iter().map(|(_, k)| *k).collect::<BTreeSet<_>>(),
            BTreeSet::from(["audio", "video"]),
            "joined: {listed:?}"
        );
        assert_eq!(tracks.len(), 2, "joined: {listed:?}");
    }
    until_receiving(&c, &[&a, &b], 50, 30).await;

    // The late joiner's video subscriptions asked both publishers for a keyframe.
    until("both publishers counted a new keyframe request", || {
        a.p.stats().keyframe_requests > a_requests && b.p.stats().keyframe_requests > b_requests
    })
    .await;
    assert!(
        Stats::get(&stats.keyframe_requests) > sfu_requests,
        "the media server counted no keyframe request"
    );
    let tracks = check_tracks(&c.media.all());
    let received: BTreeMap<String, BTreeSet<(String, &str)>> =
        tracks.iter().fold(BTreeMap::new(), |mut acc, ((from, track), t)| {
            acc.entry(from.clone())
                .or_default()
                .insert((track.clone(), kind_name(t.kind.unwrap())));
            acc
        });
    assert_eq!(
        received, listed,
        "the late joiner received other tracks than joined listed"
    );
    for ((from, track), t) in &tracks {
        assert_eq!(t.ssrcs.len(), 1, "{from} {track}: {t:?}");
        assert_eq!(
            (
                t.seq_missing,
                t.seq_disorder,
                t.damaged,
                t.counter_missing,
                t.counter_disorder
            ),
            (0, 0, 0, 0, 0),
            "{from} {track}: {t:?}"
        );
        if t.kind == Some(MediaKind::Video) {
            assert!(
                t.first_is_keyframe,
                "video of {from} did not start with a keyframe at the late joiner: {t:?}"
            );
        }
    }
    for m in [a, b, c] {
        m.p.close().await;
    }
    server.shutdown().await;
}

/// Waits until `m` got `participant_left` for `who`; returns the reason.
async fn left_reason(m: &Member, who: &str) -> LeaveReason {
    m.events
        .wait("participant_left", |e| match e {
            ParticipantEvent::Server(ServerMessage::ParticipantLeft { participant_id, reason })
                if participant_id == who =>
            {
                Some(*reason)
            }
            _ => None,
        })
        .await
}

/// Remote tracks of `who` that ended at `m` (the WebRTC stack's view), for the log.
fn ended_tracks(m: &Member, who: &str) -> BTreeSet<String> {
    m.events
        .find(|e| match e {
            ParticipantEvent::TrackEnded {
                participant_id,
                track_id,
            } if participant_id == who => Some(track_id.clone()),
            _ => None,
        })
        .into_iter()
        .collect()
}

/// `msid` track ids in an SDP.
fn sdp_track_ids(sdp: &str) -> BTreeSet<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=msid:"))
        .filter_map(|v| v.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_participants_tracks_end_at_the_others() {
    let server = start_server(test_config()).await;
    let room = "leaving";
    let mut a = join(&server, room, "Alice", true).await;
    let mut b = join(&server, room, "Bob", true).await;
    let mut c = join(&server, room, "Carol", true).await;
    for m in [&mut a, &mut b, &mut c] {
        m.p.start_media();
    }
    until_receiving(&a, &[&b, &c], 20, 20).await;
    until_receiving(&b, &[&a, &c], 20, 20).await;
    let stats = server.state.media.stats().clone();
    until("six tracks are published", || Stats::get(&stats.published_tracks) == 6).await;

    // Carol sends `leave` but her client keeps sending media on its (now orphaned) connection.
    let carol = c.id();
    c.p.signal().send(ClientMessage::Leave).unwrap();
    for m in [&a, &b] {
        assert_eq!(left_reason(m, &carol).await, LeaveReason::Left);
    }
    until("four tracks and two participants remain in the media server", || {
        Stats::get(&stats.published_tracks) == 4 && Stats::get(&stats.participants) == 2
    })
    .await;
    // Nothing Carol makes from now on reaches the others, while they keep receiving each other.
    let (carol_audio, carol_video) = (packets_made(&c, MediaKind::Audio), packets_made(&c, MediaKind::Video));
    until("Carol keeps sending", || {
        packets_made(&c, MediaKind::Audio) >= carol_audio + 50
    })
    .await;
    let (a_fence, b_fence) = (packets_made(&a, MediaKind::Audio), packets_made(&b, MediaKind::Audio));
    until("Alice and Bob keep receiving each other", || {
        a.media
            .max_counter(&b.id(), MediaKind::Audio)
            .is_some_and(|n| n >= b_fence + 10)
            && b.media
                .max_counter(&a.id(), MediaKind::Audio)
                .is_some_and(|n| n >= a_fence + 10)
    })
    .await;
    for m in [&a, &b] {
        assert_eq!(
            m.media.count_from_counter(&carol, MediaKind::Audio, carol_audio),
            0,
            "{} got Carol's audio after she left",
            m.id()
        );
        assert_eq!(
            m.media.count_from_counter(&carol, MediaKind::Video, carol_video),
            0,
            "{} got Carol's video after she left",
            m.id()
        );
        println!(
            "{}: Carol's tracks ended in the WebRTC stack: {:?}",
            m.id(),
            ended_tracks(m, &carol)
        );
    }
    // A newcomer is told about Alice and Bob only, and offered only their tracks.
    let mut newcomer = samtal_e2e::ws::WsClient::connect(&server.ws_url()).await;
    let joined = newcomer.join(room, "Newcomer", None).await;
    let listed: BTreeSet<String> = joined["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, BTreeSet::from([a.id(), b.id()]), "{joined}");
    let offer = newcomer
        .expect("a subscribe offer", WAIT, |m| {
            (m["type"] == "offer").then(|| m["sdp"].as_str().unwrap().to_owned())
        })
        .await;
    // (The first offer may carry only some tracks: the rest follow once it is answered.)
    let offered = sdp_track_ids(&offer);
    let (alice, bob) = (a.id(), b.id());
    assert!(
        !offered.is_empty() && offered.iter().all(|t| t.starts_with(&alice) || t.starts_with(&bob)),
        "the newcomer was offered {offered:?}; Carol was {carol}"
    );
    newcomer.close().await;
    drop(c);

    // Bob vanishes without leaving: Alice sees him go as disconnected, and his tracks go.
    let bob = b.id();
    drop(b);
    assert_eq!(left_reason(&a, &bob).await, LeaveReason::Disconnected);
    until("only Alice's two tracks remain", || {
        Stats::get(&stats.published_tracks) == 2 && Stats::get(&stats.participants) == 1
    })
    .await;
    println!(
        "{}: Bob's tracks ended in the WebRTC stack: {:?}",
        a.id(),
        ended_tracks(&a, &bob)
    );
    a.p.close().await;
    until("the media server is empty", || {
        Stats::get(&stats.published_tracks) == 0
            && Stats::get(&stats.participants) == 0
            && Stats::get(&stats.peer_connections) == 0
    })
    .await;
    server.shutdown().await;
}

/// Mutes `source` of `publisher` through the protocol only (the client keeps sending, so what stops
/// is the server's forwarding), checks nothing of it reaches `sub` while the other track keeps
/// flowing, unmutes, and checks the stream resumes on the same SSRC with the next sequence number.
async fn mute_round(publisher: &Member, sub: &Member, source: TrackSource) {
    let (kind, other) = match source {
        TrackSource::Microphone => (MediaKind::Audio, MediaKind::Video),
        _ => (MediaKind::Video, MediaKind::Audio),
    };
    let from = publisher.id();
    let mute_changed = |muted: bool| {
        let from = from.clone();
        move |e: &ParticipantEvent| match e {
            ParticipantEvent::Server(ServerMessage::MuteChanged {
                participant_id,
                source: s,
                muted: m,
            }) if *participant_id == from && *s == source && *m == muted => Some(()),
            _ => None,
        }
    };
    publisher
        .p
        .signal()
        .send(ClientMessage::Mute { source, muted: true })
        .unwrap();
    sub.events.wait("mute_changed (muted)", mute_changed(true)).await;
    // Anything the publisher makes from a few packets after the mute notice on must not arrive.
    let muted_from = packets_made(publisher, kind) + 5;
    until("the publisher keeps sending the muted track", || {
        packets_made(publisher, kind) >= muted_from + 60
    })
    .await;
    // Fence: the other track's packets made after this point arrive, so the path is alive and
    // anything of the muted track sent before it had time to arrive too.
    let fence = packets_made(publisher, other);
    until("the unmuted track keeps arriving", || {
        sub.media.max_counter(&from, other).is_some_and(|c| c >= fence + 10)
    })
    .await;
    assert_eq!(
        sub.media.count_from_counter(&from, kind, muted_from),
        0,
        "{kind:?} packets of a muted track were forwarded (made from counter {muted_from} on)"
    );
    let before = sub.media.last(&from, kind).expect("packets before the mute");

    publisher
        .p
        .signal()
        .send(ClientMessage::Mute { source, muted: false })
        .unwrap();
    sub.events
        .wait_n("mute_changed (unmuted)", 1, mute_changed(false))
        .await;
    let resumed_at = sub.media.count(&from, kind);
    until("the unmuted track arrives again", || {
        sub.media.count(&from, kind) >= resumed_at + 20
    })
    .await;
    let recs: Vec<Rec> = sub
        .media
        .all()
        .into_iter()
        .filter(|r| r.participant_id == from && r.kind == kind)
        .collect();
    let first_after = recs
        .iter()
        .find(|r| r.stamp.is_some_and(|s| s.counter >= muted_from))
        .expect("packets after unmute");
    assert_eq!(first_after.ssrc, before.ssrc, "the SSRC changed across mute");
    assert_eq!(
        first_after.seq,
        before.seq.wrapping_add(1),
        "after unmute the sequence continues right after the last packet before the mute ({} then {})",
        before.seq,
        first_after.seq
    );
    if kind == MediaKind::Video {
        assert!(first_after.keyframe_start, "unmuted video must resume at a keyframe");
    }
    let t = &check_tracks(&recs)[&(from.clone(), before.track_id.clone())];
    assert_eq!(
        (t.ssrcs.len(), t.seq_missing, t.seq_disorder, t.damaged),
        (1, 0, 0, 0),
        "{kind:?} track across mute: {t:?}"
    );
    assert!(t.counter_missing >= 60, "the muted stretch was not skipped: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_stops_forwarding_and_unmute_continues_the_sequence() {
    let server = start_server(test_config()).await;
    let room = "mute";
    let mut a = join(&server, room, "Alice", true).await;
    let b = join(&server, room, "Bob", false).await;
    a.p.start_media();
    until_receiving(&b, &[&a], 25, 30).await;
    mute_round(&a, &b, TrackSource::Microphone).await;
    mute_round(&a, &b, TrackSource::Camera).await;
    a.p.close().await;
    b.p.close().await;
    server.shutdown().await;
}
