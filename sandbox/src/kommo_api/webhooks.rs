//! Kommo's own webhooks (KOMMO.md §2.9b): the subscriptions API `/api/v4/webhooks` and the deliveries.
//!
//! - `POST /api/v4/webhooks {"destination", "settings": [...], "sort"?}` subscribes (the same destination again
//!   replaces its settings, keeping its id) and answers the webhook `{id, destination, created_at, updated_at,
//!   account_id, created_by, sort, disabled, settings}`; `GET /api/v4/webhooks?filter[destination]=` lists
//!   `{_total_items, _links, _embedded: {webhooks}}` (none: 204); `DELETE /api/v4/webhooks {"destination"}` is
//!   204 (404 when nothing is subscribed there). Admin tokens only (else 403); an account whose plan lacks
//!   webhooks (`POST /sandbox/kommo/accounts/{id}/plan {"webhooks": false}`) answers 402 first, and gets no
//!   deliveries.
//! - What changes a contact, company or lead (API writes, seeds, hand edits) is noted in the account's CRM
//!   ([`Change`]); after the request `take` renders, for each subscription whose `settings` name the event
//!   (`add_contact`, `update_contact`, `delete_contact`, `responsible_contact`, the same for `company` and
//!   `lead`, and `status_lead`), one `application/x-www-form-urlencoded` body per at most [`PER_DELIVERY`]
//!   entities in the classic amoCRM shape: `account[subdomain]`, `account[id]`, `account[_links][self]`, then
//!   `contacts[{add|update|delete|responsible}][i][...]` for contacts *and companies* (`[type]` is `contact`
//!   or `company`, as classic amoCRM sends them) and `leads[{add|update|delete|status|responsible}][i][...]`.
//!   UNCONFIRMED for Kommo: whether companies may come as `companies[...]` instead; a receiver should read both.
//! - [`Outbox`] sends them in the background, in order, one at a time (a bounded queue of [`QUEUE`]; a full
//!   queue drops and records the delivery), [`TIMEOUT`] each, no retries, only to this machine or the
//!   server's origin (as the provider stand-in); `GET /sandbox/kommo/webhook-deliveries` lists each with its
//!   outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::api::{Outcome, Refusal, Reply, Request};
use super::check::{Checker, INVALID_TYPE, NOT_BLANK, NOT_SUPPORTED_CHOICE, Report};
use super::crm::{Crm, EntityType, Field};
use super::ledger::{Account, Desk, Ledger};

/// The event names Kommo's `settings` take; the stand-in sends the contact, company and lead ones it can
/// cause ([`Action`]) and accepts the others without ever sending them.
pub const SETTINGS: &[&str] = &[
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "responsible_lead",
    "note_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "responsible_contact",
    "note_contact",
    "add_company",
    "update_company",
    "delete_company",
    "restore_company",
    "responsible_company",
    "note_company",
    "add_customer",
    "update_customer",
    "delete_customer",
    "responsible_customer",
    "note_customer",
    "add_task",
    "update_task",
    "delete_task",
    "responsible_task",
    "add_unsorted",
    "delete_unsorted",
    "add_talk",
    "update_talk",
    "add_message",
];

/// Kommo's limit of webhooks per account (KOMMO.md §2.1).
pub const MAX_WEBHOOKS: usize = 100;
/// Entities per delivery at most; a bulk change is sent in several.
pub const PER_DELIVERY: usize = 100;
/// Deliveries waiting to be sent at most.
pub const QUEUE: usize = 1024;
/// How long a destination has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Deliveries kept for `GET /sandbox/kommo/webhook-deliveries` (the oldest go first).
const KEPT: usize = 20_000;
/// `User-Agent` of the deliveries.
pub const USER_AGENT: &str = "amoCRM-Webhooks/3.0";

/// A subscription.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub id: u64,
    pub destination: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub account_id: u64,
    pub created_by: u64,
    pub sort: i64,
    pub disabled: bool,
    pub settings: Vec<String>,
}

