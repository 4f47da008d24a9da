//! Streaming utterance segmentation for one speaker: fed 16 kHz samples in any chunk size (20 ms from the
//! decoder), it emits utterances cut at pauses, at a maximum length, or at the end of the stream.
//!
//! Efficiency: VAD runs every `hop` of new audio on a sliding window made of `warmup` already-scored audio
//! (to bring Silero's LSTM state up to speed) plus the new hop only; past audio is never re-scored beyond
//! that, and audio no utterance can still need is dropped. Cost: (hop + warmup) / hop times real-time VAD.
//!
//! Cutting rules (the same ideas as Silero's and whisper.cpp's `get_speech_timestamps`): speech starts at a
//! window with p ≥ threshold and ends where p first fell below threshold − 0.15 once that silence has lasted
//! `min_silence`; utterances shorter than `min_speech` are dropped, and so is a trailing burst shorter than
//! `min_speech` after a pause of ≥ 98 ms (a breath after the last word); at `max_utterance` it cuts at the last
//! pause of ≥ 98 ms inside the utterance, or hard at that point if there was none. Utterances get `padding`
//! on both sides (never overlapping the previous one, none at hard cuts).
//!
//! This module must never decode, transcribe, or block on anything but the detector call.

use std::collections::VecDeque;
use std::time::Duration;

use super::SpeechDetector;
use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};

/// A pause this long inside an utterance is a place to cut when the utterance grows too long (Silero's 98 ms).
const CUT_PAUSE: Duration = Duration::from_millis(98);

/// Segmentation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// Speech probability that starts speech (0..1).
    pub threshold: f32,
    /// Silence that ends an utterance.
    pub min_silence: Duration,
    /// Shorter utterances are dropped (coughs, clicks).
    pub min_speech: Duration,
    /// Longest utterance; cut there even without a pause.
    pub max_utterance: Duration,
    /// Audio kept before and after the detected speech.
    pub padding: Duration,
    /// How much new audio triggers a VAD run (rounded down to whole VAD windows, at least one).
    pub hop: Duration,
    /// Already-scored audio re-run before each hop to warm up the model state (rounded to whole windows).
    pub warmup: Duration,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_silence: Duration::from_millis(500),
            min_speech: Duration::from_millis(250),
            max_utterance: Duration::from_secs(15),
            padding: Duration::from_millis(100),
            // Measured on jfk.wav (clean, Opus, Opus with 4 % loss): 512 ms of warm-up let Silero's LSTM
            // misjudge a breath after speech; 1024 ms matched whole-file scoring within 0.11 s everywhere.
            hop: Duration::from_millis(512),
            warmup: Duration::from_millis(1024),
        }
    }
}

impl SegmenterConfig {
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::Config(m.to_owned()));
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return fail("VAD threshold must lie strictly between 0 and 1");
        }
        if self.max_utterance < Duration::from_secs(1) {
            return fail("max_utterance must be at least 1 s");
        }
        if self.min_speech + 2 * self.padding >= self.max_utterance {
            return fail("min_speech plus padding on both sides must be shorter than max_utterance");
        }
        if self.hop.is_zero() || self.hop > Duration::from_secs(5) {
            return fail("VAD hop must be between one window and 5 s");
        }
        Ok(())
    }
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// The speaker paused for `min_silence`.
    Pause,
    /// The utterance reached `max_utterance`.
    MaxLength,
    /// The stream ended (or a long gap) while speech was going on.
    EndOfStream,
}

/// One stretch of speech. Offsets count samples of this speaker's stream since its start (16 kHz).
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// 0, 1, 2… per segmenter.
    pub index: u64,
    /// First sample, padding included.
    pub start_sample: u64,
    /// One past the last sample, padding included.
    pub end_sample: u64,
    pub samples: Vec<f32>,
    pub cut: CutReason,
}

