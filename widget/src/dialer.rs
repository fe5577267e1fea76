//! The call-list dialer: a panel (`div.kvoip-dialer`, bottom right, beside the call popups) that shows the
//! user's call list (`GET /widget/v1/call-lists/current`) and drives it.
//!
//! The server never dials by itself: while a list runs, this panel asks it to dial the next entry when the
//! list says it is due (`next_dial_at_ms`), and the server decides by the same rules, refusing with 409
//! `not_due` before time and `stale` when another tab dialled first (the command carries the `next` it saw).
//! The panel reads the list again when what it waits for may have happened: the current entry's call ended
//! (a call event through [`crate::calls::CallsHandle::push`]), a call-result form closed, a refused command,
//! and every [`POLL_MS`] while the list is open, in case another tab acted or an event was missed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;
use shared::CallStatus;
use shared::api::{
    CallListAction, CallListCommand, CallListEntryState, CallListEntryView, CallListState, CallListView, CallListWait,
    ErrorBody, IncomingCall, dial_errors, paths,
};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsError, UnwrapThrowExt};
use web_sys::{Element, HtmlElement};

use crate::host::Host;
use crate::i18n::I18n;
use crate::result::{self, ResultQueue};

/// How often an open list is read again (another tab may have acted; an event may have been missed).
pub const POLL_MS: u64 = 5_000;
/// After the current call ended, how soon the list is read again while the server still says "calling"...
const RECHECK_MS: u64 = 1_000;
/// ...and how many times, before the slow poll takes over.
const RECHECKS: u32 = 5;
/// After a `not_due` or a failed dial, the next dial waits at least this long: the browser's clock may run
/// ahead of the server's, and a refused dial must not be repeated at once.
pub const RETRY_MS: i64 = 1_000;
/// A dial due in the future is asked for this long after its time (the server refuses it a moment early).
pub const DIAL_MARGIN_MS: i64 = 200;
/// The call events remembered (the current entry's call may report before the dial's answer names it).
const SEEN_CALLS: usize = 16;

/// The codes of `shared::api::dial_errors` the manager is told about, each an i18n key of `dialer`.
const TOLD: [&str; 8] = [
    dial_errors::NOT_REPORTED,
    dial_errors::NO_EXTENSION,
    dial_errors::PROVIDER_REFUSED,
    dial_errors::PROVIDER_UNREACHABLE,
    dial_errors::INTEGRATION_OFF,
    dial_errors::INVALID_NUMBER,
    dial_errors::ALREADY_DIALING,
    dial_errors::CALL_LISTS_OFF,
];

/// The i18n key (section `dialer`) of an error code the manager is told about, if it is one.
pub fn told(code: &str) -> Option<&'static str> {
    TOLD.into_iter().find(|told| *told == code)
}

/// The i18n key (section `dialer`) of a refused request: its code's sentence, else the network's, the
/// session's, or a generic one.
pub fn problem_key(status: u16, body: &Value) -> &'static str {
    let code = serde_json::from_value::<ErrorBody>(body.clone()).map(|body| body.error.code).unwrap_or_default();
    told(&code).unwrap_or(match status {
        0 => "network",
        401 | 403 => "unauthorized",
        _ => "generic",
    })
}

/// What a request about the list came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The list as it stands (none: the user has no list).
    List(Option<CallListView>),
    /// The list moved meanwhile, or it is not its time yet (`not_due`): read it again.
    ReadAgain { not_due: bool },
    /// Refused or failed: the i18n key of what to say.
    Refused(&'static str),
}

impl Answer {
    /// `GET /widget/v1/call-lists/current` (a `CurrentCallList`).
    pub fn of_read(status: u16, mut body: Value) -> Answer {
        match (status, body.get_mut("list").map(Value::take)) {
            (200, Some(Value::Null)) => Answer::List(None),
            (200, Some(list)) => Answer::of_list(list),
            _ => Answer::Refused(problem_key(status, &body)),
        }
    }

    /// A `CallListView` (read by the one deserializer the module keeps for it: a `Value`'s).
    pub fn of_list(view: Value) -> Answer {
        serde_json::from_value::<CallListView>(view).map_or(Answer::Refused("generic"), |view| Answer::List(Some(view)))
    }

    /// `POST /widget/v1/call-lists/{id}/command`.
    pub fn of_command(status: u16, body: Value) -> Answer {
        let code = serde_json::from_value::<ErrorBody>(body.clone()).map(|body| body.error.code).unwrap_or_default();
        match (status, code.as_str()) {
            (200, _) => Answer::of_list(body),
            (409, dial_errors::NOT_DUE) => Answer::ReadAgain { not_due: true },
            // Another tab skipped, dialled, paused or stopped; a list replaced by a newer one is not found.
            (409, dial_errors::STALE | dial_errors::NOT_RUNNING) | (404, _) => Answer::ReadAgain { not_due: false },
            _ => Answer::Refused(problem_key(status, &body)),
        }
    }
}

