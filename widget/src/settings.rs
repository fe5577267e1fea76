//! The settings form: what the admin edits, how a save is validated and sent, and how the server's answer is shown.
//!
//! Only the account's administrators may read or change the settings. Whether this Kommo user is one is
//! the server's call (its first settings read answers 403 `admin_only` otherwise), never the page's: the
//! page's own user object may not say.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use leptos::mount::mount_to;
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use shared::api::{ConnectionState, ErrorBody, KommoUserView, paths};
use shared::integration::{ProviderSystem, WebhookEndpoint};
use shared::{FieldError, IntegrationSettingsView};
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use crate::Mounted;
use crate::connection::{self, Connection, PollStep, ReauthorizePoll};
use crate::deliveries::DeliveriesModel;
use crate::form::{AdminOnlyNotice, SettingsForm};
use crate::host::Host;
use crate::i18n::I18n;
use crate::problem::Problem;
use crate::values::{FormValues, refusals, validation_context};

/// What the status line under the form says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Idle,
    Loading,
    Saving,
    Saved,
    /// Some fields were refused; each says why under its input.
    Invalid,
    Failed(Problem),
}

impl Status {
    /// The i18n `(section, key)` of the status text, if there is one to show.
    pub fn message(self) -> Option<(&'static str, &'static str)> {
        match self {
            Status::Idle => None,
            Status::Loading => Some(("settings", "loading")),
            Status::Saving => Some(("settings", "saving")),
            Status::Saved => Some(("settings", "save_ok")),
            Status::Invalid => Some(("settings", "fix_fields")),
            Status::Failed(Problem::Unauthorized) => Some(("errors", "unauthorized")),
            Status::Failed(Problem::Server) => Some(("errors", "server")),
            Status::Failed(Problem::Network) => Some(("errors", "network")),
            Status::Failed(Problem::LoadFailed) => Some(("errors", "load_failed")),
            Status::Failed(Problem::Connection(state)) => Some(("connection", connection::state_key(state))),
            Status::Failed(Problem::KommoUnavailable) => Some(("errors", "kommo_unavailable")),
            Status::Failed(Problem::AdminOnly) => Some(("settings", "admin_only")),
        }
    }

    /// The modifier of `.kvoip-status` (`--busy`, `--ok`, `--error`).
    pub fn tone(self) -> &'static str {
        match self {
            Status::Idle | Status::Loading | Status::Saving => "busy",
            Status::Saved => "ok",
            Status::Invalid | Status::Failed(_) => "error",
        }
    }
}

/// Whether this Kommo user may see the settings, as the server's first settings read said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The first read has not answered yet: nothing is mounted, so a non-admin never sees the form.
    Pending,
    /// Anything but 403 `admin_only`: the form shows (with the status line saying what failed, if anything).
    Granted,
    /// The server answered 403 `admin_only` (first read: a notice instead of the form; later: the status
    /// line says so), and nothing more is sent.
    AdminOnly,
}

/// The status line's text. A connection problem reads as the connection section does: `<title>: <state>`,
/// with the state the section has since reloaded when it is more precise (a 401 `not_installed` also
/// stands for an account disabled in Kommo).
pub fn status_text(status: Status, connection: &Connection, i18n: &I18n) -> String {
    let Status::Failed(Problem::Connection(state)) = status else {
        return status.message().map(|(section, key)| i18n.t(section, key)).unwrap_or_default();
    };
    let (state, subdomain) = match connection {
        Connection::Known(view) if view.state != ConnectionState::Installed => (view.state, view.subdomain.as_str()),
        _ => (state, ""),
    };
    format!("{}: {}", i18n.t("connection", "title"), connection::state_text(state, subdomain, i18n))
}

/// How the server answered a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved(Box<IntegrationSettingsView>),
    Refused(Vec<FieldError>),
    Failed(Problem),
}

impl SaveOutcome {
    /// Classifies a `PUT /widget/v1/settings` reply (`status` 0 = the network failed).
    pub fn from_reply(status: u16, body: Value) -> Self {
        match status {
            200 => serde_json::from_value(body)
                .map_or(SaveOutcome::Failed(Problem::Server), |view| SaveOutcome::Saved(Box::new(view))),
            _ => match refusal(status, body) {
                Ok(fields) => SaveOutcome::Refused(fields),
                Err(problem) => SaveOutcome::Failed(problem),
            },
        }
    }
}

