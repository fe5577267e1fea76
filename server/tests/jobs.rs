//! The job queue on a real SQLite file: claims, leases, fairness, backoff, parking, dead letters, and
//! the worker running jobs through a handler.

#[path = "support/database.rs"]
mod database;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server::jobs::{Job, JobError, KIND_CALL, LEASE, MAX_ATTEMPTS, Outcome, PARK_DELAY, Queue};
use server::store::{AccountId, Store};
use server::worker::{Handler, Worker};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Db {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&database::database_url(dir.path(), "jobs").await).await.unwrap();
    Db { store, _dir: dir }
}

async fn account(store: &Store, kommo_id: i64) -> AccountId {
    let subdomain = format!("acct{kommo_id}");
    store.install_account(kommo_id, &subdomain, &format!("{subdomain}.kommo.com"), None).await.unwrap()
}

const T0: i64 = 1_800_000_000_000;
const LEASE_MS: i64 = LEASE.as_millis() as i64;
const WORKER_LIVENESS_MS: i64 = server::jobs::WORKER_LIVENESS.as_millis() as i64;
/// A per-account cap no test below reaches, for the tests about something else.
const UNCAPPED: i64 = 1000;

async fn states(store: &Store) -> Vec<(String, String, i64)> {
    sqlx::query_as("SELECT subject, state, attempts FROM jobs ORDER BY id").fetch_all(store.pool()).await.unwrap()
}

#[tokio::test]
async fn a_burst_of_events_for_one_call_makes_one_queued_job() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let queue = Queue::new(&db.store, "w1");
    for _ in 0..5 {
        queue.enqueue(a, KIND_CALL, "call-1", T0).await.unwrap();
    }
    assert_eq!(states(&db.store).await, vec![("call-1".into(), "queued".into(), 0)]);
}

#[tokio::test]
async fn one_claim_takes_at_most_one_job_per_account_so_a_noisy_account_cannot_starve_others() {
    let db = db().await;
    let (noisy, quiet) = (account(&db.store, 1).await, account(&db.store, 2).await);
    let queue = Queue::new(&db.store, "w1");
    for call in 0..20 {
        queue.enqueue(noisy, KIND_CALL, &format!("noisy-{call}"), T0).await.unwrap();
    }
    queue.enqueue(quiet, KIND_CALL, "quiet-0", T0 + 10).await.unwrap();
    let claimed = queue.claim(T0 + 20, 8, UNCAPPED).await.unwrap();
    let mut subjects: Vec<&str> = claimed.iter().map(|job| job.subject.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["noisy-0", "quiet-0"], "the quiet account's one job runs in the first round");
}

#[tokio::test]
async fn a_call_never_runs_twice_at_once_and_a_dead_workers_lease_expires() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let (first, second) = (Queue::new(&db.store, "w1"), Queue::new(&db.store, "w2"));
    first.enqueue(a, KIND_CALL, "call-1", T0).await.unwrap();
    let claimed = first.claim(T0, 4, UNCAPPED).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // A new event for the same call queues a second job while the first runs...
    first.enqueue(a, KIND_CALL, "call-1", T0 + 1).await.unwrap();
    // ...which nobody may claim while the first holds its lease.
    assert!(second.claim(T0 + 2, 4, UNCAPPED).await.unwrap().is_empty());
    // w1 dies (kill -9): before its lease passes nothing comes back; after, the queued twin takes the
    // call over and the dead run is closed.
    assert_eq!(second.recover_expired(T0 + LEASE_MS - 1).await.unwrap(), 0);
    assert_eq!(second.recover_expired(T0 + LEASE_MS + 1).await.unwrap(), 1);
    let taken = second.claim(T0 + LEASE_MS + 1, 4, UNCAPPED).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_ne!(taken[0].id, claimed[0].id, "the newer job of the call runs");
    // The late w1 cannot finish a job it lost.
    first.complete(&claimed[0], T0 + LEASE_MS + 2).await.unwrap();
    let lost: (String, Option<String>) = sqlx::query_as("SELECT state, last_error FROM jobs WHERE id = $1")
        .bind(claimed[0].id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(lost.0, "done");
    assert!(lost.1.unwrap().contains("lease expired"));
}

