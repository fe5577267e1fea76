//! The Asterisk connector: follows the PBX's calls over the Asterisk Manager Interface ([`ami`],
//! [`calls`]), writes each call event into a durable spool and posts it, signed ([`signing`]), to the
//! server's webhook ([`spool`]), and serves the provider contract's click-to-call on a local port ([`api`]).

pub mod ami;
pub mod api;
pub mod calls;
pub mod config;
pub mod recordings;
pub mod spool;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// A running connector.
pub struct Running {
    /// Where the local API listens (the configured address, with the port it got).
    pub api_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops every task and waits for them: what is spooled stays spooled.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Waits until `shutdown` fires, then stops.
    pub async fn until(self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        self.stop().await;
    }
}

/// The calls in progress, in the spool directory, so a restart follows them on.
const STATE_FILE: &str = "calls.state";
/// How often the calls in progress are saved (and at every stop): a crash forgets at most this much.
const STATE_EVERY: Duration = Duration::from_secs(1);

/// Writes the tracker's snapshot durably (a temporary file renamed over the last one).
/// Nothing is written when nothing changed since `last`.
async fn save_state(tracker: &Mutex<calls::Tracker>, path: &std::path::Path, last: &mut Vec<u8>) {
    let bytes = tracker.lock().expect("the tracker lock").snapshot();
    if bytes == *last {
        return;
    }
    last.clone_from(&bytes);
    let (path, tmp) = (path.to_owned(), path.with_extension("state.tmp"));
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("cannot save the calls in progress");
    }
}

/// One item of the AMI client's feed through the tracker.
fn follow(tracker: &Mutex<calls::Tracker>, fed: ami::Feed) -> Vec<shared::FromWebhook> {
    let mut tracker = tracker.lock().expect("the tracker lock");
    match fed {
        ami::Feed::Event(event) => tracker.on_event(&event, unix_now()),
        ami::Feed::Connected { live } => tracker.reconcile(&live, unix_now()),
    }
}

/// Writes call events into the spool, each fsynced before the next. An answered call's end carries its
/// recording's link when the PBX recorded it (MixMonitor closed the file at the hangup).
async fn queue(
    spool: &Arc<spool::Spool>,
    recordings: Option<&recordings::Recordings>,
    reports: Vec<shared::FromWebhook>,
) {
    for mut report in reports {
        if let Some(recordings) = recordings
            && report.status == shared::CallStatus::Ended
            && report.duration.is_some_and(|seconds| seconds > 0)
        {
            let (recordings, call_id, start) = (recordings.clone(), report.call_id.clone(), report.start_time);
            let found = tokio::task::spawn_blocking(move || {
                recordings.find(&call_id, start).map(|relative| recordings.link(&relative))
            })
            .await;
            report.recording_url = found.ok().flatten();
        }
        if let Err(problem) = report.validate() {
            tracing::warn!(call.id = %report.call_id, %problem, "an event the server would refuse; not sent");
            continue;
        }
        let id = calls::webhook_id(&report);
        let body = serde_json::to_vec(&report).expect("a call event serialises");
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.push(&id, &body)).await {
            Ok(Ok(())) => {
                tracing::info!(call.id = %report.call_id, status = report.status.as_str(), "call event queued")
            }
            Ok(Err(error)) => tracing::error!(%error, call.id = %report.call_id, "cannot write the spool: event lost"),
            Err(error) => tracing::error!(%error, "the spool writer failed"),
        }
    }
}

/// The clock: unix seconds.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// Opens the spool, binds the local API, and starts the AMI client, the call tracker and the delivery.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let spool = Arc::new(
        spool::Spool::open(&config.spool_dir)
            .with_context(|| format!("CONNECTOR_SPOOL_DIR: cannot open {}", config.spool_dir.display()))?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("CONNECTOR_LISTEN_ADDR: cannot listen on {}", config.listen_addr))?;
    let api_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let (feed_tx, mut feed) = mpsc::channel(1024);
    let login = ami::Login {
        addr: config.ami_addr.clone(),
        username: config.ami_username.clone(),
        secret: config.ami_secret.clone(),
    };
    let ami = ami::spawn(login, feed_tx, shutdown.clone());
    let mut following =
        calls::Tracker::new(config.account_id.clone(), config.extension_max_len, config.cdr_wait.as_secs_f64());
    let state = config.spool_dir.join(STATE_FILE);
    if let Ok(bytes) = std::fs::read(&state) {
        if following.restore(&bytes) {
            tracing::info!(calls = following.len(), "following the calls in progress at the last stop");
        } else {
            tracing::warn!("the calls in progress at the last stop could not be read; starting afresh");
        }
    }
    let tracker = Arc::new(Mutex::new(following));
    let mut tasks = Vec::new();

    // The tracker: events in, call events out into the spool (fsynced before the next event is read).
    let (tracking, spooling, stopping) = (tracker.clone(), spool.clone(), shutdown.clone());
    let recording = config.recordings.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut saved_at = tokio::time::Instant::now();
        let mut saved = Vec::new();
        loop {
            let reports = tokio::select! {
                _ = stopping.cancelled() => {
                    // What the AMI client already handed over is still followed and spooled.
                    let mut rest = Vec::new();
                    while let Ok(fed) = feed.try_recv() {
                        rest.extend(follow(&tracking, fed));
                    }
                    queue(&spooling, recording.as_ref(), rest).await;
                    break;
                }
                fed = feed.recv() => match fed {
                    None => break,
                    Some(fed) => follow(&tracking, fed),
                },
                _ = tick.tick() => tracking.lock().expect("the tracker lock").tick(unix_now()),
            };
            queue(&spooling, recording.as_ref(), reports).await;
            if saved_at.elapsed() >= STATE_EVERY {
                save_state(&tracking, &state, &mut saved).await;
                saved_at = tokio::time::Instant::now();
            }
        }
        save_state(&tracking, &state, &mut saved).await;
    }));

    if let Some((url, secret)) = config.webhook.clone() {
        let webhook = spool::Webhook { url, secret, retry_max: config.retry_max };
        let (delivering, stopping) = (spool.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move { spool::deliver(&delivering, &webhook, &stopping).await }));
    } else {
        tracing::warn!(
            "CONNECTOR_WEBHOOK_URL and CONNECTOR_WEBHOOK_SECRET are not set: calls wait in the spool. Save the \
             widget's settings, set both to what they show, and restart the connector"
        );
    }

    let api = api::Api {
        account_id: config.account_id.clone(),
        account_name: format!("Asterisk at {}", config.ami_addr),
        login: config.api_login.clone(),
        key: config.api_key.clone(),
        tech: config.originate_tech.clone(),
        context: config.originate_context.clone(),
        keep_plus: config.originate_keep_plus,
        ami,
        tracker,
        recordings: config.recordings.clone(),
    };
    let stopping = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let serving = axum::serve(listener, api::router(api)).with_graceful_shutdown(stopping.cancelled_owned());
        if let Err(error) = serving.await {
            tracing::error!(%error, "the local API stopped");
        }
    }));
    Ok(Running { api_addr, shutdown, tasks })
}
