//! A throwaway PostgreSQL cluster for the server's PostgreSQL test pass: `initdb` into
//! `target/postgres-test/<port>/`, `pg_ctl start` on a free port of 127.0.0.1, stopped (and its data
//! removed) when the [`Cluster`] guard drops. No system service and no system cluster are involved.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::net::free_port;
use crate::process;

/// Where Debian's packages put each major version: `/usr/lib/postgresql/<version>/bin`.
const DEBIAN_VERSIONS: &str = "/usr/lib/postgresql";
/// One directory per cluster (named by its port), so two test runs in one checkout do not collide.
const CLUSTERS: &str = "target/postgres-test";
/// A unix socket path holds at most 107 bytes; postgres adds `/.s.PGSQL.<port>` to its directory.
const SOCKET_DIR_MAX: usize = 90;
/// The cluster's superuser, and the system user postgres runs as when xtask runs as root.
const USER: &str = "postgres";
/// Who started a cluster (xtask's process id): a cluster whose owner is gone is stale.
const OWNER_FILE: &str = "owner";

/// A running test cluster; dropping it stops the server, whatever the outcome of the tests.
pub struct Cluster {
    bin: PathBuf,
    /// Commits reach the disk (the benchmark), or not (the tests: nothing outlives the run).
    durable: bool,
    dir: PathBuf,
    port: u16,
    /// xtask runs as root, and postgres refuses to: its programs run as the `postgres` user.
    as_postgres: bool,
}

impl Cluster {
    /// Installs PostgreSQL if it is missing (Debian, as root), then creates and starts a fresh cluster
    /// for tests (fsync off: nothing in it outlives the run).
    pub fn start(root: &Path) -> Result<Self> {
        Self::start_with(root, false)
    }

    /// [`Cluster::start`] with PostgreSQL's durable defaults (fsync and full page writes on), so that
    /// the benchmark compares it fairly with SQLite's `synchronous = FULL`.
    pub fn start_durable(root: &Path) -> Result<Self> {
        Self::start_with(root, true)
    }

    fn start_with(root: &Path, durable: bool) -> Result<Self> {
        let started = Instant::now();
        let as_postgres = is_root();
        let bin = match binaries() {
            Some(bin) => bin,
            None => {
                install()?;
                binaries().context("PostgreSQL is still missing after installing Debian's postgresql")?
            }
        };
        let port = free_port()?;
        let dir = cluster_dir(root, port, as_postgres)?;
        let cluster = Self { bin, durable, dir, port, as_postgres };
        cluster.create()?;
        cluster.run_start()?;
        let version = process::stdout_of(Command::new(cluster.bin.join("pg_ctl")).arg("--version")).unwrap_or_default();
        let version = version.strip_prefix("pg_ctl (PostgreSQL) ").unwrap_or(&version);
        eprintln!(
            "PostgreSQL {version} started on 127.0.0.1:{port} in {:.1}s (cluster in {})",
            started.elapsed().as_secs_f64(),
            cluster.dir.display()
        );
        Ok(cluster)
    }

    /// The maintenance database, as the superuser (trust authentication: no password).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// `program` from the cluster's binaries, run as the `postgres` user when xtask is root.
    fn command(&self, program: &str) -> Command {
        as_user(self.as_postgres, &self.bin.join(program))
    }

