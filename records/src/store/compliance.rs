//! The store's side of compliance: sealing and reading transcript hash chains, legal holds,
//! deleting meetings, the audit trail and full-text search. Formats and checks are in
//! `crate::compliance`; here is only SQL, the same semantics on both backends.

use super::*;
use crate::compliance::search::Query;
use crate::compliance::{audit, integrity};
use std::collections::HashMap;

/// A meeting's legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LegalHold {
    /// When it was put on (ms since the epoch).
    pub since: i64,
    pub reason: String,
    /// Who put it on (the audit actor).
    pub set_by: String,
}

/// What [`Store::delete_meeting`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion {
    /// Deleted, with its participants and segments; the meeting as it was.
    Deleted(Meeting),
    NotFound,
    /// Under legal hold: kept.
    Held,
    /// Still running: kept.
    Running,
}

/// Which audit entries [`Store::audit_entries`] returns (oldest first); every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after (ms since the epoch).
    pub from: Option<i64>,
    /// Before (ms since the epoch).
    pub to: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Only entries with a greater `seq`.
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// One search hit: the meeting and the matching segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub meeting: Meeting,
    pub segment: TranscriptSegment,
}

#[derive(sqlx::FromRow)]
struct SearchRow {
    id: String,
    room: String,
    started_at: i64,
    ended_at: Option<i64>,
    language: Option<String>,
    matrix_room: Option<String>,
    transcript_digest: Option<String>,
    prompt: Option<String>,
    utterance_id: String,
    participant_id: String,
    speaker_name: String,
    start_ms: i64,
    end_ms: i64,
    text: String,
    segment_language: Option<String>,
    confidence: Option<f32>,
}

#[derive(sqlx::FromRow)]
struct LinkedSegment {
    #[sqlx(flatten)]
    segment: TranscriptSegment,
    chain_link: Option<String>,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    meeting_id: String,
    #[sqlx(flatten)]
    hold: LegalHold,
}

const AUDIT_COLUMNS: &str = "seq, at, actor, role, action, target, client, outcome, detail, prev_hash, entry_hash";
/// Serialises audit appends across the PostgreSQL nodes of one deployment (any constant will do).
const AUDIT_LOCK_KEY: i64 = 0x5341_4d54_414c;

