//! The one Kommo API client every caller uses: the account's base URL, a per-account rate limit,
//! access tokens refreshed ahead of expiry (once per account, across processes), and failures
//! classified in [`KommoError`] so that retry policy is a `match`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::clock::{unix_millis, unix_secs};
use crate::crypto::{Keyring, SealContext};
use crate::store::{AccountId, AccountState, Store, TokenRow};

/// Refresh when less than this remains of an access token's life (Kommo issues 24 h tokens).
pub const REFRESH_MARGIN_SECS: i64 = 3600;
/// How long one process may hold the refresh lease before others may take over.
const REFRESH_LEASE_SECS: i64 = 20;
/// Spacing between two requests of one account, across every server process: at most 7 in any
/// one-second window. Slots 170 ms apart put the 8th at 1190 ms, which leaves 190 ms for a request
/// that leaves late after its slot (scheduling, a slow connect) without an 8th in one second.
const REQUEST_SPACING_MS: i64 = 170;
/// Spacing of authorization-code exchanges towards one Kommo host. Exchanges have their own budget,
/// apart from any account's API traffic, so that codes anyone can post to our Redirect URI never
/// delay an account's calls. An install takes three requests here (token, account, the granting user), so four a
/// second keep it quick while a flood of made-up codes stays well below what Kommo allows.
const EXCHANGE_SPACING_MS: i64 = 250;
/// Longest wait for a send slot. Past it the request is not sent: the caller gets
/// [`KommoError::RateLimited`] (a job retries later), so no task ever queues behind a long backlog.
pub const MAX_PACE_WAIT: Duration = Duration::from_secs(5);
/// A `Retry-After` up to this long is waited out in place; longer ones go back to the caller.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub const ACCESS_TOKEN_COLUMN: &str = "kommo_auth_tokens.access_token";
pub const REFRESH_TOKEN_COLUMN: &str = "kommo_auth_tokens.refresh_token";

/// Why a Kommo call failed, classified for retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KommoError {
    /// The account has no usable tokens: never installed, or disabled.
    #[error("the account is not connected to Kommo")]
    NotConnected,
    /// A refresh was refused (invalid_grant): an admin must re-authorize.
    #[error("Kommo refused the refresh token; the account must be re-authorized")]
    NeedsReauth,
    /// 402 or 403: the account's subscription ended, or access was blocked.
    #[error("Kommo suspended access for this account: {0}")]
    Suspended(String),
    /// 429 with a long `Retry-After`.
    #[error("rate limited by Kommo; retry after {0:?}")]
    RateLimited(Duration),
    /// 5xx, timeouts, connection failures: worth retrying later.
    #[error("Kommo is unavailable: {0}")]
    Transient(String),
    /// Any other refusal: retrying the same request will not help.
    #[error("Kommo refused the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
}

/// Percent-encodes a value for a Kommo URL (a path segment or a query value): RFC 3986's unreserved
/// characters stay, every other byte becomes `%XX`.
pub(crate) fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Tokens as Kommo's `/oauth2/access_token` returns them.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

/// Our integration's OAuth identity.
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
}

/// Which hosts may receive our client secret, and over which scheme.
#[derive(Debug, Clone)]
pub struct KommoHosts {
    entries: Vec<HostEntry>,
}

#[derive(Debug, Clone)]
struct HostEntry {
    scheme: &'static str,
    /// `Some(".kommo.com")` for `*.kommo.com`; `None` for an exact host.
    suffix: Option<String>,
    host: String,
}

impl KommoHosts {
    /// Parses `*.kommo.com,http://127.0.0.1:8090`: wildcards and bare hosts mean https; an
    /// explicit `http://` is for a local stand-in only.
    pub fn parse(spec: &str) -> anyhow::Result<KommoHosts> {
        let mut entries = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (scheme, rest) = match raw.split_once("://") {
                Some(("https", rest)) => ("https", rest),
                Some(("http", rest)) => ("http", rest),
                Some((other, _)) => anyhow::bail!("host entry {raw:?}: scheme {other:?} is not http or https"),
                None => ("https", raw),
            };
            let rest = rest.trim_end_matches('/').to_ascii_lowercase();
            let entry = match rest.strip_prefix("*.") {
                Some(suffix) => HostEntry { scheme, suffix: Some(format!(".{suffix}")), host: suffix.to_owned() },
                None => HostEntry { scheme, suffix: None, host: rest },
            };
            if !is_host(&entry.host) {
                anyhow::bail!("host entry {raw:?} is not a host name");
            }
            entries.push(entry);
        }
        anyhow::ensure!(!entries.is_empty(), "at least one host is required");
        Ok(KommoHosts { entries })
    }

    /// The API base URL for a host Kommo named (`referer`), or `None` when the host is not allowed.
    pub fn base_url(&self, host: &str) -> Option<String> {
        let host = host.trim().to_ascii_lowercase();
        if !is_host(&host) {
            return None;
        }
        self.entries.iter().find_map(|entry| {
            let allowed = match &entry.suffix {
                Some(suffix) => wildcard_label(&host, suffix).is_some(),
                None => host == entry.host,
            };
            allowed.then(|| format!("{}://{host}", entry.scheme))
        })
    }
}

