//! The Kommo stand-in: Kommo's OAuth (token endpoint, consent page, install and disable requests) and the
//! slice of REST API v4 the server uses (account and users; contacts, companies, leads and the pipeline, calls,
//! notes, tasks, unsorted sip items) and the legacy call notification `POST /api/v2/events`, in Kommo's wire
//! format and with its limits, plus control endpoints under `/sandbox/kommo/` for tests.
//!
//! Every account shares this listener as its API host (Kommo would use `{subdomain}.kommo.com`); the account
//! of an API request is the one its access token was issued for, as on Kommo, and an account never sees
//! another's entities (their ids are 404 or simply not found).
//!
//! | Endpoint | What it does |
//! |---|---|
//! | `POST /oauth2/access_token` | JSON `{client_id, client_secret, grant_type, code\|refresh_token, redirect_uri}` → `{token_type, expires_in, server_time, access_token, refresh_token}`. Wrong client → 401; redirect_uri ≠ `PUBLIC_BASE_URL/oauth/kommo/callback` → 400; codes single-use (a replay → 400 and the tokens from that code are revoked) and short-lived; refresh rotates, the old refresh token works until the new one is first presented |
//! | `GET /oauth?client_id&state&mode&account` | Consent page; Allow / Decline redirect to the Redirect URI with `code&state&referer&client_id` or `error=access_denied&state&client_id` |
//! | `GET /api/v4/account`, `GET /api/v4/users?page&limit&with=group`, `GET /api/v4/users/{id}` | HAL JSON; users 1-based pages, `limit` ≤ 250 (else 422), an empty page is 204; each user's `rights.group_id`, and with `with=group` its `_embedded.groups` (`[{id, name}]`; the account's groups are `with=users_groups` of the account: Sales, id 0, and Support) |
//! | `GET /api/v4/contacts?query&with=leads&filter[id][]`, `GET /api/v4/contacts/{id}`, `POST /api/v4/contacts` | `query` matches phone digits in part (or names); 204 when nothing matches; `PHONE`/`EMAIL` in `custom_fields_values`, `_embedded.companies` `[{id, _links}]` |
//! | `GET /api/v4/companies?query&with=leads,contacts&filter[id][]`, `GET /api/v4/companies/{id}` | The same search over companies; `with=leads` embeds the leads that name the company |
//! | `GET /api/v4/leads?filter[id][]&with=contacts`, `GET /api/v4/leads/{id}`, `POST /api/v4/leads`, `POST /api/v4/leads/complex` | Status 142 won, 143 lost (with `closed_at`), others active; complex ≤ 50, answers a bare array |
//! | `…&filter[updated_at][from]=&filter[updated_at][to]=` (or `filter[updated_at]=`), `…&order[updated_at\|id]=asc\|desc` on the three listings | Unix seconds, both bounds inclusive; order by id ascending unless told (ties by id ascending); another order field or value, or a bound that is not an integer, is 400 `validation-errors` (`request_id` "0", path `order.{field}` / `filter.updated_at.from`); each page is cut before its entities are rendered |
//! | `GET /api/v4/leads/pipelines`, `GET /api/v4/leads/pipelines/{id}` | The one pipeline ("Sales pipeline", [`crm::PIPELINE_ID`]) with `_embedded.statuses` ([`crm::STAGES`]: incoming leads, three open stages, won 142, lost 143) |
//! | `POST /api/v4/calls` | Required `direction`, `duration`, `source`, `phone`; stored as a `call_in`/`call_out` note on the one active lead of the contacts and companies with the number (last 10 digits), else on the first contact, else the first company; no entity → per [`crm::CallsMode`] |
//! | `GET`/`POST /api/v4/{leads\|contacts\|companies}/notes`, `.../{id}/notes` | `filter[note_type][]`, `filter[entity_id][]`; `common` needs `params.text`, call notes `params.uniq/duration/source/phone` |
//! | `GET`/`POST /api/v4/tasks` | Required `text`, `complete_till`; `filter[entity_type]`, `filter[entity_id][]`, `filter[is_completed]` |
//! | `POST /api/v4/leads/unsorted/sip`, `GET /api/v4/leads/unsorted[/{uid}]`, `POST /api/v4/leads/unsorted/{uid}/accept` | A sip item makes a lead in "incoming leads" (status 8100001) and a contact with the caller's number, with the call on the lead; accepting twice → 400 |
//! | `POST /api/v2/events` `{"add": [{"type": "phone_call", "phone_number", "users"?}]}` | Kommo's call notification (KOMMO.md §2.3): `type` must be `phone_call`, `phone_number` is required, `users` must be users of the account → 202 with no body; refusals 400 `validation-errors` per `add` item. Kept for `GET /sandbox/kommo/notifications` |
//! | `POST /api/v4/webhooks` `{destination, settings: [..], sort?}`, `GET /api/v4/webhooks?filter[destination]=`, `DELETE /api/v4/webhooks` `{destination}` | Kommo's webhooks ([`webhooks`]): admin tokens only (else 403); subscribing answers the webhook `{id, destination, created_at, updated_at, account_id, created_by, sort, disabled, settings}` (the same destination again replaces its settings), the list `{_total_items, _links, _embedded: {webhooks}}` (none: 204), `DELETE` 204 (nothing there: 404); an account whose plan lacks webhooks answers 402. Changes to contacts, companies and leads (API writes, seeds, hand edits) are posted to each destination whose `settings` name the event, as classic amoCRM form bodies (`account[id]`, `contacts[update][0][id]`, ...; companies under `contacts[...]` with `[type]=company`), in the background |
//! | any other `/api/v4/...` | Authenticated and counted, then 404 |
//! | `POST /sandbox/kommo/accounts` `{id, subdomain, name?, country?, users?}` | Creates an account (201; 200 with the existing one) |
//! | `GET /sandbox/kommo/accounts[/{id}]` | Accounts with `installed` (holds a live grant) |
//! | `POST /sandbox/kommo/accounts/{id}/plan` `{webhooks: bool}` | `false`: the account's plan lacks webhooks (`/api/v4/webhooks` answers 402, nothing is delivered) → `{account_id, webhooks}`; unknown account 404 |
//! | `GET /sandbox/kommo/webhook-deliveries?account_id=&destination=` | Kommo's webhook deliveries, oldest first: `[{id, account_id, destination, events, body, form: {key: value}, state: queued\|answered\|failed\|dropped\|refused, status, error, elapsed_ms, queued_at}]` |
//! | `POST /sandbox/kommo/install` `{account_id, referer?, user_id?}` | Kommo's install request to the server → `{status, elapsed_ms, code}` |
//! | `POST /sandbox/kommo/disable` `{account_id, forge?}` | Revokes the account's grants, calls the signed disable hook → `{status, elapsed_ms, revoked_grants}` |
//! | `POST /sandbox/kommo/expire` `{account_id}` | Every access token of the account expires now |
//! | `POST /sandbox/kommo/faults` `{account_id?, status?, count?, retry_after?, delay_ms?, timeout?, after_commit?, method?, path_prefix?, target?}`, `DELETE` | Queues (clears) faults (see [`ledger::Fault`]); `target` is `api` (default), `oauth` or `any` |
//! | `POST /sandbox/kommo/contacts` `{account_id, name, phones?, emails?, responsible_user_id?, company_id?, leads?: [{name?, status_id?, responsible_user_id?, price?}]}` | Seeds a contact (of a company) and its leads → `{contact_id, lead_ids}`; a phone is `"+55…"` or `{value, enum_code}` (see [`seed`]) |
//! | `POST /sandbox/kommo/contacts/batch` `{account_id, contacts: [{name, phones?, emails?, responsible_user_id?, company_id?, leads?}]}` | Seeds up to 20 000 contacts like the above, all or none (a refusal is 400 naming `contacts[i]`) → `{contact_ids: [..], lead_ids: [[..], ..]}` in order ([`StandIn::seed_contacts`]) |
//! | `POST /sandbox/kommo/companies` `{account_id, name, phones?, responsible_user_id?, leads?}` | Seeds a company and its leads → `{company_id, lead_ids}` |
//! | `PATCH /sandbox/kommo/{contacts\|companies}/{id}` `{name?, phones?, responsible_user_id?}`, `DELETE` the same | An edit (delete) made in Kommo by hand: `phones` replaces the list; `updated_at` becomes now and at least its previous value + 1 → the entity as the API shows it (`with=leads`; companies also `contacts`), `DELETE` → 204; unknown id 404, unknown user or phone type 400 ([`StandIn::edit_contact`], [`StandIn::delete_contact`], `edit_company`, `delete_company`) |
//! | `PATCH /sandbox/kommo/leads/{id}` `{name?, status_id?, responsible_user_id?, price?}` | A lead moved to a stage (won 142 / lost 143 close it) or handed over by hand, `updated_at` as above → the lead as the API shows it (`with=contacts`); unknown id 404, unknown stage or user 400 ([`StandIn::edit_lead`]) |
//! | `POST /sandbox/kommo/calls-mode` `{account_id, mode: "errors_200"\|"problem_400"}` | How a call with no entity is answered (default `errors_200`) |
//! | `GET /sandbox/kommo/writes?account_id=` | The API writes `[{account_id, method, path, body, status, committed}]` |
//! | `GET /sandbox/kommo/notifications?account_id=` | The accepted call notifications `[{type, phone_number, users, notified, entity, created_by, created_at}]` |
//! | `GET /sandbox/kommo/entities?account_id=` | The account's entities as stored |
//! | `GET /sandbox/kommo/stats`, `POST /sandbox/kommo/reset-stats` | Counters and duplicate uniqs (see [`ledger::Stats`]) |
//!
//! Bearer failures are 401 (`/api/v2/events` included), more than 7 requests of one account in any one-second
//! window (`/api/v2/events` counted like any API request) are 429 with
//! `Retry-After: 1`; errors are `application/problem+json` `{title, type, status, detail}`, a refused batch
//! adds `validation-errors: [{request_id, errors: [{code, path, detail}]}]`. A token request counts against
//! the account of its code or refresh token, in the same window as that account's API calls.

