//! samtal-summaries: meeting summaries from transcripts. One [`Summarizer`] trait, two
//! implementations; the server posts what they make (to Matrix, through samtal-matrix).
//!
//! - [`extractive::Extractive`]: built in, no model, deterministic. Picks the most central
//!   sentences, groups them by speaker, and finds decision and action-item phrases (Swedish and English).
//! - [`llm::Llm`]: a client for an OpenAI-compatible chat-completions endpoint (llama.cpp server,
//!   vLLM, Ollama) that the operator runs; none is configured by default.

pub mod error;
pub mod extractive;
pub mod llm;

pub use error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use time::OffsetDateTime;
use time::macros::format_description;

/// One thing said, in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    pub speaker: String,
    /// Milliseconds since the Unix epoch.
    pub start_ms: i64,
    pub text: String,
}

/// What a summarizer reads: the meeting's facts and what was said.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MeetingText {
    /// The meeting's title (its room name).
    pub title: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    /// Milliseconds since the Unix epoch; `None` if it never ended.
    pub ended_at: Option<i64>,
    /// Language code (`sv`, `en`, …); `None`: unknown, English headings.
    pub language: Option<String>,
    /// Display names, by first seen.
    pub participants: Vec<String>,
    pub utterances: Vec<Utterance>,
}

/// A summary point, with who said it when that is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub speaker: Option<String>,
    pub text: String,
}

impl Point {
    pub fn new(speaker: Option<&str>, text: impl Into<String>) -> Self {
        Self {
            speaker: speaker.map(str::to_owned),
            text: text.into(),
        }
    }
}

/// A meeting summary: key points, decisions, action items.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub key_points: Vec<Point>,
    pub decisions: Vec<Point>,
    pub action_items: Vec<Point>,
    /// Which summarizer wrote it (`extractive`, or `llm:<model>`).
    pub source: String,
}

/// Boxed future returned by [`Summarizer::summarize`] (so the trait works as `dyn Summarizer`).
pub type SummaryFuture<'a> = Pin<Box<dyn Future<Output = Result<Summary>> + Send + 'a>>;

/// Something that summarizes a meeting.
pub trait Summarizer: Send + Sync {
    fn summarize<'a>(&'a self, meeting: &'a MeetingText) -> SummaryFuture<'a>;
}

/// Whether the meeting's language is Swedish (`sv`, `sv-SE`, `swe`).
pub fn is_swedish(language: Option<&str>) -> bool {
    language
        .map(|l| l.to_ascii_lowercase())
        .is_some_and(|l| l == "sv" || l.starts_with("sv-") || l.starts_with("sv_") || l == "swe")
}

/// `text` cut to at most `max` characters at a word boundary, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if i > max / 2 => cut[..i].trim_end().to_owned(),
        _ => cut,
    };
    format!("{cut}…")
}

/// `2026-03-01 09:00 UTC` for milliseconds since the Unix epoch (the milliseconds if out of range).
pub fn date(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
