//! Entities made "by hand in Kommo" rather than through the API: contacts and companies with their phones
//! and leads, for the control endpoints `POST /sandbox/kommo/contacts` (and `/contacts/batch`, up to
//! [`MAX_SEED_BATCH`] at once) and `POST /sandbox/kommo/companies` and for the sample callers of the local
//! Kommo's demo account ([`crate::samples`]); and hand edits and deletes of contacts and companies
//! (`PATCH`/`DELETE /sandbox/kommo/{contacts|companies}/{id}`), each moving `updated_at` forward. Not API
//! writes: not logged, not rate-limited, no call uniq.

use serde::Deserialize;
use serde_json::Value;

use super::StandIn;
use super::crm::{
    Company, Contact, EMAIL_FIELD_ID, EntityType, FIRST_STATUS_ID, Field, FieldValue, LOST_STATUS_ID, Lead,
    PHONE_FIELD_ID, PIPELINE_ID, UNSORTED_STATUS_ID, WON_STATUS_ID, company_json, contact_json, lead_json, stage,
};
use super::ledger::{Account, Desk};
use super::webhooks::Action;

/// A phone as seeded: a bare number (`WORK`), or a number with its `enum_code`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SeedPhone {
    Number(String),
    Typed {
        value: String,
        /// `WORK`, `WORKDD`, `MOB`, `FAX`, `HOME` or `OTHER`.
        enum_code: String,
    },
}

const PHONE_CODES: &[&str] = &["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"];

/// A lead of a seeded contact or company.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLead {
    pub name: Option<String>,
    /// A stage of the pipeline other than incoming leads (`GET /api/v4/leads/pipelines`); the first stage
    /// by default.
    pub status_id: Option<u64>,
    /// The contact's or company's responsible user by default.
    pub responsible_user_id: Option<u64>,
    /// The lead's budget; 0 by default.
    #[serde(default)]
    pub price: u64,
}

/// `POST /sandbox/kommo/contacts` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedContact {
    pub account_id: u64,
    pub name: String,
    #[serde(default)]
    pub phones: Vec<SeedPhone>,
    #[serde(default)]
    pub emails: Vec<String>,
    /// The account's admin by default.
    pub responsible_user_id: Option<u64>,
    /// A company of the account the contact belongs to (its `_embedded.companies`).
    pub company_id: Option<u64>,
    #[serde(default)]
    pub leads: Vec<SeedLead>,
}

/// One contact of `POST /sandbox/kommo/contacts/batch`: [`SeedContact`] without `account_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSeed {
    pub name: String,
    #[serde(default)]
    pub phones: Vec<SeedPhone>,
    #[serde(default)]
    pub emails: Vec<String>,
    pub responsible_user_id: Option<u64>,
    pub company_id: Option<u64>,
    #[serde(default)]
    pub leads: Vec<SeedLead>,
}

impl SeedContact {
    /// The account and the contact.
    pub fn split(self) -> (u64, ContactSeed) {
        let SeedContact { account_id, name, phones, emails, responsible_user_id, company_id, leads } = self;
        (account_id, ContactSeed { name, phones, emails, responsible_user_id, company_id, leads })
    }
}

/// `POST /sandbox/kommo/contacts/batch` body: up to [`MAX_SEED_BATCH`] contacts of one account, written all or
/// none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedContacts {
    pub account_id: u64,
    pub contacts: Vec<ContactSeed>,
}

/// The most contacts one bulk seed takes.
pub const MAX_SEED_BATCH: usize = 20_000;

/// `PATCH /sandbox/kommo/contacts/{id}` and `PATCH /sandbox/kommo/companies/{id}` body: what changes; `phones`
/// replaces the whole list (an empty list removes them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub name: Option<String>,
    pub phones: Option<Vec<SeedPhone>>,
    pub responsible_user_id: Option<u64>,
}

/// `PATCH /sandbox/kommo/leads/{id}` body: what changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadEdit {
    pub name: Option<String>,
    /// A stage of the pipeline other than incoming leads; won (142) and lost (143) close the lead.
    pub status_id: Option<u64>,
    pub responsible_user_id: Option<u64>,
    pub price: Option<u64>,
}

