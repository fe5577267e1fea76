//! The Kommo stand-in's CRM over real HTTP, as a telephony client meets it: contacts, leads, complex leads,
//! calls with Kommo's entity selection and both "no entity" answers, notes, tasks and unsorted sip items.
//! Every request body sent and every answer received is checked against the vendor OpenAPI description
//! (`support::Api::send`) wherever it covers the endpoint.

mod support;

use serde_json::{Value, json};
use support::{Api, Harness, VENDOR_DISAGREES, validation_errors};

const MARIA: u64 = 1; // offset of the first manager in `default_users`: account_id * 100 + 1

fn manager(account: u64) -> u64 {
    account * 100 + MARIA
}

fn ids(list: &Value, key: &str) -> Vec<u64> {
    list["_embedded"][key].as_array().unwrap().iter().map(|item| item["id"].as_u64().unwrap()).collect()
}

fn call(phone: &str, uniq: &str, direction: &str) -> Value {
    json!({ "direction": direction, "duration": 42, "source": "kommo-voip", "phone": phone, "uniq": uniq,
            "link": "https://records.example/1.mp3", "call_status": 4, "call_result": "Talked",
            "request_id": uniq })
}

fn sip(uniq: &str, from: &str) -> Value {
    json!({
        "source_uid": "line-1",
        "source_name": "Main line",
        "request_id": uniq,
        "metadata": { "uniq": uniq, "from": from, "phone": "+551130000000", "called_at": 1_764_000_000,
                      "duration": 0, "service_code": "kommo-voip", "is_call_event_needed": true },
    })
}

#[tokio::test]
async fn contacts_are_created_searched_by_partial_digits_and_listed_with_leads() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1001).await;
    let body = json!([{
        "name": "Ana Souza", "responsible_user_id": manager(1001), "request_id": "c-1",
        "custom_fields_values": [{ "field_code": "PHONE", "values": [{ "value": "+55 11 98888-7777", "enum_code": "MOB" }] }],
    }, { "first_name": "Bea", "last_name": "Lima" }]);
    let (status, created) = api.post("/api/v4/contacts", body).await;
    assert_eq!(status, 200);
    let contacts = created["_embedded"]["contacts"].as_array().unwrap();
    assert_eq!(contacts[0]["request_id"], "c-1");
    assert_eq!(contacts[1]["request_id"], "1");
    let ana = contacts[0]["id"].as_u64().unwrap();
    assert_eq!(contacts[0]["_links"]["self"]["href"], format!("{}/api/v4/contacts/{ana}", kommo.kommo));
    let (_, lead_ids) = api.seed("Ana's company", &[], &[]).await;
    assert!(lead_ids.is_empty());
    let (status, lead) =
        api.post("/api/v4/leads", json!([{ "name": "Deal", "_embedded": { "contacts": [{ "id": ana }] } }])).await;
    assert_eq!(status, 200);
    let lead_id = ids(&lead, "leads")[0];

    let (status, found) = api.get("/api/v4/contacts?query=988887777&with=leads").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&found, "contacts"), [ana]);
    let contact = &found["_embedded"]["contacts"][0];
    assert_eq!(contact["name"], "Ana Souza");
    assert_eq!(contact["responsible_user_id"], manager(1001));
    let phone = &contact["custom_fields_values"][0];
    assert_eq!((phone["field_code"].as_str(), phone["field_id"].is_u64()), (Some("PHONE"), true));
    assert_eq!(phone["values"][0], json!({ "value": "+55 11 98888-7777", "enum_code": "MOB" }));
    assert_eq!(contact["_embedded"]["leads"][0]["id"], lead_id);
    assert_eq!(contact["_embedded"]["companies"], json!([]));
    // Without with=leads there are no leads; an unknown number is 204.
    let (_, plain) = api.get("/api/v4/contacts?query=988887777").await;
    assert!(plain["_embedded"]["contacts"][0]["_embedded"]["leads"].is_null());
    assert_eq!(api.get("/api/v4/contacts?query=5550000").await, (204, Value::Null));
    let (status, one) = api.get(&format!("/api/v4/contacts/{ana}?with=leads")).await;
    assert_eq!((status, one["id"].as_u64()), (200, Some(ana)));
    let (_, all) = api.get("/api/v4/contacts?limit=2").await;
    assert_eq!(ids(&all, "contacts").len(), 2);
    assert!(all["_links"]["next"]["href"].as_str().unwrap().ends_with("page=2&limit=2"));
}

#[tokio::test]
async fn another_accounts_entities_are_unknown_here() {
    let kommo = Harness::start().await;
    let mine = Api::connect(&kommo, 1002).await;
    let theirs = Api::connect(&kommo, 1003).await;
    let (contact, leads) = theirs.seed("Theirs", &["+1 555 010 0001"], &[("Their deal", 0)]).await;
    let lead = leads[0];
    assert_eq!(mine.get("/api/v4/contacts?query=5550100001").await.0, 204);
    assert_eq!(mine.get(&format!("/api/v4/leads?filter[id][]={lead}")).await.0, 204);
    assert_eq!(mine.get(&format!("/api/v4/leads/{lead}")).await.0, 404);
    assert_eq!(mine.get(&format!("/api/v4/contacts/{contact}")).await.0, 404);
    assert_eq!(mine.get(&format!("/api/v4/leads/{lead}/notes")).await.0, 404);
    let note = json!([{ "entity_id": lead, "note_type": "common", "params": { "text": "hi" } }]);
    assert_eq!(mine.post("/api/v4/leads/notes", note).await.0, 404);
    let task =
        json!([{ "text": "Call back", "complete_till": 1_900_000_000, "entity_type": "leads", "entity_id": lead }]);
    assert_eq!(mine.post("/api/v4/tasks", task).await.0, 404);
    let linked = json!([{ "name": "Mine", "_embedded": { "contacts": [{ "id": contact }] } }]);
    let (status, problem) = mine.post_refused("/api/v4/leads", linked).await;
    assert_eq!(status, 404, "{problem}");
    // A call to their number finds nothing here.
    let (status, answer) = mine.post("/api/v4/calls", json!([call("+1 555 010 0001", "x-1", "inbound")])).await;
    assert_eq!((status, answer["_total_items"].as_u64()), (200, Some(0)));
    // And nothing of this was written to either account.
    assert_eq!(theirs.get(&format!("/api/v4/leads/{lead}/notes")).await.0, 204);
    assert!(mine.entities().await["notes"].as_object().unwrap().is_empty());
}

