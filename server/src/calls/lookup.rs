//! What Kommo knows about a client's number: the contacts search by phone, else the companies search (a
//! number no contact has and a company has is the company's: Kommo attaches its calls there, KOMMO.md
//! §2.2), the active leads of what it found, and a per-account cache of the answer.
//!
//! The cache keeps an answer for [`CACHE_TTL`]; the entry of a number is dropped as soon as this server
//! creates a contact, lead or unsorted lead for it (another server process may keep its own entry until
//! the TTL: the ledger, not the cache, is what prevents a second write of a call).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shared::rules::{EntityKind, EntityRef, Knowledge, KnownFacts, LeadFacts};

use crate::kommo::{KommoClient, KommoError, percent_encode};
use crate::store::AccountId;

/// How long an answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// Numbers kept at most, across accounts.
const CACHE_CAPACITY: u64 = 50_000;
/// Kommo's statuses of closed leads: won, lost.
pub const CLOSED_STATUSES: [i64; 2] = [142, 143];
/// Leads read per request (their ids go into the query string).
const LEADS_PER_REQUEST: usize = 50;

/// A contact or company that has the number, as the search found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityMatch {
    /// Contacts or companies.
    pub kind: EntityKind,
    pub id: i64,
    pub name: String,
    /// The first company a contact belongs to (`None` for a company).
    pub company_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub phone_count: usize,
    pub lead_ids: Vec<i64>,
    pub updated_at: i64,
}

/// A lead as `GET /api/v4/leads` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadInfo {
    pub id: i64,
    pub name: String,
    pub price: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub status_id: Option<i64>,
    pub created_at: i64,
}

impl LeadInfo {
    pub fn is_active(&self) -> bool {
        !self.status_id.is_some_and(|status| CLOSED_STATUSES.contains(&status))
    }
}

/// What the phone index answered for a number: the contact or company that has it (or none), and its
/// open leads (`None`: not read).
#[derive(Debug, Clone)]
pub struct Indexed {
    pub holder: Option<EntityMatch>,
    pub open_leads: Option<Vec<LeadInfo>>,
}

/// What the cache keeps of a number: the contact or company that has it ([`holder`]), and its active
/// leads once read.
#[derive(Debug, Clone)]
struct Entry {
    holder: Option<EntityMatch>,
    active_leads: Option<Vec<LeadFacts>>,
}

impl Entry {
    fn knowledge(&self) -> Knowledge {
        let Some(holder) = &self.holder else { return Knowledge::Unknown };
        let facts = KnownFacts {
            id: holder.id,
            responsible_user_id: holder.responsible_user_id,
            phone_count: holder.phone_count,
            active_leads: self.active_leads.clone(),
        };
        match holder.kind {
            EntityKind::Companies => Knowledge::Company(facts),
            EntityKind::Contacts | EntityKind::Leads => Knowledge::Contact(facts),
        }
    }
}

/// The lookup cache; cheap to clone (one shared cache).
#[derive(Clone)]
pub struct Lookup {
    cache: moka::future::Cache<(AccountId, String), Arc<Entry>>,
}

impl Default for Lookup {
    fn default() -> Lookup {
        Lookup::new()
    }
}

impl Lookup {
    pub fn new() -> Lookup {
        Lookup::with_ttl(CACHE_TTL)
    }

    pub fn with_ttl(ttl: Duration) -> Lookup {
        Lookup { cache: moka::future::Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(ttl).build() }
    }

