//! The inbox of provider webhooks (`webhook_inbox`): every event we answered 200, stored before the
//! answer, once (a repeated `webhook-id` or the same provider event under a new id is a duplicate).

use std::collections::{HashMap, HashSet};

use shared::api::IncomingCall;
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
    /// The popup's event, sent on PostgreSQL with `NOTIFY` inside the same transaction (with its
    /// `event_id`, the inbox row's), so every replica hears it at the commit and only if the event was
    /// stored new.
    pub popup: Option<IncomingCall>,
}

/// Inbox rows a reconnecting push stream is sent again at most.
pub const MAX_REPLAY: i64 = 200;
/// How far past the last id a stream saw the replay looks: inbox ids of every account follow one
/// sequence, and the range keeps the read a bounded primary-key scan whatever id a client sends.
pub const REPLAY_SPAN: i64 = 50_000;
/// Rows read to find an account's calls in progress, newest first.
const MAX_PENDING_READ: i64 = 500;

/// Rows per `INSERT` statement: a batch is cut into pieces of these sizes (largest first), so the
/// engines' statement caches hold a handful of statement texts, not one per batch size.
const PIECES: [usize; 8] = [256, 128, 64, 32, 16, 8, 4, 1];

impl Store {
    /// Inserts the events, queues the job of each call a new event ended (`queues_job`), and on
    /// PostgreSQL notifies the new events' popups, in one transaction; returns, per event, its inbox
    /// id when it was new (`None`: a duplicate, nothing written for it).
    pub async fn insert_events(&self, events: &[NewEvent]) -> sqlx::Result<Vec<Option<i64>>> {
        let mut tx = self.pool.begin().await?;
        let mut inserted: HashMap<(i64, String), i64> = HashMap::with_capacity(events.len());
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
        let new: Vec<Option<i64>> = events
            .iter()
            .map(|event| {
                let key = (event.account.0, event.webhook_id.clone());
                let id = inserted.get(&key).copied();
                id.filter(|_| seen.insert(key))
            })
            .collect();

        let mut calls: Vec<(AccountId, &str)> = events
            .iter()
            .zip(&new)
            .filter(|(event, id)| id.is_some() && event.queues_job)
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
            let popups: Vec<(AccountId, String)> = events
                .iter()
                .zip(&new)
                .filter_map(|(event, id)| {
                    let mut popup = event.popup.clone()?;
                    popup.event_id = Some((*id)?);
                    Some((event.account, serde_json::to_string(&popup).expect("a call always serialises")))
                })
                .collect();
            let popups: Vec<(AccountId, &str)> =
                popups.iter().map(|(account, popup)| (*account, popup.as_str())).collect();
            for payload in super::push::payloads(&popups) {
                super::push::notify(&mut tx, &payload).await?;
            }
        }
        tx.commit().await?;
        Ok(new)
    }
}

/// One multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING`; returns the (account, webhook id)
/// pairs it inserted, with their ids.
async fn insert_piece(tx: &mut AnyConnection, events: &[NewEvent]) -> sqlx::Result<Vec<((i64, String), i64)>> {
    let mut sql =
        String::from("INSERT INTO webhook_inbox (account_id, webhook_id, event_key, call_id, body, received_at) ");
    super::push_values(&mut sql, events.len(), 6);
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING account_id, webhook_id, id");
    let mut query = sqlx::query_as::<_, (i64, String, i64)>(&sql);
    for event in events {
        query = query
            .bind(event.account.0)
            .bind(event.webhook_id.as_str())
            .bind(event.event_key.as_str())
            .bind(event.call_id.as_str())
            .bind(event.body.as_str())
            .bind(event.received_at);
    }
    let rows = query.fetch_all(tx).await?;
    Ok(rows.into_iter().map(|(account, webhook_id, id)| ((account, webhook_id), id)).collect())
}

/// An inbox row as the push stream replays it: its id, its call and the stored provider event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboxRow {
    pub id: i64,
    pub call_id: String,
    pub body: String,
}

impl Store {
    /// Binds the account's call `call_id` to what its event signed, unless an earlier event bound it; whether
    /// the event agrees with the binding: the same `signed` fields, and the same `line` where both name one
    /// (the first event that names a line fixes it). Two replicas binding at once agree on the first row.
    pub async fn bind_call(
        &self,
        account: AccountId,
        call_id: &str,
        signed: &str,
        line: Option<&str>,
        now: i64,
    ) -> sqlx::Result<bool> {
        sqlx::query(
            "INSERT INTO call_bindings (account_id, call_id, signed, line, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account_id, call_id) DO NOTHING",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(signed)
        .bind(line)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if let Some(line) = line {
            sqlx::query("UPDATE call_bindings SET line = $3 WHERE account_id = $1 AND call_id = $2 AND line IS NULL")
                .bind(account.0)
                .bind(call_id)
                .bind(line)
                .execute(&self.pool)
                .await?;
        }
        let (bound, bound_line): (String, Option<String>) =
            sqlx::query_as("SELECT signed, line FROM call_bindings WHERE account_id = $1 AND call_id = $2")
                .bind(account.0)
                .bind(call_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(bound == signed && (line.is_none() || bound_line.as_deref() == line))
    }

    /// The account's events stored after `after` (at most [`MAX_REPLAY`], within [`REPLAY_SPAN`] ids
    /// of it) and received since `since` (unix s), oldest first: what a reconnecting stream missed.
    pub async fn inbox_after(&self, account: AccountId, after: i64, since: i64) -> sqlx::Result<Vec<InboxRow>> {
        sqlx::query_as(
            "SELECT id, call_id, body FROM webhook_inbox
              WHERE id > $2 AND id <= $3 AND account_id = $1 AND received_at >= $4
              ORDER BY id LIMIT $5",
        )
        .bind(account.0)
        .bind(after)
        .bind(after.saturating_add(REPLAY_SPAN))
        .bind(since)
        .bind(MAX_REPLAY)
        .fetch_all(&self.pool)
        .await
    }

    /// The account's events not folded yet and received since `since` (unix s), newest first, at most
    /// a few hundred: the events of calls still in progress are among them (a call's events are
    /// folded when it ends).
    pub async fn unapplied_events(&self, account: AccountId, since: i64) -> sqlx::Result<Vec<InboxRow>> {
        sqlx::query_as(
            "SELECT id, call_id, body FROM webhook_inbox
              WHERE account_id = $1 AND applied_at IS NULL AND received_at >= $2
              ORDER BY id DESC LIMIT $3",
        )
        .bind(account.0)
        .bind(since)
        .bind(MAX_PENDING_READ)
        .fetch_all(&self.pool)
        .await
    }

    /// The largest inbox id so far (0 when empty): where a stream opened now starts.
    pub async fn last_inbox_id(&self) -> sqlx::Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM webhook_inbox").fetch_one(&self.pool).await?;
        Ok(id.unwrap_or(0))
    }
}
