//! The settings the admin edits in the widget's modal (`/widget/v1/settings*`): read, save (re-validated
//! with the shared rules, then checked against the VoIP provider before anything is stored), check the
//! provider connection, rotate the webhook signing secret.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use shared::api::{ConnectionCheck, paths};
use shared::{
    CallHandling, CredentialMethod, ExtensionEntry, ExtensionMap, FieldError, IntegrationSettings,
    IntegrationSettingsView, PopupAudience, ProviderSystem, StoredSecret, ValidationCode, ValidationContext,
    VoipCredentials, VoipCredentialsView, WebhookEndpoint,
};

use super::AppState;
use super::error::{ApiError, json_body};
use super::widget::AdminAuth;
use crate::clock::unix_secs;
use crate::crypto::{SealContext, random_token};
use crate::provider::{Credentials, ProviderAccount, ProviderError};
use crate::store::{AccountId, NewEndpoint, SettingsRow, SettingsWrite};
use webhook_signing::WebhookSecret;

/// Where the sealed VoIP password or API key lives; also its AEAD binding.
pub(crate) const VOIP_TOKEN_COLUMN: &str = "widget_settings.voip_token";
/// Where the sealed webhook signing secrets live.
pub(super) const WEBHOOK_SECRET_COLUMN: &str = "widget_settings.webhook_secret";
/// After a rotation the previous signing secret keeps verifying this long, so the admin can update
/// the provider without losing calls.
const PREVIOUS_SECRET_GRACE_SECS: i64 = 24 * 3600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::SETTINGS, get(read).put(save))
        .route(paths::SETTINGS_CHECK, post(check))
        .route(paths::WEBHOOK_SECRET, post(rotate_secret))
        .route(paths::WEBHOOK_REVEAL, post(reveal))
}

/// Answers that carry a signing secret are never stored by a browser or a proxy.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

/// `POST /widget/v1/settings/webhook/reveal`: the webhook address and the current signing secret, for
/// an admin to paste into the provider again (Kommo may close its modal on the save that issued it).
async fn reveal(State(state): State<AppState>, AdminAuth(auth): AdminAuth) -> Result<impl IntoResponse, ApiError> {
    let (Some(row), Some(sealed)) =
        (state.store.settings(auth.account).await?, state.store.webhook_secret(auth.account).await?)
    else {
        return Err(ApiError::Conflict("settings_missing", "Save the settings first: the webhook is created then."));
    };
    let secret = state
        .keyring
        .open(secret_context(auth.account), &sealed)
        .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("stored signing secret")))?;
    tracing::info!(account.id = auth.account.get(), user.id = auth.user_id, "webhook signing secret shown to an admin");
    Ok((NO_STORE, Json(endpoint(&state, &row, Some(secret)))))
}

async fn read(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
) -> Result<Json<IntegrationSettingsView>, ApiError> {
    Ok(Json(view(&state, auth.account, None).await?))
}

async fn save(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input: IntegrationSettings = json_body(body, "settings body")?;
    if !input.active {
        // Kommo's "disable": stop processing; nothing else is validated or changed.
        state.store.deactivate(auth.account, auth.user_id).await?;
        state.hooks.forget();
        state.calls.groups().forget(auth.account);
        tracing::info!(account.id = auth.account.get(), user.id = auth.user_id, "call processing turned off");
        return Ok((NO_STORE, Json(view(&state, auth.account, None).await?)));
    }
    let stored = state.store.settings(auth.account).await?;
    // The mapping is validated against the account's real users: without them nothing is stored.
    let users = state.installer.kommo.active_users(auth.account).await?;
    let ctx = ValidationContext {
        active_user_ids: Some(users.iter().map(|user| user.id).collect::<BTreeSet<i64>>()),
        active_group_ids: Some(users.iter().filter_map(|user| user.group.as_ref().map(|group| group.id)).collect()),
        stored_secret: stored.as_ref().and_then(stored_secret),
        allow_insecure_local: state.provider.policy().allow_insecure_local,
    };
    let errors = input.validate(&ctx);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (credentials, new_secret) = provider_credentials(&state, auth.account, &input.credentials, stored.as_ref())?;
    let provider_account = check_with_provider(&state, input.system, &input.credentials, &credentials).await?;

    let sealed_secret = new_secret.map(|secret| state.keyring.seal(token_context(auth.account), &secret));
    // The login, or the OAuth 2.0 client id: the part of the credentials that is not secret.
    let login = match &input.credentials {
        VoipCredentials::Password { login, .. } => login.trim(),
        VoipCredentials::OAuth2 { client_id, .. } => client_id.trim(),
        VoipCredentials::ApiKey { .. } => "",
    };
    let signing_secret = WebhookSecret::generate().to_text();
    let write = SettingsWrite {
        provider_system: input.system.as_str(),
        credential_method: input.credentials.method().as_str(),
        provider_url: input.credentials.provider_url().trim(),
        voip_login: login,
        sealed_secret,
        voip_account_id: &provider_account.account_id,
        config: serde_json::to_string(&input.call_handling).expect("CallHandling always serialises"),
        fallback_user_id: input.extensions.fallback_user_id,
        extensions: input
            .extensions
            .entries
            .iter()
            .map(|entry| (entry.extension.trim().to_owned(), entry.user_id))
            .collect(),
        user_id: auth.user_id,
        new_endpoint: NewEndpoint {
            hook_id: random_token(24),
            sealed_secret: state.keyring.seal(secret_context(auth.account), &signing_secret),
            hint: hint(&signing_secret),
        },
    };
    let created = state.store.save_settings(auth.account, write).await?;
    state.hooks.forget();
    if state.phone_index {
        // The account's phone sync starts now rather than at the schedule's next round (a sync under way
        // or done lately makes this step a no-op).
        state.store.queue_phone_sync(auth.account, crate::clock::unix_millis()).await?;
        state.jobs_wake.notify_one();
    }
    // The users' groups are read again; when the popup goes to groups, the listing just validated with
    // is the fresh one, so the next call needs no wait for it.
    state.calls.groups().forget(auth.account);
    if input.call_handling.unmapped_calls.to == PopupAudience::Groups {
        state.calls.groups().remember(auth.account, &users);
    }
    tracing::info!(account.id = auth.account.get(), user.id = auth.user_id, "settings saved");
    // The save that issued the signing secret shows it; later an admin asks for it again (reveal).
    Ok((NO_STORE, Json(view(&state, auth.account, created.then_some(signing_secret)).await?)))
}

