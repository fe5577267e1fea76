//! The per-account phone index: a mirror of which Kommo contact or company has which number, and of the
//! leads (stage, responsible, whose), so that a call's caller is known without a Kommo search (KOMMO.md
//! §1.6, §1.10).
//!
//! **The sync.** A pass pages through the account's contacts, then its companies (`with=leads`), then its
//! leads (`with=contacts`), `limit=250&order[id]=asc`, one page per job step
//! ([`KIND_PHONE_SYNC`](crate::jobs::KIND_PHONE_SYNC)), each step committed with the page it read, so a
//! crash or restart resumes at the next page; the next step is queued [`STEP_INTERVAL`] later, so the
//! sync takes at most a third or so of the account's 7 requests/s and its calls go first. The first pass
//! reads everything; later ones (every [`REFRESH_EVERY`]) what changed since the previous pass began
//! (`filter[updated_at][from]`, with a margin for the clocks), and one a day everything again, dropping
//! what it did not see (deleted in Kommo). After each incremental pass the drift check compares a sample
//! with Kommo. The queue runs one step of an account at a time, across replicas. An entity never goes back
//! to an older version.
//!
//! **Kommo's webhooks**, where the plan has them, bring each change within seconds
//! ([`subscribe`], [`apply_event`]); without them the passes alone keep the index fresh.
//!
//! **The answer.** Once the first pass is complete and the last one ended within [`TRUSTED_FOR`], the
//! index answers who has a number: known (the contact, else the company, most recently updated first)
//! or, while Kommo's webhooks keep it fresh, unknown, with no Kommo request. Otherwise the processor
//! searches Kommo as before. What this server creates for an unknown caller goes into the index at once.

use std::time::Duration;

use serde_json::Value;
use shared::rules::EntityKind;

use super::lookup::{EntityMatch, LeadInfo, items, phones};
use crate::clock::{unix_millis, unix_secs};
use crate::jobs::JobError;
use crate::kommo::{KommoClient, KommoError};
use crate::store::phones::{EntityNumbers, IndexChanges, IndexedEntity, IndexedLead, LeadLinks, PassStep, SyncRow};
use crate::store::{AccountId, Store};

/// Entities per page (Kommo's maximum).
pub const PAGE_LIMIT: usize = 250;
/// Between two steps of a sync: at most ~3 of the account's 7 requests/s go to the sync.
pub const STEP_INTERVAL: Duration = Duration::from_millis(350);
/// A pass over what changed starts this long after the previous pass ended.
pub const REFRESH_EVERY: Duration = Duration::from_secs(120);
/// The index answers for an account whose last pass ended within this; past it (a stalled sync), the
/// processor searches Kommo.
pub const TRUSTED_FOR: Duration = Duration::from_secs(15 * 60);
/// Every so often a pass reads every entity again (it also drops what Kommo deleted meanwhile).
pub const FULL_PASS_EVERY: Duration = Duration::from_secs(24 * 60 * 60);
/// How far before a pass's start the next pass reads from (Kommo's clock may differ from ours).
const CLOCK_MARGIN: i64 = 300;
/// Where Kommo posts an account's contact and company changes: this, then the account's token.
pub const KOMMO_HOOK_PATH: &str = "/hooks/kommo/";
/// The changes the index subscribes to (KOMMO.md §2.9b).
pub const KOMMO_HOOK_EVENTS: [&str; 16] = [
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "responsible_contact",
    "add_company",
    "update_company",
    "delete_company",
    "restore_company",
    "responsible_company",
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "responsible_lead",
];
/// A subscription Kommo refused (a plan without webhooks, a token that is not an admin's) is tried again
/// after this.
const HOOK_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Kommo webhook bodies an account may have waiting to be applied (each at most 512 KiB: 50 MB at the
/// very most); past it a body is not kept and the next pass is made due instead (it reads the same
/// changes). Bodies are applied in milliseconds, with no Kommo request for contacts and companies.
pub const MAX_PENDING_EVENTS: i64 = 100;

/// What the index says about a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexAnswer {
    /// The index cannot answer yet (the first pass is not complete, or the sync stalled).
    NotReady,
    /// No contact or company of the account has the number.
    Unknown,
    /// The contact (else company) that has it.
    Known(EntityMatch),
}