#[tokio::test]
async fn leads_are_read_by_ids_with_status_and_closed_at() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1004).await;
    let (contact, leads) = api.seed("Carla", &["+55 21 3333-4444"], &[("Open", 0), ("Won", 142), ("Lost", 143)]).await;
    let path = format!(
        "/api/v4/leads?filter[id][]={}&filter[id][]={}&filter[id][]={}&with=contacts",
        leads[0], leads[1], leads[2]
    );
    let (status, list) = api.get(&path).await;
    assert_eq!(status, 200);
    let list = list["_embedded"]["leads"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!((list[0]["status_id"].as_u64(), list[0]["closed_at"].is_null()), (Some(8_100_002), true));
    assert_eq!(list[0]["pipeline_id"], 8_000_001);
    assert_eq!((list[1]["status_id"].as_u64(), list[1]["closed_at"].is_i64()), (Some(142), true));
    assert_eq!((list[2]["status_id"].as_u64(), list[2]["closed_at"].is_i64()), (Some(143), true));
    assert_eq!(list[0]["_embedded"]["contacts"][0], json!({ "id": contact, "is_main": true }));
    let (status, created) = api
        .post(
            "/api/v4/leads",
            json!([{ "name": "New", "status_id": 142, "responsible_user_id": manager(1004), "request_id": "l-1" }]),
        )
        .await;
    assert_eq!((status, created["_embedded"]["leads"][0]["request_id"].as_str()), (200, Some("l-1")));
    let (_, shown) = api.get(&format!("/api/v4/leads/{}", ids(&created, "leads")[0])).await;
    assert_eq!((shown["responsible_user_id"].as_u64(), shown["closed_at"].is_i64()), (Some(manager(1004)), true));
    assert_eq!(api.get("/api/v4/leads?filter[id][]=1").await.0, 204);
}

#[tokio::test]
async fn complex_leads_come_with_their_contact_and_kommos_bare_array() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1005).await;
    let body = json!([{
        "name": "Inbound call", "request_id": "cx-1",
        "_embedded": {
            "contacts": [{ "name": "Caller", "custom_fields_values": [{ "field_code": "PHONE", "values": [{ "value": "+5511977776666" }] }] }],
            "companies": [{ "name": "Caller Ltd" }],
        },
    }, { "name": "No contact" }]);
    let (status, answer) = api.post("/api/v4/leads/complex", body).await;
    assert_eq!(status, 200);
    let items = answer.as_array().unwrap();
    assert_eq!(items[0]["request_id"], json!(["cx-1"]));
    assert_eq!(items[1]["request_id"], json!(["1"]));
    assert_eq!((items[0]["merged"].as_bool(), items[1]["contact_id"].is_null()), (Some(false), true));
    let (lead, contact) = (items[0]["id"].as_u64().unwrap(), items[0]["contact_id"].as_u64().unwrap());
    assert!(items[0]["company_id"].is_u64());
    let (_, found) = api.get("/api/v4/contacts?query=977776666&with=leads").await;
    assert_eq!(ids(&found, "contacts"), [contact]);
    assert_eq!(found["_embedded"]["contacts"][0]["_embedded"]["leads"][0]["id"], lead);
    let company = items[0]["company_id"].as_u64().unwrap();
    assert_eq!(found["_embedded"]["contacts"][0]["_embedded"]["companies"][0]["id"], company);

    // Two contacts on one lead, and more than 50 leads, are refused; nothing is written.
    let two = json!([{ "name": "x", "_embedded": { "contacts": [{ "name": "a" }, { "name": "b" }] } }]);
    let (status, problem) = api.post_refused("/api/v4/leads/complex", two).await;
    assert_eq!(status, 400);
    assert_eq!(
        validation_errors(&problem),
        [("0".to_owned(), vec![("CountExceeded".to_owned(), "_embedded.contacts".to_owned())])]
    );
    let many: Vec<Value> = (0..51).map(|i| json!({ "name": format!("lead {i}") })).collect();
    assert_eq!(api.post_refused("/api/v4/leads/complex", Value::Array(many)).await.0, 400);
    assert_eq!(api.entities().await["leads"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn a_call_goes_on_the_one_active_lead_else_on_the_contact() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1006).await;
    let (one_active, one_leads) = api.seed("One active", &["+55 11 90000-0001"], &[("Open", 0), ("Won", 142)]).await;
    let (two_active, _) = api.seed("Two active", &["+55 11 90000-0002"], &[("A", 0), ("B", 8_100_003)]).await;
    let (no_leads, _) = api.seed("No leads", &["+55 11 90000-0003"], &[]).await;
    let calls = json!([
        call("11900000001", "u-1", "inbound"),
        call("+55 (11) 90000-0002", "u-2", "outbound"),
        call("5511900000003", "u-3", "inbound"),
    ]);
    let (status, answer) = api.post("/api/v4/calls", calls).await;
    assert_eq!(status, 200);
    assert_eq!(answer["_total_items"], 3);
    assert_eq!(answer["errors"], json!([]));
    let placed: Vec<(String, String, u64)> = answer["_embedded"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| {
            assert_eq!(call["account_id"], 1006);
            assert_eq!(call["_embedded"]["entity"]["id"], call["entity_id"]);
            (
                call["request_id"].as_str().unwrap().to_owned(),
                call["entity_type"].as_str().unwrap().to_owned(),
                call["entity_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            ("u-1".to_owned(), "leads".to_owned(), one_leads[0]),
            ("u-2".to_owned(), "contacts".to_owned(), two_active),
            ("u-3".to_owned(), "contacts".to_owned(), no_leads),
        ]
    );
    // Each call is a call note on its entity, with the call's params; created_by 0 (no user given).
    let path = format!(
        "/api/v4/leads/notes?filter[note_type][]=call_in&filter[note_type][]=call_out&filter[entity_id][]={}",
        one_leads[0]
    );
    let (status, notes) = api.get(&path).await;
    assert_eq!(status, 200);
    let note = &notes["_embedded"]["notes"][0];
    assert_eq!((note["note_type"].as_str(), note["entity_id"].as_u64()), (Some("call_in"), Some(one_leads[0])));
    assert_eq!(note["created_by"], 0);
    assert_eq!(
        note["params"],
        json!({ "uniq": "u-1", "duration": 42, "source": "kommo-voip", "phone": "11900000001",
                "link": "https://records.example/1.mp3", "call_status": 4, "call_result": "Talked" })
    );
    let (_, on_contact) = api.get(&format!("/api/v4/contacts/{two_active}/notes?filter[note_type]=call_out")).await;
    assert_eq!(on_contact["_embedded"]["notes"][0]["params"]["uniq"], "u-2");
    assert_eq!(api.get(&format!("/api/v4/contacts/{one_active}/notes")).await.0, 204);
    assert_eq!(kommo.stats().await["duplicate_uniqs"], json!([]));
}

#[tokio::test]
async fn a_call_without_an_entity_is_an_error_item_by_default() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1007).await;
    let (contact, _) = api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    let calls = json!([call("+55 11 92222-0000", "n-1", "inbound"), call("+55 11 91111-0000", "n-2", "inbound")]);
    let (status, answer) = api.post("/api/v4/calls", calls).await;
    assert_eq!(status, 200);
    assert_eq!(answer["_total_items"], 1);
    assert_eq!(answer["_embedded"]["calls"][0]["entity_id"], contact);
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0]["request_id"].as_str(), errors[0]["detail"].as_str()),
        (Some("n-1"), Some("Entity not found"))
    );
    assert!(errors[0]["status"].is_u64());
}

