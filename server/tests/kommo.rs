//! The Kommo connection end to end: our server and the local Kommo's OAuth + API v4 stand-in, both on
//! real loopback sockets. Install both ways, the forged referer, the refresh race in one and in two
//! processes, 401/429/402 handling, the disable hook, and a canary: no secret in any log line or response.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;
use server::kommo::KommoError;
use support::{ACCOUNT, ADMIN, CLIENT_ID, CLIENT_SECRET, KEY_B64, World, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kommos_install_request_connects_the_account_and_the_widget_sees_it() {
    let world = world().await;
    let (status, before) = world.widget(reqwest::Method::GET, "/widget/v1/connection", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(before["state"], "not_installed");

    let account = world.install(ACCOUNT).await;
    let (_, after) = world.widget(reqwest::Method::GET, "/widget/v1/connection", ACCOUNT, None).await;
    assert_eq!(after["state"], "installed");
    let info = world.store.account(account).await.unwrap().unwrap();
    assert_eq!(info.kommo_account_id, ACCOUNT as i64, "the account id comes from /api/v4/account");
    assert_eq!(info.api_domain, world.kommo_host);

    let (status, users) = world.widget(reqwest::Method::GET, "/widget/v1/users", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::OK);
    let users = users.as_array().unwrap();
    assert!(!users.is_empty());
    assert!(users.iter().any(|user| user["id"] == ADMIN));

    let (status, saved) = world
        .widget(
            reqwest::Method::PUT,
            "/widget/v1/settings",
            ACCOUNT,
            Some(serde_json::to_value(world.valid_settings()).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_install_after_a_subdomain_change_updates_the_same_account() {
    let world = world().await;
    let first = world.install(ACCOUNT).await;
    world.kommo_control("/sandbox/kommo/accounts", json!({"id": ACCOUNT, "subdomain": "renamed"})).await;
    let second = world.install(ACCOUNT).await;
    assert_eq!(first, second);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_referer_causes_no_outbound_request_and_stores_nothing() {
    let world = world().await;
    for referer in ["evil.example", "127.0.0.1:1", "acme.kommo.com.evil.example", "evil.example/acme.kommo.com"] {
        let reply =
            world.kommo_control("/sandbox/kommo/install", json!({"account_id": ACCOUNT, "referer": referer})).await;
        assert_eq!(reply["status"], 400, "{referer}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = world.stats().await;
    assert_eq!(stats["code_grants"], 0);
    assert!(stats["requests"].get("POST /oauth2/access_token").is_none(), "{stats}");
    let codes: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oauth_codes").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(codes, 0);
    world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_callers_on_an_expired_token_cause_exactly_one_refresh() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let state = world.other_process().await;
    world.make_tokens_stale(account, ACCOUNT).await;
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();

    let kommo = state.installer.kommo.clone();
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let kommo = kommo.clone();
            tokio::spawn(async move { kommo.access_token(account, None).await.map(|t| t.expose_secret().to_owned()) })
        })
        .collect();
    let mut tokens = Vec::new();
    for caller in callers {
        tokens.push(caller.await.unwrap().expect("every caller gets a token"));
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "all callers got the same new access token");
    let stats = world.stats().await;
    assert_eq!(stats["refresh_grants"], 1, "{stats}");
    assert_eq!(stats["invalid_grant"], 0);
    world.assert_no_secret_leaked(&tokens).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_sharing_the_database_refresh_once_between_them() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let first = world.other_process().await;
    let second = world.other_process().await;
    world.make_tokens_stale(account, ACCOUNT).await;
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();

    let mut callers = Vec::new();
    for _ in 0..10 {
        for process in [&first, &second] {
            let kommo = process.installer.kommo.clone();
            callers.push(tokio::spawn(async move { kommo.get(account, "/api/v4/account").await }));
        }
    }
    for caller in callers {
        let body = caller.await.unwrap().expect("every call succeeds").expect("the account exists");
        assert_eq!(body["id"], ACCOUNT);
    }
    let stats = world.stats().await;
    assert_eq!(stats["refresh_grants"], 1, "{stats}");
    assert_eq!(stats["invalid_grant"], 0);
    assert!(stats["accounts"][ACCOUNT.to_string()]["max_requests_per_second"].as_u64().unwrap() <= 7, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_a_call_refreshes_once_and_retries() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let state = world.other_process().await;
    // Kommo expired the token early (e.g. revoked on its side): our stored expiry still looks fine.
    world.kommo_control("/sandbox/kommo/expire", json!({"account_id": ACCOUNT})).await;
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();
    let body = state.installer.kommo.get(account, "/api/v4/account").await.unwrap().unwrap();
    assert_eq!(body["id"], ACCOUNT);
    let stats = world.stats().await;
    assert_eq!(stats["refresh_grants"], 1);
    assert_eq!(stats["unauthorized"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_marks_the_account_for_re_authorization() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let state = world.other_process().await;
    world.make_tokens_stale(account, ACCOUNT).await;
    world.kommo_control("/sandbox/kommo/faults", json!({"status": 400, "count": 1, "target": "oauth"})).await;
    let error = state.installer.kommo.get(account, "/api/v4/account").await.unwrap_err();
    assert_eq!(error, KommoError::NeedsReauth);
    let (_, connection) = world.widget(reqwest::Method::GET, "/widget/v1/connection", ACCOUNT, None).await;
    assert_eq!(connection["state"], "needs_reauth");
    let (status, users) = world.widget(reqwest::Method::GET, "/widget/v1/users", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(users["error"]["code"], "kommo_needs_reauth");
    // Parked: no further traffic to Kommo for this account until it is re-authorized.
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();
    assert_eq!(state.installer.kommo.get(account, "/api/v4/account").await.unwrap_err(), KommoError::NeedsReauth);
    assert_eq!(world.stats().await["requests"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_429_is_waited_out_and_a_402_suspends_the_account() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let state = world.other_process().await;
    world.kommo_control("/sandbox/kommo/faults", json!({"status": 429, "count": 1, "retry_after": 1})).await;
    let started = std::time::Instant::now();
    assert!(state.installer.kommo.get(account, "/api/v4/account").await.unwrap().is_some());
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");

    world.kommo_control("/sandbox/kommo/faults", json!({"status": 500, "count": 1})).await;
    assert!(matches!(state.installer.kommo.get(account, "/api/v4/account").await, Err(KommoError::Transient(_))));

    world.kommo_control("/sandbox/kommo/faults", json!({"status": 402, "count": 1})).await;
    assert!(matches!(state.installer.kommo.get(account, "/api/v4/account").await, Err(KommoError::Suspended(_))));
    let (_, connection) = world.widget(reqwest::Method::GET, "/widget/v1/connection", ACCOUNT, None).await;
    assert_eq!(connection["state"], "suspended");
    assert!(connection["reason"].as_str().unwrap().contains("402"));
}

/// A browser starting the consent flow at our server: the cookie it was given and the `state` Kommo's
/// consent page received.
async fn start_consent(world: &World) -> (String, String) {
    let start = world.http.get(format!("{}/oauth/kommo/start", world.server)).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let cookie = start.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let consent = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(consent.origin().ascii_serialization(), world.kommo);
    let state = consent.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    (cookie, state)
}

/// The admin's answer on Kommo's consent page; returns where Kommo sends the browser back.
async fn decide(world: &World, state: &str, decision: &str) -> String {
    let response = world
        .http
        .post(format!("{}/oauth", world.kommo))
        .form(&[("client_id", CLIENT_ID), ("state", state), ("decision", decision), ("account", &ACCOUNT.to_string())])
        .send()
        .await
        .unwrap();
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_flow_connects_only_the_browser_that_started_it() {
    let world = world().await;
    let (_, state) = start_consent(&world).await;
    assert!(state.len() >= 22, "at least 128 bits of state");
    let back = decide(&world, &state, "allow").await;
    assert!(back.starts_with(&format!("{}/oauth/kommo/callback?", world.server)), "{back}");

    // Without the cookie (another browser), the state does not count; with it, once.
    let stranger = world.http.get(&back).send().await.unwrap();
    assert_eq!(stranger.status(), StatusCode::BAD_REQUEST);
    let (cookie, state) = start_consent(&world).await;
    let back = decide(&world, &state, "allow").await;
    let page = world.http.get(&back).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("Kommo is connected"));
    let replay = world.http.get(&back).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "a state works once");
    assert!(world.store.account_by_kommo_id(ACCOUNT as i64).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_consent_connects_nothing() {
    let world = world().await;
    let (cookie, state) = start_consent(&world).await;
    let back = decide(&world, &state, "decline").await;
    assert!(back.contains("error=access_denied"), "{back}");
    let page = world.http.get(&back).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("declined"));
    assert!(world.store.account_by_kommo_id(ACCOUNT as i64).await.unwrap().is_none());
    assert_eq!(world.stats().await["code_grants"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kommos_disable_hook_wipes_the_tokens_and_a_forged_one_changes_nothing() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let forged = world.kommo_control("/sandbox/kommo/disable", json!({"account_id": ACCOUNT, "forge": true})).await;
    assert_eq!(forged["status"], 403);
    assert!(world.store.tokens(account).await.unwrap().is_some());

    let real = world.kommo_control("/sandbox/kommo/disable", json!({"account_id": ACCOUNT})).await;
    assert_eq!(real["status"], 200);
    assert!(world.store.tokens(account).await.unwrap().is_none());
    let (status, body) = world.widget(reqwest::Method::GET, "/widget/v1/settings", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "not_installed");
    world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_survives_a_failing_kommo_and_is_finished_by_another_process() {
    let world = world().await;
    // Kommo's token endpoint fails once: the install request is still answered at once, the code is kept.
    world.kommo_control("/sandbox/kommo/faults", json!({"status": 503, "count": 1, "target": "oauth"})).await;
    let reply = world.kommo_control("/sandbox/kommo/install", json!({"account_id": ACCOUNT})).await;
    assert_eq!(reply["status"], 200);
    let mut pending = 0;
    for _ in 0..50 {
        pending = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_codes WHERE state = 'pending' AND attempts = 1")
            .fetch_one(world.store.pool())
            .await
            .unwrap();
        if pending == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 1, "the failed exchange left the code pending for a retry");
    let sealed: String =
        sqlx::query_scalar("SELECT code FROM oauth_codes").fetch_one(world.store.pool()).await.unwrap();
    assert!(!sealed.contains(reply["code"].as_str().unwrap()), "the code is sealed at rest");

    // A restarted (or another) server process picks it up.
    let restarted = world.other_process().await;
    assert_eq!(restarted.installer.exchange_pending(None).await, 1);
    let account = world.store.account_by_kommo_id(ACCOUNT as i64).await.unwrap().expect("connected");
    assert!(world.store.tokens(account).await.unwrap().is_some());
    let state: String =
        sqlx::query_scalar("SELECT state FROM oauth_codes").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(state, "done");
    let code: String = sqlx::query_scalar("SELECT code FROM oauth_codes").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(code, "", "a used code is erased");
    world.assert_no_secret_leaked(&[reply["code"].as_str().unwrap().to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_code_goes_to_one_process_however_many_claim_it_at_once() {
    // Every replica's recovery loop (and the install request's own attempt) may look for pending codes
    // at the same moment. A code exchanged twice is a replayed code, and Kommo then revokes the tokens
    // issued from it: the account would never connect.
    let world = world().await;
    let mut replicas = Vec::new();
    for _ in 0..6 {
        replicas.push(server::store::Store::connect(&world.db_url).await.unwrap());
    }
    let limits = server::store::PendingCodeLimits { total: 1000, per_host: 1000 };
    for round in 0..100 {
        let now = server::clock::unix_secs();
        let id = world.store.insert_code(&world.kommo_host, "sealed", now - 60, limits).await.unwrap().unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(replicas.len()));
        let claims = replicas.iter().cloned().map(|store| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.claim_codes(now - 60, now + 30, None).await.unwrap()
            })
        });
        let claimed: Vec<i64> = futures_util::future::join_all(claims)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .map(|code| code.id)
            .collect();
        assert_eq!(claimed, [id], "round {round}: the code went to exactly one process");
        world.store.finish_code(id, false, None).await.unwrap();
    }
}

/// A `server` binary started as its own OS process; killed when dropped.
struct ServerProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl World {
    /// Starts the real server binary on its own port, on this world's database and Kommo, as one more
    /// replica behind the same public URL.
    async fn spawn_binary(&self) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_BASE_URL", &self.server)
            .env("DATABASE_URL", &self.db_url)
            .env("KOMMO_CLIENT_ID", CLIENT_ID)
            .env("KOMMO_CLIENT_SECRET", CLIENT_SECRET)
            .env("SECRET_KEYS", format!("k1:{KEY_B64}"))
            .env("KOMMO_ALLOWED_HOSTS", format!("http://{}", self.kommo_host))
            .env("KOMMO_CONSENT_URL", format!("{}/oauth", self.kommo))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the server binary starts");
        let process = ServerProcess { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..100 {
            if let Ok(response) = self.http.get(format!("{}/health", process.url)).send().await
                && response.status() == StatusCode::OK
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server binary did not answer /health");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_binaries_sharing_the_database_refresh_once_between_them() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let replicas = [world.spawn_binary().await, world.spawn_binary().await];
    world.make_tokens_stale(account, ACCOUNT).await;
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();

    let mut requests = Vec::new();
    for _ in 0..10 {
        for replica in &replicas {
            let request = world
                .http
                .get(format!("{}/widget/v1/users", replica.url))
                .header("X-Auth-Token", world.token(ACCOUNT).await);
            requests.push(tokio::spawn(async move { request.send().await.map(|response| response.status()) }));
        }
    }
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), StatusCode::OK);
    }
    let stats = world.stats().await;
    assert_eq!(stats["refresh_grants"], 1, "{stats}");
    assert_eq!(stats["invalid_grant"], 0);
    assert!(stats["accounts"][ACCOUNT.to_string()]["max_requests_per_second"].as_u64().unwrap() <= 7, "{stats}");
}

/// Push across replicas: a ticket bought from one replica opens a stream on another, and a popup reaches
/// that stream when the webhook lands on the first (PostgreSQL's NOTIFY; a SQLite server is one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_reaches_its_stream_whichever_replica_took_the_webhook() {
    if !support::database::on_postgres() {
        eprintln!("push across replicas: PostgreSQL only (the suite's PostgreSQL pass runs it)");
        return;
    }
    let world = world().await;
    let (path, secret) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    let replicas = [world.spawn_binary().await, world.spawn_binary().await];
    let ticket: serde_json::Value = world
        .http
        .post(format!("{}/widget/v1/push/ticket", replicas[0].url))
        .header("X-Auth-Token", world.token(ACCOUNT).await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().expect("a ticket from the first replica");
    let mut stream =
        world.http.get(format!("{}/widget/v1/push/events?ticket={ticket}", replicas[1].url)).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK, "the second replica takes the first one's ticket");
    let hello = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap();
    assert!(hello.is_some_and(|hello| hello.starts_with(b":")), "the stream greets");

    let event = json!({"callId": "across-1", "voipAccountId": "sandbox-voip", "from": "+5511987654321",
                       "to": "+551133334444", "status": "ringing", "type": "call.ringing", "direction": "inbound",
                       "startTime": server::clock::unix_secs()})
    .to_string();
    let secret = webhook_signing::WebhookSecret::parse(&secret).unwrap();
    let now = server::clock::unix_secs();
    let answer = world
        .http
        .post(format!("{}{path}", replicas[0].url))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_across_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", secret.sign("msg_across_1", now, event.as_bytes()))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "the first replica stores the webhook");
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.contains("across-1") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the popup reaches the stream on the other replica within 10 s")
            .unwrap()
            .expect("the stream stays open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("event: call"), "{received}");
    assert!(received.contains("+5511987654321"), "{received}");
}
