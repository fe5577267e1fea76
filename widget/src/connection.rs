//! The Kommo connection section of the settings form: where the account's authorization stands, and re-authorizing it.

use std::time::Duration;

use js_sys::Promise;
use leptos::prelude::*;
use serde_json::Value;
use shared::api::{ConnectionState, ConnectionView, PhoneIndexView};
use wasm_bindgen_futures::JsFuture;

use crate::i18n::I18n;

/// The name of the authorization popup: a second click reuses the same window.
pub const POPUP_NAME: &str = "kvoip_oauth";
/// Size of the authorization popup (Kommo's consent page).
pub const POPUP_FEATURES: &str = "width=600,height=700";
/// How often a running authorization is looked at (is the popup closed?).
pub const POLL_TICK: Duration = Duration::from_secs(1);
/// Every this many ticks the connection is fetched again.
pub const RECHECK_EVERY_TICKS: u32 = 3;
/// An authorization is followed for at most this many ticks (two minutes).
pub const POLL_LIMIT_TICKS: u32 = 120;
/// The placeholder for the account's subdomain in `connection.installed`.
const SUBDOMAIN_PLACEHOLDER: &str = "#SUBDOMAIN#";
/// Where a count goes in the phone index's sentences.
const COUNT_PLACEHOLDER: &str = "#COUNT#";

/// What the widget knows about the account's connection to Kommo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// The first `GET /widget/v1/connection` has not answered yet.
    Checking,
    Known(ConnectionView),
    /// The server could not be asked, or answered something else than a connection.
    Unknown,
}

impl Connection {
    /// Classifies a `GET /widget/v1/connection` reply (`status` 0 = the network failed).
    pub fn from_reply(status: u16, body: Value) -> Self {
        match status {
            200 => serde_json::from_value(body).map_or(Connection::Unknown, Connection::Known),
            _ => Connection::Unknown,
        }
    }

    pub fn state(&self) -> Option<ConnectionState> {
        match self {
            Connection::Known(view) => Some(view.state),
            Connection::Checking | Connection::Unknown => None,
        }
    }

    pub fn is_installed(&self) -> bool {
        self.state() == Some(ConnectionState::Installed)
    }
}

/// The wire spelling of a state: the i18n key under `connection` and the section's `data-state`.
pub fn state_key(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::NotInstalled => "not_installed",
        ConnectionState::Installed => "installed",
        ConnectionState::NeedsReauth => "needs_reauth",
        ConnectionState::Suspended => "suspended",
        ConnectionState::Disabled => "disabled",
    }
}

/// The sentence for a state, with the account's subdomain filled in.
pub fn state_text(state: ConnectionState, subdomain: &str, i18n: &I18n) -> String {
    i18n.t("connection", state_key(state)).replace(SUBDOMAIN_PLACEHOLDER, subdomain)
}

/// What the connection section shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLine {
    /// The section's `data-state`: a state's wire spelling, or `checking` / `unknown`.
    pub state: &'static str,
    pub text: String,
    /// Kommo's own (untranslated) reason, shown under the text for a suspended account.
    pub reason: Option<String>,
    /// Where the re-authorize button leads; `None` hides the button (connected, or nothing known yet).
    pub reauthorize_url: Option<String>,
    /// Where the phone index stands (its `data-index` state and sentence), while connected.
    pub index: Option<(&'static str, String)>,
}

impl ConnectionLine {
    pub fn new(connection: &Connection, i18n: &I18n) -> Self {
        let view = match connection {
            Connection::Checking => return ConnectionLine::plain("checking", i18n.t("connection", "checking")),
            Connection::Unknown => return ConnectionLine::plain("unknown", i18n.t("connection", "unknown")),
            Connection::Known(view) => view,
        };
        let connected = view.state == ConnectionState::Installed;
        let reason = view.reason.as_deref().map(str::trim).filter(|reason| !reason.is_empty());
        ConnectionLine {
            state: state_key(view.state),
            text: state_text(view.state, &view.subdomain, i18n),
            reason: reason.filter(|_| view.state == ConnectionState::Suspended).map(str::to_owned),
            reauthorize_url: (!connected && !view.reauthorize_url.is_empty()).then(|| view.reauthorize_url.clone()),
            index: view.phone_index.as_ref().filter(|_| connected).map(|index| index_line(index, i18n)),
        }
    }

    fn plain(state: &'static str, text: String) -> Self {
        ConnectionLine { state, text, reason: None, reauthorize_url: None, index: None }
    }
}

/// The phone index's state and sentence, its count filled in.
fn index_line(index: &PhoneIndexView, i18n: &I18n) -> (&'static str, String) {
    let (key, count) = match index {
        PhoneIndexView::Waiting => ("index_waiting", 0),
        PhoneIndexView::Syncing { read } => ("index_syncing", *read),
        PhoneIndexView::Ready { numbers } => ("index_ready", *numbers),
    };
    let state = key.trim_start_matches("index_");
    (state, i18n.t("connection", key).replace(COUNT_PLACEHOLDER, &count.to_string()))
}