/// Who has `e164` in the account's Kommo, from the index alone.
///
/// "Nobody has it" is trusted only while Kommo's webhooks keep the index fresh within seconds (the
/// account is subscribed and every body received is applied): without them a contact added minutes ago
/// may not be in the index yet, and its caller would become an incoming lead, so Kommo is searched.
pub async fn holder(store: &Store, account: AccountId, e164: &str) -> sqlx::Result<IndexAnswer> {
    let Some((sync, subscribed, waiting)) = store.phone_index_state(account).await? else {
        return Ok(IndexAnswer::NotReady);
    };
    if !is_trusted(&sync, unix_secs()) {
        return Ok(IndexAnswer::NotReady);
    }
    if let Some(entity) = store.phone_holders(account, e164).await?.into_iter().next() {
        return Ok(IndexAnswer::Known(entity_match(entity)));
    }
    Ok(if subscribed && !waiting { IndexAnswer::Unknown } else { IndexAnswer::NotReady })
}

/// The open leads of a contact or company the index knows (`holder`), most recent first, as the
/// index has them (read with the leads pass and kept fresh like the rest).
pub async fn open_leads(store: &Store, account: AccountId, holder: &EntityMatch) -> sqlx::Result<Vec<LeadInfo>> {
    let leads = store.open_phone_leads(account, holder.kind.as_str(), holder.id).await?;
    Ok(leads
        .into_iter()
        .map(|lead| LeadInfo {
            id: lead.lead_id,
            name: lead.name,
            price: lead.price,
            responsible_user_id: lead.responsible_user_id,
            pipeline_id: lead.pipeline_id,
            status_id: lead.status_id,
            created_at: lead.created_at,
        })
        .collect())
}

/// Whether the index of a sync in this state answers for its account at `now` (unix s).
pub fn is_trusted(sync: &SyncRow, now: i64) -> bool {
    sync.complete_at.is_some() && sync.fresh_at.is_some_and(|fresh| now - fresh <= TRUSTED_FOR.as_secs() as i64)
}

fn entity_match(entity: IndexedEntity) -> EntityMatch {
    EntityMatch {
        kind: if entity.entity_kind == "companies" { EntityKind::Companies } else { EntityKind::Contacts },
        id: entity.entity_id,
        name: entity.name,
        company_id: entity.company_id,
        responsible_user_id: entity.responsible_user_id,
        phone_count: usize::try_from(entity.phone_count).unwrap_or(0),
        lead_ids: serde_json::from_str(&entity.lead_ids).unwrap_or_default(),
        updated_at: entity.updated_at,
    }
}

