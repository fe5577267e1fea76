//! `server copy-database`: a SQLite deployment, built through the store's own API, copied into a fresh
//! database (PostgreSQL in the PostgreSQL pass, another SQLite file otherwise) reads the same through
//! the store; new rows get fresh ids; a copy into a database that holds anything is refused.

#[path = "support/database.rs"]
mod database;

use secrecy::{ExposeSecret, SecretString};
use server::clock::{unix_millis, unix_secs};
use server::crypto::{Keyring, SealContext};
use server::jobs::Queue;
use server::store::calls::{CallWrite, DeliveryUpdate};
use server::store::copy::{CopyReport, copy_database};
use server::store::inbox::NewEvent;
use server::store::{AccountId, Engine, NewEndpoint, PendingCodeLimits, SettingsWrite, Store};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ACCESS: &str = "kommo_auth_tokens.access_token";
const REFRESH: &str = "kommo_auth_tokens.refresh_token";
const VOIP_TOKEN: &str = "widget_settings.voip_token";
const WEBHOOK_SECRET: &str = "widget_settings.webhook_secret";
/// Kommo's ids of the two accounts.
const ALPHA: i64 = 31_001;
const BETA: i64 = 31_002;

fn seal(keyring: &Keyring, column: &str, account: AccountId, plaintext: &str) -> String {
    keyring.seal(SealContext { column, account_id: account.get() }, &SecretString::from(plaintext.to_owned()))
}

fn open(keyring: &Keyring, column: &str, account: AccountId, sealed: &str) -> String {
    keyring.open(SealContext { column, account_id: account.get() }, sealed).unwrap().expose_secret().to_owned()
}

fn event(account: AccountId, webhook_id: &str, call_id: &str, status: &str, extension: &str) -> NewEvent {
    let body = serde_json::json!({
        "callId": call_id, "voipAccountId": "va-1", "from": "+5511987654321", "to": "+551133334444",
        "status": status, "startTime": 1_764_000_000, "extension": extension,
    });
    NewEvent {
        account,
        webhook_id: webhook_id.to_owned(),
        event_key: format!("{call_id}/{status}"),
        call_id: call_id.to_owned(),
        body: body.to_string(),
        received_at: unix_secs(),
        // Every event queues its call's job here, as the end of a call does.
        queues_job: true,
        popup: None,
    }
}

fn settings(
    keyring: &Keyring,
    account: AccountId,
    hook_id: &str,
    extensions: &[(&str, i64)],
) -> SettingsWrite<'static> {
    SettingsWrite {
        provider_system: "standard",
        credential_method: "api_key",
        provider_url: "https://voip.example.org/api",
        voip_login: "agent",
        sealed_secret: Some(seal(keyring, VOIP_TOKEN, account, &format!("voip key of {hook_id}"))),
        voip_account_id: "va-1",
        config: r#"{"unknown_numbers":"unsorted"}"#.into(),
        fallback_user_id: Some(9_001),
        extensions: extensions.iter().map(|(extension, user)| ((*extension).to_owned(), *user)).collect(),
        user_id: 9_001,
        new_endpoint: NewEndpoint {
            hook_id: hook_id.to_owned(),
            sealed_secret: seal(keyring, WEBHOOK_SECRET, account, &format!("whsec of {hook_id}")),
            hint: "…abcd".into(),
        },
    }
}

