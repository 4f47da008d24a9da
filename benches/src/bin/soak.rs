//! `samtal-soak`: the server's memory over a long run with joins and leaves.
//!
//! It starts the `samtal` binary as a separate process on free loopback ports, reads its RSS with
//! nobody joined, then fills R rooms with N participants each (each publishes audio, with
//! `--video` also video, and receives the others). Every T seconds the longest-present participant
//! of each room leaves (`close`) and a new one joins. Every participant's media is read all the
//! time, so no client falls behind. Every S seconds one markdown table row: participants, joins and
//! leaves so far, the server's RSS and RSS per participant, its CPU, and the packets all clients
//! received. At the end a summary: RSS after the warm-up and at the end, the least-squares slope of
//! RSS over the second half of the run, the largest RSS per participant, and a verdict against the
//! goals (≤ 1 MiB per participant; flat = slope over the second half < 2 MiB/hour).
//!
//! ```text
//! cargo build --release -p samtal-signaling -p samtal-bench
//! target/release/samtal-soak --minutes 60
//! target/release/samtal-soak --minutes 3 --churn-secs 5 --sample-secs 20
//! ```
//!
//! Exits non-zero when the server dies, when a join fails three times in a row, or when a room
//! received nothing during a whole sample interval.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use samtal_bench::metrics;
use samtal_bench::procfs;
use samtal_bench::server::{Server, ServerOptions, server_binary};
use samtal_bench::stats::{ratio, slope};
use samtal_client::samtal_protocol::ServerMessage;
use samtal_client::{Participant, ParticipantEvent, ParticipantOptions, RTCPeerConnectionState, Received};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Memory soak of the Samtal SFU: rooms with participants coming and going for a long time.
#[derive(Parser, Debug)]
#[command(name = "samtal-soak", version)]
struct Cli {
    /// Length of the run after the rooms are filled, minutes.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Rooms side by side.
    #[arg(long, default_value_t = 4)]
    rooms: usize,
    /// Participants per room; each publishes audio and receives the others.
    #[arg(long, default_value_t = 6)]
    size: usize,
    /// Participants also publish video (synthetic VP8, ~1 Mbit/s).
    #[arg(long)]
    video: bool,
    /// Every this many seconds the longest-present participant of each room leaves and a new one
    /// joins; 0: nobody leaves.
    #[arg(long, default_value_t = 10)]
    churn_secs: u64,
    /// Seconds between two samples (table rows).
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// The server's media loops (`[media] loops`); default: its own default, one per core.
    #[arg(long)]
    loops: Option<usize>,
    /// The `samtal` server binary; default: `samtal` next to this executable (same target dir).
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

const MIB: f64 = 1024.0 * 1024.0;
/// Samples before this are the warm-up (allocator pools and caches filling).
const WARM_UP: Duration = Duration::from_secs(120);
/// The goals: RSS per participant, and the RSS slope over the second half that still counts as flat.
const GOAL_MIB_PER_PARTICIPANT: f64 = 1.0;
const GOAL_SLOPE_MIB_PER_HOUR: f64 = 2.0;
/// Tries of one join before the run gives up.
const JOIN_TRIES: usize = 3;

/// A joined participant, and the task that reads its media and events.
struct Member {
    participant: Participant,
    reader: JoinHandle<()>,
}

struct Room {
    name: String,
    /// Longest-present first.
    members: VecDeque<Member>,
    /// Packets its members received, all of them together, whole run.
    received: Arc<AtomicU64>,
    /// `received` at the last sample.
    received_at_sample: u64,
}

/// Joins and leaves, and what went wrong with them.
struct Churn {
    server_pid: u32,
    ws: String,
    video: bool,
    joins: u64,
    leaves: u64,
    failed_joins: u64,
    /// Negotiation failures, failed connections and server errors the participants saw.
    problems: Arc<AtomicU64>,
    next_name: u64,
}

impl Churn {
    /// Joins a new participant to `room`, retrying a failed join; an error after [`JOIN_TRIES`]
    /// failures in a row.
    async fn join(&mut self, room: &mut Room) -> anyhow::Result<()> {
        for attempt in 1..=JOIN_TRIES {
            self.next_name += 1;
            let mut options = ParticipantOptions::new(&room.name, format!("p{}", self.next_name)).with_audio();
            if self.video {
                options = options.with_video();
            }
            match Participant::join(&self.ws, options).await {
                Ok(mut participant) => {
                    let media = participant.take_media().context("media channel already taken")?;
                    let events = participant.take_events().context("event channel already taken")?;
                    let reader = tokio::spawn(read(
                        media,
                        events,
                        Arc::clone(&room.received),
                        Arc::clone(&self.problems),
                    ));
                    participant.start_media();
                    room.members.push_back(Member { participant, reader });
                    self.joins += 1;
                    return Ok(());
                }
                Err(e) if attempt < JOIN_TRIES => {
                    self.failed_joins += 1;
                    eprintln!("   a join to {} failed (try {attempt} of {JOIN_TRIES}): {e}", room.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    self.failed_joins += 1;
                    // A dead server is the news, not the joins it refused.
                    server_rss(self.server_pid)?;
                    bail!(
                        "a join to {} failed {JOIN_TRIES} times in a row; the last: {e}",
                        room.name
                    );
                }
            }
        }
        unreachable!("the last try returns")
    }

    /// The longest-present participant of `room` leaves.
    async fn leave(&mut self, room: &mut Room) {
        let Some(member) = room.members.pop_front() else {
            return;
        };
        member.reader.abort();
        if tokio::time::timeout(Duration::from_secs(10), member.participant.close())
            .await
            .is_err()
        {
            eprintln!("   a participant of {} did not close within 10 s", room.name);
        }
        self.leaves += 1;
    }
}

/// Reads a participant's media (counting packets) and events (counting trouble) until both end.
async fn read(
    mut media: mpsc::Receiver<Received>,
    mut events: mpsc::UnboundedReceiver<ParticipantEvent>,
    received: Arc<AtomicU64>,
    problems: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut events_open = true;
    loop {
        tokio::select! {
            n = media.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Ordering::Relaxed);
                batch.clear();
            }
            event = events.recv(), if events_open => match event {
                None => events_open = false,
                Some(ParticipantEvent::NegotiationFailed { pc, message }) => {
                    eprintln!("   {pc:?} negotiation failed: {message}");
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                Some(ParticipantEvent::ConnectionState { pc, state: RTCPeerConnectionState::Failed }) => {
                    eprintln!("   {pc:?} connection failed");
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                Some(ParticipantEvent::Server(ServerMessage::Error { code, message, .. })) => {
                    eprintln!("   server error {code:?}: {message}");
                    problems.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
            },
        }
    }
}

/// One table row's figures.
struct Sample {
    elapsed: Duration,
    participants: usize,
    rss: u64,
}

impl Sample {
    fn minutes(&self) -> f64 {
        self.elapsed.as_secs_f64() / 60.0
    }

    /// (RSS − idle RSS) / participants, MiB.
    fn mib_per_participant(&self, rss_idle: u64) -> f64 {
        ratio(self.rss.saturating_sub(rss_idle) as f64 / MIB, self.participants as f64)
    }
}

/// The server's RSS; an error saying it died when it is gone (a dead child that was not reaped
/// yet has no `VmRSS`).
fn server_rss(pid: u32) -> anyhow::Result<u64> {
    procfs::process_rss(pid).with_context(|| format!("the server (pid {pid}) died"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    samtal_bench::init_logging();
    let cli = Cli::parse();
    if cli.minutes == 0 || cli.rooms == 0 || cli.sample_secs == 0 {
        bail!("--minutes, --rooms and --sample-secs must be at least 1");
    }
    if cli.size < 2 {
        bail!("--size must be at least 2 (a participant alone in a room receives nothing)");
    }
    let server_bin = server_binary(cli.server_bin.as_deref())?;
    println!(
        "# samtal-soak: {} CPUs ({}), load average {:.2} at start; {} rooms × {} participants (audio{}), churn every {} s, sample every {} s, {} min",
        procfs::cpus(),
        procfs::cpu_model(),
        procfs::load_average().unwrap_or(f64::NAN),
        cli.rooms,
        cli.size,
        if cli.video { " + video" } else { "" },
        cli.churn_secs,
        cli.sample_secs,
        cli.minutes
    );

    let mut server = Server::start(&ServerOptions::on_loopback(&server_bin, "soak", cli.loops))?;
    server.wait_healthy().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = server_rss(server.pid)?;
    println!("# server RSS idle (nobody joined): {:.1} MiB", rss_idle as f64 / MIB);

    let mut churn = Churn {
        server_pid: server.pid,
        ws: server.ws_url(),
        video: cli.video,
        joins: 0,
        leaves: 0,
        failed_joins: 0,
        problems: Arc::new(AtomicU64::new(0)),
        next_name: 0,
    };
    let mut rooms: Vec<Room> = (0..cli.rooms)
        .map(|r| Room {
            name: format!("soak-{}-{r}", std::process::id()),
            members: VecDeque::new(),
            received: Arc::new(AtomicU64::new(0)),
            received_at_sample: 0,
        })
        .collect();
    let fill = Instant::now();
    for room in &mut rooms {
        for _ in 0..cli.size {
            churn.join(room).await?;
        }
    }
    eprintln!(
        "   {} participants joined in {:.1} s",
        churn.joins,
        fill.elapsed().as_secs_f64()
    );

    let total = Duration::from_secs(cli.minutes * 60);
    let sample_every = Duration::from_secs(cli.sample_secs);
    let churn_every = Duration::from_secs(cli.churn_secs);
    let start = Instant::now();
    for room in &mut rooms {
        room.received_at_sample = room.received.load(Ordering::Relaxed);
    }
    let mut last_at = start;
    let mut last_cpu = procfs::process_cpu(Some(server.pid))?;
    let mut next_sample = sample_every.min(total);
    let mut next_churn = churn_every;
    let mut samples: Vec<Sample> = Vec::new();
    let mut silent_rooms = 0u64;
    println!();
    println!(
        "| elapsed (min) | participants | joins | leaves | server RSS (MiB) | RSS per participant (MiB) | server CPU (% of 1 core) | received pkt/s (all clients) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    loop {
        let churn_due = !churn_every.is_zero() && next_churn < next_sample;
        let due = if churn_due { next_churn } else { next_sample };
        tokio::time::sleep_until((start + due).into()).await;
        if churn_due {
            for room in &mut rooms {
                churn.leave(room).await;
                churn.join(room).await?;
            }
            // A slow round of joins skips the rounds it overran instead of bunching them up.
            while next_churn <= start.elapsed() {
                next_churn += churn_every;
            }
            continue;
        }

        let rss = server_rss(server.pid)?;
        let cpu = procfs::process_cpu(Some(server.pid))?;
        let now = Instant::now();
        let interval = now.duration_since(last_at).as_secs_f64();
        let mut received = 0;
        for room in &mut rooms {
            let so_far = room.received.load(Ordering::Relaxed);
            let delta = so_far - room.received_at_sample;
            if delta == 0 {
                silent_rooms += 1;
                eprintln!("   {} received nothing in the last {interval:.0} s", room.name);
            }
            received += delta;
            room.received_at_sample = so_far;
        }
        let sample = Sample {
            elapsed: now.duration_since(start),
            participants: rooms.iter().map(|r| r.members.len()).sum(),
            rss,
        };
        println!(
            "| {:.1} | {} | {} | {} | {:.1} | {:.3} | {:.0} % | {:.0} |",
            sample.minutes(),
            sample.participants,
            churn.joins,
            churn.leaves,
            rss as f64 / MIB,
            sample.mib_per_participant(rss_idle),
            (cpu - last_cpu).as_secs_f64() / interval * 100.0,
            received as f64 / interval,
        );
        samples.push(sample);
        (last_at, last_cpu) = (now, cpu);
        if next_sample >= total {
            break;
        }
        next_sample = (next_sample + sample_every).min(total);
    }

    // Everyone leaves; what the server holds afterwards.
    let mut closing = JoinSet::new();
    for member in rooms.iter_mut().flat_map(|r| r.members.drain(..)) {
        member.reader.abort();
        closing.spawn(member.participant.close());
    }
    if tokio::time::timeout(Duration::from_secs(15), closing.join_all())
        .await
        .is_err()
    {
        eprintln!("   some participants did not close within 15 s");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server_rss(server.pid)?;
    let participants_after = metrics::scrape(server.http)
        .await
        .ok()
        .and_then(|m| m.get("samtal_participants").copied());
    server.stop().await;

    // The summary.
    let warm = samples
        .iter()
        .find(|s| s.elapsed >= WARM_UP)
        .or(samples.first())
        .context("no samples")?;
    let last = samples.last().context("no samples")?;
    let second_half: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.elapsed >= total / 2)
        .map(|s| (s.elapsed.as_secs_f64() / 3600.0, s.rss as f64 / MIB))
        .collect();
    let slope_mib_per_hour = slope(&second_half);
    let peak = samples
        .iter()
        .max_by(|a, b| {
            a.mib_per_participant(rss_idle)
                .total_cmp(&b.mib_per_participant(rss_idle))
        })
        .context("no samples")?;
    let peak_per_participant = peak.mib_per_participant(rss_idle);
    let problems = churn.problems.load(Ordering::Relaxed);

    println!();
    println!("Summary:");
    println!("- server RSS idle (nobody joined): {:.1} MiB", rss_idle as f64 / MIB);
    println!(
        "- RSS at the first sample after the {}-minute warm-up ({:.1} min): {:.1} MiB; at the end ({:.1} min): {:.1} MiB",
        WARM_UP.as_secs() / 60,
        warm.minutes(),
        warm.rss as f64 / MIB,
        last.minutes(),
        last.rss as f64 / MIB
    );
    println!(
        "- least-squares slope of RSS over the second half ({} samples from {:.1} min on): {}",
        second_half.len(),
        total.as_secs_f64() / 120.0,
        slope_mib_per_hour.map_or("— (fewer than two samples)".to_owned(), |s| format!(
            "{s:.2} MiB/hour"
        ))
    );
    println!(
        "- largest RSS per participant: {peak_per_participant:.3} MiB ({} participants at {:.1} min)",
        peak.participants,
        peak.minutes()
    );
    println!(
        "- {} joins ({} failed tries), {} leaves; {problems} problem events at clients (failed negotiations or connections, server errors); {silent_rooms} times a room received nothing during a sample interval",
        churn.joins, churn.failed_joins, churn.leaves
    );
    println!(
        "- after everyone left: RSS {:.1} MiB ({:+.1} MiB against idle); the server counts {} participants",
        rss_after as f64 / MIB,
        (rss_after as f64 - rss_idle as f64) / MIB,
        participants_after.map_or("?".to_owned(), |n| format!("{n:.0}"))
    );
    let per_participant_ok = peak_per_participant <= GOAL_MIB_PER_PARTICIPANT;
    let flat_ok = slope_mib_per_hour.is_some_and(|s| s < GOAL_SLOPE_MIB_PER_HOUR);
    println!(
        "- verdict: memory per participant ≤ {GOAL_MIB_PER_PARTICIPANT} MiB: {} (largest {peak_per_participant:.3} MiB); flat (least-squares RSS slope over the second half of the run < {GOAL_SLOPE_MIB_PER_HOUR} MiB/hour): {} ({})",
        if per_participant_ok { "PASS" } else { "FAIL" },
        if flat_ok { "PASS" } else { "FAIL" },
        slope_mib_per_hour.map_or("no slope".to_owned(), |s| format!("{s:.2} MiB/hour"))
    );
    if silent_rooms > 0 {
        bail!("{silent_rooms} times a room received nothing during a whole sample interval");
    }
    Ok(())
}