/// The buttons a list offers, in order: start, pause or resume; skip while an entry is left; stop.
pub fn actions_of(view: &CallListView) -> Vec<CallListAction> {
    let first = match view.state {
        CallListState::Ready => CallListAction::Start,
        CallListState::Running => CallListAction::Pause,
        CallListState::Paused => CallListAction::Resume,
        CallListState::Finished | CallListState::Stopped => return Vec::new(),
    };
    let mut actions = vec![first];
    if view.entries.get(view.next as usize).is_some() {
        actions.push(CallListAction::Skip);
    }
    actions.push(CallListAction::Stop);
    actions
}

/// The wire name of an action, also its i18n key and its button's class.
pub fn action_name(action: CallListAction) -> &'static str {
    match action {
        CallListAction::Start => "start",
        CallListAction::Pause => "pause",
        CallListAction::Resume => "resume",
        CallListAction::Skip => "skip",
        CallListAction::Stop => "stop",
        CallListAction::Dial => "dial",
    }
}

/// How far a list is: entries done (called, skipped, without a number), left to call, in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub left: usize,
    pub total: usize,
}

impl Progress {
    pub fn of(entries: &[CallListEntryView]) -> Progress {
        let count = |keep: fn(&CallListEntryView) -> bool| entries.iter().filter(|entry| keep(entry)).count();
        Progress {
            done: count(|entry| entry.state.is_settled()),
            left: count(|entry| entry.state == CallListEntryState::Pending),
            total: entries.len(),
        }
    }
}

/// A duration as a clock reads it: `0:42`, `12:05`, `1:02:03`.
pub fn clock(seconds: u64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 { format!("{hours}:{minutes:02}:{seconds:02}") } else { format!("{minutes}:{seconds:02}") }
}

/// How long from `now_ms` until the next dial is asked for: a running list with an entry left and its time
/// known, never before `floor_ms`.
pub fn dial_delay(view: &CallListView, now_ms: i64, floor_ms: i64) -> Option<i64> {
    if view.state != CallListState::Running || view.entries.get(view.next as usize).is_none() {
        return None;
    }
    let at = view.next_dial_at_ms?.max(floor_ms);
    Some(if at > now_ms { at - now_ms + DIAL_MARGIN_MS } else { 0 })
}

/// The entry dialled last, while its call is in progress, by its call id.
pub fn calling_id(view: &CallListView) -> Option<&str> {
    let entry = view.entries.get(view.current? as usize)?;
    (entry.state == CallListEntryState::Calling).then_some(entry.call_id.as_deref()).flatten()
}

/// A call event as the dialer remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenCall {
    call_id: String,
    /// Unix ms when this page saw it answered.
    answered_at: Option<i64>,
    ended: bool,
}

/// What the dialer knows and shows.
#[derive(Default)]
struct State {
    open: bool,
    /// False until the first answer came.
    loaded: bool,
    list: Option<CallListView>,
    /// A command is under way: the buttons wait, and reads wait for its answer (which is the list).
    busy: bool,
    /// The i18n key (`dialer`) of the last refusal, until the next command or close.
    notice: Option<&'static str>,
    /// The notice changed since the panel was drawn.
    redraw: bool,
    /// Requests sent, and the latest whose answer is shown: an answer older than the one shown is dropped.
    sent: u64,
    shown: u64,
    /// No dial is asked for before this time (unix ms).
    floor: i64,
    /// The call whose end was seen while the server still said "calling", and the re-reads made since.
    recheck: Option<(String, u32)>,
    calls: VecDeque<SeenCall>,
}

#[derive(Default)]
struct Timers {
    dial: Option<TimeoutHandle>,
    recheck: Option<TimeoutHandle>,
    poll: Option<IntervalHandle>,
    tick: Option<IntervalHandle>,
}

impl Timers {
    fn clear(&mut self) {
        self.dial.take().iter().for_each(TimeoutHandle::clear);
        self.recheck.take().iter().for_each(TimeoutHandle::clear);
        self.poll.take().iter().for_each(IntervalHandle::clear);
        self.tick.take().iter().for_each(IntervalHandle::clear);
    }
}

