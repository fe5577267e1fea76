//! The call-result modal: when a call the widget saw ends, the manager records its outcome (Kommo's
//! `call_status`), a note, an optional quality rating and an optional follow-up task; the server merges it
//! into the call's delivery to Kommo (`POST /widget/v1/calls/{call_id}/result`).

use std::collections::VecDeque;
use std::rc::Rc;

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::Value;
use shared::api::{ErrorBody, IncomingCall, paths};
use shared::rules::{CallResult, EntityKind, EntityRef, FollowUp, KommoCallStatus};
use shared::{CallStatus, WidgetBehaviour};
use wasm_bindgen::JsCast;
use web_sys::HtmlElement;

use crate::host::Host;
use crate::i18n::I18n;
use crate::problem::{Problem, error_key};

pub use shared::rules::{MAX_FOLLOW_UP_CHARS as MAX_TASK_CHARS, MAX_RESULT_NOTE_CHARS as MAX_NOTE_CHARS};
/// How many ended calls are remembered, so that a repeated end event does not ask twice.
const REMEMBERED_CALLS: usize = 200;

/// Kommo's call outcomes in the order the select offers them.
pub const OUTCOMES: [KommoCallStatus; 7] = [
    KommoCallStatus::Success,
    KommoCallStatus::CallBackLater,
    KommoCallStatus::LeftMessage,
    KommoCallStatus::NotAvailable,
    KommoCallStatus::Busy,
    KommoCallStatus::NoConnection,
    KommoCallStatus::WrongNumber,
];

/// Whether a status ends the call (the moment to ask for its result).
pub fn is_end(status: CallStatus) -> bool {
    matches!(status, CallStatus::Ended | CallStatus::Missed | CallStatus::Busy | CallStatus::Failed)
}

/// The outcome the select starts on, as the server would log the call without a result.
pub fn default_outcome(status: CallStatus) -> KommoCallStatus {
    match status {
        CallStatus::Busy => KommoCallStatus::Busy,
        CallStatus::Missed | CallStatus::Failed => KommoCallStatus::NoConnection,
        CallStatus::Ringing | CallStatus::Answered | CallStatus::Ended => KommoCallStatus::Success,
    }
}

/// What the widget decided for an ended call (shown as the call card's `data-call-result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The modal was (or is about to be) shown.
    Asked,
    /// The account's settings have the call-result modal off.
    Off,
    /// The settings could not be read, so nothing is asked.
    Unknown,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Asked => "asked",
            Decision::Off => "off",
            Decision::Unknown => "unknown",
        }
    }

    /// What the account's call options (`GET /widget/v1/calls/options`, readable by every user) say about
    /// asking.
    pub fn from_options(options: Option<&WidgetBehaviour>) -> Self {
        match options {
            Some(options) if options.call_feedback_modal => Decision::Asked,
            Some(_) => Decision::Off,
            None => Decision::Unknown,
        }
    }
}

/// A call waiting for its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRequest {
    pub call: IncomingCall,
    /// The account asks for a call-quality rating.
    pub ask_quality: bool,
    /// The lead or contact open in Kommo when the call ended, offered as where the call goes.
    pub card: Option<EntityRef>,
}

/// The ended calls: each asked about once, one modal at a time, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultQueue {
    ended: VecDeque<(String, Option<Decision>)>,
    pending: Vec<ResultRequest>,
}

impl ResultQueue {
    /// Records that a call ended; `false` when its end was seen before (nothing more to do).
    pub fn first_end(&mut self, call_id: &str) -> bool {
        if self.ended.iter().any(|(id, _)| id == call_id) {
            return false;
        }
        if self.ended.len() == REMEMBERED_CALLS {
            self.ended.pop_front();
        }
        self.ended.push_back((call_id.to_owned(), None));
        true
    }

    /// Records the decision for an ended call, and queues its modal when it is [`Decision::Asked`].
    pub fn decide(&mut self, request: ResultRequest, decision: Decision) {
        if let Some((_, decided)) = self.ended.iter_mut().find(|(id, _)| *id == request.call.call_id) {
            *decided = Some(decision);
        }
        if decision == Decision::Asked && !self.pending.iter().any(|queued| queued.call.call_id == request.call.call_id)
        {
            self.pending.push(request);
        }
    }

    pub fn decision(&self, call_id: &str) -> Option<Decision> {
        self.ended.iter().find(|(id, _)| id == call_id).and_then(|(_, decision)| *decision)
    }

    /// The call whose modal is on screen.
    pub fn current(&self) -> Option<&ResultRequest> {
        self.pending.first()
    }

    /// Closes a call's modal (saved or skipped); the next call's, if any, takes its place.
    pub fn close(&mut self, call_id: &str) {
        self.pending.retain(|request| request.call.call_id != call_id);
    }

    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

/// A refused field and the i18n `(section, key)` of what to say under it; the empty field is the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub section: &'static str,
    pub key: String,
}

