//! The room's dominant speaker, decided by the server from the RFC 6464 audio levels publishers put
//! on their audio packets, so that every participant highlights the same person and the media plane
//! can follow the speakers (last-N).
//!
//! Each participant's loudness is averaged over short intervals and smoothed. The floor changes hands
//! only when someone else has been clearly louder than the current speaker for several intervals in
//! a row: a cough, a "mm" or a door slam does not move it, and silence keeps the last speaker (as in
//! Jitsi and LiveKit, the highlight stays on whoever spoke last).

use std::time::{Duration, Instant};

/// Length of one averaging interval.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// Levels at or below this many dB under full scale (RFC 6464 -dBov, 127 = silence) count as quiet.
const QUIET_DBOV: u8 = 60;

/// Weight of the newest interval in the smoothed score (the rest is the previous score).
const SMOOTHING: f32 = 0.4;

/// Least smoothed score (dB above the quiet threshold) that can take the floor.
const MIN_SCORE: f32 = 8.0;

/// A challenger must be this many times louder than the current speaker...
const SWITCH_RATIO: f32 = 1.5;

/// ...for this many intervals in a row (here 0.6 s) before the floor changes hands.
const SWITCH_INTERVALS: u32 = 3;

#[derive(Debug)]
struct Speaker<K> {
    key: K,
    /// Sum of (quiet threshold - level) over this interval's packets.
    loudness: u32,
    packets: u32,
    score: f32,
}

/// Dominant-speaker decisions for one room. `K` names a participant.
#[derive(Debug)]
pub struct SpeakerDetector<K> {
    speakers: Vec<Speaker<K>>,
    dominant: Option<K>,
    /// Everyone who held the floor, the most recent first (what last-N follows).
    recent: Vec<K>,
    /// Who is louder than the dominant speaker, and for how many intervals in a row.
    challenger: Option<(K, u32)>,
    next_interval: Option<Instant>,
}

impl<K> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self {
            speakers: Vec::new(),
            dominant: None,
            recent: Vec::new(),
            challenger: None,
            next_interval: None,
        }
    }
}

impl<K: Copy + PartialEq> SpeakerDetector<K> {
    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<K> {
        self.dominant
    }

    /// Who held the floor, the most recent first; someone who left is not in it.
    pub fn recent(&self) -> &[K] {
        &self.recent
    }

    /// One audio packet of `key` with RFC 6464 level `dbov` (0 loudest, 127 silence).
    pub fn level(&mut self, key: K, dbov: u8, now: Instant) {
        let loudness = u32::from(QUIET_DBOV.saturating_sub(dbov));
        match self.speakers.iter_mut().find(|s| s.key == key) {
            Some(s) => {
                s.loudness = s.loudness.saturating_add(loudness);
                s.packets = s.packets.saturating_add(1);
            }
            None => self.speakers.push(Speaker {
                key,
                loudness,
                packets: 1,
                score: 0.0,
            }),
        }
        self.next_interval.get_or_insert(now + INTERVAL);
    }

    /// `key` left the room (or stopped publishing audio). The floor is free if it was theirs; nobody
    /// is announced until someone speaks.
    pub fn remove(&mut self, key: K) {
        self.speakers.retain(|s| s.key != key);
        self.recent.retain(|&k| k != key);
        if self.dominant == Some(key) {
            self.dominant = None;
        }
        if self.challenger.is_some_and(|(c, _)| c == key) {
            self.challenger = None;
        }
    }

