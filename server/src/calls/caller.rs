//! Who is calling: what the account's Kommo knows of a ringing call's number, for the popup.
//!
//! [`CallerId::describe`] asks Kommo (the contacts search, else the companies search; the leads of what
//! it found; the names of their pipelines and stages, and of the responsible user), counts the earlier
//! calls with the number in the store, and keeps the answer a few minutes per account and number, so a
//! caller who calls again is known the moment the webhook arrives ([`CallerId::cached`]). What it found is
//! also handed to the call processor's [`Lookup`], so the call's delivery at its end asks Kommo nothing
//! more about the number.
//!
//! Bounds: the lookup spends the account's Kommo budget (7 requests/s, shared with deliveries), so at most
//! [`LOOKUPS_PER_ACCOUNT`] run per account and [`LOOKUPS_TOTAL`] in all (past them the popup keeps the
//! number alone), each within [`LOOKUP_DEADLINE`]; the caches are bounded in size and time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use shared::api::{Caller, CallerKnown, EntityLink, LeadSummary, MAX_CALLER_LEADS};
use shared::rules::EntityKind;

use super::index::{self, IndexAnswer};
use super::lookup::{self, EntityMatch, LeadInfo, Lookup, items};
use crate::kommo::{KommoClient, KommoError};
use crate::store::{AccountId, Store};

/// How long a caller's description is reused.
pub const ANSWER_TTL: Duration = Duration::from_secs(5 * 60);
/// How long pipelines' and users' names and the account's country are reused.
const NAMES_TTL: Duration = Duration::from_secs(10 * 60);
/// The longest a lookup may take; past it the popup says Kommo did not answer.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(4);
/// Lookups running at once for one account, and in all.
pub const LOOKUPS_PER_ACCOUNT: usize = 8;
pub const LOOKUPS_TOTAL: usize = 256;
/// Entries kept at most, across accounts.
const ANSWERS_CAPACITY: u64 = 50_000;
const NAMES_CAPACITY: u64 = 20_000;

/// `(pipeline, status)` → the pipeline's and the stage's names.
type StageNames = HashMap<(i64, i64), (String, String)>;

/// The caller lookups and their caches; cheap to clone.
#[derive(Clone)]
pub struct CallerId {
    inner: Arc<Inner>,
}

struct Inner {
    answers: moka::sync::Cache<(AccountId, String), Arc<Caller>>,
    /// `(pipeline, status)` → (pipeline's name, stage's name), per account.
    stages: moka::future::Cache<AccountId, Arc<StageNames>>,
    users: moka::future::Cache<(AccountId, i64), Arc<str>>,
    companies: moka::future::Cache<(AccountId, i64), Arc<str>>,
    countries: moka::future::Cache<AccountId, Option<Arc<str>>>,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    per_account: HashMap<AccountId, usize>,
    /// The calls whose caller is being looked up: a call's second event does not start a second lookup.
    calls: HashSet<(AccountId, String)>,
    total: usize,
}

/// A lookup's place among those running; dropping it frees the place.
pub struct LookupSlot {
    inner: Arc<Inner>,
    account: AccountId,
    call_id: String,
}

impl Drop for LookupSlot {
    fn drop(&mut self) {
        let mut running = self.inner.running.lock().expect("caller lookup lock poisoned");
        running.calls.remove(&(self.account, std::mem::take(&mut self.call_id)));
        running.total -= 1;
        if let Some(count) = running.per_account.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                running.per_account.remove(&self.account);
            }
        }
    }
}

impl Default for CallerId {
    fn default() -> CallerId {
        CallerId::new()
    }
}

impl CallerId {
    pub fn new() -> CallerId {
        CallerId {
            inner: Arc::new(Inner {
                answers: moka::sync::Cache::builder().max_capacity(ANSWERS_CAPACITY).time_to_live(ANSWER_TTL).build(),
                stages: names_cache(),
                users: names_cache(),
                companies: names_cache(),
                countries: names_cache(),
                running: Mutex::new(Running::default()),
            }),
        }
    }

    /// The description kept for `number` (as the provider sent it), if a lookup made one lately; no
    /// I/O (the account's country, needed to read a local number, must be known already).
    pub async fn cached(&self, account: AccountId, number: &str) -> Option<Caller> {
        let country = self.inner.countries.get(&account).await?;
        let e164 = shared::phone::e164_or_trimmed(number, country.as_deref());
        self.inner.answers.get(&(account, e164)).map(|caller| Caller::clone(&caller))
    }

