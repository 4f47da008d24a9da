//! Climbing back up on a receiver-side estimate (REMB).
//!
//! A subscriber that estimates its downlink itself (REMB, as aiortc and browsers without
//! transport-wide feedback do) never reports much more than it receives: its estimate is capped
//! at about 1.5 times the incoming rate and grows slowly. Once the allocator has lowered such a
//! subscriber to a small layer, the estimate stays small and the layer with it, even after the link
//! has recovered. So the SFU probes with the media itself: when the budget held a track below what
//! its tile needs and the link has been calm for a while, it lends the budget the next step up for a
//! few seconds (if that step costs at most twice the estimate; no track rises more than one step
//! on it). If the subscriber reports loss meanwhile, or its estimate falls (the link cannot
//! carry it), the loan ends at once and the next try waits twice as long; if not, the loan stays
//! as a floor under the budget until either happens — by then the receiver's estimate has usually
//! grown past it.
//!
//! Nor does such an estimate fall at once when the link thins: after congestion (loss, or the
//! estimate falling) it may bounce back within a second or two while the link still cannot carry
//! more. So after congestion the estimate is trusted only up to what it was then, until the link
//! has been calm for [`TRUST_AFTER`]; meanwhile the subscriber climbs only by tries.
//!
//! For the same reason such an estimate is no evidence that the link cannot carry the lowest layer
//! of the most important video: after a burst of congestion it may fall below that layer's rate, and
//! a paused track sends nothing the receiver could measure, so it would stay paused. That layer is
//! therefore kept whatever the estimate says, until every receiver report over [`KEEP_LOSSY_FOR`]
//! shows loss while it alone was sent (the link is thinner than the lowest layer); then the track
//! pauses, and comes back by a try that carries, or when the estimate alone affords it again
//! without loss.

use std::time::{Duration, Instant};

/// Calm needed before the first try, and between successful ones.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// How long a try must hold without loss or a falling estimate to count as carried.
pub const PROBE_HOLD: Duration = Duration::from_secs(3);
/// A try lends at most this many times the estimate: a step that costs more waits until the
/// estimate has grown (as Google Congestion Control's probes go to twice the estimate). Without
/// it, a link that carries the middle layer would be flooded with a top layer of several times its
/// capacity at every try.
pub const MAX_LOAN_FACTOR: u64 = 2;
/// Longest wait between tries after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The estimate falling below this share (percent) of its highest value since the loan was made
/// reads as congestion.
const FALL_PERCENT: u64 = 80;
/// A receiver report's fraction lost (of 256) above this reads as congestion: 5 %.
pub const LOSS_LIMIT: u8 = 13;
/// Calm (no loss, no falling estimate) needed after congestion before the estimate is trusted
/// above what it was at the congestion again.
pub const TRUST_AFTER: Duration = Duration::from_secs(10);
/// How long every receiver report must show loss, while only the kept lowest layer was sent, to end
/// the keep (longer than the tail of loss a failed try leaves in the next reports).
pub const KEEP_LOSSY_FOR: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No try under way; the next may start at `next`.
    Idle { next: Instant },
    /// A try under way until `until`.
    Trying { until: Instant },
}

/// The probing state of one subscriber.
#[derive(Debug, Clone)]
pub struct Probe {
    state: State,
    /// Budget lent (bits per second; 0: none). The allocator spends at least this much.
    floor: u64,
    /// Highest estimate since the loan was made: the reference a fall is measured against.
    reference: u64,
    backoff: Duration,
    /// Whether the lowest layer of the most important video is kept whatever the estimate says.
    keep: bool,
    /// Whether the last budget was the kept layer's (more than the estimate and any loan gave), and
    /// whether it paid for the lowest layer at all.
    keeping: bool,
    sending_lowest: bool,
    /// Whether the last budget was more than the estimate gave (a loan, or the keep).
    borrowed: bool,
    /// Since when every report has shown loss while keeping.
    lossy_since: Option<Instant>,
    /// The estimate at the last congestion, above which it is not trusted until `calm_since` is
    /// [`TRUST_AFTER`] old.
    cap: Option<u64>,
    calm_since: Instant,
    /// Tries made, and those that failed (for the metrics).
    pub tries: u64,
    pub failures: u64,
}

