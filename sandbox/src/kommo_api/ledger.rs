//! The Kommo stand-in's memory and rules: accounts and users, authorization codes, token grants with Kommo's
//! rotation, per-account request windows, injected faults, each account's CRM entities ([`crate::kommo_api::crm`]),
//! the log of API writes and the counters tests read. No HTTP here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::crm::{Crm, Ids};

/// Kommo's request limit: at most this many requests in any one-second window per account.
pub const REQUESTS_PER_SECOND: usize = 7;
/// Refresh tokens live three months when unused.
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
const WINDOW: Duration = Duration::from_secs(1);

/// A Kommo account as the stand-in keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: u64,
    pub subdomain: String,
    pub name: String,
    pub country: String,
    pub created_at: i64,
    pub users: Vec<User>,
}

impl Account {
    /// ISO 4217 code and symbol of the account's currency, from its country.
    pub fn currency(&self) -> (&'static str, &'static str) {
        match self.country.as_str() {
            "BR" => ("BRL", "R$"),
            "MX" => ("MXN", "$"),
            "ES" | "PT" | "DE" | "FR" | "IT" => ("EUR", "€"),
            "AR" => ("ARS", "$"),
            "CO" => ("COP", "$"),
            _ => ("USD", "$"),
        }
    }

    /// The first active administrator: who installs the widget and grants tokens.
    pub fn admin(&self) -> Option<&User> {
        self.users.iter().find(|user| user.is_admin && user.is_active).or_else(|| self.users.first())
    }
}

/// A user of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    #[serde(default = "default_lang")]
    pub lang: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub is_admin: bool,
    /// The user's group (`rights.group_id`): one of [`GROUPS`], or none.
    #[serde(default)]
    pub group_id: Option<u64>,
}

/// The user groups of every stand-in account (`with=users_groups`): Kommo's main group, id 0, and one more.
pub const GROUPS: [(u64, &str); 2] = [(0, "Sales"), (SUPPORT_GROUP, "Support")];
/// The second group of [`GROUPS`].
pub const SUPPORT_GROUP: u64 = 101;

/// The name of group `id`: from [`GROUPS`], else made up from its id.
pub fn group_name(id: u64) -> String {
    GROUPS.iter().find(|(group, _)| *group == id).map_or_else(|| format!("Group {id}"), |(_, name)| (*name).to_owned())
}

fn default_lang() -> String {
    "en".to_owned()
}

fn yes() -> bool {
    true
}

/// The users an account gets when none are given: the page's user as admin, two managers, one deactivated;
/// the admin and Maria in the main group (Sales), Juan and the former agent in Support.
pub fn default_users(account_id: u64, admin_id: u64) -> Vec<User> {
    let user = |id: u64, name: &str, email: String, lang: &str, is_active: bool, is_admin: bool, group: u64| User {
        id,
        name: name.to_owned(),
        email,
        lang: lang.to_owned(),
        is_active,
        is_admin,
        group_id: Some(group),
    };
    let base = account_id.saturating_mul(100);
    vec![
        user(admin_id, "Sandbox Admin", "admin@sandbox.test".to_owned(), "en", true, true, 0),
        user(base + 1, "Maria Silva", format!("maria.{account_id}@sandbox.test"), "pt", true, false, 0),
        user(base + 2, "Juan Pérez", format!("juan.{account_id}@sandbox.test"), "es", true, false, SUPPORT_GROUP),
        user(base + 3, "Former Agent", format!("former.{account_id}@sandbox.test"), "en", false, false, SUPPORT_GROUP),
    ]
}

/// Why the token endpoint refuses a grant: Kommo answers 400 with an OAuth hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantRefusal {
    UnknownCode,
    CodeExpired,
    /// The code was already exchanged: the tokens issued from it are revoked (RFC 9700 §4.5).
    CodeReused,
    UnknownRefreshToken,
    /// Rotated out: a newer refresh token of the same grant was used.
    RefreshTokenRotated,
    RefreshTokenExpired,
    /// The grant was revoked (disable, or its code was replayed).
    Revoked,
}