mod api;
mod check;
mod control;
pub mod crm;
mod faults;
mod handlers;
pub mod ledger;
mod oauth;
mod problem;
mod rest;
pub mod seed;
pub mod webhooks;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, patch, post};

pub use control::disable_signature;

use crate::token::Kommo;
use ledger::{Account, Ledger, default_users};

/// `User-Agent` of Kommo's server-to-server requests (install code, disable hook).
pub const KOMMO_USER_AGENT: &str = "amoService-oAuth-Code-Sender/1.0";
/// Where the server receives codes, relative to its public base URL.
pub const CALLBACK_PATH: &str = "/oauth/kommo/callback";
/// The server's disable hook, relative to its public base URL.
pub const DISABLE_PATH: &str = "/oauth/kommo/disable";

/// The largest bulk seed body: 20 000 contacts with a few phones and leads each.
const SEED_BODY_LIMIT: usize = 64 << 20;

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` the server reaches this stand-in at: sent as `referer`, used in `_links`.
    pub api_host: String,
    /// Lifetime of access tokens (`expires_in`); Kommo's is 24 h.
    pub access_token_ttl: Duration,
    /// Lifetime of authorization codes; Kommo's is 20 minutes.
    pub code_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            api_host: "127.0.0.1:8090".to_owned(),
            access_token_ttl: Duration::from_secs(86_400),
            code_ttl: Duration::from_secs(20 * 60),
        }
    }
}

/// The stand-in's settings and memory.
pub struct StandIn {
    pub settings: Settings,
    ledger: Mutex<Ledger>,
    /// Kommo's webhook deliveries, sent in the background.
    outbox: webhooks::Outbox,
    /// The page's user: an admin in every account created without a user list.
    admin_id: u64,
    default_subdomain: String,
}

impl StandIn {
    /// A stand-in holding the configured default account.
    pub fn new(settings: Settings, kommo: &Kommo) -> StandIn {
        let stand_in = StandIn {
            settings,
            ledger: Mutex::default(),
            outbox: webhooks::Outbox::new(kommo.audience.clone()),
            admin_id: kommo.user_id,
            default_subdomain: kommo.subdomain.clone(),
        };
        stand_in.ensure_account(kommo.account_id, None);
        stand_in
    }

    /// The ledger; a panic elsewhere never makes it unusable for the other tests.
    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the webhooks of the account's pending changes (in the background) once the ledger is let go.
    pub(crate) fn notify(&self, mut ledger: MutexGuard<'_, Ledger>, account_id: u64) {
        let deliveries = webhooks::take(&mut ledger, account_id);
        drop(ledger);
        self.outbox.send(deliveries);
    }

    /// The webhook deliveries, oldest first, of one account and/or destination.
    pub fn webhook_deliveries(
        &self,
        account_id: Option<u64>,
        destination: Option<&str>,
    ) -> Vec<webhooks::DeliveryRecord> {
        self.outbox.records(account_id, destination)
    }

    /// Whether the account's plan has webhooks through the API (`false`: `/api/v4/webhooks` answers 402 and
    /// nothing is delivered). `None` for an unknown account.
    pub fn set_webhooks_plan(&self, account_id: u64, webhooks: bool) -> Option<()> {
        let mut ledger = self.ledger();
        let desk = ledger.desk(account_id)?;
        desk.crm.webhooks_off = !webhooks;
        Some(())
    }

    /// Creates the account with default users unless it exists (the host page acts as any account id).
    pub fn ensure_account(&self, id: u64, subdomain: Option<&str>) {
        let account = self.new_account(id, subdomain.unwrap_or(&self.default_subdomain), None, None, None);
        self.ledger().add_account(account);
    }

    fn new_account(
        &self,
        id: u64,
        subdomain: &str,
        name: Option<String>,
        country: Option<String>,
        users: Option<Vec<ledger::User>>,
    ) -> Account {
        Account {
            id,
            subdomain: subdomain.to_owned(),
            name: name.unwrap_or_else(|| format!("Sandbox account {id}")),
            country: country.unwrap_or_else(|| "BR".to_owned()),
            created_at: unix_now(),
            users: users.unwrap_or_else(|| default_users(id, self.admin_id)),
        }
    }

    /// `http://{api_host}`: the base of `_links`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.settings.api_host)
    }

    /// The account as stored, if it exists.
    pub fn account(&self, id: u64) -> Option<Account> {
        self.ledger().account(id).cloned()
    }

    pub fn installed(&self, account_id: u64) -> bool {
        self.ledger().installed(account_id)
    }
}