impl Utterance {
    pub fn start_secs(&self) -> f64 {
        self.start_sample as f64 / SAMPLE_RATE as f64
    }
    pub fn end_secs(&self) -> f64 {
        self.end_sample as f64 / SAMPLE_RATE as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    Speech {
        start: u64,
        /// Where the current run of low probabilities began.
        silence_since: Option<u64>,
        /// The last pause of ≥ 98 ms inside this utterance: (speech end, speech resumes).
        pause_cut: Option<(u64, u64)>,
        /// Started by a hard cut: no padding before it.
        continued: bool,
    },
}

/// The streaming segmenter of one speaker.
pub struct Segmenter<D: SpeechDetector> {
    detector: D,
    window: u64,
    threshold: f32,
    neg_threshold: f32,
    min_silence: u64,
    min_speech: u64,
    max_utterance: u64,
    padding: u64,
    cut_pause: u64,
    hop: u64,
    warmup: u64,
    /// Buffered audio; `audio[0]` is sample `audio_start` of the stream.
    audio: Vec<f32>,
    audio_start: u64,
    /// Samples received.
    total: u64,
    /// Samples scored by the VAD.
    scored: u64,
    state: State,
    /// End (padding included) of the last emitted utterance.
    last_end: u64,
    next_index: u64,
    ready: VecDeque<Utterance>,
    /// Samples passed to the detector, warm-up included (efficiency metric).
    detector_samples: u64,
}

impl<D: SpeechDetector> Segmenter<D> {
    pub fn new(detector: D, config: SegmenterConfig) -> Result<Self> {
        config.validate()?;
        let window = detector.window_samples() as u64;
        if window == 0 {
            return Err(Error::Config("VAD window of 0 samples".into()));
        }
        let samples = |d: Duration| (d.as_secs_f64() * SAMPLE_RATE as f64).round() as u64;
        let hop = (samples(config.hop) / window).max(1) * window;
        Ok(Self {
            detector,
            window,
            threshold: config.threshold,
            neg_threshold: (config.threshold - 0.15).max(0.01),
            min_silence: samples(config.min_silence),
            min_speech: samples(config.min_speech),
            // Room for the padding on both sides.
            max_utterance: samples(config.max_utterance).saturating_sub(2 * samples(config.padding)),
            padding: samples(config.padding),
            cut_pause: samples(CUT_PAUSE),
            hop,
            warmup: samples(config.warmup) / window * window,
            audio: Vec::new(),
            audio_start: 0,
            total: 0,
            scored: 0,
            state: State::Silence,
            last_end: 0,
            next_index: 0,
            ready: VecDeque::new(),
            detector_samples: 0,
        })
    }

    /// Adds samples; returns the utterances that ended.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Utterance>> {
        self.audio.extend_from_slice(samples);
        self.total += samples.len() as u64;
        while self.total - self.scored >= self.hop {
            self.score(self.hop)?;
        }
        self.trim();
        Ok(self.ready.drain(..).collect())
    }

    /// Adds `n` samples of silence. Long gaps (muted, DTX after a loss) end any utterance and move the clock
    /// without storing or scoring the silence.
    pub fn push_silence(&mut self, n: u64) -> Result<Vec<Utterance>> {
        if n <= 2 * (self.min_silence + self.hop) {
            return self.push(&vec![0.0; n as usize]);
        }
        let out = self.finish()?;
        self.total += n;
        self.scored = self.total;
        self.audio_start = self.total;
        self.last_end = self.total;
        Ok(out)
    }

    /// Scores what is left and closes an utterance in progress. The segmenter stays usable afterwards.
    pub fn finish(&mut self) -> Result<Vec<Utterance>> {
        let rest = self.total - self.scored;
        if rest > 0 {
            self.score(rest)?;
        }
        if let State::Speech {
            start,
            silence_since,
            pause_cut,
            continued,
        } = self.state
        {
            let end = self.trim_trailing_blip(silence_since.unwrap_or(self.total), pause_cut);
            if end - start >= self.min_speech {
                self.emit(start, end, CutReason::EndOfStream, !continued, true);
            }
            self.state = State::Silence;
        }
        self.audio.clear();
        self.audio_start = self.total;
        Ok(self.ready.drain(..).collect())
    }

    /// The utterance in progress, if any: its start offset and the samples so far (for interim decoding).
    pub fn in_progress(&self) -> Option<(u64, &[f32])> {
        match self.state {
            State::Speech { start, .. } => {
                let from = start
                    .saturating_sub(self.padding)
                    .max(self.last_end)
                    .min(start)
                    .max(self.audio_start);
                Some((from, &self.audio[(from - self.audio_start) as usize..]))
            }
            State::Silence => None,
        }
    }

    /// Samples received so far.
    pub fn samples_received(&self) -> u64 {
        self.total
    }

