//! The ingest benchmark (`cargo xtask bench`): in one run on this machine,
//! (a) a bare axum handler (200 to a POST, the same body) in its own process, and, for each engine
//!     (SQLite, and PostgreSQL when `BENCH_POSTGRES_URL` names a server: `cargo xtask bench` starts a
//!     throwaway one with durable commits),
//! (b) the server binary's signed-webhook ingest (signature check, group commit; SQLite in WAL mode with
//!     `synchronous = FULL`), calls as providers report them (each rings, then ends; an end queues the
//!     call's job, which the worker runs meanwhile against the local Kommo),
//! both driven by the same closed-loop load generator (keep-alive, fixed concurrency, fixed duration):
//! requests/s, p50/p99 and their ratio, beside (b') one delivery repeated (the same path without a write
//! or a job, to tell the HTTP and verification cost from the storage cost); then
//! (c) p50/p99 at a fixed open-loop rate (latency counted from each request's scheduled time, so a stall is
//!     not hidden by the generator waiting for it);
//! (d) Kommo requests per logged call (the local Kommo's counters, SQLite), each call ringing a second
//!     (the popup's lookup of the caller counted too) then ended: a known number and an unknown one sent to
//!     unsorted, each cold and again, and a missed call from the known number, once the account's phone
//!     index is synced;
//! (e) the server's peak RSS (VmHWM);
//! (f) the phone index (SQLite): the first sync of an account of 10,000 contacts (its duration and its
//!     share of the account's 7 requests/s), the index's size on disk per 100,000 numbers, and the
//!     provider's caller-ID answer p50/p99 with 100,000 numbers in the index.
//! It also prints what limits the figures: the cost of one fsync on this disk, the server's CPU, the jobs
//! left due, and the server log's slow-statement and "database is locked" counts. (d) runs first, on a quiet
//! server.
//! Figures only, no assertions on timing. Knobs: `BENCH_SECS` (10), `BENCH_CONCURRENCY` (64), `BENCH_RATE`
//! (1000), `BENCH_RUST_LOG` (the server's log filter, default `info,sqlx=warn` as in production).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::json;
use support::{CLIENT_ID, CLIENT_SECRET, KEY_B64, World};
use webhook_signing::WebhookSecret;

/// Set in the child process that serves the bare handler.
const BARE_ENV: &str = "INGEST_BENCH_BARE_ADDR";
const INGEST_ACCOUNT: u64 = 31_200_001;
const KOMMO_ACCOUNT: u64 = 31_200_002;
const INDEX_ACCOUNT: u64 = 31_200_003;
/// Contacts of the account whose first sync (f) measures.
const INDEX_CONTACTS: usize = 10_000;
/// Numbers in that account's index when its caller-ID answers are measured.
const INDEX_NUMBERS: usize = 100_000;
/// Caller-ID questions asked, one at a time.
const CALLER_ID_QUESTIONS: usize = 2_000;
const KNOWN_NUMBER: &str = "+5511987650001";
const UNKNOWN_NUMBER: &str = "+5521987650002";

fn main() {
    if let Ok(addr) = std::env::var(BARE_ENV) {
        bare_server(&addr);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(bench());
}

/// (a) The baseline: an axum handler that reads the body and answers 200 with the same JSON shape as ours.
fn bare_server(addr: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/hooks/voip/{hook_id}",
            post(|body: Bytes| async move { Json(json!({"stored": !body.is_empty(), "duplicate": false})) }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.expect("binding the bare server");
        axum::serve(listener, app).await.expect("serving");
    });
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

/// A child process killed when dropped.
struct Process(Child);

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(url: &str, path: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(response) = http.get(format!("{url}{path}")).send().await
            && response.status().as_u16() < 500
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not start");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The average cost of a 4 KiB append + fsync in `dir`, milliseconds.
fn fsync_cost_ms(dir: &Path) -> f64 {
    use std::io::Write;
    let path = dir.join("ingest-bench-fsync.tmp");
    let mut file = std::fs::File::create(&path).expect("a scratch file");
    let started = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        file.write_all(&[0u8; 4096]).expect("writing the scratch file");
        file.sync_all().expect("fsync");
    }
    let cost = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
    let _ = std::fs::remove_file(path);
    cost
}

/// CPU seconds (user + system) the process used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) end with ')'; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // The kernel's USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds (user + system) every PostgreSQL process on this machine used so far (the database's
/// share of the cores, which the server's own figure leaves out).
fn postgres_cpu_secs() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres"))
        .map(cpu_secs)
        .sum()
}

