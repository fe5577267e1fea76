//! The integration's complete settings (VoIP credentials, call-handling rules, extension mapping) and the
//! one set of validation rules that the widget applies before sending and the server applies on receipt.
//!
//! Field paths in [`FieldError`] are the JSON paths of the input (`credentials.login`,
//! `call_handling.missed.due_in_minutes`, `extensions.entries[2].user_id`), so the widget can put each
//! message next to its input without a translation table.
//!
//! The provider address check here is static: it parses the URL and applies the egress policy
//! ([`crate::egress`]) to its scheme and its literal address or name. Resolving the name is I/O and stays
//! with the server, which checks every resolved address with the same policy at connect time (and
//! connects to the address it checked, not resolving again).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::egress::EgressPolicy;
use crate::settings::{FieldError, MAX_LOGIN_LEN, MAX_PASSWORD_LEN, ValidationCode, check_text};

/// Longest provider API key we accept.
pub const MAX_API_KEY_LEN: usize = 512;
/// Longest provider address we accept.
pub const MAX_PROVIDER_URL_LEN: usize = 2048;
/// Longest extension we accept.
pub const MAX_EXTENSION_LEN: usize = 32;
/// Most extension rows one account may map.
pub const MAX_EXTENSIONS: usize = 500;
/// Latest due time of a missed-call task: one week, in minutes.
pub const MAX_TASK_DUE_MINUTES: u32 = 7 * 24 * 60;

// ---------------------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------------------

/// Everything an admin submits from the settings modal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSettings {
    /// Kommo's `active` flag from `onSave({active})`: `true` for `'Y'`. Settings are only stored while
    /// the widget is on.
    pub active: bool,
    /// The telephony system the account runs (our own signed contract by default).
    #[serde(default)]
    pub system: ProviderSystem,
    pub credentials: VoipCredentials,
    pub call_handling: CallHandling,
    pub extensions: ExtensionMap,
}

/// The telephony system an account runs: how its call events reach the server and are signed, how its
/// credentials are checked and how it places calls. Each has an adapter in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProviderSystem {
    /// Our own contract: Standard Webhooks-signed JSON events, `/v1/account`, `/v1/calls`.
    #[default]
    Standard,
    /// Asterisk (FreePBX, MikoPBX) through the connector in this repository, which speaks our contract.
    Asterisk,
    /// Zadarma: its `NOTIFY_*` form posts signed with the API secret; its API with the key and secret.
    Zadarma,
    /// Yeastar P-Series: its webhook event push (`X-Signature`); its API with a client id and secret.
    Yeastar,
    /// Twilio: voice and recording status callbacks (`X-Twilio-Signature`); the account SID and auth token.
    Twilio,
}

impl ProviderSystem {
    pub const ALL: [ProviderSystem; 5] = [
        ProviderSystem::Standard,
        ProviderSystem::Asterisk,
        ProviderSystem::Zadarma,
        ProviderSystem::Yeastar,
        ProviderSystem::Twilio,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderSystem::Standard => "standard",
            ProviderSystem::Asterisk => "asterisk",
            ProviderSystem::Zadarma => "zadarma",
            ProviderSystem::Yeastar => "yeastar",
            ProviderSystem::Twilio => "twilio",
        }
    }

    pub fn parse(name: &str) -> Option<ProviderSystem> {
        ProviderSystem::ALL.into_iter().find(|system| system.as_str() == name)
    }

    /// The sign-in method the system's API takes: Zadarma's key and secret and Twilio's account SID and
    /// auth token as a login and password, Yeastar's API client as OAuth 2.0 client credentials; our
    /// contract (and the Asterisk connector, which speaks it) any of them.
    pub fn methods(self) -> &'static [CredentialMethod] {
        match self {
            ProviderSystem::Standard | ProviderSystem::Asterisk => {
                &[CredentialMethod::Password, CredentialMethod::ApiKey, CredentialMethod::OAuth2]
            }
            ProviderSystem::Zadarma | ProviderSystem::Twilio => &[CredentialMethod::Password],
            ProviderSystem::Yeastar => &[CredentialMethod::OAuth2],
        }
    }

    /// Whether this build has the system's adapter.
    pub fn is_available(self) -> bool {
        AVAILABLE_SYSTEMS.contains(&self)
    }
}

/// The systems this build's server has adapters for.
pub const AVAILABLE_SYSTEMS: &[ProviderSystem] = &ProviderSystem::ALL;

/// How the server signs in to the VoIP provider, and where the provider's API is.
///
/// On the wire: `{"method": "password", "provider_url": ..., "login": ..., "password": ...}`,
/// `{"method": "api_key", "provider_url": ..., "key": ...}`, or
/// `{"method": "oauth2", "provider_url": ..., "client_id": ..., "client_secret": ...}` (the provider's
/// OAuth 2.0 client-credentials grant: the server trades the client's id and secret for an access token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum VoipCredentials {
    Password {
        /// The provider API base the server will call (see [`ProviderUrl`]).
        provider_url: String,
        login: String,
        /// `None` keeps the password on file (it is never sent back to the browser).
        #[serde(default)]
        password: Option<String>,
    },
    ApiKey {
        /// The provider API base the server will call (see [`ProviderUrl`]).
        provider_url: String,
        /// `None` keeps the key on file (it is never sent back to the browser).
        #[serde(default)]
        key: Option<String>,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The provider API base the server will call (see [`ProviderUrl`]).
        provider_url: String,
        client_id: String,
        /// `None` keeps the client secret on file (it is never sent back to the browser).
        #[serde(default)]
        client_secret: Option<String>,
    },
}

impl Default for VoipCredentials {
    fn default() -> Self {
        VoipCredentials::Password { provider_url: String::new(), login: String::new(), password: None }
    }
}

/// Which kind of secret [`VoipCredentials`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMethod {
    Password,
    ApiKey,
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl CredentialMethod {
    /// The wire and storage name (`password`, `api_key`, `oauth2`).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMethod::Password => "password",
            CredentialMethod::ApiKey => "api_key",
            CredentialMethod::OAuth2 => "oauth2",
        }
    }

    /// The method named by [`CredentialMethod::as_str`].
    pub fn parse(name: &str) -> Option<CredentialMethod> {
        [CredentialMethod::Password, CredentialMethod::ApiKey, CredentialMethod::OAuth2]
            .into_iter()
            .find(|method| method.as_str() == name)
    }
}

impl VoipCredentials {
    pub fn method(&self) -> CredentialMethod {
        match self {
            VoipCredentials::Password { .. } => CredentialMethod::Password,
            VoipCredentials::ApiKey { .. } => CredentialMethod::ApiKey,
            VoipCredentials::OAuth2 { .. } => CredentialMethod::OAuth2,
        }
    }

    pub fn provider_url(&self) -> &str {
        match self {
            VoipCredentials::Password { provider_url, .. }
            | VoipCredentials::ApiKey { provider_url, .. }
            | VoipCredentials::OAuth2 { provider_url, .. } => provider_url,
        }
    }

    /// The secret typed in this submission, if any (`None` means "keep the one on file").
    pub fn secret(&self) -> Option<&str> {
        match self {
            VoipCredentials::Password { password, .. } => password.as_deref(),
            VoipCredentials::ApiKey { key, .. } => key.as_deref(),
            VoipCredentials::OAuth2 { client_secret, .. } => client_secret.as_deref(),
        }
    }

    /// What the browser may see of these credentials: never the secret, only whether one is kept.
    pub fn view(&self, secret_on_file: bool) -> VoipCredentialsView {
        let has_secret = secret_on_file || self.secret().is_some();
        match self {
            VoipCredentials::Password { provider_url, login, .. } => VoipCredentialsView::Password {
                provider_url: provider_url.clone(),
                login: login.clone(),
                has_password: has_secret,
            },
            VoipCredentials::ApiKey { provider_url, .. } => {
                VoipCredentialsView::ApiKey { provider_url: provider_url.clone(), has_key: has_secret }
            }
            VoipCredentials::OAuth2 { provider_url, client_id, .. } => VoipCredentialsView::OAuth2 {
                provider_url: provider_url.clone(),
                client_id: client_id.clone(),
                has_client_secret: has_secret,
            },
        }
    }
}

/// The call-handling rules, one struct per section of the settings UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CallHandling {
    pub widget: WidgetBehaviour,
    /// Who sees the popup of a call whose extension no user has.
    #[serde(default)]
    pub unmapped_calls: UnmappedCalls,
    pub unknown_incoming: UnknownIncoming,
    pub known_incoming: KnownIncoming,
    pub missed: MissedCall,
    pub outgoing_new: OutgoingToNewNumber,
    pub placement: LeadPlacement,
    /// Call lists a manager dials through (More → call list in Kommo's lists).
    #[serde(default)]
    pub call_lists: CallLists,
}

/// Shortest and longest pause, in seconds, between one call of a call list ending and the next one being
/// dialled.
pub const MIN_DIAL_INTERVAL_SECS: u32 = 3;
pub const MAX_DIAL_INTERVAL_SECS: u32 = 600;

/// Call lists: whether managers may make them, from which of Kommo's lists, and the pause between calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallLists {
    pub enabled: bool,
    /// Seconds between a call's end (and its result, when the account asks for one) and the next dial,
    /// [`MIN_DIAL_INTERVAL_SECS`]`..=`[`MAX_DIAL_INTERVAL_SECS`].
    pub interval_secs: u32,
    /// The Kommo lists a call list may be made from; at least one while `enabled`, each at most once.
    pub sources: Vec<ListSource>,
}

impl Default for CallLists {
    fn default() -> Self {
        CallLists { enabled: true, interval_secs: 10, sources: ListSource::ALL.to_vec() }
    }
}

/// A Kommo list a call list is made from (its entities are what the manager selected there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListSource {
    Contacts,
    Companies,
    Leads,
}

impl ListSource {
    pub const ALL: [ListSource; 3] = [ListSource::Contacts, ListSource::Companies, ListSource::Leads];

    /// The wire name, also Kommo's entity path (`/api/v4/{name}`).
    pub fn as_str(self) -> &'static str {
        match self {
            ListSource::Contacts => "contacts",
            ListSource::Companies => "companies",
            ListSource::Leads => "leads",
        }
    }

    pub fn parse(name: &str) -> Option<ListSource> {
        ListSource::ALL.into_iter().find(|source| source.as_str() == name)
    }
}

