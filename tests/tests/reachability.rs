//! Reachability from locked-down networks, with real peers: a headless Chromium in a network
//! namespace whose UDP is dropped by nftables (joined to the server's side by a veth pair) meets a
//! Chromium on an open network (tests/browser/reachability.mjs) over the server's ICE-TCP candidate,
//! and through a real coturn (started with deploy/coturn/turnserver.conf) over TURN/TCP and
//! TURN/TLS with credentials the server mints per join. Wrong and expired credentials are refused by
//! coturn. A participant whose link is cut for a while is shown as interrupted, not as gone; one
//! whose websocket is cut resumes its session within the grace period; one whose address changes
//! recovers by ICE restarts on both its connections.

use samtal_e2e::netns::Namespace;
use samtal_e2e::turn::Coturn;
use samtal_e2e::ws::{http_get, metric};
use samtal_e2e::*;
use serde_json::{Value, json};
use std::time::Duration;

/// A network namespace for the test (its UDP dropped, where asked), a wrapper that runs Chromium
/// inside it, and a scratch directory; the server goes on the link's other end.
struct Setup {
    ns: Namespace,
    dir: std::path::PathBuf,
    ns_chromium: std::path::PathBuf,
}

fn setup(tag: &str, block_udp: bool) -> Setup {
    let ns = Namespace::create(tag);
    if block_udp {
        ns.block_udp();
    }
    let dir = std::env::temp_dir().join(format!("samtal-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, chromium) = browser_driver();
    let ns_chromium = ns.wrapper(&chromium, &dir);
    Setup { ns, dir, ns_chromium }
}

impl Setup {
    fn config(&self) -> samtal_signaling::Config {
        test_config_in(&self.ns)
    }

    async fn meet(&self, url: &str, room: &str, bob_path: &str, probes: &Value) -> Value {
        let probes = probes.to_string();
        let args = [
            "--blocked-chromium",
            self.chromium(),
            "--bob-path",
            bob_path,
            "--turn-probes",
            &probes,
        ];
        self.run("reachability.mjs", url, room, "40", &args, 240).await
    }

    /// The Chromium wrapper that runs inside the namespace.
    fn chromium(&self) -> &str {
        self.ns_chromium.to_str().unwrap()
    }

    /// Runs a browser script against the server at `url` in `room` with `wait_s` seconds of deadline
    /// per wait, `args`, and `limit_s` for the whole script; prints its summary.
    async fn run(&self, script: &str, url: &str, room: &str, wait_s: &str, args: &[&str], limit_s: u64) -> Value {
        let mut all = vec!["--url", url, "--room", room, "--timeout", wait_s];
        all.extend_from_slice(args);
        let summary = run_browser_script(script, &all, Duration::from_secs(limit_s)).await;
        eprintln!("{script} in {room}: {summary}");
        summary
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Bob's UDP is dropped: both his connections go over the server's passive ICE-TCP candidate, and
/// media flows both ways; Alice's go over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_whose_udp_is_blocked_meets_over_ice_tcp() {
    let s = setup("tcp", true);
    let server = start_server(s.config()).await;
    let loops = server.state.media.loops();
    assert_eq!(
        server.state.media.tcp_addrs().len(),
        2 * loops,
        "a TCP listener per address and media loop"
    );
    let summary = s.meet(&server.http_url(), "tcp", "host-tcp", &json!([])).await;
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["Bob_paths"]["publish"]["protocol"], "tcp", "{summary}");
    server.shutdown().await;
}

/// Bob's UDP is dropped and he allows only relayed paths: through coturn over TURN/TCP, and in a
/// second meeting over TURN/TLS, with the credentials the server minted for his join. Credentials
/// with a wrong password, or signed right but expired, get no relay (coturn answers 401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_whose_udp_is_blocked_meets_through_coturn_over_tcp_and_tls() {
    let s = setup("turn", true);
    let secret = "turn-test-secret-0123456789abcdef-0123456789";
    let turn = Coturn::start(s.ns.host_ip, s.ns.host_ip, secret, &s.dir);
    let ip = turn.ip;
    for (scheme, port, path) in [("turn", turn.port, "relay-tcp"), ("turns", turn.tls_port, "relay-tls")] {
        let mut config = s.config();
        config.turn.secret = Some(secret.into());
        config.turn.urls = vec![format!("{scheme}:{ip}:{port}?transport=tcp")];
        let minted = |ttl_secs: u64, ago: u64| {
            let t = samtal_signaling::turn::TurnConfig {
                ttl_secs,
                ..config.turn.clone()
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            t.credentials("probe", now - ago).unwrap()
        };
        let mut wrong = minted(600, 0);
        wrong.credential = Some("d3JvbmctcGFzc3dvcmQ=".into());
        let probes = json!([
            {"name": "valid", "ice_servers": [minted(600, 0)], "expect": "relay"},
            {"name": "wrong password", "ice_servers": [wrong], "expect": 401},
            {"name": "expired", "ice_servers": [minted(600, 3600)], "expect": 401},
        ]);
        let server = start_server(config).await;
        let summary = s.meet(&server.http_url(), path, path, &probes).await;
        assert_eq!(summary["ok"], true, "{summary}\ncoturn log:\n{}", turn.log_tail());
        server.shutdown().await;
    }
}

/// Bob's link (the veth pair into his namespace) goes down for 15 s and comes back
/// (tests/browser/interruption.mjs): Alice's page marks his connection interrupted, from the server's
/// `media_state`, instead of showing a leave or muted devices; when the link is back the mark goes,
/// his camera decodes again, and he never left her participant list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_shows_as_interrupted_and_media_resumes_without_a_rejoin() {
    let s = setup("cut", false);
    let server = start_server(s.config()).await;
    let args = ["--cut-chromium", s.chromium(), "--cut-dev", &s.ns.host_dev];
    let summary = s
        .run("interruption.mjs", &server.http_url(), "cut", "40", &args, 240)
        .await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}

/// The same cut with Bob in Firefox ESR (tests/browser/interruption.mjs --bob-firefox): the driver and
/// Firefox run inside the namespace, Alice's Chromium outside it, and the link is cut from inside.
/// Alice's page marks him interrupted, and after the cut decodes his camera again without a rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firefox_whose_link_is_cut_shows_as_interrupted_and_recovers_without_a_rejoin() {
    let s = setup("ffcut", false);
    let server = start_server(s.config()).await;
    let (_, chromium) = browser_driver();
    let outside = samtal_e2e::netns::outside_wrapper(&chromium, &s.dir);
    let url = server.http_url();
    let summary = run_browser_script_in(
        &s.ns,
        "interruption.mjs",
        &[
            "--url",
            &url,
            "--room",
            "ffcut",
            "--timeout",
            "40",
            "--bob-firefox",
            "/usr/bin/firefox-esr",
            "--outside-chromium",
            outside.to_str().unwrap(),
            "--cut-dev",
            &s.ns.inner_dev,
        ],
        Duration::from_secs(300),
    )
    .await;
    eprintln!("interruption.mjs (Firefox) in ffcut: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["bob_browser"], "firefox");
    server.shutdown().await;
}

/// Bob's websocket is closed for real (a TCP proxy between his Chromium and the server ends the
/// connection) and his link goes down (tests/browser/resume.mjs). For 5 s, shorter than the grace
/// period: his page shows "reconnecting", resumes the same session on a new websocket, and the
/// messages either side sent meanwhile arrive; Alice never sees him leave and media flows again.
/// For longer than the grace period: the server removes him as before, and his page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_websocket_resumes_within_the_grace_period_and_ends_after_it() {
    let s = setup("resume", false);
    let mut config = s.config();
    config.limits.resume_grace_secs = 10;
    let grace = config.limits.resume_grace_secs.to_string();
    let server = start_server(config).await;
    let args = [
        "--cut-chromium",
        s.chromium(),
        "--cut-dev",
        &s.ns.host_dev,
        "--grace",
        &grace,
    ];
    let summary = s
        .run("resume.mjs", &server.http_url(), "resume", "40", &args, 300)
        .await;
    assert_eq!(summary["ok"], true, "{summary}");
    // The server counted the resume: it was a resume, not a rejoin.
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metric(&metrics, "samtal_signaling_resumes_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    server.shutdown().await;
}

/// Bob's address changes mid-meeting (tests/browser/address_change.mjs): his old address goes and
/// a new one in another subnet comes. His page restarts ICE on its publish connection, the server
/// restarts ICE on his subscribe connection (both with new credentials), his websocket resumes, he
/// decodes Alice's camera, and she hears him and decodes his simulcast camera (moved to a fresh
/// transceiver by his restart's offer) again from his new address, with no rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_whose_address_changes_stays_and_recovers_by_ice_restarts() {
    let s = setup("move", false);
    let server = start_server(s.config()).await;
    let (change, new_ip) = s.ns.address_change(&s.dir);
    let new_ip = new_ip.to_string();
    let args = [
        "--moved-chromium",
        s.chromium(),
        "--change",
        change.to_str().unwrap(),
        "--new-ip",
        &new_ip,
    ];
    let summary = s
        .run("address_change.mjs", &server.http_url(), "move", "45", &args, 300)
        .await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}

