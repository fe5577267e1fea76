//! Kommo-shaped disposable JWTs (what `self.$authorizedAjax` attaches as `X-Auth-Token`), per KOMMO.md §4.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// Kommo's disposable tokens live 30 minutes.
pub const LIFETIME_SECS: i64 = 1800;

/// The Kommo account, user and integration the sandbox acts as.
pub struct Kommo {
    /// The integration id; becomes `client_uuid`.
    pub client_id: String,
    /// The integration secret: the HS256 key.
    pub client_secret: String,
    /// `aud`: `scheme://host[:port]` of the server's public base URL.
    pub audience: String,
    pub subdomain: String,
    pub account_id: u64,
    pub user_id: u64,
}

/// `scheme://host[:port]` of a URL, the form Kommo puts in `aud`.
pub fn audience_of(public_base_url: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(public_base_url).map_err(|error| format!("`{public_base_url}`: {error}"))?;
    if url.host().is_none() {
        return Err(format!("`{public_base_url}` has no host"));
    }
    Ok(url.origin().ascii_serialization())
}

/// The claims of a Kommo disposable token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub account_id: u64,
    pub user_id: u64,
    pub subdomain: String,
    pub client_uuid: String,
    /// Read by Kommo's SDK but not shown in Kommo's documented example (KOMMO.md §4, UNCONFIRMED), so
    /// the stand-in can leave it out, and the server must then ask `GET /api/v4/users/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_admin: Option<bool>,
}

/// Who the token speaks for; by default the configured account and user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub account_id: Option<u64>,
    pub user_id: Option<u64>,
    pub subdomain: Option<String>,
    /// The `is_admin` claim; by default true for the configured user (the sandbox's admin), false
    /// for any other user.
    pub is_admin: Option<bool>,
    /// Leaves the `is_admin` claim out, as Kommo's documented example does.
    #[serde(default)]
    pub omit_is_admin: bool,
}

impl Kommo {
    /// The claims Kommo would sign at `now` (unix seconds) for the configured or overridden identity.
    pub fn claims(&self, request: &TokenRequest, now: i64) -> Claims {
        let subdomain = request.subdomain.clone().unwrap_or_else(|| self.subdomain.clone());
        let user_id = request.user_id.unwrap_or(self.user_id);
        let is_admin = (!request.omit_is_admin).then(|| request.is_admin.unwrap_or(user_id == self.user_id));
        Claims {
            iss: format!("https://{subdomain}.kommo.com"),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + LIFETIME_SECS,
            account_id: request.account_id.unwrap_or(self.account_id),
            user_id,
            subdomain,
            client_uuid: self.client_id.clone(),
            is_admin,
        }
    }

    /// Signs claims with HS256 keyed by the client secret, as Kommo does.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let key = EncodingKey::from_secret(self.client_secret.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
    }
}

/// A Kommo subdomain: lowercase letters, digits and dashes, as in `{subdomain}.kommo.com`.
pub(crate) fn is_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or_default()
}

/// `POST /sandbox/token` with an optional JSON body `{account_id?, user_id?, subdomain?, is_admin?,
/// omit_is_admin?}` →
/// `{"token": <JWT>, "expires_in": 1800}`.
pub(crate) async fn mint_handler(
    State(state): State<crate::State>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, SandboxError> {
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| SandboxError::BadRequest(format!("token request: {error}")))?
    };
    if let Some(subdomain) = &request.subdomain
        && !is_subdomain(subdomain)
    {
        return Err(SandboxError::BadRequest(format!("`{subdomain}` is not a Kommo subdomain")));
    }
    let kommo = &state.config.kommo;
    let claims = kommo.claims(&request, unix_now());
    let token = kommo.sign(&claims).map_err(|error| SandboxError::Internal(format!("signing: {error}")))?;
    tracing::debug!(account.id = claims.account_id, user.id = claims.user_id, "minted a disposable token");
    Ok(Json(serde_json::json!({ "token": token, "expires_in": LIFETIME_SECS })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_keeps_scheme_host_and_explicit_port_only() {
        assert_eq!(audience_of("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(audience_of("https://voip.example.com/base/path").unwrap(), "https://voip.example.com");
        assert_eq!(audience_of("https://voip.example.com:443").unwrap(), "https://voip.example.com");
        assert!(audience_of("not a url").is_err());
    }

    #[test]
    fn subdomains_are_lowercase_labels() {
        assert!(is_subdomain("sandbox-2"));
        assert!(!is_subdomain("Sandbox"));
        assert!(!is_subdomain("evil.com/x"));
        assert!(!is_subdomain(""));
    }
}
