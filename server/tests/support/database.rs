//! The database of one test: a SQLite file in the test's directory, or, when `TEST_POSTGRES_URL`
//! names a PostgreSQL server (the test command's PostgreSQL pass sets it), a new database of its own
//! on that server. Every test that opens a store takes its URL from here, so the whole suite runs on
//! both engines.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

/// Which engine this run of the suite tests.
#[allow(dead_code, reason = "not every test binary that includes this file asks")]
pub fn on_postgres() -> bool {
    std::env::var("TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty())
}

/// A fresh, empty database: `sqlite://<dir>/<name>.sqlite`, or a new PostgreSQL database.
pub async fn database_url(dir: &Path, name: &str) -> String {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => postgres_database(&server).await,
        _ => format!("sqlite://{}", dir.join(format!("{name}.sqlite")).display()),
    }
}

/// A new, empty database on the PostgreSQL server `server` (a URL naming any database of it).
pub async fn postgres_database(server: &str) -> String {
    static CREATED: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let database = format!("t{}_{}_{}", std::process::id(), CREATED.fetch_add(1, Ordering::Relaxed), nanos);
    let create = format!("CREATE DATABASE {database}");
    let mut admin = sqlx::postgres::PgConnection::connect(server).await.expect("connecting to the PostgreSQL server");
    sqlx::Executor::execute(&mut admin, create.as_str()).await.expect("creating a test database");
    admin.close().await.ok();
    let (base, _) = server.rsplit_once('/').expect("a PostgreSQL URL ends in /<database>");
    format!("{base}/{database}")
}
