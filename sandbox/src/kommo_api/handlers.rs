//! The CRM endpoints of API v4 a telephony integration uses (KOMMO.md §2.2-2.7): contacts, companies, leads,
//! complex leads, the pipeline, calls, notes, tasks and unsorted sip items; and the legacy call notification
//! `POST /api/v2/events` (KOMMO.md §2.3).
//!
//! Writes take a JSON array of at most 250 items (complex leads: 50). Every item is checked before anything
//! is written; any refusal answers 400 `validation-errors` for the whole batch, then an id of an entity the
//! account does not have answers 404, and only then is the batch written. Calls follow Kommo's entity
//! selection, and an item with no entity for its number is answered per the account's [`CallsMode`].

use serde_json::{Value, json};

use super::api::{Outcome, Refusal, Reply, Request};
use super::check::{
    COUNT_EXCEEDED, Checker, FieldError, ItemErrors, MAX_BATCH, MAX_COMPLEX, NOT_BLANK, NOT_SUPPORTED_CHOICE, Report,
    request_id,
};
use super::crm::{
    CallsMode, Company, Contact, EMAIL_FIELD_ID, EntityType, FIRST_STATUS_ID, Field, FieldValue, LOST_STATUS_ID, Lead,
    Note, Notification, PHONE_FIELD_ID, PIPELINE_ID, Task, UNSORTED_STATUS_ID, Unsorted, WON_STATUS_ID, company_json,
    contact_json, digits, lead_json, note_json, pipeline_json, reference, task_json, unsorted_json,
};
use super::ledger::{Account, Desk};
use super::webhooks::Action;

const PHONE_CODES: &[&str] = &["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"];
const EMAIL_CODES: &[&str] = &["WORK", "PRIV", "OTHER"];
const ENTITY_TYPES: &[&str] = &["leads", "contacts", "companies", "customers"];
const NOTE_TYPES: &[&str] = &[
    "common",
    "call_in",
    "call_out",
    "service_message",
    "extended_service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "attachment",
    "invoice_paid",
];

/// The items of a batch write: a non-empty JSON array of at most `max`.
fn batch(body: &Value, max: usize) -> Result<&Vec<Value>, Refusal> {
    let Some(items) = body.as_array() else {
        return Err(Refusal::bad_request("The request body must be a JSON array"));
    };
    if items.is_empty() {
        return Err(Refusal::bad_request("The request body is an empty array"));
    }
    if items.len() > max {
        return Err(Refusal::bad_request(format!("At most {max} entities per request, got {}", items.len())));
    }
    Ok(items)
}

fn verdict(report: Report) -> Result<(), Refusal> {
    if report.is_empty() { Ok(()) } else { Err(Refusal::Validation(report.items)) }
}

/// The drafts of a batch write of at most `max` items: `draft` checks each item (given its checker and
/// `request_id`); any refusal refuses the whole batch with every item's refusals.
fn drafts<T>(
    body: &Value,
    max: usize,
    mut draft: impl FnMut(&mut Checker<'_>, String) -> T,
) -> Result<Vec<T>, Refusal> {
    let items = batch(body, max)?;
    let mut report = Report::default();
    let mut drafts = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let id = request_id(item, index);
        let mut checker = Checker::new(item);
        drafts.push(draft(&mut checker, id.clone()));
        report.add(&id, checker.into_errors());
    }
    verdict(report)?;
    Ok(drafts)
}

/// 404 for the first referenced entity the account does not have.
fn must_exist(desk: &Desk<'_>, references: impl IntoIterator<Item = (EntityType, u64)>) -> Result<(), Refusal> {
    for (entity_type, id) in references {
        if !desk.crm.has(entity_type, id) {
            return Err(Refusal::not_found(format!("{} {id} not found", entity_type.as_str())));
        }
    }
    Ok(())
}

fn self_link(request: &Request) -> Value {
    json!({ "self": { "href": format!("{}{}", request.api_base, request.path) } })
}

fn created(request: &Request, entity_type: EntityType, id: u64, request_id: &str) -> Value {
    let mut item = reference(&request.api_base, entity_type, id);
    item["request_id"] = json!(request_id);
    item
}

/// A call's `call_responsible`: a user id or a name.
fn call_responsible(checker: &mut Checker<'_>, key: &str) -> Option<Value> {
    match checker.object().get(key) {
        None | Some(Value::Null) => None,
        Some(value @ Value::String(_)) => Some(value.clone()),
        Some(value) if value.as_u64().is_some() => Some(value.clone()),
        Some(_) => {
            checker.refuse(super::check::INVALID_TYPE, key, "This value should be a user id or a name.".into());
            None
        }
    }
}

/// A call status: 1-7 (KOMMO.md §2.2).
fn call_status(checker: &mut Checker<'_>, key: &str) -> Option<i64> {
    let status = checker.int(key, false)?;
    if (1..=7).contains(&status) {
        Some(status)
    } else {
        checker.refuse(NOT_SUPPORTED_CHOICE, key, format!("The call status must be 1-7, got {status}."));
        None
    }
}

// ---------------------------------------------------------------------------------------------- contacts

/// A contact to create.
struct ContactDraft {
    name: String,
    first_name: String,
    last_name: String,
    responsible: Option<u64>,
    created_by: Option<u64>,
    created_at: Option<i64>,
    fields: Vec<Field>,
}

