//! Yeastar P-Series: its webhook event push read into our call events, and its OpenAPI's token, click-to-call
//! and recording link.
//!
//! Sources (Yeastar's P-Series developer guide, help.yeastar.com `p-series-*-edition/developer-guide/`):
//! - "Monitor Events via Webhook" (firmware 83.20.0.21 / 84.20.0.21 or later): the PBX posts each subscribed
//!   event to up to 5 URLs; `X-Signature` = base64(HMAC-SHA256(secret, the raw body)); a 2xx acknowledges.
//!   The page calls the secret "a system-generated 32-character key" that can be regenerated; whether an
//!   admin can type their own is not said (UNCONFIRMED, see [`verify`] for what we do).
//! - "(30011) Call Status Changed": `{"type": 30011, "sn": …, "msg": "<Call_Info as a JSON string>"}`,
//!   `Call_Info` = `call_id`, `members` (each one of `extension` {`number`, `channel_id`, `member_status`,
//!   `call_path`}, `inbound` / `outbound` {`from`, `to`, `trunk_name`, `channel_id`, `member_status`}),
//!   `member_status` ALERT (a caller hears ringback), RING (a callee rings), ANSWERED (a caller's call was
//!   answered), ANSWER (a callee answered), HOLD, BYE; the outbound leg also EARLYMEDIA.
//! - "(30012) New CDR", sent when a call ended: `call_id`, `time_start` (PBX local time, no zone),
//!   `call_from`, `call_to`, `call_duration`, `talk_duration` (seconds; integers, strings in older API
//!   versions), `status` ANSWERED (once misspelt ANSWERD) / NO ANSWER / BUSY / FAILED / VOICEMAIL, `type`
//!   Inbound / Outbound / Internal (capitalised in the example, lower case in the table), `recording` (the
//!   file name), `did_number`, `src_trunk_name`, `dst_trunk_name`.
//! - "Get Access Token": `POST {pbx}/openapi/v1.0/get_token` `{username: client id, password: client
//!   secret}` with a `User-Agent` header, answered `{errcode, errmsg, access_token, access_token_expire_time
//!   (1800), refresh_token, …}`; errors come as HTTP 200 with a non-zero `errcode`.
//! - "Make a Call": `POST {pbx}/openapi/v1.0/call/dial?access_token=…` `{caller, callee}` →
//!   `{errcode, errmsg, call_id}`.
//! - "Download a Recording File": `GET {pbx}/openapi/v1.0/recording/download?file=…&access_token=…` →
//!   `{errcode, errmsg, file, download_resource_url}`; the file is at
//!   `{pbx}{download_resource_url}?access_token=…`, valid 30 minutes.
//!
//! How a call is read: the status events (30011) give the popup its ringing and answered calls; the CDR
//! (30012) ends the call with Yeastar's own verdict and talk time. A status BYE stores nothing: the end
//! that goes to Kommo is the CDR's, which carries the duration a BYE lacks (an end stored at the BYE would
//! send the call to Kommo before its duration is known). So a CDR that arrives before the last BYE ends the
//! call just the same, and an account must subscribe to both events. Calls with no trunk leg (30011) or of
//! type Internal (30012) are between extensions, not with a client: verified and answered, nothing stored.
//!
//! Recordings: the CDR names a file, and Yeastar hands out a link to it only through its API, behind an
//! access token, valid 30 minutes; a link of Yeastar's stored in Kommo would be dead by the time someone
//! plays it, and an adapter is synchronous, with no API call of its own. So the CDR carries a stable link of
//! ours, the webhook URL with `ys_recording=<file>&ys_key=<tag>` (the tag an HMAC-SHA256 with the API
//! client secret, so nobody else can mint one; [`recording_request`] reads and checks it), which goes to
//! Kommo as the call's `link`, as Zadarma's do. Following it, `http::hooks` checks the tag
//! and redirects to a fresh link from [`recording_link`] (`no-store`).
//!
//! Tokens are not cached: each credentials check, call and recording link asks for its own (they are
//! rare; a cache would be keyed by PBX and client id and honour `access_token_expire_time`).

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};
use hmac::{Hmac, Mac};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};

