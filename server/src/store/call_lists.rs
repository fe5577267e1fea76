//! Click-to-call and call lists: `dial_guards` (one call placed per user at a time), `call_lists` and
//! `call_list_entries` (a manager's list, where it stands, what happened to each entry). The rules of a
//! list (what may be dialled when) are `crate::dialer`'s; this module reads and writes the rows.
//!
//! A list changes by compare-and-set on `updated_at_ms`: read the list, decide, write back only if nobody
//! wrote it meanwhile (two tabs, two replicas). An entry's call is read through the call's own row
//! (`voip_calls`, folded from the provider's events) and its result (`call_results`), so a call that ended
//! before its id was written to the entry is still seen.

use sqlx::FromRow;

use super::{AccountId, Store};

/// Lists kept per user: making a new one deletes the oldest beyond this.
pub const LISTS_KEPT_PER_USER: i64 = 20;

/// A call list's row.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ListRow {
    pub id: i64,
    pub source: String,
    pub state: String,
    pub next_position: i64,
    pub current_position: Option<i64>,
    pub created_at: i64,
    pub updated_at_ms: i64,
}

/// An entry as stored, with what is known of its call.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EntryRow {
    pub position: i64,
    pub entity_id: i64,
    pub name: String,
    pub via: Option<String>,
    pub number: Option<String>,
    pub number_shown: Option<String>,
    pub state: String,
    pub call_id: Option<String>,
    pub dialed_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration: Option<i64>,
    pub error: Option<String>,
    /// The call's status, duration and last change (unix s) from `voip_calls`, once folded.
    pub call_status: Option<String>,
    pub call_duration: Option<i64>,
    pub call_updated_at: Option<i64>,
    /// When the manager's call result was recorded (unix ms), if it was.
    pub result_at_ms: Option<i64>,
}

/// An entry of a new list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub entity_id: i64,
    pub name: String,
    pub via: Option<String>,
    /// E.164 and for people; none: the entity has no number.
    pub number: Option<(String, String)>,
}

/// What a change writes to a list: its state, its positions and the entries that changed.
#[derive(Debug, Clone, Copy)]
pub struct ListWrite<'a> {
    pub state: &'a str,
    pub next_position: i64,
    pub current_position: Option<i64>,
    pub entries: &'a [EntryWrite],
}

/// What a change writes to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryWrite {
    pub position: i64,
    pub state: String,
    pub call_id: Option<String>,
    pub dialed_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration: Option<i64>,
    pub error: Option<String>,
}

