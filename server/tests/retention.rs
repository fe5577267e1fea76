//! Retention, as an operator configures it (`RETENTION_DAYS`, `ERASE_DISABLED_AFTER_DAYS`): finished
//! calls with their phone numbers, Kommo write records and call results go after their age; an account
//! disabled in Kommo is erased whole after its grace; nothing still in progress is touched.

mod support;

use reqwest::StatusCode;
use std::time::Duration;

use server::clock::unix_secs;
use server::config::Retention;
use support::{ACCOUNT, CLIENT_ID, CLIENT_SECRET, world};

const DAY: i64 = 24 * 3600;
const KEEP: Retention = Retention {
    finished: Duration::from_secs(90 * DAY as u64),
    erase_disabled_after: Duration::from_secs(30 * DAY as u64),
};

async fn count(world: &support::World, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(world.store.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_calls_go_after_their_age_and_a_disabled_account_is_erased_after_its_grace() {
    let world = world().await;
    world.configure(ACCOUNT, shared::CallHandling::default()).await;
    world.kommo_control("/sandbox/kommo/accounts", serde_json::json!({"id": ACCOUNT + 1, "subdomain": "second"})).await;
    world.configure(ACCOUNT + 1, shared::CallHandling::default()).await;
    let account = world.store.account_by_kommo_id(ACCOUNT as i64).await.unwrap().unwrap();
    let now = unix_secs();
    // Three calls of the account: finished long ago, finished yesterday, and old but still being delivered.
    for (call, age_days, open_job) in [("old", 100, false), ("recent", 1, false), ("old-in-progress", 100, true)] {
        let at = now - age_days * DAY;
        // A finished call as the worker leaves it: the call, its Kommo write record, the manager's result.
        for statement in [
            "INSERT INTO voip_calls (account_id, call_id, voip_account_id, from_number, to_number, status, started_at,
                                     created_at, updated_at)
             VALUES ($1, $2, 'v', '+5511987654321', '+551133334444', 'ended', $3, $3, $3)",
            "INSERT INTO kommo_writes (account_id, call_id, action_key, state, updated_at)
             VALUES ($1, $2, 'call', 'done', $3)",
            "INSERT INTO call_results (account_id, call_id, result, user_id, created_at, updated_at)
             VALUES ($1, $2, '{}', 1, $3, $3)",
        ] {
            sqlx::query(statement).bind(account.get()).bind(call).bind(at).execute(world.store.pool()).await.unwrap();
        }
        if open_job {
            sqlx::query(
                "INSERT INTO jobs (account_id, kind, subject, state, run_at, created_at, updated_at)
                 VALUES ($1, 'call', $2, 'queued', 0, 0, 0)",
            )
            .bind(account.get())
            .bind(call)
            .execute(world.store.pool())
            .await
            .unwrap();
        }
    }
    world.store.housekeeping(now, &KEEP).await.unwrap();
    for table in ["voip_calls", "kommo_writes", "call_results"] {
        let left: Vec<String> = sqlx::query_scalar(&format!("SELECT call_id FROM {table} ORDER BY call_id"))
            .fetch_all(world.store.pool())
            .await
            .unwrap();
        assert_eq!(left, ["old-in-progress", "recent"], "{table}");
    }
    assert!(count(&world, "SELECT COUNT(*) FROM kommo_rate").await > 0, "the installs paced their requests");

    // Kommo's disable hook for the account (signed as Kommo signs it), then its grace passes.
    let signature = server::oauth::disable_signature(CLIENT_SECRET, CLIENT_ID, &ACCOUNT.to_string());
    let disabled = world
        .http
        .get(format!(
            "{}/oauth/kommo/disable?client_uuid={CLIENT_ID}&account_id={ACCOUNT}&signature={signature}",
            world.server
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);
    world.store.housekeeping(unix_secs() + 29 * DAY, &KEEP).await.unwrap();
    assert_eq!(count(&world, "SELECT COUNT(*) FROM accounts").await, 2, "kept during the grace");
    assert_eq!(count(&world, "SELECT COUNT(*) FROM kommo_rate").await, 0, "pacing rows of idle buckets go");
    world.store.housekeeping(unix_secs() + 31 * DAY, &KEEP).await.unwrap();
    let kommo_ids: Vec<i64> =
        sqlx::query_scalar("SELECT kommo_account_id FROM accounts").fetch_all(world.store.pool()).await.unwrap();
    assert_eq!(kommo_ids, [ACCOUNT as i64 + 1], "the disabled account is erased, the other stays");
    for table in ["widget_settings", "voip_calls", "kommo_writes", "call_results", "jobs"] {
        let left = count(&world, &format!("SELECT COUNT(*) FROM {table} WHERE account_id = {}", account.get())).await;
        assert_eq!(left, 0, "{table} still holds the erased account's rows");
    }
    assert_eq!(count(&world, "SELECT COUNT(*) FROM widget_settings").await, 1, "the other account's settings stay");
}