use super::{AdapterError, Delivery, Inbound, Keys, Request};
use crate::provider::{ProviderAccount, ProviderClient, ProviderError};

/// The header that carries the signature of the raw body.
pub const SIGNATURE_HEADER: &str = "x-signature";
/// Event 30011, "Call Status Changed".
pub const CALL_STATUS: u32 = 30011;
/// Event 30012, "New CDR".
pub const NEW_CDR: u32 = 30012;
/// Where the OpenAPI lives on the PBX.
const API_PATH: &str = "/openapi/v1.0";
/// The documentation asks every API request for a `User-Agent`, with this as its example.
const USER_AGENT: &str = "OpenAPI";
/// A base64 HMAC-SHA256 is 44 characters; anything much longer is refused unread.
const MAX_SIGNATURE_LEN: usize = 128;
/// Bound on the identifiers and tokens Yeastar returns.
const MAX_ID_LEN: usize = 128;
const MAX_TOKEN_LEN: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

pub fn inbound(request: &Request<'_>, keys: &Keys<'_>) -> Result<Inbound, AdapterError> {
    if request.method != Method::POST {
        let query = request.query.unwrap_or_default();
        if form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == RECORDING_PARAM) {
            return Err(AdapterError::Refused("a recording link needs the account's stored API secret"));
        }
        return Err(AdapterError::Malformed("Yeastar's webhook must be set to POST".into()));
    }
    verify(request, keys)?;
    let envelope: Envelope = serde_json::from_slice(request.body)
        .map_err(|error| AdapterError::Malformed(format!("not a Yeastar event: {error}")))?;
    // `msg` is JSON inside a JSON string, as every report example shows.
    let serde_json::Value::String(msg) = &envelope.msg else {
        return Err(AdapterError::Malformed("field `msg`: must be a JSON string".into()));
    };
    let pbx = envelope.sn.as_deref().map(str::trim).filter(|sn| !sn.is_empty()).unwrap_or(keys.login);
    let delivery = match envelope.kind {
        CALL_STATUS => call_status(parse_msg(msg)?, pbx, request.now)?,
        NEW_CDR => cdr(parse_msg(msg)?, pbx, request, keys.secret)?,
        _ => None,
    };
    Ok(match delivery {
        Some(delivery) => Inbound::Events(vec![delivery]),
        None => Inbound::Nothing,
    })
}

