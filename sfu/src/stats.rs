//! Counters the media loop updates and `/metrics` reads; plain atomics so the packet path never locks.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    pub rooms: AtomicU64,
    pub participants: AtomicU64,
    pub peer_connections: AtomicU64,
    /// ICE-TCP connections open now.
    pub tcp_connections: AtomicU64,
    /// ICE-TCP connections closed at once: over a limit, silent, oversized frames, or not ICE.
    pub tcp_refused: AtomicU64,
    pub published_tracks: AtomicU64,
    /// Track declarations (client track id → source) held for participants' publish connections.
    pub declared_tracks: AtomicU64,
    /// Publish offers refused for the participant's offer rate or the offer's size.
    pub refused_offers: AtomicU64,
    pub received_packets: AtomicU64,
    pub received_bytes: AtomicU64,
    pub forwarded_packets: AtomicU64,
    pub forwarded_bytes: AtomicU64,
    /// Packets from publishers not forwarded because they were routed before (a retransmission of
    /// a packet that was not lost after all, or a duplicate).
    pub duplicates_dropped: AtomicU64,
    /// RED audio packets forwarded as their primary block alone, to subscribers without RED.
    pub red_unwrapped: AtomicU64,
    /// Audio packets lost before the server, recovered from the redundancy of the next RED packet
    /// and sent as plain Opus to subscribers without RED.
    pub red_recovered: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// Times a room's dominant speaker changed.
    pub speaker_changes: AtomicU64,
    /// Cameras paused toward a subscriber by last-N.
    pub video_pauses: AtomicU64,
    /// Times the allocator changed the layer a subscriber receives of a track.
    pub layer_changes: AtomicU64,
    /// Of those, times it paused a track because the subscriber's downlink had no room for it.
    pub bandwidth_pauses: AtomicU64,
    /// Times the server lent a subscriber with a receiver-side estimate (REMB) the budget of one
    /// more layer step, to learn whether its link carries it; and how many of those the link did
    /// not carry.
    pub bandwidth_probes: AtomicU64,
    pub bandwidth_probe_failures: AtomicU64,
    /// Times a publisher was told to switch simulcast layers off or on (dynacast).
    pub dynacast_updates: AtomicU64,
    /// Subscribe connections the server offered an ICE restart after hearing nothing from them.
    pub ice_restarts: AtomicU64,
    /// Subscribers whose downlink is estimated (they send transport-wide congestion feedback).
    pub estimated_subscribers: AtomicU64,
    pub errors: AtomicU64,
    /// Sum of in-server forwarding delay (socket read to socket write) in nanoseconds,
    /// over `forwarded_packets`: the mean delay is their ratio.
    pub forward_delay_nanos: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One media loop's part of a gauge that several loops share: `report` moves the shared counter by
/// the change since this part's last report, so each loop reports only what it holds.
#[derive(Debug, Default)]
pub(crate) struct Share(u64);

impl Share {
    pub(crate) fn report(&mut self, counter: &AtomicU64, now: u64) {
        if now >= self.0 {
            Stats::add(counter, now - self.0);
        } else {
            Stats::sub(counter, self.0 - now);
        }
        self.0 = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_a_gauge_add_up() {
        let gauge = AtomicU64::new(0);
        let (mut a, mut b) = (Share::default(), Share::default());
        a.report(&gauge, 3);
        b.report(&gauge, 5);
        a.report(&gauge, 1);
        assert_eq!(Stats::get(&gauge), 6);
        b.report(&gauge, 0);
        a.report(&gauge, 0);
        assert_eq!(Stats::get(&gauge), 0);
    }
}
