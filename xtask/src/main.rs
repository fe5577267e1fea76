//! `cargo xtask <command>`: the project's one entry point for tools, logos, packaging, checking, running and testing.

mod archive_rules;
mod bench;
mod env_file;
mod logos;
mod net;
mod package;
mod postgres;
mod process;
mod run;
mod secrets;
mod test_suite;
mod tools;
mod workspace;

use std::process::ExitCode;

use anyhow::{Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

  tools                       install what is missing (wasm32 target, trunk, wasm-bindgen-cli, npm packages, chromium)
  logos                       redraw images/*.png
  package [--api-base URL] [--out PATH]
                              build the widget with Trunk and write the Kommo archive (default dist/widget.zip), then check it
  check-archive <zip>         check any widget zip against Kommo's archive rules
  run                         tools + package + start the server (and, without Kommo credentials, the local Kommo)
  test                        every test: cargo test (the server's suite on SQLite, then again on a throwaway PostgreSQL
                              cluster), archive checks, browser tests against a live server and local Kommo
  browser [FILE.test.mjs ...]  package, start a server and the local Kommo, run these browser tests (all by default)
  bench                       the ingest benchmark (release build): webhook ingest vs a bare handler, latency at a fixed
                              rate, Kommo requests per call, peak RSS
  crash                       the long kill -9 test: 5 seeds x 5000 signed webhooks against the release server binary
                              (CRASH_SEEDS, CRASH_SEED, CRASH_EVENTS, CRASH_ACCOUNTS override)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let root = workspace::root();
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    match command.as_str() {
        "tools" => tools::command(&root)?,
        "logos" => logos::command(&root)?,
        "package" => package::command(&root, rest)?,
        "check-archive" => return check_archive(rest),
        "run" => run::command(&root)?,
        "test" => test_suite::command(&root)?,
        "browser" => test_suite::browser_command(&root, rest)?,
        "bench" => bench::bench(&root)?,
        "crash" => bench::crash(&root)?,
        "help" | "--help" | "-h" => println!("{USAGE}"),
        other => {
            eprintln!("unknown command {other}\n\n{USAGE}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask check-archive <zip>`: prints every violation, fails if there is any.
fn check_archive(args: &[String]) -> Result<ExitCode> {
    let [path] = args else {
        anyhow::bail!("usage: cargo xtask check-archive <zip>");
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let violations = archive_rules::check(&bytes);
    for violation in &violations {
        println!("{violation}");
    }
    if violations.is_empty() {
        println!("{path}: follows every Kommo archive rule xtask knows (KOMMO.md 5)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{path}: {} violation(s)", violations.len());
    Ok(ExitCode::FAILURE)
}
