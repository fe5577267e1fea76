//! Typed configuration, read once from the environment (see `.env.sample` at the repository root).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::crypto::Keyring;
use crate::kommo::KommoHosts;
use crate::provider::EgressPolicy;

/// Everything the server needs to start. Each module receives only its own part.
#[derive(Debug)]
pub struct Config {
    /// Address the HTTP listener binds to.
    pub bind_addr: SocketAddr,
    /// Scheme + host (+ port) under which Kommo and providers reach us, without a trailing slash.
    /// It is the `aud` of Kommo's disposable tokens and the base of the webhook URLs we hand out.
    pub public_base_url: String,
    /// `sqlite://path` (the embedded default).
    pub database_url: String,
    pub kommo: KommoConfig,
    /// Keys that encrypt secrets at rest.
    pub keyring: Keyring,
    /// Browser origins allowed besides `https://*.kommo.com` (e.g. the local Kommo).
    pub cors_extra_origins: Vec<String>,
    /// Hosts allowed to receive our client secret and tokens (Kommo's `referer`).
    pub kommo_hosts: KommoHosts,
    /// Kommo's consent page (`https://www.kommo.com/oauth`).
    pub kommo_consent_url: String,
    /// Which VoIP provider addresses we may call (https to public addresses, unless the operator
    /// allows a local stand-in).
    pub provider_egress: EgressPolicy,
    /// Operator endpoints (`/metrics`, dead letters across accounts).
    pub operator: OperatorConfig,
    /// Jobs run at once by this process's worker; 0 runs no worker (a replica that only takes webhooks).
    pub worker_concurrency: usize,
}

/// Who may reach the operator endpoints: their own listener (`OPERATOR_BIND_ADDR`, e.g. an address
/// only the monitoring network reaches), and/or a bearer token (`OPERATOR_TOKEN`, required on the main
/// listener, where the operator endpoints exist only when a token is set).
#[derive(Debug, Default)]
pub struct OperatorConfig {
    pub bind_addr: Option<SocketAddr>,
    pub token: Option<SecretString>,
}

/// The integration's identity in Kommo.
#[derive(Debug)]
pub struct KommoConfig {
    pub client_id: String,
    /// Keys Kommo's disposable tokens (HS256); later also the OAuth exchange.
    pub client_secret: SecretString,
}

impl Config {
    /// Reads the process environment (after loading `.env`, if present).
    pub fn from_env() -> anyhow::Result<Config> {
        // A missing .env is normal in production; a malformed one is a startup error.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(error) if error.not_found() => {}
            Err(error) => return Err(error).context("reading .env"),
        }
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass variables without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let required = |name: &str| var(name).with_context(|| format!("{name} is not set (see .env.sample)"));