impl Store {
    /// Takes the user's dial guard until `until_ms` when it is free (its hold passed). One statement, so
    /// two requests at once (a double click, two tabs, two replicas) never both get it.
    pub async fn take_dial_guard(
        &self,
        account: AccountId,
        user_id: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> sqlx::Result<bool> {
        let taken = sqlx::query(
            "INSERT INTO dial_guards (account_id, kommo_user_id, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (account_id, kommo_user_id) DO UPDATE SET until_ms = excluded.until_ms
             WHERE dial_guards.until_ms <= $4",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Moves the user's guard from `held_until` (the value this request took) to `until_ms`: the hold after a
    /// call was placed, or now to free it after a failure. Someone else's later guard is left alone.
    pub async fn move_dial_guard(
        &self,
        account: AccountId,
        user_id: i64,
        held_until: i64,
        until_ms: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE dial_guards SET until_ms = $4 WHERE account_id = $1 AND kommo_user_id = $2 AND until_ms = $3",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(held_until)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a list for the user: their unfinished list is stopped, and their oldest lists beyond
    /// [`LISTS_KEPT_PER_USER`] are deleted. `next_position` is the first entry with a number.
    pub async fn create_call_list(
        &self,
        account: AccountId,
        user_id: i64,
        source: &str,
        entries: &[NewEntry],
        now_ms: i64,
    ) -> sqlx::Result<i64> {
        let next = entries.iter().position(|entry| entry.number.is_some()).unwrap_or(entries.len()) as i64;
        let state = if next == entries.len() as i64 { "finished" } else { "ready" };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE call_lists SET state = 'stopped', updated_at_ms = $3
             WHERE account_id = $1 AND kommo_user_id = $2 AND state IN ('ready', 'running', 'paused')",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO call_lists (account_id, kommo_user_id, source, state, next_position, created_at, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(source)
        .bind(state)
        .bind(next)
        .bind(now_ms / 1000)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        for (position, entry) in entries.iter().enumerate() {
            let (number, shown) = entry.number.clone().unzip();
            sqlx::query(
                "INSERT INTO call_list_entries (list_id, position, account_id, entity_id, name, via, number, number_shown, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(position as i64)
            .bind(account.0)
            .bind(entry.entity_id)
            .bind(&entry.name)
            .bind(&entry.via)
            .bind(number)
            .bind(shown)
            .bind(if entry.number.is_some() { "pending" } else { "no_number" })
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM call_lists WHERE account_id = $1 AND kommo_user_id = $2 AND id NOT IN
                (SELECT id FROM call_lists WHERE account_id = $1 AND kommo_user_id = $2 ORDER BY id DESC LIMIT $3)",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(LISTS_KEPT_PER_USER)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The user's unfinished list, else their latest one.
    pub async fn current_call_list_id(&self, account: AccountId, user_id: i64) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM call_lists WHERE account_id = $1 AND kommo_user_id = $2
             ORDER BY CASE WHEN state IN ('ready', 'running', 'paused') THEN 0 ELSE 1 END, id DESC LIMIT 1",
        )
        .bind(account.0)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The user's unfinished list, if any.
    pub async fn open_call_list_id(&self, account: AccountId, user_id: i64) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM call_lists WHERE account_id = $1 AND kommo_user_id = $2
               AND state IN ('ready', 'running', 'paused') ORDER BY id DESC LIMIT 1",
        )
        .bind(account.0)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// One of the user's lists with its entries in order; another user's or account's list is `None`.
    pub async fn call_list(
        &self,
        account: AccountId,
        user_id: i64,
        id: i64,
    ) -> sqlx::Result<Option<(ListRow, Vec<EntryRow>)>> {
        let list: Option<ListRow> = sqlx::query_as(
            "SELECT id, source, state, next_position, current_position, created_at, updated_at_ms
             FROM call_lists WHERE id = $1 AND account_id = $2 AND kommo_user_id = $3",
        )
        .bind(id)
        .bind(account.0)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(list) = list else {
            return Ok(None);
        };
        let entries = sqlx::query_as(
            "SELECT e.position, e.entity_id, e.name, e.via, e.number, e.number_shown, e.state, e.call_id,
                    e.dialed_at_ms, e.ended_at_ms, e.duration, e.error,
                    c.status AS call_status, c.duration AS call_duration, c.updated_at AS call_updated_at,
                    r.created_at AS result_at_ms
             FROM call_list_entries e
             LEFT JOIN voip_calls c ON c.account_id = e.account_id AND c.call_id = e.call_id
             LEFT JOIN call_results r ON r.account_id = e.account_id AND r.call_id = e.call_id
             WHERE e.list_id = $1 AND e.account_id = $2
             ORDER BY e.position",
        )
        .bind(id)
        .bind(account.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((list, entries)))
    }

    /// Writes a change of a list read at `seen.updated_at_ms`: its state and positions, and the entries
    /// that changed. `false` (nothing written) when the list changed since it was read.
    pub async fn write_call_list(
        &self,
        account: AccountId,
        seen: &ListRow,
        write: ListWrite<'_>,
        now_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query(
            "UPDATE call_lists SET state = $3, next_position = $4, current_position = $5, updated_at_ms = $6
             WHERE id = $1 AND account_id = $2 AND updated_at_ms = $7",
        )
        .bind(seen.id)
        .bind(account.0)
        .bind(write.state)
        .bind(write.next_position)
        .bind(write.current_position)
        .bind(now_ms.max(seen.updated_at_ms + 1))
        .bind(seen.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        if written.rows_affected() != 1 {
            return Ok(false);
        }
        for entry in write.entries {
            sqlx::query(
                "UPDATE call_list_entries SET state = $4, call_id = $5, dialed_at_ms = $6, ended_at_ms = $7,
                        duration = $8, error = $9
                 WHERE list_id = $1 AND account_id = $2 AND position = $3",
            )
            .bind(seen.id)
            .bind(account.0)
            .bind(entry.position)
            .bind(&entry.state)
            .bind(&entry.call_id)
            .bind(entry.dialed_at_ms)
            .bind(entry.ended_at_ms)
            .bind(entry.duration)
            .bind(&entry.error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The outbound call to `number` (E.164) that started since `since` (unix seconds) and that no entry of the
    /// account's lists holds yet: the call a dial placed, for a system whose answer to the dial names no call
    /// id the call's events carry (Zadarma's callback request).
    pub async fn unclaimed_outbound_call(
        &self,
        account: AccountId,
        number: &str,
        since: i64,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT c.call_id FROM voip_calls c
             WHERE c.account_id = $1 AND c.client_number = $2 AND c.direction = 'outbound' AND c.started_at >= $3
               AND NOT EXISTS (SELECT 1 FROM call_list_entries e WHERE e.account_id = c.account_id AND e.call_id = c.call_id)
             ORDER BY c.started_at, c.id LIMIT 1",
        )
        .bind(account.0)
        .bind(number)
        .bind(since)
        .fetch_optional(&self.pool)
        .await
    }

    /// Gives a dialled entry the call id its call's events carry, instead of the one the provider's answer
    /// gave; only while it is still being called under the old one.
    pub async fn rebind_dial(
        &self,
        account: AccountId,
        list_id: i64,
        position: i64,
        from: &str,
        to: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE call_list_entries SET call_id = $5
             WHERE list_id = $1 AND account_id = $2 AND position = $3 AND state = 'calling' AND call_id = $4",
        )
        .bind(list_id)
        .bind(account.0)
        .bind(position)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the provider said about an entry being dialled: its call id, or why it failed. Only an entry
    /// still dialling without a call id changes. A failure pauses a running list, so the manager sees why
    /// before anything else is dialled.
    pub async fn record_dial(
        &self,
        account: AccountId,
        list_id: i64,
        position: i64,
        outcome: Result<&str, &str>,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let (state, call_id, error) = match outcome {
            Ok(call_id) => ("calling", Some(call_id), None),
            Err(code) => ("failed", None, Some(code)),
        };
        let mut tx = self.pool.begin().await?;
        if outcome.is_err() {
            sqlx::query(
                "UPDATE call_lists SET state = 'paused', updated_at_ms = CASE WHEN updated_at_ms < $3 THEN $3 ELSE updated_at_ms + 1 END
                 WHERE id = $1 AND account_id = $2 AND state = 'running'",
            )
            .bind(list_id)
            .bind(account.0)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE call_list_entries SET state = $4, call_id = $5, error = $6
             WHERE list_id = $1 AND account_id = $2 AND position = $3 AND state = 'calling' AND call_id IS NULL",
        )
        .bind(list_id)
        .bind(account.0)
        .bind(position)
        .bind(state)
        .bind(call_id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}
