//! Forwarding decisions, free of sockets, clocks and webrtc-rs state.
//!
//! The media loop feeds these types what it read from the network (an RTP header, the time, a
//! subscriber's keyframe request) and gets back what to do. Everything here is deterministic and
//! unit-tested; nothing here may block, allocate per packet, or touch I/O.

pub mod allocate;
pub mod codec;
pub mod dedup;
pub mod dynacast;
pub mod keyframe;
pub mod last_n;
pub mod layers;
pub mod probe;
pub mod red;
pub mod rewrite;
pub mod speaker;
pub mod track;
pub mod vp8;

pub use keyframe::KeyframeThrottle;
pub use rewrite::StreamRewriter;
pub use speaker::SpeakerDetector;
pub use track::{DownTrack, ExtensionIds, Forward, Incoming, PublishedTrack, RedFormat};