/// The one label a wildcard entry (`.kommo.com` for `*.kommo.com`) admits in front of its suffix.
fn wildcard_label<'a>(host: &'a str, suffix: &str) -> Option<&'a str> {
    let label = host.strip_suffix(suffix)?;
    (!label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(label)
}

impl KommoHosts {
    /// The account subdomain a host names, for hosts allowed by a wildcard (`acme` for
    /// `acme.kommo.com`); `None` for hosts listed exactly (a local stand-in), which name no subdomain.
    pub fn subdomain_of(&self, host: &str) -> Option<String> {
        let host = host.trim().to_ascii_lowercase();
        self.entries.iter().find_map(|entry| wildcard_label(&host, entry.suffix.as_deref()?).map(str::to_owned))
    }
}

/// A bare `host[:port]`: no scheme, userinfo, path, query or fragment.
fn is_host(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !value.starts_with(['.', '-', ':'])
}

/// A user of the account, as the extension mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KommoUser {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    /// The user's group (`rights.group_id`, named from `_embedded.groups`), if Kommo gave one.
    pub group: Option<KommoGroup>,
}

/// A Kommo user group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KommoGroup {
    pub id: i64,
    pub name: String,
}

/// The account as `/api/v4/account` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct KommoAccount {
    pub id: i64,
    pub subdomain: String,
    #[serde(default)]
    pub country: Option<String>,
    /// The user whose token asked: on the install's exchange, the user who granted access.
    #[serde(default)]
    pub current_user_id: Option<i64>,
}

#[derive(Clone)]
pub struct KommoClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    store: Store,
    keyring: Arc<Keyring>,
    oauth: OAuthClient,
    hosts: KommoHosts,
    /// One refresh at a time per account within this process; the database lease covers the others.
    refresh_locks: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>,
}

impl KommoClient {
    pub fn new(store: Store, keyring: Arc<Keyring>, oauth: OAuthClient, hosts: KommoHosts) -> KommoClient {
        KommoClient::with_timeout(store, keyring, oauth, hosts, REQUEST_TIMEOUT)
    }

