//! Voice activity detection: where each speaker's utterances start and end.
//!
//! * [`SpeechDetector`]: scores audio, one speech probability per window (Silero: 512 samples = 32 ms).
//! * [`SileroVad`]: the detector backed by whisper.cpp's built-in Silero VAD (whisper-rs `WhisperVadContext`).
//! * [`Segmenter`]: the streaming per-speaker utterance cutter built on any detector.
//!
//! Nothing here transcribes or decodes Opus.

mod segmenter;
mod silero;

pub use segmenter::{CutReason, Segmenter, SegmenterConfig, Utterance};
pub use silero::{SileroConfig, SileroVad};

use crate::error::Result;

/// Scores audio for speech. Each call starts from a fresh model state, so one detector can serve many
/// speakers and a caller can re-score overlapping audio (sliding windows).
pub trait SpeechDetector: Send {
    /// Samples per scored window (512 for Silero at 16 kHz).
    fn window_samples(&self) -> usize;

    /// One probability in 0..=1 per `window_samples()` of `samples` (a last partial window is zero-padded).
    fn detect(&mut self, samples: &[f32]) -> Result<Vec<f32>>;
}
