//! Twilio Programmable Voice: its call status and recording status callbacks read into our call events, its
//! REST API's account check and click-to-call.
//!
//! Sources (Twilio's docs): "Webhooks security" (the `X-Twilio-Signature` recipe), "Call resource" / "Create a
//! Call" (status callback parameters, `StatusCallbackEvent`, `CallStatus` values), "TwiML `<Dial>`", "`<Client>`"
//! and "`<Sip>`" (the per-noun `statusCallback`), "Recording status callbacks".
//!
//! How Twilio's legs become our calls: the events of a call are those of the leg **the manager talks on**, the
//! one with a Twilio Client identity (`client:101`) or a SIP user (`sip:101@example.sip.twilio.com`) at one
//! end; that identity's user part is the extension (Twilio has no extensions of its own). The call id is the
//! leg's root: its `ParentCallSid` when it is a `<Dial>` child, else its own `CallSid`; so a recording made
//! by `<Dial record=…>` (reported on the parent's `CallSid`) lands on the same call. So:
//! - an inbound call forwarded by `<Dial><Client statusCallback=…>101</Client></Dial>`: the child leg
//!   (`Direction=outbound-dial`, `To=client:101`, `From` the caller) is read, inbound, call id the caller's
//!   leg's `CallSid` (its `ParentCallSid`);
//! - our click-to-call rings the manager first (`Direction=outbound-api`, `To=client:101`) and then dials
//!   the number in its TwiML: outbound, call id the `CallSid` the Calls API answered, the number from our
//!   own callback URL's `to` query parameter (the signature covers the URL, so it is Twilio's word too);
//! - a manager calling out from a softphone (`From=client:101`, `To` the number): outbound.
//!
//! Legs with no identity at either end (the caller's own leg, a forward to a mobile number) are verified and
//! answered 200 with nothing stored: they would make a second Kommo call of the same conversation.
//! Delivery ids name the leg and its `SequenceNumber` (`twilio:<CallSid>:<SequenceNumber>`), which Twilio's
//! retries of one callback repeat.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::Sha1;
use shared::{CallDirection, CallStatus, FromWebhook};

use super::{AdapterError, Delivery, Inbound, Keys, Request};
use reqwest::Url;

use crate::provider::{ProviderAccount, ProviderClient, ProviderError};

/// The header Twilio signs each webhook request with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The query parameter of our click-to-call's `StatusCallback` URL that carries the number dialled.
pub const DIALLED_PARAMETER: &str = "to";

/// Twilio's signature of a request: base64(HMAC-SHA1(auth token, the URL Twilio requested + every POST
/// parameter's name and value, sorted by name)) ("Webhooks security": "sort the list of POST variables by
/// the parameter name (using Unix-style case-sensitive sorting order)"). A name repeated keeps each value,
/// values sorted, as Twilio's helper libraries do.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(signed(auth_token, url, params).finalize().into_bytes())
}

