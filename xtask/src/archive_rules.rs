//! Kommo's rules for a widget archive (KOMMO.md section 5), checked on the bytes of any zip.
//!
//! Invariant: this module does no I/O; it judges bytes and returns every broken rule at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Cursor, Read};

use serde_json::{Map, Value};

/// One broken rule: which file, what is wrong with it, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub file: String,
    pub problem: String,
    pub fix: String,
}

impl Violation {
    fn new(file: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { file: file.into(), problem: problem.into(), fix: fix.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} — {}", self.file, self.problem, self.fix)
    }
}

/// The logos every widget needs, with their exact sizes in pixels (width, height).
pub const LOGOS: [(&str, u32, u32); 5] = [
    ("logo_main.png", 400, 272),
    ("logo_small.png", 108, 108),
    ("logo.png", 130, 100),
    ("logo_medium.png", 240, 84),
    ("logo_min.png", 84, 84),
];

/// Needed only by widgets that declare `dp` (Digital Pipeline).
const DP_LOGO: (&str, u32, u32) = ("logo_dp.png", 174, 109);

/// Kommo's documented ceiling for one logo.
const LOGO_MAX_BYTES: usize = 300 * 1024;

/// Files Kommo reads as text, which must be UTF-8 without a byte-order mark.
const TEXT_EXTENSIONS: [&str; 7] = ["json", "js", "css", "twig", "html", "txt", "md"];

const SETTINGS_FIELD_TYPES: [&str; 5] = ["text", "pass", "users", "users_lp", "custom"];

const MANIFEST: &str = "manifest.json";
const ARCHIVE: &str = "<archive>";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Every rule of KOMMO.md section 5 that `zip_bytes` breaks; empty when Kommo should accept it.
pub fn check(zip_bytes: &[u8]) -> Vec<Violation> {
    match read_files(zip_bytes) {
        Ok(files) => check_files(&files),
        Err(violation) => vec![violation],
    }
}

/// The archive's regular files by name (directory entries dropped).
fn read_files(zip_bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, Violation> {
    let unreadable = |what: String| {
        Violation::new(
            ARCHIVE,
            what,
            "rebuild it with `cargo xtask package` (or `zip -r widget.zip .` inside the widget folder)",
        )
    };
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| unreadable(format!("not a readable zip ({e})")))?;
    let mut files = BTreeMap::new();
    for index in 0..archive.len() {
        let mut entry =
            archive.by_index(index).map_err(|e| unreadable(format!("entry #{index} is unreadable ({e})")))?;
        if entry.is_dir() {
            continue;
        }
        let name =
            entry.name().map_err(|e| unreadable(format!("entry #{index} has an unreadable name ({e})")))?.into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| unreadable(format!("{name} cannot be decompressed ({e})")))?;
        files.insert(name, bytes);
    }
    Ok(files)
}

fn check_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<Violation> {
    let mut violations = Vec::new();
    if !files.contains_key(MANIFEST) {
        violations.push(missing_manifest(files));
        return violations;
    }
    check_text_encoding(files, &mut violations);
    let Some(manifest) = parse_json_file(files, MANIFEST, &mut violations) else {
        return violations;
    };
    let Some(manifest) = manifest.as_object() else {
        violations.push(Violation::new(
            MANIFEST,
            "the top level is not a JSON object",
            "write it as { \"widget\": {...}, ... }",
        ));
        return violations;
    };
    check_manifest(manifest, &mut violations);
    check_i18n(files, manifest, &mut violations);
    check_images(files, manifest, &mut violations);
    violations
}

