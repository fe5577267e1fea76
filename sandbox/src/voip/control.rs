//! Control endpoints under `/sandbox/voip/`: provider accounts, injected faults, counters, and signed
//! webhook deliveries to our server.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::playback::{Action, Command, Target, Unanswered};
use super::{Account, DEFAULT_EXTENSIONS, EventInput, Fault, Playback, Secret, SentWebhook};
use crate::error::SandboxError;

/// `POST /sandbox/voip/accounts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    login: String,
    password: Option<String>,
    api_key: Option<String>,
    /// An OAuth client for the client credentials grant; both or neither.
    client_id: Option<String>,
    client_secret: Option<String>,
    /// 101 to 105 by default.
    extensions: Option<Vec<String>>,
    /// `voip-{login}` by default.
    account_id: Option<String>,
    name: Option<String>,
    /// How it plays its originated calls; the defaults otherwise.
    playback: Option<Playback>,
}

/// Adds a provider account (201 with it, secrets left out); 400 when it could never sign in or clashes.
pub(crate) async fn create_account(
    State(state): State<crate::State>,
    Json(request): Json<NewAccount>,
) -> Result<(StatusCode, Json<Value>), SandboxError> {
    let login = request.login.trim().to_owned();
    if login.is_empty() || login.contains(':') {
        return Err(SandboxError::BadRequest("login must be non-empty and hold no `:` (HTTP Basic)".into()));
    }
    let given = |value: Option<String>| value.filter(|value| !value.is_empty());
    let (password, api_key) = (given(request.password), given(request.api_key));
    let (client_id, client_secret) = (given(request.client_id), given(request.client_secret));
    if client_id.is_some() != client_secret.is_some() {
        return Err(SandboxError::BadRequest("an OAuth client needs both client_id and client_secret".into()));
    }
    if client_id.as_deref().is_some_and(|id| id.contains(':')) {
        return Err(SandboxError::BadRequest("client_id must hold no `:` (HTTP Basic)".into()));
    }
    if password.is_none() && api_key.is_none() && client_id.is_none() {
        return Err(SandboxError::BadRequest(
            "an account needs a password, an api_key or an OAuth client (client_id and client_secret)".into(),
        ));
    }
    let account = Account {
        account_id: request.account_id.unwrap_or_else(|| format!("voip-{login}")),
        name: request.name.unwrap_or_else(|| format!("Sandbox VoIP {login}")),
        login,
        password,
        api_key,
        client_id,
        client_secret,
        extensions: request.extensions.unwrap_or_else(|| DEFAULT_EXTENSIONS.map(str::to_owned).to_vec()),
        webhook: None,
        playback: request.playback.unwrap_or_default(),
    };
    account.playback.validate().map_err(|error| SandboxError::BadRequest(format!("playback: {error}")))?;
    let view = serde_json::to_value(&account).unwrap_or_default();
    state.voip.book().add_account(account).map_err(SandboxError::BadRequest)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /sandbox/voip/accounts`: every account without its password and API key.
pub(crate) async fn list_accounts(State(state): State<crate::State>) -> Json<Value> {
    Json(serde_json::to_value(&state.voip.book().accounts).unwrap_or_default())
}

/// `POST /sandbox/voip/faults`: queues a fault; faults are used in order, each for `count` requests.
pub(crate) async fn add_fault(
    State(state): State<crate::State>,
    Json(fault): Json<Fault>,
) -> Result<Json<Value>, SandboxError> {
    if let Some(status) = fault.status
        && !(400..=599).contains(&status)
    {
        return Err(SandboxError::BadRequest(format!("status {status} is not an error status (400-599)")));
    }
    if fault.status.is_none() && fault.delay_ms.is_none() {
        return Err(SandboxError::BadRequest("a fault needs a status, a delay_ms, or both".into()));
    }
    let mut book = state.voip.book();
    if fault.count > 0 {
        book.faults.push_back(fault);
    }
    Ok(Json(json!({ "queued": book.faults.len() })))
}

/// `DELETE /sandbox/voip/faults`: drops every queued fault.
pub(crate) async fn clear_faults(State(state): State<crate::State>) -> StatusCode {
    state.voip.book().faults.clear();
    StatusCode::NO_CONTENT
}

/// `GET /sandbox/voip/stats`.
pub(crate) async fn stats(State(state): State<crate::State>) -> Json<Value> {
    Json(serde_json::to_value(&state.voip.book().stats).unwrap_or_default())
}

/// `POST /sandbox/voip/reset-stats`.
pub(crate) async fn reset_stats(State(state): State<crate::State>) -> StatusCode {
    state.voip.book().stats = super::Stats::default();
    StatusCode::NO_CONTENT
}

/// `POST /sandbox/voip/expire-tokens`: every issued access token expires now, as if its lifetime had passed.
pub(crate) async fn expire_tokens(State(state): State<crate::State>) -> Json<Value> {
    let expired = state.voip.book().expire_tokens(std::time::Instant::now());
    Json(json!({ "expired": expired }))
}

/// `POST /sandbox/voip/send` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendRequest {
    /// Where to post: the webhook URL the widget shows in its settings.
    webhook_url: String,
    /// `whsec_<base64>`: the signing secret our server gave the account.
    secret: String,
    event: EventInput,
    /// `msg_<random>` by default; reuse one to send a retry of the same delivery.
    webhook_id: Option<String>,
    /// Seconds added to now for `webhook-timestamp` (negative for a stale delivery).
    #[serde(default)]
    timestamp_offset: i64,
    /// Sent as `webhook-signature` instead of the real signature.
    signature_override: Option<String>,
}

/// Posts the event with Standard Webhooks headers; answers `{status, body, webhook_id, timestamp, signature}`
/// with the webhook's status and body (JSON when it is), 502 when the webhook cannot be reached at all.
pub(crate) async fn send(
    State(state): State<crate::State>,
    Json(request): Json<SendRequest>,
) -> Result<Json<Value>, SandboxError> {
    let url = crate::provider::webhook_target(&state, &request.webhook_url)?;
    let secret =
        Secret::parse(&request.secret).map_err(|error| SandboxError::BadRequest(format!("secret: {error}")))?;
    let webhook_id = request.webhook_id.unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let now = crate::kommo_api::unix_now();
    let timestamp = now + request.timestamp_offset;
    let event = request.event.event(&state.voip.default_account_id, now);
    let call_id = event.call_id.clone();
    let body = serde_json::to_vec(&event).map_err(|error| SandboxError::Internal(error.to_string()))?;
    let signature = request.signature_override.unwrap_or_else(|| secret.sign(&webhook_id, timestamp, &body));
    let signed = crate::provider::Signed { webhook_id: &webhook_id, timestamp, signature: &signature };
    let (status, answer) = crate::provider::deliver(&state, url, body, Some(signed)).await?;
    tracing::info!(call.id = %call_id, upstream.status = status, "posted a signed provider event");
    let sent = SentWebhook { webhook_id: webhook_id.clone(), call_id, status, event: None };
    state.voip.book().stats.webhooks.push(sent);
    Ok(Json(json!({
        "status": status,
        "body": answer,
        "webhook_id": webhook_id,
        "timestamp": timestamp,
        "signature": signature,
    })))
}

/// `PUT /sandbox/voip/accounts/{id}/webhook` body: where the account posts its originated calls' events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookInput {
    /// The webhook URL our server gave the Kommo account (plain http to this machine or the server's origin).
    webhook_url: String,
    /// `whsec_<base64>`: the signing secret our server gave with it.
    secret: String,
}

/// Sets the account's webhook: its next originated calls are played into it. Answers
/// `{account_id, webhook_url}`; 404 for an unknown account, 400 for a URL or secret it cannot use.
pub(crate) async fn set_webhook(
    State(state): State<crate::State>,
    Path(id): Path<String>,
    Json(input): Json<WebhookInput>,
) -> Result<Json<Value>, SandboxError> {
    let url = crate::provider::webhook_target(&state, &input.webhook_url)?;
    let secret = Secret::parse(&input.secret).map_err(|error| SandboxError::BadRequest(format!("secret: {error}")))?;
    let mut book = state.voip.book();
    let account = book.accounts.iter_mut().find(|account| account.account_id == id).ok_or(SandboxError::NotFound)?;
    account.webhook = Some(Target { url: url.clone(), secret });
    tracing::info!(voip.account = %id, "the provider account posts its calls to a new webhook");
    Ok(Json(json!({ "account_id": id, "webhook_url": url.as_str() })))
}

/// `GET /sandbox/voip/accounts/{id}/webhook`: `{account_id, webhook_url}` (null when none), never the secret.
pub(crate) async fn show_webhook(
    State(state): State<crate::State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    let book = state.voip.book();
    let account = book.accounts.iter().find(|account| account.account_id == id).ok_or(SandboxError::NotFound)?;
    let url = account.webhook.as_ref().map(|target| target.url.as_str());
    Ok(Json(json!({ "account_id": id, "webhook_url": url })))
}

/// `DELETE /sandbox/voip/accounts/{id}/webhook`: the account's next calls are only recorded (204).
pub(crate) async fn clear_webhook(
    State(state): State<crate::State>,
    Path(id): Path<String>,
) -> Result<StatusCode, SandboxError> {
    let mut book = state.voip.book();
    let account = book.accounts.iter_mut().find(|account| account.account_id == id).ok_or(SandboxError::NotFound)?;
    account.webhook = None;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /sandbox/voip/accounts/{id}/playback` [`Playback`]: replaces how the account plays its next originated
/// calls (a field left out takes its default); answers the playback. Calls already playing keep theirs.
pub(crate) async fn set_playback(
    State(state): State<crate::State>,
    Path(id): Path<String>,
    Json(playback): Json<Playback>,
) -> Result<Json<Value>, SandboxError> {
    playback.validate().map_err(SandboxError::BadRequest)?;
    let view = serde_json::to_value(&playback).unwrap_or_default();
    state.voip.set_playback(&id, playback).ok_or(SandboxError::NotFound)?;
    Ok(Json(view))
}

/// `GET /sandbox/voip/accounts/{id}/playback`.
pub(crate) async fn show_playback(
    State(state): State<crate::State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    let book = state.voip.book();
    let account = book.accounts.iter().find(|account| account.account_id == id).ok_or(SandboxError::NotFound)?;
    Ok(Json(serde_json::to_value(&account.playback).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallsQuery {
    account_id: Option<String>,
}

/// `GET /sandbox/voip/calls?account_id=`: the originated calls (of one provider account), oldest first, each
/// with its playback's state and delivered events ([`super::PlayedCall`]).
pub(crate) async fn played_calls(State(state): State<crate::State>, Query(query): Query<CallsQuery>) -> Json<Value> {
    let book = state.voip.book();
    let calls: Vec<&super::PlayedCall> = book
        .played_calls()
        .filter(|call| query.account_id.as_deref().is_none_or(|account| call.account_id == account))
        .collect();
    Json(serde_json::to_value(calls).unwrap_or_default())
}

/// `GET /sandbox/voip/calls/{call_id}`: one originated call; 404 when unknown.
pub(crate) async fn played_call(
    State(state): State<crate::State>,
    Path(call_id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    let book = state.voip.book();
    let call = book.played_call(&call_id).ok_or(SandboxError::NotFound)?;
    Ok(Json(serde_json::to_value(call).unwrap_or_default()))
}

/// Hands a playing call an action and answers the call once its event was delivered; 404 for an unknown call,
/// 409 for one not played (its account had no webhook), over, or where the action does not apply.
async fn command(state: &crate::State, call_id: &str, action: Action) -> Result<Json<Value>, SandboxError> {
    let sender = {
        let book = state.voip.book();
        let call = book.played_call(call_id).ok_or(SandboxError::NotFound)?;
        if call.state == "recorded" {
            return Err(SandboxError::Conflict("the call is not played: its account had no webhook".into()));
        }
        book.commands_of(call_id)
    };
    let over = || SandboxError::Conflict("the call is over".into());
    let sender = sender.ok_or_else(over)?;
    let (reply, answer) = oneshot::channel();
    sender.send(Command { action, reply }).map_err(|_| over())?;
    match answer.await {
        Ok(Ok(call)) => Ok(Json(serde_json::to_value(call).unwrap_or_default())),
        Ok(Err(why)) => Err(SandboxError::Conflict(why)),
        Err(_) => Err(over()),
    }
}

/// `POST /sandbox/voip/calls/{call_id}/answer`: the callee answers a ringing call now.
pub(crate) async fn answer_call(
    State(state): State<crate::State>,
    Path(call_id): Path<String>,
) -> Result<Json<Value>, SandboxError> {
    command(&state, &call_id, Action::Answer).await
}

/// `POST /sandbox/voip/calls/{call_id}/end` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndInput {
    /// For a call still ringing: `missed`, `busy` or `failed` (the account's `unanswered_status` by default).
    status: Option<Unanswered>,
    /// For an answered call: the seconds reported (the talk so far, rounded, at least 1, by default).
    duration: Option<u32>,
}

/// `POST /sandbox/voip/calls/{call_id}/end` `{status?, duration?}`: hangs up now; a ringing call ends
/// unanswered, an answered one ends with its duration.
pub(crate) async fn end_call(
    State(state): State<crate::State>,
    Path(call_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, SandboxError> {
    let input: EndInput = if body.iter().all(u8::is_ascii_whitespace) {
        EndInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| SandboxError::BadRequest(format!("body: {error}")))?
    };
    command(&state, &call_id, Action::End { status: input.status, duration: input.duration }).await
}
