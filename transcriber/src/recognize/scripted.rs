//! `ScriptedRecognizer`: a TEST DOUBLE that returns scripted text instead of recognising speech.
//!
//! For tests of what happens after recognition (captions, transcript storage, the pool) on machines without
//! real Whisper weights. It must never be used in production code paths: it ignores the audio entirely except
//! for its length, which it uses for segment timing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Language, Options, Recognizer, Segment};
use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};

/// Test double: each `transcribe` call returns the next scripted text as one segment covering the audio.
#[derive(Debug, Clone)]
pub struct ScriptedRecognizer {
    replies: VecDeque<String>,
    /// When set, the last reply repeats instead of failing with `ScriptExhausted`.
    repeat_last: bool,
    /// Simulated inference time (sleeps the calling worker thread).
    pub delay: Duration,
    calls: Arc<AtomicUsize>,
}

impl ScriptedRecognizer {
    /// Replies in order; an empty string means "silence" (no segment).
    pub fn new<I, S>(replies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            replies: replies.into_iter().map(Into::into).collect(),
            repeat_last: false,
            delay: Duration::ZERO,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Always answers `text`.
    pub fn always(text: impl Into<String>) -> Self {
        Self {
            repeat_last: true,
            ..Self::new([text.into()])
        }
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Shared counter of `transcribe` calls (clones share it).
    pub fn calls(&self) -> Arc<AtomicUsize> {
        self.calls.clone()
    }
}

impl Recognizer for ScriptedRecognizer {
    fn transcribe(&mut self, pcm: &[f32], opts: &Options) -> Result<Vec<Segment>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let text = if self.repeat_last && self.replies.len() == 1 {
            self.replies[0].clone()
        } else {
            self.replies.pop_front().ok_or(Error::ScriptExhausted { call })?
        };
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let language = match &opts.language {
            Language::Code(c) => Some(c.clone()),
            Language::Auto => None,
        };
        Ok(vec![Segment {
            text,
            start: Duration::ZERO,
            end: Duration::from_secs_f64(pcm.len() as f64 / SAMPLE_RATE as f64),
            language,
            confidence: 1.0,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_in_order_then_fails() {
        let mut r = ScriptedRecognizer::new(["hej", "", "då"]);
        let opts = Options {
            language: Language::Code("sv".into()),
            ..Options::default()
        };
        let first = r.transcribe(&[0.0; 8000], &opts).unwrap();
        assert_eq!(first[0].text, "hej");
        assert_eq!(first[0].end, Duration::from_millis(500));
        assert_eq!(first[0].language.as_deref(), Some("sv"));
        assert!(r.transcribe(&[0.0; 10], &opts).unwrap().is_empty());
        assert_eq!(r.transcribe(&[0.0; 10], &opts).unwrap()[0].text, "då");
        assert!(matches!(
            r.transcribe(&[0.0; 10], &opts),
            Err(Error::ScriptExhausted { call: 4 })
        ));
        assert_eq!(r.calls().load(Ordering::SeqCst), 4);
    }
}
