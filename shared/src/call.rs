//! Call entities: what a VoIP provider sends us about a call (`FromWebhook`), and its status.

use serde::{Deserialize, Serialize};

/// A call event as the VoIP provider posts it to the account's webhook URL.
///
/// Field names follow the provider contract (camelCase on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromWebhook {
    /// The provider's id of the call; unique per VoIP account, stable across the call's events.
    pub call_id: String,
    /// The provider-side account (tenant) the call belongs to.
    pub voip_account_id: String,
    /// Caller number as the provider saw it (not yet normalised).
    pub from: String,
    /// Called number or extension as the provider saw it.
    pub to: String,
    pub status: CallStatus,
    /// Unix time (seconds) at which the call started ringing.
    pub start_time: i64,
    /// The internal extension the call rings on, when the provider knows it.
    #[serde(default)]
    pub extension: Option<String>,
    /// What happened, in the provider contract's terms (`call.ringing`, ...), when the provider says.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<CallEventType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CallDirection>,
    /// Seconds of conversation, once the call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Where the provider keeps the call's recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
}

/// The `type` of a provider event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallEventType {
    #[serde(rename = "call.ringing")]
    Ringing,
    #[serde(rename = "call.answered")]
    Answered,
    #[serde(rename = "call.ended")]
    Ended,
    #[serde(rename = "call.missed")]
    Missed,
    #[serde(rename = "call.recording_ready")]
    RecordingReady,
}

/// Who placed the call, seen from the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Inbound,
    Outbound,
}

impl CallDirection {
    /// The client's number and our line's, from a call's `from` and `to` as the provider sent them.
    pub fn client_and_line<'a>(self, from: &'a str, to: &'a str) -> (&'a str, &'a str) {
        match self {
            CallDirection::Inbound => (from, to),
            CallDirection::Outbound => (to, from),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::Outbound => "outbound",
        }
    }
}

/// Where a call stands, as reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Ringing,
    Answered,
    Ended,
    Missed,
    Busy,
    Failed,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Answered => "answered",
            CallStatus::Ended => "ended",
            CallStatus::Missed => "missed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
        }
    }
}

/// Longest text field we accept from a provider; longer values are refused, not truncated.
pub const MAX_WEBHOOK_FIELD_LEN: usize = 128;

/// Longest recording link we accept.
pub const MAX_RECORDING_URL_LEN: usize = 2048;

/// A schema violation in a provider event, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct WebhookFieldError {
    pub field: &'static str,
    pub problem: &'static str,
}

