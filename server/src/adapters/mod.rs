//! Provider adapters: the telephony systems an account may run (`shared::ProviderSystem`) beside our own
//! contract. Each adapter turns its system's native webhook requests into our call events
//! (`shared::FromWebhook`, each with a delivery id so a repeat is stored once) after verifying that system's
//! own signature on the raw request, before anything is stored; the events then take the one path every
//! provider's take (`http::hooks`: the inbox, the exactly-once pipeline, the popup).
//!
//! Our contract (`Standard`) and the Asterisk connector (which speaks it) are not adapted here: the webhook
//! handler verifies their Standard Webhooks signature itself. The credentials check and click-to-call of
//! each system are [`crate::provider::ProviderClient`]'s, dispatched by system.

use axum::http::{HeaderMap, Method};
use secrecy::SecretString;
use shared::{FromWebhook, ProviderSystem};

use webhook_signing::WebhookSecret;

pub mod twilio;
pub mod yeastar;
pub mod zadarma;

/// One webhook request as it arrived, for an adapter to verify and read.
pub struct Request<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The raw body, exactly as received (signatures cover these bytes or the fields they carry).
    pub body: &'a [u8],
    /// The URL the system posted to as the system knows it: `PUBLIC_BASE_URL` + the path (+ `?` query).
    /// Behind a reverse proxy this is the public address, not the one the proxy forwarded to.
    pub public_url: String,
    /// Unix seconds.
    pub now: i64,
}

/// What an account's settings give an adapter to verify its requests with.
pub struct Keys<'a> {
    /// The account's VoIP login (Zadarma's API key, Twilio's account SID, Yeastar's client id).
    pub login: &'a str,
    /// The account's stored VoIP secret, opened (Zadarma's API secret, Twilio's auth token).
    pub secret: Option<&'a SecretString>,
    /// The webhook signing secrets we issued (current, and the previous one during its grace): the secret
    /// an admin pastes into a system that signs with a shared secret of its own choosing (Yeastar).
    pub signing: &'a [WebhookSecret],
}

/// A verified request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Call events to store, in order.
    Events(Vec<Delivery>),
    /// A setup check the system makes when its URL is set, answered `200 text/plain` with this text
    /// (Zadarma's `zd_echo`). Nothing is stored.
    Echo(String),
    /// Verified, but nothing a call is made of (an event type we do not use): 200, nothing stored.
    Nothing,
}

/// One call event and the id of its delivery (stable across the system's retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub webhook_id: String,
    pub event: FromWebhook,
    /// What the system signed about the call, for a system whose signature leaves the call id out
    /// (Zadarma): `http::hooks` binds the call id to it at the call's first event and refuses a later event
    /// of that id that signed something else ([`crate::store::Store::bind_call`]).
    pub binding: Option<Binding>,
}

/// A system's word that the recording of call `call_id` is at `url` (`now`: when it said so). It names neither
/// number: the call's earlier events gave them (a recording comes after its call's end; should it come
/// first, the call's numbers read as unknown until they do).
pub(crate) fn recording_ready(call_id: &str, account: &str, now: i64, url: String) -> FromWebhook {
    FromWebhook {
        call_id: call_id.to_owned(),
        voip_account_id: account.to_owned(),
        from: "unknown".into(),
        to: "unknown".into(),
        status: shared::CallStatus::Ended,
        start_time: now,
        extension: None,
        event_type: Some(shared::CallEventType::RecordingReady),
        direction: None,
        duration: None,
        recording_url: Some(url),
    }
}

/// The fields of a call one of its events signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Those every event of the call signs alike (Zadarma: the client's number and the start).
    pub signed: String,
    /// Our line's number, when this event signs it.
    pub line: Option<String>,
}

/// Why an adapter refused a request; nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The signature is missing or does not verify (401; counts against the client address).
    #[error("the signature did not verify: {0}")]
    BadSignature(&'static str),
    /// The request is not what the system documents (400, naming the field).
    #[error("{0}")]
    Malformed(String),
    /// Signed, but refused by the adapter's rules (409): e.g. a Zadarma end whose signed fields are not
    /// its call's.
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// Verifies and reads one request of `system`. `Standard` and `Asterisk` are never adapted.
pub fn inbound(system: ProviderSystem, request: &Request<'_>, keys: &Keys<'_>) -> Result<Inbound, AdapterError> {
    match system {
        ProviderSystem::Zadarma => zadarma::inbound(request, keys),
        ProviderSystem::Yeastar => yeastar::inbound(request, keys),
        ProviderSystem::Twilio => twilio::inbound(request, keys),
        ProviderSystem::Standard | ProviderSystem::Asterisk => {
            Err(AdapterError::Malformed("this system posts our own signed events".into()))
        }
    }
}

/// Whether the webhook handler verifies this system's requests itself (Standard Webhooks).
pub fn speaks_our_contract(system: ProviderSystem) -> bool {
    matches!(system, ProviderSystem::Standard | ProviderSystem::Asterisk)
}
