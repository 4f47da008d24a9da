//! A token bucket on the caller's clock: `per_second` tokens a second, at most `burst` saved up.
//! The media server limits how often one participant may make it apply an offer with it, the
//! signaling session how many messages one websocket may send.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// Full at `now`: `burst_seconds` of the rate may be taken at once (at least one token).
    pub fn new(per_second: f64, burst_seconds: f64, now: Instant) -> Self {
        let per_second = per_second.max(0.01);
        let burst = (per_second * burst_seconds).max(1.0);
        Self {
            per_second,
            burst,
            tokens: burst,
            at: now,
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Takes one token; false when there is none left at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut rate = TokenBucket::new(2.0, 4.0, t0);
        let burst = (0..20).filter(|_| rate.allow(t0)).count();
        assert_eq!(burst, 8, "four seconds' worth at once");
        assert!(!rate.allow(t0 + Duration::from_millis(100)));
        assert!(
            rate.allow(t0 + Duration::from_millis(600)),
            "one more after half a second"
        );
        assert!(!rate.allow(t0 + Duration::from_millis(700)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..20).filter(|_| rate.allow(later)).count(),
            8,
            "idle time refills only up to the burst"
        );
    }

    #[test]
    fn a_slow_rate_still_allows_one() {
        let t0 = Instant::now();
        let mut rate = TokenBucket::new(0.1, 1.0, t0);
        assert!(rate.allow(t0));
        assert!(!rate.allow(t0 + Duration::from_secs(5)));
        assert!(rate.allow(t0 + Duration::from_secs(10)));
    }
}
