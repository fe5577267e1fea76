//! An Asterisk Manager Interface stand-in: a TCP server speaking AMI's text protocol (banner, `Login`,
//! `ActionID` echoed on every response, `Ping`, `CoreShowChannels`, `Originate`, `Logoff`) that replays the
//! event sequences of real calls ([`scenarios`]) to every logged-in session, and can drop its connections
//! mid-call.
//!
//! Like Asterisk, it keeps no backlog: an event played while no session is connected is lost. It tracks the
//! channels its own events create and hang up, so `CoreShowChannels` lists the channels still alive.

pub mod control;
pub mod scenarios;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

/// The banner a session receives first.
pub const BANNER: &str = "Asterisk Call Manager/6.0.0";
/// Longest line a session accepts from a client.
const MAX_LINE: usize = 4096;
/// Most headers in one client message.
const MAX_HEADERS: usize = 64;

/// One AMI message: `Key: Value` lines in order (keys may repeat, e.g. `Variable`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message(pub Vec<(String, String)>);

impl Message {
    pub fn new() -> Message {
        Message(Vec::new())
    }

    /// Appends a header.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Message {
        self.0.push((key.to_owned(), value.into()));
        self
    }

    /// The first value of `key` (case-insensitive, as Asterisk reads keys).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, value)| value.as_str())
    }

    /// The wire form: `Key: Value\r\n` lines and a blank line.
    pub fn to_wire(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.0 {
            text.push_str(key);
            text.push_str(": ");
            text.push_str(value);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text
    }
}

/// Who may log in, and how originated calls play.
#[derive(Debug, Clone)]
pub struct Settings {
    pub username: String,
    pub secret: String,
    /// Seconds the originated call's number talks once answered; `None`: the number never answers.
    pub originate_talk_secs: Option<u32>,
    /// Pause between two events of an originated call.
    pub originate_step: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            username: "kommo".to_owned(),
            secret: "sandbox-ami-secret".to_owned(),
            originate_talk_secs: Some(5),
            originate_step: Duration::from_millis(20),
        }
    }
}

/// An `Originate` action as the stand-in received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originate {
    pub action_id: String,
    pub channel: String,
    pub context: String,
    pub exten: String,
    pub priority: String,
    pub caller_id: String,
    pub is_async: bool,
    /// The `ChannelId` asked for (the originated channel's `Uniqueid`), when one was given.
    pub channel_id: Option<String>,
    pub variables: Vec<String>,
}

/// A step of a replay.
#[derive(Debug, Clone)]
pub enum Step {
    Event(Message),
    Pause(Duration),
    /// Closes every session's connection (the PBX keeps running, the call goes on).
    Drop,
}

struct Shared {
    settings: Settings,
    events: broadcast::Sender<Arc<String>>,
    /// Bumped to close every session.
    kill: watch::Sender<u64>,
    /// Live channels: `Uniqueid` → (`Channel`, `Linkedid`).
    live: Mutex<BTreeMap<String, (String, String)>>,
    logins: watch::Sender<u64>,
    refused_logins: Mutex<u64>,
    originates: Mutex<Vec<Originate>>,
    ids: Mutex<scenarios::Ids>,
}

/// A running AMI stand-in; dropping it stops accepting (sessions end when their peer goes).
#[derive(Clone)]
pub struct AmiStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl AmiStandIn {
    /// Listens on `addr` (port 0 picks a free one) and serves sessions in the background.
    pub async fn start(addr: &str, settings: Settings) -> std::io::Result<AmiStandIn> {
        let listener = TcpListener::bind(addr).await?;
        Ok(AmiStandIn::serve(listener, settings))
    }

