//! The host page at `/`: a Kommo-looking shell that loads the widget like Kommo does, and its options.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::archive::{Archive, BLOCK_WASM_COOKIE};
use crate::error::SandboxError;
use crate::samples::{LINE, Samples};

/// The widget code Kommo assigns our widget; also the CSS/DOM prefix.
pub const WIDGET_CODE: &str = "kvoip";

/// The languages the widget ships; anything else falls back to English like Kommo's default.
const LANGS: [&str; 3] = ["en", "es", "pt"];

/// A Kommo page CSP without `'wasm-unsafe-eval'`: the widget must fail politely under it.
const STRICT_CSP: &str = "script-src 'self' 'unsafe-inline'";

/// Query options of the host page. Failure modes are opt-in so the default page is the happy path.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageOptions {
    lang: Option<String>,
    /// `1`: the widget's `.wasm` answers 404 for this page load (via a cookie scoped to `/widget`).
    block_wasm: Option<String>,
    /// `strict`: send a CSP that forbids compiling wasm.
    csp: Option<String>,
    /// Kommo's `system().area`; `lcard` (a lead card) by default, `clist` with the contacts or companies
    /// list, `llist` with the leads list.
    area: Option<String>,
    /// What the page shows first: `card` (the lead card), `contacts`, `companies` or `leads` (a list); by
    /// default the area's (`clist` → contacts, `llist` → leads, else the card).
    view: Option<String>,
    /// Act as this account id for this page load (tokens and `APP.constant('account')`), so each browser
    /// test can start from an account the server has never seen.
    account: Option<u64>,
    /// Act as this user of the account (tokens and `APP.constant('user')`), e.g. one of the stand-in's
    /// default users who is not an administrator; the configured admin by default.
    user: Option<u64>,
    /// The tokens' `is_admin` claim: `omit` leaves it out (as Kommo's documented example does), `true` or
    /// `false` force it; by default it says whether the user is the configured admin.
    is_admin_claim: Option<String>,
    /// `1`: the settings modal stays open after a successful save. Kommo may close it (KOMMO.md does not
    /// say), so by default the page does, and whatever the save's answer showed is gone with it.
    keep_modal: Option<String>,
}

/// Who the page's user is: Kommo's `APP.constant('user')`, and what its disposable tokens claim.
struct PageUser {
    id: u64,
    name: String,
    login: String,
    lang: String,
    is_admin: bool,
}

impl PageUser {
    /// The account's user `id` as the Kommo stand-in knows it; an id it does not know is a plain user.
    fn of(stand_in: &crate::kommo_api::StandIn, account_id: u64, id: u64) -> PageUser {
        let ledger = stand_in.ledger();
        let known = ledger.account(account_id).and_then(|account| account.users.iter().find(|user| user.id == id));
        match known {
            Some(user) => PageUser {
                id,
                name: user.name.clone(),
                login: user.email.clone(),
                lang: user.lang.clone(),
                is_admin: user.is_admin,
            },
            None => PageUser {
                id,
                name: format!("User {id}"),
                login: format!("user{id}@sandbox.test"),
                lang: "en".to_owned(),
                is_admin: false,
            },
        }
    }
}

/// The body the page posts to `/sandbox/token` (`recorder.tokenAs`) for its disposable tokens.
fn token_as(account_id: u64, user_id: u64, is_admin_claim: Option<&str>) -> Value {
    let mut token_as = json!({ "account_id": account_id, "user_id": user_id });
    match is_admin_claim {
        Some("omit") => token_as["omit_is_admin"] = json!(true),
        Some("true") => token_as["is_admin"] = json!(true),
        Some("false") => token_as["is_admin"] = json!(false),
        _ => {}
    }
    token_as
}

/// The few words of Kommo's own chrome the page shows, per language.
fn host_strings(lang: &str) -> Value {
    let (save, cancel, active, settings, disable) = match lang {
        "es" => ("Guardar", "Cancelar", "Activo", "Ajustes", "Desactivar widget"),
        "pt" => ("Salvar", "Cancelar", "Ativo", "Configurações", "Desativar widget"),
        _ => ("Save", "Cancel", "Active", "Settings", "Disable widget"),
    };
    json!({ "save": save, "cancel": cancel, "active": active, "settings": settings, "disable": disable })
}

