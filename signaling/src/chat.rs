//! In-meeting chat: what a message may hold, and how many a participant may send.

use std::time::Instant;

/// Longest chat message, in characters.
pub const MAX_CHARS: usize = 2000;
/// Messages a room keeps for newcomers.
pub const HISTORY: usize = 100;
/// A participant may send a burst of this many messages, then one per second.
pub const BURST: f64 = 5.0;

/// The text as the room sees it: each line made safe (controls and direction overrides become
/// spaces, runs of spaces one), leading and trailing blank lines dropped, at most two blank lines in
/// a row. Empty or longer than [`MAX_CHARS`]: refused, with the message for the sender.
pub fn clean(text: &str) -> Result<String, String> {
    let mut lines: Vec<String> = Vec::new();
    let mut blank_run = 0;
    for line in text.split('\n') {
        let line = crate::export::single_line(line);
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 2 || lines.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let cleaned = lines.join("\n");
    match cleaned.chars().count() {
        0 => Err("a chat message needs some text".into()),
        n if n > MAX_CHARS => Err(format!("a chat message holds at most {MAX_CHARS} characters, not {n}")),
        _ => Ok(cleaned),
    }
}

/// A participant's chat allowance.
pub struct ChatRate(samtal_sfu::rate::TokenBucket);

impl ChatRate {
    pub fn new(now: Instant) -> Self {
        Self(samtal_sfu::rate::TokenBucket::new(1.0, BURST, now))
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        self.0.allow(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn text_is_made_safe_and_bounded() {
        assert_eq!(
            clean("  hej  \n\n\n\n\nvärlden \u{202e}evil").unwrap(),
            "hej\n\n\nvärlden evil"
        );
        assert_eq!(clean("\n\n a\tb \r\n").unwrap(), "a b");
        assert!(clean(" \n\u{7}\n ").is_err());
        assert!(clean(&"å".repeat(MAX_CHARS)).is_ok());
        assert!(clean(&"å".repeat(MAX_CHARS + 1)).is_err());
        // Markup is text: the page never renders it as HTML.
        assert_eq!(clean("<b>hi</b>").unwrap(), "<b>hi</b>");
    }

    #[test]
    fn a_burst_then_one_per_second() {
        let start = Instant::now();
        let mut rate = ChatRate::new(start);
        assert_eq!((0..10).filter(|_| rate.allow(start)).count(), 5);
        assert!(!rate.allow(start + Duration::from_millis(500)));
        assert!(rate.allow(start + Duration::from_millis(1100)));
    }
}
