//! The HTTP API under `/api/` (see `docs/http-api.md`, and `docs/openapi.json`, served at
//! `/api/openapi.json`): meetings, transcripts, exports, full-text search, transcript verification,
//! legal holds, deletion and the audit trail; the live rooms ([`rooms`]).
//!
//! Every request but the OpenAPI document needs a credential ([`Caller`]): a JWT or an API key.
//! Each endpoint names the roles it admits; moderators are further limited to their token's room.
//! Everything that reads, searches, exports, verifies, holds or deletes, and every refusal (403),
//! is written to the audit trail before the answer goes out; if that write fails the request fails.
//! Errors are JSON `{"error": code, "message": text}` with 400, 401, 403, 404, 409 or 500.
//! Handlers never touch SQL: the store does.

mod audit;
mod openapi;
mod records;
pub(crate) mod rooms;
mod search;
#[cfg(test)]
mod tests_compliance;

use crate::auth::{Claims, Identity, Verifier};
use crate::compliance::audit::Event;
use crate::config::AuditConfig;
use crate::store::{LegalHold, Meeting, MeetingFilter, Store};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use samtal_protocol::Role;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Meetings returned when the request names no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit` honoured; larger values are lowered to it.
pub const MAX_LIMIT: u32 = 500;

/// Roles that may read transcripts (moderators only of their room).
pub(crate) const READERS: &[Role] = &[Role::Moderator, Role::Compliance, Role::Administrator];
/// Roles that may search, verify and hold.
const OFFICERS: &[Role] = &[Role::Compliance, Role::Administrator];
/// Roles that may delete and read the audit trail.
pub(crate) const ADMINISTRATORS: &[Role] = &[Role::Administrator];

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: Store,
    verifier: Verifier,
    trusted_proxies: Arc<Vec<IpAddr>>,
}

impl ApiState {
    /// The API's view of the server's state, for routes that live with the server's state (delivery).
    pub(crate) fn of(app: &crate::server::AppState) -> Self {
        Self {
            store: app.store.clone(),
            verifier: app.verifier.clone(),
            trusted_proxies: Arc::new(app.config.audit.trusted_proxies.clone()),
        }
    }
}

/// The meeting, if the caller may see it (a moderator of its room, compliance or administrator);
/// the access is audited as `action`. For routes that live with the server's state.
pub(crate) async fn visible_meeting(
    state: &crate::server::AppState,
    caller: &Caller,
    id: &str,
    action: &str,
) -> Result<crate::store::Meeting, ApiError> {
    let api = ApiState::of(state);
    let meeting = readable_meeting(&api, caller, id, action).await?;
    caller.audit(&api, action, id, "ok", None).await?;
    Ok(meeting)
}

/// The meeting, if the caller may read it (a moderator of its room, compliance or administrator);
/// a refusal is audited as `action`, the access itself is left to the caller to audit. The meeting
/// is looked at before anything else, so a moderator of another room learns nothing more.
async fn readable_meeting(
    api: &ApiState,
    caller: &Caller,
    id: &str,
    action: &str,
) -> Result<crate::store::Meeting, ApiError> {
    caller.require(api, action, id, READERS).await?;
    let meeting = api
        .store
        .meeting(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(id))?;
    caller.require_room(api, action, &meeting).await?;
    Ok(meeting)
}

/// The API's routes, with their own state; merge into the server's router.
pub fn router(store: Store, verifier: Verifier, audit: AuditConfig) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/whoami", get(whoami))
        .route("/api/meetings", get(list_meetings))
        .route("/api/meetings/{id}", axum::routing::delete(records::delete_meeting))
        .route("/api/meetings/{id}/transcript", get(transcript))
        .route("/api/meetings/{id}/chat", get(chat))
        .route("/api/meetings/{id}/export", get(records::export))
        .route("/api/meetings/{id}/verify", get(records::verify))
        .route("/api/meetings/{id}/hold", put(records::hold))
        .route("/api/search", get(search::search))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/export", get(audit::export))
        .route("/api/audit/verify", get(audit::verify))
        .with_state(ApiState {
            store,
            verifier,
            trusted_proxies: Arc::new(audit.trusted_proxies),
        })
}

/// An error response: status plus `{"error": code, "message": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no meeting {id}"))
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub(crate) fn internal(e: impl Into<crate::Error>) -> Self {
        let e: crate::Error = e.into();
        tracing::error!("transcript API: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the transcript store failed; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme is expected.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// An authenticated caller: who, with which role, from which address. Extracting it answers 401
/// for a missing, malformed, expired or wrongly signed credential.
pub(crate) struct Caller {
    identity: Identity,
    /// The client's IP address as the audit trail records it.
    client: String,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let client = client_address(parts, &state.trusted_proxies);
        let api_key = parts.headers.get("x-api-key");
        let credential = match (parts.headers.get(header::AUTHORIZATION), api_key) {
            (Some(value), _) => {
                let value = value
                    .to_str()
                    .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
                match value.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                        token.trim().to_owned()
                    }
                    _ => return Err(ApiError::unauthorized("Authorization header must be 'Bearer <token>'")),
                }
            }
            (None, Some(key)) => {
                let key = key
                    .to_str()
                    .map_err(|_| ApiError::unauthorized("X-Api-Key header is not valid text"))?
                    .trim()
                    .to_owned();
                if !key.starts_with(crate::auth::API_KEY_PREFIX) {
                    return Err(ApiError::unauthorized("X-Api-Key must hold an API key (samtal_…)"));
                }
                key
            }
            (None, None) => {
                return Err(ApiError::unauthorized(
                    "missing Authorization header; send 'Authorization: Bearer <token>' or 'X-Api-Key: <key>'",
                ));
            }
        };
        if !state.verifier.api_enabled() {
            return Err(ApiError::unauthorized(
                "this server verifies no credentials (none of auth.secret, auth.jwks_url, auth.api_keys is set), so the transcript API is closed",
            ));
        }
        let identity = state
            .verifier
            .identify(&credential)
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        Ok(Caller { identity, client })
    }
}

