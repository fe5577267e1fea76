//! What the settings form holds as the admin types (text as typed), and how it becomes the
//! `IntegrationSettings` the server stores.

use shared::VoipCredentials;
use shared::api::{KommoGroupView, KommoUserView};
use shared::integration::{
    CredentialMethod, ExtensionEntry, LeadPlacement, ListSource, ProviderSystem, TaskResponsible, ValidationContext,
    VoipCredentialsView,
};
use shared::{CallHandling, ExtensionMap, FieldError, IntegrationSettings, IntegrationSettingsView, ValidationCode};

/// Who a missed-call task goes to, as the form's radios choose it (the user itself is a separate select).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponsibleChoice {
    #[default]
    ContactResponsible,
    ExtensionUser,
    User,
}

/// One row of the extension map; `id` keys the row while rows are added and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionRow {
    pub id: u32,
    pub extension: String,
    /// The chosen user's id as the select holds it; empty while none is chosen.
    pub user_id: String,
}

/// Every value of the form. Numbers and user ids are kept as typed or selected; [`FormValues::build`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormValues {
    /// The telephony system the account runs.
    pub system: ProviderSystem,
    pub method: CredentialMethod,
    pub provider_url: String,
    pub login: String,
    /// Empty keeps the password on file.
    pub password: String,
    /// Empty keeps the API key on file.
    pub key: String,
    /// The provider's OAuth 2.0 client, for the client-credentials grant.
    pub client_id: String,
    /// Empty keeps the client secret on file.
    pub client_secret: String,
    /// The switches and choices; its due time, responsible, placement and pause between the calls of a
    /// call list are taken from the fields below.
    pub handling: CallHandling,
    pub due_in_minutes: String,
    pub responsible: ResponsibleChoice,
    pub responsible_user_id: String,
    pub pipeline_id: String,
    pub status_id: String,
    pub interval_secs: String,
    pub rows: Vec<ExtensionRow>,
    pub fallback_user_id: String,
    next_row: u32,
}

impl Default for FormValues {
    fn default() -> Self {
        FormValues::from_view(&IntegrationSettingsView::default())
    }
}

