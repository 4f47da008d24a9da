//! Interop with an independent WebRTC stack: two aiortc (Python) peers join through the websocket
//! protocol; one speaks jfk.wav, the other sends silence (the control). Each must receive the
//! other's audio as decoded frames: real energy from the speech, none from the silence.

use samtal_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aiortc_peers_hear_each_other_through_the_sfu() {
    let python = python();
    let speech = test_data("audio/jfk.wav");
    let server = start_server(test_config()).await;
    let dir = std::env::temp_dir().join(format!("samtal-aiortc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let silence = make_silence(&dir);

    let peer = |name: &str, wav: &std::path::Path| {
        let mut c = tokio::process::Command::new(&python);
        c.arg(repo_root().join("tests/peers/aiortc_peer.py"))
            .args(["--ws", &server.ws_url(), "--room", "interop", "--name", name])
            .arg("--wav")
            .arg(wav)
            .args(["--expect-peers", "1", "--min-audio", "3", "--duration", "60"]);
        run_peer(c, Duration::from_secs(90))
    };
    let (speaker, listener) = tokio::join!(peer("Speaker", &speech), peer("Silent", &silence));
    let (s, l) = (speaker.json(), listener.json());
    assert_eq!(speaker.status, Some(0), "speaker peer failed: {s}\n{}", speaker.tail());
    assert_eq!(listener.status, Some(0), "silent peer failed: {l}\n{}", listener.tail());

    let heard_by_listener = &l["received"][s["participant_id"].as_str().unwrap()];
    let heard_by_speaker = &s["received"][l["participant_id"].as_str().unwrap()];
    assert!(
        heard_by_listener["frames"].as_u64().unwrap() >= 100,
        "listener got too few frames: {l}"
    );
    assert!(
        heard_by_speaker["frames"].as_u64().unwrap() >= 100,
        "speaker got too few frames: {s}"
    );
    let speech_rms = heard_by_listener["rms"].as_f64().unwrap();
    let silence_rms = heard_by_speaker["rms"].as_f64().unwrap();
    assert!(
        speech_rms > 0.01,
        "speech arrived without energy (rms {speech_rms}): {l}"
    );
    assert!(
        silence_rms < 0.001,
        "silence arrived with energy (rms {silence_rms}): {s}"
    );
    assert_eq!(heard_by_listener["name"], "Speaker");
    server.shutdown().await;
}

/// Toward a subscriber that estimates its downlink itself (tests/browser/remb.mjs): aiortc does no
/// transport-wide congestion feedback; it reports REMB, computed from the abs-send-time the server
/// writes into its video. Alice publishes a simulcast camera from Chromium; Dave (aiortc) watches
/// from a network namespace of the test's own. Unshaped he decodes the top layer; with `tc` limiting
/// his link to 400 kbit/s he decodes a lower layer and keeps decoding; with the limit lifted he
/// climbs back, which a receiver-side estimate alone never allows (it stays under 1.5 times what it
/// receives), so the server probes with the next layer up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aiortc_viewer_on_a_thin_link_follows_its_remb_down_and_back_up() {
    let ns = netns::Namespace::create("remb");
    let server = start_server(test_config_in(&ns)).await;
    let (python, peer) = (python(), repo_root().join("tests/peers/aiortc_peer.py"));
    let inner_ip = ns.inner_ip.to_string();
    let summary = run_browser_script(
        "remb.mjs",
        &[
            "--url",
            &server.http_url(),
            "--room",
            "remb",
            "--peer",
            peer.to_str().unwrap(),
            "--python",
            python.to_str().unwrap(),
            "--netns",
            &ns.name,
            "--inner-ip",
            &inner_ip,
            "--shape-dev",
            &ns.host_dev,
        ],
        Duration::from_secs(420),
    )
    .await;
    eprintln!("REMB summary: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    let stats = server.state.media.stats();
    assert!(
        samtal_sfu::Stats::get(&stats.layer_changes) >= 2,
        "the allocator lowered and raised Dave's layer: {summary}"
    );
    assert!(
        samtal_sfu::Stats::get(&stats.bandwidth_probes) >= 1,
        "the server probed Dave's link: {summary}"
    );
    server.shutdown().await;
}
