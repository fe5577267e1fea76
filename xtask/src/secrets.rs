//! Random secrets for local runs and tests, in the formats the server's configuration reads.

use std::io::Read;

use anyhow::{Context, Result};

/// `n` bytes from the kernel's CSPRNG.
fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes)
}

/// A client secret like Kommo's: 64 hex characters.
pub fn client_secret() -> Result<String> {
    Ok(random_bytes(32)?.iter().map(|b| format!("{b:02x}")).collect())
}

/// `SECRET_KEYS` with one active key: `kid:base64-of-32-bytes`.
pub fn secret_keys(kid: &str) -> Result<String> {
    Ok(format!("{kid}:{}", base64(&random_bytes(32)?)))
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(group >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn secret_keys_hold_a_kid_and_32_bytes() {
        let keys = secret_keys("local1").unwrap();
        let (kid, key) = keys.split_once(':').unwrap();
        assert_eq!(kid, "local1");
        assert_eq!(key.len(), 44);
        assert_ne!(keys, secret_keys("local1").unwrap());
    }

    #[test]
    fn client_secrets_are_64_hex_characters() {
        let secret = client_secret().unwrap();
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