/// One step of the account's sync: the next page of the running pass (a new pass when none runs and
/// one is due), then the next step queued. A Kommo failure leaves the pass where it was (the job
/// retries it).
pub async fn sync_step(
    store: &Store,
    kommo: &KommoClient,
    account: AccountId,
    country: Option<&str>,
    public_base_url: Option<&str>,
) -> Result<(), JobError> {
    let now = unix_secs();
    let sync = match store.phone_sync(account).await.map_err(storage)? {
        Some(sync) if sync.pass_kind.is_some() => sync,
        Some(sync) if !pass_due(&sync, now) => return Ok(()),
        Some(sync) => {
            let full = sync.full_at.is_none_or(|full| now - full >= FULL_PASS_EVERY.as_secs() as i64);
            if let Some(base) = public_base_url {
                subscribe(store, kommo, account, base).await?;
            }
            store.start_phone_pass(account, full, now).await.map_err(storage)?
        }
        None => {
            if let Some(base) = public_base_url {
                subscribe(store, kommo, account, base).await?;
            }
            store.start_phone_pass(account, true, now).await.map_err(storage)?
        }
    };
    let kind = match sync.pass_kind.as_deref() {
        Some("companies") => "companies",
        Some("leads") => "leads",
        _ => "contacts",
    };
    // A contact or company comes with its leads' ids, a lead with its contacts and companies.
    let with = if kind == "leads" { "contacts" } else { "leads" };
    let mut path = format!("/api/v4/{kind}?with={with}&limit={PAGE_LIMIT}&page={}&order[id]=asc", sync.pass_page);
    if sync.pass_from > 0 {
        path.push_str(&format!("&filter[updated_at][from]={}", sync.pass_from));
    }
    let body = kommo.get(account, &path).await?;
    let listed = body.as_ref().map(|body| items(body, kind)).unwrap_or_default();
    let (entities, leads): (Vec<EntityNumbers>, Vec<LeadLinks>) = if kind == "leads" {
        (Vec::new(), listed.iter().filter_map(lead_links).collect())
    } else {
        (listed.iter().filter_map(|entity| entity_numbers(entity, kind, country)).collect(), Vec::new())
    };
    let more = body.as_ref().is_some_and(|body| body.pointer("/_links/next/href").is_some());
    let step = match (more, kind) {
        (true, _) => PassStep::Page { kind, page: sync.pass_page + 1 },
        (false, "contacts") => PassStep::Page { kind: "companies", page: 1 },
        (false, "companies") => PassStep::Page { kind: "leads", page: 1 },
        (false, _) => PassStep::Done { next_from: (sync.pass_started_at - CLOCK_MARGIN).max(1) },
    };
    store.save_phone_page(account, &entities, &leads, &step, unix_secs()).await.map_err(storage)?;
    metrics::counter!("phone_sync_entities_total").increment((entities.len() + leads.len()) as u64);
    match step {
        PassStep::Page { .. } => {
            let next = unix_millis() + STEP_INTERVAL.as_millis() as i64;
            store.queue_phone_sync(account, next).await.map_err(storage)?;
        }
        // After an incremental pass (a full one has just read everything), a sample is compared.
        PassStep::Done { .. } if sync.pass_from > 0 => {
            check_drift(store, kommo, account, country).await?;
        }
        PassStep::Done { .. } => {}
    }
    Ok(())
}

/// Entities compared with Kommo per kind after each incremental pass.
pub const DRIFT_SAMPLE: i64 = 25;

/// The drift check: a random sample of the index's contacts and of its companies read again from Kommo
/// (one request per kind, `filter[id][]`), and what differs repaired: an entity Kommo changed without
/// the change reaching us is put as Kommo has it, one Kommo no longer has (deleted, which no
/// incremental pass lists) is dropped. Returns how many differed.
pub async fn check_drift(
    store: &Store,
    kommo: &KommoClient,
    account: AccountId,
    country: Option<&str>,
) -> Result<u64, JobError> {
    let mut repaired = 0;
    for kind in ["contacts", "companies"] {
        let sample = store.phone_sample(account, kind, DRIFT_SAMPLE).await.map_err(storage)?;
        if sample.is_empty() {
            continue;
        }
        let filter: String = sample.iter().map(|(entity, _)| format!("filter[id][]={}&", entity.entity_id)).collect();
        let path = format!("/api/v4/{kind}?{filter}with=leads&limit={PAGE_LIMIT}");
        let body = kommo.get(account, &path).await?;
        let found: Vec<EntityNumbers> = body
            .as_ref()
            .map(|body| items(body, kind).iter().filter_map(|entity| entity_numbers(entity, kind, country)).collect())
            .unwrap_or_default();
        let (mut put, mut dropped) = (Vec::new(), Vec::new());
        for (stored, numbers) in sample {
            match found.iter().find(|fresh| fresh.entity.entity_id == stored.entity_id) {
                None => dropped.push((kind.to_owned(), stored.entity_id)),
                Some(fresh) if fresh.entity != stored || fresh.numbers != numbers => put.push(fresh.clone()),
                Some(_) => {}
            }
        }
        let differed = (put.len() + dropped.len()) as u64;
        if differed > 0 {
            tracing::info!(account.id = account.get(), kind, differed, "phone index drift repaired");
            store.repair_phone_entities(account, &put, &dropped, unix_secs()).await.map_err(storage)?;
        }
        repaired += differed;
    }
    metrics::counter!("phone_index_drift_total").increment(repaired);
    Ok(repaired)
}

