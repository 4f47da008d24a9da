//! The worker in real meetings: the real Samtal server in-process (signaling + SFU on loopback, SQLite
//! transcript store in a temporary folder), samtal-client participants publishing jfk.wav as real Opus
//! over WebRTC, and the worker in-process with the Silero VAD model. Recognition is a `ScriptedRecognizer`
//! (a test double: no Whisper weights exist on these machines), so these tests check everything around
//! recognition: jobs, hidden joining, per-speaker audio, VAD cuts on the wall clock, attribution, captions,
//! storage, acknowledgement, stop, kill/restart and server restart.
//!
//! Times are checked against whisper.cpp's reference cuts of jfk.wav, relative to the wall-clock moment
//! the speaker's first jfk frame went out, within 0.25 s.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{JFK_REFERENCE, assert_matches_reference, opus_20ms, read_wav_16k, test_data};
use samtal_client::microphone::Microphone;
use samtal_client::samtal_protocol::{ClientMessage, MeetingSummary, Role, Segment, ServerMessage};
use samtal_client::{JoinOptions, Participant, ParticipantEvent, ParticipantOptions};
use samtal_signaling::RunningServer;
use samtal_transcriber::recognize::{Recognizer, ScriptedRecognizer};
use samtal_transcriber::worker::{BackoffConfig, Worker, WorkerConfig, WorkerHandle};

const SCRIPTED_TEXT: &str = "ask not what your country can do for you";
const SECRET: &str = "meeting-test-secret-0123456789abcdef";
const WORKER_KEY: &str = "meeting-test-worker-key-0123456789abcdef";