/// `X-Signature` against each signing secret we issued (current, then previous): the HMAC key is the
/// secret's text as the admin pasted it into Yeastar's "Secret" field. We tell admins to paste the whole
/// `whsec_…` text; the base64 after `whsec_` verifies too, for a field that takes only 32-odd characters
/// (Yeastar's own secrets are 32 characters: UNCONFIRMED whether a longer one is accepted).
fn verify(request: &Request<'_>, keys: &Keys<'_>) -> Result<(), AdapterError> {
    let header =
        request.headers.get(SIGNATURE_HEADER).ok_or(AdapterError::BadSignature("no X-Signature header"))?.as_bytes();
    if header.len() > MAX_SIGNATURE_LEN {
        return Err(AdapterError::BadSignature("the X-Signature header is too long"));
    }
    let tag = BASE64
        .decode(header.trim_ascii())
        .map_err(|_| AdapterError::BadSignature("the X-Signature header is not base64"))?;
    for secret in keys.signing {
        let text = secret.to_text();
        let whole = text.expose_secret();
        let bare = whole.strip_prefix("whsec_").unwrap_or(whole);
        for key in [whole, bare] {
            let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
            mac.update(request.body);
            // Constant-time comparison.
            if mac.verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
    }
    Err(AdapterError::BadSignature("the X-Signature does not match"))
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: u32,
    #[serde(default)]
    sn: Option<String>,
    msg: serde_json::Value,
}

fn parse_msg<'a, T: Deserialize<'a>>(msg: &'a str) -> Result<T, AdapterError> {
    serde_json::from_str(msg).map_err(|error| AdapterError::Malformed(format!("field `msg`: {error}")))
}

#[derive(Deserialize)]
struct CallInfo {
    call_id: Text,
    #[serde(default)]
    members: Vec<Member>,
}

/// One member of a call: an extension, or the trunk leg of an inbound or outbound call.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Member {
    extension: Option<Leg>,
    inbound: Option<Leg>,
    outbound: Option<Leg>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Leg {
    /// An extension member's number.
    number: Option<Text>,
    from: Option<Text>,
    to: Option<Text>,
    member_status: String,
}

/// A status event: ringing or answered for a call with a trunk leg; `None` for the rest (internal calls, a
/// BYE, which the CDR follows with the call's end).
fn call_status(info: CallInfo, pbx: &str, now: i64) -> Result<Option<Delivery>, AdapterError> {
    let call_id = required("call_id", info.call_id)?;
    let extensions: Vec<&Leg> = info.members.iter().filter_map(|member| member.extension.as_ref()).collect();
    let (direction, trunk) = match info.members.iter().find_map(|member| {
        let inbound = member.inbound.as_ref().map(|leg| (CallDirection::Inbound, leg));
        inbound.or(member.outbound.as_ref().map(|leg| (CallDirection::Outbound, leg)))
    }) {
        Some(found) => found,
        None => return Ok(None),
    };
    let answered = |leg: &Leg| matches!(leg.member_status.as_str(), "ANSWER" | "ANSWERED" | "HOLD");
    let status = match (direction, trunk.member_status.as_str()) {
        (_, "BYE") => return Ok(None),
        // The client answered our call.
        (CallDirection::Outbound, "ANSWER" | "ANSWERED" | "HOLD") => CallStatus::Answered,
        (CallDirection::Outbound, _) => CallStatus::Ringing,
        // The client's call was answered, by whichever extension.
        (CallDirection::Inbound, "ANSWERED" | "HOLD") => CallStatus::Answered,
        (CallDirection::Inbound, _) if extensions.iter().any(|leg| answered(leg)) => CallStatus::Answered,
        (CallDirection::Inbound, _) => CallStatus::Ringing,
    };
    // The extension that answered, else the first one ringing (a ring group rings several).
    let extension = extensions
        .iter()
        .find(|leg| answered(leg))
        .or_else(|| extensions.iter().find(|leg| leg.member_status != "BYE"))
        .or(extensions.first())
        .and_then(|leg| leg.number.clone().map(Text::into_string))
        .map(|number| bare_number(&number).to_owned())
        .filter(|number| !number.is_empty());
    let from = trunk.from.clone().map(Text::into_string).unwrap_or_default();
    let to = trunk.to.clone().map(Text::into_string).unwrap_or_default();
    let event_type = if status == CallStatus::Answered { CallEventType::Answered } else { CallEventType::Ringing };
    Ok(Some(Delivery {
        webhook_id: format!("yeastar:{CALL_STATUS}:{call_id}:{}", status.as_str()),
        event: FromWebhook {
            call_id,
            voip_account_id: pbx.to_owned(),
            from: bare_number(&from).to_owned(),
            to: bare_number(&to).to_owned(),
            status,
            start_time: now,
            extension,
            event_type: Some(event_type),
            direction: Some(direction),
            duration: None,
            recording_url: None,
        },
        binding: None,
    }))
}

#[derive(Deserialize)]
struct CallDetails {
    call_id: Text,
    #[serde(default)]
    call_from: Option<Text>,
    #[serde(default)]
    call_to: Option<Text>,
    #[serde(default)]
    call_duration: Option<Text>,
    #[serde(default)]
    talk_duration: Option<Text>,
    #[serde(default)]
    status: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    did_number: Option<Text>,
    #[serde(default)]
    recording: Option<String>,
}

/// A CDR: the call's end, with Yeastar's verdict and talk time; `None` for an internal call.
fn cdr(
    details: CallDetails,
    pbx: &str,
    request: &Request<'_>,
    client_secret: Option<&SecretString>,
) -> Result<Option<Delivery>, AdapterError> {
    let now = request.now;
    let call_id = required("call_id", details.call_id)?;
    let direction = match details.kind.trim().to_ascii_lowercase().as_str() {
        "inbound" => CallDirection::Inbound,
        "outbound" => CallDirection::Outbound,
        "internal" => return Ok(None),
        _ => return Err(AdapterError::Malformed("field `msg.type`: not Inbound, Outbound or Internal".into())),
    };
    let seconds = |field: &'static str, value: Option<Text>| -> Result<u32, AdapterError> {
        let Some(value) = value else { return Ok(0) };
        let text = value.into_string();
        let text = text.trim();
        if text.is_empty() {
            return Ok(0);
        }
        text.parse().map_err(|_| AdapterError::Malformed(format!("field `msg.{field}`: not a number of seconds")))
    };
    let talk = seconds("talk_duration", details.talk_duration)?;
    let total = seconds("call_duration", details.call_duration)?;
    let (status, event_type) = match details.status.trim().to_ascii_uppercase().as_str() {
        "ANSWERED" | "ANSWERD" => (CallStatus::Ended, Some(CallEventType::Ended)),
        "NO ANSWER" | "NO ANSWERED" | "VOICEMAIL" => (CallStatus::Missed, Some(CallEventType::Missed)),
        "BUSY" => (CallStatus::Busy, None),
        "FAILED" => (CallStatus::Failed, None),
        _ if talk > 0 => (CallStatus::Ended, Some(CallEventType::Ended)),
        _ => (CallStatus::Missed, Some(CallEventType::Missed)),
    };
    let text = |value: Option<Text>| value.map(Text::into_string).unwrap_or_default();
    let (call_from, call_to) = (text(details.call_from), text(details.call_to));
    let (call_from, call_to) = (bare_number(&call_from).to_owned(), bare_number(&call_to).to_owned());
    let did = text(details.did_number).trim().to_owned();
    // A file name, as the PBX names them (`20220427190445-1651057476.362-2005-2002-Internal.wav`); none
    // for a call nobody recorded. Without the client secret on file no link can be tagged.
    let file = details.recording.as_deref().map(str::trim).filter(|file| !file.is_empty());
    let recording_url = match (file, client_secret) {
        (Some(file), Some(secret)) if file.len() <= MAX_FILE_LEN => {
            Some(recording_url(&request.public_url, file, secret))
        }
        _ => None,
    };
    let (from, to, extension) = match direction {
        // The line the client dialled is the DID when there is one; the callee is the extension that
        // took the call (a ring group's or queue's number when nobody did: UNCONFIRMED).
        CallDirection::Inbound => {
            let line = if did.is_empty() { call_to.clone() } else { did };
            (call_from, line, call_to)
        }
        CallDirection::Outbound => (call_from.clone(), call_to, call_from),
    };
    Ok(Some(Delivery {
        webhook_id: format!("yeastar:{NEW_CDR}:{call_id}"),
        event: FromWebhook {
            call_id,
            voip_account_id: pbx.to_owned(),
            from,
            to,
            status,
            // `time_start` is the PBX's local time with no zone; the CDR is sent as the call ends, so the
            // start is its arrival less the call's whole duration.
            start_time: now - i64::from(total),
            extension: Some(extension).filter(|extension| !extension.is_empty()),
            event_type,
            direction: Some(direction),
            duration: Some(talk),
            recording_url,
        },
        binding: None,
    }))
}

