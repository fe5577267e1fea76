//! Calling out: click-to-call ([`place_call`]: the user's extension, one call at a time, the provider's
//! `originate`) and call lists (what may be dialled when, as pure functions over a list's rows; the HTTP
//! side is `http::dial`, the rows `store::call_lists`).
//!
//! A list is driven by the manager's widget: it asks to dial the next entry when [`CallListView`] says it
//! is due, and the server decides ([`apply`]) by the same rules, so no tab dials early or twice. The
//! entry dialled last (`current`) holds the list until its call ended, its result came (when the account
//! asks for results; at most [`RESULT_WAIT_MS`]) and the admin's interval passed. A provider that refuses a
//! dial pauses the list.

use secrecy::SecretString;
use shared::api::{
    CallListAction, CallListEntryState, CallListEntryView, CallListState, CallListView, CallListWait, Originated,
    dial_errors,
};
use shared::{CallLists, CredentialMethod, ListSource};

use crate::clock::unix_millis;
use crate::crypto::SealContext;
use crate::provider::{Credentials, ProviderError};
use crate::store::call_lists::{EntryRow, EntryWrite, ListRow, NewEntry};
use crate::store::{AccountId, SettingsRow};

/// How long a placed call keeps the user's dial guard: a second click within it places nothing.
pub const DIAL_HOLD_MS: i64 = 3_000;
/// The guard while the provider is being asked (its requests time out within 10 s).
pub const DIAL_PENDING_MS: i64 = 15_000;
/// A call whose result the account asks for holds the list at most this long after it ended.
pub const RESULT_WAIT_MS: i64 = 120_000;
/// An entry dialled without a call id this long ago (the process stopped while asking the provider) is
/// counted as failed.
pub const LOST_DIAL_MS: i64 = 30_000;

/// A call the provider accepted and never reported (no event at all) this long after the dial is counted
/// as failed, so the list goes on.
pub const UNREPORTED_CALL_MS: i64 = 120_000;

/// Why a call could not be placed: a [`dial_errors`] code, its HTTP status, and a safe English message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialRefusal {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

pub const INTEGRATION_OFF: DialRefusal = DialRefusal {
    status: 409,
    code: dial_errors::INTEGRATION_OFF,
    message: "The integration is turned off in the widget settings.",
};
pub const NO_EXTENSION: DialRefusal = DialRefusal {
    status: 409,
    code: dial_errors::NO_EXTENSION,
    message: "No extension is mapped to you in the widget settings.",
};
pub const INVALID_NUMBER: DialRefusal = DialRefusal {
    status: 400,
    code: dial_errors::INVALID_NUMBER,
    message: "This is not a number that can be dialled.",
};
pub const PROVIDER_REFUSED: DialRefusal =
    DialRefusal { status: 502, code: dial_errors::PROVIDER_REFUSED, message: "The VoIP provider refused the call." };
pub const PROVIDER_UNREACHABLE: DialRefusal = DialRefusal {
    status: 504,
    code: dial_errors::PROVIDER_UNREACHABLE,
    message: "The VoIP provider could not be reached.",
};

/// The provider error as the manager is told it.
pub fn refusal_of(error: &ProviderError) -> DialRefusal {
    match error {
        ProviderError::Unreachable(_) | ProviderError::ProviderFailed { .. } | ProviderError::BadResponse(_) => {
            PROVIDER_UNREACHABLE
        }
        ProviderError::ForbiddenAddress(_)
        | ProviderError::InvalidUrl(_)
        | ProviderError::InvalidCredentials(_)
        | ProviderError::CredentialsRefused
        | ProviderError::Rejected { .. } => PROVIDER_REFUSED,
    }
}

/// The user's extension: the first mapped to them.
pub fn extension_of(extensions: &[(String, i64)], user_id: i64) -> Option<String> {
    extensions.iter().find(|(_, user)| *user == user_id).map(|(extension, _)| extension.clone())
}