/// What the widget does in the manager's browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidgetBehaviour {
    /// Play a ringing sound with the incoming-call popup.
    pub ringing_sound: bool,
    /// Show the call-result ("call feedback") modal after a call.
    pub call_feedback_modal: bool,
    /// Open the contact's card by itself on an incoming call (otherwise the popup offers a link).
    pub auto_open_card: bool,
    /// Ask for a call-quality rating; shown inside the call-result modal, so ignored while that is off.
    pub call_quality_rating: bool,
    /// Kommo's own call notification (`POST /api/v2/events`, sent by the server) instead of the widget's
    /// popup, for admins who prefer Kommo's look: the widget then shows no popup of its own. Off, the
    /// widget shows its popup, or, in a browser that cannot run its wasm, Kommo's notification through
    /// `APP.notifications.add_call`. Either way nobody gets both for one call.
    #[serde(default)]
    pub kommo_notification: bool,
}

impl Default for WidgetBehaviour {
    fn default() -> Self {
        WidgetBehaviour {
            ringing_sound: true,
            call_feedback_modal: true,
            auto_open_card: false,
            call_quality_rating: false,
            kommo_notification: false,
        }
    }
}

/// Most users the popup of unmapped calls may go to.
pub const MAX_POPUP_USERS: usize = 100;
/// Most Kommo user groups the popup of unmapped calls may go to.
pub const MAX_POPUP_GROUPS: usize = 50;

/// Who sees the popup of a call on an extension that no user has (or without an extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UnmappedCalls {
    pub to: PopupAudience,
    /// The users, when `to` is [`PopupAudience::Users`].
    #[serde(default)]
    pub user_ids: Vec<i64>,
    /// The Kommo user groups (`rights.group_id`), when `to` is [`PopupAudience::Groups`]: every active
    /// user of these groups. Settings stored before groups existed read as none.
    #[serde(default)]
    pub group_ids: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PopupAudience {
    /// Every user of the account.
    #[default]
    Everyone,
    /// The chosen users.
    Users,
    /// The users of the chosen Kommo user groups.
    Groups,
    /// Nobody: only calls on a mapped extension pop up.
    Nobody,
}

/// An incoming call from a number no contact or company has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UnknownIncoming {
    pub create: UnknownCallerEntity,
    /// Only used when `create` is [`UnknownCallerEntity::Unsorted`].
    pub unsorted_accept: UnsortedAccept,
}

/// What an unknown caller becomes in Kommo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCallerEntity {
    /// A contact and a lead (`POST /api/v4/leads/complex`).
    ContactAndLead,
    /// An incoming lead in "Unsorted" (`POST /api/v4/leads/unsorted/sip`), Kommo's own way for calls.
    #[default]
    Unsorted,
}

/// Who turns an incoming (unsorted) lead into a real lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnsortedAccept {
    /// The manager accepts or declines it in Kommo.
    #[default]
    Manual,
    /// The server accepts it once the call is answered (`POST /api/v4/leads/unsorted/{uid}/accept`).
    OnAnswer,
}

/// An incoming call from a known contact or company (a number only a company has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownIncoming {
    /// Create a lead when the contact has no active lead (off by default: returning clients often call
    /// about something that is not a sale). Never for a company: its call goes to the company as it is.
    pub create_lead_when_no_active_lead: bool,
    /// Write the number that called into a note when the contact (or company) has several numbers.
    pub note_number_when_several: bool,
}

impl Default for KnownIncoming {
    fn default() -> Self {
        KnownIncoming { create_lead_when_no_active_lead: false, note_number_when_several: true }
    }
}

/// A missed incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissedCall {
    /// Create a follow-up ("call back") task.
    pub create_task: bool,
    /// The task is due this many minutes after the call, `0..=`[`MAX_TASK_DUE_MINUTES`].
    pub due_in_minutes: u32,
    /// Attach the task to the caller's active lead when there is one (otherwise to the contact, or the
    /// company that has the number).
    pub link_to_lead: bool,
    pub responsible: TaskResponsible,
}

impl Default for MissedCall {
    fn default() -> Self {
        MissedCall {
            create_task: true,
            due_in_minutes: 60,
            link_to_lead: true,
            responsible: TaskResponsible::ContactResponsible,
        }
    }
}

/// Who a missed-call task is assigned to.
///
/// On the wire: `{"kind": "contact_responsible"}`, `{"kind": "extension_user"}`,
/// `{"kind": "user", "user_id": 42}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "ResponsibleWire", into = "ResponsibleWire")]
pub enum TaskResponsible {
    /// The contact's responsible user (the company's, when a company has the number); for an unknown
    /// caller, the user of the extension that rang.
    #[default]
    ContactResponsible,
    /// The Kommo user mapped to the extension that rang (or the fallback user).
    ExtensionUser,
    /// Always this Kommo user.
    User { user_id: i64 },
}

/// The wire form of [`TaskResponsible`]. serde's internally tagged enums let unknown fields through on
/// unit variants (`{"kind": "extension_user", "user_id": 1}`); this form refuses them.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponsibleWire {
    kind: ResponsibleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<i64>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponsibleKind {
    ContactResponsible,
    ExtensionUser,
    User,
}

impl TryFrom<ResponsibleWire> for TaskResponsible {
    type Error = &'static str;

    fn try_from(wire: ResponsibleWire) -> Result<Self, Self::Error> {
        match (wire.kind, wire.user_id) {
            (ResponsibleKind::ContactResponsible, None) => Ok(TaskResponsible::ContactResponsible),
            (ResponsibleKind::ExtensionUser, None) => Ok(TaskResponsible::ExtensionUser),
            (ResponsibleKind::User, Some(user_id)) => Ok(TaskResponsible::User { user_id }),
            (ResponsibleKind::User, None) => Err("`user_id` is required when `kind` is `user`"),
            (_, Some(_)) => Err("`user_id` is only allowed when `kind` is `user`"),
        }
    }
}

impl From<TaskResponsible> for ResponsibleWire {
    fn from(responsible: TaskResponsible) -> Self {
        let (kind, user_id) = match responsible {
            TaskResponsible::ContactResponsible => (ResponsibleKind::ContactResponsible, None),
            TaskResponsible::ExtensionUser => (ResponsibleKind::ExtensionUser, None),
            TaskResponsible::User { user_id } => (ResponsibleKind::User, Some(user_id)),
        };
        ResponsibleWire { kind, user_id }
    }
}

/// An outgoing call to a number no contact or company has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingToNewNumber {
    pub create_contact_and_lead: bool,
}

impl Default for OutgoingToNewNumber {
    fn default() -> Self {
        OutgoingToNewNumber { create_contact_and_lead: true }
    }
}

/// Where the leads the integration creates go: both ids, or neither (the account's main pipeline and its
/// first stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LeadPlacement {
    pub pipeline_id: Option<i64>,
    pub status_id: Option<i64>,
}

/// Which Kommo user takes the calls of which provider extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExtensionMap {
    /// Each extension at most once; one user may have several extensions.
    pub entries: Vec<ExtensionEntry>,
    /// Takes the calls of extensions that have no row (and of calls without an extension).
    pub fallback_user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionEntry {
    pub extension: String,
    pub user_id: i64,
}

impl ExtensionMap {
    /// The Kommo user for an extension: its row, else the fallback user.
    pub fn user_for(&self, extension: Option<&str>) -> Option<i64> {
        extension
            .and_then(|extension| self.entries.iter().find(|entry| entry.extension == extension))
            .map(|entry| entry.user_id)
            .or(self.fallback_user_id)
    }
}

// ---------------------------------------------------------------------------------------------------------
// What the server shows back
// ---------------------------------------------------------------------------------------------------------

/// The settings as the server shows them to the settings modal: never a password or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IntegrationSettingsView {
    pub active: bool,
    #[serde(default)]
    pub system: ProviderSystem,
    pub credentials: VoipCredentialsView,
    pub call_handling: CallHandling,
    pub extensions: ExtensionMap,
    /// Where the provider posts call events, once the server has issued one.
    pub webhook: Option<WebhookEndpoint>,
    /// The operator lets this server call a local provider over http (the local Kommo's stand-in):
    /// the widget validates with the same [`ValidationContext::allow_insecure_local`] as the server.
    #[serde(default)]
    pub allow_insecure_provider: bool,
}

/// [`VoipCredentials`] without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum VoipCredentialsView {
    Password {
        provider_url: String,
        login: String,
        has_password: bool,
    },
    ApiKey {
        provider_url: String,
        has_key: bool,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        provider_url: String,
        client_id: String,
        has_client_secret: bool,
    },
}

impl Default for VoipCredentialsView {
    fn default() -> Self {
        VoipCredentialsView::Password { provider_url: String::new(), login: String::new(), has_password: false }
    }
}

impl VoipCredentialsView {
    /// The secret on file, as [`ValidationContext::stored_secret`] needs it.
    pub fn stored_secret(&self) -> Option<StoredSecret> {
        match self {
            VoipCredentialsView::Password { provider_url, has_password: true, .. } => {
                Some(StoredSecret { method: CredentialMethod::Password, provider_url: provider_url.clone() })
            }
            VoipCredentialsView::ApiKey { provider_url, has_key: true } => {
                Some(StoredSecret { method: CredentialMethod::ApiKey, provider_url: provider_url.clone() })
            }
            VoipCredentialsView::OAuth2 { provider_url, has_client_secret: true, .. } => {
                Some(StoredSecret { method: CredentialMethod::OAuth2, provider_url: provider_url.clone() })
            }
            _ => None,
        }
    }
}

/// The address and signing secret an admin pastes into the provider. The secret is returned once, in the
/// answer that creates or rotates it (it must be pasted somewhere); afterwards only a hint of it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub url: String,
    /// `whsec_...`, only in the answer that issued it.
    #[serde(default)]
    pub signing_secret: Option<String>,
    /// The secret's last characters, so an admin can tell which one the provider has.
    pub signing_secret_hint: String,
}

// ---------------------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------------------

/// What the validating side knows beyond the submission itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationContext {
    /// The account's active Kommo users, when known. `None` skips the membership checks (the widget before
    /// the list has loaded); the server should know them before it stores anything.
    pub active_user_ids: Option<BTreeSet<i64>>,
    /// The Kommo user groups the active users are in, when known (`None` skips the check, as above).
    pub active_group_ids: Option<BTreeSet<i64>>,
    /// The secret the server keeps for this account, if any.
    pub stored_secret: Option<StoredSecret>,
    /// Operator setting for a local provider stand-in: also accept `http`, loopback and private-network
    /// addresses and names (see [`EgressPolicy`]). Never set for real accounts.
    pub allow_insecure_local: bool,
}

