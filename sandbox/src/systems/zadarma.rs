//! The Zadarma stand-in: its API as the server calls it (`/zadarma/v1/...`: the balance, the callback request,
//! a recording's link), each request's `Authorization: <key>:<signature>` verified the way Zadarma's PHP SDK
//! signs it (`lib/Client.php`), and a player (`POST /sandbox/zadarma/play`) that posts a call's `NOTIFY_*`
//! notifications, form-encoded and signed the Zadarma way (`Signature` = base64 of the hex HMAC-SHA1 of the
//! fields each event signs, `lib/Webhook/Notify*.php`), to the server. A callback requested through the API
//! plays its outgoing call to the webhook set with `PUT /sandbox/zadarma/webhook`, as Zadarma would.
//!
//! The stand-in's API key is [`DEMO_KEY`] with [`DEMO_SECRET`]; `PUT /sandbox/zadarma/account` sets others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;

pub const DEMO_KEY: &str = "sandbox-zadarma-key";
pub const DEMO_SECRET: &str = "sandbox-zadarma-secret";

struct Zadarma {
    key: String,
    secret: String,
    /// Where a requested callback's notifications go, and the secret they are signed with.
    webhook: Option<Target>,
    /// Every callback request, its parameters as received.
    callbacks: Vec<Value>,
}

#[derive(Clone, Deserialize)]
struct Target {
    webhook_url: String,
    secret: String,
    /// Pause between two notifications, in milliseconds.
    #[serde(default)]
    gap_ms: u64,
}

type Shared = Arc<Mutex<Zadarma>>;

pub fn router() -> Router {
    let state: Shared = Arc::new(Mutex::new(Zadarma {
        key: DEMO_KEY.into(),
        secret: DEMO_SECRET.into(),
        webhook: None,
        callbacks: Vec::new(),
    }));
    Router::new()
        .route("/zadarma/v1/info/balance/", get(balance))
        .route("/zadarma/v1/request/callback/", get(callback))
        .route("/zadarma/v1/pbx/record/request/", get(record))
        .route("/zadarma/records/{file}", get(recording_file))
        .route("/sandbox/zadarma/account", put(set_account))
        .route("/sandbox/zadarma/webhook", put(set_webhook))
        .route("/sandbox/zadarma/callbacks", get(callbacks))
        .route("/sandbox/zadarma/play", post(play))
        .with_state(state)
}

/// Zadarma's API signature of a request to `method` (the path after the API base, `/v1/.../`) with `query`
/// (parameters sorted by name, RFC 1738): base64(hex(HMAC-SHA1(secret, method + query + md5(query)))).
pub fn api_signature(secret: &str, method: &str, query: &str) -> String {
    let md5 = hex::encode(Md5::digest(query.as_bytes()));
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(method.as_bytes());
    mac.update(query.as_bytes());
    mac.update(md5.as_bytes());
    BASE64.encode(hex::encode(mac.finalize().into_bytes()))
}

/// A notification's `Signature`: base64 of the hex HMAC-SHA1 of the signed fields, concatenated.
pub fn notify_signature(secret: &str, signed: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    BASE64.encode(hex::encode(mac.finalize().into_bytes()))
}

/// Zadarma's refusal of an unsigned or wrongly signed API request.
fn not_authorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"status": "error", "message": "Not authorized"}))).into_response()
}

/// Verifies an API request as Zadarma does; returns its parameters (`None`: [`not_authorized`]).
fn authorized(state: &Shared, uri: &Uri, query: Option<String>, headers: &HeaderMap) -> Option<Vec<(String, String)>> {
    let (key, secret) = {
        let zadarma = state.lock().unwrap();
        (zadarma.key.clone(), zadarma.secret.clone())
    };
    let header = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok())?;
    let (given_key, signature) = header.split_once(':')?;
    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    params.sort();
    let sorted = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    let method = uri.path().strip_prefix("/zadarma").unwrap_or(uri.path());
    (given_key == key && signature == api_signature(&secret, method, &sorted)).then_some(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(field, _)| field == name).map(|(_, value)| value.as_str())
}

async fn balance(State(state): State<Shared>, uri: Uri, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    match authorized(&state, &uri, query, &headers) {
        Some(_) => Json(json!({"status": "success", "balance": 100.5, "currency": "USD"})).into_response(),
        None => not_authorized(),
    }
}