    /// [`KommoClient::new`] with another limit on each request (tests of hanging answers use a short one).
    pub fn with_timeout(
        store: Store,
        keyring: Arc<Keyring>,
        oauth: OAuthClient,
        hosts: KommoHosts,
        timeout: Duration,
    ) -> KommoClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // Never follow redirects: our secret and tokens go only to the allowlisted host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kommo-voip/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client configuration is valid");
        KommoClient { inner: Arc::new(Inner { http, store, keyring, oauth, hosts, refresh_locks: Mutex::default() }) }
    }

    pub fn hosts(&self) -> &KommoHosts {
        &self.inner.hosts
    }

    /// Exchanges an authorization code at `base_url` (already allowlisted) and reads the account
    /// the new token belongs to.
    pub async fn exchange_code(
        &self,
        base_url: &str,
        code: &SecretString,
    ) -> Result<(TokenGrant, KommoAccount), KommoError> {
        let oauth = &self.inner.oauth;
        let body = serde_json::json!({
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret.expose_secret(),
            "grant_type": "authorization_code",
            "code": code.expose_secret(),
            "redirect_uri": oauth.redirect_uri,
        });
        let bucket = Bucket::Exchange(base_url);
        self.pace(&bucket).await?;
        let grant = self.token_request(base_url, &body).await.map_err(|error| match error {
            // A refused code is final: it expired, was used, or was never Kommo's.
            KommoError::NeedsReauth => {
                KommoError::Rejected { status: 400, detail: "authorization code refused".into() }
            }
            other => other,
        })?;
        let account =
            self.send_once(&bucket, base_url, &grant.access_token, Method::GET, "/api/v4/account", None).await?;
        let account: KommoAccount = serde_json::from_value(account.unwrap_or(Value::Null))
            .map_err(|error| KommoError::Transient(format!("unexpected /api/v4/account body: {error}")))?;
        Ok((grant, account))
    }

    /// Whether the Kommo user who granted `token` (the account's `current_user_id`) is an admin, asked
    /// with that very token in the exchange budget of `base_url`. Not when Kommo does not name the user.
    pub async fn grantor_is_admin(
        &self,
        base_url: &str,
        token: &SecretString,
        account: &KommoAccount,
    ) -> Result<bool, KommoError> {
        let Some(user_id) = account.current_user_id else {
            return Ok(false);
        };
        let bucket = Bucket::Exchange(base_url);
        let path = format!("/api/v4/users/{user_id}");
        admin_answer(self.send_once(&bucket, base_url, token, Method::GET, &path, None).await)
    }

    /// Whether `user_id` is an active admin of the account, from `GET /api/v4/users/{id}`
    /// (`rights.is_admin`). A user Kommo does not know (404) is not.
    pub async fn user_is_admin(&self, account: AccountId, user_id: i64) -> Result<bool, KommoError> {
        admin_answer(self.get(account, &format!("/api/v4/users/{user_id}")).await)
    }

    /// Stores a fresh grant for `account`, sealed and bound to it.
    pub async fn store_grant(&self, account: AccountId, grant: &TokenGrant) -> sqlx::Result<()> {
        let keyring = &self.inner.keyring;
        let access =
            keyring.seal(SealContext { column: ACCESS_TOKEN_COLUMN, account_id: account.get() }, &grant.access_token);
        let refresh =
            keyring.seal(SealContext { column: REFRESH_TOKEN_COLUMN, account_id: account.get() }, &grant.refresh_token);
        self.inner.store.store_tokens(account, &access, &refresh, grant.expires_at).await
    }

    /// `GET` on the account's Kommo API. `Ok(None)` is Kommo's 204 (nothing found / empty page).
    pub async fn get(&self, account: AccountId, path_and_query: &str) -> Result<Option<Value>, KommoError> {
        self.send(account, Method::GET, path_and_query, None).await
    }

    /// One request on the account's Kommo API with a JSON body (or none). `Ok(None)` is Kommo's 204.
    ///
    /// A 401 refreshes the token once (unless another caller already did) and sends again once; a 429
    /// with a short `Retry-After` is waited out in place (Kommo did not perform the request); 402/403
    /// park the account. Nothing else is retried here: after a timeout or a 5xx the request may or may
    /// not have been performed, and only the caller knows how to look before sending it again.
    pub async fn send(
        &self,
        account: AccountId,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, KommoError> {
        self.send_parking(account, method, path_and_query, body, true).await
    }

    /// [`KommoClient::send`] for an API whose 402/403 concern that API only, not the account (Kommo's
    /// webhooks API: a plan without it, a token that is not an admin's): the error comes back as
    /// `Suspended`, and the account keeps working.
    pub async fn send_optional_api(
        &self,
        account: AccountId,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, KommoError> {
        self.send_parking(account, method, path_and_query, body, false).await
    }

    async fn send_parking(
        &self,
        account: AccountId,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        park: bool,
    ) -> Result<Option<Value>, KommoError> {
        let base_url = self.account_base_url(account).await?;
        let mut token = self.access_token(account, None).await?;
        let mut refreshed = false;
        let mut waited = Duration::ZERO;
        let bucket = Bucket::Account(account);
        loop {
            match self.send_once(&bucket, &base_url, &token, method.clone(), path_and_query, body).await {
                Err(KommoError::NeedsReauth) if !refreshed => {
                    // A 401 on a call: refresh once (unless someone already did) and retry once.
                    refreshed = true;
                    token = self.access_token(account, Some(&token)).await?;
                }
                Err(KommoError::NeedsReauth) => return Err(KommoError::NeedsReauth),
                Err(KommoError::RateLimited(after)) if waited + after <= MAX_INLINE_RETRY_AFTER => {
                    waited += after;
                    tokio::time::sleep(after).await;
                }
                Err(suspended @ KommoError::Suspended(_)) => {
                    if park {
                        self.park(account, AccountState::Suspended, &suspended.to_string()).await;
                    }
                    return Err(suspended);
                }
                other => return other,
            }
        }
    }

    /// Every active user of the account with their group (`with=group`), across pages.
    pub async fn active_users(&self, account: AccountId) -> Result<Vec<KommoUser>, KommoError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(rename = "_embedded")]
            embedded: Embedded,
        }
        #[derive(Deserialize)]
        struct Embedded {
            users: Vec<User>,
        }
        #[derive(Deserialize)]
        struct User {
            id: i64,
            name: String,
            #[serde(default)]
            email: Option<String>,
            #[serde(default)]
            rights: Option<Rights>,
            #[serde(default, rename = "_embedded")]
            embedded: Option<UserEmbedded>,
        }
        #[derive(Deserialize)]
        struct Rights {
            #[serde(default = "active_by_default")]
            is_active: bool,
            #[serde(default)]
            group_id: Option<i64>,
        }
        #[derive(Deserialize)]
        struct UserEmbedded {
            #[serde(default)]
            groups: Vec<Group>,
        }
        #[derive(Deserialize)]
        struct Group {
            id: i64,
            #[serde(default)]
            name: Option<String>,
        }
        impl User {
            /// `rights.group_id`, named from `_embedded.groups` (by its id, else `#id`).
            fn group(&self) -> Option<KommoGroup> {
                let id = self.rights.as_ref()?.group_id?;
                let groups = self.embedded.as_ref().map(|embedded| embedded.groups.as_slice()).unwrap_or_default();
                let name = groups.iter().find(|group| group.id == id).and_then(|group| group.name.clone());
                Some(KommoGroup { id, name: name.unwrap_or_else(|| format!("#{id}")) })
            }
        }
        fn active_by_default() -> bool {
            true
        }

        let mut users = Vec::new();
        for page in 1..=100 {
            let path = format!("/api/v4/users?page={page}&limit=250&with=group");
            let Some(body) = self.get(account, &path).await? else { break };
            let has_next = body.pointer("/_links/next/href").is_some();
            let page: Page = serde_json::from_value(body)
                .map_err(|error| KommoError::Transient(format!("unexpected /api/v4/users body: {error}")))?;
            users.extend(
                page.embedded
                    .users
                    .into_iter()
                    .filter(|user| user.rights.as_ref().is_none_or(|rights| rights.is_active))
                    .map(|user| {
                        let group = user.group();
                        KommoUser { id: user.id, name: user.name, email: user.email, group }
                    }),
            );
            if !has_next {
                break;
            }
        }
        Ok(users)
    }

    async fn account_base_url(&self, account: AccountId) -> Result<String, KommoError> {
        let info = self.inner.store.account(account).await.map_err(storage)?.ok_or(KommoError::NotConnected)?;
        match info.state {
            AccountState::Installed => {}
            AccountState::NeedsReauth => return Err(KommoError::NeedsReauth),
            AccountState::Suspended => {
                return Err(KommoError::Suspended(info.state_reason.unwrap_or_else(|| "suspended".into())));
            }
            AccountState::Disabled => return Err(KommoError::NotConnected),
        }
        // Re-checked on every call: a host removed from the allowlist stops receiving tokens.
        self.inner.hosts.base_url(&info.api_domain).ok_or(KommoError::NotConnected)
    }

    /// A usable access token for `account`. `rejected` is a token Kommo just refused: refresh
    /// unless the stored token already differs from it (another caller refreshed meanwhile).
    ///
    /// Single flight: an in-process mutex per account, then a lease row in the database shared by
    /// every server process. The lease is taken with a conditional UPDATE, never a transaction held
    /// across the HTTP call. If we crash after Kommo rotated the token but before we stored the new
    /// pair, the old refresh token still works until the new one is first used (Kommo's grace), so
    /// the next refresh with the stored (old) token succeeds.
    pub async fn access_token(
        &self,
        account: AccountId,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, KommoError> {
        let lock = {
            let mut locks = self.inner.refresh_locks.lock().expect("refresh lock map poisoned");
            locks.entry(account).or_default().clone()
        };
        let _guard = lock.lock().await;
        loop {
            let row = self.inner.store.tokens(account).await.map_err(storage)?.ok_or(KommoError::NotConnected)?;
            let access = self.open(account, ACCESS_TOKEN_COLUMN, &row.access_token)?;
            let still_rejected = rejected.is_some_and(|bad| bad.expose_secret() == access.expose_secret());
            if !still_rejected && row.expires_at - unix_secs() > REFRESH_MARGIN_SECS {
                return Ok(access);
            }
            let now = unix_secs();
            let claimed = self
                .inner
                .store
                .claim_refresh_lease(account, &row.refresh_token, now, now + REFRESH_LEASE_SECS)
                .await
                .map_err(storage)?;
            if !claimed {
                // Another process is refreshing, or already did: wait a moment, then look again.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let outcome = self.refresh(account, &row).await;
            if outcome.is_err() {
                self.inner.store.release_refresh_lease(account).await.map_err(storage)?;
            }
            return outcome;
        }
    }

    async fn refresh(&self, account: AccountId, row: &TokenRow) -> Result<SecretString, KommoError> {
        let base_url = self.account_base_url(account).await?;
        self.pace(&Bucket::Account(account)).await?;
        let refresh_token = self.open(account, REFRESH_TOKEN_COLUMN, &row.refresh_token)?;
        let oauth = &self.inner.oauth;
        let body = serde_json::json!({
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret.expose_secret(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose_secret(),
            "redirect_uri": oauth.redirect_uri,
        });
        match self.token_request(&base_url, &body).await {
            Ok(grant) => {
                // Storing the pair also clears the lease.
                self.store_grant(account, &grant).await.map_err(storage)?;
                tracing::info!(account.id = account.get(), "Kommo access token refreshed");
                Ok(grant.access_token)
            }
            Err(KommoError::NeedsReauth) => {
                self.park(account, AccountState::NeedsReauth, "Kommo refused the refresh token").await;
                Err(KommoError::NeedsReauth)
            }
            Err(other) => Err(other),
        }
    }

    /// Waits for this request's slot in `bucket`, shared through the database by all processes: at
    /// most [`MAX_PACE_WAIT`]. When the next free slot is further away nothing is reserved and the
    /// caller gets `RateLimited` with the wait, so a backlog never turns into tasks sleeping in line.
    async fn pace(&self, bucket: &Bucket<'_>) -> Result<(), KommoError> {
        let now_ms = unix_millis();
        let max_wait_ms = i64::try_from(MAX_PACE_WAIT.as_millis()).unwrap_or(i64::MAX);
        let slot = self
            .inner
            .store
            .reserve_send_slot(&bucket.key(), now_ms, bucket.spacing_ms(), max_wait_ms)
            .await
            .map_err(storage)?;
        match slot {
            Ok(slot) if slot > now_ms => {
                tokio::time::sleep(Duration::from_millis(u64::try_from(slot - now_ms).unwrap_or(0))).await;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(next_free) => {
                metrics::counter!("kommo_requests_total", "status" => "paced_out").increment(1);
                let wait = u64::try_from(next_free - now_ms).unwrap_or(0);
                Err(KommoError::RateLimited(Duration::from_millis(wait.max(1))))
            }
        }
    }

    async fn park(&self, account: AccountId, state: AccountState, reason: &str) {
        tracing::warn!(account.id = account.get(), state = state.as_str(), reason, "account parked");
        if let Err(error) = self.inner.store.set_account_state(account, state, Some(reason)).await {
            tracing::error!(account.id = account.get(), %error, "could not record the account's state");
        }
    }

    fn open(&self, account: AccountId, column: &str, sealed: &str) -> Result<SecretString, KommoError> {
        self.inner.keyring.open(SealContext { column, account_id: account.get() }, sealed).map_err(|error| {
            tracing::error!(account.id = account.get(), column, %error, "stored Kommo token does not decrypt");
            KommoError::NotConnected
        })
    }

    async fn token_request(&self, base_url: &str, body: &Value) -> Result<TokenGrant, KommoError> {
        let response =
            self.inner.http.post(format!("{base_url}/oauth2/access_token")).json(body).send().await.map_err(
                |error| {
                    let status = if error.is_timeout() { "timeout" } else { "error" };
                    metrics::counter!("kommo_requests_total", "status" => status).increment(1);
                    transport(error)
                },
            )?;
        let status = response.status();
        metrics::counter!("kommo_requests_total", "status" => status.as_str().to_owned()).increment(1);
        if status.is_success() {
            let tokens: TokenResponse = response.json().await.map_err(|error| {
                KommoError::Transient(format!("unexpected token response: {}", error.without_url()))
            })?;
            return Ok(TokenGrant {
                access_token: SecretString::from(tokens.access_token),
                refresh_token: SecretString::from(tokens.refresh_token),
                expires_at: unix_secs() + tokens.expires_in,
            });
        }
        // Token endpoint refusals (400/401: invalid_grant and friends) mean the grant is gone.
        // Their bodies are not read: they may echo what we sent.
        match status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => Err(KommoError::NeedsReauth),
            _ => Err(classify(status, retry_after(&response), String::new())),
        }
    }

    /// One request, paced in `bucket`; every answer is counted in
    /// `kommo_requests_total{status}`.
    async fn send_once(
        &self,
        bucket: &Bucket<'_>,
        base_url: &str,
        token: &SecretString,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, KommoError> {
        self.pace(bucket).await?;
        let mut request =
            self.inner.http.request(method, format!("{base_url}{path_and_query}")).bearer_auth(token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let status = if error.is_timeout() { "timeout" } else { "error" };
                metrics::counter!("kommo_requests_total", "status" => status).increment(1);
                return Err(transport(error));
            }
        };
        let status = response.status();
        metrics::counter!("kommo_requests_total", "status" => status.as_str().to_owned()).increment(1);
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            let bytes = response.bytes().await.map_err(transport)?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| KommoError::Transient(format!("unreadable body: {error}")));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(KommoError::NeedsReauth);
        }
        let after = retry_after(&response);
        let detail = response.json::<Value>().await.ok().map(|body| problem_detail(&body)).unwrap_or_default();
        Err(classify(status, after, detail))
    }
}

