//! Matrix delivery: transcription notices and meeting summaries posted into the meeting's Matrix
//! room by the bot (`samtal-matrix`), through an outbox in the transcript store.
//!
//! Nothing is sent inline. When transcription starts, stops, or a meeting ends, a row is added to
//! the outbox (`matrix_outbox`) in the same store as the meeting; one task drains it. A row that
//! cannot be delivered (homeserver down, bot not in the room, bad credentials) keeps its error and
//! is retried with exponential backoff (`retry_initial_secs` doubling up to `retry_max_secs`), also
//! after this server restarts. A summary is three events (the summary notice, the WebVTT file, the
//! text file); each one's event id is recorded as soon as it is sent, so a retry sends only what is
//! missing.
//!
//! **Exactly once.** Every event is sent with a transaction id derived from its outbox row and part
//! (`samtal.<row id>.<part>`), and the bot keeps one device across restarts. If the server stops
//! after the homeserver accepted an event but before the store recorded it, the retry repeats the
//! transaction id and the homeserver returns the first event instead of posting a second one.
//! Synapse remembers a device's transaction ids for 24 hours, so this holds for retries within a
//! day of the lost answer; a bot that changes device (a new access token for another device, a
//! deleted store) loses that protection for sends in flight.
//!
//! Rows of one Matrix room are delivered in order: when one fails, the room's later rows wait.
//!
//! **Several servers.** Servers sharing one PostgreSQL all run this task; each row is taken by one of
//! them under a lease (`LEASE_MS`) and delivered by that one, so a message is not posted twice even
//! though each server's bot is a device of its own (whose transaction ids the homeserver does not
//! compare). A server that dies holding rows leaves them to the others when the lease runs out.

mod api;

pub use api::router;
pub(crate) use api::valid_room_id;
pub use samtal_matrix::MatrixConfig;

use crate::export::{self, Format};
use crate::server::AppState;
use crate::store::{Delivery, DeliveryKind, Transcript, now_ms};
use samtal_matrix::{Bot, message};
use samtal_protocol::retry::BackoffConfig;
use samtal_summaries::extractive::Extractive;
use samtal_summaries::llm::Llm;
use samtal_summaries::{MeetingText, Summarizer, Utterance};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Rows handed out per round.
const BATCH: u32 = 20;
/// How long a server holds a row, from when it took it and again from just before it delivers
/// it: longer than delivering one takes at worst (an LLM summary and three sends), so that no other
/// server sharing the store sends it too.
const LEASE_MS: i64 = 10 * 60 * 1000;
/// Shortest sleep after a round that found nothing it could take.
const HELD_ELSEWHERE: Duration = Duration::from_secs(1);
/// Longest sleep between looks at the outbox (rows can also be due by time alone).
const IDLE: Duration = Duration::from_secs(60);

/// The delivery task's handle in the server state.
#[derive(Default)]
pub struct Outbox {
    wake: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Outbox {
    /// Wakes the task: a row was added.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the task (and with it the bot); pending rows stay in the store.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().expect("outbox lock").take() {
            task.abort();
        }
    }
}

/// Starts the delivery task if Matrix is configured.
pub fn start(state: &Arc<AppState>) {
    if !state.config.matrix.enabled() {
        return;
    }
    let task = tokio::spawn(run(state.clone()));
    *state.outbox.task.lock().expect("outbox lock") = Some(task);
}

/// Transcription started: the start notice, if the meeting has a Matrix room.
pub async fn transcription_started(state: &AppState, meeting_id: &str) {
    if state.config.matrix.notices {
        enqueue(state, meeting_id, DeliveryKind::TranscriptionStarted, now_ms()).await;
    }
}

/// The meeting ended: the stop notice and, a little later, the summary.
pub async fn meeting_ended(state: &AppState, meeting_id: &str) {
    if state.config.matrix.notices {
        enqueue(state, meeting_id, DeliveryKind::TranscriptionStopped, now_ms()).await;
    }
    let delay = i64::try_from(state.config.matrix.summary_delay_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    enqueue(state, meeting_id, DeliveryKind::Summary, now_ms().saturating_add(delay)).await;
}

async fn enqueue(state: &AppState, meeting_id: &str, kind: DeliveryKind, due_at: i64) {
    if !state.config.matrix.enabled() {
        return;
    }
    let room = match state.store.meeting(meeting_id).await {
        Ok(Some(m)) => m.matrix_room,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(meeting = %meeting_id, "cannot read the meeting for Matrix delivery: {e}");
            return;
        }
    };
    let Some(room) = room else { return };
    match state.store.enqueue_delivery(meeting_id, kind, &room, due_at).await {
        Ok(_) => state.outbox.wake(),
        Err(e) => {
            tracing::error!(meeting = %meeting_id, kind = kind.as_str(), "cannot queue the Matrix delivery: {e}")
        }
    }
}

