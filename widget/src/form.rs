//! The settings form's view: one section per part of `IntegrationSettings`, each input named by its JSON
//! path (`credentials.login`, `extensions.entries[2].user_id`) and followed by its error line.

use std::rc::Rc;

use leptos::prelude::*;
use shared::FieldError;
use shared::api::KommoUserView;
use shared::integration::{
    CredentialMethod, ListSource, MAX_DIAL_INTERVAL_SECS, MIN_DIAL_INTERVAL_SECS, PopupAudience, UnknownCallerEntity,
    UnsortedAccept, VoipCredentialsView,
};

use crate::connection::ConnectionSection;
use crate::deliveries::deliveries_section;
use crate::host::Host;
use crate::i18n::I18n;
use crate::problem::error_key;
use crate::settings::{CheckState, SettingsModel, Status, WebhookAction, hint_tail, status_text};
use crate::values::{FormValues, ResponsibleChoice, SystemWords, group_choices, system_choices};

/// Reads and writes one value of the form.
#[derive(Clone, Copy)]
struct Lens<T> {
    get: fn(&FormValues) -> T,
    set: fn(&mut FormValues, T),
}

/// A [`Lens`] on a field path of [`FormValues`].
macro_rules! lens {
    ($($field:ident).+) => {
        Lens { get: |values| values.$($field).+.clone(), set: |values, value| values.$($field).+ = value }
    };
}

/// What every input needs: the values, the refusals, the users for the selects, the strings.
#[derive(Clone)]
struct Ctx {
    values: ArcRwSignal<FormValues>,
    errors: ArcRwSignal<Vec<FieldError>>,
    users: ArcRwSignal<Option<Vec<KommoUserView>>>,
    i18n: I18n,
}

impl Ctx {
    fn t(&self, key: &str) -> String {
        self.i18n.t("settings", key)
    }

