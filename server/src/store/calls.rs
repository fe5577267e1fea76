//! Calls: what the worker folds from provider events into `voip_calls`, the Kommo write ledger
//! (`kommo_writes`), the managers' call results, and the delivery columns.

use sqlx::FromRow;

use super::{AccountId, Flag, Store};
use crate::clock::unix_secs;

/// Who a call concerns, as far as the server knows it yet: its client's number (as the provider sent
/// it), its extension, the user it was assigned to, and the entity it landed on in Kommo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallParties {
    pub client_number: String,
    pub extension: Option<String>,
    pub responsible_user_id: Option<i64>,
    pub entity: Option<(String, i64)>,
}

impl Store {
    /// Stores the manager's call result and queues the call's job, in one transaction. False when the
    /// call has a result already.
    pub async fn insert_call_result(
        &self,
        account: AccountId,
        call_id: &str,
        result_json: &str,
        user_id: i64,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO call_results (account_id, call_id, result, user_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(result_json)
        .bind(user_id)
        .bind(now_ms / 1000)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            super::jobs::enqueue(&mut tx, account, super::jobs::KIND_CALL, call_id, now_ms).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Who the call `call_id` concerns (see [`CallParties`]); `None` when the account has no such call.
    /// Before the worker folded the call, its stored provider events tell.
    pub async fn call_parties(&self, account: AccountId, call_id: &str) -> sqlx::Result<Option<CallParties>> {
        // The worker's fold keeps the client's number (in E.164 with the account's country).
        #[derive(FromRow)]
        struct Folded {
            client_number: String,
            extension: Option<String>,
            responsible_user_id: Option<i64>,
            entity_type: Option<String>,
            entity_id: Option<i64>,
        }
        let folded: Option<Folded> = sqlx::query_as(
            "SELECT client_number, extension, responsible_user_id, entity_type, entity_id
             FROM voip_calls WHERE account_id = $1 AND call_id = $2 AND client_number IS NOT NULL",
        )
        .bind(account.0)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(call) = folded {
            return Ok(Some(CallParties {
                client_number: call.client_number,
                extension: call.extension,
                responsible_user_id: call.responsible_user_id,
                entity: call.entity_type.zip(call.entity_id),
            }));
        }
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM webhook_inbox WHERE account_id = $1 AND call_id = $2 ORDER BY id LIMIT 50",
        )
        .bind(account.0)
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        let events: Vec<shared::FromWebhook> =
            bodies.iter().filter_map(|body| serde_json::from_str(body).ok()).collect();
        let Some(first) = events.first() else {
            return Ok(None);
        };
        // As the fold will read them: the latest direction given, inbound until one is.
        let direction = events.iter().rev().find_map(|event| event.direction).unwrap_or(shared::CallDirection::Inbound);
        Ok(Some(CallParties {
            client_number: direction.client_and_line(&first.from, &first.to).0.to_owned(),
            extension: events.iter().rev().find_map(|event| event.extension.clone()),
            ..CallParties::default()
        }))
    }
}

/// A call as `voip_calls` holds it (what the fold starts from).
#[derive(Debug, Clone, FromRow)]
pub struct StoredCall {
    pub voip_account_id: String,
    pub from_number: String,
    pub to_number: String,
    pub direction: Option<String>,
    pub extension: Option<String>,
    pub status: String,
    #[sqlx(try_from = "Flag")]
    pub answered: bool,
    pub started_at: i64,
    pub duration: Option<i64>,
    pub recording_url: Option<String>,
}

/// What a fold writes back to `voip_calls`.
pub struct CallWrite<'a> {
    pub voip_account_id: &'a str,
    pub from_number: &'a str,
    pub to_number: &'a str,
    pub direction: &'a str,
    pub extension: Option<&'a str>,
    pub status: &'a str,
    pub answered: bool,
    pub started_at: i64,
    pub duration: Option<u32>,
    pub recording_url: Option<&'a str>,
    /// In E.164 with the account's country when it parses.
    pub client_number: &'a str,
}

