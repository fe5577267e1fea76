//! One account's CRM as the stand-in keeps it: contacts, companies, leads, notes (calls are `call_in` /
//! `call_out` notes), tasks and unsorted sip items, with the JSON Kommo shows for each (KOMMO.md §2.2-2.7).
//! No HTTP here; the API handlers validate requests and call into this.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::webhooks::{Action, Change, Webhook};

/// The account's one pipeline ([`PIPELINE_NAME`]); every account has the same ids.
pub const PIPELINE_ID: u64 = 8_000_001;
pub const PIPELINE_NAME: &str = "Sales pipeline";
/// The pipeline's "Incoming leads" stage: where unsorted items wait until accepted.
pub const UNSORTED_STATUS_ID: u64 = 8_100_001;
/// The first real stage ("Initial contact"): new leads and accepted unsorted ones land here unless told
/// otherwise.
pub const FIRST_STATUS_ID: u64 = 8_100_002;
pub const QUALIFIED_STATUS_ID: u64 = 8_100_003;
pub const PROPOSAL_STATUS_ID: u64 = 8_100_004;
/// Kommo's fixed closed stages.
pub const WON_STATUS_ID: u64 = 142;
pub const LOST_STATUS_ID: u64 = 143;

/// A stage of the pipeline as `GET /api/v4/leads/pipelines` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub id: u64,
    pub name: &'static str,
    pub sort: u32,
    /// One of Kommo's stage colours.
    pub color: &'static str,
    /// Kommo's `type`: 1 for the incoming leads stage, 0 for every other.
    pub kind: u8,
    pub is_editable: bool,
}

/// The stages of [`PIPELINE_ID`] in order: every `status_id` the stand-in gives a lead is one of these.
pub const STAGES: [Stage; 6] = [
    Stage { id: UNSORTED_STATUS_ID, name: "Incoming leads", sort: 10, color: "#c1c1c1", kind: 1, is_editable: false },
    Stage { id: FIRST_STATUS_ID, name: "Initial contact", sort: 20, color: "#99ccff", kind: 0, is_editable: true },
    Stage { id: QUALIFIED_STATUS_ID, name: "Qualified", sort: 30, color: "#ffff99", kind: 0, is_editable: true },
    Stage { id: PROPOSAL_STATUS_ID, name: "Proposal", sort: 40, color: "#ffcc66", kind: 0, is_editable: true },
    Stage { id: WON_STATUS_ID, name: "Closed - won", sort: 10_000, color: "#CCFF66", kind: 0, is_editable: false },
    Stage { id: LOST_STATUS_ID, name: "Closed - lost", sort: 11_000, color: "#D5D8DB", kind: 0, is_editable: false },
];

/// The stage with this id, if the pipeline has it.
pub fn stage(id: u64) -> Option<&'static Stage> {
    STAGES.iter().find(|stage| stage.id == id)
}
/// The `PHONE` and `EMAIL` contact fields' ids.
pub const PHONE_FIELD_ID: u64 = 9_000_001;
pub const EMAIL_FIELD_ID: u64 = 9_000_002;

/// The entity types notes and tasks can hang on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Leads,
    Contacts,
    Companies,
    Customers,
}

impl EntityType {
    pub fn parse(text: &str) -> Option<EntityType> {
        match text {
            "leads" => Some(EntityType::Leads),
            "contacts" => Some(EntityType::Contacts),
            "companies" => Some(EntityType::Companies),
            "customers" => Some(EntityType::Customers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Leads => "leads",
            EntityType::Contacts => "contacts",
            EntityType::Companies => "companies",
            EntityType::Customers => "customers",
        }
    }
}

/// A value of a multi-value contact field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldValue {
    pub value: String,
    pub enum_code: String,
}

/// A contact field with its values (`PHONE` or `EMAIL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub field_id: u64,
    pub field_code: &'static str,
    pub values: Vec<FieldValue>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: u64,
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub fields: Vec<Field>,
    pub leads: Vec<u64>,
    pub companies: Vec<u64>,
    /// Created by an unsorted item that is not accepted yet.
    pub is_unsorted: bool,
}

/// The values of the `PHONE` fields among `fields`.
fn phones_of(fields: &[Field]) -> impl Iterator<Item = &str> {
    fields
        .iter()
        .filter(|field| field.field_code == "PHONE")
        .flat_map(|field| field.values.iter().map(|value| value.value.as_str()))
}

