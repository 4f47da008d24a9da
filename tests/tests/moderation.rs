//! Moderation through the whole server in-process, with tokens: a moderator mutes and removes a
//! participant; others may not. Checked on protocol messages and on the media that arrives.

use samtal_client::samtal_protocol::{
    ClientMessage, ErrorCode, LeaveReason, MediaKind, ModerateAction, Role, ServerMessage, TrackSource,
};
use samtal_client::synthetic::Vp8Config;
use samtal_client::{JoinOptions, Participant, ParticipantEvent, ParticipantOptions, Received};
use samtal_e2e::events::EventLog;
use samtal_e2e::ws::eventually;
use samtal_e2e::*;
use samtal_sfu::Stats;
use samtal_signaling::RunningServer;
use samtal_signaling::auth::mint;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const SECRET: &str = "moderation-test-secret-0123456789abcdef";
const ROOM: &str = "moderated";
const WAIT: Duration = Duration::from_secs(20);

/// (publisher, kind, stamp counter) of every packet received, collected by a task.
#[derive(Clone, Default)]
struct MediaLog(Arc<Mutex<Vec<Packet>>>);

/// Publisher, kind, stamp counter.
type Packet = (String, MediaKind, Option<u64>);

impl MediaLog {
    fn spawn(mut rx: mpsc::Receiver<Received>) -> MediaLog {
        let log = MediaLog::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let counter = r.stamp().map(|s| s.counter);
                sink.0.lock().unwrap().push((r.participant_id, r.kind, counter));
            }
        });
        log
    }

    fn count(&self, from: &str, kind: MediaKind) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, k, _)| p == from && *k == kind)
            .count()
    }

    fn count_from_counter(&self, from: &str, kind: MediaKind, counter: u64) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, k, c)| p == from && *k == kind && c.is_some_and(|c| c >= counter))
            .count()
    }

    fn max_counter(&self, from: &str, kind: MediaKind) -> Option<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, k, _)| p == from && *k == kind)
            .filter_map(|(_, _, c)| *c)
            .max()
    }
}

struct Member {
    p: Participant,
    media: MediaLog,
    events: EventLog,
}

impl Member {
    fn id(&self) -> String {
        self.p.id().to_owned()
    }

    fn moderate(&self, action: ModerateAction, target: &str, source: Option<TrackSource>) {
        self.p
            .signal()
            .send(ClientMessage::Moderate {
                action,
                participant: target.to_owned(),
                source,
            })
            .unwrap();
    }

    /// Waits for the `n`th `error` with `code` about a `moderate` message.
    async fn moderate_error(&self, code: ErrorCode, n: usize) {
        self.events
            .wait_n(&format!("error {code:?}"), n, |e| match e {
                ParticipantEvent::Server(ServerMessage::Error {
                    code: c,
                    ref_type,
                    fatal,
                    ..
                }) if *c == code => {
                    assert_eq!(ref_type.as_deref(), Some("moderate"));
                    assert!(!fatal);
                    Some(())
                }
                _ => None,
            })
            .await;
    }
}

async fn join(server: &RunningServer, name: &str, role: Role, publish: bool) -> Member {
    let token = mint(SECRET, ROOM, Some(name), role, Duration::from_secs(600)).unwrap();
    let mut options = ParticipantOptions::from_join(JoinOptions::new(ROOM, name).with_token(token));
    if publish {
        options = options.with_audio().with_video();
    }
    options.video_config = Vp8Config {
        bitrate_bps: 300_000,
        fps: 15,
        ..Vp8Config::default()
    };
    options.timeout = WAIT;
    let mut p = Participant::join(&server.ws_url(), options)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
    assert_eq!(p.joined().role, role);
    let media = MediaLog::spawn(p.take_media().unwrap());
    let events = EventLog::spawn(p.take_events().unwrap());
    Member { p, media, events }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    assert!(
        eventually(WAIT * 2, || std::future::ready(check())).await,
        "timed out waiting until {what}"
    );
}

