//! Integration tests of the server: the real router (`server::http::app`) on a real SQLite file,
//! with disposable tokens minted as Kommo mints them.

#[path = "support/database.rs"]
mod database;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use server::clock::unix_secs;
use server::config::Config;
use server::crypto::{Keyring, SealContext};
use server::http::{AppState, app};
use server::store::{NewEndpoint, SettingsWrite, Store};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use webhook_signing::WebhookSecret;

const CLIENT_ID: &str = "c0ffee00-0000-4000-8000-000000000000";
const CLIENT_SECRET: &str = "integration-test-client-secret";
const BASE: &str = "https://voip.example.org";
const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct TestServer {
    router: Router,
    store: Store,
    /// The signing secret of each webhook path handed out by `webhook_path`.
    secrets: std::sync::Mutex<HashMap<String, WebhookSecret>>,
    _dir: tempfile::TempDir,
}

fn config(db_url: &str) -> Config {
    config_with(db_url, &[])
}

fn config_with(db_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<&str, &str> = HashMap::from([
        ("KOMMO_CLIENT_ID", CLIENT_ID),
        ("KOMMO_CLIENT_SECRET", CLIENT_SECRET),
        ("SECRET_KEYS", KEYS),
        ("PUBLIC_BASE_URL", BASE),
        ("DATABASE_URL", db_url),
        ("CORS_EXTRA_ORIGINS", "http://127.0.0.1:8090"),
    ]);
    vars.extend(extra.iter().copied());
    Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap()
}

/// A server on a fresh SQLite file where ALICE's and BOB's accounts have installed the integration.
async fn start() -> TestServer {
    let server = start_empty().await;
    for (kommo_account_id, _, subdomain) in [ALICE, BOB] {
        let api_domain = format!("{subdomain}.kommo.com");
        server.store.install_account(kommo_account_id, subdomain, &api_domain, None).await.unwrap();
    }
    server
}

async fn start_empty() -> TestServer {
    start_empty_with(&[]).await
}

async fn start_empty_with(extra: &[(&str, &str)]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let db_url = database::database_url(dir.path(), "test").await;
    let store = Store::connect(&db_url).await.unwrap();
    let router = app(AppState::new(config_with(&db_url, extra), store.clone(), CancellationToken::new()));
    TestServer { router, store, secrets: Default::default(), _dir: dir }
}

/// A disposable token as Kommo issues it for `account_id` / `user_id` of `subdomain`, each with
/// its own `jti`.
fn token(account_id: i64, user_id: i64, subdomain: &str) -> String {
    static MINTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = MINTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = unix_secs();
    let claims = json!({
        "iss": format!("https://{subdomain}.kommo.com"), "aud": BASE, "jti": format!("jti-{account_id}-{user_id}-{serial}"),
        "iat": now, "nbf": now, "exp": now + 1800, "account_id": account_id, "user_id": user_id,
        "subdomain": subdomain, "client_uuid": CLIENT_ID, "is_admin": true
    });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()))
        .unwrap()
}

const ALICE: (i64, i64, &str) = (1001, 501, "alpha");
const BOB: (i64, i64, &str) = (2002, 601, "bravo");

