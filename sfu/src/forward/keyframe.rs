//! When to ask a publisher for a keyframe.
//!
//! New subscribers and subscribers that lost picture (PLI/FIR) need a keyframe, but many of them at
//! once must not turn into a flood of requests to the publisher: requests inside `min_interval`
//! of the last one sent are folded into one that fires when the interval has passed.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Someone needs a keyframe. Returns true when a request should go out now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(at) if now.saturating_duration_since(at) < self.min_interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// Called on a timer: true when a folded request is now due.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.pending && self.request(now)
    }

    /// When the folded request becomes due, if one is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(at)) => Some(at + self.min_interval),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_bursts_into_one_request_per_interval() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(10)));
        assert!(!k.request(t0 + Duration::from_millis(20)));
        assert_eq!(k.deadline(), Some(t0 + Duration::from_millis(500)));
        assert!(!k.poll(t0 + Duration::from_millis(499)));
        assert!(k.poll(t0 + Duration::from_millis(500)));
        assert!(!k.poll(t0 + Duration::from_millis(2000)), "nothing left pending");
        assert_eq!(k.deadline(), None);
    }
}
