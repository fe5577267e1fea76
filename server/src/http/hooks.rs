//! Provider webhooks: `POST /hooks/voip/{hook_id}`, where the unguessable hook id names the account.
//!
//! Order of checks, each refusal storing nothing: a client address that used up its failure budget
//! (429, before any lookup) → the raw body capped (413) → the hook id resolved (404) → the Standard
//! Webhooks signature verified on the raw bytes with that account's secrets, timestamp within ±300 s
//! (401) → the account's ingest budget (429 `ingest_budget`) → the account's integration turned on
//! (409) → the event's schema (400, naming the field). Then the event is committed to the inbox
//! together with its job (group commit, see `ingest`) and only then answered 200. A repeated delivery
//! gets 200 and is stored once.
//!
//! Only refusals count against a client address (unknown hook ids and bad signatures: someone probing
//! or forging); accepted deliveries never do, since one PBX sends every call of an account from one
//! address. An account's own signed flood meets its ingest budget (per account, after the signature,
//! so nobody else can spend it) and its share of the writer's queue, never another account's.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::FromWebhook;
use shared::api::IncomingCall;

use super::AppState;
use super::error::ApiError;
use super::settings::{VOIP_TOKEN_COLUMN, WEBHOOK_SECRET_COLUMN};
use crate::clock::unix_secs;
use crate::crypto::SealContext;
use crate::ingest::{Incoming, IngestError, Stored};
use crate::store::{AccountId, Engine};
use crate::throttle::ClientAddr;
use webhook_signing::{SignatureError, SignedHeaders, WebhookSecret};

/// Largest body a provider may send; larger ones get 413 before any parsing.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

/// Longest hook id we look up; ours are 32 characters of base64url.
const MAX_HOOK_ID_LEN: usize = 64;

/// How long this process answers an unknown hook id from memory (see [`HookCache`]).
pub const HOOK_MISS_TTL: Duration = Duration::from_secs(3);

/// How long an account over its share of the writer's queue is asked to wait.
const ACCOUNT_BUSY_RETRY: Duration = Duration::from_secs(1);

