//! Entities made "by hand in Kommo" rather than through the API: contacts and companies with their phones
//! and leads, for the control endpoints `POST /sandbox/kommo/contacts` and `POST /sandbox/kommo/companies`
//! and for the sample callers of the local Kommo's demo account ([`crate::samples`]). Not API writes: not
//! logged, not rate-limited, no call uniq.

use serde::Deserialize;

use super::StandIn;
use super::crm::{
    Company, Contact, EMAIL_FIELD_ID, FIRST_STATUS_ID, Field, FieldValue, LOST_STATUS_ID, Lead, PHONE_FIELD_ID,
    PIPELINE_ID, UNSORTED_STATUS_ID, WON_STATUS_ID, stage,
};
use super::ledger::{Account, Desk};

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
        ids.push(id);
    }
    ids
}

impl StandIn {
    /// A contact with its phones, emails, company and leads, as if made in Kommo by hand. Refuses (saying
    /// why) an unknown account, user, company or stage before writing anything.
    pub fn seed_contact(&self, seed: SeedContact) -> Result<Seeded, String> {
        let mut ledger = self.ledger();
        let mut desk = ledger.desk(seed.account_id).ok_or_else(|| format!("no account {}", seed.account_id))?;
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
        let now = super::unix_now();
        let contact_id = desk.ids.contact();
        let contact = Contact {
            id: contact_id,
            name: seed.name,
            first_name: String::new(),
            last_name: String::new(),
            responsible_user_id: responsible,
            created_by: responsible,
            created_at: now,
            updated_at: now,
            fields,
            leads: Vec::new(),
            companies: seed.company_id.into_iter().collect(),
            is_unsorted: false,
        };
        desk.crm.contacts.insert(contact_id, contact);
        let lead_ids = insert_leads(&mut desk, seed.leads, owners, now);
        for lead in &lead_ids {
            desk.crm.link(*lead, contact_id);
        }
        Ok(Seeded { id: contact_id, lead_ids })
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
        let lead_ids = insert_leads(&mut desk, seed.leads, owners, now);
        for lead in &lead_ids {
            if let Some(lead) = desk.crm.leads.get_mut(lead) {
                lead.companies.push(company_id);
            }
        }
        Ok(Seeded { id: company_id, lead_ids })
    }
}
