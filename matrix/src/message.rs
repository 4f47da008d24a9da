//! The messages the bot posts, each as a plain `body` and an HTML `formatted_body`, in the
//! meeting's language (Swedish for `sv`, English otherwise). Every piece of meeting text is
//! HTML-escaped (`&`, `<`, `>`: it is only ever element content). Times are shown in UTC.

use html_escape::encode_text as escape;
pub use samtal_summaries::date;
use samtal_summaries::{MeetingText, Point, Summary, is_swedish};

/// A message as plain text and HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatted {
    pub plain: String,
    pub html: String,
}

/// `45 min`, `1 h 5 min`.
pub fn duration(ms: i64) -> String {
    let minutes = (ms.max(0) + 30_000) / 60_000;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

struct Labels {
    summary: &'static str,
    date: &'static str,
    duration: &'static str,
    participants: &'static str,
    key_points: &'static str,
    decisions: &'static str,
    action_items: &'static str,
    none: &'static str,
    attached: &'static str,
    started: &'static str,
    stopped: &'static str,
}

const ENGLISH: Labels = Labels {
    summary: "Meeting summary",
    date: "Date",
    duration: "Duration",
    participants: "Participants",
    key_points: "Key points",
    decisions: "Decisions",
    action_items: "Action items",
    none: "none recorded",
    attached: "The full transcript follows as WebVTT and plain-text files.",
    started: "Transcription started in meeting",
    stopped: "Transcription stopped in meeting",
};

const SWEDISH: Labels = Labels {
    summary: "Sammanfattning av mötet",
    date: "Datum",
    duration: "Längd",
    participants: "Deltagare",
    key_points: "Viktiga punkter",
    decisions: "Beslut",
    action_items: "Att göra",
    none: "inga noterade",
    attached: "Hela transkriptet följer som WebVTT- och textfil.",
    started: "Transkriberingen har startat i mötet",
    stopped: "Transkriberingen har stoppats i mötet",
};

fn labels(language: Option<&str>) -> &'static Labels {
    if is_swedish(language) { &SWEDISH } else { &ENGLISH }
}

/// The notice that transcription started (`started`) or stopped in meeting `title`.
pub fn transcription_notice(title: &str, language: Option<&str>, started: bool) -> Formatted {
    let l = labels(language);
    let what = if started { l.started } else { l.stopped };
    Formatted {
        plain: format!("{what} {title}."),
        html: format!("{what} <b>{}</b>.", escape(title)),
    }
}

/// The summary message: title, date, duration, participants, key points, decisions, action items.
pub fn summary(meeting: &MeetingText, summary: &Summary) -> Formatted {
    let l = labels(meeting.language.as_deref());
    let mut plain = format!("{}: {}\n", l.summary, meeting.title);
    let mut html = format!("<h3>{}: {}</h3>\n<p>", escape(l.summary), escape(&meeting.title));
    let mut facts = vec![(l.date, date(meeting.started_at))];
    if let Some(end) = meeting.ended_at {
        facts.push((l.duration, duration(end - meeting.started_at)));
    }
    facts.push((l.participants, meeting.participants.join(", ")));
    for (i, (label, value)) in facts.iter().enumerate() {
        plain.push_str(&format!("{label}: {value}\n"));
        if i > 0 {
            html.push_str("<br>");
        }
        html.push_str(&format!("<b>{}:</b> {}", escape(label), escape(value)));
    }
    html.push_str("</p>\n");
    for (label, points) in [
        (l.key_points, &summary.key_points),
        (l.decisions, &summary.decisions),
        (l.action_items, &summary.action_items),
    ] {
        plain.push_str(&format!("\n{label}:\n"));
        html.push_str(&format!("<h4>{}</h4>\n", escape(label)));
        if points.is_empty() {
            plain.push_str(&format!("  ({})\n", l.none));
            html.push_str(&format!("<p><i>{}</i></p>\n", escape(l.none)));
            continue;
        }
        html.push_str("<ul>\n");
        for p in points {
            plain.push_str(&format!("- {}\n", point_plain(p)));
            html.push_str(&format!("<li>{}</li>\n", point_html(p)));
        }
        html.push_str("</ul>\n");
    }
    plain.push_str(&format!("\n{}\n", l.attached));
    html.push_str(&format!("<p>{}</p>", escape(l.attached)));
    Formatted { plain, html }
}