/// The stored provider credentials, opened.
pub fn stored_credentials(
    keyring: &crate::crypto::Keyring,
    account: AccountId,
    row: &SettingsRow,
    column: &'static str,
) -> anyhow::Result<Credentials> {
    let sealed = row.voip_token.as_deref().ok_or_else(|| anyhow::anyhow!("no VoIP secret is stored"))?;
    let secret: SecretString = keyring.open(SealContext { column, account_id: account.get() }, sealed)?;
    let login = row.voip_login.trim().to_owned();
    Ok(match CredentialMethod::parse(&row.credential_method).unwrap_or(CredentialMethod::Password) {
        CredentialMethod::Password => Credentials::Password { login, password: secret },
        CredentialMethod::ApiKey => Credentials::ApiKey { key: secret },
        CredentialMethod::OAuth2 => Credentials::OAuth2 { client_id: login, client_secret: secret },
    })
}

/// What the provider accepted, for the widget.
pub fn originated(call_id: String, e164: &str, extension: String, country: Option<&str>) -> Originated {
    Originated { call_id, to: e164.to_owned(), to_shown: shared::phone::display_for(e164, country), extension }
}

/// What a list's rules need of the account's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRules {
    pub interval_ms: i64,
    /// The account shows the call-result form: an answered call's result holds the list.
    pub wait_for_result: bool,
}

impl ListRules {
    pub fn new(lists: &CallLists, call_feedback_modal: bool) -> ListRules {
        ListRules { interval_ms: i64::from(lists.interval_secs) * 1000, wait_for_result: call_feedback_modal }
    }
}

pub fn list_state(name: &str) -> CallListState {
    CallListState::parse(name).unwrap_or(CallListState::Ready)
}

pub fn entry_state(name: &str) -> CallListEntryState {
    CallListEntryState::parse(name).unwrap_or(CallListEntryState::Pending)
}

fn write_of(entry: &EntryRow) -> EntryWrite {
    EntryWrite {
        position: entry.position,
        state: entry.state.clone(),
        call_id: entry.call_id.clone(),
        dialed_at_ms: entry.dialed_at_ms,
        ended_at_ms: entry.ended_at_ms,
        duration: entry.duration,
        error: entry.error.clone(),
    }
}

/// Brings the entries being called up to date with their calls: an ended call makes its entry answered
/// or not answered (with its end and duration); a dial lost without a call id becomes failed. Returns
/// the entries that changed, to be written.
pub fn settle(entries: &mut [EntryRow], now_ms: i64) -> Vec<EntryWrite> {
    let mut changed = Vec::new();
    for entry in entries.iter_mut().filter(|entry| entry.state == "calling") {
        if entry.call_id.is_none() {
            if entry.dialed_at_ms.is_some_and(|at| now_ms - at > LOST_DIAL_MS) {
                entry.state = "failed".into();
                entry.error = Some(dial_errors::PROVIDER_UNREACHABLE.into());
                changed.push(write_of(entry));
            }
            continue;
        }
        let answered = match entry.call_status.as_deref() {
            Some("ended") => entry.call_duration.unwrap_or(0) > 0,
            Some("missed" | "busy" | "failed") => false,
            // The provider accepted the call but never reported it: the list does not wait forever.
            None if entry.dialed_at_ms.is_some_and(|at| now_ms - at > UNREPORTED_CALL_MS) => {
                entry.state = "failed".into();
                entry.error = Some(dial_errors::NOT_REPORTED.into());
                changed.push(write_of(entry));
                continue;
            }
            _ => continue,
        };
        entry.state = if answered { "answered" } else { "not_answered" }.into();
        entry.duration = answered.then_some(entry.call_duration.unwrap_or(0));
        // The call's last change is its end; never before it was dialled.
        let ended = entry.call_updated_at.map_or(now_ms, |at| at * 1000);
        entry.ended_at_ms = Some(ended.max(entry.dialed_at_ms.unwrap_or(0)));
        changed.push(write_of(entry));
    }
    changed
}

/// When the next entry may be dialled, from the entry dialled last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Now, or at this time (unix ms) with what it waits for meanwhile.
    At(i64, Option<CallListWait>),
    /// Not before something happens (the call's end, its result).
    Waiting(CallListWait),
}