    /// Samples handed to the detector so far, warm-up included: `samples_received × (hop + warmup) / hop` at most.
    pub fn detector_samples(&self) -> u64 {
        self.detector_samples
    }

    /// Samples currently buffered.
    pub fn buffered_samples(&self) -> usize {
        self.audio.len()
    }

    /// Scores the next `n` unscored samples with up to `warmup` already-scored samples in front.
    fn score(&mut self, n: u64) -> Result<()> {
        let context = (self.scored - self.audio_start).min(self.warmup) / self.window * self.window;
        let from = (self.scored - context - self.audio_start) as usize;
        let to = (self.scored + n - self.audio_start) as usize;
        let probs = self.detector.detect(&self.audio[from..to])?;
        self.detector_samples += (to - from) as u64;
        let skip = (context / self.window) as usize;
        let fresh = n.div_ceil(self.window) as usize;
        if probs.len() < skip + fresh {
            return Err(Error::Vad(format!(
                "detector returned {} probabilities for {} windows",
                probs.len(),
                skip + fresh
            )));
        }
        for (k, &p) in probs[skip..skip + fresh].iter().enumerate() {
            self.step(self.scored + k as u64 * self.window, p);
        }
        self.scored += n;
        Ok(())
    }

    /// Advances the state machine by one window starting at sample `s` with speech probability `p`.
    fn step(&mut self, s: u64, p: f32) {
        let State::Speech {
            mut start,
            mut silence_since,
            mut pause_cut,
            mut continued,
        } = self.state
        else {
            if p >= self.threshold {
                self.state = State::Speech {
                    start: s,
                    silence_since: None,
                    pause_cut: None,
                    continued: false,
                };
            }
            return;
        };
        if p >= self.threshold {
            if let Some(q) = silence_since.take()
                && s - q >= self.cut_pause
            {
                pause_cut = Some((q, s));
            }
        } else if p < self.neg_threshold {
            let q = *silence_since.get_or_insert(s);
            if s - q >= self.min_silence {
                let end = self.trim_trailing_blip(q, pause_cut);
                if end - start >= self.min_speech {
                    self.emit(start, end, CutReason::Pause, !continued, true);
                }
                self.state = State::Silence;
                return;
            }
        }
        // Cut before this window if it would make the utterance longer than allowed.
        if s + self.window - start > self.max_utterance {
            if let Some((end, resume)) = pause_cut.take() {
                self.emit(start, end, CutReason::MaxLength, !continued, true);
                start = resume;
                continued = false;
            } else if let Some(q) = silence_since {
                self.emit(start, q, CutReason::MaxLength, !continued, true);
                self.state = State::Silence;
                return;
            } else {
                self.emit(start, s, CutReason::MaxLength, !continued, false);
                start = s;
                continued = true;
            }
        }
        self.state = State::Speech {
            start,
            silence_since,
            pause_cut,
            continued,
        };
    }

    /// An utterance ending in a burst shorter than `min_speech` after a pause of ≥ 98 ms (a breath, a click)
    /// ends at that pause instead: the burst alone would have been dropped as too short.
    fn trim_trailing_blip(&self, end: u64, pause_cut: Option<(u64, u64)>) -> u64 {
        match pause_cut {
            Some((pause_start, resume)) if end.saturating_sub(resume) < self.min_speech => pause_start,
            _ => end,
        }
    }

    fn emit(&mut self, start: u64, end: u64, cut: CutReason, pad_start: bool, pad_end: bool) {
        let from = if pad_start {
            start.saturating_sub(self.padding).max(self.last_end).min(start)
        } else {
            start
        };
        let from = from.max(self.audio_start);
        let to = if pad_end {
            (end + self.padding).min(self.total)
        } else {
            end.min(self.total)
        };
        let samples = self.audio[(from - self.audio_start) as usize..(to - self.audio_start) as usize].to_vec();
        self.last_end = to;
        self.ready.push_back(Utterance {
            index: self.next_index,
            start_sample: from,
            end_sample: to,
            samples,
            cut,
        });
        self.next_index += 1;
    }