#[tokio::test]
async fn a_lone_job_of_a_dead_worker_is_queued_again_once_its_lease_passed() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let (first, second) = (Queue::new(&db.store, "w1"), Queue::new(&db.store, "w2"));
    first.enqueue(a, KIND_CALL, "call-1", T0).await.unwrap();
    let claimed = first.claim(T0, 4, UNCAPPED).await.unwrap();
    assert!(second.claim(T0 + LEASE_MS + 1, 4, UNCAPPED).await.unwrap().is_empty(), "running until recovered");
    assert_eq!(second.recover_expired(T0 + LEASE_MS + 1).await.unwrap(), 1);
    let taken = second.claim(T0 + LEASE_MS + 2, 4, UNCAPPED).await.unwrap();
    assert_eq!(taken.iter().map(|job| job.id).collect::<Vec<_>>(), [claimed[0].id]);
    assert_eq!(taken[0].attempts, 2, "the lost run counts as an attempt");
}

#[tokio::test]
async fn an_account_with_its_share_of_slots_on_live_workers_gets_no_more_until_one_ends() {
    let db = db().await;
    let (noisy, quiet) = (account(&db.store, 1).await, account(&db.store, 2).await);
    let (first, second) = (Queue::new(&db.store, "w1"), Queue::new(&db.store, "w2"));
    for call in 0..50 {
        first.enqueue(noisy, KIND_CALL, &format!("noisy-{call}"), T0 + call).await.unwrap();
    }
    // Each round of claims takes one job per account; the noisy account stops at its 2 running jobs.
    let mut running = first.claim(T0 + 100, 8, 2).await.unwrap();
    running.extend(first.claim(T0 + 100, 8, 2).await.unwrap());
    assert!(first.claim(T0 + 100, 8, 2).await.unwrap().is_empty(), "the noisy account has its 2 slots");
    assert_eq!(running.iter().map(|job| job.subject.as_str()).collect::<Vec<_>>(), ["noisy-0", "noisy-1"]);
    // The quiet account's call, queued later than the whole backlog, is claimed at once.
    first.enqueue(quiet, KIND_CALL, "quiet-0", T0 + 200).await.unwrap();
    let quiet_claim = first.claim(T0 + 200, 8, 2).await.unwrap();
    assert_eq!(quiet_claim.iter().map(|job| job.subject.as_str()).collect::<Vec<_>>(), ["quiet-0"]);
    // The share is the account's in total, over every live worker of every replica: another worker
    // gets nothing of the noisy account while its 2 jobs run...
    assert!(second.claim(T0 + 200, 8, 2).await.unwrap().is_empty(), "2 running in total already");
    // ...and a finished job frees one slot, for whichever worker claims next, and only one.
    first.complete(&running[0], T0 + 300).await.unwrap();
    let next = second.claim(T0 + 300, 8, 2).await.unwrap();
    assert_eq!(next.iter().map(|job| job.subject.as_str()).collect::<Vec<_>>(), ["noisy-2"]);
    assert!(second.claim(T0 + 300, 8, 2).await.unwrap().is_empty());
    // A worker that stopped (killed with its replica) holds its share only until it is no longer seen
    // alive, seconds, not until its leases pass: the first worker's noisy-1 stops counting.
    let gone = T0 + 300 + WORKER_LIVENESS_MS + 1;
    let after = second.claim(gone, 8, 2).await.unwrap();
    assert_eq!(after.iter().map(|job| job.subject.as_str()).collect::<Vec<_>>(), ["noisy-3"]);
    assert!(second.claim(gone, 8, 2).await.unwrap().is_empty(), "the second worker's own 2 still count");
}

#[tokio::test]
async fn a_large_backlog_of_one_account_never_hides_another_accounts_job() {
    let db = db().await;
    let (noisy, quiet) = (account(&db.store, 1).await, account(&db.store, 2).await);
    let queue = Queue::new(&db.store, "w1");
    let mut tx = db.store.pool().begin().await.unwrap();
    for call in 0..5000 {
        server::jobs::enqueue(&mut tx, noisy, KIND_CALL, &format!("noisy-{call}"), T0 + call).await.unwrap();
    }
    tx.commit().await.unwrap();
    queue.enqueue(quiet, KIND_CALL, "quiet-0", T0 + 10_000).await.unwrap();
    let claimed = queue.claim(T0 + 20_000, 2, UNCAPPED).await.unwrap();
    let mut subjects: Vec<&str> = claimed.iter().map(|job| job.subject.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["noisy-0", "quiet-0"]);
}

