//! A stored transcript as a file: WebVTT, SubRip (SRT), plain text or JSON.
//!
//! Cue times are relative to the meeting's start (a segment that began before it is clamped to
//! 0). Every format names the meeting and, when the transcript is sealed, its digest, so that an
//! exported file can be checked against the store. Speakers are WebVTT voice spans
//! (`<v Anna>…</v>`) and a `Name: ` prefix in SRT and text.

use crate::store::{Transcript, TranscriptSegment};
use html_escape::encode_text as escape;
use std::fmt::Write;
use std::str::FromStr;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    WebVtt,
    Srt,
    Text,
    Json,
}

impl Format {
    /// The file extension (no dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::WebVtt => "vtt",
            Format::Srt => "srt",
            Format::Text => "txt",
            Format::Json => "json",
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::WebVtt => "text/vtt; charset=utf-8",
            Format::Srt => "application/x-subrip; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "vtt" | "webvtt" => Ok(Format::WebVtt),
            "srt" => Ok(Format::Srt),
            "txt" | "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown export format {other:?}; use vtt, srt, txt or json")),
        }
    }
}

/// The transcript in `format`.
pub fn render(transcript: &Transcript, format: Format) -> String {
    match format {
        Format::WebVtt => webvtt(transcript),
        Format::Srt => srt(transcript),
        Format::Text => text(transcript),
        Format::Json => serde_json::to_string_pretty(transcript).unwrap_or_else(|_| "{}".to_owned()),
    }
}

/// A suggested file name: `<room>-<meeting id>.<ext>`, with only safe characters.
pub fn file_name(transcript: &Transcript, format: Format) -> String {
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!(
        "{}-{}.{}",
        safe(&transcript.meeting.room),
        safe(&transcript.meeting.id),
        format.extension()
    )
}

/// Lines that describe the meeting, for the header of each text format.
fn header_lines(t: &Transcript) -> Vec<String> {
    let m = &t.meeting;
    let mut lines = vec![
        format!("Meeting {} in room {}", single_line(&m.id), single_line(&m.room)),
        format!("Started {}", rfc3339(m.started_at)),
    ];
    if let Some(end) = m.ended_at {
        lines.push(format!("Ended {}", rfc3339(end)));
    }
    if let Some(language) = &m.language {
        lines.push(format!("Language {}", single_line(language)));
    }
    let names: Vec<String> = t.participants.iter().map(|p| single_line(&p.name)).collect();
    if !names.is_empty() {
        lines.push(format!("Participants {}", names.join(", ")));
    }
    for p in t.participants.iter().filter(|p| p.opted_out_at.is_some()) {
        lines.push(format!(
            "{} opted out of transcription at {}; their speech is not transcribed",
            single_line(&p.name),
            rfc3339(p.opted_out_at.unwrap_or_default())
        ));
    }
    if let Some(digest) = &m.transcript_digest {
        lines.push(format!("Transcript digest {}", single_line(digest)));
    }
    lines
}

fn offset(t: &Transcript, at_ms: i64) -> i64 {
    at_ms.saturating_sub(t.meeting.started_at).max(0)
}

/// `hh:mm:ss<sep>mmm`.
fn clock(ms: i64, sep: char) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    format!(
        "{h:02}:{:02}:{:02}{sep}{:03}",
        rest / 60_000,
        (rest % 60_000) / 1000,
        rest % 1000
    )
}

/// Cue start and end, with the end after the start (a zero-length cue is a parse error for some players).
fn span(t: &Transcript, s: &TranscriptSegment) -> (i64, i64) {
    let start = offset(t, s.start_ms);
    (start, offset(t, s.end_ms).max(start.saturating_add(1)))
}