fn id_text(id: Option<i64>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

impl FormValues {
    /// The form as the server's stored settings fill it; secrets are never shown, so their inputs start empty.
    pub fn from_view(view: &IntegrationSettingsView) -> Self {
        let (method, provider_url, login, client_id) = match &view.credentials {
            VoipCredentialsView::Password { provider_url, login, .. } => {
                (CredentialMethod::Password, provider_url.clone(), login.clone(), String::new())
            }
            VoipCredentialsView::ApiKey { provider_url, .. } => {
                (CredentialMethod::ApiKey, provider_url.clone(), String::new(), String::new())
            }
            VoipCredentialsView::OAuth2 { provider_url, client_id, .. } => {
                (CredentialMethod::OAuth2, provider_url.clone(), String::new(), client_id.clone())
            }
        };
        let handling = view.call_handling.clone();
        let (responsible, responsible_user_id) = match handling.missed.responsible {
            TaskResponsible::ContactResponsible => (ResponsibleChoice::ContactResponsible, String::new()),
            TaskResponsible::ExtensionUser => (ResponsibleChoice::ExtensionUser, String::new()),
            TaskResponsible::User { user_id } => (ResponsibleChoice::User, user_id.to_string()),
        };
        let rows: Vec<ExtensionRow> = view
            .extensions
            .entries
            .iter()
            .zip(0..)
            .map(|(entry, id)| ExtensionRow {
                id,
                extension: entry.extension.clone(),
                user_id: entry.user_id.to_string(),
            })
            .collect();
        FormValues {
            system: view.system,
            method,
            provider_url,
            login,
            password: String::new(),
            key: String::new(),
            client_id,
            client_secret: String::new(),
            due_in_minutes: handling.missed.due_in_minutes.to_string(),
            responsible,
            responsible_user_id,
            pipeline_id: id_text(handling.placement.pipeline_id),
            status_id: id_text(handling.placement.status_id),
            interval_secs: handling.call_lists.interval_secs.to_string(),
            fallback_user_id: id_text(view.extensions.fallback_user_id),
            next_row: u32::try_from(rows.len()).unwrap_or(u32::MAX),
            rows,
            handling,
        }
    }

    /// Appends an empty extension row.
    pub fn add_row(&mut self) {
        self.rows.push(ExtensionRow { id: self.next_row, extension: String::new(), user_id: String::new() });
        self.next_row = self.next_row.wrapping_add(1);
    }

    pub fn remove_row(&mut self, id: u32) {
        self.rows.retain(|row| row.id != id);
    }

    /// The position of a row (for its field paths), if it is still there.
    pub fn row_index(&self, id: u32) -> Option<usize> {
        self.rows.iter().position(|row| row.id == id)
    }

    pub fn row_mut(&mut self, id: u32) -> Option<&mut ExtensionRow> {
        self.rows.iter_mut().find(|row| row.id == id)
    }

    /// Ticks or unticks a list call lists may be made from; the lists stay in their own order, once each.
    pub fn choose_source(&mut self, source: ListSource, on: bool) {
        let sources = &mut self.handling.call_lists.sources;
        *sources = ListSource::ALL
            .into_iter()
            .filter(|other| if *other == source { on } else { sources.contains(other) })
            .collect();
    }

    /// Chooses the telephony system: the sign-in method becomes one the system takes (the one chosen stays
    /// when it may), and the address of the system's own API is filled in where the address was empty or
    /// another system's.
    pub fn choose_system(&mut self, system: ProviderSystem) {
        self.system = system;
        let methods = system.methods();
        if !methods.contains(&self.method)
            && let Some(first) = methods.first()
        {
            self.method = *first;
        }
        let typed = self.provider_url.trim();
        let prefilled = ProviderSystem::ALL.into_iter().any(|other| default_provider_url(other) == Some(typed));
        if typed.is_empty() || prefilled {
            self.provider_url = default_provider_url(system).unwrap_or_default().to_owned();
        }
    }

    /// The credentials as typed; an empty secret means "keep the one on file".
    pub fn credentials(&self) -> VoipCredentials {
        let secret = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        let provider_url = self.provider_url.trim().to_owned();
        match self.method {
            CredentialMethod::Password => VoipCredentials::Password {
                provider_url,
                login: self.login.trim().to_owned(),
                password: secret(&self.password),
            },
            CredentialMethod::ApiKey => VoipCredentials::ApiKey { provider_url, key: secret(&self.key) },
            CredentialMethod::OAuth2 => VoipCredentials::OAuth2 {
                provider_url,
                client_id: self.client_id.trim().to_owned(),
                client_secret: secret(&self.client_secret),
            },
        }
    }

    /// The settings to send, and the fields whose text is not a value at all (a due time that is not a
    /// number, a row without a user). Those fields carry a placeholder in the settings.
    pub fn build(&self, active: bool) -> (IntegrationSettings, Vec<FieldError>) {
        let mut unreadable = Vec::new();
        let mut refuse = |field: String, code: ValidationCode| unreadable.push(FieldError { field, code });

        let mut handling = self.handling.clone();
        handling.missed.due_in_minutes =
            required_number(&self.due_in_minutes, "call_handling.missed.due_in_minutes", &mut refuse);
        handling.missed.responsible = match self.responsible {
            ResponsibleChoice::ContactResponsible => TaskResponsible::ContactResponsible,
            ResponsibleChoice::ExtensionUser => TaskResponsible::ExtensionUser,
            ResponsibleChoice::User => TaskResponsible::User {
                user_id: required_number(
                    &self.responsible_user_id,
                    "call_handling.missed.responsible.user_id",
                    &mut refuse,
                ),
            },
        };
        handling.call_lists.interval_secs =
            required_number(&self.interval_secs, "call_handling.call_lists.interval_secs", &mut refuse);
        let mut optional_id = |text: &str, field: &str| match text.trim() {
            "" => None,
            text => Some(text.parse().unwrap_or_else(|_| {
                refuse(field.to_owned(), ValidationCode::OutOfRange);
                0
            })),
        };
        handling.placement = LeadPlacement {
            pipeline_id: optional_id(&self.pipeline_id, "call_handling.placement.pipeline_id"),
            status_id: optional_id(&self.status_id, "call_handling.placement.status_id"),
        };
        let fallback_user_id = optional_id(&self.fallback_user_id, "extensions.fallback_user_id");
        let entries = self
            .rows
            .iter()
            .enumerate()
            .map(|(index, row)| ExtensionEntry {
                extension: row.extension.trim().to_owned(),
                user_id: required_number(&row.user_id, &format!("extensions.entries[{index}].user_id"), &mut refuse),
            })
            .collect();
        let settings = IntegrationSettings {
            active,
            system: self.system,
            credentials: self.credentials(),
            call_handling: handling,
            extensions: ExtensionMap { entries, fallback_user_id },
        };
        (settings, unreadable)
    }
}

/// A number the form must have (a due time, a pause, a user id): an empty input is refused as required,
/// text that is no such number as out of range (a value beyond the type's range included); either reads as 0.
fn required_number<T: std::str::FromStr + Default>(
    text: &str,
    field: &str,
    refuse: &mut impl FnMut(String, ValidationCode),
) -> T {
    match text.trim() {
        "" => {
            refuse(field.to_owned(), ValidationCode::Required);
            T::default()
        }
        text => text.parse().unwrap_or_else(|_| {
            refuse(field.to_owned(), ValidationCode::OutOfRange);
            T::default()
        }),
    }
}

/// What the widget validates before a save, as the server will: the stored secret, the operator's
/// local-provider setting, and the active users once they have loaded.
pub fn validation_context(view: &IntegrationSettingsView, users: Option<&[KommoUserView]>) -> ValidationContext {
    ValidationContext {
        active_user_ids: users.map(|users| users.iter().map(|user| user.id).collect()),
        active_group_ids: users
            .map(|users| users.iter().filter_map(|user| user.group.as_ref().map(|group| group.id)).collect()),
        stored_secret: view.credentials.stored_secret(),
        allow_insecure_local: view.allow_insecure_provider,
    }
}

/// The groups the popup of unmapped calls can go to: each group of the account's users once, by name,
/// then any `chosen` group none of them is in any more (as `#id`, so that it can be unticked).
pub fn group_choices(users: &[KommoUserView], chosen: &[i64]) -> Vec<KommoGroupView> {
    let mut groups: Vec<KommoGroupView> = users.iter().filter_map(|user| user.group.clone()).collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let mut seen = std::collections::BTreeSet::new();
    groups.retain(|group| seen.insert(group.id));
    for id in chosen {
        if seen.insert(*id) {
            groups.push(KommoGroupView { id: *id, name: format!("#{id}") });
        }
    }
    groups
}

/// Every refused field of an active save: what could not be read, then the shared rules for the rest
/// (a field is reported once, by whichever found it first).
pub fn refusals(values: &FormValues, ctx: &ValidationContext) -> (IntegrationSettings, Vec<FieldError>) {
    let (settings, mut errors) = values.build(true);
    for error in settings.validate(ctx) {
        if !errors.iter().any(|known| known.field == error.field) {
            errors.push(error);
        }
    }
    (settings, errors)
}

/// The systems the admin may choose: each one this build's server has an adapter for, in their own order.
pub fn system_choices() -> Vec<ProviderSystem> {
    ProviderSystem::ALL.into_iter().filter(|system| system.is_available()).collect()
}

/// The provider API address a system's own cloud has, filled in when the system is chosen (it stays editable).
pub fn default_provider_url(system: ProviderSystem) -> Option<&'static str> {
    match system {
        ProviderSystem::Zadarma => Some("https://api.zadarma.com"),
        ProviderSystem::Twilio => Some("https://api.twilio.com"),
        ProviderSystem::Standard | ProviderSystem::Asterisk | ProviderSystem::Yeastar => None,
    }
}