/// Media-timing tests share two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn init_logging() {
    if let Ok(filter) = std::env::var("SAMTAL_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

use samtal_client::samtal_protocol::unix_ms;

// ------------------------------------------------------------------------------------------------
// Server, tokens, worker
// ------------------------------------------------------------------------------------------------

fn server_config(listen: SocketAddr, secret: Option<&str>, name: &str) -> samtal_signaling::Config {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut config = samtal_signaling::Config {
        listen,
        ..Default::default()
    };
    config.media.udp_port = 0;
    config.media.tcp_port = 0;
    config.media.ips = vec!["127.0.0.1".parse().unwrap()];
    let dir = std::env::temp_dir().join(format!(
        "samtal-transcriber-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    config.data_dir = dir;
    config.auth.secret = secret.map(str::to_owned);
    config.transcription.worker_key = Some(WORKER_KEY.to_owned());
    config
}

async fn start_server(secret: Option<&str>, name: &str) -> RunningServer {
    init_logging();
    samtal_signaling::start(server_config("127.0.0.1:0".parse().unwrap(), secret, name))
        .await
        .expect("server starts")
}

fn token(room: &str, name: &str, role: Role) -> String {
    samtal_signaling::auth::mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

fn worker_config(ws: &str, token: Option<String>) -> WorkerConfig {
    let mut config = WorkerConfig::new(ws, test_data("models/ggml-silero-v6.2.0-for-tests.bin"));
    // Workers always need a credential: the server's worker key unless the test gives a service token.
    config.token = token.or_else(|| Some(WORKER_KEY.to_owned()));
    config.stats_interval = None;
    config.reconnect = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    config.reregister_grace = Duration::from_secs(3);
    config.stop_timeout = Duration::from_secs(10);
    config
}

fn spawn_worker(config: WorkerConfig) -> WorkerHandle {
    Worker::spawn(config, |_| {
        Ok(Box::new(ScriptedRecognizer::always(SCRIPTED_TEXT)) as Box<dyn Recognizer>)
    })
    .expect("worker starts")
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the worker is in `room` and has received at least `packets` more packets than `since`.
async fn wait_receiving(worker: &WorkerHandle, room: &str, since: u64, packets: u64) {
    wait_for(
        &format!("the worker to receive audio in {room}"),
        Duration::from_secs(30),
        || {
            let s = worker.stats();
            s.rooms.iter().any(|r| r.room == room && r.connected) && s.packets_received >= since + packets
        },
    )
    .await;
}

// ------------------------------------------------------------------------------------------------
// Speakers: a participant with a microphone that sends silence until given speech
// ------------------------------------------------------------------------------------------------

/// A participant whose microphone sends a 20 ms Opus frame every 20 ms: silence, or queued speech.
struct Speaker {
    participant: Arc<Participant>,
    id: String,
    name: String,
    microphone: Microphone,
    captions: Arc<Mutex<Vec<(Segment, String)>>>,
    /// `transcription_consent` messages seen: (participant id, opted out).
    consents: Arc<Mutex<Vec<(String, bool)>>>,
    /// `meeting_summary` messages seen.
    summaries: Arc<Mutex<Vec<MeetingSummary>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Speaker {
    async fn join(ws: &str, room: &str, name: &str, token: Option<String>) -> Speaker {
        let mut join = JoinOptions::new(room, name);
        if let Some(t) = token {
            join = join.with_token(t);
        }
        let mut participant = Participant::join(ws, ParticipantOptions::from_join(join).with_audio())
            .await
            .expect("speaker joins");
        let id = participant.id().to_owned();
        let mut events = participant.take_events().unwrap();
        let captions = Arc::new(Mutex::new(Vec::new()));
        let consents = Arc::new(Mutex::new(Vec::new()));
        let summaries = Arc::new(Mutex::new(Vec::new()));
        let (collected, consented, summarized) = (captions.clone(), consents.clone(), summaries.clone());
        let listener = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ParticipantEvent::Server(ServerMessage::Caption { segment, name }) => {
                        collected.lock().unwrap().push((segment, name))
                    }
                    ParticipantEvent::Server(ServerMessage::TranscriptionConsent {
                        participant_id,
                        opt_out,
                    }) => consented.lock().unwrap().push((participant_id, opt_out)),
                    ParticipantEvent::Server(ServerMessage::MeetingSummary(summary)) => {
                        summarized.lock().unwrap().push(summary)
                    }
                    _ => {}
                }
            }
        });
        let participant = Arc::new(participant);
        let silence = Bytes::from(opus_20ms(&[0.0; 320]).remove(0));
        let microphone = Microphone::start(participant.clone(), silence);
        Speaker {
            participant,
            id,
            name: name.to_owned(),
            microphone,
            captions,
            consents,
            summaries,
            listener,
        }
    }

    /// Queues `frames` after whatever is queued; returns the wall-clock time (Unix ms) of their first frame.
    async fn say(&self, frames: Vec<Vec<u8>>) -> i64 {
        let frames = frames.into_iter().map(Bytes::from).collect();
        self.microphone
            .say(frames)
            .await
            .expect("the microphone reports when speech starts")
    }

    fn final_captions(&self) -> Vec<(Segment, String)> {
        self.captions
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s.is_final)
            .cloned()
            .collect()
    }

    fn send(&self, message: ClientMessage) {
        self.participant.signal().send(message).unwrap();
    }

    async fn leave(self) {
        self.microphone.stop().await;
        self.listener.abort();
        let _ = self.listener.await;
        if let Ok(p) = Arc::try_unwrap(self.participant) {
            p.close().await;
        }
    }
}

fn jfk_frames() -> Vec<Vec<u8>> {
    let frames = opus_20ms(&read_wav_16k("audio/jfk.wav"));
    assert_eq!(frames.len(), 550);
    frames
}

/// Spans of `segments`, seconds relative to `t0_ms`.
fn relative(segments: &[Segment], t0_ms: i64) -> Vec<(f64, f64)> {
    segments
        .iter()
        .map(|s| ((s.start_ms - t0_ms) as f64 / 1000.0, (s.end_ms - t0_ms) as f64 / 1000.0))
        .collect()
}

async fn stored(server: &RunningServer, meeting_id: &str) -> Vec<samtal_signaling::store::TranscriptSegment> {
    server
        .state
        .store
        .transcript(meeting_id)
        .await
        .expect("store readable")
        .map(|t| t.segments)
        .unwrap_or_default()
}

fn meeting_id(server: &RunningServer, room: &str) -> String {
    server
        .state
        .transcription
        .meeting_id(room)
        .expect("transcription is on")
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

/// One speaker, tokens on: moderator switches transcription on, the worker (service token) gets the job,
/// joins hidden, and every caption carries the speaker and the reference times; finals are stored and
/// acknowledged; switching off stops the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captions_carry_the_speaker_and_the_reference_times() {
    let _serial = SERIAL.lock().await;
    let server = start_server(Some(SECRET), "captions").await;
    let ws = server.ws_url();
    let worker = spawn_worker(worker_config(&ws, Some(token("*", "Transcriber", Role::Service))));
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;

    let alice = Speaker::join(
        &ws,
        "weekly",
        "Alice",
        Some(token("weekly", "Alice", Role::Participant)),
    )
    .await;
    let moderator = Speaker::join(&ws, "weekly", "Mona", Some(token("weekly", "Mona", Role::Moderator))).await;
    moderator.send(ClientMessage::Transcription {
        enabled: true,
        language: Some("en".into()),
        prompt: None,
    });
    wait_receiving(&worker, "weekly", 0, 25).await;
    let meeting = meeting_id(&server, "weekly");

    let t0 = alice.say(jfk_frames()).await;
    wait_for("four final captions", Duration::from_secs(40), || {
        alice.final_captions().len() >= 4
    })
    .await;
    let captions = alice.final_captions();
    let segments: Vec<Segment> = captions.iter().map(|(s, _)| s.clone()).collect();
    let got = relative(&segments, t0);
    eprintln!("captions relative to the first jfk frame: {got:.3?}");
    assert_matches_reference(&got, 0.25, "captions");
    for (s, name) in &captions {
        assert_eq!(
            (name.as_str(), s.participant_id.as_str()),
            ("Alice", alice.id.as_str()),
            "{s:?}"
        );
        assert_eq!(s.utterance_id, format!("{meeting}:{}:{}", alice.id, s.start_ms));
        assert_eq!((s.text.as_str(), s.language.as_deref()), (SCRIPTED_TEXT, Some("en")));
        assert_eq!(s.confidence, Some(1.0));
    }
    // The moderator sees the same captions.
    wait_for("the moderator's captions", Duration::from_secs(5), || {
        moderator.final_captions().len() >= 4
    })
    .await;

    // Stored, with the speaker's name, and acknowledged.
    let store = stored(&server, &meeting).await;
    assert_eq!(store.len(), 4, "{store:?}");
    for (row, s) in store.iter().zip(&segments) {
        assert_eq!(
            (row.utterance_id.as_str(), row.speaker_name.as_str()),
            (s.utterance_id.as_str(), "Alice")
        );
        assert_eq!((row.start_ms, row.end_ms), (s.start_ms, s.end_ms));
    }
    wait_for("acknowledgements", Duration::from_secs(5), || {
        worker.stats().finals_acked == 4
    })
    .await;
    let stats = worker.stats();
    eprintln!(
        "lag: last {:?}, mean {:?}, max {:?}; pool {:?}; packets {} backlog {}",
        stats.last_lag, stats.mean_lag, stats.max_lag, stats.pool, stats.packets_received, stats.packet_backlog
    );
    assert_eq!(
        (stats.finals_sent, stats.unacked_segments, stats.finals_abandoned),
        (4, 0, 0)
    );
    assert_eq!(stats.utterances, 4);
    assert!(
        stats.max_lag < Duration::from_secs(3),
        "end of speech to caption: {:?}",
        stats.max_lag
    );

    // Off: the worker gets `stop`, flushes (nothing left) and leaves the room.
    moderator.send(ClientMessage::Transcription {
        enabled: false,
        language: None,
        prompt: None,
    });
    wait_for("the job to stop", Duration::from_secs(15), || {
        worker.stats().rooms.is_empty()
    })
    .await;
    assert_eq!(stored(&server, &meeting).await.len(), 4);

    alice.leave().await;
    moderator.leave().await;
    worker.shutdown().await;
    server.shutdown().await;
}

/// Two speakers in turn on an open server (no tokens): every segment goes to the right speaker. Interim
/// captions are on: each is replaced by the final of the same utterance, and none comes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_in_turn_are_attributed_to_the_right_speaker() {
    let _serial = SERIAL.lock().await;
    let server = start_server(None, "two").await;
    let ws = server.ws_url();
    let mut config = worker_config(&ws, None);
    config.interim_interval = Some(Duration::from_millis(400));
    let worker = spawn_worker(config);
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;
    let alice = Speaker::join(&ws, "standup", "Alice", None).await;
    let bob = Speaker::join(&ws, "standup", "Bob", None).await;
    // On an open server anyone may switch transcription on.
    bob.send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    });
    wait_receiving(&worker, "standup", 0, 50).await;
    let meeting = meeting_id(&server, "standup");

    // Alice says jfk's first 5 s (utterances 1 and 2), then Bob the rest (3 and 4), each mic open all along.
    let frames = jfk_frames();
    let silence = opus_20ms(&[0.0; 320]).remove(0);
    let mut bobs = vec![silence; 250];
    bobs.extend(frames[250..].iter().cloned());
    let (ta, tb) = tokio::join!(alice.say(frames[..250].to_vec()), bob.say(bobs));
    wait_for("four final captions", Duration::from_secs(40), || {
        alice.final_captions().len() >= 4
    })
    .await;

    let captions = alice.final_captions();
    let of = |who: &Speaker| -> Vec<Segment> {
        captions
            .iter()
            .filter(|(s, _)| s.participant_id == who.id)
            .map(|(s, _)| s.clone())
            .collect()
    };
    for (s, name) in &captions {
        let expected = if s.participant_id == alice.id {
            &alice.name
        } else {
            &bob.name
        };
        assert_eq!(name, expected, "caption name matches its speaker id: {s:?}");
    }
    let (a, b) = (relative(&of(&alice), ta), relative(&of(&bob), tb));
    eprintln!("Alice: {a:.3?}\nBob:   {b:.3?}");
    assert_eq!(
        (a.len(), b.len()),
        (2, 2),
        "Alice said two utterances, Bob two: {a:.2?} {b:.2?}"
    );
    for (who, spans, reference) in [("Alice", &a, &JFK_REFERENCE[..2]), ("Bob", &b, &JFK_REFERENCE[2..])] {
        for ((s, e), (rs, re)) in spans.iter().zip(reference) {
            assert!(
                (s - rs).abs() <= 0.25 && (e - re).abs() <= 0.25,
                "{who}: {s:.2}–{e:.2} vs {rs:.2}–{re:.2}"
            );
        }
    }
    let store = stored(&server, &meeting).await;
    let speakers: Vec<&str> = store.iter().map(|r| r.speaker_name.as_str()).collect();
    assert_eq!(
        speakers,
        ["Alice", "Alice", "Bob", "Bob"],
        "stored in time order with the right names"
    );

    // Interims: replaced by their final, never after it, never stored.
    let all = alice.captions.lock().unwrap().clone();
    let interims: Vec<&Segment> = all.iter().map(|(s, _)| s).filter(|s| !s.is_final).collect();
    eprintln!("{} interim captions, {} finals", interims.len(), captions.len());
    assert!(
        interims.len() >= 4,
        "utterances of 1.1–2.5 s with interims every 0.4 s: {interims:?}"
    );
    for interim in &interims {
        let at = |final_: bool| {
            all.iter()
                .position(|(s, _)| s.utterance_id == interim.utterance_id && s.is_final == final_)
        };
        let final_at = at(true).unwrap_or_else(|| panic!("interim {} has no final with its id", interim.utterance_id));
        let last_interim = all
            .iter()
            .rposition(|(s, _)| s.utterance_id == interim.utterance_id && !s.is_final)
            .unwrap();
        assert!(
            last_interim < final_at,
            "an interim came after the final of {}",
            interim.utterance_id
        );
        assert_eq!(interim.start_ms, all[final_at].0.start_ms);
    }
    assert_eq!(store.len(), 4, "interims are not stored");
    assert!(worker.stats().interims_sent >= interims.len() as u64);

    alice.leave().await;
    bob.leave().await;
    worker.shutdown().await;
    server.shutdown().await;
}

