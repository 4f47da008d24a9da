//! Simulcast layers: how many a track may have, which one a tile needs, and the bitrate each
//! arrives at (what forwarding it to one more subscriber costs).

use std::time::{Duration, Instant};

/// Encodings of one simulcast track the SFU takes (lowest first); more are ignored.
pub const MAX_LAYERS: usize = 3;

/// Window over which a layer's bitrate is measured.
const WINDOW: Duration = Duration::from_millis(500);

/// What a layer is assumed to cost before it has been measured (bits per second), lowest first:
/// roughly what browsers send at a quarter, half and full 720p.
const NOMINAL_BPS: [u64; MAX_LAYERS] = [150_000, 500_000, 1_500_000];

/// Incoming bitrate of each layer of one track, smoothed over a few windows.
#[derive(Debug, Clone, Default)]
pub struct LayerRates {
    window_start: Option<Instant>,
    bytes: [u64; MAX_LAYERS],
    bps: [Option<u64>; MAX_LAYERS],
}

impl LayerRates {
    /// A packet of `len` payload bytes arrived on `layer`.
    pub fn add(&mut self, layer: u8, len: usize, now: Instant) {
        self.roll(now);
        if let Some(b) = self.bytes.get_mut(layer as usize) {
            *b += len as u64;
        }
    }

    /// Closes the window when it is over; call from a timer too, so a layer that stopped arriving
    /// falls to zero.
    pub fn roll(&mut self, now: Instant) {
        let Some(start) = self.window_start else {
            self.window_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return;
        }
        for (bytes, bps) in self.bytes.iter_mut().zip(&mut self.bps) {
            let measured = *bytes * 8 * 1_000_000 / elapsed.as_micros().max(1) as u64;
            // A window without a packet means the layer stopped (the encoder dropped it).
            *bps = Some(match *bps {
                Some(old) if measured > 0 => (old + measured) / 2,
                _ => measured,
            });
            *bytes = 0;
        }
        self.window_start = Some(now);
    }

    /// The layer's measured bitrate (bits per second); `None` before a window has closed.
    pub fn measured(&self, layer: u8) -> Option<u64> {
        self.bps.get(layer as usize).copied().flatten()
    }

    /// What forwarding each of the first `layers` layers costs (bits per second): its measured
    /// rate, a nominal one before it was measured, `None` when it has stopped arriving.
    /// When no layer arrives at all (a plain track, or a publisher between packets), none is ruled
    /// out: each costs its nominal rate. So does a layer in `off` (bit `i`: layer `i`), which the
    /// publisher was told to stop and starts again when chosen.
    pub fn costs(&self, layers: u8, off: u8) -> [Option<u64>; MAX_LAYERS] {
        let layers = (layers as usize).min(MAX_LAYERS);
        let silent = self.bps[..layers].iter().all(|b| b.is_none_or(|b| b == 0));
        std::array::from_fn(|l| match self.bps[l] {
            _ if l >= layers => None,
            _ if silent || off & (1 << l) != 0 => Some(NOMINAL_BPS[l]),
            Some(0) => None,
            Some(bps) => Some(bps),
            None => Some(NOMINAL_BPS[l]),
        })
    }
}

/// The layer (of `layers`, lowest first) a tile `height` pixels high needs when the top layer is
/// `top_height` pixels high and each lower layer is half the one above (as the web client sends).
/// A height of 0 means the tile is not shown.
pub fn layer_for_height(height: u32, top_height: u32, layers: u8) -> Option<u8> {
    if height == 0 {
        return None;
    }
    let top = layers.max(1) - 1;
    let mut layer = top;
    let mut layer_height = top_height.max(1);
    // Step down while the next lower layer still covers the tile.
    while layer > 0 && layer_height / 2 >= height {
        layer -= 1;
        layer_height /= 2;
    }
    Some(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_measured_per_layer_and_fall_when_a_layer_stops() {
        let t0 = Instant::now();
        let mut r = LayerRates::default();
        assert_eq!(r.measured(0), None);
        assert_eq!(
            r.costs(3, 0),
            [Some(150_000), Some(500_000), Some(1_500_000)],
            "nominal before measuring"
        );
        assert_eq!(r.costs(1, 0), [Some(150_000), None, None]);
        // 100 packets of 1000 bytes on layer 0 and 10 on layer 1 over 500 ms.
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i * 5);
            r.add(0, 1000, at);
            if i % 10 == 0 {
                r.add(1, 1000, at);
            }
        }
        r.roll(t0 + WINDOW);
        assert_eq!(r.measured(0), Some(1_600_000));
        assert_eq!(r.measured(1), Some(160_000));
        assert_eq!(
            r.costs(3, 0),
            [Some(1_600_000), Some(160_000), None],
            "layer 2 does not arrive"
        );
        // Smoothed over windows; layer 1 sends nothing in the second.
        for i in 0..50u64 {
            r.add(0, 1000, t0 + WINDOW + Duration::from_millis(i * 10));
        }
        r.roll(t0 + 2 * WINDOW);
        assert_eq!(r.measured(0), Some(1_200_000));
        assert_eq!(r.measured(1), Some(0));
        assert_eq!(
            r.costs(3, 0),
            [Some(1_200_000), None, None],
            "a layer that stops is not arriving"
        );
        assert_eq!(
            r.costs(3, 0b010),
            [Some(1_200_000), Some(500_000), None],
            "unless we stopped it"
        );
        // Nothing arrives at all: nothing is ruled out.
        r.roll(t0 + 3 * WINDOW);
        assert_eq!(r.measured(0), Some(0));
        assert_eq!(r.costs(2, 0), [Some(150_000), Some(500_000), None]);
    }

    #[test]
    fn tiles_map_to_the_smallest_layer_that_covers_them() {
        // 720p top layer: 180, 360, 720.
        assert_eq!(layer_for_height(0, 720, 3), None);
        assert_eq!(layer_for_height(120, 720, 3), Some(0));
        assert_eq!(layer_for_height(180, 720, 3), Some(0));
        assert_eq!(layer_for_height(181, 720, 3), Some(1));
        assert_eq!(layer_for_height(360, 720, 3), Some(1));
        assert_eq!(layer_for_height(500, 720, 3), Some(2));
        assert_eq!(layer_for_height(2000, 720, 3), Some(2));
        assert_eq!(layer_for_height(100, 720, 1), Some(0), "a plain track has one layer");
    }
}
