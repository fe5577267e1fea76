//! The incoming-call popup as a widget receives it: who is calling (from the local Kommo, through real
//! HTTP), the calls still in progress after a reload, and a reconnecting stream that misses nothing.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ACCOUNT, World, world};
use webhook_signing::WebhookSecret;

const CALLER: &str = "+5511987654321";
const COMPANY_PHONE: &str = "+551130001000";
const STRANGER: &str = "+5521988887777";
/// Users of the local Kommo's account: Maria in its main group (Sales), Juan in Support.
const MARIA: u64 = ACCOUNT * 100 + 1;
const JUAN: u64 = ACCOUNT * 100 + 2;

fn event(call_id: &str, from: &str, status: &str) -> String {
    json!({"callId": call_id, "voipAccountId": "sandbox-voip", "from": from, "to": "+551133334444",
           "status": status, "direction": "inbound", "startTime": server::clock::unix_secs()})
    .to_string()
}

/// An open push stream and the `call` events read from it so far.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(world: &World, last_event_id: Option<i64>) -> Stream {
        let (status, ticket) = world.widget(Method::POST, "/widget/v1/push/ticket", ACCOUNT, None).await;
        assert_eq!(status, StatusCode::OK, "{ticket}");
        let mut url = format!("{}/widget/v1/push/events?ticket={}", world.server, ticket["ticket"].as_str().unwrap());
        if let Some(id) = last_event_id {
            url.push_str(&format!("&last_event_id={id}"));
        }
        let response = world.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Stream { response, buffer: String::new() }
    }

    /// A stream of `user` of `ACCOUNT`.
    async fn open_as(world: &World, user: u64) -> Stream {
        let token = world.token_as(ACCOUNT, user, Some(user == support::ADMIN)).await;
        let response = world
            .http
            .post(format!("{}/widget/v1/push/ticket", world.server))
            .header("X-Auth-Token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let ticket: Value = response.json().await.unwrap();
        let url = format!("{}/widget/v1/push/events?ticket={}", world.server, ticket["ticket"].as_str().unwrap());
        let response = world.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Stream { response, buffer: String::new() }
    }

    /// The next `call` event (its SSE id and its data), within 10 s.
    async fn next(&mut self) -> (Option<i64>, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if !block.lines().any(|line| line == "event: call") {
                    continue;
                }
                let id = block.lines().find_map(|line| line.strip_prefix("id: ")).map(|id| id.parse().unwrap());
                let data = block.lines().find_map(|line| line.strip_prefix("data: ")).expect("a call event has data");
                return (id, serde_json::from_str(data).unwrap());
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("a call event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event that says who is calling.
    async fn next_caller(&mut self) -> Value {
        loop {
            let (_, call) = self.next().await;
            if !call["caller"].is_null() {
                return call;
            }
        }
    }
}

async fn setup() -> (World, String, WebhookSecret) {
    let world = world().await;
    let (path, secret) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    (world, path, WebhookSecret::parse(&secret).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_caller_is_named_with_open_leads_and_a_repeat_call_is_named_in_its_first_event() {
    let (world, path, secret) = setup().await;
    world.seed_contact(ACCOUNT, "Maria Silva", &[CALLER], &["Website redesign"]).await;
    let mut stream = Stream::open(&world, None).await;

    let answer = world.post_signed(&path, &secret, "msg_ring_1", &event("known-1", CALLER, "ringing")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let (id, first) = stream.next().await;
    assert!(id.is_some(), "a stored event carries its inbox id");
    assert_eq!(first["event_id"].as_i64(), id);
    assert_eq!(first["from"], CALLER, "the number goes out at once");
    let named = stream.next_caller().await;
    assert_eq!(named["call_id"], "known-1");
    assert!(named["event_id"].is_null(), "who is calling comes as an update without an id");
    assert_eq!(named["caller"]["contact"]["name"], "Maria Silva", "the name first, as soon as the search found it");
    // Then the same with the open leads, once they are read.
    let mut described = named;
    while described["caller"]["leads"].as_array().is_none_or(Vec::is_empty) {
        described = stream.next_caller().await;
    }
    let caller = &described["caller"];
    assert_eq!(caller["known"], "known");
    assert_eq!(caller["contact"]["name"], "Maria Silva");
    assert_eq!(caller["number"], "(11) 98765-4321", "formatted for the account's country (BR)");
    assert_eq!(caller["leads"][0]["name"], "Website redesign");
    assert_eq!(caller["earlier_calls"], 0);

    // The same caller again: named with the call's first event.
    let answer = world.post_signed(&path, &secret, "msg_ring_2", &event("known-2", CALLER, "ringing")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let (_, again) = stream.next().await;
    assert_eq!(again["call_id"], "known-2");
    assert_eq!(again["caller"]["contact"]["name"], "Maria Silva", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_phone_index_synced_a_first_call_is_named_in_its_first_event_and_its_leads_follow() {
    use server::store::phones::{EntityNumbers, IndexedEntity, IndexedLead, LeadLinks, PassStep};
    let (world, path, secret) = setup().await;
    let seeded = world.seed_contact(ACCOUNT, "Maria Silva", &[CALLER], &["Website redesign"]).await;
    // The account's index as a completed sync leaves it, with the contact in it.
    let account = world.store.account_by_kommo_id(ACCOUNT as i64).await.unwrap().unwrap();
    let now = server::clock::unix_secs();
    world.store.start_phone_pass(account, true, now).await.unwrap();
    let contact = EntityNumbers {
        entity: IndexedEntity {
            entity_kind: "contacts".into(),
            entity_id: seeded["contact_id"].as_i64().unwrap(),
            name: "Maria Silva".into(),
            company_id: None,
            responsible_user_id: Some(MARIA as i64),
            phone_count: 1,
            lead_ids: serde_json::to_string(&seeded["lead_ids"]).unwrap(),
            updated_at: now,
        },
        numbers: vec![CALLER.into()],
        with_leads: true,
    };
    let lead = LeadLinks {
        lead: IndexedLead {
            lead_id: seeded["lead_ids"][0].as_i64().unwrap(),
            name: "Website redesign".into(),
            price: Some(15_000),
            pipeline_id: None,
            status_id: None,
            responsible_user_id: Some(MARIA as i64),
            created_at: now,
            updated_at: now,
        },
        links: vec![("contacts".into(), seeded["contact_id"].as_i64().unwrap())],
    };
    let done = PassStep::Done { next_from: now };
    world.store.save_phone_page(account, &[contact], &[lead], &done, now).await.unwrap();
    let mut stream = Stream::open(&world, None).await;
    let searches_before = world.stats().await["requests"]["GET /api/v4/contacts"].as_u64().unwrap_or(0);

    let answer = world.post_signed(&path, &secret, "msg_ring_1", &event("indexed-1", CALLER, "ringing")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let (id, first) = stream.next().await;
    assert!(id.is_some());
    assert_eq!(first["caller"]["contact"]["name"], "Maria Silva", "named in the first event: {first}");
    assert_eq!(first["caller"]["number"], "(11) 98765-4321");
    let mut described = stream.next_caller().await;
    while described["caller"]["leads"].as_array().is_none_or(Vec::is_empty) {
        described = stream.next_caller().await;
    }
    assert_eq!(described["caller"]["leads"][0]["name"], "Website redesign");
    let searches = world.stats().await["requests"]["GET /api/v4/contacts"].as_u64().unwrap_or(0);
    assert_eq!(searches, searches_before, "the index knew the number: no contacts search");
    let leads_read = world.stats().await["requests"]["GET /api/v4/leads"].as_u64().unwrap_or(0);
    assert_eq!(leads_read, 0, "the index knew its open leads too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_number_is_said_to_be_unknown_and_a_kommo_outage_leaves_the_number() {
    let (world, path, secret) = setup().await;
    let mut stream = Stream::open(&world, None).await;
    world.post_signed(&path, &secret, "msg_unknown", &event("unknown-1", STRANGER, "ringing")).await;
    let named = stream.next_caller().await;
    assert_eq!(named["caller"]["known"], "unknown");
    assert!(named["caller"]["contact"].is_null());
    assert_eq!(named["caller"]["number"], "(21) 98888-7777");

    // Kommo fails every contacts search: the popup still has the number, then says Kommo did not answer.
    world
        .kommo_control(
            "/sandbox/kommo/faults",
            json!({"account_id": ACCOUNT, "status": 500, "count": 20, "method": "GET",
                   "path_prefix": "/api/v4/contacts"}),
        )
        .await;
    world.post_signed(&path, &secret, "msg_outage", &event("outage-1", COMPANY_PHONE, "ringing")).await;
    let (_, first) = stream.next().await;
    assert_eq!(first["call_id"], "outage-1");
    assert_eq!(first["from"], COMPANY_PHONE);
    let named = stream.next_caller().await;
    assert_eq!(named["caller"]["known"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lists_the_calls_in_progress_and_a_reconnect_gets_what_it_missed_once() {
    let (world, path, secret) = setup().await;
    world.seed_contact(ACCOUNT, "Maria Silva", &[CALLER], &[]).await;
    for (id, call, status) in [
        ("m1", "live-1", "ringing"),
        ("m2", "live-2", "ringing"),
        ("m3", "live-2", "answered"),
        ("m4", "gone", "ringing"),
    ] {
        let answer = world.post_signed(&path, &secret, id, &event(call, CALLER, status)).await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
    world.post_signed(&path, &secret, "m5", &event("gone", CALLER, "ended")).await;

    let (status, active) = world.widget(Method::GET, "/widget/v1/calls/active", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::OK, "{active}");
    let calls: Vec<(&str, &str)> = active["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| (call["call_id"].as_str().unwrap(), call["status"].as_str().unwrap()))
        .collect();
    assert_eq!(calls, [("live-1", "ringing"), ("live-2", "answered")], "the ended call is not in progress");
    let last = active["last_event_id"].as_i64().expect("where to resume the stream");

    // Events stored while the widget had no stream arrive when it opens one after `last`, once each.
    world.post_signed(&path, &secret, "m6", &event("live-1", CALLER, "answered")).await;
    world.post_signed(&path, &secret, "m7", &event("live-2", CALLER, "ended")).await;
    let mut stream = Stream::open(&world, Some(last)).await;
    let (first_id, first) = stream.next().await;
    let (second_id, second) = stream.next().await;
    assert_eq!((first["call_id"].as_str(), first["status"].as_str()), (Some("live-1"), Some("answered")));
    assert_eq!((second["call_id"].as_str(), second["status"].as_str()), (Some("live-2"), Some("ended")));
    assert!(first_id.unwrap() > last && second_id.unwrap() > first_id.unwrap());

    // A live event after the replay comes once, with the next id.
    world.post_signed(&path, &secret, "m8", &event("live-1", CALLER, "ended")).await;
    let (third_id, third) = loop {
        let (id, call) = stream.next().await;
        if id.is_some() {
            break (id, call);
        }
    };
    assert_eq!((third["call_id"].as_str(), third["status"].as_str()), (Some("live-1"), Some("ended")));
    assert!(third_id.unwrap() > second_id.unwrap(), "nothing replayed is sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_mapped_extension_is_listed_for_its_user_only() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (path, secret) = configure_with(&world, |settings| {
        settings.extensions = shared::ExtensionMap {
            entries: vec![shared::ExtensionEntry { extension: "101".into(), user_id: MARIA as i64 }],
            fallback_user_id: None,
        };
    })
    .await;
    let secret = secret.expect("the first save shows the secret");
    let mut body: Value = serde_json::from_str(&event("marias", CALLER, "ringing")).unwrap();
    body["extension"] = json!("101");
    world.post_signed(&path, &secret, "x1", &body.to_string()).await;
    assert_eq!(active_for(&world, MARIA).await, ["marias"], "the extension's user sees the call");
    assert!(active_for(&world, support::ADMIN).await.is_empty(), "another user of the account does not");
}

/// Saves settings for `ACCOUNT` with `tweak` applied; returns the webhook's path and, on the first save,
/// its secret.
async fn configure_with(
    world: &World,
    tweak: impl FnOnce(&mut shared::IntegrationSettings),
) -> (String, Option<WebhookSecret>) {
    let mut settings = world.valid_settings();
    tweak(&mut settings);
    let (status, saved) =
        world.widget(Method::PUT, "/widget/v1/settings", ACCOUNT, Some(serde_json::to_value(&settings).unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let path = saved["webhook"]["url"].as_str().unwrap().strip_prefix(&world.server).unwrap().to_owned();
    let secret = saved["webhook"]["signing_secret"].as_str().map(|secret| WebhookSecret::parse(secret).unwrap());
    (path, secret)
}

/// The call ids `user` of `ACCOUNT` sees in progress.
async fn active_for(world: &World, user: u64) -> Vec<String> {
    let token = world.token_as(ACCOUNT, user, Some(user == support::ADMIN)).await;
    let response = world
        .http
        .get(format!("{}/widget/v1/calls/active", world.server))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["calls"].as_array().unwrap().iter().map(|call| call["call_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_unmapped_extensions_pop_up_for_the_chosen_users_or_for_nobody() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (path, secret) = configure_with(&world, |settings| {
        settings.call_handling.unmapped_calls =
            shared::UnmappedCalls { to: shared::PopupAudience::Users, user_ids: vec![MARIA as i64], group_ids: vec![] };
    })
    .await;
    let secret = secret.expect("the first save shows the secret");
    world.post_signed(&path, &secret, "u1", &event("for-maria", STRANGER, "ringing")).await;
    assert_eq!(active_for(&world, MARIA).await, ["for-maria"], "a chosen user sees it");
    assert!(active_for(&world, support::ADMIN).await.is_empty(), "a user not chosen does not");

    configure_with(&world, |settings| {
        settings.call_handling.unmapped_calls =
            shared::UnmappedCalls { to: shared::PopupAudience::Nobody, ..Default::default() };
    })
    .await;
    assert!(active_for(&world, MARIA).await.is_empty(), "nobody");
    assert!(active_for(&world, support::ADMIN).await.is_empty(), "nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_unmapped_extensions_pop_up_for_the_users_of_the_chosen_group() {
    let world = world().await;
    world.install(ACCOUNT).await;
    // The local Kommo's users: the admin and Maria in Sales (id 0), Juan in Support.
    let users = world.widget(Method::GET, "/widget/v1/users", ACCOUNT, None).await.1;
    let group_of = |id: u64| users.as_array().unwrap().iter().find(|user| user["id"] == id).unwrap()["group"].clone();
    let support = group_of(JUAN);
    assert_eq!(support["name"], "Support", "{users}");
    assert_ne!(group_of(MARIA)["id"], support["id"], "{users}");
    let (path, secret) = configure_with(&world, |settings| {
        settings.call_handling.unmapped_calls = shared::UnmappedCalls {
            to: shared::PopupAudience::Groups,
            group_ids: vec![support["id"].as_i64().unwrap()],
            ..Default::default()
        };
        settings.extensions = shared::ExtensionMap {
            entries: vec![shared::ExtensionEntry { extension: "101".into(), user_id: MARIA as i64 }],
            fallback_user_id: None,
        };
    })
    .await;
    let secret = secret.expect("the first save shows the secret");
    let (mut juans, mut marias) = (Stream::open_as(&world, JUAN).await, Stream::open_as(&world, MARIA).await);
    world.post_signed(&path, &secret, "g1", &event("for-support", STRANGER, "ringing")).await;
    let (_, call) = juans.next().await;
    assert_eq!(call["call_id"], "for-support", "a user of the group gets the popup");
    // A mapped call for Maria comes after the group's call: had she been sent that one, it would come first.
    world
        .post_signed(&path, &secret, "g2", &{
            let mut body: Value = serde_json::from_str(&event("marias-own", CALLER, "ringing")).unwrap();
            body["extension"] = json!("101");
            body.to_string()
        })
        .await;
    let (_, call) = marias.next().await;
    assert_eq!(call["call_id"], "marias-own", "a user of another group does not get the group's popup");
    assert_eq!(active_for(&world, JUAN).await, ["for-support"], "the calls in progress follow the same rule");
    assert_eq!(active_for(&world, MARIA).await, ["marias-own"]);
    assert!(active_for(&world, support::ADMIN).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_opening_its_stream_makes_the_groups_known_before_the_next_call() {
    let world = world().await;
    let account = world.install(ACCOUNT).await;
    let (path, secret) = configure_with(&world, |_| {}).await;
    let secret = secret.expect("the first save shows the secret");
    let users = world.widget(Method::GET, "/widget/v1/users", ACCOUNT, None).await.1;
    let support = users.as_array().unwrap().iter().find(|user| user["id"] == JUAN).unwrap()["group"]["id"].clone();
    // As after a restart: the settings send unmapped calls to Juan's group, and this process has not
    // listed the users' groups since.
    let config: String = sqlx::query_scalar("SELECT config FROM widget_settings WHERE account_id = $1")
        .bind(account.get())
        .fetch_one(world.store.pool())
        .await
        .unwrap();
    let mut handling: shared::CallHandling = serde_json::from_str(&config).unwrap();
    handling.unmapped_calls = shared::UnmappedCalls {
        to: shared::PopupAudience::Groups,
        group_ids: vec![support.as_i64().unwrap()],
        ..Default::default()
    };
    sqlx::query("UPDATE widget_settings SET config = $1 WHERE account_id = $2")
        .bind(serde_json::to_string(&handling).unwrap())
        .bind(account.get())
        .execute(world.store.pool())
        .await
        .unwrap();
    let listings = || async { world.stats().await["requests"]["GET /api/v4/users"].as_u64().unwrap_or(0) };
    let before = listings().await;

    let mut juans = Stream::open_as(&world, JUAN).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listings().await == before {
        assert!(tokio::time::Instant::now() < deadline, "opening the stream asks for the users' groups");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The listing was asked for; its answer is read back in a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.post_signed(&path, &secret, "w1", &event("first-after-restart", STRANGER, "ringing")).await;
    let (_, call) = juans.next().await;
    assert_eq!(call["call_id"], "first-after-restart", "the first call already reaches the group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kommos_own_notification_is_sent_once_per_ringing_call_to_the_extensions_user() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (path, secret) = configure_with(&world, |settings| {
        settings.call_handling.widget.kommo_notification = true;
        settings.extensions = shared::ExtensionMap {
            entries: vec![shared::ExtensionEntry { extension: "101".into(), user_id: MARIA as i64 }],
            fallback_user_id: None,
        };
    })
    .await;
    let secret = secret.expect("the first save shows the secret");
    let mut ringing: Value = serde_json::from_str(&event("notified", CALLER, "ringing")).unwrap();
    ringing["extension"] = json!("101");
    world.post_signed(&path, &secret, "k1", &ringing.to_string()).await;
    // A repeated delivery and the answer send nothing more.
    world.post_signed(&path, &secret, "k1", &ringing.to_string()).await;
    let mut answered = ringing.clone();
    answered["status"] = json!("answered");
    world.post_signed(&path, &secret, "k2", &answered.to_string()).await;

    let url = format!("{}/sandbox/kommo/notifications?account_id={ACCOUNT}", world.kommo);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let notifications = loop {
        let notifications: Value = world.http.get(&url).send().await.unwrap().json().await.unwrap();
        if !notifications.as_array().unwrap().is_empty() || tokio::time::Instant::now() > deadline {
            break notifications;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again: Value = world.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(again, notifications, "nothing more came");
    let notifications = notifications.as_array().unwrap();
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    assert_eq!(notifications[0]["type"], "phone_call");
    assert_eq!(notifications[0]["phone_number"], CALLER);
    assert_eq!(notifications[0]["users"], json!([MARIA]), "the extension's user only");
}