pub fn due(list: &ListRow, entries: &[EntryRow], rules: ListRules) -> Due {
    let Some(current) = list.current_position.and_then(|position| entries.get(position as usize)) else {
        return Due::At(0, None);
    };
    match entry_state(&current.state) {
        CallListEntryState::Calling => Due::Waiting(CallListWait::CallEnd),
        CallListEntryState::Answered if rules.wait_for_result => {
            let ended = current.ended_at_ms.unwrap_or(0);
            match current.result_at_ms {
                Some(result_at) => Due::At(result_at.max(ended) + rules.interval_ms, Some(CallListWait::Interval)),
                None => Due::Waiting(CallListWait::CallResult),
            }
        }
        CallListEntryState::Answered | CallListEntryState::NotAnswered => {
            Due::At(current.ended_at_ms.unwrap_or(0) + rules.interval_ms, Some(CallListWait::Interval))
        }
        // Failed (the list was paused), skipped or never dialled: the interval after the attempt.
        _ => Due::At(current.dialed_at_ms.unwrap_or(0) + rules.interval_ms, Some(CallListWait::Interval)),
    }
}

/// `due`, with the result's wait bounded: past [`RESULT_WAIT_MS`] after the end, the interval runs from then.
fn due_bounded(list: &ListRow, entries: &[EntryRow], rules: ListRules, now_ms: i64) -> Due {
    match due(list, entries, rules) {
        Due::Waiting(CallListWait::CallResult) => {
            let ended = list
                .current_position
                .and_then(|position| entries.get(position as usize))
                .and_then(|entry| entry.ended_at_ms)
                .unwrap_or(now_ms);
            let limit = ended + RESULT_WAIT_MS;
            if now_ms >= limit {
                Due::At(limit + rules.interval_ms, Some(CallListWait::Interval))
            } else {
                Due::Waiting(CallListWait::CallResult)
            }
        }
        other => other,
    }
}

/// The first entry at or after `from` still to be dialled.
fn next_pending(entries: &[EntryRow], from: i64) -> i64 {
    entries
        .iter()
        .skip(from.max(0) as usize)
        .find(|entry| entry.state == "pending")
        .map_or(entries.len() as i64, |entry| entry.position)
}

/// A list with nothing left to dial and no call in progress is finished.
fn finished(next: i64, entries: &[EntryRow]) -> bool {
    next >= entries.len() as i64 && !entries.iter().any(|entry| entry.state == "calling")
}

/// The list as its manager sees it.
pub fn view(list: &ListRow, entries: &[EntryRow], rules: ListRules, now_ms: i64) -> CallListView {
    let state = list_state(&list.state);
    let (next_dial_at_ms, waiting_for) = if state == CallListState::Running {
        match due_bounded(list, entries, rules, now_ms) {
            Due::At(at, wait) => {
                let at = at.max(now_ms);
                (Some(at), if at > now_ms { wait } else { None })
            }
            Due::Waiting(wait) => (None, Some(wait)),
        }
    } else {
        (None, None)
    };
    CallListView {
        id: list.id,
        source: ListSource::parse(&list.source).unwrap_or(ListSource::Contacts),
        state,
        next: list.next_position as u32,
        current: list.current_position.map(|position| position as u32),
        next_dial_at_ms,
        waiting_for,
        interval_secs: (rules.interval_ms / 1000) as u32,
        entries: entries
            .iter()
            .map(|entry| CallListEntryView {
                entity_id: entry.entity_id,
                name: entry.name.clone(),
                via: entry.via.clone(),
                number: entry.number_shown.clone(),
                state: entry_state(&entry.state),
                call_id: entry.call_id.clone(),
                duration: entry.duration.map(|seconds| seconds.clamp(0, i64::from(u32::MAX)) as u32),
                error: entry.error.clone(),
            })
            .collect(),
        created_at: list.created_at,
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The list moved on since the widget read it.
    Stale,
    NotRunning,
    /// Not yet: at this time (unix ms) when known.
    NotDue(Option<i64>),
}

/// What a command changes: the list's state and positions, the entries to write, and the entry to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub state: &'static str,
    pub next: i64,
    pub current: Option<i64>,
    pub writes: Vec<EntryWrite>,
    /// The entry to ask the provider for (already marked `calling` in `writes`).
    pub dial: Option<i64>,
}

