//! `cargo xtask run`: builds everything and starts the server; without Kommo credentials, also the local Kommo.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::net::wait_until_ok;
use crate::process::{self, Service};
use crate::{env_file, package, secrets, tools};

const LOCAL_CLIENT_ID: &str = "local-kommo";
const SANDBOX_URL: &str = "http://127.0.0.1:8090";
const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";
const DEV_SECRETS: &str = "data/dev-secrets.env";
/// The local Asterisk connector's environment (README, "Connecting Asterisk"), against the AMI stand-in.
const CONNECTOR_ENV: &str = "data/connector.env";
/// Where the local Kommo's AMI stand-in listens (not Asterisk's 5038, which a real PBX may hold).
const SANDBOX_AMI_ADDR: &str = "127.0.0.1:8095";
/// A cold optimised server build is not included: binaries are built before they are started.
const STARTUP: Duration = Duration::from_secs(60);

pub fn command(root: &Path) -> Result<()> {
    tools::command(root)?;
    let public_base = package::resolve_api_base(root, None)?;
    package::build_widget(root)?;
    let archive = root.join(package::DEFAULT_OUT);
    package::write_archive(root, &public_base, &archive)?;

    let client_id = env_file::setting(root, "KOMMO_CLIENT_ID")?;
    let client_secret = env_file::setting(root, "KOMMO_CLIENT_SECRET")?;
    let local = client_id.is_none() || client_secret.is_none();

    // Server and local Kommo are built in one invocation, then started directly: `cargo run -p` of each
    // would re-resolve features per package and rebuild shared dependencies.
    let mut build = Command::new("cargo");
    build.args(["build", "--profile", "release-server", "-p", "server", "--bin", "server"]).current_dir(root);
    if local {
        build.args(["-p", "sandbox", "--bin", "sandbox", "-p", "connector", "--bin", "connector"]);
    }
    process::run(&mut build)?;
    let binaries = root.join("target/release-server");

    let mut server_env: BTreeMap<&str, String> = BTreeMap::new();
    server_env.insert("PUBLIC_BASE_URL", public_base.clone());
    if local {
        let secrets = dev_secrets(root)?;
        server_env.insert("KOMMO_CLIENT_ID", LOCAL_CLIENT_ID.to_owned());
        server_env.insert("KOMMO_CLIENT_SECRET", secrets["KOMMO_CLIENT_SECRET"].clone());
        server_env.insert("SECRET_KEYS", secrets["SECRET_KEYS"].clone());
        server_env.insert("CORS_EXTRA_ORIGINS", SANDBOX_URL.to_owned());
        // The local Kommo also installs the widget: it receives our client secret and hosts the consent page.
        server_env.insert("KOMMO_ALLOWED_HOSTS", SANDBOX_URL.to_owned());
        server_env.insert("KOMMO_CONSENT_URL", format!("{SANDBOX_URL}/oauth"));
        // The local Kommo's VoIP provider answers on loopback over http.
        server_env.insert("PROVIDER_ALLOW_INSECURE_LOCAL", "true".to_owned());
    }
    std::fs::create_dir_all(root.join("data")).context("creating data/")?;

    // The public base may be a proxy's address; health is asked where the server itself listens.
    let bind = env_file::setting(root, "BIND_ADDR")?.unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
    let mut server =
        Service::spawn("server", Command::new(binaries.join("server")).current_dir(root).envs(&server_env))?;
    wait_until_ok(&format!("http://{bind}/health"), &mut server, STARTUP)
        .context("the server did not become healthy")?;
    println!("server listening on {bind}, public base {public_base}");

    let mut services = vec![server];
    if local {
        let mut sandbox_command = Command::new(binaries.join("sandbox"));
        sandbox_command
            .current_dir(root)
            .env("SANDBOX_ADDR", SANDBOX_URL.trim_start_matches("http://"))
            .env("SANDBOX_ARCHIVE", &archive)
            .env("SANDBOX_AMI_ADDR", SANDBOX_AMI_ADDR)
            .env("KOMMO_CLIENT_ID", LOCAL_CLIENT_ID)
            .env("KOMMO_CLIENT_SECRET", &server_env["KOMMO_CLIENT_SECRET"])
            .env("PUBLIC_BASE_URL", &public_base);
        let mut sandbox = Service::spawn("local Kommo", &mut sandbox_command)?;
        wait_until_ok(&format!("{SANDBOX_URL}/"), &mut sandbox, STARTUP).context("the local Kommo did not start")?;
        services.push(sandbox);
        let connector_env = connector_env(root)?;
        let delivering = connector_env.get("CONNECTOR_WEBHOOK_URL").is_some_and(|url| !url.is_empty());
        let connector = Service::spawn(
            "Asterisk connector",
            Command::new(binaries.join("connector")).current_dir(root).envs(&connector_env),
        )?;
        services.push(connector);
        println!("Open {SANDBOX_URL}/ to see the widget in the local Kommo");
        println!(
            "Asterisk: the connector follows the AMI stand-in at {SANDBOX_AMI_ADDR}; its API is http://{} (login {}, \
             password in {CONNECTOR_ENV}){}",
            connector_env["CONNECTOR_LISTEN_ADDR"],
            connector_env["CONNECTOR_API_LOGIN"],
            if delivering {
                ""
            } else {
                ": once saved with Asterisk, paste the settings' webhook URL and secret there and run again"
            }
        );
    } else {
        println!("Kommo credentials found: upload {} to your Kommo integration", archive.display());
    }
    println!("Ctrl-C (or SIGTERM to xtask, pid {}) stops everything.", std::process::id());
    supervise(services)
}