    /// Drops audio that neither the warm-up nor a (future) utterance with its padding can need.
    fn trim(&mut self) {
        let needed_by_speech = match self.state {
            State::Speech { start, .. } => start.saturating_sub(self.padding),
            State::Silence => self.scored.saturating_sub(self.padding),
        };
        let keep_from = needed_by_speech
            .min(self.scored.saturating_sub(self.warmup))
            .max(self.audio_start);
        let drop = (keep_from - self.audio_start) as usize;
        if drop >= SAMPLE_RATE as usize {
            self.audio.drain(..drop);
            self.audio_start = keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detector that calls a 512-sample window speech when its mean absolute amplitude exceeds 0.1.
    struct Loudness;
    impl SpeechDetector for Loudness {
        fn window_samples(&self) -> usize {
            512
        }
        fn detect(&mut self, samples: &[f32]) -> Result<Vec<f32>> {
            Ok(samples
                .chunks(512)
                .map(|w| {
                    if w.iter().map(|s| s.abs()).sum::<f32>() / 512.0 > 0.1 {
                        0.9
                    } else {
                        0.0
                    }
                })
                .collect())
        }
    }

    /// Speech (amplitude 0.5) and silence runs, in seconds.
    fn signal(runs: &[(bool, f64)]) -> Vec<f32> {
        runs.iter()
            .flat_map(|&(loud, secs)| std::iter::repeat_n(if loud { 0.5 } else { 0.0 }, (secs * 16_000.0) as usize))
            .collect()
    }

    fn run(cfg: SegmenterConfig, audio: &[f32]) -> Vec<Utterance> {
        let mut seg = Segmenter::new(Loudness, cfg).unwrap();
        let mut out = Vec::new();
        for chunk in audio.chunks(320) {
            out.extend(seg.push(chunk).unwrap());
        }
        out.extend(seg.finish().unwrap());
        out
    }

    fn cfg() -> SegmenterConfig {
        SegmenterConfig {
            padding: Duration::ZERO,
            ..SegmenterConfig::default()
        }
    }

    #[test]
    fn cuts_at_pauses_longer_than_min_silence_only() {
        let audio = signal(&[
            (false, 1.0),
            (true, 2.0),
            (false, 0.3),
            (true, 1.0),
            (false, 1.0),
            (true, 1.0),
            (false, 1.0),
        ]);
        let u = run(cfg(), &audio);
        let spans: Vec<(f64, f64)> = u.iter().map(|u| (u.start_secs(), u.end_secs())).collect();
        assert_eq!(u.len(), 2, "{spans:?}");
        // Window resolution is 32 ms.
        assert!(
            (spans[0].0 - 1.0).abs() < 0.033 && (spans[0].1 - 4.3).abs() < 0.033,
            "{spans:?}"
        );
        assert!(
            (spans[1].0 - 5.3).abs() < 0.033 && (spans[1].1 - 6.3).abs() < 0.033,
            "{spans:?}"
        );
        assert_eq!(u[0].cut, CutReason::Pause);
        assert_eq!(u[0].samples.len() as u64, u[0].end_sample - u[0].start_sample);
        assert_eq!((u[0].index, u[1].index), (0, 1));
    }

    #[test]
    fn long_speech_is_cut_at_an_inner_pause_or_hard_at_max_length() {
        let max = SegmenterConfig {
            max_utterance: Duration::from_secs(5),
            ..cfg()
        };
        // 4 s, 0.2 s pause (shorter than min_silence), 4 s: cut at the pause.
        let u = run(max, &signal(&[(true, 4.0), (false, 0.2), (true, 4.0), (false, 1.0)]));
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].cut, CutReason::MaxLength);
        assert!((u[0].end_secs() - 4.0).abs() < 0.033 && (u[1].start_secs() - 4.2).abs() < 0.033);
        // 12 s without a pause: hard cuts every 5 s, nothing lost, nothing duplicated.
        let u = run(max, &signal(&[(true, 12.0), (false, 1.0)]));
        assert_eq!(
            u.iter().map(|u| u.cut).collect::<Vec<_>>(),
            [CutReason::MaxLength, CutReason::MaxLength, CutReason::Pause]
        );
        assert!(u.iter().all(|u| u.end_secs() - u.start_secs() <= 5.0 + 1e-9));
        assert_eq!(u[0].end_sample, u[1].start_sample);
        assert_eq!(u[1].end_sample, u[2].start_sample);
        assert!((u[2].end_secs() - 12.0).abs() < 0.033);
    }