impl FromRequestParts<Arc<crate::server::AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<crate::server::AppState>) -> Result<Self, ApiError> {
        Caller::from_request_parts(parts, &ApiState::of(state)).await
    }
}

/// The TCP peer's address, or the first `X-Forwarded-For` address when the peer is a trusted proxy.
fn client_address(parts: &Parts, trusted: &[IpAddr]) -> String {
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
        return String::new();
    };
    let peer = peer.ip();
    if trusted.contains(&peer)
        && let Some(forwarded) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(first) = forwarded
            .split(',')
            .next()
            .map(str::trim)
            .and_then(|s| s.parse::<IpAddr>().ok())
    {
        return first.to_string();
    }
    peer.to_string()
}

impl Caller {
    pub(crate) fn claims(&self) -> &Claims {
        &self.identity.claims
    }

    /// Who the credential names, as the audit trail records it.
    pub(crate) fn actor(&self) -> &str {
        &self.identity.actor
    }

    fn role(&self) -> Role {
        self.identity.claims.role
    }

    /// Appends an entry for this caller to the audit trail.
    pub(crate) async fn audit(
        &self,
        state: &ApiState,
        action: &str,
        target: &str,
        outcome: &str,
        detail: Option<Value>,
    ) -> Result<(), ApiError> {
        let event = self.event(action, target, outcome, detail);
        state
            .store
            .append_audit(event)
            .await
            .map(drop)
            .map_err(ApiError::internal)
    }

    fn event(&self, action: &str, target: &str, outcome: &str, detail: Option<Value>) -> Event {
        Event {
            at: crate::store::now_ms(),
            actor: self.identity.actor.clone(),
            role: role_name(self.role()),
            action: action.to_owned(),
            target: target.to_owned(),
            client: self.client.clone(),
            outcome: outcome.to_owned(),
            detail: detail
                .map(|d| crate::compliance::canonical_json(&d))
                .unwrap_or_default(),
        }
    }

    /// A 403 for `action`, written to the audit trail (a flood of them from one identity as a count).
    pub(crate) async fn deny(&self, state: &ApiState, action: &str, target: &str, message: String) -> ApiError {
        let event = self.event(action, target, "denied", None);
        match state.store.append_refusal(event).await {
            Ok(written) => {
                if written {
                    tracing::info!(actor = %self.identity.actor, action, target, "refused: {message}");
                }
                ApiError::forbidden(message)
            }
            Err(e) => ApiError::internal(e),
        }
    }

    /// Refuses (403, audited) unless the caller's role is one of `roles`.
    pub(crate) async fn require(
        &self,
        state: &ApiState,
        action: &str,
        target: &str,
        roles: &[Role],
    ) -> Result<(), ApiError> {
        if roles.contains(&self.role()) {
            return Ok(());
        }
        let needed: Vec<String> = roles.iter().map(|r| role_name(*r)).collect();
        Err(self
            .deny(
                state,
                action,
                target,
                format!(
                    "role {} may not do {action}; {} needed",
                    role_name(self.role()),
                    needed.join(" or ")
                ),
            )
            .await)
    }

