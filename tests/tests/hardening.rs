//! Regression tests for the paths a hostile review found: forging transcripts, diverting them to a
//! stranger's Matrix room, insecure secrets, and clients that hold the server's resources without
//! joining. Each test drives the whole server in-process over raw websockets and HTTP, and asserts on
//! what an attacker and the others observe: errors, closed connections, what is stored and audited.

use samtal_e2e::ws::{Recv, WAIT, WsClient, eventually, http_get, http_get_with, metric};
use samtal_e2e::*;
use samtal_protocol::Role;
use samtal_signaling::auth::mint;
use samtal_signaling::store::AuditFilter;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "hardening-test-secret-0123456789abcdef";

fn token(room: &str, name: &str, role: Role) -> String {
    mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

/// Reads until a message of type `ty` arrives; None if the connection closes or `timeout` passes first.
async fn maybe(ws: &mut WsClient, ty: &str, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match ws
            .recv(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            Recv::Json(v) if v["type"] == ty => return Some(v),
            Recv::Json(_) => {}
            Recv::Closed | Recv::TimedOut => return None,
        }
    }
}

#[tokio::test]
async fn empty_short_and_placeholder_secrets_stop_the_server_from_starting() {
    for (secret, why) in [
        ("", "empty"),
        ("s3cret", "shorter than 32"),
        ("change-me-to-a-long-random-string", "placeholder"),
    ] {
        let mut config = test_config();
        config.auth.secret = Some(secret.into());
        let err = match samtal_signaling::start(config).await {
            Ok(server) => {
                // What the review did: sign an administrator token with the weak key and read the audit trail.
                let forged = mint(secret, "*", Some("x"), Role::Administrator, Duration::from_secs(60)).unwrap();
                let (status, _) = http_get_bearer(server.addr, "/api/audit", &forged).await;
                panic!("the server started with auth.secret {secret:?}; a forged administrator token got {status}");
            }
            Err(e) => e.to_string(),
        };
        assert!(err.contains("auth.secret") && err.contains(why), "{secret:?}: {err}");
    }
    let mut config = test_config();
    config.transcription.worker_key = Some(String::new());
    let err = samtal_signaling::start(config)
        .await
        .err()
        .expect("an empty worker key is refused")
        .to_string();
    assert!(err.contains("transcription.worker_key"), "{err}");
}

async fn http_get_bearer(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, String) {
    http_get_with(addr, path, &[("Authorization", &format!("Bearer {token}"))]).await
}

/// On an open server, anyone may meet but nobody may register as a transcription worker, join
/// hidden, or put words in another participant's mouth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_never_opens_the_service_role() {
    let server = start_server(test_config()).await;
    let ws = server.ws_url();

    // No credential, a wrong key, a participant pretending: refused and disconnected.
    for register in [
        json!({"type": "worker"}),
        json!({"type": "worker", "token": "guess-0123456789abcdef0123456789abcdef"}),
    ] {
        let mut w = WsClient::connect(&ws).await;
        w.send_json(&register).await;
        let e = w.next_error("unauthorized").await;
        assert_eq!(
            (e["ref_type"].as_str(), e["fatal"].as_bool()),
            (Some("worker"), Some(true)),
            "{e}"
        );
        assert!(w.closed_within(WAIT).await, "a refused worker is disconnected");
    }
    let mut sneak = WsClient::connect(&ws).await;
    sneak
        .send_json(&json!({"type": "join", "room": "board", "name": "Nobody", "hidden": true}))
        .await;
    sneak.next_error("forbidden").await;

    // The real worker, with the key, gets the job when Alice turns transcription on.
    let mut alice = WsClient::connect(&ws).await;
    let alice_id = alice.join("board", "Alice", None).await["participant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut worker = WsClient::connect(&ws).await;
    worker
        .send_json(&json!({"type": "worker", "token": WORKER_KEY, "capacity": 1}))
        .await;
    alice
        .expect("transcription available", WAIT, |v| {
            (v["type"] == "transcription_status" && v["available"] == true).then_some(())
        })
        .await;
    alice
        .send_json(&json!({"type": "transcription", "enabled": true}))
        .await;
    let job = worker.expect_type("job").await;
    let meeting_id = job["meeting_id"].as_str().unwrap().to_owned();
    let mut service = WsClient::connect(&ws).await;
    service
        .send_json(
            &json!({"type": "join", "room": "board", "name": "Transcriber", "token": job["token"], "hidden": true}),
        )
        .await;
    service.expect_type("joined").await;

    // Alice publishes no audio, so nothing was sent to transcribe: a segment in her name is refused.
    let now = samtal_signaling::store::now_ms();
    let forged = json!({"type": "segment", "utterance_id": "forged-1", "participant_id": alice_id, "start_ms": now - 1000,
        "end_ms": now, "text": "I resign", "language": "en", "confidence": 0.99, "final": true});
    service.send_json(&forged).await;
    let refused = service.expect_type("segment_refused").await;
    assert_eq!(
        (
            refused["utterance_id"].as_str(),
            refused["code"].as_str(),
            refused["retry"].as_bool()
        ),
        (Some("forged-1"), Some("forbidden"), Some(false)),
        "{refused}"
    );
    assert!(
        maybe(&mut alice, "caption", Duration::from_secs(1)).await.is_none(),
        "no forged caption reaches the room"
    );
    let transcript = server
        .state
        .store
        .transcript(&meeting_id)
        .await
        .unwrap()
        .expect("meeting recorded");
    assert!(
        transcript.segments.is_empty(),
        "nothing stored: {:?}",
        transcript.segments
    );
    server.shutdown().await;
}

