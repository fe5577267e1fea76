//! The server binary: configuration from the environment, tracing, and a graceful stop on SIGTERM
//! or Ctrl-C. One subcommand besides: `server copy-database <FROM_URL> <TO_URL>` copies a stopped
//! deployment's database into a new one (SQLite to PostgreSQL), see `store::copy`.

use server::config::Config;
use server::store::Store;
use server::store::copy::copy_database;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage:
  server                                     run the server (configured by the environment, see README.md)
  server copy-database <FROM_URL> <TO_URL>   copy every row of a database into a new, empty one, e.g.
                                             server copy-database sqlite://data/kommo-voip.sqlite postgres://user:password@host/kommo
                                             (stop the server first; the target is migrated, and refused unless empty)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        // Colours for a terminal only: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["copy-database", from, to] => {
            if let Err(error) = copy(from, to).await {
                eprintln!("copy-database failed: {error:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
    let config = Config::from_env()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    server::serve(config, shutdown).await
}

/// `server copy-database`: connects both (migrating each to this build's schema), copies, prints the
/// rows per table. Never prints the URLs, which may hold passwords; an error exits non-zero.
async fn copy(from: &str, to: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    // Opening a SQLite URL creates a missing file: a mistyped source path would copy an empty database.
    if server::store::Engine::of_url(from).context("FROM_URL")? == server::store::Engine::Sqlite {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(from)
            .context("FROM_URL is not a valid sqlite:// URL")?;
        anyhow::ensure!(
            options.get_filename().exists(),
            "the source database file {} does not exist",
            options.get_filename().display()
        );
    }
    let source = Store::connect(from).await.context("opening the source database (FROM_URL)")?;
    let target = Store::connect(to).await.context("opening the target database (TO_URL)")?;
    println!(
        "copying {} -> {} (the source server must be stopped)",
        source.engine().as_str(),
        target.engine().as_str()
    );
    let report = copy_database(&source, &target).await?;
    println!("{report}");
    source.close().await;
    target.close().await;
    Ok(())
}

/// One shutdown signal, fanned out through the token to the listener and every open stream.
async fn forward_signals(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
    shutdown.cancel();
}
