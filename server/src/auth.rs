//! Verification of Kommo's disposable tokens (the `X-Auth-Token` that `$authorizedAjax` adds):
//! HS256 keyed with our client secret, checked as `../shared/RELIABILITY.md` §2.5 lists.
//! The account and user of every widget request come only from a token that passed here.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Kommo issues tokens valid for 30 minutes; anything longer was not minted by Kommo.
const MAX_LIFETIME_SECS: i64 = 1800;
/// Clock skew we tolerate between Kommo and us.
pub const LEEWAY_SECS: u64 = 60;
/// Longer header values are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Who a verified token speaks for, in Kommo's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KommoIdentity {
    pub kommo_account_id: i64,
    pub user_id: i64,
    pub subdomain: String,
    /// The token's `jti`: each token is accepted once.
    pub token_id: String,
    pub expires_at: i64,
    /// The `is_admin` claim when Kommo put one in the token (KOMMO.md §4 marks it UNCONFIRMED); `None`
    /// means "ask Kommo" (`GET /api/v4/users/{id}`).
    pub is_admin: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the X-Auth-Token header is missing")]
    Missing,
    #[error("the X-Auth-Token header is too large")]
    TooLarge,
    #[error("the token is invalid: {0}")]
    Invalid(&'static str),
    /// The token was fine, but its account has not connected the integration (or disabled it).
    #[error("this Kommo account has not connected the integration")]
    NotInstalled,
}

/// The claims Kommo puts in a disposable token. Numeric claims are typed as integers, so a claim
/// sent as a string fails to parse instead of being skipped.
#[derive(Debug, Deserialize)]
struct DisposableClaims {
    iss: String,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    account_id: i64,
    user_id: i64,
    subdomain: String,
    client_uuid: String,
    /// Absent, or in a shape we do not know, it is ignored (the caller asks Kommo instead).
    #[serde(default)]
    is_admin: Option<serde_json::Value>,
}

/// Reads the `is_admin` claim in the shapes Kommo uses for flags: a boolean, `"Y"`/`"N"`, or 1/0.
fn admin_claim(value: Option<&serde_json::Value>) -> Option<bool> {
    use serde_json::Value;
    match value? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) if text == "Y" || text == "true" || text == "1" => Some(true),
        Value::String(text) if text == "N" || text == "false" || text == "0" => Some(false),
        Value::Number(number) => match number.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Verifies disposable tokens for one integration (client id + secret + redirect base).
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    client_id: String,
}

impl TokenVerifier {
    /// `audience` is the scheme + host of our Redirect URI (the server's public base URL).
    pub fn new(client_id: &str, client_secret: &SecretString, audience: &str) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.required_spec_claims =
            ["exp", "nbf", "iat", "aud", "iss"].into_iter().map(String::from).collect::<HashSet<_>>();
        TokenVerifier {
            key: DecodingKey::from_secret(client_secret.expose_secret().as_bytes()),
            validation,
            client_id: client_id.to_owned(),
        }
    }

    /// Checks the signature first, then every claim; returns whom the token speaks for.
    pub fn verify(&self, token: &str) -> Result<KommoIdentity, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        let data = jsonwebtoken::decode::<DisposableClaims>(token, &self.key, &self.validation)
            .map_err(|error| TokenError::Invalid(describe(error.kind())))?;
        let claims = data.claims;
        if claims.client_uuid != self.client_id {
            return Err(TokenError::Invalid("issued for another integration"));
        }
        let subdomain_is_valid =
            !claims.subdomain.is_empty() && claims.subdomain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !subdomain_is_valid || claims.iss != format!("https://{}.kommo.com", claims.subdomain) {
            return Err(TokenError::Invalid("issuer does not match the subdomain"));
        }
        if claims.exp - claims.iat > MAX_LIFETIME_SECS + LEEWAY_SECS as i64
            || claims.exp - claims.nbf > MAX_LIFETIME_SECS + LEEWAY_SECS as i64
        {
            return Err(TokenError::Invalid("lifetime is longer than Kommo issues"));
        }
        if claims.account_id <= 0 || claims.user_id <= 0 {
            return Err(TokenError::Invalid("account or user id is not positive"));
        }
        if claims.jti.is_empty() || claims.jti.len() > 128 {
            return Err(TokenError::Invalid("token id is missing or too long"));
        }
        Ok(KommoIdentity {
            is_admin: admin_claim(claims.is_admin.as_ref()),
            kommo_account_id: claims.account_id,
            user_id: claims.user_id,
            subdomain: claims.subdomain,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }
}

