//! `cargo xtask tools`: installs what the build and tests need, only what is missing, so a warm run takes seconds.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, ensure};

use crate::{process, workspace};

/// 0.22 needs a newer rustc than the project's (TOOLCHAIN.md).
const TRUNK_VERSION: &str = "0.21.14";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
const CHROMIUM: &str = "/usr/bin/chromium";

pub fn command(root: &Path) -> Result<()> {
    wasm_target()?;
    trunk()?;
    wasm_bindgen_cli(root)?;
    npm_packages(root)?;
    chromium()?;
    Ok(())
}

fn wasm_target() -> Result<()> {
    let installed =
        process::stdout_of(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        println!("ok: rust target {WASM_TARGET}");
        return Ok(());
    }
    process::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn trunk() -> Result<()> {
    let found = process::stdout_of(Command::new("trunk").arg("--version"));
    if found.as_deref() == Some(&format!("trunk {TRUNK_VERSION}")) {
        println!("ok: trunk {TRUNK_VERSION}");
        return Ok(());
    }
    println!("trunk {TRUNK_VERSION} needed, found {}", found.as_deref().unwrap_or("none"));
    process::run(Command::new("cargo").args(["install", "trunk", "--version", TRUNK_VERSION, "--locked"]))
}

/// The CLI must be exactly the wasm-bindgen version in Cargo.lock, or Trunk's bindgen step fails.
fn wasm_bindgen_cli(root: &Path) -> Result<()> {
    let version = workspace::locked_version(root, "wasm-bindgen")?;
    let found = process::stdout_of(Command::new("wasm-bindgen").arg("--version"));
    if found.as_deref() == Some(&format!("wasm-bindgen {version}")) {
        println!("ok: wasm-bindgen-cli {version}");
        return Ok(());
    }
    println!("wasm-bindgen-cli {version} needed, found {}", found.as_deref().unwrap_or("none"));
    // Without --locked: the CLI's own lock names a crate version this registry lacks (TOOLCHAIN.md).
    process::run(Command::new("cargo").args(["install", "wasm-bindgen-cli", "--version", &version]))
}

/// `npm ci` when node_modules is missing or older than package-lock.json.
fn npm_packages(root: &Path) -> Result<()> {
    let lock = modified(&root.join("package-lock.json")).context("package-lock.json is missing")?;
    // npm writes node_modules/.package-lock.json on every install; the folder's own time is the fallback.
    let installed =
        modified(&root.join("node_modules/.package-lock.json")).or_else(|| modified(&root.join("node_modules")));
    if installed.is_some_and(|installed| installed >= lock) {
        println!("ok: node_modules (npm ci is up to date)");
        return Ok(());
    }
    process::run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(root))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn chromium() -> Result<()> {
    if Path::new(CHROMIUM).exists() {
        println!("ok: {CHROMIUM}");
        return Ok(());
    }
    let whoami = process::stdout_of(Command::new("id").arg("-u")).unwrap_or_default();
    ensure!(whoami == "0", "{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) as root");
    process::run(Command::new("apt-get").arg("update"))?;
    process::run(Command::new("apt-get").args(["install", "-y", "chromium"]).env("DEBIAN_FRONTEND", "noninteractive"))
}