/// What the form calls things for one telephony system, as keys of the `settings` strings: the choice, the
/// credentials' inputs by that system's own names, where they come from, and what to paste where after a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemWords {
    /// The choice's label.
    pub name: &'static str,
    pub provider_url: &'static str,
    pub provider_url_hint: Option<&'static str>,
    pub login: &'static str,
    pub login_hint: Option<&'static str>,
    pub password: &'static str,
    pub client_id: &'static str,
    pub client_secret: &'static str,
    /// Where the credentials are found, under their inputs.
    pub credentials_hint: Option<&'static str>,
    /// What to paste where once the webhook exists, one step a key.
    pub guide: &'static [&'static str],
    /// Whether the admin gives the system our signing secret; Zadarma and Twilio sign their webhooks with
    /// the API secret or auth token already entered, so theirs is not shown.
    pub takes_signing_secret: bool,
}

impl SystemWords {
    pub fn of(system: ProviderSystem) -> Self {
        let contract = SystemWords {
            name: "system_standard",
            provider_url: "provider_url",
            provider_url_hint: None,
            login: "voip_login",
            login_hint: None,
            password: "voip_password",
            client_id: "client_id",
            client_secret: "client_secret",
            credentials_hint: None,
            guide: &["webhook_url_hint", "guide_standard_secret"],
            takes_signing_secret: true,
        };
        match system {
            ProviderSystem::Standard => contract,
            ProviderSystem::Asterisk => SystemWords {
                name: "system_asterisk",
                provider_url_hint: Some("asterisk_provider_url_hint"),
                credentials_hint: Some("asterisk_credentials_hint"),
                guide: &["guide_asterisk_env", "guide_asterisk_provider_url"],
                ..contract
            },
            ProviderSystem::Zadarma => SystemWords {
                name: "system_zadarma",
                provider_url_hint: Some("provider_url_prefilled_hint"),
                login: "zadarma_login",
                password: "zadarma_password",
                credentials_hint: Some("zadarma_credentials_hint"),
                guide: &["guide_zadarma_url", "guide_zadarma_events", "guide_zadarma_secret"],
                takes_signing_secret: false,
                ..contract
            },
            ProviderSystem::Yeastar => SystemWords {
                name: "system_yeastar",
                provider_url: "yeastar_provider_url",
                provider_url_hint: Some("yeastar_provider_url_hint"),
                client_id: "yeastar_client_id",
                client_secret: "yeastar_client_secret",
                credentials_hint: Some("yeastar_credentials_hint"),
                guide: &["guide_yeastar_url", "guide_yeastar_secret", "guide_yeastar_events"],
                ..contract
            },
            ProviderSystem::Twilio => SystemWords {
                name: "system_twilio",
                provider_url_hint: Some("provider_url_prefilled_hint"),
                login: "twilio_login",
                login_hint: Some("twilio_login_hint"),
                password: "twilio_password",
                credentials_hint: Some("twilio_credentials_hint"),
                guide: &["guide_twilio_status", "guide_twilio_recording", "guide_twilio_secret"],
                takes_signing_secret: false,
                ..contract
            },
        }
    }