/// A password or key on file, and the provider address it was entered for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub method: CredentialMethod,
    pub provider_url: String,
}

impl IntegrationSettings {
    /// Every refused field, in form order, so the UI can show all of them at once.
    pub fn validate(&self, ctx: &ValidationContext) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.active {
            push(&mut errors, "active", ValidationCode::NotActive);
        }
        if !self.system.is_available() {
            push(&mut errors, "system", ValidationCode::NotAvailable);
        } else if !self.system.methods().contains(&self.credentials.method()) {
            push(&mut errors, "credentials.method", ValidationCode::NotAvailable);
        }
        self.credentials.check(ctx, &mut errors);
        self.call_handling.check(ctx, &mut errors);
        self.extensions.check(ctx, &mut errors);
        errors
    }
}

impl VoipCredentials {
    /// The credentials' own rules, for "check connection", which sends only this section.
    pub fn validate(&self, ctx: &ValidationContext) -> Vec<FieldError> {
        let mut errors = Vec::new();
        self.check(ctx, &mut errors);
        errors
    }

    fn check(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        let url = check_provider_url(self.provider_url(), ctx.allow_insecure_local);
        if let Err(code) = &url {
            push(errors, "credentials.provider_url", *code);
        }
        let identity = match self {
            VoipCredentials::Password { login, .. } => Some(("credentials.login", login)),
            VoipCredentials::OAuth2 { client_id, .. } => Some(("credentials.client_id", client_id)),
            VoipCredentials::ApiKey { .. } => None,
        };
        if let Some((field, value)) = identity
            && let Some(code) = check_text(value, MAX_LOGIN_LEN)
        {
            push(errors, field, code);
        }
        let (secret_field, max_len) = match self.method() {
            CredentialMethod::Password => ("credentials.password", MAX_PASSWORD_LEN),
            CredentialMethod::ApiKey => ("credentials.key", MAX_API_KEY_LEN),
            CredentialMethod::OAuth2 => ("credentials.client_secret", MAX_API_KEY_LEN),
        };
        let secret_code = match self.secret() {
            Some(secret) => check_text(secret, max_len),
            None if self.may_keep_stored_secret(ctx, url.ok().as_ref()) => None,
            None => Some(ValidationCode::Required),
        };
        if let Some(code) = secret_code {
            push(errors, secret_field, code);
        }
    }

    /// A kept secret must be of the same kind and stay with the provider it was entered for: otherwise
    /// anyone who can edit the settings could send the stored secret to an address of their choosing.
    fn may_keep_stored_secret(&self, ctx: &ValidationContext, url: Option<&ProviderUrl>) -> bool {
        let Some(stored) = &ctx.stored_secret else { return false };
        let same_origin = match (url, ProviderUrl::parse(&stored.provider_url)) {
            (Some(new), Ok(old)) => new.origin() == old.origin(),
            _ => self.provider_url() == stored.provider_url,
        };
        stored.method == self.method() && same_origin
    }
}

impl CallHandling {
    fn check(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        let missed = &self.missed;
        if missed.due_in_minutes > MAX_TASK_DUE_MINUTES {
            push(errors, "call_handling.missed.due_in_minutes", ValidationCode::OutOfRange);
        }
        if let TaskResponsible::User { user_id } = missed.responsible
            && let Some(code) = check_user(user_id, ctx, missed.create_task)
        {
            push(errors, "call_handling.missed.responsible.user_id", code);
        }

        let unmapped = &self.unmapped_calls;
        if unmapped.to == PopupAudience::Users {
            let field = "call_handling.unmapped_calls.user_ids";
            check_ids(errors, field, &unmapped.user_ids, MAX_POPUP_USERS, |user_id| check_user(user_id, ctx, true));
        }
        if unmapped.to == PopupAudience::Groups {
            // Kommo's main group is 0; a negative id is none.
            let field = "call_handling.unmapped_calls.group_ids";
            check_ids(errors, field, &unmapped.group_ids, MAX_POPUP_GROUPS, |group_id| {
                let unknown = ctx.active_group_ids.as_ref().is_some_and(|groups| !groups.contains(&group_id));
                if group_id < 0 {
                    Some(ValidationCode::OutOfRange)
                } else {
                    unknown.then_some(ValidationCode::UnknownGroup)
                }
            });
        }

        let lists = &self.call_lists;
        if !(MIN_DIAL_INTERVAL_SECS..=MAX_DIAL_INTERVAL_SECS).contains(&lists.interval_secs) {
            push(errors, "call_handling.call_lists.interval_secs", ValidationCode::OutOfRange);
        }
        if lists.sources.len() > ListSource::ALL.len() {
            push(errors, "call_handling.call_lists.sources", ValidationCode::TooMany);
        } else if lists.sources.iter().enumerate().any(|(i, source)| lists.sources[..i].contains(source)) {
            push(errors, "call_handling.call_lists.sources", ValidationCode::Duplicate);
        } else if lists.enabled && lists.sources.is_empty() {
            push(errors, "call_handling.call_lists.sources", ValidationCode::Required);
        }

        let LeadPlacement { pipeline_id, status_id } = self.placement;
        for (field, id, other) in [
            ("call_handling.placement.pipeline_id", pipeline_id, status_id),
            ("call_handling.placement.status_id", status_id, pipeline_id),
        ] {
            match id {
                Some(id) if id <= 0 => push(errors, field, ValidationCode::OutOfRange),
                None if other.is_some() => push(errors, field, ValidationCode::Incomplete),
                _ => {}
            }
        }
    }
}

impl ExtensionMap {
    fn check(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        if self.entries.len() > MAX_EXTENSIONS {
            // Row checks are skipped: the admin must shorten the list first, and the work stays bounded.
            push(errors, "extensions.entries", ValidationCode::TooMany);
        } else {
            let mut first_row: BTreeMap<&str, usize> = BTreeMap::new();
            for (row, entry) in self.entries.iter().enumerate() {
                let extension_code = check_extension(&entry.extension).or_else(|| {
                    let first = *first_row.entry(entry.extension.as_str()).or_insert(row);
                    (first != row).then_some(ValidationCode::Duplicate)
                });
                if let Some(code) = extension_code {
                    push(errors, format!("extensions.entries[{row}].extension"), code);
                }
                if let Some(code) = check_user(entry.user_id, ctx, true) {
                    push(errors, format!("extensions.entries[{row}].user_id"), code);
                }
            }
        }
        if let Some(user_id) = self.fallback_user_id
            && let Some(code) = check_user(user_id, ctx, true)
        {
            push(errors, "extensions.fallback_user_id", code);
        }
    }
}

fn push(errors: &mut Vec<FieldError>, field: impl Into<String>, code: ValidationCode) {
    errors.push(FieldError { field: field.into(), code });
}

/// A chosen list of ids under `field`: 1 to `max` of them, each valid by `check` and there once; a
/// refusal of one id names its place (`field[i]`).
fn check_ids(
    errors: &mut Vec<FieldError>,
    field: &str,
    ids: &[i64],
    max: usize,
    check: impl Fn(i64) -> Option<ValidationCode>,
) {
    if ids.is_empty() {
        push(errors, field, ValidationCode::Required);
    } else if ids.len() > max {
        push(errors, field, ValidationCode::TooMany);
    } else {
        for (index, id) in ids.iter().enumerate() {
            let code = check(*id).or_else(|| ids[..index].contains(id).then_some(ValidationCode::Duplicate));
            if let Some(code) = code {
                push(errors, format!("{field}[{index}]"), code);
            }
        }
    }
}

/// A Kommo user id: positive always; among the active users when they are known and the setting is in use
/// (a user deactivated since must not block saving a section that is switched off).
fn check_user(user_id: i64, ctx: &ValidationContext, in_use: bool) -> Option<ValidationCode> {
    if user_id <= 0 {
        return Some(ValidationCode::OutOfRange);
    }
    let inactive = ctx.active_user_ids.as_ref().is_some_and(|active| !active.contains(&user_id));
    (in_use && inactive).then_some(ValidationCode::UnknownUser)
}

fn check_extension(extension: &str) -> Option<ValidationCode> {
    if extension.is_empty() {
        return Some(ValidationCode::Required);
    }
    if extension.chars().count() > MAX_EXTENSION_LEN {
        return Some(ValidationCode::TooLong);
    }
    if extension.chars().any(char::is_control) {
        return Some(ValidationCode::ControlCharacters);
    }
    let dialable = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | '+');
    if !extension.chars().all(dialable) {
        return Some(ValidationCode::InvalidExtension);
    }
    None
}

/// The text rules, then [`ProviderUrl::parse`], then the address policy of [`ProviderUrl::check`].
fn check_provider_url(value: &str, allow_insecure_local: bool) -> Result<ProviderUrl, ValidationCode> {
    if let Some(code) = check_text(value, MAX_PROVIDER_URL_LEN) {
        return Err(code);
    }
    let url = ProviderUrl::parse(value)?;
    url.check(allow_insecure_local)?;
    Ok(url)
}

// ---------------------------------------------------------------------------------------------------------
// The provider address
// ---------------------------------------------------------------------------------------------------------

/// A provider API base, parsed strictly: `http[s]://host[:port][/path]`, ASCII only, no userinfo, query or
/// fragment, the host a DNS name, a dotted-quad IPv4 address or a bracketed IPv6 address.
///
/// Anything an HTTP client's more lenient parser (WHATWG) would read differently from us is refused rather
/// than interpreted: backslashes, percent-encoded or non-ASCII hosts, missing or extra slashes, and numeric
/// hosts that are not a canonical dotted quad (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUrl {
    https: bool,
    host: Host,
    port: Option<u16>,
    path: String,
}

/// The host of a [`ProviderUrl`]; a domain is lower-case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Domain(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

