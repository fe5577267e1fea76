//! The widget's strings: the host's i18n object (Kommo's `self.langs`), with the bundled English file as fallback.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// The English strings compiled in, so a key missing from the host's object still reads as text.
const ENGLISH: &str = include_str!("../../i18n/en.json");

/// Looks up `section.key` strings. Cheap to clone; shared by every component.
#[derive(Clone, Debug)]
pub struct I18n {
    strings: Arc<Value>,
}

impl I18n {
    /// Wraps the whole i18n object of the current language (`{"settings": {...}, "errors": {...}, ...}`).
    pub fn new(strings: Value) -> Self {
        I18n { strings: Arc::new(strings) }
    }

    /// The text for `section.key`; falls back to English, then to the key itself so a gap is visible, not blank.
    pub fn t(&self, section: &str, key: &str) -> String {
        lookup(&self.strings, section, key)
            .or_else(|| lookup(english(), section, key))
            .map_or_else(|| format!("{section}.{key}"), str::to_owned)
    }
}

fn english() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(ENGLISH).unwrap_or(Value::Null))
}

fn lookup<'a>(strings: &'a Value, section: &str, key: &str) -> Option<&'a str> {
    strings.get(section)?.get(key)?.as_str().filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_strings_win_over_the_bundled_english() {
        let i18n = I18n::new(json!({"popup": {"incoming": "Llamada entrante"}}));
        assert_eq!(i18n.t("popup", "incoming"), "Llamada entrante");
    }

    #[test]
    fn missing_or_empty_host_strings_fall_back_to_english_then_to_the_key() {
        let i18n = I18n::new(json!({"popup": {"close": ""}}));
        assert_eq!(i18n.t("popup", "close"), "Close");
        assert_eq!(i18n.t("status", "ringing"), "Ringing");
        assert_eq!(i18n.t("nowhere", "nothing"), "nowhere.nothing");
    }

    #[test]
    fn every_language_file_has_the_english_structure() {
        fn keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
            for (key, child) in value.as_object().into_iter().flatten() {
                let path = format!("{prefix}{key}");
                match child {
                    Value::Object(_) => keys(child, &format!("{path}."), out),
                    Value::String(text) => {
                        assert!(!text.trim().is_empty(), "{path} is empty");
                        out.push(path);
                    }
                    other => panic!("{path} is not a string: {other}"),
                }
            }
        }
        let mut english_keys = Vec::new();
        keys(english(), "", &mut english_keys);
        let required = [
            "errors.wasm_failed",
            "errors.kommo_unavailable",
            "connection.title",
            "connection.installed",
            "connection.needs_reauth",
            "connection.not_installed",
            "connection.suspended",
            "connection.disabled",
            "connection.reauthorize",
            "connection.checking",
            "connection.unknown",
            "settings.section_provider",
            "settings.method_password",
            "settings.method_api_key",
            "settings.method_oauth2",
            "settings.provider_url",
            "settings.api_key",
            "settings.api_key_saved",
            "settings.client_id",
            "settings.client_secret",
            "settings.client_secret_saved",
            "settings.check_connection",
            "settings.checking",
            "settings.check_ok",
            "settings.check_refused",
            "settings.section_widget",
            "settings.ringing_sound",
            "settings.call_feedback_modal",
            "settings.auto_open_card",
            "settings.call_quality_rating",
            "settings.kommo_notification",
            "settings.unmapped_calls",
            "settings.unmapped_everyone",
            "settings.unmapped_users",
            "settings.unmapped_groups",
            "settings.unmapped_nobody",
            "settings.section_unknown",
            "settings.unknown_contact_and_lead",
            "settings.unknown_unsorted",
            "settings.unsorted_accept",
            "settings.unsorted_manual",
            "settings.unsorted_on_answer",
            "settings.section_known",
            "settings.known_create_lead",
            "settings.known_note_number",
            "settings.section_missed",
            "settings.missed_create_task",
            "settings.missed_due",
            "settings.missed_link_to_lead",
            "settings.responsible",
            "settings.responsible_contact",
            "settings.responsible_extension",
            "settings.responsible_user",
            "settings.choose_user",
            "settings.section_outgoing",
            "settings.outgoing_create",
            "settings.section_leads",
            "settings.pipeline_id",
            "settings.status_id",
            "settings.leads_hint",
            "settings.section_extensions",
            "settings.extension",
            "settings.extension_user",
            "settings.add_extension",
            "settings.remove_extension",
            "settings.fallback_user",
            "settings.no_fallback",
            "settings.extensions_hint",
            "settings.section_webhook",
            "settings.webhook_secret",
            "settings.webhook_secret_shown",
            "settings.reveal_secret",
            "settings.hide_secret",
            "settings.copy",
            "settings.admin_only",
            "result.not_your_call",
            "settings.rotate_secret",
            "settings.webhook_after_save",
            "settings.fix_fields",
        ];
        for key in required {
            assert!(english_keys.contains(&key.to_owned()), "{key} is missing");
        }
        for file in [include_str!("../../i18n/es.json"), include_str!("../../i18n/pt.json")] {
            let strings: Value = serde_json::from_str(file).unwrap();
            let mut other = Vec::new();
            keys(&strings, "", &mut other);
            assert_eq!(other, english_keys);
            let installed = strings["connection"]["installed"].as_str().unwrap();
            assert!(installed.contains("#SUBDOMAIN#"), "connection.installed lacks #SUBDOMAIN#: {installed}");
            let check_ok = strings["settings"]["check_ok"].as_str().unwrap();
            assert!(check_ok.contains("#NAME#"), "settings.check_ok lacks #NAME#: {check_ok}");
            for key in ["method_oauth2", "client_id", "client_secret", "client_secret_saved"] {
                let english_text = english()["settings"][key].as_str();
                assert_ne!(strings["settings"][key].as_str(), english_text, "settings.{key} is not translated");
            }
        }
    }
}