/// The refused fields of a 422 `validation` reply; any other failure as a [`Problem`].
fn refusal(status: u16, body: Value) -> Result<Vec<FieldError>, Problem> {
    if status == 422 {
        return match serde_json::from_value::<ErrorBody>(body) {
            Ok(refusal) if !refusal.error.fields.is_empty() => Ok(refusal.error.fields),
            _ => Err(Problem::Server),
        };
    }
    Err(Problem::from_reply(status, &body, Problem::Server))
}

/// Classifies a `GET /widget/v1/settings` reply.
pub fn load_outcome(status: u16, body: Value) -> Result<IntegrationSettingsView, Problem> {
    match status {
        200 => serde_json::from_value(body).map_err(|_| Problem::LoadFailed),
        _ => Err(Problem::from_reply(status, &body, Problem::LoadFailed)),
    }
}

/// The VoIP provider account the server signed in to (`POST /widget/v1/settings/check`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderAccount {
    pub account_id: String,
    pub name: String,
}

/// Where "Check connection" stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    Idle,
    Checking,
    Connected(String),
    /// The credentials were refused; the fields say why.
    Refused,
    Failed(Problem),
}

impl CheckState {
    /// Classifies a `POST /widget/v1/settings/check` reply, with the refused fields apart.
    pub fn from_reply(status: u16, body: Value) -> (CheckState, Vec<FieldError>) {
        match status {
            200 => match serde_json::from_value::<ProviderAccount>(body) {
                Ok(account) => (CheckState::Connected(account.name), Vec::new()),
                Err(_) => (CheckState::Failed(Problem::Server), Vec::new()),
            },
            _ => match refusal(status, body) {
                Ok(fields) => (CheckState::Refused, fields),
                Err(problem) => (CheckState::Failed(problem), Vec::new()),
            },
        }
    }
}

/// `POST /widget/v1/settings/check` for a telephony system's credentials.
pub fn check_path(system: ProviderSystem) -> String {
    format!("{}?system={}", paths::SETTINGS_CHECK, system.as_str())
}

/// The fields "Check connection" answers for: the credentials and the system they are for.
fn checked_field(field: &str) -> bool {
    field == "system" || field.starts_with("credentials.")
}

/// Where the webhook section's buttons (rotate the secret, show it) stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAction {
    Idle,
    Rotating,
    Revealing,
    Failed(Problem),
}

/// The last characters of the secret a hint stands for (the server writes `…abcd`).
pub fn hint_tail(hint: &str) -> &str {
    hint.trim_start_matches(['…', '.'])
}

/// Classifies a reply carrying the webhook endpoint (rotate, reveal).
pub fn endpoint_outcome(status: u16, body: Value) -> Result<WebhookEndpoint, Problem> {
    match status {
        200 => serde_json::from_value(body).map_err(|_| Problem::Server),
        _ => Err(Problem::from_reply(status, &body, Problem::Server)),
    }
}

/// The form's reactive state, shared by the view and by `SettingsHandle::save`.
#[derive(Clone)]
pub struct SettingsModel {
    /// What the form shows and the admin edits.
    pub values: ArcRwSignal<FormValues>,
    /// What the server last said is stored.
    pub stored: ArcRwSignal<IntegrationSettingsView>,
    /// The account's active Kommo users, once loaded.
    pub users: ArcRwSignal<Option<Vec<KommoUserView>>>,
    /// Whether this user may see the settings at all.
    pub access: ArcRwSignal<Access>,
    /// The webhook signing secret in full, while it is shown: right after a save or a rotation issued it,
    /// or after the admin asked to see it. Never kept once hidden or unmounted.
    pub shown_secret: ArcRwSignal<Option<String>>,
    pub errors: ArcRwSignal<Vec<FieldError>>,
    pub status: ArcRwSignal<Status>,
    pub check: ArcRwSignal<CheckState>,
    pub webhook_action: ArcRwSignal<WebhookAction>,
    /// What the connection section shows.
    pub connection: ArcRwSignal<Connection>,
    /// Bumped by each re-authorize click and by unmounting: a following loop of an older number ends.
    pub follow_generation: Arc<AtomicU32>,
    /// The failed-deliveries section.
    pub deliveries: DeliveriesModel,
}