/// What happened to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Update,
    Delete,
    /// The responsible user changed (`old`: the previous one).
    Responsible,
    /// A lead moved to another stage (`old`: the previous `status_id`).
    Status,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Responsible => "responsible",
            Action::Status => "status",
        }
    }
}

/// One change of a contact, company or lead, waiting for `take`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub entity_type: EntityType,
    pub action: Action,
    pub id: u64,
    pub old: Option<u64>,
}

impl Change {
    /// The `settings` name of the event: `update_contact`, `status_lead`, ...
    pub fn setting(&self) -> String {
        let entity = match self.entity_type {
            EntityType::Leads => "lead",
            EntityType::Contacts => "contact",
            EntityType::Companies => "company",
            EntityType::Customers => "customer",
        };
        format!("{}_{entity}", self.action.as_str())
    }
}

/// A rendered delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub account_id: u64,
    pub destination: String,
    pub events: Vec<String>,
    pub body: String,
}

// ------------------------------------------------------------------------------------------------- API

fn admitted(desk: &Desk<'_>, request: &Request) -> Result<(), Refusal> {
    if desk.crm.webhooks_off {
        let detail = "The account's plan does not include webhooks through the API (Advanced or Enterprise)";
        return Err(Refusal::Problem(StatusCode::PAYMENT_REQUIRED, detail.into()));
    }
    let admin = desk.account.users.iter().any(|user| user.id == request.bearer.user_id && user.is_admin);
    if !admin {
        return Err(Refusal::Problem(StatusCode::FORBIDDEN, "Only an administrator may manage webhooks".into()));
    }
    Ok(())
}

fn webhook_json(webhook: &Webhook) -> Value {
    serde_json::to_value(webhook).unwrap_or_default()
}

fn destination(checker: &mut Checker<'_>) -> Option<String> {
    let destination = checker.string("destination", true)?;
    let parsed = reqwest::Url::parse(destination.trim());
    if parsed.is_ok_and(|url| ["http", "https"].contains(&url.scheme()) && url.host_str().is_some()) {
        Some(destination.trim().to_owned())
    } else {
        checker.refuse(INVALID_TYPE, "destination", "The destination must be an http(s) URL.".into());
        None
    }
}

fn verdict(checker: Checker<'_>) -> Result<(), Refusal> {
    let mut report = Report::default();
    report.add("0", checker.into_errors());
    if report.is_empty() { Ok(()) } else { Err(Refusal::Validation(report.items)) }
}

/// `POST /api/v4/webhooks`.
pub(super) fn subscribe(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    admitted(desk, request)?;
    let mut checker = Checker::new(&request.body);
    let destination = destination(&mut checker);
    let mut settings = Vec::new();
    if let Some(names) = checker.array("settings", true) {
        if names.is_empty() {
            checker.refuse(NOT_BLANK, "settings", "Name at least one event.".into());
        }
        for (index, name) in names.iter().enumerate() {
            match name.as_str() {
                Some(name) if SETTINGS.contains(&name) => {
                    if !settings.iter().any(|known| known == name) {
                        settings.push(name.to_owned());
                    }
                }
                _ => {
                    checker.refuse(NOT_SUPPORTED_CHOICE, &format!("settings.{index}"), format!("Unknown event {name}."))
                }
            }
        }
    }
    let sort = checker.int("sort", false);
    let crm = &mut *desk.crm;
    if let Some(destination) = &destination
        && !crm.webhooks.iter().any(|webhook| &webhook.destination == destination)
        && crm.webhooks.len() >= MAX_WEBHOOKS
    {
        checker.refuse(super::check::COUNT_EXCEEDED, "destination", format!("At most {MAX_WEBHOOKS} webhooks."));
    }
    verdict(checker)?;
    let destination = destination.unwrap_or_default();
    let webhook = match crm.webhooks.iter_mut().find(|webhook| webhook.destination == destination) {
        Some(webhook) => {
            webhook.settings = settings;
            webhook.updated_at = request.now;
            if let Some(sort) = sort {
                webhook.sort = sort;
            }
            webhook.clone()
        }
        None => {
            let webhook = Webhook {
                id: desk.ids.webhook(),
                destination,
                created_at: request.now,
                updated_at: request.now,
                account_id: desk.account.id,
                created_by: request.bearer.user_id,
                sort: sort.unwrap_or(1),
                disabled: false,
                settings,
            };
            crm.webhooks.push(webhook.clone());
            webhook
        }
    };
    Ok(Reply::Hal(webhook_json(&webhook)))
}

