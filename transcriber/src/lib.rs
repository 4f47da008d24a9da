//! samtal-transcriber: from each speaker's Opus packets to recognised text, offline (no network code here).
//!
//! Pipeline per speaker: [`audio::SpeakerDecoder`] (Opus 48 kHz → 16 kHz mono f32, loss concealment)
//! → [`vad::Segmenter`] (streaming Silero VAD, utterances cut at pauses / max length)
//! → [`pool::RecognitionPool`] (bounded worker threads running a [`recognize::Recognizer`], whisper.cpp in
//! production) → segments with text, timing, language and confidence.
//!
//! The network side (joining meetings through signaling/SFU, sending captions) lives elsewhere and uses this
//! crate's API; it must keep Whisper off the async runtime by going through the pool.

pub mod audio;
pub mod error;
pub mod pool;
pub mod recognize;
pub mod vad;

pub use error::{Error, Result};
