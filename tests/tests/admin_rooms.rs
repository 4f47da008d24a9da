//! The admin room API through the whole server in-process: who may list rooms, read one, remove a
//! participant and end a meeting; what the removed participants and the others receive; and what
//! the audit trail holds afterwards.

use samtal_e2e::ws::{Recv, WAIT, WsClient, eventually, http_request};
use samtal_e2e::*;
use samtal_protocol::Role;
use samtal_signaling::auth::mint;
use serde_json::Value;
use std::time::Duration;

const SECRET: &str = "admin-rooms-test-secret-0123456789abcdef";

fn token(room: &str, name: &str, role: Role) -> String {
    mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

async fn call(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    let (status, body) = http_request(addr, method, path, &headers).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Names in a room's `participants`, sorted.
fn names(room: &Value) -> Vec<String> {
    let mut names: Vec<String> = room["participants"]
        .as_array()
        .unwrap_or_else(|| panic!("no participants in {room}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Reads until a message of type `ty` arrives (panics if the connection closes first).
async fn next_of(ws: &mut WsClient, ty: &str) -> Value {
    loop {
        match ws.recv(WAIT).await {
            Recv::Json(v) if v["type"] == ty => return v,
            Recv::Json(_) => {}
            other => panic!("waiting for {ty}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn administrators_and_room_moderators_list_remove_and_end_and_every_call_is_audited() {
    init_logging();
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let addr = server.addr;
    let url = server.ws_url();
    let admin = token("*", "root", Role::Administrator);
    let moderator = token("ops", "alice", Role::Moderator);
    let participant = token("ops", "bob", Role::Participant);

    let mut alice = WsClient::connect(&url).await;
    alice.join("ops", "alice", Some(&moderator)).await;
    let mut bob = WsClient::connect(&url).await;
    let bob_id = bob.join("ops", "bob", Some(&participant)).await["participant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut carol = WsClient::connect(&url).await;
    carol
        .join(
            "board.room",
            "carol",
            Some(&token("board.room", "carol", Role::Participant)),
        )
        .await;

    // Listing every room: administrators only.
    let (status, body) = call(addr, "GET", "/api/rooms", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let rooms = body["rooms"].as_array().unwrap();
    assert_eq!(
        rooms.iter().map(|r| r["room"].as_str().unwrap()).collect::<Vec<_>>(),
        ["board.room", "ops"]
    );
    assert_eq!(names(&rooms[1]), ["alice", "bob"]);
    assert_eq!(rooms[1]["participants"][0]["hidden"], false);
    assert_eq!(call(addr, "GET", "/api/rooms", Some(&moderator)).await.0, 403);
    assert_eq!(call(addr, "GET", "/api/rooms", Some(&participant)).await.0, 403);
    assert_eq!(call(addr, "GET", "/api/rooms", None).await.0, 401);

    // One room: its moderator (not another room's), or an administrator.
    let (status, body) = call(addr, "GET", "/api/rooms/ops", Some(&moderator)).await;
    assert_eq!(
        (status, names(&body)),
        (200, vec!["alice".to_owned(), "bob".to_owned()])
    );
    assert_eq!(
        call(addr, "GET", "/api/rooms/board.room", Some(&moderator)).await.0,
        403
    );
    let (status, body) = call(addr, "GET", "/api/rooms/board.room", Some(&admin)).await;
    assert_eq!((status, names(&body)), (200, vec!["carol".to_owned()]));
    assert_eq!(call(addr, "GET", "/api/rooms/nowhere", Some(&admin)).await.0, 404);

    // A participant may not remove; the moderator removes Bob: Bob is told and disconnected, Alice
    // sees him leave as removed.
    let bob_path = format!("/api/rooms/ops/participants/{bob_id}");
    assert_eq!(call(addr, "DELETE", &bob_path, Some(&participant)).await.0, 403);
    assert_eq!(
        call(addr, "DELETE", "/api/rooms/ops/participants/nobody", Some(&moderator))
            .await
            .0,
        404
    );
    assert_eq!(call(addr, "DELETE", &bob_path, Some(&moderator)).await.0, 204);
    let removed = next_of(&mut bob, "removed").await;
    assert_eq!(removed["by"], "api:alice", "{removed}");
    assert!(
        bob.closed_within(WAIT).await,
        "Bob's websocket stays open after removal"
    );
    let left = next_of(&mut alice, "participant_left").await;
    assert_eq!(
        (&left["participant_id"], &left["reason"]),
        (&Value::from(bob_id.clone()), &Value::from("removed"))
    );

    // An administrator ends the other meeting: everyone in it is removed, the room is gone.
    let (status, body) = call(addr, "DELETE", "/api/rooms/board.room", Some(&admin)).await;
    assert_eq!((status, &body["removed"]), (200, &Value::from(1)), "{body}");
    assert_eq!(next_of(&mut carol, "removed").await["by"], "api:root");
    assert!(carol.closed_within(WAIT).await);
    assert!(
        eventually(WAIT, || async {
            let (_, body) = call(addr, "GET", "/api/rooms", Some(&admin)).await;
            body["rooms"]
                .as_array()
                .is_some_and(|r| r.len() == 1 && names(&r[0]) == ["alice"])
        })
        .await,
        "after the removals only alice is left, in ops"
    );

    // The audit trail holds each call, refusals included.
    let (status, audit) = call(addr, "GET", "/api/audit?limit=500", Some(&admin)).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap_or_else(|| panic!("{audit}"));
    let has = |action: &str, target: &str, outcome: &str, actor: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["target"] == target && e["outcome"] == outcome && e["actor"] == actor)
    };
    assert!(has("room.list", "", "ok", "root"), "{audit}");
    assert!(has("room.list", "", "denied", "alice"), "{audit}");
    assert!(has("room.read", "board.room", "denied", "alice"), "{audit}");
    assert!(has("room.remove", "ops", "denied", "bob"), "{audit}");
    assert!(has("room.remove", "ops", "ok", "alice"), "{audit}");
    assert!(has("room.end", "board.room", "ok", "root"), "{audit}");
    alice.close().await;
}
