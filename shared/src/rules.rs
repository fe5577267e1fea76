//! The call-handling rules as pure functions: (the call, the account's settings, what Kommo knows
//! about the number, the manager's call result) → the Kommo writes to make. The server only executes
//! the plan; every scenario of the settings is decided and tested here.
//!
//! Every action carries a stable [`WriteKey`]. The server records a write per (call, key) once Kommo
//! answered, so planning again for the same call (a retry, a late event, a late call result) never
//! repeats a write that is already done.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::call::{CallDirection, CallStatus};
use crate::integration::{CallHandling, ExtensionMap, TaskResponsible, UnknownCallerEntity, UnsortedAccept};
use crate::phone;
use crate::settings::{FieldError, ValidationCode};

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

/// What Kommo knows about the client's number (the contacts search by phone, then the companies search).
///
/// Kommo's own rule for `POST /api/v4/calls` (KOMMO.md §2.2): the contacts with the number take the call,
/// and when no contact has it, a company with it does. So a number that only a company has is a known
/// caller as much as a contact's: the call is logged by number and Kommo attaches it to the company (or
/// its one active lead). (The server keeps this in its write ledger as JSON: `"Unknown"`,
/// `{"Contact": {..}}`, `{"Company": {..}}`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Knowledge {
    /// Neither a contact nor a company has the number.
    Unknown,
    /// A contact has the number.
    Contact(KnownFacts),
    /// No contact has the number, a company does.
    Company(KnownFacts),
}

impl Knowledge {
    /// The contact or company that has the number.
    pub fn entity(&self) -> Option<EntityRef> {
        match self {
            Knowledge::Unknown => None,
            Knowledge::Contact(facts) => Some(EntityRef { kind: EntityKind::Contacts, id: facts.id }),
            Knowledge::Company(facts) => Some(EntityRef { kind: EntityKind::Companies, id: facts.id }),
        }
    }

    /// What the rules use of the contact or company that has the number.
    pub fn facts(&self) -> Option<&KnownFacts> {
        match self {
            Knowledge::Unknown => None,
            Knowledge::Contact(facts) | Knowledge::Company(facts) => Some(facts),
        }
    }

    pub fn facts_mut(&mut self) -> Option<&mut KnownFacts> {
        match self {
            Knowledge::Unknown => None,
            Knowledge::Contact(facts) | Knowledge::Company(facts) => Some(facts),
        }
    }
}

/// The contact (or company) that has the number, as the rules use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFacts {
    pub id: i64,
    pub responsible_user_id: Option<i64>,
    /// How many phone numbers the contact (or company) has.
    pub phone_count: usize,
    /// Its open leads (not won, not lost), most recent first. `None` when they were not looked up (see
    /// [`needs_active_leads`]).
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

/// Longest note a manager may write with a call result.
pub const MAX_RESULT_NOTE_CHARS: usize = 2000;
/// Longest follow-up task text.
pub const MAX_FOLLOW_UP_CHARS: usize = 500;
/// How far before `now` a follow-up may be due (a clock a little behind), and how far ahead at most.
const FOLLOW_UP_PAST_SECS: i64 = 3600;
const FOLLOW_UP_AHEAD_SECS: i64 = 366 * 24 * 3600;

