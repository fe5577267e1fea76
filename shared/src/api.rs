//! Wire types of the widget API (`/widget/v1/*`), the push channel, and the one JSON error envelope.
//! The server serialises them, the widget deserialises them: both sides compile this file.

use serde::{Deserialize, Serialize};

use crate::{CallDirection, CallStatus, FieldError};

/// Paths of the widget API, relative to the server's public base URL.
pub mod paths {
    pub const SETTINGS: &str = "/widget/v1/settings";
    pub const SETTINGS_CHECK: &str = "/widget/v1/settings/check";
    pub const WEBHOOK_SECRET: &str = "/widget/v1/settings/webhook-secret";
    /// `POST`: the webhook address and the current signing secret, for an admin to paste into the
    /// provider again (answered with `Cache-Control: no-store`).
    pub const WEBHOOK_REVEAL: &str = "/widget/v1/settings/webhook/reveal";
    pub const PUSH_TICKET: &str = "/widget/v1/push/ticket";
    pub const PUSH_EVENTS: &str = "/widget/v1/push/events";
    pub const CONNECTION: &str = "/widget/v1/connection";
    pub const USERS: &str = "/widget/v1/users";
    /// `GET`: what the widget does in every user's browser (`WidgetBehaviour`: ringing sound, the
    /// call-result modal, quality rating, auto-open), readable by any user of the account.
    pub const CALL_OPTIONS: &str = "/widget/v1/calls/options";
    /// `POST`: the manager's call result for a call (`{call_id}` is the provider's call id).
    pub const CALL_RESULT: &str = "/widget/v1/calls/{call_id}/result";
    /// `GET`: this user's calls still in progress (`ActiveCalls`).
    pub const ACTIVE_CALLS: &str = "/widget/v1/calls/active";
    /// `GET`: the account's Kommo deliveries that failed for good (dead letters).
    pub const FAILED_DELIVERIES: &str = "/widget/v1/deliveries/failed";
    /// `POST`: queue a failed delivery again.
    pub const RETRY_DELIVERY: &str = "/widget/v1/deliveries/failed/{id}/retry";
    /// `POST` [`OriginateRequest`] → [`Originated`]: click-to-call; the provider rings the current
    /// user's extension and connects it to the number.
    pub const ORIGINATE: &str = "/widget/v1/calls/originate";
    /// `POST` [`NewCallList`] → 201 [`CallListView`]: a call list for the current user (it replaces the
    /// user's unfinished one).
    pub const CALL_LISTS: &str = "/widget/v1/call-lists";
    /// `GET` → [`CurrentCallList`]: the current user's unfinished call list, or the one that ended last.
    pub const CURRENT_CALL_LIST: &str = "/widget/v1/call-lists/current";
    /// `POST` [`CallListCommand`] → [`CallListView`]: start, pause, resume, skip, stop, or dial the next
    /// entry (refused with 409 `not_due` until its time).
    pub const CALL_LIST_COMMAND: &str = "/widget/v1/call-lists/{id}/command";
}

/// Error codes (`ErrorDetail::code`) of click-to-call and call lists, each with its text in the i18n
/// section `dialer` under the same key.
pub mod dial_errors {
    /// The integration is turned off in the settings (409).
    pub const INTEGRATION_OFF: &str = "integration_off";
    /// No extension is mapped to the current user in the settings (409).
    pub const NO_EXTENSION: &str = "no_extension";
    /// The number cannot be dialled (400).
    pub const INVALID_NUMBER: &str = "invalid_number";
    /// The user's previous call is still being placed (429).
    pub const ALREADY_DIALING: &str = "already_dialing";
    /// The provider refused the call: credentials, the extension, the number (502).
    pub const PROVIDER_REFUSED: &str = "provider_refused";
    /// The provider could not be reached, or failed (504).
    pub const PROVIDER_UNREACHABLE: &str = "provider_unreachable";
    /// Call lists are turned off, or not from this Kommo list (403).
    pub const CALL_LISTS_OFF: &str = "call_lists_off";
    /// The next entry is not due yet: the call is in progress, its result is awaited, or the interval
    /// has not passed (409, with `retry_in_ms` when the time is known).
    pub const NOT_DUE: &str = "not_due";
    /// The list changed meanwhile (another tab dialled, skipped or stopped it): read it again (409).
    pub const STALE: &str = "stale";
    /// The list is not running (409).
    pub const NOT_RUNNING: &str = "not_running";
    /// An entry's call was accepted by the provider but never reported (no event within two minutes).
    pub const NOT_REPORTED: &str = "not_reported";
}