/// A short, safe reason for logs and the 401 body (never echoes the token).
fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::Json(_) => "claims have the wrong shape",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    const SECRET: &str = "test-client-secret";
    const CLIENT: &str = "c0ffee00-0000-4000-8000-000000000000";
    const AUD: &str = "https://voip.example.org";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(CLIENT, &SecretString::from(SECRET), AUD)
    }

    fn now() -> i64 {
        crate::clock::unix_secs()
    }

    fn claims() -> Value {
        let now = now();
        json!({
            "iss": "https://example.kommo.com", "aud": AUD, "jti": "2b6a1f4e-7d0a-4c52-9b1e-5f7c1d2e3a4b",
            "iat": now, "nbf": now, "exp": now + 1800, "account_id": 12345678, "user_id": 987654,
            "client_uuid": CLIENT, "subdomain": "example"
        })
    }

    fn mint(header: Header, claims: &Value, secret: &str) -> String {
        encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn with(change: impl FnOnce(&mut Value)) -> String {
        let mut claims = claims();
        change(&mut claims);
        mint(Header::new(Algorithm::HS256), &claims, SECRET)
    }

    #[test]
    fn kommo_shaped_token_names_its_account_and_user() {
        let token = with(|_| {});
        let identity = verifier().verify(&token).unwrap();
        assert_eq!(
            identity,
            KommoIdentity {
                kommo_account_id: 12345678,
                user_id: 987654,
                subdomain: "example".into(),
                token_id: "2b6a1f4e-7d0a-4c52-9b1e-5f7c1d2e3a4b".into(),
                expires_at: claims()["exp"].as_i64().unwrap(),
                is_admin: None,
            }
        );
    }

    #[test]
    fn the_admin_claim_is_read_when_present_and_left_to_kommo_otherwise() {
        let cases: Vec<(Value, Option<bool>)> = vec![
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("Y"), Some(true)),
            (json!("N"), Some(false)),
            (json!(1), Some(true)),
            (json!(0), Some(false)),
            (json!("maybe"), None),
            (json!(7), None),
            (json!(null), None),
            (json!({"admin": true}), None),
        ];
        for (claim, expected) in cases {
            let token = with(|c| c["is_admin"] = claim.clone());
            assert_eq!(verifier().verify(&token).unwrap().is_admin, expected, "is_admin = {claim}");
        }
    }

    #[test]
    fn handbook_fixture_token_has_a_valid_signature_but_is_long_expired() {
        // RELIABILITY.md §2.5's Kommo-shaped fixture (exp in 2023): the signature checks out, the time does not.
        let fixture = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUua29tbW8uY29tIiwiYXVkIjoiaHR0cHM6Ly92b2lwLmV4YW1wbGUub3JnIiwianRpIjoiMmI2YTFmNGUtN2QwYS00YzUyLTliMWUtNWY3YzFkMmUzYTRiIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMTgwMCwiYWNjb3VudF9pZCI6MTIzNDU2NzgsInVzZXJfaWQiOjk4NzY1NCwiY2xpZW50X3V1aWQiOiJjMGZmZWUwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDAiLCJzdWJkb21haW4iOiJleGFtcGxlIn0.E1mAU1LcCPDlSXmIA4X-skOs-P0RmHW4oPcLcUvrAY4";
        assert_eq!(verifier().verify(fixture), Err(TokenError::Invalid("expired")));
        let tampered = fixture.replace(".E1mAU1", ".E2mAU1");
        assert_eq!(verifier().verify(&tampered), Err(TokenError::Invalid("bad signature")));
    }

    #[test]
    fn forged_and_out_of_policy_tokens_are_refused() {
        let now = now();
        let cases: Vec<(&str, String)> = vec![
            ("wrong secret", mint(Header::new(Algorithm::HS256), &claims(), "another-secret")),
            ("HS512 with the right key", mint(Header::new(Algorithm::HS512), &claims(), SECRET)),
            (
                "expired beyond leeway",
                with(|c| {
                    c["exp"] = json!(now - 90);
                    c["iat"] = json!(now - 1000);
                    c["nbf"] = json!(now - 1000);
                }),
            ),
            // Well past the 60 s leeway: the verifier reads the clock after `now`, so `now + 61` could pass.
            ("not yet valid beyond leeway", with(|c| c["nbf"] = json!(now + 90))),
            ("nbf as a string", with(|c| c["nbf"] = json!("99999999999"))),
            ("exp as a string", with(|c| c["exp"] = json!((now + 100).to_string()))),
            (
                "missing exp",
                with(|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            ("wrong audience", with(|c| c["aud"] = json!("https://evil.example"))),
            ("audience array without ours", with(|c| c["aud"] = json!(["https://a.example", "https://b.example"]))),
            ("wrong client_uuid", with(|c| c["client_uuid"] = json!("someone-else"))),
            ("issuer of another subdomain", with(|c| c["iss"] = json!("https://other.kommo.com"))),
            (
                "issuer outside kommo.com",
                with(|c| {
                    c["iss"] = json!("https://example.evil.com");
                }),
            ),
            ("account id as a string", with(|c| c["account_id"] = json!("12345678"))),
            ("lifetime longer than Kommo issues", with(|c| c["exp"] = json!(now + 7200))),
            ("alg none", format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims().to_string()))),
            (
                "alg NONE with a signature",
                format!("{}.{}.c2ln", b64(r#"{"alg":"NONE","typ":"JWT"}"#), b64(&claims().to_string())),
            ),
            ("RS256 header", format!("{}.{}.c2ln", b64(r#"{"alg":"RS256","typ":"JWT"}"#), b64(&claims().to_string()))),
            ("no trailing dot", format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(&claims().to_string()))),
            ("garbage", "not-a-token".into()),
        ];
        for (case, token) in cases {
            assert!(matches!(verifier().verify(&token), Err(TokenError::Invalid(_))), "{case} was accepted");
        }
    }

    #[test]
    fn one_changed_payload_byte_breaks_the_signature() {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = with(|_| {});
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let payload = String::from_utf8(engine.decode(&parts[1]).unwrap()).unwrap();
        let altered = payload.replace("987654", "987655");
        assert_ne!(altered, payload, "the payload must contain the user id to alter");
        parts[1] = engine.encode(altered);
        assert_eq!(verifier().verify(&parts.join(".")), Err(TokenError::Invalid("bad signature")));
    }

    #[test]
    fn oversized_token_is_refused_before_parsing() {
        assert_eq!(verifier().verify(&"a".repeat(10 * 1024)), Err(TokenError::TooLarge));
    }

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }
}
