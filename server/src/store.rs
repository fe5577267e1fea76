//! Storage: the SQLite pool, migrations, and every query on tenant data. Each query that reads or
//! writes tenant data takes an [`AccountId`], which only authenticated contexts produce.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

use crate::config::Retention;

/// Our own id of an account (not Kommo's). Obtained only from a verified token or a webhook path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountId(pub i64);

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// Where an account's connection to Kommo stands (`accounts.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Installed,
    NeedsReauth,
    Suspended,
    Disabled,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Installed => "installed",
            AccountState::NeedsReauth => "needs_reauth",
            AccountState::Suspended => "suspended",
            AccountState::Disabled => "disabled",
        }
    }

    fn parse(value: &str) -> AccountState {
        match value {
            "installed" => AccountState::Installed,
            "needs_reauth" => AccountState::NeedsReauth,
            "suspended" => AccountState::Suspended,
            // The CHECK constraint allows nothing else.
            _ => AccountState::Disabled,
        }
    }
}

/// An account's connection details.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub kommo_account_id: i64,
    pub subdomain: String,
    pub api_domain: String,
    pub state: AccountState,
    pub state_reason: Option<String>,
}

/// An account's sealed Kommo tokens.
#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

/// A received authorization code awaiting exchange.
#[derive(Debug, Clone, FromRow)]
pub struct PendingCode {
    pub id: i64,
    pub api_domain: String,
    /// Sealed with [`PENDING_CODE_ACCOUNT`] as the account.
    pub code: String,
    pub received_at: i64,
}

/// How many authorization codes may wait for their exchange, in total and per Kommo host.
#[derive(Debug, Clone, Copy)]
pub struct PendingCodeLimits {
    pub total: u32,
    pub per_host: u32,
}

/// Who a call concerns, as far as the server knows it yet: its client's number (as the provider sent
/// it), its extension, the user it was assigned to, and the entity it landed on in Kommo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallParties {
    pub client_number: String,
    pub extension: Option<String>,
    pub responsible_user_id: Option<i64>,
    pub entity: Option<(String, i64)>,
}

/// Codes are sealed before an account exists; this stands in for the account id in their binding.
pub const PENDING_CODE_ACCOUNT: i64 = 0;

/// The stored settings of one account.
#[derive(Debug, Clone, FromRow)]
pub struct SettingsRow {
    pub active: bool,
    pub credential_method: String,
    pub provider_url: String,
    pub voip_login: String,
    /// The sealed VoIP password or API key (see `crypto`), if one was saved.
    pub voip_token: Option<String>,
    pub hook_id: String,
    pub webhook_secret_hint: String,
    /// `shared::CallHandling` as JSON.
    pub config: String,
    pub fallback_user_id: Option<i64>,
}

/// What a settings save writes (with `active` on).
pub struct SettingsWrite<'a> {
    pub credential_method: &'a str,
    pub provider_url: &'a str,
    pub voip_login: &'a str,
    /// A newly sealed password or key, or `None` to keep the stored one.
    pub sealed_secret: Option<String>,
    pub voip_account_id: &'a str,
    pub config: String,
    pub fallback_user_id: Option<i64>,
    pub extensions: Vec<(String, i64)>,
    pub user_id: i64,
    /// Used only when the account has no webhook endpoint yet.
    pub new_endpoint: NewEndpoint,
}

/// A webhook endpoint to create: its id and its sealed signing secret.
pub struct NewEndpoint {
    pub hook_id: String,
    pub sealed_secret: String,
    pub hint: String,
}

/// What a webhook path resolves to.
#[derive(Debug, Clone)]
pub struct Hook {
    pub account: AccountId,
    /// Kommo's `active` flag: call processing is on.
    pub active: bool,
    /// The signing secret, sealed.
    pub secret: String,
    /// The secret before the last rotation, sealed, while it still verifies, and until when (unix s).
    pub previous_secret: Option<(String, i64)>,
}