fn mute_changed(of: &str, source: TrackSource) -> impl Fn(&ParticipantEvent) -> Option<bool> + '_ {
    move |e| match e {
        ParticipantEvent::Server(ServerMessage::MuteChanged {
            participant_id,
            source: s,
            muted,
        }) if participant_id == of && *s == source => Some(*muted),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderator_mutes_and_removes_others_may_not() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let moderator = join(&server, "Mona", Role::Moderator, false).await;
    let mut target = join(&server, "Tom", Role::Participant, true).await;
    let witness = join(&server, "Wendy", Role::Participant, false).await;
    let tom = target.id();
    target.p.start_media();
    until("Wendy receives Tom's audio and video", || {
        witness.media.count(&tom, MediaKind::Audio) >= 25 && witness.media.count(&tom, MediaKind::Video) >= 20
    })
    .await;

    // A participant may not moderate, and nothing happens to the target.
    witness.moderate(ModerateAction::Mute, &tom, None);
    witness.moderate_error(ErrorCode::Forbidden, 1).await;
    witness.moderate(ModerateAction::Remove, &moderator.id(), None);
    witness.moderate_error(ErrorCode::Forbidden, 2).await;
    // The moderator may not moderate someone who is not there, nor itself.
    moderator.moderate(ModerateAction::Mute, "p-nobody", None);
    moderator.moderate_error(ErrorCode::UnknownParticipant, 1).await;
    moderator.moderate(ModerateAction::Remove, &moderator.id(), None);
    moderator.moderate_error(ErrorCode::UnknownParticipant, 2).await;

    // The moderator mutes Tom's microphone (the default source).
    moderator.moderate(ModerateAction::Mute, &tom, None);
    let by = target
        .events
        .wait("mute_request", |e| match e {
            ParticipantEvent::Server(ServerMessage::MuteRequest {
                source: TrackSource::Microphone,
                by,
            }) => Some(by.clone()),
            _ => None,
        })
        .await;
    assert_eq!(by, moderator.id());
    for m in [&target, &witness, &moderator] {
        assert!(
            m.events
                .wait(
                    "mute_changed for Tom's microphone",
                    mute_changed(&tom, TrackSource::Microphone)
                )
                .await,
            "muted: true"
        );
    }
    // The earlier refused attempts changed nothing: exactly one mute_request, one mute_changed.
    assert_eq!(
        target
            .events
            .find(|e| matches!(e, ParticipantEvent::Server(ServerMessage::MuteRequest { .. })).then_some(()))
            .len(),
        1
    );
    assert_eq!(
        witness.events.find(mute_changed(&tom, TrackSource::Microphone)).len(),
        1
    );

    // Tom's client keeps sending (it ignores the request): the server must stop forwarding.
    let muted_from = target.p.stats().audio_packets_sent + 5;
    until("Tom keeps sending audio", || {
        target.p.stats().audio_packets_sent >= muted_from + 60
    })
    .await;
    let fence = target.p.stats().video_packets_sent;
    until("Tom's video still arrives", || {
        witness
            .media
            .max_counter(&tom, MediaKind::Video)
            .is_some_and(|c| c >= fence + 10)
    })
    .await;
    assert_eq!(
        witness.media.count_from_counter(&tom, MediaKind::Audio, muted_from),
        0,
        "Wendy received Tom's audio after a moderator muted it"
    );

    // The moderator removes Tom.
    moderator.moderate(ModerateAction::Remove, &tom, None);
    let by = target
        .events
        .wait("removed", |e| match e {
            ParticipantEvent::Server(ServerMessage::Removed { by }) => Some(by.clone()),
            _ => None,
        })
        .await;
    assert_eq!(by, moderator.id());
    // The server closes the websocket (the client's reader sees the close).
    target
        .events
        .wait("the signaling connection closes", |e| {
            matches!(e, ParticipantEvent::SignalingClosed).then_some(())
        })
        .await;
    let mut reasons = Vec::new();
    for m in [&witness, &moderator] {
        let reason = m
            .events
            .wait("participant_left for Tom", |e| match e {
                ParticipantEvent::Server(ServerMessage::ParticipantLeft { participant_id, reason })
                    if *participant_id == tom =>
                {
                    Some(*reason)
                }
                _ => None,
            })
            .await;
        reasons.push(reason);
    }
    let stats = server.state.media.stats().clone();
    until("Tom is gone from the media server", || {
        Stats::get(&stats.participants) == 2 && Stats::get(&stats.published_tracks) == 0
    })
    .await;
    assert!(!server.state.rooms.contains(ROOM, &tom));
    // Removing someone who was removed already: unknown.
    moderator.moderate(ModerateAction::Remove, &tom, None);
    moderator.moderate_error(ErrorCode::UnknownParticipant, 3).await;
    assert_eq!(
        reasons,
        [LeaveReason::Removed; 2],
        "the others must see Tom leave as removed"
    );

    for m in [moderator, witness] {
        m.p.close().await;
    }
    drop(target);
    server.shutdown().await;
}