/// Consent: Alice opts out of transcription; the SFU withholds her audio from the worker, so only Bob's
/// utterances are captioned and stored, the transcript records her opt-out, and everyone is told. When
/// she opts back in, what she says next is transcribed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_who_opts_out_is_not_transcribed() {
    let _serial = SERIAL.lock().await;
    let server = start_server(None, "consent").await;
    let ws = server.ws_url();
    let worker = spawn_worker(worker_config(&ws, None));
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;
    let alice = Speaker::join(&ws, "consent", "Alice", None).await;
    let bob = Speaker::join(&ws, "consent", "Bob", None).await;
    bob.send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    });
    wait_receiving(&worker, "consent", 0, 50).await;
    let meeting = meeting_id(&server, "consent");
    alice.send(ClientMessage::TranscriptionConsent { opt_out: true });
    wait_for("Bob to hear of Alice's opt-out", Duration::from_secs(10), || {
        bob.consents.lock().unwrap().contains(&(alice.id.clone(), true))
    })
    .await;

    // Both say jfk halves in turn, as in the attribution test: only Bob's two utterances come out.
    let frames = jfk_frames();
    let silence = opus_20ms(&[0.0; 320]).remove(0);
    let mut bobs = vec![silence.clone(); 250];
    bobs.extend(frames[250..].iter().cloned());
    let _ = tokio::join!(alice.say(frames[..250].to_vec()), bob.say(bobs));
    wait_for("Bob's two final captions", Duration::from_secs(40), || {
        bob.final_captions().len() >= 2
    })
    .await;
    // Give anything of Alice's time to arrive too (her speech ended 6 s before Bob's).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let speakers: Vec<String> = bob.final_captions().iter().map(|(_, name)| name.clone()).collect();
    assert_eq!(speakers, ["Bob", "Bob"], "nothing of Alice's is captioned");
    let names: Vec<String> = stored(&server, &meeting)
        .await
        .into_iter()
        .map(|s| s.speaker_name)
        .collect();
    assert_eq!(names, ["Bob", "Bob"], "nothing of Alice's is stored");
    let transcript = server.state.store.transcript(&meeting).await.unwrap().unwrap();
    let alice_record = transcript
        .participants
        .iter()
        .find(|p| p.participant_id == alice.id)
        .expect("Alice is a participant");
    assert!(
        alice_record.opted_out_at.is_some(),
        "the transcript says Alice opted out: {alice_record:?}"
    );

    // Back in: her next utterances are transcribed.
    alice.send(ClientMessage::TranscriptionConsent { opt_out: false });
    wait_for("Bob to hear Alice opted back in", Duration::from_secs(10), || {
        bob.consents.lock().unwrap().contains(&(alice.id.clone(), false))
    })
    .await;
    alice.say(frames[..250].to_vec()).await;
    wait_for("Alice's captions after opting back in", Duration::from_secs(40), || {
        bob.final_captions().iter().filter(|(_, n)| n == "Alice").count() >= 2
    })
    .await;

    alice.leave().await;
    bob.leave().await;
    worker.shutdown().await;
    server.shutdown().await;
}

