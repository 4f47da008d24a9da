//! HTTP routes of Matrix delivery (see `docs/http-api.md`), with the transcript API's
//! authorization and audit trail (a moderator of the meeting's room, compliance or administrator):
//!
//! - `GET /api/meetings/{id}/delivery`: the meeting's Matrix room and the state of each delivery;
//! - `PUT /api/meetings/{id}/matrix-room` `{"matrix_room": "!id"}`: links the meeting to a room
//!   (an ended meeting's summary is queued at once);
//! - `POST /api/meetings/{id}/delivery/retry`: deliveries that were given up are tried again now.

use crate::api::{ApiError, Caller, visible_meeting};
use crate::server::AppState;
use crate::store::{Delivery, DeliveryKind, Meeting, now_ms};
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The routes, with their own state; merge into the server's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/meetings/{id}/delivery", get(status))
        .route("/api/meetings/{id}/delivery/retry", post(retry))
        .route("/api/meetings/{id}/matrix-room", put(link))
        .with_state(state)
}

fn delivery_json(d: &Delivery) -> Value {
    let status = match d.state.as_str() {
        "pending" if d.attempts > 0 => "retrying",
        other => other,
    };
    json!({
        "kind": d.kind,
        "matrix_room": d.matrix_room,
        "status": status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "next_attempt_at": (d.state == "pending").then_some(d.next_attempt_at),
        "sent_at": d.sent_at,
        "event_ids": d.events(),
        "summary_source": d.summary_source,
    })
}

async fn status_body(state: &AppState, meeting: &Meeting) -> Result<Response, ApiError> {
    let deliveries = state.store.deliveries(&meeting.id).await.map_err(ApiError::internal)?;
    Ok(axum::Json(json!({
        "meeting_id": meeting.id,
        "matrix_room": meeting.matrix_room,
        "matrix_enabled": state.config.matrix.enabled(),
        "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meeting = visible_meeting(&state, &caller, &id, "delivery.read").await?;
    status_body(&state, &meeting).await
}

async fn retry(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meeting = visible_meeting(&state, &caller, &id, "delivery.retry").await?;
    state
        .store
        .retry_deliveries(&meeting.id)
        .await
        .map_err(ApiError::internal)?;
    state.outbox.wake();
    status_body(&state, &meeting).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    matrix_room: String,
}

/// A Matrix room id: `!` then at most 254 more printable characters.
pub(crate) fn valid_room_id(id: &str) -> bool {
    id.starts_with('!') && id.len() > 1 && id.len() <= 255 && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

async fn link(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<axum::Json<LinkBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let meeting = visible_meeting(&state, &caller, &id, "matrix.link").await?;
    let axum::Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = body.matrix_room.trim();
    if !valid_room_id(room) {
        return Err(ApiError::bad_request(format!(
            "matrix_room must be a Matrix room id such as !abc:example.org, not {room:?}"
        )));
    }
    state
        .store
        .set_matrix_room(&meeting.id, Some(room))
        .await
        .map_err(ApiError::internal)?;
    if meeting.ended_at.is_none() {
        // A running meeting: its room (and so later joiners' widget) and its summary follow the link.
        state.rooms.link_matrix(&meeting.room, room);
    } else if state.config.matrix.enabled() {
        state
            .store
            .enqueue_delivery(&meeting.id, DeliveryKind::Summary, room, now_ms())
            .await
            .map_err(ApiError::internal)?;
        state.outbox.wake();
    }
    let meeting = state
        .store
        .meeting(&meeting.id)
        .await
        .map_err(ApiError::internal)?
        .unwrap_or(meeting);
    status_body(&state, &meeting).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_checked() {
        assert!(valid_room_id("!abc:example.org") && valid_room_id("!opaqueRoomIdWithoutServer"));
        assert!(!valid_room_id("#alias:example.org") && !valid_room_id("!") && !valid_room_id("!a b"));
        assert!(!valid_room_id(&format!("!{}", "x".repeat(255))));
    }
}