/// A deployment as it looks after some use: every table holds rows. Returns the id of an account
/// that was created and then erased (its id was handed out and must not come back).
async fn populate(store: &Store, keyring: &Keyring) -> AccountId {
    let alpha = store.install_account(ALPHA, "alpha", "alpha.kommo.com", Some("BR")).await.unwrap();
    let beta = store.install_account(BETA, "beta", "beta.kommo.com", None).await.unwrap();
    // The latest account was erased: the highest id handed out is no longer in the table.
    let erased = store.install_account(31_999, "gone", "gone.kommo.com", None).await.unwrap();
    sqlx::query("DELETE FROM accounts WHERE id = $1").bind(erased.get()).execute(store.pool()).await.unwrap();

    for (account, name) in [(alpha, "alpha"), (beta, "beta")] {
        let access = seal(keyring, ACCESS, account, &format!("access of {name}"));
        let refresh = seal(keyring, REFRESH, account, &format!("refresh of {name}"));
        store.store_tokens(account, &access, &refresh, unix_secs() + 86_400).await.unwrap();
    }
    store
        .save_settings(alpha, settings(keyring, alpha, "hook-alpha", &[("101", 5_001), ("102", 5_002)]))
        .await
        .unwrap();
    store.save_settings(beta, settings(keyring, beta, "hook-beta", &[("201", 6_001)])).await.unwrap();
    store.deactivate(beta, 6_001).await.unwrap();
    let rotated = seal(keyring, WEBHOOK_SECRET, alpha, "whsec of hook-alpha, rotated");
    assert!(store.rotate_webhook_secret(alpha, &rotated, "…wxyz", unix_secs() + 3_600).await.unwrap());

    let events = [
        event(alpha, "wh-1", "call-1", "ringing", "101"),
        event(alpha, "wh-2", "call-1", "answered", "101"),
        event(alpha, "wh-3", "call-2", "ringing", "102"),
        event(beta, "wh-4", "call-9", "ringing", "201"),
    ];
    assert!(store.insert_events(&events).await.unwrap().iter().all(Option::is_some));
    // A busy day, so that tables span several pages of the copy (500 rows each): 1,200 events of 600
    // calls (and 600 jobs), and 1,100 ledger rows whose three-column keys share their first columns.
    let busy: Vec<NewEvent> = (0..1_200)
        .map(|n| event(alpha, &format!("busy-{n}"), &format!("busy-call-{}", n / 2), &format!("s{}", n % 2), "101"))
        .collect();
    assert!(store.insert_events(&busy).await.unwrap().iter().all(Option::is_some));
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100)
         INSERT INTO kommo_writes (account_id, call_id, action_key, state, outcome, attempts, updated_at)
         SELECT $1, 'busy-call-' || (i % 7), 'key-' || i, 'done', '{}', 1, i FROM n",
    )
    .bind(alpha.get())
    .execute(store.pool())
    .await
    .unwrap();

    // The worker folded call-1, wrote a note into Kommo (done) and was sending the contact.
    let mut fold = store.begin_fold(alpha, "call-1", unix_secs()).await.unwrap();
    assert_eq!(fold.take_unapplied().await.unwrap().len(), 2);
    fold.save(&CallWrite {
        voip_account_id: "va-1",
        from_number: "+5511987654321",
        to_number: "+551133334444",
        direction: "inbound",
        extension: Some("101"),
        status: "answered",
        answered: true,
        started_at: 1_764_000_000,
        duration: Some(42),
        recording_url: Some("https://voip.example.org/rec/1.mp3"),
        client_number: "+5511987654321",
    })
    .await
    .unwrap();
    fold.commit().await.unwrap();
    let delivered = DeliveryUpdate {
        status: Some("delivered"),
        error: None,
        entity: Some(("leads", 77)),
        unsorted_uid: None,
        kommo_call_id: Some(880),
        responsible_user_id: Some(5_001),
        call_status: Some(4),
    };
    store.record_delivery(alpha, "call-1", delivered).await.unwrap();
    store.ledger_mark_done(alpha, "call-1", "note", r#"{"id":880}"#).await.unwrap();
    store.ledger_mark_sending(alpha, "call-1", "contact").await.unwrap();
    assert!(store.insert_call_result(alpha, "call-1", r#"{"status":4}"#, 5_001, unix_millis()).await.unwrap());

    // One job running (a worker's lease on it), one parked as a dead letter, the rest queued. Set
    // directly: the claim and its failures are the job tests' subject; here only the rows matter.
    let queue = Queue::new(store, "worker-1");
    let now = unix_millis();
    queue.beat(now).await.unwrap();
    sqlx::query(
        "UPDATE jobs SET state = 'running', locked_by = 'worker-1', locked_until = $1, attempts = 1
         WHERE subject = 'call-9'",
    )
    .bind(now + 30_000)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE jobs SET state = 'dead', attempts = 10, last_error = 'Kommo refused the request', updated_at = $1
         WHERE subject = 'call-2'",
    )
    .bind(now)
    .execute(store.pool())
    .await
    .unwrap();

    let code = seal(keyring, "oauth_codes.code", alpha, "code");
    let limits = PendingCodeLimits { total: 100, per_host: 10 };
    assert!(store.insert_code("alpha.kommo.com", &code, 0, limits).await.unwrap().is_some());
    store.insert_oauth_state("state-hash", "browser-hash", unix_secs() + 600).await.unwrap();
    assert!(store.remember_token_id("jti-1", unix_secs() + 600).await.unwrap());
    store.reserve_send_slot(&format!("account:{}", alpha.get()), unix_millis(), 143, 10_000).await.unwrap().unwrap();
    assert!(store.insert_push_ticket("ticket-hash", alpha, 5_001, unix_secs() + 60, 16).await.unwrap());
    // The phone index: a contact with two numbers, from a sync's first page.
    store.start_phone_pass(alpha, true, unix_secs()).await.unwrap();
    let contact = server::store::phones::EntityNumbers {
        entity: server::store::phones::IndexedEntity {
            entity_kind: "contacts".into(),
            entity_id: 770,
            name: "Ana Souza".into(),
            company_id: Some(12),
            responsible_user_id: Some(5_001),
            phone_count: 2,
            lead_ids: "[41,42]".into(),
            updated_at: 1_760_000_000,
        },
        numbers: vec!["+5511988887777".into(), "+551133334444".into()],
        with_leads: true,
    };
    let next = server::store::phones::PassStep::Page { kind: "contacts", page: 2 };
    let lead = server::store::phones::LeadLinks {
        lead: server::store::phones::IndexedLead {
            lead_id: 41,
            name: "Website redesign".into(),
            price: Some(15_000),
            pipeline_id: Some(3),
            status_id: Some(30),
            responsible_user_id: Some(5_001),
            created_at: 1_760_000_000,
            updated_at: 1_760_000_000,
        },
        links: vec![("contacts".into(), 770)],
    };
    store.save_phone_page(alpha, &[contact], &[lead], &next, unix_secs()).await.unwrap();
    // Kommo's webhooks for it: the subscription, and a body not applied yet.
    store.set_kommo_hook(alpha, "kommo-hook-token", "subscribed", unix_secs()).await.unwrap();
    let body = "contacts%5Bdelete%5D%5B0%5D%5Bid%5D=770";
    assert!(store.insert_kommo_event(alpha, body, 10, unix_millis()).await.unwrap().is_some());
    // A manager's call list, one entry dialled, and their dial guard.
    let entries = [
        server::store::call_lists::NewEntry {
            entity_id: 770,
            name: "Ana".into(),
            via: None,
            number: Some(("+551133334444".into(), "+55 11 3333-4444".into())),
        },
        server::store::call_lists::NewEntry {
            entity_id: 771,
            name: "Bruno".into(),
            via: Some("Acme".into()),
            number: None,
        },
    ];
    let list = store.create_call_list(alpha, 5_001, "contacts", &entries, unix_millis()).await.unwrap();
    let (row, _) = store.call_list(alpha, 5_001, list).await.unwrap().unwrap();
    let dialled = server::store::call_lists::EntryWrite {
        position: 0,
        state: "calling".into(),
        call_id: Some("call-1".into()),
        dialed_at_ms: Some(unix_millis()),
        ended_at_ms: None,
        duration: None,
        error: None,
    };
    let write = server::store::call_lists::ListWrite {
        state: "running",
        next_position: 2,
        current_position: Some(0),
        entries: &[dialled],
    };
    assert!(store.write_call_list(alpha, &row, write, unix_millis()).await.unwrap());
    assert!(store.take_dial_guard(alpha, 5_001, unix_millis(), unix_millis() + 3_000).await.unwrap());
    assert!(store.bind_call(alpha, "in_1", "+74951234567\n2026-12-04 10:00:00", None, now / 1000).await.unwrap());
    assert!(
        store.bind_call(alpha, "in_1", "+74951234567\n2026-12-04 10:00:00", Some("+7495"), now / 1000).await.unwrap()
    );
    erased
}

/// A `webhook_inbox` row: id, account_id, webhook_id, event_key, call_id, body, received_at, applied_at.
type InboxRow = (i64, i64, String, String, String, String, i64, Option<i64>);
/// A `kommo_writes` row: account_id, call_id, action_key, state, outcome, attempts, updated_at.
type LedgerRow = (i64, String, String, String, Option<String>, i64, i64);

/// What the accounts' users and the operator see through the store, as text to compare.
async fn view(store: &Store, now_ms: i64) -> Vec<String> {
    let mut seen = Vec::new();
    for kommo_id in [ALPHA, BETA] {
        let account = store.account_by_kommo_id(kommo_id).await.unwrap().expect("the account resolves by Kommo id");
        let settings = store.settings(account).await.unwrap().expect("settings");
        seen.push(format!("{account:?} {:?}", store.account(account).await.unwrap()));
        seen.push(format!("{:?}", store.account_country(account).await.unwrap()));
        seen.push(format!("{:?}", store.tokens(account).await.unwrap()));
        seen.push(format!("{settings:?}"));
        seen.push(format!("{:?}", store.extensions(account).await.unwrap()));
        seen.push(format!("{:?}", store.webhook_secret(account).await.unwrap()));
        seen.push(format!("{:?}", store.hook(&settings.hook_id, now_ms / 1000).await.unwrap()));
        let queue = Queue::new(store, "viewer");
        seen.push(format!("{:?}", queue.dead_letters(Some(account), 100).await.unwrap()));
    }
    let alpha = store.account_by_kommo_id(ALPHA).await.unwrap().unwrap();
    let mut ledger = store.ledger(alpha, "call-1").await.unwrap();
    ledger.sort_by(|a, b| a.key.cmp(&b.key));
    seen.push(format!("{ledger:?}"));
    seen.push(format!("{:?}", store.call_result(alpha, "call-1").await.unwrap()));
    seen.push(format!("{:?}", store.call_parties(alpha, "call-1").await.unwrap()));
    seen.push(format!("{:?}", store.call_parties(alpha, "call-2").await.unwrap()));
    seen.push(format!("{:?}", store.user_for_extension(alpha, "102").await.unwrap()));
    seen.push(format!("{:?}", store.phone_sync(alpha).await.unwrap()));
    seen.push(format!("{:?}", store.phone_holders(alpha, "+551133334444").await.unwrap()));
    seen.push(format!("{:?}", store.kommo_hook(alpha).await.unwrap()));
    seen.push(format!("{:?}", store.open_phone_leads(alpha, "contacts", 770).await.unwrap()));
    let list = store.current_call_list_id(alpha, 5_001).await.unwrap().expect("the call list");
    seen.push(format!("{:?}", store.call_list(alpha, 5_001, list).await.unwrap()));
    let guards: Vec<(i64, i64, i64)> = sqlx::query_as("SELECT account_id, kommo_user_id, until_ms FROM dial_guards")
        .fetch_all(store.pool())
        .await
        .unwrap();
    seen.push(format!("{guards:?}"));
    // The copied binding still refuses another call's fields and accepts its own.
    seen.push(format!("{:?}", store.bind_call(alpha, "in_1", "+74950000000\n2026-12-04 10:00:00", None, 0).await));
    seen.push(format!(
        "{:?}",
        store.bind_call(alpha, "in_1", "+74951234567\n2026-12-04 10:00:00", Some("+7495"), 0).await
    ));
    let events = sqlx::query_scalar::<_, i64>("SELECT id FROM kommo_events").fetch_all(store.pool()).await.unwrap();
    for id in events {
        seen.push(format!("{:?}", store.kommo_event(alpha, id).await.unwrap()));
    }
    seen.push(format!("{:?}", Queue::new(store, "viewer").depth(now_ms).await.unwrap()));
    let call: (i64, i64, String, Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT id, CASE WHEN answered THEN 1 ELSE 0 END, delivery_status, delivered_at, kommo_call_id, duration
         FROM voip_calls WHERE call_id = 'call-1'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    seen.push(format!("{call:?}"));
    let jobs: Vec<(i64, String, String, i64, Option<String>)> =
        sqlx::query_as("SELECT id, subject, state, attempts, locked_by FROM jobs ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    seen.push(format!("{jobs:?}"));
    // Every row of the tables that span several pages (sorted here: the engines collate text differently).
    let mut inbox: Vec<InboxRow> = sqlx::query_as(
        "SELECT id, account_id, webhook_id, event_key, call_id, body, received_at, applied_at FROM webhook_inbox",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    inbox.sort();
    seen.push(format!("{inbox:?}"));
    let mut writes: Vec<LedgerRow> = sqlx::query_as(
        "SELECT account_id, call_id, action_key, state, outcome, attempts, updated_at FROM kommo_writes",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    writes.sort();
    seen.push(format!("{writes:?}"));
    seen
}

async fn count(store: &Store, table: &str) -> u64 {
    let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(store.pool()).await.unwrap();
    u64::try_from(rows).unwrap()
}

async fn counts(store: &Store, report: &CopyReport) -> Vec<(&'static str, u64)> {
    let mut counts = Vec::new();
    for (table, _) in &report.tables {
        counts.push((*table, count(store, table).await));
    }
    counts
}

#[tokio::test]
async fn a_sqlite_deployment_copied_into_a_fresh_database_reads_the_same_and_a_second_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::parse(KEYS).unwrap();
    let source = Store::connect(&format!("sqlite://{}", dir.path().join("source.sqlite").display())).await.unwrap();
    let erased = populate(&source, &keyring).await;
    let target = Store::connect(&database::database_url(dir.path(), "target").await).await.unwrap();
    let expected_engine = if database::on_postgres() { Engine::Postgres } else { Engine::Sqlite };
    assert_eq!(target.engine(), expected_engine);

    let report = copy_database(&source, &target).await.unwrap();
    assert_eq!((report.from, report.to), (Engine::Sqlite, expected_engine));
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(source.pool())
    .await
    .unwrap();
    tables.sort();
    let mut copied: Vec<&str> = report.tables.iter().map(|(table, _)| *table).collect();
    copied.sort_unstable();
    assert_eq!(copied, tables, "every table of the schema is copied");
    assert!(report.tables.iter().all(|(_, rows)| *rows > 0), "the fixture fills every table: {report}");
    assert_eq!(counts(&source, &report).await, report.tables, "the report counts the source's rows");
    assert_eq!(counts(&target, &report).await, report.tables, "the target holds every row");
    assert_eq!(report.tables[0], ("accounts", 2));
    let rows_of = |table: &str| report.tables.iter().find(|(name, _)| *name == table).unwrap().1;
    assert!(rows_of("webhook_inbox") > 1_000 && rows_of("jobs") > 500 && rows_of("kommo_writes") > 1_000, "{report}");

    // What users and the operator see is the same, ids included.
    let now_ms = unix_millis();
    assert_eq!(view(&target, now_ms).await, view(&source, now_ms).await);

    // Secrets stayed sealed as they were, and still open: they are bound to the same ids and columns.
    let alpha = target.account_by_kommo_id(ALPHA).await.unwrap().unwrap();
    let tokens = target.tokens(alpha).await.unwrap().unwrap();
    assert_eq!(open(&keyring, ACCESS, alpha, &tokens.access_token), "access of alpha");
    assert_eq!(open(&keyring, REFRESH, alpha, &tokens.refresh_token), "refresh of alpha");
    let settings = target.settings(alpha).await.unwrap().unwrap();
    assert_eq!(open(&keyring, VOIP_TOKEN, alpha, settings.voip_token.as_deref().unwrap()), "voip key of hook-alpha");
    let hook = target.hook("hook-alpha", unix_secs()).await.unwrap().expect("the webhook path resolves");
    assert_eq!(hook.account, alpha);
    assert!(hook.active);
    assert_eq!(open(&keyring, WEBHOOK_SECRET, hook.account, &hook.secret), "whsec of hook-alpha, rotated");
    let (previous, _) = hook.previous_secret.expect("the secret before the rotation still verifies");
    assert_eq!(open(&keyring, WEBHOOK_SECRET, hook.account, &previous), "whsec of hook-alpha");
    let beta = target.hook("hook-beta", unix_secs()).await.unwrap().unwrap();
    assert!(!beta.active, "a turned-off account stays off");
    assert_eq!(target.user_for_extension(alpha, "101").await.unwrap(), Some(5_001));

    // New rows get fresh ids: past every copied id, and past the erased account's id too.
    let gamma = target.install_account(31_003, "gamma", "gamma.kommo.com", None).await.unwrap();
    assert_eq!(gamma.get(), erased.get() + 1, "the next account id follows every id the source handed out");
    let max_inbox: i64 =
        sqlx::query_scalar("SELECT MAX(id) FROM webhook_inbox").fetch_one(target.pool()).await.unwrap();
    let stored = target.insert_events(&[event(alpha, "wh-5", "call-3", "ringing", "101")]).await.unwrap();
    assert!(stored[0].is_some(), "stored new in the copy");
    let new_inbox: i64 =
        sqlx::query_scalar("SELECT MAX(id) FROM webhook_inbox").fetch_one(target.pool()).await.unwrap();
    assert_eq!(new_inbox, max_inbox + 1);
    target.save_settings(gamma, settings_for_gamma(&keyring, gamma)).await.unwrap();
    assert_eq!(target.extensions(gamma).await.unwrap(), vec![("301".to_owned(), 7_001)]);

    // A second copy into the now non-empty target is refused, and changes nothing.
    let before = counts(&target, &report).await;
    let refused = copy_database(&source, &target).await.unwrap_err();
    assert!(format!("{refused:#}").contains("already holds accounts"), "{refused:#}");
    assert!(format!("{refused:#}").contains("nothing was written"), "{refused:#}");
    assert_eq!(counts(&target, &report).await, before);

    // And back: the copy reads either engine (the PostgreSQL pass copies PostgreSQL into SQLite here).
    let back = Store::connect(&format!("sqlite://{}", dir.path().join("back.sqlite").display())).await.unwrap();
    let again = copy_database(&target, &back).await.unwrap();
    assert_eq!(counts(&back, &again).await, again.tables);
    assert_eq!(view(&back, now_ms).await, view(&target, now_ms).await);
    let delta = back.install_account(31_004, "delta", "delta.kommo.com", None).await.unwrap();
    assert_eq!(delta.get(), gamma.get() + 1);
}

fn settings_for_gamma(keyring: &Keyring, gamma: AccountId) -> SettingsWrite<'static> {
    settings(keyring, gamma, "hook-gamma", &[("301", 7_001)])
}

#[tokio::test]
async fn a_target_holding_any_row_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::parse(KEYS).unwrap();
    let source = Store::connect(&format!("sqlite://{}", dir.path().join("source.sqlite").display())).await.unwrap();
    populate(&source, &keyring).await;
    let target = Store::connect(&database::database_url(dir.path(), "target").await).await.unwrap();
    // A server started on the new database began a consent flow: no account, yet not empty.
    target.insert_oauth_state("someone-else", "browser", unix_secs() + 600).await.unwrap();

    let refused = copy_database(&source, &target).await.unwrap_err();
    assert!(format!("{refused:#}").contains("rows in oauth_states"), "{refused:#}");
    assert_eq!(count(&target, "accounts").await, 0);
    assert_eq!(count(&target, "oauth_states").await, 1);
}