/// Only a moderator links a meeting to a Matrix room, and every attempt is in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_moderators_choose_where_the_transcript_goes() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let ws = server.ws_url();

    let mut mallory = WsClient::connect(&ws).await;
    mallory
        .send_json(&json!({"type": "join", "room": "council", "name": "Mallory", "token": token("council", "Mallory", Role::Participant),
            "matrix_room": "!attacker:evil.example"}))
        .await;
    mallory.expect_type("joined").await;
    let e = mallory.expect_error("forbidden").await;
    assert_eq!(e["ref_type"], "join", "{e}");
    mallory.ping_pong("still-in").await;
    assert_eq!(
        server.state.rooms.matrix_room("council"),
        None,
        "a participant's link is not taken"
    );

    let mut chair = WsClient::connect(&ws).await;
    chair
        .send_json(&json!({"type": "join", "room": "council", "name": "Chair", "token": token("council", "Chair", Role::Moderator),
            "matrix_room": "!council:agency.example"}))
        .await;
    chair.expect_type("joined").await;
    chair.ping_pong("linked").await;
    assert_eq!(
        server.state.rooms.matrix_room("council").as_deref(),
        Some("!council:agency.example")
    );

    let entries = server.state.store.audit_entries(&AuditFilter::default()).await.unwrap();
    let links: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.action == "matrix.link")
        .map(|e| (e.outcome.as_str(), e.role.as_str()))
        .collect();
    assert_eq!(links, [("denied", "participant"), ("ok", "moderator")], "{entries:?}");
    assert!(
        entries
            .iter()
            .any(|e| e.detail.contains("!attacker:evil.example") && e.actor.contains("Mallory"))
    );
    server.shutdown().await;
}

/// One token cannot take every seat of a room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_fill_a_room() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config.limits.max_joins_per_identity = 3;
    config.limits.max_participants = 5;
    let server = start_server(config).await;
    let ws = server.ws_url();
    let shared = token("town-hall", "Guest", Role::Participant);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut c = WsClient::connect(&ws).await;
        c.join("town-hall", "Guest", Some(&shared)).await;
        sessions.push(c);
    }
    let mut fourth = WsClient::connect(&ws).await;
    fourth
        .send_json(&json!({"type": "join", "room": "town-hall", "name": "Guest", "token": shared}))
        .await;
    let e = fourth.next_error("too_many_sessions").await;
    assert_eq!(e["fatal"], true, "{e}");
    assert!(fourth.closed_within(WAIT).await);
    let mut moderator = WsClient::connect(&ws).await;
    moderator
        .join(
            "town-hall",
            "Chair",
            Some(&token("town-hall", "Chair", Role::Moderator)),
        )
        .await;
    sessions.pop().unwrap().close().await;
    let mut again = WsClient::connect(&ws).await;
    assert!(
        eventually(WAIT, || {
            let ws = ws.clone();
            let shared = shared.clone();
            async move {
                let mut c = WsClient::connect(&ws).await;
                c.send_json(&json!({"type": "join", "room": "town-hall", "name": "Guest", "token": shared}))
                    .await;
                matches!(c.recv(WAIT).await, Recv::Json(v) if v["type"] == "joined")
            }
        })
        .await,
        "a seat frees up when one of the token's sessions leaves"
    );
    again.ping_pong("x").await;
    server.shutdown().await;
}

