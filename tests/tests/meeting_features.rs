//! The meeting's own features through the whole server in-process, on protocol messages: chat
//! (everyone gets it, newcomers get the recent ones, bad text and floods are refused), raised hands
//! (in the participant list, lowered by a moderator), a locked room, mute-all and ending the meeting
//! for everyone, and the lobby of a room set to knock. Only moderators may lock, mute all, end or
//! decide who comes in from the lobby.

use samtal_client::samtal_protocol::Role;
use samtal_client::signal::JoinOptions;
use samtal_client::{Participant, ParticipantOptions};
use samtal_e2e::ws::{Recv, WAIT, WsClient};
use samtal_e2e::*;
use samtal_signaling::RunningServer;
use samtal_signaling::auth::mint;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "meeting-features-secret-0123456789abcdef";

fn token(room: &str, name: &str, role: Role) -> String {
    mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

async fn server() -> RunningServer {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    start_server(config).await
}

async fn join(server: &RunningServer, room: &str, name: &str, role: Role) -> (WsClient, String) {
    let mut ws = WsClient::connect(&server.ws_url()).await;
    let joined = ws.join(room, name, Some(&token(room, name, role))).await;
    let id = joined["participant_id"].as_str().unwrap().to_owned();
    (ws, id)
}

/// Reads until a message of type `ty` arrives, skipping others.
async fn next_of(ws: &mut WsClient, ty: &str) -> Value {
    ws.expect(ty, WAIT, |v| (v["type"] == ty).then(|| v.clone())).await
}

/// Messages of type `ty` that arrive within `within`.
async fn all_of(ws: &mut WsClient, ty: &str, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut found = Vec::new();
    loop {
        match ws
            .recv(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            Recv::Json(v) if v["type"] == ty => found.push(v),
            Recv::Json(_) => {}
            Recv::Closed | Recv::TimedOut => return found,
        }
    }
}

#[tokio::test]
async fn chat_reaches_everyone_newcomers_get_the_recent_messages_and_floods_are_refused() {
    let server = server().await;
    let (mut anna, anna_id) = join(&server, "chat", "Anna", Role::Participant).await;
    let (mut bo, _) = join(&server, "chat", "Bo", Role::Participant).await;
    anna.send_json(&json!({"type": "chat", "text": "  Hej allihop!\n\n\n\n<script>x</script> \u{202e}"}))
        .await;
    for ws in [&mut anna, &mut bo] {
        let chat = next_of(ws, "chat").await;
        assert_eq!(chat["participant_id"], anna_id.as_str());
        assert_eq!(chat["name"], "Anna");
        // Kept as text (the page renders it as text), made safe, blank lines bounded.
        assert_eq!(chat["text"], "Hej allihop!\n\n\n<script>x</script>");
        assert!(chat["at"].as_i64().unwrap() > 0 && chat["id"] == "1", "{chat}");
    }

    // Empty and overlong messages: bad_message, not sent.
    bo.send_json(&json!({"type": "chat", "text": " \n\t "})).await;
    assert_eq!(bo.expect_error("bad_message").await["ref_type"], "chat");
    bo.send_json(&json!({"type": "chat", "text": "x".repeat(2001)})).await;
    assert_eq!(bo.expect_error("bad_message").await["ref_type"], "chat");

    // A burst of five, then rate_limited; the connection stays.
    for n in 0..7 {
        bo.send_json(&json!({"type": "chat", "text": format!("burst {n}")}))
            .await;
    }
    let limited = bo.expect_error("rate_limited").await;
    assert_eq!(
        (limited["ref_type"].as_str(), limited["fatal"].as_bool()),
        (Some("chat"), None)
    );
    let got: Vec<String> = all_of(&mut anna, "chat", Duration::from_millis(800))
        .await
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["burst 0", "burst 1", "burst 2", "burst 3", "burst 4"]);

    // A newcomer gets the room's messages after `joined`, oldest first.
    let mut cai = WsClient::connect(&server.ws_url()).await;
    cai.join("chat", "Cai", Some(&token("chat", "Cai", Role::Participant)))
        .await;
    let history: Vec<String> = all_of(&mut cai, "chat", Duration::from_millis(500))
        .await
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history.len(), 6, "{history:?}");
    assert_eq!(history[0], "Hej allihop!\n\n\n<script>x</script>");
    assert_eq!(history[5], "burst 4");
}

