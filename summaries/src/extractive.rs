//! The built-in summarizer: extractive, deterministic, no model.
//!
//! 1. Each utterance is split into sentences, each kept with its speaker and time.
//! 2. Sentences carrying a decision phrase ("we decided", "agreed", "vi bestämde", "beslut", …)
//!    become decisions; sentences carrying an action phrase ("I will", "action item", "by Friday",
//!    "jag tar", "ska skicka", "senast", …) become action items. Both keep the speaker's name.
//! 3. The remaining sentences are scored by centrality: the summed cosine similarity of their
//!    content words (stop words of both languages removed, weighted by inverse sentence
//!    frequency) to every other sentence, so a sentence about what the meeting kept coming back to
//!    wins over an aside. The best few become key points, shown in the order they were said.
//!
//! Every list and every point is bounded (see the constants), so the summary stays short however
//! long the meeting was. Equal scores are broken by time, so the same transcript always gives the
//! same summary.

use crate::{MeetingText, Point, Summarizer, Summary, SummaryFuture, clip};
use std::collections::{HashMap, HashSet};

/// At most this many key points.
pub const MAX_KEY_POINTS: usize = 6;
/// At most this many decisions, and this many action items.
pub const MAX_DECISIONS: usize = 8;
pub const MAX_ACTIONS: usize = 8;
/// A point longer than this many characters is cut.
pub const MAX_POINT_CHARS: usize = 280;
/// Sentences with fewer content words than this are never key points ("Yes, right.").
const MIN_CONTENT_WORDS: usize = 3;

const DECISION_PHRASES: &[&str] = &[
    // English
    "we decided",
    "we have decided",
    "we've decided",
    "decided to",
    "decided that",
    "the decision is",
    "decision:",
    "we agreed",
    "we agree",
    "agreed to",
    "agreed that",
    "we will go with",
    "we'll go with",
    "let's go with",
    "is approved",
    "was approved",
    "we approve",
    "final answer is",
    // Swedish
    "vi bestämde",
    "bestämde vi",
    "har vi bestämt",
    "beslutade vi",
    "kom vi överens",
    "vi har bestämt",
    "vi bestämmer",
    "bestämt att",
    "beslutade",
    "beslutar",
    "beslut:",
    "beslutet är",
    "vi är överens",
    "vi var överens",
    "överens om",
    "vi kör på",
    "vi går på",
    "är godkänd",
    "godkänns",
    "vi godkänner",
];

const ACTION_PHRASES: &[&str] = &[
    // English
    "i will",
    "i'll",
    "i can take",
    "i'll take",
    "i take care",
    "will send",
    "will prepare",
    "will write",
    "will book",
    "will check",
    "will follow up",
    "action item",
    "action point",
    "todo",
    "to-do",
    "follow up on",
    "by monday",
    "by tuesday",
    "by wednesday",
    "by thursday",
    "by friday",
    "by next week",
    "by tomorrow",
    "before the next meeting",
    "deadline",
    "is responsible for",
    "are responsible for",
    // Swedish
    "jag tar",
    "jag ska",
    "jag fixar",
    "jag skickar",
    "jag bokar",
    "jag kollar",
    "jag återkommer",
    "ska skicka",
    "ska boka",
    "ska ta fram",
    "ska skriva",
    "tar hand om",
    "ansvarar för",
    "följer upp",
    "åtgärd",
    "att göra:",
    "senast",
    "till på måndag",
    "till på fredag",
    "till nästa möte",
    "före nästa möte",
    "på måndag",
    "på fredag",
];

const STOP_WORDS: &[&str] = &[
    // English
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but",
    "by", "can", "could", "did", "do", "does", "doing", "for", "from", "get", "go", "going", "got", "had", "has",
    "have", "he", "her", "here", "him", "his", "how", "i", "i'll", "i'm", "if", "in", "into", "is", "it", "it's",
    "its", "just", "know", "let's", "like", "maybe", "me", "more", "my", "no", "not", "now", "of", "oh", "ok", "okay",
    "on", "one", "or", "our", "out", "so", "some", "that", "that's", "the", "their", "them", "then", "there", "these",
    "they", "think", "this", "those", "to", "too", "um", "uh", "up", "us", "very", "was", "we", "we'll", "we're",
    "well", "were", "what", "when", "which", "who", "will", "with", "would", "yeah", "yes", "you",
    "your", // Swedish
    "alla", "att", "av", "bara", "blir", "de", "dem", "den", "denna", "det", "detta", "där", "då", "efter", "ej",
    "eller", "en", "er", "ett", "från", "för", "ha", "hade", "han", "hans", "har", "hon", "här", "i", "inte", "jag",
    "ja", "jo", "kan", "kanske", "man", "med", "men", "mig", "min", "mitt", "mot", "mycket", "ni", "nej", "nu", "när",
    "och", "också", "om", "oss", "på", "sa", "så", "sedan", "sig", "sin", "sitt", "ska", "skulle", "som", "tycker",
    "till", "under", "upp", "ut", "vad", "var", "vara", "vi", "vid", "vill", "väl", "år", "än", "är", "åt", "över",
];