#[tokio::test]
async fn failures_back_off_then_park_as_a_dead_letter_that_can_be_retried() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let queue = Queue::new(&db.store, "w1");
    queue.enqueue(a, KIND_CALL, "call-1", T0).await.unwrap();
    let mut now = T0;
    let mut delays = Vec::new();
    loop {
        let job = queue.claim(now, 1, UNCAPPED).await.unwrap().pop().expect("the job is due");
        let error =
            JobError::Retry { error: format!("Kommo is unavailable: 500 (attempt {})", job.attempts), after: None };
        let outcome = queue.fail(&job, &error, now).await.unwrap();
        if outcome == Outcome::Dead {
            assert_eq!(job.attempts, MAX_ATTEMPTS);
            break;
        }
        assert_eq!(outcome, Outcome::Retried);
        let run_at: i64 = sqlx::query_scalar("SELECT run_at FROM jobs").fetch_one(db.store.pool()).await.unwrap();
        assert!(queue.claim(run_at - 1, 1, UNCAPPED).await.unwrap().is_empty(), "not before its backoff");
        delays.push(run_at - now);
        now = run_at;
    }
    // Full jitter over the upper half: each step at least the previous one until the 15-minute cap.
    assert!((1000..=2000).contains(&delays[0]), "{delays:?}");
    assert!(delays.windows(2).take(8).all(|pair| pair[1] >= pair[0]), "{delays:?}");
    assert!(delays.iter().all(|&delay| delay <= 15 * 60 * 1000), "{delays:?}");
    assert!(delays[delays.len() - 1] >= 4 * 60 * 1000, "the backoff grew: {delays:?}");
    let letters = queue.dead_letters(Some(a), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].last_error.as_deref(), Some("Kommo is unavailable: 500 (attempt 10)"));
    let other = account(&db.store, 2).await;
    assert!(!queue.retry_dead(Some(other), letters[0].id, now).await.unwrap(), "another account cannot retry it");
    assert!(queue.retry_dead(Some(a), letters[0].id, now).await.unwrap());
    assert_eq!(states(&db.store).await, vec![("call-1".into(), "queued".into(), 0)]);
}

#[tokio::test]
async fn a_permanent_failure_is_dead_at_once_and_parking_burns_no_attempt() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let queue = Queue::new(&db.store, "w1");
    queue.enqueue(a, KIND_CALL, "parked", T0).await.unwrap();
    queue.enqueue(a, KIND_CALL, "broken", T0 + 1).await.unwrap();
    sqlx::query(
        "INSERT INTO voip_calls (account_id, call_id, voip_account_id, from_number, to_number, status, started_at,
                                 created_at, updated_at)
         VALUES ($1, 'broken', 'va', '+1', '+2', 'ended', 0, 0, 0)",
    )
    .bind(a.get())
    .execute(db.store.pool())
    .await
    .unwrap();
    let job = queue.claim(T0, 1, UNCAPPED).await.unwrap().pop().unwrap();
    let parked = queue.fail(&job, &JobError::Park { error: "Kommo suspended access".into() }, T0).await.unwrap();
    assert_eq!(parked, Outcome::Parked);
    let park_ms = PARK_DELAY.as_millis() as i64;
    let job = queue.claim(T0 + 1, 1, UNCAPPED).await.unwrap().pop().unwrap();
    assert_eq!(job.subject, "broken");
    let dead = queue.fail(&job, &JobError::Fail { error: "unreadable event".into() }, T0 + 1).await.unwrap();
    assert_eq!(dead, Outcome::Dead);
    let delivery: (String, String) =
        sqlx::query_as("SELECT delivery_status, delivery_error FROM voip_calls WHERE call_id = 'broken'")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    assert_eq!(delivery, ("failed".to_owned(), "unreadable event".to_owned()), "the dead letter's call shows failed");
    assert!(queue.claim(T0 + park_ms - 1, 1, UNCAPPED).await.unwrap().is_empty(), "parked for its delay");
    let again = queue.claim(T0 + park_ms, 1, UNCAPPED).await.unwrap().pop().unwrap();
    assert_eq!((again.subject.as_str(), again.attempts), ("parked", 1), "parking refunded the attempt");
}

#[tokio::test]
async fn the_worker_runs_every_job_once_and_records_each_outcome() {
    let db = db().await;
    let accounts = [account(&db.store, 1).await, account(&db.store, 2).await];
    let queue = Queue::new(&db.store, "worker-test");
    for (index, account) in accounts.iter().enumerate() {
        for call in 0..10 {
            queue.enqueue(*account, KIND_CALL, &format!("a{index}-call-{call}"), 0).await.unwrap();
        }
    }
    queue.enqueue(accounts[0], KIND_CALL, "always-fails", 0).await.unwrap();
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler: Handler = {
        let runs = runs.clone();
        Arc::new(move |job: Job| {
            let runs = runs.clone();
            Box::pin(async move {
                *runs.lock().unwrap().entry(job.subject.clone()).or_default() += 1;
                if job.subject == "always-fails" {
                    return Err(JobError::Fail { error: "Kommo refused the request (400)".into() });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            })
        })
    };
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let worker = Worker { queue: queue.clone(), handler, concurrency: 4, slots_per_account: 2, wake: wake.clone() };
    let running = tokio::spawn(worker.run(shutdown.clone()));
    wake.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        if open == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 21);
    assert!(runs.values().all(|&count| count == 1), "{runs:?}");
    let dead = queue.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.iter().map(|letter| letter.subject.as_str()).collect::<Vec<_>>(), ["always-fails"]);
}