/// Applies a manager's command to a list read at `now_ms` (entries already settled).
pub fn apply(
    list: &ListRow,
    entries: &[EntryRow],
    action: CallListAction,
    seen_next: u32,
    rules: ListRules,
    now_ms: i64,
) -> Result<Change, Refused> {
    let state = list_state(&list.state);
    let mut change = Change {
        state: state.as_str(),
        next: list.next_position,
        current: list.current_position,
        writes: Vec::new(),
        dial: None,
    };
    let open = state.is_open();
    match action {
        CallListAction::Start if state == CallListState::Ready => change.state = "running",
        CallListAction::Resume if state == CallListState::Paused => change.state = "running",
        CallListAction::Pause if state == CallListState::Running => change.state = "paused",
        CallListAction::Stop if open => change.state = "stopped",
        // Repeating a start, pause or resume (two tabs) changes nothing.
        CallListAction::Start | CallListAction::Resume if state == CallListState::Running => {}
        CallListAction::Pause if state == CallListState::Paused => {}
        CallListAction::Skip if open => {
            if i64::from(seen_next) != list.next_position {
                return Err(Refused::Stale);
            }
            let Some(entry) = entries.get(list.next_position as usize) else {
                return Err(Refused::Stale);
            };
            let mut skipped = write_of(entry);
            skipped.state = CallListEntryState::Skipped.as_str().into();
            change.writes.push(skipped);
            change.next = next_pending(entries, list.next_position + 1);
        }
        CallListAction::Dial if state == CallListState::Running => {
            if i64::from(seen_next) != list.next_position {
                return Err(Refused::Stale);
            }
            let Some(entry) = entries.get(list.next_position as usize).filter(|entry| entry.state == "pending") else {
                return Err(Refused::Stale);
            };
            match due_bounded(list, entries, rules, now_ms) {
                Due::At(at, _) if at <= now_ms => {}
                Due::At(at, _) => return Err(Refused::NotDue(Some(at))),
                Due::Waiting(_) => return Err(Refused::NotDue(None)),
            }
            let mut dialing = write_of(entry);
            dialing.state = CallListEntryState::Calling.as_str().into();
            dialing.dialed_at_ms = Some(now_ms);
            change.writes.push(dialing);
            change.current = Some(list.next_position);
            change.next = next_pending(entries, list.next_position + 1);
            change.dial = Some(list.next_position);
            return Ok(change);
        }
        CallListAction::Dial => return Err(Refused::NotRunning),
        _ if !open => return Err(Refused::NotRunning),
        _ => return Err(Refused::Stale),
    }
    if open && change.state != "stopped" && finished(change.next, entries) {
        change.state = "finished";
    }
    Ok(change)
}

/// After entries settled: a list whose last call ended is finished.
pub fn settled_state(list: &ListRow, entries: &[EntryRow]) -> Option<&'static str> {
    let state = list_state(&list.state);
    (state.is_open() && state != CallListState::Ready && finished(list.next_position, entries)).then_some("finished")
}