impl CallResult {
    /// Every field to fix, by JSON path (the widget checks before sending, the server again on receipt).
    /// `now` is unix seconds: a follow-up is due between now and a year from now.
    pub fn validate(&self, now: i64) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut refuse = |field: &str, code| errors.push(FieldError { field: field.to_owned(), code });
        if self.note.as_deref().is_some_and(|note| note.chars().count() > MAX_RESULT_NOTE_CHARS) {
            refuse("note", ValidationCode::TooLong);
        }
        if self.quality.is_some_and(|quality| !(1..=5).contains(&quality)) {
            refuse("quality", ValidationCode::OutOfRange);
        }
        if let Some(follow_up) = &self.follow_up {
            let text = follow_up.text.trim();
            if text.is_empty() {
                refuse("follow_up.text", ValidationCode::Required);
            } else if text.chars().count() > MAX_FOLLOW_UP_CHARS {
                refuse("follow_up.text", ValidationCode::TooLong);
            }
            if !(now - FOLLOW_UP_PAST_SECS..=now + FOLLOW_UP_AHEAD_SECS).contains(&follow_up.due_at) {
                refuse("follow_up.due_at", ValidationCode::OutOfRange);
            }
        }
        if self.entity.is_some_and(|entity| entity.id <= 0) {
            refuse("entity.id", ValidationCode::OutOfRange);
        }
        errors
    }
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

/// Which Kommo write of a call an [`Action`] is: the server's write ledger records each write of a call
/// under its key (and sends it as the suffix of the write's `request_id`), so a write that is done is
/// never sent again, however often the call is planned.
///
/// The strings ([`WriteKey::as_str`]) are stored in deployments' ledgers: they never change, whatever
/// the variants are called (a test pins each one). The server also keeps, beside these keys, the
/// knowledge a call was planned on under a key of its own (`knowledge`); that snapshot is no Kommo
/// write and no action carries it, so it is not a variant here (an action keyed by it would be
/// meaningless, and the ledger tells writes from the snapshot by whether the key parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WriteKey {
    /// The call itself: `POST /api/v4/calls`, or a call note.
    Call,
    /// The call as an unsorted lead.
    Unsorted,
    /// A contact and a lead for an unknown number.
    ContactAndLead,
    /// A lead for a known contact.
    Lead,
    /// Accepting the unsorted lead.
    Accept,
    /// Which of the contact's numbers called.
    NumberNote,
    /// The "call back" task of a missed call.
    MissedTask,
    /// The manager's result as a note.
    ResultNote,
    /// The manager's follow-up task.
    ResultTask,
    /// The recording link as a note.
    RecordingNote,
}

impl WriteKey {
    /// Every key.
    pub const ALL: [WriteKey; 10] = [
        WriteKey::Call,
        WriteKey::Unsorted,
        WriteKey::ContactAndLead,
        WriteKey::Lead,
        WriteKey::Accept,
        WriteKey::NumberNote,
        WriteKey::MissedTask,
        WriteKey::ResultNote,
        WriteKey::ResultTask,
        WriteKey::RecordingNote,
    ];

    /// The key as the ledger stores it (never to change: stored rows carry it).
    pub const fn as_str(self) -> &'static str {
        match self {
            WriteKey::Call => "call",
            WriteKey::Unsorted => "unsorted",
            WriteKey::ContactAndLead => "contact_and_lead",
            WriteKey::Lead => "lead",
            WriteKey::Accept => "accept",
            WriteKey::NumberNote => "number_note",
            WriteKey::MissedTask => "missed_task",
            WriteKey::ResultNote => "result_note",
            WriteKey::ResultTask => "result_task",
            WriteKey::RecordingNote => "recording_note",
        }
    }

    /// The key a stored string names; `None` for any other string (the knowledge snapshot's key, or a
    /// key of a newer version).
    pub fn parse(key: &str) -> Option<WriteKey> {
        WriteKey::ALL.into_iter().find(|candidate| candidate.as_str() == key)
    }
}

impl fmt::Display for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its stored string, so that serialized plans read like the ledger.
impl Serialize for WriteKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for WriteKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WriteKey, D::Error> {
        let key = String::deserialize(deserializer)?;
        WriteKey::parse(&key).ok_or_else(|| serde::de::Error::custom(format!("unknown write key `{key}`")))
    }
}