/// `GET /api/v4/webhooks?filter[destination]=`.
pub(super) fn list(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    admitted(desk, request)?;
    let wanted = request.param("filter[destination]").map(str::trim);
    let webhooks: Vec<Value> = desk
        .crm
        .webhooks
        .iter()
        .filter(|webhook| wanted.is_none_or(|wanted| webhook.destination == wanted))
        .map(webhook_json)
        .collect();
    if webhooks.is_empty() {
        return Ok(Reply::NoContent);
    }
    let href = format!("{}{}", request.api_base, request.path);
    Ok(Reply::Hal(json!({
        "_total_items": webhooks.len(),
        "_links": { "self": { "href": href } },
        "_embedded": { "webhooks": webhooks },
    })))
}

/// `DELETE /api/v4/webhooks {"destination"}`.
pub(super) fn unsubscribe(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    admitted(desk, request)?;
    let mut checker = Checker::new(&request.body);
    let destination = checker.string("destination", true);
    verdict(checker)?;
    let destination = destination.unwrap_or_default();
    let before = desk.crm.webhooks.len();
    desk.crm.webhooks.retain(|webhook| webhook.destination != destination.trim());
    if desk.crm.webhooks.len() == before {
        return Err(Refusal::not_found(format!("No webhook is subscribed at {destination}")));
    }
    Ok(Reply::NoContent)
}

// ------------------------------------------------------------------------------------------- rendering

/// The deliveries of the account's pending changes (which are cleared), for its subscriptions.
pub(crate) fn take(ledger: &mut Ledger, account_id: u64) -> Vec<Delivery> {
    let Some(desk) = ledger.desk(account_id) else { return Vec::new() };
    let changes = std::mem::take(&mut desk.crm.changes);
    if changes.is_empty() || desk.crm.webhooks_off {
        return Vec::new();
    }
    let crm = &*desk.crm;
    let mut deliveries = Vec::new();
    for webhook in crm.webhooks.iter().filter(|webhook| !webhook.disabled) {
        let wanted: Vec<&Change> =
            changes.iter().filter(|change| webhook.settings.contains(&change.setting())).collect();
        for chunk in wanted.chunks(PER_DELIVERY) {
            let mut events: Vec<String> = chunk.iter().map(|change| change.setting()).collect();
            events.dedup();
            deliveries.push(Delivery {
                account_id,
                destination: webhook.destination.clone(),
                events,
                body: render(desk.account, crm, chunk),
            });
        }
    }
    deliveries
}

/// The pairs of one entity of a delivery: each key is `{prefix}{key}` (`contacts[update][0]` + `[id]`).
struct Pairs<'a, 'f> {
    form: &'a mut form_urlencoded::Serializer<'f, String>,
    prefix: String,
}

impl Pairs<'_, '_> {
    fn put(&mut self, key: &str, value: impl ToString) {
        self.form.append_pair(&format!("{}{key}", self.prefix), &value.to_string());
    }

    /// The fields every entity carries, classic amoCRM names and v4 ones.
    fn common(&mut self, account_id: u64, responsible: u64, created_by: u64, created_at: i64, updated_at: i64) {
        self.put("[responsible_user_id]", responsible);
        self.put("[created_user_id]", created_by);
        self.put("[modified_user_id]", created_by);
        self.put("[date_create]", created_at);
        self.put("[created_at]", created_at);
        self.put("[last_modified]", updated_at);
        self.put("[updated_at]", updated_at);
        self.put("[account_id]", account_id);
    }

