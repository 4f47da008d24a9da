//! The Matrix outbox (table `matrix_outbox`): what the bot owes Matrix rooms, one row per meeting,
//! kind and room, drained by the delivery task (`crate::delivery`).
//!
//! A row is `pending` until all its parts are sent (each part's event id is recorded as soon as
//! it is sent, so a retry sends only what is missing), then `sent`; `failed` when delivery gave
//! up. Rows survive restarts; [`Store::claim_deliveries`] hands out the pending rows whose time has
//! come, each to one of the servers sharing the store (a lease per row).

use super::lease::Outbox;
use super::*;
use std::collections::{BTreeMap, HashSet};

/// What a row delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    TranscriptionStarted,
    TranscriptionStopped,
    Summary,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::TranscriptionStarted => "transcription_started",
            DeliveryKind::TranscriptionStopped => "transcription_stopped",
            DeliveryKind::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryKind::TranscriptionStarted,
            DeliveryKind::TranscriptionStopped,
            DeliveryKind::Summary,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: String,
    pub meeting_id: String,
    /// `transcription_started`, `transcription_stopped` or `summary`.
    pub kind: String,
    pub matrix_room: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    /// JSON object: part → Matrix event id.
    pub event_ids: String,
    pub summary_source: Option<String>,
}

impl Delivery {
    /// The event ids sent so far, by part.
    pub fn events(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.event_ids).unwrap_or_default()
    }
}

const DELIVERY_COLUMNS: &str = "id, meeting_id, kind, matrix_room, state, attempts, last_error, created_at, next_attempt_at, sent_at, event_ids, summary_source";

/// Order of rows created at the same time: notices around the summary, as they happened.
const KIND_ORDER: &str = "CASE kind WHEN 'transcription_started' THEN 0 WHEN 'transcription_stopped' THEN 1 ELSE 2 END";

impl Store {
    /// Adds a delivery of `kind` for the meeting to `matrix_room`, due at `due_at` (ms since the
    /// epoch). Idempotent: false if the meeting already has one of that kind for that room.
    pub async fn enqueue_delivery(
        &self,
        meeting_id: &str,
        kind: DeliveryKind,
        matrix_room: &str,
        due_at: i64,
    ) -> Result<bool> {
        let added = with_pool!(self, pool, _DB => {
            sqlx::query(
                "INSERT INTO matrix_outbox (id, meeting_id, kind, matrix_room, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, kind, matrix_room) DO NOTHING",
            )
            .bind(new_id())
            .bind(meeting_id)
            .bind(kind.as_str())
            .bind(matrix_room)
            .bind(now_ms())
            .bind(due_at)
            .execute(pool)
            .await
            .map_err(on_meeting(meeting_id))?
            .rows_affected()
        });
        Ok(added == 1)
    }

