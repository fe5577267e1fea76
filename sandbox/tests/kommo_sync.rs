//! What a local copy of an account's contacts and companies needs from the Kommo stand-in: listings filtered
//! by `updated_at` and ordered for stable paging, hand edits that an incremental sync sees, a bulk seed, and
//! Kommo's own webhooks (`/api/v4/webhooks`) delivered to a local receiver. Every API answer is checked against
//! the vendor OpenAPI description where it covers the endpoint (`support::Api::send`).

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{Api, Harness, validation_errors};

fn items(list: &Value, key: &str) -> Vec<Value> {
    list["_embedded"][key].as_array().cloned().unwrap_or_default()
}

fn ids(list: &Value, key: &str) -> Vec<u64> {
    items(list, key).iter().map(|item| item["id"].as_u64().unwrap()).collect()
}

/// Every page of a listing (`path` without `page`/`limit`), following `_links.next`; answers the items.
async fn every_page(api: &Api<'_>, key: &str, path: &str, limit: usize) -> Vec<Value> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut found = Vec::new();
    let mut page = 1;
    loop {
        let (status, list) = api.get(&format!("{path}{separator}page={page}&limit={limit}")).await;
        if status == 204 {
            return found;
        }
        assert_eq!(status, 200, "{list}");
        let batch = items(&list, key);
        assert!(batch.len() <= limit);
        found.extend(batch);
        if list["_links"]["next"].is_null() {
            return found;
        }
        page += 1;
    }
}

/// Seeds `count` contacts `Contact {i}` with one phone each, one request apiece.
async fn seed_contacts(api: &Api<'_>, count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for index in 0..count {
        let phone = format!("+5511{:08}", index);
        ids.push(api.seed(&format!("Contact {index}"), &[phone.as_str()], &[]).await.0);
    }
    ids
}

#[tokio::test]
async fn six_hundred_contacts_are_paged_by_updated_at_rendering_each_page_alone() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 7101).await;
    let seeded = seed_contacts(&api, 600).await;

    let listed = every_page(&api, "contacts", "/api/v4/contacts?order[updated_at]=asc&with=leads", 250).await;
    assert_eq!(listed.len(), 600);
    let stamps: Vec<(i64, u64)> =
        listed.iter().map(|item| (item["updated_at"].as_i64().unwrap(), item["id"].as_u64().unwrap())).collect();
    assert!(stamps.is_sorted(), "ordered by updated_at, ties by id");
    assert_eq!(stamps.iter().map(|(_, id)| *id).collect::<BTreeSet<_>>(), seeded.iter().copied().collect());
    assert!(listed.iter().all(|item| item["_embedded"]["leads"].is_array()), "with=leads still embeds leads");

    // The default order is by id ascending; desc reverses it.
    let (status, first) = api.get("/api/v4/contacts?limit=250").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&first, "contacts"), seeded[..250]);
    assert!(first["_links"]["next"]["href"].as_str().unwrap().contains("page=2"));
    let (_, last) = api.get("/api/v4/contacts?order[id]=desc&limit=250&page=3").await;
    let mut tail: Vec<u64> = seeded[..100].to_vec();
    tail.reverse();
    assert_eq!(ids(&last, "contacts"), tail);
    assert!(last["_links"]["next"].is_null());
    let (status, _) = api.get("/api/v4/contacts?limit=250&page=4").await;
    assert_eq!(status, 204);

    // The window is inclusive at both ends.
    let oldest = stamps[0].0;
    let newest = stamps[599].0;
    let all = every_page(&api, "contacts", &format!("/api/v4/contacts?filter[updated_at][from]={oldest}"), 250).await;
    assert_eq!(all.len(), 600);
    let path = format!("/api/v4/contacts?filter[updated_at][from]={oldest}&filter[updated_at][to]={newest}");
    assert_eq!(every_page(&api, "contacts", &path, 250).await.len(), 600);
    let (status, _) = api.get(&format!("/api/v4/contacts?filter[updated_at][from]={}", newest + 1)).await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/api/v4/contacts?filter[updated_at][to]={}", oldest - 1)).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_wrong_order_or_window_is_a_validation_error_and_a_large_limit_422() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 7102).await;
    seed_contacts(&api, 3).await;
    for (path, code, field) in [
        ("/api/v4/contacts?order[updated_at]=up", "NotSupportedChoice", "order.updated_at"),
        ("/api/v4/contacts?order[name]=asc", "NotSupportedChoice", "order.name"),
        ("/api/v4/companies?order[id]=sideways", "NotSupportedChoice", "order.id"),
        ("/api/v4/leads?order[created_at]=asc", "NotSupportedChoice", "order.created_at"),
        ("/api/v4/contacts?filter[updated_at][from]=yesterday", "InvalidType", "filter.updated_at.from"),
    ] {
        let (status, problem) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {problem}");
        assert_eq!(validation_errors(&problem), [("0".to_owned(), vec![(code.to_owned(), field.to_owned())])]);
    }
    let (status, _) = api.get("/api/v4/contacts?limit=251").await;
    assert_eq!(status, 422);
    let (status, list) = api.get("/api/v4/contacts?order[updated_at]=desc").await;
    assert_eq!((status, items(&list, "contacts").len()), (200, 3));
}