impl ProviderUrl {
    /// Reads the syntax only (`invalid_url`, `credentials_in_url`); [`ProviderUrl::check`] applies the policy.
    pub fn parse(input: &str) -> Result<ProviderUrl, ValidationCode> {
        use ValidationCode::{CredentialsInUrl, InvalidUrl};
        let (scheme, rest) = input.split_once("://").ok_or(InvalidUrl)?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
                return Err(InvalidUrl);
            }
            _ => return Err(ValidationCode::NotHttps),
        };
        // Printable ASCII without the characters URL parsers disagree on or that have no place here.
        let plain = |c: char| c.is_ascii_graphic() && !"\\\"<>^`{|}".contains(c);
        if !rest.chars().all(plain) || rest.contains(['?', '#']) {
            return Err(InvalidUrl);
        }
        let (authority, path) = rest.find('/').map_or((rest, "/"), |slash| rest.split_at(slash));
        if authority.contains('@') {
            return Err(CredentialsInUrl);
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (ip, after) = bracketed.split_once(']').ok_or(InvalidUrl)?;
                let ip: Ipv6Addr = ip.parse().map_err(|_| InvalidUrl)?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or(InvalidUrl)?),
                };
                (Host::Ip(IpAddr::V6(ip)), port)
            }
            None => {
                let (host, port) = match authority.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                };
                (parse_host(host)?, port)
            }
        };
        let port = match port {
            None => None,
            Some(port) if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(InvalidUrl);
            }
            Some(port) => Some(port.parse::<u16>().ok().filter(|port| *port != 0).ok_or(InvalidUrl)?),
        };
        if !percent_escapes_are_complete(path) {
            return Err(InvalidUrl);
        }
        Ok(ProviderUrl { https, host, port, path: path.to_owned() })
    }

    /// The egress policy ([`EgressPolicy`]) on the scheme and the literal host (`not_https`,
    /// `forbidden_address`): `https` to a public host; with `allow_insecure_local`, also `http`,
    /// loopback and private networks.
    pub fn check(&self, allow_insecure_local: bool) -> Result<(), ValidationCode> {
        let policy = EgressPolicy { allow_insecure_local };
        if !policy.allows_scheme(self.https) {
            return Err(ValidationCode::NotHttps);
        }
        let allowed = match &self.host {
            Host::Ip(ip) => policy.allows(*ip),
            Host::Domain(name) => policy.allows_name(name),
        };
        if allowed { Ok(()) } else { Err(ValidationCode::ForbiddenAddress) }
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The explicit port, else the scheme's default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// Starts with `/`; percent-escapes kept as typed.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `scheme://host:port`, normalised: what a stored secret is bound to.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port())
    }
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path)
    }
}

/// A DNS name or a canonical dotted quad. Like WHATWG, a host whose last label is numeric is an IPv4
/// address; unlike WHATWG, only the canonical dotted-quad spelling of one is accepted.
fn parse_host(host: &str) -> Result<Host, ValidationCode> {
    use ValidationCode::InvalidUrl;
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let last = name.rsplit('.').next().unwrap_or_default();
    let numeric = |label: &str| match label.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    };
    if numeric(last) {
        return name.parse::<Ipv4Addr>().map(|ip| Host::Ip(IpAddr::V4(ip))).map_err(|_| InvalidUrl);
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(InvalidUrl);
    }
    Ok(Host::Domain(name))
}