/// The query parameters of our recording links.
const RECORDING_PARAM: &str = "ys_recording";
const RECORDING_KEY_PARAM: &str = "ys_key";
/// Bound on a recording's file name (Yeastar's are about 60 characters).
const MAX_FILE_LEN: usize = 255;

/// The link a CDR carries: the webhook URL with the file's name and a tag only the client secret makes.
fn recording_url(public_url: &str, file: &str, secret: &SecretString) -> String {
    let base = public_url.split('?').next().unwrap_or(public_url);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(RECORDING_PARAM, file)
        .append_pair(RECORDING_KEY_PARAM, &BASE64_URL.encode(recording_tag(file, secret).finalize().into_bytes()))
        .finish();
    format!("{base}?{query}")
}

fn recording_tag(file: &str, secret: &SecretString) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(b"ys_recording:");
    mac.update(file.as_bytes());
    mac
}

/// The recording file a link of ours names, once its tag verified with the client secret; for the route that
/// redirects to [`recording_link`].
pub fn recording_request(query: &str, secret: &SecretString) -> Option<String> {
    let (mut file, mut tag) = (None, None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            RECORDING_PARAM => file = Some(value.into_owned()),
            RECORDING_KEY_PARAM => tag = Some(value.into_owned()),
            _ => {}
        }
    }
    let (file, tag) = (file?, BASE64_URL.decode(tag?).ok()?);
    recording_tag(&file, secret).verify_slice(&tag).ok()?;
    Some(file)
}

