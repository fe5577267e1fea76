//! Calls into Kommo end to end: provider events stored in the inbox, `process_call` run as the worker
//! runs it, and our Kommo client talking over HTTP to the local Kommo (the stand-in), which records
//! every write. Each test asserts what a Kommo user would find (one call per provider call, on the right
//! entity; tasks due when and for whom the rules say; unsorted leads; notes), how many requests it took,
//! and that every body we sent is valid for the vendor's API description.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use server::calls::{CallsContext, process_call};
use server::jobs::JobError;
use server::store::AccountId;
use shared::{CallHandling, ExtensionEntry, ExtensionMap, UnknownCallerEntity, UnsortedAccept};
use support::{ACCOUNT, World, world};

/// Users of the local Kommo's account (see the stand-in's default users).
const MARIA: i64 = ACCOUNT as i64 * 100 + 1;
const JUAN: i64 = ACCOUNT as i64 * 100 + 2;
/// The caller, as the provider sends it, and in E.164.
const CALLER: &str = "+55 11 98888-7777";
const CALLER_E164: &str = "+5511988887777";
/// Our line.
const LINE: &str = "+551133334444";
const STARTED: i64 = 1_760_000_000;

struct Desk {
    world: World,
    account: AccountId,
    ctx: CallsContext,
    next_webhook: AtomicU32,
}

/// A local Kommo with the account installed and the integration saved with `handling`, extension
/// 101 → Maria.
async fn desk(handling: CallHandling) -> Desk {
    desk_with_timeout(handling, Duration::from_secs(15)).await
}

async fn desk_with_timeout(handling: CallHandling, timeout: Duration) -> Desk {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let mut settings = world.valid_settings();
    settings.call_handling = handling;
    settings.extensions = ExtensionMap {
        entries: vec![ExtensionEntry { extension: "101".into(), user_id: MARIA }],
        fallback_user_id: None,
    };
    let (status, body) =
        world.widget(Method::PUT, "/widget/v1/settings", ACCOUNT, Some(serde_json::to_value(&settings).unwrap())).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let ctx = CallsContext::new(world.store.clone(), world.kommo_client(world.store.clone(), timeout));
    let desk = Desk { world, account, ctx, next_webhook: AtomicU32::new(1) };
    desk.reset_stats().await;
    desk
}

impl Desk {
    /// Stores a provider event of `call_id` in the inbox, as the webhook handler does.
    async fn event(&self, call_id: &str, status: &str, extra: Value) {
        let mut event = json!({
            "callId": call_id, "voipAccountId": "va-1", "from": CALLER, "to": LINE, "status": status,
            "startTime": STARTED, "extension": "101",
        });
        for (key, value) in extra.as_object().unwrap() {
            event[key] = value.clone();
        }
        if event["direction"] == "outbound" {
            let (from, to) = (event["from"].clone(), event["to"].clone());
            event["from"] = to;
            event["to"] = from;
        }
        self.raw_event(call_id, &format!("{call_id}/{status}/{}", event["type"]), &event.to_string()).await;
    }