    /// Pending deliveries due at `now`, oldest first, at most `limit`.
    pub async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM matrix_outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
             ORDER BY created_at, {KIND_ORDER}, id LIMIT $2"
        );
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, Delivery>(AssertSqlSafe(sql.clone())).bind(now).bind(i64::from(limit)).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Takes the pending deliveries due at `now`, oldest first, at most `limit`, and leases each to
    /// `owner` (a server's random id) until `now + lease_ms`, so that of several servers draining
    /// one store only one delivers a row. A Matrix room's rows stay in order across servers: a room
    /// with a row held by another server is left out, and so are a room's later rows when another
    /// server takes its earlier one first.
    pub async fn claim_deliveries(&self, owner: &str, now: i64, lease_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM matrix_outbox o WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM matrix_outbox h WHERE h.matrix_room = o.matrix_room \
             AND h.state = 'pending' AND h.lease_until > $1) \
             ORDER BY created_at, {KIND_ORDER}, id LIMIT $2"
        );
        let due = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, Delivery>(AssertSqlSafe(sql.clone())).bind(now).bind(i64::from(limit)).fetch_all(pool).await?
        });
        let until = now.saturating_add(lease_ms);
        let mut taken_elsewhere = HashSet::new();
        let mut claimed = Vec::with_capacity(due.len());
        for row in due {
            if taken_elsewhere.contains(&row.matrix_room) {
                continue;
            }
            let won = self.take_lease(Outbox::Matrix, &row.id, owner, now, until).await?;
            if won {
                claimed.push(row);
            } else {
                taken_elsewhere.insert(row.matrix_room.clone());
            }
        }
        Ok(claimed)
    }

    /// Extends `owner`'s lease on delivery `id` to `now + lease_ms`, just before delivering it;
    /// false when `owner` no longer holds it (its lease ran out, or another server took it): then
    /// it must not be delivered.
    pub async fn extend_delivery_lease(&self, id: &str, owner: &str, now: i64, lease_ms: i64) -> Result<bool> {
        let extended = with_pool!(self, pool, _DB => {
            sqlx::query(
                "UPDATE matrix_outbox SET lease_until = $1 \
                 WHERE id = $2 AND state = 'pending' AND lease_owner = $3 AND lease_until > $4",
            )
            .bind(now.saturating_add(lease_ms))
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(extended == 1)
    }

    /// When the next pending delivery is due (or its lease runs out), if any is pending.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>> {
        self.next_due_at(Outbox::Matrix).await
    }

    /// The meeting's deliveries, in the order they are sent.
    pub async fn deliveries(&self, meeting_id: &str) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM matrix_outbox WHERE meeting_id = $1 ORDER BY created_at, {KIND_ORDER}, id"
        );
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, Delivery>(AssertSqlSafe(sql.clone())).bind(meeting_id).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Records that `part` of delivery `id` was sent as `event_id` (and, for summaries, which
    /// summarizer wrote it). The row stays pending.
    pub async fn record_delivery_part(
        &self,
        id: &str,
        part: &str,
        event_id: &str,
        summary_source: Option<&str>,
    ) -> Result<()> {
        with_pool!(self, pool, _DB => {
            let mut tx = pool.begin().await?;
            let current: Option<String> = sqlx::query_scalar("SELECT event_ids FROM matrix_outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let mut events: BTreeMap<String, String> = current.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
            events.insert(part.to_owned(), event_id.to_owned());
            let json = serde_json::to_string(&events).map_err(|e| Error::Store(e.to_string()))?;
            sqlx::query("UPDATE matrix_outbox SET event_ids = $1, summary_source = COALESCE($2, summary_source) WHERE id = $3")
                .bind(json)
                .bind(summary_source)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks delivery `id` sent at `at`; counts the attempt.
    pub async fn delivery_sent(&self, id: &str, at: i64) -> Result<()> {
        with_pool!(self, pool, _DB => {
            sqlx::query("UPDATE matrix_outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1, last_error = NULL, lease_until = 0 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a failed attempt of delivery `id`: retried at `retry_at`, or given up (`failed`) when `None`.
    pub async fn delivery_failed(&self, id: &str, error: &str, retry_at: Option<i64>) -> Result<()> {
        let (state, next) = retry_state(retry_at);
        with_pool!(self, pool, _DB => {
            sqlx::query("UPDATE matrix_outbox SET state = $1, attempts = attempts + 1, last_error = $2, next_attempt_at = $3, lease_until = 0 WHERE id = $4")
                .bind(state)
                .bind(error)
                .bind(next)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Holds back every pending delivery to `matrix_room` until at least `until`, so that a room's
    /// messages keep their order while one of them is being retried. Returns how many moved.
    pub async fn postpone_room(&self, matrix_room: &str, until: i64) -> Result<u64> {
        let n = with_pool!(self, pool, _DB => {
            sqlx::query("UPDATE matrix_outbox SET next_attempt_at = $1 WHERE matrix_room = $2 AND state = 'pending' AND next_attempt_at < $1")
                .bind(until)
                .bind(matrix_room)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// Makes the meeting's failed deliveries pending again, due now; returns how many.
    pub async fn retry_deliveries(&self, meeting_id: &str) -> Result<u64> {
        let n = with_pool!(self, pool, _DB => {
            sqlx::query("UPDATE matrix_outbox SET state = 'pending', next_attempt_at = $1 WHERE meeting_id = $2 AND state = 'failed'")
                .bind(now_ms())
                .bind(meeting_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
