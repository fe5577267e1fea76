//! The call processor's queries: the recovery points of Kommo writes (`kommo_writes`), the manager's
//! call result, and the delivery columns of `voip_calls`.

use std::collections::HashMap;

use serde_json::Value;
use shared::rules::{Delivered, EntityKind, EntityRef, Knowledge};

use super::{Delivery, now};
use crate::store::{AccountId, Store};

/// The ledger key under which the knowledge a call was planned on is kept (not a Kommo write: a
/// snapshot, so that every later run of the call plans on the same knowledge).
pub const KNOWLEDGE_KEY: &str = "knowledge";

/// Keys whose `done` means the call itself is in Kommo.
const CALL_KEYS: [&str; 2] = ["call", "unsorted"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Sending,
    Done,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub state: State,
    pub outcome: Value,
}

/// Every recovery point of one call.
pub struct Writes {
    account: AccountId,
    call_id: String,
    rows: HashMap<String, Row>,
}

impl Writes {
    pub async fn load(store: &Store, account: AccountId, call_id: &str) -> sqlx::Result<Writes> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT action_key, state, outcome FROM kommo_writes WHERE account_id = ?1 AND call_id = ?2",
        )
        .bind(account.0)
        .bind(call_id)
        .fetch_all(store.pool())
        .await?;
        let rows = rows
            .into_iter()
            .map(|(key, state, outcome)| {
                let state = if state == "done" { State::Done } else { State::Sending };
                let outcome = outcome.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null);
                (key, Row { state, outcome })
            })
            .collect();
        Ok(Writes { account, call_id: call_id.to_owned(), rows })
    }

    pub fn get(&self, key: &str) -> Option<&Row> {
        self.rows.get(key)
    }

    pub fn done(&self, key: &str) -> Option<&Value> {
        self.rows.get(key).filter(|row| row.state == State::Done).map(|row| &row.outcome)
    }

    /// What is already in Kommo, for the rules.
    pub fn delivered(&self) -> Delivered {
        let call_logged = CALL_KEYS.iter().any(|key| self.done(key).is_some());
        let entity = self.done("call").and_then(|outcome| stored_entity(&outcome["entity"])).or_else(|| {
            let lead_id = self.done("unsorted")?["lead_id"].as_i64()?;
            Some(EntityRef { kind: EntityKind::Leads, id: lead_id })
        });
        let logged = self.done("call").or_else(|| self.done("unsorted"));
        let logged_with_link = logged.is_some_and(|outcome| outcome["with_link"] == true);
        let logged_with_result = self.done("call").is_some_and(|outcome| outcome["with_result"] == true);
        Delivered { call_logged, entity, logged_with_link, logged_with_result }
    }

    /// The knowledge an earlier run planned on, once the call has any recovery point.
    pub fn knowledge(&self) -> Option<Knowledge> {
        let has_writes = self.rows.keys().any(|key| key != KNOWLEDGE_KEY);
        let snapshot = self.done(KNOWLEDGE_KEY)?;
        has_writes.then(|| serde_json::from_value(snapshot.clone()).ok()).flatten()
    }

    pub async fn save_knowledge(&mut self, store: &Store, knowledge: &Knowledge) -> sqlx::Result<()> {
        let outcome = serde_json::to_value(knowledge).unwrap_or(Value::Null);
        if self.done(KNOWLEDGE_KEY) == Some(&outcome) {
            return Ok(());
        }
        self.mark_done(store, KNOWLEDGE_KEY, outcome).await
    }

    /// Records that the write `key` is about to leave (attempts + 1), committed before the request.
    pub async fn mark_sending(&mut self, store: &Store, key: &str) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_writes (account_id, call_id, action_key, state, attempts, updated_at)
             VALUES (?1, ?2, ?3, 'sending', 1, ?4)
             ON CONFLICT (account_id, call_id, action_key) DO UPDATE
                SET state = 'sending', attempts = kommo_writes.attempts + 1, updated_at = excluded.updated_at",
        )
        .bind(self.account.0)
        .bind(&self.call_id)
        .bind(key)
        .bind(now())
        .execute(store.pool())
        .await?;
        let outcome = self.rows.get(key).map(|row| row.outcome.clone()).unwrap_or(Value::Null);
        self.rows.insert(key.to_owned(), Row { state: State::Sending, outcome });
        Ok(())
    }

    /// Records that Kommo has the write `key`, with what it answered.
    pub async fn mark_done(&mut self, store: &Store, key: &str, outcome: Value) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_writes (account_id, call_id, action_key, state, outcome, attempts, updated_at)
             VALUES (?1, ?2, ?3, 'done', ?4, 0, ?5)
             ON CONFLICT (account_id, call_id, action_key) DO UPDATE
                SET state = 'done', outcome = excluded.outcome, updated_at = excluded.updated_at",
        )
        .bind(self.account.0)
        .bind(&self.call_id)
        .bind(key)
        .bind(outcome.to_string())
        .bind(now())
        .execute(store.pool())
        .await?;
        self.rows.insert(key.to_owned(), Row { state: State::Done, outcome });
        Ok(())
    }

    /// Forgets a write Kommo certainly did not perform (it answered that it had nowhere to put it).
    pub async fn forget(&mut self, store: &Store, key: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM kommo_writes WHERE account_id = ?1 AND call_id = ?2 AND action_key = ?3")
            .bind(self.account.0)
            .bind(&self.call_id)
            .bind(key)
            .execute(store.pool())
            .await?;
        self.rows.remove(key);
        Ok(())
    }
}

