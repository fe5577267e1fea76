//! The VoIP provider stand-in plays the calls it originates, over real HTTP: once `POST /voip/v1/calls` answered
//! 201, the account's webhook receives the call's signed events as an outbound call with the same id (ringing,
//! answered, ended; or not answered for its unanswered numbers), paced by the account's timings, or moved by hand
//! in manual mode; every originate request is listed with the millisecond it arrived.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sandbox::voip::Secret;
use serde_json::{Value, json};
use support::Harness;

const API_KEY: &str = "sandbox-voip-api-key";
const ACCOUNT: &str = "sandbox-voip";
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const LINE: &str = "+551133330000";

/// One delivery the webhook received: when, its headers, its raw body.
#[derive(Clone)]
struct Delivery {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
    }

    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The Standard Webhooks signature is the secret's over this delivery's id, timestamp and raw body.
    fn assert_signed(&self) {
        let timestamp: i64 = self.header("webhook-timestamp").parse().unwrap();
        let expected = Secret::parse(WHSEC).unwrap().sign(self.header("webhook-id"), timestamp, &self.body);
        assert_eq!(self.header("webhook-signature"), expected);
        assert_eq!(self.header("content-type"), "application/json");
        assert!((timestamp - unix_secs()).abs() <= 2, "a fresh timestamp");
    }
}