/// The `summary_delivered` webhook for a summary row just posted.
async fn announce_summary(state: &AppState, row: &Delivery) {
    let room = match state.store.meeting(&row.meeting_id).await {
        Ok(Some(m)) => Some(m.room),
        _ => None,
    };
    let sent = state.store.deliveries(&row.meeting_id).await.unwrap_or_default();
    let source = sent
        .iter()
        .find(|d| d.id == row.id)
        .and_then(|d| d.summary_source.clone());
    let mut event = crate::webhooks::Event::new(crate::webhooks::EventKind::SummaryDelivered, "");
    event.room = room;
    state.webhooks.emit(
        event
            .with("meeting_id", row.meeting_id.as_str())
            .with("matrix_room", row.matrix_room.as_str())
            .with("summary_source", source),
    );
}

/// Wait before the next attempt after `attempts` failed ones.
fn backoff(config: &MatrixConfig, attempts: i64) -> Duration {
    BackoffConfig {
        initial: Duration::from_secs(config.retry_initial_secs.max(1)),
        max: Duration::from_secs(config.retry_max_secs),
    }
    .delay(u32::try_from(attempts.max(0)).unwrap_or(u32::MAX))
}

async fn run(state: Arc<AppState>) {
    let config = &state.config.matrix;
    let store_dir = config.store_dir_in(&state.config.data_dir);
    let summarizer = crate::summary::llm(config);
    let mut bot: Option<Bot> = None;
    let mut connect_error = String::new();
    let mut connect_failures = 0i64;
    let mut next_connect = tokio::time::Instant::now();
    // This server's name on the rows it leases.
    let owner = crate::store::new_id();
    loop {
        if bot.is_none() && tokio::time::Instant::now() >= next_connect {
            match Bot::connect(config, &store_dir).await {
                Ok(b) => {
                    tracing::info!(user = %b.user_id(), device = %b.device_id(), "Matrix delivery ready");
                    bot = Some(b);
                    connect_failures = 0;
                }
                Err(e) => {
                    connect_error = e.to_string();
                    let wait = backoff(config, connect_failures);
                    connect_failures += 1;
                    tracing::error!("Matrix bot cannot connect (next try in {} s): {e}", wait.as_secs());
                    next_connect = tokio::time::Instant::now() + wait;
                }
            }
        }
        let due = match state.store.claim_deliveries(&owner, now_ms(), LEASE_MS, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("cannot read the Matrix outbox: {e}");
                Vec::new()
            }
        };
        let claimed_none = due.is_empty();
        // A room whose row failed: its later rows wait, carrying the same error (order is kept).
        let mut blocked: HashMap<String, (String, Option<i64>)> = HashMap::new();
        for row in due {
            if let Some((message, retry_at)) = blocked.get(&row.matrix_room) {
                if let Err(e) = state.store.delivery_failed(&row.id, message, *retry_at).await {
                    tracing::error!(meeting = %row.meeting_id, "cannot record the Matrix delivery's outcome: {e}");
                }
                continue;
            }
            // The rows before it may have taken long: a row whose lease ran out may be another
            // server's by now, and is left to it (or to this server's next round).
            match state
                .store
                .extend_delivery_lease(&row.id, &owner, now_ms(), LEASE_MS)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(meeting = %row.meeting_id, "cannot extend the Matrix delivery's lease: {e}");
                    continue;
                }
            }
            let outcome = match &bot {
                Some(b) => deliver(&state, b, summarizer.as_ref(), &row).await,
                None => Err(samtal_matrix::Error::Unavailable(connect_error.clone())),
            };
            let now = now_ms();
            let recorded = match outcome {
                Ok(()) => {
                    tracing::info!(meeting = %row.meeting_id, kind = %row.kind, room = %row.matrix_room, "posted to Matrix");
                    if DeliveryKind::parse(&row.kind) == Some(DeliveryKind::Summary) {
                        announce_summary(&state, &row).await;
                    }
                    state.store.delivery_sent(&row.id, now).await
                }
                Err(e) => {
                    let message = match &bot {
                        Some(_) => e.to_string(),
                        None => connect_error.clone(),
                    };
                    let retry_at = if matches!(e, samtal_matrix::Error::BadRoomId(_)) {
                        tracing::error!(meeting = %row.meeting_id, kind = %row.kind, room = %row.matrix_room, "Matrix delivery given up: {message}");
                        None
                    } else {
                        let wait = backoff(config, row.attempts);
                        tracing::error!(
                            meeting = %row.meeting_id, kind = %row.kind, room = %row.matrix_room, attempt = row.attempts + 1,
                            "Matrix delivery failed (next try in {} s): {message}", wait.as_secs()
                        );
                        if matches!(e, samtal_matrix::Error::Login { .. }) {
                            // The session was refused after all: log in again before the next round.
                            bot = None;
                            connect_error = message.clone();
                        }
                        let retry_at = now + wait.as_millis() as i64;
                        if let Err(e) = state.store.postpone_room(&row.matrix_room, retry_at).await {
                            tracing::error!("cannot postpone the Matrix room's deliveries: {e}");
                        }
                        Some(retry_at)
                    };
                    blocked.insert(row.matrix_room.clone(), (message.clone(), retry_at));
                    state.store.delivery_failed(&row.id, &message, retry_at).await
                }
            };
            if let Err(e) = recorded {
                tracing::error!(meeting = %row.meeting_id, "cannot record the Matrix delivery's outcome: {e}");
            }
        }
        // Sleep until the next row is due, a row is added, or the bot is due to reconnect.
        let mut until = tokio::time::Instant::now() + IDLE;
        if let Ok(Some(at)) = state.store.next_delivery_at().await {
            let ms = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
            until = until.min(tokio::time::Instant::now() + Duration::from_millis(ms));
        }
        if bot.is_none() {
            until = until.min(next_connect);
        }
        if claimed_none {
            // Rows due but held by another server (or waiting behind one it holds): look again
            // in a while rather than at once.
            until = until.max(tokio::time::Instant::now() + HELD_ELSEWHERE);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = state.outbox.wake.notified() => {}
        }
    }
}