    /// Refuses (403, audited) a moderator asking for another room's meeting.
    pub(crate) async fn require_room(&self, state: &ApiState, action: &str, meeting: &Meeting) -> Result<(), ApiError> {
        if may_see(self.claims(), &meeting.room) {
            return Ok(());
        }
        let message = format!(
            "your token is for room {}; this meeting was in another room",
            self.claims().room
        );
        Err(self.deny(state, action, &meeting.id, message).await)
    }
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{role:?}"))
}

/// Whether `claims` may see meetings of `room`.
pub(crate) fn may_see(claims: &Claims, room: &str) -> bool {
    match claims.role {
        Role::Compliance | Role::Administrator => true,
        Role::Moderator => claims.allows_room(room),
        _ => false,
    }
}

/// A meeting as the API shows it: with its legal hold (or `null`).
fn meeting_json(meeting: &Meeting, hold: Option<&LegalHold>) -> Value {
    let mut value = serde_json::to_value(meeting).unwrap_or_default();
    value["legal_hold"] = serde_json::to_value(hold).unwrap_or_default();
    value
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    room: Option<String>,
    participant: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

pub(crate) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// A time parameter: milliseconds since the Unix epoch, or an RFC 3339 time.
fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be milliseconds since the Unix epoch or an RFC 3339 time such as 2025-03-01T09:00:00Z, not {value:?}"
            ))
        })
}

fn parse_limit(value: Option<String>) -> Result<u32, ApiError> {
    parse_limit_within(value, DEFAULT_LIMIT, MAX_LIMIT)
}

/// `limit`: a positive integer, `default` when absent, lowered to `max`.
pub(crate) fn parse_limit_within(value: Option<String>, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(value) = value else { return Ok(default) };
    match value.parse::<u64>() {
        Ok(0) | Err(_) => Err(ApiError::bad_request(format!(
            "limit must be a positive integer, not {value:?}"
        ))),
        Ok(n) => Ok(n.min(u64::from(max)) as u32),
    }
}

/// The meeting filter of `room`, `participant`, `from`, `to`, with a moderator held to its room.
async fn meeting_filter(
    state: &ApiState,
    caller: &Caller,
    action: &str,
    query: ListQuery,
    limit: u32,
) -> Result<MeetingFilter, ApiError> {
    let mut room = non_empty(query.room);
    let claims = caller.claims();
    if claims.role == Role::Moderator && claims.room != "*" {
        match &room {
            Some(r) if !claims.allows_room(r) => {
                let message = format!("your token is for room {}, not {r}", claims.room);
                return Err(caller.deny(state, action, "", message).await);
            }
            _ => room = Some(claims.room.clone()),
        }
    }
    Ok(MeetingFilter {
        room,
        participant: non_empty(query.participant),
        from: non_empty(query.from).map(|v| parse_time("from", &v)).transpose()?,
        to: non_empty(query.to).map(|v| parse_time("to", &v)).transpose()?,
        limit: Some(limit),
    })
}

/// The filters of a request as audit detail.
fn filter_detail(filter: &MeetingFilter) -> Value {
    json!({"room": filter.room, "participant": filter.participant, "from": filter.from, "to": filter.to})
}

async fn whoami(caller: Caller) -> Response {
    axum::Json(json!({"actor": caller.identity.actor, "role": role_name(caller.role()), "room": caller.claims().room}))
        .into_response()
}

async fn list_meetings(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "meetings.list";
    caller.require(&state, ACTION, "", READERS).await?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = parse_limit(non_empty(query.limit.clone()))?;
    let filter = meeting_filter(&state, &caller, ACTION, query, limit).await?;
    let meetings = state.store.meetings(&filter).await.map_err(ApiError::internal)?;
    let holds = state.store.legal_holds().await.map_err(ApiError::internal)?;
    let mut detail = filter_detail(&filter);
    detail["results"] = json!(meetings.len());
    caller.audit(&state, ACTION, "", "ok", Some(detail)).await?;
    let meetings: Vec<Value> = meetings.iter().map(|m| meeting_json(m, holds.get(&m.id))).collect();
    Ok(axum::Json(json!({ "meetings": meetings })).into_response())
}

