//! How often one participant may make the media thread apply a publish offer: a token bucket
//! (bursts of four offers at the configured rate), so renegotiation stays cheap for everyone else.

use std::time::Instant;

/// Offers a participant may make at once before the rate applies.
const BURST_SECONDS: f64 = 4.0;

#[derive(Debug, Clone)]
pub(crate) struct OfferRate {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl OfferRate {
    pub fn new(per_second: f64, now: Instant) -> Self {
        let per_second = per_second.max(0.01);
        Self {
            per_second,
            tokens: Self::burst(per_second),
            at: now,
        }
    }

    fn burst(per_second: f64) -> f64 {
        (per_second * BURST_SECONDS).max(1.0)
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Takes one offer's token; false when the participant is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(Self::burst(self.per_second));
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
        let mut rate = OfferRate::new(2.0, t0);
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
}
