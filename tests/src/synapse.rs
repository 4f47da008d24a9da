//! A real Synapse homeserver for the Matrix tests: installed from PyPI into its own venv by
//! tests/setup.sh (`$SAMTAL_CACHE/synapse-venv`, or `SAMTAL_SYNAPSE_PYTHON`), started on
//! 127.0.0.1 with a free port and a temporary data directory (SQLite), rate limits raised.
//! It can be stopped and started again on the same port and data. Dropping it kills it.
//! A missing Synapse fails the test with a message saying how to install it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python of the venv Synapse is installed in.
pub fn synapse_python() -> PathBuf {
    let path = std::env::var_os("SAMTAL_SYNAPSE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("SAMTAL_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default()
                    .join(".cache/samtal")
            });
            cache.join("synapse-venv/bin/python")
        });
    assert!(
        path.exists(),
        "no Synapse venv at {} (SAMTAL_SYNAPSE_PYTHON): run tests/setup.sh (it installs matrix-synapse from PyPI), or use tests/run",
        path.display()
    );
    path
}

pub struct Synapse {
    dir: tempfile::TempDir,
    port: u16,
    python: PathBuf,
    child: Option<Child>,
}

/// The shared secret the tests register users with.
const REGISTRATION_SECRET: &str = "samtal-test-registration";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

impl Synapse {
    /// Writes a configuration, generates the signing key and starts Synapse; returns when its
    /// client API answers.
    pub fn start() -> Synapse {
        let python = synapse_python();
        let dir = tempfile::Builder::new()
            .prefix("samtal-synapse-")
            .tempdir()
            .expect("temporary directory");
        let port = free_port();
        let d = dir.path().display();
        let limit = "{per_second: 10000, burst_count: 10000}";
        let config = format!(
            "server_name: localhost
pid_file: {d}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: {REGISTRATION_SECRET}
macaroon_secret_key: samtal-test-macaroon
form_secret: samtal-test-form
report_stats: false
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
rc_message: {limit}
rc_login:
  address: {limit}
  account: {limit}
  failed_attempts: {limit}
rc_registration: {limit}
rc_joins:
  local: {limit}
  remote: {limit}
rc_joins_per_room: {limit}
rc_invites:
  per_room: {limit}
  per_user: {limit}
  per_issuer: {limit}
rc_key_requests: {limit}
rc_media_create: {limit}
"
        );
        std::fs::write(dir.path().join("homeserver.yaml"), config).expect("write homeserver.yaml");
        let out = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(dir.path().join("homeserver.yaml"))
            .arg("--generate-keys")
            .output()
            .expect("run synapse --generate-keys");
        assert!(
            out.status.success(),
            "synapse --generate-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut synapse = Synapse {
            dir,
            port,
            python,
            child: None,
        };
        synapse.resume();
        synapse
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts Synapse (again) on the same port and data; returns when its client API answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "Synapse is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("synapse.log"))
            .expect("open log");
        let child = Command::new(&self.python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(self.dir.path().join("homeserver.yaml"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start Synapse");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        let versions = format!("127.0.0.1:{}", self.port);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("Synapse exited with {status} while starting; log:\n{}", self.log_tail());
            }
            if http_ok(&versions, "/_matrix/client/versions") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Synapse did not answer within 90 s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops Synapse (SIGKILL: an outage, not a shutdown); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Registers a user with the shared secret.
    pub fn register(&self, user: &str, password: &str) {
        let script = self.python.with_file_name("register_new_matrix_user");
        let out = Command::new(&script)
            .arg("-c")
            .arg(self.dir.path().join("homeserver.yaml"))
            .args(["-u", user, "-p", password, "--no-admin"])
            .arg(self.url())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "registering {user} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking `GET` answered with 200.
fn http_ok(addr: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr.parse().expect("address"), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}