#[derive(Clone, Default)]
struct Webhook {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// Statuses to answer first, in order; 200 afterwards.
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Webhook {
    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Waits until `count` deliveries arrived (at most 10 s).
    async fn wait_for(&self, count: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let deliveries = self.deliveries();
            if deliveries.len() >= count {
                return deliveries;
            }
            assert!(Instant::now() < deadline, "only {} of {count} deliveries arrived", deliveries.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A webhook on a free loopback port that records every delivery; returns its URL.
async fn webhook() -> (String, Webhook) {
    let hook = Webhook::default();
    let router = axum::Router::new()
        .route(
            "/hooks/voip/hook-1",
            post(|State(hook): State<Webhook>, headers: HeaderMap, body: Bytes| async move {
                let status = hook.statuses.lock().unwrap().pop_front().unwrap_or(200);
                hook.deliveries.lock().unwrap().push(Delivery { at: Instant::now(), headers, body });
                (StatusCode::from_u16(status).unwrap(), axum::Json(json!({ "stored": true })))
            }),
        )
        .with_state(hook.clone());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/voip/hook-1", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, router).await.unwrap() });
    (url, hook)
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn put(kommo: &Harness, path: &str, body: Value) -> reqwest::Response {
    kommo.http.put(format!("{}{path}", kommo.kommo)).json(&body).send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The default account posts to `url`, with `playback`.
async fn wire(kommo: &Harness, url: &str, playback: Value) {
    let path = format!("/sandbox/voip/accounts/{ACCOUNT}/webhook");
    let (status, body) = json_of(put(kommo, &path, json!({ "webhook_url": url, "secret": WHSEC })).await).await;
    assert_eq!((status, body), (200, json!({ "account_id": ACCOUNT, "webhook_url": url })));
    let path = format!("/sandbox/voip/accounts/{ACCOUNT}/playback");
    let (status, body) = json_of(put(kommo, &path, playback).await).await;
    assert_eq!(status, 200, "{body}");
}

/// Our server's originate request; answers the call id.
async fn originate(kommo: &Harness, to: &str) -> String {
    let response = kommo
        .http
        .post(format!("{}/voip/v1/calls", kommo.kommo))
        .bearer_auth(API_KEY)
        .json(&json!({ "extension": "101", "to": to }))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    body["call_id"].as_str().unwrap().to_owned()
}

async fn call_view(kommo: &Harness, call_id: &str) -> Value {
    kommo.get(&format!("/sandbox/voip/calls/{call_id}"), None).await.json().await.unwrap()
}

async fn command(kommo: &Harness, call_id: &str, action: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = kommo.http.post(format!("{}/sandbox/voip/calls/{call_id}/{action}", kommo.kommo));
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

fn statuses(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|delivery| delivery.event()["status"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn an_originated_call_is_played_into_the_webhook_as_an_outbound_call_with_its_id() {
    let kommo = Harness::start().await;
    let (url, hook) = webhook().await;
    wire(&kommo, &url, json!({ "answer_after_ms": 300, "talk_ms": 400 })).await;
    let before = unix_millis();
    let call_id = originate(&kommo, "+5511987654321").await;
    let after = unix_millis();

    let deliveries = hook.wait_for(3).await;
    assert_eq!(statuses(&deliveries), ["ringing", "answered", "ended"]);
    let events: Vec<Value> = deliveries.iter().map(Delivery::event).collect();
    let start_time = events[0]["startTime"].as_i64().unwrap();
    assert!((start_time - unix_secs()).abs() <= 3);
    for (delivery, event) in deliveries.iter().zip(&events) {
        delivery.assert_signed();
        assert_eq!(event["callId"], call_id.as_str(), "the id the 201 gave");
        assert_eq!(event["voipAccountId"], ACCOUNT);
        assert_eq!(event["direction"], "outbound");
        assert_eq!((event["from"].as_str(), event["to"].as_str()), (Some(LINE), Some("+5511987654321")));
        assert_eq!(event["extension"], "101");
        assert_eq!(event["startTime"], start_time, "every event repeats when it started ringing");
        // Each is a valid `FromWebhook`.
        let parsed: shared::FromWebhook = serde_json::from_value(event.clone()).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
    }
    let types: Vec<&str> = events.iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["call.ringing", "call.answered", "call.ended"]);
    assert!(events[0].get("duration").is_none() && events[1].get("duration").is_none());
    assert_eq!(events[2]["duration"], 1, "400 ms of talk: at least a second");
    let ids: Vec<&str> = deliveries.iter().map(|delivery| delivery.header("webhook-id")).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "each event is its own delivery");
    // Paced by the account's timings.
    let answered_after = deliveries[1].at - deliveries[0].at;
    let talked = deliveries[2].at - deliveries[1].at;
    assert!(
        answered_after >= Duration::from_millis(280) && answered_after < Duration::from_secs(3),
        "{answered_after:?}"
    );
    assert!(talked >= Duration::from_millis(380) && talked < Duration::from_secs(3), "{talked:?}");

    // The call as the provider keeps it, and the stats.
    let call = call_view(&kommo, &call_id).await;
    assert_eq!((call["state"].as_str(), call["duration"].clone()), (Some("ended"), events[2]["duration"].clone()));
    assert_eq!((call["webhook_url"].as_str(), call["from"].as_str()), (Some(url.as_str()), Some(LINE)));
    let played: Vec<&str> = call["events"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(played, ["ringing", "answered", "ended"]);
    assert!(call["events"].as_array().unwrap().iter().all(|e| e["upstream_status"] == 200 && e["attempts"] == 1));
    let stats = kommo.get("/sandbox/voip/stats", None).await.json::<Value>().await.unwrap();
    let received = stats["calls"][0]["received_at_ms"].as_i64().unwrap();
    assert!((before..=after).contains(&received), "{before} <= {received} <= {after}");
    assert_eq!(
        stats["originate_requests"],
        json!([{ "received_at_ms": received, "extension": "101", "to": "+5511987654321", "outcome": "ok",
                 "call_id": call_id }])
    );
    let sent: Vec<(&str, &str)> = stats["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sent| (sent["call_id"].as_str().unwrap(), sent["event"].as_str().unwrap()))
        .collect();
    assert_eq!(sent, [(call_id.as_str(), "ringing"), (call_id.as_str(), "answered"), (call_id.as_str(), "ended")]);
    let listed: Value = kommo.get("/sandbox/voip/calls?account_id=sandbox-voip", None).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let none: Value = kommo.get("/sandbox/voip/calls?account_id=voip-other", None).await.json().await.unwrap();
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn a_number_the_account_never_answers_ends_unanswered_with_the_status_it_chose() {
    let kommo = Harness::start().await;
    let (url, hook) = webhook().await;
    let playback = json!({ "answer_after_ms": 50, "no_answer_after_ms": 300,
                           "unanswered_numbers": ["(11) 98765-4321"], "line": "+551140000000" });
    wire(&kommo, &url, playback).await;
    let missed = originate(&kommo, "+5511987654321").await;
    let deliveries = hook.wait_for(2).await;
    assert_eq!(statuses(&deliveries), ["ringing", "missed"]);
    let event = deliveries[1].event();
    assert_eq!((event["callId"].as_str(), event["type"].as_str()), (Some(missed.as_str()), Some("call.missed")));
    assert_eq!((event["from"].as_str(), event.get("duration")), (Some("+551140000000"), None));
    assert!(deliveries[1].at - deliveries[0].at >= Duration::from_millis(280), "rang for no_answer_after_ms");
    let call = call_view(&kommo, &missed).await;
    assert_eq!((call["state"].as_str(), call["unanswered"].as_bool()), (Some("missed"), Some(true)));

    // Busy instead; another number is answered as usual.
    let playback = json!({ "no_answer_after_ms": 50, "talk_ms": 50, "answer_after_ms": 50,
                           "unanswered_numbers": ["+5511987654321"], "unanswered_status": "busy" });
    let (status, _) = json_of(put(&kommo, &format!("/sandbox/voip/accounts/{ACCOUNT}/playback"), playback).await).await;
    assert_eq!(status, 200);
    let busy = originate(&kommo, "+5511987654321").await;
    let deliveries = hook.wait_for(4).await;
    assert_eq!(statuses(&deliveries[2..]), ["ringing", "busy"]);
    assert_eq!(deliveries[3].event()["callId"], busy.as_str());
    assert!(deliveries[3].event().get("type").is_none(), "the contract has no type for busy");
    originate(&kommo, "+5521998765432").await;
    assert_eq!(statuses(&hook.wait_for(7).await[4..]), ["ringing", "answered", "ended"]);
}

#[tokio::test]
async fn a_manual_call_rings_until_answered_and_talks_until_ended() {
    let kommo = Harness::start().await;
    let (url, hook) = webhook().await;
    wire(&kommo, &url, json!({ "manual": true, "answer_after_ms": 0, "talk_ms": 0 })).await;
    let call_id = originate(&kommo, "+5511987654321").await;
    hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(statuses(&hook.deliveries()), ["ringing"], "nothing happens by itself");
    assert_eq!(call_view(&kommo, &call_id).await["state"], "ringing");

    let (status, call) = command(&kommo, &call_id, "answer", None).await;
    assert_eq!((status, call["state"].as_str()), (200, Some("answered")), "{call}");
    assert_eq!(statuses(&hook.deliveries()), ["ringing", "answered"], "answered once its event was delivered");
    let (status, refused) = command(&kommo, &call_id, "answer", None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("conflict")), "{refused}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(statuses(&hook.deliveries()), ["ringing", "answered"]);
    let (status, call) = command(&kommo, &call_id, "end", None).await;
    assert_eq!((status, call["state"].as_str()), (200, Some("ended")), "{call}");
    // 1.1 s and a little of talk, in whole seconds.
    let duration = call["duration"].as_u64().unwrap();
    assert!((1..=2).contains(&duration), "{call}");
    let ended = hook.deliveries()[2].event();
    assert_eq!((ended["status"].as_str(), ended["duration"].as_u64()), (Some("ended"), Some(duration)));
    for action in ["answer", "end"] {
        assert_eq!(command(&kommo, &call_id, action, None).await.0, 409, "{action} after the end");
    }
    assert_eq!(command(&kommo, "call_unknown", "answer", None).await.0, 404);

    // Hung up while ringing: the status asked for; a body it does not know is refused.
    let second = originate(&kommo, "+5511987654321").await;
    hook.wait_for(4).await;
    assert_eq!(command(&kommo, &second, "end", Some(json!({ "status": "exploded" }))).await.0, 400);
    let (status, call) = command(&kommo, &second, "end", Some(json!({ "status": "busy" }))).await;
    assert_eq!((status, call["state"].as_str()), (200, Some("busy")));
    assert_eq!(statuses(&hook.deliveries()[3..]), ["ringing", "busy"]);
    // An answered call can report the duration it is told.
    let third = originate(&kommo, "+5511987654321").await;
    hook.wait_for(6).await;
    command(&kommo, &third, "answer", None).await;
    let (_, call) = command(&kommo, &third, "end", Some(json!({ "duration": 42 }))).await;
    assert_eq!(call["duration"], 42);
    assert_eq!(hook.wait_for(8).await[7].event()["duration"], 42);
}

#[tokio::test]
async fn commands_cut_the_timers_short_in_the_automatic_mode() {
    let kommo = Harness::start().await;
    let (url, hook) = webhook().await;
    wire(&kommo, &url, json!({ "answer_after_ms": 60_000, "talk_ms": 60_000 })).await;
    let call_id = originate(&kommo, "+5511987654321").await;
    hook.wait_for(1).await;
    let started = Instant::now();
    assert_eq!(command(&kommo, &call_id, "answer", None).await.0, 200);
    let (status, call) = command(&kommo, &call_id, "end", None).await;
    assert_eq!((status, call["state"].as_str(), call["duration"].as_u64()), (200, Some("ended"), Some(1)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(statuses(&hook.deliveries()), ["ringing", "answered", "ended"]);
}

#[tokio::test]
async fn a_failing_delivery_is_sent_again_with_its_id_and_the_call_goes_on() {
    let kommo = Harness::start().await;
    let (url, hook) = webhook().await;
    hook.statuses.lock().unwrap().extend([503, 503, 503, 401]);
    wire(&kommo, &url, json!({ "answer_after_ms": 50, "talk_ms": 50 })).await;
    let call_id = originate(&kommo, "+5511987654321").await;
    let deliveries = hook.wait_for(5).await;
    // Ringing: three attempts with one id, all refused; answered: refused once (401 is not retried); ended: taken.
    assert_eq!(statuses(&deliveries), ["ringing", "ringing", "ringing", "answered", "ended"]);
    let first_id = deliveries[0].header("webhook-id");
    assert!(deliveries[..3].iter().all(|delivery| delivery.header("webhook-id") == first_id));
    deliveries.iter().for_each(Delivery::assert_signed);
    assert!(deliveries[1].at - deliveries[0].at >= Duration::from_millis(240), "waits before sending again");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let call = call_view(&kommo, &call_id).await;
    let events: Vec<(u64, u64)> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| (event["attempts"].as_u64().unwrap(), event["upstream_status"].as_u64().unwrap()))
        .collect();
    assert_eq!(events, [(3, 503), (1, 401), (1, 200)]);
    assert_eq!(call["state"], "ended");
}

#[tokio::test]
async fn without_a_webhook_a_call_is_only_recorded_and_every_request_is_listed() {
    let kommo = Harness::start().await;
    let call_id = originate(&kommo, "+5511987654321").await;
    let call = call_view(&kommo, &call_id).await;
    assert_eq!((call["state"].as_str(), call["events"].clone()), (Some("recorded"), json!([])));
    assert_eq!(command(&kommo, &call_id, "answer", None).await.0, 409);

    // A refused request is listed with its outcome and the millisecond it arrived, before the fault's delay.
    kommo.post("/sandbox/voip/faults", json!({ "status": 503, "delay_ms": 200 })).await;
    let before = unix_millis();
    let refused = kommo
        .http
        .post(format!("{}/voip/v1/calls", kommo.kommo))
        .bearer_auth(API_KEY)
        .json(&json!({ "extension": "101", "to": "+5511900000000" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let stranger = kommo
        .http
        .post(format!("{}/voip/v1/calls", kommo.kommo))
        .bearer_auth("not-a-key")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 401);
    let stats: Value = kommo.get("/sandbox/voip/stats", None).await.json().await.unwrap();
    let requests = stats["originate_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        (requests[0]["outcome"].as_str(), requests[0]["call_id"].as_str()),
        (Some("ok"), Some(call_id.as_str()))
    );
    assert_eq!(
        (requests[1]["outcome"].as_str(), requests[1]["to"].as_str(), requests[1]["call_id"].clone()),
        (Some("fault"), Some("+5511900000000"), Value::Null)
    );
    let received = requests[1]["received_at_ms"].as_i64().unwrap();
    assert!(received >= before && received < before + 150, "received at {received}, asked at {before}");
    assert_eq!(
        (requests[2]["outcome"].as_str(), requests[2]["extension"].clone()),
        (Some("unauthorized"), Value::Null)
    );
    assert_eq!(stats["requests"]["POST /voip/v1/calls"], json!({ "ok": 1, "fault": 1, "unauthorized": 1 }));
    assert_eq!(stats["webhooks"], json!([]));
}

#[tokio::test]
async fn the_webhook_and_playback_controls_refuse_what_a_provider_could_not_use() {
    let kommo = Harness::start().await;
    let (url, hook) = webhook().await;
    let path = format!("/sandbox/voip/accounts/{ACCOUNT}/webhook");
    for (body, status) in [
        (json!({ "webhook_url": url, "secret": WHSEC }), 200),
        (json!({ "webhook_url": "http://example.com/hooks/voip/x", "secret": WHSEC }), 400),
        (json!({ "webhook_url": "https://127.0.0.1/hooks/voip/x", "secret": WHSEC }), 400),
        (json!({ "webhook_url": url, "secret": "whsec_not base64!" }), 400),
    ] {
        assert_eq!(put(&kommo, &path, body.clone()).await.status().as_u16(), status, "{body}");
    }
    let missing =
        put(&kommo, "/sandbox/voip/accounts/voip-nobody/webhook", json!({ "webhook_url": url, "secret": WHSEC }));
    assert_eq!(missing.await.status(), 404);
    // The target shows without its secret, here and in the accounts' list.
    let shown: Value = kommo.get(&path, None).await.json().await.unwrap();
    assert_eq!(shown, json!({ "account_id": ACCOUNT, "webhook_url": url }));
    let accounts: Value = kommo.get("/sandbox/voip/accounts", None).await.json().await.unwrap();
    assert_eq!(accounts[0]["webhook_url"], url.as_str());
    assert!(!accounts.to_string().contains("C2FVsBQ"), "{accounts}");

    let playback_path = format!("/sandbox/voip/accounts/{ACCOUNT}/playback");
    for refused in [
        json!({ "talk_ms": 600_001 }),
        json!({ "unanswered_numbers": ["none"] }),
        json!({ "line": "" }),
        json!({ "talk": 5 }),
        json!({ "unanswered_status": "ended" }),
    ] {
        let status = put(&kommo, &playback_path, refused.clone()).await.status();
        assert!(status.is_client_error(), "{status} for {refused}");
    }
    let (status, playback) = json_of(put(&kommo, &playback_path, json!({ "talk_ms": 10 })).await).await;
    assert_eq!(
        (status, playback["talk_ms"].as_u64(), playback["answer_after_ms"].as_u64()),
        (200, Some(10), Some(2_000))
    );
    let shown: Value = kommo.get(&playback_path, None).await.json().await.unwrap();
    assert_eq!(shown, playback);
    assert_eq!(put(&kommo, "/sandbox/voip/accounts/voip-nobody/playback", json!({})).await.status(), 404);

    // Without its webhook the account plays nothing again.
    let cleared = kommo.http.delete(format!("{}{path}", kommo.kommo)).send().await.unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(kommo.get(&path, None).await.json::<Value>().await.unwrap()["webhook_url"], Value::Null);
    let call_id = originate(&kommo, "+5511987654321").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hook.deliveries().is_empty());
    assert_eq!(call_view(&kommo, &call_id).await["state"], "recorded");
}
