//! The one VoIP provider client: checks an admin's credentials and originates calls, only towards
//! addresses the egress policy allows (no server-side request forgery), with failures classified in
//! [`ProviderError`].
//!
//! The admin chooses the provider URL, so every request is guarded twice: the URL statically
//! (scheme, no userinfo, no forbidden literal IP, which the connector would use without resolving),
//! and each resolved address at connect time by [`GuardedResolver`], so that a name which later
//! resolves to 127.0.0.1 or 169.254.169.254 (DNS rebinding) is refused before a byte is sent.
//! Redirects are never followed and proxies are never used: the address checked is the address
//! connected to. With OAuth 2.0 client credentials the token request goes through the same client,
//! so it meets the same policy, time limits and refusal of redirects as the API call it precedes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// For the whole exchange: resolve, connect, TLS, request and the response body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A provider's answer is a small JSON object; more than this is refused unread.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_URL_LEN: usize = 2048;
/// Bounds on the identifiers a provider returns (we store and display them).
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 256;
/// Bound on an access token a provider issues (it goes into a header of the next request).
const MAX_TOKEN_LEN: usize = 4096;

/// The egress policy lives once, in `shared` (the settings validation applies it too); the resolver
/// here applies it to every resolved address.
pub use shared::egress::EgressPolicy;

/// How we authenticate to the provider.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// HTTP Basic.
    Password { login: String, password: SecretString },
    /// `Authorization: Bearer <key>`.
    ApiKey { key: SecretString },
    /// OAuth 2.0 client credentials: an access token from `POST /v1/oauth/token` (client authenticated by
    /// HTTP Basic), then `Authorization: Bearer <access token>`.
    OAuth2 { client_id: String, client_secret: SecretString },
}

/// What one request carries in `Authorization`, once any access token has been obtained.
enum Authorization<'a> {
    Basic { login: &'a str, password: &'a SecretString },
    Bearer(&'a SecretString),
}

/// The provider account the credentials belong to (`GET /v1/account`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub account_id: String,
    pub name: String,
}

