//! Secrets at rest: XChaCha20-Poly1305 with a key id in every stored value, each ciphertext bound
//! to the account and column it belongs to (copied into another row, it does not decrypt).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

/// Version tag of the stored format `v1.<key id>.<base64url(nonce || ciphertext)>`.
const FORMAT: &str = "v1";
const NONCE_LEN: usize = 24;

/// Where a sealed value lives. It becomes the AEAD's associated data, so a value sealed for one
/// account's column cannot be opened as another's.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    pub column: &'a str,
    pub account_id: i64,
}

impl SealContext<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!("{}|account:{}", self.column, self.account_id).into_bytes()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("stored secret is not in the v1 format")]
    Malformed,
    #[error("stored secret was sealed with key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("stored secret does not decrypt for this account and column")]
    Forged,
}

/// The configured keys; the first one seals, all of them open (so keys can rotate).
pub struct Keyring {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish_non_exhaustive()
    }
}

impl Keyring {
    /// Parses `kid:base64(32 bytes)[,kid:base64(32 bytes)...]`.
    pub fn parse(spec: &str) -> anyhow::Result<Keyring> {
        let mut keys = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("each key must be `id:base64`, e.g. k1:<44 base64 characters>"))?;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                anyhow::bail!("key id {id:?} must be non-empty and use only letters, digits, - and _");
            }
            let bytes = STANDARD.decode(encoded).map_err(|_| anyhow::anyhow!("key `{id}` is not valid base64"))?;
            if bytes.len() != 32 {
                anyhow::bail!("key `{id}` must be 32 bytes, got {}", bytes.len());
            }
            keys.push((id.to_owned(), XChaCha20Poly1305::new(Key::from_slice(&bytes))));
        }
        if keys.is_empty() {
            anyhow::bail!("at least one key is required");
        }
        Ok(Keyring { keys })
    }

    /// Encrypts `plaintext` for `context` with the active (first) key.
    pub fn seal(&self, context: SealContext<'_>, plaintext: &SecretString) -> String {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source is unavailable");
        let aad = context.associated_data();
        let payload = Payload { msg: plaintext.expose_secret().as_bytes(), aad: &aad };
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{FORMAT}.{id}.{}", URL_SAFE_NO_PAD.encode(blob))
    }

    /// Decrypts a value produced by [`Keyring::seal`] for the same `context`.
    pub fn open(&self, context: SealContext<'_>, stored: &str) -> Result<SecretString, CryptoError> {
        let mut parts = stored.splitn(3, '.');
        let (Some(FORMAT), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let (_, cipher) =
            self.keys.iter().find(|(key_id, _)| key_id == id).ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let aad = context.associated_data();
        let plaintext = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Forged)?;
        let text = String::from_utf8(plaintext).map_err(|_| CryptoError::Forged)?;
        Ok(SecretString::from(text))
    }
}

/// A fresh random token of `bytes` bytes, base64url without padding (for unguessable ids).
/// The hex SHA-256 of a bearer value (a consent state, a stream ticket), which is what gets stored:
/// a copy of the table grants nothing.
pub fn sha256_hex(value: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(value.as_bytes()))
}

pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system's random source is unavailable");
    URL_SAFE_NO_PAD.encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn ctx(account_id: i64) -> SealContext<'static> {
        SealContext { column: "widget_settings.voip_token", account_id }
    }

    #[test]
    fn sealed_secret_opens_for_its_own_account_and_column_only() {
        let keyring = Keyring::parse(K1).unwrap();
        let sealed = keyring.seal(ctx(7), &SecretString::from("pa55word"));
        assert!(sealed.starts_with("v1.k1."));
        assert!(!sealed.contains("pa55word"));
        assert_eq!(keyring.open(ctx(7), &sealed).unwrap().expose_secret(), "pa55word");
        assert_eq!(keyring.open(ctx(8), &sealed).unwrap_err(), CryptoError::Forged);
        let other_column = SealContext { column: "kommo_auth_tokens.refresh_token", account_id: 7 };
        assert_eq!(keyring.open(other_column, &sealed).unwrap_err(), CryptoError::Forged);
    }

    #[test]
    fn rotated_keyring_still_opens_values_sealed_with_the_old_key() {
        let old = Keyring::parse(K1).unwrap();
        let sealed = old.seal(ctx(1), &SecretString::from("s"));
        let rotated = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(rotated.open(ctx(1), &sealed).unwrap().expose_secret(), "s");
        assert!(rotated.seal(ctx(1), &SecretString::from("s")).starts_with("v1.k2."));
        let new_only = Keyring::parse(K2).unwrap();
        assert_eq!(new_only.open(ctx(1), &sealed).unwrap_err(), CryptoError::UnknownKey("k1".into()));
    }

    #[test]
    fn tampered_or_malformed_values_are_refused() {
        let keyring = Keyring::parse(K1).unwrap();
        let sealed = keyring.seal(ctx(1), &SecretString::from("secret"));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(keyring.open(ctx(1), std::str::from_utf8(&tampered).unwrap()).unwrap_err(), CryptoError::Forged);
        assert_eq!(keyring.open(ctx(1), "plaintext").unwrap_err(), CryptoError::Malformed);
        assert_eq!(keyring.open(ctx(1), "v1.k1.AAAA").unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn bad_key_specifications_are_refused_with_a_reason() {
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse("k1:c2hvcnQ=").unwrap_err().to_string().contains("32 bytes"));
        assert!(Keyring::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").is_err());
    }
}
