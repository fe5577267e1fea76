//! `cargo xtask test`: every test, one command — cargo tests (the server's on SQLite and on PostgreSQL), archive
//! checks, and browser tests against live services.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::net::{free_port, wait_until_ok};
use crate::process::{self, Service};
use crate::{package, postgres, secrets, tools};

const BROWSER_TEST_DIR: &str = "target/browser-test";
const CHROMIUM: &str = "/usr/bin/chromium";
const CLIENT_ID: &str = "local-kommo";
/// The binaries are built before they start, so this only covers migrations and binding.
const STARTUP: Duration = Duration::from_secs(30);

/// One step of the suite and how it went.
struct Outcome {
    name: &'static str,
    took: Duration,
    result: Result<()>,
}

pub fn command(root: &Path) -> Result<()> {
    let mut outcomes = Vec::new();
    let mut step = |name: &'static str, action: &mut dyn FnMut() -> Result<()>| {
        eprintln!("\n=== {name}");
        let started = Instant::now();
        let result = action();
        let passed = result.is_ok();
        outcomes.push(Outcome { name, took: started.elapsed(), result });
        passed
    };

    let ready = step("tools", &mut || tools::command(root))
        && {
            step("cargo test (the host crates: shared, server, connector, webhook-signing, xtask, sandbox)", &mut || {
                // The server's suite on SQLite here, even if the shell names a PostgreSQL server.
                process::run(Command::new("cargo").arg("test").env_remove("TEST_POSTGRES_URL").current_dir(root))
            });
            // The server's suite again on PostgreSQL: every test creates its own database on a throwaway
            // cluster, which stops when the step ends, whatever the outcome. The same packages as the step
            // before, so that cargo unifies the same features and reuses its build (`-p server` alone would
            // give shared dependencies other features, rebuild the sandbox and link every test binary
            // again); `--test '*'` runs the integration tests, the only ones that read `TEST_POSTGRES_URL`.
            step("cargo test --test '*' on PostgreSQL (the server's suite)", &mut || {
                let cluster = postgres::Cluster::start(root)?;
                process::run(
                    Command::new("cargo")
                        .args(["test", "--test", "*"])
                        .env("TEST_POSTGRES_URL", cluster.url())
                        .current_dir(root),
                )
            });
            // Its own invocation: the widget's logic (form values, i18n completeness) tested natively,
            // without unifying leptos's features into the server's build.
            step("cargo test -p widget (the widget's logic, native)", &mut || {
                process::run(Command::new("cargo").args(["test", "-p", "widget"]).current_dir(root))
            });
            step("package + check dist/widget.zip", &mut || {
                package::build_widget(root)?;
                package::write_archive(root, &package::resolve_api_base(root, None)?, &root.join(package::DEFAULT_OUT))
            })
        }
        // `cargo test` builds the server's and the local Kommo's binaries for their integration tests:
        // `--no-run` with the same packages makes sure they are current without building them a second
        // time with the features of a plain `cargo build` (which the tests' dev-dependencies change).
        && step("build server and local Kommo", &mut || {
            process::run(Command::new("cargo").args(["test", "--no-run"]).current_dir(root))
        });
    if ready {
        step("browser tests (node --test sandbox/browser/)", &mut || browser_tests(root, &[]));
    }

    summarize(&outcomes)
}

/// `cargo xtask browser [files]`: the browser tests alone (or some of them, by file name under
/// `sandbox/browser/`), after building what they need.
pub fn browser_command(root: &Path, files: &[String]) -> Result<()> {
    package::build_widget(root)?;
    process::run(Command::new("cargo").args(["build", "-p", "server", "-p", "sandbox"]).current_dir(root))?;
    let files: Vec<String> = files.iter().map(|file| format!("sandbox/browser/{file}")).collect();
    browser_tests(root, &files)
}

/// Packages a test archive, starts the server and the local Kommo on free ports, runs the browser tests
/// (`files`, or every one under `sandbox/browser/`), stops both.
fn browser_tests(root: &Path, files: &[String]) -> Result<()> {
    let mut args = vec!["--test".to_owned(), "--test-concurrency=1".to_owned()];
    if files.is_empty() {
        args.push("sandbox/browser/".to_owned());
    } else {
        args.extend(files.iter().cloned());
    }
    with_live_services(root, &args)
}

