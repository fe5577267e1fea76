//! Validation vocabulary shared by the widget and the server: why a field was refused
//! (`ValidationCode`, also the i18n key), the refusal itself (`FieldError`), and the text check the
//! settings rules (`crate::integration`) apply to every free-text field.

use serde::{Deserialize, Serialize};

/// Longest VoIP login we accept.
pub const MAX_LOGIN_LEN: usize = 128;
/// Longest VoIP password we accept.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Why a field was refused. The wire form (`snake_case`) is also the key of the message in the
/// widget's `i18n/*.json` under `errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationCode {
    Required,
    TooLong,
    NotActive,
    ControlCharacters,
    /// Not a URL we can read: `https://host[:port][/path]`, ASCII only, no query or fragment.
    InvalidUrl,
    /// The scheme is not `https`.
    NotHttps,
    /// A URL carries a login or password (`user:pass@`); they belong in their own fields.
    CredentialsInUrl,
    /// The host is a loopback, private, link-local, metadata or otherwise non-public address or name.
    ForbiddenAddress,
    /// A number outside its allowed range (including non-positive ids).
    OutOfRange,
    /// The same value appears twice where it must be unique.
    Duplicate,
    /// The user is not among the account's active Kommo users.
    UnknownUser,
    /// No active user of the account is in this Kommo user group (or it no longer exists).
    UnknownGroup,
    /// One of two fields that go together is missing.
    Incomplete,
    /// A list has more entries than allowed.
    TooMany,
    /// An extension holds something other than digits, `*`, `#` and `+`.
    InvalidExtension,
    /// The VoIP provider refused the login and password or the API key (the server's check).
    CredentialsRefused,
    /// The VoIP provider did not answer at that address (the server's check).
    Unreachable,
    /// The VoIP provider answered with an error (the server's check).
    ProviderError,
    /// The chosen Kommo card is not tied to the call's number (the server's check of a call result).
    NotTiedToCall,
    /// The choice is not offered: a telephony system this server has no adapter for, or a sign-in method
    /// the chosen system does not take.
    NotAvailable,
}

impl ValidationCode {
    /// Every code, for tests and documents that must cover them all.
    pub const ALL: [ValidationCode; 20] = [
        ValidationCode::Required,
        ValidationCode::TooLong,
        ValidationCode::NotActive,
        ValidationCode::ControlCharacters,
        ValidationCode::InvalidUrl,
        ValidationCode::NotHttps,
        ValidationCode::CredentialsInUrl,
        ValidationCode::ForbiddenAddress,
        ValidationCode::OutOfRange,
        ValidationCode::Duplicate,
        ValidationCode::UnknownUser,
        ValidationCode::UnknownGroup,
        ValidationCode::Incomplete,
        ValidationCode::TooMany,
        ValidationCode::InvalidExtension,
        ValidationCode::CredentialsRefused,
        ValidationCode::Unreachable,
        ValidationCode::ProviderError,
        ValidationCode::NotTiedToCall,
        ValidationCode::NotAvailable,
    ];

    /// English text for logs and API clients that do not localise.
    pub fn message(self) -> &'static str {
        match self {
            ValidationCode::Required => "This field is required.",
            ValidationCode::TooLong => "This value is too long.",
            ValidationCode::NotActive => "The widget must be active to be configured.",
            ValidationCode::ControlCharacters => "This value contains invisible control characters.",
            ValidationCode::InvalidUrl => "This is not a valid address (https://host/path, without ? or #).",
            ValidationCode::NotHttps => "The address must start with https://.",
            ValidationCode::CredentialsInUrl => "Put the login and password in their own fields, not in the address.",
            ValidationCode::ForbiddenAddress => "This address is not reachable from the internet and cannot be used.",
            ValidationCode::OutOfRange => "This value is out of the allowed range.",
            ValidationCode::Duplicate => "This value is already used in another row.",
            ValidationCode::UnknownUser => "This user is not an active user of the Kommo account.",
            ValidationCode::UnknownGroup => "No active user of the Kommo account is in this group.",
            ValidationCode::Incomplete => "Fill in this field too, or clear the related one.",
            ValidationCode::TooMany => "This list has too many entries.",
            ValidationCode::InvalidExtension => "An extension may contain only digits, *, # and +.",
            ValidationCode::CredentialsRefused => "The VoIP provider refused these credentials.",
            ValidationCode::Unreachable => "The VoIP provider did not answer at this address.",
            ValidationCode::ProviderError => "The VoIP provider answered with an error; try again later.",
            ValidationCode::NotTiedToCall => "This card has nothing to do with the call's number; choose another.",
            ValidationCode::NotAvailable => "This choice is not available here.",
        }
    }
}

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field's JSON path in [`crate::integration::IntegrationSettings`] (`credentials.login`,
    /// `extensions.entries[2].user_id`).
    pub field: String,
    pub code: ValidationCode,
}

/// The rule every free-text field follows: present, bounded, and without control characters.
pub(crate) fn check_text(value: &str, max_len: usize) -> Option<ValidationCode> {
    if value.trim().is_empty() {
        return Some(ValidationCode::Required);
    }
    if value.chars().count() > max_len {
        return Some(ValidationCode::TooLong);
    }
    if value.chars().any(char::is_control) {
        return Some(ValidationCode::ControlCharacters);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValidationCode::*;

    #[test]
    fn all_lists_every_code_once() {
        // A new variant fails to compile here until it is named, the reminder to add it to ALL; the
        // assertion checks that no code is listed twice.
        let position = |code: ValidationCode| match code {
            Required | TooLong | NotActive | ControlCharacters | InvalidUrl | NotHttps | CredentialsInUrl
            | ForbiddenAddress | OutOfRange | Duplicate | UnknownUser | UnknownGroup | Incomplete | TooMany
            | InvalidExtension | CredentialsRefused | Unreachable | ProviderError | NotTiedToCall | NotAvailable => {
                ValidationCode::ALL.iter().position(|c| *c == code)
            }
        };
        let listed: std::collections::BTreeSet<usize> =
            ValidationCode::ALL.iter().filter_map(|c| position(*c)).collect();
        assert_eq!(listed.len(), ValidationCode::ALL.len(), "no code is listed twice");
    }

    #[test]
    fn validation_codes_use_the_i18n_key_spelling() {
        assert_eq!(serde_json::to_string(&NotActive).unwrap(), "\"not_active\"");
        assert_eq!(serde_json::to_string(&ControlCharacters).unwrap(), "\"control_characters\"");
    }

    #[test]
    fn free_text_is_required_bounded_and_visible() {
        let cases = [
            ("alice", 8, None),
            ("", 8, Some(Required)),
            ("   ", 8, Some(Required)),
            ("12345678", 8, None),
            ("123456789", 8, Some(TooLong)),
            ("ali\u{0}ce", 8, Some(ControlCharacters)),
            ("se\ncret", 8, Some(ControlCharacters)),
        ];
        for (value, max_len, expected) in cases {
            assert_eq!(check_text(value, max_len), expected, "{value:?}");
        }
    }
}
