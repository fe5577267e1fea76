//! Incoming-call popups: the board of calls on screen (one card per call id) and its cards; a call's end
//! may also ask for its result (see [`crate::result`]).
//!
//! The push stream itself is script.js's (a page loads no wasm until there is a call to show): it starts
//! this module at the first call for the user and hands it every call event ([`CallsHandle::push`]). The
//! same module holds the call-list dialer ([`crate::dialer`]), opened by script.js through
//! [`CallsHandle::open_dialer`] when a list is made or one is open at start.

use std::collections::VecDeque;
use std::rc::Rc;

use leptos::mount::mount_to;
use leptos::prelude::*;
use shared::api::{Caller, CallerKnown, IncomingCall, paths};
use shared::{CallDirection, CallStatus, WidgetBehaviour};
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use crate::Mounted;
use crate::dialer::Dialer;
use crate::host::Host;
use crate::i18n::I18n;
use crate::result::{self, Decision, ResultModal, ResultQueue};

/// Most cards on screen at once; the oldest goes first.
pub const MAX_CARDS: usize = 4;
/// Calls closed on this page that are remembered, so a late or replayed event does not reopen them.
const REMEMBERED_CLOSED: usize = 200;
/// How long a card stays after its call ended, unless the result form was opened for it.
pub const CLOSE_AFTER_END_MS: i32 = 8_000;

/// What an event changed on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: an older event of the call, a repeat, or a call closed on this page.
    None,
    /// A call new on the board.
    Added,
    /// The call's status went from one to another.
    Status(CallStatus, CallStatus),
    /// Only who is calling (or another detail) changed.
    Details,
}

/// The calls on screen, oldest first, at most one per `call_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallBoard {
    calls: Vec<IncomingCall>,
    /// Closed calls (by the manager, or after they ended), most recent last.
    closed: VecDeque<String>,
    /// Calls whose card was opened by itself on answer.
    opened: Vec<String>,
}

impl CallBoard {
    /// Applies a call event: a later event of a call on screen replaces it in place (keeping who is
    /// calling when the event does not say), an older one (by `event_id`) or a repeat changes nothing,
    /// an event without an id only adds who is calling; a new call is added last, the oldest card
    /// making room.
    pub fn apply(&mut self, call: IncomingCall) -> Change {
        if self.closed.contains(&call.call_id) {
            return Change::None;
        }
        let Some(shown) = self.calls.iter_mut().find(|shown| shown.call_id == call.call_id) else {
            self.calls.push(call);
            if self.calls.len() > MAX_CARDS {
                let oldest = self.calls.remove(0);
                self.remember_closed(oldest.call_id);
            }
            return Change::Added;
        };
        match call.event_id {
            None => match call.caller {
                Some(caller)
                    if shown.caller.as_ref() != Some(&caller)
                        || (call.line_shown.is_some() && shown.line_shown != call.line_shown) =>
                {
                    shown.caller = Some(caller);
                    shown.line_shown = call.line_shown.or(shown.line_shown.take());
                    Change::Details
                }
                _ => Change::None,
            },
            Some(id) if shown.event_id.is_some_and(|seen| seen >= id) => Change::None,
            Some(_) => {
                let before = shown.status;
                let caller = call.caller.clone().or_else(|| shown.caller.take());
                let line_shown = call.line_shown.clone().or_else(|| shown.line_shown.take());
                *shown = IncomingCall { caller, line_shown, ..call };
                if before == shown.status { Change::Details } else { Change::Status(before, shown.status) }
            }
        }
    }

    /// Closes a call's card; later events of the call do not bring it back.
    pub fn dismiss(&mut self, call_id: &str) {
        self.calls.retain(|call| call.call_id != call_id);
        self.remember_closed(call_id.to_owned());
    }

    fn remember_closed(&mut self, call_id: String) {
        if self.closed.len() == REMEMBERED_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(call_id);
    }