    fn create(&self) -> Result<()> {
        let socket = self.dir.join("socket");
        std::fs::create_dir_all(&socket).with_context(|| format!("creating {}", socket.display()))?;
        std::fs::write(self.dir.join(OWNER_FILE), std::process::id().to_string())
            .with_context(|| format!("writing {}", self.dir.join(OWNER_FILE).display()))?;
        if self.as_postgres {
            quiet(Command::new("chown").args(["-R", &format!("{USER}:")]).arg(&self.dir))?;
        }
        // No locale: C collation, the byte order SQLite's default collation compares by.
        quiet(
            self.command("initdb")
                .arg("-D")
                .arg(self.data())
                .args(["-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "--no-locale"])
                .current_dir(&self.dir),
        )?;
        // Settings in the cluster's own file rather than `pg_ctl -o`, which goes through a shell.
        // A test cluster: nothing in it outlives the run, so durability (fsync, full pages) is off unless
        // asked for, and every test of a parallel `cargo test` opens its own pool.
        let durability = if self.durable { "" } else { "fsync = off\nfull_page_writes = off\n" };
        let settings = format!(
            "\n# cargo xtask test: a throwaway test cluster\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             max_connections = 400\n\
             {durability}",
            self.port,
            socket.display().to_string().replace('\'', "''"),
        );
        let conf = self.data().join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .with_context(|| format!("writing {}", conf.display()))
    }

    /// `pg_ctl start -w`: returns once the server accepts connections.
    fn run_start(&self) -> Result<()> {
        let started = quiet(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log())
                .args(["-w", "-t", "60", "start"])
                .current_dir(&self.dir),
        );
        started.with_context(|| {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            format!("starting PostgreSQL; the end of {}:\n{}", self.log().display(), tail.join("\n"))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.data().join("postmaster.pid").exists() {
            let _ = std::fs::remove_dir_all(self.data());
            return;
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).current_dir(&self.dir);
        if let Err(error) = quiet(&mut stop) {
            eprintln!("warning: stopping the test PostgreSQL on port {}: {error:#}", self.port);
        }
        // The log stays for a look after a failure; the next start removes it with the rest.
        let _ = std::fs::remove_dir_all(self.data());
    }
}

/// `program`, through `runuser -u postgres --` when `as_postgres`.
fn as_user(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` with its output captured: nothing on success, all of it in the error on failure.
fn quiet(command: &mut Command) -> Result<()> {
    let description = process::describe(command);
    eprintln!("$ {description}");
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("starting `{description}`"))?;
    if !output.status.success() {
        bail!(
            "`{description}` failed ({})\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn is_root() -> bool {
    process::stdout_of(Command::new("id").arg("-u")).as_deref() == Some("0")
}

/// The directory holding `initdb` and `pg_ctl`: Debian's highest installed version, else the one on `PATH`.
fn binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let debian = std::fs::read_dir(DEBIAN_VERSIONS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    debian.or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_both(dir)))
}

/// Debian's `postgresql`, as root, without the main cluster and the service its install would otherwise
/// create and start: the tests need only the binaries.
fn install() -> Result<()> {
    let apt = Path::new("/usr/bin/apt-get").exists();
    ensure!(
        is_root() && apt,
        "PostgreSQL is missing (no initdb and pg_ctl under {DEBIAN_VERSIONS}/<version>/bin or on PATH): \
         install it, on Debian as root with `apt-get install postgresql`, and run the tests again"
    );
    eprintln!("PostgreSQL is missing: installing Debian's postgresql (no system cluster, no service)");
    let conf_dir = Path::new("/etc/postgresql-common");
    let conf = conf_dir.join("createcluster.conf");
    std::fs::create_dir_all(conf_dir).with_context(|| format!("creating {}", conf_dir.display()))?;
    let existing = std::fs::read_to_string(&conf).unwrap_or_default();
    if !existing.lines().any(|line| line.trim() == "create_main_cluster = false") {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&conf)
            .and_then(|mut file| file.write_all(b"create_main_cluster = false\n"))
            .with_context(|| format!("writing {}", conf.display()))?;
    }
    // invoke-rc.d asks policy-rc.d whether a package may start its service; 101 says no. One that is
    // already there is the machine's own and stays.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        write_executable(
            policy,
            "#!/bin/sh\n# cargo xtask test: no service starts while postgresql installs\nexit 101\n",
        )?;
    }
    let installed = process::run(Command::new("apt-get").arg("update")).and_then(|()| {
        process::run(
            Command::new("apt-get")
                .args(["install", "-y", "postgresql"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                // createcluster.conf is ucf's to manage: keep the one written above.
                .env("UCF_FORCE_CONFFOLD", "1"),
        )
    });
    if ours {
        std::fs::remove_file(policy).with_context(|| format!("removing {}", policy.display()))?;
    }
    installed
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// A new, empty directory for the cluster on `port`: under `target/postgres-test/`, unless the
/// `postgres` user cannot reach it (a checkout in root's home) or its socket path would be too long,
/// then under the system's temporary directory. Stale clusters there are stopped and removed first.
fn cluster_dir(root: &Path, port: u16, as_postgres: bool) -> Result<PathBuf> {
    let candidates = [root.join(CLUSTERS), std::env::temp_dir().join("kommo-voip-postgres-test")];
    let mut refused = Vec::new();
    for base in &candidates {
        let dir = base.join(port.to_string());
        let prepared = (|| {
            ensure!(dir.join("socket").as_os_str().len() <= SOCKET_DIR_MAX, "its socket path would be too long");
            std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
            remove_stale(base, as_postgres);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if as_postgres && !reachable_by_postgres(&dir) {
                let _ = std::fs::remove_dir_all(&dir);
                bail!("the {USER} user cannot enter it");
            }
            Ok(())
        })();
        match prepared {
            Ok(()) => return Ok(dir),
            Err(error) => refused.push(format!("{}: {error:#}", base.display())),
        }
    }
    bail!("no directory for the test cluster: {}", refused.join("; "))
}

/// Whether the `postgres` user can enter `dir` (every parent must be searchable).
fn reachable_by_postgres(dir: &Path) -> bool {
    let mut test = Command::new("runuser");
    test.args(["-u", USER, "--", "test", "-x"]).arg(dir).stderr(Stdio::null());
    test.status().is_ok_and(|status| status.success())
}

/// Stops and removes every cluster under `base` whose xtask is gone (killed, or stopped with Ctrl-C,
/// which does not reach a postgres that pg_ctl started in a session of its own).
fn remove_stale(base: &Path, as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for dir in entries.flatten().map(|entry| entry.path()) {
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE)).unwrap_or_default();
        if owner.trim().parse::<u32>().is_ok_and(alive) {
            continue;
        }
        if dir.join("data/postmaster.pid").exists()
            && let Some(bin) = binaries()
        {
            let mut stop = as_user(as_postgres, &bin.join("pg_ctl"));
            stop.arg("-D").arg(dir.join("data")).args(["-m", "immediate", "-w", "stop"]);
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        eprintln!("removing the stale test cluster {}", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a real cluster (installing PostgreSQL if it is missing), so it runs only when asked:
    /// `cargo test -p xtask -- --ignored`. `cargo xtask test` exercises the same path on every run.
    #[test]
    #[ignore = "starts a PostgreSQL cluster"]
    fn a_cluster_starts_answers_and_stops() {
        let root = crate::workspace::root();
        let cluster = Cluster::start(&root).unwrap();
        let data = cluster.data();
        let psql = cluster.bin.join("psql");
        let answer = process::stdout_of(Command::new(&psql).args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            USER,
            "-Atc",
            "select 1",
        ]));
        assert_eq!(answer.as_deref(), Some("1"));
        let port = cluster.port;
        drop(cluster);
        assert!(!data.exists(), "the data directory outlives the cluster");
        let after = Command::new(&psql)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, "-Atc", "select 1"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!after.success(), "the cluster still answers after the guard dropped");
    }
}