impl GrantRefusal {
    pub fn hint(self) -> &'static str {
        match self {
            GrantRefusal::UnknownCode => "Authorization code is invalid",
            GrantRefusal::CodeExpired => "Authorization code has expired",
            GrantRefusal::CodeReused => "Authorization code has been revoked",
            GrantRefusal::UnknownRefreshToken => "Refresh token is invalid",
            GrantRefusal::RefreshTokenRotated => "Refresh token has been revoked",
            GrantRefusal::RefreshTokenExpired => "Refresh token has expired",
            GrantRefusal::Revoked => "Token has been revoked",
        }
    }
}

/// Why a bearer token is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerRefusal {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

impl BearerRefusal {
    pub fn detail(self) -> &'static str {
        match self {
            BearerRefusal::Missing => "Authorization header is missing",
            BearerRefusal::Unknown => "Access token is invalid",
            BearerRefusal::Expired => "Access token has expired",
            BearerRefusal::Revoked => "Access token has been revoked",
        }
    }
}

/// A freshly issued token pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
}

/// Who a valid access token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bearer {
    pub account_id: u64,
    pub user_id: u64,
}

#[derive(Debug)]
struct Code {
    account_id: u64,
    user_id: u64,
    expires_at: Instant,
    /// The grant created when the code was exchanged; `None` while unused.
    grant: Option<u64>,
}

#[derive(Debug)]
struct Grant {
    account_id: u64,
    user_id: u64,
    revoked: bool,
}

#[derive(Debug)]
struct AccessToken {
    grant: u64,
    expires_at: Instant,
}

#[derive(Debug)]
struct RefreshToken {
    grant: u64,
    expires_at: Instant,
    /// The refresh token this one replaced: it dies when this one is first presented.
    parent: Option<String>,
    dead: bool,
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// `/api/v4/...` requests.
    #[default]
    Api,
    /// `POST /oauth2/access_token`.
    Oauth,
    Any,
}

/// `POST /sandbox/kommo/faults`: the next `count` matching requests answer `status`, wait `delay_ms`, or hang.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub account_id: Option<u64>,
    /// The status to answer; none means the request is only delayed and then served normally (or, with
    /// `timeout`, answered 504 after the hang).
    pub status: Option<u16>,
    #[serde(default = "one")]
    pub count: u32,
    /// Seconds for the `Retry-After` header.
    pub retry_after: Option<u64>,
    pub delay_ms: Option<u64>,
    /// Hang for [`HANG`] (longer than any client waits), then answer `status` or 504.
    #[serde(default)]
    pub timeout: bool,
    /// Carry the request out first (the write is committed and logged), then answer the fault or hang: the
    /// ambiguous failure a client cannot tell from one that wrote nothing.
    #[serde(default)]
    pub after_commit: bool,
    /// Only requests with this method (`POST`, any case).
    pub method: Option<String>,
    /// Only requests whose path starts with this (`/api/v4/calls`).
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub target: FaultTarget,
}

/// How long a `timeout` fault holds the request before answering.
pub const HANG: Duration = Duration::from_secs(60);

/// The request a fault is matched against.
#[derive(Debug, Clone, Copy)]
pub struct FaultScope<'a> {
    pub account_id: Option<u64>,
    pub target: FaultTarget,
    pub method: &'a str,
    pub path: &'a str,
}

impl Fault {
    fn applies(&self, scope: &FaultScope<'_>) -> bool {
        let account = self.account_id.is_none() || self.account_id == scope.account_id;
        let target = self.target == FaultTarget::Any || self.target == scope.target;
        let method = self.method.as_deref().is_none_or(|method| method.eq_ignore_ascii_case(scope.method));
        let path = self.path_prefix.as_deref().is_none_or(|prefix| scope.path.starts_with(prefix));
        account && target && method && path
    }
}

fn one() -> u32 {
    1
}