/// `GET /v1/request/callback/?from&to`: rings `from` (the extension), then `to`; answered without a call id,
/// as Zadarma does; the call's notifications go to the webhook set.
async fn callback(State(state): State<Shared>, uri: Uri, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let Some(params) = authorized(&state, &uri, query, &headers) else {
        return not_authorized();
    };
    let (Some(from), Some(to)) = (param(&params, "from"), param(&params, "to")) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"status": "error", "message": "from and to are required"})))
            .into_response();
    };
    let time = unix_now();
    let target = {
        let mut zadarma = state.lock().unwrap();
        zadarma.callbacks.push(json!({"from": from, "to": to, "time": time}));
        zadarma.webhook.clone()
    };
    if let Some(target) = target {
        let play = Play {
            webhook_url: target.webhook_url,
            secret: target.secret,
            scenario: "outgoing".into(),
            caller: to.to_owned(),
            number: default_number(),
            extension: from.to_owned(),
            pbx_call_id: None,
            end_before_answer: false,
            times: 1,
            gap_ms: target.gap_ms,
        };
        tokio::spawn(async move {
            // Zadarma rings the extension first: the notifications follow the answer to the request.
            tokio::time::sleep(Duration::from_millis(100)).await;
            play_call(&play).await;
        });
    }
    Json(json!({"status": "success", "from": from, "to": to, "time": time})).into_response()
}

/// `GET /v1/pbx/record/request/?call_id|pbx_call_id&lifetime`: a link to the recording's file.
async fn record(State(state): State<Shared>, uri: Uri, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let Some(params) = authorized(&state, &uri, query, &headers) else {
        return not_authorized();
    };
    let Some(id) = param(&params, "call_id").or_else(|| param(&params, "pbx_call_id")) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"status": "error", "message": "call_id or pbx_call_id"})))
            .into_response();
    };
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("127.0.0.1");
    let file: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
    Json(json!({"status": "success", "link": format!("http://{host}/zadarma/records/{file}.mp3"), "lifetime_till": ""}))
        .into_response()
}

/// A recording's bytes (silence stands in).
async fn recording_file(Path(_file): Path<String>) -> Response {
    ([(header::CONTENT_TYPE, "audio/mpeg"), (header::ACCEPT_RANGES, "bytes")], vec![0u8; 64]).into_response()
}

#[derive(Deserialize)]
struct Account {
    key: String,
    secret: String,
}

async fn set_account(State(state): State<Shared>, Json(account): Json<Account>) -> StatusCode {
    let mut zadarma = state.lock().unwrap();
    zadarma.key = account.key;
    zadarma.secret = account.secret;
    StatusCode::NO_CONTENT
}

async fn set_webhook(State(state): State<Shared>, Json(target): Json<Target>) -> StatusCode {
    state.lock().unwrap().webhook = Some(target);
    StatusCode::NO_CONTENT
}

async fn callbacks(State(state): State<Shared>) -> Json<Value> {
    Json(Value::Array(state.lock().unwrap().callbacks.clone()))
}

fn default_caller() -> String {
    "+5511988887777".into()
}
fn default_number() -> String {
    "+551133334444".into()
}
fn default_extension() -> String {
    "101".into()
}
fn once() -> u32 {
    1
}

/// A call to play: `answered` (START, INTERNAL, ANSWER, END answered 42 s and recorded, RECORD), `missed`
/// (START, INTERNAL, END no answer), `outgoing` (OUT_START, OUT_END answered 27 s and recorded, RECORD).
#[derive(Deserialize)]
struct Play {
    webhook_url: String,
    /// The account's API secret, which Zadarma signs its notifications with; the stand-in's own when left out.
    #[serde(default)]
    secret: String,
    scenario: String,
    /// The client's number.
    #[serde(default = "default_caller")]
    caller: String,
    /// The account's number the client called (`called_did`).
    #[serde(default = "default_number")]
    number: String,
    #[serde(default = "default_extension")]
    extension: String,
    /// The call's id; a new one when absent (the same one replays a call).
    #[serde(default)]
    pbx_call_id: Option<String>,
    /// The END posted before the ANSWER (notifications arrive out of order).
    #[serde(default)]
    end_before_answer: bool,
    /// Each notification posted this many times (Zadarma's retries).
    #[serde(default = "once")]
    times: u32,
    #[serde(default)]
    gap_ms: u64,
}

async fn play(State(state): State<Shared>, Json(mut play): Json<Play>) -> Response {
    if play.secret.is_empty() {
        play.secret.clone_from(&state.lock().unwrap().secret);
    }
    if !matches!(play.scenario.as_str(), "answered" | "missed" | "outgoing") {
        return (StatusCode::BAD_REQUEST, format!("unknown scenario {:?}", play.scenario)).into_response();
    }
    let (pbx_call_id, deliveries) = play_call(&play).await;
    Json(json!({"pbx_call_id": pbx_call_id, "deliveries": deliveries})).into_response()
}