#[tokio::test]
async fn a_call_without_an_entity_is_a_400_in_problem_mode_and_nothing_is_written() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1008).await;
    api.calls_mode("problem_400").await;
    let (contact, _) = api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    let mut unknown = call("+55 11 92222-0000", "p-1", "inbound");
    unknown.as_object_mut().unwrap().remove("request_id");
    let calls = json!([call("+55 11 91111-0000", "p-0", "inbound"), unknown]);
    let (status, problem) = api.post("/api/v4/calls", calls).await;
    assert_eq!(status, 400);
    assert_eq!(validation_errors(&problem), [("1".to_owned(), vec![("NotFound".to_owned(), "phone".to_owned())])]);
    assert_eq!(api.get(&format!("/api/v4/contacts/{contact}/notes")).await.0, 204);
    // Back to the default answer.
    api.calls_mode("errors_200").await;
    let (status, answer) = api.post("/api/v4/calls", json!([call("+55 11 92222-0000", "p-2", "inbound")])).await;
    assert_eq!((status, answer["errors"][0]["request_id"].as_str()), (200, Some("p-2")));
    let bad = kommo.post("/sandbox/kommo/calls-mode", json!({ "account_id": 1008, "mode": "silent" })).await;
    assert!(bad.status().is_client_error());
}

#[tokio::test]
async fn calls_missing_required_fields_or_of_the_wrong_type_are_refused_per_item() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1009).await;
    api.seed("Known", &["+55 11 91111-0000"], &[]).await;
    let calls = json!([
        call("+55 11 91111-0000", "ok-1", "inbound"),
        { "request_id": "bad-1", "duration": "42", "source": "kommo-voip", "phone": "+55 11 91111-0000" },
        { "direction": "sideways", "duration": 1, "source": "", "phone": 5511 },
        { "direction": "inbound", "duration": -3, "source": "s", "phone": "1", "call_status": 9 },
    ]);
    let (status, problem) = api.post_refused("/api/v4/calls", calls).await;
    assert_eq!(status, 400);
    assert_eq!(problem["detail"], "Request validation failed");
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(c, p)| (c.to_string(), p.to_string())).collect::<Vec<_>>();
    assert_eq!(
        validation_errors(&problem),
        [
            ("bad-1".to_owned(), pairs(&[("NotBlank", "direction"), ("InvalidType", "duration")])),
            (
                "2".to_owned(),
                pairs(&[("NotSupportedChoice", "direction"), ("NotBlank", "source"), ("InvalidType", "phone")])
            ),
            ("3".to_owned(), pairs(&[("NotSupportedChoice", "duration"), ("NotSupportedChoice", "call_status")])),
        ]
    );
    assert!(api.entities().await["notes"].as_object().unwrap().is_empty(), "a refused batch writes nothing");
    let too_many: Vec<Value> = (0..251).map(|i| call("+55 11 91111-0000", &format!("m-{i}"), "inbound")).collect();
    let (status, problem) = api.post_refused("/api/v4/calls", Value::Array(too_many)).await;
    assert_eq!(status, 400, "{problem}");
    let (status, _) = api.post_refused("/api/v4/calls", json!({ "direction": "inbound" })).await;
    assert_eq!(status, 400);
    let wrong_user = json!([{ "direction": "inbound", "duration": 1, "source": "s", "phone": "+55 11 91111-0000", "responsible_user_id": 1_009_999 }]);
    let (_, problem) = api.post_refused("/api/v4/calls", wrong_user).await;
    assert_eq!(validation_errors(&problem)[0].1, pairs(&[("NotSupportedChoice", "responsible_user_id")]));
}

