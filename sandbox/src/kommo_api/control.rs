//! Control endpoints under `/sandbox/kommo/`: accounts, Kommo's install and disable requests to the server,
//! expiring tokens, injected faults, seeded contacts and leads, the calls' no-entity answer, and what tests
//! assert on: counters, the write log and the entities.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::crm::{
    CallsMode, Contact, FIRST_STATUS_ID, Field, FieldValue, LOST_STATUS_ID, Lead, PHONE_FIELD_ID, PIPELINE_ID,
    WON_STATUS_ID,
};
use super::ledger::{Account, Fault, User};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedLead {
    name: Option<String>,
    status_id: Option<u64>,
    responsible_user_id: Option<u64>,
}

/// `POST /sandbox/kommo/contacts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedContact {
    account_id: u64,
    name: String,
    #[serde(default)]
    phones: Vec<String>,
    responsible_user_id: Option<u64>,
    #[serde(default)]
    leads: Vec<SeedLead>,
}

/// `POST /sandbox/kommo/contacts`: a contact with its phones and leads, as if made in Kommo by hand (not an
/// API write: not logged, no uniq). Answers `{contact_id, lead_ids}`.
pub(crate) async fn seed_contact(
    State(state): State<crate::State>,
    Json(seed): Json<SeedContact>,
) -> Result<Json<Value>, SandboxError> {
    let mut ledger = state.stand_in.ledger();
    let desk = ledger
        .desk(seed.account_id)
        .ok_or_else(|| SandboxError::BadRequest(format!("no account {}", seed.account_id)))?;
    let account = desk.account;
    let user = |id: Option<u64>| match id {
        None => Ok(account.admin().map(|user| user.id).unwrap_or_default()),
        Some(id) if account.users.iter().any(|user| user.id == id) => Ok(id),
        Some(id) => Err(SandboxError::BadRequest(format!("user {id} is not a user of account {}", account.id))),
    };
    if seed.leads.iter().any(|lead| lead.status_id == Some(0)) {
        return Err(SandboxError::BadRequest("status_id must be a positive stage id".into()));
    }
    let responsible = user(seed.responsible_user_id)?;
    let lead_owners = seed.leads.iter().map(|lead| user(lead.responsible_user_id.or(Some(responsible))));
    let lead_owners = lead_owners.collect::<Result<Vec<u64>, SandboxError>>()?;
    let now = super::unix_now();
    let contact_id = desk.ids.contact();
    let values: Vec<FieldValue> =
        seed.phones.iter().map(|phone| FieldValue { value: phone.clone(), enum_code: "WORK".to_owned() }).collect();
    let fields = if values.is_empty() {
        Vec::new()
    } else {
        vec![Field { field_id: PHONE_FIELD_ID, field_code: "PHONE", values }]
    };
    desk.crm.contacts.insert(
        contact_id,
        Contact {
            id: contact_id,
            name: seed.name,
            first_name: String::new(),
            last_name: String::new(),
            responsible_user_id: responsible,
            created_by: responsible,
            created_at: now,
            updated_at: now,
            fields,
            leads: Vec::new(),
            companies: Vec::new(),
            is_unsorted: false,
        },
    );
    let mut lead_ids = Vec::new();
    for (lead, owner) in seed.leads.into_iter().zip(lead_owners) {
        let id = desk.ids.lead();
        let status_id = lead.status_id.unwrap_or(FIRST_STATUS_ID);
        let closed = status_id == WON_STATUS_ID || status_id == LOST_STATUS_ID;
        desk.crm.leads.insert(
            id,
            Lead {
                id,
                name: lead.name.unwrap_or_else(|| format!("Lead #{id}")),
                price: 0,
                status_id,
                pipeline_id: PIPELINE_ID,
                responsible_user_id: owner,
                created_by: owner,
                created_at: now,
                updated_at: now,
                closed_at: closed.then_some(now),
                contacts: Vec::new(),
                companies: Vec::new(),
            },
        );
        desk.crm.link(id, contact_id);
        lead_ids.push(id);
    }
    Ok(Json(json!({ "contact_id": contact_id, "lead_ids": lead_ids })))
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
