//! The widget's call endpoints: the manager's call result, and the account's failed Kommo deliveries
//! (dead letters) with a retry. The account comes from the verified token only.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use shared::api::{FailedDelivery, paths};
use shared::rules::CallResult;

use super::AppState;
use super::error::{ApiError, json_body};
use super::widget::{AdminAuth, WidgetAuth};
use crate::clock::unix_millis;
use crate::jobs::KIND_CALL;
use crate::store::{AccountId, CallParties};
use shared::{CallHandling, FieldError, ValidationCode, WidgetBehaviour};

/// Dead letters shown to an account's admin at most.
const FAILED_LIST_LIMIT: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::CALL_OPTIONS, get(call_options))
        .route(paths::CALL_RESULT, post(call_result))
        .route(paths::FAILED_DELIVERIES, get(failed_deliveries))
        .route(paths::RETRY_DELIVERY, post(retry_delivery))
}

/// `GET /widget/v1/calls/options`: the part of the settings every user's widget applies (whether to
/// ask for a call result and a quality rating, the ringing sound, auto-open); nothing else of the
/// settings, which are the admins'. The defaults before the first save.
async fn call_options(State(state): State<AppState>, auth: WidgetAuth) -> Result<Json<WidgetBehaviour>, ApiError> {
    let stored = state.store.settings(auth.account).await?;
    let handling: CallHandling = stored.and_then(|row| serde_json::from_str(&row.config).ok()).unwrap_or_default();
    Ok(Json(handling.widget))
}

/// `POST /widget/v1/calls/{call_id}/result`: stored, then the call's job merges it with the call,
/// whether the call's end arrived already or not. One result per call.
async fn call_result(
    State(state): State<AppState>,
    auth: WidgetAuth,
    Path(call_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let result: CallResult = json_body(body, "call result")?;
    let refused = result.validate(unix_millis() / 1000);
    if !refused.is_empty() {
        return Err(ApiError::Validation(refused));
    }
    let parties = state.store.call_parties(auth.account, &call_id).await?.ok_or(ApiError::NotFound)?;
    // The call's manager records its result; an admin may do it for anyone.
    if responsible_user(&state, auth.account, &parties).await? != Some(auth.user_id)
        && !state.roles.is_admin(&state.installer.kommo, &auth).await?
    {
        return Err(ApiError::Denied("not_your_call", "Only the call's manager or an admin can record its result."));
    }
    // The result may only go to an entity tied to the call's number (or where the call already landed).
    if let Some(entity) = result.entity {
        let landed = parties.entity.as_ref().is_some_and(|(kind, id)| kind == entity.kind.as_str() && *id == entity.id);
        let country = state.store.account_country(auth.account).await?;
        if !landed
            && !crate::calls::lookup::entity_has_number(
                &state.installer.kommo,
                auth.account,
                entity,
                &parties.client_number,
                country.as_deref(),
            )
            .await?
        {
            return Err(ApiError::Validation(vec![FieldError {
                field: "entity".to_owned(),
                code: ValidationCode::NotTiedToCall,
            }]));
        }
    }
    let text = serde_json::to_string(&result).map_err(anyhow::Error::from)?;
    if !state.store.insert_call_result(auth.account, &call_id, &text, auth.user_id, unix_millis()).await? {
        return Err(ApiError::Conflict("result_exists", "A result was already recorded for this call."));
    }
    tracing::info!(account.id = auth.account.get(), call.id = %call_id, user.id = auth.user_id, "call result stored");
    state.jobs_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))))
}

/// The Kommo user a call belongs to: the one it was delivered for, else its extension's user, else the
/// account's fallback user for unmapped extensions.
async fn responsible_user(
    state: &AppState,
    account: AccountId,
    parties: &CallParties,
) -> Result<Option<i64>, ApiError> {
    if parties.responsible_user_id.is_some() {
        return Ok(parties.responsible_user_id);
    }
    if let Some(extension) = &parties.extension
        && let Some(user) = state.store.user_for_extension(account, extension).await?
    {
        return Ok(Some(user));
    }
    Ok(state.store.settings(account).await?.and_then(|settings| settings.fallback_user_id))
}

/// `GET /widget/v1/deliveries/failed`: the account's dead letters, newest first.
async fn failed_deliveries(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
) -> Result<Json<Vec<FailedDelivery>>, ApiError> {
    let letters = state.queue.dead_letters(Some(auth.account), FAILED_LIST_LIMIT).await?;
    Ok(Json(letters.iter().map(|letter| letter.view()).collect()))
}

/// `POST /widget/v1/deliveries/failed/{id}/retry`: queues one of the account's dead letters again.
async fn retry_delivery(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    // Another account's job id is "not found": the account filter is part of the update.
    if !state.queue.retry_dead(Some(auth.account), id, unix_millis()).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(
        account.id = auth.account.get(),
        job.id = id,
        kind = KIND_CALL,
        "dead letter queued again by the admin"
    );
    state.jobs_wake.notify_one();
    Ok(StatusCode::ACCEPTED)
}