#[tokio::test]
async fn notes_are_written_on_the_entity_and_listed_by_type() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1010).await;
    let (contact, leads) = api.seed("Dora", &["+55 31 3000-0000"], &[("Open", 0)]).await;
    let lead = leads[0];
    let body = json!([
        { "entity_id": lead, "note_type": "common", "params": { "text": "Called from +55 31 3000-0000" }, "request_id": "n-a" },
        { "entity_id": lead, "note_type": "call_out", "params": { "uniq": "cn-1", "duration": 5, "source": "kommo-voip",
          "phone": "+55 31 3000-0000", "link": "https://records.example/2.mp3", "call_status": 6 } },
    ]);
    let (status, created) = api.post("/api/v4/leads/notes", body).await;
    assert_eq!(status, 200);
    let notes = created["_embedded"]["notes"].as_array().unwrap();
    assert_eq!((notes[0]["request_id"].as_str(), notes[0]["entity_id"].as_u64()), (Some("n-a"), Some(lead)));
    assert_eq!(notes[1]["request_id"], "1");
    let (_, common) =
        api.get(&format!("/api/v4/leads/notes?filter[note_type][]=common&filter[entity_id][]={lead}")).await;
    assert_eq!(common["_embedded"]["notes"][0]["params"]["text"], "Called from +55 31 3000-0000");
    let (_, by_path) = api.get(&format!("/api/v4/leads/{lead}/notes")).await;
    assert_eq!(ids(&by_path, "notes").len(), 2);

    let (status, on_contact) = api
        .post(
            &format!("/api/v4/contacts/{contact}/notes"),
            json!([{ "note_type": "common", "params": { "text": "Hi" } }]),
        )
        .await;
    assert_eq!((status, on_contact["_embedded"]["notes"][0]["entity_id"].as_u64()), (200, Some(contact)));
    assert_eq!(
        api.get(&format!("/api/v4/contacts/notes?filter[entity_id][]={contact}&filter[note_type][]=call_in")).await.0,
        204
    );

    // Refusals: a common note without text, a call note without uniq, an unknown note type, no entity_id.
    let bad = json!([
        { "entity_id": lead, "note_type": "common", "params": {} },
        { "entity_id": lead, "note_type": "call_in", "params": { "duration": 1, "source": "s", "phone": "1" } },
        { "entity_id": lead, "note_type": "fax" },
        { "note_type": "common", "params": { "text": "x" } },
    ]);
    let (status, problem) = api.post_refused("/api/v4/leads/notes", bad).await;
    assert_eq!(status, 400);
    let refused: Vec<(String, String)> = validation_errors(&problem)
        .into_iter()
        .map(|(id, errors)| (id, errors.into_iter().map(|(_, path)| path).collect::<Vec<_>>().join(",")))
        .collect();
    assert_eq!(
        refused,
        [
            ("0".into(), "params.text".into()),
            ("1".into(), "params.uniq".into()),
            ("2".into(), "note_type".into()),
            ("3".into(), "entity_id".into())
        ]
    );
    assert_eq!(
        api.post("/api/v4/leads/99999999/notes", json!([{ "note_type": "common", "params": { "text": "x" } }])).await.0,
        404
    );
    assert_eq!(api.get("/api/v4/widgets/notes").await.0, 404);
    assert_eq!(api.get("/api/v4/customers/1/notes").await.0, 404);
}

#[tokio::test]
async fn tasks_need_text_and_a_deadline_and_are_listed_by_entity() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1011).await;
    let (_, leads) = api.seed("Eva", &["+55 41 3000-0000"], &[("Open", 0)]).await;
    let lead = leads[0];
    let body = json!([{ "text": "Call back: missed call", "complete_till": 1_900_000_000, "task_type_id": 1,
                        "entity_type": "leads", "entity_id": lead, "responsible_user_id": manager(1011), "request_id": "t-1" }]);
    let (status, created) = api.post("/api/v4/tasks", body).await;
    assert_eq!((status, created["_embedded"]["tasks"][0]["request_id"].as_str()), (200, Some("t-1")));
    let (status, list) = api.get(&format!("/api/v4/tasks?filter[entity_type]=leads&filter[entity_id][]={lead}")).await;
    assert_eq!(status, 200);
    let task = &list["_embedded"]["tasks"][0];
    assert_eq!(task["text"], "Call back: missed call");
    assert_eq!((task["complete_till"].as_i64(), task["entity_id"].as_u64()), (Some(1_900_000_000), Some(lead)));
    assert_eq!(
        (task["responsible_user_id"].as_u64(), task["is_completed"].as_bool()),
        (Some(manager(1011)), Some(false))
    );
    let (_, shown) = api.get(&format!("/api/v4/leads/{lead}")).await;
    assert_eq!(shown["closest_task_at"], 1_900_000_000);
    assert_eq!(api.get("/api/v4/tasks?filter[entity_type]=contacts").await.0, 204);

    let (status, problem) = api
        .post_refused("/api/v4/tasks", json!([{ "text": "x", "complete_till": 1 }, { "text": "No deadline", "request_id": "t-2" }, { "complete_till": "soon" }]))
        .await;
    assert_eq!(status, 400);
    let refused = validation_errors(&problem);
    assert_eq!(refused[0], ("t-2".to_owned(), vec![("NotBlank".to_owned(), "complete_till".to_owned())]));
    assert_eq!(refused[1].0, "2");
    assert_eq!(refused[1].1.iter().map(|(_, path)| path.as_str()).collect::<Vec<_>>(), ["text", "complete_till"]);
    let (_, listed) = api.get("/api/v4/tasks").await;
    assert_eq!(ids(&listed, "tasks").len(), 1, "the refused batch wrote nothing");
    assert_eq!(
        api.post_refused("/api/v4/tasks", json!([{ "text": "x", "complete_till": 1, "entity_type": "leads" }])).await.0,
        400
    );
}

