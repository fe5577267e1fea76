//! The sample callers of the local Kommo's demo account (the account `cargo xtask run` opens): a newcomer picks
//! one in the host page's call panel and sees what each kind of caller does.
//!
//! | Sample | Number | What Kommo knows |
//! |---|---|---|
//! | Maria Silva | +55 11 98765-4321 (mobile) | A contact, responsible Juan Pérez, with one open lead "Website redesign" (R$ 12,500, Qualified): the lead the host page's card shows |
//! | Acme Ltda | +55 11 3456-7800 | A company with that phone and no contact with it, no leads |
//! | Unknown caller | +55 21 97654-3210 | Nothing (until a call makes a contact or an incoming lead of it) |
//!
//! They are seeded once at start, so in a fresh local Kommo the ids are the first of each kind: contact
//! 20000001, lead 30000001, company 25000001.
//!
//! The lists (contacts, companies, leads) hold more, for click-to-call and call lists ([`LIST_CONTACTS`],
//! [`LIST_COMPANIES`]): five contacts (one without a number, one with two, one whose number the VoIP provider
//! stand-in never gets answered: [`NO_ANSWER_PHONE`]), three companies (one without a number) and five leads (one
//! whose contact has no number, one with a company and no contact).

use serde::Serialize;

use crate::kommo_api::StandIn;
use crate::kommo_api::crm::{FIRST_STATUS_ID, PROPOSAL_STATUS_ID, QUALIFIED_STATUS_ID, stage};
use crate::kommo_api::seed::{SeedCompany, SeedContact, SeedLead, SeedPhone};

/// The number every sample calls: the account's line.
pub const LINE: &str = "+551133330000";

/// Maria Silva's mobile, as the contact shows it.
pub const CONTACT_PHONE: &str = "+55 11 98765-4321";
/// Acme Ltda's phone, as the company shows it.
pub const COMPANY_PHONE: &str = "+55 11 3456-7800";
/// A number nobody in the account has.
pub const UNKNOWN_PHONE: &str = "+55 21 97654-3210";
/// Diego Ramos's mobile: the demo's provider account never gets a call to it answered.
pub const NO_ANSWER_PHONE: &str = "+55 21 99876-5432";

