//! `GET /api/openapi.json`: the API described as OpenAPI 3.1, hand-written in `docs/openapi.json`
//! (checked in, so it is reviewed like code); a test holds it to the router's routes.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub(super) const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

pub(super) async fn document() -> Response {
    let mut response = DOCUMENT.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