    fn refused(&self, field: &'static str) -> impl Fn() -> bool + Send + Sync + 'static + use<> {
        let errors = self.errors.clone();
        move || errors.with(|errors| errors.iter().any(|error| error.field == field))
    }
}

/// The element id of an input, from its field path.
fn input_id(name: &str) -> String {
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("kvoip-{name}")
}

/// Fields whose refusals have an input of their own; any other refusal is listed above the status line.
const PLACED_FIELDS: [&str; 17] = [
    "system",
    "credentials.provider_url",
    "credentials.login",
    "credentials.password",
    "credentials.key",
    "credentials.client_id",
    "credentials.client_secret",
    "call_handling.missed.due_in_minutes",
    "call_handling.missed.responsible.user_id",
    "call_handling.placement.pipeline_id",
    "call_handling.placement.status_id",
    "call_handling.call_lists.interval_secs",
    "call_handling.call_lists.sources",
    "extensions.entries",
    "extensions.fallback_user_id",
    "active",
    "credentials.method",
];

fn placed(field: &str) -> bool {
    PLACED_FIELDS.contains(&field) || field.starts_with("extensions.entries[")
}

/// The message under a field when it was refused; absent otherwise.
fn error_line(ctx: Ctx, field: impl Fn() -> String + Send + Sync + 'static) -> impl IntoView {
    let (errors, i18n) = (ctx.errors.clone(), ctx.i18n.clone());
    move || {
        let field = field();
        let code = errors.with(|errors| errors.iter().find(|error| error.field == field).map(|error| error.code))?;
        Some(view! {
            <p class="kvoip-field__error" data-field=field role="alert">{i18n.t("errors", &error_key(code))}</p>
        })
    }
}

/// A labelled text, password or number input on a field path, with the hint under it when `hint` gives one.
fn text_field(
    ctx: Ctx,
    name: &'static str,
    label: impl IntoView + 'static,
    kind: &'static str,
    lens: Lens<String>,
    hint: impl Fn() -> Option<String> + Send + Sync + 'static,
) -> impl IntoView {
    // A password's hint shows while a secret is on file: dots stand for it, and the hint says how to keep it.
    let hint = ArcMemo::new(move |_| hint());
    let placeholder = {
        let hint = hint.clone();
        move || (kind == "password" && hint.with(Option::is_some)).then_some("••••••••")
    };
    let hint = move || hint.get().map(|text| view! { <p class="kvoip-field__hint">{text}</p> });
    let (values, set_values) = (ctx.values.clone(), ctx.values.clone());
    let id = input_id(name);
    view! {
        <div class="kvoip-field" class:kvoip-field--invalid=ctx.refused(name)>
            <label class="kvoip-field__label" for=id.clone()>{label}</label>
            <input
                id=id
                class="kvoip-field__input"
                type=kind
                name=name
                autocomplete=if kind == "password" { "new-password" } else { "off" }
                spellcheck="false"
                min=(kind == "number").then_some("0")
                placeholder=placeholder
                prop:value=move || values.with(lens.get)
                on:input=move |event| set_values.update(|values| (lens.set)(values, event_target_value(&event)))
            />
            {hint}
            {error_line(ctx.clone(), move || name.to_owned())}
        </div>
    }
}

fn checkbox(ctx: Ctx, name: &'static str, label: String, lens: Lens<bool>) -> impl IntoView {
    check(ctx, name, None, label, move |values| (lens.get)(values), move |values, on| (lens.set)(values, on), |_| false)
}

/// A checkbox over any part of the form: `get` says whether it is ticked, `set` applies a tick; `disabled`
/// greys it out while it does not apply.
fn check(
    ctx: Ctx,
    name: &'static str,
    value: Option<String>,
    label: String,
    get: impl Fn(&FormValues) -> bool + Send + Sync + 'static,
    set: impl Fn(&mut FormValues, bool) + Send + Sync + 'static,
    disabled: fn(&FormValues) -> bool,
) -> impl IntoView {
    let (values, set_values, grey, off) =
        (ctx.values.clone(), ctx.values.clone(), ctx.values.clone(), ctx.values.clone());
    view! {
        <label class="kvoip-check" class:kvoip-check--off=move || grey.with(disabled)>
            <input
                type="checkbox"
                class="kvoip-check__input"
                name=name
                value=value
                prop:checked=move || values.with(&get)
                prop:disabled=move || off.with(disabled)
                on:change=move |event| set_values.update(|values| set(values, event_target_checked(&event)))
            />
            <span class="kvoip-check__text">{label}</span>
        </label>
    }
}

/// Radios on one value; `disabled` greys them out while they do not apply.
fn radios<T: Copy + PartialEq + Send + Sync + 'static>(
    ctx: Ctx,
    name: &'static str,
    options: Vec<(T, &'static str, String)>,
    lens: Lens<T>,
    disabled: fn(&FormValues) -> bool,
) -> impl IntoView {
    let buttons = options
        .into_iter()
        .map(|(value, wire, label)| {
            let (values, set_values, grey) = (ctx.values.clone(), ctx.values.clone(), ctx.values.clone());
            let off = ctx.values.clone();
            view! {
                <label class="kvoip-check kvoip-check--radio" class:kvoip-check--off=move || grey.with(disabled)>
                    <input
                        type="radio"
                        class="kvoip-check__input"
                        name=name
                        value=wire
                        prop:checked=move || values.with(|values| (lens.get)(values) == value)
                        prop:disabled=move || off.with(disabled)
                        on:change=move |_| set_values.update(|values| (lens.set)(values, value))
                    />
                    <span class="kvoip-check__text">{label}</span>
                </label>
            }
        })
        .collect_view();
    view! { <div class="kvoip-choices" role="radiogroup">{buttons}</div> }
}

/// A select over the account's active users; an id not (yet) among them is still offered, as `#id`.
fn user_select(
    ctx: Ctx,
    name: impl Fn() -> String + Send + Sync + 'static,
    id: Option<String>,
    empty_label: String,
    value: impl Fn(&FormValues) -> String + Send + Sync + 'static,
    set: impl Fn(&mut FormValues, String) + Send + Sync + 'static,
) -> impl IntoView {
    let values = ctx.values.clone();
    let current = ArcMemo::new(move |_| values.with(&value));
    let users = ctx.users.clone();
    let options = {
        let current = current.clone();
        move || {
            let current = current.get();
            let mut choices: Vec<(String, String)> = users
                .with(|users| users.iter().flatten().map(|user| (user.id.to_string(), user.name.clone())).collect());
            if !current.is_empty() && !choices.iter().any(|(id, _)| *id == current) {
                choices.push((current.clone(), format!("#{current}")));
            }
            let empty_selected = current.is_empty();
            let rest = choices
                .into_iter()
                .map(|(id, label)| {
                    let selected = id == current;
                    view! { <option value=id selected=selected>{label}</option> }
                })
                .collect_view();
            view! {
                <option value="" selected=empty_selected>{empty_label.clone()}</option>
                {rest}
            }
        }
    };
    let set_values = ctx.values.clone();
    view! {
        <select
            id=id
            class="kvoip-field__input kvoip-select"
            name=name
            prop:value=move || current.get()
            on:change=move |event| set_values.update(|values| set(values, event_target_value(&event)))
        >
            {options}
        </select>
    }
}

fn section(title: String, class: &'static str, body: impl IntoView) -> impl IntoView {
    view! {
        <section class=format!("kvoip-section {class}")>
            <h4 class="kvoip-section__title">{title}</h4>
            {body}
        </section>
    }
}

/// The settings form rendered inside Kommo's settings modal.
#[component]
pub fn SettingsForm(
    /// The form's state; `SettingsHandle` holds the same model to save it.
    model: SettingsModel,
    /// The host object: strings, language, and the requests the buttons lead to.
    host: Rc<Host>,
) -> impl IntoView {
    let (i18n, lang) = (host.i18n(), host.lang().to_owned());
    let ctx = Ctx {
        values: model.values.clone(),
        errors: model.errors.clone(),
        users: model.users.clone(),
        i18n: i18n.clone(),
    };
    let host = StoredValue::new_local(host);
    let on_reauthorize = {
        let model = model.clone();
        move |url: String| {
            let _ = host.try_with_value(|host| model.reauthorize(host, &url));
        }
    };
    let status_line = {
        let (status, connection) = (model.status.clone(), model.connection.clone());
        let i18n = i18n.clone();
        move || connection.with(|connection| status_text(status.get(), connection, &i18n))
    };
    let status_class = {
        let status = model.status.clone();
        move || format!("kvoip-status kvoip-status--{}", status.get().tone())
    };
    let unplaced = {
        let (errors, i18n) = (model.errors.clone(), i18n.clone());
        move || {
            errors
                .get()
                .into_iter()
                .filter(|error| !placed(&error.field))
                .map(|error| {
                    let text = format!("{}: {}", error.field, i18n.t("errors", &error_key(error.code)));
                    view! { <p class="kvoip-field__error" data-field=error.field role="alert">{text}</p> }
                })
                .collect_view()
        }
    };

    view! {
        <div class="kvoip-form" lang=lang.clone()>
            <ConnectionSection connection=model.connection.clone() i18n=i18n.clone() on_reauthorize />
            <h3 class="kvoip-form__title">{ctx.t("title")}</h3>
            <p class="kvoip-form__intro">{ctx.t("intro")}</p>
            {provider_section(&ctx, &model, host)}
            {behaviour_sections(&ctx)}
            {extensions_section(&ctx)}
            {webhook_section(&ctx, &model, host)}
            {deliveries_section(&model.deliveries, host, &i18n, &lang)}
            <div class="kvoip-form__errors">{unplaced}</div>
            <p class=status_class role="status" aria-live="polite">{status_line}</p>
        </div>
    }
}

/// What a Kommo user who is not an account administrator sees instead of the form: whom to ask, and
/// nothing of the account's settings (no address, no secret, no users, no failed deliveries).
#[component]
pub fn AdminOnlyNotice(
    /// The strings of the user's language.
    i18n: I18n,
    /// The Kommo interface language.
    lang: String,
) -> impl IntoView {
    view! {
        <div class="kvoip-form" lang=lang>
            <h3 class="kvoip-form__title">{i18n.t("settings", "title")}</h3>
            <p class="kvoip-notice kvoip-admin-only" role="status">{i18n.t("settings", "admin_only")}</p>
        </div>
    }
}

fn provider_section(
    ctx: &Ctx,
    model: &SettingsModel,
    host: StoredValue<Rc<Host>, LocalStorage>,
) -> impl IntoView + use<> {
    let saved_hint = |key: &'static str, has: fn(&VoipCredentialsView) -> bool| {
        let (stored, text) = (model.stored.clone(), ctx.t(key));
        move || stored.with(|stored| has(&stored.credentials)).then(|| text.clone())
    };
    let has_password =
        |view: &VoipCredentialsView| matches!(view, VoipCredentialsView::Password { has_password: true, .. });
    let has_key = |view: &VoipCredentialsView| matches!(view, VoipCredentialsView::ApiKey { has_key: true, .. });
    let has_client_secret =
        |view: &VoipCredentialsView| matches!(view, VoipCredentialsView::OAuth2 { has_client_secret: true, .. });
    // The chosen system's name for an input, a hint, or where its credentials come from.
    let word = |pick: fn(&SystemWords) -> &'static str| {
        let (values, i18n) = (ctx.values.clone(), ctx.i18n.clone());
        move || i18n.t("settings", values.with(|values| pick(&SystemWords::of(values.system))))
    };
    let hint = |pick: fn(&SystemWords) -> Option<&'static str>| {
        let (values, i18n) = (ctx.values.clone(), ctx.i18n.clone());
        move || values.with(|values| pick(&SystemWords::of(values.system))).map(|key| i18n.t("settings", key))
    };
    let credentials_hint = {
        let hint = hint(|words| words.credentials_hint);
        move || hint().map(|text| view! { <p class="kvoip-field__hint kvoip-credentials-hint">{text}</p> })
    };
    let systems = system_choices()
        .into_iter()
        .map(|system| (system, system.as_str(), ctx.t(SystemWords::of(system).name)))
        .collect();
    let system_lens = Lens { get: |values: &FormValues| values.system, set: FormValues::choose_system };
    // A system that takes one sign-in method needs no choice of it.
    let one_method = {
        let values = ctx.values.clone();
        move || values.with(|values| values.system.methods().len() < 2)
    };
    let system_refused = {
        let (system, method) = (ctx.refused("system"), ctx.refused("credentials.method"));
        move || system() || method()
    };
    // Hides the inputs of the sign-in methods not chosen.
    let hidden_unless = |method: CredentialMethod| {
        let values = ctx.values.clone();
        move || values.with(|values| values.method != method)
    };
    let check = {
        let model = model.clone();
        move |_| {
            let model = model.clone();
            let _ = host.try_with_value(|host| {
                let host = Rc::clone(host);
                wasm_bindgen_futures::spawn_local(async move { model.check_connection(&host).await });
            });
        }
    };
    let checking = {
        let state = model.check.clone();
        move || state.with(|state| *state == CheckState::Checking)
    };
    let check_result = {
        let (state, connection, i18n) = (model.check.clone(), model.connection.clone(), ctx.i18n.clone());
        move || {
            let (tone, text) = match state.get() {
                CheckState::Idle => return None,
                CheckState::Checking => ("busy", i18n.t("settings", "checking")),
                CheckState::Connected(name) => ("ok", i18n.t("settings", "check_ok").replace("#NAME#", &name)),
                CheckState::Refused => ("error", i18n.t("settings", "check_refused")),
                CheckState::Failed(problem) => {
                    ("error", connection.with(|connection| status_text(Status::Failed(problem), connection, &i18n)))
                }
            };
            Some(view! {
                <span class=format!("kvoip-check-result kvoip-check-result--{tone}") role="status">{text}</span>
            })
        }
    };
    let methods = vec![
        (CredentialMethod::Password, "password", ctx.t("method_password")),
        (CredentialMethod::ApiKey, "api_key", ctx.t("method_api_key")),
        (CredentialMethod::OAuth2, "oauth2", ctx.t("method_oauth2")),
    ];
    let body = view! {
        <div class="kvoip-field kvoip-system" role="group" aria-labelledby="kvoip-system-label"
            class:kvoip-field--invalid=system_refused>
            <p class="kvoip-field__label" id="kvoip-system-label">{ctx.t("system")}</p>
            {radios(ctx.clone(), "system", systems, system_lens, |_| false)}
            {error_line(ctx.clone(), || "system".to_owned())}
            {error_line(ctx.clone(), || "credentials.method".to_owned())}
        </div>
        <div class="kvoip-methods" class:kvoip-hidden=one_method>
            {radios(ctx.clone(), "credentials.method", methods, lens!(method), |_| false)}
        </div>
        {text_field(ctx.clone(), "credentials.provider_url", word(|words| words.provider_url), "url", lens!(provider_url),
            hint(|words| words.provider_url_hint))}
        <div class="kvoip-row" class:kvoip-hidden=hidden_unless(CredentialMethod::Password)>
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "credentials.login", word(|words| words.login), "text", lens!(login),
                    hint(|words| words.login_hint))}
            </div>
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "credentials.password", word(|words| words.password), "password", lens!(password),
                    saved_hint("voip_password_saved", has_password))}
            </div>
        </div>
        <div class="kvoip-row__cell" class:kvoip-hidden=hidden_unless(CredentialMethod::ApiKey)>
            {text_field(ctx.clone(), "credentials.key", ctx.t("api_key"), "password", lens!(key),
                saved_hint("api_key_saved", has_key))}
        </div>
        <div class="kvoip-row" class:kvoip-hidden=hidden_unless(CredentialMethod::OAuth2)>
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "credentials.client_id", word(|words| words.client_id), "text", lens!(client_id),
                    || None)}
            </div>
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "credentials.client_secret", word(|words| words.client_secret), "password",
                    lens!(client_secret), saved_hint("client_secret_saved", has_client_secret))}
            </div>
        </div>
        {credentials_hint}
        <div class="kvoip-actions">
            <button type="button" class="kvoip-button kvoip-check-connection" prop:disabled=checking on:click=check>
                {ctx.t("check_connection")}
            </button>
            {check_result}
        </div>
    };
    section(ctx.t("section_provider"), "kvoip-section--provider", body)
}

