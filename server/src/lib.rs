//! The Kommo VoIP integration's server as a library: [`http::app`] builds the router that the
//! binary serves and the tests drive; [`serve`] runs it until a shutdown signal.

pub mod auth;
pub mod calls;
pub mod config;
pub mod crypto;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod kommo;
pub mod metrics;
pub mod oauth;
pub mod provider;
pub mod push;
pub mod signing;
pub mod store;
pub mod worker;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
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
    tokio::spawn(housekeeping(store.clone(), shutdown.clone()));
    let worker =
        Worker { queue: state.queue.clone(), handler: job_handler(&state), concurrency, slots_per_account: state.limits.worker_slots_per_account, wake: state.jobs_wake.clone() };
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
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) =
                axum::serve(operator, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
            {
                tracing::error!(%error, "operator listener failed");
            }
        });
    }
    let router = app(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving HTTP")?;
    // Running jobs finish (or their leases expire if we are killed meanwhile).
    let _ = worker.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

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

/// Every so often, forgets finished work (see `Store::housekeeping`).
async fn housekeeping(store: Store, shutdown: CancellationToken) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    loop {
        match store.housekeeping(store::unix_now()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "housekeeping removed finished rows"),
            Err(error) => tracing::warn!(%error, "housekeeping failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Runs one job by its kind.
pub fn job_handler(state: &AppState) -> Handler {
    let calls = state.calls.clone();
    std::sync::Arc::new(move |job: jobs::Job| {
        let calls = calls.clone();
        Box::pin(async move {
            match job.kind.as_str() {
                jobs::KIND_CALL => calls::process_call(&calls, job.account(), &job.subject).await,
                other => Err(jobs::JobError::Fail { error: format!("unknown job kind {other:?}") }),
            }
        })
    })
}