/// The routes of the stand-in, merged into the sandbox's router.
pub(crate) fn routes() -> Router<crate::State> {
    Router::new()
        .route("/oauth2/access_token", post(oauth::access_token))
        .route("/oauth", get(oauth::consent_page).post(oauth::consent_decision))
        .route("/api/v4/{*rest}", any(api::dispatch))
        .route("/api/v2/events", any(api::dispatch))
        .route("/sandbox/kommo/accounts", post(control::create_account).get(control::list_accounts))
        .route("/sandbox/kommo/accounts/{id}", get(control::show_account))
        .route("/sandbox/kommo/accounts/{id}/plan", post(control::plan))
        .route("/sandbox/kommo/webhook-deliveries", get(control::webhook_deliveries))
        .route("/sandbox/kommo/install", post(control::install))
        .route("/sandbox/kommo/disable", post(control::disable))
        .route("/sandbox/kommo/expire", post(control::expire))
        .route("/sandbox/kommo/faults", post(control::add_fault))
        .route("/sandbox/kommo/faults", delete(control::clear_faults))
        .route("/sandbox/kommo/stats", get(control::stats))
        .route("/sandbox/kommo/reset-stats", post(control::reset_stats))
        .route("/sandbox/kommo/writes", get(control::writes))
        .route("/sandbox/kommo/contacts", post(control::seed_contact))
        .route(
            "/sandbox/kommo/contacts/batch",
            post(control::seed_contacts).layer(DefaultBodyLimit::max(SEED_BODY_LIMIT)),
        )
        .route("/sandbox/kommo/contacts/{id}", patch(control::edit_contact).delete(control::delete_contact))
        .route("/sandbox/kommo/companies", post(control::seed_company))
        .route("/sandbox/kommo/companies/{id}", patch(control::edit_company).delete(control::delete_company))
        .route("/sandbox/kommo/leads/{id}", patch(control::edit_lead))
        .route("/sandbox/kommo/notifications", get(control::notifications))
        .route("/sandbox/kommo/calls-mode", post(control::calls_mode))
        .route("/sandbox/kommo/entities", get(control::entities))
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or_default()
}
