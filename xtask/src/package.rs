//! The widget archive: Trunk builds the wasm, then the files Kommo loads are zipped flat, deterministically, and checked.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use zip::write::SimpleFileOptions;

use crate::{archive_rules, env_file, process, workspace};

/// Where the server listens when nothing else is configured (`server` reads the same default).
pub const DEFAULT_API_BASE: &str = "http://127.0.0.1:8080";
/// The JS string literal content in `widget/script.js` that packaging replaces with the server's public base URL.
const API_BASE_PLACEHOLDER: &str = "__KVOIP_API_BASE__";
/// The archive's two wasm modules, built by Trunk from the `widget` crate with different features:
/// (Trunk's HTML target, its output directory, the archive name of its glue and of its wasm).
const MODULES: [WasmModule; 2] = [
    // The call popups and the call-result modal, fetched at a page's first call.
    WasmModule { target: "widget/index.html", dist: "target/widget-dist", glue: "widget.js", wasm: "widget_bg.wasm" },
    // Fetched by script.js when the settings modal opens (admins only).
    WasmModule {
        target: "widget/settings.html",
        dist: "target/settings-dist",
        glue: "settings.js",
        wasm: "settings_bg.wasm",
    },
];

struct WasmModule {
    target: &'static str,
    dist: &'static str,
    glue: &'static str,
    wasm: &'static str,
}
pub const DEFAULT_OUT: &str = "dist/widget.zip";

/// `cargo xtask package [--api-base URL] [--out PATH]`.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let mut api_base = None;
    let mut out = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--api-base" => api_base = Some(value()?.clone()),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}; usage: cargo xtask package [--api-base URL] [--out PATH]"),
        }
    }
    let api_base = resolve_api_base(root, api_base)?;
    build_widget(root)?;
    write_archive(root, &api_base, &out.unwrap_or_else(|| root.join(DEFAULT_OUT)))
}

/// The `--api-base` given, else `PUBLIC_BASE_URL` (environment, then `.env`), else the local default.
pub fn resolve_api_base(root: &Path, explicit: Option<String>) -> Result<String> {
    let chosen = match explicit {
        Some(value) => value,
        None => env_file::setting(root, "PUBLIC_BASE_URL")?.unwrap_or_else(|| DEFAULT_API_BASE.to_owned()),
    };
    normalize_api_base(&chosen)
}

/// `scheme://host[:port]` without a trailing slash; it is pasted into a JS string, so nothing that could escape it.
fn normalize_api_base(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else { bail!("API base {url:?} must start with http:// or https://") };
    let host_chars_only = rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ensure!(!rest.is_empty() && host_chars_only, "API base {url:?} must be scheme://host[:port], without a path");
    Ok(url.to_owned())
}

/// Runs `trunk build` (Trunk.toml at the root) for each wasm module, with npm's wasm-opt first on PATH.
pub fn build_widget(root: &Path) -> Result<()> {
    let wasm_opt = root.join("node_modules/.bin/wasm-opt");
    ensure!(
        wasm_opt.exists(),
        "{} is missing: run `cargo xtask tools` (npm ci installs binaryen 132)",
        wasm_opt.display()
    );
    for module in &MODULES {
        process::run(
            Command::new("trunk")
                .args(["build", module.target, "--dist", module.dist])
                .current_dir(root)
                .env("PATH", process::path_with_node_tools(root)?),
        )?;
    }
    Ok(())
}

/// Zips the built widget into `out`, prints its sizes, and fails if it breaks any Kommo rule.
pub fn write_archive(root: &Path, api_base: &str, out: &Path) -> Result<()> {
    let files = archive_files(root, api_base)?;
    let zip = zip_files(&files)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(out, &zip).with_context(|| format!("writing {}", out.display()))?;

    println!("packaged {} for API base {api_base}", out.display());
    for module in &MODULES {
        let wasm = &files[module.wasm];
        println!("  {:<17} {} raw, {} gzipped", format!("{}:", module.wasm), kib(wasm.len()), kib(gzipped_len(wasm)?));
    }
    println!("  archive:        {} ({} files)", kib(zip.len()), files.len());

    let violations = archive_rules::check(&zip);
    for violation in &violations {
        eprintln!("{violation}");
    }
    ensure!(violations.is_empty(), "{} breaks {} Kommo archive rule(s)", out.display(), violations.len());
    Ok(())
}

/// Prints what every Kommo page downloads for the widget, gzipped as a browser receives it (`script.js`,
/// which keeps the push stream; the archive's `style.css` beside it), what a page's first call adds (the
/// calls module) and what opening the settings adds (the settings module).
pub fn print_page_weight(root: &Path) -> Result<()> {
    let files = archive_files(root, "https://example.invalid")?;
    let [calls, settings] = &MODULES;
    let sum = |title: &str, names: &[&str]| -> Result<()> {
        let mut total = 0;
        println!("{title}");
        for name in names {
            let bytes = files.get(*name).with_context(|| format!("{name} is not in the archive"))?;
            let gzipped = gzipped_len(bytes)?;
            total += gzipped;
            println!("  {name:<17} {:>22} raw  {:>22} gzipped", kib(bytes.len()), kib(gzipped));
        }
        println!("  {:<17} {:>22}      {:>22} gzipped", "total", "", kib(total));
        Ok(())
    };
    sum("widget weight on every Kommo page (gzipped; goal for script + glue + wasm: 80 KiB):", &["script.js"])?;
    if let Some(style) = files.get("style.css") {
        println!("  {:<17} {:>22} raw  {:>22} gzipped", "style.css", kib(style.len()), kib(gzipped_len(style)?));
    }
    sum("the calls module, fetched at a page's first call (gzipped):", &[calls.glue, calls.wasm])?;
    sum(
        "the settings module, fetched when an admin opens the settings (gzipped; goal: 150 KiB):",
        &[settings.glue, settings.wasm],
    )
}