/// A `/proc/<pid>/status` figure in KiB (`VmHWM:` is the peak resident set, `VmRSS:` the current one).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Signed requests to one webhook path: a new event each time (unique webhook id), two per call.
struct Target {
    base: String,
    path: String,
    secret: WebhookSecret,
    next: AtomicU64,
    tag: &'static str,
    /// Send the same delivery every time (stored once: no new row, no job).
    repeat: bool,
}

impl Target {
    /// Calls as providers report them: every call rings, then ends (so half the events end a call and
    /// queue its job, which the worker runs meanwhile against the local Kommo).
    fn request(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let n = if self.repeat { 0 } else { self.next.fetch_add(1, Ordering::Relaxed) };
        let (call, ended) = (n / 2, n % 2 == 1);
        let mut body = json!({
            "callId": format!("bench-{}-{call}", self.tag), "voipAccountId": "sandbox-voip", "from": "+5511912345678",
            "to": "+551133334444", "status": "ringing", "type": "call.ringing", "direction": "inbound",
            "startTime": 1_764_000_000 + call, "extension": "101",
        });
        if ended {
            body["status"] = json!("ended");
            body["type"] = json!("call.ended");
            body["duration"] = json!(30);
        }
        let body = body.to_string();
        signed(http, &format!("{}{}", self.base, self.path), &self.secret, &format!("msg_{}_{n}", self.tag), body)
    }
}

fn signed(
    http: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    id: &str,
    body: String,
) -> reqwest::RequestBuilder {
    let timestamp = server::clock::unix_secs();
    http.post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", secret.sign(id, timestamp, body.as_bytes()))
        .body(body)
}

#[derive(Debug, Default)]
struct Run {
    ok: u64,
    failed: u64,
    /// Why requests failed, with counts.
    failures: std::collections::BTreeMap<String, u64>,
    /// Microseconds, sorted.
    latencies: Vec<u64>,
    elapsed: Duration,
    /// CPU the serving process used meanwhile, in % of one core.
    cpu_percent: f64,
    /// The serving process's resident memory after the run, KiB.
    rss_kib: Option<u64>,
}

impl Run {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        *self.failures.entry(why).or_default() += 1;
    }
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index] as f64 / 1000.0
    }
}

/// Sends one request; `Err` names why it failed (a status, or the kind of transport error).
async fn send_one(http: &reqwest::Client, target: &Target) -> Result<(), String> {
    let response = target
        .request(http)
        .send()
        .await
        .map_err(|error| if error.is_timeout() { "timeout".to_owned() } else { "connection error".to_owned() })?;
    let status = response.status();
    response.bytes().await.map_err(|_| "body cut".to_owned())?;
    if status.is_success() { Ok(()) } else { Err(status.as_u16().to_string()) }
}

/// `run` with the CPU that process `pid` used meanwhile.
async fn with_cpu(pid: u32, run: impl std::future::Future<Output = Run>) -> Run {
    let before = cpu_secs(pid);
    let mut run = run.await;
    run.cpu_percent = (cpu_secs(pid) - before) / run.elapsed.as_secs_f64() * 100.0;
    run.rss_kib = proc_status_kib(pid, "VmRSS:");
    run
}

