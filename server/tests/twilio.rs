//! Twilio end to end through real HTTP: the local Twilio's player posts a call's real status callbacks (the
//! manager's `<Client>` leg with `ParentCallSid`, the caller's own leg, the recording callback), form-encoded
//! and signed with `X-Twilio-Signature`, and each answered, missed, busy and outgoing call ends as exactly one
//! Kommo call with the right direction, duration, user and recording, whatever the order and however often
//! delivered; a forged or missing signature, a signature over another URL (a proxy's) and another account's
//! `AccountSid` are refused with nothing stored. The credentials check and click-to-call go through the
//! local Twilio's REST API. Signatures here are computed step by step from Twilio's "Webhooks security" recipe,
//! checked first against the example Twilio publishes there.

mod support;

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{ACCOUNT, ADMIN, VOIP_PASSWORD, World};

const MARIA: u64 = ACCOUNT * 100 + 1;
const CLIENT: &str = "+5511988887777";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

/// An account whose settings, saved through the settings API (which checks the SID and token with Twilio's
/// API), choose Twilio: login the account SID, password the auth token, the provider URL the local Twilio's
/// API; extension 101 (`client:101`) the admin's and 102 Maria's. Returns the webhook's full URL.
async fn setup() -> (World, String) {
    let world = support::world().await;
    let account = json!({"account_sid": SID, "auth_token": VOIP_PASSWORD, "phone_number": "+15005550006"});
    world.kommo_put("/sandbox/twilio/account", account).await;
    let provider_url = format!("{}/twilio", world.kommo);
    let saved = world
        .save_two_extensions_with(|settings| {
            settings.system = shared::ProviderSystem::Twilio;
            settings.credentials = shared::VoipCredentials::Password {
                provider_url,
                login: SID.into(),
                password: Some(VOIP_PASSWORD.into()),
            };
        })
        .await;
    let url = saved["webhook"]["url"].as_str().unwrap().to_owned();
    world.seed_contact(ACCOUNT, "Ana", &[CLIENT], &[]).await;
    (world, url)
}

/// Plays a scenario through the local Twilio; asserts every callback was accepted; returns the call id.
async fn play(world: &World, url: &str, scenario: &str, extra: Value) -> (String, Value) {
    let mut body = json!({"webhook_url": url, "auth_token": VOIP_PASSWORD, "account_sid": SID, "scenario": scenario});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let played = world.kommo_control("/sandbox/twilio/play", body).await;
    for delivery in played["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["status"], 200, "{played}");
    }
    (played["call_id"].as_str().unwrap().to_owned(), played)
}

/// The recording link reached Kommo: on the call itself, or as a note when it came after the call was logged.
async fn recording_reached_kommo(world: &World, link: &str) {
    for _ in 0..200 {
        let writes = world.kommo_writes(ACCOUNT).await;
        if writes.iter().any(|write| write["committed"] == json!(true) && write["body"].to_string().contains(link)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the recording {link} never reached Kommo");
}

async fn stored_recording(world: &World, call_id: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>("SELECT recording_url FROM voip_calls WHERE call_id = $1")
        .bind(call_id)
        .fetch_one(world.store.pool())
        .await
        .unwrap()
}

/// Twilio's signature written out as "Webhooks security" says: take the full URL, append each POST parameter's
/// name and value sorted by name, sign with HMAC-SHA1 keyed by the auth token, base64-encode.
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data += name;
        data += value;
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post(world: &World, url: &str, params: &[(&str, &str)], signature: Option<&str>) -> (StatusCode, Value) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let mut request = world.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A ringing callback of the manager's `<Client>` leg, shaped as Twilio's "Call resource" lists the
/// status callback parameters.
fn ringing_fixture(account: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccountSid", account),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA11111111111111111111111111111111"),
        ("ParentCallSid", "CA22222222222222222222222222222222"),
        ("CallStatus", "ringing"),
        ("Called", "client:101"),
        ("Caller", CLIENT),
        ("Direction", "outbound-dial"),
        ("From", CLIENT),
        ("To", "client:101"),
        ("SequenceNumber", "1"),
        ("Timestamp", "Fri, 04 Dec 2026 00:16:52 +0000"),
        ("CallbackSource", "call-progress-events"),
    ]
}