/// `POST /widget/v1/calls/originate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginateRequest {
    /// The number as Kommo shows it (any format the account's country reads).
    pub to: String,
}

/// The provider accepted to place the call: it rings the user's extension first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Originated {
    /// The provider's call id (the call's events carry the same).
    pub call_id: String,
    /// The number dialled, in E.164.
    pub to: String,
    /// The number for people to read.
    pub to_shown: String,
    /// The extension that rings first.
    pub extension: String,
}

/// Most entries a call list holds (Kommo's list page shows at most 250 rows).
pub const MAX_CALL_LIST_ENTRIES: usize = 250;

/// `POST /widget/v1/call-lists`: the entities selected in one of Kommo's lists, in the list's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCallList {
    pub source: crate::integration::ListSource,
    /// Kommo ids, 1..=[`MAX_CALL_LIST_ENTRIES`], each once.
    pub ids: Vec<i64>,
}

/// `GET /widget/v1/call-lists/current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentCallList {
    /// The user's unfinished list, else the one that ended last (for its report); none when the user has
    /// no list.
    pub list: Option<CallListView>,
}

/// Where a call list stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallListState {
    /// Made, not started.
    Ready,
    /// Dialling: each entry after the previous call ended (and its result, when asked), and the interval.
    Running,
    Paused,
    /// Every entry was dialled or skipped.
    Finished,
    /// The manager stopped it; what was not dialled stays `pending`.
    Stopped,
}

impl CallListState {
    pub const ALL: [CallListState; 5] = [
        CallListState::Ready,
        CallListState::Running,
        CallListState::Paused,
        CallListState::Finished,
        CallListState::Stopped,
    ];

    /// Still to be worked on (the one list a user has open).
    pub fn is_open(self) -> bool {
        matches!(self, CallListState::Ready | CallListState::Running | CallListState::Paused)
    }

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallListState::Ready => "ready",
            CallListState::Running => "running",
            CallListState::Paused => "paused",
            CallListState::Finished => "finished",
            CallListState::Stopped => "stopped",
        }
    }

    pub fn parse(name: &str) -> Option<CallListState> {
        CallListState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

/// A call list as its manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallListView {
    pub id: i64,
    pub source: crate::integration::ListSource,
    pub state: CallListState,
    /// The next entry to dial (an index into `entries`; `entries.len()` when none is left).
    pub next: u32,
    /// The entry dialled last, while its call and result are the list's business.
    pub current: Option<u32>,
    /// Unix milliseconds when the next entry may be dialled, when known (running, the last call ended,
    /// its result given when asked). The widget dials then; the server refuses earlier.
    pub next_dial_at_ms: Option<i64>,
    /// Why the list waits, when it does.
    pub waiting_for: Option<CallListWait>,
    /// The pause between calls the admin set, in seconds.
    pub interval_secs: u32,
    pub entries: Vec<CallListEntryView>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What a running list waits for before its next dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallListWait {
    /// The provider has not reported the end of the current call.
    CallEnd,
    /// The account asks for call results: the manager has not sent the current call's.
    CallResult,
    /// The interval after the last call.
    Interval,
}

/// One entity of a call list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallListEntryView {
    /// The Kommo entity (`contacts`, `companies` or `leads`, as the list's source) and its name.
    pub entity_id: i64,
    pub name: String,
    /// For a lead, the contact (or company) whose number is dialled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The number dialled, for people to read; none when the entity has no number.
    pub number: Option<String>,
    pub state: CallListEntryState,
    /// The provider's call id, once dialled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// Seconds of conversation of an answered call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Why dialling failed (a [`dial_errors`] code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallListEntryState {
    /// Not dialled (yet).
    Pending,
    /// Dialled; the call is not over.
    Calling,
    Answered,
    /// The call ended unanswered.
    NotAnswered,
    /// The provider refused the call or could not be reached (`error` says which).
    Failed,
    /// Skipped by the manager.
    Skipped,
    /// The entity has no phone number: skipped when its turn came.
    NoNumber,
}

