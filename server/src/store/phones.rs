//! The phone index: the account's Kommo contacts and companies with their numbers in E.164
//! (`phone_entities`, `phone_numbers`), where the account's sync of them stands (`phone_sync`), and
//! Kommo's own webhooks that keep it fresh (`kommo_hooks`, the subscription; `kommo_events`, the bodies
//! received and not yet applied). Filled and kept fresh by `calls::index`; read by the call processor
//! instead of a Kommo search.

use sqlx::{AnyConnection, FromRow};

use super::jobs::{self, KIND_KOMMO_EVENT, KIND_PHONE_SYNC};
use super::{AccountId, Store};

/// A contact or company of the index.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct IndexedEntity {
    /// `contacts` or `companies`.
    pub entity_kind: String,
    pub entity_id: i64,
    pub name: String,
    pub company_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub phone_count: i64,
    /// Its leads' ids, a JSON array.
    pub lead_ids: String,
    /// Kommo's `updated_at` (unix s).
    pub updated_at: i64,
}

/// An entity as a sync page (or one of our own writes) brings it, with its numbers in E.164.
#[derive(Debug, Clone)]
pub struct EntityNumbers {
    pub entity: IndexedEntity,
    pub numbers: Vec<String>,
    /// Whether `entity.lead_ids` is known (a Kommo webhook does not say the leads: the stored ones stay).
    pub with_leads: bool,
}

/// A lead of the index, with the contacts and companies it is linked to.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct IndexedLead {
    pub lead_id: i64,
    pub name: String,
    pub price: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub status_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub created_at: i64,
    /// Kommo's `updated_at` (unix s).
    pub updated_at: i64,
}

/// A lead as a sync page (or a re-read after Kommo's webhook) brings it, with its links.
#[derive(Debug, Clone)]
pub struct LeadLinks {
    pub lead: IndexedLead,
    /// `(contacts|companies, id)`.
    pub links: Vec<(String, i64)>,
}

/// What a Kommo webhook body changes in the index.
#[derive(Debug, Clone, Default)]
pub struct IndexChanges {
    /// Contacts and companies to put.
    pub put: Vec<EntityNumbers>,
    /// Contacts and companies to drop: `(kind, id)`.
    pub dropped: Vec<(String, i64)>,
    pub leads: Vec<LeadLinks>,
    pub dropped_leads: Vec<i64>,
}

/// The account's subscription to Kommo's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct KommoHook {
    pub token: String,
    /// `subscribed` or `unavailable`.
    pub state: String,
    pub checked_at: i64,
}

/// Where an account's sync stands.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SyncRow {
    /// The list the running pass pages through (`contacts`, `companies`); `None` between passes.
    pub pass_kind: Option<String>,
    pub pass_page: i64,
    /// The pass reads entities updated at or after this (0: every entity).
    pub pass_from: i64,
    pub pass_started_at: i64,
    pub pass_entities: i64,
    /// The first complete pass ended (unix s).
    pub complete_at: Option<i64>,
    /// The last pass ended (unix s).
    pub fresh_at: Option<i64>,
    /// The last full pass ended (unix s).
    pub full_at: Option<i64>,
    /// Where the next pass reads from.
    pub next_from: i64,
}

/// The phone indexes of every account, for the operator's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTotals {
    pub syncing: i64,
    pub ready: i64,
    pub numbers: i64,
}

/// What a page did to the pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassStep {
    /// Read `page` of `kind` next.
    Page { kind: &'static str, page: i64 },
    /// The pass is over: the next one reads from `next_from`.
    Done { next_from: i64 },
}

/// The columns of [`SyncRow`].
const SYNC_COLUMNS: &str = "s.pass_kind, s.pass_page, s.pass_from, s.pass_started_at, s.pass_entities, s.complete_at, s.fresh_at, s.full_at, s.next_from";

const ENTITY_COLUMNS: &str =
    "e.entity_kind, e.entity_id, e.name, e.company_id, e.responsible_user_id, e.phone_count, e.lead_ids, e.updated_at";

