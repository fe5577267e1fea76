//! The Kommo VoIP integration's server as a library: [`http::app`] builds the router that the
//! binary serves and the tests drive; [`serve`] runs it until a shutdown signal.

pub mod auth;
pub mod config;
pub mod crypto;
pub mod http;
pub mod jobs;
pub mod kommo;
pub mod oauth;
pub mod provider;
pub mod push;
pub mod signing;
pub mod store;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{AppState, app};
use crate::store::Store;

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
    let state = AppState::new(config, store.clone(), shutdown.clone());
    tokio::spawn(recover_installs(state.installer.clone(), shutdown.clone()));
    let router = app(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving HTTP")?;
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
