//! The test harness shared by the server's end-to-end tests: our server and the local Kommo (Kommo's
//! OAuth + API v4 stand-in and the VoIP provider stand-in), each on a real loopback socket, with every
//! server log line captured for the canary checks.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

pub mod database;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use reqwest::StatusCode;
use sandbox::kommo_api::Settings;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use server::config::Config;
use server::crypto::{Keyring, SealContext};
use server::http::AppState;
use server::kommo::{ACCESS_TOKEN_COLUMN, REFRESH_TOKEN_COLUMN};
use server::store::{AccountId, Store};
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "canary-client-id-0000-4000-8000-000000000001";
pub const CLIENT_SECRET: &str = "CANARY-client-secret-7f3a9d";
pub const VOIP_PASSWORD: &str = "CANARY-voip-password-91b2c4";
pub const KEY_B64: &str = "Q0FOQVJZLWtleS1ieXRlcy0zMi1sb25nLi4uLi4uLi4=";
pub const ACCOUNT: u64 = 31_000_001;
pub const ADMIN: u64 = 5_500_001;

/// Everything our server logs in this test binary (one process: one global subscriber).
pub fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    let logs = LOGS.get_or_init(Mutex::default);
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_env_filter("server=trace,tower_http=trace,info")
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .init();
    });
    logs
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        logs().lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct World {
    pub server: String,
    pub kommo: String,
    pub kommo_host: String,
    pub db_url: String,
    pub store: Store,
    pub http: reqwest::Client,
    /// Every body our server answered, for the canary check.
    pub bodies: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

pub fn server_config(server: &str, kommo_host: &str, db_url: &str) -> Config {
    let vars = [
        ("KOMMO_CLIENT_ID", CLIENT_ID.to_owned()),
        ("KOMMO_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("SECRET_KEYS", format!("k1:{KEY_B64}")),
        ("PUBLIC_BASE_URL", server.to_owned()),
        ("DATABASE_URL", db_url.to_owned()),
        ("KOMMO_ALLOWED_HOSTS", format!("*.kommo.com,http://{kommo_host}")),
        ("KOMMO_CONSENT_URL", format!("http://{kommo_host}/oauth")),
        ("PROVIDER_ALLOW_INSECURE_LOCAL", "true".to_owned()),
        // The phone index's own tests turn it on (`config.phone_index = true`); the others count the
        // Kommo requests of their calls without a sync's beside them.
        ("PHONE_INDEX", "false".to_owned()),
    ];
    Config::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())).unwrap()
}

pub fn sandbox_config(server: &str, kommo_host: &str, access_token_ttl: Duration) -> sandbox::Config {
    let manifest = br#"{"widget":{"name":"widget.name","short_description":"d","version":"1.0.0"},"settings":{}}"#;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("manifest.json", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(manifest).unwrap();
    let archive = zip.finish().unwrap().into_inner();
    sandbox::Config {
        archive: sandbox::Archive::from_zip(&archive).unwrap(),
        vendor: sandbox::Vendor { require_js: Bytes::new(), jquery_js: Bytes::new() },
        kommo: sandbox::Kommo {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            audience: server.to_owned(),
            subdomain: "canary".to_owned(),
            account_id: ACCOUNT,
            user_id: ADMIN,
        },
        stand_in: Settings { api_host: kommo_host.to_owned(), access_token_ttl, code_ttl: Duration::from_secs(1200) },
    }
}

pub async fn world() -> World {
    world_with(Duration::from_secs(86_400)).await
}

pub async fn world_with(access_token_ttl: Duration) -> World {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let db_url = database::database_url(dir.path(), "kommo").await;
    let server_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", server_listener.local_addr().unwrap());
    let kommo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kommo_host = kommo_listener.local_addr().unwrap().to_string();
    let provider = sandbox::voip::Settings { password: VOIP_PASSWORD.to_owned(), ..sandbox::voip::Settings::default() };
    let kommo_app = sandbox::app_with_provider(sandbox_config(&server, &kommo_host, access_token_ttl), provider);
    tokio::spawn(async move { axum::serve(kommo_listener, kommo_app).await.unwrap() });
    // Migrate before the server process starts, so the two never migrate the same file at once.
    let store = Store::connect(&db_url).await.unwrap();
    let config = server_config(&server, &kommo_host, &db_url);
    tokio::spawn(async move { server::serve_on(server_listener, config, CancellationToken::new()).await.unwrap() });
    World::assemble(server, kommo_host, db_url, store, dir)
}

