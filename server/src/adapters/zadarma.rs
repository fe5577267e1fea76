//! Zadarma: its `NOTIFY_*` call notifications read into our call events, and its API's balance (the
//! credentials check), callback request (click-to-call) and recording link.
//!
//! Sources: Zadarma's PHP SDK, github.com/zadarma/user-api-v1 (the reference; its TypeScript SDK signs the raw
//! digest instead, which the PHP SDK refuses, and so do we):
//! - `lib/Webhook/Notify*.php` (`getSignatureString`): the fields each event signs. START, INTERNAL, END:
//!   `caller_id . called_did . call_start`; ANSWER: `caller_id . destination . call_start`; OUT_START,
//!   OUT_END: `internal . destination . call_start`; RECORD: `pbx_call_id . call_id_with_rec`. The fields
//!   each event carries are the classes' properties (`NotifyEnd`: `duration`, `disposition`, `status_code`,
//!   `is_recorded`, `call_id_with_rec`, `internal`).
//! - `lib/Api.php` `getWebhookEvent`: the `event` form field names the type; the `Signature` header must equal
//!   `Client::encodeSignature(signature string)` = `base64_encode(hash_hmac('sha1', …, secret))`, and PHP's
//!   `hash_hmac` returns lowercase **hex**, so the header is base64 of 40 hex characters.
//! - `examples/callinfo_callback.php`: `if (isset($_GET['zd_echo'])) exit($_GET['zd_echo']);` (the check
//!   Zadarma makes when the URL is entered) and Zadarma's source address `185.45.152.42`.
//! - `lib/Client.php` `getAuthHeader`: API requests carry `Authorization: <key>:<signature>`, signature =
//!   `encodeSignature(method . params . md5(params))`, where method is the path (`/v1/info/balance/`) and
//!   params the `ksort`ed `http_build_query` (RFC 1738: spaces as `+`) including `format=json`.
//! - `lib/Api.php`: `requestCallback` (`GET /v1/request/callback/?from&to`, `to` digits only; the answer,
//!   `Response/RequestCallback.php`, is `from`, `to`, `time`: no call id), `getPbxRecord`
//!   (`GET /v1/pbx/record/request/?call_id|pbx_call_id&lifetime`, lifetime 180..5184000 s, default 1800;
//!   `Response/PbxRecordRequest.php`: `link` or `links`, `lifetime_till`), `getBalance` (`info/balance`:
//!   `balance`, `currency`); an answer with `status: error` or HTTP ≥ 400 is a failure.
//!
//! Not in the SDK, so UNCONFIRMED without an account: `call_start`'s format and zone (read as
//! `YYYY-MM-DD HH:MM:SS` in UTC, or unix seconds), the `disposition` words (Zadarma's help pages list
//! `answered`, `busy`, `cancel`, `no answer`, `failed`, `no money`, `unallocated number`, `no limit`, `no day
//! limit`, `line limit`, `no money, no limit`), and whether NOTIFY_INTERNAL comes once per ringing extension.
//!
//! What the signature does not cover. It has no timestamp and leaves out the event type, `pbx_call_id`,
//! `disposition` and `duration`, and one call's START, INTERNAL and END carry the same signature. So:
//! - each delivery's id is `zadarma:<event>:<pbx_call_id>` (INTERNAL also by extension): a replay, or Zadarma's
//!   retry, is a duplicate and stored once;
//! - `pbx_call_id` is bound to the signed fields (each delivery's [`Binding`], kept by `http::hooks` in the
//!   store's `call_bindings` for two days): the call's first event binds its signed numbers and start, and a
//!   later event of that call whose signed fields differ (a signature lifted from another call and relabelled
//!   with this call's id) is refused (409), on every replica and across restarts;
//! - what remains: whoever captured one of a call's START/INTERNAL/END deliveries can post it again relabelled
//!   as that same call's END with a `disposition` and `duration` of their choosing, before the real END comes
//!   (which is then a duplicate). Only transport secrecy (https) and, optionally, admitting Zadarma's source
//!   address at the proxy stop that; the README says so.
//!
//! Recordings: at NOTIFY_END the recording is not ready; NOTIFY_RECORD (signed over `pbx_call_id` and
//! `call_id_with_rec`) says it is. Zadarma hands out a link only through its signed API, for at most 60 days,
//! and an adapter is synchronous, with no API call of its own. So the RECORD event carries a stable link of
//! ours, the webhook URL with `zd_record=<call_id_with_rec>&zd_key=<tag>` ([`recording_request`] reads and
//! checks it; the tag is an HMAC with the API secret, so nobody else can mint one), which goes to Kommo as the
//! call's `link` (or as a note when the call was already logged). Following it, `http::hooks` checks the tag and
//! redirects to a fresh link from [`recording_link`] (`no-store`).

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::Sha1;
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};

