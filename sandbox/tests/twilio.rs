//! The Twilio stand-in: its REST API refuses what Twilio refuses (Basic auth with another token, another
//! account's SID) and answers the account, its number and a created call; its player posts the documented
//! status callback sequence of each scenario, form-encoded and signed as Twilio's "Webhooks security" says
//! (checked here by a signer written from that recipe, itself checked on Twilio's published example); a call
//! created with a `StatusCallback` plays its callbacks there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sandbox::clock::rfc2822;
use sandbox::systems::twilio::{DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER, signature};
use serde_json::{Value, json};

/// What the fake server received: each callback's parameters, and whether its signature verified.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, bool)>>>;

/// The recipe written out: URL, then each parameter's name and value sorted by name; HMAC-SHA1; base64.
fn recipe(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let data = sorted.iter().fold(url.to_owned(), |data, (name, value)| data + name + value);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// The stand-in and a fake server (`/hook`, checking each signature over the URL it was posted to).
async fn world() -> (String, String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twilio = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sandbox::systems::twilio::router()).await.unwrap() });
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let base = hook.clone();
    let router = axum::Router::new()
        .route(
            "/hook",
            post(
                move |State(seen): State<Seen>,
                      axum::extract::RawQuery(query): axum::extract::RawQuery,
                      headers: HeaderMap,
                      body: Bytes| {
                    let url = match query {
                        Some(query) => format!("{base}?{query}"),
                        None => base.clone(),
                    };
                    async move {
                        let params: Vec<(String, String)> =
                            form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
                        let given = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                        let ok = given == recipe(DEMO_AUTH_TOKEN, &url, &params);
                        seen.lock().unwrap().push((params, ok));
                        axum::Json(json!({"stored": 1, "duplicates": 0}))
                    }
                },
            ),
        )
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (twilio, hook, seen)
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

#[test]
fn the_stand_ins_signature_is_twilios_published_example_and_the_recipes() {
    let params = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675310"),
        ("Digits", "1234"),
        ("From", "+14158675310"),
        ("To", "+18005551212"),
    ]);
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(signature("12345", url, &params), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    assert_eq!(recipe("12345", url, &params), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    assert_eq!(rfc2822(1_281_930_301), "Mon, 16 Aug 2010 03:45:01 +0000");
}

#[tokio::test]
async fn the_rest_api_answers_the_account_and_refuses_other_credentials() {
    let (twilio, _, _) = world().await;
    let http = reqwest::Client::new();
    let account = format!("{twilio}/twilio/2010-04-01/Accounts/{DEMO_ACCOUNT_SID}.json");
    let response = http.get(&account).basic_auth(DEMO_ACCOUNT_SID, Some(DEMO_AUTH_TOKEN)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["sid"].as_str(), body["status"].as_str()), (Some(DEMO_ACCOUNT_SID), Some("active")));
    let response = http.get(&account).basic_auth(DEMO_ACCOUNT_SID, Some("wrong")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 20003);
    let other = format!("{twilio}/twilio/2010-04-01/Accounts/AC1.json");
    let response = http.get(&other).basic_auth(DEMO_ACCOUNT_SID, Some(DEMO_AUTH_TOKEN)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let numbers = format!("{twilio}/twilio/2010-04-01/Accounts/{DEMO_ACCOUNT_SID}/IncomingPhoneNumbers.json");
    let body: Value = http
        .get(numbers)
        .basic_auth(DEMO_ACCOUNT_SID, Some(DEMO_AUTH_TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["incoming_phone_numbers"][0]["phone_number"], DEMO_NUMBER);
}

#[tokio::test]
async fn an_answered_call_plays_the_managers_leg_the_callers_end_and_the_recording_signed() {
    let (twilio, hook, seen) = world().await;
    let play = json!({"webhook_url": hook, "auth_token": DEMO_AUTH_TOKEN, "account_sid": DEMO_ACCOUNT_SID,
                      "scenario": "answered"});
    let played: Value = reqwest::Client::new()
        .post(format!("{twilio}/sandbox/twilio/play"))
        .json(&play)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, ok)| *ok), "every callback verifies by the recipe");
    let statuses: Vec<Option<&str>> = seen.iter().map(|(params, _)| field(params, "CallStatus")).collect();
    assert_eq!(
        statuses,
        [Some("initiated"), Some("ringing"), Some("in-progress"), Some("completed"), Some("completed"), None]
    );
    let (manager, callers, recording) = (&seen[0].0, &seen[4].0, &seen[5].0);
    assert_eq!(field(manager, "To"), Some("client:101"));
    assert_eq!(field(manager, "Direction"), Some("outbound-dial"));
    assert_eq!(field(manager, "ParentCallSid"), played["call_id"].as_str());
    assert_eq!(field(&seen[3].0, "CallDuration"), Some("42"));
    assert_eq!(field(callers, "Direction"), Some("inbound"));
    assert_eq!(field(callers, "CallSid"), played["call_id"].as_str());
    assert_eq!(field(recording, "RecordingStatus"), Some("completed"));
    assert_eq!(field(recording, "CallSid"), played["call_id"].as_str(), "a <Dial> recording is the parent's");
    let sequence: Vec<Option<&str>> = seen[..4].iter().map(|(params, _)| field(params, "SequenceNumber")).collect();
    assert_eq!(sequence, [Some("0"), Some("1"), Some("2"), Some("3")]);
}

#[tokio::test]
async fn a_created_call_plays_its_callbacks_to_its_status_callback_url() {
    let (twilio, hook, seen) = world().await;
    let callback = format!("{hook}?to=%2B5511987654321");
    let form = [
        ("To", "client:102"),
        ("From", DEMO_NUMBER),
        ("Twiml", "<Response><Dial><Number>+5511987654321</Number></Dial></Response>"),
        ("StatusCallback", callback.as_str()),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "completed"),
    ];
    let response = reqwest::Client::new()
        .post(format!("{twilio}/twilio/2010-04-01/Accounts/{DEMO_ACCOUNT_SID}/Calls.json"))
        .basic_auth(DEMO_ACCOUNT_SID, Some(DEMO_AUTH_TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let call: Value = response.json().await.unwrap();
    let sid = call["sid"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|(params, ok)| *ok && field(params, "CallSid") == Some(sid.as_str())));
    assert_eq!(field(&seen[0].0, "Direction"), Some("outbound-api"));
    assert_eq!(field(&seen[3].0, "CallStatus"), Some("completed"));
}