/// `custom_fields_values`: the `PHONE` and `EMAIL` fields, by `field_code` or `field_id`.
fn custom_fields(checker: &mut Checker<'_>) -> Vec<Field> {
    let Some(entries) = checker.array("custom_fields_values", false) else { return Vec::new() };
    let mut fields: Vec<Field> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let mut field = Checker::within(entry, checker.path(&format!("custom_fields_values.{index}.")));
        let code = field.string("field_code", false);
        let id = field.id("field_id", false);
        let kind = match (code.as_deref(), id) {
            (Some("PHONE"), _) | (None, Some(PHONE_FIELD_ID)) => Some(("PHONE", PHONE_FIELD_ID, PHONE_CODES)),
            (Some("EMAIL"), _) | (None, Some(EMAIL_FIELD_ID)) => Some(("EMAIL", EMAIL_FIELD_ID, EMAIL_CODES)),
            (Some(other), _) => {
                field.refuse(NOT_SUPPORTED_CHOICE, "field_code", format!("The account has no field `{other}`."));
                None
            }
            (None, Some(other)) => {
                field.refuse(NOT_SUPPORTED_CHOICE, "field_id", format!("The account has no field {other}."));
                None
            }
            (None, None) if field.is_ok() => {
                field.refuse(NOT_BLANK, "field_id", "Give field_id or field_code.".into());
                None
            }
            (None, None) => None,
        };
        let mut values = Vec::new();
        for (position, value) in field.array("values", true).into_iter().flatten().enumerate() {
            let mut item = Checker::within(value, field.path(&format!("values.{position}.")));
            let text = item.string("value", true);
            let enum_code = kind.and_then(|(_, _, codes)| item.choice("enum_code", false, codes));
            if let Some(value) = text {
                values.push(FieldValue { value, enum_code: enum_code.unwrap_or_else(|| "WORK".to_owned()) });
            }
            field.absorb(item);
        }
        checker.absorb(field);
        if let Some((field_code, field_id, _)) = kind {
            match fields.iter_mut().find(|field| field.field_id == field_id) {
                Some(existing) => existing.values.extend(values),
                None => fields.push(Field { field_id, field_code, values }),
            }
        }
    }
    fields
}

fn contact_draft(checker: &mut Checker<'_>, account: &Account) -> ContactDraft {
    let first_name = checker.string("first_name", false).unwrap_or_default();
    let last_name = checker.string("last_name", false).unwrap_or_default();
    let name = checker
        .string("name", false)
        .unwrap_or_else(|| [first_name.as_str(), last_name.as_str()].join(" ").trim().to_owned());
    ContactDraft {
        name,
        first_name,
        last_name,
        responsible: checker.user("responsible_user_id", account),
        created_by: checker.author("created_by", account),
        created_at: checker.int("created_at", false),
        fields: custom_fields(checker),
    }
}

fn insert_contact(desk: &mut Desk<'_>, request: &Request, draft: ContactDraft, is_unsorted: bool) -> u64 {
    let id = desk.ids.contact();
    let created_at = draft.created_at.unwrap_or(request.now);
    let contact = Contact {
        id,
        name: draft.name,
        first_name: draft.first_name,
        last_name: draft.last_name,
        responsible_user_id: draft.responsible.unwrap_or(request.bearer.user_id),
        created_by: draft.created_by.unwrap_or(request.bearer.user_id),
        created_at,
        updated_at: created_at,
        fields: draft.fields,
        leads: Vec::new(),
        companies: Vec::new(),
        is_unsorted,
    };
    desk.crm.contacts.insert(id, contact);
    desk.crm.changed(EntityType::Contacts, Action::Add, id, None);
    id
}

/// `GET /api/v4/contacts?query&with=leads&filter[id][]&filter[updated_at][from|to]&order[updated_at|id]`:
/// `query` matches phone digits in part, or names; pages cut before the contacts are rendered.
pub(super) fn list_contacts(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let ids = request.ids("filter[id]")?;
    let crm = &*desk.crm;
    let found: Vec<&Contact> = match request.param("query").map(str::trim).filter(|query| !query.is_empty()) {
        Some(query) => crm.search_contacts(query),
        None => crm.contacts.values().collect(),
    };
    let with_leads = request.with("leads");
    let found = found.into_iter().filter(|contact| ids.is_empty() || ids.contains(&contact.id)).collect();
    let account_id = desk.account.id;
    request.listing(
        "contacts",
        found,
        |contact| (contact.id, contact.updated_at),
        |contact| contact_json(crm, contact, account_id, &request.api_base, with_leads),
    )
}

/// `GET /api/v4/contacts/{id}`.
pub(super) fn show_contact(desk: &mut Desk<'_>, request: &Request, id: u64) -> Outcome {
    let contact = desk.crm.contacts.get(&id).ok_or_else(|| Refusal::not_found(format!("contacts {id} not found")))?;
    Ok(Reply::Hal(contact_json(desk.crm, contact, desk.account.id, &request.api_base, request.with("leads"))))
}

/// `POST /api/v4/contacts`.
pub(super) fn create_contacts(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let drafts = drafts(&request.body, MAX_BATCH, |checker, id| (id, contact_draft(checker, desk.account)))?;
    let contacts: Vec<Value> = drafts
        .into_iter()
        .map(|(id, draft)| {
            let contact = insert_contact(desk, request, draft, false);
            created(request, EntityType::Contacts, contact, &id)
        })
        .collect();
    Ok(Reply::Hal(json!({ "_links": self_link(request), "_embedded": { "contacts": contacts } })))
}

// --------------------------------------------------------------------------------------------- companies

/// `GET /api/v4/companies?query&with=leads,contacts&filter[id][]&filter[updated_at][from|to]&order[...]`:
/// `query` matches phone digits in part, or names, like the contacts search; nothing found is 204.
pub(super) fn list_companies(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let ids = request.ids("filter[id]")?;
    let crm = &*desk.crm;
    let found: Vec<&Company> = match request.param("query").map(str::trim).filter(|query| !query.is_empty()) {
        Some(query) => crm.search_companies(query),
        None => crm.companies.values().collect(),
    };
    let (with_leads, with_contacts) = (request.with("leads"), request.with("contacts"));
    let found = found.into_iter().filter(|company| ids.is_empty() || ids.contains(&company.id)).collect();
    let account_id = desk.account.id;
    request.listing(
        "companies",
        found,
        |company| (company.id, company.updated_at),
        |company| company_json(crm, company, account_id, &request.api_base, with_leads, with_contacts),
    )
}

/// `GET /api/v4/companies/{id}?with=leads,contacts`.
pub(super) fn show_company(desk: &mut Desk<'_>, request: &Request, id: u64) -> Outcome {
    let company = desk.crm.companies.get(&id).ok_or_else(|| Refusal::not_found(format!("companies {id} not found")))?;
    let (with_leads, with_contacts) = (request.with("leads"), request.with("contacts"));
    let body = company_json(desk.crm, company, desk.account.id, &request.api_base, with_leads, with_contacts);
    Ok(Reply::Hal(body))
}

// ------------------------------------------------------------------------------------------------- leads

enum ContactRef {
    Existing(u64),
    New(ContactDraft),
}