fn behaviour_sections(ctx: &Ctx) -> impl IntoView + use<> {
    let widget = view! {
        <div class="kvoip-grid">
            {checkbox(ctx.clone(), "call_handling.widget.ringing_sound", ctx.t("ringing_sound"), lens!(handling.widget.ringing_sound))}
            {checkbox(ctx.clone(), "call_handling.widget.call_feedback_modal", ctx.t("call_feedback_modal"),
                lens!(handling.widget.call_feedback_modal))}
            {checkbox(ctx.clone(), "call_handling.widget.auto_open_card", ctx.t("auto_open_card"), lens!(handling.widget.auto_open_card))}
            {checkbox(ctx.clone(), "call_handling.widget.call_quality_rating", ctx.t("call_quality_rating"),
                lens!(handling.widget.call_quality_rating))}
            {checkbox(ctx.clone(), "call_handling.widget.kommo_notification", ctx.t("kommo_notification"),
                lens!(handling.widget.kommo_notification))}
        </div>
    };
    let unknown = view! {
        {radios(ctx.clone(), "call_handling.unknown_incoming.create", vec![
            (UnknownCallerEntity::ContactAndLead, "contact_and_lead", ctx.t("unknown_contact_and_lead")),
            (UnknownCallerEntity::Unsorted, "unsorted", ctx.t("unknown_unsorted")),
        ], lens!(handling.unknown_incoming.create), |_| false)}
        <p class="kvoip-sublabel">{ctx.t("unsorted_accept")}</p>
        <div class="kvoip-indent">
            {radios(ctx.clone(), "call_handling.unknown_incoming.unsorted_accept", vec![
                (UnsortedAccept::Manual, "manual", ctx.t("unsorted_manual")),
                (UnsortedAccept::OnAnswer, "on_answer", ctx.t("unsorted_on_answer")),
            ], lens!(handling.unknown_incoming.unsorted_accept),
                |values| values.handling.unknown_incoming.create != UnknownCallerEntity::Unsorted)}
        </div>
    };
    let known = view! {
        {checkbox(ctx.clone(), "call_handling.known_incoming.create_lead_when_no_active_lead", ctx.t("known_create_lead"),
            lens!(handling.known_incoming.create_lead_when_no_active_lead))}
        {checkbox(ctx.clone(), "call_handling.known_incoming.note_number_when_several", ctx.t("known_note_number"),
            lens!(handling.known_incoming.note_number_when_several))}
    };
    let chosen_user = ctx.values.clone();
    let missed = view! {
        {checkbox(ctx.clone(), "call_handling.missed.create_task", ctx.t("missed_create_task"), lens!(handling.missed.create_task))}
        <div class="kvoip-row">
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "call_handling.missed.due_in_minutes", ctx.t("missed_due"), "number",
                    lens!(due_in_minutes), || None)}
            </div>
            <div class="kvoip-row__cell kvoip-row__cell--check">
                {checkbox(ctx.clone(), "call_handling.missed.link_to_lead", ctx.t("missed_link_to_lead"),
                    lens!(handling.missed.link_to_lead))}
            </div>
        </div>
        <p class="kvoip-sublabel">{ctx.t("responsible")}</p>
        {radios(ctx.clone(), "call_handling.missed.responsible.kind", vec![
            (ResponsibleChoice::ContactResponsible, "contact_responsible", ctx.t("responsible_contact")),
            (ResponsibleChoice::ExtensionUser, "extension_user", ctx.t("responsible_extension")),
            (ResponsibleChoice::User, "user", ctx.t("responsible_user")),
        ], lens!(responsible), |_| false)}
        <div class="kvoip-field kvoip-indent" class:kvoip-hidden=move || chosen_user.with(|values| values.responsible != ResponsibleChoice::User)
            class:kvoip-field--invalid=ctx.refused("call_handling.missed.responsible.user_id")>
            {user_select(ctx.clone(), || "call_handling.missed.responsible.user_id".to_owned(), None, ctx.t("choose_user"),
                |values| values.responsible_user_id.clone(), |values, id| values.responsible_user_id = id)}
            {error_line(ctx.clone(), || "call_handling.missed.responsible.user_id".to_owned())}
        </div>
    };
    let outgoing = checkbox(
        ctx.clone(),
        "call_handling.outgoing_new.create_contact_and_lead",
        ctx.t("outgoing_create"),
        lens!(handling.outgoing_new.create_contact_and_lead),
    );
    let leads = view! {
        <div class="kvoip-row">
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "call_handling.placement.pipeline_id", ctx.t("pipeline_id"), "number", lens!(pipeline_id), || None)}
            </div>
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "call_handling.placement.status_id", ctx.t("status_id"), "number", lens!(status_id), || None)}
            </div>
        </div>
        <p class="kvoip-field__hint">{ctx.t("leads_hint")}</p>
    };
    view! {
        {section(ctx.t("section_widget"), "kvoip-section--widget", widget)}
        {section(ctx.t("section_unknown"), "kvoip-section--unknown", unknown)}
        {section(ctx.t("section_known"), "kvoip-section--known", known)}
        {section(ctx.t("section_missed"), "kvoip-section--missed", missed)}
        {section(ctx.t("section_outgoing"), "kvoip-section--outgoing", outgoing)}
        {section(ctx.t("section_leads"), "kvoip-section--leads", leads)}
        {call_lists_section(ctx)}
    }
}

