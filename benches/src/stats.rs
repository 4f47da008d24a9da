//! Statistics of a run: percentiles, a least-squares slope, and what each receiver tallied from
//! the packets it got.

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

/// Least-squares slope of `y` over `x` through `points` (x, y): the `b` of the line `a + b·x`
/// closest to them. `None` with fewer than two points or when every `x` is the same.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Stamp counters of one received track seen inside the window, as a bitmap from the first.
#[derive(Debug, Default, Clone)]
struct TrackWindow {
    /// The first counter seen in the window; bit 0 of `bits`.
    base: u64,
    /// The highest counter seen in the window.
    max: u64,
    bits: Vec<u64>,
    /// Distinct counters seen.
    unique: u64,
}

/// Largest counter span one track may cover in a window (a restarted stream is not followed).
const MAX_SPAN: u64 = 1 << 24;

/// What one receiving participant saw. Packets are counted always; everything else only while
/// `measuring` is passed as true, so warm-up does not pollute the window.
///
/// Every synthetic packet carries a per-track counter, so a receiver knows exactly which packets
/// of the window it has: `missing` are counters between the first and the highest one seen in the
/// window that never arrived (retransmissions that filled a gap count as arrived), `late` are
/// packets that arrived after a higher counter (reordering, or a NACK retransmission), and
/// `duplicates` are counters that arrived twice.
#[derive(Debug, Default, Clone)]
pub struct ReceiverTally {
    /// Every packet received.
    pub total: u64,
    /// Packets received inside the measured window (duplicates included).
    pub measured: u64,
    /// Packets without a synthetic stamp (inside the window).
    pub unstamped: u64,
    /// Packets that arrived after one with a higher counter of the same track.
    pub late: u64,
    /// Packets whose counter had already arrived.
    pub duplicates: u64,
    /// One-way delays, publisher stamp to our RTP delivery, microseconds (inside the window).
    pub delays_us: Vec<u32>,
    /// Per received stream (see [`LayerRuns::stream`]).
    tracks: HashMap<u64, TrackWindow>,
}

impl ReceiverTally {
    /// Counts one packet of `stream` (one received track, or with simulcast one run of one layer
    /// of it: [`LayerRuns::stream`]) carrying stamp counter `counter` (if stamped) that took
    /// `delay_us` to arrive.
    pub fn add(&mut self, stream: u64, counter: Option<u64>, delay_us: u64, measuring: bool) {
        self.total += 1;
        if !measuring {
            return;
        }
        self.measured += 1;
        let Some(counter) = counter else {
            self.unstamped += 1;
            return;
        };
        self.delays_us.push(delay_us.min(u32::MAX as u64) as u32);
        let track = self.tracks.entry(stream).or_insert_with(|| TrackWindow {
            base: counter,
            max: counter,
            ..TrackWindow::default()
        });
        if counter < track.max {
            self.late += 1;
        }
        // Counters from before the track's first packet in the window, or absurdly far ahead,
        // are not followed.
        let Some(offset) = counter.checked_sub(track.base).filter(|&o| o < MAX_SPAN) else {
            return;
        };
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if track.bits.len() <= word {
            track.bits.resize(word + 1, 0);
        }
        if track.bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        track.bits[word] |= 1 << bit;
        track.unique += 1;
        track.max = track.max.max(counter);
    }

    /// Distinct stamped packets received inside the window.
    pub fn unique(&self) -> u64 {
        self.tracks.values().map(|t| t.unique).sum()
    }

    /// Packets of the window that never arrived: counters between the first and the highest one
    /// seen per track, minus those received.
    pub fn missing(&self) -> u64 {
        self.tracks.values().map(|t| t.max - t.base + 1 - t.unique).sum()
    }

    /// Missing packets as a fraction of those that should have arrived.
    pub fn loss(&self) -> f64 {
        let missing = self.missing();
        ratio(missing as f64, (self.unique() + missing) as f64)
    }
}

/// Which simulcast layer each received track (our SSRC for it) carries. The SFU forwards one layer
/// of a simulcast track at a time on one SSRC and switches at keyframes; each layer numbers its
/// packets itself, so the stamp counters of one SSRC jump at a switch. Every run of packets of one
/// layer is therefore a stream of its own for the loss count: the packets a subscriber never got
/// because it received another layer meanwhile are not losses.
#[derive(Debug, Default, Clone)]
pub struct LayerRuns {
    /// Per SSRC: the layer of its last packet and how many runs it had.
    last: HashMap<u32, (u8, u32)>,
    /// Layer changes seen, over all SSRCs.
    pub switches: u64,
}