/// Why a provider call failed. No variant carries credentials, a URL or a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The egress policy refused the destination; nothing was sent.
    #[error("the provider address is not allowed: {0}")]
    ForbiddenAddress(String),
    /// The provider URL is unusable (not a URL, not https, userinfo, query); nothing was sent.
    #[error("the provider URL is not valid: {0}")]
    InvalidUrl(&'static str),
    /// The credentials cannot be put in a header (a login with `:`, control characters); nothing
    /// was sent.
    #[error("the credentials cannot be sent: {0}")]
    InvalidCredentials(&'static str),
    /// Name resolution, connection, TLS or the time limit failed.
    #[error("the provider is unreachable: {0}")]
    Unreachable(String),
    /// 401 or 403; from the OAuth token endpoint also 400 (`invalid_client`, `invalid_grant`, ...).
    #[error("the provider refused the credentials")]
    CredentialsRefused,
    /// Any other 4xx, and 3xx (redirects are not followed).
    #[error("the provider rejected the request (HTTP {status})")]
    Rejected { status: u16 },
    /// 5xx.
    #[error("the provider failed (HTTP {status})")]
    ProviderFailed { status: u16 },
    /// A success status with a body that is not the contract's (including an unusable access token).
    #[error("the provider's answer is not understood: {0}")]
    BadResponse(&'static str),
}

/// Checks a provider URL against `policy` without sending anything, and returns it parsed. Names
/// are checked again when resolved, so passing here does not make a name trusted.
pub fn provider_base_url(raw: &str, policy: EgressPolicy) -> Result<Url, ProviderError> {
    if raw.len() > MAX_URL_LEN {
        return Err(ProviderError::InvalidUrl("too long"));
    }
    let url = Url::parse(raw.trim()).map_err(|_| ProviderError::InvalidUrl("not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allows_scheme(false) => {}
        _ => return Err(ProviderError::InvalidUrl("the scheme must be https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ProviderError::InvalidUrl("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ProviderError::InvalidUrl("a query or fragment is not allowed"));
    }
    // The URL parser has already normalised IPv4 spellings (`2130706433`, `0x7f.1`) to dotted quads.
    let host = url.host_str().ok_or(ProviderError::InvalidUrl("a host is required"))?;
    let literal = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    // A name is checked where it matters, on each address it resolves to ([`GuardedResolver`]); the
    // settings validation has already refused internal and metadata names with the same policy.
    if let Ok(ip) = literal.parse::<IpAddr>()
        && !policy.allows(ip)
    {
        return Err(ProviderError::ForbiddenAddress(ip.to_string()));
    }
    Ok(url)
}

/// Resolves with the system resolver (through tokio) and keeps only the addresses the policy
/// allows; fails when none is left. Every name reqwest connects to goes through here.
struct GuardedResolver {
    policy: EgressPolicy,
}

/// A name resolved only to forbidden addresses. Found again in the error chain by [`transport`].
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses that are not allowed")]
struct ForbiddenResolution {
    host: String,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed = permitted_addresses(resolved, policy);
            if allowed.is_empty() {
                return Err(Box::new(ForbiddenResolution { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

fn permitted_addresses(resolved: impl IntoIterator<Item = SocketAddr>, policy: EgressPolicy) -> Vec<SocketAddr> {
    resolved.into_iter().filter(|address| policy.allows(address.ip())).collect()
}

#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    policy: EgressPolicy,
}

impl ProviderClient {
    pub fn new(policy: EgressPolicy) -> ProviderClient {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            // A proxy would resolve the name itself, out of the resolver's sight.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!policy.allow_insecure_local)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("kommo-voip/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client configuration is valid");
        ProviderClient { http, policy }
    }

    pub fn policy(&self) -> EgressPolicy {
        self.policy
    }

    /// The guarded HTTP client (the egress policy on every resolved address, no redirects, no proxies, the
    /// time limits), for the adapters' own requests to their systems' APIs. Each adapter checks its URL
    /// with [`provider_base_url`] first.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// [`ProviderClient::check_credentials`] for the account's telephony system.
    pub async fn check_system(
        &self,
        system: shared::ProviderSystem,
        provider_url: &str,
        credentials: &Credentials,
    ) -> Result<ProviderAccount, ProviderError> {
        use shared::ProviderSystem::*;
        let (login, secret) = match (system, credentials) {
            (Standard | Asterisk, _) => return self.check_credentials(provider_url, credentials).await,
            (_, Credentials::Password { login, password }) => (login.as_str(), password),
            (_, Credentials::OAuth2 { client_id, client_secret }) => (client_id.as_str(), client_secret),
            (_, Credentials::ApiKey { key }) => ("", key),
        };
        match system {
            Zadarma => crate::adapters::zadarma::check_credentials(self, provider_url, login, secret).await,
            Yeastar => crate::adapters::yeastar::check_credentials(self, provider_url, login, secret).await,
            Twilio => crate::adapters::twilio::check_credentials(self, provider_url, login, secret).await,
            Standard | Asterisk => unreachable!("answered above"),
        }
    }

    /// [`ProviderClient::originate`] for the account's telephony system; `webhook_url` is the account's (a
    /// system that reports a placed call only where the request says needs it).
    pub async fn originate_system(
        &self,
        system: shared::ProviderSystem,
        provider_url: &str,
        credentials: &Credentials,
        extension: &str,
        to: &str,
        webhook_url: Option<&str>,
    ) -> Result<String, ProviderError> {
        use shared::ProviderSystem::*;
        let (login, secret) = match (system, credentials) {
            (Standard | Asterisk, _) => return self.originate(provider_url, credentials, extension, to).await,
            (_, Credentials::Password { login, password }) => (login.as_str(), password),
            (_, Credentials::OAuth2 { client_id, client_secret }) => (client_id.as_str(), client_secret),
            (_, Credentials::ApiKey { key }) => ("", key),
        };
        match system {
            Zadarma => crate::adapters::zadarma::originate(self, provider_url, login, secret, extension, to).await,
            Yeastar => crate::adapters::yeastar::originate(self, provider_url, login, secret, extension, to).await,
            // Twilio reports a call it places only to the status callback the request names.
            Twilio => {
                crate::adapters::twilio::place_call(self, provider_url, login, secret, extension, to, webhook_url).await
            }
            Standard | Asterisk => unreachable!("answered above"),
        }
    }

    /// `GET {provider_url}/v1/account`: whether the provider accepts `credentials`, and for which
    /// of its accounts.
    pub async fn check_credentials(
        &self,
        provider_url: &str,
        credentials: &Credentials,
    ) -> Result<ProviderAccount, ProviderError> {
        #[derive(Deserialize)]
        struct Account {
            account_id: Identifier,
            name: String,
        }
        let response = self.send(Method::GET, provider_url, "/v1/account", credentials, None).await?;
        let account: Account = read_success(response).await?;
        let account_id = account.account_id.into_string();
        if account_id.is_empty() || account_id.len() > MAX_ID_LEN {
            return Err(ProviderError::BadResponse("the account id is empty or too long"));
        }
        if account.name.len() > MAX_NAME_LEN {
            return Err(ProviderError::BadResponse("the account name is too long"));
        }
        Ok(ProviderAccount { account_id, name: account.name })
    }

    /// `POST {provider_url}/v1/calls`: asks the provider to ring `extension` and connect it to
    /// `to`. Returns the provider's call id.
    pub async fn originate(
        &self,
        provider_url: &str,
        credentials: &Credentials,
        extension: &str,
        to: &str,
    ) -> Result<String, ProviderError> {
        #[derive(Deserialize)]
        struct Call {
            call_id: Identifier,
        }
        let body = serde_json::json!({ "extension": extension, "to": to });
        let response = self.send(Method::POST, provider_url, "/v1/calls", credentials, Some(&body)).await?;
        let call: Call = read_success(response).await?;
        let call_id = call.call_id.into_string();
        if call_id.is_empty() || call_id.len() > MAX_ID_LEN {
            return Err(ProviderError::BadResponse("the call id is empty or too long"));
        }
        Ok(call_id)
    }

    /// Sends one API request with `credentials`; with OAuth 2.0 client credentials, first obtains the access
    /// token it carries.
    async fn send(
        &self,
        method: Method,
        provider_url: &str,
        path: &str,
        credentials: &Credentials,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, ProviderError> {
        let url = self.endpoint(provider_url, path)?;
        let access_token;
        let authorization = match credentials {
            Credentials::Password { login, password } => {
                if login.is_empty() || !is_header_safe(login) || login.contains(':') {
                    return Err(ProviderError::InvalidCredentials(
                        "the login is empty or has ':' or control characters",
                    ));
                }
                Authorization::Basic { login, password }
            }
            Credentials::ApiKey { key } => {
                if !is_bearer_token(key.expose_secret()) {
                    return Err(ProviderError::InvalidCredentials(
                        "the API key must be printable ASCII without spaces",
                    ));
                }
                Authorization::Bearer(key)
            }
            Credentials::OAuth2 { client_id, client_secret } => {
                // One token per call: calls are rare (a settings check, a click-to-call), so the token is not
                // cached; a cache would be keyed by provider URL and client id and honour `expires_in`.
                access_token = self.access_token(provider_url, client_id, client_secret).await?;
                Authorization::Bearer(&access_token)
            }
        };
        let mut request = self.http.request(method, url).header(reqwest::header::ACCEPT, "application/json");
        request = match authorization {
            Authorization::Basic { login, password } => request.basic_auth(login, Some(password.expose_secret())),
            Authorization::Bearer(token) => request.bearer_auth(token.expose_secret()),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // Refusal bodies are not read: they may echo what we sent.
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::CredentialsRefused,
            status => other_failure(status),
        })
    }

    /// `POST {provider_url}/v1/oauth/token` with `grant_type=client_credentials`, the client authenticated by
    /// HTTP Basic `client_id:client_secret` as the contract says (sent as given, not form-encoded first).
    async fn access_token(
        &self,
        provider_url: &str,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<SecretString, ProviderError> {
        #[derive(Deserialize)]
        struct Token {
            #[serde(deserialize_with = "secret")]
            access_token: SecretString,
            token_type: String,
        }
        let url = self.endpoint(provider_url, "/v1/oauth/token")?;
        if client_id.is_empty() || !is_header_safe(client_id) || client_id.contains(':') {
            return Err(ProviderError::InvalidCredentials("the client id is empty or has ':' or control characters"));
        }
        if client_secret.expose_secret().is_empty() || !is_header_safe(client_secret.expose_secret()) {
            return Err(ProviderError::InvalidCredentials("the client secret is empty or has control characters"));
        }
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .basic_auth(client_id, Some(client_secret.expose_secret()))
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            // RFC 6749 answers a refused client or grant with 400 as well as 401.
            return Err(match status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    ProviderError::CredentialsRefused
                }
                status => other_failure(status),
            });
        }
        let token: Token = read_success(response).await?;
        if !token.token_type.eq_ignore_ascii_case("bearer") {
            return Err(ProviderError::BadResponse("the token type is not Bearer"));
        }
        let value = token.access_token.expose_secret();
        if value.len() > MAX_TOKEN_LEN || !is_bearer_token(value) {
            return Err(ProviderError::BadResponse("the access token is empty, too long or not header-safe"));
        }
        Ok(token.access_token)
    }

    /// `{provider_url}{path}`, the provider URL checked against the egress policy first (the adapters'
    /// API requests are built on it too).
    pub(crate) fn endpoint(&self, provider_url: &str, path: &str) -> Result<Url, ProviderError> {
        let mut url = provider_base_url(provider_url, self.policy)?;
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        Ok(url)
    }
}

/// A failure status other than a refusal of the credentials.
fn other_failure(status: StatusCode) -> ProviderError {
    if status.is_server_error() {
        return ProviderError::ProviderFailed { status: status.as_u16() };
    }
    ProviderError::Rejected { status: status.as_u16() }
}

/// Reads a string straight into a secret (the server's `secrecy` has no serde support).
fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
    String::deserialize(deserializer).map(SecretString::from)
}

/// The provider's identifiers are strings by contract; numbers are accepted and kept as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Identifier {
    Text(String),
    Number(u64),
}

impl Identifier {
    fn into_string(self) -> String {
        match self {
            Identifier::Text(text) => text,
            Identifier::Number(number) => number.to_string(),
        }
    }
}

/// Printable text without control characters (a header value would refuse or split on them).
fn is_header_safe(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// What `Bearer <token>` can carry: non-empty printable ASCII without spaces.
fn is_bearer_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Reads a successful response's JSON body, at most [`MAX_RESPONSE_BYTES`].
async fn read_success<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ProviderError> {
    let body = read_body(response).await?;
    serde_json::from_slice(&body).map_err(|_| ProviderError::BadResponse("the body is not the expected JSON"))
}

/// The body of an answer, at most [`MAX_RESPONSE_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    if response.content_length().is_some_and(|length| length > MAX_RESPONSE_BYTES as u64) {
        return Err(ProviderError::BadResponse("the body is too large"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ProviderError::BadResponse("the body is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends an adapter's request to its system's API (built on [`ProviderClient::http`]) and reads a success's
/// body, at most [`MAX_RESPONSE_BYTES`]: a transport failure classified as ours are ([`transport`]: an
/// egress refusal of a resolved name included), 401/403 refused credentials, any other failure by its
/// status (refusal bodies are not read: they may echo what we sent).
pub(crate) async fn answer(request: reqwest::RequestBuilder) -> Result<Vec<u8>, ProviderError> {
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::CredentialsRefused,
            status => other_failure(status),
        });
    }
    read_body(response).await
}

/// Classifies a transport failure. The text comes from the innermost cause (an I/O, DNS or TLS
/// error), never from reqwest's own message, which names the URL.
fn transport(error: reqwest::Error) -> ProviderError {
    let mut innermost: &(dyn std::error::Error + 'static) = &error;
    while let Some(source) = innermost.source() {
        if let Some(refusal) = source.downcast_ref::<ForbiddenResolution>() {
            return ProviderError::ForbiddenAddress(refusal.to_string());
        }
        innermost = source;
    }
    if error.is_timeout() {
        return ProviderError::Unreachable("timed out".into());
    }
    if error.is_builder() {
        return ProviderError::InvalidUrl("the request could not be built");
    }
    if std::ptr::addr_eq(innermost, &error) {
        return ProviderError::Unreachable("connection failed".into());
    }
    ProviderError::Unreachable(format!("connection failed: {innermost}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EgressPolicy = EgressPolicy { allow_insecure_local: false };
    const LOCAL: EgressPolicy = EgressPolicy { allow_insecure_local: true };

    #[test]
    fn provider_urls_are_checked_before_anything_is_sent() {
        assert!(provider_base_url("https://voip.example.com", STRICT).is_ok());
        assert!(provider_base_url("https://voip.example.com/api/", STRICT).is_ok());
        assert!(provider_base_url("https://8.8.8.8:8443", STRICT).is_ok());
        for (raw, expected) in [
            ("http://voip.example.com", ProviderError::InvalidUrl("the scheme must be https")),
            ("ftp://voip.example.com", ProviderError::InvalidUrl("the scheme must be https")),
            ("voip.example.com", ProviderError::InvalidUrl("not an absolute URL")),
            (
                "https://admin:hunter2@voip.example.com",
                ProviderError::InvalidUrl("credentials do not belong in the URL"),
            ),
            ("https://admin@voip.example.com", ProviderError::InvalidUrl("credentials do not belong in the URL")),
            ("https://voip.example.com/?a=b", ProviderError::InvalidUrl("a query or fragment is not allowed")),
            ("https://127.0.0.1", ProviderError::ForbiddenAddress("127.0.0.1".into())),
            ("https://2130706433", ProviderError::ForbiddenAddress("127.0.0.1".into())),
            ("https://0x7f.1", ProviderError::ForbiddenAddress("127.0.0.1".into())),
            ("https://169.254.169.254/latest/meta-data", ProviderError::ForbiddenAddress("169.254.169.254".into())),
            ("https://[::1]:8443", ProviderError::ForbiddenAddress("::1".into())),
            ("https://[::ffff:127.0.0.1]", ProviderError::ForbiddenAddress("::ffff:127.0.0.1".into())),
            ("https://[::ffff:169.254.169.254]", ProviderError::ForbiddenAddress("::ffff:169.254.169.254".into())),
            ("https://[fd00:ec2::254]", ProviderError::ForbiddenAddress("fd00:ec2::254".into())),
            ("https://0.0.0.0", ProviderError::ForbiddenAddress("0.0.0.0".into())),
            ("https://10.0.0.5", ProviderError::ForbiddenAddress("10.0.0.5".into())),
        ] {
            assert_eq!(provider_base_url(raw, STRICT).unwrap_err(), expected, "{raw}");
        }
        let with_password = provider_base_url("https://admin:hunter2@voip.example.com", STRICT).unwrap_err();
        assert!(!with_password.to_string().contains("hunter2"));
    }

    #[test]
    fn the_local_policy_allows_http_to_loopback_but_not_metadata() {
        assert!(provider_base_url("http://127.0.0.1:8090", LOCAL).is_ok());
        assert!(provider_base_url("http://localhost:8090", LOCAL).is_ok());
        assert!(provider_base_url("http://10.0.0.5:8090", LOCAL).is_ok());
        assert_eq!(
            provider_base_url("http://169.254.169.254", LOCAL).unwrap_err(),
            ProviderError::ForbiddenAddress("169.254.169.254".into())
        );
        assert!(provider_base_url("ftp://127.0.0.1", LOCAL).is_err());
    }

    #[test]
    fn resolved_addresses_are_filtered_by_the_policy() {
        let resolved: Vec<SocketAddr> =
            ["127.0.0.1:0", "8.8.8.8:0", "[::ffff:169.254.169.254]:0", "[2001:4860::1]:0", "169.254.169.254:0"]
                .iter()
                .map(|address| address.parse().unwrap())
                .collect();
        let public: Vec<SocketAddr> = vec!["8.8.8.8:0".parse().unwrap(), "[2001:4860::1]:0".parse().unwrap()];
        assert_eq!(permitted_addresses(resolved.clone(), STRICT), public);
        assert_eq!(permitted_addresses(resolved, LOCAL).len(), 3);
        assert!(permitted_addresses(["127.0.0.1:0".parse().unwrap()], STRICT).is_empty());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_only_to_loopback() {
        let resolver = GuardedResolver { policy: STRICT };
        let Err(error) = resolver.resolve("localhost".parse().unwrap()).await else {
            panic!("localhost resolved under the default policy");
        };
        assert!(error.downcast_ref::<ForbiddenResolution>().is_some(), "{error}");
        let local = GuardedResolver { policy: LOCAL };
        let Ok(addresses) = local.resolve("localhost".parse().unwrap()).await else {
            panic!("localhost did not resolve under the local policy");
        };
        assert!(addresses.into_iter().all(|address| address.ip().is_loopback()));
    }
}
