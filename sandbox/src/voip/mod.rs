//! The VoIP provider stand-in: the provider API our server calls (`{provider_url}/v1/...`, with
//! `provider_url` = `http://<sandbox>/voip`), signed Standard Webhooks deliveries to our webhook URL, and
//! control endpoints under `/sandbox/voip/` for tests.
//!
//! | Endpoint | What it does |
//! |---|---|
//! | `POST /voip/v1/oauth/token` form `grant_type=client_credentials` | OAuth 2.0 client credentials, the client by HTTP Basic `client_id:client_secret` → 200 `{access_token, token_type: "Bearer", expires_in}`; 401 `{"error":"invalid_client"}`; 400 `{"error":"unsupported_grant_type"}` (`invalid_request` without a form `grant_type`) |
//! | `GET /voip/v1/account` | HTTP Basic (login + password), `Authorization: Bearer <api key>` or `Bearer <unexpired access token>` → 200 `{account_id, name}`; else 401 |
//! | `POST /voip/v1/calls` `{extension, to}` | Same auth → 201 `{call_id}`, the call is recorded and, when the account has a webhook, played into it ([`playback`]); 404 an extension the account lacks; 422 a malformed number; 400 a body that is not that JSON |
//! | any other `/voip/...` | Counted, then 404 |
//! | `POST /sandbox/voip/accounts` `{login, password?, api_key?, client_id?, client_secret?, extensions?, account_id?, name?, playback?}` | Adds a provider account (201) |
//! | `PUT /sandbox/voip/accounts/{id}/webhook` `{webhook_url, secret}`, `GET`, `DELETE` | Where the account posts its originated calls' events, signed with `secret` (`whsec_…`) → `{account_id, webhook_url}` (never the secret); `DELETE` (204): its calls are only recorded again |
//! | `PUT /sandbox/voip/accounts/{id}/playback` [`Playback`], `GET` | How it plays them: `{answer_after_ms: 2000, talk_ms: 5000, no_answer_after_ms: 6000, unanswered_numbers: [], unanswered_status: "missed", manual: false, line: "+551133330000"}`, a field left out taking its default |
//! | `GET /sandbox/voip/calls?account_id=`, `GET /sandbox/voip/calls/{call_id}` | The originated calls, oldest first, with their playback ([`PlayedCall`]: `state` `recorded`/`ringing`/`answered`/`ended`/`missed`/`busy`/`failed`, `events` as delivered) |
//! | `POST /sandbox/voip/calls/{call_id}/answer`, `POST /sandbox/voip/calls/{call_id}/end` `{status?, duration?}` | Moves a played call now (manual mode, or ahead of its timers) → the call once its event was delivered; 404 unknown, 409 not played, over, or not ringing (answer) |
//! | `POST /sandbox/voip/expire-tokens` | Every issued access token expires now → `{expired}` (how many were still valid) |
//! | `GET /sandbox/voip/accounts` | The accounts, without their secrets |
//! | `POST /sandbox/voip/faults` `{status?, count?, delay_ms?}`, `DELETE` | Queues (clears) faults for the next `/voip/...` requests |
//! | `GET /sandbox/voip/stats`, `POST /sandbox/voip/reset-stats` | Requests by `METHOD /path` and outcome, originated calls (with `received_at_ms`), every originate request (`originate_requests`: `{received_at_ms, extension, to, outcome, call_id}`), sent webhooks (a played event's with its `event`) |
//! | `POST /sandbox/voip/send` `{webhook_url, secret, event, webhook_id?, timestamp_offset?, signature_override?}` | Posts a signed event → `{status, body, webhook_id, timestamp, signature}` |
//!
//! Smart forwarding: before a call of the host page's call panel (`POST /sandbox/provider/call`, see
//! `crate::provider`) rings, the provider asks our server's caller-id endpoint (the webhook URL +
//! `/caller-id`, signed with the same secret) and rings the extension it names; every later event of the
//! call carries that extension. An answer later than [`CALLER_ID_TIMEOUT`], a failure, or an answer that
//! names no extension leaves the extension the call would have rung. Each ask is listed in the stats'
//! `routes`.
//!
//! Errors of the provider API are `application/problem+json` `{title, type, status, detail}`, except the token
//! endpoint's refusals, which are RFC 6749's `{"error": "..."}`. Faults apply before authentication, the way an
//! outage would, the token endpoint included.

