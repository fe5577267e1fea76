//! The connector against the AMI stand-in (`sandbox::ami`) and a webhook receiver that checks every
//! signature itself (HMAC-SHA256 computed here, not by the connector's code): each call's events, a
//! dropped AMI connection, the server away and the connector restarted, and click-to-call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sandbox::ami::{AmiStandIn, Settings, scenarios};
use sha2::Sha256;
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const CALLER: &str = "5511987654321";
const DID: &str = "551130000000";

/// The webhook receiver: verifies, records, or plays a server that is down.
#[derive(Default)]
struct Receiver {
    events: Mutex<Vec<(String, FromWebhook)>>,
    down: AtomicBool,
    refused_while_down: AtomicUsize,
    /// Events of this call are answered 422, as the server answers an event it can never take.
    refuse_call: Mutex<Option<String>>,
    refused_for_good: AtomicUsize,
    bad_signatures: AtomicUsize,
}

/// The Standard Webhooks check, written out here on purpose.
fn verified(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let (id, timestamp, signatures) =
        (header("webhook-id")?, header("webhook-timestamp")?, header("webhook-signature")?);
    // The signed content joins id, timestamp and body with dots: an id with one is ambiguous, and refused.
    if id.contains('.') {
        return None;
    }
    let sent: i64 = timestamp.parse().ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - sent).abs() > 300 {
        return None;
    }
    let key = STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    signatures.split(' ').any(|signature| signature == expected).then(|| id.to_owned())
}

async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if receiver.down.load(Ordering::SeqCst) {
        receiver.refused_while_down.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Some(id) = verified(&headers, &body) else {
        receiver.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    };
    let event: FromWebhook = serde_json::from_slice(&body).expect("the body is a FromWebhook");
    event.validate().expect("the event passes the server's validation");
    if receiver.refuse_call.lock().unwrap().as_deref() == Some(event.call_id.as_str()) {
        receiver.refused_for_good.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    receiver.events.lock().unwrap().push((id, event));
    StatusCode::OK
}

async fn start_receiver() -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/hooks/voip/h1", axum::routing::post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, addr)
}

impl Receiver {
    fn events(&self) -> Vec<FromWebhook> {
        self.events.lock().unwrap().iter().map(|(_, event)| event.clone()).collect()
    }

