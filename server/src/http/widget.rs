//! The widget's API (`/widget/v1/*`): every request authenticated by Kommo's disposable token;
//! the account and user come only from that verified token.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use shared::api::{ConnectionState, ConnectionView, KommoGroupView, KommoUserView, PhoneIndexView, paths};

use super::AppState;
use super::error::ApiError;
use crate::auth::{KommoIdentity, TokenError};
use crate::oauth;
use crate::store::{AccountId, AccountState};

/// Header that `$authorizedAjax` fills with the disposable token.
pub const AUTH_HEADER: &str = "x-auth-token";

pub fn router() -> Router<AppState> {
    Router::new().route(paths::CONNECTION, get(connection)).route(paths::USERS, get(users))
}

/// A verified disposable token, accepted once: its `jti` is remembered until the token expires plus
/// the leeway the verifier grants, so it cannot come back inside that window either.
#[derive(Debug, Clone)]
pub struct VerifiedToken(pub KommoIdentity);

impl FromRequestParts<AppState> for VerifiedToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTH_HEADER).ok_or(TokenError::Missing)?;
        let token = header.to_str().map_err(|_| TokenError::Invalid("not text"))?;
        let identity = state.verifier.verify(token)?;
        let replayable_until = identity.expires_at + crate::auth::LEEWAY_SECS as i64;
        if !state.store.remember_token_id(&identity.token_id, replayable_until).await? {
            return Err(TokenError::Invalid("token already used").into());
        }
        Ok(VerifiedToken(identity))
    }
}

/// A widget request from a connected account: the account and user come from the verified token.
#[derive(Debug, Clone, Copy)]
pub struct WidgetAuth {
    pub account: AccountId,
    pub user_id: i64,
    /// The token's `is_admin` claim, when Kommo sent one; see [`Roles`].
    pub is_admin_claim: Option<bool>,
}

impl FromRequestParts<AppState> for WidgetAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let VerifiedToken(identity) = VerifiedToken::from_request_parts(parts, state).await?;
        let account =
            state.store.account_by_kommo_id(identity.kommo_account_id).await?.ok_or(TokenError::NotInstalled)?;
        let info = state.store.account(account).await?.ok_or(TokenError::NotInstalled)?;
        if info.state == AccountState::Disabled {
            return Err(TokenError::NotInstalled.into());
        }
        if info.subdomain != identity.subdomain {
            // Kommo signed the new name: keep it current (the account id never changes).
            state.store.rename_account(account, &identity.subdomain).await?;
        }
        Ok(WidgetAuth { account, user_id: identity.user_id, is_admin_claim: identity.is_admin })
    }
}

/// A widget request from an admin of a connected account: the settings, the users list and failed
/// deliveries are theirs alone. Anyone else gets 403 `admin_only`.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth(pub WidgetAuth);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = WidgetAuth::from_request_parts(parts, state).await?;
        if !state.roles.is_admin(&state.installer.kommo, &auth).await? {
            tracing::info!(account.id = auth.account.get(), user.id = auth.user_id, "admin-only request refused");
            return Err(ApiError::AdminOnly);
        }
        Ok(AdminAuth(auth))
    }
}

/// Who is an admin: the token's `is_admin` claim when Kommo puts one there (KOMMO.md §4 marks it
/// UNCONFIRMED), otherwise the user's `rights.is_admin` from `GET /api/v4/users/{id}`, kept a few
/// minutes per account and user (so a demoted admin loses access within [`ROLE_TTL`]).
#[derive(Clone)]
pub struct Roles {
    cache: moka::future::Cache<(AccountId, i64), bool>,
}

/// How long an answer of Kommo's users API about a user's role is reused.
pub const ROLE_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

impl Default for Roles {
    fn default() -> Roles {
        Roles { cache: moka::future::Cache::builder().max_capacity(100_000).time_to_live(ROLE_TTL).build() }
    }
}

impl Roles {
    /// Whether the caller is an admin of its account. Kommo unreachable is an error (fail closed).
    pub async fn is_admin(&self, kommo: &crate::kommo::KommoClient, auth: &WidgetAuth) -> Result<bool, ApiError> {
        if let Some(claim) = auth.is_admin_claim {
            return Ok(claim);
        }
        self.cache
            .try_get_with((auth.account, auth.user_id), kommo.user_is_admin(auth.account, auth.user_id))
            .await
            .map_err(|error| ApiError::Kommo(crate::kommo::KommoError::clone(&error)))
    }
}

async fn connection(
    State(state): State<AppState>,
    VerifiedToken(identity): VerifiedToken,
) -> Result<Json<ConnectionView>, ApiError> {
    let account = state.store.account_by_kommo_id(identity.kommo_account_id).await?;
    let info = match account {
        Some(account) => state.store.account(account).await?,
        None => None,
    };
    let phone_index = match account {
        Some(account) if state.phone_index => Some(phone_index_view(&state, account).await?),
        _ => None,
    };
    let (connection_state, reason) = match info {
        None => (ConnectionState::NotInstalled, None),
        Some(info) => {
            let connection_state = match info.state {
                AccountState::Installed => ConnectionState::Installed,
                AccountState::NeedsReauth => ConnectionState::NeedsReauth,
                AccountState::Suspended => ConnectionState::Suspended,
                AccountState::Disabled => ConnectionState::Disabled,
            };
            (connection_state, info.state_reason)
        }
    };
    Ok(Json(ConnectionView {
        state: connection_state,
        subdomain: identity.subdomain,
        reason,
        reauthorize_url: format!("{}{}", state.public_base_url, oauth::START_PATH),
        phone_index,
    }))
}

/// Where the account's phone index stands, for the connection section.
async fn phone_index_view(state: &AppState, account: AccountId) -> Result<PhoneIndexView, ApiError> {
    Ok(match state.store.phone_sync(account).await? {
        None => PhoneIndexView::Waiting,
        Some(sync) if sync.complete_at.is_none() => PhoneIndexView::Syncing { read: sync.pass_entities },
        Some(_) => PhoneIndexView::Ready { numbers: state.store.phone_index_size(account).await?.0 },
    })
}

async fn users(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
) -> Result<Json<Vec<KommoUserView>>, ApiError> {
    let users = state.installer.kommo.active_users(auth.account).await?;
    Ok(Json(
        users
            .into_iter()
            .map(|user| KommoUserView {
                id: user.id,
                name: user.name,
                email: user.email,
                group: user.group.map(|group| KommoGroupView { id: group.id, name: group.name }),
            })
            .collect(),
    ))
}
