//! What a local copy of an account's contacts and companies needs from the Kommo stand-in: listings filtered
//! by `updated_at` and ordered for stable paging, hand edits that an incremental sync sees, a bulk seed, and
//! Kommo's own webhooks (`/api/v4/webhooks`) delivered to a local receiver. Every API answer is checked against
//! the vendor OpenAPI description where it covers the endpoint (`support::Api::send`).

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
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