/// Sends what `row` still owes its room.
async fn deliver(state: &AppState, bot: &Bot, llm: Option<&Llm>, row: &Delivery) -> samtal_matrix::Result<()> {
    let store_error = |e: samtal_records::Error| samtal_matrix::Error::Store(format!("transcript store: {e}"));
    let transcript = state
        .store
        .transcript(&row.meeting_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| samtal_matrix::Error::Store(format!("meeting {} is gone", row.meeting_id)))?;
    let sent = row.events();
    let txn = |part: &str| format!("samtal.{}.{part}", row.id);
    let meeting = &transcript.meeting;
    match DeliveryKind::parse(&row.kind) {
        Some(kind @ (DeliveryKind::TranscriptionStarted | DeliveryKind::TranscriptionStopped)) => {
            if !sent.contains_key("notice") {
                let notice = message::transcription_notice(
                    &meeting.room,
                    meeting.language.as_deref(),
                    kind == DeliveryKind::TranscriptionStarted,
                );
                let event = bot.send_notice(&row.matrix_room, &notice, &txn("notice")).await?;
                state
                    .store
                    .record_delivery_part(&row.id, "notice", &event, None)
                    .await
                    .map_err(store_error)?;
            }
        }
        Some(DeliveryKind::Summary) => {
            if !sent.contains_key("summary") {
                let text = meeting_text(&transcript);
                // The stored record's summary (made now if it is not yet), so both say the same.
                let stored = crate::summary::ensure(state, llm, &meeting.id)
                    .await
                    .and_then(|s| s.as_ref().map(crate::summary::parse).transpose())
                    .map_err(|e| samtal_matrix::Error::Store(e.to_string()))?;
                let summary = match stored {
                    Some(summary) => summary,
                    None => Extractive.summarize(&text).await?,
                };
                let formatted = message::summary(&text, &summary);
                let event = bot.send_notice(&row.matrix_room, &formatted, &txn("summary")).await?;
                state
                    .store
                    .record_delivery_part(&row.id, "summary", &event, Some(&summary.source))
                    .await
                    .map_err(store_error)?;
            }
            for (part, format) in [("vtt", Format::WebVtt), ("txt", Format::Text)] {
                if sent.contains_key(part) {
                    continue;
                }
                let body = export::render(&transcript, format).into_bytes();
                let name = export::file_name(&transcript, format);
                let event = bot
                    .send_file(&row.matrix_room, &name, format.content_type(), body, &txn(part))
                    .await?;
                state
                    .store
                    .record_delivery_part(&row.id, part, &event, None)
                    .await
                    .map_err(store_error)?;
            }
        }
        None => {
            return Err(samtal_matrix::Error::Config(format!(
                "unknown outbox kind {:?}",
                row.kind
            )));
        }
    }
    Ok(())
}

/// What the summarizers read from a stored transcript.
pub(crate) fn meeting_text(t: &Transcript) -> MeetingText {
    let mut participants: Vec<String> = Vec::new();
    for p in &t.participants {
        if !participants.contains(&p.name) {
            participants.push(p.name.clone());
        }
    }
    MeetingText {
        title: t.meeting.room.clone(),
        started_at: t.meeting.started_at,
        ended_at: t.meeting.ended_at,
        language: t.meeting.language.clone(),
        participants,
        utterances: t
            .segments
            .iter()
            .map(|s| Utterance {
                speaker: s.speaker_name.clone(),
                start_ms: s.start_ms,
                text: s.text.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = MatrixConfig {
            retry_initial_secs: 5,
            retry_max_secs: 60,
            ..Default::default()
        };
        let waits: Vec<u64> = (0..6).map(|a| backoff(&config, a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(&config, 1000).as_secs(), 60);
    }
}
