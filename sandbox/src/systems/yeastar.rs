//! The Yeastar P-Series stand-in: the PBX's OpenAPI as the server calls it (`get_token`, `call/dial`,
//! `recording/download`, under `/yeastar`), and a player that posts a call's real sequence of webhook events
//! (30011 status changes, then the 30012 CDR), each body's `msg` a JSON string and signed as Yeastar signs:
//! `X-Signature` = base64(HMAC-SHA256(the secret's text, the raw body)).
//!
//! Control paths: `PUT /sandbox/yeastar/client` (the API client's id and secret the PBX accepts),
//! `PUT /sandbox/yeastar/webhook` (where `call/dial` plays its outgoing calls, with which secret, how fast),
//! `POST /sandbox/yeastar/play` (plays one scenario now and answers each delivery's HTTP status),
//! `GET /sandbox/yeastar/dials` (every `call/dial` received).
//!
//! Shapes from Yeastar's P-Series developer guide: "(30011) Call Status Changed", "(30012) New CDR",
//! "Get Access Token", "Make a Call", "Download a Recording File", "Monitor Events via Webhook".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

/// The API client the stand-in accepts until told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "sandbox-yeastar-client";
pub const DEFAULT_CLIENT_SECRET: &str = "sandbox-yeastar-secret";
/// The PBX's serial number, `sn` in every event.
pub const SERIAL: &str = "3631A2124001";
/// Yeastar's "invalid username or password" error code (any non-zero `errcode` is a failure).
const LOGIN_FAILED: i64 = 10004;
const TOKEN_INVALID: i64 = 10005;

#[derive(Default)]
struct Inner {
    client: Option<(String, String)>,
    tokens: Vec<String>,
    webhook: Option<Target>,
    dials: Vec<Value>,
    next_call: u64,
}

#[derive(Clone, Deserialize)]
struct Target {
    webhook_url: String,
    /// The secret as the admin typed it into Yeastar's webhook settings.
    secret: String,
    /// Between two events of a played call.
    #[serde(default = "default_gap_ms")]
    gap_ms: u64,
}

fn default_gap_ms() -> u64 {
    300
}

#[derive(Clone, Default)]
struct Pbx {
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

impl Pbx {
    fn client(&self) -> (String, String) {
        let inner = self.inner.lock().unwrap();
        inner.client.clone().unwrap_or_else(|| (DEFAULT_CLIENT_ID.into(), DEFAULT_CLIENT_SECRET.into()))
    }

    fn knows(&self, token: Option<&str>) -> bool {
        token.is_some_and(|token| self.inner.lock().unwrap().tokens.iter().any(|known| known == token))
    }

    /// A call id as Yeastar makes them: `<unix seconds>.<sequence>`.
    fn call_id(&self) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next_call += 1;
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        format!("{secs}.{}", inner.next_call)
    }
}

pub fn router() -> Router {
    Router::new()
        .route("/yeastar/openapi/v1.0/get_token", post(get_token))
        .route("/yeastar/openapi/v1.0/call/dial", post(dial))
        .route("/yeastar/openapi/v1.0/recording/download", get(recording_download))
        .route("/yeastar/api/download/{file}", get(download))
        .route("/sandbox/yeastar/client", put(set_client))
        .route("/sandbox/yeastar/webhook", put(set_webhook))
        .route("/sandbox/yeastar/play", post(play_handler))
        .route("/sandbox/yeastar/dials", get(dials))
        .with_state(Pbx::default())
}