/// Posts the scenario's notifications in order; returns the call id and each delivery's answer.
async fn play_call(play: &Play) -> (String, Vec<Value>) {
    let outgoing = play.scenario == "outgoing";
    let prefix = if outgoing { "out" } else { "in" };
    let pbx_call_id = play.pbx_call_id.clone().unwrap_or_else(|| format!("{prefix}_{}", uuid::Uuid::new_v4().simple()));
    let call_start = crate::clock::date_time(unix_now());
    let record = format!("{}.{}", unix_now(), &pbx_call_id[pbx_call_id.len().saturating_sub(6)..]);
    let (caller, number, extension) = (play.caller.as_str(), play.number.as_str(), play.extension.as_str());
    let base = |event: &str| -> Vec<(String, String)> {
        vec![
            ("event".into(), event.into()),
            ("call_start".into(), call_start.clone()),
            ("pbx_call_id".into(), pbx_call_id.clone()),
        ]
    };
    let with = |mut fields: Vec<(String, String)>, more: &[(&str, &str)]| {
        fields.extend(more.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        fields
    };
    let mut notifications: Vec<Vec<(String, String)>> = Vec::new();
    let end = |disposition: &str, duration: &str, recorded: bool| {
        let (is_recorded, rec) = if recorded { ("1", record.as_str()) } else { ("0", "") };
        if outgoing {
            with(
                base("NOTIFY_OUT_END"),
                &[
                    ("caller_id", number),
                    ("destination", caller),
                    ("internal", extension),
                    ("duration", duration),
                    ("disposition", disposition),
                    ("status_code", "16"),
                    ("is_recorded", is_recorded),
                    ("call_id_with_rec", rec),
                ],
            )
        } else {
            with(
                base("NOTIFY_END"),
                &[
                    ("caller_id", caller),
                    ("called_did", number),
                    ("internal", extension),
                    ("duration", duration),
                    ("disposition", disposition),
                    ("status_code", "16"),
                    ("is_recorded", is_recorded),
                    ("call_id_with_rec", rec),
                ],
            )
        }
    };
    let record_notification = with(
        vec![("event".into(), "NOTIFY_RECORD".into())],
        &[("call_id_with_rec", record.as_str()), ("pbx_call_id", pbx_call_id.as_str())],
    );
    match play.scenario.as_str() {
        "answered" => {
            notifications.push(with(base("NOTIFY_START"), &[("caller_id", caller), ("called_did", number)]));
            notifications.push(with(
                base("NOTIFY_INTERNAL"),
                &[("caller_id", caller), ("called_did", number), ("internal", extension)],
            ));
            let answer = with(
                base("NOTIFY_ANSWER"),
                &[("caller_id", caller), ("destination", extension), ("internal", extension)],
            );
            let ended = end("answered", "42", true);
            if play.end_before_answer {
                notifications.extend([ended, answer]);
            } else {
                notifications.extend([answer, ended]);
            }
            notifications.push(record_notification);
        }
        "missed" => {
            notifications.push(with(base("NOTIFY_START"), &[("caller_id", caller), ("called_did", number)]));
            notifications.push(with(
                base("NOTIFY_INTERNAL"),
                &[("caller_id", caller), ("called_did", number), ("internal", extension)],
            ));
            notifications.push(end("no answer", "20", false));
        }
        _ => {
            notifications.push(with(base("NOTIFY_OUT_START"), &[("internal", extension), ("destination", caller)]));
            notifications.push(end("answered", "27", true));
            notifications.push(record_notification);
        }
    }
    let http = reqwest::Client::new();
    let mut deliveries = Vec::new();
    for fields in notifications {
        for _ in 0..play.times.max(1) {
            deliveries.push(deliver(&http, &play.webhook_url, &play.secret, &fields).await);
            if play.gap_ms > 0 {
                tokio::time::sleep(Duration::from_millis(play.gap_ms.min(10_000))).await;
            }
        }
    }
    (pbx_call_id, deliveries)
}

/// The fields a notification signs, concatenated (`lib/Webhook/Notify*.php`'s `getSignatureString`).
pub fn signed_string(fields: &[(String, String)]) -> String {
    let get =
        |name: &str| fields.iter().find(|(field, _)| field == name).map(|(_, value)| value.as_str()).unwrap_or("");
    let names: [&str; 3] = match get("event") {
        "NOTIFY_ANSWER" => ["caller_id", "destination", "call_start"],
        "NOTIFY_OUT_START" | "NOTIFY_OUT_END" => ["internal", "destination", "call_start"],
        "NOTIFY_RECORD" => ["pbx_call_id", "call_id_with_rec", ""],
        _ => ["caller_id", "called_did", "call_start"],
    };
    names.iter().map(|name| if name.is_empty() { "" } else { get(name) }).collect()
}

async fn deliver(http: &reqwest::Client, url: &str, secret: &str, fields: &[(String, String)]) -> Value {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let event = fields.first().map(|(_, value)| value.clone()).unwrap_or_default();
    let answer = http
        .post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("Signature", notify_signature(secret, &signed_string(fields)))
        .body(body)
        .send()
        .await;
    match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            json!({"event": event, "status": status, "body": response.text().await.unwrap_or_default()})
        }
        Err(error) => json!({"event": event, "status": 0, "error": error.to_string()}),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_secs() as i64).unwrap_or(0)
}
