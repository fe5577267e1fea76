//! The provider client against an in-test provider stand-in on a real loopback socket: the contract's
//! answers and failures under the local policy (with a password, an API key or OAuth 2.0 client
//! credentials), and the default policy refusing loopback (statically and at connect time) before the
//! stand-in sees a single connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use server::provider::{Credentials, EgressPolicy, ProviderAccount, ProviderClient, ProviderError};

const LOGIN: &str = "admin";
const PASSWORD: &str = "CANARY-provider-password-5e1d";
const API_KEY: &str = "CANARY-provider-key-8c2f";
const CLIENT_ID: &str = "kommo-client";
const CLIENT_SECRET: &str = "CANARY-client-secret-41aa";
const LOCAL: EgressPolicy = EgressPolicy { allow_insecure_local: true };
const STRICT: EgressPolicy = EgressPolicy { allow_insecure_local: false };

/// How the stand-in answers every request.
#[derive(Clone)]
enum Behavior {
    /// As the provider contract says.
    Contract,
    /// 500 to everything.
    Fails,
    /// Answers after longer than the client waits.
    Slow,
    /// 302 to another address.
    Redirects(String),
    /// 200 with a body that is not the contract's.
    Garbage,
    /// 200 with a body far larger than any answer of the contract.
    Huge,
    /// The token endpoint answers this status; the API follows the contract.
    TokenStatus(u16),
    /// The token endpoint answers 200 with this body; the API follows the contract.
    TokenBody(Value),
}

#[derive(Clone)]
struct StandIn {
    behavior: Behavior,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    /// The access tokens the token endpoint issued, in order.
    issued: Arc<Mutex<Vec<String>>>,
    /// The `Authorization` of each API request (not of token requests), in order.
    authorizations: Arc<Mutex<Vec<String>>>,
}

/// A running stand-in: its base URL and what it received.
struct Running {
    port: u16,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    issued: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    fn authorizations(&self) -> Vec<String> {
        self.authorizations.lock().unwrap().clone()
    }
}

