//! Final segments of one room between recognition and the server's acknowledgement.
//!
//! The protocol has no segment acknowledgement of its own, but the server handles one connection's messages
//! in order and answers `ping` with `pong` after everything sent before it. So after sending a batch of
//! segments the room connection sends `ping` with a nonce of our own (`seg-N`); the `pong` carrying it
//! acknowledges that batch and all earlier ones. When the room connection drops, everything unacknowledged
//! goes back to the front of the queue, in order, and is sent again after rejoining; the server keeps one
//! copy per `utterance_id`, so a segment that did arrive before the drop is not stored twice.
//!
//! Interim captions never enter the outbox: they are sent when connected and otherwise forgotten.
//! This module is plain data: no I/O, no clocks other than the `Instant`s it is given.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use samtal_protocol::Segment;

/// Prefix of the `ping` nonces that acknowledge segments.
pub const ACK_NONCE_PREFIX: &str = "seg-";

#[derive(Debug, Clone)]
struct Pending {
    segment: Segment,
    queued: Instant,
}

/// Unsent and unacknowledged final segments of one room.
#[derive(Debug, Default)]
pub struct Outbox {
    unsent: VecDeque<Pending>,
    in_flight: BTreeMap<u64, Vec<Pending>>,
    next_nonce: u64,
    acked: u64,
    resent: u64,
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

    /// Takes everything unsent as one batch: the segments to send, then `ping` with the returned nonce.
    pub fn send_batch(&mut self) -> Option<(Vec<Segment>, String)> {
        if self.unsent.is_empty() {
            return None;
        }
        let batch: Vec<Pending> = self.unsent.drain(..).collect();
        let segments = batch.iter().map(|p| p.segment.clone()).collect();
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.in_flight.insert(nonce, batch);
        Some((segments, format!("{ACK_NONCE_PREFIX}{nonce}")))
    }

    /// A `pong` arrived; returns how many segments it acknowledged (0 for foreign nonces).
    pub fn ack(&mut self, nonce: &str) -> usize {
        let Some(n) = nonce.strip_prefix(ACK_NONCE_PREFIX).and_then(|n| n.parse::<u64>().ok()) else {
            return 0;
        };
        let later = self.in_flight.split_off(&(n + 1));
        let done: usize = self.in_flight.values().map(Vec::len).sum();
        self.in_flight = later;
        self.acked += done as u64;
        done
    }

    /// The room connection dropped: everything in flight is unsent again, ahead of newer segments.
    pub fn requeue(&mut self) {
        let in_flight = std::mem::take(&mut self.in_flight);
        let mut again: VecDeque<Pending> = in_flight.into_values().flatten().collect();
        self.resent += again.len() as u64;
        again.extend(self.unsent.drain(..));
        self.unsent = again;
    }

    /// Segments not yet acknowledged (unsent or in flight).
    pub fn len(&self) -> usize {
        self.unsent.len() + self.in_flight.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the oldest unacknowledged segment has waited.
    pub fn oldest_age(&self, now: Instant) -> Duration {
        self.in_flight
            .values()
            .flatten()
            .chain(self.unsent.iter())
            .map(|p| now.saturating_duration_since(p.queued))
            .max()
            .unwrap_or_default()
    }

    /// Segments acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Segments put back for resending after a drop.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Utterance ids not yet acknowledged, oldest first (for logs and tests).
    pub fn pending_ids(&self) -> Vec<String> {
        self.in_flight
            .values()
            .flatten()
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

    #[test]
    fn pong_acknowledges_its_batch_and_earlier_ones() {
        let now = Instant::now();
        let mut o = Outbox::new();
        o.push(seg("a"), now);
        let (first, n1) = o.send_batch().unwrap();
        o.push(seg("b"), now);
        o.push(seg("c"), now);
        let (second, n2) = o.send_batch().unwrap();
        assert_eq!((first.len(), second.len()), (1, 2));
        assert!(o.send_batch().is_none());
        assert_eq!(o.ack("42"), 0, "foreign nonces acknowledge nothing");
        assert_eq!(o.ack("seg-x"), 0);
        assert_eq!(o.len(), 3);
        assert_eq!(o.ack(&n2), 3, "a later pong covers the earlier batch too");
        assert_eq!(o.ack(&n1), 0);
        assert!(o.is_empty());
        assert_eq!(o.acked(), 3);
    }

    #[test]
    fn a_drop_puts_in_flight_segments_back_in_order() {
        let now = Instant::now();
        let mut o = Outbox::new();
        o.push(seg("a"), now);
        o.push(seg("b"), now);
        let (_, n1) = o.send_batch().unwrap();
        o.push(seg("c"), now);
        let _ = o.send_batch().unwrap();
        assert_eq!(o.ack(&n1), 2);
        o.push(seg("d"), now);
        o.requeue();
        assert_eq!(o.pending_ids(), ["c", "d"]);
        let (again, _) = o.send_batch().unwrap();
        let ids: Vec<_> = again.iter().map(|s| s.utterance_id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
        assert_eq!(o.resent(), 1);
        assert!(o.oldest_age(now + Duration::from_secs(3)) >= Duration::from_secs(3));
    }
}
