//! Originated calls played as a provider plays them: once `POST /voip/v1/calls` answered 201 `{call_id}`, the
//! account posts the call's signed events to its webhook (`PUT /sandbox/voip/accounts/{id}/webhook`) as an
//! outbound call with that `callId`: `ringing` at once, `answered` after [`Playback::answer_after_ms`], `ended`
//! (with its duration) after [`Playback::talk_ms`]; a number the account never gets answered ends
//! `missed` (or `busy`, `failed`) after [`Playback::no_answer_after_ms`]. In [`Playback::manual`] mode the call
//! stays ringing, then answered, until `POST /sandbox/voip/calls/{call_id}/answer` and `.../end` say so (they
//! also cut the timers short in the automatic mode).
//!
//! Every event is `FromWebhook` JSON with `direction: outbound`, `from` = the account's line
//! ([`Playback::line`]), `to` = the number dialled, `extension` = the extension rung, `startTime` = when it
//! started ringing, and `type` (`call.ringing`, `call.answered`, `call.ended`, `call.missed`; none for `busy`
//! and `failed`), signed with Standard Webhooks headers. A delivery that fails or answers 5xx or 429 is sent
//! again (same `webhook-id`) after 250 ms and 1 s; the call goes on whatever the webhook answered, as a
//! provider's call does.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, Serializer};
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};
use tokio::sync::{mpsc, oneshot};

use super::{Book, Secret, SentWebhook};
use crate::provider::{Signed, deliver};

/// Originated calls remembered at most; the oldest finished ones are forgotten first.
pub const MAX_PLAYED: usize = 1000;
/// The longest wait a playback timing may set: 10 minutes.
pub const MAX_TIMING_MS: u64 = 600_000;
/// The most numbers an account may never answer.
pub const MAX_UNANSWERED: usize = 100;
/// Ringing before the callee answers, by default.
pub const DEFAULT_ANSWER_AFTER_MS: u64 = 2_000;
/// Talking before the call ends, by default.
pub const DEFAULT_TALK_MS: u64 = 5_000;
/// Ringing before a number that never answers gives up, by default.
pub const DEFAULT_NO_ANSWER_AFTER_MS: u64 = 6_000;
/// Waits before the second and third attempt of a delivery.
const RETRY_DELAYS_MS: [u64; 2] = [250, 1_000];

/// Where an account posts its originated calls' events, and the secret that signs them.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub secret: Secret,
}

/// Serialises an account's webhook target as its URL alone.
pub(super) fn webhook_url<S: Serializer>(target: &Option<Target>, serializer: S) -> Result<S::Ok, S::Error> {
    match target {
        Some(target) => serializer.serialize_str(target.url.as_str()),
        None => serializer.serialize_none(),
    }
}

/// How a call to a number the account never answers ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unanswered {
    #[default]
    Missed,
    Busy,
    Failed,
}

impl Unanswered {
    pub fn status(self) -> CallStatus {
        match self {
            Unanswered::Missed => CallStatus::Missed,
            Unanswered::Busy => CallStatus::Busy,
            Unanswered::Failed => CallStatus::Failed,
        }
    }
}

/// `PUT /sandbox/voip/accounts/{id}/playback`: how the account plays the calls it originates. A field left out
/// takes its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Playback {
    /// Ringing → answered, in milliseconds ([`DEFAULT_ANSWER_AFTER_MS`]).
    pub answer_after_ms: u64,
    /// Answered → ended, in milliseconds ([`DEFAULT_TALK_MS`]); the `duration` is the talk in whole seconds,
    /// rounded, at least 1 (an answered call was talked on).
    pub talk_ms: u64,
    /// Ringing → not answered, for the numbers in `unanswered_numbers` ([`DEFAULT_NO_ANSWER_AFTER_MS`]).
    pub no_answer_after_ms: u64,
    /// Numbers that never answer, compared by their digits (the last 8 or more suffice: `(11) 98765-4321`
    /// is `+5511987654321`).
    pub unanswered_numbers: Vec<String>,
    /// The status of their end: `missed` (default), `busy` or `failed`.
    pub unanswered_status: Unanswered,
    /// The call waits for `POST /sandbox/voip/calls/{call_id}/answer` and `.../end` instead of the timings.
    pub manual: bool,
    /// The account's line: the `from` of its outbound calls.
    pub line: String,
}