/// A line of the panel that follows the clock.
enum Live {
    /// The current entry's call (by its id): calling, in conversation for so long, over.
    Call(Option<String>),
    /// The next dial, at this time (unix ms).
    Countdown(i64),
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// The panel on the page: its root, the one click listener of its buttons (by their `data-action`), and
/// what a redraw leaves to update in place (the clock's lines, the buttons a command disables).
struct Panel {
    root: HtmlElement,
    _clicks: Closure<dyn FnMut(web_sys::Event)>,
    live: Vec<(Element, Live)>,
    buttons: Vec<Element>,
    /// Owns the effect that notices a call-result form closing.
    _owner: Owner,
}

/// The dialer of one page, kept by [`crate::calls::CallsHandle`]. Timers, futures and the listener hold it
/// weakly, so dropping the handle ends them all.
///
/// The panel is plain DOM, drawn again whole when what it shows changes (a few times a minute), its clock
/// lines updated in place every second: the same panel as Leptos views cost the calls module several times
/// the size.
pub struct Dialer {
    host: Rc<Host>,
    i18n: I18n,
    results: ArcRwSignal<ResultQueue>,
    state: RefCell<State>,
    timers: RefCell<Timers>,
    panel: RefCell<Option<Panel>>,
}

impl Dialer {
    pub fn new(host: Rc<Host>, results: ArcRwSignal<ResultQueue>) -> Rc<Dialer> {
        let i18n = host.i18n();
        Rc::new(Dialer {
            host,
            i18n,
            results,
            state: RefCell::new(State::default()),
            timers: RefCell::new(Timers::default()),
            panel: RefCell::new(None),
        })
    }