/// The worker dies mid-meeting (no flush) and a new one starts: the server hands the room to the new
/// worker, everything stored before stays stored, nothing is stored twice, and the new worker's segments
/// keep the reference times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_the_worker_loses_no_stored_segment() {
    let _serial = SERIAL.lock().await;
    let server = start_server(None, "kill").await;
    let ws = server.ws_url();
    let first = spawn_worker(worker_config(&ws, None));
    wait_for("the worker to register", Duration::from_secs(10), || {
        first.stats().connected
    })
    .await;
    let alice = Speaker::join(&ws, "retro", "Alice", None).await;
    alice.send(ClientMessage::Transcription {
        enabled: true,
        language: Some("sv".into()),
        prompt: None,
    });
    wait_receiving(&first, "retro", 0, 25).await;
    let meeting = meeting_id(&server, "retro");

    let frames = jfk_frames();
    alice.say(frames.clone()).await;
    let mut before = Vec::new();
    for _ in 0..400 {
        before = stored(&server, &meeting).await;
        if before.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(before.len() >= 2, "two segments stored before the kill: {before:?}");
    first.kill();
    // A new worker process takes a moment to start.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let second = spawn_worker(worker_config(&ws, None));
    wait_receiving(&second, "retro", 0, 25).await;
    // The second jfk follows the first after a second of silence (jfk.wav's own edges are not silent:
    // played back to back, its end and start make one utterance). The new worker may also catch the
    // first's tail.
    let mut again = vec![opus_20ms(&[0.0; 320]).remove(0); 50];
    again.extend(frames);
    let t0 = alice.say(again).await + 1000;
    let from_t0 = || {
        alice
            .final_captions()
            .iter()
            .filter(|(s, _)| s.start_ms >= t0 - 500)
            .count()
    };
    wait_for(
        "the new worker's four captions of the second jfk",
        Duration::from_secs(40),
        || from_t0() >= 4,
    )
    .await;
    // Let any late resend settle, then read the store.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stored(&server, &meeting).await;

    let after_ids: HashSet<&str> = after.iter().map(|r| r.utterance_id.as_str()).collect();
    assert_eq!(after_ids.len(), after.len(), "no utterance stored twice");
    for row in &before {
        assert!(
            after_ids.contains(row.utterance_id.as_str()),
            "{} was lost",
            row.utterance_id
        );
    }
    for (s, _) in alice.final_captions() {
        assert!(
            after_ids.contains(s.utterance_id.as_str()),
            "captioned but not stored: {}",
            s.utterance_id
        );
    }
    for pair in after.windows(2) {
        assert!(
            pair[1].start_ms >= pair[0].end_ms,
            "one speaker's segments never overlap: {pair:?}"
        );
    }
    let new: Vec<Segment> = alice
        .final_captions()
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| s.start_ms >= t0 - 500)
        .collect();
    let got = relative(&new, t0);
    eprintln!(
        "stored before the kill: {}, after: {}; second worker's captions: {got:.3?}",
        before.len(),
        after.len()
    );
    assert_matches_reference(&got, 0.25, "after the restart");
    assert!(
        new.iter().all(|s| s.language.as_deref() == Some("sv")),
        "the job's language reaches the new worker"
    );
    assert_eq!(second.stats().finals_abandoned, 0);

    alice.leave().await;
    second.shutdown().await;
    server.shutdown().await;
}

