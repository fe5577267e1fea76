//! The one JSON error envelope (`shared::api::ErrorBody`) every endpoint answers with.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::FieldError;
use shared::api::{ErrorBody, ErrorDetail};

use crate::auth::TokenError;
use crate::kommo::KommoError;
use webhook_signing::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] TokenError),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The caller may not act on this object (e.g. another user's call): 403 with a stable code.
    #[error("denied: {0}")]
    Denied(&'static str, &'static str),
    /// The endpoint is for the account's Kommo admins, and the caller is not one.
    #[error("admin only")]
    AdminOnly,
    /// Too many requests from this client, account or user: 429 with `Retry-After` (whole seconds,
    /// at least 1). `code` names the limit (`rate_limited`, `ingest_budget`, `too_many_streams`, ...).
    #[error("too many requests ({code})")]
    TooManyRequests { code: &'static str, retry_after: std::time::Duration },
    /// The request conflicts with the account's state: a stable code and a safe message.
    #[error("conflict: {0}")]
    Conflict(&'static str, &'static str),
    /// A call that cannot be placed or a call-list command refused (`shared::api::dial_errors`).
    #[error("dial refused: {}", .0.code)]
    Dial(crate::dialer::DialRefusal),
    #[error("Kommo: {0}")]
    Kommo(#[from] KommoError),
    #[error("payload too large")]
    PayloadTooLarge,
    /// A provider webhook whose signature did not verify.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The request was not complete and answered within `REQUEST_TIMEOUT_SECS`: 408.
    #[error("request timed out")]
    RequestTimeout,
    /// Transient trouble on our side (storage busy, shutting down): 503 with `Retry-After`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(error).context("database"))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

/// Reads a JSON request body as `T`: a size-capped body and a shape error both become the envelope,
/// the latter naming what was being read (`what`) and the offending field.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(&body?).map_err(|error| ApiError::BadRequest(format!("{what}: {error}")))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, fields) = match self {
            ApiError::Unauthorized(TokenError::TooLarge) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "token_too_large",
                "The X-Auth-Token header is too large.".to_owned(),
                Vec::new(),
            ),
            ApiError::Unauthorized(TokenError::NotInstalled) => (
                StatusCode::UNAUTHORIZED,
                "not_installed",
                "This Kommo account has not connected the integration; an admin must install or re-authorize it."
                    .to_owned(),
                Vec::new(),
            ),
            ApiError::Unauthorized(reason) => {
                tracing::info!(%reason, "widget request refused");
                (StatusCode::UNAUTHORIZED, "unauthorized", reason.to_string(), Vec::new())
            }
            ApiError::Validation(fields) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation", "Some fields are invalid.".to_owned(), fields)
            }
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message, Vec::new()),
            ApiError::Conflict(code, message) => (StatusCode::CONFLICT, code, message.to_owned(), Vec::new()),
            ApiError::Dial(refusal) => (
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::CONFLICT),
                refusal.code,
                refusal.message.to_owned(),
                Vec::new(),
            ),
            ApiError::Forbidden(reason) => {
                tracing::info!(%reason, "request refused");
                (StatusCode::FORBIDDEN, "forbidden", "Forbidden.".to_owned(), Vec::new())
            }
            ApiError::Kommo(error) => {
                let (status, code) = match &error {
                    KommoError::NotConnected => (StatusCode::CONFLICT, "kommo_not_connected"),
                    KommoError::NeedsReauth => (StatusCode::CONFLICT, "kommo_needs_reauth"),
                    KommoError::Suspended(_) => (StatusCode::CONFLICT, "kommo_suspended"),
                    KommoError::RateLimited(_) | KommoError::Transient(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "kommo_unavailable")
                    }
                    KommoError::Rejected { .. } => (StatusCode::BAD_GATEWAY, "kommo_rejected"),
                };
                tracing::warn!(%error, "Kommo call failed");
                (status, code, error.to_string(), Vec::new())
            }
            ApiError::Denied(code, message) => {
                tracing::info!(code, "request refused");
                (StatusCode::FORBIDDEN, code, message.to_owned(), Vec::new())
            }
            ApiError::AdminOnly => (
                StatusCode::FORBIDDEN,
                "admin_only",
                "Only an administrator of this Kommo account can do this.".to_owned(),
                Vec::new(),
            ),
            ApiError::TooManyRequests { code, retry_after } => {
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: code.to_owned(),
                        message: "Too many requests; please retry later.".to_owned(),
                        fields: Vec::new(),
                    },
                };
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, seconds.to_string())], Json(body))
                    .into_response();
            }
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request took too long to arrive or to answer; please retry.".to_owned(),
                Vec::new(),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found.".to_owned(), Vec::new()),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.".to_owned(),
                Vec::new(),
            ),
            ApiError::BadSignature(error) => (
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                format!("The webhook signature did not verify: {error}."),
                Vec::new(),
            ),
            ApiError::Unavailable(reason) => {
                tracing::warn!(%reason, "request refused for now");
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: "unavailable".to_owned(),
                        message: "The server cannot store this right now; please retry shortly.".to_owned(),
                        fields: Vec::new(),
                    },
                };
                return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], Json(body)).into_response();
            }
            ApiError::Internal(error) => {
                // Logged once, here; the client gets no internals.
                tracing::error!(error = format!("{error:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Something went wrong on our side; please retry.".to_owned(),
                    Vec::new(),
                )
            }
        };
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message, fields } };
        (status, Json(body)).into_response()
    }
}