    /// Who is calling from `number` as far as is known without asking Kommo: a description made lately
    /// ([`CallerId::cached`]), else the contact or company the phone index knows for the number (its
    /// name only: the leads and the responsible follow from [`CallerId::describe`]): an indexed read of
    /// the store (and of the account's country, once in a while).
    pub async fn known(&self, store: &Store, account: AccountId, number: &str) -> Option<Caller> {
        if let Some(caller) = self.cached(account, number).await {
            return Some(caller);
        }
        let country = self.country(store, account).await;
        let e164 = shared::phone::e164_or_trimmed(number, country.as_deref());
        let holder = match index::holder(store, account, &e164).await {
            Ok(IndexAnswer::Known(holder)) => holder,
            Ok(_) => return None,
            Err(error) => {
                tracing::warn!(account.id = account.get(), %error, "caller lookup: cannot read the phone index");
                return None;
            }
        };
        let link = EntityLink { id: holder.id, name: holder.name };
        let (contact, company) =
            if holder.kind == EntityKind::Companies { (None, Some(link)) } else { (Some(link), None) };
        Some(Caller {
            number: shared::phone::display_for(&e164, country.as_deref()),
            known: CallerKnown::Known,
            contact,
            company,
            leads: Vec::new(),
            responsible: None,
            earlier_calls: 0,
        })
    }

    /// `number` (as the provider sent it) as people of the account write it.
    pub async fn shown(&self, store: &Store, account: AccountId, number: &str) -> String {
        let country = self.country(store, account).await;
        shared::phone::display_for(number, country.as_deref())
    }

    /// Forgets the description of `e164` (something was created for it in Kommo).
    pub fn invalidate(&self, account: AccountId, e164: &str) {
        self.inner.answers.invalidate(&(account, e164.to_owned()));
    }

    /// A place to look up who is calling on `call_id` of `account`, unless that call's caller is being
    /// looked up already, or the account runs [`LOOKUPS_PER_ACCOUNT`] lookups, or the server
    /// [`LOOKUPS_TOTAL`].
    pub fn slot(&self, account: AccountId, call_id: &str) -> Option<LookupSlot> {
        let mut running = self.inner.running.lock().expect("caller lookup lock poisoned");
        let mine = running.per_account.get(&account).copied().unwrap_or(0);
        let key = (account, call_id.to_owned());
        if mine >= LOOKUPS_PER_ACCOUNT || running.total >= LOOKUPS_TOTAL || running.calls.contains(&key) {
            return None;
        }
        *running.per_account.entry(account).or_default() += 1;
        running.total += 1;
        let call_id = key.1.clone();
        running.calls.insert(key);
        Some(LookupSlot { inner: Arc::clone(&self.inner), account, call_id })
    }

    /// Who is calling from `number` (as the provider sent it) on `call_id`, within [`LOOKUP_DEADLINE`]:
    /// a Kommo that fails or does not answer in time gives [`CallerKnown::Unavailable`] (not kept).
    /// `early` hears the name as soon as the search found it, before the leads and the names of their
    /// stages are read (each a request at the account's pace).
    #[allow(clippy::too_many_arguments, reason = "the lookup's context, the number and its listener")]
    pub async fn describe(
        &self,
        store: &Store,
        kommo: &KommoClient,
        lookup: &Lookup,
        account: AccountId,
        number: &str,
        call_id: &str,
        early: impl Fn(Caller) + Sync,
    ) -> Caller {
        let country = self.country(store, account).await;
        let country = country.as_deref();
        let e164 = shared::phone::e164_or_trimmed(number, country);
        let earlier_calls = store.count_earlier_calls(account, &e164, call_id).await.unwrap_or_else(|error| {
            tracing::warn!(account.id = account.get(), %error, "caller lookup: cannot count earlier calls");
            0
        });
        let mut caller = Caller {
            number: shared::phone::display_for(&e164, country),
            known: CallerKnown::Unavailable,
            contact: None,
            company: None,
            leads: Vec::new(),
            responsible: None,
            earlier_calls,
        };
        let named = |found: Found| {
            let mut early_caller = caller.clone();
            found.fill(&mut early_caller);
            early(early_caller);
        };
        let asked = self.ask_kommo(store, kommo, lookup, account, &e164, country, &named);
        let found = tokio::time::timeout(LOOKUP_DEADLINE, asked).await;
        match found {
            Ok(Ok(found)) => {
                found.fill(&mut caller);
                self.inner.answers.insert((account, e164.clone()), Arc::new(caller.clone()));
            }
            Ok(Err(error)) => {
                tracing::warn!(account.id = account.get(), %error, "caller lookup: Kommo did not answer");
            }
            Err(_) => tracing::warn!(account.id = account.get(), "caller lookup: Kommo did not answer in time"),
        }
        caller
    }