use super::{AdapterError, Binding, Delivery, Inbound, Keys, Request};
use crate::provider::{ProviderAccount, ProviderClient, ProviderError};

/// The header that carries a notification's signature.
pub const SIGNATURE_HEADER: &str = "signature";
/// The addresses Zadarma's notifications come from (`examples/callinfo_callback.php`'s `ZADARMA_IP`), which
/// `ZADARMA_SOURCES=zadarma` admits. Zadarma may use others: not confirmed.
pub const SOURCE_ADDRESSES: &[std::net::IpAddr] = &[std::net::IpAddr::V4(std::net::Ipv4Addr::new(185, 45, 152, 42))];
/// The API a real account calls.
pub const API_URL: &str = "https://api.zadarma.com";
/// How long a recording link asked of Zadarma lives (its minimum, 3 minutes: fetched when someone listens).
pub const RECORDING_LINK_LIFETIME: u32 = 180;

/// Longest `zd_echo` answered (Zadarma's is a short token).
const MAX_ECHO_LEN: usize = 128;
const MAX_ID_LEN: usize = 128;

/// The form fields one notification carries (`lib/Webhook/Notify*.php`).
#[derive(Debug, Default)]
struct Form {
    event: String,
    fields: Vec<(String, String)>,
}

impl Form {
    fn parse(body: &[u8]) -> Form {
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(body).map(|(name, value)| (name.into_owned(), value.into_owned())).collect();
        let event = fields.iter().find(|(name, _)| name == "event").map(|(_, value)| value.clone()).unwrap_or_default();
        Form { event, fields }
    }

    /// A field's value; a field sent twice is ambiguous and reads as absent.
    fn get(&self, name: &str) -> Option<&str> {
        let mut values = self.fields.iter().filter(|(field, _)| field == name);
        let value = values.next()?;
        values.next().is_none().then_some(value.1.as_str())
    }

    /// A field the signature or the event needs: present (possibly empty, as signed).
    fn signed(&self, name: &'static str) -> Result<&str, AdapterError> {
        self.get(name).ok_or_else(|| AdapterError::Malformed(format!("field `{name}`: missing")))
    }

    /// A field that must hold something.
    fn required(&self, name: &'static str) -> Result<&str, AdapterError> {
        let value = self.signed(name)?;
        if value.trim().is_empty() {
            return Err(AdapterError::Malformed(format!("field `{name}`: must not be empty")));
        }
        Ok(value)
    }

    /// A field that may be absent or empty.
    fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|value| !value.trim().is_empty())
    }
}

/// The notifications we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Start,
    Internal,
    Answer,
    End,
    OutStart,
    OutEnd,
    Record,
}

