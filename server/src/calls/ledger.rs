//! The call processor's view of the Kommo write ledger (the recovery points in `kommo_writes`, kept by
//! [`crate::store::calls`]), and what a run records about a call's delivery.

use std::collections::HashMap;

use serde_json::Value;
use shared::rules::{Delivered, EntityKind, EntityRef, Knowledge};

use super::Delivery;
use crate::store::calls::DeliveryUpdate;
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
        let rows = store
            .ledger(account, call_id)
            .await?
            .into_iter()
            .map(|row| {
                let state = if row.done { State::Done } else { State::Sending };
                let outcome = row.outcome.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null);
                (row.key, Row { state, outcome })
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
        store.ledger_mark_sending(self.account, &self.call_id, key).await?;
        let outcome = self.rows.get(key).map(|row| row.outcome.clone()).unwrap_or(Value::Null);
        self.rows.insert(key.to_owned(), Row { state: State::Sending, outcome });
        Ok(())
    }

    /// Records that Kommo has the write `key`, with what it answered.
    pub async fn mark_done(&mut self, store: &Store, key: &str, outcome: Value) -> sqlx::Result<()> {
        store.ledger_mark_done(self.account, &self.call_id, key, &outcome.to_string()).await?;
        self.rows.insert(key.to_owned(), Row { state: State::Done, outcome });
        Ok(())
    }

    /// Forgets a write Kommo certainly did not perform (it answered that it had nowhere to put it).
    pub async fn forget(&mut self, store: &Store, key: &str) -> sqlx::Result<()> {
        store.ledger_forget(self.account, &self.call_id, key).await?;
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
    store
        .record_delivery(
            account,
            call_id,
            DeliveryUpdate {
                status,
                error,
                entity: record.entity.map(|entity| (entity.kind.as_str(), entity.id)),
                unsorted_uid: record.unsorted_uid,
                kommo_call_id: record.kommo_call_id,
                responsible_user_id: record.responsible_user_id,
                call_status: record.call_status.map(i64::from),
            },
        )
        .await
}

/// Keeps the last error of a run (the delivery status is the queue's to change: `failed` once the job
/// is a dead letter; a delivered call stays delivered).
pub async fn record_error(store: &Store, account: AccountId, call_id: &str, error: &str) -> sqlx::Result<()> {
    store.record_delivery_error(account, call_id, error).await
}
