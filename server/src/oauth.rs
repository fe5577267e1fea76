//! Installing into a Kommo account: the Redirect URI (Kommo's server-to-server auth code on widget
//! install, and the browser's return from the consent page), the exchange of codes kept durably
//! until done, and the disable hook.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use crate::crypto::sha256_hex;

use crate::clock::unix_secs;
use crate::crypto::{Keyring, SealContext, random_token};
use crate::http::{ApiError, AppState};
use crate::kommo::{KommoClient, KommoError};
use crate::store::{PENDING_CODE_ACCOUNT, PendingCodeLimits, Store};
use crate::throttle::ClientAddr;

/// Kommo's authorization codes live 20 minutes; older ones are not worth trying.
pub const CODE_LIFETIME_SECS: i64 = 20 * 60;
/// How long one exchange attempt may hold a code before another process may retry it.
const EXCHANGE_LEASE_SECS: i64 = 60;
/// How often pending codes (retries, or ones left by a restart) are picked up again.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(10);
/// How long a consent `state` stays valid.
const STATE_LIFETIME_SECS: i64 = 10 * 60;
const CODE_COLUMN: &str = "oauth_codes.code";
/// Kommo's authorization codes are a few hundred characters; anything longer is not one, and is
/// refused before it is stored.
pub const MAX_CODE_LEN: usize = 4096;
/// Codes waiting for their exchange per Kommo host, at most.
pub const MAX_PENDING_CODES_PER_HOST: u32 = 20;

pub const CALLBACK_PATH: &str = "/oauth/kommo/callback";
pub const START_PATH: &str = "/oauth/kommo/start";
pub const DISABLE_PATH: &str = "/oauth/kommo/disable";

/// Runs code exchanges; shared by the callback handler and the recovery loop.
#[derive(Clone)]
pub struct Installer {
    pub store: Store,
    pub kommo: KommoClient,
    pub keyring: std::sync::Arc<Keyring>,
    /// Codes waiting for their exchange at most (`MAX_PENDING_CODES`, and per Kommo host).
    pub pending_limits: PendingCodeLimits,
}

impl Installer {
    /// Keeps the code (sealed) before anything else, so an acknowledged install survives a crash.
    /// `None` when too many codes wait for their exchange already (nothing stored).
    pub async fn receive_code(&self, api_domain: &str, code: &SecretString) -> sqlx::Result<Option<i64>> {
        let sealed = self.keyring.seal(SealContext { column: CODE_COLUMN, account_id: PENDING_CODE_ACCOUNT }, code);
        self.store.insert_code(api_domain, &sealed, unix_secs() - CODE_LIFETIME_SECS, self.pending_limits).await
    }

    /// Exchanges pending codes: one (`only`), or every one due (recovery). Returns how many
    /// accounts were connected.
    pub async fn exchange_pending(&self, only: Option<i64>) -> usize {
        let now = unix_secs();
        let codes = match self.store.claim_codes(now - CODE_LIFETIME_SECS, now + EXCHANGE_LEASE_SECS, only).await {
            Ok(codes) => codes,
            Err(error) => {
                tracing::error!(%error, "cannot claim authorization codes");
                return 0;
            }
        };
        let mut connected = 0;
        for pending in codes {
            let outcome = self.exchange_one(&pending.api_domain, &pending.code).await;
            let (retry, error) = match &outcome {
                Ok(()) => (false, None),
                Err(error @ (KommoError::Transient(_) | KommoError::RateLimited(_))) => (true, Some(error.to_string())),
                Err(error) => (false, Some(error.to_string())),
            };
            match &error {
                None => connected += 1,
                Some(reason) => {
                    tracing::warn!(code.id = pending.id, retry, reason, "authorization code exchange failed")
                }
            }
            if let Err(db_error) = self.store.finish_code(pending.id, retry, error.as_deref()).await {
                tracing::error!(code.id = pending.id, %db_error, "cannot record the exchange outcome");
            }
        }
        connected
    }

