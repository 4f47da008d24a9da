//! Matrix delivery against a real Synapse (started by the test on loopback): transcription notices,
//! the meeting summary and the transcript files reach plain and end-to-end encrypted rooms and a
//! second user reads (and decrypts) them; a homeserver outage delays the summary but it arrives
//! exactly once; bad credentials and rooms the bot cannot post in are reported in the delivery
//! status while the meeting and its transcript stay as they are.

use samtal_e2e::matrix_reader::{Message, Reader};
use samtal_e2e::synapse::Synapse;
use samtal_e2e::ws::{WsClient, eventually};
use samtal_e2e::*;
use samtal_protocol::{Role, Segment};
use samtal_signaling::store::Delivery;
use samtal_signaling::{Config, RunningServer};
use serde_json::{Value, json};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);
const SECRET: &str = "matrix-test-secret-0123456789abcdef";
const BOT: &str = "@samtal-bot:localhost";

fn config(synapse: &Synapse, password: &str) -> Config {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config.matrix.homeserver_url = synapse.url();
    config.matrix.user = "samtal-bot".into();
    config.matrix.password = Some(password.into());
    config.matrix.summary_delay_secs = 0;
    config.matrix.retry_initial_secs = 1;
    config.matrix.retry_max_secs = 2;
    config
}

fn token(room: &str, name: &str) -> String {
    samtal_signaling::auth::mint(SECRET, room, Some(name), Role::Moderator, Duration::from_secs(3600)).unwrap()
}

const LINES: &[(&str, &str)] = &[
    (
        "Anna",
        "Welcome. Today we settle the budget for the new office network.",
    ),
    (
        "Björn",
        "The quote for the office network switches came in at forty thousand, which strains the network budget.",
    ),
    (
        "Anna",
        "The network switches are the largest part of the office budget.",
    ),
    (
        "Björn",
        "Leasing the network switches would spread the budget over three years.",
    ),
    ("Anna", "Then we decided to lease the office network switches."),
    ("Björn", "I will send the leasing contract to legal by Friday."),
];

/// A moderator joins `room` linked to `matrix_room`, turns transcription on, the worker's
/// segments are stored, and transcription is turned off (the meeting ends). Returns the meeting id.
async fn start_meeting(server: &RunningServer, room: &str, matrix_room: &str) -> (WsClient, String) {
    let mut moderator = WsClient::connect(&server.ws_url()).await;
    moderator.send_json(&json!({"type": "join", "room": room, "name": "Anna", "token": token(room, "Anna"), "matrix_room": matrix_room})).await;
    moderator.expect_type("joined").await;
    moderator
        .send_json(&json!({"type": "transcription", "enabled": true, "language": "en"}))
        .await;
    let status = moderator.expect_type("transcription_status").await;
    let meeting = status["meeting_id"].as_str().expect("meeting id").to_owned();
    (moderator, meeting)
}

async fn speak_and_end(server: &RunningServer, moderator: &mut WsClient, meeting: &str) {
    let started = server.state.store.meeting(meeting).await.unwrap().unwrap().started_at;
    for (i, (who, text)) in LINES.iter().enumerate() {
        let segment = Segment {
            utterance_id: format!("u{i}"),
            participant_id: format!("p-{who}"),
            start_ms: started + 1000 * (i as i64 + 1),
            end_ms: started + 1000 * (i as i64 + 1) + 800,
            text: (*text).into(),
            language: Some("en".into()),
            confidence: Some(0.9),
            is_final: true,
        };
        server.state.store.add_segment(meeting, &segment, who).await.unwrap();
    }
    moderator
        .send_json(&json!({"type": "transcription", "enabled": false}))
        .await;
    let status = moderator.expect_type("transcription_status").await;
    assert_eq!(status["enabled"], false, "{status}");
}

