//! Sequence number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream per forwarded track, with the SSRC the SFU announced to
//! it. Packets the SFU deliberately skips (while a track is muted, while waiting for a keyframe) leave
//! no hole in the sequence numbers, and the timestamp advances by the wall-clock time that passed, so
//! the subscriber's jitter buffer neither asks for the skipped packets nor stalls. Packets arriving out
//! of order or retransmitted keep the same mapping, so NACKs from subscribers stay meaningful.

use std::time::Instant;

/// Output header fields for one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub ssrc: u32,
    pub sequence_number: u16,
    pub timestamp: u32,
}

#[derive(Debug, Clone)]
pub struct StreamRewriter {
    out_ssrc: u32,
    clock_rate: u32,
    /// `out = in - offset` (wrapping) while the mapping holds.
    seq_offset: u16,
    ts_offset: u32,
    /// Highest output sequence number sent, with its timestamp and when it was sent.
    last: Option<(u16, u32, Instant)>,
    /// First input sequence number of the current mapping (moved forward on long streams);
    /// anything older belongs to a stretch the subscriber never saw.
    start_in: u16,
    highest_in: u16,
    /// Set when packets were skipped on purpose: the next packet starts a new mapping.
    resync: bool,
}

impl StreamRewriter {
    pub fn new(out_ssrc: u32, clock_rate: u32) -> Self {
        Self {
            out_ssrc,
            clock_rate: clock_rate.max(1),
            seq_offset: 0,
            ts_offset: 0,
            last: None,
            start_in: 0,
            highest_in: 0,
            resync: true,
        }
    }

    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Call when the SFU starts skipping packets of this stream on purpose (mute, layer or source
    /// change). The next forwarded packet continues right after the last one sent.
    pub fn skip(&mut self) {
        self.resync = true;
    }

    /// Maps an incoming packet. Returns `None` for a packet that is older than the current mapping's
    /// start (it belongs to a stretch the subscriber never saw).
    pub fn rewrite(&mut self, seq: u16, ts: u32, now: Instant) -> Option<Rewritten> {
        if self.resync {
            self.resync = false;
            match self.last {
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
                Some((last_seq, last_ts, at)) => {
                    let elapsed = now.saturating_duration_since(at);
                    let ticks = (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000) as u32;
                    let out_seq = last_seq.wrapping_add(1);
                    let out_ts = last_ts.wrapping_add(ticks.max(1));
                    self.seq_offset = seq.wrapping_sub(out_seq);
                    self.ts_offset = ts.wrapping_sub(out_ts);
                }
            }
            self.start_in = seq;
            self.highest_in = seq;
        } else if (seq.wrapping_sub(self.start_in) as i16) < 0 {
            return None;
        } else if (seq.wrapping_sub(self.highest_in) as i16) > 0 {
            self.highest_in = seq;
            // Keep the window within half the sequence space so wrapping comparisons stay valid.
            if self.highest_in.wrapping_sub(self.start_in) > 0x4000 {
                self.start_in = self.highest_in.wrapping_sub(0x4000);
            }
        }
        let out = Rewritten {
            ssrc: self.out_ssrc,
            sequence_number: seq.wrapping_sub(self.seq_offset),
            timestamp: ts.wrapping_sub(self.ts_offset),
        };
        let newer = match self.last {
            None => true,
            Some((last_seq, _, _)) => (out.sequence_number.wrapping_sub(last_seq) as i16) > 0,
        };
        if newer {
            self.last = Some((out.sequence_number, out.timestamp, now));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_stream_keeps_its_spacing() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(42, 48_000);
        let a = r.rewrite(1000, 5000, t0).unwrap();
        let b = r.rewrite(1001, 5960, t0).unwrap();
        assert_eq!(a.ssrc, 42);
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(960));
    }

    #[test]
    fn skipped_packets_leave_no_sequence_hole_and_time_advances() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(7, 48_000);
        let first = r.rewrite(10, 0, t0).unwrap();
        r.skip();
        // 100 packets (2 s) later the stream resumes.
        let resumed = r.rewrite(110, 96_000, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(resumed.sequence_number, first.sequence_number.wrapping_add(1));
        assert_eq!(resumed.timestamp, first.timestamp.wrapping_add(96_000));
        let next = r.rewrite(111, 96_960, t0 + Duration::from_millis(2020)).unwrap();
        assert_eq!(next.sequence_number, resumed.sequence_number.wrapping_add(1));
        assert_eq!(next.timestamp, resumed.timestamp.wrapping_add(960));
    }

    #[test]
    fn reordered_and_retransmitted_packets_keep_their_mapping() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(1, 90_000);
        let a = r.rewrite(500, 1, t0).unwrap();
        let c = r.rewrite(502, 3, t0).unwrap();
        let b = r.rewrite(501, 2, t0).unwrap(); // late
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        assert_eq!(c.sequence_number, a.sequence_number.wrapping_add(2));
        let b_again = r.rewrite(501, 2, t0).unwrap(); // retransmission
        assert_eq!(b_again, b);
    }

    #[test]
    fn wraps_around_sequence_numbers() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(1, 90_000);
        let a = r.rewrite(65535, u32::MAX, t0).unwrap();
        let b = r.rewrite(0, 99, t0).unwrap();
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(100));
    }

    #[test]
    fn packets_from_before_a_resync_are_dropped() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(1, 48_000);
        r.rewrite(10, 0, t0).unwrap();
        r.skip();
        r.rewrite(50, 40 * 960, t0 + Duration::from_millis(800)).unwrap();
        // A late packet from the skipped stretch would collide with numbers already sent.
        assert_eq!(r.rewrite(30, 20 * 960, t0 + Duration::from_millis(801)), None);
    }
}