    pub fn get(&self, call_id: &str) -> Option<&IncomingCall> {
        self.calls.iter().find(|call| call.call_id == call_id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.calls.iter().map(|call| call.call_id.clone()).collect()
    }

    /// Whether a call on screen is ringing towards this user (an inbound call not yet answered).
    pub fn ringing(&self) -> bool {
        self.calls
            .iter()
            .any(|call| call.status == CallStatus::Ringing && call.direction != Some(CallDirection::Outbound))
    }

    /// The card to open by itself for `call_id`, once: its call was answered and who is calling is
    /// known (its only open lead, else the contact, else the company).
    pub fn card_to_open(&mut self, call_id: &str) -> Option<String> {
        if self.opened.iter().any(|id| id == call_id) {
            return None;
        }
        let call = self.get(call_id)?;
        if call.status != CallStatus::Answered {
            return None;
        }
        let path = card_path(call.caller.as_ref()?)?;
        if self.opened.len() == REMEMBERED_CLOSED {
            self.opened.remove(0);
        }
        self.opened.push(call_id.to_owned());
        Some(path)
    }
}

/// Kommo's path of the card to open for a caller: the only open lead, else the contact, else the company.
pub fn card_path(caller: &Caller) -> Option<String> {
    match (caller.leads.as_slice(), &caller.contact, &caller.company) {
        ([lead], _, _) => Some(format!("/leads/detail/{}", lead.id)),
        (_, Some(contact), _) => Some(format!("/contacts/detail/{}", contact.id)),
        (_, None, Some(company)) => Some(format!("/companies/detail/{}", company.id)),
        _ => None,
    }
}

/// Kommo's page for a new contact with the number filled in.
pub fn new_contact_path(number: &str) -> String {
    format!("/contacts/add/?phone={}", String::from(js_sys::encode_uri_component(number)))
}

/// A `div` with `class` and the page's language, appended to `document.body`.
pub(crate) fn body_root(host: &Host, class: &str) -> Result<HtmlElement, JsError> {
    let document = web_sys::window().and_then(|window| window.document()).ok_or_else(|| JsError::new("no document"))?;
    let body = document.body().ok_or_else(|| JsError::new("no document body"))?;
    let root: HtmlElement =
        document.create_element("div").map_err(|_| JsError::new("cannot create a widget root"))?.unchecked_into();
    root.set_class_name(class);
    root.set_attribute("lang", host.lang()).ok();
    body.append_child(&root).map_err(|_| JsError::new("cannot attach a widget root"))?;
    Ok(root)
}

/// Shows a popup for each call event script.js pushes (in `div.kvoip-popups` on `document.body`); when a
/// call ends and the account asks for call results, the result modal (in `div.kvoip-call-result`).
#[wasm_bindgen]
pub fn start_calls(host: JsValue) -> Result<CallsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let root = body_root(&host, "kvoip-popups")?;
    let result_root = body_root(&host, "kvoip-call-result")?;

    let board = ArcRwSignal::new(CallBoard::default());
    let results = ArcRwSignal::new(ResultQueue::default());
    // What the account's settings say every user's widget does (see `CallOptions`).
    let options = ArcRwSignal::new(None::<WidgetBehaviour>);
    let fresh = ArcRwSignal::new(false);
    let mounted = {
        let (board, results, options, fresh, i18n) =
            (board.clone(), results.clone(), options.clone(), fresh.clone(), host.i18n());
        let host = Rc::clone(&host);
        mount_to(root.clone(), move || {
            let host = StoredValue::new_local(Rc::clone(&host));
            view! { <CallPopups board results options fresh host i18n /> }.into_any()
        })
    };
    let result_mounted = {
        let (results, host) = (results.clone(), Rc::clone(&host));
        mount_to(result_root.clone(), move || view! { <ResultModal results host /> }.into_any())
    };
    let options = CallOptions { signal: options, fresh };
    options.refresh(&host);
    Ok(CallsHandle {
        host,
        board,
        results,
        options,
        mounted: vec![mounted, result_mounted],
        roots: vec![root, result_root],
        dialer: None,
    })
}

/// The account's call options as this page last read them: when the widget starts, and again with each
/// new call (one small request), so an admin's change applies to the next call on every open page.
struct CallOptions {
    signal: ArcRwSignal<Option<WidgetBehaviour>>,
    /// False while they are being read again: nothing rings on options that may just have changed.
    fresh: ArcRwSignal<bool>,
}