#[tokio::test]
async fn a_job_whose_handler_panics_loses_its_lease_and_runs_again_after_a_backoff() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let queue = Queue::new(&db.store, "worker-test");
    queue.enqueue(a, KIND_CALL, "call-1", 0).await.unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let handler: Handler = {
        let runs = runs.clone();
        Arc::new(move |job: Job| {
            let runs = runs.clone();
            Box::pin(async move {
                runs.lock().unwrap().push(job.attempts);
                assert!(job.attempts > 1, "a bug met on the first attempt");
                Ok(())
            })
        })
    };
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let worker = Worker { queue: queue.clone(), handler, concurrency: 2, slots_per_account: 2, wake: wake.clone() };
    let running = tokio::spawn(worker.run(shutdown.clone()));
    wake.notify_one();
    let job = |store: &Store| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_as::<_, (String, i64, Option<i64>, Option<String>)>(
                "SELECT state, attempts, locked_until, last_error FROM jobs",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // The panic is recorded as a failure: the job waits for its backoff with no lease that a
    // heartbeat could keep alive (a job left `running` with a renewed lease would never run again).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let after_panic = loop {
        let row = job(&db.store).await;
        if !runs.lock().unwrap().is_empty() && row.0 != "running" {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the panicking job stayed running: {row:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(*runs.lock().unwrap(), [1], "not run again before its backoff");
    assert_eq!((after_panic.0.as_str(), after_panic.2), ("queued", None), "{after_panic:?}");
    assert!(after_panic.3.as_deref().is_some_and(|error| error.contains("panicked")), "{after_panic:?}");
    // ... and then it runs again, and succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let row = job(&db.store).await;
        if row.0 == "done" {
            assert_eq!(row.1, 2, "one failed attempt, one that succeeded");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job did not run again: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(*runs.lock().unwrap(), [1, 2]);
}

#[tokio::test]
async fn housekeeping_forgets_finished_work_and_keeps_everything_open() {
    let db = db().await;
    let a = account(&db.store, 1).await;
    let now = 1_800_000_000;
    let day = 24 * 3600;
    for (subject, state, age_days) in
        [("old-done", "done", 8), ("new-done", "done", 1), ("old-dead", "dead", 60), ("old-queued", "queued", 60)]
    {
        sqlx::query(
            "INSERT INTO jobs (account_id, kind, subject, state, run_at, created_at, updated_at)
             VALUES ($1, 'call', $2, $3, 0, 0, $4)",
        )
        .bind(a.get())
        .bind(subject)
        .bind(state)
        .bind((now - age_days * day) * 1000)
        .execute(db.store.pool())
        .await
        .unwrap();
    }
    // An event waiting for its call's queued job is kept however old; one that no job will ever fold (a
    // call that never ended) goes after the retention.
    for (webhook_id, call, applied_at) in
        [("old-applied", "c", Some(now - 31 * day)), ("old-pending", "old-queued", None), ("never-ended", "gone", None)]
    {
        sqlx::query(
            "INSERT INTO webhook_inbox (account_id, webhook_id, event_key, call_id, body, received_at, applied_at)
             VALUES ($1, $2, $2, $3, '{}', 0, $4)",
        )
        .bind(a.get())
        .bind(webhook_id)
        .bind(call)
        .bind(applied_at)
        .execute(db.store.pool())
        .await
        .unwrap();
    }
    let retention = server::config::Retention {
        finished: Duration::from_secs(90 * 24 * 3600),
        erase_disabled_after: Duration::from_secs(30 * 24 * 3600),
    };
    assert_eq!(db.store.housekeeping(now, &retention).await.unwrap(), 3);
    let jobs: Vec<String> =
        sqlx::query_scalar("SELECT subject FROM jobs ORDER BY id").fetch_all(db.store.pool()).await.unwrap();
    assert_eq!(jobs, ["new-done", "old-dead", "old-queued"]);
    let inbox: Vec<String> =
        sqlx::query_scalar("SELECT webhook_id FROM webhook_inbox").fetch_all(db.store.pool()).await.unwrap();
    assert_eq!(inbox, ["old-pending"], "an event not yet applied is never forgotten");
}
