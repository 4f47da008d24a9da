//! Spending one subscriber's downlink estimate on the video it could receive.
//!
//! Audio is never allocated (it is small and always forwarded; the caller takes it off the budget
//! first). Video goes in priority order: every shown track first gets its lowest layer while the
//! budget lasts (a track that does not fit is paused rather than letting every stream freeze), then
//! each, again in priority order, is raised as far as its tile needs and the remaining budget
//! allows. Without an estimate, every shown track gets the layer its tile needs.

use super::layers::MAX_LAYERS;

/// One video track a subscriber could receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want<K> {
    pub key: K,
    /// Lower goes first: screen share, then the dominant speaker's camera, then other cameras.
    pub priority: u8,
    /// The highest layer worth sending (from the tile's size); `None` when the tile is not shown.
    pub max_layer: Option<u8>,
    /// What each layer costs in bits per second, lowest first; `None` for a layer that is not
    /// arriving (the publisher's encoder dropped it), which cannot be chosen.
    pub costs: [Option<u64>; MAX_LAYERS],
}

impl<K> Want<K> {
    /// The layers that can be chosen for this want, lowest first, with their costs.
    fn choices(&self) -> impl DoubleEndedIterator<Item = (u8, u64)> + '_ {
        let max = self.max_layer.unwrap_or(0) as usize;
        let lowest = self.costs.iter().position(Option::is_some).unwrap_or(0);
        self.costs
            .iter()
            .enumerate()
            .take(max.max(lowest) + 1)
            .filter(|_| self.max_layer.is_some())
            .filter_map(|(l, c)| Some((l as u8, (*c)?)))
    }
}

/// Percent of its cost the layer a subscriber receives now counts when it is to be kept.
pub const KEEP_PERCENT: u64 = 90;

/// Hysteresis: the layer a subscriber receives now (`current`) costs a tenth less to keep than to
/// take, so that a layer whose measured rate wavers around the budget (keyframes, motion) is not
/// dropped and taken again round after round.
pub fn favour_current(costs: &mut [Option<u64>; MAX_LAYERS], current: Option<u8>) {
    if let Some(cost) = current.and_then(|l| costs.get_mut(l as usize)).and_then(Option::as_mut) {
        *cost = *cost * KEEP_PERCENT / 100;
    }
}

/// On a borrowed budget (a probe's loan, or the kept lowest layer: more than the estimate gives),
/// no want rises more than one layer above what it receives now (`current[i]` for `wants[i]`;
/// `None`: nothing, so at most its lowest layer). A loan pays for one step; a higher layer that
/// happens to measure cheaper than the step's (nominal) price must not be taken on it.
pub fn at_most_one_step_up<K>(wants: &mut [Want<K>], current: &[Option<u8>]) {
    for (want, current) in wants.iter_mut().zip(current) {
        let cap = current.map_or(0, |c| c.saturating_add(1));
        want.max_layer = want.max_layer.map(|m| m.min(cap));
    }
}

/// Priority of a screen share.
pub const SCREEN: u8 = 0;
/// Priority of the dominant speaker's camera.
pub const SPEAKER: u8 = 1;
/// Priority of any other camera.
pub const CAMERA: u8 = 2;

/// The wants' indices, most important first. Stable: equal wants keep the caller's order; bigger
/// tiles go first within a priority.
fn priority_order<K>(wants: &[Want<K>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| (wants[i].priority, std::cmp::Reverse(wants[i].max_layer)));
    order
}

/// What the lowest layer of the most important shown want costs (`None`: no shown want).
pub fn first_lowest<K>(wants: &[Want<K>]) -> Option<u64> {
    let first = priority_order(wants)
        .into_iter()
        .find(|&i| wants[i].max_layer.is_some())?;
    wants[first].choices().next().map(|(_, cost)| cost)
}

