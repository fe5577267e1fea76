//! The settings form: what the admin edits, how a save is validated and sent, and how the server's answer is shown.

use std::rc::Rc;

use leptos::mount::mount_to;
use leptos::prelude::*;
use serde_json::Value;
use shared::api::{ErrorBody, SettingsView, paths};
use shared::{FieldError, SettingsInput, ValidationCode};
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use crate::Mounted;
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
            0 => SaveOutcome::Failed(Problem::Network),
            401 => SaveOutcome::Failed(Problem::Unauthorized),
            _ => SaveOutcome::Failed(Problem::Server),
        }
    }
}

/// Classifies a `GET /widget/v1/settings` reply.
pub fn load_outcome(status: u16, body: Value) -> Result<SettingsView, Problem> {
    match status {
        200 => serde_json::from_value(body).map_err(|_| Problem::LoadFailed),
        0 => Err(Problem::Network),
        401 => Err(Problem::Unauthorized),
        _ => Err(Problem::LoadFailed),
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
}

impl Default for SettingsModel {
    fn default() -> Self {
        SettingsModel {
            voip_login: ArcRwSignal::new(String::new()),
            voip_password: ArcRwSignal::new(String::new()),
            stored: ArcRwSignal::new(SettingsView::default()),
            errors: ArcRwSignal::new(Vec::new()),
            status: ArcRwSignal::new(Status::Loading),
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

/// Renders the settings form into `root` (script.js's `div.kvoip-settings`) and loads the stored settings.
#[wasm_bindgen]
pub fn mount_settings(root: HtmlElement, host: JsValue) -> Result<SettingsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let model = SettingsModel::default();
    let mounted = {
        let (model, i18n, lang) = (model.clone(), host.i18n(), host.lang().to_owned());
        mount_to(root, move || view! { <SettingsForm model i18n lang /> }.into_any())
    };
    let loader = (model.clone(), Rc::clone(&host));
    wasm_bindgen_futures::spawn_local(async move { loader.0.load(&loader.1).await });
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

    /// Removes the form from the page. Safe to call twice.
    pub fn unmount(&mut self) {
        self.mounted.take();
    }
}

/// The settings form rendered inside Kommo's settings modal.
#[component]
pub fn SettingsForm(
    /// The form's state; `SettingsHandle` holds the same model to save it.
    model: SettingsModel,
    /// Strings of the current language.
    i18n: I18n,
    /// The Kommo interface language, set as the form's `lang`.
    lang: String,
) -> impl IntoView {
    let t = |section: &str, key: &str| i18n.t(section, key);
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
        let status = model.status.clone();
        let i18n = i18n.clone();
        move || status.get().message().map(|(section, key)| i18n.t(section, key)).unwrap_or_default()
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
