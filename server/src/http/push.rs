//! The widget's push stream: a single-use ticket bought with Kommo's token, then an SSE stream of calls.

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
use crate::push::{Subscriber, TICKET_TTL};

pub fn router() -> Router<AppState> {
    Router::new().route(paths::PUSH_TICKET, post(push_ticket)).route(paths::PUSH_EVENTS, get(push_events))
}

async fn push_ticket(State(state): State<AppState>, auth: WidgetAuth) -> Json<PushTicket> {
    let ticket = state.hub.issue_ticket(Subscriber { account: auth.account, user_id: auth.user_id });
    Json(PushTicket { ticket, expires_in: TICKET_TTL.as_secs() })
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: String,
}

async fn push_events(
    State(state): State<AppState>,
    Query(query): Query<TicketQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscriber = state
        .hub
        .redeem(&query.ticket)
        .ok_or(ApiError::Unauthorized(TokenError::Invalid("unknown, used or expired ticket")))?;
    let shutdown = state.shutdown.clone();
    let events = BroadcastStream::new(state.hub.subscribe(subscriber.account))
        // A lagging stream skips what it missed rather than closing.
        .filter_map(|message| message.ok())
        .filter(move |event| subscriber.wants(event))
        .map(|event| {
            let data = serde_json::to_string(&event.call).expect("IncomingCall always serialises");
            Ok(Event::default().event(CALL_EVENT).data(data))
        });
    // Open streams end on shutdown so graceful shutdown does not wait on them.
    let events = futures_util::StreamExt::take_until(events, async move { shutdown.cancelled().await });
    let hello = tokio_stream::once(Ok(Event::default().comment("connected")));
    Ok(Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