/// A meeting in "weekly" linked to `matrix_room`, held while the server's bot has the wrong
/// password: it ends, and its summary waits, having failed to log in. Returns the moderator and the
/// meeting id.
async fn meeting_the_bot_cannot_log_in_for(server: &RunningServer, matrix_room: &str) -> (WsClient, String) {
    let (mut moderator, meeting) = start_meeting(server, "weekly", matrix_room).await;
    speak_and_end(server, &mut moderator, &meeting).await;
    assert!(
        within_deadline(|| failed_with(server, meeting.clone(), "summary", "Matrix login as samtal-bot failed")).await,
        "{:#?}",
        deliveries(server, &meeting).await
    );
    (moderator, meeting)
}

/// Whether the meeting's delivery of `kind` failed at least once with an error containing `text`.
async fn failed_with(server: &RunningServer, meeting: String, kind: &str, text: &str) -> bool {
    deliveries(server, &meeting).await.iter().any(|d| {
        d.kind == kind
            && d.state == "pending"
            && d.attempts >= 1
            && d.last_error.as_deref().is_some_and(|e| e.contains(text))
    })
}

async fn deliveries(server: &RunningServer, meeting: &str) -> Vec<Delivery> {
    server.state.store.deliveries(meeting).await.unwrap()
}

async fn all_sent(server: &RunningServer, meeting: &str, expected: usize) -> bool {
    let d = deliveries(server, meeting).await;
    d.len() == expected && d.iter().all(|d| d.state == "sent")
}

/// `GET /api/meetings/{id}/delivery` with a moderator token.
async fn delivery_api(server: &RunningServer, room: &str, meeting: &str) -> Value {
    let url = format!("{}/api/meetings/{meeting}/delivery", server.http_url());
    let response = matrix_sdk::reqwest::Client::new()
        .get(&url)
        .bearer_auth(token(room, "Anna"))
        .send()
        .await
        .expect("delivery API answers");
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.text().await.unwrap()).expect("JSON")
}

fn from_bot(messages: &[Message]) -> Vec<&Message> {
    messages.iter().filter(|m| m.sender == BOT).collect()
}

