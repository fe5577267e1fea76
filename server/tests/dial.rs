//! Calling out from Kommo, end to end through real HTTP: click-to-call reaches the local provider with the
//! user's extension and the number in E.164, once per double click, and names each refusal; a call list
//! made from Kommo's selection is dialled entry by entry (its calls reported by signed provider events),
//! paused, resumed, skipped, finished, each call logged once, and never seen by another user.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ACCOUNT, ADMIN, World};
use webhook_signing::WebhookSecret;

const MARIA: u64 = ACCOUNT * 100 + 1;
/// A user of the account with no extension.
const JOAO: u64 = ACCOUNT * 100 + 2;

/// Settings with extension 101 for the admin and 102 for Maria; `tweak` adjusts the call handling.
async fn setup(tweak: impl FnOnce(&mut shared::CallHandling)) -> (World, String, WebhookSecret) {
    let world = support::world().await;
    let saved = world.save_two_extensions(tweak).await;
    let path = saved["webhook"]["url"].as_str().unwrap().strip_prefix(&world.server).unwrap().to_owned();
    let secret = WebhookSecret::parse(saved["webhook"]["signing_secret"].as_str().unwrap()).unwrap();
    (world, path, secret)
}

/// A widget request as `user` (an admin claim only for the admin).
async fn as_user(world: &World, user: u64, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let token = world.token_as(ACCOUNT, user, Some(user == ADMIN)).await;
    let mut request = world.http.request(method, format!("{}{path}", world.server)).header("X-Auth-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    world.bodies.lock().unwrap().push(text.clone());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The calls the local provider was asked to place: `(extension, to)`.
async fn originated(world: &World) -> Vec<(String, String)> {
    let stats: Value =
        world.http.get(format!("{}/sandbox/voip/stats", world.kommo)).send().await.unwrap().json().await.unwrap();
    stats["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| (call["extension"].as_str().unwrap().to_owned(), call["to"].as_str().unwrap().to_owned()))
        .collect()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_rings_the_users_extension_and_a_double_click_places_one_call() {
    let (world, _, _) = setup(|_| {}).await;
    let body = json!({"to": "(11) 98765-4321"});
    let (first, second) = tokio::join!(
        as_user(&world, MARIA, Method::POST, "/widget/v1/calls/originate", Some(body.clone())),
        as_user(&world, MARIA, Method::POST, "/widget/v1/calls/originate", Some(body.clone())),
    );
    let mut answers = [first, second];
    answers.sort_by_key(|(status, _)| status.as_u16());
    let [(placed, call), (refused, error)] = answers;
    assert_eq!(placed, StatusCode::OK, "{call}");
    assert_eq!(call["extension"], "102", "Maria's extension rings");
    assert_eq!(call["to"], "+5511987654321", "the number in E.164 with the account's country");
    assert!(call["to_shown"].as_str().unwrap().contains("98765"), "{call}");
    assert!(call["call_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!((refused, code(&error)), (StatusCode::TOO_MANY_REQUESTS, "already_dialing"), "{error}");
    assert_eq!(originated(&world).await, [("102".to_owned(), "+5511987654321".to_owned())], "one call placed");

    // Another user's click is not held by Maria's call.
    let (status, call) =
        as_user(&world, ADMIN, Method::POST, "/widget/v1/calls/originate", Some(json!({"to": "+5521998765432"}))).await;
    assert_eq!((status, &call["extension"]), (StatusCode::OK, &json!("101")), "{call}");
    // After the hold, Maria calls again.
    tokio::time::sleep(Duration::from_millis(server::dialer::DIAL_HOLD_MS as u64 + 100)).await;
    let (status, _) = as_user(&world, MARIA, Method::POST, "/widget/v1/calls/originate", Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(originated(&world).await.len(), 3);
    world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_is_named_and_places_nothing() {
    let (world, _, _) = setup(|_| {}).await;
    let originate = |user, to: &str| {
        let body = json!({ "to": to });
        let world = &world;
        async move { as_user(world, user, Method::POST, "/widget/v1/calls/originate", Some(body)).await }
    };
    let (status, body) = originate(JOAO, "+5511987654321").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "no_extension"), "{body}");
    for number in ["", "abc", "12", "+55 11 9999x0000", &"9".repeat(80)] {
        let (status, body) = originate(MARIA, number).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_number"), "{number}: {body}");
    }
    let (status, body) =
        as_user(&world, MARIA, Method::POST, "/widget/v1/calls/originate", Some(json!({"to": "1", "x": 1}))).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "bad_request"), "unknown fields are refused");

    // The provider refuses (a 404 for the extension), then fails, then cannot be reached.
    world.http.post(format!("{}/sandbox/voip/faults", world.kommo)).json(&json!({"status": 404})).send().await.unwrap();
    let (status, body) = originate(MARIA, "+5511987654321").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_GATEWAY, "provider_refused"), "{body}");
    // A refusal frees the user's guard at once: the next click is tried.
    world.http.post(format!("{}/sandbox/voip/faults", world.kommo)).json(&json!({"status": 503})).send().await.unwrap();
    let (status, body) = originate(MARIA, "+5511987654321").await;
    assert_eq!((status, code(&body)), (StatusCode::GATEWAY_TIMEOUT, "provider_unreachable"), "{body}");
    sqlx::query("UPDATE widget_settings SET provider_url = 'http://127.0.0.1:9/voip'")
        .execute(world.store.pool())
        .await
        .unwrap();
    let (status, body) = originate(MARIA, "+5511987654321").await;
    assert_eq!((status, code(&body)), (StatusCode::GATEWAY_TIMEOUT, "provider_unreachable"), "{body}");

    // Turned off: nothing is asked of the provider.
    let settings = shared::IntegrationSettings { active: false, ..world.valid_settings() };
    let (status, _) =
        world.widget(Method::PUT, "/widget/v1/settings", ACCOUNT, Some(serde_json::to_value(&settings).unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = originate(ADMIN, "+5511987654321").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "integration_off"), "{body}");
    assert!(originated(&world).await.is_empty(), "no call was placed");
    let (status, _) = world
        .http
        .post(format!("{}/widget/v1/calls/originate", world.server))
        .json(&json!({"to": "+5511987654321"}))
        .send()
        .await
        .map(|response| (response.status(), ()))
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a stranger places nothing");
    world.assert_no_secret_leaked(&[]).await;
}

/// Posts the provider's events of an outbound call: ringing, then answered and ended after `talk` seconds
/// (none: not answered).
async fn play(world: &World, path: &str, secret: &WebhookSecret, call_id: &str, to: &str, talk: Option<u32>) {
    let event = |status: &str, duration: Option<u32>| {
        let mut body = json!({"callId": call_id, "voipAccountId": "sandbox-voip", "from": "+551133334444", "to": to,
            "status": status, "direction": "outbound", "extension": "101", "startTime": server::clock::unix_secs()});
        if let Some(duration) = duration {
            body["duration"] = json!(duration);
        }
        body.to_string()
    };
    let mut steps = vec![("ringing", None)];
    match talk {
        Some(seconds) => steps.extend([("answered", None), ("ended", Some(seconds))]),
        None => steps.push(("missed", None)),
    }
    for (status, duration) in steps {
        let response = world.post_signed(path, secret, &format!("{call_id}-{status}"), &event(status, duration)).await;
        assert_eq!(response.status(), StatusCode::OK, "{status}");
    }
}

async fn command(world: &World, id: i64, action: &str, next: u64) -> (StatusCode, Value) {
    let path = format!("/widget/v1/call-lists/{id}/command");
    as_user(world, ADMIN, Method::POST, &path, Some(json!({"action": action, "next": next}))).await
}

/// Reads the admin's current list until `done` holds (the call's job folds its events meanwhile).
async fn wait_for(world: &World, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = as_user(world, ADMIN, Method::GET, "/widget/v1/call-lists/current", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body["list"].clone();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the list did not get there: {last}");
}

fn states(list: &Value) -> Vec<&str> {
    list["entries"].as_array().unwrap().iter().map(|entry| entry["state"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_list_runs_to_its_end_with_a_pause_and_a_skip_and_each_call_is_logged_once() {
    let (world, path, secret) = setup(|handling| {
        handling.call_lists.interval_secs = shared::integration::MIN_DIAL_INTERVAL_SECS;
        handling.widget.call_feedback_modal = true;
    })
    .await;
    let mut ids = Vec::new();
    for (name, phones) in [
        ("Ana Souza", vec!["+5511911110001"]),
        ("Bruno Lima", vec![]),
        ("Carla Dias", vec!["+5511911110003"]),
        ("Davi Rocha", vec!["+5511911110004"]),
        ("Eva Nunes", vec!["+5511911110005", "+5511911110055"]),
    ] {
        let seeded = world.seed_contact(ACCOUNT, name, &phones, &[]).await;
        ids.push(seeded["contact_id"].as_i64().unwrap());
    }
    // Another account's contact id is left out; the order is the selection's.
    let other = world.another_kommo(ACCOUNT + 1).await;
    let stranger = other.seed_contact(ACCOUNT + 1, "Not ours", &["+5511900000000"], &[]).await;
    let mut selection = ids.clone();
    selection.insert(2, stranger["contact_id"].as_i64().unwrap() + 1_000_000);
    let (status, list) = as_user(
        &world,
        ADMIN,
        Method::POST,
        "/widget/v1/call-lists",
        Some(json!({"source": "contacts", "ids": selection})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{list}");
    let id = list["id"].as_i64().unwrap();
    let names: Vec<&str> = list["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ana Souza", "Bruno Lima", "Carla Dias", "Davi Rocha", "Eva Nunes"]);
    assert_eq!(states(&list), ["pending", "no_number", "pending", "pending", "pending"]);
    assert_eq!((list["state"].as_str(), list["next"].as_u64()), (Some("ready"), Some(0)));

    // Another user sees no list and cannot touch this one.
    let (status, theirs) = as_user(&world, MARIA, Method::GET, "/widget/v1/call-lists/current", None).await;
    assert_eq!((status, &theirs["list"]), (StatusCode::OK, &Value::Null));
    let (status, _) = as_user(
        &world,
        MARIA,
        Method::POST,
        &format!("/widget/v1/call-lists/{id}/command"),
        Some(json!({"action": "stop", "next": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, active) = as_user(&world, ADMIN, Method::GET, "/widget/v1/calls/active", None).await;
    assert_eq!((status, active["call_list"].as_i64()), (StatusCode::OK, Some(id)), "a reload finds the list");

    // Not running yet: no dial.
    assert_eq!(code(&command(&world, id, "dial", 0).await.1), "not_running");
    assert_eq!(command(&world, id, "start", 0).await.1["state"], "running");
    let (status, list) = command(&world, id, "dial", 0).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let call_1 = list["entries"][0]["call_id"].as_str().unwrap().to_owned();
    // The entry without a number is passed: the next is Carla.
    assert_eq!((list["current"].as_u64(), list["next"].as_u64()), (Some(0), Some(2)));
    assert_eq!(list["waiting_for"], "call_end");
    // A second tab that saw next = 0 is refused; one that saw 2 waits for the call.
    assert_eq!(code(&command(&world, id, "dial", 0).await.1), "stale");
    assert_eq!(code(&command(&world, id, "dial", 2).await.1), "not_due");

    play(&world, &path, &secret, &call_1, "+5511911110001", Some(42)).await;
    let list = wait_for(&world, |list| list["entries"][0]["state"] == "answered").await;
    assert_eq!(list["entries"][0]["duration"], 42);
    assert_eq!(list["waiting_for"], "call_result", "the account asks for results: {list}");
    let result = json!({"note": "Interested", "call_status": 4});
    let (status, body) =
        as_user(&world, ADMIN, Method::POST, &format!("/widget/v1/calls/{call_1}/result"), Some(result)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let list = wait_for(&world, |list| list["waiting_for"] == "interval").await;
    let due = list["next_dial_at_ms"].as_i64().unwrap();
    assert!(due > server::clock::unix_millis(), "the interval runs after the result");
    assert_eq!(code(&command(&world, id, "dial", 2).await.1), "not_due", "not before the interval");

    // Pause: nothing is dialled, even when due; skip Carla meanwhile; resume.
    assert_eq!(command(&world, id, "pause", 2).await.1["state"], "paused");
    tokio::time::sleep(Duration::from_millis((due - server::clock::unix_millis()).max(0) as u64 + 50)).await;
    assert_eq!(code(&command(&world, id, "dial", 2).await.1), "not_running");
    let (_, list) = command(&world, id, "skip", 2).await;
    assert_eq!((list["next"].as_u64(), list["entries"][2]["state"].as_str()), (Some(3), Some("skipped")));
    assert_eq!(command(&world, id, "resume", 3).await.1["state"], "running");
    let (status, list) = command(&world, id, "dial", 3).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let call_2 = list["entries"][3]["call_id"].as_str().unwrap().to_owned();
    play(&world, &path, &secret, &call_2, "+5511911110004", None).await;
    let list = wait_for(&world, |list| list["entries"][3]["state"] == "not_answered").await;
    // An unanswered call asks no result: the interval only.
    assert_eq!(list["waiting_for"], "interval", "{list}");
    let due = list["next_dial_at_ms"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis((due - server::clock::unix_millis()).max(0) as u64 + 50)).await;
    let (status, list) = command(&world, id, "dial", 4).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let call_3 = list["entries"][4]["call_id"].as_str().unwrap().to_owned();
    assert_eq!(list["state"], "running", "running until the last call ends");
    play(&world, &path, &secret, &call_3, "+5511911110005", Some(7)).await;
    let list = wait_for(&world, |list| list["state"] == "finished").await;
    assert_eq!(states(&list), ["answered", "no_number", "skipped", "not_answered", "answered"]);

    assert_eq!(
        originated(&world).await,
        [
            ("101".to_owned(), "+5511911110001".to_owned()),
            ("101".to_owned(), "+5511911110004".to_owned()),
            ("101".to_owned(), "+5511911110005".to_owned()),
        ],
        "the admin's extension, each entry once, in order"
    );
    // Each call is logged once in Kommo.
    for _ in 0..200 {
        if world.logged_calls(ACCOUNT).await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut expected = vec![call_1, call_2, call_3];
    expected.sort();
    assert_eq!(world.logged_calls(ACCOUNT).await, expected);
    let (_, active) = as_user(&world, ADMIN, Method::GET, "/widget/v1/calls/active", None).await;
    assert!(active.get("call_list").is_none(), "a finished list is not reopened: {active}");
    world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_is_dialled_at_its_contact_and_the_settings_decide_which_lists_may_be_used() {
    let (world, _, _) = setup(|handling| handling.call_lists.sources = vec![shared::ListSource::Leads]).await;
    let seeded = world.seed_contact(ACCOUNT, "Fabio Melo", &["+5511922220000"], &["Fleet renewal"]).await;
    let lead = seeded["lead_ids"][0].as_i64().unwrap();
    let (status, list) =
        as_user(&world, MARIA, Method::POST, "/widget/v1/call-lists", Some(json!({"source": "leads", "ids": [lead]})))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{list}");
    let entry = &list["entries"][0];
    assert_eq!((entry["name"].as_str(), entry["via"].as_str()), (Some("Fleet renewal"), Some("Fabio Melo")));
    assert!(entry["number"].as_str().unwrap().contains("92222"), "{entry}");

    let contact = seeded["contact_id"].as_i64().unwrap();
    let (status, body) = as_user(
        &world,
        MARIA,
        Method::POST,
        "/widget/v1/call-lists",
        Some(json!({"source": "contacts", "ids": [contact]})),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "call_lists_off"), "not from the contacts list");
    for ids in [json!([]), json!([lead, lead]), json!([0]), json!((1..=251).collect::<Vec<i64>>())] {
        let (status, body) =
            as_user(&world, MARIA, Method::POST, "/widget/v1/call-lists", Some(json!({"source": "leads", "ids": ids})))
                .await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation"), "{body}");
    }
    let (status, body) = as_user(
        &world,
        MARIA,
        Method::POST,
        "/widget/v1/call-lists",
        Some(json!({"source": "leads", "ids": [999_999_999]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Each list reads Kommo: a user makes five in a row, then one every few seconds.
    for attempt in 0..4 {
        let (status, body) = as_user(
            &world,
            MARIA,
            Method::POST,
            "/widget/v1/call-lists",
            Some(json!({"source": "leads", "ids": [lead]})),
        )
        .await;
        let expected = if attempt < 3 { StatusCode::CREATED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(status, expected, "list {attempt}: {body}");
    }
    // Maria's list stays hers: the admin has none.
    let (_, theirs) = as_user(&world, ADMIN, Method::GET, "/widget/v1/call-lists/current", None).await;
    assert_eq!(theirs["list"], Value::Null);

    // Turned off: no list is made.
    let mut settings = world.valid_settings();
    settings.call_handling.call_lists.enabled = false;
    let (status, saved) =
        world.widget(Method::PUT, "/widget/v1/settings", ACCOUNT, Some(serde_json::to_value(&settings).unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, body) =
        as_user(&world, MARIA, Method::POST, "/widget/v1/call-lists", Some(json!({"source": "leads", "ids": [lead]})))
            .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "call_lists_off"));
}
