//! Provider webhooks: `POST /hooks/voip/{hook_id}`, where the unguessable hook id names the account.
//! A 200 is sent only after the event is committed. (Signatures and the durable job queue arrive
//! with the webhook issue; they slot in before `record_call_event` and after it, respectively.)

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use shared::FromWebhook;
use shared::api::IncomingCall;

use super::AppState;
use super::error::ApiError;
use crate::push::PushEvent;

/// Largest body a provider may send; larger ones get 413 before any parsing.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

pub async fn receive(
    State(state): State<AppState>,
    Path(hook_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body?;
    let hook = state.store.hook(&hook_id).await?.ok_or(ApiError::NotFound)?;
    if !hook.active {
        // Kommo's "disable" (active: 'N') stops call processing for the account.
        return Err(ApiError::Conflict("integration_inactive", "The integration is turned off for this account."));
    }
    let account = hook.account;
    let event: FromWebhook = serde_json::from_slice(&body).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    event.validate().map_err(|error| ApiError::BadRequest(error.to_string()))?;

    state.store.record_call_event(account, &event).await?;
    tracing::info!(account.id = account.0, call.id = %event.call_id, status = event.status.as_str(), "call event stored");

    let user_id = match &event.extension {
        Some(extension) => state.store.user_for_extension(account, extension).await?,
        None => None,
    };
    let call = IncomingCall {
        call_id: event.call_id,
        from: event.from,
        to: event.to,
        status: event.status,
        extension: event.extension,
    };
    state.hub.publish(account, PushEvent { user_id, call });
    Ok(Json(json!({ "stored": true })))
}
