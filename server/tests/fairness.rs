//! Tenant fairness end to end, over real sockets: one account floods its own webhook while another
//! sends at a normal pace. The flooder meets its ingest budget (429 with Retry-After) and its share of
//! the worker; the other account's events are all accepted and its calls reach Kommo at its own pace.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use server::clock::unix_secs;
use server::config::Config;
use support::{CLIENT_ID, CLIENT_SECRET, KEY_B64, World, world_without_server};
use tokio_util::sync::CancellationToken;
use webhook_signing::WebhookSecret;

const FLOODER: u64 = 31_000_101;
const NEIGHBOUR: u64 = 31_000_102;
const FLOODER_CALLER: &str = "+5511987650001";
const NEIGHBOUR_CALLER: &str = "+5511987650002";
/// The flooder's budget in this test: a burst of 120 events, then 10 a second.
const BURST: usize = 120;
const RATE: usize = 10;
const FLOOD: usize = 400;
/// The neighbour's calls per phase, one every `PACE`.
const CALLS: usize = 6;
const PACE: Duration = Duration::from_millis(300);

struct Hook {
    path: String,
    secret: WebhookSecret,
}

fn ended_call(call_id: &str, caller: &str) -> String {
    json!({"callId": call_id, "voipAccountId": "sandbox-voip", "from": caller, "to": "+551133334444",
           "status": "ended", "type": "call.ended", "direction": "inbound", "duration": 42,
           "startTime": unix_secs() - 60})
    .to_string()
}

/// Whether Kommo has the call `uniq` of `account` (a committed `POST /api/v4/calls`).
async fn in_kommo(world: &World, account: u64, uniq: &str) -> bool {
    world.kommo_writes(account).await.iter().any(|write| {
        write["path"] == "/api/v4/calls"
            && write["committed"] == json!(true)
            && write["body"].as_array().into_iter().flatten().any(|item| item["uniq"] == uniq)
    })
}

/// Sends `calls` calls of the neighbour, one every [`PACE`]; returns, per call, the time from our server's 200 to
/// the call being in Kommo.
async fn neighbour_calls(world: Arc<World>, hook: Arc<Hook>, phase: &str, calls: usize) -> Vec<Duration> {
    let mut waiting = tokio::task::JoinSet::new();
    for n in 0..calls {
        let call = format!("{phase}-{n}");
        let response = world
            .post_signed(&hook.path, &hook.secret, &format!("msg_{call}"), &ended_call(&call, NEIGHBOUR_CALLER))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "the neighbour's event {call} is accepted");
        let accepted = Instant::now();
        let world = world.clone();
        waiting.spawn(async move {
            while !in_kommo(&world, NEIGHBOUR, &call).await {
                assert!(accepted.elapsed() < Duration::from_secs(30), "{call} did not reach Kommo");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            accepted.elapsed()
        });
        tokio::time::sleep(PACE).await;
    }
    waiting.join_all().await
}

async fn open_jobs(world: &World, account: u64) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs JOIN accounts ON accounts.id = jobs.account_id
         WHERE accounts.kommo_account_id = $1 AND jobs.state IN ('queued', 'running')",
    )
    .bind(account as i64)
    .fetch_one(world.store.pool())
    .await
    .unwrap()
}

