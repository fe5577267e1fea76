//! The Yeastar P-Series stand-in over real HTTP: its player posts a call's documented sequence (30011 status
//! changes, then the 30012 CDR; the CDR before the BYE when asked), each `msg` a JSON string and each body
//! signed `X-Signature` = base64(HMAC-SHA256(secret, raw body)), checked here step by step; its API hands a
//! token only to its client, dials with a token and plays the dialled call, and links recordings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sandbox::systems::yeastar::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SERIAL};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// The stand-in and a webhook that records what it receives; answers their base URLs.
async fn harness() -> (String, String, Received, reqwest::Client) {
    let pbx = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pbx_url = format!("http://{}", pbx.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(pbx, sandbox::systems::yeastar::router()).await.unwrap() });
    let received: Received = Arc::default();
    let hook = axum::Router::new()
        .route(
            "/hook",
            post(|State(log): State<Received>, headers: HeaderMap, body: Bytes| async move {
                log.lock().unwrap().push((headers, body));
                "ok"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    (pbx_url, hook_url, received, reqwest::Client::new())
}

/// Each delivery checked against its signature (computed here), its `msg` read from its JSON string:
/// `(type, msg)`.
fn verified(received: &Received) -> Vec<(u64, Value)> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(body);
            let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            assert_eq!(headers["x-signature"].to_str().unwrap(), expected);
            let event: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(event["sn"], SERIAL);
            let msg = serde_json::from_str(event["msg"].as_str().expect("msg is a JSON string")).unwrap();
            (event["type"].as_u64().unwrap(), msg)
        })
        .collect()
}

/// The status each 30011 gives its trunk leg, or the CDR's status.
fn statuses(events: &[(u64, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(kind, msg)| match kind {
            30011 => {
                let members = msg["members"].as_array().unwrap();
                let trunk = members.iter().find_map(|member| member.get("inbound").or(member.get("outbound")));
                format!("30011 {}", trunk.map_or("-", |leg| leg["member_status"].as_str().unwrap()))
            }
            _ => format!("30012 {}", msg["status"].as_str().unwrap()),
        })
        .collect()
}

async fn play(pbx: &str, hook: &str, http: &reqwest::Client, scenario: &str, cdr_first: bool) -> Value {
    let body = json!({"webhook_url": hook, "secret": SECRET, "scenario": scenario, "cdr_first": cdr_first});
    http.post(format!("{pbx}/sandbox/yeastar/play")).json(&body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn an_answered_call_plays_its_statuses_then_its_cdr_signed_with_msg_as_a_string() {
    let (pbx, hook, received, http) = harness().await;
    let played = play(&pbx, &hook, &http, "answered", false).await;
    assert!(played["deliveries"].as_array().unwrap().iter().all(|delivery| delivery["status"] == 200));
    let events = verified(&received);
    assert_eq!(statuses(&events), ["30011 ALERT", "30011 ANSWERED", "30011 BYE", "30012 ANSWERED"]);
    let (_, cdr) = &events[3];
    assert_eq!(cdr["call_id"], played["call_id"]);
    assert_eq!((cdr["type"].as_str(), cdr["talk_duration"].as_u64()), (Some("Inbound"), Some(35)));
    assert!(cdr["recording"].as_str().unwrap().ends_with(".wav"));
}

#[tokio::test]
async fn missed_internal_and_cdr_first_calls_play_their_own_sequences() {
    let (pbx, hook, received, http) = harness().await;
    play(&pbx, &hook, &http, "missed", false).await;
    assert_eq!(statuses(&verified(&received)), ["30011 ALERT", "30011 BYE", "30012 NO ANSWER"]);
    received.lock().unwrap().clear();
    play(&pbx, &hook, &http, "answered", true).await;
    assert_eq!(statuses(&verified(&received)), ["30011 ALERT", "30011 ANSWERED", "30012 ANSWERED", "30011 BYE"]);
    received.lock().unwrap().clear();
    play(&pbx, &hook, &http, "internal", false).await;
    let events = verified(&received);
    assert_eq!(statuses(&events), ["30011 -", "30011 -", "30011 -", "30012 ANSWERED"]);
    assert_eq!(events[3].1["type"], "Internal");
}

#[tokio::test]
async fn the_api_gives_tokens_to_its_client_only_and_a_dial_plays_the_outgoing_call() {
    let (pbx, hook, received, http) = harness().await;
    let api = format!("{pbx}/yeastar/openapi/v1.0");
    let refused: Value = http
        .post(format!("{api}/get_token"))
        .json(&json!({"username": DEFAULT_CLIENT_ID, "password": "wrong"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(refused["errcode"], 0, "HTTP 200 with a non-zero errcode");
    let token: Value = http
        .post(format!("{api}/get_token"))
        .header("User-Agent", "OpenAPI")
        .json(&json!({"username": DEFAULT_CLIENT_ID, "password": DEFAULT_CLIENT_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["errcode"], 0);
    let token = token["access_token"].as_str().unwrap();

    let target = json!({"webhook_url": hook, "secret": SECRET, "gap_ms": 10});
    http.put(format!("{pbx}/sandbox/yeastar/webhook")).json(&target).send().await.unwrap();
    let dial = json!({"caller": "101", "callee": "+5511987654321"});
    let without: Value =
        http.post(format!("{api}/call/dial?access_token=nope")).json(&dial).send().await.unwrap().json().await.unwrap();
    assert_ne!(without["errcode"], 0);
    let dialled: Value = http
        .post(format!("{api}/call/dial?access_token={token}"))
        .json(&dial)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dialled["errcode"], 0);
    let call_id = dialled["call_id"].as_str().unwrap();
    for _ in 0..100 {
        if received.lock().unwrap().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = verified(&received);
    assert_eq!(statuses(&events), ["30011 RING", "30011 ANSWER", "30011 BYE", "30012 ANSWERED"]);
    assert!(events.iter().all(|(_, msg)| msg["call_id"] == call_id));
    assert_eq!(
        (events[3].1["type"].as_str(), events[3].1["call_to"].as_str()),
        (Some("Outbound"), Some("+5511987654321"))
    );
    let dials: Value = http.get(format!("{pbx}/sandbox/yeastar/dials")).send().await.unwrap().json().await.unwrap();
    assert_eq!(dials[0]["caller"], "101");

    let file = events[3].1["recording"].as_str().unwrap();
    let link: Value = http
        .get(format!("{api}/recording/download?file={file}&access_token={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = link["download_resource_url"].as_str().unwrap();
    let wav = http.get(format!("{pbx}/yeastar{path}?access_token={token}")).send().await.unwrap();
    assert_eq!(wav.status(), 200);
    assert!(wav.bytes().await.unwrap().starts_with(b"RIFF"));
}