/// Characters that print nothing yet change what a reader sees: controls (line breaks that forge a log
/// line, escape sequences that repaint a terminal), and the invisible format characters (zero-width
/// spaces and joiners, bidirectional overrides, line and paragraph separators, the soft hyphen, BOM).
/// Provider text that reaches our logs, the widget or Kommo must have none.
pub fn is_non_printing(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

impl FromWebhook {
    /// Checks what serde cannot: non-empty identifiers, bounded lengths, and printable text only
    /// (every text field ends up in logs, the popup or Kommo).
    pub fn validate(&self) -> Result<(), WebhookFieldError> {
        let texts: [(&'static str, Option<&str>); 5] = [
            ("callId", Some(&self.call_id)),
            ("voipAccountId", Some(&self.voip_account_id)),
            ("from", Some(&self.from)),
            ("to", Some(&self.to)),
            ("extension", self.extension.as_deref()),
        ];
        if let Some(url) = &self.recording_url
            && (url.len() > MAX_RECORDING_URL_LEN
                || !(url.starts_with("https://") || url.starts_with("http://"))
                || url.chars().any(is_non_printing))
        {
            return Err(WebhookFieldError {
                field: "recordingUrl",
                problem: "must be an http(s) URL of at most 2048 printable characters",
            });
        }
        for (field, value) in texts {
            let Some(value) = value else { continue };
            if value.trim().is_empty() {
                return Err(WebhookFieldError { field, problem: "must not be empty" });
            }
            if value.chars().count() > MAX_WEBHOOK_FIELD_LEN {
                return Err(WebhookFieldError { field, problem: "is longer than 128 characters" });
            }
            if value.chars().any(is_non_printing) {
                return Err(WebhookFieldError { field, problem: "must not contain control or invisible characters" });
            }
        }
        if self.start_time <= 0 {
            return Err(WebhookFieldError { field: "startTime", problem: "must be a positive unix time" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FromWebhook {
        FromWebhook {
            call_id: "c-1".into(),
            voip_account_id: "va-1".into(),
            from: "+5511999990000".into(),
            to: "+5511333330000".into(),
            status: CallStatus::Ringing,
            start_time: 1_700_000_000,
            extension: Some("101".into()),
            event_type: None,
            direction: None,
            duration: None,
            recording_url: None,
        }
    }

    #[test]
    fn the_contracts_optional_fields_parse_and_stay_off_the_wire_when_absent() {
        let event: FromWebhook = serde_json::from_str(
            r#"{"callId":"c-1","voipAccountId":"va-1","from":"+5511999990000","to":"+5511333330000",
                "status":"ended","startTime":1700000000,"extension":"101","type":"call.ended",
                "direction":"inbound","duration":42,"recordingUrl":"https://rec.example.org/c-1.mp3"}"#,
        )
        .unwrap();
        assert_eq!(event.event_type, Some(CallEventType::Ended));
        assert_eq!(event.direction, Some(CallDirection::Inbound));
        assert_eq!(event.duration, Some(42));
        assert_eq!(event.validate(), Ok(()));
        let plain = serde_json::to_value(sample()).unwrap();
        assert!(plain.get("type").is_none() && plain.get("recordingUrl").is_none());
        let mut bad = sample();
        bad.recording_url = Some("javascript:alert(1)".into());
        assert_eq!(bad.validate().unwrap_err().field, "recordingUrl");
    }

    #[test]
    fn provider_event_parses_from_camel_case_json() {
        let event: FromWebhook = serde_json::from_str(
            r#"{"callId":"c-1","voipAccountId":"va-1","from":"+5511999990000","to":"+5511333330000",
                "status":"ringing","startTime":1700000000,"extension":"101"}"#,
        )
        .unwrap();
        assert_eq!(event, sample());
    }

    #[test]
    fn provider_event_without_extension_is_accepted() {
        let event: FromWebhook = serde_json::from_str(
            r#"{"callId":"c-1","voipAccountId":"va-1","from":"1","to":"2","status":"missed","startTime":5}"#,
        )
        .unwrap();
        assert_eq!(event.extension, None);
        assert_eq!(event.validate(), Ok(()));
    }

    #[test]
    fn provider_event_with_unknown_status_or_field_is_refused() {
        let bad_status = r#"{"callId":"c","voipAccountId":"v","from":"1","to":"2","status":"exploded","startTime":5}"#;
        assert!(serde_json::from_str::<FromWebhook>(bad_status).is_err());
        let extra = r#"{"callId":"c","voipAccountId":"v","from":"1","to":"2","status":"ended","startTime":5,"x":1}"#;
        assert!(serde_json::from_str::<FromWebhook>(extra).is_err());
    }

    #[test]
    fn validation_names_the_offending_field() {
        type Mutation = fn(&mut FromWebhook);
        let cases: [(Mutation, &str); 15] = [
            (|e| e.call_id = " ".into(), "callId"),
            (|e| e.from = String::new(), "from"),
            (|e| e.to = "9".repeat(129), "to"),
            (|e| e.extension = Some(String::new()), "extension"),
            (|e| e.start_time = 0, "startTime"),
            // Log injection: a forged line, a terminal escape, invisible or reordered text.
            (|e| e.call_id = "c-1\nINFO call delivered account.id=2".into(), "callId"),
            (|e| e.call_id = "c-1\r".into(), "callId"),
            (|e| e.call_id = "c-\u{1b}[2J1".into(), "callId"),
            (|e| e.call_id = "c-\u{0}1".into(), "callId"),
            (|e| e.call_id = "c-\u{85}1".into(), "callId"),
            (|e| e.extension = Some("10\t1".into()), "extension"),
            (|e| e.extension = Some("1\u{202E}01".into()), "extension"),
            (|e| e.voip_account_id = "va\u{200B}1".into(), "voipAccountId"),
            (|e| e.from = "+55\u{2028}11".into(), "from"),
            (|e| e.recording_url = Some("https://rec.example.org/a\nb".into()), "recordingUrl"),
        ];
        for (mutate, field) in cases {
            let mut event = sample();
            mutate(&mut event);
            assert_eq!(event.validate().unwrap_err().field, field, "{event:?}");
        }
        let mut printable = sample();
        printable.call_id = "ação-通話-1 #2".into();
        assert_eq!(printable.validate(), Ok(()), "non-ASCII printable text is fine");
    }
}
