//! The router driven without sockets: real webrtc-rs peers on an in-memory network with a fake
//! clock (see `harness`). Each test asserts on what the peers received and what the router emitted.

mod harness;

use self::harness::Net;
use crate::config::MediaConfig;
use crate::router::{MediaEvent, SubscribeOptions};
use crate::stats::Stats;
use samtal_protocol::{MediaKind, TrackSource};
use std::time::Duration;

const AUDIO: &[u8] = &[0xfc, 0xff, 0xfe, 0x01, 0x02, 0x03];
/// A VP8 keyframe's first bytes: payload descriptor (S=1, partition 0), a frame tag whose lowest
/// bit is 0 (key frame), the start code, and a 1×1 size.
/// A VP8 delta frame's first packet (frame tag bit 0 set).
const VP8_DELTA: &[u8] = &[0x10, 0x51, 0x42, 0x00, 0x01, 0x02];
const VP8_KEYFRAME: &[u8] = &[0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x01, 0x00, 0x01, 0x00, 0x00];

fn connected(net: &Net, clients: &[usize]) -> bool {
    clients.iter().all(|&c| {
        let c = net.client(c);
        (c.publish.is_none() || c.publish_connected) && (c.subscribe.is_none() || c.subscribe_connected)
    })
}

/// Sends a packet of `source` from `from` every 20 ms of fake time (once its publish connection is
/// up) until every other listed client has a connected subscribe connection and all connections are
/// up, for at most 5 s: a track is announced at its first packet and subscriptions follow from it.
fn connect_by_sending(net: &mut Net, from: usize, source: TrackSource, payload: &[u8], clients: &[usize]) -> bool {
    for _ in 0..250 {
        if net.client(from).publish_connected {
            net.send(from, source, payload);
        }
        for _ in 0..4 {
            net.step();
        }
        if connected(net, clients) && clients.iter().all(|&c| c == from || net.client(c).subscribe_connected) {
            return true;
        }
    }
    false
}

/// Alice publishes audio in room "r"; Bob subscribes. Both connections are up.
fn two_in_a_room() -> Net {
    let mut net = Net::new();
    let alice = net.join("r", SubscribeOptions::default());
    let bob = net.join("r", SubscribeOptions::default());
    net.publish(alice, TrackSource::Microphone).expect("publish answered");
    assert!(
        connect_by_sending(&mut net, alice, TrackSource::Microphone, AUDIO, &[alice, bob]),
        "connections up"
    );
    net
}

/// Sends `count` audio packets from `from`, one per 20 ms of fake time.
fn talk(net: &mut Net, from: usize, count: usize) {
    for _ in 0..count {
        net.send(from, TrackSource::Microphone, AUDIO);
        for _ in 0..4 {
            net.step();
        }
    }
}

#[test]
fn audio_is_forwarded_to_the_other_participant_with_its_server_track_id() {
    let mut net = two_in_a_room();
    let (alice, bob) = (0, 1);
    let published = net.client(alice).events.iter().find_map(|e| match e {
        MediaEvent::TrackPublished {
            track_id, kind, source, ..
        } => Some((track_id.clone(), *kind, *source)),
        _ => None,
    });
    talk(&mut net, alice, 50);
    let (track_id, kind, source) = published
        .or_else(|| {
            net.client(alice).events.iter().find_map(|e| match e {
                MediaEvent::TrackPublished {
                    track_id, kind, source, ..
                } => Some((track_id.clone(), *kind, *source)),
                _ => None,
            })
        })
        .expect("Alice learns her track was published");
    assert_eq!((kind, source), (MediaKind::Audio, TrackSource::Microphone));
    assert_eq!(track_id, "p1-t1");
    let got = net.received(bob);
    assert!(got >= 45, "Bob received {got} of 50 packets");
    assert!(
        net.client(bob)
            .received
            .iter()
            .all(|(track, p)| track == &track_id && &p.payload[..] == AUDIO)
    );
    assert_eq!(net.received(alice), 0, "nobody receives their own media");
    assert!(Stats::get(&net.stats.forwarded_packets) >= got as u64);
}

