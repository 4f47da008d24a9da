//! The audit trail's entries, their hash chain and its check, and the CSV export.
//!
//! `entry_hash = hex(SHA-256(prev_hash + "\n" + JSON([seq, at, actor, role, action, target, client,
//! outcome, detail])))`, with `prev_hash` of the first entry 64 zeros. Entries are numbered from 1
//! without gaps, so a removed entry shows as a gap even when the attacker rehashed the rest, and an
//! edited one as a hash mismatch. Appending is the store's job (`Store::append_audit`); this module
//! never writes.

use super::{canonical_json, sha256_hex};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `prev_hash` of the first entry.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most breaks [`verify`] lists.
pub const MAX_BREAKS: usize = 100;

/// What happened, before it is numbered and chained.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    /// A meeting id, or empty.
    pub target: String,
    /// The client's IP address, or empty.
    pub client: String,
    /// `ok` or `denied`.
    pub outcome: String,
    /// Compact JSON with more about the request, or empty.
    pub detail: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Entry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub client: String,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl Entry {
    /// Numbers and chains `event` after the entry `(prev_seq, prev_hash)` (`(0, ZERO_HASH)` for the first).
    pub fn chain(event: Event, prev_seq: i64, prev_hash: &str) -> Entry {
        let mut entry = Entry {
            seq: prev_seq + 1,
            at: event.at,
            actor: event.actor,
            role: event.role,
            action: event.action,
            target: event.target,
            client: event.client,
            outcome: event.outcome,
            detail: event.detail,
            prev_hash: prev_hash.to_owned(),
            entry_hash: String::new(),
        };
        entry.entry_hash = entry.computed_hash();
        entry
    }

    /// The hash this entry's content and `prev_hash` give.
    pub fn computed_hash(&self) -> String {
        let fields = json!([
            self.seq,
            self.at,
            self.actor,
            self.role,
            self.action,
            self.target,
            self.client,
            self.outcome,
            self.detail
        ]);
        sha256_hex(format!("{}\n{}", self.prev_hash, canonical_json(&fields)).as_bytes())
    }
}

/// The newest entry: keep it somewhere else to detect later truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: i64,
    pub entry_hash: String,
}

/// One problem in the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub problem: String,
}

/// The result of checking the whole trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub entries: usize,
    pub head: Option<Head>,
    pub breaks: Vec<Break>,
}

/// Checks `entries`, which must be the whole trail in `seq` order.
pub fn verify(entries: &[Entry]) -> Verification {
    let mut breaks = Vec::new();
    let mut prev: Option<&Entry> = None;
    for e in entries {
        let (expected_seq, expected_prev) = match prev {
            None => (1, ZERO_HASH),
            Some(p) => (p.seq + 1, p.entry_hash.as_str()),
        };
        if e.seq != expected_seq {
            let problem = if e.seq > expected_seq {
                if e.seq - expected_seq == 1 {
                    format!("entry {expected_seq} is missing (removed)")
                } else {
                    format!("entries {expected_seq} to {} are missing (removed)", e.seq - 1)
                }
            } else {
                format!("entry numbered {} where {expected_seq} was expected", e.seq)
            };
            breaks.push(Break { seq: e.seq, problem });
        } else if e.prev_hash != expected_prev {
            breaks.push(Break {
                seq: e.seq,
                problem: "chain broken: prev_hash does not match the entry before".into(),
            });
        }
        if e.computed_hash() != e.entry_hash {
            breaks.push(Break {
                seq: e.seq,
                problem: "edited: the entry's hash does not match its content".into(),
            });
        }
        prev = Some(e);
    }
    breaks.truncate(MAX_BREAKS);
    Verification {
        ok: breaks.is_empty(),
        entries: entries.len(),
        head: entries.last().map(|e| Head {
            seq: e.seq,
            entry_hash: e.entry_hash.clone(),
        }),
        breaks,
    }
}

