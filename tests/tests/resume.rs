//! Resuming a session after its websocket dropped (docs/protocol.md, "Resuming a session"), at the
//! protocol level with raw websockets, and with the Rust client (the transcriber's) through a TCP
//! proxy this test cuts. The browser's resume over a cut link is in reachability.rs.

use samtal_client::samtal_protocol::{ClientMessage, ServerMessage, TrackSource};
use samtal_client::signal::{JoinOptions, SignalingClient};
use samtal_e2e::ws::{Recv, WsClient, http_get, metric};
use samtal_e2e::*;
use samtal_signaling::RunningServer;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

async fn server(grace_secs: u64) -> RunningServer {
    let mut config = test_config();
    config.limits.resume_grace_secs = grace_secs;
    start_server(config).await
}

/// Joins `room` as `name`, asking to resume when `resumable`.
async fn join(server: &RunningServer, room: &str, name: &str, resumable: bool) -> (WsClient, Value) {
    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.send_json(&json!({"type": "join", "room": room, "name": name, "resumable": resumable}))
        .await;
    let joined = ws.expect_type("joined").await;
    (ws, joined)
}

/// Nothing but messages of other types arrives at `ws` within `within` (no `ty`).
async fn none_of(ws: &mut WsClient, ty: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match ws
            .recv(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            Recv::Json(v) => assert_ne!(v["type"], ty, "unexpected {ty}: {v}"),
            Recv::TimedOut => return,
            Recv::Closed => panic!("closed while waiting; messages: {}", ws.dump()),
        }
    }
}