/// Call lists: whether managers may make them, from which of Kommo's lists (greyed out while they may
/// not), and the pause between their calls.
fn call_lists_section(ctx: &Ctx) -> impl IntoView + use<> {
    let sources = ListSource::ALL
        .map(|source| {
            let label = ctx.t(&format!("call_lists_{}", source.as_str()));
            check(
                ctx.clone(),
                "call_handling.call_lists.sources",
                Some(source.as_str().to_owned()),
                label,
                move |values| values.handling.call_lists.sources.contains(&source),
                move |values, on| values.choose_source(source, on),
                |values| !values.handling.call_lists.enabled,
            )
        })
        .collect_view();
    let range = ctx
        .t("call_lists_interval_hint")
        .replace("#MIN#", &MIN_DIAL_INTERVAL_SECS.to_string())
        .replace("#MAX#", &MAX_DIAL_INTERVAL_SECS.to_string());
    let body = view! {
        {checkbox(ctx.clone(), "call_handling.call_lists.enabled", ctx.t("call_lists_enabled"),
            lens!(handling.call_lists.enabled))}
        <div class="kvoip-row">
            <div class="kvoip-row__cell">
                {text_field(ctx.clone(), "call_handling.call_lists.interval_secs", ctx.t("call_lists_interval"), "number",
                    lens!(interval_secs), move || Some(range.clone()))}
            </div>
            <div class="kvoip-row__cell kvoip-field" role="group" aria-labelledby="kvoip-call-lists-sources"
                class:kvoip-field--invalid=ctx.refused("call_handling.call_lists.sources")>
                <p class="kvoip-field__label" id="kvoip-call-lists-sources">{ctx.t("call_lists_sources")}</p>
                {sources}
                {error_line(ctx.clone(), || "call_handling.call_lists.sources".to_owned())}
            </div>
        </div>
    };
    section(ctx.t("section_call_lists"), "kvoip-section--call-lists", body)
}