/// The readable part of a Kommo error body: its `detail` (or `title`), then each validation error as
/// `[request_id] path: detail`, so that a caller can tell which item and field Kommo refused.
fn problem_detail(body: &Value) -> String {
    let mut detail =
        body.get("detail").or_else(|| body.get("title")).and_then(Value::as_str).unwrap_or_default().to_owned();
    let items = body.get("validation-errors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for item in items {
        let request_id = item.get("request_id").map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned));
        for error in item.get("errors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            detail.push_str(&format!(
                "; [{}] {}: {} {}",
                request_id.as_deref().unwrap_or("?"),
                text("path"),
                text("code"),
                text("detail")
            ));
        }
    }
    detail
}

/// Which rate budget a request spends: an account's API traffic (Kommo's 7 requests/s per account,
/// refreshes included), or the authorization-code exchanges towards one Kommo host.
enum Bucket<'a> {
    Account(AccountId),
    Exchange(&'a str),
}

impl Bucket<'_> {
    fn key(&self) -> String {
        match self {
            Bucket::Account(account) => format!("account:{}", account.get()),
            Bucket::Exchange(base_url) => format!("exchange:{base_url}"),
        }
    }

    fn spacing_ms(&self) -> i64 {
        match self {
            Bucket::Account(_) => REQUEST_SPACING_MS,
            Bucket::Exchange(_) => EXCHANGE_SPACING_MS,
        }
    }
}

