//! The life of a transcribed meeting: started by a moderator, recorded in the store, handed to a
//! worker, stopped by a moderator or when the last participant leaves, and resumed when the server
//! starts again while one was running.
//!
//! A meeting record with no end time is a running transcription: that is all the state a restart
//! needs. On start the server resumes each room's newest open meeting (same meeting id, language and
//! prompt; a worker gets the job again) and closes older ones left open. A resumed room that nobody
//! rejoins within `transcription.resume_grace_secs` is stopped, as if its last participant had left.

use crate::server::AppState;
use crate::store::now_ms;
use crate::webhooks::{Event, EventKind};
use samtal_protocol::ServerMessage;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Turns transcription of `room` on: records the meeting (participants present, Matrix link), hands
/// it to a worker and tells the room. `Ok(false)`: it already was on. `Err`: the store failed, for
/// the moderator.
pub async fn start(
    state: &AppState,
    room: &str,
    language: Option<String>,
    prompt: Option<String>,
) -> Result<bool, String> {
    if let Some(meeting_id) = state.transcription.meeting_id(room) {
        // Already on: a moderator may pick another language, which applies from now on.
        if language.is_none() || !state.transcription.set_language(room, language.clone()) {
            return Ok(false);
        }
        if let Err(e) = state.store.set_language(&meeting_id, language.as_deref()).await {
            tracing::error!(meeting = %meeting_id, "cannot record the new language: {e}");
        }
        broadcast_status(state, room);
        return Ok(true);
    }
    let meeting = state
        .store
        .start_meeting(room, language.as_deref())
        .await
        .map_err(|e| format!("cannot record the meeting: {e}"))?;
    if prompt.is_some()
        && let Err(e) = state.store.set_prompt(&meeting.id, prompt.as_deref()).await
    {
        tracing::error!(meeting = %meeting.id, "cannot record the prompt (a restart would lose it): {e}");
    }
    for p in state.rooms.visible(room) {
        record_participant(state, &meeting.id, &p.id, &p.name).await;
        if p.transcription_opt_out {
            record_opt_out(state, &meeting.id, &p.id, &p.name, true).await;
        }
    }
    record_matrix_link(state, &meeting.id, room).await;
    crate::delivery::transcription_started(state, &meeting.id).await;
    let started = Event::new(EventKind::TranscriptionStarted, room)
        .with("meeting_id", meeting.id.as_str())
        .with("language", language.clone());
    let changed = state.transcription.enable(room, meeting.id, language, prompt);
    if changed {
        state.webhooks.emit(started);
        broadcast_status(state, room);
    }
    Ok(changed)
}

/// Turns transcription of `room` off and closes its meeting record; false if it was not on.
pub async fn stop(state: &Arc<AppState>, room: &str) -> bool {
    let Some(meeting_id) = state.transcription.disable(room) else {
        return false;
    };
    if let Err(e) = state.store.end_meeting(&meeting_id, now_ms()).await {
        tracing::error!(meeting = %meeting_id, "cannot close the meeting record: {e}");
    }
    ended(state, &meeting_id).await;
    announce_end(state, room, &meeting_id).await;
    broadcast_status(state, room);
    true
}

/// What follows a meeting's end: its summary, stored (`crate::summary`), and Matrix delivery.
async fn ended(state: &Arc<AppState>, meeting_id: &str) {
    crate::summary::after_meeting(state, meeting_id);
    crate::delivery::meeting_ended(state, meeting_id).await;
}

/// Webhooks for a meeting that ended: transcription stopped, and its transcript sealed (with the
/// digest that seals it) when the store sealed it.
async fn announce_end(state: &AppState, room: &str, meeting_id: &str) {
    let webhooks = &state.webhooks;
    webhooks.emit(Event::new(EventKind::TranscriptionStopped, room).with("meeting_id", meeting_id));
    match state.store.meeting(meeting_id).await {
        Ok(Some(meeting)) => {
            if let Some(digest) = meeting.transcript_digest {
                webhooks.emit(
                    Event::new(EventKind::TranscriptSealed, room)
                        .with("meeting_id", meeting_id)
                        .with("transcript_digest", digest),
                );
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(meeting = %meeting_id, "cannot read the meeting for its webhooks: {e}"),
    }
}

fn broadcast_status(state: &AppState, room: &str) {
    let status = state.transcription_status(room);
    state
        .rooms
        .broadcast(room, "", &ServerMessage::TranscriptionStatus(status));
}

/// Records a participant of a running meeting (idempotent).
pub async fn record_participant(state: &AppState, meeting_id: &str, id: &str, name: &str) {
    if let Err(e) = state.store.add_participant(meeting_id, id, name).await {
        tracing::error!(meeting = %meeting_id, participant = %id, "cannot record participant: {e}");
    }
}

/// Records that a participant opted out of (or back into) transcription.
pub async fn record_opt_out(state: &AppState, meeting_id: &str, id: &str, name: &str, opted_out: bool) {
    if let Err(e) = state
        .store
        .set_opted_out(meeting_id, id, name, opted_out, now_ms())
        .await
    {
        tracing::error!(meeting = %meeting_id, participant = %id, "cannot record the transcription opt-out: {e}");
    }
}

/// Stores the Matrix room a meeting is linked to, once known.
pub async fn record_matrix_link(state: &AppState, meeting_id: &str, room: &str) {
    let Some(matrix_room) = state.rooms.matrix_room(room) else {
        return;
    };
    if let Err(e) = state.store.set_matrix_room(meeting_id, Some(&matrix_room)).await {
        tracing::error!(meeting = %meeting_id, "cannot link the meeting to its Matrix room: {e}");
    }
}

/// At server start: resumes the transcriptions that were running when the server stopped, and stops
/// each one again if nobody comes back within the grace period.
pub async fn resume(state: &Arc<AppState>) -> crate::Result<()> {
    let open = state.store.open_meetings().await?;
    // Oldest first: the last one seen per room is its newest.
    let mut newest = HashMap::new();
    for meeting in open {
        if let Some(older) = newest.insert(meeting.room.clone(), meeting) {
            tracing::warn!(meeting = %older.id, room = %older.room, "closing a meeting left open by an earlier run");
            state.store.end_meeting(&older.id, now_ms()).await?;
            ended(state, &older.id).await;
            announce_end(state, &older.room, &older.id).await;
        }
    }
    if newest.is_empty() {
        return Ok(());
    }
    for (room, meeting) in &newest {
        if let Some(matrix_room) = &meeting.matrix_room {
            state.rooms.link_matrix(room, matrix_room);
        }
        tracing::info!(room = %room, meeting = %meeting.id, "resuming transcription after a restart");
        state.transcription.enable(
            room,
            meeting.id.clone(),
            meeting.language.clone(),
            meeting.prompt.clone(),
        );
    }
    let grace = Duration::from_secs(state.config.transcription.resume_grace_secs);
    let state = state.clone();
    let rooms: Vec<String> = newest.into_keys().collect();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        for room in rooms {
            if state.rooms.visible(&room).is_empty() && stop(&state, &room).await {
                tracing::info!(room = %room, "nobody came back after the restart: transcription stopped");
            }
        }
    });
    Ok(())
}
