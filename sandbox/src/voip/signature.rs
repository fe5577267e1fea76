//! The Standard Webhooks signer the provider stand-in uses: `v1` = base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`.
//! Written apart from the `webhook-signing` crate on purpose: the stand-in plays a provider's own code, so the
//! server's verification is tested against an independent signer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a serialised Standard Webhooks symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a `whsec_...` secret cannot sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret is not base64 after `whsec_`")]
    NotBase64,
    #[error("the secret holds no key bytes")]
    Empty,
}

/// A webhook signing key: the base64-decoded secret without its `whsec_` prefix.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Reads `whsec_<base64>`; the prefix may be left out, as the Standard Webhooks libraries allow.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(key))
    }

    /// The `webhook-signature` value for one delivery: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_needs_base64_key_bytes() {
        assert!(Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        assert!(Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        assert_eq!(Secret::parse("whsec_not base64!").unwrap_err(), SecretError::NotBase64);
        assert_eq!(Secret::parse("whsec_").unwrap_err(), SecretError::Empty);
    }
}