fn token_of((account, user, subdomain): (i64, i64, &str)) -> String {
    token(account, user, subdomain)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

impl TestServer {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    async fn widget(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn save(&self, who: (i64, i64, &str), body: Value) -> Reply {
        self.widget(Method::PUT, "/widget/v1/settings", Some(&token_of(who)), Some(body)).await
    }

    /// Posts a provider event signed as the provider signs it (Standard Webhooks) with the path's secret
    /// (a path we never handed out is signed with a fresh one).
    async fn hook(&self, path: &str, body: impl Into<String>) -> Reply {
        static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!("msg_{}", SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.hook_as(path, &id, unix_secs(), body.into(), None).await
    }

    /// Posts `body` with webhook id `id`, timestamp `at`, signed with `signature` when given (a full
    /// header value), else with the path's secret.
    async fn hook_as(&self, path: &str, id: &str, at: i64, body: String, signature: Option<String>) -> Reply {
        let secret = self.secrets.lock().unwrap().get(path).cloned().unwrap_or_else(WebhookSecret::generate);
        let signature = signature.unwrap_or_else(|| secret.sign(id, at, body.as_bytes()));
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", signature)
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    fn secret_of(&self, path: &str) -> WebhookSecret {
        self.secrets.lock().unwrap()[path].clone()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(self.store.pool()).await.unwrap()
    }

    /// Configures `who`'s account through the store (the settings API itself, with its Kommo and
    /// provider checks, is tested in tests/settings.rs) and returns its webhook path.
    async fn webhook_path(&self, who: (i64, i64, &str)) -> String {
        let account = self.store.account_by_kommo_id(who.0).await.unwrap().expect("the account is installed");
        let hook_id = format!("hook-{}-{}", who.0, unix_secs());
        let secret = WebhookSecret::generate();
        let keyring = Keyring::parse(KEYS).unwrap();
        let context = SealContext { column: "widget_settings.webhook_secret", account_id: account.get() };
        let sealed_secret = keyring.seal(context, &secret.to_text());
        let write = SettingsWrite {
            provider_system: "standard",
            credential_method: "password",
            provider_url: "https://voip.example.org/api",
            voip_login: "agent",
            sealed_secret: None,
            voip_account_id: "va-1",
            config: "{}".into(),
            fallback_user_id: None,
            extensions: Vec::new(),
            user_id: who.1,
            new_endpoint: NewEndpoint { hook_id: hook_id.clone(), sealed_secret, hint: "…abcd".into() },
        };
        self.store.save_settings(account, write).await.unwrap();
        let path = format!("/hooks/voip/{hook_id}");
        self.secrets.lock().unwrap().insert(path.clone(), secret);
        path
    }
}

fn call_event(call_id: &str, status: &str, extension: Option<&str>) -> Value {
    json!({"callId": call_id, "voipAccountId": "va-1", "from": "+5511987654321", "to": "+551133334444",
           "status": status, "startTime": 1_764_000_000, "extension": extension})
}

#[tokio::test]
async fn health_reports_ok_on_a_fresh_database() {
    let server = start().await;
    let reply = server.send(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn widget_requests_without_a_valid_token_are_refused_and_change_nothing() {
    let server = start().await;
    let valid = token_of(ALICE);
    let mut forged = valid.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "https://alpha.kommo.com", "aud": BASE, "jti": "x", "iat": unix_secs(), "nbf": unix_secs(),
                "exp": unix_secs() + 60, "account_id": 1001, "user_id": 501, "subdomain": "alpha", "client_uuid": CLIENT_ID}),
        &EncodingKey::from_secret(b"not-our-secret"),
    )
    .unwrap();
    let body = json!({"active": true, "voip_login": "agent", "voip_password": "pw"});
    for token in [None, Some(forged.as_str()), Some(wrong_key.as_str()), Some("garbage")] {
        for (method, path) in [
            (Method::GET, "/widget/v1/settings"),
            (Method::PUT, "/widget/v1/settings"),
            (Method::POST, "/widget/v1/push/ticket"),
        ] {
            let reply = server.widget(method.clone(), path, token, Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
            assert_eq!(reply.body["error"]["code"], "unauthorized");
        }
    }
    let huge = "a".repeat(10 * 1024);
    let reply = server.widget(Method::GET, "/widget/v1/settings", Some(&huge), None).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(server.count("widget_settings").await, 0);
}

#[tokio::test]
async fn a_changed_subdomain_updates_the_account_instead_of_creating_another() {
    let server = start().await;
    server.webhook_path(ALICE).await;
    let renamed =
        server.widget(Method::GET, "/widget/v1/settings", Some(&token(ALICE.0, ALICE.1, "alpha-renamed")), None).await;
    assert_eq!(renamed.body["credentials"]["login"], "agent");
    assert_eq!(server.count("accounts").await, 2);
    let subdomain: String = sqlx::query_scalar("SELECT subdomain FROM accounts WHERE kommo_account_id = 1001")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(subdomain, "alpha-renamed");
}

#[tokio::test]
async fn each_event_of_a_call_is_stored_in_the_inbox_and_the_call_gets_one_queued_job() {
    let server = start().await;
    let path = server.webhook_path(ALICE).await;
    for status in ["ringing", "answered", "ended"] {
        let reply = server.hook(&path, call_event("call-1", status, Some("101")).to_string()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body, json!({"stored": true, "duplicate": false}));
    }
    let events: Vec<String> = sqlx::query_scalar("SELECT event_key FROM webhook_inbox ORDER BY id")
        .fetch_all(server.store.pool())
        .await
        .unwrap();
    assert_eq!(events, ["call-1/ringing", "call-1/answered", "call-1/ended"]);
    let jobs: Vec<(String, String, String)> =
        sqlx::query_as("SELECT kind, subject, state FROM jobs").fetch_all(server.store.pool()).await.unwrap();
    assert_eq!(jobs, vec![("call".into(), "call-1".into(), "queued".into())]);
}

#[tokio::test]
async fn bad_webhooks_are_refused_with_a_reason_and_store_nothing() {
    let server = start().await;
    let path = server.webhook_path(ALICE).await;
    let mut missing_from = call_event("c", "ringing", None);
    missing_from.as_object_mut().unwrap().remove("from");
    let cases: Vec<(String, String, StatusCode, &str)> = vec![
        (
            "/hooks/voip/not-a-hook".into(),
            call_event("c", "ringing", None).to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (path.clone(), "{not json".into(), StatusCode::BAD_REQUEST, "bad_request"),
        (path.clone(), missing_from.to_string(), StatusCode::BAD_REQUEST, "bad_request"),
        (path.clone(), call_event("c", "exploded", None).to_string(), StatusCode::BAD_REQUEST, "bad_request"),
        (path.clone(), call_event("", "ringing", None).to_string(), StatusCode::BAD_REQUEST, "bad_request"),
        (
            path.clone(),
            format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (path, body, status, code) in cases {
        let reply = server.hook(&path, body).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(reply.body["error"]["code"], code);
    }
    let reply = server.hook(&path, missing_from.to_string()).await;
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("from"), "the message names the field");
    let reply = server.hook(&path, call_event("", "ringing", None).to_string()).await;
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("callId"));
    assert_eq!(server.count("webhook_inbox").await, 0);
    assert_eq!(server.count("jobs").await, 0);
}

/// Reads server-sent-event frames from `body` until one carries `event: call`, or times out.
async fn next_call_event(body: &mut Body) -> Option<Value> {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.ok()??.ok()?;
        if let Ok(data) = frame.into_data() {
            buffer.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|line| line == "event: call") {
                let data = block.lines().find_map(|line| line.strip_prefix("data: "))?;
                return serde_json::from_str(data).ok();
            }
        }
    }
}

async fn open_stream(server: &TestServer, who: (i64, i64, &str)) -> Body {
    open_stream_after(server, who, None).await
}

/// A push stream that first replays what was stored after `last_event_id`.
async fn open_stream_after(server: &TestServer, who: (i64, i64, &str), last_event_id: Option<i64>) -> Body {
    let ticket = server.widget(Method::POST, "/widget/v1/push/ticket", Some(&token_of(who)), None).await;
    assert_eq!(ticket.status, StatusCode::OK);
    let mut uri = format!("/widget/v1/push/events?ticket={}", ticket.body["ticket"].as_str().unwrap());
    if let Some(id) = last_event_id {
        uri.push_str(&format!("&last_event_id={id}"));
    }
    let response = server.router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    response.into_body()
}

#[tokio::test]
async fn a_stored_call_is_pushed_to_its_accounts_widgets_only() {
    let server = start().await;
    let alice_hook = server.webhook_path(ALICE).await;
    server.webhook_path(BOB).await;
    let mut alice_stream = open_stream(&server, ALICE).await;
    let mut bob_stream = open_stream(&server, BOB).await;

    let reply = server.hook(&alice_hook, call_event("call-9", "ringing", Some("101")).to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);

    let event = next_call_event(&mut alice_stream).await.expect("alice's widget gets the call");
    let stored: i64 = sqlx::query_scalar("SELECT id FROM webhook_inbox WHERE call_id = 'call-9'")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(
        event,
        json!({"event_id": stored, "call_id": "call-9", "from": "+5511987654321", "to": "+551133334444",
               "status": "ringing", "extension": "101"}),
        "the event carries its inbox id"
    );
    assert_eq!(next_call_event(&mut bob_stream).await, None, "bob's widget gets nothing");
}

#[tokio::test]
async fn a_replay_and_the_calls_in_progress_hold_only_the_accounts_own_calls() {
    let server = start().await;
    let (alice_hook, bob_hook) = (server.webhook_path(ALICE).await, server.webhook_path(BOB).await);
    assert_eq!(
        server.hook(&alice_hook, call_event("alice-1", "ringing", None).to_string()).await.status,
        StatusCode::OK
    );
    assert_eq!(server.hook(&bob_hook, call_event("bob-1", "ringing", None).to_string()).await.status, StatusCode::OK);

    // Bob asks for everything since the beginning: he gets his own call, never Alice's.
    let mut bob_stream = open_stream_after(&server, BOB, Some(0)).await;
    let replayed = next_call_event(&mut bob_stream).await.expect("bob's call is replayed");
    assert_eq!(replayed["call_id"], "bob-1");
    // (Who is calling may follow for bob's call; nothing of alice's account ever does.)
    while let Some(event) = next_call_event(&mut bob_stream).await {
        assert_eq!(event["call_id"], "bob-1", "nothing of alice's account: {event}");
    }
    let active = server.widget(Method::GET, "/widget/v1/calls/active", Some(&token_of(BOB)), None).await;
    assert_eq!(active.status, StatusCode::OK);
    let ids: Vec<&str> =
        active.body["calls"].as_array().unwrap().iter().map(|c| c["call_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bob-1"]);
    // Without a token nothing is listed.
    let anonymous = server.widget(Method::GET, "/widget/v1/calls/active", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_call_on_a_mapped_extension_is_pushed_to_that_user_only() {
    let server = start().await;
    let hook = server.webhook_path(ALICE).await;
    let account: i64 = sqlx::query_scalar("SELECT id FROM accounts").fetch_one(server.store.pool()).await.unwrap();
    sqlx::query("INSERT INTO voip_users (account_id, kommo_user_id, extension_id) VALUES ($1, $2, '101')")
        .bind(account)
        .bind(ALICE.1)
        .execute(server.store.pool())
        .await
        .unwrap();
    let colleague = (ALICE.0, 777, ALICE.2);
    let mut owner_stream = open_stream(&server, ALICE).await;
    let mut colleague_stream = open_stream(&server, colleague).await;
    server.hook(&hook, call_event("call-10", "ringing", Some("101")).to_string()).await;
    assert_eq!(next_call_event(&mut owner_stream).await.unwrap()["call_id"], "call-10");
    assert_eq!(next_call_event(&mut colleague_stream).await, None);
}

#[tokio::test]
async fn push_tickets_work_once() {
    let server = start().await;
    let ticket = server.widget(Method::POST, "/widget/v1/push/ticket", Some(&token_of(ALICE)), None).await;
    let uri = format!("/widget/v1/push/events?ticket={}", ticket.body["ticket"].as_str().unwrap());
    let first = server.router.clone().oneshot(Request::get(&uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = server.send(Request::get(&uri).body(Body::empty()).unwrap()).await;
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    let made_up = server.send(Request::get("/widget/v1/push/events?ticket=abc").body(Body::empty()).unwrap()).await;
    assert_eq!(made_up.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_admits_kommo_pages_and_the_local_kommo_only() {
    let server = start().await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/widget/v1/settings")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-auth-token,content-type")
            .body(Body::empty())
            .unwrap()
    };
    for origin in ["https://alpha.kommo.com", "http://127.0.0.1:8090"] {
        let reply = server.send(preflight(origin)).await;
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        let allowed = reply.headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_owned();
        assert!(allowed.contains("x-auth-token"), "{allowed}");
    }
    for origin in ["https://evil.example", "https://alpha.kommo.com.evil.example", "http://alpha.kommo.com"] {
        let reply = server.send(preflight(origin)).await;
        assert!(reply.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{origin} was allowed");
    }
}

#[tokio::test]
async fn shutdown_ends_open_push_streams_and_stops_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let db_url = database::database_url(dir.path(), "serve").await;
    Store::connect(&db_url).await.unwrap().install_account(ALICE.0, ALICE.2, "alpha.kommo.com", None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server::serve_on(listener, config(&db_url), shutdown.clone()));

    let ticket = {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /widget/v1/push/ticket HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            token_of(ALICE)
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str::<Value>(body).unwrap()["ticket"].as_str().unwrap().to_owned()
    };
    let mut events = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /widget/v1/push/events?ticket={ticket} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    events.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 64];
    let read = events.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"));

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "the server stops promptly with a push stream open");
}

#[tokio::test]
async fn a_token_of_an_account_that_never_installed_is_refused_and_creates_nothing() {
    let server = start().await;
    let stranger = (3003, 701, "charlie");
    let reply = server.save(stranger, json!({"active": true, "voip_login": "x", "voip_password": "y"})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"]["code"], "not_installed");
    let ticket = server.widget(Method::POST, "/widget/v1/push/ticket", Some(&token_of(stranger)), None).await;
    assert_eq!(ticket.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.count("accounts").await, 2);
    assert_eq!(server.count("widget_settings").await, 0);
}

#[tokio::test]
async fn a_disposable_token_works_once() {
    let server = start().await;
    let token = token_of(ALICE);
    let first = server.widget(Method::GET, "/widget/v1/settings", Some(&token), None).await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = server
        .widget(
            Method::PUT,
            "/widget/v1/settings",
            Some(&token),
            Some(json!({"active": true, "voip_login": "a", "voip_password": "b"})),
        )
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.body["error"]["message"], "the token is invalid: token already used");
    assert_eq!(server.count("widget_settings").await, 0);
}

#[tokio::test]
async fn connection_state_tells_the_widget_whether_kommo_is_connected() {
    let server = start().await;
    let installed = server.widget(Method::GET, "/widget/v1/connection", Some(&token_of(ALICE)), None).await;
    assert_eq!(installed.status, StatusCode::OK);
    assert_eq!(installed.body["state"], "installed");
    assert_eq!(installed.body["subdomain"], "alpha");
    assert_eq!(installed.body["reauthorize_url"], "https://voip.example.org/oauth/kommo/start");

    let stranger = server.widget(Method::GET, "/widget/v1/connection", Some(&token(3003, 1, "charlie")), None).await;
    assert_eq!(stranger.status, StatusCode::OK);
    assert_eq!(stranger.body["state"], "not_installed");
    assert_eq!(server.count("accounts").await, 2, "asking does not create an account");

    let unauthenticated = server.widget(Method::GET, "/widget/v1/connection", None, None).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
}

async fn disable_hook(server: &TestServer, client_uuid: &str, account_id: &str, signature: &str) -> Reply {
    let uri = format!("/oauth/kommo/disable?client_uuid={client_uuid}&account_id={account_id}&signature={signature}");
    server.send(Request::get(uri).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn the_disable_hook_with_a_valid_signature_wipes_tokens_and_stops_the_widget() {
    let server = start().await;
    server.webhook_path(ALICE).await;
    let alice: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE kommo_account_id = 1001")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    server
        .store
        .store_tokens(
            server.store.account_by_kommo_id(1001).await.unwrap().unwrap(),
            "v1.k1.sealed-a",
            "v1.k1.sealed-r",
            unix_secs() + 3600,
        )
        .await
        .unwrap();

    let signature = server::oauth::disable_signature(CLIENT_SECRET, CLIENT_ID, "1001");
    let reply = disable_hook(&server, CLIENT_ID, "1001", &signature).await;
    assert_eq!(reply.status, StatusCode::OK);

    assert_eq!(server.count("kommo_auth_tokens").await, 0);
    let state: String = sqlx::query_scalar("SELECT state FROM accounts WHERE id = $1")
        .bind(alice)
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(state, "disabled");
    let widget = server.widget(Method::GET, "/widget/v1/settings", Some(&token_of(ALICE)), None).await;
    assert_eq!(widget.status, StatusCode::UNAUTHORIZED);
    let connection = server.widget(Method::GET, "/widget/v1/connection", Some(&token_of(ALICE)), None).await;
    assert_eq!(connection.body["state"], "disabled");
    let bob = server.widget(Method::GET, "/widget/v1/settings", Some(&token_of(BOB)), None).await;
    assert_eq!(bob.status, StatusCode::OK, "other accounts are untouched");
}

#[tokio::test]
async fn the_disable_hook_with_a_bad_signature_changes_nothing() {
    let server = start().await;
    let alice = server.store.account_by_kommo_id(1001).await.unwrap().unwrap();
    server.store.store_tokens(alice, "v1.k1.sealed-a", "v1.k1.sealed-r", unix_secs() + 3600).await.unwrap();
    let good = server::oauth::disable_signature(CLIENT_SECRET, CLIENT_ID, "1001");
    let mut flipped = good.clone();
    flipped.replace_range(0..1, if good.starts_with('0') { "1" } else { "0" });
    let cases = [
        (CLIENT_ID, "1001", flipped.as_str()),
        (CLIENT_ID, "1001", "not-hex"),
        (CLIENT_ID, "1001", ""),
        (CLIENT_ID, "2002", good.as_str()),
        ("someone-else", "1001", good.as_str()),
        (CLIENT_ID, "1001", &server::oauth::disable_signature("wrong-secret", CLIENT_ID, "1001")),
    ];
    for (client_uuid, account_id, signature) in cases {
        let reply = disable_hook(&server, client_uuid, account_id, signature).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{client_uuid} {account_id} {signature}");
    }
    assert_eq!(server.count("kommo_auth_tokens").await, 1);
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM accounts").fetch_all(server.store.pool()).await.unwrap();
    assert_eq!(states, vec!["installed", "installed"]);
}

// ---------------------------------------------------------------------------------------------------------
// Provider webhooks: signatures, duplicates, refusals (each storing nothing)
// ---------------------------------------------------------------------------------------------------------

async fn stored_rows(server: &TestServer) -> (i64, i64) {
    (server.count("webhook_inbox").await, server.count("jobs").await)
}

#[tokio::test]
async fn a_repeated_delivery_or_the_same_event_under_a_new_id_is_answered_200_and_stored_once() {
    let server = start().await;
    let path = server.webhook_path(ALICE).await;
    let body = call_event("call-7", "ended", Some("101")).to_string();
    let now = unix_secs();
    let first = server.hook_as(&path, "msg_a", now, body.clone(), None).await;
    assert_eq!(first.body, json!({"stored": true, "duplicate": false}), "{}", first.text);
    let again = server.hook_as(&path, "msg_a", now + 5, body.clone(), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, json!({"stored": true, "duplicate": true}));
    let new_id = server.hook_as(&path, "msg_b", now, body, None).await;
    assert_eq!(new_id.body, json!({"stored": true, "duplicate": true}));
    assert_eq!(stored_rows(&server).await, (1, 1));
}

#[tokio::test]
async fn fifty_concurrent_copies_of_one_delivery_are_all_acknowledged_and_stored_once() {
    let server = std::sync::Arc::new(start().await);
    let path = server.webhook_path(ALICE).await;
    let body = call_event("call-50", "ended", Some("101")).to_string();
    let now = unix_secs();
    let mut copies = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (server, path, body) = (server.clone(), path.clone(), body.clone());
        copies.spawn(async move { server.hook_as(&path, "msg_same", now, body, None).await });
    }
    let mut fresh = 0;
    while let Some(reply) = copies.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        fresh += usize::from(reply.body["duplicate"] == json!(false));
    }
    assert_eq!(fresh, 1, "exactly one copy is the new one");
    assert_eq!(stored_rows(&server).await, (1, 1));
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_other_accounts_paths_are_refused_and_store_nothing() {
    let server = start().await;
    let alice = server.webhook_path(ALICE).await;
    let bob = server.webhook_path(BOB).await;
    let body = call_event("call-s", "ended", Some("101")).to_string();
    let now = unix_secs();
    let alice_secret = server.secret_of(&alice);
    let good = alice_secret.sign("msg_s", now, body.as_bytes());
    let other_body = call_event("call-t", "ended", Some("101")).to_string();
    let cases: Vec<(&str, String, i64, Option<String>, &str)> = vec![
        ("no signature", alice.clone(), now, Some(String::new()), "signature missing"),
        ("empty v1", alice.clone(), now, Some("v1,".into()), "empty signature"),
        ("short v1", alice.clone(), now, Some("v1,AAAA".into()), "short signature"),
        ("wrong secret", alice.clone(), now, Some(WebhookSecret::generate().sign("msg_s", now, body.as_bytes())), ""),
        (
            "another body's signature",
            alice.clone(),
            now,
            Some(alice_secret.sign("msg_s", now, other_body.as_bytes())),
            "",
        ),
        // A clear minute past the 300 s tolerance on either side: the server reads its clock later than
        // `now` was taken, and a slow run must not carry a future timestamp back inside the window (the
        // exact boundary is `signing`'s unit test, on a fixed clock).
        ("stale timestamp", alice.clone(), now - 360, Some(alice_secret.sign("msg_s", now - 360, body.as_bytes())), ""),
        (
            "future timestamp",
            alice.clone(),
            now + 360,
            Some(alice_secret.sign("msg_s", now + 360, body.as_bytes())),
            "",
        ),
        ("alice's signature on bob's path", bob.clone(), now, Some(good.clone()), ""),
        ("v1a only", alice.clone(), now, Some(good.replace("v1,", "v1a,")), ""),
    ];
    for (name, path, at, signature, _) in cases {
        let reply = server.hook_as(&path, "msg_s", at, body.clone(), signature).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}: {}", reply.text);
        assert_eq!(reply.body["error"]["code"], "bad_signature", "{name}");
    }
    assert_eq!(stored_rows(&server).await, (0, 0));
    // One right signature among wrong ones verifies (several signatures during a secret rotation).
    let mixed = format!("v1,{} {good} v1,AAAA", "A".repeat(43) + "=");
    let reply = server.hook_as(&alice, "msg_s", now, body, Some(mixed)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(stored_rows(&server).await, (1, 1));
}

/// Rotates `who`'s signing secret through the widget API; returns the new one.
async fn rotate(server: &TestServer, who: (i64, i64, &str)) -> WebhookSecret {
    let rotated = server.widget(Method::POST, "/widget/v1/settings/webhook-secret", Some(&token_of(who)), None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    WebhookSecret::parse(rotated.body["signing_secret"].as_str().expect("the new secret is shown once")).unwrap()
}

/// Posts the end of call of call `id` signed with `secret`; returns the status.
async fn post_signed(server: &TestServer, path: &str, id: &str, secret: &WebhookSecret) -> StatusCode {
    let now = unix_secs();
    let body = call_event(id, "ended", None).to_string();
    let signature = secret.sign(id, now, body.as_bytes());
    server.hook_as(path, id, now, body, Some(signature)).await.status
}

#[tokio::test]
async fn after_a_secret_rotation_both_secrets_verify_until_the_previous_one_expires() {
    let server = start().await;
    let alice = server.webhook_path(ALICE).await;
    let bob = server.webhook_path(BOB).await;
    let (alice_old, bob_old) = (server.secret_of(&alice), server.secret_of(&bob));
    let alice_new = rotate(&server, ALICE).await;
    assert_eq!(post_signed(&server, &alice, "msg_old", &alice_old).await, StatusCode::OK, "the previous secret");
    assert_eq!(post_signed(&server, &alice, "msg_new", &alice_new).await, StatusCode::OK, "the new secret");
    // Bob's previous secret reached its end (24 h after the rotation): only the new one verifies.
    let bob_new = rotate(&server, BOB).await;
    let bob_account = server.store.account_by_kommo_id(BOB.0).await.unwrap().unwrap();
    sqlx::query("UPDATE widget_settings SET previous_secret_until = $1 WHERE account_id = $2")
        .bind(unix_secs() - 1)
        .bind(bob_account.get())
        .execute(server.store.pool())
        .await
        .unwrap();
    assert_eq!(post_signed(&server, &bob, "msg_late", &bob_old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(post_signed(&server, &bob, "msg_bob", &bob_new).await, StatusCode::OK);
    assert_eq!(stored_rows(&server).await, (3, 3));
}

#[tokio::test]
async fn a_turned_off_integration_refuses_signed_webhooks_with_409_and_stores_nothing() {
    let server = start().await;
    let path = server.webhook_path(ALICE).await;
    sqlx::query("UPDATE widget_settings SET active = FALSE").execute(server.store.pool()).await.unwrap();
    let reply = server.hook(&path, call_event("call-off", "ringing", None).to_string()).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body["error"]["code"], "integration_inactive");
    assert_eq!(stored_rows(&server).await, (0, 0));
}

// ---------------------------------------------------------------------------------------------------------
// The manager's call result and the account's failed deliveries
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_call_result_is_accepted_once_for_a_call_of_the_account_and_queues_the_call() {
    let server = start().await;
    let path = server.webhook_path(ALICE).await;
    server.webhook_path(BOB).await;
    let result = json!({"note": "Wants a quote", "call_status": 4, "quality": 5,
                        "follow_up": {"text": "Send the quote", "due_at": unix_secs() + 86_400}});
    let url = "/widget/v1/calls/call-r/result";
    let unknown = server.widget(Method::POST, url, Some(&token_of(ALICE)), Some(result.clone())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "no event of that call arrived yet");
    server.hook(&path, call_event("call-r", "ringing", Some("101")).to_string()).await;
    let bobs = server.widget(Method::POST, url, Some(&token_of(BOB)), Some(result.clone())).await;
    assert_eq!(bobs.status, StatusCode::NOT_FOUND, "another account's call is not found");
    for (bad, status, field) in [
        (json!({"call_status": 9}), StatusCode::BAD_REQUEST, "call_status"),
        (json!({"call_status": 4, "account_id": 2002}), StatusCode::BAD_REQUEST, "account_id"),
        (json!({"call_status": 4, "quality": 6}), StatusCode::UNPROCESSABLE_ENTITY, "quality"),
        (
            json!({"call_status": 4, "follow_up": {"text": "", "due_at": unix_secs() + 60}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "follow_up.text",
        ),
    ] {
        let reply = server.widget(Method::POST, url, Some(&token_of(ALICE)), Some(bad)).await;
        assert_eq!(reply.status, status, "{field}: {}", reply.text);
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(reply.body["error"]["fields"][0]["field"], field, "{}", reply.text);
        } else {
            assert!(reply.text.contains(field), "the message names {field}: {}", reply.text);
        }
    }
    let accepted = server.widget(Method::POST, url, Some(&token_of(ALICE)), Some(result.clone())).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    let again = server.widget(Method::POST, url, Some(&token_of(ALICE)), Some(result)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(server.count("call_results").await, 1);
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE subject = 'call-r' AND state = 'queued'")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(queued, 1, "the event's job covers the result too");
}

async fn park_dead_letter(server: &TestServer, who: (i64, i64, &str), call_id: &str) -> i64 {
    let account = server.store.account_by_kommo_id(who.0).await.unwrap().unwrap();
    sqlx::query_scalar(
        "INSERT INTO jobs (account_id, kind, subject, state, attempts, run_at, last_error, created_at, updated_at)
         VALUES ($1, 'call', $2, 'dead', 10, 0, 'Kommo refused the request (400): bad phone', 0, $3) RETURNING id",
    )
    .bind(account.get())
    .bind(call_id)
    .bind(unix_secs() * 1000)
    .fetch_one(server.store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn an_admin_sees_and_retries_only_their_accounts_failed_deliveries() {
    let server = start().await;
    let alices = park_dead_letter(&server, ALICE, "call-a").await;
    let bobs = park_dead_letter(&server, BOB, "call-b").await;
    let list = server.widget(Method::GET, "/widget/v1/deliveries/failed", Some(&token_of(ALICE)), None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["call_id"], "call-a");
    assert_eq!(list.body[0]["attempts"], 10);
    assert_eq!(list.body[0]["last_error"], "Kommo refused the request (400): bad phone");
    let cross = format!("/widget/v1/deliveries/failed/{bobs}/retry");
    assert_eq!(server.widget(Method::POST, &cross, Some(&token_of(ALICE)), None).await.status, StatusCode::NOT_FOUND);
    let own = format!("/widget/v1/deliveries/failed/{alices}/retry");
    assert_eq!(server.widget(Method::POST, &own, Some(&token_of(ALICE)), None).await.status, StatusCode::ACCEPTED);
    let states: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT subject, state, attempts FROM jobs ORDER BY subject")
            .fetch_all(server.store.pool())
            .await
            .unwrap();
    assert_eq!(states, vec![("call-a".into(), "queued".into(), 0), ("call-b".into(), "dead".into(), 10)]);
}

// ---------------------------------------------------------------------------------------------------------
// Operator endpoints
// ---------------------------------------------------------------------------------------------------------

const OPERATOR_TOKEN: &str = "operator-token-0123456789abcdef0123456789";

#[tokio::test]
async fn operator_endpoints_need_the_operator_token_and_no_other_credential_opens_them() {
    let server = start_empty_with(&[("OPERATOR_TOKEN", OPERATOR_TOKEN)]).await;
    for (kommo_account_id, _, subdomain) in [ALICE, BOB] {
        let api_domain = format!("{subdomain}.kommo.com");
        server.store.install_account(kommo_account_id, subdomain, &api_domain, None).await.unwrap();
    }
    let hook = server.webhook_path(ALICE).await;
    server.hook(&hook, call_event("call-m", "ended", None).to_string()).await;
    server.hook_as(&hook, "msg_bad", unix_secs(), "{}".into(), Some("v1,AAAA".into())).await;
    park_dead_letter(&server, BOB, "call-b").await;
    let hook_id = hook.trim_start_matches("/hooks/voip/").to_owned();
    for path in ["/metrics", "/operator/dead-letters"] {
        let credentials = [
            None,
            Some(("X-Auth-Token".to_owned(), token_of(ALICE))),
            Some(("Authorization".to_owned(), format!("Bearer {}", token_of(ALICE)))),
            Some(("Authorization".to_owned(), format!("Bearer {hook_id}"))),
            Some(("Authorization".to_owned(), format!("Bearer {OPERATOR_TOKEN}x"))),
            Some(("Authorization".to_owned(), format!("Bearer {CLIENT_SECRET}"))),
        ];
        for credential in credentials {
            let mut request = Request::get(path);
            if let Some((name, value)) = &credential {
                request = request.header(name, value);
            }
            let reply = server.send(request.body(Body::empty()).unwrap()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} with {credential:?}");
        }
    }
    let operator = |path: &str| {
        Request::get(path).header("Authorization", format!("Bearer {OPERATOR_TOKEN}")).body(Body::empty()).unwrap()
    };
    let metrics = server.send(operator("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "webhooks_received_total{outcome=\"stored\"}",
        "webhooks_refused_total{reason=\"bad_signature\"}",
        "jobs_queued 1",
        "jobs_dead 1",
        // No account synced its phone index here.
        "phone_index_accounts{state=\"ready\"} 0",
        "phone_index_numbers 0",
    ] {
        assert!(metrics.text.contains(line), "/metrics shows {line}:\n{}", metrics.text);
    }
    let letters = server.send(operator("/operator/dead-letters")).await;
    assert_eq!(letters.status, StatusCode::OK);
    assert_eq!(letters.body[0]["call_id"], "call-b");
    assert!(letters.body[0]["account_id"].is_i64());
}

#[tokio::test]
async fn without_an_operator_token_the_public_listener_has_no_operator_endpoints() {
    let server = start().await;
    for path in ["/metrics", "/operator/dead-letters"] {
        let reply = server.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}