/// Archive name → contents, for every file Kommo loads.
fn archive_files(root: &Path, api_base: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let read = |relative: &str| {
        let path = root.join(relative);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let mut files = BTreeMap::new();

    let manifest = read("manifest.json")?;
    check_manifest_version(root, &manifest)?;
    files.insert("manifest.json".to_owned(), manifest);

    let script = String::from_utf8(read("widget/script.js")?).context("widget/script.js is not UTF-8")?;
    ensure!(
        script.contains(API_BASE_PLACEHOLDER),
        "widget/script.js lacks the placeholder {API_BASE_PLACEHOLDER} for the API base"
    );
    files.insert("script.js".to_owned(), script.replace(API_BASE_PLACEHOLDER, api_base).into_bytes());
    files.insert("style.css".to_owned(), read("widget/style.css")?);
    for module in &MODULES {
        // Trunk names both outputs after the crate; the archive names them after the module.
        for (built, name) in [("widget.js", module.glue), ("widget_bg.wasm", module.wasm)] {
            let bytes = read(&format!("{}/{built}", module.dist))
                .context("run `cargo xtask package`, which builds the widget with Trunk first")?;
            files.insert(name.to_owned(), bytes);
        }
    }
    for (folder, extension) in [("i18n", "json"), ("images", "png")] {
        for name in files_with_extension(&root.join(folder), extension)? {
            files.insert(format!("{folder}/{name}"), read(&format!("{folder}/{name}"))?);
        }
    }
    Ok(files)
}

/// Kommo updates a widget only when `widget.version` grows; it follows the workspace version so one bump does both.
fn check_manifest_version(root: &Path, manifest: &[u8]) -> Result<()> {
    let manifest: serde_json::Value = serde_json::from_slice(manifest).context("manifest.json is not valid JSON")?;
    let version = manifest["widget"]["version"].as_str().unwrap_or_default();
    let workspace_version = workspace::version(root)?;
    ensure!(
        version == workspace_version,
        "manifest.json widget.version is {version:?} but the workspace version (Cargo.toml) is {workspace_version:?}: make them equal"
    );
    Ok(())
}

fn files_with_extension(dir: &Path, extension: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && name.ends_with(&format!(".{extension}")) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A zip of `files` whose bytes depend only on the names and contents: sorted, fixed timestamps and permissions.
pub fn zip_files(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut folders_written = Vec::new();
    for (name, bytes) in files {
        // Folder entries too, as `zip -r` writes them: some extractors expect them.
        if let Some((folder, _)) = name.rsplit_once('/')
            && !folders_written.iter().any(|f| f == folder)
        {
            writer.add_directory(format!("{folder}/"), options.unix_permissions(0o755))?;
            folders_written.push(folder.to_owned());
        }
        writer.start_file(name.as_str(), options)?;
        writer.write_all(bytes)?;
    }
    Ok(writer.finish()?.into_inner())
}

fn gzipped_len(bytes: &[u8]) -> Result<usize> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB ({bytes} bytes)", bytes as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_version_is_the_workspace_version() {
        let root = workspace::root();
        check_manifest_version(&root, &std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    }

    /// VoIP credentials live on our server, never in Kommo's widget settings, which every account admin can read.
    /// The settings form is rendered by the wasm; the manifest declares one non-required `custom` field as its
    /// slot, because Kommo documents the settings form of `installation: true` widgets through declared fields,
    /// and `custom` is its type for a form the widget renders itself. The field stores nothing.
    #[test]
    fn the_manifest_declares_no_settings_field_that_could_hold_a_secret() {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(workspace::root().join("manifest.json")).unwrap()).unwrap();
        let settings = manifest["settings"].as_object().expect("manifest.json has a settings object");
        for (code, field) in settings {
            assert_eq!(field["type"], "custom", "settings.{code}: only custom fields, rendered by the wasm");
            assert_eq!(field["required"], false, "settings.{code}: nothing for Kommo to demand");
        }
    }

    #[test]
    fn zips_are_byte_for_byte_reproducible_and_sorted() {
        let files: BTreeMap<String, Vec<u8>> = [("script.js", "a"), ("i18n/en.json", "{}"), ("manifest.json", "{}")]
            .map(|(n, c)| (n.to_owned(), c.as_bytes().to_vec()))
            .into();
        let zip = zip_files(&files).unwrap();
        assert_eq!(zip, zip_files(&files).unwrap());
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        let names: Vec<String> =
            (0..archive.len()).map(|i| archive.by_index(i).unwrap().name().unwrap().into_owned()).collect();
        assert_eq!(names, ["i18n/", "i18n/en.json", "manifest.json", "script.js"]);
    }

    #[test]
    fn api_base_is_normalized_and_cannot_escape_the_js_string() {
        assert_eq!(normalize_api_base("https://voip.example.com/").unwrap(), "https://voip.example.com");
        assert_eq!(normalize_api_base("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        for bad in ["ftp://x", "127.0.0.1:8080", "https://x/api", "https://x'+alert(1)+'", "https://"] {
            assert!(normalize_api_base(bad).is_err(), "{bad}");
        }
    }
}