/// Request times of one account within the last second.
#[derive(Debug, Default)]
struct Window {
    /// Requests let through (the limit is decided on these).
    accepted: VecDeque<Instant>,
    /// Every request attributed to the account, refused ones included.
    seen: VecDeque<Instant>,
    max_seen: usize,
}

impl Window {
    fn admit(&mut self, now: Instant) -> bool {
        for times in [&mut self.accepted, &mut self.seen] {
            while times.front().is_some_and(|&at| now.duration_since(at) >= WINDOW) {
                times.pop_front();
            }
        }
        self.seen.push_back(now);
        self.max_seen = self.max_seen.max(self.seen.len());
        if self.accepted.len() >= REQUESTS_PER_SECOND {
            return false;
        }
        self.accepted.push_back(now);
        true
    }
}

/// Counters per account.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AccountStats {
    pub requests: u64,
    pub code_grants: u64,
    pub refresh_grants: u64,
    pub invalid_grant: u64,
    pub too_many_requests: u64,
    pub unauthorized: u64,
    /// The most requests seen in any one-second window (refused ones included).
    pub max_requests_per_second: usize,
    /// Requests of this account per `METHOD /path` (no query).
    pub by_path: BTreeMap<String, u64>,
    /// Uniqs of this account written as a call a second time (see [`Stats::duplicate_uniqs`]).
    pub duplicate_uniqs: Vec<String>,
}

/// A call written twice: a second `POST /api/v4/calls` item, unsorted sip item or `call_in`/`call_out` note
/// with a `uniq` the account already has a call for.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateUniq {
    pub account_id: u64,
    pub uniq: String,
    /// `METHOD /path` of the write that first carried the uniq.
    pub first: String,
    /// `METHOD /path` of the write that carried it again.
    pub again: String,
}

/// One API write (`POST`, `PATCH`, `PUT`, `DELETE` under `/api/v4/`, and `POST /api/v2/events`) of an account,
/// with the status it was answered. `committed` says whether it changed anything: true for a success, and for
/// an `after_commit` fault's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Write {
    pub account_id: u64,
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
    pub committed: bool,
}

/// What `GET /sandbox/kommo/stats` shows.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Requests per `METHOD /path` (no query) on the Kommo surface: `/oauth2/...` and `/api/v4/...`.
    pub requests: BTreeMap<String, u64>,
    pub accounts: BTreeMap<u64, AccountStats>,
    pub code_grants: u64,
    pub refresh_grants: u64,
    pub invalid_grant: u64,
    /// Codes presented a second time (their tokens were revoked).
    pub code_replays: u64,
    pub too_many_requests: u64,
    pub unauthorized: u64,
    pub faults_served: u64,
    /// Calls written twice for one uniq; tests of a correct client assert this stays empty.
    pub duplicate_uniqs: Vec<DuplicateUniq>,
}

/// Everything the stand-in remembers.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: BTreeMap<u64, Account>,
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    windows: HashMap<u64, Window>,
    faults: VecDeque<Fault>,
    stats: Stats,
    /// Each account's CRM; an account never sees another's.
    crm: BTreeMap<u64, Crm>,
    ids: Ids,
    writes: Vec<Write>,
}

/// What an API handler works on: the account of the request, its CRM, the id counters and the counters.
pub(crate) struct Desk<'a> {
    pub account: &'a Account,
    pub crm: &'a mut Crm,
    pub ids: &'a mut Ids,
    stats: &'a mut Stats,
}

impl Desk<'_> {
    /// Notes a call write carrying `uniq`; a uniq the account already has is recorded as a duplicate.
    pub fn call_uniq(&mut self, uniq: &str, write: &str) {
        match self.crm.uniqs.get(uniq) {
            Some(first) => {
                let account_id = self.account.id;
                let duplicate =
                    DuplicateUniq { account_id, uniq: uniq.to_owned(), first: first.clone(), again: write.to_owned() };
                self.stats.accounts.entry(account_id).or_default().duplicate_uniqs.push(uniq.to_owned());
                self.stats.duplicate_uniqs.push(duplicate);
            }
            None => {
                self.crm.uniqs.insert(uniq.to_owned(), write.to_owned());
            }
        }
    }
}

