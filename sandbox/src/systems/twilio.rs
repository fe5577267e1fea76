//! The Twilio stand-in: its REST API as the server calls it (`/twilio/2010-04-01/...`, Basic auth with the
//! account SID and auth token: the account, its phone numbers, creating a call) and a player
//! (`POST /sandbox/twilio/play`) that posts a call's status callbacks and its recording callback, form-encoded
//! and signed the Twilio way (`X-Twilio-Signature`), to the server. A call created through the API plays its
//! callbacks to its `StatusCallback`, as Twilio does.
//!
//! The sequences follow Twilio's docs ("Call resource": status callback parameters and `StatusCallbackEvent`;
//! "TwiML `<Dial>`/`<Client>`": the child leg of a forwarded call carries `ParentCallSid` and
//! `Direction=outbound-dial`; "Recording status callbacks"). The stand-in's account is
//! [`DEMO_ACCOUNT_SID`] with [`DEMO_AUTH_TOKEN`] and [`DEMO_NUMBER`]; `PUT /sandbox/twilio/account` sets another.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;

pub const DEMO_ACCOUNT_SID: &str = "AC0000000000000000000000000000d3m0";
pub const DEMO_AUTH_TOKEN: &str = "sandbox-twilio-auth-token";
pub const DEMO_NUMBER: &str = "+15005550006";

/// The one account the stand-in serves and the calls created through its API.
struct Twilio {
    account_sid: String,
    auth_token: String,
    friendly_name: String,
    number: String,
    /// Every `POST …/Calls.json`, its form as received.
    calls: Vec<Value>,
}

type Shared = Arc<Mutex<Twilio>>;

pub fn router() -> Router {
    let state: Shared = Arc::new(Mutex::new(Twilio {
        account_sid: DEMO_ACCOUNT_SID.into(),
        auth_token: DEMO_AUTH_TOKEN.into(),
        friendly_name: "Sandbox Twilio".into(),
        number: DEMO_NUMBER.into(),
        calls: Vec::new(),
    }));
    Router::new()
        .route("/twilio/2010-04-01/Accounts/{file}", get(account))
        .route("/twilio/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json", get(numbers))
        .route("/twilio/2010-04-01/Accounts/{sid}/Calls.json", post(create_call))
        .route("/sandbox/twilio/account", put(set_account))
        .route("/sandbox/twilio/calls", get(created_calls))
        .route("/sandbox/twilio/play", post(play))
        .with_state(state)
}

/// Twilio's signature: base64(HMAC-SHA1(auth token, URL + each parameter's name and value sorted by name))
/// ("Webhooks security").
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Twilio's REST error body (`code` 20003: authentication failed).
fn refused(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message, "more_info": "", "status": status.as_u16()})))
        .into_response()
}

/// Twilio's refusal unless the request has Basic auth with the account's SID and token, for the SID in the
/// path.
fn refusal(twilio: &Twilio, headers: &HeaderMap, sid: &str) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|value| BASE64.decode(value).ok())
        .and_then(|value| String::from_utf8(value).ok());
    let expected = format!("{}:{}", twilio.account_sid, twilio.auth_token);
    if given.as_deref() != Some(expected.as_str()) {
        return Some(refused(StatusCode::UNAUTHORIZED, 20003, "Authenticate"));
    }
    if sid != twilio.account_sid {
        return Some(refused(StatusCode::NOT_FOUND, 20404, "The requested resource was not found"));
    }
    None
}