impl Store {
    /// The meeting's segments in transcript order, each with its stored chain link.
    pub async fn segments_with_links(&self, meeting_id: &str) -> Result<Vec<(TranscriptSegment, Option<String>)>> {
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, LinkedSegment>(
                "SELECT utterance_id, participant_id, speaker_name, start_ms, end_ms, text, language, confidence, chain_link \
                 FROM segments WHERE meeting_id = $1 ORDER BY start_ms, end_ms, utterance_id",
            )
            .bind(meeting_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|r| (r.segment, r.chain_link)).collect())
    }

    /// Seals the meeting's transcript: stores each segment's chain link and the digest. Returns the
    /// digest, or `None` if there is no such meeting.
    pub async fn seal(&self, meeting_id: &str) -> Result<Option<String>> {
        let _guard = self.write_lock.lock().await;
        let Some(meeting) = self.meeting(meeting_id).await? else {
            return Ok(None);
        };
        let segments: Vec<TranscriptSegment> = self
            .segments_with_links(meeting_id)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let links = integrity::links(&meeting, &segments);
        let digest = integrity::digest(&meeting, &segments);
        with_pool!(self, pool, _DB => {
            let mut tx = pool.begin().await?;
            for (segment, link) in segments.iter().zip(&links) {
                sqlx::query("UPDATE segments SET chain_link = $1 WHERE meeting_id = $2 AND utterance_id = $3")
                    .bind(link)
                    .bind(meeting_id)
                    .bind(&segment.utterance_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE meetings SET transcript_digest = $1 WHERE id = $2").bind(&digest).bind(meeting_id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        tracing::info!(meeting = %meeting_id, segments = segments.len(), %digest, "transcript sealed");
        Ok(Some(digest))
    }

    /// Recomputes the meeting's chain and compares it with what was sealed; `None`: no such meeting.
    pub async fn verify_meeting(&self, meeting_id: &str) -> Result<Option<integrity::Verification>> {
        let Some(meeting) = self.meeting(meeting_id).await? else {
            return Ok(None);
        };
        let segments = self.segments_with_links(meeting_id).await?;
        Ok(Some(integrity::verify(&meeting, &segments)))
    }

    /// The meeting's legal hold, if it is under one.
    pub async fn legal_hold(&self, meeting_id: &str) -> Result<Option<LegalHold>> {
        let row = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, LegalHold>("SELECT since, reason, set_by FROM legal_holds WHERE meeting_id = $1")
                .bind(meeting_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Every legal hold, by meeting id.
    pub async fn legal_holds(&self) -> Result<HashMap<String, LegalHold>> {
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, HoldRow>("SELECT meeting_id, since, reason, set_by FROM legal_holds").fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|r| (r.meeting_id, r.hold)).collect())
    }

    /// Puts the meeting under legal hold (`Some`; a hold already on keeps its first time, reason and
    /// actor) or takes it off (`None`). Returns false if there is no such meeting.
    pub async fn set_legal_hold(&self, meeting_id: &str, hold: Option<&LegalHold>) -> Result<bool> {
        if self.meeting(meeting_id).await?.is_none() {
            return Ok(false);
        }
        with_pool!(self, pool, _DB => {
            match hold {
                Some(h) => {
                    sqlx::query(
                        "INSERT INTO legal_holds (meeting_id, since, reason, set_by) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (meeting_id) DO NOTHING",
                    )
                    .bind(meeting_id)
                    .bind(h.since)
                    .bind(&h.reason)
                    .bind(&h.set_by)
                    .execute(pool)
                    .await
                    .map_err(on_meeting(meeting_id))?;
                }
                None => {
                    sqlx::query("DELETE FROM legal_holds WHERE meeting_id = $1").bind(meeting_id).execute(pool).await?;
                }
            }
        });
        Ok(true)
    }

    /// Deletes an ended meeting that is not under legal hold, with its participants and segments.
    pub async fn delete_meeting(&self, meeting_id: &str) -> Result<Deletion> {
        let Some(meeting) = self.meeting(meeting_id).await? else {
            return Ok(Deletion::NotFound);
        };
        // One statement, so a hold put on meanwhile still wins.
        let deleted = with_pool!(self, pool, _DB => {
            sqlx::query(
                "DELETE FROM meetings WHERE id = $1 AND ended_at IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.meeting_id = $1)",
            )
            .bind(meeting_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if deleted == 1 {
            return Ok(Deletion::Deleted(meeting));
        }
        Ok(match self.meeting(meeting_id).await? {
            None => Deletion::NotFound,
            Some(m) if m.ended_at.is_none() => Deletion::Running,
            Some(_) => Deletion::Held,
        })
    }

    /// Ended meetings that ended before `ended_before` (ms since the epoch) and are not under legal
    /// hold, oldest first: the candidates of a retention purge.
    pub async fn expired_meetings(&self, ended_before: i64) -> Result<Vec<Meeting>> {
        let sql = format!(
            "SELECT {MEETING_COLUMNS} FROM meetings m WHERE m.ended_at IS NOT NULL AND m.ended_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.meeting_id = m.id) ORDER BY m.ended_at, m.id"
        );
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, Meeting>(AssertSqlSafe(sql.clone())).bind(ended_before).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Appends `event` to the audit trail, numbered and chained after the newest entry.
    pub async fn append_audit(&self, event: audit::Event) -> Result<audit::Entry> {
        let _guard = self.write_lock.lock().await;
        let last_sql = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1";
        let insert_sql =
            format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
        macro_rules! insert {
            ($entry:expr, $executor:expr) => {
                sqlx::query(AssertSqlSafe(insert_sql.clone()))
                    .bind($entry.seq)
                    .bind($entry.at)
                    .bind(&$entry.actor)
                    .bind(&$entry.role)
                    .bind(&$entry.action)
                    .bind(&$entry.target)
                    .bind(&$entry.client)
                    .bind(&$entry.outcome)
                    .bind(&$entry.detail)
                    .bind(&$entry.prev_hash)
                    .bind(&$entry.entry_hash)
                    .execute($executor)
                    .await?
            };
        }
        let entry = match &self.pool {
            // One server process writes a SQLite file; the lock above orders its appends. No
            // read-then-write transaction: in WAL mode it could fail when another write came between.
            Pool::Sqlite(pool) => {
                let last: Option<(i64, String)> = sqlx::query_as(last_sql).fetch_optional(pool).await?;
                let (seq, hash) = last.unwrap_or((0, audit::ZERO_HASH.to_owned()));
                let entry = audit::Entry::chain(event, seq, &hash);
                insert!(entry, pool);
                entry
            }
            // Several nodes may share PostgreSQL: a transaction-scoped advisory lock orders them.
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(AUDIT_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                let last: Option<(i64, String)> = sqlx::query_as(last_sql).fetch_optional(&mut *tx).await?;
                let (seq, hash) = last.unwrap_or((0, audit::ZERO_HASH.to_owned()));
                let entry = audit::Entry::chain(event, seq, &hash);
                insert!(entry, &mut *tx);
                tx.commit().await?;
                entry
            }
        };
        Ok(entry)
    }

    /// Appends a refusal (a 403) to the audit trail, unless its identity has had its share of
    /// refusals this window: then it is counted and written later as part of one aggregate entry.
    /// Returns whether it was written now.
    pub async fn append_refusal(&self, event: audit::Event) -> Result<bool> {
        let now = event.at;
        let (admitted, due) = {
            let mut refusals = self.refusals.lock().expect("refusals lock");
            let due = refusals.due(now, false);
            (refusals.admit(&event), due)
        };
        for aggregate in due {
            self.append_audit(aggregate).await?;
        }
        if admitted {
            self.append_audit(event).await?;
        }
        Ok(admitted)
    }

    /// Writes the counts of refusals not yet written (all of them with `all`, as before the trail is
    /// read, so a reader sees every refusal accounted for).
    pub async fn flush_refusals(&self, all: bool) -> Result<()> {
        let due = self.refusals.lock().expect("refusals lock").due(super::now_ms(), all);
        for aggregate in due {
            self.append_audit(aggregate).await?;
        }
        Ok(())
    }

    /// Audit entries matching `filter`, oldest first (by `seq`).
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<audit::Entry>> {
        self.flush_refusals(true).await?;
        let rows = with_pool!(self, pool, DB => {
            let mut q = QueryBuilder::<DB>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
            if let Some(from) = filter.from {
                q.push(" AND at >= ").push_bind(from);
            }
            if let Some(to) = filter.to {
                q.push(" AND at < ").push_bind(to);
            }
            if let Some(actor) = &filter.actor {
                q.push(" AND actor = ").push_bind(actor.clone());
            }
            if let Some(action) = &filter.action {
                q.push(" AND action = ").push_bind(action.clone());
            }
            if let Some(target) = &filter.target {
                q.push(" AND target = ").push_bind(target.clone());
            }
            if let Some(after) = filter.after {
                q.push(" AND seq > ").push_bind(after);
            }
            q.push(" ORDER BY seq");
            if let Some(limit) = filter.limit {
                q.push(" LIMIT ").push_bind(i64::from(limit));
            }
            q.build_query_as::<audit::Entry>().fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// The newest audit entry's number and hash.
    pub async fn audit_head(&self) -> Result<Option<audit::Head>> {
        let row: Option<(i64, String)> = with_pool!(self, pool, _DB => {
            sqlx::query_as("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(pool).await?
        });
        Ok(row.map(|(seq, entry_hash)| audit::Head { seq, entry_hash }))
    }

    /// Checks the whole audit trail.
    pub async fn verify_audit(&self) -> Result<audit::Verification> {
        self.flush_refusals(true).await?;
        Ok(audit::verify(&self.audit_entries(&AuditFilter::default()).await?))
    }

    /// Segments matching `query` in meetings matching `filter` (its `limit` counts hits), ordered by
    /// meeting (newest first) and then in transcript order.
    pub async fn search(&self, query: &Query, filter: &MeetingFilter) -> Result<Vec<SearchHit>> {
        const COLUMNS: &str = "m.id, m.room, m.started_at, m.ended_at, m.language, m.matrix_room, m.transcript_digest, m.prompt, \
             s.utterance_id, s.participant_id, s.speaker_name, s.start_ms, s.end_ms, s.text, s.language AS segment_language, s.confidence";
        const ORDER: &str = " ORDER BY m.started_at DESC, m.id DESC, s.start_ms, s.end_ms, s.utterance_id";
        let rows = match &self.pool {
            Pool::Sqlite(pool) => {
                let mut q = QueryBuilder::<Sqlite>::new(format!(
                    "SELECT {COLUMNS} FROM segments_fts f \
                     JOIN segment_search_keys k ON k.id = f.rowid \
                     JOIN segments s ON s.meeting_id = k.meeting_id AND s.utterance_id = k.utterance_id \
                     JOIN meetings m ON m.id = s.meeting_id WHERE segments_fts MATCH "
                ));
                q.push_bind(query.fts5());
                push_meeting_filter!(q, filter);
                q.push(ORDER);
                if let Some(limit) = filter.limit {
                    q.push(" LIMIT ").push_bind(i64::from(limit));
                }
                q.build_query_as::<SearchRow>().fetch_all(pool).await?
            }
            Pool::Postgres(pool) => {
                // The same expression as the segments_search index, so the index serves it.
                let mut q = QueryBuilder::<Postgres>::new(format!(
                    "SELECT {COLUMNS} FROM segments s JOIN meetings m ON m.id = s.meeting_id \
                     WHERE to_tsvector('simple', regexp_replace(s.text, '[^[:alnum:]]+', ' ', 'g')) @@ to_tsquery('simple', "
                ));
                q.push_bind(query.tsquery()).push(")");
                push_meeting_filter!(q, filter);
                q.push(ORDER);
                if let Some(limit) = filter.limit {
                    q.push(" LIMIT ").push_bind(i64::from(limit));
                }
                q.build_query_as::<SearchRow>().fetch_all(pool).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| SearchHit {
                meeting: Meeting {
                    id: r.id,
                    room: r.room,
                    started_at: r.started_at,
                    ended_at: r.ended_at,
                    language: r.language,
                    matrix_room: r.matrix_room,
                    transcript_digest: r.transcript_digest,
                    prompt: r.prompt,
                },
                segment: TranscriptSegment {
                    utterance_id: r.utterance_id,
                    participant_id: r.participant_id,
                    speaker_name: r.speaker_name,
                    start_ms: r.start_ms,
                    end_ms: r.end_ms,
                    text: r.text,
                    language: r.segment_language,
                    confidence: r.confidence,
                },
            })
            .collect())
    }
}