impl Default for Playback {
    fn default() -> Playback {
        Playback {
            answer_after_ms: DEFAULT_ANSWER_AFTER_MS,
            talk_ms: DEFAULT_TALK_MS,
            no_answer_after_ms: DEFAULT_NO_ANSWER_AFTER_MS,
            unanswered_numbers: Vec::new(),
            unanswered_status: Unanswered::Missed,
            manual: false,
            line: crate::samples::LINE.to_owned(),
        }
    }
}

/// Two numbers are the same when their digits are, or when the shorter one (8 digits or more) ends the longer.
pub fn same_number(a: &str, b: &str) -> bool {
    let (a, b) = (crate::kommo_api::crm::digits(a), crate::kommo_api::crm::digits(b));
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    !short.is_empty() && (short == long || (short.len() >= 8 && long.ends_with(&short)))
}

impl Playback {
    /// What a provider could not do: waits over [`MAX_TIMING_MS`], too many or empty numbers, a line that is
    /// not a short printable text.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("answer_after_ms", self.answer_after_ms),
            ("talk_ms", self.talk_ms),
            ("no_answer_after_ms", self.no_answer_after_ms),
        ] {
            if value > MAX_TIMING_MS {
                return Err(format!("{name} must be at most {MAX_TIMING_MS}"));
            }
        }
        if self.unanswered_numbers.len() > MAX_UNANSWERED {
            return Err(format!("unanswered_numbers holds at most {MAX_UNANSWERED} numbers"));
        }
        if self.unanswered_numbers.iter().any(|number| crate::kommo_api::crm::digits(number).is_empty()) {
            return Err("every unanswered number needs digits".to_owned());
        }
        let line = self.line.trim();
        if line.is_empty() || line.chars().count() > 32 || line.chars().any(shared::call::is_non_printing) {
            return Err("line must be 1 to 32 printable characters".to_owned());
        }
        Ok(())
    }

    /// Whether a call to `number` is never answered.
    pub fn never_answers(&self, number: &str) -> bool {
        self.unanswered_numbers.iter().any(|unanswered| same_number(unanswered, number))
    }
}

/// One event of a played call, as delivered.
#[derive(Debug, Clone, Serialize)]
pub struct PlayedEvent {
    /// The call status the event reported.
    pub status: &'static str,
    pub webhook_id: String,
    /// The last attempt's `webhook-timestamp`.
    pub timestamp: i64,
    /// Unix milliseconds of the first attempt.
    pub sent_at_ms: i64,
    pub attempts: u32,
    /// The webhook's status at the last attempt; none when it could not be reached.
    pub upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An originated call and how its playback stands (`GET /sandbox/voip/calls`).
#[derive(Debug, Clone, Serialize)]
pub struct PlayedCall {
    pub call_id: String,
    pub account_id: String,
    pub extension: String,
    /// The account's line.
    pub from: String,
    /// The number dialled, as our server sent it.
    pub to: String,
    /// Unix milliseconds at which the originate request was received.
    pub received_at_ms: i64,
    /// `recorded` (the account had no webhook: nothing is posted), `ringing`, `answered`, then `ended`, or
    /// `missed` / `busy` / `failed` for a call never answered.
    pub state: &'static str,
    /// The webhook the events go to.
    pub webhook_url: Option<String>,
    pub manual: bool,
    /// The number is one the account never answers.
    pub unanswered: bool,
    /// Unix seconds at which it started ringing: every event's `startTime`.
    pub start_time: Option<i64>,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// Seconds of conversation, once ended.
    pub duration: Option<u32>,
    pub events: Vec<PlayedEvent>,
    /// The running playback's commands; none once it is over (or never started).
    #[serde(skip)]
    commands: Option<mpsc::UnboundedSender<Command>>,
}

impl PlayedCall {
    /// A call just accepted, not played yet (`recorded`).
    pub(super) fn new(call: &super::OriginatedCall, playback: &Playback) -> PlayedCall {
        PlayedCall {
            call_id: call.call_id.clone(),
            account_id: call.account_id.clone(),
            extension: call.extension.clone(),
            from: playback.line.trim().to_owned(),
            to: call.to.clone(),
            received_at_ms: call.received_at_ms,
            state: "recorded",
            webhook_url: None,
            manual: playback.manual,
            unanswered: playback.never_answers(&call.to),
            start_time: None,
            answered_at_ms: None,
            ended_at_ms: None,
            duration: None,
            events: Vec::new(),
            commands: None,
        }
    }

