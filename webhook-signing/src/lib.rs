//! Standard Webhooks v1 signatures (HMAC-SHA256 over `{id}.{timestamp}.{raw body}`): signing, and
//! verification that accepts several secrets (rotation) and several signatures, in constant time.
//! The server verifies with it; the Asterisk connector signs its deliveries with it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a `webhook-timestamp` may be from our clock, either way (the spec's libraries use 5 min).
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 300;
/// The prefix of a symmetric Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";
/// The spec asks for keys of 24 to 64 bytes; shorter keys are refused, longer ones are not ours.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;
/// Bytes of a key we generate.
const GENERATED_KEY_BYTES: usize = 32;
/// An HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;
/// Bounds the work one request can ask for: entries beyond this in a signature header are ignored.
const MAX_SIGNATURES: usize = 16;
/// Bounds on header values we read (a webhook id is a short token; a timestamp is a unix second).
const MAX_ID_LEN: usize = 256;
const MAX_TIMESTAMP_LEN: usize = 20;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// A symmetric signing key, `whsec_<base64>` in its text form.
#[derive(Clone)]
pub struct WebhookSecret {
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// Why a secret's text form was refused. Never carries the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook secret is not base64 after the `whsec_` prefix")]
    NotBase64,
    #[error("the webhook secret must be 24 to 64 bytes long")]
    BadLength,
}

impl WebhookSecret {
    /// Reads `whsec_<base64>`. The bare base64 is accepted too, as the reference libraries do.
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(WebhookSecret { key: key.into() })
    }

    /// A fresh random secret from the operating system's CSPRNG.
    pub fn generate() -> WebhookSecret {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        getrandom::fill(&mut key).expect("the operating system's random source is unavailable");
        WebhookSecret { key: key.into() }
    }

    /// The `whsec_<base64>` text form, to show once to an admin or to seal for storage.
    pub fn to_text(&self) -> SecretString {
        SecretString::from(format!("{SECRET_PREFIX}{}", BASE64.encode(self.key.expose_secret())))
    }

    /// The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize().into_bytes();
        format!("v1,{}", BASE64.encode(tag))
    }

    /// The MAC state after the signed content; cloned once per candidate signature.
    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret()).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The three Standard Webhooks headers of one delivery, as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> SignedHeaders<'a> {
    /// Reads `webhook-id`, `webhook-timestamp` and `webhook-signature`; a value that is not visible
    /// ASCII counts as absent.
    pub fn from_headers(headers: &'a http::HeaderMap) -> SignedHeaders<'a> {
        let get = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        SignedHeaders { id: get(ID_HEADER), timestamp: get(TIMESTAMP_HEADER), signature: get(SIGNATURE_HEADER) }
    }
}

/// Why a delivery's signature was refused. Carries no header value: they are the sender's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    #[error("the webhook timestamp is too far from the current time")]
    TimestampOutOfTolerance,
    #[error("no signature matches")]
    NoMatchingSignature,
}

/// Verifies a delivery on its raw `body` at unix time `now` against any of `secrets` (more than one
/// while a secret is being rotated). Any one valid `v1` entry of the space-separated signature
/// header suffices; entries of other versions are skipped, as the spec asks.
pub fn verify(
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now: i64,
    secrets: &[WebhookSecret],
) -> Result<(), SignatureError> {
    let id = present(headers.id, ID_HEADER)?;
    let timestamp = present(headers.timestamp, TIMESTAMP_HEADER)?;
    let signature = present(headers.signature, SIGNATURE_HEADER)?;

    // The signed content joins the fields with '.', so neither may contain one.
    if id.len() > MAX_ID_LEN || id.contains('.') {
        return Err(SignatureError::MalformedHeader(ID_HEADER));
    }
    let sent_at = parse_timestamp(timestamp).ok_or(SignatureError::MalformedHeader(TIMESTAMP_HEADER))?;
    if now.abs_diff(sent_at) > TIMESTAMP_TOLERANCE_SECS {
        return Err(SignatureError::TimestampOutOfTolerance);
    }

    let candidates: Vec<Vec<u8>> = signature
        .split(' ')
        .filter(|entry| !entry.is_empty())
        .take(MAX_SIGNATURES)
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
        // An empty or short tag must never match (`v1,` once verified against length-lenient checks).
        .filter(|tag| tag.len() == TAG_BYTES)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::NoMatchingSignature);
    }
    for secret in secrets {
        let mac = secret.mac(id, timestamp, body);
        // `verify_slice` compares in constant time and refuses a tag of another length.
        if candidates.iter().any(|tag| mac.clone().verify_slice(tag).is_ok()) {
            return Ok(());
        }
    }
    Err(SignatureError::NoMatchingSignature)
}