impl World {
    /// A world around a server at `server`, a local Kommo at `kommo_host` and the database in `dir`.
    fn assemble(server: String, kommo_host: String, db_url: String, store: Store, dir: tempfile::TempDir) -> World {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        World {
            kommo: format!("http://{kommo_host}"),
            server,
            kommo_host,
            db_url,
            store,
            http,
            bodies: Arc::default(),
            _dir: dir,
        }
    }

    /// Replaces a local stand-in's setting (`PUT`), such as a system's account or the webhook it plays to.
    pub async fn kommo_put(&self, path: &str, body: Value) {
        let response = self.http.put(format!("{}{path}", self.kommo)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }

    pub async fn kommo_control(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.kommo)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    pub async fn stats(&self) -> Value {
        self.http.get(format!("{}/sandbox/kommo/stats", self.kommo)).send().await.unwrap().json().await.unwrap()
    }

    /// A disposable token of the account's admin.
    pub async fn token(&self, account: u64) -> String {
        self.token_as(account, ADMIN, Some(true)).await
    }

    /// A disposable token for `user` of `account`, its `is_admin` claim as given (`None`: no claim, as in
    /// Kommo's documented example, so the server asks Kommo).
    pub async fn token_as(&self, account: u64, user: u64, is_admin: Option<bool>) -> String {
        let mut body = json!({"account_id": account, "user_id": user, "subdomain": format!("acct{account}")});
        match is_admin {
            Some(flag) => body["is_admin"] = json!(flag),
            None => body["omit_is_admin"] = json!(true),
        }
        let response = self.http.post(format!("{}/sandbox/token", self.kommo)).json(&body).send().await.unwrap();
        let reply: Value = response.json().await.unwrap();
        reply["token"].as_str().expect("the local Kommo mints a token").to_owned()
    }

    /// A provider event posted to the webhook at `path`, signed with `secret` as a provider signs it
    /// (Standard Webhooks, timestamped now).
    pub async fn post_signed(
        &self,
        path: &str,
        secret: &webhook_signing::WebhookSecret,
        webhook_id: &str,
        body: &str,
    ) -> reqwest::Response {
        let now = server::clock::unix_secs();
        self.http
            .post(format!("{}{path}", self.server))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", secret.sign(webhook_id, now, body.as_bytes()))
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// A widget API call with a fresh disposable token; the body is kept for the canary check.
    pub async fn widget(
        &self,
        method: reqwest::Method,
        path: &str,
        account: u64,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server))
            .header("X-Auth-Token", self.token(account).await);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        self.bodies.lock().unwrap().push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Kommo's install request, then waits until the server connected the account.
    pub async fn install(&self, id: u64) -> AccountId {
        let reply = self.kommo_control("/sandbox/kommo/install", json!({"account_id": id})).await;
        assert_eq!(reply["status"], 200, "the Redirect URI answers Kommo at once");
        assert!(reply["elapsed_ms"].as_u64().unwrap() < 3000, "within Kommo's 3 s");
        // Up to 20 s: a suite running many installs at once on two busy cores takes a while.
        for _ in 0..400 {
            if let Some(account) = self.store.account_by_kommo_id(id as i64).await.unwrap()
                && self.store.tokens(account).await.unwrap().is_some()
            {
                return account;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        let said: Vec<&str> =
            logs.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).rev().take(20).collect();
        panic!("account {id} was not connected; the last warnings and errors:\n{}", said.join("\n"));
    }

    /// A second server process on the same database (its own pool, locks and Kommo client).
    pub async fn other_process(&self) -> AppState {
        self.other_process_with(|_| {}).await
    }

    /// [`World::other_process`] with its configuration changed by `change`.
    pub async fn other_process_with(&self, change: impl FnOnce(&mut Config)) -> AppState {
        let store = Store::connect(&self.db_url).await.unwrap();
        let mut config = server_config(&self.server, &self.kommo_host, &self.db_url);
        change(&mut config);
        AppState::new(config, store, CancellationToken::new())
    }

    pub async fn make_tokens_stale(&self, account: AccountId, kommo_id: u64) {
        self.kommo_control("/sandbox/kommo/expire", json!({"account_id": kommo_id})).await;
        sqlx::query("UPDATE kommo_auth_tokens SET expires_at = 0 WHERE account_id = $1")
            .bind(account.get())
            .execute(self.store.pool())
            .await
            .unwrap();
    }

    /// The canary: no secret we handled appears in any log line or response body so far.
    pub async fn assert_no_secret_leaked(&self, extra: &[String]) {
        let keyring = Keyring::parse(&format!("k1:{KEY_B64}")).unwrap();
        let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), VOIP_PASSWORD.into(), KEY_B64.into()];
        secrets.extend_from_slice(extra);
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT account_id, access_token, refresh_token FROM kommo_auth_tokens")
                .fetch_all(self.store.pool())
                .await
                .unwrap();
        for (account_id, access, refresh) in rows {
            for (column, sealed) in [(ACCESS_TOKEN_COLUMN, access), (REFRESH_TOKEN_COLUMN, refresh)] {
                let token = keyring.open(SealContext { column, account_id }, &sealed).unwrap();
                secrets.push(token.expose_secret().to_owned());
                assert!(!sealed.contains(token.expose_secret()), "tokens are sealed at rest");
            }
        }
        let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        assert!(!logs.is_empty(), "the server's logs were captured");
        let bodies = self.bodies.lock().unwrap().join("\n");
        for secret in secrets.iter().filter(|secret| secret.len() >= 8) {
            assert!(!logs.contains(secret.as_str()), "a secret appears in the logs: {}…", &secret[..6]);
            assert!(!bodies.contains(secret.as_str()), "a secret appears in a response: {}…", &secret[..6]);
        }
    }
}