#[test]
fn the_test_signer_reproduces_twilios_published_example() {
    // "Webhooks security" (TwilioDevEd/api-snippets `security/signature_validation`): token 12345.
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675310"),
        ("Digits", "1234"),
        ("From", "+14158675310"),
        ("To", "+18005551212"),
    ];
    assert_eq!(
        twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
        "GvWf1cFY/Q7PnoempGyD5oXAezc="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_is_one_inbound_kommo_call_with_talk_time_user_and_recording() {
    let (world, url) = setup().await;
    let (call_id, played) = play(&world, &url, "answered", json!({})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 42, "the manager's leg's CallDuration");
    assert_eq!(call["call_status"], 4, "a conversation took place");
    assert_eq!(call["responsible_user_id"], ADMIN, "client:101's user");
    assert_eq!(call["phone"], CLIENT);
    // The caller's own leg (no client identity) stored nothing; `initiated` and `ringing` are one ringing.
    let deliveries = played["deliveries"].as_array().unwrap();
    assert_eq!(deliveries[4]["body"]["stored"], 0, "{played}");
    assert_eq!(world.stored_events().await, 4, "ringing, answered, ended, the recording");
    let link = stored_recording(&world, &call_id).await.expect("the recording is linked to the call");
    assert!(link.starts_with(&format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Recordings/RE")), "{link}");
    assert!(link.ends_with(".mp3"), "{link}");
    recording_reached_kommo(&world, &link).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_and_a_busy_call_are_one_inbound_kommo_call_each_without_talk_time() {
    let (world, url) = setup().await;
    let (missed, _) = play(&world, &url, "missed", json!({"extension": "102"})).await;
    let call = world.the_kommo_call(ACCOUNT, &missed).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 0);
    assert_ne!(call["call_status"], 4, "no conversation");
    assert_eq!(call["responsible_user_id"], MARIA, "client:102's user");
    assert_eq!(call["phone"], CLIENT);

    let (busy, _) = play(&world, &url, "busy", json!({"extension": "102"})).await;
    let call = world.the_kommo_call(ACCOUNT, &busy).await;
    assert_eq!(call["duration"], 0);
    assert_ne!(call["call_status"], 4, "no conversation");
    assert_eq!(call["responsible_user_id"], MARIA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_call_is_one_outbound_kommo_call_to_the_number_dialled() {
    let (world, url) = setup().await;
    let (call_id, _) = play(&world, &url, "outgoing", json!({"extension": "102"})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["duration"], 27);
    assert_eq!(call["responsible_user_id"], MARIA);
    assert_eq!(call["phone"], CLIENT, "the number from the callback URL, not the manager's client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_before_the_answer_and_every_callback_twice_still_make_one_right_call() {
    let (world, url) = setup().await;
    let (call_id, _) = play(&world, &url, "out_of_order", json!({})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!((call["duration"].clone(), call["call_status"].clone()), (json!(42), json!(4)));
    assert_eq!(call["direction"], "inbound");

    let (call_id, played) = play(&world, &url, "duplicated", json!({})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["duration"], 42);
    assert_eq!(call["responsible_user_id"], ADMIN);
    let stored: u64 =
        played["deliveries"].as_array().unwrap().iter().map(|d| d["body"]["stored"].as_u64().unwrap_or(0)).sum();
    assert_eq!(stored, 4, "ringing, answered, ended and the recording once each: {played}");
    assert!(stored_recording(&world, &call_id).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_missing_misaddressed_and_foreign_callbacks_are_refused_with_nothing_stored() {
    let (world, url) = setup().await;
    let ours = ringing_fixture(SID);
    let (status, _) = post(&world, &url, &ours, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no X-Twilio-Signature");
    let (status, _) = post(&world, &url, &ours, Some(&twilio_signature("another token", &url, &ours))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another auth token");
    // Signed for the address a proxy forwarded to, not the public one Twilio posted to.
    let internal = url.replace("127.0.0.1", "10.0.0.7");
    let (status, _) = post(&world, &url, &ours, Some(&twilio_signature(VOIP_PASSWORD, &internal, &ours))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a signature over another URL");
    let mut changed = ours.clone();
    changed[4].1 = "completed";
    let (status, _) = post(&world, &url, &changed, Some(&twilio_signature(VOIP_PASSWORD, &url, &ours))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a parameter changed after signing");
    let foreign = ringing_fixture("AC99999999999999999999999999999999");
    let (status, body) = post(&world, &url, &foreign, Some(&twilio_signature(VOIP_PASSWORD, &url, &foreign))).await;
    assert_eq!(status, StatusCode::CONFLICT, "another AccountSid: {body}");
    assert_eq!(world.stored_events().await, 0, "nothing stored");

    let (status, stored) = post(&world, &url, &ours, Some(&twilio_signature(VOIP_PASSWORD, &url, &ours))).await;
    assert_eq!((status, &stored["stored"]), (StatusCode::OK, &json!(1)), "{stored}");
    let (status, again) = post(&world, &url, &ours, Some(&twilio_signature(VOIP_PASSWORD, &url, &ours))).await;
    assert_eq!((status, &again["duplicates"]), (StatusCode::OK, &json!(1)), "a retry is stored once");
    assert_eq!(world.stored_events().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_check_and_click_to_call_go_through_twilios_rest_api() {
    let (world, url) = setup().await;
    let client = server::provider::ProviderClient::new(server::provider::EgressPolicy { allow_insecure_local: true });
    let api = format!("{}/twilio", world.kommo);
    let token = SecretString::from(VOIP_PASSWORD);
    let account = server::adapters::twilio::check_credentials(&client, &api, SID, &token).await.unwrap();
    assert_eq!(account.account_id, SID);
    let wrong = SecretString::from("not the token");
    assert_eq!(
        server::adapters::twilio::check_credentials(&client, &api, SID, &wrong).await,
        Err(server::provider::ProviderError::CredentialsRefused)
    );

    // Placed with the account's webhook URL as the status callback: the call's callbacks come back signed.
    let call_id = server::adapters::twilio::place_call(&client, &api, SID, &token, "101", "+5511987654321", Some(&url))
        .await
        .unwrap();
    let created: Value =
        world.http.get(format!("{}/sandbox/twilio/calls", world.kommo)).send().await.unwrap().json().await.unwrap();
    let placed = &created["calls"][0];
    assert_eq!(placed["sid"], call_id.as_str());
    assert_eq!(placed["To"], "client:101", "the manager's client rings first");
    assert_eq!(placed["From"], "+15005550006", "from the account's Twilio number");
    assert_eq!(
        placed["Twiml"],
        "<Response><Dial callerId=\"+15005550006\"><Number>+5511987654321</Number></Dial></Response>"
    );
    assert_eq!(placed["StatusCallbackEvent"], json!(["initiated", "ringing", "answered", "completed"]));
    assert!(placed["StatusCallback"].as_str().unwrap().ends_with("?to=%2B5511987654321"), "{placed}");
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["phone"], "+5511987654321");
    assert_eq!(call["responsible_user_id"], ADMIN);

    // Through the widget: the dispatch's click-to-call reaches the same API.
    let answered = world.click_to_call(MARIA, "(11) 98765-4321").await;
    let created: Value =
        world.http.get(format!("{}/sandbox/twilio/calls", world.kommo)).send().await.unwrap().json().await.unwrap();
    assert_eq!(created["calls"][1]["To"], "client:102");
    assert_eq!(answered["call_id"], created["calls"][1]["sid"]);
}