    /// Shows the panel (made the first time) with `view` (a `CallListView`) when given, else reads the
    /// list; an open panel reads its list again.
    pub fn open(self: &Rc<Self>, view: Option<Value>) -> Result<(), JsError> {
        if self.panel.borrow().is_none() {
            let root = crate::calls::body_root(&self.host, "kvoip-dialer")?;
            let dialer = Rc::downgrade(self);
            let clicks = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                let action = event
                    .target()
                    .and_then(|target| target.dyn_into::<Element>().ok())
                    .and_then(|target| target.closest("[data-action]").ok().flatten())
                    .and_then(|button| button.get_attribute("data-action"));
                let (Some(dialer), Some(action)) = (dialer.upgrade(), action) else { return };
                match parse_action(&action) {
                    Some(action) => dialer.command(action),
                    None => dialer.close(),
                }
            });
            root.add_event_listener_with_callback("click", clicks.as_ref().unchecked_ref())
                .map_err(|_| JsError::new("cannot listen to the call list's buttons"))?;
            // A call-result form closing (sent or skipped) may let the list go on.
            let owner = Owner::new();
            let (results, dialer) = (self.results.clone(), Rc::downgrade(self));
            owner.with(|| {
                Effect::new(move |before: Option<usize>| {
                    let waiting = results.with(ResultQueue::waiting);
                    if before.is_some_and(|before| waiting < before)
                        && let Some(dialer) = dialer.upgrade()
                        && dialer.shows(|list| list.is_some_and(|list| list.state.is_open()))
                    {
                        dialer.read();
                    }
                    waiting
                });
            });
            *self.panel.borrow_mut() =
                Some(Panel { root, _clicks: clicks, live: Vec::new(), buttons: Vec::new(), _owner: owner });
        }
        self.state.borrow_mut().open = true;
        let mut timers = self.timers.borrow_mut();
        if timers.tick.is_none() {
            let dialer = Rc::downgrade(self);
            let tick = move || {
                if let Some(dialer) = dialer.upgrade() {
                    dialer.tick();
                }
            };
            timers.tick = set_interval_with_handle(tick, Duration::from_secs(1)).ok();
        }
        if timers.poll.is_none() {
            let dialer = Rc::downgrade(self);
            let poll = move || {
                if let Some(dialer) = dialer.upgrade()
                    && dialer.shows(|list| list.is_none_or(|list| list.state.is_open()))
                {
                    dialer.read();
                }
            };
            timers.poll = set_interval_with_handle(poll, Duration::from_millis(POLL_MS)).ok();
        }
        drop(timers);
        self.draw();
        match view {
            Some(view) => {
                let seq = self.next_seq();
                self.answer(seq, Answer::of_list(view));
            }
            None => self.read(),
        }
        Ok(())
    }

    /// Hides the panel (an ended list's report, closed) and stops its timers; the list is not touched.
    pub fn close(&self) {
        self.timers.borrow_mut().clear();
        let mut state = self.state.borrow_mut();
        // Answers to what was sent before are not shown (`shown`); the calls seen stay known.
        let (sent, calls) = (state.sent, std::mem::take(&mut state.calls));
        *state = State { sent, shown: sent, calls, ..State::default() };
        drop(state);
        self.draw();
    }

    /// Removes the panel for good. Safe to call twice.
    pub fn stop(&self) {
        self.timers.borrow_mut().clear();
        if let Some(panel) = self.panel.borrow_mut().take() {
            panel.root.remove();
        }
    }

    /// One call event: remembered; the end of the current entry's call reads the list again.
    pub fn on_call(self: &Rc<Self>, call: &IncomingCall) {
        let mut state = self.state.borrow_mut();
        if !state.open {
            return;
        }
        let ended = result::is_end(call.status);
        let calls = &mut state.calls;
        let seen = match calls.iter().position(|seen| seen.call_id == call.call_id) {
            Some(at) => &mut calls[at],
            None => {
                if calls.len() == SEEN_CALLS {
                    calls.pop_front();
                }
                calls.push_back(SeenCall { call_id: call.call_id.clone(), answered_at: None, ended: false });
                calls.back_mut().expect("just pushed")
            }
        };
        if call.status == CallStatus::Answered && seen.answered_at.is_none() {
            seen.answered_at = Some(now_ms());
        }
        seen.ended |= ended;
        let current = state.list.as_ref().and_then(calling_id) == Some(call.call_id.as_str());
        drop(state);
        self.tick();
        if ended && current {
            self.read();
        }
    }

    /// Reads what the list shown is.
    fn shows(&self, read: impl FnOnce(Option<&CallListView>) -> bool) -> bool {
        read(self.state.borrow().list.as_ref())
    }

    fn next_seq(&self) -> u64 {
        let mut state = self.state.borrow_mut();
        state.sent += 1;
        state.sent
    }

    /// Reads the list (not while a command is under way: its answer is the list).
    fn read(self: &Rc<Self>) {
        let state = self.state.borrow();
        if state.open && !state.busy {
            drop(state);
            self.send(None);
        }
    }

    /// Sends a command about the list as shown (`next` as the manager saw it).
    fn command(self: &Rc<Self>, action: CallListAction) {
        let mut state = self.state.borrow_mut();
        let Some((id, next)) = state.list.as_ref().map(|list| (list.id, list.next)) else { return };
        if !state.open || state.busy {
            return;
        }
        state.busy = true;
        if action != CallListAction::Dial && state.notice.take().is_some() {
            state.redraw = true;
        }
        drop(state);
        self.enable(false);
        self.send(Some((id, CallListCommand { action, next })));
    }

    /// Reads the list (`None`) or sends a command about list `id`; one request path for both.
    fn send(self: &Rc<Self>, command: Option<(i64, CallListCommand)>) {
        let (seq, host, dialer) = (self.next_seq(), Rc::clone(&self.host), Rc::downgrade(self));
        wasm_bindgen_futures::spawn_local(async move {
            let (method, path, body) = match &command {
                Some((id, command)) => {
                    ("POST", paths::CALL_LIST_COMMAND.replace("{id}", &id.to_string()), Some(command))
                }
                None => ("GET", paths::CURRENT_CALL_LIST.to_owned(), None),
            };
            let (status, body) = host.request(method, &path, body).await.unwrap_or((0, Value::Null));
            let Some(dialer) = dialer.upgrade() else { return };
            let Some((_, CallListCommand { action, .. })) = command else {
                let answer = Answer::of_read(status, body);
                // A failure to read is told until a read succeeds; a command's refusal until the next command.
                let mut state = dialer.state.borrow_mut();
                if matches!(answer, Answer::List(_)) && state.notice == Some("network") {
                    state.notice = None;
                    state.redraw = true;
                }
                drop(state);
                return dialer.answer(seq, answer);
            };
            let answer = Answer::of_command(status, body);
            let mut state = dialer.state.borrow_mut();
            state.busy = false;
            match answer {
                Answer::List(_) if state.notice.is_some() => (state.notice, state.redraw) = (None, true),
                // Not its time yet (the clocks differ a little): a moment later.
                Answer::ReadAgain { not_due: true } if action == CallListAction::Dial => {
                    state.floor = now_ms() + RETRY_MS
                }
                // The dial failed to be asked for (the network, a refusal): again at the pace of the poll.
                Answer::Refused(_) if action == CallListAction::Dial => state.floor = now_ms() + POLL_MS as i64,
                _ => {}
            }
            drop(state);
            dialer.enable(true);
            dialer.answer(seq, answer);
        });
    }

    fn answer(self: &Rc<Self>, seq: u64, answer: Answer) {
        let mut state = self.state.borrow_mut();
        match answer {
            Answer::List(view) => {
                if seq < state.shown || !state.open {
                    return;
                }
                state.shown = seq;
                let changed = !state.loaded || state.redraw || state.list != view;
                state.loaded = true;
                state.list = view;
                drop(state);
                if changed {
                    self.draw();
                }
                self.arm();
            }
            Answer::ReadAgain { .. } => {
                drop(state);
                self.read();
            }
            Answer::Refused(key) => {
                state.notice = Some(key);
                drop(state);
                self.draw();
                // A dial that could not be asked for is asked again after the floor, from the list shown.
                self.arm();
            }
        }
    }

    /// Sets the timers the shown list calls for: the next dial at its time; a re-read soon after the current
    /// call ended while the server still said it was calling.
    fn arm(self: &Rc<Self>) {
        let mut timers = self.timers.borrow_mut();
        timers.dial.take().iter().for_each(TimeoutHandle::clear);
        let mut state = self.state.borrow_mut();
        let Some(list) = state.list.as_ref() else { return };
        if let Some(delay) = dial_delay(list, now_ms(), state.floor) {
            let dialer = Rc::downgrade(self);
            let dial = move || {
                if let Some(dialer) = dialer.upgrade() {
                    dialer.command(CallListAction::Dial);
                }
            };
            timers.dial = set_timeout_with_handle(dial, Duration::from_millis(delay as u64)).ok();
        }
        let Some(call_id) = calling_id(list).map(str::to_owned) else { return };
        if !state.calls.iter().any(|seen| seen.ended && seen.call_id == call_id) {
            return;
        }
        let made = state.recheck.as_ref().filter(|(id, _)| *id == call_id).map_or(0, |(_, made)| *made);
        if made >= RECHECKS {
            return;
        }
        state.recheck = Some((call_id, made + 1));
        timers.recheck.take().iter().for_each(TimeoutHandle::clear);
        let dialer = Rc::downgrade(self);
        let again = move || {
            if let Some(dialer) = dialer.upgrade() {
                dialer.read();
            }
        };
        timers.recheck = set_timeout_with_handle(again, Duration::from_millis(RECHECK_MS)).ok();
    }

    /// Turns the buttons on or off while a command is under way.
    fn enable(&self, on: bool) {
        for button in self.panel.borrow().iter().flat_map(|panel| &panel.buttons) {
            let _ = if on { button.remove_attribute("disabled") } else { button.set_attribute("disabled", "") };
        }
    }

    /// Updates the lines that follow the clock.
    fn tick(&self) {
        let (panel, state, now) = (self.panel.borrow(), self.state.borrow(), now_ms());
        for (line, live) in panel.iter().flat_map(|panel| &panel.live) {
            line.set_text_content(Some(&self.live_text(live, &state, now)));
        }
    }

    fn live_text(&self, live: &Live, state: &State, now: i64) -> String {
        let i18n = &self.i18n;
        match live {
            Live::Countdown(at) => match (at - now + 999).div_euclid(1000) {
                seconds @ 1.. => say(i18n, "wait_interval", &[("#SECONDS#", seconds.to_string())]),
                _ => i18n.t("dialer", "dialing"),
            },
            Live::Call(call_id) => {
                let seen = state.calls.iter().find(|seen| Some(&seen.call_id) == call_id.as_ref());
                match seen.map(|seen| (seen.ended, seen.answered_at)) {
                    // Over; the server has yet to say how.
                    Some((true, _)) => i18n.t("status", "ended"),
                    Some((false, Some(at))) => {
                        say(i18n, "entry_talking", &[("#TIME#", clock(((now - at).max(0) / 1000) as u64))])
                    }
                    _ => i18n.t("dialer", "entry_calling"),
                }
            }
        }
    }

    /// Draws the panel again from the state: loading, no list, an open list with its buttons, or an ended
    /// list's report.
    fn draw(&self) {
        let mut panel = self.panel.borrow_mut();
        let Some(panel) = panel.as_mut() else { return };
        panel.root.set_text_content(None);
        panel.live.clear();
        panel.buttons.clear();
        self.state.borrow_mut().redraw = false;
        let state = self.state.borrow();
        let Some(document) = panel.root.owner_document().filter(|_| state.open) else { return };
        let mut draw = Draw { document, i18n: &self.i18n, live: Vec::new(), buttons: Vec::new() };
        let section = draw.el(&panel.root, "section", "kvoip-dialer__panel", None);
        match state.list.as_ref().filter(|_| state.loaded) {
            None => {
                let (data, hint) = if state.loaded { ("none", "empty") } else { ("loading", "loading") };
                attr(&section, "data-state", data);
                draw.text(&section, "p", "kvoip-dialer__hint", hint);
                if state.loaded {
                    draw.notice(&section, state.notice);
                    let actions = draw.el(&section, "div", "kvoip-dialer__actions", None);
                    draw.button(&actions, "close", false, false);
                }
            }
            Some(list) => draw.list(&section, list, &state),
        }
        let now = now_ms();
        for (line, live) in &draw.live {
            line.set_text_content(Some(&self.live_text(live, &state, now)));
        }
        panel.live = draw.live;
        panel.buttons = draw.buttons;
    }
}

