//! Caller ID and smart forwarding for the provider (KOMMO.md §1.6, §1.10):
//! `POST /hooks/voip/{hook_id}/caller-id`, which a PBX asks before it rings a call: who is calling from
//! this number, and which extension should ring.
//!
//! The request is signed exactly like the provider's call events ([`super::hooks::verified`]: the
//! refused-requests budget of the client address (429), the body (413 past [`MAX_CALLER_ID_BODY`]), the
//! hook id (404), the Standard Webhooks signature with the account's secrets, ±300 s (401)); then the
//! account's ingest budget (429 `ingest_budget`; one question per call beside its events) and a turned-on
//! integration (409). The body is `{"number", "line"?}` and nothing else (400 naming the field). The
//! account comes only from the verified hook id, so an answer never holds another account's data.
//!
//! The answer comes from the phone index alone (no Kommo request): the contact (else company) that has
//! the number, its responsible user, and the first extension mapped to that user; else the account's
//! fallback: the extension of the extension map's fallback user, or `null` ("route as usual"). The lookup
//! runs under [`ANSWER_DEADLINE`]; past it, or while the index cannot answer (`NotReady`: first sync not
//! done, or stalled), the answer is that default with `"source": "default"`.
//!
//! **Whose extension.** Smart forwarding's usual rule: the responsible user of the open lead when the
//! entity has exactly one, else of the contact (or company); the index keeps the leads with their stage
//! and responsible, so this needs no Kommo request. [`responsible_of`] is the one place that rule lives.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use shared::rules::EntityKind;

use super::AppState;
use super::error::ApiError;
use super::hooks::{Refusal, inactive, refuse, verified};
use crate::calls::index::{self, IndexAnswer};
use crate::calls::lookup::{EntityMatch, LeadInfo};
use crate::clock::unix_secs;
use crate::store::AccountId;
use crate::throttle::ClientAddr;

/// Largest body a caller-id question may have; larger ones get 413 before any parsing.
pub const MAX_CALLER_ID_BODY: usize = 4 * 1024;

/// The whole lookup (the account's country, routing and the index) answers within this; past it the
/// provider gets the default at once, rather than a late answer that delays the ringing.
pub const ANSWER_DEADLINE: Duration = Duration::from_millis(250);

/// Longest `number` or `line` accepted.
const MAX_NUMBER_LEN: usize = 64;

/// The provider's question.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Question {
    /// The caller's number, as the provider has it.
    number: String,
    /// The line (our number) that was dialled; accepted and not used yet (one routing per account).
    #[serde(default)]
    line: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct CallerIdAnswer {
    /// Whether a contact or company of the account has the number (as far as the index knows).
    pub known: bool,
    /// The contact's or company's name.
    pub name: Option<String>,
    pub entity: Option<EntityRef>,
    pub responsible_user_id: Option<i64>,
    /// The extension to ring; `null`: route the call as usual.
    pub extension: Option<String>,
    /// `index`: the phone index answered; `default`: it could not (not synced yet, or not in time).
    pub source: Source,
}

#[derive(Debug, Serialize)]
pub struct EntityRef {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Index,
    Default,
}

