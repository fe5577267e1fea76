//! The `sandbox` binary: reads the local Kommo's configuration from the environment and serves it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sandbox::{Archive, Config, Kommo, Vendor, demo_app, kommo_api, token, voip};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

fn required(name: &str, why: &str) -> anyhow::Result<String> {
    var(name).with_context(|| format!("{name} is not set: {why}"))
}

fn number(name: &str, default: u64) -> anyhow::Result<u64> {
    match var(name) {
        None => Ok(default),
        Some(text) => text.trim().parse().with_context(|| format!("{name}=`{text}` is not a positive integer")),
    }
}

fn positive(name: &str, default: u64) -> anyhow::Result<u64> {
    let value = number(name, default)?;
    if value == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(value)
}

/// The provider account the VoIP stand-in knows from the start.
fn provider() -> anyhow::Result<voip::Settings> {
    let defaults = voip::Settings::default();
    let playback = voip::Playback {
        answer_after_ms: number("SANDBOX_VOIP_ANSWER_AFTER_MS", defaults.playback.answer_after_ms)?,
        talk_ms: number("SANDBOX_VOIP_TALK_MS", defaults.playback.talk_ms)?,
        no_answer_after_ms: number("SANDBOX_VOIP_NO_ANSWER_AFTER_MS", defaults.playback.no_answer_after_ms)?,
        ..defaults.playback.clone()
    };
    playback.validate().map_err(|error| anyhow::anyhow!("SANDBOX_VOIP_*_MS: {error}"))?;
    let settings = voip::Settings {
        login: var("SANDBOX_VOIP_LOGIN").unwrap_or(defaults.login),
        password: var("SANDBOX_VOIP_PASSWORD").unwrap_or(defaults.password),
        api_key: var("SANDBOX_VOIP_API_KEY").unwrap_or(defaults.api_key),
        client_id: var("SANDBOX_VOIP_CLIENT_ID").unwrap_or(defaults.client_id),
        client_secret: var("SANDBOX_VOIP_CLIENT_SECRET").unwrap_or(defaults.client_secret),
        playback,
        ..defaults
    };
    if settings.login.contains(':') {
        bail!("SANDBOX_VOIP_LOGIN must hold no `:` (it is sent as HTTP Basic)");
    }
    if settings.client_id.contains(':') {
        bail!("SANDBOX_VOIP_CLIENT_ID must hold no `:` (it is sent as HTTP Basic)");
    }
    Ok(settings)
}

fn config() -> anyhow::Result<(String, Config)> {
    let addr = var("SANDBOX_ADDR").unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let archive_path = PathBuf::from(var("SANDBOX_ARCHIVE").unwrap_or_else(|| "dist/widget.zip".to_owned()));
    if !archive_path.is_file() {
        bail!(
            "the widget archive {} does not exist: build it first with `cargo xtask package` (or point SANDBOX_ARCHIVE at one)",
            archive_path.display()
        );
    }
    let archive = Archive::open(&archive_path).with_context(|| format!("loading {}", archive_path.display()))?;
    let node_modules = PathBuf::from(var("SANDBOX_NODE_MODULES").unwrap_or_else(|| "node_modules".to_owned()));
    let vendor = Vendor::load(&node_modules).with_context(
        || "RequireJS and jQuery are missing: run `npm ci` at the repository root (or set SANDBOX_NODE_MODULES)",
    )?;
    let public_base_url =
        required("PUBLIC_BASE_URL", "the server's public base URL is the disposable tokens' audience")?;
    let kommo = Kommo {
        client_id: required("KOMMO_CLIENT_ID", "the integration id goes into the tokens' client_uuid")?,
        client_secret: required("KOMMO_CLIENT_SECRET", "the integration secret signs the disposable tokens")?,
        audience: token::audience_of(&public_base_url).map_err(|error| anyhow::anyhow!("PUBLIC_BASE_URL: {error}"))?,
        subdomain: var("SANDBOX_SUBDOMAIN").unwrap_or_else(|| "sandbox".to_owned()),
        account_id: number("SANDBOX_ACCOUNT_ID", 31_000_001)?,
        user_id: number("SANDBOX_USER_ID", 5_500_001)?,
    };
    let stand_in = kommo_api::Settings {
        // Filled in with the bound address once listening, unless set explicitly.
        api_host: var("SANDBOX_API_HOST").unwrap_or_default(),
        access_token_ttl: Duration::from_secs(positive("SANDBOX_ACCESS_TOKEN_TTL", 86_400)?),
        code_ttl: Duration::from_secs(positive("SANDBOX_CODE_TTL", 20 * 60)?),
    };
    Ok((addr, Config { archive, vendor, kommo, stand_in }))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Startup errors are for a person: one line with its causes, no backtrace.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (addr, mut config) = config()?;
    // `SANDBOX_AMI_ADDR`: an AMI stand-in for the Asterisk connector too (`kommo` / `sandbox-ami-secret`).
    let ami = match var("SANDBOX_AMI_ADDR") {
        Some(ami) => Some(
            sandbox::ami::AmiStandIn::start(&ami, sandbox::ami::Settings::default())
                .await
                .with_context(|| format!("binding SANDBOX_AMI_ADDR={ami}"))?,
        ),
        None => None,
    };
    let provider = provider()?;
    let version = config.archive.version().to_owned();
    let listener =
        tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding SANDBOX_ADDR={addr}"))?;
    let local = listener.local_addr()?;
    if config.stand_in.api_host.is_empty() {
        config.stand_in.api_host = local.to_string();
    }
    tracing::info!(widget.version = %version, account.id = config.kommo.account_id, "the local Kommo is ready");
    // One plain line on stdout so tools starting the sandbox on port 0 can learn its address.
    println!("sandbox listening on http://{local}/");
    let mut app = demo_app(config, provider);
    if let Some(ami) = ami {
        tracing::info!(ami.addr = %ami.addr(), "the AMI stand-in is ready");
        app = app.merge(sandbox::ami::control::router(ami));
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}