/// The action a button's `data-action` names (`close` is none: it is the panel's own).
fn parse_action(name: &str) -> Option<CallListAction> {
    use CallListAction::*;
    [Start, Pause, Resume, Skip, Stop].into_iter().find(|action| action_name(*action) == name)
}

fn attr(element: &Element, name: &str, value: &str) {
    let _ = element.set_attribute(name, value);
}

/// `dialer.<key>` with its placeholders filled.
fn say(i18n: &I18n, key: &str, fill: &[(&str, String)]) -> String {
    fill.iter().fold(i18n.t("dialer", key), |text, (mark, value)| text.replace(mark, value))
}

/// One drawing of the panel: its elements, and the lines and buttons it leaves to update.
struct Draw<'a> {
    document: web_sys::Document,
    i18n: &'a I18n,
    live: Vec<(Element, Live)>,
    buttons: Vec<Element>,
}

impl Draw<'_> {
    /// A `tag` of `class` (with `text`) appended to `parent`.
    fn el(&self, parent: &Element, tag: &str, class: &str, text: Option<&str>) -> Element {
        // Only fails for a tag name that is not one: ours are static.
        let element = self.document.create_element(tag).expect_throw("a static tag name");
        element.set_class_name(class);
        if text.is_some() {
            element.set_text_content(text);
        }
        let _ = parent.append_child(&element);
        element
    }

    /// An element with the text `dialer.<key>`.
    fn text(&self, parent: &Element, tag: &str, class: &str, key: &str) -> Element {
        self.el(parent, tag, class, Some(&self.i18n.t("dialer", key)))
    }

    fn notice(&self, parent: &Element, notice: Option<&str>) {
        if let Some(key) = notice {
            attr(&self.text(parent, "p", "kvoip-dialer__notice", key), "role", "alert");
        }
    }

    /// A button whose `data-action` the panel's click listener reads.
    fn button(&mut self, parent: &Element, name: &str, primary: bool, busy: bool) {
        let class = if primary { " kvoip-dialer__button--primary" } else { "" };
        let button = self.text(parent, "button", &format!("kvoip-dialer__button kvoip-dialer__{name}{class}"), name);
        attr(&button, "type", "button");
        attr(&button, "data-action", name);
        if busy {
            attr(&button, "disabled", "");
        }
        self.buttons.push(button);
    }

    /// A list: its head and progress; open, the current and next entries, why it waits, its buttons; ended,
    /// the report of every entry.
    fn list(&mut self, section: &Element, list: &CallListView, state: &State) {
        let i18n = self.i18n;
        let name = list.state.as_str();
        section.set_class_name(&format!("kvoip-dialer__panel kvoip-dialer--{name}"));
        attr(section, "data-state", name);
        attr(section, "data-list-id", &list.id.to_string());
        attr(section, "role", "region");
        attr(section, "aria-label", &i18n.t("dialer", if list.state.is_open() { "title" } else { "report" }));

        let head = self.el(section, "div", "kvoip-dialer__head", None);
        let title = self.text(&head, "span", "kvoip-dialer__title", "title");
        let _ = title.append_with_str_1(" · ");
        self.text(&title, "span", "kvoip-dialer__source", &format!("source_{}", list.source.as_str()));
        self.text(&head, "span", &format!("kvoip-dialer__state kvoip-dialer__state--{name}"), &format!("state_{name}"));
        let Progress { done, left, total } = Progress::of(&list.entries);
        let fill = [("#DONE#", done.to_string()), ("#TOTAL#", total.to_string()), ("#LEFT#", left.to_string())];
        let progress = self.el(section, "div", "kvoip-dialer__progress", Some(&say(i18n, "progress", &fill)));
        for (name, value) in [("data-done", done), ("data-left", left), ("data-total", total)] {
            attr(&progress, name, &value.to_string());
        }
        let bar = self.el(section, "div", "kvoip-dialer__bar", None);
        attr(&bar, "aria-hidden", "true");
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        attr(&self.el(&bar, "span", "kvoip-dialer__fill", None), "style", &format!("width: {percent}%"));

        if !list.state.is_open() {
            let report = self.el(section, "ol", "kvoip-dialer__report", None);
            for (position, entry) in list.entries.iter().enumerate() {
                self.entry(&report, "li", "kvoip-dialer__row", position, entry);
            }
            let actions = self.el(section, "div", "kvoip-dialer__actions", None);
            self.button(&actions, "close", false, false);
            return;
        }
        let current = list.current.and_then(|position| Some((position, list.entries.get(position as usize)?)));
        let next = list.entries.get(list.next as usize).map(|entry| (list.next, entry));
        for (which, class, shown) in
            [("current", "kvoip-dialer__current", current), ("next", "kvoip-dialer__next", next)]
        {
            let Some((position, entry)) = shown else { continue };
            let block = self.entry(section, "div", &format!("kvoip-dialer__entry {class}"), position as usize, entry);
            let label = self.text(&block, "span", "kvoip-dialer__label", which);
            let _ = block.prepend_with_node_1(&label);
        }
        // Why the list waits (`data-wait`): a sentence, or the countdown to the next dial.
        enum Wait {
            Says(&'static str),
            Until(i64),
        }
        let wait = match (list.state, list.waiting_for, list.next_dial_at_ms) {
            (CallListState::Ready, ..) => Some(("ready", Wait::Says("hint_ready"))),
            (CallListState::Paused, ..) => Some(("paused", Wait::Says("hint_paused"))),
            (_, Some(CallListWait::CallEnd), _) => Some(("call_end", Wait::Says("wait_call_end"))),
            (_, Some(CallListWait::CallResult), _) => Some(("call_result", Wait::Says("wait_call_result"))),
            (_, _, Some(at)) if next.is_some() => Some(("interval", Wait::Until(at))),
            _ => None,
        };
        if let Some((data, wait)) = wait {
            let line = self.el(section, "p", "kvoip-dialer__wait", None);
            attr(&line, "data-wait", data);
            match wait {
                Wait::Says(key) => {
                    line.set_text_content(Some(&i18n.t("dialer", key)));
                    attr(&line, "aria-live", "polite");
                }
                // Not announced: it changes every second.
                Wait::Until(at) => self.live.push((line, Live::Countdown(at))),
            }
        }
        self.notice(section, state.notice);
        let actions = self.el(section, "div", "kvoip-dialer__actions", None);
        for action in actions_of(list) {
            let primary = matches!(action, CallListAction::Start | CallListAction::Resume);
            self.button(&actions, action_name(action), primary, state.busy);
        }
    }

    /// An entry: its name, through whom, its number, what happened to it (and why it failed).
    fn entry(
        &mut self,
        parent: &Element,
        tag: &str,
        class: &str,
        position: usize,
        entry: &CallListEntryView,
    ) -> Element {
        let i18n = self.i18n;
        let block = self.el(parent, tag, class, None);
        attr(&block, "data-position", &position.to_string());
        attr(&block, "data-state", entry.state.as_str());
        self.el(&block, "span", "kvoip-dialer__name", Some(&entry.name));
        if let Some(via) = &entry.via {
            self.el(&block, "span", "kvoip-dialer__via", Some(&say(i18n, "via", &[("#NAME#", via.clone())])));
        }
        // An entry without a number says so as its outcome (skipped: no number).
        if let Some(number) = &entry.number {
            self.el(&block, "span", "kvoip-dialer__number", Some(number));
        }
        let outcome = self.el(&block, "span", "kvoip-dialer__outcome", None);
        match entry.state {
            CallListEntryState::Calling => self.live.push((outcome, Live::Call(entry.call_id.clone()))),
            CallListEntryState::Answered => {
                let time = clock(u64::from(entry.duration.unwrap_or(0)));
                outcome.set_text_content(Some(&say(i18n, "entry_answered", &[("#TIME#", time)])));
            }
            state => outcome.set_text_content(Some(&i18n.t("dialer", &format!("entry_{}", state.as_str())))),
        }
        if entry.state == CallListEntryState::Failed {
            let reason = entry.error.as_deref().and_then(told).unwrap_or("generic");
            self.text(&block, "span", "kvoip-dialer__reason", reason);
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::ListSource;

    fn entry(state: CallListEntryState) -> CallListEntryView {
        CallListEntryView {
            entity_id: 7,
            name: "Maria Silva".into(),
            via: None,
            number: Some("+55 11 99999-0000".into()),
            state,
            call_id: None,
            duration: None,
            error: None,
        }
    }

    fn list(state: CallListState, next: u32, entries: Vec<CallListEntryView>) -> CallListView {
        CallListView {
            id: 1,
            source: ListSource::Contacts,
            state,
            next,
            current: None,
            next_dial_at_ms: None,
            waiting_for: None,
            interval_secs: 10,
            entries,
            created_at: 0,
        }
    }

    fn error(code: &str) -> Value {
        json!({"error": {"code": code, "message": "…"}})
    }

    #[test]
    fn each_state_offers_its_buttons_and_skip_only_while_an_entry_is_left() {
        use CallListAction::{Pause, Resume, Skip, Start, Stop};
        use CallListEntryState::{Answered, Pending};
        let two = || vec![entry(Answered), entry(Pending)];
        let cases = [
            ("a new list starts", list(CallListState::Ready, 0, two()), vec![Start, Skip, Stop]),
            ("a running list pauses", list(CallListState::Running, 1, two()), vec![Pause, Skip, Stop]),
            ("a paused list resumes", list(CallListState::Paused, 1, two()), vec![Resume, Skip, Stop]),
            ("nothing left to skip", list(CallListState::Running, 2, two()), vec![Pause, Stop]),
            ("a finished list only closes", list(CallListState::Finished, 2, two()), vec![]),
            ("a stopped list only closes", list(CallListState::Stopped, 1, two()), vec![]),
        ];
        for (case, view, expected) in cases {
            assert_eq!(actions_of(&view), expected, "{case}");
        }
    }

    #[test]
    fn progress_counts_what_is_done_and_what_is_left_apart_from_the_call_in_progress() {
        use CallListEntryState::*;
        let entries = [Answered, NoNumber, Calling, Pending, Pending].map(entry);
        assert_eq!(Progress::of(&entries), Progress { done: 2, left: 2, total: 5 });
        let ended = [NotAnswered, Failed, Skipped].map(entry);
        assert_eq!(Progress::of(&ended), Progress { done: 3, left: 0, total: 3 });
    }

    #[test]
    fn durations_read_as_a_clock() {
        for (seconds, shown) in [(0, "0:00"), (42, "0:42"), (725, "12:05"), (3723, "1:02:03")] {
            assert_eq!(clock(seconds), shown);
        }
    }

    #[test]
    fn the_next_dial_is_asked_for_at_its_time_only_while_running_with_an_entry_left() {
        let due_at = |state, next, at: Option<i64>| CallListView {
            next_dial_at_ms: at,
            ..list(state, next, vec![entry(CallListEntryState::Pending)])
        };
        let now = 10_000;
        assert_eq!(dial_delay(&due_at(CallListState::Running, 0, Some(now)), now, 0), Some(0), "due now");
        assert_eq!(dial_delay(&due_at(CallListState::Running, 0, Some(4_000)), now, 0), Some(0), "overdue");
        assert_eq!(
            dial_delay(&due_at(CallListState::Running, 0, Some(now + 3_000)), now, 0),
            Some(3_000 + DIAL_MARGIN_MS),
            "in three seconds, a moment after"
        );
        assert_eq!(
            dial_delay(&due_at(CallListState::Running, 0, Some(now)), now, now + RETRY_MS),
            Some(RETRY_MS + DIAL_MARGIN_MS),
            "after a refusal, not before the floor"
        );
        assert_eq!(dial_delay(&due_at(CallListState::Running, 0, None), now, 0), None, "waiting for the call");
        assert_eq!(dial_delay(&due_at(CallListState::Paused, 0, Some(now)), now, 0), None, "paused");
        assert_eq!(dial_delay(&due_at(CallListState::Running, 1, Some(now)), now, 0), None, "nothing left");
    }

    #[test]
    fn the_call_in_progress_is_the_current_entry_while_it_is_calling() {
        let calling = CallListEntryView { call_id: Some("c-1".into()), ..entry(CallListEntryState::Calling) };
        let mut view = list(CallListState::Running, 1, vec![calling, entry(CallListEntryState::Pending)]);
        assert_eq!(calling_id(&view), None, "no current entry yet");
        view.current = Some(0);
        assert_eq!(calling_id(&view), Some("c-1"));
        view.entries[0].state = CallListEntryState::Answered;
        assert_eq!(calling_id(&view), None, "over");
    }

    #[test]
    fn a_commands_answer_shows_the_list_reads_it_again_or_says_why() {
        let view = list(CallListState::Running, 0, vec![entry(CallListEntryState::Pending)]);
        let cases = [
            ("the list", 200, serde_json::to_value(&view).unwrap(), Answer::List(Some(view.clone()))),
            ("not its time", 409, error("not_due"), Answer::ReadAgain { not_due: true }),
            ("another tab dialled", 409, error("stale"), Answer::ReadAgain { not_due: false }),
            ("another tab paused", 409, error("not_running"), Answer::ReadAgain { not_due: false }),
            ("replaced", 404, error("not_found"), Answer::ReadAgain { not_due: false }),
            ("no extension", 409, error("no_extension"), Answer::Refused("no_extension")),
            ("lists off", 403, error("call_lists_off"), Answer::Refused("call_lists_off")),
            ("the session", 401, error("unauthorized"), Answer::Refused("unauthorized")),
            ("the network", 0, Value::Null, Answer::Refused("network")),
            ("a server error", 500, error("internal"), Answer::Refused("generic")),
            ("an unreadable list", 200, json!({"id": "x"}), Answer::Refused("generic")),
        ];
        for (case, status, body, expected) in cases {
            assert_eq!(Answer::of_command(status, body), expected, "{case}");
        }
        assert_eq!(Answer::of_read(200, json!({"list": null})), Answer::List(None));
        assert_eq!(Answer::of_read(200, json!({"list": view})), Answer::List(Some(view)));
        assert_eq!(Answer::of_read(503, error("kommo_unavailable")), Answer::Refused("generic"));
    }

    #[test]
    fn every_key_the_dialer_names_has_a_string() {
        let i18n = I18n::new(Value::Null);
        let mut keys: Vec<String> = TOLD.iter().map(|key| key.to_string()).collect();
        keys.extend(["network", "unauthorized", "generic", "progress", "via", "current", "next"].map(String::from));
        keys.extend(ListSource::ALL.map(|source| format!("source_{}", source.as_str())));
        use CallListState::*;
        keys.extend([Ready, Running, Paused, Finished, Stopped].map(|state| format!("state_{}", state.as_str())));
        use CallListEntryState::*;
        let entry_states = [Pending, Calling, Answered, NotAnswered, Failed, Skipped, NoNumber];
        keys.extend(entry_states.map(|state| format!("entry_{}", state.as_str())));
        keys.push("entry_talking".into());
        use CallListAction::*;
        keys.extend([Start, Pause, Resume, Skip, Stop].map(|action| action_name(action).to_owned()));
        keys.extend(["close", "report", "loading", "empty", "hint_ready", "hint_paused", "dialing"].map(String::from));
        keys.extend(["wait_call_end", "wait_call_result", "wait_interval"].map(String::from));
        for key in keys {
            assert_ne!(i18n.t("dialer", &key), format!("dialer.{key}"), "dialer.{key} is missing");
        }
    }
}