    /// Every key these words use.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys =
            vec![self.name, self.provider_url, self.login, self.password, self.client_id, self.client_secret];
        keys.extend([self.provider_url_hint, self.login_hint, self.credentials_hint].into_iter().flatten());
        keys.extend(self.guide);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::integration::{CallLists, MAX_DIAL_INTERVAL_SECS, UnknownCallerEntity, WebhookEndpoint};

    fn local_view() -> IntegrationSettingsView {
        IntegrationSettingsView {
            active: true,
            system: ProviderSystem::Standard,
            credentials: VoipCredentialsView::Password {
                provider_url: "http://127.0.0.1:8090/voip".to_owned(),
                login: "agent".to_owned(),
                has_password: true,
            },
            call_handling: CallHandling::default(),
            extensions: ExtensionMap {
                entries: vec![ExtensionEntry { extension: "101".to_owned(), user_id: 7 }],
                fallback_user_id: Some(8),
            },
            webhook: Some(WebhookEndpoint {
                url: "http://x/hooks/voip/h".to_owned(),
                signing_secret: None,
                signing_secret_hint: "ab12".to_owned(),
            }),
            allow_insecure_provider: true,
        }
    }

    #[test]
    fn each_group_of_the_users_is_offered_once_by_name_and_a_chosen_empty_group_stays() {
        let user = |id: i64, group: Option<(i64, &str)>| KommoUserView {
            id,
            name: format!("user {id}"),
            email: None,
            group: group.map(|(id, name)| KommoGroupView { id, name: name.to_owned() }),
        };
        let users = [
            user(1, Some((7, "Support"))),
            user(2, Some((0, "Sales"))),
            user(3, None),
            user(4, Some((7, "Support"))),
            user(5, Some((0, "Sales"))),
        ];
        let names =
            |groups: Vec<KommoGroupView>| groups.into_iter().map(|group| (group.id, group.name)).collect::<Vec<_>>();
        assert_eq!(names(group_choices(&users, &[])), [(0, "Sales".to_owned()), (7, "Support".to_owned())]);
        assert_eq!(
            names(group_choices(&users, &[7, 9, 9])),
            [(0, "Sales".to_owned()), (7, "Support".to_owned()), (9, "#9".to_owned())]
        );
        assert!(group_choices(&[], &[]).is_empty());
    }

