//! The Zadarma stand-in over real HTTP: its API answers only requests signed as Zadarma's PHP SDK signs them
//! (`Authorization: <key>:<base64(hex(HMAC-SHA1(secret, path + sorted query + md5(query))))>`), and its player
//! posts each scenario's `NOTIFY_*` sequence form-encoded with a `Signature` that verifies, recomputed here
//! step by step.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sandbox::systems::zadarma::{DEMO_KEY, DEMO_SECRET};
use serde_json::{Value, json};
use sha1::Sha1;

/// The deliveries a webhook received: headers and raw body.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// PHP's `base64_encode(hash_hmac('sha1', text, secret))`: base64 of the lowercase hex digest.
fn php_hmac(secret: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    BASE64.encode(hex)
}

#[tokio::test]
async fn the_api_answers_only_requests_signed_as_the_php_sdk_signs_them() {
    let base = serve(sandbox::systems::zadarma::router()).await;
    let http = reqwest::Client::new();
    let query = "format=json";
    let md5: String = Md5::digest(query.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    let signed = php_hmac(DEMO_SECRET, &format!("/v1/info/balance/{query}{md5}"));
    let response = http
        .get(format!("{base}/zadarma/v1/info/balance/?{query}"))
        .header("Authorization", format!("{DEMO_KEY}:{signed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let balance: Value = response.json().await.unwrap();
    assert_eq!(balance["status"], "success");
    for authorization in [format!("{DEMO_KEY}:{}", php_hmac("wrong", query)), format!("other:{signed}"), String::new()]
    {
        let response = http
            .get(format!("{base}/zadarma/v1/info/balance/?{query}"))
            .header("Authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
}

#[tokio::test]
async fn the_player_posts_each_scenario_signed_with_the_fields_each_event_signs() {
    let received: Received = Arc::default();
    let hook = axum::Router::new()
        .route(
            "/hook",
            post(|State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                received.lock().unwrap().push((headers, body));
                axum::Json(json!({"stored": 1}))
            }),
        )
        .with_state(received.clone());
    let hook = serve(hook).await;
    let base = serve(sandbox::systems::zadarma::router()).await;
    let http = reqwest::Client::new();
    for (scenario, events) in [
        ("answered", vec!["NOTIFY_START", "NOTIFY_INTERNAL", "NOTIFY_ANSWER", "NOTIFY_END", "NOTIFY_RECORD"]),
        ("missed", vec!["NOTIFY_START", "NOTIFY_INTERNAL", "NOTIFY_END"]),
        ("outgoing", vec!["NOTIFY_OUT_START", "NOTIFY_OUT_END", "NOTIFY_RECORD"]),
    ] {
        received.lock().unwrap().clear();
        let body = json!({"webhook_url": format!("{hook}/hook"), "secret": "s3cret", "scenario": scenario});
        let played: Value =
            http.post(format!("{base}/sandbox/zadarma/play")).json(&body).send().await.unwrap().json().await.unwrap();
        let pbx_call_id = played["pbx_call_id"].as_str().unwrap();
        let deliveries = received.lock().unwrap().clone();
        let mut seen = Vec::new();
        for (headers, body) in deliveries {
            let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let field =
                |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()).unwrap();
            let event = field("event");
            let signed = match event.as_str() {
                "NOTIFY_ANSWER" => field("caller_id") + &field("destination") + &field("call_start"),
                "NOTIFY_OUT_START" | "NOTIFY_OUT_END" => {
                    field("internal") + &field("destination") + &field("call_start")
                }
                "NOTIFY_RECORD" => field("pbx_call_id") + &field("call_id_with_rec"),
                _ => field("caller_id") + &field("called_did") + &field("call_start"),
            };
            assert_eq!(headers["signature"].to_str().unwrap(), php_hmac("s3cret", &signed), "{event}");
            assert_eq!(field("pbx_call_id"), pbx_call_id);
            seen.push(event);
        }
        assert_eq!(seen, events, "{scenario}");
    }
}