mod api;
mod control;
pub mod playback;
pub mod signature;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::{Deserialize, Serialize};
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};

pub use playback::{Playback, PlayedCall, PlayedEvent, Unanswered};
pub use signature::{Secret, SecretError};

/// The extensions every account has unless it is created with its own list.
pub const DEFAULT_EXTENSIONS: [&str; 5] = ["101", "102", "103", "104", "105"];

/// The configured provider account (`SANDBOX_VOIP_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The provider's id of the account: `/v1/account`'s `account_id`, the webhooks' `voipAccountId`.
    pub account_id: String,
    pub name: String,
    pub login: String,
    pub password: String,
    pub api_key: String,
    /// The account's OAuth 2.0 client (client credentials grant).
    pub client_id: String,
    pub client_secret: String,
    /// How long an issued access token is accepted: the token answer's `expires_in`.
    pub token_ttl: Duration,
    pub extensions: Vec<String>,
    /// How the account plays the calls it originates, once it knows where to post their events.
    pub playback: Playback,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            account_id: crate::provider::DEFAULT_VOIP_ACCOUNT_ID.to_owned(),
            name: "Sandbox VoIP".to_owned(),
            login: "agent".to_owned(),
            password: "sandbox-voip-password".to_owned(),
            api_key: "sandbox-voip-api-key".to_owned(),
            client_id: "sandbox-client".to_owned(),
            client_secret: "sandbox-client-secret".to_owned(),
            token_ttl: Duration::from_secs(3600),
            extensions: DEFAULT_EXTENSIONS.map(str::to_owned).to_vec(),
            playback: Playback::default(),
        }
    }
}

/// One provider account; a request is its account's when its Basic pair, its API key or an access token issued
/// to its OAuth client matches.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub account_id: String,
    pub name: String,
    pub login: String,
    #[serde(skip)]
    pub password: Option<String>,
    #[serde(skip)]
    pub api_key: Option<String>,
    /// The OAuth client's id; it has a secret whenever it is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip)]
    pub client_secret: Option<String>,
    pub extensions: Vec<String>,
    /// Where the account posts the events of the calls it originates (`PUT
    /// /sandbox/voip/accounts/{id}/webhook`); shown without its secret.
    #[serde(rename = "webhook_url", skip_serializing_if = "Option::is_none", serialize_with = "playback::webhook_url")]
    pub webhook: Option<playback::Target>,
    pub playback: Playback,
}

/// An access token the token endpoint issued.
#[derive(Debug, Clone)]
struct IssuedToken {
    account_id: String,
    expires_at: Instant,
}

/// `POST /sandbox/voip/faults`: the next `count` `/voip/...` requests answer `status` and/or wait `delay_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The status to answer; none means the request is only delayed and then served normally.
    pub status: Option<u16>,
    #[serde(default = "one")]
    pub count: u32,
    pub delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// How long the provider waits for our server's caller-id answer before it rings as it would have.
pub const CALLER_ID_TIMEOUT: Duration = Duration::from_secs(1);

/// Calls whose routing is remembered at most (the oldest are forgotten first).
const MAX_ROUTES: usize = 10_000;

