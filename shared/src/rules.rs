//! The call-handling rules as pure functions: (the call, the account's settings, what Kommo knows
//! about the number, the manager's call result) → the Kommo writes to make. The server only executes
//! the plan; every scenario of the settings is decided and tested here.
//!
//! Every action carries a stable `key`. The server records a write per (call, key) once Kommo
//! answered, so planning again for the same call (a retry, a late event, a late call result) never
//! repeats a write that is already done.

use serde::{Deserialize, Serialize};

use crate::call::{CallDirection, CallStatus};
use crate::integration::{CallHandling, ExtensionMap};

/// What the server knows about one provider call, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    /// The provider's call id: sent to Kommo as `uniq`.
    pub call_id: String,
    pub direction: CallDirection,
    /// The client's number (the caller on inbound calls, the called number on outbound ones), E.164
    /// when it could be normalised, else as the provider sent it.
    pub client_number: String,
    /// The latest call status.
    pub status: CallStatus,
    /// Whether the call was ever answered (an `answered` event, or a duration above zero).
    pub answered: bool,
    /// Unix seconds at which the call started.
    pub started_at: i64,
    /// Seconds of conversation (0 for a missed call).
    pub duration: u32,
    pub recording_url: Option<String>,
    /// The extension that took or placed the call.
    pub extension: Option<String>,
}

/// What Kommo knows about the client's number (contacts search by phone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Knowledge {
    /// No contact has the number.
    Unknown,
    Contact(ContactFacts),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFacts {
    pub id: i64,
    pub responsible_user_id: Option<i64>,
    /// How many phone numbers the contact has.
    pub phone_count: usize,
    /// The contact's open leads (not won, not lost), most recent first. `None` when they were not
    /// looked up (see [`needs_active_leads`]).
    pub active_leads: Option<Vec<LeadFacts>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFacts {
    pub id: i64,
    pub responsible_user_id: Option<i64>,
}

/// A Kommo entity type that calls, notes and tasks attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Leads,
    Contacts,
    Companies,
}

impl EntityKind {
    /// The API path segment and `entity_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Leads => "leads",
            EntityKind::Contacts => "contacts",
            EntityKind::Companies => "companies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    #[serde(rename = "type")]
    pub kind: EntityKind,
    pub id: i64,
}

/// Kommo's `call_status` (1–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum KommoCallStatus {
    LeftMessage = 1,
    CallBackLater = 2,
    NotAvailable = 3,
    Success = 4,
    WrongNumber = 5,
    NoConnection = 6,
    Busy = 7,
}

impl TryFrom<u8> for KommoCallStatus {
    type Error = &'static str;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => KommoCallStatus::LeftMessage,
            2 => KommoCallStatus::CallBackLater,
            3 => KommoCallStatus::NotAvailable,
            4 => KommoCallStatus::Success,
            5 => KommoCallStatus::WrongNumber,
            6 => KommoCallStatus::NoConnection,
            7 => KommoCallStatus::Busy,
            _ => return Err("call_status must be 1 to 7"),
        })
    }
}

impl From<KommoCallStatus> for u8 {
    fn from(status: KommoCallStatus) -> u8 {
        status as u8
    }
}

/// The manager's call result from the widget's call-result modal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallResult {
    /// Free text shown in the call note (`call_result`).
    #[serde(default)]
    pub note: Option<String>,
    pub call_status: KommoCallStatus,
    /// 1–5, when the account asks for a call-quality rating.
    #[serde(default)]
    pub quality: Option<u8>,
    #[serde(default)]
    pub follow_up: Option<FollowUp>,
    /// The entity the manager chose for the call (the call and the result go there).
    #[serde(default)]
    pub entity: Option<EntityRef>,
}

/// A follow-up task the manager asked for in the call result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    pub text: String,
    /// Unix seconds.
    pub due_at: i64,
}