/// One Kommo write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `POST /api/v4/leads/complex`: a contact with the number and a lead.
    CreateContactAndLead {
        key: WriteKey,
        phone: String,
        contact_name: String,
        lead_name: String,
        responsible_user_id: Option<i64>,
        pipeline_id: Option<i64>,
        status_id: Option<i64>,
    },
    /// `POST /api/v4/leads` linked to an existing contact.
    CreateLead {
        key: WriteKey,
        contact_id: i64,
        lead_name: String,
        responsible_user_id: Option<i64>,
        pipeline_id: Option<i64>,
        status_id: Option<i64>,
    },
    /// `POST /api/v4/leads/unsorted/sip`: an incoming lead carrying the call in its metadata.
    CreateUnsorted { key: WriteKey, call: CallLog, pipeline_id: Option<i64> },
    /// `POST /api/v4/leads/unsorted/{uid}/accept` for the unsorted lead this plan created.
    AcceptUnsorted { key: WriteKey, user_id: Option<i64>, status_id: Option<i64> },
    /// `POST /api/v4/calls` (Kommo picks the entity by the number), or, with a `target`, a call note
    /// on that entity.
    LogCall { key: WriteKey, call: CallLog, target: Option<Target> },
    /// `POST /api/v4/tasks`.
    CreateTask {
        key: WriteKey,
        target: Target,
        text: String,
        /// Unix seconds.
        due_at: i64,
        /// 1 = follow-up.
        task_type_id: i64,
        responsible_user_id: Option<i64>,
    },
    /// A `common` note.
    AddNote { key: WriteKey, target: Target, text: String },
}

impl Action {
    pub fn key(&self) -> WriteKey {
        match self {
            Action::CreateContactAndLead { key, .. }
            | Action::CreateLead { key, .. }
            | Action::CreateUnsorted { key, .. }
            | Action::AcceptUnsorted { key, .. }
            | Action::LogCall { key, .. }
            | Action::CreateTask { key, .. }
            | Action::AddNote { key, .. } => *key,
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
    /// The call went to Kommo with its recording link (the `call.link` of the [`WriteKey::Call`] or
    /// [`WriteKey::Unsorted`] write was set), so no [`WriteKey::RecordingNote`] is needed.
    #[serde(default)]
    pub logged_with_link: bool,
    /// The call went to Kommo with the manager's result (the [`WriteKey::Call`] write's `call_status`
    /// and `call_result` came from a [`CallResult`]), so no [`WriteKey::ResultNote`] is needed.
    #[serde(default)]
    pub logged_with_result: bool,
}

/// The writes for a call, in order. Empty while the call is still going on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Why nothing (or less than the call) goes to Kommo, for the delivery status.
    pub skipped: Option<&'static str>,
}

impl Plan {
    /// Whether a write carries words of [`Texts`] (a lead's name, a note, a task, the result on the call):
    /// only then does the language matter.
    pub fn writes_words(&self) -> bool {
        self.actions.iter().any(|action| match action {
            Action::CreateContactAndLead { .. }
            | Action::CreateLead { .. }
            | Action::CreateTask { .. }
            | Action::AddNote { .. } => true,
            Action::LogCall { call, .. } | Action::CreateUnsorted { call, .. } => call.call_result.is_some(),
            Action::AcceptUnsorted { .. } => false,
        })
    }
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
    /// The words of the notes, tasks and names, in the language of the user the call is for.
    pub texts: &'a Texts,
}

impl CallFacts {
    /// The call is over (ended, missed, busy or failed): only then does anything go to Kommo.
    pub fn is_over(&self) -> bool {
        matches!(self.status, CallStatus::Ended | CallStatus::Missed | CallStatus::Busy | CallStatus::Failed)
    }

    /// The call was missed: it is over and was never answered (a caller who hung up while it rang
    /// ended the call unanswered: for the account, that is a missed call too).
    pub fn is_missed(&self) -> bool {
        !self.answered && self.is_over()
    }

