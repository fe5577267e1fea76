//! Kill -9 (RELIABILITY.md §3.6): the real server binary on its database (a SQLite file, or PostgreSQL in
//! the suite's PostgreSQL pass) receives signed provider webhooks
//! at concurrency 16–64 and is SIGKILLed at a seeded random moment 20–80 % of the way through, restarted on
//! the same file, and sent again every delivery that got no 2xx (same `webhook-id`, as a provider retries).
//! It is then killed once more while its workers hold Kommo writes that already landed (the local Kommo
//! commits them, then delays the answer), and restarted again. Once the queue has drained:
//! - every delivery answered 2xx is in `webhook_inbox` exactly once (by its provider event);
//! - each local Kommo saw exactly one call write per call (none twice, none missing);
//! - no job is queued, running past its lease, or dead, and every call reads as delivered;
//! - no answer was a 5xx, before or after a restart.
//!
//! Short by default (2 seeds × 300 deliveries, the seeds run at once). Longer on demand:
//! `CRASH_SEEDS` (how many), `CRASH_SEED` (replay one), `CRASH_EVENTS` (deliveries per seed),
//! `CRASH_ACCOUNTS` (Kommo accounts, each on its own local Kommo), `CRASH_SERVER_BIN` (another server
//! binary, e.g. the release build); `cargo xtask crash` runs 5 seeds × 5000 on the release build.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use server::store::AccountId;
use support::{CLIENT_ID, CLIENT_SECRET, KEY_B64, World, world_without_server};
use webhook_signing::WebhookSecret;

/// Kommo account ids of the test: `FIRST_ACCOUNT + i`.
const FIRST_ACCOUNT: u64 = 31_100_001;
/// Known callers seeded per account.
const KNOWN_PER_ACCOUNT: usize = 6;
/// How long a started server gets to answer `/health`.
const STARTUP: Duration = Duration::from_secs(30);
/// How long the local Kommo holds a call write it already carried out (longer than the kill takes).
const HOLD_MS: u64 = 30_000;
/// The call line providers report as `to`.
const LINE: &str = "+551133334444";

#[derive(Debug, Clone)]
struct Params {
    seeds: Vec<u64>,
    events: usize,
    accounts: usize,
    binary: PathBuf,
}

