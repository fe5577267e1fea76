//! Incoming-call popups: the board of calls on screen (one card per call id) and its cards; a call's end
//! may also ask for its result (see [`crate::result`]).

use std::rc::Rc;

use leptos::mount::mount_to;
use leptos::prelude::*;
use shared::api::IncomingCall;
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use crate::Mounted;
use crate::host::Host;
use crate::i18n::I18n;
use crate::push::PushStream;
use crate::result::{self, ResultModal, ResultQueue};

/// Most cards on screen at once; the oldest goes first.
pub const MAX_CARDS: usize = 4;

/// The calls on screen, oldest first, at most one per `call_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallBoard {
    calls: Vec<IncomingCall>,
}

impl CallBoard {
    /// Shows a call: an update of a call on screen replaces it in place, a new call is added last.
    pub fn upsert(&mut self, call: IncomingCall) {
        if let Some(shown) = self.calls.iter_mut().find(|shown| shown.call_id == call.call_id) {
            *shown = call;
            return;
        }
        self.calls.push(call);
        if self.calls.len() > MAX_CARDS {
            self.calls.remove(0);
        }
    }

    /// Closes a call's card.
    pub fn dismiss(&mut self, call_id: &str) {
        self.calls.retain(|call| call.call_id != call_id);
    }