/// Explains a missing root manifest, recognising the common mistake of zipping the folder itself.
fn missing_manifest(files: &BTreeMap<String, Vec<u8>>) -> Violation {
    // macOS's Finder adds a `__MACOSX/` folder of resource forks next to the zipped folder.
    let first_folders: BTreeSet<Option<&str>> = files
        .keys()
        .map(|name| name.split_once('/').map(|(folder, _)| folder))
        .filter(|folder| *folder != Some("__MACOSX"))
        .collect();
    if let [Some(folder)] = first_folders.into_iter().collect::<Vec<_>>().as_slice() {
        return Violation::new(
            format!("{folder}/"),
            format!(
                "every file is inside the folder `{folder}/`, but Kommo reads manifest.json, script.js, i18n/ and images/ only at the archive root"
            ),
            format!("zip the folder's contents, not the folder: `cd {folder} && zip -r ../widget.zip .`"),
        );
    }
    Violation::new(
        MANIFEST,
        "missing at the archive root",
        "add manifest.json next to script.js at the root of the zip (KOMMO.md 5.3)",
    )
}

fn check_text_encoding(files: &BTreeMap<String, Vec<u8>>, violations: &mut Vec<Violation>) {
    for (name, bytes) in files {
        let is_text =
            name.rsplit_once('.').is_some_and(|(_, ext)| TEXT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()));
        if !is_text {
            continue;
        }
        if bytes.starts_with(UTF8_BOM) {
            violations.push(Violation::new(
                name,
                "starts with a UTF-8 byte-order mark",
                "save it as UTF-8 without BOM",
            ));
        } else if let Err(e) = std::str::from_utf8(bytes) {
            violations.push(Violation::new(
                name,
                format!("is not valid UTF-8 (first bad byte at offset {})", e.valid_up_to()),
                "re-save it as UTF-8 without BOM",
            ));
        }
    }
}

/// Parses a JSON file of the archive, reporting syntax errors. A BOM is skipped here (reported by the encoding rule).
fn parse_json_file(files: &BTreeMap<String, Vec<u8>>, name: &str, violations: &mut Vec<Violation>) -> Option<Value> {
    let bytes = files.get(name)?;
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            violations.push(Violation::new(
                name,
                format!("is not valid JSON ({e})"),
                "fix the syntax (no comments, no trailing commas, double-quoted keys)",
            ));
            None
        }
    }
}

fn check_manifest(manifest: &Map<String, Value>, violations: &mut Vec<Violation>) {
    let mut problem = |problem: String, fix: &str| violations.push(Violation::new(MANIFEST, problem, fix));
    let Some(widget) = manifest.get("widget").and_then(Value::as_object) else {
        problem(
            "has no `widget` object".into(),
            "add \"widget\": {name, description, short_description, version, ...} (KOMMO.md 5.3)",
        );
        return;
    };
    for key in ["name", "description", "short_description"] {
        if !is_non_empty_string(widget.get(key)) {
            problem(
                format!("widget.{key} is missing or not a non-empty string"),
                &format!("set it to an i18n key, e.g. \"widget.{key}\""),
            );
        }
    }
    match widget.get("version").and_then(Value::as_str) {
        Some(version) if is_semver(version) => {}
        Some(version) => problem(
            format!("widget.version \"{version}\" is not a semantic version"),
            "use MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
        ),
        None => problem(
            "widget.version is missing or not a string".into(),
            "add \"version\": \"1.0.0\" and bump it on every upload",
        ),
    }
    if widget.get("interface_version").and_then(Value::as_i64) != Some(2) {
        problem("widget.interface_version is missing or not 2".into(), "set \"interface_version\": 2");
    }
    for key in ["init_once", "installation"] {
        if !widget.get(key).is_some_and(Value::is_boolean) {
            problem(format!("widget.{key} is missing or not a boolean"), &format!("set \"{key}\": true or false"));
        }
    }
    match widget.get("locale").and_then(Value::as_array) {
        Some(locales) if !locales.is_empty() && locales.iter().all(is_language_code) => {
            let distinct: BTreeSet<_> = locales.iter().filter_map(Value::as_str).collect();
            if distinct.len() != locales.len() {
                problem("widget.locale lists a language twice".into(), "list each language once");
            }
        }
        _ => problem(
            "widget.locale is missing or not a non-empty array of language codes".into(),
            "set e.g. \"locale\": [\"en\", \"es\", \"pt\"], one i18n/<lang>.json each",
        ),
    }
    let support = widget.get("support").and_then(Value::as_object);
    let link = support.and_then(|s| s.get("link")).and_then(Value::as_str);
    if !link.is_some_and(|l| (l.starts_with("https://") || l.starts_with("http://")) && l.len() > "https://".len()) {
        problem(
            "widget.support.link is missing or not an http(s) URL".into(),
            "add \"support\": {\"link\": \"https://…\", \"email\": \"…\"}",
        );
    }
    let email = support.and_then(|s| s.get("email")).and_then(Value::as_str);
    if !email.is_some_and(is_plausible_email) {
        problem(
            "widget.support.email is missing or not an email address".into(),
            "add \"support\": {\"link\": \"https://…\", \"email\": \"name@domain\"}",
        );
    }
    check_locations_and_settings(manifest, &mut problem);
}

