//! Transcript integrity: a SHA-256 hash chain over a meeting's segments in transcript order.
//!
//! ```text
//! link[-1] = SHA-256(JSON(["samtal-transcript-v1", meeting.id, meeting.room, meeting.started_at]))
//! link[i]  = SHA-256(hex(link[i-1]) + "\n" + JSON([utterance_id, participant_id, speaker_name,
//!                                                   start_ms, end_ms, text, language]))
//! digest   = "sha256:" + hex(last link)
//! ```
//!
//! When a meeting is sealed each segment's link is stored with it; [`verify`] recomputes every link
//! and names each segment whose stored link no longer follows from the one before it and its own
//! content, so it says *where* a transcript was changed. Pure code: the store reads and writes.

use super::{canonical_json, sha256_hex};
use crate::store::{Meeting, TranscriptSegment};
use serde::Serialize;
use serde_json::json;

/// Name of the chain format, hashed into the first link.
pub const VERSION: &str = "samtal-transcript-v1";
/// Most breaks [`verify`] lists.
pub const MAX_BREAKS: usize = 100;

/// The link before the first segment: binds the chain to its meeting.
pub fn genesis(meeting: &Meeting) -> String {
    sha256_hex(canonical_json(&json!([VERSION, meeting.id, meeting.room, meeting.started_at])).as_bytes())
}

/// The link of `segment` after `prev`.
pub fn link(prev: &str, s: &TranscriptSegment) -> String {
    let fields = json!([
        s.utterance_id,
        s.participant_id,
        s.speaker_name,
        s.start_ms,
        s.end_ms,
        s.text,
        s.language
    ]);
    let mut bytes = Vec::with_capacity(prev.len() + 1 + s.text.len() + 128);
    bytes.extend_from_slice(prev.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(canonical_json(&fields).as_bytes());
    sha256_hex(&bytes)
}

/// Every segment's link, in the order given (which must be transcript order).
pub fn links(meeting: &Meeting, segments: &[TranscriptSegment]) -> Vec<String> {
    let mut prev = genesis(meeting);
    segments
        .iter()
        .map(|s| {
            prev = link(&prev, s);
            prev.clone()
        })
        .collect()
}

/// `sha256:<hex>` of the last link (of the genesis link when there are no segments).
pub fn digest(meeting: &Meeting, segments: &[TranscriptSegment]) -> String {
    format_digest(
        links(meeting, segments)
            .last()
            .cloned()
            .unwrap_or_else(|| genesis(meeting)),
    )
}

fn format_digest(hex: String) -> String {
    format!("sha256:{hex}")
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// Position of the segment in transcript order; `None`: the transcript as a whole.
    pub index: Option<usize>,
    pub utterance_id: Option<String>,
    pub start_ms: Option<i64>,
    pub problem: String,
}

/// The result of checking a meeting's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub meeting_id: String,
    /// Whether the meeting has been sealed (has a stored digest).
    pub sealed: bool,
    pub ok: bool,
    pub segments: usize,
    pub stored_digest: Option<String>,
    pub computed_digest: String,
    pub breaks: Vec<Break>,
}

