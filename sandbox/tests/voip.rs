//! The VoIP provider stand-in over real HTTP: credentials (Basic, Bearer, OAuth 2.0 client credentials), click-to-call
//! and its refusals, injected faults, the counters, and signed Standard Webhooks deliveries reaching a listener.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use sandbox::voip::Secret;
use serde_json::{Value, json};
use support::{Harness, assert_problem};

const LOGIN: &str = "agent";
const PASSWORD: &str = "sandbox-voip-password";
const API_KEY: &str = "sandbox-voip-api-key";
const CLIENT_ID: &str = "sandbox-client";
const CLIENT_SECRET: &str = "sandbox-client-secret";
const TOKEN_ROUTE: &str = "POST /voip/v1/oauth/token";
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn url(kommo: &Harness, path: &str) -> String {
    format!("{}/voip{path}", kommo.kommo)
}

async fn account_basic(kommo: &Harness, login: &str, password: &str) -> reqwest::Response {
    kommo.http.get(url(kommo, "/v1/account")).basic_auth(login, Some(password)).send().await.unwrap()
}

async fn account_bearer(kommo: &Harness, key: &str) -> reqwest::Response {
    kommo.http.get(url(kommo, "/v1/account")).bearer_auth(key).send().await.unwrap()
}

async fn originate(kommo: &Harness, key: &str, body: Value) -> reqwest::Response {
    kommo.http.post(url(kommo, "/v1/calls")).bearer_auth(key).json(&body).send().await.unwrap()
}

/// `POST /v1/oauth/token` as a client credentials client sends it: Basic client authentication and a form body.
async fn token_request(kommo: &Harness, client: (&str, &str), form: &str) -> reqwest::Response {
    let (client_id, client_secret) = client;
    token_post(kommo, form).basic_auth(client_id, Some(client_secret)).send().await.unwrap()
}

/// `POST /v1/oauth/token` with a form body and no client authentication yet.
fn token_post(kommo: &Harness, form: &str) -> reqwest::RequestBuilder {
    let post = kommo.http.post(url(kommo, "/v1/oauth/token"));
    post.header("content-type", "application/x-www-form-urlencoded").body(form.to_owned())
}

/// A fresh access token for the configured client.
async fn access_token(kommo: &Harness) -> String {
    let response = token_request(kommo, (CLIENT_ID, CLIENT_SECRET), "grant_type=client_credentials").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Asserts an OAuth 2.0 error answer: `status` and exactly `{"error": code}`.
async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "error": code }));
}

async fn voip_stats(kommo: &Harness) -> Value {
    kommo.get("/sandbox/voip/stats", None).await.json().await.unwrap()
}

#[tokio::test]
async fn the_configured_credentials_open_the_account_by_basic_or_bearer() {
    let kommo = Harness::start().await;
    for response in [account_basic(&kommo, LOGIN, PASSWORD).await, account_bearer(&kommo, API_KEY).await] {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({ "account_id": "sandbox-voip", "name": "Sandbox VoIP" }));
    }
}

#[tokio::test]
async fn the_configured_client_gets_a_bearer_token_that_opens_the_account_and_originates() {
    let kommo = Harness::start().await;
    let response = token_request(&kommo, (CLIENT_ID, CLIENT_SECRET), "grant_type=client_credentials").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!((&body["token_type"], &body["expires_in"]), (&json!("Bearer"), &json!(3600)));
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 32 && token.bytes().all(|byte| byte.is_ascii_graphic()), "{token}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_ne!(access_token(&kommo).await, token, "every token is fresh");

    let account = account_bearer(&kommo, token).await;
    assert_eq!(account.status(), 200);
    let account: Value = account.json().await.unwrap();
    assert_eq!(account, json!({ "account_id": "sandbox-voip", "name": "Sandbox VoIP" }));
    let call = originate(&kommo, token, json!({ "extension": "101", "to": "+5511999990000" })).await;
    assert_eq!(call.status(), 201);

    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["requests"][TOKEN_ROUTE], json!({ "ok": 2 }));
    assert_eq!(stats["requests"]["GET /voip/v1/account"], json!({ "ok": 1 }));
    assert_eq!(stats["requests"]["POST /voip/v1/calls"], json!({ "ok": 1 }));
    assert_eq!(stats["calls"][0]["account_id"], "sandbox-voip");
}

