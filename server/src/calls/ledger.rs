//! The call processor's view of the Kommo write ledger (the recovery points in `kommo_writes`, kept by
//! [`crate::store::calls`]), and what a run records about a call's delivery.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use shared::rules::{Delivered, EntityKind, EntityRef, Knowledge, WriteKey};

use super::Delivery;
use crate::store::calls::{DeliveryUpdate, LedgerRow};
use crate::store::{AccountId, Store};

/// The ledger key under which the knowledge a call was planned on is kept. Not a [`WriteKey`]: the
/// snapshot is no Kommo write and no action carries it (it is kept so that every later run of the call
/// plans on the same knowledge); its row holds a serialized [`Knowledge`], not an [`Outcome`]. Never to
/// change: stored rows carry it.
pub const KNOWLEDGE_KEY: &str = "knowledge";

/// Keys whose `done` means the call itself is in Kommo.
const CALL_KEYS: [WriteKey; 2] = [WriteKey::Call, WriteKey::Unsorted];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Sending,
    Done,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub state: State,
    pub outcome: Outcome,
}

/// What the ledger keeps of Kommo's answer to a write (a `done` row's `outcome`), as JSON with these
/// keys. Each write fills the fields it learned; every field is optional, and one absent or of another
/// type (`null` among them, as earlier versions wrote for an id Kommo did not give) reads as `None`,
/// so every stored outcome reads, and an unreadable one reads as the empty outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The entity the call landed on (`call`: where Kommo attached it, or the entity of its call note;
    /// the unsorted lead when the call went there), `{"type": "leads", "id": 1}`.
    #[serde(default, deserialize_with = "entity", skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntityRef>,
    /// How the `call` write was done, when not by its own request: `unsorted` (the call rides on the
    /// unsorted lead of the `unsorted` write).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// The id of the call `POST /api/v4/calls` created.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub kommo_call_id: Option<i64>,
    /// The unsorted lead's uid (`None` once it was found already accepted).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The lead a write created (or found, or the unsorted lead became).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<i64>,
    /// The contact a write created (or found, or the unsorted lead came with).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub note_id: Option<i64>,
    /// The call went with its recording link.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub with_link: Option<bool>,
    /// The call went with the manager's result.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub with_result: Option<bool>,
    /// The write was found in Kommo (an earlier attempt's) rather than sent.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    /// The unsorted lead was found already accepted (only its call note was left to find).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// Kommo refused to accept the unsorted lead again: it was accepted already.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub already_accepted: Option<bool>,
}

/// [`Outcome::via`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Unsorted,
}

impl Outcome {
    /// A stored outcome; the empty one when there is none or it does not read.
    pub fn parse(text: Option<&str>) -> Outcome {
        text.and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
    }

    /// The outcome as the ledger stores it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    fn says(flag: Option<bool>) -> bool {
        flag == Some(true)
    }
}

/// A field of another type than expected reads as absent.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(deserializer)?).ok())
}

/// An entity as stored, `{"type": "leads", "id": 1}` (Kommo's singular type names read too); anything
/// else reads as absent.
fn entity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<EntityRef>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(value["type"].as_str().and_then(entity_kind).zip(value["id"].as_i64()).map(|(kind, id)| EntityRef { kind, id }))
}

/// Every recovery point of one call.
pub struct Writes {
    account: AccountId,
    call_id: String,
    rows: HashMap<WriteKey, Row>,
    /// The knowledge snapshot ([`KNOWLEDGE_KEY`], when done and readable).
    knowledge: Option<Knowledge>,
    /// Keys this version does not know (a newer version's writes): left in the store untouched and
    /// never planned on, but recovery points of the call all the same (so the call keeps its
    /// knowledge snapshot).
    unknown: Vec<String>,
}

impl Writes {
    pub async fn load(store: &Store, account: AccountId, call_id: &str) -> sqlx::Result<Writes> {
        let rows = store.ledger(account, call_id).await?;
        Ok(Writes::from_rows(account, call_id, rows))
    }

