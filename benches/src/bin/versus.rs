//! `samtal-versus`: Samtal and Janus side by side under the same load, in alternating runs.
//!
//! Both servers run in a network namespace the benchmark creates, each on the namespace's own
//! address (Janus skips loopback interfaces when it picks ICE addresses), with a veth pair to the
//! load generator. The load is the same `samtal-client` participants in both runs (webrtc-rs,
//! synthetic Opus at 50 packets/s and VP8 at ~1 Mbit/s): Samtal is joined directly; Janus through
//! a gateway on the load generator's side that speaks Samtal's signaling to the clients and
//! Janus's videoroom API to Janus ([`samtal_bench::janus::gateway`]). Media goes between the
//! clients and the server under test only.
//!
//! For each scenario and round it runs Samtal, then Janus (tuned: `event_loops` = the core count),
//! measures a window after a warm-up, and prints one table: per server, packets received by all
//! subscribers per second, loss against what the publishers sent, the server's CPU, and server
//! CPU µs per forwarded (received) packet — counted the same way for both — with the ratio.
//!
//! ```text
//! cargo build --release -p samtal-signaling -p samtal-bench
//! sudo target/release/samtal-versus --scenario 8x8-audio --scenario 4x12-audio --rounds 2
//! ```
//! Needs root (network namespace) and Debian's `janus` package.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use samtal_bench::janus::gateway::Gateway;
use samtal_bench::janus::{Janus, JanusOptions};
use samtal_bench::procfs;
use samtal_bench::scenario::Scenario;
use samtal_bench::server::{Server, ServerOptions, free_tcp_port, server_binary};
use samtal_bench::stats::ratio;
use samtal_client::Participant;
use samtal_e2e::netns::Namespace;

/// Samtal and Janus under the same WebRTC load, side by side.
#[derive(Parser, Debug)]
#[command(name = "samtal-versus", version)]
struct Cli {
    /// PxS (audio + video), PxS-audio (audio only): P publishers that also receive each other,
    /// S receive-only subscribers, one room. Simulcast is not compared.
    #[arg(long = "scenario", default_values = ["8x8-audio", "4x12-audio"])]
    scenarios: Vec<Scenario>,
    /// Runs of each server per scenario (alternating).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Warm-up after the last join and before the window, seconds.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// The `samtal` server binary; default: `samtal` next to this executable.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Samtal's media loops; default: its own (one per core).
    #[arg(long)]
    loops: Option<usize>,
    /// The `janus` binary.
    #[arg(long, default_value = "/usr/bin/janus")]
    janus_bin: PathBuf,
    /// Janus's `event_loops`; default: the core count (0 = stock Janus, a thread per handle).
    #[arg(long)]
    event_loops: Option<usize>,
}

/// What every run shares.
struct Bench<'a> {
    cli: &'a Cli,
    ns: &'a Namespace,
    server_bin: &'a Path,
    event_loops: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Samtal,
    Janus,
}

/// One run's figures.
struct Run {
    received_per_s: f64,
    expected_per_s: f64,
    server_cpu_share: f64,
    loadgen_cpu_share: f64,
    machine_busy: f64,
    rss_per_participant: f64,
}

impl Run {
    fn loss(&self) -> f64 {
        (1.0 - ratio(self.received_per_s, self.expected_per_s)).max(0.0)
    }