#[test]
fn a_late_joiner_gets_the_tracks_already_published() {
    let mut net = two_in_a_room();
    talk(&mut net, 0, 5);
    let carol = net.join("r", SubscribeOptions::default());
    assert!(net.run_until(Duration::from_secs(5), |n| n.client(carol).subscribe_connected));
    talk(&mut net, 0, 20);
    assert!(net.received(carol) >= 15, "Carol received {}", net.received(carol));
    let other_room = net.join("elsewhere", SubscribeOptions::default());
    talk(&mut net, 0, 10);
    assert!(
        net.client(other_room).subscribe.is_none() && net.received(other_room) == 0,
        "rooms are separate"
    );
}

#[test]
fn leaving_unpublishes_and_renegotiates_the_others() {
    let mut net = two_in_a_room();
    talk(&mut net, 0, 5);
    let offers_before = net
        .client(1)
        .events
        .iter()
        .filter(|e| matches!(e, MediaEvent::SubscribeOffer { .. }))
        .count();
    net.router.leave("p1", net.now);
    net.run_until(Duration::from_secs(1), |_| false);
    let offers_after = net
        .client(1)
        .events
        .iter()
        .filter(|e| matches!(e, MediaEvent::SubscribeOffer { .. }))
        .count();
    assert_eq!(
        offers_after,
        offers_before + 1,
        "Bob's subscribe connection is renegotiated without Alice's track"
    );
    assert_eq!(
        (
            Stats::get(&net.stats.participants),
            Stats::get(&net.stats.published_tracks)
        ),
        (1, 0)
    );
    assert_eq!(
        Stats::get(&net.stats.peer_connections),
        1,
        "Alice's connections are closed"
    );
    net.router.leave("p2", net.now);
    assert_eq!(
        (Stats::get(&net.stats.rooms), Stats::get(&net.stats.peer_connections)),
        (0, 0)
    );
}

#[test]
fn an_inactive_track_is_unpublished_and_dropped_until_its_publisher_sets_it_active_again() {
    let mut net = two_in_a_room();
    let (alice, bob) = (0, 1);
    talk(&mut net, alice, 10);
    let events = |net: &Net| -> Vec<String> {
        net.client(alice)
            .events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::TrackPublished { track_id, .. } => Some(format!("+{track_id}")),
                MediaEvent::TrackUnpublished { track_id } => Some(format!("-{track_id}")),
                _ => None,
            })
            .collect()
    };
    assert_eq!(events(&net), ["+p1-t1"]);

    // An id it never declared changes nothing.
    net.router.set_track_active("p1", "p1-camera", false, net.now);
    talk(&mut net, alice, 5);
    assert_eq!(events(&net), ["+p1-t1"]);

    net.router.set_track_active("p1", "p1-microphone", false, net.now);
    net.step();
    assert_eq!(events(&net), ["+p1-t1", "-p1-t1"]);
    let before = net.received(bob);
    talk(&mut net, alice, 25);
    assert_eq!(net.received(bob), before, "nothing of an inactive track is forwarded");
    assert_eq!(Stats::get(&net.stats.published_tracks), 0);

    net.router.set_track_active("p1", "p1-microphone", true, net.now);
    talk(&mut net, alice, 50);
    assert_eq!(
        events(&net),
        ["+p1-t1", "-p1-t1", "+p1-t2"],
        "its next packet publishes it anew"
    );
    let again = net
        .client(bob)
        .received
        .iter()
        .filter(|(track, _)| track == "p1-t2")
        .count();
    assert!(again >= 25, "Bob received {again} packets of the track published again");
}

#[test]
fn an_opted_out_participant_is_withheld_from_the_transcription_service_only() {
    let mut net = Net::new();
    let alice = net.join("r", SubscribeOptions::default());
    let bob = net.join("r", SubscribeOptions::default());
    let service = net.join(
        "r",
        SubscribeOptions {
            video: false,
            withhold_opted_out: true,
            ..Default::default()
        },
    );
    net.publish(alice, TrackSource::Microphone).unwrap();
    assert!(connect_by_sending(
        &mut net,
        alice,
        TrackSource::Microphone,
        AUDIO,
        &[alice, bob, service]
    ));
    talk(&mut net, alice, 10);
    let (bob_before, service_before) = (net.received(bob), net.received(service));
    assert!(
        service_before >= 8,
        "the service hears Alice before she opts out ({service_before})"
    );
    net.router.set_transcription_opt_out("p1", true);
    talk(&mut net, alice, 20);
    assert!(net.received(bob) - bob_before >= 18, "Bob still hears Alice");
    assert_eq!(
        net.received(service),
        service_before,
        "the service hears nothing of Alice once she opted out"
    );
    net.router.set_transcription_opt_out("p1", false);
    talk(&mut net, alice, 10);
    assert!(
        net.received(service) - service_before >= 8,
        "the service hears Alice again after she opts back in"
    );
}

