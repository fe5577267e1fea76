//! The VoIP provider stand-in: turns a simple request into a `shared::FromWebhook` posted to a webhook URL,
//! signed with Standard Webhooks headers when the request carries the webhook secret.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use shared::{CallStatus, FromWebhook};

use crate::error::SandboxError;
use crate::voip::Secret;

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
}

impl ProviderCall {
    /// The event as the provider would send it, ringing since `now` (unix seconds).
    pub fn event(&self, now: i64) -> FromWebhook {
        FromWebhook {
            call_id: self.call_id.clone().unwrap_or_else(|| format!("sandbox-{}", uuid::Uuid::new_v4())),
            voip_account_id: self.voip_account_id.clone().unwrap_or_else(|| DEFAULT_VOIP_ACCOUNT_ID.to_owned()),
            from: self.from.clone(),
            to: self.to.clone(),
            status: self.status,
            start_time: now,
            extension: self.extension.clone(),
            event_type: None,
            direction: None,
            duration: None,
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

/// Posts the event and answers with the upstream status and `{upstream_status, upstream_body, call_id}`;
/// 502 when the webhook cannot be reached at all.
pub(crate) async fn call_handler(
    State(state): State<crate::State>,
    Json(call): Json<ProviderCall>,
) -> Result<(StatusCode, Json<serde_json::Value>), SandboxError> {
    let url = reqwest::Url::parse(call.webhook_url.trim())
        .map_err(|error| SandboxError::BadRequest(format!("webhook_url: {error}")))?;
    if !allowed_target(&url, &state.config.kommo.audience) {
        return Err(SandboxError::BadRequest(
            "webhook_url must be plain http to this machine or to the server's public base URL".to_owned(),
        ));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or_default();
    let event = call.event(now);
    let call_id = event.call_id.clone();
    let body = serde_json::to_vec(&event).map_err(|error| SandboxError::Internal(error.to_string()))?;
    let mut request = state.http.post(url).header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secret) = call.secret.as_deref().filter(|secret| !secret.trim().is_empty()) {
        let secret = Secret::parse(secret).map_err(|error| SandboxError::BadRequest(format!("secret: {error}")))?;
        let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let signature = secret.sign(&webhook_id, now, &body);
        request = request
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", now)
            .header("webhook-signature", signature);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|error| SandboxError::Upstream(format!("posting the provider event failed: {error}")))?;
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    tracing::info!(call.id = %call_id, upstream.status = status.as_u16(), "posted a provider event");
    let answer = serde_json::json!({ "upstream_status": status.as_u16(), "upstream_body": body, "call_id": call_id });
    Ok((status, Json(answer)))
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
}
