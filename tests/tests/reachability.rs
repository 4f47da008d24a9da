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
