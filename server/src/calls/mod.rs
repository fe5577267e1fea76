//! Bringing Kommo in line with one provider call: the job the worker runs for a call.
//!
//! [`process_call`] folds the call's new provider events into `voip_calls`, reads the account's rules,
//! the manager's call result and what was already written, looks the client's number up in Kommo
//! ([`lookup`]), asks the rules (`shared::rules::plan`) for the writes, and executes the ones not done
//! yet ([`execute`]), each behind a recovery point in `kommo_writes`: a write is recorded as `sending`
//! before its request leaves and `done` once Kommo answered, and a `sending` found later (an ambiguous
//! failure, or a crash in between) makes the executor look in Kommo before posting again. So a call is
//! written to Kommo once, however often its job runs.

pub mod caller;
mod execute;
mod fold;
pub mod index;
pub(crate) mod ledger;
pub mod lookup;
pub mod texts;

use std::sync::Arc;
use std::time::Duration;

use shared::rules::{self, CallFacts, CallResult, PlanInput};
use shared::{CallHandling, CallStatus, ExtensionEntry, ExtensionMap};

use crate::jobs::JobError;
use crate::kommo::{KommoClient, KommoError};
use crate::store::{AccountId, Store};

pub use caller::CallerId;
pub use lookup::Lookup;

/// `source` of our calls (`POST /api/v4/calls`) and `service_code` of our unsorted leads.
pub const SOURCE: &str = "kommo_voip";
/// `source_uid` of the unsorted leads we create.
pub const UNSORTED_SOURCE_UID: &str = "kommo-voip";
/// `source_name` of the unsorted leads we create.
pub const UNSORTED_SOURCE_NAME: &str = "Kommo VoIP";

/// What the call processor needs: the store, the one Kommo client and the contact lookup cache.
/// Cheap to clone (every part is a handle).
#[derive(Clone)]
pub struct CallsContext {
    store: Store,
    kommo: KommoClient,
    lookup: Lookup,
    caller: CallerId,
    langs: texts::UserLangs,
    /// Places for Kommo call notifications being sent (each waits for the account's Kommo budget).
    notifications: Arc<tokio::sync::Semaphore>,
    /// Who is in which Kommo user group (shared with the push hub).
    groups: crate::push::UserGroups,
    /// Where Kommo reaches this server (the destination of its webhooks); empty: none subscribed.
    public_base_url: Arc<str>,
}

/// Kommo call notifications being sent at once, at most, by this process.
const NOTIFICATIONS_IN_FLIGHT: usize = 64;

impl CallsContext {
    pub fn new(store: Store, kommo: KommoClient) -> CallsContext {
        CallsContext::with_lookup_ttl(store, kommo, lookup::CACHE_TTL)
    }

    /// [`CallsContext::new`] with a lookup cache whose entries live `ttl` (tests).
    pub fn with_lookup_ttl(store: Store, kommo: KommoClient, ttl: Duration) -> CallsContext {
        CallsContext {
            store,
            lookup: Lookup::with_ttl(ttl),
            caller: CallerId::new(),
            langs: texts::UserLangs::default(),
            notifications: Arc::new(tokio::sync::Semaphore::new(NOTIFICATIONS_IN_FLIGHT)),
            groups: crate::push::UserGroups::new(kommo.clone()),
            kommo,
            public_base_url: Arc::from(""),
        }
    }

    /// This context with Kommo's webhooks for the phone index subscribed to at `public_base_url`.
    pub fn with_public_base_url(self, public_base_url: &str) -> CallsContext {
        CallsContext { public_base_url: Arc::from(public_base_url), ..self }
    }

    /// Who is in which Kommo user group, per account (the push hub uses the same).
    pub fn groups(&self) -> &crate::push::UserGroups {
        &self.groups
    }

    pub fn lookup(&self) -> &Lookup {
        &self.lookup
    }

    pub fn caller_id(&self) -> &CallerId {
        &self.caller
    }

