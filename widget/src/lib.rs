//! The Kommo VoIP widget's wasm: the incoming-call popups and the settings form, exported to script.js as two
//! modules built from this crate with different features.
//!
//! - `calls` (glue `widget.js`, wasm `widget_bg.wasm`): [`calls::start_calls`] → [`calls::CallsHandle`] (the
//!   incoming-call popups, the call-result modal of [`result`], and the call-list panel of [`dialer`] through
//!   `open_dialer`). script.js loads it at the first call for the user, or when a call list is made or open;
//!   until then a Kommo page loads no wasm at all (the push stream and click-to-call are script.js's).
//! - `settings` (glue `settings.js`, wasm `settings_bg.wasm`): [`settings::mount_settings`] →
//!   [`settings::SettingsHandle`] (the settings form, with the failed deliveries of [`deliveries`]), loaded when
//!   an admin opens the settings.
//!
//! Invariant: the wasm reaches Kommo only through the host object script.js passes in ([`host::Host`]);
//! it talks to our server through that host, except for the Kommo authorization popup (`window.open` on the
//! server's re-authorize URL, see [`connection`]).

#[cfg(feature = "calls")]
pub mod calls;
#[cfg(feature = "settings")]
pub mod connection;
#[cfg(feature = "settings")]
pub mod deliveries;
#[cfg(feature = "calls")]
pub mod dialer;
#[cfg(feature = "settings")]
pub mod form;
pub mod host;
pub mod i18n;
pub mod problem;
#[cfg(feature = "calls")]
pub mod result;
#[cfg(feature = "settings")]
pub mod settings;
#[cfg(feature = "settings")]
pub mod values;

/// A mounted Leptos view; dropping it unmounts the view at once, so the handles keep it until they are told.
type Mounted = leptos::mount::UnmountHandle<leptos::tachys::view::any_view::AnyViewState>;