impl Refusal {
    fn new(field: &str, section: &'static str, key: &str) -> Self {
        Refusal { field: field.to_owned(), section, key: key.to_owned() }
    }
}

/// The modal's values as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultDraft {
    pub outcome: KommoCallStatus,
    pub note: String,
    pub quality: Option<u8>,
    pub follow_up: bool,
    pub task_text: String,
    /// As the date-time input holds it (`YYYY-MM-DDTHH:MM`, the browser's local time).
    pub task_due: String,
    pub link_card: bool,
}

impl ResultDraft {
    /// A fresh draft for a call that ended with `status`; a follow-up task would be due at `due`.
    pub fn new(status: CallStatus, due: String) -> Self {
        ResultDraft {
            outcome: default_outcome(status),
            note: String::new(),
            quality: None,
            follow_up: false,
            task_text: String::new(),
            task_due: due,
            link_card: false,
        }
    }

    /// The result to send, or every field to fix first. `due_at` reads the date-time input (unix seconds).
    pub fn build(
        &self,
        request: &ResultRequest,
        due_at: impl Fn(&str) -> Option<i64>,
    ) -> Result<CallResult, Vec<Refusal>> {
        let mut refused = Vec::new();
        let note = self.note.trim();
        if note.chars().count() > MAX_NOTE_CHARS {
            refused.push(Refusal::new("note", "errors", "too_long"));
        }
        let follow_up = if self.follow_up {
            let text = self.task_text.trim();
            if text.is_empty() {
                refused.push(Refusal::new("follow_up.text", "errors", "required"));
            } else if text.chars().count() > MAX_TASK_CHARS {
                refused.push(Refusal::new("follow_up.text", "errors", "too_long"));
            }
            let due = self.task_due.trim();
            let due_at = if due.is_empty() { None } else { due_at(due) };
            match due_at {
                None if due.is_empty() => refused.push(Refusal::new("follow_up.due_at", "errors", "required")),
                None => refused.push(Refusal::new("follow_up.due_at", "result", "invalid_due")),
                Some(_) => {}
            }
            due_at.map(|due_at| FollowUp { text: text.to_owned(), due_at })
        } else {
            None
        };
        if !refused.is_empty() {
            return Err(refused);
        }
        Ok(CallResult {
            note: (!note.is_empty()).then(|| note.to_owned()),
            call_status: self.outcome,
            quality: self.quality.filter(|_| request.ask_quality),
            follow_up,
            entity: request.card.filter(|_| self.link_card),
        })
    }
}

/// The message key under a field the server refused with a `400` naming it (`"follow_up.due_at: …"`).
fn refused_field(message: &str) -> Option<Refusal> {
    let (field, _) = message.split_once(':')?;
    let (field, key) = match field.trim() {
        "note" => ("note", "invalid_note"),
        "call_status" => ("call_status", "invalid_outcome"),
        "quality" => ("quality", "invalid_quality"),
        "follow_up.text" => ("follow_up.text", "invalid_task_text"),
        "follow_up.due_at" => ("follow_up.due_at", "invalid_due"),
        "entity" | "entity.id" | "entity.type" => ("entity", "invalid_entity"),
        _ => return None,
    };
    Some(Refusal::new(field, "result", key))
}

/// How the server answered a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted,
    AlreadyRecorded,
    /// The server has no event of this call for the account.
    UnknownCall,
    /// This user is neither the call's responsible user nor an administrator.
    NotYourCall,
    Refused(Vec<Refusal>),
    Failed(Problem),
}

impl SubmitOutcome {
    /// Classifies a `POST /widget/v1/calls/{call_id}/result` reply (`status` 0 = the network failed).
    pub fn from_reply(status: u16, body: Value) -> Self {
        let error = serde_json::from_value::<ErrorBody>(body.clone()).ok().map(|body| body.error);
        match (status, error) {
            (200..=299, _) => SubmitOutcome::Accepted,
            (409, Some(error)) if error.code == "result_exists" => SubmitOutcome::AlreadyRecorded,
            (404, _) => SubmitOutcome::UnknownCall,
            (403, Some(error)) if error.code == "not_your_call" => SubmitOutcome::NotYourCall,
            (400 | 422, Some(error)) if !error.fields.is_empty() => SubmitOutcome::Refused(
                error
                    .fields
                    .iter()
                    .map(|field| {
                        // The modal's own wording where it has one (a due time "out of range" reads as
                        // "pick a time between now and a year from now"), else the shared code's message.
                        match field.code {
                            shared::ValidationCode::OutOfRange => refused_field(&format!("{}:", field.field)),
                            _ => None,
                        }
                        .unwrap_or_else(|| Refusal::new(&field.field, "errors", &error_key(field.code)))
                    })
                    .collect(),
            ),
            (400, Some(error)) => refused_field(&error.message)
                .map_or(SubmitOutcome::Failed(Problem::Server), |refusal| SubmitOutcome::Refused(vec![refusal])),
            _ => SubmitOutcome::Failed(Problem::from_reply(status, &body, Problem::Server)),
        }
    }
}