fn extension_row(ctx: Ctx, id: u32) -> impl IntoView {
    let index = {
        let values = ctx.values.clone();
        move || values.with(|values| values.row_index(id).unwrap_or(0))
    };
    let path = move |leaf: &'static str| {
        let index = index.clone();
        move || format!("extensions.entries[{}].{leaf}", index())
    };
    let (values, set_values, remove) = (ctx.values.clone(), ctx.values.clone(), ctx.values.clone());
    let extension_invalid = {
        let (errors, path) = (ctx.errors.clone(), path("extension"));
        move || errors.with(|errors| errors.iter().any(|error| error.field == path()))
    };
    let user_invalid = {
        let (errors, path) = (ctx.errors.clone(), path("user_id"));
        move || errors.with(|errors| errors.iter().any(|error| error.field == path()))
    };
    view! {
        <div class="kvoip-extension" data-row=id>
            <div class="kvoip-extension__number" class:kvoip-field--invalid=extension_invalid>
                <input
                    class="kvoip-field__input"
                    type="text"
                    inputmode="tel"
                    autocomplete="off"
                    name=path("extension")
                    aria-label=ctx.t("extension")
                    placeholder="101"
                    prop:value=move || {
                        values.with(|values| values.rows.iter().find(|row| row.id == id).map(|row| row.extension.clone()))
                    }
                    on:input=move |event| set_values.update(|values| {
                        if let Some(row) = values.row_mut(id) {
                            row.extension = event_target_value(&event);
                        }
                    })
                />
                {error_line(ctx.clone(), path("extension"))}
            </div>
            <div class="kvoip-extension__user" class:kvoip-field--invalid=user_invalid>
                {user_select(ctx.clone(), path("user_id"), None, ctx.t("choose_user"),
                    move |values| values.rows.iter().find(|row| row.id == id).map(|row| row.user_id.clone()).unwrap_or_default(),
                    move |values, user| if let Some(row) = values.row_mut(id) { row.user_id = user })}
                {error_line(ctx.clone(), path("user_id"))}
            </div>
            <button
                type="button"
                class="kvoip-icon-button kvoip-remove-extension"
                title=ctx.t("remove_extension")
                aria-label=ctx.t("remove_extension")
                on:click=move |_| remove.update(|values| values.remove_row(id))
            >
                "×"
            </button>
        </div>
    }
}

