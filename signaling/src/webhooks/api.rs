//! `GET /api/webhooks/deliveries`: the webhook delivery log, newest first, for administrators
//! (audited as `webhooks.read`). Query: `state` (`pending`, `delivered`, `failed`; all when
//! absent) and `limit` (1–500, 100 by default).

use crate::api::{ADMINISTRATORS, ApiError, ApiState, Caller, non_empty, parse_limit_within};
use crate::server::AppState;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const DEFAULT_ROWS: u32 = 100;
const MAX_ROWS: u32 = 500;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/webhooks/deliveries", get(log))
        .with_state(state)
}

#[derive(Deserialize)]
struct LogParams {
    state: Option<String>,
    limit: Option<String>,
}

async fn log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "webhooks.read";
    let api = ApiState::of(&state);
    caller.require(&api, ACTION, "", ADMINISTRATORS).await?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wanted = non_empty(params.state);
    if let Some(s) = &wanted
        && !["pending", "delivered", "failed"].contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "state must be pending, delivered or failed, not {s:?}"
        )));
    }
    let limit = parse_limit_within(non_empty(params.limit), DEFAULT_ROWS, MAX_ROWS)?;
    let rows = state
        .store
        .webhook_log(wanted.as_deref(), limit)
        .await
        .map_err(ApiError::internal)?;
    let detail = json!({ "state": wanted, "results": rows.len() });
    caller.audit(&api, ACTION, "", "ok", Some(detail)).await?;
    Ok(axum::Json(json!({ "deliveries": rows })).into_response())
}