/// The transcription worker's link is cut (from inside its network namespace: websockets and media
/// alike) for longer than the server waits before it restarts ICE on a silent subscribe connection,
/// then comes back. The worker (the real one, Silero VAD and a scripted recognizer standing in for
/// Whisper; its threads entered the namespace before opening any socket) resumes its room session
/// on a new websocket, answers the server's ICE restart offer, and hears Alice again: what she says
/// before and after the cut is stored, every utterance once, by the same session (no rejoin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transcriber_survives_a_cut_link_by_resuming_and_an_ice_restart() {
    use samtal_client::microphone::Microphone;
    use samtal_client::{JoinOptions, Participant, ParticipantOptions};
    use samtal_protocol::ClientMessage;
    use samtal_transcriber::fixtures::{opus_20ms, read_wav_16k};
    use samtal_transcriber::recognize::{Recognizer, ScriptedRecognizer};
    use samtal_transcriber::worker::{Worker, WorkerConfig, WorkerHandle};
    use std::sync::Arc;

    let ns = Namespace::create("trice");
    let server = start_server(test_config_in(&ns)).await;
    // The worker, behind the namespace's link: its runtime's threads are started inside.
    let (ws, vad) = (server.ws_url(), test_data("models/ggml-silero-v6.2.0-for-tests.bin"));
    let (handle_tx, handle_rx) = std::sync::mpsc::channel::<WorkerHandle>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ns_for_worker, inner_ip) = (ns.name.clone(), ns.inner_ip);
    let inside = std::thread::spawn(move || {
        Namespace::enter_named(&ns_for_worker);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let mut config = WorkerConfig::new(ws, vad);
        config.token = Some(WORKER_KEY.to_owned());
        config.stats_interval = None;
        config.bind_ip = inner_ip;
        let worker = Worker::spawn(config, |_| {
            Ok(Box::new(ScriptedRecognizer::always("ask not")) as Box<dyn Recognizer>)
        })
        .expect("worker starts");
        handle_tx.send(worker).expect("handed over");
        let _ = stop_rx.recv();
    });
    let worker = handle_rx.recv().expect("the worker");
    async fn wait(what: &str, secs: u64, ok: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait("the worker to register", 20, || worker.stats().connected).await;

    // Alice, on the test's side, with a microphone that sends silence until she speaks.
    let options = ParticipantOptions::from_join(JoinOptions::new("cut", "Alice")).with_audio();
    let alice = Arc::new(Participant::join(&server.ws_url(), options).await.expect("Alice joins"));
    let silence = bytes::Bytes::from(opus_20ms(&[0.0; 320]).expect("opus").remove(0));
    let microphone = Microphone::start(alice.clone(), silence);
    alice
        .signal()
        .send(ClientMessage::Transcription {
            enabled: true,
            language: None,
            prompt: None,
        })
        .expect("sent");
    let receiving = |more: u64| {
        let since = worker.stats().packets_received;
        move |w: &WorkerHandle| {
            let s = w.stats();
            s.rooms.iter().any(|r| r.room == "cut" && r.connected) && s.packets_received >= since + more
        }
    };
    let first = receiving(25);
    wait("the worker to hear Alice", 30, || first(&worker)).await;
    let meeting = server
        .state
        .transcription
        .meeting_id("cut")
        .expect("transcription is on");
    let jfk: Vec<bytes::Bytes> = opus_20ms(&read_wav_16k(&test_data("audio/jfk.wav")).expect("jfk.wav"))
        .expect("opus")
        .into_iter()
        .map(bytes::Bytes::from)
        .collect();
    let stored = |server: &samtal_signaling::RunningServer| {
        let (store, meeting) = (server.state.store.clone(), meeting.clone());
        async move {
            let t = store.transcript(&meeting).await.expect("store");
            t.map(|t| t.segments).unwrap_or_default()
        }
    };
    microphone.say(jfk.clone()).await.expect("speech starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while stored(&server).await.len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "four utterances stored before the cut"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let session = worker.stats().rooms[0].participant_id.clone();

    // 18 s without a link: the server restarts ICE after 16 s of silence (the offer waits for the
    // worker's resumed websocket), well inside the 25 s after which it would give up.
    let restarts = samtal_sfu::Stats::get(&server.state.media.stats().ice_restarts);
    ns.set_link(false);
    tokio::time::sleep(Duration::from_secs(18)).await;
    ns.set_link(true);
    let again = receiving(50);
    wait("the worker to hear Alice again after the cut", 40, || again(&worker)).await;
    assert!(
        samtal_sfu::Stats::get(&server.state.media.stats().ice_restarts) > restarts,
        "the server restarted ICE toward the worker"
    );
    microphone.say(jfk).await.expect("speech starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while stored(&server).await.len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "four more utterances stored after the cut: {:?}",
            stored(&server).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let segments = stored(&server).await;
    let ids: std::collections::HashSet<&str> = segments.iter().map(|s| s.utterance_id.as_str()).collect();
    assert_eq!((segments.len(), ids.len()), (8, 8), "each utterance once: {segments:?}");
    let room = worker.stats().rooms[0].clone();
    assert_eq!(room.participant_id, session, "the same session, resumed");
    assert_eq!(room.joins, 1, "no rejoin: {room:?}");

    microphone.stop().await;
    if let Ok(alice) = Arc::try_unwrap(alice) {
        alice.close().await;
    }
    worker.shutdown().await;
    let _ = stop_tx.send(());
    inside.join().expect("the worker's thread ends");
    server.shutdown().await;
}