impl Event {
    fn parse(name: &str) -> Option<Event> {
        Some(match name {
            "NOTIFY_START" => Event::Start,
            "NOTIFY_INTERNAL" => Event::Internal,
            "NOTIFY_ANSWER" => Event::Answer,
            "NOTIFY_END" => Event::End,
            "NOTIFY_OUT_START" => Event::OutStart,
            "NOTIFY_OUT_END" => Event::OutEnd,
            "NOTIFY_RECORD" => Event::Record,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Event::Start => "NOTIFY_START",
            Event::Internal => "NOTIFY_INTERNAL",
            Event::Answer => "NOTIFY_ANSWER",
            Event::End => "NOTIFY_END",
            Event::OutStart => "NOTIFY_OUT_START",
            Event::OutEnd => "NOTIFY_OUT_END",
            Event::Record => "NOTIFY_RECORD",
        }
    }

    /// The fields the event signs, in order (`getSignatureString`).
    fn signed_fields(self) -> [&'static str; 3] {
        match self {
            Event::Start | Event::Internal | Event::End => ["caller_id", "called_did", "call_start"],
            Event::Answer => ["caller_id", "destination", "call_start"],
            Event::OutStart | Event::OutEnd => ["internal", "destination", "call_start"],
            Event::Record => ["pbx_call_id", "call_id_with_rec", ""],
        }
    }
}

/// Reads one request: the `zd_echo` check, or a signed notification.
pub fn inbound(request: &Request<'_>, keys: &Keys<'_>) -> Result<Inbound, AdapterError> {
    if request.method == Method::GET {
        return echo(request.query.unwrap_or_default());
    }
    let secret = keys.secret.ok_or(AdapterError::BadSignature("no API secret on file"))?;
    let form = Form::parse(request.body);
    let Some(event) = Event::parse(&form.event) else {
        // NOTIFY_IVR and anything newer: nothing a call is made of. Verified as START is (the IVR event signs
        // the same fields), so that an unsigned request learns nothing either way.
        verify(&form, Event::Start, request, secret)?;
        return Ok(Inbound::Nothing);
    };
    verify(&form, event, request, secret)?;
    let mut delivery = read(&form, event, request, keys, secret)?;
    delivery.binding = Bound::of(&form, event)
        .map(|bound| Binding { signed: format!("{}\n{}", bound.party, bound.start), line: bound.line });
    Ok(Inbound::Events(vec![delivery]))
}

/// `GET ?zd_echo=<token>` answered with the token (printable ASCII, bounded). A link to a recording is not
/// served here yet (see the module's comment).
fn echo(query: &str) -> Result<Inbound, AdapterError> {
    let value = form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "zd_echo").map(|(_, value)| value);
    let Some(value) = value else {
        if form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "zd_record") {
            return Err(AdapterError::Refused("a recording link needs the account's stored API secret"));
        }
        return Err(AdapterError::Malformed("a GET must carry `zd_echo`".into()));
    };
    if value.is_empty() || value.len() > MAX_ECHO_LEN || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(AdapterError::Malformed("field `zd_echo`: must be up to 128 printable characters".into()));
    }
    Ok(Inbound::Echo(value.into_owned()))
}