pub async fn receive(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(hook_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let now = unix_secs();
    let (hook, body) = resolved(&state, client, &hook_id, body, now).await.map_err(counted)?;
    if !crate::adapters::speaks_our_contract(hook.system) {
        admitted_source(&state, client, &hook).map_err(counted)?;
        let request = adapted_request(&state, &Method::POST, &hook_id, query.as_deref(), &headers, &body, now);
        return adapted(&state, client, &hook, &request).await.map_err(counted);
    }
    let result = accept(&state, client, hook, &headers, body, now).await;
    match &result {
        Ok((_, _, stored, _, _)) => {
            let outcome = if *stored == Stored::Duplicate { "duplicate" } else { "stored" };
            metrics::counter!("webhooks_received_total", "outcome" => outcome).increment(1);
        }
        Err(refusal) => {
            metrics::counter!("webhooks_refused_total", "reason" => refusal.reason).increment(1);
        }
    }
    let (account, event, stored, popup, kommo_notification) = result.map_err(|refusal| refusal.error)?;
    if let Stored::New(event_id) = stored {
        // The account prefers Kommo's own notification: sent once, by the replica that took the webhook.
        let inbound = event.direction.is_none_or(|direction| direction == shared::CallDirection::Inbound);
        if kommo_notification && inbound && event.status == shared::CallStatus::Ringing {
            state.calls.notify_in_kommo(account, popup.client_number(), event.extension.as_deref());
        }
        // Tells the account's widgets (the extension's user, when mapped) about the call; where a widget
        // receives it, who is calling is looked up unless it was at hand (`Hub::describe_with`).
        let popup = IncomingCall { event_id: Some(event_id), ..popup };
        state.hub.send(&state.store, account, popup).await;
    }
    Ok(Json(json!({ "stored": true, "duplicate": stored == Stored::Duplicate })).into_response())
}

/// `GET /hooks/voip/{hook_id}`: the setup check some systems make when their URL is entered (Zadarma's
/// `zd_echo`), for accounts whose system makes one; for the others the path has nothing to GET (404).
pub async fn check(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(hook_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let now = unix_secs();
    let (hook, body) = resolved(&state, client, &hook_id, Ok(Bytes::new()), now).await.map_err(counted)?;
    if crate::adapters::speaks_our_contract(hook.system) {
        return Err(ApiError::NotFound);
    }
    if let Some(query) = query.as_deref()
        && let Some(response) = recording(&state, client, &hook, query).await?
    {
        return Ok(response);
    }
    let request = adapted_request(&state, &Method::GET, &hook_id, query.as_deref(), &headers, &body, now);
    adapted(&state, client, &hook, &request).await.map_err(counted)
}

/// A recording link of ours, as a Kommo call's `link` carries it for a system whose own links expire (Zadarma's
/// `zd_record`, Yeastar's `ys_recording`, each with a tag made with the account's API secret): redirected to a
/// fresh link the system's API gives, `no-store`. `None` when the query names no recording; a wrong tag is
/// 404 and counts against the client address.
async fn recording(
    state: &AppState,
    client: std::net::IpAddr,
    hook: &ResolvedHook,
    query: &str,
) -> Result<Option<Response>, ApiError> {
    use crate::adapters::{yeastar, zadarma};
    use shared::ProviderSystem;
    let names = |param: &str| form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == param);
    let (Some(secret), system) = (hook.api_secret.as_ref(), hook.system) else { return Ok(None) };
    let asked = match system {
        ProviderSystem::Zadarma if names("zd_record") => zadarma::recording_request(query, secret),
        ProviderSystem::Yeastar if names("ys_recording") => yeastar::recording_request(query, secret),
        _ => return Ok(None),
    };
    let Some(name) = asked else {
        state.throttle.webhook_failed(client);
        return Err(ApiError::NotFound);
    };
    // Each costs a request to the system's API: the account's own budget bounds them.
    state
        .throttle
        .ingest(hook.account)
        .map_err(|retry_after| ApiError::TooManyRequests { code: "ingest_budget", retry_after })?;
    let row = state.store.settings(hook.account).await?.ok_or(ApiError::NotFound)?;
    let url = row.provider_url.trim().trim_end_matches('/');
    let link = match system {
        ProviderSystem::Zadarma => zadarma::recording_link(&state.provider, url, &hook.login, secret, &name).await,
        _ => yeastar::recording_link(&state.provider, url, &hook.login, secret, &name)
            .await
            .map(|link| secrecy::ExposeSecret::expose_secret(&link).to_owned()),
    }
    .map_err(|error| {
        tracing::info!(account.id = hook.account.get(), %error, "a recording link could not be had");
        ApiError::Dial(crate::dialer::refusal_of(&error))
    })?;
    let headers = [(header::LOCATION, link), (header::CACHE_CONTROL, "no-store".to_owned())];
    Ok(Some((axum::http::StatusCode::FOUND, headers).into_response()))
}

/// Whether a system's notification may come from `client`: Zadarma's only from `ZADARMA_SOURCES` when the
/// operator lists them (its signature has no timestamp, so an allowlist is the one guard against a captured
/// notification posted again). Only notifications (POST): `zd_echo` stores nothing, and recording links are
/// opened by managers' browsers.
fn admitted_source(state: &AppState, client: std::net::IpAddr, hook: &ResolvedHook) -> Result<(), Refusal> {
    let sources = match (hook.system, &state.limits.zadarma_sources) {
        (shared::ProviderSystem::Zadarma, Some(sources)) => sources,
        _ => return Ok(()),
    };
    if sources.iter().any(|source| crate::throttle::key(*source) == client) {
        return Ok(());
    }
    state.throttle.webhook_failed(client);
    tracing::info!(account.id = hook.account.get(), %client, "a Zadarma notification from outside ZADARMA_SOURCES");
    Err(refuse("source", ApiError::Forbidden("the sender is not one of ZADARMA_SOURCES".into())))
}

/// A refusal counted in the metrics, as its error.
fn counted(refusal: Refusal) -> ApiError {
    metrics::counter!("webhooks_refused_total", "reason" => refusal.reason).increment(1);
    refusal.error
}

fn adapted_request<'a>(
    state: &AppState,
    method: &'a Method,
    hook_id: &str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    now: i64,
) -> crate::adapters::Request<'a> {
    let mut public_url = format!("{}/hooks/voip/{hook_id}", state.public_base_url);
    if let Some(query) = query {
        public_url.push('?');
        public_url.push_str(query);
    }
    crate::adapters::Request { method, headers, query, body, public_url, now }
}