impl Contact {
    pub fn phones(&self) -> impl Iterator<Item = &str> {
        phones_of(&self.fields)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Company {
    pub id: u64,
    pub name: String,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// `PHONE` (and `EMAIL`) like a contact's.
    pub fields: Vec<Field>,
}

impl Company {
    pub fn phones(&self) -> impl Iterator<Item = &str> {
        phones_of(&self.fields)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Lead {
    pub id: u64,
    pub name: String,
    pub price: i64,
    pub status_id: u64,
    pub pipeline_id: u64,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub contacts: Vec<u64>,
    pub companies: Vec<u64>,
}

impl Lead {
    /// Not won (142) and not lost (143).
    pub fn is_active(&self) -> bool {
        self.status_id != WON_STATUS_ID && self.status_id != LOST_STATUS_ID
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: u64,
    pub entity_type: EntityType,
    pub entity_id: u64,
    pub note_type: String,
    pub params: Value,
    pub created_by: u64,
    pub responsible_user_id: u64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: u64,
    pub text: String,
    pub complete_till: i64,
    pub task_type_id: u64,
    pub entity: Option<(EntityType, u64)>,
    pub responsible_user_id: u64,
    pub created_by: u64,
    pub created_at: i64,
    pub is_completed: bool,
    pub duration: i64,
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unsorted {
    pub uid: String,
    pub source_uid: String,
    pub source_name: String,
    pub pipeline_id: u64,
    pub created_at: i64,
    pub metadata: Value,
    pub lead_id: u64,
    pub contact_id: u64,
    pub accepted: bool,
}

/// What `POST /api/v4/calls` answers when no entity has the call's number (KOMMO.md §2.2 leaves it open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallsMode {
    /// 200 with the item left out of `calls` and named in `errors` ("Entity not found").
    #[default]
    #[serde(rename = "errors_200")]
    Errors200,
    /// 400 problem+json with `validation-errors` for the items; nothing of the batch is written.
    #[serde(rename = "problem_400")]
    Problem400,
}

/// A call notification Kommo accepted (`POST /api/v2/events`, KOMMO.md §2.3): the popup it shows.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `phone_call`, the one type the stand-in accepts.
    #[serde(rename = "type")]
    pub kind: String,
    pub phone_number: String,
    /// `users` as sent; `None` when left out (everyone is notified).
    pub users: Option<Vec<u64>>,
    /// Who sees the popup: `users`, else every active user of the account.
    pub notified: Vec<u64>,
    /// What the popup shows (matched on the last 8 digits): the one active lead of the contact or company
    /// with the number, else the contact, else the company; `None` for an unknown number (the popup offers
    /// to create a contact).
    pub entity: Option<EntityRef>,
    /// The user whose token posted it.
    pub created_by: u64,
    pub created_at: i64,
}

/// An entity by type and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntityRef {
    pub entity_type: EntityType,
    pub entity_id: u64,
}

/// Ids are unique across accounts, each kind in its own range, so an id of the wrong kind or account is
/// never found.
#[derive(Debug)]
pub struct Ids {
    contact: u64,
    company: u64,
    lead: u64,
    note: u64,
    task: u64,
    webhook: u64,
}

impl Default for Ids {
    fn default() -> Ids {
        Ids {
            contact: 20_000_000,
            company: 25_000_000,
            lead: 30_000_000,
            note: 40_000_000,
            task: 50_000_000,
            webhook: 60_000_000,
        }
    }
}

impl Ids {
    fn bump(counter: &mut u64) -> u64 {
        *counter += 1;
        *counter
    }
    pub fn contact(&mut self) -> u64 {
        Ids::bump(&mut self.contact)
    }
    pub fn company(&mut self) -> u64 {
        Ids::bump(&mut self.company)
    }
    pub fn lead(&mut self) -> u64 {
        Ids::bump(&mut self.lead)
    }
    pub fn note(&mut self) -> u64 {
        Ids::bump(&mut self.note)
    }
    pub fn task(&mut self) -> u64 {
        Ids::bump(&mut self.task)
    }
    pub fn webhook(&mut self) -> u64 {
        Ids::bump(&mut self.webhook)
    }
}

/// One account's entities.
#[derive(Debug, Default, Serialize)]
pub struct Crm {
    pub contacts: BTreeMap<u64, Contact>,
    pub companies: BTreeMap<u64, Company>,
    pub leads: BTreeMap<u64, Lead>,
    pub notes: BTreeMap<u64, Note>,
    pub tasks: BTreeMap<u64, Task>,
    pub unsorted: BTreeMap<String, Unsorted>,
    pub calls_mode: CallsMode,
    /// Accepted call notifications, oldest first (`GET /sandbox/kommo/notifications`).
    #[serde(skip)]
    pub notifications: Vec<Notification>,
    /// Every call uniq written, with the `METHOD /path` that first carried it.
    #[serde(skip)]
    pub uniqs: HashMap<String, String>,
    /// Kommo's webhooks of the account (`/api/v4/webhooks`).
    #[serde(skip)]
    pub webhooks: Vec<Webhook>,
    /// The account's plan lacks webhooks through the API (`POST /sandbox/kommo/accounts/{id}/plan`).
    #[serde(skip)]
    pub webhooks_off: bool,
    /// Changes not yet turned into webhook deliveries (`webhooks::take`).
    #[serde(skip)]
    pub changes: Vec<Change>,
}

/// The digits of a phone number.
pub fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Whether two numbers end in the same `n` digits (shorter numbers whole).
fn same_tail(a: &str, b: &str, n: usize) -> bool {
    let (a, b) = (digits(a), digits(b));
    let tail = |d: &str| d[d.len().saturating_sub(n)..].to_owned();
    !a.is_empty() && tail(&a) == tail(&b)
}

/// Kommo matches a call's number on its last 10 digits (KOMMO.md §2.2).
fn same_number(a: &str, b: &str) -> bool {
    same_tail(a, b, 10)
}

/// A call notification's number is matched on its last 8 digits (KOMMO.md §1.7).
fn same_notified_number(a: &str, b: &str) -> bool {
    same_tail(a, b, 8)
}

/// Whether a name and phones match a search query: a query of digits (with `+`, spaces, dashes, brackets)
/// matches phone digits in part, anything else the name or a phone as text.
fn matches_query<'a>(query: &str, name: &str, mut phones: impl Iterator<Item = &'a str>) -> bool {
    let query = query.trim();
    let phone_like = query.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let wanted = digits(query);
    if phone_like && !wanted.is_empty() {
        return phones.any(|phone| digits(phone).contains(&wanted));
    }
    let lowered = query.to_lowercase();
    name.to_lowercase().contains(&lowered) || phones.any(|phone| phone.to_lowercase().contains(&lowered))
}

impl Crm {
    /// Notes a change of a contact, company or lead for the webhooks; `old` is the previous status or
    /// responsible user of a `Status` or `Responsible` change.
    pub fn changed(&mut self, entity_type: EntityType, action: Action, id: u64, old: Option<u64>) {
        self.changes.push(Change { entity_type, action, id, old });
    }

    pub fn has(&self, entity_type: EntityType, id: u64) -> bool {
        match entity_type {
            EntityType::Leads => self.leads.contains_key(&id),
            EntityType::Contacts => self.contacts.contains_key(&id),
            EntityType::Companies => self.companies.contains_key(&id),
            EntityType::Customers => false,
        }
    }

    /// Links a lead and a contact both ways.
    pub fn link(&mut self, lead_id: u64, contact_id: u64) {
        if let Some(lead) = self.leads.get_mut(&lead_id)
            && !lead.contacts.contains(&contact_id)
        {
            lead.contacts.push(contact_id);
        }
        if let Some(contact) = self.contacts.get_mut(&contact_id)
            && !contact.leads.contains(&lead_id)
        {
            contact.leads.push(lead_id);
        }
    }

    /// Contacts whose name or phones contain the query; a query of digits (with `+`, spaces, dashes,
    /// brackets) matches on phone digits.
    pub fn search_contacts(&self, query: &str) -> Vec<&Contact> {
        self.contacts.values().filter(|contact| matches_query(query, &contact.name, contact.phones())).collect()
    }

    /// Companies found the way [`Crm::search_contacts`] finds contacts.
    pub fn search_companies(&self, query: &str) -> Vec<&Company> {
        self.companies.values().filter(|company| matches_query(query, &company.name, company.phones())).collect()
    }

    /// The leads of a company: those that name it.
    pub fn company_leads(&self, company_id: u64) -> impl Iterator<Item = &Lead> {
        self.leads.values().filter(move |lead| lead.companies.contains(&company_id))
    }

    /// The contacts of a company: those that name it.
    pub fn company_contacts(&self, company_id: u64) -> impl Iterator<Item = &Contact> {
        self.contacts.values().filter(move |contact| contact.companies.contains(&company_id))
    }

    /// Kommo's choice for a number among the contacts and companies that have it (`same` compares
    /// numbers): exactly one active lead among theirs → that lead; otherwise the first (oldest) contact,
    /// else the first company. `None` when none has the number.
    fn entity_for(&self, phone: &str, same: fn(&str, &str) -> bool) -> Option<(EntityType, u64)> {
        let contacts: Vec<&Contact> =
            self.contacts.values().filter(|contact| contact.phones().any(|own| same(own, phone))).collect();
        let companies: Vec<&Company> =
            self.companies.values().filter(|company| company.phones().any(|own| same(own, phone))).collect();
        let of_contacts = contacts.iter().flat_map(|contact| contact.leads.iter().copied());
        let of_companies = companies.iter().flat_map(|company| self.company_leads(company.id).map(|lead| lead.id));
        let mut active: Vec<u64> =
            of_contacts.chain(of_companies).filter(|id| self.leads.get(id).is_some_and(Lead::is_active)).collect();
        active.sort_unstable();
        active.dedup();
        if let [lead] = active.as_slice() {
            return Some((EntityType::Leads, *lead));
        }
        match (contacts.first(), companies.first()) {
            (Some(contact), _) => Some((EntityType::Contacts, contact.id)),
            (None, Some(company)) => Some((EntityType::Companies, company.id)),
            (None, None) => None,
        }
    }

    /// Where Kommo puts a call for `phone` (KOMMO.md §2.2), matching the last 10 digits: the contacts and
    /// companies with the number; exactly one active lead among theirs → that lead; otherwise the first
    /// (oldest) of those contacts, else of those companies. `None` when none has the number.
    pub fn call_entity(&self, phone: &str) -> Option<(EntityType, u64)> {
        self.entity_for(phone, same_number)
    }

    /// What a call notification for `phone` shows (KOMMO.md §1.7): the same choice as a call's, matching
    /// the last 8 digits.
    pub fn notification_entity(&self, phone: &str) -> Option<EntityRef> {
        self.entity_for(phone, same_notified_number)
            .map(|(entity_type, entity_id)| EntityRef { entity_type, entity_id })
    }

    /// The earliest deadline of the open tasks on an entity.
    fn closest_task_at(&self, entity_type: EntityType, id: u64) -> Option<i64> {
        self.tasks
            .values()
            .filter(|task| !task.is_completed && task.entity == Some((entity_type, id)))
            .map(|task| task.complete_till)
            .min()
    }
}

fn link(api_base: &str, path: &str) -> Value {
    json!({ "self": { "href": format!("{api_base}/api/v4/{path}") } })
}

/// `{id, _links}` of an entity, as `_embedded` lists it.
pub fn reference(api_base: &str, entity_type: EntityType, id: u64) -> Value {
    json!({ "id": id, "_links": link(api_base, &format!("{}/{id}", entity_type.as_str())) })
}

/// `custom_fields_values`: `null` when there is none, as Kommo shows it.
fn fields_json(fields: &[Field]) -> Value {
    if fields.is_empty() {
        return Value::Null;
    }
    let fields = fields.iter().map(|field| {
        json!({
            "field_id": field.field_id,
            "field_code": field.field_code,
            "values": field.values.iter()
                .map(|value| json!({ "value": value.value, "enum_code": value.enum_code }))
                .collect::<Vec<_>>(),
        })
    });
    Value::Array(fields.collect())
}

/// A contact as `GET /api/v4/contacts` shows it; `with_leads` adds `_embedded.leads`.
pub fn contact_json(crm: &Crm, contact: &Contact, account_id: u64, api_base: &str, with_leads: bool) -> Value {
    let mut embedded = json!({
        "tags": [],
        "companies": contact.companies.iter()
            .map(|id| reference(api_base, EntityType::Companies, *id)).collect::<Vec<_>>(),
    });
    if with_leads {
        embedded["leads"] =
            contact.leads.iter().map(|id| reference(api_base, EntityType::Leads, *id)).collect::<Vec<_>>().into();
    }
    let mut body = json!({
        "id": contact.id,
        "name": contact.name,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "responsible_user_id": contact.responsible_user_id,
        "group_id": 0,
        "created_by": contact.created_by,
        "updated_by": contact.created_by,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "custom_fields_values": fields_json(&contact.fields),
        "account_id": account_id,
        "is_unsorted": contact.is_unsorted,
        "_links": link(api_base, &format!("contacts/{}", contact.id)),
        "_embedded": embedded,
    });
    if let Some(at) = crm.closest_task_at(EntityType::Contacts, contact.id) {
        body["closest_task_at"] = json!(at);
    }
    body
}

/// A company as `GET /api/v4/companies` shows it; `with_leads` adds `_embedded.leads` and `with_contacts`
/// `_embedded.contacts` (`{id, _links}` each).
pub fn company_json(
    crm: &Crm,
    company: &Company,
    account_id: u64,
    api_base: &str,
    with_leads: bool,
    with_contacts: bool,
) -> Value {
    let mut embedded = json!({ "tags": [] });
    if with_leads {
        embedded["leads"] = crm
            .company_leads(company.id)
            .map(|lead| reference(api_base, EntityType::Leads, lead.id))
            .collect::<Vec<_>>()
            .into();
    }
    if with_contacts {
        embedded["contacts"] = crm
            .company_contacts(company.id)
            .map(|contact| reference(api_base, EntityType::Contacts, contact.id))
            .collect::<Vec<_>>()
            .into();
    }
    let mut body = json!({
        "id": company.id,
        "name": company.name,
        "responsible_user_id": company.responsible_user_id,
        "group_id": 0,
        "created_by": company.created_by,
        "updated_by": company.created_by,
        "created_at": company.created_at,
        "updated_at": company.updated_at,
        "custom_fields_values": fields_json(&company.fields),
        "account_id": account_id,
        "_links": link(api_base, &format!("companies/{}", company.id)),
        "_embedded": embedded,
    });
    if let Some(at) = crm.closest_task_at(EntityType::Companies, company.id) {
        body["closest_task_at"] = json!(at);
    }
    body
}

/// The pipeline as `GET /api/v4/leads/pipelines` shows it, with `_embedded.statuses`.
pub fn pipeline_json(account_id: u64, api_base: &str) -> Value {
    let base = format!("leads/pipelines/{PIPELINE_ID}");
    let statuses: Vec<Value> = STAGES
        .iter()
        .map(|stage| {
            json!({
                "id": stage.id,
                "name": stage.name,
                "sort": stage.sort,
                "is_editable": stage.is_editable,
                "pipeline_id": PIPELINE_ID,
                "color": stage.color,
                "type": stage.kind,
                "account_id": account_id,
                "_links": link(api_base, &format!("{base}/statuses/{}", stage.id)),
            })
        })
        .collect();
    json!({
        "id": PIPELINE_ID,
        "name": PIPELINE_NAME,
        "sort": 1,
        "is_main": true,
        "is_unsorted_on": true,
        "is_archive": false,
        "account_id": account_id,
        "_links": link(api_base, &base),
        "_embedded": { "statuses": statuses },
    })
}

/// A lead as `GET /api/v4/leads` shows it; `with_contacts` adds `_embedded.contacts` (`{id, is_main}`).
/// `closed_at` is present only on closed leads.
pub fn lead_json(crm: &Crm, lead: &Lead, account_id: u64, api_base: &str, with_contacts: bool) -> Value {
    let mut embedded = json!({
        "tags": [],
        "companies": lead.companies.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
    });
    if with_contacts {
        embedded["contacts"] = lead
            .contacts
            .iter()
            .enumerate()
            .map(|(index, id)| json!({ "id": id, "is_main": index == 0 }))
            .collect::<Vec<_>>()
            .into();
    }
    let mut body = json!({
        "id": lead.id,
        "name": lead.name,
        "price": lead.price,
        "responsible_user_id": lead.responsible_user_id,
        "group_id": 0,
        "status_id": lead.status_id,
        "pipeline_id": lead.pipeline_id,
        "created_by": lead.created_by,
        "updated_by": lead.created_by,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "is_deleted": false,
        "custom_fields_values": null,
        "score": null,
        "account_id": account_id,
        "_links": link(api_base, &format!("leads/{}", lead.id)),
        "_embedded": embedded,
    });
    if let Some(closed_at) = lead.closed_at {
        body["closed_at"] = json!(closed_at);
    }
    if let Some(at) = crm.closest_task_at(EntityType::Leads, lead.id) {
        body["closest_task_at"] = json!(at);
    }
    body
}

pub fn note_json(note: &Note, account_id: u64, api_base: &str) -> Value {
    let path = format!("{}/{}/notes/{}", note.entity_type.as_str(), note.entity_id, note.id);
    json!({
        "id": note.id,
        "entity_id": note.entity_id,
        "note_type": note.note_type,
        "params": note.params,
        "responsible_user_id": note.responsible_user_id,
        "group_id": 0,
        "created_by": note.created_by,
        "updated_by": note.created_by,
        "created_at": note.created_at,
        "updated_at": note.created_at,
        "account_id": account_id,
        "_links": link(api_base, &path),
    })
}

/// A task; `entity_type`/`entity_id` only when it hangs on an entity, `result` only when it has one.
pub fn task_json(task: &Task, account_id: u64, api_base: &str) -> Value {
    let mut body = json!({
        "id": task.id,
        "created_by": task.created_by,
        "updated_by": task.created_by,
        "created_at": task.created_at,
        "updated_at": task.created_at,
        "responsible_user_id": task.responsible_user_id,
        "group_id": 0,
        "duration": task.duration,
        "is_completed": task.is_completed,
        "task_type_id": task.task_type_id,
        "text": task.text,
        "complete_till": task.complete_till,
        "account_id": account_id,
        "_links": link(api_base, &format!("tasks/{}", task.id)),
    });
    if let Some((entity_type, entity_id)) = task.entity {
        body["entity_type"] = json!(entity_type.as_str());
        body["entity_id"] = json!(entity_id);
    }
    if let Some(result) = &task.result {
        body["result"] = result.clone();
    }
    body
}

/// An unsorted item as `GET /api/v4/leads/unsorted` lists it.
pub fn unsorted_json(crm: &Crm, item: &Unsorted, account_id: u64, api_base: &str) -> Value {
    let lead = crm.leads.get(&item.lead_id).map(|lead| {
        json!({ "id": lead.id, "name": lead.name, "price": lead.price,
                "_links": link(api_base, &format!("leads/{}", lead.id)) })
    });
    let contact = crm.contacts.get(&item.contact_id).map(|contact| {
        json!({ "id": contact.id, "name": contact.name,
                "_links": link(api_base, &format!("contacts/{}", contact.id)) })
    });
    json!({
        "uid": item.uid,
        "source_uid": item.source_uid,
        "source_name": item.source_name,
        "category": "sip",
        "pipeline_id": item.pipeline_id,
        "created_at": item.created_at,
        "metadata": item.metadata,
        "account_id": account_id,
        "_links": link(api_base, &format!("leads/unsorted/{}", item.uid)),
        "_embedded": {
            "leads": lead.into_iter().collect::<Vec<_>>(),
            "contacts": contact.into_iter().collect::<Vec<_>>(),
            "companies": [],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: u64, phone: &str, leads: Vec<u64>) -> Contact {
        Contact {
            id,
            name: format!("Contact {id}"),
            first_name: String::new(),
            last_name: String::new(),
            responsible_user_id: 1,
            created_by: 1,
            created_at: 0,
            updated_at: 0,
            fields: vec![Field {
                field_id: PHONE_FIELD_ID,
                field_code: "PHONE",
                values: vec![FieldValue { value: phone.to_owned(), enum_code: "WORK".to_owned() }],
            }],
            leads,
            companies: Vec::new(),
            is_unsorted: false,
        }
    }

    fn lead(id: u64, status_id: u64, contacts: Vec<u64>) -> Lead {
        Lead {
            id,
            name: format!("Lead {id}"),
            price: 0,
            status_id,
            pipeline_id: PIPELINE_ID,
            responsible_user_id: 1,
            created_by: 1,
            created_at: 0,
            updated_at: 0,
            closed_at: None,
            contacts,
            companies: Vec::new(),
        }
    }

    #[test]
    fn numbers_match_on_their_last_ten_digits() {
        assert!(same_number("+55 (11) 99999-0000", "11999990000"));
        assert!(same_number("101", "101"));
        assert!(!same_number("+55 11 99999-0001", "11999990000"));
        assert!(!same_number("", ""));
    }

    #[test]
    fn a_call_goes_on_the_one_active_lead_else_on_the_contact() {
        let mut crm = Crm::default();
        crm.contacts.insert(1, contact(1, "+5511999990000", vec![10, 11]));
        crm.leads.insert(10, lead(10, FIRST_STATUS_ID, vec![1]));
        crm.leads.insert(11, lead(11, WON_STATUS_ID, vec![1]));
        assert_eq!(crm.call_entity("11 99999 0000"), Some((EntityType::Leads, 10)));
        crm.leads.insert(12, lead(12, FIRST_STATUS_ID, vec![1]));
        crm.contacts.get_mut(&1).unwrap().leads.push(12);
        assert_eq!(crm.call_entity("11 99999 0000"), Some((EntityType::Contacts, 1)));
        assert_eq!(crm.call_entity("+1 555 000 0000"), None);
    }

    fn company(id: u64, phone: &str) -> Company {
        Company {
            id,
            name: format!("Company {id}"),
            responsible_user_id: 1,
            created_by: 1,
            created_at: 0,
            updated_at: 0,
            fields: vec![Field {
                field_id: PHONE_FIELD_ID,
                field_code: "PHONE",
                values: vec![FieldValue { value: phone.to_owned(), enum_code: "WORK".to_owned() }],
            }],
        }
    }

    #[test]
    fn a_company_with_the_number_takes_the_call_when_no_contact_has_it() {
        let mut crm = Crm::default();
        crm.companies.insert(5, company(5, "+55 11 3456-7800"));
        assert_eq!(crm.call_entity("551134567800"), Some((EntityType::Companies, 5)));
        // Its one active lead takes it instead; a contact with the number comes before the company.
        crm.leads.insert(10, Lead { companies: vec![5], ..lead(10, FIRST_STATUS_ID, vec![]) });
        assert_eq!(crm.call_entity("551134567800"), Some((EntityType::Leads, 10)));
        crm.leads.insert(11, Lead { companies: vec![5], ..lead(11, FIRST_STATUS_ID, vec![]) });
        crm.contacts.insert(1, contact(1, "+55 11 3456-7800", vec![]));
        assert_eq!(crm.call_entity("551134567800"), Some((EntityType::Contacts, 1)));
    }

    #[test]
    fn a_notification_matches_the_last_eight_digits_and_a_call_the_last_ten() {
        let mut crm = Crm::default();
        crm.contacts.insert(1, contact(1, "+55 11 98765-4321", vec![]));
        // Another area code: the same last 8 digits, not the same last 10.
        assert_eq!(crm.call_entity("+55 12 98765-4321"), None);
        let shown = crm.notification_entity("+55 12 98765-4321");
        assert_eq!(shown, Some(EntityRef { entity_type: EntityType::Contacts, entity_id: 1 }));
        assert_eq!(crm.notification_entity("+55 11 98765-0000"), None);
    }

    #[test]
    fn every_stage_is_named_and_the_closed_ones_are_kommos() {
        assert_eq!(STAGES.iter().filter(|stage| stage.kind == 1).count(), 1);
        assert_eq!(stage(UNSORTED_STATUS_ID).map(|stage| stage.kind), Some(1));
        for id in [FIRST_STATUS_ID, QUALIFIED_STATUS_ID, PROPOSAL_STATUS_ID, WON_STATUS_ID, LOST_STATUS_ID] {
            assert!(stage(id).is_some_and(|stage| !stage.name.is_empty()), "{id}");
        }
        let sorts: Vec<u32> = STAGES.iter().map(|stage| stage.sort).collect();
        assert!(sorts.is_sorted());
    }

    #[test]
    fn search_matches_partial_phone_digits_or_names() {
        let mut crm = Crm::default();
        crm.contacts.insert(1, contact(1, "+55 11 99999-0000", vec![]));
        crm.contacts.insert(2, contact(2, "+1 555 123 4567", vec![]));
        let ids = |query: &str| crm.search_contacts(query).iter().map(|contact| contact.id).collect::<Vec<_>>();
        assert_eq!(ids("999990000"), [1]);
        assert_eq!(ids("+1 555"), [2]);
        assert_eq!(ids("contact 2"), [2]);
        assert!(ids("777").is_empty());
    }
}