pub fn unix_now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    ///
    /// SQLite runs in WAL mode with `synchronous = FULL`: a commit that returned is on disk even
    /// across power loss, which is what "a 200 means stored" needs. (NORMAL would survive a process
    /// crash but may lose the last commits on an OS crash.)
    pub async fn connect(database_url: &str) -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::from_str(database_url)
            .with_context(|| format!("DATABASE_URL {database_url:?} is not a sqlite:// URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Batched inserts (group commit) have one statement text per batch size: keep them all prepared.
            .statement_cache_capacity(1024);
        if let Some(parent) = options.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the database directory {}", parent.display()))?;
        }
        // One connection per process. SQLite takes one writer at a time anyway; with several connections
        // the others wait for the write lock in SQLite's busy handler, which sleeps in growing steps (up to
        // 100 ms each), and under load (webhook group commits beside the worker's claims and ledger
        // writes) those sleeps added up to seconds. With one connection, statements queue in the pool in
        // arrival order and each runs as soon as the previous one is done; transactions are short and
        // never span an HTTP call. Other processes on the same file still meet the busy handler.
        let pool =
            SqlitePoolOptions::new().max_connections(1).connect_with(options).await.context("opening the database")?;
        sqlx::migrate!("./migrations").run(&pool).await.context("applying migrations")?;
        Ok(Store { pool })
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Keeps an account's subdomain current (Kommo lets accounts rename; the id is stable).
    pub async fn rename_account(&self, account: AccountId, subdomain: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE accounts SET subdomain = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(account.0)
            .bind(subdomain)
            .bind(unix_now())
            .execute(&self.pool)
            .await
            .map(drop)
    }

    pub async fn settings(&self, account: AccountId) -> sqlx::Result<Option<SettingsRow>> {
        sqlx::query_as(
            "SELECT active, credential_method, provider_url, voip_login, voip_token, hook_id, webhook_secret_hint,
                    config, fallback_user_id
             FROM widget_settings WHERE account_id = ?1",
        )
        .bind(account.0)
        .fetch_optional(&self.pool)
        .await
    }

    /// The account's extension map, in the order it was entered.
    pub async fn extensions(&self, account: AccountId) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT extension_id, kommo_user_id FROM voip_users WHERE account_id = ?1 ORDER BY id")
            .bind(account.0)
            .fetch_all(&self.pool)
            .await
    }

    /// Writes the account's settings and extension map in one transaction, so two concurrent saves
    /// leave one of them whole (never a mix). The stored secret is kept unless replaced, and the
    /// webhook endpoint is created once. Returns whether the endpoint was created by this save.
    pub async fn save_settings(&self, account: AccountId, write: SettingsWrite<'_>) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let created: bool = sqlx::query_scalar(
            "INSERT INTO widget_settings (account_id, active, credential_method, provider_url, voip_login, voip_token,
                                          voip_account_id, hook_id, webhook_secret, webhook_secret_hint, config,
                                          fallback_user_id, updated_by_user_id, updated_at)
             VALUES (?1, TRUE, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (account_id) DO UPDATE
                SET active = TRUE,
                    credential_method = excluded.credential_method,
                    provider_url = excluded.provider_url,
                    voip_login = excluded.voip_login,
                    voip_token = COALESCE(excluded.voip_token, widget_settings.voip_token),
                    voip_account_id = excluded.voip_account_id,
                    config = excluded.config,
                    fallback_user_id = excluded.fallback_user_id,
                    updated_by_user_id = excluded.updated_by_user_id,
                    updated_at = excluded.updated_at
             RETURNING hook_id = ?7",
        )
        .bind(account.0)
        .bind(write.credential_method)
        .bind(write.provider_url)
        .bind(write.voip_login)
        .bind(write.sealed_secret)
        .bind(write.voip_account_id)
        .bind(&write.new_endpoint.hook_id)
        .bind(&write.new_endpoint.sealed_secret)
        .bind(&write.new_endpoint.hint)
        .bind(&write.config)
        .bind(write.fallback_user_id)
        .bind(write.user_id)
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM voip_users WHERE account_id = ?1").bind(account.0).execute(&mut *tx).await?;
        for (extension, user_id) in &write.extensions {
            sqlx::query("INSERT INTO voip_users (account_id, kommo_user_id, extension_id) VALUES (?1, ?2, ?3)")
                .bind(account.0)
                .bind(user_id)
                .bind(extension)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Turns call processing off for the account (Kommo's `active: 'N'`), keeping everything else.
    pub async fn deactivate(&self, account: AccountId, user_id: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE widget_settings SET active = FALSE, updated_by_user_id = ?2, updated_at = ?3 WHERE account_id = ?1",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Replaces the webhook signing secret; the current one keeps verifying until `previous_until`.
    /// Returns false when the account has no endpoint yet.
    /// The account's current signing secret, sealed (for an admin's reveal); `None` before the first save.
    pub async fn webhook_secret(&self, account: AccountId) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT webhook_secret FROM widget_settings WHERE account_id = ?1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn rotate_webhook_secret(
        &self,
        account: AccountId,
        sealed_secret: &str,
        hint: &str,
        previous_until: i64,
    ) -> sqlx::Result<bool> {
        let rotated = sqlx::query(
            "UPDATE widget_settings
                SET previous_webhook_secret = webhook_secret, previous_secret_until = ?4,
                    webhook_secret = ?2, webhook_secret_hint = ?3, updated_at = ?5
             WHERE account_id = ?1",
        )
        .bind(account.0)
        .bind(sealed_secret)
        .bind(hint)
        .bind(previous_until)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(rotated.rows_affected() == 1)
    }

    /// Resolves a webhook path to its account. Unknown ids give `None`.
    pub async fn hook(&self, hook_id: &str, now: i64) -> sqlx::Result<Option<Hook>> {
        type Row = (i64, bool, String, Option<String>, Option<i64>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT account_id, active, webhook_secret,
                    CASE WHEN previous_secret_until > ?2 THEN previous_webhook_secret END, previous_secret_until
             FROM widget_settings WHERE hook_id = ?1",
        )
        .bind(hook_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(account, active, secret, previous, until)| Hook {
            account: AccountId(account),
            active,
            secret,
            previous_secret: previous.zip(until),
        }))
    }

    /// Stores the manager's call result and queues the call's job, in one transaction. False when the
    /// call has a result already.
    pub async fn insert_call_result(
        &self,
        account: AccountId,
        call_id: &str,
        result_json: &str,
        user_id: i64,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO call_results (account_id, call_id, result, user_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(result_json)
        .bind(user_id)
        .bind(now_ms / 1000)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            crate::jobs::enqueue(&mut *tx, account, crate::jobs::KIND_CALL, call_id, now_ms).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Forgets what no one needs any more; returns the rows removed. Finished jobs after a week;
    /// provider events applied a month ago (their call stays in `voip_calls`; a provider retry that late
    /// is no longer recognised as a duplicate, and none retries that long), both sooner when
    /// `retention.finished` is shorter; finished calls, their write records and results, and dead jobs
    /// after `retention.finished`; a disabled account whole after `retention.erase_disabled_after`;
    /// consent states past their expiry; authorization codes left unexchanged a day after Kommo's
    /// 20-minute lifetime ended; pacing rows of idle buckets.
    pub async fn housekeeping(&self, now: i64, retention: &Retention) -> sqlx::Result<u64> {
        const DAY: i64 = 24 * 3600;
        let secs = |age: Duration| i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        let keep_finished = secs(retention.finished);
        let finished = now.saturating_sub(keep_finished);
        // A call whose job is queued or running is not finished, whatever its age.
        const IDLE: &str = "NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.account_id = t.account_id
                              AND j.subject = t.call_id AND j.state IN ('queued', 'running'))";
        let mut removed = 0;
        let statements: [(String, i64); 10] = [
            (
                "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?1".into(),
                (now - (7 * DAY).min(keep_finished)) * 1000,
            ),
            ("DELETE FROM jobs WHERE state = 'dead' AND updated_at < ?1".into(), finished * 1000),
            (
                "DELETE FROM webhook_inbox WHERE applied_at IS NOT NULL AND applied_at < ?1".into(),
                now - (30 * DAY).min(keep_finished),
            ),
            (format!("DELETE FROM voip_calls AS t WHERE updated_at < ?1 AND {IDLE}"), finished),
            (format!("DELETE FROM kommo_writes AS t WHERE updated_at < ?1 AND {IDLE}"), finished),
            (format!("DELETE FROM call_results AS t WHERE updated_at < ?1 AND {IDLE}"), finished),
            ("DELETE FROM oauth_states WHERE expires_at < ?1".into(), now),
            ("DELETE FROM oauth_codes WHERE received_at < ?1".into(), now - DAY),
            // Pacing rows of buckets idle for a minute say nothing any more.
            ("DELETE FROM kommo_rate WHERE next_at_ms < ?1".into(), (now - 60) * 1000),
            // Erasure after Kommo's disable hook: every table hangs off accounts with ON DELETE CASCADE.
            (
                "DELETE FROM accounts WHERE state = 'disabled' AND updated_at < ?1".into(),
                now.saturating_sub(secs(retention.erase_disabled_after)),
            ),
        ];
        for (statement, cutoff) in statements {
            removed += sqlx::query(&statement).bind(cutoff).execute(&self.pool).await?.rows_affected();
        }
        Ok(removed)
    }

    /// Who the call `call_id` concerns (see [`CallParties`]); `None` when the account has no such call.
    /// Before the worker folded the call, its stored provider events tell.
    pub async fn call_parties(&self, account: AccountId, call_id: &str) -> sqlx::Result<Option<CallParties>> {
        // The worker's fold keeps the client's number (in E.164 with the account's country).
        #[derive(FromRow)]
        struct Folded {
            client_number: String,
            extension: Option<String>,
            responsible_user_id: Option<i64>,
            entity_type: Option<String>,
            entity_id: Option<i64>,
        }
        let folded: Option<Folded> = sqlx::query_as(
            "SELECT client_number, extension, responsible_user_id, entity_type, entity_id
             FROM voip_calls WHERE account_id = ?1 AND call_id = ?2 AND client_number IS NOT NULL",
        )
        .bind(account.0)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(call) = folded {
            return Ok(Some(CallParties {
                client_number: call.client_number,
                extension: call.extension,
                responsible_user_id: call.responsible_user_id,
                entity: call.entity_type.zip(call.entity_id),
            }));
        }
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM webhook_inbox WHERE account_id = ?1 AND call_id = ?2 ORDER BY id LIMIT 50",
        )
        .bind(account.0)
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        let events: Vec<shared::FromWebhook> =
            bodies.iter().filter_map(|body| serde_json::from_str(body).ok()).collect();
        let Some(first) = events.first() else {
            return Ok(None);
        };
        // As the fold will read them: the latest direction given, inbound until one is.
        let direction = events.iter().rev().find_map(|event| event.direction).unwrap_or(shared::CallDirection::Inbound);
        Ok(Some(CallParties {
            client_number: direction.client_and_line(&first.from, &first.to).0.to_owned(),
            extension: events.iter().rev().find_map(|event| event.extension.clone()),
            ..CallParties::default()
        }))
    }

    /// The Kommo user an extension belongs to in this account, if mapped.
    pub async fn user_for_extension(&self, account: AccountId, extension: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT kommo_user_id FROM voip_users WHERE account_id = ?1 AND extension_id = ?2")
            .bind(account.0)
            .bind(extension)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records a completed install: creates the account, or updates it when Kommo's account id is
    /// known (a changed subdomain never creates a second account).
    pub async fn install_account(
        &self,
        kommo_account_id: i64,
        subdomain: &str,
        api_domain: &str,
        country: Option<&str>,
    ) -> sqlx::Result<AccountId> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (kommo_account_id, subdomain, api_domain, country, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'installed', ?5, ?5)
             ON CONFLICT (kommo_account_id) DO UPDATE
                SET subdomain = excluded.subdomain, api_domain = excluded.api_domain,
                    country = COALESCE(excluded.country, accounts.country),
                    state = 'installed', state_reason = NULL, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(kommo_account_id)
        .bind(subdomain)
        .bind(api_domain)
        .bind(country)
        .bind(unix_now())
        .fetch_one(&self.pool)
        .await?;
        Ok(AccountId(id))
    }

    /// The account Kommo knows as `kommo_account_id`, if we have it.
    pub async fn account_by_kommo_id(&self, kommo_account_id: i64) -> sqlx::Result<Option<AccountId>> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE kommo_account_id = ?1")
            .bind(kommo_account_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.map(AccountId))
    }

    pub async fn account(&self, account: AccountId) -> sqlx::Result<Option<AccountInfo>> {
        let row: Option<(i64, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT kommo_account_id, subdomain, api_domain, state, state_reason FROM accounts WHERE id = ?1",
        )
        .bind(account.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(kommo_account_id, subdomain, api_domain, state, state_reason)| AccountInfo {
            kommo_account_id,
            subdomain,
            api_domain,
            state: AccountState::parse(&state),
            state_reason,
        }))
    }

    pub async fn set_account_state(
        &self,
        account: AccountId,
        state: AccountState,
        reason: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE accounts SET state = ?2, state_reason = ?3, updated_at = ?4 WHERE id = ?1")
            .bind(account.0)
            .bind(state.as_str())
            .bind(reason)
            .bind(unix_now())
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The disable hook: forget the account's tokens and stop its traffic, in one transaction.
    pub async fn disable_account(&self, account: AccountId) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM kommo_auth_tokens WHERE account_id = ?1").bind(account.0).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE accounts SET state = 'disabled', state_reason = 'disabled in Kommo', updated_at = ?2 WHERE id = ?1",
        )
        .bind(account.0)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE widget_settings SET active = FALSE WHERE account_id = ?1")
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    pub async fn tokens(&self, account: AccountId) -> sqlx::Result<Option<TokenRow>> {
        sqlx::query_as("SELECT access_token, refresh_token, expires_at FROM kommo_auth_tokens WHERE account_id = ?1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    /// Stores a sealed token pair and releases any refresh lease.
    pub async fn store_tokens(
        &self,
        account: AccountId,
        access: &str,
        refresh: &str,
        expires_at: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_auth_tokens (account_id, access_token, refresh_token, expires_at, refreshing_until, updated_at)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5)
             ON CONFLICT (account_id) DO UPDATE
                SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                    expires_at = excluded.expires_at, refreshing_until = NULL, updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(access)
        .bind(refresh)
        .bind(expires_at)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Takes the account's refresh lease if nobody holds a live one and the stored refresh token is
    /// still `observed` (compare-and-swap: a process that read the row before another one refreshed
    /// must not refresh again with the old token). One conditional UPDATE, atomic on its own, so it
    /// works across server processes sharing the database.
    pub async fn claim_refresh_lease(
        &self,
        account: AccountId,
        observed: &str,
        now: i64,
        until: i64,
    ) -> sqlx::Result<bool> {
        let claimed = sqlx::query(
            "UPDATE kommo_auth_tokens SET refreshing_until = ?4
             WHERE account_id = ?1 AND refresh_token = ?2 AND (refreshing_until IS NULL OR refreshing_until < ?3)",
        )
        .bind(account.0)
        .bind(observed)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    pub async fn release_refresh_lease(&self, account: AccountId) -> sqlx::Result<()> {
        sqlx::query("UPDATE kommo_auth_tokens SET refreshing_until = NULL WHERE account_id = ?1")
            .bind(account.0)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Reserves the next send slot of `bucket`, `spacing_ms` after the previous one, unless that slot
    /// starts more than `max_wait_ms` from `now_ms`: `Ok(start)` (unix ms) when reserved, `Err(next)`
    /// with the next free slot when not. One atomic statement, so processes sharing the database
    /// never take the same slot: together they stay within the rate.
    pub async fn reserve_send_slot(
        &self,
        bucket: &str,
        now_ms: i64,
        spacing_ms: i64,
        max_wait_ms: i64,
    ) -> sqlx::Result<Result<i64, i64>> {
        let reserved: Option<i64> = sqlx::query_scalar(
            "INSERT INTO kommo_rate (bucket, next_at_ms) VALUES (?1, ?2 + ?3)
             ON CONFLICT (bucket) DO UPDATE SET next_at_ms = MAX(kommo_rate.next_at_ms, ?2) + ?3
                 WHERE kommo_rate.next_at_ms <= ?2 + ?4
             RETURNING next_at_ms - ?3",
        )
        .bind(bucket)
        .bind(now_ms)
        .bind(spacing_ms)
        .bind(max_wait_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(start) = reserved {
            return Ok(Ok(start));
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT next_at_ms FROM kommo_rate WHERE bucket = ?1")
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await?;
        Ok(Err(next.unwrap_or(now_ms)))
    }

    /// Keeps a received authorization code (sealed) until it is exchanged, unless `limits` codes are
    /// waiting already (in total, or for this host): then `None` and nothing is stored. Codes older
    /// than `not_before` no longer count (they expired at Kommo).
    pub async fn insert_code(
        &self,
        api_domain: &str,
        sealed_code: &str,
        not_before: i64,
        limits: PendingCodeLimits,
    ) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "INSERT INTO oauth_codes (api_domain, code, received_at)
             SELECT ?1, ?2, ?3
              WHERE (SELECT COUNT(*) FROM oauth_codes
                      WHERE state IN ('pending', 'exchanging') AND received_at >= ?4) < ?5
                AND (SELECT COUNT(*) FROM oauth_codes
                      WHERE api_domain = ?1 AND state IN ('pending', 'exchanging') AND received_at >= ?4) < ?6
             RETURNING id",
        )
        .bind(api_domain)
        .bind(sealed_code)
        .bind(unix_now())
        .bind(not_before)
        .bind(i64::from(limits.total))
        .bind(i64::from(limits.per_host))
        .fetch_optional(&self.pool)
        .await
    }

    /// Claims pending codes received after `not_before` (older ones have expired at Kommo),
    /// including ones whose exchange lease lapsed (a crash mid-exchange).
    pub async fn claim_codes(
        &self,
        not_before: i64,
        lease_until: i64,
        only: Option<i64>,
    ) -> sqlx::Result<Vec<PendingCode>> {
        let now = unix_now();
        sqlx::query_as(
            "UPDATE oauth_codes SET state = 'exchanging', lease_until = ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM oauth_codes
                          WHERE received_at >= ?1 AND (?4 IS NULL OR id = ?4)
                            AND (state = 'pending' OR (state = 'exchanging' AND lease_until < ?3)))
             RETURNING id, api_domain, code, received_at",
        )
        .bind(not_before)
        .bind(lease_until)
        .bind(now)
        .bind(only)
        .fetch_all(&self.pool)
        .await
    }

    /// Ends a code's exchange: `error` None means done. The code itself is erased either way.
    pub async fn finish_code(&self, id: i64, retry: bool, error: Option<&str>) -> sqlx::Result<()> {
        let state = match (error, retry) {
            (None, _) => "done",
            (Some(_), true) => "pending",
            (Some(_), false) => "failed",
        };
        sqlx::query(
            "UPDATE oauth_codes SET state = ?2, last_error = ?3, lease_until = NULL,
                    code = CASE WHEN ?2 = 'pending' THEN code ELSE '' END
             WHERE id = ?1",
        )
        .bind(id)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn insert_oauth_state(&self, state_hash: &str, browser_hash: &str, expires_at: i64) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO oauth_states (state_hash, browser_hash, expires_at) VALUES (?1, ?2, ?3)")
            .bind(state_hash)
            .bind(browser_hash)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Consumes a consent `state`: true when it existed, was bound to this browser and is unexpired.
    /// It is deleted either way, so it works at most once.
    pub async fn consume_oauth_state(&self, state_hash: &str, browser_hash: &str) -> sqlx::Result<bool> {
        let row: Option<(String, i64)> =
            sqlx::query_as("DELETE FROM oauth_states WHERE state_hash = ?1 RETURNING browser_hash, expires_at")
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some_and(|(bound_to, expires_at)| bound_to == browser_hash && expires_at >= unix_now()))
    }

    /// Records a disposable token's `jti`; false when it was already used (a replay).
    pub async fn remember_token_id(&self, jti: &str, expires_at: i64) -> sqlx::Result<bool> {
        let now = unix_now();
        sqlx::query("DELETE FROM used_token_ids WHERE expires_at < ?1").bind(now).execute(&self.pool).await?;
        let inserted =
            sqlx::query("INSERT INTO used_token_ids (jti, expires_at) VALUES (?1, ?2) ON CONFLICT (jti) DO NOTHING")
                .bind(jti)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Test and tooling access to the raw pool (e.g. to assert what was stored).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