/// Checks `segments` (transcript order, each with its stored link) against the meeting's stored digest.
///
/// For segment `i` the expected link is computed from the *stored* link of segment `i-1`, so a
/// changed segment breaks at itself only, and a removed segment breaks at the one after it.
pub fn verify(meeting: &Meeting, segments: &[(TranscriptSegment, Option<String>)]) -> Verification {
    let plain: Vec<TranscriptSegment> = segments.iter().map(|(s, _)| s.clone()).collect();
    let computed_digest = digest(meeting, &plain);
    let stored_digest = meeting.transcript_digest.clone();
    let mut breaks = Vec::new();
    if stored_digest.is_some() {
        let mut prev = genesis(meeting);
        for (index, (segment, stored)) in segments.iter().enumerate() {
            let expected = link(&prev, segment);
            let problem = match stored {
                None => Some("segment is not in the sealed chain: it was added after the transcript was sealed"),
                Some(stored) if *stored != expected => Some(
                    "segment does not match its sealed link: it was changed, or a segment just before it was removed",
                ),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                breaks.push(Break {
                    index: Some(index),
                    utterance_id: Some(segment.utterance_id.clone()),
                    start_ms: Some(segment.start_ms),
                    problem: problem.into(),
                });
            }
            // Go on from what was stored, so each break is reported where it is.
            prev = stored.clone().unwrap_or(expected);
        }
        let last = format_digest(prev);
        if stored_digest.as_deref() != Some(last.as_str()) {
            breaks.push(Break {
                index: None,
                utterance_id: None,
                start_ms: None,
                problem: if segments.is_empty() {
                    "the stored digest does not match the meeting: its segments were removed, or the meeting or digest was edited".into()
                } else {
                    "the stored digest does not match the last segment's link: segments at the end were removed, or the digest was edited"
                        .into()
                },
            });
        }
        breaks.truncate(MAX_BREAKS);
    }
    Verification {
        meeting_id: meeting.id.clone(),
        sealed: stored_digest.is_some(),
        ok: breaks.is_empty(),
        segments: segments.len(),
        stored_digest,
        computed_digest,
        breaks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting() -> Meeting {
        Meeting {
            id: "m1".into(),
            room: "möte".into(),
            started_at: 1_000,
            ended_at: Some(9_000),
            language: None,
            matrix_room: None,
            transcript_digest: None,
            prompt: None,
        }
    }

    fn seg(id: &str, start: i64, text: &str) -> TranscriptSegment {
        TranscriptSegment {
            utterance_id: id.into(),
            participant_id: "p1".into(),
            speaker_name: "Åsa".into(),
            start_ms: start,
            end_ms: start + 500,
            text: text.into(),
            language: Some("sv".into()),
            confidence: Some(0.5),
        }
    }

    fn sealed(segments: &[TranscriptSegment]) -> (Meeting, Vec<(TranscriptSegment, Option<String>)>) {
        let mut m = meeting();
        let links = links(&m, segments);
        m.transcript_digest = Some(format!(
            "sha256:{}",
            links.last().cloned().unwrap_or_else(|| genesis(&m))
        ));
        (m, segments.iter().cloned().zip(links.into_iter().map(Some)).collect())
    }

    #[test]
    fn canonical_form_is_fixed() {
        // Pinned: a change here breaks every stored chain and the documented Python check.
        let m = meeting();
        assert_eq!(
            genesis(&m),
            sha256_hex("[\"samtal-transcript-v1\",\"m1\",\"möte\",1000]".as_bytes())
        );
        let s = seg("u1", 1_100, "Hej \"alla\"");
        let expected = sha256_hex(
            format!(
                "{}\n[\"u1\",\"p1\",\"Åsa\",1100,1600,\"Hej \\\"alla\\\"\",\"sv\"]",
                genesis(&m)
            )
            .as_bytes(),
        );
        assert_eq!(link(&genesis(&m), &s), expected);
        assert_eq!(digest(&m, &[s]), format!("sha256:{expected}"));
        assert_eq!(digest(&m, &[]), format!("sha256:{}", genesis(&m)));
    }

    #[test]
    fn an_intact_chain_verifies_and_an_open_meeting_is_not_sealed() {
        let segs = [seg("u1", 1_100, "ett"), seg("u2", 2_000, "två")];
        let (m, stored) = sealed(&segs);
        let v = verify(&m, &stored);
        assert!(v.ok && v.sealed, "{v:?}");
        assert_eq!(Some(v.computed_digest), v.stored_digest);
        let open = verify(&meeting(), &segs.iter().cloned().map(|s| (s, None)).collect::<Vec<_>>());
        assert!(open.ok && !open.sealed);
    }

    #[test]
    fn a_changed_segment_breaks_at_itself_and_a_removed_one_at_the_next() {
        let segs = [
            seg("u1", 1_100, "ett"),
            seg("u2", 2_000, "två"),
            seg("u3", 3_000, "tre"),
        ];
        let (m, stored) = sealed(&segs);
        let mut changed = stored.clone();
        changed[1].0.text = "TVÅ".into();
        let v = verify(&m, &changed);
        assert!(!v.ok);
        assert_eq!(v.breaks.iter().map(|b| b.index).collect::<Vec<_>>(), [Some(1)]);
        assert_eq!(v.breaks[0].utterance_id.as_deref(), Some("u2"));

        let mut removed = stored.clone();
        removed.remove(1);
        let v = verify(&m, &removed);
        assert_eq!(
            v.breaks.iter().map(|b| b.utterance_id.as_deref()).collect::<Vec<_>>(),
            [Some("u3")]
        );

        let mut last_removed = stored.clone();
        last_removed.pop();
        let v = verify(&m, &last_removed);
        assert_eq!(v.breaks.iter().map(|b| b.index).collect::<Vec<_>>(), [None]);

        let mut moved = m.clone();
        moved.room = "annat".into();
        assert_eq!(verify(&moved, &stored).breaks[0].index, Some(0));
    }
}
