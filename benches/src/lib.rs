//! Building blocks of `samtal-loadgen`, the SFU load generator (see `benches/README.md`).
//!
//! * [`stats`]: percentiles and per-receiver tallies (packets, gaps, delays).
//! * [`procfs`]: CPU time and resident memory of a process, and machine-wide CPU use, from `/proc`.
//! * [`metrics`]: reading counters from the server's Prometheus `/metrics` text over plain HTTP.
//! * [`scenario`]: the `PxS` scenario notation.
//! * [`server`]: the `samtal` server as a child process, on loopback or in a network namespace.
//! * [`janus`]: Janus as the peer SFU of `samtal-versus`, behind a gateway that speaks Samtal's
//!   signaling, so the same clients load both servers.
//!
//! The orchestration (participants, the measured window, the table) lives in the binaries:
//! `src/main.rs` (`samtal-loadgen`) and `src/bin/versus.rs` (`samtal-versus`).

pub mod janus;
pub mod metrics;
pub mod procfs;
pub mod scenario;
pub mod server;
pub mod stats;

/// Logs of the load-generating binaries: to stderr, filtered by `RUST_LOG` (default: errors only).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .init();
}
