//! Yeastar P-Series end to end through real HTTP: the local PBX's player posts a call's real webhook sequence
//! (30011 status changes, the 30012 CDR, `msg` a JSON string, `X-Signature` signed) to the server, and each
//! answered, missed and outgoing call ends as exactly one Kommo call with the right direction, duration and
//! user, whatever the order and however often delivered; internal calls store nothing; a forged or missing
//! signature and a `msg` that is not a string are refused with nothing stored. Fixtures follow Yeastar's
//! "(30011) Call Status Changed" and "(30012) New CDR" report examples, signed here step by step.

mod support;

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use support::{ACCOUNT, ADMIN, VOIP_PASSWORD, World};

const MARIA: u64 = ACCOUNT * 100 + 1;
const CLIENT: &str = "+5511988887777";

/// An account whose settings, saved through the settings API (which signs in to the PBX's API with the
/// client's id and secret), choose Yeastar: its PBX the local stand-in, extension 101 the admin's and 102
/// Maria's. Returns the webhook's path and the signing secret's text, which the admin pastes into Yeastar.
async fn setup() -> (World, String, String) {
    let world = support::world().await;
    world.kommo_put("/sandbox/yeastar/client", json!({"client_id": "agent", "client_secret": VOIP_PASSWORD})).await;
    let provider_url = format!("{}/yeastar", world.kommo);
    let saved = world
        .save_two_extensions_with(|settings| {
            settings.system = shared::ProviderSystem::Yeastar;
            settings.credentials = shared::VoipCredentials::OAuth2 {
                provider_url,
                client_id: "agent".into(),
                client_secret: Some(VOIP_PASSWORD.into()),
            };
        })
        .await;
    let path = saved["webhook"]["url"].as_str().unwrap().strip_prefix(&world.server).unwrap().to_owned();
    let secret = saved["webhook"]["signing_secret"].as_str().unwrap().to_owned();
    world.seed_contact(ACCOUNT, "Ana", &[CLIENT], &[]).await;
    world.seed_contact(ACCOUNT, "Bruno", &["+5511987654321"], &[]).await;
    (world, path, secret)
}

/// Plays a scenario through the local PBX; asserts every delivery was accepted; returns the call id.
async fn play(world: &World, path: &str, secret: &str, scenario: &str, extra: Value) -> String {
    let mut body = json!({"webhook_url": format!("{}{path}", world.server), "secret": secret, "scenario": scenario});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let played = world.kommo_control("/sandbox/yeastar/play", body).await;
    for delivery in played["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["status"], 200, "{played}");
    }
    played["call_id"].as_str().unwrap().to_owned()
}

