//! Folding a call's stored provider events (`webhook_inbox`) into its row in `voip_calls`.

use super::{FoldedCall, is_terminal, storage};
use crate::clock::unix_secs;
use crate::jobs::JobError;
use crate::store::calls::{CallWrite, StoredCall};
use crate::store::{AccountId, Store};
use shared::rules::CallFacts;
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};

/// The call as `voip_calls` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallState {
    voip_account_id: String,
    from_number: String,
    to_number: String,
    direction: Option<CallDirection>,
    extension: Option<String>,
    status: CallStatus,
    answered: bool,
    started_at: i64,
    duration: Option<u32>,
    recording_url: Option<String>,
}

/// The call as stored, read back.
fn stored_state(row: StoredCall) -> CallState {
    CallState {
        voip_account_id: row.voip_account_id,
        from_number: row.from_number,
        to_number: row.to_number,
        direction: row.direction.as_deref().and_then(parse_direction),
        extension: row.extension,
        status: parse_status(&row.status),
        answered: row.answered,
        started_at: row.started_at,
        duration: row.duration.and_then(|duration| u32::try_from(duration).ok()),
        recording_url: row.recording_url,
    }
}

impl CallState {
    fn from_event(event: &FromWebhook) -> CallState {
        CallState {
            voip_account_id: event.voip_account_id.clone(),
            from_number: event.from.clone(),
            to_number: event.to.clone(),
            direction: None,
            extension: None,
            status: event.status,
            answered: false,
            started_at: event.start_time,
            duration: None,
            recording_url: None,
        }
    }

    /// One more event of the call. The latest status wins, except that a call that ended stays ended
    /// (a late `ringing` retried by the provider does not reopen it); `answered` is sticky.
    fn apply(&mut self, event: &FromWebhook) {
        if is_terminal(event.status) || !is_terminal(self.status) {
            self.status = event.status;
        }
        let answered_event = event.status == CallStatus::Answered || event.event_type == Some(CallEventType::Answered);
        self.answered |= answered_event || event.duration.is_some_and(|duration| duration > 0);
        self.direction = event.direction.or(self.direction);
        self.extension = event.extension.clone().or(self.extension.take());
        self.duration = event.duration.or(self.duration);
        self.recording_url = event.recording_url.clone().or(self.recording_url.take());
    }

    fn direction(&self) -> CallDirection {
        self.direction.unwrap_or(CallDirection::Inbound)
    }

    /// The client's number as the provider sent it, and our line's.
    fn numbers(&self) -> (&str, &str) {
        self.direction().client_and_line(&self.from_number, &self.to_number)
    }
}

fn parse_direction(value: &str) -> Option<CallDirection> {
    match value {
        "inbound" => Some(CallDirection::Inbound),
        "outbound" => Some(CallDirection::Outbound),
        _ => None,
    }
}

fn parse_status(value: &str) -> CallStatus {
    match value {
        "answered" => CallStatus::Answered,
        "ended" => CallStatus::Ended,
        "missed" => CallStatus::Missed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        _ => CallStatus::Ringing,
    }
}

/// Folds the call's unapplied inbox rows (in id order) into `voip_calls` and marks them applied, in
/// one transaction; returns the call as it now stands (`None` when there is no such call). A stored
/// body that does not parse fails the job: nothing is applied, the rows stay for a person to look at.
pub(crate) async fn fold(
    store: &Store,
    account: AccountId,
    call_id: &str,
    country: Option<&str>,
) -> Result<Option<FoldedCall>, JobError> {
    let mut tx = store.begin_fold(account, call_id, unix_secs()).await.map_err(storage)?;
    let events = tx.take_unapplied().await.map_err(storage)?;
    let events = events
        .iter()
        .map(|(id, body)| {
            serde_json::from_str::<FromWebhook>(body).map_err(|error| JobError::Fail {
                error: format!("stored provider event {id} of call {call_id} is not a valid event: {error}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let row = tx.call().await.map_err(storage)?;
    let mut state = match (row, events.first()) {
        (Some(row), _) => stored_state(row),
        (None, Some(first)) => CallState::from_event(first),
        (None, None) => return Ok(None),
    };
    for event in &events {
        state.apply(event);
    }
    let (client_raw, line_raw) = state.numbers();
    let client_number = shared::phone::normalize(client_raw, country).unwrap_or_else(|| client_raw.to_owned());
    let line_number = shared::phone::normalize(line_raw, country).unwrap_or_else(|| line_raw.to_owned());
    if !events.is_empty() {
        tx.save(&CallWrite {
            voip_account_id: &state.voip_account_id,
            from_number: &state.from_number,
            to_number: &state.to_number,
            direction: state.direction().as_str(),
            extension: state.extension.as_deref(),
            status: state.status.as_str(),
            answered: state.answered,
            started_at: state.started_at,
            duration: state.duration,
            recording_url: state.recording_url.as_deref(),
            client_number: &client_number,
        })
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
    }
    let facts = CallFacts {
        call_id: call_id.to_owned(),
        direction: state.direction(),
        client_number,
        status: state.status,
        answered: state.answered,
        started_at: state.started_at,
        duration: state.duration.unwrap_or(0),
        recording_url: state.recording_url,
        extension: state.extension,
    };
    Ok(Some(FoldedCall { facts, line_number }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: CallStatus) -> FromWebhook {
        FromWebhook {
            call_id: "c-1".into(),
            voip_account_id: "va".into(),
            from: "+5511988887777".into(),
            to: "+551133334444".into(),
            status,
            start_time: 1_700_000_000,
            extension: None,
            event_type: None,
            direction: None,
            duration: None,
            recording_url: None,
        }
    }

    #[test]
    fn the_latest_status_wins_but_an_ended_call_stays_ended_and_answered_sticks() {
        let mut state = CallState::from_event(&event(CallStatus::Ringing));
        state.apply(&event(CallStatus::Ringing));
        state.apply(&FromWebhook { extension: Some("101".into()), ..event(CallStatus::Answered) });
        assert!(state.answered);
        state.apply(&FromWebhook { duration: Some(42), ..event(CallStatus::Ended) });
        state.apply(&event(CallStatus::Ringing));
        assert_eq!(state.status, CallStatus::Ended, "a late ringing does not reopen the call");
        state.apply(&FromWebhook {
            recording_url: Some("https://rec.example.org/1.mp3".into()),
            event_type: Some(CallEventType::RecordingReady),
            ..event(CallStatus::Ended)
        });
        assert_eq!(state.extension.as_deref(), Some("101"), "kept when a later event omits it");
        assert_eq!(state.duration, Some(42));
        assert_eq!(state.recording_url.as_deref(), Some("https://rec.example.org/1.mp3"));
        assert!(state.answered);
        assert_eq!(state.direction(), CallDirection::Inbound, "inbound unless the provider says");
    }

    #[test]
    fn a_duration_means_answered_and_outbound_calls_take_the_called_number() {
        let mut state = CallState::from_event(&event(CallStatus::Ringing));
        state.apply(&FromWebhook {
            duration: Some(3),
            direction: Some(CallDirection::Outbound),
            ..event(CallStatus::Ended)
        });
        assert!(state.answered);
        assert_eq!(state.numbers(), ("+551133334444", "+5511988887777"));
    }
}
