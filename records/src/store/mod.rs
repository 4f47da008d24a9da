//! The transcript store: meetings, who took part, and the recognised segments, in SQLite or
//! PostgreSQL behind one API.
//!
//! [`Store::connect`] takes `sqlite://PATH` (the file and its folder are created if missing; WAL
//! journal, foreign keys on) or `postgres://…`/`postgresql://…`, and brings the schema up to date
//! with the migrations embedded from `migrations/sqlite` or `migrations/postgres`. Both backends
//! have the same tables and behave the same; the tests run every scenario against both.
//!
//! Times are wall-clock milliseconds since the Unix epoch (`i64`), like [`Segment`] times.
//! Segments are keyed by `(meeting, utterance_id)`: storing an utterance again (a worker that
//! restarts and resends) keeps the first copy and reports `false`.

use crate::error::{Error, Result};
use samtal_protocol::Segment;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
// Dynamic SQL here is built only from constant column lists; every value is a bind parameter.
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, QueryBuilder, Sqlite};
use std::str::FromStr;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// A meeting: one continuous use of a room, from start to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Meeting {
    pub id: String,
    pub room: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    /// Milliseconds since the Unix epoch; `None` while the meeting runs.
    pub ended_at: Option<i64>,
    /// Transcription language (e.g. `sv`), if one was chosen.
    pub language: Option<String>,
    /// Matrix room the transcript goes to (set later by the Matrix integration).
    pub matrix_room: Option<String>,
    /// Digest of the finished transcript (set later, when the transcript is sealed).
    pub transcript_digest: Option<String>,
    /// Vocabulary prompt the moderator gave for recognition, if any.
    pub prompt: Option<String>,
}

/// Someone who took part in a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Participant {
    pub participant_id: String,
    /// Display name when first seen.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub first_seen: i64,
    /// When the participant opted out of transcription (ms since the epoch): from then on their
    /// audio was not transcribed. `None`: they did not.
    pub opted_out_at: Option<i64>,
}

/// A stored final segment, with the speaker's display name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TranscriptSegment {
    pub utterance_id: String,
    pub participant_id: String,
    pub speaker_name: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    pub language: Option<String>,
    pub confidence: Option<f32>,
}

/// A meeting with its participants (by first seen) and segments (by start time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub meeting: Meeting,
    pub participants: Vec<Participant>,
    pub segments: Vec<TranscriptSegment>,
}