/// Whether a new pass is due for a sync between passes.
fn pass_due(sync: &SyncRow, now: i64) -> bool {
    sync.fresh_at.is_none_or(|fresh| now - fresh >= REFRESH_EVERY.as_secs() as i64)
}

/// An entity of a listing page with its numbers in E.164 (a number that does not read as one is kept
/// as its digits, so that it still matches a provider that sends it the same way).
fn entity_numbers(entity: &Value, kind: &str, country: Option<&str>) -> Option<EntityNumbers> {
    let phones = phones(entity);
    let mut numbers: Vec<String> = phones.iter().filter_map(|phone| shared::phone::normalize(phone, country)).collect();
    numbers.sort();
    numbers.dedup();
    let lead_ids: Vec<i64> = items(entity, "leads").iter().filter_map(|lead| lead["id"].as_i64()).collect();
    Some(EntityNumbers {
        entity: IndexedEntity {
            entity_kind: kind.to_owned(),
            entity_id: entity["id"].as_i64()?,
            name: entity["name"].as_str().unwrap_or_default().to_owned(),
            company_id: items(entity, "companies").first().and_then(|company| company["id"].as_i64()),
            responsible_user_id: entity["responsible_user_id"].as_i64(),
            phone_count: phones.len() as i64,
            lead_ids: serde_json::to_string(&lead_ids).expect("ids serialise"),
            updated_at: entity["updated_at"].as_i64().unwrap_or(0),
        },
        numbers,
        with_leads: true,
    })
}

/// Puts a contact this server just created for `e164` into the index, so the caller's next call is
/// known at once (a failure is only logged: the next pass brings it).
pub async fn remember_created(
    store: &Store,
    account: AccountId,
    e164: &str,
    contact_id: i64,
    name: &str,
    responsible_user_id: Option<i64>,
    lead_ids: &[i64],
) {
    let entity = EntityNumbers {
        entity: IndexedEntity {
            entity_kind: "contacts".into(),
            entity_id: contact_id,
            name: name.to_owned(),
            company_id: None,
            responsible_user_id,
            phone_count: 1,
            lead_ids: serde_json::to_string(lead_ids).expect("ids serialise"),
            // Older than anything Kommo will report for it: the next pass's version replaces this one.
            updated_at: 0,
        },
        numbers: vec![e164.to_owned()],
        with_leads: true,
    };
    if let Err(error) = store.put_phone_entity(account, &entity, unix_secs()).await {
        tracing::warn!(account.id = account.get(), %error, "could not put a created contact into the phone index");
    }
}

fn storage(error: sqlx::Error) -> JobError {
    tracing::error!(%error, "database error in the phone sync");
    JobError::Retry { error: "storage unavailable".into(), after: None }
}