/// Blocks until a service stops (Ctrl-C reaches the whole process group), then stops the others. If xtask is
/// killed instead, each service's watchdog stops it (`process::Service`).
fn supervise(mut services: Vec<Service>) -> Result<()> {
    loop {
        for service in &mut services {
            let Some(status) = service.exited() else { continue };
            let name = service.name().to_owned();
            drop(services);
            if !status.success() {
                bail!("{name} stopped ({status})");
            }
            println!("{name} stopped; everything else is stopped too");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The local mode's client secret and data keys, created once in `data/dev-secrets.env` so data stays readable across runs.
/// The local connector's environment: `data/connector.env`, created once (its API password random) with the
/// webhook left empty until the admin pastes what the widget's settings show.
fn connector_env(root: &Path) -> Result<BTreeMap<String, String>> {
    let path: PathBuf = root.join(CONNECTOR_ENV);
    if !path.exists() {
        let text = format!(
            "# The Asterisk connector of `cargo xtask run`, against the local Kommo's AMI stand-in (README, \"Connecting Asterisk\").\n\
             AMI_PORT={port}\nAMI_USERNAME=kommo\nAMI_SECRET=sandbox-ami-secret\nAMI_CDR_WAIT_MS=500\n\
             CONNECTOR_LISTEN_ADDR=127.0.0.1:8091\nCONNECTOR_API_LOGIN=kommo\nCONNECTOR_API_PASSWORD={password}\n\
             CONNECTOR_SPOOL_DIR=data/connector-spool\n\
             # After saving the widget's settings with Asterisk, paste the webhook URL and signing secret they show:\n\
             CONNECTOR_WEBHOOK_URL=\nCONNECTOR_WEBHOOK_SECRET=\n",
            port = SANDBOX_AMI_ADDR.rsplit(':').next().unwrap_or_default(),
            password = &secrets::client_secret()?[..24],
        );
        write_private(&path, &text)?;
    }
    let env = env_file::read(&path)?;
    for key in ["CONNECTOR_LISTEN_ADDR", "CONNECTOR_API_LOGIN"] {
        if !env.contains_key(key) {
            bail!("{} lacks {key}: delete the file and run again", path.display());
        }
    }
    Ok(env)
}

fn dev_secrets(root: &Path) -> Result<BTreeMap<String, String>> {
    let path: PathBuf = root.join(DEV_SECRETS);
    let existing = env_file::read(&path)?;
    if existing.contains_key("KOMMO_CLIENT_SECRET") && existing.contains_key("SECRET_KEYS") {
        return Ok(existing);
    }
    std::fs::create_dir_all(root.join("data")).context("creating data/")?;
    let text = format!(
        "# Secrets of `cargo xtask run` in local mode (no Kommo credentials). Created once; deleting it makes stored data unreadable.\n\
         KOMMO_CLIENT_SECRET={}\nSECRET_KEYS={}\n",
        secrets::client_secret()?,
        secrets::secret_keys("local1")?
    );
    write_private(&path, &text)?;
    env_file::read(&path)
}

/// Writes a new file only its owner reads (it holds secrets); an existing one is never overwritten.
fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {} (delete it if it is incomplete)", path.display()))?;
    println!("created {}", path.display());
    Ok(())
}