enum CompanyRef {
    Existing(u64),
    New(String),
}

struct LeadDraft {
    name: Option<String>,
    price: i64,
    status_id: Option<u64>,
    pipeline_id: Option<u64>,
    responsible: Option<u64>,
    created_by: Option<u64>,
    created_at: Option<i64>,
    contacts: Vec<ContactRef>,
    companies: Vec<CompanyRef>,
}

impl LeadDraft {
    fn references(&self) -> Vec<(EntityType, u64)> {
        let contacts = self.contacts.iter().filter_map(|contact| match contact {
            ContactRef::Existing(id) => Some((EntityType::Contacts, *id)),
            ContactRef::New(_) => None,
        });
        let companies = self.companies.iter().filter_map(|company| match company {
            CompanyRef::Existing(id) => Some((EntityType::Companies, *id)),
            CompanyRef::New(_) => None,
        });
        contacts.chain(companies).collect()
    }
}

/// A lead to create; `complex` admits new contacts and companies in `_embedded` (at most one of each),
/// otherwise they must name existing ones by `id`.
fn lead_draft(checker: &mut Checker<'_>, account: &Account, complex: bool) -> LeadDraft {
    let status_id = checker.id("status_id", false);
    if status_id == Some(UNSORTED_STATUS_ID) {
        let detail = "Leads enter the incoming leads stage only as unsorted items.".to_owned();
        checker.refuse(NOT_SUPPORTED_CHOICE, "status_id", detail);
    }
    let mut draft = LeadDraft {
        name: checker.string("name", false),
        price: checker.count("price", false).map(|price| price as i64).unwrap_or_default(),
        status_id,
        pipeline_id: checker.id("pipeline_id", false),
        responsible: checker.user("responsible_user_id", account),
        created_by: checker.author("created_by", account),
        created_at: checker.int("created_at", false),
        contacts: Vec::new(),
        companies: Vec::new(),
    };
    let Some(mut embedded) = checker.nested("_embedded", false) else { return draft };
    for (key, many) in [("contacts", "contact"), ("companies", "company")] {
        let entries = embedded.array(key, false).map(Vec::as_slice).unwrap_or_default();
        if complex && entries.len() > 1 {
            embedded.refuse(COUNT_EXCEEDED, key, format!("At most one {many} per complex lead."));
        }
        for (index, entry) in entries.iter().enumerate() {
            let mut item = Checker::within(entry, embedded.path(&format!("{key}.{index}.")));
            let id = item.id("id", false);
            let has_id = item.object().get("id").is_some_and(|id| !id.is_null());
            match (key, id) {
                ("contacts", Some(id)) => draft.contacts.push(ContactRef::Existing(id)),
                ("companies", Some(id)) => draft.companies.push(CompanyRef::Existing(id)),
                _ if has_id => {}
                _ if !complex => item.refuse(NOT_BLANK, "id", format!("Name an existing {many} by id.")),
                ("contacts", None) => draft.contacts.push(ContactRef::New(contact_draft(&mut item, account))),
                _ => draft.companies.push(CompanyRef::New(item.string("name", false).unwrap_or_default())),
            }
            embedded.absorb(item);
        }
    }
    checker.absorb(embedded);
    draft
}

/// Writes a lead with its new contacts and companies; returns the ids of the lead, its first contact and
/// its first company.
fn insert_lead(desk: &mut Desk<'_>, request: &Request, draft: LeadDraft) -> (u64, Option<u64>, Option<u64>) {
    let responsible = draft.responsible.unwrap_or(request.bearer.user_id);
    let mut contacts = Vec::new();
    for contact in draft.contacts {
        contacts.push(match contact {
            ContactRef::Existing(id) => id,
            ContactRef::New(contact) => insert_contact(desk, request, contact, false),
        });
    }
    let mut companies = Vec::new();
    for company in draft.companies {
        companies.push(match company {
            CompanyRef::Existing(id) => id,
            CompanyRef::New(name) => {
                let id = desk.ids.company();
                let company = Company {
                    id,
                    name,
                    responsible_user_id: responsible,
                    created_by: request.bearer.user_id,
                    created_at: request.now,
                    updated_at: request.now,
                    fields: Vec::new(),
                };
                desk.crm.companies.insert(id, company);
                desk.crm.changed(EntityType::Companies, Action::Add, id, None);
                id
            }
        });
    }
    let id = desk.ids.lead();
    let created_at = draft.created_at.unwrap_or(request.now);
    let status_id = draft.status_id.unwrap_or(FIRST_STATUS_ID);
    let closed = status_id == WON_STATUS_ID || status_id == LOST_STATUS_ID;
    let lead = Lead {
        id,
        name: draft.name.unwrap_or_else(|| format!("Lead #{id}")),
        price: draft.price,
        status_id,
        pipeline_id: draft.pipeline_id.unwrap_or(PIPELINE_ID),
        responsible_user_id: responsible,
        created_by: draft.created_by.unwrap_or(request.bearer.user_id),
        created_at,
        updated_at: created_at,
        closed_at: closed.then_some(request.now),
        contacts: Vec::new(),
        companies: companies.clone(),
    };
    desk.crm.leads.insert(id, lead);
    desk.crm.changed(EntityType::Leads, Action::Add, id, None);
    for contact in &contacts {
        desk.crm.link(id, *contact);
        if let Some(contact) = desk.crm.contacts.get_mut(contact) {
            for company in &companies {
                if !contact.companies.contains(company) {
                    contact.companies.push(*company);
                }
            }
        }
    }
    (id, contacts.first().copied(), companies.first().copied())
}

fn lead_drafts(
    desk: &Desk<'_>,
    request: &Request,
    max: usize,
    complex: bool,
) -> Result<Vec<(String, LeadDraft)>, Refusal> {
    let drafts = drafts(&request.body, max, |checker, id| (id, lead_draft(checker, desk.account, complex)))?;
    must_exist(desk, drafts.iter().flat_map(|(_, draft)| draft.references()))?;
    Ok(drafts)
}

/// `POST /api/v4/leads` (`_embedded.contacts: [{id}]` links existing contacts).
pub(super) fn create_leads(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let drafts = lead_drafts(desk, request, MAX_BATCH, false)?;
    let leads: Vec<Value> = drafts
        .into_iter()
        .map(|(id, draft)| {
            let (lead, _, _) = insert_lead(desk, request, draft);
            created(request, EntityType::Leads, lead, &id)
        })
        .collect();
    Ok(Reply::Hal(json!({ "_links": self_link(request), "_embedded": { "leads": leads } })))
}