async fn start(behavior: Behavior) -> Running {
    let stand_in = StandIn {
        behavior,
        requests: Arc::default(),
        connections: Arc::default(),
        issued: Arc::default(),
        authorizations: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = Running {
        port,
        requests: stand_in.requests.clone(),
        connections: stand_in.connections.clone(),
        issued: stand_in.issued.clone(),
        authorizations: stand_in.authorizations.clone(),
    };
    let connections = stand_in.connections.clone();
    let listener = listener.tap_io(move |_| {
        connections.fetch_add(1, Ordering::SeqCst);
    });
    let router = Router::new().fallback(answer).with_state(stand_in);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    running
}

async fn answer(
    State(stand_in): State<StandIn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    stand_in.requests.fetch_add(1, Ordering::SeqCst);
    match stand_in.behavior {
        Behavior::Contract | Behavior::TokenStatus(_) | Behavior::TokenBody(_) => {}
        Behavior::Fails => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Behavior::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::OK.into_response();
        }
        Behavior::Redirects(location) => {
            return (StatusCode::FOUND, [(header::LOCATION, format!("{location}{}", uri.path()))]).into_response();
        }
        Behavior::Garbage => return (StatusCode::OK, "<html>welcome</html>").into_response(),
        Behavior::Huge => {
            let name = "x".repeat(200 * 1024);
            return axum::Json(json!({ "account_id": "acc-42", "name": name })).into_response();
        }
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if (&method, uri.path()) == (&Method::POST, "/v1/oauth/token") {
        return token(&stand_in, authorization, &headers, &body);
    }
    stand_in.authorizations.lock().unwrap().push(authorization.to_owned());
    let issued = stand_in.issued.lock().unwrap().iter().any(|token| authorization == format!("Bearer {token}"));
    if authorization != basic(LOGIN, PASSWORD) && authorization != format!("Bearer {API_KEY}") && !issued {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match (method, uri.path()) {
        (Method::GET, "/v1/account") => {
            axum::Json(json!({ "account_id": "acc-42", "name": "Acme VoIP" })).into_response()
        }
        (Method::POST, "/v1/calls") => {
            let Ok(call) = serde_json::from_slice::<Value>(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            if call["extension"] != "101" {
                return StatusCode::NOT_FOUND.into_response();
            }
            let to = call["to"].as_str().unwrap_or_default();
            let Some(digits) = to.strip_prefix('+').filter(|digits| digits.bytes().all(|b| b.is_ascii_digit())) else {
                return StatusCode::UNPROCESSABLE_ENTITY.into_response();
            };
            (StatusCode::CREATED, axum::Json(json!({ "call_id": format!("call-101-{digits}") }))).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// `POST /v1/oauth/token`: the client by HTTP Basic, the form body, then a fresh token (or the behavior's answer).
fn token(stand_in: &StandIn, authorization: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    if content_type != Some("application/x-www-form-urlencoded") || body != b"grant_type=client_credentials" {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_request" }))).into_response();
    }
    if authorization != basic(CLIENT_ID, CLIENT_SECRET) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" }))).into_response();
    }
    match &stand_in.behavior {
        Behavior::TokenStatus(status) => return StatusCode::from_u16(*status).unwrap().into_response(),
        Behavior::TokenBody(body) => return axum::Json(body.clone()).into_response(),
        _ => {}
    }
    let mut issued = stand_in.issued.lock().unwrap();
    let access_token = format!("CANARY-access-token-{}", issued.len() + 1);
    issued.push(access_token.clone());
    axum::Json(json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": 3600 })).into_response()
}

fn password() -> Credentials {
    Credentials::Password { login: LOGIN.into(), password: SecretString::from(PASSWORD) }
}

fn api_key() -> Credentials {
    Credentials::ApiKey { key: SecretString::from(API_KEY) }
}

fn oauth2() -> Credentials {
    Credentials::OAuth2 { client_id: CLIENT_ID.into(), client_secret: SecretString::from(CLIENT_SECRET) }
}

fn wrong_password() -> Credentials {
    Credentials::Password { login: LOGIN.into(), password: SecretString::from("CANARY-wrong-password") }
}

/// No error may carry a credential, whatever it says otherwise.
fn assert_no_secret(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("CANARY"), "a credential leaked into an error: {shown}");
}

#[tokio::test]
async fn accepted_credentials_return_the_provider_account_with_a_password_or_an_api_key() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    let expected = ProviderAccount { account_id: "acc-42".into(), name: "Acme VoIP".into() };
    assert_eq!(client.check_credentials(&provider.url(), &password()).await, Ok(expected.clone()));
    assert_eq!(client.check_credentials(&provider.url(), &api_key()).await, Ok(expected.clone()));
    // A trailing slash on the configured URL does not double the path's.
    assert_eq!(client.check_credentials(&format!("{}/", provider.url()), &api_key()).await, Ok(expected));
    assert_eq!(provider.requests(), 3);
}

#[tokio::test]
async fn refused_credentials_are_classified_and_not_echoed() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    let error = client.check_credentials(&provider.url(), &wrong_password()).await.unwrap_err();
    assert_eq!(error, ProviderError::CredentialsRefused);
    assert_no_secret(&error);
    let wrong_key = Credentials::ApiKey { key: SecretString::from("CANARY-wrong-key") };
    assert_eq!(client.check_credentials(&provider.url(), &wrong_key).await, Err(ProviderError::CredentialsRefused));
    assert_eq!(provider.requests(), 2);
}

#[tokio::test]
async fn credentials_that_cannot_be_sent_are_refused_before_sending() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    for credentials in [
        Credentials::Password { login: "ad:min".into(), password: SecretString::from(PASSWORD) },
        Credentials::Password { login: String::new(), password: SecretString::from(PASSWORD) },
        Credentials::ApiKey { key: SecretString::from("CANARY key\r\nX-Injected: 1") },
        Credentials::ApiKey { key: SecretString::from("") },
    ] {
        let error = client.check_credentials(&provider.url(), &credentials).await.unwrap_err();
        assert!(matches!(error, ProviderError::InvalidCredentials(_)), "{error:?}");
        assert_no_secret(&error);
    }
    assert_eq!(provider.connections(), 0);
}

#[tokio::test]
async fn originate_returns_the_call_id_and_classifies_the_contracts_refusals() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    let url = provider.url();
    assert_eq!(client.originate(&url, &api_key(), "101", "+5511999990000").await, Ok("call-101-5511999990000".into()));
    assert_eq!(client.originate(&url, &password(), "101", "+5511999990000").await, Ok("call-101-5511999990000".into()));
    assert_eq!(
        client.originate(&url, &api_key(), "999", "+5511999990000").await,
        Err(ProviderError::Rejected { status: 404 })
    );
    assert_eq!(
        client.originate(&url, &api_key(), "101", "not a number").await,
        Err(ProviderError::Rejected { status: 422 })
    );
    assert_eq!(
        client.originate(&url, &wrong_password(), "101", "+5511999990000").await,
        Err(ProviderError::CredentialsRefused)
    );
    assert_eq!(provider.requests(), 5);
}

#[tokio::test]
async fn a_failing_provider_is_a_provider_failure() {
    let provider = start(Behavior::Fails).await;
    let client = ProviderClient::new(LOCAL);
    assert_eq!(
        client.check_credentials(&provider.url(), &password()).await,
        Err(ProviderError::ProviderFailed { status: 500 })
    );
    assert_eq!(
        client.originate(&provider.url(), &password(), "101", "+5511999990000").await,
        Err(ProviderError::ProviderFailed { status: 500 })
    );
}

#[tokio::test]
async fn answers_outside_the_contract_are_bad_responses() {
    let client = ProviderClient::new(LOCAL);
    for behavior in [Behavior::Garbage, Behavior::Huge] {
        let provider = start(behavior).await;
        let error = client.check_credentials(&provider.url(), &password()).await.unwrap_err();
        assert!(matches!(error, ProviderError::BadResponse(_)), "{error:?}");
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = ProviderClient::new(LOCAL);
    let error = client.check_credentials(&format!("http://127.0.0.1:{port}"), &password()).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Unreachable(reason) if reason.starts_with("connection failed")),
        "{error:?}"
    );
    assert_no_secret(&error);
    assert!(!error.to_string().contains(&port.to_string()), "the error names the URL: {error}");
}

