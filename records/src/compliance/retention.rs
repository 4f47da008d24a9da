//! Retention: meetings are deleted `retention.days` (or the room's own number of days) after they
//! ended, unless they are under legal hold. Each deletion is written to the audit trail as
//! `retention.purge` by actor `system`. The server runs [`purge_expired`] every
//! `retention.purge_interval_secs`; tests call it with the time they want.

use super::audit::Event;
use crate::error::Result;
use crate::store::{Deletion, Meeting, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a meeting is kept after it ended; 0: forever.
    pub days: u32,
    /// Per-room days, overriding `days` (0: that room's meetings are kept forever).
    pub rooms: BTreeMap<String, u32>,
    /// Seconds between purges.
    pub purge_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 0,
            rooms: BTreeMap::new(),
            purge_interval_secs: 3600,
        }
    }
}

impl RetentionConfig {
    /// Days `room`'s meetings are kept (0: forever).
    pub fn days_for(&self, room: &str) -> u32 {
        self.rooms.get(room).copied().unwrap_or(self.days)
    }

    /// Whether anything is ever purged.
    pub fn enabled(&self) -> bool {
        self.days > 0 || self.rooms.values().any(|d| *d > 0)
    }
}

const DAY_MS: i64 = 86_400_000;

/// Deletes every meeting whose retention ran out by `now` (ms since the epoch) and is not under
/// legal hold; returns them, oldest first. Each deletion is audited.
pub async fn purge_expired(store: &Store, config: &RetentionConfig, now: i64) -> Result<Vec<Meeting>> {
    // The shortest retention bounds the candidates; each is then checked against its room's.
    let Some(shortest) = std::iter::once(config.days)
        .chain(config.rooms.values().copied())
        .filter(|d| *d > 0)
        .min()
    else {
        return Ok(Vec::new());
    };
    let mut purged = Vec::new();
    for meeting in store.expired_meetings(now - i64::from(shortest) * DAY_MS).await? {
        let days = config.days_for(&meeting.room);
        let Some(ended) = meeting.ended_at else { continue };
        if days == 0 || ended >= now - i64::from(days) * DAY_MS {
            continue;
        }
        let span = tracing::info_span!("purge", meeting = %meeting.id, room = %meeting.room);
        let _enter = span.enter();
        match store.delete_meeting(&meeting.id).await? {
            Deletion::Deleted(m) => {
                let detail =
                    json!({"room": m.room, "started_at": m.started_at, "ended_at": m.ended_at, "retention_days": days});
                store
                    .append_audit(Event {
                        at: crate::store::now_ms(),
                        actor: "system".into(),
                        role: "system".into(),
                        action: "retention.purge".into(),
                        target: m.id.clone(),
                        client: String::new(),
                        outcome: "ok".into(),
                        detail: detail.to_string(),
                    })
                    .await?;
                tracing::info!(days, "meeting purged: its retention ran out");
                purged.push(m);
            }
            // Put under hold (or gone) since it was listed.
            other => tracing::info!(?other, "meeting not purged"),
        }
    }
    Ok(purged)
}

/// Runs [`purge_expired`] now and every `purge_interval_secs`, for as long as the task lives.
pub fn spawn(store: Store, config: RetentionConfig) -> Option<tokio::task::JoinHandle<()>> {
    if !config.enabled() {
        return None;
    }
    let period = Duration::from_secs(config.purge_interval_secs.max(1));
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match purge_expired(&store, &config, crate::store::now_ms()).await {
                Ok(purged) if !purged.is_empty() => tracing::info!(count = purged.len(), "retention purge done"),
                Ok(_) => {}
                Err(e) => tracing::error!("retention purge failed: {e}"),
            }
        }
    }))
}
