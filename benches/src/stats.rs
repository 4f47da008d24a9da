//! Statistics of a run: percentiles, and what each receiver tallied from the packets it got.

use std::collections::HashMap;

/// The `p`-th percentile (0.0..=1.0) of `sorted` by the nearest-rank method: the smallest value
/// with at least `p` of the samples at or below it. `None` when there are no samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 1.0);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and maximum of some samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Sorts `samples` and summarises them; all zero when empty.
    pub fn of(samples: &mut [f64]) -> Summary {
        samples.sort_by(f64::total_cmp);
        Summary {
            count: samples.len(),
            p50: percentile(samples, 0.50).unwrap_or(0.0),
            p99: percentile(samples, 0.99).unwrap_or(0.0),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// `part / whole`, or 0 when `whole` is 0.
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole == 0.0 { 0.0 } else { part / whole }
}

/// What one receiving participant saw. Packets are counted always; gaps and delays only while
/// `measuring` is passed as true, so warm-up does not pollute the window.
#[derive(Debug, Default, Clone)]
pub struct ReceiverTally {
    /// Every packet received.
    pub total: u64,
    /// Packets received inside the measured window.
    pub measured: u64,
    /// Packets without a synthetic stamp (inside the window).
    pub unstamped: u64,
    /// Stamp counters skipped inside the window: packets lost somewhere between the sender and us.
    pub missing: u64,
    /// Stamp counters that went backwards or repeated inside the window.
    pub out_of_order: u64,
    /// One-way delays, publisher stamp to our RTP delivery, microseconds (inside the window).
    pub delays_us: Vec<u32>,
    /// Highest stamp counter seen, per SSRC (our side's SSRC: one per received track).
    last_counter: HashMap<u32, u64>,
}

impl ReceiverTally {
    /// Counts one packet of track `ssrc` carrying stamp counter `counter` (if stamped) that took
    /// `delay_us` to arrive.
    pub fn add(&mut self, ssrc: u32, counter: Option<u64>, delay_us: u64, measuring: bool) {
        self.total += 1;
        if measuring {
            self.measured += 1;
        }
        let Some(counter) = counter else {
            if measuring {
                self.unstamped += 1;
            }
            return;
        };
        let last = self.last_counter.get(&ssrc).copied();
        if measuring {
            match last {
                Some(last) if counter <= last => self.out_of_order += 1,
                Some(last) => self.missing += counter - last - 1,
                None => {}
            }
            self.delays_us.push(delay_us.min(u32::MAX as u64) as u32);
        }
        if last.is_none_or(|last| counter > last) {
            self.last_counter.insert(ssrc, counter);
        }
    }

    /// Packets lost inside the window as a fraction of those that should have arrived.
    pub fn loss(&self) -> f64 {
        ratio(self.missing as f64, (self.measured + self.missing) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
        // Ten samples: p99 is the largest, p50 the fifth.
        let v: Vec<u32> = (10..20).collect();
        assert_eq!(percentile(&v, 0.99), Some(19));
        assert_eq!(percentile(&v, 0.5), Some(14));
    }

    #[test]
    fn summary_sorts_first() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        let s = Summary::of(&mut v);
        assert_eq!((s.count, s.p50, s.p99, s.max), (5, 3.0, 5.0, 5.0));
        assert_eq!(Summary::of(&mut []), Summary::default());
    }

    #[test]
    fn tally_counts_gaps_reordering_and_only_the_window() {
        let mut t = ReceiverTally::default();
        // Warm-up: counted in total only; establishes the last counter.
        t.add(1, Some(0), 100, false);
        t.add(1, Some(1), 100, false);
        // Window: 2 arrives, 3 and 4 are lost, 5 arrives, 4 arrives late, 6 arrives.
        t.add(1, Some(2), 200, true);
        t.add(1, Some(5), 300, true);
        t.add(1, Some(4), 400, true);
        t.add(1, Some(6), 500, true);
        // A second track starts inside the window: its first packet is no gap.
        t.add(2, Some(40), 600, true);
        t.add(2, None, 0, true);
        assert_eq!(t.total, 8);
        assert_eq!(t.measured, 6);
        assert_eq!(t.missing, 2);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.unstamped, 1);
        assert_eq!(t.delays_us, vec![200, 300, 400, 500, 600]);
        assert!((t.loss() - 2.0 / 8.0).abs() < 1e-12);
    }
}