/// The `Signature` header against base64(hex(HMAC-SHA1(secret, signed fields))), compared in constant time.
/// A base64 of the raw 20-byte digest (the TypeScript SDK's) does not verify.
fn verify(form: &Form, event: Event, request: &Request<'_>, secret: &SecretString) -> Result<(), AdapterError> {
    let header = request
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or(AdapterError::BadSignature("no Signature header"))?;
    let claimed =
        BASE64.decode(header.trim()).map_err(|_| AdapterError::BadSignature("the Signature is not base64"))?;
    let claimed = std::str::from_utf8(&claimed)
        .ok()
        .filter(|hex| hex.len() == 40)
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(AdapterError::BadSignature("the Signature is not a hex HMAC-SHA1"))?;
    let mut signed = String::new();
    for field in event.signed_fields().into_iter().filter(|field| !field.is_empty()) {
        signed.push_str(form.signed(field).map_err(|_| AdapterError::BadSignature("a signed field is missing"))?);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    mac.verify_slice(&claimed).map_err(|_| AdapterError::BadSignature("the Signature does not match"))
}

/// A verified notification as our call event.
fn read(
    form: &Form,
    event: Event,
    request: &Request<'_>,
    keys: &Keys<'_>,
    secret: &SecretString,
) -> Result<Delivery, AdapterError> {
    let pbx_call_id = form.required("pbx_call_id")?;
    let mut webhook_id = format!("zadarma:{}:{pbx_call_id}", event.name());
    if event == Event::Record {
        let record = form.required("call_id_with_rec")?;
        webhook_id.push(':');
        webhook_id.push_str(record);
        let url = recording_url(&request.public_url, record, secret);
        let event = super::recording_ready(pbx_call_id, keys.login, request.now, url);
        return Ok(Delivery { webhook_id, event, binding: None });
    }
    let start_time = call_start(form.required("call_start")?)?;
    let outbound = matches!(event, Event::OutStart | Event::OutEnd);
    let extension = form.optional("internal").map(str::to_owned);
    let (from, to) = match event {
        Event::Start | Event::Internal | Event::End => (form.required("caller_id")?, form.required("called_did")?),
        Event::Answer => (form.required("caller_id")?, form.required("destination")?),
        Event::OutStart | Event::OutEnd => (form.required("internal")?, form.required("destination")?),
        Event::Record => unreachable!("read above"),
    };
    let (status, event_type, duration) = match event {
        // START keeps no type, INTERNAL has one: two ringing events of a call, both stored (the INTERNAL names
        // the extension, so the popup finds its user).
        Event::Start | Event::OutStart => (CallStatus::Ringing, None, None),
        Event::Internal => (CallStatus::Ringing, Some(CallEventType::Ringing), None),
        Event::Answer => (CallStatus::Answered, Some(CallEventType::Answered), None),
        Event::End | Event::OutEnd => {
            let status = disposition(form.optional("disposition").unwrap_or_default());
            // Zadarma's `duration` of an unanswered call is its ringing: talk time only when answered.
            let seconds = match status {
                CallStatus::Ended => form.optional("duration").and_then(|value| value.trim().parse().ok()).unwrap_or(0),
                _ => 0,
            };
            (status, None, Some(seconds))
        }
        Event::Record => unreachable!("read above"),
    };
    if event == Event::Internal {
        webhook_id.push(':');
        webhook_id.push_str(extension.as_deref().unwrap_or_default());
    }
    let event = FromWebhook {
        call_id: pbx_call_id.to_owned(),
        voip_account_id: keys.login.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        status,
        start_time,
        extension,
        event_type,
        direction: Some(if outbound { CallDirection::Outbound } else { CallDirection::Inbound }),
        duration,
        recording_url: None,
    };
    Ok(Delivery { webhook_id, event, binding: None })
}

/// `disposition` → our status: answered ends a conversation; no answer and the caller giving up are a missed
/// call; busy is busy; anything else (no money, unallocated number, limits, failed) failed.
fn disposition(value: &str) -> CallStatus {
    match value.trim().to_ascii_lowercase().as_str() {
        "answered" => CallStatus::Ended,
        "no answer" | "noanswer" | "cancel" | "" => CallStatus::Missed,
        "busy" => CallStatus::Busy,
        _ => CallStatus::Failed,
    }
}

/// `call_start`: `YYYY-MM-DD HH:MM:SS` (read as UTC; UNCONFIRMED) or unix seconds.
fn call_start(value: &str) -> Result<i64, AdapterError> {
    let value = value.trim();
    let malformed = || AdapterError::Malformed("field `call_start`: not a time".into());
    if let Ok(seconds) = value.parse::<i64>() {
        return (seconds > 0).then_some(seconds).ok_or_else(malformed);
    }
    let layout = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = time::PrimitiveDateTime::parse(value, layout).map_err(|_| malformed())?.assume_utc();
    (at.year() >= 1970).then(|| at.unix_timestamp()).ok_or_else(malformed)
}

/// The link a RECORD event carries: the webhook URL with the record's id and a tag only the API secret makes.
fn recording_url(public_url: &str, record: &str, secret: &SecretString) -> String {
    let base = public_url.split('?').next().unwrap_or(public_url);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("zd_record", record)
        .append_pair("zd_key", &record_tag(record, secret))
        .finish();
    format!("{base}?{query}")
}

fn record_tag(record: &str, secret: &SecretString) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(b"zd_record:");
    mac.update(record.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The recording a link of ours names (`zd_record`), once its tag verified with the API secret; for the route
/// that will redirect to [`recording_link`].
pub fn recording_request(query: &str, secret: &SecretString) -> Option<String> {
    let (mut record, mut tag) = (None, None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "zd_record" => record = Some(value.into_owned()),
            "zd_key" => tag = Some(value.into_owned()),
            _ => {}
        }
    }
    let (record, tag) = (record?, hex::decode(tag?).ok()?);
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(b"zd_record:");
    mac.update(record.as_bytes());
    mac.verify_slice(&tag).ok()?;
    Some(record)
}

/// What a call's events sign about it: the client's and our line's numbers (as each event names them) and
/// the start. Events of one call must agree on them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    party: String,
    start: String,
    /// `called_did` (START, INTERNAL, END) or the dialled number (OUT_*); ANSWER signs the extension instead.
    line: Option<String>,
}

