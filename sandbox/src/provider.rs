//! The VoIP provider stand-in: turns a simple request into a `shared::FromWebhook` posted to a webhook URL,
//! signed with Standard Webhooks headers when the request carries the webhook secret.
//!
//! Smart forwarding: a signed call that starts ringing first asks our server who is calling
//! (`POST {webhook_url}/caller-id` `{number, line}`, signed the same way) and rings the extension the answer
//! names; its later events carry that extension too. Late (over [`CALLER_ID_TIMEOUT`]) or failed answers,
//! and answers naming none, leave the extension the request gave.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use shared::{CallStatus, FromWebhook};

use crate::error::SandboxError;
use crate::voip::{CALLER_ID_TIMEOUT, RoutedCall, Secret};

/// The provider-side account every simulated call belongs to unless the request names one.
pub const DEFAULT_VOIP_ACCOUNT_ID: &str = "sandbox-voip";

/// `POST /sandbox/provider/call` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCall {
    /// Where to post: the webhook URL the widget shows in its settings.
    pub webhook_url: String,
    /// Reuse an id to send a later event (answered, ended) of the same call; a fresh one by default.
    pub call_id: Option<String>,
    pub voip_account_id: Option<String>,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    pub extension: Option<String>,
    /// `whsec_...`: when given, the event carries `webhook-id`, `webhook-timestamp` and `webhook-signature`.
    pub secret: Option<String>,
    /// When the call started ringing (unix seconds): a later event of a call repeats its first event's
    /// `start_time` (the answer's). Now by default.
    pub start_time: Option<i64>,
    /// Seconds of conversation, for the event that ends an answered call.
    pub duration: Option<u32>,
}

impl ProviderCall {
    /// The event as the provider would send it; a call without a `start_time` rings since `now` (unix seconds).
    pub fn event(&self, now: i64) -> FromWebhook {
        FromWebhook {
            call_id: self.call_id.clone().unwrap_or_else(|| format!("sandbox-{}", uuid::Uuid::new_v4())),
            voip_account_id: self.voip_account_id.clone().unwrap_or_else(|| DEFAULT_VOIP_ACCOUNT_ID.to_owned()),
            from: self.from.clone(),
            to: self.to.clone(),
            status: self.status,
            start_time: self.start_time.unwrap_or(now),
            extension: self.extension.clone(),
            event_type: None,
            direction: None,
            duration: self.duration,
            recording_url: None,
        }
    }
}

/// The sandbox posts only over plain HTTP to this machine or to the server's own origin, so it can never be
/// used to reach anything else.
pub(crate) fn allowed_target(url: &reqwest::Url, server_origin: &str) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    if url.origin().ascii_serialization() == server_origin {
        return true;
    }
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The webhook URL of a request, if this sandbox may post to it (see [`allowed_target`]).
pub(crate) fn webhook_target(state: &crate::State, raw: &str) -> Result<reqwest::Url, SandboxError> {
    let url =
        reqwest::Url::parse(raw.trim()).map_err(|error| SandboxError::BadRequest(format!("webhook_url: {error}")))?;
    if !allowed_target(&url, &state.config.kommo.audience) {
        return Err(SandboxError::BadRequest(
            "webhook_url must be plain http to this machine or to the server's public base URL".to_owned(),
        ));
    }
    Ok(url)
}

/// The Standard Webhooks headers of one delivery.
pub(crate) struct Signed<'a> {
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
}

/// Posts a provider event's raw `body` to `url` (from [`webhook_target`]), with the Standard Webhooks headers
/// when `signed`; returns the webhook's status and its body (JSON when it is, else the text).
pub(crate) async fn deliver(
    state: &crate::State,
    url: reqwest::Url,
    body: Vec<u8>,
    signed: Option<Signed<'_>>,
) -> Result<(u16, serde_json::Value), SandboxError> {
    let header_value = |name: &str, value: &str| {
        HeaderValue::from_str(value).map_err(|_| SandboxError::BadRequest(format!("{name} is not a header value")))
    };
    let mut request = state.http.post(url).header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(signed) = signed {
        request = request
            .header("webhook-id", header_value("webhook_id", signed.webhook_id)?)
            .header("webhook-timestamp", HeaderValue::from(signed.timestamp))
            .header("webhook-signature", header_value("signature_override", signed.signature)?);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|error| SandboxError::Upstream(format!("posting the provider event failed: {error}")))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
}