#[tokio::test]
async fn an_unsorted_sip_item_makes_a_lead_and_contact_and_is_accepted_once() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1012).await;
    let (status, created) = api.post("/api/v4/leads/unsorted/sip", json!([sip("s-1", "+55 51 98765-4321")])).await;
    assert_eq!(status, 200);
    let item = &created["_embedded"]["unsorted"][0];
    assert_eq!((item["request_id"].as_str(), item["account_id"].as_u64()), (Some("s-1"), Some(1012)));
    let uid = item["uid"].as_str().unwrap().to_owned();
    let lead = item["_embedded"]["leads"][0]["id"].as_u64().unwrap();
    let contact = item["_embedded"]["contacts"][0]["id"].as_u64().unwrap();

    let (status, list) = api.get("/api/v4/leads/unsorted?filter[category][]=sip&page=1&limit=50").await;
    assert_eq!(status, 200);
    let listed = &list["_embedded"]["unsorted"][0];
    assert_eq!((listed["uid"].as_str(), listed["category"].as_str()), (Some(uid.as_str()), Some("sip")));
    assert_eq!(listed["metadata"]["uniq"], "s-1");
    assert_eq!(listed["_embedded"]["leads"][0]["id"], lead);
    assert_eq!(api.get("/api/v4/leads/unsorted?filter[category][]=forms").await.0, 204);
    // The caller is a contact now, the lead waits in incoming leads with the call on it.
    let (_, found) = api.get("/api/v4/contacts?query=987654321&with=leads").await;
    assert_eq!(ids(&found, "contacts"), [contact]);
    assert_eq!(found["_embedded"]["contacts"][0]["is_unsorted"], true);
    let (_, shown) = api.get(&format!("/api/v4/leads/{lead}")).await;
    assert_eq!(shown["status_id"], 8_100_001);
    let (_, notes) = api.get(&format!("/api/v4/leads/{lead}/notes?filter[note_type][]=call_in")).await;
    assert_eq!(notes["_embedded"]["notes"][0]["params"]["uniq"], "s-1");

    let accept = format!("/api/v4/leads/unsorted/{uid}/accept");
    let (status, accepted) = api.post(&accept, json!({ "user_id": manager(1012), "status_id": 8_100_003 })).await;
    assert_eq!(status, 200);
    assert_eq!(accepted["uid"], uid.as_str());
    assert_eq!(
        (accepted["_embedded"]["leads"][0]["id"].as_u64(), accepted["_embedded"]["contacts"][0]["id"].as_u64()),
        (Some(lead), Some(contact))
    );
    let (_, shown) = api.get(&format!("/api/v4/leads/{lead}")).await;
    assert_eq!(
        (shown["status_id"].as_u64(), shown["responsible_user_id"].as_u64()),
        (Some(8_100_003), Some(manager(1012)))
    );
    assert_eq!(api.get("/api/v4/leads/unsorted").await.0, 204);
    assert_eq!(api.get(&format!("/api/v4/leads/unsorted/{uid}")).await.0, 404);

    let (status, again) = api.post(&accept, json!({})).await;
    assert_eq!(status, 400, "{again}");
    assert!(again["detail"].as_str().unwrap().contains("already accepted"));
    assert_eq!(api.post("/api/v4/leads/unsorted/0123abcd/accept", json!({})).await.0, 404);
    let other = Api::connect(&kommo, 1013).await;
    let (_, theirs) = other.post("/api/v4/leads/unsorted/sip", json!([sip("s-9", "+55 51 90000-0000")])).await;
    let their_uid = theirs["_embedded"]["unsorted"][0]["uid"].as_str().unwrap();
    assert_eq!(api.post(&format!("/api/v4/leads/unsorted/{their_uid}/accept"), json!({})).await.0, 404);
    assert_eq!(api.get(&format!("/api/v4/leads/unsorted/{their_uid}")).await.0, 404);
    let (status, problem) = other
        .post_refused(&format!("/api/v4/leads/unsorted/{their_uid}/accept"), json!({ "user_id": manager(1012) }))
        .await;
    assert_eq!(
        validation_errors(&problem),
        [("0".to_owned(), vec![("NotSupportedChoice".to_owned(), "user_id".to_owned())])]
    );
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unsorted_sip_items_need_source_and_call_metadata() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1014).await;
    let mut no_uniq = sip("s-2", "+55 51 90000-1111");
    no_uniq["metadata"].as_object_mut().unwrap().remove("uniq");
    let body = json!([{ "request_id": "bare" }, no_uniq, sip("s-3", "+55 51 90000-2222")]);
    let (status, problem) = api.post_refused("/api/v4/leads/unsorted/sip", body).await;
    assert_eq!(status, 400);
    let refused = validation_errors(&problem);
    let paths = |index: usize| refused[index].1.iter().map(|(_, path)| path.as_str()).collect::<Vec<_>>();
    assert_eq!(refused[0].0, "bare");
    assert_eq!(paths(0), ["source_uid", "source_name", "metadata"]);
    assert_eq!(refused[1].0, "s-2");
    assert_eq!(paths(1), ["metadata.uniq"]);
    assert_eq!(refused.len(), 2);
    assert_eq!(api.get("/api/v4/leads/unsorted").await.0, 204, "nothing of the batch was written");
}

#[tokio::test]
async fn the_oracle_covers_most_endpoints_and_these_not() {
    let oracle = sandbox::oracle::Oracle::load();
    let endpoints = [
        ("GET", "/api/v4/contacts"),
        ("GET", "/api/v4/contacts/1"),
        ("POST", "/api/v4/contacts"),
        ("GET", "/api/v4/leads"),
        ("GET", "/api/v4/leads/1"),
        ("POST", "/api/v4/leads"),
        ("POST", "/api/v4/leads/complex"),
        ("POST", "/api/v4/calls"),
        ("GET", "/api/v4/leads/notes"),
        ("POST", "/api/v4/leads/notes"),
        ("GET", "/api/v4/contacts/1/notes"),
        ("POST", "/api/v4/contacts/1/notes"),
        ("GET", "/api/v4/tasks"),
        ("POST", "/api/v4/tasks"),
        ("GET", "/api/v4/leads/unsorted"),
        ("GET", "/api/v4/leads/unsorted/0123abcd"),
        ("POST", "/api/v4/leads/unsorted/sip"),
        ("POST", "/api/v4/leads/unsorted/0123abcd/accept"),
        ("GET", "/api/v4/account"),
        ("GET", "/api/v4/users"),
    ];
    let uncovered: Vec<String> = endpoints
        .iter()
        .filter(|(method, path)| !oracle.covers(method, path))
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    println!("the vendor description does not cover: {uncovered:#?}");
    for (method, path, why) in VENDOR_DISAGREES {
        println!("the vendor description disagrees on {method} {path}: {why}");
    }
    assert_eq!(
        uncovered,
        ["GET /api/v4/leads/unsorted", "GET /api/v4/leads/unsorted/0123abcd", "POST /api/v4/leads/unsorted/sip"]
    );
}

