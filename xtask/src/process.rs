//! Running the tools xtask drives: one-shot commands, and long-lived children that never outlive xtask's intent.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a child gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// `program arg1 arg2`, for logs and error messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with inherited stdio; an error unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let description = describe(command);
    eprintln!("$ {description}");
    let status = command.status().with_context(|| format!("starting `{description}`"))?;
    if !status.success() {
        bail!("`{description}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly and returns its trimmed stdout; `None` if it cannot start or fails.
pub fn stdout_of(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `PATH` with `<root>/node_modules/.bin` first, so npm's tools (binaryen's wasm-opt 132) win over Debian's.
pub fn path_with_node_tools(root: &Path) -> Result<OsString> {
    let node_bin = root.join("node_modules/.bin");
    let current = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(node_bin).chain(std::env::split_paths(&current));
    std::env::join_paths(paths).context("joining PATH")
}

/// What a watchdog runs (`sh -c WATCHDOG sh <pid>`): it waits for end-of-file on its stdin, a pipe only xtask
/// holds open; then SIGTERM to the service, and SIGKILL if it is still running (not a zombie) after [`GRACE`].
/// Ctrl-C and a closed terminal reach the whole process group: the watchdog ignores them, so it outlives xtask
/// to clean up.
const WATCHDOG: &str = r#"trap '' INT HUP
read -r _ignored
kill -TERM "$1" 2>/dev/null || exit 0
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d ' ' -f 3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
waited=0
while alive "$1" && [ "$waited" -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
if alive "$1"; then kill -KILL "$1" 2>/dev/null; fi
exit 0"#;

/// A long-lived child process (server, local Kommo) that is stopped when this value is dropped, and also when
/// xtask dies without dropping it (SIGTERM, SIGKILL, an abort): a watchdog process holds the read end of a pipe
/// whose write end only xtask has (std opens pipes close-on-exec, so no other child inherits it). When xtask
/// exits, however it exits, the kernel closes that end, and the watchdog stops the service.
pub struct Service {
    name: String,
    child: Child,
    /// `None` when `sh` could not start: the service then lives only as long as xtask stops it.
    watchdog: Option<Child>,
}

impl Service {
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        let description = describe(command);
        eprintln!("$ {description} &");
        let child = command.spawn().with_context(|| format!("starting {name}: `{description}`"))?;
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "sh", &child.id().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let watchdog = match watchdog {
            Ok(watchdog) => Some(watchdog),
            Err(error) => {
                eprintln!("warning: no watchdog for {name} ({error}): if xtask is killed, stop it by hand");
                None
            }
        };
        Ok(Self { name: name.to_owned(), child, watchdog })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the child has already stopped.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL if it is still running after a grace period.
    pub fn stop(&mut self) {
        // The watchdog goes first: once this child is reaped its pid may be reused, and the watchdog must not
        // signal whatever gets it.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if self.exited().is_some() {
            return;
        }
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + GRACE;
        while terminated && Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