/// Kommo's answer to `GET /api/v4/users/{id}` read as "an active admin": a user it does not know (404)
/// is not one; any other failure stays a failure (the caller fails closed).
fn admin_answer(answer: Result<Option<Value>, KommoError>) -> Result<bool, KommoError> {
    match answer {
        Ok(body) => Ok(body.as_ref().is_some_and(user_is_active_admin)),
        Err(KommoError::Rejected { status: 404, .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

/// `rights.is_admin` and `rights.is_active` of a user as `GET /api/v4/users/{id}` describes it.
fn user_is_active_admin(user: &Value) -> bool {
    let rights = &user["rights"];
    rights["is_admin"].as_bool() == Some(true) && rights["is_active"].as_bool() != Some(false)
}

/// A token pair with its absolute expiry.
pub struct TokenGrant {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_at: i64,
}

fn classify(status: StatusCode, retry_after: Option<Duration>, detail: String) -> KommoError {
    match status.as_u16() {
        402 => KommoError::Suspended("payment required (402)".into()),
        403 => KommoError::Suspended("access forbidden (403)".into()),
        429 => KommoError::RateLimited(retry_after.unwrap_or(Duration::from_secs(1))),
        500..=599 | 408 => KommoError::Transient(format!("HTTP {status}")),
        code => KommoError::Rejected { status: code, detail },
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn transport(error: reqwest::Error) -> KommoError {
    // `without_url`: the URL is harmless here, but error text must never grow a token by accident.
    let kind = if error.is_timeout() { "timed out" } else { "connection failed" };
    KommoError::Transient(format!("{kind}: {}", error.without_url()))
}

fn storage(error: sqlx::Error) -> KommoError {
    tracing::error!(%error, "database error in the Kommo client");
    KommoError::Transient("storage unavailable".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_hosts_get_a_base_url() {
        let hosts = KommoHosts::parse("*.kommo.com, http://127.0.0.1:8090").unwrap();
        assert_eq!(hosts.base_url("acme.kommo.com").as_deref(), Some("https://acme.kommo.com"));
        assert_eq!(hosts.base_url("ACME.kommo.com").as_deref(), Some("https://acme.kommo.com"));
        assert_eq!(hosts.base_url("127.0.0.1:8090").as_deref(), Some("http://127.0.0.1:8090"));
        for refused in [
            "evil.example",
            "kommo.com",
            "acme.kommo.com.evil.example",
            "a.b.kommo.com",
            "acme.kommo.com:8443",
            "evil.example/acme.kommo.com",
            "user@acme.kommo.com",
            "127.0.0.1:8091",
            "",
        ] {
            assert_eq!(hosts.base_url(refused), None, "{refused} was allowed");
        }
    }

    #[test]
    fn wildcard_hosts_name_their_subdomain_and_exact_hosts_none() {
        let hosts = KommoHosts::parse("*.kommo.com, http://127.0.0.1:8090").unwrap();
        assert_eq!(hosts.subdomain_of("acme.kommo.com").as_deref(), Some("acme"));
        assert_eq!(hosts.subdomain_of("ACME.kommo.com").as_deref(), Some("acme"));
        assert_eq!(hosts.subdomain_of("127.0.0.1:8090"), None);
        assert_eq!(hosts.subdomain_of("a.b.kommo.com"), None);
    }

    #[test]
    fn only_an_active_admin_counts_as_admin() {
        let user = |is_admin: Value, is_active: Value| serde_json::json!({"id": 1, "rights": {"is_admin": is_admin, "is_active": is_active}});
        assert!(user_is_active_admin(&user(true.into(), true.into())));
        assert!(!user_is_active_admin(&user(false.into(), true.into())));
        assert!(!user_is_active_admin(&user(true.into(), false.into())));
        assert!(!user_is_active_admin(&user("Y".into(), true.into())), "only Kommo's boolean counts");
        assert!(!user_is_active_admin(&serde_json::json!({"id": 1})));
    }

    #[test]
    fn host_allowlist_entries_are_validated() {
        assert!(KommoHosts::parse("").is_err());
        assert!(KommoHosts::parse("ftp://x.example").is_err());
        assert!(KommoHosts::parse("https://x.example/path").is_err());
    }

    #[test]
    fn a_refusal_names_each_refused_item_and_field() {
        let body = serde_json::json!({
            "title": "Bad Request", "status": 400, "detail": "Request validation failed",
            "validation-errors": [{"request_id": "c-1:call", "errors": [
                {"code": "NotSupportedChoice", "path": "direction", "detail": "The value is not supported"}]}]
        });
        assert_eq!(
            problem_detail(&body),
            "Request validation failed; [c-1:call] direction: NotSupportedChoice The value is not supported"
        );
        assert_eq!(problem_detail(&serde_json::json!({"title": "Not Found"})), "Not Found");
    }

    #[test]
    fn failures_are_classified_for_retry_policy() {
        assert_eq!(
            classify(StatusCode::PAYMENT_REQUIRED, None, String::new()),
            KommoError::Suspended("payment required (402)".into())
        );
        assert!(matches!(classify(StatusCode::FORBIDDEN, None, String::new()), KommoError::Suspended(_)));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(7)), String::new()),
            KommoError::RateLimited(Duration::from_secs(7))
        );
        assert!(matches!(classify(StatusCode::BAD_GATEWAY, None, String::new()), KommoError::Transient(_)));
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, None, "limit".into()),
            KommoError::Rejected { status: 422, detail: "limit".into() }
        );
    }
}
