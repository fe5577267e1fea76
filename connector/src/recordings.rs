//! Call recordings: the file Asterisk's `MixMonitor` wrote for a call, found in the recordings directory by
//! the call's id when the call ends, and served by the local API to whoever holds the link the connector
//! signed for it (Kommo's player opens the call's link in the manager's browser, which sends no credentials).
//!
//! FreePBX names a recording `<kind>-<to>-<from>-<YYYYMMDD>-<HHMMSS>-<uniqueid>.<ext>` in `YYYY/MM/DD/` under
//! `/var/spool/asterisk/monitor`; the first channel's `Uniqueid` is the call's `Linkedid`, our call id. So a
//! call's recording is the file whose name ends with `-<call id>` (or is the call id) in the directory of
//! its day (the day before and after too, for the PBX's time zone) or in the directory itself.
//!
//! A link is `<CONNECTOR_PUBLIC_URL>/v1/recordings/<relative path>?sig=<tag>`, the tag an HMAC-SHA256 of the
//! path with a key derived from the local API's credentials: only the connector mints links, a link opens
//! its one file, and changing the API credentials withdraws every link given out.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// Audio files MixMonitor and the usual dialplans write.
const AUDIO: [&str; 6] = ["wav", "WAV", "mp3", "gsm", "ogg", "wav49"];
/// Most directory entries looked at in one directory (a day's directory of a busy PBX holds thousands).
const MAX_ENTRIES: usize = 100_000;

/// Where recordings are, and how their links are made.
#[derive(Clone)]
pub struct Recordings {
    dir: PathBuf,
    /// The connector's API as the managers' browsers reach it, without a trailing `/`.
    public_url: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Recordings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recordings")
            .field("dir", &self.dir)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Recordings {
    /// `secret`: the local API's key or password, from which the links' key is derived.
    pub fn new(dir: PathBuf, public_url: &str, secret: &[u8]) -> Recordings {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"kommo-voip-connector recording links v1");
        Recordings {
            dir,
            public_url: public_url.trim_end_matches('/').to_owned(),
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn tag(&self, relative: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(relative.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The signed link of the recording at `relative` (a path under the directory, `/`-separated; each
    /// segment percent-encoded as a URL path takes it, so a space stays a space).
    pub fn link(&self, relative: &str) -> String {
        const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
        let path: Vec<String> =
            relative.split('/').map(|part| utf8_percent_encode(part, SEGMENT).to_string()).collect();
        format!("{}/v1/recordings/{}?sig={}", self.public_url, path.join("/"), self.tag(relative))
    }

    /// The file a link names, when its tag is the connector's and the path stays inside the directory.
    pub fn open(&self, relative: &str, sig: &str) -> Option<PathBuf> {
        let expected = self.tag(relative);
        if !crate::api::same(sig.as_bytes(), expected.as_bytes()) {
            return None;
        }
        let path = Path::new(relative);
        if !path.components().all(|component| matches!(component, Component::Normal(_))) {
            return None;
        }
        Some(self.dir.join(path))
    }

    /// The recording of call `call_id` that started at unix second `start`, as a path relative to the
    /// directory; `None` when the PBX recorded none. Blocking: reads directories.
    pub fn find(&self, call_id: &str, start: i64) -> Option<String> {
        if call_id.is_empty() || call_id.contains(['/', '\\']) {
            return None;
        }
        let mut dirs = Vec::new();
        for offset in [0, -1, 1] {
            if let Ok(at) = time::OffsetDateTime::from_unix_timestamp(start + offset * 86_400) {
                dirs.push(format!("{:04}/{:02}/{:02}", at.year(), u8::from(at.month()), at.day()));
            }
        }
        dirs.push(String::new());
        dirs.into_iter().find_map(|day| {
            let entries = std::fs::read_dir(self.dir.join(&day)).ok()?;
            entries.take(MAX_ENTRIES).filter_map(Result::ok).find_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let (stem, extension) = name.rsplit_once('.')?;
                let matches = AUDIO.contains(&extension)
                    && (stem == call_id || stem.strip_suffix(call_id).is_some_and(|head| head.ends_with('-')));
                let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
                (matches && is_file).then(|| if day.is_empty() { name } else { format!("{day}/{name}") })
            })
        })
    }
}

/// The `Content-Type` of a recording by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|extension| extension.to_str()) {
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("gsm") => "audio/x-gsm",
        _ => "audio/wav",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recordings(dir: &Path) -> Recordings {
        Recordings::new(dir.to_owned(), "https://pbx.example.org:8443/", b"api-key")
    }

    #[test]
    fn a_calls_recording_is_found_in_its_days_directory_and_its_link_opens_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("2023/11/14");
        std::fs::create_dir_all(&day).unwrap();
        // 1700000000 is 2023-11-14 22:13:20 UTC.
        std::fs::write(day.join("in-101-5511987654321-20231114-221320-1700000000.1.wav"), b"RIFF").unwrap();
        std::fs::write(day.join("in-101-5511987654321-20231114-221320-1700000000.12.wav"), b"RIFF").unwrap();
        std::fs::write(day.join("in-101-5511987654321-20231114-221320-1700000000.2.txt"), b"notes").unwrap();
        let recordings = recordings(dir.path());
        let found = recordings.find("1700000000.1", 1_700_000_000).unwrap();
        assert_eq!(found, "2023/11/14/in-101-5511987654321-20231114-221320-1700000000.1.wav");
        assert_eq!(recordings.find("1700000000.2", 1_700_000_000), None, "not an audio file");
        assert_eq!(recordings.find("1700000000.3", 1_700_000_000), None);

        let link = recordings.link(&found);
        assert!(link.starts_with("https://pbx.example.org:8443/v1/recordings/2023/11/14/in-101-"), "{link}");
        let sig = link.rsplit_once("?sig=").unwrap().1;
        assert_eq!(recordings.open(&found, sig), Some(dir.path().join(&found)));
        let other = "2023/11/14/in-101-5511987654321-20231114-221320-1700000000.12.wav";
        assert_eq!(recordings.open(other, sig), None, "a tag opens its one file");
        assert_eq!(recordings.open("../etc/passwd", &recordings.tag("../etc/passwd")), None);
        let rotated = Recordings::new(dir.path().to_owned(), "https://pbx.example.org:8443", b"new-api-key");
        assert_eq!(rotated.open(&found, sig), None, "new API credentials withdraw old links");
    }

    #[test]
    fn a_name_with_spaces_and_plus_signs_survives_the_links_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q-sales +55 11-1700000000.7.wav"), b"RIFF").unwrap();
        let recordings = recordings(dir.path());
        let found = recordings.find("1700000000.7", 1_700_000_000).unwrap();
        let link = recordings.link(&found);
        let (path, sig) =
            link.strip_prefix("https://pbx.example.org:8443/v1/recordings/").unwrap().split_once("?sig=").unwrap();
        assert_eq!(path, "q-sales%20%2B55%2011-1700000000.7.wav");
        // The route's path, decoded as axum's `Path` decodes it, opens the file.
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8().unwrap();
        assert_eq!(recordings.open(&decoded, sig), Some(dir.path().join("q-sales +55 11-1700000000.7.wav")));
    }
}