#[tokio::test]
async fn companies_and_leads_take_the_same_window_and_order() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 7103).await;
    let (first, _) = api.seed_company("Acme", &["+551130000001"], &[("Deal A", 0, 10)]).await;
    let (second, _) = api.seed_company("Globex", &["+551130000002"], &[("Deal B", 0, 20)]).await;
    let (status, list) = api.get("/api/v4/companies?order[id]=desc&with=leads,contacts").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list, "companies"), [second, first]);
    // The earlier of the two: seeding them may cross a second.
    let at = items(&list, "companies").iter().map(|company| company["updated_at"].as_i64().unwrap()).min().unwrap();
    let (status, list) =
        api.get(&format!("/api/v4/companies?filter[updated_at][from]={at}&order[updated_at]=asc")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list, "companies").len(), 2);
    let (status, leads) = api.get("/api/v4/leads?order[id]=desc&with=contacts").await;
    assert_eq!(status, 200);
    assert_eq!(items(&leads, "leads").len(), 2);
    let (status, _) = api.get(&format!("/api/v4/leads?filter[updated_at][from]={}", at + 3600)).await;
    assert_eq!(status, 204);
}

async fn patch(kommo: &Harness, path: &str, body: Value) -> reqwest::Response {
    kommo.http.patch(format!("{}{path}", kommo.kommo)).json(&body).send().await.unwrap()
}

async fn delete(kommo: &Harness, path: &str) -> reqwest::Response {
    kommo.http.delete(format!("{}{path}", kommo.kommo)).send().await.unwrap()
}