#[tokio::test]
async fn the_pipeline_lists_every_stage_a_lead_can_be_in() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1101).await;
    let (status, list) = api.get("/api/v4/leads/pipelines").await;
    assert_eq!((status, list["_total_items"].as_u64()), (200, Some(1)));
    let pipeline = &list["_embedded"]["pipelines"][0];
    assert_eq!((pipeline["id"].as_u64(), pipeline["name"].as_str()), (Some(8_000_001), Some("Sales pipeline")));
    assert_eq!((pipeline["is_main"].as_bool(), pipeline["account_id"].as_u64()), (Some(true), Some(1101)));
    let statuses = pipeline["_embedded"]["statuses"].as_array().unwrap();
    let stages: Vec<(u64, &str, u64)> = statuses
        .iter()
        .map(|stage| {
            assert_eq!(stage["pipeline_id"], 8_000_001);
            assert!(stage["color"].as_str().unwrap().starts_with('#') && stage["sort"].is_u64(), "{stage}");
            (stage["id"].as_u64().unwrap(), stage["name"].as_str().unwrap(), stage["type"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        stages,
        [
            (8_100_001, "Incoming leads", 1),
            (8_100_002, "Initial contact", 0),
            (8_100_003, "Qualified", 0),
            (8_100_004, "Proposal", 0),
            (142, "Closed - won", 0),
            (143, "Closed - lost", 0),
        ]
    );
    // Every stage the stand-in puts a lead in is one of them: new, accepted, unsorted, won, lost.
    let (_, leads) = api.seed("Stages", &["+55 11 95555-0000"], &[("New", 0), ("Won", 142), ("Lost", 143)]).await;
    api.post("/api/v4/leads/unsorted/sip", json!([sip("stage-1", "+5511955550001")])).await;
    let stored = api.entities().await;
    for lead in stored["leads"].as_object().unwrap().values() {
        let status_id = lead["status_id"].as_u64().unwrap();
        assert!(stages.iter().any(|(id, _, _)| *id == status_id), "lead in an unknown stage: {lead}");
    }
    assert_eq!(leads.len(), 3);
    let (status, one) = api.get("/api/v4/leads/pipelines/8000001").await;
    assert_eq!((status, one["_embedded"]["statuses"].as_array().map(Vec::len)), (200, Some(6)));
    assert_eq!(api.get("/api/v4/leads/pipelines/1").await.0, 404);
    // A seed refuses a stage the pipeline does not have, and the incoming leads stage.
    for status_id in [8_100_009, 8_100_001] {
        let body = json!({ "account_id": 1101, "name": "x", "leads": [{ "status_id": status_id }] });
        assert_eq!(kommo.post("/sandbox/kommo/contacts", body).await.status(), 400, "{status_id}");
    }
}

#[tokio::test]
async fn companies_are_searched_by_phone_with_their_leads_and_contacts_name_them() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1102).await;
    let (acme, acme_leads) =
        api.seed_company("Acme Ltda", &["+55 11 3456-7800"], &[("Office phones", 8_100_004, 4_800)]).await;
    let body = json!({
        "account_id": 1102, "name": "Bruno Costa", "phones": [{ "value": "+55 11 97777-1111", "enum_code": "MOB" }],
        "responsible_user_id": manager(1102), "company_id": acme,
        "leads": [{ "name": "Support plan", "price": 900, "status_id": 8_100_003 }],
    });
    let seeded: Value = kommo.post("/sandbox/kommo/contacts", body).await.json().await.unwrap();
    let (bruno, bruno_lead) = (seeded["contact_id"].as_u64().unwrap(), seeded["lead_ids"][0].as_u64().unwrap());

    let (status, found) = api.get("/api/v4/companies?query=1134567800&with=leads,contacts").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&found, "companies"), [acme]);
    let company = &found["_embedded"]["companies"][0];
    assert_eq!(
        (company["name"].as_str(), company["responsible_user_id"].as_u64()),
        (Some("Acme Ltda"), Some(5_500_001))
    );
    let phone = &company["custom_fields_values"][0];
    assert_eq!((phone["field_code"].as_str(), phone["field_id"].is_u64()), (Some("PHONE"), true));
    assert_eq!(phone["values"][0], json!({ "value": "+55 11 3456-7800", "enum_code": "WORK" }));
    let embedded_ids = |key: &str| -> Vec<u64> {
        company["_embedded"][key].as_array().unwrap().iter().map(|item| item["id"].as_u64().unwrap()).collect()
    };
    assert_eq!(embedded_ids("leads"), acme_leads);
    assert_eq!(embedded_ids("contacts"), [bruno]);
    // Without with=, no leads; by name too; one by id; nothing found is 204 with no body.
    let (_, plain) = api.get("/api/v4/companies?query=3456-7800").await;
    assert!(plain["_embedded"]["companies"][0]["_embedded"]["leads"].is_null());
    assert_eq!(ids(&api.get("/api/v4/companies?query=acme").await.1, "companies"), [acme]);
    let (status, one) = api.get(&format!("/api/v4/companies/{acme}?with=leads")).await;
    assert_eq!((status, one["_embedded"]["leads"][0]["id"].as_u64()), (200, Some(acme_leads[0])));
    assert_eq!(api.get("/api/v4/companies?query=5550000").await, (204, Value::Null));
    assert_eq!(api.get(&format!("/api/v4/companies/{bruno}")).await.0, 404);
    // The company's number is no contact's.
    assert_eq!(api.get("/api/v4/contacts?query=1134567800").await, (204, Value::Null));

    // The contact names its company; its leads read with what a popup shows.
    let (_, contacts) = api.get("/api/v4/contacts?query=977771111&with=leads").await;
    let contact = &contacts["_embedded"]["contacts"][0];
    assert_eq!((contact["id"].as_u64(), contact["name"].as_str()), (Some(bruno), Some("Bruno Costa")));
    assert_eq!(contact["_embedded"]["companies"][0]["id"], acme);
    assert_eq!(contact["_embedded"]["leads"][0]["id"], bruno_lead);
    // Leads list in id order (Acme's lead was seeded first).
    let path = format!("/api/v4/leads?filter[id][]={bruno_lead}&filter[id][]={}", acme_leads[0]);
    let (_, leads) = api.get(&path).await;
    let shown: Vec<(u64, &str, i64, u64, u64, u64)> = leads["_embedded"]["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lead| {
            (
                lead["id"].as_u64().unwrap(),
                lead["name"].as_str().unwrap(),
                lead["price"].as_i64().unwrap(),
                lead["status_id"].as_u64().unwrap(),
                lead["pipeline_id"].as_u64().unwrap(),
                lead["responsible_user_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (acme_leads[0], "Office phones", 4_800, 8_100_004, 8_000_001, 5_500_001),
            (bruno_lead, "Support plan", 900, 8_100_003, 8_000_001, manager(1102)),
        ]
    );
    // Seeds are checked: a company of another account, an unknown user.
    let other = json!({ "account_id": 1102, "name": "y", "company_id": 1 });
    assert_eq!(kommo.post("/sandbox/kommo/contacts", other).await.status(), 400);
    let stranger = json!({ "account_id": 1102, "name": "y", "responsible_user_id": 1 });
    assert_eq!(kommo.post("/sandbox/kommo/companies", stranger).await.status(), 400);
    let wrong_code = json!({ "account_id": 1102, "name": "y", "phones": [{ "value": "1", "enum_code": "CELL" }] });
    assert_eq!(kommo.post("/sandbox/kommo/companies", wrong_code).await.status(), 400);
}