fn point_plain(p: &Point) -> String {
    match &p.speaker {
        Some(who) => format!("{who}: {}", p.text),
        None => p.text.clone(),
    }
}

fn point_html(p: &Point) -> String {
    match &p.speaker {
        Some(who) => format!("<b>{}:</b> {}", escape(who), escape(&p.text)),
        None => escape(&p.text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting(language: &str) -> MeetingText {
        MeetingText {
            title: "R&D <weekly>".into(),
            started_at: 1_772_355_600_000, // 2026-03-01 09:00 UTC
            ended_at: Some(1_772_355_600_000 + 65 * 60_000),
            language: Some(language.into()),
            participants: vec!["Anna".into(), "Björn <admin>".into()],
            utterances: vec![],
        }
    }

    fn summary_of() -> Summary {
        Summary {
            key_points: vec![Point::new(Some("Anna"), "Budget is <tight> & late")],
            decisions: vec![Point::new(Some("Björn <admin>"), "Lease the switches")],
            action_items: vec![],
            source: "extractive".into(),
        }
    }

    #[test]
    fn summaries_are_formatted_and_escaped() {
        let f = summary(&meeting("en"), &summary_of());
        assert!(
            f.plain
                .starts_with("Meeting summary: R&D <weekly>\nDate: 2026-03-01 09:00 UTC\nDuration: 1 h 5 min\n"),
            "{}",
            f.plain
        );
        assert!(f.plain.contains("Participants: Anna, Björn <admin>"), "{}", f.plain);
        assert!(
            f.plain.contains("- Anna: Budget is <tight> & late")
                && f.plain.contains("Action items:\n  (none recorded)"),
            "{}",
            f.plain
        );
        assert!(
            f.html.contains("<h3>Meeting summary: R&amp;D &lt;weekly&gt;</h3>"),
            "{}",
            f.html
        );
        assert!(
            f.html
                .contains("<li><b>Anna:</b> Budget is &lt;tight&gt; &amp; late</li>"),
            "{}",
            f.html
        );
        assert!(
            f.html
                .contains("<li><b>Björn &lt;admin&gt;:</b> Lease the switches</li>"),
            "{}",
            f.html
        );
        assert!(!f.html.contains("<admin>") && !f.html.contains("<tight>"));
    }

    #[test]
    fn swedish_meetings_get_swedish_headings() {
        let f = summary(&meeting("sv"), &summary_of());
        assert!(
            f.plain.starts_with(
                "Sammanfattning av mötet: R&D <weekly>\nDatum: 2026-03-01 09:00 UTC\nLängd: 1 h 5 min\nDeltagare:"
            ),
            "{}",
            f.plain
        );
        assert!(
            f.plain.contains("Beslut:\n- Björn <admin>: Lease the switches") && f.plain.contains("Att göra:"),
            "{}",
            f.plain
        );
        let n = transcription_notice("möte <1>", Some("sv"), true);
        assert_eq!(n.plain, "Transkriberingen har startat i mötet möte <1>.");
        assert_eq!(n.html, "Transkriberingen har startat i mötet <b>möte &lt;1&gt;</b>.");
        assert_eq!(
            transcription_notice("x", None, false).plain,
            "Transcription stopped in meeting x."
        );
        assert_eq!(
            (duration(44 * 60_000), duration(120 * 60_000)),
            ("44 min".to_owned(), "2 h".to_owned())
        );
    }
}