fn params() -> Params {
    let number = |name: &str| -> Option<u64> {
        std::env::var(name).ok().map(|text| text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?}")))
    };
    let events = number("CRASH_EVENTS").map_or(300, |n| n as usize).max(20);
    let seeds = match number("CRASH_SEED") {
        Some(seed) => vec![seed],
        None => {
            let mut rng = rand::rng();
            (0..number("CRASH_SEEDS").unwrap_or(2)).map(|_| rng.random_range(1..1_000_000_000)).collect()
        }
    };
    // Kommo is the slow end (7 requests/s per account, paced per API host): spread the calls so that the
    // queue drains in bounded time.
    let accounts = number("CRASH_ACCOUNTS").map_or((events / 400).clamp(4, 16), |n| n as usize).max(1);
    let binary =
        std::env::var_os("CRASH_SERVER_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_server")), PathBuf::from);
    Params { seeds, events, accounts, binary }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_webhook_and_writes_each_call_to_kommo_once() {
    let params = params();
    eprintln!(
        "crash test: seeds {:?}, {} deliveries and {} accounts per seed, binary {}",
        params.seeds,
        params.events,
        params.accounts,
        params.binary.display()
    );
    // Seeds run two at a time: most of a run is waiting (on Kommo's pace, on leases to expire).
    let slots = Arc::new(tokio::sync::Semaphore::new(2));
    let runs: Vec<_> = params
        .seeds
        .iter()
        .map(|&seed| {
            let (params, slots) = (params.clone(), slots.clone());
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.expect("the semaphore stays open");
                (seed, run_seed(&params, seed).await)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        match run.await {
            Ok((seed, Ok(report))) => eprintln!("seed {seed}: ok — {report}"),
            Ok((seed, Err(error))) => failures.push(format!("seed {seed} (replay: CRASH_SEED={seed}): {error}")),
            Err(panic) => failures.push(format!("a seed's run panicked: {panic}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Several replicas (issue: outgrowing one machine): two server processes on one PostgreSQL behind one
/// public address, the provider's deliveries split between them, every account's tokens expired at the
/// start (so both replicas race to refresh them), and one replica SIGKILLed mid-run while the other keeps
/// serving and the provider retries its unanswered deliveries there. Then: no acknowledged event lost,
/// every call written to Kommo once, never more than 7 requests/s per account at Kommo (its 429 counts),
/// and the tokens refreshed once per account in all (a second refresh with the rotated-away token would
/// have parked the account). PostgreSQL only: SQLite serves one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_lose_nothing_write_once_and_stay_within_the_rate() {
    if !support::database::on_postgres() {
        eprintln!("two replicas: PostgreSQL only (the suite's PostgreSQL pass runs it)");
        return;
    }
    let params = Params { events: 240, accounts: 3, ..params() };
    let seed = params.seeds[0];
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("replicas.log");
    let outcome = run_replicas(&params, seed, &log).await;
    match outcome {
        Ok(summary) => eprintln!("two replicas, seed {seed}: {summary}"),
        Err(error) => {
            panic!("seed {seed} (replay: CRASH_SEED={seed}): {error}\n--- server logs (last lines)\n{}", log_tail(&log))
        }
    }
}

async fn run_replicas(params: &Params, seed: u64, log: &std::path::Path) -> Result<String, String> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xbeef);
    let (Fixture { kommos, ids, launcher, hooks, known, accounts }, mut first) =
        fixture(params, free_port(), log).await?;
    let second = launcher.start(0).await?;
    // Every account's access token expired, at Kommo and in the store: the first job of each account on
    // either replica must refresh, and only one of them may (Kommo rotates the refresh token).
    for ((world, &id), &account) in kommos.iter().zip(&ids).zip(&accounts) {
        world.make_tokens_stale(account, id).await;
    }
    let (calls, deliveries) = plan(seed, params.events, &known);
    let concurrency = 32;
    let kill_after = deliveries.len() * rng.random_range(30..=60) / 100;
    let provider = Provider::new(vec![first.url.clone(), second.url.clone()], hooks)?;

    // 1. Deliveries alternate between the replicas; the first is SIGKILLed part-way and the provider
    //    goes on with the survivor.
    let all: Vec<&Delivery> = deliveries.iter().collect();
    let supervisor = async {
        while provider.completed.load(Ordering::SeqCst) < kill_after {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first.kill();
        provider.generation.store(1, Ordering::SeqCst);
        *provider.bases.write().unwrap() = vec![second.url.clone()];
    };
    tokio::join!(supervisor, provider.send_all(&all, concurrency));
    let acked_before_resend = deliveries.iter().filter(|d| d.acked.load(Ordering::SeqCst)).count();
    // 2. What got no answer is sent again, to the survivor.
    let unacked: Vec<&Delivery> = deliveries.iter().filter(|d| !d.acked.load(Ordering::SeqCst)).collect();
    let resent = unacked.len();
    provider.send_all(&unacked, concurrency).await;
    let still_unacked = deliveries.iter().filter(|d| !d.acked.load(Ordering::SeqCst)).count();
    if still_unacked > 0 {
        return Err(format!("{still_unacked} deliveries got no 2xx even when resent to the surviving replica"));
    }

    // 3. The survivor drains the queue, the dead replica's leased jobs included once their leases pass.
    let store = &kommos[0].store;
    let bound = Duration::from_secs(120) + Duration::from_millis(calls.len() as u64 * 2 * 200 / ids.len() as u64);
    let drained_in = wait_for_drain(store, bound).await?;

    // 4. The oracle.
    let statuses = provider.statuses.lock().unwrap().clone();
    let refused: Vec<_> = statuses.iter().filter(|(_, status)| !(200..300).contains(status)).collect();
    if !refused.is_empty() {
        return Err(format!("refused deliveries (replica generation, status): {refused:?}"));
    }
    check_inbox(store, &accounts, &deliveries).await?;
    check_jobs(store).await?;
    let mut requests = 0;
    for (n, (world, &id)) in kommos.iter().zip(&ids).enumerate() {
        let expected: BTreeSet<&str> =
            calls.iter().filter(|call| call.account == n).map(|call| call.call_id.as_str()).collect();
        check_kommo(world, id, &expected).await?;
        let stats = world.stats().await;
        let account = &stats["accounts"][id.to_string()];
        let too_many = account["too_many_requests"].as_u64().unwrap_or(0);
        let peak = account["max_requests_per_second"].as_u64().unwrap_or(u64::MAX);
        if too_many > 0 || peak > 7 {
            return Err(format!(
                "account {id}: the replicas together sent up to {peak} requests in one second (429 answered {too_many} times)"
            ));
        }
        requests += account["requests"].as_u64().unwrap_or(0);
    }
    drop(second);
    Ok(format!(
        "{} deliveries ({} calls, {} accounts) split over 2 replicas; one killed after {kill_after} answers \
         ({acked_before_resend} acknowledged), {resent} resent to the other; {requests} Kommo requests, none \
         refused for the rate; drained {:.1}s after the sends; {:.1}s in all",
        deliveries.len(),
        calls.len(),
        ids.len(),
        drained_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ))
}

// ---------------------------------------------------------------------------------------------------------
// The provider's side: calls, their events, deliveries.

/// One webhook delivery as the provider keeps it: retried with the same id until it gets a 2xx.
struct Delivery {
    account: usize,
    webhook_id: String,
    event_key: String,
    body: String,
    acked: AtomicBool,
}

struct Call {
    account: usize,
    call_id: String,
}

/// The seed's calls (each rings, then ends), from known and unknown numbers, and their deliveries in
/// sending order: a call's ringing goes before its end, and about one delivery in ten is a duplicate
/// (the same delivery again, or the same event under a new webhook id).
fn plan(seed: u64, events: usize, known: &[Vec<String>]) -> (Vec<Call>, Vec<Delivery>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let accounts = known.len();
    let call_count = (events * 10 / 22).max(1);
    let start = 1_764_000_000 + i64::try_from(seed % 1_000_000).unwrap();
    let mut unknown: Vec<Vec<String>> = vec![Vec::new(); accounts];
    let mut calls = Vec::with_capacity(call_count);
    let mut events: Vec<(usize, String, String)> = Vec::with_capacity(call_count * 2);
    for n in 0..call_count {
        let account = rng.random_range(0..accounts);
        let from = if rng.random_bool(0.5) {
            known[account][rng.random_range(0..known[account].len())].clone()
        } else if !unknown[account].is_empty() && rng.random_bool(0.3) {
            // A caller the account has not heard of before this run, calling again.
            unknown[account][rng.random_range(0..unknown[account].len())].clone()
        } else {
            let number = format!("+55219{:08}", rng.random_range(0..100_000_000u32));
            unknown[account].push(number.clone());
            number
        };
        let call_id = format!("crash-{seed}-{n}");
        let started = start + i64::try_from(n).unwrap();
        for (status, kind) in [("ringing", "call.ringing"), ("ended", "call.ended")] {
            let mut event = json!({
                "callId": call_id, "voipAccountId": "sandbox-voip", "from": from, "to": LINE,
                "status": status, "type": kind, "direction": "inbound", "startTime": started,
            });
            if status == "ended" {
                event["duration"] = json!(rng.random_range(5..600));
            }
            events.push((account, format!("{call_id}/{kind}"), event.to_string()));
        }
        calls.push(Call { account, call_id });
    }

    // Random order, then each call's ringing moved before its end.
    let mut order: Vec<usize> = (0..events.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut slot_of = vec![0; events.len()];
    for (slot, &event) in order.iter().enumerate() {
        slot_of[event] = slot;
    }
    for call in 0..call_count {
        let (ringing, ended) = (2 * call, 2 * call + 1);
        if slot_of[ringing] > slot_of[ended] {
            order.swap(slot_of[ringing], slot_of[ended]);
            slot_of.swap(ringing, ended);
        }
    }
    let mut deliveries: Vec<Delivery> = order
        .iter()
        .enumerate()
        .map(|(n, &event)| {
            let (account, event_key, body) = &events[event];
            Delivery {
                account: *account,
                webhook_id: format!("msg_{seed}_{n}"),
                event_key: event_key.clone(),
                body: body.clone(),
                acked: AtomicBool::new(false),
            }
        })
        .collect();
    let duplicates = events.len() / 10;
    for n in 0..duplicates {
        let original = rng.random_range(0..deliveries.len());
        let copy = &deliveries[original];
        let webhook_id = if rng.random_bool(0.5) { copy.webhook_id.clone() } else { format!("msg_{seed}_dup{n}") };
        let duplicate = Delivery {
            account: copy.account,
            webhook_id,
            event_key: copy.event_key.clone(),
            body: copy.body.clone(),
            acked: AtomicBool::new(false),
        };
        let at = rng.random_range(original + 1..=deliveries.len());
        deliveries.insert(at, duplicate);
    }
    (calls, deliveries)
}

/// The provider: sends deliveries to whichever server process is up, signing each attempt afresh.
struct Provider {
    http: reqwest::Client,
    /// The listening servers' base URLs (change on every restart); deliveries go round-robin.
    bases: RwLock<Vec<String>>,
    turn: AtomicUsize,
    /// Per account: the webhook path and its signing secret.
    hooks: Vec<(String, WebhookSecret)>,
    /// Every answer's status, with the server's generation (0 before the first kill).
    statuses: Mutex<Vec<(u32, u16)>>,
    generation: AtomicUsize,
    completed: AtomicUsize,
}

impl Provider {
    /// A provider sending to `bases` (round-robin), with nothing sent yet.
    fn new(bases: Vec<String>, hooks: Vec<(String, WebhookSecret)>) -> Result<Arc<Provider>, String> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().map_err(|e| e.to_string())?;
        Ok(Arc::new(Provider {
            http,
            bases: RwLock::new(bases),
            turn: AtomicUsize::new(0),
            hooks,
            statuses: Mutex::default(),
            generation: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
        }))
    }

    async fn send(&self, delivery: &Delivery) {
        let (path, secret) = &self.hooks[delivery.account];
        let base = {
            let bases = self.bases.read().unwrap();
            bases[self.turn.fetch_add(1, Ordering::Relaxed) % bases.len()].clone()
        };
        let generation = u32::try_from(self.generation.load(Ordering::SeqCst)).unwrap();
        let timestamp = server::clock::unix_secs();
        let signature = secret.sign(&delivery.webhook_id, timestamp, delivery.body.as_bytes());
        let response = self
            .http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        if let Ok(response) = response {
            let status = response.status();
            // Only a complete answer counts: a connection cut mid-body is no acknowledgement.
            if response.bytes().await.is_ok() {
                self.statuses.lock().unwrap().push((generation, status.as_u16()));
                if status.is_success() {
                    delivery.acked.store(true, Ordering::SeqCst);
                }
            }
        }
        self.completed.fetch_add(1, Ordering::SeqCst);
    }

    async fn send_all(&self, deliveries: &[&Delivery], concurrency: usize) {
        futures_util::stream::iter(deliveries).for_each_concurrent(concurrency, |delivery| self.send(delivery)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The server binary.

/// One server process; SIGKILLed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn kill(&mut self) {
        // std's kill is SIGKILL on Unix: no shutdown code runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Launcher {
    binary: PathBuf,
    public_url: String,
    db_url: String,
    allowed_hosts: String,
    consent_url: String,
    log: PathBuf,
}

impl Launcher {
    /// Starts the binary on `port` (0: a free one) and waits until it answers `/health`.
    async fn start(&self, port: u16) -> Result<ServerProcess, String> {
        let port = if port == 0 { free_port() } else { port };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_BASE_URL", &self.public_url)
            .env("DATABASE_URL", &self.db_url)
            .env("KOMMO_CLIENT_ID", CLIENT_ID)
            .env("KOMMO_CLIENT_SECRET", CLIENT_SECRET)
            .env("SECRET_KEYS", format!("k1:{KEY_B64}"))
            .env("KOMMO_ALLOWED_HOSTS", &self.allowed_hosts)
            .env("KOMMO_CONSENT_URL", &self.consent_url)
            .env("PROVIDER_ALLOW_INSECURE_LOCAL", "true")
            .env("RUST_LOG", "warn,server=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|error| format!("starting {}: {error}", self.binary.display()))?;
        let mut process = ServerProcess { child, url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("the server exited at start ({status})"));
            }
            if let Ok(response) = http.get(format!("{}/health", process.url)).send().await
                && response.status().is_success()
            {
                return Ok(process);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        process.kill();
        Err("the server did not answer /health".into())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The last lines of the server's log, for a failure message.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

// ---------------------------------------------------------------------------------------------------------
// One seed.

async fn run_seed(params: &Params, seed: u64) -> Result<String, String> {
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = logs.path().join("server.log");
    let result = run_seed_logged(params, seed, &log).await;
    result.map_err(|error| format!("{error}\n--- server log (last lines)\n{}", log_tail(&log)))
}

/// The accounts of a run, each on its own local Kommo, installed and configured through a first server
/// process (returned, listening on `port`), with their known callers seeded.
struct Fixture {
    kommos: Vec<World>,
    ids: Vec<u64>,
    launcher: Launcher,
    hooks: Vec<(String, WebhookSecret)>,
    known: Vec<Vec<String>>,
    accounts: Vec<AccountId>,
}

async fn fixture(params: &Params, port: u16, log: &std::path::Path) -> Result<(Fixture, ServerProcess), String> {
    let public_url = format!("http://127.0.0.1:{port}");
    let ids: Vec<u64> = (0..params.accounts as u64).map(|i| FIRST_ACCOUNT + i).collect();
    let first = world_without_server(&public_url, ids[0]).await;
    let mut kommos: Vec<World> = vec![first];
    for &id in &ids[1..] {
        let another = kommos[0].another_kommo(id).await;
        kommos.push(another);
    }
    let launcher = Launcher {
        binary: params.binary.clone(),
        public_url: public_url.clone(),
        db_url: kommos[0].db_url.clone(),
        allowed_hosts: kommos.iter().map(|world| format!("http://{}", world.kommo_host)).collect::<Vec<_>>().join(","),
        consent_url: format!("{}/oauth", kommos[0].kommo),
        log: log.to_owned(),
    };
    let server = launcher.start(port).await?;

    // Each account installed and configured; its known callers seeded in its Kommo.
    let mut hooks = Vec::new();
    let mut known = Vec::new();
    let mut accounts = Vec::new();
    for (world, &id) in kommos.iter().zip(&ids) {
        let (path, secret) = world.configure(id, shared::CallHandling::default()).await;
        hooks.push((path, WebhookSecret::parse(&secret).map_err(|e| e.to_string())?));
        let mut numbers = Vec::new();
        for n in 0..KNOWN_PER_ACCOUNT {
            let number = format!("+55119{:04}{:04}", id % 10_000, n);
            let leads: &[&str] = if n % 2 == 0 { &["Open deal"] } else { &[] };
            world.seed_contact(id, &format!("Client {n}"), &[&number], leads).await;
            numbers.push(number);
        }
        known.push(numbers);
        accounts
            .push(world.store.account_by_kommo_id(id as i64).await.map_err(|e| e.to_string())?.ok_or("not installed")?);
    }
    Ok((Fixture { kommos, ids, launcher, hooks, known, accounts }, server))
}

async fn run_seed_logged(params: &Params, seed: u64, log: &std::path::Path) -> Result<String, String> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let (Fixture { kommos, ids, launcher, hooks, known, accounts }, mut server) =
        fixture(params, free_port(), log).await?;
    let (calls, deliveries) = plan(seed, params.events, &known);
    let concurrency = rng.random_range(16..=64);
    let kill_after = deliveries.len() * rng.random_range(20..=80) / 100;

    let provider = Provider::new(vec![server.url.clone()], hooks)?;

    // 1. Everything once, at `concurrency`; SIGKILL after `kill_after` answers (or failures), then restart
    //    at once while the provider keeps going.
    let all: Vec<&Delivery> = deliveries.iter().collect();
    let supervisor = async {
        while provider.completed.load(Ordering::SeqCst) < kill_after {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.kill();
        provider.generation.store(1, Ordering::SeqCst);
        let restarted = launcher.start(0).await?;
        *provider.bases.write().unwrap() = vec![restarted.url.clone()];
        Ok::<ServerProcess, String>(restarted)
    };
    let (restarted, ()) = tokio::join!(supervisor, provider.send_all(&all, concurrency));
    let mut server = restarted?;
    let acked_before_resend = deliveries.iter().filter(|d| d.acked.load(Ordering::SeqCst)).count();

    // 2. The provider retries what was never acknowledged, with the same webhook ids.
    let unacked: Vec<&Delivery> = deliveries.iter().filter(|d| !d.acked.load(Ordering::SeqCst)).collect();
    let resent = unacked.len();
    provider.send_all(&unacked, concurrency).await;
    let still_unacked = deliveries.iter().filter(|d| !d.acked.load(Ordering::SeqCst)).count();
    if still_unacked > 0 {
        return Err(format!("{still_unacked} deliveries got no 2xx even when resent to a running server"));
    }

    // 3. Kill while workers wait on Kommo writes that already landed: the local Kommo carries out call writes,
    //    then holds their answers.
    let baseline: Vec<usize> =
        futures_util::future::join_all(kommos.iter().zip(&ids).map(|(w, &id)| call_writes(w, id)))
            .await
            .iter()
            .map(|(writes, _)| *writes)
            .collect();
    for world in &kommos {
        for prefix in ["/api/v4/calls", "/api/v4/leads/unsorted"] {
            world
                .kommo_control(
                    "/sandbox/kommo/faults",
                    json!({"method": "POST", "path_prefix": prefix, "delay_ms": HOLD_MS, "after_commit": true,
                           "count": 100_000}),
                )
                .await;
        }
    }
    let held = wait_for_held_writes(&kommos, &ids, &baseline).await;
    server.kill();
    provider.generation.store(2, Ordering::SeqCst);
    for world in &kommos {
        world.http.delete(format!("{}/sandbox/kommo/faults", world.kommo)).send().await.map_err(|e| e.to_string())?;
    }
    if held == 0 {
        return Err("no Kommo write was held when the server was killed the second time (the queue was empty)".into());
    }
    let server = launcher.start(0).await?;

    // 4. The queue drains.
    let store = &kommos[0].store;
    let bound = Duration::from_secs(120) + Duration::from_millis(calls.len() as u64 * 2 * 200 / ids.len() as u64);
    let drained_in = wait_for_drain(store, bound).await?;

    // 5. The oracle.
    let statuses = provider.statuses.lock().unwrap().clone();
    let errors: Vec<_> = statuses.iter().filter(|(_, status)| *status >= 500).collect();
    if !errors.is_empty() {
        return Err(format!("5xx answers (server generation, status): {errors:?}"));
    }
    let refused: Vec<_> = statuses.iter().filter(|(_, status)| !(200..300).contains(status)).collect();
    if !refused.is_empty() {
        return Err(format!("refused deliveries (server generation, status): {refused:?}"));
    }
    check_inbox(store, &accounts, &deliveries).await?;
    check_jobs(store).await?;
    for (n, (world, &id)) in kommos.iter().zip(&ids).enumerate() {
        let expected: BTreeSet<&str> =
            calls.iter().filter(|call| call.account == n).map(|call| call.call_id.as_str()).collect();
        check_kommo(world, id, &expected).await?;
    }
    drop(server);
    Ok(format!(
        "{} deliveries ({} calls, {} accounts) at concurrency {concurrency}; killed after {kill_after} answers \
         ({acked_before_resend} acknowledged), {resent} resent; killed again holding {held} Kommo writes; \
         drained {:.1}s after the last restart; {:.1}s in all",
        deliveries.len(),
        calls.len(),
        ids.len(),
        drained_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ))
}

/// Waits (bounded) until call writes landed in the local Kommos since `baseline`; returns how many.
async fn wait_for_held_writes(kommos: &[World], ids: &[u64], baseline: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first_seen: Option<Instant> = None;
    loop {
        let counts = futures_util::future::join_all(kommos.iter().zip(ids).map(|(w, &id)| call_writes(w, id))).await;
        let held: usize = counts.iter().zip(baseline).map(|((now, _), before)| now.saturating_sub(*before)).sum();
        if held > 0 {
            let since = *first_seen.get_or_insert_with(Instant::now);
            // A few held at once (several workers mid-call), without waiting long for them.
            if held >= kommos.len().min(3) || since.elapsed() > Duration::from_secs(2) {
                return held;
            }
        }
        if Instant::now() > deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no job is queued or running; returns how long it took.
async fn wait_for_drain(store: &server::store::Store, bound: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let (queued, running): (i64, i64) =
            sqlx::query_as("SELECT COUNT(CASE WHEN state = 'queued' THEN 1 END), COUNT(CASE WHEN state = 'running' THEN 1 END) FROM jobs")
                .fetch_one(store.pool())
                .await
                .map_err(|e| e.to_string())?;
        if queued == 0 && running == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > bound {
            let stuck: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT subject, state, attempts, last_error FROM jobs WHERE state IN ('queued', 'running') LIMIT 10",
            )
            .fetch_all(store.pool())
            .await
            .unwrap_or_default();
            return Err(format!(
                "the queue did not drain within {bound:?}: {queued} queued, {running} running, e.g. {stuck:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged delivery's event is in the inbox exactly once, and the inbox holds nothing else.
async fn check_inbox(
    store: &server::store::Store,
    accounts: &[AccountId],
    deliveries: &[Delivery],
) -> Result<(), String> {
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT account_id, event_key, webhook_id FROM webhook_inbox")
            .fetch_all(store.pool())
            .await
            .map_err(|e| e.to_string())?;
    let mut stored: HashMap<(i64, &str), usize> = HashMap::new();
    for (account, event_key, _) in &rows {
        *stored.entry((*account, event_key.as_str())).or_default() += 1;
    }
    let mut expected: BTreeSet<(i64, &str)> = BTreeSet::new();
    for delivery in deliveries.iter().filter(|d| d.acked.load(Ordering::SeqCst)) {
        let key = (accounts[delivery.account].get(), delivery.event_key.as_str());
        match stored.get(&key) {
            Some(1) => {}
            Some(n) => return Err(format!("event {} ({}) is in the inbox {n} times", key.1, delivery.webhook_id)),
            None => return Err(format!("acknowledged event {} ({}) is not in the inbox", key.1, delivery.webhook_id)),
        }
        expected.insert(key);
    }
    let ids: BTreeSet<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
    if let Some((_, key, id)) = rows.iter().find(|(_, _, id)| !ids.contains(id.as_str())) {
        return Err(format!("the inbox holds {key} under webhook id {id}, which was never sent"));
    }
    if rows.len() != expected.len() {
        return Err(format!(
            "the inbox holds {} events; {} distinct ones were acknowledged",
            rows.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// The queue is empty: nothing queued, running (past its lease or not) or dead; every call delivered.
async fn check_jobs(store: &server::store::Store) -> Result<(), String> {
    let states: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    let states: BTreeMap<String, i64> = states.into_iter().collect();
    if states.keys().any(|state| state != "done") {
        let dead: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT subject, last_error FROM jobs WHERE state = 'dead' LIMIT 5")
                .fetch_all(store.pool())
                .await
                .unwrap_or_default();
        return Err(format!("jobs by state after the drain: {states:?}; dead letters: {dead:?}"));
    }
    let undelivered: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT call_id, delivery_status, delivery_error FROM voip_calls WHERE delivery_status <> 'delivered' LIMIT 10",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    if !undelivered.is_empty() {
        return Err(format!("calls not delivered to Kommo after the drain: {undelivered:?}"));
    }
    Ok(())
}

/// The call writes Kommo carried out for `account` (a `POST /api/v4/calls` item, an unsorted sip item or a
/// call note): how many, and their uniqs.
async fn call_writes(world: &World, account: u64) -> (usize, Vec<String>) {
    let mut uniqs = Vec::new();
    for write in world.kommo_writes(account).await {
        if write["committed"] != true || write["method"] != "POST" {
            continue;
        }
        let items = match &write["body"] {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in items {
            let is_call_note = matches!(item["note_type"].as_str(), Some("call_in" | "call_out"));
            let uniq = item["uniq"]
                .as_str()
                .or_else(|| item["metadata"]["uniq"].as_str())
                .or_else(|| if is_call_note { item["params"]["uniq"].as_str() } else { None });
            if let Some(uniq) = uniq {
                uniqs.push(uniq.to_owned());
            }
        }
    }
    (uniqs.len(), uniqs)
}

/// Kommo saw exactly one call write per call of the account, and flagged no uniq as written twice.
async fn check_kommo(world: &World, account: u64, expected: &BTreeSet<&str>) -> Result<(), String> {
    let stats = world.stats().await;
    if stats["duplicate_uniqs"].as_array().is_none_or(|list| !list.is_empty()) {
        return Err(format!("account {account}: Kommo saw calls written twice: {}", stats["duplicate_uniqs"]));
    }
    let (count, uniqs) = call_writes(world, account).await;
    let written: BTreeSet<&str> = uniqs.iter().map(String::as_str).collect();
    if count != written.len() {
        return Err(format!("account {account}: {count} call writes for {} distinct calls", written.len()));
    }
    if written != *expected {
        let missing: Vec<_> = expected.difference(&written).take(10).collect();
        let extra: Vec<_> = written.difference(expected).take(10).collect();
        return Err(format!(
            "account {account}: {} calls ended, {} written to Kommo; missing {missing:?}, unexpected {extra:?}",
            expected.len(),
            written.len()
        ));
    }
    Ok(())
}