impl CallOptions {
    /// Reads them again, in the background.
    fn refresh(&self, host: &Rc<Host>) {
        let (host, signal, fresh) = (Rc::clone(host), self.signal.clone(), self.fresh.clone());
        fresh.set(false);
        wasm_bindgen_futures::spawn_local(async move {
            if let Ok((200, body)) = host.request("GET", paths::CALL_OPTIONS, None::<&()>).await {
                signal.set(serde_json::from_value::<WidgetBehaviour>(body).ok());
            }
            fresh.set(true);
        });
    }
}

/// One call event: onto the board, then what it sets off (the result form at the first end, the card's
/// closing after it, the contact's card opened on answer when the account asks for it).
fn on_call(
    host: &Rc<Host>,
    board: &ArcRwSignal<CallBoard>,
    results: &ArcRwSignal<ResultQueue>,
    options: &CallOptions,
    call: IncomingCall,
) {
    let call_id = call.call_id.clone();
    let change = board.try_update(|board| board.apply(call)).unwrap_or(Change::None);
    if change == Change::None {
        return;
    }
    if change == Change::Added {
        options.refresh(host);
    }
    let Some(shown) = board.with_untracked(|board| board.get(&call_id).cloned()) else { return };
    if result::is_end(shown.status) && results.try_update(|results| results.first_end(&call_id)) == Some(true) {
        wasm_bindgen_futures::spawn_local(result::offer(Rc::clone(host), results.clone(), shown));
        let (board, results, call_id) = (board.clone(), results.clone(), call_id.clone());
        set_timeout(
            move || {
                let asked = results.with_untracked(|results| results.decision(&call_id)) == Some(Decision::Asked);
                if !asked {
                    board.update(|board| board.dismiss(&call_id));
                }
            },
            std::time::Duration::from_millis(CLOSE_AFTER_END_MS as u64),
        );
    }
    let auto_open =
        options.signal.with_untracked(|options| options.as_ref().is_some_and(|options| options.auto_open_card));
    if auto_open && let Some(path) = board.try_update(|board| board.card_to_open(&call_id)).flatten() {
        host.navigate(&path);
    }
}

/// The running call popups, kept by script.js until `destroy`.
#[wasm_bindgen]
pub struct CallsHandle {
    host: Rc<Host>,
    board: ArcRwSignal<CallBoard>,
    results: ArcRwSignal<ResultQueue>,
    options: CallOptions,
    /// Dropping them unmounts the popups and the result modal, so they live here until `stop`.
    mounted: Vec<Mounted>,
    roots: Vec<HtmlElement>,
    /// The call-list panel, from the first `open_dialer` on.
    dialer: Option<Rc<Dialer>>,
}

#[wasm_bindgen]
impl CallsHandle {
    /// One call event as the server sent it (the JSON of an `IncomingCall`: a push event, or a call in
    /// progress when the page started). False when it is not one (nothing changes).
    pub fn push(&self, event: &str) -> bool {
        if self.mounted.is_empty() {
            return false;
        }
        match serde_json::from_str::<IncomingCall>(event) {
            Ok(call) => {
                if let Some(dialer) = &self.dialer {
                    dialer.on_call(&call);
                }
                on_call(&self.host, &self.board, &self.results, &self.options, call);
                true
            }
            Err(error) => {
                web_sys::console::warn_1(&format!("kvoip: unreadable call event: {error}").into());
                false
            }
        }
    }

    /// Shows the call-list panel (`div.kvoip-dialer`), mounted once: with `view` (the JSON of a
    /// `CallListView`, as `POST /widget/v1/call-lists` answered it) when given, else with the user's
    /// current list as the server has it. An open panel reads its list again. False when the popups were
    /// stopped or the panel cannot be shown.
    pub fn open_dialer(&mut self, view: Option<String>) -> bool {
        if self.mounted.is_empty() {
            return false;
        }
        let view = view.and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok());
        let dialer = self.dialer.get_or_insert_with(|| Dialer::new(Rc::clone(&self.host), self.results.clone()));
        match dialer.open(view) {
            Ok(()) => true,
            Err(_) => {
                web_sys::console::warn_1(&"kvoip: cannot show the call list".into());
                false
            }
        }
    }

    /// Removes the popups and the call-list panel. Safe to call twice.
    pub fn stop(&mut self) {
        if let Some(dialer) = self.dialer.take() {
            dialer.stop();
        }
        self.mounted.clear();
        for root in self.roots.drain(..) {
            root.remove();
        }
    }
}