#[tokio::test]
async fn raised_hands_are_listed_in_order_and_a_moderator_lowers_them() {
    let server = server().await;
    let (mut mod_ws, mod_id) = join(&server, "hands", "Mo", Role::Moderator).await;
    let (mut ann, ann_id) = join(&server, "hands", "Ann", Role::Participant).await;
    let (mut ben, ben_id) = join(&server, "hands", "Ben", Role::Participant).await;
    ann.send_json(&json!({"type": "hand", "raised": true})).await;
    let first = next_of(&mut mod_ws, "hand_changed").await;
    ben.send_json(&json!({"type": "hand", "raised": true})).await;
    let second = next_of(&mut mod_ws, "hand_changed").await;
    assert_eq!(first["participant_id"], ann_id.as_str());
    assert_eq!(second["participant_id"], ben_id.as_str());
    assert!(first["raised_at"].as_i64().unwrap() <= second["raised_at"].as_i64().unwrap());
    // The raiser hears its own change too; raising again changes nothing.
    assert_eq!(
        next_of(&mut ann, "hand_changed").await["participant_id"],
        ann_id.as_str()
    );
    ann.send_json(&json!({"type": "hand", "raised": true})).await;
    assert!(
        all_of(&mut mod_ws, "hand_changed", Duration::from_millis(300))
            .await
            .is_empty()
    );

    // A newcomer's participant list shows the hands.
    let mut late = WsClient::connect(&server.ws_url()).await;
    let joined = late
        .join("hands", "Late", Some(&token("hands", "Late", Role::Participant)))
        .await;
    let raised: Vec<&str> = joined["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hand_raised_at"].is_i64())
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(raised.len(), 2, "{joined}");

    // A participant may not lower another's hand; a moderator may.
    ben.send_json(&json!({"type": "moderate", "action": "lower_hand", "participant": ann_id}))
        .await;
    assert_eq!(ben.expect_error("forbidden").await["ref_type"], "moderate");
    mod_ws
        .send_json(&json!({"type": "moderate", "action": "lower_hand", "participant": ann_id}))
        .await;
    let lowered = ann
        .expect("her hand lowered", WAIT, |v| {
            (v["type"] == "hand_changed" && v["participant_id"] == ann_id.as_str() && v["raised_at"].is_null())
                .then(|| v.clone())
        })
        .await;
    assert_eq!(lowered["participant_id"], ann_id.as_str());
    assert!(lowered.get("raised_at").is_none(), "{lowered}");
    assert_eq!(lowered["by"], mod_id.as_str());
    mod_ws
        .send_json(&json!({"type": "moderate", "action": "lower_hand", "participant": ann_id}))
        .await;
    assert!(
        all_of(&mut ann, "hand_changed", Duration::from_millis(300))
            .await
            .is_empty(),
        "lowering a lowered hand announces nothing"
    );
}