/// One caller-id question before a call rang.
#[derive(Debug, Clone, Serialize)]
pub struct RoutedCall {
    pub call_id: String,
    /// `routed` (the answer named an extension), `as_usual` (it named none), `late` (no answer within
    /// [`CALLER_ID_TIMEOUT`]), `failed` (no answer, or not a 200 with the answer's JSON).
    pub outcome: &'static str,
    /// The extension the call rang: the answer's when routed, else the one it would have rung.
    pub extension: Option<String>,
    /// The server's answer, when one came in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

/// A click-to-call the provider accepted.
#[derive(Debug, Clone, Serialize)]
pub struct OriginatedCall {
    pub call_id: String,
    pub account_id: String,
    pub extension: String,
    /// The number as our server sent it.
    pub to: String,
    /// Unix seconds.
    pub at: i64,
    /// Unix milliseconds at which the request was received (before any injected fault's delay).
    pub received_at_ms: i64,
}

/// One `POST /voip/v1/calls` as received, whatever its outcome: when, what it asked, how it was answered.
#[derive(Debug, Clone, Serialize)]
pub struct OriginateRequest {
    /// Unix milliseconds at which the request was received (before any injected fault's delay).
    pub received_at_ms: i64,
    /// The body's `extension` and `to` when it held them as strings.
    pub extension: Option<String>,
    pub to: Option<String>,
    /// The outcome counted in [`Stats::requests`] (`ok`, `fault`, `unauthorized`, ...).
    pub outcome: &'static str,
    /// The call's id when it was placed.
    pub call_id: Option<String>,
}

/// One delivery of `/sandbox/voip/send`, or one event of an originated call the provider played.
#[derive(Debug, Clone, Serialize)]
pub struct SentWebhook {
    pub webhook_id: String,
    pub call_id: String,
    /// The webhook's HTTP status (0 when it could not be reached).
    pub status: u16,
    /// The call status the event reported, for the events of an originated call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'static str>,
}

/// What tests assert on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// `METHOD /path` → outcome (`ok`, `unauthorized`, `unknown_extension`, `bad_number`, `bad_request`,
    /// `not_found`, `fault`; for the token endpoint `invalid_client`, `unsupported_grant_type`,
    /// `invalid_request`) → count.
    pub requests: BTreeMap<String, BTreeMap<&'static str, u64>>,
    pub calls: Vec<OriginatedCall>,
    /// Every `POST /voip/v1/calls`, accepted or not, in the order received.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub originate_requests: Vec<OriginateRequest>,
    pub webhooks: Vec<SentWebhook>,
    /// Caller-id questions asked before calls rang, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RoutedCall>,
}

/// The stand-in's memory.
#[derive(Debug, Default)]
pub(crate) struct Book {
    accounts: Vec<Account>,
    /// Access token → whose, until when. Expired tokens are dropped when the next one is issued.
    tokens: HashMap<String, IssuedToken>,
    faults: VecDeque<Fault>,
    stats: Stats,
    /// Call id → the extension the caller-id answer routed it to, oldest first.
    routed: VecDeque<(String, String)>,
    /// The originated calls and how their playback stands, oldest first (at most [`playback::MAX_PLAYED`]).
    played: VecDeque<PlayedCall>,
}

impl Book {
    /// The account whose Basic pair matches; an account without a password never matches Basic.
    fn by_basic(&self, login: &str, password: &str) -> Option<&Account> {
        self.accounts.iter().find(|account| account.login == login && account.password.as_deref() == Some(password))
    }

    fn by_api_key(&self, key: &str) -> Option<&Account> {
        self.accounts.iter().find(|account| account.api_key.as_deref() == Some(key))
    }

    /// The account of a Bearer credential: an API key, or an access token issued before and not yet expired.
    fn by_bearer(&self, token: &str, now: Instant) -> Option<&Account> {
        if let Some(account) = self.by_api_key(token) {
            return Some(account);
        }
        let issued = self.tokens.get(token).filter(|issued| now < issued.expires_at)?;
        self.accounts.iter().find(|account| account.account_id == issued.account_id)
    }

    /// The account whose OAuth client this is; an account without a client never matches.
    fn by_client(&self, client_id: &str, client_secret: &str) -> Option<&Account> {
        self.accounts.iter().find(|account| {
            account.client_id.as_deref() == Some(client_id) && account.client_secret.as_deref() == Some(client_secret)
        })
    }