/// What the modal's status line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    Idle,
    Sending,
    Invalid,
    AlreadyRecorded,
    UnknownCall,
    NotYourCall,
    Failed(Problem),
}

impl ResultStatus {
    /// The i18n `(section, key)` of the line, if there is one.
    pub fn message(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            ResultStatus::Idle => return None,
            ResultStatus::Sending => ("result", "sending"),
            ResultStatus::Invalid => ("result", "fix_fields"),
            ResultStatus::AlreadyRecorded => ("result", "already_recorded"),
            ResultStatus::UnknownCall => ("result", "unknown_call"),
            ResultStatus::NotYourCall => ("result", "not_your_call"),
            ResultStatus::Failed(Problem::Network) => ("errors", "network"),
            ResultStatus::Failed(Problem::Unauthorized) => ("errors", "unauthorized"),
            ResultStatus::Failed(Problem::KommoUnavailable) => ("errors", "kommo_unavailable"),
            ResultStatus::Failed(_) => ("result", "save_failed"),
        })
    }

    pub fn tone(self) -> &'static str {
        match self {
            ResultStatus::Idle | ResultStatus::Sending => "busy",
            ResultStatus::AlreadyRecorded => "ok",
            _ => "error",
        }
    }

    /// Nothing more to send for this call.
    pub fn settled(self) -> bool {
        matches!(self, ResultStatus::AlreadyRecorded | ResultStatus::UnknownCall | ResultStatus::NotYourCall)
    }
}

/// The i18n key of an outcome's label.
pub fn outcome_key(outcome: KommoCallStatus) -> String {
    format!("outcome_{}", u8::from(outcome))
}

/// The path a call's result is posted to.
pub fn result_path(call_id: &str) -> String {
    let encoded = String::from(js_sys::encode_uri_component(call_id));
    paths::CALL_RESULT.replace("{call_id}", &encoded)
}

/// Asks the server whether the account wants the modal, and queues it for `call` if so.
pub async fn offer(host: Rc<Host>, results: ArcRwSignal<ResultQueue>, call: IncomingCall) {
    let reply = host.request("GET", paths::CALL_OPTIONS, None::<&()>).await;
    let options = match reply {
        Ok((200, body)) => serde_json::from_value::<WidgetBehaviour>(body).ok(),
        _ => None,
    };
    let decision = Decision::from_options(options.as_ref());
    let ask_quality = options.as_ref().is_some_and(|options| options.call_quality_rating);
    let request = ResultRequest { call, ask_quality, card: host.current_card() };
    results.update(|results| results.decide(request, decision));
}

/// `YYYY-MM-DDTHH:MM` in local time, as a date-time input holds it.
fn local_input_value(date: &js_sys::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        date.get_full_year(),
        date.get_month() + 1,
        date.get_date(),
        date.get_hours(),
        date.get_minutes()
    )
}

/// A follow-up's default due time: this time tomorrow, on the hour.
fn default_due() -> String {
    let date = js_sys::Date::new_0();
    date.set_time(date.get_time() + 24.0 * 3600.0 * 1000.0);
    date.set_minutes(0);
    local_input_value(&date)
}

fn now_input_value() -> String {
    local_input_value(&js_sys::Date::new_0())
}

/// Reads a date-time input's value (local time) as unix seconds.
fn parse_due(text: &str) -> Option<i64> {
    let millis = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(text)).get_time();
    millis.is_finite().then(|| (millis / 1000.0).floor() as i64)
}

/// The modal for the oldest call waiting for its result (nothing while none is).
#[component]
pub fn ResultModal(
    /// The ended calls; the push stream fills it, the modal empties it.
    results: ArcRwSignal<ResultQueue>,
    /// The host object: strings and the request that posts the result.
    host: Rc<Host>,
) -> impl IntoView {
    let i18n = host.i18n();
    let host = StoredValue::new_local(host);
    let current = {
        let results = results.clone();
        ArcMemo::new(move |_| results.with(|results| results.current().cloned()))
    };
    move || {
        current.get().map(|request| {
            view! { <ResultForm request results=results.clone() host i18n=i18n.clone() /> }
        })
    }
}

/// Reads and writes one value of the draft (plain function pointers, so every input shares one code path).
#[derive(Clone, Copy)]
struct Lens<T> {
    get: fn(&ResultDraft) -> T,
    set: fn(&mut ResultDraft, T),
}

/// A [`Lens`] on a field of [`ResultDraft`].
macro_rules! lens {
    ($field:ident) => {
        Lens { get: |draft| draft.$field.clone(), set: |draft, value| draft.$field = value }
    };
}