    /// What Kommo knows about `number` (E.164, or as the provider sent it): from the phone index when
    /// it answers (`indexed`: the holder it knows, or none, and that holder's open leads; Kommo's webhooks
    /// keep it fresher than this cache, e.g. for a contact the manager created during the call), else
    /// from the cache when it can (what a recent lookup, the popup's, found), else from Kommo's search.
    /// With `with_leads`, the active leads of the contact (or company) that has it are looked up too
    /// (unless the index gave them).
    pub async fn knowledge(
        &self,
        kommo: &KommoClient,
        account: AccountId,
        number: &str,
        country: Option<&str>,
        with_leads: bool,
        indexed: Option<Indexed>,
    ) -> Result<Knowledge, KommoError> {
        if let Some(Indexed { holder, open_leads }) = indexed {
            let mut entry = Entry { holder, active_leads: open_leads.map(|open| facts_of(&open)) };
            if with_leads
                && entry.active_leads.is_none()
                && let Some(holder) = &entry.holder
            {
                entry.active_leads = Some(active_of(&leads(kommo, account, &holder.lead_ids).await?));
            }
            return Ok(entry.knowledge());
        }
        let key = (account, number.to_owned());
        let mut entry = match self.cache.get(&key).await {
            Some(entry) if !with_leads || entry.holder.is_none() || entry.active_leads.is_some() => {
                return Ok(entry.knowledge());
            }
            Some(entry) => Entry::clone(&entry),
            None => Entry { holder: holder(kommo, account, number, country).await?, active_leads: None },
        };
        if with_leads
            && entry.active_leads.is_none()
            && let Some(holder) = &entry.holder
        {
            entry.active_leads = Some(active_of(&leads(kommo, account, &holder.lead_ids).await?));
        }
        let knowledge = entry.knowledge();
        self.cache.insert(key, Arc::new(entry)).await;
        Ok(knowledge)
    }

    /// The active leads of `holder` (a contact or company that has `number`), most recent first
    /// (uncached).
    pub async fn active_leads(
        &self,
        kommo: &KommoClient,
        account: AccountId,
        number: &str,
        country: Option<&str>,
        holder: EntityRef,
    ) -> Result<Vec<LeadFacts>, KommoError> {
        let found = search(kommo, account, holder.kind, number, country).await?;
        let lead_ids = found.into_iter().find(|found| found.id == holder.id).map(|found| found.lead_ids);
        Ok(active_of(&leads(kommo, account, &lead_ids.unwrap_or_default()).await?))
    }

    /// Keeps what a caller lookup (the popup's) found about `number`, so that the call's processing
    /// at its end asks Kommo nothing more: the contact or company that has it ([`holder`], or none) and
    /// its active leads.
    pub async fn remember(
        &self,
        account: AccountId,
        number: &str,
        holder: Option<EntityMatch>,
        active: Vec<LeadFacts>,
    ) {
        let active_leads = holder.as_ref().map(|_| active);
        self.cache.insert((account, number.to_owned()), Arc::new(Entry { holder, active_leads })).await;
    }

    /// Drops what is known about `number` (this server just created something for it).
    pub async fn invalidate(&self, account: AccountId, number: &str) {
        self.cache.invalidate(&(account, number.to_owned())).await;
    }
}

/// Who has `number` in Kommo, the way Kommo attaches a call to it (KOMMO.md §2.2): the freshest
/// contact with it, else (no contact has it) the freshest company with it (uncached; the companies are
/// searched only when no contact has the number).
pub async fn holder(
    kommo: &KommoClient,
    account: AccountId,
    number: &str,
    country: Option<&str>,
) -> Result<Option<EntityMatch>, KommoError> {
    if let Some(contact) = search(kommo, account, EntityKind::Contacts, number, country).await?.into_iter().next() {
        return Ok(Some(contact));
    }
    Ok(search(kommo, account, EntityKind::Companies, number, country).await?.into_iter().next())
}

/// The entities of `kind` (contacts or companies: those with phones) that have `number` among their
/// phones, most recently updated first (uncached): `GET /api/v4/{kind}?query=…&with=leads`, whose
/// full-text answer is narrowed to the same number.
pub async fn search(
    kommo: &KommoClient,
    account: AccountId,
    kind: EntityKind,
    number: &str,
    country: Option<&str>,
) -> Result<Vec<EntityMatch>, KommoError> {
    let query = shared::phone::search_key(number);
    let path = format!("/api/v4/{}?query={}&with=leads", kind.as_str(), percent_encode(&query));
    let Some(body) = kommo.get(account, &path).await? else { return Ok(Vec::new()) };
    let mut found: Vec<EntityMatch> = items(&body, kind.as_str())
        .iter()
        .filter_map(|entity| {
            let phones = phones(entity);
            if !phones.iter().any(|phone| shared::phone::same_number(phone, number, country)) {
                return None;
            }
            Some(EntityMatch {
                kind,
                id: entity["id"].as_i64()?,
                name: entity["name"].as_str().unwrap_or_default().to_owned(),
                company_id: items(entity, "companies").first().and_then(|company| company["id"].as_i64()),
                responsible_user_id: entity["responsible_user_id"].as_i64(),
                phone_count: phones.len(),
                lead_ids: items(entity, "leads").iter().filter_map(|lead| lead["id"].as_i64()).collect(),
                updated_at: entity["updated_at"].as_i64().unwrap_or(0),
            })
        })
        .collect();
    found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    Ok(found)
}

