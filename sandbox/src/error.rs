//! The sandbox's JSON error envelope, the same shape the server uses: `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A request the sandbox refuses or cannot carry out.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    /// The request is understood but the thing it acts on is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for SandboxError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            SandboxError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            SandboxError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            SandboxError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            SandboxError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
            SandboxError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "sandbox request failed");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}
