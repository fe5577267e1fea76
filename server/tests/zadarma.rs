//! Zadarma end to end through real HTTP: the local Zadarma's player posts a call's `NOTIFY_*` sequence
//! (form-encoded, `Signature` = base64 of the hex HMAC-SHA1 with the API secret over each event's signed
//! fields) to the server, and each answered, missed and outgoing call ends as exactly one Kommo call with the
//! right direction, duration, user and recording, whatever the order and however often delivered. A forged,
//! missing or raw-digest signature is refused with nothing stored, an END relabelled with another call's
//! signed fields is refused, `zd_echo` is answered, and the API (balance, callback) is signed as Zadarma's
//! PHP SDK signs it. Fixtures follow the field lists of Zadarma's PHP SDK (`lib/Webhook/Notify*.php`) and
//! its `examples/callinfo_callback.php`; signatures are computed here step by step, and one was computed with
//! Python's `hmac` (below).

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha1::Sha1;
use support::{ACCOUNT, ADMIN, VOIP_PASSWORD, World};

const MARIA: u64 = ACCOUNT * 100 + 1;
const CLIENT: &str = "+5511988887777";

/// An account whose settings, saved through the settings API (which checks the key and secret with Zadarma's
/// API), choose Zadarma: its API the local stand-in with key `agent` and the account's password as the API
/// secret, extension 101 the admin's and 102 Maria's. Returns the webhook's path.
async fn setup() -> (World, String) {
    let world = support::world().await;
    world.kommo_put("/sandbox/zadarma/account", json!({"key": "agent", "secret": VOIP_PASSWORD})).await;
    let provider_url = format!("{}/zadarma", world.kommo);
    let saved = world
        .save_two_extensions_with(|settings| {
            settings.system = shared::ProviderSystem::Zadarma;
            settings.credentials = shared::VoipCredentials::Password {
                provider_url,
                login: "agent".into(),
                password: Some(VOIP_PASSWORD.into()),
            };
        })
        .await;
    let path = saved["webhook"]["url"].as_str().unwrap().strip_prefix(&world.server).unwrap().to_owned();
    world.seed_contact(ACCOUNT, "Ana", &[CLIENT], &[]).await;
    world.seed_contact(ACCOUNT, "Bruno", &["+5511987654321"], &[]).await;
    (world, path)
}

/// Plays a scenario through the local Zadarma; asserts every delivery was accepted; returns the call id.
async fn play(world: &World, path: &str, scenario: &str, extra: Value) -> String {
    let mut body =
        json!({"webhook_url": format!("{}{path}", world.server), "secret": VOIP_PASSWORD, "scenario": scenario});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let played = world.kommo_control("/sandbox/zadarma/play", body).await;
    for delivery in played["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["status"], 200, "{played}");
    }
    played["pbx_call_id"].as_str().unwrap().to_owned()
}