    /// Waits until `count` events arrived (10 s at most), then a little longer to catch extra ones.
    async fn wait_for(&self, count: usize) -> Vec<FromWebhook> {
        for _ in 0..200 {
            if self.events.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.events()
    }

    /// The events of one call, in arrival order.
    fn of(&self, call_id: &str) -> Vec<FromWebhook> {
        self.events().into_iter().filter(|event| event.call_id == call_id).collect()
    }

    fn ids(&self) -> Vec<String> {
        self.events.lock().unwrap().iter().map(|(id, _)| id.clone()).collect()
    }
}

struct Rig {
    ami: AmiStandIn,
    receiver: Arc<Receiver>,
    receiver_addr: SocketAddr,
    spool: tempfile::TempDir,
}

async fn rig() -> Rig {
    let ami = AmiStandIn::start("127.0.0.1:0", Settings::default()).await.unwrap();
    let (receiver, receiver_addr) = start_receiver().await;
    Rig { ami, receiver, receiver_addr, spool: tempfile::tempdir().unwrap() }
}

fn config(rig: &Rig, spool: &Path, extra: &[(&str, &str)]) -> connector::Config {
    let mut vars: HashMap<String, String> = [
        ("AMI_HOST", "127.0.0.1".to_owned()),
        ("AMI_PORT", rig.ami.addr().port().to_string()),
        ("AMI_USERNAME", "kommo".to_owned()),
        ("AMI_SECRET", "sandbox-ami-secret".to_owned()),
        ("AMI_CDR_WAIT_MS", "300".to_owned()),
        ("CONNECTOR_WEBHOOK_URL", format!("http://{}/hooks/voip/h1", rig.receiver_addr)),
        ("CONNECTOR_WEBHOOK_SECRET", SECRET.to_owned()),
        ("CONNECTOR_SPOOL_DIR", spool.display().to_string()),
        ("CONNECTOR_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("CONNECTOR_API_KEY", "test-api-key".to_owned()),
        ("CONNECTOR_API_LOGIN", "agent".to_owned()),
        ("CONNECTOR_API_PASSWORD", "agent-password".to_owned()),
        ("CONNECTOR_RETRY_MAX_SECS", "1".to_owned()),
        ("CONNECTOR_ACCOUNT_ID", "pbx-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    connector::Config::from_vars(|name| vars.get(name).cloned()).expect("a valid configuration")
}

async fn start(rig: &Rig, extra: &[(&str, &str)]) -> connector::Running {
    let logins = rig.ami.logins();
    let running = connector::start(config(rig, rig.spool.path(), extra)).await.unwrap();
    assert!(rig.ami.wait_for_logins(logins + 1, Duration::from_secs(5)).await, "the connector logs in");
    running
}

fn past() -> f64 {
    scenarios::now() - 120.0
}

/// (status, type, direction, extension, duration) of each event.
type Seen = (CallStatus, Option<CallEventType>, Option<CallDirection>, Option<String>, Option<u32>);

fn seen(events: &[FromWebhook]) -> Vec<Seen> {
    events.iter().map(|e| (e.status, e.event_type, e.direction, e.extension.clone(), e.duration)).collect()
}

fn ext(text: &str) -> Option<String> {
    Some(text.to_owned())
}

const IN: Option<CallDirection> = Some(CallDirection::Inbound);
const OUT: Option<CallDirection> = Some(CallDirection::Outbound);

#[tokio::test]
async fn an_answered_inbound_call_rings_answers_and_ends_with_the_cdrs_billable_seconds() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let call = scenarios::inbound_answered(&rig.ami.ids(), past(), CALLER, DID, "101", 5.0, 42.0);
    rig.ami.play_events(call.events, Duration::from_millis(5)).await;
    let events = rig.receiver.wait_for(3).await;
    assert_eq!(
        seen(&events),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), IN, ext("101"), None),
            (CallStatus::Answered, Some(CallEventType::Answered), IN, ext("101"), None),
            (CallStatus::Ended, Some(CallEventType::Ended), IN, ext("101"), Some(42)),
        ]
    );
    for event in &events {
        assert_eq!(
            (event.call_id.as_str(), event.from.as_str(), event.to.as_str()),
            (call.linkedid.as_str(), CALLER, DID)
        );
        assert_eq!(event.voip_account_id, "pbx-1");
    }
    assert_eq!(rig.receiver.bad_signatures.load(Ordering::SeqCst), 0);
    running.stop().await;
}

#[tokio::test]
async fn an_unanswered_inbound_call_is_reported_missed_on_the_extension_it_rang() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let call = scenarios::inbound_missed(&rig.ami.ids(), past(), CALLER, DID, "102", 25.0);
    rig.ami.play_events(call.events, Duration::from_millis(5)).await;
    let events = rig.receiver.wait_for(2).await;
    assert_eq!(
        seen(&events),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), IN, ext("102"), None),
            (CallStatus::Missed, Some(CallEventType::Missed), IN, ext("102"), None),
        ]
    );
    running.stop().await;
}

#[tokio::test]
async fn a_transferred_call_ends_on_the_extension_it_was_transferred_to_with_both_talks() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let call = scenarios::transferred(&rig.ami.ids(), past(), CALLER, DID, "101", "102", 20.0, 2.0, 30.0);
    rig.ami.play_events(call.events, Duration::from_millis(5)).await;
    let events = rig.receiver.wait_for(3).await;
    assert_eq!(
        seen(&events),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), IN, ext("101"), None),
            (CallStatus::Answered, Some(CallEventType::Answered), IN, ext("101"), None),
            (CallStatus::Ended, Some(CallEventType::Ended), IN, ext("102"), Some(50)),
        ]
    );
    running.stop().await;
}

#[tokio::test]
async fn an_attended_transfer_ends_on_the_target_and_its_consult_call_is_not_reported() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let call = scenarios::attended_transfer(&rig.ami.ids(), past(), CALLER, DID, "101", "102", 20.0, 30.0);
    rig.ami.play_events(call.events, Duration::from_millis(5)).await;
    let events = rig.receiver.wait_for(3).await;
    // The caller's leg with 101 billed from the answer to the transfer (20 s talk, 2 s ringing 102, 5 s
    // consulting), then 30 s with 102; the consult call itself is extension to extension.
    assert_eq!(
        seen(&events),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), IN, ext("101"), None),
            (CallStatus::Answered, Some(CallEventType::Answered), IN, ext("101"), None),
            (CallStatus::Ended, Some(CallEventType::Ended), IN, ext("102"), Some(57)),
        ]
    );
    assert!(events.iter().all(|event| event.call_id == call.linkedid), "one call: {events:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rig.receiver.events().len(), 3, "nothing of the consult call");
    running.stop().await;
}

