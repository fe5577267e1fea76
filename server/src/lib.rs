//! The Kommo VoIP integration's server as a library: [`http::app`] builds the router that the
//! binary serves and the tests drive; [`serve`] runs it until a shutdown signal.

pub mod adapters;
pub mod auth;
pub mod calls;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod dialer;
pub mod http;
pub mod ingest;
pub mod kommo;
pub mod metrics;
pub mod oauth;
pub mod provider;
pub mod push;
pub mod store;
pub use store::jobs;
pub mod throttle;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::{Config, Limits};
use crate::http::{AppState, app};
use crate::store::Store;
use crate::worker::{Handler, Worker};

/// Opens the store, binds the listener and serves until `shutdown` is cancelled, then lets
/// in-flight requests finish.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("binding {}", config.bind_addr))?;
    serve_on(listener, config, shutdown).await
}

/// [`serve`] on a listener the caller bound (tests bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url).await?;
    tracing::info!(addr = %listener.local_addr()?, public_base_url = %config.public_base_url, "listening");
    let operator_addr = config.operator.bind_addr;
    let concurrency = config.worker_concurrency;
    let state = AppState::new(config, store.clone(), shutdown.clone());
    tokio::spawn(recover_installs(state.installer.clone(), shutdown.clone()));
    tokio::spawn(housekeeping(state.clone(), shutdown.clone()));
    if state.phone_index {
        tokio::spawn(schedule_phone_syncs(state.clone(), shutdown.clone()));
    }
    let worker = Worker {
        queue: state.queue.clone(),
        handler: job_handler(&state),
        concurrency,
        slots_per_account: state.limits.worker_slots_per_account,
        wake: state.jobs_wake.clone(),
    };
    let worker_shutdown = shutdown.clone();
    let worker = tokio::spawn(async move {
        if concurrency > 0 {
            worker.run(worker_shutdown).await;
        }
    });
    if let Some(addr) = operator_addr {
        let operator = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "operator endpoints listening");
        let router = http::operator_app(state.clone());
        tokio::spawn(serve_connections(operator, router, state.limits.clone(), shutdown.clone()));
    }
    let limits = state.limits.clone();
    serve_connections(listener, app(state), limits, shutdown).await;
    // Running jobs finish (or their leases expire if we are killed meanwhile).
    let _ = worker.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests finish (open
/// push streams end on the same token).
///
/// Each connection holds one of `max_connections` permits, taken *before* `accept`: past the cap,
/// new connections wait in the kernel's listen backlog instead of costing us a task and a buffer.
/// A connection that does not send a request's headers within `header_read_timeout`, including an
/// idle keep-alive connection, is closed; bodies and whole requests are bounded in `http::app`.
/// HTTP/1.1 only: the server sits behind a TLS-terminating proxy, and HTTP/2's streams would need
/// caps of their own.
async fn serve_connections(listener: TcpListener, router: Router, limits: Arc<Limits>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: retrying at once would spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        // `ClientAddr` and the rate limiters read the peer from the request, as `ConnectInfo`.
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Header timeouts and clients that go away are routine: not worth more than debug.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    // Stop accepting (the backlog's connections are refused), then wait for the open ones.
    drop(listener);
    graceful.shutdown().await;
}

/// How long the accept loop rests after `accept` failed.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Picks up authorization codes that were not exchanged yet: retries after transient failures,
/// and codes a previous process received but did not finish (a restart loses no install).
async fn recover_installs(installer: oauth::Installer, shutdown: CancellationToken) {
    loop {
        installer.exchange_pending(None).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(oauth::RECOVERY_INTERVAL) => {}
        }
    }
}

/// Every so often, forgets finished work and erases disabled accounts (see `Store::housekeeping`, and
/// `config::Retention`); every minute, forgets rate-limiter state of clients that went quiet.
async fn housekeeping(state: AppState, shutdown: CancellationToken) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);
    const STORE_EVERY: u32 = 10;
    for round in 0u32.. {
        state.throttle.prune();
        if round % STORE_EVERY == 0 {
            match state.store.housekeeping(clock::unix_secs(), &state.retention).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "housekeeping removed finished rows"),
                Err(error) => tracing::warn!(%error, "housekeeping failed"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Every [`PHONE_SYNC_SCHEDULE`], queues a phone sync step for each account that has none under way
/// and whose index was never synced or is due a refresh (`calls::index`); a sync whose chain of steps
/// broke (a step that gave up) is queued again the same way.
async fn schedule_phone_syncs(state: AppState, shutdown: CancellationToken) {
    loop {
        let stale_before = clock::unix_secs() - calls::index::REFRESH_EVERY.as_secs() as i64;
        match state.store.queue_due_phone_syncs(stale_before, clock::unix_millis()).await {
            Ok(0) => {}
            Ok(queued) => {
                tracing::debug!(queued, "phone syncs queued");
                state.jobs_wake.notify_one();
            }
            Err(error) => tracing::warn!(%error, "could not queue phone syncs"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PHONE_SYNC_SCHEDULE) => {}
        }
    }
}

/// How often [`schedule_phone_syncs`] looks for accounts due a sync.
pub const PHONE_SYNC_SCHEDULE: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs one job by its kind.
pub fn job_handler(state: &AppState) -> Handler {
    let (calls, phone_index) = (state.calls.clone(), state.phone_index);
    std::sync::Arc::new(move |job: jobs::Job| {
        let calls = calls.clone();
        Box::pin(async move {
            match job.kind.as_str() {
                jobs::KIND_CALL => calls::process_call(&calls, job.account(), &job.subject).await,
                // With the index turned off, a step still queued ends without a request.
                jobs::KIND_PHONE_SYNC if !phone_index => Ok(()),
                jobs::KIND_PHONE_SYNC => calls.sync_phones(job.account()).await,
                jobs::KIND_KOMMO_EVENT => calls.apply_kommo_event(job.account(), &job.subject).await,
                other => Err(jobs::JobError::Fail { error: format!("unknown job kind {other:?}") }),
            }
        })
    })
}