/// A lead of the lists: name, stage, budget.
pub type ListLead = (&'static str, u64, u64);
/// A contact of the lists beyond Maria Silva: name, phones (`enum_code`, number), email, its lead.
pub type ListContact = (&'static str, &'static [(&'static str, &'static str)], Option<&'static str>, Option<ListLead>);
/// A company of the lists beyond Acme Ltda: name, phone, its lead.
pub type ListCompany = (&'static str, Option<&'static str>, Option<ListLead>);

/// The contacts the lists show after Maria Silva, in id order.
pub const LIST_CONTACTS: [ListContact; 4] = [
    (
        "Bruno Costa",
        &[("MOB", "+55 11 91234-5678")],
        Some("bruno.costa@example.com"),
        Some(("Annual support plan", FIRST_STATUS_ID, 4_800)),
    ),
    ("Carla Dias", &[], Some("carla.dias@example.com"), Some(("Office move", PROPOSAL_STATUS_ID, 9_000))),
    ("Diego Ramos", &[("MOB", NO_ANSWER_PHONE)], None, Some(("Fleet tracking", QUALIFIED_STATUS_ID, 22_000))),
    (
        "Elisa Moura",
        &[("WORK", "+55 31 3222-1100"), ("MOB", "+55 31 98888-7766")],
        Some("elisa.moura@example.com"),
        None,
    ),
];

/// The companies the lists show after Acme Ltda: name, phone, its lead (name, stage, budget).
pub const LIST_COMPANIES: [ListCompany; 2] = [
    ("Globex Brasil", Some("+55 11 2222-3333"), Some(("Call center pilot", FIRST_STATUS_ID, 15_000))),
    ("Initech ME", None, None),
];

/// One caller the call panel offers.
#[derive(Debug, Clone, Serialize)]
pub struct SampleCaller {
    /// `contact`, `company` or `unknown`.
    pub kind: &'static str,
    pub name: String,
    /// E.164, as a provider sends it.
    pub number: String,
    /// As the contact or company shows it.
    pub display: String,
    /// What Kommo knows about the number, in a line.
    pub known_as: String,
    pub contact_id: Option<u64>,
    pub company_id: Option<u64>,
    pub lead_ids: Vec<u64>,
}

/// The lead the host page's card shows, with its contact.
#[derive(Debug, Clone, Serialize)]
pub struct Card {
    pub lead_id: u64,
    pub title: String,
    pub stage: String,
    pub budget: String,
    pub responsible: String,
    pub contact: String,
    pub phone: String,
    pub phone_e164: String,
    pub email: String,
}

/// The demo account's sample callers and the card.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    pub account_id: u64,
    pub callers: Vec<SampleCaller>,
    pub card: Card,
}

/// `+55 11 98765-4321` → `+5511987654321`.
fn e164(display: &str) -> String {
    format!("+{}", crate::kommo_api::crm::digits(display))
}

/// `12500` → `12,500`.
fn grouped(amount: u64) -> String {
    let digits = amount.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Seeds the sample callers into `account_id` (which must exist) and describes them.
pub fn seed(stand_in: &StandIn, account_id: u64) -> Result<Samples, String> {
    let account = stand_in.account(account_id).ok_or_else(|| format!("no account {account_id}"))?;
    let (_, currency) = account.currency();
    let user_name = |id: u64| account.users.iter().find(|user| user.id == id).map(|user| user.name.clone());
    // The default users' second manager: not the page's user, so a newcomer sees whose the contact is.
    let responsible = account.users.iter().find(|user| user.name == "Juan Pérez" && user.is_active).or(account.admin());
    let responsible = responsible.map(|user| user.id).ok_or("the account has no users")?;
    let responsible_name = user_name(responsible).unwrap_or_default();

    let (lead_name, price, stage_name) = ("Website redesign", 12_500, stage(QUALIFIED_STATUS_ID).map(|s| s.name));
    let stage_name = stage_name.unwrap_or_default().to_owned();
    let contact = stand_in.seed_contact(SeedContact {
        account_id,
        name: "Maria Silva".into(),
        phones: vec![SeedPhone::Typed { value: CONTACT_PHONE.into(), enum_code: "MOB".into() }],
        emails: vec!["maria.silva@example.com".into()],
        responsible_user_id: Some(responsible),
        company_id: None,
        leads: vec![SeedLead {
            name: Some(lead_name.into()),
            status_id: Some(QUALIFIED_STATUS_ID),
            responsible_user_id: Some(responsible),
            price,
        }],
    })?;
    let company = stand_in.seed_company(SeedCompany {
        account_id,
        name: "Acme Ltda".into(),
        phones: vec![SeedPhone::Typed { value: COMPANY_PHONE.into(), enum_code: "WORK".into() }],
        responsible_user_id: None,
        leads: Vec::new(),
    })?;
    let lead_id = contact.lead_ids.first().copied().ok_or("the sample contact has no lead")?;
    seed_lists(stand_in, account_id, responsible)?;
    let budget = format!("{currency} {}", grouped(price));

    let callers = vec![
        SampleCaller {
            kind: "contact",
            name: "Maria Silva".into(),
            number: e164(CONTACT_PHONE),
            display: CONTACT_PHONE.into(),
            known_as: format!("Contact of {responsible_name}, one open lead: {lead_name} ({budget}, {stage_name})"),
            contact_id: Some(contact.id),
            company_id: None,
            lead_ids: contact.lead_ids.clone(),
        },
        SampleCaller {
            kind: "company",
            name: "Acme Ltda".into(),
            number: e164(COMPANY_PHONE),
            display: COMPANY_PHONE.into(),
            known_as: "A company with this phone; no contact has it, no leads".into(),
            contact_id: None,
            company_id: Some(company.id),
            lead_ids: Vec::new(),
        },
        SampleCaller {
            kind: "unknown",
            name: "Unknown caller".into(),
            number: e164(UNKNOWN_PHONE),
            display: UNKNOWN_PHONE.into(),
            known_as: "Not in Kommo (until a call brings it in)".into(),
            contact_id: None,
            company_id: None,
            lead_ids: Vec::new(),
        },
    ];
    let card = Card {
        lead_id,
        title: lead_name.into(),
        stage: stage_name,
        budget,
        responsible: responsible_name,
        contact: "Maria Silva".into(),
        phone: CONTACT_PHONE.into(),
        phone_e164: e164(CONTACT_PHONE),
        email: "maria.silva@example.com".into(),
    };
    Ok(Samples { account_id, callers, card })
}

/// The rest of the lists' contacts and companies, with their leads ([`LIST_CONTACTS`], [`LIST_COMPANIES`]).
fn seed_lists(stand_in: &StandIn, account_id: u64, responsible: u64) -> Result<(), String> {
    let lead = |lead: Option<ListLead>| {
        lead.map(|(name, status_id, price)| SeedLead {
            name: Some(name.into()),
            status_id: Some(status_id),
            responsible_user_id: None,
            price,
        })
    };
    for (name, phones, email, contact_lead) in LIST_CONTACTS {
        stand_in.seed_contact(SeedContact {
            account_id,
            name: name.into(),
            phones: phones
                .iter()
                .map(|(code, number)| SeedPhone::Typed { value: (*number).into(), enum_code: (*code).into() })
                .collect(),
            emails: email.into_iter().map(str::to_owned).collect(),
            responsible_user_id: Some(responsible),
            company_id: None,
            leads: lead(contact_lead).into_iter().collect(),
        })?;
    }
    for (name, phone, company_lead) in LIST_COMPANIES {
        stand_in.seed_company(SeedCompany {
            account_id,
            name: name.into(),
            phones: phone
                .map(|number| SeedPhone::Typed { value: number.into(), enum_code: "WORK".into() })
                .into_iter()
                .collect(),
            responsible_user_id: None,
            leads: lead(company_lead).into_iter().collect(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(12_500), "12,500");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn sample_numbers_are_e164() {
        assert_eq!(e164(CONTACT_PHONE), "+5511987654321");
        assert_eq!(e164(COMPANY_PHONE), "+551134567800");
        assert_eq!(e164(UNKNOWN_PHONE), "+5521976543210");
    }
}