/// The HMAC of [`signature`], before its encoding.
fn signed(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

pub fn inbound(request: &Request<'_>, keys: &Keys<'_>) -> Result<Inbound, AdapterError> {
    if request.method != axum::http::Method::POST {
        return Err(AdapterError::Malformed(
            "Twilio's callbacks are read as POST: set the callback method to POST".into(),
        ));
    }
    let token = keys.secret.ok_or(AdapterError::BadSignature("no Twilio auth token is stored"))?;
    let given = request
        .headers
        .get(SIGNATURE_HEADER)
        .ok_or(AdapterError::BadSignature("no X-Twilio-Signature"))?
        .to_str()
        .ok()
        .and_then(|text| BASE64.decode(text.trim()).ok())
        .ok_or(AdapterError::BadSignature("X-Twilio-Signature is not base64"))?;
    let params: Vec<(String, String)> =
        form_urlencoded::parse(request.body).map(|(name, value)| (name.into_owned(), value.into_owned())).collect();
    // Constant time.
    signed(token.expose_secret(), &request.public_url, &params)
        .verify_slice(&given)
        .map_err(|_| AdapterError::BadSignature("X-Twilio-Signature does not match"))?;

    let field = |name: &str| params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let required = |name: &'static str| {
        field(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| AdapterError::Malformed(format!("field `{name}` is missing")))
    };
    // A subaccount's calls are signed with the subaccount's own token; anything else is not this account's.
    if required("AccountSid")? != keys.login {
        return Err(AdapterError::Refused("the AccountSid is not this account's"));
    }
    let query_field = |name: &str| {
        request.query.and_then(|query| {
            form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
        })
    };

    if let Some(recording) = field("RecordingSid") {
        return recording_event(recording, &required, &field, keys, request);
    }

    let call_sid = required("CallSid")?;
    let status = required("CallStatus")?;
    let from = required("From")?;
    let to = required("To")?;
    let direction = required("Direction")?;
    let (status, ends) = match status {
        "queued" | "initiated" | "ringing" => (CallStatus::Ringing, false),
        "in-progress" => (CallStatus::Answered, false),
        "completed" => (CallStatus::Ended, true),
        "busy" => (CallStatus::Busy, true),
        "failed" => (CallStatus::Failed, true),
        // `canceled`: the caller hung up while it rang.
        "no-answer" | "canceled" => (CallStatus::Missed, true),
        other => return Err(AdapterError::Malformed(format!("field `CallStatus`: unknown value {other:?}"))),
    };
    let (direction, extension, from, to) = match (identity(to), identity(from)) {
        // Our click-to-call: the manager rung first; the number dialled is in our callback URL.
        (Some(extension), _) if direction == "outbound-api" => {
            let dialled = query_field(DIALLED_PARAMETER).unwrap_or_else(|| to.to_owned());
            (CallDirection::Outbound, extension, from.to_owned(), dialled)
        }
        // An incoming call forwarded to the manager's client or SIP phone.
        (Some(extension), _) => (CallDirection::Inbound, extension, from.to_owned(), to.to_owned()),
        // The manager calling out from a softphone.
        (None, Some(extension)) => (CallDirection::Outbound, extension, from.to_owned(), to.to_owned()),
        (None, None) => return Ok(Inbound::Nothing),
    };
    let duration = match field("CallDuration") {
        Some(text) if ends => Some(
            text.parse::<u32>()
                .map_err(|_| AdapterError::Malformed("field `CallDuration`: not a number of seconds".into()))?,
        ),
        _ => None,
    };
    let at = field("Timestamp").and_then(rfc2822_secs).unwrap_or(request.now);
    // The start of the call: a `completed` that arrives first still dates the call right.
    let start_time = (at - i64::from(duration.unwrap_or(0))).max(1);
    let retry_key = field("SequenceNumber").unwrap_or(required("CallStatus")?);
    let root = field("ParentCallSid").filter(|sid| !sid.is_empty()).unwrap_or(call_sid);
    let event = FromWebhook {
        call_id: root.to_owned(),
        voip_account_id: keys.login.to_owned(),
        from,
        to,
        status,
        start_time,
        extension: Some(extension),
        event_type: None,
        direction: Some(direction),
        duration,
        recording_url: None,
    };
    Ok(Inbound::Events(vec![Delivery { webhook_id: format!("twilio:{call_sid}:{retry_key}"), event, binding: None }]))
}

/// A recording status callback: only `completed` makes an event, the recording's link on its call.
/// Twilio's `RecordingUrl` has no extension; `.mp3` asks for MP3 ("Recording resource": "append .mp3").
fn recording_event<'a>(
    recording: &str,
    required: &impl Fn(&'static str) -> Result<&'a str, AdapterError>,
    field: &impl Fn(&str) -> Option<&'a str>,
    keys: &Keys<'_>,
    request: &Request<'_>,
) -> Result<Inbound, AdapterError> {
    if field("RecordingStatus") != Some("completed") {
        return Ok(Inbound::Nothing);
    }
    let call_sid = required("CallSid")?;
    let url = required("RecordingUrl")?;
    let url = if url.ends_with(".mp3") || url.ends_with(".wav") { url.to_owned() } else { format!("{url}.mp3") };
    let event = super::recording_ready(call_sid, keys.login, request.now, url);
    Ok(Inbound::Events(vec![Delivery {
        webhook_id: format!("twilio:{call_sid}:recording:{recording}"),
        event,
        binding: None,
    }]))
}

/// The user part of a Twilio Client identity (`client:101`) or a SIP URI (`sip:101@host;transport=tls`).
fn identity(address: &str) -> Option<String> {
    let user = if let Some(rest) = address.strip_prefix("client:") {
        rest
    } else {
        let rest = address.strip_prefix("sip:").or_else(|| address.strip_prefix("sips:"))?;
        rest.split(['@', ';', ':']).next().unwrap_or_default()
    };
    (!user.trim().is_empty()).then(|| user.to_owned())
}

/// Seconds of an RFC 2822 date as Twilio's `Timestamp` carries it (`Mon, 16 Aug 2010 03:45:01 +0000`).
fn rfc2822_secs(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::parse(text.trim(), &Rfc2822).ok().map(time::OffsetDateTime::unix_timestamp)
}

/// `{provider_url}/2010-04-01/Accounts/{sid}{rest}`, the provider URL checked against the egress policy.
fn account_url(client: &ProviderClient, provider_url: &str, sid: &str, rest: &str) -> Result<Url, ProviderError> {
    if sid.is_empty() || !sid.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Err(ProviderError::InvalidCredentials("the account SID must be letters and digits (AC…)"));
    }
    client.endpoint(provider_url, &format!("/2010-04-01/Accounts/{sid}{rest}"))
}

/// Sends one API request (Basic auth: account SID and auth token) and reads its JSON answer.
async fn send<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    sid: &str,
    token: &SecretString,
) -> Result<T, ProviderError> {
    let request =
        request.basic_auth(sid, Some(token.expose_secret())).header(reqwest::header::ACCEPT, "application/json");
    let body = crate::provider::answer(request).await?;
    serde_json::from_slice(&body).map_err(|_| ProviderError::BadResponse("the body is not the expected JSON"))
}

