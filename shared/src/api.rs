//! Wire types of the widget API (`/widget/v1/*`), the push channel, and the one JSON error envelope.
//! The server serialises them, the widget deserialises them: both sides compile this file.

use serde::{Deserialize, Serialize};

use crate::{CallStatus, FieldError};

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
    /// `GET`: the account's Kommo deliveries that failed for good (dead letters).
    pub const FAILED_DELIVERIES: &str = "/widget/v1/deliveries/failed";
    /// `POST`: queue a failed delivery again.
    pub const RETRY_DELIVERY: &str = "/widget/v1/deliveries/failed/{id}/retry";
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
}

/// One active Kommo user, for the extension mapping (`GET /widget/v1/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KommoUserView {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
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
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    pub extension: Option<String>,
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
