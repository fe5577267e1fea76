//! Facts about the checkout that xtask reads: where it is, its version, locked dependency versions.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The repository root (the workspace holding `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `[workspace.package] version` of the root `Cargo.toml`.
pub fn version(root: &Path) -> Result<String> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    workspace_version(&text).with_context(|| format!("{} has no [workspace.package] version", path.display()))
}

fn workspace_version(cargo_toml: &str) -> Option<String> {
    let mut in_section = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
            continue;
        }
        if in_section && let Some(value) = toml_string_value(line, "version") {
            return Some(value);
        }
    }
    None
}

/// The single version of `package` that `Cargo.lock` pins.
pub fn locked_version(root: &Path, package: &str) -> Result<String> {
    let path = root.join("Cargo.lock");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut versions = lock_versions(&text, package);
    versions.dedup();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{} does not lock {package}", path.display()),
        many => bail!("{} locks several versions of {package}: {}", path.display(), many.join(", ")),
    }
}

fn lock_versions(cargo_lock: &str, package: &str) -> Vec<String> {
    let mut versions = Vec::new();
    let mut current_name: Option<String> = None;
    for line in cargo_lock.lines().map(str::trim) {
        if line == "[[package]]" {
            current_name = None;
        } else if let Some(name) = toml_string_value(line, "name") {
            current_name = Some(name);
        } else if let Some(version) = toml_string_value(line, "version")
            && current_name.as_deref() == Some(package)
        {
            versions.push(version);
        }
    }
    versions.sort();
    versions
}

/// `key = "value"` → `value` (the simple string assignments Cargo writes).
fn toml_string_value(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
    Some(rest.strip_prefix('"')?.strip_suffix('"')?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_version_is_read_from_the_workspace_package_table() {
        let toml = "[package]\nversion = \"9.9.9\"\n[workspace.package]\nedition = \"2024\"\nversion = \"0.1.0\"\n";
        assert_eq!(workspace_version(toml).as_deref(), Some("0.1.0"));
    }

    #[test]
    fn lock_versions_only_counts_the_named_package() {
        let lock = "[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.130\"\n\n[[package]]\nname = \"wasm-bindgen-macro\"\nversion = \"0.2.131\"\n";
        assert_eq!(lock_versions(lock, "wasm-bindgen"), ["0.2.130"]);
    }

    #[test]
    fn the_checkout_locks_one_wasm_bindgen() {
        let version = locked_version(&root(), "wasm-bindgen").unwrap();
        assert!(version.starts_with("0.2."), "{version}");
    }
}
