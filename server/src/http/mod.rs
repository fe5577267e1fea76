//! The HTTP surface: one [`app`] function builds the whole router that `main` serves and tests drive.

mod caller_id;
mod calls;
mod dial;
mod error;
mod hooks;
mod kommo_hooks;
mod openapi;
mod operator;
mod push;
mod settings;
mod widget;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

pub use caller_id::MAX_CALLER_ID_BODY;
pub use error::ApiError;
pub use hooks::MAX_WEBHOOK_BODY;
pub use widget::AUTH_HEADER;

use secrecy::SecretString;

use crate::auth::TokenVerifier;
use crate::calls::CallsContext;
use crate::config::{Config, Limits, Retention};
use crate::crypto::Keyring;
use crate::ingest::Ingestor;
use crate::jobs::Queue;
use crate::kommo::{KommoClient, OAuthClient};
use crate::oauth::{self, Installer};
use crate::provider::ProviderClient;
use crate::push::Hub;
use crate::store::{PendingCodeLimits, Store};
use crate::throttle::Throttle;
use tokio::sync::Notify;

/// The provider's caller-id question (see `caller_id`), beside its account's webhook.
const CALLER_ID_PATH: &str = "/hooks/voip/{hook_id}/caller-id";

/// Largest JSON body the widget API accepts.
const MAX_WIDGET_BODY: usize = 16 * 1024;

/// Shared by every handler: one allocation behind an `Arc`, so the clone each extractor makes costs one
/// reference count, not one per cache and client inside.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub store: Store,
    pub verifier: Arc<TokenVerifier>,
    pub keyring: Arc<Keyring>,
    pub hub: Hub,
    pub public_base_url: Arc<str>,
    /// Cancelled when the server shuts down; long-lived responses (push streams) end on it.
    pub shutdown: CancellationToken,
    /// Exchanges authorization codes; holds the one Kommo API client.
    pub installer: Installer,
    pub client_id: Arc<str>,
    /// Keys the disable hook's HMAC (and, inside the verifier and client, the rest).
    pub client_secret: Arc<SecretString>,
    pub consent_url: Arc<str>,
    /// The one VoIP provider client (with the egress policy).
    pub provider: ProviderClient,
    /// Stores provider events durably (group commit).
    pub ingestor: Ingestor,
    /// The job queue (dead letters, metrics); the worker runs its jobs.
    pub queue: Queue,
    /// Wakes the worker when new jobs were committed.
    pub jobs_wake: Arc<Notify>,
    /// Brings Kommo in line with each call (the worker's job handler).
    pub calls: CallsContext,
    /// Resolved webhook paths, kept a few seconds.
    pub hooks: hooks::HookCache,
    /// Required by the operator endpoints when set.
    pub operator_token: Option<Arc<SecretString>>,
    /// Who is an admin of an account (the token's claim, or Kommo's users API, cached).
    pub roles: widget::Roles,
    /// Every bound on clients (timeouts, connection and stream caps, budgets); see `config::Limits`.
    pub limits: Arc<Limits>,
    /// The rate limiters those budgets feed.
    pub throttle: Throttle,
    /// How long finished work and disabled accounts' data are kept.
    pub retention: Retention,
    /// Whether this process syncs the accounts' phone indexes (`PHONE_INDEX`).
    pub phone_index: bool,
    cors_extra_origins: Arc<[String]>,
}

impl axum::extract::FromRef<AppState> for Throttle {
    fn from_ref(state: &AppState) -> Throttle {
        state.throttle.clone()
    }
}

impl AppState {
    pub fn new(config: Config, store: Store, shutdown: CancellationToken) -> AppState {
        let verifier =
            TokenVerifier::new(&config.kommo.client_id, &config.kommo.client_secret, &config.public_base_url);
        let keyring = Arc::new(config.keyring);
        let oauth = OAuthClient {
            client_id: config.kommo.client_id.clone(),
            client_secret: config.kommo.client_secret.clone(),
            redirect_uri: format!("{}{}", config.public_base_url, oauth::CALLBACK_PATH),
        };
        let kommo = KommoClient::new(store.clone(), keyring.clone(), oauth, config.kommo_hosts);
        let jobs_wake = Arc::new(Notify::new());
        // Counters recorded before the recorder exists would be lost.
        crate::metrics::handle();
        let pending_limits =
            PendingCodeLimits { total: config.limits.max_pending_codes, per_host: oauth::MAX_PENDING_CODES_PER_HOST };
        let calls = CallsContext::new(store.clone(), kommo.clone()).with_public_base_url(&config.public_base_url);
        let hub = Hub::new(calls.groups().clone());
        // On PostgreSQL, call events from every replica reach this process's open streams.
        tokio::spawn({
            let (hub, store, shutdown) = (hub.clone(), store.clone(), shutdown.clone());
            async move { hub.relay(store, shutdown).await }
        });
        let state = AppState(Arc::new(Shared {
            throttle: Throttle::new(&config.limits),
            roles: widget::Roles::default(),
            limits: Arc::new(config.limits),
            retention: config.retention,
            ingestor: Ingestor::start(&store, jobs_wake.clone()),
            calls,
            hooks: hooks::HookCache::default(),
            queue: Queue::new(&store, worker_name()),
            jobs_wake,
            operator_token: config.operator.token.map(Arc::new),
            installer: Installer { store: store.clone(), kommo, keyring: keyring.clone(), pending_limits },
            store,
            verifier: Arc::new(verifier),
            keyring,
            hub,
            public_base_url: config.public_base_url.into(),
            shutdown,
            client_id: config.kommo.client_id.into(),
            client_secret: Arc::new(config.kommo.client_secret),
            consent_url: config.kommo_consent_url.into(),
            provider: ProviderClient::new(config.provider_egress),
            phone_index: config.phone_index,
            cors_extra_origins: config.cors_extra_origins.into(),
        }));
        // Who is calling, for the calls this process's open streams receive (see `Hub::describe_with`).
        let (describer, mut to_describe) = tokio::sync::mpsc::channel(crate::push::DESCRIBE_QUEUE);
        state.hub.describe_with(describer);
        tokio::spawn({
            let state = state.clone();
            async move {
                while let Some((account, call)) = to_describe.recv().await {
                    let described = state.calls.caller_id().cached(account, call.client_number()).await.is_some();
                    if !described {
                        push::describe_caller(&state, account, &call);
                    }
                }
            }
        });
        state
    }
}