impl Bound {
    fn of(form: &Form, event: Event) -> Option<Bound> {
        let [party, line, start] = event.signed_fields();
        let line = match event {
            Event::Record => return None,
            Event::Answer => None,
            _ => form.get(line).map(str::to_owned),
        };
        Some(Bound { party: form.get(party)?.to_owned(), start: form.get(start)?.to_owned(), line })
    }
}

/// `GET {api}/v1/info/balance/`: whether Zadarma takes the key and secret. Zadarma names no account in
/// the answer, so the account is the API key.
pub async fn check_credentials(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
) -> Result<ProviderAccount, ProviderError> {
    #[derive(Deserialize)]
    struct Balance {
        currency: Option<String>,
    }
    let balance: Balance = call(client, provider_url, login, secret, "/v1/info/balance/", &[]).await?;
    let currency = balance.currency.filter(|currency| currency.len() <= 8).unwrap_or_default();
    Ok(ProviderAccount { account_id: login.to_owned(), name: format!("Zadarma {currency}").trim().to_owned() })
}

/// `GET {api}/v1/request/callback/?from=<extension>&to=<digits>`: Zadarma rings the extension, then the
/// number. Its answer names no call id, so the id returned is ours (`zadarma-callback:<from>:<to>:<time>`);
/// the call's own notifications (NOTIFY_OUT_START, …) come under Zadarma's `pbx_call_id`, and that call is
/// the one Kommo gets.
pub async fn originate(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
    extension: &str,
    to: &str,
) -> Result<String, ProviderError> {
    #[derive(Deserialize)]
    struct Callback {
        time: Option<serde_json::Value>,
    }
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || extension.trim().is_empty() {
        return Err(ProviderError::Rejected { status: 400 });
    }
    let params = [("from", extension), ("to", digits.as_str())];
    let callback: Callback = call(client, provider_url, login, secret, "/v1/request/callback/", &params).await?;
    let time = match callback.time {
        Some(serde_json::Value::Number(number)) => number.to_string(),
        Some(serde_json::Value::String(text)) if text.bytes().all(|byte| byte.is_ascii_digit()) => text,
        _ => crate::clock::unix_secs().to_string(),
    };
    let id = format!("zadarma-callback:{extension}:{digits}:{time}");
    if id.len() > MAX_ID_LEN || id.chars().any(shared::call::is_non_printing) {
        return Err(ProviderError::BadResponse("the call id is too long"));
    }
    Ok(id)
}

/// A fresh link to a recording (`GET {api}/v1/pbx/record/request/?call_id=…&lifetime=…`), for the route that
/// redirects a Kommo call's `link` to it.
pub async fn recording_link(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
    call_id_with_rec: &str,
) -> Result<String, ProviderError> {
    #[derive(Deserialize)]
    struct Record {
        link: Option<String>,
        links: Option<Vec<String>>,
    }
    let lifetime = RECORDING_LINK_LIFETIME.to_string();
    let params = [("call_id", call_id_with_rec), ("lifetime", lifetime.as_str())];
    let record: Record = call(client, provider_url, login, secret, "/v1/pbx/record/request/", &params).await?;
    let link = record.link.or_else(|| record.links.and_then(|links| links.into_iter().next())).unwrap_or_default();
    if !link.starts_with("https://") && !link.starts_with("http://")
        || link.len() > shared::call::MAX_RECORDING_URL_LEN
        || link.chars().any(shared::call::is_non_printing)
    {
        return Err(ProviderError::BadResponse("the recording link is not an http(s) URL"));
    }
    Ok(link)
}

/// The `Authorization` value of an API request: `<key>:<base64(hex(HMAC-SHA1(secret, path + query +
/// md5(query))))>`, `query` the `ksort`ed parameters with `format=json` (`lib/Client.php`).
pub fn authorization(login: &str, secret: &SecretString, path: &str, query: &str) -> String {
    let md5 = hex::encode(Md5::digest(query.as_bytes()));
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(path.as_bytes());
    mac.update(query.as_bytes());
    mac.update(md5.as_bytes());
    format!("{login}:{}", BASE64.encode(hex::encode(mac.finalize().into_bytes())))
}