fn extensions_section(ctx: &Ctx) -> impl IntoView + use<> {
    let rows = {
        let values = ctx.values.clone();
        move || values.with(|values| values.rows.iter().map(|row| row.id).collect::<Vec<_>>())
    };
    let row_ctx = ctx.clone();
    let add = ctx.values.clone();
    let empty = {
        let values = ctx.values.clone();
        move || values.with(|values| values.rows.is_empty())
    };
    let body = view! {
        <div class="kvoip-extension kvoip-extension--head" class:kvoip-hidden=empty>
            <span class="kvoip-field__label">{ctx.t("extension")}</span>
            <span class="kvoip-field__label">{ctx.t("extension_user")}</span>
        </div>
        <For each=rows key=|id| *id children=move |id| extension_row(row_ctx.clone(), id) />
        {error_line(ctx.clone(), || "extensions.entries".to_owned())}
        <div class="kvoip-actions">
            <button type="button" class="kvoip-button kvoip-button--light kvoip-add-extension"
                on:click=move |_| add.update(FormValues::add_row)>
                {format!("+ {}", ctx.t("add_extension"))}
            </button>
        </div>
        <div class="kvoip-field" class:kvoip-field--invalid=ctx.refused("extensions.fallback_user_id")>
            <label class="kvoip-field__label" for=input_id("extensions.fallback_user_id")>{ctx.t("fallback_user")}</label>
            {user_select(ctx.clone(), || "extensions.fallback_user_id".to_owned(), Some(input_id("extensions.fallback_user_id")),
                ctx.t("no_fallback"), |values| values.fallback_user_id.clone(), |values, id| values.fallback_user_id = id)}
            {error_line(ctx.clone(), || "extensions.fallback_user_id".to_owned())}
            <p class="kvoip-field__hint">{ctx.t("extensions_hint")}</p>
        </div>
        {unmapped_calls(ctx)}
    };
    section(ctx.t("section_extensions"), "kvoip-section--extensions", body)
}

/// A list of ids in the form: how to read it and how to change it.
struct IdList {
    get: fn(&FormValues) -> &Vec<i64>,
    get_mut: fn(&mut FormValues) -> &mut Vec<i64>,
}

/// A checkbox for `id` in `list` (ticked: the id is in the list).
fn id_check(ctx: Ctx, name: &'static str, id: i64, label: String, list: IdList) -> impl IntoView {
    let IdList { get, get_mut } = list;
    let chosen = move |values: &FormValues| get(values).contains(&id);
    let choose = move |values: &mut FormValues, on: bool| {
        let ids = get_mut(values);
        ids.retain(|other| *other != id);
        if on {
            ids.push(id);
        }
    };
    check(ctx, name, Some(id.to_string()), label, chosen, choose, |_| false)
}