    #[allow(clippy::too_many_arguments, reason = "the lookup's context, the number and its listener")]
    async fn ask_kommo(
        &self,
        store: &Store,
        kommo: &KommoClient,
        lookup: &Lookup,
        account: AccountId,
        e164: &str,
        country: Option<&str>,
        early: &(dyn Fn(Found) + Sync),
    ) -> Result<Found, KommoError> {
        // Who has the number: a contact, else a company (the order in which Kommo attaches a call),
        // from the phone index when it answers, else from Kommo's search.
        let indexed = index::holder(store, account, e164).await.unwrap_or_else(|error| {
            tracing::warn!(account.id = account.get(), %error, "caller lookup: cannot read the phone index");
            IndexAnswer::NotReady
        });
        let from_index = !matches!(indexed, IndexAnswer::NotReady);
        let holder = match indexed {
            IndexAnswer::Known(holder) => Some(holder),
            IndexAnswer::Unknown => None,
            IndexAnswer::NotReady => lookup::holder(kommo, account, e164, country).await?,
        };
        let (contact, company) = match &holder {
            Some(contact) if contact.kind == EntityKind::Contacts => {
                let company = match contact.company_id {
                    Some(id) => Some(EntityLink { id, name: self.company_name(kommo, account, id).await? }),
                    None => None,
                }
                .filter(|company| !company.name.is_empty());
                (Some(contact.clone()), company)
            }
            Some(company) => (None, Some(EntityLink { id: company.id, name: company.name.clone() })),
            None => (None, None),
        };
        let (lead_ids, responsible_id) = match &holder {
            Some(holder) => {
                early(Found {
                    contact: contact.clone(),
                    company: company.clone(),
                    leads: Vec::new(),
                    responsible: None,
                });
                (holder.lead_ids.as_slice(), holder.responsible_user_id)
            }
            // Nobody has the number: nothing more to read.
            None => (&[][..], None),
        };
        // The open leads: from the index when it knew the holder, else read from Kommo.
        let open = match &holder {
            Some(holder) if from_index => index::open_leads(store, account, holder).await.map_err(|error| {
                KommoError::Transient(format!("the phone index's leads could not be read: {error}"))
            })?,
            _ => lookup::open_leads(lookup::leads(kommo, account, lead_ids).await?),
        };
        lookup.remember(account, e164, holder, lookup::facts_of(&open)).await;
        // Names are a nicety: without them the popup still shows the leads.
        let stages = if open.is_empty() {
            Arc::default()
        } else {
            self.stages(kommo, account).await.unwrap_or_else(|error| {
                tracing::warn!(account.id = account.get(), %error, "caller lookup: no pipeline names");
                Arc::default()
            })
        };
        let leads = open.into_iter().take(MAX_CALLER_LEADS).map(|lead| lead_summary(lead, &stages)).collect();
        let responsible = match responsible_id {
            Some(user) => self.user_name(kommo, account, user).await.unwrap_or_else(|error| {
                tracing::warn!(account.id = account.get(), %error, "caller lookup: no name for the responsible user");
                None
            }),
            None => None,
        };
        Ok(Found { contact, company, leads, responsible })
    }

    async fn country(&self, store: &Store, account: AccountId) -> Option<Arc<str>> {
        self.inner
            .countries
            .try_get_with(account, async { store.account_country(account).await.map(|country| country.map(Arc::from)) })
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(account.id = account.get(), %error, "caller lookup: cannot read the account's country");
                None
            })
    }

    async fn stages(&self, kommo: &KommoClient, account: AccountId) -> Result<Arc<StageNames>, KommoError> {
        self.inner
            .stages
            .try_get_with(account, async {
                let body = kommo.get(account, "/api/v4/leads/pipelines").await?;
                Ok(Arc::new(body.as_ref().map(stage_names).unwrap_or_default()))
            })
            .await
            .map_err(|error: Arc<KommoError>| KommoError::clone(&error))
    }

    async fn user_name(
        &self,
        kommo: &KommoClient,
        account: AccountId,
        user: i64,
    ) -> Result<Option<String>, KommoError> {
        let name = self
            .inner
            .users
            .try_get_with((account, user), async {
                match kommo.get(account, &format!("/api/v4/users/{user}")).await {
                    Ok(body) => Ok(Arc::from(body.as_ref().and_then(|user| user["name"].as_str()).unwrap_or_default())),
                    Err(KommoError::Rejected { status: 404, .. }) => Ok(Arc::from("")),
                    Err(error) => Err(error),
                }
            })
            .await
            .map_err(|error: Arc<KommoError>| KommoError::clone(&error))?;
        Ok((!name.is_empty()).then(|| name.to_string()))
    }

    async fn company_name(&self, kommo: &KommoClient, account: AccountId, company: i64) -> Result<String, KommoError> {
        self.inner
            .companies
            .try_get_with((account, company), async {
                match kommo.get(account, &format!("/api/v4/companies/{company}")).await {
                    Ok(body) => {
                        Ok(Arc::from(body.as_ref().and_then(|company| company["name"].as_str()).unwrap_or_default()))
                    }
                    Err(KommoError::Rejected { status: 404, .. }) => Ok(Arc::from("")),
                    Err(error) => Err(error),
                }
            })
            .await
            .map(|name: Arc<str>| name.to_string())
            .map_err(|error: Arc<KommoError>| KommoError::clone(&error))
    }
}

