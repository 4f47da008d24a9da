//! Several Samtal nodes on one real NATS server with JetStream (Debian's `nats-server`, started by
//! the test): the node registry, room placement on the least-loaded node, participants who reach
//! different nodes meeting in one room (their join is proxied to the room's node, media goes
//! straight to it), a resume that reaches another node, draining and stopped nodes taking no new
//! rooms, and room events on NATS subjects. Every node is a whole server in this process.

use futures_util::StreamExt;
use samtal_client::samtal_protocol::{MediaKind, Role};
use samtal_client::signal::JoinOptions;
use samtal_client::{Participant, ParticipantOptions};
use samtal_e2e::nats::Nats;
use samtal_e2e::ws::{WsClient, eventually, http_request};
use samtal_e2e::*;
use samtal_signaling::RunningServer;
use samtal_signaling::auth::mint;
use samtal_signaling::cluster::ClusterConfig;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "cluster-test-secret-0123456789abcdef-0123";
const WAIT: Duration = Duration::from_secs(20);

fn token(room: &str, name: &str, role: Role) -> String {
    mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

/// A node `id` on `nats`, its registry record renewed every second.
async fn node(nats: &Nats, id: &str) -> RunningServer {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut config = test_config();
    config.listen = addr;
    config.auth.secret = Some(SECRET.into());
    config.cluster = ClusterConfig {
        nats_url: Some(nats.url.clone()),
        node_id: Some(id.into()),
        advertise_url: Some(format!("http://{addr}")),
        liveness_secs: 3,
        ..Default::default()
    };
    start_server(config).await
}

/// `GET /api/cluster` on `server` as an administrator.
async fn view(server: &RunningServer) -> Value {
    let bearer = format!("Bearer {}", token("*", "root", Role::Administrator));
    let (status, body) = http_request(server.addr, "GET", "/api/cluster", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The node `room` is placed on, in a `GET /api/cluster` answer.
fn placed(view: &Value, room: &str) -> Option<String> {
    view["rooms"]
        .as_array()?
        .iter()
        .find(|r| r["room"] == room)
        .map(|r| r["node"].as_str().unwrap().to_owned())
}

/// The registry's participant count of `node`.
fn registered_participants(view: &Value, node: &str) -> Option<u64> {
    view["nodes"].as_array()?.iter().find(|n| n["id"] == node)?["participants"].as_u64()
}

async fn join_ws(server: &RunningServer, room: &str, name: &str, resumable: bool) -> (WsClient, Value) {
    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.send_json(&json!({
        "type": "join", "room": room, "name": name, "resumable": resumable,
        "token": token(room, name, Role::Participant),
    }))
    .await;
    let joined = ws.expect_type("joined").await;
    (ws, joined)
}

/// A webrtc-rs participant publishing audio, joined through `server`.
async fn participant(server: &RunningServer, room: &str, name: &str) -> Participant {
    let join = JoinOptions::new(room, name).with_token(token(room, name, Role::Participant));
    let mut p = Participant::join(&server.ws_url(), ParticipantOptions::from_join(join).with_audio())
        .await
        .unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
    p.start_media();
    p
}

/// Reads `p`'s media until `count` audio packets from `from` arrived; false at the deadline.
async fn hears(p: &mut Participant, from: &str, count: usize) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut heard = 0;
    while heard < count {
        match tokio::time::timeout_at(deadline, p.next_media()).await {
            Ok(Some(r)) if r.participant_id == from && r.kind == MediaKind::Audio => heard += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_goes_to_the_least_loaded_node_and_participants_of_every_node_meet_there() {
    let nats = Nats::start();
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let bus = async_nats::connect(nats.url.as_str())
        .await
        .expect("the test connects to NATS");
    let mut events = bus.subscribe("samtal.events.>").await.unwrap();

    let registry = view(&a).await;
    let ids: Vec<&str> = registry["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"], "{registry}");
    assert_eq!(registry["nodes"][1]["url"], b.http_url(), "{registry}");

    // Two empty nodes tie and the lowest id wins, whichever node the join reaches: a first
    // participant through b and a second through a meet in one room on a.
    let (mut w1, _) = join_ws(&b, "warm", "w1", false).await;
    let (_w2, joined) = join_ws(&a, "warm", "w2", false).await;
    let names: Vec<&str> = joined["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1"], "{joined}");
    w1.expect_type("participant_joined").await;
    assert_eq!(placed(&view(&b).await, "warm").as_deref(), Some("a"));
    assert_eq!(
        (a.state.rooms.participant_count(), b.state.rooms.participant_count()),
        (2, 0)
    );
    assert!(
        eventually(WAIT, || async {
            registered_participants(&view(&b).await, "a") == Some(2)
        })
        .await,
        "node a's record never showed its 2 participants: {}",
        view(&b).await
    );

    // A new room, joined through a: b carries less, so b holds it. Alice reaches a and is carried
    // to b; Bob reaches b directly. They hear each other.
    let mut alice = participant(&a, "meeting", "alice").await;
    let mut bob = participant(&b, "meeting", "bob").await;
    assert_eq!(placed(&view(&a).await, "meeting").as_deref(), Some("b"));
    assert_eq!(
        (a.state.rooms.participant_count(), b.state.rooms.participant_count()),
        (2, 2)
    );
    let (alice_id, bob_id) = (alice.id().to_owned(), bob.id().to_owned());
    assert!(
        hears(&mut bob, &alice_id, 50).await,
        "bob (on b) never heard alice (through a)"
    );
    assert!(
        hears(&mut alice, &bob_id, 50).await,
        "alice (through a) never heard bob (on b)"
    );

    // Room events went out on NATS, from the node that holds each room.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.iter().any(|e: &Value| {
        e["event"] == "participant_joined" && e["room"] == "meeting" && e["participant"]["name"] == "bob"
    }) {
        let message = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no participant_joined of bob on NATS; seen: {seen:?}"))
            .expect("subscription open");
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("samtal.events.{}", event["event"].as_str().unwrap())
        );
        seen.push(event);
    }
    let started: Vec<(&str, &str)> = seen
        .iter()
        .filter(|e| e["event"] == "room_started")
        .map(|e| (e["room"].as_str().unwrap(), e["node"].as_str().unwrap()))
        .collect();
    assert_eq!(started, [("warm", "a"), ("meeting", "b")], "{seen:?}");

    // When its last participant leaves, the room's placement goes away.
    alice.close().await;
    bob.close().await;
    assert!(
        eventually(WAIT, || async { placed(&view(&a).await, "meeting").is_none() }).await,
        "the placement of an ended room stayed: {}",
        view(&a).await
    );
    assert_eq!(placed(&view(&a).await, "warm").as_deref(), Some("a"));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_websocket_resumes_through_another_node() {
    let nats = Nats::start();
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    // The room goes to a (tie); Carol reaches it through b, Dave directly.
    let (mut carol, joined) = join_ws(&b, "blip", "carol", true).await;
    let carol_id = joined["participant_id"].as_str().unwrap().to_owned();
    let resume = joined["resume"]["token"].as_str().expect("a resume token").to_owned();
    assert!(
        resume.starts_with("a."),
        "a token names the node of its session: {resume}"
    );
    let (mut dave, _) = join_ws(&a, "blip", "dave", false).await;
    carol.expect_type("participant_joined").await;
    let received = carol.seen.len();
    carol.vanish();

    // Her new websocket reaches b again, which carries it to her session on a.
    let url = format!("{}?resume={resume}&received={received}", b.ws_url());
    let mut again = WsClient::connect(&url).await;
    let resumed = again.expect_type("resumed").await;
    assert_eq!(resumed["received"], 1, "{resumed}");
    again
        .send_json(&json!({"type": "mute", "source": "microphone", "muted": true}))
        .await;
    let changed = dave.expect_type("mute_changed").await;
    assert_eq!(changed["participant_id"], carol_id.as_str());
    assert!(
        !dave.seen.iter().any(|m| m["type"] == "participant_left"),
        "dave saw carol leave: {}",
        dave.dump()
    );
    // A token that names no live node is refused as any unknown token is.
    let mut stranger = WsClient::connect(&format!("{}?resume=zz.00&received=0", b.ws_url())).await;
    let refused = stranger.expect_error("resume_failed").await;
    assert_eq!(refused["fatal"], true, "{refused}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_and_stopped_nodes_take_no_new_rooms() {
    let nats = Nats::start();
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let c = node(&nats, "c").await;
    let admin = format!("Bearer {}", token("*", "root", Role::Administrator));
    let (status, body) = http_request(a.addr, "POST", "/api/drain", &[("Authorization", &admin)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(WAIT, || async { view(&b).await["nodes"][0]["draining"] == true }).await,
        "a's record never said it drains: {}",
        view(&b).await
    );

    // Through the draining node a, a new room goes to b (b and c tie, b is the lower id).
    let (mut first, _) = join_ws(&a, "later", "erin", false).await;
    assert_eq!(placed(&view(&a).await, "later").as_deref(), Some("b"));
    assert_eq!(b.state.rooms.participant_count(), 1);
    first.send_json(&json!({"type": "leave"})).await;
    assert!(first.closed_within(WAIT).await);
    // b keeps the placement while the room is empty only until it is released.
    assert!(eventually(WAIT, || async { placed(&view(&a).await, "later").is_none() }).await);

    // A room on b; then b stops: it leaves the registry at once, and the room's next join
    // (through a) places it again, on c.
    let (_frank, _) = join_ws(&a, "moving", "frank", false).await;
    assert_eq!(placed(&view(&a).await, "moving").as_deref(), Some("b"));
    b.shutdown().await;
    let registry = view(&a).await;
    let ids: Vec<&str> = registry["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"], "{registry}");
    let (_gina, joined) = join_ws(&a, "moving", "gina", false).await;
    assert_eq!(joined["participants"], json!([]), "{joined}");
    assert_eq!(placed(&view(&a).await, "moving").as_deref(), Some("c"));
    assert_eq!(c.state.rooms.participant_count(), 1);
    c.shutdown().await;
    a.shutdown().await;
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_nats_server_refuses_to_start_and_bad_cluster_settings_are_named() {
    let mut nats = Nats::start();
    let url = nats.url.clone();
    nats.stop();
    let mut config = test_config();
    config.cluster = ClusterConfig {
        nats_url: Some(url),
        node_id: Some("a".into()),
        advertise_url: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    };
    let error = samtal_signaling::start(config.clone())
        .await
        .err()
        .expect("no NATS, no start");
    assert!(error.to_string().contains("cannot connect to NATS"), "{error}");
    config.cluster.node_id = Some("a.b".into());
    let error = samtal_signaling::start(config.clone())
        .await
        .err()
        .expect("a bad node id");
    assert!(error.to_string().contains("node_id"), "{error}");
    config.cluster.node_id = Some("a".into());
    config.cluster.advertise_url = None;
    let error = samtal_signaling::start(config).await.err().expect("no advertise_url");
    assert!(error.to_string().contains("advertise_url"), "{error}");
}