#[tokio::test]
async fn a_call_to_a_company_s_number_goes_on_its_one_active_lead_else_on_the_company() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1103).await;
    let (lone, _) = api.seed_company("Lone Ltda", &["+55 11 3000-1000"], &[]).await;
    let (busy, busy_leads) = api.seed_company("Busy SA", &["+55 11 3000-2000"], &[("Deal", 0, 100)]).await;
    let calls = json!([call("+551130001000", "co-1", "inbound"), call("1130002000", "co-2", "inbound")]);
    let (status, answer) = api.post("/api/v4/calls", calls).await;
    assert_eq!((status, answer["errors"].clone()), (200, json!([])));
    let placed: Vec<(&str, u64)> = answer["_embedded"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| (call["entity_type"].as_str().unwrap(), call["entity_id"].as_u64().unwrap()))
        .collect();
    assert_eq!(placed, [("companies", lone), ("leads", busy_leads[0])]);
    let (status, notes) = api.get(&format!("/api/v4/companies/{lone}/notes")).await;
    assert_eq!((status, notes["_embedded"]["notes"][0]["params"]["uniq"].as_str()), (200, Some("co-1")));
    assert!(busy > lone);
}

#[tokio::test]
async fn a_call_notification_is_accepted_checked_and_kept() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1104).await;
    let (contact, leads) = api.seed("Known", &["+55 11 98765-4321"], &[("Open", 0)]).await;
    let (company, _) = api.seed_company("Acme", &["+55 11 3456-7800"], &[]).await;
    let body = json!({ "add": [
        { "type": "phone_call", "phone_number": "+5511987654321", "users": [manager(1104)] },
        { "type": "phone_call", "phone_number": "(11) 3456-7800" },
        { "type": "phone_call", "phone_number": "+1 555 000 0000", "users": [] },
    ]});
    let (status, answer) = api.post("/api/v2/events", body).await;
    assert_eq!((status, answer), (202, Value::Null), "202 with no body");
    let kept = api.notifications().await;
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0]["type"], "phone_call");
    assert_eq!(kept[0]["phone_number"], "+5511987654321");
    assert_eq!(
        (kept[0]["users"].clone(), kept[0]["notified"].clone()),
        (json!([manager(1104)]), json!([manager(1104)]))
    );
    // The one active lead shows; a company with the number; an unknown number shows nothing known.
    assert_eq!(kept[0]["entity"], json!({ "entity_type": "leads", "entity_id": leads[0] }));
    assert_eq!(kept[1]["entity"], json!({ "entity_type": "companies", "entity_id": company }));
    assert!(kept[2]["entity"].is_null());
    // Without users, every active user of the account is notified (the deactivated one is not).
    assert!(kept[1]["users"].is_null());
    let notified: Vec<u64> = kept[1]["notified"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect();
    assert_eq!(notified, [5_500_001, manager(1104), 1104 * 100 + 2]);
    assert_eq!(kept[2]["notified"], json!([]));
    // It is an API write like the others.
    let writes = api.writes().await;
    assert_eq!((writes[0]["path"].as_str(), writes[0]["status"].as_u64()), (Some("/api/v2/events"), Some(202)));
    assert!(contact > 0);

    // A wrong type, a missing number and a stranger are refused, item by item; nothing is kept.
    let wrong = json!({ "add": [
        { "type": "sms", "phone_number": "+5511987654321" },
        { "type": "phone_call", "users": [manager(1104)] },
        { "type": "phone_call", "phone_number": "+5511987654321", "users": [manager(1104), 42, "x"] },
    ]});
    let (status, problem) = api.post_refused("/api/v2/events", wrong).await;
    assert_eq!(status, 400);
    assert_eq!(
        validation_errors(&problem),
        [
            ("0".to_owned(), vec![("NotSupportedChoice".to_owned(), "type".to_owned())]),
            ("1".to_owned(), vec![("NotBlank".to_owned(), "phone_number".to_owned())]),
            (
                "2".to_owned(),
                vec![
                    ("NotSupportedChoice".to_owned(), "users.1".to_owned()),
                    ("InvalidType".to_owned(), "users.2".to_owned())
                ]
            ),
        ]
    );
    assert_eq!(api.post_refused("/api/v2/events", json!([{ "type": "phone_call" }])).await.0, 400);
    assert_eq!(api.notifications().await.len(), 3);
}

#[tokio::test]
async fn a_call_notification_needs_a_live_token_and_counts_against_the_limit() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1105).await;
    let event = json!({ "add": [{ "type": "phone_call", "phone_number": "+5511987654321" }] });
    let post = |token: Option<&str>| {
        let mut request = kommo.http.post(format!("{}/api/v2/events", kommo.kommo)).json(&event);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    support::assert_problem(post(None).await.unwrap(), 401).await;
    assert_eq!(kommo.post("/sandbox/kommo/expire", json!({ "account_id": 1105 })).await.status(), 200);
    let expired = support::assert_problem(post(Some(&api.token)).await.unwrap(), 401).await;
    assert_eq!(expired["detail"], "Access token has expired");

    let api = Api::connect(&kommo, 1106).await;
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(post(Some(&api.token)).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 202, 202, 202, 202, 429]);
    assert_eq!(api.notifications().await.len(), 7);
    assert_eq!(kommo.stats().await["accounts"]["1106"]["by_path"]["POST /api/v2/events"], 8);
}

