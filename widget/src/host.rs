//! The Rust side of the JS host object that script.js builds: the widget's only way to reach Kommo.

use js_sys::{Function, JSON, Promise, Reflect};
use serde::Serialize;
use serde_json::Value;
use shared::rules::EntityRef;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::i18n::I18n;

/// Why the host object could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("the host is missing `{0}`")]
    Missing(&'static str),
    #[error("the host's request failed: {0}")]
    Request(String),
    #[error("the request body could not be encoded: {0}")]
    Encode(String),
}

/// The host object: `{apiBase, lang, strings, request(method, path, body), currentCard(), navigate(path),
/// ring(on)}` (see script.js).
pub struct Host {
    object: JsValue,
    request: Function,
    /// Optional: the lead or contact card open in Kommo, as `{type, id}` or `null`.
    current_card: Option<Function>,
    /// Optional: opens a Kommo path (`/contacts/detail/7`) through Kommo's own navigation.
    navigate: Option<Function>,
    /// Optional: starts (`true`) or stops the ringing sound.
    ring: Option<Function>,
    api_base: String,
    lang: String,
    i18n: I18n,
}

impl Host {
    /// Reads the host object once; its `strings` are copied, its `request` is kept to be called later.
    pub fn from_js(object: JsValue) -> Result<Host, HostError> {
        let member =
            |name: &'static str| Reflect::get(&object, &JsValue::from_str(name)).map_err(|_| HostError::Missing(name));
        let request = member("request")?.dyn_into::<Function>().map_err(|_| HostError::Missing("request"))?;
        let api_base =
            member("apiBase")?.as_string().ok_or(HostError::Missing("apiBase"))?.trim_end_matches('/').to_owned();
        let lang = member("lang")?.as_string().unwrap_or_else(|| "en".to_owned());
        let strings = member("strings")
            .ok()
            .and_then(|strings| JSON::stringify(&strings).ok())
            .and_then(|text| text.as_string())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        let function = |name: &'static str| member(name).ok().and_then(|value| value.dyn_into::<Function>().ok());
        let (current_card, navigate, ring) = (function("currentCard"), function("navigate"), function("ring"));
        Ok(Host { object, request, current_card, navigate, ring, api_base, lang, i18n: I18n::new(strings) })
    }

    /// The server's public base URL, without a trailing slash.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// The Kommo interface language (`en`, `es`, `pt`).
    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// The strings of the current language.
    pub fn i18n(&self) -> I18n {
        self.i18n.clone()
    }

    /// The text for `section.key`.
    pub fn t(&self, section: &str, key: &str) -> String {
        self.i18n.t(section, key)
    }

    /// The lead or contact whose card is open in Kommo right now, if the host can tell.
    pub fn current_card(&self) -> Option<EntityRef> {
        let card = self.current_card.as_ref()?.call0(&self.object).ok()?;
        let text = JSON::stringify(&card).ok()?.as_string()?;
        serde_json::from_str::<Option<EntityRef>>(&text).ok().flatten().filter(|card| card.id > 0)
    }

    /// Opens `path` of Kommo (a card, a new contact) without reloading the page; false when it could not.
    pub fn navigate(&self, path: &str) -> bool {
        self.navigate
            .as_ref()
            .and_then(|navigate| navigate.call1(&self.object, &JsValue::from_str(path)).ok())
            .is_some_and(|done| done.as_bool() == Some(true))
    }

    /// Starts or stops the ringing sound (quietly nothing where the browser refuses sound).
    pub fn ring(&self, on: bool) {
        if let Some(ring) = &self.ring {
            let _ = ring.call1(&self.object, &JsValue::from_bool(on));
        }
    }

    /// Calls our server through Kommo's `$authorizedAjax`. Returns the HTTP status (0 when the network failed)
    /// and the parsed JSON body (`Null` when there was none).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(u16, Value), HostError> {
        let body = match body {
            Some(body) => {
                let text = serde_json::to_string(body).map_err(|e| HostError::Encode(e.to_string()))?;
                JSON::parse(&text).map_err(|e| HostError::Encode(describe(&e)))?
            }
            None => JsValue::NULL,
        };
        let promise = self
            .request
            .call3(&self.object, &JsValue::from_str(method), &JsValue::from_str(path), &body)
            .map_err(|e| HostError::Request(describe(&e)))?;
        let reply = JsFuture::from(Promise::resolve(&promise)).await.map_err(|e| HostError::Request(describe(&e)))?;
        let status = Reflect::get(&reply, &JsValue::from_str("status"))
            .ok()
            .and_then(|status| status.as_f64())
            .filter(|status| (0.0..1000.0).contains(status))
            .ok_or_else(|| HostError::Request("the reply has no status".to_owned()))?;
        let body = Reflect::get(&reply, &JsValue::from_str("body"))
            .ok()
            .filter(|body| !body.is_undefined() && !body.is_null())
            .and_then(|body| JSON::stringify(&body).ok())
            .and_then(|text| text.as_string())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        Ok((status as u16, body))
    }
}

/// A short, human-readable text for a thrown JS value.
pub fn describe(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}