/// A number as Yeastar may show it, `Name<2002>`, reduced to the number; blanks trimmed.
fn bare_number(text: &str) -> &str {
    let text = text.trim();
    match (text.rfind('<'), text.ends_with('>')) {
        (Some(open), true) => text[open + 1..text.len() - 1].trim(),
        _ => text,
    }
}

fn required(field: &'static str, value: Text) -> Result<String, AdapterError> {
    let value = value.into_string().trim().to_owned();
    if value.is_empty() {
        return Err(AdapterError::Malformed(format!("field `msg.{field}`: must not be empty")));
    }
    Ok(value)
}

/// Yeastar's values are strings or integers depending on the API version; both are kept as text.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Text {
    String(String),
    Number(i64),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::String(text) => text,
            Text::Number(number) => number.to_string(),
        }
    }
}

/// Whether the client id and secret get an API token: the PBX's API client, named by its client id (the
/// token answer names nothing else).
pub async fn check_credentials(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
) -> Result<ProviderAccount, ProviderError> {
    access_token(client, provider_url, login, secret).await?;
    Ok(ProviderAccount { account_id: login.to_owned(), name: "Yeastar P-Series".to_owned() })
}

/// `call/dial`: rings `extension`, then connects it to `to`. Returns Yeastar's call id, the `call_id` of
/// the call's events.
pub async fn originate(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
    extension: &str,
    to: &str,
) -> Result<String, ProviderError> {
    #[derive(Deserialize)]
    struct Dialled {
        call_id: Option<Text>,
    }
    let token = access_token(client, provider_url, login, secret).await?;
    let mut url = endpoint(client, provider_url, "call/dial")?;
    url.query_pairs_mut().append_pair("access_token", token.expose_secret());
    let body = serde_json::json!({ "caller": extension, "callee": to });
    let request = client.http().post(url).json(&body);
    let dialled: Dialled = answer(request, ProviderError::Rejected { status: 200 }).await?;
    let call_id = dialled.call_id.map(Text::into_string).unwrap_or_default();
    if call_id.is_empty() || call_id.len() > MAX_ID_LEN {
        return Err(ProviderError::BadResponse("the call id is empty or too long"));
    }
    Ok(call_id)
}