/// Why a hand edit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// No account has a contact (company) with this id.
    NotFound,
    /// The edit names a user who is not one of the account's, or a phone type Kommo does not have.
    Refused(String),
}

/// `POST /sandbox/kommo/companies` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCompany {
    pub account_id: u64,
    pub name: String,
    #[serde(default)]
    pub phones: Vec<SeedPhone>,
    /// The account's admin by default.
    pub responsible_user_id: Option<u64>,
    #[serde(default)]
    pub leads: Vec<SeedLead>,
}

/// What a seed made: the contact's or company's id and its leads' ids, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub id: u64,
    pub lead_ids: Vec<u64>,
}

/// Whose a seeded entity or lead is: the id given (a user of the account), else the account's admin.
fn owner(account: &Account, id: Option<u64>) -> Result<u64, String> {
    match id {
        None => Ok(account.admin().map(|user| user.id).unwrap_or_default()),
        Some(id) if account.users.iter().any(|user| user.id == id) => Ok(id),
        Some(id) => Err(format!("user {id} is not a user of account {}", account.id)),
    }
}

fn phone_field(phones: &[SeedPhone]) -> Result<Option<Field>, String> {
    let mut values = Vec::new();
    for phone in phones {
        let (value, enum_code) = match phone {
            SeedPhone::Number(value) => (value.clone(), "WORK".to_owned()),
            SeedPhone::Typed { value, enum_code } => (value.clone(), enum_code.clone()),
        };
        if !PHONE_CODES.contains(&enum_code.as_str()) {
            return Err(format!("enum_code `{enum_code}` is not one of {}", PHONE_CODES.join(", ")));
        }
        values.push(FieldValue { value, enum_code });
    }
    Ok((!values.is_empty()).then_some(Field { field_id: PHONE_FIELD_ID, field_code: "PHONE", values }))
}

/// Checks the leads' stages and owners before anything is written; answers each lead's owner.
fn lead_owners(account: &Account, leads: &[SeedLead], default_owner: u64) -> Result<Vec<u64>, String> {
    leads
        .iter()
        .map(|lead| {
            if let Some(status_id) = lead.status_id
                && (status_id == UNSORTED_STATUS_ID || stage(status_id).is_none())
            {
                return Err(format!(
                    "status_id {status_id} is not a stage of pipeline {PIPELINE_ID} a lead can be put in by hand"
                ));
            }
            owner(account, lead.responsible_user_id.or(Some(default_owner)))
        })
        .collect()
}

/// Writes the leads (already checked) with their owners; answers their ids.
fn insert_leads(desk: &mut Desk<'_>, leads: Vec<SeedLead>, owners: Vec<u64>, now: i64) -> Vec<u64> {
    let mut ids = Vec::new();
    for (lead, owner) in leads.into_iter().zip(owners) {
        let id = desk.ids.lead();
        let status_id = lead.status_id.unwrap_or(FIRST_STATUS_ID);
        let closed = status_id == WON_STATUS_ID || status_id == LOST_STATUS_ID;
        let lead = Lead {
            id,
            name: lead.name.unwrap_or_else(|| format!("Lead #{id}")),
            price: i64::try_from(lead.price).unwrap_or(i64::MAX),
            status_id,
            pipeline_id: PIPELINE_ID,
            responsible_user_id: owner,
            created_by: owner,
            created_at: now,
            updated_at: now,
            closed_at: closed.then_some(now),
            contacts: Vec::new(),
            companies: Vec::new(),
        };
        desk.crm.leads.insert(id, lead);
        desk.crm.changed(EntityType::Leads, Action::Add, id, None);
        ids.push(id);
    }
    ids
}

/// A contact's checked owner, leads' owners and fields.
struct Checked {
    responsible: u64,
    owners: Vec<u64>,
    fields: Vec<Field>,
}