/// Closed loop: `concurrency` workers, each sending its next request when the last one was answered.
async fn closed_loop(http: &reqwest::Client, target: &Arc<Target>, concurrency: u64, duration: Duration) -> Run {
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, target) = (http.clone(), target.clone());
            tokio::spawn(async move {
                let mut run = Run::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match send_one(&http, &target).await {
                        Ok(()) => {
                            run.ok += 1;
                            run.latencies.push(sent.elapsed().as_micros() as u64);
                        }
                        Err(why) => run.fail(why),
                    }
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for worker in workers {
        let run = worker.await.expect("a load worker");
        total.ok += run.ok;
        for (why, count) in run.failures {
            total.failed += count;
            *total.failures.entry(why).or_default() += count;
        }
        total.latencies.extend(run.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

/// Open loop: one request every `1/rate` s whatever the answers; latency from the scheduled time.
async fn open_loop(http: &reqwest::Client, target: &Arc<Target>, rate: u64, duration: Duration) -> Run {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::new();
    while started.elapsed() < duration {
        let scheduled = ticks.tick().await;
        let (http, target) = (http.clone(), target.clone());
        requests.push(tokio::spawn(async move {
            let outcome = send_one(&http, &target).await;
            (outcome, scheduled.elapsed().as_micros() as u64)
        }));
    }
    let mut run = Run::default();
    for request in requests {
        match request.await.expect("a request task") {
            (Ok(()), latency) => {
                run.ok += 1;
                run.latencies.push(latency);
            }
            (Err(why), _) => run.fail(why),
        }
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    run
}

fn start_server(public_url: &str, port: u16, db_url: &str, kommos: &[&World], log: &Path) -> Process {
    let log = std::fs::File::create(log).expect("the server's log file");
    let allowed: Vec<String> = kommos.iter().map(|world| format!("http://{}", world.kommo_host)).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("PUBLIC_BASE_URL", public_url)
        .env("DATABASE_URL", db_url)
        .env("KOMMO_CLIENT_ID", CLIENT_ID)
        .env("KOMMO_CLIENT_SECRET", CLIENT_SECRET)
        .env("SECRET_KEYS", format!("k1:{KEY_B64}"))
        .env("KOMMO_ALLOWED_HOSTS", allowed.join(","))
        .env("KOMMO_CONSENT_URL", format!("{}/oauth", kommos[0].kommo))
        .env("PROVIDER_ALLOW_INSECURE_LOCAL", "true")
        // One account's own ingest budget (50 events/s by default) would refuse most of the load: the
        // bench measures what the store can take, so the budget is lifted out of the way.
        .env("INGEST_RATE_PER_ACCOUNT", "1000000")
        .env("INGEST_BURST_PER_ACCOUNT", "1000000")
        .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log)
        .spawn()
        .expect("the server binary starts");
    Process(child)
}

/// How long the calls of (d) ring before they end.
const RING: Duration = Duration::from_secs(1);

/// Kommo's requests for one call (ringing for [`RING`], then ended) from `from`: `(requests, by path)`.
async fn kommo_requests_for_call(
    world: &World,
    account: u64,
    url: &str,
    secret: &WebhookSecret,
    call_id: &str,
    from: &str,
    answered: bool,
) -> (u64, String) {
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();
    let end = if answered { ("ended", "call.ended") } else { ("missed", "call.missed") };
    for (n, (status, kind)) in [("ringing", "call.ringing"), end].into_iter().enumerate() {
        let mut event = json!({"callId": call_id, "voipAccountId": "sandbox-voip", "from": from,
                               "to": "+551133334444", "status": status, "type": kind, "direction": "inbound",
                               "startTime": 1_764_000_000});
        if status == "ended" {
            event["duration"] = json!(42);
        }
        if status == "missed" {
            event["duration"] = json!(0);
        }
        let response =
            signed(&world.http, url, secret, &format!("msg_{call_id}_{n}"), event.to_string()).send().await.unwrap();
        assert!(response.status().is_success(), "{call_id}: {}", response.status());
        if status == "ringing" {
            // A call rings for a while: the popup's lookup of the caller (which primes the processor's
            // cache) has finished when the end arrives, as on a real line, rather than racing it.
            tokio::time::sleep(RING).await;
        }
    }
    let account_id = world.store.account_by_kommo_id(account as i64).await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (pending, status): (i64, Option<String>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE account_id = $1 AND subject = $2 AND state IN ('queued', 'running')),
                    (SELECT delivery_status FROM voip_calls WHERE account_id = $1 AND call_id = $2)",
        )
        .bind(account_id.get())
        .bind(call_id)
        .fetch_one(world.store.pool())
        .await
        .unwrap();
        if pending == 0 && status.as_deref() == Some("delivered") {
            break;
        }
        assert!(Instant::now() < deadline, "{call_id} was not delivered to Kommo (status {status:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (attempts,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM jobs WHERE account_id = $1 AND subject = $2",
    )
    .bind(account_id.get())
    .bind(call_id)
    .fetch_one(world.store.pool())
    .await
    .unwrap();
    let stats = world.stats().await;
    let account_stats = &stats["accounts"][account.to_string()];
    let by_path = account_stats["by_path"]
        .as_object()
        .map(|paths| paths.iter().map(|(path, count)| format!("{path} ×{count}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    // Two events make at least two job runs; more means a run was retried (its lookups count too).
    let runs = if attempts > 2 { format!("  ({attempts} job runs)") } else { String::new() };
    (account_stats["requests"].as_u64().unwrap_or(0), format!("{by_path}{runs}"))
}

/// One engine's runs: the server binary on a fresh database of that engine.
struct EngineRuns {
    name: &'static str,
    detail: String,
    repeat: Run,
    ingest: Run,
    open: Run,
    /// Jobs still due after the runs.
    backlog: i64,
    /// The server's peak RSS, KiB.
    hwm: Option<u64>,
    log: std::path::PathBuf,
    /// CPU the PostgreSQL processes used during (b), in % of one core (0 on SQLite, which runs in the server).
    database_cpu: f64,
}

/// A server on `db_url` with one configured account; `kommo` (d) runs first on the first engine only.
async fn engine_runs(
    name: &'static str,
    db_url: String,
    dir: tempfile::TempDir,
    http: &reqwest::Client,
    knobs: (u64, u64, Duration),
    kommo: Option<&mut KommoFigures>,
) -> EngineRuns {
    let (concurrency, rate, duration) = knobs;
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let ingest_kommo = support::world_without_server_on(&public_url, INGEST_ACCOUNT, db_url, dir).await;
    let calls_kommo = ingest_kommo.another_kommo(KOMMO_ACCOUNT).await;
    let index_kommo = ingest_kommo.another_kommo(INDEX_ACCOUNT).await;
    let server_log =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ingest-bench-server-{}.log", name.to_lowercase()));
    let kommos = [&ingest_kommo, &calls_kommo, &index_kommo];
    let server = start_server(&public_url, port, &ingest_kommo.db_url, &kommos, &server_log);
    wait_healthy(&public_url, "/health").await;
    let (ingest_path, ingest_secret) = ingest_kommo.configure(INGEST_ACCOUNT, shared::CallHandling::default()).await;
    let detail = if name == "SQLite" {
        let journal: (String,) =
            sqlx::query_as("PRAGMA journal_mode").fetch_one(ingest_kommo.store.pool()).await.unwrap();
        format!("journal_mode={} synchronous=FULL", journal.0)
    } else {
        let version: (String,) =
            sqlx::query_as("SHOW server_version").fetch_one(ingest_kommo.store.pool()).await.unwrap();
        let sync: (String,) =
            sqlx::query_as("SHOW synchronous_commit").fetch_one(ingest_kommo.store.pool()).await.unwrap();
        let fsync: (String,) = sqlx::query_as("SHOW fsync").fetch_one(ingest_kommo.store.pool()).await.unwrap();
        format!("server {} on this machine, synchronous_commit={} fsync={}", version.0, sync.0, fsync.0)
    };

    if let Some(kommo) = kommo {
        // On a quiet server first: what one call costs in Kommo requests, undisturbed by the load below,
        // once the account's phone index is synced (the known caller is in Kommo before the install).
        eprintln!("(d) Kommo requests per logged call…");
        calls_kommo.seed_contact(KOMMO_ACCOUNT, "Known caller", &[KNOWN_NUMBER], &["Open deal"]).await;
        let (calls_path, calls_secret) = calls_kommo.configure(KOMMO_ACCOUNT, shared::CallHandling::default()).await;
        wait_index_complete(&calls_kommo, KOMMO_ACCOUNT).await;
        let calls_url = format!("{public_url}{calls_path}");
        let calls_secret = WebhookSecret::parse(&calls_secret).unwrap();
        for (label, call_id, from, answered) in [
            ("known number, cold", "kommo-known-1", KNOWN_NUMBER, true),
            ("known number, again", "kommo-known-2", KNOWN_NUMBER, true),
            ("unknown number → unsorted, cold", "kommo-unknown-1", UNKNOWN_NUMBER, true),
            ("same number, again", "kommo-unknown-2", UNKNOWN_NUMBER, true),
            ("known number, missed → call + task", "kommo-missed-1", KNOWN_NUMBER, false),
        ] {
            let (requests, by_path) = kommo_requests_for_call(
                &calls_kommo,
                KOMMO_ACCOUNT,
                &calls_url,
                &calls_secret,
                call_id,
                from,
                answered,
            )
            .await;
            kommo.per_call.push((label, requests, by_path));
        }
        eprintln!("(f) the phone index: a first sync of {INDEX_CONTACTS} contacts, then caller-ID answers…");
        kommo.index = Some(index_figures(&index_kommo, &public_url, http).await);
    }

    let secret = WebhookSecret::parse(&ingest_secret).unwrap();
    let target = |tag: &'static str, repeat: bool| {
        Arc::new(Target {
            base: public_url.clone(),
            path: ingest_path.clone(),
            secret: secret.clone(),
            next: AtomicU64::new(0),
            tag,
            repeat,
        })
    };
    let (repeat_target, ingest_target) = (target("repeat", true), target("ingest", false));
    let secs = duration.as_secs();
    closed_loop(http, &repeat_target, concurrency, Duration::from_secs(1)).await;
    eprintln!("{name} (b') one delivery repeated (ingest path without a write or a job), closed loop…");
    let repeat = with_cpu(server.pid(), closed_loop(http, &repeat_target, concurrency, duration)).await;
    eprintln!("{name} (b) signed-webhook ingest, closed loop, concurrency {concurrency}, {secs} s…");
    let database_before = postgres_cpu_secs();
    let ingest = with_cpu(server.pid(), closed_loop(http, &ingest_target, concurrency, duration)).await;
    let database_cpu = (postgres_cpu_secs() - database_before) / ingest.elapsed.as_secs_f64() * 100.0;
    eprintln!("{name} (c) open loop at {rate}/s, {secs} s…");
    let open = with_cpu(server.pid(), open_loop(http, &ingest_target, rate, duration)).await;
    let now = server::clock::unix_millis();
    let backlog: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND run_at <= $1")
            .bind(now)
            .fetch_one(ingest_kommo.store.pool())
            .await
            .unwrap();
    let hwm = proc_status_kib(server.pid(), "VmHWM:");
    drop(server);
    EngineRuns { name, detail, repeat, ingest, open, backlog: backlog.0, hwm, log: server_log, database_cpu }
}

async fn bench() {
    let secs = knob("BENCH_SECS", 10);
    let concurrency = knob("BENCH_CONCURRENCY", 64);
    let rate = knob("BENCH_RATE", 1000);
    let duration = Duration::from_secs(secs);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let postgres = std::env::var("BENCH_POSTGRES_URL").ok().filter(|url| !url.is_empty());
    let http = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build().unwrap();

    // (a) the bare handler, once for both engines.
    let bare_port = free_port();
    let bare_url = format!("http://127.0.0.1:{bare_port}");
    let bare = Process(
        Command::new(std::env::current_exe().unwrap())
            .env(BARE_ENV, format!("127.0.0.1:{bare_port}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("the bare server starts"),
    );
    wait_healthy(&bare_url, "/").await;
    let bare_target = Arc::new(Target {
        base: bare_url.clone(),
        path: "/hooks/voip/bare".into(),
        secret: WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        next: AtomicU64::new(0),
        tag: "bare",
        repeat: false,
    });
    eprintln!("warming up (1 s)…");
    closed_loop(&http, &bare_target, concurrency, Duration::from_secs(1)).await;
    eprintln!("(a) bare handler, closed loop, concurrency {concurrency}, {secs} s…");
    let bare_run = with_cpu(bare.pid(), closed_loop(&http, &bare_target, concurrency, duration)).await;
    let bare_open = with_cpu(bare.pid(), open_loop(&http, &bare_target, rate, duration)).await;
    let bare_hwm = proc_status_kib(bare.pid(), "VmHWM:");
    drop(bare);

    let mut kommo = KommoFigures::default();
    let knobs = (concurrency, rate, duration);
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", sqlite_dir.path().join("bench.sqlite").display());
    let mut engines = vec![engine_runs("SQLite", sqlite_url, sqlite_dir, &http, knobs, Some(&mut kommo)).await];
    match &postgres {
        Some(server) => {
            let url = support::database::postgres_database(server).await;
            engines.push(engine_runs("PostgreSQL", url, tempfile::tempdir().unwrap(), &http, knobs, None).await);
        }
        None => eprintln!("BENCH_POSTGRES_URL is not set: PostgreSQL not measured (`cargo xtask bench` sets it)"),
    }
    let fsync_ms = fsync_cost_ms(Path::new(env!("CARGO_TARGET_TMPDIR")));

    println!();
    println!("ingest benchmark — {cores} cores, loopback, one load generator (reqwest, keep-alive), {secs} s per run");
    println!("server: release build, group commit; the same bare handler measured once for both engines");
    for engine in &engines {
        println!("  {}: {}", engine.name, engine.detail);
    }
    println!("CPU and RSS: of the serving process (CPU in % of one core during the run, RSS after it)");
    println!();
    println!("{:<48} {:>8} {:>8} {:>8} {:>7} {:>5} {:>8}", "", "req/s", "p50 ms", "p99 ms", "failed", "CPU", "RSS MiB");
    let row = |name: &str, run: &Run| {
        println!(
            "{name:<48} {:>8.0} {:>8.2} {:>8.2} {:>7} {:>4.0}% {:>8.1}",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99),
            run.failed,
            run.cpu_percent,
            run.rss_kib.unwrap_or(0) as f64 / 1024.0
        );
        if !run.failures.is_empty() {
            println!("    failures: {:?}", run.failures);
        }
    };
    row(&format!("(a) bare axum handler, {concurrency} in flight"), &bare_run);
    for engine in &engines {
        row(&format!("(b) {} signed ingest, {concurrency} in flight", engine.name), &engine.ingest);
        println!("    ratio (b)/(a): {:.0} %   (goal ≥ 40 %)", engine.ingest.rate() / bare_run.rate() * 100.0);
    }
    for engine in &engines {
        row(&format!("(b') {} one delivery repeated: no write, no job", engine.name), &engine.repeat);
    }
    row(&format!("(c) bare handler at {rate}/s (open loop)"), &bare_open);
    for engine in &engines {
        row(&format!("(c) {} signed ingest at {rate}/s (open loop)", engine.name), &engine.open);
    }
    println!("    goal: p99 ≤ 10 ms at 1,000/s");
    println!();
    println!(
        "(d) Kommo requests per logged call, SQLite, ringing {} s then ended; the popup's lookup included \
         (goal: known ≤ 2, unknown → unsorted ≤ 1)",
        RING.as_secs()
    );
    for (label, requests, by_path) in &kommo.per_call {
        println!("    {label:<34} {requests:>3}   {by_path}");
    }
    println!();
    if let Some(index) = &kommo.index {
        let budget = index.sync.as_secs_f64() * 7.0;
        println!("(f) phone index, SQLite");
        println!(
            "    first sync of {} contacts: {:.1} s, {} Kommo requests ({} of contacts and companies) = {:.0} % of the \
             account's 7 requests/s meanwhile",
            index.contacts,
            index.sync.as_secs_f64(),
            index.requests,
            index.listing_requests,
            index.requests as f64 / budget * 100.0
        );
        match index.bytes_per_100k {
            Some(bytes) => println!("    size on disk: {:.1} MiB per 100,000 numbers", bytes / 1024.0 / 1024.0),
            None => println!("    size on disk: n/a"),
        }
        println!(
            "    caller-ID answer with {} numbers indexed, {} questions one at a time (half known): p50 {:.2} ms, \
             p99 {:.2} ms, {} failed (goal p99 ≤ 5 ms)",
            index.numbers,
            index.caller_id.ok + index.caller_id.failed,
            index.caller_id.percentile(0.50),
            index.caller_id.percentile(0.99),
            index.caller_id.failed
        );
        println!("    the answers' sources: {}", index.sources);
        println!();
    }
    let mib = |kib: Option<u64>| kib.map_or("n/a".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0));
    let peaks: Vec<String> =
        engines.iter().map(|engine| format!("server on {} {}", engine.name, mib(engine.hwm))).collect();
    println!("(e) peak RSS (VmHWM): {}, bare handler {} (goal ≤ 60 MB)", peaks.join(", "), mib(bare_hwm));
    println!();
    println!("durability: every 200 of (b) and (c) was answered after its group's COMMIT returned (SQLite:");
    println!("synchronous=FULL, after the WAL's fsync; PostgreSQL: after the commit's WAL flush when fsync is on).");
    println!("what limits (b) and (c) on this machine:");
    println!("  - one fsync here takes {fsync_ms:.2} ms (4 KiB write + fsync, same disk);");
    for engine in &engines {
        let log = std::fs::read_to_string(&engine.log).unwrap_or_default();
        println!(
            "  - {}: (b') the HTTP, signature and lookup path without a write runs at {:.0}/s ({:.0} % of (a)); \
             in (b) the server used {:.0} % CPU and PostgreSQL's processes {:.0} %; {} jobs were still due \
             after the runs; the log holds {} slow-statement warnings and {} \"database is locked\" errors ({})",
            engine.name,
            engine.repeat.rate(),
            engine.repeat.rate() / bare_run.rate() * 100.0,
            engine.ingest.cpu_percent,
            engine.database_cpu,
            engine.backlog,
            log.matches("slow statement").count(),
            log.matches("database is locked").count(),
            engine.log.display()
        );
    }
    println!("  - the load generator shares the {cores} cores with the server (and the bare handler in (a)).");
}

/// What (d) and (f) measured.
#[derive(Default)]
struct KommoFigures {
    per_call: Vec<(&'static str, u64, String)>,
    index: Option<IndexFigures>,
}

/// (f) The phone index's figures.
struct IndexFigures {
    contacts: usize,
    /// From the settings save to the first pass's end.
    sync: Duration,
    /// Kommo requests of the account meanwhile, and those of them that listed contacts and companies.
    requests: u64,
    listing_requests: u64,
    numbers: i64,
    bytes_per_100k: Option<f64>,
    caller_id: Run,
    sources: String,
}

/// Waits (up to 2 minutes) until the account's first sync is complete.
async fn wait_index_complete(world: &World, account: u64) {
    let account = world.store.account_by_kommo_id(account as i64).await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.store.phone_sync(account).await.unwrap().and_then(|sync| sync.complete_at).is_none() {
        assert!(Instant::now() < deadline, "the phone index of account {account:?} was not synced in 2 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database's size in bytes (SQLite; `None` elsewhere), its WAL checkpointed first.
async fn sqlite_bytes(world: &World) -> Option<f64> {
    let pool = world.store.pool();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.ok()?;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(pool).await.ok()?;
    let size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await.ok()?;
    Some((pages * size) as f64)
}

async fn index_figures(world: &World, public_url: &str, http: &reqwest::Client) -> IndexFigures {
    let contacts: Vec<serde_json::Value> = (0..INDEX_CONTACTS)
        .map(|n| json!({"name": format!("Client {n}"), "phones": [format!("+551197{n:07}")]}))
        .collect();
    let seeded = world
        .http
        .post(format!("{}/sandbox/kommo/contacts/batch", world.kommo))
        .json(&json!({"account_id": INDEX_ACCOUNT, "contacts": contacts}))
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success(), "bulk seed: {}", seeded.status());
    world.http.post(format!("{}/sandbox/kommo/reset-stats", world.kommo)).send().await.unwrap();
    let started = Instant::now();
    let (path, secret) = world.configure(INDEX_ACCOUNT, shared::CallHandling::default()).await;
    wait_index_complete(world, INDEX_ACCOUNT).await;
    let sync = started.elapsed();
    let stats = world.stats().await;
    let account_stats = &stats["accounts"][INDEX_ACCOUNT.to_string()];
    let requests = account_stats["requests"].as_u64().unwrap_or(0);
    let listing_requests = ["GET /api/v4/contacts", "GET /api/v4/companies"]
        .iter()
        .map(|path| account_stats["by_path"][*path].as_u64().unwrap_or(0))
        .sum();

    // The rest of the 100,000 numbers, written straight into the index (another account's worth of
    // contacts would take Kommo's rate several minutes to sync).
    let account = world.store.account_by_kommo_id(INDEX_ACCOUNT as i64).await.unwrap().unwrap();
    let before = sqlite_bytes(world).await;
    let pool = world.store.pool();
    let mut tx = pool.begin().await.unwrap();
    let ids: Vec<usize> = (INDEX_CONTACTS..INDEX_NUMBERS).collect();
    for chunk in ids.chunks(500) {
        let mut entities = String::from(
            "INSERT INTO phone_entities (account_id, entity_kind, entity_id, name, company_id, responsible_user_id, \
             phone_count, lead_ids, updated_at, seen_at) VALUES ",
        );
        let mut numbers = String::from("INSERT INTO phone_numbers (account_id, e164, entity_kind, entity_id) VALUES ");
        for (k, n) in chunk.iter().enumerate() {
            let sep = if k == 0 { "" } else { "," };
            let (account, id) = (account.get(), 1_000_000_000 + n);
            entities.push_str(&format!(
                "{sep}({account}, 'contacts', {id}, 'Client {n}', NULL, NULL, 1, '[]', 1764000000, 1764000000)"
            ));
            numbers.push_str(&format!("{sep}({account}, '+551197{n:07}', 'contacts', {id})"));
        }
        sqlx::query(&entities).execute(&mut *tx).await.unwrap();
        sqlx::query(&numbers).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let after = sqlite_bytes(world).await;
    let bytes_per_100k =
        before.zip(after).map(|(before, after)| (after - before) / (INDEX_NUMBERS - INDEX_CONTACTS) as f64 * 100_000.0);
    let (numbers, _) = world.store.phone_index_size(account).await.unwrap();

    // The provider's question before it rings: half known numbers (anywhere in the index), half unknown.
    let url = format!("{public_url}{path}/caller-id");
    let secret = WebhookSecret::parse(&secret).unwrap();
    let mut run = Run::default();
    let mut sources = std::collections::BTreeMap::<String, u64>::new();
    let started = Instant::now();
    for question in 0..CALLER_ID_QUESTIONS {
        let number = if question % 2 == 0 {
            format!("+551197{:07}", (question * 7_919) % INDEX_NUMBERS)
        } else {
            format!("+552199{question:07}")
        };
        let body = json!({"number": number}).to_string();
        let sent = Instant::now();
        let answer = signed(http, &url, &secret, &format!("cid_{question}"), body).send().await;
        let took = sent.elapsed().as_micros() as u64;
        match answer {
            Ok(response) if response.status().is_success() => {
                let answer: serde_json::Value = response.json().await.unwrap_or_default();
                let known = if answer["known"] == json!(true) { "known" } else { "unknown" };
                *sources.entry(format!("{known} from {}", answer["source"].as_str().unwrap_or("?"))).or_default() += 1;
                run.ok += 1;
                run.latencies.push(took);
            }
            Ok(response) => {
                run.failed += 1;
                *run.failures.entry(response.status().to_string()).or_default() += 1;
            }
            Err(error) => {
                run.failed += 1;
                *run.failures.entry(error.to_string()).or_default() += 1;
            }
        }
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    let sources = sources.iter().map(|(source, count)| format!("{source} ×{count}")).collect::<Vec<_>>().join(", ");
    IndexFigures {
        contacts: INDEX_CONTACTS,
        sync,
        requests,
        listing_requests,
        numbers,
        bytes_per_100k,
        caller_id: run,
        sources,
    }
}
