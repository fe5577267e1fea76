//! Storage: the SQLite pool, migrations, and every query on tenant data. Each query that reads or
//! writes tenant data takes an [`AccountId`], which only authenticated contexts produce.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shared::FromWebhook;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

/// Our own id of an account (not Kommo's). Obtained only from a verified token or a webhook path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountId(pub i64);

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// The stored settings of one account.
#[derive(Debug, Clone, FromRow)]
pub struct SettingsRow {
    pub active: bool,
    pub voip_login: String,
    /// The sealed VoIP password (see `crypto`), if one was saved.
    pub voip_token: Option<String>,
    pub hook_id: String,
}

/// What a settings save writes.
pub struct SettingsWrite<'a> {
    pub active: bool,
    pub voip_login: &'a str,
    /// A newly sealed password, or `None` to keep the stored one.
    pub sealed_password: Option<String>,
    /// Used only when the account has no hook id yet.
    pub new_hook_id: &'a str,
    pub user_id: i64,
}

pub fn unix_now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
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
            .busy_timeout(Duration::from_secs(5));
        if let Some(parent) = options
            .get_filename()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the database directory {}", parent.display()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .context("opening the database")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying migrations")?;
        Ok(Store { pool })
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Finds or creates the account Kommo names in a verified token, keeping its subdomain current.
    pub async fn account_from_kommo(
        &self,
        kommo_account_id: i64,
        subdomain: &str,
    ) -> sqlx::Result<AccountId> {
        let now = unix_now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (kommo_account_id, subdomain, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (kommo_account_id) DO UPDATE
                SET subdomain = excluded.subdomain,
                    updated_at = CASE WHEN accounts.subdomain = excluded.subdomain
                                      THEN accounts.updated_at ELSE excluded.updated_at END
             RETURNING id",
        )
        .bind(kommo_account_id)
        .bind(subdomain)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(AccountId(id))
    }

    pub async fn settings(&self, account: AccountId) -> sqlx::Result<Option<SettingsRow>> {
        sqlx::query_as("SELECT active, voip_login, voip_token, hook_id FROM widget_settings WHERE account_id = ?1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    /// Writes the account's settings in one statement, so two concurrent saves leave one of them
    /// whole (never a mix), and keeps the stored password and hook id unless replaced.
    pub async fn save_settings(
        &self,
        account: AccountId,
        write: SettingsWrite<'_>,
    ) -> sqlx::Result<SettingsRow> {
        sqlx::query_as(
            "INSERT INTO widget_settings (account_id, active, voip_login, voip_token, hook_id, updated_by_user_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (account_id) DO UPDATE
                SET active = excluded.active,
                    voip_login = excluded.voip_login,
                    voip_token = COALESCE(excluded.voip_token, widget_settings.voip_token),
                    updated_by_user_id = excluded.updated_by_user_id,
                    updated_at = excluded.updated_at
             RETURNING active, voip_login, voip_token, hook_id",
        )
        .bind(account.0)
        .bind(write.active)
        .bind(write.voip_login)
        .bind(write.sealed_password)
        .bind(write.new_hook_id)
        .bind(write.user_id)
        .bind(unix_now())
        .fetch_one(&self.pool)
        .await
    }

    /// Resolves a webhook path to its account. Unknown ids give `None`.
    pub async fn account_for_hook(&self, hook_id: &str) -> sqlx::Result<Option<AccountId>> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT account_id FROM widget_settings WHERE hook_id = ?1")
                .bind(hook_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(id.map(AccountId))
    }

    /// Records a provider event: the first event of a call inserts it, later ones update its status.
    /// Returns once the write is committed.
    pub async fn record_call_event(
        &self,
        account: AccountId,
        event: &FromWebhook,
    ) -> sqlx::Result<()> {
        let now = unix_now();
        sqlx::query(
            "INSERT INTO voip_calls (account_id, call_id, voip_account_id, from_number, to_number, extension,
                                     status, started_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (account_id, call_id) DO UPDATE
                SET status = excluded.status,
                    extension = COALESCE(excluded.extension, voip_calls.extension),
                    updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(&event.call_id)
        .bind(&event.voip_account_id)
        .bind(&event.from)
        .bind(&event.to)
        .bind(&event.extension)
        .bind(event.status.as_str())
        .bind(event.start_time)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// The Kommo user an extension belongs to in this account, if mapped.
    pub async fn user_for_extension(
        &self,
        account: AccountId,
        extension: &str,
    ) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT kommo_user_id FROM voip_users WHERE account_id = ?1 AND extension_id = ?2",
        )
        .bind(account.0)
        .bind(extension)
        .fetch_optional(&self.pool)
        .await
    }

    /// Test and tooling access to the raw pool (e.g. to assert what was stored).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