#[tokio::test]
async fn the_token_endpoint_refuses_unknown_clients_and_other_grants() {
    let kommo = Harness::start().await;
    let grant = "grant_type=client_credentials";
    for client in [(CLIENT_ID, "wrong-secret"), ("someone-else", CLIENT_SECRET), (LOGIN, PASSWORD), (CLIENT_ID, "")] {
        let response = token_request(&kommo, client, grant).await;
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_oauth_error(response, 401, "invalid_client").await;
    }
    // The client's secret is not an API key, and a client cannot authenticate by Bearer or in the form.
    let bearer = token_post(&kommo, "grant_type=client_credentials").bearer_auth(API_KEY);
    assert_oauth_error(bearer.send().await.unwrap(), 401, "invalid_client").await;
    let in_form = format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}");
    assert_oauth_error(token_post(&kommo, &in_form).send().await.unwrap(), 401, "invalid_client").await;
    assert_problem(account_bearer(&kommo, CLIENT_SECRET).await, 401).await;
    assert_problem(account_basic(&kommo, CLIENT_ID, CLIENT_SECRET).await, 401).await;

    for form in ["grant_type=password&username=agent&password=x", "grant_type=authorization_code&code=c", "grant_type="]
    {
        let response = token_request(&kommo, (CLIENT_ID, CLIENT_SECRET), form).await;
        assert_oauth_error(response, 400, "unsupported_grant_type").await;
    }
    let json_body = kommo
        .http
        .post(url(&kommo, "/v1/oauth/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .json(&json!({ "grant_type": "client_credentials" }));
    assert_oauth_error(json_body.send().await.unwrap(), 400, "invalid_request").await;
    assert_oauth_error(token_request(&kommo, (CLIENT_ID, CLIENT_SECRET), "").await, 400, "invalid_request").await;

    let stats = voip_stats(&kommo).await;
    let expected = json!({ "invalid_client": 6, "unsupported_grant_type": 3, "invalid_request": 2 });
    assert_eq!(stats["requests"][TOKEN_ROUTE], expected);
}

#[tokio::test]
async fn access_tokens_expire_and_unknown_tokens_are_refused() {
    let kommo = Harness::start().await;
    let (first, second) = (access_token(&kommo).await, access_token(&kommo).await);
    assert_eq!(account_bearer(&kommo, &first).await.status(), 200);
    assert_problem(account_bearer(&kommo, &format!("{first}x")).await, 401).await;

    let expired: Value = kommo.post("/sandbox/voip/expire-tokens", json!({})).await.json().await.unwrap();
    assert_eq!(expired, json!({ "expired": 2 }));
    for token in [&first, &second] {
        let refused = account_bearer(&kommo, token).await;
        assert!(refused.headers().contains_key("www-authenticate"));
        assert_problem(refused, 401).await;
        let call = originate(&kommo, token, json!({ "extension": "101", "to": "+5511999990000" })).await;
        assert_problem(call, 401).await;
    }
    // The API key is not a token: it keeps working, and a new token does too.
    assert_eq!(account_bearer(&kommo, API_KEY).await.status(), 200);
    assert_eq!(account_bearer(&kommo, &access_token(&kommo).await).await.status(), 200);
    let expired: Value = kommo.post("/sandbox/voip/expire-tokens", json!({})).await.json().await.unwrap();
    assert_eq!(expired, json!({ "expired": 1 }));
}

#[tokio::test]
async fn an_added_account_with_an_oauth_client_gets_tokens_for_itself() {
    let kommo = Harness::start().await;
    let created = kommo
        .post(
            "/sandbox/voip/accounts",
            json!({ "login": "ana", "client_id": "client-ana", "client_secret": "secret-ana", "extensions": ["300"] }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let mut created: Value = created.json().await.unwrap();
    // It plays its originated calls with the default timings (once it has a webhook).
    let playback = created.as_object_mut().unwrap().remove("playback").unwrap();
    assert_eq!(playback, serde_json::to_value(sandbox::voip::Playback::default()).unwrap());
    assert_eq!((playback["answer_after_ms"].as_u64(), playback["talk_ms"].as_u64()), (Some(2_000), Some(5_000)));
    assert_eq!(
        created,
        json!({ "account_id": "voip-ana", "name": "Sandbox VoIP ana", "login": "ana", "client_id": "client-ana",
                "extensions": ["300"] })
    );
    let response = token_request(&kommo, ("client-ana", "secret-ana"), "grant_type=client_credentials").await;
    let token: Value = response.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();
    let shown: Value = account_bearer(&kommo, token).await.json().await.unwrap();
    assert_eq!(shown["account_id"], "voip-ana");
    assert_eq!(originate(&kommo, token, json!({ "extension": "300", "to": "+5511999990000" })).await.status(), 201);
    // A client-only account has no Basic pair.
    assert_problem(account_basic(&kommo, "ana", "secret-ana").await, 401).await;
    let listed: Value = kommo.get("/sandbox/voip/accounts", None).await.json().await.unwrap();
    assert!(!listed.to_string().contains("secret"), "{listed}");

    for refused in [
        json!({ "login": "bia", "client_id": "client-bia" }),
        json!({ "login": "bia", "client_secret": "s" }),
        json!({ "login": "bia", "client_id": "client-ana", "client_secret": "s" }),
        json!({ "login": "bia", "client_id": "a:b", "client_secret": "s" }),
    ] {
        assert_eq!(kommo.post("/sandbox/voip/accounts", refused.clone()).await.status(), 400, "{refused}");
    }
}

#[tokio::test]
async fn faults_answer_the_token_endpoint_too() {
    let kommo = Harness::start().await;
    kommo.post("/sandbox/voip/faults", json!({ "status": 503 })).await;
    let response = token_request(&kommo, (CLIENT_ID, CLIENT_SECRET), "grant_type=client_credentials").await;
    assert_problem(response, 503).await;
    access_token(&kommo).await;
    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["requests"][TOKEN_ROUTE], json!({ "fault": 1, "ok": 1 }));
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_with_401() {
    let kommo = Harness::start().await;
    let refused = [
        account_basic(&kommo, LOGIN, "wrong-password").await,
        account_basic(&kommo, "someone-else", PASSWORD).await,
        // The API key is not a password, nor the password an API key.
        account_basic(&kommo, LOGIN, API_KEY).await,
        account_bearer(&kommo, PASSWORD).await,
        account_bearer(&kommo, "").await,
        kommo.http.get(url(&kommo, "/v1/account")).send().await.unwrap(),
    ];
    for response in refused {
        assert!(response.headers().contains_key("www-authenticate"));
        assert_problem(response, 401).await;
    }
    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["requests"]["GET /voip/v1/account"], json!({ "unauthorized": 6 }));
}

#[tokio::test]
async fn an_added_account_signs_in_with_its_own_credentials_and_extensions() {
    let kommo = Harness::start().await;
    let created = kommo
        .post(
            "/sandbox/voip/accounts",
            json!({ "login": "maria", "password": "s3cret", "api_key": "key-maria", "extensions": ["200"],
                    "playback": { "talk_ms": 50, "manual": true } }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let mut created: Value = created.json().await.unwrap();
    let playback = created.as_object_mut().unwrap().remove("playback").unwrap();
    assert_eq!((playback["talk_ms"].as_u64(), playback["manual"].as_bool()), (Some(50), Some(true)));
    assert_eq!(playback["answer_after_ms"], 2_000, "what is left out takes its default");
    assert_eq!(
        created,
        json!({ "account_id": "voip-maria", "name": "Sandbox VoIP maria", "login": "maria",
                                "extensions": ["200"] })
    );
    let shown: Value = account_basic(&kommo, "maria", "s3cret").await.json().await.unwrap();
    assert_eq!(shown["account_id"], "voip-maria");
    let shown: Value = account_bearer(&kommo, "key-maria").await.json().await.unwrap();
    assert_eq!(shown["account_id"], "voip-maria");
    // Its extensions are its own.
    assert_eq!(
        originate(&kommo, "key-maria", json!({ "extension": "200", "to": "+5511999990000" })).await.status(),
        201
    );
    assert_problem(originate(&kommo, "key-maria", json!({ "extension": "101", "to": "+5511999990000" })).await, 404)
        .await;

    let key_only = kommo.post("/sandbox/voip/accounts", json!({ "login": "keyonly", "api_key": "key-only" })).await;
    assert_eq!(key_only.status(), 201);
    assert_problem(account_basic(&kommo, "keyonly", "").await, 401).await;
    assert_eq!(account_bearer(&kommo, "key-only").await.status(), 200);

    let clashes = [
        json!({ "login": "maria", "password": "other" }),
        json!({ "login": "joao", "api_key": API_KEY }),
        json!({ "login": "nobody" }),
        json!({ "login": "a:b", "password": "x" }),
        json!({ "login": "slow", "password": "x", "playback": { "talk_ms": 600_001 } }),
    ];
    for body in clashes {
        assert_eq!(kommo.post("/sandbox/voip/accounts", body.clone()).await.status(), 400, "{body}");
    }
    let accounts: Value = kommo.get("/sandbox/voip/accounts", None).await.json().await.unwrap();
    assert_eq!(accounts.as_array().unwrap().len(), 3);
    assert!(!accounts.to_string().contains("s3cret") && !accounts.to_string().contains("key-maria"));
}

#[tokio::test]
async fn originating_a_call_answers_201_with_its_id_and_records_it() {
    let kommo = Harness::start().await;
    let response = originate(&kommo, API_KEY, json!({ "extension": "101", "to": "+55 (11) 99999-0000" })).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let call_id = body["call_id"].as_str().unwrap().to_owned();
    let basic = kommo
        .http
        .post(url(&kommo, "/v1/calls"))
        .basic_auth(LOGIN, Some(PASSWORD))
        .json(&json!({ "extension": "105", "to": "+5511333330000" }))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 201);

    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["requests"]["POST /voip/v1/calls"], json!({ "ok": 2 }));
    let calls = stats["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["call_id"], call_id.as_str());
    assert_eq!(calls[0]["account_id"], "sandbox-voip");
    assert_eq!(calls[0]["extension"], "101");
    assert_eq!(calls[0]["to"], "+55 (11) 99999-0000");
    assert_ne!(calls[1]["call_id"], call_id.as_str());
}

#[tokio::test]
async fn originate_refuses_strangers_unknown_extensions_bad_numbers_and_bad_bodies() {
    let kommo = Harness::start().await;
    let good = json!({ "extension": "101", "to": "+5511999990000" });
    assert_problem(originate(&kommo, "not-a-key", good).await, 401).await;
    let unknown = assert_problem(originate(&kommo, API_KEY, json!({ "extension": "999", "to": "+5511" })).await, 404);
    assert!(unknown.await["detail"].as_str().unwrap().contains("999"));
    for to in ["", "call me", "+55 11 9999x0000", "12", "+1234567890123456"] {
        assert_problem(originate(&kommo, API_KEY, json!({ "extension": "101", "to": to })).await, 422).await;
    }
    assert_problem(originate(&kommo, API_KEY, json!({ "extension": "101" })).await, 400).await;
    let not_json = kommo.http.post(url(&kommo, "/v1/calls")).bearer_auth(API_KEY).body("{").send().await.unwrap();
    assert_problem(not_json, 400).await;

    let stats = voip_stats(&kommo).await;
    let expected = json!({ "unauthorized": 1, "unknown_extension": 1, "bad_number": 5, "bad_request": 2 });
    assert_eq!(stats["requests"]["POST /voip/v1/calls"], expected);
    assert_eq!(stats["calls"], json!([]));
}

#[tokio::test]
async fn faults_answer_the_next_requests_before_credentials_then_service_resumes() {
    let kommo = Harness::start().await;
    let queued: Value =
        kommo.post("/sandbox/voip/faults", json!({ "status": 500, "count": 2 })).await.json().await.unwrap();
    assert_eq!(queued["queued"], 1);
    assert_problem(account_bearer(&kommo, API_KEY).await, 500).await;
    // Even a stranger meets the outage first.
    assert_problem(account_bearer(&kommo, "not-a-key").await, 500).await;
    assert_eq!(account_bearer(&kommo, API_KEY).await.status(), 200);

    kommo.post("/sandbox/voip/faults", json!({ "delay_ms": 300 })).await;
    let started = Instant::now();
    assert_eq!(originate(&kommo, API_KEY, json!({ "extension": "101", "to": "+5511999990000" })).await.status(), 201);
    assert!(started.elapsed() >= Duration::from_millis(300));

    kommo.post("/sandbox/voip/faults", json!({ "status": 503, "count": 5 })).await;
    let cleared = kommo.http.delete(format!("{}/sandbox/voip/faults", kommo.kommo)).send().await.unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(account_bearer(&kommo, API_KEY).await.status(), 200);

    for bad in [json!({ "status": 200 }), json!({ "count": 1 })] {
        assert_eq!(kommo.post("/sandbox/voip/faults", bad).await.status(), 400);
    }
    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["requests"]["GET /voip/v1/account"], json!({ "fault": 2, "ok": 2 }));
    let reset = kommo.http.post(format!("{}/sandbox/voip/reset-stats", kommo.kommo)).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(voip_stats(&kommo).await, json!({ "requests": {}, "calls": [], "webhooks": [] }));
}

#[tokio::test]
async fn an_unknown_provider_path_is_a_counted_404() {
    let kommo = Harness::start().await;
    let response = kommo.http.get(url(&kommo, "/v2/account")).bearer_auth(API_KEY).send().await.unwrap();
    assert_problem(response, 404).await;
    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["requests"]["GET /voip/v2/account"], json!({ "not_found": 1 }));
}

#[test]
fn the_signer_reproduces_the_published_standard_webhooks_vector() {
    let secret = Secret::parse(WHSEC).unwrap();
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    assert_eq!(
        secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}

/// One delivery a webhook listener received: its headers and raw body.
type Deliveries = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A listener on a free loopback port answering `status` with `{"stored":true}`; returns its URL.
async fn listener(status: u16) -> (String, Deliveries) {
    let deliveries: Deliveries = Arc::default();
    let router = axum::Router::new()
        .route(
            "/hooks/voip/hook-1",
            post(move |State(log): State<Deliveries>, headers: HeaderMap, body: Bytes| async move {
                log.lock().unwrap().push((headers, body));
                (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(json!({ "stored": true })))
            }),
        )
        .with_state(deliveries.clone());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/voip/hook-1", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, router).await.unwrap() });
    (url, deliveries)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
}

#[tokio::test]
async fn a_sent_webhook_reaches_the_listener_signed_over_its_raw_body() {
    let kommo = Harness::start().await;
    let (webhook_url, deliveries) = listener(200).await;
    let event = json!({ "callId": "c-1", "from": "+5511999990000", "to": "+5511333330000", "status": "ended",
                        "extension": "101", "type": "call.ended", "direction": "inbound", "duration": 42,
                        "recordingUrl": "http://127.0.0.1:9/r.mp3" });
    let response =
        kommo.post("/sandbox/voip/send", json!({ "webhook_url": webhook_url, "secret": WHSEC, "event": event })).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"], json!({ "stored": true }));

    let (headers, body) = deliveries.lock().unwrap().pop().unwrap();
    let id = header(&headers, "webhook-id");
    assert!(id.starts_with("msg_") && id.len() > 20 && !id.contains('.'), "{id}");
    assert_eq!(answer["webhook_id"], id);
    assert_eq!(header(&headers, "content-type"), "application/json");
    let timestamp: i64 = header(&headers, "webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((timestamp - now).abs() <= 2);
    let expected = Secret::parse(WHSEC).unwrap().sign(id, timestamp, &body);
    assert_eq!(header(&headers, "webhook-signature"), expected);
    assert_eq!(answer["signature"], expected);

    let wire: Value = serde_json::from_slice(&body).unwrap();
    let start_time = wire["startTime"].as_i64().unwrap();
    assert!((start_time - now).abs() <= 2);
    assert_eq!(
        wire,
        json!({ "callId": "c-1", "voipAccountId": "sandbox-voip", "from": "+5511999990000", "to": "+5511333330000",
                "status": "ended", "startTime": start_time, "extension": "101", "type": "call.ended",
                "direction": "inbound", "duration": 42, "recordingUrl": "http://127.0.0.1:9/r.mp3" })
    );
    // The body is a `shared::FromWebhook` once the optional fields are set aside.
    let mut core = wire.as_object().unwrap().clone();
    for optional in ["type", "direction", "duration", "recordingUrl"] {
        core.remove(optional);
    }
    let call: shared::FromWebhook = serde_json::from_value(Value::Object(core)).unwrap();
    assert_eq!(call.call_id, "c-1");
    let stats = voip_stats(&kommo).await;
    assert_eq!(stats["webhooks"], json!([{ "webhook_id": id, "call_id": "c-1", "status": 200 }]));
}

#[tokio::test]
async fn a_send_can_reuse_an_id_shift_the_timestamp_or_forge_the_signature() {
    let kommo = Harness::start().await;
    let (webhook_url, deliveries) = listener(401).await;
    let event = json!({ "from": "+5511999990000", "to": "101", "status": "ringing" });
    let body = json!({ "webhook_url": webhook_url, "secret": WHSEC, "event": event, "webhook_id": "msg_retry1",
                       "timestamp_offset": -600, "signature_override": "v1," });
    let answer: Value = kommo.post("/sandbox/voip/send", body).await.json().await.unwrap();
    assert_eq!(answer["status"], 401, "the listener's status is passed on: {answer}");
    assert_eq!(answer["webhook_id"], "msg_retry1");

    let (headers, body) = deliveries.lock().unwrap().pop().unwrap();
    assert_eq!(header(&headers, "webhook-id"), "msg_retry1");
    assert_eq!(header(&headers, "webhook-signature"), "v1,");
    let timestamp: i64 = header(&headers, "webhook-timestamp").parse().unwrap();
    let wire: Value = serde_json::from_slice(&body).unwrap();
    // The event's start is now; only the delivery's timestamp is shifted.
    assert_eq!(wire["startTime"].as_i64().unwrap() - timestamp, 600);
    assert!(wire["callId"].as_str().unwrap().starts_with("sandbox-"));
    assert_eq!(wire["extension"], Value::Null);
}

#[tokio::test]
async fn a_send_refuses_bad_secrets_events_and_targets() {
    let kommo = Harness::start().await;
    let (webhook_url, deliveries) = listener(200).await;
    let event = json!({ "from": "+5511999990000", "to": "101", "status": "ringing" });
    let refused = [
        json!({ "webhook_url": webhook_url, "secret": "whsec_not base64!", "event": event }),
        json!({ "webhook_url": webhook_url, "secret": "whsec_", "event": event }),
        json!({ "webhook_url": "http://example.com/hooks/voip/x", "secret": WHSEC, "event": event }),
        json!({ "webhook_url": webhook_url, "secret": WHSEC,
                "event": { "from": "1", "to": "2", "status": "ringing", "type": "call.unknown" } }),
    ];
    for body in refused {
        let status = kommo.post("/sandbox/voip/send", body.clone()).await.status();
        assert!(status.is_client_error(), "{status} for {body}");
    }
    assert!(deliveries.lock().unwrap().is_empty());
    let closed = json!({ "webhook_url": "http://127.0.0.1:9/hooks/voip/x", "secret": WHSEC, "event": event });
    assert_eq!(kommo.post("/sandbox/voip/send", closed).await.status(), 502);
}

#[tokio::test]
async fn the_unsigned_provider_call_still_posts_a_plain_from_webhook() {
    let kommo = Harness::start().await;
    let (webhook_url, deliveries) = listener(200).await;
    let body = json!({ "webhook_url": webhook_url, "from": "+5511999990000", "to": "101", "status": "ringing" });
    let response = kommo.post("/sandbox/provider/call", body).await;
    assert_eq!(response.status(), 200);
    let (headers, body) = deliveries.lock().unwrap().pop().unwrap();
    assert!(!headers.contains_key("webhook-signature"));
    let call: shared::FromWebhook = serde_json::from_slice(&body).unwrap();
    assert_eq!(call.voip_account_id, "sandbox-voip");
}

#[tokio::test]
async fn the_provider_call_signs_when_given_the_secret() {
    let kommo = Harness::start().await;
    let (webhook_url, deliveries) = listener(200).await;
    let body = json!({ "webhook_url": webhook_url, "from": "+5511999990000", "to": "101", "status": "ringing",
                       "secret": WHSEC });
    assert_eq!(kommo.post("/sandbox/provider/call", body).await.status(), 200);
    let (headers, body) = deliveries.lock().unwrap().pop().unwrap();
    let (id, timestamp) = (header(&headers, "webhook-id"), header(&headers, "webhook-timestamp").parse().unwrap());
    assert!(id.starts_with("msg_"), "{id}");
    assert_eq!(header(&headers, "webhook-signature"), Secret::parse(WHSEC).unwrap().sign(id, timestamp, &body));
    let call: shared::FromWebhook = serde_json::from_slice(&body).unwrap();
    assert_eq!(call.start_time, timestamp);

    let unsigned = json!({ "webhook_url": webhook_url, "from": "1", "to": "2", "status": "ringing", "secret": "x!" });
    assert_eq!(kommo.post("/sandbox/provider/call", unsigned).await.status(), 400);
}