/// Connections that never join are closed after `join_timeout_secs` and are capped in number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_join_are_bounded() {
    let mut config = test_config();
    config.limits.join_timeout_secs = 2;
    config.limits.max_unjoined_connections = 3;
    let server = start_server(config).await;
    let ws = server.ws_url();

    let mut idle: Vec<WsClient> = Vec::new();
    for i in 0..3 {
        let mut c = WsClient::connect(&ws).await;
        c.ping_pong(&format!("idle{i}")).await;
        idle.push(c);
    }
    let mut over = WsClient::connect(&ws).await;
    let e = over.next_error("server_busy").await;
    assert_eq!(e["fatal"], true, "{e}");
    assert!(over.closed_within(WAIT).await);

    // Joining frees the place at once; pinging does not keep an unjoined connection alive.
    idle[0].join("lobby", "Early", None).await;
    let mut late = WsClient::connect(&ws).await;
    late.ping_pong("late").await;
    let pinger = &mut idle[1];
    let started = tokio::time::Instant::now();
    let timed_out = loop {
        pinger.send_json(&json!({"type": "ping"})).await;
        match pinger.recv(Duration::from_millis(300)).await {
            Recv::Json(v) if v["type"] == "error" => break v,
            Recv::Closed => panic!("closed without saying why"),
            _ => assert!(
                started.elapsed() < Duration::from_secs(10),
                "an unjoined, pinging connection lived on"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(timed_out["code"], "join_timeout", "{timed_out}");
    assert!(pinger.closed_within(WAIT).await);
    idle[0].ping_pong("joined-survives").await;
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    let unjoined = metric(&metrics, "samtal_websocket_unjoined_connections").expect("unjoined gauge");
    assert!(unjoined <= 2.0, "{unjoined} unjoined after the timeouts");
    server.shutdown().await;
}

/// Binary frames count against the rate limit like text; a flood gets a bounded number of replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_floods_are_rate_limited() {
    let mut config = test_config();
    config.limits.max_messages_per_second = 10;
    let server = start_server(config).await;
    let mut c = WsClient::connect(&server.ws_url()).await;
    c.join("flood", "Bin", None).await;
    for _ in 0..300 {
        c.send_binary(vec![0u8; 16]).await;
    }
    let mut errors = Vec::new();
    while let Recv::Json(v) = c.recv(Duration::from_millis(500)).await {
        if v["type"] == "error" {
            errors.push(v["code"].as_str().unwrap_or_default().to_owned());
        }
    }
    let bad = errors.iter().filter(|c| *c == "bad_message").count();
    assert!(
        bad <= 20,
        "{bad} bad_message replies to 300 binary frames (burst is 20)"
    );
    assert!(errors.iter().any(|c| c == "rate_limited"), "{errors:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.ping_pong("after").await;
    server.shutdown().await;
}

/// A malformed message of any protocol type is a bad message, not an unknown type.
#[tokio::test]
async fn every_protocol_type_is_known() {
    let server = start_server(test_config()).await;
    let mut c = WsClient::connect(&server.ws_url()).await;
    // `worker` last: without a key it ends the connection.
    let types = samtal_protocol::ClientMessage::TYPES;
    for t in types
        .iter()
        .filter(|t| **t != "worker")
        .chain(types.iter().filter(|t| **t == "worker"))
    {
        c.send_json(&json!({"type": t, "unexpected": [1, 2]})).await;
        let e = match c.recv(WAIT).await {
            Recv::Json(v) => v,
            other => panic!("{t}: {other:?}"),
        };
        if ["leave", "ping", "worker", "room_settings"].contains(t) {
            continue; // no required fields: taken as they are (pong, not_joined, unauthorized, not_joined)
        }
        assert_eq!(e["code"], "bad_message", "{t}: {e}");
    }
    server.shutdown().await;
}

/// Any valid token can ask for what it may not have; a flood of such requests is written as a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_flood_the_audit_trail() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let pest = token("*", "Pest", Role::Participant);
    for _ in 0..200 {
        let (status, _) = http_get_bearer(server.addr, "/api/audit", &pest).await;
        assert_eq!(status, 403);
    }
    let admin = token("*", "Admin", Role::Administrator);
    let (status, body) = http_get_bearer(server.addr, "/api/audit?limit=500", &admin).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let entries = body["entries"]
        .as_array()
        .or_else(|| body.as_array())
        .expect("entries")
        .clone();
    let denied: Vec<&Value> = entries.iter().filter(|e| e["actor"] == "Pest").collect();
    let single = denied.iter().filter(|e| e["action"] == "audit.read").count();
    let counted: u64 = denied
        .iter()
        .filter(|e| e["action"] == "refused.aggregate")
        .map(|e| {
            serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(single <= 10, "{single} refusals written one by one");
    assert_eq!(
        single as u64 + counted,
        200,
        "every refusal is accounted for: {denied:?}"
    );
    server.shutdown().await;
}