/// The built-in summarizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extractive;

impl Summarizer for Extractive {
    fn summarize<'a>(&'a self, meeting: &'a MeetingText) -> SummaryFuture<'a> {
        Box::pin(async move { Ok(summarize(meeting)) })
    }
}

#[derive(Debug, Clone)]
struct Sentence<'a> {
    speaker: &'a str,
    text: String,
    words: Vec<String>,
}

/// The summary of `meeting`, synchronously.
pub fn summarize(meeting: &MeetingText) -> Summary {
    let sentences = sentences(meeting);
    let mut decisions = Vec::new();
    let mut actions = Vec::new();
    let mut rest = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        let lower = s.text.to_lowercase();
        if has_phrase(&lower, DECISION_PHRASES) {
            decisions.push(i);
        } else if has_phrase(&lower, ACTION_PHRASES) {
            actions.push(i);
        } else {
            rest.push(i);
        }
    }
    let scores = centrality(&sentences);
    let mut ranked: Vec<usize> = rest
        .into_iter()
        // A sentence sharing nothing with the rest of the meeting (an aside) is never a key point.
        .filter(|&i| sentences[i].words.len() >= MIN_CONTENT_WORDS && scores[i] > 0.0)
        .collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut key: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    for i in ranked {
        if key.len() == MAX_KEY_POINTS {
            break;
        }
        // The same sentence said twice is one point.
        if seen.insert(sentences[i].text.to_lowercase()) {
            key.push(i);
        }
    }
    key.sort_unstable();
    let point = |i: &usize| Point::new(Some(sentences[*i].speaker), clip(&sentences[*i].text, MAX_POINT_CHARS));
    Summary {
        key_points: group_by_speaker(key.iter().map(point).collect()),
        decisions: dedup(decisions.iter().map(point))
            .into_iter()
            .take(MAX_DECISIONS)
            .collect(),
        action_items: dedup(actions.iter().map(point)).into_iter().take(MAX_ACTIONS).collect(),
        source: "extractive".into(),
    }
}

/// Points of the same speaker together, speakers in the order they first speak; each speaker's
/// points keep their order.
fn group_by_speaker(points: Vec<Point>) -> Vec<Point> {
    let mut order: Vec<Option<String>> = Vec::new();
    for p in &points {
        if !order.contains(&p.speaker) {
            order.push(p.speaker.clone());
        }
    }
    order
        .iter()
        .flat_map(|who| points.iter().filter(move |p| &p.speaker == who).cloned())
        .collect()
}

fn dedup(points: impl Iterator<Item = Point>) -> Vec<Point> {
    let mut seen = HashSet::new();
    points.filter(|p| seen.insert(p.text.to_lowercase())).collect()
}

fn has_phrase(lower: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| {
        // Phrases match at word boundaries ("todo" is not in "metodologi").
        lower.match_indices(p).any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            let after = lower[at + p.len()..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
            boundary(before) && (boundary(after) || p.ends_with(' ') || p.ends_with(':'))
        })
    })
}

/// Every utterance's sentences, in time order.
fn sentences(meeting: &MeetingText) -> Vec<Sentence<'_>> {
    let mut utterances: Vec<_> = meeting.utterances.iter().collect();
    utterances.sort_by_key(|u| u.start_ms);
    let mut out = Vec::new();
    for u in utterances {
        for text in split_sentences(&u.text) {
            let words = content_words(&text);
            out.push(Sentence {
                speaker: &u.speaker,
                text,
                words,
            });
        }
    }
    out
}

/// Splits at `.`, `!`, `?` (and `…`) followed by white space or the end.
fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        if matches!(c, '.' | '!' | '?' | '…') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            let s = current.trim();
            if !s.is_empty() {
                out.push(s.to_owned());
            }
            current.clear();
        }
    }
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    out
}

fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| {
            w.chars().count() > 1 && !STOP_WORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit())
        })
        .collect()
}

