//! A participant abusing renegotiation against the whole server in-process: offers with hundreds
//! of media sections, offers faster than any browser makes them, invalid offers carrying thousands
//! of track declarations, and a bad re-offer between good ones. The server must refuse what is too
//! big or too often with a clear error, keep every other room's media flowing, hold nothing from
//! offers it did not apply, and stay able to negotiate after a failure.

use samtal_client::{Participant, ParticipantOptions};
use samtal_e2e::sdp::{offer_with_sections, opus_offer};
use samtal_e2e::ws::{WAIT, WsClient, eventually};
use samtal_e2e::*;
use samtal_sfu::Stats;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The reply to one publish offer: the answer's SDP, or the error's code.
async fn offer(ws: &mut WsClient, sdp: &str, tracks: Value) -> Result<String, String> {
    ws.send_json(&json!({"type": "offer", "pc": "publish", "sdp": sdp, "tracks": tracks}))
        .await;
    ws.expect("the answer or an error", WAIT, |m| match m["type"].as_str() {
        Some("answer") if m["pc"] == "publish" => Some(Ok(m["sdp"].as_str().unwrap_or_default().to_owned())),
        Some("error") => Some(Err(m["code"].as_str().unwrap_or_default().to_owned())),
        _ => None,
    })
    .await
}

fn declarations(count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| json!({"track_id": format!("decl-{i:05}"), "source": "screen_share"}))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reoffer_is_rolled_back_and_only_applied_offers_declare_tracks() {
    let mut config = test_config();
    config.limits.max_messages_per_second = 10_000;
    let server = start_server(config).await;
    let stats = server.state.media.stats().clone();
    let mut ws = WsClient::connect(&server.ws_url()).await;
    let joined = ws.join("renegotiate", "Rene", None).await;
    let id = joined["participant_id"].as_str().unwrap().to_owned();
    let good = opus_offer("mic", &id);
    let mic = json!([{"track_id": "mic", "source": "microphone"}]);

    // An offer that does not parse, with thousands of declarations: nothing is kept.
    let junk = declarations(900);
    assert_eq!(
        offer(&mut ws, "this is not SDP", junk.clone()).await,
        Err("negotiation_failed".into())
    );
    assert_eq!(
        Stats::get(&stats.declared_tracks),
        0,
        "declarations kept from an offer that was not applied"
    );

    // A good offer with extra declarations for tracks it does not send: only `mic` is kept.
    let mut tracks = junk.as_array().unwrap().clone();
    tracks.push(mic[0].clone());
    assert!(
        offer(&mut ws, &good, Value::Array(tracks)).await.is_ok(),
        "the first good offer is answered"
    );
    assert_eq!(
        Stats::get(&stats.declared_tracks),
        1,
        "only the declaration of a track the offer sends is kept"
    );

    // Re-offers that the server refuses: the connection stays as the good offer left it, so the
    // same good offer is answered again (before, every later good offer failed with "invalid
    // proposed signaling state transition").
    let bad_reoffers = [
        ("not SDP", "v=0\r\nthis is not an offer\r\n".to_owned()),
        (
            "a media line without port and protocol",
            good.replacen("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio", 1),
        ),
    ];
    for (what, bad) in bad_reoffers {
        let result = offer(&mut ws, &bad, mic.clone()).await;
        assert_eq!(result, Err("negotiation_failed".into()), "{what}: refused");
        let again = offer(&mut ws, &good, mic.clone()).await;
        assert!(
            again.is_ok(),
            "after a refused re-offer ({what}) the good offer is answered again: {again:?}"
        );
    }
    assert_eq!(Stats::get(&stats.declared_tracks), 1);

    // Offers beyond the participant's rate are refused before the media thread parses them.
    let refused_before = Stats::get(&stats.refused_offers);
    let mut rate_limited = 0;
    for _ in 0..12 {
        if offer(&mut ws, &good, mic.clone()).await == Err("rate_limited".into()) {
            rate_limited += 1;
        }
    }
    assert!(
        rate_limited >= 4,
        "12 offers at once within the rate of 2 per second: {rate_limited} refused"
    );
    assert_eq!(Stats::get(&stats.refused_offers) - refused_before, rate_limited);
    ws.close().await;
    assert!(
        eventually(WAIT, || std::future::ready(Stats::get(&stats.declared_tracks) == 0)).await,
        "a participant's declarations go when it leaves"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_participant_flooding_offers_does_not_stall_another_rooms_media() {
    let mut config = test_config();
    config.limits.max_messages_per_second = 10_000;
    let server = start_server(config).await;
    let stats = server.state.media.stats().clone();

    // Room "steady": a publisher's audio (50 packets per second) reaches a subscriber.
    let mut publisher = Participant::join(
        &server.ws_url(),
        ParticipantOptions::new("steady", "Speaker").with_audio(),
    )
    .await
    .unwrap();
    let listener = Participant::join(&server.ws_url(), ParticipantOptions::new("steady", "Listener"))
        .await
        .unwrap();
    publisher.start_media();
    assert!(
        eventually(WAIT, || std::future::ready(listener.stats().media_received >= 25)).await,
        "the listener receives the speaker's audio before the flood"
    );

    // Room "flood": one participant sends offers with 300 media sections, then small ones as fast
    // as its websocket allows, for three seconds.
    let mut attacker = WsClient::connect(&server.ws_url()).await;
    let joined = attacker.join("flood", "Mallory", None).await;
    let id = joined["participant_id"].as_str().unwrap().to_owned();
    let huge = offer_with_sections(300, &id);
    assert!(
        huge.len() < 60_000,
        "the offer fits in one websocket message ({} bytes)",
        huge.len()
    );
    let small = opus_offer("mic", &id);
    let (received_before, started) = (listener.stats().media_received, Instant::now());
    let (mut too_big, mut rate_limited, mut answered, mut sent) = (0u64, 0u64, 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(3) {
        let sdp = if sent % 2 == 0 { &huge } else { &small };
        sent += 1;
        match offer(&mut attacker, sdp, json!([])).await {
            Ok(_) => answered += 1,
            Err(code) if code == "negotiation_failed" && sdp == &huge => too_big += 1,
            Err(code) if code == "rate_limited" => rate_limited += 1,
            Err(code) => panic!("unexpected error {code} for offer {sent}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let received = listener.stats().media_received - received_before;
    assert_eq!(too_big, sent.div_ceil(2), "every 300-section offer is refused");
    assert!(
        answered <= 8 + 2 * 4,
        "small offers beyond the rate were applied: {answered} of {}",
        sent / 2
    );
    assert!(rate_limited > 0, "no small offer was rate-limited ({sent} sent)");
    // The other room's audio kept flowing: at 50 packets per second, at least 80 % of it arrived
    // while the flood lasted.
    let expected = 50.0 * elapsed;
    assert!(
        received as f64 >= 0.8 * expected,
        "the listener received {received} packets in {elapsed:.1} s of flood ({sent} offers), expected about {expected:.0}"
    );
    assert!(Stats::get(&stats.refused_offers) >= too_big + rate_limited);
    attacker.close().await;
    publisher.close().await;
    listener.close().await;
    server.shutdown().await;
}
