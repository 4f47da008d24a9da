//! Samtal's selective forwarding unit.
//!
//! - [`forward`] holds every forwarding decision (which subscriber gets which packet, how SSRC,
//!   sequence numbers and timestamps are rewritten, when to ask a publisher for a keyframe) as plain
//!   synchronous code that unit tests drive without sockets.
//! - [`engine`] is the thin I/O shell: one media loop that owns the UDP sockets and every
//!   webrtc-rs (sans-IO `rtc`) peer connection, and talks to signaling through [`MediaServer`].
//!
//! The SFU knows rooms and participants only by the ids signaling gives it; it never speaks the
//! websocket protocol and never decides who may join.

pub mod config;
pub mod engine;
pub mod error;
pub mod forward;
pub mod stats;

pub use config::MediaConfig;
pub use engine::{MediaEvent, MediaServer, PeerState, SubscribeOptions};
pub use error::Error;
pub use stats::Stats;