/// `POST /api/v4/leads/complex`: at most 50 leads, each with at most one new or existing contact and
/// company; answers Kommo's bare array `[{id, contact_id, company_id, request_id: [..], merged}]`.
pub(super) fn create_complex(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let drafts = lead_drafts(desk, request, MAX_COMPLEX, true)?;
    let results: Vec<Value> = drafts
        .into_iter()
        .map(|(id, draft)| {
            let (lead, contact, company) = insert_lead(desk, request, draft);
            json!({ "id": lead, "contact_id": contact, "company_id": company, "request_id": [id], "merged": false })
        })
        .collect();
    Ok(Reply::Hal(Value::Array(results)))
}

/// `GET /api/v4/leads?filter[id][]&filter[updated_at][from|to]&order[updated_at|id]&query&with=contacts`.
pub(super) fn list_leads(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let ids = request.ids("filter[id]")?;
    let query = request.param("query").map(|query| query.trim().to_lowercase()).unwrap_or_default();
    let with_contacts = request.with("contacts");
    let crm = &*desk.crm;
    let found = crm
        .leads
        .values()
        .filter(|lead| ids.is_empty() || ids.contains(&lead.id))
        .filter(|lead| query.is_empty() || lead.name.to_lowercase().contains(&query))
        .collect();
    let account_id = desk.account.id;
    request.listing(
        "leads",
        found,
        |lead| (lead.id, lead.updated_at),
        |lead| lead_json(crm, lead, account_id, &request.api_base, with_contacts),
    )
}

/// `GET /api/v4/leads/pipelines`: the account's one pipeline with its stages (Kommo lists every pipeline at
/// once: no pages).
pub(super) fn list_pipelines(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let pipeline = pipeline_json(desk.account.id, &request.api_base);
    Ok(Reply::Hal(json!({
        "_total_items": 1,
        "_links": self_link(request),
        "_embedded": { "pipelines": [pipeline] },
    })))
}

/// `GET /api/v4/leads/pipelines/{id}`.
pub(super) fn show_pipeline(desk: &mut Desk<'_>, request: &Request, id: u64) -> Outcome {
    if id != PIPELINE_ID {
        return Err(Refusal::not_found(format!("Pipeline {id} not found")));
    }
    Ok(Reply::Hal(pipeline_json(desk.account.id, &request.api_base)))
}

/// `GET /api/v4/leads/{id}`.
pub(super) fn show_lead(desk: &mut Desk<'_>, request: &Request, id: u64) -> Outcome {
    let lead = desk.crm.leads.get(&id).ok_or_else(|| Refusal::not_found(format!("leads {id} not found")))?;
    Ok(Reply::Hal(lead_json(desk.crm, lead, desk.account.id, &request.api_base, request.with("contacts"))))
}

// ------------------------------------------------------------------------------------------------- calls

struct CallDraft {
    request_id: String,
    direction: String,
    phone: String,
    params: Value,
    uniq: Option<String>,
    responsible: Option<u64>,
    created_by: Option<u64>,
    created_at: Option<i64>,
}

fn call_draft(checker: &mut Checker<'_>, account: &Account, request_id: String) -> Option<CallDraft> {
    let direction = checker.choice("direction", true, &["inbound", "outbound"]);
    let duration = checker.count("duration", true);
    let source = checker.string("source", true);
    let phone = checker.string("phone", true);
    let uniq = checker.string("uniq", false);
    let link = checker.string("link", false);
    let call_result = checker.string("call_result", false);
    let status = call_status(checker, "call_status");
    let call_responsible = call_responsible(checker, "call_responsible");
    let responsible = checker.user("responsible_user_id", account);
    let created_by = checker.author("created_by", account);
    let created_at = checker.int("created_at", false);
    checker.int("updated_at", false);
    checker.author("updated_by", account);
    let mut params = json!({ "duration": duration?, "source": source?, "phone": phone.clone()? });
    for (key, value) in [
        ("uniq", uniq.clone().map(Value::from)),
        ("link", link.map(Value::from)),
        ("call_status", status.map(Value::from)),
        ("call_result", call_result.map(Value::from)),
        ("call_responsible", call_responsible),
    ] {
        if let Some(value) = value {
            params[key] = value;
        }
    }
    Some(CallDraft {
        request_id,
        direction: direction?,
        phone: phone?,
        params,
        uniq,
        responsible,
        created_by,
        created_at,
    })
}

/// Stores a call note (`call_in`/`call_out`) and notes its uniq; returns the note's id.
fn insert_call_note(desk: &mut Desk<'_>, write: &str, note: Note, uniq: Option<&str>) -> u64 {
    let id = note.id;
    desk.crm.notes.insert(id, note);
    if let Some(uniq) = uniq {
        desk.call_uniq(uniq, write);
    }
    id
}

/// `POST /api/v4/calls`: each call lands as a `call_in`/`call_out` note on the entity Kommo selects for its
/// number; `created_by` defaults to 0 (Kommo's robot).
pub(super) fn create_calls(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let drafts = drafts(&request.body, MAX_BATCH, |checker, id| call_draft(checker, desk.account, id))?;
    let placed: Vec<(CallDraft, Option<(EntityType, u64)>)> = drafts
        .into_iter()
        .flatten()
        .map(|draft| {
            let entity = desk.crm.call_entity(&draft.phone);
            (draft, entity)
        })
        .collect();
    let unplaced: Vec<&CallDraft> = placed.iter().filter(|(_, entity)| entity.is_none()).map(|(d, _)| d).collect();
    if desk.crm.calls_mode == CallsMode::Problem400 && !unplaced.is_empty() {
        let items = unplaced
            .iter()
            .map(|draft| ItemErrors {
                request_id: draft.request_id.clone(),
                errors: vec![FieldError { code: "NotFound", path: "phone".into(), detail: "Entity not found".into() }],
            })
            .collect();
        return Err(Refusal::Validation(items));
    }
    let write = format!("POST {}", request.path);
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    for (draft, entity) in placed {
        let Some((entity_type, entity_id)) = entity else {
            errors.push(json!({ "request_id": draft.request_id, "detail": "Entity not found", "status": 404 }));
            continue;
        };
        let responsible = draft
            .responsible
            .or_else(|| {
                draft.params["call_responsible"].as_u64().filter(|id| desk.account.users.iter().any(|u| u.id == *id))
            })
            .unwrap_or(request.bearer.user_id);
        let note = Note {
            id: desk.ids.note(),
            entity_type,
            entity_id,
            note_type: if draft.direction == "inbound" { "call_in" } else { "call_out" }.to_owned(),
            params: draft.params,
            created_by: draft.created_by.unwrap_or(0),
            responsible_user_id: responsible,
            created_at: draft.created_at.unwrap_or(request.now),
        };
        let id = insert_call_note(desk, &write, note, draft.uniq.as_deref());
        calls.push(json!({
            "id": id,
            "entity_id": entity_id,
            "entity_type": entity_type.as_str(),
            "account_id": desk.account.id,
            "request_id": draft.request_id,
            "_embedded": { "entity": reference(&request.api_base, entity_type, entity_id) },
        }));
    }
    Ok(Reply::Hal(json!({ "_total_items": calls.len(), "_embedded": { "calls": calls }, "errors": errors })))
}