/// The telephony system whose credentials `POST /widget/v1/settings/check` checks (`?system=`; ours by
/// default).
#[derive(serde::Deserialize)]
struct CheckQuery {
    system: Option<String>,
}

/// `POST /widget/v1/settings/check`: are these credentials accepted by the provider? (Nothing is stored.)
async fn check(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
    axum::extract::Query(query): axum::extract::Query<CheckQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConnectionCheck>, ApiError> {
    let input: VoipCredentials = json_body(body, "credentials body")?;
    let system = match query.system.as_deref() {
        None => ProviderSystem::Standard,
        Some(name) => {
            ProviderSystem::parse(name).ok_or_else(|| ApiError::BadRequest(format!("system: unknown `{name}`")))?
        }
    };
    let refused = |field: &str| {
        ApiError::Validation(vec![FieldError { field: field.to_owned(), code: ValidationCode::NotAvailable }])
    };
    if !system.is_available() {
        return Err(refused("system"));
    }
    if !system.methods().contains(&input.method()) {
        return Err(refused("credentials.method"));
    }
    let stored = state.store.settings(auth.account).await?;
    let ctx = ValidationContext {
        active_user_ids: None,
        active_group_ids: None,
        stored_secret: stored.as_ref().and_then(stored_secret),
        allow_insecure_local: state.provider.policy().allow_insecure_local,
    };
    let errors = input.validate(&ctx);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (credentials, _) = provider_credentials(&state, auth.account, &input, stored.as_ref())?;
    let account = check_with_provider(&state, system, &input, &credentials).await?;
    Ok(Json(ConnectionCheck { account_id: account.account_id, name: account.name }))
}

/// `POST /widget/v1/settings/webhook-secret`: a new signing secret, shown once; the previous one keeps
/// verifying for a day.
async fn rotate_secret(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
) -> Result<impl IntoResponse, ApiError> {
    let secret = WebhookSecret::generate().to_text();
    let sealed = state.keyring.seal(secret_context(auth.account), &secret);
    let rotated = state
        .store
        .rotate_webhook_secret(auth.account, &sealed, &hint(&secret), unix_secs() + PREVIOUS_SECRET_GRACE_SECS)
        .await?;
    state.hooks.forget();
    if !rotated {
        return Err(ApiError::Conflict("settings_missing", "Save the settings first: the webhook is created then."));
    }
    tracing::info!(account.id = auth.account.get(), user.id = auth.user_id, "webhook signing secret rotated");
    let row = state.store.settings(auth.account).await?.ok_or(ApiError::NotFound)?;
    let endpoint = endpoint(&state, &row, Some(secret));
    Ok((StatusCode::OK, NO_STORE, Json(endpoint)))
}

async fn view(
    state: &AppState,
    account: AccountId,
    issued_secret: Option<SecretString>,
) -> Result<IntegrationSettingsView, ApiError> {
    let allow_insecure_provider = state.provider.policy().allow_insecure_local;
    let Some(row) = state.store.settings(account).await? else {
        return Ok(IntegrationSettingsView { allow_insecure_provider, ..IntegrationSettingsView::default() });
    };
    let has_secret = row.voip_token.is_some();
    let provider_url = row.provider_url.clone();
    let credentials = match stored_method(&row) {
        CredentialMethod::Password => {
            VoipCredentialsView::Password { provider_url, login: row.voip_login.clone(), has_password: has_secret }
        }
        CredentialMethod::ApiKey => VoipCredentialsView::ApiKey { provider_url, has_key: has_secret },
        CredentialMethod::OAuth2 => VoipCredentialsView::OAuth2 {
            provider_url,
            client_id: row.voip_login.clone(),
            has_client_secret: has_secret,
        },
    };
    let call_handling: CallHandling = serde_json::from_str(&row.config).unwrap_or_default();
    let entries = state
        .store
        .extensions(account)
        .await?
        .into_iter()
        .map(|(extension, user_id)| ExtensionEntry { extension, user_id })
        .collect();
    Ok(IntegrationSettingsView {
        active: row.active,
        system: ProviderSystem::parse(&row.provider_system).unwrap_or_default(),
        credentials,
        call_handling,
        extensions: ExtensionMap { entries, fallback_user_id: row.fallback_user_id },
        webhook: Some(endpoint(state, &row, issued_secret)),
        allow_insecure_provider,
    })
}

fn endpoint(state: &AppState, row: &SettingsRow, issued_secret: Option<SecretString>) -> WebhookEndpoint {
    WebhookEndpoint {
        url: format!("{}/hooks/voip/{}", state.public_base_url, row.hook_id),
        signing_secret: issued_secret.map(|secret| secret.expose_secret().to_owned()),
        signing_secret_hint: row.webhook_secret_hint.clone(),
    }
}

fn stored_secret(row: &SettingsRow) -> Option<StoredSecret> {
    row.voip_token.as_ref()?;
    Some(StoredSecret { method: stored_method(row), provider_url: row.provider_url.clone() })
}

/// The stored method; the column's CHECK constraint admits only the names `CredentialMethod` knows.
fn stored_method(row: &SettingsRow) -> CredentialMethod {
    CredentialMethod::parse(&row.credential_method).unwrap_or(CredentialMethod::Password)
}

/// The credentials to send to the provider: the typed secret, or the stored one (validation already
/// made sure it was entered for this method and provider). Also returns the new secret, if typed.
fn provider_credentials(
    state: &AppState,
    account: AccountId,
    input: &VoipCredentials,
    stored: Option<&SettingsRow>,
) -> Result<(Credentials, Option<SecretString>), ApiError> {
    let typed = input.secret().map(SecretString::from);
    let secret = match &typed {
        Some(secret) => secret.clone(),
        None => {
            let sealed = stored.and_then(|row| row.voip_token.as_deref()).ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("validation passed without a typed or stored secret"))
            })?;
            state
                .keyring
                .open(token_context(account), sealed)
                .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("stored VoIP secret")))?
        }
    };
    let credentials = match input {
        VoipCredentials::Password { login, .. } => {
            Credentials::Password { login: login.trim().to_owned(), password: secret }
        }
        VoipCredentials::ApiKey { .. } => Credentials::ApiKey { key: secret },
        VoipCredentials::OAuth2 { client_id, .. } => {
            Credentials::OAuth2 { client_id: client_id.trim().to_owned(), client_secret: secret }
        }
    };
    Ok((credentials, typed))
}