/// Who sees the popup of a call on an extension no user has: everyone, the users ticked, the users of
/// the groups ticked, or nobody.
fn unmapped_calls(ctx: &Ctx) -> impl IntoView + use<> {
    let chosen = ctx.values.clone();
    let chosen_groups = ctx.values.clone();
    let users = ctx.users.clone();
    let group_boxes = {
        let ctx = ctx.clone();
        let (users, values) = (ctx.users.clone(), ctx.values.clone());
        // Rebuilt only when the list itself changes, not at every keystroke elsewhere in the form.
        let groups = ArcMemo::new(move |_| {
            let picked = values.with(|values| values.handling.unmapped_calls.group_ids.clone());
            users.with(|users| group_choices(users.as_deref().unwrap_or_default(), &picked))
        });
        move || {
            groups
                .get()
                .into_iter()
                .map(|group| {
                    let list = IdList {
                        get: |values| &values.handling.unmapped_calls.group_ids,
                        get_mut: |values| &mut values.handling.unmapped_calls.group_ids,
                    };
                    id_check(ctx.clone(), "call_handling.unmapped_calls.group_ids", group.id, group.name, list)
                })
                .collect_view()
        }
    };
    let boxes = {
        let ctx = ctx.clone();
        move || {
            users.with(|users| {
                users
                    .iter()
                    .flatten()
                    .map(|user| {
                        let list = IdList {
                            get: |values| &values.handling.unmapped_calls.user_ids,
                            get_mut: |values| &mut values.handling.unmapped_calls.user_ids,
                        };
                        let name = "call_handling.unmapped_calls.user_ids";
                        id_check(ctx.clone(), name, user.id, user.name.clone(), list)
                    })
                    .collect_view()
            })
        }
    };
    let (users_refused, groups_refused) =
        (ctx.refused("call_handling.unmapped_calls.user_ids"), ctx.refused("call_handling.unmapped_calls.group_ids"));
    view! {
        <div class="kvoip-field" class:kvoip-field--invalid=move || users_refused() || groups_refused()>
            <p class="kvoip-sublabel">{ctx.t("unmapped_calls")}</p>
            {radios(ctx.clone(), "call_handling.unmapped_calls.to", vec![
                (PopupAudience::Everyone, "everyone", ctx.t("unmapped_everyone")),
                (PopupAudience::Users, "users", ctx.t("unmapped_users")),
                (PopupAudience::Groups, "groups", ctx.t("unmapped_groups")),
                (PopupAudience::Nobody, "nobody", ctx.t("unmapped_nobody")),
            ], lens!(handling.unmapped_calls.to), |_| false)}
            <div class="kvoip-indent kvoip-grid"
                class:kvoip-hidden=move || chosen.with(|values| values.handling.unmapped_calls.to != PopupAudience::Users)>
                {boxes}
            </div>
            {error_line(ctx.clone(), || "call_handling.unmapped_calls.user_ids".to_owned())}
            <div class="kvoip-indent kvoip-grid kvoip-unmapped-groups"
                class:kvoip-hidden=move || chosen_groups.with(|values| values.handling.unmapped_calls.to != PopupAudience::Groups)>
                {group_boxes}
            </div>
            {error_line(ctx.clone(), || "call_handling.unmapped_calls.group_ids".to_owned())}
        </div>
    }
}