#[test]
fn a_subscribers_keyframe_request_reaches_the_publisher_once_per_interval() {
    let mut net = Net::new();
    let alice = net.join("r", SubscribeOptions::default());
    let bob = net.join("r", SubscribeOptions::default());
    net.publish(alice, TrackSource::Camera).unwrap();
    assert!(connect_by_sending(
        &mut net,
        alice,
        TrackSource::Camera,
        VP8_KEYFRAME,
        &[alice, bob]
    ));
    for _ in 0..10 {
        net.send(alice, TrackSource::Camera, VP8_KEYFRAME);
        net.step();
    }
    assert!(
        net.run_until(Duration::from_secs(1), |n| n.received(bob) > 0),
        "Bob receives Alice's video"
    );
    net.run_until(Duration::from_secs(1), |_| false);
    let before = net.client(alice).keyframe_requests;
    // Three requests within 15 ms: the publisher is asked at once, and once more when the
    // throttle's interval (500 ms) has passed, for the two folded into it.
    for _ in 0..3 {
        net.request_keyframes();
        net.step();
    }
    net.run_until(Duration::from_millis(200), |_| false);
    assert_eq!(net.client(alice).keyframe_requests - before, 1, "right after the burst");
    net.run_until(Duration::from_millis(800), |_| false);
    assert_eq!(net.client(alice).keyframe_requests - before, 2, "after the interval");
    assert!(Stats::get(&net.stats.keyframe_requests) >= 2);
}

#[test]
fn a_refused_reoffer_is_rolled_back_and_offers_are_rate_limited_by_the_clock() {
    let mut net = Net::with_config(MediaConfig {
        offers_per_second: 2.0,
        ..Default::default()
    });
    let alice = net.join("r", SubscribeOptions::default());
    net.publish(alice, TrackSource::Microphone).expect("first offer");
    let pc = net.clients[alice].publish.as_mut().unwrap();
    let good = pc.local_description().unwrap().sdp;
    // An m-line without port and protocol (webrtc-rs answers codec-less and kind-changed
    // re-offers instead of refusing them).
    let bad = good
        .split("\r\n")
        .map(|line| if line.starts_with("m=audio") { "m=audio" } else { line })
        .collect::<Vec<_>>()
        .join("\r\n");
    let now = net.now;
    assert!(
        net.router.publish("p1", bad, vec![], now).is_err(),
        "a malformed offer is refused"
    );
    assert!(
        net.router.publish("p1", good.clone(), vec![], now).is_ok(),
        "the connection was rolled back: the good offer applies again"
    );
    // Burst of 8 (4 s at 2 per second): the first offer and the two above used 3.
    let allowed = (0..10)
        .filter(|_| net.router.publish("p1", good.clone(), vec![], now).is_ok())
        .count();
    assert_eq!(allowed, 5);
    assert!(matches!(
        net.router.publish("p1", good.clone(), vec![], now),
        Err(crate::Error::TooManyOffers { .. })
    ));
    net.now += Duration::from_millis(500);
    assert!(
        net.router.publish("p1", good.clone(), vec![], net.now).is_ok(),
        "half a second later one more is allowed"
    );
    let huge = good.clone() + &"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(20);
    assert!(matches!(
        net.router.publish("p1", huge, vec![], net.now),
        Err(crate::Error::TooManySections { .. })
    ));
}

#[test]
fn a_silent_peer_fails_and_the_router_says_so() {
    let mut net = two_in_a_room();
    talk(&mut net, 0, 5);
    net.clients[1].silent = true;
    // 10 s until disconnected, then `disconnect_timeout_secs` (15) more until failed.
    let failed = net.run_until(Duration::from_secs(40), |n| n.failed(1));
    assert!(failed, "the router reports Bob's connection as failed");
    assert!(!net.failed(0), "Alice's connection, still answering, stays up");
}

