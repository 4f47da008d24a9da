//! Final segments of one room between recognition and the server's acknowledgement.
//!
//! The server answers every final segment with `segment_stored` (it is in the transcript store, or
//! already was) or `segment_refused` (not stored; `retry` says whether sending it again later may
//! succeed), each naming the segment's utterance id. A segment stays here until one of those names
//! it. When the room connection drops, everything unacknowledged goes back to the front of the queue,
//! in order, and is sent again after rejoining; the server keeps one copy per `utterance_id`, so a
//! segment that did arrive before the drop is not stored twice.
//!
//! Interim captions never enter the outbox: they are sent when connected and otherwise forgotten.
//! This module is plain data: no I/O, no clocks other than the `Instant`s it is given.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use samtal_protocol::Segment;

#[derive(Debug, Clone)]
struct Pending {
    segment: Segment,
    queued: Instant,
}

/// Unsent and unacknowledged final segments of one room.
#[derive(Debug, Default)]
pub struct Outbox {
    unsent: VecDeque<Pending>,
    /// Sent and not yet answered, in the order they were sent.
    in_flight: VecDeque<Pending>,
    acked: u64,
    resent: u64,
    refused: u64,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a final segment for sending.
    pub fn push(&mut self, segment: Segment, now: Instant) {
        self.unsent.push_back(Pending { segment, queued: now });
    }

    /// Whether something waits to be sent.
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Takes everything unsent to send now; it stays in flight until the server answers for it.
    pub fn send_batch(&mut self) -> Vec<Segment> {
        let batch: Vec<Segment> = self.unsent.iter().map(|p| p.segment.clone()).collect();
        self.in_flight.extend(self.unsent.drain(..));
        batch
    }

    fn take_in_flight(&mut self, utterance_id: &str) -> Option<Pending> {
        let i = self
            .in_flight
            .iter()
            .position(|p| p.segment.utterance_id == utterance_id)?;
        self.in_flight.remove(i)
    }

    /// `segment_stored` arrived: whether it named a segment in flight.
    pub fn stored(&mut self, utterance_id: &str) -> bool {
        let found = self.take_in_flight(utterance_id).is_some();
        self.acked += u64::from(found);
        found
    }

    /// `segment_refused` arrived: a segment to retry goes back to the front of the queue; one the
    /// server will never take is dropped. Whether it named a segment in flight.
    pub fn refused(&mut self, utterance_id: &str, retry: bool) -> bool {
        let Some(pending) = self.take_in_flight(utterance_id) else {
            return false;
        };
        if retry {
            self.resent += 1;
            self.unsent.push_front(pending);
        } else {
            self.refused += 1;
        }
        true
    }

    /// The room connection dropped: everything in flight is unsent again, ahead of newer segments.
    pub fn requeue(&mut self) {
        self.resent += self.in_flight.len() as u64;
        let mut again = std::mem::take(&mut self.in_flight);
        again.extend(self.unsent.drain(..));
        self.unsent = again;
    }

    /// Segments not yet acknowledged (unsent or in flight).
    pub fn len(&self) -> usize {
        self.unsent.len() + self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the oldest unacknowledged segment has waited.
    pub fn oldest_age(&self, now: Instant) -> Duration {
        self.in_flight
            .iter()
            .chain(self.unsent.iter())
            .map(|p| now.saturating_duration_since(p.queued))
            .max()
            .unwrap_or_default()
    }

    /// Segments the server stored so far.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Segments put back for resending after a drop or a refusal worth retrying.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Segments the server refused for good.
    pub fn refused_for_good(&self) -> u64 {
        self.refused
    }

    /// Utterance ids not yet acknowledged, oldest first (for logs and tests).
    pub fn pending_ids(&self) -> Vec<String> {
        self.in_flight
            .iter()
            .chain(self.unsent.iter())
            .map(|p| p.segment.utterance_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: &str) -> Segment {
        Segment {
            utterance_id: id.into(),
            participant_id: "p".into(),
            start_ms: 0,
            end_ms: 1,
            text: "t".into(),
            language: None,
            confidence: None,
            is_final: true,
        }
    }

    fn ids(segments: &[Segment]) -> Vec<&str> {
        segments.iter().map(|s| s.utterance_id.as_str()).collect()
    }

    #[test]
    fn each_segment_is_acknowledged_by_its_own_utterance_id() {
        let now = Instant::now();
        let mut o = Outbox::new();
        o.push(seg("a"), now);
        assert_eq!(ids(&o.send_batch()), ["a"]);
        o.push(seg("b"), now);
        o.push(seg("c"), now);
        assert_eq!(ids(&o.send_batch()), ["b", "c"]);
        assert!(o.send_batch().is_empty());
        assert!(!o.stored("x"), "an unknown id acknowledges nothing");
        assert!(o.stored("c"), "out of order is fine");
        assert_eq!(o.pending_ids(), ["a", "b"]);
        assert!(o.stored("a") && o.stored("b"));
        assert!(!o.stored("a"), "twice is once");
        assert!(o.is_empty());
        assert_eq!(o.acked(), 3);
    }

    #[test]
    fn a_refusal_retries_or_drops_only_the_segment_it_names() {
        let now = Instant::now();
        let mut o = Outbox::new();
        for id in ["a", "b", "c"] {
            o.push(seg(id), now);
        }
        o.send_batch();
        o.push(seg("d"), now);
        assert!(o.refused("b", true), "the store failed: b goes first in the queue");
        assert!(o.refused("c", false), "c's speaker is gone: dropped");
        assert_eq!(o.pending_ids(), ["a", "b", "d"]);
        assert_eq!(ids(&o.send_batch()), ["b", "d"]);
        assert_eq!((o.resent(), o.refused_for_good()), (1, 1));
    }

    #[test]
    fn a_drop_puts_in_flight_segments_back_in_order() {
        let now = Instant::now();
        let mut o = Outbox::new();
        o.push(seg("a"), now);
        o.push(seg("b"), now);
        o.send_batch();
        o.push(seg("c"), now);
        o.send_batch();
        assert!(o.stored("a") && o.stored("b"));
        o.push(seg("d"), now);
        o.requeue();
        assert_eq!(o.pending_ids(), ["c", "d"]);
        assert_eq!(ids(&o.send_batch()), ["c", "d"]);
        assert_eq!(o.resent(), 1);
        assert!(o.oldest_age(now + Duration::from_secs(3)) >= Duration::from_secs(3));
    }
}
