//! A real coturn (Debian's `coturn` package) for one test, started with the project's own
//! deploy/coturn/turnserver.conf; only its addresses, ports, secret and certificate are overridden.
//! Stopped on drop.

use crate::repo_root;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Coturn {
    child: Child,
    /// TURN over TCP (and UDP) port, and TURN over TLS port, on `ip`.
    pub port: u16,
    pub tls_port: u16,
    pub ip: IpAddr,
    log: std::path::PathBuf,
}

/// A free TCP port on `ip` (bound and released).
fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Coturn {
    /// Starts coturn on `ip` with `secret`, relaying only to `peer` (the SFU's media address), with a
    /// self-signed certificate made in `dir`.
    pub fn start(ip: IpAddr, peer: IpAddr, secret: &str, dir: &Path) -> Coturn {
        let (cert, key) = (dir.join("turn.crt"), dir.join("turn.key"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=turn.test",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(made.success(), "openssl could not make a certificate");
        let (port, tls_port) = (free_port(ip), free_port(ip));
        let log = dir.join("turnserver.log");
        let ip_s = ip.to_string();
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(repo_root().join("deploy/coturn/turnserver.conf"))
            .args(["--listening-ip", &ip_s, "--relay-ip", &ip_s])
            .args([
                "--listening-port",
                &port.to_string(),
                "--tls-listening-port",
                &tls_port.to_string(),
            ])
            .args(["--static-auth-secret", secret, "--allowed-peer-ip", &peer.to_string()])
            .arg("--cert")
            .arg(&cert)
            .arg("--pkey")
            .arg(&key)
            .arg("--log-file")
            .arg(&log)
            .args(["--no-stdout-log", "--pidfile"])
            .arg(dir.join("turnserver.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start turnserver (coturn; tests/setup.sh installs it): {e}"));
        let turn = Coturn {
            child,
            port,
            tls_port,
            ip,
            log,
        };
        // Up when both ports accept connections.
        for _ in 0..100 {
            let up = |p: u16| std::net::TcpStream::connect_timeout(&(ip, p).into(), Duration::from_millis(100)).is_ok();
            if up(port) && up(tls_port) {
                return turn;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("coturn did not start: {}", turn.log_tail());
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
