//! Leases on outbox rows (`matrix_outbox`, `webhook_outbox`): of several servers draining one
//! store, the one whose conditional update sets a row's `lease_until` and `lease_owner` delivers
//! it; the others leave it alone until the lease has run out. Both outboxes take and read leases
//! through these two functions.

use super::*;

/// The outboxes that hold leased rows; the table name is only ever one of these.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outbox {
    Matrix,
    Webhooks,
}

impl Outbox {
    fn table(self) -> &'static str {
        match self {
            Outbox::Matrix => "matrix_outbox",
            Outbox::Webhooks => "webhook_outbox",
        }
    }
}

impl Store {
    /// Leases pending row `id` of `outbox` to `owner` until `until`, if nobody holds it at `now`;
    /// true when this call took it.
    pub(super) async fn take_lease(&self, outbox: Outbox, id: &str, owner: &str, now: i64, until: i64) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET lease_until = $1, lease_owner = $2 WHERE id = $3 AND state = 'pending' AND lease_until <= $4",
            outbox.table()
        );
        let taken = with_pool!(self, pool, _DB => {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(until)
                .bind(owner)
                .bind(id)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(taken == 1)
    }

    /// When `outbox`'s next pending row is due, or its lease runs out if that is later; `None`
    /// when nothing is pending.
    pub(super) async fn next_due_at(&self, outbox: Outbox) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END) \
             FROM {} WHERE state = 'pending'",
            outbox.table()
        );
        let at = with_pool!(self, pool, _DB => {
            sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql.clone())).fetch_one(pool).await?
        });
        Ok(at)
    }
}
