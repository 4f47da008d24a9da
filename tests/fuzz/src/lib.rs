//! Fuzz targets: one function per parser that takes untrusted input, each taking arbitrary bytes.
//! A target panics when the code under test panics or breaks one of the properties it checks.
//!
//! The test suite runs every target briefly on its seeds and on mutations of them
//! (`tests/smoke.rs`, `SAMTAL_FUZZ_SECONDS` per target); `libfuzzer/` runs the same functions
//! under libFuzzer with coverage feedback for the long runs (see `run.sh` and the README).

pub mod mutate;
mod targets;

pub use targets::*;

/// A fuzz target: takes any bytes, panics when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target by name, for the runners.
pub const TARGETS: &[(&str, Target)] = &[
    ("signaling_message", signaling_message),
    ("session_rooms", session_rooms),
    ("sdp_publish", sdp_publish),
    ("rtp_forward", rtp_forward),
    ("jwt", jwt),
    ("jwks", jwks),
    ("export", export),
];
