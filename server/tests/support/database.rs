//! The database of one test: a SQLite file in the test's directory, or, when `TEST_POSTGRES_URL`
//! names a PostgreSQL server (the test command's PostgreSQL pass sets it), a new database of its own
//! on that server. Every test that opens a store takes its URL from here, so the whole suite runs on
//! both engines.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

/// Which engine this run of the suite tests.
pub fn on_postgres() -> bool {
    std::env::var("TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty())
}

/// A fresh, empty database: `sqlite://<dir>/<name>.sqlite`, or a new PostgreSQL database.
pub async fn database_url(dir: &Path, name: &str) -> String {
    let Ok(server) = std::env::var("TEST_POSTGRES_URL") else {
        return format!("sqlite://{}", dir.join(format!("{name}.sqlite")).display());
    };
    static CREATED: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let database = format!("t{}_{}_{}", std::process::id(), CREATED.fetch_add(1, Ordering::Relaxed), nanos);
    let create = format!("CREATE DATABASE {database}");
    let mut admin = sqlx::postgres::PgConnection::connect(&server).await.expect("TEST_POSTGRES_URL: connecting");
    sqlx::Executor::execute(&mut admin, create.as_str()).await.expect("creating a test database");
    admin.close().await.ok();
    let (base, _) = server.rsplit_once('/').expect("TEST_POSTGRES_URL ends in /<database>");
    format!("{base}/{database}")
}
