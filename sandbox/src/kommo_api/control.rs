//! Control endpoints under `/sandbox/kommo/`: accounts, Kommo's install and disable requests to the server,
//! expiring tokens, injected faults, seeded contacts, companies and leads, the calls' no-entity answer, and
//! what tests assert on: counters, the write log, the call notifications and the entities.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::crm::CallsMode;
use super::ledger::{Account, Fault, User};
use super::seed::{Edit, EditError, LeadEdit, SeedCompany, SeedContact, SeedContacts};
use super::{CALLBACK_PATH, DISABLE_PATH, KOMMO_USER_AGENT, StandIn};
use crate::error::SandboxError;

/// Kommo waits this long for the install request's answer, and never retries.
const INSTALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `POST /sandbox/kommo/accounts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    id: u64,
    subdomain: String,
    name: Option<String>,
    /// ISO 3166 code; `BR` by default.
    country: Option<String>,
    users: Option<Vec<User>>,
}

fn account_view(stand_in: &StandIn, account: &Account) -> Value {
    let mut view = serde_json::to_value(account).unwrap_or_default();
    view["installed"] = json!(stand_in.installed(account.id));
    view
}

/// Creates an account (idempotent on `id`: an existing one is returned unchanged, with 200 instead of 201).
pub(crate) async fn create_account(
    State(state): State<crate::State>,
    Json(request): Json<NewAccount>,
) -> Result<(StatusCode, Json<Value>), SandboxError> {
    if !crate::token::is_subdomain(&request.subdomain) {
        return Err(SandboxError::BadRequest(format!("`{}` is not a Kommo subdomain", request.subdomain)));
    }
    if let Some(country) = &request.country
        && !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(SandboxError::BadRequest(format!("country `{country}` is not an ISO 3166 alpha-2 code")));
    }
    let stand_in = &state.stand_in;
    let account = stand_in.new_account(request.id, &request.subdomain, request.name, request.country, request.users);
    let (stored, created) = {
        let mut ledger = stand_in.ledger();
        let (stored, created) = ledger.add_account(account);
        (stored.clone(), created)
    };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(account_view(stand_in, &stored))))
}

pub(crate) async fn list_accounts(State(state): State<crate::State>) -> Json<Value> {
    let accounts: Vec<Account> = state.stand_in.ledger().accounts().cloned().collect();
    Json(Value::Array(accounts.iter().map(|account| account_view(&state.stand_in, account)).collect()))
}

/// One account with `installed`: whether it holds a live grant (installed and not disabled).
pub(crate) async fn show_account(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, SandboxError> {
    let account = state.stand_in.ledger().account(id).cloned().ok_or(SandboxError::NotFound)?;
    Ok(Json(account_view(&state.stand_in, &account)))
}

fn known_account(stand_in: &StandIn, id: u64) -> Result<Account, SandboxError> {
    stand_in.ledger().account(id).cloned().ok_or_else(|| SandboxError::BadRequest(format!("no account {id}")))
}

/// Kommo's server-to-server request; answers `{status, elapsed_ms}` (and the code, for replay tests).
async fn kommo_get(state: &crate::State, url: reqwest::Url) -> Result<(u16, u128), SandboxError> {
    let started = Instant::now();
    let response = state
        .http
        .get(url)
        .header(header::USER_AGENT, HeaderValue::from_static(KOMMO_USER_AGENT))
        .timeout(INSTALL_TIMEOUT)
        .send()
        .await
        .map_err(|error| SandboxError::Upstream(format!("the server did not answer: {}", error.without_url())))?;
    Ok((response.status().as_u16(), started.elapsed().as_millis()))
}

fn server_url(state: &crate::State, path: &str) -> Result<reqwest::Url, SandboxError> {
    reqwest::Url::parse(&format!("{}{path}", state.config.kommo.audience))
        .map_err(|error| SandboxError::Internal(format!("PUBLIC_BASE_URL: {error}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallRequest {
    account_id: u64,
    /// Sent instead of the stand-in's `host:port` (to forge a referer).
    referer: Option<String>,
    /// The user whose code it is; by default the account's admin (only admins install in Kommo, but
    /// any user can authorize an installed integration again).
    user_id: Option<u64>,
}

/// `POST /sandbox/kommo/install`: issues a code for the account's admin and sends it to the Redirect URI the
/// way Kommo does when a widget is installed (`from_widget=1`, Kommo's User-Agent, a 3 s wait).
pub(crate) async fn install(
    State(state): State<crate::State>,
    Json(request): Json<InstallRequest>,
) -> Result<Json<Value>, SandboxError> {
    let stand_in = &state.stand_in;
    let account = known_account(stand_in, request.account_id)?;
    let user = request.user_id.or_else(|| account.admin().map(|user| user.id)).unwrap_or_default();
    let code = stand_in.ledger().issue_code(account.id, user, stand_in.settings.code_ttl, Instant::now());
    let mut url = server_url(&state, CALLBACK_PATH)?;
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("referer", request.referer.as_deref().unwrap_or(&stand_in.settings.api_host))
        .append_pair("client_id", &state.config.kommo.client_id)
        .append_pair("from_widget", "1");
    let (status, elapsed_ms) = kommo_get(&state, url).await?;
    tracing::info!(account.id = account.id, status, elapsed_ms, "sent the install request");
    Ok(Json(json!({ "status": status, "elapsed_ms": elapsed_ms, "code": code })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisableRequest {
    account_id: u64,
    /// Send a wrong signature and keep the stand-in's tokens: what a forger (not Kommo) could do.
    #[serde(default)]
    forge: bool,
}

/// The disable hook's signature: lowercase hex HMAC-SHA256 of `client_uuid|account_id`, keyed by the secret.
pub fn disable_signature(client_secret: &str, client_uuid: &str, account_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("{client_uuid}|{account_id}").as_bytes());
    mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `POST /sandbox/kommo/disable`: revokes the account's tokens here, then calls the server's disable hook.
pub(crate) async fn disable(
    State(state): State<crate::State>,
    Json(request): Json<DisableRequest>,
) -> Result<Json<Value>, SandboxError> {
    let stand_in = &state.stand_in;
    let account = known_account(stand_in, request.account_id)?;
    let kommo = &state.config.kommo;
    let account_id = account.id.to_string();
    let signature = if request.forge {
        disable_signature("not-the-client-secret", &kommo.client_id, &account_id)
    } else {
        disable_signature(&kommo.client_secret, &kommo.client_id, &account_id)
    };
    let revoked = if request.forge { 0 } else { stand_in.ledger().revoke_account(account.id) };
    let mut url = server_url(&state, DISABLE_PATH)?;
    url.query_pairs_mut()
        .append_pair("client_uuid", &kommo.client_id)
        .append_pair("account_id", &account_id)
        .append_pair("signature", &signature);
    let (status, elapsed_ms) = kommo_get(&state, url).await?;
    Ok(Json(json!({ "status": status, "elapsed_ms": elapsed_ms, "revoked_grants": revoked })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountRequest {
    account_id: u64,
}

/// `POST /sandbox/kommo/expire`: every access token of the account expires now.
pub(crate) async fn expire(
    State(state): State<crate::State>,
    Json(request): Json<AccountRequest>,
) -> Result<Json<Value>, SandboxError> {
    let stand_in = &state.stand_in;
    known_account(stand_in, request.account_id)?;
    let expired = stand_in.ledger().expire_account(request.account_id, Instant::now());
    Ok(Json(json!({ "expired": expired })))
}

/// `POST /sandbox/kommo/faults`: queues a fault; faults are used in order, each for `count` requests.
pub(crate) async fn add_fault(
    State(state): State<crate::State>,
    Json(fault): Json<Fault>,
) -> Result<Json<Value>, SandboxError> {
    if let Some(status) = fault.status
        && !(400..=599).contains(&status)
    {
        return Err(SandboxError::BadRequest(format!("status {status} is not an error status (400-599)")));
    }
    if fault.status.is_none() && fault.delay_ms.is_none() && !fault.timeout {
        return Err(SandboxError::BadRequest("a fault needs a status, a delay_ms or a timeout".into()));
    }
    let queued = state.stand_in.ledger().add_fault(fault);
    Ok(Json(json!({ "queued": queued })))
}

/// `DELETE /sandbox/kommo/faults`: drops every queued fault.
pub(crate) async fn clear_faults(State(state): State<crate::State>) -> StatusCode {
    state.stand_in.ledger().clear_faults();
    StatusCode::NO_CONTENT
}

/// `GET /sandbox/kommo/stats`.
pub(crate) async fn stats(State(state): State<crate::State>) -> Json<Value> {
    Json(serde_json::to_value(state.stand_in.ledger().stats()).unwrap_or_default())
}

/// `POST /sandbox/kommo/reset-stats`.
pub(crate) async fn reset_stats(State(state): State<crate::State>) -> StatusCode {
    state.stand_in.ledger().reset_stats();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WritesQuery {
    account_id: Option<u64>,
}

/// `GET /sandbox/kommo/writes?account_id=`: the API writes (of one account, or all) in the order answered:
/// `[{account_id, method, path, body, status, committed}]`.
pub(crate) async fn writes(State(state): State<crate::State>, Query(query): Query<WritesQuery>) -> Json<Value> {
    Json(serde_json::to_value(state.stand_in.ledger().writes(query.account_id)).unwrap_or_default())
}

/// `POST /sandbox/kommo/contacts` (see [`SeedContact`]): a contact with its phones, emails, company and
/// leads, as if made in Kommo by hand (not an API write: not logged, no uniq). Answers `{contact_id, lead_ids}`.
pub(crate) async fn seed_contact(
    State(state): State<crate::State>,
    Json(seed): Json<SeedContact>,
) -> Result<Json<Value>, SandboxError> {
    let seeded = state.stand_in.seed_contact(seed).map_err(SandboxError::BadRequest)?;
    Ok(Json(json!({ "contact_id": seeded.id, "lead_ids": seeded.lead_ids })))
}

/// `POST /sandbox/kommo/contacts/batch` `{account_id, contacts: [{name, phones?, emails?, responsible_user_id?,
/// company_id?, leads?}]}` (see [`SeedContacts`]): up to 20 000 contacts seeded like `POST /sandbox/kommo/contacts`,
/// all or none. Answers `{contact_ids: [..], lead_ids: [[..], ..]}` in the order given.
pub(crate) async fn seed_contacts(
    State(state): State<crate::State>,
    Json(seed): Json<SeedContacts>,
) -> Result<Json<Value>, SandboxError> {
    let seeded = state.stand_in.seed_contacts(seed.account_id, seed.contacts).map_err(SandboxError::BadRequest)?;
    let contact_ids: Vec<u64> = seeded.iter().map(|seeded| seeded.id).collect();
    let lead_ids: Vec<Vec<u64>> = seeded.into_iter().map(|seeded| seeded.lead_ids).collect();
    Ok(Json(json!({ "contact_ids": contact_ids, "lead_ids": lead_ids })))
}

fn edit_error(error: EditError) -> SandboxError {
    match error {
        EditError::NotFound => SandboxError::NotFound,
        EditError::Refused(reason) => SandboxError::BadRequest(reason),
    }
}

/// `PATCH /sandbox/kommo/contacts/{id}` `{name?, phones?, responsible_user_id?}` (see [`Edit`]): an edit made in
/// Kommo by hand; `updated_at` moves to now (at least a second past its previous value). Answers the contact as
/// `GET /api/v4/contacts/{id}?with=leads` shows it; 404 for an unknown id.
pub(crate) async fn edit_contact(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
    Json(edit): Json<Edit>,
) -> Result<Json<Value>, SandboxError> {
    state.stand_in.edit_contact(id, edit).map(Json).map_err(edit_error)
}

/// `DELETE /sandbox/kommo/contacts/{id}`: deleted in Kommo by hand → 204; 404 for an unknown id.
pub(crate) async fn delete_contact(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
) -> Result<StatusCode, SandboxError> {
    state.stand_in.delete_contact(id).map_err(edit_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /sandbox/kommo/companies/{id}`: like [`edit_contact`]; answers the company as
/// `GET /api/v4/companies/{id}?with=leads,contacts` shows it.
pub(crate) async fn edit_company(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
    Json(edit): Json<Edit>,
) -> Result<Json<Value>, SandboxError> {
    state.stand_in.edit_company(id, edit).map(Json).map_err(edit_error)
}

/// `PATCH /sandbox/kommo/leads/{id}` `{name?, status_id?, responsible_user_id?, price?}` (see [`LeadEdit`]): a lead
/// moved or handed over in Kommo by hand. Answers the lead as `GET /api/v4/leads/{id}?with=contacts` shows it;
/// 404 for an unknown id, 400 for a stage or user the account lacks.
pub(crate) async fn edit_lead(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
    Json(edit): Json<LeadEdit>,
) -> Result<Json<Value>, SandboxError> {
    state.stand_in.edit_lead(id, edit).map(Json).map_err(edit_error)
}

/// `DELETE /sandbox/kommo/companies/{id}` → 204; 404 for an unknown id.
pub(crate) async fn delete_company(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
) -> Result<StatusCode, SandboxError> {
    state.stand_in.delete_company(id).map_err(edit_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandbox/kommo/companies` (see [`SeedCompany`]): a company with its phones and leads, as if made in
/// Kommo by hand. Answers `{company_id, lead_ids}`.
pub(crate) async fn seed_company(
    State(state): State<crate::State>,
    Json(seed): Json<SeedCompany>,
) -> Result<Json<Value>, SandboxError> {
    let seeded = state.stand_in.seed_company(seed).map_err(SandboxError::BadRequest)?;
    Ok(Json(json!({ "company_id": seeded.id, "lead_ids": seeded.lead_ids })))
}

/// `GET /sandbox/kommo/notifications?account_id=`: the call notifications Kommo accepted
/// (`POST /api/v2/events`), oldest first: `[{type, phone_number, users, notified, entity, created_by,
/// created_at}]`; `entity` is `{entity_type, entity_id}` or `null`.
pub(crate) async fn notifications(
    State(state): State<crate::State>,
    Query(query): Query<AccountQuery>,
) -> Result<Json<Value>, SandboxError> {
    let ledger = state.stand_in.ledger();
    ledger.account(query.account_id).ok_or(SandboxError::NotFound)?;
    let notifications = ledger.crm(query.account_id).map(|crm| crm.notifications.as_slice()).unwrap_or_default();
    Ok(Json(serde_json::to_value(notifications).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallsModeRequest {
    account_id: u64,
    mode: CallsMode,
}

/// `POST /sandbox/kommo/calls-mode` `{account_id, mode: "errors_200" | "problem_400"}`: how `POST /api/v4/calls`
/// answers a call whose number no entity has.
pub(crate) async fn calls_mode(
    State(state): State<crate::State>,
    Json(request): Json<CallsModeRequest>,
) -> Result<Json<Value>, SandboxError> {
    let mut ledger = state.stand_in.ledger();
    let desk = ledger
        .desk(request.account_id)
        .ok_or_else(|| SandboxError::BadRequest(format!("no account {}", request.account_id)))?;
    desk.crm.calls_mode = request.mode;
    Ok(Json(json!({ "account_id": request.account_id, "mode": request.mode })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountQuery {
    account_id: u64,
}

/// `GET /sandbox/kommo/entities?account_id=`: the account's CRM as stored (contacts, companies, leads, notes,
/// tasks, unsorted, calls_mode), for assertions that should not spend API requests.
pub(crate) async fn entities(
    State(state): State<crate::State>,
    Query(query): Query<AccountQuery>,
) -> Result<Json<Value>, SandboxError> {
    let ledger = state.stand_in.ledger();
    ledger.account(query.account_id).ok_or(SandboxError::NotFound)?;
    let crm = ledger.crm(query.account_id);
    let body = match crm {
        Some(crm) => serde_json::to_value(crm).unwrap_or_default(),
        None => serde_json::to_value(super::crm::Crm::default()).unwrap_or_default(),
    };
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Plan {
    webhooks: bool,
}

/// `POST /sandbox/kommo/accounts/{id}/plan {"webhooks": false}`: the account's plan lacks webhooks through the
/// API (Kommo's below Advanced): `/api/v4/webhooks` answers 402 and no delivery is sent; `true` restores it.
/// Answers `{account_id, webhooks}`.
pub(crate) async fn plan(
    State(state): State<crate::State>,
    Path(id): Path<u64>,
    Json(plan): Json<Plan>,
) -> Result<Json<Value>, SandboxError> {
    state.stand_in.set_webhooks_plan(id, plan.webhooks).ok_or(SandboxError::NotFound)?;
    Ok(Json(json!({ "account_id": id, "webhooks": plan.webhooks })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveriesQuery {
    account_id: Option<u64>,
    destination: Option<String>,
}

/// `GET /sandbox/kommo/webhook-deliveries?account_id=&destination=`: Kommo's webhook deliveries, oldest first
/// (see [`super::webhooks::DeliveryRecord`]).
pub(crate) async fn webhook_deliveries(
    State(state): State<crate::State>,
    Query(query): Query<DeliveriesQuery>,
) -> Json<Value> {
    let records = state.stand_in.webhook_deliveries(query.account_id, query.destination.as_deref());
    Json(serde_json::to_value(records).unwrap_or_default())
}