impl CallListEntryState {
    pub const ALL: [CallListEntryState; 7] = [
        CallListEntryState::Pending,
        CallListEntryState::Calling,
        CallListEntryState::Answered,
        CallListEntryState::NotAnswered,
        CallListEntryState::Failed,
        CallListEntryState::Skipped,
        CallListEntryState::NoNumber,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallListEntryState::Pending => "pending",
            CallListEntryState::Calling => "calling",
            CallListEntryState::Answered => "answered",
            CallListEntryState::NotAnswered => "not_answered",
            CallListEntryState::Failed => "failed",
            CallListEntryState::Skipped => "skipped",
            CallListEntryState::NoNumber => "no_number",
        }
    }

    pub fn parse(name: &str) -> Option<CallListEntryState> {
        CallListEntryState::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// The entry's call is over, or it will never be dialled.
    pub fn is_settled(self) -> bool {
        !matches!(self, CallListEntryState::Pending | CallListEntryState::Calling)
    }
}

/// `POST /widget/v1/call-lists/{id}/command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallListCommand {
    pub action: CallListAction,
    /// The list's `next` as the widget saw it: `dial` and `skip` are refused (409 `stale`) when it moved
    /// meanwhile, so two tabs never dial or skip one entry twice.
    pub next: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallListAction {
    Start,
    Pause,
    Resume,
    /// Skip the next entry.
    Skip,
    Stop,
    /// Dial the next entry (when due).
    Dial,
}

/// A Kommo delivery that failed for good (a dead letter), as the account's admin and the operator see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedDelivery {
    /// The job's id (what the retry path takes).
    pub id: i64,
    /// The provider's call id.
    pub call_id: String,
    pub attempts: u32,
    /// The last error, as the server logged it (never a secret).
    pub last_error: Option<String>,
    /// Unix seconds of the last attempt.
    pub failed_at: i64,
}

/// Where the account's connection to Kommo stands, as the settings UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Kommo has not (yet) sent us an authorization for this account.
    NotInstalled,
    Installed,
    /// Kommo refused our refresh token: an admin must re-authorize.
    NeedsReauth,
    /// Kommo answered 402/403 (subscription ended or access blocked).
    Suspended,
    /// The integration was disabled in Kommo.
    Disabled,
}

/// `GET /widget/v1/connection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub state: ConnectionState,
    pub subdomain: String,
    /// Why the account is not connected, when Kommo told us.
    pub reason: Option<String>,
    /// Opens Kommo's consent page to (re-)authorize the integration.
    pub reauthorize_url: String,
    /// Where the account's phone index stands; absent when the server keeps none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_index: Option<PhoneIndexView>,
}

/// The account's phone index (the contacts and companies mirrored from Kommo) as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PhoneIndexView {
    /// Not started yet (it starts shortly after the integration is saved on).
    Waiting,
    /// The first sync is reading the account's contacts and companies.
    Syncing { read: i64 },
    /// Complete: callers are known from this many numbers.
    Ready { numbers: i64 },
}

/// One active Kommo user, for the extension mapping and the popup's audience (`GET /widget/v1/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KommoUserView {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    /// The user's Kommo user group (`rights.group_id` and its name); left out when the user has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<KommoGroupView>,
}

/// A Kommo user group, as its users are listed with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KommoGroupView {
    pub id: i64,
    pub name: String,
}

/// A short-lived, single-use ticket that opens the push stream (`EventSource` cannot send headers,
/// so the disposable JWT is exchanged for this through `$authorizedAjax`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTicket {
    pub ticket: String,
    pub expires_in: u64,
}

/// Name of the server-sent event that carries an [`IncomingCall`].
pub const CALL_EVENT: &str = "call";

