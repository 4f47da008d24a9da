//! Samtal's Matrix side: a bot account that posts transcription notices, meeting summaries and
//! transcript files into Matrix rooms (end-to-end encrypted ones included), and the summarizers.
//!
//! - [`bot`]: login (password or access token), a persistent state and crypto store so the bot is
//!   one device across restarts, a sync loop that accepts invitations, idempotent sends;
//! - [`summary`]: the [`summary::Summarizer`] trait with the built-in extractive summarizer and a
//!   client for a self-hosted OpenAI-compatible LLM (llm's HTTP client is matrix-sdk's reqwest);
//! - [`message`]: the notices and the summary as plain text and HTML, in the meeting's language.

pub mod bot;
pub mod error;
pub mod message;
pub mod summary;

pub use bot::{Bot, BotConfig};
pub use error::{Error, Result};