    async fn exchange_one(&self, api_domain: &str, sealed_code: &str) -> Result<(), KommoError> {
        let base_url = self.kommo.hosts().base_url(api_domain).ok_or(KommoError::NotConnected)?;
        let code = self
            .keyring
            .open(SealContext { column: CODE_COLUMN, account_id: PENDING_CODE_ACCOUNT }, sealed_code)
            .map_err(|_| KommoError::Rejected { status: 0, detail: "stored code does not decrypt".into() })?;
        let (grant, account) = self.kommo.exchange_code(&base_url, &code).await?;
        // The code must be the account's whose host it came from: `referer` names the host, and
        // `/api/v4/account` (asked with the new token) names the account.
        if let Some(subdomain) = self.kommo.hosts().subdomain_of(api_domain)
            && !subdomain.eq_ignore_ascii_case(&account.subdomain)
        {
            return Err(KommoError::Rejected {
                status: 0,
                detail: "the authorization is for another account than the host it came from".into(),
            });
        }
        // Only an admin's consent replaces the account's tokens (any user may authorize an installed
        // integration in Kommo, and a token carries the rights of the user who granted it).
        if !self.kommo.grantor_is_admin(&base_url, &grant.access_token, &account).await? {
            tracing::warn!(
                kommo.account_id = account.id,
                "authorization refused: granted by a user who is not an admin"
            );
            return Err(KommoError::Rejected {
                status: 0,
                detail: "the authorization was granted by a user who is not an admin of the account".into(),
            });
        }
        let database = |error: sqlx::Error| KommoError::Transient(format!("storage: {error}"));
        let id = self
            .store
            .install_account(account.id, &account.subdomain, api_domain, account.country.as_deref())
            .await
            .map_err(database)?;
        self.kommo.store_grant(id, &grant).await.map_err(database)?;
        tracing::info!(account.id = id.get(), kommo.account_id = account.id, "Kommo account connected");
        Ok(())
    }
}

/// The Redirect URI's query, for both the widget-install request and the consent return.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    referer: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
    error: Option<String>,
    from_widget: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    // Anyone can call the Redirect URI: budget it per client address and in total before any work.
    if let Err(wait) = state.throttle.oauth(client) {
        return too_many(wait);
    }
    if query.client_id.as_deref().is_some_and(|id| id != state.client_id.as_ref()) {
        return page(StatusCode::BAD_REQUEST, "This authorization was issued for another integration.");
    }
    // A browser return must carry the state we issued to this browser; only Kommo's
    // server-to-server install request (from_widget) comes without one.
    let browser_flow = query.state.is_some() || query.from_widget.is_none();
    if browser_flow {
        let Some(consent_state) = query.state.as_deref() else {
            return page(
                StatusCode::BAD_REQUEST,
                "The authorization is missing its state; please start again from the widget.",
            );
        };
        let browser = cookie(&headers, &cookie_name(&state.public_base_url)).unwrap_or_default();
        match state.store.consume_oauth_state(&sha256_hex(consent_state), &sha256_hex(&browser)).await {
            Ok(true) => {}
            Ok(false) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    "This authorization link has expired or was already used; please start again from the widget.",
                );
            }
            Err(error) => return ApiError::from(error).into_response(),
        }
    }
    if query.error.is_some() {
        return page(StatusCode::OK, "Access was declined. You can connect Kommo later from the widget's settings.");
    }
    let (Some(code), Some(referer)) = (query.code, query.referer) else {
        return page(StatusCode::BAD_REQUEST, "The authorization is missing its code or account.");
    };
    if code.len() > MAX_CODE_LEN {
        return page(StatusCode::BAD_REQUEST, "The authorization code is not one Kommo issues.");
    }
    // Our client secret goes to this host: it must be allowlisted before any outbound call.
    if state.installer.kommo.hosts().base_url(&referer).is_none() {
        tracing::warn!("authorization code refused: referer host is not allowlisted");
        return page(StatusCode::BAD_REQUEST, "This account's address is not one we connect to.");
    }
    let id = match state.installer.receive_code(&referer.to_ascii_lowercase(), &SecretString::from(code)).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            tracing::warn!("authorization code refused: too many codes wait for their exchange");
            let mut response = page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many authorizations are in progress; please try again in a minute.",
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return response;
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    let installer = state.installer.clone();
    // A transient failure (Kommo or the store slow for a moment) is tried again twice, 2 s apart,
    // rather than only by the recovery loop a minute later; a code refused for good is not claimed
    // again, so the later attempts then do nothing.
    let exchange = tokio::spawn(async move {
        for attempt in 0..QUICK_EXCHANGE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(QUICK_EXCHANGE_PAUSE).await;
            }
            let connected = installer.exchange_pending(Some(id)).await;
            if connected > 0 {
                return connected;
            }
        }
        0
    });
    if !browser_flow {
        // Kommo waits at most 3 s and never retries: answer now, exchange in the background
        // (the recovery loop retries it if this attempt fails or the process stops).
        return (StatusCode::OK, "ok").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(1)) => page(StatusCode::OK, "Kommo is connected. You can close this window."),
        _ => page(
            StatusCode::ACCEPTED,
            "We are finishing the connection to Kommo; the widget's settings will show it in a moment.",
        ),
    }
}

