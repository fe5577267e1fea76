//! A running local Kommo on a free port, beside a stand-in for our server that records Kommo's install and
//! disable requests; plus the helpers the Kommo stand-in's tests share.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use sandbox::kommo_api::Settings;
use sandbox::{Archive, Config, Kommo, Vendor, app};
use serde_json::{Value, json};

pub const SECRET: &str = "test-client-secret";
pub const CLIENT_ID: &str = "6f1d6c8e-0000-4000-8000-000000000001";
pub const DEFAULT_ACCOUNT: u64 = 31_000_001;
pub const ADMIN_ID: u64 = 5_500_001;

/// One request our server stand-in received: its query string and `User-Agent`.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: &'static str,
    pub query: Vec<(String, String)>,
    pub user_agent: String,
}

impl Received {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

type Log = Arc<Mutex<Vec<Received>>>;

pub struct Harness {
    /// `http://127.0.0.1:port` of the local Kommo.
    pub kommo: String,
    /// `127.0.0.1:port`: what Kommo sends as `referer`.
    pub kommo_host: String,
    /// Our server's stand-in: its public base URL.
    pub server: String,
    pub received: Log,
    pub http: reqwest::Client,
}

fn record(path: &'static str) -> impl Fn(State<Log>, HeaderMap, RawQuery) -> std::future::Ready<&'static str> + Clone {
    move |State(log): State<Log>, headers: HeaderMap, RawQuery(query): RawQuery| {
        let query = query.unwrap_or_default();
        let pairs = url_pairs(&query);
        let user_agent = headers.get("user-agent").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
        log.lock().unwrap().push(Received { path, query: pairs, user_agent });
        std::future::ready("ok")
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
    url.query_pairs().map(|(key, value)| (key.into_owned(), value.into_owned())).collect()
}

fn config(server: &str, settings: Settings) -> Config {
    let manifest = br#"{"widget":{"name":"widget.name","short_description":"d","version":"1.0.0"},"settings":{}}"#;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("manifest.json", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, manifest).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    Config {
        archive: Archive::from_zip(&bytes).unwrap(),
        vendor: Vendor { require_js: Bytes::from_static(b""), jquery_js: Bytes::from_static(b"") },
        kommo: Kommo {
            client_id: CLIENT_ID.to_owned(),
            client_secret: SECRET.to_owned(),
            audience: sandbox::token::audience_of(server).unwrap(),
            subdomain: "sandbox".to_owned(),
            account_id: DEFAULT_ACCOUNT,
            user_id: ADMIN_ID,
        },
        stand_in: settings,
    }
}

impl Harness {
    /// Kommo's default lifetimes.
    pub async fn start() -> Harness {
        Harness::with(Duration::from_secs(86_400), Duration::from_secs(1200)).await
    }

    pub async fn with(access_token_ttl: Duration, code_ttl: Duration) -> Harness {
        let received: Log = Arc::default();
        let server_router = axum::Router::new()
            .route("/oauth/kommo/callback", get(record("callback")))
            .route("/oauth/kommo/disable", get(record("disable")))
            .with_state(received.clone());
        let server_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("http://{}", server_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(server_listener, server_router).await.unwrap() });

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kommo_host = listener.local_addr().unwrap().to_string();
        let settings = Settings { api_host: kommo_host.clone(), access_token_ttl, code_ttl };
        let router = app(config(&server, settings));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Harness { kommo: format!("http://{kommo_host}"), kommo_host, server, received, http }
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/kommo/callback", self.server)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.kommo)).json(&body).send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.kommo));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Creates an account with Kommo's default users.
    pub async fn account(&self, id: u64) {
        let response =
            self.post("/sandbox/kommo/accounts", json!({ "id": id, "subdomain": format!("acct{id}") })).await;
        assert!(response.status().is_success(), "creating account {id}: {}", response.status());
    }

    /// Has Kommo send the install request; returns the code it carried.
    pub async fn install(&self, account_id: u64) -> String {
        let response = self.post("/sandbox/kommo/install", json!({ "account_id": account_id })).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 200, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// `POST /oauth2/access_token` as our server sends it.
    pub async fn token_request(&self, grant: (&str, &str)) -> reqwest::Response {
        let (grant_type, value) = grant;
        let field = if grant_type == "authorization_code" { "code" } else { "refresh_token" };
        let body = json!({
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "grant_type": grant_type,
            field: value,
            "redirect_uri": self.redirect_uri(),
        });
        self.post("/oauth2/access_token", body).await
    }

    pub async fn exchange(&self, code: &str) -> Value {
        let response = self.token_request(("authorization_code", code)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.token_request(("refresh_token", refresh_token)).await
    }

    /// A new account, installed, with its first token pair.
    pub async fn connected(&self, id: u64) -> Value {
        self.account(id).await;
        let code = self.install(id).await;
        self.exchange(&code).await
    }

    pub async fn stats(&self) -> Value {
        self.get("/sandbox/kommo/stats", None).await.json().await.unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Asserts Kommo's problem+json: the content type and `{title, type, status, detail}` with `status` as sent.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(), "{body}");
    body
}
