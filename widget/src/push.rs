//! The push stream: trades a disposable JWT for a ticket, listens to `call` events, reconnects with backoff.
//! Before each stream it asks for this user's calls still in progress (a reload, a new tab, a reconnect
//! shows them again), and each stream resumes after the last event seen, so an event sent while the page
//! was reconnecting arrives, once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Function, Promise};
use shared::api::{ActiveCalls, CALL_EVENT, IncomingCall, PushTicket, paths};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{EventSource, MessageEvent};

use crate::host::{Host, describe};

/// Bounded exponential backoff between reconnection attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(60);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The delay before the next attempt; each call doubles the following one, up to `MAX`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// A stream that stayed open resets the delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The server refused for load (429, too many streams): the next delay is the longest.
    pub fn refused(&mut self) {
        self.next = Self::MAX;
    }

    /// Whether a stream open for `open_for` earns a reset: the server ends every stream after its
    /// lifetime (an hour by default) and the page then reconnects at once, but a stream that a proxy
    /// or the server ends right after it opened must not turn into a reconnection every second.
    pub fn earned_reset(open_for: Duration) -> bool {
        open_for >= Self::MAX
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// A running push stream; `stop` ends it for good.
pub struct PushStream {
    shared: Rc<Shared>,
}

#[derive(Default)]
struct Shared {
    stopped: Cell<bool>,
    /// The largest event id seen: where the next stream resumes.
    last_event_id: Cell<Option<i64>>,
    source: RefCell<Option<EventSource>>,
    /// Resolves the promise the runner is waiting on (a pause or an open stream).
    wake: RefCell<Option<Function>>,
}

impl Shared {
    fn wake(&self) {
        if let Some(wake) = self.wake.borrow_mut().take() {
            let _ = wake.call0(&wasm_bindgen::JsValue::UNDEFINED);
        }
    }

    /// Waits until `wake` is called, or until `timeout` passes.
    async fn wait(&self, timeout: Option<Duration>) {
        let promise = Promise::new(&mut |resolve, _reject| {
            if let (Some(timeout), Some(window)) = (timeout, web_sys::window()) {
                let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
                let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, millis);
            }
            *self.wake.borrow_mut() = Some(resolve);
        });
        let _ = JsFuture::from(promise).await;
        self.wake.borrow_mut().take();
    }
}

impl PushStream {
    /// Starts listening; `on_call` runs for every `call` event.
    pub fn start(host: Rc<Host>, on_call: impl Fn(IncomingCall) + 'static) -> PushStream {
        let shared = Rc::new(Shared::default());
        spawn_local(run(host, Rc::clone(&shared), Rc::new(on_call)));
        PushStream { shared }
    }

    pub fn stop(&self) {
        self.shared.stopped.set(true);
        if let Some(source) = self.shared.source.borrow_mut().take() {
            source.close();
        }
        self.shared.wake();
    }
}

async fn run(host: Rc<Host>, shared: Rc<Shared>, on_call: Rc<dyn Fn(IncomingCall)>) {
    let backoff = Rc::new(RefCell::new(Backoff::new()));
    while !shared.stopped.get() {
        if let Ok((200, body)) = host.request("GET", paths::ACTIVE_CALLS, None::<&()>).await
            && let Ok(active) = serde_json::from_value::<ActiveCalls>(body)
        {
            if shared.last_event_id.get().is_none() {
                shared.last_event_id.set(active.last_event_id);
            }
            for call in active.calls {
                on_call(call);
            }
        }
        if shared.stopped.get() {
            return;
        }
        let ticket = match host.request("POST", paths::PUSH_TICKET, None::<&()>).await {
            Ok((200, body)) => serde_json::from_value::<PushTicket>(body).ok(),
            Ok((429, _)) => {
                backoff.borrow_mut().refused();
                None
            }
            _ => None,
        };
        if shared.stopped.get() {
            return;
        }
        if let Some(ticket) = ticket {
            listen(&host, &shared, &on_call, &backoff, &ticket.ticket).await;
        }
        if shared.stopped.get() {
            return;
        }
        let delay = backoff.borrow_mut().next_delay();
        // Jitter: spread the reconnections of many open pages after a server restart.
        let delay = delay.mul_f64(0.5 + js_sys::Math::random() / 2.0);
        shared.wait(Some(delay)).await;
    }
}

/// Holds one `EventSource` open until it fails or the stream is stopped.
async fn listen(
    host: &Host,
    shared: &Rc<Shared>,
    on_call: &Rc<dyn Fn(IncomingCall)>,
    backoff: &Rc<RefCell<Backoff>>,
    ticket: &str,
) {
    let mut url = format!("{}{}?ticket={}", host.api_base(), paths::PUSH_EVENTS, js_sys::encode_uri_component(ticket));
    if let Some(last) = shared.last_event_id.get() {
        url.push_str(&format!("&last_event_id={last}"));
    }
    let source = match EventSource::new(&url) {
        Ok(source) => source,
        Err(error) => {
            web_sys::console::warn_1(&format!("kvoip: cannot open the push stream: {}", describe(&error)).into());
            return;
        }
    };
    let on_message = {
        let (on_call, shared) = (Rc::clone(on_call), Rc::clone(shared));
        Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(data) = event.data().as_string() else {
                return;
            };
            match serde_json::from_str::<IncomingCall>(&data) {
                Ok(call) => {
                    if let Some(id) = call.event_id {
                        shared.last_event_id.set(Some(shared.last_event_id.get().map_or(id, |last| last.max(id))));
                    }
                    on_call(call)
                }
                Err(error) => web_sys::console::warn_1(&format!("kvoip: unreadable call event: {error}").into()),
            }
        })
    };
    let opened_at = Rc::new(Cell::new(None::<f64>));
    let on_open = {
        let opened_at = Rc::clone(&opened_at);
        Closure::<dyn Fn()>::new(move || opened_at.set(Some(js_sys::Date::now())))
    };
    // The ticket is single-use: instead of letting EventSource retry with it, give up and fetch a new one.
    // A stream that ends (its lifetime passed, the server restarted) or was refused (429) lands here too.
    let on_error = {
        let shared = Rc::clone(shared);
        Closure::<dyn Fn()>::new(move || shared.wake())
    };
    let _ = source.add_event_listener_with_callback(CALL_EVENT, on_message.as_ref().unchecked_ref());
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    *shared.source.borrow_mut() = Some(source.clone());

    shared.wait(None).await;

    if let Some(opened_at) = opened_at.get() {
        let open_for = Duration::from_millis((js_sys::Date::now() - opened_at).max(0.0) as u64);
        if Backoff::earned_reset(open_for) {
            backoff.borrow_mut().reset();
        }
    }
    source.close();
    source.set_onopen(None);
    source.set_onerror(None);
    let _ = source.remove_event_listener_with_callback(CALL_EVENT, on_message.as_ref().unchecked_ref());
    shared.source.borrow_mut().take();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Backoff::FIRST);
    }

    #[test]
    fn a_refusal_waits_the_longest_delay() {
        let mut backoff = Backoff::new();
        backoff.refused();
        assert_eq!(backoff.next_delay(), Backoff::MAX);
        assert_eq!(backoff.next_delay(), Backoff::MAX);
    }

    #[test]
    fn only_a_stream_that_stayed_open_a_while_resets_the_backoff() {
        assert!(!Backoff::earned_reset(Duration::from_secs(1)));
        assert!(!Backoff::earned_reset(Duration::from_secs(59)));
        assert!(Backoff::earned_reset(Duration::from_secs(60)));
        assert!(Backoff::earned_reset(Duration::from_secs(3600)));
    }
}