    #[test]
    fn the_stored_view_round_trips_through_the_form() {
        let mut view = local_view();
        view.call_handling.missed.responsible = TaskResponsible::User { user_id: 7 };
        view.call_handling.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
        view.call_handling.placement = LeadPlacement { pipeline_id: Some(11), status_id: Some(12) };
        view.call_handling.call_lists =
            CallLists { enabled: false, interval_secs: 45, sources: vec![ListSource::Companies] };
        let values = FormValues::from_view(&view);
        assert_eq!(values.interval_secs, "45");
        let (settings, unreadable) = values.build(true);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(settings.call_handling, view.call_handling);
        assert_eq!(settings.extensions, view.extensions);
        assert_eq!(settings.credentials.secret(), None, "an empty password keeps the stored one");
        let ctx = validation_context(&view, None);
        assert_eq!(refusals(&values, &ctx).1, Vec::new());
    }

    #[test]
    fn unreadable_numbers_and_missing_users_are_refused_at_their_paths() {
        let mut values = FormValues::from_view(&local_view());
        values.due_in_minutes = "soon".to_owned();
        values.pipeline_id = "12".to_owned();
        values.add_row();
        values.rows[1].extension = "101".to_owned();
        let ctx = validation_context(&local_view(), None);
        let fields: Vec<(String, ValidationCode)> =
            refusals(&values, &ctx).1.into_iter().map(|error| (error.field, error.code)).collect();
        let expected = [
            ("call_handling.missed.due_in_minutes", ValidationCode::OutOfRange),
            ("extensions.entries[1].user_id", ValidationCode::Required),
            ("call_handling.placement.status_id", ValidationCode::Incomplete),
            ("extensions.entries[1].extension", ValidationCode::Duplicate),
        ];
        assert_eq!(fields, expected.map(|(field, code)| (field.to_owned(), code)));
    }

    #[test]
    fn the_pause_between_calls_and_the_lists_are_checked_by_the_shared_rules() {
        let ctx = validation_context(&local_view(), None);
        let refused = |values: &FormValues| -> Vec<(String, ValidationCode)> {
            refusals(values, &ctx).1.into_iter().map(|error| (error.field, error.code)).collect()
        };
        let interval = "call_handling.call_lists.interval_secs".to_owned();
        let sources = "call_handling.call_lists.sources".to_owned();
        let mut values = FormValues::from_view(&local_view());
        assert_eq!(values.interval_secs, "10", "the default pause");
        for (typed, expected) in [
            ("", Some(ValidationCode::Required)),
            ("ten", Some(ValidationCode::OutOfRange)),
            ("-5", Some(ValidationCode::OutOfRange)),
            ("2", Some(ValidationCode::OutOfRange)),
            ("99999999999", Some(ValidationCode::OutOfRange)),
            (" 3 ", None),
            ("601", Some(ValidationCode::OutOfRange)),
        ] {
            values.interval_secs = typed.to_owned();
            assert_eq!(
                refused(&values),
                expected.map(|code| (interval.clone(), code)).into_iter().collect::<Vec<_>>(),
                "{typed:?}"
            );
        }
        values.interval_secs = MAX_DIAL_INTERVAL_SECS.to_string();
        assert_eq!(values.build(true).0.call_handling.call_lists.interval_secs, MAX_DIAL_INTERVAL_SECS);

        for source in ListSource::ALL {
            values.choose_source(source, false);
        }
        assert_eq!(refused(&values), [(sources, ValidationCode::Required)], "on, from no list");
        values.handling.call_lists.enabled = false;
        assert_eq!(refused(&values), [], "off, no list is needed");
    }

