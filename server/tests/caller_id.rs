//! Caller ID and smart forwarding end to end: the provider asks `POST /hooks/voip/{hook_id}/caller-id`
//! (signed like its call events) and the server answers from the account's phone index, synced from
//! the local Kommo: the caller's name and entity, its responsible user and that user's extension, or the
//! account's default; refusals as for the call events; never another account's data.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::calls::CallsContext;
use server::store::AccountId;
use shared::{ExtensionEntry, ExtensionMap};
use support::{ACCOUNT, ADMIN, World, world};
use webhook_signing::WebhookSecret;

/// Users of the local Kommo's account (see the stand-in's default users).
const MARIA: i64 = ACCOUNT as i64 * 100 + 1;
const JUAN: i64 = ACCOUNT as i64 * 100 + 2;
/// A second account of the same local Kommo.
const OTHER_ACCOUNT: u64 = 31_000_002;

/// One account's side: its local Kommo, its webhook and secret, and a calls context to sync its index.
struct Desk {
    world: Arc<World>,
    account: AccountId,
    path: String,
    secret: WebhookSecret,
    ctx: CallsContext,
}

/// The extension map every desk saves: Maria 101, Juan 102 and 103, the admin 109 and the fallback.
fn extensions(account: u64) -> ExtensionMap {
    let user = |n: i64| account as i64 * 100 + n;
    ExtensionMap {
        entries: vec![
            ExtensionEntry { extension: "101".into(), user_id: user(1) },
            ExtensionEntry { extension: "102".into(), user_id: user(2) },
            ExtensionEntry { extension: "103".into(), user_id: user(2) },
            ExtensionEntry { extension: "109".into(), user_id: ADMIN as i64 },
        ],
        fallback_user_id: Some(ADMIN as i64),
    }
}

/// A second account beside `desk`'s, in the same local Kommo and server, with `map`.
async fn other_desk(desk: &Desk, map: ExtensionMap) -> Desk {
    let body = json!({"id": OTHER_ACCOUNT, "subdomain": format!("acct{OTHER_ACCOUNT}")});
    desk.world.kommo_control("/sandbox/kommo/accounts", body).await;
    desk_in(desk.world.clone(), OTHER_ACCOUNT, map).await
}