    #[test]
    fn short_blips_are_dropped_and_padding_never_overlaps() {
        let padded = SegmenterConfig {
            padding: Duration::from_millis(200),
            ..cfg()
        };
        let u = run(
            padded,
            &signal(&[
                (false, 1.0),
                (true, 0.1),
                (false, 1.0),
                (true, 1.0),
                (false, 0.6),
                (true, 1.0),
            ]),
        );
        assert_eq!(u.len(), 2, "the 0.1 s blip is not speech");
        assert!((u[0].start_secs() - 1.9).abs() < 0.04, "{}", u[0].start_secs());
        assert!(u[1].start_sample >= u[0].end_sample);
        assert_eq!(u[1].cut, CutReason::EndOfStream);
        assert!(
            (u[1].end_secs() - 4.7).abs() < 0.001,
            "end padding is clipped to the audio"
        );
    }

    #[test]
    fn sliding_window_scores_each_sample_a_bounded_number_of_times_and_memory_stays_small() {
        let c = cfg();
        let mut seg = Segmenter::new(Loudness, c).unwrap();
        let audio = signal(&[(false, 30.0), (true, 2.0), (false, 30.0)]);
        let mut max_buffer = 0;
        for chunk in audio.chunks(320) {
            seg.push(chunk).unwrap();
            max_buffer = max_buffer.max(seg.buffered_samples());
        }
        // After 30 s of silence only warm-up, padding, one hop and the trim hysteresis remain.
        assert!(
            seg.buffered_samples() < 3 * 16_000,
            "{} samples kept in silence",
            seg.buffered_samples()
        );
        let ratio = seg.detector_samples() as f64 / seg.samples_received() as f64;
        // hop 512 ms + warm-up 1024 ms: each sample is scored at most 3 times.
        assert!(ratio <= 3.0 && ratio > 2.5, "ratio {ratio}");
        // While speaking it holds the utterance (2 s) plus the same margins.
        assert!(max_buffer < 5 * 16_000, "buffer grew to {max_buffer}");
    }

    #[test]
    fn long_silence_gap_closes_the_utterance_and_moves_the_clock() {
        let mut seg = Segmenter::new(Loudness, cfg()).unwrap();
        assert!(seg.push(&signal(&[(true, 1.0)])).unwrap().is_empty());
        let out = seg.push_silence(16_000 * 600).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].cut, CutReason::EndOfStream);
        let out = seg.push(&signal(&[(true, 1.0), (false, 1.5)])).unwrap();
        assert_eq!(out.len(), 1);
        assert!((out[0].start_secs() - 601.0).abs() < 0.033, "{}", out[0].start_secs());
        assert_eq!(seg.samples_received(), 16_000 * 6035 / 10);
        assert!(seg.buffered_samples() < 4 * 16_000);
    }

    #[test]
    fn a_short_burst_after_the_last_pause_does_not_extend_the_utterance() {
        // 2 s speech, 0.2 s pause, 0.1 s breath, then silence (or the end of the stream).
        let audio = signal(&[(true, 2.0), (false, 0.2), (true, 0.1), (false, 1.0)]);
        let u = run(cfg(), &audio);
        assert_eq!(u.len(), 1);
        assert!((u[0].end_secs() - 2.0).abs() < 0.033, "{}", u[0].end_secs());
        let u = run(cfg(), &audio[..(2.3 * 16_000.0) as usize]);
        assert!((u[0].end_secs() - 2.0).abs() < 0.033, "{}", u[0].end_secs());
        // A real phrase after the pause is kept.
        let u = run(cfg(), &signal(&[(true, 2.0), (false, 0.2), (true, 0.5), (false, 1.0)]));
        assert!((u[0].end_secs() - 2.7).abs() < 0.033, "{}", u[0].end_secs());
    }

    #[test]
    fn in_progress_exposes_the_running_utterance() {
        let mut seg = Segmenter::new(Loudness, cfg()).unwrap();
        seg.push(&signal(&[(false, 1.0), (true, 1.0)])).unwrap();
        let (start, samples) = seg.in_progress().expect("speech is going on");
        assert!((start as f64 / 16_000.0 - 1.0).abs() < 0.033);
        assert!(samples.len() > 12_000);
    }

    #[test]
    fn invalid_config_is_refused() {
        let bad = SegmenterConfig {
            threshold: 1.5,
            ..SegmenterConfig::default()
        };
        assert!(matches!(Segmenter::new(Loudness, bad), Err(Error::Config(_))));
    }
}