/// Checks a contact to seed against its account (users, company, stages, phone types).
fn check_contact(desk: &Desk<'_>, seed: &ContactSeed) -> Result<Checked, String> {
    let account = desk.account;
    let responsible = owner(account, seed.responsible_user_id)?;
    let owners = lead_owners(account, &seed.leads, responsible)?;
    if let Some(company) = seed.company_id
        && !desk.crm.companies.contains_key(&company)
    {
        return Err(format!("account {} has no company {company}", account.id));
    }
    let mut fields: Vec<Field> = phone_field(&seed.phones)?.into_iter().collect();
    if !seed.emails.is_empty() {
        let values =
            seed.emails.iter().map(|email| FieldValue { value: email.clone(), enum_code: "WORK".into() }).collect();
        fields.push(Field { field_id: EMAIL_FIELD_ID, field_code: "EMAIL", values });
    }
    Ok(Checked { responsible, owners, fields })
}

/// Writes a checked contact and its leads.
fn insert_contact(desk: &mut Desk<'_>, seed: ContactSeed, checked: Checked, now: i64) -> Seeded {
    let contact_id = desk.ids.contact();
    let contact = Contact {
        id: contact_id,
        name: seed.name,
        first_name: String::new(),
        last_name: String::new(),
        responsible_user_id: checked.responsible,
        created_by: checked.responsible,
        created_at: now,
        updated_at: now,
        fields: checked.fields,
        leads: Vec::new(),
        companies: seed.company_id.into_iter().collect(),
        is_unsorted: false,
    };
    desk.crm.contacts.insert(contact_id, contact);
    desk.crm.changed(EntityType::Contacts, Action::Add, contact_id, None);
    let lead_ids = insert_leads(desk, seed.leads, checked.owners, now);
    for lead in &lead_ids {
        desk.crm.link(*lead, contact_id);
    }
    Seeded { id: contact_id, lead_ids }
}

/// The `PHONE` field replaced by `phones` (none: removed), other fields kept.
fn replace_phones(fields: &mut Vec<Field>, phones: Option<Field>) {
    fields.retain(|field| field.field_code != "PHONE");
    if let Some(phones) = phones {
        fields.insert(0, phones);
    }
}

/// An edited entity's `updated_at`: now, and never the same second as before, so that an incremental sync
/// from the previous value sees the edit.
fn touched(previous: i64) -> i64 {
    super::unix_now().max(previous + 1)
}

impl StandIn {
    /// A contact with its phones, emails, company and leads, as if made in Kommo by hand. Refuses (saying
    /// why) an unknown account, user, company or stage before writing anything.
    pub fn seed_contact(&self, seed: SeedContact) -> Result<Seeded, String> {
        let (account_id, seed) = seed.split();
        let mut seeded = self
            .seed_contacts(account_id, vec![seed])
            .map_err(|error| error.strip_prefix("contacts[0]: ").map(str::to_owned).unwrap_or(error))?;
        Ok(seeded.remove(0))
    }

    /// Contacts seeded like [`StandIn::seed_contact`], all or none (at most [`MAX_SEED_BATCH`]); a refusal
    /// names the contact (`contacts[3]: ...`). Answers what each made, in order.
    pub fn seed_contacts(&self, account_id: u64, seeds: Vec<ContactSeed>) -> Result<Vec<Seeded>, String> {
        if seeds.len() > MAX_SEED_BATCH {
            return Err(format!("at most {MAX_SEED_BATCH} contacts per batch, got {}", seeds.len()));
        }
        let mut ledger = self.ledger();
        let mut desk = ledger.desk(account_id).ok_or_else(|| format!("no account {account_id}"))?;
        let checked = seeds
            .iter()
            .enumerate()
            .map(|(index, seed)| check_contact(&desk, seed).map_err(|error| format!("contacts[{index}]: {error}")))
            .collect::<Result<Vec<_>, String>>()?;
        let now = super::unix_now();
        let seeded = seeds
            .into_iter()
            .zip(checked)
            .map(|(seed, checked)| insert_contact(&mut desk, seed, checked, now))
            .collect();
        self.notify(ledger, account_id);
        Ok(seeded)
    }

