//! Draining: a server about to stop for maintenance starts no new meetings while the ones it holds
//! go on, and stops when they are over or a deadline has passed.
//!
//! While draining, `GET /readyz` answers 503 (so a load balancer or Kubernetes stops sending it new
//! connections; `/healthz` stays 200, the process is alive), and a `join` to a room this server does
//! not hold gets the fatal error `draining`. Joins to rooms it holds still work: a meeting in
//! progress is not split. Draining starts by `POST /api/drain` (administrators; `samtal drain`
//! calls it), or by SIGTERM, after which the server stops within `limits.drain_secs`.

use crate::api::{ADMINISTRATORS, ApiError, ApiState, Caller};
use crate::server::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a drain looks whether its meetings are over.
const POLL: Duration = Duration::from_millis(250);

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/readyz", get(ready))
        .route("/api/drain", get(status).post(start_by_api))
        .with_state(state)
}

/// Starts draining (idempotent).
pub fn start(state: &AppState) {
    if !state.draining.swap(true, Ordering::SeqCst) {
        state.metrics.draining.set(1);
        tracing::info!(
            rooms = state.rooms.room_count(),
            participants = state.rooms.participant_count(),
            "draining: no new meetings start here"
        );
    }
}

/// Drains and waits until nobody is left or `within` has passed; true when nobody is left.
pub async fn until_empty(state: &AppState, within: Duration) -> bool {
    start(state);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if state.rooms.participant_count() == 0 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
    }
}

fn status_json(state: &AppState) -> Value {
    json!({
        "draining": state.draining.load(Ordering::SeqCst),
        "rooms": state.rooms.room_count(),
        "participants": state.rooms.participant_count(),
    })
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "draining" })),
        )
            .into_response()
    } else {
        axum::Json(json!({ "status": "ready" })).into_response()
    }
}

async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let api = ApiState::of(&state);
    caller.require(&api, "node.read", "", ADMINISTRATORS).await?;
    Ok(axum::Json(status_json(&state)).into_response())
}

async fn start_by_api(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    const ACTION: &str = "node.drain";
    let api = ApiState::of(&state);
    caller.require(&api, ACTION, "", ADMINISTRATORS).await?;
    start(&state);
    let body = status_json(&state);
    caller.audit(&api, ACTION, "", "ok", Some(body.clone())).await?;
    Ok(axum::Json(body).into_response())
}
