//! The settings form: what the admin edits, how a save is validated and sent, and how the server's answer is shown.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use leptos::mount::mount_to;
use leptos::prelude::*;
use serde_json::Value;
use shared::api::{ConnectionState, ErrorBody, SettingsView, paths};
use shared::{FieldError, SettingsInput, ValidationCode};
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use crate::Mounted;
use crate::connection::{self, Connection, ConnectionSection, PollStep, ReauthorizePoll};
use crate::host::Host;
use crate::i18n::I18n;

/// What the status line under the form says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Idle,
    Loading,
    Saving,
    Saved,
    Failed(Problem),
}

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
            _ => fallback,
        }
    }
}

impl Status {
    /// The i18n `(section, key)` of the status text, if there is one to show.
    pub fn message(self) -> Option<(&'static str, &'static str)> {
        match self {
            Status::Idle => None,
            Status::Loading => Some(("settings", "loading")),
            Status::Saving => Some(("settings", "saving")),
            Status::Saved => Some(("settings", "save_ok")),
            Status::Failed(Problem::Unauthorized) => Some(("errors", "unauthorized")),
            Status::Failed(Problem::Server) => Some(("errors", "server")),
            Status::Failed(Problem::Network) => Some(("errors", "network")),
            Status::Failed(Problem::LoadFailed) => Some(("errors", "load_failed")),
            Status::Failed(Problem::Connection(state)) => Some(("connection", connection::state_key(state))),
            Status::Failed(Problem::KommoUnavailable) => Some(("errors", "kommo_unavailable")),
        }
    }

    /// The modifier of `.kvoip-status` (`--busy`, `--ok`, `--error`).
    pub fn tone(self) -> &'static str {
        match self {
            Status::Idle | Status::Loading | Status::Saving => "busy",
            Status::Saved => "ok",
            Status::Failed(_) => "error",
        }
    }
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
    Saved(SettingsView),
    Refused(Vec<FieldError>),
    Failed(Problem),
}

impl SaveOutcome {
    /// Classifies a `PUT /widget/v1/settings` reply (`status` 0 = the network failed).
    pub fn from_reply(status: u16, body: Value) -> Self {
        match status {
            200 => serde_json::from_value(body).map_or(SaveOutcome::Failed(Problem::Server), SaveOutcome::Saved),
            422 => match serde_json::from_value::<ErrorBody>(body) {
                Ok(refusal) if !refusal.error.fields.is_empty() => SaveOutcome::Refused(refusal.error.fields),
                _ => SaveOutcome::Failed(Problem::Server),
            },
            _ => SaveOutcome::Failed(Problem::from_reply(status, &body, Problem::Server)),
        }
    }
}

/// Classifies a `GET /widget/v1/settings` reply.
pub fn load_outcome(status: u16, body: Value) -> Result<SettingsView, Problem> {
    match status {
        200 => serde_json::from_value(body).map_err(|_| Problem::LoadFailed),
        _ => Err(Problem::from_reply(status, &body, Problem::LoadFailed)),
    }
}

/// What the form submits. An empty password field means "keep the stored one" when one is on file.
pub fn settings_input(active: bool, voip_login: &str, voip_password: &str, has_password: bool) -> SettingsInput {
    let keep_stored = voip_password.is_empty() && has_password;
    SettingsInput {
        active,
        voip_login: voip_login.trim().to_owned(),
        voip_password: (!keep_stored).then(|| voip_password.to_owned()),
    }
}

/// The i18n key under `errors` for a validation code (its wire spelling, by contract).
pub fn error_key(code: ValidationCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "server".to_owned())
}

/// The form's reactive state, shared by the view and by `SettingsHandle::save`.
#[derive(Clone)]
pub struct SettingsModel {
    pub voip_login: ArcRwSignal<String>,
    pub voip_password: ArcRwSignal<String>,
    /// What the server last said is stored.
    pub stored: ArcRwSignal<SettingsView>,
    pub errors: ArcRwSignal<Vec<FieldError>>,
    pub status: ArcRwSignal<Status>,
    /// What the connection section shows.
    pub connection: ArcRwSignal<Connection>,
    /// Bumped by each re-authorize click and by unmounting: a following loop of an older number ends.
    pub follow_generation: Arc<AtomicU32>,
}

