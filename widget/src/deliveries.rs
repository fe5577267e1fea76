//! The settings modal's "Failed deliveries" section: the account's calls the server could not write to
//! Kommo after every attempt (dead letters), each with a Retry button.

use std::rc::Rc;

use leptos::prelude::*;
use serde_json::Value;
use shared::api::{FailedDelivery, paths};

use crate::host::Host;
use crate::i18n::I18n;
use crate::problem::Problem;

/// What the section shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryList {
    Loading,
    Loaded(Vec<FailedDelivery>),
    Failed(Problem),
}

impl DeliveryList {
    /// Classifies a `GET /widget/v1/deliveries/failed` reply.
    pub fn from_reply(status: u16, body: Value) -> Self {
        match status {
            200 => serde_json::from_value(body).map_or(DeliveryList::Failed(Problem::LoadFailed), DeliveryList::Loaded),
            _ => DeliveryList::Failed(Problem::from_reply(status, &body, Problem::LoadFailed)),
        }
    }
}

/// How a retry went, for the line under the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Queued,
    /// The delivery is not waiting any more (retried meanwhile, or not this account's).
    Gone,
    Failed(Problem),
}

impl RetryOutcome {
    /// Classifies a `POST /widget/v1/deliveries/failed/{id}/retry` reply.
    pub fn from_reply(status: u16, body: &Value) -> Self {
        match status {
            200..=299 => RetryOutcome::Queued,
            404 => RetryOutcome::Gone,
            _ => RetryOutcome::Failed(Problem::from_reply(status, body, Problem::Server)),
        }
    }

    /// The i18n `(section, key)` of the line under the list, and its tone.
    pub fn message(self) -> ((&'static str, &'static str), &'static str) {
        match self {
            RetryOutcome::Queued => (("deliveries", "retry_queued"), "ok"),
            RetryOutcome::Gone => (("deliveries", "retry_gone"), "error"),
            RetryOutcome::Failed(Problem::Network) => (("errors", "network"), "error"),
            RetryOutcome::Failed(Problem::Unauthorized) => (("errors", "unauthorized"), "error"),
            RetryOutcome::Failed(_) => (("deliveries", "retry_failed"), "error"),
        }
    }
}

/// The i18n `(section, key)` of a list that could not be loaded.
pub fn load_problem_message(problem: Problem) -> (&'static str, &'static str) {
    match problem {
        Problem::Network => ("errors", "network"),
        Problem::Unauthorized => ("errors", "unauthorized"),
        _ => ("deliveries", "load_failed"),
    }
}

/// The path that queues a failed delivery again.
pub fn retry_path(id: i64) -> String {
    paths::RETRY_DELIVERY.replace("{id}", &id.to_string())
}

/// The section's state, shared by its view and the settings' loader.
#[derive(Clone)]
pub struct DeliveriesModel {
    pub list: ArcRwSignal<DeliveryList>,
    /// The delivery whose retry is on its way.
    pub retrying: ArcRwSignal<Option<i64>>,
    /// How the last retry went.
    pub retried: ArcRwSignal<Option<RetryOutcome>>,
}

impl Default for DeliveriesModel {
    fn default() -> Self {
        DeliveriesModel {
            list: ArcRwSignal::new(DeliveryList::Loading),
            retrying: ArcRwSignal::new(None),
            retried: ArcRwSignal::new(None),
        }
    }
}

impl DeliveriesModel {
    /// Loads the list; a failed reload keeps the list already shown.
    pub async fn load(&self, host: &Host) {
        let reply = host.request("GET", paths::FAILED_DELIVERIES, None::<&()>).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        let list = DeliveryList::from_reply(status, body);
        let shown = self.list.with_untracked(|shown| matches!(shown, DeliveryList::Loaded(_)));
        if matches!(list, DeliveryList::Loaded(_)) || !shown {
            self.list.set(list);
        }
    }

    /// Queues one delivery again, then reloads the list.
    pub async fn retry(&self, host: &Host, id: i64) {
        self.retrying.set(Some(id));
        self.retried.set(None);
        let reply = host.request("POST", &retry_path(id), None::<&()>).await;
        let (status, body) = reply.unwrap_or((0, Value::Null));
        self.load(host).await;
        self.retried.set(Some(RetryOutcome::from_reply(status, &body)));
        self.retrying.set(None);
    }
}

/// A unix time in the page's language, e.g. "25 Nov 2026, 14:05".
fn local_time(unix_seconds: i64, lang: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_seconds as f64 * 1000.0));
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&options, &"timeStyle".into(), &"short".into());
    String::from(date.to_locale_string(lang, &options))
}

