//! The crate's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The summary backend failed (LLM endpoint unreachable, timed out, bad answer).
    #[error("summary: {0}")]
    Summary(String),
    /// The summarizer is configured wrongly (no model, a bad URL).
    #[error("configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;