    /// Kommo's `call_status` for the call as the provider reported it (the manager's result overrides
    /// it): a conversation, a busy line, or no connection.
    pub fn kommo_status(&self) -> KommoCallStatus {
        match self.status {
            _ if self.answered => KommoCallStatus::Success,
            CallStatus::Busy => KommoCallStatus::Busy,
            _ => KommoCallStatus::NoConnection,
        }
    }

    /// An incoming call missed by the account (the only missed calls that get a "call back" task).
    fn is_missed_incoming(&self) -> bool {
        self.direction == CallDirection::Inbound && self.is_missed()
    }
}

/// What the server writes into Kommo in words, in one language: the lead's name, the number note, the
/// missed-call task, the result note. Templates hold `#NUMBER#`, `#STATUS#`, `#QUALITY#`. The server
/// reads them from the archive's i18n files (their `server` section), the same files the widget reads,
/// in the language of the Kommo user the call is for; [`Texts::english`] is the fallback of every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub call_from: String,
    pub call_to: String,
    pub called_from: String,
    pub call_back: String,
    pub call_result: String,
    pub quality: String,
    /// The call statuses (Kommo's `call_status` 1–7, in that order) as a note reads them.
    pub statuses: [String; 7],
}

impl Texts {
    /// The i18n keys of the `server` section, with their English texts.
    pub const KEYS: [(&'static str, &'static str); 13] = [
        ("call_from", "Call from #NUMBER#"),
        ("call_to", "Call to #NUMBER#"),
        ("called_from", "Called from #NUMBER#"),
        ("call_back", "Call back #NUMBER#: missed call"),
        ("call_result", "Call result: #STATUS#"),
        ("quality", "Quality: #QUALITY#/5"),
        ("status_1", "left a message"),
        ("status_2", "call back later"),
        ("status_3", "not available"),
        ("status_4", "conversation took place"),
        ("status_5", "wrong number"),
        ("status_6", "did not get through"),
        ("status_7", "line busy"),
    ];

    pub fn english() -> Texts {
        Texts::from_strings(|_| None)
    }

    /// The texts `lookup` gives by key of the `server` section, English where it gives none.
    pub fn from_strings(lookup: impl Fn(&str) -> Option<String>) -> Texts {
        let text = |index: usize| {
            let (key, english) = Texts::KEYS[index];
            lookup(key).filter(|text| !text.trim().is_empty()).unwrap_or_else(|| english.to_owned())
        };
        Texts {
            call_from: text(0),
            call_to: text(1),
            called_from: text(2),
            call_back: text(3),
            call_result: text(4),
            quality: text(5),
            statuses: std::array::from_fn(|index| text(6 + index)),
        }
    }

    fn status(&self, status: KommoCallStatus) -> &str {
        &self.statuses[usize::from(u8::from(status)).saturating_sub(1).min(6)]
    }
}

fn fill(template: &str, placeholder: &str, value: &str) -> String {
    template.replace(placeholder, value)
}

impl CallResult {
    /// The text the call note shows (`call_result`): the manager's note and the quality rating, when
    /// given.
    pub fn call_result_text(&self, texts: &Texts) -> Option<String> {
        let note = self.note.as_deref().map(str::trim).filter(|note| !note.is_empty());
        let quality = self.quality.map(|quality| fill(&texts.quality, "#QUALITY#", &quality.to_string()));
        let parts: Vec<&str> = note.into_iter().chain(quality.as_deref()).collect();
        (!parts.is_empty()).then(|| parts.join(" · "))
    }

    /// The note written when the call reached Kommo before the result: the status too, since the call
    /// already carries the provider's.
    fn note_text(&self, texts: &Texts) -> String {
        let status = fill(&texts.call_result, "#STATUS#", texts.status(self.call_status));
        match self.call_result_text(texts) {
            Some(text) => format!("{status} · {text}"),
            None => status,
        }
    }
}

/// `task_type_id` of Kommo's "Follow-up" task type.
pub const FOLLOW_UP_TASK_TYPE: i64 = 1;