fn percent_escapes_are_complete(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .all(|(at, _)| bytes.get(at + 1..at + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValidationCode::*;

    const URL: &str = "https://api.provider.example.com/v1";

    type Expected = Vec<(&'static str, ValidationCode)>;

    fn password(url: &str, login: &str, secret: Option<&str>) -> VoipCredentials {
        VoipCredentials::Password { provider_url: url.into(), login: login.into(), password: secret.map(Into::into) }
    }

    fn api_key(url: &str, key: Option<&str>) -> VoipCredentials {
        VoipCredentials::ApiKey { provider_url: url.into(), key: key.map(Into::into) }
    }

    fn valid() -> IntegrationSettings {
        IntegrationSettings { active: true, credentials: password(URL, "alice", Some("secret")), ..Default::default() }
    }

    fn users(ids: &[i64]) -> ValidationContext {
        ValidationContext { active_user_ids: Some(ids.iter().copied().collect()), ..Default::default() }
    }

    fn stored(method: CredentialMethod, url: &str) -> ValidationContext {
        ValidationContext {
            stored_secret: Some(StoredSecret { method, provider_url: url.into() }),
            ..Default::default()
        }
    }

    fn refused(settings: &IntegrationSettings, ctx: &ValidationContext) -> Vec<(String, ValidationCode)> {
        settings.validate(ctx).into_iter().map(|error| (error.field, error.code)).collect()
    }

    fn owned(expected: Expected) -> Vec<(String, ValidationCode)> {
        expected.into_iter().map(|(field, code)| (field.to_owned(), code)).collect()
    }

    fn entry(extension: &str, user_id: i64) -> ExtensionEntry {
        ExtensionEntry { extension: extension.into(), user_id }
    }

    #[test]
    fn default_settings_with_credentials_are_valid_for_any_context() {
        assert_eq!(refused(&valid(), &ValidationContext::default()), vec![]);
        assert_eq!(refused(&valid(), &users(&[])), vec![]);
    }

    #[test]
    fn settings_are_refused_while_the_widget_is_off() {
        let settings = IntegrationSettings { active: false, ..valid() };
        assert_eq!(refused(&settings, &ValidationContext::default()), owned(vec![("active", NotActive)]));
    }

    #[test]
    fn a_new_install_must_type_its_credentials() {
        let expected = owned(vec![
            ("active", NotActive),
            ("credentials.provider_url", Required),
            ("credentials.login", Required),
            ("credentials.password", Required),
        ]);
        assert_eq!(refused(&IntegrationSettings::default(), &ValidationContext::default()), expected);
    }

    #[test]
    fn credentials_table() {
        use CredentialMethod::{ApiKey, Password};
        let long = |n: usize| "x".repeat(n);
        let other_url = "https://other.example.net/v1";
        let cases: Vec<(&str, VoipCredentials, ValidationContext, Expected)> = vec![
            ("login and password", password(URL, "alice", Some("s")), Default::default(), vec![]),
            ("an api key", api_key(URL, Some("k")), Default::default(), vec![]),
            ("blank login", password(URL, " ", Some("s")), Default::default(), vec![("credentials.login", Required)]),
            ("login at its limit", password(URL, &long(MAX_LOGIN_LEN), Some("s")), Default::default(), vec![]),
            (
                "login over its limit",
                password(URL, &long(MAX_LOGIN_LEN + 1), Some("s")),
                Default::default(),
                vec![("credentials.login", TooLong)],
            ),
            (
                "login with a control character",
                password(URL, "al\u{7}ice", Some("s")),
                Default::default(),
                vec![("credentials.login", ControlCharacters)],
            ),
            (
                "blank password",
                password(URL, "alice", Some("  ")),
                Default::default(),
                vec![("credentials.password", Required)],
            ),
            ("password at its limit", password(URL, "a", Some(&long(MAX_PASSWORD_LEN))), Default::default(), vec![]),
            (
                "password over its limit",
                password(URL, "a", Some(&long(MAX_PASSWORD_LEN + 1))),
                Default::default(),
                vec![("credentials.password", TooLong)],
            ),
            (
                "password with a newline",
                password(URL, "a", Some("se\ncret")),
                Default::default(),
                vec![("credentials.password", ControlCharacters)],
            ),
            ("blank key", api_key(URL, Some("")), Default::default(), vec![("credentials.key", Required)]),
            ("key at its limit", api_key(URL, Some(&long(MAX_API_KEY_LEN))), Default::default(), vec![]),
            (
                "key over its limit",
                api_key(URL, Some(&long(MAX_API_KEY_LEN + 1))),
                Default::default(),
                vec![("credentials.key", TooLong)],
            ),
            (
                "key with a tab",
                api_key(URL, Some("k\tk")),
                Default::default(),
                vec![("credentials.key", ControlCharacters)],
            ),
            (
                "omitted password with none on file",
                password(URL, "alice", None),
                Default::default(),
                vec![("credentials.password", Required)],
            ),
            (
                "omitted password kept for the same provider",
                password(URL, "alice", None),
                stored(Password, URL),
                vec![],
            ),
            (
                "omitted password kept when only the path or the case changes",
                password("HTTPS://API.provider.example.com:443/v2", "bob", None),
                stored(Password, URL),
                vec![],
            ),
            (
                "omitted password not kept for another provider",
                password(other_url, "alice", None),
                stored(Password, URL),
                vec![("credentials.password", Required)],
            ),
            (
                "omitted password not kept for another port",
                password("https://api.provider.example.com:8443/v1", "alice", None),
                stored(Password, URL),
                vec![("credentials.password", Required)],
            ),
            (
                "omitted password not kept when a key is on file",
                password(URL, "alice", None),
                stored(ApiKey, URL),
                vec![("credentials.password", Required)],
            ),
            ("omitted key kept for the same provider", api_key(URL, None), stored(ApiKey, URL), vec![]),
            (
                "omitted key not kept when a password is on file",
                api_key(URL, None),
                stored(Password, URL),
                vec![("credentials.key", Required)],
            ),
            (
                "a refused address is the one error, whatever the key",
                api_key("https://10.0.0.1", None),
                stored(ApiKey, "https://10.0.0.1"),
                vec![("credentials.provider_url", ForbiddenAddress)],
            ),
            ("a new key for another provider", api_key(other_url, Some("k2")), stored(ApiKey, URL), vec![]),
            (
                "everything wrong at once, in form order",
                password("ftp://x", "", Some("")),
                Default::default(),
                vec![
                    ("credentials.provider_url", NotHttps),
                    ("credentials.login", Required),
                    ("credentials.password", Required),
                ],
            ),
        ];
        for (case, credentials, ctx, expected) in cases {
            let settings = IntegrationSettings { credentials: credentials.clone(), ..valid() };
            assert_eq!(refused(&settings, &ctx), owned(expected.clone()), "{case}");
            let alone: Vec<_> = credentials.validate(&ctx).into_iter().map(|e| (e.field, e.code)).collect();
            assert_eq!(alone, owned(expected), "{case} (credentials alone)");
        }
    }

    #[test]
    fn provider_url_table() {
        let long_path = format!("https://a.example.com/{}", "p".repeat(MAX_PROVIDER_URL_LEN - 22));
        let too_long_path = format!("{long_path}p");
        let long_label = format!("https://{}.com", "a".repeat(64));
        let long_name = format!("https://{}.com", "a.".repeat(126));
        let cases: Vec<(&str, bool, Result<(), ValidationCode>)> = vec![
            // Accepted.
            ("https://api.example.com", false, Ok(())),
            ("https://api.example.com/", false, Ok(())),
            ("https://API.Example.COM:8443/v1/calls", false, Ok(())),
            ("HTTPS://api.example.com", false, Ok(())),
            ("https://api.example.com./v1", false, Ok(())),
            ("https://xn--80ak6aa92e.com/v1", false, Ok(())),
            ("https://api.example.com/a%20b", false, Ok(())),
            ("https://8.8.8.8/v1", false, Ok(())),
            ("https://[2606:4700:4700::1111]:443/v1", false, Ok(())),
            ("https://0x7f.example.com", false, Ok(())),
            ("https://a.example.com:65535", false, Ok(())),
            ("https://a.example.com:1", false, Ok(())),
            (&long_path, false, Ok(())),
            // Text rules.
            ("", false, Err(Required)),
            ("   ", false, Err(Required)),
            (&too_long_path, false, Err(TooLong)),
            ("https://api.example.com/\n", false, Err(ControlCharacters)),
            // Syntax.
            ("api.example.com", false, Err(InvalidUrl)),
            ("https:api.example.com", false, Err(InvalidUrl)),
            ("https:/api.example.com", false, Err(InvalidUrl)),
            ("https:///api.example.com", false, Err(InvalidUrl)),
            ("https://", false, Err(InvalidUrl)),
            ("://api.example.com", false, Err(InvalidUrl)),
            ("ht tps://api.example.com", false, Err(InvalidUrl)),
            (" https://api.example.com", false, Err(InvalidUrl)),
            ("https://api.example.com ", false, Err(InvalidUrl)),
            ("https://api.example.com/a b", false, Err(InvalidUrl)),
            ("https://api.example.com\\@evil.com", false, Err(InvalidUrl)),
            ("https://api.example.com/v1?token=1", false, Err(InvalidUrl)),
            ("https://api.example.com/#x", false, Err(InvalidUrl)),
            ("https://api.example.com:", false, Err(InvalidUrl)),
            ("https://api.example.com:0", false, Err(InvalidUrl)),
            ("https://api.example.com:65536", false, Err(InvalidUrl)),
            ("https://api.example.com:443443", false, Err(InvalidUrl)),
            ("https://api.example.com:+443", false, Err(InvalidUrl)),
            ("https://api.example.com:1:2", false, Err(InvalidUrl)),
            ("https://api.exämple.com", false, Err(InvalidUrl)),
            ("https://１２７.0.0.1", false, Err(InvalidUrl)),
            ("https://%31%32%37.0.0.1", false, Err(InvalidUrl)),
            ("https://api_1.example.com", false, Err(InvalidUrl)),
            ("https://-api.example.com", false, Err(InvalidUrl)),
            ("https://api..example.com", false, Err(InvalidUrl)),
            ("https://.example.com", false, Err(InvalidUrl)),
            (&long_label, false, Err(InvalidUrl)),
            (&long_name, false, Err(InvalidUrl)),
            ("https://api.example.com/%zz", false, Err(InvalidUrl)),
            ("https://api.example.com/%2", false, Err(InvalidUrl)),
            ("https://2130706433", false, Err(InvalidUrl)),
            ("https://0x7f000001", false, Err(InvalidUrl)),
            ("https://0x7f.1", false, Err(InvalidUrl)),
            ("https://127.1", false, Err(InvalidUrl)),
            ("https://0177.0.0.1", false, Err(InvalidUrl)),
            ("https://127.000.000.001", false, Err(InvalidUrl)),
            ("https://1.2.3.4.5", false, Err(InvalidUrl)),
            ("https://256.1.1.1", false, Err(InvalidUrl)),
            ("https://example.0x", false, Err(InvalidUrl)),
            ("https://[::1", false, Err(InvalidUrl)),
            ("https://[fe80::1%25eth0]", false, Err(InvalidUrl)),
            ("https://[2606:4700::1]x", false, Err(InvalidUrl)),
            ("https://[127.0.0.1]", false, Err(InvalidUrl)),
            ("https://::1", false, Err(InvalidUrl)),
            // Credentials in the address.
            ("https://user:pass@api.example.com", false, Err(CredentialsInUrl)),
            ("https://user@api.example.com", false, Err(CredentialsInUrl)),
            ("https://@api.example.com", false, Err(CredentialsInUrl)),
            ("https://api.example.com@127.0.0.1", false, Err(CredentialsInUrl)),
            ("https://api.example.com/v1/@x", false, Ok(())),
            // Scheme.
            ("http://api.example.com", false, Err(NotHttps)),
            ("ftp://api.example.com", false, Err(NotHttps)),
            ("file:///etc/passwd", false, Err(NotHttps)),
            ("gopher://127.0.0.1:6379/_", false, Err(NotHttps)),
            ("ftp://api.example.com", true, Err(NotHttps)),
            // Forbidden addresses and names.
            ("https://127.0.0.1", false, Err(ForbiddenAddress)),
            ("https://127.255.255.254", false, Err(ForbiddenAddress)),
            ("https://10.1.2.3", false, Err(ForbiddenAddress)),
            ("https://172.16.0.1", false, Err(ForbiddenAddress)),
            ("https://172.31.255.255", false, Err(ForbiddenAddress)),
            ("https://192.168.1.1", false, Err(ForbiddenAddress)),
            ("https://100.64.0.1", false, Err(ForbiddenAddress)),
            ("https://100.100.100.200", false, Err(ForbiddenAddress)),
            ("https://169.254.169.254/latest/meta-data", false, Err(ForbiddenAddress)),
            ("https://0.0.0.0", false, Err(ForbiddenAddress)),
            ("https://224.0.0.1", false, Err(ForbiddenAddress)),
            ("https://255.255.255.255", false, Err(ForbiddenAddress)),
            ("https://127.0.0.1.", false, Err(ForbiddenAddress)),
            ("https://[::1]", false, Err(ForbiddenAddress)),
            ("https://[::]", false, Err(ForbiddenAddress)),
            ("https://[fd00:ec2::254]", false, Err(ForbiddenAddress)),
            ("https://[fe80::1]", false, Err(ForbiddenAddress)),
            ("https://[::ffff:127.0.0.1]", false, Err(ForbiddenAddress)),
            ("https://[::ffff:169.254.169.254]", false, Err(ForbiddenAddress)),
            ("https://[64:ff9b::a00:1]", false, Err(ForbiddenAddress)),
            ("https://[2002:c0a8:101::1]", false, Err(ForbiddenAddress)),
            ("https://localhost", false, Err(ForbiddenAddress)),
            ("https://LOCALHOST.:8443", false, Err(ForbiddenAddress)),
            ("https://api.localhost", false, Err(ForbiddenAddress)),
            ("https://metadata.google.internal", false, Err(ForbiddenAddress)),
            ("https://printer.local", false, Err(ForbiddenAddress)),
            ("https://router.home.arpa", false, Err(ForbiddenAddress)),
            ("https://metadata", false, Err(ForbiddenAddress)),
            ("https://localhost.example.com", false, Ok(())),
            ("https://internal.example.com", false, Ok(())),
            ("https://mylocalhost.com", false, Ok(())),
            // The local stand-in: http, loopback and private networks, never the metadata services (the
            // egress policy's own table, in `egress.rs`, covers every range).
            ("http://127.0.0.1:9000/provider", true, Ok(())),
            ("http://localhost:9000", true, Ok(())),
            ("http://provider.localhost:9000", true, Ok(())),
            ("http://[::1]:9000", true, Ok(())),
            ("https://[::ffff:127.0.0.1]", true, Ok(())),
            ("http://api.example.com", true, Ok(())),
            ("http://10.0.0.5:9000", true, Ok(())),
            ("http://sandbox:9000", true, Ok(())),
            ("http://169.254.169.254", true, Err(ForbiddenAddress)),
            ("http://[fd00:ec2::254]", true, Err(ForbiddenAddress)),
            ("http://metadata.google.internal", true, Err(ForbiddenAddress)),
            ("http://metadata", true, Err(ForbiddenAddress)),
        ];
        for (url, allow_insecure_local, expected) in cases {
            assert_eq!(
                check_provider_url(url, allow_insecure_local).map(drop),
                expected,
                "{url} (local: {allow_insecure_local})"
            );
            let ctx = ValidationContext { allow_insecure_local, ..Default::default() };
            let field = expected.err().map(|code| ("credentials.provider_url".to_owned(), code));
            let got: Vec<_> = api_key(url, Some("k")).validate(&ctx).into_iter().map(|e| (e.field, e.code)).collect();
            assert_eq!(got, field.into_iter().collect::<Vec<_>>(), "{url} through validate");
        }
    }

    #[test]
    fn a_parsed_provider_url_names_its_parts_normalised() {
        let cases: [(&str, &str, u16, &str, &str); 5] = [
            ("https://API.Example.com", "api.example.com", 443, "/", "https://api.example.com:443"),
            ("https://api.example.com.:8443/v1/", "api.example.com", 8443, "/v1/", "https://api.example.com:8443"),
            ("http://127.0.0.1/x", "127.0.0.1", 80, "/x", "http://127.0.0.1:80"),
            ("https://[2606:4700::0001]:9/a%2Fb", "[2606:4700::1]", 9, "/a%2Fb", "https://[2606:4700::1]:9"),
            ("HtTpS://8.8.8.8", "8.8.8.8", 443, "/", "https://8.8.8.8:443"),
        ];
        for (input, host, port, path, origin) in cases {
            let url = ProviderUrl::parse(input).unwrap();
            assert_eq!(
                (url.host().to_string(), url.port(), url.path(), url.origin()),
                (host.into(), port, path, origin.into())
            );
            assert_eq!(url.to_string(), format!("{origin}{path}"), "{input}");
        }
    }

    #[test]
    fn missed_call_table() {
        let missed = |create_task: bool, due_in_minutes: u32, responsible: TaskResponsible| MissedCall {
            create_task,
            due_in_minutes,
            link_to_lead: true,
            responsible,
        };
        let user = |user_id| TaskResponsible::User { user_id };
        let known = users(&[7, 8]);
        let unknown = ValidationContext::default();
        let due = "call_handling.missed.due_in_minutes";
        let responsible = "call_handling.missed.responsible.user_id";
        let cases: Vec<(&str, MissedCall, &ValidationContext, Expected)> = vec![
            ("due now", missed(true, 0, TaskResponsible::ContactResponsible), &known, vec![]),
            ("due in a week", missed(true, MAX_TASK_DUE_MINUTES, TaskResponsible::ExtensionUser), &known, vec![]),
            (
                "due after a week",
                missed(true, MAX_TASK_DUE_MINUTES + 1, Default::default()),
                &known,
                vec![(due, OutOfRange)],
            ),
            ("due far out while off", missed(false, u32::MAX, Default::default()), &known, vec![(due, OutOfRange)]),
            ("an active chosen user", missed(true, 60, user(7)), &known, vec![]),
            ("an inactive chosen user", missed(true, 60, user(9)), &known, vec![(responsible, UnknownUser)]),
            ("an inactive chosen user while tasks are off", missed(false, 60, user(9)), &known, vec![]),
            ("a chosen user before the users are known", missed(true, 60, user(9)), &unknown, vec![]),
            ("a zero user id", missed(true, 60, user(0)), &unknown, vec![(responsible, OutOfRange)]),
            ("a negative user id while off", missed(false, 60, user(-3)), &known, vec![(responsible, OutOfRange)]),
            (
                "both wrong",
                missed(true, MAX_TASK_DUE_MINUTES + 1, user(1)),
                &known,
                vec![(due, OutOfRange), (responsible, UnknownUser)],
            ),
        ];
        for (case, missed, ctx, expected) in cases {
            let mut settings = valid();
            settings.call_handling.missed = missed;
            assert_eq!(refused(&settings, ctx), owned(expected), "{case}");
        }
    }

    #[test]
    fn lead_placement_table() {
        let pipeline = "call_handling.placement.pipeline_id";
        let status = "call_handling.placement.status_id";
        let cases: Vec<(&str, Option<i64>, Option<i64>, Expected)> = vec![
            ("neither: the main pipeline", None, None, vec![]),
            ("both", Some(1), Some(1), vec![]),
            ("both large", Some(i64::MAX), Some(i64::MAX), vec![]),
            ("a pipeline without a stage", Some(5), None, vec![(status, Incomplete)]),
            ("a stage without a pipeline", None, Some(142), vec![(pipeline, Incomplete)]),
            ("a zero pipeline", Some(0), Some(3), vec![(pipeline, OutOfRange)]),
            ("a negative stage", Some(3), Some(-1), vec![(status, OutOfRange)]),
            ("a negative stage alone", None, Some(-1), vec![(pipeline, Incomplete), (status, OutOfRange)]),
            ("both non-positive", Some(0), Some(i64::MIN), vec![(pipeline, OutOfRange), (status, OutOfRange)]),
        ];
        for (case, pipeline_id, status_id, expected) in cases {
            let mut settings = valid();
            settings.call_handling.placement = LeadPlacement { pipeline_id, status_id };
            assert_eq!(refused(&settings, &ValidationContext::default()), owned(expected), "{case}");
        }
    }

    #[test]
    fn call_lists_table() {
        use ListSource::{Companies, Contacts, Leads};
        let lists = |enabled: bool, interval_secs: u32, sources: &[ListSource]| CallLists {
            enabled,
            interval_secs,
            sources: sources.to_vec(),
        };
        let interval = "call_handling.call_lists.interval_secs";
        let sources = "call_handling.call_lists.sources";
        let cases: Vec<(&str, CallLists, Expected)> = vec![
            ("the defaults", CallLists::default(), vec![]),
            ("the shortest pause, one list", lists(true, MIN_DIAL_INTERVAL_SECS, &[Leads]), vec![]),
            ("the longest pause, two lists", lists(true, MAX_DIAL_INTERVAL_SECS, &[Companies, Contacts]), vec![]),
            ("every list in another order", lists(true, 10, &[Leads, Companies, Contacts]), vec![]),
            ("off, from no list", lists(false, 10, &[]), vec![]),
            ("a pause too short", lists(true, MIN_DIAL_INTERVAL_SECS - 1, &[Contacts]), vec![(interval, OutOfRange)]),
            ("no pause at all", lists(true, 0, &[Contacts]), vec![(interval, OutOfRange)]),
            ("a pause too long", lists(true, MAX_DIAL_INTERVAL_SECS + 1, &[Contacts]), vec![(interval, OutOfRange)]),
            ("a pause out of range while off", lists(false, u32::MAX, &[]), vec![(interval, OutOfRange)]),
            ("on, from no list", lists(true, 10, &[]), vec![(sources, Required)]),
            ("a list twice", lists(true, 10, &[Leads, Contacts, Leads]), vec![(sources, Duplicate)]),
            ("a list twice while off", lists(false, 10, &[Contacts, Contacts]), vec![(sources, Duplicate)]),
            (
                "more lists than there are",
                lists(true, 10, &[Contacts, Companies, Leads, Contacts]),
                vec![(sources, TooMany)],
            ),
            ("a pause too short and no list", lists(true, 1, &[]), vec![(interval, OutOfRange), (sources, Required)]),
        ];
        for (case, call_lists, expected) in cases {
            let mut settings = valid();
            settings.call_handling.call_lists = call_lists;
            assert_eq!(refused(&settings, &ValidationContext::default()), owned(expected), "{case}");
        }
    }

    #[test]
    fn call_lists_stored_before_they_existed_read_as_the_defaults_and_their_wire_form_is_strict() {
        let mut stored = serde_json::to_value(CallHandling::default()).unwrap();
        stored.as_object_mut().unwrap().remove("call_lists").unwrap();
        let read: CallHandling = serde_json::from_value(stored).unwrap();
        assert_eq!(read.call_lists, CallLists::default());
        assert_eq!(read, CallHandling::default());

        let wire = serde_json::to_value(CallLists::default()).unwrap();
        let expected =
            serde_json::json!({"enabled": true, "interval_secs": 10, "sources": ["contacts", "companies", "leads"]});
        assert_eq!(wire, expected);
        for source in ListSource::ALL {
            assert_eq!(serde_json::to_value(source).unwrap(), source.as_str());
            assert_eq!(ListSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(ListSource::parse("tasks"), None);

        type Mutation = fn(&mut serde_json::Value);
        let cases: Vec<(&str, Mutation)> = vec![
            ("an unknown key", |v| v["call_lists"]["autodial"] = true.into()),
            ("an unknown list", |v| v["call_lists"]["sources"] = serde_json::json!(["contacts", "tasks"])),
            ("a list by its display name", |v| v["call_lists"]["sources"] = serde_json::json!(["Leads"])),
            ("a negative pause", |v| v["call_lists"]["interval_secs"] = (-5).into()),
            ("a pause in text", |v| v["call_lists"]["interval_secs"] = "10".into()),
            ("no pause", |v| v["call_lists"].as_object_mut().unwrap().remove("interval_secs").map(drop).unwrap()),
            ("no switch", |v| v["call_lists"].as_object_mut().unwrap().remove("enabled").map(drop).unwrap()),
        ];
        for (case, mutate) in cases {
            let mut body = serde_json::to_value(CallHandling::default()).unwrap();
            mutate(&mut body);
            assert!(serde_json::from_value::<CallHandling>(body).is_err(), "{case}");
        }
    }

    #[test]
    fn extension_map_table() {
        let map = |entries: Vec<ExtensionEntry>, fallback_user_id| ExtensionMap { entries, fallback_user_id };
        let many = |n: usize| (0..n).map(|i| entry(&i.to_string(), 7)).collect::<Vec<_>>();
        let known = users(&[7, 8]);
        let unknown = ValidationContext::default();
        let nobody = users(&[]);
        let cases: Vec<(&str, ExtensionMap, &ValidationContext, Expected)> = vec![
            ("no rows", map(vec![], None), &known, vec![]),
            ("rows and a fallback", map(vec![entry("101", 7), entry("102", 8)], Some(8)), &known, vec![]),
            ("one user with several extensions", map(vec![entry("101", 7), entry("102", 7)], None), &known, vec![]),
            ("every dialable character", map(vec![entry("+*#0123456789", 7)], None), &known, vec![]),
            ("an extension at its limit", map(vec![entry(&"1".repeat(MAX_EXTENSION_LEN), 7)], None), &known, vec![]),
            ("the most rows", map(many(MAX_EXTENSIONS), None), &known, vec![]),
            ("one row too many", map(many(MAX_EXTENSIONS + 1), None), &known, vec![("extensions.entries", TooMany)]),
            (
                "one row too many still checks the fallback",
                map(many(MAX_EXTENSIONS + 1), Some(9)),
                &known,
                vec![("extensions.entries", TooMany), ("extensions.fallback_user_id", UnknownUser)],
            ),
            (
                "an empty extension",
                map(vec![entry("101", 7), entry("", 7)], None),
                &known,
                vec![("extensions.entries[1].extension", Required)],
            ),
            (
                "an extension over its limit",
                map(vec![entry(&"1".repeat(MAX_EXTENSION_LEN + 1), 7)], None),
                &known,
                vec![("extensions.entries[0].extension", TooLong)],
            ),
            (
                "an extension with a control character",
                map(vec![entry("10\u{0}1", 7)], None),
                &known,
                vec![("extensions.entries[0].extension", ControlCharacters)],
            ),
            (
                "extensions with letters, spaces or other digits",
                map(vec![entry("10a", 7), entry(" 101", 7), entry("1-2", 7), entry("١٢", 7)], None),
                &known,
                vec![
                    ("extensions.entries[0].extension", InvalidExtension),
                    ("extensions.entries[1].extension", InvalidExtension),
                    ("extensions.entries[2].extension", InvalidExtension),
                    ("extensions.entries[3].extension", InvalidExtension),
                ],
            ),
            (
                "a duplicate names every later row",
                map(vec![entry("101", 7), entry("102", 8), entry("101", 8), entry("101", 7)], None),
                &known,
                vec![("extensions.entries[2].extension", Duplicate), ("extensions.entries[3].extension", Duplicate)],
            ),
            (
                "an invalid row does not count as the first of its value",
                map(vec![entry("1a", 7), entry("1a", 7)], None),
                &known,
                vec![
                    ("extensions.entries[0].extension", InvalidExtension),
                    ("extensions.entries[1].extension", InvalidExtension),
                ],
            ),
            (
                "an inactive user",
                map(vec![entry("101", 7), entry("102", 9)], None),
                &known,
                vec![("extensions.entries[1].user_id", UnknownUser)],
            ),
            ("an inactive user before the users are known", map(vec![entry("102", 9)], None), &unknown, vec![]),
            (
                "non-positive user ids",
                map(vec![entry("101", 0), entry("102", -7)], Some(0)),
                &unknown,
                vec![
                    ("extensions.entries[0].user_id", OutOfRange),
                    ("extensions.entries[1].user_id", OutOfRange),
                    ("extensions.fallback_user_id", OutOfRange),
                ],
            ),
            ("an inactive fallback", map(vec![], Some(9)), &known, vec![("extensions.fallback_user_id", UnknownUser)]),
            (
                "a fallback when no user is active",
                map(vec![], Some(7)),
                &nobody,
                vec![("extensions.fallback_user_id", UnknownUser)],
            ),
            (
                "a row wrong twice",
                map(vec![entry("101", 7), entry("101", 9)], None),
                &known,
                vec![("extensions.entries[1].extension", Duplicate), ("extensions.entries[1].user_id", UnknownUser)],
            ),
        ];
        for (case, extensions, ctx, expected) in cases {
            let settings = IntegrationSettings { extensions, ..valid() };
            assert_eq!(refused(&settings, ctx), owned(expected), "{case}");
        }
    }

    #[test]
    fn an_extension_finds_its_user_or_the_fallback() {
        let map = ExtensionMap { entries: vec![entry("101", 7), entry("102", 8)], fallback_user_id: Some(9) };
        let cases = [(Some("101"), Some(7)), (Some("102"), Some(8)), (Some("103"), Some(9)), (None, Some(9))];
        for (extension, user) in cases {
            assert_eq!(map.user_for(extension), user, "{extension:?}");
        }
        assert_eq!(ExtensionMap::default().user_for(Some("101")), None);
    }

    #[test]
    fn errors_come_in_form_order_across_sections() {
        let mut settings = valid();
        settings.credentials = password("http://x.example.com", "", Some("s"));
        settings.call_handling.missed.due_in_minutes = MAX_TASK_DUE_MINUTES + 1;
        settings.call_handling.placement.status_id = Some(1);
        settings.extensions.entries = vec![entry("x", 1)];
        let expected = owned(vec![
            ("credentials.provider_url", NotHttps),
            ("credentials.login", Required),
            ("call_handling.missed.due_in_minutes", OutOfRange),
            ("call_handling.placement.pipeline_id", Incomplete),
            ("extensions.entries[0].extension", InvalidExtension),
            ("extensions.entries[0].user_id", UnknownUser),
        ]);
        assert_eq!(refused(&settings, &users(&[7])), expected);
    }

    #[test]
    fn the_popup_of_unmapped_calls_goes_to_chosen_active_users_once_each() {
        let known = users(&[7, 8]);
        let with = |to: PopupAudience, user_ids: Vec<i64>| {
            let mut settings = valid();
            settings.call_handling.unmapped_calls = UnmappedCalls { to, user_ids, group_ids: vec![] };
            settings
        };
        let field = |index: usize| format!("call_handling.unmapped_calls.user_ids[{index}]");
        assert_eq!(refused(&with(PopupAudience::Users, vec![7, 8]), &known), vec![]);
        assert_eq!(refused(&with(PopupAudience::Everyone, vec![]), &known), vec![]);
        assert_eq!(refused(&with(PopupAudience::Nobody, vec![99]), &known), vec![], "unused choices do not block");
        assert_eq!(
            refused(&with(PopupAudience::Users, vec![]), &known),
            vec![("call_handling.unmapped_calls.user_ids".to_owned(), ValidationCode::Required)]
        );
        assert_eq!(
            refused(&with(PopupAudience::Users, vec![7, 9, 7, -1]), &known),
            vec![
                (field(1), ValidationCode::UnknownUser),
                (field(2), ValidationCode::Duplicate),
                (field(3), ValidationCode::OutOfRange)
            ]
        );
        let many = (1..=MAX_POPUP_USERS as i64 + 1).collect();
        assert_eq!(
            refused(&with(PopupAudience::Users, many), &ValidationContext::default()),
            vec![("call_handling.unmapped_calls.user_ids".to_owned(), ValidationCode::TooMany)]
        );
        // Settings stored before this choice existed read as "everyone", without Kommo's notification.
        let stored: CallHandling = serde_json::from_value(serde_json::json!({
            "widget": {"ringing_sound": true, "call_feedback_modal": true, "auto_open_card": false,
                       "call_quality_rating": false},
            "unknown_incoming": {"create": "unsorted", "unsorted_accept": "manual"},
            "known_incoming": serde_json::to_value(KnownIncoming::default()).unwrap(),
            "missed": serde_json::to_value(MissedCall::default()).unwrap(),
            "outgoing_new": serde_json::to_value(OutgoingToNewNumber::default()).unwrap(),
            "placement": serde_json::to_value(LeadPlacement::default()).unwrap(),
        }))
        .unwrap();
        assert_eq!(stored, CallHandling::default());
    }

    #[test]
    fn the_popup_of_unmapped_calls_goes_to_chosen_groups_once_each() {
        let with = |to: PopupAudience, group_ids: Vec<i64>| {
            let mut settings = valid();
            settings.call_handling.unmapped_calls = UnmappedCalls { to, user_ids: vec![], group_ids };
            settings
        };
        let known = users(&[7]);
        let field = |index: usize| format!("call_handling.unmapped_calls.group_ids[{index}]");
        assert_eq!(refused(&with(PopupAudience::Groups, vec![0, 12]), &known), vec![], "Kommo's main group is 0");
        // With the account's groups known (the server always knows them), a group no active user is in
        // is refused, as an inactive user is.
        let grouped = ValidationContext { active_group_ids: Some([0, 12].into()), ..users(&[7]) };
        assert_eq!(refused(&with(PopupAudience::Groups, vec![0, 12]), &grouped), vec![]);
        assert_eq!(
            refused(&with(PopupAudience::Groups, vec![12, 13, -1]), &grouped),
            vec![(field(1), ValidationCode::UnknownGroup), (field(2), ValidationCode::OutOfRange)]
        );
        assert_eq!(
            refused(&with(PopupAudience::Everyone, vec![-1, -1]), &known),
            vec![],
            "unused choices do not block"
        );
        assert_eq!(
            refused(&with(PopupAudience::Groups, vec![]), &known),
            vec![("call_handling.unmapped_calls.group_ids".to_owned(), ValidationCode::Required)]
        );
        assert_eq!(
            refused(&with(PopupAudience::Groups, vec![3, 4, 3, -2]), &known),
            vec![(field(2), ValidationCode::Duplicate), (field(3), ValidationCode::OutOfRange)]
        );
        let most = (1..=MAX_POPUP_GROUPS as i64).collect();
        assert_eq!(refused(&with(PopupAudience::Groups, most), &known), vec![]);
        let many = (0..=MAX_POPUP_GROUPS as i64).collect();
        assert_eq!(
            refused(&with(PopupAudience::Groups, many), &known),
            vec![("call_handling.unmapped_calls.group_ids".to_owned(), ValidationCode::TooMany)]
        );
        // On the wire: `groups`, with `group_ids`; settings stored without `group_ids` read as none, and an
        // unknown key is still refused.
        let stored: UnmappedCalls =
            serde_json::from_value(serde_json::json!({"to": "users", "user_ids": [7]})).unwrap();
        assert_eq!(stored, UnmappedCalls { to: PopupAudience::Users, user_ids: vec![7], group_ids: vec![] });
        let groups: UnmappedCalls =
            serde_json::from_value(serde_json::json!({"to": "groups", "group_ids": [0, 5]})).unwrap();
        assert_eq!(groups, UnmappedCalls { to: PopupAudience::Groups, user_ids: vec![], group_ids: vec![0, 5] });
        assert!(serde_json::from_value::<UnmappedCalls>(serde_json::json!({"to": "groups", "groups": [5]})).is_err());
    }

    #[test]
    fn defaults_are_what_a_new_install_starts_with() {
        let handling = CallHandling::default();
        assert_eq!(
            handling.widget,
            WidgetBehaviour {
                ringing_sound: true,
                call_feedback_modal: true,
                auto_open_card: false,
                call_quality_rating: false,
                kommo_notification: false,
            }
        );
        assert_eq!(
            handling.unmapped_calls,
            UnmappedCalls { to: PopupAudience::Everyone, user_ids: vec![], group_ids: vec![] }
        );
        assert_eq!(
            handling.unknown_incoming,
            UnknownIncoming { create: UnknownCallerEntity::Unsorted, unsorted_accept: UnsortedAccept::Manual }
        );
        assert_eq!(
            handling.known_incoming,
            KnownIncoming { create_lead_when_no_active_lead: false, note_number_when_several: true }
        );
        assert_eq!(
            handling.missed,
            MissedCall {
                create_task: true,
                due_in_minutes: 60,
                link_to_lead: true,
                responsible: TaskResponsible::ContactResponsible
            }
        );
        assert_eq!(handling.outgoing_new, OutgoingToNewNumber { create_contact_and_lead: true });
        assert_eq!(handling.placement, LeadPlacement { pipeline_id: None, status_id: None });
        assert_eq!(
            handling.call_lists,
            CallLists {
                enabled: true,
                interval_secs: 10,
                sources: vec![ListSource::Contacts, ListSource::Companies, ListSource::Leads]
            }
        );
        assert_eq!(ExtensionMap::default(), ExtensionMap { entries: vec![], fallback_user_id: None });
    }

    #[test]
    fn defaults_and_views_survive_a_json_round_trip() {
        let settings = IntegrationSettings::default();
        let text = serde_json::to_string(&settings).unwrap();
        assert_eq!(serde_json::from_str::<IntegrationSettings>(&text).unwrap(), settings);

        let mut full = valid();
        full.credentials = api_key(URL, Some("k"));
        full.call_handling.missed.responsible = TaskResponsible::User { user_id: 7 };
        full.call_handling.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer;
        full.call_handling.placement = LeadPlacement { pipeline_id: Some(1), status_id: Some(2) };
        full.extensions = ExtensionMap { entries: vec![entry("101", 7)], fallback_user_id: Some(7) };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<IntegrationSettings>(&text).unwrap(), full);

        let view = IntegrationSettingsView {
            active: true,
            system: ProviderSystem::Standard,
            credentials: full.credentials.view(false),
            call_handling: full.call_handling,
            extensions: full.extensions.clone(),
            webhook: Some(WebhookEndpoint {
                url: "https://voip.example.com/hooks/voip/abc".into(),
                signing_secret: Some("whsec_c2VjcmV0".into()),
                signing_secret_hint: "…VjcmV0".into(),
            }),
            allow_insecure_provider: false,
        };
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<IntegrationSettingsView>(&text).unwrap(), view);
        let text = serde_json::to_string(&IntegrationSettingsView::default()).unwrap();
        assert_eq!(serde_json::from_str::<IntegrationSettingsView>(&text).unwrap(), IntegrationSettingsView::default());
    }

    fn oauth2(url: &str, client_id: &str, secret: Option<&str>) -> VoipCredentials {
        VoipCredentials::OAuth2 {
            provider_url: url.into(),
            client_id: client_id.into(),
            client_secret: secret.map(Into::into),
        }
    }

    #[test]
    fn credential_method_names_are_their_wire_names() {
        for method in [CredentialMethod::Password, CredentialMethod::ApiKey, CredentialMethod::OAuth2] {
            assert_eq!(serde_json::to_value(method).unwrap(), method.as_str());
            assert_eq!(CredentialMethod::parse(method.as_str()), Some(method));
        }
        assert_eq!(CredentialMethod::parse("basic"), None);
    }

    #[test]
    fn oauth2_client_credentials_follow_the_same_rules_as_the_other_methods() {
        let cases: Vec<(&str, VoipCredentials, ValidationContext, Expected)> = vec![
            ("complete", oauth2(URL, "client-1", Some("secret")), Default::default(), vec![]),
            (
                "no client id",
                oauth2(URL, " ", Some("secret")),
                Default::default(),
                vec![("credentials.client_id", ValidationCode::Required)],
            ),
            (
                "no secret and none on file",
                oauth2(URL, "client-1", None),
                Default::default(),
                vec![("credentials.client_secret", ValidationCode::Required)],
            ),
            (
                "secret kept for the same provider",
                oauth2(URL, "client-1", None),
                stored(CredentialMethod::OAuth2, URL),
                vec![],
            ),
            (
                "a stored API key is not a client secret",
                oauth2(URL, "client-1", None),
                stored(CredentialMethod::ApiKey, URL),
                vec![("credentials.client_secret", ValidationCode::Required)],
            ),
            (
                "client id too long",
                oauth2(URL, &"c".repeat(MAX_LOGIN_LEN + 1), Some("s")),
                Default::default(),
                vec![("credentials.client_id", ValidationCode::TooLong)],
            ),
            (
                "http provider",
                oauth2("http://api.provider.example.com", "c", Some("s")),
                Default::default(),
                vec![("credentials.provider_url", ValidationCode::NotHttps)],
            ),
        ];
        for (case, credentials, ctx, expected) in cases {
            let got: Vec<(String, ValidationCode)> =
                credentials.validate(&ctx).into_iter().map(|error| (error.field, error.code)).collect();
            let expected: Vec<(String, ValidationCode)> =
                expected.into_iter().map(|(field, code)| (field.to_owned(), code)).collect();
            assert_eq!(got, expected, "{case}");
        }
        let wire = serde_json::to_value(oauth2(URL, "client-1", Some("s"))).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"method": "oauth2", "provider_url": URL, "client_id": "client-1", "client_secret": "s"})
        );
        let view = serde_json::to_value(oauth2(URL, "client-1", Some("s")).view(false)).unwrap();
        assert_eq!(
            view,
            serde_json::json!({"method": "oauth2", "provider_url": URL, "client_id": "client-1", "has_client_secret": true})
        );
    }

    #[test]
    fn the_wire_form_is_snake_case_and_tagged() {
        let cases: Vec<(serde_json::Value, serde_json::Value)> = vec![
            (
                serde_json::to_value(password(URL, "a", None)).unwrap(),
                serde_json::json!({"method": "password", "provider_url": URL, "login": "a", "password": null}),
            ),
            (
                serde_json::to_value(api_key(URL, Some("k"))).unwrap(),
                serde_json::json!({"method": "api_key", "provider_url": URL, "key": "k"}),
            ),
            (
                serde_json::to_value(TaskResponsible::User { user_id: 4 }).unwrap(),
                serde_json::json!({"kind": "user", "user_id": 4}),
            ),
            (
                serde_json::to_value(TaskResponsible::ExtensionUser).unwrap(),
                serde_json::json!({"kind": "extension_user"}),
            ),
            (
                serde_json::to_value(TaskResponsible::ContactResponsible).unwrap(),
                serde_json::json!({"kind": "contact_responsible"}),
            ),
            (serde_json::to_value(UnknownCallerEntity::ContactAndLead).unwrap(), serde_json::json!("contact_and_lead")),
            (serde_json::to_value(UnsortedAccept::OnAnswer).unwrap(), serde_json::json!("on_answer")),
            (
                serde_json::to_value(VoipCredentialsView::ApiKey { provider_url: URL.into(), has_key: true }).unwrap(),
                serde_json::json!({"method": "api_key", "provider_url": URL, "has_key": true}),
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
        let codes = [
            (InvalidUrl, "invalid_url"),
            (NotHttps, "not_https"),
            (CredentialsInUrl, "credentials_in_url"),
            (ForbiddenAddress, "forbidden_address"),
            (OutOfRange, "out_of_range"),
            (Duplicate, "duplicate"),
            (UnknownUser, "unknown_user"),
            (UnknownGroup, "unknown_group"),
            (Incomplete, "incomplete"),
            (TooMany, "too_many"),
            (InvalidExtension, "invalid_extension"),
        ];
        for (code, name) in codes {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(name));
            assert!(code.message().ends_with('.'), "{name}");
        }
    }

    #[test]
    fn an_omitted_secret_reads_as_keep_the_stored_one() {
        let credentials: VoipCredentials =
            serde_json::from_str(r#"{"method":"password","provider_url":"https://a.example.com","login":"a"}"#)
                .unwrap();
        assert_eq!(credentials.secret(), None);
        let credentials: VoipCredentials =
            serde_json::from_str(r#"{"method":"api_key","provider_url":"https://a.example.com"}"#).unwrap();
        assert_eq!(credentials.secret(), None);
    }

    #[test]
    fn unknown_or_malformed_fields_are_refused_at_every_level() {
        let good = serde_json::to_value(valid()).unwrap();
        assert!(serde_json::from_value::<IntegrationSettings>(good.clone()).is_ok());
        type Mutation = fn(&mut serde_json::Value);
        let cases: Vec<(&str, Mutation)> = vec![
            ("top level", |v| v["account_id"] = 5.into()),
            ("credentials", |v| v["credentials"]["has_password"] = true.into()),
            ("api key credentials", |v| {
                v["credentials"] =
                    serde_json::json!({"method": "api_key", "provider_url": URL, "key": "k", "login": "a"})
            }),
            ("credential method", |v| v["credentials"]["method"] = "oauth".into()),
            ("credentials without method", |v| {
                v["credentials"].as_object_mut().unwrap().remove("method").map(drop).unwrap()
            }),
            ("call handling", |v| v["call_handling"]["extra"] = 1.into()),
            ("widget behaviour", |v| v["call_handling"]["widget"]["volume"] = 3.into()),
            ("unknown incoming", |v| v["call_handling"]["unknown_incoming"]["create"] = "nothing".into()),
            ("unsorted accept", |v| v["call_handling"]["unknown_incoming"]["unsorted_accept"] = "OnAnswer".into()),
            ("known incoming", |v| v["call_handling"]["known_incoming"]["x"] = true.into()),
            ("missed call", |v| v["call_handling"]["missed"]["text"] = "call back".into()),
            ("negative due time", |v| v["call_handling"]["missed"]["due_in_minutes"] = (-1).into()),
            ("responsible", |v| v["call_handling"]["missed"]["responsible"] = serde_json::json!({"kind": "user"})),
            ("responsible kind", |v| v["call_handling"]["missed"]["responsible"] = serde_json::json!({"kind": "boss"})),
            ("responsible extra", |v| {
                v["call_handling"]["missed"]["responsible"] =
                    serde_json::json!({"kind": "extension_user", "user_id": 1})
            }),
            ("responsible other", |v| {
                v["call_handling"]["missed"]["responsible"] = serde_json::json!({"kind": "user", "user_id": 1, "x": 1})
            }),
            ("outgoing", |v| v["call_handling"]["outgoing_new"]["create_task"] = true.into()),
            ("placement", |v| v["call_handling"]["placement"]["user_id"] = 1.into()),
            ("extension map", |v| v["extensions"]["default"] = 1.into()),
            ("extension entry", |v| {
                v["extensions"]["entries"] = serde_json::json!([{"extension": "1", "user_id": 2, "x": 0}])
            }),
            ("missing section", |v| v.as_object_mut().unwrap().remove("extensions").map(drop).unwrap()),
        ];
        for (case, mutate) in cases {
            let mut body = good.clone();
            mutate(&mut body);
            assert!(serde_json::from_value::<IntegrationSettings>(body).is_err(), "{case}");
        }
    }

    #[test]
    fn the_view_never_carries_a_secret_and_says_what_is_kept() {
        let cases: Vec<(VoipCredentials, bool, VoipCredentialsView, Option<CredentialMethod>)> = vec![
            (
                password(URL, "a", Some("hunter2")),
                false,
                VoipCredentialsView::Password { provider_url: URL.into(), login: "a".into(), has_password: true },
                Some(CredentialMethod::Password),
            ),
            (
                password(URL, "a", None),
                false,
                VoipCredentialsView::Password { provider_url: URL.into(), login: "a".into(), has_password: false },
                None,
            ),
            (
                api_key(URL, None),
                true,
                VoipCredentialsView::ApiKey { provider_url: URL.into(), has_key: true },
                Some(CredentialMethod::ApiKey),
            ),
        ];
        for (credentials, on_file, view, kept) in cases {
            let got = credentials.view(on_file);
            assert!(!serde_json::to_string(&got).unwrap().contains("hunter2"));
            assert_eq!(got, view);
            let stored = got.stored_secret();
            assert_eq!(stored.as_ref().map(|s| s.method), kept);
            if let Some(stored) = stored {
                assert_eq!(stored.provider_url, URL);
                let ctx = ValidationContext { stored_secret: Some(stored), ..Default::default() };
                let resubmitted = match credentials {
                    VoipCredentials::Password { provider_url, login, .. } => {
                        VoipCredentials::Password { provider_url, login, password: None }
                    }
                    VoipCredentials::ApiKey { provider_url, .. } => VoipCredentials::ApiKey { provider_url, key: None },
                    VoipCredentials::OAuth2 { provider_url, client_id, .. } => {
                        VoipCredentials::OAuth2 { provider_url, client_id, client_secret: None }
                    }
                };
                assert_eq!(resubmitted.validate(&ctx), vec![]);
            }
        }
    }
}