    async fn raw_event(&self, call_id: &str, event_key: &str, body: &str) {
        let webhook = self.next_webhook.fetch_add(1, Ordering::Relaxed);
        sqlx::query(
            "INSERT INTO webhook_inbox (account_id, webhook_id, event_key, call_id, body, received_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.account.get())
        .bind(format!("msg_{webhook}"))
        .bind(event_key)
        .bind(call_id)
        .bind(body)
        .bind(STARTED)
        .execute(self.world.store.pool())
        .await
        .unwrap();
    }

    async fn process(&self, call_id: &str) -> Result<(), JobError> {
        process_call(&self.ctx, self.account, call_id).await
    }

    /// Runs the job of `call_id` again (a retry, a late duplicate event): nothing more reaches Kommo.
    async fn assert_a_rerun_sends_nothing(&self, call_id: &str) {
        self.reset_stats().await;
        self.process(call_id).await.unwrap();
        assert_eq!(self.api_requests().await, 0, "a second run of {call_id} sends nothing");
    }

    /// Runs the job of `call_id` twice: the first run asks for a retry, the second succeeds.
    async fn process_after_a_retry(&self, call_id: &str) {
        assert!(matches!(self.process(call_id).await, Err(JobError::Retry { .. })));
        self.process(call_id).await.unwrap();
    }

    /// The manager's result for `call_id`, as the widget's call-result modal stores it.
    async fn call_result(&self, call_id: &str, result: Value) {
        sqlx::query(
            "INSERT INTO call_results (account_id, call_id, result, user_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(self.account.get())
        .bind(call_id)
        .bind(result.to_string())
        .bind(MARIA)
        .bind(STARTED)
        .execute(self.world.store.pool())
        .await
        .unwrap();
    }

    /// A Kommo write of `call_id`'s job as an earlier attempt left it (`action_key`, `state`, `outcome`).
    async fn kommo_write(&self, call_id: &str, action_key: &str, state: &str, outcome: Option<String>) {
        sqlx::query(
            "INSERT INTO kommo_writes (account_id, call_id, action_key, state, outcome, attempts, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6)",
        )
        .bind(self.account.get())
        .bind(call_id)
        .bind(action_key)
        .bind(state)
        .bind(outcome)
        .bind(STARTED)
        .execute(self.world.store.pool())
        .await
        .unwrap();
    }

    /// A contact in the local Kommo: its id and its leads' ids.
    async fn contact(&self, phones: &[&str], responsible: i64, leads: Value) -> (i64, Vec<i64>) {
        let reply = self
            .world
            .kommo_control(
                "/sandbox/kommo/contacts",
                json!({"account_id": ACCOUNT, "name": "Ana Souza", "phones": phones,
                       "responsible_user_id": responsible, "leads": leads}),
            )
            .await;
        let leads = reply["lead_ids"].as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect();
        (reply["contact_id"].as_i64().unwrap(), leads)
    }

    /// A company in the local Kommo (no contact of it has its number): its id and its leads' ids.
    async fn company(&self, phones: &[&str], responsible: i64, leads: Value) -> (i64, Vec<i64>) {
        let reply = self
            .world
            .kommo_control(
                "/sandbox/kommo/companies",
                json!({"account_id": ACCOUNT, "name": "Acme Ltda", "phones": phones,
                       "responsible_user_id": responsible, "leads": leads}),
            )
            .await;
        let leads = reply["lead_ids"].as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect();
        (reply["company_id"].as_i64().unwrap(), leads)
    }

    /// The account's CRM as the local Kommo stores it (no API request spent).
    async fn entities(&self) -> Value {
        let url = format!("{}/sandbox/kommo/entities?account_id={ACCOUNT}", self.world.kommo);
        self.world.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// The calls in the local Kommo (its `call_in`/`call_out` notes) with `uniq`: where each is, as
    /// `(entity_type, entity_id)`.
    async fn calls_in_kommo(&self, uniq: &str) -> Vec<(String, i64)> {
        let entities = self.entities().await;
        entities["notes"]
            .as_object()
            .unwrap()
            .values()
            .filter(|note| note["note_type"] == "call_in" || note["note_type"] == "call_out")
            .filter(|note| note["params"]["uniq"] == uniq)
            .map(|note| (note["entity_type"].as_str().unwrap().to_owned(), note["entity_id"].as_i64().unwrap()))
            .collect()
    }

    /// How many contacts, leads and unsorted leads the local Kommo holds.
    async fn created_counts(&self) -> [usize; 3] {
        let entities = self.entities().await;
        ["contacts", "leads", "unsorted"].map(|name| entities[name].as_object().unwrap().len())
    }

    async fn reset_stats(&self) {
        let response =
            self.world.http.post(format!("{}/sandbox/kommo/reset-stats", self.world.kommo)).send().await.unwrap();
        assert!(response.status().is_success());
    }

    /// Requests our server sent to Kommo's API since the last reset.
    async fn api_requests(&self) -> u64 {
        let stats = self.world.stats().await;
        stats["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| name.contains(" /api/v4/"))
            .map(|(_, count)| count.as_u64().unwrap())
            .sum()
    }

    /// Requests our server sent to Kommo's API since the last reset, per `METHOD /path`.
    async fn api_request_counts(&self) -> Value {
        let stats = self.world.stats().await;
        let counts = stats["requests"].as_object().unwrap().iter().filter(|(name, _)| name.contains(" /api/v4/"));
        Value::Object(counts.map(|(name, count)| (name.clone(), count.clone())).collect())
    }

    /// Every write the local Kommo recorded for the account, each body checked against the vendor's
    /// API description where it covers the endpoint.
    async fn writes(&self) -> Vec<Value> {
        let url = format!("{}/sandbox/kommo/writes?account_id={ACCOUNT}", self.world.kommo);
        let writes: Value = self.world.http.get(url).send().await.unwrap().json().await.unwrap();
        let writes = writes.as_array().cloned().unwrap_or_default();
        let oracle = sandbox::oracle::Oracle::load();
        for write in &writes {
            let (method, path) = (write["method"].as_str().unwrap(), write["path"].as_str().unwrap());
            if !oracle.covers(method, path) {
                // The vendor's description lacks this endpoint (`/api/v4/leads/unsorted/sip`).
                continue;
            }
            if let Err(errors) = oracle.validate_request_closed(method, path, &write["body"]) {
                panic!("{method} {path} sent a body the API description refuses: {errors:?}\n{}", write["body"]);
            }
        }
        writes
    }

    /// The writes to `path` (any method), whole.
    async fn writes_to(&self, path: &str) -> Vec<Value> {
        self.writes().await.into_iter().filter(|write| write["path"] == path).collect()
    }

    /// The writes to `METHOD path`, as their body's items.
    async fn items(&self, method: &str, path: &str) -> Vec<Value> {
        self.writes()
            .await
            .into_iter()
            .filter(|write| write["method"] == method && write["path"] == path)
            .flat_map(|write| match &write["body"] {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            })
            .collect()
    }

    async fn assert_one_call_per_uniq(&self) {
        let stats = self.world.stats().await;
        assert_eq!(stats["duplicate_uniqs"], json!([]), "a call was written twice: {stats}");
    }

    /// `voip_calls` as the widget and the operator see it.
    async fn delivery(&self, call_id: &str) -> Delivery {
        sqlx::query_as(
            "SELECT delivery_status AS status, delivery_error AS error, entity_type, entity_id, unsorted_uid,
                    responsible_user_id, client_number
             FROM voip_calls WHERE account_id = $1 AND call_id = $2",
        )
        .bind(self.account.get())
        .bind(call_id)
        .fetch_one(self.world.store.pool())
        .await
        .unwrap()
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Delivery {
    status: String,
    error: Option<String>,
    entity_type: Option<String>,
    entity_id: Option<i64>,
    unsorted_uid: Option<String>,
    responsible_user_id: Option<i64>,
    client_number: Option<String>,
}

fn handling(change: impl FnOnce(&mut CallHandling)) -> CallHandling {
    let mut handling = CallHandling::default();
    change(&mut handling);
    handling
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_callers_answered_call_is_logged_once_on_their_lead_in_two_requests() {
    let desk = desk(CallHandling::default()).await;
    let (_, leads) = desk.contact(&[CALLER_E164], JUAN, json!([{"name": "Open deal"}])).await;
    desk.reset_stats().await;
    desk.event("c-known", "ringing", json!({"type": "call.ringing"})).await;
    desk.event("c-known", "answered", json!({"type": "call.answered"})).await;
    desk.event(
        "c-known",
        "ended",
        json!({"type": "call.ended", "duration": 42, "recordingUrl": "https://rec.example.org/c-known.mp3"}),
    )
    .await;
    desk.process("c-known").await.unwrap();

    let calls = desk.items("POST", "/api/v4/calls").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call["uniq"], "c-known");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["phone"], CALLER_E164);
    assert_eq!(call["duration"], 42);
    assert_eq!(call["call_status"], 4, "a conversation took place");
    assert_eq!(call["link"], "https://rec.example.org/c-known.mp3");
    assert_eq!(call["created_by"], MARIA, "the extension's user made the call");
    assert_eq!(call["responsible_user_id"], MARIA);
    assert_eq!(call["request_id"], "c-known:call");
    assert_eq!(desk.api_requests().await, 2, "a contact lookup and the call");

    let delivery = desk.delivery("c-known").await;
    assert_eq!(delivery.status, "delivered", "{delivery:?}");
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("leads"), Some(leads[0])));
    assert_eq!(delivery.responsible_user_id, Some(MARIA));
    assert_eq!(delivery.client_number.as_deref(), Some(CALLER_E164));

    desk.assert_a_rerun_sends_nothing("c-known").await;
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_from_a_contact_with_two_numbers_gets_a_call_back_task_and_a_number_note() {
    let desk = desk(CallHandling::default()).await;
    let (contact, leads) = desk
        .contact(&["+551122223333", CALLER_E164], JUAN, json!([{"name": "Won", "status_id": 142}, {"name": "Open"}]))
        .await;
    desk.reset_stats().await;
    desk.event("c-missed", "missed", json!({"type": "call.missed"})).await;
    desk.process("c-missed").await.unwrap();

    let calls = desk.items("POST", "/api/v4/calls").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call_status"], 6, "did not get through");
    let tasks = desk.items("POST", "/api/v4/tasks").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!(task["task_type_id"], 1, "a follow-up");
    assert_eq!((task["entity_type"].as_str(), task["entity_id"].as_i64()), (Some("leads"), Some(leads[1])));
    assert_eq!(task["complete_till"], STARTED + 60 * 60, "due an hour after the call");
    assert_eq!(task["responsible_user_id"], JUAN, "the contact's responsible user");
    let notes = desk.items("POST", "/api/v4/contacts/notes").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["entity_id"], contact);
    assert_eq!(notes[0]["note_type"], "common");
    assert!(notes[0]["params"]["text"].as_str().unwrap().contains("98888-7777"), "{}", notes[0]);
    // Written in the language of the extension's user (Maria's Kommo is in Portuguese).
    assert!(notes[0]["params"]["text"].as_str().unwrap().starts_with("Ligou de "), "{}", notes[0]);
    assert!(task["text"].as_str().unwrap().starts_with("Retornar a ligação para "), "{task}");
    // Lookup, active leads, the user's language (asked once per half hour), the call, the note, the task.
    assert_eq!(desk.api_requests().await, 6);
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_caller_becomes_an_unsorted_lead_accepted_when_answered() {
    let desk = desk(handling(|h| h.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer)).await;
    desk.event("c-new", "answered", json!({"type": "call.answered"})).await;
    desk.event("c-new", "ended", json!({"type": "call.ended", "duration": 30})).await;
    desk.process("c-new").await.unwrap();

    let unsorted = desk.items("POST", "/api/v4/leads/unsorted/sip").await;
    assert_eq!(unsorted.len(), 1, "{unsorted:?}");
    let item = &unsorted[0];
    assert_eq!(item["metadata"]["uniq"], "c-new");
    assert_eq!(item["metadata"]["from"], CALLER_E164);
    assert_eq!(item["metadata"]["phone"], LINE);
    assert_eq!(item["metadata"]["duration"], 30);
    assert_eq!(item["metadata"]["is_call_event_needed"], true);
    assert_eq!(item["metadata"]["call_responsible"], MARIA);
    assert_eq!(item["_embedded"]["contacts"][0]["custom_fields_values"][0]["values"][0]["value"], CALLER_E164);
    let accepts: Vec<Value> =
        desk.writes().await.into_iter().filter(|write| write["path"].as_str().unwrap().ends_with("/accept")).collect();
    assert_eq!(accepts.len(), 1, "{accepts:?}");
    assert_eq!(accepts[0]["body"]["user_id"], MARIA);
    assert!(desk.items("POST", "/api/v4/calls").await.is_empty(), "the unsorted lead carries the call");
    assert_eq!(desk.api_requests().await, 4, "the contacts and companies searches, unsorted lead, accept");

    let delivery = desk.delivery("c-new").await;
    assert_eq!(delivery.status, "delivered");
    assert!(delivery.unsorted_uid.is_some());
    assert_eq!(delivery.entity_type.as_deref(), Some("leads"));

    desk.assert_a_rerun_sends_nothing("c-new").await;
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_callers_missed_call_goes_to_unsorted_with_a_task_in_five_requests() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-unknown-missed", "missed", json!({"type": "call.missed"})).await;
    desk.process("c-unknown-missed").await.unwrap();
    assert_eq!(desk.items("POST", "/api/v4/leads/unsorted/sip").await.len(), 1);
    let tasks = desk.items("POST", "/api/v4/tasks").await;
    assert_eq!(tasks.len(), 1);
    let delivery = desk.delivery("c-unknown-missed").await;
    assert_eq!(tasks[0]["entity_id"].as_i64(), delivery.entity_id, "on the unsorted lead");
    assert_eq!(tasks[0]["responsible_user_id"], MARIA, "an unknown caller's task goes to the extension's user");
    assert_eq!(
        desk.api_requests().await,
        5,
        "the contacts and companies searches, unsorted lead, the user's language, task"
    );
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_caller_can_become_a_contact_and_lead_that_the_call_lands_on() {
    let desk = desk(handling(|h| h.unknown_incoming.create = UnknownCallerEntity::ContactAndLead)).await;
    desk.event("c-complex", "ended", json!({"type": "call.ended", "duration": 12})).await;
    desk.process("c-complex").await.unwrap();
    let created = desk.items("POST", "/api/v4/leads/complex").await;
    assert_eq!(created.len(), 1);
    let contact = &created[0]["_embedded"]["contacts"][0];
    assert_eq!(contact["custom_fields_values"][0]["values"][0]["value"], CALLER_E164);
    assert_eq!(desk.items("POST", "/api/v4/calls").await.len(), 1);
    let delivery = desk.delivery("c-complex").await;
    assert_eq!(delivery.status, "delivered");
    assert_eq!(delivery.entity_type.as_deref(), Some("leads"), "the contact's one active lead: the new one");
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_goes_to_kommo_while_the_call_is_ringing() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-ring", "ringing", json!({"type": "call.ringing"})).await;
    desk.process("c-ring").await.unwrap();
    assert_eq!(desk.api_requests().await, 0);
    assert_eq!(desk.delivery("c-ring").await.status, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_call_to_an_unknown_number_is_skipped_when_creating_contacts_is_off() {
    let desk = desk(handling(|h| h.outgoing_new.create_contact_and_lead = false)).await;
    desk.event("c-out", "ended", json!({"type": "call.ended", "direction": "outbound", "duration": 5})).await;
    desk.process("c-out").await.unwrap();
    assert!(desk.writes().await.is_empty());
    let delivery = desk.delivery("c-out").await;
    assert_eq!(delivery.status, "skipped");
    assert!(delivery.error.unwrap().contains("outgoing"));
    assert_eq!(desk.api_requests().await, 2, "the contacts and companies searches");
}

/// An ambiguous failure of `path`: Kommo performs the write, then answers 500 (or never answers).
async fn ambiguous(desk: &Desk, path: &str, timeout: bool) {
    let fault = if timeout {
        json!({"account_id": ACCOUNT, "timeout": true, "after_commit": true, "method": "POST", "path_prefix": path})
    } else {
        json!({"account_id": ACCOUNT, "status": 500, "after_commit": true, "method": "POST", "path_prefix": path})
    };
    desk.world.kommo_control("/sandbox/kommo/faults", fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_written_before_a_500_is_found_on_the_retry_and_not_written_again() {
    let desk = desk(CallHandling::default()).await;
    desk.contact(&[CALLER_E164], JUAN, json!([])).await;
    desk.event("c-500", "ended", json!({"type": "call.ended", "duration": 8})).await;
    ambiguous(&desk, "/api/v4/calls", false).await;
    desk.process_after_a_retry("c-500").await;
    let committed = desk.writes_to("/api/v4/calls").await;
    assert_eq!(committed.len(), 1, "looked before posting again: {committed:?}");
    assert_eq!(desk.delivery("c-500").await.status, "delivered");
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_written_before_a_timeout_is_found_on_the_retry_and_not_written_again() {
    let desk = desk_with_timeout(CallHandling::default(), Duration::from_secs(1)).await;
    desk.contact(&[CALLER_E164], JUAN, json!([{"name": "Open"}])).await;
    desk.event("c-timeout", "ended", json!({"type": "call.ended", "duration": 8})).await;
    ambiguous(&desk, "/api/v4/calls", true).await;
    desk.process_after_a_retry("c-timeout").await;
    let calls = desk.writes_to("/api/v4/calls").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let delivery = desk.delivery("c-timeout").await;
    assert_eq!((delivery.status.as_str(), delivery.entity_type.as_deref()), ("delivered", Some("leads")));
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsorted_lead_written_before_a_500_is_found_on_the_retry() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-unsorted-500", "missed", json!({"type": "call.missed"})).await;
    ambiguous(&desk, "/api/v4/leads/unsorted/sip", false).await;
    desk.process_after_a_retry("c-unsorted-500").await;
    let unsorted = desk.writes_to("/api/v4/leads/unsorted/sip").await;
    assert_eq!(unsorted.len(), 1, "{unsorted:?}");
    assert_eq!(desk.items("POST", "/api/v4/tasks").await.len(), 1);
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_written_before_a_500_is_found_on_the_retry() {
    let desk = desk(CallHandling::default()).await;
    desk.contact(&[CALLER_E164], JUAN, json!([{"name": "Open"}])).await;
    desk.event("c-task-500", "missed", json!({"type": "call.missed"})).await;
    ambiguous(&desk, "/api/v4/tasks", false).await;
    desk.process_after_a_retry("c-task-500").await;
    assert_eq!(desk.items("POST", "/api/v4/tasks").await.len(), 1);
    assert_eq!(desk.items("POST", "/api/v4/calls").await.len(), 1);
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_402_parks_the_job_and_the_account() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-402", "ended", json!({"type": "call.ended", "duration": 3})).await;
    desk.world.kommo_control("/sandbox/kommo/faults", json!({"account_id": ACCOUNT, "status": 402})).await;
    assert!(matches!(desk.process("c-402").await, Err(JobError::Park { .. })));
    let info = desk.world.store.account(desk.account).await.unwrap().unwrap();
    assert_eq!(info.state, server::store::AccountState::Suspended);
    // Parked: nothing more is sent for the account.
    desk.reset_stats().await;
    assert!(matches!(desk.process("c-402").await, Err(JobError::Park { .. })));
    assert_eq!(desk.api_requests().await, 0);
    assert_eq!(desk.delivery("c-402").await.status, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_429_is_a_retry_after_its_retry_after() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-429", "ended", json!({"type": "call.ended", "duration": 3})).await;
    desk.world
        .kommo_control("/sandbox/kommo/faults", json!({"account_id": ACCOUNT, "status": 429, "retry_after": 60}))
        .await;
    match desk.process("c-429").await {
        Err(JobError::Retry { after, .. }) => assert_eq!(after, Some(Duration::from_secs(60))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_that_does_not_parse_fails_the_job_and_is_kept() {
    let desk = desk(CallHandling::default()).await;
    desk.raw_event("c-bad", "c-bad/ended", r#"{"callId":"c-bad","status":"exploded"}"#).await;
    match desk.process("c-bad").await {
        Err(JobError::Fail { error }) => assert!(error.contains("c-bad"), "{error}"),
        other => panic!("{other:?}"),
    }
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_inbox WHERE applied_at IS NULL")
        .fetch_one(desk.world.store.pool())
        .await
        .unwrap();
    assert_eq!(pending, 1, "the event stays for a person to look at");
    assert_eq!(desk.api_requests().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turned_off_integration_parks_the_job() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-off", "ended", json!({"type": "call.ended", "duration": 3})).await;
    sqlx::query("UPDATE widget_settings SET active = FALSE").execute(desk.world.store.pool()).await.unwrap();
    assert!(matches!(desk.process("c-off").await, Err(JobError::Park { .. })));
    assert_eq!(desk.api_requests().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managers_result_given_before_the_end_rides_on_the_one_call_with_its_follow_up() {
    let desk = desk(CallHandling::default()).await;
    let (_, leads) = desk.contact(&[CALLER_E164], JUAN, json!([{"name": "Open"}])).await;
    desk.reset_stats().await;
    let result = json!({"note": "Wants the offer", "call_status": 2, "quality": 4,
                        "follow_up": {"text": "Send the offer", "due_at": STARTED + 86_400}});
    desk.call_result("c-result", result).await;
    desk.event("c-result", "ended", json!({"type": "call.ended", "duration": 64})).await;
    desk.process("c-result").await.unwrap();

    let calls = desk.items("POST", "/api/v4/calls").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call_status"], 2, "the manager's status");
    assert!(calls[0]["call_result"].as_str().unwrap().contains("Wants the offer"), "{}", calls[0]);
    let tasks = desk.items("POST", "/api/v4/tasks").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0]["entity_type"].as_str(), tasks[0]["entity_id"].as_i64()), (Some("leads"), Some(leads[0])));
    assert_eq!(tasks[0]["complete_till"], STARTED + 86_400);
    assert!(desk.items("POST", "/api/v4/leads/notes").await.is_empty(), "the call carries the result: no note");
    assert_eq!(desk.api_requests().await, 4, "lookup, the user's language, call, follow-up task");
    let call_result: Option<i64> = sqlx::query_scalar("SELECT call_result FROM voip_calls WHERE call_id = 'c-result'")
        .fetch_one(desk.world.store.pool())
        .await
        .unwrap();
    assert_eq!(call_result, Some(2));
    desk.assert_one_call_per_uniq().await;
}

/// The number was planned as a known contact's (an earlier attempt posted the call and did not hear
/// back), and Kommo no longer has an entity with it (the contact was deleted meanwhile).
async fn known_but_gone(desk: &Desk, call_id: &str) {
    let knowledge = shared::rules::Knowledge::Contact(shared::rules::KnownFacts {
        id: 1,
        responsible_user_id: None,
        phone_count: 1,
        active_leads: Some(Vec::new()),
    });
    desk.kommo_write(call_id, "knowledge", "done", Some(serde_json::to_string(&knowledge).unwrap())).await;
    desk.kommo_write(call_id, "call", "sending", None).await;
}

async fn no_entity_for_an_incoming_call_falls_back_to_unsorted(mode: &str) {
    let desk = desk(CallHandling::default()).await;
    desk.world.kommo_control("/sandbox/kommo/calls-mode", json!({"account_id": ACCOUNT, "mode": mode})).await;
    desk.event("c-gone", "ended", json!({"type": "call.ended", "duration": 20})).await;
    known_but_gone(&desk, "c-gone").await;
    desk.process("c-gone").await.unwrap();

    let calls = desk.writes_to("/api/v4/calls").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let unsorted = desk.items("POST", "/api/v4/leads/unsorted/sip").await;
    assert_eq!(unsorted.len(), 1, "{mode}: the call went to an unsorted lead");
    assert_eq!(unsorted[0]["metadata"]["uniq"], "c-gone");
    let delivery = desk.delivery("c-gone").await;
    assert_eq!(delivery.status, "delivered", "{delivery:?}");
    assert!(delivery.unsorted_uid.is_some());
    desk.assert_one_call_per_uniq().await;
    desk.assert_a_rerun_sends_nothing("c-gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_entity_answered_as_200_errors_sends_an_incoming_call_to_unsorted() {
    no_entity_for_an_incoming_call_falls_back_to_unsorted("errors_200").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_entity_answered_as_400_sends_an_incoming_call_to_unsorted() {
    no_entity_for_an_incoming_call_falls_back_to_unsorted("problem_400").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_entity_for_an_outgoing_call_skips_it_with_the_reason_in_both_answers() {
    for mode in ["errors_200", "problem_400"] {
        let desk = desk(CallHandling::default()).await;
        desk.world.kommo_control("/sandbox/kommo/calls-mode", json!({"account_id": ACCOUNT, "mode": mode})).await;
        desk.event("c-gone-out", "ended", json!({"type": "call.ended", "direction": "outbound", "duration": 9})).await;
        known_but_gone(&desk, "c-gone-out").await;
        desk.process("c-gone-out").await.unwrap();
        let delivery = desk.delivery("c-gone-out").await;
        assert_eq!(delivery.status, "skipped", "{mode}: {delivery:?}");
        assert!(delivery.error.as_deref().unwrap().contains("no contact"), "{delivery:?}");
        assert!(desk.items("POST", "/api/v4/leads/unsorted/sip").await.is_empty());
        desk.assert_one_call_per_uniq().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_callers_call_reaches_unsorted_in_three_requests() {
    let desk = desk(CallHandling::default()).await;
    desk.event("c-three", "ended", json!({"type": "call.ended", "duration": 14})).await;
    desk.process("c-three").await.unwrap();
    assert_eq!(desk.items("POST", "/api/v4/leads/unsorted/sip").await.len(), 1);
    assert_eq!(desk.api_requests().await, 3, "the contacts and companies searches, and the unsorted lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_from_a_number_reuses_the_lookup_and_one_we_created_for_is_looked_up_again() {
    let desk = desk(CallHandling::default()).await;
    // Unknown: the first call creates an unsorted lead, which drops the cached "unknown".
    desk.event("c-first", "ended", json!({"type": "call.ended", "duration": 10})).await;
    desk.process("c-first").await.unwrap();
    desk.event("c-second", "ended", json!({"type": "call.ended", "duration": 11})).await;
    desk.process("c-second").await.unwrap();
    assert_eq!(desk.items("POST", "/api/v4/leads/unsorted/sip").await.len(), 1, "one unsorted lead for the number");
    let calls = desk.items("POST", "/api/v4/calls").await;
    assert_eq!(calls.len(), 1, "the second call is logged on what the first created");
    assert_eq!(calls[0]["uniq"], "c-second");

    // Known now and cached: the third call takes only the call itself.
    desk.reset_stats().await;
    desk.event("c-third", "ended", json!({"type": "call.ended", "duration": 12})).await;
    desk.process("c-third").await.unwrap();
    assert_eq!(desk.api_requests().await, 1);
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_and_a_result_that_come_after_delivery_become_notes_on_the_calls_entity() {
    let desk = desk(CallHandling::default()).await;
    let (contact, _) = desk.contact(&[CALLER_E164], JUAN, json!([])).await;
    desk.event("c-late", "ended", json!({"type": "call.ended", "duration": 33})).await;
    desk.process("c-late").await.unwrap();
    let delivery = desk.delivery("c-late").await;
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("contacts"), Some(contact)));

    desk.event(
        "c-late",
        "ended",
        json!({"type": "call.recording_ready", "recordingUrl": "https://rec.example.org/c-late.mp3"}),
    )
    .await;
    let result = json!({"note": "Call me Monday", "call_status": 2,
                        "follow_up": {"text": "Call back", "due_at": STARTED + 3 * 86_400}});
    desk.call_result("c-late", result).await;
    desk.process("c-late").await.unwrap();

    assert_eq!(desk.items("POST", "/api/v4/calls").await.len(), 1, "the call is never logged twice");
    let notes = desk.items("POST", "/api/v4/contacts/notes").await;
    let texts: Vec<&str> = notes.iter().map(|note| note["params"]["text"].as_str().unwrap()).collect();
    assert_eq!(notes.len(), 2, "{texts:?}");
    assert!(notes.iter().all(|note| note["entity_id"] == contact));
    assert!(texts.iter().any(|text| text.contains("Call me Monday")), "{texts:?}");
    assert!(texts.iter().any(|text| text.contains("https://rec.example.org/c-late.mp3")), "{texts:?}");
    let tasks = desk.items("POST", "/api/v4/tasks").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0]["entity_type"].as_str(), tasks[0]["entity_id"].as_i64()), (Some("contacts"), Some(contact)));
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_kommo_cannot_place_after_we_created_its_contact_goes_as_a_note_on_the_created_lead() {
    let desk = desk(handling(|h| h.unknown_incoming.create = UnknownCallerEntity::ContactAndLead)).await;
    // The contact and lead this call created earlier no longer carry the number (someone edited it).
    let (contact, leads) = desk.contact(&["+551155556666"], JUAN, json!([{"name": "Call from the caller"}])).await;
    desk.event("c-created", "ended", json!({"type": "call.ended", "duration": 21})).await;
    desk.kommo_write("c-created", "knowledge", "done", Some("\"Unknown\"".to_owned())).await;
    let created = json!({"contact_id": contact, "lead_id": leads[0]}).to_string();
    desk.kommo_write("c-created", "contact_and_lead", "done", Some(created)).await;
    desk.kommo_write("c-created", "call", "sending", None).await;
    desk.process("c-created").await.unwrap();
    assert!(desk.items("POST", "/api/v4/leads/complex").await.is_empty(), "nothing created twice");
    assert!(desk.items("POST", "/api/v4/leads/unsorted/sip").await.is_empty());
    let notes = desk.items("POST", "/api/v4/leads/notes").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["entity_id"], leads[0]);
    assert_eq!(notes[0]["note_type"], "call_in");
    assert_eq!(notes[0]["params"]["uniq"], "c-created");
    let delivery = desk.delivery("c-created").await;
    assert_eq!((delivery.status.as_str(), delivery.entity_id), ("delivered", Some(leads[0])));
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companys_call_is_logged_once_where_kommo_attaches_it_and_nothing_is_created_for_it() {
    let desk = desk(CallHandling::default()).await;
    // No contact has the number; a company has it, with one open lead.
    let (company, leads) = desk.company(&[CALLER_E164], JUAN, json!([{"name": "Company deal"}])).await;
    let before = desk.created_counts().await;
    desk.reset_stats().await;
    desk.event("c-company", "ringing", json!({"type": "call.ringing"})).await;
    desk.event("c-company", "answered", json!({"type": "call.answered"})).await;
    desk.event("c-company", "ended", json!({"type": "call.ended", "duration": 42})).await;
    desk.process("c-company").await.unwrap();

    assert_eq!(
        desk.api_request_counts().await,
        json!({"GET /api/v4/contacts": 1, "GET /api/v4/companies": 1, "POST /api/v4/calls": 1}),
        "the contacts search, the companies search, the call"
    );
    let calls = desk.items("POST", "/api/v4/calls").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0]["uniq"].as_str(), calls[0]["phone"].as_str()), (Some("c-company"), Some(CALLER_E164)));
    assert_eq!(calls[0]["created_by"], MARIA);
    // Kommo's rule: the company's one active lead takes the call.
    assert_eq!(desk.calls_in_kommo("c-company").await, [("leads".to_owned(), leads[0])]);
    assert_eq!(desk.entities().await["leads"][leads[0].to_string()]["companies"], json!([company]));
    let writes = desk.writes().await;
    assert_eq!(writes.len(), 1, "only the call: {writes:?}");
    assert_eq!(desk.created_counts().await, before, "no contact, lead or unsorted lead created");

    let delivery = desk.delivery("c-company").await;
    assert_eq!(delivery.status, "delivered", "{delivery:?}");
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("leads"), Some(leads[0])));
    desk.assert_a_rerun_sends_nothing("c-company").await;
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_from_a_companys_number_lands_on_the_company_with_a_task_on_its_newest_lead() {
    let desk = desk(CallHandling::default()).await;
    // Two open leads: Kommo attaches the call to the company itself.
    let (company, leads) =
        desk.company(&[CALLER_E164], JUAN, json!([{"name": "Older deal"}, {"name": "Newer deal"}])).await;
    let before = desk.created_counts().await;
    desk.reset_stats().await;
    desk.event("c-company-missed", "missed", json!({"type": "call.missed"})).await;
    desk.process("c-company-missed").await.unwrap();

    assert_eq!(
        desk.api_request_counts().await,
        json!({
            "GET /api/v4/contacts": 1,
            "GET /api/v4/companies": 1,
            "GET /api/v4/leads": 1,
            format!("GET /api/v4/users/{MARIA}"): 1,
            "POST /api/v4/calls": 1,
            "POST /api/v4/tasks": 1,
        }),
        "the searches, the company's leads, the user's language, the call, the task"
    );
    let calls = desk.items("POST", "/api/v4/calls").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call_status"], 6, "did not get through");
    assert_eq!(desk.calls_in_kommo("c-company-missed").await, [("companies".to_owned(), company)]);
    let tasks = desk.items("POST", "/api/v4/tasks").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!((task["entity_type"].as_str(), task["entity_id"].as_i64()), (Some("leads"), Some(leads[1])));
    assert_eq!(task["responsible_user_id"], JUAN, "the company's responsible user");
    assert_eq!(task["complete_till"], STARTED + 60 * 60);
    assert_eq!(desk.created_counts().await, before, "no contact, lead or unsorted lead created");

    let delivery = desk.delivery("c-company-missed").await;
    assert_eq!(delivery.status, "delivered", "{delivery:?}");
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("companies"), Some(company)));
    desk.assert_a_rerun_sends_nothing("c-company-missed").await;
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companys_call_written_before_a_500_is_found_on_the_company_and_not_written_again() {
    let desk = desk(CallHandling::default()).await;
    let (company, _) = desk.company(&[CALLER_E164], JUAN, json!([])).await;
    desk.event("c-company-500", "ended", json!({"type": "call.ended", "duration": 8})).await;
    ambiguous(&desk, "/api/v4/calls", false).await;
    desk.process_after_a_retry("c-company-500").await;
    assert_eq!(desk.writes_to("/api/v4/calls").await.len(), 1, "looked on the company before posting again");
    assert_eq!(desk.calls_in_kommo("c-company-500").await, [("companies".to_owned(), company)]);
    let delivery = desk.delivery("c-company-500").await;
    assert_eq!((delivery.status.as_str(), delivery.entity_id), ("delivered", Some(company)));
    desk.assert_one_call_per_uniq().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_the_popup_found_is_known_to_the_calls_delivery_without_asking_again() {
    let desk = desk(CallHandling::default()).await;
    let (company, _) = desk.company(&[CALLER_E164], JUAN, json!([])).await;
    let caller = desk.ctx.describe_caller(desk.account, CALLER, "c-company-popup", |_| {}).await;
    assert_eq!(caller.company.map(|company| company.id), Some(company));
    assert!(caller.contact.is_none());
    desk.reset_stats().await;
    desk.event("c-company-popup", "ended", json!({"type": "call.ended", "duration": 5})).await;
    desk.process("c-company-popup").await.unwrap();
    assert_eq!(desk.api_request_counts().await, json!({"POST /api/v4/calls": 1}), "the call alone");
    assert_eq!(desk.calls_in_kommo("c-company-popup").await, [("companies".to_owned(), company)]);
    assert!(desk.items("POST", "/api/v4/leads/unsorted/sip").await.is_empty());
}

// ------------------------------------------------------------------------------------------- phone index

impl Desk {
    /// Runs the account's phone sync with `ctx` (one page per step, as the queue runs it) until its pass
    /// is over; returns the steps taken.
    async fn sync_to_the_end(&self, ctx: &CallsContext) -> u32 {
        for step in 1..=200 {
            ctx.sync_phones(self.account).await.unwrap();
            let sync = self.world.store.phone_sync(self.account).await.unwrap().unwrap();
            if sync.pass_kind.is_none() {
                return step;
            }
        }
        panic!("the phone sync did not end in 200 steps");
    }

    /// `GET` requests to `path` since the last reset.
    async fn gets(&self, path: &str) -> u64 {
        self.world.stats().await["requests"][format!("GET {path}")].as_u64().unwrap_or(0)
    }
}

/// How many contacts the sync tests seed, and their numbers: `+551198nnnnnnn`, and for every tenth a
/// second one, `+551197nnnnnnn`.
const INDEXED_CONTACTS: usize = 10_000;

fn indexed_number(n: usize) -> String {
    format!("+551198{n:07}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_indexes_every_number_within_the_rate_and_resumes_where_it_stopped() {
    use server::calls::index::{self, IndexAnswer};
    let desk = desk(CallHandling::default()).await;
    let seeds = (0..INDEXED_CONTACTS).map(|n| {
        let mut phones = vec![indexed_number(n)];
        if n % 10 == 0 {
            phones.push(format!("+551197{n:07}"));
        }
        desk.world.kommo_control(
            "/sandbox/kommo/contacts",
            json!({"account_id": ACCOUNT, "name": format!("Client {n}"), "phones": phones, "responsible_user_id": JUAN}),
        )
    });
    use futures_util::StreamExt;
    futures_util::stream::iter(seeds).buffer_unordered(32).collect::<Vec<_>>().await;
    let (company, _) = desk.company(&["+551130009999"], MARIA, json!([])).await;
    desk.reset_stats().await;

    // Three pages, then the process stops: each step is committed with its page.
    for _ in 0..3 {
        desk.ctx.sync_phones(desk.account).await.unwrap();
    }
    let store = &desk.world.store;
    let sync = store.phone_sync(desk.account).await.unwrap().unwrap();
    assert_eq!((sync.pass_kind.as_deref(), sync.pass_page, sync.complete_at), (Some("contacts"), 4, None));
    assert_eq!(index::holder(store, desk.account, &indexed_number(7)).await.unwrap(), IndexAnswer::NotReady);

    // Another process (its own database connection and Kommo client) takes the sync over where it stood.
    let other_store = server::store::Store::connect(&desk.world.db_url).await.unwrap();
    let other = CallsContext::new(other_store.clone(), desk.world.kommo_client(other_store, Duration::from_secs(15)));
    desk.sync_to_the_end(&other).await;

    let pages = INDEXED_CONTACTS.div_ceil(index::PAGE_LIMIT) as u64;
    assert_eq!(desk.gets("/api/v4/contacts").await, pages, "each page of contacts read once, none again");
    assert_eq!(desk.gets("/api/v4/companies").await, 1);
    let stats = desk.world.stats().await;
    assert_eq!(stats["too_many_requests"], 0, "within Kommo's 7 requests/s: {stats}");
    let numbers = INDEXED_CONTACTS + INDEXED_CONTACTS / 10 + 1;
    assert_eq!(store.phone_index_size(desk.account).await.unwrap(), (numbers as i64, INDEXED_CONTACTS as i64 + 1));

    let known = |answer: IndexAnswer| match answer {
        IndexAnswer::Known(found) => (found.kind, found.id, found.name, found.responsible_user_id),
        other => panic!("not known: {other:?}"),
    };
    let (kind, _, name, responsible) = known(index::holder(store, desk.account, &indexed_number(7)).await.unwrap());
    assert_eq!((kind, name.as_str(), responsible), (shared::rules::EntityKind::Contacts, "Client 7", Some(JUAN)));
    let (_, _, second, _) = known(index::holder(store, desk.account, "+5511970000030").await.unwrap());
    assert_eq!(second, "Client 30", "a contact's second number");
    let (kind, id, _, _) = known(index::holder(store, desk.account, "+551130009999").await.unwrap());
    assert_eq!((kind, id), (shared::rules::EntityKind::Companies, company));
    // This process subscribed to no Kommo webhooks: a number nobody has in the index may have been added
    // in Kommo since, so Kommo is asked (with webhooks, it is unknown: the next test).
    assert_eq!(index::holder(store, desk.account, "+5511966660000").await.unwrap(), IndexAnswer::NotReady);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_index_synced_a_known_caller_and_an_unknown_one_cost_one_request_each() {
    // Unsorted leads accepted by hand (the default): the unknown caller's call is one write. Subscribed to
    // Kommo's webhooks at the first pass, the index is trusted to say that nobody has a number.
    let mut desk = desk(CallHandling::default()).await;
    desk.ctx = desk.ctx.with_public_base_url(&desk.world.server);
    let (contact, _) = desk.contact(&[CALLER_E164], JUAN, json!([])).await;
    desk.sync_to_the_end(&desk.ctx).await;

    desk.reset_stats().await;
    desk.event("c-indexed", "ringing", json!({"type": "call.ringing"})).await;
    desk.event("c-indexed", "ended", json!({"type": "call.ended", "duration": 30})).await;
    desk.process("c-indexed").await.unwrap();
    assert_eq!(desk.api_request_counts().await, json!({"POST /api/v4/calls": 1}), "no search: the index knew");
    let delivery = desk.delivery("c-indexed").await;
    assert_eq!(delivery.status, "delivered", "{delivery:?}");
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("contacts"), Some(contact)));

    // A caller with an open lead: the call lands on the lead the index knows, still one request.
    let (_, leads) = desk.contact(&["+5511977776666"], JUAN, json!([{"name": "Open deal"}])).await;
    desk.world.store.hurry_phone_pass(desk.account).await.unwrap();
    desk.sync_to_the_end(&desk.ctx).await;
    desk.reset_stats().await;
    let with_lead = json!({"type": "call.ended", "from": "+5511977776666", "duration": 25});
    desk.event("c-lead", "ended", with_lead).await;
    desk.process("c-lead").await.unwrap();
    assert_eq!(desk.api_request_counts().await, json!({"POST /api/v4/calls": 1}), "the open lead from the index");
    let delivery = desk.delivery("c-lead").await;
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("leads"), Some(leads[0])));

    desk.reset_stats().await;
    let unknown = json!({"type": "call.ended", "from": "+5511955554444", "duration": 12});
    desk.event("c-stranger", "ended", unknown).await;
    desk.process("c-stranger").await.unwrap();
    assert_eq!(
        desk.api_request_counts().await,
        json!({"POST /api/v4/leads/unsorted/sip": 1}),
        "no search: the index knew nobody has the number"
    );
    desk.assert_one_call_per_uniq().await;
}

/// Waits (up to 10 s) until the index gives `number` to `expected` (`None`: nobody).
async fn index_says(desk: &Desk, number: &str, expected: Option<&str>) {
    for _ in 0..200 {
        let holders = desk.world.store.phone_holders(desk.account, number).await.unwrap();
        if holders.first().map(|holder| holder.name.as_str()) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holders = desk.world.store.phone_holders(desk.account, number).await.unwrap();
    panic!("the index gives {number} to {holders:?}, not {expected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kommos_webhooks_keep_the_index_fresh_and_a_number_added_seconds_ago_is_logged_on_its_contact() {
    let mut desk = desk(CallHandling::default()).await;
    desk.ctx = desk.ctx.with_public_base_url(&desk.world.server);
    let (ana, _) = desk.contact(&["+5511911110000"], JUAN, json!([])).await;
    desk.sync_to_the_end(&desk.ctx).await;
    let hook = desk.world.store.kommo_hook(desk.account).await.unwrap().expect("subscribed at the first pass");
    assert_eq!(hook.state, "subscribed");
    let listed: Value = desk
        .world
        .http
        .get(format!("{}/sandbox/kommo/webhook-deliveries?account_id={ACCOUNT}", desk.world.kommo))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]), "nothing changed yet");

    // Renamed, given a second number, handed over: Kommo's webhook brings each into the index.
    let edit = |path: String, body: Value| {
        let http = desk.world.http.clone();
        async move {
            let response = http.patch(path).json(&body).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    let contact_path = format!("{}/sandbox/kommo/contacts/{ana}", desk.world.kommo);
    edit(contact_path.clone(), json!({"name": "Ana Lima", "phones": ["+5511911110000", "+5511922220000"]})).await;
    index_says(&desk, "+5511922220000", Some("Ana Lima")).await;
    index_says(&desk, "+5511911110000", Some("Ana Lima")).await;
    edit(contact_path.clone(), json!({"responsible_user_id": MARIA})).await;
    for _ in 0..200 {
        let holders = desk.world.store.phone_holders(desk.account, "+5511922220000").await.unwrap();
        if holders[0].responsible_user_id == Some(MARIA) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holders = desk.world.store.phone_holders(desk.account, "+5511922220000").await.unwrap();
    assert_eq!(holders[0].responsible_user_id, Some(MARIA), "handed over");

    // A contact added seconds ago, while its caller's call went on (the popup's lookup at the ring had
    // found nobody: "create contact"): the call lands on it, once, with no search.
    desk.ctx.lookup().remember(desk.account, CALLER_E164, None, vec![]).await;
    let (new, _) = desk.contact(&[CALLER_E164], JUAN, json!([])).await;
    index_says(&desk, CALLER_E164, Some("Ana Souza")).await;
    desk.reset_stats().await;
    desk.event("c-fresh", "ringing", json!({"type": "call.ringing"})).await;
    desk.event("c-fresh", "ended", json!({"type": "call.ended", "duration": 20})).await;
    desk.process("c-fresh").await.unwrap();
    assert_eq!(desk.api_request_counts().await, json!({"POST /api/v4/calls": 1}));
    let delivery = desk.delivery("c-fresh").await;
    assert_eq!((delivery.entity_type.as_deref(), delivery.entity_id), (Some("contacts"), Some(new)));
    desk.assert_one_call_per_uniq().await;

    // A lead of the new contact won in Kommo: the index no longer counts it among the open ones.
    let (_, leads) = desk.contact(&["+5511944443333"], JUAN, json!([{"name": "Deal"}])).await;
    index_says(&desk, "+5511944443333", Some("Ana Souza")).await;
    let holder = desk.world.store.phone_holders(desk.account, "+5511944443333").await.unwrap().remove(0);
    let open = || desk.world.store.open_phone_leads(desk.account, "contacts", holder.entity_id);
    for _ in 0..200 {
        if open().await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open().await.unwrap().iter().map(|lead| lead.lead_id).collect::<Vec<_>>(), leads, "added by webhook");
    let lead_path = format!("{}/sandbox/kommo/leads/{}", desk.world.kommo, leads[0]);
    edit(lead_path, json!({"status_id": 142})).await;
    for _ in 0..200 {
        if open().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open().await.unwrap(), vec![], "won: not open any more");

    // Deleted in Kommo: gone from the index.
    let response = desk.world.http.delete(contact_path).send().await.unwrap();
    assert!(response.status().is_success());
    index_says(&desk, "+5511922220000", None).await;

    // A stranger's guess is refused and stores nothing; so is an oversized body on the right path.
    let post = |path: String, body: String| {
        let http = desk.world.http.clone();
        async move {
            let response = http
                .post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            response.status()
        }
    };
    let forged = "contacts%5Bupdate%5D%5B0%5D%5Bid%5D=1&contacts%5Bupdate%5D%5B0%5D%5Bname%5D=x".to_owned();
    let guess = format!("{}/hooks/kommo/not-the-token", desk.world.server);
    assert_eq!(post(guess, forged.clone()).await, reqwest::StatusCode::NOT_FOUND);
    let ours = format!("{}/hooks/kommo/{}", desk.world.server, hook.token);
    assert_eq!(post(ours, "a".repeat(600 * 1024)).await, reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    let waiting: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM kommo_events").fetch_one(desk.world.store.pool()).await.unwrap();
    assert_eq!(waiting, 0, "nothing refused was kept, and what came was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_plan_without_webhooks_the_incremental_pass_brings_the_changes() {
    let mut desk = desk(CallHandling::default()).await;
    desk.ctx = desk.ctx.with_public_base_url(&desk.world.server);
    let plan = format!("{}/sandbox/kommo/accounts/{ACCOUNT}/plan", desk.world.kommo);
    let response = desk.world.http.post(plan).json(&json!({"webhooks": false})).send().await.unwrap();
    assert!(response.status().is_success());
    let (ana, _) = desk.contact(&["+5511911110000"], JUAN, json!([])).await;
    desk.sync_to_the_end(&desk.ctx).await;
    let hook = desk.world.store.kommo_hook(desk.account).await.unwrap().unwrap();
    assert_eq!(hook.state, "unavailable", "Kommo refused the subscription (402)");
    let account = desk.world.store.account(desk.account).await.unwrap().unwrap();
    assert_eq!(account.state, server::store::AccountState::Installed, "the refusal does not park the account");

    let response = desk
        .world
        .http
        .patch(format!("{}/sandbox/kommo/contacts/{ana}", desk.world.kommo))
        .json(&json!({"name": "Ana Lima", "phones": ["+5511922220000"]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let (bruno, _) = desk.contact(&["+5511933330000"], MARIA, json!([])).await;
    // The next pass, when due (every two minutes), reads what changed since the last one began.
    desk.world.store.hurry_phone_pass(desk.account).await.unwrap();
    desk.reset_stats().await;
    desk.sync_to_the_end(&desk.ctx).await;
    let sync = desk.world.store.phone_sync(desk.account).await.unwrap().unwrap();
    assert!(sync.pass_from > 0, "an incremental pass: {sync:?}");
    assert_eq!(desk.gets("/api/v4/contacts").await, 2, "one page of changes, then the drift check's sample");
    index_says(&desk, "+5511922220000", Some("Ana Lima")).await;
    index_says(&desk, "+5511911110000", None).await;
    let holders = desk.world.store.phone_holders(desk.account, "+5511933330000").await.unwrap();
    assert_eq!(holders.iter().map(|holder| holder.entity_id).collect::<Vec<_>>(), [bruno]);

    // Deleted in Kommo: no incremental pass lists it; the drift check's sample (25 a kind: both here)
    // finds it gone and drops it.
    let response =
        desk.world.http.delete(format!("{}/sandbox/kommo/contacts/{ana}", desk.world.kommo)).send().await.unwrap();
    assert!(response.status().is_success());
    desk.world.store.hurry_phone_pass(desk.account).await.unwrap();
    desk.sync_to_the_end(&desk.ctx).await;
    index_says(&desk, "+5511922220000", None).await;
    index_says(&desk, "+5511933330000", Some("Ana Souza")).await;
}