/// A request of a system with an adapter: verified and read by it, then each of its call events stored
/// and announced like one of our own; answered 200 only after every event is committed.
async fn adapted(
    state: &AppState,
    client: std::net::IpAddr,
    hook: &Arc<ResolvedHook>,
    request: &crate::adapters::Request<'_>,
) -> Result<Response, Refusal> {
    use crate::adapters::{AdapterError, Inbound, Keys};
    let signing = hook.secrets(request.now);
    let keys = Keys { login: &hook.login, secret: hook.api_secret.as_ref(), signing: &signing };
    let inbound = crate::adapters::inbound(hook.system, request, &keys).map_err(|error| match error {
        AdapterError::BadSignature(why) => {
            state.throttle.webhook_failed(client);
            tracing::info!(
                account.id = hook.account.get(),
                system = hook.system.as_str(),
                why,
                "provider webhook refused"
            );
            refuse("bad_signature", ApiError::BadSignature(SignatureError::NoMatchingSignature))
        }
        AdapterError::Malformed(message) => refuse("malformed", ApiError::BadRequest(message)),
        AdapterError::Refused(why) => refuse("refused", ApiError::Conflict("event_refused", why)),
    })?;
    let deliveries = match inbound {
        Inbound::Echo(text) => {
            return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
        }
        Inbound::Nothing => return Ok(Json(json!({ "stored": 0, "duplicates": 0 })).into_response()),
        Inbound::Events(deliveries) => deliveries,
    };
    let account = hook.account;
    let (mut stored, mut duplicates) = (0, 0);
    for delivery in deliveries {
        state.throttle.ingest(account).map_err(|retry_after| {
            refuse("ingest_budget", ApiError::TooManyRequests { code: "ingest_budget", retry_after })
        })?;
        if !hook.active {
            return Err(inactive());
        }
        if let Some(binding) = &delivery.binding {
            let call_id = &delivery.event.call_id;
            let agrees = state
                .store
                .bind_call(account, call_id, &binding.signed, binding.line.as_deref(), request.now)
                .await
                .map_err(|error| {
                    tracing::error!(%error, "cannot read or write a call's binding");
                    refuse("unavailable", ApiError::Unavailable("the event store is unavailable; retry".into()))
                })?;
            if !agrees {
                tracing::warn!(account.id = account.get(), call.id = %call_id, "an event signed another call's fields");
                return Err(refuse(
                    "refused",
                    ApiError::Conflict("event_refused", "its signed fields are not its call's"),
                ));
            }
        }
        let event = delivery.event;
        event.validate().map_err(|error| refuse("malformed", ApiError::BadRequest(error.to_string())))?;
        let text = serde_json::to_string(&event).expect("a call event always serialises");
        let (outcome, popup) = store_event(state, hook, &delivery.webhook_id, &event, text, request.now).await?;
        metrics::counter!("webhooks_received_total", "outcome" => if outcome == Stored::Duplicate { "duplicate" } else { "stored" }).increment(1);
        match outcome {
            Stored::New(event_id) => {
                stored += 1;
                announce(state, hook, &event, popup, event_id).await;
            }
            Stored::Duplicate => duplicates += 1,
        }
    }
    Ok(Json(json!({ "stored": stored, "duplicates": duplicates })).into_response())
}

/// A new event's announcements: Kommo's own notification when the account prefers it, and the popup.
async fn announce(state: &AppState, hook: &ResolvedHook, event: &FromWebhook, popup: IncomingCall, event_id: i64) {
    let account = hook.account;
    let inbound = event.direction.is_none_or(|direction| direction == shared::CallDirection::Inbound);
    if hook.kommo_notification && inbound && event.status == shared::CallStatus::Ringing {
        state.calls.notify_in_kommo(account, popup.client_number(), event.extension.as_deref());
    }
    let popup = IncomingCall { event_id: Some(event_id), ..popup };
    state.hub.send(&state.store, account, popup).await;
}