fn resume_url(server: &RunningServer, token: &str, received: usize) -> String {
    format!("{}?resume={token}&received={received}", server.ws_url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_gets_what_it_missed_and_the_others_see_no_leave() {
    let server = server(10).await;
    let (mut alice, joined) = join(&server, "blip", "Alice", true).await;
    let alice_id = joined["participant_id"].as_str().unwrap().to_owned();
    let token = joined["resume"]["token"].as_str().expect("a resume token").to_owned();
    assert_eq!(joined["resume"]["grace_secs"], 10);
    let (mut bob, _) = join(&server, "blip", "Bob", false).await;
    alice.expect_type("participant_joined").await;
    alice.ping_pong("before").await;
    let received = alice.seen.len();
    // Alice sent: join, ping.
    alice.vanish();

    // While she is away, Bob mutes: the server keeps that for her.
    bob.send_json(&json!({"type": "mute", "source": "microphone", "muted": true}))
        .await;
    bob.send_json(&json!({"type": "mute", "source": "camera", "muted": true}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut again = WsClient::connect(&resume_url(&server, &token, received)).await;
    let missed: Vec<Value> = [again.recv(WAIT).await, again.recv(WAIT).await, again.recv(WAIT).await]
        .into_iter()
        .map(|r| match r {
            Recv::Json(v) => v,
            other => panic!("expected the missed messages, got {other:?}"),
        })
        .collect();
    assert_eq!(missed[0]["type"], "mute_changed", "{missed:?}");
    assert_eq!(missed[0]["source"], "microphone");
    assert_eq!(missed[1]["source"], "camera");
    assert_eq!(missed[2], json!({"type": "resumed", "received": 2}));
    // The session goes on: same participant, the server answers, Bob sees what she does.
    again.ping_pong("after").await;
    again
        .send_json(&json!({"type": "mute", "source": "microphone", "muted": true}))
        .await;
    let changed = bob.expect_type("mute_changed").await;
    assert_eq!(changed["participant_id"], alice_id.as_str());
    none_of(&mut bob, "participant_left", Duration::from_millis(300)).await;
    assert!(
        !bob.seen.iter().any(|m| m["type"] == "participant_left"),
        "{}",
        bob.dump()
    );
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert_eq!(
        metric(&metrics, "samtal_signaling_resumes_total"),
        Some(1.0),
        "{metrics}"
    );

    // A second drop, and a resume claiming more than the server sent: refused, and the session ends.
    again.vanish();
    let mut liar = WsClient::connect(&resume_url(&server, &token, 1000)).await;
    let error = liar.expect_error("resume_failed").await;
    assert_eq!(error["fatal"], true);
    assert_eq!(liar.close_frame().await.map(|c| c.0), Some(1008));
    let left = bob.expect_type("participant_left").await;
    assert_eq!(left["participant_id"], alice_id.as_str());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_or_an_ended_session_cannot_be_resumed() {
    let server = server(10).await;
    let mut stranger = WsClient::connect(&resume_url(&server, "0123456789abcdef", 0)).await;
    let error = stranger.next_error("resume_failed").await;
    assert_eq!(error["fatal"], true, "{error}");
    assert_eq!(stranger.close_frame().await.map(|c| c.0), Some(1008));

    // Leaving ends the session: its token is dead.
    let (mut alice, joined) = join(&server, "gone", "Alice", true).await;
    let token = joined["resume"]["token"].as_str().unwrap().to_owned();
    alice.send_json(&json!({"type": "leave"})).await;
    assert!(alice.closed_within(WAIT).await);
    let mut late = WsClient::connect(&resume_url(&server, &token, 1)).await;
    late.next_error("resume_failed").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_resume_in_the_grace_period_or_without_asking_a_drop_is_a_leave() {
    let server = server(2).await;
    let (mut bob, _) = join(&server, "grace", "Bob", false).await;

    // Asked to resume, never did: gone after the grace period, not before.
    let (alice, joined) = join(&server, "grace", "Alice", true).await;
    bob.expect_type("participant_joined").await;
    let dropped_at = tokio::time::Instant::now();
    alice.vanish();
    let left = bob.expect_type("participant_left").await;
    assert_eq!(left["participant_id"], joined["participant_id"]);
    assert_eq!(left["reason"], "disconnected");
    let after = dropped_at.elapsed();
    assert!(after >= Duration::from_millis(1900), "left after {after:?}");

    // Did not ask: no token, and gone at once.
    let (carol, joined) = join(&server, "grace", "Carol", false).await;
    assert!(joined.get("resume").is_none(), "{joined}");
    bob.expect_type("participant_joined").await;
    let dropped_at = tokio::time::Instant::now();
    carol.vanish();
    bob.expect_type("participant_left").await;
    assert!(
        dropped_at.elapsed() < Duration::from_millis(1500),
        "{:?}",
        dropped_at.elapsed()
    );
    server.shutdown().await;
}

/// A TCP proxy to `target` whose connections the test can end at once (both sides see the TCP
/// connection close) and which refuses new ones while `refusing`.
struct Proxy {
    addr: std::net::SocketAddr,
    refusing: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refusing = Arc::new(AtomicBool::new(false));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let refused = refusing.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refused.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, refusing, cut }
    }

    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}

/// The next message at the Rust client that `pick` accepts.
async fn rust_expect<T>(
    client: &mut SignalingClient,
    what: &str,
    mut pick: impl FnMut(&ServerMessage) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, client.recv()).await {
            Ok(Some(m)) => {
                if let Some(found) = pick(&m) {
                    return found;
                }
            }
            Ok(None) => panic!("the Rust client's session ended while waiting for {what}"),
            Err(_) => panic!("no {what} at the Rust client"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_resumes_through_a_cut_connection() {
    let server = server(10).await;
    let proxy = Proxy::start(server.addr).await;
    let url = format!("ws://{}/ws", proxy.addr);
    let (mut rust, joined) = SignalingClient::connect(&url, JoinOptions::new("cut", "Worker").resumable(true))
        .await
        .expect("joins through the proxy");
    assert!(joined.resume.is_some(), "{joined:?}");
    let (mut bob, _) = join(&server, "cut", "Bob", false).await;
    rust_expect(&mut rust, "participant_joined", |m| {
        matches!(m, ServerMessage::ParticipantJoined { .. }).then_some(())
    })
    .await;

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both ways while the connection is gone: Bob mutes, the Rust client mutes.
    bob.send_json(&json!({"type": "mute", "source": "camera", "muted": true}))
        .await;
    rust.send(ClientMessage::Mute {
        source: TrackSource::Microphone,
        muted: true,
    })
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    let source = rust_expect(&mut rust, "Bob's mute_changed", |m| match m {
        ServerMessage::MuteChanged {
            source, muted: true, ..
        } => Some(*source),
        _ => None,
    })
    .await;
    assert_eq!(source, TrackSource::Camera);
    let changed = bob.expect_type("mute_changed").await;
    assert_eq!(changed["participant_id"], joined.participant_id.as_str());
    assert_eq!(changed["source"], "microphone");
    assert!(
        !bob.seen.iter().any(|m| m["type"] == "participant_left"),
        "{}",
        bob.dump()
    );
    rust.close().await;
    let left = bob.expect_type("participant_left").await;
    assert_eq!(left["reason"], "left");
    server.shutdown().await;
}