impl Store {
    /// The account's sync, if one ever started.
    pub async fn phone_sync(&self, account: AccountId) -> sqlx::Result<Option<SyncRow>> {
        sqlx::query_as(&format!("SELECT {SYNC_COLUMNS} FROM phone_sync s WHERE s.account_id = $1"))
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    /// Starts a pass over the contacts, then the companies: a full one (every entity; the first pass
    /// always is), or one of those updated at or after the account's `next_from`. Returns the sync as it
    /// now stands.
    pub async fn start_phone_pass(&self, account: AccountId, full: bool, now: i64) -> sqlx::Result<SyncRow> {
        sqlx::query(
            "INSERT INTO phone_sync (account_id, pass_kind, pass_page, pass_from, pass_started_at, pass_entities, updated_at)
             VALUES ($1, 'contacts', 1, 0, $2, 0, $2)
             ON CONFLICT (account_id) DO UPDATE SET pass_kind = 'contacts', pass_page = 1,
                 pass_from = CASE WHEN $3 = 1 THEN 0 ELSE phone_sync.next_from END, pass_started_at = $2,
                 pass_entities = 0, updated_at = $2",
        )
        .bind(account.0)
        .bind(now)
        .bind(i64::from(full))
        .execute(&self.pool)
        .await?;
        Ok(self.phone_sync(account).await?.expect("the pass was just started"))
    }

    /// Applies a page of the pass (each entity unless the index holds a newer version of it) and moves
    /// the pass on, in one transaction: a crash before it commits reads the page again. The end of a
    /// full pass drops every entity it did not see (Kommo deleted it).
    pub async fn save_phone_page(
        &self,
        account: AccountId,
        entities: &[EntityNumbers],
        leads: &[LeadLinks],
        step: &PassStep,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        for entity in entities {
            put_entity(&mut tx, account, entity, now).await?;
        }
        for lead in leads {
            put_lead(&mut tx, account, lead, now).await?;
        }
        let read = (entities.len() + leads.len()) as i64;
        match step {
            PassStep::Page { kind, page } => {
                sqlx::query(
                    "UPDATE phone_sync SET pass_kind = $2, pass_page = $3, pass_entities = pass_entities + $4,
                         updated_at = $5 WHERE account_id = $1",
                )
                .bind(account.0)
                .bind(*kind)
                .bind(*page)
                .bind(read)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            PassStep::Done { next_from } => {
                let (from, started): (i64, i64) =
                    sqlx::query_as("SELECT pass_from, pass_started_at FROM phone_sync WHERE account_id = $1")
                        .bind(account.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let full = from == 0;
                if full {
                    for table in ["phone_numbers", "phone_entities", "phone_lead_links", "phone_leads"] {
                        let unseen = match table {
                            "phone_numbers" => {
                                "(entity_kind, entity_id) IN (SELECT entity_kind, entity_id FROM phone_entities
                                   WHERE account_id = $1 AND seen_at < $2)"
                            }
                            "phone_lead_links" => {
                                "lead_id IN (SELECT lead_id FROM phone_leads WHERE account_id = $1 AND seen_at < $2)"
                            }
                            _ => "seen_at < $2",
                        };
                        sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1 AND {unseen}"))
                            .bind(account.0)
                            .bind(started)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                sqlx::query(
                    "UPDATE phone_sync SET pass_kind = NULL, pass_page = 1, pass_entities = pass_entities + $2,
                         complete_at = COALESCE(complete_at, $3), fresh_at = $3, next_from = $4,
                         full_at = CASE WHEN $5 = 1 THEN $3 ELSE full_at END, updated_at = $3
                     WHERE account_id = $1",
                )
                .bind(account.0)
                .bind(read)
                .bind(now)
                .bind(*next_from)
                .bind(i64::from(full))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    }

    /// Puts one entity into the index now (something this server just created in Kommo), unless the
    /// index holds a newer version of it.
    pub async fn put_phone_entity(&self, account: AccountId, entity: &EntityNumbers, now: i64) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        put_entity(&mut tx, account, entity, now).await?;
        tx.commit().await
    }

    /// The contacts and companies of the index that have `e164`: contacts first (Kommo attaches a call
    /// to a contact before a company), most recently updated first.
    pub async fn phone_holders(&self, account: AccountId, e164: &str) -> sqlx::Result<Vec<IndexedEntity>> {
        sqlx::query_as(&format!(
            "SELECT {ENTITY_COLUMNS} FROM phone_numbers n
               JOIN phone_entities e ON e.account_id = n.account_id AND e.entity_kind = n.entity_kind
                                    AND e.entity_id = n.entity_id
              WHERE n.account_id = $1 AND n.e164 = $2
              ORDER BY CASE WHEN e.entity_kind = 'contacts' THEN 0 ELSE 1 END, e.updated_at DESC, e.entity_id DESC"
        ))
        .bind(account.0)
        .bind(e164)
        .fetch_all(&self.pool)
        .await
    }

    /// Up to `limit` entities of `kind` of the account's index, picked at random, each with its numbers
    /// (sorted), for the drift check.
    pub async fn phone_sample(
        &self,
        account: AccountId,
        kind: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<(IndexedEntity, Vec<String>)>> {
        let entities: Vec<IndexedEntity> = sqlx::query_as(&format!(
            "SELECT {ENTITY_COLUMNS} FROM phone_entities e WHERE e.account_id = $1 AND e.entity_kind = $2
              ORDER BY RANDOM() LIMIT $3"
        ))
        .bind(account.0)
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut sampled = Vec::with_capacity(entities.len());
        for entity in entities {
            let numbers: Vec<String> = sqlx::query_scalar(
                "SELECT e164 FROM phone_numbers WHERE account_id = $1 AND entity_kind = $2 AND entity_id = $3
                  ORDER BY e164",
            )
            .bind(account.0)
            .bind(kind)
            .bind(entity.entity_id)
            .fetch_all(&self.pool)
            .await?;
            sampled.push((entity, numbers));
        }
        Ok(sampled)
    }

    /// The open leads (not won, not lost) of a contact or company of the index, most recent first.
    pub async fn open_phone_leads(&self, account: AccountId, kind: &str, id: i64) -> sqlx::Result<Vec<IndexedLead>> {
        sqlx::query_as(
            "SELECT l.lead_id, l.name, l.price, l.pipeline_id, l.status_id, l.responsible_user_id, l.created_at,
                    l.updated_at
               FROM phone_lead_links k
               JOIN phone_leads l ON l.account_id = k.account_id AND l.lead_id = k.lead_id
              WHERE k.account_id = $1 AND k.entity_kind = $2 AND k.entity_id = $3
                AND (l.status_id IS NULL OR l.status_id NOT IN (142, 143))
              ORDER BY l.created_at DESC, l.lead_id DESC",
        )
        .bind(account.0)
        .bind(kind)
        .bind(id)
        .fetch_all(&self.pool)
        .await
    }

    /// How many numbers and entities the account's index holds.
    pub async fn phone_index_size(&self, account: AccountId) -> sqlx::Result<(i64, i64)> {
        let numbers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM phone_numbers WHERE account_id = $1")
            .bind(account.0)
            .fetch_one(&self.pool)
            .await?;
        let entities: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM phone_entities WHERE account_id = $1")
            .bind(account.0)
            .fetch_one(&self.pool)
            .await?;
        Ok((numbers, entities))
    }

    /// Accounts whose first sync runs, accounts whose index is complete, and the numbers of every index.
    pub async fn phone_index_totals(&self) -> sqlx::Result<IndexTotals> {
        let (syncing, ready): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN complete_at IS NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN complete_at IS NULL THEN 0 ELSE 1 END), 0)
               FROM phone_sync",
        )
        .fetch_one(&self.pool)
        .await?;
        let numbers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM phone_numbers").fetch_one(&self.pool).await?;
        Ok(IndexTotals { syncing, ready, numbers })
    }

    /// Queues a sync step for every connected account whose integration is on and whose index has never
    /// been synced, or whose last pass ended before `stale_before` (unix s); an account with a sync step
    /// queued already keeps that one. Returns how many were queued.
    pub async fn queue_due_phone_syncs(&self, stale_before: i64, now_ms: i64) -> sqlx::Result<u64> {
        let queued = sqlx::query(
            "INSERT INTO jobs (account_id, kind, subject, state, run_at, created_at, updated_at)
             SELECT a.id, $1, '', 'queued', $2, $2, $2
               FROM accounts a
               JOIN widget_settings w ON w.account_id = a.id AND w.active
               LEFT JOIN phone_sync s ON s.account_id = a.id
              WHERE a.state = 'installed'
                AND (s.account_id IS NULL OR (s.pass_kind IS NULL AND s.fresh_at < $3)
                     OR (s.pass_kind IS NOT NULL AND s.updated_at < $3))
             ON CONFLICT DO NOTHING",
        )
        .bind(KIND_PHONE_SYNC)
        .bind(now_ms)
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(queued.rows_affected())
    }

    /// The account's subscription to Kommo's webhooks, if one was tried.
    pub async fn kommo_hook(&self, account: AccountId) -> sqlx::Result<Option<KommoHook>> {
        sqlx::query_as("SELECT token, state, checked_at FROM kommo_hooks WHERE account_id = $1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records a subscription attempt: the path token and what Kommo answered.
    pub async fn set_kommo_hook(&self, account: AccountId, token: &str, state: &str, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_hooks (account_id, token, state, checked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id) DO UPDATE SET token = $2, state = $3, checked_at = $4",
        )
        .bind(account.0)
        .bind(token)
        .bind(state)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// The connected account whose Kommo webhook path token is `token`.
    pub async fn account_by_kommo_hook(&self, token: &str) -> sqlx::Result<Option<AccountId>> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT h.account_id FROM kommo_hooks h JOIN accounts a ON a.id = h.account_id
              WHERE h.token = $1 AND a.state = 'installed'",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(AccountId))
    }

    /// Stores a Kommo webhook body with the job that applies it, in one transaction, unless the account
    /// has `max_pending` bodies waiting already: then `None` and nothing is stored (the caller makes the
    /// next sync pass due at once, which reads the same changes by `updated_at`).
    pub async fn insert_kommo_event(
        &self,
        account: AccountId,
        body: &str,
        max_pending: i64,
        now_ms: i64,
    ) -> sqlx::Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kommo_events WHERE account_id = $1")
            .bind(account.0)
            .fetch_one(&mut *tx)
            .await?;
        if pending >= max_pending {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO kommo_events (account_id, body, received_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(account.0)
        .bind(body)
        .bind(now_ms / 1000)
        .fetch_one(&mut *tx)
        .await?;
        jobs::enqueue(&mut tx, account, KIND_KOMMO_EVENT, &id.to_string(), now_ms).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// In one read: the account's sync (if one ever started), whether it is subscribed to Kommo's
    /// webhooks, and whether bodies of theirs wait to be applied.
    pub async fn phone_index_state(&self, account: AccountId) -> sqlx::Result<Option<(SyncRow, bool, bool)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            sync: SyncRow,
            subscribed: i64,
            waiting: i64,
        }
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {SYNC_COLUMNS},
                    CASE WHEN EXISTS (SELECT 1 FROM kommo_hooks h WHERE h.account_id = s.account_id
                                       AND h.state = 'subscribed') THEN 1 ELSE 0 END AS subscribed,
                    CASE WHEN EXISTS (SELECT 1 FROM kommo_events e WHERE e.account_id = s.account_id)
                         THEN 1 ELSE 0 END AS waiting
               FROM phone_sync s WHERE s.account_id = $1"
        ))
        .bind(account.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.sync, row.subscribed == 1, row.waiting == 1)))
    }