impl Default for SettingsModel {
    fn default() -> Self {
        SettingsModel {
            values: ArcRwSignal::new(FormValues::default()),
            stored: ArcRwSignal::new(IntegrationSettingsView::default()),
            users: ArcRwSignal::new(None),
            access: ArcRwSignal::new(Access::Pending),
            shown_secret: ArcRwSignal::new(None),
            errors: ArcRwSignal::new(Vec::new()),
            status: ArcRwSignal::new(Status::Loading),
            check: ArcRwSignal::new(CheckState::Idle),
            webhook_action: ArcRwSignal::new(WebhookAction::Idle),
            connection: ArcRwSignal::new(Connection::Checking),
            follow_generation: Arc::new(AtomicU32::new(0)),
            deliveries: DeliveriesModel::default(),
        }
    }
}

impl SettingsModel {
    /// Fills the form from `GET /widget/v1/settings`; a 403 `admin_only` turns the form into a notice.
    pub async fn load(&self, host: &Host) {
        self.status.set(Status::Loading);
        let reply = host.request("GET", paths::SETTINGS, None::<&()>).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        match load_outcome(status, body) {
            Ok(view) => {
                // Keep what the admin typed while the settings were loading.
                if self.values.with_untracked(|values| *values == FormValues::default()) {
                    self.values.set(FormValues::from_view(&view));
                }
                self.stored.set(view);
                self.status.set(Status::Idle);
            }
            Err(Problem::AdminOnly) => {
                self.refuse_non_admin();
                return;
            }
            Err(problem) => self.status.set(Status::Failed(problem)),
        }
        self.access.set(Access::Granted);
        if self.users.with_untracked(Option::is_none) {
            self.load_users(host).await;
        }
    }

    /// The server said this user is not an administrator: show the notice and forget anything shown.
    fn refuse_non_admin(&self) {
        self.shown_secret.set(None);
        self.status.set(Status::Failed(Problem::AdminOnly));
        self.access.set(Access::AdminOnly);
    }

    /// Loads the account's active Kommo users for the user selects; without them the selects offer
    /// only the users already chosen, and the server checks membership on save.
    pub async fn load_users(&self, host: &Host) {
        let reply = host.request("GET", paths::USERS, None::<&()>).await;
        if let Ok((200, body)) = reply
            && let Ok(users) = serde_json::from_value::<Vec<KommoUserView>>(body)
        {
            self.users.set(Some(users));
        }
    }
    /// Asks the server where the Kommo connection stands. A failed re-check keeps what was known.
    pub async fn load_connection(&self, host: &Host) {
        let reply = host.request("GET", paths::CONNECTION, None::<&()>).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        let connection = Connection::from_reply(status, body);
        if connection == Connection::Unknown && self.connection.with_untracked(|known| known.state().is_some()) {
            return;
        }
        let connected_now = connection.is_installed() && !self.connection.with_untracked(Connection::is_installed);
        self.connection.set(connection);
        // The settings could not load (or save) for want of a connection: now they can.
        let refused_for_connection =
            self.status.with_untracked(|status| matches!(status, Status::Failed(Problem::Connection(_))));
        if connected_now && refused_for_connection {
            self.load(host).await;
        }
    }

    /// Opens Kommo's consent page (inside the click, so the browser allows the popup) and follows the
    /// authorization until the connection is installed, for at most two minutes.
    pub fn reauthorize(&self, host: &Rc<Host>, url: &str) {
        let popup = connection::open_popup(url);
        let generation = self.follow_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (model, host) = (self.clone(), Rc::clone(host));
        wasm_bindgen_futures::spawn_local(async move {
            let mut poll = ReauthorizePoll::new(popup.is_some());
            loop {
                connection::sleep(connection::POLL_TICK).await;
                if model.follow_generation.load(Ordering::Relaxed) != generation {
                    return; // clicked again, or unmounted
                }
                match poll.step(popup.as_ref().is_some_and(connection::popup_closed)) {
                    PollStep::Wait => {}
                    PollStep::Recheck => {
                        model.load_connection(&host).await;
                        if model.connection.with_untracked(Connection::is_installed) {
                            return;
                        }
                    }
                    PollStep::Stop => return,
                }
            }
        });
    }

