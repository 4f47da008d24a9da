//! The one error type of samtal-models.
//!
//! Every variant that concerns a file names the file and the fault, so that the message alone tells an operator
//! what to do. This module must never format paths of this machine into messages by itself or swallow io errors.

use std::path::PathBuf;

use crate::ggml::WhisperHparams;

/// Everything that can go wrong while checking or fetching a model file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not exist.
    #[error("{path}: model file is missing")]
    Missing { path: PathBuf },

    /// The path exists but cannot be opened or read (permissions, a directory, an io error).
    #[error("{path}: model file cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not the ggml magic.
    #[error("{path}: not a ggml file (magic found {found}, expected 0x67676d6c \"lmgg\")")]
    NotGgml { path: PathBuf, found: String },

    /// The file ends before the structure it declares: `at` is the file length, `needed` how far it had to go.
    #[error("{path}: truncated at byte {at} while reading {what} (the file would need at least {needed} bytes)")]
    Truncated {
        path: PathBuf,
        at: u64,
        what: String,
        needed: u64,
    },

    /// The file has the ggml magic but its content makes no sense (negative counts, absurd sizes, unknown kind).
    #[error("{path}: malformed ggml file: {detail}")]
    Malformed { path: PathBuf, detail: String },

    /// A valid Whisper header, mel filters and vocabulary but zero tensors: whisper.cpp's dummy files for tests.
    #[error(
        "{path}: test-only model, has no weights (header of a {size} {lang} model, n_vocab {n_vocab}, \
         0 tensors): it cannot transcribe; fetch a real model (see models/README.md)",
        size = hparams.size_class().name(),
        lang = if hparams.is_multilingual() { "multilingual" } else { "English-only" },
        n_vocab = hparams.n_vocab
    )]
    TestOnly { path: PathBuf, hparams: WhisperHparams },

    /// Some tensors are present but not as many as whisper.cpp will ask for: it would refuse to load the file.
    #[error("{path}: incomplete model: {found} tensors, a model with these hparams has {expected}")]
    MissingTensors { path: PathBuf, found: u64, expected: u64 },

    /// The file's digest differs from the pinned one.
    #[error("{path}: checksum mismatch ({algorithm}): expected {expected}, actual {actual}")]
    ChecksumMismatch {
        path: PathBuf,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    /// The file size differs from the pinned one.
    #[error("{path}: size mismatch: expected {expected} bytes, actual {actual}")]
    SizeMismatch { path: PathBuf, expected: u64, actual: u64 },

    /// `fetch` was asked for a name that is not in the catalog.
    #[error("unknown model {name:?}; known models: {known}")]
    UnknownModel { name: String, known: String },

    /// The HTTP download failed (connection, status, body cut short).
    #[error("download of {url} failed: {detail}")]
    Download { url: String, detail: String },

    /// Writing the downloaded file or renaming it into place failed.
    #[error("{path}: {action} failed: {source}")]
    Write {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
