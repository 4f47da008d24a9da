//! Climbing back up on a receiver-side estimate (REMB).
//!
//! A subscriber that estimates its downlink itself (REMB, as aiortc and browsers without
//! transport-wide feedback do) never reports much more than it receives: its estimate is capped
//! at about 1.5 times the incoming rate and grows slowly. Once the allocator has lowered such a
//! subscriber to a small layer, the estimate stays small and the layer with it, even after the link
//! has recovered. So the SFU probes with the media itself: when the budget held a track below what
//! its tile needs and the link has been calm for a while, it lends the budget the next step up for a
//! few seconds. If the subscriber reports loss meanwhile, or its estimate falls (the link cannot
//! carry it), the loan ends at once and the next try waits twice as long; if not, the loan stays
//! as a floor under the budget until either happens — by then the receiver's estimate has usually
//! grown past it.

use std::time::{Duration, Instant};

/// Calm needed before the first try, and between successful ones.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// How long a try must hold without loss or a falling estimate to count as carried.
pub const PROBE_HOLD: Duration = Duration::from_secs(3);
/// Longest wait between tries after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The estimate falling below this share (percent) of its highest value since the loan was made
/// reads as congestion.
const FALL_PERCENT: u64 = 80;
/// A receiver report's fraction lost (of 256) above this reads as congestion: 5 %.
pub const LOSS_LIMIT: u8 = 13;

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
            tries: 0,
            failures: 0,
        }
    }

    /// What the allocator may spend: the budget from the estimate, or the loan if that is more.
    pub fn budget(&self, from_estimate: u64) -> u64 {
        from_estimate.max(self.floor)
    }

    pub fn is_trying(&self) -> bool {
        matches!(self.state, State::Trying { .. })
    }

    /// After an allocation round: `estimate` is the subscriber's estimate now, `loss` the highest
    /// fraction lost (of 256) it reported since the last round, `needed` the budget that would
    /// have raised its most important held-back track one step (`None`: nothing was held back).
    pub fn round(&mut self, estimate: u64, loss: u8, needed: Option<u64>, now: Instant) {
        self.reference = self.reference.max(estimate);
        let fell = estimate < self.reference * FALL_PERCENT / 100;
        let congested = loss > LOSS_LIMIT || fell;
        match self.state {
            State::Trying { .. } if congested => {
                self.failures += 1;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.end_loan(now);
            }
            State::Trying { until } if now >= until => {
                // Carried: the loan stays as a floor until the link says otherwise.
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
        {
            self.tries += 1;
            self.floor = self.floor.max(needed);
            self.reference = estimate;
            self.state = State::Trying {
                until: now + PROBE_HOLD,
            };
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
    const LOSSY: u8 = 40;

    #[test]
    fn nothing_is_lent_while_nothing_is_held_back() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        for s in 0..30 {
            p.round(300_000, 0, None, t0 + SECOND * s);
        }
        assert_eq!((p.budget(200_000), p.tries), (200_000, 0));
    }

    #[test]
    fn a_try_waits_for_calm_and_a_carried_one_stays_as_a_floor_until_loss() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        p.round(250_000, 0, Some(600_000), t0 + SECOND);
        assert_eq!(p.budget(200_000), 200_000, "too early");
        p.round(250_000, 0, Some(600_000), t0 + PROBE_INTERVAL);
        assert!(p.is_trying());
        assert_eq!(p.budget(200_000), 600_000, "the next step is lent");
        // The estimate grows with what it receives, no loss: carried.
        p.round(300_000, 2, None, t0 + PROBE_INTERVAL + SECOND);
        p.round(350_000, 0, None, t0 + PROBE_INTERVAL + PROBE_HOLD);
        assert!(!p.is_trying());
        assert_eq!(p.budget(300_000), 600_000, "the floor stays");
        // Loss later: the floor goes.
        p.round(350_000, LOSSY, None, t0 + PROBE_INTERVAL + PROBE_HOLD + SECOND);
        assert_eq!(p.budget(300_000), 300_000);
        assert_eq!((p.tries, p.failures), (1, 0));
    }

    #[test]
    fn a_falling_estimate_ends_a_floor_too() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        p.round(250_000, 0, Some(600_000), t0 + PROBE_INTERVAL);
        p.round(400_000, 0, None, t0 + PROBE_INTERVAL + PROBE_HOLD);
        assert_eq!(p.budget(300_000), 600_000);
        p.round(300_000, 0, None, t0 + PROBE_INTERVAL + PROBE_HOLD + SECOND);
        assert_eq!(p.budget(250_000), 250_000, "fell below 80 % of its peak");
    }

    #[test]
    fn a_failed_try_ends_at_once_and_the_next_waits_twice_as_long() {
        let t0 = Instant::now();
        let mut p = Probe::new(t0);
        let mut now = t0 + PROBE_INTERVAL;
        p.round(250_000, 0, Some(600_000), now);
        assert!(p.is_trying());
        now += SECOND;
        // The estimate does not fall (a receiver-side one need not), but the receiver loses packets.
        p.round(300_000, LOSSY, Some(600_000), now);
        assert!(!p.is_trying(), "the link cannot carry it");
        assert_eq!(p.budget(120_000), 120_000);
        assert_eq!(p.failures, 1);
        // Not again before twice the interval has passed.
        p.round(250_000, 0, Some(600_000), now + PROBE_INTERVAL);
        assert!(!p.is_trying());
        p.round(250_000, 0, Some(600_000), now + PROBE_INTERVAL * 2);
        assert!(p.is_trying());
        // Failing again and again backs off up to the longest wait.
        for _ in 0..10 {
            now += MAX_BACKOFF;
            p.round(250_000, 0, Some(600_000), now);
            now += SECOND;
            p.round(250_000, LOSSY, Some(600_000), now);
        }
        assert_eq!(p.backoff, MAX_BACKOFF);
        p.round(250_000, 0, Some(600_000), now + MAX_BACKOFF - SECOND);
        assert!(!p.is_trying());
        p.round(250_000, 0, Some(600_000), now + MAX_BACKOFF);
        assert!(p.is_trying());
    }
}
