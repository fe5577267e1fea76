//! What an unauthenticated stranger can make the server do, tried through the running server over real
//! sockets: a flood of made-up authorization codes at the Redirect URI (rate limited per address and in
//! total, codes bounded, and another account's calls still reach Kommo on time), over-long codes, the
//! consent start, and the Kommo client's bounded wait for a send slot.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use server::clock::unix_secs;
use server::kommo::KommoError;
use support::{ACCOUNT, CLIENT_ID, World, world};
use webhook_signing::WebhookSecret;

const CALLER: &str = "+5511987654321";

async fn pending_codes(world: &World) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM oauth_codes").fetch_one(world.store.pool()).await.unwrap()
}

fn callback_url(world: &World, referer: &str, code: &str) -> String {
    format!("{}/oauth/kommo/callback?from_widget=1&client_id={CLIENT_ID}&referer={referer}&code={code}", world.server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_codes_is_turned_away_and_another_accounts_calls_stay_on_time() {
    let world = world().await;
    let (path, secret) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    world.seed_contact(ACCOUNT, "Maria Silva", &[CALLER], &[]).await;
    let secret = WebhookSecret::parse(&secret).unwrap();
    let codes_before = pending_codes(&world).await;

    // 400 install requests with junk codes for the stand-in's host (the victim's), as fast as they go.
    let flood_started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..400 {
        let (http, url) = (world.http.clone(), callback_url(&world, &world.kommo_host, &format!("junk-{n}")));
        flood.spawn(async move {
            let response = http.get(url).send().await.unwrap();
            (response.status(), response.headers().get("retry-after").cloned())
        });
    }
    let answers = flood.join_all().await;
    let accepted = answers.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    let limited: Vec<_> = answers.iter().filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS).collect();
    assert_eq!(accepted + limited.len(), 400, "every request is answered 200 or 429: {answers:?}");
    assert!(accepted <= 20, "one address gets its budget of 20 a minute, not more ({accepted} accepted)");
    assert!(
        limited.iter().all(|(_, retry)| retry.as_ref().is_some_and(|value| value
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1))
    );
    assert!(pending_codes(&world).await - codes_before <= 20, "only accepted codes were stored");

    // Meanwhile a call of the account reaches Kommo at the account's normal pace: the made-up codes
    // spend the exchange budget, never the account's.
    let call = json!({"callId": "call-during-flood", "voipAccountId": "sandbox-voip", "from": CALLER,
                      "to": "+551133334444", "status": "ended", "type": "call.ended", "direction": "inbound",
                      "duration": 42, "startTime": unix_secs() - 60})
    .to_string();
    assert_eq!(world.post_signed(&path, &secret, "msg-during-flood", &call).await.status(), StatusCode::OK);
    let sent = Instant::now();
    loop {
        if world.logged_calls(ACCOUNT).await.contains(&"call-during-flood".to_owned()) {
            break;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "the call is not in Kommo 10 s after the flood");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "callback flood: {accepted} of 400 accepted, {} refused with 429 in {:?}; the account's call in Kommo {:?} after its webhook",
        limited.len(),
        flood_started.elapsed(),
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_code_is_refused_before_it_is_stored_and_the_consent_start_is_budgeted_too() {
    let world = world().await;
    let long = "x".repeat(5000);
    let response = world.http.get(callback_url(&world, &world.kommo_host, &long)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(pending_codes(&world).await, 0);

    // The consent start stores a state per request: it shares the per-address budget (one was spent above).
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(world.http.get(format!("{}/oauth/kommo/start", world.server)).send().await.unwrap().status());
    }
    let redirected = statuses.iter().filter(|status| status.is_redirection()).count();
    assert_eq!(redirected, 19, "{statuses:?}");
    assert!(statuses[19..].iter().all(|status| *status == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let states: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oauth_states").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(states, 19, "a refused start stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_kommo_request_waits_long_for_its_slot_behind_a_backlog() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let state = world.other_process().await;
    let kommo = state.installer.kommo.clone();
    // 60 requests at once for one account: slots are 170 ms apart, so about 30 fit in the 5 s a request
    // may wait; the rest are told to come back later instead of sleeping in line.
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let kommo = kommo.clone();
        requests.spawn(async move {
            let outcome = kommo.get(account, "/api/v4/account").await;
            (outcome, started.elapsed())
        });
    }
    let outcomes = requests.join_all().await;
    let sent = outcomes.iter().filter(|(outcome, _)| outcome.is_ok()).count();
    let paced_out: Vec<_> =
        outcomes.iter().filter(|(outcome, _)| matches!(outcome, Err(KommoError::RateLimited(_)))).collect();
    assert_eq!(sent + paced_out.len(), 60, "{outcomes:?}");
    assert!((20..=40).contains(&sent), "{sent} sent");
    assert!(
        paced_out.iter().all(|(_, at)| *at < Duration::from_secs(2)),
        "a request that cannot be sent soon is told at once, not after waiting"
    );
    let stats: Value = world.stats().await;
    let max = stats["accounts"][ACCOUNT.to_string()]["max_requests_per_second"].as_u64().unwrap();
    assert!(max <= 7, "Kommo's limit holds: {max} requests in one second");
}
