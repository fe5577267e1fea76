//! Operator endpoints: `/metrics` and the dead letters of every account. They are not part of the
//! public router unless a token is configured, and no widget or provider credential opens them: they
//! live on their own listener (`OPERATOR_BIND_ADDR`) and/or behind `Authorization: Bearer <OPERATOR_TOKEN>`.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::Mac;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shared::api::FailedDelivery;

use super::AppState;
use super::error::ApiError;
use crate::clock::unix_millis;

/// A dead letter as the operator sees it: with the account it belongs to.
#[derive(Debug, Serialize)]
pub struct OperatorDeadLetter {
    pub account_id: i64,
    #[serde(flatten)]
    pub delivery: FailedDelivery,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub limit: Option<i64>,
}

/// The operator router; `token` (when set) is required on every request.
pub fn router(token: Option<Arc<SecretString>>) -> Router<AppState> {
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/operator/dead-letters", get(dead_letters))
        .route("/operator/dead-letters/{id}/retry", post(retry));
    match token {
        Some(token) => routes.layer(middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move { require_token(&token, request, next).await }
        })),
        None => routes,
    }
}

async fn require_token(token: &SecretString, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "operator token required\n").into_response()
    }
}

/// Compares through HMAC tags of both values, so neither the content nor the length leaks by timing.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    type Tag = hmac::Hmac<sha2::Sha256>;
    let key = b"operator-token-comparison";
    let mut tag = <Tag as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    tag.update(expected);
    let expected_tag = tag.finalize().into_bytes();
    let mut presented_tag = <Tag as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    presented_tag.update(presented);
    presented_tag.verify_slice(&expected_tag).is_ok()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = crate::metrics::render(&state.queue, &state.store).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<OperatorDeadLetter>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let letters = state.queue.dead_letters(None, limit).await?;
    Ok(Json(
        letters
            .iter()
            .map(|letter| OperatorDeadLetter { account_id: letter.account_id, delivery: letter.view() })
            .collect(),
    ))
}

async fn retry(State(state): State<AppState>, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    if !state.queue.retry_dead(None, id, unix_millis()).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(job.id = id, "dead letter queued again by the operator");
    state.jobs_wake.notify_one();
    Ok(StatusCode::ACCEPTED)
}