/// Our server (in this process, on a real socket) with `limits` on top of the test settings, and a
/// configured account on its own local Kommo for each of `accounts` (each Kommo account has its own API
/// host and request pace), a known caller seeded for each. Returns the worlds and the webhooks.
async fn start(
    limits: &[(&'static str, String)],
    accounts: &[(u64, &str)],
) -> (Vec<Arc<World>>, Vec<Arc<Hook>>, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_url = format!("http://{}", listener.local_addr().unwrap());
    let first = world_without_server(&server_url, accounts[0].0).await;
    let mut worlds = Vec::new();
    for &(account, _) in &accounts[1..] {
        worlds.push(Arc::new(first.another_kommo(account).await));
    }
    worlds.insert(0, Arc::new(first));
    let hosts: Vec<String> = worlds.iter().map(|world| format!("http://{}", world.kommo_host)).collect();
    let mut vars = vec![
        ("KOMMO_CLIENT_ID", CLIENT_ID.to_owned()),
        ("KOMMO_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("SECRET_KEYS", format!("k1:{KEY_B64}")),
        ("PUBLIC_BASE_URL", server_url.clone()),
        ("DATABASE_URL", worlds[0].db_url.clone()),
        ("KOMMO_ALLOWED_HOSTS", hosts.join(",")),
        ("KOMMO_CONSENT_URL", format!("{}/oauth", worlds[0].kommo)),
        ("PROVIDER_ALLOW_INSECURE_LOCAL", "true".to_owned()),
    ];
    vars.extend_from_slice(limits);
    let config = Config::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, v)| v.clone())).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::serve_on(listener, config, shutdown.clone()));
    let mut hooks = Vec::new();
    for (world, &(account, caller)) in worlds.iter().zip(accounts) {
        let (path, secret) = world.configure(account, shared::CallHandling::default()).await;
        world.seed_contact(account, "Known caller", &[caller], &[]).await;
        hooks.push(Arc::new(Hook { path, secret: WebhookSecret::parse(&secret).unwrap() }));
    }
    (worlds, hooks, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_account_meets_its_budget_while_another_accounts_calls_reach_kommo_at_their_pace() {
    let limits = [
        ("INGEST_BURST_PER_ACCOUNT", BURST.to_string()),
        ("INGEST_RATE_PER_ACCOUNT", RATE.to_string()),
        ("WORKER_SLOTS_PER_ACCOUNT", "2".to_owned()),
    ];
    let (worlds, hooks, shutdown) = start(&limits, &[(FLOODER, FLOODER_CALLER), (NEIGHBOUR, NEIGHBOUR_CALLER)]).await;
    let (flooder, neighbour) = (worlds[0].clone(), worlds[1].clone());
    let (flooder_hook, neighbour_hook) = (hooks[0].clone(), hooks[1].clone());

    // A first call warms what every later one reuses (the access token, the caller's lookup), then the
    // baseline: the neighbour alone.
    let warm_up = neighbour_calls(neighbour.clone(), neighbour_hook.clone(), "warm-up", 1).await;
    assert_eq!(warm_up.len(), 1);
    let baseline = neighbour_calls(neighbour.clone(), neighbour_hook.clone(), "calm", CALLS).await;

    // The flood: FLOOD distinct signed calls at once, 64 in flight.
    let started = Instant::now();
    let flood = {
        let (world, hook) = (flooder.clone(), flooder_hook.clone());
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(64));
            let mut sends = tokio::task::JoinSet::new();
            for n in 0..FLOOD {
                let (world, hook, slot) = (world.clone(), hook.clone(), slots.clone().acquire_owned().await.unwrap());
                sends.spawn(async move {
                    let call = format!("flood-{n}");
                    let response = world
                        .post_signed(
                            &hook.path,
                            &hook.secret,
                            &format!("msg_{call}"),
                            &ended_call(&call, FLOODER_CALLER),
                        )
                        .await;
                    drop(slot);
                    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    (status, retry_after, body["error"]["code"].as_str().map(str::to_owned))
                });
            }
            sends.join_all().await
        })
    };
    // The neighbour keeps its pace meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let flooded = neighbour_calls(neighbour.clone(), neighbour_hook.clone(), "flood", CALLS).await;
    let backlog_when_neighbour_done = open_jobs(&flooder, FLOODER).await;
    let answers = flood.await.unwrap();
    let flood_secs = started.elapsed().as_secs_f64();

    let accepted = answers.iter().filter(|(status, ..)| *status == StatusCode::OK).count();
    let refused: Vec<_> = answers.iter().filter(|(status, ..)| *status != StatusCode::OK).collect();
    let (calm_max, flood_max) = (baseline.iter().max().unwrap(), flooded.iter().max().unwrap());
    eprintln!(
        "neighbour's latency to Kommo: alone {baseline:?} (max {calm_max:?}); during the flood {flooded:?} (max \
         {flood_max:?}); flooder: {accepted} accepted, {} refused; {backlog_when_neighbour_done} of its jobs still \
         open when the neighbour's last call was in Kommo",
        refused.len()
    );

    // The flooder is held to its budget: its burst, and its rate over the flood's duration, no more.
    assert!(accepted >= BURST, "the budget's burst is honoured: {accepted}");
    assert!(
        accepted as f64 <= BURST as f64 + RATE as f64 * flood_secs + 5.0,
        "{accepted} accepted in {flood_secs:.1} s"
    );
    assert!(!refused.is_empty());
    for (status, retry_after, code) in &refused {
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "only 429, never 503: {refused:?}");
        assert_eq!(code.as_deref(), Some("ingest_budget"));
        let seconds: u64 = retry_after.as_deref().expect("a 429 says when to come back").parse().unwrap();
        assert!((1..=60).contains(&seconds), "Retry-After: {seconds}");
    }
    // The neighbour's calls were in Kommo while the flooder's backlog was still being worked off, and
    // at about the pace they had alone.
    assert!(backlog_when_neighbour_done > 0, "the flood had not drained yet");
    assert!(
        *flood_max <= (*calm_max * 5).max(*calm_max + Duration::from_secs(3)),
        "the neighbour waited {flood_max:?} during the flood, {calm_max:?} alone"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deliveries_turn_their_address_away_and_accepted_ones_never_count() {
    let (worlds, hooks, shutdown) =
        start(&[("WEBHOOK_FAILURES_PER_ADDRESS", "5".to_owned())], &[(FLOODER, FLOODER_CALLER)]).await;
    let (world, hook) = (&worlds[0], &hooks[0]);
    // A busy PBX: far more accepted deliveries than the failure budget, and never turned away.
    for n in 0..40 {
        let call = format!("pbx-{n}");
        let response = world
            .post_signed(&hook.path, &hook.secret, &format!("msg_{call}"), &ended_call(&call, FLOODER_CALLER))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{call}");
    }
    // Someone guessing hook ids and forging signatures from the same address (loopback here) uses up
    // the budget of 5 refusals a minute...
    let forged = Hook { path: hook.path.clone(), secret: WebhookSecret::generate() };
    let guessed =
        Hook { path: "/hooks/voip/aGVsbG8td29ybGQtZ3Vlc3NlZC1ob29rLWlk".into(), secret: WebhookSecret::generate() };
    let mut statuses = Vec::new();
    for n in 0..6 {
        let target = if n % 2 == 0 { &guessed } else { &forged };
        let response = world
            .post_signed(&target.path, &target.secret, &format!("msg_probe_{n}"), &ended_call("probe", FLOODER_CALLER))
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [404, 401, 404, 401, 404, 401]);
    // ...and the address is then turned away before any lookup, whatever it sends, with a time to wait.
    let response = world.post_signed(&hook.path, &hook.secret, "msg_after", &ended_call("after", FLOODER_CALLER)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let seconds: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&seconds), "Retry-After: {seconds}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_inbox WHERE call_id IN ('probe', 'after')")
        .fetch_one(world.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    shutdown.cancel();
}
