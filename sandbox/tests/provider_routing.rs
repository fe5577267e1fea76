//! Smart forwarding on the provider stand-in's side: a signed call that starts ringing asks the server's
//! caller-id endpoint (the webhook URL + `/caller-id`, signed with the same secret) and rings the extension
//! the answer names, for every event of the call; a late, failing or empty answer leaves the extension
//! the call would have rung.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sandbox::voip::Secret;
use serde_json::{Value, json};
use support::Harness;

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// What the fake server saw: the caller-id questions (headers, raw body) and the call events (bodies).
#[derive(Default)]
struct Seen {
    questions: Vec<(HeaderMap, Bytes)>,
    events: Vec<Value>,
}

type Shared = Arc<Mutex<Seen>>;

/// A stand-in for our server: `/hooks/voip/h1` stores events, `/hooks/voip/h1/caller-id` answers
/// `answer` with `status` after `delay`. Returns the webhook URL.
async fn server(status: u16, answer: Value, delay: Duration) -> (String, Shared) {
    let seen: Shared = Arc::default();
    let router = axum::Router::new()
        .route(
            "/hooks/voip/h1",
            post(|State(seen): State<Shared>, body: Bytes| async move {
                seen.lock().unwrap().events.push(serde_json::from_slice(&body).unwrap());
                axum::Json(json!({ "stored": true, "duplicate": false }))
            }),
        )
        .route(
            "/hooks/voip/h1/caller-id",
            post(move |State(seen): State<Shared>, headers: HeaderMap, body: Bytes| {
                let answer = answer.clone();
                async move {
                    seen.lock().unwrap().questions.push((headers, body));
                    tokio::time::sleep(delay).await;
                    (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
                }
            }),
        )
        .with_state(seen.clone());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/voip/h1", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, router).await.unwrap() });
    (url, seen)
}

fn routed_to(extension: Option<&str>) -> Value {
    json!({ "known": extension.is_some(), "name": "Ana", "entity": { "type": "contacts", "id": 7 },
            "responsible_user_id": 42, "extension": extension, "source": "index" })
}

/// The panel's call: ring (asking the server), answer, end; returns the extension of each event sent.
async fn play(kommo: &Harness, url: &str, secret: Option<&str>) -> (Vec<Value>, Value) {
    let mut ring = json!({ "webhook_url": url, "from": "+5511988887777", "to": "+551133334444",
                           "status": "ringing", "extension": "101" });
    if let Some(secret) = secret {
        ring["secret"] = json!(secret);
    }
    let response = kommo.post("/sandbox/provider/call", ring.clone()).await;
    assert_eq!(response.status(), 200);
    let rang: Value = response.json().await.unwrap();
    let mut extensions = vec![rang["extension"].clone()];
    for (status, extra) in [("answered", json!({})), ("ended", json!({ "duration": 12 }))] {
        let mut later = ring.clone();
        later["status"] = json!(status);
        later["call_id"] = rang["call_id"].clone();
        later["start_time"] = rang["start_time"].clone();
        later.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let answer: Value = kommo.post("/sandbox/provider/call", later).await.json().await.unwrap();
        extensions.push(answer["extension"].clone());
    }
    (extensions, rang)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
}

#[tokio::test]
async fn a_ringing_call_asks_the_server_and_rings_the_extension_it_names_for_every_event() {
    let kommo = Harness::start().await;
    let (url, seen) = server(200, routed_to(Some("205")), Duration::ZERO).await;
    let (extensions, rang) = play(&kommo, &url, Some(WHSEC)).await;
    assert_eq!(rang["caller_id"], "routed");
    assert_eq!(extensions, [json!("205"), json!("205"), json!("205")]);

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.questions.len(), 1, "asked once, before the call rang");
        let (headers, body) = &seen.questions[0];
        assert_eq!(
            serde_json::from_slice::<Value>(body).unwrap(),
            json!({ "number": "+5511988887777", "line": "+551133334444" })
        );
        let (id, timestamp) = (header(headers, "webhook-id"), header(headers, "webhook-timestamp").parse().unwrap());
        assert_eq!(header(headers, "webhook-signature"), Secret::parse(WHSEC).unwrap().sign(id, timestamp, body));
        let events: Vec<(&str, &str)> = seen
            .events
            .iter()
            .map(|event| (event["status"].as_str().unwrap(), event["extension"].as_str().unwrap()))
            .collect();
        assert_eq!(events, [("ringing", "205"), ("answered", "205"), ("ended", "205")]);
    }

    let stats: Value = kommo.get("/sandbox/voip/stats", None).await.json().await.unwrap();
    let routes = stats["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!((routes[0]["outcome"].as_str(), routes[0]["extension"].as_str()), (Some("routed"), Some("205")));
}

#[tokio::test]
async fn a_late_failed_or_empty_answer_rings_the_extension_the_call_would_have_rung() {
    let kommo = Harness::start().await;
    let cases = [
        (200, routed_to(Some("205")), Duration::from_millis(1500), "late"),
        (404, json!({ "error": { "code": "not_found", "message": "Not found." } }), Duration::ZERO, "failed"),
        (200, json!({ "unexpected": true }), Duration::ZERO, "failed"),
        (200, routed_to(None), Duration::ZERO, "as_usual"),
    ];
    for (status, answer, delay, outcome) in cases {
        let (url, seen) = server(status, answer, delay).await;
        let started = std::time::Instant::now();
        let (extensions, rang) = play(&kommo, &url, Some(WHSEC)).await;
        assert_eq!(rang["caller_id"], outcome);
        assert_eq!(extensions, [json!("101"), json!("101"), json!("101")], "{outcome}");
        let events: Vec<String> =
            seen.lock().unwrap().events.iter().map(|event| event["extension"].as_str().unwrap().to_owned()).collect();
        assert_eq!(events, ["101", "101", "101"], "{outcome}");
        if outcome == "late" {
            assert!(started.elapsed() < Duration::from_millis(1400), "waited no more than 1 s for the answer");
        }
    }
}

#[tokio::test]
async fn an_unsigned_call_rings_as_given_without_asking() {
    let kommo = Harness::start().await;
    let (url, seen) = server(200, routed_to(Some("205")), Duration::ZERO).await;
    let (extensions, rang) = play(&kommo, &url, None).await;
    assert!(rang.get("caller_id").is_none(), "{rang}");
    assert_eq!(extensions, [json!("101"), json!("101"), json!("101")]);
    assert!(seen.lock().unwrap().questions.is_empty(), "nothing to sign the question with");
}
