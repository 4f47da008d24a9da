//! Which of a stream's sequence numbers the server already routed, over the last 128: a packet that
//! arrives twice (a publisher's retransmission of a packet that was not lost on the way to us after
//! all, or a duplicate on the network) is forwarded once. A retransmission of a packet that was lost
//! between the publisher and the server still goes through to every subscriber.

/// A sliding window of 128 sequence numbers, relative to the highest seen.
#[derive(Debug, Clone, Default)]
pub struct SeqWindow {
    highest: Option<u16>,
    /// Bit `i`: `highest - i` was seen.
    seen: u128,
}

impl SeqWindow {
    /// Records `seq`; false when it was already recorded (a duplicate). Anything older than the
    /// window counts as a duplicate: it is too late to be of use.
    pub fn insert(&mut self, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.seen = 1;
            return true;
        };
        let ahead = seq.wrapping_sub(highest) as i16;
        if ahead > 0 {
            let shift = ahead as u32;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = Some(seq);
            return true;
        }
        let behind = (-(ahead as i32)) as u32;
        if behind >= 128 {
            return false;
        }
        let bit = 1u128 << behind;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sequence_number_passes_once_in_any_order() {
        let mut w = SeqWindow::default();
        assert!(w.insert(10));
        assert!(w.insert(12), "a gap");
        assert!(!w.insert(12), "a duplicate");
        assert!(w.insert(11), "the repair of the gap");
        assert!(!w.insert(11), "a second repair");
        assert!(!w.insert(10));
        assert!(w.insert(200), "a jump ahead");
        assert!(!w.insert(11), "too old");
        assert!(w.insert(199));
        assert!(!w.insert(199));
    }

    #[test]
    fn wraps_around() {
        let mut w = SeqWindow::default();
        assert!(w.insert(65_535));
        assert!(w.insert(1));
        assert!(w.insert(0), "the repair across the wrap");
        assert!(!w.insert(65_535));
    }
}
