//! The widget's push stream: a single-use ticket bought with Kommo's token, then an SSE stream of calls,
//! within the caps on open streams and for a bounded lifetime.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use shared::api::{ActiveCalls, CALL_EVENT, IncomingCall, PushTicket, paths};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use super::error::ApiError;
use super::widget::WidgetAuth;
use crate::auth::TokenError;
use crate::push::{OpenError, STREAMS_FULL_RETRY_AFTER, StreamsFull, Subscriber, TICKET_TTL, TicketError};
use crate::store::AccountId;

impl From<StreamsFull> for ApiError {
    fn from(StreamsFull: StreamsFull) -> ApiError {
        ApiError::TooManyRequests { code: "too_many_streams", retry_after: STREAMS_FULL_RETRY_AFTER }
    }
}

impl From<TicketError> for ApiError {
    fn from(error: TicketError) -> ApiError {
        match error {
            TicketError::Full(full) => full.into(),
            TicketError::Storage(error) => error.into(),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::PUSH_TICKET, post(push_ticket))
        .route(paths::PUSH_EVENTS, get(push_events))
        .route(paths::ACTIVE_CALLS, get(active_calls))
}

/// Looks up who is calling in the background and sends it as an event of the call without an id (the
/// popup has the number already), within the caller lookup's bounds (else not at all).
pub(crate) fn describe_caller(state: &AppState, account: AccountId, call: &IncomingCall) {
    let Some(slot) = state.calls.caller_id().slot(account, &call.call_id) else {
        tracing::debug!(account.id = account.get(), "caller lookup skipped: running already, or too many running");
        return;
    };
    let (state, mut call) = (state.clone(), call.clone());
    tokio::spawn(async move {
        let _slot = slot;
        // Our line goes out formatted with the caller (the account's country is read once, then cached).
        call.line_shown = Some(state.calls.number_shown(account, call.line_number()).await);
        // The name goes out as soon as the search found it, from a task of its own (the lookup keeps
        // going meanwhile, and may hold the store's connection while it waits); the leads follow.
        let sent_early = std::sync::Mutex::new(None);
        let early = |caller| {
            let (state, update) =
                (state.clone(), IncomingCall { event_id: None, caller: Some(caller), ..call.clone() });
            let task = tokio::spawn(async move { state.hub.send_update(&state.store, account, update).await });
            *sent_early.lock().expect("early send lock poisoned") = Some(task);
        };
        let caller = state.calls.describe_caller(account, call.client_number(), &call.call_id, early).await;
        // The full description goes after the name, never before it.
        let early_task = sent_early.lock().expect("early send lock poisoned").take();
        if let Some(task) = early_task {
            let _ = task.await;
        }
        let update = IncomingCall { event_id: None, caller: Some(caller), ..call.clone() };
        state.hub.send_update(&state.store, account, update).await;
    });
}

/// `GET /widget/v1/calls/active`: this user's calls still in progress (a reload, a new tab), with who
/// is calling when it is known, and the inbox id to open the push stream after. A call whose caller is
/// not known here yet is looked up, and its description follows on the stream.
async fn active_calls(State(state): State<AppState>, auth: WidgetAuth) -> Result<Json<ActiveCalls>, ApiError> {
    let subscriber = Subscriber { account: auth.account, user_id: auth.user_id };
    // Read first: an event stored after this id is sent again by the stream (the widget ignores what it
    // already shows), so nothing falls between the list and the stream.
    let last_event_id = state.store.last_inbox_id().await?;
    let mut calls = state.hub.active_calls(&state.store, subscriber).await?;
    let caller_id = state.calls.caller_id();
    for call in &mut calls {
        call.line_shown = Some(state.calls.number_shown(auth.account, call.line_number()).await);
        call.caller = caller_id.cached(auth.account, call.client_number()).await;
        if call.caller.is_none() {
            describe_caller(&state, auth.account, call);
        }
    }
    // A description that comes out while the widget is between this list and its new stream would reach
    // no stream: the list waits a little for the lookups under way (this one's, or one a call's webhook
    // started) and carries what they found; past the wait the stream brings it.
    let deadline = tokio::time::Instant::now() + ACTIVE_CALLS_LOOKUP_WAIT;
    while calls.iter().any(|call| call.caller.is_none()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for call in calls.iter_mut().filter(|call| call.caller.is_none()) {
            call.caller = caller_id.cached(auth.account, call.client_number()).await;
        }
    }
    // The user's unfinished call list, so that a reload or another tab shows its dialer.
    let call_list = state.store.open_call_list_id(auth.account, auth.user_id).await?;
    Ok(Json(ActiveCalls { calls, last_event_id: Some(last_event_id), call_list }))
}

/// How long the list of calls in progress waits for the descriptions of its callers being looked up.
const ACTIVE_CALLS_LOOKUP_WAIT: Duration = Duration::from_millis(1500);

async fn push_ticket(State(state): State<AppState>, auth: WidgetAuth) -> Result<Json<PushTicket>, ApiError> {
    let subscriber = Subscriber { account: auth.account, user_id: auth.user_id };
    let ticket = state.hub.issue_ticket(&state.store, subscriber, &state.limits).await?;
    state.hub.warm_groups(&state.store, auth.account).await;
    Ok(Json(PushTicket { ticket, expires_in: TICKET_TTL.as_secs() }))
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: String,
    /// The last event id the widget saw (its `EventSource` is new on every ticket, so it cannot send
    /// `Last-Event-ID` itself); the header is read too.
    last_event_id: Option<i64>,
}

async fn push_events(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(query): Query<TicketQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = query.last_event_id.or_else(|| {
        headers.get("last-event-id").and_then(|value| value.to_str().ok()).and_then(|value| value.trim().parse().ok())
    });
    let (subscriber, slot) =
        state.hub.open_stream(&state.store, &query.ticket, &state.limits).await.map_err(|error| match error {
            OpenError::BadTicket => ApiError::Unauthorized(TokenError::Invalid("unknown, used or expired ticket")),
            OpenError::Full(full) => full.into(),
            OpenError::Storage(error) => error.into(),
        })?;
    let shutdown = state.shutdown.clone();
    // Streams end a little before their lifetime, each by its own amount, so the streams that a
    // restart reopened all at once do not all reconnect at the same moment again.
    let lifetime = state.limits.push_stream_lifetime.mul_f64(1.0 - rand::random::<f64>() / 10.0);
    // Subscribed before the missed events are read, so nothing falls between them; what both carry is
    // sent once (live events up to the last one replayed are skipped).
    let live = BroadcastStream::new(state.hub.subscribe(subscriber.account));
    let missed = match resume {
        Some(after) => state.hub.missed(&state.store, subscriber, after.max(0)).await?,
        None => Vec::new(),
    };
    let replayed_up_to = missed.iter().filter_map(|call| call.event_id).max().unwrap_or(i64::MIN);
    let live = live
        // A lagging stream skips what it missed rather than closing.
        .filter_map(|message| message.ok())
        .filter(move |event| subscriber.wants(event))
        .filter(move |event| event.call.event_id.is_none_or(|id| id > replayed_up_to))
        .map(|event| event.call.clone());
    let events = tokio_stream::iter(missed).chain(live).map(move |call| {
        // The slot lives as long as the stream: dropped with it, however it ends.
        let _slot = &slot;
        let data = serde_json::to_string(&call).expect("IncomingCall always serialises");
        let event = Event::default().event(CALL_EVENT).data(data);
        Ok(match call.event_id {
            Some(id) => event.id(id.to_string()),
            None => event,
        })
    });
    // Open streams end on shutdown so graceful shutdown does not wait on them, and after their
    // lifetime, so that a user removed from Kommo (no new token, no new ticket) stops receiving.
    let end = async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(lifetime) => {}
        }
    };
    let events = futures_util::StreamExt::take_until(events, end);
    let hello = tokio_stream::once(Ok(Event::default().comment("connected")));
    Ok(Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