/// Why an outgoing call to an unknown number goes nowhere.
pub const SKIPPED_OUTGOING_UNKNOWN: &str =
    "outgoing call to a number no contact or company has; creating contacts is off";

/// Whether the plan for `call` depends on the active leads of the contact (or company) that has the number
/// (so the server looks them up only then): an incoming call that is over, when the account creates a
/// lead for a contact without one, or links a missed call's task to the lead.
pub fn needs_active_leads(call: &CallFacts, rules: &CallHandling) -> bool {
    call.direction == CallDirection::Inbound
        && call.is_over()
        && (rules.known_incoming.create_lead_when_no_active_lead
            || (call.is_missed() && rules.missed.create_task && rules.missed.link_to_lead))
}

/// How the call reaches Kommo before any follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    /// The manager chose the entity: a call note on it, nothing created.
    Chosen(EntityRef),
    /// An unknown caller becomes an unsorted lead carrying the call.
    Unsorted,
    /// A contact and a lead are created, then the call is logged by number.
    ContactAndLead,
    /// A known contact or company (`entity`): the call is logged by number, after a lead is created for
    /// the contact when `create_lead` (never for a company: Kommo attaches the call to it as it is).
    Known { entity: EntityRef, facts: &'a KnownFacts, create_lead: bool },
    /// Outgoing call to an unknown number with contact creation off: nothing is written.
    Nowhere,
}

