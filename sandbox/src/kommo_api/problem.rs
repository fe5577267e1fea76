//! Kommo's error body: `application/problem+json` with `title`, `type`, `status`, `detail` (KOMMO.md §2.1),
//! and for a refused batch `validation-errors`: `[{request_id, errors: [{code, path, detail}]}]`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::check::ItemErrors;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Serialize)]
struct Problem<'a> {
    title: &'a str,
    #[serde(rename = "type")]
    kind: String,
    status: u16,
    detail: &'a str,
    /// Kommo's OAuth refusals name the reason here (e.g. "Authorization code has been revoked").
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(rename = "validation-errors", skip_serializing_if = "Option::is_none")]
    validation_errors: Option<&'a [ItemErrors]>,
}

/// A problem response for `status` with a human `detail`.
pub fn problem(status: StatusCode, detail: &str) -> Response {
    build(status, detail, None, None)
}

/// A problem response with Kommo's OAuth `hint`.
pub fn oauth_problem(status: StatusCode, detail: &str, hint: &str) -> Response {
    build(status, detail, Some(hint), None)
}

/// 400 "Request validation failed" naming every refused item and field.
pub fn validation_failed(items: &[ItemErrors]) -> Response {
    build(StatusCode::BAD_REQUEST, "Request validation failed", None, Some(items))
}

/// 429 with `Retry-After` in seconds.
pub fn too_many_requests(retry_after: u64) -> Response {
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests: at most 7 per second");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn build(status: StatusCode, detail: &str, hint: Option<&str>, validation_errors: Option<&[ItemErrors]>) -> Response {
    let body = Problem {
        title: status.canonical_reason().unwrap_or("Error"),
        kind: format!("https://httpstatus.es/{}", status.as_u16()),
        status: status.as_u16(),
        detail,
        hint,
        validation_errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], json).into_response()
}