#[tokio::test]
async fn without_cdr_manager_the_duration_runs_from_the_answer_to_the_last_hangup() {
    let rig = rig().await;
    let running = start(&rig, &[("AMI_CDR_WAIT_MS", "0")]).await;
    let call = scenarios::transferred(&rig.ami.ids(), past(), CALLER, DID, "101", "102", 20.0, 2.0, 30.0).without_cdr();
    rig.ami.play_events(call.events, Duration::from_millis(5)).await;
    let events = rig.receiver.wait_for(3).await;
    assert_eq!(events.len(), 3);
    // Answered at t0+3, transferred at +20, the second extension answered 2 s later and talked 30 s.
    assert_eq!(
        (events[2].status, events[2].extension.as_deref(), events[2].duration),
        (CallStatus::Ended, Some("102"), Some(52))
    );
    running.stop().await;
}

#[tokio::test]
async fn an_outgoing_call_is_outbound_from_the_extension_to_the_dialled_number() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let ids = rig.ami.ids();
    let answered = scenarios::outgoing(&ids, past(), "103", CALLER, Some(4.0), 61.0);
    let unanswered = scenarios::outgoing(&ids, past(), "104", "5511900000000", None, 0.0);
    rig.ami.play_events(answered.events, Duration::from_millis(5)).await;
    rig.ami.play_events(unanswered.events, Duration::from_millis(5)).await;
    rig.receiver.wait_for(5).await;
    let (answered, unanswered) = (rig.receiver.of(&answered.linkedid), rig.receiver.of(&unanswered.linkedid));
    assert_eq!(
        seen(&answered),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), OUT, ext("103"), None),
            (CallStatus::Answered, Some(CallEventType::Answered), OUT, ext("103"), None),
            (CallStatus::Ended, Some(CallEventType::Ended), OUT, ext("103"), Some(61)),
        ]
    );
    assert_eq!(
        seen(&unanswered),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), OUT, ext("104"), None),
            (CallStatus::Missed, Some(CallEventType::Missed), OUT, ext("104"), None),
        ]
    );
    assert_eq!((answered[0].from.as_str(), answered[0].to.as_str()), ("103", CALLER));
    assert_eq!(unanswered[1].to, "5511900000000");
    running.stop().await;
}

#[tokio::test]
async fn a_dropped_ami_connection_reconnects_and_the_call_still_ends_right() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let call = scenarios::inbound_answered(&rig.ami.ids(), past(), CALLER, DID, "101", 5.0, 42.0);
    let (before, after) = call.events.split_at(6);
    rig.ami.play_events(before.to_vec(), Duration::from_millis(5)).await;
    assert_eq!(rig.receiver.wait_for(2).await.len(), 2);
    rig.ami.drop_connections();
    assert!(rig.ami.wait_for_logins(2, Duration::from_secs(5)).await, "the connector logs in again");
    rig.ami.play_events(after.to_vec(), Duration::from_millis(5)).await;
    let events = rig.receiver.wait_for(3).await;
    assert_eq!(seen(&events)[2], (CallStatus::Ended, Some(CallEventType::Ended), IN, ext("101"), Some(42)));
    assert_eq!(events.len(), 3);
    running.stop().await;
}

#[tokio::test]
async fn a_call_whose_hangup_was_lost_while_disconnected_ends_at_the_reconnection() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let t0 = scenarios::now() - 60.0;
    let call = scenarios::inbound_answered(&rig.ami.ids(), t0, CALLER, DID, "101", 5.0, 42.0);
    let (before, after) = call.events.split_at(6);
    rig.ami.play_events(before.to_vec(), Duration::from_millis(5)).await;
    assert_eq!(rig.receiver.wait_for(2).await.len(), 2);
    // The end happens while the connector is away: Asterisk keeps no backlog, the events are lost.
    rig.ami.drop_connections();
    rig.ami.play_events(after.to_vec(), Duration::ZERO).await;
    assert!(rig.ami.live_channels().is_empty());
    assert!(rig.ami.wait_for_logins(2, Duration::from_secs(5)).await);
    let events = rig.receiver.wait_for(3).await;
    assert_eq!(events.len(), 3);
    assert_eq!((events[2].status, events[2].extension.as_deref()), (CallStatus::Ended, Some("101")));
    // Answered 55 s ago; the end is known only at the reconnection (a loaded machine may take seconds to
    // reconnect, never a minute: the duration is not the 42 s the lost hangup would have said).
    let duration = events[2].duration.unwrap();
    assert!((55..=75).contains(&duration), "{duration}");
    running.stop().await;
}

