//! Typed configuration, read once from the environment (see `.env.sample` at the repository root).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
    /// `sqlite://path` (the embedded default) or `postgres://…` (several replicas on one database).
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
    /// Mirror each account's Kommo phone numbers into the store (`PHONE_INDEX`, on by default), so that
    /// a call's caller is known without a Kommo search; off, every call searches Kommo.
    pub phone_index: bool,
    /// Bounds on what clients (authenticated or not) can make this process hold or do.
    pub limits: Limits,
    /// How long finished work and disabled accounts' data are kept.
    pub retention: Retention,
}

/// Every bound the server puts on its clients; each is an environment variable documented in
/// `.env.sample`, with a default sized for one process serving many accounts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`); empty: the peer address
    /// is the client, and the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// The only client addresses Zadarma's notifications are taken from (`ZADARMA_SOURCES`: IP addresses,
    /// and `zadarma` for Zadarma's published ones); `None` (unset or empty): any address, the signature
    /// still checked. The client is read as for every limit, so behind a proxy `TRUSTED_PROXIES` must name it.
    pub zadarma_sources: Option<Vec<IpAddr>>,
    /// Install callbacks and consent starts per client address per minute (`OAUTH_RATE_PER_ADDRESS`).
    pub oauth_per_address_per_minute: u32,
    /// The same, all clients together, per second (`OAUTH_RATE_TOTAL`).
    pub oauth_total_per_second: u32,
    /// Refused webhook deliveries (unknown hook id, bad signature) per client address per minute
    /// before that address gets 429 (`WEBHOOK_FAILURES_PER_ADDRESS`).
    pub webhook_failures_per_address_per_minute: u32,
    /// Authorization codes waiting for their exchange, at most (`MAX_PENDING_CODES`).
    pub max_pending_codes: u32,
    /// Time a client has to send a request's headers (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request's body (`BODY_READ_TIMEOUT_SECS`); the whole body
    /// is bounded by `request_timeout`.
    pub body_read_timeout: Duration,
    /// Time from a request's arrival to its answer's head, body included; a push stream then runs on
    /// (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// Open client connections at most; more wait in the listen backlog (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Open push streams per Kommo user (`PUSH_STREAMS_PER_USER`).
    pub push_streams_per_user: usize,
    /// Open push streams per account (`PUSH_STREAMS_PER_ACCOUNT`).
    pub push_streams_per_account: usize,
    /// Open push streams in this process (`PUSH_STREAMS_TOTAL`).
    pub push_streams_total: usize,
    /// A push stream ends after this long; the widget reconnects with a fresh ticket
    /// (`PUSH_STREAM_LIFETIME_SECS`).
    pub push_stream_lifetime: Duration,
    /// Jobs of one account this process runs at once at most (`WORKER_SLOTS_PER_ACCOUNT`).
    pub worker_slots_per_account: usize,
    /// Provider events one account may store per second, sustained (`INGEST_RATE_PER_ACCOUNT`).
    pub ingest_per_account_per_second: u32,
    /// ... and in a burst above that rate (`INGEST_BURST_PER_ACCOUNT`).
    pub ingest_burst_per_account: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            trusted_proxies: Vec::new(),
            zadarma_sources: None,
            oauth_per_address_per_minute: 20,
            oauth_total_per_second: 20,
            webhook_failures_per_address_per_minute: 60,
            max_pending_codes: 1000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            push_streams_per_user: 8,
            push_streams_per_account: 500,
            push_streams_total: 10_000,
            push_stream_lifetime: Duration::from_secs(3600),
            worker_slots_per_account: 2,
            ingest_per_account_per_second: 50,
            ingest_burst_per_account: 500,
        }
    }
}