#[tokio::test]
async fn a_slow_provider_times_out_after_ten_seconds() {
    let provider = start(Behavior::Slow).await;
    let client = ProviderClient::new(LOCAL);
    let started = Instant::now();
    let error = client.check_credentials(&provider.url(), &password()).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(error, ProviderError::Unreachable("timed out".into()));
    assert!((Duration::from_millis(9_500)..Duration::from_secs(12)).contains(&waited), "waited {waited:?}");
    assert_eq!(provider.requests(), 1);
}

#[tokio::test]
async fn a_redirect_is_rejected_and_never_followed() {
    let target = start(Behavior::Contract).await;
    let provider = start(Behavior::Redirects(target.url())).await;
    let client = ProviderClient::new(LOCAL);
    assert_eq!(
        client.check_credentials(&provider.url(), &password()).await,
        Err(ProviderError::Rejected { status: 302 })
    );
    assert_eq!(
        client.originate(&provider.url(), &password(), "101", "+5511999990000").await,
        Err(ProviderError::Rejected { status: 302 })
    );
    // The token request is not followed either.
    assert_eq!(
        client.check_credentials(&provider.url(), &oauth2()).await,
        Err(ProviderError::Rejected { status: 302 })
    );
    assert_eq!(provider.requests(), 3);
    assert_eq!((target.requests(), target.connections()), (0, 0));
}