fn check_locations_and_settings(manifest: &Map<String, Value>, problem: &mut impl FnMut(String, &str)) {
    if let Some(locations) = manifest.get("locations") {
        let Some(locations) = locations.as_array().filter(|l| l.iter().all(Value::is_string)) else {
            problem(
                "locations is not an array of strings".into(),
                "list locations like [\"everywhere\", \"ccard-1\", \"settings\"]",
            );
            return;
        };
        let wants_advanced = locations.iter().any(|l| l.as_str() == Some("advanced_settings"));
        if wants_advanced
            && !manifest.get("advanced").and_then(|a| a.get("title")).is_some_and(|t| is_non_empty_string(Some(t)))
        {
            problem(
                "locations has advanced_settings but there is no advanced.title".into(),
                "add \"advanced\": {\"title\": \"advanced.title\"} or drop the location",
            );
        }
    }
    let Some(settings) = manifest.get("settings") else {
        return;
    };
    let Some(settings) = settings.as_object() else {
        problem(
            "settings is not an object".into(),
            "write settings as {\"code\": {\"name\": \"settings.code\", \"type\": \"text\"}}",
        );
        return;
    };
    for (code, field) in settings {
        if !is_non_empty_string(field.get("name")) {
            problem(
                format!("settings.{code}.name is missing"),
                &format!("set it to an i18n key, e.g. \"settings.{code}\""),
            );
        }
        match field.get("type").and_then(Value::as_str) {
            Some(kind) if SETTINGS_FIELD_TYPES.contains(&kind) => {}
            other => problem(
                format!("settings.{code}.type is {}", other.map_or("missing".to_owned(), |t| format!("\"{t}\""))),
                &format!("use one of {}", SETTINGS_FIELD_TYPES.join(", ")),
            ),
        }
        if field.get("required").is_some_and(|r| !r.is_boolean()) {
            problem(format!("settings.{code}.required is not a boolean"), "set it to true or false");
        }
    }
}

/// The i18n keys the manifest names, each with the manifest field naming it.
fn named_i18n_keys(manifest: &Map<String, Value>) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut add = |field: String, key: Option<&Value>| {
        if let Some(key) = key.and_then(Value::as_str).filter(|k| !k.is_empty()) {
            keys.push((field, key.to_owned()));
        }
    };
    let widget = manifest.get("widget");
    for key in ["name", "description", "short_description"] {
        add(format!("widget.{key}"), widget.and_then(|w| w.get(key)));
    }
    if let Some(settings) = manifest.get("settings").and_then(Value::as_object) {
        for (code, field) in settings {
            add(format!("settings.{code}.name"), field.get("name"));
        }
    }
    add("advanced.title".into(), manifest.get("advanced").and_then(|a| a.get("title")));
    add("tour.tour_description".into(), manifest.get("tour").and_then(|t| t.get("tour_description")));
    keys
}