    /// A stored Kommo webhook body of the account.
    pub async fn kommo_event(&self, account: AccountId, id: i64) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT body FROM kommo_events WHERE account_id = $1 AND id = $2")
            .bind(account.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Applies a Kommo webhook body's changes (entities to put, entities to drop) and forgets the body,
    /// in one transaction.
    pub async fn apply_kommo_event(
        &self,
        account: AccountId,
        id: i64,
        changes: &IndexChanges,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        change_entities(&mut tx, account, &changes.put, &changes.dropped, now).await?;
        for lead in &changes.leads {
            put_lead(&mut tx, account, lead, now).await?;
        }
        for lead_id in &changes.dropped_leads {
            for table in ["phone_lead_links", "phone_leads"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1 AND lead_id = $2"))
                    .bind(account.0)
                    .bind(*lead_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("DELETE FROM kommo_events WHERE account_id = $1 AND id = $2")
            .bind(account.0)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Puts and drops entities (the drift check's repairs), in one transaction.
    pub async fn repair_phone_entities(
        &self,
        account: AccountId,
        put: &[EntityNumbers],
        dropped: &[(String, i64)],
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        change_entities(&mut tx, account, put, dropped, now).await?;
        tx.commit().await
    }

    /// Makes the account's next incremental pass due now (changes were announced that could not be
    /// kept: the pass reads them by `updated_at`).
    pub async fn hurry_phone_pass(&self, account: AccountId) -> sqlx::Result<()> {
        sqlx::query("UPDATE phone_sync SET fresh_at = 0 WHERE account_id = $1 AND pass_kind IS NULL")
            .bind(account.0)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Queues the account's next sync step at `run_at_ms` (unless one is queued already).
    pub async fn queue_phone_sync(&self, account: AccountId, run_at_ms: i64) -> sqlx::Result<()> {
        let mut connection = self.pool.acquire().await?;
        jobs::enqueue(&mut connection, account, KIND_PHONE_SYNC, "", run_at_ms).await
    }
}

/// Puts `put` and drops `dropped` (kind, id).
async fn change_entities(
    tx: &mut AnyConnection,
    account: AccountId,
    put: &[EntityNumbers],
    dropped: &[(String, i64)],
    now: i64,
) -> sqlx::Result<()> {
    for entity in put {
        put_entity(tx, account, entity, now).await?;
    }
    for (kind, entity_id) in dropped {
        for table in ["phone_numbers", "phone_entities"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1 AND entity_kind = $2 AND entity_id = $3"))
                .bind(account.0)
                .bind(kind)
                .bind(*entity_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Upserts `entity` (seen at `now`) unless the stored version is newer; when it was written, its
/// numbers replace the stored ones.
async fn put_entity(tx: &mut AnyConnection, account: AccountId, entity: &EntityNumbers, now: i64) -> sqlx::Result<()> {
    let EntityNumbers { entity, numbers, with_leads } = entity;
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO phone_entities (account_id, entity_kind, entity_id, name, company_id, responsible_user_id,
                                     phone_count, lead_ids, updated_at, seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (account_id, entity_kind, entity_id) DO UPDATE SET name = excluded.name,
             company_id = excluded.company_id, responsible_user_id = excluded.responsible_user_id,
             phone_count = excluded.phone_count,
             lead_ids = CASE WHEN $11 = 1 THEN excluded.lead_ids ELSE phone_entities.lead_ids END,
             updated_at = excluded.updated_at, seen_at = excluded.seen_at
           WHERE phone_entities.updated_at <= excluded.updated_at
         RETURNING entity_id",
    )
    .bind(account.0)
    .bind(&entity.entity_kind)
    .bind(entity.entity_id)
    .bind(&entity.name)
    .bind(entity.company_id)
    .bind(entity.responsible_user_id)
    .bind(entity.phone_count)
    .bind(&entity.lead_ids)
    .bind(entity.updated_at)
    .bind(now)
    .bind(i64::from(*with_leads))
    .fetch_optional(&mut *tx)
    .await?;
    if written.is_none() {
        return Ok(());
    }
    sqlx::query("DELETE FROM phone_numbers WHERE account_id = $1 AND entity_kind = $2 AND entity_id = $3")
        .bind(account.0)
        .bind(&entity.entity_kind)
        .bind(entity.entity_id)
        .execute(&mut *tx)
        .await?;
    for e164 in numbers {
        sqlx::query(
            "INSERT INTO phone_numbers (account_id, e164, entity_kind, entity_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(e164)
        .bind(&entity.entity_kind)
        .bind(entity.entity_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Upserts a lead (seen at `now`) unless the stored version is newer; when it was written, its links
/// replace the stored ones.
async fn put_lead(tx: &mut AnyConnection, account: AccountId, lead: &LeadLinks, now: i64) -> sqlx::Result<()> {
    let LeadLinks { lead, links } = lead;
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO phone_leads (account_id, lead_id, name, price, pipeline_id, status_id, responsible_user_id,
                                  created_at, updated_at, seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (account_id, lead_id) DO UPDATE SET name = excluded.name, price = excluded.price,
             pipeline_id = excluded.pipeline_id, status_id = excluded.status_id,
             responsible_user_id = excluded.responsible_user_id, created_at = excluded.created_at,
             updated_at = excluded.updated_at, seen_at = excluded.seen_at
           WHERE phone_leads.updated_at <= excluded.updated_at
         RETURNING lead_id",
    )
    .bind(account.0)
    .bind(lead.lead_id)
    .bind(&lead.name)
    .bind(lead.price)
    .bind(lead.pipeline_id)
    .bind(lead.status_id)
    .bind(lead.responsible_user_id)
    .bind(lead.created_at)
    .bind(lead.updated_at)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if written.is_none() {
        return Ok(());
    }
    sqlx::query("DELETE FROM phone_lead_links WHERE account_id = $1 AND lead_id = $2")
        .bind(account.0)
        .bind(lead.lead_id)
        .execute(&mut *tx)
        .await?;
    for (kind, entity_id) in links {
        sqlx::query(
            "INSERT INTO phone_lead_links (account_id, entity_kind, entity_id, lead_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(kind)
        .bind(*entity_id)
        .bind(lead.lead_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
