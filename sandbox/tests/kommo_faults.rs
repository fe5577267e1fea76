//! The Kommo stand-in's ledger and faults over real HTTP: every API write logged with its answer, calls
//! written twice for one uniq recorded, counters per account and path, seeding, and each kind of injected
//! fault, including the ambiguous ones that commit the write and then fail or hang.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Api, Harness, assert_problem};

fn call(phone: &str, uniq: &str) -> Value {
    json!({ "direction": "inbound", "duration": 10, "source": "kommo-voip", "phone": phone, "uniq": uniq })
}

fn sip(uniq: &str, from: &str) -> Value {
    json!({
        "source_uid": "line-1", "source_name": "Main line",
        "metadata": { "uniq": uniq, "from": from, "phone": "+551130000000", "called_at": 1_764_000_000,
                      "duration": 3, "service_code": "kommo-voip" },
    })
}

async fn fault(kommo: &Harness, fault: Value) {
    let response = kommo.post("/sandbox/kommo/faults", fault).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn notes(entities: &Value) -> usize {
    entities["notes"].as_object().unwrap().len()
}

/// A client that gives up after half a second, as our server's would after its own timeout.
fn impatient() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap()
}

#[tokio::test]
async fn every_api_write_is_logged_with_its_body_and_answer() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2001).await;
    let other = Api::connect(&kommo, 2002).await;
    api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    let contact = json!([{ "name": "Ana" }]);
    assert_eq!(api.post("/api/v4/contacts", contact.clone()).await.0, 200);
    assert_eq!(api.get("/api/v4/contacts").await.0, 200);
    let refused = json!([{ "duration": 1 }]);
    assert_eq!(api.post_refused("/api/v4/calls", refused.clone()).await.0, 400);
    assert_eq!(other.post("/api/v4/calls", json!([call("+1 555 000 0000", "o-1")])).await.0, 200);

    let writes = api.writes().await;
    let seen: Vec<(&str, &str, u64, bool)> = writes
        .iter()
        .map(|write| {
            assert_eq!(write["account_id"], 2001);
            let (method, path) = (write["method"].as_str().unwrap(), write["path"].as_str().unwrap());
            (method, path, write["status"].as_u64().unwrap(), write["committed"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(seen, [("POST", "/api/v4/contacts", 200, true), ("POST", "/api/v4/calls", 400, false)]);
    assert_eq!(writes[0]["body"], contact);
    assert_eq!(writes[1]["body"], refused);
    let all: Value = kommo.get("/sandbox/kommo/writes", None).await.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_second_call_write_with_one_uniq_is_recorded_as_a_duplicate() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2003).await;
    let other = Api::connect(&kommo, 2004).await;
    api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    other.seed("Known there", &["+55 11 91111-0000"], &[]).await;
    assert_eq!(api.post("/api/v4/calls", json!([call("+55 11 91111-0000", "u-1")])).await.0, 200);
    // Another account's call with the same uniq, and a refused write, are no duplicates.
    assert_eq!(other.post("/api/v4/calls", json!([call("+55 11 91111-0000", "u-1")])).await.0, 200);
    assert_eq!(api.post_refused("/api/v4/calls", json!([{ "uniq": "u-1", "direction": "inbound" }])).await.0, 400);
    assert_eq!(kommo.stats().await["duplicate_uniqs"], json!([]));

    assert_eq!(api.post("/api/v4/calls", json!([call("+55 11 91111-0000", "u-1")])).await.0, 200);
    let (_, created) = api.post("/api/v4/leads/unsorted/sip", json!([sip("u-2", "+55 11 93333-0000")])).await;
    let lead = created["_embedded"]["unsorted"][0]["_embedded"]["leads"][0]["id"].as_u64().unwrap();
    let note = json!([{ "note_type": "call_in", "params": { "uniq": "u-2", "duration": 3, "source": "kommo-voip",
                                                           "phone": "+55 11 93333-0000" } }]);
    assert_eq!(api.post(&format!("/api/v4/leads/{lead}/notes"), note).await.0, 200);
    // A common note carries no call, whatever its params say.
    let common = json!([{ "note_type": "common", "params": { "text": "u-2", "uniq": "u-2" } }]);
    assert_eq!(api.post(&format!("/api/v4/leads/{lead}/notes"), common).await.0, 200);

    let stats = kommo.stats().await;
    assert_eq!(
        stats["duplicate_uniqs"],
        json!([
            { "account_id": 2003, "uniq": "u-1", "first": "POST /api/v4/calls", "again": "POST /api/v4/calls" },
            { "account_id": 2003, "uniq": "u-2", "first": "POST /api/v4/leads/unsorted/sip",
              "again": format!("POST /api/v4/leads/{lead}/notes") },
        ])
    );
    assert_eq!(stats["accounts"]["2003"]["duplicate_uniqs"], json!(["u-1", "u-2"]));
    assert!(stats["accounts"]["2004"]["duplicate_uniqs"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn requests_are_counted_per_account_and_path() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2005).await;
    api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    for uniq in ["c-1", "c-2"] {
        api.post("/api/v4/calls", json!([call("+55 11 91111-0000", uniq)])).await;
    }
    api.get("/api/v4/contacts?query=911110000").await;
    let stats = kommo.stats().await;
    let account = &stats["accounts"]["2005"];
    assert_eq!(account["by_path"]["POST /api/v4/calls"], 2);
    assert_eq!(account["by_path"]["GET /api/v4/contacts"], 1);
    assert_eq!(account["by_path"]["POST /oauth2/access_token"], 1);
    assert!(account["max_requests_per_second"].as_u64().unwrap() >= 1);
    assert_eq!(stats["requests"]["POST /api/v4/calls"], 2);
}

#[tokio::test]
async fn a_fault_hits_only_its_account_method_and_path_and_writes_nothing() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2006).await;
    let other = Api::connect(&kommo, 2007).await;
    api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    fault(&kommo, json!({ "account_id": 2006, "status": 500, "method": "post", "path_prefix": "/api/v4/calls" })).await;
    assert_eq!(other.post("/api/v4/calls", json!([call("+1 555 000 0000", "x")])).await.0, 200);
    assert_eq!(api.get("/api/v4/contacts").await.0, 200);
    assert_eq!(api.post("/api/v4/contacts", json!([{ "name": "Bo" }])).await.0, 200);
    let (status, problem) = api.post("/api/v4/calls", json!([call("+55 11 91111-0000", "f-1")])).await;
    assert_eq!((status, problem["status"].as_u64()), (500, Some(500)));
    assert_eq!(notes(&api.entities().await), 0);
    let last = api.writes().await.pop().unwrap();
    assert_eq!((last["status"].as_u64(), last["committed"].as_bool()), (Some(500), Some(false)));
    assert_eq!(api.post("/api/v4/calls", json!([call("+55 11 91111-0000", "f-1")])).await.0, 200);
    assert_eq!(kommo.stats().await["duplicate_uniqs"], json!([]));
}

#[tokio::test]
async fn status_faults_answer_402_and_429_for_count_requests() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2008).await;
    fault(&kommo, json!({ "account_id": 2008, "status": 402, "count": 2, "path_prefix": "/api/v4/tasks" })).await;
    let task = json!([{ "text": "Call back", "complete_till": 1_900_000_000 }]);
    for _ in 0..2 {
        let (status, problem) = api.post("/api/v4/tasks", task.clone()).await;
        assert_eq!((status, problem["detail"].as_str().unwrap().contains("Payment")), (402, true));
    }
    assert_eq!(api.post("/api/v4/tasks", task.clone()).await.0, 200);
    fault(&kommo, json!({ "account_id": 2008, "status": 429, "retry_after": 7 })).await;
    let response = api.raw(&kommo.http, "POST", "/api/v4/tasks", Some(&task)).await.unwrap();
    assert_eq!(response.headers()["retry-after"], "7");
    assert_problem(response, 429).await;
    let (_, tasks) = api.get("/api/v4/tasks").await;
    assert_eq!(tasks["_embedded"]["tasks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_delay_fault_slows_the_answer_and_then_serves_it() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2009).await;
    fault(&kommo, json!({ "account_id": 2009, "delay_ms": 300, "path_prefix": "/api/v4/contacts" })).await;
    let started = Instant::now();
    assert_eq!(api.post("/api/v4/contacts", json!([{ "name": "Slow" }])).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(api.entities().await["contacts"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn a_timeout_fault_hangs_past_the_client_and_writes_nothing() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2010).await;
    api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    fault(&kommo, json!({ "account_id": 2010, "timeout": true, "path_prefix": "/api/v4/calls" })).await;
    let body = json!([call("+55 11 91111-0000", "t-1")]);
    let error = api.raw(&impatient(), "POST", "/api/v4/calls", Some(&body)).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(notes(&api.entities().await), 0);
    let logged = api.writes().await;
    assert_eq!((logged[0]["status"].as_u64(), logged[0]["committed"].as_bool()), (Some(504), Some(false)));
    assert_eq!(api.post("/api/v4/calls", body).await.0, 200);
}

#[tokio::test]
async fn an_after_commit_fault_writes_then_fails_so_a_blind_retry_duplicates() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2011).await;
    let (contact, _) = api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    fault(&kommo, json!({ "account_id": 2011, "status": 500, "after_commit": true, "path_prefix": "/api/v4/calls" }))
        .await;
    let body = json!([call("+55 11 91111-0000", "a-1")]);
    let (status, _) = api.post("/api/v4/calls", body.clone()).await;
    assert_eq!(status, 500);
    let (_, written) = api.get(&format!("/api/v4/contacts/{contact}/notes")).await;
    assert_eq!(written["_embedded"]["notes"][0]["params"]["uniq"], "a-1", "the call was written despite the 500");
    let logged = api.writes().await;
    assert_eq!((logged[0]["status"].as_u64(), logged[0]["committed"].as_bool()), (Some(500), Some(true)));
    assert_eq!(api.post("/api/v4/calls", body).await.0, 200);
    assert_eq!(kommo.stats().await["duplicate_uniqs"][0]["uniq"], "a-1");
}

#[tokio::test]
async fn an_after_commit_timeout_writes_then_hangs() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 2012).await;
    fault(
        &kommo,
        json!({ "account_id": 2012, "timeout": true, "after_commit": true, "method": "POST",
                          "path_prefix": "/api/v4/leads/unsorted/sip" }),
    )
    .await;
    let body = json!([sip("h-1", "+55 11 94444-0000")]);
    let error = api.raw(&impatient(), "POST", "/api/v4/leads/unsorted/sip", Some(&body)).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let (status, list) = api.get("/api/v4/leads/unsorted?filter[category][]=sip").await;
    assert_eq!((status, list["_embedded"]["unsorted"][0]["metadata"]["uniq"].as_str()), (200, Some("h-1")));
    let logged = api.writes().await;
    assert_eq!((logged[0]["status"].as_u64(), logged[0]["committed"].as_bool()), (Some(504), Some(true)));
}

