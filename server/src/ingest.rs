//! Group commit for provider webhooks: request handlers hand their verified event to one writer task,
//! which inserts (through [`Store::insert_events`]) whatever has queued up (inbox rows, and a job for each
//! call that ended) in ONE transaction, commits (on SQLite an fsync of the WAL under `synchronous = FULL`;
//! on PostgreSQL a WAL flush, with several writers whose commits overlap), then answers every handler. A
//! 200 therefore still means "on disk", while the cost of the commit is shared by every request that
//! arrived during the previous one.
//!
//! Duplicates (a repeated `webhook-id`, or the same provider event under a new id) are skipped by the
//! inbox's unique keys (`INSERT ... ON CONFLICT DO NOTHING`) and reported as such: stored once, 200.
//!
//! The writer's queue is shared by every account, so one account may hold at most
//! [`MAX_WAITING_PER_ACCOUNT`] of its places: a flood of one account's (signed) events is turned away
//! as that account's own problem (`AccountBusy`) long before the queue is full for everybody.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::inbox::NewEvent;
use crate::store::{AccountId, Engine, Store};

/// Events written per transaction at most (SQLite binds 6 values per row; far below its limit).
const MAX_BATCH: usize = 512;
/// Writer tasks on PostgreSQL: their transactions' round trips and commits overlap.
const POSTGRES_WRITERS: usize = 4;
/// Requests waiting for the writer before handlers are told to come back later (503).
const QUEUE_CAPACITY: usize = 8192;
/// Events of one account waiting for (or in) the writer at most: an eighth of the queue, so even
/// several flooding accounts leave room for the others.
pub const MAX_WAITING_PER_ACCOUNT: usize = QUEUE_CAPACITY / 8;

/// One verified provider event to store.
pub type Incoming = NewEvent;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Committed now, with this inbox id.
    New(i64),
    /// Already in the inbox (same webhook id or same provider event): nothing written.
    Duplicate,
}

/// Why an event could not be stored; the handler answers 503 (the provider should retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("the event store is busy")]
    Busy,
    /// The account has [`MAX_WAITING_PER_ACCOUNT`] events waiting already (its own flood).
    #[error("too many of the account's events are waiting to be stored")]
    AccountBusy,
    #[error("the event store is shutting down")]
    Closed,
    #[error("storing the event failed: {0}")]
    Database(String),
}

type Reply = oneshot::Sender<Result<Stored, IngestError>>;
type Receiver = mpsc::Receiver<(Incoming, Reply)>;

/// Events waiting per account; an account is absent when none waits.
type Waiting = Arc<Mutex<HashMap<AccountId, usize>>>;

/// One event's place in the per-account count, given back when dropped (answered, or dropped with
/// the queue), so the count cannot drift whatever happens to the event.
struct Place {
    waiting: Waiting,
    account: AccountId,
}

impl Place {
    fn take(waiting: &Waiting, account: AccountId) -> Option<Place> {
        let mut counts = waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(account).or_default();
        if *count >= MAX_WAITING_PER_ACCOUNT {
            return None;
        }
        *count += 1;
        Some(Place { waiting: waiting.clone(), account })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

/// The handle request handlers use; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    sender: mpsc::Sender<(Incoming, Reply)>,
    waiting: Waiting,
}

impl Ingestor {
    /// Starts the writer tasks: one on SQLite (one writer at a time anyway), [`POSTGRES_WRITERS`] on
    /// PostgreSQL, whose commits overlap. `stored` is notified after each commit that queued new jobs.
    pub fn start(store: &Store, stored: Arc<Notify>) -> Ingestor {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let writers = match store.engine() {
            Engine::Sqlite => 1,
            Engine::Postgres => POSTGRES_WRITERS,
        };
        for _ in 0..writers {
            tokio::spawn(writer(store.clone(), receiver.clone(), stored.clone()));
        }
        Ingestor { sender, waiting: Waiting::default() }
    }

    /// Stores `event` durably; returns once it is committed (or known to be a duplicate).
    pub async fn store(&self, event: Incoming) -> Result<Stored, IngestError> {
        let place = Place::take(&self.waiting, event.account).ok_or(IngestError::AccountBusy)?;
        let (reply, answer) = oneshot::channel();
        self.sender.try_send((event, reply)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => IngestError::Busy,
            mpsc::error::TrySendError::Closed(_) => IngestError::Closed,
        })?;
        let stored = answer.await.map_err(|_| IngestError::Closed)?;
        drop(place);
        stored
    }
}

async fn writer(store: Store, receiver: Arc<tokio::sync::Mutex<Receiver>>, stored: Arc<Notify>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when every handle is gone (the server stopped); what was queued is still written. The writer
    // that holds the receiver takes what queued up, then lets the next writer wait for more.
    while receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<Incoming>, Vec<Reply>) = batch.drain(..).unzip();
        let outcome = store.insert_events(&events).await;
        match outcome {
            Ok(new) => {
                if events.iter().zip(&new).any(|(event, id)| id.is_some() && event.queues_job) {
                    stored.notify_one();
                }
                for (reply, id) in replies.into_iter().zip(new) {
                    let _ = reply.send(Ok(id.map_or(Stored::Duplicate, Stored::New)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_holds_at_most_its_share_of_the_queue_and_gives_places_back() {
        let waiting = Waiting::default();
        let (flooder, other) = (AccountId::for_tests(1), AccountId::for_tests(2));
        let mut held: Vec<Place> =
            (0..MAX_WAITING_PER_ACCOUNT).map(|_| Place::take(&waiting, flooder).expect("within the share")).collect();
        assert!(Place::take(&waiting, flooder).is_none(), "the flooder's share is used up");
        let other_place = Place::take(&waiting, other).expect("another account still gets in");
        held.pop();
        assert!(Place::take(&waiting, flooder).is_some(), "an answered event gives its place back");
        drop(held);
        drop(other_place);
        assert!(waiting.lock().unwrap().is_empty(), "nothing is remembered for accounts with nothing waiting");
    }
}
