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
use sandbox::{Archive, Config, Kommo, Vendor, app, demo_app};
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
        Harness::build(access_token_ttl, code_ttl, false).await
    }

    /// The binary's local Kommo: its default account ([`DEFAULT_ACCOUNT`]) holds the sample callers.
    pub async fn demo() -> Harness {
        Harness::build(Duration::from_secs(86_400), Duration::from_secs(1200), true).await
    }

    async fn build(access_token_ttl: Duration, code_ttl: Duration, samples: bool) -> Harness {
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
        let config = config(&server, settings);
        let router = if samples { demo_app(config, sandbox::voip::Settings::default()) } else { app(config) };
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

/// An installed account's API client as our server would use it: Bearer token, JSON bodies, at most six
/// requests a second (under Kommo's seven, which the token exchange also counts against). Every request body
/// and answer is checked against the outside oracle wherever the vendor description covers the endpoint.
pub struct Api<'a> {
    pub kommo: &'a Harness,
    pub account_id: u64,
    pub token: String,
    sent: Mutex<std::collections::VecDeque<std::time::Instant>>,
}

/// Endpoints where the stand-in follows KOMMO.md and the vendor description says otherwise: the oracle must
/// refuse their answers (if it ever accepts one, the description changed: look again).
pub const VENDOR_DISAGREES: &[(&str, &str, &str)] = &[(
    "POST",
    "/api/v4/leads/complex",
    "KOMMO.md §2.6: a bare array with request_id as an array; the vendor file: {_links, _embedded.leads[]}",
)];

/// Fields Kommo documents in an answer that the vendor description does not name, by a path whose `*` is
/// every item of an array: left out of the closed check only (the check as written still sees them).
pub const VENDOR_OMITS: &[(&str, &str, &str, &str)] = &[
    (
        "GET",
        "/api/v4/leads/pipelines",
        "/_total_items",
        "Kommo's pipelines list (developers.kommo.com, leads-pipelines-and-statuses) carries _total_items",
    ),
    (
        "GET",
        "/api/v4/leads/pipelines",
        "/_embedded/pipelines/*/_embedded/statuses/*/_links",
        "Kommo's statuses carry _links (the same page); the vendor's Status has none",
    ),
    (
        "GET",
        "/api/v4/leads/pipelines/{id}",
        "/_embedded/statuses/*/_links",
        "Kommo's statuses carry _links (developers.kommo.com, get pipeline); the vendor's Status has none",
    ),
];

/// Removes the field at `path` (`/a/*/b`, `*` = every array item); answers how many it removed.
fn remove_at(value: &mut Value, path: &[&str]) -> usize {
    match path {
        [] => 0,
        [last] => value.as_object_mut().and_then(|object| object.remove(*last)).map_or(0, |_| 1),
        ["*", rest @ ..] => {
            value.as_array_mut().map_or(0, |items| items.iter_mut().map(|item| remove_at(item, rest)).sum())
        }
        [key, rest @ ..] => value.get_mut(*key).map_or(0, |inner| remove_at(inner, rest)),
    }
}

/// Answers that are Kommo's but not modelled by the vendor file (its README): 401, 402 and 429.
const UNMODELLED: &[u16] = &[401, 402, 429];

