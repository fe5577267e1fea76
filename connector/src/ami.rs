//! The Asterisk Manager Interface client: the text protocol (`Key: Value` lines, a blank line ends a
//! message), `Login` with `Events: on`, actions matched to their responses by `ActionID`, a `Ping` every
//! 15 s to notice a dead connection, and reconnection with doubling delays (0.2 s to 10 s).
//!
//! After each login it lists the channels still alive (`CoreShowChannels`) and reports them as
//! [`Feed::Connected`], so the call tracker can end the calls whose `Hangup` was lost while it was away.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Longest line we keep reading before calling the peer broken.
const MAX_LINE: usize = 8192;
/// Most headers in one message.
const MAX_HEADERS: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(15);
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// One AMI message: headers in order (keys may repeat, e.g. `Variable`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message(pub Vec<(String, String)>);

impl Message {
    pub fn action(name: &str) -> Message {
        Message(vec![("Action".to_owned(), name.to_owned())])
    }

    /// Appends a header.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Message {
        self.0.push((key.to_owned(), value.into()));
        self
    }

    /// The first value of `key`, compared case-insensitively as Asterisk does.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, value)| value.as_str())
    }

    /// The wire form. Values never hold line breaks: callers check what comes from outside.
    pub fn to_wire(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.0 {
            debug_assert!(!value.contains(['\r', '\n']), "an AMI header value holds a line break");
            text.push_str(key);
            text.push_str(": ");
            text.push_str(value);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text
    }
}

/// Reads lines and messages off the connection. Unfinished input stays in here, so a read abandoned in a
/// `select!` loses nothing.
struct Reader {
    half: OwnedReadHalf,
    buffer: Vec<u8>,
    partial: Message,
}

impl Reader {
    fn new(half: OwnedReadHalf) -> Reader {
        Reader { half, buffer: Vec::new(), partial: Message::default() }
    }

