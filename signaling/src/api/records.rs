//! One meeting's record: export as a file, verify its hash chain, legal hold on/off, delete.

use super::{ADMINISTRATORS, ApiError, ApiState, Caller, OFFICERS, READERS, meeting_json};
use crate::compliance::integrity;
use crate::export::{self, Format};
use crate::store::{Deletion, LegalHold};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ExportQuery {
    format: Option<String>,
}

/// Longest legal hold reason accepted.
const MAX_REASON_CHARS: usize = 1000;

pub(super) async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "transcript.export";
    caller.require(&state, ACTION, &id, READERS).await?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let format: Format = match query.format.as_deref().filter(|f| !f.is_empty()) {
        None => Format::WebVtt,
        Some(f) => f
            .parse()
            .map_err(|e: String| ApiError::bad_request(format!("format: {e}")))?,
    };
    let meeting = state
        .store
        .meeting(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&id))?;
    caller.require_room(&state, ACTION, &meeting).await?;
    let mut transcript = state
        .store
        .transcript(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&id))?;
    if transcript.meeting.transcript_digest.is_none() {
        // Still running: the digest of what is stored so far.
        transcript.meeting.transcript_digest = Some(integrity::digest(&transcript.meeting, &transcript.segments));
    }
    let digest = transcript.meeting.transcript_digest.clone().unwrap_or_default();
    caller
        .audit(
            &state,
            ACTION,
            &id,
            "ok",
            Some(json!({"format": format.extension(), "digest": digest})),
        )
        .await?;
    let body = export::render(&transcript, format);
    let disposition = format!("attachment; filename=\"{}\"", export::file_name(&transcript, format));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest) {
        headers.insert("x-transcript-digest", v);
    }
    Ok(response)
}

pub(super) async fn verify(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "transcript.verify";
    caller.require(&state, ACTION, &id, OFFICERS).await?;
    let verification = state
        .store
        .verify_meeting(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&id))?;
    if !verification.ok {
        tracing::warn!(meeting = %id, breaks = verification.breaks.len(), "transcript chain is broken");
    }
    caller
        .audit(
            &state,
            ACTION,
            &id,
            "ok",
            Some(json!({"ok": verification.ok, "breaks": verification.breaks.len()})),
        )
        .await?;
    Ok(axum::Json(verification).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HoldRequest {
    hold: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn hold(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<axum::Json<HoldRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "hold";
    caller.require(&state, ACTION, &id, OFFICERS).await?;
    let axum::Json(request) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"hold\": true|false, \"reason\": text}}: {}",
            e.body_text()
        ))
    })?;
    let hold = if request.hold {
        let reason = request.reason.as_deref().map(str::trim).unwrap_or_default().to_owned();
        if reason.is_empty() {
            return Err(ApiError::bad_request(
                "reason is required to put a meeting under legal hold",
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(ApiError::bad_request(format!(
                "reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        Some(LegalHold {
            since: crate::store::now_ms(),
            reason,
            set_by: caller.identity.actor.clone(),
        })
    } else {
        None
    };
    if !state
        .store
        .set_legal_hold(&id, hold.as_ref())
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found(&id));
    }
    let action = if request.hold { "hold.on" } else { "hold.off" };
    tracing::info!(meeting = %id, actor = %caller.identity.actor, "{action}");
    caller
        .audit(
            &state,
            action,
            &id,
            "ok",
            hold.as_ref().map(|h| json!({"reason": h.reason})),
        )
        .await?;
    let meeting = state
        .store
        .meeting(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&id))?;
    let current = state.store.legal_hold(&id).await.map_err(ApiError::internal)?;
    Ok(axum::Json(meeting_json(&meeting, current.as_ref())).into_response())
}

pub(super) async fn delete_meeting(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "meeting.delete";
    caller.require(&state, ACTION, &id, ADMINISTRATORS).await?;
    match state.store.delete_meeting(&id).await.map_err(ApiError::internal)? {
        Deletion::Deleted(m) => {
            tracing::info!(meeting = %id, actor = %caller.identity.actor, "meeting deleted");
            let detail = json!({"room": m.room, "started_at": m.started_at, "ended_at": m.ended_at, "transcript_digest": m.transcript_digest});
            caller.audit(&state, ACTION, &id, "ok", Some(detail)).await?;
            Ok(axum::Json(json!({ "deleted": id })).into_response())
        }
        Deletion::NotFound => Err(ApiError::not_found(&id)),
        Deletion::Held => Err(ApiError::conflict(format!(
            "meeting {id} is under legal hold; take the hold off first"
        ))),
        Deletion::Running => Err(ApiError::conflict(format!(
            "meeting {id} is still running; stop its transcription first"
        ))),
    }
}