/// A fresh link to a recording named by a CDR: `recording/download`, then the file's address with a token,
/// valid 30 minutes (so fetched when someone wants to listen, never stored).
pub async fn recording_link(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
    file: &str,
) -> Result<SecretString, ProviderError> {
    #[derive(Deserialize)]
    struct Download {
        download_resource_url: Option<String>,
    }
    let token = access_token(client, provider_url, login, secret).await?;
    let mut url = endpoint(client, provider_url, "recording/download")?;
    url.query_pairs_mut().append_pair("file", file).append_pair("access_token", token.expose_secret());
    let download: Download = answer(client.http().get(url), ProviderError::Rejected { status: 404 }).await?;
    let path = download.download_resource_url.unwrap_or_default();
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(ProviderError::BadResponse("the download URL is not a path on the PBX"));
    }
    let (path, query) = path.split_once('?').unwrap_or((&path, ""));
    let mut link = client.endpoint(provider_url, path)?;
    link.set_query((!query.is_empty()).then_some(query));
    link.query_pairs_mut().append_pair("access_token", token.expose_secret());
    Ok(SecretString::from(String::from(link)))
}

/// `get_token` with the client id and secret.
async fn access_token(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
) -> Result<SecretString, ProviderError> {
    #[derive(Deserialize)]
    struct Token {
        access_token: Option<String>,
    }
    if login.trim().is_empty() || secret.expose_secret().is_empty() {
        return Err(ProviderError::InvalidCredentials("the client id and secret are required"));
    }
    let url = endpoint(client, provider_url, "get_token")?;
    let body = serde_json::json!({ "username": login, "password": secret.expose_secret() });
    let token: Token = answer(client.http().post(url).json(&body), ProviderError::CredentialsRefused).await?;
    let token = token.access_token.unwrap_or_default();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ProviderError::BadResponse("the access token is empty, too long or not printable"));
    }
    Ok(SecretString::from(token))
}

/// `{pbx}/openapi/v1.0/{name}`, the PBX address checked against the egress policy first.
fn endpoint(client: &ProviderClient, provider_url: &str, name: &str) -> Result<Url, ProviderError> {
    client.endpoint(provider_url, &format!("{API_PATH}/{name}"))
}