async fn transcript(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "transcript.read";
    readable_meeting(&state, &caller, &id, ACTION).await?;
    let transcript = state
        .store
        .transcript(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&id))?;
    let hold = state.store.legal_hold(&id).await.map_err(ApiError::internal)?;
    caller.audit(&state, ACTION, &id, "ok", None).await?;
    let mut body = serde_json::to_value(&transcript).unwrap_or_default();
    body["meeting"] = meeting_json(&transcript.meeting, hold.as_ref());
    Ok(axum::Json(body).into_response())
}

/// `GET /api/meetings/{id}/chat`: the chat kept with a transcribed meeting (`transcription.keep_chat`),
/// oldest first; readable and audited (`chat.read`) as the transcript is.
async fn chat(State(state): State<ApiState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    const ACTION: &str = "chat.read";
    readable_meeting(&state, &caller, &id, ACTION).await?;
    let messages = state.store.chat(&id).await.map_err(ApiError::internal)?;
    caller.audit(&state, ACTION, &id, "ok", None).await?;
    let messages: Vec<_> = messages
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "id": m.message_id, "participant_id": m.participant_id, "name": m.name, "text": m.text, "at": m.at,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "meeting_id": id, "messages": messages })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mint;
    use crate::config::AuthConfig;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request};
    use samtal_protocol::Segment;
    use serde_json::Value;
    use std::time::Duration;
    use tower::ServiceExt;

    const SECRET: &str = "api-test-secret";

    struct Fixture {
        _dir: tempfile::TempDir,
        app: Router,
        /// Meeting ids: two in room "alpha" (older, newer), one in "beta".
        alpha_old: String,
        alpha_new: String,
        beta: String,
    }

    fn token(room: &str, role: Role) -> String {
        mint(SECRET, room, Some("Tester"), role, Duration::from_secs(300)).unwrap()
    }

    fn seg(utterance: &str, who: &str, start_ms: i64, text: &str) -> Segment {
        Segment {
            utterance_id: utterance.into(),
            participant_id: who.into(),
            start_ms,
            end_ms: start_ms + 900,
            text: text.into(),
            language: Some("sv".into()),
            confidence: Some(0.75),
            is_final: true,
        }
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("api.db").display());
        let store = Store::connect(&url).await.unwrap();
        // 2025-03-01T09:00:00Z and a day later.
        let day1 = 1_740_819_600_000;
        let day2 = day1 + 86_400_000;
        let alpha_old = store.start_meeting_at("alpha", Some("sv"), day1).await.unwrap().id;
        store.add_participant(&alpha_old, "p-anna", "Anna").await.unwrap();
        store.add_participant(&alpha_old, "p-bo", "Bo").await.unwrap();
        // Stored out of order; the transcript is ordered by start.
        store
            .add_segment(&alpha_old, &seg("u2", "p-bo", day1 + 5_000, "Hej Anna."), "Bo")
            .await
            .unwrap();
        store
            .add_segment(&alpha_old, &seg("u1", "p-anna", day1 + 1_000, "Hej Bo."), "Anna")
            .await
            .unwrap();
        store.end_meeting(&alpha_old, day1 + 60_000).await.unwrap();
        let alpha_new = store.start_meeting_at("alpha", None, day2).await.unwrap().id;
        store.add_participant(&alpha_new, "p-bo", "Bo").await.unwrap();
        let beta = store
            .start_meeting_at("beta", Some("en"), day2 + 1_000)
            .await
            .unwrap()
            .id;
        store.add_participant(&beta, "p-cleo", "Cleo").await.unwrap();
        let verifier = Verifier::new(AuthConfig {
            secret: Some(SECRET.into()),
            ..Default::default()
        });
        Fixture {
            _dir: dir,
            app: router(store, verifier, AuditConfig::default()),
            alpha_old,
            alpha_new,
            beta,
        }
    }

    async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::get(uri);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        raw(app, request.body(Body::empty()).unwrap()).await
    }

    async fn raw(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        assert_eq!(
            headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{status}"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn ids(body: &Value) -> Vec<String> {
        body["meetings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn missing_malformed_and_invalid_tokens_get_401_naming_the_problem() {
        let f = fixture().await;
        let (status, headers, body) = get(&f.app, "/api/meetings", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        assert_eq!(body["error"], "unauthorized");
        assert!(
            body["message"].as_str().unwrap().contains("missing Authorization"),
            "{body}"
        );

        let basic = Request::get("/api/meetings")
            .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = raw(&f.app, basic).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("Bearer <token>"), "{body}");

        let (status, _, body) = get(&f.app, "/api/meetings", Some("not.a.jwt")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("malformed"), "{body}");

        let foreign = mint(
            "another-secret",
            "*",
            None,
            Role::Administrator,
            Duration::from_secs(60),
        )
        .unwrap();
        let (status, _, body) = get(&f.app, &format!("/api/meetings/{}/transcript", f.beta), Some(&foreign)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("InvalidSignature"), "{body}");

        let exp = (crate::store::now_ms() / 1000 - 3600) as u64;
        let claims = Claims {
            room: "*".into(),
            name: None,
            role: Role::Administrator,
            exp,
            sub: None,
        };
        let expired = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let (status, _, body) = get(&f.app, "/api/meetings", Some(&expired)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("xpired"), "{body}");
    }

    #[tokio::test]
    async fn a_server_without_token_verification_keeps_the_api_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("open.db").display()))
            .await
            .unwrap();
        let app = router(store, Verifier::new(AuthConfig::default()), AuditConfig::default());
        let (status, _, body) = get(&app, "/api/meetings", Some(&token("*", Role::Administrator))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("auth.secret"), "{body}");
    }

    #[tokio::test]
    async fn participant_and_service_roles_get_403() {
        let f = fixture().await;
        for role in [Role::Participant, Role::Service] {
            let t = token("alpha", role);
            let (status, _, body) = get(&f.app, "/api/meetings", Some(&t)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}");
            assert_eq!(body["error"], "forbidden");
            let (status, _, _) = get(&f.app, &format!("/api/meetings/{}/transcript", f.alpha_old), Some(&t)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}");
        }
    }

    #[tokio::test]
    async fn moderators_see_only_their_rooms_meetings() {
        let f = fixture().await;
        let t = token("alpha", Role::Moderator);
        let (status, _, body) = get(&f.app, "/api/meetings", Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&body), vec![f.alpha_new.clone(), f.alpha_old.clone()]);
        let (status, _, body) = get(&f.app, "/api/meetings?room=alpha", Some(&t)).await;
        assert_eq!((status, ids(&body).len()), (StatusCode::OK, 2));
        let (status, _, body) = get(&f.app, "/api/meetings?room=beta", Some(&t)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["message"].as_str().unwrap().contains("alpha"), "{body}");

        let (status, _, body) = get(&f.app, &format!("/api/meetings/{}/transcript", f.alpha_old), Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["meeting"]["room"], "alpha");
        let (status, _, body) = get(&f.app, &format!("/api/meetings/{}/transcript", f.beta), Some(&t)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"], "forbidden");

        // A moderator token for every room (`*`) sees every room.
        let (status, _, body) = get(&f.app, "/api/meetings", Some(&token("*", Role::Moderator))).await;
        assert_eq!((status, ids(&body).len()), (StatusCode::OK, 3));
    }

    #[tokio::test]
    async fn compliance_and_administrators_see_and_filter_everything() {
        let f = fixture().await;
        for role in [Role::Compliance, Role::Administrator] {
            // The room in their token does not restrict them.
            let t = token("elsewhere", role);
            let (status, _, body) = get(&f.app, "/api/meetings", Some(&t)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                ids(&body),
                vec![f.beta.clone(), f.alpha_new.clone(), f.alpha_old.clone()],
                "{role:?}"
            );
            let (status, _, _) = get(&f.app, &format!("/api/meetings/{}/transcript", f.beta), Some(&t)).await;
            assert_eq!(status, StatusCode::OK);
        }
        let t = token("*", Role::Compliance);
        let q = |query: &str| format!("/api/meetings?{query}");
        assert_eq!(
            ids(&get(&f.app, &q("room=beta"), Some(&t)).await.2),
            vec![f.beta.clone()]
        );
        assert_eq!(
            ids(&get(&f.app, &q("participant=bo"), Some(&t)).await.2),
            vec![f.alpha_new.clone(), f.alpha_old.clone()]
        );
        assert_eq!(
            ids(&get(&f.app, &q("participant=p-cleo"), Some(&t)).await.2),
            vec![f.beta.clone()]
        );
        assert_eq!(
            ids(&get(&f.app, &q("participant=nobody"), Some(&t)).await.2),
            Vec::<String>::new()
        );
        // `to` is exclusive, `from` inclusive; milliseconds or RFC 3339.
        assert_eq!(
            ids(&get(&f.app, &q("to=2025-03-02T09:00:00Z"), Some(&t)).await.2),
            vec![f.alpha_old.clone()]
        );
        assert_eq!(
            ids(&get(&f.app, &q("from=1740906000000"), Some(&t)).await.2),
            vec![f.beta.clone(), f.alpha_new.clone()]
        );
        assert_eq!(
            ids(&get(
                &f.app,
                &q("from=2025-03-02T10:00:00%2B01:00&to=1740906000001&room="),
                Some(&t)
            )
            .await
            .2),
            vec![f.alpha_new.clone()]
        );
        assert_eq!(ids(&get(&f.app, &q("limit=1"), Some(&t)).await.2), vec![f.beta.clone()]);
        assert_eq!(ids(&get(&f.app, &q("limit=100000"), Some(&t)).await.2).len(), 3);
    }

    #[tokio::test]
    async fn bad_query_parameters_get_400() {
        let f = fixture().await;
        let t = token("*", Role::Administrator);
        for query in ["limit=0", "limit=ten", "from=yesterday", "to=2025-13-01T00:00:00Z"] {
            let (status, _, body) = get(&f.app, &format!("/api/meetings?{query}"), Some(&t)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(body["error"], "bad_request");
            let name = query.split('=').next().unwrap();
            assert!(body["message"].as_str().unwrap().starts_with(name), "{body}");
        }
        // Without a valid token the answer is 401 whatever the query.
        let (status, _, _) = get(&f.app, "/api/meetings?limit=0", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn transcript_has_meeting_participants_and_ordered_segments() {
        let f = fixture().await;
        let t = token("*", Role::Administrator);
        let (status, _, body) = get(&f.app, &format!("/api/meetings/{}/transcript", f.alpha_old), Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        let m = &body["meeting"];
        assert_eq!(
            (m["id"].as_str(), m["room"].as_str()),
            (Some(f.alpha_old.as_str()), Some("alpha"))
        );
        assert_eq!(
            (m["started_at"].as_i64(), m["ended_at"].as_i64()),
            (Some(1_740_819_600_000), Some(1_740_819_660_000))
        );
        assert_eq!(m["language"], "sv");
        let names: Vec<_> = body["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Anna", "Bo"]);
        let segments = body["segments"].as_array().unwrap();
        assert_eq!(segments.len(), 2);
        let first = &segments[0];
        assert_eq!(first["utterance_id"], "u1");
        assert_eq!(first["participant_id"], "p-anna");
        assert_eq!(first["speaker_name"], "Anna");
        assert_eq!(first["text"], "Hej Bo.");
        assert_eq!(
            (first["start_ms"].as_i64(), first["end_ms"].as_i64()),
            (Some(1_740_819_601_000), Some(1_740_819_601_900))
        );
        assert_eq!(first["language"], "sv");
        assert_eq!(first["confidence"].as_f64(), Some(0.75));
        assert_eq!(segments[1]["speaker_name"], "Bo");

        // A running meeting without segments: ended_at null, empty segments.
        let (status, _, body) = get(&f.app, &format!("/api/meetings/{}/transcript", f.alpha_new), Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["meeting"]["ended_at"].is_null());
        assert_eq!(body["segments"], json!([]));
    }

    #[tokio::test]
    async fn unknown_meeting_is_404_for_every_allowed_role() {
        let f = fixture().await;
        for t in [token("alpha", Role::Moderator), token("*", Role::Compliance)] {
            let (status, _, body) = get(&f.app, "/api/meetings/no-such-meeting/transcript", Some(&t)).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["error"], "not_found");
            assert!(body["message"].as_str().unwrap().contains("no-such-meeting"), "{body}");
        }
    }

    #[tokio::test]
    async fn store_failures_are_500_without_details() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("closed.db").display()))
            .await
            .unwrap();
        let verifier = Verifier::new(AuthConfig {
            secret: Some(SECRET.into()),
            ..Default::default()
        });
        let app = router(store.clone(), verifier, AuditConfig::default());
        store.close().await;
        let t = token("*", Role::Administrator);
        for uri in ["/api/meetings", "/api/meetings/x/transcript"] {
            let (status, _, body) = get(&app, uri, Some(&t)).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
            assert_eq!(
                body,
                json!({"error": "internal", "message": "the transcript store failed; see the server log"})
            );
        }
    }

    #[tokio::test]
    async fn works_merged_into_a_server_on_a_real_socket() {
        let f = fixture().await;
        // The way the server mounts it: merged next to other routes.
        let app = Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .merge(f.app.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let request = format!(
            "GET /api/meetings?room=beta HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token("*", Role::Compliance)
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
            .await
            .unwrap();
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(ids(&body), vec![f.beta.clone()]);
    }
}
