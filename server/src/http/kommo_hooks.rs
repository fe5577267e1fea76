//! Kommo's own webhooks for an account's contact and company changes (`POST /hooks/kommo/{token}`),
//! which keep its phone index fresh between the sync's passes (`calls::index`). Kommo does not sign
//! them: the path's token, made for the account when it was subscribed, is the credential. A body is
//! stored with the job that applies it before the 200 (Kommo waits only a few seconds and gives up on
//! an endpoint that keeps failing); past the account's bound of waiting bodies (100) it is not kept, and the
//! account's next incremental pass is made due instead, which reads the same changes.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::error::ApiError;
use crate::calls::index::MAX_PENDING_EVENTS;
use crate::clock::unix_millis;
use crate::throttle::ClientAddr;

/// Largest body taken: Kommo sends at most a few hundred entities' changes at once.
pub const MAX_KOMMO_HOOK_BODY: usize = 512 * 1024;
/// Longest token looked up; ours are 32 characters of base64url.
const MAX_TOKEN_LEN: usize = 64;

pub async fn receive(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    if let Some(retry_after) = state.throttle.webhook_blocked(client) {
        return Err(ApiError::TooManyRequests { code: "rate_limited", retry_after });
    }
    let body = body.map_err(ApiError::from)?;
    let account =
        if token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            state.store.account_by_kommo_hook(&token).await?
        } else {
            None
        };
    let Some(account) = account else {
        // Spends the caller's budget of refused deliveries, as an unknown provider hook does.
        state.throttle.webhook_failed(client);
        metrics::counter!("kommo_hooks_total", "outcome" => "unknown").increment(1);
        return Err(ApiError::NotFound);
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        metrics::counter!("kommo_hooks_total", "outcome" => "malformed").increment(1);
        return Err(ApiError::BadRequest("the body is not UTF-8 form data".into()));
    };
    match state.store.insert_kommo_event(account, text, MAX_PENDING_EVENTS, unix_millis()).await? {
        Some(_) => {
            metrics::counter!("kommo_hooks_total", "outcome" => "stored").increment(1);
            state.jobs_wake.notify_one();
        }
        None => {
            tracing::warn!(
                account.id = account.get(),
                "Kommo webhook not kept: too many waiting; the next pass reads it"
            );
            metrics::counter!("kommo_hooks_total", "outcome" => "deferred").increment(1);
            state.store.hurry_phone_pass(account).await?;
        }
    }
    Ok(StatusCode::OK)
}