#[tokio::test]
async fn a_call_in_progress_when_the_connector_restarts_still_ends_right() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let ids = rig.ami.ids();
    let ends_later = scenarios::inbound_answered(&ids, past(), CALLER, DID, "101", 5.0, 42.0);
    let ends_meanwhile = scenarios::outgoing(&ids, scenarios::now() - 30.0, "103", "5511900000000", Some(4.0), 10.0);
    let (later_before, later_after) = ends_later.events.split_at(6);
    let (meanwhile_before, meanwhile_after) = ends_meanwhile.events.split_at(6);
    rig.ami.play_events(later_before.to_vec(), Duration::from_millis(2)).await;
    rig.ami.play_events(meanwhile_before.to_vec(), Duration::from_millis(2)).await;
    assert_eq!(rig.receiver.wait_for(4).await.len(), 4);
    running.stop().await;

    // While no connector runs, one call ends; the other ends after the new one logged in.
    rig.ami.play_events(meanwhile_after.to_vec(), Duration::ZERO).await;
    let running = start(&rig, &[]).await;
    rig.ami.play_events(later_after.to_vec(), Duration::from_millis(2)).await;
    rig.receiver.wait_for(6).await;
    let later = rig.receiver.of(&ends_later.linkedid);
    assert_eq!(later.len(), 3);
    assert_eq!(
        (later[2].status, later[2].extension.as_deref(), later[2].duration),
        (CallStatus::Ended, Some("101"), Some(42))
    );
    let meanwhile = rig.receiver.of(&ends_meanwhile.linkedid);
    assert_eq!(meanwhile.len(), 3);
    assert_eq!((meanwhile[2].status, meanwhile[2].extension.as_deref()), (CallStatus::Ended, Some("103")));
    // Answered 26 s ago; its end is known at the new login (seconds later on a loaded machine; the
    // lost hangup would have said 10 s).
    assert!((25..=45).contains(&meanwhile[2].duration.unwrap()), "{:?}", meanwhile[2].duration);
    running.stop().await;
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "event"))
        .count()
}

#[tokio::test]
async fn events_wait_in_the_spool_while_the_server_is_down_and_across_a_restart_and_arrive_once() {
    let rig = rig().await;
    rig.receiver.down.store(true, Ordering::SeqCst);
    let running = start(&rig, &[]).await;
    let ids = rig.ami.ids();
    let first = scenarios::inbound_answered(&ids, past(), CALLER, DID, "101", 5.0, 42.0);
    let second = scenarios::inbound_missed(&ids, past(), "5511911112222", DID, "102", 10.0);
    rig.ami.play_events(first.events.clone(), Duration::from_millis(2)).await;
    rig.ami.play_events(second.events.clone(), Duration::from_millis(2)).await;
    for _ in 0..100 {
        if spooled(rig.spool.path()) == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spooled(rig.spool.path()), 5, "every event is on disk");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rig.receiver.refused_while_down.load(Ordering::SeqCst) >= 2, "deliveries were tried and retried");
    running.stop().await;

    // A new process on the same spool; the server comes back.
    let running = start(&rig, &[]).await;
    rig.receiver.down.store(false, Ordering::SeqCst);
    let events = rig.receiver.wait_for(5).await;
    let mut ids = rig.receiver.ids();
    assert_eq!(events.len(), 5, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each event once");
    let statuses = |call: &str| -> Vec<CallStatus> { rig.receiver.of(call).iter().map(|event| event.status).collect() };
    assert_eq!(statuses(&first.linkedid), [CallStatus::Ringing, CallStatus::Answered, CallStatus::Ended]);
    assert_eq!(statuses(&second.linkedid), [CallStatus::Ringing, CallStatus::Missed]);
    for _ in 0..20 {
        if spooled(rig.spool.path()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spooled(rig.spool.path()), 0, "delivered events leave the spool");
    running.stop().await;
}

#[tokio::test]
async fn an_event_the_server_refuses_for_good_is_dropped_and_the_next_ones_still_arrive() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let ids = rig.ami.ids();
    let refused = scenarios::inbound_missed(&ids, past(), CALLER, DID, "101", 5.0);
    let taken = scenarios::inbound_missed(&ids, past(), "5511911112222", DID, "102", 5.0);
    *rig.receiver.refuse_call.lock().unwrap() = Some(refused.linkedid.clone());
    rig.ami.play_events(refused.events, Duration::from_millis(2)).await;
    rig.ami.play_events(taken.events, Duration::from_millis(2)).await;
    let events = rig.receiver.wait_for(2).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|event| event.call_id == taken.linkedid));
    assert_eq!(rig.receiver.refused_for_good.load(Ordering::SeqCst), 2, "each refused event was tried once");
    assert_eq!(spooled(rig.spool.path()), 0);
    running.stop().await;
}