    /// Serves sessions from a bound listener in the background.
    pub fn serve(listener: TcpListener, settings: Settings) -> AmiStandIn {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            settings,
            events,
            kill: watch::channel(0).0,
            live: Mutex::new(BTreeMap::new()),
            logins: watch::channel(0).0,
            refused_logins: Mutex::new(0),
            originates: Mutex::new(Vec::new()),
            // Asterisk's ids start with the unix time: a restarted stand-in never repeats one a connector
            // (or the server) has seen.
            ids: Mutex::new(scenarios::Ids::new(scenarios::now() as i64)),
        });
        let accepting = Arc::downgrade(&shared);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let Some(shared) = accepting.upgrade() else { return };
                tokio::spawn(session(shared, stream));
            }
        });
        AmiStandIn { shared, addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Successful logins so far.
    pub fn logins(&self) -> u64 {
        *self.shared.logins.borrow()
    }

    /// The sessions logged in now (each receives the events played).
    pub fn sessions(&self) -> usize {
        self.shared.events.receiver_count()
    }

    pub fn refused_logins(&self) -> u64 {
        *self.shared.refused_logins.lock().unwrap()
    }

    /// Waits until at least `count` logins succeeded (at most `timeout`); whether they did.
    pub async fn wait_for_logins(&self, count: u64, timeout: Duration) -> bool {
        let mut logins = self.shared.logins.subscribe();
        tokio::time::timeout(timeout, logins.wait_for(|seen| *seen >= count)).await.is_ok_and(|seen| seen.is_ok())
    }

    /// Every `Originate` received, in order.
    pub fn originates(&self) -> Vec<Originate> {
        self.shared.originates.lock().unwrap().clone()
    }

    /// Fresh ids for a scenario (unique across this stand-in's calls).
    pub fn ids(&self) -> scenarios::Ids {
        self.shared.ids.lock().unwrap().fork()
    }

    /// Sends one event to every logged-in session (lost when none is).
    pub fn emit(&self, event: &Message) {
        emit(&self.shared, event);
    }

    /// Closes every session's connection.
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|generation| *generation += 1);
    }

    /// Plays steps in order.
    pub async fn play(&self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Event(event) => self.emit(&event),
                Step::Pause(pause) => tokio::time::sleep(pause).await,
                Step::Drop => self.drop_connections(),
            }
        }
    }

    /// Plays events with `pause` between them.
    pub async fn play_events(&self, events: Vec<Message>, pause: Duration) {
        for event in events {
            self.emit(&event);
            tokio::time::sleep(pause).await;
        }
    }

    /// The channels alive now: (`Uniqueid`, `Channel`, `Linkedid`).
    pub fn live_channels(&self) -> Vec<(String, String, String)> {
        let live = self.shared.live.lock().unwrap();
        live.iter().map(|(unique, (channel, linked))| (unique.clone(), channel.clone(), linked.clone())).collect()
    }
}

fn emit(shared: &Shared, event: &Message) {
    if let (Some(unique), Some(channel)) = (event.get("Uniqueid"), event.get("Channel")) {
        let mut live = shared.live.lock().unwrap();
        match event.get("Event") {
            Some("Newchannel") => {
                live.insert(
                    unique.to_owned(),
                    (channel.to_owned(), event.get("Linkedid").unwrap_or(unique).to_owned()),
                );
            }
            Some("Hangup") => {
                live.remove(unique);
            }
            _ => {}
        }
    }
    let _ = shared.events.send(Arc::new(event.to_wire()));
}

/// Reads messages off a connection. What was read of an unfinished message stays here, so a read
/// abandoned in a `select!` loses nothing.
struct Reader {
    half: OwnedReadHalf,
    buffer: Vec<u8>,
    partial: Message,
}