/// Yeastar's signature, computed step by step as its guide says: HMAC-SHA256 keyed with the secret's text
/// over the raw body, base64-encoded.
fn x_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post(world: &World, path: &str, body: &str, signature: Option<&str>) -> (StatusCode, Value) {
    let mut request = world
        .http
        .post(format!("{}{path}", world.server))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The documented 30011 example's shape: an inbound call ringing on extension 101, `msg` a JSON string.
fn ringing_fixture(call_id: &str) -> String {
    let msg = json!({"call_id": call_id, "members": [
        {"inbound": {"from": CLIENT, "to": "+551133334444", "trunk_name": "SIP-Trunk",
                     "channel_id": "PJSIP/SIP-Trunk-00000001", "member_status": "ALERT"}},
        {"extension": {"number": "101", "channel_id": "PJSIP/101-00000002", "member_status": "RING", "call_path": ""}},
    ]});
    json!({"type": 30011, "sn": "3631A2124XXX", "msg": msg.to_string()}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_is_one_inbound_kommo_call_with_the_talk_time_on_the_extensions_user() {
    let (world, path, secret) = setup().await;
    let call_id = play(&world, &path, &secret, "answered", json!({})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 35, "the CDR's talk_duration");
    assert_eq!(call["call_status"], 4, "a conversation took place");
    assert_eq!(call["responsible_user_id"], ADMIN, "extension 101's user");
    assert_eq!(call["phone"], CLIENT);
    // The CDR's file as a stable link of ours (Yeastar's own expire in 30 minutes).
    let link = call["link"].as_str().expect("the recording's link");
    let query = link.strip_prefix(&format!("{}{path}?", world.server)).expect("our webhook URL");
    let file = server::adapters::yeastar::recording_request(query, &secrecy::SecretString::from(VOIP_PASSWORD));
    assert_eq!(file, Some(format!("20260101120000-{call_id}-{CLIENT}-101-Inbound.wav")));
    // Followed, it redirects to a fresh link the PBX's API gives; a link with a forged tag is not found.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let followed = http.get(link).send().await.unwrap();
    assert_eq!(followed.status(), StatusCode::FOUND);
    assert_eq!(followed.headers()["cache-control"], "no-store");
    let fresh = followed.headers()["location"].to_str().unwrap().to_owned();
    assert!(fresh.starts_with(&world.kommo), "the PBX's own download link: {fresh}");
    let forged = link.replace("ys_key=", "ys_key=00");
    assert_eq!(http.get(forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_is_one_inbound_kommo_call_without_talk_time() {
    let (world, path, secret) = setup().await;
    let call_id = play(&world, &path, &secret, "missed", json!({"extension": "102"})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 0);
    assert_ne!(call["call_status"], 4, "no conversation");
    assert!(call.get("link").is_none_or(Value::is_null), "nothing was recorded");
    assert_eq!(call["responsible_user_id"], MARIA, "extension 102's user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_dials_through_yeastar_and_its_call_is_one_outbound_kommo_call() {
    let (world, path, secret) = setup().await;
    let target = json!({"webhook_url": format!("{}{path}", world.server), "secret": secret, "gap_ms": 50});
    world.kommo_put("/sandbox/yeastar/webhook", target).await;
    let placed = world.click_to_call(MARIA, "(11) 98765-4321").await;
    let dials: Value =
        world.http.get(format!("{}/sandbox/yeastar/dials", world.kommo)).send().await.unwrap().json().await.unwrap();
    assert_eq!(dials[0]["caller"], "102", "Maria's extension rings first");
    assert_eq!(dials[0]["callee"], "+5511987654321");
    let call_id = dials[0]["call_id"].as_str().unwrap();
    assert_eq!(placed["call_id"], call_id, "{placed}");
    let call = world.the_kommo_call(ACCOUNT, call_id).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["duration"], 20);
    assert_eq!(call["responsible_user_id"], MARIA);
    assert_eq!(call["phone"], "+5511987654321");
    assert!(call["link"].as_str().is_some_and(|link| link.contains("ys_recording=")), "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdr_before_the_bye_and_every_event_delivered_twice_still_make_one_right_call() {
    let (world, path, secret) = setup().await;
    let call_id = play(&world, &path, &secret, "answered", json!({"cdr_first": true})).await;
    play(&world, &path, &secret, "answered", json!({"call_id": call_id, "cdr_first": true})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["duration"], 35);
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["responsible_user_id"], ADMIN);
    // Ringing, answered and the CDR, once each; the BYEs store nothing.
    assert_eq!(world.stored_events().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_call_is_answered_and_stores_nothing() {
    let (world, path, secret) = setup().await;
    play(&world, &path, &secret, "internal", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.stored_events().await, 0);
    assert!(world.logged_calls(ACCOUNT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_fixture_verifies_with_the_secret_or_its_base64_and_forgeries_store_nothing() {
    let (world, path, secret) = setup().await;
    let body = ringing_fixture("1651057476.362");

    let (status, _) = post(&world, &path, &body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no X-Signature");
    let forged = x_signature("whsec_dGhpcyBpcyBub3QgdGhlIGFjY291bnRzIHNlY3JldA==", &body);
    let (status, _) = post(&world, &path, &body, Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another secret");
    let tampered = body.replace("101", "102");
    let (status, _) = post(&world, &path, &tampered, Some(&x_signature(&secret, &body))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a body changed after signing");
    let object_msg = json!({"type": 30011, "sn": "3631A2124XXX", "msg": {"call_id": "1", "members": []}}).to_string();
    let (status, refused) = post(&world, &path, &object_msg, Some(&x_signature(&secret, &object_msg))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.to_string().contains("msg"), "{refused}");
    assert_eq!(world.stored_events().await, 0, "nothing stored");

    let (status, stored) = post(&world, &path, &body, Some(&x_signature(&secret, &body))).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["stored"], 1);
    let bare = secret.strip_prefix("whsec_").unwrap();
    let (status, again) = post(&world, &path, &body, Some(&x_signature(bare, &body))).await;
    assert_eq!(status, StatusCode::OK, "the base64 key as the secret verifies too");
    assert_eq!(again["duplicates"], 1, "a repeat is stored once");
    assert_eq!(world.stored_events().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_check_gets_a_yeastar_token_and_a_wrong_secret_is_refused() {
    let world = support::world().await;
    world.install(ACCOUNT).await;
    let client = server::provider::ProviderClient::new(server::provider::EgressPolicy { allow_insecure_local: true });
    let pbx = format!("{}/yeastar", world.kommo);
    let good = secrecy::SecretString::from(sandbox::systems::yeastar::DEFAULT_CLIENT_SECRET);
    let account = server::adapters::yeastar::check_credentials(
        &client,
        &pbx,
        sandbox::systems::yeastar::DEFAULT_CLIENT_ID,
        &good,
    )
    .await
    .unwrap();
    assert_eq!(account.account_id, sandbox::systems::yeastar::DEFAULT_CLIENT_ID);
    let bad = secrecy::SecretString::from("wrong");
    let refused =
        server::adapters::yeastar::check_credentials(&client, &pbx, sandbox::systems::yeastar::DEFAULT_CLIENT_ID, &bad)
            .await
            .unwrap_err();
    assert_eq!(refused, server::provider::ProviderError::CredentialsRefused);
    let link = server::adapters::yeastar::recording_link(
        &client,
        &pbx,
        sandbox::systems::yeastar::DEFAULT_CLIENT_ID,
        &good,
        "20260101120000-1.1-101-102-Internal.wav",
    )
    .await
    .unwrap();
    let link = secrecy::ExposeSecret::expose_secret(&link).to_owned();
    assert!(link.starts_with(&format!("{pbx}/api/download/")), "{link}");
    let file = world.http.get(&link).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert!(file.bytes().await.unwrap().starts_with(b"RIFF"));
}