    /// `[custom_fields][i][id|name|code]` and `[values][j][value|enum]` (`enum` is the enum code).
    fn fields(&mut self, fields: &[Field]) {
        for (index, field) in fields.iter().enumerate() {
            let name = if field.field_code == "PHONE" { "Phone" } else { "Email" };
            self.put(&format!("[custom_fields][{index}][id]"), field.field_id);
            self.put(&format!("[custom_fields][{index}][name]"), name);
            self.put(&format!("[custom_fields][{index}][code]"), field.field_code);
            for (position, value) in field.values.iter().enumerate() {
                self.put(&format!("[custom_fields][{index}][values][{position}][value]"), &value.value);
                self.put(&format!("[custom_fields][{index}][values][{position}][enum]"), &value.enum_code);
            }
        }
    }
}

/// One classic amoCRM webhook body.
fn render(account: &Account, crm: &Crm, changes: &[&Change]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("account[subdomain]", &account.subdomain)
        .append_pair("account[id]", &account.id.to_string())
        .append_pair("account[_links][self]", &format!("https://{}.kommo.com", account.subdomain));
    let mut counters: HashMap<(&str, &str), usize> = HashMap::new();
    for change in changes {
        let top = if change.entity_type == EntityType::Leads { "leads" } else { "contacts" };
        let action = change.action.as_str();
        let counter = counters.entry((top, action)).or_default();
        let mut pairs = Pairs { form: &mut form, prefix: format!("{top}[{action}][{counter}]") };
        *counter += 1;
        pairs.put("[id]", change.id);
        let gone = change.action == Action::Delete;
        match change.entity_type {
            EntityType::Contacts => {
                pairs.put("[type]", "contact");
                if let (Some(contact), false) = (crm.contacts.get(&change.id), gone) {
                    pairs.put("[name]", &contact.name);
                    let (responsible, by) = (contact.responsible_user_id, contact.created_by);
                    pairs.common(account.id, responsible, by, contact.created_at, contact.updated_at);
                    if let Some(company) = contact.companies.first() {
                        pairs.put("[linked_company_id]", company);
                    }
                    pairs.fields(&contact.fields);
                }
            }
            EntityType::Companies => {
                pairs.put("[type]", "company");
                if let (Some(company), false) = (crm.companies.get(&change.id), gone) {
                    pairs.put("[name]", &company.name);
                    let (responsible, by) = (company.responsible_user_id, company.created_by);
                    pairs.common(account.id, responsible, by, company.created_at, company.updated_at);
                    pairs.fields(&company.fields);
                }
            }
            EntityType::Leads => {
                if let (Some(lead), false) = (crm.leads.get(&change.id), gone) {
                    pairs.put("[name]", &lead.name);
                    pairs.put("[status_id]", lead.status_id);
                    pairs.put("[pipeline_id]", lead.pipeline_id);
                    pairs.put("[price]", lead.price);
                    let (responsible, by) = (lead.responsible_user_id, lead.created_by);
                    pairs.common(account.id, responsible, by, lead.created_at, lead.updated_at);
                    if change.action == Action::Status {
                        pairs.put("[old_pipeline_id]", lead.pipeline_id);
                    }
                }
            }
            EntityType::Customers => {}
        }
        match (change.action, change.old) {
            (Action::Status, Some(old)) => pairs.put("[old_status_id]", old),
            (Action::Responsible, Some(old)) => pairs.put("[old_responsible_user_id]", old),
            _ => {}
        }
    }
    form.finish()
}

// ------------------------------------------------------------------------------------------------ sending

/// A delivery as `GET /sandbox/kommo/webhook-deliveries` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: u64,
    pub account_id: u64,
    pub destination: String,
    /// The events it carries, in order, each once.
    pub events: Vec<String>,
    /// The form body as sent.
    pub body: String,
    /// The body's pairs, keys as sent (`contacts[update][0][id]`).
    pub form: Map<String, Value>,
    /// `queued`, `answered` (any HTTP status), `failed` (no answer in time, or no connection), `dropped` (the
    /// queue was full) or `refused` (a destination the sandbox does not post to).
    pub state: &'static str,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub elapsed_ms: Option<u64>,
    pub queued_at: i64,
}