/// The recording's link reached Kommo (the call's `link`, or a note written after the call was logged), and,
/// followed, redirects to a fresh link Zadarma's API gives; the same link with a forged tag is not found.
async fn recording_reached_kommo(world: &World, call: &Value) {
    let mut link = call["link"].as_str().filter(|link| link.contains("zd_record=")).map(str::to_owned);
    for _ in 0..100 {
        if link.is_some() {
            break;
        }
        let writes = world.kommo_writes(ACCOUNT).await;
        let note = writes.iter().find(|write| {
            write["committed"] == json!(true)
                && write["path"].as_str().is_some_and(|path| path.contains("notes"))
                && write["body"].to_string().contains("zd_record=")
        });
        if let Some(note) = note {
            let text = note["body"].to_string();
            let start = text.find("http").expect("the note holds the link");
            let end = text[start..]
                .find(|c: char| c == '"' || c == '\\' || c.is_whitespace())
                .map_or(text.len(), |at| start + at);
            link = Some(text[start..end].to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let link = link.unwrap_or_else(|| panic!("the recording never reached Kommo: {call}"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let followed = http.get(&link).send().await.unwrap();
    assert_eq!(followed.status(), StatusCode::FOUND, "{link}");
    assert_eq!(followed.headers()["cache-control"], "no-store");
    let forged = link.replace("zd_key=", "zd_key=00");
    assert_eq!(http.get(forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

/// Zadarma's notification signature, step by step as `lib/Api.php` and `Client::encodeSignature` do it:
/// the signed fields concatenated, PHP's `hash_hmac('sha1', …, secret)` (lowercase hex), then base64 of that
/// hex text.
fn signature(secret: &str, signed: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    BASE64.encode(hex)
}

async fn post(world: &World, path: &str, fields: &[(&str, &str)], signature: Option<&str>) -> (StatusCode, Value) {
    post_at(world, &world.server, path, fields, signature, None).await
}

/// [`post`] to the server process at `server`, through a proxy that forwards for `forwarded_for` when given.
async fn post_at(
    world: &World,
    server: &str,
    path: &str,
    fields: &[(&str, &str)],
    signature: Option<&str>,
    forwarded_for: Option<&str>,
) -> (StatusCode, Value) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let mut request = world
        .http
        .post(format!("{server}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("Signature", signature);
    }
    if let Some(client) = forwarded_for {
        request = request.header("X-Forwarded-For", client);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// NOTIFY_START as the SDK's `NotifyStart` names its fields.
fn start(pbx_call_id: &'static str, caller: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("event", "NOTIFY_START"),
        ("call_start", "2026-12-04 10:00:00"),
        ("pbx_call_id", pbx_call_id),
        ("caller_id", caller),
        ("called_did", "+74957654321"),
    ]
}

#[test]
fn the_signature_recipe_matches_an_independent_computation() {
    // Computed with Python: base64.b64encode(hmac.new(secret, caller_id + called_did + call_start,
    // hashlib.sha1).hexdigest().encode()); the raw digest's base64 is `qRzqw9qAycDQqKMlGRp+RbGQtDw=`.
    assert_eq!(
        signature(VOIP_PASSWORD, "+74951234567+749576543212026-12-04 10:00:00"),
        "YTkxY2VhYzNkYTgwYzljMGQwYThhMzI1MTkxYTdlNDViMTkwYjQzYw=="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_is_one_inbound_kommo_call_with_its_talk_time_user_and_recording() {
    let (world, path) = setup().await;
    let call_id = play(&world, &path, "answered", json!({})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 42, "NOTIFY_END's duration");
    assert_eq!(call["call_status"], 4, "a conversation took place");
    assert_eq!(call["responsible_user_id"], ADMIN, "extension 101's user");
    assert_eq!(call["phone"], CLIENT);
    recording_reached_kommo(&world, &call).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_is_one_inbound_kommo_call_without_talk_time() {
    let (world, path) = setup().await;
    let call_id = play(&world, &path, "missed", json!({"extension": "102"})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 0, "the ringing time of a missed call is no talk time");
    assert_ne!(call["call_status"], 4, "no conversation");
    assert_eq!(call["responsible_user_id"], MARIA, "extension 102's user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_requests_a_signed_callback_and_its_call_is_one_outbound_kommo_call() {
    let (world, path) = setup().await;
    let target = json!({"webhook_url": format!("{}{path}", world.server), "secret": VOIP_PASSWORD, "gap_ms": 20});
    world.kommo_put("/sandbox/zadarma/webhook", target).await;
    let placed = world.click_to_call(MARIA, "(11) 98765-4321").await;
    assert!(placed["call_id"].as_str().unwrap().starts_with("zadarma-callback:102:5511987654321:"), "{placed}");
    let callbacks: Value = world
        .http
        .get(format!("{}/sandbox/zadarma/callbacks", world.kommo))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(callbacks[0]["from"], "102", "Maria's extension rings first");
    assert_eq!(callbacks[0]["to"], "5511987654321", "the number in digits, as the SDK sends it");
    // The callback's call comes under Zadarma's own id: find it among the calls Kommo got.
    let mut outbound = None;
    for _ in 0..200 {
        let writes = world.kommo_writes(ACCOUNT).await;
        outbound = writes
            .iter()
            .filter(|write| write["path"] == "/api/v4/calls" && write["committed"] == json!(true))
            .flat_map(|write| write["body"].as_array().cloned().unwrap_or_default())
            .find(|item| item["direction"] == "outbound");
        if outbound.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call_id = outbound.expect("the callback's call reached Kommo")["uniq"].as_str().unwrap().to_owned();
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["duration"], 27);
    assert_eq!(call["responsible_user_id"], MARIA);
    assert!(call["phone"].as_str().unwrap().ends_with("5511987654321"), "{call}");
    recording_reached_kommo(&world, &call).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_before_the_answer_and_every_notification_delivered_twice_still_make_one_right_call() {
    let (world, path) = setup().await;
    let call_id = play(&world, &path, "answered", json!({"end_before_answer": true, "times": 2})).await;
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["duration"], 42);
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["call_status"], 4);
    assert_eq!(call["responsible_user_id"], ADMIN);
    recording_reached_kommo(&world, &call).await;
    // START, INTERNAL, END, ANSWER and RECORD, once each.
    assert_eq!(world.stored_events().await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_missing_or_raw_digest_signature_is_refused_with_nothing_stored() {
    let (world, path) = setup().await;
    let fields = start("in_forged", "+74951234567");
    let signed = "+74951234567+749576543212026-12-04 10:00:00";
    let forged = signature("not-the-secret", signed);
    let mut raw = Hmac::<Sha1>::new_from_slice(VOIP_PASSWORD.as_bytes()).unwrap();
    raw.update(signed.as_bytes());
    // What Zadarma's TypeScript SDK computes: base64 of the raw digest. The PHP SDK refuses it; so do we.
    let raw_digest = BASE64.encode(raw.finalize().into_bytes());
    for signature in [Some(forged.as_str()), None, Some(raw_digest.as_str()), Some("")] {
        let (status, body) = post(&world, &path, &fields, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature:?}: {body}");
    }
    assert_eq!(world.stored_events().await, 0);
    // The same fields, signed right, are stored.
    let (status, body) = post(&world, &path, &fields, Some(&self::signature(VOIP_PASSWORD, signed))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.stored_events().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_relabelled_with_another_calls_signed_fields_is_refused_and_a_replay_is_a_duplicate() {
    let (world, path) = setup().await;
    let real = self::signature(VOIP_PASSWORD, "+74951234567+749576543212026-12-04 10:00:00");
    let (status, body) = post(&world, &path, &start("in_victim", "+74951234567"), Some(&real)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another call's START, captured with its signature, relabelled as the victim's END.
    let other = self::signature(VOIP_PASSWORD, "+74950000000+749576543212026-12-04 10:00:00");
    let relabelled = [
        ("event", "NOTIFY_END"),
        ("call_start", "2026-12-04 10:00:00"),
        ("pbx_call_id", "in_victim"),
        ("caller_id", "+74950000000"),
        ("called_did", "+74957654321"),
        ("disposition", "answered"),
        ("duration", "999"),
    ];
    let (status, body) = post(&world, &path, &relabelled, Some(&other)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(world.stored_events().await, 1);
    // The binding is the store's: a second server process (another replica, or this one restarted) on the
    // same database refuses the relabelled END too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica = format!("http://{}", listener.local_addr().unwrap());
    let app = server::http::app(world.other_process().await);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, body) = post_at(&world, &replica, &path, &relabelled, Some(&other), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "on another process: {body}");
    assert_eq!(world.stored_events().await, 1);
    // The victim's own START delivered again (a replay, or Zadarma's retry) is a duplicate.
    let (status, body) = post(&world, &path, &start("in_victim", "+74951234567"), Some(&real)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicates"], 1, "{body}");
    assert_eq!(world.stored_events().await, 1);
}

/// A server process on the world's database, its configuration changed by `change`, served with the peer
/// address of each connection (as `serve_on` serves); returns its URL.
async fn replica(world: &World, change: impl FnOnce(&mut server::config::Config)) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = server::http::app(world.other_process_with(change).await)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_zadarma_sources_set_a_rightly_signed_notification_from_elsewhere_is_refused_with_nothing_stored() {
    let (world, path) = setup().await;
    let fields = start("in_sourced", "+74951234567");
    let signed = self::signature(VOIP_PASSWORD, "+74951234567+749576543212026-12-04 10:00:00");
    // ZADARMA_SOURCES=zadarma, no proxy: this test's 127.0.0.1 is not Zadarma.
    let direct =
        replica(&world, |config| config.limits.zadarma_sources = Some(vec!["185.45.152.42".parse().unwrap()])).await;
    let (status, body) = post_at(&world, &direct, &path, &fields, Some(&signed), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    // A forwarded-for header from an untrusted peer names nobody.
    let (status, _) = post_at(&world, &direct, &path, &fields, Some(&signed), Some("185.45.152.42")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(world.stored_events().await, 0);
    // Zadarma's URL check stores nothing and is still answered.
    let echo = world.http.get(format!("{direct}{path}?zd_echo=tok3n")).send().await.unwrap();
    assert_eq!((echo.status(), echo.text().await.unwrap()), (StatusCode::OK, "tok3n".to_owned()));

    // Behind a trusted proxy: the client it forwards for is the one checked.
    let proxied = replica(&world, |config| {
        config.limits.zadarma_sources = Some(vec!["185.45.152.42".parse().unwrap()]);
        config.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let (status, _) = post_at(&world, &proxied, &path, &fields, Some(&signed), Some("203.0.113.9")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(world.stored_events().await, 0);
    let (status, body) = post_at(&world, &proxied, &path, &fields, Some(&signed), Some("185.45.152.42")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 1, "{body}");
    assert_eq!(world.stored_events().await, 1);
    // Unlisted, the check is off: the same notification from 127.0.0.1 is taken (here a duplicate).
    let (status, body) = post(&world, &path, &fields, Some(&signed)).await;
    assert_eq!((status, body["duplicates"].clone()), (StatusCode::OK, json!(1)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zd_echo_check_is_answered_with_its_token() {
    let (world, path) = setup().await;
    let response = world.http.get(format!("{}{path}?zd_echo=a1b2c3", world.server)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "a1b2c3");
    let response = world.http.get(format!("{}{path}?zd_echo=%0Aevil", world.server)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "only printable text is echoed");
    assert_eq!(world.stored_events().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_check_signs_its_api_request_as_zadarma_verifies_it() {
    let (world, _) = setup().await;
    let client = server::provider::ProviderClient::new(server::provider::EgressPolicy { allow_insecure_local: true });
    let url = format!("{}/zadarma", world.kommo);
    let secret = SecretString::from(VOIP_PASSWORD.to_owned());
    let account = server::adapters::zadarma::check_credentials(&client, &url, "agent", &secret).await.unwrap();
    assert_eq!(account.account_id, "agent");
    let wrong = SecretString::from("wrong".to_owned());
    let refused = server::adapters::zadarma::check_credentials(&client, &url, "agent", &wrong).await.unwrap_err();
    assert_eq!(refused, server::provider::ProviderError::CredentialsRefused);
    let link =
        server::adapters::zadarma::recording_link(&client, &url, "agent", &secret, "1700000000.abcdef").await.unwrap();
    assert!(link.ends_with("/zadarma/records/1700000000.abcdef.mp3"), "{link}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_list_entry_follows_the_call_its_callback_request_placed() {
    let (world, path) = setup().await;
    let target = json!({"webhook_url": format!("{}{path}", world.server), "secret": VOIP_PASSWORD, "gap_ms": 20});
    world.kommo_put("/sandbox/zadarma/webhook", target).await;
    let ana = world.seed_contact(ACCOUNT, "Ana Lista", &["+5511977776666"], &[]).await;
    let ana = ana["contact_id"].as_i64().unwrap();
    // A fresh disposable token per request (each is single-use).
    let post = |path: String, body: Value| {
        let world = &world;
        async move {
            let token = world.token_as(ACCOUNT, MARIA, Some(false)).await;
            let response = world
                .http
                .post(format!("{}{path}", world.server))
                .header("X-Auth-Token", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, list) = post("/widget/v1/call-lists".into(), json!({"source": "contacts", "ids": [ana]})).await;
    assert_eq!(status, StatusCode::CREATED, "{list}");
    let command = format!("/widget/v1/call-lists/{}/command", list["id"]);
    assert_eq!(post(command.clone(), json!({"action": "start", "next": 0})).await.0, StatusCode::OK);
    let (status, dialled) = post(command, json!({"action": "dial", "next": 0})).await;
    assert_eq!(status, StatusCode::OK, "{dialled}");
    // Zadarma's answer names no call: the entry takes the outbound call to its number that the callback made.
    let mut last = Value::Null;
    for _ in 0..200 {
        let response = world
            .http
            .get(format!("{}/widget/v1/call-lists/current", world.server))
            .header("X-Auth-Token", world.token_as(ACCOUNT, MARIA, Some(false)).await)
            .send()
            .await
            .unwrap();
        last = response.json::<Value>().await.unwrap()["list"].clone();
        if last["state"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = &last["entries"][0];
    assert_eq!(last["state"], "finished", "{last}");
    assert_eq!(entry["state"], "answered", "{entry}");
    let call_id = entry["call_id"].as_str().unwrap();
    assert!(!call_id.starts_with("zadarma-callback:"), "the call's own id: {entry}");
    assert_eq!(world.the_kommo_call(ACCOUNT, call_id).await["direction"], "outbound");
}
