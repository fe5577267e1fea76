//! End to end over real HTTP: signed provider webhooks into the running server (ingest, worker, call
//! processor), and the Kommo stand-in recording what reached Kommo.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use server::clock::unix_secs;
use support::{ACCOUNT, World, world};
use webhook_signing::WebhookSecret;

const CALLER: &str = "+5511987654321";

fn ended_call(call_id: &str) -> String {
    json!({"callId": call_id, "voipAccountId": "sandbox-voip", "from": CALLER, "to": "+551133334444",
           "status": "ended", "type": "call.ended", "direction": "inbound", "duration": 42,
           "startTime": unix_secs() - 60})
    .to_string()
}

/// Waits (bounded) until no job is queued or running.
async fn drained(world: &World, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(world.store.pool())
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} jobs still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn kommo_stats(world: &World) -> Value {
    world.stats().await["accounts"][ACCOUNT.to_string()].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_of_a_delivery_make_one_call_in_kommo() {
    let world = Arc::new(world().await);
    let (path, secret) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    let secret = WebhookSecret::parse(&secret).unwrap();
    world.seed_contact(ACCOUNT, "Maria Silva", &[CALLER], &["Premium plan"]).await;
    let body = ended_call("dup-1");
    let mut copies = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (world, path, secret, body) = (world.clone(), path.clone(), secret.clone(), body.clone());
        copies.spawn(async move { world.post_signed(&path, &secret, "msg_dup_1", &body).await.status() });
    }
    while let Some(status) = copies.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    drained(&world, Duration::from_secs(30)).await;
    assert_eq!(world.logged_calls(ACCOUNT).await, ["dup-1"]);
    assert_eq!(kommo_stats(&world).await["duplicate_uniqs"], json!([]));
    let delivery: (String, String) =
        sqlx::query_as("SELECT delivery_status, entity_type FROM voip_calls WHERE call_id = 'dup-1'")
            .fetch_one(world.store.pool())
            .await
            .unwrap();
    assert_eq!(delivery, ("delivered".to_owned(), "leads".to_owned()), "the call is on the contact's open lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kommo_outage_is_ridden_out_without_loss_and_within_seven_requests_a_second() {
    let world = world().await;
    let (path, secret) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    let secret = WebhookSecret::parse(&secret).unwrap();
    world.seed_contact(ACCOUNT, "Maria Silva", &[CALLER], &[]).await;
    // Kommo fails every call write for a stretch: 500s, then 429s with Retry-After.
    for fault in [
        json!({"account_id": ACCOUNT, "status": 500, "count": 6, "method": "POST", "path_prefix": "/api/v4/calls"}),
        json!({"account_id": ACCOUNT, "status": 429, "retry_after": 1, "count": 4, "method": "POST",
               "path_prefix": "/api/v4/calls"}),
    ] {
        world.kommo_control("/sandbox/kommo/faults", fault).await;
    }
    let calls: Vec<String> = (1..=5).map(|n| format!("outage-{n}")).collect();
    for call in &calls {
        assert_eq!(
            world.post_signed(&path, &secret, &format!("msg_{call}"), &ended_call(call)).await.status(),
            StatusCode::OK
        );
    }
    drained(&world, Duration::from_secs(60)).await;
    assert_eq!(world.logged_calls(ACCOUNT).await, calls, "every call arrived once after the outage");
    let stats = kommo_stats(&world).await;
    assert_eq!(stats["duplicate_uniqs"], json!([]));
    assert!(stats["max_requests_per_second"].as_u64().unwrap() <= 7, "{stats}");
    let refused = world.kommo_writes(ACCOUNT).await.iter().filter(|write| write["committed"] == json!(false)).count();
    assert_eq!(refused, 10, "the outage was real: every injected fault was answered");
}