async fn account(State(state): State<Shared>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let twilio = state.lock().unwrap();
    let Some(sid) = file.strip_suffix(".json") else {
        return refused(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    };
    if let Some(refusal) = refusal(&twilio, &headers, sid) {
        return refusal;
    }
    Json(json!({
        "sid": twilio.account_sid, "friendly_name": twilio.friendly_name, "status": "active", "type": "Full",
        "uri": format!("/2010-04-01/Accounts/{}.json", twilio.account_sid),
    }))
    .into_response()
}

async fn numbers(State(state): State<Shared>, Path(sid): Path<String>, headers: HeaderMap) -> Response {
    let twilio = state.lock().unwrap();
    if let Some(refusal) = refusal(&twilio, &headers, &sid) {
        return refusal;
    }
    Json(
        json!({"incoming_phone_numbers": [{"sid": "PN0000000000000000000000000000d3m0", "phone_number": twilio.number}],
        "page": 0, "page_size": 1}),
    )
    .into_response()
}

/// `POST …/Calls.json`: answers 201 with the new call's SID; with a `StatusCallback`, its callbacks follow as
/// an outgoing call (the manager's client rung first, `Direction=outbound-api`).
async fn create_call(
    State(state): State<Shared>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let mut twilio = state.lock().unwrap();
    if let Some(refusal) = refusal(&twilio, &headers, &sid) {
        return refusal;
    }
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let (Some(to), Some(from)) = (field("To"), field("From")) else {
        return refused(StatusCode::BAD_REQUEST, 21201, "No 'To' or 'From' number is specified");
    };
    if field("Twiml").is_none() && field("Url").is_none() {
        return refused(StatusCode::BAD_REQUEST, 21205, "Url or Twiml is required");
    }
    let call_sid = new_sid("CA");
    let mut recorded = serde_json::Map::new();
    for (name, value) in &form {
        match recorded.get_mut(name) {
            Some(Value::Array(values)) => values.push(json!(value)),
            Some(existing) => *existing = json!([existing.clone(), value]),
            None => {
                recorded.insert(name.clone(), json!(value));
            }
        }
    }
    recorded.insert("sid".into(), json!(call_sid));
    twilio.calls.push(Value::Object(recorded));
    if let Some(callback) = field("StatusCallback") {
        let call = Played {
            webhook_url: callback,
            auth_token: twilio.auth_token.clone(),
            account_sid: twilio.account_sid.clone(),
            call_sid: call_sid.clone(),
            parent_sid: None,
            gap: Duration::ZERO,
        };
        let leg = Leg { from: from.clone(), to: to.clone(), direction: "outbound-api" };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let http = reqwest::Client::new();
            for (status, duration) in
                [("initiated", None), ("ringing", None), ("in-progress", None), ("completed", Some(27))]
            {
                call.status(&http, &leg, status, duration, None).await;
            }
        });
    }
    (
        StatusCode::CREATED,
        Json(json!({"sid": call_sid, "account_sid": sid, "to": to, "from": from, "status": "queued",
            "direction": "outbound-api", "api_version": "2010-04-01"})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AccountSettings {
    account_sid: String,
    auth_token: String,
    #[serde(default)]
    phone_number: Option<String>,
}

async fn set_account(State(state): State<Shared>, Json(settings): Json<AccountSettings>) -> StatusCode {
    let mut twilio = state.lock().unwrap();
    twilio.account_sid = settings.account_sid;
    twilio.auth_token = settings.auth_token;
    if let Some(number) = settings.phone_number {
        twilio.number = number;
    }
    StatusCode::NO_CONTENT
}

async fn created_calls(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"calls": state.lock().unwrap().calls}))
}

fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// One leg's ends and direction as Twilio reports them.
struct Leg {
    from: String,
    to: String,
    direction: &'static str,
}

/// Where and as whom a call's callbacks go.
struct Played {
    webhook_url: String,
    auth_token: String,
    account_sid: String,
    call_sid: String,
    parent_sid: Option<String>,
    /// Pause before each callback (a call played at a person's pace).
    gap: Duration,
}

/// What the server answered to one callback.
struct Answered {
    status: u16,
    body: Value,
}

