//! The inbox of provider webhooks (`webhook_inbox`): every event we answered 200, stored before the
//! answer, once (a repeated `webhook-id` or the same provider event under a new id is a duplicate).

use std::collections::HashSet;

use sqlx::AnyConnection;

use super::jobs::{self, KIND_CALL};
use super::{AccountId, Engine, Store};
use crate::clock::unix_millis;

/// One verified provider event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub account: AccountId,
    pub webhook_id: String,
    pub event_key: String,
    pub call_id: String,
    pub body: String,
    pub received_at: i64,
    /// Whether the event can change what goes to Kommo (the call ended, was missed, its recording is
    /// ready): only then does it queue the call's job. Events of a call still going on are folded by
    /// the job of its end, so a call costs one job, not one per event.
    pub queues_job: bool,
    /// The popup's event (serialized), sent on PostgreSQL with `NOTIFY` inside the same transaction,
    /// so every replica hears it at the commit and only if the event was stored new.
    pub popup: Option<String>,
}

/// Rows per `INSERT` statement: a batch is cut into pieces of these sizes (largest first), so the
/// engines' statement caches hold a handful of statement texts, not one per batch size.
const PIECES: [usize; 8] = [256, 128, 64, 32, 16, 8, 4, 1];

impl Store {
    /// Inserts the events, queues the job of each call a new event ended (`queues_job`), and on
    /// PostgreSQL notifies the new events' popups, in one transaction; returns, per event, whether it
    /// was new (false: a duplicate, nothing written for it).
    pub async fn insert_events(&self, events: &[NewEvent]) -> sqlx::Result<Vec<bool>> {
        let mut tx = self.pool.begin().await?;
        let mut inserted: HashSet<(i64, String)> = HashSet::with_capacity(events.len());
        let mut rest = events;
        while !rest.is_empty() {
            let size = PIECES.into_iter().find(|&size| size <= rest.len()).unwrap_or(1);
            let (piece, tail) = rest.split_at(size);
            inserted.extend(insert_piece(&mut tx, piece).await?);
            rest = tail;
        }

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
            .filter(|(event, is_new)| **is_new && event.queues_job)
            .map(|(event, _)| (event.account, event.call_id.as_str()))
            .collect();
        calls.sort_unstable();
        calls.dedup();
        let now = unix_millis();
        let mut rest = calls.as_slice();
        while !rest.is_empty() {
            let size = PIECES.into_iter().find(|&size| size <= rest.len()).unwrap_or(1);
            let (piece, tail) = rest.split_at(size);
            jobs::enqueue_many(&mut tx, piece, KIND_CALL, now).await?;
            rest = tail;
        }
        if self.engine == Engine::Postgres {
            let popups: Vec<(AccountId, &str)> = events
                .iter()
                .zip(&new)
                .filter(|(_, is_new)| **is_new)
                .filter_map(|(event, _)| Some((event.account, event.popup.as_deref()?)))
                .collect();
            for payload in super::push::payloads(&popups) {
                super::push::notify(&mut tx, &payload).await?;
            }
        }
        tx.commit().await?;
        Ok(new)
    }
}

/// One multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING`; returns the (account, webhook id)
/// pairs it inserted.
async fn insert_piece(tx: &mut AnyConnection, events: &[NewEvent]) -> sqlx::Result<Vec<(i64, String)>> {
    let mut sql =
        String::from("INSERT INTO webhook_inbox (account_id, webhook_id, event_key, call_id, body, received_at) ");
    super::push_values(&mut sql, events.len(), 6);
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING account_id, webhook_id");
    let mut query = sqlx::query_as(&sql);
    for event in events {
        query = query
            .bind(event.account.0)
            .bind(event.webhook_id.as_str())
            .bind(event.event_key.as_str())
            .bind(event.call_id.as_str())
            .bind(event.body.as_str())
            .bind(event.received_at);
    }
    query.fetch_all(tx).await
}