    /// Kommo's own call notification for a ringing call from `number` (`POST /api/v2/events`, Kommo
    /// answers 202), to the call's audience: the extension's user, else whom the settings choose for
    /// unmapped calls (everyone: `users` left out). Sent in the background; past
    /// [`NOTIFICATIONS_IN_FLIGHT`] or on a Kommo failure it is logged and dropped (a notification is
    /// worth nothing late).
    pub fn notify_in_kommo(&self, account: AccountId, number: &str, extension: Option<&str>) {
        let Ok(permit) = Arc::clone(&self.notifications).try_acquire_owned() else {
            tracing::warn!(account.id = account.get(), "Kommo call notification skipped: too many being sent");
            return;
        };
        let (ctx, number, extension) = (self.clone(), number.to_owned(), extension.map(str::to_owned));
        tokio::spawn(async move {
            let _permit = permit;
            let audience = crate::push::audience(&ctx.store, &ctx.groups, account, extension.as_deref()).await;
            let mut event = serde_json::json!({"type": "phone_call", "phone_number": number});
            match audience.kommo_users() {
                Some(users) if users.is_empty() => return,
                Some(users) => event["users"] = serde_json::json!(users),
                None => {}
            }
            let body = serde_json::json!({"add": [event]});
            let sent = ctx.kommo.send(account, reqwest::Method::POST, "/api/v2/events", Some(&body)).await;
            if let Err(error) = sent {
                tracing::warn!(account.id = account.get(), %error, "Kommo call notification failed");
            }
        });
    }

    /// One step of the account's phone sync (see [`index`]).
    pub async fn sync_phones(&self, account: AccountId) -> Result<(), JobError> {
        let country = self.store.account_country(account).await.map_err(storage)?;
        let base = (!self.public_base_url.is_empty()).then_some(&*self.public_base_url);
        index::sync_step(&self.store, &self.kommo, account, country.as_deref(), base).await
    }

    /// Applies a stored Kommo webhook body to the account's phone index (see [`index::apply_event`]).
    pub async fn apply_kommo_event(&self, account: AccountId, id: &str) -> Result<(), JobError> {
        let Ok(id) = id.parse::<i64>() else {
            return Err(JobError::Fail { error: format!("not a Kommo event id: {id:?}") });
        };
        let country = self.store.account_country(account).await.map_err(storage)?;
        index::apply_event(&self.store, &self.kommo, account, id, country.as_deref()).await
    }

    /// Removes the account's Kommo webhook subscription (the integration was disabled); best effort.
    pub async fn unsubscribe_kommo_hooks(&self, account: AccountId) {
        index::unsubscribe(&self.store, &self.kommo, account, &self.public_base_url).await;
    }

    /// `number` (as the provider sent it) as people of the account write it (see [`CallerId::shown`]).
    pub async fn number_shown(&self, account: AccountId, number: &str) -> String {
        self.caller.shown(&self.store, account, number).await
    }

    /// Who is calling from `number` on `call_id` (see [`CallerId::describe`]); `early` hears the name
    /// before the rest.
    pub async fn describe_caller(
        &self,
        account: AccountId,
        number: &str,
        call_id: &str,
        early: impl Fn(shared::api::Caller) + Sync,
    ) -> shared::api::Caller {
        self.caller.describe(&self.store, &self.kommo, &self.lookup, account, number, call_id, early).await
    }
}