    /// Server CPU µs per forwarded packet (counted where the subscribers received it).
    fn us_per_packet(&self) -> f64 {
        ratio(self.server_cpu_share * 1e6, self.received_per_s)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    samtal_bench::init_logging();
    let cli = Cli::parse();
    if cli.seconds == 0 || cli.rounds == 0 {
        bail!("--seconds and --rounds must be at least 1");
    }
    if cli.scenarios.iter().any(|s| s.simulcast) {
        bail!("simulcast is not compared (Janus's videoroom chooses layers by its own rules)");
    }
    let server_bin = server_binary(cli.server_bin.as_deref())?;
    if !cli.janus_bin.is_file() {
        bail!("no janus at {} (apt-get install janus)", cli.janus_bin.display());
    }
    let event_loops = cli.event_loops.unwrap_or_else(procfs::cpus);
    let ns = Namespace::create("versus");
    println!(
        "# samtal-versus: {} CPUs ({}), load average {:.2} at start, warm-up {} s, window {} s, {} round(s)",
        procfs::cpus(),
        procfs::cpu_model(),
        procfs::load_average().unwrap_or(f64::NAN),
        cli.warmup,
        cli.seconds,
        cli.rounds
    );
    println!(
        "# servers in network namespace {} at {}, clients at {}; Samtal media loops: {}; Janus event_loops = {event_loops}",
        ns.name,
        ns.inner_ip,
        ns.host_ip,
        cli.loops.map_or("default (one per core)".to_owned(), |n| n.to_string())
    );
    let bench = Bench {
        cli: &cli,
        ns: &ns,
        server_bin: &server_bin,
        event_loops,
    };
    let mut table = Vec::new();
    for &scenario in &cli.scenarios {
        let mut runs: Vec<(Target, Run)> = Vec::new();
        for round in 0..cli.rounds {
            for target in [Target::Samtal, Target::Janus] {
                eprintln!("== {scenario}, round {}: {target:?}", round + 1);
                let run = run(&bench, scenario, target)
                    .await
                    .with_context(|| format!("{target:?} on {scenario}"))?;
                println!(
                    "# {scenario} round {} {target:?}: {:.0} pkt/s received of {:.0} expected, server CPU {:.0} % of a core, {:.2} µs per packet, machine busy {:.0} %, load generator {:.0} % of a core",
                    round + 1,
                    run.received_per_s,
                    run.expected_per_s,
                    run.server_cpu_share * 100.0,
                    run.us_per_packet(),
                    run.machine_busy * 100.0,
                    run.loadgen_cpu_share * 100.0
                );
                runs.push((target, run));
            }
        }
        table.push((scenario, runs));
    }
    println!();
    println!(
        "| scenario (PxS) | server | received pkt/s (all subscribers) | loss | server CPU (% of 1 core) | server CPU µs per forwarded packet (each round) | RSS per participant | machine busy | Samtal ÷ Janus |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, runs) in &table {
        let mean = |target: Target, f: &dyn Fn(&Run) -> f64| {
            let values: Vec<f64> = runs.iter().filter(|(t, _)| *t == target).map(|(_, r)| f(r)).collect();
            values.iter().sum::<f64>() / values.len().max(1) as f64
        };
        let per_packet = |target: Target| mean(target, &|r| r.us_per_packet());
        let ratio_text = format!("{:.2}", ratio(per_packet(Target::Samtal), per_packet(Target::Janus)));
        for target in [Target::Samtal, Target::Janus] {
            let rounds: Vec<String> = runs
                .iter()
                .filter(|(t, _)| *t == target)
                .map(|(_, r)| format!("{:.2}", r.us_per_packet()))
                .collect();
            println!(
                "| {scenario} | {} | {:.0} | {:.2} % | {:.0} % | **{:.2}** ({}) | {:.2} MiB | {:.0} % | {} |",
                match target {
                    Target::Samtal => "Samtal".to_owned(),
                    Target::Janus => format!("Janus 1.1.2, event_loops = {event_loops}"),
                },
                mean(target, &|r| r.received_per_s),
                mean(target, &|r| r.loss()) * 100.0,
                mean(target, &|r| r.server_cpu_share) * 100.0,
                per_packet(target),
                rounds.join(", "),
                mean(target, &|r| r.rss_per_participant) / (1024.0 * 1024.0),
                mean(target, &|r| r.machine_busy) * 100.0,
                if target == Target::Samtal {
                    ratio_text.as_str()
                } else {
                    ""
                },
            );
        }
    }
    Ok(())
}

/// The server under test, whichever it is.
enum Running {
    Samtal(Server),
    Janus(Janus, Gateway),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Samtal(server) => server.pid,
            Running::Janus(janus, _) => janus.pid,
        }
    }

    fn ws_url(&self) -> String {
        match self {
            Running::Samtal(server) => server.ws_url(),
            Running::Janus(_, gateway) => gateway.ws_url(),
        }
    }
}

