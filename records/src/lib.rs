//! Samtal's transcript archive, for records officers and the law: what was said in a meeting, kept
//! so that it can be found, proven unaltered, exported, held and finally deleted.
//!
//! - [`store`]: the rows (meetings, participants, segments, audit entries, the Matrix outbox) in
//!   SQLite (embedded default) or PostgreSQL, with per-backend migrations.
//! - [`compliance`]: hash chains over each transcript and over the audit trail ([`compliance::integrity`],
//!   [`compliance::audit`]), full-text search ([`compliance::search`]), retention and legal holds
//!   ([`compliance::retention`]), and the offline verifier ([`compliance::check`]).
//! - [`export`]: WebVTT, SRT, text and JSON renderings of a transcript.
//!
//! Nothing here speaks HTTP; `samtal-signaling` serves the API on top of it.

pub mod compliance;
pub mod error;
pub mod export;
pub mod store;

pub use error::{Error, Result};
