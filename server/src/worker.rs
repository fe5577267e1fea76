//! The worker: claims due jobs (fairly between accounts, at most `slots_per_account` of one account
//! running at once), runs up to `concurrency` of them at once, keeps their leases alive while they
//! run, and records each outcome (a handler that panics is a failure like any other, retried with
//! backoff). It wakes when the ingest path stored new jobs, when a job finishes, and on a short tick
//! (for retries whose time came).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock::unix_millis;
use crate::jobs::{Job, JobError, LEASE, Outcome, Queue};

/// Runs one job. Implemented by the call processor; tests pass closures.
pub type Handler = Arc<dyn Fn(Job) -> Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>> + Send + Sync>;

/// How often the worker looks for jobs whose lease expired.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// How often a worker with every slot busy says it is alive (see `jobs::WORKER_LIVENESS`).
const BEAT: Duration = Duration::from_secs(1);
/// How long the worker waits after being told of new jobs before it claims (a job finishing claims at
/// once): a few milliseconds on a popup-free path, and claims stay far fewer than commits.
const WAKE_SPACING: Duration = Duration::from_millis(20);
/// How often the worker looks for due retries when nothing woke it.
const TICK: Duration = Duration::from_millis(250);

pub struct Worker {
    pub queue: Queue,
    pub handler: Handler,
    pub concurrency: usize,
    /// Jobs of one account this worker runs at once, at most (`WORKER_SLOTS_PER_ACCOUNT`): one
    /// account's flood leaves the other slots to the others.
    pub slots_per_account: usize,
    /// Notified by the ingest path after it committed new jobs.
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Runs until `shutdown`; then lets running jobs finish (their leases cover a hard stop).
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let finished = Arc::new(Notify::new());
        let mut running = JoinSet::new();
        let mut next_recovery = tokio::time::Instant::now();
        let mut next_beat = tokio::time::Instant::now();
        loop {
            while running.try_join_next().is_some() {}
            if tokio::time::Instant::now() >= next_recovery {
                // Jobs of workers that died (kill -9, a lost replica) come back once their lease passed.
                match self.queue.recover_expired(unix_millis()).await {
                    Ok(0) => {}
                    Ok(count) => tracing::warn!(count, "jobs whose worker stopped are queued again"),
                    Err(error) => tracing::error!(%error, "recovering expired jobs failed"),
                }
                next_recovery = tokio::time::Instant::now() + RECOVERY_INTERVAL;
            }
            let free = slots.available_permits();
            if free == 0 && tokio::time::Instant::now() >= next_beat {
                // A claim says this worker is alive; with every slot busy, a beat says it instead, so its
                // running jobs keep counting towards their accounts' shares.
                if let Err(error) = self.queue.beat(unix_millis()).await {
                    tracing::warn!(%error, "recording the worker as alive failed");
                }
                next_beat = tokio::time::Instant::now() + BEAT;
            }
            let claimed = if free > 0 && !shutdown.is_cancelled() {
                let per_account = i64::try_from(self.slots_per_account).unwrap_or(i64::MAX);
                match self.queue.claim(unix_millis(), i64::try_from(free).unwrap_or(1), per_account).await {
                    Ok(jobs) => jobs,
                    Err(error) => {
                        tracing::error!(%error, "claiming jobs failed");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let claimed_any = !claimed.is_empty();
            for job in claimed {
                let permit = slots.clone().acquire_owned().await.expect("the worker's semaphore is never closed");
                let (queue, handler, finished) = (self.queue.clone(), self.handler.clone(), finished.clone());
                running.spawn(async move {
                    run_one(&queue, &handler, job).await;
                    drop(permit);
                    finished.notify_one();
                });
            }
            if claimed_any && slots.available_permits() > 0 {
                // There may be more due work (one job per account per claim): claim again at once.
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {
                    // New jobs arrive with every group commit, hundreds of times a second under load: claim at
                    // most every `WAKE_SPACING` for them, so claims do not crowd out the writes that store events.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = finished.notified() => {}
                        () = tokio::time::sleep(WAKE_SPACING) => {}
                    }
                }
                () = finished.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }
}

/// Aborts a task when dropped: the lease heartbeat ends with the job's run, however that ends (a
/// panic unwinding through `run_one`, a cancelled future), instead of keeping a dead job's lease alive.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `job` with a lease heartbeat, then records its outcome.
async fn run_one(queue: &Queue, handler: &Handler, job: Job) {
    let heartbeat = {
        let (queue, job) = (queue.clone(), job.clone());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                match queue.heartbeat(&job, unix_millis()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => tracing::warn!(%error, job.id = job.id, "extending a job's lease failed"),
                }
            }
        }))
    };
    // A panic is a bug met by this job's data (or a dependency's): recorded as a failure, so the job
    // backs off and ends as a dead letter if it keeps panicking, rather than staying `running`.
    let result = match AssertUnwindSafe(async { handler(job.clone()).await }).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(JobError::Retry { error: "the job's handler panicked".into(), after: None }),
    };
    drop(heartbeat);
    let now = unix_millis();
    let recorded = match &result {
        Ok(()) => queue.complete(&job, now).await.map(|()| Outcome::Done),
        Err(error) => queue.fail(&job, error, now).await,
    };
    match (recorded, result) {
        (Ok(outcome), result) => {
            metrics::counter!("jobs_total", "outcome" => outcome.as_str()).increment(1);
            match (outcome, result) {
                (Outcome::Done, _) => {
                    tracing::debug!(job.id = job.id, account.id = job.account_id, call.id = %job.subject, "job done");
                }
                (Outcome::Dead, Err(error)) => tracing::error!(
                    job.id = job.id, account.id = job.account_id, call.id = %job.subject, attempts = job.attempts,
                    %error, "job failed for good: parked as a dead letter"
                ),
                (outcome, Err(error)) => tracing::warn!(
                    job.id = job.id, account.id = job.account_id, call.id = %job.subject, attempts = job.attempts,
                    outcome = outcome.as_str(), %error, "job failed; it will run again"
                ),
                (_, Ok(())) => {}
            }
        }
        (Err(error), _) => {
            // The lease expires and another claim runs the job again.
            tracing::error!(%error, job.id = job.id, "recording a job's outcome failed");
        }
    }
}
