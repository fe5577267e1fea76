//! Wire types of the widget API (`/widget/v1/*`), the push channel, and the one JSON error envelope.
//! The server serialises them, the widget deserialises them: both sides compile this file.

use serde::{Deserialize, Serialize};

use crate::{CallStatus, FieldError};

/// Paths of the widget API, relative to the server's public base URL.
pub mod paths {
    pub const SETTINGS: &str = "/widget/v1/settings";
    pub const PUSH_TICKET: &str = "/widget/v1/push/ticket";
    pub const PUSH_EVENTS: &str = "/widget/v1/push/events";
}

/// The settings as the server shows them back: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SettingsView {
    pub active: bool,
    pub voip_login: String,
    /// Whether a VoIP password is stored (it is never returned).
    pub has_password: bool,
    /// The URL to paste into the VoIP provider, once settings have been saved.
    pub webhook_url: Option<String>,
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