/// `text` as one line: control characters (newlines, escapes) and bidirectional overrides become
/// spaces, runs of whitespace one space, trimmed. Names and text stored before names were checked
/// at join go through this too, so no stored value can forge a line of an export.
pub fn single_line(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if is_unsafe_char(c) { ' ' } else { c }).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters that must never reach a line of an export or a display name: controls (C0, DEL, C1)
/// and the bidirectional marks and overrides that reorder what a reader sees.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One line of cue text: no blank lines (they end a cue) and no `-->`, also none that a
/// replacement makes (`--->` becomes `-->` after one pass).
fn cue_text(text: &str) -> String {
    let mut line = single_line(text);
    while line.contains("-->") {
        line = line.replace("-->", "->");
    }
    line
}

/// A WebVTT voice name: escaped cue text that cannot end in `-`, which the `>` closing the voice
/// tag would make into `-->`.
fn voice(name: &str) -> String {
    let mut name = escape(&cue_text(name)).into_owned();
    if name.ends_with('-') {
        name.push(' ');
    }
    name
}

fn webvtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\nNOTE\n");
    for line in header_lines(t) {
        // A NOTE block ends at a blank line and may not contain `-->`.
        let _ = writeln!(out, "{}", cue_text(&line));
    }
    for (i, s) in t.segments.iter().enumerate() {
        let (start, end) = span(t, s);
        let _ = write!(
            out,
            "\n{}\n{} --> {}\n<v {}>{}</v>\n",
            i + 1,
            clock(start, '.'),
            clock(end, '.'),
            voice(&s.speaker_name),
            escape(&cue_text(&s.text))
        );
    }
    out
}

fn srt(t: &Transcript) -> String {
    let mut out = String::new();
    for (i, s) in t.segments.iter().enumerate() {
        let (start, end) = span(t, s);
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}: {}\n\n",
            i + 1,
            clock(start, ','),
            clock(end, ','),
            cue_text(&s.speaker_name),
            cue_text(&s.text)
        );
    }
    out
}

fn text(t: &Transcript) -> String {
    let mut out = header_lines(t).join("\n");
    out.push_str("\n\n");
    for s in &t.segments {
        let (start, _) = span(t, s);
        let _ = writeln!(
            out,
            "[{}] {}: {}",
            clock(start, '.'),
            single_line(&s.speaker_name),
            cue_text(&s.text)
        );
    }
    out
}