/// Packages a test archive, starts the server and the local Kommo on free ports, runs `node args` against
/// them (their URLs in `SERVER_URL` and `SANDBOX_URL`), stops both.
pub fn with_live_services(root: &Path, args: &[String]) -> Result<()> {
    let dir = root.join(BROWSER_TEST_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (server_port, sandbox_port) = (free_port()?, free_port()?);
    let server_url = format!("http://127.0.0.1:{server_port}");
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let archive = dir.join("widget.zip");
    package::write_archive(root, &server_url, &archive)?;

    let database = dir.join(format!("server-{server_port}.sqlite"));
    for stale in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{stale}", database.display()));
    }
    let client_secret = secrets::client_secret()?;
    let log = |name: &str| -> Result<(File, File)> {
        let file = File::create(dir.join(format!("{name}.log"))).with_context(|| format!("creating {name}.log"))?;
        Ok((file.try_clone()?, file))
    };

    let (out, err) = log("server")?;
    let mut server = Service::spawn(
        "server",
        Command::new(root.join("target/debug/server"))
            .current_dir(root)
            .env("BIND_ADDR", format!("127.0.0.1:{server_port}"))
            .env("PUBLIC_BASE_URL", &server_url)
            .env("DATABASE_URL", format!("sqlite://{}", database.display()))
            .env("KOMMO_CLIENT_ID", CLIENT_ID)
            .env("KOMMO_CLIENT_SECRET", &client_secret)
            .env("SECRET_KEYS", secrets::secret_keys("test1")?)
            .env("CORS_EXTRA_ORIGINS", &sandbox_url)
            // The local Kommo is also the Kommo that installs the widget (OAuth code → our client secret).
            .env("KOMMO_ALLOWED_HOSTS", &sandbox_url)
            .env("KOMMO_CONSENT_URL", format!("{sandbox_url}/oauth"))
            // The local Kommo's VoIP provider answers on loopback over http.
            .env("PROVIDER_ALLOW_INSECURE_LOCAL", "true")
            // The browser tests install a fresh account every few seconds, all from this one address: more
            // than a real client address ever sends to the install callback.
            .env("OAUTH_RATE_PER_ADDRESS", "10000")
            .env("OAUTH_RATE_TOTAL", "1000")
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err),
    )?;
    let (out, err) = log("sandbox")?;
    let mut sandbox = Service::spawn(
        "local Kommo",
        Command::new(root.join("target/debug/sandbox"))
            .current_dir(root)
            .env("SANDBOX_ADDR", format!("127.0.0.1:{sandbox_port}"))
            .env("SANDBOX_ARCHIVE", &archive)
            .env("KOMMO_CLIENT_ID", CLIENT_ID)
            .env("KOMMO_CLIENT_SECRET", &client_secret)
            .env("PUBLIC_BASE_URL", &server_url)
            .stdout(out)
            .stderr(err),
    )?;
    let logs = format!("logs: {BROWSER_TEST_DIR}/server.log, {BROWSER_TEST_DIR}/sandbox.log");
    wait_until_ok(&format!("{server_url}/health"), &mut server, STARTUP).with_context(|| logs.clone())?;
    wait_until_ok(&format!("{sandbox_url}/"), &mut sandbox, STARTUP).with_context(|| logs.clone())?;

    let result = process::run(
        Command::new("node")
            .args(args)
            .current_dir(root)
            .env("SERVER_URL", &server_url)
            .env("SANDBOX_URL", &sandbox_url)
            .env("TEST_OUTPUT_DIR", root.join("test-output"))
            .env("CHROMIUM", CHROMIUM)
            // Some tests mint Kommo-shaped disposable tokens themselves.
            .env("KOMMO_CLIENT_ID", CLIENT_ID)
            .env("KOMMO_CLIENT_SECRET", &client_secret)
            .stdin(Stdio::null()),
    );
    // Dropping the services stops them, whatever the outcome.
    drop((server, sandbox));
    result.with_context(|| logs)
}

fn summarize(outcomes: &[Outcome]) -> Result<()> {
    println!("\n=== summary");
    for outcome in outcomes {
        let verdict = if outcome.result.is_ok() { "ok  " } else { "FAIL" };
        println!("{verdict} {:>6.1}s  {}", outcome.took.as_secs_f64(), outcome.name);
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    for outcome in &failed {
        if let Err(error) = &outcome.result {
            println!("\n{} failed: {error:#}", outcome.name);
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} steps failed", failed.len(), outcomes.len());
    }
    println!("\nall {} steps passed; screenshots in test-output/", outcomes.len());
    Ok(())
}