/// Brings Kommo in line with provider call `call_id` of `account`.
///
/// - [`JobError::Retry`]: Kommo or the database failed in a way worth retrying (5xx, timeout, a
///   connection failure; a 429 with `after` = its `Retry-After`). Recovery points make the retry safe.
/// - [`JobError::Park`]: the account cannot be served now (integration turned off or never set up, Kommo
///   answered 402/403, the grant needs re-authorization, the account is not connected). No write was
///   attempted beyond the one that told us.
/// - [`JobError::Fail`]: retrying cannot help: a stored event that does not parse, stored settings or
///   call result that do not parse, or a request Kommo refused as invalid (4xx).
pub async fn process_call(ctx: &CallsContext, account: AccountId, call_id: &str) -> Result<(), JobError> {
    let result = run(ctx, account, call_id).await;
    // The worker logs the failure and decides the job's fate; when the job is parked as a dead letter,
    // the queue marks the call's delivery `failed` (`jobs::Queue::fail`). Here only the error is kept.
    if let Err(error) = &result
        && let Err(db) = ledger::record_error(&ctx.store, account, call_id, &error.to_string()).await
    {
        tracing::error!(account.id = account.get(), call_id, error = %db, "could not record the delivery error");
    }
    result
}

async fn run(ctx: &CallsContext, account: AccountId, call_id: &str) -> Result<(), JobError> {
    let country = ctx.store.account_country(account).await.map_err(storage)?;
    let Some(folded) = fold::fold(&ctx.store, account, call_id, country.as_deref()).await? else {
        tracing::debug!(account.id = account.get(), call_id, "no such call");
        return Ok(());
    };
    let call = &folded.facts;
    let settings = load_settings(&ctx.store, account).await?;
    if !is_terminal(call.status) {
        // Nothing goes to Kommo while the call is going on.
        return Ok(());
    }
    let result = ctx.store.call_result(account, call_id).await.map_err(storage)?;
    let result: Option<CallResult> = match result {
        Some(text) => Some(serde_json::from_str(&text).map_err(|error| JobError::Fail {
            error: format!("the stored call result of call {call_id} does not parse: {error}"),
        })?),
        None => None,
    };
    let mut writes = ledger::Writes::load(&ctx.store, account, call_id).await.map_err(storage)?;
    let delivered = writes.delivered();

    let needs_leads = rules::needs_active_leads(call, &settings.rules);
    let knowledge = match writes.knowledge() {
        // The plan of a call that already wrote something stays on what Kommo knew then: planning
        // twice on different knowledge could choose another way for the same call.
        Some(mut knowledge) => {
            if needs_leads
                && let Some(holder) = knowledge.entity()
                && let Some(facts) = knowledge.facts_mut()
                && facts.active_leads.is_none()
            {
                let leads = ctx
                    .lookup
                    .active_leads(&ctx.kommo, account, &call.client_number, country.as_deref(), holder)
                    .await?;
                facts.active_leads = Some(leads);
            }
            knowledge
        }
        None => {
            let indexed = match index::holder(&ctx.store, account, &call.client_number).await.map_err(storage)? {
                index::IndexAnswer::NotReady => None,
                index::IndexAnswer::Unknown => Some(lookup::Indexed { holder: None, open_leads: None }),
                index::IndexAnswer::Known(holder) => {
                    let open = match needs_leads {
                        true => Some(index::open_leads(&ctx.store, account, &holder).await.map_err(storage)?),
                        false => None,
                    };
                    Some(lookup::Indexed { holder: Some(holder), open_leads: open })
                }
            };
            let number = &call.client_number;
            ctx.lookup.knowledge(&ctx.kommo, account, number, country.as_deref(), needs_leads, indexed).await?
        }
    };
    writes.save_knowledge(&ctx.store, &knowledge).await.map_err(storage)?;

    let user_id = settings.extensions.user_for(call.extension.as_deref());
    let plan_in = |texts| {
        rules::plan(PlanInput {
            call,
            rules: &settings.rules,
            extensions: &settings.extensions,
            kommo: &knowledge,
            result: result.as_ref(),
            delivered,
            texts,
        })
    };
    let mut plan = plan_in(texts::texts(None));
    // Words (a lead's name, a note, a task) are written in the language of the user the call is for; only
    // a plan that writes some asks Kommo for it (once per user and half hour).
    if plan.writes_words()
        && let Some(user) = user_id
        && let Some(lang) = ctx.langs.of(&ctx.kommo, account, user).await
    {
        plan = plan_in(texts::texts(Some(&lang)));
    }
    let mut executor = execute::Executor {
        ctx,
        account,
        call,
        line_number: &folded.line_number,
        country: country.as_deref(),
        has_result: result.is_some(),
        pipeline_id: settings.rules.placement.pipeline_id,
        writes: &mut writes,
    };
    let outcome = executor.run(&plan).await?;

    let status = if outcome.call_logged {
        Delivery::Delivered
    } else if let Some(reason) = outcome.skipped.as_deref().or(plan.skipped) {
        Delivery::Skipped(reason.to_owned())
    } else {
        Delivery::Unchanged
    };
    ledger::record_delivery(
        &ctx.store,
        account,
        call_id,
        ledger::DeliveryRecord {
            status,
            entity: outcome.entity,
            unsorted_uid: outcome.unsorted_uid.as_deref(),
            kommo_call_id: outcome.kommo_call_id,
            responsible_user_id: user_id,
            call_status: result.as_ref().map(|result| u8::from(result.call_status)),
        },
    )
    .await
    .map_err(storage)?;
    Ok(())
}

