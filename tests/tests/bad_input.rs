//! A misbehaving or hostile client against the whole server in-process, over a raw websocket:
//! malformed and out-of-order messages, floods, bad tokens, clients that vanish mid-negotiation,
//! and many short sessions. Each bad message must get the documented `error` code and leave the
//! connection usable (unless the error is fatal), and nothing may be left behind afterwards.

use samtal_client::samtal_protocol::Role;
use samtal_client::{Participant, ParticipantOptions};
use samtal_e2e::sdp::opus_offer;
use samtal_e2e::ws::{Recv, WAIT, WsClient, eventually, http_get, metric};
use samtal_e2e::*;
use samtal_sfu::Stats;
use samtal_signaling::RunningServer;
use samtal_signaling::auth::mint;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "e2e-test-secret-0123456789abcdef-0123";

/// The tests of this file run one at a time: the leak test counts the process's threads, which
/// other servers in the same process would change.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends `text` and expects exactly the error `code` next, then a pong: the connection survived.
async fn bad(ws: &mut WsClient, text: &str, code: &str, nonce: &str) -> Value {
    ws.send_text(text).await;
    let error = ws.next_error(code).await;
    assert!(error.get("fatal").is_none(), "{code} must not be fatal: {error}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {error}"
    );
    ws.ping_pong(nonce).await;
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_out_of_order_messages_get_errors_and_the_connection_survives() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // About a hundred messages in quick succession: keep the rate limit out of this test.
    let mut config = test_config();
    config.limits.max_messages_per_second = 10_000;
    let server = start_server(config).await;
    let mut ws = WsClient::connect(&server.ws_url()).await;

    // Before join: only join and ping are allowed.
    ws.ping_pong("before-join").await;
    for (i, text) in [
        r#"{"type":"leave"}"#,
        r#"{"type":"mute","source":"microphone","muted":true}"#,
        r#"{"type":"offer","pc":"publish","sdp":"v=0"}"#,
        r#"{"type":"answer","pc":"subscribe","sdp":"v=0"}"#,
        r#"{"type":"moderate","action":"remove","participant":"p1"}"#,
    ]
    .iter()
    .enumerate()
    {
        let e = bad(&mut ws, text, "not_joined", &format!("nj{i}")).await;
        let ty: Value = serde_json::from_str::<Value>(text).unwrap()["type"].clone();
        assert_eq!(e["ref_type"], ty, "ref_type names the refused message: {e}");
    }

    // Not JSON, not an object, no type, unknown type, ill-typed fields: before and after join.
    let malformed: &[(&str, &str)] = &[
        ("{nope", "bad_message"),
        ("", "bad_message"),
        ("[1,2,3]", "bad_message"),
        (r#"[{"type":"ping"}]"#, "bad_message"),
        (r#""ping""#, "bad_message"),
        ("42", "bad_message"),
        ("null", "bad_message"),
        (r#"{"room":"x","name":"y"}"#, "bad_message"),
        (r#"{"type":42}"#, "bad_message"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"JOIN","room":"x","name":"y"}"#, "unknown_type"),
        (r#"{"type":"join","room":5,"name":"y"}"#, "bad_message"),
        (r#"{"type":"join","room":"x"}"#, "bad_message"),
        (r#"{"type":"ping","nonce":5}"#, "bad_message"),
    ];
    for (i, (text, code)) in malformed.iter().enumerate() {
        bad(&mut ws, text, code, &format!("pre{i}")).await;
    }
    // A binary frame.
    ws.send_binary(vec![0x7b, 0x7d, 0, 1, 2, 255]).await;
    ws.next_error("bad_message").await;
    ws.ping_pong("after-binary").await;
    // A text frame above the 64 KiB limit (a ping padded with a long nonce).
    let huge = json!({"type": "ping", "nonce": "x".repeat(70 * 1024)}).to_string();
    bad(&mut ws, &huge, "too_large", "after-huge").await;
    // A join that is refused without being fatal: empty name, unsupported protocol version.
    bad(
        &mut ws,
        r#"{"type":"join","room":"bad","name":"   "}"#,
        "bad_message",
        "empty-name",
    )
    .await;
    bad(
        &mut ws,
        r#"{"type":"join","room":"bad","name":"Eve","protocol":2}"#,
        "bad_message",
        "protocol-2",
    )
    .await;

    let joined = ws.join("bad", "Eve", None).await;
    assert_eq!(joined["room"], "bad");
    let me = joined["participant_id"].as_str().unwrap().to_owned();
    for (i, (text, code)) in malformed.iter().enumerate() {
        bad(&mut ws, text, code, &format!("post{i}")).await;
    }
    let after_join: &[(&str, &str)] = &[
        (r#"{"type":"join","room":"bad","name":"Eve"}"#, "already_joined"),
        (r#"{"type":"join","room":"other","name":"Eve"}"#, "already_joined"),
        // Out of order: no subscribe offer was made, so there is nothing to answer.
        (
            r#"{"type":"answer","pc":"subscribe","sdp":"v=0\r\n"}"#,
            "negotiation_failed",
        ),
        // Wrong direction: clients answer on subscribe and offer on publish only.
        (r#"{"type":"answer","pc":"publish","sdp":"v=0\r\n"}"#, "bad_message"),
        (r#"{"type":"offer","pc":"subscribe","sdp":"v=0\r\n"}"#, "bad_message"),
        (
            r#"{"type":"offer","pc":"publish","sdp":"this is not SDP"}"#,
            "negotiation_failed",
        ),
        (r#"{"type":"offer","pc":"sideways","sdp":"v=0\r\n"}"#, "bad_message"),
        (r#"{"type":"mute","source":"nose","muted":true}"#, "bad_message"),
        (r#"{"type":"mute","source":"microphone","muted":"yes"}"#, "bad_message"),
        (
            r#"{"type":"moderate","action":"mute","participant":"nobody"}"#,
            "forbidden",
        ),
        (
            r#"{"type":"moderate","action":"explode","participant":"nobody"}"#,
            "bad_message",
        ),
    ];
    for (i, (text, code)) in after_join.iter().enumerate() {
        bad(&mut ws, text, code, &format!("j{i}")).await;
    }
    // Still in the room: the registry knows us and leave works.
    assert!(server.state.rooms.contains("bad", &me));
    ws.send_json(&json!({"type": "leave"})).await;
    assert!(
        ws.closed_within(WAIT).await,
        "the server did not close the websocket after leave"
    );
    assert!(eventually(WAIT, || std::future::ready(server.state.rooms.participant_count() == 0)).await);

    // A room name the server refuses is fatal.
    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.send_json(&json!({"type": "join", "room": "../etc", "name": "Eve"}))
        .await;
    let e = ws.next_error("bad_room").await;
    assert_eq!(e["fatal"], true, "{e}");
    assert!(ws.closed_within(WAIT).await, "bad_room must close the connection");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_rate_limited_and_does_not_starve_the_room() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = start_server(test_config()).await;
    let mut flooder = WsClient::connect(&server.ws_url()).await;
    let mut other = WsClient::connect(&server.ws_url()).await;
    flooder.join("flood", "Flooder", None).await;
    other.join("flood", "Other", None).await;
    flooder.expect_type("participant_joined").await;

    let flood = tokio::spawn(async move {
        flooder
            .send_many((0..1000).map(|i| json!({"type": "ping", "nonce": format!("f{i}")}).to_string()))
            .await;
        flooder
    });
    // Meanwhile the other participant is answered.
    for i in 0..5 {
        other.ping_pong(&format!("o{i}")).await;
    }
    let mut flooder = flood.await.unwrap();

    // The flooder gets some pongs, at least one rate_limited error, and then no more answers
    // than it is allowed; once its budget refills, a ping is answered again.
    let (mut pongs, mut limited) = (0, 0);
    let mut answered_after = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut probe = 0;
    while !answered_after && tokio::time::Instant::now() < deadline {
        probe += 1;
        flooder
            .send_json(&json!({"type": "ping", "nonce": format!("after{probe}")}))
            .await;
        loop {
            match flooder.recv(Duration::from_millis(200)).await {
                Recv::Json(v) if v["type"] == "pong" && v["nonce"].as_str().is_some_and(|n| n.starts_with('f')) => {
                    pongs += 1
                }
                Recv::Json(v) if v["type"] == "pong" => {
                    answered_after = true;
                    break;
                }
                Recv::Json(v) if v["type"] == "error" => {
                    assert_eq!(v["code"], "rate_limited", "{v}");
                    assert!(v.get("fatal").is_none(), "{v}");
                    limited += 1;
                }
                Recv::Json(v) => panic!("unexpected message to the flooder: {v}"),
                Recv::Closed => panic!("the server closed the flooder's connection"),
                Recv::TimedOut => break,
            }
        }
    }
    println!("flooder: {pongs} pongs to 1000 pings, {limited} rate_limited errors");
    assert!(limited >= 1, "no rate_limited error after 1000 pings");
    assert!(pongs > 0 && pongs < 1000, "{pongs} of 1000 flood pings answered");
    assert!(answered_after, "the flooder's connection did not recover");

    // The room still works for both: a newcomer is announced to the other participant.
    other.ping_pong("after-flood").await;
    let mut newcomer = WsClient::connect(&server.ws_url()).await;
    let joined = newcomer.join("flood", "Newcomer", None).await;
    let id = joined["participant_id"].clone();
    other
        .expect("participant_joined for the newcomer", WAIT, |v| {
            (v["type"] == "participant_joined" && v["participant"]["id"] == id).then_some(())
        })
        .await;
    flooder
        .expect("participant_joined for the newcomer", WAIT, |v| {
            (v["type"] == "participant_joined" && v["participant"]["id"] == id).then_some(())
        })
        .await;
    server.shutdown().await;
}

// ---- tokens ---------------------------------------------------------------------------------

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// SHA-256 (FIPS 180-4), for signing test tokens the server's helper cannot make (expired ones).
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let [a, b, c, d, e, f, g, hh] = v;
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            v = [
                t1.wrapping_add(s0.wrapping_add(maj)),
                a,
                b,
                c,
                d.wrapping_add(t1),
                e,
                f,
                g,
            ];
        }
        for (x, y) in h.iter_mut().zip(v) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).chain(message.iter().copied()).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).chain(sha256(&inner)).collect();
    sha256(&outer)
}

/// An HS256 token with any claims.
fn sign(secret: &str, claims: &Value) -> String {
    let header = base64url(br#"{"typ":"JWT","alg":"HS256"}"#);
    let payload = base64url(claims.to_string().as_bytes());
    let signature = base64url(&hmac_sha256(
        secret.as_bytes(),
        format!("{header}.{payload}").as_bytes(),
    ));
    format!("{header}.{payload}.{signature}")
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn token_signer_matches_known_answers() {
    // FIPS 180-2 and RFC 4231 test case 2.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(base64url(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw");
    assert_eq!(base64url(b"any carnal pleasu"), "YW55IGNhcm5hbCBwbGVhc3U");
}

fn secret_config() -> samtal_signaling::Config {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    config
}

/// A join with `token` must be refused with a fatal `unauthorized` and a closed connection.
async fn refused(server: &RunningServer, room: &str, token: Option<&str>, why: &str) {
    let mut ws = WsClient::connect(&server.ws_url()).await;
    let mut join = json!({"type": "join", "room": room, "name": "Mallory"});
    if let Some(token) = token {
        join["token"] = json!(token);
    }
    ws.send_json(&join).await;
    match ws.recv(WAIT).await {
        Recv::Json(e) => {
            assert_eq!(e["type"], "error", "{why}: expected unauthorized, got {e}");
            assert_eq!(e["code"], "unauthorized", "{why}: {e}");
            assert_eq!(e["fatal"], true, "{why}: {e}");
            assert_eq!(e["ref_type"], "join", "{why}: {e}");
        }
        other => panic!("{why}: expected unauthorized, got {other:?}"),
    }
    assert!(
        ws.closed_within(WAIT).await,
        "{why}: the connection stayed open after a fatal error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_give_the_role() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = start_server(secret_config()).await;
    let room = "secure";
    let hour = Duration::from_secs(3600);
    refused(&server, room, None, "no token").await;
    refused(&server, room, Some(""), "empty token").await;
    refused(&server, room, Some("garbage"), "garbage token").await;
    refused(&server, room, Some("not.a.jwt"), "three garbage parts").await;
    let wrong_secret = mint("some-other-secret", room, Some("Mallory"), Role::Moderator, hour).unwrap();
    refused(&server, room, Some(&wrong_secret), "token signed with another secret").await;
    // Same claims, signature of another token.
    let good = mint(SECRET, room, Some("Mallory"), Role::Participant, hour).unwrap();
    let (head, _) = good.rsplit_once('.').unwrap();
    let (_, other_sig) = wrong_secret.rsplit_once('.').unwrap();
    refused(&server, room, Some(&format!("{head}.{other_sig}")), "swapped signature").await;
    // Claims changed after signing (participant -> moderator).
    let forged_claims = base64url(
        json!({"room": room, "name": "Mallory", "role": "moderator", "exp": unix_now() + 3600})
            .to_string()
            .as_bytes(),
    );
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &forged_claims;
    refused(&server, room, Some(&parts.join(".")), "claims edited after signing").await;
    let expired = sign(
        SECRET,
        &json!({"room": room, "name": "Mallory", "role": "participant", "exp": unix_now() - 3600}),
    );
    refused(&server, room, Some(&expired), "expired token").await;
    let elsewhere = mint(SECRET, "another-room", Some("Mallory"), Role::Participant, hour).unwrap();
    refused(&server, room, Some(&elsewhere), "token for another room").await;
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(
            json!({"room": room, "role": "moderator", "exp": unix_now() + 3600})
                .to_string()
                .as_bytes()
        )
    );
    refused(&server, room, Some(&unsigned), "alg none").await;
    assert_eq!(
        server.state.rooms.participant_count(),
        0,
        "a refused join left a participant behind"
    );

    // The same hand signer makes a token the server accepts when it has not expired, so the
    // expired token above was refused for its expiry, not for a bad signature.
    let mut ws = WsClient::connect(&server.ws_url()).await;
    let fresh = sign(
        SECRET,
        &json!({"room": room, "name": "Fresh", "role": "participant", "exp": unix_now() + 3600}),
    );
    let joined = ws.join(room, "ignored", Some(&fresh)).await;
    assert_eq!(joined["role"], "participant");

    // A moderator token gives the moderator role and its name; others see both.
    let moderator = mint(SECRET, room, Some("Mona"), Role::Moderator, hour).unwrap();
    let mut mona = WsClient::connect(&server.ws_url()).await;
    let joined = mona.join(room, "display name from the client", Some(&moderator)).await;
    assert_eq!(joined["role"], "moderator", "{joined}");
    let mona_id = joined["participant_id"].clone();
    let announced = ws.expect_type("participant_joined").await;
    assert_eq!(announced["participant"]["id"], mona_id);
    assert_eq!(announced["participant"]["role"], "moderator", "{announced}");
    assert_eq!(
        announced["participant"]["name"], "Mona",
        "the token's name wins: {announced}"
    );

    // A wildcard-room token joins any room; a participant token gives the participant role.
    let any_room = mint(SECRET, "*", None, Role::Participant, hour).unwrap();
    let mut third = WsClient::connect(&server.ws_url()).await;
    let joined = third.join(room, "Walter", Some(&any_room)).await;
    assert_eq!(joined["role"], "participant");
    let names: Vec<&str> = joined["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Mona") && names.contains(&"Fresh"), "{joined}");
    server.shutdown().await;
}

// ---- cleanup --------------------------------------------------------------------------------

struct Counts {
    participants: u64,
    peer_connections: u64,
    tracks: u64,
    rooms: u64,
    registry: usize,
}

fn counts(server: &RunningServer) -> Counts {
    let s = server.state.media.stats();
    Counts {
        participants: Stats::get(&s.participants),
        peer_connections: Stats::get(&s.peer_connections),
        tracks: Stats::get(&s.published_tracks),
        rooms: Stats::get(&s.rooms),
        registry: server.state.rooms.participant_count(),
    }
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "participants {}, peer connections {}, tracks {}, rooms {}, registry participants {}",
            self.participants, self.peer_connections, self.tracks, self.rooms, self.registry
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_negotiation_is_cleaned_up() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = start_server(test_config()).await;
    let room = "vanish";
    // A real publisher, so that everyone who joins also gets a subscribe connection.
    let mut publisher = Participant::join(
        &server.ws_url(),
        ParticipantOptions::new(room, "Publisher").with_audio().with_video(),
    )
    .await
    .expect("publisher joins");
    publisher.start_media();
    let mut observer = WsClient::connect(&server.ws_url()).await;
    observer.join(room, "Observer", None).await;
    assert!(
        eventually(WAIT, || std::future::ready(counts(&server).tracks == 2)).await,
        "the publisher's tracks were not published: {:?}",
        counts(&server)
    );
    let before = counts(&server);
    assert_eq!((before.participants, before.registry), (2, 2), "{before:?}");

    for wait_for_answer in [true, false] {
        let mut v = WsClient::connect(&server.ws_url()).await;
        let joined = v.join(room, "Vanishing", None).await;
        let id = joined["participant_id"].as_str().unwrap().to_owned();
        // The server offers the publisher's tracks right away; the client never answers.
        v.expect("a subscribe offer", WAIT, |m| {
            (m["type"] == "offer" && m["pc"] == "subscribe").then_some(())
        })
        .await;
        v.send_json(&json!({"type": "offer", "pc": "publish", "sdp": opus_offer("vanishing-mic", &id), "tracks": [{"track_id": "vanishing-mic", "source": "microphone"}]})).await;
        if wait_for_answer {
            let answer = v
                .expect("the publish answer", WAIT, |m| match m["type"].as_str() {
                    Some("answer") => Some(m.clone()),
                    Some("error") => panic!("the hand-made offer was refused: {m}"),
                    _ => None,
                })
                .await;
            assert_eq!(answer["pc"], "publish");
            let during = counts(&server);
            assert_eq!(
                during.peer_connections,
                before.peer_connections + 2,
                "publish and subscribe connections: {during:?}"
            );
        }
        v.vanish();
        let reason = observer
            .expect("participant_left for the vanished client", WAIT, |m| {
                (m["type"] == "participant_left" && m["participant_id"] == id.as_str()).then(|| m["reason"].clone())
            })
            .await;
        assert_eq!(reason, "disconnected");
        let ok = eventually(WAIT, || {
            let now = counts(&server);
            std::future::ready(
                (now.participants, now.peer_connections, now.tracks, now.registry)
                    == (
                        before.participants,
                        before.peer_connections,
                        before.tracks,
                        before.registry,
                    ),
            )
        })
        .await;
        assert!(
            ok,
            "after the client vanished: {:?}, before it joined: {before:?}",
            counts(&server)
        );
    }

    publisher.close().await;
    observer.send_json(&json!({"type": "leave"})).await;
    assert!(observer.closed_within(WAIT).await);
    let ok = eventually(WAIT, || {
        let c = counts(&server);
        std::future::ready(
            c.participants == 0
                && c.peer_connections == 0
                && c.tracks == 0
                && c.rooms == 0
                && c.registry == 0
                && server.state.rooms.room_count() == 0,
        )
    })
    .await;
    assert!(ok, "not everything was cleaned up: {:?}", counts(&server));
    server.shutdown().await;
}

fn live_threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads line")
}

async fn metrics(server: &RunningServer) -> String {
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_short_sessions_leave_nothing_behind() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = start_server(test_config()).await;
    let room = "churn";
    let one_cycle = |i: usize| {
        let url = server.ws_url();
        async move {
            let mut ws = WsClient::connect(&url).await;
            ws.join(room, &format!("guest{i}"), None).await;
            match i % 3 {
                // Leave, then the server closes.
                0 => {
                    ws.send_json(&json!({"type": "leave"})).await;
                    assert!(ws.closed_within(WAIT).await, "guest{i}: no close after leave");
                }
                // Close handshake without leave.
                1 => ws.close().await,
                // Just drop the TCP connection.
                _ => ws.vanish(),
            }
        }
    };
    // Warm up whatever is made once (runtime threads, the blocking pool), then take the baseline.
    for i in 0..6 {
        one_cycle(i).await;
    }
    assert!(eventually(WAIT, || std::future::ready(server.state.rooms.participant_count() == 0)).await);
    let baseline = live_threads();

    // A publisher in the room: every guest gets a subscribe connection and an offer.
    let mut publisher = Participant::join(
        &server.ws_url(),
        ParticipantOptions::new(room, "Publisher").with_audio(),
    )
    .await
    .expect("publisher joins");
    publisher.start_media();
    assert!(
        eventually(WAIT, || std::future::ready(
            Stats::get(&server.state.media.stats().published_tracks) == 1
        ))
        .await
    );
    for i in 0..200 {
        one_cycle(i).await;
    }
    let only_publisher = eventually(WAIT, || async {
        let m = metrics(&server).await;
        metric(&m, "samtal_participants") == Some(1.0) && metric(&m, "samtal_websocket_connections") == Some(1.0)
    })
    .await;
    assert!(
        only_publisher,
        "after 200 sessions more than the publisher remains:\n{}",
        metrics(&server).await
    );
    publisher.close().await;

    let names = [
        "samtal_participants",
        "samtal_peer_connections",
        "samtal_websocket_connections",
        "samtal_tracks",
        "samtal_rooms",
    ];
    let empty = eventually(WAIT, || async {
        let m = metrics(&server).await;
        names.iter().all(|n| metric(&m, n) == Some(0.0))
    })
    .await;
    let m = metrics(&server).await;
    let values: Vec<String> = names.iter().map(|n| format!("{n} {:?}", metric(&m, n))).collect();
    assert!(empty, "gauges did not return to zero: {values:?}");
    assert_eq!(server.state.rooms.room_count(), 0);
    // Threads: a few may come and go (the blocking pool), but none may stay per session.
    let bound = 8;
    let settled = eventually(Duration::from_secs(30), || {
        std::future::ready(live_threads() <= baseline + bound)
    })
    .await;
    println!("threads: {baseline} before, {} after 200 sessions", live_threads());
    assert!(
        settled,
        "threads grew from {baseline} to {} over 200 sessions",
        live_threads()
    );
    server.shutdown().await;
}