    pub fn get(&self, call_id: &str) -> Option<&IncomingCall> {
        self.calls.iter().find(|call| call.call_id == call_id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.calls.iter().map(|call| call.call_id.clone()).collect()
    }
}

/// A `div` with `class` and the page's language, appended to `document.body`.
fn body_root(host: &Host, class: &str) -> Result<HtmlElement, JsError> {
    let document = web_sys::window().and_then(|window| window.document()).ok_or_else(|| JsError::new("no document"))?;
    let body = document.body().ok_or_else(|| JsError::new("no document body"))?;
    let root: HtmlElement =
        document.create_element("div").map_err(|_| JsError::new("cannot create a widget root"))?.unchecked_into();
    root.set_class_name(class);
    root.set_attribute("lang", host.lang()).ok();
    body.append_child(&root).map_err(|_| JsError::new("cannot attach a widget root"))?;
    Ok(root)
}

/// Opens the push stream and shows a popup for each incoming call (in `div.kvoip-popups` on `document.body`);
/// when a call ends and the account asks for call results, the result modal (in `div.kvoip-call-result`).
#[wasm_bindgen]
pub fn start_calls(host: JsValue) -> Result<CallsHandle, JsError> {
    let host = Rc::new(Host::from_js(host)?);
    let root = body_root(&host, "kvoip-popups")?;
    let result_root = body_root(&host, "kvoip-call-result")?;

    let board = ArcRwSignal::new(CallBoard::default());
    let results = ArcRwSignal::new(ResultQueue::default());
    let mounted = {
        let (board, results, i18n) = (board.clone(), results.clone(), host.i18n());
        mount_to(root.clone(), move || view! { <CallPopups board results i18n /> }.into_any())
    };
    let result_mounted = {
        let (results, host) = (results.clone(), Rc::clone(&host));
        mount_to(result_root.clone(), move || view! { <ResultModal results host /> }.into_any())
    };
    let offer_host = Rc::clone(&host);
    let stream = PushStream::start(host, move |call| {
        let ended =
            result::is_end(call.status) && results.try_update(|results| results.first_end(&call.call_id)) == Some(true);
        if ended {
            wasm_bindgen_futures::spawn_local(result::offer(Rc::clone(&offer_host), results.clone(), call.clone()));
        }
        board.update(|board| board.upsert(call));
    });
    Ok(CallsHandle { stream, mounted: vec![mounted, result_mounted], roots: vec![root, result_root] })
}

/// The running call popups, kept by script.js until `destroy`.
#[wasm_bindgen]
pub struct CallsHandle {
    stream: PushStream,
    /// Dropping them unmounts the popups and the result modal, so they live here until `stop`.
    mounted: Vec<Mounted>,
    roots: Vec<HtmlElement>,
}

#[wasm_bindgen]
impl CallsHandle {
    /// Closes the stream and removes the popups. Safe to call twice.
    pub fn stop(&mut self) {
        self.stream.stop();
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

/// The stack of call cards, bottom-right of the page.
#[component]
pub fn CallPopups(
    /// The calls to show; the push stream writes to it, close buttons remove from it.
    board: ArcRwSignal<CallBoard>,
    /// The ended calls and whether their result was asked for.
    results: ArcRwSignal<ResultQueue>,
    /// Strings of the current language.
    i18n: I18n,
) -> impl IntoView {
    let ids = {
        let board = board.clone();
        move || board.with(CallBoard::ids)
    };
    view! {
        <For
            each=ids
            key=|call_id| call_id.clone()
            children=move |call_id| {
                view! { <CallCard call_id board=board.clone() results=results.clone() i18n=i18n.clone() /> }
            }
        />
    }
}

/// One call's card; it re-reads its call from the board, so status changes update it in place.
#[component]
pub fn CallCard(
    /// Which call of the board this card shows.
    call_id: String,
    /// The calls on screen.
    board: ArcRwSignal<CallBoard>,
    /// Whether an ended call's result was asked for (the card's `data-call-result`).
    results: ArcRwSignal<ResultQueue>,
    /// Strings of the current language.
    i18n: I18n,
) -> impl IntoView {
    let decision = {
        let call_id = call_id.clone();
        move || results.with(|results| results.decision(&call_id).map(|decision| decision.as_str()))
    };
    let read = |pick: fn(&IncomingCall) -> Option<String>| {
        let (board, call_id) = (board.clone(), call_id.clone());
        move || board.with(|board| board.get(&call_id).and_then(pick))
    };
    let from = read(|call| Some(call.from.clone()));
    let to = read(|call| Some(call.to.clone()));
    let extension = read(|call| call.extension.clone());
    let status = read(|call| Some(call.status.as_str().to_owned()));
    let status_class = {
        let status = status.clone();
        move || format!("kvoip-popup__status kvoip-popup__status--{}", status().unwrap_or_default())
    };
    let status_text = {
        let i18n = i18n.clone();
        move || status().map(|status| i18n.t("status", &status)).unwrap_or_default()
    };
    let (to_label, extension_label) = (i18n.t("popup", "to"), i18n.t("popup", "extension"));
    let close_label = i18n.t("popup", "close");
    let close = {
        let (board, call_id) = (board.clone(), call_id.clone());
        move |_| board.update(|board| board.dismiss(&call_id))
    };

    view! {
        <div class="kvoip-popup" role="alert" data-call-id=call_id.clone() data-call-result=decision>
            <div class="kvoip-popup__head">
                <span class="kvoip-popup__title">{i18n.t("popup", "incoming")}</span>
                <button class="kvoip-popup__close" type="button" title=close_label.clone() aria-label=close_label on:click=close>
                    "×"
                </button>
            </div>
            <div class="kvoip-popup__label">{i18n.t("popup", "from")}</div>
            <div class="kvoip-popup__from">{from}</div>
            <dl class="kvoip-popup__details">
                <div class="kvoip-popup__row">
                    <dt>{to_label}</dt>
                    <dd class="kvoip-popup__to">{to}</dd>
                </div>
                {move || extension().map(|extension| view! {
                    <div class="kvoip-popup__row">
                        <dt>{extension_label.clone()}</dt>
                        <dd class="kvoip-popup__extension">{extension}</dd>
                    </div>
                })}
            </dl>
            <span class=status_class>{status_text}</span>
        </div>
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::CallStatus;

    fn call(id: &str, status: CallStatus) -> IncomingCall {
        test_call(id, status)
    }

    #[test]
    fn a_status_change_updates_the_call_in_place() {
        let mut board = CallBoard::default();
        board.upsert(call("a", CallStatus::Ringing));
        board.upsert(call("b", CallStatus::Ringing));
        board.upsert(call("a", CallStatus::Answered));
        assert_eq!(board.ids(), ["a", "b"]);
        assert_eq!(board.get("a").unwrap().status, CallStatus::Answered);
    }

    #[test]
    fn closing_a_card_removes_only_that_call() {
        let mut board = CallBoard::default();
        board.upsert(call("a", CallStatus::Ringing));
        board.upsert(call("b", CallStatus::Missed));
        board.dismiss("a");
        assert_eq!(board.ids(), ["b"]);
    }

    #[test]
    fn the_oldest_card_makes_room_for_a_new_call() {
        let mut board = CallBoard::default();
        for id in ["a", "b", "c", "d", "e"] {
            board.upsert(call(id, CallStatus::Ringing));
        }
        assert_eq!(board.ids(), ["b", "c", "d", "e"]);
    }
}
