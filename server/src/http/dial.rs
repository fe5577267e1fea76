//! Calling out from Kommo: click-to-call (`POST /widget/v1/calls/originate`) and the current user's call
//! lists (`/widget/v1/call-lists*`). Any user of the account may call, always from their own extension;
//! a list is its maker's alone (another user's id is "not found"). The rules are `crate::dialer`'s.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use shared::api::{
    CallListCommand, CallListView, CurrentCallList, MAX_CALL_LIST_ENTRIES, NewCallList, OriginateRequest, Originated,
    dial_errors, paths,
};
use shared::{CallHandling, FieldError, ValidationCode};

use super::AppState;
use super::error::{ApiError, json_body};
use super::settings::VOIP_TOKEN_COLUMN;
use super::widget::WidgetAuth;
use crate::dialer::{self, DialRefusal, ListRules, Refused};
use crate::store::AccountId;
use crate::store::call_lists::ListWrite;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::ORIGINATE, post(originate))
        .route(paths::CALL_LISTS, post(create_list))
        .route(paths::CURRENT_CALL_LIST, get(current_list))
        .route(paths::CALL_LIST_COMMAND, post(command))
}

const CALL_LISTS_OFF: DialRefusal = DialRefusal {
    status: 403,
    code: dial_errors::CALL_LISTS_OFF,
    message: "Call lists are turned off for this list in the widget settings.",
};
const STALE: DialRefusal =
    DialRefusal { status: 409, code: dial_errors::STALE, message: "The call list changed meanwhile; read it again." };
const NOT_RUNNING: DialRefusal =
    DialRefusal { status: 409, code: dial_errors::NOT_RUNNING, message: "The call list is not running." };
const NOT_DUE: DialRefusal =
    DialRefusal { status: 409, code: dial_errors::NOT_DUE, message: "The next entry is not due yet." };
const ALREADY_DIALING: &str = dial_errors::ALREADY_DIALING;

