//! The provider API our server calls: `GET /v1/account` to check credentials, `POST /v1/calls` to originate,
//! `POST /v1/oauth/token` for an access token with OAuth 2.0 client credentials.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use super::{Account, Book, OriginateRequest, OriginatedCall, PlayedCall, problem};

/// What a real provider says when it does not know the caller.
const WWW_AUTHENTICATE: &str = r#"Basic realm="sandbox-voip", Bearer"#;
/// What the token endpoint says to an unknown client (RFC 6749 §5.2).
const CLIENT_AUTHENTICATE: &str = r#"Basic realm="sandbox-voip-oauth""#;

/// The credentials of a request, as sent.
enum Credentials {
    Basic { login: String, password: String },
    Bearer(String),
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest.to_owned()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
    let (login, password) = decoded.split_once(':')?;
    Some(Credentials::Basic { login: login.to_owned(), password: password.to_owned() })
}

fn account_of(book: &Book, headers: &HeaderMap) -> Option<Account> {
    let account = match credentials(headers)? {
        Credentials::Basic { login, password } => book.by_basic(&login, &password),
        Credentials::Bearer(token) => book.by_bearer(&token, Instant::now()),
    };
    account.cloned()
}

fn unauthorized() -> Response {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "Unknown credentials: send HTTP Basic, a Bearer API key or an unexpired Bearer access token",
    );
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE));
    response
}

/// Applies the oldest queued fault: waits its delay, then answers its status if it names one.
async fn injected_fault(state: &crate::State, route: &str) -> Option<Response> {
    let fault = state.voip.book().take_fault()?;
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(fault.status?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    state.voip.book().count(route, "fault");
    Some(problem(status, "Injected fault"))
}

/// A queued fault first, then the credentials; a refusal is counted, and answered with its outcome.
async fn admit(state: &crate::State, route: &str, headers: &HeaderMap) -> Result<Account, (Response, &'static str)> {
    if let Some(fault) = injected_fault(state, route).await {
        return Err((fault, "fault"));
    }
    let mut book = state.voip.book();
    match account_of(&book, headers) {
        Some(account) => Ok(account),
        None => {
            book.count(route, "unauthorized");
            Err((unauthorized(), "unauthorized"))
        }
    }
}

/// An OAuth 2.0 error answer: `{"error": code}`, never cached.
fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(json!({ "error": code })))
        .into_response()
}

/// `POST /voip/v1/oauth/token`: the client credentials grant. The client authenticates by HTTP Basic
/// `client_id:client_secret` (compared as sent); a known client with the form's `grant_type=client_credentials`
/// gets a fresh access token for its account.
pub(super) async fn token(
    State(state): State<crate::State>,
    headers: HeaderMap,
    form: Result<Form<BTreeMap<String, String>>, FormRejection>,
) -> Response {
    const ROUTE: &str = "POST /voip/v1/oauth/token";
    if let Some(fault) = injected_fault(&state, ROUTE).await {
        return fault;
    }
    let mut book = state.voip.book();
    let client = match credentials(&headers) {
        Some(Credentials::Basic { login, password }) => book.by_client(&login, &password),
        _ => None,
    };
    let Some(account_id) = client.map(|account| account.account_id.clone()) else {
        book.count(ROUTE, "invalid_client");
        let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CLIENT_AUTHENTICATE));
        return response;
    };
    // A body that is not a form (or has no grant type) is a malformed request, not another grant.
    let grant_type = form.ok().and_then(|Form(mut fields)| fields.remove("grant_type"));
    match grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            book.count(ROUTE, "unsupported_grant_type");
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
        None => {
            book.count(ROUTE, "invalid_request");
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    let ttl = state.voip.token_ttl;
    let access_token = book.issue_token(&account_id, ttl, Instant::now());
    book.count(ROUTE, "ok");
    let body = json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": ttl.as_secs() });
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response()
}

/// `GET /voip/v1/account`: whose credentials these are.
pub(super) async fn account(State(state): State<crate::State>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "GET /voip/v1/account";
    let account = match admit(&state, ROUTE, &headers).await {
        Ok(account) => account,
        Err((refusal, _)) => return refusal,
    };
    state.voip.book().count(ROUTE, "ok");
    Json(json!({ "account_id": account.account_id, "name": account.name })).into_response()
}

#[derive(Deserialize)]
struct Originate {
    extension: String,
    to: String,
}