impl<'a> Api<'a> {
    /// A new installed account `id` and its client.
    pub async fn connect(kommo: &'a Harness, id: u64) -> Api<'a> {
        let pair = kommo.connected(id).await;
        let token = pair["access_token"].as_str().unwrap().to_owned();
        Api { kommo, account_id: id, token, sent: Mutex::default() }
    }

    async fn pace(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().unwrap();
                let now = std::time::Instant::now();
                while sent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_millis(1020)) {
                    sent.pop_front();
                }
                if sent.len() < 6 {
                    sent.push_back(now);
                    None
                } else {
                    Some(Duration::from_millis(1020) - now.duration_since(sent[0]))
                }
            };
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return,
            }
        }
    }

    /// Sends without checking anything: for faults and timeouts.
    pub async fn raw(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<reqwest::Response> {
        self.pace().await;
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, format!("{}{path}", self.kommo.kommo)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await
    }

    /// Sends and answers `(status, body)` (`Null` for no body), after checking the request body and the answer
    /// against the oracle where it covers the endpoint (2xx answers also "closed": no unnamed property).
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send_checked(method, path, body, true).await
    }

    /// A deliberately wrong body: only the answer is checked against the oracle.
    pub async fn post_refused(&self, path: &str, body: Value) -> (u16, Value) {
        self.send_checked("POST", path, Some(body), false).await
    }

    async fn send_checked(&self, method: &str, path: &str, body: Option<Value>, check_body: bool) -> (u16, Value) {
        let oracle = sandbox::oracle::Oracle::load();
        let covered = oracle.covers(method, path);
        if covered
            && check_body
            && let Some(body) = &body
        {
            let sent =
                oracle.validate_request(method, path, body).and(oracle.validate_request_closed(method, path, body));
            assert_eq!(sent, Ok(()), "the request body of {method} {path} fails the oracle:\n{body:#}");
        }
        let response = self.raw(&self.kommo.http, method, path, body.as_ref()).await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|value| value.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.bytes().await.unwrap();
        let answer: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        match status {
            204 => assert!(bytes.is_empty(), "a 204 with a body: {answer}"),
            // Accepted with no body: a call notification (`POST /api/v2/events`).
            202 if bytes.is_empty() => {}
            200..=299 => assert_eq!(content_type, "application/hal+json", "{method} {path}"),
            _ => assert_eq!(content_type, "application/problem+json", "{method} {path}: {answer}"),
        }
        let template = oracle.operation(method, path).map(|operation| operation.template);
        let disagrees = VENDOR_DISAGREES
            .iter()
            .any(|(m, p, _)| *m == method && Some(*p) == template.as_deref() && (200..300).contains(&status));
        if covered && disagrees {
            assert!(
                oracle.validate_response(method, path, status, &answer).is_err(),
                "the vendor now agrees: {answer}"
            );
        } else if covered && !UNMODELLED.contains(&status) {
            let checked = oracle.validate_response(method, path, status, &answer);
            assert_eq!(checked, Ok(()), "the answer to {method} {path} ({status}) fails the oracle:\n{answer:#}");
            if (200..300).contains(&status) {
                let mut trimmed = answer.clone();
                for (_, _, field, _) in
                    VENDOR_OMITS.iter().filter(|(m, p, _, _)| *m == method && Some(*p) == template.as_deref())
                {
                    let steps: Vec<&str> = field.trim_start_matches('/').split('/').collect();
                    let removed = remove_at(&mut trimmed, &steps);
                    assert!(removed > 0, "{method} {path} no longer answers {field}: drop it from VENDOR_OMITS");
                }
                let closed = oracle.validate_response_closed(method, path, status, &trimmed);
                assert_eq!(closed, Ok(()), "the answer to {method} {path} fails the closed oracle:\n{answer:#}");
            }
        }
        (status, answer)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body)).await
    }

    /// Seeds a company with phones and leads `(name, status_id, price)` (status 0: the first stage); answers
    /// `(company_id, lead_ids)`.
    pub async fn seed_company(&self, name: &str, phones: &[&str], leads: &[(&str, u64, u64)]) -> (u64, Vec<u64>) {
        let leads: Vec<Value> = leads
            .iter()
            .map(|(name, status, price)| match status {
                0 => json!({ "name": name, "price": price }),
                status => json!({ "name": name, "status_id": status, "price": price }),
            })
            .collect();
        let body = json!({ "account_id": self.account_id, "name": name, "phones": phones, "leads": leads });
        let response = self.kommo.post("/sandbox/kommo/companies", body).await;
        assert_eq!(response.status(), 200);
        let seeded: Value = response.json().await.unwrap();
        let leads = seeded["lead_ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect();
        (seeded["company_id"].as_u64().unwrap(), leads)
    }

    /// The account's accepted call notifications (`POST /api/v2/events`).
    pub async fn notifications(&self) -> Vec<Value> {
        let path = format!("/sandbox/kommo/notifications?account_id={}", self.account_id);
        let notifications: Value = self.kommo.get(&path, None).await.json().await.unwrap();
        notifications.as_array().unwrap().clone()
    }

    /// Seeds a contact with phones and leads `(name, status_id)` (0: the default first stage); answers
    /// `(contact_id, lead_ids)`.
    pub async fn seed(&self, name: &str, phones: &[&str], leads: &[(&str, u64)]) -> (u64, Vec<u64>) {
        let lead = |(name, status): &(&str, u64)| match status {
            0 => json!({ "name": name }),
            status => json!({ "name": name, "status_id": status }),
        };
        let leads: Vec<Value> = leads.iter().map(lead).collect();
        let body = json!({ "account_id": self.account_id, "name": name, "phones": phones, "leads": leads });
        let response = self.kommo.post("/sandbox/kommo/contacts", body).await;
        assert_eq!(response.status(), 200);
        let seeded: Value = response.json().await.unwrap();
        let leads = seeded["lead_ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect();
        (seeded["contact_id"].as_u64().unwrap(), leads)
    }

    /// The account's API writes as the stand-in logged them.
    pub async fn writes(&self) -> Vec<Value> {
        let path = format!("/sandbox/kommo/writes?account_id={}", self.account_id);
        let writes: Value = self.kommo.get(&path, None).await.json().await.unwrap();
        writes.as_array().unwrap().clone()
    }

    /// The account's entities as stored.
    pub async fn entities(&self) -> Value {
        let path = format!("/sandbox/kommo/entities?account_id={}", self.account_id);
        self.kommo.get(&path, None).await.json().await.unwrap()
    }

    pub async fn calls_mode(&self, mode: &str) {
        let body = json!({ "account_id": self.account_id, "mode": mode });
        assert_eq!(self.kommo.post("/sandbox/kommo/calls-mode", body).await.status(), 200);
    }
}

/// The `validation-errors` of a 400 as `(request_id, [(code, path)])`.
pub fn validation_errors(problem: &Value) -> Vec<(String, Vec<(String, String)>)> {
    assert_eq!(problem["status"], 400, "{problem}");
    problem["validation-errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no validation-errors in {problem}"))
        .iter()
        .map(|item| {
            let errors = item["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|error| {
                    assert!(error["detail"].is_string(), "{error}");
                    (error["code"].as_str().unwrap().to_owned(), error["path"].as_str().unwrap().to_owned())
                })
                .collect();
            (item["request_id"].as_str().unwrap().to_owned(), errors)
        })
        .collect()
}

impl Harness {
    /// `DELETE /sandbox/kommo/faults`; answers the status.
    pub async fn delete_faults(&self) -> u16 {
        self.http.delete(format!("{}/sandbox/kommo/faults", self.kommo)).send().await.unwrap().status().as_u16()
    }
}