/// Installs `account` in `world`'s local Kommo and saves settings with `map`.
async fn desk_in(world: Arc<World>, account: u64, map: ExtensionMap) -> Desk {
    let id = world.install(account).await;
    let settings = shared::IntegrationSettings { extensions: map, ..world.valid_settings() };
    let (status, saved) =
        world.widget(Method::PUT, "/widget/v1/settings", account, Some(serde_json::to_value(&settings).unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let path = saved["webhook"]["url"].as_str().unwrap().strip_prefix(&world.server).unwrap().to_owned();
    let secret = WebhookSecret::parse(saved["webhook"]["signing_secret"].as_str().unwrap()).unwrap();
    let kommo = world.kommo_client(world.store.clone(), Duration::from_secs(15));
    // Subscribed to Kommo's webhooks at the first pass, as a server is: "nobody has it" is trusted then.
    let ctx = CallsContext::new(world.store.clone(), kommo).with_public_base_url(&world.server);
    Desk { world, account: id, path, secret, ctx }
}

async fn desk() -> Desk {
    desk_in(Arc::new(world().await), ACCOUNT, extensions(ACCOUNT)).await
}

impl Desk {
    /// Runs the account's phone sync, a step at a time as the queue would, until its pass is over.
    async fn sync(&self) {
        for _ in 0..50 {
            self.ctx.sync_phones(self.account).await.unwrap();
            let sync = self.world.store.phone_sync(self.account).await.unwrap().unwrap();
            if sync.pass_kind.is_none() {
                return;
            }
        }
        panic!("the phone sync did not end");
    }

    /// Seeds a contact (its responsible, and leads given as JSON) → its id and its leads' ids.
    async fn contact(&self, account: u64, name: &str, phone: &str, responsible: i64, leads: Value) -> (i64, Vec<i64>) {
        let body = json!({"account_id": account, "name": name, "phones": [phone],
                          "responsible_user_id": responsible, "leads": leads});
        let reply = self.world.kommo_control("/sandbox/kommo/contacts", body).await;
        let leads = reply["lead_ids"].as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect();
        (reply["contact_id"].as_i64().unwrap(), leads)
    }

    /// The provider's question, signed with the account's secret → status and body.
    async fn ask(&self, body: &str) -> (StatusCode, Value) {
        self.ask_at(&self.path, &self.secret, body).await
    }

    async fn ask_at(&self, webhook_path: &str, secret: &WebhookSecret, body: &str) -> (StatusCode, Value) {
        let path = format!("{webhook_path}/caller-id");
        let response = self.world.post_signed(&path, secret, "msg_caller_id", body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        self.world.bodies.lock().unwrap().push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn number(&self, number: &str) -> Value {
        let (status, body) = self.ask(&json!({"number": number}).to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn default_answer(extension: Option<&str>, source: &str) -> Value {
    json!({"known": false, "name": null, "entity": null, "responsible_user_id": null,
           "extension": extension, "source": source})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_contact_rings_its_responsibles_extension_and_a_company_its_own() {
    let desk = desk().await;
    let (contact, _) = desk.contact(ACCOUNT, "Ana Souza", "+5511988887777", JUAN, json!([])).await;
    let company = desk
        .world
        .kommo_control(
            "/sandbox/kommo/companies",
            json!({"account_id": ACCOUNT, "name": "Acme Ltda", "phones": ["+551130009999"],
                   "responsible_user_id": MARIA}),
        )
        .await["company_id"]
        .as_i64()
        .unwrap();
    desk.sync().await;
    let reset = format!("{}/sandbox/kommo/reset-stats", desk.world.kommo);
    assert!(desk.world.http.post(reset).send().await.unwrap().status().is_success());

    // The number as a Brazilian account's provider may send it: read with the account's country.
    let answer = desk.number("(11) 98888-7777").await;
    assert_eq!(
        answer,
        json!({"known": true, "name": "Ana Souza", "entity": {"type": "contacts", "id": contact},
               "responsible_user_id": JUAN, "extension": "102", "source": "index"}),
        "the first extension of the responsible user"
    );
    let answer = desk.number("+55 11 3000-9999").await;
    assert_eq!(
        answer,
        json!({"known": true, "name": "Acme Ltda", "entity": {"type": "companies", "id": company},
               "responsible_user_id": MARIA, "extension": "101", "source": "index"})
    );
    let (status, answer) = desk.ask(&json!({"number": "+5511988887777", "line": "+551133334444"}).to_string()).await;
    assert_eq!((status, &answer["extension"]), (StatusCode::OK, &json!("102")), "the line is accepted");
    let stats = desk.world.stats().await;
    let api: Vec<&String> =
        stats["requests"].as_object().unwrap().keys().filter(|name| name.contains(" /api/")).collect();
    assert!(api.is_empty(), "no Kommo request on the answer path: {api:?}");
    desk.world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_with_one_lead_rings_the_responsible_the_index_knows() {
    let desk = desk().await;
    // The lead's owner is the contact's unless the seed says otherwise.
    let (contact, leads) = desk.contact(ACCOUNT, "Carla", "+5511966665555", MARIA, json!([{"name": "Deal"}])).await;
    assert_eq!(leads.len(), 1);
    // A contact whose one lead was handed to Juan.
    let (handed, _) = desk
        .contact(ACCOUNT, "Dora", "+5511955554444", MARIA, json!([{"name": "Deal", "responsible_user_id": JUAN}]))
        .await;
    desk.sync().await;

    let answer = desk.number("+5511966665555").await;
    assert_eq!((&answer["entity"]["id"], &answer["responsible_user_id"]), (&json!(contact), &json!(MARIA)));
    assert_eq!(answer["extension"], "101", "the lead's (and contact's) responsible");
    // The one open lead was handed to Juan: his extension rings, not the contact's responsible's.
    let answer = desk.number("+5511955554444").await;
    assert_eq!((&answer["entity"]["id"], &answer["responsible_user_id"]), (&json!(handed), &json!(JUAN)));
    assert_eq!(answer["extension"], "102", "the one open lead's responsible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_number_gets_the_fallback_extension_and_no_fallback_means_route_as_usual() {
    let desk = desk().await;
    desk.sync().await;
    assert_eq!(desk.number("+5511944443333").await, default_answer(Some("109"), "index"));

    // Another account with no fallback user: nothing to route to.
    let other = other_desk(&desk, ExtensionMap { fallback_user_id: None, ..extensions(OTHER_ACCOUNT) }).await;
    other.sync().await;
    assert_eq!(other.number("+5511944443333").await, default_answer(None, "index"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_index_is_synced_the_answer_is_the_default() {
    let desk = desk().await;
    desk.contact(ACCOUNT, "Ana Souza", "+5511988887777", JUAN, json!([])).await;
    assert_eq!(desk.number("+5511988887777").await, default_answer(Some("109"), "default"));
    // Half a pass (the contacts, not yet the companies) is not an index either.
    desk.ctx.sync_phones(desk.account).await.unwrap();
    assert_eq!(desk.number("+5511988887777").await, default_answer(Some("109"), "default"));
    desk.sync().await;
    assert_eq!(desk.number("+5511988887777").await["extension"], "102");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_bad_signature_unknown_hook_oversized_unknown_field_and_turned_off() {
    let desk = desk().await;
    desk.sync().await;
    let body = json!({"number": "+5511988887777"}).to_string();

    let forged = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let (status, answer) = desk.ask_at(&desk.path, &forged, &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_signature")));
    let unsigned = desk
        .world
        .http
        .post(format!("{}{}/caller-id", desk.world.server, desk.path))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let (status, answer) = desk.ask_at("/hooks/voip/NoSuchHookId0123456789abcdefgh", &desk.secret, &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    let oversized = json!({"number": "+5511988887777", "line": "9".repeat(server::http::MAX_CALLER_ID_BODY)});
    let (status, _) = desk.ask(&oversized.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, answer) = desk.ask(&json!({"number": "+5511988887777", "account_id": 1}).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("account_id"), "names the field: {answer}");
    for refused in [json!({}), json!({"number": ""}), json!({"number": "+55\u{7}11"}), json!({"number": 5511})] {
        let (status, answer) = desk.ask(&refused.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {answer}");
    }

    // Turned off in the settings (Kommo's active: 'N'): 409, as for the call events.
    let settings = shared::IntegrationSettings { active: false, ..desk.world.valid_settings() };
    let (status, saved) = desk
        .world
        .widget(Method::PUT, "/widget/v1/settings", ACCOUNT, Some(serde_json::to_value(&settings).unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, answer) = desk.ask(&body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("integration_inactive")));
    desk.world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_numbers_never_answer() {
    let desk = desk().await;
    let other = other_desk(&desk, extensions(OTHER_ACCOUNT)).await;
    let other_juan = OTHER_ACCOUNT as i64 * 100 + 2;
    let (theirs, _) = other.contact(OTHER_ACCOUNT, "Their Client", "+5511933332222", other_juan, json!([])).await;
    let (ours, _) = desk.contact(ACCOUNT, "Our Client", "+5511922221111", MARIA, json!([])).await;
    desk.sync().await;
    other.sync().await;

    // Each account's hook answers its own numbers only, whatever number is asked.
    assert_eq!(desk.number("+5511933332222").await, default_answer(Some("109"), "index"));
    assert_eq!(other.number("+5511922221111").await, default_answer(Some("109"), "index"));
    assert_eq!(other.number("+5511933332222").await["entity"], json!({"type": "contacts", "id": theirs}));
    assert_eq!(desk.number("+5511922221111").await["entity"], json!({"type": "contacts", "id": ours}));
    // One account's secret does not open the other's hook.
    let (status, _) = desk.ask_at(&other.path, &desk.secret, &json!({"number": "+5511933332222"}).to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