fn names_cache<K, V>() -> moka::future::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::future::Cache::builder().max_capacity(NAMES_CAPACITY).time_to_live(NAMES_TTL).build()
}

/// What Kommo told about a number.
struct Found {
    contact: Option<EntityMatch>,
    company: Option<EntityLink>,
    leads: Vec<LeadSummary>,
    responsible: Option<String>,
}

impl Found {
    fn fill(self, caller: &mut Caller) {
        caller.known =
            if self.contact.is_some() || self.company.is_some() { CallerKnown::Known } else { CallerKnown::Unknown };
        caller.contact = self.contact.map(|contact| EntityLink { id: contact.id, name: contact.name });
        caller.company = self.company;
        caller.leads = self.leads;
        caller.responsible = self.responsible;
    }
}

/// `GET /api/v4/leads/pipelines` read as `(pipeline, status)` → the names of both.
fn stage_names(body: &Value) -> StageNames {
    let mut names = HashMap::new();
    for pipeline in items(body, "pipelines") {
        let (Some(pipeline_id), Some(pipeline_name)) = (pipeline["id"].as_i64(), pipeline["name"].as_str()) else {
            continue;
        };
        for status in items(pipeline, "statuses") {
            if let (Some(status_id), Some(status_name)) = (status["id"].as_i64(), status["name"].as_str()) {
                names.insert((pipeline_id, status_id), (pipeline_name.to_owned(), status_name.to_owned()));
            }
        }
    }
    names
}

fn lead_summary(lead: LeadInfo, stages: &StageNames) -> LeadSummary {
    let names = lead.pipeline_id.zip(lead.status_id).and_then(|key| stages.get(&key));
    LeadSummary {
        id: lead.id,
        name: lead.name,
        pipeline: names.map(|(pipeline, _)| pipeline.clone()),
        stage: names.map(|(_, stage)| stage.clone()),
        price: lead.price.filter(|price| *price > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stages_are_named_by_pipeline_and_status() {
        let body = json!({"_embedded": {"pipelines": [
            {"id": 1, "name": "Sales", "_embedded": {"statuses": [{"id": 10, "name": "Incoming"}, {"id": 142, "name": "Won"}]}},
            {"id": 2, "name": "Partners", "_embedded": {"statuses": [{"id": 10, "name": "First contact"}]}}
        ]}});
        let names = stage_names(&body);
        assert_eq!(names[&(1, 10)], ("Sales".to_owned(), "Incoming".to_owned()));
        assert_eq!(names[&(2, 10)], ("Partners".to_owned(), "First contact".to_owned()));
        let lead = LeadInfo {
            id: 7,
            name: "Website".into(),
            price: Some(0),
            responsible_user_id: None,
            pipeline_id: Some(2),
            status_id: Some(10),
            created_at: 0,
        };
        let summary = lead_summary(lead, &names);
        assert_eq!(summary.stage.as_deref(), Some("First contact"));
        assert_eq!(summary.price, None, "a lead without a budget shows none, not 0");
    }

    #[test]
    fn lookups_are_bounded_per_account_and_freed_when_done() {
        let callers = CallerId::new();
        let (one, two) = (AccountId::for_tests(1), AccountId::for_tests(2));
        let first = callers.slot(one, "+100").unwrap();
        assert!(callers.slot(one, "+100").is_none(), "a call already being looked up");
        let held: Vec<LookupSlot> =
            (1..LOOKUPS_PER_ACCOUNT).map(|n| callers.slot(one, &format!("+10{n}")).unwrap()).collect();
        assert!(callers.slot(one, "+199").is_none(), "the account's lookups are all running");
        let other = callers.slot(two, "+100");
        assert!(other.is_some(), "another account is not affected");
        drop((first, held));
        assert!(callers.slot(one, "+100").is_some(), "done lookups free their places and calls");
    }
}
