//! Attacks on the server's connection and stream limits, through the real listener over real sockets:
//! slow headers, stalled bodies, more connections than allowed, more push streams than allowed.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use server::config::Limits;
use shared::api::paths;
use support::{ACCOUNT, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// A second Kommo account, for the process-wide cap.
const OTHER_ACCOUNT: u64 = 31_000_002;
/// Far longer than any test runs: the limit under test is the only one that can act.
const NEVER: Duration = Duration::from_secs(600);

/// Our server on a loopback port with `limits` adjusted, its local Kommo and its database.
async fn server_with(adjust: impl FnOnce(&mut Limits)) -> (World, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let world = support::world_without_server(&format!("http://{addr}"), ACCOUNT).await;
    let mut config = support::server_config(&world.server, &world.kommo_host, &world.db_url);
    adjust(&mut config.limits);
    tokio::spawn(async move { server::serve_on(listener, config, CancellationToken::new()).await.unwrap() });
    (world, addr)
}

/// What a raw connection saw after it stopped waiting: everything the server sent, and whether the
/// server closed the connection.
struct Seen {
    bytes: Vec<u8>,
    closed: bool,
}

impl Seen {
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Reads from `stream` until the server closes it or `within` passes.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Seen {
    let deadline = Instant::now() + within;
    let mut seen = Seen { bytes: Vec::new(), closed: false };
    let mut buf = [0u8; 4096];
    while let Ok(read) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        match read {
            Ok(0) | Err(_) => {
                seen.closed = true;
                break;
            }
            Ok(n) => seen.bytes.extend_from_slice(&buf[..n]),
        }
    }
    seen
}

/// Sends `bytes` one at a time, one per `gap`, while watching for the server's answer or close; stops
/// at the first sign of either. Returns what was seen and how many bytes went out.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> (Seen, usize) {
    for (sent, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return (Seen { bytes: Vec::new(), closed: true }, sent);
        }
        let seen = read_until_closed(stream, gap).await;
        if seen.closed || !seen.bytes.is_empty() {
            // Whatever the server answered, it then closes: collect the rest.
            let rest = read_until_closed(stream, Duration::from_secs(10)).await;
            let bytes = [seen.bytes, rest.bytes].concat();
            return (Seen { bytes, closed: seen.closed || rest.closed }, sent + 1);
        }
    }
    (Seen { bytes: Vec::new(), closed: false }, bytes.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_disconnected_at_the_header_timeout_while_others_are_served() {
    let (world, addr) = server_with(|limits| limits.header_read_timeout = Duration::from_secs(2)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let slowloris = tokio::spawn(async move {
        let header = [b'a'; 30];
        trickle(&mut slow, &header, Duration::from_secs(1)).await
    });
    // Meanwhile, on another connection, a normal request is answered.
    let started = Instant::now();
    let health = world.http.get(format!("{}/health", world.server)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!slowloris.is_finished(), "the slow client was still being waited on");
    let (seen, sent) = slowloris.await.unwrap();
    assert!(seen.closed, "the server closed the slow connection");
    assert!(sent < 30, "closed before the slow client finished its header ({sent} bytes sent)");
    assert!(started.elapsed() >= Duration::from_secs(1), "it was given time first");
    assert!(!String::from_utf8_lossy(&seen.bytes).contains("200 OK"), "the request was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_request_is_closed_at_the_header_timeout() {
    let (_world, addr) = server_with(|limits| limits.header_read_timeout = Duration::from_secs(2)).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let seen = read_until_closed(&mut idle, Duration::from_secs(30)).await;
    assert!(seen.closed, "an idle connection does not hold a connection slot forever");
}

/// A webhook delivery whose body announces 64 bytes and then arrives one byte per `gap`.
async fn stalled_body(addr: SocketAddr, gap: Duration) -> (Seen, usize) {
    let head = "POST /hooks/voip/some-hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 64\r\n\r\n";
    stalled_request(addr, head, gap).await
}

/// A request whose `head` (ending in its blank line, with `Content-Length: 64`) is sent at once and its
/// body a byte every `gap`.
async fn stalled_request(addr: SocketAddr, head: &str, gap: Duration) -> (Seen, usize) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    trickle(&mut stream, &[b' '; 64], gap).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_longer_than_the_body_timeout_is_cut() {
    let (_world, addr) = server_with(|limits| {
        limits.body_read_timeout = Duration::from_secs(1);
        limits.request_timeout = NEVER;
    })
    .await;
    let (seen, sent) = stalled_body(addr, Duration::from_secs(3)).await;
    assert!(sent < 64, "cut before the body was complete ({sent} bytes sent)");
    // The body extractor fails, and the handler answers as for any unreadable body.
    assert_eq!(seen.status(), Some(400), "{}", String::from_utf8_lossy(&seen.bytes));
    assert!(seen.closed, "and the connection closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickling_under_the_body_timeout_is_cut_at_the_request_timeout_with_408() {
    let (_world, addr) = server_with(|limits| {
        limits.body_read_timeout = NEVER;
        limits.request_timeout = Duration::from_secs(3);
    })
    .await;
    let (seen, sent) = stalled_body(addr, Duration::from_millis(500)).await;
    assert!(sent < 64, "cut before the body was complete ({sent} bytes sent)");
    assert_eq!(seen.status(), Some(408), "{}", String::from_utf8_lossy(&seen.bytes));
    assert!(String::from_utf8_lossy(&seen.bytes).contains(r#""code":"request_timeout""#), "the JSON envelope");
    assert!(seen.closed, "and the connection closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_request_cut_at_the_request_timeout_is_a_408_the_kommo_page_can_read() {
    let (world, addr) = server_with(|limits| {
        limits.body_read_timeout = NEVER;
        limits.request_timeout = Duration::from_secs(3);
    })
    .await;
    world.install(ACCOUNT).await;
    let token = world.token_as(ACCOUNT, support::ADMIN, Some(true)).await;
    let head = format!(
        "PUT /widget/v1/settings HTTP/1.1\r\nHost: x\r\nOrigin: https://acme.kommo.com\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 64\r\n\r\n"
    );
    let (seen, _) = stalled_request(addr, &head, Duration::from_millis(500)).await;
    let text = String::from_utf8_lossy(&seen.bytes).to_ascii_lowercase();
    assert_eq!(seen.status(), Some(408), "{text}");
    assert!(text.contains("access-control-allow-origin: https://acme.kommo.com"), "CORS headers on the 408: {text}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");
}

/// A keep-alive connection on which one request was answered: the server holds it open.
async fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_connection_waits_until_another_closes() {
    let (_world, addr) = server_with(|limits| {
        limits.max_connections = 2;
        limits.header_read_timeout = NEVER;
    })
    .await;
    let first = served_connection(addr).await;
    let _second = served_connection(addr).await;
    let mut third = TcpStream::connect(addr).await.expect("the kernel still completes the handshake");
    third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let waiting = read_until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(waiting.bytes.is_empty() && !waiting.closed, "not served while two connections are open");
    drop(first);
    let served = read_until_closed(&mut third, Duration::from_secs(30)).await;
    assert_eq!(served.status(), Some(200), "served once one closed");
}

/// A fresh push ticket for `user` of `account`, through a token the local Kommo signed.
async fn ticket(world: &World, account: u64, user: u64) -> Result<String, (StatusCode, Option<u64>)> {
    let token = world.token_as(account, user, Some(false)).await;
    let response = world
        .http
        .post(format!("{}{}", world.server, paths::PUSH_TICKET))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        return Err((status, retry_after(&response)));
    }
    let reply: Value = response.json().await.unwrap();
    Ok(reply["ticket"].as_str().unwrap().to_owned())
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response.headers().get("retry-after")?.to_str().ok()?.parse().ok()
}

/// Opens the push stream with `ticket`; an open stream has sent its first comment.
async fn stream(world: &World, ticket: &str) -> Result<reqwest::Response, (StatusCode, Option<u64>)> {
    let url = format!("{}{}?ticket={ticket}", world.server, paths::PUSH_EVENTS);
    let mut response = world.http.get(url).send().await.unwrap();
    if response.status() != StatusCode::OK {
        return Err((response.status(), retry_after(&response)));
    }
    let hello = timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap();
    assert!(hello.is_some_and(|hello| hello.starts_with(b":")), "the stream greets");
    Ok(response)
}

/// A ticket and a stream for `user`, both of which must succeed.
async fn open(world: &World, account: u64, user: u64) -> reqwest::Response {
    let ticket = ticket(world, account, user).await.expect("a ticket");
    stream(world, &ticket).await.expect("a stream")
}

fn assert_too_many(refusal: Result<impl Sized, (StatusCode, Option<u64>)>, what: &str) {
    let Err((status, retry_after)) = refusal else { panic!("{what}: not refused") };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{what}");
    assert!(retry_after.is_some_and(|seconds| seconds >= 1), "{what}: Retry-After in seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_streams_are_capped_per_user_per_account_and_in_total_and_a_closed_stream_frees_its_slot() {
    let (world, _) = server_with(|limits| {
        limits.push_streams_per_user = 2;
        limits.push_streams_per_account = 3;
        limits.push_streams_total = 4;
    })
    .await;
    world.install(ACCOUNT).await;
    world.kommo_control("/sandbox/kommo/accounts", json!({"id": OTHER_ACCOUNT, "subdomain": "other"})).await;
    world.install(OTHER_ACCOUNT).await;
    let (alice, bob, carol, dave, erin) = (11, 12, 13, 21, 22);

    // Alice takes three tickets while she has room, then opens two streams: the third is refused.
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(ticket(&world, ACCOUNT, alice).await.expect("room for a ticket"));
    }
    let alice_first = stream(&world, &tickets[0]).await.unwrap();
    let _alice_second = stream(&world, &tickets[1]).await.unwrap();
    assert_too_many(stream(&world, &tickets[2]).await, "alice's third stream");
    assert_too_many(ticket(&world, ACCOUNT, alice).await, "alice's next ticket");

    // Bob, of the same account, still gets one; then the account is full for Carol.
    let _bob = open(&world, ACCOUNT, bob).await;
    assert_too_many(ticket(&world, ACCOUNT, carol).await, "carol, past the account's cap");

    // The other account's Dave takes the last slot of the process; Erin is refused.
    let _dave = open(&world, OTHER_ACCOUNT, dave).await;
    assert_too_many(ticket(&world, OTHER_ACCOUNT, erin).await, "erin, past the total cap");

    // Alice closes a stream: its slot is freed (the server notices the closed connection) and hers again.
    drop(alice_first);
    let deadline = Instant::now() + Duration::from_secs(30);
    let ticket = loop {
        match ticket(&world, ACCOUNT, alice).await {
            Ok(ticket) => break ticket,
            Err(refusal) => assert!(Instant::now() < deadline, "the slot was never freed: {refusal:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stream(&world, &ticket).await.expect("alice streams again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stream_ends_after_its_lifetime_and_frees_its_slot() {
    let (world, _) = server_with(|limits| {
        limits.push_streams_per_user = 1;
        limits.push_stream_lifetime = Duration::from_secs(2);
    })
    .await;
    world.install(ACCOUNT).await;
    let mut first = open(&world, ACCOUNT, 11).await;
    let opened = Instant::now();
    let ended = timeout(Duration::from_secs(30), async {
        while first.chunk().await.expect("the stream ends cleanly").is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the server ended the stream");
    assert!(opened.elapsed() >= Duration::from_secs(1), "not before most of its lifetime");
    // The user reconnects with a fresh ticket, as the widget does.
    let _again = open(&world, ACCOUNT, 11).await;
}
