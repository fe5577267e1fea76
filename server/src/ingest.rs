//! Group commit for provider webhooks: request handlers hand their verified event to one writer task,
//! which inserts whatever has queued up (inbox rows and their jobs) in ONE transaction, commits (an
//! fsync of the WAL under `synchronous = FULL`), then answers every handler. A 200 therefore still
//! means "on disk", while the cost of the commit is shared by every request that arrived during the
//! previous one.
//!
//! Duplicates (a repeated `webhook-id`, or the same provider event under a new id) are skipped by the
//! inbox's unique keys (`INSERT ... ON CONFLICT DO NOTHING`) and reported as such: stored once, 200.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::jobs::{self, KIND_CALL};
use crate::store::{AccountId, Store};

/// Events written per transaction at most (SQLite binds 6 values per row; far below its limit).
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before handlers are told to come back later (503).
const QUEUE_CAPACITY: usize = 8192;

/// One verified provider event to store.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub account: AccountId,
    pub webhook_id: String,
    pub event_key: String,
    pub call_id: String,
    pub body: String,
    pub received_at: i64,
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Committed now; a job will process it.
    New,
    /// Already in the inbox (same webhook id or same provider event): nothing written.
    Duplicate,
}

/// Why an event could not be stored; the handler answers 503 (the provider should retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("the event store is busy")]
    Busy,
    #[error("the event store is shutting down")]
    Closed,
    #[error("storing the event failed: {0}")]
    Database(String),
}

type Reply = oneshot::Sender<Result<Stored, IngestError>>;

/// The handle request handlers use; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    sender: mpsc::Sender<(Incoming, Reply)>,
}

impl Ingestor {
    /// Starts the writer task. `stored` is notified after each commit that queued new jobs.
    pub fn start(store: &Store, stored: Arc<Notify>) -> Ingestor {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(writer(store.pool().clone(), receiver, stored));
        Ingestor { sender }
    }

    /// Stores `event` durably; returns once it is committed (or known to be a duplicate).
    pub async fn store(&self, event: Incoming) -> Result<Stored, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.sender.try_send((event, reply)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => IngestError::Busy,
            mpsc::error::TrySendError::Closed(_) => IngestError::Closed,
        })?;
        answer.await.map_err(|_| IngestError::Closed)?
    }
}

async fn writer(pool: SqlitePool, mut receiver: mpsc::Receiver<(Incoming, Reply)>, stored: Arc<Notify>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when every handle is gone (the server stopped); what was queued is still written.
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<Incoming>, Vec<Reply>) = batch.drain(..).unzip();
        let outcome = write_batch(&pool, &events).await;
        match outcome {
            Ok(new) => {
                if new.iter().any(|&is_new| is_new) {
                    stored.notify_one();
                }
                for (reply, is_new) in replies.into_iter().zip(new) {
                    let _ = reply.send(Ok(if is_new { Stored::New } else { Stored::Duplicate }));
                }
            }
            Err(error) => {
                tracing::error!(%error, events = events.len(), "storing provider events failed");
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Database(error.to_string())));
                }
            }
        }
    }
}

/// Inserts the batch in one transaction; returns, per event, whether it was new.
async fn write_batch(pool: &SqlitePool, events: &[Incoming]) -> sqlx::Result<Vec<bool>> {
    let mut tx = pool.begin().await?;
    let mut insert: QueryBuilder<Sqlite> =
        QueryBuilder::new("INSERT INTO webhook_inbox (account_id, webhook_id, event_key, call_id, body, received_at) ");
    insert.push_values(events, |mut row, event| {
        row.push_bind(event.account.0)
            .push_bind(&event.webhook_id)
            .push_bind(&event.event_key)
            .push_bind(&event.call_id)
            .push_bind(&event.body)
            .push_bind(event.received_at);
    });
    insert.push(" ON CONFLICT DO NOTHING RETURNING account_id, webhook_id");
    let inserted: HashSet<(i64, String)> = insert.build_query_as().fetch_all(&mut *tx).await?.into_iter().collect();

    // The first occurrence of an inserted (account, webhook id) is the new one; a copy of it in the
    // same batch is a duplicate like any other.
    let mut seen = HashSet::new();
    let new: Vec<bool> = events
        .iter()
        .map(|event| {
            let key = (event.account.0, event.webhook_id.clone());
            inserted.contains(&key) && seen.insert(key)
        })
        .collect();

    let mut calls: Vec<(AccountId, &str)> = events
        .iter()
        .zip(&new)
        .filter(|(_, is_new)| **is_new)
        .map(|(event, _)| (event.account, event.call_id.as_str()))
        .collect();
    calls.sort_unstable_by(|a, b| (a.0.0, a.1).cmp(&(b.0.0, b.1)));
    calls.dedup();
    if !calls.is_empty() {
        let now = jobs::now_ms();
        let mut enqueue: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO jobs (account_id, kind, subject, state, run_at, created_at, updated_at) ");
        enqueue.push_values(&calls, |mut row, (account, call_id)| {
            row.push_bind(account.0)
                .push_bind(KIND_CALL)
                .push_bind(*call_id)
                .push_bind("queued")
                .push_bind(now)
                .push_bind(now)
                .push_bind(now);
        });
        enqueue.push(" ON CONFLICT DO NOTHING");
        enqueue.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(new)
}