/// Subscribes the account to Kommo's webhooks for its contact and company changes
/// (`POST /api/v4/webhooks`), unless it is subscribed, or Kommo refused within [`HOOK_RETRY_AFTER`].
/// Only some plans have webhooks, and only an admin's token may subscribe: a refusal is recorded, and
/// the incremental passes keep the index fresh alone. A transient failure is tried again at the next
/// pass.
async fn subscribe(
    store: &Store,
    kommo: &KommoClient,
    account: AccountId,
    public_base_url: &str,
) -> Result<(), JobError> {
    let now = unix_secs();
    let hook = store.kommo_hook(account).await.map_err(storage)?;
    let token = match hook {
        Some(hook) if hook.state == "subscribed" => return Ok(()),
        Some(hook) if now - hook.checked_at < HOOK_RETRY_AFTER.as_secs() as i64 => return Ok(()),
        Some(hook) => hook.token,
        None => crate::crypto::random_token(24),
    };
    let body = serde_json::json!({
        "destination": format!("{public_base_url}{KOMMO_HOOK_PATH}{token}"),
        "settings": KOMMO_HOOK_EVENTS,
    });
    let state = match kommo.send_optional_api(account, reqwest::Method::POST, "/api/v4/webhooks", Some(&body)).await {
        Ok(_) => "subscribed",
        Err(KommoError::Suspended(reason)) => {
            tracing::info!(account.id = account.get(), %reason, "Kommo webhooks unavailable: the index syncs by time alone");
            "unavailable"
        }
        Err(KommoError::Rejected { status, .. }) if status == 400 || status == 404 => "unavailable",
        Err(error) => {
            tracing::warn!(account.id = account.get(), %error, "Kommo webhook subscription failed; tried again later");
            return Ok(());
        }
    };
    store.set_kommo_hook(account, &token, state, now).await.map_err(storage)
}

/// Removes the account's subscription to Kommo's webhooks (the integration was disabled); best effort.
pub async fn unsubscribe(store: &Store, kommo: &KommoClient, account: AccountId, public_base_url: &str) {
    let Ok(Some(hook)) = store.kommo_hook(account).await else { return };
    if hook.state != "subscribed" {
        return;
    }
    let body = serde_json::json!({ "destination": format!("{public_base_url}{KOMMO_HOOK_PATH}{}", hook.token) });
    if let Err(error) = kommo.send_optional_api(account, reqwest::Method::DELETE, "/api/v4/webhooks", Some(&body)).await
    {
        tracing::info!(account.id = account.get(), %error, "Kommo webhook not removed");
    }
}

/// Applies a stored Kommo webhook body (`kommo_events` row `id`) to the index: contacts and companies
/// added, edited, restored or handed over are put as the body describes them (their numbers
/// normalised; their leads, which the body does not list, kept); deleted ones are dropped. No Kommo
/// request. A body that is gone (applied already) is nothing to do.
pub async fn apply_event(
    store: &Store,
    kommo: &KommoClient,
    account: AccountId,
    id: i64,
    country: Option<&str>,
) -> Result<(), JobError> {
    let Some(body) = store.kommo_event(account, id).await.map_err(storage)? else { return Ok(()) };
    let event = read_event(&body, country);
    // A lead's webhook does not say which contacts and companies it belongs to: the leads are read again
    // (50 a request), with them.
    let mut leads = Vec::new();
    for chunk in event.leads.chunks(LEADS_PER_READ) {
        let filter: String = chunk.iter().map(|id| format!("filter[id][]={id}&")).collect();
        let path = format!("/api/v4/leads?{filter}with=contacts&limit={PAGE_LIMIT}");
        if let Some(body) = kommo.get(account, &path).await? {
            leads.extend(items(&body, "leads").iter().filter_map(lead_links));
        }
    }
    let changes = IndexChanges { put: event.put, dropped: event.dropped, leads, dropped_leads: event.dropped_leads };
    store.apply_kommo_event(account, id, &changes, unix_secs()).await.map_err(storage)
}

/// Leads read again per request after Kommo's lead webhooks (their ids go into the query string).
const LEADS_PER_READ: usize = 50;

/// What a Kommo webhook body says changed.
#[derive(Debug, Default)]
pub struct KommoEvent {
    /// Contacts and companies to put, as the body describes them.
    pub put: Vec<EntityNumbers>,
    /// Contacts and companies deleted: `(kind, id)`.
    pub dropped: Vec<(String, i64)>,
    /// Leads added or changed (to read again with their links).
    pub leads: Vec<i64>,
    pub dropped_leads: Vec<i64>,
}

