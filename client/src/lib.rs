//! A Rust participant for Samtal, used by integration tests, the load generator and the
//! transcriber.
//!
//! * [`signal`]: the signaling websocket ([`SignalingClient`]): join, send, receive, heartbeat.
//! * [`participant`]: a whole participant ([`Participant`]) with its `publish` and `subscribe`
//!   peer connections, synthetic tracks, received media and events.
//! * [`synthetic`]: stamped Opus and VP8 payload generators and parsers.
//! * [`keyframe_requests`]: the interceptor that lets PLI/FIR reach the publisher.
//! * [`stats`]: the participant's counters.
//!
//! Inside: `connection` builds and watches one peer connection, `dispatch` applies what the server
//! sends, `local_track` writes our RTP (simulcast layers included), `tiles` reports `video_tile`.
//!
//! ```no_run
//! # async fn example() -> samtal_client::Result<()> {
//! use samtal_client::{Participant, ParticipantOptions};
//! let mut alice = Participant::join(
//!     "ws://127.0.0.1:8080/ws",
//!     ParticipantOptions::new("weekly", "Alice").with_audio().with_video(),
//! )
//! .await?;
//! alice.start_media();
//! let mut media = alice.take_media().unwrap();
//! while let Some(packet) = media.recv().await {
//!     println!("{} {:?} seq {}", packet.participant_id, packet.kind, packet.sequence_number);
//! }
//! alice.close().await;
//! # Ok(())
//! # }
//! ```

mod connection;
mod dispatch;
pub mod error;
pub mod keyframe_requests;
mod link;
mod local_track;
pub mod microphone;
pub mod participant;
pub mod signal;
pub mod stats;
pub mod synthetic;
mod tiles;

pub use error::{Error, Result};
pub use participant::{Participant, ParticipantEvent, ParticipantOptions, Received};
pub use samtal_protocol;
pub use signal::{JoinOptions, Joined, SignalSender, SignalingClient};
pub use stats::ParticipantStats;
pub use webrtc::peer_connection::RTCPeerConnectionState;