/// What the incoming-call popup shows; sent as the `data` of a `call` server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingCall {
    /// The provider event's place in the server's inbox (also the server-sent event's `id`, what a
    /// reconnecting stream resumes after). A later event of a call has a larger id; an event without
    /// one only tells who is calling (`caller`) and changes nothing else of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i64>,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    pub extension: Option<String>,
    /// Inbound (the default) or outbound, as the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CallDirection>,
    /// Who is calling, when the server knew it in time; absent, the popup shows the number and a later
    /// event of the same call brings the rest (a card keeps what an earlier event told it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    /// Our line (`to` of an inbound call, `from` of an outbound one) as people of the account write it;
    /// sent with `caller` (a card keeps it like the caller), else the card shows the line as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_shown: Option<String>,
}

impl IncomingCall {
    /// The client's number (the caller of an inbound call, the callee of an outbound one).
    pub fn client_number(&self) -> &str {
        self.direction.unwrap_or(CallDirection::Inbound).client_and_line(&self.from, &self.to).0
    }

    /// Our line (the number called on an inbound call, the caller ID of an outbound one).
    pub fn line_number(&self) -> &str {
        self.direction.unwrap_or(CallDirection::Inbound).client_and_line(&self.from, &self.to).1
    }
}

/// Who is calling, from what the account's Kommo knows of the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The client's number for people to read, formatted for the account's country.
    pub number: String,
    pub known: CallerKnown,
    /// The contact that has the number (the most recently updated one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<EntityLink>,
    /// The contact's company, or the company that has the number when no contact has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<EntityLink>,
    /// Open leads of the contact (or company), most recent first, at most [`MAX_CALLER_LEADS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leads: Vec<LeadSummary>,
    /// The name of the Kommo user responsible for the contact (or company).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<String>,
    /// Calls with this number this server handled before (finished ones).
    pub earlier_calls: u32,
}

/// Open leads a caller's popup lists at most.
pub const MAX_CALLER_LEADS: usize = 3;

/// Whether the number is known to Kommo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKnown {
    /// A contact or company has the number.
    Known,
    /// Kommo has no contact or company with the number.
    Unknown,
    /// Kommo did not answer in time (or refused): the popup shows the number only.
    Unavailable,
}

impl CallerKnown {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKnown::Known => "known",
            CallerKnown::Unknown => "unknown",
            CallerKnown::Unavailable => "unavailable",
        }
    }
}

/// A Kommo entity the popup links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityLink {
    pub id: i64,
    pub name: String,
}

/// An open lead as the popup lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadSummary {
    pub id: i64,
    pub name: String,
    /// The pipeline's and the stage's names, when Kommo told them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The lead's budget, in the account's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
}

/// `GET /widget/v1/calls/active`: the calls of this user still in progress (a reload or a new tab
/// shows them again), with `last_event_id` to resume the push stream from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCalls {
    pub calls: Vec<IncomingCall>,
    pub last_event_id: Option<i64>,
    /// The id of this user's open call list (ready, running or paused), so that the page shows its dialer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_list: Option<i64>,
}

/// The one error envelope every endpoint answers with: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation`, `unauthorized`, `not_found`.
    pub code: String,
    /// Human-readable English message; safe to show, never carries secrets or internals.
    pub message: String,
    /// Field-level refusals for `validation` errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// `POST /widget/v1/settings/check`: the provider accepted the credentials, for this account of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCheck {
    pub account_id: String,
    pub name: String,
}

#[cfg(test)]
mod call_list_tests {
    use super::{CallListEntryState, CallListState};

    #[test]
    fn call_list_states_read_as_their_wire_names() {
        for state in CallListState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(CallListState::parse(state.as_str()), Some(state));
        }
        for state in CallListEntryState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(CallListEntryState::parse(state.as_str()), Some(state));
        }
    }
}

#[cfg(test)]
mod caller_tests {
    use super::CallerKnown;

    #[test]
    fn a_callers_known_state_reads_as_its_wire_name() {
        for known in [CallerKnown::Known, CallerKnown::Unknown, CallerKnown::Unavailable] {
            assert_eq!(serde_json::to_value(known).unwrap(), known.as_str());
        }
    }
}
