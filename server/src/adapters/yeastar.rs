//! Yeastar: not in this build yet (`shared::integration::AVAILABLE_SYSTEMS` does not offer it, so no account's
//! settings choose it and nothing reaches these functions).

use secrecy::SecretString;

use super::{AdapterError, Inbound, Keys, Request};
use crate::provider::{ProviderAccount, ProviderClient, ProviderError};

pub fn inbound(_request: &Request<'_>, _keys: &Keys<'_>) -> Result<Inbound, AdapterError> {
    Err(AdapterError::Malformed("Yeastar is not available in this build".into()))
}

pub async fn check_credentials(
    _client: &ProviderClient,
    _provider_url: &str,
    _login: &str,
    _secret: &SecretString,
) -> Result<ProviderAccount, ProviderError> {
    Err(ProviderError::Rejected { status: 501 })
}

pub async fn originate(
    _client: &ProviderClient,
    _provider_url: &str,
    _login: &str,
    _secret: &SecretString,
    _extension: &str,
    _to: &str,
) -> Result<String, ProviderError> {
    Err(ProviderError::Rejected { status: 501 })
}
