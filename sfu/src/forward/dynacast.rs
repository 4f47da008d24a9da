//! Dynacast: simulcast layers nobody receives are switched off at the publisher, and back on as soon
//! as someone needs them. Turning a layer off waits a few seconds, so a subscriber that moves
//! between layers does not make the publisher's encoder flap.

use super::layers::MAX_LAYERS;
use std::time::{Duration, Instant};

/// How long a layer goes unwanted before the publisher is told to stop it.
pub const OFF_AFTER: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Dynacast {
    layers: u8,
    /// Layers the publisher was told to send, as a bit set (bit `i`: layer `i`).
    active: u8,
    unwanted_since: [Option<Instant>; MAX_LAYERS],
}

impl Dynacast {
    /// A track of `layers` layers; the publisher starts with all of them on.
    pub fn new(layers: u8) -> Self {
        let layers = layers.clamp(1, MAX_LAYERS as u8);
        Self {
            layers,
            active: (1 << layers) - 1,
            unwanted_since: [None; MAX_LAYERS],
        }
    }

    /// Layers the publisher sends, as far as it was told.
    pub fn active(&self) -> u8 {
        self.active
    }

    /// The layers subscribers want now (see `PublishedTrack::wanted_layers`). Returns the new set of
    /// active layers when the publisher must be told.
    pub fn update(&mut self, wanted: u8, now: Instant) -> Option<u8> {
        let mut active = self.active;
        for layer in 0..self.layers {
            let bit = 1 << layer;
            if wanted & bit != 0 {
                self.unwanted_since[layer as usize] = None;
                active |= bit;
            } else {
                let since = *self.unwanted_since[layer as usize].get_or_insert(now);
                if now.saturating_duration_since(since) >= OFF_AFTER {
                    active &= !bit;
                }
            }
        }
        (active != self.active).then(|| {
            self.active = active;
            active
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwanted_layers_go_off_after_a_while_and_come_back_at_once() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(3);
        assert_eq!(d.active(), 0b111);
        assert_eq!(d.update(0b111, t0), None);
        // Nobody wants the top layer any more: off after OFF_AFTER, not before.
        assert_eq!(d.update(0b011, t0), None);
        assert_eq!(d.update(0b011, t0 + OFF_AFTER - Duration::from_millis(1)), None);
        assert_eq!(d.update(0b011, t0 + OFF_AFTER), Some(0b011));
        assert_eq!(d.update(0b011, t0 + 2 * OFF_AFTER), None, "told once");
        // Wanted again: on at once.
        let later = t0 + 3 * OFF_AFTER;
        assert_eq!(d.update(0b111, later), Some(0b111));
        // A layer that is unwanted only briefly stays on.
        assert_eq!(d.update(0b110, later), None);
        assert_eq!(d.update(0b111, later + Duration::from_secs(1)), None);
        assert_eq!(
            d.update(0b110, later + Duration::from_secs(2)),
            None,
            "the wait starts over"
        );
        assert_eq!(d.update(0b110, later + Duration::from_secs(2) + OFF_AFTER), Some(0b110));
        // Nobody at all: everything off.
        let end = later + 10 * OFF_AFTER;
        assert_eq!(d.update(0, end), None);
        assert_eq!(d.update(0, end + OFF_AFTER), Some(0));
    }
}