/// Whether a widget of the account watches on this process (a stream of it is open here): only then is
/// the caller's name looked up for the call's first event. (Another replica's streams get it a moment
/// later, from the description that replica looks up.)
fn watched(state: &AppState, account: AccountId) -> bool {
    state.hub.has_subscribers(account)
}

/// A refusal with its metrics label.
pub(crate) struct Refusal {
    pub(crate) reason: &'static str,
    pub(crate) error: ApiError,
}

/// The refusal of a provider request for an account whose integration is turned off.
pub(crate) fn inactive() -> Refusal {
    refuse("inactive", ApiError::Conflict("integration_inactive", "The integration is turned off for this account."))
}

pub(crate) fn refuse(reason: &'static str, error: ApiError) -> Refusal {
    Refusal { reason, error }
}

async fn accept(
    state: &AppState,
    client: std::net::IpAddr,
    hook: Arc<ResolvedHook>,
    headers: &HeaderMap,
    body: Bytes,
    now: i64,
) -> Result<(AccountId, FromWebhook, Stored, IncomingCall, bool), Refusal> {
    verify_standard(state, client, &hook, headers, &body, now)?;
    let account = hook.account;
    let signed = SignedHeaders::from_headers(headers);
    // The account's own signed traffic, and only it, spends the account's budget.
    state.throttle.ingest(account).map_err(|retry_after| {
        refuse("ingest_budget", ApiError::TooManyRequests { code: "ingest_budget", retry_after })
    })?;
    // `webhook-id` is stored and may be logged: printable text only (a tab passes HTTP's header rules).
    let webhook_id = signed.id.unwrap_or_default();
    if webhook_id.chars().any(shared::call::is_non_printing) {
        return Err(refuse(
            "malformed",
            ApiError::BadRequest("header `webhook-id`: must not contain control characters".into()),
        ));
    }
    if !hook.active {
        // Kommo's "disable" (active: 'N') stops call processing for the account.
        return Err(inactive());
    }

    let event: FromWebhook =
        serde_json::from_slice(&body).map_err(|error| refuse("malformed", ApiError::BadRequest(error.to_string())))?;
    event.validate().map_err(|error| refuse("malformed", ApiError::BadRequest(error.to_string())))?;
    // The signature covered these bytes, and they parsed as JSON: valid UTF-8.
    let text =
        String::from_utf8(body.to_vec()).map_err(|_| refuse("malformed", ApiError::BadRequest("not UTF-8".into())))?;
    let (stored, popup) = store_event(state, &hook, webhook_id, &event, text, now).await?;
    Ok((account, event, stored, popup, hook.kommo_notification))
}

/// Commits one verified event to the inbox with its call's job (group commit); returns whether it was new
/// and the popup it makes.
async fn store_event(
    state: &AppState,
    hook: &ResolvedHook,
    webhook_id: &str,
    event: &FromWebhook,
    text: String,
    now: i64,
) -> Result<(Stored, IncomingCall), Refusal> {
    let account = hook.account;
    // Who is calling goes with the call's first event when a lookup described the number lately, or
    // the phone index knows it (the rest of the description follows).
    let mut popup = crate::push::popup_of(event);
    if !crate::calls::ends_call(event) && watched(state, account) {
        popup.caller = state.calls.caller_id().known(&state.store, account, popup.client_number()).await;
    }
    let incoming = Incoming {
        account,
        webhook_id: webhook_id.to_owned(),
        event_key: event_key(event),
        call_id: event.call_id.clone(),
        body: text,
        received_at: now,
        queues_job: crate::calls::ends_call(event),
        // On PostgreSQL the popup goes out with the event's commit (see `NewEvent::popup`).
        popup: (state.store.engine() == Engine::Postgres).then(|| popup.clone()),
    };
    let stored = state.ingestor.store(incoming).await.map_err(|error| match error {
        // The account's own flood fills its share of the queue: its problem, not everybody's 503.
        IngestError::AccountBusy => refuse(
            "ingest_budget",
            ApiError::TooManyRequests { code: "ingest_budget", retry_after: ACCOUNT_BUSY_RETRY },
        ),
        IngestError::Busy => refuse("busy", ApiError::Unavailable(error.to_string())),
        IngestError::Closed | IngestError::Database(_) => {
            refuse("unavailable", ApiError::Unavailable(error.to_string()))
        }
    })?;
    tracing::info!(
        account.id = account.get(), call.id = %event.call_id, status = event.status.as_str(),
        duplicate = stored == Stored::Duplicate, "call event stored"
    );
    Ok((stored, popup))
}

