//! `GET /openapi.json`: the HTTP API's OpenAPI 3.1 description, `server/openapi.json`, compiled in.

use axum::http::header;
use axum::response::IntoResponse;

/// The document exactly as the repository holds it (`server/tests/openapi.rs` checks it against the router).
const DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
