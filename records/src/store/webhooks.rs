//! The webhook outbox (table `webhook_outbox`): each event owed to each configured receiver, with
//! its delivery log. Drained by the server's webhook task; rows survive restarts.
//!
//! **Once across servers.** Several servers on one PostgreSQL drain the same table. A server takes a
//! row by setting its lease (`lease_until`) in one conditional update, which only one of them can
//! win while the lease runs; the winner posts it and records the outcome, which also ends the lease.
//! A server that dies holding a lease leaves the row to the others once the lease has run out.

use super::lease::Outbox;
use super::*;

/// One webhook event for one receiver, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct WebhookDelivery {
    /// Also the event's `id` in the body.
    pub id: String,
    /// The receiver's configured name.
    pub endpoint: String,
    pub event: String,
    pub room: Option<String>,
    /// The signed JSON body, byte for byte.
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    /// The receiver's HTTP status on the last attempt (none when it could not be reached).
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
}

const WEBHOOK_COLUMNS: &str = "id, endpoint, event, room, body, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at";

impl Store {
    /// Adds event `id` (`event` in `room`, body `body`, created at `now` as its body says) for
    /// receiver `endpoint`, due at once.
    pub async fn enqueue_webhook(
        &self,
        id: &str,
        endpoint: &str,
        event: &str,
        room: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<()> {
        with_pool!(self, pool, _DB => {
            sqlx::query(
                "INSERT INTO webhook_outbox (id, endpoint, event, room, body, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(id)
            .bind(endpoint)
            .bind(event)
            .bind(room)
            .bind(body)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Takes up to `limit` pending rows due at `now` whose lease has run out, oldest first, and
    /// leases each to `owner` (a server's random id) until `now + lease_ms`. A row another server
    /// took meanwhile is left out: each row goes to one taker per lease.
    pub async fn claim_webhooks(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND lease_until <= $1 ORDER BY created_at, id LIMIT $2"
        );
        let until = now.saturating_add(lease_ms);
        let due = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, WebhookDelivery>(AssertSqlSafe(sql.clone()))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        let mut claimed = Vec::with_capacity(due.len());
        for row in due {
            if self.take_lease(Outbox::Webhooks, &row.id, owner, now, until).await? {
                claimed.push(row);
            }
        }
        Ok(claimed)
    }

    /// Records that row `id` was delivered at `at` with HTTP `status`; ends its lease.
    pub async fn webhook_delivered(&self, id: &str, status: u16, at: i64) -> Result<()> {
        with_pool!(self, pool, _DB => {
            sqlx::query(
                "UPDATE webhook_outbox SET state = 'delivered', delivered_at = $1, attempts = attempts + 1, \
                 last_status = $2, last_error = NULL, lease_until = 0 WHERE id = $3",
            )
            .bind(at)
            .bind(i64::from(status))
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records a failed attempt of row `id` (the receiver's `status`, if it answered, and `error`):
    /// retried at `retry_at`, or given up (`failed`) when `None`. Ends its lease.
    pub async fn webhook_failed(
        &self,
        id: &str,
        status: Option<u16>,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let (state, next) = retry_state(retry_at);
        with_pool!(self, pool, _DB => {
            sqlx::query(
                "UPDATE webhook_outbox SET state = $1, attempts = attempts + 1, last_status = $2, last_error = $3, \
                 next_attempt_at = $4, lease_until = 0 WHERE id = $5",
            )
            .bind(state)
            .bind(status.map(i64::from))
            .bind(error)
            .bind(next)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// When the next pending row is due (its lease included), if any is pending.
    pub async fn next_webhook_at(&self) -> Result<Option<i64>> {
        self.next_due_at(Outbox::Webhooks).await
    }

    /// The delivery log, newest first: rows in `state` (all when `None`), at most `limit`.
    pub async fn webhook_log(&self, state: Option<&str>, limit: u32) -> Result<Vec<WebhookDelivery>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_outbox WHERE ($1 IS NULL OR state = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, WebhookDelivery>(AssertSqlSafe(sql.clone()))
                .bind(state)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Deletes delivered and failed rows created before `before`; returns how many.
    pub async fn purge_webhooks(&self, before: i64) -> Result<u64> {
        let n = with_pool!(self, pool, _DB => {
            sqlx::query("DELETE FROM webhook_outbox WHERE state <> 'pending' AND created_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