/// One Kommo write's recovery point, as stored: `done` false means `sending` (the outcome of the
/// request is unknown).
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub key: String,
    pub done: bool,
    /// Kommo's answer worth keeping, as the calls module serialized it.
    pub outcome: Option<String>,
}

/// What a processing run learned about a call's delivery (`None` leaves a column as it is).
pub struct DeliveryUpdate<'a> {
    /// `delivered` or `skipped`; a delivered call stays delivered.
    pub status: Option<&'a str>,
    pub error: Option<&'a str>,
    pub entity: Option<(&'a str, i64)>,
    pub unsorted_uid: Option<&'a str>,
    pub kommo_call_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    /// Kommo's call_status from the manager's result.
    pub call_status: Option<i64>,
}

/// The fold of one call's new provider events, in one transaction: take the unapplied inbox rows,
/// read the call's row, write it back, commit. Dropped without [`FoldTx::commit`], nothing changed.
pub struct FoldTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    account: AccountId,
    call_id: String,
    now: i64,
}

impl FoldTx {
    /// Marks the call's unapplied events applied and returns them (id, body) in id order. The write
    /// comes first, so on SQLite the transaction holds the write lock from its first statement, and
    /// on PostgreSQL the rows are locked against another replica's fold.
    pub async fn take_unapplied(&mut self) -> sqlx::Result<Vec<(i64, String)>> {
        let mut events: Vec<(i64, String)> = sqlx::query_as(
            "UPDATE webhook_inbox SET applied_at = $3
             WHERE account_id = $1 AND call_id = $2 AND applied_at IS NULL
             RETURNING id, body",
        )
        .bind(self.account.0)
        .bind(&self.call_id)
        .bind(self.now)
        .fetch_all(&mut *self.tx)
        .await?;
        events.sort_by_key(|(id, _)| *id);
        Ok(events)
    }

    pub async fn call(&mut self) -> sqlx::Result<Option<StoredCall>> {
        sqlx::query_as(
            "SELECT voip_account_id, from_number, to_number, direction, extension, status,
                    CASE WHEN answered THEN 1 ELSE 0 END AS answered, started_at, duration, recording_url
             FROM voip_calls WHERE account_id = $1 AND call_id = $2",
        )
        .bind(self.account.0)
        .bind(&self.call_id)
        .fetch_optional(&mut *self.tx)
        .await
    }

    pub async fn save(&mut self, call: &CallWrite<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO voip_calls (account_id, call_id, voip_account_id, from_number, to_number, direction, extension,
                                     status, answered, started_at, duration, recording_url, client_number,
                                     created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
             ON CONFLICT (account_id, call_id) DO UPDATE
                SET direction = excluded.direction, extension = excluded.extension, status = excluded.status,
                    answered = excluded.answered, duration = excluded.duration,
                    recording_url = excluded.recording_url, client_number = excluded.client_number,
                    updated_at = excluded.updated_at",
        )
        .bind(self.account.0)
        .bind(&self.call_id)
        .bind(call.voip_account_id)
        .bind(call.from_number)
        .bind(call.to_number)
        .bind(call.direction)
        .bind(call.extension)
        .bind(call.status)
        .bind(call.answered)
        .bind(call.started_at)
        .bind(call.duration.map(i64::from))
        .bind(call.recording_url)
        .bind(call.client_number)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await
        .map(drop)
    }

    pub async fn commit(self) -> sqlx::Result<()> {
        self.tx.commit().await
    }
}