impl Drop for CallsHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stack of call cards, bottom-right of the page; rings while a call rings, when the account asks.
#[component]
pub fn CallPopups(
    /// The calls to show; the push stream writes to it, close buttons remove from it.
    board: ArcRwSignal<CallBoard>,
    /// The ended calls and whether their result was asked for.
    results: ArcRwSignal<ResultQueue>,
    /// The account's call options, once read.
    options: ArcRwSignal<Option<WidgetBehaviour>>,
    /// Whether the options were read since the last new call (false while they are read again).
    fresh: ArcRwSignal<bool>,
    /// Kommo's navigation and the ringing sound.
    host: StoredValue<Rc<Host>, LocalStorage>,
    /// Strings of the current language.
    i18n: I18n,
) -> impl IntoView {
    // With Kommo's own notification chosen, Kommo shows the call: no card and no ring here (the result
    // form still comes after the call when the account asks for it).
    let kommo_style = {
        let options = options.clone();
        Memo::new(move |_| options.with(|options| options.as_ref().is_some_and(|options| options.kommo_notification)))
    };
    let ringing = {
        let (board, options) = (board.clone(), options.clone());
        Memo::new(move |_| {
            options.with(|options| options.as_ref().is_some_and(|options| options.ringing_sound))
                && !kommo_style.get()
                && fresh.get()
                && board.with(CallBoard::ringing)
        })
    };
    Effect::new(move |_| {
        let on = ringing.get();
        host.with_value(|host| host.ring(on));
    });
    on_cleanup(move || {
        if let Some(host) = host.try_get_value() {
            host.ring(false);
        }
    });
    let ids = {
        let board = board.clone();
        move || if kommo_style.get() { Vec::new() } else { board.with(CallBoard::ids) }
    };
    view! {
        <For
            each=ids
            key=|call_id| call_id.clone()
            children=move |call_id| {
                view! { <CallCard call_id board=board.clone() results=results.clone() host i18n=i18n.clone() /> }
            }
        />
    }
}

