//! Exponential reconnect backoff with jitter. Plain arithmetic; the caller sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reconnect delays: `initial`, doubling up to `max`, each with up to 25 % random jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

/// The state of one reconnecting connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The delay before the next attempt; grows with every call until [`Backoff::reset`].
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let base = self.config.initial.saturating_mul(factor).min(self.config.max);
        // Jitter from the clock's sub-second digits: enough to keep many workers from reconnecting in step.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = base.mul_f64((nanos % 1000) as f64 / 4000.0);
        base + jitter
    }

    /// A connection succeeded and stayed up: start from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(700),
        });
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        let within =
            |d: Duration, base: u64| d >= Duration::from_millis(base) && d <= Duration::from_millis(base * 5 / 4);
        assert!(within(d[0], 100) && within(d[1], 200) && within(d[2], 400), "{d:?}");
        assert!(within(d[3], 700) && within(d[4], 700), "{d:?}");
        b.reset();
        assert!(within(b.next_delay(), 100));
    }
}
