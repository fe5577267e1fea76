//! Executing a plan: each action behind its recovery point, sent through the one Kommo client.
//!
//! For every action: `done` in the ledger → skip. A `sending` row (an earlier attempt whose outcome is
//! unknown: a timeout, a 5xx, a crash between Kommo's answer and our record) → look in Kommo for the
//! write first and record it as done when found. Otherwise record `sending`, send with
//! `request_id = "<call_id>:<key>"`, and record `done` with what Kommo answered.

use reqwest::Method;
use serde_json::{Value, json};
use shared::CallDirection;
use shared::rules::{Action, CallFacts, CallLog, EntityKind, EntityRef, Plan, Target, WriteKey};

use super::index;
use super::ledger::{Outcome, State, Via, Writes, entity_kind};
use super::lookup::{self, items};
use super::{CallsContext, SOURCE, UNSORTED_SOURCE_NAME, UNSORTED_SOURCE_UID, storage};
use crate::jobs::JobError;
use crate::kommo::KommoError;
use crate::store::AccountId;

/// Pages read at most when looking for an earlier write in a list.
const MAX_LOOK_PAGES: u32 = 4;
const PAGE_LIMIT: u32 = 250;

pub(crate) struct Executor<'a> {
    pub ctx: &'a CallsContext,
    pub account: AccountId,
    pub call: &'a CallFacts,
    /// Our line's number (`metadata.phone` of an unsorted lead).
    pub line_number: &'a str,
    /// The account's country (how to read numbers in local format).
    pub country: Option<&'a str>,
    /// The manager's call result is part of this plan's call (its status and text ride on the call).
    pub has_result: bool,
    /// The account's pipeline for new leads (an unsorted fallback goes there).
    pub pipeline_id: Option<i64>,
    pub writes: &'a mut Writes,
}

/// What the run left in Kommo, for `voip_calls`.
#[derive(Debug, Default)]
pub(crate) struct RunOutcome {
    pub call_logged: bool,
    pub entity: Option<EntityRef>,
    pub unsorted_uid: Option<String>,
    pub kommo_call_id: Option<i64>,
    /// Why the call itself did not go to Kommo (no entity for an outgoing call).
    pub skipped: Option<String>,
}

/// What a `POST /api/v4/calls` came to.
enum Logged {
    Done(Outcome),
    /// Kommo has no entity for the number (either of its two answers); nothing was written.
    NoEntity(String),
}

