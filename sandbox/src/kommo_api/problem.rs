//! Kommo's error body: `application/problem+json` with `title`, `type`, `status`, `detail` (KOMMO.md §2.1).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
}

/// A problem response for `status` with a human `detail`.
pub fn problem(status: StatusCode, detail: &str) -> Response {
    build(status, detail, None)
}

/// A problem response with Kommo's OAuth `hint`.
pub fn oauth_problem(status: StatusCode, detail: &str, hint: &str) -> Response {
    build(status, detail, Some(hint))
}

/// 429 with `Retry-After` in seconds.
pub fn too_many_requests(retry_after: u64) -> Response {
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests: at most 7 per second");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn build(status: StatusCode, detail: &str, hint: Option<&str>) -> Response {
    let body = Problem {
        title: status.canonical_reason().unwrap_or("Error"),
        kind: format!("https://httpstatus.es/{}", status.as_u16()),
        status: status.as_u16(),
        detail,
        hint,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], json).into_response()
}
