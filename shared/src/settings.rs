//! The integration's settings as an admin edits them, and the validation rules that both the
//! widget (before sending) and the server (on receipt) apply.

use serde::{Deserialize, Serialize};

/// Longest VoIP login we accept.
pub const MAX_LOGIN_LEN: usize = 128;
/// Longest VoIP password we accept.
pub const MAX_PASSWORD_LEN: usize = 256;

/// The settings an admin submits from the settings modal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// Kommo's `active` flag from `onSave({active})`: `true` for `'Y'`.
    pub active: bool,
    pub voip_login: String,
    /// `None` keeps the password already stored on the server (it is never sent back to the browser).
    #[serde(default)]
    pub voip_password: Option<String>,
}

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
}

impl ValidationCode {
    /// Every code, for tests and documents that must cover them all.
    pub const ALL: [ValidationCode; 17] = [
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
        ValidationCode::Incomplete,
        ValidationCode::TooMany,
        ValidationCode::InvalidExtension,
        ValidationCode::CredentialsRefused,
        ValidationCode::Unreachable,
        ValidationCode::ProviderError,
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
            ValidationCode::Incomplete => "Fill in this field too, or clear the related one.",
            ValidationCode::TooMany => "This list has too many entries.",
            ValidationCode::InvalidExtension => "An extension may contain only digits, *, # and +.",
            ValidationCode::CredentialsRefused => "The VoIP provider refused these credentials.",
            ValidationCode::Unreachable => "The VoIP provider did not answer at this address.",
            ValidationCode::ProviderError => "The VoIP provider answered with an error; try again later.",
        }
    }
}

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field's name as in [`SettingsInput`] (`active`, `voip_login`, `voip_password`), or its JSON path
    /// in [`crate::integration::IntegrationSettings`] (`credentials.login`, `extensions.entries[2].user_id`).
    pub field: String,
    pub code: ValidationCode,
}

impl FieldError {
    fn new(field: &str, code: ValidationCode) -> Self {
        FieldError { field: field.to_owned(), code }
    }
}

impl SettingsInput {
    /// Validates the input. `password_on_file` says whether the server already holds a password
    /// for this account, in which case an omitted password means "keep it".
    ///
    /// Returns every refused field, in form order, so the UI can show all of them at once.
    pub fn validate(&self, password_on_file: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.active {
            errors.push(FieldError::new("active", ValidationCode::NotActive));
        }
        if let Some(code) = check_text(&self.voip_login, MAX_LOGIN_LEN) {
            errors.push(FieldError::new("voip_login", code));
        }
        let password_code = match &self.voip_password {
            Some(password) => check_text(password, MAX_PASSWORD_LEN),
            None if password_on_file => None,
            None => Some(ValidationCode::Required),
        };
        if let Some(code) = password_code {
            errors.push(FieldError::new("voip_password", code));
        }
        errors
    }
}

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

    fn input(active: bool, login: &str, password: Option<&str>) -> SettingsInput {
        SettingsInput { active, voip_login: login.into(), voip_password: password.map(Into::into) }
    }

    #[test]
    fn settings_validation_table() {
        let long_login = "a".repeat(MAX_LOGIN_LEN + 1);
        let long_password = "p".repeat(MAX_PASSWORD_LEN + 1);
        type Expected = Vec<(&'static str, ValidationCode)>;
        let cases: Vec<(SettingsInput, bool, Expected)> = vec![
            (input(true, "alice", Some("secret")), false, vec![]),
            (input(true, "alice", None), true, vec![]),
            (input(true, "alice", None), false, vec![("voip_password", Required)]),
            (input(true, "", Some("secret")), false, vec![("voip_login", Required)]),
            (input(true, "   ", Some("  ")), false, vec![("voip_login", Required), ("voip_password", Required)]),
            (input(false, "alice", Some("secret")), false, vec![("active", NotActive)]),
            (
                input(true, &long_login, Some(&long_password)),
                false,
                vec![("voip_login", TooLong), ("voip_password", TooLong)],
            ),
            (input(true, &"a".repeat(MAX_LOGIN_LEN), Some("s")), false, vec![]),
            (
                input(true, "ali\u{0}ce", Some("se\ncret")),
                false,
                vec![("voip_login", ControlCharacters), ("voip_password", ControlCharacters)],
            ),
            (
                input(false, "", None),
                false,
                vec![("active", NotActive), ("voip_login", Required), ("voip_password", Required)],
            ),
        ];
        for (settings, on_file, expected) in cases {
            let got: Vec<(String, ValidationCode)> =
                settings.validate(on_file).into_iter().map(|e| (e.field, e.code)).collect();
            let expected: Vec<(String, ValidationCode)> =
                expected.into_iter().map(|(f, c)| (f.to_owned(), c)).collect();
            assert_eq!(got, expected, "for {settings:?} (password on file: {on_file})");
        }
    }

    #[test]
    fn all_lists_every_code_once() {
        // A new variant fails to compile here until it is named, the reminder to add it to ALL; the
        // assertion checks that no code is listed twice.
        let position = |code: ValidationCode| match code {
            Required | TooLong | NotActive | ControlCharacters | InvalidUrl | NotHttps | CredentialsInUrl
            | ForbiddenAddress | OutOfRange | Duplicate | UnknownUser | Incomplete | TooMany | InvalidExtension
            | CredentialsRefused | Unreachable | ProviderError => ValidationCode::ALL.iter().position(|c| *c == code),
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
    fn unknown_settings_fields_are_refused() {
        let body = r#"{"active":true,"voip_login":"a","voip_password":"b","account_id":5}"#;
        assert!(serde_json::from_str::<SettingsInput>(body).is_err());
    }
}