impl LayerRuns {
    /// The stream key of a packet of `ssrc` from `layer`: the SSRC, plus the number of the run.
    pub fn stream(&mut self, ssrc: u32, layer: u8) -> u64 {
        let entry = self.last.entry(ssrc).or_insert((layer, 0));
        if entry.0 != layer {
            *entry = (layer, entry.1 + 1);
            self.switches += 1;
        }
        (u64::from(entry.1) << 32) | u64::from(ssrc)
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
    fn least_squares_slope() {
        // Exactly on a line: its slope.
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        assert!((slope(&line).unwrap() - 0.5).abs() < 1e-12);
        // Up and down around a level: zero.
        assert!(slope(&[(0.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 1.0)]).unwrap().abs() < 1e-12);
        // Scattered: the least-squares fit, (Σ(x−x̄)(y−ȳ)) / Σ(x−x̄)² = 8 / 10 here.
        let scattered = [(1.0, 2.0), (2.0, 1.0), (3.0, 4.0), (4.0, 3.0), (5.0, 5.0)];
        assert!((slope(&scattered).unwrap() - 0.8).abs() < 1e-12);
        // Falling, unevenly spaced, in any order.
        assert!((slope(&[(2.0, -4.0), (0.0, 0.0), (0.5, -1.0)]).unwrap() + 2.0).abs() < 1e-12);
        // Not enough to fit a line.
        assert_eq!(slope(&[]), None);
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 7.0)]), None);
    }

    #[test]
    fn summary_sorts_first() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        let s = Summary::of(&mut v);
        assert_eq!((s.count, s.p50, s.p99, s.max), (5, 3.0, 5.0, 5.0));
        assert_eq!(Summary::of(&mut []), Summary::default());
    }

    #[test]
    fn tally_counts_losses_late_packets_duplicates_and_only_the_window() {
        let mut t = ReceiverTally::default();
        // Warm-up: counted in total only.
        t.add(1, Some(0), 100, false);
        t.add(1, Some(1), 100, false);
        // Window: 2 arrives, 3 and 4 are lost, 5 arrives, 4 is retransmitted late, 6 arrives,
        // 6 arrives again, 1 (from before the window) straggles in.
        t.add(1, Some(2), 200, true);
        t.add(1, Some(5), 300, true);
        t.add(1, Some(4), 400, true);
        t.add(1, Some(6), 500, true);
        t.add(1, Some(6), 500, true);
        t.add(1, Some(1), 900, true);
        // A second track starts inside the window: its first counter is no gap; 130 crosses a
        // bitmap word.
        t.add(2, Some(40), 600, true);
        t.add(2, Some(130), 600, true);
        t.add(2, None, 0, true);
        assert_eq!(t.total, 11);
        assert_eq!(t.measured, 9);
        assert_eq!(t.unstamped, 1);
        assert_eq!(t.late, 2);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.unique(), 4 + 2);
        // Track 1: 2..=6 less {2,4,5,6} = {3}; track 2: 40..=130 less two = 89.
        assert_eq!(t.missing(), 1 + 89);
        assert!((t.loss() - 90.0 / 96.0).abs() < 1e-12);
        assert_eq!(t.delays_us, vec![200, 300, 400, 500, 500, 900, 600, 600]);
    }

    #[test]
    fn layer_runs_keep_switches_from_counting_as_loss() {
        let mut runs = LayerRuns::default();
        let mut t = ReceiverTally::default();
        // Layer 0 packets 10..=12, a switch to layer 2 (its own counters 500, 501), back to layer
        // 0 at 20 (packets 13..=19 went to nobody: not lost), then 22 (21 lost).
        for (layer, counter) in [(0, 10), (0, 11), (0, 12), (2, 500), (2, 501), (0, 20), (0, 22)] {
            let stream = runs.stream(7, layer);
            t.add(stream, Some(counter), 0, true);
        }
        assert_eq!(runs.switches, 2);
        assert_eq!(t.unique(), 7);
        assert_eq!(t.missing(), 1);
        assert_eq!(t.late, 0);
        // Another SSRC keeps its own runs.
        assert_eq!(runs.stream(8, 1), 8);
        assert_ne!(runs.stream(7, 1), 7);
    }
}
