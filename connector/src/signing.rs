//! Standard Webhooks v1 signing, the algorithm of `server/src/signing.rs`: `v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64 bytes of the account's `whsec_` secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

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
    #[error("is not `whsec_` followed by base64")]
    NotBase64,
    #[error("must hold 24 to 64 key bytes, as the server's secrets do")]
    BadLength,
}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (the bare base64 too, as the reference libraries do).
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(WebhookSecret { key: key.into() })
    }

    /// The `webhook-signature` value of one delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.expose_secret()).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference library's vector (RELIABILITY.md §1.8, the server's own test).
    #[test]
    fn the_reference_librarys_vector_signs_as_published() {
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_short_or_garbled_secret_is_refused() {
        assert_eq!(WebhookSecret::parse("whsec_AAAA").unwrap_err(), SecretError::BadLength);
        assert_eq!(WebhookSecret::parse("whsec_not base64!").unwrap_err(), SecretError::NotBase64);
    }
}