impl Executor<'_> {
    pub async fn run(&mut self, plan: &Plan) -> Result<RunOutcome, JobError> {
        let mut skipped = None;
        for action in &plan.actions {
            if let Some(reason) = self.execute(action).await? {
                skipped = Some(reason);
            }
        }
        let delivered = self.writes.delivered();
        Ok(RunOutcome {
            call_logged: delivered.call_logged,
            entity: delivered.entity,
            unsorted_uid: self.writes.done(WriteKey::Unsorted).and_then(|outcome| outcome.uid.clone()),
            kommo_call_id: self.writes.done(WriteKey::Call).and_then(|outcome| outcome.kommo_call_id),
            skipped: if delivered.call_logged { None } else { skipped },
        })
    }

    /// One action; `Some(reason)` when the call could not go to Kommo and was skipped.
    async fn execute(&mut self, action: &Action) -> Result<Option<String>, JobError> {
        let key = action.key();
        let retrying = match self.writes.get(key).map(|row| row.state) {
            Some(State::Done) => return Ok(None),
            Some(State::Sending) => true,
            None => false,
        };
        if let Action::LogCall { call, target: None, .. } = action {
            return self.log_call(key, call, retrying).await;
        }
        let Some(request) = self.request(action)? else {
            tracing::info!(account.id = self.account.get(), call_id = %self.call.call_id, key = key.as_str(), "nothing to write to");
            return Ok(None);
        };
        if retrying && let Some(outcome) = self.look(action, &request).await? {
            tracing::info!(account.id = self.account.get(), call_id = %self.call.call_id, key = key.as_str(), "found in Kommo");
            self.done(action, outcome).await?;
            return Ok(None);
        }
        self.writes.mark_sending(&self.ctx.store, key).await.map_err(storage)?;
        let answer = self.ctx.kommo.send(self.account, Method::POST, &request.path, Some(&request.body)).await;
        let outcome = match (action, answer) {
            // Accepting twice is refused: on a retry (or when a manager was quicker) it is done.
            (Action::AcceptUnsorted { .. }, Err(KommoError::Rejected { status: 400, detail }))
                if retrying || detail.to_ascii_lowercase().contains("accept") =>
            {
                Outcome { already_accepted: Some(true), ..Outcome::default() }
            }
            (_, Err(error)) => return Err(error.into()),
            (_, Ok(answer)) => outcome_of(action, &request, answer.unwrap_or(Value::Null), self.has_result),
        };
        self.done(action, outcome).await?;
        Ok(None)
    }

    async fn done(&mut self, action: &Action, outcome: Outcome) -> Result<(), JobError> {
        if let (Action::CreateContactAndLead { contact_name, responsible_user_id, .. }, Some(contact_id)) =
            (action, outcome.contact_id)
        {
            // The caller's next call knows the new contact at once, before the sync's next pass.
            let number = &self.call.client_number;
            let leads: Vec<i64> = outcome.lead_id.into_iter().collect();
            index::remember_created(
                &self.ctx.store,
                self.account,
                number,
                contact_id,
                contact_name,
                *responsible_user_id,
                &leads,
            )
            .await;
        }
        self.writes.mark_done(&self.ctx.store, action.key(), outcome).await.map_err(storage)?;
        if matches!(
            action,
            Action::CreateContactAndLead { .. }
                | Action::CreateLead { .. }
                | Action::CreateUnsorted { .. }
                | Action::AcceptUnsorted { .. }
        ) {
            self.ctx.lookup.invalidate(self.account, &self.call.client_number).await;
            self.ctx.caller.invalidate(self.account, &self.call.client_number);
        }
        Ok(())
    }

    /// `LogCall` without a target: `POST /api/v4/calls`, where Kommo picks the entity by the number.
    /// When Kommo has none: a call note on the entity this plan created, else (inbound) an unsorted
    /// lead carrying the call, else (outbound) the call is skipped.
    async fn log_call(&mut self, key: WriteKey, call: &CallLog, retrying: bool) -> Result<Option<String>, JobError> {
        if self.writes.get(WriteKey::Unsorted).is_some() {
            // An earlier run fell back to an unsorted lead: finish that, never post the call again.
            return self.fall_back_to_unsorted(key, call).await;
        }
        if retrying && let Some(outcome) = self.look_for_call_by_number(call).await? {
            tracing::info!(account.id = self.account.get(), call_id = %call.uniq, "call found in Kommo");
            self.writes.mark_done(&self.ctx.store, key, outcome).await.map_err(storage)?;
            return Ok(None);
        }
        self.writes.mark_sending(&self.ctx.store, key).await.map_err(storage)?;
        let body = json!([call_item(call, &request_id(&call.uniq, key))]);
        let logged = match self.ctx.kommo.send(self.account, Method::POST, "/api/v4/calls", Some(&body)).await {
            Ok(Some(answer)) => match items(&answer, "calls").first() {
                Some(logged) => Logged::Done(Outcome {
                    kommo_call_id: logged["id"].as_i64(),
                    with_link: Some(call.link.is_some()),
                    with_result: Some(self.has_result),
                    entity: logged["entity_type"]
                        .as_str()
                        .and_then(entity_kind)
                        .zip(logged["entity_id"].as_i64())
                        .map(|(kind, id)| EntityRef { kind, id }),
                    ..Outcome::default()
                }),
                None => Logged::NoEntity(
                    answer["errors"][0]["detail"].as_str().unwrap_or("Kommo logged no call").to_owned(),
                ),
            },
            // An answer without a body: whether the call was logged is unknown; the retry looks.
            Ok(None) => {
                return Err(JobError::Retry { error: "Kommo answered the call without a body".into(), after: None });
            }
            Err(KommoError::Rejected { status: 400, detail }) => Logged::NoEntity(detail),
            Err(error) => return Err(error.into()),
        };
        let reason = match logged {
            Logged::Done(outcome) => {
                self.writes.mark_done(&self.ctx.store, key, outcome).await.map_err(storage)?;
                return Ok(None);
            }
            Logged::NoEntity(reason) => reason,
        };
        tracing::info!(account.id = self.account.get(), call_id = %call.uniq, reason, "Kommo has no entity for the call");
        if let Some(entity) = self.resolve(Target::CreatedLead).or_else(|| self.resolve(Target::CreatedContact)) {
            let request = call_note(call, entity, key);
            return self.send_recorded(key, call, &request, entity).await.map(|()| None);
        }
        match call.direction {
            CallDirection::Inbound => self.fall_back_to_unsorted(key, call).await,
            CallDirection::Outbound => {
                // Nothing was written: forget the attempt, so a later run (a call result naming an
                // entity) starts clean.
                self.writes.forget(&self.ctx.store, key).await.map_err(storage)?;
                Ok(Some(format!("Kommo has no contact for the number of this outgoing call ({reason})")))
            }
        }
    }

    /// The call as an unsorted lead (key `unsorted`), then the call recorded as logged there.
    async fn fall_back_to_unsorted(&mut self, key: WriteKey, call: &CallLog) -> Result<Option<String>, JobError> {
        let unsorted =
            Action::CreateUnsorted { key: WriteKey::Unsorted, call: call.clone(), pipeline_id: self.pipeline_id };
        Box::pin(self.execute(&unsorted)).await?;
        let unsorted = self.writes.done(WriteKey::Unsorted).cloned().unwrap_or_default();
        let outcome = Outcome {
            via: Some(Via::Unsorted),
            entity: unsorted.lead_id.map(|id| EntityRef { kind: EntityKind::Leads, id }),
            with_link: unsorted.with_link,
            ..Outcome::default()
        };
        self.writes.mark_done(&self.ctx.store, key, outcome).await.map_err(storage)?;
        Ok(None)
    }

    /// Sends a call note on `entity` behind the (already `sending`) recovery point `key`.
    async fn send_recorded(
        &mut self,
        key: WriteKey,
        call: &CallLog,
        request: &Request,
        entity: EntityRef,
    ) -> Result<(), JobError> {
        let answer = self.ctx.kommo.send(self.account, Method::POST, &request.path, Some(&request.body)).await?;
        let note_id =
            answer.as_ref().and_then(|answer| items(answer, "notes").first()).and_then(|note| note["id"].as_i64());
        let outcome = Outcome {
            entity: Some(entity),
            note_id,
            with_link: Some(call.link.is_some()),
            with_result: Some(self.has_result),
            ..Outcome::default()
        };
        self.writes.mark_done(&self.ctx.store, key, outcome).await.map_err(storage)
    }

    /// The entity an action writes to, once known.
    fn resolve(&self, target: Target) -> Option<EntityRef> {
        let lead = |key: WriteKey| self.writes.done(key).and_then(|outcome| outcome.lead_id);
        let contact = |key: WriteKey| self.writes.done(key).and_then(|outcome| outcome.contact_id);
        match target {
            Target::Entity(entity) => Some(entity),
            Target::CreatedLead => [WriteKey::Accept, WriteKey::ContactAndLead, WriteKey::Lead, WriteKey::Unsorted]
                .into_iter()
                .find_map(lead)
                .map(|id| EntityRef { kind: EntityKind::Leads, id }),
            Target::CreatedContact => [WriteKey::Accept, WriteKey::ContactAndLead, WriteKey::Unsorted]
                .into_iter()
                .find_map(contact)
                .map(|id| EntityRef { kind: EntityKind::Contacts, id }),
            Target::CallEntity => self.writes.delivered().entity,
        }
    }

    fn target(&self, key: WriteKey, target: Target) -> Result<Option<EntityRef>, JobError> {
        match self.resolve(target) {
            Some(entity) => Ok(Some(entity)),
            // The call itself was skipped (no entity for an outgoing call): what goes with it is too.
            None if target == Target::CallEntity && !self.writes.delivered().call_logged => Ok(None),
            None => Err(JobError::Fail {
                error: format!("action {key} writes to {target:?}, which this call has not created"),
            }),
        }
    }

    /// The request of an action (other than `LogCall` by number); `None` when its entity does not exist.
    fn request(&self, action: &Action) -> Result<Option<Request>, JobError> {
        let call_id = &self.call.call_id;
        let request_id = request_id(call_id, action.key());
        let request = match action {
            Action::CreateContactAndLead {
                phone,
                contact_name,
                lead_name,
                responsible_user_id,
                pipeline_id,
                status_id,
                ..
            } => {
                let mut lead = json!({ "name": lead_name, "request_id": request_id });
                put(&mut lead, "responsible_user_id", *responsible_user_id);
                put(&mut lead, "pipeline_id", *pipeline_id);
                put(&mut lead, "status_id", *status_id);
                lead["_embedded"] = json!({ "contacts": [{
                    "name": contact_name,
                    "custom_fields_values": [phone_field(phone)],
                }]});
                Request { path: "/api/v4/leads/complex".into(), body: json!([lead]), entity: None }
            }
            Action::CreateLead { contact_id, lead_name, responsible_user_id, pipeline_id, status_id, .. } => {
                let mut lead = json!({ "name": lead_name, "request_id": request_id });
                put(&mut lead, "responsible_user_id", *responsible_user_id);
                put(&mut lead, "pipeline_id", *pipeline_id);
                put(&mut lead, "status_id", *status_id);
                lead["_embedded"] = json!({ "contacts": [{ "id": contact_id }] });
                Request { path: "/api/v4/leads".into(), body: json!([lead]), entity: None }
            }
            Action::CreateUnsorted { call, pipeline_id, .. } => {
                let mut metadata = json!({
                    "uniq": call.uniq,
                    "from": call.phone,
                    "phone": self.line_number,
                    "called_at": call.created_at,
                    "duration": call.duration,
                    "service_code": SOURCE,
                    "is_call_event_needed": true,
                });
                put(&mut metadata, "link", call.link.as_deref());
                put(&mut metadata, "call_responsible", call.user_id);
                let mut item = json!({
                    "source_uid": UNSORTED_SOURCE_UID,
                    "source_name": UNSORTED_SOURCE_NAME,
                    "created_at": call.created_at,
                    "request_id": request_id,
                    "metadata": metadata,
                    "_embedded": { "contacts": [{
                        "name": shared::phone::display(&call.phone),
                        "custom_fields_values": [phone_field(&call.phone)],
                    }]},
                });
                put(&mut item, "pipeline_id", *pipeline_id);
                Request { path: "/api/v4/leads/unsorted/sip".into(), body: json!([item]), entity: None }
            }
            Action::AcceptUnsorted { user_id, status_id, .. } => {
                let Some(unsorted) = self.writes.done(WriteKey::Unsorted) else {
                    return Err(JobError::Fail { error: "accept: this call created no unsorted lead".into() });
                };
                let Some(uid) = unsorted.uid.as_deref() else {
                    // Found already accepted (by a manager) when looked up: nothing left to accept.
                    return Ok(None);
                };
                let mut body = json!({});
                put(&mut body, "user_id", *user_id);
                put(&mut body, "status_id", *status_id);
                Request {
                    path: format!("/api/v4/leads/unsorted/{}/accept", crate::kommo::percent_encode(uid)),
                    body,
                    entity: None,
                }
            }
            Action::LogCall { call, target: Some(target), key } => {
                let Some(entity) = self.target(*key, *target)? else { return Ok(None) };
                call_note(call, entity, *key)
            }
            Action::LogCall { target: None, .. } => unreachable!("logged by number in log_call"),
            Action::CreateTask { key, target, text, due_at, task_type_id, responsible_user_id } => {
                let Some(entity) = self.target(*key, *target)? else { return Ok(None) };
                let mut task = json!({
                    "task_type_id": task_type_id,
                    "text": text,
                    "complete_till": due_at,
                    "entity_type": entity.kind.as_str(),
                    "entity_id": entity.id,
                    "request_id": request_id,
                });
                put(&mut task, "responsible_user_id", *responsible_user_id);
                Request { path: "/api/v4/tasks".into(), body: json!([task]), entity: Some(entity) }
            }
            Action::AddNote { key, target, text } => {
                let Some(entity) = self.target(*key, *target)? else { return Ok(None) };
                let note = json!({
                    "entity_id": entity.id,
                    "note_type": "common",
                    "params": { "text": text },
                    "request_id": request_id,
                });
                Request {
                    path: format!("/api/v4/{}/notes", entity.kind.as_str()),
                    body: json!([note]),
                    entity: Some(entity),
                }
            }
        };
        Ok(Some(request))
    }

    /// Looks in Kommo for the write of an earlier attempt; its outcome when found.
    async fn look(&self, action: &Action, request: &Request) -> Result<Option<Outcome>, JobError> {
        let kommo = &self.ctx.kommo;
        let number = &self.call.client_number;
        match action {
            Action::CreateContactAndLead { .. } => {
                // The number had no contact when this was planned: one now is ours (or a person's; either
                // way, no second one).
                let contacts = lookup::search(kommo, self.account, EntityKind::Contacts, number, self.country).await?;
                Ok(contacts.first().map(|contact| Outcome {
                    contact_id: Some(contact.id),
                    lead_id: contact.lead_ids.iter().max().copied(),
                    found: Some(true),
                    ..Outcome::default()
                }))
            }
            Action::CreateLead { contact_id, .. } => {
                // Planned because the contact had no active lead: an active one now is ours.
                let contacts = lookup::search(kommo, self.account, EntityKind::Contacts, number, self.country).await?;
                let ids = contacts.into_iter().find(|contact| contact.id == *contact_id).map(|c| c.lead_ids);
                let leads = lookup::leads(kommo, self.account, &ids.unwrap_or_default()).await?;
                let newest = leads.iter().filter(|lead| lead.is_active()).max_by_key(|lead| (lead.created_at, lead.id));
                Ok(newest.map(|lead| Outcome { lead_id: Some(lead.id), found: Some(true), ..Outcome::default() }))
            }
            Action::CreateUnsorted { call, .. } => {
                let path = "/api/v4/leads/unsorted?filter[category][]=sip&order[created_at]=desc";
                let found = self.find(path, "unsorted", |item| item["metadata"]["uniq"] == call.uniq.as_str()).await?;
                if let Some(item) = found {
                    return Ok(Some(Outcome {
                        with_link: Some(!item["metadata"]["link"].is_null()),
                        found: Some(true),
                        ..unsorted_outcome(&item)
                    }));
                }
                // Kommo lists unsorted leads only until they are accepted; an accepted one still has the
                // call's note (`is_call_event_needed`) on its lead or contact.
                let Some(note) = self.look_for_call_by_number(call).await? else { return Ok(None) };
                let id = |kind: EntityKind| note.entity.filter(|entity| entity.kind == kind).map(|entity| entity.id);
                Ok(Some(Outcome {
                    uid: None,
                    lead_id: id(EntityKind::Leads),
                    contact_id: id(EntityKind::Contacts),
                    accepted: Some(true),
                    with_link: note.with_link,
                    found: Some(true),
                    ..Outcome::default()
                }))
            }
            Action::AcceptUnsorted { .. } => Ok(None),
            Action::LogCall { call, .. } => {
                let Some(entity) = request.entity else { return Ok(None) };
                let found = self.find_call_note(&[entity.id], entity.kind, &call.uniq).await?;
                Ok(found.map(|note| {
                    let (with_link, with_result) = note_carries(&note, call, self.has_result);
                    Outcome {
                        entity: Some(entity),
                        note_id: note["id"].as_i64(),
                        with_link: Some(with_link),
                        with_result: Some(with_result),
                        found: Some(true),
                        ..Outcome::default()
                    }
                }))
            }
            Action::CreateTask { text, due_at, .. } => {
                let Some(entity) = request.entity else { return Ok(None) };
                let path = format!(
                    "/api/v4/tasks?filter[entity_type]={}&filter[entity_id][]={}",
                    entity.kind.as_str(),
                    entity.id
                );
                let found = self
                    .find(&path, "tasks", |task| task["text"] == text.as_str() && task["complete_till"] == *due_at)
                    .await?;
                Ok(found.map(|task| Outcome { task_id: task["id"].as_i64(), found: Some(true), ..Outcome::default() }))
            }
            Action::AddNote { text, .. } => {
                let Some(entity) = request.entity else { return Ok(None) };
                let path = format!(
                    "/api/v4/{}/notes?filter[note_type][]=common&filter[entity_id][]={}",
                    entity.kind.as_str(),
                    entity.id
                );
                let found = self.find(&path, "notes", |note| note["params"]["text"] == text.as_str()).await?;
                Ok(found.map(|note| Outcome { note_id: note["id"].as_i64(), found: Some(true), ..Outcome::default() }))
            }
        }
    }

    /// An earlier `POST /api/v4/calls` of this call: a call note with its `uniq` wherever Kommo attaches a
    /// call for the number: on a contact with the number or one of their leads, else on a company with
    /// the number or one of its leads (the companies are asked only when the call is not on the contacts).
    async fn look_for_call_by_number(&self, call: &CallLog) -> Result<Option<Outcome>, JobError> {
        for holders in [EntityKind::Contacts, EntityKind::Companies] {
            let found =
                lookup::search(&self.ctx.kommo, self.account, holders, &self.call.client_number, self.country).await?;
            let ids: Vec<i64> = found.iter().map(|holder| holder.id).collect();
            let lead_ids: Vec<i64> = found.iter().flat_map(|holder| holder.lead_ids.iter().copied()).collect();
            for (kind, ids) in [(EntityKind::Leads, lead_ids), (holders, ids)] {
                if let Some(note) = self.find_call_note(&ids, kind, &self.call.call_id).await? {
                    let (with_link, with_result) = note_carries(&note, call, self.has_result);
                    return Ok(Some(Outcome {
                        entity: note["entity_id"].as_i64().map(|id| EntityRef { kind, id }),
                        note_id: note["id"].as_i64(),
                        with_link: Some(with_link),
                        with_result: Some(with_result),
                        found: Some(true),
                        ..Outcome::default()
                    }));
                }
            }
        }
        Ok(None)
    }

    async fn find_call_note(&self, ids: &[i64], kind: EntityKind, uniq: &str) -> Result<Option<Value>, JobError> {
        for chunk in ids.chunks(50) {
            let filter: String = chunk.iter().map(|id| format!("&filter[entity_id][]={id}")).collect();
            let path = format!(
                "/api/v4/{}/notes?filter[note_type][]=call_in&filter[note_type][]=call_out{filter}",
                kind.as_str()
            );
            if let Some(note) = self.find(&path, "notes", |note| note["params"]["uniq"] == uniq).await? {
                return Ok(Some(note));
            }
        }
        Ok(None)
    }

    /// The first item of a (paged) list that matches.
    async fn find(&self, path: &str, name: &str, matches: impl Fn(&Value) -> bool) -> Result<Option<Value>, JobError> {
        for page in 1..=MAX_LOOK_PAGES {
            let paged = format!("{path}&page={page}&limit={PAGE_LIMIT}");
            let Some(body) = self.ctx.kommo.get(self.account, &paged).await? else { return Ok(None) };
            if let Some(found) = items(&body, name).iter().find(|item| matches(item)) {
                return Ok(Some(found.clone()));
            }
            if body["_links"]["next"].is_null() {
                break;
            }
        }
        Ok(None)
    }
}