#[tokio::test]
async fn the_demo_account_holds_the_three_sample_callers() {
    let kommo = Harness::demo().await;
    let samples: Value = kommo.get("/sandbox/samples", None).await.json().await.unwrap();
    assert_eq!(samples["account_id"], support::DEFAULT_ACCOUNT);
    let callers = samples["callers"].as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = callers
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["name"].as_str().unwrap(), c["number"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("contact", "Maria Silva", "+5511987654321"),
            ("company", "Acme Ltda", "+551134567800"),
            ("unknown", "Unknown caller", "+5521976543210"),
        ]
    );
    // Seeded first in a fresh local Kommo: the first id of each kind.
    assert_eq!(
        (callers[0]["contact_id"].as_u64(), callers[0]["lead_ids"].clone()),
        (Some(20_000_001), json!([30_000_001]))
    );
    assert_eq!(callers[1]["company_id"], 25_000_001);
    assert_eq!(samples["card"]["lead_id"], 30_000_001);

    // What the server's lookups find, through the API.
    let api = Api::connect(&kommo, support::DEFAULT_ACCOUNT).await;
    let juan = support::DEFAULT_ACCOUNT * 100 + 2;
    let (status, found) = api.get("/api/v4/contacts?query=5511987654321&with=leads").await;
    assert_eq!(status, 200);
    let maria = &found["_embedded"]["contacts"][0];
    assert_eq!((maria["name"].as_str(), maria["responsible_user_id"].as_u64()), (Some("Maria Silva"), Some(juan)));
    assert_eq!(maria["custom_fields_values"][0]["values"][0]["enum_code"], "MOB");
    assert_eq!(maria["_embedded"]["leads"][0]["id"], 30_000_001);
    let (_, lead) = api.get("/api/v4/leads?filter[id][]=30000001").await;
    let lead = &lead["_embedded"]["leads"][0];
    assert_eq!(
        (
            lead["name"].as_str(),
            lead["price"].as_i64(),
            lead["status_id"].as_u64(),
            lead["responsible_user_id"].as_u64()
        ),
        (Some("Website redesign"), Some(12_500), Some(8_100_003), Some(juan))
    );
    let (_, acme) = api.get("/api/v4/companies?query=551134567800&with=leads").await;
    assert_eq!(ids(&acme, "companies"), [25_000_001]);
    assert_eq!(acme["_embedded"]["companies"][0]["_embedded"]["leads"], json!([]));
    assert_eq!(api.get("/api/v4/contacts?query=551134567800").await.0, 204);
    assert_eq!(api.get("/api/v4/contacts?query=5521976543210").await.0, 204);
    assert_eq!(api.get("/api/v4/companies?query=5521976543210").await.0, 204);
    // Calls from each land where Kommo puts them.
    let calls = json!([
        call("+5511987654321", "s-1", "inbound"),
        call("+551134567800", "s-2", "inbound"),
        call("+5521976543210", "s-3", "inbound"),
    ]);
    let (_, answer) = api.post("/api/v4/calls", calls).await;
    let placed: Vec<(&str, u64)> = answer["_embedded"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| (call["entity_type"].as_str().unwrap(), call["entity_id"].as_u64().unwrap()))
        .collect();
    assert_eq!(placed, [("leads", 30_000_001), ("companies", 25_000_001)]);
    assert_eq!(answer["errors"][0]["request_id"], "s-3");

    // A sandbox without samples has none.
    let plain = Harness::start().await;
    assert_eq!(plain.get("/sandbox/samples", None).await.status(), 404);
}

/// How the server reads a call list's selection back: the entities by id, 250 at most, in one request each, and
/// a lead's contacts with the main one marked (then those contacts and companies by id).
#[tokio::test]
async fn a_call_lists_selection_is_read_back_by_ids_with_the_leads_main_contact() {
    let kommo = Harness::start().await;
    let api = Api::connect(&kommo, 1012).await;
    let (ana, _) = api.seed("Ana", &["+55 11 91111-0001"], &[]).await;
    let (bia, _) = api.seed("Bia", &[], &[]).await;
    let (caio, _) = api.seed("Caio", &["+55 11 91111-0003"], &[]).await;
    let (acme, _) = api.seed_company("Acme", &["+55 11 3000-0001"], &[]).await;
    let (globex, globex_leads) = api.seed_company("Globex", &[], &[("Pilot", 0, 10)]).await;

    let (status, list) = api.get(&format!("/api/v4/contacts?limit=250&filter[id][]={caio}&filter[id][]={ana}")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list, "contacts"), [ana, caio], "the ids asked for, by id");
    let phones: Vec<&str> = list["_embedded"]["contacts"][0]["custom_fields_values"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value["value"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["+55 11 91111-0001"]);
    let (status, list) =
        api.get(&format!("/api/v4/companies?limit=250&filter[id][]={globex}&filter[id][]={acme}")).await;
    assert_eq!((status, ids(&list, "companies")), (200, vec![acme, globex]));
    // Ids of nothing (another account's, made up) are simply not found.
    let (status, _) = api.get("/api/v4/contacts?limit=250&filter[id][]=99999999").await;
    assert_eq!(status, 204);

    // A lead with two contacts: the first linked is the main one; a lead of a company alone has none.
    let body = json!([{ "name": "Two contacts", "_embedded": { "contacts": [{ "id": bia }, { "id": ana }] } }]);
    let (status, created) = api.post("/api/v4/leads", body).await;
    assert_eq!(status, 200, "{created}");
    let lead = ids(&created, "leads")[0];
    let path = format!("/api/v4/leads?limit=250&filter[id][]={lead}&filter[id][]={}&with=contacts", globex_leads[0]);
    let (status, list) = api.get(&path).await;
    assert_eq!(status, 200);
    let leads = list["_embedded"]["leads"].as_array().unwrap();
    let two = leads.iter().find(|found| found["id"] == lead).unwrap();
    assert_eq!(two["_embedded"]["contacts"], json!([{ "id": bia, "is_main": true }, { "id": ana, "is_main": false }]));
    let pilot = leads.iter().find(|found| found["id"] == globex_leads[0]).unwrap();
    assert_eq!(pilot["_embedded"]["contacts"], json!([]));
    assert_eq!(pilot["_embedded"]["companies"][0]["id"], globex);
}