fn failure(errcode: i64) -> Json<Value> {
    Json(json!({"errcode": errcode, "errmsg": "FAILURE"}))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// `POST get_token`: Yeastar answers every outcome with HTTP 200 and tells failures by `errcode`.
async fn get_token(State(pbx): State<Pbx>, headers: HeaderMap, Json(login): Json<Login>) -> Json<Value> {
    // "You MUST include a User-Agent header with every request".
    if !headers.contains_key(header::USER_AGENT) {
        return failure(LOGIN_FAILED);
    }
    let (id, secret) = pbx.client();
    if login.username != id || login.password != secret {
        return failure(LOGIN_FAILED);
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    pbx.inner.lock().unwrap().tokens.push(token.clone());
    Json(json!({
        "errcode": 0, "errmsg": "SUCCESS",
        "access_token_expire_time": 1800, "access_token": token,
        "refresh_token_expire_time": 86400, "refresh_token": uuid::Uuid::new_v4().simple().to_string(),
    }))
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
    file: Option<String>,
}

#[derive(Deserialize)]
struct DialRequest {
    caller: String,
    callee: String,
}

/// `POST call/dial`: answers the call id, then plays the outgoing call to the webhook set for it.
async fn dial(
    State(pbx): State<Pbx>,
    Query(query): Query<TokenQuery>,
    Json(request): Json<DialRequest>,
) -> Json<Value> {
    if !pbx.knows(query.access_token.as_deref()) {
        return failure(TOKEN_INVALID);
    }
    let call_id = pbx.call_id();
    let target = {
        let mut inner = pbx.inner.lock().unwrap();
        inner.dials.push(json!({"caller": request.caller, "callee": request.callee, "call_id": call_id}));
        inner.webhook.clone()
    };
    if let Some(target) = target {
        let call = Call {
            call_id: call_id.clone(),
            extension: request.caller,
            number: request.callee,
            line: String::new(),
            scenario: Scenario::Outgoing,
            cdr_first: false,
        };
        let http = pbx.http.clone();
        tokio::spawn(async move { play(&http, &target, &call).await });
    }
    Json(json!({"errcode": 0, "errmsg": "SUCCESS", "call_id": call_id}))
}

/// `GET recording/download`: the file's download path, to be fetched with a token.
async fn recording_download(State(pbx): State<Pbx>, Query(query): Query<TokenQuery>) -> Json<Value> {
    if !pbx.knows(query.access_token.as_deref()) {
        return failure(TOKEN_INVALID);
    }
    let Some(file) = query.file.filter(|file| !file.is_empty() && !file.contains('/')) else {
        return failure(10002);
    };
    Json(
        json!({"errcode": 0, "errmsg": "SUCCESS", "file": file, "download_resource_url": format!("/api/download/{file}")}),
    )
}

/// The recording itself: a WAV header with no samples.
async fn download(
    State(pbx): State<Pbx>,
    Path(_file): Path<String>,
    Query(query): Query<TokenQuery>,
) -> impl IntoResponse {
    if !pbx.knows(query.access_token.as_deref()) {
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/plain")], Vec::new());
    }
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&36u32.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&[16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&0u32.to_le_bytes());
    (StatusCode::OK, [(header::CONTENT_TYPE, "audio/wav")], wav)
}

#[derive(Deserialize)]
struct Client {
    client_id: String,
    client_secret: String,
}

async fn set_client(State(pbx): State<Pbx>, Json(client): Json<Client>) -> StatusCode {
    pbx.inner.lock().unwrap().client = Some((client.client_id, client.client_secret));
    StatusCode::NO_CONTENT
}

async fn set_webhook(State(pbx): State<Pbx>, Json(target): Json<Target>) -> StatusCode {
    pbx.inner.lock().unwrap().webhook = Some(target);
    StatusCode::NO_CONTENT
}

async fn dials(State(pbx): State<Pbx>) -> Json<Value> {
    Json(Value::Array(pbx.inner.lock().unwrap().dials.clone()))
}

/// The calls the player knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// A client calls the DID, the extension answers, they talk, the CDR says ANSWERED with a recording.
    Answered,
    /// A client calls, the extension rings, nobody answers: NO ANSWER.
    Missed,
    /// The extension calls a client (click-to-call) who answers.
    Outgoing,
    /// One extension calls another: no trunk leg, CDR type Internal.
    Internal,
}

#[derive(Deserialize)]
struct PlayRequest {
    webhook_url: String,
    secret: String,
    scenario: Scenario,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default = "default_extension")]
    extension: String,
    /// The client's number.
    #[serde(default = "default_number")]
    number: String,
    /// The number the client dialled.
    #[serde(default = "default_line")]
    line: String,
    /// The CDR before the last status event (the BYE), as a webhook may arrive.
    #[serde(default)]
    cdr_first: bool,
    #[serde(default)]
    gap_ms: u64,
}

fn default_extension() -> String {
    "101".into()
}
fn default_number() -> String {
    "+5511988887777".into()
}
fn default_line() -> String {
    "+551133334444".into()
}

/// `POST /sandbox/yeastar/play`: plays one call now; answers its id and each delivery's type and HTTP status.
async fn play_handler(State(pbx): State<Pbx>, Json(request): Json<PlayRequest>) -> Json<Value> {
    let call = Call {
        call_id: request.call_id.unwrap_or_else(|| pbx.call_id()),
        extension: request.extension,
        number: request.number,
        line: request.line,
        scenario: request.scenario,
        cdr_first: request.cdr_first,
    };
    let target = Target { webhook_url: request.webhook_url, secret: request.secret, gap_ms: request.gap_ms };
    let deliveries = play(&pbx.http, &target, &call).await;
    Json(json!({"call_id": call.call_id, "deliveries": deliveries}))
}