impl Reader {
    /// The next message; `None` at the end of the stream or on a message past the bounds.
    async fn message(&mut self) -> Option<Message> {
        loop {
            while let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\r', '\n']);
                if text.is_empty() {
                    if self.partial.0.is_empty() {
                        continue;
                    }
                    return Some(std::mem::take(&mut self.partial));
                }
                if self.partial.0.len() >= MAX_HEADERS {
                    return None;
                }
                let (key, value) = text.split_once(':').unwrap_or((text, ""));
                self.partial.0.push((key.trim().to_owned(), value.trim_start().to_owned()));
            }
            if self.buffer.len() > MAX_LINE {
                return None;
            }
            self.half.readable().await.ok()?;
            let mut chunk = [0u8; 4096];
            match self.half.try_read(&mut chunk) {
                Ok(0) => return None,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
    }
}

/// Writes all of `bytes` (the stand-in's tokio has no `io-util`).
async fn write_all(half: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        half.writable().await?;
        match half.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn response(action: &Message, ok: bool, text: &str) -> Message {
    let mut reply = Message::new().with("Response", if ok { "Success" } else { "Error" });
    if let Some(id) = action.get("ActionID") {
        reply = reply.with("ActionID", id);
    }
    reply.with("Message", text)
}

async fn session(shared: Arc<Shared>, stream: TcpStream) {
    let (read, write) = stream.into_split();
    let mut reader = Reader { half: read, buffer: Vec::new(), partial: Message::new() };
    let mut kill = shared.kill.subscribe();
    kill.mark_unchanged();
    if write_all(&write, format!("{BANNER}\r\n").as_bytes()).await.is_err() {
        return;
    }
    let mut events: Option<broadcast::Receiver<Arc<String>>> = None;
    loop {
        let outgoing = async {
            match &mut events {
                Some(receiver) => receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        // Biased: a drop asked before an event is played wins, so that event is lost as with Asterisk.
        tokio::select! {
            biased;
            _ = kill.changed() => return,
            event = outgoing => match event {
                Ok(text) => {
                    if write_all(&write, text.as_bytes()).await.is_err() {
                        return;
                    }
                }
                // A slow client misses events, as with Asterisk; a closed sender ends the session.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            action = reader.message() => {
                let Some(action) = action else { return };
                let name = action.get("Action").unwrap_or_default().to_ascii_lowercase();
                let mut replies = Vec::new();
                let mut close = false;
                match name.as_str() {
                    "login" => {
                        let accepted = action.get("Username") == Some(shared.settings.username.as_str())
                            && action.get("Secret") == Some(shared.settings.secret.as_str());
                        if accepted {
                            replies.push(response(&action, true, "Authentication accepted"));
                            let wants_events = !action.get("Events").is_some_and(|events| events.eq_ignore_ascii_case("off"));
                            if wants_events {
                                events = Some(shared.events.subscribe());
                            }
                            replies.push(Message::new().with("Event", "FullyBooted").with("Privilege", "system,all").with("Status", "Fully Booted"));
                            shared.logins.send_modify(|count| *count += 1);
                        } else {
                            *shared.refused_logins.lock().unwrap() += 1;
                            replies.push(response(&action, false, "Authentication failed"));
                            close = true;
                        }
                    }
                    _ if events.is_none() => replies.push(response(&action, false, "Permission denied")),
                    "ping" => replies.push(response(&action, true, "").with("Ping", "Pong")),
                    "logoff" => {
                        replies.push(Message::new().with("Response", "Goodbye").with("ActionID", action.get("ActionID").unwrap_or_default()).with("Message", "Thanks for all the fish."));
                        close = true;
                    }
                    "coreshowchannels" => {
                        let id = action.get("ActionID").unwrap_or_default().to_owned();
                        replies.push(response(&action, true, "Channels will follow").with("EventList", "start"));
                        let live: Vec<(String, (String, String))> =
                            shared.live.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        for (unique, (channel, linked)) in &live {
                            replies.push(
                                Message::new()
                                    .with("Event", "CoreShowChannel")
                                    .with("ActionID", id.clone())
                                    .with("Channel", channel.clone())
                                    .with("Uniqueid", unique.clone())
                                    .with("Linkedid", linked.clone()),
                            );
                        }
                        replies.push(
                            Message::new()
                                .with("Event", "CoreShowChannelsComplete")
                                .with("ActionID", id)
                                .with("EventList", "Complete")
                                .with("ListItems", live.len().to_string()),
                        );
                    }
                    "originate" => {
                        let originate = Originate {
                            action_id: action.get("ActionID").unwrap_or_default().to_owned(),
                            channel: action.get("Channel").unwrap_or_default().to_owned(),
                            context: action.get("Context").unwrap_or_default().to_owned(),
                            exten: action.get("Exten").unwrap_or_default().to_owned(),
                            priority: action.get("Priority").unwrap_or_default().to_owned(),
                            caller_id: action.get("CallerID").unwrap_or_default().to_owned(),
                            is_async: action.get("Async").is_some_and(|value| value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("yes")),
                            channel_id: action.get("ChannelId").map(str::to_owned),
                            variables: action.0.iter().filter(|(key, _)| key.eq_ignore_ascii_case("Variable")).map(|(_, value)| value.clone()).collect(),
                        };
                        if originate.channel.is_empty() || originate.exten.is_empty() {
                            replies.push(response(&action, false, "Channel and Exten are required"));
                        } else {
                            replies.push(response(&action, true, "Originate successfully queued"));
                            shared.originates.lock().unwrap().push(originate.clone());
                            tokio::spawn(play_originate(shared.clone(), originate));
                        }
                    }
                    _ => replies.push(response(&action, false, "Invalid/unknown command")),
                }
                for reply in replies {
                    if write_all(&write, reply.to_wire().as_bytes()).await.is_err() {
                        return;
                    }
                }
                if close {
                    return;
                }
            }
        }
    }
}

/// The events of an originated call: the extension rings and answers, then the number is dialled.
async fn play_originate(shared: Arc<Shared>, originate: Originate) {
    let ids = shared.ids.lock().unwrap().fork();
    let events = scenarios::originated(&ids, &originate, shared.settings.originate_talk_secs);
    for event in events {
        tokio::time::sleep(shared.settings.originate_step).await;
        emit(&shared, &event);
    }
}
