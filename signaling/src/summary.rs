//! Meeting summaries as records. When a transcribed meeting ends, its summary (the configured LLM's,
//! `matrix.llm`, else the built-in extractive one) is made from the stored transcript and stored
//! with the meeting (`meeting_summaries`), where retention, deletion and legal hold cover it as they
//! cover the transcript; officers read it through `GET /api/meetings/{id}/summary` (audited), and
//! the Matrix delivery posts the stored one, so the record and the message say the same. The
//! moderators still in the room are shown it (`meeting_summary`; everyone, on a server without
//! tokens).
//!
//! It is made `matrix.summary_delay_secs` after the end, when the worker's last segments are in.
//! Should the server stop before then, the first read (or the Matrix delivery) makes it instead:
//! [`ensure`] returns the stored summary or makes and stores one. Several servers may race to make
//! it; the store keeps the first, and every caller answers with that one.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use samtal_matrix::MatrixConfig;
use samtal_protocol::{MeetingSummary, ServerMessage, SummaryPoint};
use samtal_summaries::extractive::Extractive;
use samtal_summaries::llm::Llm;
use samtal_summaries::{MeetingText, Summarizer, Summary};
use serde_json::json;

use crate::api::{ApiError, Caller, visible_meeting};
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::StoredSummary;

/// The configured LLM summarizer, if there is one (a broken configuration is logged, and the
/// extractive summarizer used).
pub(crate) fn llm(config: &MatrixConfig) -> Option<Llm> {
    if config.llm.url.trim().is_empty() {
        return None;
    }
    Llm::new(config.llm.clone())
        .inspect_err(|e| tracing::error!("matrix.llm: {e}; summaries will be extractive"))
        .ok()
}

/// A summary of `text`: the LLM's when it answers, else the extractive one.
async fn summarize(llm: Option<&Llm>, text: &MeetingText, meeting_id: &str) -> Result<Summary> {
    if let Some(llm) = llm {
        match llm.summarize(text).await {
            Ok(s) => return Ok(s),
            Err(e) => tracing::warn!(meeting = %meeting_id, "LLM summary failed, using the extractive one: {e}"),
        }
    }
    Extractive
        .summarize(text)
        .await
        .map_err(|e| Error::Summary(e.to_string()))
}

/// A stored summary's body as the summarizer wrote it.
pub(crate) fn parse(stored: &StoredSummary) -> Result<Summary> {
    let mut summary: Summary = serde_json::from_str(&stored.body)
        .map_err(|e| Error::Summary(format!("stored summary of {} is unreadable: {e}", stored.meeting_id)))?;
    summary.source.clone_from(&stored.source);
    Ok(summary)
}

/// The meeting's summary: the stored one, or — for an ended meeting in which something was said —
/// one made now and stored. `None`: no such meeting, it is still running, or nothing was said.
pub async fn ensure(state: &AppState, llm: Option<&Llm>, meeting_id: &str) -> Result<Option<StoredSummary>> {
    if let Some(stored) = state.store.summary(meeting_id).await? {
        return Ok(Some(stored));
    }
    let Some(transcript) = state.store.transcript(meeting_id).await? else {
        return Ok(None);
    };
    if transcript.meeting.ended_at.is_none() || transcript.segments.is_empty() {
        return Ok(None);
    }
    let text = crate::delivery::meeting_text(&transcript);
    let summary = summarize(llm, &text, meeting_id).await?;
    let body = serde_json::to_string(&summary).map_err(|e| Error::Summary(e.to_string()))?;
    match state.store.put_summary(meeting_id, &summary.source, &body).await {
        Ok(true) => tracing::info!(meeting = %meeting_id, source = %summary.source, "meeting summary stored"),
        Ok(false) => {}
        // Deleted meanwhile (retention, an administrator): nothing to keep.
        Err(samtal_records::Error::UnknownMeeting(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    // Whoever stored first, this is the record.
    Ok(state.store.summary(meeting_id).await?)
}

/// After a meeting ended: makes and stores its summary once the worker's last segments are in.
pub fn after_meeting(state: &Arc<AppState>, meeting_id: &str) {
    let state = Arc::clone(state);
    let meeting_id = meeting_id.to_owned();
    let delay = Duration::from_secs(state.config.matrix.summary_delay_secs);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let llm = llm(&state.config.matrix);
        match ensure(&state, llm.as_ref(), &meeting_id).await {
            Ok(Some(stored)) => tell_moderators(&state, &stored).await,
            Ok(None) => {}
            Err(e) => tracing::error!(meeting = %meeting_id, "cannot store the meeting summary: {e}"),
        }
    });
}

/// Shows the stored summary to the moderators still in the meeting's room (to everyone there on a
/// server without tokens, where anyone may switch transcription).
async fn tell_moderators(state: &AppState, stored: &StoredSummary) {
    let (meeting, summary) = match (state.store.meeting(&stored.meeting_id).await, parse(stored)) {
        (Ok(Some(meeting)), Ok(summary)) => (meeting, summary),
        (Err(e), _) => return tracing::error!(meeting = %stored.meeting_id, "cannot read the meeting: {e}"),
        (_, Err(e)) => return tracing::error!("{e}"),
        (Ok(None), _) => return,
    };
    let points = |points: Vec<samtal_summaries::Point>| {
        points
            .into_iter()
            .map(|p| SummaryPoint {
                speaker: p.speaker,
                text: p.text,
            })
            .collect()
    };
    let message = ServerMessage::MeetingSummary(MeetingSummary {
        meeting_id: meeting.id,
        source: summary.source,
        key_points: points(summary.key_points),
        decisions: points(summary.decisions),
        action_items: points(summary.action_items),
    });
    // Those who may switch transcription: on a server without tokens, everyone.
    if state.verifier.enabled() {
        let told = state.rooms.send_to_moderators(&meeting.room, &message);
        tracing::debug!(room = %meeting.room, moderators = told, "meeting summary shown");
    } else {
        state.rooms.broadcast(&meeting.room, "", &message);
    }
}

/// `GET /api/meetings/{id}/summary`, with the transcript API's authorization and audit trail
/// (`summary.read`).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/meetings/{id}/summary", get(read))
        .with_state(state)
}

async fn read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> std::result::Result<Response, ApiError> {
    let meeting = visible_meeting(&state, &caller, &id, "summary.read").await?;
    let llm = llm(&state.config.matrix);
    let stored = ensure(&state, llm.as_ref(), &id).await.map_err(ApiError::internal)?;
    let Some(stored) = stored else {
        let why = if meeting.ended_at.is_none() {
            "is still running"
        } else {
            "has nothing said to summarize"
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_summary",
            format!("meeting {id} {why}"),
        ));
    };
    let summary = parse(&stored).map_err(ApiError::internal)?;
    Ok(axum::Json(json!({
        "meeting_id": stored.meeting_id,
        "source": summary.source,
        "created_at": stored.created_at,
        "key_points": summary.key_points,
        "decisions": summary.decisions,
        "action_items": summary.action_items,
    }))
    .into_response())
}