impl Default for SettingsModel {
    fn default() -> Self {
        SettingsModel {
            voip_login: ArcRwSignal::new(String::new()),
            voip_password: ArcRwSignal::new(String::new()),
            stored: ArcRwSignal::new(SettingsView::default()),
            errors: ArcRwSignal::new(Vec::new()),
            status: ArcRwSignal::new(Status::Loading),
            connection: ArcRwSignal::new(Connection::Checking),
            follow_generation: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl SettingsModel {
    /// Fills the form from `GET /widget/v1/settings`.
    pub async fn load(&self, host: &Host) {
        self.status.set(Status::Loading);
        let reply = host.request("GET", paths::SETTINGS, None::<&()>).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        match load_outcome(status, body) {
            Ok(view) => {
                // Keep what the admin typed while the settings were loading.
                if self.voip_login.with_untracked(String::is_empty) {
                    self.voip_login.set(view.voip_login.clone());
                }
                self.stored.set(view);
                self.status.set(Status::Idle);
            }
            Err(problem) => self.status.set(Status::Failed(problem)),
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

    /// Validates and sends the form; `true` only when the server stored it.
    pub async fn save(&self, host: &Host, active: bool) -> bool {
        let has_password = self.stored.with_untracked(|stored| stored.has_password);
        let input =
            settings_input(active, &self.voip_login.get_untracked(), &self.voip_password.get_untracked(), has_password);
        let refused = input.validate(has_password);
        if !refused.is_empty() {
            self.errors.set(refused);
            self.status.set(Status::Idle);
            return false;
        }
        self.errors.set(Vec::new());
        self.status.set(Status::Saving);
        let reply = host.request("PUT", paths::SETTINGS, Some(&input)).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        match SaveOutcome::from_reply(status, body) {
            SaveOutcome::Saved(view) => {
                self.show_stored(view);
                self.status.set(Status::Saved);
                true
            }
            SaveOutcome::Refused(fields) => {
                self.errors.set(fields);
                self.status.set(Status::Idle);
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

    fn show_stored(&self, view: SettingsView) {
        self.voip_login.set(view.voip_login.clone());
        self.voip_password.set(String::new());
        self.stored.set(view);
    }

    fn error_for(&self, field: &'static str) -> impl Fn() -> Option<ValidationCode> + Send + Sync + use<> {
        let errors = self.errors.clone();
        move || errors.with(|errors| errors.iter().find(|error| error.field == field).map(|error| error.code))
    }

    fn is_refused(&self, field: &'static str) -> impl Fn() -> bool + Send + Sync + use<> {
        let error_for = self.error_for(field);
        move || error_for().is_some()
    }
}

/// Renders the settings form into `root` (script.js's `div.kvoip-settings`), loads the stored settings
/// and the Kommo connection state.
#[wasm_bindgen]
pub fn mount_settings(root: HtmlElement, host: JsValue) -> Result<SettingsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let model = SettingsModel::default();
    let mounted = {
        let (model, host) = (model.clone(), Rc::clone(&host));
        mount_to(root, move || view! { <SettingsForm model host /> }.into_any())
    };
    let loader = (model.clone(), Rc::clone(&host));
    wasm_bindgen_futures::spawn_local(async move { loader.0.load(&loader.1).await });
    let checker = (model.clone(), Rc::clone(&host));
    wasm_bindgen_futures::spawn_local(async move { checker.0.load_connection(&checker.1).await });
    Ok(SettingsHandle { model, host, mounted: Some(mounted) })
}

/// The mounted settings form, kept by script.js until the modal goes away.
#[wasm_bindgen]
pub struct SettingsHandle {
    model: SettingsModel,
    host: Rc<Host>,
    /// Dropping it unmounts the form, so it lives here until `unmount`.
    mounted: Option<Mounted>,
}

#[wasm_bindgen]
impl SettingsHandle {
    /// Validates and saves the form (`active` is Kommo's flag); resolves `true` only when the server stored it.
    pub fn save(&self, active: bool) -> js_sys::Promise {
        let (model, host) = (self.model.clone(), Rc::clone(&self.host));
        wasm_bindgen_futures::future_to_promise(async move { Ok(JsValue::from_bool(model.save(&host, active).await)) })
    }

    /// Removes the form from the page and stops following an authorization. Safe to call twice.
    pub fn unmount(&mut self) {
        self.model.stop_following();
        self.mounted.take();
    }
}

/// The settings form rendered inside Kommo's settings modal.
#[component]
pub fn SettingsForm(
    /// The form's state; `SettingsHandle` holds the same model to save it.
    model: SettingsModel,
    /// The host object: strings, language, and the requests the re-authorize button leads to.
    host: Rc<Host>,
) -> impl IntoView {
    let (i18n, lang) = (host.i18n(), host.lang().to_owned());
    let t = |section: &str, key: &str| i18n.t(section, key);
    let on_reauthorize = {
        // The host is not `Send`; the section's button only needs a handle to it.
        let (model, host) = (model.clone(), StoredValue::new_local(host));
        move |url: String| {
            let _ = host.try_with_value(|host| model.reauthorize(host, &url));
        }
    };
    let password_placeholder = {
        let stored = model.stored.clone();
        let saved = t("settings", "voip_password_saved");
        move || stored.with(|stored| stored.has_password).then(|| saved.clone())
    };
    let webhook_url = {
        let stored = model.stored.clone();
        move || stored.with(|stored| stored.webhook_url.clone())
    };
    let status_text = {
        let (status, connection) = (model.status.clone(), model.connection.clone());
        let i18n = i18n.clone();
        move || connection.with(|connection| status_text(status.get(), connection, &i18n))
    };
    let status_class = {
        let status = model.status.clone();
        move || format!("kvoip-status kvoip-status--{}", status.get().tone())
    };
    let (login, password) = (model.voip_login.clone(), model.voip_password.clone());
    let (set_login, set_password) = (model.voip_login.clone(), model.voip_password.clone());
    let webhook_label = t("settings", "webhook_url");
    let webhook_hint = t("settings", "webhook_url_hint");

    view! {
        <div class="kvoip-form" lang=lang>
            <ConnectionSection connection=model.connection.clone() i18n=i18n.clone() on_reauthorize />
            <h3 class="kvoip-form__title">{t("settings", "title")}</h3>
            <p class="kvoip-form__intro">{t("settings", "intro")}</p>
            <FieldErrorLine field="active" code=model.error_for("active") i18n=i18n.clone() />
            <div class="kvoip-field" class:kvoip-field--invalid=model.is_refused("voip_login")>
                <label class="kvoip-field__label" for="kvoip-voip-login">{t("settings", "voip_login")}</label>
                <input
                    id="kvoip-voip-login"
                    class="kvoip-field__input"
                    type="text"
                    name="voip_login"
                    autocomplete="off"
                    spellcheck="false"
                    prop:value=move || login.get()
                    on:input=move |event| set_login.set(event_target_value(&event))
                />
                <FieldErrorLine field="voip_login" code=model.error_for("voip_login") i18n=i18n.clone() />
            </div>
            <div class="kvoip-field" class:kvoip-field--invalid=model.is_refused("voip_password")>
                <label class="kvoip-field__label" for="kvoip-voip-password">{t("settings", "voip_password")}</label>
                <input
                    id="kvoip-voip-password"
                    class="kvoip-field__input"
                    type="password"
                    name="voip_password"
                    autocomplete="new-password"
                    placeholder=password_placeholder
                    prop:value=move || password.get()
                    on:input=move |event| set_password.set(event_target_value(&event))
                />
                <FieldErrorLine field="voip_password" code=model.error_for("voip_password") i18n=i18n.clone() />
            </div>
            {move || webhook_url().map(|url| view! {
                <div class="kvoip-field kvoip-field--webhook">
                    <label class="kvoip-field__label" for="kvoip-webhook-url">{webhook_label.clone()}</label>
                    <input
                        id="kvoip-webhook-url"
                        class="kvoip-field__input kvoip-webhook-url"
                        type="text"
                        readonly
                        prop:value=url
                        on:focus={|event| event_target::<web_sys::HtmlInputElement>(&event).select()}
                    />
                    <p class="kvoip-field__hint">{webhook_hint.clone()}</p>
                </div>
            })}
            <p class=status_class role="status" aria-live="polite">{status_text}</p>
        </div>
    }
}

/// The message under a field when it was refused; absent otherwise.
#[component]
pub fn FieldErrorLine(
    /// The refused field's name as in `SettingsInput` (`active`, `voip_login`, `voip_password`).
    field: &'static str,
    /// Reads the field's current refusal, if any.
    code: impl Fn() -> Option<ValidationCode> + Send + Sync + 'static,
    /// Strings of the current language.
    i18n: I18n,
) -> impl IntoView {
    move || {
        code().map(|code| {
            view! {
                <p class="kvoip-field__error" data-field=field role="alert">
                    {i18n.t("errors", &error_key(code))}
                </p>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_password_keeps_the_stored_one_only_when_one_is_on_file() {
        assert_eq!(settings_input(true, " alice ", "", true).voip_password, None);
        assert_eq!(settings_input(true, "alice", "", false).voip_password, Some(String::new()));
        assert_eq!(settings_input(true, "alice", "s3", true).voip_password, Some("s3".to_owned()));
        assert_eq!(settings_input(true, " alice ", "", true).voip_login, "alice");
    }

    #[test]
    fn an_inactive_widget_is_refused_before_any_request() {
        let refused = settings_input(false, "alice", "s3", false).validate(false);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].field, "active");
        assert_eq!(error_key(refused[0].code), "not_active");
    }

    #[test]
    fn save_replies_are_classified_by_status() {
        let view = json!({"active": true, "voip_login": "alice", "has_password": true, "webhook_url": "http://x/hooks/voip/h"});
        let SaveOutcome::Saved(saved) = SaveOutcome::from_reply(200, view) else { panic!("not saved") };
        assert_eq!(saved.webhook_url.as_deref(), Some("http://x/hooks/voip/h"));

        let refusal = json!({"error": {"code": "validation", "message": "m",
            "fields": [{"field": "voip_login", "code": "too_long"}]}});
        let SaveOutcome::Refused(fields) = SaveOutcome::from_reply(422, refusal) else { panic!("not refused") };
        assert_eq!((fields[0].field.as_str(), fields[0].code), ("voip_login", ValidationCode::TooLong));

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
            Problem::Connection(ConnectionState::NeedsReauth),
        ];
        let statuses = [Status::Loading, Status::Saving, Status::Saved].into_iter().chain(problems.map(Status::Failed));
        for status in statuses {
            let (section, key) = status.message().unwrap();
            assert_ne!(i18n.t(section, key), format!("{section}.{key}"), "{status:?}");
        }
    }

    #[test]
    fn load_replies_are_classified_by_status() {
        let view = json!({"active": false, "voip_login": "", "has_password": false, "webhook_url": null});
        assert_eq!(load_outcome(200, view), Ok(SettingsView::default()));
        assert_eq!(load_outcome(401, Value::Null), Err(Problem::Unauthorized));
        assert_eq!(load_outcome(0, Value::Null), Err(Problem::Network));
        assert_eq!(load_outcome(404, Value::Null), Err(Problem::LoadFailed));
    }

    #[test]
    fn every_validation_code_has_an_english_message() {
        let i18n = I18n::new(Value::Null);
        let codes = [
            ValidationCode::Required,
            ValidationCode::TooLong,
            ValidationCode::NotActive,
            ValidationCode::ControlCharacters,
        ];
        for code in codes {
            let key = error_key(code);
            assert_ne!(i18n.t("errors", &key), format!("errors.{key}"));
        }
    }
}