async fn http(
    method: reqwest::Method,
    url: String,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn click_to_call_originates_on_the_extensions_channel_and_its_events_carry_the_returned_call_id() {
    let rig = rig().await;
    let running = start(&rig, &[]).await;
    let base = format!("http://{}", running.api_addr);
    let basic = format!("Basic {}", STANDARD.encode("agent:agent-password"));
    let (status, account) = http(reqwest::Method::GET, format!("{base}/v1/account"), Some(&basic), None).await;
    assert_eq!((status, account["account_id"].as_str()), (200, Some("pbx-1")));
    let (status, _) = http(reqwest::Method::GET, format!("{base}/v1/account"), Some("Bearer wrong"), None).await;
    assert_eq!(status, 401);
    let (status, _) = http(
        reqwest::Method::POST,
        format!("{base}/v1/calls"),
        Some("Bearer test-api-key"),
        Some(r#"{"extension":"101","to":"+55 11\r\nAction: Command"}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert!(rig.ami.originates().is_empty());

    let body = r#"{"extension":"101","to":"+5511987654321"}"#;
    let (status, placed) =
        http(reqwest::Method::POST, format!("{base}/v1/calls"), Some("Bearer test-api-key"), Some(body)).await;
    assert_eq!(status, 201, "{placed}");
    let call_id = placed["call_id"].as_str().unwrap().to_owned();
    let originates = rig.ami.originates();
    assert_eq!(originates.len(), 1);
    let originate = &originates[0];
    assert_eq!((originate.channel.as_str(), originate.exten.as_str()), ("PJSIP/101", CALLER));
    assert_eq!(
        (originate.context.as_str(), originate.priority.as_str(), originate.is_async),
        ("from-internal", "1", true)
    );
    assert_eq!(originate.channel_id.as_deref(), Some(call_id.as_str()));
    assert!(originate.caller_id.contains("+5511987654321") && originate.action_id.starts_with("kvoip-"));

    let events = rig.receiver.wait_for(3).await;
    assert_eq!(
        seen(&events),
        [
            (CallStatus::Ringing, Some(CallEventType::Ringing), OUT, ext("101"), None),
            (CallStatus::Answered, Some(CallEventType::Answered), OUT, ext("101"), None),
            (CallStatus::Ended, Some(CallEventType::Ended), OUT, ext("101"), Some(5)),
        ]
    );
    for event in &events {
        assert_eq!(
            (event.call_id.as_str(), event.from.as_str(), event.to.as_str()),
            (call_id.as_str(), "101", "+5511987654321")
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn a_wrong_ami_secret_is_refused_and_click_to_call_says_the_pbx_is_unreachable() {
    let rig = rig().await;
    let running = connector::start(config(&rig, rig.spool.path(), &[("AMI_SECRET", "wrong")])).await.unwrap();
    for _ in 0..50 {
        if rig.ami.refused_logins() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rig.ami.refused_logins() > 0 && rig.ami.logins() == 0);
    let body = r#"{"extension":"101","to":"+5511987654321"}"#;
    let (status, answer) = http(
        reqwest::Method::POST,
        format!("http://{}/v1/calls", running.api_addr),
        Some("Bearer test-api-key"),
        Some(body),
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (503, Some("pbx_unreachable")));
    running.stop().await;
}