/// The Kommo writes for a call.
///
/// Nothing while the call is going on. Before the call is in Kommo: the writes that put it there
/// (created entities, the call) and their follow-ups (accepting the unsorted lead, the number note, the
/// missed-call task, the manager's result and follow-up task). Once `delivered.call_logged`: only the
/// follow-ups, plus the manager's result and the recording link when the call went without them; a
/// follow-up that is already done is skipped by the server by its key.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let PlanInput { call, rules, extensions, kommo, result, delivered, texts } = input;
    if !call.is_over() {
        return Plan::default();
    }
    let user = extensions.user_for(call.extension.as_deref());
    let route = route(call, rules, kommo, result);
    if route == Route::Nowhere && !delivered.call_logged {
        return Plan { actions: Vec::new(), skipped: Some(SKIPPED_OUTGOING_UNKNOWN) };
    }
    let number = phone::display(&call.client_number);
    let lead_name = match call.direction {
        CallDirection::Inbound => fill(&texts.call_from, "#NUMBER#", &number),
        CallDirection::Outbound => fill(&texts.call_to, "#NUMBER#", &number),
    };
    let log = CallLog {
        uniq: call.call_id.clone(),
        direction: call.direction,
        phone: call.client_number.clone(),
        duration: call.duration,
        link: call.recording_url.clone(),
        call_status: result.map_or_else(|| call.kommo_status(), |result| result.call_status),
        call_result: result.and_then(|result| result.call_result_text(texts)),
        user_id: user,
        created_at: call.started_at,
    };
    let mut actions = Vec::new();

    // The call itself.
    if !delivered.call_logged {
        match route {
            Route::Chosen(entity) => {
                actions.push(Action::LogCall { key: WriteKey::Call, call: log, target: Some(Target::Entity(entity)) })
            }
            Route::Unsorted => actions.push(Action::CreateUnsorted {
                key: WriteKey::Unsorted,
                call: log,
                pipeline_id: rules.placement.pipeline_id,
            }),
            Route::ContactAndLead => {
                actions.push(Action::CreateContactAndLead {
                    key: WriteKey::ContactAndLead,
                    phone: call.client_number.clone(),
                    contact_name: number.clone(),
                    lead_name,
                    responsible_user_id: user,
                    pipeline_id: rules.placement.pipeline_id,
                    status_id: rules.placement.status_id,
                });
                actions.push(Action::LogCall { key: WriteKey::Call, call: log, target: None });
            }
            Route::Known { entity, facts, create_lead } => {
                if create_lead {
                    actions.push(Action::CreateLead {
                        key: WriteKey::Lead,
                        contact_id: entity.id,
                        lead_name,
                        responsible_user_id: facts.responsible_user_id.or(user),
                        pipeline_id: rules.placement.pipeline_id,
                        status_id: rules.placement.status_id,
                    });
                }
                actions.push(Action::LogCall { key: WriteKey::Call, call: log, target: None });
            }
            Route::Nowhere => {}
        }
    }

    // Accepting the unsorted lead once the call was answered.
    if route == Route::Unsorted && call.answered && rules.unknown_incoming.unsorted_accept == UnsortedAccept::OnAnswer {
        actions.push(Action::AcceptUnsorted {
            key: WriteKey::Accept,
            user_id: user,
            status_id: rules.placement.status_id,
        });
    }

    // Which of the contact's (or company's) numbers called.
    if let (Some(known), Some(facts)) = (kommo.entity(), kommo.facts())
        && call.direction == CallDirection::Inbound
        && rules.known_incoming.note_number_when_several
        && facts.phone_count > 1
    {
        let target = match route {
            Route::Chosen(entity) => entity,
            _ => known,
        };
        actions.push(Action::AddNote {
            key: WriteKey::NumberNote,
            target: Target::Entity(target),
            text: fill(&texts.called_from, "#NUMBER#", &number),
        });
    }

    // The "call back" task for a missed incoming call.
    if call.is_missed_incoming() && rules.missed.create_task {
        let missed = &rules.missed;
        let target = match route {
            Route::Chosen(entity) => Target::Entity(entity),
            Route::Unsorted | Route::ContactAndLead if missed.link_to_lead => Target::CreatedLead,
            // (`Nowhere` is an outgoing call: never a missed incoming one.)
            Route::Unsorted | Route::ContactAndLead | Route::Nowhere => Target::CreatedContact,
            Route::Known { entity, facts, create_lead } => {
                let active_lead = facts.active_leads.as_deref().and_then(<[LeadFacts]>::first);
                match active_lead {
                    Some(lead) if missed.link_to_lead => {
                        Target::Entity(EntityRef { kind: EntityKind::Leads, id: lead.id })
                    }
                    None if missed.link_to_lead && create_lead => Target::CreatedLead,
                    _ => Target::Entity(entity),
                }
            }
        };
        let responsible = match missed.responsible {
            // A company's responsible when a company has the number.
            TaskResponsible::ContactResponsible => kommo.facts().and_then(|facts| facts.responsible_user_id).or(user),
            TaskResponsible::ExtensionUser => user,
            TaskResponsible::User { user_id } => Some(user_id),
        };
        actions.push(Action::CreateTask {
            key: WriteKey::MissedTask,
            target,
            text: fill(&texts.call_back, "#NUMBER#", &number),
            due_at: call.started_at + i64::from(missed.due_in_minutes) * 60,
            task_type_id: FOLLOW_UP_TASK_TYPE,
            responsible_user_id: responsible,
        });
    }

    // Where the manager's result, follow-up and a late recording go: where the call is.
    let call_target = match (delivered.call_logged, route) {
        (true, _) => delivered.entity.map_or(Target::CallEntity, Target::Entity),
        (false, Route::Chosen(entity)) => Target::Entity(entity),
        (false, Route::Unsorted) => Target::CreatedLead,
        (false, _) => Target::CallEntity,
    };

    if let Some(result) = result {
        // The call carries the result, except an unsorted lead (its call has no result field) and a
        // call already in Kommo without it.
        let carried = if delivered.call_logged { delivered.logged_with_result } else { route != Route::Unsorted };
        if !carried {
            actions.push(Action::AddNote {
                key: WriteKey::ResultNote,
                target: call_target,
                text: result.note_text(texts),
            });
        }
        if let Some(follow_up) = &result.follow_up {
            actions.push(Action::CreateTask {
                key: WriteKey::ResultTask,
                target: call_target,
                text: follow_up.text.clone(),
                due_at: follow_up.due_at,
                task_type_id: FOLLOW_UP_TASK_TYPE,
                responsible_user_id: user,
            });
        }
    }

    if delivered.call_logged
        && !delivered.logged_with_link
        && let Some(link) = &call.recording_url
    {
        actions.push(Action::AddNote {
            key: WriteKey::RecordingNote,
            target: call_target,
            text: format!("Call recording: {link}"),
        });
    }

    Plan { actions, skipped: None }
}