    fn from_rows(account: AccountId, call_id: &str, stored: Vec<LedgerRow>) -> Writes {
        let mut writes =
            Writes { account, call_id: call_id.to_owned(), rows: HashMap::new(), knowledge: None, unknown: Vec::new() };
        for row in stored {
            let state = if row.done { State::Done } else { State::Sending };
            if let Some(key) = WriteKey::parse(&row.key) {
                writes.rows.insert(key, Row { state, outcome: Outcome::parse(row.outcome.as_deref()) });
            } else if row.key == KNOWLEDGE_KEY {
                writes.knowledge =
                    row.outcome.filter(|_| state == State::Done).and_then(|text| serde_json::from_str(&text).ok());
            } else {
                tracing::warn!(
                    account.id = account.get(),
                    call_id,
                    key = %row.key,
                    "a recovery point of a newer version, left as it is"
                );
                writes.unknown.push(row.key);
            }
        }
        writes
    }

    pub fn get(&self, key: WriteKey) -> Option<&Row> {
        self.rows.get(&key)
    }

    pub fn done(&self, key: WriteKey) -> Option<&Outcome> {
        self.rows.get(&key).filter(|row| row.state == State::Done).map(|row| &row.outcome)
    }

    /// What is already in Kommo, for the rules.
    pub fn delivered(&self) -> Delivered {
        let call_logged = CALL_KEYS.iter().any(|key| self.done(*key).is_some());
        let entity = self.done(WriteKey::Call).and_then(|outcome| outcome.entity).or_else(|| {
            let lead_id = self.done(WriteKey::Unsorted)?.lead_id?;
            Some(EntityRef { kind: EntityKind::Leads, id: lead_id })
        });
        let logged = self.done(WriteKey::Call).or_else(|| self.done(WriteKey::Unsorted));
        let logged_with_link = logged.is_some_and(|outcome| Outcome::says(outcome.with_link));
        let logged_with_result = self.done(WriteKey::Call).is_some_and(|outcome| Outcome::says(outcome.with_result));
        Delivered { call_logged, entity, logged_with_link, logged_with_result }
    }

    /// The knowledge an earlier run planned on, once the call has any recovery point.
    pub fn knowledge(&self) -> Option<Knowledge> {
        let has_writes = !self.rows.is_empty() || !self.unknown.is_empty();
        has_writes.then(|| self.knowledge.clone()).flatten()
    }

    pub async fn save_knowledge(&mut self, store: &Store, knowledge: &Knowledge) -> sqlx::Result<()> {
        if self.knowledge.as_ref() == Some(knowledge) {
            return Ok(());
        }
        let snapshot = serde_json::to_string(knowledge).unwrap_or_else(|_| "null".to_owned());
        store.ledger_mark_done(self.account, &self.call_id, KNOWLEDGE_KEY, &snapshot).await?;
        self.knowledge = Some(knowledge.clone());
        Ok(())
    }

    /// Records that the write `key` is about to leave (attempts + 1), committed before the request.
    pub async fn mark_sending(&mut self, store: &Store, key: WriteKey) -> sqlx::Result<()> {
        store.ledger_mark_sending(self.account, &self.call_id, key.as_str()).await?;
        let outcome = self.rows.get(&key).map(|row| row.outcome.clone()).unwrap_or_default();
        self.rows.insert(key, Row { state: State::Sending, outcome });
        Ok(())
    }

    /// Records that Kommo has the write `key`, with what it answered.
    pub async fn mark_done(&mut self, store: &Store, key: WriteKey, outcome: Outcome) -> sqlx::Result<()> {
        store.ledger_mark_done(self.account, &self.call_id, key.as_str(), &outcome.to_json()).await?;
        self.rows.insert(key, Row { state: State::Done, outcome });
        Ok(())
    }