/// Resolves a manifest i18n key like `widget.name` in a language file; the key itself if absent.
fn translate(langs: &Value, key: &str) -> String {
    let found = key.split('.').try_fold(langs, |node, part| node.get(part));
    found.and_then(Value::as_str).unwrap_or(key).to_owned()
}

/// What the page script needs to build Kommo's widget object.
fn boot(archive: &Archive, kommo: &crate::Kommo, lang: &str, area: &str, account_id: u64, user: &PageUser) -> Value {
    let langs = archive.i18n(lang).or_else(|| archive.i18n("en")).unwrap_or_else(|| json!({}));
    let manifest = archive.manifest();
    let version = archive.version();
    // Kommo seeds a fresh install's settings with `active: 'N'` and an empty value per manifest field.
    let mut settings = serde_json::Map::new();
    settings.insert("active".to_owned(), json!("N"));
    if let Some(fields) = manifest["settings"].as_object() {
        for code in fields.keys() {
            settings.insert(code.clone(), json!(""));
        }
    }
    let text = |key: &str| manifest["widget"][key].as_str().map(|k| translate(&langs, k)).unwrap_or_default();
    json!({
        "lang": lang,
        "area": area,
        "script_url": format!("/widget/script.js?v={version}"),
        "widget": {
            "code": WIDGET_CODE,
            "version": version,
            "name": text("name"),
            "short_description": text("short_description"),
            "logo": archive.file("images/logo_small.png").map(|_| format!("/widget/images/logo_small.png?v={version}")),
        },
        "langs": langs,
        "settings": settings,
        // Where the manifest puts the widget (`clist-1`, `llist-1`, ...): the lists' "More" menu offers it there.
        "locations": manifest["locations"].clone(),
        "account": { "id": account_id, "subdomain": kommo.subdomain, "name": "Sandbox account" },
        "user": {
            "id": user.id,
            "name": user.name,
            "login": user.login,
            "is_admin": if user.is_admin { "Y" } else { "N" },
        },
        "strings": host_strings(lang),
    })
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The lead card the page shows: the demo account's sample lead, else a placeholder deal.
fn card_fields(samples: Option<&Samples>, user: &PageUser) -> Vec<(&'static str, String)> {
    match samples {
        Some(samples) => {
            let card = &samples.card;
            vec![
                ("card_title", card.title.clone()),
                ("card_stage", card.stage.clone()),
                ("card_responsible", card.responsible.clone()),
                ("card_budget", card.budget.clone()),
                ("card_contact", card.contact.clone()),
                ("card_phone", card.phone.clone()),
                ("card_email", card.email.clone()),
            ]
        }
        None => vec![
            ("card_title", "Sandbox deal #1".to_owned()),
            ("card_stage", "Initial contact".to_owned()),
            ("card_responsible", user.name.clone()),
            ("card_budget", "—".to_owned()),
            ("card_contact", "—".to_owned()),
            ("card_phone", "—".to_owned()),
            ("card_email", "—".to_owned()),
        ],
    }
}

/// A phone number or an email as the page shows it: Kommo's link that calls the widget's `add_action` handler
/// once one is registered (host.js turns it on), plain text until then; `—` when there is none.
fn action_html(kind: &str, value: &str) -> String {
    if value.is_empty() || value == "—" {
        return "—".to_owned();
    }
    let value = escape_html(value);
    format!(r#"<a class="sandbox-{kind}" data-action="{kind}" data-value="{value}">{value}</a>"#)
}

/// The first view and Kommo's area for it: the view asked for (its area unless one was asked for too), else
/// the area's view.
fn view_and_area<'a>(view: Option<&'a str>, area: Option<&'a str>) -> (&'a str, &'a str) {
    let view = view.filter(|view| VIEWS.contains(view));
    match (view, area) {
        (Some(view), Some(area)) => (view, area),
        (Some(view), None) => (view, area_of(view)),
        (None, Some("clist")) => ("contacts", "clist"),
        (None, Some("llist")) => ("leads", "llist"),
        (None, Some(area)) => ("card", area),
        (None, None) => ("card", "lcard"),
    }
}

/// The views of the page: the lead card and Kommo's three lists.
const VIEWS: [&str; 4] = ["card", "contacts", "companies", "leads"];

/// Kommo's area of a view.
fn area_of(view: &str) -> &'static str {
    match view {
        "contacts" | "companies" => "clist",
        "leads" => "llist",
        _ => "lcard",
    }
}

