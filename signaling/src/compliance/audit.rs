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
        let fields = json!([self.seq, self.at, self.actor, self.role, self.action, self.target, self.client, self.outcome, self.detail]);
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
            breaks.push(Break { seq: e.seq, problem: "chain broken: prev_hash does not match the entry before".into() });
        }
        if e.computed_hash() != e.entry_hash {
            breaks.push(Break { seq: e.seq, problem: "edited: the entry's hash does not match its content".into() });
        }
        prev = Some(e);
    }
    breaks.truncate(MAX_BREAKS);
    Verification {
        ok: breaks.is_empty(),
        entries: entries.len(),
        head: entries.last().map(|e| Head { seq: e.seq, entry_hash: e.entry_hash.clone() }),
        breaks,
    }
}

/// The entries as CSV (RFC 4180), with a header line and an RFC 3339 `time` column.
pub fn csv(entries: &[Entry]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let (seq, hash) = out.last().map(|e| (e.seq, e.entry_hash.clone())).unwrap_or((0, ZERO_HASH.into()));
            out.push(Entry::chain(event, seq, &hash));
        }
        out
    }

    #[test]
    fn hash_form_is_fixed() {
        let e = &trail(1)[0];
        let expected = sha256_hex(
            format!("{ZERO_HASH}\n[1,1000,\"anna\",\"compliance\",\"transcript.read\",\"m0\",\"127.0.0.1\",\"ok\",\"\"]").as_bytes(),
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
        assert_eq!(v.breaks, [Break { seq: 3, problem: "edited: the entry's hash does not match its content".into() }]);

        let mut removed = t.clone();
        removed.remove(1);
        let v = verify(&removed);
        assert_eq!(v.breaks.len(), 1, "{v:?}");
        assert_eq!((v.breaks[0].seq, v.breaks[0].problem.as_str()), (3, "entry 2 is missing (removed)"));

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
            csv.contains(",1970-01-01T00:00:01Z,anna,compliance,transcript.read,m0,127.0.0.1,ok,\"{\"\"q\"\":\"\"a, b\"\"}\","),
            "{csv}"
        );
    }
}