/// The sorted query the API signs and receives: the parameters and `format=json`, by name, RFC 1738.
pub fn sorted_query(params: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, &str)> = params.to_vec();
    params.push(("format", "json"));
    params.sort_by(|a, b| a.0.cmp(b.0));
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

/// One signed API request; an answer with `status: error` or HTTP ≥ 400 is a failure.
async fn call<T: serde::de::DeserializeOwned>(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
    path: &str,
    params: &[(&str, &str)],
) -> Result<T, ProviderError> {
    if login.is_empty() || !login.bytes().all(|byte| byte.is_ascii_graphic()) || secret.expose_secret().is_empty() {
        return Err(ProviderError::InvalidCredentials("the API key and secret are required, printable, no spaces"));
    }
    let mut url = client.endpoint(provider_url, path)?;
    let query = sorted_query(params);
    url.set_query(Some(&query));
    let request = client
        .http()
        .get(url)
        .header(reqwest::header::AUTHORIZATION, authorization(login, secret, path, &query))
        .header(reqwest::header::ACCEPT, "application/json");
    let body = crate::provider::answer(request).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| ProviderError::BadResponse("the body is not JSON"))?;
    if value.get("status").and_then(|status| status.as_str()) != Some("success") {
        // Zadarma answers some refusals with 200 and `status: error` ("Not authorized" among them).
        let message = value.get("message").and_then(|message| message.as_str()).unwrap_or_default();
        if message.to_ascii_lowercase().contains("authoriz") {
            return Err(ProviderError::CredentialsRefused);
        }
        return Err(ProviderError::Rejected { status: StatusCode::OK.as_u16() });
    }
    serde_json::from_value(value).map_err(|_| ProviderError::BadResponse("the body is not the expected JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_signature_follows_the_php_client() {
        // Worked by hand, as `lib/Client.php` does: path . query . md5(query), HMAC-SHA1 hex, base64.
        let secret = SecretString::from("secret".to_owned());
        let query = sorted_query(&[("to", "5511987654321"), ("from", "101")]);
        assert_eq!(query, "format=json&from=101&to=5511987654321");
        let md5 = hex::encode(Md5::digest(query.as_bytes()));
        let mut mac = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(format!("/v1/request/callback/{query}{md5}").as_bytes());
        let expected = format!("key:{}", BASE64.encode(hex::encode(mac.finalize().into_bytes())));
        assert_eq!(authorization("key", &secret, "/v1/request/callback/", &query), expected);
    }

    #[test]
    fn dispositions_and_start_times_read() {
        assert_eq!(disposition("answered"), CallStatus::Ended);
        assert_eq!(disposition("no answer"), CallStatus::Missed);
        assert_eq!(disposition("cancel"), CallStatus::Missed);
        assert_eq!(disposition("busy"), CallStatus::Busy);
        assert_eq!(disposition("no money"), CallStatus::Failed);
        assert_eq!(call_start("2026-12-04 10:00:00").unwrap(), 1_796_378_400);
        assert_eq!(call_start("1700000000").unwrap(), 1_700_000_000);
        assert!(call_start("yesterday").is_err());
        assert!(call_start("2026-02-30 10:00:00").is_err(), "no such day");
        assert!(call_start("1969-12-31 23:59:59").is_err(), "before the epoch");
        assert!(call_start("2026-12-04 24:00:00").is_err());
    }

    #[test]
    fn a_recording_link_of_ours_reads_back_only_with_its_tag() {
        let secret = SecretString::from("secret".to_owned());
        let url = recording_url("https://voip.example.com/hooks/voip/abc?x=1", "1700000000.123", &secret);
        let query = url.split_once('?').unwrap().1;
        assert_eq!(recording_request(query, &secret).as_deref(), Some("1700000000.123"));
        let other = SecretString::from("other".to_owned());
        assert_eq!(recording_request(query, &other), None);
        assert_eq!(recording_request("zd_record=1700000000.123&zd_key=00", &secret), None);
    }
}
