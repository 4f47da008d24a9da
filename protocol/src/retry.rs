//! How long to wait before trying again: exponential backoff, the one schedule for everything in
//! Samtal that retries (the transcription worker's reconnects and resends, the server's Matrix
//! outbox). Plain arithmetic; the caller sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Retry delays: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl BackoffConfig {
    /// The delay after `failures` failed attempts in a row (0 before the first retry), without
    /// jitter: for a schedule kept in a database, where attempts are counted across restarts.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.min(16);
        self.initial.saturating_mul(factor).min(self.max.max(self.initial))
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

/// The state of one reconnecting connection: [`BackoffConfig::delay`] plus up to 25 % random jitter,
/// so that many clients that lost the same server do not come back in step.
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
        let base = self.config.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
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

    #[test]
    fn a_counted_schedule_doubles_up_to_the_cap_without_jitter() {
        let config = BackoffConfig {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (0..6).map(|a| config.delay(a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(config.delay(u32::MAX).as_secs(), 60);
    }
}