    /// Forgets a write Kommo certainly did not perform (it answered that it had nowhere to put it).
    pub async fn forget(&mut self, store: &Store, key: WriteKey) -> sqlx::Result<()> {
        store.ledger_forget(self.account, &self.call_id, key.as_str()).await?;
        self.rows.remove(&key);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use shared::rules::{Delivered, EntityKind, EntityRef, Knowledge, KnownFacts, WriteKey};

    use super::{KNOWLEDGE_KEY, Outcome, State, Via, Writes};
    use crate::store::AccountId;
    use crate::store::calls::LedgerRow;

    fn lead(id: i64) -> Option<EntityRef> {
        Some(EntityRef { kind: EntityKind::Leads, id })
    }

    fn contact(id: i64) -> Option<EntityRef> {
        Some(EntityRef { kind: EntityKind::Contacts, id })
    }

    /// The JSON without its `null` members (the old code wrote `null` for what it did not have; both
    /// it and [`Outcome`] read a `null` as absent, and [`Outcome`] leaves absent fields out).
    fn without_nulls(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(map.into_iter().filter(|(_, value)| !value.is_null()).collect()),
            other => other,
        }
    }

    /// Every outcome shape the ledger's earlier code stored (the `json!`s of `calls::execute`, as
    /// Kommo's answers filled them), with what it reads as.
    fn stored_shapes() -> Vec<(&'static str, &'static str, Outcome)> {
        let none = Outcome::default;
        vec![
            (
                "accept refused as done",
                r#"{"already_accepted":true}"#,
                Outcome { already_accepted: Some(true), ..none() },
            ),
            (
                "call by number",
                r#"{"entity":{"id":600,"type":"leads"},"kommo_call_id":9001,"with_link":true,"with_result":false}"#,
                Outcome {
                    entity: lead(600),
                    kommo_call_id: Some(9001),
                    with_link: Some(true),
                    with_result: Some(false),
                    ..none()
                },
            ),
            (
                "call by number, Kommo naming no entity",
                r#"{"entity":null,"kommo_call_id":9002,"with_link":false,"with_result":true}"#,
                Outcome { kommo_call_id: Some(9002), with_link: Some(false), with_result: Some(true), ..none() },
            ),
            (
                "call by number, Kommo giving no id",
                r#"{"entity":{"id":500,"type":"contacts"},"kommo_call_id":null,"with_link":false,"with_result":false}"#,
                Outcome { entity: contact(500), with_link: Some(false), with_result: Some(false), ..none() },
            ),
            (
                "call via the unsorted lead",
                r#"{"entity":{"id":700,"type":"leads"},"via":"unsorted","with_link":true}"#,
                Outcome { entity: lead(700), via: Some(Via::Unsorted), with_link: Some(true), ..none() },
            ),
            (
                "call via an unsorted lead of unknown id",
                r#"{"entity":null,"via":"unsorted","with_link":false}"#,
                Outcome { via: Some(Via::Unsorted), with_link: Some(false), ..none() },
            ),
            (
                "call note (sent, or as a call by number that fell back to a note)",
                r#"{"entity":{"id":500,"type":"contacts"},"note_id":42,"with_link":false,"with_result":true}"#,
                Outcome {
                    entity: contact(500),
                    note_id: Some(42),
                    with_link: Some(false),
                    with_result: Some(true),
                    ..none()
                },
            ),
            (
                "call note without an id in the answer",
                r#"{"entity":{"id":600,"type":"leads"},"note_id":null,"with_link":true,"with_result":false}"#,
                Outcome { entity: lead(600), with_link: Some(true), with_result: Some(false), ..none() },
            ),
            (
                "call note found",
                r#"{"entity":{"id":600,"type":"leads"},"found":true,"note_id":43,"with_link":true,"with_result":true}"#,
                Outcome {
                    entity: lead(600),
                    note_id: Some(43),
                    with_link: Some(true),
                    with_result: Some(true),
                    found: Some(true),
                    ..none()
                },
            ),
            (
                "contact and lead",
                r#"{"contact_id":500,"lead_id":600}"#,
                Outcome { lead_id: Some(600), contact_id: Some(500), ..none() },
            ),
            (
                "contact and lead found, the contact without a lead",
                r#"{"contact_id":500,"found":true,"lead_id":null}"#,
                Outcome { contact_id: Some(500), found: Some(true), ..none() },
            ),
            ("lead", r#"{"lead_id":601}"#, Outcome { lead_id: Some(601), ..none() }),
            ("lead without an id in the answer", r#"{"lead_id":null}"#, none()),
            (
                "lead found",
                r#"{"found":true,"lead_id":601}"#,
                Outcome { lead_id: Some(601), found: Some(true), ..none() },
            ),
            (
                "unsorted lead",
                r#"{"contact_id":701,"lead_id":700,"uid":"u-1f3a","with_link":true}"#,
                Outcome {
                    uid: Some("u-1f3a".into()),
                    lead_id: Some(700),
                    contact_id: Some(701),
                    with_link: Some(true),
                    ..none()
                },
            ),
            (
                "unsorted lead found",
                r#"{"contact_id":701,"found":true,"lead_id":700,"uid":"u-1f3a","with_link":false}"#,
                Outcome {
                    uid: Some("u-1f3a".into()),
                    lead_id: Some(700),
                    contact_id: Some(701),
                    with_link: Some(false),
                    found: Some(true),
                    ..none()
                },
            ),
            (
                "unsorted lead found accepted, its call note on the lead",
                r#"{"accepted":true,"contact_id":null,"found":true,"lead_id":700,"uid":null,"with_link":true}"#,
                Outcome {
                    lead_id: Some(700),
                    accepted: Some(true),
                    with_link: Some(true),
                    found: Some(true),
                    ..none()
                },
            ),
            (
                "unsorted lead found accepted, its call note on the contact",
                r#"{"accepted":true,"contact_id":701,"found":true,"lead_id":null,"uid":null,"with_link":false}"#,
                Outcome {
                    contact_id: Some(701),
                    accepted: Some(true),
                    with_link: Some(false),
                    found: Some(true),
                    ..none()
                },
            ),
            (
                "unsorted lead accepted",
                r#"{"contact_id":701,"lead_id":700}"#,
                Outcome { lead_id: Some(700), contact_id: Some(701), ..none() },
            ),
            ("task", r#"{"task_id":55}"#, Outcome { task_id: Some(55), ..none() }),
            (
                "task found",
                r#"{"found":true,"task_id":55}"#,
                Outcome { task_id: Some(55), found: Some(true), ..none() },
            ),
            ("note", r#"{"note_id":56}"#, Outcome { note_id: Some(56), ..none() }),
            (
                "note found",
                r#"{"found":true,"note_id":56}"#,
                Outcome { note_id: Some(56), found: Some(true), ..none() },
            ),
        ]
    }

    #[test]
    fn every_stored_outcome_reads_and_writes_back_the_same_json() {
        for (name, stored, expected) in stored_shapes() {
            let outcome = Outcome::parse(Some(stored));
            assert_eq!(outcome, expected, "{name}");
            let written: Value = serde_json::from_str(&outcome.to_json()).unwrap();
            let stored: Value = serde_json::from_str(stored).unwrap();
            assert_eq!(written, without_nulls(stored), "{name}");
        }
    }

    #[test]
    fn what_does_not_read_reads_as_absent() {
        assert_eq!(Outcome::parse(None), Outcome::default());
        for text in ["", "null", "not json", "42", "\"call\"", "[]"] {
            assert_eq!(Outcome::parse(Some(text)), Outcome::default(), "{text:?}");
        }
        // Fields of another type, as the earlier code read them (`as_i64`, `as_str`, `== true`).
        let odd = r#"{"lead_id":"600","note_id":4.5,"uid":7,"with_link":"yes","entity":{"type":"deals","id":1},
            "via":"carrier pigeon","found":1,"newer_field":{"x":1}}"#;
        assert_eq!(Outcome::parse(Some(odd)), Outcome::default());
        // Kommo's singular entity names read as the earlier code read them.
        let singular = Outcome::parse(Some(r#"{"entity":{"type":"contact","id":5}}"#));
        assert_eq!(singular.entity, contact(5));
        assert_eq!(Outcome::default().to_json(), "{}");
    }

    fn row(key: &str, done: bool, outcome: Option<&str>) -> LedgerRow {
        LedgerRow { key: key.to_owned(), done, outcome: outcome.map(str::to_owned) }
    }

    fn ledger_of(rows: Vec<LedgerRow>) -> Writes {
        Writes::from_rows(AccountId::for_tests(1), "c-1", rows)
    }

    #[test]
    fn the_knowledge_key_is_no_write_key() {
        assert_eq!(KNOWLEDGE_KEY, "knowledge", "stored rows carry it");
        assert_eq!(WriteKey::parse(KNOWLEDGE_KEY), None);
    }

    #[test]
    fn stored_rows_read_back_by_key() {
        let knowledge = Knowledge::Contact(KnownFacts {
            id: 500,
            responsible_user_id: Some(7),
            phone_count: 2,
            active_leads: Some(Vec::new()),
        });
        let snapshot = serde_json::to_string(&knowledge).unwrap();
        let writes = ledger_of(vec![
            row(KNOWLEDGE_KEY, true, Some(&snapshot)),
            row("lead", true, Some(r#"{"lead_id":601}"#)),
            row(
                "call",
                true,
                Some(r#"{"entity":{"type":"leads","id":601},"kommo_call_id":9,"with_link":true,"with_result":false}"#),
            ),
            row("missed_task", false, None),
        ]);
        assert_eq!(writes.knowledge(), Some(knowledge));
        assert_eq!(writes.done(WriteKey::Lead).and_then(|outcome| outcome.lead_id), Some(601));
        assert_eq!(writes.get(WriteKey::MissedTask).map(|row| row.state), Some(State::Sending));
        assert_eq!(writes.done(WriteKey::MissedTask), None);
        assert_eq!(
            writes.delivered(),
            Delivered { call_logged: true, entity: lead(601), logged_with_link: true, logged_with_result: false }
        );
    }

    #[test]
    fn a_call_via_the_unsorted_lead_is_delivered_there() {
        let writes = ledger_of(vec![
            row("unsorted", true, Some(r#"{"uid":"u-1","lead_id":700,"contact_id":701,"with_link":true}"#)),
            row("call", true, Some(r#"{"via":"unsorted","entity":{"type":"leads","id":700},"with_link":true}"#)),
        ]);
        assert_eq!(
            writes.delivered(),
            Delivered { call_logged: true, entity: lead(700), logged_with_link: true, logged_with_result: false }
        );
        // An unsorted lead alone (the call's row not written yet) is the call too.
        let writes = ledger_of(vec![row(
            "unsorted",
            true,
            Some(r#"{"uid":"u-1","lead_id":700,"contact_id":701,"with_link":false}"#),
        )]);
        assert_eq!(
            writes.delivered(),
            Delivered { call_logged: true, entity: lead(700), logged_with_link: false, logged_with_result: false }
        );
    }

    #[test]
    fn a_key_of_a_newer_version_is_kept_and_ignored() {
        let writes = ledger_of(vec![
            row(KNOWLEDGE_KEY, true, Some("\"Unknown\"")),
            row("sms_note", true, Some(r#"{"sms_id":3}"#)),
            row("call", false, None),
        ]);
        assert_eq!(writes.unknown, ["sms_note"]);
        assert_eq!(writes.rows.len(), 1);
        assert_eq!(writes.delivered(), Delivered::default());
        // Only a newer version's write: the call still plans on its snapshot.
        let writes = ledger_of(vec![row(KNOWLEDGE_KEY, true, Some("\"Unknown\"")), row("sms_note", true, None)]);
        assert_eq!(writes.knowledge(), Some(Knowledge::Unknown));
    }

    #[test]
    fn the_snapshot_alone_or_unreadable_is_no_knowledge() {
        assert_eq!(ledger_of(vec![row(KNOWLEDGE_KEY, true, Some("\"Unknown\""))]).knowledge(), None);
        let unreadable = ledger_of(vec![row(KNOWLEDGE_KEY, true, Some("{\"Elsewhere\":1}")), row("call", false, None)]);
        assert_eq!(unreadable.knowledge(), None);
        let sending = ledger_of(vec![row(KNOWLEDGE_KEY, false, Some("\"Unknown\"")), row("call", false, None)]);
        assert_eq!(sending.knowledge(), None);
    }
}