/// A lead of a listing (`with=contacts`) with the contacts and companies it is linked to.
fn lead_links(lead: &Value) -> Option<LeadLinks> {
    let links = ["contacts", "companies"]
        .iter()
        .flat_map(|kind| {
            items(lead, kind).iter().filter_map(move |linked| Some((kind.to_string(), linked["id"].as_i64()?)))
        })
        .collect();
    Some(LeadLinks {
        lead: IndexedLead {
            lead_id: lead["id"].as_i64()?,
            name: lead["name"].as_str().unwrap_or_default().to_owned(),
            price: lead["price"].as_i64(),
            pipeline_id: lead["pipeline_id"].as_i64(),
            status_id: lead["status_id"].as_i64(),
            responsible_user_id: lead["responsible_user_id"].as_i64(),
            created_at: lead["created_at"].as_i64().unwrap_or(0),
            updated_at: lead["updated_at"].as_i64().unwrap_or(0),
        },
        links,
    })
}

/// Kommo's classic form-encoded webhook body: `contacts[<action>][<i>][<field>]…` (companies among
/// them with `type=company`, or under `companies[…]`) and `leads[<action>][<i>][id]`, read into what
/// changed.
pub fn read_event(body: &str, country: Option<&str>) -> KommoEvent {
    use std::collections::BTreeMap;
    // (section, action, index) → field path → value
    let mut items: BTreeMap<(String, String, u32), BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(body.as_bytes()) {
        let parts: Vec<&str> = key.split('[').map(|part| part.trim_end_matches(']')).collect();
        let [section, action, index, rest @ ..] = parts.as_slice() else { continue };
        if !matches!(*section, "contacts" | "companies" | "leads") || rest.is_empty() {
            continue;
        }
        let Ok(index) = index.parse::<u32>() else { continue };
        items
            .entry((section.to_string(), action.to_string(), index))
            .or_default()
            .insert(rest.join("."), value.into_owned());
    }
    let mut event = KommoEvent::default();
    for ((section, action, _), fields) in items {
        let Some(id) = fields.get("id").and_then(|id| id.parse::<i64>().ok()) else { continue };
        if section == "leads" {
            if action == "delete" {
                event.dropped_leads.push(id);
            } else if !event.leads.contains(&id) {
                event.leads.push(id);
            }
            continue;
        }
        let company = section == "companies" || fields.get("type").is_some_and(|kind| kind == "company");
        let kind = if company { "companies" } else { "contacts" };
        if action == "delete" {
            event.dropped.push((kind.to_owned(), id));
            continue;
        }
        // custom_fields.<k>.code = PHONE, custom_fields.<k>.values.<j>.value = the number
        let phone_fields: Vec<&str> = fields
            .iter()
            .filter(|(path, value)| path.starts_with("custom_fields.") && path.ends_with(".code") && *value == "PHONE")
            .map(|(path, _)| path.trim_end_matches(".code"))
            .collect();
        let phones: Vec<&String> = fields
            .iter()
            .filter(|(path, _)| {
                phone_fields
                    .iter()
                    .any(|field| path.starts_with(&format!("{field}.values.")) && path.ends_with(".value"))
            })
            .map(|(_, value)| value)
            .collect();
        let mut numbers: Vec<String> =
            phones.iter().filter_map(|phone| shared::phone::normalize(phone, country)).collect();
        numbers.sort();
        numbers.dedup();
        let number = |name: &str| fields.get(name).and_then(|value| value.parse::<i64>().ok());
        event.put.push(EntityNumbers {
            entity: IndexedEntity {
                entity_kind: kind.to_owned(),
                entity_id: id,
                name: fields.get("name").cloned().unwrap_or_default(),
                company_id: if company { None } else { number("linked_company_id").filter(|id| *id > 0) },
                responsible_user_id: number("responsible_user_id"),
                phone_count: phones.len() as i64,
                lead_ids: "[]".to_owned(),
                updated_at: number("updated_at").or_else(|| number("last_modified")).unwrap_or(0),
            },
            numbers,
            with_leads: false,
        });
    }
    event
}