/// Sends one API request and reads its answer: an HTTP failure classified, then Yeastar's `errcode` (0 is
/// success; any other is `refused`, since Yeastar answers its refusals with HTTP 200), then the body.
async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    refused: ProviderError,
) -> Result<T, ProviderError> {
    #[derive(Deserialize)]
    struct Outcome {
        errcode: Option<i64>,
    }
    let request =
        request.header(reqwest::header::USER_AGENT, USER_AGENT).header(reqwest::header::ACCEPT, "application/json");
    let body = crate::provider::answer(request).await?;
    let outcome: Outcome =
        serde_json::from_slice(&body).map_err(|_| ProviderError::BadResponse("the body is not Yeastar's JSON"))?;
    match outcome.errcode {
        Some(0) => {}
        Some(_) => return Err(refused),
        None => return Err(ProviderError::BadResponse("the answer has no errcode")),
    }
    serde_json::from_slice(&body).map_err(|_| ProviderError::BadResponse("the body is not Yeastar's JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_signing::WebhookSecret;

    fn signed(secret: &str, body: &str) -> axum::http::HeaderMap {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, BASE64.encode(mac.finalize().into_bytes()).parse().unwrap());
        headers
    }

    fn read(body: &str, signing: &[WebhookSecret], secret: &str) -> Result<Inbound, AdapterError> {
        let headers = signed(secret, body);
        let request = Request {
            method: &Method::POST,
            headers: &headers,
            query: None,
            body: body.as_bytes(),
            public_url: "https://voip.example.com/hooks/voip/h".into(),
            now: 1_700_000_100,
        };
        inbound(&request, &Keys { login: "client-id", secret: Some(&client_secret()), signing })
    }

    fn client_secret() -> SecretString {
        SecretString::from("ZLcXl63S9EtMnYoHUnjbVo6sA8CbXXXX")
    }

    #[test]
    fn a_recording_link_of_ours_reads_back_only_with_its_tag() {
        let file = "20220427190445-1651057476.362-2005-2002-Inbound.wav";
        let url = recording_url("https://voip.example.com/hooks/voip/abc?x=1", file, &client_secret());
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://voip.example.com/hooks/voip/abc");
        assert_eq!(recording_request(query, &client_secret()).as_deref(), Some(file));
        assert_eq!(recording_request(query, &SecretString::from("another")), None);
        assert_eq!(recording_request(&query.replace("2005", "2006"), &client_secret()), None);
    }

    fn envelope(kind: u32, msg: serde_json::Value) -> String {
        serde_json::json!({"type": kind, "sn": "3631A2124XXX", "msg": msg.to_string()}).to_string()
    }

    fn only(inbound: Inbound) -> Delivery {
        match inbound {
            Inbound::Events(mut deliveries) if deliveries.len() == 1 => deliveries.remove(0),
            other => panic!("not one event: {other:?}"),
        }
    }

    #[test]
    fn the_previous_secret_verifies_during_its_grace_and_a_stranger_does_not() {
        let (current, previous) = (WebhookSecret::generate(), WebhookSecret::generate());
        let signing = [current.clone(), previous.clone()];
        let body = envelope(30012, serde_json::json!({"call_id": "1.1", "type": "Internal", "status": "ANSWERED"}));
        let old = previous.to_text();
        assert_eq!(read(&body, &signing, old.expose_secret()), Ok(Inbound::Nothing));
        let stranger = WebhookSecret::generate().to_text();
        assert!(matches!(read(&body, &signing, stranger.expose_secret()), Err(AdapterError::BadSignature(_))));
    }

    #[test]
    fn the_documented_cdr_ends_the_call_with_its_talk_time_and_a_bye_stores_nothing() {
        let secret = WebhookSecret::generate();
        let text = secret.to_text();
        let signing = [secret];
        // The "(30012) New CDR" example's fields, as an inbound call (numbers as integers, as some versions).
        let cdr = envelope(
            30012,
            serde_json::json!({
                "call_id": "1651057476.362", "time_start": "2022-04-27 19:04:36", "call_from": "5511988887777",
                "call_to": 2002, "call_duration": 24, "talk_duration": "21", "src_trunk_name": "trunk",
                "dst_trunk_name": " ", "pin_code": " ", "status": "ANSWERED", "type": "Inbound",
                "recording": "20220427190445-1651057476.362-5511988887777-2002-Inbound.wav", "did_number": "551133334444",
                "agent_ring_time": 3
            }),
        );
        let delivery = only(read(&cdr, &signing, text.expose_secret()).unwrap());
        assert_eq!(delivery.webhook_id, "yeastar:30012:1651057476.362");
        let event = delivery.event;
        assert_eq!((event.status, event.event_type), (CallStatus::Ended, Some(CallEventType::Ended)));
        assert_eq!(event.direction, Some(CallDirection::Inbound));
        assert_eq!((event.from.as_str(), event.to.as_str()), ("5511988887777", "551133334444"));
        assert_eq!(event.extension.as_deref(), Some("2002"));
        assert_eq!(event.duration, Some(21));
        assert_eq!(event.start_time, 1_700_000_100 - 24);
        assert_eq!(event.voip_account_id, "3631A2124XXX");
        let link = event.recording_url.expect("the CDR's recording as a link of ours");
        let query = link.strip_prefix("https://voip.example.com/hooks/voip/h?").unwrap();
        assert_eq!(
            recording_request(query, &client_secret()).as_deref(),
            Some("20220427190445-1651057476.362-5511988887777-2002-Inbound.wav")
        );
        let bye = event_of_members(serde_json::json!([
            {"inbound": {"from": "5511988887777", "to": "551133334444", "member_status": "BYE"}},
            {"extension": {"number": "2002", "member_status": "BYE"}}
        ]));
        assert_eq!(read(&bye, &signing, text.expose_secret()), Ok(Inbound::Nothing));
        for (status, expected) in [
            ("NO ANSWER", CallStatus::Missed),
            ("VOICEMAIL", CallStatus::Missed),
            ("BUSY", CallStatus::Busy),
            ("FAILED", CallStatus::Failed),
        ] {
            let cdr = envelope(
                30012,
                serde_json::json!({"call_id": "2.2", "call_from": "2005", "call_to": "5503301",
                "call_duration": 9, "talk_duration": 0, "status": status, "type": "outbound"}),
            );
            let event = only(read(&cdr, &signing, text.expose_secret()).unwrap()).event;
            assert_eq!(event.status, expected, "{status}");
            assert_eq!(event.direction, Some(CallDirection::Outbound));
            assert_eq!(
                (event.from.as_str(), event.to.as_str(), event.extension.as_deref()),
                ("2005", "5503301", Some("2005"))
            );
        }
    }

    fn event_of_members(members: serde_json::Value) -> String {
        envelope(30011, serde_json::json!({"call_id": "1651057476.362", "members": members}))
    }

    #[test]
    fn status_events_ring_and_answer_by_the_trunk_leg_and_internal_calls_store_nothing() {
        let secret = WebhookSecret::generate();
        let text = secret.to_text();
        let signing = [secret];
        let read = |members| read(&event_of_members(members), &signing, text.expose_secret());
        // A ring group: two extensions ring, then 2003 answers.
        let ringing = only(
            read(serde_json::json!([
                {"inbound": {"from": "5511988887777", "to": "551133334444", "member_status": "ALERT"}},
                {"extension": {"number": "2002", "member_status": "RING"}},
                {"extension": {"number": "2003", "member_status": "RING"}}
            ]))
            .unwrap(),
        );
        assert_eq!(ringing.webhook_id, "yeastar:30011:1651057476.362:ringing");
        assert_eq!((ringing.event.status, ringing.event.extension.as_deref()), (CallStatus::Ringing, Some("2002")));
        let answered = only(
            read(serde_json::json!([
                {"inbound": {"from": "5511988887777", "to": "551133334444", "member_status": "ANSWERED"}},
                {"extension": {"number": "2002", "member_status": "BYE"}},
                {"extension": {"number": "2003", "member_status": "ANSWER"}}
            ]))
            .unwrap(),
        );
        assert_eq!((answered.event.status, answered.event.extension.as_deref()), (CallStatus::Answered, Some("2003")));
        // Click-to-call: the extension answered its own ring; the client's leg still rings.
        let dialling = only(
            read(serde_json::json!([
                {"extension": {"number": "2005", "member_status": "ANSWER"}},
                {"outbound": {"from": "2005", "to": "5503301", "member_status": "RING"}}
            ]))
            .unwrap(),
        );
        assert_eq!(
            (dialling.event.status, dialling.event.direction),
            (CallStatus::Ringing, Some(CallDirection::Outbound))
        );
        let internal = read(serde_json::json!([
            {"extension": {"number": "2005", "member_status": "ALERT"}},
            {"extension": {"number": "2002", "member_status": "RING"}}
        ]));
        assert_eq!(internal, Ok(Inbound::Nothing));
    }

    #[test]
    fn a_msg_that_is_not_a_json_string_is_malformed() {
        let secret = WebhookSecret::generate();
        let text = secret.to_text();
        let body = serde_json::json!({"type": 30011, "sn": "x", "msg": {"call_id": "1"}}).to_string();
        assert!(matches!(
            read(&body, std::slice::from_ref(&secret), text.expose_secret()),
            Err(AdapterError::Malformed(_))
        ));
        let body = serde_json::json!({"type": 30011, "sn": "x", "msg": "{not json"}).to_string();
        assert!(matches!(read(&body, &[secret], text.expose_secret()), Err(AdapterError::Malformed(_))));
    }

    #[test]
    fn numbers_shown_with_names_are_reduced_to_the_number() {
        assert_eq!(bare_number("Evelyn<5566>"), "5566");
        assert_eq!(bare_number(" 2002 "), "2002");
        assert_eq!(bare_number("+5511988887777"), "+5511988887777");
        assert_eq!(bare_number(" "), "");
    }
}