/// Posts the event and answers with the upstream status and
/// `{upstream_status, upstream_body, call_id, start_time, extension}` (the call's id and ringing time, for its
/// later events, and the extension it rings); 502 when the webhook cannot be reached at all. A signed call
/// that starts ringing asks the server's caller-id endpoint first (see the module's documentation), and
/// then `caller_id` holds how that went (`routed`, `as_usual`, `late`, `failed`).
pub(crate) async fn call_handler(
    State(state): State<crate::State>,
    Json(call): Json<ProviderCall>,
) -> Result<(StatusCode, Json<serde_json::Value>), SandboxError> {
    let url = webhook_target(&state, &call.webhook_url)?;
    let now = crate::kommo_api::unix_now();
    let mut event = call.event(now);
    let (call_id, start_time) = (event.call_id.clone(), event.start_time);
    let event_status = event.status.as_str();
    let secret = match call.secret.as_deref().filter(|secret| !secret.trim().is_empty()) {
        Some(secret) => {
            Some(Secret::parse(secret).map_err(|error| SandboxError::BadRequest(format!("secret: {error}")))?)
        }
        None => None,
    };
    let mut caller_id = None;
    match state.voip.route_of(&call_id) {
        Some(routed) => event.extension = Some(routed),
        None => {
            if let Some(secret) = &secret
                && event.status == CallStatus::Ringing
            {
                let route = route(&state, &url, secret, &event).await;
                if route.outcome == "routed" {
                    event.extension = route.extension.clone();
                }
                caller_id = Some(route.outcome);
                state.voip.record_route(route);
            }
        }
    }
    let extension = event.extension.clone();
    let body = serde_json::to_vec(&event).map_err(|error| SandboxError::Internal(error.to_string()))?;
    let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let signature = secret.map(|secret| secret.sign(&webhook_id, now, &body));
    let signed = signature.as_deref().map(|signature| Signed { webhook_id: &webhook_id, timestamp: now, signature });
    let (upstream, body) = deliver(&state, url, body, signed).await?;
    let status = StatusCode::from_u16(upstream).unwrap_or(StatusCode::BAD_GATEWAY);
    tracing::info!(call.id = %call_id, call.status = event_status, upstream.status = upstream, "posted a provider event");
    let mut answer = serde_json::json!({
        "upstream_status": upstream,
        "upstream_body": body,
        "call_id": call_id,
        "start_time": start_time,
        "extension": extension,
    });
    if let Some(outcome) = caller_id {
        answer["caller_id"] = serde_json::json!(outcome);
    }
    Ok((status, Json(answer)))
}

/// The caller-id address beside a webhook URL: its path + `/caller-id`, without a query.
pub(crate) fn caller_id_url(webhook: &reqwest::Url) -> reqwest::Url {
    let mut url = webhook.clone();
    let path = format!("{}/caller-id", webhook.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Asks the server who is calling and which extension should ring, signed with the call's secret; waits
/// at most [`CALLER_ID_TIMEOUT`]. The outcome keeps the event's own extension unless the answer names one.
async fn route(state: &crate::State, webhook: &reqwest::Url, secret: &Secret, event: &FromWebhook) -> RoutedCall {
    let body = serde_json::json!({ "number": event.from, "line": event.to }).to_string();
    let (webhook_id, timestamp) = (format!("msg_{}", uuid::Uuid::new_v4().simple()), crate::kommo_api::unix_now());
    let signature = secret.sign(&webhook_id, timestamp, body.as_bytes());
    let request = state
        .http
        .post(caller_id_url(webhook))
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("webhook-id", webhook_id.as_str())
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature.as_str())
        .body(body);
    let asked = async {
        let response = request.send().await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let answer: serde_json::Value = response.json().await.ok()?;
        answer.get("extension").is_some().then_some(answer)
    };
    let (outcome, answer) = match tokio::time::timeout(CALLER_ID_TIMEOUT, asked).await {
        Err(_) => ("late", None),
        Ok(None) => ("failed", None),
        Ok(Some(answer)) => match answer["extension"].as_str().filter(|extension| !extension.is_empty()) {
            Some(_) => ("routed", Some(answer)),
            None => ("as_usual", Some(answer)),
        },
    };
    let extension = match (&answer, outcome) {
        (Some(answer), "routed") => answer["extension"].as_str().map(str::to_owned),
        _ => event.extension.clone(),
    };
    tracing::info!(call.id = %event.call_id, outcome, "asked the server where to route the call");
    RoutedCall { call_id: event.call_id.clone(), outcome, extension, answer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_the_server_origin_over_http_is_a_target() {
        let server = "http://voip.test:8080";
        let allowed =
            ["http://127.0.0.1:9/hooks/voip/x", "http://localhost/x", "http://[::1]:80/x", "http://voip.test:8080/h"];
        for url in allowed {
            assert!(allowed_target(&reqwest::Url::parse(url).unwrap(), server), "{url}");
        }
        let refused = ["https://127.0.0.1/x", "http://10.0.0.1/x", "http://example.com/x", "http://voip.test:9090/h"];
        for url in refused {
            assert!(!allowed_target(&reqwest::Url::parse(url).unwrap(), server), "{url}");
        }
    }

    #[test]
    fn the_caller_id_address_is_the_webhooks_plus_caller_id() {
        let url = |text: &str| caller_id_url(&reqwest::Url::parse(text).unwrap()).to_string();
        assert_eq!(url("http://127.0.0.1:9/hooks/voip/abc"), "http://127.0.0.1:9/hooks/voip/abc/caller-id");
        assert_eq!(url("http://127.0.0.1:9/hooks/voip/abc/?x=1"), "http://127.0.0.1:9/hooks/voip/abc/caller-id");
    }
}
