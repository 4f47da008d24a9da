//! The audit trail for administrators: list, export (JSON, CSV) and verify.

use super::{ADMINISTRATORS, ApiError, ApiState, Caller, non_empty, parse_limit_within, parse_time};
use crate::compliance::audit;
use crate::store::AuditFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

const DEFAULT_ENTRIES: u32 = 100;
const MAX_ENTRIES: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditParams {
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    format: Option<String>,
}

fn filter(params: AuditParams, limit: Option<u32>) -> Result<AuditFilter, ApiError> {
    let after = non_empty(params.after)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("after must be an entry number, not {v:?}")))
        })
        .transpose()?;
    Ok(AuditFilter {
        from: non_empty(params.from).map(|v| parse_time("from", &v)).transpose()?,
        to: non_empty(params.to).map(|v| parse_time("to", &v)).transpose()?,
        actor: non_empty(params.actor),
        action: non_empty(params.action),
        target: non_empty(params.target),
        after,
        limit,
    })
}

fn detail(f: &AuditFilter) -> serde_json::Value {
    json!({"from": f.from, "to": f.to, "actor": f.actor, "action": f.action, "target": f.target, "after": f.after})
}

pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "audit.read";
    caller.require(&state, ACTION, "", ADMINISTRATORS).await?;
    let Query(mut params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = parse_limit_within(non_empty(params.limit.take()), DEFAULT_ENTRIES, MAX_ENTRIES)?;
    let filter = filter(params, Some(limit))?;
    let entries = state.store.audit_entries(&filter).await.map_err(ApiError::internal)?;
    caller.audit(&state, ACTION, "", "ok", Some(detail(&filter))).await?;
    let head = state.store.audit_head().await.map_err(ApiError::internal)?;
    Ok(axum::Json(json!({"entries": entries, "head": head})).into_response())
}

pub(super) async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "audit.export";
    caller.require(&state, ACTION, "", ADMINISTRATORS).await?;
    let Query(mut params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let csv = match non_empty(params.format.take()).as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be json or csv, not {other:?}"
            )));
        }
    };
    if params.limit.is_some() {
        return Err(ApiError::bad_request(
            "limit: an export has no limit; use from, to or after",
        ));
    }
    let filter = filter(params, None)?;
    let entries = state.store.audit_entries(&filter).await.map_err(ApiError::internal)?;
    let mut d = detail(&filter);
    d["format"] = json!(if csv { "csv" } else { "json" });
    d["entries"] = json!(entries.len());
    caller.audit(&state, ACTION, "", "ok", Some(d)).await?;
    let (body, content_type, ext) = if csv {
        (audit::csv(&entries), "text/csv; charset=utf-8", "csv")
    } else {
        (
            serde_json::to_string_pretty(&entries).unwrap_or_default(),
            "application/json",
            "json",
        )
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"samtal-audit.{ext}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

pub(super) async fn verify(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    const ACTION: &str = "audit.verify";
    caller.require(&state, ACTION, "", ADMINISTRATORS).await?;
    let verification = state.store.verify_audit().await.map_err(ApiError::internal)?;
    if !verification.ok {
        tracing::warn!(breaks = verification.breaks.len(), "the audit trail's chain is broken");
    }
    caller
        .audit(
            &state,
            ACTION,
            "",
            "ok",
            Some(json!({"ok": verification.ok, "breaks": verification.breaks.len()})),
        )
        .await?;
    Ok(axum::Json(verification).into_response())
}