/// A write to send: where, what, and the entity it is about (for looking it up again).
struct Request {
    path: String,
    body: Value,
    entity: Option<EntityRef>,
}

fn request_id(call_id: &str, key: WriteKey) -> String {
    format!("{call_id}:{}", key.as_str())
}

/// Sets `key` when there is a value (Kommo takes an absent field as "its default").
fn put<T: serde::Serialize>(object: &mut Value, key: &str, value: Option<T>) {
    if let Some(value) = value {
        object[key] = json!(value);
    }
}

fn phone_field(phone: &str) -> Value {
    json!({ "field_code": "PHONE", "values": [{ "value": phone, "enum_code": "WORK" }] })
}

/// One item of `POST /api/v4/calls`.
fn call_item(call: &CallLog, request_id: &str) -> Value {
    let mut item = json!({
        "direction": call.direction.as_str(),
        "duration": call.duration,
        "source": SOURCE,
        "phone": call.phone,
        "uniq": call.uniq,
        "call_status": u8::from(call.call_status),
        "created_at": call.created_at,
        "request_id": request_id,
    });
    put(&mut item, "link", call.link.as_deref());
    put(&mut item, "call_result", call.call_result.as_deref());
    put(&mut item, "responsible_user_id", call.user_id);
    put(&mut item, "created_by", call.user_id);
    item
}