// ------------------------------------------------------------------------------------------------- notes

struct NoteDraft {
    request_id: String,
    entity_id: Option<u64>,
    note_type: String,
    params: Value,
    uniq: Option<String>,
    responsible: Option<u64>,
    created_by: Option<u64>,
    created_at: Option<i64>,
}

/// The `params` a note type needs: `common` a `text`; `call_in`/`call_out` `uniq`, `duration`, `source`,
/// `phone` (and optionally `link`, `call_status` 1-7, `call_result`, `call_responsible`); `service_message`
/// `service` and `text`. Returns the call's uniq.
fn note_params(checker: &mut Checker<'_>, note_type: Option<&str>) -> Option<String> {
    let required = matches!(note_type, Some("common" | "call_in" | "call_out" | "service_message"));
    let mut params = checker.nested("params", required)?;
    let mut uniq = None;
    match note_type {
        Some("common") => {
            params.string("text", true);
        }
        Some("call_in" | "call_out") => {
            uniq = params.string("uniq", true);
            params.count("duration", true);
            params.string("source", true);
            params.string("phone", true);
            params.string("link", false);
            params.string("call_result", false);
            call_status(&mut params, "call_status");
            call_responsible(&mut params, "call_responsible");
        }
        Some("service_message") => {
            params.string("service", true);
            params.string("text", true);
        }
        _ => {}
    }
    checker.absorb(params);
    uniq
}

/// One note to create; `path_entity` is the entity of a `POST /api/v4/{entity_type}/{id}/notes`, otherwise
/// the item names its `entity_id`.
fn note_draft(checker: &mut Checker<'_>, account: &Account, request_id: String, path_entity: Option<u64>) -> NoteDraft {
    let entity_id = match path_entity {
        Some(entity_id) => Some(entity_id),
        None => checker.id("entity_id", true),
    };
    let note_type = checker.choice("note_type", true, NOTE_TYPES);
    let uniq = note_params(checker, note_type.as_deref());
    NoteDraft {
        request_id,
        entity_id,
        note_type: note_type.unwrap_or_default(),
        params: checker
            .object()
            .get("params")
            .filter(|params| params.is_object())
            .cloned()
            .unwrap_or_else(|| json!({})),
        uniq,
        responsible: checker.user("responsible_user_id", account),
        created_by: checker.author("created_by", account),
        created_at: checker.int("created_at", false),
    }
}

/// `POST /api/v4/{entity_type}/notes` (items name `entity_id`) and `POST /api/v4/{entity_type}/{id}/notes`.
pub(super) fn create_notes(
    desk: &mut Desk<'_>,
    request: &Request,
    entity_type: EntityType,
    path_entity: Option<u64>,
) -> Outcome {
    must_exist(desk, path_entity.map(|id| (entity_type, id)))?;
    let drafts = drafts(&request.body, MAX_BATCH, |checker, id| note_draft(checker, desk.account, id, path_entity))?;
    must_exist(desk, drafts.iter().filter_map(|draft| draft.entity_id.map(|id| (entity_type, id))))?;
    let write = format!("POST {}", request.path);
    let mut notes = Vec::new();
    for draft in drafts {
        let entity_id = draft.entity_id.unwrap_or_default();
        let note = Note {
            id: desk.ids.note(),
            entity_type,
            entity_id,
            note_type: draft.note_type,
            params: draft.params,
            created_by: draft.created_by.unwrap_or(request.bearer.user_id),
            responsible_user_id: draft.responsible.unwrap_or(request.bearer.user_id),
            created_at: draft.created_at.unwrap_or(request.now),
        };
        let is_call = note.note_type == "call_in" || note.note_type == "call_out";
        let id = insert_call_note(desk, &write, note, draft.uniq.as_deref().filter(|_| is_call));
        let path = format!("{}/{entity_id}/notes/{id}", entity_type.as_str());
        notes.push(json!({
            "id": id,
            "entity_id": entity_id,
            "request_id": draft.request_id,
            "_links": { "self": { "href": format!("{}/api/v4/{path}", request.api_base) } },
        }));
    }
    Ok(Reply::Hal(json!({ "_links": self_link(request), "_embedded": { "notes": notes } })))
}

/// `GET /api/v4/{entity_type}/notes?filter[note_type][]&filter[entity_id][]&filter[id][]` and
/// `GET /api/v4/{entity_type}/{id}/notes`.
pub(super) fn list_notes(
    desk: &mut Desk<'_>,
    request: &Request,
    entity_type: EntityType,
    path_entity: Option<u64>,
) -> Outcome {
    must_exist(desk, path_entity.map(|id| (entity_type, id)))?;
    let types = request.params("filter[note_type]");
    let entities = request.ids("filter[entity_id]")?;
    let ids = request.ids("filter[id]")?;
    let items = desk
        .crm
        .notes
        .values()
        .filter(|note| note.entity_type == entity_type)
        .filter(|note| path_entity.is_none_or(|id| note.entity_id == id))
        .filter(|note| entities.is_empty() || entities.contains(&note.entity_id))
        .filter(|note| ids.is_empty() || ids.contains(&note.id))
        .filter(|note| types.is_empty() || types.iter().any(|kind| kind.split(',').any(|kind| kind == note.note_type)))
        .map(|note| note_json(note, desk.account.id, &request.api_base))
        .collect();
    request.page("notes", items)
}

