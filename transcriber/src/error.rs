//! The one error type of samtal-transcriber.
//!
//! Messages say what failed and with which file or setting; this module must never hide the underlying
//! samtal-models error (model problems are reported with the file and the fault).

use std::path::PathBuf;

/// Everything that can fail in decoding, segmentation, recognition and the worker pool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file failed samtal-models' checks (missing, truncated, test-only, checksum…).
    #[error("model check failed: {0}")]
    Model(#[from] samtal_models::Error),

    /// The file is a valid model, but of the wrong kind for this use (a VAD file given as Whisper model…).
    #[error("{path}: {detail}")]
    WrongModelKind { path: PathBuf, detail: String },

    /// whisper.cpp refused to load a file that passed verification, or could not make a decoding state.
    #[error("whisper.cpp could not {action} for {path}: {detail}")]
    WhisperInit {
        path: PathBuf,
        action: &'static str,
        detail: String,
    },

    /// Inference failed.
    #[error("whisper inference failed: {0}")]
    Inference(String),

    /// Silero VAD failed on some samples.
    #[error("voice activity detection failed: {0}")]
    Vad(String),

    /// The Opus decoder could not be created (decoding errors of single packets are concealed, not returned).
    #[error("opus decoder: {0}")]
    Opus(String),

    /// An audio file could not be read or encoded (fixtures).
    #[error("audio: {0}")]
    Audio(String),

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The recognition pool is shut down or its workers are gone.
    #[error("recognition pool is closed")]
    PoolClosed,

    /// A scripted test recognizer ran out of replies.
    #[error("ScriptedRecognizer has no scripted reply left (call {call})")]
    ScriptExhausted { call: usize },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