/// One call's card; it re-reads its call from the board, so status changes and who is calling update it
/// in place.
#[component]
pub fn CallCard(
    /// Which call of the board this card shows.
    call_id: String,
    /// The calls on screen.
    board: ArcRwSignal<CallBoard>,
    /// Whether an ended call's result was asked for (the card's `data-call-result`).
    results: ArcRwSignal<ResultQueue>,
    /// Kommo's navigation.
    host: StoredValue<Rc<Host>, LocalStorage>,
    /// Strings of the current language.
    i18n: I18n,
) -> impl IntoView {
    let decision = {
        let call_id = call_id.clone();
        move || results.with(|results| results.decision(&call_id).map(|decision| decision.as_str()))
    };
    let pick = |pick: fn(&IncomingCall) -> String| {
        let (board, call_id) = (board.clone(), call_id.clone());
        Memo::new(move |_| board.with(|board| board.get(&call_id).map(pick).unwrap_or_default()))
    };
    let status = pick(|call| call.status.as_str().to_owned());
    let number = pick(|call| call.client_number().to_owned());
    let line = pick(|call| call.line_shown.clone().unwrap_or_else(|| call.line_number().to_owned()));
    let extension = pick(|call| call.extension.clone().unwrap_or_default());
    let outbound =
        pick(|call| if call.direction == Some(CallDirection::Outbound) { "outgoing" } else { "incoming" }.to_owned());
    let caller = {
        let (board, call_id) = (board.clone(), call_id.clone());
        Memo::new(move |_| board.with(|board| board.get(&call_id).and_then(|call| call.caller.clone())))
    };
    let known = move || caller.with(|caller| caller.as_ref().map_or("pending", |caller| caller.known.as_str()));
    let title = {
        let i18n = i18n.clone();
        move || i18n.t("popup", &outbound.get())
    };
    let title_label = title.clone();
    let status_text = {
        let i18n = i18n.clone();
        move || i18n.t("status", &status.get())
    };
    let close_label = i18n.t("popup", "close");
    let close = {
        let (board, call_id) = (board.clone(), call_id.clone());
        move || board.update(|board| board.dismiss(&call_id))
    };
    let on_key = {
        let close = close.clone();
        move |event: web_sys::KeyboardEvent| {
            if event.key() == "Escape" {
                close();
            }
        }
    };
    let (to_label, extension_label) = (i18n.t("popup", "to"), i18n.t("popup", "extension"));
    let who = {
        let i18n = i18n.clone();
        move || {
            let shown_number = number.get();
            match caller.get() {
                None => view! {
                    <div class="kvoip-popup__name">{shown_number.clone()}</div>
                    <div class="kvoip-popup__lookup">{i18n.t("popup", "looking_up")}</div>
                }
                .into_any(),
                Some(caller) => caller_view(caller, host, &i18n).into_any(),
            }
        }
    };
    let action = {
        let i18n = i18n.clone();
        move || caller.get().and_then(|caller| caller_action(&caller, &number.get(), host, &i18n))
    };

    view! {
        <section
            class=move || format!("kvoip-popup kvoip-popup--{}", status.get())
            role="dialog"
            aria-live="polite"
            aria-label=title_label
            data-call-id=call_id.clone()
            data-number=move || number.get()
            data-known=known
            data-call-result=decision
            on:keydown=on_key
        >
            <div class="kvoip-popup__head">
                <span class="kvoip-popup__title">{title}</span>
                <span class=move || format!("kvoip-popup__status kvoip-popup__status--{}", status.get())>{status_text}</span>
                <button class="kvoip-popup__close" type="button" title=close_label.clone() aria-label=close_label on:click=move |_| close()>
                    "×"
                </button>
            </div>
            {who}
            <dl class="kvoip-popup__details">
                <div class="kvoip-popup__row">
                    <dt>{to_label}</dt>
                    <dd class="kvoip-popup__to">{move || line.get()}</dd>
                </div>
                {move || (!extension.get().is_empty()).then(|| view! {
                    <div class="kvoip-popup__row">
                        <dt>{extension_label.clone()}</dt>
                        <dd class="kvoip-popup__extension">{extension.get()}</dd>
                    </div>
                })}
            </dl>
            {action}
        </section>
    }
}

/// The card's button: open the contact (or the company), or create a contact with the number of an
/// unknown caller.
fn caller_action(
    caller: &Caller,
    raw_number: &str,
    host: StoredValue<Rc<Host>, LocalStorage>,
    i18n: &I18n,
) -> Option<impl IntoView + use<>> {
    let (label, path) = match (&caller.contact, &caller.company, caller.known) {
        (Some(contact), _, _) => (i18n.t("popup", "open_contact"), format!("/contacts/detail/{}", contact.id)),
        (None, Some(company), _) => (i18n.t("popup", "open_company"), format!("/companies/detail/{}", company.id)),
        (None, None, CallerKnown::Unknown) => (i18n.t("popup", "create_contact"), new_contact_path(raw_number)),
        _ => return None,
    };
    Some(view! {
        <div class="kvoip-popup__actions">
            <button type="button" class="kvoip-popup__action" on:click=move |_| {
                host.with_value(|host| host.navigate(&path));
            }>{label}</button>
        </div>
    })
}