/// What to do on one tick while an authorization popup is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStep {
    Wait,
    Recheck,
    Stop,
}

/// Follows one click on "re-authorize": the connection is fetched again every few seconds and at once when
/// the popup closes, for at most two minutes. (Kommo's consent page may cut the opener link, so a popup that
/// reads as closed only brings a re-check forward; it does not end the following.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReauthorizePoll {
    tick: u32,
    popup_open: bool,
}

impl ReauthorizePoll {
    /// `popup_open` is false when the browser blocked the popup: then only the timer re-checks.
    pub fn new(popup_open: bool) -> Self {
        ReauthorizePoll { tick: 0, popup_open }
    }

    /// One tick later; `popup_closed` is what the popup's `closed` reads now.
    pub fn step(&mut self, popup_closed: bool) -> PollStep {
        self.tick += 1;
        if self.tick > POLL_LIMIT_TICKS {
            return PollStep::Stop;
        }
        let just_closed = self.popup_open && popup_closed;
        if just_closed {
            self.popup_open = false;
        }
        if just_closed || self.tick.is_multiple_of(RECHECK_EVERY_TICKS) { PollStep::Recheck } else { PollStep::Wait }
    }
}

/// Opens Kommo's consent page in a popup; `None` when the browser blocked it.
pub fn open_popup(url: &str) -> Option<web_sys::Window> {
    let popup = web_sys::window()?.open_with_url_and_target_and_features(url, POPUP_NAME, POPUP_FEATURES).ok()??;
    let _ = popup.focus();
    Some(popup)
}

/// Whether the popup is gone (a window whose state cannot be read counts as gone).
pub fn popup_closed(popup: &web_sys::Window) -> bool {
    popup.closed().unwrap_or(true)
}

/// Resolves after `duration` (never, if there is no window to set a timer on).
pub async fn sleep(duration: Duration) {
    let millis = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let timer = Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, millis);
        }
    });
    let _ = JsFuture::from(timer).await;
}

