//! The moderator's transcription switch survives a server restart: the meeting record (SQLite in
//! the data directory) is the state. Real server in-process, websocket clients.

use samtal_e2e::ws::{WsClient, eventually};
use samtal_e2e::*;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Joins `room`, turns transcription on with a language and prompt; returns the meeting id.
async fn transcribe(ws_url: &str, room: &str) -> (WsClient, String) {
    let mut moderator = WsClient::connect(ws_url).await;
    moderator.join(room, "Moa", None).await;
    moderator
        .send_json(&json!({"type": "transcription", "enabled": true, "language": "sv", "prompt": "Skatteverket"}))
        .await;
    let status = moderator.expect_type("transcription_status").await;
    assert_eq!(status["enabled"], true, "{status}");
    let meeting = status["meeting_id"].as_str().expect("meeting id").to_owned();
    (moderator, meeting)
}

fn transcription(joined: &Value) -> &Value {
    &joined["transcription"]
}

#[tokio::test]
async fn a_running_transcription_resumes_with_its_meeting_after_a_restart() {
    let config = test_config();
    let server = start_server(config.clone()).await;
    let (moderator, meeting) = transcribe(&server.ws_url(), "board").await;
    // The server goes away with the meeting running; its connections drop with it.
    server.shutdown().await;
    moderator.vanish();

    let server = start_server(config).await;
    let mut back = WsClient::connect(&server.ws_url()).await;
    let joined = back.join("board", "Moa", None).await;
    let t = transcription(&joined);
    assert_eq!(
        (t["enabled"].as_bool(), t["meeting_id"].as_str(), t["language"].as_str()),
        (Some(true), Some(meeting.as_str()), Some("sv")),
        "{joined}"
    );
    let stored = server
        .state
        .store
        .meeting(&meeting)
        .await
        .unwrap()
        .expect("meeting kept");
    assert_eq!(
        (stored.ended_at, stored.prompt.as_deref()),
        (None, Some("Skatteverket"))
    );
    // And it ends as usual: turned off, the record closes.
    back.send_json(&json!({"type": "transcription", "enabled": false}))
        .await;
    assert_eq!(back.expect_type("transcription_status").await["enabled"], false);
    assert!(
        server
            .state
            .store
            .meeting(&meeting)
            .await
            .unwrap()
            .unwrap()
            .ended_at
            .is_some()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_resumed_transcription_nobody_returns_to_ends_after_the_grace_period() {
    let mut config = test_config();
    config.transcription.resume_grace_secs = 1;
    let server = start_server(config.clone()).await;
    let (moderator, meeting) = transcribe(&server.ws_url(), "empty").await;
    // A second room whose meeting stays open too: each room resumes (and ends) on its own.
    let (other_mod, older) = transcribe(&server.ws_url(), "second").await;
    server.shutdown().await;
    moderator.vanish();
    other_mod.vanish();

    let server = start_server(config).await;
    assert!(
        server.state.transcription.meeting_id("empty").is_some(),
        "resumed at start"
    );
    let store = server.state.store.clone();
    let (m1, m2) = (meeting.clone(), older.clone());
    let ended = eventually(WAIT, || {
        let store = store.clone();
        let (m1, m2) = (m1.clone(), m2.clone());
        async move {
            let a = store.meeting(&m1).await.unwrap().unwrap().ended_at;
            let b = store.meeting(&m2).await.unwrap().unwrap().ended_at;
            a.is_some() && b.is_some()
        }
    })
    .await;
    assert!(ended, "both meetings end once the grace period passes with nobody back");
    assert_eq!(server.state.transcription.meeting_id("empty"), None);
    server.shutdown().await;
}

#[tokio::test]
async fn only_the_newest_open_meeting_of_a_room_resumes() {
    let config = test_config();
    let server = start_server(config.clone()).await;
    let store = server.state.store.clone();
    // A meeting left open by some earlier crash, older than the running one.
    let stale = store.start_meeting_at("dup", None, 1_000).await.unwrap();
    let (moderator, meeting) = transcribe(&server.ws_url(), "dup").await;
    server.shutdown().await;
    moderator.vanish();

    let server = start_server(config).await;
    assert_eq!(
        server.state.transcription.meeting_id("dup").as_deref(),
        Some(meeting.as_str())
    );
    assert!(
        server
            .state
            .store
            .meeting(&stale.id)
            .await
            .unwrap()
            .unwrap()
            .ended_at
            .is_some(),
        "the stale meeting is closed"
    );
    server.shutdown().await;
}

/// A moderator picks another language while transcription runs: the same meeting goes on in it
/// (its record keeps the new language), everyone is told, and the worker gets the job again with the
/// new language. Without a language the request changes nothing.
#[tokio::test]
async fn the_language_can_change_while_transcription_runs() {
    let server = start_server(test_config()).await;
    let mut worker = WsClient::connect(&server.ws_url()).await;
    worker
        .send_json(&json!({"type": "worker", "token": WORKER_KEY, "capacity": 2}))
        .await;
    let (mut moderator, meeting) = transcribe(&server.ws_url(), "forum").await;
    let job = worker.expect_type("job").await;
    assert_eq!(
        (job["action"].as_str(), job["language"].as_str()),
        (Some("start"), Some("sv")),
        "{job}"
    );

    moderator
        .send_json(&json!({"type": "transcription", "enabled": true, "language": "en"}))
        .await;
    let status = moderator.expect_type("transcription_status").await;
    assert_eq!(
        (
            status["enabled"].as_bool(),
            status["language"].as_str(),
            status["meeting_id"].as_str()
        ),
        (Some(true), Some("en"), Some(meeting.as_str())),
        "{status}"
    );
    let job = worker.expect_type("job").await;
    assert_eq!(
        (
            job["action"].as_str(),
            job["language"].as_str(),
            job["meeting_id"].as_str()
        ),
        (Some("start"), Some("en"), Some(meeting.as_str())),
        "{job}"
    );
    let stored = server
        .state
        .store
        .meeting(&meeting)
        .await
        .unwrap()
        .expect("meeting kept");
    assert_eq!((stored.language.as_deref(), stored.ended_at), (Some("en"), None));

    // No language: nothing changes, nobody is told.
    moderator
        .send_json(&json!({"type": "transcription", "enabled": true}))
        .await;
    moderator.send_json(&json!({"type": "ping", "nonce": "after"})).await;
    let next = moderator.expect("the next message", WAIT, |v| Some(v.clone())).await;
    assert_eq!(next["type"], "pong", "nothing before the pong: {next}");
    assert_eq!(
        server.state.transcription_status("forum").language.as_deref(),
        Some("en")
    );
    server.shutdown().await;
}