fn route<'a>(call: &CallFacts, rules: &CallHandling, kommo: &'a Knowledge, result: Option<&CallResult>) -> Route<'a> {
    if let Some(entity) = result.and_then(|result| result.entity) {
        return Route::Chosen(entity);
    }
    match (kommo, call.direction) {
        (Knowledge::Contact(facts), direction) => {
            // Leads not looked up: no lead is created on a guess.
            let no_active_lead = facts.active_leads.as_ref().is_some_and(Vec::is_empty);
            let create_lead = direction == CallDirection::Inbound
                && rules.known_incoming.create_lead_when_no_active_lead
                && no_active_lead;
            Route::Known { entity: EntityRef { kind: EntityKind::Contacts, id: facts.id }, facts, create_lead }
        }
        // The call lands on the company (or its one active lead); a new lead would be a contact's.
        (Knowledge::Company(facts), _) => {
            Route::Known { entity: EntityRef { kind: EntityKind::Companies, id: facts.id }, facts, create_lead: false }
        }
        (Knowledge::Unknown, CallDirection::Inbound) => match rules.unknown_incoming.create {
            UnknownCallerEntity::Unsorted => Route::Unsorted,
            UnknownCallerEntity::ContactAndLead => Route::ContactAndLead,
        },
        (Knowledge::Unknown, CallDirection::Outbound) if rules.outgoing_new.create_contact_and_lead => {
            Route::ContactAndLead
        }
        (Knowledge::Unknown, CallDirection::Outbound) => Route::Nowhere,
    }
}

#[cfg(test)]
mod tests {
    use super::WriteKey;

    /// The stored strings, pinned: renaming a variant must not change what deployments' ledgers hold.
    #[test]
    fn write_keys_keep_their_stored_strings() {
        let stored = [
            (WriteKey::Call, "call"),
            (WriteKey::Unsorted, "unsorted"),
            (WriteKey::ContactAndLead, "contact_and_lead"),
            (WriteKey::Lead, "lead"),
            (WriteKey::Accept, "accept"),
            (WriteKey::NumberNote, "number_note"),
            (WriteKey::MissedTask, "missed_task"),
            (WriteKey::ResultNote, "result_note"),
            (WriteKey::ResultTask, "result_task"),
            (WriteKey::RecordingNote, "recording_note"),
        ];
        assert_eq!(stored.map(|(key, _)| key), WriteKey::ALL, "every key pinned, in order");
        for (key, text) in stored {
            assert_eq!(key.as_str(), text);
            assert_eq!(key.to_string(), text);
            assert_eq!(WriteKey::parse(text), Some(key));
            assert_eq!(serde_json::to_value(key).unwrap(), serde_json::json!(text), "serialized as stored");
            assert_eq!(serde_json::from_value::<WriteKey>(serde_json::json!(text)).unwrap(), key);
        }
    }

    #[test]
    fn parse_takes_back_what_as_str_gives_and_nothing_else() {
        for key in WriteKey::ALL {
            assert_eq!(WriteKey::parse(key.as_str()), Some(key));
        }
        // The server's knowledge snapshot shares the ledger but is no write.
        for other in ["knowledge", "", "Call", "call ", "contact-and-lead", "sms"] {
            assert_eq!(WriteKey::parse(other), None, "{other:?}");
        }
        assert!(serde_json::from_value::<WriteKey>(serde_json::json!("knowledge")).is_err());
    }
}
