//! The `samtal` server as a separate process: on free loopback ports (the load generator), or on
//! an address of its own inside a network namespace (the side-by-side benchmark, where Janus needs
//! one too).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::metrics;

/// How to start the server.
pub struct ServerOptions<'a> {
    pub binary: &'a Path,
    /// Names its configuration file (one per scenario).
    pub tag: &'a str,
    /// `[media] loops`; `None`: the server's default, one per core.
    pub loops: Option<usize>,
    /// Prefix of the command line, e.g. `ip netns exec NAME` (empty: run directly).
    pub wrapper: Vec<String>,
    /// The address it listens on and announces for media.
    pub ip: IpAddr,
}

impl<'a> ServerOptions<'a> {
    /// On loopback, run directly.
    pub fn on_loopback(binary: &'a Path, tag: &'a str, loops: Option<usize>) -> Self {
        ServerOptions {
            binary,
            tag,
            loops,
            wrapper: Vec::new(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// The running server; killed on drop if [`Server::stop`] was not called.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub http: SocketAddr,
    config: PathBuf,
}

/// A port the system just handed out (free unless someone takes it in between; a fresh network
/// namespace has every port free).
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The server binary: `given`, else `samtal` next to the running executable (the same target
/// directory); an error naming how to build it when there is none.
pub fn server_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let binary = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("this executable has no directory")?
            .join("samtal"),
    };
    if !binary.is_file() {
        bail!(
            "no server binary at {} (build it with `cargo build --release -p samtal-signaling`, or pass --server-bin)",
            binary.display()
        );
    }
    Ok(binary)
}

impl Server {
    /// Starts `binary serve` on free ports of `options.ip`, announcing only that address for media.
    pub fn start(options: &ServerOptions) -> anyhow::Result<Server> {
        let http = SocketAddr::new(options.ip, free_tcp_port()?);
        let udp_port = free_udp_port()?;
        let id = std::process::id();
        let config = std::env::temp_dir().join(format!("samtal-loadgen-{id}-{}.toml", options.tag));
        let data_dir = std::env::temp_dir().join(format!("samtal-loadgen-{id}-data"));
        std::fs::write(
            &config,
            format!(
                "data_dir = {data_dir:?}\n[media]\nips = [\"{ip}\"]\n{loops}[limits]\nmax_participants = 1000\n",
                data_dir = data_dir.display().to_string(),
                ip = options.ip,
                loops = options.loops.map(|n| format!("loops = {n}\n")).unwrap_or_default()
            ),
        )?;
        let mut command = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(options.binary);
                c
            }
            None => Command::new(options.binary),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .args([
                "serve",
                "--listen",
                &http.to_string(),
                "--udp-port",
                &udp_port.to_string(),
            ])
            .env(
                "SAMTAL_LOG",
                std::env::var("SAMTAL_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", options.binary.display()))?;
        let pid = child.id();
        eprintln!("   server pid {pid}, http {http}, udp {}:{udp_port}", options.ip);
        Ok(Server {
            child,
            pid,
            http,
            config,
        })
    }

    /// Waits (at most 20 s) until `/healthz` answers.
    pub async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited at start: {status}");
            }
            if metrics::http_get(self.http, "/healthz").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /healthz within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// Asks the server to stop (SIGINT, as Ctrl-C) and waits up to 5 s; Drop kills it otherwise.
    pub async fn stop(mut self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGINT);
        }
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("   server did not stop on SIGINT within 5 s; killing it");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}