impl World {
    /// The provider address of the local Kommo's VoIP stand-in.
    pub fn provider_url(&self) -> String {
        format!("{}/voip", self.kommo)
    }

    /// Valid settings for the local provider: login `agent` with the (canary) password.
    pub fn valid_settings(&self) -> shared::IntegrationSettings {
        shared::IntegrationSettings {
            active: true,
            system: shared::ProviderSystem::Standard,
            credentials: shared::VoipCredentials::Password {
                provider_url: self.provider_url(),
                login: "agent".into(),
                password: Some(VOIP_PASSWORD.into()),
            },
            call_handling: shared::CallHandling::default(),
            extensions: shared::ExtensionMap::default(),
        }
    }
}

/// A local Kommo (Kommo's OAuth + API v4 stand-in and the VoIP provider stand-in) on its own loopback port,
/// for a server reachable at `server`, with `account` as the account its install request connects.
/// Returns its `host:port`. Each local Kommo is its own API host, so its account has its own request pace.
pub async fn spawn_local_kommo(server: &str, account: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let mut config = sandbox_config(server, &host, Duration::from_secs(86_400));
    config.kommo.account_id = account;
    let provider = sandbox::voip::Settings { password: VOIP_PASSWORD.to_owned(), ..sandbox::voip::Settings::default() };
    let app = sandbox::app_with_provider(config, provider);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    host
}

/// A world whose server the test starts itself (e.g. the server binary, which must listen at `server`
/// before [`World::install`]): a local Kommo for `account` and a migrated database, no server yet.
pub async fn world_without_server(server: &str, account: u64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let db_url = database::database_url(dir.path(), "kommo").await;
    world_without_server_on(server, account, db_url, dir).await
}

/// [`world_without_server`] on the database `db_url` (kept in `dir` when it is a file).
pub async fn world_without_server_on(server: &str, account: u64, db_url: String, dir: tempfile::TempDir) -> World {
    logs();
    let kommo_host = spawn_local_kommo(server, account).await;
    let store = Store::connect(&db_url).await.unwrap();
    World::assemble(server.to_owned(), kommo_host, db_url, store, dir)
}

