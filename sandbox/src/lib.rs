//! The local Kommo: a real HTTP stand-in for the Kommo page that hosts widgets, for Kommo's OAuth and REST
//! API, and for a VoIP provider.
//!
//! It serves the widget archive (`dist/widget.zip`) the way Kommo would after an upload, a host page that
//! loads `script.js` through RequireJS and drives its callbacks in Kommo's order, mints Kommo-shaped
//! disposable JWTs for the page's `$authorizedAjax`, answers the server's OAuth and API v4 calls
//! ([`kommo_api`]), and stands in for the VoIP provider ([`voip`]): its API at `/voip/v1/...` and signed
//! events posted to the server's webhooks.
//!
//! Invariant: nothing here talks to the internet; the provider stand-in only posts to loopback or to the
//! server's own origin, and Kommo's install and disable requests go to the server's public base URL.

pub mod ami;
pub mod archive;
pub mod clock;
mod error;
pub mod kommo_api;
#[cfg(feature = "oracle")]
pub mod oracle;
mod page;
pub mod provider;
pub mod samples;
pub mod systems;
pub mod token;
pub mod voip;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use archive::{Archive, ArchiveError, Vendor};
pub use token::Kommo;

/// Everything the sandbox serves, read once at start.
pub struct Config {
    /// The extracted widget archive, served at `/widget/<name>`.
    pub archive: Archive,
    /// RequireJS and jQuery, served at `/vendor/require.js` and `/vendor/jquery.js`.
    pub vendor: Vendor,
    /// The Kommo account, user and integration the page acts as.
    pub kommo: Kommo,
    /// How the Kommo OAuth and API stand-in behaves.
    pub stand_in: kommo_api::Settings,
}

/// Shared by every handler.
struct AppState {
    config: Config,
    /// Posts provider events and Kommo's install and disable requests; plain HTTP only, no redirects followed.
    http: reqwest::Client,
    /// Kommo's OAuth and API: accounts, codes, tokens, windows, faults, counters.
    stand_in: kommo_api::StandIn,
    /// The VoIP provider: accounts, originated calls, faults, counters.
    voip: voip::Provider,
    /// The demo account's sample callers, when this sandbox seeded them ([`demo_app`]).
    samples: Option<samples::Samples>,
}

type State = Arc<AppState>;

/// The sandbox's whole HTTP surface with the VoIP provider's default account; the tests drive it.
pub fn app(config: Config) -> Router {
    app_with_provider(config, voip::Settings::default())
}

/// The sandbox's whole HTTP surface with the given provider account.
pub fn app_with_provider(config: Config, provider: voip::Settings) -> Router {
    build(config, provider, false)
}

/// What the binary serves: [`app_with_provider`] whose default account (the one the host page shows) also
/// holds the sample callers of [`samples`], offered by the host page's call panel and listed at
/// `GET /sandbox/samples`, and the contacts, companies and leads of its lists; the provider account never gets
/// a call to [`samples::NO_ANSWER_PHONE`] answered.
pub fn demo_app(config: Config, provider: voip::Settings) -> Router {
    build(config, provider, true)
}

fn build(config: Config, mut provider: voip::Settings, with_samples: bool) -> Router {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("an HTTP client without TLS always builds");
    let stand_in = kommo_api::StandIn::new(config.stand_in.clone(), &config.kommo);
    if with_samples {
        provider.playback.unanswered_numbers.push(samples::NO_ANSWER_PHONE.to_owned());
    }
    let voip = voip::Provider::new(provider);
    let samples = with_samples.then(|| samples::seed(&stand_in, config.kommo.account_id));
    let samples = samples.map(|seeded| seeded.expect("the default account exists: StandIn::new creates it"));
    let state = Arc::new(AppState { config, http, stand_in, voip, samples });
    Router::new()
        .route("/", get(page::host_page))
        .route("/sandbox/host.js", get(page::host_script))
        .route("/sandbox/host.css", get(page::host_style))
        .route("/sandbox/health", get(page::health))
        .route("/sandbox/samples", get(page::samples))
        .route("/sandbox/lists", get(page::lists))
        .route("/sandbox/token", post(token::mint_handler))
        .route("/sandbox/provider/call", post(provider::call_handler))
        .route("/vendor/{name}", get(archive::vendor_handler))
        .route("/widget/{*path}", get(archive::widget_file_handler))
        .merge(kommo_api::routes())
        .merge(voip::routes())
        .with_state(state)
        .merge(systems::router())
}