    /// Issues a fresh access token for the account, valid for `ttl` from `now`.
    fn issue_token(&mut self, account_id: &str, ttl: Duration, now: Instant) -> String {
        self.tokens.retain(|_, issued| now < issued.expires_at);
        let token = format!("voip_at_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        self.tokens.insert(token.clone(), IssuedToken { account_id: account_id.to_owned(), expires_at: now + ttl });
        token
    }

    /// Makes every issued access token expire at `now`; returns how many were still valid.
    fn expire_tokens(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        for issued in self.tokens.values_mut() {
            if now < issued.expires_at {
                expired += 1;
                issued.expires_at = now;
            }
        }
        expired
    }

    /// Adds the account unless its login, API key, client id or account id is already someone's; then says whose.
    fn add_account(&mut self, account: Account) -> Result<(), String> {
        for existing in &self.accounts {
            if existing.login == account.login {
                return Err(format!("login `{}` is taken", account.login));
            }
            if existing.account_id == account.account_id {
                return Err(format!("account_id `{}` is taken", account.account_id));
            }
            if account.api_key.is_some() && existing.api_key == account.api_key {
                return Err(format!("that api_key is account `{}`'s", existing.account_id));
            }
            if account.client_id.is_some() && existing.client_id == account.client_id {
                return Err(format!("that client_id is account `{}`'s", existing.account_id));
            }
        }
        self.accounts.push(account);
        Ok(())
    }

    /// Uses up one request of the oldest queued fault.
    fn take_fault(&mut self) -> Option<Fault> {
        let fault = self.faults.front_mut()?;
        fault.count -= 1;
        let taken = fault.clone();
        if fault.count == 0 {
            self.faults.pop_front();
        }
        Some(taken)
    }

    fn count(&mut self, route: &str, outcome: &'static str) {
        *self.stats.requests.entry(route.to_owned()).or_default().entry(outcome).or_default() += 1;
    }
}

/// The provider stand-in's settings and memory.
pub struct Provider {
    /// The configured account's id: the `voipAccountId` of events that name none.
    default_account_id: String,
    /// The lifetime of every access token issued.
    token_ttl: Duration,
    book: Mutex<Book>,
}

impl Provider {
    pub fn new(settings: Settings) -> Provider {
        let account = Account {
            account_id: settings.account_id.clone(),
            name: settings.name,
            login: settings.login,
            password: Some(settings.password),
            api_key: Some(settings.api_key),
            client_id: Some(settings.client_id),
            client_secret: Some(settings.client_secret),
            extensions: settings.extensions,
            webhook: None,
            playback: settings.playback,
        };
        let mut book = Book::default();
        book.accounts.push(account);
        Provider { default_account_id: settings.account_id, token_ttl: settings.token_ttl, book: Mutex::new(book) }
    }

    /// The memory; a panic elsewhere never makes it unusable for the other tests.
    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The extension a call was routed to by a caller-id answer, if it was.
    pub(crate) fn route_of(&self, call_id: &str) -> Option<String> {
        let book = self.book();
        book.routed.iter().rev().find(|(id, _)| id == call_id).map(|(_, extension)| extension.clone())
    }

    /// Records a caller-id question; a routed call keeps its extension for its later events.
    pub(crate) fn record_route(&self, route: RoutedCall) {
        let mut book = self.book();
        if route.outcome == "routed"
            && let Some(extension) = &route.extension
        {
            if book.routed.len() >= MAX_ROUTES {
                book.routed.pop_front();
            }
            book.routed.push_back((route.call_id.clone(), extension.clone()));
        }
        book.stats.routes.push(route);
    }

    /// The extensions of the configured account (the one the host page's calls come from).
    pub(crate) fn extensions(&self) -> Vec<String> {
        self.default_account().map(|account| account.extensions).unwrap_or_default()
    }