impl World {
    /// One more local Kommo, for `account`, beside this world's: same server and database.
    pub async fn another_kommo(&self, account: u64) -> World {
        let kommo_host = spawn_local_kommo(&self.server, account).await;
        World {
            kommo: format!("http://{kommo_host}"),
            server: self.server.clone(),
            kommo_host,
            db_url: self.db_url.clone(),
            store: Store::connect(&self.db_url).await.unwrap(),
            http: self.http.clone(),
            bodies: Arc::default(),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Installs `account` and saves valid settings for it (`handling` as the call rules) through the
    /// widget API; returns the webhook URL's path and its signing secret.
    pub async fn configure(&self, account: u64, handling: shared::CallHandling) -> (String, String) {
        self.install(account).await;
        let settings = shared::IntegrationSettings { call_handling: handling, ..self.valid_settings() };
        let body = serde_json::to_value(&settings).unwrap();
        let (status, saved) = self.widget(reqwest::Method::PUT, "/widget/v1/settings", account, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        let url = saved["webhook"]["url"].as_str().expect("the save answers the webhook URL");
        let path = url.strip_prefix(&self.server).expect("the webhook URL starts with the public base URL");
        let secret = saved["webhook"]["signing_secret"].as_str().expect("the first save issues the secret");
        (path.to_owned(), secret.to_owned())
    }

    /// Seeds a contact with `phones` (and open leads, by name) in this world's local Kommo.
    pub async fn seed_contact(&self, account: u64, name: &str, phones: &[&str], leads: &[&str]) -> Value {
        let leads: Vec<Value> = leads.iter().map(|lead| json!({"name": lead})).collect();
        let body = json!({"account_id": account, "name": name, "phones": phones, "leads": leads});
        self.kommo_control("/sandbox/kommo/contacts", body).await
    }

    /// The `uniq`s of the `POST /api/v4/calls` items the local Kommo committed for `account`, sorted.
    pub async fn logged_calls(&self, account: u64) -> Vec<String> {
        let mut uniqs = Vec::new();
        for write in self.kommo_writes(account).await {
            if write["path"] == "/api/v4/calls" && write["committed"] == json!(true) {
                for item in write["body"].as_array().into_iter().flatten() {
                    uniqs.push(item["uniq"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        uniqs.sort();
        uniqs
    }

    /// A Kommo client of this world's local Kommo on `store` (a process of its own when the store is).
    pub fn kommo_client(&self, store: Store, timeout: Duration) -> server::kommo::KommoClient {
        server::kommo::KommoClient::with_timeout(
            store,
            Arc::new(server::crypto::Keyring::parse(&format!("k1:{KEY_B64}")).unwrap()),
            server::kommo::OAuthClient {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.to_owned().into(),
                redirect_uri: format!("{}/oauth/kommo/callback", self.server),
            },
            server::kommo::KommoHosts::parse(&format!("http://{}", self.kommo_host)).unwrap(),
            timeout,
        )
    }

    /// Installs [`ACCOUNT`] and saves valid settings with extension 101 the admin's and 102 `maria`'s (the
    /// account's user `ACCOUNT * 100 + 1`), `tweak` applied to the call handling; returns the save's answer
    /// (the webhook's URL, and its signing secret).
    pub async fn save_two_extensions(&self, tweak: impl FnOnce(&mut shared::CallHandling)) -> Value {
        self.save_two_extensions_with(|settings| tweak(&mut settings.call_handling)).await
    }

    /// [`World::save_two_extensions`] with `tweak` applied to the whole settings (e.g. another telephony
    /// system and its credentials, which the save checks with that system's API, as an admin's would be).
    pub async fn save_two_extensions_with(&self, tweak: impl FnOnce(&mut shared::IntegrationSettings)) -> Value {
        self.install(ACCOUNT).await;
        let mut settings = self.valid_settings();
        settings.extensions.entries = vec![
            shared::ExtensionEntry { extension: "101".into(), user_id: ADMIN as i64 },
            shared::ExtensionEntry { extension: "102".into(), user_id: (ACCOUNT * 100 + 1) as i64 },
        ];
        tweak(&mut settings);
        let body = serde_json::to_value(&settings).unwrap();
        let (status, saved) = self.widget(reqwest::Method::PUT, "/widget/v1/settings", ACCOUNT, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        saved
    }

    /// `user` of [`ACCOUNT`] (not an admin) clicks the number `to` in Kommo: `POST /widget/v1/calls/originate`.
    /// Asserts the call was placed (200) and returns the answer (`call_id`).
    pub async fn click_to_call(&self, user: u64, to: &str) -> Value {
        let token = self.token_as(ACCOUNT, user, Some(false)).await;
        let response = self
            .http
            .post(format!("{}/widget/v1/calls/originate", self.server))
            .header("X-Auth-Token", token)
            .json(&json!({ "to": to }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The `POST /api/v4/calls` items the local Kommo committed for `account`'s call `call_id` (its `uniq`).
    pub async fn kommo_calls(&self, account: u64, call_id: &str) -> Vec<Value> {
        let mut calls = Vec::new();
        for write in self.kommo_writes(account).await {
            if write["path"] == "/api/v4/calls" && write["committed"] == json!(true) {
                let items = write["body"].as_array().into_iter().flatten();
                calls.extend(items.filter(|item| item["uniq"] == call_id).cloned());
            }
        }
        calls
    }

    /// The call's one Kommo call, once it is there; then a moment more to see that no second one comes.
    pub async fn the_kommo_call(&self, account: u64, call_id: &str) -> Value {
        for _ in 0..200 {
            if !self.kommo_calls(account, call_id).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let calls = self.kommo_calls(account, call_id).await;
                assert_eq!(calls.len(), 1, "exactly one Kommo call: {calls:?}");
                return calls.into_iter().next().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("call {call_id} never reached Kommo");
    }

    /// Provider events stored (in every account).
    pub async fn stored_events(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_inbox").fetch_one(self.store.pool()).await.unwrap()
    }

    /// The local Kommo's log of API writes for `account`.
    pub async fn kommo_writes(&self, account: u64) -> Vec<Value> {
        let url = format!("{}/sandbox/kommo/writes?account_id={account}", self.kommo);
        let response = self.http.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "writes: {}", response.status());
        response.json().await.unwrap()
    }
}
