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
    let at = items(&list, "companies")[0]["updated_at"].as_i64().unwrap();
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