// ------------------------------------------------------------------------------------------------- tasks

struct TaskDraft {
    request_id: String,
    text: Option<String>,
    complete_till: Option<i64>,
    task_type_id: Option<u64>,
    entity: Option<(EntityType, u64)>,
    responsible: Option<u64>,
    created_by: Option<u64>,
    created_at: Option<i64>,
    is_completed: bool,
    duration: Option<u64>,
    result: Option<Value>,
}

fn task_draft(checker: &mut Checker<'_>, account: &Account, request_id: String) -> TaskDraft {
    let entity_type = checker.choice("entity_type", false, ENTITY_TYPES);
    let entity_id = checker.id("entity_id", false);
    let has = |key: &str| checker.object().get(key).is_some_and(|value| !value.is_null());
    let (has_type, has_id) = (has("entity_type"), has("entity_id"));
    if has_type && !has_id {
        checker.refuse(NOT_BLANK, "entity_id", "A task on an entity needs entity_id.".into());
    }
    if has_id && !has_type {
        checker.refuse(NOT_BLANK, "entity_type", "A task on an entity needs entity_type.".into());
    }
    let result = checker.nested("result", false).map(|result| {
        let value = Value::Object(result.object().clone());
        checker.absorb(result);
        value
    });
    TaskDraft {
        request_id,
        text: checker.string("text", true),
        complete_till: checker.int("complete_till", true),
        task_type_id: checker.id("task_type_id", false),
        entity: entity_type.as_deref().and_then(EntityType::parse).zip(entity_id),
        responsible: checker.user("responsible_user_id", account),
        created_by: checker.author("created_by", account),
        created_at: checker.int("created_at", false),
        is_completed: checker.bool("is_completed").unwrap_or(false),
        duration: checker.count("duration", false),
        result,
    }
}

/// `POST /api/v4/tasks`: `text` and `complete_till` required (KOMMO.md §2.7).
pub(super) fn create_tasks(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let drafts = drafts(&request.body, MAX_BATCH, |checker, id| task_draft(checker, desk.account, id))?;
    must_exist(desk, drafts.iter().filter_map(|draft| draft.entity))?;
    let mut tasks = Vec::new();
    for draft in drafts {
        let id = desk.ids.task();
        let task = Task {
            id,
            text: draft.text.unwrap_or_default(),
            complete_till: draft.complete_till.unwrap_or_default(),
            task_type_id: draft.task_type_id.unwrap_or(1),
            entity: draft.entity,
            responsible_user_id: draft.responsible.unwrap_or(request.bearer.user_id),
            created_by: draft.created_by.unwrap_or(request.bearer.user_id),
            created_at: draft.created_at.unwrap_or(request.now),
            is_completed: draft.is_completed,
            duration: draft.duration.unwrap_or_default() as i64,
            result: draft.result,
        };
        desk.crm.tasks.insert(id, task);
        let mut item = json!({ "id": id, "request_id": draft.request_id });
        item["_links"] = json!({ "self": { "href": format!("{}/api/v4/tasks/{id}", request.api_base) } });
        tasks.push(item);
    }
    Ok(Reply::Hal(json!({ "_links": self_link(request), "_embedded": { "tasks": tasks } })))
}

/// `GET /api/v4/tasks?filter[entity_type]&filter[entity_id][]&filter[is_completed]&filter[responsible_user_id][]
/// &filter[task_type][]&filter[id][]`.
pub(super) fn list_tasks(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let entity_types = request.params("filter[entity_type]");
    let entities = request.ids("filter[entity_id]")?;
    let responsible = request.ids("filter[responsible_user_id]")?;
    let kinds = request.ids("filter[task_type]")?;
    let ids = request.ids("filter[id]")?;
    let completed = match request.param("filter[is_completed]") {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => return Err(Refusal::bad_request("`filter[is_completed]` must be 0 or 1")),
    };
    let items = desk
        .crm
        .tasks
        .values()
        .filter(|task| {
            let entity_type = task.entity.map(|(entity_type, _)| entity_type.as_str());
            let entity_id = task.entity.map(|(_, id)| id);
            (entity_types.is_empty() || entity_type.is_some_and(|kind| entity_types.contains(&kind)))
                && (entities.is_empty() || entity_id.is_some_and(|id| entities.contains(&id)))
                && (responsible.is_empty() || responsible.contains(&task.responsible_user_id))
                && (kinds.is_empty() || kinds.contains(&task.task_type_id))
                && (ids.is_empty() || ids.contains(&task.id))
                && completed.is_none_or(|completed| task.is_completed == completed)
        })
        .map(|task| task_json(task, desk.account.id, &request.api_base))
        .collect();
    request.page("tasks", items)
}

// ---------------------------------------------------------------------------------------------- unsorted

struct SipDraft {
    request_id: String,
    source_uid: Option<String>,
    source_name: Option<String>,
    pipeline_id: Option<u64>,
    created_at: Option<i64>,
    metadata: Value,
    uniq: Option<String>,
    from: Option<String>,
    call_params: Value,
    call_responsible: Option<u64>,
    lead_name: Option<String>,
    lead_price: i64,
    lead_responsible: Option<u64>,
    contact: Option<ContactDraft>,
}

