//! `GET /api/search`: full-text search across transcripts, hits with `<mark>` highlights.

use super::{
    ApiError, ApiState, Caller, ListQuery, OFFICERS, filter_detail, meeting_filter, non_empty, parse_limit_within,
};
use crate::compliance::search::Query as SearchQuery;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

const DEFAULT_HITS: u32 = 100;
const MAX_HITS: u32 = 500;

#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchParams {
    q: Option<String>,
    room: Option<String>,
    participant: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

pub(super) async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "search";
    caller.require(&state, ACTION, "", OFFICERS).await?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = non_empty(params.q).ok_or_else(|| ApiError::bad_request("q is required: the words to search for"))?;
    let query = SearchQuery::parse(&q).map_err(ApiError::bad_request)?;
    let limit = parse_limit_within(non_empty(params.limit), DEFAULT_HITS, MAX_HITS)?;
    let list = ListQuery {
        room: params.room,
        participant: params.participant,
        from: params.from,
        to: params.to,
        limit: None,
    };
    let mut filter = meeting_filter(&state, &caller, ACTION, list, limit).await?;
    // One more than asked, to know whether there were more.
    filter.limit = Some(limit + 1);
    let mut hits = state.store.search(&query, &filter).await.map_err(ApiError::internal)?;
    let truncated = hits.len() > limit as usize;
    hits.truncate(limit as usize);
    let mut detail = filter_detail(&filter);
    detail["q"] = json!(q);
    detail["hits"] = json!(hits.len());
    caller.audit(&state, ACTION, "", "ok", Some(detail)).await?;
    let hits: Vec<_> = hits
        .iter()
        .map(|h| json!({"meeting": h.meeting, "segment": h.segment, "highlight": query.highlight(&h.segment.text)}))
        .collect();
    Ok(axum::Json(json!({"query": q, "hits": hits, "truncated": truncated})).into_response())
}