/// Reads an entity back from an outcome, `{"type": "leads", "id": 1}`.
pub fn stored_entity(value: &Value) -> Option<EntityRef> {
    Some(EntityRef { kind: entity_kind(value["type"].as_str()?)?, id: value["id"].as_i64()? })
}

/// Kommo's entity type names (plural in paths, sometimes singular in answers).
pub fn entity_kind(name: &str) -> Option<EntityKind> {
    match name {
        "leads" | "lead" => Some(EntityKind::Leads),
        "contacts" | "contact" => Some(EntityKind::Contacts),
        "companies" | "company" => Some(EntityKind::Companies),
        _ => None,
    }
}

pub async fn account_country(store: &Store, account: AccountId) -> sqlx::Result<Option<String>> {
    let country: Option<Option<String>> = sqlx::query_scalar("SELECT country FROM accounts WHERE id = ?1")
        .bind(account.0)
        .fetch_optional(store.pool())
        .await?;
    Ok(country.flatten())
}

/// The manager's call result (`shared::rules::CallResult` JSON), if one was given.
pub async fn call_result(store: &Store, account: AccountId, call_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT result FROM call_results WHERE account_id = ?1 AND call_id = ?2")
        .bind(account.0)
        .bind(call_id)
        .fetch_optional(store.pool())
        .await
}

/// What a run learned about the call's delivery.
pub struct DeliveryRecord<'a> {
    pub status: Delivery,
    pub entity: Option<EntityRef>,
    pub unsorted_uid: Option<&'a str>,
    pub kommo_call_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    /// Kommo's call_status from the manager's result.
    pub call_status: Option<u8>,
}

pub async fn record_delivery(
    store: &Store,
    account: AccountId,
    call_id: &str,
    record: DeliveryRecord<'_>,
) -> sqlx::Result<()> {
    let (status, error) = match &record.status {
        Delivery::Delivered => (Some("delivered"), None),
        Delivery::Skipped(reason) => (Some("skipped"), Some(reason.as_str())),
        Delivery::Unchanged => (None, None),
    };
    let now = now();
    sqlx::query(
        "UPDATE voip_calls
            SET delivery_status = CASE
                    WHEN ?3 IS NULL THEN delivery_status
                    WHEN delivery_status = 'delivered' THEN 'delivered'
                    ELSE ?3 END,
                delivery_error = CASE WHEN ?3 IS NULL THEN delivery_error ELSE ?4 END,
                delivered_at = CASE WHEN ?3 = 'delivered' THEN COALESCE(delivered_at, ?5) ELSE delivered_at END,
                entity_type = COALESCE(?6, entity_type),
                entity_id = COALESCE(?7, entity_id),
                unsorted_uid = COALESCE(?8, unsorted_uid),
                kommo_call_id = COALESCE(?9, kommo_call_id),
                responsible_user_id = COALESCE(?10, responsible_user_id),
                call_result = COALESCE(?11, call_result),
                updated_at = ?5
          WHERE account_id = ?1 AND call_id = ?2",
    )
    .bind(account.0)
    .bind(call_id)
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(record.entity.map(|entity| entity.kind.as_str()))
    .bind(record.entity.map(|entity| entity.id))
    .bind(record.unsorted_uid)
    .bind(record.kommo_call_id)
    .bind(record.responsible_user_id)
    .bind(record.call_status.map(i64::from))
    .execute(store.pool())
    .await
    .map(drop)
}

/// Keeps the last error of a run (the delivery status is the queue's to change: `failed` once the job
/// is a dead letter; a delivered call stays delivered).
pub async fn record_error(store: &Store, account: AccountId, call_id: &str, error: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE voip_calls SET delivery_error = ?3, updated_at = ?4 WHERE account_id = ?1 AND call_id = ?2")
        .bind(account.0)
        .bind(call_id)
        .bind(error)
        .bind(now())
        .execute(store.pool())
        .await
        .map(drop)
}