/// Three in a room: whoever talks (by the audio level on their packets) becomes dominant speaker; a
/// muted talker does not; the floor moves when the other one talks instead.
#[test]
fn the_dominant_speaker_follows_the_audio_levels() {
    let mut net = Net::new();
    let (alice, bob, carol) = (
        net.join("r", SubscribeOptions::default()),
        net.join("r", SubscribeOptions::default()),
        net.join("r", SubscribeOptions::default()),
    );
    net.publish(alice, TrackSource::Microphone).expect("publish");
    net.publish(bob, TrackSource::Microphone).expect("publish");
    assert!(connect_by_sending(
        &mut net,
        alice,
        TrackSource::Microphone,
        AUDIO,
        &[alice, bob, carol]
    ));
    assert!(connect_by_sending(
        &mut net,
        bob,
        TrackSource::Microphone,
        AUDIO,
        &[alice, bob, carol]
    ));
    let dominant = |net: &Net, c: usize| {
        net.client(c)
            .events
            .iter()
            .filter(|e| matches!(e, MediaEvent::DominantSpeaker))
            .count()
    };
    let converse = |net: &mut Net, levels: (u8, u8), packets: usize| {
        for _ in 0..packets {
            net.send_level(alice, AUDIO, levels.0);
            net.send_level(bob, AUDIO, levels.1);
            for _ in 0..4 {
                net.step();
            }
        }
    };
    // Bob talks but is muted: he does not take the floor; Alice is silent.
    net.router.set_muted("p2", TrackSource::Microphone, true, net.now);
    converse(&mut net, (127, 20), 100);
    assert_eq!(
        (dominant(&net, alice), dominant(&net, bob)),
        (0, 0),
        "silence and a muted talker"
    );
    // Alice talks.
    converse(&mut net, (30, 127), 50);
    assert_eq!(
        (dominant(&net, alice), dominant(&net, bob)),
        (1, 0),
        "Alice has the floor"
    );
    // Bob unmutes and talks, Alice stops.
    net.router.set_muted("p2", TrackSource::Microphone, false, net.now);
    converse(&mut net, (127, 30), 100);
    assert_eq!(
        (dominant(&net, alice), dominant(&net, bob)),
        (1, 1),
        "the floor moved to Bob"
    );
    assert_eq!(dominant(&net, carol), 0, "Carol never spoke");
    assert_eq!(Stats::get(&net.stats.speaker_changes), 2);
    // The levels travel on: Carol's packets from Bob carry his level under her extension id.
    let with_level = net
        .client(carol)
        .received
        .iter()
        .filter(|(track, p)| {
            track.starts_with("p2-") && p.header.extensions.iter().any(|e| e.payload[..] == [0x80 | 30])
        })
        .count();
    assert!(with_level >= 90, "Bob's level reached Carol on {with_level} packets");
}