/// Waits until the reader sees (decrypted) the summary and both files.
async fn read_back(reader: &Reader, room: &str) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let messages = reader.messages(room).await;
        let bot = from_bot(&messages);
        let files = bot.iter().filter(|m| m.msgtype() == "m.file").count();
        let summaries = bot.iter().filter(|m| m.body().starts_with("Meeting summary")).count();
        if files == 2 && summaries == 1 && bot.iter().all(|m| m.event_type == "m.room.message") {
            return messages;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader did not get the summary and files in {room}; it saw: {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls `check` every half second until it holds or the deadline passes.
async fn within_deadline<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(DEADLINE, || {
        let fut = check();
        async move {
            let ok = fut.await;
            if !ok {
                tokio::time::sleep(Duration::from_millis(450)).await;
            }
            ok
        }
    })
    .await
}

async fn check_room_contents(reader: &Reader, messages: &[Message]) {
    let bot = from_bot(messages);
    let notices: Vec<&str> = bot
        .iter()
        .filter(|m| m.msgtype() == "m.notice")
        .map(|m| m.body())
        .collect();
    assert_eq!(notices.len(), 3, "{notices:#?}");
    assert!(
        notices[0].starts_with("Transcription started in meeting"),
        "{notices:?}"
    );
    assert!(
        notices[1].starts_with("Transcription stopped in meeting"),
        "{notices:?}"
    );
    let summary = bot.iter().find(|m| m.body().starts_with("Meeting summary")).unwrap();
    let body = summary.body();
    assert!(body.contains("Participants: Anna, Björn"), "{body}");
    assert!(
        body.contains("Anna: Then we decided to lease the office network switches."),
        "decision missing: {body}"
    );
    assert!(
        body.contains("Björn: I will send the leasing contract to legal by Friday."),
        "action item missing: {body}"
    );
    assert!(body.contains("Duration: "), "{body}");
    assert_eq!(summary.content["format"], "org.matrix.custom.html");
    let html = summary.content["formatted_body"].as_str().unwrap();
    assert!(
        html.contains("<h4>Decisions</h4>") && html.contains("<li><b>Anna:</b> Then we decided"),
        "{html}"
    );

    let files: Vec<&&Message> = bot.iter().filter(|m| m.msgtype() == "m.file").collect();
    let vtt = files
        .iter()
        .find(|m| m.file_name().ends_with(".vtt"))
        .expect("a WebVTT file");
    let txt = files
        .iter()
        .find(|m| m.file_name().ends_with(".txt"))
        .expect("a text file");
    let vtt = String::from_utf8(reader.download(vtt).await).unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert!(
        vtt.contains("<v Björn>I will send the leasing contract to legal by Friday.</v>"),
        "{vtt}"
    );
    let txt = String::from_utf8(reader.download(txt).await).unwrap();
    assert!(
        txt.contains("Anna: Then we decided to lease the office network switches."),
        "{txt}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_and_transcripts_reach_plain_and_encrypted_rooms() {
    init_logging();
    let synapse = Synapse::start();
    synapse.register("samtal-bot", "bot-password");
    synapse.register("reader", "reader-password");
    let reader = Reader::login(&synapse.url(), "reader", "reader-password").await;
    let plain = reader.create_room("weekly", false, &[BOT]).await;
    let encrypted = reader.create_room("board", true, &[BOT]).await;

    let mut config = config(&synapse, "bot-password");
    // A webhook receiver that never answers: the log still shows what was announced.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.webhooks.endpoints = vec![samtal_signaling::webhooks::Endpoint {
        name: "ops".into(),
        url: format!("http://{unreachable}/hook"),
        secret: "matrix-test-webhook-key-0123456789abcdef".into(),
        events: vec![samtal_signaling::webhooks::EventKind::SummaryDelivered],
    }];
    let server = start_server(config).await;
    // The bot accepts its invitations by itself.
    let (r, p, e) = (&reader, &plain, &encrypted);
    assert!(
        within_deadline(|| async move { r.is_joined(p, BOT).await && r.is_joined(e, BOT).await }).await,
        "the bot did not join"
    );

    for (room, matrix_room) in [("weekly", &plain), ("board", &encrypted)] {
        let (mut moderator, meeting) = start_meeting(&server, room, matrix_room).await;
        speak_and_end(&server, &mut moderator, &meeting).await;
        assert!(
            within_deadline(|| all_sent(&server, &meeting, 3)).await,
            "{room}: {:#?}",
            deliveries(&server, &meeting).await
        );
        let messages = read_back(&reader, matrix_room).await;
        if room == "board" {
            // The homeserver saw only ciphertext.
            let raw = synapse_event_types(&synapse, matrix_room);
            assert!(
                raw.iter().all(|t| t != "m.room.message"),
                "plaintext in the encrypted room: {raw:?}"
            );
        }
        check_room_contents(&reader, &messages).await;

        let status = delivery_api(&server, room, &meeting).await;
        assert_eq!(status["matrix_room"], json!(matrix_room), "{status}");
        let kinds: Vec<(&str, &str)> = status["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["kind"].as_str().unwrap(), d["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("transcription_started", "sent"),
                ("transcription_stopped", "sent"),
                ("summary", "sent")
            ],
            "{status}"
        );
        assert_eq!(status["deliveries"][2]["summary_source"], "extractive");
        // The summary's delivery was announced by webhook.
        let announced = |server: &RunningServer, meeting: String| {
            let store = server.state.store.clone();
            async move {
                store.webhook_log(None, 100).await.unwrap().iter().any(|row| {
                    let body: Value = serde_json::from_str(&row.body).unwrap();
                    body["event"] == "summary_delivered" && body["meeting_id"] == meeting.as_str()
                })
            }
        };
        assert!(
            within_deadline(|| announced(&server, meeting.clone())).await,
            "{room}: no summary_delivered webhook"
        );
        let log = server.state.store.webhook_log(None, 100).await.unwrap();
        let body: Value = log
            .iter()
            .map(|row| serde_json::from_str::<Value>(&row.body).unwrap())
            .find(|b| b["meeting_id"] == meeting.as_str())
            .unwrap();
        assert_eq!(
            (&body["room"], &body["matrix_room"], &body["summary_source"]),
            (&json!(room), &json!(matrix_room), &json!("extractive")),
            "{body}"
        );
        assert_eq!(
            status["deliveries"][2]["event_ids"].as_object().unwrap().len(),
            3,
            "{status}"
        );
        moderator.close().await;
    }
    server.shutdown().await;
}