/// The checks every signed provider request shares (call events and caller-id questions), in order: the
/// client address's budget of refused requests (429 before any lookup), the body as read (413), the hook
/// id resolved (404) and the Standard Webhooks signature over the raw body with the account's secrets,
/// timestamp within ±300 s (401). Unknown ids and bad signatures count against the client address.
pub(crate) async fn verified(
    state: &AppState,
    client: std::net::IpAddr,
    hook_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    now: i64,
) -> Result<(Arc<ResolvedHook>, Bytes), Refusal> {
    let (hook, body) = resolved(state, client, hook_id, body, now).await?;
    verify_standard(state, client, &hook, headers, &body, now)?;
    Ok((hook, body))
}

/// The client address's budget of refused requests (429 before any lookup), the body as read (413) and
/// the hook id resolved (404; counted against the client address).
async fn resolved(
    state: &AppState,
    client: std::net::IpAddr,
    hook_id: &str,
    body: Result<Bytes, BytesRejection>,
    now: i64,
) -> Result<(Arc<ResolvedHook>, Bytes), Refusal> {
    if let Some(retry_after) = state.throttle.webhook_blocked(client) {
        return Err(refuse("blocked", ApiError::TooManyRequests { code: "rate_limited", retry_after }));
    }
    let body = body.map_err(|rejection| {
        let error = ApiError::from(rejection);
        let reason = if matches!(error, ApiError::PayloadTooLarge) { "too_large" } else { "unreadable" };
        refuse(reason, error)
    })?;
    let unknown = || {
        state.throttle.webhook_failed(client);
        refuse("unknown_hook", ApiError::NotFound)
    };
    // Not one of ours by its shape (ours are base64url): no lookup, no cache entry.
    let plausible = hook_id.len() <= MAX_HOOK_ID_LEN
        && hook_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !plausible {
        return Err(unknown());
    }
    let hook = state
        .hooks
        .resolve(state, hook_id, now)
        .await
        .map_err(|error| refuse("unavailable", ApiError::from(error)))?
        .ok_or_else(unknown)?;
    Ok((hook, body))
}

/// The Standard Webhooks signature of our contract over the raw body, with the account's secrets, the
/// timestamp within ±300 s (401, counted against the client address).
fn verify_standard(
    state: &AppState,
    client: std::net::IpAddr,
    hook: &ResolvedHook,
    headers: &HeaderMap,
    body: &Bytes,
    now: i64,
) -> Result<(), Refusal> {
    let account = hook.account;
    let signed = SignedHeaders::from_headers(headers);
    webhook_signing::verify(&signed, body, now, &hook.secrets(now)).map_err(|error| {
        let reason = match error {
            SignatureError::MissingHeader(_) | SignatureError::MalformedHeader(_) => "signature_missing",
            SignatureError::TimestampOutOfTolerance => "stale_timestamp",
            SignatureError::NoMatchingSignature => "bad_signature",
        };
        state.throttle.webhook_failed(client);
        tracing::info!(account.id = account.get(), reason, "provider webhook refused");
        refuse(reason, ApiError::BadSignature(error))
    })
}

/// A webhook path resolved: its account, whether processing is on, and the opened signing secrets.
pub struct ResolvedHook {
    pub account: AccountId,
    pub active: bool,
    pub secret: Option<WebhookSecret>,
    /// The secret before the last rotation, and until when (unix seconds) it verifies.
    pub previous: Option<(WebhookSecret, i64)>,
    /// Kommo's own call notification instead of the widget's popup (the account's settings).
    pub kommo_notification: bool,
    /// The telephony system: our contract, or one an adapter reads.
    pub system: shared::ProviderSystem,
    /// The VoIP login and, for a system that signs with it (Zadarma's API secret, Twilio's auth token),
    /// the opened VoIP secret; ours and the connector's need neither here.
    pub login: String,
    pub api_secret: Option<secrecy::SecretString>,
}