/// `GET /2010-04-01/Accounts/{sid}.json` ("Account resource"): the account's SID and friendly name.
pub async fn check_credentials(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
) -> Result<ProviderAccount, ProviderError> {
    #[derive(Deserialize)]
    struct Account {
        sid: String,
        #[serde(default)]
        friendly_name: String,
        #[serde(default)]
        status: String,
    }
    let url = account_url(client, provider_url, login, ".json")?;
    let account: Account = send(client.http().get(url), login, secret).await?;
    if account.sid != login {
        return Err(ProviderError::BadResponse("the answer is another account's"));
    }
    if account.status == "suspended" || account.status == "closed" {
        return Err(ProviderError::CredentialsRefused);
    }
    Ok(ProviderAccount { account_id: account.sid, name: account.friendly_name.chars().take(256).collect() })
}

/// `POST /2010-04-01/Accounts/{sid}/Calls.json` ("Create a Call"): rings the manager's client identity (or
/// SIP address, when `extension` is one) first; once answered, its TwiML dials `to` with the account's
/// first Twilio number as caller ID (`GET …/IncomingPhoneNumbers.json`). Status callbacks go to
/// `status_callback` (the account's webhook URL) with `to` added, for every `StatusCallbackEvent`.
/// Returns the new call's `CallSid`, the call id its events carry.
pub async fn place_call(
    client: &ProviderClient,
    provider_url: &str,
    login: &str,
    secret: &SecretString,
    extension: &str,
    to: &str,
    status_callback: Option<&str>,
) -> Result<String, ProviderError> {
    #[derive(Deserialize)]
    struct Numbers {
        incoming_phone_numbers: Vec<Number>,
    }
    #[derive(Deserialize)]
    struct Number {
        phone_number: String,
    }
    #[derive(Deserialize)]
    struct Call {
        sid: String,
    }
    let dialable =
        |text: &str| !text.is_empty() && text.len() <= 32 && text.bytes().all(|b| b.is_ascii_digit() || b == b'+');
    if !dialable(to) {
        return Err(ProviderError::Rejected { status: 400 });
    }
    let numbers_url = account_url(client, provider_url, login, "/IncomingPhoneNumbers.json")?;
    let numbers: Numbers = send(client.http().get(numbers_url).query(&[("PageSize", "1")]), login, secret).await?;
    let caller_id = numbers
        .incoming_phone_numbers
        .into_iter()
        .next()
        .map(|number| number.phone_number)
        .filter(|number| dialable(number))
        .ok_or(ProviderError::BadResponse("the account has no Twilio number to call from"))?;
    let manager = if extension.starts_with("sip:") { extension.to_owned() } else { format!("client:{extension}") };
    let twiml = format!("<Response><Dial callerId=\"{caller_id}\"><Number>{to}</Number></Dial></Response>");
    let mut form: Vec<(&str, String)> = vec![("To", manager), ("From", caller_id), ("Twiml", twiml)];
    if let Some(callback) = status_callback {
        let mut url = Url::parse(callback).map_err(|_| ProviderError::InvalidUrl("the webhook URL"))?;
        url.query_pairs_mut().append_pair(DIALLED_PARAMETER, to);
        form.push(("StatusCallback", url.into()));
        form.push(("StatusCallbackMethod", "POST".into()));
        for event in ["initiated", "ringing", "answered", "completed"] {
            form.push(("StatusCallbackEvent", event.into()));
        }
    }
    let calls_url = account_url(client, provider_url, login, "/Calls.json")?;
    let call: Call = send(client.http().post(calls_url).form(&form), login, secret).await?;
    if call.sid.is_empty() || call.sid.len() > 128 {
        return Err(ProviderError::BadResponse("the call SID is empty or too long"));
    }
    Ok(call.sid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilios_published_example_signature_verifies() {
        // "Webhooks security" (TwilioDevEd/api-snippets `security/signature_validation`).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        assert_eq!(
            signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }

    #[test]
    fn identities_and_dates_read_as_twilio_writes_them() {
        assert_eq!(identity("client:101").as_deref(), Some("101"));
        assert_eq!(identity("sip:102@kommo.sip.twilio.com;transport=tls").as_deref(), Some("102"));
        assert_eq!(identity("+14158675310"), None);
        assert_eq!(identity("client:"), None);
        assert_eq!(rfc2822_secs("Mon, 16 Aug 2010 03:45:01 +0000"), Some(1_281_930_301));
        assert_eq!(rfc2822_secs("Mon, 16 Aug 2010 05:45:01 +0200"), Some(1_281_930_301));
        assert_eq!(rfc2822_secs("Mon, 16 Aug 2010 03:45:01 GMT"), Some(1_281_930_301));
        assert_eq!(rfc2822_secs("Tue, 30 Feb 2010 03:45:01 +0000"), None, "no such day");
        assert_eq!(rfc2822_secs("16/08/2010"), None);
    }
}