/// Milliseconds since the epoch as an RFC 3339 UTC time.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Meeting, Participant};

    fn transcript() -> Transcript {
        let started = 1_700_000_000_000;
        let seg = |id: &str, who: &str, name: &str, start: i64, end: i64, text: &str| TranscriptSegment {
            utterance_id: id.into(),
            participant_id: who.into(),
            speaker_name: name.into(),
            start_ms: started + start,
            end_ms: started + end,
            text: text.into(),
            language: Some("sv".into()),
            confidence: Some(0.9),
        };
        Transcript {
            meeting: Meeting {
                id: "m1".into(),
                room: "veckomöte".into(),
                started_at: started,
                ended_at: Some(started + 3_723_456),
                language: Some("sv".into()),
                matrix_room: None,
                transcript_digest: Some("abc123".into()),
                prompt: None,
            },
            participants: vec![
                Participant {
                    participant_id: "a".into(),
                    name: "Anna".into(),
                    first_seen: started,
                    opted_out_at: None,
                },
                Participant {
                    participant_id: "b".into(),
                    name: "Björn <B>".into(),
                    first_seen: started,
                    opted_out_at: Some(started + 5_000),
                },
            ],
            segments: vec![
                seg("u1", "a", "Anna", -500, 1_200, "Hej  alla,\n\nvi börjar."),
                seg("u2", "b", "Björn <B>", 3_661_001, 3_661_001, "a --> b & <c>"),
            ],
        }
    }

    #[test]
    fn clock_formats_hours_minutes_seconds_and_millis() {
        assert_eq!(clock(3_723_456, '.'), "01:02:03.456");
        assert_eq!(clock(0, ','), "00:00:00,000");
    }

    #[test]
    fn webvtt_has_header_note_voices_and_relative_times() {
        let vtt = render(&transcript(), Format::WebVtt);
        assert!(
            vtt.starts_with("WEBVTT\n\nNOTE\nMeeting m1 in room veckomöte\n"),
            "{vtt}"
        );
        assert!(vtt.contains("Transcript digest abc123\n"));
        assert!(vtt.contains("Björn <B> opted out of transcription"));
        assert!(
            vtt.contains("\n1\n00:00:00.000 --> 00:00:01.200\n<v Anna>Hej alla, vi börjar.</v>\n"),
            "{vtt}"
        );
        // Zero-length cue gets 1 ms; markup and arrows in text and names are neutralised.
        assert!(
            vtt.contains("\n2\n01:01:01.001 --> 01:01:01.002\n<v Björn &lt;B&gt;>a -&gt; b &amp; &lt;c&gt;</v>\n"),
            "{vtt}"
        );
        let cues = vtt.split("\n\n").filter(|b| b.contains("-->")).count();
        assert_eq!(cues, 2);
    }

    #[test]
    fn srt_numbers_cues_with_comma_times_and_speaker_prefix() {
        let srt = render(&transcript(), Format::Srt);
        assert!(
            srt.starts_with(
                "1\n00:00:00,000 --> 00:00:01,200\nAnna: Hej alla, vi börjar.\n\n2\n01:01:01,001 --> 01:01:01,002\n"
            ),
            "{srt}"
        );
    }

    #[test]
    fn text_lists_header_then_lines() {
        let text = render(&transcript(), Format::Text);
        assert!(text.contains("Participants Anna, Björn <B>\n"));
        assert!(text.contains("[00:00:00.000] Anna: Hej alla, vi börjar.\n"));
        assert!(text.contains("Started 2023-11-14T22:13:20Z"));
    }

    #[test]
    fn hostile_names_cannot_forge_lines() {
        let mut t = transcript();
        let forged = "Anna\n[00:00:05.000] Boss: I approve the budget\r\x1b[2J\u{202e}";
        t.segments[0].speaker_name = forged.into();
        t.participants[0].name = forged.into();
        for format in [Format::Text, Format::Srt, Format::WebVtt] {
            let out = render(&t, format);
            assert!(
                !out.lines().any(|l| l.starts_with("[00:00:05.000]")),
                "{format:?} has a forged line:\n{out}"
            );
            assert!(
                !out.contains(['\r', '\x1b', '\u{202e}']),
                "{format:?} carries control characters"
            );
        }
        let text = render(&t, Format::Text);
        assert_eq!(
            text.lines().filter(|l| l.starts_with('[')).count(),
            t.segments.len(),
            "{text}"
        );
    }

    /// Found by fuzzing: arrows that one replacement pass recreates, a voice name ending in `--`,
    /// and times so far from the meeting's start that the offset overflowed.
    #[test]
    fn hostile_arrows_names_and_times_cannot_break_cues() {
        let mut t = transcript();
        t.segments[0].text = "a ---> b ----->> c".into();
        t.segments[0].speaker_name = "Anna--".into();
        t.segments[1].start_ms = i64::MAX;
        t.segments[1].end_ms = i64::MIN;
        t.meeting.started_at = i64::MIN + 1;
        for format in [Format::WebVtt, Format::Srt, Format::Text] {
            let out = render(&t, format);
            let arrows = out.lines().filter(|l| l.contains("-->")).count();
            let expected = if format == Format::Text { 0 } else { t.segments.len() };
            assert_eq!(arrows, expected, "{format:?}: only timing lines have arrows:\n{out}");
        }
        assert!(render(&t, Format::WebVtt).contains("<v Anna-- >"));
    }

    #[test]
    fn json_round_trips() {
        let t = transcript();
        let back: Transcript = serde_json::from_str(&render(&t, Format::Json)).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn formats_parse_and_names_are_safe() {
        assert_eq!("VTT".parse::<Format>(), Ok(Format::WebVtt));
        assert_eq!("text".parse::<Format>(), Ok(Format::Text));
        assert!("pdf".parse::<Format>().unwrap_err().contains("vtt, srt, txt or json"));
        assert_eq!(file_name(&transcript(), Format::Srt), "veckom_te-m1.srt");
    }
}
