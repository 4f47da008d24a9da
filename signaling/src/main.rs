//! The `samtal` command: `serve` runs signaling and the SFU in one process on embedded defaults,
//! `token` mints a join token for the configured secret, `api-key` makes a service account's key,
//! `verify` checks transcript hash chains, exported files and the audit trail, `models` checks and
//! fetches Whisper models.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use samtal_protocol::Role;
use samtal_signaling::{Config, auth};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "samtal",
    version,
    about = "Self-hosted video meetings with local transcription"
)]
struct Cli {
    /// Configuration file (TOML); SAMTAL_* environment variables override it.
    #[arg(long, short, global = true, env = "SAMTAL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start signaling, SFU and web client.
    Serve {
        /// HTTP address, overriding the configuration (e.g. 0.0.0.0:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// UDP port for media, overriding the configuration.
        #[arg(long)]
        udp_port: Option<u16>,
        /// TCP port for media (ICE-TCP), overriding the configuration.
        #[arg(long)]
        tcp_port: Option<u16>,
    },
    /// Mint a join token signed with auth.secret.
    Token {
        #[arg(long)]
        room: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = parse_role, default_value = "participant")]
        role: Role,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl: u64,
    },
    /// Make an API key for a service account; prints the key and the configuration to add.
    ApiKey {
        /// Names the account in the audit trail.
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role, default_value = "compliance")]
        role: Role,
    },
    /// Check stored transcripts, an exported file and the audit trail; exits with status 1 and
    /// prints where, when something was altered. Without options: every meeting and the audit trail.
    Verify {
        /// The store to check, instead of the configured one (sqlite://PATH or postgres://…).
        #[arg(long)]
        database_url: Option<String>,
        /// Only this meeting (with --export: the meeting of an SRT file, which names none).
        #[arg(long)]
        meeting: Option<String>,
        /// An exported transcript (.vtt, .srt, .txt, .json) to check against the store.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The digest of an SRT export (from its X-Transcript-Digest download header).
        #[arg(long)]
        digest: Option<String>,
    },
    /// Ask a running server to drain: it starts no new meetings (its /readyz fails) while the ones it
    /// holds go on. With --wait, waits until they are over; exits with status 1 if time runs out.
    Drain {
        /// The server's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An administrator's token or API key.
        #[arg(long, env = "SAMTAL_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Seconds to wait for its meetings to end (0: do not wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Whisper model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Check a model file without loading it (format, tensors, checksum).
    Verify { path: PathBuf },
    /// Download a catalogued model from its official source and verify it.
    Fetch {
        name: String,
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
    /// List the catalogued models.
    List,
}

fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown role {s:?} (participant, moderator, service, compliance, administrator)"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SAMTAL_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            listen,
            udp_port,
            tcp_port,
        } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(port) = udp_port {
                config.media.udp_port = port;
            }
            if let Some(port) = tcp_port {
                config.media.tcp_port = port;
            }
            let server = samtal_signaling::start(config).await?;
            println!("Samtal is running: open {}/ in your browser", server.http_url());
            let signal = stop_signal().await;
            let drain = Duration::from_secs(server.state.config.limits.drain_secs);
            if signal == "SIGTERM" && !drain.is_zero() {
                tracing::info!("SIGTERM: draining for at most {} s", drain.as_secs());
                tokio::select! {
                    empty = server.drain(drain) => if empty {
                        tracing::info!("drained: nobody is left");
                    } else {
                        tracing::warn!("drain time is up with participants left");
                    },
                    again = stop_signal() => tracing::info!("{again}: stopping without waiting"),
                }
            }
            tracing::info!("{signal}: shutting down");
            server.shutdown().await;
        }
        Command::Drain { url, token, wait } => {
            if !drain(&url, &token, Duration::from_secs(wait))? {
                std::process::exit(1);
            }
        }
        Command::Token { room, name, role, ttl } => {
            let Some(secret) = config.auth.secret.as_deref() else {
                bail!("no auth.secret configured (set it in the config file or SAMTAL_AUTH__SECRET)");
            };
            println!(
                "{}",
                auth::mint(secret, &room, name.as_deref(), role, Duration::from_secs(ttl))?
            );
        }
        Command::ApiKey { name, role } => {
            let (key, hash) = auth::new_api_key();
            println!("API key (give it to the service; it is not stored anywhere):\n\n  {key}\n");
            println!(
                "Add to the configuration:\n\n[[auth.api_keys]]\nname = {name:?}\nrole = {:?}\nsha256 = {hash:?}",
                role_name(role)
            );
        }
        Command::Verify {
            database_url,
            meeting,
            export,
            digest,
        } => {
            let url = database_url.unwrap_or_else(|| config.database_url());
            let mut out = std::io::stdout();
            let ok = samtal_signaling::compliance::check::run(
                &url,
                meeting.as_deref(),
                export.as_deref(),
                digest.as_deref(),
                &mut out,
            )
            .await?;
            if !ok {
                std::process::exit(1);
            }
        }
        Command::Models { command } => models(command)?,
    }
    Ok(())
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn models(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Verify { path } => {
            let info =
                samtal_models::verify(&path).with_context(|| format!("{} is not a usable model", path.display()))?;
            println!("{}: {}", path.display(), info.summary());
        }
        ModelsCommand::Fetch { name, dir } => {
            let info = samtal_models::fetch(&name, &dir)?;
            println!("{}: {}", info.path.display(), info.summary());
        }
        ModelsCommand::List => {
            for e in samtal_models::catalog() {
                let size = e
                    .approx_size_mib
                    .map(|m| format!("{m} MiB"))
                    .unwrap_or_else(|| "? MiB".into());
                let pinned = if e.is_pinned() { "checksum pinned" } else { "not pinned" };
                println!("{:<28} {:<13} {:>9}  {pinned}", e.name, e.languages, size);
            }
        }
    }
    Ok(())
}

/// `samtal drain`: starts draining the server at `url`, then waits up to `wait` until it is empty.
/// Returns whether it is (or true when not waiting).
fn drain(url: &str, token: &str, wait: Duration) -> anyhow::Result<bool> {
    let endpoint = format!("{}/api/drain", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let bearer = format!("Bearer {token}");
    let mut status: serde_json::Value = agent
        .post(&endpoint)
        .header("Authorization", &bearer)
        .send_empty()
        .map_err(|e| anyhow::anyhow!("cannot start draining at {endpoint}: {e}"))?
        .body_mut()
        .read_json()?;
    println!("draining: {status}");
    let deadline = std::time::Instant::now() + wait;
    while !wait.is_zero() && status["participants"] != 0 {
        if std::time::Instant::now() >= deadline {
            eprintln!("still in use after {} s: {status}", wait.as_secs());
            return Ok(false);
        }
        std::thread::sleep(Duration::from_secs(1));
        status = agent
            .get(&endpoint)
            .header("Authorization", &bearer)
            .call()
            .map_err(|e| anyhow::anyhow!("cannot read the drain at {endpoint}: {e}"))?
            .body_mut()
            .read_json()?;
    }
    if !wait.is_zero() {
        println!("drained: {status}");
    }
    Ok(true)
}

/// Waits for Ctrl-C, or SIGTERM (what systemd and Kubernetes send to stop a service).
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                "interrupted"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted"
    }
}