/// Attempts at a received code right away (then the recovery loop's), and the pause between them.
const QUICK_EXCHANGE_ATTEMPTS: u32 = 3;
const QUICK_EXCHANGE_PAUSE: Duration = Duration::from_secs(2);

/// Starts the consent flow: a single-use state of 256 random bits, bound to this browser by a
/// cookie, then a redirect to Kommo's consent page.
pub async fn start(State(state): State<AppState>, ClientAddr(client): ClientAddr) -> Response {
    if let Err(wait) = state.throttle.oauth(client) {
        return too_many(wait);
    }
    let consent_state = random_token(32);
    let browser = random_token(32);
    let expires_at = unix_secs() + STATE_LIFETIME_SECS;
    if let Err(error) =
        state.store.insert_oauth_state(&sha256_hex(&consent_state), &sha256_hex(&browser), expires_at).await
    {
        return ApiError::from(error).into_response();
    }
    let url = format!(
        "{}?client_id={}&state={}&mode=popup",
        state.consent_url,
        crate::kommo::percent_encode(&state.client_id),
        consent_state
    );
    let secure = state.public_base_url.starts_with("https://");
    let cookie = format!(
        "{}={browser}; Path=/; Max-Age={STATE_LIFETIME_SECS}; HttpOnly; SameSite=Lax{}",
        cookie_name(&state.public_base_url),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to(&url).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie is ASCII"));
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[derive(Deserialize)]
pub struct DisableQuery {
    client_uuid: String,
    account_id: String,
    signature: String,
}

/// How long the disable hook waits for Kommo to remove the phone index's webhooks.
const UNSUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Kommo's disable hook: a valid signature wipes the account's tokens and stops its traffic; an
/// invalid one changes nothing.
pub async fn disable(State(state): State<AppState>, Query(query): Query<DisableQuery>) -> Result<StatusCode, ApiError> {
    let refused = || ApiError::Forbidden("invalid disable signature".into());
    if query.client_uuid != state.client_id.as_ref() {
        return Err(refused());
    }
    let signature = hex::decode(&query.signature).map_err(|_| refused())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(state.client_secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("{}|{}", query.client_uuid, query.account_id).as_bytes());
    mac.verify_slice(&signature).map_err(|_| refused())?;
    let kommo_account_id: i64 =
        query.account_id.parse().map_err(|_| ApiError::BadRequest("account_id is not a number".into()))?;
    if let Some(account) = state.store.account_by_kommo_id(kommo_account_id).await? {
        // Kommo's webhooks for the phone index go first, while the account's token may still work
        // (bounded: the hook answers Kommo promptly either way; a disabled account's are refused).
        let unsubscribed = state.calls.unsubscribe_kommo_hooks(account);
        if tokio::time::timeout(UNSUBSCRIBE_WAIT, unsubscribed).await.is_err() {
            tracing::info!(account.id = account.get(), "Kommo webhook removal did not finish in time");
        }
        state.store.disable_account(account).await?;
        state.hooks.forget();
        tracing::info!(account.id = account.get(), "account disabled by Kommo's disable hook");
    }
    Ok(StatusCode::OK)
}

/// The disable hook's signature, as Kommo computes it (hex HMAC-SHA256 of `client_uuid|account_id`).
pub fn disable_signature(client_secret: &str, client_uuid: &str, account_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("{client_uuid}|{account_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn cookie_name(public_base_url: &str) -> String {
    // The __Host- prefix makes browsers refuse the cookie unless it is Secure and host-only.
    if public_base_url.starts_with("https://") { "__Host-kvoip_oauth".into() } else { "kvoip_oauth".into() }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
}

/// 429 with `Retry-After` (whole seconds, at least one).
fn too_many(wait: Duration) -> Response {
    let mut response = page(StatusCode::TOO_MANY_REQUESTS, "Too many requests; please try again in a moment.");
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A minimal self-contained page: no third-party resources, no referrer.
fn page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Kommo VoIP</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><p>{message}</p></body></html>"
    );
    let mut response = (status, Html(body)).into_response();
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_signature_matches_the_handbook_vector() {
        assert_eq!(
            disable_signature("test-client-secret", "c0ffee00-0000-4000-8000-000000000000", "12345678"),
            "ff17265ede323d4b41c1c106b5a226411a775a47a9a3461a32cd61d217f77b63"
        );
    }

    #[test]
    fn state_cookie_is_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("kvoip_oauth_x=1; kvoip_oauth=abc; other=2"));
        assert_eq!(cookie(&headers, "kvoip_oauth").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "__Host-kvoip_oauth"), None);
    }
}