#[tokio::test]
async fn the_local_policy_resolves_a_loopback_name() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    let url = format!("http://localhost:{}", provider.port);
    assert_eq!(
        client.check_credentials(&url, &password()).await.map(|account| account.account_id),
        Ok("acc-42".into())
    );
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_literals_before_connecting() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(STRICT);
    let port = provider.port;
    assert!(matches!(
        client.check_credentials(&format!("http://127.0.0.1:{port}"), &password()).await,
        Err(ProviderError::InvalidUrl(_))
    ));
    for url in [
        format!("https://127.0.0.1:{port}"),
        format!("https://[::1]:{port}"),
        format!("https://[::ffff:127.0.0.1]:{port}"),
        format!("https://2130706433:{port}"),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://[fd00:ec2::254]".to_owned(),
    ] {
        let error = client.check_credentials(&url, &password()).await.unwrap_err();
        assert!(matches!(error, ProviderError::ForbiddenAddress(_)), "{url}: {error:?}");
        let error = client.originate(&url, &password(), "101", "+5511999990000").await.unwrap_err();
        assert!(matches!(error, ProviderError::ForbiddenAddress(_)), "{url}: {error:?}");
        let error = client.check_credentials(&url, &oauth2()).await.unwrap_err();
        assert!(matches!(error, ProviderError::ForbiddenAddress(_)), "{url}: {error:?}");
    }
    assert_eq!((provider.requests(), provider.connections()), (0, 0));
}

#[tokio::test]
async fn the_default_policy_refuses_a_name_resolving_to_loopback_at_connect_time() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(STRICT);
    let url = format!("https://localhost:{}", provider.port);
    let error = client.check_credentials(&url, &password()).await.unwrap_err();
    assert_eq!(
        error,
        ProviderError::ForbiddenAddress("localhost resolves only to addresses that are not allowed".into())
    );
    assert_no_secret(&error);
    let error = client.originate(&url, &api_key(), "101", "+5511999990000").await.unwrap_err();
    assert!(matches!(error, ProviderError::ForbiddenAddress(_)), "{error:?}");
    let error = client.originate(&url, &oauth2(), "101", "+5511999990000").await.unwrap_err();
    assert!(matches!(error, ProviderError::ForbiddenAddress(_)), "{error:?}");
    assert_no_secret(&error);
    assert_eq!((provider.requests(), provider.connections()), (0, 0));
}

#[tokio::test]
async fn an_accepted_oauth_client_gets_a_token_and_the_api_call_carries_it() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    let expected = ProviderAccount { account_id: "acc-42".into(), name: "Acme VoIP".into() };
    assert_eq!(client.check_credentials(&provider.url(), &oauth2()).await, Ok(expected));
    assert_eq!(provider.issued(), ["CANARY-access-token-1"]);
    assert_eq!(provider.authorizations(), ["Bearer CANARY-access-token-1"]);
    assert_eq!(provider.requests(), 2);

    // One token per call: each originate asks for a new one and sends that one.
    let url = provider.url();
    assert_eq!(client.originate(&url, &oauth2(), "101", "+5511999990000").await, Ok("call-101-5511999990000".into()));
    assert_eq!(
        client.originate(&url, &oauth2(), "999", "+5511999990000").await,
        Err(ProviderError::Rejected { status: 404 })
    );
    assert_eq!(provider.issued().len(), 3);
    assert_eq!(provider.authorizations()[1..], ["Bearer CANARY-access-token-2", "Bearer CANARY-access-token-3"]);
    assert_eq!(provider.requests(), 6);
}

