//! `samtal-loadgen`: load-tests the SFU through the real server and the real protocol.
//!
//! For each scenario `PxS` it starts the `samtal` binary as a separate process on free loopback
//! ports, joins P publishers (synthetic Opus at 50 packets/s and VP8 at ~1 Mbit/s; each also
//! receives the other P-1) and S receive-only subscribers to one room with `samtal-client`, lets
//! the room warm up, then measures a window and prints one markdown table row: forwarded packets
//! per second (server counters and what clients received), server CPU per million forwarded
//! packets, server RSS per participant, join-to-first-packet and end-to-end delay percentiles,
//! and the mean forwarding delay inside the server. See `benches/README.md`.
//!
//! `PxS-simulcast` (or `--simulcast`): publishers send their camera as three simulcast layers
//! (320×180 ~100 kbit/s, 640×360 ~300 kbit/s, 1280×720 ~1 Mbit/s) and every participant reports a
//! tile size for the video it receives (a third 1280×720, a third 640×360, a third 320×180), so the
//! server forwards one layer per subscriber (`--tiles` sets other sizes); the row adds the
//! server's layer changes and which layers the receivers got.
//!
//! ```text
//! cargo build --release -p samtal-signaling -p samtal-bench
//! target/release/samtal-loadgen --scenario 2x20 --scenario 10x10 --seconds 20
//! target/release/samtal-loadgen --scenario 10x20 --scenario 10x20-simulcast --seconds 10
//! target/release/samtal-loadgen --scenario 8x8-audio --rooms 4 --loops 2
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use samtal_bench::metrics::{self, Samples};
use samtal_bench::procfs;
use samtal_bench::scenario::{Scenario, Tiles};
use samtal_bench::server::{Server, ServerOptions, server_binary};
use samtal_bench::stats::{LayerRuns, ReceiverTally, Summary, ratio};
use samtal_client::samtal_protocol::MediaKind;
use samtal_client::synthetic::{SIMULCAST_RIDS, unix_micros_now};
use samtal_client::{Participant, ParticipantEvent, ParticipantStats, Received};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Load generator for the Samtal SFU.
#[derive(Parser, Debug)]
#[command(name = "samtal-loadgen", version)]
struct Cli {
    /// PxS: P publishers (audio + video; each also receives the other P-1) plus S receive-only
    /// subscribers, all in one room; PxS-simulcast: cameras as three simulcast layers and tiles
    /// of mixed sizes; PxS-audio: audio only. Repeat for several scenarios, each against a fresh server.
    #[arg(long = "scenario", default_values = ["2x20", "10x10"])]
    scenarios: Vec<Scenario>,
    /// Run every scenario with simulcast (as if each were given as PxS-simulcast).
    #[arg(long)]
    simulcast: bool,
    /// Simulcast scenarios: the tile sizes participants report for the video they receive, by
    /// join order (participant i uses the (i mod n)-th); 0x0 = not shown.
    #[arg(long, default_value_t = Tiles::default())]
    tiles: Tiles,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Warm-up after the last join and before the window, seconds.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// The `samtal` server binary; default: `samtal` next to this executable (same target dir).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Pause between two joins, milliseconds.
    #[arg(long, default_value_t = 0)]
    join_gap_ms: u64,
    /// Rooms of the scenario's shape, side by side (a room stays on one media loop: several rooms
    /// are what spreads the load over loops).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// The server's media loops (`[media] loops`); default: its own default, one per core.
    #[arg(long)]
    loops: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    samtal_bench::init_logging();
    let cli = Cli::parse();
    if cli.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    if cli.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    let server_bin = server_binary(cli.server_bin.as_deref())?;
    println!(
        "# samtal-loadgen: {} CPUs ({}), load average {:.2} at start, warm-up {} s, window {} s",
        procfs::cpus(),
        procfs::cpu_model(),
        procfs::load_average().unwrap_or(f64::NAN),
        cli.warmup,
        cli.seconds
    );
    println!(
        "# PxS = P publishers (Opus 50 packets/s + VP8 ~1 Mbit/s; each also receives the other P-1) + S receive-only subscribers, one room"
    );
    println!(
        "# -simulcast: cameras as q/h/f = 320x180 ~100 kbit/s, 640x360 ~300 kbit/s, 1280x720 ~1 Mbit/s; participant i (publishers first) reports tile number i mod {} of {} for all video it receives",
        cli.tiles.len(),
        cli.tiles
    );
    let mut rows = Vec::new();
    for &scenario in &cli.scenarios {
        let scenario = if cli.simulcast {
            scenario.with_simulcast(true)
        } else {
            scenario
        };
        eprintln!("== {scenario}: starting {}", server_bin.display());
        let result = run_scenario(&cli, &server_bin, scenario).await?;
        for line in result.details() {
            println!("# {scenario}: {line}");
        }
        rows.push(result.row());
    }
    println!();
    println!("{}", Outcome::HEADER);
    println!("{}", Outcome::RULE);
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Participants
// ---------------------------------------------------------------------------------------------

/// What a receiver task hands back.
struct ReceiverResult {
    tally: ReceiverTally,
    first_packet: Option<Instant>,
    /// Video packets received in the window, by the simulcast layer that sent them (a plain
    /// track's are layer 0).
    video_layers: [u64; 3],
    /// Times a received video track changed layer (whole run).
    layer_switches: u64,
}

/// One joined participant of the load.
struct Member {
    participant: Participant,
    publisher: bool,
    /// Which tile class it reports (simulcast scenarios).
    tile: Option<usize>,
    join_started: Instant,
    receiver: JoinHandle<ReceiverResult>,
}

/// Counts everything a participant receives until `stop` turns true (or the channel closes).
async fn receive(
    mut media: mpsc::Receiver<Received>,
    mut stop: watch::Receiver<bool>,
    measuring: Arc<AtomicBool>,
) -> ReceiverResult {
    let mut tally = ReceiverTally::default();
    let mut runs = LayerRuns::default();
    let mut video_layers = [0u64; 3];
    let mut first_packet = None;
    loop {
        let r = tokio::select! {
            r = media.recv() => match r { Some(r) => r, None => break },
            _ = stop.changed() => break,
        };
        first_packet.get_or_insert(r.arrival);
        let stamp = r.stamp();
        // Delay from the publisher's stamp to the RTP delivery in our client, without the time
        // the packet then waited in the media channel for this task.
        let delay_us = stamp.map_or(0, |s| {
            unix_micros_now()
                .saturating_sub(s.sent_micros)
                .saturating_sub(r.arrival.elapsed().as_micros() as u64)
        });
        let layer = stamp.map_or(0, |s| s.layer());
        let measured = measuring.load(Ordering::Relaxed);
        if measured
            && r.kind == MediaKind::Video
            && let Some(count) = video_layers.get_mut(layer as usize)
        {
            *count += 1;
        }
        tally.add(
            runs.stream(r.ssrc, layer),
            stamp.map(|s| s.sequence()),
            delay_us,
            measured,
        );
    }
    ReceiverResult {
        tally,
        first_packet,
        video_layers,
        layer_switches: runs.switches,
    }
}

/// Drains a participant's events, counting the ones that mean trouble.
fn watch_events(participant: &mut Participant, problems: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    let Some(mut events) = participant.take_events() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.recv() => match e { Some(e) => e, None => break },
                _ = stop.changed() => break,
            };
            match event {
                ParticipantEvent::NegotiationFailed { message, .. } => {
                    eprintln!("   negotiation failed: {message}");
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                ParticipantEvent::ConnectionState { state, pc }
                    if matches!(
                        state,
                        samtal_client::RTCPeerConnectionState::Failed
                            | samtal_client::RTCPeerConnectionState::Disconnected
                    ) =>
                {
                    eprintln!("   {pc:?} connection {state:?}");
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                ParticipantEvent::SignalingClosed => {
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                ParticipantEvent::Server(samtal_client::samtal_protocol::ServerMessage::Error {
                    code,
                    message,
                    ..
                }) => {
                    eprintln!("   server error {code:?}: {message}");
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A scenario
// ---------------------------------------------------------------------------------------------

/// Server-side figures at one instant.
struct Snapshot {
    at: Instant,
    metrics: Samples,
    server_cpu: Duration,
    own_cpu: Duration,
    server_wait: Duration,
    own_wait: Duration,
    machine: (u64, u64),
    udp: procfs::UdpCounters,
    sent: u64,
    audio_sent: u64,
    layer_sent: [u64; 3],
    client: ParticipantStats,
}

impl Snapshot {
    async fn take(server: &Server, members: &[Member]) -> anyhow::Result<Snapshot> {
        let metrics = metrics::scrape(server.http).await?;
        let mut sent = 0;
        let mut audio_sent = 0;
        let mut layer_sent = [0; 3];
        let mut client = ParticipantStats::default();
        for m in members {
            let s = m.participant.stats();
            sent += s.audio_packets_sent + s.video_packets_sent;
            audio_sent += s.audio_packets_sent;
            for (total, n) in layer_sent.iter_mut().zip(s.simulcast_packets_sent) {
                *total += n;
            }
            client.layer_switches += s.layer_switches;
            client.media_dropped += s.media_dropped;
            client.send_errors += s.send_errors;
            client.keyframe_requests += s.keyframe_requests;
            client.keyframes_sent += s.keyframes_sent;
            client.media_received += s.media_received;
        }
        Ok(Snapshot {
            at: Instant::now(),
            metrics,
            server_cpu: procfs::process_cpu(Some(server.pid))?,
            own_cpu: procfs::process_cpu(None)?,
            server_wait: procfs::process_runqueue_wait(Some(server.pid))?,
            own_wait: procfs::process_runqueue_wait(None)?,
            machine: procfs::machine_ticks()?,
            udp: procfs::udp_counters().unwrap_or_default(),
            sent,
            audio_sent,
            layer_sent,
            client,
        })
    }

    fn counter(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(0.0)
    }
}

/// Everything measured in one scenario.
struct Outcome {
    scenario: Scenario,
    rooms: usize,
    loops: Option<usize>,
    window: f64,
    sent_per_s: f64,
    expected_per_s: f64,
    forwarded_per_s: f64,
    received_per_s: f64,
    server_received_per_s: f64,
    loss: f64,
    missing: u64,
    late: u64,
    duplicates: u64,
    unstamped: u64,
    server_cpu_share: f64,
    cpu_s_per_million: f64,
    rss_idle: u64,
    rss_loaded: u64,
    rss_max: u64,
    rss_per_participant: f64,
    join_to_first: Summary,
    never_received: usize,
    delay: Summary,
    forward_delay_us: f64,
    own_cpu_share: f64,
    server_wait_share: f64,
    own_wait_share: f64,
    machine_busy: f64,
    udp_rcvbuf_drops: u64,
    udp_delivered: u64,
    load_average: f64,
    media_errors: f64,
    keyframe_requests: f64,
    client_dropped: u64,
    client_send_errors: u64,
    client_problems: u64,
    simulcast: Option<SimulcastOutcome>,
    video: VideoAllocation,
}

/// What the server's allocator did with video (all scenarios: a plain track can be paused when the
/// subscriber's downlink estimate has no room for it).
struct VideoAllocation {
    /// Server counters over the window.
    layer_changes: f64,
    bandwidth_pauses: f64,
    dynacast_updates: f64,
    /// Server counters over the whole run.
    layer_changes_run: f64,
    bandwidth_pauses_run: f64,
    dynacast_updates_run: f64,
    /// Subscribers with a downlink estimate at the end.
    estimated_subscribers: f64,
}

/// What simulcast did in one scenario.
struct SimulcastOutcome {
    /// Packets/s the publishers sent on each layer (all publishers together).
    layer_sent_per_s: [f64; 3],
    /// The tile sizes.
    tiles: Tiles,
    /// Per tile class: video packets the receivers showing it got in the window, by layer.
    by_tile: Vec<[u64; 3]>,
    /// `publish_layers` messages that changed what publishers send (whole run).
    publisher_layer_switches: u64,
    /// Layer changes receivers saw on their video tracks (whole run).
    receiver_layer_switches: u64,
}

impl SimulcastOutcome {
    /// Share of the received video packets that came from the layer the receiver's tile needs.
    fn at_tile_layer(&self) -> f64 {
        let total: u64 = self.by_tile.iter().flatten().sum();
        let right: u64 = self
            .by_tile
            .iter()
            .enumerate()
            .filter_map(|(class, layers)| Some(layers[self.tiles.layer(class)?]))
            .sum();
        ratio(right as f64, total as f64)
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl Outcome {
    const HEADER: &'static str = "| scenario (PxS) | participants | sent pkt/s | expected fwd pkt/s | forwarded pkt/s (/metrics) | received pkt/s (clients) | loss | server CPU (% of 1 core) | server CPU s per M fwd | server RSS idle | RSS per participant | join→first packet p50 / p99 | end-to-end delay p50 / p99 | in-server forward delay (mean) | loadgen CPU (% of 1 core) | run-queue wait server / loadgen | machine busy (all cores) | UDP receive-buffer drops | video layer changes (window) | video received at the tile's layer |";
    const RULE: &'static str =
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

    /// The scenario, with its rooms and the server's media loops where given.
    fn label(&self) -> String {
        let mut label = self.scenario.to_string();
        if self.rooms > 1 {
            label += &format!(" ×{} rooms", self.rooms);
        }
        if let Some(loops) = self.loops {
            label += &format!(", {loops} loop{}", if loops == 1 { "" } else { "s" });
        }
        label
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} % | {:.0} % | {:.2} | {:.1} MiB | {:.2} MiB | {:.0} / {:.0} ms | {:.2} / {:.2} ms | {:.1} µs | {:.0} % | {:.0} % / {:.0} % | {:.0} % | {:.1} % | {:.0} | {} |",
            self.label(),
            self.scenario.participants() * self.rooms,
            self.sent_per_s,
            self.expected_per_s,
            self.forwarded_per_s,
            self.received_per_s,
            self.loss * 100.0,
            self.server_cpu_share * 100.0,
            self.cpu_s_per_million,
            self.rss_idle as f64 / MIB,
            self.rss_per_participant / MIB,
            self.join_to_first.p50,
            self.join_to_first.p99,
            self.delay.p50,
            self.delay.p99,
            self.forward_delay_us,
            self.own_cpu_share * 100.0,
            self.server_wait_share * 100.0,
            self.own_wait_share * 100.0,
            self.machine_busy * 100.0,
            ratio(
                self.udp_rcvbuf_drops as f64,
                (self.udp_rcvbuf_drops + self.udp_delivered) as f64
            ) * 100.0,
            self.video.layer_changes,
            self.simulcast
                .as_ref()
                .map_or_else(|| "—".to_owned(), |s| format!("{:.0} %", s.at_tile_layer() * 100.0)),
        )
    }

    fn details(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "window {:.1} s; server received {:.0} pkt/s from publishers; by stamp counters: {} packets never arrived, {} arrived late (after a higher counter: reordering or NACK retransmission), {} twice; {} unstamped",
                self.window, self.server_received_per_s, self.missing, self.late, self.duplicates, self.unstamped
            ),
            format!(
                "server RSS idle {:.1} MiB, loaded {:.1} MiB (max in window {:.1} MiB)",
                self.rss_idle as f64 / MIB,
                self.rss_loaded as f64 / MIB,
                self.rss_max as f64 / MIB
            ),
            format!(
                "join→first packet over {} receive-only subscribers (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms); {} never got a packet",
                self.join_to_first.count,
                self.join_to_first.p50,
                self.join_to_first.p99,
                self.join_to_first.max,
                self.never_received
            ),
            format!(
                "end-to-end delay over {} packets: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                self.delay.count, self.delay.p50, self.delay.p99, self.delay.max
            ),
            format!(
                "in window: server media errors {:.0}, keyframe requests (server) {:.0}, client channel drops {}, client send errors {}; client problem events (whole run) {}; load average {:.2} at end; UDP (whole network namespace) {} datagrams delivered, {} dropped on full receive buffers",
                self.media_errors,
                self.keyframe_requests,
                self.client_dropped,
                self.client_send_errors,
                self.client_problems,
                self.load_average,
                self.udp_delivered,
                self.udp_rcvbuf_drops
            ),
            format!(
                "video allocation (server): in window {:.0} layer changes (pauses and resumes included), {:.0} bandwidth pauses, {:.0} dynacast updates; whole run {:.0} layer changes, {:.0} bandwidth pauses, {:.0} dynacast updates; {:.0} subscribers with a downlink estimate at the end",
                self.video.layer_changes,
                self.video.bandwidth_pauses,
                self.video.dynacast_updates,
                self.video.layer_changes_run,
                self.video.bandwidth_pauses_run,
                self.video.dynacast_updates_run,
                self.video.estimated_subscribers,
            ),
        ];
        if let Some(sc) = &self.simulcast {
            lines.push(format!(
                "simulcast: publishers sent q {:.0} / h {:.0} / f {:.0} video pkt/s; expected fwd assumes every receiver gets the layer its tile needs ({}); whole run: {} publish_layers switches at publishers, {} layer changes seen by receivers",
                sc.layer_sent_per_s[0],
                sc.layer_sent_per_s[1],
                sc.layer_sent_per_s[2],
                (0..sc.tiles.len())
                    .map(|class| {
                        let (w, h) = sc.tiles.size(class);
                        let layer = sc.tiles.layer(class).map_or("nothing", |l| SIMULCAST_RIDS[l]);
                        format!("{w}x{h} → {layer}")
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                sc.publisher_layer_switches,
                sc.receiver_layer_switches,
            ));
            for (class, layers) in sc.by_tile.iter().enumerate() {
                let (w, h) = sc.tiles.size(class);
                let total: u64 = layers.iter().sum();
                lines.push(format!(
                    "simulcast: receivers with {w}x{h} tiles got {} video packets in the window: q {:.1} % / h {:.1} % / f {:.1} %",
                    total,
                    ratio(layers[0] as f64, total as f64) * 100.0,
                    ratio(layers[1] as f64, total as f64) * 100.0,
                    ratio(layers[2] as f64, total as f64) * 100.0,
                ));
            }
        }
        lines
    }
}

async fn run_scenario(cli: &Cli, server_bin: &Path, scenario: Scenario) -> anyhow::Result<Outcome> {
    let mut server = Server::start(&ServerOptions::on_loopback(
        server_bin,
        &scenario.to_string(),
        cli.loops,
    ))?;
    server.wait_healthy().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = procfs::process_rss(server.pid)?;
    let ws = server.ws_url();
    let rooms: Vec<String> = (0..cli.rooms)
        .map(|r| format!("loadgen-{scenario}-{}-{r}", std::process::id()))
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let measuring = Arc::new(AtomicBool::new(false));
    let problems = Arc::new(AtomicU64::new(0));
    let gap = Duration::from_millis(cli.join_gap_ms);

    let mut members: Vec<Member> = Vec::with_capacity(scenario.participants() * cli.rooms);
    let join_phase = Instant::now();
    for (room, i) in rooms
        .iter()
        .flat_map(|room| (0..scenario.participants()).map(move |i| (room, i)))
    {
        let publisher = i < scenario.publishers;
        let mut options = scenario.participant_options(room, i);
        let tile = scenario.simulcast.then(|| cli.tiles.class(i));
        if let Some(class) = tile {
            let (width, height) = cli.tiles.size(class);
            options = options.with_video_tile(width, height);
        }
        let join_started = Instant::now();
        let mut participant = Participant::join(&ws, options)
            .await
            .with_context(|| format!("participant {i} of {scenario} could not join"))?;
        let media = participant.take_media().context("media channel already taken")?;
        let receiver = tokio::spawn(receive(media, stop_rx.clone(), Arc::clone(&measuring)));
        watch_events(&mut participant, Arc::clone(&problems), stop_rx.clone());
        if publisher {
            participant.start_media();
        }
        members.push(Member {
            participant,
            publisher,
            tile,
            join_started,
            receiver,
        });
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    eprintln!(
        "   {} participants joined in {:.1} s; warming up {} s",
        members.len(),
        join_phase.elapsed().as_secs_f64(),
        cli.warmup
    );
    tokio::time::sleep(Duration::from_secs(cli.warmup)).await;

    let before = Snapshot::take(&server, &members).await?;
    measuring.store(true, Ordering::Relaxed);
    let mut rss_max = 0;
    let window_end = before.at + Duration::from_secs(cli.seconds);
    while Instant::now() < window_end {
        let left = window_end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        rss_max = rss_max.max(procfs::process_rss(server.pid)?);
    }
    measuring.store(false, Ordering::Relaxed);
    let after = Snapshot::take(&server, &members).await?;
    let rss_loaded = procfs::process_rss(server.pid)?;
    let load_average = procfs::load_average().unwrap_or(f64::NAN);
    let _ = stop_tx.send(true);

    let mut tallies = Vec::with_capacity(members.len());
    let mut by_tile = vec![[0u64; 3]; cli.tiles.len()];
    let mut receiver_layer_switches = 0;
    let mut join_to_first = Vec::new();
    let mut never_received = 0;
    let mut participants = Vec::with_capacity(members.len());
    for m in members {
        let got = tokio::time::timeout(Duration::from_secs(10), m.receiver)
            .await
            .context("a receiver did not stop")??;
        if !m.publisher {
            match got.first_packet {
                Some(first) => join_to_first.push(first.duration_since(m.join_started).as_secs_f64() * 1000.0),
                None => never_received += 1,
            }
        }
        if let Some(tile) = m.tile {
            for (total, n) in by_tile[tile].iter_mut().zip(got.video_layers) {
                *total += n;
            }
        }
        receiver_layer_switches += got.layer_switches;
        tallies.push(got.tally);
        participants.push(m.participant);
    }
    let mut closing = JoinSet::new();
    for p in participants {
        closing.spawn(p.close());
    }
    if tokio::time::timeout(Duration::from_secs(15), async {
        while closing.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        eprintln!("   some participants did not close within 15 s");
        closing.abort_all();
    }
    server.stop().await;

    let window = after.at.duration_since(before.at).as_secs_f64();
    let delta = |name: &str| after.counter(name) - before.counter(name);
    let forwarded = delta("samtal_forwarded_packets_total");
    let forward_delay_ns = delta("samtal_forward_delay_nanoseconds_total");
    let received: u64 = tallies.iter().map(|t| t.measured).sum();
    let unique: u64 = tallies.iter().map(|t| t.unique()).sum();
    let missing: u64 = tallies.iter().map(|t| t.missing()).sum();
    let mut delays: Vec<f64> = tallies
        .iter()
        .flat_map(|t| t.delays_us.iter().map(|&d| d as f64 / 1000.0))
        .collect();
    let sent_per_s = (after.sent - before.sent) as f64 / window;
    let server_cpu = (after.server_cpu - before.server_cpu).as_secs_f64();
    let rss_per_participant = rss_loaded.saturating_sub(rss_idle) as f64 / (scenario.participants() * cli.rooms) as f64;
    let receivers_per_track = (scenario.publishers - 1 + scenario.subscribers) as f64;
    let layer_sent_per_s: [f64; 3] =
        std::array::from_fn(|l| (after.layer_sent[l] - before.layer_sent[l]) as f64 / window);
    let simulcast = scenario.simulcast.then(|| SimulcastOutcome {
        layer_sent_per_s,
        tiles: cli.tiles.clone(),
        by_tile,
        publisher_layer_switches: after.client.layer_switches,
        receiver_layer_switches,
    });
    // Every published packet goes to the other P-1 publishers and to all S subscribers; with
    // simulcast, audio does, and each receiver gets one layer of each camera: the one its tile needs.
    let expected_per_s = if scenario.simulcast {
        let audio_per_s = (after.audio_sent - before.audio_sent) as f64 / window;
        let pairs = cli.tiles.video_pairs(&scenario);
        audio_per_s * receivers_per_track
            + pairs
                .iter()
                .enumerate()
                .filter_map(|(class, &n)| {
                    let layer = cli.tiles.layer(class)?;
                    Some(layer_sent_per_s[layer] / scenario.publishers as f64 * n as f64)
                })
                .sum::<f64>()
    } else {
        sent_per_s * receivers_per_track
    };
    Ok(Outcome {
        scenario,
        rooms: cli.rooms,
        loops: cli.loops,
        window,
        sent_per_s,
        expected_per_s,
        forwarded_per_s: forwarded / window,
        received_per_s: received as f64 / window,
        server_received_per_s: delta("samtal_received_packets_total") / window,
        loss: ratio(missing as f64, (unique + missing) as f64),
        missing,
        late: tallies.iter().map(|t| t.late).sum(),
        duplicates: tallies.iter().map(|t| t.duplicates).sum(),
        unstamped: tallies.iter().map(|t| t.unstamped).sum(),
        server_cpu_share: server_cpu / window,
        cpu_s_per_million: ratio(server_cpu, forwarded / 1e6),
        rss_idle,
        rss_loaded,
        rss_max,
        rss_per_participant,
        join_to_first: Summary::of(&mut join_to_first),
        never_received,
        delay: Summary::of(&mut delays),
        forward_delay_us: ratio(forward_delay_ns, forwarded) / 1000.0,
        own_cpu_share: (after.own_cpu - before.own_cpu).as_secs_f64() / window,
        server_wait_share: after.server_wait.saturating_sub(before.server_wait).as_secs_f64() / window,
        own_wait_share: after.own_wait.saturating_sub(before.own_wait).as_secs_f64() / window,
        machine_busy: procfs::busy_share(before.machine, after.machine),
        udp_rcvbuf_drops: after.udp.rcvbuf_errors.saturating_sub(before.udp.rcvbuf_errors),
        udp_delivered: after.udp.in_datagrams.saturating_sub(before.udp.in_datagrams),
        load_average,
        media_errors: delta("samtal_media_errors_total"),
        keyframe_requests: delta("samtal_keyframe_requests_total"),
        client_dropped: after.client.media_dropped - before.client.media_dropped,
        client_send_errors: after.client.send_errors - before.client.send_errors,
        client_problems: problems.load(Ordering::Relaxed),
        simulcast,
        video: VideoAllocation {
            layer_changes: delta("samtal_video_layer_changes_total"),
            bandwidth_pauses: delta("samtal_bandwidth_video_pauses_total"),
            dynacast_updates: delta("samtal_dynacast_updates_total"),
            layer_changes_run: after.counter("samtal_video_layer_changes_total"),
            bandwidth_pauses_run: after.counter("samtal_bandwidth_video_pauses_total"),
            dynacast_updates_run: after.counter("samtal_dynacast_updates_total"),
            estimated_subscribers: after.counter("samtal_estimated_subscribers"),
        },
    })
}