/// The leads with these ids (`GET /api/v4/leads?filter[id][]=..`), in pages of a few dozen ids.
pub async fn leads(kommo: &KommoClient, account: AccountId, ids: &[i64]) -> Result<Vec<LeadInfo>, KommoError> {
    let mut found = Vec::new();
    for chunk in ids.chunks(LEADS_PER_REQUEST) {
        let filter: String = chunk.iter().map(|id| format!("filter[id][]={id}&")).collect();
        let path = format!("/api/v4/leads?{}limit={}", filter, LEADS_PER_REQUEST);
        let Some(body) = kommo.get(account, &path).await? else { continue };
        found.extend(items(&body, "leads").iter().filter_map(|lead| {
            Some(LeadInfo {
                id: lead["id"].as_i64()?,
                name: lead["name"].as_str().unwrap_or_default().to_owned(),
                price: lead["price"].as_i64(),
                responsible_user_id: lead["responsible_user_id"].as_i64(),
                pipeline_id: lead["pipeline_id"].as_i64(),
                status_id: lead["status_id"].as_i64(),
                created_at: lead["created_at"].as_i64().unwrap_or(0),
            })
        }));
    }
    Ok(found)
}

/// The active ones, most recent first.
fn active_of(leads: &[LeadInfo]) -> Vec<LeadFacts> {
    facts_of(&open_leads(leads.to_vec()))
}

/// The active leads among `leads`, most recent first.
pub fn open_leads(mut leads: Vec<LeadInfo>) -> Vec<LeadInfo> {
    leads.retain(LeadInfo::is_active);
    leads.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    leads
}

/// What the call-handling rules need of leads.
pub fn facts_of(leads: &[LeadInfo]) -> Vec<LeadFacts> {
    leads.iter().map(|lead| LeadFacts { id: lead.id, responsible_user_id: lead.responsible_user_id }).collect()
}

/// Whether `entity` is tied to the phone `number` in Kommo: a contact with the number, a company with
/// the number, or one of their leads. (A call's result may only go there.)
pub async fn entity_has_number(
    kommo: &KommoClient,
    account: AccountId,
    entity: EntityRef,
    number: &str,
    country: Option<&str>,
) -> Result<bool, KommoError> {
    match entity.kind {
        EntityKind::Contacts => Ok(search(kommo, account, EntityKind::Contacts, number, country)
            .await?
            .iter()
            .any(|contact| contact.id == entity.id)),
        EntityKind::Leads => {
            for kind in [EntityKind::Contacts, EntityKind::Companies] {
                let holders = search(kommo, account, kind, number, country).await?;
                if holders.iter().any(|holder| holder.lead_ids.contains(&entity.id)) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        EntityKind::Companies => match kommo.get(account, &format!("/api/v4/companies/{}", entity.id)).await {
            Ok(company) => Ok(company.as_ref().is_some_and(|company| {
                phones(company).iter().any(|phone| shared::phone::same_number(phone, number, country))
            })),
            Err(KommoError::Rejected { status: 404, .. }) => Ok(false),
            Err(other) => Err(other),
        },
    }
}

/// The values of a contact's (or company's) PHONE field.
pub(crate) fn phones(entity: &Value) -> Vec<String> {
    entity["custom_fields_values"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|field| field["field_code"] == "PHONE")
        .flat_map(|field| field["values"].as_array().map(Vec::as_slice).unwrap_or_default())
        .filter_map(|value| value["value"].as_str().map(str::to_owned))
        .collect()
}

/// `_embedded.<name>` of a HAL answer (empty when absent).
pub(crate) fn items<'a>(body: &'a Value, name: &str) -> &'a [Value] {
    body["_embedded"][name].as_array().map(Vec::as_slice).unwrap_or_default()
}