/// The entries as CSV (RFC 4180), with a header line and an RFC 3339 `time` column.
///
/// A text field that a spreadsheet would run as a formula (it begins with `=`, `+`, `-`, `@`, a tab
/// or a carriage return: an actor name or a room chosen by a caller) gets a leading `'` (OWASP's
/// advice against CSV injection); strip it to recompute an entry's hash from the CSV.
pub fn csv(entries: &[Entry]) -> String {
    fn field(s: &str) -> String {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_owned()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    }
    let mut out = String::from("seq,at,time,actor,role,action,target,client,outcome,detail,prev_hash,entry_hash\r\n");
    for e in entries {
        let cells = [
            e.seq.to_string(),
            e.at.to_string(),
            crate::export::rfc3339(e.at),
            field(&e.actor),
            field(&e.role),
            field(&e.action),
            field(&e.target),
            field(&e.client),
            field(&e.outcome),
            field(&e.detail),
            e.prev_hash.clone(),
            e.entry_hash.clone(),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Refusals (403s) one identity may write to the trail one by one per window; the rest are counted.
pub const REFUSALS_PER_WINDOW: u32 = 10;
/// Length of a refusal window, in milliseconds.
pub const REFUSAL_WINDOW_MS: i64 = 60_000;
/// Identities whose refusals are tracked at once; beyond this, each refusal is written as it is.
const MAX_TRACKED: usize = 10_000;

/// Keeps one caller's refusals from flooding the append-only trail: per identity (actor and role),
/// the first [`REFUSALS_PER_WINDOW`] of each window are written as they come, the rest only counted,
/// and the count is written as one `refused.aggregate` entry when the window has closed — so the
/// trail still says that, how often and what was refused. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub struct Refusals {
    windows: std::collections::HashMap<(String, String), Window>,
}

#[derive(Debug)]
struct Window {
    start: i64,
    written: u32,
    /// The refusals counted but not written: how many, the last one (actor, client) and per action.
    suppressed: u64,
    last: Option<Event>,
    actions: std::collections::BTreeMap<String, u64>,
}

impl Refusals {
    /// Whether `event` (a refusal at `event.at`) is written now; if not, it is counted.
    pub fn admit(&mut self, event: &Event) -> bool {
        let key = (event.actor.clone(), event.role.clone());
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_TRACKED {
            return true;
        }
        let window = self.windows.entry(key).or_insert_with(|| Window::new(event.at));
        if event.at - window.start >= REFUSAL_WINDOW_MS && window.suppressed == 0 {
            *window = Window::new(event.at);
        }
        if window.written < REFUSALS_PER_WINDOW && window.suppressed == 0 {
            window.written += 1;
            return true;
        }
        window.suppressed += 1;
        *window.actions.entry(event.action.clone()).or_default() += 1;
        window.last = Some(event.clone());
        false
    }

    /// Aggregate entries for windows that closed before `now` (all of them with `all`), to append.
    pub fn due(&mut self, now: i64, all: bool) -> Vec<Event> {
        let mut out = Vec::new();
        self.windows.retain(|_, w| {
            let closed = now - w.start >= REFUSAL_WINDOW_MS;
            if w.suppressed > 0 && (closed || all) {
                out.push(w.aggregate(now));
                *w = Window::new(now);
                // Keep the window: the identity's next refusals start from a fresh budget.
                return true;
            }
            !closed
        });
        out.sort_by(|a, b| (a.actor.as_str(), a.role.as_str()).cmp(&(b.actor.as_str(), b.role.as_str())));
        out
    }
}

impl Window {
    fn new(start: i64) -> Self {
        Self {
            start,
            written: 0,
            suppressed: 0,
            last: None,
            actions: Default::default(),
        }
    }

    fn aggregate(&self, now: i64) -> Event {
        let last = self.last.clone().unwrap_or_default();
        let detail = json!({ "count": self.suppressed, "from": self.start, "to": last.at, "actions": self.actions });
        Event {
            at: now,
            actor: last.actor,
            role: last.role,
            action: "refused.aggregate".into(),
            target: String::new(),
            client: last.client,
            outcome: "denied".into(),
            detail: canonical_json(&detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(actor: &str, at: i64) -> Event {
        Event {
            at,
            actor: actor.into(),
            role: "participant".into(),
            action: "audit.read".into(),
            outcome: "denied".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_flood_of_refusals_is_written_as_a_count() {
        let mut r = Refusals::default();
        let written = (0..1500).filter(|i| r.admit(&refusal("mallory", 1_000 + i))).count();
        assert_eq!(
            written, REFUSALS_PER_WINDOW as usize,
            "the first refusals are written one by one"
        );
        assert!(r.admit(&refusal("anna", 1_500)), "another identity has its own budget");
        assert!(r.due(30_000, false).is_empty(), "the window is still open");
        let aggregates = r.due(1_000 + REFUSAL_WINDOW_MS, false);
        assert_eq!(aggregates.len(), 1);
        let detail: serde_json::Value = serde_json::from_str(&aggregates[0].detail).unwrap();
        assert_eq!(
            (aggregates[0].actor.as_str(), aggregates[0].action.as_str()),
            ("mallory", "refused.aggregate")
        );
        assert_eq!(detail["count"], 1490, "no refusal is lost: {detail}");
        assert_eq!(detail["actions"]["audit.read"], 1490);
        assert!(r.admit(&refusal("mallory", 200_000)), "a new window, a new budget");
        // A reader of the trail may ask for the open windows too.
        for i in 0..20 {
            r.admit(&refusal("mallory", 200_001 + i));
        }
        assert_eq!(r.due(200_100, true).len(), 1);
        assert!(r.due(200_200, true).is_empty(), "written once");
    }

    #[test]
    fn csv_neutralises_formulas() {
        let mut t = trail(1);
        t[0].actor = "=HYPERLINK(\"http://evil.example\",\"x\")".into();
        t[0].target = "@SUM(1)".into();
        let csv = csv(&t);
        assert!(
            csv.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\","),
            "{csv}"
        );
        assert!(csv.contains(",'@SUM(1),"), "{csv}");
        assert!(
            !csv.lines()
                .any(|l| l.split(',').any(|c| c.starts_with(['=', '+', '@']))),
            "{csv}"
        );
    }

    fn trail(n: i64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let event = Event {
                at: 1_000 + i,
                actor: "anna".into(),
                role: "compliance".into(),
                action: "transcript.read".into(),
                target: format!("m{i}"),
                client: "127.0.0.1".into(),
                outcome: "ok".into(),
                detail: String::new(),
            };
            let (seq, hash) = out
                .last()
                .map(|e| (e.seq, e.entry_hash.clone()))
                .unwrap_or((0, ZERO_HASH.into()));
            out.push(Entry::chain(event, seq, &hash));
        }
        out
    }

    #[test]
    fn hash_form_is_fixed() {
        let e = &trail(1)[0];
        let expected = sha256_hex(
            format!(
                "{ZERO_HASH}\n[1,1000,\"anna\",\"compliance\",\"transcript.read\",\"m0\",\"127.0.0.1\",\"ok\",\"\"]"
            )
            .as_bytes(),
        );
        assert_eq!(e.entry_hash, expected);
    }

    #[test]
    fn intact_edited_and_removed() {
        let t = trail(5);
        let v = verify(&t);
        assert!(v.ok && v.entries == 5 && v.head.as_ref().unwrap().seq == 5, "{v:?}");

        let mut edited = t.clone();
        edited[2].actor = "mallory".into();
        let v = verify(&edited);
        assert_eq!(
            v.breaks,
            [Break {
                seq: 3,
                problem: "edited: the entry's hash does not match its content".into()
            }]
        );

        let mut removed = t.clone();
        removed.remove(1);
        let v = verify(&removed);
        assert_eq!(v.breaks.len(), 1, "{v:?}");
        assert_eq!(
            (v.breaks[0].seq, v.breaks[0].problem.as_str()),
            (3, "entry 2 is missing (removed)")
        );

        let mut first_removed = t.clone();
        first_removed.remove(0);
        assert_eq!(verify(&first_removed).breaks[0].problem, "entry 1 is missing (removed)");
    }

    #[test]
    fn csv_quotes_fields() {
        let mut t = trail(1);
        t[0].detail = "{\"q\":\"a, b\"}".into();
        let csv = csv(&t);
        assert!(csv.starts_with("seq,at,time,actor,"));
        assert!(
            csv.contains(
                ",1970-01-01T00:00:01Z,anna,compliance,transcript.read,m0,127.0.0.1,ok,\"{\"\"q\"\":\"\"a, b\"\"}\","
            ),
            "{csv}"
        );
    }
}
