//! Signed webhooks through the whole server in-process, to receivers on loopback that the test
//! runs. A meeting (two participants, transcription on and off, both leave) gives every event to
//! the receiver that takes all of them, once each, in the order it happened, each signed with that
//! receiver's key (checked here with HMAC-SHA256 of our own, not the server's code). A second
//! receiver, down when the events happen and taking only room events, gets them once it comes up:
//! the delivery log (admin API) shows the failed attempts and then the delivery. A server stopped
//! right after a burst of meetings has written every one of their events to the store first.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use samtal_e2e::ws::{WsClient, eventually, http_request};
use samtal_e2e::*;
use samtal_protocol::{Role, Segment};
use samtal_signaling::auth::mint;
use samtal_signaling::webhooks::{Endpoint, EventKind};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webhooks-test-auth-secret-0123456789abcdef";
const ALL_KEY: &str = "receiver-one-hmac-key-0123456789abcdef-xyz";
const ROOMS_KEY: &str = "receiver-two-hmac-key-fedcba9876543210-abc";

fn token(room: &str, name: &str, role: Role) -> String {
    mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

/// A webhook receiver on loopback: keeps every request's headers and body, answers 204.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn serve(&self, listener: tokio::net::TcpListener) {
        let got = self.got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    /// The bodies received, each checked: signed with `key` over its exact bytes, and its headers
    /// naming its id and event. Sorted by creation time.
    fn verified(&self, key: &str) -> Vec<Value> {
        let mut bodies: Vec<Value> = self
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
                let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
                mac.update(body);
                let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(
                    header("samtal-signature"),
                    format!("sha256={expected}"),
                    "signature of {body:?}"
                );
                assert_eq!(header("content-type"), "application/json");
                let value: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(header("samtal-webhook-id"), value["id"], "{value}");
                assert_eq!(header("samtal-webhook-event"), value["event"], "{value}");
                value
            })
            .collect();
        bodies.sort_by_key(|v| v["created_at"].as_i64());
        bodies
    }
}

/// `event` with the participant's name, where it is about one.
fn summary(v: &Value) -> String {
    match v["participant"]["name"].as_str() {
        Some(name) => format!("{} {name}", v["event"].as_str().unwrap()),
        None => v["event"].as_str().unwrap().to_owned(),
    }
}