/// The call as `POST /api/v4/calls` (or a call note, or unsorted metadata) carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLog {
    pub uniq: String,
    pub direction: CallDirection,
    pub phone: String,
    pub duration: u32,
    pub link: Option<String>,
    pub call_status: KommoCallStatus,
    /// Text shown in the call note.
    pub call_result: Option<String>,
    /// The Kommo user who took or placed the call (`created_by`, `responsible_user_id`).
    pub user_id: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where an action writes: an entity known before planning, or one an earlier action of the same
/// plan creates or resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Entity(EntityRef),
    /// The lead created by `CreateContactAndLead`, `CreateLead` or `CreateUnsorted`.
    CreatedLead,
    /// The contact created by `CreateContactAndLead` or `CreateUnsorted`.
    CreatedContact,
    /// The entity Kommo attached the call to (`LogCall`'s answer, or the earlier delivery).
    CallEntity,
}

/// One Kommo write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `POST /api/v4/leads/complex`: a contact with the number and a lead.
    CreateContactAndLead {
        key: &'static str,
        phone: String,
        contact_name: String,
        lead_name: String,
        responsible_user_id: Option<i64>,
        pipeline_id: Option<i64>,
        status_id: Option<i64>,
    },
    /// `POST /api/v4/leads` linked to an existing contact.
    CreateLead {
        key: &'static str,
        contact_id: i64,
        lead_name: String,
        responsible_user_id: Option<i64>,
        pipeline_id: Option<i64>,
        status_id: Option<i64>,
    },
    /// `POST /api/v4/leads/unsorted/sip`: an incoming lead carrying the call in its metadata.
    CreateUnsorted { key: &'static str, call: CallLog, pipeline_id: Option<i64> },
    /// `POST /api/v4/leads/unsorted/{uid}/accept` for the unsorted lead this plan created.
    AcceptUnsorted { key: &'static str, user_id: Option<i64>, status_id: Option<i64> },
    /// `POST /api/v4/calls` (Kommo picks the entity by the number), or, with a `target`, a call note
    /// on that entity.
    LogCall { key: &'static str, call: CallLog, target: Option<Target> },
    /// `POST /api/v4/tasks`.
    CreateTask {
        key: &'static str,
        target: Target,
        text: String,
        /// Unix seconds.
        due_at: i64,
        /// 1 = follow-up.
        task_type_id: i64,
        responsible_user_id: Option<i64>,
    },
    /// A `common` note.
    AddNote { key: &'static str, target: Target, text: String },
}

impl Action {
    pub fn key(&self) -> &'static str {
        match self {
            Action::CreateContactAndLead { key, .. }
            | Action::CreateLead { key, .. }
            | Action::CreateUnsorted { key, .. }
            | Action::AcceptUnsorted { key, .. }
            | Action::LogCall { key, .. }
            | Action::CreateTask { key, .. }
            | Action::AddNote { key, .. } => key,
        }
    }
}

/// What the server already wrote for this call (from its recovery points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delivered {
    /// The call itself is in Kommo (call, call note or unsorted lead).
    pub call_logged: bool,
    /// Where it landed, when Kommo said.
    pub entity: Option<EntityRef>,
}

/// The writes for a call, in order. Empty while the call is still going on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Why nothing (or less than the call) goes to Kommo, for the delivery status.
    pub skipped: Option<&'static str>,
}

/// Everything [`plan`] decides on.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub call: &'a CallFacts,
    pub rules: &'a CallHandling,
    pub extensions: &'a ExtensionMap,
    pub kommo: &'a Knowledge,
    pub result: Option<&'a CallResult>,
    pub delivered: Delivered,
}

/// Whether the plan for `call` depends on the contact's active leads (so the server looks them up
/// only then).
pub fn needs_active_leads(call: &CallFacts, rules: &CallHandling) -> bool {
    let _ = (call, rules);
    true
}

/// The Kommo writes for a call.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let _ = input;
    Plan::default()
}