fn check_i18n(files: &BTreeMap<String, Vec<u8>>, manifest: &Map<String, Value>, violations: &mut Vec<Violation>) {
    let locales: BTreeSet<&str> = manifest
        .get("widget")
        .and_then(|w| w.get("locale"))
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut parsed = BTreeMap::new();
    for lang in &locales {
        let name = format!("i18n/{lang}.json");
        if !files.contains_key(&name) {
            violations.push(Violation::new(
                &name,
                format!("missing, but manifest widget.locale lists \"{lang}\""),
                "add it with the same keys as the other language files, or drop the language from widget.locale",
            ));
            continue;
        }
        match parse_json_file(files, &name, violations) {
            Some(Value::Object(object)) => {
                parsed.insert(name, object);
            }
            Some(_) => violations.push(Violation::new(
                &name,
                "the top level is not a JSON object",
                "write it as {\"widget\": {\"name\": \"…\"}, …}",
            )),
            None => {}
        }
    }

    let leaf_keys: BTreeMap<&String, BTreeSet<String>> =
        parsed.iter().map(|(name, object)| (name, leaf_paths(object))).collect();
    let all_keys: BTreeSet<&String> = leaf_keys.values().flatten().collect();
    for (name, keys) in &leaf_keys {
        let missing: Vec<&str> = all_keys.iter().filter(|k| !keys.contains(**k)).map(|k| k.as_str()).collect();
        if missing.is_empty() {
            continue;
        }
        let owner =
            leaf_keys.iter().find(|(_, other)| other.contains(missing[0])).map_or("", |(other, _)| other.as_str());
        violations.push(Violation::new(
            *name,
            format!(
                "lacks keys the other language files have: {} (e.g. {owner} has {})",
                abbreviated(&missing),
                missing[0]
            ),
            "give every i18n file the same key structure",
        ));
    }

    for (name, object) in &parsed {
        for (field, key) in named_i18n_keys(manifest) {
            match lookup(object, &key) {
                Some(Value::String(text)) if !text.trim().is_empty() => {}
                Some(Value::String(_)) => violations.push(Violation::new(
                    name,
                    format!("key {key} (named by manifest {field}) is empty"),
                    "write the text for this language",
                )),
                Some(_) => violations.push(Violation::new(
                    name,
                    format!("key {key} (named by manifest {field}) is not a string"),
                    "make it a non-empty string",
                )),
                None => violations.push(Violation::new(
                    name,
                    format!("key {key} (named by manifest {field}) is missing"),
                    format!("add \"{key}\" with this language's text"),
                )),
            }
        }
        let empty: Vec<String> = leaf_paths(object)
            .into_iter()
            .filter(|path| matches!(lookup(object, path), Some(Value::String(s)) if s.trim().is_empty()))
            .collect();
        if !empty.is_empty() {
            let empty: Vec<&str> = empty.iter().map(String::as_str).collect();
            violations.push(Violation::new(
                name,
                format!("has empty texts: {}", abbreviated(&empty)),
                "write the text for this language",
            ));
        }
    }
}

/// Dotted paths of the non-object values (`{"a": {"b": "x"}}` → `a.b`).
fn leaf_paths(object: &Map<String, Value>) -> BTreeSet<String> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    walk(&if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") }, child, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    for (key, value) in object {
        walk(key, value, &mut out);
    }
    out
}

fn lookup<'a>(object: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    let (first, rest) = dotted.split_once('.').map_or((dotted, None), |(first, rest)| (first, Some(rest)));
    let value = object.get(first)?;
    match rest {
        None => Some(value),
        Some(rest) => lookup(value.as_object()?, rest),
    }
}

fn check_images(files: &BTreeMap<String, Vec<u8>>, manifest: &Map<String, Value>, violations: &mut Vec<Violation>) {
    let dp = manifest.contains_key("dp").then_some(DP_LOGO);
    for (logo, width, height) in LOGOS.into_iter().chain(dp) {
        let name = format!("images/{logo}");
        let Some(bytes) = files.get(&name) else {
            violations.push(Violation::new(
                &name,
                format!("missing (Kommo needs a {width}x{height} PNG)"),
                "add it (`cargo xtask logos` draws this project's logos)",
            ));
            continue;
        };
        match png_size(bytes) {
            None => violations.push(Violation::new(
                &name,
                "is not a PNG file",
                format!("save it as a {width}x{height} PNG"),
            )),
            Some((w, h)) if (w, h) != (width, height) => violations.push(Violation::new(
                &name,
                format!("is {w}x{h} px, Kommo needs {width}x{height}"),
                format!("redraw or resize it to exactly {width}x{height}"),
            )),
            Some(_) => {}
        }
        if bytes.len() > LOGO_MAX_BYTES {
            violations.push(Violation::new(
                &name,
                format!("is {} bytes, over Kommo's limit of {} bytes (300 KB) per logo", bytes.len(), LOGO_MAX_BYTES),
                "reduce colours or compress it harder",
            ));
        }
    }
}

