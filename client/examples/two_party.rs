//! Two participants join a room, each publishes synthetic audio and video, and each checks that
//! it receives the other's packets (stamps intact, in order, with their delay).
//!
//! ```text
//! cargo run -p samtal-signaling --bin samtal -- serve --listen 127.0.0.1:8080 &
//! cargo run -p samtal-client --example two_party -- ws://127.0.0.1:8080/ws [seconds]
//! ```
//! Then Alice shares her screen and stops: Bob must see `track_published`, the media and
//! `track_unpublished`. Exits with status 1 when either participant misses the other's audio or video.

use std::collections::BTreeMap;
use std::time::Duration;

use samtal_client::samtal_protocol::{MediaKind, ServerMessage, TrackSource};
use samtal_client::{Participant, ParticipantEvent, ParticipantOptions, Received};
use tokio::sync::mpsc;

/// What one participant received from one remote track.
#[derive(Default, Debug)]
struct TrackTally {
    packets: u64,
    unstamped: u64,
    /// Stamp counters that went backwards or repeated.
    out_of_order: u64,
    /// Stamp counters skipped.
    missing: u64,
    last_counter: Option<u64>,
    delays_us: Vec<u64>,
}

impl TrackTally {
    fn add(&mut self, r: &Received) {
        self.packets += 1;
        let Some(stamp) = r.stamp() else {
            self.unstamped += 1;
            return;
        };
        match self.last_counter {
            Some(last) if stamp.counter <= last => self.out_of_order += 1,
            Some(last) => self.missing += stamp.counter - last - 1,
            None => {}
        }
        self.last_counter = Some(self.last_counter.map_or(stamp.counter, |l| l.max(stamp.counter)));
        self.delays_us.push(stamp.age().as_micros() as u64);
    }

    fn summary(&mut self) -> String {
        self.delays_us.sort_unstable();
        let pct = |p: f64| {
            self.delays_us
                .get(((self.delays_us.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        format!(
            "{} packets, {} missing, {} out of order, {} unstamped, delay p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.packets,
            self.missing,
            self.out_of_order,
            self.unstamped,
            pct(0.5),
            pct(0.99),
            pct(1.0)
        )
    }
}

type Tally = BTreeMap<(String, String, &'static str), TrackTally>;

async fn collect(mut media: mpsc::Receiver<Received>, duration: Duration) -> (Tally, mpsc::Receiver<Received>) {
    let mut tally = Tally::new();
    let deadline = tokio::time::Instant::now() + duration;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, media.recv()).await {
        let kind = match r.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        tally
            .entry((r.participant_id.clone(), r.track_id.clone(), kind))
            .or_default()
            .add(&r);
    }
    (tally, media)
}

/// Prints events and passes them on.
fn log_events(
    name: &'static str,
    mut events: mpsc::UnboundedReceiver<ParticipantEvent>,
) -> mpsc::UnboundedReceiver<ParticipantEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if !matches!(event, ParticipantEvent::KeyframeRequested { .. }) {
                println!("[{name}] {event:?}");
            }
            let _ = tx.send(event);
        }
    });
    rx
}

/// Waits up to 10 s for an event `pick` accepts.
async fn wait_event<T>(
    events: &mut mpsc::UnboundedReceiver<ParticipantEvent>,
    mut pick: impl FnMut(&ParticipantEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Some(found) = pick(&event) {
            return Some(found);
        }
    }
    None
}

/// Alice shares her screen and stops again; Bob must see the track come, carry media, and go.
async fn screen_share_round(
    alice: &mut Participant,
    bob_events: &mut mpsc::UnboundedReceiver<ParticipantEvent>,
    bob_media: &mut mpsc::Receiver<Received>,
) -> anyhow::Result<bool> {
    while bob_events.try_recv().is_ok() {}
    alice.publish(TrackSource::ScreenShare).await?;
    alice.start_media();
    let alice_id = alice.id().to_owned();
    let Some(track_id) = wait_event(bob_events, |e| match e {
        ParticipantEvent::Server(ServerMessage::TrackPublished { participant_id, track })
            if *participant_id == alice_id && track.source == TrackSource::ScreenShare =>
        {
            Some(track.track_id.clone())
        }
        _ => None,
    })
    .await
    else {
        println!("FAIL: Bob got no track_published for Alice's screen share");
        return Ok(false);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut packets = 0;
    while packets < 30 {
        match tokio::time::timeout_at(deadline, bob_media.recv()).await {
            Ok(Some(r)) if r.track_id == track_id => packets += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    if packets < 30 {
        println!("FAIL: Bob received {packets} packets of Alice's screen share {track_id}");
        return Ok(false);
    }
    println!("Bob receives Alice's screen share {track_id}");
    alice.unpublish(TrackSource::ScreenShare).await?;
    let unpublished = wait_event(bob_events, |e| match e {
        ParticipantEvent::Server(ServerMessage::TrackUnpublished { track_id: t, .. }) if *t == track_id => Some(()),
        _ => None,
    })
    .await;
    if unpublished.is_none() {
        println!("FAIL: Bob got no track_unpublished for {track_id}");
        return Ok(false);
    }
    println!("Bob saw Alice's screen share {track_id} go");
    Ok(true)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "samtal_client=info,warn".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/ws".to_owned());
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let room = format!("two-party-{}", std::process::id());

    let mut alice = Participant::join(&url, ParticipantOptions::new(&room, "Alice").with_audio().with_video()).await?;
    println!("Alice joined as {}", alice.id());
    let mut bob = Participant::join(&url, ParticipantOptions::new(&room, "Bob").with_audio().with_video()).await?;
    println!(
        "Bob joined as {} (saw {} already there)",
        bob.id(),
        bob.joined().participants.len()
    );

    let _alice_events = log_events("Alice", alice.take_events().expect("events"));
    let mut bob_events = log_events("Bob", bob.take_events().expect("events"));
    let alice_media = collect(alice.take_media().expect("media"), Duration::from_secs(seconds));
    let bob_media = collect(bob.take_media().expect("media"), Duration::from_secs(seconds));
    alice.start_media();
    bob.start_media();
    let (alice_got, bob_got) = tokio::join!(tokio::spawn(alice_media), tokio::spawn(bob_media));
    let ((mut alice_got, _), (mut bob_got, mut bob_media)) = (alice_got?, bob_got?);

    let mut ok = true;
    for (name, me, other, got) in [
        ("Alice", &alice, &bob, &mut alice_got),
        ("Bob", &bob, &alice, &mut bob_got),
    ] {
        println!("{name} sent/received: {:?}", me.stats());
        for kind in ["audio", "video"] {
            let from_other: Vec<_> = got
                .iter()
                .filter(|((p, _, k), _)| p == other.id() && *k == kind)
                .map(|(key, _)| key.clone())
                .collect();
            if from_other.is_empty() {
                println!("FAIL: {name} received no {kind} from {}", other.id());
                ok = false;
            }
        }
        for ((participant, track, kind), tally) in got.iter_mut() {
            println!("  {name} <- {participant} {kind} {track}: {}", tally.summary());
            if participant == me.id() {
                println!("FAIL: {name} received its own {kind}");
                ok = false;
            }
        }
    }
    ok &= screen_share_round(&mut alice, &mut bob_events, &mut bob_media).await?;
    alice.close().await;
    bob.close().await;
    if ok {
        println!("OK: both participants received each other's audio and video, and a screen share");
        Ok(())
    } else {
        std::process::exit(1);
    }
}