async fn start(bench: &Bench<'_>, scenario: Scenario, target: Target) -> anyhow::Result<Running> {
    let Bench {
        cli,
        ns,
        server_bin,
        event_loops,
    } = *bench;
    let wrapper: Vec<String> = ["ip", "netns", "exec", &ns.name].map(str::to_owned).to_vec();
    Ok(match target {
        Target::Samtal => {
            let tag = scenario.to_string();
            let mut server = Server::start(&ServerOptions {
                binary: server_bin,
                tag: &tag,
                loops: cli.loops,
                wrapper,
                ip: ns.inner_ip,
            })?;
            server.wait_healthy().await?;
            Running::Samtal(server)
        }
        Target::Janus => {
            let mut janus = Janus::start(&JanusOptions {
                binary: cli.janus_bin.clone(),
                wrapper,
                ip: ns.inner_ip,
                port: free_tcp_port()?,
                event_loops,
            })?;
            janus.wait_ready().await?;
            let gateway = Gateway::start(IpAddr::from([127, 0, 0, 1]), janus.ws_url()).await?;
            Running::Janus(janus, gateway)
        }
    })
}

/// Counters summed over all participants at one instant.
struct Snapshot {
    at: Instant,
    server_cpu: Duration,
    own_cpu: Duration,
    machine: (u64, u64),
    received: u64,
    /// Per publisher, packets it sent.
    sent: Vec<u64>,
}

fn snapshot(pid: u32, participants: &[Participant], publishers: usize) -> anyhow::Result<Snapshot> {
    let stats: Vec<_> = participants.iter().map(Participant::stats).collect();
    Ok(Snapshot {
        at: Instant::now(),
        server_cpu: procfs::process_cpu(Some(pid))?,
        own_cpu: procfs::process_cpu(None)?,
        machine: procfs::machine_ticks()?,
        received: stats.iter().map(|s| s.media_received + s.media_dropped).sum(),
        sent: stats[..publishers]
            .iter()
            .map(|s| s.audio_packets_sent + s.video_packets_sent)
            .collect(),
    })
}

async fn run(bench: &Bench<'_>, scenario: Scenario, target: Target) -> anyhow::Result<Run> {
    let (cli, ns) = (bench.cli, bench.ns);
    let running = start(bench, scenario, target).await?;
    let pid = running.pid();
    let rss_idle = procfs::process_rss(pid)?;
    let ws = running.ws_url();
    let room = format!("versus-{scenario}-{}", std::process::id());
    let mut participants = Vec::with_capacity(scenario.participants());
    for i in 0..scenario.participants() {
        let publisher = i < scenario.publishers;
        let mut options = scenario.participant_options(&room, i);
        options.bind_ip = ns.host_ip;
        let mut participant = Participant::join(&ws, options)
            .await
            .with_context(|| format!("participant {i} could not join"))?;
        // Keep reading what arrives (the stats count it); the content is not looked at.
        let mut media = participant.take_media().context("media channel already taken")?;
        tokio::spawn(async move { while media.recv().await.is_some() {} });
        if publisher {
            participant.start_media();
        }
        participants.push(participant);
    }
    tokio::time::sleep(Duration::from_secs(cli.warmup)).await;
    let before = snapshot(pid, &participants, scenario.publishers)?;
    tokio::time::sleep(Duration::from_secs(cli.seconds)).await;
    let after = snapshot(pid, &participants, scenario.publishers)?;
    let rss_loaded = procfs::process_rss(pid)?;
    let window = after.at.duration_since(before.at).as_secs_f64();
    let fan_out = scenario.receivers_per_publisher() as f64;
    let expected: f64 = after
        .sent
        .iter()
        .zip(&before.sent)
        .map(|(a, b)| (a - b) as f64 * fan_out)
        .sum();
    let result = Run {
        received_per_s: (after.received - before.received) as f64 / window,
        expected_per_s: expected / window,
        server_cpu_share: (after.server_cpu - before.server_cpu).as_secs_f64() / window,
        loadgen_cpu_share: (after.own_cpu - before.own_cpu).as_secs_f64() / window,
        machine_busy: procfs::busy_share(before.machine, after.machine),
        rss_per_participant: rss_loaded.saturating_sub(rss_idle) as f64 / scenario.participants() as f64,
    };
    for participant in participants {
        participant.close().await;
    }
    match running {
        Running::Samtal(server) => server.stop().await,
        Running::Janus(janus, gateway) => {
            drop(gateway);
            drop(janus);
        }
    }
    Ok(result)
}
