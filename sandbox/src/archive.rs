//! The widget archive held in memory and served at `/widget/<name>`, plus the vendored RequireJS and jQuery.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::SandboxError;

/// The cookie the host page sets for `?block_wasm=1`: while present, `.wasm` files answer 404.
pub(crate) const BLOCK_WASM_COOKIE: &str = "sandbox_block_wasm";

/// Why an archive cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("not a zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("cannot read `{name}` from the archive: {source}")]
    Entry { name: String, source: std::io::Error },
    #[error("the archive has no manifest.json at its root")]
    NoManifest,
    #[error("manifest.json is not valid JSON: {0}")]
    BadManifest(serde_json::Error),
    #[error("manifest.json has no string `widget.version`")]
    NoVersion,
}

/// The files of a widget archive, by their path inside the archive (e.g. `i18n/en.json`).
pub struct Archive {
    files: HashMap<String, Bytes>,
    manifest: Value,
}

impl Archive {
    /// Reads a zip file from disk.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let bytes = std::fs::read(path).map_err(|source| ArchiveError::Read { path: path.to_owned(), source })?;
        Archive::from_zip(&bytes)
    }

    /// Extracts every file of a zip into memory. Kommo wants the files at the root, so a manifest inside a
    /// folder is refused like Kommo refuses it.
    pub fn from_zip(bytes: &[u8]) -> Result<Archive, ArchiveError> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))?;
        let mut files = HashMap::new();
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index)?;
            if entry.is_dir() {
                continue;
            }
            // `enclosed_name` drops entries that would escape the root (`../`, absolute paths).
            let Some(name) = entry.enclosed_name() else {
                continue;
            };
            let name = name.to_string_lossy().replace('\\', "/");
            let mut content = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut content).map_err(|source| ArchiveError::Entry { name: name.clone(), source })?;
            files.insert(name, Bytes::from(content));
        }
        let manifest = files.get("manifest.json").ok_or(ArchiveError::NoManifest)?;
        let manifest: Value = serde_json::from_slice(manifest).map_err(ArchiveError::BadManifest)?;
        if !manifest["widget"]["version"].is_string() {
            return Err(ArchiveError::NoVersion);
        }
        Ok(Archive { files, manifest })
    }

    pub fn file(&self, name: &str) -> Option<&Bytes> {
        self.files.get(name)
    }

    pub fn manifest(&self) -> &Value {
        &self.manifest
    }

    /// `manifest.widget.version`, which Kommo exposes as `params.version` and `get_version()`.
    pub fn version(&self) -> &str {
        self.manifest["widget"]["version"].as_str().unwrap_or_default()
    }

    /// The parsed `i18n/<lang>.json`, if the archive has it and it is valid JSON.
    pub fn i18n(&self, lang: &str) -> Option<Value> {
        let bytes = self.files.get(&format!("i18n/{lang}.json"))?;
        serde_json::from_slice(bytes).ok()
    }
}

/// The Content-Type Kommo's CDN would send; `application/wasm` matters for `instantiateStreaming`.
pub(crate) fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "wasm" => "application/wasm",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "html" => "text/html; charset=utf-8",
        "twig" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether the request carries the cookie the page set for `?block_wasm=1`.
fn wasm_blocked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .any(|pair| pair.trim() == format!("{BLOCK_WASM_COOKIE}=1"))
}

fn file_response(name: &str, bytes: Bytes) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    // Every page load must see the archive as it is now: a re-packaged widget must not be masked by a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(crate) async fn widget_file_handler(
    State(state): State<crate::State>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, SandboxError> {
    if path.ends_with(".wasm") && wasm_blocked(&headers) {
        return Err(SandboxError::NotFound);
    }
    let bytes = state.config.archive.file(&path).ok_or(SandboxError::NotFound)?;
    Ok(file_response(&path, bytes.clone()))
}

/// RequireJS and jQuery 2.1.3 as Kommo provides them to widgets (from the project's `node_modules`).
pub struct Vendor {
    pub require_js: Bytes,
    pub jquery_js: Bytes,
}

impl Vendor {
    pub fn load(node_modules: &Path) -> Result<Vendor, std::io::Error> {
        let read = |relative: &str| -> Result<Bytes, std::io::Error> {
            let path = node_modules.join(relative);
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display())))
        };
        Ok(Vendor { require_js: read("requirejs/require.js")?, jquery_js: read("jquery/dist/jquery.js")? })
    }
}

pub(crate) async fn vendor_handler(
    State(state): State<crate::State>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, SandboxError> {
    let vendor = &state.config.vendor;
    let bytes = match name.as_str() {
        "require.js" => &vendor.require_js,
        "jquery.js" => &vendor.jquery_js,
        _ => return Err(SandboxError::NotFound),
    };
    Ok(file_response(&name, bytes.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_match_what_browsers_need() {
        let cases = [
            ("widget_bg.wasm", "application/wasm"),
            ("script.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("i18n/en.json", "application/json"),
            ("images/logo.png", "image/png"),
            ("README", "application/octet-stream"),
        ];
        for (name, expected) in cases {
            assert_eq!(content_type(name), expected, "{name}");
        }
    }

    #[test]
    fn block_wasm_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b; sandbox_block_wasm=1"));
        assert!(wasm_blocked(&headers));
        headers.insert(header::COOKIE, HeaderValue::from_static("sandbox_block_wasm=; other=1"));
        assert!(!wasm_blocked(&headers));
    }
}