/// `POST /widget/v1/calls/originate`: the provider rings the user's extension and connects it to `to`.
async fn originate(
    State(state): State<AppState>,
    auth: WidgetAuth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Originated>, ApiError> {
    let request: OriginateRequest = json_body(body, "originate")?;
    Ok(Json(place_call(&state, auth, &request.to).await?))
}

/// Places a call for the user: the integration on, their extension, a number of the account's country,
/// their dial guard free; the guard is then held [`dialer::DIAL_HOLD_MS`] after the provider accepted,
/// freed at once when it refused.
async fn place_call(state: &AppState, auth: WidgetAuth, to: &str) -> Result<Originated, ApiError> {
    let account = auth.account;
    let settings =
        state.store.settings(account).await?.filter(|row| row.active).ok_or(ApiError::Dial(dialer::INTEGRATION_OFF))?;
    let extensions = state.store.extensions(account).await?;
    let extension = dialer::extension_of(&extensions, auth.user_id).ok_or(ApiError::Dial(dialer::NO_EXTENSION))?;
    let country = state.store.account_country(account).await?;
    let e164 = (to.len() <= 64)
        .then(|| shared::phone::normalize(to, country.as_deref()))
        .flatten()
        .ok_or(ApiError::Dial(dialer::INVALID_NUMBER))?;
    let credentials = dialer::stored_credentials(&state.keyring, account, &settings, VOIP_TOKEN_COLUMN)?;

    let now = dialer::now_ms();
    let held_until = now + dialer::DIAL_PENDING_MS;
    if !state.store.take_dial_guard(account, auth.user_id, now, held_until).await? {
        return Err(ApiError::TooManyRequests {
            code: ALREADY_DIALING,
            retry_after: std::time::Duration::from_millis(dialer::DIAL_HOLD_MS as u64),
        });
    }
    let url = settings.provider_url.trim().trim_end_matches('/');
    let system = shared::ProviderSystem::parse(&settings.provider_system).unwrap_or_default();
    let webhook_url = format!("{}/hooks/voip/{}", state.public_base_url, settings.hook_id);
    let placed =
        state.provider.originate_system(system, url, &credentials, &extension, &e164, Some(&webhook_url)).await;
    let release_at = if placed.is_ok() { dialer::now_ms() + dialer::DIAL_HOLD_MS } else { dialer::now_ms() };
    state.store.move_dial_guard(account, auth.user_id, held_until, release_at).await?;
    match placed {
        Ok(call_id) => {
            tracing::info!(account.id = account.get(), user.id = auth.user_id, call.id = %call_id, "call placed");
            metrics::counter!("calls_originated_total", "outcome" => "placed").increment(1);
            Ok(dialer::originated(call_id, &e164, extension, country.as_deref()))
        }
        Err(error) => {
            let refusal = dialer::refusal_of(&error);
            tracing::info!(account.id = account.get(), user.id = auth.user_id, %error, "the provider did not place the call");
            metrics::counter!("calls_originated_total", "outcome" => refusal.code).increment(1);
            Err(ApiError::Dial(refusal))
        }
    }
}

/// The call-handling settings (the defaults before the first save).
async fn handling(state: &AppState, account: AccountId) -> Result<CallHandling, ApiError> {
    let stored = state.store.settings(account).await?;
    Ok(stored.and_then(|row| serde_json::from_str(&row.config).ok()).unwrap_or_default())
}

fn rules(handling: &CallHandling) -> ListRules {
    ListRules::new(&handling.call_lists, handling.widget.call_feedback_modal)
}

/// `POST /widget/v1/call-lists`: the entities selected in a Kommo list become the user's call list (their
/// unfinished one is stopped). The entities are read from Kommo with the account's token, so ids the
/// account does not have are left out.
async fn create_list(
    State(state): State<AppState>,
    auth: WidgetAuth,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CallListView>), ApiError> {
    let request: NewCallList = json_body(body, "call list")?;
    let handling = handling(&state, auth.account).await?;
    let lists = &handling.call_lists;
    if !lists.enabled || !lists.sources.contains(&request.source) {
        return Err(ApiError::Dial(CALL_LISTS_OFF));
    }
    let field = |code| ApiError::Validation(vec![FieldError { field: "ids".into(), code }]);
    if request.ids.is_empty() {
        return Err(field(ValidationCode::Required));
    }
    if request.ids.len() > MAX_CALL_LIST_ENTRIES {
        return Err(field(ValidationCode::TooMany));
    }
    if request.ids.iter().any(|id| *id <= 0) {
        return Err(field(ValidationCode::OutOfRange));
    }
    if request.ids.iter().enumerate().any(|(i, id)| request.ids[..i].contains(id)) {
        return Err(field(ValidationCode::Duplicate));
    }
    state
        .throttle
        .call_list(auth.account, auth.user_id)
        .map_err(|retry_after| ApiError::TooManyRequests { code: "rate_limited", retry_after })?;
    let country = state.store.account_country(auth.account).await?;
    let entries =
        dialer::resolve_entries(&state.installer.kommo, auth.account, request.source, &request.ids, country.as_deref())
            .await?;
    if entries.is_empty() {
        return Err(ApiError::NotFound);
    }
    let now = dialer::now_ms();
    let id = state.store.create_call_list(auth.account, auth.user_id, request.source.as_str(), &entries, now).await?;
    tracing::info!(
        account.id = auth.account.get(),
        user.id = auth.user_id,
        list.id = id,
        entries = entries.len(),
        "call list made"
    );
    let view = read_list(&state, auth, id, rules(&handling)).await?.ok_or(ApiError::NotFound)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /widget/v1/call-lists/current`.
async fn current_list(State(state): State<AppState>, auth: WidgetAuth) -> Result<Json<CurrentCallList>, ApiError> {
    let Some(id) = state.store.current_call_list_id(auth.account, auth.user_id).await? else {
        return Ok(Json(CurrentCallList { list: None }));
    };
    let handling = handling(&state, auth.account).await?;
    Ok(Json(CurrentCallList { list: read_list(&state, auth, id, rules(&handling)).await? }))
}

/// One of the user's lists, its entries brought up to date with their calls (written when they changed).
async fn read_list(
    state: &AppState,
    auth: WidgetAuth,
    id: i64,
    rules: ListRules,
) -> Result<Option<CallListView>, ApiError> {
    for _ in 0..3 {
        let Some((list, mut entries)) = state.store.call_list(auth.account, auth.user_id, id).await? else {
            return Ok(None);
        };
        if rebind_unreported(state, auth.account, id, &entries).await? {
            continue;
        }
        let now = dialer::now_ms();
        let writes = dialer::settle(&mut entries, now);
        let finished = dialer::settled_state(&list, &entries);
        if writes.is_empty() && finished.is_none() {
            return Ok(Some(dialer::view(&list, &entries, rules, now)));
        }
        let state_name = finished.unwrap_or(list.state.as_str()).to_owned();
        if state
            .store
            .write_call_list(
                auth.account,
                &list,
                ListWrite {
                    state: &state_name,
                    next_position: list.next_position,
                    current_position: list.current_position,
                    entries: &writes,
                },
                now,
            )
            .await?
        {
            let mut written = list.clone();
            written.state = state_name;
            return Ok(Some(dialer::view(&written, &entries, rules, now)));
        }
        // Changed meanwhile (another tab): read again.
    }
    Err(ApiError::Dial(STALE))
}

/// Entries being called whose call id no event carries (a system whose answer to the dial names another id
/// than its events, like Zadarma's callback request) take the outbound call to their number that started
/// since the dial and no entry holds. Returns whether one changed.
async fn rebind_unreported(
    state: &AppState,
    account: AccountId,
    list_id: i64,
    entries: &[crate::store::call_lists::EntryRow],
) -> Result<bool, ApiError> {
    let mut changed = false;
    for entry in entries.iter().filter(|entry| entry.state == "calling" && entry.call_status.is_none()) {
        let (Some(call_id), Some(number), Some(dialed_at)) = (&entry.call_id, &entry.number, entry.dialed_at_ms) else {
            continue;
        };
        // A few seconds of clock difference between the provider's start time and ours.
        let since = dialed_at / 1000 - 5;
        if let Some(found) = state.store.unclaimed_outbound_call(account, number, since).await?
            && found != *call_id
        {
            state.store.rebind_dial(account, list_id, entry.position, call_id, &found).await?;
            changed = true;
        }
    }
    Ok(changed)
}

/// `POST /widget/v1/call-lists/{id}/command`.
async fn command(
    State(state): State<AppState>,
    auth: WidgetAuth,
    Path(id): Path<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CallListView>, ApiError> {
    let request: CallListCommand = json_body(body, "call list command")?;
    let handling = handling(&state, auth.account).await?;
    let rules = rules(&handling);
    // Settle first, so the rules see the calls as they are.
    read_list(&state, auth, id, rules).await?.ok_or(ApiError::NotFound)?;
    let (list, entries) = state.store.call_list(auth.account, auth.user_id, id).await?.ok_or(ApiError::NotFound)?;
    let now = dialer::now_ms();
    let change = match dialer::apply(&list, &entries, request.action, request.next, rules, now) {
        Ok(change) => change,
        Err(Refused::Stale) => return Err(ApiError::Dial(STALE)),
        Err(Refused::NotRunning) => return Err(ApiError::Dial(NOT_RUNNING)),
        Err(Refused::NotDue(_)) => return Err(ApiError::Dial(NOT_DUE)),
    };
    if change.dial.is_some() && !handling.call_lists.enabled {
        return Err(ApiError::Dial(CALL_LISTS_OFF));
    }
    if !state
        .store
        .write_call_list(
            auth.account,
            &list,
            ListWrite {
                state: change.state,
                next_position: change.next,
                current_position: change.current,
                entries: &change.writes,
            },
            now,
        )
        .await?
    {
        return Err(ApiError::Dial(STALE));
    }
    if let Some(position) = change.dial {
        let number = entries[position as usize].number.clone().unwrap_or_default();
        let outcome = match place_call(&state, auth, &number).await {
            Ok(placed) => Ok(placed.call_id),
            Err(ApiError::Dial(refusal)) => Err(refusal.code),
            Err(ApiError::TooManyRequests { .. }) => Err(ALREADY_DIALING),
            Err(other) => {
                state
                    .store
                    .record_dial(auth.account, id, position, Err(dial_errors::PROVIDER_UNREACHABLE), dialer::now_ms())
                    .await?;
                return Err(other);
            }
        };
        state
            .store
            .record_dial(auth.account, id, position, outcome.as_deref().map_err(|code| *code), dialer::now_ms())
            .await?;
    }
    tracing::info!(account.id = auth.account.get(), user.id = auth.user_id, list.id = id, action = ?request.action, "call list command");
    let view = read_list(&state, auth, id, rules).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(view))
}
