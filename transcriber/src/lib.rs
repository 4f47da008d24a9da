//! samtal-transcriber: from each speaker's Opus packets to recognised text, and the worker that does it in meetings.
//!
//! Pipeline per speaker: [`audio::SpeakerDecoder`] (Opus 48 kHz → 16 kHz mono f32, loss concealment)
//! → [`vad::Segmenter`] (streaming Silero VAD, utterances cut at pauses / max length)
//! → [`pool::RecognitionPool`] (bounded worker threads running a [`recognize::Recognizer`], whisper.cpp in
//! production) → segments with text, timing, language and confidence.
//!
//! The meeting side is [`worker`]: it registers with a Samtal server as a transcription worker, joins each
//! room it is given as a hidden participant, runs the pipeline per speaker and sends `segment`s back. It
//! keeps Whisper off the async runtime by going through the pool.

pub mod audio;
pub mod error;
pub mod fixtures;
pub mod pool;
pub mod recognize;
pub mod vad;
pub mod worker;

pub use error::{Error, Result};
