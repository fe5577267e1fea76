//! The Kommo stand-in over real HTTP: its OAuth rules (single-use codes, rotation with Kommo's grace, client
//! and Redirect URI checks), bearer checks, pagination, the 7 requests per second limit, faults, the install,
//! consent and disable requests it sends, and the counters.

mod support;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::{ADMIN_ID, CLIENT_ID, DEFAULT_ACCOUNT, Harness, SECRET, assert_problem};

fn token(pair: &Value, name: &str) -> String {
    pair[name].as_str().unwrap_or_else(|| panic!("no {name} in {pair}")).to_owned()
}

#[tokio::test]
async fn token_response_has_exactly_kommos_fields_and_opens_the_account() {
    let kommo = Harness::start().await;
    let pair = kommo.connected(41).await;
    let mut keys: Vec<&str> = pair.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["access_token", "expires_in", "refresh_token", "server_time", "token_type"]);
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 86_400);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((pair["server_time"].as_i64().unwrap() - now).abs() <= 2);

    let response = kommo.get("/api/v4/account", Some(&token(&pair, "access_token"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/hal+json");
    let account: Value = response.json().await.unwrap();
    assert_eq!(account["id"], 41);
    assert_eq!(account["subdomain"], "acct41");
    assert_eq!(account["current_user_id"], ADMIN_ID);
    assert_eq!(account["_links"]["self"]["href"], format!("{}/api/v4/account", kommo.kommo));
}

#[tokio::test]
async fn the_access_token_decides_the_account() {
    let kommo = Harness::start().await;
    let first = kommo.connected(51).await;
    let second = kommo.connected(52).await;
    for (pair, id) in [(&first, 51), (&second, 52)] {
        let account: Value =
            kommo.get("/api/v4/account", Some(&token(pair, "access_token"))).await.json().await.unwrap();
        assert_eq!(account["id"], id);
    }
}

#[tokio::test]
async fn an_authorization_code_works_once_and_a_replay_revokes_its_tokens() {
    let kommo = Harness::start().await;
    kommo.account(61).await;
    let code = kommo.install(61).await;
    let pair = kommo.exchange(&code).await;
    let access = token(&pair, "access_token");
    assert_eq!(kommo.get("/api/v4/account", Some(&access)).await.status(), 200);

    let replay = assert_problem(kommo.token_request(("authorization_code", &code)).await, 400).await;
    assert!(replay["hint"].as_str().unwrap().starts_with("invalid_grant"), "{replay}");
    assert_problem(kommo.get("/api/v4/account", Some(&access)).await, 401).await;
    assert_problem(kommo.refresh(&token(&pair, "refresh_token")).await, 400).await;
    let stats = kommo.stats().await;
    assert_eq!(stats["code_replays"], 1);
    assert_eq!(stats["invalid_grant"], 2);
    let shown: Value = kommo.get("/sandbox/kommo/accounts/61", None).await.json().await.unwrap();
    assert_eq!(shown["installed"], false);
}

#[tokio::test]
async fn an_expired_or_unknown_code_is_refused() {
    let kommo = Harness::with(Duration::from_secs(86_400), Duration::from_secs(1)).await;
    kommo.account(62).await;
    let code = kommo.install(62).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let body = assert_problem(kommo.token_request(("authorization_code", &code)).await, 400).await;
    assert_eq!(body["hint"], "invalid_grant: Authorization code has expired");
    assert_problem(kommo.token_request(("authorization_code", "def502000000")).await, 400).await;
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_lives_until_the_new_one_is_used() {
    let kommo = Harness::start().await;
    let first = kommo.connected(71).await;
    let old = token(&first, "refresh_token");
    let second: Value = kommo.refresh(&old).await.json().await.unwrap();
    assert_ne!(token(&second, "refresh_token"), old);
    assert_ne!(token(&second, "access_token"), token(&first, "access_token"));

    // The answer was lost: the old refresh token still works (Kommo's grace) and gives another pair.
    let retried = kommo.refresh(&old).await;
    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    // Using the newest refresh token ends the grace of the old one.
    let third = kommo.refresh(&token(&retried, "refresh_token")).await;
    assert_eq!(third.status(), 200);
    let refused = assert_problem(kommo.refresh(&old).await, 400).await;
    assert_eq!(refused["hint"], "invalid_grant: Refresh token has been revoked");

    let stats = kommo.stats().await;
    assert_eq!(stats["refresh_grants"], 3);
    assert_eq!(stats["accounts"]["71"]["refresh_grants"], 3);
    assert_eq!(stats["invalid_grant"], 1);
}

#[tokio::test]
async fn a_wrong_client_or_redirect_uri_is_refused() {
    let kommo = Harness::start().await;
    kommo.account(81).await;
    let code = kommo.install(81).await;
    let body = |client_id: &str, secret: &str, redirect_uri: &str| {
        json!({ "client_id": client_id, "client_secret": secret, "grant_type": "authorization_code",
                "code": code, "redirect_uri": redirect_uri })
    };
    let redirect = kommo.redirect_uri();
    assert_problem(kommo.post("/oauth2/access_token", body(CLIENT_ID, "wrong-secret", &redirect)).await, 401).await;
    assert_problem(kommo.post("/oauth2/access_token", body("another-id", SECRET, &redirect)).await, 401).await;
    let elsewhere = format!("{}/elsewhere", kommo.server);
    assert_problem(kommo.post("/oauth2/access_token", body(CLIENT_ID, SECRET, &elsewhere)).await, 400).await;
    let missing = json!({ "client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "password",
                          "redirect_uri": redirect });
    assert_problem(kommo.post("/oauth2/access_token", missing).await, 400).await;
    // None of these used the code up.
    kommo.exchange(&code).await;
    assert_eq!(kommo.stats().await["unauthorized"], 2);
}

#[tokio::test]
async fn access_tokens_expire_after_their_lifetime_and_on_request() {
    let kommo = Harness::with(Duration::from_secs(1), Duration::from_secs(1200)).await;
    let pair = kommo.connected(91).await;
    assert_eq!(pair["expires_in"], 1);
    let access = token(&pair, "access_token");
    assert_eq!(kommo.get("/api/v4/account", Some(&access)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let body = assert_problem(kommo.get("/api/v4/account", Some(&access)).await, 401).await;
    assert_eq!(body["detail"], "Access token has expired");
    // A refresh gives a working token again; the control endpoint expires it at once.
    let fresh: Value = kommo.refresh(&token(&pair, "refresh_token")).await.json().await.unwrap();
    let access = token(&fresh, "access_token");
    assert_eq!(kommo.get("/api/v4/account", Some(&access)).await.status(), 200);
    let expired: Value = kommo.post("/sandbox/kommo/expire", json!({ "account_id": 91 })).await.json().await.unwrap();
    assert_eq!(expired["expired"], 1);
    assert_problem(kommo.get("/api/v4/account", Some(&access)).await, 401).await;
}

#[tokio::test]
async fn missing_or_unknown_bearer_tokens_get_401() {
    let kommo = Harness::start().await;
    assert_problem(kommo.get("/api/v4/account", None).await, 401).await;
    assert_problem(kommo.get("/api/v4/users", Some("kat_not-a-token")).await, 401).await;
    let stats = kommo.stats().await;
    assert_eq!(stats["unauthorized"], 2);
    assert_eq!(stats["requests"]["GET /api/v4/account"], 1);
    assert_eq!(stats["requests"]["GET /api/v4/users"], 1);
}

#[tokio::test]
async fn users_are_paged_with_hal_links_and_an_empty_page_is_204() {
    let kommo = Harness::start().await;
    let access = token(&kommo.connected(101).await, "access_token");
    let page: Value = kommo.get("/api/v4/users?page=1&limit=250", Some(&access)).await.json().await.unwrap();
    let users = page["_embedded"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 4);
    assert_eq!(users[0]["id"], ADMIN_ID);
    assert_eq!(users[0]["rights"]["is_admin"], true);
    let inactive: Vec<&Value> = users.iter().filter(|user| user["rights"]["is_active"] == false).collect();
    assert_eq!(inactive.len(), 1);
    assert_eq!(page["_page"], 1);
    assert!(page["_links"]["next"].is_null());

    let first: Value = kommo.get("/api/v4/users?page=1&limit=3", Some(&access)).await.json().await.unwrap();
    let next = first["_links"]["next"]["href"].as_str().unwrap();
    assert_eq!(next, format!("{}/api/v4/users?page=2&limit=3", kommo.kommo));
    let second: Value = kommo.http.get(next).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    assert_eq!(second["_embedded"]["users"].as_array().unwrap().len(), 1);
    assert!(second["_links"]["next"].is_null());

    let empty = kommo.get("/api/v4/users?page=2&limit=250", Some(&access)).await;
    assert_eq!(empty.status(), 204);
    assert!(empty.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_limit_above_250_or_a_bad_page_is_refused() {
    let kommo = Harness::start().await;
    let access = token(&kommo.connected(111).await, "access_token");
    let body = assert_problem(kommo.get("/api/v4/users?limit=251", Some(&access)).await, 422).await;
    assert_eq!(body["detail"], "Limit 250 per page");
    assert_problem(kommo.get("/api/v4/users?page=0", Some(&access)).await, 400).await;
    assert_problem(kommo.get("/api/v4/users?limit=abc", Some(&access)).await, 400).await;
}

#[tokio::test]
async fn more_than_7_requests_in_a_second_get_429_with_retry_after() {
    let kommo = Harness::start().await;
    let access = token(&kommo.connected(121).await, "access_token");
    // The code exchange counted too; let its second pass.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    kommo.post("/sandbox/kommo/reset-stats", json!({})).await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..9 {
        let response = kommo.get("/api/v4/account", Some(&access)).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 && limited.is_none() {
            assert_eq!(response.headers()["retry-after"], "1");
            limited = Some(assert_problem(response, 429).await);
        }
    }
    assert!(started.elapsed() < Duration::from_millis(900), "too slow to test the window");
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 429, 429]);
    let stats = kommo.stats().await;
    assert_eq!(stats["too_many_requests"], 2);
    assert_eq!(stats["accounts"]["121"]["max_requests_per_second"], 9);
    assert_eq!(stats["accounts"]["121"]["requests"], 9);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(kommo.get("/api/v4/account", Some(&access)).await.status(), 200);
}

#[tokio::test]
async fn seven_requests_spaced_over_a_second_are_fine_for_each_account() {
    let kommo = Harness::start().await;
    let first = token(&kommo.connected(131).await, "access_token");
    let second = token(&kommo.connected(132).await, "access_token");
    tokio::time::sleep(Duration::from_millis(1050)).await;
    for _ in 0..7 {
        assert_eq!(kommo.get("/api/v4/account", Some(&first)).await.status(), 200);
        assert_eq!(kommo.get("/api/v4/account", Some(&second)).await.status(), 200);
    }
}

#[tokio::test]
async fn faults_answer_their_status_for_count_requests_then_stop() {
    let kommo = Harness::start().await;
    let access = token(&kommo.connected(141).await, "access_token");
    let other = token(&kommo.connected(142).await, "access_token");
    let fault = json!({ "account_id": 141, "status": 429, "count": 2, "retry_after": 30 });
    assert_eq!(kommo.post("/sandbox/kommo/faults", fault).await.status(), 200);
    assert_eq!(kommo.get("/api/v4/account", Some(&other)).await.status(), 200);
    for _ in 0..2 {
        let response = kommo.get("/api/v4/account", Some(&access)).await;
        assert_eq!(response.headers()["retry-after"], "30");
        assert_problem(response, 429).await;
    }
    assert_eq!(kommo.get("/api/v4/account", Some(&access)).await.status(), 200);

    kommo.post("/sandbox/kommo/faults", json!({ "status": 402 })).await;
    assert_problem(kommo.get("/api/v4/users", Some(&other)).await, 402).await;
    kommo.post("/sandbox/kommo/faults", json!({ "delay_ms": 300 })).await;
    let started = Instant::now();
    assert_eq!(kommo.get("/api/v4/account", Some(&other)).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(kommo.stats().await["faults_served"], 4);
    assert_eq!(kommo.post("/sandbox/kommo/faults", json!({ "status": 200 })).await.status(), 400);
}

#[tokio::test]
async fn an_oauth_fault_hits_the_token_endpoint_without_using_the_grant() {
    let kommo = Harness::start().await;
    kommo.account(151).await;
    let code = kommo.install(151).await;
    kommo.post("/sandbox/kommo/faults", json!({ "status": 503, "target": "oauth" })).await;
    assert_problem(kommo.token_request(("authorization_code", &code)).await, 503).await;
    kommo.exchange(&code).await;
}

#[tokio::test]
async fn install_sends_kommos_request_to_the_redirect_uri() {
    let kommo = Harness::start().await;
    kommo.account(161).await;
    let response: Value =
        kommo.post("/sandbox/kommo/install", json!({ "account_id": 161 })).await.json().await.unwrap();
    assert_eq!(response["status"], 200);
    assert!(response["elapsed_ms"].is_u64());
    let received = kommo.received();
    let install = received.iter().find(|request| request.path == "callback").unwrap();
    assert_eq!(install.user_agent, "amoService-oAuth-Code-Sender/1.0");
    assert_eq!(install.param("code"), response["code"].as_str());
    assert_eq!(install.param("referer"), Some(kommo.kommo_host.as_str()));
    assert_eq!(install.param("client_id"), Some(CLIENT_ID));
    assert_eq!(install.param("from_widget"), Some("1"));
    // A forged referer is sent as asked.
    kommo.post("/sandbox/kommo/install", json!({ "account_id": 161, "referer": "evil.example" })).await;
    assert_eq!(kommo.received()[1].param("referer"), Some("evil.example"));
    // An unknown account cannot be installed.
    assert_eq!(kommo.post("/sandbox/kommo/install", json!({ "account_id": 999 })).await.status(), 400);
}

fn signature(account_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{CLIENT_ID}|{account_id}").as_bytes());
    mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn disable_signature_matches_the_handbook_vector() {
    assert_eq!(
        sandbox::kommo_api::disable_signature("test-client-secret", "c0ffee00-0000-4000-8000-000000000000", "12345678"),
        "ff17265ede323d4b41c1c106b5a226411a775a47a9a3461a32cd61d217f77b63"
    );
}

#[tokio::test]
async fn disable_revokes_the_tokens_and_calls_the_signed_hook() {
    let kommo = Harness::start().await;
    let pair = kommo.connected(171).await;
    let access = token(&pair, "access_token");

    let forged: Value =
        kommo.post("/sandbox/kommo/disable", json!({ "account_id": 171, "forge": true })).await.json().await.unwrap();
    assert_eq!(forged["status"], 200);
    assert_eq!(kommo.get("/api/v4/account", Some(&access)).await.status(), 200);
    let hooks: Vec<_> = kommo.received().into_iter().filter(|request| request.path == "disable").collect();
    assert_ne!(hooks[0].param("signature"), Some(signature("171").as_str()));

    let done: Value = kommo.post("/sandbox/kommo/disable", json!({ "account_id": 171 })).await.json().await.unwrap();
    assert_eq!(done["revoked_grants"], 1);
    let hooks: Vec<_> = kommo.received().into_iter().filter(|request| request.path == "disable").collect();
    assert_eq!(hooks[1].user_agent, "amoService-oAuth-Code-Sender/1.0");
    assert_eq!(hooks[1].param("client_uuid"), Some(CLIENT_ID));
    assert_eq!(hooks[1].param("account_id"), Some("171"));
    assert_eq!(hooks[1].param("signature"), Some(signature("171").as_str()));
    assert_problem(kommo.get("/api/v4/account", Some(&access)).await, 401).await;
    assert_problem(kommo.refresh(&token(&pair, "refresh_token")).await, 400).await;
}

#[tokio::test]
async fn accounts_are_created_once_with_their_users() {
    let kommo = Harness::start().await;
    let body = json!({ "id": 181, "subdomain": "team", "name": "Team", "country": "MX",
        "users": [{ "id": 7, "name": "Ana", "email": "ana@team.test", "is_active": true, "is_admin": true },
                  { "id": 8, "name": "Leo", "email": "leo@team.test", "is_active": false }] });
    let created = kommo.post("/sandbox/kommo/accounts", body.clone()).await;
    assert_eq!(created.status(), 201);
    let again = kommo.post("/sandbox/kommo/accounts", json!({ "id": 181, "subdomain": "other" })).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["subdomain"], "team");
    assert_eq!(again["installed"], false);
    let code = kommo.install(181).await;
    let access = token(&kommo.exchange(&code).await, "access_token");
    let account: Value = kommo.get("/api/v4/account", Some(&access)).await.json().await.unwrap();
    assert_eq!((account["currency"].as_str(), account["current_user_id"].as_u64()), (Some("MXN"), Some(7)));
    let users: Value = kommo.get("/api/v4/users", Some(&access)).await.json().await.unwrap();
    assert_eq!(users["_embedded"]["users"][1]["rights"]["is_active"], false);
    let shown: Value = kommo.get("/sandbox/kommo/accounts/181", None).await.json().await.unwrap();
    assert_eq!(shown["installed"], true);
    let bad = kommo.post("/sandbox/kommo/accounts", json!({ "id": 182, "subdomain": "Bad.Host" })).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_default_account_exists_at_start() {
    let kommo = Harness::start().await;
    let shown: Value =
        kommo.get(&format!("/sandbox/kommo/accounts/{DEFAULT_ACCOUNT}"), None).await.json().await.unwrap();
    assert_eq!(shown["subdomain"], "sandbox");
    let users = shown["users"].as_array().unwrap();
    assert!(users.len() >= 3);
    assert_eq!(users.iter().filter(|user| user["is_active"] == false).count(), 1);
}

fn location(response: &reqwest::Response) -> reqwest::Url {
    reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

fn param(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn the_consent_page_allows_or_declines_and_returns_to_the_redirect_uri() {
    let kommo = Harness::start().await;
    let page = kommo.get(&format!("/oauth?client_id={CLIENT_ID}&state=s%26t&mode=popup&account=191"), None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Allow access") && html.contains("id=\"kommo-allow\"") && html.contains("kommo-decline"));
    assert!(html.contains("value=\"s&amp;t\""));

    let decide = |decision: &str| {
        kommo
            .http
            .post(format!("{}/oauth", kommo.kommo))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("client_id={CLIENT_ID}&state=s%26t&mode=popup&account=191&decision={decision}"))
            .send()
    };
    let allowed = decide("allow").await.unwrap();
    assert!(allowed.status().is_redirection());
    let url = location(&allowed);
    assert_eq!(url.as_str().split('?').next(), Some(kommo.redirect_uri().as_str()));
    assert_eq!(param(&url, "state").as_deref(), Some("s&t"));
    assert_eq!(param(&url, "referer").as_deref(), Some(kommo.kommo_host.as_str()));
    assert_eq!(param(&url, "client_id").as_deref(), Some(CLIENT_ID));
    let pair = kommo.exchange(&param(&url, "code").unwrap()).await;
    let account: Value = kommo.get("/api/v4/account", Some(&token(&pair, "access_token"))).await.json().await.unwrap();
    assert_eq!(account["id"], 191);

    let declined = location(&decide("decline").await.unwrap());
    assert_eq!(param(&declined, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&declined, "state").as_deref(), Some("s&t"));
    assert_eq!(param(&declined, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(param(&declined, "code"), None);

    assert_eq!(kommo.get("/oauth?client_id=unknown&state=x", None).await.status(), 400);
}

#[tokio::test]
async fn stats_count_by_method_and_path_and_reset() {
    let kommo = Harness::start().await;
    let access = token(&kommo.connected(201).await, "access_token");
    kommo.get("/api/v4/users", Some(&access)).await;
    kommo.get("/api/v4/leads", Some(&access)).await;
    let stats = kommo.stats().await;
    assert_eq!(stats["requests"]["POST /oauth2/access_token"], 1);
    assert_eq!(stats["requests"]["GET /api/v4/users"], 1);
    assert_eq!(stats["requests"]["GET /api/v4/leads"], 1);
    assert_eq!(stats["code_grants"], 1);
    assert_eq!(stats["accounts"]["201"]["requests"], 3);
    assert_eq!(stats["accounts"]["201"]["max_requests_per_second"], 3);
    assert_eq!(kommo.post("/sandbox/kommo/reset-stats", json!({})).await.status(), 204);
    let stats = kommo.stats().await;
    assert_eq!(stats["requests"], json!({}));
    assert_eq!(stats["code_grants"], 0);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_are_each_served_and_counted() {
    // What a client without single-flight does: the stand-in serves each (Kommo's grace) and counts each, so a
    // test of the server can assert that exactly one refresh reached Kommo.
    let kommo = Harness::start().await;
    let pair = kommo.connected(211).await;
    let old = token(&pair, "refresh_token");
    let answers = refresh_concurrently(&kommo, &old, 5).await;
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");
    let stats = kommo.stats().await;
    assert_eq!(stats["refresh_grants"], 5);
    assert_eq!(stats["invalid_grant"], 0);
}

async fn refresh_concurrently(kommo: &Harness, refresh_token: &str, n: usize) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = kommo.http.post(format!("{}/oauth2/access_token", kommo.kommo)).json(&json!({
            "client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "refresh_token",
            "refresh_token": refresh_token, "redirect_uri": kommo.redirect_uri(),
        }));
        tasks.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    tasks.join_all().await
}
