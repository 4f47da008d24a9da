//! Speech recognition: the [`Recognizer`] trait, its whisper.cpp implementation ([`WhisperRecognizer`]) and a
//! test double ([`ScriptedRecognizer`]).
//!
//! A recognizer turns one utterance (16 kHz mono f32) into text segments. It is synchronous and slow (seconds
//! on CPU): call it only from the worker pool (`crate::pool`), never on an async task.

mod scripted;
mod whisper;

use std::sync::Once;
use std::time::Duration;

pub use scripted::ScriptedRecognizer;
pub use whisper::{WhisperConfig, WhisperModel, WhisperRecognizer};

use crate::error::Result;

/// Which language to transcribe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Language {
    /// Let Whisper detect it (multilingual models only; English-only models always give "en").
    #[default]
    Auto,
    /// An ISO 639-1 code Whisper knows: "sv", "en", "de"…
    Code(String),
}

/// Per-call recognition options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    pub language: Language,
    /// Text that conditions the decoder: names, jargon, the previous sentence.
    pub initial_prompt: Option<String>,
}

/// One piece of recognised text.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    /// Relative to the start of the audio passed to `transcribe`.
    pub start: Duration,
    pub end: Duration,
    /// Language Whisper used ("sv", "en"…), if known.
    pub language: Option<String>,
    /// Mean probability of the segment's text tokens, 0..=1.
    pub confidence: f32,
}

/// Turns 16 kHz mono audio into text segments.
pub trait Recognizer: Send {
    /// Transcribes `pcm`. Silence or a model without weights give `Ok` with no segments.
    fn transcribe(&mut self, pcm: &[f32], opts: &Options) -> Result<Vec<Segment>>;
}

/// Routes whisper.cpp's and ggml's log lines into `tracing` (target `whisper_rs::…`) instead of stderr.
pub(crate) fn install_whisper_log_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}
