//! The admin room API (see `docs/http-api.md`, "Rooms"), with the transcript API's authorization
//! and audit trail:
//!
//! - `GET /api/rooms`: the live rooms and who is in them (administrators);
//! - `GET /api/rooms/{room}`: one room's participants (administrators, or a moderator of the room);
//! - `DELETE /api/rooms/{room}/participants/{id}`: removes a participant, as a moderator's `remove`
//!   does (the participant gets `removed`, the others `participant_left` with reason `removed`);
//! - `DELETE /api/rooms/{room}`: ends the meeting for everyone in it, hidden participants (the
//!   transcriber) included.
//!
//! Rooms exist while someone is in them; a removed participant may join again (a token's expiry
//! and the room's limits still apply). Every call is audited with the room as target.

use crate::api::{ApiError, ApiState, Caller, may_see};
use crate::rooms::MemberView;
use crate::server::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use samtal_protocol::Role;
use serde_json::{Value, json};
use std::sync::Arc;

/// Roles that may act on one room (moderators only on their own).
const ROOM_ADMINS: &[Role] = &[Role::Moderator, Role::Administrator];
/// Roles that may see every room.
const ALL_ROOMS: &[Role] = &[Role::Administrator];

/// The routes, with their own state; merge into the server's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/rooms", get(list))
        .route("/api/rooms/{room}", get(read))
        .route("/api/rooms/{room}", delete(end))
        .route("/api/rooms/{room}/participants/{id}", delete(remove))
        .with_state(state)
}

/// What `removed.by` says when the server, not a participant, removed someone.
fn remover(caller: &Caller) -> String {
    format!("api:{}", caller.actor())
}

fn member_json(m: &MemberView) -> Value {
    json!({
        "id": m.info.id,
        "name": m.info.name,
        "role": m.info.role,
        "hidden": m.hidden,
        "tracks": m.info.tracks,
        "transcription_opt_out": m.info.transcription_opt_out,
    })
}

fn room_json(room: &str, members: &[MemberView]) -> Value {
    json!({
        "room": room,
        "participants": members.iter().map(member_json).collect::<Vec<_>>(),
    })
}

fn no_room(room: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no live room {room}"))
}

/// Refuses (403, audited) unless the caller may act on `room`.
async fn require_room(api: &ApiState, caller: &Caller, action: &str, room: &str) -> Result<(), ApiError> {
    caller.require(api, action, room, ROOM_ADMINS).await?;
    if may_see(caller.claims(), room) {
        return Ok(());
    }
    let message = format!("your token is for room {}, not {room}", caller.claims().room);
    Err(caller.deny(api, action, room, message).await)
}

async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let api = ApiState::of(&state);
    caller.require(&api, "room.list", "", ALL_ROOMS).await?;
    let mut rooms = state.rooms.snapshot();
    rooms.sort_by(|a, b| a.0.cmp(&b.0));
    caller
        .audit(&api, "room.list", "", "ok", Some(json!({ "rooms": rooms.len() })))
        .await?;
    let rooms: Vec<Value> = rooms.iter().map(|(room, members)| room_json(room, members)).collect();
    Ok(axum::Json(json!({ "rooms": rooms })).into_response())
}

async fn read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    let api = ApiState::of(&state);
    require_room(&api, &caller, "room.read", &room).await?;
    let members = state.rooms.members(&room).ok_or_else(|| no_room(&room))?;
    caller.audit(&api, "room.read", &room, "ok", None).await?;
    Ok(axum::Json(room_json(&room, &members)).into_response())
}

async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((room, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let api = ApiState::of(&state);
    require_room(&api, &caller, "room.remove", &room).await?;
    if !state.rooms.contains(&room, &id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no participant {id} in room {room}"),
        ));
    }
    // Audited before it takes effect: if the audit write fails, nobody is removed.
    caller
        .audit(&api, "room.remove", &room, "ok", Some(json!({ "participant": id })))
        .await?;
    tracing::info!(%room, participant = %id, actor = %caller.actor(), "removed through the API");
    state.rooms.remove(&room, &id, remover(&caller));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn end(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    let api = ApiState::of(&state);
    require_room(&api, &caller, "room.end", &room).await?;
    let members = state.rooms.members(&room).ok_or_else(|| no_room(&room))?;
    caller
        .audit(
            &api,
            "room.end",
            &room,
            "ok",
            Some(json!({ "participants": members.len() })),
        )
        .await?;
    tracing::info!(%room, participants = members.len(), actor = %caller.actor(), "meeting ended through the API");
    let removed = state.rooms.end(&room, &remover(&caller));
    Ok(axum::Json(json!({ "room": room, "removed": removed })).into_response())
}