impl Played {
    /// Posts `params` signed; returns the server's answer.
    async fn post(&self, http: &reqwest::Client, params: Vec<(String, String)>) -> Answered {
        tokio::time::sleep(self.gap).await;
        let signature = signature(&self.auth_token, &self.webhook_url, &params);
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        let sent = http
            .post(&self.webhook_url)
            .header("X-Twilio-Signature", signature)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::USER_AGENT, "TwilioProxy/1.1")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                Answered { status, body: response.json().await.unwrap_or(Value::Null) }
            }
            Err(_) => Answered { status: 0, body: Value::Null },
        }
    }

    /// One status callback of `leg` (its `SequenceNumber` counted per leg from 0, as Twilio does).
    async fn status(
        &self,
        http: &reqwest::Client,
        leg: &Leg,
        status: &str,
        duration: Option<u32>,
        sequence: Option<u32>,
    ) -> Answered {
        let event = match status {
            "queued" | "initiated" => "initiated",
            "ringing" => "ringing",
            "in-progress" => "answered",
            _ => "completed",
        };
        let sequence = sequence.unwrap_or(match event {
            "initiated" => 0,
            "ringing" => 1,
            "answered" => 2,
            _ => 3,
        });
        let mut params: Vec<(String, String)> = [
            ("AccountSid", self.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.call_sid.as_str()),
            ("CallStatus", status),
            ("Called", leg.to.as_str()),
            ("Caller", leg.from.as_str()),
            ("Direction", leg.direction),
            ("From", leg.from.as_str()),
            ("To", leg.to.as_str()),
            ("CallbackSource", "call-progress-events"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        params.push(("SequenceNumber".into(), sequence.to_string()));
        params.push(("Timestamp".into(), crate::clock::rfc2822(now())));
        if let Some(parent) = &self.parent_sid {
            params.push(("ParentCallSid".into(), parent.clone()));
        }
        if let Some(duration) = duration {
            params.push(("CallDuration".into(), duration.to_string()));
            params.push(("Duration".into(), duration.div_ceil(60).to_string()));
        }
        self.post(http, params).await
    }

    /// The recording status callback of a completed recording of `call_sid`.
    async fn recording(&self, http: &reqwest::Client, call_sid: &str, seconds: u32) -> Answered {
        let recording = new_sid("RE");
        let url = format!("https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{recording}", self.account_sid);
        let params: Vec<(String, String)> = [
            ("AccountSid", self.account_sid.clone()),
            ("CallSid", call_sid.to_owned()),
            ("RecordingSid", recording),
            ("RecordingUrl", url),
            ("RecordingStatus", "completed".into()),
            ("RecordingDuration", seconds.to_string()),
            ("RecordingChannels", "1".into()),
            ("RecordingSource", "DialVerb".into()),
            ("RecordingStartTime", crate::clock::rfc2822(now() - i64::from(seconds))),
            ("ErrorCode", "0".into()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        self.post(http, params).await
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// `POST /sandbox/twilio/play`: which call to play, and to whom.
#[derive(Deserialize)]
struct Play {
    webhook_url: String,
    /// The account's auth token and SID; the stand-in's own account's when left out.
    #[serde(default)]
    auth_token: String,
    #[serde(default)]
    account_sid: String,
    /// Pause before each callback, in milliseconds.
    #[serde(default)]
    gap_ms: u64,
    /// `answered`, `missed`, `busy`, `outgoing`, `out_of_order` (the end before the answer), `duplicated`
    /// (every callback twice, as Twilio's retries).
    scenario: String,
    #[serde(default = "default_extension")]
    extension: String,
    #[serde(default = "default_caller")]
    caller: String,
    /// The Twilio number called (inbound) or calling (outgoing).
    #[serde(default = "default_number")]
    number: String,
}

fn default_extension() -> String {
    "101".into()
}

fn default_caller() -> String {
    "+5511988887777".into()
}

fn default_number() -> String {
    DEMO_NUMBER.into()
}

/// Plays a call's callbacks in order and answers `{call_id, deliveries: [{status, body}]}`: `call_id` is the
/// call's root `CallSid` (the caller's leg inbound, the manager's outgoing), the id the server's events carry.
async fn play(State(state): State<Shared>, Json(mut play): Json<Play>) -> Response {
    if play.auth_token.is_empty() || play.account_sid.is_empty() {
        let twilio = state.lock().unwrap();
        play.auth_token.clone_from(&twilio.auth_token);
        play.account_sid.clone_from(&twilio.account_sid);
    }
    let Ok(webhook) = reqwest::Url::parse(&play.webhook_url) else {
        return (StatusCode::BAD_REQUEST, "webhook_url is not a URL").into_response();
    };
    let http = reqwest::Client::new();
    let parent = new_sid("CA");
    let child = new_sid("CA");
    let manager = format!("client:{}", play.extension);
    let forwarded = Played {
        webhook_url: play.webhook_url.clone(),
        auth_token: play.auth_token.clone(),
        account_sid: play.account_sid.clone(),
        call_sid: child.clone(),
        parent_sid: Some(parent.clone()),
        gap: Duration::from_millis(play.gap_ms.min(10_000)),
    };
    // The caller's own leg, reported by the number's status callback: its end only.
    let callers = Played { call_sid: parent.clone(), parent_sid: None, ..forwarded.clone_target() };
    let to_manager = Leg { from: play.caller.clone(), to: manager.clone(), direction: "outbound-dial" };
    let callers_leg = Leg { from: play.caller.clone(), to: play.number.clone(), direction: "inbound" };
    let mut answers = Vec::new();
    match play.scenario.as_str() {
        "answered" | "duplicated" | "out_of_order" => {
            let mut steps: Vec<(&str, Option<u32>)> =
                vec![("initiated", None), ("ringing", None), ("in-progress", None), ("completed", Some(42))];
            if play.scenario == "out_of_order" {
                steps.swap(2, 3);
            }
            let times = if play.scenario == "duplicated" { 2 } else { 1 };
            for (status, duration) in steps {
                for _ in 0..times {
                    answers.push(forwarded.status(&http, &to_manager, status, duration, None).await);
                }
            }
            answers.push(callers.status(&http, &callers_leg, "completed", Some(51), Some(0)).await);
            for _ in 0..times {
                answers.push(callers.recording(&http, &parent, 42).await);
            }
        }
        "missed" => {
            for (status, duration) in [("initiated", None), ("ringing", None), ("no-answer", Some(0))] {
                answers.push(forwarded.status(&http, &to_manager, status, duration, None).await);
            }
            answers.push(callers.status(&http, &callers_leg, "completed", Some(31), Some(0)).await);
        }
        "busy" => {
            for (status, duration) in [("initiated", None), ("busy", Some(0))] {
                answers.push(forwarded.status(&http, &to_manager, status, duration, None).await);
            }
            answers.push(callers.status(&http, &callers_leg, "completed", Some(2), Some(0)).await);
        }
        "outgoing" => {
            // Our click-to-call's first leg: the manager's client rung by the Calls API; the number dialled
            // rides in the callback URL as the server's click-to-call puts it.
            let mut url = webhook;
            url.query_pairs_mut().append_pair("to", &play.caller);
            let outgoing = Played { webhook_url: url.to_string(), ..callers.clone_target() };
            let leg = Leg { from: play.number.clone(), to: manager, direction: "outbound-api" };
            for (status, duration) in
                [("initiated", None), ("ringing", None), ("in-progress", None), ("completed", Some(27))]
            {
                answers.push(outgoing.status(&http, &leg, status, duration, None).await);
            }
        }
        other => return (StatusCode::BAD_REQUEST, format!("unknown scenario {other:?}")).into_response(),
    }
    let deliveries: Vec<Value> =
        answers.into_iter().map(|answer| json!({"status": answer.status, "body": answer.body})).collect();
    Json(json!({"call_id": parent, "leg_id": child, "deliveries": deliveries})).into_response()
}

impl Played {
    /// The same destination and account, for another leg.
    fn clone_target(&self) -> Played {
        Played {
            webhook_url: self.webhook_url.clone(),
            auth_token: self.auth_token.clone(),
            account_sid: self.account_sid.clone(),
            call_sid: self.call_sid.clone(),
            parent_sid: self.parent_sid.clone(),
            gap: self.gap,
        }
    }
}