/// The compact "Kommo connection" section at the top of the settings form.
#[component]
pub fn ConnectionSection(
    /// What is known of the connection; the section follows it.
    connection: ArcRwSignal<Connection>,
    /// Strings of the current language.
    i18n: I18n,
    /// Called with the re-authorize URL when the button is clicked (inside the click, so a popup may open).
    on_reauthorize: impl Fn(String) + Clone + Send + Sync + 'static,
) -> impl IntoView {
    let line = {
        let i18n = i18n.clone();
        move || connection.with(|connection| ConnectionLine::new(connection, &i18n))
    };
    let state = {
        let line = line.clone();
        move || line().state
    };
    let text = {
        let line = line.clone();
        move || line().text
    };
    let reason = {
        let line = line.clone();
        move || line().reason.map(|reason| view! { <p class="kvoip-connection__reason">{reason}</p> })
    };
    let index = {
        let line = line.clone();
        move || {
            line().index.map(|(state, text)| view! { <p class="kvoip-connection__index" data-index=state>{text}</p> })
        }
    };
    let button = {
        let label = i18n.t("connection", "reauthorize");
        move || {
            line().reauthorize_url.map(|url| {
                let on_reauthorize = on_reauthorize.clone();
                view! {
                    <button
                        type="button"
                        class="kvoip-button kvoip-connection__reauthorize"
                        on:click=move |_| on_reauthorize(url.clone())
                    >
                        {label.clone()}
                    </button>
                }
            })
        }
    };

    view! {
        <section class="kvoip-connection" data-state=state>
            <h4 class="kvoip-connection__title">{i18n.t("connection", "title")}</h4>
            <div class="kvoip-connection__row">
                <span class="kvoip-connection__dot" aria-hidden="true"></span>
                <div class="kvoip-connection__body">
                    <p class="kvoip-connection__text" role="status" aria-live="polite">{text}</p>
                    {reason}
                    {index}
                </div>
                {button}
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(state: ConnectionState, reason: Option<&str>) -> Connection {
        Connection::Known(ConnectionView {
            state,
            subdomain: "acme".to_owned(),
            reason: reason.map(str::to_owned),
            reauthorize_url: "https://voip.example/oauth/kommo/start".to_owned(),
            phone_index: Some(PhoneIndexView::Syncing { read: 750 }),
        })
    }

    fn english() -> I18n {
        I18n::new(Value::Null)
    }

    #[test]
    fn a_connected_account_shows_its_subdomain_and_no_button() {
        let line = ConnectionLine::new(&view(ConnectionState::Installed, Some("ignored")), &english());
        assert_eq!(line.state, "installed");
        assert_eq!(line.text, "Connected to acme.kommo.com");
        assert_eq!(line.reason, None);
        assert_eq!(line.reauthorize_url, None);
        assert_eq!(line.index, Some(("syncing", "Reading the contacts from Kommo: 750 so far…".to_owned())));
    }

    #[test]
    fn the_phone_index_says_how_far_it_got_while_connected_only() {
        let with = |index: PhoneIndexView| {
            let Connection::Known(mut view) = view(ConnectionState::Installed, None) else { unreachable!() };
            view.phone_index = Some(index);
            ConnectionLine::new(&Connection::Known(view), &english()).index
        };
        assert_eq!(
            with(PhoneIndexView::Ready { numbers: 10_001 }),
            Some(("ready", "Callers known from 10001 phone numbers in Kommo".to_owned()))
        );
        assert_eq!(with(PhoneIndexView::Waiting).map(|(state, _)| state), Some("waiting"));
        let expired = ConnectionLine::new(&view(ConnectionState::NeedsReauth, None), &english());
        assert_eq!(expired.index, None, "a disconnected account syncs nothing");
    }

    #[test]
    fn every_state_but_installed_offers_to_reauthorize() {
        let cases = [
            (ConnectionState::NeedsReauth, "needs_reauth", "Kommo access expired — re-authorize"),
            (ConnectionState::NotInstalled, "not_installed", "Not connected yet"),
            (ConnectionState::Suspended, "suspended", "Kommo suspended access"),
            (ConnectionState::Disabled, "disabled", "Disabled in Kommo"),
        ];
        for (state, key, text) in cases {
            let line = ConnectionLine::new(&view(state, None), &english());
            assert_eq!((line.state, line.text.as_str()), (key, text));
            assert_eq!(line.reauthorize_url.as_deref(), Some("https://voip.example/oauth/kommo/start"), "{key}");
        }
    }

    #[test]
    fn kommos_reason_is_shown_for_a_suspended_account_only() {
        let suspended = ConnectionLine::new(&view(ConnectionState::Suspended, Some(" payment required ")), &english());
        assert_eq!(suspended.reason.as_deref(), Some("payment required"));
        let blank = ConnectionLine::new(&view(ConnectionState::Suspended, Some("  ")), &english());
        assert_eq!(blank.reason, None);
        let expired = ConnectionLine::new(&view(ConnectionState::NeedsReauth, Some("invalid_grant")), &english());
        assert_eq!(expired.reason, None);
    }

    #[test]
    fn nothing_to_click_while_checking_or_when_the_state_is_unknown() {
        let checking = ConnectionLine::new(&Connection::Checking, &english());
        assert_eq!((checking.state, checking.reauthorize_url), ("checking", None));
        let unknown = ConnectionLine::new(&Connection::Unknown, &english());
        assert_eq!((unknown.state, unknown.reauthorize_url), ("unknown", None));
        assert_ne!(unknown.text, "connection.unknown");
    }

    #[test]
    fn the_subdomain_is_filled_in_translations_too() {
        let spanish = I18n::new(json!({"connection": {"installed": "Conectado a #SUBDOMAIN#.kommo.com"}}));
        assert_eq!(state_text(ConnectionState::Installed, "acme", &spanish), "Conectado a acme.kommo.com");
    }

    #[test]
    fn connection_replies_are_classified() {
        let body = json!({"state": "needs_reauth", "subdomain": "acme", "reason": null,
            "reauthorize_url": "https://voip.example/oauth/kommo/start"});
        assert_eq!(Connection::from_reply(200, body).state(), Some(ConnectionState::NeedsReauth));
        assert_eq!(Connection::from_reply(200, json!({"state": "sideways"})), Connection::Unknown);
        assert_eq!(Connection::from_reply(0, Value::Null), Connection::Unknown);
        assert_eq!(Connection::from_reply(500, Value::Null), Connection::Unknown);
    }

    #[test]
    fn an_authorization_is_rechecked_every_three_seconds_for_two_minutes() {
        let mut poll = ReauthorizePoll::new(false);
        let steps: Vec<PollStep> = (0..6).map(|_| poll.step(true)).collect();
        use PollStep::{Recheck, Wait};
        assert_eq!(steps, [Wait, Wait, Recheck, Wait, Wait, Recheck]);
        let mut poll = ReauthorizePoll::new(true);
        let last = (0..POLL_LIMIT_TICKS).map(|_| poll.step(false)).last();
        assert_eq!(last, Some(Recheck));
        assert_eq!(poll.step(false), PollStep::Stop);
    }

    #[test]
    fn a_closed_popup_brings_the_recheck_forward_once() {
        let mut poll = ReauthorizePoll::new(true);
        assert_eq!(poll.step(false), PollStep::Wait);
        assert_eq!(poll.step(true), PollStep::Recheck);
        assert_eq!(poll.step(true), PollStep::Recheck); // tick 3: the regular re-check
        assert_eq!(poll.step(true), PollStep::Wait);
    }
}