/// The layer for each want (`None`: paused), in the order given. `budget` is in bits per second.
/// Returns the budget that would have raised the most important want the budget held back (paused,
/// or below what its tile needs) one step; `None` when the budget held nothing back.
pub fn allocate<K: Copy>(budget: Option<u64>, wants: &[Want<K>], out: &mut Vec<(K, Option<u8>)>) -> Option<u64> {
    out.clear();
    let Some(budget) = budget else {
        out.extend(wants.iter().map(|w| (w.key, w.choices().next_back().map(|c| c.0))));
        return None;
    };
    let mut left = budget;
    let order = priority_order(wants);
    let mut chosen: Vec<Option<(u8, u64)>> = vec![None; wants.len()];
    for &i in &order {
        if let Some((layer, cost)) = wants[i].choices().next()
            && cost <= left
        {
            left -= cost;
            chosen[i] = Some((layer, cost));
        }
    }
    for &i in &order {
        let Some((_, base)) = chosen[i] else { continue };
        if let Some((layer, cost)) = wants[i]
            .choices()
            .rev()
            .find(|&(_, cost)| cost.saturating_sub(base) <= left)
            .filter(|&(_, cost)| cost > base)
        {
            left -= cost - base;
            chosen[i] = Some((layer, cost));
        }
    }
    out.extend(wants.iter().zip(chosen.iter()).map(|(w, c)| (w.key, c.map(|c| c.0))));
    // The first want, in priority order, with a step above what it got: that step's extra cost
    // did not fit in what was left.
    order.iter().find_map(|&i| {
        let (layer, cost) = chosen[i].map_or((None, 0), |(l, c)| (Some(l), c));
        let (_, next) = wants[i].choices().find(|&(l, _)| layer.is_none_or(|got| l > got))?;
        Some(budget + next.saturating_sub(cost).saturating_sub(left))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSTS: [Option<u64>; MAX_LAYERS] = [Some(150_000), Some(500_000), Some(1_500_000)];

    fn want(key: u32, priority: u8, max_layer: Option<u8>) -> Want<u32> {
        Want {
            key,
            priority,
            max_layer,
            costs: COSTS,
        }
    }

    fn run(budget: Option<u64>, wants: &[Want<u32>]) -> Vec<Option<u8>> {
        let mut out = Vec::new();
        let _ = allocate(budget, wants, &mut out);
        assert_eq!(
            out.iter().map(|o| o.0).collect::<Vec<_>>(),
            wants.iter().map(|w| w.key).collect::<Vec<_>>()
        );
        out.into_iter().map(|o| o.1).collect()
    }

    #[test]
    fn without_an_estimate_every_tile_gets_what_it_needs() {
        let wants = [
            want(1, CAMERA, Some(2)),
            want(2, CAMERA, Some(0)),
            want(3, CAMERA, None),
        ];
        assert_eq!(run(None, &wants), vec![Some(2), Some(0), None]);
    }

    #[test]
    fn a_thin_link_gets_the_speaker_sharp_and_the_others_small() {
        let wants = [
            want(1, CAMERA, Some(2)),
            want(2, SPEAKER, Some(2)),
            want(3, CAMERA, Some(2)),
        ];
        // 2 Mbit/s: all three at the lowest (450k), then the speaker to the top (+1.35M), then
        // the first camera as far as what is left allows (200k: not enough for layer 1).
        assert_eq!(run(Some(2_000_000), &wants), vec![Some(0), Some(2), Some(0)]);
        // 1 Mbit/s: the speaker gets layer 1.
        assert_eq!(run(Some(1_000_000), &wants), vec![Some(0), Some(1), Some(0)]);
        // Plenty: everyone at the top.
        assert_eq!(run(Some(10_000_000), &wants), vec![Some(2), Some(2), Some(2)]);
    }

    #[test]
    fn the_budget_that_raises_the_first_held_back_want_one_step_is_told() {
        let mut out = Vec::new();
        let wants = [want(1, CAMERA, Some(2)), want(2, SPEAKER, Some(2))];
        // 400k: both at the lowest (300k), 100k left; the speaker's next step costs 350k more.
        assert_eq!(allocate(Some(400_000), &wants, &mut out), Some(650_000));
        // 100k: both paused; the speaker's lowest layer needs 150k.
        assert_eq!(allocate(Some(100_000), &wants, &mut out), Some(150_000));
        // Enough for everything a tile needs: nothing held back.
        assert_eq!(allocate(Some(3_000_000), &wants, &mut out), None);
        let small = [want(1, CAMERA, Some(0))];
        assert_eq!(
            allocate(Some(200_000), &small, &mut out),
            None,
            "the tile needs no more"
        );
        assert_eq!(allocate(None, &wants, &mut out), None);
    }

    #[test]
    fn the_current_layer_is_kept_while_its_rate_wavers_a_little() {
        let mut costs = COSTS;
        favour_current(&mut costs, Some(2));
        assert_eq!(costs, [Some(150_000), Some(500_000), Some(1_350_000)]);
        let wants = [Want {
            costs,
            ..want(1, CAMERA, Some(2))
        }];
        // 1.4 Mbit/s keeps the top layer it has (1.5 Mbit/s measured) ...
        assert_eq!(run(Some(1_400_000), &wants), vec![Some(2)]);
        // ... but would not have taken it.
        assert_eq!(run(Some(1_400_000), &[want(1, CAMERA, Some(2))]), vec![Some(1)]);
        let mut none = COSTS;
        favour_current(&mut none, None);
        favour_current(&mut none, Some(7));
        assert_eq!(none, COSTS, "no layer, or one out of range: unchanged");
    }

    #[test]
    fn a_borrowed_budget_raises_a_want_one_step_at_most() {
        // The middle layer is switched off (priced nominally), the top one measures cheap.
        let cheap_top = Want {
            costs: [Some(100_000), Some(500_000), Some(450_000)],
            ..want(1, CAMERA, Some(2))
        };
        assert_eq!(run(Some(500_000), &[cheap_top]), vec![Some(2)], "on its own estimate");
        let mut wants = [cheap_top, want(2, CAMERA, Some(2)), want(3, CAMERA, None)];
        at_most_one_step_up(&mut wants, &[Some(0), None, Some(0)]);
        assert_eq!(
            wants.map(|w| w.max_layer),
            [Some(1), Some(0), None],
            "one step up, the lowest for a paused one, hidden stays hidden"
        );
        assert_eq!(run(Some(500_000), &wants[..1]), vec![Some(1)]);
    }

    #[test]
    fn what_does_not_fit_is_paused_in_priority_order() {
        let wants = [
            want(1, CAMERA, Some(2)),
            want(2, SCREEN, Some(2)),
            want(3, SPEAKER, Some(0)),
        ];
        // 300k: the screen share and the speaker at their lowest, the other camera paused.
        assert_eq!(run(Some(300_000), &wants), vec![None, Some(0), Some(0)]);
        // Under one layer: only the screen share... and not even that below its lowest layer.
        assert_eq!(run(Some(200_000), &wants), vec![None, Some(0), None]);
        assert_eq!(run(Some(100_000), &wants), vec![None, None, None]);
        // The screen share's lowest layer is what keeping the most important video costs.
        assert_eq!(first_lowest(&wants), Some(150_000));
        let camera = Want {
            costs: [Some(120_000), Some(500_000), None],
            ..want(2, CAMERA, Some(1))
        };
        assert_eq!(
            first_lowest(&[want(1, SCREEN, None), camera]),
            Some(120_000),
            "a hidden share is not shown"
        );
        assert_eq!(first_lowest(&[want(1, SCREEN, None)]), None);
    }

    #[test]
    fn small_tiles_are_not_raised_past_their_size_and_hidden_ones_cost_nothing() {
        let wants = [
            want(1, CAMERA, Some(0)),
            want(2, CAMERA, None),
            want(3, CAMERA, Some(1)),
        ];
        assert_eq!(run(Some(10_000_000), &wants), vec![Some(0), None, Some(1)]);
        // A layer beyond the track's own is clamped.
        let plain = Want {
            costs: [Some(700_000), None, None],
            ..want(4, CAMERA, Some(2))
        };
        assert_eq!(run(Some(10_000_000), &[plain]), vec![Some(0)]);
        assert_eq!(run(None, &[plain]), vec![Some(0)]);
        assert_eq!(run(Some(500_000), &[plain]), vec![None]);
    }

    #[test]
    fn layers_that_do_not_arrive_are_never_chosen() {
        // The encoder sends only the two lower layers; a big tile gets the higher of them.
        let two = Want {
            costs: [Some(150_000), Some(500_000), None],
            ..want(1, CAMERA, Some(2))
        };
        assert_eq!(run(None, &[two]), vec![Some(1)]);
        assert_eq!(run(Some(5_000_000), &[two]), vec![Some(1)]);
        // Only the top arrives: even a small tile gets it rather than nothing.
        let top = Want {
            costs: [None, None, Some(900_000)],
            ..want(2, CAMERA, Some(0))
        };
        assert_eq!(run(None, &[top]), vec![Some(2)]);
        assert_eq!(run(Some(1_000_000), &[top]), vec![Some(2)]);
    }
}
