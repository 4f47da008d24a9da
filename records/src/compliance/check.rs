//! `samtal verify`: checks the store's transcript chains and audit trail, or an exported file
//! against the store, and prints where something was altered. Reads only (opening the store
//! applies pending migrations, as the server would).

use super::integrity;
use crate::error::{Error, Result};
use crate::export::{self, Format};
use crate::store::{MeetingFilter, Store, Transcript};
use std::io::Write;
use std::path::Path;

/// Runs the checks and writes a report to `out`; `Ok(false)` when anything was altered.
/// With `export`: that file against the store (`meeting`/`digest` name an SRT file's meeting).
/// Otherwise `meeting`, or every meeting and the audit trail.
pub async fn run(
    url: &str,
    meeting: Option<&str>,
    export: Option<&Path>,
    digest: Option<&str>,
    out: &mut dyn Write,
) -> Result<bool> {
    let store = Store::connect(url).await?;
    let ok = match export {
        Some(path) => check_export(&store, path, meeting, digest, out).await?,
        None => check_store(&store, meeting, out).await?,
    };
    store.close().await;
    Ok(ok)
}

async fn check_store(store: &Store, meeting: Option<&str>, out: &mut dyn Write) -> Result<bool> {
    let ids: Vec<String> = match meeting {
        Some(id) => vec![id.to_owned()],
        None => store
            .meetings(&MeetingFilter::default())
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect(),
    };
    let mut ok = true;
    for id in &ids {
        let Some(v) = store.verify_meeting(id).await? else {
            writeln!(out, "meeting {id}: no such meeting")?;
            ok = false;
            continue;
        };
        if !v.sealed {
            writeln!(
                out,
                "meeting {id}: running, not sealed yet ({} segments, digest so far {})",
                v.segments, v.computed_digest
            )?;
        } else if v.ok {
            writeln!(out, "meeting {id}: ok ({} segments, {})", v.segments, v.computed_digest)?;
        } else {
            ok = false;
            writeln!(out, "meeting {id}: ALTERED")?;
            for b in &v.breaks {
                match (b.index, &b.utterance_id, b.start_ms) {
                    (Some(i), Some(u), Some(start)) => writeln!(
                        out,
                        "  segment {} (utterance {u}, {}): {}",
                        i + 1,
                        export::rfc3339(start),
                        b.problem
                    )?,
                    _ => writeln!(out, "  transcript: {}", b.problem)?,
                }
            }
        }
    }
    if meeting.is_none() {
        let audit = store.verify_audit().await?;
        let head = audit
            .head
            .as_ref()
            .map(|h| format!(", head {} {}", h.seq, h.entry_hash))
            .unwrap_or_default();
        if audit.ok {
            writeln!(out, "audit trail: ok ({} entries{head})", audit.entries)?;
        } else {
            ok = false;
            writeln!(out, "audit trail: ALTERED")?;
            for b in &audit.breaks {
                writeln!(out, "  entry {}: {}", b.seq, b.problem)?;
            }
        }
    }
    Ok(ok)
}

/// The meeting id and digest an exported file names.
fn named_in(text: &str, format: Format) -> Option<(String, Option<String>)> {
    match format {
        Format::Json => {
            let t: Transcript = serde_json::from_str(text).ok()?;
            Some((t.meeting.id, t.meeting.transcript_digest))
        }
        Format::WebVtt | Format::Text => {
            let id = text.lines().find_map(|l| {
                l.strip_prefix("Meeting ")?
                    .split_once(" in room ")
                    .map(|(id, _)| id.to_owned())
            })?;
            let digest = text
                .lines()
                .find_map(|l| l.strip_prefix("Transcript digest ").map(str::to_owned));
            Some((id, digest))
        }
        Format::Srt => None,
    }
}

async fn check_export(
    store: &Store,
    path: &Path,
    meeting: Option<&str>,
    digest: Option<&str>,
    out: &mut dyn Write,
) -> Result<bool> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => ext
            .parse::<Format>()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
        None => {
            return Err(Error::Config(format!(
                "{}: no file extension (.vtt, .srt, .txt, .json)",
                path.display()
            )));
        }
    };
    let (id, file_digest) = match (named_in(&text, format), meeting) {
        (_, Some(id)) => (
            id.to_owned(),
            digest
                .map(str::to_owned)
                .or_else(|| named_in(&text, format).and_then(|(_, d)| d)),
        ),
        (Some(named), None) => named,
        (None, None) => {
            return Err(Error::Config(format!(
                "{} names no meeting (an SRT file never does): give --meeting ID and --digest from its download",
                path.display()
            )));
        }
    };
    let name = path.display();
    let mut ok = true;
    if format == Format::Json {
        // The file checks itself: its chain recomputed from its own segments.
        match serde_json::from_str::<Transcript>(&text) {
            Ok(t) if Some(integrity::digest(&t.meeting, &t.segments)) == t.meeting.transcript_digest => {
                writeln!(out, "{name}: its segments give its digest")?
            }
            Ok(_) => {
                ok = false;
                writeln!(out, "{name}: ALTERED: its segments do not give the digest it names")?;
            }
            Err(e) => return Err(Error::Config(format!("{name} is not a transcript export: {e}"))),
        }
    }
    let Some(mut stored) = store.transcript(&id).await? else {
        writeln!(out, "{name}: meeting {id} is not in the store (deleted or purged?)")?;
        return Ok(false);
    };
    let v = store
        .verify_meeting(&id)
        .await?
        .ok_or_else(|| Error::UnknownMeeting(id.clone()))?;
    if !v.ok {
        ok = false;
        writeln!(
            out,
            "{name}: the stored transcript of meeting {id} is ALTERED; run samtal verify --meeting {id}"
        )?;
    }
    let stored_digest = stored
        .meeting
        .transcript_digest
        .clone()
        .unwrap_or_else(|| integrity::digest(&stored.meeting, &stored.segments));
    match &file_digest {
        Some(d) if *d == stored_digest => writeln!(out, "{name}: digest {d} matches meeting {id} in the store")?,
        Some(d) => {
            ok = false;
            writeln!(
                out,
                "{name}: ALTERED or of another version: digest {d}, the store has {stored_digest}"
            )?;
        }
        None => {
            ok = false;
            writeln!(out, "{name}: names no digest (for SRT give --digest)")?;
        }
    }
    // The file must be exactly what the store exports.
    stored.meeting.transcript_digest = Some(stored_digest);
    let expected = export::render(&stored, format);
    if expected != text {
        ok = false;
        let line = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(text.lines().count()));
        writeln!(
            out,
            "{name}: ALTERED: line {} differs from the store's export",
            line + 1
        )?;
    } else {
        writeln!(out, "{name}: content matches the store's export")?;
    }
    Ok(ok)
}