/// An opaque token: 244 random bits from two v4 UUIDs, with a readable prefix.
fn random_token(prefix: &str) -> String {
    format!("{prefix}{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Ledger {
    pub fn account(&self, id: u64) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// Adds an account unless one with this id exists; returns the stored one and whether it is new.
    pub fn add_account(&mut self, account: Account) -> (&Account, bool) {
        let created = !self.accounts.contains_key(&account.id);
        let stored = self.accounts.entry(account.id).or_insert(account);
        (stored, created)
    }

    /// Whether the account has a live grant: the widget is installed and its tokens were not revoked.
    pub fn installed(&self, account_id: u64) -> bool {
        self.grants.values().any(|grant| grant.account_id == account_id && !grant.revoked)
    }

    /// A new single-use authorization code for `user_id` of the account, valid for `lifetime`.
    pub fn issue_code(&mut self, account_id: u64, user_id: u64, lifetime: Duration, now: Instant) -> String {
        let code = random_token("def50200");
        self.codes.insert(code.clone(), Code { account_id, user_id, expires_at: now + lifetime, grant: None });
        code
    }

    /// The account a code or refresh token belongs to, to count the token request against it.
    pub fn account_of_code(&self, code: &str) -> Option<u64> {
        self.codes.get(code).map(|code| code.account_id)
    }

    pub fn account_of_refresh_token(&self, token: &str) -> Option<u64> {
        let grant = self.refresh.get(token)?.grant;
        self.grants.get(&grant).map(|grant| grant.account_id)
    }

    fn issue_pair(&mut self, grant: u64, parent: Option<String>, ttl: Duration, now: Instant) -> Issued {
        let access_token = random_token("kat_");
        let refresh_token = random_token("def50200kr");
        self.access.insert(access_token.clone(), AccessToken { grant, expires_at: now + ttl });
        self.refresh.insert(
            refresh_token.clone(),
            RefreshToken { grant, expires_at: now + REFRESH_TOKEN_LIFETIME, parent, dead: false },
        );
        Issued { access_token, refresh_token }
    }

    /// `grant_type=authorization_code`.
    pub fn exchange_code(&mut self, code: &str, ttl: Duration, now: Instant) -> Result<Issued, GrantRefusal> {
        let Some(found) = self.codes.get(code) else {
            return self.refuse(None, GrantRefusal::UnknownCode);
        };
        let account_id = found.account_id;
        if let Some(grant) = found.grant {
            // A replayed code is an attack signal: everything issued from it stops working.
            if let Some(grant) = self.grants.get_mut(&grant) {
                grant.revoked = true;
            }
            self.stats.code_replays += 1;
            return self.refuse(Some(account_id), GrantRefusal::CodeReused);
        }
        if now >= found.expires_at {
            return self.refuse(Some(account_id), GrantRefusal::CodeExpired);
        }
        let user_id = found.user_id;
        let grant = self.next_grant;
        self.next_grant += 1;
        self.grants.insert(grant, Grant { account_id, user_id, revoked: false });
        if let Some(found) = self.codes.get_mut(code) {
            found.grant = Some(grant);
        }
        self.stats.code_grants += 1;
        self.stats.accounts.entry(account_id).or_default().code_grants += 1;
        Ok(self.issue_pair(grant, None, ttl, now))
    }

    /// `grant_type=refresh_token`: rotates. The presented token stays usable until its successor is first
    /// presented; presenting a token kills its predecessor.
    pub fn refresh(&mut self, token: &str, ttl: Duration, now: Instant) -> Result<Issued, GrantRefusal> {
        let Some(found) = self.refresh.get(token) else {
            return self.refuse(None, GrantRefusal::UnknownRefreshToken);
        };
        let grant = found.grant;
        let account_id = self.grants.get(&grant).map(|grant| grant.account_id);
        if found.dead {
            return self.refuse(account_id, GrantRefusal::RefreshTokenRotated);
        }
        if now >= found.expires_at {
            return self.refuse(account_id, GrantRefusal::RefreshTokenExpired);
        }
        if self.grants.get(&grant).is_none_or(|grant| grant.revoked) {
            return self.refuse(account_id, GrantRefusal::Revoked);
        }
        if let Some(parent) = found.parent.clone()
            && let Some(parent) = self.refresh.get_mut(&parent)
        {
            parent.dead = true;
        }
        self.stats.refresh_grants += 1;
        if let Some(account_id) = account_id {
            self.stats.accounts.entry(account_id).or_default().refresh_grants += 1;
        }
        Ok(self.issue_pair(grant, Some(token.to_owned()), ttl, now))
    }

    fn refuse(&mut self, account_id: Option<u64>, refusal: GrantRefusal) -> Result<Issued, GrantRefusal> {
        self.stats.invalid_grant += 1;
        if let Some(account_id) = account_id {
            self.stats.accounts.entry(account_id).or_default().invalid_grant += 1;
        }
        Err(refusal)
    }

    /// Checks a bearer token; a refusal is counted as a 401 (on the account when the token is known).
    pub fn bearer(&mut self, token: Option<&str>, now: Instant) -> Result<Bearer, BearerRefusal> {
        let outcome = self.check_bearer(token, now);
        if outcome.is_err() {
            let grant = token.and_then(|token| self.access.get(token)).and_then(|t| self.grants.get(&t.grant));
            let account_id = grant.map(|grant| grant.account_id);
            self.count_unauthorized(account_id);
        }
        outcome
    }

    /// Counts a 401, on the account when it is known.
    pub fn count_unauthorized(&mut self, account_id: Option<u64>) {
        self.stats.unauthorized += 1;
        if let Some(account_id) = account_id {
            self.stats.accounts.entry(account_id).or_default().unauthorized += 1;
        }
    }

    fn check_bearer(&self, token: Option<&str>, now: Instant) -> Result<Bearer, BearerRefusal> {
        let token = token.ok_or(BearerRefusal::Missing)?;
        let found = self.access.get(token).ok_or(BearerRefusal::Unknown)?;
        let grant = self.grants.get(&found.grant).ok_or(BearerRefusal::Unknown)?;
        if grant.revoked {
            return Err(BearerRefusal::Revoked);
        }
        if now >= found.expires_at {
            return Err(BearerRefusal::Expired);
        }
        Ok(Bearer { account_id: grant.account_id, user_id: grant.user_id })
    }

    /// Revokes every grant of the account (Kommo's side of disabling the integration); returns how many.
    pub fn revoke_account(&mut self, account_id: u64) -> usize {
        let mut revoked = 0;
        for grant in self.grants.values_mut().filter(|grant| grant.account_id == account_id && !grant.revoked) {
            grant.revoked = true;
            revoked += 1;
        }
        revoked
    }

    /// Makes every access token of the account expire at `now`; returns how many were still valid.
    pub fn expire_account(&mut self, account_id: u64, now: Instant) -> usize {
        let grants: Vec<u64> =
            self.grants.iter().filter(|(_, grant)| grant.account_id == account_id).map(|(id, _)| *id).collect();
        let mut expired = 0;
        for token in self.access.values_mut().filter(|token| grants.contains(&token.grant)) {
            if token.expires_at > now {
                expired += 1;
            }
            token.expires_at = token.expires_at.min(now);
        }
        expired
    }

    /// Counts a request on the Kommo surface by `METHOD /path`.
    pub fn count_request(&mut self, method: &str, path: &str) {
        *self.stats.requests.entry(format!("{method} {path}")).or_default() += 1;
    }

    /// Records a request of the account (`METHOD /path`) in its window; `false` means it is over the limit
    /// (answer 429).
    pub fn admit(&mut self, account_id: u64, request: &str, now: Instant) -> bool {
        let window = self.windows.entry(account_id).or_default();
        let admitted = window.admit(now);
        let max_seen = window.max_seen;
        let stats = self.stats.accounts.entry(account_id).or_default();
        stats.requests += 1;
        *stats.by_path.entry(request.to_owned()).or_default() += 1;
        stats.max_requests_per_second = max_seen;
        if !admitted {
            stats.too_many_requests += 1;
            self.stats.too_many_requests += 1;
        }
        admitted
    }

    /// Counts a 429 that an injected fault produced.
    pub fn count_injected_429(&mut self, account_id: Option<u64>) {
        self.stats.too_many_requests += 1;
        if let Some(account_id) = account_id {
            self.stats.accounts.entry(account_id).or_default().too_many_requests += 1;
        }
    }

    pub fn add_fault(&mut self, fault: Fault) -> usize {
        if fault.count > 0 {
            self.faults.push_back(fault);
        }
        self.faults.len()
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Takes one use of the first queued fault that applies to the request.
    pub fn take_fault(&mut self, scope: &FaultScope<'_>) -> Option<Fault> {
        let index = self.faults.iter().position(|fault| fault.applies(scope))?;
        let fault = &mut self.faults[index];
        fault.count -= 1;
        let taken = fault.clone();
        if fault.count == 0 {
            self.faults.remove(index);
        }
        self.stats.faults_served += 1;
        Some(taken)
    }

    /// The account's CRM and what handlers need beside it; `None` for an unknown account.
    pub(crate) fn desk(&mut self, account_id: u64) -> Option<Desk<'_>> {
        let account = self.accounts.get(&account_id)?;
        let crm = self.crm.entry(account_id).or_default();
        Some(Desk { account, crm, ids: &mut self.ids, stats: &mut self.stats })
    }

    /// The account whose CRM holds the contact, company or lead `id` (ids are unique across accounts).
    pub fn holder(&self, entity_type: super::crm::EntityType, id: u64) -> Option<u64> {
        self.crm.iter().find(|(_, crm)| crm.has(entity_type, id)).map(|(account_id, _)| *account_id)
    }

    /// The account's CRM, to read (empty for an account that has none yet).
    pub fn crm(&self, account_id: u64) -> Option<&Crm> {
        self.crm.get(&account_id)
    }

    pub fn record_write(&mut self, write: Write) {
        self.writes.push(write);
    }

    /// The writes of one account, or of all, in the order they were answered.
    pub fn writes(&self, account_id: Option<u64>) -> Vec<Write> {
        self.writes.iter().filter(|write| account_id.is_none_or(|id| write.account_id == id)).cloned().collect()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Zeroes every counter, the per-second maxima and the duplicate uniqs included; tokens, accounts, faults,
    /// entities and the write log stay.
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
        for window in self.windows.values_mut() {
            window.max_seen = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn ledger_with_account() -> Ledger {
        let mut ledger = Ledger::default();
        ledger.add_account(Account {
            id: 7,
            subdomain: "acme".into(),
            name: "Acme".into(),
            country: "BR".into(),
            created_at: 0,
            users: default_users(7, 1),
        });
        ledger
    }

    #[test]
    fn a_code_works_once_and_its_replay_revokes_what_it_gave() {
        let mut ledger = ledger_with_account();
        let now = Instant::now();
        let code = ledger.issue_code(7, 1, Duration::from_secs(1200), now);
        let issued = ledger.exchange_code(&code, TTL, now).unwrap();
        assert_eq!(ledger.bearer(Some(&issued.access_token), now), Ok(Bearer { account_id: 7, user_id: 1 }));
        assert_eq!(ledger.exchange_code(&code, TTL, now), Err(GrantRefusal::CodeReused));
        assert_eq!(ledger.bearer(Some(&issued.access_token), now), Err(BearerRefusal::Revoked));
        assert_eq!(ledger.refresh(&issued.refresh_token, TTL, now), Err(GrantRefusal::Revoked));
        assert!(!ledger.installed(7));
    }

    #[test]
    fn an_old_code_is_refused() {
        let mut ledger = ledger_with_account();
        let now = Instant::now();
        let code = ledger.issue_code(7, 1, Duration::from_secs(1200), now);
        let later = now + Duration::from_secs(1201);
        assert_eq!(ledger.exchange_code(&code, TTL, later), Err(GrantRefusal::CodeExpired));
    }

    #[test]
    fn the_old_refresh_token_works_until_the_new_one_is_used() {
        let mut ledger = ledger_with_account();
        let now = Instant::now();
        let code = ledger.issue_code(7, 1, Duration::from_secs(1200), now);
        let first = ledger.exchange_code(&code, TTL, now).unwrap();
        let second = ledger.refresh(&first.refresh_token, TTL, now).unwrap();
        // The response was lost: the old token still works, and yields yet another pair.
        let retry = ledger.refresh(&first.refresh_token, TTL, now).unwrap();
        assert_ne!(retry.refresh_token, second.refresh_token);
        let third = ledger.refresh(&retry.refresh_token, TTL, now).unwrap();
        assert_eq!(ledger.refresh(&first.refresh_token, TTL, now), Err(GrantRefusal::RefreshTokenRotated));
        assert!(ledger.refresh(&third.refresh_token, TTL, now).is_ok());
        assert_eq!(ledger.stats().refresh_grants, 4);
        assert_eq!(ledger.stats().invalid_grant, 1);
    }

    #[test]
    fn eight_requests_in_one_second_are_one_too_many() {
        let mut ledger = ledger_with_account();
        let start = Instant::now();
        for i in 0..7 {
            assert!(ledger.admit(7, "GET /api/v4/account", start + Duration::from_millis(i * 10)), "request {i}");
        }
        assert!(!ledger.admit(7, "GET /api/v4/account", start + Duration::from_millis(500)));
        assert!(ledger.admit(7, "GET /api/v4/users", start + Duration::from_millis(1000)));
        assert_eq!(ledger.stats().accounts[&7].max_requests_per_second, 8);
        assert_eq!(ledger.stats().too_many_requests, 1);
        assert_eq!(ledger.stats().accounts[&7].by_path["GET /api/v4/account"], 8);
    }

    fn fault(account_id: Option<u64>, status: u16, count: u32) -> Fault {
        Fault {
            account_id,
            status: Some(status),
            count,
            retry_after: None,
            delay_ms: None,
            timeout: false,
            after_commit: false,
            method: None,
            path_prefix: None,
            target: FaultTarget::Api,
        }
    }

    fn api(account_id: u64, method: &'static str, path: &'static str) -> FaultScope<'static> {
        FaultScope { account_id: Some(account_id), target: FaultTarget::Api, method, path }
    }

    #[test]
    fn faults_are_used_up_in_order_and_by_account() {
        let mut ledger = Ledger::default();
        ledger.add_fault(fault(Some(1), 500, 1));
        ledger.add_fault(fault(None, 402, 2));
        let oauth = FaultScope { account_id: Some(1), target: FaultTarget::Oauth, method: "POST", path: "/oauth2" };
        assert_eq!(ledger.take_fault(&api(2, "GET", "/api/v4/account")).unwrap().status, Some(402));
        assert_eq!(ledger.take_fault(&api(1, "GET", "/api/v4/account")).unwrap().status, Some(500));
        assert!(ledger.take_fault(&oauth).is_none());
        assert_eq!(ledger.take_fault(&api(1, "GET", "/api/v4/account")).unwrap().status, Some(402));
        assert!(ledger.take_fault(&api(1, "GET", "/api/v4/account")).is_none());
    }

    #[test]
    fn faults_match_their_method_and_path_prefix() {
        let mut ledger = Ledger::default();
        ledger.add_fault(Fault {
            method: Some("post".into()),
            path_prefix: Some("/api/v4/calls".into()),
            ..fault(None, 500, 1)
        });
        assert!(ledger.take_fault(&api(1, "GET", "/api/v4/calls")).is_none());
        assert!(ledger.take_fault(&api(1, "POST", "/api/v4/contacts")).is_none());
        assert_eq!(ledger.take_fault(&api(1, "POST", "/api/v4/calls")).unwrap().status, Some(500));
        assert_eq!(ledger.stats().faults_served, 1);
    }
}
