//! The words the server writes into Kommo (lead names, notes, tasks), in the language of the Kommo user a
//! call is for: the `server` section of the archive's i18n files, the files the widget reads, built in.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use shared::rules::Texts;

use crate::kommo::KommoClient;
use crate::store::AccountId;

/// The languages the archive ships, with their files.
const FILES: [(&str, &str); 3] = [
    ("en", include_str!("../../../i18n/en.json")),
    ("es", include_str!("../../../i18n/es.json")),
    ("pt", include_str!("../../../i18n/pt.json")),
];

static TEXTS: LazyLock<Vec<(&'static str, Texts)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(lang, file)| {
            let strings: serde_json::Value = serde_json::from_str(file).expect("the archive's i18n files are JSON");
            let section = &strings["server"];
            (*lang, Texts::from_strings(|key| section[key].as_str().map(str::to_owned)))
        })
        .collect()
});

/// The texts of Kommo's interface language `lang` (`en`, `es`, `pt`, or a longer tag starting with one);
/// English for any other.
pub fn texts(lang: Option<&str>) -> &'static Texts {
    let wanted = lang.map(|lang| lang.trim().get(..2).unwrap_or_default().to_ascii_lowercase());
    let english = &TEXTS[0].1;
    match wanted {
        Some(wanted) => TEXTS.iter().find(|(lang, _)| *lang == wanted).map_or(english, |(_, texts)| texts),
        None => english,
    }
}

/// How long a user's language is reused.
const LANG_TTL: Duration = Duration::from_secs(30 * 60);

/// Kommo users' interface languages (`GET /api/v4/users/{id}`), cached per account and user.
#[derive(Clone)]
pub struct UserLangs {
    cache: moka::future::Cache<(AccountId, i64), Option<Arc<str>>>,
}

impl Default for UserLangs {
    fn default() -> UserLangs {
        UserLangs { cache: moka::future::Cache::builder().max_capacity(20_000).time_to_live(LANG_TTL).build() }
    }
}

impl UserLangs {
    /// The language of `user` of `account`; `None` when Kommo does not say (the texts are then English). A
    /// failed lookup is not kept: the next call asks again.
    pub async fn of(&self, kommo: &KommoClient, account: AccountId, user: i64) -> Option<Arc<str>> {
        let found = self
            .cache
            .try_get_with((account, user), async {
                let body = kommo.get(account, &format!("/api/v4/users/{user}")).await?;
                Ok::<_, crate::kommo::KommoError>(body.as_ref().and_then(|user| user["lang"].as_str()).map(Arc::from))
            })
            .await;
        match found {
            Ok(lang) => lang,
            Err(error) => {
                tracing::warn!(account.id = account.get(), %error, "cannot read the user's language; writing in English");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_language_of_the_archive_has_every_text_and_others_read_english() {
        for (lang, _) in FILES {
            let texts = texts(Some(lang));
            assert!(texts.call_from.contains("#NUMBER#"), "{lang}");
            assert!(texts.call_result.contains("#STATUS#"), "{lang}");
            assert!(texts.quality.contains("#QUALITY#"), "{lang}");
            if lang != "en" {
                assert_ne!(texts, &Texts::english(), "{lang} is translated");
            }
        }
        assert_eq!(texts(Some("en")), &Texts::english(), "the file's English is the built-in fallback");
        assert_eq!(texts(Some("pt_BR")).call_from, "Chamada de #NUMBER#");
        assert_eq!(texts(Some("de")), &Texts::english());
        assert_eq!(texts(None), &Texts::english());
    }
}