impl ResolvedHook {
    /// The secrets a delivery at `now` may be signed with.
    fn secrets(&self, now: i64) -> Vec<WebhookSecret> {
        let previous = self.previous.iter().filter(|(_, until)| *until > now).map(|(secret, _)| secret);
        self.secret.iter().chain(previous).cloned().collect()
    }
}

/// Resolved webhook paths, kept a few seconds: the busiest path (every provider event) then reads no
/// row and opens no sealed secret. A settings save, a secret rotation, turning the integration off and
/// Kommo's disable hook forget them at once in this process; another process sees such a change
/// within [`HOOK_CACHE_TTL`] (a rotated-away secret keeps verifying for 24 h anyway).
///
/// Unknown ids are remembered too, for [`HOOK_MISS_TTL`] and at most [`MAX_HOOK_MISSES`] of them, so
/// that a client repeating a wrong id costs no database read; the same [`HookCache::forget`] drops them.
#[derive(Clone)]
pub struct HookCache {
    cache: moka::future::Cache<String, Arc<ResolvedHook>>,
    misses: moka::future::Cache<String, ()>,
}

/// How long a resolved webhook path is reused.
pub const HOOK_CACHE_TTL: Duration = Duration::from_secs(5);
/// Unknown hook ids remembered at most.
pub const MAX_HOOK_MISSES: u64 = 10_000;

impl Default for HookCache {
    fn default() -> Self {
        HookCache {
            cache: moka::future::Cache::builder().max_capacity(10_000).time_to_live(HOOK_CACHE_TTL).build(),
            misses: moka::future::Cache::builder().max_capacity(MAX_HOOK_MISSES).time_to_live(HOOK_MISS_TTL).build(),
        }
    }
}

impl HookCache {
    async fn resolve(&self, state: &AppState, hook_id: &str, now: i64) -> sqlx::Result<Option<Arc<ResolvedHook>>> {
        if let Some(hook) = self.cache.get(hook_id).await {
            return Ok(Some(hook));
        }
        if self.misses.contains_key(hook_id) {
            return Ok(None);
        }
        let Some(hook) = state.store.hook(hook_id, now).await? else {
            self.misses.insert(hook_id.to_owned(), ()).await;
            return Ok(None);
        };
        let context = SealContext { column: WEBHOOK_SECRET_COLUMN, account_id: hook.account.get() };
        let open = |sealed: &str| {
            let text = state.keyring.open(context, sealed).ok()?;
            WebhookSecret::parse(secrecy::ExposeSecret::expose_secret(&text)).ok()
        };
        let secret = open(&hook.secret);
        let previous = hook.previous_secret.and_then(|(sealed, until)| Some((open(&sealed)?, until)));
        let kommo_notification = serde_json::from_str::<shared::CallHandling>(&hook.config)
            .is_ok_and(|handling| handling.widget.kommo_notification);
        let system = shared::ProviderSystem::parse(&hook.provider_system).unwrap_or_default();
        let api_secret = match (crate::adapters::speaks_our_contract(system), &hook.voip_token) {
            (false, Some(sealed)) => {
                let context = SealContext { column: VOIP_TOKEN_COLUMN, account_id: hook.account.get() };
                state.keyring.open(context, sealed).ok()
            }
            _ => None,
        };
        let resolved = Arc::new(ResolvedHook {
            account: hook.account,
            active: hook.active,
            secret,
            previous,
            kommo_notification,
            system,
            login: hook.voip_login.clone(),
            api_secret,
        });
        self.cache.insert(hook_id.to_owned(), resolved.clone()).await;
        Ok(Some(resolved))
    }

    /// Forgets every resolved path and every remembered miss (after a change to any account's webhook
    /// settings: a new endpoint answers at once).
    pub fn forget(&self) {
        self.cache.invalidate_all();
        self.misses.invalidate_all();
    }
}

/// Identifies a provider event independently of its delivery: the call and what happened to it.
pub fn event_key(event: &FromWebhook) -> String {
    let kind = match event.event_type {
        Some(kind) => serde_json::to_value(kind).ok().and_then(|value| value.as_str().map(str::to_owned)),
        None => None,
    };
    format!("{}/{}", event.call_id, kind.unwrap_or_else(|| event.status.as_str().to_owned()))
}