impl Store {
    /// How many calls with the client number `e164` of `account` this server handled (folded), other
    /// than `call_id`: what the popup says of a caller's history.
    pub async fn count_earlier_calls(&self, account: AccountId, e164: &str, call_id: &str) -> sqlx::Result<u32> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM voip_calls WHERE account_id = $1 AND client_number = $2 AND call_id <> $3",
        )
        .bind(account.0)
        .bind(e164)
        .bind(call_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Starts the fold of `call_id` (see [`FoldTx`]); `now` is unix seconds.
    pub async fn begin_fold(&self, account: AccountId, call_id: &str, now: i64) -> sqlx::Result<FoldTx> {
        Ok(FoldTx { tx: self.pool.begin().await?, account, call_id: call_id.to_owned(), now })
    }

    /// Every recovery point of one call.
    pub async fn ledger(&self, account: AccountId, call_id: &str) -> sqlx::Result<Vec<LedgerRow>> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT action_key, state, outcome FROM kommo_writes WHERE account_id = $1 AND call_id = $2",
        )
        .bind(account.0)
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(key, state, outcome)| LedgerRow { key, done: state == "done", outcome }).collect())
    }

    /// Records that the write `key` is about to leave (attempts + 1), committed before the request.
    pub async fn ledger_mark_sending(&self, account: AccountId, call_id: &str, key: &str) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_writes (account_id, call_id, action_key, state, attempts, updated_at)
             VALUES ($1, $2, $3, 'sending', 1, $4)
             ON CONFLICT (account_id, call_id, action_key) DO UPDATE
                SET state = 'sending', attempts = kommo_writes.attempts + 1, updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(key)
        .bind(unix_secs())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Records that Kommo has the write `key`, with what it answered.
    pub async fn ledger_mark_done(
        &self,
        account: AccountId,
        call_id: &str,
        key: &str,
        outcome: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_writes (account_id, call_id, action_key, state, outcome, attempts, updated_at)
             VALUES ($1, $2, $3, 'done', $4, 0, $5)
             ON CONFLICT (account_id, call_id, action_key) DO UPDATE
                SET state = 'done', outcome = excluded.outcome, updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(key)
        .bind(outcome)
        .bind(unix_secs())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Forgets a write Kommo certainly did not perform.
    pub async fn ledger_forget(&self, account: AccountId, call_id: &str, key: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM kommo_writes WHERE account_id = $1 AND call_id = $2 AND action_key = $3")
            .bind(account.0)
            .bind(call_id)
            .bind(key)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The manager's call result (`shared::rules::CallResult` JSON), if one was given.
    pub async fn call_result(&self, account: AccountId, call_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT result FROM call_results WHERE account_id = $1 AND call_id = $2")
            .bind(account.0)
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn record_delivery(
        &self,
        account: AccountId,
        call_id: &str,
        update: DeliveryUpdate<'_>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE voip_calls
                SET delivery_status = CASE
                        WHEN $3 IS NULL THEN delivery_status
                        WHEN delivery_status = 'delivered' THEN 'delivered'
                        ELSE $3 END,
                    delivery_error = CASE WHEN $3 IS NULL THEN delivery_error ELSE $4 END,
                    delivered_at = CASE WHEN $3 = 'delivered' THEN COALESCE(delivered_at, $5) ELSE delivered_at END,
                    entity_type = COALESCE($6, entity_type),
                    entity_id = COALESCE($7, entity_id),
                    unsorted_uid = COALESCE($8, unsorted_uid),
                    kommo_call_id = COALESCE($9, kommo_call_id),
                    responsible_user_id = COALESCE($10, responsible_user_id),
                    call_result = COALESCE($11, call_result),
                    updated_at = $5
              WHERE account_id = $1 AND call_id = $2",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(update.status)
        .bind(update.error)
        .bind(unix_secs())
        .bind(update.entity.map(|(kind, _)| kind))
        .bind(update.entity.map(|(_, id)| id))
        .bind(update.unsorted_uid)
        .bind(update.kommo_call_id)
        .bind(update.responsible_user_id)
        .bind(update.call_status)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Keeps the last error of a run (the delivery status is the queue's to change).
    pub async fn record_delivery_error(&self, account: AccountId, call_id: &str, error: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE voip_calls SET delivery_error = $3, updated_at = $4 WHERE account_id = $1 AND call_id = $2")
            .bind(account.0)
            .bind(call_id)
            .bind(error)
            .bind(unix_secs())
            .execute(&self.pool)
            .await
            .map(drop)
    }
}
