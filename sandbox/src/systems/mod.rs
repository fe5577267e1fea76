//! Stand-ins for the telephony systems the server has adapters for (`server::adapters`): each one's API as
//! the server calls it (the credentials check, click-to-call) and a player that posts that system's own
//! webhooks, signed its way, to the server, so that the local Kommo plays calls through any adapter.
//! Each system's routes live under its own prefix and keep their own state.

use axum::Router;

pub mod twilio;
pub mod yeastar;
pub mod zadarma;

/// Every system's routes.
pub fn router() -> Router {
    Router::new().merge(zadarma::router()).merge(yeastar::router()).merge(twilio::router())
}
