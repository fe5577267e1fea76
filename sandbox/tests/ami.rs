//! The AMI stand-in speaks the protocol: banner, login accepted or refused, `ActionID` echoed, nothing
//! before a login, `Originate` answered and followed by its call's events, `CoreShowChannels`, and a
//! dropped connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sandbox::ami::{AmiStandIn, BANNER, Settings, scenarios};

/// A blocking AMI client (the stand-in's own code is not used to read it).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    fn send(&mut self, lines: &[&str]) {
        let mut text = lines.join("\r\n");
        text.push_str("\r\n\r\n");
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// The next message as (key, value) pairs; empty at the end of the stream.
    fn message(&mut self) -> Vec<(String, String)> {
        let mut message = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return message;
            }
            let line = line.trim_end();
            if line.is_empty() {
                if message.is_empty() {
                    continue;
                }
                return message;
            }
            let (key, value) = line.split_once(": ").unwrap_or((line, ""));
            message.push((key.to_owned(), value.to_owned()));
        }
    }
}

fn get<'a>(message: &'a [(String, String)], key: &str) -> Option<&'a str> {
    message.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn login(client: &mut Client, secret: &str) -> Vec<(String, String)> {
    let banner = client.line();
    assert_eq!(banner, format!("{BANNER}\r\n"));
    client.send(&["Action: Login", "ActionID: 1", "Username: kommo", &format!("Secret: {secret}"), "Events: on"]);
    client.message()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_refused_with_the_action_id_and_the_connection_closed() {
    let ami = AmiStandIn::start("127.0.0.1:0", Settings::default()).await.unwrap();
    let addr = ami.addr();
    tokio::task::spawn_blocking(move || {
        let mut client = Client::connect(addr);
        let reply = login(&mut client, "wrong");
        assert_eq!(get(&reply, "Response"), Some("Error"));
        assert_eq!(get(&reply, "ActionID"), Some("1"));
        assert_eq!(get(&reply, "Message"), Some("Authentication failed"));
        assert!(client.message().is_empty(), "the connection is closed");
    })
    .await
    .unwrap();
    assert_eq!((ami.logins(), ami.refused_logins()), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_but_login_is_answered_before_a_login() {
    let ami = AmiStandIn::start("127.0.0.1:0", Settings::default()).await.unwrap();
    let addr = ami.addr();
    tokio::task::spawn_blocking(move || {
        let mut client = Client::connect(addr);
        client.line();
        client.send(&["Action: Originate", "ActionID: x", "Channel: PJSIP/101", "Exten: 1"]);
        let reply = client.message();
        assert_eq!((get(&reply, "Response"), get(&reply, "ActionID")), (Some("Error"), Some("x")));
    })
    .await
    .unwrap();
    assert!(ami.originates().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_originate_is_answered_then_its_call_is_played_with_the_channel_id_asked_for() {
    let ami = AmiStandIn::start("127.0.0.1:0", Settings::default()).await.unwrap();
    let addr = ami.addr();
    let events = tokio::task::spawn_blocking(move || {
        let mut client = Client::connect(addr);
        let reply = login(&mut client, "sandbox-ami-secret");
        assert_eq!((get(&reply, "Response"), get(&reply, "ActionID")), (Some("Success"), Some("1")));
        assert_eq!(get(&client.message(), "Event"), Some("FullyBooted"));
        client.send(&["Action: Ping", "ActionID: p"]);
        let pong = client.message();
        assert_eq!((get(&pong, "Ping"), get(&pong, "ActionID")), (Some("Pong"), Some("p")));
        client.send(&[
            "Action: Originate",
            "ActionID: o-1",
            "Channel: PJSIP/101",
            "Context: from-internal",
            "Exten: 5511987654321",
            "Priority: 1",
            "CallerID: <5511987654321>",
            "Async: true",
            "ChannelId: call-1",
        ]);
        let reply = client.message();
        assert_eq!((get(&reply, "Response"), get(&reply, "ActionID")), (Some("Success"), Some("o-1")));
        let mut events = Vec::new();
        loop {
            let event = client.message();
            let last = get(&event, "Event") == Some("Cdr");
            events.push(event);
            if last {
                return events;
            }
        }
    })
    .await
    .unwrap();
    let names: Vec<&str> = events.iter().filter_map(|event| get(event, "Event")).collect();
    assert_eq!(
        names,
        [
            "Newchannel",
            "OriginateResponse",
            "Newchannel",
            "DialBegin",
            "DialEnd",
            "BridgeEnter",
            "BridgeEnter",
            "BridgeLeave",
            "Hangup",
            "BridgeLeave",
            "Hangup",
            "Cdr"
        ]
    );
    assert_eq!(get(&events[0], "Uniqueid"), Some("call-1"));
    assert!(events.iter().filter_map(|event| get(event, "Linkedid")).all(|linked| linked == "call-1"));
    assert_eq!(get(&events[1], "ActionID"), Some("o-1"));
    assert_eq!(get(&events[4], "DialStatus"), Some("ANSWER"));
    assert_eq!(get(&events[11], "BillableSeconds"), Some("5"));
    assert_eq!(ami.originates()[0].channel_id.as_deref(), Some("call-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn live_channels_are_listed_and_a_drop_closes_the_session() {
    let ami = AmiStandIn::start("127.0.0.1:0", Settings::default()).await.unwrap();
    let call =
        scenarios::inbound_answered(&ami.ids(), 1_700_000_000.0, "5511987654321", "551130000000", "101", 5.0, 42.0);
    for event in &call.events[..2] {
        ami.emit(event);
    }
    let addr = ami.addr();
    let dropping = ami.clone();
    tokio::task::spawn_blocking(move || {
        let mut client = Client::connect(addr);
        login(&mut client, "sandbox-ami-secret");
        client.message();
        client.send(&["Action: CoreShowChannels", "ActionID: list"]);
        assert_eq!(get(&client.message(), "EventList"), Some("start"));
        let listed: Vec<Vec<(String, String)>> = (0..3).map(|_| client.message()).collect();
        assert_eq!(get(&listed[0], "Event"), Some("CoreShowChannel"));
        assert_eq!(get(&listed[1], "Event"), Some("CoreShowChannel"));
        assert_eq!(get(&listed[2], "Event"), Some("CoreShowChannelsComplete"));
        assert_eq!(get(&listed[2], "ListItems"), Some("2"));
        dropping.drop_connections();
        assert!(client.message().is_empty(), "the connection is closed");
    })
    .await
    .unwrap();
    assert_eq!(ami.live_channels().len(), 2);
}