/// Reads the selected entities from Kommo, in the order given (ids Kommo does not return, another
/// account's included, are left out): each one's name and first number that reads as a number in the
/// account's country. A lead's number is its main contact's (else its first contact's), else its
/// company's. At most three requests: the entities, then a lead's contacts and companies.
pub async fn resolve_entries(
    kommo: &crate::kommo::KommoClient,
    account: AccountId,
    source: ListSource,
    ids: &[i64],
    country: Option<&str>,
) -> Result<Vec<NewEntry>, crate::kommo::KommoError> {
    use std::collections::HashMap;

    use crate::calls::lookup::{items, phones};

    let query =
        |ids: &mut dyn Iterator<Item = i64>| ids.map(|id| format!("filter[id][]={id}")).collect::<Vec<_>>().join("&");
    let first_number =
        |entity: &serde_json::Value| phones(entity).iter().find_map(|raw| shared::phone::normalize(raw, country));
    let name_of = |entity: &serde_json::Value| entity["name"].as_str().unwrap_or_default().trim().to_owned();
    let fetch =
        async |kind: &str, ids: Vec<i64>, with: &str| -> Result<Vec<serde_json::Value>, crate::kommo::KommoError> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let path = format!("/api/v4/{kind}?limit=250&{}{with}", query(&mut ids.into_iter()));
            Ok(kommo.get(account, &path).await?.map(|body| items(&body, kind).to_vec()).unwrap_or_default())
        };

    let entities =
        fetch(source.as_str(), ids.to_vec(), if source == ListSource::Leads { "&with=contacts" } else { "" }).await?;
    let by_id: HashMap<i64, &serde_json::Value> =
        entities.iter().filter_map(|entity| Some((entity["id"].as_i64()?, entity))).collect();
    let mut found = Vec::new();
    for id in ids {
        if let Some(entity) = by_id.get(id) {
            found.push(*entity);
        }
    }
    if source != ListSource::Leads {
        return Ok(found
            .into_iter()
            .map(|entity| NewEntry {
                entity_id: entity["id"].as_i64().unwrap_or_default(),
                name: name_of(entity),
                via: None,
                number: first_number(entity).map(|e164| {
                    let shown = shared::phone::display_for(&e164, country);
                    (e164, shown)
                }),
            })
            .collect());
    }
    // A lead's contact: its main one, else its first; else its company.
    let contact_of = |lead: &serde_json::Value| {
        let contacts = items(lead, "contacts");
        contacts.iter().find(|contact| contact["is_main"] == true).or(contacts.first()).and_then(|c| c["id"].as_i64())
    };
    let company_of = |lead: &serde_json::Value| items(lead, "companies").first().and_then(|c| c["id"].as_i64());
    let mut contact_ids: Vec<i64> = found.iter().filter_map(|lead| contact_of(lead)).collect();
    contact_ids.sort_unstable();
    contact_ids.dedup();
    let mut company_ids: Vec<i64> = found.iter().filter_map(|lead| company_of(lead)).collect();
    company_ids.sort_unstable();
    company_ids.dedup();
    let contacts = fetch("contacts", contact_ids, "").await?;
    let companies = fetch("companies", company_ids, "").await?;
    let holders: HashMap<(&str, i64), &serde_json::Value> = contacts
        .iter()
        .filter_map(|c| Some((("contacts", c["id"].as_i64()?), c)))
        .chain(companies.iter().filter_map(|c| Some((("companies", c["id"].as_i64()?), c))))
        .collect();
    Ok(found
        .into_iter()
        .map(|lead| {
            let contact = contact_of(lead).and_then(|id| holders.get(&("contacts", id)));
            let company = company_of(lead).and_then(|id| holders.get(&("companies", id)));
            let reached =
                [contact, company].into_iter().flatten().find_map(|holder| Some((*holder, first_number(holder)?)));
            let via = reached
                .as_ref()
                .map(|(holder, _)| name_of(holder))
                .or_else(|| contact.or(company).map(|holder| name_of(holder)));
            NewEntry {
                entity_id: lead["id"].as_i64().unwrap_or_default(),
                name: name_of(lead),
                via: via.filter(|name| !name.is_empty()),
                number: reached.map(|(_, e164)| (e164.clone(), shared::phone::display_for(&e164, country))),
            }
        })
        .collect())
}