        let bind_addr = var("BIND_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .context("BIND_ADDR must be host:port, e.g. 127.0.0.1:8080")?;
        let public_base_url =
            normalise_base_url(&var("PUBLIC_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()))?;
        let database_url = var("DATABASE_URL").unwrap_or_else(|| "sqlite://data/kommo-voip.sqlite".into());
        let kommo = KommoConfig {
            client_id: required("KOMMO_CLIENT_ID")?,
            client_secret: SecretString::from(required("KOMMO_CLIENT_SECRET")?),
        };
        let keyring = Keyring::parse(&required("SECRET_KEYS")?).context("SECRET_KEYS")?;
        let cors_extra_origins = var("CORS_EXTRA_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                    .filter(|origin| !origin.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let kommo_hosts = KommoHosts::parse(&var("KOMMO_ALLOWED_HOSTS").unwrap_or_else(|| "*.kommo.com".into()))
            .context("KOMMO_ALLOWED_HOSTS")?;
        let kommo_consent_url = var("KOMMO_CONSENT_URL")
            .unwrap_or_else(|| "https://www.kommo.com/oauth".into())
            .trim_end_matches('/')
            .to_owned();
        let provider_egress = EgressPolicy {
            allow_insecure_local: match var("PROVIDER_ALLOW_INSECURE_LOCAL").as_deref() {
                None | Some("false") | Some("0") => false,
                Some("true") | Some("1") => true,
                Some(other) => bail!("PROVIDER_ALLOW_INSECURE_LOCAL must be true or false, got {other:?}"),
            },
        };
        let operator = OperatorConfig {
            bind_addr: var("OPERATOR_BIND_ADDR")
                .map(|addr| addr.parse().context("OPERATOR_BIND_ADDR must be host:port, e.g. 127.0.0.1:9090"))
                .transpose()?,
            token: match var("OPERATOR_TOKEN") {
                Some(token) if token.len() < 32 => bail!("OPERATOR_TOKEN must be at least 32 characters"),
                token => token.map(SecretString::from),
            },
        };
        let worker_concurrency = match var("WORKER_CONCURRENCY") {
            None => 8,
            Some(text) => match text.parse::<usize>() {
                Ok(count @ 0..=256) => count,
                _ => bail!("WORKER_CONCURRENCY must be a number from 0 to 256, got {text:?}"),
            },
        };
        Ok(Config {
            bind_addr,
            public_base_url,
            database_url,
            kommo,
            keyring,
            cors_extra_origins,
            kommo_hosts,
            kommo_consent_url,
            provider_egress,
            operator,
            worker_concurrency,
        })
    }
}

/// Accepts `http(s)://host[:port]` with an optional trailing slash; refuses paths and queries,
/// because the value is compared verbatim with the `aud` claim.
fn normalise_base_url(raw: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let Some(rest) = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://")) else {
        bail!("PUBLIC_BASE_URL must start with https:// or http://, got {trimmed:?}");
    };
    if rest.is_empty() || rest.contains(['/', '?', '#']) {
        bail!("PUBLIC_BASE_URL must be scheme://host[:port] without a path, got {trimmed:?}");
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_only_secrets_are_set() {
        let config = config(&[("KOMMO_CLIENT_ID", "id"), ("KOMMO_CLIENT_SECRET", "s"), ("SECRET_KEYS", KEY)]).unwrap();
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://data/kommo-voip.sqlite");
        assert!(config.cors_extra_origins.is_empty());
    }

    #[test]
    fn operator_and_worker_settings_are_checked() {
        let base = [("KOMMO_CLIENT_ID", "id"), ("KOMMO_CLIENT_SECRET", "s"), ("SECRET_KEYS", KEY)];
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = base.to_vec();
            vars.push(extra);
            config(&vars)
        };
        let defaults = config(&base).unwrap();
        assert_eq!(defaults.worker_concurrency, 8);
        assert!(defaults.operator.token.is_none() && defaults.operator.bind_addr.is_none());
        assert_eq!(with(("WORKER_CONCURRENCY", "0")).unwrap().worker_concurrency, 0, "a webhook-only replica");
        assert!(with(("WORKER_CONCURRENCY", "257")).unwrap_err().to_string().contains("WORKER_CONCURRENCY"));
        assert!(with(("OPERATOR_TOKEN", "short")).unwrap_err().to_string().contains("at least 32"));
        assert!(with(("OPERATOR_BIND_ADDR", "nowhere")).unwrap_err().to_string().contains("OPERATOR_BIND_ADDR"));
        let operator = with(("OPERATOR_BIND_ADDR", "127.0.0.1:9090")).unwrap().operator;
        assert_eq!(operator.bind_addr.unwrap().to_string(), "127.0.0.1:9090");
    }

    #[test]
    fn missing_client_secret_is_named_in_the_error() {
        let error = config(&[("KOMMO_CLIENT_ID", "id"), ("SECRET_KEYS", KEY)]).unwrap_err();
        assert!(error.to_string().contains("KOMMO_CLIENT_SECRET"), "{error}");
    }

    #[test]
    fn public_base_url_with_a_path_is_refused_and_trailing_slash_trimmed() {
        let base = [("KOMMO_CLIENT_ID", "id"), ("KOMMO_CLIENT_SECRET", "s"), ("SECRET_KEYS", KEY)];
        let with = |url: &'static str| {
            let mut vars = base.to_vec();
            vars.push(("PUBLIC_BASE_URL", url));
            config(&vars)
        };
        assert_eq!(with("https://voip.example.org/").unwrap().public_base_url, "https://voip.example.org");
        assert!(with("https://voip.example.org/api").is_err());
        assert!(with("voip.example.org").is_err());
    }

    #[test]
    fn debug_output_does_not_show_the_client_secret() {
        let config =
            config(&[("KOMMO_CLIENT_ID", "id"), ("KOMMO_CLIENT_SECRET", "very-secret-value"), ("SECRET_KEYS", KEY)])
                .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret-value"));
        assert!(!printed.contains("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="));
    }
}