    /// Ends any following of an authorization.
    pub fn stop_following(&self) {
        self.follow_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends the form; `true` only when the server stored it. Turning the widget off is stored as it is
    /// (it stops call processing); turning it on validates everything first, here and on the server.
    pub async fn save(&self, host: &Host, active: bool) -> bool {
        // The server refused this user already: sending the form again could only be refused again.
        if self.access.get_untracked() == Access::AdminOnly {
            return false;
        }
        let (settings, refused) = if active {
            let ctx = self.stored.with_untracked(|stored| {
                self.users.with_untracked(|users| validation_context(stored, users.as_deref()))
            });
            self.values.with_untracked(|values| refusals(values, &ctx))
        } else {
            (self.values.with_untracked(|values| values.build(false).0), Vec::new())
        };
        if !refused.is_empty() {
            self.errors.set(refused);
            self.status.set(Status::Invalid);
            return false;
        }
        self.errors.set(Vec::new());
        self.status.set(Status::Saving);
        let reply = host.request("PUT", paths::SETTINGS, Some(&settings)).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        match SaveOutcome::from_reply(status, body) {
            SaveOutcome::Saved(view) => {
                self.show_stored(*view);
                self.status.set(Status::Saved);
                true
            }
            SaveOutcome::Refused(fields) => {
                self.errors.set(fields);
                self.status.set(Status::Invalid);
                false
            }
            SaveOutcome::Failed(Problem::AdminOnly) => {
                self.refuse_non_admin();
                false
            }
            SaveOutcome::Failed(problem) => {
                self.status.set(Status::Failed(problem));
                if matches!(problem, Problem::Connection(_)) {
                    // The section above may be stale: let it say what the server now knows.
                    self.load_connection(host).await;
                }
                false
            }
        }
    }

    /// Asks the server to sign in to the VoIP provider with the credentials as typed, as the chosen
    /// telephony system's API.
    pub async fn check_connection(&self, host: &Host) {
        let (system, credentials) = self.values.with_untracked(|values| (values.system, values.credentials()));
        let ctx = self.stored.with_untracked(|stored| validation_context(stored, None));
        let refused = credentials.validate(&ctx);
        self.errors.update(|errors| errors.retain(|error| !checked_field(&error.field)));
        if !refused.is_empty() {
            self.errors.update(|errors| errors.extend(refused));
            self.check.set(CheckState::Refused);
            return;
        }
        self.check.set(CheckState::Checking);
        let reply = host.request("POST", &check_path(system), Some(&credentials)).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        let (state, fields) = CheckState::from_reply(status, body);
        self.errors.update(|errors| errors.extend(fields));
        self.check.set(state);
    }

    /// Asks the server for a new webhook signing secret and shows it.
    pub async fn rotate_secret(&self, host: &Host) {
        self.webhook_request(host, WebhookAction::Rotating, paths::WEBHOOK_SECRET).await;
    }

    /// Asks the server for the webhook address and its current signing secret and shows them: the first
    /// save's answer carried the secret, but Kommo may have closed the modal before anyone copied it.
    pub async fn reveal_secret(&self, host: &Host) {
        self.webhook_request(host, WebhookAction::Revealing, paths::WEBHOOK_REVEAL).await;
    }

    /// Takes the secret off the page again.
    pub fn hide_secret(&self) {
        self.shown_secret.set(None);
    }

    async fn webhook_request(&self, host: &Host, action: WebhookAction, path: &str) {
        if matches!(self.webhook_action.get_untracked(), WebhookAction::Rotating | WebhookAction::Revealing) {
            return;
        }
        self.webhook_action.set(action);
        let reply = host.request("POST", path, None::<&()>).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        match endpoint_outcome(status, body) {
            Ok(endpoint) => {
                self.shown_secret.set(endpoint.signing_secret.clone());
                self.stored.update(|stored| stored.webhook = Some(endpoint));
                self.webhook_action.set(WebhookAction::Idle);
            }
            Err(problem) => {
                if problem == Problem::AdminOnly {
                    self.refuse_non_admin();
                }
                self.webhook_action.set(WebhookAction::Failed(problem));
            }
        }
    }

    fn show_stored(&self, view: IntegrationSettingsView) {
        self.values.set(FormValues::from_view(&view));
        // Only the first save's answer carries the secret; later answers leave a shown one alone.
        if let Some(secret) = view.webhook.as_ref().and_then(|webhook| webhook.signing_secret.clone()) {
            self.shown_secret.set(Some(secret));
        }
        self.stored.set(view);
    }
}

/// Where the settings' view stands in the modal.
enum View {
    /// The first settings read has not answered: script.js's loading line stays.
    Waiting,
    /// The form or the notice; dropping the handle unmounts it, so it lives here until `unmount`.
    Mounted { _handle: Mounted },
    /// Unmounted (the modal went away), perhaps before the first read answered: nothing is mounted then.
    Gone,
}

/// Loads the stored settings and the Kommo connection state into `root` (script.js's `div.kvoip-settings`,
/// holding its loading line), then renders the form, or for a user who is not an account administrator,
/// only a notice: nothing of the form is on the page before the server said who this user is.
#[wasm_bindgen]
pub fn mount_settings(root: HtmlElement, host: JsValue) -> Result<SettingsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let model = SettingsModel::default();
    let view = Rc::new(RefCell::new(View::Waiting));
    let loader = (model.clone(), Rc::clone(&host), Rc::clone(&view));
    wasm_bindgen_futures::spawn_local(async move {
        let (model, host, view) = loader;
        model.load(&host).await;
        if !matches!(*view.borrow(), View::Waiting) {
            return;
        }
        root.set_text_content(None);
        let granted = model.access.get_untracked() == Access::Granted;
        // Each root erased to one type on its own: one `AnyView` of the whole form, as before the notice.
        let mounted = if granted {
            let (model, host) = (model.clone(), Rc::clone(&host));
            mount_to(root, move || view! { <SettingsForm model host /> }.into_any())
        } else {
            let (i18n, lang) = (host.i18n(), host.lang().to_owned());
            mount_to(root, move || view! { <AdminOnlyNotice i18n lang /> }.into_any())
        };
        *view.borrow_mut() = View::Mounted { _handle: mounted };
        // Failed deliveries are the admins' too: not even asked for until the settings read said who this is.
        if granted {
            model.deliveries.load(&host).await;
        }
    });
    let checker = (model.clone(), Rc::clone(&host));
    wasm_bindgen_futures::spawn_local(async move { checker.0.load_connection(&checker.1).await });
    Ok(SettingsHandle { model, host, view })
}

