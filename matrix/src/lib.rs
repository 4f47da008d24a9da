//! Samtal's Matrix side: a bot account that posts transcription notices, meeting summaries (made
//! by samtal-summaries) and transcript files into Matrix rooms (end-to-end encrypted ones included).
//!
//! - [`config`]: the `[matrix]` configuration section, for the bot and the server's delivery;
//! - [`bot`]: login (password or access token), a persistent state and crypto store so the bot is
//!   one device across restarts, a sync loop that accepts invitations, idempotent sends;
//! - [`message`]: the notices and the summary as plain text and HTML, in the meeting's language.

pub mod bot;
pub mod config;
pub mod error;
pub mod message;

pub use bot::Bot;
pub use config::MatrixConfig;
pub use error::{Error, Result};
