//! ARCHITECTURE.md's code map names files, types and functions; this test fails when one of them no longer
//! exists, so the map cannot drift from the code silently. It also holds the store's row to the
//! migrations: every table of either engine is named there, and both engines have the same tables.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Types of our dependencies the map names (tokio-util's, axum's).
const EXTERNAL: [&str; 2] = ["CancellationToken", "ConnectInfo"];
/// Files the build makes (Trunk's output), not kept in the repository.
const BUILT: [&str; 4] = ["widget.js", "widget_bg.wasm", "settings.js", "settings_bg.wasm"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// The rows of the "## Code map" table: (first cell, second cell).
fn code_map() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("\n## Code map").expect("a code map section");
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').splitn(2, " | ").collect();
            (cells.len() == 2).then(|| (cells[0].trim().to_owned(), cells[1].trim_end_matches(" |").trim().to_owned()))
        })
        .collect()
}

/// Every `backticked` token of a cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// A path of the repository the map names (build output under `target/` exists only after a build).
fn looks_like_path(token: &str) -> bool {
    let extensions = [".rs", ".js", ".css", ".json", ".sql", ".toml", ".html", ".mjs"];
    !token.contains(' ')
        && !token.starts_with("target/")
        && !token.contains("::")
        && (token.ends_with('/') || extensions.iter().any(|e| token.ends_with(e)))
}

/// Every Rust source file of the workspace (the crates' own code, not `target/`).
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    for krate in ["shared", "server", "widget", "xtask", "sandbox", "connector", "webhook-signing"] {
        walk(&root().join(krate), &mut out);
    }
    out
}

/// Whether `name` is defined as an item (type, trait, function, constant) or an enum variant.
fn defined(sources: &[(PathBuf, String)], name: &str) -> bool {
    let items = ["struct", "enum", "trait", "type", "fn", "const", "static", "mod"];
    sources.iter().any(|(_, text)| {
        text.lines().any(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("pub(crate) ").or_else(|| line.strip_prefix("pub ")).unwrap_or(line);
            let line = line.strip_prefix("async ").unwrap_or(line);
            let item = items.iter().any(|item| {
                line.strip_prefix(item).and_then(|rest| rest.strip_prefix(' ')).is_some_and(|rest| {
                    rest.strip_prefix(name)
                        .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
                })
            });
            // An enum variant: `Name,`, `Name {`, `Name(` at the start of a line.
            let variant = line.strip_prefix(name).is_some_and(|after| {
                after.starts_with(',') || after.starts_with(" {") || after.starts_with('(') || after.is_empty()
            });
            item || variant
        })
    })
}

fn is_type_name(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && token.chars().any(|c| c.is_ascii_lowercase())
        && token.chars().all(|c| c.is_ascii_alphanumeric())
}

#[test]
fn every_file_type_and_function_the_code_map_names_exists() {
    let root = root();
    let sources = sources();
    let rows = code_map();
    assert!(rows.len() >= 20, "the code map has its rows ({})", rows.len());
    let mut missing = Vec::new();
    for (first, second) in &rows {
        // The row's own paths; a later bare name is relative to the first one's directory.
        let mut base: Option<PathBuf> = None;
        for token in ticked(first).into_iter().filter(|token| looks_like_path(token) || token.contains('/')) {
            let at_root = root.join(&token);
            let path = match (&base, at_root.exists()) {
                (_, true) => at_root,
                (Some(base), false) => base.join(&token),
                (None, false) => at_root,
            };
            if !path.exists() {
                missing.push(format!("path `{token}` (row `{first}`)"));
            }
            if base.is_none() {
                base = Some(if path.is_dir() { path } else { path.parent().unwrap_or(&root).to_owned() });
            }
        }
        let base = base.unwrap_or_else(|| root.clone());
        for token in ticked(second) {
            if looks_like_path(&token) {
                let found = [root.join(&token), base.join(&token), base.join("src").join(&token)]
                    .iter()
                    .any(|path| path.exists())
                    || sources.iter().any(|(path, _)| path.starts_with(&base) && path.ends_with(&token));
                if !found && !BUILT.contains(&token.as_str()) {
                    missing.push(format!("file `{token}` (row `{first}`)"));
                }
            } else if token.contains("::") {
                // `module::Type`, `Type::function`: every segment of ours must exist.
                for segment in token.split("::").map(|segment| segment.split('(').next().unwrap_or_default()) {
                    let ours = ![
                        "crate",
                        "shared",
                        "server",
                        "sandbox",
                        "widget",
                        "xtask",
                        "connector",
                        "webhook_signing",
                        "",
                    ]
                    .contains(&segment);
                    let module = sources.iter().any(|(path, _)| {
                        path.file_stem().is_some_and(|stem| stem == segment)
                            || path.parent().and_then(Path::file_name).is_some_and(|dir| dir == segment)
                    });
                    if ours && !module && !defined(&sources, segment) {
                        missing.push(format!("`{segment}` of `{token}` (row `{first}`)"));
                    }
                }
            } else if is_type_name(&token) && !defined(&sources, &token) && !EXTERNAL.contains(&token.as_str()) {
                missing.push(format!("type or variant `{token}` (row `{first}`)"));
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map names what does not exist:\n{}", missing.join("\n"));
}

/// The tables the migrations of one engine create.
fn tables(engine: &str) -> BTreeSet<String> {
    let dir = root().join("server/migrations").join(engine);
    let mut tables = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("the engine's migrations").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("CREATE TABLE ") {
                let name = rest.split([' ', '(']).next().unwrap_or_default();
                tables.insert(name.to_owned());
            }
        }
    }
    tables
}

#[test]
fn both_engines_have_the_same_tables_and_the_store_row_names_each() {
    let (sqlite, postgres) = (tables("sqlite"), tables("postgres"));
    assert!(sqlite.len() >= 15, "{sqlite:?}");
    assert_eq!(sqlite, postgres, "migrations/sqlite and migrations/postgres create different tables");
    let rows = code_map();
    let (_, store) = rows.iter().find(|(first, _)| first == "`server/src/store/`").expect("the store's row");
    let named: BTreeSet<String> = ticked(store).into_iter().collect();
    let unnamed: Vec<&String> = sqlite.iter().filter(|table| !named.contains(*table)).collect();
    assert!(unnamed.is_empty(), "tables the code map does not place in a store module: {unnamed:?}");
    // Each store module the row names exists, and every module of the store is named.
    let modules: BTreeSet<String> = std::fs::read_dir(root().join("server/src/store"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rs"))
        .collect();
    let unmapped: Vec<&String> = modules.iter().filter(|module| !named.contains(*module)).collect();
    assert!(unmapped.is_empty(), "store modules the code map does not mention: {unmapped:?}");
}