#[tokio::test]
async fn an_after_commit_fault_on_the_token_endpoint_rotates_then_fails() {
    let kommo = Harness::start().await;
    let pair = kommo.connected(2013).await;
    fault(&kommo, json!({ "status": 503, "after_commit": true, "target": "oauth" })).await;
    assert_problem(kommo.refresh(pair["refresh_token"].as_str().unwrap()).await, 503).await;
    assert_eq!(kommo.stats().await["refresh_grants"], 1, "the refresh was carried out");
    // Kommo's grace: the refresh token the client still holds works once more.
    assert_eq!(kommo.refresh(pair["refresh_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn faults_and_seeds_are_checked() {
    let kommo = Harness::start().await;
    kommo.account(2014).await;
    assert_eq!(kommo.post("/sandbox/kommo/faults", json!({ "count": 1 })).await.status(), 400);
    assert_eq!(kommo.post("/sandbox/kommo/faults", json!({ "status": 200 })).await.status(), 400);
    assert!(
        kommo.post("/sandbox/kommo/faults", json!({ "status": 500, "when": "later" })).await.status().is_client_error()
    );
    assert_eq!(kommo.delete_faults().await, 204);
    let seed = |body: Value| kommo.post("/sandbox/kommo/contacts", body);
    assert_eq!(seed(json!({ "account_id": 9_999, "name": "x" })).await.status(), 400);
    assert_eq!(seed(json!({ "account_id": 2014, "name": "x", "responsible_user_id": 1 })).await.status(), 400);
    assert_eq!(seed(json!({ "account_id": 2014, "name": "x", "leads": [{ "status_id": 0 }] })).await.status(), 400);
    let seeded: Value = seed(json!({ "account_id": 2014, "name": "x", "phones": ["+1 555"], "leads": [{}] }))
        .await
        .json()
        .await
        .unwrap();
    assert!(seeded["contact_id"].is_u64() && seeded["lead_ids"][0].is_u64(), "{seeded}");
    assert_eq!(kommo.get("/sandbox/kommo/entities?account_id=9999", None).await.status(), 404);
    let stored: Value = kommo.get("/sandbox/kommo/entities?account_id=2014", None).await.json().await.unwrap();
    assert_eq!((stored["calls_mode"].as_str(), stored["leads"].as_object().unwrap().len()), (Some("errors_200"), 1));
}

#[tokio::test]
async fn new_endpoints_need_a_bearer_token_like_the_rest() {
    let kommo = Harness::start().await;
    for path in ["/api/v4/calls", "/api/v4/leads/unsorted/sip", "/api/v4/leads/notes"] {
        let response = kommo.http.post(format!("{}{path}", kommo.kommo)).json(&json!([])).send().await.unwrap();
        assert_problem(response, 401).await;
    }
    assert_problem(kommo.get("/api/v4/contacts?query=1", None).await, 401).await;
    let all: Value = kommo.get("/sandbox/kommo/writes", None).await.json().await.unwrap();
    assert_eq!(all, json!([]), "unauthenticated writes belong to no account");
}