    /// Still ringing or answered.
    pub fn in_progress(&self) -> bool {
        matches!(self.state, "ringing" | "answered")
    }
}

/// What `POST /sandbox/voip/calls/{call_id}/answer` and `.../end` ask of a playing call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Answer,
    /// A ringing call ends unanswered (`status`, else the account's `unanswered_status`); an answered one
    /// ends with `duration` (else the talk so far, in seconds rounded, at least 1).
    End {
        status: Option<Unanswered>,
        duration: Option<u32>,
    },
}

pub(crate) struct Command {
    pub action: Action,
    /// The call after the command's event was delivered, or why the command does not apply.
    pub reply: oneshot::Sender<Result<PlayedCall, String>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Command").field("action", &self.action).finish_non_exhaustive()
    }
}

impl Book {
    /// Remembers an originated call; past [`MAX_PLAYED`] the oldest finished call (else the oldest) goes.
    pub(super) fn remember_call(&mut self, call: PlayedCall) {
        if self.played.len() >= MAX_PLAYED {
            match self.played.iter().position(|call| !call.in_progress()) {
                Some(index) => {
                    self.played.remove(index);
                }
                None => {
                    self.played.pop_front();
                }
            }
        }
        self.played.push_back(call);
    }

    pub(crate) fn played_calls(&self) -> impl Iterator<Item = &PlayedCall> {
        self.played.iter()
    }

    pub(crate) fn played_call(&self, call_id: &str) -> Option<&PlayedCall> {
        self.played.iter().rev().find(|call| call.call_id == call_id)
    }

    fn played_mut(&mut self, call_id: &str) -> Option<&mut PlayedCall> {
        self.played.iter_mut().rev().find(|call| call.call_id == call_id)
    }

    /// The sender of a playing call's commands.
    pub(crate) fn commands_of(&self, call_id: &str) -> Option<mpsc::UnboundedSender<Command>> {
        self.played_call(call_id)?.commands.clone()
    }
}

/// Remembers the call and, when the account has a webhook, starts playing it in the background.
pub(super) fn start(state: &crate::State, mut call: PlayedCall, target: Option<Target>, playback: Playback) {
    let Some(target) = target else {
        state.voip.book().remember_call(call);
        return;
    };
    let (sender, commands) = mpsc::unbounded_channel();
    call.webhook_url = Some(target.url.to_string());
    call.commands = Some(sender);
    let script = Script {
        call_id: call.call_id.clone(),
        account_id: call.account_id.clone(),
        extension: call.extension.clone(),
        from: call.from.clone(),
        to: call.to.clone(),
        unanswered: call.unanswered,
        target,
        playback,
    };
    state.voip.book().remember_call(call);
    tokio::spawn(run(state.clone(), script, commands));
}

/// What one playback posts, fixed when the call was accepted.
struct Script {
    call_id: String,
    account_id: String,
    extension: String,
    from: String,
    to: String,
    unanswered: bool,
    target: Target,
    playback: Playback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    Over,
}

/// Where a playing call stands.
struct Live {
    phase: Phase,
    /// When the current phase began.
    since: tokio::time::Instant,
    answered_at: Option<Instant>,
    start_time: i64,
}

pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Plays the call: ringing now, then the timers or the commands, until it is over.
async fn run(state: crate::State, script: Script, mut commands: mpsc::UnboundedReceiver<Command>) {
    let start_time = crate::kommo_api::unix_now();
    let mut live = Live { phase: Phase::Ringing, since: tokio::time::Instant::now(), answered_at: None, start_time };
    script.post(&state, &live, CallStatus::Ringing, None).await;
    let mut listening = true;
    while live.phase != Phase::Over {
        let wait = match (live.phase, script.playback.manual) {
            (_, true) | (Phase::Over, _) => None,
            (Phase::Ringing, false) if script.unanswered => Some(script.playback.no_answer_after_ms),
            (Phase::Ringing, false) => Some(script.playback.answer_after_ms),
            (Phase::Answered, false) => Some(script.playback.talk_ms),
        };
        let deadline = wait.map(|ms| live.since + Duration::from_millis(ms));
        if deadline.is_none() && !listening {
            // Nobody can move a manual call any more (the sandbox is going away).
            return;
        }
        let timer = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = timer => {
                let action = match live.phase {
                    Phase::Ringing if !script.unanswered => Action::Answer,
                    _ => Action::End { status: None, duration: None },
                };
                // The timer only fires where its action applies.
                let _ = script.step(&state, &mut live, action).await;
            }
            command = commands.recv(), if listening => match command {
                None => listening = false,
                Some(Command { action, reply }) => {
                    let done = script.step(&state, &mut live, action).await;
                    let call = state.voip.book().played_call(&script.call_id).cloned();
                    let answer = done.and_then(|()| call.ok_or_else(|| "the call was forgotten".to_owned()));
                    let _ = reply.send(answer);
                }
            },
        }
    }
    if let Some(call) = state.voip.book().played_mut(&script.call_id) {
        call.commands = None;
    }
    // Commands that raced with the end are told so.
    commands.close();
    while let Some(Command { reply, .. }) = commands.recv().await {
        let _ = reply.send(Err("the call is over".to_owned()));
    }
}

impl Script {
    /// Applies one action to the call: posts its event and moves it on; a refusal when it does not apply.
    async fn step(&self, state: &crate::State, live: &mut Live, action: Action) -> Result<(), String> {
        match (live.phase, action) {
            (Phase::Ringing, Action::Answer) => {
                self.post(state, live, CallStatus::Answered, None).await;
                live.phase = Phase::Answered;
                live.since = tokio::time::Instant::now();
                live.answered_at = Some(Instant::now());
                Ok(())
            }
            (Phase::Ringing, Action::End { status, .. }) => {
                let status = status.unwrap_or(self.playback.unanswered_status).status();
                self.post(state, live, status, None).await;
                live.phase = Phase::Over;
                Ok(())
            }
            (Phase::Answered, Action::End { duration, .. }) => {
                let talked = live.answered_at.map(|at| at.elapsed()).unwrap_or_default();
                let seconds = u32::try_from((talked.as_millis() + 500) / 1000).unwrap_or(u32::MAX).max(1);
                self.post(state, live, CallStatus::Ended, Some(duration.unwrap_or(seconds))).await;
                live.phase = Phase::Over;
                Ok(())
            }
            (Phase::Answered, Action::Answer) => Err("the call is answered already".to_owned()),
            (Phase::Over, _) => Err("the call is over".to_owned()),
        }
    }

    fn event(&self, live: &Live, status: CallStatus, duration: Option<u32>) -> FromWebhook {
        let event_type = match status {
            CallStatus::Ringing => Some(CallEventType::Ringing),
            CallStatus::Answered => Some(CallEventType::Answered),
            CallStatus::Ended => Some(CallEventType::Ended),
            CallStatus::Missed => Some(CallEventType::Missed),
            CallStatus::Busy | CallStatus::Failed => None,
        };
        FromWebhook {
            call_id: self.call_id.clone(),
            voip_account_id: self.account_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            status,
            start_time: live.start_time,
            extension: Some(self.extension.clone()),
            event_type,
            direction: Some(CallDirection::Outbound),
            duration,
            recording_url: None,
        }
    }