/// What becomes of `voip_calls.delivery_status` after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    Delivered,
    Skipped(String),
    Unchanged,
}

/// The account's call-handling settings.
struct Settings {
    rules: CallHandling,
    extensions: ExtensionMap,
}

async fn load_settings(store: &Store, account: AccountId) -> Result<Settings, JobError> {
    let row = store.settings(account).await.map_err(storage)?;
    let Some(row) = row.filter(|row| row.active) else {
        return Err(JobError::Park { error: "the integration is turned off for this account".into() });
    };
    let rules = if row.config.trim() == "{}" {
        CallHandling::default()
    } else {
        serde_json::from_str(&row.config).map_err(|error| JobError::Fail {
            error: format!("the account's stored call-handling settings do not parse: {error}"),
        })?
    };
    let entries = store
        .extensions(account)
        .await
        .map_err(storage)?
        .into_iter()
        .map(|(extension, user_id)| ExtensionEntry { extension, user_id })
        .collect();
    Ok(Settings { rules, extensions: ExtensionMap { entries, fallback_user_id: row.fallback_user_id } })
}

/// Statuses after which the call is over (the only ones that write to Kommo).
/// Whether a provider event can change what goes to Kommo: the call ended (or was missed, busy, failed),
/// or its recording is ready. Only such an event queues the call's job; the job of a call's end folds
/// every earlier event too (nothing goes to Kommo while the call is going on).
pub fn ends_call(event: &shared::FromWebhook) -> bool {
    use shared::CallEventType::{Ended, Missed, RecordingReady};
    is_terminal(event.status) || matches!(event.event_type, Some(Ended | Missed | RecordingReady))
}

pub fn is_terminal(status: CallStatus) -> bool {
    matches!(status, CallStatus::Ended | CallStatus::Missed | CallStatus::Busy | CallStatus::Failed)
}

impl From<KommoError> for JobError {
    fn from(error: KommoError) -> JobError {
        let text = error.to_string();
        match error {
            KommoError::Transient(_) => JobError::Retry { error: text, after: None },
            KommoError::RateLimited(after) => JobError::Retry { error: text, after: Some(after) },
            KommoError::Suspended(_) | KommoError::NeedsReauth | KommoError::NotConnected => {
                JobError::Park { error: text }
            }
            KommoError::Rejected { .. } => JobError::Fail { error: text },
        }
    }
}

fn storage(error: sqlx::Error) -> JobError {
    tracing::error!(%error, "database error while processing a call");
    JobError::Retry { error: "storage unavailable".into(), after: None }
}

/// The facts of a folded call and the number our side of it used.
#[derive(Debug, Clone)]
pub(crate) struct FoldedCall {
    pub facts: CallFacts,
    /// Our line: the called number on inbound calls, the calling one on outbound calls.
    pub line_number: String,
}
