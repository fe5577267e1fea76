//! The Kommo VoIP widget's wasm: the settings form and the incoming-call popups, exported to script.js.
//!
//! Exports (wasm-bindgen, ES-module glue `widget.js`): [`settings::mount_settings`] → [`settings::SettingsHandle`]
//! (the settings form, with the failed deliveries of [`deliveries`]) and [`calls::start_calls`] →
//! [`calls::CallsHandle`] (the incoming-call popups and the call-result modal of [`result`]).
//!
//! Invariant: the wasm reaches Kommo only through the host object script.js passes in ([`host::Host`]);
//! it talks to our server through that host, except for the push stream (an `EventSource` on a ticket) and
//! the Kommo authorization popup (`window.open` on the server's re-authorize URL, see [`connection`]).

// Every Kommo page loads the `calls` module; only the settings modal loads the `settings` one.
#[cfg(feature = "calls")]
pub mod calls;
#[cfg(feature = "settings")]
pub mod connection;
#[cfg(feature = "settings")]
pub mod deliveries;
#[cfg(feature = "settings")]
pub mod form;
pub mod host;
pub mod i18n;
pub mod problem;
#[cfg(feature = "calls")]
pub mod push;
#[cfg(feature = "calls")]
pub mod result;
#[cfg(feature = "settings")]
pub mod settings;
#[cfg(feature = "settings")]
pub mod values;

/// A mounted Leptos view; dropping it unmounts the view at once, so the handles keep it until they are told.
type Mounted = leptos::mount::UnmountHandle<leptos::tachys::view::any_view::AnyViewState>;