    /// Edits a contact by hand (`name`, `phones`, `responsible_user_id`); its `updated_at` becomes now, and at
    /// least one second later than before. Answers the contact as the API shows it (`with=leads`).
    pub fn edit_contact(&self, id: u64, edit: Edit) -> Result<Value, EditError> {
        let mut ledger = self.ledger();
        let account_id = ledger.holder(EntityType::Contacts, id).ok_or(EditError::NotFound)?;
        let desk = ledger.desk(account_id).ok_or(EditError::NotFound)?;
        let responsible = edit.responsible_user_id.map(|user| owner(desk.account, Some(user))).transpose();
        let responsible = responsible.map_err(EditError::Refused)?;
        let phones = edit.phones.as_deref().map(phone_field).transpose().map_err(EditError::Refused)?;
        let contact = desk.crm.contacts.get_mut(&id).ok_or(EditError::NotFound)?;
        if let Some(name) = edit.name {
            contact.name = name;
        }
        let old_responsible = contact.responsible_user_id;
        if let Some(user) = responsible {
            contact.responsible_user_id = user;
        }
        if let Some(phones) = phones {
            replace_phones(&mut contact.fields, phones);
        }
        contact.updated_at = touched(contact.updated_at);
        let responsible_changed = contact.responsible_user_id != old_responsible;
        desk.crm.changed(EntityType::Contacts, Action::Update, id, None);
        if responsible_changed {
            desk.crm.changed(EntityType::Contacts, Action::Responsible, id, Some(old_responsible));
        }
        let body = contact_json(desk.crm, &desk.crm.contacts[&id], account_id, &self.api_base(), true);
        self.notify(ledger, account_id);
        Ok(body)
    }

    /// Deletes a contact by hand: it leaves its leads, which stay.
    pub fn delete_contact(&self, id: u64) -> Result<(), EditError> {
        let mut ledger = self.ledger();
        let account_id = ledger.holder(EntityType::Contacts, id).ok_or(EditError::NotFound)?;
        let desk = ledger.desk(account_id).ok_or(EditError::NotFound)?;
        desk.crm.contacts.remove(&id).ok_or(EditError::NotFound)?;
        for lead in desk.crm.leads.values_mut() {
            lead.contacts.retain(|contact| *contact != id);
        }
        desk.crm.changed(EntityType::Contacts, Action::Delete, id, None);
        self.notify(ledger, account_id);
        Ok(())
    }

    /// Edits a company by hand, like [`StandIn::edit_contact`]; answers it as the API shows it
    /// (`with=leads,contacts`).
    pub fn edit_company(&self, id: u64, edit: Edit) -> Result<Value, EditError> {
        let mut ledger = self.ledger();
        let account_id = ledger.holder(EntityType::Companies, id).ok_or(EditError::NotFound)?;
        let desk = ledger.desk(account_id).ok_or(EditError::NotFound)?;
        let responsible = edit.responsible_user_id.map(|user| owner(desk.account, Some(user))).transpose();
        let responsible = responsible.map_err(EditError::Refused)?;
        let phones = edit.phones.as_deref().map(phone_field).transpose().map_err(EditError::Refused)?;
        let company = desk.crm.companies.get_mut(&id).ok_or(EditError::NotFound)?;
        if let Some(name) = edit.name {
            company.name = name;
        }
        let old_responsible = company.responsible_user_id;
        if let Some(user) = responsible {
            company.responsible_user_id = user;
        }
        if let Some(phones) = phones {
            replace_phones(&mut company.fields, phones);
        }
        company.updated_at = touched(company.updated_at);
        let responsible_changed = company.responsible_user_id != old_responsible;
        desk.crm.changed(EntityType::Companies, Action::Update, id, None);
        if responsible_changed {
            desk.crm.changed(EntityType::Companies, Action::Responsible, id, Some(old_responsible));
        }
        let body = company_json(desk.crm, &desk.crm.companies[&id], account_id, &self.api_base(), true, true);
        self.notify(ledger, account_id);
        Ok(body)
    }

