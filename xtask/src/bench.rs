//! `cargo xtask bench` (the ingest benchmark, release build) and `cargo xtask crash` (the long kill -9 test,
//! release server binary).

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::{package, postgres, process, test_suite};

/// The server's release profile (the workspace's `release` profile is tuned for the wasm's size).
const SERVER_PROFILE: &str = "release-server";

/// Runs `server/benches/ingest.rs` built with the server's release profile, on SQLite and on a
/// throwaway PostgreSQL cluster with durable commits; it prints its own table, both engines side by side.
pub fn bench(root: &Path) -> Result<()> {
    let cluster = postgres::Cluster::start_durable(root)?;
    process::run(
        Command::new("cargo")
            .args(["bench", "-p", "server", "--bench", "ingest", "--profile", SERVER_PROFILE])
            .env("BENCH_POSTGRES_URL", cluster.url())
            .current_dir(root),
    )?;
    drop(cluster);
    widget(root)
}

/// The widget's side: what every Kommo page downloads (gzipped), the popup's latency in Chromium from the
/// webhook's 200 to the caller's name (`sandbox/browser/bench/popup-latency.mjs`), and click-to-call's from
/// the click to the provider's request (`sandbox/browser/bench/click-to-call.mjs`).
fn widget(root: &Path) -> Result<()> {
    package::build_widget(root)?;
    package::print_page_weight(root)?;
    process::run(Command::new("cargo").args(["build", "-p", "server", "-p", "sandbox"]).current_dir(root))?;
    test_suite::with_live_services(root, &["sandbox/browser/bench/popup-latency.mjs".to_owned()])?;
    test_suite::with_live_services(root, &["sandbox/browser/bench/click-to-call.mjs".to_owned()])
}

/// The kill -9 test at length (RELIABILITY.md §3.6): 5 seeds × 5000 deliveries against the release server
/// binary. The environment's `CRASH_SEEDS`, `CRASH_SEED`, `CRASH_EVENTS`, `CRASH_ACCOUNTS` win.
pub fn crash(root: &Path) -> Result<()> {
    process::run(
        Command::new("cargo")
            .args(["build", "-p", "server", "--bin", "server", "--profile", SERVER_PROFILE])
            .current_dir(root),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let binary = target.join(SERVER_PROFILE).join("server");
    let mut test = Command::new("cargo");
    test.args(["test", "-p", "server", "--test", "crash", "--", "--nocapture"])
        .current_dir(root)
        .env("CRASH_SERVER_BIN", &binary);
    for (name, default) in [("CRASH_SEEDS", "5"), ("CRASH_EVENTS", "5000")] {
        if std::env::var_os(name).is_none() {
            test.env(name, default);
        }
    }
    process::run(&mut test)
}