/// What every input of the form needs: the draft, the refusals, the strings.
#[derive(Clone)]
struct FormCtx {
    draft: ArcRwSignal<ResultDraft>,
    errors: ArcRwSignal<Vec<Refusal>>,
    i18n: I18n,
}

impl FormCtx {
    fn t(&self, key: &str) -> String {
        self.i18n.t("result", key)
    }

    fn invalid(&self, field: &'static str) -> impl Fn() -> bool + Send + Sync + 'static + use<> {
        let errors = self.errors.clone();
        move || errors.with(|errors| errors.iter().any(|error| error.field == field))
    }

    /// The message under a field when it was refused (`""` names the form as a whole).
    fn error(&self, field: &'static str) -> impl Fn() -> Option<AnyView> + Send + Sync + 'static + use<> {
        let (errors, i18n) = (self.errors.clone(), self.i18n.clone());
        move || {
            let (section, key) = errors
                .with(|errors| errors.iter().find(|error| error.field == field).map(|e| (e.section, e.key.clone())))?;
            Some(
                view! { <p class="kvoip-field__error" data-field=field role="alert">{i18n.t(section, &key)}</p> }
                    .into_any(),
            )
        }
    }

    /// A labelled field around `control`, marked invalid and followed by its message when refused.
    fn field(
        &self,
        field: &'static str,
        class: &'static str,
        label: (&'static str, String),
        control: AnyView,
    ) -> AnyView {
        view! {
            <div class=class class:kvoip-field--invalid=self.invalid(field)>
                <label class="kvoip-field__label" for=label.0>{label.1}</label>
                {control}
                {self.error(field)}
            </div>
        }
        .into_any()
    }

    /// A text-like `<input>` (`kind`: text, datetime-local) on a draft value; `limits` are its optional
    /// `maxlength`, `placeholder` and `min`.
    fn input(
        &self,
        (name, id, kind): (&'static str, &'static str, &'static str),
        limits: (Option<String>, Option<String>, Option<String>),
        lens: Lens<String>,
    ) -> AnyView {
        let (draft, set) = (self.draft.clone(), self.draft.clone());
        let (maxlength, placeholder, min) = limits;
        view! {
            <input id=id class="kvoip-field__input" type=kind name=name autocomplete="off"
                maxlength=maxlength placeholder=placeholder min=min
                prop:value=move || draft.with(lens.get)
                on:input=move |event| set.update(|draft| (lens.set)(draft, event_target_value(&event))) />
        }
        .into_any()
    }

    /// A checkbox on a draft value.
    fn check(&self, name: &'static str, label: String, lens: Lens<bool>) -> AnyView {
        let (draft, set) = (self.draft.clone(), self.draft.clone());
        view! {
            <label class="kvoip-check">
                <input type="checkbox" class="kvoip-check__input" name=name
                    prop:checked=move || draft.with(lens.get)
                    on:change=move |event| set.update(|draft| (lens.set)(draft, event_target_checked(&event))) />
                <span class="kvoip-check__text">{label}</span>
            </label>
        }
        .into_any()
    }
}

/// The five-star rating.
fn stars(ctx: &FormCtx) -> AnyView {
    let stars = (1..=5u8)
        .map(|value| {
            let (draft, lit, set) = (ctx.draft.clone(), ctx.draft.clone(), ctx.draft.clone());
            view! {
                <label class="kvoip-stars__star" data-value=value title=format!("{value} / 5")
                    class:kvoip-stars__star--on=move || lit.with(|draft| draft.quality.is_some_and(|q| q >= value))>
                    <input type="radio" class="kvoip-stars__input" name="quality" value=value
                        prop:checked=move || draft.with(|draft| draft.quality == Some(value))
                        on:change=move |_| set.update(|draft| draft.quality = Some(value)) />
                    <span aria-hidden="true">"★"</span>
                    <span class="kvoip-visually-hidden">{format!("{value} / 5")}</span>
                </label>
            }
        })
        .collect_view();
    view! {
        <div class="kvoip-field kvoip-result__quality" class:kvoip-field--invalid=ctx.invalid("quality")>
            <span class="kvoip-field__label">{ctx.t("quality")}</span>
            <div class="kvoip-stars" role="radiogroup" aria-label=ctx.t("quality")>{stars}</div>
            {ctx.error("quality")}
        </div>
    }
    .into_any()
}

/// The outcome select (Kommo's `call_status`), focused when the modal opens.
fn outcome_select(ctx: &FormCtx) -> AnyView {
    let options = OUTCOMES
        .into_iter()
        .map(|outcome| {
            let value = u8::from(outcome).to_string();
            view! { <option value=value>{ctx.t(&outcome_key(outcome))}</option> }
        })
        .collect_view();
    // Focus moves into the dialog once it is on the page.
    request_animation_frame(|| {
        let select = web_sys::window().and_then(|window| window.document()).and_then(|document| {
            document
                .get_element_by_id("kvoip-result-outcome")
                .and_then(|element| element.dyn_into::<HtmlElement>().ok())
        });
        if let Some(select) = select {
            let _ = select.focus();
        }
    });
    let (draft, set) = (ctx.draft.clone(), ctx.draft.clone());
    let select = view! {
        <select id="kvoip-result-outcome" class="kvoip-field__input kvoip-select" name="call_status"
            prop:value=move || u8::from(draft.with(|draft| draft.outcome)).to_string()
            on:change=move |event| {
                let chosen = event_target_value(&event).parse::<u8>().ok().and_then(|v| KommoCallStatus::try_from(v).ok());
                if let Some(outcome) = chosen {
                    set.update(|draft| draft.outcome = outcome);
                }
            }>
            {options}
        </select>
    };
    ctx.field("call_status", "kvoip-field", ("kvoip-result-outcome", ctx.t("outcome")), select.into_any())
}

/// The note's textarea.
fn note_area(ctx: &FormCtx) -> AnyView {
    let (draft, set) = (ctx.draft.clone(), ctx.draft.clone());
    let area = view! {
        <textarea id="kvoip-result-note" class="kvoip-field__input kvoip-textarea" name="note" rows="3"
            maxlength=MAX_NOTE_CHARS.to_string() placeholder=ctx.t("note_placeholder")
            prop:value=move || draft.with(|draft| draft.note.clone())
            on:input=move |event| set.update(|draft| draft.note = event_target_value(&event))>
        </textarea>
    };
    ctx.field("note", "kvoip-field", ("kvoip-result-note", ctx.t("note")), area.into_any())
}

/// The follow-up task: a checkbox, then the task's text and due time while it is ticked.
fn follow_up(ctx: &FormCtx) -> AnyView {
    let hidden = {
        let draft = ctx.draft.clone();
        move || !draft.with(|draft| draft.follow_up)
    };
    let text = ctx.input(
        ("follow_up.text", "kvoip-result-task", "text"),
        (Some(MAX_TASK_CHARS.to_string()), Some(ctx.t("task_placeholder")), None),
        lens!(task_text),
    );
    // The picker starts at now; a time typed earlier is still sent, for the server to refuse by its own rule.
    let due = ctx.input(
        ("follow_up.due_at", "kvoip-result-due", "datetime-local"),
        (None, None, Some(now_input_value())),
        lens!(task_due),
    );
    let cell = "kvoip-row__cell kvoip-field";
    view! {
        {ctx.check("follow_up", ctx.t("follow_up"), lens!(follow_up))}
        <div class="kvoip-row kvoip-result__task" class:kvoip-hidden=hidden>
            {ctx.field("follow_up.text", cell, ("kvoip-result-task", ctx.t("task_text")), text)}
            {ctx.field("follow_up.due_at", cell, ("kvoip-result-due", ctx.t("task_due")), due)}
        </div>
    }
    .into_any()
}

/// "Log this call in the open lead": offered when a lead or contact card is open.
fn card_choice(ctx: &FormCtx, card: EntityRef) -> AnyView {
    let key = match card.kind {
        EntityKind::Leads => "link_lead",
        EntityKind::Contacts => "link_contact",
        EntityKind::Companies => "link_company",
    };
    let label = ctx.t(key).replace("#ID#", &format!("#{}", card.id));
    view! {
        <div class="kvoip-field" class:kvoip-field--invalid=ctx.invalid("entity")>
            {ctx.check("entity", label, lens!(link_card))}
            {ctx.error("entity")}
        </div>
    }
    .into_any()
}

/// Sends the draft; the outcome decides what the modal shows next.
fn submit(
    ctx: &FormCtx,
    status: ArcRwSignal<ResultStatus>,
    results: ArcRwSignal<ResultQueue>,
    request: &ResultRequest,
    host: StoredValue<Rc<Host>, LocalStorage>,
) {
    let now = status.get_untracked();
    if now == ResultStatus::Sending || now.settled() {
        return;
    }
    let built = ctx.draft.with_untracked(|draft| draft.build(request, parse_due));
    let result = match built {
        Ok(result) => result,
        Err(refused) => {
            ctx.errors.set(refused);
            status.set(ResultStatus::Invalid);
            return;
        }
    };
    let Some(host) = host.try_with_value(Rc::clone) else { return };
    ctx.errors.set(Vec::new());
    status.set(ResultStatus::Sending);
    let (errors, call_id) = (ctx.errors.clone(), request.call.call_id.clone());
    wasm_bindgen_futures::spawn_local(async move {
        let reply = host.request("POST", &result_path(&call_id), Some(&result)).await;
        let (code, body) = reply.unwrap_or((0, Value::Null));
        match SubmitOutcome::from_reply(code, body) {
            SubmitOutcome::Accepted => {
                status.set(ResultStatus::Idle);
                results.update(|results| results.close(&call_id));
            }
            SubmitOutcome::AlreadyRecorded => status.set(ResultStatus::AlreadyRecorded),
            SubmitOutcome::UnknownCall => status.set(ResultStatus::UnknownCall),
            SubmitOutcome::NotYourCall => status.set(ResultStatus::NotYourCall),
            SubmitOutcome::Refused(refused) => {
                errors.set(refused);
                status.set(ResultStatus::Invalid);
            }
            SubmitOutcome::Failed(problem) => status.set(ResultStatus::Failed(problem)),
        }
    });
}

/// One call's result form.
#[component]
fn ResultForm(
    request: ResultRequest,
    results: ArcRwSignal<ResultQueue>,
    host: StoredValue<Rc<Host>, LocalStorage>,
    i18n: I18n,
) -> impl IntoView {
    let call = request.call.clone();
    let ctx = FormCtx {
        draft: ArcRwSignal::new(ResultDraft::new(call.status, default_due())),
        errors: ArcRwSignal::new(Vec::new()),
        i18n: i18n.clone(),
    };
    let status = ArcRwSignal::new(ResultStatus::Idle);
    let close = {
        let (results, call_id, status) = (results.clone(), call.call_id.clone(), status.clone());
        move || {
            if status.get_untracked() != ResultStatus::Sending {
                results.update(|results| results.close(&call_id));
            }
        }
    };
    let on_submit = {
        let (ctx, status, results, request) = (ctx.clone(), status.clone(), results.clone(), request.clone());
        move |event: SubmitEvent| {
            event.prevent_default();
            submit(&ctx, status.clone(), results.clone(), &request, host);
        }
    };
    let status_line = {
        let (status, i18n) = (status.clone(), i18n.clone());
        move || status.get().message().map(|(section, key)| i18n.t(section, key)).unwrap_or_default()
    };
    let status_class = {
        let status = status.clone();
        move || format!("kvoip-status kvoip-status--{}", status.get().tone())
    };
    let sending = {
        let status = status.clone();
        move || status.get() == ResultStatus::Sending
    };
    let settled = {
        let status = status.clone();
        move || status.get().settled()
    };
    let waiting = {
        let (results, text) = (results.clone(), ctx.t("waiting"));
        move || {
            let more = results.with(ResultQueue::waiting).saturating_sub(1);
            (more > 0).then(
                || view! { <span class="kvoip-result__waiting">{text.replace("#COUNT#", &more.to_string())}</span> },
            )
        }
    };
    let skip_text = {
        let (settled, close_text, skip_text) = (settled.clone(), ctx.t("close"), ctx.t("skip"));
        move || if settled() { close_text.clone() } else { skip_text.clone() }
    };
    let (close_x, close_skip, close_esc) = (close.clone(), close.clone(), close);
    let close_label = i18n.t("popup", "close");
    let status_key = call.status.as_str();
    // The client's number as the popup shows it (formatted, once the caller was described), on an
    // outgoing call too (where the client is `to`).
    let number = call.caller.as_ref().map_or_else(|| call.client_number().to_owned(), |caller| caller.number.clone());

    view! {
        <div class="kvoip-result" data-call-id=call.call_id.clone()
            on:keydown=move |event: leptos::ev::KeyboardEvent| if event.key() == "Escape" { close_esc() }>
            <div class="kvoip-result__overlay"></div>
            <form class="kvoip-result__window" role="dialog" aria-modal="true" aria-labelledby="kvoip-result-title"
                novalidate on:submit=on_submit>
                <div class="kvoip-result__head">
                    <div class="kvoip-result__heading">
                        <h2 class="kvoip-result__title" id="kvoip-result-title">{ctx.t("title")}</h2>
                        <div class="kvoip-result__call">
                            <span class="kvoip-result__number">{number}</span>
                            <span class=format!("kvoip-popup__status kvoip-popup__status--{status_key}")>
                                {i18n.t("status", status_key)}
                            </span>
                        </div>
                    </div>
                    <button type="button" class="kvoip-result__close" title=close_label.clone() aria-label=close_label
                        on:click=move |_| close_x()>"×"</button>
                </div>
                // Read-only once the server said there is nothing more to send for this call.
                <fieldset class="kvoip-result__fields" prop:disabled=settled.clone()>
                    {outcome_select(&ctx)}
                    {request.ask_quality.then(|| stars(&ctx))}
                    {note_area(&ctx)}
                    {follow_up(&ctx)}
                    {request.card.map(|card| card_choice(&ctx, card))}
                </fieldset>
                <div class="kvoip-result__errors">{ctx.error("")}</div>
                <p class=status_class role="status" aria-live="polite">{status_line}</p>
                <div class="kvoip-actions kvoip-result__actions">
                    <button type="submit" class="kvoip-button kvoip-result__save" class:kvoip-hidden=settled
                        prop:disabled=sending>{ctx.t("save")}</button>
                    <button type="button" class="kvoip-button kvoip-button--light kvoip-result__skip"
                        on:click=move |_| close_skip()>
                        {skip_text}
                    </button>
                    {waiting}
                </div>
            </form>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::ValidationCode;

    fn call(id: &str, status: CallStatus) -> IncomingCall {
        crate::calls::test_call(id, status)
    }

    fn request(id: &str) -> ResultRequest {
        ResultRequest { call: call(id, CallStatus::Ended), ask_quality: false, card: None }
    }

    fn due(text: &str) -> Option<i64> {
        (text == "2030-01-02T10:00").then_some(1_893_578_400)
    }

    #[test]
    fn only_an_end_asks_and_only_once_per_call() {
        assert!(!is_end(CallStatus::Ringing) && !is_end(CallStatus::Answered));
        assert!([CallStatus::Ended, CallStatus::Missed, CallStatus::Busy, CallStatus::Failed].into_iter().all(is_end));
        let mut queue = ResultQueue::default();
        assert!(queue.first_end("a"));
        assert!(!queue.first_end("a"));
        assert!(queue.first_end("b"));
    }

    #[test]
    fn modals_come_one_at_a_time_oldest_first_and_only_when_asked() {
        let mut queue = ResultQueue::default();
        for id in ["a", "b", "c"] {
            queue.first_end(id);
        }
        queue.decide(request("a"), Decision::Asked);
        queue.decide(request("b"), Decision::Off);
        queue.decide(request("c"), Decision::Asked);
        queue.decide(request("c"), Decision::Asked);
        assert_eq!(queue.current().map(|r| r.call.call_id.as_str()), Some("a"));
        assert_eq!(queue.waiting(), 2);
        assert_eq!(queue.decision("b"), Some(Decision::Off));
        assert_eq!(queue.decision("z"), None);
        queue.close("a");
        assert_eq!(queue.current().map(|r| r.call.call_id.as_str()), Some("c"));
        queue.close("c");
        assert_eq!(queue.current(), None);
    }

    #[test]
    fn the_remembered_ends_are_bounded() {
        let mut queue = ResultQueue::default();
        for n in 0..=REMEMBERED_CALLS {
            assert!(queue.first_end(&n.to_string()));
        }
        assert!(queue.first_end("0"), "the oldest end was forgotten");
        assert!(!queue.first_end(&REMEMBERED_CALLS.to_string()));
    }

    #[test]
    fn the_call_options_decide_whether_to_ask() {
        let mut options = WidgetBehaviour::default();
        assert_eq!(Decision::from_options(Some(&options)), Decision::Asked);
        options.call_feedback_modal = false;
        assert_eq!(Decision::from_options(Some(&options)), Decision::Off);
        assert_eq!(Decision::from_options(None), Decision::Unknown);
    }

    #[test]
    fn the_outcome_starts_as_the_call_ended() {
        assert_eq!(default_outcome(CallStatus::Ended), KommoCallStatus::Success);
        assert_eq!(default_outcome(CallStatus::Busy), KommoCallStatus::Busy);
        assert_eq!(default_outcome(CallStatus::Missed), KommoCallStatus::NoConnection);
        assert_eq!(default_outcome(CallStatus::Failed), KommoCallStatus::NoConnection);
        let mut all: Vec<u8> = OUTCOMES.iter().map(|outcome| u8::from(*outcome)).collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_draft_becomes_the_result_the_server_takes() {
        let mut draft = ResultDraft::new(CallStatus::Missed, "2030-01-02T10:00".into());
        draft.note = "  Asked for a quote  ".into();
        draft.quality = Some(4);
        draft.follow_up = true;
        draft.task_text = "Send the quote".into();
        draft.link_card = true;
        let card = EntityRef { kind: EntityKind::Leads, id: 7 };
        let asked = ResultRequest { ask_quality: true, card: Some(card), ..request("a") };
        let result = draft.build(&asked, due).unwrap();
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            json!({"note": "Asked for a quote", "call_status": 6, "quality": 4,
                "follow_up": {"text": "Send the quote", "due_at": 1_893_578_400_i64},
                "entity": {"type": "leads", "id": 7}})
        );
        // Without the rating asked, the card unticked and no follow-up, those parts stay out.
        draft.follow_up = false;
        draft.link_card = false;
        draft.note.clear();
        let plain = draft.build(&request("a"), due).unwrap();
        assert_eq!(
            plain,
            CallResult {
                note: None,
                call_status: KommoCallStatus::NoConnection,
                quality: None,
                follow_up: None,
                entity: None
            }
        );
    }

    #[test]
    fn a_follow_up_needs_its_text_and_a_readable_time() {
        let mut draft = ResultDraft::new(CallStatus::Ended, String::new());
        draft.follow_up = true;
        draft.task_text = "   ".into();
        let refused = draft.build(&request("a"), due).unwrap_err();
        assert_eq!(
            refused,
            [
                Refusal::new("follow_up.text", "errors", "required"),
                Refusal::new("follow_up.due_at", "errors", "required")
            ]
        );
        draft.task_text = "x".repeat(MAX_TASK_CHARS + 1);
        draft.task_due = "someday".into();
        draft.note = "n".repeat(MAX_NOTE_CHARS + 1);
        let refused = draft.build(&request("a"), due).unwrap_err();
        assert_eq!(
            refused,
            [
                Refusal::new("note", "errors", "too_long"),
                Refusal::new("follow_up.text", "errors", "too_long"),
                Refusal::new("follow_up.due_at", "result", "invalid_due"),
            ]
        );
    }

    #[test]
    fn server_replies_are_classified() {
        let error = |code: &str, message: &str| json!({"error": {"code": code, "message": message}});
        assert_eq!(SubmitOutcome::from_reply(202, json!({"accepted": true})), SubmitOutcome::Accepted);
        assert_eq!(
            SubmitOutcome::from_reply(409, error("result_exists", "A result was already recorded")),
            SubmitOutcome::AlreadyRecorded
        );
        assert_eq!(SubmitOutcome::from_reply(404, error("not_found", "Not found.")), SubmitOutcome::UnknownCall);
        assert_eq!(SubmitOutcome::from_reply(403, error("not_your_call", "m")), SubmitOutcome::NotYourCall);
        assert_eq!(SubmitOutcome::from_reply(403, error("forbidden", "m")), SubmitOutcome::Failed(Problem::Server));
        let unrelated_card = json!({"error": {"code": "validation", "message": "m",
            "fields": [{"field": "entity", "code": "not_tied_to_call"}]}});
        assert_eq!(
            SubmitOutcome::from_reply(422, unrelated_card),
            SubmitOutcome::Refused(vec![Refusal::new("entity", "errors", "not_tied_to_call")])
        );
        assert_eq!(
            SubmitOutcome::from_reply(400, error("bad_request", "follow_up.due_at: between now and a year from now")),
            SubmitOutcome::Refused(vec![Refusal::new("follow_up.due_at", "result", "invalid_due")])
        );
        assert_eq!(
            SubmitOutcome::from_reply(400, error("bad_request", "entity.id: a Kommo id")),
            SubmitOutcome::Refused(vec![Refusal::new("entity", "result", "invalid_entity")])
        );
        assert_eq!(
            SubmitOutcome::from_reply(400, error("bad_request", "call result: unknown field `x`")),
            SubmitOutcome::Failed(Problem::Server)
        );
        let fields = json!({"error": {"code": "validation", "message": "m",
            "fields": [{"field": "follow_up.text", "code": "too_long"}]}});
        assert_eq!(
            SubmitOutcome::from_reply(422, fields),
            SubmitOutcome::Refused(vec![Refusal::new("follow_up.text", "errors", &error_key(ValidationCode::TooLong))])
        );
        assert_eq!(SubmitOutcome::from_reply(409, error("conflict", "m")), SubmitOutcome::Failed(Problem::Server));
        assert_eq!(SubmitOutcome::from_reply(0, Value::Null), SubmitOutcome::Failed(Problem::Network));
        assert_eq!(SubmitOutcome::from_reply(401, Value::Null), SubmitOutcome::Failed(Problem::Unauthorized));
    }

    #[test]
    fn every_text_the_modal_shows_exists_in_english() {
        let i18n = I18n::new(Value::Null);
        let statuses = [
            ResultStatus::Sending,
            ResultStatus::Invalid,
            ResultStatus::AlreadyRecorded,
            ResultStatus::UnknownCall,
            ResultStatus::NotYourCall,
            ResultStatus::Failed(Problem::Server),
            ResultStatus::Failed(Problem::Network),
        ];
        let mut keys: Vec<(&str, String)> = statuses
            .iter()
            .map(|status| status.message().map(|(section, key)| (section, key.to_owned())).unwrap())
            .collect();
        keys.extend(OUTCOMES.iter().map(|outcome| ("result", outcome_key(*outcome))));
        for field in ["note", "call_status", "quality", "follow_up.text", "follow_up.due_at", "entity"] {
            let refusal = refused_field(&format!("{field}: x")).unwrap();
            keys.push((refusal.section, refusal.key));
        }
        for key in [
            "title",
            "outcome",
            "quality",
            "note",
            "note_placeholder",
            "follow_up",
            "task_text",
            "task_placeholder",
            "task_due",
            "link_lead",
            "link_contact",
            "link_company",
            "save",
            "skip",
            "close",
            "waiting",
        ] {
            keys.push(("result", key.to_owned()));
        }
        for (section, key) in keys {
            assert_ne!(i18n.t(section, &key), format!("{section}.{key}"), "{section}.{key}");
        }
    }
}
