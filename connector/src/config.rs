//! `Config`, read once from the environment; a value the connector cannot use stops it at start, naming
//! the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use webhook_signing::WebhookSecret;

/// Everything the connector needs, read once at start.
#[derive(Clone)]
pub struct Config {
    /// `AMI_HOST:AMI_PORT`.
    pub ami_addr: String,
    pub ami_username: String,
    pub ami_secret: SecretString,
    /// The channel technology an originated call rings the extension on (`PJSIP`, `SIP`, `IAX2`).
    pub originate_tech: String,
    /// The dialplan context the originated channel continues in once the extension answers.
    pub originate_context: String,
    /// Whether `Exten` keeps the E.164 `+` (most dialplans match digits only).
    pub originate_keep_plus: bool,
    /// How long to wait after a call's last channel hung up for its `Cdr` events (zero: do not wait).
    pub cdr_wait: Duration,
    /// The longest extension: a channel's peer with at most this many digits is an extension.
    pub extension_max_len: usize,
    /// The server's webhook URL for this account and its signing secret. `None` before the widget's settings
    /// were first saved (they check the connector's API, and only then show both): calls are followed and
    /// wait in the spool, and are delivered once both are set and the connector restarted.
    pub webhook: Option<(reqwest::Url, WebhookSecret)>,
    /// The provider account id our events carry (`voipAccountId`) and `GET /v1/account` answers.
    pub account_id: String,
    /// The spool directory; created when missing.
    pub spool_dir: PathBuf,
    /// The local provider API's address.
    pub listen_addr: SocketAddr,
    /// HTTP Basic credentials of the local API, when set.
    pub api_login: Option<(String, SecretString)>,
    /// Bearer key of the local API, when set.
    pub api_key: Option<SecretString>,
    /// The longest pause between two delivery attempts of one event.
    pub retry_max: Duration,
    /// Where MixMonitor's recordings are and how their links are made, when both
    /// `CONNECTOR_RECORDINGS_DIR` and `CONNECTOR_PUBLIC_URL` are set.
    pub recordings: Option<crate::recordings::Recordings>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("ami_addr", &self.ami_addr)
            .field("ami_username", &self.ami_username)
            .field("webhook_url", &self.webhook.as_ref().map(|(url, _)| url.origin().ascii_serialization()))
            .field("account_id", &self.account_id)
            .field("spool_dir", &self.spool_dir)
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

/// A variable the connector cannot use; the message names it, never its value when it is a secret.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

fn bad(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { name, problem: problem.into() }
}

/// Two variables that only work together: both set, or neither. One without the other is an error naming
/// the missing one, with `why_second` (the second is missing) or `why_first` (the first is).
fn both_or_neither(
    (first_name, first): (&'static str, Option<String>),
    (second_name, second): (&'static str, Option<String>),
    why_second: &str,
    why_first: &str,
) -> Result<Option<(String, String)>, ConfigError> {
    match (first, second) {
        (Some(first), Some(second)) => Ok(Some((first, second))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad(second_name, format!("is not set while {first_name} is{why_second}"))),
        (None, Some(_)) => Err(bad(first_name, format!("is not set while {second_name} is{why_first}"))),
    }
}

/// Whether a value can go into an AMI header line (no line breaks or other controls).
pub fn is_header_safe(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (tests give a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| get(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        let required =
            |name: &'static str, what: &str| var(name).ok_or_else(|| bad(name, format!("is not set: {what}")));
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(text) => text.parse().map_err(|_| bad(name, format!("`{text}` is not a whole number"))),
            }
        };
        let flag = |name: &'static str| -> Result<bool, ConfigError> {
            match var(name).as_deref() {
                None | Some("false" | "0" | "no") => Ok(false),
                Some("true" | "1" | "yes") => Ok(true),
                Some(other) => Err(bad(name, format!("`{other}` is not true or false"))),
            }
        };
        let header_safe = |name: &'static str, value: String| {
            if is_header_safe(&value) { Ok(value) } else { Err(bad(name, "holds a line break or control character")) }
        };

        let host = header_safe("AMI_HOST", var("AMI_HOST").unwrap_or_else(|| "127.0.0.1".to_owned()))?;
        let port = number("AMI_PORT", 5038)?;
        if !(1..=65_535).contains(&port) {
            return Err(bad("AMI_PORT", "must be a port number (1-65535)"));
        }
        let ami_username = header_safe("AMI_USERNAME", required("AMI_USERNAME", "the manager.conf user")?)?;
        let ami_secret = header_safe("AMI_SECRET", required("AMI_SECRET", "the manager.conf user's secret")?)?;
        let originate_tech = var("AMI_ORIGINATE_TECH").unwrap_or_else(|| "PJSIP".to_owned());
        if !originate_tech.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad("AMI_ORIGINATE_TECH", "must be a channel technology such as PJSIP, SIP or IAX2"));
        }
        let originate_context = var("AMI_ORIGINATE_CONTEXT").unwrap_or_else(|| "from-internal".to_owned());
        if !originate_context.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad("AMI_ORIGINATE_CONTEXT", "must be a dialplan context name (letters, digits, - _ .)"));
        }
        let extension_max_len = number("AMI_EXTENSION_MAX_LEN", 6)?;
        if !(1..=16).contains(&extension_max_len) {
            return Err(bad("AMI_EXTENSION_MAX_LEN", "must be 1 to 16"));
        }

        let webhook = match both_or_neither(
            ("CONNECTOR_WEBHOOK_URL", var("CONNECTOR_WEBHOOK_URL")),
            ("CONNECTOR_WEBHOOK_SECRET", var("CONNECTOR_WEBHOOK_SECRET")),
            ": copy the whsec_ signing secret the widget settings show",
            ": copy the webhook URL the widget settings show",
        )? {
            Some((url, secret)) => {
                let url = reqwest::Url::parse(&url)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
                    .ok_or_else(|| bad("CONNECTOR_WEBHOOK_URL", "is not an http(s) URL"))?;
                let secret = WebhookSecret::parse(&secret)
                    .map_err(|problem| bad("CONNECTOR_WEBHOOK_SECRET", problem.to_string()))?;
                Some((url, secret))
            }
            None => None,
        };
        let account_id = var("CONNECTOR_ACCOUNT_ID").unwrap_or_else(|| "asterisk".to_owned());
        if account_id.chars().count() > 64 || account_id.chars().any(shared::call::is_non_printing) {
            return Err(bad("CONNECTOR_ACCOUNT_ID", "must be at most 64 printable characters"));
        }
        let spool_dir =
            PathBuf::from(required("CONNECTOR_SPOOL_DIR", "the directory that keeps events until delivered")?);
        let listen_text = var("CONNECTOR_LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:8091".to_owned());
        let listen_addr = listen_text.parse().map_err(|_| {
            bad("CONNECTOR_LISTEN_ADDR", format!("`{listen_text}` is not an address such as 127.0.0.1:8091"))
        })?;
        let api_login = match both_or_neither(
            ("CONNECTOR_API_LOGIN", var("CONNECTOR_API_LOGIN")),
            ("CONNECTOR_API_PASSWORD", var("CONNECTOR_API_PASSWORD")),
            "",
            "",
        )? {
            Some((login, password)) => {
                if login.contains(':') || !is_header_safe(&login) {
                    return Err(bad("CONNECTOR_API_LOGIN", "must hold no `:` or control characters"));
                }
                Some((login, SecretString::from(password)))
            }
            None => None,
        };
        let api_key = var("CONNECTOR_API_KEY").map(SecretString::from);
        if api_login.is_none() && api_key.is_none() {
            return Err(bad(
                "CONNECTOR_API_KEY",
                "is not set, nor CONNECTOR_API_LOGIN and CONNECTOR_API_PASSWORD: the click-to-call API needs credentials",
            ));
        }
        let retry_max = Duration::from_secs(number("CONNECTOR_RETRY_MAX_SECS", 60)?.max(1));
        let recordings = match both_or_neither(
            ("CONNECTOR_RECORDINGS_DIR", var("CONNECTOR_RECORDINGS_DIR")),
            ("CONNECTOR_PUBLIC_URL", var("CONNECTOR_PUBLIC_URL")),
            ": recordings need a link browsers can open",
            "",
        )? {
            Some((dir, public)) => {
                let public_ok = reqwest::Url::parse(&public).ok().is_some_and(|url| {
                    matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.query().is_none()
                });
                if !public_ok {
                    return Err(bad(
                        "CONNECTOR_PUBLIC_URL",
                        "is not an http(s) URL (the connector's API as browsers reach it)",
                    ));
                }
                if !std::path::Path::new(&dir).is_dir() {
                    return Err(bad("CONNECTOR_RECORDINGS_DIR", format!("`{dir}` is not a directory")));
                }
                // The links' key comes from the API's own secret: changing it withdraws every link.
                let secret = match (&api_key, &api_login) {
                    (Some(key), _) => key.expose_secret().to_owned(),
                    (None, Some((login, password))) => format!("{login}:{}", password.expose_secret()),
                    (None, None) => unreachable!("checked above: the API has credentials"),
                };
                Some(crate::recordings::Recordings::new(PathBuf::from(dir), &public, secret.as_bytes()))
            }
            None => None,
        };
        let cdr_wait = Duration::from_millis(number("AMI_CDR_WAIT_MS", 2000)?);
        Ok(Config {
            ami_addr: format!("{host}:{port}"),
            ami_username,
            ami_secret: SecretString::from(ami_secret),
            originate_tech,
            originate_context,
            originate_keep_plus: flag("AMI_ORIGINATE_KEEP_PLUS")?,
            cdr_wait,
            extension_max_len: extension_max_len as usize,
            webhook,
            account_id,
            spool_dir,
            listen_addr,
            api_login,
            api_key,
            retry_max,
            recordings,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = [
            ("AMI_USERNAME", "kommo"),
            ("AMI_SECRET", "s3cret"),
            ("CONNECTOR_WEBHOOK_URL", "https://voip.example.org/hooks/voip/abc"),
            ("CONNECTOR_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("CONNECTOR_SPOOL_DIR", "/tmp/spool"),
            ("CONNECTOR_API_KEY", "key"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn a_complete_environment_is_read_with_its_defaults() {
        let config = vars(&[]).unwrap();
        assert_eq!(config.ami_addr, "127.0.0.1:5038");
        assert_eq!(config.originate_tech, "PJSIP");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8091");
        assert_eq!(config.webhook.unwrap().0.as_str(), "https://voip.example.org/hooks/voip/abc");
    }

    #[test]
    fn before_the_first_save_the_webhook_may_be_left_out_but_not_half_of_it() {
        let config = vars(&[("CONNECTOR_WEBHOOK_URL", ""), ("CONNECTOR_WEBHOOK_SECRET", "")]).unwrap();
        assert!(config.webhook.is_none());
        assert_eq!(vars(&[("CONNECTOR_WEBHOOK_URL", "")]).unwrap_err().name, "CONNECTOR_WEBHOOK_URL");
        assert_eq!(vars(&[("CONNECTOR_WEBHOOK_SECRET", "")]).unwrap_err().name, "CONNECTOR_WEBHOOK_SECRET");
    }

    #[test]
    fn each_bad_variable_is_named() {
        let cases: [(&[(&str, &str)], &str); 11] = [
            (&[("AMI_USERNAME", "")], "AMI_USERNAME"),
            (&[("AMI_PORT", "99999")], "AMI_PORT"),
            (&[("AMI_SECRET", "a\r\nAction: Originate")], "AMI_SECRET"),
            (&[("CONNECTOR_WEBHOOK_URL", "ftp://x")], "CONNECTOR_WEBHOOK_URL"),
            (&[("CONNECTOR_WEBHOOK_SECRET", "whsec_short")], "CONNECTOR_WEBHOOK_SECRET"),
            (&[("CONNECTOR_LISTEN_ADDR", "nowhere")], "CONNECTOR_LISTEN_ADDR"),
            (&[("CONNECTOR_API_KEY", ""), ("CONNECTOR_API_LOGIN", "x")], "CONNECTOR_API_PASSWORD"),
            (&[("AMI_ORIGINATE_CONTEXT", "a b")], "AMI_ORIGINATE_CONTEXT"),
            (&[("CONNECTOR_RECORDINGS_DIR", "/")], "CONNECTOR_PUBLIC_URL"),
            (&[("CONNECTOR_RECORDINGS_DIR", "/"), ("CONNECTOR_PUBLIC_URL", "pbx:8443")], "CONNECTOR_PUBLIC_URL"),
            (
                &[("CONNECTOR_RECORDINGS_DIR", "/nowhere/at/all"), ("CONNECTOR_PUBLIC_URL", "https://pbx")],
                "CONNECTOR_RECORDINGS_DIR",
            ),
        ];
        for (extra, name) in cases {
            let error = vars(extra).unwrap_err();
            assert_eq!(error.name, name, "{extra:?}: {error}");
        }
        assert!(!vars(&[("AMI_SECRET", "a\nb")]).unwrap_err().to_string().contains("a\nb"));
    }

    #[test]
    fn a_variable_set_without_its_pair_names_the_missing_one_and_why() {
        let cases: [((&str, &str), &str, &str); 6] = [
            (
                ("CONNECTOR_WEBHOOK_SECRET", ""),
                "CONNECTOR_WEBHOOK_SECRET",
                "is not set while CONNECTOR_WEBHOOK_URL is: copy the whsec_ signing secret the widget settings show",
            ),
            (
                ("CONNECTOR_WEBHOOK_URL", ""),
                "CONNECTOR_WEBHOOK_URL",
                "is not set while CONNECTOR_WEBHOOK_SECRET is: copy the webhook URL the widget settings show",
            ),
            (("CONNECTOR_API_LOGIN", "x"), "CONNECTOR_API_PASSWORD", "is not set while CONNECTOR_API_LOGIN is"),
            (("CONNECTOR_API_PASSWORD", "x"), "CONNECTOR_API_LOGIN", "is not set while CONNECTOR_API_PASSWORD is"),
            (
                ("CONNECTOR_RECORDINGS_DIR", "/"),
                "CONNECTOR_PUBLIC_URL",
                "is not set while CONNECTOR_RECORDINGS_DIR is: recordings need a link browsers can open",
            ),
            (
                ("CONNECTOR_PUBLIC_URL", "https://pbx"),
                "CONNECTOR_RECORDINGS_DIR",
                "is not set while CONNECTOR_PUBLIC_URL is",
            ),
        ];
        for (extra, name, problem) in cases {
            let error = vars(&[extra]).unwrap_err();
            assert_eq!((error.name, error.problem.as_str()), (name, problem), "{extra:?}");
        }
        // Neither of a pair: the webhook waits, recordings are off.
        let config = vars(&[("CONNECTOR_WEBHOOK_URL", ""), ("CONNECTOR_WEBHOOK_SECRET", "")]).unwrap();
        assert!(config.webhook.is_none() && config.recordings.is_none());
    }
}
