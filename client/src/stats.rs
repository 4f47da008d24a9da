//! Counters a participant keeps: what it sent, what it received, what it dropped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a participant, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParticipantStats {
    /// Audio RTP packets handed to the publish connection.
    pub audio_packets_sent: u64,
    /// Video RTP packets handed to the publish connection.
    pub video_packets_sent: u64,
    /// Of those, the packets of each simulcast layer (lowest first); plain video tracks are not
    /// counted here.
    pub simulcast_packets_sent: [u64; 3],
    /// `publish_layers` messages that changed which simulcast layers we send.
    pub layer_switches: u64,
    /// Video frames sent.
    pub video_frames_sent: u64,
    /// Keyframes sent.
    pub keyframes_sent: u64,
    /// PLI/FIR packets received about our tracks.
    pub keyframe_requests: u64,
    /// Writes the WebRTC stack refused.
    pub send_errors: u64,
    /// RTP packets received on the subscribe connection and delivered.
    pub media_received: u64,
    /// RTP packets received but dropped because the media channel was full (not counted once
    /// the channel's receiver is gone).
    pub media_dropped: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) audio_packets_sent: AtomicU64,
    pub(crate) video_packets_sent: AtomicU64,
    pub(crate) simulcast_packets_sent: [AtomicU64; 3],
    pub(crate) layer_switches: AtomicU64,
    pub(crate) video_frames_sent: AtomicU64,
    pub(crate) keyframes_sent: AtomicU64,
    pub(crate) keyframe_requests: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) media_received: AtomicU64,
    pub(crate) media_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ParticipantStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ParticipantStats {
            audio_packets_sent: get(&self.audio_packets_sent),
            video_packets_sent: get(&self.video_packets_sent),
            simulcast_packets_sent: std::array::from_fn(|i| get(&self.simulcast_packets_sent[i])),
            layer_switches: get(&self.layer_switches),
            video_frames_sent: get(&self.video_frames_sent),
            keyframes_sent: get(&self.keyframes_sent),
            keyframe_requests: get(&self.keyframe_requests),
            send_errors: get(&self.send_errors),
            media_received: get(&self.media_received),
            media_dropped: get(&self.media_dropped),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}