    #[test]
    fn ticked_lists_keep_their_own_order_once_each() {
        let mut values = FormValues::default();
        assert_eq!(values.handling.call_lists.sources, ListSource::ALL);
        values.choose_source(ListSource::Contacts, false);
        values.choose_source(ListSource::Leads, false);
        assert_eq!(values.handling.call_lists.sources, [ListSource::Companies]);
        values.choose_source(ListSource::Leads, true);
        values.choose_source(ListSource::Contacts, true);
        values.choose_source(ListSource::Contacts, true);
        assert_eq!(values.handling.call_lists.sources, ListSource::ALL);
    }

    #[test]
    fn a_kept_secret_needs_one_on_file_for_the_same_provider() {
        let mut values = FormValues::from_view(&local_view());
        values.provider_url = "http://localhost:9/voip".to_owned();
        let ctx = validation_context(&local_view(), None);
        let errors = refusals(&values, &ctx).1;
        assert!(errors.iter().any(|error| error.field == "credentials.password"), "{errors:?}");

        values.method = CredentialMethod::ApiKey;
        values.provider_url = "https://169.254.169.254/".to_owned();
        let errors = refusals(&values, &ctx).1;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["credentials.provider_url", "credentials.key"]);
        assert_eq!(errors[0].code, ValidationCode::ForbiddenAddress);
    }

    fn oauth2_view(has_client_secret: bool) -> IntegrationSettingsView {
        IntegrationSettingsView {
            credentials: VoipCredentialsView::OAuth2 {
                provider_url: "http://127.0.0.1:8090/voip".to_owned(),
                client_id: "sandbox-client".to_owned(),
                has_client_secret,
            },
            ..local_view()
        }
    }

    #[test]
    fn an_oauth2_client_on_file_reads_back_with_its_secret_kept() {
        let view = oauth2_view(true);
        let values = FormValues::from_view(&view);
        assert_eq!(values.method, CredentialMethod::OAuth2);
        assert_eq!(values.provider_url, "http://127.0.0.1:8090/voip");
        assert_eq!(values.client_id, "sandbox-client");
        assert_eq!((values.login.as_str(), values.client_secret.as_str()), ("", ""), "no login, no secret shown");
        let expected = VoipCredentials::OAuth2 {
            provider_url: "http://127.0.0.1:8090/voip".to_owned(),
            client_id: "sandbox-client".to_owned(),
            client_secret: None,
        };
        assert_eq!(values.credentials(), expected, "an empty secret keeps the stored one");
        let ctx = validation_context(&view, None);
        assert_eq!(refusals(&values, &ctx).1, Vec::new());
        assert_eq!(values.build(true).0.credentials.view(true), view.credentials);
    }

    #[test]
    fn a_typed_oauth2_client_is_sent_as_oauth2_credentials() {
        let mut values = FormValues::from_view(&local_view());
        values.method = CredentialMethod::OAuth2;
        values.provider_url = " http://127.0.0.1:8090/voip ".to_owned();
        values.client_id = "  sandbox-client ".to_owned();
        values.client_secret = "sandbox-client-secret".to_owned();
        let expected = VoipCredentials::OAuth2 {
            provider_url: "http://127.0.0.1:8090/voip".to_owned(),
            client_id: "sandbox-client".to_owned(),
            client_secret: Some("sandbox-client-secret".to_owned()),
        };
        assert_eq!(values.credentials(), expected, "the login and password typed before are not sent");
        assert_eq!(values.build(true).0.credentials, expected);
        let ctx = validation_context(&local_view(), None);
        assert_eq!(refusals(&values, &ctx).1, Vec::new());

        // Back to the password: what was typed there is still there.
        values.method = CredentialMethod::Password;
        assert!(matches!(values.credentials(), VoipCredentials::Password { login, .. } if login == "agent"));
    }

    #[test]
    fn an_oauth2_client_needs_an_id_and_a_secret_unless_one_of_its_kind_is_on_file() {
        let mut values = FormValues::from_view(&local_view());
        values.method = CredentialMethod::OAuth2;
        let ctx = validation_context(&local_view(), None);
        let fields: Vec<(String, ValidationCode)> =
            refusals(&values, &ctx).1.into_iter().map(|error| (error.field, error.code)).collect();
        let expected = [
            ("credentials.client_id", ValidationCode::Required),
            ("credentials.client_secret", ValidationCode::Required),
        ];
        assert_eq!(fields, expected.map(|(field, code)| (field.to_owned(), code)), "a stored password is no secret");

        let stored = oauth2_view(true);
        let mut values = FormValues::from_view(&stored);
        values.provider_url = "http://localhost:9/voip".to_owned();
        let errors = refusals(&values, &validation_context(&stored, None)).1;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["credentials.client_secret"], "the kept secret stays with its provider");

        let values = FormValues::from_view(&oauth2_view(false));
        let errors = refusals(&values, &validation_context(&oauth2_view(false), None)).1;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["credentials.client_secret"]);
    }

    #[test]
    fn only_the_systems_with_an_adapter_are_offered() {
        let offered = system_choices();
        assert!(offered.iter().all(|system| system.is_available()));
        for system in shared::integration::AVAILABLE_SYSTEMS {
            assert!(offered.contains(system), "{system:?}");
        }
        assert_eq!(offered.first(), Some(&ProviderSystem::Standard), "our contract comes first");
    }

    #[test]
    fn choosing_a_system_takes_its_method_and_fills_in_its_own_api() {
        let mut values = FormValues { method: CredentialMethod::ApiKey, ..FormValues::default() };
        values.choose_system(ProviderSystem::Zadarma);
        assert_eq!(
            (values.method, values.provider_url.as_str()),
            (CredentialMethod::Password, "https://api.zadarma.com")
        );
        values.choose_system(ProviderSystem::Twilio);
        assert_eq!(values.provider_url, "https://api.twilio.com", "another system's address is replaced");
        values.choose_system(ProviderSystem::Yeastar);
        assert_eq!((values.method, values.provider_url.as_str()), (CredentialMethod::OAuth2, ""));
        values.provider_url = "https://pbx.example.com:8088".to_owned();
        values.choose_system(ProviderSystem::Asterisk);
        assert_eq!(
            (values.method, values.provider_url.as_str()),
            (CredentialMethod::OAuth2, "https://pbx.example.com:8088"),
            "a method and an address the system takes stay"
        );
        values.choose_system(ProviderSystem::Zadarma);
        assert_eq!(values.provider_url, "https://pbx.example.com:8088", "a typed address is never replaced");
        assert_eq!(values.build(true).0.system, ProviderSystem::Zadarma, "the choice is what is saved");
    }

    #[test]
    fn a_stored_system_reads_back_into_the_form() {
        let view = IntegrationSettingsView { system: ProviderSystem::Asterisk, ..local_view() };
        let values = FormValues::from_view(&view);
        assert_eq!(values.system, ProviderSystem::Asterisk);
        assert_eq!(refusals(&values, &validation_context(&view, None)).1, Vec::new());
    }

    #[test]
    fn a_system_not_offered_or_a_method_it_does_not_take_is_refused_at_the_choice() {
        let ctx = validation_context(&local_view(), None);
        for system in ProviderSystem::ALL {
            let values = FormValues { system, ..FormValues::from_view(&local_view()) };
            let refused: Vec<(String, ValidationCode)> = refusals(&values, &ctx)
                .1
                .into_iter()
                .filter(|error| !error.field.starts_with("credentials.") || error.field == "credentials.method")
                .map(|error| (error.field, error.code))
                .collect();
            let expected = if !system.is_available() {
                Some("system")
            } else if !system.methods().contains(&CredentialMethod::Password) {
                Some("credentials.method")
            } else {
                None
            };
            let expected: Vec<(String, ValidationCode)> =
                expected.map(|field| (field.to_owned(), ValidationCode::NotAvailable)).into_iter().collect();
            assert_eq!(refused, expected, "{system:?}");
        }
    }

    #[test]
    fn every_system_names_its_inputs_and_says_what_to_paste_where_in_every_language() {
        let files = [
            ("en", include_str!("../../i18n/en.json")),
            ("es", include_str!("../../i18n/es.json")),
            ("pt", include_str!("../../i18n/pt.json")),
        ];
        let english: serde_json::Value = serde_json::from_str(files[0].1).unwrap();
        for (lang, file) in files {
            let strings: serde_json::Value = serde_json::from_str(file).unwrap();
            let text = |key: &str| strings["settings"][key].as_str().unwrap_or_default().to_owned();
            for system in ProviderSystem::ALL {
                let words = SystemWords::of(system);
                for key in words.keys() {
                    assert!(!text(key).trim().is_empty(), "{lang}: settings.{key} ({system:?})");
                }
                assert!(!words.guide.is_empty(), "{system:?} says what to paste where");
                let translated = words.guide.iter().chain(words.credentials_hint.iter());
                for key in translated.filter(|_| lang != "en") {
                    assert_ne!(
                        text(key),
                        english["settings"][key].as_str().unwrap_or_default(),
                        "{lang}: settings.{key}"
                    );
                }
                let guide = words.guide.iter().map(|key| text(key)).collect::<Vec<_>>().join(" ");
                let must_name: &[&str] = match system {
                    ProviderSystem::Standard => &[],
                    ProviderSystem::Asterisk => {
                        &["CONNECTOR_WEBHOOK_URL", "CONNECTOR_WEBHOOK_SECRET", "CONNECTOR_LISTEN_ADDR"]
                    }
                    ProviderSystem::Zadarma => &[
                        "NOTIFY_START",
                        "NOTIFY_ANSWER",
                        "NOTIFY_END",
                        "NOTIFY_OUT_START",
                        "NOTIFY_OUT_END",
                        "NOTIFY_RECORD",
                    ],
                    ProviderSystem::Yeastar => &["Webhook Event Push", "Secret"],
                    ProviderSystem::Twilio => &["statusCallback", "recordingStatusCallback"],
                };
                for name in must_name {
                    assert!(guide.contains(name), "{lang}: {system:?}'s guide lacks {name}: {guide}");
                }
            }
            let names = ProviderSystem::ALL.map(|system| text(SystemWords::of(system).name));
            assert!(names.iter().all(|name| names.iter().filter(|other| *other == name).count() == 1), "{names:?}");
        }
        let english_text = |key: &str| english["settings"][key].as_str().unwrap_or_default();
        assert_eq!(english_text(SystemWords::of(ProviderSystem::Zadarma).login), "API key");
        assert_eq!(english_text(SystemWords::of(ProviderSystem::Zadarma).password), "API secret");
        assert_eq!(english_text(SystemWords::of(ProviderSystem::Twilio).login), "Account SID");
        assert_eq!(english_text(SystemWords::of(ProviderSystem::Twilio).password), "Auth token");
        assert_eq!(english_text(SystemWords::of(ProviderSystem::Yeastar).provider_url), "PBX address");
        assert!(!SystemWords::of(ProviderSystem::Zadarma).takes_signing_secret);
        assert!(SystemWords::of(ProviderSystem::Yeastar).takes_signing_secret);
    }

    #[test]
    fn rows_keep_their_ids_when_others_are_removed() {
        let mut values = FormValues::default();
        values.add_row();
        values.add_row();
        values.add_row();
        values.remove_row(1);
        assert_eq!(values.rows.iter().map(|row| row.id).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(values.row_index(2), Some(1));
        values.add_row();
        assert_eq!(values.rows.last().map(|row| row.id), Some(3));
    }

    #[test]
    fn an_inactive_save_carries_the_form_as_it_is() {
        let values = FormValues { due_in_minutes: "x".to_owned(), ..FormValues::default() };
        let (settings, _) = values.build(false);
        assert!(!settings.active);
        assert_eq!(settings.call_handling.missed.due_in_minutes, 0);
    }
}