#[tokio::test]
async fn a_refused_oauth_client_is_refused_credentials_and_the_api_is_not_called() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    for credentials in [
        Credentials::OAuth2 { client_id: CLIENT_ID.into(), client_secret: SecretString::from("CANARY-wrong-secret") },
        Credentials::OAuth2 { client_id: "someone-else".into(), client_secret: SecretString::from(CLIENT_SECRET) },
    ] {
        let error = client.check_credentials(&provider.url(), &credentials).await.unwrap_err();
        assert_eq!(error, ProviderError::CredentialsRefused);
        assert_no_secret(&error);
        let error = client.originate(&provider.url(), &credentials, "101", "+5511999990000").await.unwrap_err();
        assert_eq!(error, ProviderError::CredentialsRefused);
    }
    assert_eq!(provider.requests(), 4);
    assert!(provider.issued().is_empty() && provider.authorizations().is_empty());
}

#[tokio::test]
async fn the_token_endpoints_failures_are_classified_and_the_api_is_not_called() {
    let client = ProviderClient::new(LOCAL);
    for (status, expected) in [
        (400, ProviderError::CredentialsRefused),
        (403, ProviderError::CredentialsRefused),
        (500, ProviderError::ProviderFailed { status: 500 }),
        (503, ProviderError::ProviderFailed { status: 503 }),
        (404, ProviderError::Rejected { status: 404 }),
    ] {
        let provider = start(Behavior::TokenStatus(status)).await;
        assert_eq!(client.check_credentials(&provider.url(), &oauth2()).await, Err(expected.clone()), "{status}");
        assert_eq!(client.originate(&provider.url(), &oauth2(), "101", "+5511999990000").await, Err(expected));
        assert_eq!(provider.requests(), 2, "{status}");
        assert!(provider.authorizations().is_empty());
    }
}

#[tokio::test]
async fn a_token_answer_outside_the_contract_is_a_bad_response() {
    let client = ProviderClient::new(LOCAL);
    for body in [
        json!({ "token_type": "Bearer", "expires_in": 3600 }),
        json!({ "access_token": 42, "token_type": "Bearer" }),
        json!({ "access_token": "CANARY-token", "token_type": "mac" }),
        json!({ "access_token": "", "token_type": "Bearer" }),
        json!({ "access_token": "CANARY token\r\nX-Injected: 1", "token_type": "Bearer" }),
        json!({ "access_token": "x".repeat(5000), "token_type": "Bearer" }),
    ] {
        let provider = start(Behavior::TokenBody(body.clone())).await;
        let error = client.check_credentials(&provider.url(), &oauth2()).await.unwrap_err();
        assert!(matches!(error, ProviderError::BadResponse(_)), "{body}: {error:?}");
        assert_no_secret(&error);
        assert_eq!(provider.requests(), 1);
    }
    for behavior in [Behavior::Garbage, Behavior::Huge] {
        let provider = start(behavior).await;
        let error = client.check_credentials(&provider.url(), &oauth2()).await.unwrap_err();
        assert!(matches!(error, ProviderError::BadResponse(_)), "{error:?}");
    }
    // A lower-case token type is still Bearer.
    let provider = start(Behavior::TokenBody(json!({ "access_token": API_KEY, "token_type": "bearer" }))).await;
    assert!(client.check_credentials(&provider.url(), &oauth2()).await.is_ok());
}

#[tokio::test]
async fn oauth_client_credentials_that_cannot_be_sent_are_refused_before_sending() {
    let provider = start(Behavior::Contract).await;
    let client = ProviderClient::new(LOCAL);
    for credentials in [
        Credentials::OAuth2 { client_id: "kommo:client".into(), client_secret: SecretString::from(CLIENT_SECRET) },
        Credentials::OAuth2 { client_id: String::new(), client_secret: SecretString::from(CLIENT_SECRET) },
        Credentials::OAuth2 { client_id: CLIENT_ID.into(), client_secret: SecretString::from("") },
        Credentials::OAuth2 {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from("CANARY\r\nX-Injected: 1"),
        },
    ] {
        let error = client.check_credentials(&provider.url(), &credentials).await.unwrap_err();
        assert!(matches!(error, ProviderError::InvalidCredentials(_)), "{error:?}");
        assert_no_secret(&error);
    }
    assert_eq!(provider.connections(), 0);
}