/// The current time, for the handlers.
pub fn now_ms() -> i64 {
    unix_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(state: &str, next: i64, current: Option<i64>) -> ListRow {
        ListRow {
            id: 1,
            source: "contacts".into(),
            state: state.into(),
            next_position: next,
            current_position: current,
            created_at: 0,
            updated_at_ms: 1,
        }
    }

    fn entry(position: i64, state: &str) -> EntryRow {
        EntryRow {
            position,
            entity_id: 100 + position,
            name: format!("Client {position}"),
            via: None,
            number: (state != "no_number").then(|| format!("+551199999000{position}")),
            number_shown: None,
            state: state.into(),
            call_id: None,
            dialed_at_ms: None,
            ended_at_ms: None,
            duration: None,
            error: None,
            call_status: None,
            call_duration: None,
            call_updated_at: None,
            result_at_ms: None,
        }
    }

    const RULES: ListRules = ListRules { interval_ms: 10_000, wait_for_result: true };

    #[test]
    fn a_running_list_dials_its_next_entry_and_skips_those_without_a_number() {
        let entries = vec![entry(0, "pending"), entry(1, "no_number"), entry(2, "pending")];
        let change = apply(&list("running", 0, None), &entries, CallListAction::Dial, 0, RULES, 5_000).unwrap();
        assert_eq!((change.dial, change.current, change.next, change.state), (Some(0), Some(0), 2, "running"));
        assert_eq!(change.writes[0].state, "calling");
        // A second tab that saw the same `next` is refused.
        let moved = list("running", 2, Some(0));
        assert_eq!(apply(&moved, &entries, CallListAction::Dial, 0, RULES, 5_000), Err(Refused::Stale));
    }

    #[test]
    fn the_next_dial_waits_for_the_end_the_result_and_the_interval() {
        let mut entries = vec![entry(0, "calling"), entry(1, "pending")];
        entries[0].call_id = Some("c1".into());
        entries[0].dialed_at_ms = Some(1_000);
        let running = list("running", 1, Some(0));
        assert_eq!(apply(&running, &entries, CallListAction::Dial, 1, RULES, 2_000), Err(Refused::NotDue(None)));
        assert_eq!(view(&running, &entries, RULES, 2_000).waiting_for, Some(CallListWait::CallEnd));

        entries[0].call_status = Some("ended".into());
        entries[0].call_duration = Some(42);
        entries[0].call_updated_at = Some(50);
        let writes = settle(&mut entries, 51_000);
        assert_eq!((writes.len(), entries[0].state.as_str(), entries[0].duration), (1, "answered", Some(42)));
        assert_eq!(entries[0].ended_at_ms, Some(50_000));
        assert_eq!(view(&running, &entries, RULES, 51_000).waiting_for, Some(CallListWait::CallResult));

        entries[0].result_at_ms = Some(55_000);
        assert_eq!(
            apply(&running, &entries, CallListAction::Dial, 1, RULES, 60_000),
            Err(Refused::NotDue(Some(65_000)))
        );
        let shown = view(&running, &entries, RULES, 60_000);
        assert_eq!((shown.next_dial_at_ms, shown.waiting_for), (Some(65_000), Some(CallListWait::Interval)));
        assert!(apply(&running, &entries, CallListAction::Dial, 1, RULES, 65_000).is_ok());

        // Without results asked, an unanswered call waits for the interval only.
        entries[0].state = "not_answered".into();
        entries[0].result_at_ms = None;
        let no_results = ListRules { wait_for_result: false, ..RULES };
        assert!(apply(&running, &entries, CallListAction::Dial, 1, no_results, 60_000).is_ok());
    }

    #[test]
    fn a_missing_result_holds_the_list_for_two_minutes_at_most() {
        let mut entries = vec![entry(0, "answered"), entry(1, "pending")];
        entries[0].ended_at_ms = Some(10_000);
        let running = list("running", 1, Some(0));
        assert_eq!(apply(&running, &entries, CallListAction::Dial, 1, RULES, 100_000), Err(Refused::NotDue(None)));
        let after = 10_000 + RESULT_WAIT_MS + RULES.interval_ms;
        assert!(apply(&running, &entries, CallListAction::Dial, 1, RULES, after).is_ok());
    }

    #[test]
    fn pause_resume_skip_and_stop() {
        let entries = vec![entry(0, "pending"), entry(1, "pending"), entry(2, "no_number")];
        let ready = list("ready", 0, None);
        assert_eq!(apply(&ready, &entries, CallListAction::Dial, 0, RULES, 0), Err(Refused::NotRunning));
        assert_eq!(apply(&ready, &entries, CallListAction::Start, 0, RULES, 0).unwrap().state, "running");
        let paused = apply(&list("running", 0, None), &entries, CallListAction::Pause, 0, RULES, 0).unwrap();
        assert_eq!(paused.state, "paused");
        assert_eq!(
            apply(&list("paused", 0, None), &entries, CallListAction::Dial, 0, RULES, 0),
            Err(Refused::NotRunning)
        );
        assert_eq!(
            apply(&list("paused", 0, None), &entries, CallListAction::Resume, 0, RULES, 0).unwrap().state,
            "running"
        );

        let skipped = apply(&list("running", 0, None), &entries, CallListAction::Skip, 0, RULES, 0).unwrap();
        assert_eq!((skipped.next, skipped.writes[0].state.as_str()), (1, "skipped"));
        assert_eq!(apply(&list("running", 1, None), &entries, CallListAction::Skip, 0, RULES, 0), Err(Refused::Stale));
        // Skipping the last entry with a number finishes the list.
        let last = apply(&list("running", 1, None), &entries, CallListAction::Skip, 1, RULES, 0).unwrap();
        assert_eq!((last.next, last.state), (3, "finished"));

        assert_eq!(
            apply(&list("paused", 0, None), &entries, CallListAction::Stop, 0, RULES, 0).unwrap().state,
            "stopped"
        );
        assert_eq!(
            apply(&list("stopped", 0, None), &entries, CallListAction::Resume, 0, RULES, 0),
            Err(Refused::NotRunning)
        );
    }

    #[test]
    fn a_list_ends_when_its_last_call_ends_and_a_lost_dial_fails() {
        let mut entries = vec![entry(0, "calling")];
        entries[0].dialed_at_ms = Some(0);
        let running = list("running", 1, Some(0));
        assert_eq!(settled_state(&running, &entries), None);
        assert!(settle(&mut entries, 10_000).is_empty());
        let writes = settle(&mut entries, LOST_DIAL_MS + 1);
        assert_eq!(writes[0].error.as_deref(), Some(dial_errors::PROVIDER_UNREACHABLE));
        assert_eq!(settled_state(&running, &entries), Some("finished"));

        // Accepted by the provider, never reported: failed after a while, while a call in progress waits.
        let mut entries = vec![entry(0, "calling"), entry(1, "calling")];
        for entry in &mut entries {
            entry.call_id = Some(format!("c{}", entry.position));
            entry.dialed_at_ms = Some(0);
        }
        entries[1].call_status = Some("answered".into());
        assert!(settle(&mut entries, UNREPORTED_CALL_MS).is_empty());
        let writes = settle(&mut entries, UNREPORTED_CALL_MS + 1);
        assert_eq!(writes.len(), 1);
        assert_eq!((writes[0].position, writes[0].error.as_deref()), (0, Some(dial_errors::NOT_REPORTED)));
    }

    #[test]
    fn provider_errors_read_as_refused_or_unreachable() {
        assert_eq!(refusal_of(&ProviderError::CredentialsRefused).code, dial_errors::PROVIDER_REFUSED);
        assert_eq!(refusal_of(&ProviderError::Rejected { status: 404 }).code, dial_errors::PROVIDER_REFUSED);
        assert_eq!(refusal_of(&ProviderError::Unreachable("timeout".into())).code, dial_errors::PROVIDER_UNREACHABLE);
        assert_eq!(refusal_of(&ProviderError::ProviderFailed { status: 503 }).code, dial_errors::PROVIDER_UNREACHABLE);
        assert_eq!(extension_of(&[("101".into(), 7), ("102".into(), 8)], 8).as_deref(), Some("102"));
        assert_eq!(extension_of(&[("101".into(), 7)], 9), None);
    }
}