/// Event types the homeserver stored for the room (read from its SQLite database).
fn synapse_event_types(synapse: &Synapse, room: &str) -> Vec<String> {
    let db = synapse.dir().join("homeserver.db");
    let out = std::process::Command::new(samtal_e2e::synapse::synapse_python())
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print('\\n'.join(r[0] for r in c.execute('select type from events where room_id=? and sender=?', (sys.argv[2], sys.argv[3]))))"])
        .arg(&db)
        .arg(room)
        .arg(BOT)
        .output()
        .expect("read Synapse's database");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_made_while_synapse_is_down_arrives_once_it_is_back() {
    init_logging();
    let mut synapse = Synapse::start();
    synapse.register("samtal-bot", "bot-password");
    synapse.register("reader", "reader-password");
    let reader = Reader::login(&synapse.url(), "reader", "reader-password").await;
    let room = reader.create_room("weekly", true, &[BOT]).await;
    let config = config(&synapse, "bot-password");
    let server = start_server(config.clone()).await;
    let (r, m) = (&reader, &room);
    assert!(within_deadline(|| r.is_joined(m, BOT)).await, "the bot did not join");

    let (mut moderator, meeting) = start_meeting(&server, "weekly", &room).await;
    assert!(
        within_deadline(|| all_sent(&server, &meeting, 1)).await,
        "start notice: {:#?}",
        deliveries(&server, &meeting).await
    );

    // The homeserver goes away; the meeting ends meanwhile.
    synapse.stop();
    speak_and_end(&server, &mut moderator, &meeting).await;
    let (s, m) = (&server, &meeting);
    let retrying = || async move {
        let d = deliveries(s, m).await;
        d.iter()
            .any(|d| d.kind == "summary" && d.state == "pending" && d.attempts >= 1 && d.last_error.is_some())
    };
    assert!(
        within_deadline(retrying).await,
        "{:#?}",
        deliveries(&server, &meeting).await
    );
    let summary = deliveries(&server, &meeting)
        .await
        .into_iter()
        .find(|d| d.kind == "summary")
        .unwrap();
    // The reason is logged and kept (its wording depends on where the request failed).
    assert!(!summary.last_error.as_deref().unwrap_or("").is_empty(), "{summary:?}");

    // Samtal restarts too while the homeserver is away: the outbox is in the store.
    moderator.close().await;
    server.shutdown().await;
    let server = start_server(config).await;
    synapse.resume();
    assert!(
        within_deadline(|| all_sent(&server, &meeting, 3)).await,
        "{:#?}",
        deliveries(&server, &meeting).await
    );

    let messages = read_back(&reader, &room).await;
    check_room_contents(&reader, &messages).await;
    let bot = from_bot(&messages);
    assert_eq!(
        bot.iter().filter(|m| m.body().starts_with("Meeting summary")).count(),
        1,
        "{bot:#?}"
    );
    assert_eq!(
        bot.iter()
            .filter(|m| m.body().starts_with("Transcription stopped"))
            .count(),
        1,
        "{bot:#?}"
    );
    assert_eq!(
        bot.len(),
        5,
        "two notices, the summary and two files, each once: {bot:#?}"
    );
    server.shutdown().await;
}

/// Two servers share one PostgreSQL, each with a bot device of its own (whose transaction ids the
/// homeserver does not compare), and both find the same deliveries due at once: each message still
/// reaches the room exactly once, and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_one_store_post_each_message_once() {
    init_logging();
    let database = fresh_postgres_database("matrix_two_servers");
    let synapse = Synapse::start();
    synapse.register("samtal-bot", "bot-password");
    synapse.register("reader", "reader-password");
    let reader = Reader::login(&synapse.url(), "reader", "reader-password").await;
    let room = reader.create_room("weekly", false, &[BOT]).await;

    // A meeting while the bot cannot log in: its notices and summary wait in the shared store.
    let on_shared_store = |password: &str| {
        let mut config = config(&synapse, password);
        config.database_url = Some(database.clone());
        config
    };
    let server = start_server(on_shared_store("wrong-password")).await;
    let (moderator, meeting) = meeting_the_bot_cannot_log_in_for(&server, &room).await;
    moderator.close().await;
    server.shutdown().await;

    // Two servers on that store deliver them at the same time.
    let (one, two) = tokio::join!(
        start_server(on_shared_store("bot-password")),
        start_server(on_shared_store("bot-password"))
    );
    assert!(
        within_deadline(|| all_sent(&one, &meeting, 3)).await,
        "{:#?}",
        deliveries(&one, &meeting).await
    );
    read_back(&reader, &room).await;
    // Time for a second copy to show up, if one were coming.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages = reader.messages(&room).await;
    let bot = from_bot(&messages);
    let bodies: Vec<&str> = bot.iter().map(|m| m.body()).collect();
    assert_eq!(
        bot.len(),
        5,
        "two notices, the summary and two files, each once: {bodies:#?}"
    );
    assert!(bodies[0].starts_with("Transcription started"), "{bodies:#?}");
    assert!(bodies[1].starts_with("Transcription stopped"), "{bodies:#?}");
    assert!(bodies[2].starts_with("Meeting summary"), "{bodies:#?}");
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_unknown_and_uninvited_rooms_are_reported_and_the_meeting_is_kept() {
    init_logging();
    let synapse = Synapse::start();
    synapse.register("samtal-bot", "bot-password");
    synapse.register("reader", "reader-password");
    let reader = Reader::login(&synapse.url(), "reader", "reader-password").await;
    let room = reader.create_room("weekly", false, &[BOT]).await;
    let uninvited = reader.create_room("private", false, &[]).await;

    // Wrong password.
    let server = start_server(config(&synapse, "wrong-password")).await;
    let (moderator, meeting) = meeting_the_bot_cannot_log_in_for(&server, &room).await;
    let status = delivery_api(&server, "weekly", &meeting).await;
    assert_eq!(status["deliveries"][2]["status"], "retrying", "{status}");
    assert!(
        status["deliveries"][2]["last_error"]
            .as_str()
            .unwrap()
            .contains("login"),
        "{status}"
    );
    let transcript = server.state.store.transcript(&meeting).await.unwrap().unwrap();
    assert!(transcript.meeting.ended_at.is_some() && transcript.segments.len() == LINES.len());
    moderator.close().await;
    server.shutdown().await;

    // Right password; an unknown room and a room the bot was not invited to.
    let server = start_server(config(&synapse, "bot-password")).await;
    for (name, matrix_room) in [
        ("nowhere", "!doesnotexist:localhost".to_owned()),
        ("private", uninvited.clone()),
    ] {
        let (mut moderator, meeting) = start_meeting(&server, name, &matrix_room).await;
        speak_and_end(&server, &mut moderator, &meeting).await;
        assert!(
            within_deadline(|| failed_with(&server, meeting.clone(), "summary", "the bot is not in Matrix room")).await,
            "{name}: {:#?}",
            deliveries(&server, &meeting).await
        );
        // Every row of the room waits behind the failed one and carries its error (the worker may
        // still be stamping the rows of one round when the summary's failure is first seen).
        let all_carry_the_error = || async {
            deliveries(&server, &meeting).await.iter().all(|d| {
                d.state == "pending"
                    && d.attempts >= 1
                    && d.last_error.as_deref().unwrap_or("").contains(matrix_room.as_str())
            })
        };
        assert!(
            within_deadline(all_carry_the_error).await,
            "{name}: {:#?}",
            deliveries(&server, &meeting).await
        );
        let transcript = server.state.store.transcript(&meeting).await.unwrap().unwrap();
        assert!(transcript.meeting.ended_at.is_some() && transcript.segments.len() == LINES.len());
        moderator.close().await;
    }
    // Nothing reached the uninvited room.
    assert!(from_bot(&reader.messages(&uninvited).await).is_empty());
    server.shutdown().await;
}