pub async fn answer(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(hook_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CallerIdAnswer>, ApiError> {
    let question = match accept(&state, client, &hook_id, &headers, body).await {
        Ok(question) => question,
        Err(refusal) => {
            metrics::counter!("caller_id_refused_total", "reason" => refusal.reason).increment(1);
            return Err(refusal.error);
        }
    };
    let (account, number) = question;
    let started = std::time::Instant::now();
    let (answer, outcome) = look_up(&state, account, &number).await;
    metrics::counter!("caller_id_answers_total", "outcome" => outcome).increment(1);
    tracing::debug!(
        account.id = account.get(),
        outcome,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "caller id answered"
    );
    Ok(Json(answer))
}

/// The checks before any lookup; the verified account and the caller's number.
async fn accept(
    state: &AppState,
    client: std::net::IpAddr,
    hook_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(AccountId, String), Refusal> {
    let (hook, body) = verified(state, client, hook_id, headers, body, unix_secs()).await?;
    let account = hook.account;
    state.throttle.ingest(account).map_err(|retry_after| {
        refuse("ingest_budget", ApiError::TooManyRequests { code: "ingest_budget", retry_after })
    })?;
    if !hook.active {
        return Err(inactive());
    }
    let question: Question =
        serde_json::from_slice(&body).map_err(|error| refuse("malformed", ApiError::BadRequest(error.to_string())))?;
    check_number("number", Some(&question.number))?;
    check_number("line", question.line.as_deref())?;
    Ok((account, question.number))
}

fn check_number(field: &str, value: Option<&str>) -> Result<(), Refusal> {
    let Some(value) = value else { return Ok(()) };
    let problem = if value.trim().is_empty() {
        "must not be empty"
    } else if value.chars().count() > MAX_NUMBER_LEN {
        "is too long"
    } else if value.chars().any(shared::call::is_non_printing) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(refuse("malformed", ApiError::BadRequest(format!("field `{field}`: {problem}"))))
}

/// The answer for `number` in `account`, and its metrics outcome (`known`, `unknown`, `not_ready`,
/// `late`, `error`). The routing (extension map and fallback) and the index are read side by side, each
/// within [`ANSWER_DEADLINE`]; whatever is missing at the deadline falls back to the default.
async fn look_up(state: &AppState, account: AccountId, number: &str) -> (CallerIdAnswer, &'static str) {
    let deadline = tokio::time::Instant::now() + ANSWER_DEADLINE;
    let store = &state.store;
    let routing = tokio::time::timeout_at(deadline, Routing::read(store, account));
    let found = tokio::time::timeout_at(deadline, async {
        let country = store.account_country(account).await?;
        let e164 = shared::phone::e164_or_trimmed(number, country.as_deref());
        let answer = index::holder(store, account, &e164).await?;
        let open = match &answer {
            IndexAnswer::Known(entity) => index::open_leads(store, account, entity).await?,
            _ => Vec::new(),
        };
        Ok::<_, sqlx::Error>((answer, open))
    });
    let (routing, found) = tokio::join!(routing, found);
    let routing = match routing {
        Ok(Ok(routing)) => routing,
        Ok(Err(error)) => {
            tracing::warn!(account.id = account.get(), %error, "caller id: cannot read the extension map");
            Routing::default()
        }
        Err(_) => Routing::default(),
    };
    let default = |outcome| (routing.default_answer(), outcome);
    match found {
        Err(_) => default("late"),
        Ok(Err(error)) => {
            tracing::warn!(account.id = account.get(), %error, "caller id: cannot read the phone index");
            default("error")
        }
        Ok(Ok((IndexAnswer::NotReady, _))) => default("not_ready"),
        Ok(Ok((IndexAnswer::Unknown, _))) => {
            let answer = CallerIdAnswer { source: Source::Index, ..routing.default_answer() };
            (answer, "unknown")
        }
        Ok(Ok((IndexAnswer::Known(entity), open))) => (routing.known_answer(entity, &open), "known"),
    }
}

/// The user whose extension rings for a caller the index knows: the responsible user of the entity's
/// open lead when it has exactly one (and it has a responsible), else the entity's responsible user.
pub fn responsible_of(entity: &EntityMatch, open_leads: &[LeadInfo]) -> Option<i64> {
    match open_leads {
        [lead] => lead.responsible_user_id.or(entity.responsible_user_id),
        _ => entity.responsible_user_id,
    }
}

/// The account's extension map, in the order it was entered, and its fallback user.
#[derive(Debug, Default)]
struct Routing {
    extensions: Vec<(String, i64)>,
    fallback_user_id: Option<i64>,
}

impl Routing {
    async fn read(store: &crate::store::Store, account: AccountId) -> sqlx::Result<Routing> {
        let (settings, extensions) = tokio::try_join!(store.settings(account), store.extensions(account))?;
        Ok(Routing { extensions, fallback_user_id: settings.and_then(|settings| settings.fallback_user_id) })
    }

    /// The first extension mapped to `user`.
    fn extension_of(&self, user: i64) -> Option<String> {
        self.extensions.iter().find(|(_, mapped)| *mapped == user).map(|(extension, _)| extension.clone())
    }

    /// The fallback user's extension, if the map has one for it.
    fn fallback_extension(&self) -> Option<String> {
        self.fallback_user_id.and_then(|user| self.extension_of(user))
    }

    fn default_answer(&self) -> CallerIdAnswer {
        CallerIdAnswer {
            known: false,
            name: None,
            entity: None,
            responsible_user_id: None,
            extension: self.fallback_extension(),
            source: Source::Default,
        }
    }

    fn known_answer(&self, entity: EntityMatch, open_leads: &[LeadInfo]) -> CallerIdAnswer {
        let responsible = responsible_of(&entity, open_leads);
        let extension = responsible.and_then(|user| self.extension_of(user)).or_else(|| self.fallback_extension());
        let kind = if entity.kind == EntityKind::Companies { "companies" } else { "contacts" };
        CallerIdAnswer {
            known: true,
            name: Some(entity.name),
            entity: Some(EntityRef { kind, id: entity.id }),
            responsible_user_id: responsible,
            extension,
            source: Source::Index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(kind: EntityKind, responsible: Option<i64>, lead_ids: Vec<i64>) -> EntityMatch {
        EntityMatch {
            kind,
            id: 7,
            name: "Ana".into(),
            company_id: None,
            responsible_user_id: responsible,
            phone_count: 1,
            lead_ids,
            updated_at: 1,
        }
    }

    fn routing(fallback: Option<i64>) -> Routing {
        let extensions = vec![("101".into(), 1), ("102".into(), 2), ("103".into(), 2)];
        Routing { extensions, fallback_user_id: fallback }
    }

    fn lead(id: i64, responsible: Option<i64>) -> LeadInfo {
        LeadInfo {
            id,
            name: format!("Deal {id}"),
            price: None,
            responsible_user_id: responsible,
            pipeline_id: Some(1),
            status_id: Some(10),
            created_at: id,
        }
    }

    #[test]
    fn a_known_caller_rings_the_first_extension_of_its_responsible() {
        let answer = routing(Some(1)).known_answer(entity(EntityKind::Contacts, Some(2), vec![]), &[]);
        assert_eq!((answer.extension.as_deref(), answer.source), (Some("102"), Source::Index));
        let answer = routing(Some(1)).known_answer(entity(EntityKind::Companies, Some(2), vec![5]), &[]);
        assert_eq!(answer.entity.map(|entity| entity.kind), Some("companies"));
        assert_eq!(answer.extension.as_deref(), Some("102"));
    }

    #[test]
    fn the_one_open_leads_responsible_takes_the_call_else_the_entitys() {
        let contact = || entity(EntityKind::Contacts, Some(2), vec![5, 6]);
        let one = routing(None).known_answer(contact(), &[lead(5, Some(1))]);
        assert_eq!((one.responsible_user_id, one.extension.as_deref()), (Some(1), Some("101")));
        let two = routing(None).known_answer(contact(), &[lead(5, Some(1)), lead(6, Some(1))]);
        assert_eq!(two.responsible_user_id, Some(2), "two open leads: the contact's responsible");
        let nobody = routing(None).known_answer(contact(), &[lead(5, None)]);
        assert_eq!(nobody.responsible_user_id, Some(2), "a lead without a responsible: the contact's");
    }

    #[test]
    fn an_unmapped_responsible_or_an_unknown_caller_gets_the_fallback_or_nothing() {
        let answer = routing(Some(1)).known_answer(entity(EntityKind::Contacts, Some(9), vec![]), &[]);
        assert_eq!((answer.known, answer.extension.as_deref()), (true, Some("101")));
        assert_eq!(routing(Some(1)).default_answer().extension.as_deref(), Some("101"));
        assert_eq!(routing(Some(9)).default_answer().extension, None, "a fallback user without an extension");
        assert_eq!(routing(None).default_answer().extension, None);
        let answer = routing(None).known_answer(entity(EntityKind::Contacts, None, vec![]), &[]);
        assert_eq!((answer.responsible_user_id, answer.extension), (None, None));
    }

    #[test]
    fn the_answer_has_the_documented_shape() {
        let answer = routing(None).known_answer(entity(EntityKind::Contacts, Some(1), vec![]), &[]);
        assert_eq!(
            serde_json::to_value(answer).unwrap(),
            serde_json::json!({"known": true, "name": "Ana", "entity": {"type": "contacts", "id": 7},
                               "responsible_user_id": 1, "extension": "101", "source": "index"})
        );
        assert_eq!(
            serde_json::to_value(routing(None).default_answer()).unwrap(),
            serde_json::json!({"known": false, "name": null, "entity": null, "responsible_user_id": null,
                               "extension": null, "source": "default"})
        );
    }
}