fn phones(entity: &Value) -> Vec<String> {
    entity["custom_fields_values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|field| field["field_code"] == "PHONE")
        .flat_map(|field| field["values"].as_array().unwrap().iter().map(|v| v["value"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn hand_edits_and_deletes_are_seen_by_an_incremental_listing() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 7201).await;
    let seeded = seed_contacts(&api, 3).await;
    let (company, _) = api.seed_company("Acme", &["+551130000001"], &[]).await;
    let (_, list) = api.get("/api/v4/contacts").await;
    let last_sync = items(&list, "contacts").iter().map(|item| item["updated_at"].as_i64().unwrap()).max().unwrap();

    let manager = 7201 * 100 + 1;
    let body = json!({ "name": "Renamed", "phones": ["+5511999990001", { "value": "+5511999990002", "enum_code": "MOB" }],
                       "responsible_user_id": manager });
    let response = patch(&kommo, &format!("/sandbox/kommo/contacts/{}", seeded[1]), body).await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.unwrap();
    assert_eq!((edited["id"].as_u64(), edited["name"].as_str()), (Some(seeded[1]), Some("Renamed")));
    assert_eq!(edited["responsible_user_id"], manager);
    assert_eq!(phones(&edited), ["+5511999990001", "+5511999990002"]);
    let first_edit = edited["updated_at"].as_i64().unwrap();
    assert!(first_edit > last_sync, "{first_edit} > {last_sync}");

    // Only the edit is past the last sync; a second edit in the same second still moves updated_at.
    let (status, changed) = api.get(&format!("/api/v4/contacts?filter[updated_at][from]={}", last_sync + 1)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&changed, "contacts"), [seeded[1]]);
    assert_eq!(phones(&items(&changed, "contacts")[0]), ["+5511999990001", "+5511999990002"]);
    let again: Value = patch(&kommo, &format!("/sandbox/kommo/contacts/{}", seeded[1]), json!({ "phones": [] }))
        .await
        .json()
        .await
        .unwrap();
    assert!(again["updated_at"].as_i64().unwrap() > first_edit);
    assert!(phones(&again).is_empty());
    assert_eq!(again["name"], "Renamed");

    let response =
        patch(&kommo, &format!("/sandbox/kommo/companies/{company}"), json!({ "phones": ["+551130000009"] })).await;
    assert_eq!(response.status(), 200);
    let (_, changed) = api.get(&format!("/api/v4/companies?filter[updated_at][from]={}", last_sync + 1)).await;
    assert_eq!(phones(&items(&changed, "companies")[0]), ["+551130000009"]);

    // Refusals: a user of another account, a phone type Kommo lacks, an unknown field, an unknown id.
    let path = format!("/sandbox/kommo/contacts/{}", seeded[0]);
    assert_eq!(patch(&kommo, &path, json!({ "responsible_user_id": 1 })).await.status(), 400);
    assert_eq!(patch(&kommo, &path, json!({ "phones": [{ "value": "1", "enum_code": "PAGER" }] })).await.status(), 400);
    assert_eq!(patch(&kommo, &path, json!({ "email": "a@b.c" })).await.status(), 422);
    assert_eq!(patch(&kommo, "/sandbox/kommo/contacts/1", json!({ "name": "x" })).await.status(), 404);
    assert_eq!(patch(&kommo, &format!("/sandbox/kommo/contacts/{company}"), json!({})).await.status(), 404);

    assert_eq!(delete(&kommo, &format!("/sandbox/kommo/contacts/{}", seeded[2])).await.status(), 204);
    assert_eq!(delete(&kommo, &format!("/sandbox/kommo/contacts/{}", seeded[2])).await.status(), 404);
    assert_eq!(delete(&kommo, &format!("/sandbox/kommo/companies/{company}")).await.status(), 204);
    let (status, _) = api.get(&format!("/api/v4/contacts/{}", seeded[2])).await;
    assert_eq!(status, 404);
    let (_, list) = api.get("/api/v4/contacts").await;
    assert_eq!(ids(&list, "contacts"), [seeded[0], seeded[1]]);
    let (status, _) = api.get("/api/v4/companies").await;
    assert_eq!(status, 204);
    // Hand edits are not API writes.
    assert!(api.writes().await.is_empty());
}

#[tokio::test]
async fn ten_thousand_contacts_are_seeded_in_one_request_and_paged_in_forty() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 7202).await;
    let contacts: Vec<Value> = (0..10_000)
        .map(|index| {
            let mut contact = json!({ "name": format!("Bulk {index}"), "phones": [format!("+55119{index:08}")] });
            if index % 10 == 0 {
                contact["leads"] = json!([{ "name": format!("Deal {index}") }]);
            }
            contact
        })
        .collect();
    let started = std::time::Instant::now();
    let response =
        kommo.post("/sandbox/kommo/contacts/batch", json!({ "account_id": 7202, "contacts": contacts })).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(elapsed < std::time::Duration::from_secs(2), "the bulk seed took {elapsed:?}");
    let seeded: Value = response.json().await.unwrap();
    let contact_ids = seeded["contact_ids"].as_array().unwrap();
    assert_eq!(contact_ids.len(), 10_000);
    assert_eq!(seeded["lead_ids"][0].as_array().unwrap().len(), 1);
    assert!(seeded["lead_ids"][1].as_array().unwrap().is_empty());

    let started = std::time::Instant::now();
    let (status, page) = api.get("/api/v4/contacts?page=40&limit=250&with=leads").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "page 40 took {:?}", started.elapsed());
    assert_eq!(ids(&page, "contacts").last().copied(), contact_ids.last().and_then(Value::as_u64));
    assert!(page["_links"]["next"].is_null());
    let (status, _) = api.get("/api/v4/contacts?page=41&limit=250").await;
    assert_eq!(status, 204);

    // All or none: one bad contact refuses the batch, naming it.
    let bad =
        json!({ "account_id": 7202, "contacts": [{ "name": "Fine" }, { "name": "Bad", "responsible_user_id": 1 }] });
    let response = kommo.post("/sandbox/kommo/contacts/batch", bad).await;
    assert_eq!(response.status(), 400);
    let refusal: Value = response.json().await.unwrap();
    assert!(refusal["error"]["message"].as_str().unwrap().starts_with("contacts[1]: "), "{refusal}");
    let (_, first) = api.get("/api/v4/contacts?order[id]=desc&limit=1").await;
    assert_eq!(ids(&first, "contacts"), [contact_ids.last().and_then(Value::as_u64).unwrap()]);
}