/// A header's value, where an empty one counts as missing.
fn present<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, SignatureError> {
    value.filter(|value| !value.is_empty()).ok_or(SignatureError::MissingHeader(name))
}

/// Unix seconds as ASCII digits only: no sign, no spaces, no fraction.
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > MAX_TIMESTAMP_LEN || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published vector of the Standard Webhooks reference libraries (`test_sign`).
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1_649_367_553;
    const TIMESTAMP_TEXT: &str = "1649367553";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    fn headers(signature: &str) -> SignedHeaders<'_> {
        SignedHeaders { id: Some(ID), timestamp: Some(TIMESTAMP_TEXT), signature: Some(signature) }
    }

    #[test]
    fn signing_matches_the_published_vector() {
        assert_eq!(secret().sign(ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn the_published_vector_verifies() {
        assert_eq!(verify(&headers(SIGNATURE), BODY, TIMESTAMP, &[secret()]), Ok(()));
    }

    #[test]
    fn one_right_signature_among_wrong_ones_verifies_and_the_wrong_ones_alone_do_not() {
        let wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,Bm8RGlAH5q1Y1X2KbeeWc2cSgXjB+Hn+uaaeV7vfFys= \
                     v1,eHnZZTrWJBzZ8xvGS+tkWD/HqvWRH6r1SUYlbSXqBcs=";
        let with_right = format!("{wrong} {SIGNATURE}");
        assert_eq!(verify(&headers(&with_right), BODY, TIMESTAMP, &[secret()]), Ok(()));
        assert_eq!(verify(&headers(wrong), BODY, TIMESTAMP, &[secret()]), Err(SignatureError::NoMatchingSignature));
    }

    #[test]
    fn each_missing_header_fails() {
        let complete = headers(SIGNATURE);
        for (without, name) in [
            (SignedHeaders { id: None, ..complete }, ID_HEADER),
            (SignedHeaders { timestamp: None, ..complete }, TIMESTAMP_HEADER),
            (SignedHeaders { signature: None, ..complete }, SIGNATURE_HEADER),
            (SignedHeaders { id: Some(""), ..complete }, ID_HEADER),
        ] {
            assert_eq!(verify(&without, BODY, TIMESTAMP, &[secret()]), Err(SignatureError::MissingHeader(name)));
        }
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_fail_either_way() {
        for now in [TIMESTAMP - 301, TIMESTAMP + 301, 0, i64::MAX, i64::MIN] {
            assert_eq!(
                verify(&headers(SIGNATURE), BODY, now, &[secret()]),
                Err(SignatureError::TimestampOutOfTolerance),
                "now = {now}"
            );
        }
        for now in [TIMESTAMP - 300, TIMESTAMP + 300] {
            assert_eq!(verify(&headers(SIGNATURE), BODY, now, &[secret()]), Ok(()), "now = {now}");
        }
    }

    #[test]
    fn empty_and_short_signatures_fail() {
        // `v1,` is the published bypass of length-lenient comparisons; `v1,AAAA` a short tag.
        let short_prefix = &SIGNATURE[..SIGNATURE.len() - 8];
        for signature in ["v1,", "v1,AAAA", "v1", ",", "   ", short_prefix, "v1,=", "v1,!!!!"] {
            assert!(verify(&headers(signature), BODY, TIMESTAMP, &[secret()]).is_err(), "{signature:?} verified");
        }
    }

    #[test]
    fn unknown_versions_are_skipped_not_trusted() {
        let right_tag = SIGNATURE.strip_prefix("v1,").unwrap();
        for signature in [format!("v2,{right_tag}"), format!("v1a,{right_tag}"), format!("V1,{right_tag}")] {
            assert_eq!(
                verify(&headers(&signature), BODY, TIMESTAMP, &[secret()]),
                Err(SignatureError::NoMatchingSignature)
            );
        }
        let mixed = format!("v1a,{right_tag} {SIGNATURE}");
        assert_eq!(verify(&headers(&mixed), BODY, TIMESTAMP, &[secret()]), Ok(()));
    }

    #[test]
    fn malformed_ids_and_timestamps_fail() {
        let bad_id = SignedHeaders { id: Some("msg.1"), ..headers(SIGNATURE) };
        assert_eq!(verify(&bad_id, BODY, TIMESTAMP, &[secret()]), Err(SignatureError::MalformedHeader(ID_HEADER)));
        for timestamp in ["1649367553.0", "+1649367553", "-1", " 1649367553", "16493675x3", "99999999999999999999999"] {
            let bad = SignedHeaders { timestamp: Some(timestamp), ..headers(SIGNATURE) };
            assert_eq!(
                verify(&bad, BODY, TIMESTAMP, &[secret()]),
                Err(SignatureError::MalformedHeader(TIMESTAMP_HEADER)),
                "{timestamp:?}"
            );
        }
    }

    #[test]
    fn any_secret_of_a_rotation_verifies() {
        let old = secret();
        let new = WebhookSecret::generate();
        let signed_with_new = new.sign(ID, TIMESTAMP, BODY);
        assert_eq!(verify(&headers(&signed_with_new), BODY, TIMESTAMP, &[old.clone(), new.clone()]), Ok(()));
        assert_eq!(verify(&headers(SIGNATURE), BODY, TIMESTAMP, &[new.clone(), old.clone()]), Ok(()));
        assert_eq!(
            verify(&headers(&signed_with_new), BODY, TIMESTAMP, &[old]),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(verify(&headers(SIGNATURE), BODY, TIMESTAMP, &[]), Err(SignatureError::NoMatchingSignature));
    }

    #[test]
    fn a_changed_body_id_or_timestamp_fails() {
        let tampered = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert!(verify(&headers(SIGNATURE), tampered, TIMESTAMP, &[secret()]).is_err());
        let other_id = SignedHeaders { id: Some("msg_other"), ..headers(SIGNATURE) };
        assert!(verify(&other_id, BODY, TIMESTAMP, &[secret()]).is_err());
        let other_time = SignedHeaders { timestamp: Some("1649367554"), ..headers(SIGNATURE) };
        assert!(verify(&other_time, BODY, TIMESTAMP, &[secret()]).is_err());
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let generated = WebhookSecret::generate();
        let text = generated.to_text();
        assert!(text.expose_secret().starts_with("whsec_"));
        let reparsed = WebhookSecret::parse(text.expose_secret()).unwrap();
        assert_eq!(reparsed.sign(ID, TIMESTAMP, BODY), generated.sign(ID, TIMESTAMP, BODY));
        assert_ne!(WebhookSecret::generate().sign(ID, TIMESTAMP, BODY), generated.sign(ID, TIMESTAMP, BODY));
        assert_eq!(
            WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap().sign(ID, TIMESTAMP, BODY),
            SIGNATURE
        );
        assert_eq!(WebhookSecret::parse("whsec_not base64!").unwrap_err(), SecretError::NotBase64);
        assert_eq!(WebhookSecret::parse("whsec_AAAA").unwrap_err(), SecretError::BadLength);
        assert_eq!(WebhookSecret::parse("whsec_").unwrap_err(), SecretError::BadLength);
        assert!(!format!("{generated:?}").contains(&text.expose_secret()[6..]));
    }

    #[test]
    fn headers_are_read_by_their_standard_names() {
        let mut map = http::HeaderMap::new();
        map.insert(ID_HEADER, ID.parse().unwrap());
        map.insert(TIMESTAMP_HEADER, TIMESTAMP_TEXT.parse().unwrap());
        map.insert(SIGNATURE_HEADER, SIGNATURE.parse().unwrap());
        assert_eq!(verify(&SignedHeaders::from_headers(&map), BODY, TIMESTAMP, &[secret()]), Ok(()));
    }
}