/// Last-N of one: Carol (who publishes nothing) receives one camera. In a quiet room that is the first
/// to join (Alice); when Bob talks it becomes Bob's, and Alice's stops; each step is announced to
/// Carol in `VideoForwarded`.
#[test]
fn last_n_forwards_the_cameras_of_the_most_recent_speakers() {
    let mut net = Net::with_config(MediaConfig {
        last_n: 1,
        ..MediaConfig::default()
    });
    let (alice, bob, carol) = (
        net.join("r", SubscribeOptions::default()),
        net.join("r", SubscribeOptions::default()),
        net.join("r", SubscribeOptions::default()),
    );
    for c in [alice, bob] {
        net.publish(c, TrackSource::Microphone).expect("publish audio");
        net.publish(c, TrackSource::Camera).expect("publish video");
    }
    for c in [alice, bob] {
        assert!(connect_by_sending(
            &mut net,
            c,
            TrackSource::Camera,
            VP8_KEYFRAME,
            &[alice, bob, carol]
        ));
    }
    let exchange = |net: &mut Net, levels: (u8, u8), packets: usize| {
        for _ in 0..packets {
            net.send_level(alice, AUDIO, levels.0);
            net.send_level(bob, AUDIO, levels.1);
            net.send(alice, TrackSource::Camera, VP8_KEYFRAME);
            net.send(bob, TrackSource::Camera, VP8_KEYFRAME);
            for _ in 0..4 {
                net.step();
            }
        }
    };
    let video_from = |net: &Net, to: usize, publisher: &str| {
        net.client(to)
            .received
            .iter()
            .filter(|(track, p)| track.starts_with(publisher) && &p.payload[..] == VP8_KEYFRAME)
            .count()
    };
    let forwarded = |net: &Net, to: usize| {
        net.client(to).events.iter().rev().find_map(|e| match e {
            MediaEvent::VideoForwarded { participants } => Some(participants.clone()),
            _ => None,
        })
    };
    let counts = |net: &Net| (video_from(net, carol, "p1-"), video_from(net, carol, "p2-"));

    exchange(&mut net, (127, 127), 10);
    let before = counts(&net);
    exchange(&mut net, (127, 127), 50);
    let quiet = counts(&net);
    assert!(
        quiet.0 - before.0 >= 45,
        "Carol sees Alice, the first to join: {before:?} → {quiet:?}"
    );
    assert_eq!(quiet.1, before.1, "and not Bob");
    assert_eq!(forwarded(&net, carol), Some(vec!["p1".to_owned()]));

    exchange(&mut net, (127, 30), 25); // Bob takes the floor
    let switched = counts(&net);
    exchange(&mut net, (127, 30), 50);
    let after = counts(&net);
    assert_eq!(after.0, switched.0, "Alice's camera is paused toward Carol");
    assert!(after.1 - switched.1 >= 45, "Carol sees Bob: {switched:?} → {after:?}");
    assert_eq!(forwarded(&net, carol), Some(vec!["p2".to_owned()]));
    assert!(Stats::get(&net.stats.video_pauses) >= 2);
    // Each publisher's one other camera fits in its last-N of one.
    assert_eq!(forwarded(&net, alice), Some(vec!["p2".to_owned()]));
    assert_eq!(forwarded(&net, bob), Some(vec!["p1".to_owned()]));
}

#[test]
fn a_tile_not_shown_gets_no_video_and_showing_it_resumes_at_a_keyframe() {
    let mut net = Net::new();
    let (alice, bob, carol) = (
        net.join("r", SubscribeOptions::default()),
        net.join("r", SubscribeOptions::default()),
        net.join("r", SubscribeOptions::default()),
    );
    net.publish(alice, TrackSource::Camera).expect("publish video");
    assert!(connect_by_sending(
        &mut net,
        alice,
        TrackSource::Camera,
        VP8_KEYFRAME,
        &[alice, bob, carol]
    ));
    let send = |net: &mut Net, payload: &[u8], packets: usize| {
        for _ in 0..packets {
            net.send(alice, TrackSource::Camera, payload);
            for _ in 0..4 {
                net.step();
            }
        }
    };
    send(&mut net, VP8_KEYFRAME, 5);
    let camera = net
        .client(bob)
        .received
        .first()
        .map(|(track, _)| track.clone())
        .expect("Bob receives Alice's camera");
    let video = |net: &Net, to: usize| net.client(to).received.len();
    // Bob's page does not show Alice's camera: nothing more reaches him, Carol still gets it all.
    let now = net.now;
    net.router.set_video_tile("p2", &camera, 0, 0, now);
    net.router.set_video_tile("p2", "p9-t1", 640, 360, now); // not a track he receives: ignored
    let (bob_before, carol_before) = (video(&net, bob), video(&net, carol));
    send(&mut net, VP8_KEYFRAME, 20);
    assert_eq!(video(&net, bob), bob_before, "a hidden tile costs Bob nothing");
    assert_eq!(video(&net, carol) - carol_before, 20);
    assert_eq!(Stats::get(&net.stats.layer_changes), 1);
    // Shown again: it resumes at the next keyframe, not at a delta frame.
    let now = net.now;
    net.router.set_video_tile("p2", &camera, 320, 180, now);
    send(&mut net, VP8_DELTA, 5);
    assert_eq!(video(&net, bob), bob_before, "waits for a keyframe");
    send(&mut net, VP8_KEYFRAME, 5);
    assert_eq!(video(&net, bob) - bob_before, 5, "resumed at the keyframe");
    assert_eq!(Stats::get(&net.stats.layer_changes), 2);
}
