//! `KEY=VALUE` files (`.env`, `data/dev-secrets.env`): the subset the server's dotenv reader also accepts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// The variables of `path`; empty if the file does not exist.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let unquoted = ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)));
            (key.trim().to_owned(), unquoted.unwrap_or(value).to_owned())
        })
        .collect()
}

/// A variable from the process environment, else from `.env` at `root`; empty values count as unset.
pub fn setting(root: &Path, key: &str) -> Result<Option<String>> {
    if let Some(value) = std::env::var(key).ok().filter(|v| !v.is_empty()) {
        return Ok(Some(value));
    }
    Ok(read(&root.join(".env"))?.remove(key).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_comments_and_unquotes_values() {
        let vars = parse("# local\nKOMMO_CLIENT_ID=abc\nexport RUST_LOG = \"info\"\nEMPTY=\nSECRET_KEYS='k1:AAA='\n");
        assert_eq!(vars["KOMMO_CLIENT_ID"], "abc");
        assert_eq!(vars["RUST_LOG"], "info");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars["SECRET_KEYS"], "k1:AAA=");
    }
}