/// How long data is kept (`RETENTION_DAYS`, `ERASE_DISABLED_AFTER_DAYS`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished calls, their Kommo write records, call results and finished jobs are deleted this long
    /// after they finished.
    pub finished: Duration,
    /// An account's data (settings, phone numbers, calls, tokens) is erased this long after Kommo's
    /// disable hook, unless the account was installed again meanwhile.
    pub erase_disabled_after: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { finished: Duration::from_secs(90 * 86_400), erase_disabled_after: Duration::from_secs(30 * 86_400) }
    }
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
        // Any other scheme would be taken for a file name by SQLite's URL parser: refuse it here, naming
        // only the scheme (a database URL may carry a password).
        crate::store::Engine::of_url(&database_url)?;
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
        if let Some(addr) = operator.bind_addr
            && operator.token.is_none()
            && !addr.ip().is_loopback()
        {
            bail!(
                "OPERATOR_BIND_ADDR {addr} is not a loopback address: set OPERATOR_TOKEN too, or bind the operator \
                 endpoints to 127.0.0.1/::1"
            );
        }
        let number = |name: &str, default: u64, min: u64, max: u64| -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(text) => match text.trim().parse::<u64>() {
                    Ok(value) if (min..=max).contains(&value) => Ok(value),
                    _ => bail!("{name} must be a whole number from {min} to {max}, got {text:?}"),
                },
            }
        };
        let worker_concurrency = number("WORKER_CONCURRENCY", 8, 0, 256)? as usize;
        let phone_index = match var("PHONE_INDEX").as_deref().map(str::trim) {
            None | Some("true") | Some("1") | Some("on") => true,
            Some("false") | Some("0") | Some("off") => false,
            Some(other) => bail!("PHONE_INDEX must be true or false, got {other:?}"),
        };
        let defaults = Limits::default();
        let secs = |name: &str, default: Duration, max: u64| -> anyhow::Result<Duration> {
            number(name, default.as_secs(), 1, max).map(Duration::from_secs)
        };
        let count = |name: &str, default: usize, max: u64| -> anyhow::Result<usize> {
            number(name, default as u64, 1, max).map(|value| value as usize)
        };
        let rate = |name: &str, default: u32, max: u64| -> anyhow::Result<u32> {
            number(name, u64::from(default), 1, max).map(|value| value as u32)
        };
        let trusted_proxies = var("TRUSTED_PROXIES")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .map(|entry| {
                        entry.parse::<IpAddr>().with_context(|| {
                            format!("TRUSTED_PROXIES must list IP addresses (comma-separated), got {entry:?}")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        let zadarma_sources = var("ZADARMA_SOURCES")
            .map(|list| {
                let mut sources = Vec::new();
                for entry in list.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
                    if entry.eq_ignore_ascii_case("zadarma") {
                        sources.extend_from_slice(crate::adapters::zadarma::SOURCE_ADDRESSES);
                    } else {
                        sources.push(entry.parse::<IpAddr>().with_context(|| {
                            format!(
                                "ZADARMA_SOURCES must list IP addresses or `zadarma` (comma-separated), got {entry:?}"
                            )
                        })?);
                    }
                }
                anyhow::Ok(sources)
            })
            .transpose()?
            .filter(|sources| !sources.is_empty());
        let limits = Limits {
            trusted_proxies,
            zadarma_sources,
            oauth_per_address_per_minute: rate(
                "OAUTH_RATE_PER_ADDRESS",
                defaults.oauth_per_address_per_minute,
                100_000,
            )?,
            oauth_total_per_second: rate("OAUTH_RATE_TOTAL", defaults.oauth_total_per_second, 100_000)?,
            webhook_failures_per_address_per_minute: rate(
                "WEBHOOK_FAILURES_PER_ADDRESS",
                defaults.webhook_failures_per_address_per_minute,
                1_000_000,
            )?,
            max_pending_codes: rate("MAX_PENDING_CODES", defaults.max_pending_codes, 1_000_000)?,
            header_read_timeout: secs("HEADER_READ_TIMEOUT_SECS", defaults.header_read_timeout, 300)?,
            body_read_timeout: secs("BODY_READ_TIMEOUT_SECS", defaults.body_read_timeout, 300)?,
            request_timeout: secs("REQUEST_TIMEOUT_SECS", defaults.request_timeout, 600)?,
            max_connections: count("MAX_CONNECTIONS", defaults.max_connections, 1_000_000)?,
            push_streams_per_user: count("PUSH_STREAMS_PER_USER", defaults.push_streams_per_user, 1000)?,
            push_streams_per_account: count("PUSH_STREAMS_PER_ACCOUNT", defaults.push_streams_per_account, 1_000_000)?,
            push_streams_total: count("PUSH_STREAMS_TOTAL", defaults.push_streams_total, 1_000_000)?,
            push_stream_lifetime: secs("PUSH_STREAM_LIFETIME_SECS", defaults.push_stream_lifetime, 86_400)?,
            worker_slots_per_account: count("WORKER_SLOTS_PER_ACCOUNT", defaults.worker_slots_per_account, 256)?,
            ingest_per_account_per_second: rate(
                "INGEST_RATE_PER_ACCOUNT",
                defaults.ingest_per_account_per_second,
                1_000_000,
            )?,
            ingest_burst_per_account: rate("INGEST_BURST_PER_ACCOUNT", defaults.ingest_burst_per_account, 1_000_000)?,
        };
        let retention_defaults = Retention::default();
        let days = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            number(name, default.as_secs() / 86_400, 1, 36_500).map(|days| Duration::from_secs(days * 86_400))
        };
        let retention = Retention {
            finished: days("RETENTION_DAYS", retention_defaults.finished)?,
            erase_disabled_after: days("ERASE_DISABLED_AFTER_DAYS", retention_defaults.erase_disabled_after)?,
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
            phone_index,
            limits,
            retention,
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

    /// The required variables only.
    const BASE: [(&str, &str); 3] = [("KOMMO_CLIENT_ID", "id"), ("KOMMO_CLIENT_SECRET", "s"), ("SECRET_KEYS", KEY)];

    /// The required variables and `extra`.
    fn with(extra: &[(&str, &str)]) -> anyhow::Result<Config> {
        config(&[&BASE[..], extra].concat())
    }

    #[test]
    fn defaults_apply_when_only_secrets_are_set() {
        let config = with(&[]).unwrap();
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://data/kommo-voip.sqlite");
        assert!(config.cors_extra_origins.is_empty());
    }

    #[test]
    fn operator_and_worker_settings_are_checked() {
        let defaults = with(&[]).unwrap();
        assert_eq!(defaults.worker_concurrency, 8);
        assert!(defaults.phone_index, "the phone index is on by default");
        assert!(!with(&[("PHONE_INDEX", "false")]).unwrap().phone_index);
        let refused = with(&[("PHONE_INDEX", "sometimes")]).unwrap_err().to_string();
        assert!(refused.contains("PHONE_INDEX"), "{refused}");
        assert!(defaults.operator.token.is_none() && defaults.operator.bind_addr.is_none());
        assert_eq!(with(&[("WORKER_CONCURRENCY", "0")]).unwrap().worker_concurrency, 0, "a webhook-only replica");
        assert!(with(&[("WORKER_CONCURRENCY", "257")]).unwrap_err().to_string().contains("WORKER_CONCURRENCY"));
        assert!(with(&[("OPERATOR_TOKEN", "short")]).unwrap_err().to_string().contains("at least 32"));
        assert!(with(&[("OPERATOR_BIND_ADDR", "nowhere")]).unwrap_err().to_string().contains("OPERATOR_BIND_ADDR"));
        let operator = with(&[("OPERATOR_BIND_ADDR", "127.0.0.1:9090")]).unwrap().operator;
        assert_eq!(operator.bind_addr.unwrap().to_string(), "127.0.0.1:9090");
        let open = with(&[("OPERATOR_BIND_ADDR", "0.0.0.0:9090")]).unwrap_err().to_string();
        assert!(open.contains("OPERATOR_BIND_ADDR") && open.contains("OPERATOR_TOKEN"), "{open}");
        let guarded =
            with(&[("OPERATOR_BIND_ADDR", "0.0.0.0:9090"), ("OPERATOR_TOKEN", "t0ken-of-at-least-thirty-two-chars!!")]);
        assert!(guarded.is_ok(), "a token makes a public operator listener acceptable");
    }

    #[test]
    fn limits_have_defaults_and_refuse_values_they_cannot_use() {
        let defaults = with(&[]).unwrap();
        assert_eq!(defaults.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.limits.worker_slots_per_account, 2);
        assert!(defaults.limits.trusted_proxies.is_empty());
        assert_eq!(defaults.retention.finished, Duration::from_secs(90 * 86_400));
        let proxies = with(&[("TRUSTED_PROXIES", "10.0.0.1, ::1")]).unwrap().limits.trusted_proxies;
        assert_eq!(proxies, vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(defaults.limits.zadarma_sources, None, "any address unless the operator lists some");
        assert_eq!(with(&[("ZADARMA_SOURCES", " ")]).unwrap().limits.zadarma_sources, None);
        let sources = with(&[("ZADARMA_SOURCES", "Zadarma, 203.0.113.7")]).unwrap().limits.zadarma_sources;
        assert_eq!(sources, Some(vec!["185.45.152.42".parse().unwrap(), "203.0.113.7".parse().unwrap()]));
        for (name, value) in [
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
            ("ZADARMA_SOURCES", "zadarma.com"),
            ("ZADARMA_SOURCES", "185.45.152.0/24"),
            ("HEADER_READ_TIMEOUT_SECS", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("PUSH_STREAMS_PER_USER", "-1"),
            ("INGEST_RATE_PER_ACCOUNT", "0"),
            ("RETENTION_DAYS", "1.5"),
        ] {
            let error = with(&[(name, value)]).unwrap_err();
            assert!(format!("{error:#}").contains(name), "{name}={value}: {error:#}");
        }
    }

    #[test]
    fn a_database_url_of_another_engine_stops_the_server_naming_the_variable_not_the_password() {
        assert!(with(&[("DATABASE_URL", "sqlite://data/x.sqlite")]).is_ok());
        assert!(with(&[("DATABASE_URL", "sqlite::memory:")]).is_ok());
        assert!(with(&[("DATABASE_URL", "postgres://voip:pw@db.example.org/voip")]).is_ok());
        assert!(with(&[("DATABASE_URL", "postgresql://voip@db.example.org:5432/voip")]).is_ok());
        for url in ["mysql://voip:s3cret-pw@db.example.org/voip", "mariadb://x", "data/x.sqlite"] {
            let error = with(&[("DATABASE_URL", url)]).unwrap_err().to_string();
            assert!(error.contains("DATABASE_URL") && error.contains("sqlite://"), "{url}: {error}");
            assert!(!error.contains("s3cret-pw"), "{error}");
        }
    }

    #[test]
    fn missing_client_secret_is_named_in_the_error() {
        let error = config(&[("KOMMO_CLIENT_ID", "id"), ("SECRET_KEYS", KEY)]).unwrap_err();
        assert!(error.to_string().contains("KOMMO_CLIENT_SECRET"), "{error}");
    }

    #[test]
    fn public_base_url_with_a_path_is_refused_and_trailing_slash_trimmed() {
        let url = |url: &'static str| with(&[("PUBLIC_BASE_URL", url)]);
        assert_eq!(url("https://voip.example.org/").unwrap().public_base_url, "https://voip.example.org");
        assert!(url("https://voip.example.org/api").is_err());
        assert!(url("voip.example.org").is_err());
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
