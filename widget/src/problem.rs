//! What went wrong with a request to our server, in the terms a form shows: shared by the settings
//! module and the call-result modal, which are built into different wasm modules.

use serde_json::Value;
use shared::ValidationCode;
use shared::api::{ConnectionState, ErrorBody};

/// A failure that is not about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Unauthorized,
    Server,
    Network,
    LoadFailed,
    /// The account's Kommo connection is not usable (not installed, expired, suspended, disabled):
    /// the connection section says what to do.
    Connection(ConnectionState),
    /// Kommo itself is not answering for now.
    KommoUnavailable,
    /// This Kommo user is not an administrator of the account.
    AdminOnly,
}

impl Problem {
    /// Classifies a failed reply by status and error code; `fallback` stands for any other failure.
    pub fn from_reply(status: u16, body: &Value, fallback: Problem) -> Problem {
        let code = serde_json::from_value::<ErrorBody>(body.clone()).map(|body| body.error.code).unwrap_or_default();
        match (status, code.as_str()) {
            (0, _) => Problem::Network,
            (401, "not_installed") | (409, "kommo_not_connected") => Problem::Connection(ConnectionState::NotInstalled),
            (401, _) => Problem::Unauthorized,
            (409, "kommo_needs_reauth") => Problem::Connection(ConnectionState::NeedsReauth),
            (409, "kommo_suspended") => Problem::Connection(ConnectionState::Suspended),
            (503, "kommo_unavailable") => Problem::KommoUnavailable,
            (403, "admin_only") => Problem::AdminOnly,
            _ => fallback,
        }
    }
}

/// The i18n key under `errors` for a validation code (its wire spelling, by contract).
pub fn error_key(code: ValidationCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "server".to_owned())
}
