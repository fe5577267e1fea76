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
use shared::api::{CALL_EVENT, PushTicket, paths};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use super::error::ApiError;
use super::widget::WidgetAuth;
use crate::auth::TokenError;
use crate::push::{OpenError, STREAMS_FULL_RETRY_AFTER, StreamsFull, Subscriber, TICKET_TTL, TicketError};

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
    Router::new().route(paths::PUSH_TICKET, post(push_ticket)).route(paths::PUSH_EVENTS, get(push_events))
}

async fn push_ticket(State(state): State<AppState>, auth: WidgetAuth) -> Result<Json<PushTicket>, ApiError> {
    let subscriber = Subscriber { account: auth.account, user_id: auth.user_id };
    let ticket = state.hub.issue_ticket(&state.store, subscriber, &state.limits).await?;
    Ok(Json(PushTicket { ticket, expires_in: TICKET_TTL.as_secs() }))
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: String,
}

async fn push_events(
    State(state): State<AppState>,
    Query(query): Query<TicketQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
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
    let events = BroadcastStream::new(state.hub.subscribe(subscriber.account))
        // A lagging stream skips what it missed rather than closing.
        .filter_map(|message| message.ok())
        .filter(move |event| subscriber.wants(event))
        .map(move |event| {
            // The slot lives as long as the stream: dropped with it, however it ends.
            let _slot = &slot;
            let data = serde_json::to_string(&event.call).expect("IncomingCall always serialises");
            Ok(Event::default().event(CALL_EVENT).data(data))
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