/// Who is calling: the name (contact, else company), the number, the company, the open leads (each opens
/// its card), the responsible user, the earlier calls.
fn caller_view(caller: Caller, host: StoredValue<Rc<Host>, LocalStorage>, i18n: &I18n) -> impl IntoView {
    let open = move |path: String| {
        move |_| {
            host.with_value(|host| host.navigate(&path));
        }
    };
    let name = caller.contact.as_ref().or(caller.company.as_ref()).map(|entity| entity.name.clone());
    let company = caller.contact.as_ref().and(caller.company.as_ref()).map(|company| company.name.clone());
    let headline = name.clone().unwrap_or_else(|| caller.number.clone());
    let note = match caller.known {
        CallerKnown::Unknown => Some(i18n.t("popup", "unknown")),
        CallerKnown::Unavailable => Some(i18n.t("popup", "unavailable")),
        CallerKnown::Known => None,
    };
    let lang = host.with_value(|host| host.lang().to_owned());
    let leads = caller.leads.iter().map(|lead| {
        let stage = lead.stage.clone().map(|stage| match &lead.pipeline {
            Some(pipeline) => format!("{pipeline} · {stage}"),
            None => stage,
        });
        let price = lead.price.map(|price| String::from(js_sys::Number::from(price as f64).to_locale_string(&lang)));
        view! {
            <li class="kvoip-popup__lead">
                <button type="button" class="kvoip-popup__link kvoip-popup__lead-name" on:click=open(format!("/leads/detail/{}", lead.id))>
                    {lead.name.clone()}
                </button>
                {stage.map(|stage| view! { <span class="kvoip-popup__stage">{stage}</span> })}
                {price.map(|price| view! { <span class="kvoip-popup__price">{price}</span> })}
            </li>
        }
    }).collect_view();
    let responsible = caller.responsible.clone().map(|responsible| {
        view! {
            <div class="kvoip-popup__row">
                <dt>{i18n.t("popup", "responsible")}</dt>
                <dd class="kvoip-popup__responsible">{responsible}</dd>
            </div>
        }
    });
    let history = (caller.earlier_calls > 0).then(|| {
        view! {
            <div class="kvoip-popup__row">
                <dt>{i18n.t("popup", "earlier_calls")}</dt>
                <dd class="kvoip-popup__earlier">{caller.earlier_calls}</dd>
            </div>
        }
    });
    view! {
        <div class="kvoip-popup__name">{headline}</div>
        {name.is_some().then(|| view! { <div class="kvoip-popup__number">{caller.number.clone()}</div> })}
        {company.map(|company| view! { <div class="kvoip-popup__company">{company}</div> })}
        {note.map(|note| view! { <div class="kvoip-popup__note">{note}</div> })}
        {(!caller.leads.is_empty()).then(|| view! { <ul class="kvoip-popup__leads">{leads}</ul> })}
        <dl class="kvoip-popup__details kvoip-popup__details--caller">{responsible}{history}</dl>

    }
}