/// Names this process's job claims: host and process id, so an operator can tell replicas apart.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}:{}:{}", std::process::id(), crate::crypto::random_token(4))
}

/// The operator endpoints alone, for their own listener.
pub fn operator_app(state: AppState) -> Router {
    operator::router(state.operator_token.clone()).with_state(state)
}

/// Builds the application: widget API (CORS for Kommo's origins), provider webhooks, health.
pub fn app(state: AppState) -> Router {
    let widget_api = widget::router()
        .merge(push::router())
        .merge(settings::router())
        .merge(calls::router())
        .merge(dial::router())
        .layer(DefaultBodyLimit::max(MAX_WIDGET_BODY));
    // Inside CORS, so that a browser can read a timeout's 408 like any other answer.
    let widget_api = bounded(widget_api, &state.limits).layer(cors(state.cors_extra_origins.clone()));
    // On the public listener the operator endpoints exist only behind a token.
    let operator_routes = match &state.operator_token {
        Some(token) => operator::router(Some(token.clone())),
        None => Router::new(),
    };
    let public = Router::new()
        .merge(operator_routes)
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::document))
        .route(oauth::CALLBACK_PATH, get(oauth::callback))
        .route(oauth::START_PATH, get(oauth::start))
        .route(oauth::DISABLE_PATH, get(oauth::disable))
        .route(
            "/hooks/voip/{hook_id}",
            post(hooks::receive).get(hooks::check).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route(
            "/hooks/kommo/{token}",
            post(kommo_hooks::receive).layer(DefaultBodyLimit::max(kommo_hooks::MAX_KOMMO_HOOK_BODY)),
        )
        .route(CALLER_ID_PATH, post(caller_id::answer).layer(DefaultBodyLimit::max(MAX_CALLER_ID_BODY)));
    bounded(public, &state.limits)
        .merge(widget_api)
        .layer(
            // Spans name the route template, never the concrete path or query: webhook ids and
            // push tickets are credentials.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!("http", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

/// A request must be answered within `request_timeout` (408; it bounds the time to the response head, so
/// push streams are not cut), and its body must not stall longer than `body_read_timeout` between chunks
/// (the request timeout bounds the body's total).
fn bounded(routes: Router<AppState>, limits: &Limits) -> Router<AppState> {
    routes
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .layer(axum::middleware::map_response(timeout_envelope))
}

/// The timeout layer's 408 has no body: give it the one JSON envelope every other error has.
async fn timeout_envelope(response: axum::response::Response) -> axum::response::Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT && !response.headers().contains_key(header::CONTENT_TYPE) {
        return axum::response::IntoResponse::into_response(ApiError::RequestTimeout);
    }
    response
}

/// Browsers may call the widget API from Kommo's pages (`https://<subdomain>.kommo.com`) and from
/// the configured extra origins, with the `X-Auth-Token` header; nothing else.
fn cors(extra_origins: Arc<[String]>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|origin| is_kommo_origin(origin) || extra_origins.iter().any(|o| o == origin))
        }))
        .allow_methods([Method::GET, Method::PUT, Method::POST])
        .allow_headers([header::CONTENT_TYPE, HeaderName::from_static(AUTH_HEADER)])
}

/// `https://<subdomain>.kommo.com`, exactly: no port, path, userinfo or nested trickery.
fn is_kommo_origin(origin: &str) -> bool {
    let Some(host) = origin.strip_prefix("https://") else {
        return false;
    };
    let Some(subdomain) = host.strip_suffix(".kommo.com") else {
        return false;
    };
    !subdomain.is_empty() && subdomain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(error) => {
            tracing::error!(%error, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable" })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_kommo_origin;

    #[test]
    fn only_kommo_subdomain_origins_pass() {
        assert!(is_kommo_origin("https://acme.kommo.com"));
        assert!(is_kommo_origin("https://acme-2.kommo.com"));
        for origin in [
            "http://acme.kommo.com",
            "https://kommo.com",
            "https://.kommo.com",
            "https://acme.kommo.com:8443",
            "https://acme.kommo.com.evil.org",
            "https://evil.org/acme.kommo.com",
            "https://a.b.kommo.com",
            "https://user@acme.kommo.com",
        ] {
            assert!(!is_kommo_origin(origin), "{origin} was allowed");
        }
    }
}