/// A graceful worker shutdown in the middle of an utterance: the utterance is cut there, recognised, sent
/// and stored before the worker leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_the_utterance_in_progress() {
    let _serial = SERIAL.lock().await;
    let server = start_server(None, "flush").await;
    let ws = server.ws_url();
    let worker = spawn_worker(worker_config(&ws, None));
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;
    let alice = Speaker::join(&ws, "review", "Alice", None).await;
    alice.send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    });
    wait_receiving(&worker, "review", 0, 25).await;
    let meeting = meeting_id(&server, "review");

    let t0 = alice.say(jfk_frames()).await;
    // Into the third utterance (5.38–7.68 s): at 6.5 s.
    tokio::time::sleep(Duration::from_millis((t0 + 6_500 - unix_ms()).max(0) as u64)).await;
    worker.shutdown().await;
    let store = stored(&server, &meeting).await;
    let got: Vec<(f64, f64)> = store
        .iter()
        .map(|r| ((r.start_ms - t0) as f64 / 1000.0, (r.end_ms - t0) as f64 / 1000.0))
        .collect();
    eprintln!("stored after shutdown at 6.5 s: {got:.3?}");
    assert_eq!(got.len(), 3, "two whole utterances and the cut one: {got:.2?}");
    assert!((got[2].0 - JFK_REFERENCE[2].0).abs() <= 0.25, "{got:.2?}");
    assert!(
        got[2].1 > 6.0 && got[2].1 < 7.0,
        "cut where the worker stopped: {got:.2?}"
    );

    alice.leave().await;
    server.shutdown().await;
}

