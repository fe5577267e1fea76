//! Asterisk end to end: the AMI stand-in (`sandbox::ami`) plays real calls' event sequences, the connector
//! (`connector`, in-process) follows them and posts signed call events to this server over real HTTP, and
//! each answered, missed and outgoing call ends as exactly one Kommo call. The account is set up as an admin
//! would: the connector starts without a webhook, the settings choose Asterisk and are saved (the save checks
//! the connector's API), and the connector restarts with the webhook URL and signing secret they show; the
//! call made meanwhile waited in its spool. Click-to-call goes from the widget through the server and the
//! connector to an AMI `Originate`, and the call it places is logged once.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use sandbox::ami::{AmiStandIn, Settings, scenarios};
use support::{ACCOUNT, ADMIN, World};

const MARIA: u64 = ACCOUNT * 100 + 1;
const CLIENT: &str = "+5511988887777";
const DID: &str = "551130000000";
const API_PASSWORD: &str = "CANARY-connector-api-password-5d1e";

/// The connector against `ami`, its spool and recordings in `dirs`, its API on `listen` (which is also the
/// recordings' public URL), delivering to `webhook`.
async fn connector(ami: &AmiStandIn, dirs: &Dirs, listen: &str, webhook: Option<(&str, &str)>) -> connector::Running {
    let mut vars: Vec<(&str, String)> = vec![
        ("AMI_PORT", ami.addr().port().to_string()),
        ("AMI_USERNAME", "kommo".to_owned()),
        ("AMI_SECRET", "sandbox-ami-secret".to_owned()),
        ("AMI_CDR_WAIT_MS", "300".to_owned()),
        ("CONNECTOR_SPOOL_DIR", dirs.spool.path().display().to_string()),
        ("CONNECTOR_RECORDINGS_DIR", dirs.recordings.path().display().to_string()),
        ("CONNECTOR_PUBLIC_URL", format!("http://{listen}")),
        ("CONNECTOR_LISTEN_ADDR", listen.to_owned()),
        ("CONNECTOR_API_LOGIN", "kommo".to_owned()),
        ("CONNECTOR_API_PASSWORD", API_PASSWORD.to_owned()),
        ("CONNECTOR_RETRY_MAX_SECS", "1".to_owned()),
    ];
    if let Some((url, secret)) = webhook {
        vars.push(("CONNECTOR_WEBHOOK_URL", url.to_owned()));
        vars.push(("CONNECTOR_WEBHOOK_SECRET", secret.to_owned()));
    }
    let config =
        connector::Config::from_vars(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone()))
            .expect("a valid connector configuration");
    let logins = ami.logins();
    let running = connector::start(config).await.unwrap();
    assert!(ami.wait_for_logins(logins + 1, Duration::from_secs(5)).await, "the connector logs in to the AMI");
    running
}

/// The connector's spool, and the PBX's recordings directory (MixMonitor's `/var/spool/asterisk/monitor`).
struct Dirs {
    spool: tempfile::TempDir,
    recordings: tempfile::TempDir,
}

