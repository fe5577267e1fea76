//! The durable job queue: jobs are rows, claimed with a lease by one `UPDATE ... RETURNING`, so a
//! worker that dies (kill -9, a lost replica) leaves a lease that simply expires, and another worker
//! claims the job again. Failures back off exponentially with jitter, up to a bound; a job that keeps
//! failing, or fails permanently, is parked as a dead letter with its last error, visible to the
//! account's admin (widget) and to the operator, who can queue it again.
//!
//! Claiming is fair between accounts: one claim takes at most one job per account (the oldest due
//! one), and an account that already has its share of jobs running (`WORKER_SLOTS_PER_ACCOUNT`, counted
//! over every live worker of every replica) is skipped, so a noisy account cannot hold every worker
//! slot. Jobs of one subject (a call) never run at the same time: a subject with a live running job is
//! skipped.
//!
//! The claim is a single statement (`UPDATE jobs ... WHERE id IN (SELECT ...) RETURNING`), atomic on
//! SQLite; on PostgreSQL, where replicas claim at once, each account's pick is taken `FOR UPDATE SKIP
//! LOCKED` through a lateral join.

use std::time::Duration;

use rand::Rng;
use shared::api::FailedDelivery;
use sqlx::{AnyConnection, AnyPool};

use super::{AccountId, Engine, Store};

/// Bring Kommo in line with one provider call (subject = call id).
pub const KIND_CALL: &str = "call";
/// One step of an account's phone sync (subject empty: one per account), see `calls::index`.
pub const KIND_PHONE_SYNC: &str = "phone_sync";
/// Apply one Kommo webhook body to the phone index (subject = its `kommo_events` id).
pub const KIND_KOMMO_EVENT: &str = "kommo_event";

/// How long a claim holds a job before another worker may take it; the worker extends it every
/// third of this while the job runs.
pub const LEASE: Duration = Duration::from_secs(30);
/// A worker that has not claimed or beaten for this long is taken for gone: its running jobs no longer
/// count towards their account's share.
pub const WORKER_LIVENESS: Duration = Duration::from_secs(5);
/// Attempts before a job that keeps failing is parked as a dead letter.
pub const MAX_ATTEMPTS: i64 = 10;
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// How long a job waits when its account cannot be served at all (suspended, needs re-authorization,
/// turned off); no attempt is counted for it.
pub const PARK_DELAY: Duration = Duration::from_secs(5 * 60);

/// Why a job did not finish, which decides what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Transient (Kommo 5xx, timeouts, 429): try again after a backoff (or after `after`).
    #[error("{error}")]
    Retry { error: String, after: Option<Duration> },
    /// The account cannot be served now (402/403, needs re-authorization, not connected, turned off):
    /// wait long, count no attempt.
    #[error("{error}")]
    Park { error: String },
    /// Permanent (a malformed stored event, a request Kommo refuses as invalid): dead letter now.
    #[error("{error}")]
    Fail { error: String },
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub account_id: i64,
    pub kind: String,
    pub subject: String,
    /// Including this one.
    pub attempts: i64,
}

impl Job {
    pub fn account(&self) -> AccountId {
        AccountId(self.account_id)
    }
}

/// What happened to a job after it ran (also the `jobs_total{outcome}` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retried,
    Parked,
    Dead,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retried => "retry",
            Outcome::Parked => "parked",
            Outcome::Dead => "dead",
        }
    }
}

/// Counts of the queue for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub queued: i64,
    pub due: i64,
    pub running: i64,
    pub dead: i64,
    /// Age of the oldest due job, milliseconds (0 when none is due).
    pub oldest_due_ms: i64,
}

/// The queue over the store's pool. `worker` names this process's claims (`locked_by`).
#[derive(Debug, Clone)]
pub struct Queue {
    pool: AnyPool,
    engine: Engine,
    worker: String,
}

/// The claim on SQLite: one statement, atomic under SQLite's single writer. (Both claims count an
/// account's share over every worker that is alive: see [`Queue::claim`].)
const CLAIM_SQLITE: &str =
    "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1,
                         updated_at = $3
         WHERE state = 'queued' AND id IN (
             SELECT pick FROM (
                 SELECT (SELECT j.id FROM jobs AS j
                         WHERE j.account_id = a.id AND j.state = 'queued' AND j.run_at <= $3
                           AND NOT EXISTS (
                               SELECT 1 FROM jobs AS r
                               WHERE r.account_id = j.account_id AND r.state = 'running'
                                 AND r.kind = j.kind AND r.subject = j.subject)
                         ORDER BY j.run_at, j.id LIMIT 1) AS pick
                 FROM accounts AS a
                 WHERE (SELECT COUNT(*) FROM (
                            SELECT 1 FROM jobs AS r JOIN workers AS w ON w.id = r.locked_by
                            WHERE r.account_id = a.id AND r.state = 'running' AND r.locked_until >= $3
                              AND w.seen_at_ms >= $6
                            LIMIT $5)) < $5)
             WHERE pick IS NOT NULL
             ORDER BY (SELECT run_at FROM jobs WHERE id = pick)
             LIMIT $4)
         RETURNING id, account_id, kind, subject, attempts";