/// The call panel's caller choices: the sample callers, then a number typed by hand.
fn caller_options(samples: Option<&Samples>) -> String {
    let mut options = String::new();
    for caller in samples.map(|samples| samples.callers.as_slice()).unwrap_or_default() {
        options.push_str(&format!(
            r#"<option value="{}" data-hint="{}">{} · {}</option>"#,
            escape_html(&caller.number),
            escape_html(&caller.known_as),
            escape_html(&caller.name),
            escape_html(&caller.display),
        ));
    }
    options.push_str(r#"<option value="">Another number…</option>"#);
    options
}

pub(crate) async fn host_page(State(state): State<crate::State>, Query(options): Query<PageOptions>) -> Response {
    let area = options
        .area
        .as_deref()
        .filter(|area| !area.is_empty() && area.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    let (view, area) = view_and_area(options.view.as_deref(), area);
    let kommo = &state.config.kommo;
    let account_id = options.account.unwrap_or(kommo.account_id);
    // Kommo installs a widget before it loads it: the account exists on the Kommo stand-in, and the page
    // script sends the install request first unless the account already holds a live grant.
    state.stand_in.ensure_account(account_id, None);
    let user = PageUser::of(&state.stand_in, account_id, options.user.unwrap_or(kommo.user_id));
    // Kommo speaks the user's language unless the page is asked for another.
    let lang = [options.lang.as_deref(), Some(user.lang.as_str())]
        .into_iter()
        .flatten()
        .find(|lang| LANGS.contains(lang))
        .unwrap_or("en");
    let mut boot = boot(&state.config.archive, kommo, lang, area, account_id, &user);
    boot["token_as"] = token_as(account_id, user.id, options.is_admin_claim.as_deref());
    boot["keep_modal"] = json!(options.keep_modal.as_deref() == Some("1"));
    boot["install"] = json!({
        "installed": state.stand_in.installed(account_id),
        "connection_url": format!("{}/widget/v1/connection", kommo.audience),
    });
    boot["view"] = json!(view);
    // The provider account the page wires to the server's webhook unless the settings name another.
    let provider = state.voip.default_account();
    boot["provider"] = json!({
        "account_id": state.voip.default_account_id(),
        "webhook": provider.as_ref().is_some_and(|account| account.webhook.is_some()),
    });
    boot["reveal_url"] = json!(format!("{}{}", kommo.audience, shared::api::paths::WEBHOOK_REVEAL));
    // The demo account shows its sample lead and offers its sample callers; other accounts a placeholder.
    let samples = state.samples.as_ref().filter(|samples| samples.account_id == account_id);
    boot["card_id"] = json!(samples.map_or(1, |samples| samples.card.lead_id));
    boot["samples"] = json!(samples.map(|samples| samples.callers.as_slice()).unwrap_or_default());
    boot["demo"] = json!(samples.is_some());
    let from = samples.and_then(|samples| samples.callers.first()).map_or("+5511999990000", |c| c.number.as_str());
    let extensions: String = state
        .voip
        .extensions()
        .iter()
        .map(|extension| format!(r#"<option value="{}">"#, escape_html(extension)))
        .collect();
    // `<` escaped so the JSON can never close its <script> element.
    let boot_json = boot.to_string().replace('<', "\\u003c");
    let strings = &boot["strings"];
    let mut html = PAGE
        .replace("{{lang}}", lang)
        .replace("{{title}}", &escape_html(boot["widget"]["name"].as_str().unwrap_or(WIDGET_CODE)))
        .replace("{{settings}}", &escape_html(strings["settings"].as_str().unwrap_or_default()))
        .replace("{{disable}}", &escape_html(strings["disable"].as_str().unwrap_or_default()))
        .replace("{{caller_options}}", &caller_options(samples))
        .replace("{{from}}", &escape_html(from))
        .replace("{{line}}", LINE)
        .replace("{{extensions}}", &extensions)
        .replace("{{system_options}}", &system_options())
        .replace("{{widget_code}}", WIDGET_CODE);
    let fields = card_fields(samples, &user);
    let field = |name: &str| fields.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str());
    html = html
        .replace("{{card_phone_link}}", &action_html("phone", field("card_phone").unwrap_or_default()))
        .replace("{{card_email_link}}", &action_html("email", field("card_email").unwrap_or_default()));
    for (name, value) in &fields {
        html = html.replace(&format!("{{{{{name}}}}}"), &escape_html(value));
    }
    // The boot JSON last: nothing in it is ever read as a placeholder.
    let html = html.replace("{{boot}}", &boot_json);

    let block_wasm = options.block_wasm.as_deref() == Some("1");
    let cookie = if block_wasm {
        format!("{BLOCK_WASM_COOKIE}=1; Path=/widget; SameSite=Strict")
    } else {
        format!("{BLOCK_WASM_COOKIE}=; Path=/widget; SameSite=Strict; Max-Age=0")
    };
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    if options.csp.as_deref() == Some("strict") {
        headers.insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(STRICT_CSP));
    }
    response
}

pub(crate) async fn host_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], HOST_JS)
}