#[tokio::test]
async fn a_locked_room_takes_only_moderators_and_everyone_sees_the_lock() {
    let server = server().await;
    let (mut mo, mo_id) = join(&server, "locked", "Mo", Role::Moderator).await;
    let (mut pia, _) = join(&server, "locked", "Pia", Role::Participant).await;
    pia.send_json(&json!({"type": "room_settings", "locked": true})).await;
    assert_eq!(pia.expect_error("forbidden").await["ref_type"], "room_settings");
    mo.send_json(&json!({"type": "room_settings", "locked": true})).await;
    let told = next_of(&mut pia, "room_settings").await;
    assert_eq!(
        (told["locked"].as_bool(), told["by"].as_str()),
        (Some(true), Some(mo_id.as_str()))
    );

    let mut outsider = WsClient::connect(&server.ws_url()).await;
    outsider
        .send_json(&json!({"type": "join", "room": "locked", "name": "Ola", "token": token("locked", "Ola", Role::Participant)}))
        .await;
    let refused = outsider.expect_error("room_locked").await;
    assert_eq!(refused["fatal"], true, "{refused}");
    assert!(outsider.closed_within(WAIT).await);

    // A moderator still joins, and learns the room is locked right after `joined`.
    let (mut second, _) = join(&server, "locked", "Max", Role::Moderator).await;
    assert_eq!(next_of(&mut second, "room_settings").await["locked"], true);
    mo.send_json(&json!({"type": "room_settings", "locked": false})).await;
    assert_eq!(next_of(&mut pia, "room_settings").await["locked"], false);
    join(&server, "locked", "Ola", Role::Participant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_mutes_everyone_and_ends_the_meeting_for_all() {
    let server = server().await;
    let (mut mo, mo_id) = join(&server, "board", "Mo", Role::Moderator).await;
    let mut speakers = Vec::new();
    for name in ["Sam", "Tove"] {
        let options = JoinOptions::new("board", name).with_token(token("board", name, Role::Participant));
        let mut p = Participant::join(&server.ws_url(), ParticipantOptions::from_join(options).with_audio())
            .await
            .unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
        p.start_media();
        speakers.push(p);
    }
    let ids: Vec<String> = speakers.iter().map(|p| p.id().to_owned()).collect();
    // Wait until both microphones are published.
    for _ in &ids {
        next_of(&mut mo, "track_published").await;
    }
    let (mut quiet, _) = join(&server, "board", "Quiet", Role::Participant).await;
    quiet
        .send_json(&json!({"type": "room_action", "action": "mute_all"}))
        .await;
    assert_eq!(quiet.expect_error("forbidden").await["ref_type"], "room_action");

    mo.send_json(&json!({"type": "room_action", "action": "mute_all"}))
        .await;
    let mut muted: Vec<String> = Vec::new();
    for _ in &ids {
        let changed = next_of(&mut mo, "mute_changed").await;
        assert_eq!(
            (changed["source"].as_str(), changed["muted"].as_bool()),
            (Some("microphone"), Some(true))
        );
        muted.push(changed["participant_id"].as_str().unwrap().to_owned());
    }
    muted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(muted, expected);

    mo.send_json(&json!({"type": "room_action", "action": "end"})).await;
    let removed = next_of(&mut quiet, "removed").await;
    assert_eq!(removed["by"], mo_id.as_str());
    assert!(quiet.closed_within(WAIT).await);
    assert!(mo.closed_within(WAIT).await);
    assert!(
        samtal_e2e::ws::eventually(WAIT, || async { server.state.rooms.room_count() == 0 }).await,
        "the room outlived its end"
    );
}

/// Connects and sends `join` to a knocking room; returns the id `lobby_waiting` promises.
async fn knock(server: &RunningServer, room: &str, name: &str) -> (WsClient, String) {
    let mut ws = WsClient::connect(&server.ws_url()).await;
    let token = token(room, name, Role::Participant);
    ws.send_json(&json!({"type": "join", "room": room, "name": name, "token": token}))
        .await;
    let waiting = ws.expect_type("lobby_waiting").await;
    assert_eq!(waiting["room"], room, "{waiting}");
    (ws, waiting["participant_id"].as_str().unwrap().to_owned())
}

/// The names in a `lobby` message, in its order.
fn waiting_names(lobby: &Value) -> Vec<String> {
    let names = lobby["waiting"].as_array().unwrap().iter();
    names.map(|w| w["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_knocking_room_holds_joiners_until_a_moderator_lets_them_in_or_turns_them_away() {
    let server = server().await;
    let (mut mo, _) = join(&server, "knock", "Mo", Role::Moderator).await;
    let (mut pia, _) = join(&server, "knock", "Pia", Role::Participant).await;
    pia.send_json(&json!({"type": "room_settings", "lobby": true})).await;
    assert_eq!(pia.expect_error("forbidden").await["ref_type"], "room_settings");
    mo.send_json(&json!({"type": "room_settings", "lobby": true})).await;
    let told = next_of(&mut pia, "room_settings").await;
    assert_eq!(
        (told["lobby"].as_bool(), told["locked"].as_bool()),
        (Some(true), Some(false))
    );

    // Two joiners wait; the moderator sees them in order of arrival, and they can do nothing else.
    let (mut ada, ada_id) = knock(&server, "knock", "Ada").await;
    assert_eq!(waiting_names(&next_of(&mut mo, "lobby").await), ["Ada"]);
    let (mut bert, bert_id) = knock(&server, "knock", "Bert").await;
    assert_eq!(waiting_names(&next_of(&mut mo, "lobby").await), ["Ada", "Bert"]);
    ada.send_json(&json!({"type": "chat", "text": "let me in"})).await;
    assert_eq!(ada.expect_error("not_joined").await["ref_type"], "chat");
    ada.ping_pong("still-here").await;

    // Only a moderator decides, and only about someone who waits.
    pia.send_json(&json!({"type": "lobby_decision", "participant": ada_id, "admit": true}))
        .await;
    assert_eq!(pia.expect_error("forbidden").await["ref_type"], "lobby_decision");
    mo.send_json(&json!({"type": "lobby_decision", "participant": "p-nobody", "admit": true}))
        .await;
    mo.expect_error("unknown_participant").await;

    // Admitted: `joined` with the promised id, and the room sees the newcomer.
    mo.send_json(&json!({"type": "lobby_decision", "participant": ada_id, "admit": true}))
        .await;
    let joined = ada.expect_type("joined").await;
    assert_eq!(joined["participant_id"], ada_id.as_str(), "{joined}");
    assert_eq!(joined["role"], "participant");
    assert_eq!(
        next_of(&mut pia, "participant_joined").await["participant"]["id"],
        ada_id.as_str()
    );
    assert_eq!(waiting_names(&next_of(&mut mo, "lobby").await), ["Bert"]);

    // Turned away: a fatal error naming the moderator, then the connection closes.
    mo.send_json(&json!({"type": "lobby_decision", "participant": bert_id, "admit": false}))
        .await;
    let rejected = bert.expect_error("lobby_rejected").await;
    assert_eq!(rejected["fatal"], true, "{rejected}");
    assert!(rejected["message"].as_str().unwrap().contains("Mo"), "{rejected}");
    assert!(bert.closed_within(WAIT).await);
    assert!(waiting_names(&next_of(&mut mo, "lobby").await).is_empty());

    // A joiner who gives up leaves the list; nobody but moderators ever hears of the lobby.
    let (cleo, _) = knock(&server, "knock", "Cleo").await;
    assert_eq!(waiting_names(&next_of(&mut mo, "lobby").await), ["Cleo"]);
    cleo.close().await;
    assert!(waiting_names(&next_of(&mut mo, "lobby").await).is_empty());

    // A moderator who joins later gets the list; turning the lobby off lets everyone in.
    let (mut dan, dan_id) = knock(&server, "knock", "Dan").await;
    let (mut max, _) = join(&server, "knock", "Max", Role::Moderator).await;
    assert_eq!(waiting_names(&next_of(&mut max, "lobby").await), ["Dan"]);
    max.send_json(&json!({"type": "room_settings", "lobby": false})).await;
    assert_eq!(dan.expect_type("joined").await["participant_id"], dan_id.as_str());
    assert!(
        all_of(&mut pia, "lobby", Duration::from_millis(300)).await.is_empty(),
        "a participant was told who waits"
    );
}

#[tokio::test]
async fn the_lobby_is_bounded_in_size_and_time_and_ends_with_the_meeting() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config.limits.max_lobby_waiting = 1;
    config.limits.lobby_wait_secs = 2;
    let server = start_server(config).await;
    let (mut mo, _) = join(&server, "bounded", "Mo", Role::Moderator).await;
    mo.send_json(&json!({"type": "room_settings", "lobby": true})).await;
    next_of(&mut mo, "room_settings").await;

    let (mut ada, _) = knock(&server, "bounded", "Ada").await;
    let mut bert = WsClient::connect(&server.ws_url()).await;
    let bert_token = token("bounded", "Bert", Role::Participant);
    bert.send_json(&json!({"type": "join", "room": "bounded", "name": "Bert", "token": bert_token}))
        .await;
    assert_eq!(bert.expect_error("lobby_timeout").await["fatal"], true);
    // Nobody decides: the wait ends after `lobby_wait_secs`, and the moderator's list empties.
    let timed_out = ada.expect_error("lobby_timeout").await;
    assert_eq!(timed_out["fatal"], true, "{timed_out}");
    assert!(ada.closed_within(WAIT).await);
    let lists: Vec<Vec<String>> = all_of(&mut mo, "lobby", Duration::from_millis(500))
        .await
        .iter()
        .map(waiting_names)
        .collect();
    assert_eq!(lists.last().map(Vec::len), Some(0), "{lists:?}");

    // A locked room takes no knocks, but whoever waited before may still be let in.
    let (mut cleo, cleo_id) = knock(&server, "bounded", "Cleo").await;
    mo.send_json(&json!({"type": "room_settings", "lobby": true, "locked": true}))
        .await;
    next_of(&mut mo, "room_settings").await;
    let mut eve = WsClient::connect(&server.ws_url()).await;
    let eve_token = token("bounded", "Eve", Role::Participant);
    eve.send_json(&json!({"type": "join", "room": "bounded", "name": "Eve", "token": eve_token}))
        .await;
    eve.expect_error("room_locked").await;
    mo.send_json(&json!({"type": "lobby_decision", "participant": cleo_id, "admit": true}))
        .await;
    assert_eq!(cleo.expect_type("joined").await["participant_id"], cleo_id.as_str());
    // The meeting's end ends a wait.
    mo.send_json(&json!({"type": "room_settings", "lobby": true})).await;
    next_of(&mut mo, "room_settings").await;
    let (mut dan, _) = knock(&server, "bounded", "Dan").await;
    mo.send_json(&json!({"type": "room_action", "action": "end"})).await;
    let ended = dan.expect_error("lobby_rejected").await;
    assert!(ended["message"].as_str().unwrap().contains("ended"), "{ended}");
}

/// The moderator's room controls on the real page, three Chromium participants
/// (tests/browser/lobby.mjs): the lobby turned on from the participant list, one joiner let in with
/// a click and another turned away (told so in Swedish), then lock, mute everyone and end for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_moderators_run_the_lobby_lock_mute_all_and_end_for_all() {
    let server = server().await;
    let ttl = Duration::from_secs(3600);
    let moderator = mint(SECRET, "*", None, Role::Moderator, ttl).unwrap();
    let participant = mint(SECRET, "*", None, Role::Participant, ttl).unwrap();
    let url = server.http_url();
    let mut args = vec![
        "--url",
        &url,
        "--room",
        "lobby",
        "--moderator",
        &moderator,
        "--participant",
        &participant,
        "--timeout",
        "60",
    ];
    // Where to keep screenshots of the waiting page and the moderator's lobby list, when wanted.
    let screenshots = std::env::var("SAMTAL_LOBBY_SCREENSHOTS").ok();
    if let Some(dir) = screenshots.as_deref() {
        args.extend(["--screenshots", dir]);
    }
    let summary = run_browser_script("lobby.mjs", &args, Duration::from_secs(240)).await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}

/// `GET path` with `token` as bearer: status and JSON body (`Null` when the body is not JSON).
async fn api_get(server: &RunningServer, path: &str, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let (status, body) = samtal_e2e::ws::http_get_with(server.addr, path, &[("Authorization", &bearer)]).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn chat_written_while_a_meeting_is_transcribed_is_kept_with_it_for_the_right_readers() {
    let server = server().await;
    let (mut mo, _) = join(&server, "minutes", "Mo", Role::Moderator).await;
    let (mut pia, _) = join(&server, "minutes", "Pia", Role::Participant).await;
    let (mut ola, _) = join(&server, "minutes", "Ola", Role::Participant).await;
    pia.send_json(&json!({"type": "chat", "text": "before transcription"}))
        .await;
    next_of(&mut mo, "chat").await;

    mo.send_json(&json!({"type": "transcription", "enabled": true, "language": "sv"}))
        .await;
    let status = next_of(&mut pia, "transcription_status").await;
    assert_eq!(
        (status["enabled"].as_bool(), status["chat_kept"].as_bool()),
        (Some(true), Some(true)),
        "{status}"
    );
    let meeting = status["meeting_id"].as_str().unwrap().to_owned();
    ola.send_json(&json!({"type": "transcription_consent", "opt_out": true}))
        .await;
    next_of(&mut mo, "transcription_consent").await;
    for (who, text) in [
        ("Pia", "Jag delar <b>skärmen</b> nu"),
        ("Ola", "not kept: opted out"),
        ("Mo", "Tack, Pia"),
    ] {
        let ws = match who {
            "Pia" => &mut pia,
            "Ola" => &mut ola,
            _ => &mut mo,
        };
        ws.send_json(&json!({"type": "chat", "text": text})).await;
        // Each arrives in order before the next is sent.
        assert_eq!(next_of(&mut mo, "chat").await["text"], text);
    }
    mo.send_json(&json!({"type": "transcription", "enabled": false})).await;
    next_of(&mut pia, "transcription_status").await;
    pia.send_json(&json!({"type": "chat", "text": "after transcription"}))
        .await;
    next_of(&mut mo, "chat").await;

    let ttl = Duration::from_secs(3600);
    let officer = mint(SECRET, "*", Some("Olga"), Role::Compliance, ttl).unwrap();
    let path = format!("/api/meetings/{meeting}/chat");
    let (status, body) = api_get(&server, &path, &officer).await;
    assert_eq!(status, 200, "{body}");
    let kept: Vec<(&str, &str)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kept,
        [("Pia", "Jag delar <b>skärmen</b> nu"), ("Mo", "Tack, Pia")],
        "{body}"
    );
    // Its own room's moderator may read it; a participant, or a moderator of another room, may not.
    let (status, _) = api_get(&server, &path, &token("minutes", "Mo", Role::Moderator)).await;
    assert_eq!(status, 200);
    let (status, _) = api_get(&server, &path, &token("minutes", "Pia", Role::Participant)).await;
    assert_eq!(status, 403);
    let (status, _) = api_get(&server, &path, &token("elsewhere", "Max", Role::Moderator)).await;
    assert_eq!(status, 403);
    let (status, _) = api_get(&server, "/api/meetings/no-such-meeting/chat", &officer).await;
    assert_eq!(status, 404);
    // Every read is in the audit trail.
    let admin = mint(SECRET, "*", Some("Ada"), Role::Administrator, ttl).unwrap();
    let (_, audit) = api_get(&server, "/api/audit?action=chat.read&limit=50", &admin).await;
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "ok").count(), 2, "{audit}");
    assert!(outcomes.contains(&"denied"), "{audit}");
    server.shutdown().await;

    // A server that keeps no chat says so and stores none.
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config.transcription.keep_chat = false;
    let server = start_server(config).await;
    let (mut mo, _) = join(&server, "minutes", "Mo", Role::Moderator).await;
    mo.send_json(&json!({"type": "transcription", "enabled": true})).await;
    let status = next_of(&mut mo, "transcription_status").await;
    assert_eq!(status.get("chat_kept"), None, "{status}");
    mo.send_json(&json!({"type": "chat", "text": "not kept"})).await;
    next_of(&mut mo, "chat").await;
    let meeting = status["meeting_id"].as_str().unwrap();
    let (_, body) = api_get(&server, &format!("/api/meetings/{meeting}/chat"), &officer).await;
    assert_eq!(body["messages"], json!([]), "{body}");
    server.shutdown().await;
}