/// Two minutes ago: the scenarios' timestamps lie in the past, as a replayed PBX's would.
fn past() -> f64 {
    scenarios::now() - 120.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asterisk_pbx_through_the_connector_logs_each_call_once_and_places_click_to_call() {
    let world: World = support::world().await;
    world.seed_contact(ACCOUNT, "Ana", &[CLIENT], &[]).await;
    let ami = AmiStandIn::start("127.0.0.1:0", Settings::default()).await.unwrap();
    let dirs = Dirs { spool: tempfile::tempdir().unwrap(), recordings: tempfile::tempdir().unwrap() };
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();

    // Before the first save: the connector serves its API and follows calls, which wait in its spool. The
    // first call is recorded, as FreePBX names its MixMonitor files.
    let first = connector(&ami, &dirs, &listen, None).await;
    let ids = ami.ids();
    let early = scenarios::inbound_answered(&ids, past(), CLIENT, DID, "101", 5.0, 42.0);
    let recorded = format!("in-101-{}-20261204-101500-{}.wav", &CLIENT[1..], early.linkedid);
    std::fs::write(dirs.recordings.path().join(&recorded), b"RIFF....WAVEfmt the recording").unwrap();
    ami.play_events(early.events, Duration::from_millis(5)).await;

    let provider_url = format!("http://{}", first.api_addr);
    let settings = |password: &str| {
        let provider_url = provider_url.clone();
        let password = password.to_owned();
        move |settings: &mut shared::IntegrationSettings| {
            settings.system = shared::ProviderSystem::Asterisk;
            settings.credentials =
                shared::VoipCredentials::Password { provider_url, login: "kommo".into(), password: Some(password) };
        }
    };
    // The save checks the connector's API: a wrong password is refused with nothing stored.
    world.install(ACCOUNT).await;
    let mut wrong = world.valid_settings();
    settings("not-the-password")(&mut wrong);
    let body = serde_json::to_value(&wrong).unwrap();
    let (status, refused) = world.widget(reqwest::Method::PUT, "/widget/v1/settings", ACCOUNT, Some(body)).await;
    assert!(status.is_client_error() || status.is_server_error(), "{status} {refused}");
    let (_, stored) = world.widget(reqwest::Method::GET, "/widget/v1/settings", ACCOUNT, None).await;
    assert_ne!(stored["system"], "asterisk", "nothing stored: {stored}");

    let saved = world.save_two_extensions_with(settings(API_PASSWORD)).await;
    let url = saved["webhook"]["url"].as_str().unwrap().to_owned();
    let secret = saved["webhook"]["signing_secret"].as_str().unwrap().to_owned();
    let (_, stored) = world.widget(reqwest::Method::GET, "/widget/v1/settings", ACCOUNT, None).await;
    assert_eq!(stored["system"], "asterisk", "{stored}");

    // The admin pastes both into the connector's environment and restarts it: the waiting call arrives.
    first.stop().await;
    let running = connector(&ami, &dirs, &listen, Some((&url, &secret))).await;
    let call = world.the_kommo_call(ACCOUNT, &early.linkedid).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 42, "the Cdr's billable seconds");
    assert_eq!(call["call_status"], 4, "a conversation took place");
    assert_eq!(call["responsible_user_id"], ADMIN, "extension 101's user");
    assert_eq!(call["phone"], CLIENT);
    // Its recording: a link the connector signed, which a browser opens without credentials; a forged one not.
    let link = call["link"].as_str().expect("the recorded call has a link").to_owned();
    assert!(link.starts_with(&format!("http://{listen}/v1/recordings/in-101-")), "{link}");
    let heard = world.http.get(&link).send().await.unwrap();
    assert_eq!(heard.status(), StatusCode::OK);
    assert_eq!(heard.headers()["content-type"], "audio/wav");
    assert_eq!(heard.bytes().await.unwrap().as_ref(), b"RIFF....WAVEfmt the recording");
    let (base, sig) = link.split_once("?sig=").unwrap();
    let forged = format!("{base}?sig={}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    assert_eq!(world.http.get(forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let other = link.replace(&recorded, "../../etc/passwd");
    assert_eq!(world.http.get(other).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A missed call on Maria's extension, and an outgoing call from it.
    let missed = scenarios::inbound_missed(&ids, past(), CLIENT, DID, "102", 25.0);
    ami.play_events(missed.events, Duration::from_millis(5)).await;
    let call = world.the_kommo_call(ACCOUNT, &missed.linkedid).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["duration"], 0, "no talk time");
    assert_ne!(call["call_status"], 4, "no conversation");
    assert_eq!(call["responsible_user_id"], MARIA, "extension 102's user");
    assert!(call["link"].is_null(), "nothing recorded: {call}");

    let outgoing = scenarios::outgoing(&ids, past(), "102", &CLIENT[1..], Some(4.0), 61.0);
    ami.play_events(outgoing.events, Duration::from_millis(5)).await;
    let call = world.the_kommo_call(ACCOUNT, &outgoing.linkedid).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["duration"], 61);
    assert_eq!(call["responsible_user_id"], MARIA);
    assert_eq!(call["phone"], CLIENT);

    // Click-to-call: Maria clicks a number; the connector originates on her extension; the call is logged once.
    let placed = world.click_to_call(MARIA, "(11) 98888-7777").await;
    let call_id = placed["call_id"].as_str().unwrap().to_owned();
    let originates = ami.originates();
    assert_eq!(originates.len(), 1, "{originates:?}");
    assert_eq!(originates[0].channel, "PJSIP/102", "Maria's extension rings first");
    assert_eq!(originates[0].exten, &CLIENT[1..], "then the number, as the dialplan matches it");
    let call = world.the_kommo_call(ACCOUNT, &call_id).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["duration"], 5, "the stand-in's number talks 5 s");
    assert_eq!(call["responsible_user_id"], MARIA);
    assert_eq!(call["phone"], CLIENT);

    // Nothing is left in the spool.
    running.stop().await;
    let spool = connector::spool::Spool::open(dirs.spool.path()).unwrap();
    assert!(spool.pending().unwrap().is_empty(), "every event delivered: {:?}", spool.pending());

    // The first call's end delivered again (a connector that crashed between the server's 200 and removing
    // the file): a duplicate, stored once, and the call is still logged once.
    let stored = world.stored_events().await;
    let ended: String = sqlx::query_scalar("SELECT body FROM webhook_inbox WHERE call_id = $1 AND body LIKE '%ended%'")
        .bind(&early.linkedid)
        .fetch_one(world.store.pool())
        .await
        .unwrap();
    let event: shared::FromWebhook = serde_json::from_str(&ended).unwrap();
    spool.push(&connector::calls::webhook_id(&event), ended.as_bytes()).unwrap();
    let again = connector(&ami, &dirs, &listen, Some((&url, &secret))).await;
    for _ in 0..100 {
        if spool.pending().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spool.pending().unwrap().is_empty(), "the repeated end was taken");
    again.stop().await;
    assert_eq!(world.stored_events().await, stored, "a duplicate stores nothing");
    assert_eq!(world.kommo_calls(ACCOUNT, &early.linkedid).await.len(), 1, "still one Kommo call");
}
