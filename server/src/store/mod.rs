//! Storage: the database pool, its migrations, and every query. Nothing outside this module holds SQL;
//! each submodule owns one concept's tables:
//!
//! | module | tables |
//! |---|---|
//! | [`accounts`] | `accounts`, `kommo_auth_tokens` |
//! | [`oauth`] | `oauth_codes`, `oauth_states`, `used_token_ids` |
//! | [`settings`] | `widget_settings`, `voip_users` |
//! | [`inbox`] | `webhook_inbox` (group commit of provider events) |
//! | [`jobs`] | `jobs` (the durable queue) |
//! | [`calls`] | `voip_calls`, `kommo_writes` (the write ledger), `call_results` |
//! | [`rate`] | `kommo_rate` (the 7 requests/s budget) |
//! | [`push`] | `push_tickets`, and PostgreSQL's `LISTEN/NOTIFY` for events across replicas |
//! | [`housekeeping`] | retention and erasure over all of them |
//!
//! Two engines, one schema meaning: `DATABASE_URL` selects SQLite (a file, the default) or
//! PostgreSQL (several replicas on one database). Queries go through sqlx's `Any` driver with `$n`
//! placeholders, which both engines read; where their SQL differs (row locks, `NOTIFY`) the module
//! asks [`Store::engine`]. Migrations live side by side in `migrations/sqlite` and
//! `migrations/postgres`; the whole server test suite runs on both.
//!
//! Booleans: SQLite has none (sqlx's `Any` driver refuses its `BOOLEAN` columns), so queries read a
//! boolean column as `CASE WHEN column THEN 1 ELSE 0 END` into an integer, and write it with `TRUE` /
//! `FALSE` or a bound `bool`, which both engines take.
//!
//! Each query on tenant data takes an [`AccountId`], which only verified paths produce.

pub mod accounts;
pub mod call_lists;
pub mod calls;
pub mod copy;
pub mod housekeeping;
pub mod inbox;
pub mod jobs;
pub mod oauth;
pub mod phones;
pub mod push;
pub mod rate;
pub mod settings;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

pub use accounts::{AccountInfo, AccountState, TokenRow};
pub use calls::CallParties;
pub use oauth::{PENDING_CODE_ACCOUNT, PendingCode, PendingCodeLimits};
pub use settings::{Hook, NewEndpoint, SettingsRow, SettingsWrite};

/// Our own id of an account (not Kommo's). Only the store makes one, from what a verified path
/// resolved: a webhook's unguessable path, a verified token's account, an install, a claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(i64);

impl AccountId {
    /// The row id, for binding and for logs.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// For the crate's unit tests, which need ids without a database.
    #[cfg(test)]
    pub(crate) const fn for_tests(id: i64) -> AccountId {
        AccountId(id)
    }
}

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a `DATABASE_URL` names, or an error naming the variable and only the URL's scheme
    /// (never the rest: it may hold a password).
    pub fn of_url(database_url: &str) -> anyhow::Result<Engine> {
        let scheme = database_url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Engine::Sqlite),
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            _ => anyhow::bail!(
                "DATABASE_URL must be sqlite://<file> (the embedded default, e.g. sqlite://data/kommo-voip.sqlite) \
                 or postgres://<user>:<password>@<host>/<database>; the scheme {:?} is neither",
                if scheme.is_empty() { "(none)" } else { scheme }
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// The URL, kept to open PostgreSQL's `LISTEN` connection (never logged).
    url: std::sync::Arc<str>,
}

/// Connections per process on PostgreSQL (SQLite takes one, see [`Store::connect`]).
const POSTGRES_CONNECTIONS: u32 = 16;
/// How long a query waits for a free connection before it fails (and its request answers 503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Opens (creating if needed) the database `DATABASE_URL` names and applies pending migrations.
    ///
    /// SQLite runs in WAL mode with `synchronous = FULL`: a commit that returned is on disk even
    /// across power loss, which is what "a 200 means stored" needs. (NORMAL would survive a process
    /// crash but may lose the last commits on an OS crash.) PostgreSQL commits are durable by its own
    /// defaults (`synchronous_commit = on`).
    pub async fn connect(database_url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of_url(database_url)?;
        let pool = match engine {
            Engine::Sqlite => Self::open_sqlite(database_url).await?,
            Engine::Postgres => {
                let options =
                    AnyConnectOptions::from_str(database_url).context("DATABASE_URL is not a valid postgres:// URL")?;
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .context("connecting to the PostgreSQL server DATABASE_URL names")?
            }
        };
        let migrated = match engine {
            Engine::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            // Several replicas starting at once: sqlx holds an advisory lock while it migrates.
            Engine::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        migrated.context("applying migrations")?;
        Ok(Store { pool, engine, url: database_url.into() })
    }

    async fn open_sqlite(database_url: &str) -> anyhow::Result<AnyPool> {
        let parsed = SqliteConnectOptions::from_str(database_url)
            .context("DATABASE_URL is not a valid sqlite:// URL (sqlite://<path to the database file>)")?;
        if let Some(parent) = parsed.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the database directory {}", parent.display()))?;
        }
        // Create the file when missing, as the embedded default should.
        let url = match database_url.contains("mode=") {
            true => database_url.to_owned(),
            false if database_url.contains('?') => format!("{database_url}&mode=rwc"),
            false => format!("{database_url}?mode=rwc"),
        };
        let options = AnyConnectOptions::from_str(&url).context("DATABASE_URL is not a valid sqlite:// URL")?;
        // One connection per process. SQLite takes one writer at a time anyway; with several connections
        // the others wait for the write lock in SQLite's busy handler, which sleeps in growing steps (up to
        // 100 ms each), and under load (webhook group commits beside the worker's claims and ledger
        // writes) those sleeps added up to seconds. With one connection, statements queue in the pool in
        // arrival order and each runs as soon as the previous one is done; transactions are short and
        // never span an HTTP call. Other processes on the same file still meet the busy handler.
        AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute(sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
                             PRAGMA busy_timeout = 5000;",
                        ))
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .context("opening the SQLite database DATABASE_URL names")
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Test and tooling access to the raw pool (e.g. to assert what was stored).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A boolean as queries select it, `CASE WHEN column THEN 1 ELSE 0 END` (see the module's notes);
/// a row field reads it with `#[sqlx(try_from = "Flag")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl sqlx::Type<sqlx::Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<sqlx::Any>>::compatible(ty) || <bool as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Flag, sqlx::error::BoxDynError> {
        use sqlx::ValueRef;
        if value.type_info().kind() == sqlx::any::AnyTypeInfoKind::Bool {
            return <bool as sqlx::Decode<sqlx::Any>>::decode(value).map(Flag);
        }
        <i64 as sqlx::Decode<sqlx::Any>>::decode(value).map(|number| Flag(number != 0))
    }
}

/// Appends `VALUES ($1, ..., $n), (...)` for `rows` rows of `columns` placeholders each.
pub(crate) fn push_values(sql: &mut String, rows: usize, columns: usize) {
    use std::fmt::Write;
    sql.push_str("VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let separator = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{separator}${}", row * columns + column + 1);
        }
        sql.push(')');
    }
}