    /// When [`poll`](Self::poll) has work to do, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.next_interval
    }

    /// Closes the intervals that ended by `now`; returns the new dominant speaker when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<K> {
        let before = self.dominant;
        while let Some(at) = self.next_interval.filter(|&at| at <= now) {
            self.close_interval();
            // An idle room (nobody sending audio, every score faded) stops ticking until audio comes.
            let idle = self.speakers.iter().all(|s| s.score < 0.01);
            self.next_interval = (!idle).then_some(at + INTERVAL);
            if now.saturating_duration_since(at) > 10 * INTERVAL {
                // Woken late (a stalled loop): skip to now rather than replaying intervals without audio.
                self.next_interval = self.next_interval.map(|_| now + INTERVAL);
            }
        }
        (self.dominant != before).then_some(self.dominant).flatten()
    }

    fn take_floor(&mut self, key: K) {
        self.dominant = Some(key);
        self.challenger = None;
        self.recent.retain(|&k| k != key);
        self.recent.insert(0, key);
    }

    fn close_interval(&mut self) {
        for s in &mut self.speakers {
            let mean = if s.packets == 0 {
                0.0
            } else {
                s.loudness as f32 / s.packets as f32
            };
            s.score = s.score * (1.0 - SMOOTHING) + mean * SMOOTHING;
            s.loudness = 0;
            s.packets = 0;
        }
        let Some(best) = self
            .speakers
            .iter()
            .filter(|s| s.score >= MIN_SCORE)
            .max_by(|a, b| a.score.total_cmp(&b.score))
        else {
            self.challenger = None;
            return;
        };
        let current = self.dominant.and_then(|d| self.speakers.iter().find(|s| s.key == d));
        let Some(current) = current else {
            let key = best.key;
            self.take_floor(key);
            return;
        };
        if best.key == current.key || best.score < current.score * SWITCH_RATIO {
            self.challenger = None;
            return;
        }
        let intervals = match self.challenger {
            Some((c, n)) if c == best.key => n + 1,
            _ => 1,
        };
        if intervals >= SWITCH_INTERVALS {
            let key = best.key;
            self.take_floor(key);
        } else {
            self.challenger = Some((best.key, intervals));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `ms` of 20 ms packets: each `(key, level)` sends one packet per 20 ms. Returns every
    /// change announced on the way, with its time since `start`.
    fn speak(
        d: &mut SpeakerDetector<u8>,
        start: Instant,
        from_ms: u64,
        ms: u64,
        voices: &[(u8, u8)],
    ) -> Vec<(u64, u8)> {
        let mut changes = Vec::new();
        for t in (from_ms..from_ms + ms).step_by(20) {
            let now = start + Duration::from_millis(t);
            for &(key, level) in voices {
                d.level(key, level, now);
            }
            if let Some(k) = d.poll(now) {
                changes.push((t, k));
            }
        }
        changes
    }

    #[test]
    fn the_one_who_speaks_takes_the_floor_and_silence_does_not() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        let changes = speak(&mut d, start, 0, 2000, &[(1, 127), (2, 30), (3, 127)]);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].1, 2);
        assert!(changes[0].0 <= 600, "took the floor within 0.6 s: {changes:?}");
        assert_eq!(d.dominant(), Some(2));
    }

    #[test]
    fn background_noise_alone_never_takes_the_floor() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        // 65 dB below full scale: a quiet room, below the threshold.
        assert!(speak(&mut d, start, 0, 3000, &[(1, 65), (2, 127)]).is_empty());
        assert_eq!(d.dominant(), None);
    }

    #[test]
    fn a_short_interjection_does_not_move_the_floor() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        speak(&mut d, start, 0, 2000, &[(1, 30), (2, 127)]);
        assert_eq!(d.dominant(), Some(1));
        // 2 coughs loudly for 0.3 s while 1 keeps talking.
        assert!(speak(&mut d, start, 2000, 300, &[(1, 30), (2, 5)]).is_empty());
        assert!(speak(&mut d, start, 2300, 2000, &[(1, 30), (2, 127)]).is_empty());
        assert_eq!(d.dominant(), Some(1));
    }

    #[test]
    fn the_floor_follows_when_another_speaks_and_the_first_stops() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        speak(&mut d, start, 0, 2000, &[(1, 30), (2, 127)]);
        let changes = speak(&mut d, start, 2000, 3000, &[(1, 127), (2, 30)]);
        assert_eq!(changes.iter().map(|c| c.1).collect::<Vec<_>>(), vec![2], "{changes:?}");
        let after = changes[0].0 - 2000;
        assert!(
            (2 * INTERVAL.as_millis() as u64..=1500).contains(&after),
            "switched {after} ms after the change: not on the first interval, not late"
        );
    }

    #[test]
    fn silence_keeps_the_last_speaker_and_a_louder_talker_wins_over_a_quiet_one() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        speak(&mut d, start, 0, 2000, &[(1, 40)]);
        assert!(speak(&mut d, start, 2000, 3000, &[(1, 127), (2, 127)]).is_empty());
        assert_eq!(d.dominant(), Some(1), "silence keeps the floor where it was");
        // Both talk; 2 is much louder and keeps being so.
        let changes = speak(&mut d, start, 5000, 3000, &[(1, 50), (2, 20)]);
        assert_eq!(changes.iter().map(|c| c.1).collect::<Vec<_>>(), vec![2]);
        assert_eq!(d.recent(), &[2, 1], "most recent speaker first");
        d.remove(2);
        assert_eq!(d.recent(), &[1]);
    }

    #[test]
    fn a_speaker_who_leaves_frees_the_floor_and_an_idle_room_stops_ticking() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        speak(&mut d, start, 0, 1000, &[(1, 30)]);
        d.remove(1);
        assert_eq!(d.dominant(), None);
        // Nothing more arrives: the deadline goes away once the scores fade.
        let mut now = start + Duration::from_millis(1000);
        for _ in 0..100 {
            now += INTERVAL;
            d.poll(now);
        }
        assert_eq!(d.deadline(), None);
        // The next one to speak takes the (free) floor.
        let changes = speak(&mut d, start, 30_000, 1000, &[(3, 30)]);
        assert_eq!(changes.iter().map(|c| c.1).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn a_late_wakeup_does_not_replay_missed_intervals() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        speak(&mut d, start, 0, 1000, &[(1, 30)]);
        let late = start + Duration::from_secs(60);
        d.poll(late);
        assert!(d.deadline().is_none_or(|at| at > late && at <= late + INTERVAL));
    }
}