async fn log(addr: SocketAddr, query: &str, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let path = format!("/api/webhooks/deliveries{query}");
    let (status, body) = http_request(addr, "GET", &path, &[("Authorization", &bearer)]).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meetings_events_reach_receivers_signed_once_each_and_a_receiver_that_was_down_gets_them_later() {
    let all = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let all_url = format!("http://{}/hook", listener.local_addr().unwrap());
    all.serve(listener).await;
    // The second receiver's port, free (so refused) until it comes up.
    let rooms_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config.webhooks.retry_initial_secs = 1;
    config.webhooks.retry_max_secs = 1;
    config.webhooks.endpoints = vec![
        Endpoint {
            name: "records".into(),
            url: all_url,
            secret: ALL_KEY.into(),
            events: vec![],
        },
        Endpoint {
            name: "rooms".into(),
            url: format!("http://{rooms_addr}/hook"),
            secret: ROOMS_KEY.into(),
            events: vec![EventKind::RoomStarted, EventKind::RoomFinished],
        },
    ];
    let server = start_server(config).await;
    let admin = token("*", "root", Role::Administrator);

    let mut anna = WsClient::connect(&server.ws_url()).await;
    anna.join("budget", "Anna", Some(&token("budget", "Anna", Role::Moderator)))
        .await;
    let mut bo = WsClient::connect(&server.ws_url()).await;
    bo.join("budget", "Bo", Some(&token("budget", "Bo", Role::Participant)))
        .await;
    anna.expect_type("participant_joined").await;
    anna.send_json(&json!({"type": "transcription", "enabled": true, "language": "sv"}))
        .await;
    let status = anna.expect_type("transcription_status").await;
    let meeting = status["meeting_id"].as_str().expect("meeting id").to_owned();
    let started = server.state.store.meeting(&meeting).await.unwrap().unwrap().started_at;
    let segment = Segment {
        utterance_id: "u1".into(),
        participant_id: "p-anna".into(),
        start_ms: started + 1000,
        end_ms: started + 2000,
        text: "Vi börjar med budgeten.".into(),
        language: Some("sv".into()),
        confidence: Some(0.9),
        is_final: true,
    };
    server
        .state
        .store
        .add_segment(&meeting, &segment, "Anna")
        .await
        .unwrap();
    anna.send_json(&json!({"type": "transcription", "enabled": false}))
        .await;
    anna.expect_type("transcription_status").await;
    bo.send_json(&json!({"type": "leave"})).await;
    bo.close().await;
    anna.expect_type("participant_left").await;
    anna.close().await;

    let expected = [
        "room_started",
        "participant_joined Anna",
        "participant_joined Bo",
        "transcription_started",
        "transcription_stopped",
        "transcript_sealed",
        "participant_left Bo",
        "participant_left Anna",
        "room_finished",
    ];
    let arrived = eventually(Duration::from_secs(20), || async {
        all.got.lock().unwrap().len() >= expected.len()
    })
    .await;
    assert!(arrived, "{:?}", all.verified(ALL_KEY));
    // Nothing more comes: each event once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bodies = all.verified(ALL_KEY);
    assert_eq!(bodies.iter().map(summary).collect::<Vec<_>>(), expected);
    let mut ids: Vec<&str> = bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), expected.len(), "every event has its own id");
    assert!(bodies.iter().all(|b| b["room"] == "budget"), "{bodies:?}");
    let by_event = |e: &str| bodies.iter().find(|b| b["event"] == e).unwrap();
    assert_eq!(by_event("transcription_started")["meeting_id"], meeting.as_str());
    assert_eq!(by_event("transcription_started")["language"], "sv");
    let sealed = by_event("transcript_sealed");
    let stored = server.state.store.meeting(&meeting).await.unwrap().unwrap();
    assert_eq!(sealed["transcript_digest"], stored.transcript_digest.unwrap().as_str());
    assert_eq!(by_event("participant_joined")["role"], "moderator");
    let bo_left = bodies.iter().find(|b| summary(b) == "participant_left Bo").unwrap();
    assert_eq!(bo_left["reason"], "left", "{bo_left}");

    // The second receiver is down: its two room events wait, with their failed attempts logged.
    let waiting = eventually(Duration::from_secs(10), || async {
        let (_, body) = log(server.addr, "?state=pending", &admin).await;
        let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
        rows.len() == 2
            && rows.iter().all(|r| {
                r["endpoint"] == "rooms" && r["attempts"].as_i64() >= Some(1) && r["last_error"].as_str().is_some()
            })
    })
    .await;
    assert!(waiting, "{}", log(server.addr, "", &admin).await.1);
    let rooms = Receiver::default();
    rooms
        .serve(tokio::net::TcpListener::bind(rooms_addr).await.unwrap())
        .await;
    let delivered = eventually(Duration::from_secs(20), || async {
        rooms.got.lock().unwrap().len() >= 2
    })
    .await;
    assert!(delivered, "{}", log(server.addr, "", &admin).await.1);
    let bodies = rooms.verified(ROOMS_KEY);
    assert_eq!(
        bodies.iter().map(summary).collect::<Vec<_>>(),
        ["room_started", "room_finished"]
    );
    // The receiver has the bodies a moment before the server has recorded its answers.
    let recorded = eventually(Duration::from_secs(10), || async {
        let (_, body) = log(server.addr, "?state=delivered&limit=500", &admin).await;
        body["deliveries"]
            .as_array()
            .is_some_and(|rows| rows.len() >= expected.len() + 2)
    })
    .await;
    let (status, body) = log(server.addr, "?state=delivered&limit=500", &admin).await;
    assert!(recorded, "{body}");
    assert_eq!(status, 200, "{body}");
    let rows = body["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len() + 2, "{body}");
    let retried = rows.iter().filter(|r| r["endpoint"] == "rooms").collect::<Vec<_>>();
    assert!(
        retried
            .iter()
            .all(|r| r["attempts"].as_i64() >= Some(2) && r["last_status"] == 204),
        "{body}"
    );

    // The log is for administrators, and checks its query.
    let participant = token("budget", "Bo", Role::Participant);
    assert_eq!(log(server.addr, "", &participant).await.0, 403);
    assert_eq!(log(server.addr, "?state=lost", &admin).await.0, 400);
    server.shutdown().await;
}

/// The server stops right after a burst of meetings: every event of them is in the store afterwards
/// (the events still queued in memory at the stop are written before it ends), waiting for the next
/// start to deliver them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_when_the_server_stops_are_written_before_it_ends() {
    // A receiver nobody listens at: every row stays in the store, pending.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config.webhooks.endpoints = vec![Endpoint {
        name: "records".into(),
        url: format!("http://{nobody}/hook"),
        secret: ALL_KEY.into(),
        events: vec![],
    }];
    let server = start_server(config).await;
    // 40 one-person meetings: room_started, participant_joined, participant_left, room_finished each.
    const ROOMS: usize = 40;
    for i in 0..ROOMS {
        let room = format!("burst{i}");
        let mut client = WsClient::connect(&server.ws_url()).await;
        client
            .join(&room, "Anna", Some(&token(&room, "Anna", Role::Moderator)))
            .await;
        client.send_json(&json!({"type": "leave"})).await;
        client.close().await;
    }
    let gone = eventually(Duration::from_secs(20), || async {
        server.state.rooms.room_count() == 0
    })
    .await;
    assert!(gone, "every meeting ended");
    let state = server.state.clone();
    server.shutdown().await;
    let rows = state.store.webhook_log(None, 1000).await.unwrap();
    assert_eq!(rows.len(), 4 * ROOMS, "every event written before the server ended");
}