    /// The configured account (the one the host page's calls come from and that the page wires to the
    /// server's webhook).
    pub(crate) fn default_account(&self) -> Option<Account> {
        let book = self.book();
        book.accounts.iter().find(|account| account.account_id == self.default_account_id).cloned()
    }

    /// The configured account's id.
    pub fn default_account_id(&self) -> &str {
        &self.default_account_id
    }

    /// Replaces how the account plays its originated calls; `None` for an unknown account.
    pub fn set_playback(&self, account_id: &str, playback: Playback) -> Option<()> {
        let mut book = self.book();
        let account = book.accounts.iter_mut().find(|account| account.account_id == account_id)?;
        account.playback = playback;
        Some(())
    }
}

/// A provider event on the wire: `FromWebhook` with the contract's optional fields.
pub type ProviderEvent = FromWebhook;

/// The `event` of `POST /sandbox/voip/send`, in the wire's camelCase; left-out ids and times are filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventInput {
    /// Reuse an id to send a later event of the same call; a fresh one by default.
    pub call_id: Option<String>,
    /// The configured account's id by default.
    pub voip_account_id: Option<String>,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    /// Now by default.
    pub start_time: Option<i64>,
    pub extension: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<CallEventType>,
    pub direction: Option<CallDirection>,
    pub duration: Option<u64>,
    pub recording_url: Option<String>,
}

impl EventInput {
    pub fn event(self, default_account_id: &str, now: i64) -> ProviderEvent {
        FromWebhook {
            call_id: self.call_id.unwrap_or_else(|| format!("sandbox-{}", uuid::Uuid::new_v4())),
            voip_account_id: self.voip_account_id.unwrap_or_else(|| default_account_id.to_owned()),
            from: self.from,
            to: self.to,
            status: self.status,
            start_time: self.start_time.unwrap_or(now),
            extension: self.extension,
            event_type: self.kind,
            direction: self.direction,
            duration: self.duration.map(|seconds| u32::try_from(seconds).unwrap_or(u32::MAX)),
            recording_url: self.recording_url,
        }
    }
}