type Log = Arc<Mutex<Vec<DeliveryRecord>>>;

fn update(log: &Log, id: u64, apply: impl FnOnce(&mut DeliveryRecord)) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(record) = log.iter_mut().rev().find(|record| record.id == id) {
        apply(record);
    }
}

/// The background sender of deliveries.
pub struct Outbox {
    http: reqwest::Client,
    /// The server's origin: a destination there is posted to even when it is not on this machine.
    server_origin: String,
    queue: Mutex<Option<mpsc::Sender<(u64, Delivery)>>>,
    log: Log,
    next_id: std::sync::atomic::AtomicU64,
}

impl Outbox {
    pub fn new(server_origin: String) -> Outbox {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .expect("an HTTP client without TLS always builds");
        Outbox {
            http,
            server_origin,
            queue: Mutex::default(),
            log: Log::default(),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Queues the deliveries; never waits.
    pub fn send(&self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let form = form_urlencoded::parse(delivery.body.as_bytes())
                .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
                .collect();
            let record = DeliveryRecord {
                id,
                account_id: delivery.account_id,
                destination: delivery.destination.clone(),
                events: delivery.events.clone(),
                body: delivery.body.clone(),
                form,
                state: "queued",
                status: None,
                error: None,
                elapsed_ms: None,
                queued_at: super::unix_now(),
            };
            {
                let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
                if log.len() >= KEPT {
                    log.drain(..KEPT / 10);
                }
                log.push(record);
            }
            let allowed = reqwest::Url::parse(&delivery.destination)
                .is_ok_and(|url| crate::provider::allowed_target(&url, &self.server_origin));
            if !allowed {
                update(&self.log, id, |record| {
                    record.state = "refused";
                    record.error = Some("the sandbox posts only over http to this machine or the server".into());
                });
                continue;
            }
            if let Err(error) = self.enqueue(id, delivery) {
                update(&self.log, id, |record| {
                    record.state = "dropped";
                    record.error = Some(error);
                });
            }
        }
    }

    fn enqueue(&self, id: u64, delivery: Delivery) -> Result<(), String> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut item = (id, delivery);
        for _ in 0..2 {
            let sender = match queue.as_ref() {
                Some(sender) => sender.clone(),
                None => {
                    let runtime = tokio::runtime::Handle::try_current().map_err(|_| "no async runtime".to_owned())?;
                    let (sender, receiver) = mpsc::channel(QUEUE);
                    runtime.spawn(deliver(self.http.clone(), receiver, self.log.clone()));
                    *queue = Some(sender.clone());
                    sender
                }
            };
            match sender.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(format!("the queue of {QUEUE} is full")),
                // The runtime that ran the sender is gone: start another.
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    *queue = None;
                    item = back;
                }
            }
        }
        Err("the sender could not be started".to_owned())
    }

    /// The deliveries, oldest first, of one account and/or destination.
    pub fn records(&self, account_id: Option<u64>, destination: Option<&str>) -> Vec<DeliveryRecord> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter()
            .filter(|record| account_id.is_none_or(|id| record.account_id == id))
            .filter(|record| destination.is_none_or(|destination| record.destination == destination))
            .cloned()
            .collect()
    }
}

/// Sends the queued deliveries one at a time, in order, recording each outcome.
async fn deliver(http: reqwest::Client, mut receiver: mpsc::Receiver<(u64, Delivery)>, log: Log) {
    while let Some((id, delivery)) = receiver.recv().await {
        let started = Instant::now();
        let sent = http
            .post(&delivery.destination)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"))
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
            .body(delivery.body)
            .send()
            .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        update(&log, id, |record| {
            record.elapsed_ms = Some(elapsed_ms);
            match sent {
                Ok(response) => {
                    record.state = "answered";
                    record.status = Some(response.status().as_u16());
                }
                Err(error) => {
                    record.state = "failed";
                    record.error = Some(error.without_url().to_string());
                }
            }
        });
    }
}