/// A local webhook receiver: every POST's `Content-Type`, `User-Agent` and form pairs, answered 200.
struct Receiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Hook>>>,
}

#[derive(Debug, Clone)]
struct Hook {
    content_type: String,
    user_agent: String,
    form: Vec<(String, String)>,
}

impl Hook {
    fn get(&self, key: &str) -> Option<&str> {
        self.form.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let got: std::sync::Arc<std::sync::Mutex<Vec<Hook>>> = Default::default();
        let log = got.clone();
        let router = axum::Router::new().route(
            "/kommo/hooks/{token}",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let header =
                    |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let form = form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
                log.lock().unwrap().push(Hook {
                    content_type: header("content-type"),
                    user_agent: header("user-agent"),
                    form,
                });
                std::future::ready("ok")
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/kommo/hooks/unguessable-token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Receiver { url, got }
    }

    /// Waits (at most 5 s) until `count` deliveries arrived; answers them all.
    async fn wait_for(&self, count: usize) -> Vec<Hook> {
        for _ in 0..100 {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= count {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{count} webhook deliveries expected, got {:?}", self.got.lock().unwrap());
    }
}

async fn deliveries(kommo: &Harness, account_id: u64) -> Vec<Value> {
    let path = format!("/sandbox/kommo/webhook-deliveries?account_id={account_id}");
    let answer: Value = kommo.get(&path, None).await.json().await.unwrap();
    answer.as_array().unwrap().clone()
}

const ALL: [&str; 10] = [
    "add_contact",
    "update_contact",
    "delete_contact",
    "responsible_contact",
    "add_company",
    "update_company",
    "delete_company",
    "add_lead",
    "status_lead",
    "responsible_lead",
];

#[tokio::test]
async fn a_subscribed_destination_gets_classic_form_webhooks_for_contact_company_and_lead_changes() {
    let kommo = Harness::start().await;
    let receiver = Receiver::start().await;
    let api = Api::connect(&kommo, 7301).await;
    let (status, webhook) = api.post("/api/v4/webhooks", json!({ "destination": receiver.url, "settings": ALL })).await;
    assert_eq!(status, 200, "{webhook}");
    assert_eq!(webhook["destination"], receiver.url.as_str());
    assert_eq!(webhook["account_id"], 7301);
    assert_eq!(webhook["disabled"], false);
    assert_eq!(webhook["settings"].as_array().unwrap().len(), ALL.len());
    let (status, list) = api.get(&format!("/api/v4/webhooks?filter[destination]={}", receiver.url)).await;
    assert_eq!(status, 200);
    assert_eq!(list["_embedded"]["webhooks"][0]["id"], webhook["id"]);
    let (status, _) = api.get("/api/v4/webhooks?filter[destination]=https://elsewhere.example/hook").await;
    assert_eq!(status, 204);

    // A hand seed: the contact and its lead, one delivery.
    let (contact, leads) = api.seed("Ana", &["+5511988887777"], &[("Deal", 0)]).await;
    let got = receiver.wait_for(1).await;
    let hook = &got[0];
    assert_eq!(hook.content_type, "application/x-www-form-urlencoded");
    assert_eq!(hook.user_agent, "amoCRM-Webhooks/3.0");
    assert_eq!(hook.get("account[subdomain]"), Some("acct7301"));
    assert_eq!(hook.get("account[id]"), Some("7301"));
    assert_eq!(hook.get("contacts[add][0][id]"), Some(contact.to_string().as_str()));
    assert_eq!(hook.get("contacts[add][0][type]"), Some("contact"));
    assert_eq!(hook.get("contacts[add][0][name]"), Some("Ana"));
    assert_eq!(hook.get("contacts[add][0][custom_fields][0][code]"), Some("PHONE"));
    assert_eq!(hook.get("contacts[add][0][custom_fields][0][values][0][value]"), Some("+5511988887777"));
    assert_eq!(hook.get("leads[add][0][id]"), Some(leads[0].to_string().as_str()));

    // A hand edit that changes the responsible user: update and responsible, in one delivery.
    let maria = 7301 * 100 + 1;
    let edit = json!({ "responsible_user_id": maria, "phones": ["+5511900000000"] });
    let edited: Value = patch(&kommo, &format!("/sandbox/kommo/contacts/{contact}"), edit).await.json().await.unwrap();
    let hook = receiver.wait_for(2).await.remove(1);
    assert_eq!(hook.get("contacts[update][0][id]"), Some(contact.to_string().as_str()));
    assert_eq!(hook.get("contacts[update][0][responsible_user_id]"), Some(maria.to_string().as_str()));
    let modified = edited["updated_at"].to_string();
    assert_eq!(hook.get("contacts[update][0][last_modified]"), Some(modified.as_str()));
    assert_eq!(hook.get("contacts[update][0][custom_fields][0][values][0][value]"), Some("+5511900000000"));
    assert_eq!(hook.get("contacts[responsible][0][id]"), Some(contact.to_string().as_str()));
    assert_eq!(
        hook.get("contacts[responsible][0][old_responsible_user_id]"),
        Some(support::ADMIN_ID.to_string().as_str())
    );

    // A company edit comes under contacts[...] with type=company; a delete carries the id.
    let (company, _) = api.seed_company("Acme", &[], &[]).await;
    receiver.wait_for(3).await;
    patch(&kommo, &format!("/sandbox/kommo/companies/{company}"), json!({ "name": "Acme Ltd" })).await;
    let hook = receiver.wait_for(4).await.remove(3);
    assert_eq!(hook.get("contacts[update][0][type]"), Some("company"));
    assert_eq!(hook.get("contacts[update][0][name]"), Some("Acme Ltd"));
    assert_eq!(delete(&kommo, &format!("/sandbox/kommo/contacts/{contact}")).await.status(), 204);
    let hook = receiver.wait_for(5).await.remove(4);
    assert_eq!(hook.get("contacts[delete][0][id]"), Some(contact.to_string().as_str()));
    assert_eq!(hook.get("contacts[delete][0][type]"), Some("contact"));

    // API writes too: an incoming call's lead accepted into a stage by another user.
    let sip = json!([{ "source_uid": "line-1", "source_name": "Main line", "request_id": "u-1",
        "metadata": { "uniq": "u-1", "from": "+5511977776666", "phone": "+551130000000", "called_at": 1_764_000_000,
                      "duration": 0, "service_code": "kommo-voip", "is_call_event_needed": true } }]);
    let (status, unsorted) = api.post("/api/v4/leads/unsorted/sip", sip).await;
    assert_eq!(status, 200, "{unsorted}");
    let hook = receiver.wait_for(6).await.remove(5);
    assert!(hook.get("contacts[add][0][id]").is_some() && hook.get("leads[add][0][id]").is_some(), "{hook:?}");
    let uid = unsorted["_embedded"]["unsorted"][0]["uid"].as_str().unwrap().to_owned();
    let (status, _) = api.post(&format!("/api/v4/leads/unsorted/{uid}/accept"), json!({ "user_id": maria })).await;
    assert_eq!(status, 200);
    let hook = receiver.wait_for(7).await.remove(6);
    assert_eq!(hook.get("leads[status][0][old_status_id]"), Some("8100001"));
    assert_eq!(hook.get("leads[status][0][status_id]"), Some("8100002"));
    assert_eq!(hook.get("leads[responsible][0][responsible_user_id]"), Some(maria.to_string().as_str()));
    assert!(hook.get("leads[update][0][id]").is_none(), "update_lead is not subscribed");

    // The log says what was sent and how each was answered.
    let sent = deliveries(&kommo, 7301).await;
    assert_eq!(sent.len(), 7);
    assert!(sent.iter().all(|delivery| delivery["state"] == "answered" && delivery["status"] == 200), "{sent:?}");
    assert_eq!(sent[1]["events"], json!(["update_contact", "responsible_contact"]));
    assert_eq!(sent[1]["form"]["contacts[update][0][id]"], contact.to_string());

    // Unsubscribed: nothing more is sent.
    let (status, _) = api.send("DELETE", "/api/v4/webhooks", Some(json!({ "destination": receiver.url }))).await;
    assert_eq!(status, 204);
    let (status, _) = api.send("DELETE", "/api/v4/webhooks", Some(json!({ "destination": receiver.url }))).await;
    assert_eq!(status, 404);
    api.seed("Bea", &["+5511911112222"], &[]).await;
    assert_eq!(deliveries(&kommo, 7301).await.len(), 7);
    let (status, _) = api.get("/api/v4/webhooks").await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_bulk_seed_is_delivered_in_batches_of_a_hundred() {
    let kommo = Harness::start().await;
    let receiver = Receiver::start().await;
    let api = Api::connect(&kommo, 7302).await;
    let (status, _) =
        api.post("/api/v4/webhooks", json!({ "destination": receiver.url, "settings": ["add_contact"] })).await;
    assert_eq!(status, 200);
    let contacts: Vec<Value> = (0..250).map(|index| json!({ "name": format!("Bulk {index}") })).collect();
    let response =
        kommo.post("/sandbox/kommo/contacts/batch", json!({ "account_id": 7302, "contacts": contacts })).await;
    assert_eq!(response.status(), 200);
    let got = receiver.wait_for(3).await;
    let counts: Vec<usize> =
        got.iter().map(|hook| hook.form.iter().filter(|(key, _)| key.ends_with("][id]")).count()).collect();
    assert_eq!(counts, [100, 100, 50]);
    assert!(got[2].get("contacts[add][49][id]").is_some());
}

#[tokio::test]
async fn webhooks_need_an_admin_token_and_a_plan_that_has_them() {
    let kommo = Harness::start().await;
    let receiver = Receiver::start().await;
    let api = Api::connect(&kommo, 7303).await;
    let body = json!({ "destination": receiver.url, "settings": ["update_contact"] });

    // A manager's token: 403.
    let response = kommo.post("/sandbox/kommo/install", json!({ "account_id": 7303, "user_id": 7303 * 100 + 1 })).await;
    let code = response.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned();
    let manager = kommo.exchange(&code).await["access_token"].as_str().unwrap().to_owned();
    for method in ["POST", "GET", "DELETE"] {
        let request = kommo
            .http
            .request(method.parse().unwrap(), format!("{}/api/v4/webhooks", kommo.kommo))
            .bearer_auth(&manager)
            .json(&body)
            .send()
            .await
            .unwrap();
        support::assert_problem(request, 403).await;
    }
    // Those requests count in the account's window of 7 a second, as the paced client does not know.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // Refused bodies name the field.
    let (status, problem) =
        api.post_refused("/api/v4/webhooks", json!({ "destination": "not a url", "settings": ["sing"] })).await;
    assert_eq!(status, 400);
    let errors = validation_errors(&problem);
    let paths: Vec<&str> = errors[0].1.iter().map(|(_, path)| path.as_str()).collect();
    assert_eq!(paths, ["destination", "settings.0"]);

    // The plan without webhooks: 402, and no deliveries for changes, even to an existing subscription.
    let (status, _) = api.post("/api/v4/webhooks", body.clone()).await;
    assert_eq!(status, 200);
    let (contact, _) = api.seed("Ana", &[], &[]).await;
    let response = kommo.post("/sandbox/kommo/accounts/7303/plan", json!({ "webhooks": false })).await;
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "account_id": 7303, "webhooks": false }));
    let (status, problem) = api.post("/api/v4/webhooks", body.clone()).await;
    assert_eq!((status, problem["status"].as_u64()), (402, Some(402)));
    let (status, _) = api.get("/api/v4/webhooks").await;
    assert_eq!(status, 402);
    patch(&kommo, &format!("/sandbox/kommo/contacts/{contact}"), json!({ "name": "Ana B" })).await;
    assert!(deliveries(&kommo, 7303).await.is_empty());

    kommo.post("/sandbox/kommo/accounts/7303/plan", json!({ "webhooks": true })).await;
    patch(&kommo, &format!("/sandbox/kommo/contacts/{contact}"), json!({ "name": "Ana C" })).await;
    let hook = receiver.wait_for(1).await.remove(0);
    assert_eq!(hook.get("contacts[update][0][name]"), Some("Ana C"));
    assert_eq!(kommo.post("/sandbox/kommo/accounts/9999/plan", json!({ "webhooks": false })).await.status(), 404);
}

#[tokio::test]
async fn a_destination_off_this_machine_is_never_posted_to_and_a_dead_one_is_recorded_failed() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 7304).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    for destination in ["https://hooks.example.com/kommo", dead.as_str()] {
        let (status, _) =
            api.post("/api/v4/webhooks", json!({ "destination": destination, "settings": ["add_contact"] })).await;
        assert_eq!(status, 200);
    }
    api.seed("Ana", &[], &[]).await;
    let mut sent = deliveries(&kommo, 7304).await;
    for _ in 0..100 {
        if sent.iter().all(|delivery| delivery["state"] != "queued") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sent = deliveries(&kommo, 7304).await;
    }
    let states: Vec<(&str, &str)> = sent
        .iter()
        .map(|delivery| (delivery["destination"].as_str().unwrap(), delivery["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("https://hooks.example.com/kommo", "refused"), (dead.as_str(), "failed")]);
    assert!(sent.iter().all(|delivery| delivery["error"].is_string() && delivery["status"].is_null()));
}

#[tokio::test]
async fn a_lead_moved_by_hand_is_listed_again_and_sends_a_status_webhook() {
    let kommo = Harness::start().await;
    let receiver = Receiver::start().await;
    let api = Api::connect(&kommo, 7305).await;
    let (_, leads) = api.seed("Ana", &["+5511988887777"], &[("Deal", 0), ("Other", 0)]).await;
    let (status, _) = api
        .post("/api/v4/webhooks", json!({ "destination": receiver.url, "settings": ["status_lead", "update_lead"] }))
        .await;
    assert_eq!(status, 200);
    let (_, list) = api.get("/api/v4/leads").await;
    let last_sync = items(&list, "leads").iter().map(|lead| lead["updated_at"].as_i64().unwrap()).max().unwrap();

    let response = patch(&kommo, &format!("/sandbox/kommo/leads/{}", leads[0]), json!({ "status_id": 142 })).await;
    assert_eq!(response.status(), 200);
    let lead: Value = response.json().await.unwrap();
    assert_eq!(lead["status_id"], 142);
    assert_eq!(lead["closed_at"], lead["updated_at"]);
    let (_, changed) = api.get(&format!("/api/v4/leads?filter[updated_at][from]={}", last_sync + 1)).await;
    assert_eq!(ids(&changed, "leads"), [leads[0]]);
    let hook = receiver.wait_for(1).await.remove(0);
    assert_eq!(hook.get("leads[status][0][id]"), Some(leads[0].to_string().as_str()));
    assert_eq!(hook.get("leads[status][0][status_id]"), Some("142"));
    assert_eq!(hook.get("leads[status][0][old_status_id]"), Some("8100002"));
    assert_eq!(hook.get("leads[update][0][id]"), Some(leads[0].to_string().as_str()));

    let path = format!("/sandbox/kommo/leads/{}", leads[1]);
    assert_eq!(patch(&kommo, &path, json!({ "status_id": 8_100_001 })).await.status(), 400);
    assert_eq!(patch(&kommo, &path, json!({ "responsible_user_id": 1 })).await.status(), 400);
    assert_eq!(patch(&kommo, "/sandbox/kommo/leads/1", json!({ "name": "x" })).await.status(), 404);
}
