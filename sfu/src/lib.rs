//! Samtal's selective forwarding unit.
//!
//! - [`forward`] holds every forwarding decision (which subscriber gets which packet, how SSRC,
//!   sequence numbers and timestamps are rewritten, when to ask a publisher for a keyframe) as plain
//!   synchronous code that unit tests drive without sockets.
//! - [`router`] holds the routing state, sans-IO: every webrtc-rs (`rtc`) peer connection, the
//!   demultiplexing of datagrams, rooms, participants, tracks and negotiation. Datagrams, commands
//!   and timeouts go in with the time; datagrams, events and the next deadline come out. Unit tests
//!   drive it with in-memory peers and a fake clock.
//! - [`rate`] is the token bucket that limits offers here and messages in signaling.
//! - [`engine`] is the thin I/O shell: one media loop that owns the UDP sockets and a router, and
//!   talks to signaling through [`MediaServer`].
//!
//! The SFU knows rooms and participants only by the ids signaling gives it; it never speaks the
//! websocket protocol and never decides who may join.

pub mod config;
pub mod engine;
pub mod error;
pub mod forward;
pub mod rate;
pub mod router;
pub mod stats;

pub use config::MediaConfig;
pub use engine::MediaServer;
pub use error::Error;
pub use router::{MediaEvent, PeerState, Router, SubscribeOptions};
pub use stats::Stats;