    /// Posts one event, signed, with up to two more attempts; records it on the call and in the stats.
    async fn post(&self, state: &crate::State, live: &Live, status: CallStatus, duration: Option<u32>) {
        let event = self.event(live, status, duration);
        let body = serde_json::to_vec(&event).expect("a provider event always serialises");
        let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let sent_at_ms = unix_millis();
        let mut delivered = PlayedEvent {
            status: status.as_str(),
            webhook_id: webhook_id.clone(),
            timestamp: 0,
            sent_at_ms,
            attempts: 0,
            upstream_status: None,
            error: None,
        };
        for attempt in 0..=RETRY_DELAYS_MS.len() {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(RETRY_DELAYS_MS[attempt - 1])).await;
            }
            let timestamp = crate::kommo_api::unix_now();
            let signature = self.target.secret.sign(&webhook_id, timestamp, &body);
            let signed = Signed { webhook_id: &webhook_id, timestamp, signature: &signature };
            delivered.attempts += 1;
            delivered.timestamp = timestamp;
            match deliver(state, self.target.url.clone(), body.clone(), Some(signed)).await {
                Ok((upstream, _)) => {
                    delivered.upstream_status = Some(upstream);
                    delivered.error = None;
                    if upstream < 500 && upstream != 429 {
                        break;
                    }
                }
                Err(error) => {
                    delivered.upstream_status = None;
                    delivered.error = Some(error.to_string());
                }
            }
        }
        tracing::info!(
            call.id = %self.call_id,
            call.status = status.as_str(),
            upstream.status = delivered.upstream_status,
            attempts = delivered.attempts,
            "played an originated call's event"
        );
        let mut book = state.voip.book();
        book.stats.webhooks.push(SentWebhook {
            webhook_id,
            call_id: self.call_id.clone(),
            status: delivered.upstream_status.unwrap_or(0),
            event: Some(status.as_str()),
        });
        if let Some(call) = book.played_mut(&self.call_id) {
            call.state = status.as_str();
            call.start_time = Some(live.start_time);
            match status {
                CallStatus::Answered => call.answered_at_ms = Some(sent_at_ms),
                CallStatus::Ringing => {}
                _ => {
                    call.ended_at_ms = Some(sent_at_ms);
                    call.duration = duration;
                }
            }
            call.events.push(delivered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_by_digits_or_a_long_enough_ending() {
        assert!(same_number("+55 11 98765-4321", "+5511987654321"));
        assert!(same_number("(11) 98765-4321", "+5511987654321"));
        assert!(same_number("87654321", "+5511987654321"));
        assert!(!same_number("7654321", "+5511987654321"), "seven digits are too few to be the same number");
        assert!(!same_number("+5511987654322", "+5511987654321"));
        assert!(!same_number("", ""));
    }

    #[test]
    fn playback_defaults_and_bounds() {
        let defaults: Playback = serde_json::from_str("{}").unwrap();
        assert_eq!(defaults, Playback::default());
        assert_eq!((defaults.answer_after_ms, defaults.talk_ms), (2_000, 5_000));
        assert_eq!(defaults.validate(), Ok(()));
        let partial: Playback = serde_json::from_str(r#"{"talk_ms": 50, "unanswered_status": "busy"}"#).unwrap();
        assert_eq!(
            (partial.talk_ms, partial.answer_after_ms, partial.unanswered_status),
            (50, 2_000, Unanswered::Busy)
        );
        assert!(serde_json::from_str::<Playback>(r#"{"talk": 50}"#).is_err(), "unknown fields are refused");
        for bad in [
            Playback { talk_ms: MAX_TIMING_MS + 1, ..Playback::default() },
            Playback { unanswered_numbers: vec!["abc".into()], ..Playback::default() },
            Playback { line: " ".into(), ..Playback::default() },
            Playback { line: "+55\n11".into(), ..Playback::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let playback = Playback { unanswered_numbers: vec!["+55 21 99876-5432".into()], ..Playback::default() };
        assert!(playback.never_answers("+5521998765432"));
        assert!(!playback.never_answers("+5511987654321"));
    }
}