/// A number a provider can dial: digits with an optional leading `+` and the separators people type (space,
/// `-`, `.`, parentheses), 3 to 15 digits (E.164's most).
fn dialable(number: &str) -> bool {
    let number = number.trim();
    let digits = number.strip_prefix('+').unwrap_or(number);
    let only_digits_and_separators = digits.chars().all(|c| c.is_ascii_digit() || " -.()".contains(c));
    let count = digits.chars().filter(char::is_ascii_digit).count();
    only_digits_and_separators && (3..=15).contains(&count)
}

/// `POST /voip/v1/calls` `{extension, to}`: rings the extension, then dials `to`; 201 `{call_id}`. The request is
/// listed in the stats' `originate_requests` whatever its outcome; an accepted call is played into the account's
/// webhook, when it has one ([`super::playback`]).
pub(super) async fn originate(State(state): State<crate::State>, headers: HeaderMap, body: Bytes) -> Response {
    let received_at_ms = super::playback::unix_millis();
    let (response, outcome, call_id) = place(&state, &headers, &body, received_at_ms).await;
    let asked: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let text = |key: &str| asked.as_ref().and_then(|asked| asked.get(key)?.as_str().map(str::to_owned));
    let request = OriginateRequest { received_at_ms, extension: text("extension"), to: text("to"), outcome, call_id };
    state.voip.book().stats.originate_requests.push(request);
    response
}

/// Checks and places one call: the answer, its counted outcome, and the call's id when it was placed.
async fn place(
    state: &crate::State,
    headers: &HeaderMap,
    body: &[u8],
    received_at_ms: i64,
) -> (Response, &'static str, Option<String>) {
    const ROUTE: &str = "POST /voip/v1/calls";
    let account = match admit(state, ROUTE, headers).await {
        Ok(account) => account,
        Err((refusal, outcome)) => return (refusal, outcome, None),
    };
    let mut book = state.voip.book();
    let request: Originate = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            book.count(ROUTE, "bad_request");
            let detail = format!("The body must be {{extension, to}}: {error}");
            return (problem(StatusCode::BAD_REQUEST, &detail), "bad_request", None);
        }
    };
    if !account.extensions.contains(&request.extension) {
        book.count(ROUTE, "unknown_extension");
        let detail = format!("No extension {} in this account", request.extension);
        return (problem(StatusCode::NOT_FOUND, &detail), "unknown_extension", None);
    }
    if !dialable(&request.to) {
        book.count(ROUTE, "bad_number");
        return (problem(StatusCode::UNPROCESSABLE_ENTITY, "`to` is not a dialable number"), "bad_number", None);
    }
    let call = OriginatedCall {
        call_id: format!("call_{}", uuid::Uuid::new_v4().simple()),
        account_id: account.account_id,
        extension: request.extension,
        to: request.to,
        at: crate::kommo_api::unix_now(),
        received_at_ms,
    };
    let call_id = call.call_id.clone();
    book.count(ROUTE, "ok");
    book.stats.calls.push(call.clone());
    drop(book);
    let played = PlayedCall::new(&call, &account.playback);
    super::playback::start(state, played, account.webhook, account.playback);
    tracing::info!(call.id = %call_id, "originated a call");
    let answer = (StatusCode::CREATED, Json(json!({ "call_id": call_id }))).into_response();
    (answer, "ok", Some(call_id))
}

/// Any other `/voip/...` request: counted, then 404 (after a queued fault, like every provider request).
pub(super) async fn unknown(State(state): State<crate::State>, method: Method, uri: Uri) -> Response {
    let route = format!("{method} {}", uri.path());
    if let Some(fault) = injected_fault(&state, &route).await {
        return fault;
    }
    state.voip.book().count(&route, "not_found");
    problem(StatusCode::NOT_FOUND, "No such provider endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialable_numbers_are_digits_with_the_usual_separators() {
        for number in ["+5511999990000", "5511999990000", "+55 (11) 99999-0000", "102", "+1.202.555.0100"] {
            assert!(dialable(number), "{number}");
        }
        for number in ["", "+", "12", "abc", "+55 11 9999x0000", "++5511999990000", "+1234567890123456"] {
            assert!(!dialable(number), "{number}");
        }
    }

    #[test]
    fn basic_and_bearer_credentials_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        let basic = format!("basic {}", STANDARD.encode("agent:pa:ss"));
        headers.insert(header::AUTHORIZATION, basic.parse().unwrap());
        assert!(matches!(credentials(&headers),
            Some(Credentials::Basic { login, password }) if login == "agent" && password == "pa:ss"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("BEARER key-1"));
        assert!(matches!(credentials(&headers), Some(Credentials::Bearer(key)) if key == "key-1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert!(credentials(&headers).is_none());
    }
}