pub(crate) async fn host_style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], HOST_CSS)
}

pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /sandbox/samples`: the demo account's sample callers and card (404 when this sandbox seeded none):
/// `{account_id, callers: [{kind, name, number, display, known_as, contact_id, company_id, lead_ids}], card}`.
pub(crate) async fn samples(State(state): State<crate::State>) -> Result<Json<Value>, SandboxError> {
    let samples = state.samples.as_ref().ok_or(SandboxError::NotFound)?;
    Ok(Json(serde_json::to_value(samples).map_err(|error| SandboxError::Internal(error.to_string()))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListsQuery {
    account_id: u64,
}

/// The values of the fields with `code` (`PHONE`, `EMAIL`).
fn values(fields: &[crate::kommo_api::crm::Field], code: &str) -> Vec<String> {
    let of_code = fields.iter().filter(|field| field.field_code == code);
    of_code.flat_map(|field| field.values.iter().map(|value| value.value.clone())).collect()
}

/// `GET /sandbox/lists?account_id=`: the rows of the host page's three lists, from the Kommo stand-in's
/// entities in id order (what is still an unsorted item is left out, as Kommo's lists do):
/// `{contacts: [{id, type: "contact", name, phones, emails, company}], companies: [{id, type: "company", name,
/// phones, emails}], leads: [{id, type: "lead", name, stage, price, contact, company, phones}]}`, a lead's phones
/// being its main contact's, else its company's. 404 for an unknown account.
pub(crate) async fn lists(
    State(state): State<crate::State>,
    Query(query): Query<ListsQuery>,
) -> Result<Json<Value>, SandboxError> {
    use crate::kommo_api::crm::{UNSORTED_STATUS_ID, stage};

    let ledger = state.stand_in.ledger();
    ledger.account(query.account_id).ok_or(SandboxError::NotFound)?;
    let Some(crm) = ledger.crm(query.account_id) else {
        return Ok(Json(json!({ "contacts": [], "companies": [], "leads": [] })));
    };
    let company_name = |id: Option<&u64>| id.and_then(|id| crm.companies.get(id)).map(|company| company.name.clone());
    let contacts: Vec<Value> = crm
        .contacts
        .values()
        .filter(|contact| !contact.is_unsorted)
        .map(|contact| {
            json!({
                "id": contact.id,
                "type": "contact",
                "name": contact.name,
                "phones": values(&contact.fields, "PHONE"),
                "emails": values(&contact.fields, "EMAIL"),
                "company": company_name(contact.companies.first()),
            })
        })
        .collect();
    let companies: Vec<Value> = crm
        .companies
        .values()
        .map(|company| {
            json!({
                "id": company.id,
                "type": "company",
                "name": company.name,
                "phones": values(&company.fields, "PHONE"),
                "emails": values(&company.fields, "EMAIL"),
            })
        })
        .collect();
    let leads: Vec<Value> = crm
        .leads
        .values()
        .filter(|lead| lead.status_id != UNSORTED_STATUS_ID)
        .map(|lead| {
            let contact = lead.contacts.first().and_then(|id| crm.contacts.get(id));
            let company = lead.companies.first().and_then(|id| crm.companies.get(id));
            let mut phones = contact.map(|contact| values(&contact.fields, "PHONE")).unwrap_or_default();
            if phones.is_empty() {
                phones = company.map(|company| values(&company.fields, "PHONE")).unwrap_or_default();
            }
            json!({
                "id": lead.id,
                "type": "lead",
                "name": lead.name,
                "stage": stage(lead.status_id).map(|stage| stage.name),
                "price": lead.price,
                "contact": contact.map(|contact| contact.name.clone()),
                "company": company.map(|company| company.name.clone()),
                "phones": phones,
            })
        })
        .collect();
    Ok(Json(json!({ "contacts": contacts, "companies": companies, "leads": leads })))
}

/// The systems the page plays calls through, each with what its settings take here (`{origin}`: the page's).
fn system_options() -> String {
    use crate::systems::{twilio, yeastar, zadarma};
    let systems = [
        (
            "zadarma",
            "Zadarma",
            format!(
                "Settings: Zadarma, URL {{origin}}/zadarma, key {}, secret {}",
                zadarma::DEMO_KEY,
                zadarma::DEMO_SECRET
            ),
        ),
        (
            "yeastar",
            "Yeastar P-Series",
            format!(
                "Settings: Yeastar, URL {{origin}}/yeastar, client ID {}, secret {}; the webhook secret below signs",
                yeastar::DEFAULT_CLIENT_ID,
                yeastar::DEFAULT_CLIENT_SECRET
            ),
        ),
        (
            "twilio",
            "Twilio",
            format!(
                "Settings: Twilio, URL {{origin}}/twilio, account SID {}, auth token {}",
                twilio::DEMO_ACCOUNT_SID,
                twilio::DEMO_AUTH_TOKEN
            ),
        ),
        (
            "asterisk",
            "Asterisk (AMI)",
            "Settings: Asterisk, URL http://127.0.0.1:8091, login kommo, password from data/connector.env; then the \
             connector needs the webhook URL and secret (README)"
                .to_owned(),
        ),
    ];
    systems
        .iter()
        .map(|(value, label, hint)| {
            format!("<option value=\"{value}\" data-hint=\"{}\">{label}</option>", escape_html(hint))
        })
        .collect()
}

const HOST_JS: &str = include_str!("host/host.js");
const HOST_CSS: &str = include_str!("host/host.css");

/// The shell: Kommo's left menu, top bar, a lead card and Kommo's lists (contacts, companies, leads: rows with
/// checkboxes, the mass-action bar and its "More" menu), Kommo's transient messages top right, plus sandbox
/// tools: the VoIP provider's call panel under the card's fields (out of the way of the widget's popups, which
/// stack up from the bottom right) and the callbacks log beside the widget's tile.
const PAGE: &str = r##"<!doctype html>
<html lang="{{lang}}">
<head>
<meta charset="utf-8">
<title>{{card_title}} · Kommo (local)</title>
<link rel="stylesheet" href="/sandbox/host.css">
<script type="application/json" id="sandbox-boot">{{boot}}</script>
<script src="/vendor/require.js"></script>
<script src="/sandbox/host.js"></script>
</head>
<body class="sandbox">
<nav class="sandbox-nav" aria-label="Kommo">
  <div class="sandbox-nav__logo">k</div>
  <a class="sandbox-nav__item"><span class="sandbox-nav__icon">▦</span>Dashboard</a>
  <a class="sandbox-nav__item sandbox-nav__item_link" id="sandbox-nav-leads" data-view="leads"><span class="sandbox-nav__icon">☰</span>Leads</a>
  <a class="sandbox-nav__item"><span class="sandbox-nav__icon">✉</span>Chats</a>
  <a class="sandbox-nav__item sandbox-nav__item_link" id="sandbox-nav-contacts" data-view="contacts"><span class="sandbox-nav__icon">☺</span>Contacts</a>
  <a class="sandbox-nav__item"><span class="sandbox-nav__icon">✓</span>Tasks</a>
  <a class="sandbox-nav__item"><span class="sandbox-nav__icon">▤</span>Lists</a>
  <a class="sandbox-nav__item"><span class="sandbox-nav__icon">◔</span>Stats</a>
  <a class="sandbox-nav__item sandbox-nav__item_bottom"><span class="sandbox-nav__icon">⚙</span>Settings</a>
</nav>
<div class="sandbox-main">
  <header class="sandbox-topbar">
    <div class="sandbox-topbar__crumbs" id="sandbox-crumbs" data-card-title="{{card_title}}">Leads <span>›</span> {{card_title}}</div>
    <input class="sandbox-topbar__search" type="search" placeholder="Search" aria-label="Search">
    <div class="sandbox-topbar__langs" id="sandbox-langs"></div>
  </header>
  <main class="sandbox-card" id="sandbox-view-card">
    <section class="sandbox-card__info">
      <h1 class="sandbox-card__title">{{card_title}}</h1>
      <div class="sandbox-card__pipeline"><span class="sandbox-card__stage">{{card_stage}}</span></div>
      <dl class="sandbox-card__fields">
        <dt>Responsible</dt><dd>{{card_responsible}}</dd>
        <dt>Budget</dt><dd>{{card_budget}}</dd>
        <dt>Contact</dt><dd>{{card_contact}}</dd>
        <dt>Phone</dt><dd class="sandbox-card__phones">{{card_phone_link}}</dd>
        <dt>Email</dt><dd>{{card_email_link}}</dd>
      </dl>
      <form class="sandbox-tools sandbox-phone" id="sandbox-call-form" autocomplete="off">
        <div class="sandbox-tools__title">VoIP provider (sandbox)</div>
        <label>Caller<select name="caller" id="sandbox-call-caller">{{caller_options}}</select></label>
        <div class="sandbox-phone__hint" id="sandbox-call-hint"></div>
        <label>From<input name="from" id="sandbox-call-from" value="{{from}}" inputmode="tel"></label>
        <div class="sandbox-phone__row">
          <label>To<input name="to" id="sandbox-call-to" value="{{line}}" inputmode="tel"></label>
          <label>Extension<input name="extension" id="sandbox-call-extension" value="101" list="sandbox-call-extensions"></label>
        </div>
        <datalist id="sandbox-call-extensions">{{extensions}}</datalist>
        <div class="sandbox-phone__state" id="sandbox-call-state" data-state="idle" aria-live="polite">No call</div>
        <div class="sandbox-phone__buttons">
          <button type="submit" class="sandbox-button sandbox-button_blue" id="sandbox-simulate-call">Ring</button>
          <button type="button" class="sandbox-button" id="sandbox-call-answer" disabled>Answer</button>
          <button type="button" class="sandbox-button" id="sandbox-call-end" disabled>End</button>
          <button type="button" class="sandbox-button" id="sandbox-call-miss" disabled>Miss</button>
        </div>
        <output id="sandbox-provider-result"></output>
        <div class="sandbox-phone__wired" id="sandbox-provider-wired" data-wired="false">Click-to-call: the provider plays calls once the widget's settings are saved here</div>
        <details class="sandbox-phone__webhook" id="sandbox-call-webhook-box">
          <summary>Webhook</summary>
          <label>Webhook URL<input name="webhook_url" id="sandbox-call-webhook" placeholder="taken from the widget's settings"></label>
          <label>Webhook secret<input name="secret" id="sandbox-call-secret" placeholder="whsec_… (unsigned when empty)"></label>
        </details>
      </form>
      <form class="sandbox-tools sandbox-phone sandbox-systems" id="sandbox-system-form" autocomplete="off">
        <div class="sandbox-tools__title">A whole call through a telephony system</div>
        <div class="sandbox-phone__row">
          <label>System<select name="system" id="sandbox-system">{{system_options}}</select></label>
          <label>Call<select name="scenario" id="sandbox-system-scenario">
            <option value="answered">Answered</option>
            <option value="missed">Missed</option>
            <option value="outgoing">Outgoing</option>
          </select></label>
        </div>
        <div class="sandbox-phone__hint" id="sandbox-system-hint"></div>
        <div class="sandbox-phone__buttons">
          <button type="submit" class="sandbox-button sandbox-button_blue" id="sandbox-system-play">Play</button>
        </div>
        <output id="sandbox-system-result" data-state="idle"></output>
        <div class="sandbox-phone__hint">The caller (or the number called) is From above, on Extension above.</div>
      </form>
    </section>
    <section class="sandbox-card__feed">
      <div class="sandbox-feed__note"><b>System</b> · Lead created from an incoming call</div>
      <div class="sandbox-feed__note"><b>Sandbox Admin</b> · Call back tomorrow morning</div>
      <div class="sandbox-feed__composer">Type a note…</div>
    </section>
    <aside class="sandbox-card__widgets">
      <div class="sandbox-widget-tile">
        <div class="sandbox-widget-tile__head" id="sandbox-widget-name">{{title}}</div>
        <div class="sandbox-widget-tile__actions">
          <button type="button" class="sandbox-button sandbox-button_blue" id="sandbox-open-settings" disabled>{{settings}}</button>
          <button type="button" class="sandbox-button" id="sandbox-disable" disabled>{{disable}}</button>
        </div>
      </div>
      <div class="sandbox-tools sandbox-tools_log">
        <div class="sandbox-tools__title">Callbacks</div>
        <div id="sandbox-calls"></div>
        <div>onSave: <output id="sandbox-save-result"></output></div>
        <div>Opened: <output id="sandbox-navigation"></output></div>
      </div>
    </aside>
  </main>
  <main class="sandbox-list" id="sandbox-view-list" hidden>
    <div class="sandbox-list__head">
      <h1 class="sandbox-list__title" id="sandbox-list-title"></h1>
      <nav class="sandbox-list__tabs" id="sandbox-list-tabs">
        <a class="sandbox-list__tab" id="sandbox-tab-contacts" data-view="contacts">Contacts</a>
        <a class="sandbox-list__tab" id="sandbox-tab-companies" data-view="companies">Companies</a>
      </nav>
      <span class="sandbox-list__total" id="sandbox-list-total"></span>
      <a class="sandbox-list__card-link" id="sandbox-open-card" data-view="card">Open the lead card</a>
    </div>
    <div class="sandbox-list__actions" id="sandbox-list-actions" hidden>
      <span class="sandbox-list__selected" id="sandbox-list-selected"></span>
      <button type="button" class="sandbox-list__action" disabled>Change responsible</button>
      <button type="button" class="sandbox-list__action" disabled>Add task</button>
      <button type="button" class="sandbox-list__action" disabled>Delete</button>
      <div class="sandbox-list__more">
        <button type="button" class="sandbox-list__action sandbox-list__more-button" id="sandbox-list-more" aria-haspopup="menu" aria-expanded="false">More ▾</button>
        <ul class="sandbox-list__menu" id="sandbox-list-more-menu" role="menu" hidden>
          <li class="sandbox-list__menu-item sandbox-list__menu-item_kommo" role="menuitem" aria-disabled="true">Export</li>
          <li class="sandbox-list__menu-item sandbox-list__widget-action" id="sandbox-list-widget-action" role="menuitem" tabindex="0" data-widget-code="{{widget_code}}" hidden></li>
        </ul>
      </div>
    </div>
    <table class="sandbox-list__table">
      <thead id="sandbox-list-head"></thead>
      <tbody id="sandbox-list-rows"></tbody>
    </table>
    <div class="sandbox-list__empty" id="sandbox-list-empty" hidden>Nothing here yet</div>
  </main>
</div>
<div class="sandbox-kommo-messages" id="sandbox-kommo-messages" aria-live="polite"></div>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_user_s_tokens_claim_what_the_page_was_asked_for() {
        assert_eq!(token_as(7, 701, None), json!({ "account_id": 7, "user_id": 701 }));
        assert_eq!(token_as(7, 701, Some("omit")), json!({ "account_id": 7, "user_id": 701, "omit_is_admin": true }));
        assert_eq!(token_as(7, 1, Some("false")), json!({ "account_id": 7, "user_id": 1, "is_admin": false }));
        assert_eq!(token_as(7, 701, Some("true")), json!({ "account_id": 7, "user_id": 701, "is_admin": true }));
        assert_eq!(token_as(7, 701, Some("maybe")), json!({ "account_id": 7, "user_id": 701 }));
    }

    #[test]
    fn manifest_keys_are_translated_by_dotted_path() {
        let langs = json!({ "widget": { "name": "Kommo VoIP" } });
        assert_eq!(translate(&langs, "widget.name"), "Kommo VoIP");
        assert_eq!(translate(&langs, "widget.missing"), "widget.missing");
    }
}