    async fn fill(&mut self) -> Result<(), AmiError> {
        if self.buffer.len() > MAX_LINE {
            return Err(AmiError::Protocol("a line longer than 8 KiB"));
        }
        let mut chunk = [0u8; 4096];
        let read = self.half.read(&mut chunk).await.map_err(|_| AmiError::Disconnected)?;
        if read == 0 {
            return Err(AmiError::Disconnected);
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    fn take_line(&mut self) -> Option<String> {
        let end = self.buffer.iter().position(|byte| *byte == b'\n')?;
        let line: Vec<u8> = self.buffer.drain(..=end).collect();
        Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
    }

    async fn line(&mut self) -> Result<String, AmiError> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn message(&mut self) -> Result<Message, AmiError> {
        loop {
            while let Some(line) = self.take_line() {
                if line.is_empty() {
                    if !self.partial.0.is_empty() {
                        return Ok(std::mem::take(&mut self.partial));
                    }
                    continue;
                }
                if self.partial.0.len() >= MAX_HEADERS {
                    return Err(AmiError::Protocol("a message with too many headers"));
                }
                let (key, value) = line.split_once(':').unwrap_or((&line, ""));
                self.partial.0.push((key.trim().to_owned(), value.trim().to_owned()));
            }
            self.fill().await?;
        }
    }
}

/// Why an action or a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmiError {
    #[error("not connected to the Asterisk Manager Interface")]
    NotConnected,
    #[error("the AMI connection closed")]
    Disconnected,
    #[error("AMI did not answer in time")]
    Timeout,
    #[error("this is not an Asterisk Manager Interface (banner `{0}`)")]
    NotAmi(String),
    #[error("AMI refused the login: {0}")]
    LoginRefused(String),
    #[error("AMI protocol error: {0}")]
    Protocol(&'static str),
}

/// What the client tells the call tracker.
#[derive(Debug, Clone)]
pub enum Feed {
    /// An event, as received.
    Event(Message),
    /// Logged in (again); `live` are the (`Uniqueid`, `Linkedid`) of the channels alive now.
    Connected { live: Vec<(String, String)> },
}

/// Where and as whom to log in.
#[derive(Clone)]
pub struct Login {
    pub addr: String,
    pub username: String,
    pub secret: SecretString,
}

type Pending = (Message, oneshot::Sender<Result<Message, AmiError>>);

/// A handle to send actions over the current connection.
#[derive(Clone)]
pub struct Ami {
    actions: mpsc::Sender<Pending>,
    connected: watch::Receiver<bool>,
    ids: Arc<AtomicU64>,
}

impl Ami {
    /// A fresh `ActionID`.
    pub fn action_id(&self) -> String {
        format!("kvoip-{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends `action` (which carries its `ActionID`) and waits for its response.
    pub async fn send(&self, action: Message, timeout: Duration) -> Result<Message, AmiError> {
        if !*self.connected.borrow() {
            return Err(AmiError::NotConnected);
        }
        let (reply, response) = oneshot::channel();
        self.actions.send((action, reply)).await.map_err(|_| AmiError::NotConnected)?;
        match tokio::time::timeout(timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AmiError::Disconnected),
            Err(_) => Err(AmiError::Timeout),
        }
    }

    /// Whether a session is logged in, waiting up to `patience` for one (a reconnection under way).
    pub async fn wait_connected(&self, patience: Duration) -> bool {
        let mut connected = self.connected.clone();
        tokio::time::timeout(patience, connected.wait_for(|up| *up)).await.is_ok_and(|up| up.is_ok())
    }
}

/// Starts the client: it connects, logs in, feeds events to `feed` and reconnects until `shutdown`.
pub fn spawn(login: Login, feed: mpsc::Sender<Feed>, shutdown: CancellationToken) -> Ami {
    let (actions, mut queue) = mpsc::channel::<Pending>(64);
    let (connected_tx, connected) = watch::channel(false);
    let ids = Arc::new(AtomicU64::new(1));
    let ami = Ami { actions, connected, ids: ids.clone() };
    tokio::spawn(async move {
        let mut delay = FIRST_RETRY;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = session(&login, &feed, &mut queue, &connected_tx, &ids) => outcome,
            };
            connected_tx.send_replace(false);
            match outcome {
                Ok(true) => {
                    tracing::warn!("the AMI connection closed; reconnecting");
                    delay = FIRST_RETRY;
                }
                Ok(false) => return,
                Err(error @ AmiError::LoginRefused(_)) => tracing::error!(%error, "check AMI_USERNAME and AMI_SECRET"),
                Err(error) => tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "AMI unavailable"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(LAST_RETRY);
        }
    });
    ami
}

/// One connection: `Ok(true)` when it was logged in and then closed, `Ok(false)` when the feed is gone.
async fn session(
    login: &Login,
    feed: &mpsc::Sender<Feed>,
    queue: &mut mpsc::Receiver<Pending>,
    connected: &watch::Sender<bool>,
    ids: &AtomicU64,
) -> Result<bool, AmiError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&login.addr))
        .await
        .map_err(|_| AmiError::Timeout)?
        .map_err(|_| AmiError::NotConnected)?;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = Reader::new(read);
    let next_id = || format!("kvoip-{}", ids.fetch_add(1, Ordering::Relaxed));

    // The banner, the login and the list of live channels, within one deadline.
    let mut held = Vec::new();
    let live = tokio::time::timeout(LOGIN_TIMEOUT, async {
        let banner = reader.line().await?;
        if !banner.starts_with("Asterisk Call Manager/") {
            return Err(AmiError::NotAmi(banner.chars().take(64).collect()));
        }
        let login_id = next_id();
        let action = Message::action("Login")
            .with("ActionID", login_id.clone())
            .with("Username", login.username.clone())
            .with("Secret", login.secret.expose_secret())
            .with("Events", "on");
        write.write_all(action.to_wire().as_bytes()).await.map_err(|_| AmiError::Disconnected)?;
        loop {
            let message = reader.message().await?;
            if message.get("ActionID") == Some(login_id.as_str()) && message.get("Response").is_some() {
                if message.get("Response") != Some("Success") {
                    let reason = message.get("Message").unwrap_or("no reason given");
                    return Err(AmiError::LoginRefused(reason.chars().take(128).collect()));
                }
                break;
            }
        }
        let list_id = next_id();
        let action = Message::action("CoreShowChannels").with("ActionID", list_id.clone());
        write.write_all(action.to_wire().as_bytes()).await.map_err(|_| AmiError::Disconnected)?;
        let mut live = Vec::new();
        loop {
            let message = reader.message().await?;
            if message.get("ActionID") != Some(list_id.as_str()) {
                if message.get("Event").is_some() {
                    held.push(message);
                }
                continue;
            }
            match message.get("Event") {
                Some("CoreShowChannel") => {
                    if let Some(unique) = message.get("Uniqueid") {
                        let linked = message.get("Linkedid").unwrap_or(unique);
                        live.push((unique.to_owned(), linked.to_owned()));
                    }
                }
                Some("CoreShowChannelsComplete") => return Ok(live),
                _ if message.get("Response") == Some("Error") => return Ok(live),
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| AmiError::Timeout)??;
    tracing::info!(channels = live.len(), "logged in to AMI");
    if feed.send(Feed::Connected { live }).await.is_err() {
        return Ok(false);
    }
    for event in held {
        if feed.send(Feed::Event(event)).await.is_err() {
            return Ok(false);
        }
    }
    connected.send_replace(true);

    let mut pending: HashMap<String, oneshot::Sender<Result<Message, AmiError>>> = HashMap::new();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut unanswered_ping: Option<String> = None;
    loop {
        tokio::select! {
            message = reader.message() => {
                let Ok(message) = message else { return Ok(true) };
                if message.get("Response").is_some() {
                    let id = message.get("ActionID").unwrap_or_default().to_owned();
                    if unanswered_ping.as_deref() == Some(id.as_str()) {
                        unanswered_ping = None;
                    } else if let Some(reply) = pending.remove(&id) {
                        let _ = reply.send(Ok(message));
                    }
                } else if message.get("Event").is_some() && feed.send(Feed::Event(message)).await.is_err() {
                    return Ok(false);
                }
            }
            action = queue.recv() => {
                let Some((action, reply)) = action else { return Ok(false) };
                let id = action.get("ActionID").unwrap_or_default().to_owned();
                if write.write_all(action.to_wire().as_bytes()).await.is_err() {
                    let _ = reply.send(Err(AmiError::Disconnected));
                    return Ok(true);
                }
                pending.retain(|_, waiting| !waiting.is_closed());
                pending.insert(id, reply);
            }
            _ = ping.tick() => {
                if unanswered_ping.is_some() {
                    tracing::warn!("AMI did not answer a ping within 15 s");
                    return Ok(true);
                }
                let id = next_id();
                let action = Message::action("Ping").with("ActionID", id.clone());
                if write.write_all(action.to_wire().as_bytes()).await.is_err() {
                    return Ok(true);
                }
                unanswered_ping = Some(id);
            }
        }
    }
}