struct Call {
    call_id: String,
    extension: String,
    number: String,
    line: String,
    scenario: Scenario,
    cdr_first: bool,
}

/// The call's webhook bodies in the order Yeastar sends them.
fn events(call: &Call) -> Vec<Value> {
    let Call { call_id, extension: ext, number, line, .. } = call;
    let ext_leg = |status: &str| json!({"extension": {"number": ext, "channel_id": format!("PJSIP/{ext}-00000001"), "member_status": status, "call_path": ""}});
    let inbound = |status: &str| json!({"inbound": {"from": number, "to": line, "trunk_name": "SIP-Trunk", "channel_id": "PJSIP/SIP-Trunk-00000002", "member_status": status}});
    let outbound = |status: &str| json!({"outbound": {"from": ext, "to": number, "trunk_name": "SIP-Trunk", "channel_id": "PJSIP/SIP-Trunk-00000003", "member_status": status}});
    let other = |status: &str| json!({"extension": {"number": "102", "channel_id": "PJSIP/102-00000004", "member_status": status, "call_path": ""}});
    let status = |members: Vec<Value>| json!({"call_id": call_id, "members": members});
    let recording = |kind: &str, from: &str, to: &str| format!("20260101120000-{call_id}-{from}-{to}-{kind}.wav");
    let cdr = |from: &str, to: &str, kind: &str, status: &str, total: u32, talk: u32, did: &str| {
        let recording = if talk > 0 { recording(kind, from, to) } else { String::new() };
        json!({
            "call_id": call_id, "time_start": "2026-01-01 12:00:00", "call_from": from, "call_to": to,
            "call_duration": total, "talk_duration": talk, "src_trunk_name": "SIP-Trunk", "dst_trunk_name": "",
            "pin_code": "", "status": status, "type": kind, "recording": recording, "did_number": did,
            "agent_ring_time": total - talk,
        })
    };
    let mut bodies = match call.scenario {
        Scenario::Answered => vec![
            (30011, status(vec![inbound("ALERT"), ext_leg("RING")])),
            (30011, status(vec![inbound("ANSWERED"), ext_leg("ANSWER")])),
            (30011, status(vec![inbound("BYE"), ext_leg("BYE")])),
            (30012, cdr(number, ext, "Inbound", "ANSWERED", 42, 35, line)),
        ],
        Scenario::Missed => vec![
            (30011, status(vec![inbound("ALERT"), ext_leg("RING")])),
            (30011, status(vec![inbound("BYE"), ext_leg("BYE")])),
            (30012, cdr(number, ext, "Inbound", "NO ANSWER", 25, 0, line)),
        ],
        Scenario::Outgoing => vec![
            (30011, status(vec![ext_leg("ANSWER"), outbound("RING")])),
            (30011, status(vec![ext_leg("ANSWER"), outbound("ANSWER")])),
            (30011, status(vec![ext_leg("BYE"), outbound("BYE")])),
            (30012, cdr(ext, number, "Outbound", "ANSWERED", 27, 20, "")),
        ],
        Scenario::Internal => vec![
            (30011, status(vec![ext_leg("ALERT"), other("RING")])),
            (30011, status(vec![ext_leg("ANSWERED"), other("ANSWER")])),
            (30011, status(vec![ext_leg("BYE"), other("BYE")])),
            (30012, cdr(ext, "102", "Internal", "ANSWERED", 12, 10, "")),
        ],
    };
    if call.cdr_first {
        let cdr = bodies.pop().expect("every scenario ends with its CDR");
        bodies.insert(bodies.len() - 1, cdr);
    }
    bodies.into_iter().map(|(kind, msg)| json!({"type": kind, "sn": SERIAL, "msg": msg.to_string()})).collect()
}

/// Yeastar's `X-Signature` of a body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Posts the call's events in order, `gap_ms` apart; answers each one's type and HTTP status (0: not
/// delivered).
async fn play(http: &reqwest::Client, target: &Target, call: &Call) -> Vec<Value> {
    let mut deliveries = Vec::new();
    for (index, event) in events(call).into_iter().enumerate() {
        if index > 0 && target.gap_ms > 0 {
            tokio::time::sleep(Duration::from_millis(target.gap_ms)).await;
        }
        let body = event.to_string();
        let sent = http
            .post(&target.webhook_url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Signature", signature(&target.secret, body.as_bytes()))
            .body(body)
            .send()
            .await;
        let status = sent.map(|response| response.status().as_u16()).unwrap_or(0);
        deliveries.push(json!({"type": event["type"], "status": status}));
    }
    deliveries
}