fn webhook_section(
    ctx: &Ctx,
    model: &SettingsModel,
    host: StoredValue<Rc<Host>, LocalStorage>,
) -> impl IntoView + use<> {
    let (stored, shown, i18n) = (model.stored.clone(), model.shown_secret.clone(), ctx.i18n.clone());
    let act = |reveal: bool| {
        let model = model.clone();
        move |_| {
            let model = model.clone();
            let _ = host.try_with_value(|host| {
                let host = Rc::clone(host);
                wasm_bindgen_futures::spawn_local(async move {
                    if reveal { model.reveal_secret(&host).await } else { model.rotate_secret(&host).await }
                });
            });
        }
    };
    let (rotate, reveal) = (act(false), act(true));
    let hide = {
        let model = model.clone();
        move |_| model.hide_secret()
    };
    let busy = {
        let state = model.webhook_action.clone();
        move || matches!(state.get(), WebhookAction::Rotating | WebhookAction::Revealing)
    };
    let problem = {
        let (state, connection, i18n) = (model.webhook_action.clone(), model.connection.clone(), ctx.i18n.clone());
        move || match state.get() {
            WebhookAction::Failed(problem) => Some(view! {
                <span class="kvoip-check-result kvoip-check-result--error" role="alert">
                    {connection.with(|connection| status_text(Status::Failed(problem), connection, &i18n))}
                </span>
            }),
            _ => None,
        }
    };
    let t = move |key: &str| i18n.t("settings", key);
    let secret = {
        let (t, shown) = (t.clone(), shown.clone());
        move || match shown.get() {
            Some(secret) => {
                let value = secret.clone();
                let copy = move |_| copy_to_clipboard(&secret);
                view! {
                    <div class="kvoip-secret">
                        <input class="kvoip-field__input kvoip-webhook-secret kvoip-webhook-secret--shown" type="text"
                            readonly id="kvoip-webhook-secret" spellcheck="false" prop:value=value
                            on:focus={|event| event_target::<web_sys::HtmlInputElement>(&event).select()} />
                        <button type="button" class="kvoip-button kvoip-button--light kvoip-copy-secret" on:click=copy>
                            {t("copy")}
                        </button>
                    </div>
                    <p class="kvoip-field__hint kvoip-field__hint--warn">{t("webhook_secret_shown")}</p>
                }
                .into_any()
            }
            None => {
                let hint =
                    stored.with(|stored| stored.webhook.as_ref().map(|webhook| webhook.signing_secret_hint.clone()));
                view! { <code class="kvoip-webhook-secret" id="kvoip-webhook-secret">{format!("…{}", hint.as_deref().map(hint_tail).unwrap_or_default())}</code> }
                    .into_any()
            }
        }
    };
    let toggle = {
        let (shown, busy, t) = (shown.clone(), busy.clone(), t.clone());
        move || {
            if shown.with(Option::is_some) {
                view! {
                <button type="button" class="kvoip-button kvoip-button--light kvoip-hide-secret" on:click=hide.clone()>
                    {t("hide_secret")}
                </button>
            }
            .into_any()
            } else {
                view! {
                    <button type="button" class="kvoip-button kvoip-button--light kvoip-reveal-secret"
                        prop:disabled=busy.clone() on:click=reveal.clone()>
                        {t("reveal_secret")}
                    </button>
                }
                .into_any()
            }
        }
    };
    let url = {
        let stored = model.stored.clone();
        move || stored.with(|stored| stored.webhook.as_ref().map(|webhook| webhook.url.clone()))
    };
    let has_webhook = {
        let stored = model.stored.clone();
        move || stored.with(|stored| stored.webhook.is_some())
    };
    // What to paste where, for the system the settings were saved with.
    let saved_system = {
        let stored = model.stored.clone();
        move || stored.with(|stored| stored.system)
    };
    let guide = {
        let (saved_system, t) = (saved_system.clone(), t.clone());
        move || {
            let system = saved_system();
            let steps = SystemWords::of(system).guide.iter().map(|key| view! { <li>{t(key)}</li> }).collect_view();
            view! {
                <div class="kvoip-guide" data-system=system.as_str()>
                    <p class="kvoip-field__label kvoip-guide__title">{t("guide_title")}</p>
                    <ol class="kvoip-guide__steps">{steps}</ol>
                </div>
            }
        }
    };
    let no_secret = move || !SystemWords::of(saved_system()).takes_signing_secret;
    let body = view! {
        <p class="kvoip-field__hint" class:kvoip-hidden=has_webhook.clone()>{t("webhook_after_save")}</p>
        <Show when=has_webhook>
            <div class="kvoip-field kvoip-field--webhook">
                <label class="kvoip-field__label" for="kvoip-webhook-url">{t("webhook_url")}</label>
                <input id="kvoip-webhook-url" class="kvoip-field__input kvoip-webhook-url" type="text" readonly
                    prop:value=url.clone()
                    on:focus={|event| event_target::<web_sys::HtmlInputElement>(&event).select()} />
            </div>
            <div class="kvoip-field kvoip-field--secret" class:kvoip-hidden=no_secret.clone()>
                <label class="kvoip-field__label" for="kvoip-webhook-secret">{t("webhook_secret")}</label>
                {secret.clone()}
            </div>
            {guide.clone()}
            <div class="kvoip-actions" class:kvoip-hidden=no_secret.clone()>
                {toggle.clone()}
                <button type="button" class="kvoip-button kvoip-button--light kvoip-rotate-secret"
                    prop:disabled=busy.clone() on:click=rotate.clone()>
                    {t("rotate_secret")}
                </button>
                {problem.clone()}
            </div>
        </Show>
    };
    section(ctx.t("section_webhook"), "kvoip-section--webhook", body)
}

/// Puts the shown secret on the clipboard (`navigator.clipboard.writeText`, reached through `Reflect`
/// rather than more web-sys features) and selects it in its input, which is what the admin sees happen; where
/// the browser refuses the clipboard, the selection is ready for Ctrl+C. No "Copied" state: it would cost
/// the wasm more than the whole button.
fn copy_to_clipboard(text: &str) {
    use js_sys::{Function, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let Some(window) = web_sys::window() else { return };
    if let Some(input) = window
        .document()
        .and_then(|document| document.get_element_by_id("kvoip-webhook-secret"))
        .and_then(|input| input.dyn_into::<web_sys::HtmlInputElement>().ok())
    {
        input.select();
    }
    let get = |target: &JsValue, name: &str| Reflect::get(target, &JsValue::from_str(name)).ok();
    let clipboard = get(&window, "navigator").and_then(|navigator| get(&navigator, "clipboard"));
    let Some(clipboard) = clipboard.filter(JsValue::is_object) else { return };
    if let Some(write) = get(&clipboard, "writeText").and_then(|write| write.dyn_into::<Function>().ok()) {
        let _ = write.call1(&clipboard, &JsValue::from_str(text));
    }
}