/// Each sentence's summed cosine similarity to all others (tf-isf weighted bags of words).
fn centrality(sentences: &[Sentence<'_>]) -> Vec<f64> {
    let n = sentences.len() as f64;
    let mut document_frequency: HashMap<&str, usize> = HashMap::new();
    for s in sentences {
        for w in s.words.iter().collect::<HashSet<_>>() {
            *document_frequency.entry(w.as_str()).or_default() += 1;
        }
    }
    let vectors: Vec<HashMap<&str, f64>> = sentences
        .iter()
        .map(|s| {
            let mut v: HashMap<&str, f64> = HashMap::new();
            for w in &s.words {
                *v.entry(w.as_str()).or_default() += 1.0;
            }
            for (w, x) in v.iter_mut() {
                *x *= 1.0 + (n / document_frequency[w] as f64).ln();
            }
            v
        })
        .collect();
    let norms: Vec<f64> = vectors
        .iter()
        .map(|v| v.values().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    (0..vectors.len())
        .map(|i| {
            (0..vectors.len())
                .filter(|&j| j != i && norms[i] > 0.0 && norms[j] > 0.0)
                .map(|j| {
                    let dot: f64 = vectors[i]
                        .iter()
                        .filter_map(|(w, x)| vectors[j].get(w).map(|y| x * y))
                        .sum();
                    dot / (norms[i] * norms[j])
                })
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Utterance;

    fn meeting(language: &str, lines: &[(&str, &str)]) -> MeetingText {
        MeetingText {
            title: "weekly".into(),
            started_at: 1_700_000_000_000,
            ended_at: Some(1_700_000_000_000 + 30 * 60_000),
            language: Some(language.into()),
            participants: vec!["Anna".into(), "Björn".into(), "Cecilia".into()],
            utterances: lines
                .iter()
                .enumerate()
                .map(|(i, (who, text))| Utterance {
                    speaker: (*who).into(),
                    start_ms: 1_700_000_000_000 + i as i64 * 10_000,
                    text: (*text).into(),
                })
                .collect(),
        }
    }

    pub(crate) fn english() -> MeetingText {
        meeting(
            "en",
            &[
                (
                    "Anna",
                    "Welcome everyone. Today we need to settle the budget for the new office network.",
                ),
                (
                    "Björn",
                    "The network budget is tight. The quote for the office network switches came in at forty thousand.",
                ),
                ("Cecilia", "Yes. Right."),
                (
                    "Anna",
                    "The switches for the office network are the largest part of the budget.",
                ),
                ("Björn", "My cat had kittens last week, by the way."),
                (
                    "Cecilia",
                    "We could lease the network switches instead of buying them, which spreads the budget over three years.",
                ),
                (
                    "Anna",
                    "After this discussion we decided to lease the office network switches.",
                ),
                ("Björn", "I will send the leasing contract to legal by Friday."),
                (
                    "Cecilia",
                    "Action item for me: update the budget spreadsheet with the leasing cost.",
                ),
                (
                    "Anna",
                    "Good. We agreed that the next review of the network budget is in March.",
                ),
            ],
        )
    }

    pub(crate) fn swedish() -> MeetingText {
        meeting(
            "sv",
            &[
                (
                    "Anna",
                    "Välkomna. Idag ska vi gå igenom budgeten för det nya kontorsnätverket.",
                ),
                (
                    "Björn",
                    "Budgeten för nätverket är pressad. Offerten på switcharna till kontorsnätverket landade på fyrtiotusen.",
                ),
                ("Cecilia", "Okej. Precis."),
                (
                    "Anna",
                    "Switcharna till kontorsnätverket är den största posten i budgeten.",
                ),
                ("Björn", "Min katt fick kattungar förra veckan förresten."),
                (
                    "Cecilia",
                    "Vi kan leasa switcharna till nätverket i stället för att köpa dem, då sprids budgeten över tre år.",
                ),
                (
                    "Anna",
                    "Efter diskussionen bestämde vi att leasa switcharna till kontorsnätverket. Vi bestämde också att Björn leder projektet.",
                ),
                ("Björn", "Jag skickar leasingavtalet till juristerna senast på fredag."),
                (
                    "Cecilia",
                    "Jag tar hand om att uppdatera budgetkalkylen med leasingkostnaden.",
                ),
                (
                    "Anna",
                    "Bra. Vi är överens om att nästa genomgång av nätverksbudgeten blir i mars.",
                ),
            ],
        )
    }

    fn texts(points: &[Point]) -> Vec<&str> {
        points.iter().map(|p| p.text.as_str()).collect()
    }

    #[test]
    fn english_meeting_decisions_actions_and_central_points() {
        let s = summarize(&english());
        assert_eq!(
            texts(&s.decisions),
            [
                "After this discussion we decided to lease the office network switches.",
                "We agreed that the next review of the network budget is in March."
            ]
        );
        assert_eq!(s.decisions[0].speaker.as_deref(), Some("Anna"));
        assert_eq!(
            texts(&s.action_items),
            [
                "I will send the leasing contract to legal by Friday.",
                "Action item for me: update the budget spreadsheet with the leasing cost."
            ]
        );
        assert_eq!(s.action_items[0].speaker.as_deref(), Some("Björn"));
        assert_eq!(s.action_items[1].speaker.as_deref(), Some("Cecilia"));
        let key = texts(&s.key_points);
        assert!(!key.is_empty() && key.len() <= MAX_KEY_POINTS, "{key:?}");
        assert!(
            key.iter().all(|t| !t.contains("kittens")),
            "an aside is not a key point: {key:?}"
        );
        assert!(key.iter().all(|t| *t != "Yes." && *t != "Right."), "{key:?}");
        assert!(
            key.contains(&"The switches for the office network are the largest part of the budget."),
            "{key:?}"
        );
        assert_eq!(s.source, "extractive");
    }

    #[test]
    fn swedish_meeting_decisions_actions_and_central_points() {
        let s = summarize(&swedish());
        assert_eq!(
            texts(&s.decisions),
            [
                "Efter diskussionen bestämde vi att leasa switcharna till kontorsnätverket.",
                "Vi bestämde också att Björn leder projektet.",
                "Vi är överens om att nästa genomgång av nätverksbudgeten blir i mars."
            ]
        );
        assert_eq!(
            texts(&s.action_items),
            [
                "Jag skickar leasingavtalet till juristerna senast på fredag.",
                "Jag tar hand om att uppdatera budgetkalkylen med leasingkostnaden."
            ]
        );
        assert_eq!(s.action_items[0].speaker.as_deref(), Some("Björn"));
        let key = texts(&s.key_points);
        assert!(!key.is_empty() && key.len() <= MAX_KEY_POINTS, "{key:?}");
        assert!(key.iter().all(|t| !t.contains("kattungar")), "{key:?}");
        assert!(
            key.iter().any(|t| t.contains("Switcharna till kontorsnätverket")),
            "{key:?}"
        );
    }

    #[test]
    fn key_points_are_grouped_by_speaker_and_the_result_is_deterministic() {
        let s = summarize(&english());
        let speakers: Vec<_> = s.key_points.iter().map(|p| p.speaker.clone().unwrap()).collect();
        let mut grouped = speakers.clone();
        grouped.dedup();
        let mut unique = grouped.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            grouped.len(),
            unique.len(),
            "each speaker's points are together: {speakers:?}"
        );
        assert_eq!(summarize(&english()), s);
    }

    #[test]
    fn long_meetings_give_bounded_summaries() {
        let mut m = english();
        let base = m.utterances.clone();
        for round in 0..200 {
            for u in &base {
                let mut u = u.clone();
                u.start_ms += (round + 1) * 1_000_000;
                u.text = format!(
                    "{} Round {round} of talking about it at length {}.",
                    u.text,
                    "and more ".repeat(60)
                );
                m.utterances.push(u);
            }
        }
        let s = summarize(&m);
        assert!(s.key_points.len() <= MAX_KEY_POINTS);
        assert!(s.decisions.len() <= MAX_DECISIONS && s.action_items.len() <= MAX_ACTIONS);
        for p in s.key_points.iter().chain(&s.decisions).chain(&s.action_items) {
            assert!(p.text.chars().count() <= MAX_POINT_CHARS, "{}", p.text);
        }
    }

    #[test]
    fn empty_meetings_and_phrase_boundaries() {
        let s = summarize(&meeting("sv", &[]));
        assert!(s.key_points.is_empty() && s.decisions.is_empty() && s.action_items.is_empty());
        assert!(!has_phrase("vi diskuterade metodologi", ACTION_PHRASES));
        assert!(has_phrase("todo: skriv protokollet", ACTION_PHRASES));
        assert_eq!(
            split_sentences("Version 1.5 är klar. Bra! Eller?"),
            ["Version 1.5 är klar.", "Bra!", "Eller?"]
        );
    }
}