/// Which meetings [`Store::meetings`] returns; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingFilter {
    /// Exact room name.
    pub room: Option<String>,
    /// A participant id, or a display name compared case-insensitively (Unicode lowercase).
    pub participant: Option<String>,
    /// Meetings that started at or after this time (ms since the epoch).
    pub from: Option<i64>,
    /// Meetings that started before this time (ms since the epoch).
    pub to: Option<i64>,
    /// At most this many meetings (newest first); `None`: all.
    pub limit: Option<u32>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the transcript database; cheap to clone (a connection pool).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Orders this process's writes to the hash chains (audit appends, seals).
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Refusals counted but not yet written to the audit trail (see [`crate::compliance::audit::Refusals`]).
    refusals: std::sync::Arc<std::sync::Mutex<crate::compliance::audit::Refusals>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish()
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$db` to its database type. The body
/// is compiled once per backend, so one SQL text (with `$1`-style placeholders, which both accept)
/// serves both.
macro_rules! with_pool {
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = Sqlite;
                $body
            }
            Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = Postgres;
                $body
            }
        }
    };
}

/// Appends the conditions of a [`MeetingFilter`] (on meetings aliased `m`) to a query builder.
macro_rules! push_meeting_filter {
    ($q:ident, $filter:expr) => {
        if let Some(room) = &$filter.room {
            $q.push(" AND m.room = ").push_bind(room.clone());
        }
        if let Some(who) = &$filter.participant {
            $q.push(
                " AND EXISTS (SELECT 1 FROM meeting_participants p WHERE p.meeting_id = m.id AND (p.participant_id = ",
            )
            .push_bind(who.clone())
            .push(" OR p.name_key = ")
            .push_bind(name_key(who))
            .push("))");
        }
        if let Some(from) = $filter.from {
            $q.push(" AND m.started_at >= ").push_bind(from);
        }
        if let Some(to) = $filter.to {
            $q.push(" AND m.started_at < ").push_bind(to);
        }
    };
}

// Modules that add to `Store` come after `with_pool!`, which they use.
mod chat;
mod compliance;
mod lease;
mod outbox;
mod summaries;
#[cfg(test)]
mod tests;
mod webhooks;

pub use chat::StoredChat;
pub use compliance::{AuditFilter, Deletion, LegalHold, SearchHit};
pub use outbox::{Delivery, DeliveryKind};
pub use summaries::StoredSummary;
pub use webhooks::WebhookDelivery;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Store(format!("migration failed: {e}"))
    }
}

/// Now, in milliseconds since the Unix epoch.
pub use samtal_protocol::unix_ms as now_ms;

/// An outbox row's state and next attempt after a failed one: pending until `retry_at`, or failed
/// (given up) now when there is none.
fn retry_state(retry_at: Option<i64>) -> (&'static str, i64) {
    match retry_at {
        Some(at) => ("pending", at),
        None => ("failed", now_ms()),
    }
}

/// A random UUID (version 4), as meeting id.
pub fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Maps a foreign-key violation (the meeting does not exist) to [`Error::UnknownMeeting`].
fn on_meeting(meeting_id: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| match e.as_database_error() {
        Some(db) if db.is_foreign_key_violation() => Error::UnknownMeeting(meeting_id.to_owned()),
        _ => e.into(),
    }
}

const MEETING_COLUMNS: &str = "id, room, started_at, ended_at, language, matrix_room, transcript_digest, prompt";

impl Store {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| Error::Store(format!("bad SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true);
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory && let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
            }
            let pool_options = if in_memory {
                // Every connection to `:memory:` is its own database: keep exactly one, forever.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(8)
            };
            let pool = pool_options
                .connect_with(options)
                .await
                .map_err(|e| Error::Store(format!("cannot open SQLite database: {e}")))?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options =
                PgConnectOptions::from_str(url).map_err(|e| Error::Store(format!("bad PostgreSQL URL: {e}")))?;
            // One plain connection first: a pool retries until its timeout and then only reports
            // that it timed out, while this fails at once with the cause (refused, auth, no database).
            options
                .connect()
                .await
                .map_err(|e| Error::Store(format!("cannot connect to PostgreSQL: {e}")))?
                .close()
                .await?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .map_err(|e| Error::Store(format!("cannot connect to PostgreSQL: {e}")))?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            return Err(Error::Store(
                "database URL must start with sqlite:// or postgres://".into(),
            ));
        };
        Ok(Store {
            pool,
            write_lock: Default::default(),
            refusals: Default::default(),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes all connections (waits for those in use).
    pub async fn close(&self) {
        with_pool!(self, pool, _DB => pool.close().await)
    }

    /// Starts a meeting in `room` now.
    pub async fn start_meeting(&self, room: &str, language: Option<&str>) -> Result<Meeting> {
        self.start_meeting_at(room, language, now_ms()).await
    }

    /// Starts a meeting in `room` at `started_at` (ms since the epoch).
    pub async fn start_meeting_at(&self, room: &str, language: Option<&str>, started_at: i64) -> Result<Meeting> {
        let meeting = Meeting {
            id: new_id(),
            room: room.to_owned(),
            started_at,
            ended_at: None,
            language: language.map(str::to_owned),
            matrix_room: None,
            transcript_digest: None,
            prompt: None,
        };
        with_pool!(self, pool, _DB => {
            sqlx::query("INSERT INTO meetings (id, room, started_at, language) VALUES ($1, $2, $3, $4)")
                .bind(&meeting.id)
                .bind(&meeting.room)
                .bind(meeting.started_at)
                .bind(&meeting.language)
                .execute(pool)
                .await?;
        });
        Ok(meeting)
    }

    /// Ends a running meeting at `at` (ms since the epoch) and seals its transcript (see
    /// `crate::compliance::integrity`). Returns false if there is no such meeting or it had already
    /// ended (the first end time stays).
    pub async fn end_meeting(&self, id: &str, at: i64) -> Result<bool> {
        let done = with_pool!(self, pool, _DB => {
            sqlx::query("UPDATE meetings SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 1 {
            self.seal(id).await?;
        }
        Ok(done == 1)
    }

    /// Records the meeting's Matrix room. Returns false if there is no such meeting.
    pub async fn set_matrix_room(&self, id: &str, matrix_room: Option<&str>) -> Result<bool> {
        self.set_column(id, "matrix_room", matrix_room).await
    }

    /// Records the digest of the meeting's finished transcript. Returns false if there is no such meeting.
    pub async fn set_transcript_digest(&self, id: &str, digest: Option<&str>) -> Result<bool> {
        self.set_column(id, "transcript_digest", digest).await
    }

    /// Records the language the meeting is transcribed in (changed by a moderator mid-meeting).
    /// Returns false if there is no such meeting.
    pub async fn set_language(&self, id: &str, language: Option<&str>) -> Result<bool> {
        self.set_column(id, "language", language).await
    }

    /// Records the vocabulary prompt of the meeting's transcription. Returns false if there is no such meeting.
    pub async fn set_prompt(&self, id: &str, prompt: Option<&str>) -> Result<bool> {
        self.set_column(id, "prompt", prompt).await
    }

    /// Meetings that have not ended (oldest first): after a restart, the transcriptions to resume.
    pub async fn open_meetings(&self) -> Result<Vec<Meeting>> {
        let sql = format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE ended_at IS NULL ORDER BY started_at, id");
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, Meeting>(AssertSqlSafe(sql.clone())).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Records that a participant opted out of transcription (`opted_out`: at `at`) or back in
    /// (`at` ignored). A participant not yet recorded is added. Opting out again keeps the first time.
    pub async fn set_opted_out(
        &self,
        meeting_id: &str,
        participant_id: &str,
        name: &str,
        opted_out: bool,
        at: i64,
    ) -> Result<()> {
        let opted_out_at = opted_out.then_some(at);
        with_pool!(self, pool, _DB => {
            sqlx::query(
                "INSERT INTO meeting_participants (meeting_id, participant_id, display_name, name_key, first_seen, opted_out_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, participant_id) DO UPDATE SET opted_out_at = \
                 CASE WHEN excluded.opted_out_at IS NULL THEN NULL ELSE COALESCE(meeting_participants.opted_out_at, excluded.opted_out_at) END",
            )
            .bind(meeting_id)
            .bind(participant_id)
            .bind(name)
            .bind(name_key(name))
            .bind(at)
            .bind(opted_out_at)
            .execute(pool)
            .await
            .map_err(on_meeting(meeting_id))?;
        });
        Ok(())
    }

    async fn set_column(&self, id: &str, column: &'static str, value: Option<&str>) -> Result<bool> {
        let sql = format!("UPDATE meetings SET {column} = $1 WHERE id = $2");
        let done = with_pool!(self, pool, _DB => {
            sqlx::query(AssertSqlSafe(sql.clone())).bind(value).bind(id).execute(pool).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Records that `participant_id` (display name `name`) is in the meeting, first seen now.
    /// Idempotent: a participant already recorded keeps its first name and time.
    pub async fn add_participant(&self, meeting_id: &str, participant_id: &str, name: &str) -> Result<bool> {
        let added = with_pool!(self, pool, _DB => {
            sqlx::query(
                "INSERT INTO meeting_participants (meeting_id, participant_id, display_name, name_key, first_seen) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (meeting_id, participant_id) DO NOTHING",
            )
            .bind(meeting_id)
            .bind(participant_id)
            .bind(name)
            .bind(name_key(name))
            .bind(now_ms())
            .execute(pool)
            .await
            .map_err(on_meeting(meeting_id))?
            .rows_affected()
        });
        Ok(added == 1)
    }

    /// Stores a final segment spoken by `speaker_name`. Returns whether it was inserted: false
    /// for an utterance already stored (idempotent) and for interim segments (`is_final: false`),
    /// which are captions only and never stored. A speaker not yet among the meeting's
    /// participants is added, first seen at the segment's start.
    pub async fn add_segment(&self, meeting_id: &str, segment: &Segment, speaker_name: &str) -> Result<bool> {
        if !segment.is_final {
            return Ok(false);
        }
        let inserted = with_pool!(self, pool, _DB => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO meeting_participants (meeting_id, participant_id, display_name, name_key, first_seen) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (meeting_id, participant_id) DO NOTHING",
            )
            .bind(meeting_id)
            .bind(&segment.participant_id)
            .bind(speaker_name)
            .bind(name_key(speaker_name))
            .bind(segment.start_ms)
            .execute(&mut *tx)
            .await
            .map_err(on_meeting(meeting_id))?;
            let n = sqlx::query(
                "INSERT INTO segments (meeting_id, utterance_id, participant_id, speaker_name, start_ms, end_ms, text, language, confidence) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (meeting_id, utterance_id) DO NOTHING",
            )
            .bind(meeting_id)
            .bind(&segment.utterance_id)
            .bind(&segment.participant_id)
            .bind(speaker_name)
            .bind(segment.start_ms)
            .bind(segment.end_ms)
            .bind(&segment.text)
            .bind(&segment.language)
            .bind(segment.confidence)
            .execute(&mut *tx)
            .await
            .map_err(on_meeting(meeting_id))?
            .rows_affected();
            tx.commit().await?;
            n
        });
        if inserted == 1 {
            // A segment of an ended meeting (a worker flushing after the end) joins the sealed chain.
            let ended: Option<Option<i64>> = with_pool!(self, pool, _DB => {
                sqlx::query_scalar("SELECT ended_at FROM meetings WHERE id = $1").bind(meeting_id).fetch_optional(pool).await?
            });
            if matches!(ended, Some(Some(_))) {
                self.seal(meeting_id).await?;
            }
        }
        Ok(inserted == 1)
    }

    /// Meetings matching `filter`, newest first (by start time, then id).
    pub async fn meetings(&self, filter: &MeetingFilter) -> Result<Vec<Meeting>> {
        let rows = with_pool!(self, pool, DB => {
            let mut q = QueryBuilder::<DB>::new(format!("SELECT {MEETING_COLUMNS} FROM meetings m WHERE 1 = 1"));
            push_meeting_filter!(q, filter);
            q.push(" ORDER BY m.started_at DESC, m.id DESC");
            if let Some(limit) = filter.limit {
                q.push(" LIMIT ").push_bind(i64::from(limit));
            }
            q.build_query_as::<Meeting>().fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// One meeting by id.
    pub async fn meeting(&self, id: &str) -> Result<Option<Meeting>> {
        let sql = format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE id = $1");
        let row = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, Meeting>(AssertSqlSafe(sql.clone())).bind(id).fetch_optional(pool).await?
        });
        Ok(row)
    }

    /// The meeting with its participants (by first seen) and segments (by start, end, utterance id),
    /// read in one transaction.
    pub async fn transcript(&self, id: &str) -> Result<Option<Transcript>> {
        let meeting_sql = format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE id = $1");
        let transcript = with_pool!(self, pool, _DB => {
            let mut tx = pool.begin().await?;
            match sqlx::query_as::<_, Meeting>(AssertSqlSafe(meeting_sql.clone())).bind(id).fetch_optional(&mut *tx).await? {
                None => None,
                Some(meeting) => {
                    let participants = sqlx::query_as::<_, Participant>(
                        "SELECT participant_id, display_name AS name, first_seen, opted_out_at FROM meeting_participants \
                         WHERE meeting_id = $1 ORDER BY first_seen, participant_id",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let segments = sqlx::query_as::<_, TranscriptSegment>(
                        "SELECT utterance_id, participant_id, speaker_name, start_ms, end_ms, text, language, confidence \
                         FROM segments WHERE meeting_id = $1 ORDER BY start_ms, end_ms, utterance_id",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Some(Transcript { meeting, participants, segments })
                }
            }
        });
        Ok(transcript)
    }
}
