//! `GET /api/cluster`: the live nodes and where each room is placed (administrators).

use crate::api::{ADMINISTRATORS, ApiError, ApiState, Caller};
use crate::server::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().route("/api/cluster", get(overview)).with_state(state)
}

async fn overview(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let api = ApiState::of(&state);
    caller.require(&api, "node.read", "", ADMINISTRATORS).await?;
    let Some(cluster) = &state.cluster else {
        return Ok(axum::Json(json!({ "enabled": false, "nodes": [], "rooms": [] })).into_response());
    };
    let listed = async { Ok::<_, crate::Error>((cluster.live_nodes().await?, cluster.placements().await?)) };
    match listed.await {
        Ok((nodes, placements)) => {
            let rooms: Vec<_> = placements
                .into_iter()
                .map(|(room, node)| json!({ "room": room, "node": node }))
                .collect();
            Ok(axum::Json(json!({
                "enabled": true,
                "node": cluster.node_id(),
                "nodes": nodes,
                "rooms": rooms,
            }))
            .into_response())
        }
        Err(e) => {
            tracing::warn!("{e}");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": e.to_string() })),
            )
                .into_response())
        }
    }
}