/// The claim on PostgreSQL, where replicas claim at the same moment: each account's pick is locked
/// `FOR UPDATE SKIP LOCKED` (a row another replica is claiming is passed over, never waited for), and
/// the outer `state = 'queued'` is checked again on the row as it is when locked, so a job another
/// replica claimed meanwhile is not claimed twice.
const CLAIM_POSTGRES: &str =
    "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1,
                         updated_at = $3
         WHERE state = 'queued' AND id IN (
             SELECT pick.id FROM accounts AS a
             CROSS JOIN LATERAL (
                 SELECT j.id, j.run_at FROM jobs AS j
                 WHERE j.account_id = a.id AND j.state = 'queued' AND j.run_at <= $3
                   AND NOT EXISTS (
                       SELECT 1 FROM jobs AS r
                       WHERE r.account_id = j.account_id AND r.state = 'running'
                         AND r.kind = j.kind AND r.subject = j.subject)
                 ORDER BY j.run_at, j.id LIMIT 1
                 FOR UPDATE SKIP LOCKED) AS pick
             WHERE (SELECT COUNT(*) FROM (
                        SELECT 1 FROM jobs AS r JOIN workers AS w ON w.id = r.locked_by
                        WHERE r.account_id = a.id AND r.state = 'running' AND r.locked_until >= $3
                          AND w.seen_at_ms >= $6
                        LIMIT $5) AS busy) < $5
             ORDER BY pick.run_at
             LIMIT $4)
         RETURNING id, account_id, kind, subject, attempts";

/// The delay before attempt `attempts + 1`: exponential from [`BACKOFF_BASE`], capped, with jitter
/// over its upper half (so retries of many jobs spread out, yet never come much earlier than planned).
pub fn backoff(attempts: i64, rng: &mut impl Rng) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 30) - 1).unwrap_or(0);
    let full = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(exponent)).min(BACKOFF_CAP);
    let half = full / 2;
    half + half.mul_f64(rng.random::<f64>())
}

impl Queue {
    pub fn new(store: &Store, worker: impl Into<String>) -> Queue {
        Queue { pool: store.pool.clone(), engine: store.engine, worker: worker.into() }
    }

    /// Claims up to `limit` due jobs: each account's longest-waiting one (none whose call is running),
    /// the accounts that waited longest first, skipping accounts that have `per_account` jobs running
    /// already, counted over every worker of every replica that is alive (one that claimed or beat
    /// within [`WORKER_LIVENESS`]): replicas together hold the per-account share, and a replica that was
    /// killed stops holding it within seconds (its jobs themselves come back when their lease passes,
    /// through [`Queue::recover_expired`]). Each account's pick is one lookup in the
    /// `(account_id, state, run_at)` index, and its running count a scan of that index bounded by
    /// `per_account`, so a claim costs the same with ten due jobs or a hundred thousand, and a noisy
    /// account's backlog never hides a quiet account's job nor holds all the slots. The claim first
    /// records this worker as alive.
    pub async fn claim(&self, now: i64, limit: i64, per_account: i64) -> sqlx::Result<Vec<Job>> {
        let lease_until = now + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        self.beat(now).await?;
        let statement = match self.engine {
            Engine::Sqlite => CLAIM_SQLITE,
            Engine::Postgres => CLAIM_POSTGRES,
        };
        sqlx::query_as(statement)
            .bind(&self.worker)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .bind(per_account.max(1))
            .bind(now - millis(WORKER_LIVENESS))
            .fetch_all(&self.pool)
            .await
    }

    /// Records that this worker is alive at `now` (unix ms); the worker beats every second.
    pub async fn beat(&self, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO workers (id, seen_at_ms) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET seen_at_ms = excluded.seen_at_ms",
        )
        .bind(&self.worker)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Puts back in the queue the running jobs whose lease passed (their worker died or hung): as
    /// queued, or closed when the same call already has a queued job (which then does the work).
    /// Returns how many came back.
    pub async fn recover_expired(&self, now: i64) -> sqlx::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let superseded = sqlx::query(
            "UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, updated_at = $1,
                             last_error = 'lease expired; a newer job of the call does the work'
             WHERE state = 'running' AND locked_until < $1
               AND EXISTS (SELECT 1 FROM jobs AS q WHERE q.state = 'queued' AND q.account_id = jobs.account_id
                             AND q.kind = jobs.kind AND q.subject = jobs.subject)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let requeued = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $1, locked_by = NULL, locked_until = NULL, updated_at = $1,
                             last_error = 'lease expired: its worker stopped'
             WHERE state = 'running' AND locked_until < $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(superseded + requeued)
    }