fn delivery_row(
    delivery: FailedDelivery,
    model: DeliveriesModel,
    host: StoredValue<Rc<Host>, LocalStorage>,
    i18n: &I18n,
    lang: &str,
) -> impl IntoView + use<> {
    let t = |key: &str| i18n.t("deliveries", key);
    let id = delivery.id;
    let attempts = t("attempts").replace("#COUNT#", &delivery.attempts.to_string());
    let when = local_time(delivery.failed_at, lang);
    let error = delivery.last_error.clone().filter(|error| !error.trim().is_empty()).unwrap_or_else(|| t("no_error"));
    let busy = {
        let retrying = model.retrying.clone();
        move || retrying.get().is_some()
    };
    let this_busy = {
        let retrying = model.retrying.clone();
        move || retrying.get() == Some(id)
    };
    let (retry_text, retrying_text) = (t("retry"), t("retrying"));
    let retry = move |_| {
        let model = model.clone();
        let _ = host.try_with_value(|host| {
            let host = Rc::clone(host);
            wasm_bindgen_futures::spawn_local(async move { model.retry(&host, id).await });
        });
    };
    view! {
        <li class="kvoip-delivery" data-id=id data-call-id=delivery.call_id.clone()>
            <div class="kvoip-delivery__body">
                <div class="kvoip-delivery__head">
                    <span class="kvoip-delivery__call" title=t("call")>{delivery.call_id.clone()}</span>
                    <span class="kvoip-delivery__meta">
                        <span class="kvoip-delivery__attempts">{attempts}</span>
                        " · "
                        <time class="kvoip-delivery__time">{when}</time>
                    </span>
                </div>
                <p class="kvoip-delivery__error" title=t("last_error")>{error}</p>
            </div>
            <button type="button" class="kvoip-button kvoip-button--light kvoip-delivery__retry"
                prop:disabled=busy on:click=retry>
                {move || if this_busy() { retrying_text.clone() } else { retry_text.clone() }}
            </button>
        </li>
    }
}

/// The section itself (inside the settings form).
pub fn deliveries_section(
    model: &DeliveriesModel,
    host: StoredValue<Rc<Host>, LocalStorage>,
    i18n: &I18n,
    lang: &str,
) -> impl IntoView + use<> {
    let t = |key: &str| i18n.t("deliveries", key);
    let body = {
        let (model, i18n, lang) = (model.clone(), i18n.clone(), lang.to_owned());
        move || match model.list.get() {
            DeliveryList::Loading => {
                view! { <p class="kvoip-field__hint kvoip-deliveries__state">{i18n.t("deliveries", "loading")}</p> }
                    .into_any()
            }
            DeliveryList::Failed(problem) => {
                let (section, key) = load_problem_message(problem);
                view! { <p class="kvoip-check-result kvoip-check-result--error kvoip-deliveries__state" role="alert">
                    {i18n.t(section, key)}
                </p> }
                .into_any()
            }
            DeliveryList::Loaded(list) if list.is_empty() => {
                view! { <p class="kvoip-deliveries__state kvoip-deliveries__empty">{i18n.t("deliveries", "empty")}</p> }
                    .into_any()
            }
            DeliveryList::Loaded(list) => {
                let rows = list
                    .into_iter()
                    .map(|delivery| delivery_row(delivery, model.clone(), host, &i18n, &lang))
                    .collect_view();
                view! {
                    <p class="kvoip-field__hint kvoip-deliveries__intro">{i18n.t("deliveries", "intro")}</p>
                    <ul class="kvoip-deliveries__list">{rows}</ul>
                }
                .into_any()
            }
        }
    };
    let outcome = {
        let (retried, i18n) = (model.retried.clone(), i18n.clone());
        move || {
            retried.get().map(|outcome| {
                let ((section, key), tone) = outcome.message();
                view! {
                    <p class=format!("kvoip-check-result kvoip-check-result--{tone} kvoip-deliveries__outcome") role="status">
                        {i18n.t(section, key)}
                    </p>
                }
            })
        }
    };
    view! {
        <section class="kvoip-section kvoip-section--deliveries">
            <h4 class="kvoip-section__title">{t("title")}</h4>
            {body}
            {outcome}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_replies_are_classified() {
        let body =
            json!([{"id": 7, "call_id": "c-1", "attempts": 3, "last_error": "Kommo answered 400", "failed_at": 1}]);
        let DeliveryList::Loaded(list) = DeliveryList::from_reply(200, body) else { panic!("not loaded") };
        assert_eq!((list[0].id, list[0].call_id.as_str(), list[0].attempts), (7, "c-1", 3));
        assert_eq!(DeliveryList::from_reply(200, json!([])), DeliveryList::Loaded(Vec::new()));
        assert_eq!(DeliveryList::from_reply(200, json!({"x": 1})), DeliveryList::Failed(Problem::LoadFailed));
        assert_eq!(DeliveryList::from_reply(0, Value::Null), DeliveryList::Failed(Problem::Network));
        assert_eq!(DeliveryList::from_reply(500, Value::Null), DeliveryList::Failed(Problem::LoadFailed));
    }

    #[test]
    fn retry_replies_are_classified() {
        assert_eq!(RetryOutcome::from_reply(202, &Value::Null), RetryOutcome::Queued);
        assert_eq!(RetryOutcome::from_reply(404, &Value::Null), RetryOutcome::Gone);
        assert_eq!(RetryOutcome::from_reply(0, &Value::Null), RetryOutcome::Failed(Problem::Network));
        assert_eq!(retry_path(42), "/widget/v1/deliveries/failed/42/retry");
    }

    #[test]
    fn every_text_the_section_shows_exists_in_english() {
        let i18n = I18n::new(Value::Null);
        let mut keys: Vec<(&str, &str)> = [
            RetryOutcome::Queued,
            RetryOutcome::Gone,
            RetryOutcome::Failed(Problem::Server),
            RetryOutcome::Failed(Problem::Network),
        ]
        .iter()
        .map(|outcome| outcome.message().0)
        .collect();
        keys.extend([Problem::LoadFailed, Problem::Network, Problem::Unauthorized].map(load_problem_message));
        for key in
            ["title", "intro", "loading", "empty", "call", "attempts", "last_error", "no_error", "retry", "retrying"]
        {
            keys.push(("deliveries", key));
        }
        for (section, key) in keys {
            assert_ne!(i18n.t(section, key), format!("{section}.{key}"), "{section}.{key}");
        }
    }
}
