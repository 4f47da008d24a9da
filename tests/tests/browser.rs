//! Real browsers: three headless Chromium participants join through the real web page
//! (tests/browser/three_party.mjs drives them with playwright-core and checks getStats()).
//! Each must decode video and receive audio from both others, see a screen share, and see a
//! participant who leaves disappear.

use samtal_e2e::*;
use std::path::PathBuf;
use std::time::Duration;

/// Fake microphone files: jfk.wav (speech), and five seconds of silence made in a scratch
/// directory of the test's (returned too, to remove at the end).
fn speech_and_silence(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let speech = test_data("audio/jfk.wav");
    let dir = std::env::temp_dir().join(format!("samtal-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let silence = make_silence(&dir);
    (speech, dir, silence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_chromium_participants_meet_share_screen_and_leave() {
    let server = start_server(test_config()).await;
    let url = server.http_url();
    let summary = run_browser_script(
        "three_party.mjs",
        &["--url", &url, "--room", "browsers", "--timeout", "60"],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}

/// Chat and raised hands on the real page (tests/browser/chat_hands.mjs): a message typed by one
/// participant is read as text by the other, and a hand raised with the H key shows in the other's
/// participant list until it is lowered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_participants_chat_and_raise_hands() {
    let server = start_server(test_config()).await;
    let url = server.http_url();
    let summary = run_browser_script(
        "chat_hands.mjs",
        &["--url", &url, "--room", "chat", "--timeout", "60"],
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}

/// The server's dominant speaker in real browsers: Chromium's fake microphone plays jfk.wav for two
/// participants (one joins muted) and a silent WAV for the third (tests/browser/active_speaker.mjs).
/// Every page must mark the talking participant, follow the floor when the talkers swap by muting,
/// and never show the silent one. With last-N at 1, the silent one decodes only the speaker's camera.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_follow_the_servers_dominant_speaker() {
    let (speech, dir, silence) = speech_and_silence("speaker");
    let mut config = test_config();
    config.media.last_n = 1;
    let server = start_server(config).await;
    let url = server.http_url();
    let summary = run_browser_script(
        "active_speaker.mjs",
        &[
            "--url",
            &url,
            "--room",
            "speakers",
            "--speech",
            speech.to_str().unwrap(),
            "--silence",
            silence.to_str().unwrap(),
            "--timeout",
            "30",
        ],
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(
        samtal_sfu::Stats::get(&server.state.media.stats().speaker_changes) >= 2,
        "the media server counted the changes"
    );
    assert!(samtal_sfu::Stats::get(&server.state.media.stats().video_pauses) >= 2);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Simulcast in real browsers (tests/browser/simulcast.mjs): Chromium publishes its camera in three
/// layers; a viewer in a large window decodes the top layer, one in a small window a lower one, and
/// the small one climbs to the top when its window grows and back down when it shrinks, decoding
/// throughout. A fourth viewer runs in a network namespace of its own: when `tc` limits its link to
/// 400 kbit/s it drops to a lower layer and keeps decoding, and when the limit is lifted it climbs
/// back. The server counts the layer changes it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_viewers_receive_the_simulcast_layer_their_tiles_and_links_need() {
    let ns = netns::Namespace::create("layers");
    let server = start_server(test_config_in(&ns)).await;
    let url = server.http_url();
    let dir = std::env::temp_dir().join(format!("samtal-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, chromium) = browser_driver();
    let shaped = ns.wrapper(&chromium, &dir);
    let summary = run_browser_script(
        "simulcast.mjs",
        &[
            "--url",
            &url,
            "--room",
            "layers",
            "--timeout",
            "40",
            "--shaped-chromium",
            shaped.to_str().unwrap(),
            "--shape-dev",
            &ns.host_dev,
            "--shape-rate",
            "400kbit",
        ],
        Duration::from_secs(420),
    )
    .await;
    assert_eq!(summary["ok"], true, "{summary}");
    eprintln!("simulcast summary: {summary}");
    let stats = server.state.media.stats();
    assert!(
        samtal_sfu::Stats::get(&stats.layer_changes) >= 5,
        "the allocator changed layers: {summary}"
    );
    assert!(
        samtal_sfu::Stats::get(&stats.dynacast_updates) >= 2,
        "the server switched Alice's top layer off and on again: {summary}"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opus RED and DTX with Chromium (tests/browser/red_dtx.mjs): the server's answers make Chromium
/// send its microphone as RED and with DTX; another page receives the RED and decodes sound from it;
/// a silent microphone sends a fraction of the packets. The real transcription worker (Silero VAD;
/// recognition is a scripted stand-in, as no Whisper weights exist here), which does not take RED,
/// receives the Opus inside, and its VAD cuts the looping jfk.wav into the utterances whisper.cpp
/// finds in it: captions with the reference lengths reach the speaker's page and the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_red_and_dtx_and_the_transcriber_hears_the_opus_inside() {
    use samtal_transcriber::recognize::{Recognizer, ScriptedRecognizer};
    use samtal_transcriber::worker::{Worker, WorkerConfig};
    let (speech, dir, silence) = speech_and_silence("red");
    let server = start_server(test_config()).await;
    let mut worker_config = WorkerConfig::new(server.ws_url(), test_data("models/ggml-silero-v6.2.0-for-tests.bin"));
    worker_config.token = Some(WORKER_KEY.to_owned());
    worker_config.stats_interval = None;
    let worker = Worker::spawn(worker_config, |_| {
        Ok(Box::new(ScriptedRecognizer::always("ask not")) as Box<dyn Recognizer>)
    })
    .expect("worker starts");
    let url = server.http_url();
    let summary = run_browser_script(
        "red_dtx.mjs",
        &[
            "--url",
            &url,
            "--room",
            "resilient",
            "--speech",
            speech.to_str().unwrap(),
            "--silence",
            silence.to_str().unwrap(),
            "--timeout",
            "40",
        ],
        Duration::from_secs(240),
    )
    .await;
    eprintln!("RED/DTX summary: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    // jfk.wav's utterances as whisper.cpp's VAD cuts them: 1.95, 1.14, 2.30 and 2.46 s. Captions are
    // speech-sized, and some are one of those (the first may have begun before the worker heard
    // anything; on a starved machine the browser's capture can run two utterances together).
    const LENGTHS: [f64; 4] = [1.95, 1.14, 2.30, 2.46];
    let captions = summary["captions"].as_array().unwrap();
    let lengths: Vec<f64> = captions
        .iter()
        .map(|c| (c["end_ms"].as_f64().unwrap() - c["start_ms"].as_f64().unwrap()) / 1000.0)
        .collect();
    assert!(
        lengths.iter().all(|l| (0.3..=6.0).contains(l)),
        "captions of {lengths:.2?} s are not speech-sized: {summary}"
    );
    assert!(
        lengths[1..]
            .iter()
            .any(|l| LENGTHS.iter().any(|r| (r - l).abs() <= 0.3)),
        "none of the captions of {lengths:.2?} s is one of jfk.wav's utterances: {summary}"
    );
    // Utterance ids are `<meeting>:<participant>:<start>`.
    let meeting = captions[0]["utterance_id"].as_str().unwrap().split(':').next().unwrap();
    let stored = server
        .state
        .store
        .transcript(meeting)
        .await
        .unwrap()
        .map(|t| t.segments);
    let stored = stored.unwrap_or_default();
    assert!(
        captions
            .iter()
            .all(|c| stored.iter().any(|s| c["utterance_id"] == s.utterance_id.as_str())),
        "every caption is stored: {stored:?}"
    );
    let stats = server.state.media.stats();
    assert!(
        samtal_sfu::Stats::get(&stats.red_unwrapped) > 0,
        "the worker got RED's primary blocks"
    );
    worker.shutdown().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Firefox ESR and Chromium in one meeting (tests/browser/firefox.mjs): media flows both ways through
/// the server; Firefox's signaling websocket, cut by a TCP proxy, resumes the same session (with what
/// it missed meanwhile, and no leave seen by Chromium); a Firefox participant who leaves disappears
/// from Chromium's page. Both browsers
/// run inside a network namespace with an address of its own, the server on its link's other end:
/// Firefox never offers a loopback candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_chromium_meet_through_the_server() {
    let ns = netns::Namespace::create("firefox");
    let server = start_server(namespace_only(&ns)).await;
    let url = server.http_url();
    let summary = run_browser_script_in(
        &ns,
        "firefox.mjs",
        &["--url", &url, "--room", "firefox", "--timeout", "60"],
        Duration::from_secs(300),
    )
    .await;
    eprintln!("Firefox summary: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}

/// A server reachable only at the test's side of `ns`'s link (Firefox, inside, offers no loopback
/// candidate and must reach the server's media there).
fn namespace_only(ns: &netns::Namespace) -> samtal_signaling::Config {
    let mut config = test_config();
    config.listen = std::net::SocketAddr::new(ns.host_ip, 0);
    config.media.ips = vec![ns.host_ip];
    config
}

/// A three-party meeting with one Firefox ESR and two Chromium participants
/// (tests/browser/firefox_three_party.mjs): audio with sound in every direction; Firefox sends its
/// camera as several simulcast layers, and the Chromium viewers with a large and a small window decode
/// its widest and a narrower one; Firefox as a viewer decodes a large layer of Chromium's, a lower one
/// when its window shrinks and the large one again when it grows, its decoder's frame count growing across
/// both switches; Firefox shares its screen through the section it offered empty at join (port 0 with
/// a=bundle-only) and both Chromium pages decode it, announced as a screen share, with Firefox's camera
/// going on; Firefox leaves and both pages drop it. The server counts the layer changes it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_two_chromiums_meet_with_simulcast() {
    let ns = netns::Namespace::create("ff3");
    let server = start_server(namespace_only(&ns)).await;
    let url = server.http_url();
    let summary = run_browser_script_in(
        &ns,
        "firefox_three_party.mjs",
        &["--url", &url, "--room", "ff3", "--timeout", "60"],
        Duration::from_secs(300),
    )
    .await;
    eprintln!("Firefox three-party summary: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(
        samtal_sfu::Stats::get(&server.state.media.stats().layer_changes) >= 3,
        "the allocator changed layers: {summary}"
    );
    server.shutdown().await;
}

/// Audio only and the transcription language picker (tests/browser/audio_only.mjs), with a
/// transcription worker connected (a websocket that registers as one, so the pages offer
/// transcription): the picked language reaches the other page and the worker's job, and a change
/// while transcription runs too; in audio only a page decodes no video while audio goes on, and its
/// camera is off for the others; turned off, video comes back. When transcription stops, the
/// moderator's page shows the meeting summary the server stored (from an utterance this test stores
/// as the worker would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_audio_only_and_the_transcription_language() {
    use samtal_e2e::ws::{Recv, WsClient};
    let mut config = test_config();
    config.matrix.summary_delay_secs = 0;
    let server = start_server(config).await;
    let store = server.state.store.clone();
    let mut worker = WsClient::connect(&server.ws_url()).await;
    worker
        .send_json(&serde_json::json!({"type": "worker", "token": WORKER_KEY, "capacity": 1}))
        .await;
    // The worker stays connected (pinging while idle) and notes each job's language until stopped.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let jobs = tokio::spawn(async move {
        let mut languages = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => return languages,
                got = worker.recv(Duration::from_secs(5)) => match got {
                    Recv::Json(m) if m["type"] == "job" && m["action"] == "start" => {
                        if languages.is_empty() {
                            let meeting = m["meeting_id"].as_str().expect("a meeting id");
                            let segment = samtal_protocol::Segment {
                                utterance_id: format!("{meeting}:alice:1"),
                                participant_id: "alice".into(),
                                start_ms: samtal_protocol::unix_ms(),
                                end_ms: samtal_protocol::unix_ms() + 2000,
                                text: "Vi beslutar att anta budgeten för nästa år.".into(),
                                language: Some("sv".into()),
                                confidence: Some(0.9),
                                is_final: true,
                            };
                            store.add_segment(meeting, &segment, "Alice").await.expect("segment stored");
                        }
                        languages.push(m["language"].as_str().map(str::to_owned));
                    }
                    Recv::Json(_) => {}
                    Recv::TimedOut => worker.send_json(&serde_json::json!({"type": "ping"})).await,
                    Recv::Closed => return languages,
                },
            }
        }
    });
    let summary = run_browser_script(
        "audio_only.mjs",
        &["--url", &server.http_url(), "--room", "quiet", "--timeout", "40"],
        Duration::from_secs(240),
    )
    .await;
    eprintln!("audio-only summary: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    let _ = stop.send(());
    let languages = jobs.await.expect("the worker task ends");
    assert_eq!(languages, [Some("sv".to_owned()), Some("en".to_owned())]);
    server.shutdown().await;
}