/// A TCP relay in front of the server, so a test can cut every connection at once and point new ones at
/// another server: what clients see when a server process restarts. It only moves bytes; both ends are
/// real (the worker and the real server).
struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (t, c) = (target.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *t.lock().unwrap();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay {
            addr,
            target,
            connections,
            accept,
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drops every relayed connection; new ones go to `target`.
    fn restart_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.restart_to(self.addr);
    }
}

/// The server restarts (every connection drops; the new server knows nothing of the old meetings): the
/// worker reconnects and re-registers by itself, drops the job the new server does not give back, and
/// serves the meeting started on the new server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_server_restart() {
    let _serial = SERIAL.lock().await;
    let old = start_server(None, "restart-a").await;
    let relay = Relay::start(old.addr).await;
    let ws = relay.ws_url();
    let worker = spawn_worker(worker_config(&ws, None));
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;
    let alice = Speaker::join(&ws, "daily", "Alice", None).await;
    alice.send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    });
    wait_receiving(&worker, "daily", 0, 25).await;

    let new = start_server(None, "restart-b").await;
    relay.restart_to(new.addr);
    alice.leave().await;
    tokio::time::timeout(Duration::from_secs(10), old.shutdown())
        .await
        .expect("the old server stops");
    wait_for("the worker to re-register", Duration::from_secs(15), || {
        let s = worker.stats();
        s.connected && s.registrations >= 2
    })
    .await;
    // The new server never heard of the old job: after the grace period the worker drops it.
    wait_for("the stale job to go", Duration::from_secs(20), || {
        worker.stats().rooms.is_empty()
    })
    .await;

    let alice = Speaker::join(&ws, "daily", "Alice", None).await;
    alice.send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    });
    let since = worker.stats().packets_received;
    wait_receiving(&worker, "daily", since, 25).await;
    let t0 = alice.say(jfk_frames()).await;
    wait_for("four captions from the new server", Duration::from_secs(40), || {
        alice.final_captions().len() >= 4
    })
    .await;
    let segments: Vec<Segment> = alice.final_captions().into_iter().map(|(s, _)| s).collect();
    assert_matches_reference(&relative(&segments, t0), 0.25, "after the server restart");
    let stored = stored(&new, &meeting_id(&new, "daily")).await;
    assert_eq!(stored.len(), 4);
    let stats = worker.stats();
    assert!(stats.control_failures >= 1 && stats.registrations >= 2, "{stats:?}");

    alice.leave().await;
    worker.shutdown().await;
    new.shutdown().await;
}

