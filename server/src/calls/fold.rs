//! Folding a call's stored provider events (`webhook_inbox`) into its row in `voip_calls`.

use shared::rules::CallFacts;
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};
use sqlx::FromRow;

use super::{FoldedCall, is_terminal, now, storage};
use crate::jobs::JobError;
use crate::store::{AccountId, Store};

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

#[derive(FromRow)]
struct CallRow {
    voip_account_id: String,
    from_number: String,
    to_number: String,
    direction: Option<String>,
    extension: Option<String>,
    status: String,
    answered: bool,
    started_at: i64,
    duration: Option<i64>,
    recording_url: Option<String>,
}

impl CallRow {
    fn into_state(self) -> CallState {
        CallState {
            voip_account_id: self.voip_account_id,
            from_number: self.from_number,
            to_number: self.to_number,
            direction: self.direction.as_deref().and_then(parse_direction),
            extension: self.extension,
            status: parse_status(&self.status),
            answered: self.answered,
            started_at: self.started_at,
            duration: self.duration.and_then(|duration| u32::try_from(duration).ok()),
            recording_url: self.recording_url,
        }
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
    let now = now();
    let mut tx = store.pool().begin().await.map_err(storage)?;
    // The write comes first, so this transaction holds the write lock from its first statement.
    let mut events: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE webhook_inbox SET applied_at = ?3
         WHERE account_id = ?1 AND call_id = ?2 AND applied_at IS NULL
         RETURNING id, body",
    )
    .bind(account.0)
    .bind(call_id)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(storage)?;
    events.sort_by_key(|(id, _)| *id);
    let events = events
        .iter()
        .map(|(id, body)| {
            serde_json::from_str::<FromWebhook>(body).map_err(|error| JobError::Fail {
                error: format!("stored provider event {id} of call {call_id} is not a valid event: {error}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let row: Option<CallRow> = sqlx::query_as(
        "SELECT voip_account_id, from_number, to_number, direction, extension, status, answered, started_at, duration,
                recording_url
         FROM voip_calls WHERE account_id = ?1 AND call_id = ?2",
    )
    .bind(account.0)
    .bind(call_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(storage)?;
    let mut state = match (row, events.first()) {
        (Some(row), _) => row.into_state(),
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
        sqlx::query(
            "INSERT INTO voip_calls (account_id, call_id, voip_account_id, from_number, to_number, direction, extension,
                                     status, answered, started_at, duration, recording_url, client_number,
                                     created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)
             ON CONFLICT (account_id, call_id) DO UPDATE
                SET direction = excluded.direction, extension = excluded.extension, status = excluded.status,
                    answered = excluded.answered, duration = excluded.duration,
                    recording_url = excluded.recording_url, client_number = excluded.client_number,
                    updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(call_id)
        .bind(&state.voip_account_id)
        .bind(&state.from_number)
        .bind(&state.to_number)
        .bind(state.direction().as_str())
        .bind(&state.extension)
        .bind(state.status.as_str())
        .bind(state.answered)
        .bind(state.started_at)
        .bind(state.duration)
        .bind(&state.recording_url)
        .bind(&client_number)
        .bind(now)
        .execute(&mut *tx)
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