/// One `POST /api/v4/leads/unsorted/sip` item: `source_uid`, `source_name` and `metadata` required, and in
/// `metadata` `uniq`, `from`, `phone`, `called_at`, `duration` and `service_code` (`link`,
/// `is_call_event_needed`, `call_responsible` optional); `_embedded` holds at most one lead and one contact.
fn sip_draft(checker: &mut Checker<'_>, account: &Account, request_id: String) -> SipDraft {
    let mut draft = SipDraft {
        request_id,
        source_uid: checker.string("source_uid", true),
        source_name: checker.string("source_name", true),
        pipeline_id: checker.id("pipeline_id", false),
        created_at: checker.int("created_at", false),
        metadata: checker.object().get("metadata").cloned().unwrap_or(Value::Null),
        uniq: None,
        from: None,
        call_params: json!({}),
        call_responsible: None,
        lead_name: None,
        lead_price: 0,
        lead_responsible: None,
        contact: None,
    };
    if let Some(mut metadata) = checker.nested("metadata", true) {
        draft.uniq = metadata.string("uniq", true);
        draft.from = metadata.string("from", true);
        metadata.string("phone", true);
        metadata.int("called_at", true);
        let duration = metadata.count("duration", true);
        let service_code = metadata.string("service_code", true);
        let link = metadata.string("link", false);
        metadata.bool("is_call_event_needed");
        let responsible = call_responsible(&mut metadata, "call_responsible");
        draft.call_responsible =
            responsible.and_then(|user| user.as_u64()).filter(|id| account.users.iter().any(|user| user.id == *id));
        draft.call_params = json!({ "uniq": draft.uniq, "duration": duration, "source": service_code,
                                    "phone": draft.from });
        if let Some(link) = link {
            draft.call_params["link"] = json!(link);
        }
        checker.absorb(metadata);
    }
    if let Some(mut embedded) = checker.nested("_embedded", false) {
        for key in ["leads", "contacts", "companies"] {
            let entries = embedded.array(key, false).map(Vec::as_slice).unwrap_or_default();
            if entries.len() > 1 {
                embedded.refuse(COUNT_EXCEEDED, key, "At most one per unsorted item.".into());
            }
            let Some(entry) = entries.first() else { continue };
            let mut item = Checker::within(entry, embedded.path(&format!("{key}.0.")));
            match key {
                "leads" => {
                    draft.lead_name = item.string("name", false);
                    draft.lead_price = item.count("price", false).unwrap_or_default() as i64;
                    draft.lead_responsible = item.user("responsible_user_id", account);
                }
                "contacts" => draft.contact = Some(contact_draft(&mut item, account)),
                _ => {}
            }
            embedded.absorb(item);
        }
        checker.absorb(embedded);
    }
    draft
}

/// `POST /api/v4/leads/unsorted/sip`: each item creates a lead in the incoming leads stage and a contact
/// with the caller's number, and puts the call (`call_in` note with the metadata's uniq, duration,
/// `service_code` as source, link and `from` as phone) on the lead.
pub(super) fn create_sip(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let drafts = drafts(&request.body, MAX_BATCH, |checker, id| sip_draft(checker, desk.account, id))?;
    let write = format!("POST {}", request.path);
    let mut unsorted = Vec::new();
    for draft in drafts {
        let from = draft.from.unwrap_or_default();
        let responsible = draft.lead_responsible.or(draft.call_responsible).unwrap_or(request.bearer.user_id);
        let mut contact = draft.contact.unwrap_or_else(|| ContactDraft {
            name: from.clone(),
            first_name: String::new(),
            last_name: String::new(),
            responsible: None,
            created_by: None,
            created_at: None,
            fields: Vec::new(),
        });
        if contact.name.is_empty() {
            contact.name.clone_from(&from);
        }
        if !contact.fields.iter().any(|field| field.field_code == "PHONE") && !digits(&from).is_empty() {
            let value = FieldValue { value: from.clone(), enum_code: "WORK".to_owned() };
            contact.fields.push(Field { field_id: PHONE_FIELD_ID, field_code: "PHONE", values: vec![value] });
        }
        contact.responsible = contact.responsible.or(Some(responsible));
        let contact_id = insert_contact(desk, request, contact, true);
        let lead_id = desk.ids.lead();
        let created_at = draft.created_at.unwrap_or(request.now);
        let pipeline_id = draft.pipeline_id.unwrap_or(PIPELINE_ID);
        let lead = Lead {
            id: lead_id,
            name: draft.lead_name.unwrap_or_else(|| format!("Incoming call from {from}")),
            price: draft.lead_price,
            status_id: UNSORTED_STATUS_ID,
            pipeline_id,
            responsible_user_id: responsible,
            created_by: 0,
            created_at,
            updated_at: created_at,
            closed_at: None,
            contacts: Vec::new(),
            companies: Vec::new(),
        };
        desk.crm.leads.insert(lead_id, lead);
        desk.crm.changed(EntityType::Leads, Action::Add, lead_id, None);
        desk.crm.link(lead_id, contact_id);
        let note = Note {
            id: desk.ids.note(),
            entity_type: EntityType::Leads,
            entity_id: lead_id,
            note_type: "call_in".to_owned(),
            params: draft.call_params,
            created_by: 0,
            responsible_user_id: responsible,
            created_at,
        };
        insert_call_note(desk, &write, note, draft.uniq.as_deref());
        let uid = uuid::Uuid::new_v4().simple().to_string();
        let item = Unsorted {
            uid: uid.clone(),
            source_uid: draft.source_uid.unwrap_or_default(),
            source_name: draft.source_name.unwrap_or_default(),
            pipeline_id,
            created_at,
            metadata: draft.metadata,
            lead_id,
            contact_id,
            accepted: false,
        };
        desk.crm.unsorted.insert(uid.clone(), item);
        unsorted.push(json!({
            "uid": uid,
            "account_id": desk.account.id,
            "request_id": draft.request_id,
            "_embedded": {
                "leads": [reference(&request.api_base, EntityType::Leads, lead_id)],
                "contacts": [reference(&request.api_base, EntityType::Contacts, contact_id)],
                "companies": [],
            },
        }));
    }
    Ok(Reply::Hal(json!({ "_total_items": unsorted.len(), "_embedded": { "unsorted": unsorted } })))
}

/// `GET /api/v4/leads/unsorted?filter[category][]&filter[uid][]&filter[pipeline_id]`: items not accepted yet.
pub(super) fn list_unsorted(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let categories = request.params("filter[category]");
    let uids = request.params("filter[uid]");
    let pipelines = request.ids("filter[pipeline_id]")?;
    let crm = &*desk.crm;
    let items = crm
        .unsorted
        .values()
        .filter(|item| !item.accepted)
        .filter(|_| categories.is_empty() || categories.iter().any(|category| category.split(',').any(|c| c == "sip")))
        .filter(|item| uids.is_empty() || uids.contains(&item.uid.as_str()))
        .filter(|item| pipelines.is_empty() || pipelines.contains(&item.pipeline_id))
        .map(|item| unsorted_json(crm, item, desk.account.id, &request.api_base))
        .collect();
    request.page("unsorted", items)
}