/// The worker's connections to the server drop mid-utterance (a relay between them cuts every
/// connection; media, which goes straight to the server, flows on) and reconnect at once: the
/// worker's room session resumes on a new websocket (same participant, no new join, so the server
/// neither ends nor reassigns the job), its control connection registers again, and every utterance
/// Alice says across the drop is captioned and stored once, at the reference times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_resumes_its_room_session_after_its_websockets_drop() {
    let _serial = SERIAL.lock().await;
    let server = start_server(None, "drop").await;
    let relay = Relay::start(server.addr).await;
    let worker = spawn_worker(worker_config(&relay.ws_url(), None));
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;
    // Alice reaches the server directly: only the worker's connections are cut.
    let alice = Speaker::join(&server.ws_url(), "steady", "Alice", None).await;
    alice.send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    });
    wait_receiving(&worker, "steady", 0, 25).await;
    let room = |w: &WorkerHandle| {
        w.stats()
            .rooms
            .into_iter()
            .find(|r| r.room == "steady")
            .expect("the job")
    };
    let before = room(&worker);
    let meeting = meeting_id(&server, "steady");

    // `say` answers when the speech starts; cut while Alice speaks (jfk.wav's first utterance ends
    // 2 s in).
    let t0 = alice.say(jfk_frames()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.restart_to(server.addr);
    wait_for("four captions across the drop", Duration::from_secs(40), || {
        alice.final_captions().len() >= 4
    })
    .await;
    wait_for("the worker to register again", Duration::from_secs(15), || {
        let s = worker.stats();
        s.connected && s.registrations >= 2
    })
    .await;
    let segments: Vec<Segment> = alice.final_captions().into_iter().map(|(s, _)| s).collect();
    assert_matches_reference(&relative(&segments, t0), 0.25, "across the websocket drop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = stored(&server, &meeting).await;
    let ids: HashSet<&str> = stored.iter().map(|r| r.utterance_id.as_str()).collect();
    assert_eq!(
        (stored.len(), ids.len()),
        (4, 4),
        "each utterance stored once: {stored:?}"
    );
    let after = room(&worker);
    assert_eq!(after.participant_id, before.participant_id, "the same session, resumed");
    assert_eq!(after.joins, 1, "no rejoin: {after:?}");
    assert_eq!(worker.stats().finals_abandoned, 0);

    alice.leave().await;
    worker.shutdown().await;
    server.shutdown().await;
}

/// `GET path` on the server's HTTP API with `token`: (status, JSON body). A plain HTTP/1.1 request,
/// so this crate needs no HTTP client.
async fn api_get(server: &RunningServer, path: &str, token: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// A transcribed meeting ends (the scripted recognizer says what a decision and an action item
/// sound like) and its summary is made and stored with the meeting without anyone asking for it,
/// and shown to the moderator still in the room (`meeting_summary`), not to the others;
/// the HTTP API gives that record to a moderator of the room and to a compliance officer, refuses a
/// participant and a moderator of another room, audits every read, and a running meeting has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_meeting_has_its_summary_stored_and_readable_by_the_right_roles() {
    const SAID: [&str; 4] = [
        "Welcome everyone, today we review the budget for next year.",
        "We decided to postpone the procurement until March.",
        "Alice will send the proposal to the board by Friday.",
        "The travel budget stays the same as this year.",
    ];
    let _serial = SERIAL.lock().await;
    let mut config = server_config("127.0.0.1:0".parse().unwrap(), Some(SECRET), "summary");
    config.matrix.summary_delay_secs = 1;
    init_logging();
    let server = samtal_signaling::start(config).await.expect("server starts");
    let ws = server.ws_url();
    let worker = Worker::spawn(
        worker_config(&ws, Some(token("*", "Transcriber", Role::Service))),
        |_| Ok(Box::new(ScriptedRecognizer::new(SAID)) as Box<dyn Recognizer>),
    )
    .expect("worker starts");
    wait_for("the worker to register", Duration::from_secs(10), || {
        worker.stats().connected
    })
    .await;
    let alice = Speaker::join(&ws, "board", "Alice", Some(token("board", "Alice", Role::Participant))).await;
    let mona = Speaker::join(&ws, "board", "Mona", Some(token("board", "Mona", Role::Moderator))).await;
    mona.send(ClientMessage::Transcription {
        enabled: true,
        language: Some("en".into()),
        prompt: None,
    });
    wait_receiving(&worker, "board", 0, 25).await;
    let meeting = meeting_id(&server, "board");
    let path = format!("/api/meetings/{meeting}/summary");
    let moderator = token("board", "Mona", Role::Moderator);
    let (status, body) = api_get(&server, &path, &moderator).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no_summary")),
        "running: {body}"
    );

    alice.say(jfk_frames()).await;
    wait_for("four final captions", Duration::from_secs(40), || {
        alice.final_captions().len() >= 4
    })
    .await;
    mona.send(ClientMessage::Transcription {
        enabled: false,
        language: None,
        prompt: None,
    });
    // Stored by the server itself, after the summary delay: nobody has read it yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        if let Some(s) = server.state.store.summary(&meeting).await.expect("store") {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no summary stored after the meeting ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.source, "extractive");
    // The moderator still in the room is shown it; the participant is not.
    wait_for("the summary shown to the moderator", Duration::from_secs(5), || {
        !mona.summaries.lock().unwrap().is_empty()
    })
    .await;
    let shown = mona.summaries.lock().unwrap()[0].clone();
    assert_eq!(
        (shown.meeting_id.as_str(), shown.source.as_str()),
        (meeting.as_str(), "extractive")
    );
    assert_eq!(shown.decisions.len(), 1, "{shown:?}");
    assert_eq!(shown.decisions[0].text, SAID[1]);
    assert!(
        alice.summaries.lock().unwrap().is_empty(),
        "only moderators are shown it"
    );

    let (status, body) = api_get(&server, &path, &moderator).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meeting_id"], meeting.as_str());
    assert_eq!(body["created_at"], stored.created_at);
    let texts = |part: &str| -> Vec<String> {
        body[part]
            .as_array()
            .unwrap_or_else(|| panic!("{part} in {body}"))
            .iter()
            .map(|p| {
                format!(
                    "{}: {}",
                    p["speaker"].as_str().unwrap_or("?"),
                    p["text"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(texts("decisions"), [format!("Alice: {}", SAID[1])], "{body}");
    assert_eq!(texts("action_items"), [format!("Alice: {}", SAID[2])], "{body}");
    let officer = token("*", "Olga", Role::Compliance);
    let (status, again) = api_get(&server, &path, &officer).await;
    assert_eq!(
        (status, &again["decisions"]),
        (200, &body["decisions"]),
        "the same record"
    );
    for (who, refused) in [
        ("a participant", token("board", "Alice", Role::Participant)),
        ("another room's moderator", token("other", "Otto", Role::Moderator)),
    ] {
        let (status, body) = api_get(&server, &path, &refused).await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    server.state.store.flush_refusals(true).await.expect("refusals written");
    let filter = samtal_signaling::store::AuditFilter {
        action: Some("summary.read".into()),
        target: Some(meeting.clone()),
        ..Default::default()
    };
    let reads: Vec<_> = server
        .state
        .store
        .audit_entries(&filter)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| (e.role, e.outcome))
        .collect();
    assert_eq!(reads.len(), 5, "every read audited: {reads:?}");
    assert_eq!(
        reads.iter().filter(|(_, outcome)| outcome == "denied").count(),
        2,
        "{reads:?}"
    );

    alice.leave().await;
    mona.leave().await;
    worker.shutdown().await;
    server.shutdown().await;
}