impl Probe {
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Idle {
                next: now + PROBE_INTERVAL,
            },
            floor: 0,
            reference: 0,
            backoff: PROBE_INTERVAL,
            keep: true,
            keeping: false,
            sending_lowest: false,
            borrowed: false,
            lossy_since: None,
            cap: None,
            calm_since: now,
            tries: 0,
            failures: 0,
        }
    }

    /// The part of `estimate` trusted now: all of it, or, within [`TRUST_AFTER`] of congestion,
    /// no more than it was then.
    pub fn trusted(&self, estimate: u64) -> u64 {
        self.cap.map_or(estimate, |cap| estimate.min(cap))
    }

    /// What the allocator may spend: the budget from the estimate, or the loan if that is more, or
    /// `lowest` (what the lowest layer of the most important shown video costs) while it is kept.
    pub fn budget(&mut self, from_estimate: u64, lowest: Option<u64>) -> u64 {
        let lent = from_estimate.max(self.floor);
        let kept = lowest.filter(|_| self.keep).unwrap_or(0);
        self.keeping = kept > lent;
        self.sending_lowest = lowest.is_some_and(|l| lent.max(kept) >= l);
        self.borrowed = lent.max(kept) > from_estimate;
        lent.max(kept)
    }

    /// Whether the last [`Probe::budget`] was more than the estimate gave: a loan, or the kept
    /// lowest layer, on which no track may rise more than one step (see
    /// [`super::allocate::at_most_one_step_up`]).
    pub fn borrowed(&self) -> bool {
        self.borrowed
    }

    pub fn is_trying(&self) -> bool {
        matches!(self.state, State::Trying { .. })
    }

    /// After an allocation round: `estimate` is the subscriber's estimate now, `loss` the highest
    /// fraction lost (of 256) it reported since the last round (`None`: no report came), `needed`
    /// the budget that would have raised its most important held-back track one step (`None`:
    /// nothing was held back).
    pub fn round(&mut self, estimate: u64, loss: Option<u8>, needed: Option<u64>, now: Instant) {
        self.reference = self.reference.max(estimate);
        let fell = estimate < self.reference * FALL_PERCENT / 100;
        let lossy = loss.is_some_and(|l| l > LOSS_LIMIT);
        let congested = lossy || fell;
        if congested {
            self.cap = Some(self.trusted(estimate));
            self.calm_since = now;
        } else if now.saturating_duration_since(self.calm_since) >= TRUST_AFTER {
            self.cap = None;
        }
        self.keep_or_pause(loss, now);
        match self.state {
            State::Trying { .. } if congested => {
                self.failures += 1;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.end_loan(now);
            }
            State::Trying { until } if now >= until => {
                // Carried: the loan stays as a floor until the link says otherwise.
                self.keep = true;
                self.backoff = PROBE_INTERVAL;
                self.state = State::Idle {
                    next: now + PROBE_INTERVAL,
                };
            }
            State::Idle { .. } if congested => {
                // No try while the link is troubled; a floor lent earlier goes.
                self.end_loan(now);
            }
            _ => {}
        }
        if let (State::Idle { next }, Some(needed)) = (self.state, needed)
            && now >= next
            && needed <= estimate.saturating_mul(MAX_LOAN_FACTOR)
        {
            self.tries += 1;
            self.floor = self.floor.max(needed);
            self.reference = estimate;
            self.state = State::Trying {
                until: now + PROBE_HOLD,
            };
        }
    }

    /// Whether the kept lowest layer stays, from the latest receiver report (see the module's doc).
    fn keep_or_pause(&mut self, loss: Option<u8>, now: Instant) {
        let Some(loss) = loss else { return };
        let lossy = loss > LOSS_LIMIT;
        if !self.keeping || !lossy {
            self.lossy_since = None;
            if !self.keeping && self.sending_lowest && !lossy {
                // The estimate alone pays for the lowest layer, and the link carries it.
                self.keep = true;
            }
            return;
        }
        let since = *self.lossy_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= KEEP_LOSSY_FOR {
            // Even the lowest layer is too much for this link: pause until a try carries.
            self.keep = false;
            self.lossy_since = None;
        }
    }

    fn end_loan(&mut self, now: Instant) {
        self.floor = 0;
        self.reference = 0;
        self.state = State::Idle {
            next: now + self.backoff,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    /// A receiver report with 40/256 lost, and one with none.
    const LOSSY: Option<u8> = Some(40);
    const CLEAN: Option<u8> = Some(0);

    #[test]
    fn nothing_is_lent_while_nothing_is_held_back() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        for s in 0..30 {
            p.round(300_000, CLEAN, None, t0 + SECOND * s);
        }
        assert_eq!((p.budget(200_000, None), p.tries), (200_000, 0));
    }

    #[test]
    fn a_try_waits_for_calm_and_a_carried_one_stays_as_a_floor_until_loss() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        p.round(250_000, CLEAN, Some(480_000), t0 + SECOND);
        assert_eq!(p.budget(200_000, None), 200_000, "too early");
        p.round(250_000, CLEAN, Some(480_000), t0 + PROBE_INTERVAL);
        assert!(p.is_trying());
        assert_eq!(p.budget(200_000, None), 480_000, "the next step is lent");
        assert!(p.borrowed());
        assert_eq!(p.budget(700_000, None), 700_000);
        assert!(!p.borrowed(), "the estimate pays");
        // The estimate grows with what it receives, no loss: carried.
        p.round(300_000, Some(2), None, t0 + PROBE_INTERVAL + SECOND);
        p.round(350_000, CLEAN, None, t0 + PROBE_INTERVAL + PROBE_HOLD);
        assert!(!p.is_trying());
        assert_eq!(p.budget(300_000, None), 480_000, "the floor stays");
        // Loss later: the floor goes.
        p.round(350_000, LOSSY, None, t0 + PROBE_INTERVAL + PROBE_HOLD + SECOND);
        assert_eq!(p.budget(300_000, None), 300_000);
        assert_eq!((p.tries, p.failures), (1, 0));
    }

    #[test]
    fn after_congestion_the_estimate_is_trusted_only_up_to_its_value_then_until_calm() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        p.round(1_500_000, CLEAN, None, t0 + SECOND);
        assert_eq!(p.trusted(1_500_000), 1_500_000);
        p.round(400_000, LOSSY, None, t0 + SECOND * 2);
        // It bounces back at once, but the link has not shown it can carry more.
        p.round(1_200_000, CLEAN, None, t0 + SECOND * 3);
        assert_eq!(p.trusted(1_200_000), 400_000);
        assert_eq!(p.trusted(300_000), 300_000, "a lower estimate is taken as it is");
        // More loss keeps the lower value, and restarts the wait.
        p.round(350_000, LOSSY, None, t0 + SECOND * 4);
        p.round(900_000, CLEAN, None, t0 + SECOND * 4 + TRUST_AFTER - SECOND);
        assert_eq!(p.trusted(900_000), 350_000);
        p.round(900_000, CLEAN, None, t0 + SECOND * 4 + TRUST_AFTER);
        assert_eq!(p.trusted(900_000), 900_000, "calm long enough");
    }

    #[test]
    fn a_falling_estimate_ends_a_floor_too() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        p.round(250_000, CLEAN, Some(480_000), t0 + PROBE_INTERVAL);
        p.round(400_000, CLEAN, None, t0 + PROBE_INTERVAL + PROBE_HOLD);
        assert_eq!(p.budget(300_000, None), 480_000);
        p.round(300_000, CLEAN, None, t0 + PROBE_INTERVAL + PROBE_HOLD + SECOND);
        assert_eq!(p.budget(250_000, None), 250_000, "fell below 80 % of its peak");
    }

    #[test]
    fn the_lowest_layer_is_kept_under_the_estimate_until_it_alone_meets_loss() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        let lowest = Some(150_000);
        // Loss while the estimate paid for more than the lowest layer does not end the keep.
        let mut now = t0;
        for _ in 0..10 {
            assert_eq!(p.budget(400_000, lowest), 400_000);
            p.round(450_000, LOSSY, None, now);
            now += SECOND / 2;
        }
        // A burst of congestion took the estimate under the lowest layer: it is kept.
        assert_eq!(p.budget(100_000, lowest), 150_000, "kept");
        assert!(p.borrowed());
        p.round(120_000, CLEAN, Some(150_000), now);
        // Reports with loss while only the kept layer goes out, one a second (the rounds between
        // them bring no report, which is no news): once they have shown loss for KEEP_LOSSY_FOR,
        // the link is thinner than the lowest layer.
        let start = now;
        let mut paused_at = None;
        for half in 1..=20 {
            let t = start + SECOND / 2 * half;
            if p.budget(100_000, lowest) < 150_000 {
                paused_at.get_or_insert(t);
            }
            p.round(100_000, (half % 2 == 0).then_some(40), Some(150_000), t);
        }
        // The first report at 1 s, the one 3 s later pauses: seen by the next round.
        assert_eq!(paused_at, Some(start + SECOND * 9 / 2));
        now = start + SECOND * 10;
        // A try that carries brings it back, and it stays when the loan has gone.
        now += MAX_BACKOFF;
        p.round(100_000, CLEAN, Some(150_000), now);
        assert!(p.is_trying());
        assert_eq!(p.budget(100_000, lowest), 150_000, "lent");
        p.round(110_000, CLEAN, None, now + PROBE_HOLD);
        assert!(!p.is_trying());
        p.round(110_000, LOSSY, None, now + PROBE_HOLD + SECOND);
        assert_eq!(p.budget(100_000, lowest), 150_000, "kept again after the loan ended");
    }

    #[test]
    fn a_clean_report_resets_the_wait_for_pausing() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        let lowest = Some(150_000);
        let mut now = t0;
        // Loss, a clean report, loss again: never KEEP_LOSSY_FOR of loss in a row.
        for report in [LOSSY, LOSSY, CLEAN, LOSSY, LOSSY, LOSSY, CLEAN, LOSSY] {
            assert_eq!(p.budget(100_000, lowest), 150_000);
            p.round(100_000, report, Some(150_000), now);
            now += SECOND;
        }
        assert_eq!(p.budget(100_000, lowest), 150_000, "still kept");
    }

    #[test]
    fn a_paused_track_comes_back_when_the_estimate_alone_affords_it() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        let lowest = Some(150_000);
        let mut now = t0;
        while now <= t0 + KEEP_LOSSY_FOR {
            p.budget(50_000, lowest);
            p.round(50_000, LOSSY, Some(150_000), now);
            now += SECOND;
        }
        assert_eq!(p.budget(50_000, lowest), 50_000, "paused");
        p.round(50_000, CLEAN, Some(150_000), now);
        assert_eq!(
            p.budget(50_000, lowest),
            50_000,
            "no news of the lowest layer: still paused"
        );
        assert_eq!(p.budget(200_000, lowest), 200_000);
        p.round(200_000, CLEAN, None, now + SECOND);
        assert_eq!(p.budget(60_000, lowest), 150_000, "kept again");
    }

    #[test]
    fn a_step_of_more_than_twice_the_estimate_is_not_tried() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        p.round(280_000, CLEAN, Some(756_000), t0 + PROBE_INTERVAL);
        assert!(!p.is_trying(), "the top layer over a link that carries the middle one");
        p.round(380_000, CLEAN, Some(756_000), t0 + PROBE_INTERVAL + SECOND);
        assert!(p.is_trying(), "the estimate grew");
        assert_eq!(p.budget(300_000, None), 756_000);
    }

    #[test]
    fn a_failed_try_ends_at_once_and_the_next_waits_twice_as_long() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        let mut now = t0 + PROBE_INTERVAL;
        p.round(250_000, CLEAN, Some(480_000), now);
        assert!(p.is_trying());
        now += SECOND;
        // The estimate does not fall (a receiver-side one need not), but the receiver loses packets.
        p.round(300_000, LOSSY, Some(480_000), now);
        assert!(!p.is_trying(), "the link cannot carry it");
        assert_eq!(p.budget(120_000, None), 120_000);
        assert_eq!(p.failures, 1);
        // Not again before twice the interval has passed.
        p.round(250_000, CLEAN, Some(480_000), now + PROBE_INTERVAL);
        assert!(!p.is_trying());
        p.round(250_000, CLEAN, Some(480_000), now + PROBE_INTERVAL * 2);
        assert!(p.is_trying());
        // Failing again and again backs off up to the longest wait.
        for _ in 0..10 {
            now += MAX_BACKOFF;
            p.round(250_000, CLEAN, Some(480_000), now);
            now += SECOND;
            p.round(250_000, LOSSY, Some(480_000), now);
        }
        assert_eq!(p.backoff, MAX_BACKOFF);
        p.round(250_000, CLEAN, Some(480_000), now + MAX_BACKOFF - SECOND);
        assert!(!p.is_trying());
        p.round(250_000, CLEAN, Some(480_000), now + MAX_BACKOFF);
        assert!(p.is_trying());
    }
}
