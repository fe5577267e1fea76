//! The local provider API the server calls (our provider contract): `GET /v1/account` checks the
//! credentials, `POST /v1/calls {extension, to}` places a click-to-call as an AMI `Originate` and answers
//! `201 {call_id}`. The call id is the originated channel's `ChannelId` (its `Uniqueid`, and so the call's
//! `Linkedid`), so the events of that call carry it as `callId`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::ami::{Ami, Message};
use crate::calls::Tracker;
use crate::recordings::Recordings;

const ORIGINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API needs.
#[derive(Clone)]
pub struct Api {
    pub account_id: String,
    pub account_name: String,
    pub login: Option<(String, SecretString)>,
    pub key: Option<SecretString>,
    pub tech: String,
    pub context: String,
    pub keep_plus: bool,
    pub ami: Ami,
    pub tracker: Arc<Mutex<Tracker>>,
    /// The recordings the API serves to signed links, when configured.
    pub recordings: Option<Recordings>,
}

pub fn router(api: Api) -> axum::Router {
    axum::Router::new()
        .route("/v1/account", get(account))
        .route("/v1/calls", post(originate))
        .route("/v1/recordings/{*path}", get(recording))
        .with_state(Arc::new(api))
}

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    sig: String,
}

/// `GET /v1/recordings/<path>?sig=<tag>`: the recording a link the connector made names, streamed; 404 for
/// anything else (a wrong tag, another path, no recordings configured), so a stranger learns nothing.
async fn recording(State(api): State<Arc<Api>>, Path(path): Path<String>, Query(signed): Query<Signed>) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no such recording");
    let Some(file) = api.recordings.as_ref().and_then(|recordings| recordings.open(&path, &signed.sig)) else {
        return not_found();
    };
    let Ok(opened) = tokio::fs::File::open(&file).await else { return not_found() };
    let length = opened.metadata().await.map(|metadata| metadata.len()).ok();
    let mut response = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(opened)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::recordings::content_type(&file)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

/// Constant-time equality of two secrets.
pub(crate) fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// HTTP Basic with the configured login, or `Bearer` with the configured key.
fn authorized(api: &Api, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|value| value.to_str().ok()) else { return false };
    if let (Some(token), Some(key)) = (value.strip_prefix("Bearer "), &api.key) {
        return same(token.trim().as_bytes(), key.expose_secret().as_bytes());
    }
    if let (Some(encoded), Some((login, password))) = (value.strip_prefix("Basic "), &api.login) {
        let Ok(decoded) = BASE64.decode(encoded.trim()) else { return false };
        let expected = format!("{login}:{}", password.expose_secret());
        return same(&decoded, expected.as_bytes());
    }
    false
}

async fn account(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "wrong or missing credentials");
    }
    Json(json!({ "account_id": api.account_id, "name": api.account_name })).into_response()
}

#[derive(Deserialize)]
struct CallRequest {
    extension: String,
    to: String,
}

/// An extension we ring: 1 to 16 digits.
fn valid_extension(extension: &str) -> bool {
    (1..=16).contains(&extension.len()) && extension.bytes().all(|b| b.is_ascii_digit())
}

/// A number we dial: an optional `+` and 2 to 20 digits (nothing else can reach the AMI line).
fn valid_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (2..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

async fn originate(State(api): State<Arc<Api>>, headers: HeaderMap, body: Option<Json<CallRequest>>) -> Response {
    if !authorized(&api, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "wrong or missing credentials");
    }
    let Some(Json(request)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "the body must be {\"extension\", \"to\"}");
    };
    if !valid_extension(&request.extension) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "bad_extension", "the extension must be 1 to 16 digits");
    }
    if !valid_number(&request.to) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "bad_number", "the number must be digits, optionally after +");
    }
    if !api.ami.wait_connected(Duration::from_secs(2)).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "pbx_unreachable", "not connected to Asterisk");
    }
    let call_id = format!("kvoip-{}", uuid::Uuid::new_v4().simple());
    let action_id = api.ami.action_id();
    let exten = if api.keep_plus { request.to.clone() } else { request.to.trim_start_matches('+').to_owned() };
    api.tracker.lock().expect("the tracker lock").expect_originate(
        &call_id,
        &request.extension,
        &request.to,
        &action_id,
        crate::unix_now(),
    );
    let action = Message::action("Originate")
        .with("ActionID", action_id)
        .with("Channel", format!("{}/{}", api.tech, request.extension))
        .with("Context", api.context.clone())
        .with("Exten", exten)
        .with("Priority", "1")
        .with("CallerID", format!("\"{}\" <{}>", request.to, request.to))
        .with("Async", "true")
        .with("ChannelId", call_id.clone())
        .with("Variable", format!("KVOIP_CALL_ID={call_id}"));
    let response = api.ami.send(action, ORIGINATE_TIMEOUT).await;
    match response {
        Ok(reply) if reply.get("Response") == Some("Success") => {
            tracing::info!(call.id = %call_id, extension = %request.extension, "originate queued");
            (StatusCode::CREATED, Json(json!({ "call_id": call_id }))).into_response()
        }
        outcome => {
            api.tracker.lock().expect("the tracker lock").forget_originate(&call_id);
            let reason = match outcome {
                Ok(reply) => reply.get("Message").unwrap_or("refused").chars().take(128).collect::<String>(),
                Err(problem) => problem.to_string(),
            };
            tracing::warn!(%reason, "originate failed");
            error(StatusCode::BAD_GATEWAY, "pbx_refused", &format!("Asterisk did not place the call: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digits_reach_the_originate_action() {
        assert!(valid_extension("101") && !valid_extension("101\r\nAction: Command") && !valid_extension(""));
        assert!(valid_number("+5511987654321") && valid_number("5511987654321"));
        assert!(!valid_number("+55 11") && !valid_number("1\r\n") && !valid_number("+") && !valid_number("++12"));
    }
}