/// A call as the push channel delivers it, for the widget's unit tests.
#[cfg(test)]
pub(crate) fn test_call(id: &str, status: shared::CallStatus) -> IncomingCall {
    IncomingCall {
        event_id: None,
        call_id: id.into(),
        from: "+5511999990000".into(),
        to: "+5511333330000".into(),
        status,
        extension: None,
        direction: None,
        caller: None,
        line_shown: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::CallStatus;
    use shared::api::{EntityLink, LeadSummary};

    /// The `n`-th stored event of call `id`.
    fn call(id: &str, status: CallStatus, n: i64) -> IncomingCall {
        IncomingCall { event_id: Some(n), ..test_call(id, status) }
    }

    fn caller(leads: usize) -> Caller {
        Caller {
            number: "(11) 99999-0000".into(),
            known: CallerKnown::Known,
            contact: Some(EntityLink { id: 7, name: "Maria Silva".into() }),
            company: None,
            leads: (0..leads)
                .map(|n| LeadSummary {
                    id: 40 + n as i64,
                    name: format!("Deal {n}"),
                    pipeline: None,
                    stage: None,
                    price: None,
                })
                .collect(),
            responsible: None,
            earlier_calls: 0,
        }
    }

    #[test]
    fn a_status_change_updates_the_call_in_place() {
        let mut board = CallBoard::default();
        assert_eq!(board.apply(call("a", CallStatus::Ringing, 1)), Change::Added);
        board.apply(call("b", CallStatus::Ringing, 2));
        assert_eq!(
            board.apply(call("a", CallStatus::Answered, 3)),
            Change::Status(CallStatus::Ringing, CallStatus::Answered)
        );
        assert_eq!(board.ids(), ["a", "b"]);
        assert_eq!(board.get("a").unwrap().status, CallStatus::Answered);
    }

    #[test]
    fn an_older_or_repeated_event_changes_nothing() {
        let mut board = CallBoard::default();
        board.apply(call("a", CallStatus::Answered, 5));
        // A replayed ringing (stored before the answer) and the same answer again.
        assert_eq!(board.apply(call("a", CallStatus::Ringing, 4)), Change::None);
        assert_eq!(board.apply(call("a", CallStatus::Answered, 5)), Change::None);
        assert_eq!(board.get("a").unwrap().status, CallStatus::Answered);
    }

    #[test]
    fn who_is_calling_arrives_apart_and_stays_through_later_events() {
        let mut board = CallBoard::default();
        board.apply(call("a", CallStatus::Ringing, 1));
        let named = IncomingCall {
            event_id: None,
            caller: Some(caller(0)),
            line_shown: Some("(11) 3333-0000".into()),
            ..call("a", CallStatus::Ringing, 0)
        };
        assert_eq!(board.apply(named.clone()), Change::Details);
        assert_eq!(board.apply(named), Change::None, "the same description again");
        board.apply(call("a", CallStatus::Answered, 2));
        let shown = board.get("a").unwrap();
        assert_eq!(shown.status, CallStatus::Answered);
        assert_eq!(shown.caller.as_ref().and_then(|caller| caller.contact.as_ref()).unwrap().name, "Maria Silva");
        assert_eq!(shown.line_shown.as_deref(), Some("(11) 3333-0000"), "the line as formatted, kept");
        // An update that only names the caller never turns an answered call back to ringing.
        let late = IncomingCall { event_id: None, caller: Some(caller(1)), ..call("a", CallStatus::Ringing, 0) };
        board.apply(late);
        assert_eq!(board.get("a").unwrap().status, CallStatus::Answered);
    }

    #[test]
    fn a_closed_card_does_not_come_back_with_a_later_event() {
        let mut board = CallBoard::default();
        board.apply(call("a", CallStatus::Ringing, 1));
        board.apply(call("b", CallStatus::Missed, 2));
        board.dismiss("a");
        assert_eq!(board.ids(), ["b"]);
        assert_eq!(board.apply(call("a", CallStatus::Ended, 3)), Change::None);
        assert_eq!(board.ids(), ["b"]);
    }

    #[test]
    fn the_oldest_card_makes_room_for_a_new_call() {
        let mut board = CallBoard::default();
        for (n, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            board.apply(call(id, CallStatus::Ringing, n as i64));
        }
        assert_eq!(board.ids(), ["b", "c", "d", "e"]);
    }

    #[test]
    fn only_an_inbound_call_not_yet_answered_rings() {
        let mut board = CallBoard::default();
        board.apply(IncomingCall { direction: Some(CallDirection::Outbound), ..call("out", CallStatus::Ringing, 1) });
        assert!(!board.ringing());
        board.apply(call("in", CallStatus::Ringing, 2));
        assert!(board.ringing());
        board.apply(call("in", CallStatus::Answered, 3));
        assert!(!board.ringing());
    }

    #[test]
    fn the_card_opens_once_on_answer_the_only_lead_first() {
        let mut board = CallBoard::default();
        board.apply(IncomingCall { caller: Some(caller(1)), ..call("a", CallStatus::Ringing, 1) });
        assert_eq!(board.card_to_open("a"), None, "not while ringing");
        board.apply(call("a", CallStatus::Answered, 2));
        assert_eq!(board.card_to_open("a").as_deref(), Some("/leads/detail/40"));
        assert_eq!(board.card_to_open("a"), None, "once");
        assert_eq!(card_path(&caller(2)).as_deref(), Some("/contacts/detail/7"), "two leads: the contact");
        let unknown = Caller { known: CallerKnown::Unknown, contact: None, ..caller(0) };
        assert_eq!(card_path(&unknown), None);
    }
}