/// A provider error: `application/problem+json` `{title, type, status, detail}`.
fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "title": status.canonical_reason().unwrap_or("Error"),
        "type": format!("https://httpstatus.es/{}", status.as_u16()),
        "status": status.as_u16(),
        "detail": detail,
    });
    let content_type = HeaderValue::from_static("application/problem+json");
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// The routes of the stand-in, merged into the sandbox's router.
pub(crate) fn routes() -> Router<crate::State> {
    Router::new()
        .route("/voip/v1/account", get(api::account))
        .route("/voip/v1/calls", post(api::originate))
        .route("/voip/v1/oauth/token", post(api::token))
        .route("/voip/{*rest}", any(api::unknown))
        .route("/sandbox/voip/accounts", post(control::create_account).get(control::list_accounts))
        .route("/sandbox/voip/faults", post(control::add_fault).delete(control::clear_faults))
        .route("/sandbox/voip/stats", get(control::stats))
        .route("/sandbox/voip/reset-stats", post(control::reset_stats))
        .route("/sandbox/voip/expire-tokens", post(control::expire_tokens))
        .route("/sandbox/voip/send", post(control::send))
        .route(
            "/sandbox/voip/accounts/{id}/webhook",
            put(control::set_webhook).get(control::show_webhook).delete(control::clear_webhook),
        )
        .route("/sandbox/voip/accounts/{id}/playback", put(control::set_playback).get(control::show_playback))
        .route("/sandbox/voip/calls", get(control::played_calls))
        .route("/sandbox/voip/calls/{call_id}", get(control::played_call))
        .route("/sandbox/voip/calls/{call_id}/answer", post(control::answer_call))
        .route("/sandbox/voip/calls/{call_id}/end", post(control::end_call))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(login: &str, password: Option<&str>, api_key: Option<&str>) -> Account {
        Account {
            account_id: format!("voip-{login}"),
            name: login.to_owned(),
            login: login.to_owned(),
            password: password.map(str::to_owned),
            api_key: api_key.map(str::to_owned),
            client_id: None,
            client_secret: None,
            extensions: vec!["101".to_owned()],
            webhook: None,
            playback: Playback::default(),
        }
    }

    #[test]
    fn an_account_without_a_password_never_matches_basic() {
        let mut book = Book::default();
        book.add_account(account("keyonly", None, Some("k1"))).unwrap();
        assert!(book.by_basic("keyonly", "").is_none());
        assert_eq!(book.by_api_key("k1").unwrap().login, "keyonly");
        assert!(book.add_account(account("keyonly", Some("p"), None)).is_err());
        assert!(book.add_account(account("other", Some("p"), Some("k1"))).is_err());
    }

    #[test]
    fn an_issued_token_opens_its_account_until_it_expires() {
        let mut book = Book::default();
        let mut with_client = account("client", None, Some("k1"));
        with_client.client_id = Some("c1".to_owned());
        with_client.client_secret = Some("s1".to_owned());
        book.add_account(with_client).unwrap();
        book.add_account(account("plain", Some("p"), None)).unwrap();
        assert_eq!(book.by_client("c1", "s1").unwrap().login, "client");
        assert!(book.by_client("c1", "p").is_none() && book.by_client("", "").is_none());
        let mut taken = account("other", Some("p"), None);
        taken.client_id = Some("c1".to_owned());
        assert!(book.add_account(taken).is_err());

        let now = Instant::now();
        let token = book.issue_token("voip-client", Duration::from_secs(60), now);
        assert_ne!(token, book.issue_token("voip-client", Duration::from_secs(60), now));
        assert_eq!(book.by_bearer(&token, now + Duration::from_secs(59)).unwrap().login, "client");
        assert!(book.by_bearer(&token, now + Duration::from_secs(60)).is_none());
        assert_eq!(book.expire_tokens(now), 2);
        assert!(book.by_bearer(&token, now).is_none());
        assert_eq!(book.expire_tokens(now), 0);
        // Expired tokens are dropped when the next one is issued.
        book.issue_token("voip-client", Duration::from_secs(60), now);
        assert_eq!(book.tokens.len(), 1);
    }

    #[test]
    fn faults_are_used_in_order_each_for_its_count() {
        let mut book = Book::default();
        book.faults.push_back(Fault { status: Some(500), count: 2, delay_ms: None });
        book.faults.push_back(Fault { status: None, count: 1, delay_ms: Some(5) });
        assert_eq!(book.take_fault().unwrap().status, Some(500));
        assert_eq!(book.take_fault().unwrap().status, Some(500));
        assert_eq!(book.take_fault().unwrap().delay_ms, Some(5));
        assert!(book.take_fault().is_none());
    }

    #[test]
    fn the_event_serialises_the_contracts_optional_fields_only_when_given() {
        let input: EventInput = serde_json::from_value(serde_json::json!({
            "from": "+5511999990000", "to": "101", "status": "ended", "type": "call.ended",
            "direction": "inbound", "duration": 42, "recordingUrl": "http://127.0.0.1/r.mp3"
        }))
        .unwrap();
        let wire = serde_json::to_value(input.event("acct", 1_700_000_000)).unwrap();
        assert_eq!(wire["voipAccountId"], "acct");
        assert_eq!(wire["startTime"], 1_700_000_000);
        assert_eq!(wire["type"], "call.ended");
        assert_eq!(wire["direction"], "inbound");
        assert_eq!(wire["duration"], 42);
        assert_eq!(wire["recordingUrl"], "http://127.0.0.1/r.mp3");
        let bare: EventInput =
            serde_json::from_value(serde_json::json!({ "from": "1", "to": "2", "status": "ringing" })).unwrap();
        let wire = serde_json::to_value(bare.event("acct", 1)).unwrap();
        let mut keys: Vec<&str> = wire.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["callId", "extension", "from", "startTime", "status", "to", "voipAccountId"]);
    }
}