/// Asks the provider; its refusals become field errors the admin can act on.
async fn check_with_provider(
    state: &AppState,
    system: ProviderSystem,
    input: &VoipCredentials,
    credentials: &Credentials,
) -> Result<ProviderAccount, ApiError> {
    let url = input.provider_url().trim().trim_end_matches('/');
    let secret_field = match input.method() {
        CredentialMethod::Password => "credentials.password",
        CredentialMethod::ApiKey => "credentials.key",
        CredentialMethod::OAuth2 => "credentials.client_secret",
    };
    state.provider.check_system(system, url, credentials).await.map_err(|error| {
        tracing::info!(%error, "VoIP provider check failed");
        let (field, code) = match error {
            ProviderError::ForbiddenAddress(_) => ("credentials.provider_url", ValidationCode::ForbiddenAddress),
            ProviderError::InvalidUrl(_) => ("credentials.provider_url", ValidationCode::InvalidUrl),
            ProviderError::Unreachable(_) => ("credentials.provider_url", ValidationCode::Unreachable),
            ProviderError::InvalidCredentials(_) | ProviderError::CredentialsRefused => {
                (secret_field, ValidationCode::CredentialsRefused)
            }
            ProviderError::Rejected { .. } | ProviderError::ProviderFailed { .. } | ProviderError::BadResponse(_) => {
                ("credentials.provider_url", ValidationCode::ProviderError)
            }
        };
        ApiError::Validation(vec![FieldError { field: field.to_owned(), code }])
    })
}

fn token_context(account: AccountId) -> SealContext<'static> {
    SealContext { column: VOIP_TOKEN_COLUMN, account_id: account.get() }
}

fn secret_context(account: AccountId) -> SealContext<'static> {
    SealContext { column: WEBHOOK_SECRET_COLUMN, account_id: account.get() }
}

/// The last characters of a secret, enough to tell two apart.
fn hint(secret: &SecretString) -> String {
    let text = secret.expose_secret();
    let tail: String = text.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}