    /// Edits a lead by hand (`name`, `status_id`, `responsible_user_id`, `price`), like
    /// [`StandIn::edit_contact`]: webhooks `update_lead`, and `status_lead` / `responsible_lead` when those
    /// change. Answers the lead as the API shows it (`with=contacts`).
    pub fn edit_lead(&self, id: u64, edit: LeadEdit) -> Result<Value, EditError> {
        let mut ledger = self.ledger();
        let account_id = ledger.holder(EntityType::Leads, id).ok_or(EditError::NotFound)?;
        let desk = ledger.desk(account_id).ok_or(EditError::NotFound)?;
        let responsible = edit.responsible_user_id.map(|user| owner(desk.account, Some(user))).transpose();
        let responsible = responsible.map_err(EditError::Refused)?;
        if let Some(status_id) = edit.status_id
            && (status_id == UNSORTED_STATUS_ID || stage(status_id).is_none())
        {
            let reason =
                format!("status_id {status_id} is not a stage of pipeline {PIPELINE_ID} a lead can be put in by hand");
            return Err(EditError::Refused(reason));
        }
        let lead = desk.crm.leads.get_mut(&id).ok_or(EditError::NotFound)?;
        let (old_status, old_responsible) = (lead.status_id, lead.responsible_user_id);
        if let Some(name) = edit.name {
            lead.name = name;
        }
        if let Some(price) = edit.price {
            lead.price = i64::try_from(price).unwrap_or(i64::MAX);
        }
        if let Some(user) = responsible {
            lead.responsible_user_id = user;
        }
        lead.updated_at = touched(lead.updated_at);
        if let Some(status_id) = edit.status_id {
            lead.status_id = status_id;
            let closed = status_id == WON_STATUS_ID || status_id == LOST_STATUS_ID;
            lead.closed_at = closed.then_some(lead.updated_at);
        }
        let (status, responsible) = (lead.status_id, lead.responsible_user_id);
        desk.crm.changed(EntityType::Leads, Action::Update, id, None);
        if status != old_status {
            desk.crm.changed(EntityType::Leads, Action::Status, id, Some(old_status));
        }
        if responsible != old_responsible {
            desk.crm.changed(EntityType::Leads, Action::Responsible, id, Some(old_responsible));
        }
        let body = lead_json(desk.crm, &desk.crm.leads[&id], account_id, &self.api_base(), true);
        self.notify(ledger, account_id);
        Ok(body)
    }

    /// Deletes a company by hand: its contacts and leads stay, without it.
    pub fn delete_company(&self, id: u64) -> Result<(), EditError> {
        let mut ledger = self.ledger();
        let account_id = ledger.holder(EntityType::Companies, id).ok_or(EditError::NotFound)?;
        let desk = ledger.desk(account_id).ok_or(EditError::NotFound)?;
        desk.crm.companies.remove(&id).ok_or(EditError::NotFound)?;
        for contact in desk.crm.contacts.values_mut() {
            contact.companies.retain(|company| *company != id);
        }
        for lead in desk.crm.leads.values_mut() {
            lead.companies.retain(|company| *company != id);
        }
        desk.crm.changed(EntityType::Companies, Action::Delete, id, None);
        self.notify(ledger, account_id);
        Ok(())
    }

    /// A company with its phones and leads, as if made in Kommo by hand. Refuses (saying why) an unknown
    /// account, user or stage before writing anything.
    pub fn seed_company(&self, seed: SeedCompany) -> Result<Seeded, String> {
        let mut ledger = self.ledger();
        let mut desk = ledger.desk(seed.account_id).ok_or_else(|| format!("no account {}", seed.account_id))?;
        let account = desk.account;
        let responsible = owner(account, seed.responsible_user_id)?;
        let owners = lead_owners(account, &seed.leads, responsible)?;
        let fields = phone_field(&seed.phones)?.into_iter().collect();
        let now = super::unix_now();
        let company_id = desk.ids.company();
        let company = Company {
            id: company_id,
            name: seed.name,
            responsible_user_id: responsible,
            created_by: responsible,
            created_at: now,
            updated_at: now,
            fields,
        };
        desk.crm.companies.insert(company_id, company);
        desk.crm.changed(EntityType::Companies, Action::Add, company_id, None);
        let lead_ids = insert_leads(&mut desk, seed.leads, owners, now);
        for lead in &lead_ids {
            if let Some(lead) = desk.crm.leads.get_mut(lead) {
                lead.companies.push(company_id);
            }
        }
        let account_id = seed.account_id;
        self.notify(ledger, account_id);
        Ok(Seeded { id: company_id, lead_ids })
    }
}
