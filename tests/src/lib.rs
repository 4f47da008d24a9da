//! Test harness for end-to-end tests: start a whole Samtal server in-process on loopback with
//! ephemeral ports, find the external test peers and test data, and run peer programs with a deadline.
//!
//! Missing prerequisites (the Python venv with aiortc, Chromium, the shared test data) make a test
//! FAIL with a message saying how to get them; they never make it pass silently.

use samtal_signaling::{Config, RunningServer};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Logs to the test output when `SAMTAL_LOG` is set (e.g. `SAMTAL_LOG=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("SAMTAL_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// The transcription worker key of [`test_config`]'s servers.
pub const WORKER_KEY: &str = "test-worker-key-0123456789abcdef-0123456789";

/// A server config for tests: loopback only, ephemeral HTTP and UDP ports, open (no tokens) to
/// participants, with [`WORKER_KEY`] for transcription workers.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.transcription.worker_key = Some(WORKER_KEY.to_owned());
    config.listen = "127.0.0.1:0".parse().expect("valid address");
    config.media.udp_port = 0;
    config.media.tcp_port = 0;
    config.media.ips = vec!["127.0.0.1".parse().expect("valid address")];
    // A data directory (and so a SQLite database) of its own for every server, even within one process.
    static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    config.data_dir = std::env::temp_dir().join(format!("samtal-test-{}-{n}", std::process::id()));
    config
}

/// [`test_config`] for a server on the test's side of the namespace `ns`'s link: it listens there,
/// and its media addresses are loopback and that address.
pub fn test_config_in(ns: &netns::Namespace) -> Config {
    let mut config = test_config();
    config.listen = std::net::SocketAddr::new(ns.host_ip, 0);
    config.media.ips = vec![std::net::Ipv4Addr::LOCALHOST.into(), ns.host_ip];
    config
}

pub async fn start_server(config: Config) -> RunningServer {
    init_logging();
    samtal_signaling::start(config).await.expect("server starts")
}

/// `$SAMTAL_TEST_DATA/<relative>`, failing the test with a clear message when it is missing.
pub fn test_data(relative: &str) -> PathBuf {
    let base = std::env::var_os("SAMTAL_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let path = base.join(relative);
    assert!(
        path.exists(),
        "test data {} is missing: set SAMTAL_TEST_DATA to the folder holding models/ and audio/, or run scripts/fetch-test-data.sh",
        path.display()
    );
    path
}

/// The Python with aiortc installed by tests/setup.sh.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SAMTAL_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/samtal/venv/bin/python")
    });
    assert!(
        path.exists(),
        "no test Python at {} (SAMTAL_PYTHON): run tests/setup.sh, or use tests/run",
        path.display()
    );
    path
}

/// Node with playwright-core installed in tests/browser by tests/setup.sh, and Chromium.
pub fn browser_driver() -> (PathBuf, PathBuf) {
    let dir = repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: run tests/setup.sh",
        dir.display()
    );
    let chromium = std::env::var_os("SAMTAL_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "no Chromium at {} (SAMTAL_CHROMIUM): run tests/setup.sh",
        chromium.display()
    );
    (dir, chromium)
}

/// What a finished peer program printed.
#[derive(Debug)]
pub struct PeerOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl PeerOutput {
    /// The last line of stdout that parses as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "peer printed no JSON summary; status {:?}\nstdout:\n{}\nstderr:\n{}",
                    self.status,
                    self.stdout,
                    self.tail()
                )
            })
    }

    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// Five seconds of digital silence as a 16 kHz WAV in `dir` (tests/peers/make_silence.py): a fake
/// microphone that says nothing.
pub fn make_silence(dir: &Path) -> PathBuf {
    let silence = dir.join("silence.wav");
    let made = std::process::Command::new(python())
        .arg(repo_root().join("tests/peers/make_silence.py"))
        .arg(&silence)
        .args(["--seconds", "5"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run make_silence.py: {e}"));
    assert!(made.success(), "make_silence.py failed");
    silence
}

/// Runs a program to completion, killing it after `limit`.
pub async fn run_peer(mut command: tokio::process::Command, limit: Duration) -> PeerOutput {
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => PeerOutput {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("peer failed to run: {e}"),
        Err(_) => panic!("peer did not finish within {limit:?}"),
    }
}
/// Runs a driver of tests/browser (`node SCRIPT ARGS --chromium PATH`) against a deadline and returns
/// the JSON summary it prints, failing the test with that summary and its output unless it exits 0.
pub async fn run_browser_script(script: &str, args: &[&str], limit: Duration) -> serde_json::Value {
    run_driver(None, script, args, limit).await
}

/// [`run_browser_script`] with the driver, and so the browsers it starts, inside the network
/// namespace `ns`.
pub async fn run_browser_script_in(
    ns: &netns::Namespace,
    script: &str,
    args: &[&str],
    limit: Duration,
) -> serde_json::Value {
    run_driver(Some(ns), script, args, limit).await
}

async fn run_driver(ns: Option<&netns::Namespace>, script: &str, args: &[&str], limit: Duration) -> serde_json::Value {
    let (dir, chromium) = browser_driver();
    let mut command = match ns {
        None => tokio::process::Command::new("node"),
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", &ns.name, "node"]);
            c
        }
    };
    command
        .current_dir(&dir)
        .arg(script)
        .args(args)
        .arg("--chromium")
        .arg(&chromium);
    let out = run_peer(command, limit).await;
    let summary = out.json();
    assert_eq!(out.status, Some(0), "{script} failed: {summary}\n{}", out.tail());
    summary
}

pub mod events;
pub mod matrix_reader;
pub mod nats;
pub mod netns;
pub mod sdp;
pub mod synapse;
pub mod turn;
pub mod ws;

/// A new, empty PostgreSQL database on the tests' server (`SAMTAL_TEST_POSTGRES`, which `tests/run`
/// starts), named `<name>_<process id>` (dropped first if a run before left it); returns its URL.
/// For tests of several servers sharing one store.
pub fn fresh_postgres_database(name: &str) -> String {
    let base =
        std::env::var("SAMTAL_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let database = format!("{name}_{}", std::process::id());
    let out = std::process::Command::new("psql")
        .arg(&base)
        .args(["-v", "ON_ERROR_STOP=1", "-q"])
        .args(["-c", &format!("DROP DATABASE IF EXISTS {database}")])
        .args(["-c", &format!("CREATE DATABASE {database}")])
        .output()
        .expect("psql (Debian's postgresql-client, installed by tests/setup.sh) runs");
    assert!(
        out.status.success(),
        "cannot create database {database} at {base}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, _) = base.rsplit_once('/').expect("a database URL ends in /<database>");
    format!("{server}/{database}")
}