/// Width and height from a PNG's IHDR chunk, which the format requires to come first.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(PNG_SIGNATURE) || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((width, height))
}

/// `MAJOR.MINOR.PATCH`, numbers without leading zeros, with optional `-pre` and `+build` parts.
fn is_semver(version: &str) -> bool {
    let (version, build) = version.split_once('+').map_or((version, None), |(v, b)| (v, Some(b)));
    let (core, pre) = version.split_once('-').map_or((version, None), |(c, p)| (c, Some(p)));
    let number = |part: &str| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'))
    };
    let identifiers = |text: &str| {
        text.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| number(p)) && pre.is_none_or(identifiers) && build.is_none_or(identifiers)
}

fn is_language_code(value: &Value) -> bool {
    value.as_str().is_some_and(|code| (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_plausible_email(email: &str) -> bool {
    email
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace))
}

fn is_non_empty_string(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty())
}

/// The first few items of a list, for messages that must stay one line.
fn abbreviated(items: &[&str]) -> String {
    const SHOWN: usize = 6;
    let shown = items.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A PNG signature and IHDR chunk: all the checker reads of an image.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = PNG_SIGNATURE.to_vec();
        bytes.extend_from_slice(&13u32.to_be_bytes());
        bytes.extend_from_slice(b"IHDR");
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    fn manifest() -> Value {
        json!({
            "widget": {
                "name": "widget.name",
                "description": "widget.description",
                "short_description": "widget.short_description",
                "version": "0.1.0",
                "interface_version": 2,
                "init_once": true,
                "locale": ["en", "es"],
                "installation": true,
                "support": {"link": "https://example.com/support", "email": "support@example.com"}
            },
            "locations": ["everywhere", "settings"],
            "settings": {"panel": {"name": "settings.panel", "type": "custom", "required": false}}
        })
    }

    fn i18n(text: &str) -> Value {
        json!({
            "widget": {"name": text, "description": text, "short_description": text},
            "settings": {"panel": text}
        })
    }

    /// The files of an archive that breaks no rule.
    fn valid_files() -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        files.insert(MANIFEST.to_owned(), manifest().to_string().into_bytes());
        files.insert("script.js".to_owned(), b"define([], function () {});".to_vec());
        files.insert("i18n/en.json".to_owned(), i18n("Phone").to_string().into_bytes());
        files.insert("i18n/es.json".to_owned(), i18n("Teléfono").to_string().into_bytes());
        for (logo, width, height) in LOGOS {
            files.insert(format!("images/{logo}"), png_header(width, height));
        }
        files
    }

    fn check_with(edit: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) -> Vec<String> {
        let mut files = valid_files();
        edit(&mut files);
        let zip = crate::package::zip_files(&files).unwrap();
        check(&zip).iter().map(ToString::to_string).collect()
    }

    fn edit_json(files: &mut BTreeMap<String, Vec<u8>>, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut value: Value = serde_json::from_slice(&files[name]).unwrap();
        edit(&mut value);
        files.insert(name.to_owned(), value.to_string().into_bytes());
    }

    #[track_caller]
    fn assert_one_violation(violations: &[String], starts_with: &str, mentions: &str) {
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(violations[0].starts_with(starts_with), "{violations:#?}");
        assert!(violations[0].contains(mentions), "{violations:#?}");
        assert!(violations[0].contains(" — "), "a violation says how to fix it: {violations:#?}");
    }

    #[test]
    fn a_valid_archive_has_no_violations() {
        assert_eq!(check_with(|_| {}), Vec::<String>::new());
    }

    #[test]
    fn bytes_that_are_not_a_zip_are_reported() {
        let violations: Vec<String> = check(b"not a zip").iter().map(ToString::to_string).collect();
        assert_one_violation(&violations, "<archive>: not a readable zip", "cargo xtask package");
    }

    #[test]
    fn a_wrapping_folder_is_rejected_with_a_hint() {
        let violations = check_with(|files| {
            *files =
                std::mem::take(files).into_iter().map(|(name, bytes)| (format!("mywidget/{name}"), bytes)).collect();
        });
        assert_one_violation(
            &violations,
            "mywidget/: every file is inside the folder",
            "cd mywidget && zip -r ../widget.zip .",
        );
    }

    #[test]
    fn a_wrapping_folder_zipped_by_macos_finder_is_recognised() {
        let violations = check_with(|files| {
            *files =
                std::mem::take(files).into_iter().map(|(name, bytes)| (format!("mywidget/{name}"), bytes)).collect();
            files.insert("__MACOSX/mywidget/._manifest.json".to_owned(), vec![0, 5, 22, 7]);
        });
        assert_one_violation(&violations, "mywidget/: every file is inside the folder", "zip the folder's contents");
    }

    #[test]
    fn a_missing_manifest_is_reported() {
        let violations = check_with(|files| {
            files.remove(MANIFEST);
        });
        assert_one_violation(&violations, "manifest.json: missing at the archive root", "add manifest.json");
    }

    #[test]
    fn a_manifest_that_is_not_json_is_reported() {
        let violations = check_with(|files| {
            files.insert(MANIFEST.to_owned(), b"{\"widget\": {},}".to_vec());
        });
        assert_one_violation(&violations, "manifest.json: is not valid JSON", "trailing commas");
    }

    #[test]
    fn each_required_widget_field_is_checked() {
        for field in [
            "name",
            "description",
            "short_description",
            "version",
            "interface_version",
            "init_once",
            "locale",
            "installation",
        ] {
            let violations = check_with(|files| {
                edit_json(files, MANIFEST, |m| m["widget"].as_object_mut().unwrap().remove(field).map(drop).unwrap())
            });
            assert!(
                violations.iter().any(|v| v.starts_with(&format!("manifest.json: widget.{field} is missing"))),
                "{field}: {violations:#?}"
            );
        }
    }

    #[test]
    fn a_version_that_is_not_semver_is_reported() {
        let violations = check_with(|files| edit_json(files, MANIFEST, |m| m["widget"]["version"] = json!("1.0")));
        assert_one_violation(
            &violations,
            "manifest.json: widget.version \"1.0\" is not a semantic version",
            "MAJOR.MINOR.PATCH",
        );
        assert!(is_semver("0.1.0") && is_semver("1.2.3-rc.1+build.5"));
        assert!(!is_semver("01.2.3") && !is_semver("1.2.3.4") && !is_semver("v1.2.3") && !is_semver("1.2.3-"));
    }

    #[test]
    fn interface_version_other_than_2_is_reported() {
        let violations =
            check_with(|files| edit_json(files, MANIFEST, |m| m["widget"]["interface_version"] = json!(1)));
        assert_one_violation(&violations, "manifest.json: widget.interface_version", "\"interface_version\": 2");
    }

    #[test]
    fn support_link_and_email_are_required() {
        let violations = check_with(|files| {
            edit_json(files, MANIFEST, |m| m["widget"]["support"] = json!({"link": "example.com", "email": "nobody"}))
        });
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert!(violations[0].starts_with("manifest.json: widget.support.link"), "{violations:#?}");
        assert!(violations[1].starts_with("manifest.json: widget.support.email"), "{violations:#?}");
    }

    #[test]
    fn an_unknown_settings_field_type_is_reported() {
        let violations =
            check_with(|files| edit_json(files, MANIFEST, |m| m["settings"]["panel"]["type"] = json!("password")));
        assert_one_violation(&violations, "manifest.json: settings.panel.type is \"password\"", "custom");
    }

    #[test]
    fn advanced_settings_location_needs_an_advanced_title() {
        let violations =
            check_with(|files| edit_json(files, MANIFEST, |m| m["locations"] = json!(["advanced_settings"])));
        assert_one_violation(&violations, "manifest.json: locations has advanced_settings", "advanced.title");
    }

    #[test]
    fn a_byte_order_mark_is_reported() {
        let violations = check_with(|files| {
            let mut bytes = UTF8_BOM.to_vec();
            bytes.extend_from_slice(&files["i18n/es.json"]);
            files.insert("i18n/es.json".to_owned(), bytes);
        });
        assert_one_violation(&violations, "i18n/es.json: starts with a UTF-8 byte-order mark", "without BOM");
    }

    #[test]
    fn text_that_is_not_utf8_is_reported() {
        let violations = check_with(|files| {
            files.insert("style.css".to_owned(), b".kvoip { content: \"\xE9\"; }".to_vec());
        });
        assert_one_violation(&violations, "style.css: is not valid UTF-8", "UTF-8 without BOM");
    }

    #[test]
    fn a_locale_without_its_i18n_file_is_reported() {
        let violations =
            check_with(|files| edit_json(files, MANIFEST, |m| m["widget"]["locale"] = json!(["en", "es", "pt"])));
        assert_one_violation(&violations, "i18n/pt.json: missing, but manifest widget.locale lists \"pt\"", "add it");
    }

    #[test]
    fn i18n_files_with_different_keys_are_reported() {
        let violations =
            check_with(|files| edit_json(files, "i18n/en.json", |t| t["popup"] = json!({"close": "Close"})));
        assert_one_violation(
            &violations,
            "i18n/es.json: lacks keys the other language files have: popup.close",
            "same key structure",
        );
    }

    #[test]
    fn a_key_the_manifest_names_must_exist_in_every_language() {
        let violations = check_with(|files| {
            edit_json(files, "i18n/en.json", |t| t["settings"] = json!({}));
            edit_json(files, "i18n/es.json", |t| t["settings"] = json!({}));
        });
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert!(
            violations[0]
                .starts_with("i18n/en.json: key settings.panel (named by manifest settings.panel.name) is missing")
        );
        assert!(violations[1].starts_with("i18n/es.json: key settings.panel"));
    }

    #[test]
    fn a_key_the_manifest_names_must_not_be_empty() {
        let violations = check_with(|files| edit_json(files, "i18n/es.json", |t| t["widget"]["name"] = json!(" ")));
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with("i18n/es.json: key widget.name (named by manifest widget.name) is empty")),
            "{violations:#?}"
        );
    }

    #[test]
    fn a_missing_logo_is_reported() {
        let violations = check_with(|files| {
            files.remove("images/logo_min.png");
        });
        assert_one_violation(
            &violations,
            "images/logo_min.png: missing (Kommo needs a 84x84 PNG)",
            "cargo xtask logos",
        );
    }

    #[test]
    fn a_logo_of_the_wrong_size_is_reported() {
        let violations = check_with(|files| {
            files.insert("images/logo_small.png".to_owned(), png_header(100, 100));
        });
        assert_one_violation(
            &violations,
            "images/logo_small.png: is 100x100 px, Kommo needs 108x108",
            "exactly 108x108",
        );
    }

    #[test]
    fn a_logo_that_is_not_a_png_is_reported() {
        let violations = check_with(|files| {
            files.insert("images/logo.png".to_owned(), b"GIF89a".to_vec());
        });
        assert_one_violation(&violations, "images/logo.png: is not a PNG file", "130x100");
    }

    #[test]
    fn a_logo_over_300_kb_is_reported() {
        let violations = check_with(|files| {
            let mut big = png_header(400, 272);
            big.resize(LOGO_MAX_BYTES + 1, 0);
            files.insert("images/logo_main.png".to_owned(), big);
        });
        assert_one_violation(&violations, "images/logo_main.png: is 307201 bytes, over Kommo's limit", "compress");
    }

    #[test]
    fn the_digital_pipeline_logo_is_required_only_with_dp() {
        let violations =
            check_with(|files| edit_json(files, MANIFEST, |m| m["dp"] = json!({"action_multiple": false})));
        assert_one_violation(&violations, "images/logo_dp.png: missing (Kommo needs a 174x109 PNG)", "add it");
    }
}
