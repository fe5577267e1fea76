//! The durable spool and its delivery: every event is written to a file in the spool directory and
//! fsynced (file, then directory) before it counts as queued; `deliver` posts the files in order to the
//! webhook, signed, and removes each only after a 2xx. A 4xx other than 408 and 429 will never succeed and
//! is dropped with a log line; anything else (5xx, 408, 429, no answer) is retried with doubling delays up
//! to the configured maximum. The `webhook-id` is stored with the event, so every attempt (and an attempt
//! after a restart) is the same delivery to the server, which stores it once.
//!
//! File format: `<20-digit sequence>.event`, first line the `webhook-id`, then the JSON body.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use webhook_signing::WebhookSecret;

const EXTENSION: &str = "event";
const FIRST_RETRY: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The spool directory.
pub struct Spool {
    dir: PathBuf,
    next: Mutex<u64>,
    wake: Notify,
}

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub path: PathBuf,
    pub webhook_id: String,
    pub body: Vec<u8>,
}

impl Spool {
    /// Opens (creating) the directory, removes half-written files and continues the sequence.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut last = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|ext| ext.to_str()) {
                Some("tmp") => std::fs::remove_file(&path)?,
                Some(EXTENSION) => {
                    let seq = path.file_stem().and_then(|stem| stem.to_str()).and_then(|stem| stem.parse::<u64>().ok());
                    last = last.max(seq.unwrap_or(0));
                }
                _ => {}
            }
        }
        Ok(Spool { dir: dir.to_owned(), next: Mutex::new(last + 1), wake: Notify::new() })
    }

    /// Writes one event durably; when this returns `Ok` the event survives a crash or power loss.
    pub fn push(&self, webhook_id: &str, body: &[u8]) -> std::io::Result<()> {
        let mut next = self.next.lock().expect("the spool's counter lock");
        let seq = *next;
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let done = self.dir.join(format!("{seq:020}.{EXTENSION}"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(webhook_id.as_bytes())?;
        file.write_all(b"\n")?;
        file.write_all(body)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &done)?;
        sync_dir(&self.dir)?;
        *next += 1;
        drop(next);
        self.wake.notify_one();
        Ok(())
    }

    /// The queued events, oldest first.
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == EXTENSION))
            .collect();
        paths.sort();
        Ok(paths)
    }

    fn read(path: &Path) -> std::io::Result<Spooled> {
        let bytes = std::fs::read(path)?;
        let split = bytes.iter().position(|byte| *byte == b'\n').unwrap_or(bytes.len());
        let webhook_id = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let body = bytes.get(split + 1..).unwrap_or_default().to_vec();
        Ok(Spooled { path: path.to_owned(), webhook_id, body })
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Refused for good (a 4xx other than 408/429).
    Refused(u16),
    Retry,
}

/// Where and how events are posted.
pub struct Webhook {
    pub url: reqwest::Url,
    pub secret: WebhookSecret,
    pub retry_max: Duration,
}

/// Delivers the spool until `shutdown`, one event at a time in order.
pub async fn deliver(spool: &Spool, webhook: &Webhook, shutdown: &CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds");
    let mut delay = FIRST_RETRY;
    loop {
        let pending = match spool.pending() {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "cannot read the spool directory");
                Vec::new()
            }
        };
        if pending.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = spool.wake.notified() => continue,
                // The directory listing failed, or another process wrote into it.
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        }
        for path in pending {
            let event = match Spool::read(&path) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "cannot read a spooled event");
                    continue;
                }
            };
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                let outcome = attempt(&client, webhook, &event).await;
                match outcome {
                    Outcome::Delivered | Outcome::Refused(_) => {
                        if let Outcome::Refused(status) = outcome {
                            tracing::warn!(webhook.id = %event.webhook_id, status, "the server refused an event for good; dropped");
                        }
                        if let Err(error) = std::fs::remove_file(&event.path) {
                            tracing::error!(%error, "cannot remove a delivered event from the spool");
                        }
                        delay = FIRST_RETRY;
                        break;
                    }
                    Outcome::Retry => {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(webhook.retry_max);
                    }
                }
            }
        }
    }
}

async fn attempt(client: &reqwest::Client, webhook: &Webhook, event: &Spooled) -> Outcome {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let signature = webhook.secret.sign(&event.webhook_id, timestamp, &event.body);
    let sent = client
        .post(webhook.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &event.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(event.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) => {
            let status = response.status().as_u16();
            // 401, 403 and 404 say the connector is set up wrong (a secret or URL from before a rotation, a
            // mistyped one), not that the event is: it waits, logged, until the admin mends the environment.
            if (400..500).contains(&status) && ![401, 403, 404, 408, 429].contains(&status) {
                Outcome::Refused(status)
            } else if matches!(status, 401 | 403 | 404) {
                tracing::error!(
                    webhook.id = %event.webhook_id,
                    status,
                    "the server does not take this connector's events: check CONNECTOR_WEBHOOK_URL and \
                     CONNECTOR_WEBHOOK_SECRET against the widget's settings; retrying"
                );
                Outcome::Retry
            } else {
                tracing::warn!(webhook.id = %event.webhook_id, status, "the server did not take an event; retrying");
                Outcome::Retry
            }
        }
        Err(error) => {
            tracing::warn!(webhook.id = %event.webhook_id, error = %error.without_url(), "cannot reach the server; retrying");
            Outcome::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_events_survive_reopening_in_order_and_half_written_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.push("a", b"{\"n\":1}").unwrap();
        spool.push("b", b"{\"n\":2}").unwrap();
        std::fs::write(dir.path().join("00000000000000000009.tmp"), b"half").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        spool.push("c", b"{}").unwrap();
        let ids: Vec<String> =
            spool.pending().unwrap().iter().map(|path| Spool::read(path).unwrap().webhook_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(!dir.path().join("00000000000000000009.tmp").exists());
        assert_eq!(Spool::read(&spool.pending().unwrap()[0]).unwrap().body, b"{\"n\":1}");
    }
}