    /// Extends the lease of a job this worker still holds; false when it lost it.
    pub async fn heartbeat(&self, job: &Job, now: i64) -> sqlx::Result<bool> {
        let lease_until = now + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let done =
            sqlx::query("UPDATE jobs SET locked_until = $1 WHERE id = $2 AND state = 'running' AND locked_by = $3")
                .bind(lease_until)
                .bind(job.id)
                .bind(&self.worker)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn complete(&self, job: &Job, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, last_error = NULL, updated_at = $1
             WHERE id = $2 AND state = 'running' AND locked_by = $3",
        )
        .bind(now)
        .bind(job.id)
        .bind(&self.worker)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Records a failure and decides the job's fate; returns the outcome.
    pub async fn fail(&self, job: &Job, error: &JobError, now: i64) -> sqlx::Result<Outcome> {
        let (outcome, run_at, refund) = match error {
            JobError::Fail { .. } => (Outcome::Dead, now, 0),
            JobError::Retry { .. } if job.attempts >= MAX_ATTEMPTS => (Outcome::Dead, now, 0),
            JobError::Retry { after, .. } => {
                let delay = backoff(job.attempts, &mut rand::rng()).max(after.unwrap_or_default());
                (Outcome::Retried, now + millis(delay), 0)
            }
            JobError::Park { .. } => (Outcome::Parked, now + millis(PARK_DELAY), 1),
        };
        let message = truncate(&error.to_string());
        let mut tx = self.pool.begin().await?;
        if outcome == Outcome::Dead {
            sqlx::query(
                "UPDATE jobs SET state = 'dead', locked_by = NULL, locked_until = NULL, last_error = $1, updated_at = $2
                 WHERE id = $3 AND state = 'running' AND locked_by = $4",
            )
            .bind(&message)
            .bind(now)
            .bind(job.id)
            .bind(&self.worker)
            .execute(&mut *tx)
            .await?;
            if job.kind == KIND_CALL {
                sqlx::query(
                    "UPDATE voip_calls SET delivery_status = 'failed', delivery_error = $1, updated_at = $2
                     WHERE account_id = $3 AND call_id = $4 AND delivery_status <> 'delivered'",
                )
                .bind(&message)
                .bind(now / 1000)
                .bind(job.account_id)
                .bind(&job.subject)
                .execute(&mut *tx)
                .await?;
            }
        } else {
            requeue(&mut tx, job.id, Some(&self.worker), run_at, refund, &message, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Queues a job for `subject` unless one is already queued (then that one covers it).
    pub async fn enqueue(&self, account: AccountId, kind: &str, subject: &str, now: i64) -> sqlx::Result<()> {
        let mut connection = self.pool.acquire().await?;
        enqueue(&mut connection, account, kind, subject, now).await
    }

    /// The dead letters of one account's calls (or of every account and kind, for the operator), newest
    /// first. (A phone sync that gave up is queued again by its schedule; it is no delivery of the admin's.)
    pub async fn dead_letters(&self, account: Option<AccountId>, limit: i64) -> sqlx::Result<Vec<DeadLetter>> {
        sqlx::query_as(
            "SELECT id, account_id, subject, attempts, last_error, updated_at FROM jobs
             WHERE state = 'dead' AND ($1 IS NULL OR (account_id = $1 AND kind = 'call'))
             ORDER BY updated_at DESC, id DESC LIMIT $2",
        )
        .bind(account.map(|account| account.0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Queues a dead letter again with fresh attempts. `account` restricts it to one account (the
    /// widget); the operator passes `None`. False when there is no such dead letter.
    pub async fn retry_dead(&self, account: Option<AccountId>, id: i64, now: i64) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE id = $1 AND state = 'dead' AND ($2 IS NULL OR account_id = $2)",
        )
        .bind(id)
        .bind(account.map(|account| account.0))
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query("UPDATE jobs SET attempts = 0 WHERE id = $1").bind(id).execute(&mut *tx).await?;
        requeue(&mut tx, id, None, now, 0, "queued again by hand", now).await?;
        sqlx::query(
            "UPDATE voip_calls SET delivery_status = 'pending', delivery_error = NULL
             WHERE (account_id, call_id) IN (SELECT account_id, subject FROM jobs WHERE id = $1 AND kind = $2)
               AND delivery_status = 'failed'",
        )
        .bind(id)
        .bind(KIND_CALL)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn depth(&self, now: i64) -> sqlx::Result<QueueDepth> {
        let (queued, due, running, dead, oldest): (i64, i64, i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(CASE WHEN state = 'queued' THEN 1 END),
                    COUNT(CASE WHEN state = 'queued' AND run_at <= $1 THEN 1 END),
                    COUNT(CASE WHEN state = 'running' THEN 1 END),
                    COUNT(CASE WHEN state = 'dead' THEN 1 END),
                    MIN(CASE WHEN state = 'queued' AND run_at <= $1 THEN run_at END)
             FROM jobs WHERE state <> 'done'",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth { queued, due, running, dead, oldest_due_ms: oldest.map_or(0, |at| (now - at).max(0)) })
    }
}

/// A parked job as the widget and the operator see it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub account_id: i64,
    pub subject: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl DeadLetter {
    pub fn view(&self) -> FailedDelivery {
        FailedDelivery {
            id: self.id,
            call_id: self.subject.clone(),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_error: self.last_error.clone(),
            failed_at: self.updated_at / 1000,
        }
    }
}

/// Inserts a queued job unless one is queued for the subject already (the partial unique index).
pub async fn enqueue(
    executor: &mut AnyConnection,
    account: AccountId,
    kind: &str,
    subject: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO jobs (account_id, kind, subject, state, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, 'queued', $4, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(account.0)
    .bind(kind)
    .bind(subject)
    .bind(now)
    .execute(executor)
    .await
    .map(drop)
}

/// [`enqueue`] for several subjects in one statement.
pub(crate) async fn enqueue_many(
    executor: &mut AnyConnection,
    subjects: &[(AccountId, &str)],
    kind: &str,
    now: i64,
) -> sqlx::Result<()> {
    let mut sql = String::from("INSERT INTO jobs (account_id, kind, subject, state, run_at, created_at, updated_at) ");
    super::push_values(&mut sql, subjects.len(), 7);
    sql.push_str(" ON CONFLICT DO NOTHING");
    let mut query = sqlx::query(&sql);
    for (account, subject) in subjects {
        query = query.bind(account.0).bind(kind).bind(*subject).bind("queued").bind(now).bind(now).bind(now);
    }
    query.execute(executor).await.map(drop)
}

/// Puts job `id` back in the queue at `run_at`. When another job of the same subject is queued
/// already (an event arrived while this one ran), that one will do the work: this one is closed, and
/// the other is moved no earlier than `run_at`, so a backoff is not skipped.
async fn requeue(
    tx: &mut AnyConnection,
    id: i64,
    worker: Option<&str>,
    run_at: i64,
    refund: i64,
    error: &str,
    now: i64,
) -> sqlx::Result<()> {
    let moved = sqlx::query(
        "UPDATE jobs SET state = 'queued', run_at = $1, attempts = CASE WHEN attempts > $2 THEN attempts - $2 ELSE 0 END, locked_by = NULL,
                         locked_until = NULL, last_error = $3, updated_at = $4
         WHERE id = $5 AND ($6 IS NULL OR (state = 'running' AND locked_by = $6))
           AND NOT EXISTS (SELECT 1 FROM jobs AS q WHERE q.state = 'queued' AND q.account_id = jobs.account_id
                             AND q.kind = jobs.kind AND q.subject = jobs.subject)",
    )
    .bind(run_at)
    .bind(refund)
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE jobs SET run_at = CASE WHEN run_at > $1 THEN run_at ELSE $1 END, last_error = $2, updated_at = $3
         WHERE state = 'queued' AND (account_id, kind, subject) IN (SELECT account_id, kind, subject FROM jobs WHERE id = $4)",
    )
    .bind(run_at)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, updated_at = $1
         WHERE id = $2 AND ($3 IS NULL OR locked_by = $3 OR state = 'dead')",
    )
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(&mut *tx)
    .await
    .map(drop)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Errors are stored for people to read; a bounded length keeps a runaway message out of the table.
fn truncate(message: &str) -> String {
    const MAX: usize = 500;
    match message.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_stays_capped() {
        let mut rng = rand::rng();
        for attempts in 1..=12 {
            let full = BACKOFF_BASE.saturating_mul(2u32.pow(u32::try_from(attempts - 1).unwrap())).min(BACKOFF_CAP);
            for _ in 0..50 {
                let delay = backoff(attempts, &mut rng);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempts}: {delay:?} outside {full:?}/2..{full:?}"
                );
            }
        }
        assert!(backoff(100, &mut rng) <= BACKOFF_CAP);
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), 501);
        assert_eq!(truncate("short"), "short");
    }
}
