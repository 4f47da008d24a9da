//! Building blocks of `samtal-loadgen`, the SFU load generator (see `benches/README.md`).
//!
//! * [`stats`]: percentiles and per-receiver tallies (packets, gaps, delays).
//! * [`procfs`]: CPU time and resident memory of a process, and machine-wide CPU use, from `/proc`.
//! * [`metrics`]: reading counters from the server's Prometheus `/metrics` text over plain HTTP.
//! * [`scenario`]: the `PxS` scenario notation.
//!
//! The orchestration (server process, participants, the measured window, the table) lives in the
//! binary, `src/main.rs`.

pub mod metrics;
pub mod procfs;
pub mod scenario;
pub mod stats;