/// The mounted settings form, kept by script.js until the modal goes away.
#[wasm_bindgen]
pub struct SettingsHandle {
    model: SettingsModel,
    host: Rc<Host>,
    view: Rc<RefCell<View>>,
}

#[wasm_bindgen]
impl SettingsHandle {
    /// Validates and saves the form (`active` is Kommo's flag); resolves `true` only when the server stored it.
    pub fn save(&self, active: bool) -> js_sys::Promise {
        let (model, host) = (self.model.clone(), Rc::clone(&self.host));
        wasm_bindgen_futures::future_to_promise(async move { Ok(JsValue::from_bool(model.save(&host, active).await)) })
    }

    /// Removes the form from the page, forgets a shown secret and stops following an authorization.
    /// Safe to call twice.
    pub fn unmount(&mut self) {
        self.model.stop_following();
        self.model.hide_secret();
        *self.view.borrow_mut() = View::Gone;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::error_key;
    use serde_json::json;
    use shared::ValidationCode;

    #[test]
    fn save_replies_are_classified_by_status() {
        let view = serde_json::to_value(IntegrationSettingsView {
            webhook: Some(WebhookEndpoint {
                url: "http://x/hooks/voip/h".to_owned(),
                signing_secret: Some("whsec_abc".to_owned()),
                signing_secret_hint: "abc".to_owned(),
            }),
            ..IntegrationSettingsView::default()
        })
        .unwrap();
        let SaveOutcome::Saved(saved) = SaveOutcome::from_reply(200, view) else { panic!("not saved") };
        assert_eq!(saved.webhook.and_then(|webhook| webhook.signing_secret).as_deref(), Some("whsec_abc"));

        let refusal = json!({"error": {"code": "validation", "message": "m",
            "fields": [{"field": "credentials.password", "code": "credentials_refused"}]}});
        let SaveOutcome::Refused(fields) = SaveOutcome::from_reply(422, refusal) else { panic!("not refused") };
        assert_eq!(
            (fields[0].field.as_str(), fields[0].code),
            ("credentials.password", ValidationCode::CredentialsRefused)
        );

        let cases = [
            (422, json!({"error": {"code": "validation", "message": "m"}}), Problem::Server),
            (401, Value::Null, Problem::Unauthorized),
            (0, Value::Null, Problem::Network),
            (500, Value::Null, Problem::Server),
            (200, json!({"unexpected": true}), Problem::Server),
        ];
        for (status, body, problem) in cases {
            assert_eq!(SaveOutcome::from_reply(status, body), SaveOutcome::Failed(problem), "status {status}");
        }
    }

    #[test]
    fn a_non_admin_is_told_so_by_every_admin_only_reply() {
        let admin_only = json!({"error": {"code": "admin_only", "message": "m", "fields": []}});
        assert_eq!(load_outcome(403, admin_only.clone()), Err(Problem::AdminOnly));
        assert_eq!(SaveOutcome::from_reply(403, admin_only.clone()), SaveOutcome::Failed(Problem::AdminOnly));
        assert_eq!(endpoint_outcome(403, admin_only.clone()), Err(Problem::AdminOnly));
        assert_eq!(CheckState::from_reply(403, admin_only).0, CheckState::Failed(Problem::AdminOnly));
        // Another 403 is no statement about the user's role.
        let other = json!({"error": {"code": "forbidden", "message": "m"}});
        assert_eq!(load_outcome(403, other), Err(Problem::LoadFailed));
        let i18n = I18n::new(Value::Null);
        let notice = status_text(Status::Failed(Problem::AdminOnly), &Connection::Checking, &i18n);
        assert!(notice.contains("administrator"), "{notice}");
    }

    #[test]
    fn a_revealed_or_rotated_endpoint_carries_the_current_secret() {
        let endpoint = json!({"url": "http://x/hooks/voip/h", "signing_secret": "whsec_abc",
            "signing_secret_hint": "…_abc"});
        let shown = endpoint_outcome(200, endpoint).unwrap();
        assert_eq!((shown.url.as_str(), shown.signing_secret.as_deref()), ("http://x/hooks/voip/h", Some("whsec_abc")));
        assert_eq!(endpoint_outcome(200, json!({"url": 1})), Err(Problem::Server));
        let missing = json!({"error": {"code": "settings_missing", "message": "m"}});
        assert_eq!(endpoint_outcome(409, missing), Err(Problem::Server));
        assert_eq!(endpoint_outcome(0, Value::Null), Err(Problem::Network));
        assert_eq!(hint_tail("…_abc"), "_abc");
    }

    #[test]
    fn check_replies_name_the_provider_account_or_the_refused_fields() {
        let connected = CheckState::from_reply(200, json!({"account_id": "a1", "name": "Acme VoIP"}));
        assert_eq!(connected, (CheckState::Connected("Acme VoIP".to_owned()), Vec::new()));
        let refusal = json!({"error": {"code": "validation", "message": "m",
            "fields": [{"field": "credentials.provider_url", "code": "unreachable"}]}});
        let (state, fields) = CheckState::from_reply(422, refusal);
        assert_eq!(state, CheckState::Refused);
        assert_eq!(fields[0].code, ValidationCode::Unreachable);
        assert_eq!(CheckState::from_reply(0, Value::Null).0, CheckState::Failed(Problem::Network));
    }

    #[test]
    fn check_connection_names_the_chosen_system() {
        assert_eq!(check_path(ProviderSystem::Asterisk), "/widget/v1/settings/check?system=asterisk");
        assert_eq!(check_path(ProviderSystem::Standard), "/widget/v1/settings/check?system=standard");
        let refusal = json!({"error": {"code": "validation", "message": "m",
            "fields": [{"field": "system", "code": "not_available"}]}});
        let (state, fields) = CheckState::from_reply(422, refusal);
        assert_eq!((state, fields[0].field.as_str()), (CheckState::Refused, "system"));
        assert!(checked_field("system") && checked_field("credentials.method") && !checked_field("extensions.entries"));
    }

    #[test]
    fn an_account_without_the_integration_is_told_about_the_connection_not_unauthorized() {
        let not_installed = json!({"error": {"code": "not_installed", "message": "m"}});
        let expected = Problem::Connection(ConnectionState::NotInstalled);
        assert_eq!(SaveOutcome::from_reply(401, not_installed.clone()), SaveOutcome::Failed(expected));
        assert_eq!(load_outcome(401, not_installed), Err(expected));
        let other = json!({"error": {"code": "unauthorized", "message": "m"}});
        assert_eq!(SaveOutcome::from_reply(401, other), SaveOutcome::Failed(Problem::Unauthorized));
    }

    #[test]
    fn kommo_side_failures_are_classified_by_code() {
        let error = |code: &str| json!({"error": {"code": code, "message": "m"}});
        let cases = [
            (409, "kommo_needs_reauth", Problem::Connection(ConnectionState::NeedsReauth)),
            (409, "kommo_not_connected", Problem::Connection(ConnectionState::NotInstalled)),
            (409, "kommo_suspended", Problem::Connection(ConnectionState::Suspended)),
            (503, "kommo_unavailable", Problem::KommoUnavailable),
            (409, "conflict", Problem::Server),
            (503, "overloaded", Problem::Server),
        ];
        for (status, code, problem) in cases {
            assert_eq!(SaveOutcome::from_reply(status, error(code)), SaveOutcome::Failed(problem), "{code}");
        }
        assert_eq!(load_outcome(503, error("kommo_unavailable")), Err(Problem::KommoUnavailable));
    }

    #[test]
    fn a_connection_problem_reads_like_the_connection_section() {
        let i18n = I18n::new(Value::Null);
        let problem = Status::Failed(Problem::Connection(ConnectionState::NotInstalled));
        assert_eq!(status_text(problem, &Connection::Checking, &i18n), "Kommo connection: Not connected yet");
        let disabled = Connection::Known(shared::api::ConnectionView {
            state: ConnectionState::Disabled,
            subdomain: "acme".to_owned(),
            reason: None,
            reauthorize_url: "https://voip.example/oauth/kommo/start".to_owned(),
            phone_index: None,
        });
        assert_eq!(status_text(problem, &disabled, &i18n), "Kommo connection: Disabled in Kommo");
        assert_eq!(
            status_text(Status::Failed(Problem::Unauthorized), &disabled, &i18n),
            i18n.t("errors", "unauthorized")
        );
        assert_eq!(status_text(Status::Idle, &disabled, &i18n), "");
    }

    #[test]
    fn every_status_message_has_an_english_text() {
        let i18n = I18n::new(Value::Null);
        let problems = [
            Problem::Unauthorized,
            Problem::Server,
            Problem::Network,
            Problem::LoadFailed,
            Problem::KommoUnavailable,
            Problem::AdminOnly,
            Problem::Connection(ConnectionState::NeedsReauth),
        ];
        let statuses = [Status::Loading, Status::Saving, Status::Saved, Status::Invalid]
            .into_iter()
            .chain(problems.map(Status::Failed));
        for status in statuses {
            let (section, key) = status.message().unwrap();
            assert_ne!(i18n.t(section, key), format!("{section}.{key}"), "{status:?}");
        }
    }

    #[test]
    fn load_replies_are_classified_by_status() {
        let view = serde_json::to_value(IntegrationSettingsView::default()).unwrap();
        assert_eq!(load_outcome(200, view), Ok(IntegrationSettingsView::default()));
        assert_eq!(load_outcome(200, json!({"active": false, "voip_login": ""})), Err(Problem::LoadFailed));
        assert_eq!(load_outcome(401, Value::Null), Err(Problem::Unauthorized));
        assert_eq!(load_outcome(0, Value::Null), Err(Problem::Network));
        assert_eq!(load_outcome(404, Value::Null), Err(Problem::LoadFailed));
    }

    #[test]
    fn every_list_call_lists_come_from_is_named_and_the_pause_names_its_range_in_every_language() {
        let files = [
            include_str!("../../i18n/en.json"),
            include_str!("../../i18n/es.json"),
            include_str!("../../i18n/pt.json"),
        ];
        for file in files {
            let strings: Value = serde_json::from_str(file).unwrap();
            let text = |key: &str| strings["settings"][key].as_str().unwrap_or_default().to_owned();
            // The form builds these keys from the lists' wire names.
            for source in shared::ListSource::ALL {
                let key = format!("call_lists_{}", source.as_str());
                assert!(!text(&key).is_empty(), "settings.{key}");
            }
            let hint = text("call_lists_interval_hint");
            assert!(hint.contains("#MIN#") && hint.contains("#MAX#"), "{hint}");
        }
    }

    #[test]
    fn every_validation_code_has_an_english_message() {
        let i18n = I18n::new(Value::Null);
        let codes = ValidationCode::ALL;
        let files = [
            include_str!("../../i18n/en.json"),
            include_str!("../../i18n/es.json"),
            include_str!("../../i18n/pt.json"),
        ];
        for file in files {
            let strings: Value = serde_json::from_str(file).unwrap();
            for code in codes {
                let key = error_key(code);
                assert!(strings["errors"][&key].as_str().is_some_and(|text| !text.is_empty()), "errors.{key}");
                assert_ne!(i18n.t("errors", &key), format!("errors.{key}"));
            }
        }
    }
}