/// A `call_in`/`call_out` note carrying the call, on `entity`.
fn call_note(call: &CallLog, entity: EntityRef, key: WriteKey) -> Request {
    let mut params = json!({
        "uniq": call.uniq,
        "duration": call.duration,
        "source": SOURCE,
        "phone": call.phone,
        "call_status": u8::from(call.call_status),
    });
    put(&mut params, "link", call.link.as_deref());
    put(&mut params, "call_result", call.call_result.as_deref());
    put(&mut params, "call_responsible", call.user_id);
    let note_type = match call.direction {
        CallDirection::Inbound => "call_in",
        CallDirection::Outbound => "call_out",
    };
    let mut note = json!({
        "entity_id": entity.id,
        "note_type": note_type,
        "params": params,
        "created_at": call.created_at,
        "request_id": request_id(&call.uniq, key),
    });
    put(&mut note, "created_by", call.user_id);
    put(&mut note, "responsible_user_id", call.user_id);
    Request { path: format!("/api/v4/{}/notes", entity.kind.as_str()), body: json!([note]), entity: Some(entity) }
}

/// What to keep of Kommo's answer to an action.
fn outcome_of(action: &Action, request: &Request, answer: Value, has_result: bool) -> Outcome {
    let first = |name: &str| items(&answer, name).first().cloned().unwrap_or(Value::Null);
    match action {
        Action::CreateContactAndLead { .. } => {
            // Kommo answers an array; some descriptions wrap it in `_embedded.leads`.
            let item = answer.as_array().and_then(|items| items.first()).cloned().unwrap_or_else(|| first("leads"));
            Outcome { lead_id: item["id"].as_i64(), contact_id: item["contact_id"].as_i64(), ..Outcome::default() }
        }
        Action::CreateLead { .. } => Outcome { lead_id: first("leads")["id"].as_i64(), ..Outcome::default() },
        Action::CreateUnsorted { call, .. } => {
            Outcome { with_link: Some(call.link.is_some()), ..unsorted_outcome(&first("unsorted")) }
        }
        Action::AcceptUnsorted { .. } => Outcome {
            lead_id: first("leads")["id"].as_i64(),
            contact_id: first("contacts")["id"].as_i64(),
            ..Outcome::default()
        },
        Action::LogCall { call, .. } => Outcome {
            entity: request.entity,
            note_id: first("notes")["id"].as_i64(),
            with_link: Some(call.link.is_some()),
            with_result: Some(has_result),
            ..Outcome::default()
        },
        Action::CreateTask { .. } => Outcome { task_id: first("tasks")["id"].as_i64(), ..Outcome::default() },
        Action::AddNote { .. } => Outcome { note_id: first("notes")["id"].as_i64(), ..Outcome::default() },
    }
}

fn unsorted_outcome(item: &Value) -> Outcome {
    Outcome {
        uid: item["uid"].as_str().map(str::to_owned),
        lead_id: item["_embedded"]["leads"][0]["id"].as_i64(),
        contact_id: item["_embedded"]["contacts"][0]["id"].as_i64(),
        ..Outcome::default()
    }
}

/// Whether a call note found in Kommo carries the recording link and the manager's result.
fn note_carries(note: &Value, call: &CallLog, has_result: bool) -> (bool, bool) {
    let params = &note["params"];
    let with_link = !params["link"].is_null();
    let with_result = !params["call_result"].is_null()
        || (has_result && params["call_status"].as_u64() == Some(u64::from(u8::from(call.call_status))));
    (with_link, with_result)
}