/// `GET /api/v4/leads/unsorted/{uid}`: 404 once accepted.
pub(super) fn show_unsorted(desk: &mut Desk<'_>, request: &Request, uid: &str) -> Outcome {
    let item = desk
        .crm
        .unsorted
        .get(uid)
        .filter(|item| !item.accepted)
        .ok_or_else(|| Refusal::not_found(format!("Unsorted item {uid} not found")))?;
    Ok(Reply::Hal(unsorted_json(desk.crm, item, desk.account.id, &request.api_base)))
}

/// `POST /api/v4/leads/unsorted/{uid}/accept` `{user_id?, status_id?}`: the lead moves to `status_id` (the
/// first stage by default) with `user_id` (the token's user by default) responsible for it and the contact;
/// accepting again is 400.
pub(super) fn accept_unsorted(desk: &mut Desk<'_>, request: &Request, uid: &str) -> Outcome {
    let empty = json!({});
    let body = if request.body.is_null() { &empty } else { &request.body };
    let mut checker = Checker::new(body);
    let user_id = checker.user("user_id", desk.account);
    let status_id = checker.id("status_id", false);
    if status_id == Some(UNSORTED_STATUS_ID) {
        checker.refuse(NOT_SUPPORTED_CHOICE, "status_id", "Accepting moves the lead out of incoming leads.".into());
    }
    let mut report = Report::default();
    report.add("0", checker.into_errors());
    verdict(report)?;
    let item =
        desk.crm.unsorted.get_mut(uid).ok_or_else(|| Refusal::not_found(format!("Unsorted item {uid} not found")))?;
    if item.accepted {
        return Err(Refusal::bad_request(format!("Unsorted item {uid} was already accepted")));
    }
    item.accepted = true;
    let (lead_id, contact_id, pipeline_id) = (item.lead_id, item.contact_id, item.pipeline_id);
    let responsible = user_id.unwrap_or(request.bearer.user_id);
    let mut changes = Vec::new();
    if let Some(lead) = desk.crm.leads.get_mut(&lead_id) {
        let (old_status, old_responsible) = (lead.status_id, lead.responsible_user_id);
        lead.status_id = status_id.unwrap_or(FIRST_STATUS_ID);
        lead.responsible_user_id = responsible;
        lead.updated_at = request.now;
        if lead.status_id == WON_STATUS_ID || lead.status_id == LOST_STATUS_ID {
            lead.closed_at = Some(request.now);
        }
        changes.push((EntityType::Leads, Action::Update, None));
        if lead.status_id != old_status {
            changes.push((EntityType::Leads, Action::Status, Some(old_status)));
        }
        if responsible != old_responsible {
            changes.push((EntityType::Leads, Action::Responsible, Some(old_responsible)));
        }
    }
    if let Some(contact) = desk.crm.contacts.get_mut(&contact_id) {
        let old_responsible = contact.responsible_user_id;
        contact.is_unsorted = false;
        contact.responsible_user_id = responsible;
        contact.updated_at = request.now;
        changes.push((EntityType::Contacts, Action::Update, None));
        if responsible != old_responsible {
            changes.push((EntityType::Contacts, Action::Responsible, Some(old_responsible)));
        }
    }
    for (entity_type, action, old) in changes {
        let id = if entity_type == EntityType::Leads { lead_id } else { contact_id };
        desk.crm.changed(entity_type, action, id, old);
    }
    Ok(Reply::Hal(json!({
        "uid": uid,
        "pipeline_id": pipeline_id,
        "category": "sip",
        "created_at": request.now,
        "_embedded": {
            "leads": [reference(&request.api_base, EntityType::Leads, lead_id)],
            "contacts": [reference(&request.api_base, EntityType::Contacts, contact_id)],
        },
    })))
}

// ------------------------------------------------------------------------------------------- call events

/// One `add` item of `POST /api/v2/events`.
struct EventDraft {
    phone_number: Option<String>,
    users: Option<Vec<u64>>,
}

fn event_draft(checker: &mut Checker<'_>, account: &Account) -> EventDraft {
    checker.choice("type", true, &["phone_call"]);
    let phone_number = checker.string("phone_number", true);
    let mut users = None;
    if let Some(entries) = checker.array("users", false) {
        let mut ids = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let key = format!("users.{index}");
            match entry.as_u64().filter(|id| *id > 0) {
                Some(id) if account.users.iter().any(|user| user.id == id) => ids.push(id),
                Some(id) => {
                    checker.refuse(NOT_SUPPORTED_CHOICE, &key, format!("User {id} is not a user of this account."))
                }
                None => checker.refuse(super::check::INVALID_TYPE, &key, "This value should be a user id.".into()),
            }
        }
        users = Some(ids);
    }
    EventDraft { phone_number, users }
}

/// `POST /api/v2/events` `{"add": [{"type": "phone_call", "phone_number", "users"?}]}` (KOMMO.md §2.3): Kommo's
/// own incoming-call popup for the users named (everyone active when `users` is left out), showing the one
/// active lead of the contact or company with the number's last 8 digits, else that contact or company.
/// Answers 202 with no body; each notification is kept for `GET /sandbox/kommo/notifications`.
pub(super) fn create_events(desk: &mut Desk<'_>, request: &Request) -> Outcome {
    let Some(add) = request.body.as_object().and_then(|body| body.get("add")).filter(|add| add.is_array()) else {
        return Err(Refusal::bad_request("The request body must be an object with an `add` array"));
    };
    let drafts = drafts(add, MAX_BATCH, |checker, _| event_draft(checker, desk.account))?;
    let everyone: Vec<u64> = desk.account.users.iter().filter(|user| user.is_active).map(|user| user.id).collect();
    for draft in drafts {
        let phone_number = draft.phone_number.unwrap_or_default();
        let notification = Notification {
            kind: "phone_call".to_owned(),
            entity: desk.crm.notification_entity(&phone_number),
            phone_number,
            notified: draft.users.clone().unwrap_or_else(|| everyone.clone()),
            users: draft.users,
            created_by: request.bearer.user_id,
            created_at: request.now,
        };
        desk.crm.notifications.push(notification);
    }
    Ok(Reply::Accepted)
}
