//! Who may do what, tried as an attacker inside an account would, through the running server over real
//! sockets: a non-admin's token on every admin endpoint (with Kommo's `is_admin` claim, and without it,
//! when the server asks Kommo's users API), the admin's reveal of the signing secret, another user's call
//! result, a card that has nothing to do with the call, a non-admin's consent, and a replayed token.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::clock::unix_secs;
use support::{ACCOUNT, ADMIN, CLIENT_ID, CLIENT_SECRET, World, world};
use webhook_signing::WebhookSecret;

/// Maria Silva and Juan Pérez: users of the stand-in's account who are not admins.
const MARIA: u64 = ACCOUNT * 100 + 1;
const JUAN: u64 = ACCOUNT * 100 + 2;
const CALLER: &str = "+5511987654321";

/// How the token speaks of the user's role.
#[derive(Clone, Copy, Debug)]
enum Claim {
    Says(bool),
    /// No `is_admin` claim, as in Kommo's documented example: the server must ask Kommo.
    Omitted,
}

async fn token_as(world: &World, user: u64, claim: Claim) -> String {
    let is_admin = match claim {
        Claim::Says(flag) => Some(flag),
        Claim::Omitted => None,
    };
    world.token_as(ACCOUNT, user, is_admin).await
}

async fn call_as(
    world: &World,
    user: u64,
    claim: Claim,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = world
        .http
        .request(method, format!("{}{path}", world.server))
        .header("X-Auth-Token", token_as(world, user, claim).await);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn signing_secret_hint(world: &World) -> String {
    sqlx::query_scalar("SELECT webhook_secret_hint FROM widget_settings").fetch_one(world.store.pool()).await.unwrap()
}

/// Every endpoint for the account's admins, with a body that an admin could send.
fn admin_endpoints(world: &World) -> Vec<(Method, &'static str, Option<Value>)> {
    let settings = serde_json::to_value(world.valid_settings()).unwrap();
    let credentials = settings["credentials"].clone();
    vec![
        (Method::GET, "/widget/v1/settings", None),
        (Method::PUT, "/widget/v1/settings", Some(settings)),
        (Method::PUT, "/widget/v1/settings", Some(json!({"active": false}))),
        (Method::POST, "/widget/v1/settings/check", Some(credentials)),
        (Method::POST, "/widget/v1/settings/webhook-secret", None),
        (Method::POST, "/widget/v1/settings/webhook/reveal", None),
        (Method::GET, "/widget/v1/users", None),
        (Method::GET, "/widget/v1/deliveries/failed", None),
        (Method::POST, "/widget/v1/deliveries/failed/1/retry", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_gets_admin_only_on_every_admin_endpoint_and_changes_nothing() {
    let world = world().await;
    let (_, issued) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    let hint = signing_secret_hint(&world).await;
    for claim in [Claim::Says(false), Claim::Omitted] {
        for (method, path, body) in admin_endpoints(&world) {
            let (status, reply) = json_of(call_as(&world, MARIA, claim, method.clone(), path, body).await).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} ({claim:?}): {reply}");
            assert_eq!(reply["error"]["code"], "admin_only", "{method} {path} ({claim:?})");
            let text = reply.to_string();
            assert!(!text.contains("whsec_") && !text.contains("/hooks/voip/"), "{method} {path} leaked: {text}");
        }
    }
    // What every user's widget needs of the settings (whether to ask for a call result) stays readable,
    // and it is nothing more than that.
    for claim in [Claim::Says(false), Claim::Omitted] {
        let (status, options) =
            json_of(call_as(&world, MARIA, claim, Method::GET, "/widget/v1/calls/options", None).await).await;
        assert_eq!(status, StatusCode::OK, "{options}");
        assert_eq!(options["call_feedback_modal"], true);
        let keys: Vec<&String> = options.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["auto_open_card", "call_feedback_modal", "call_quality_rating", "kommo_notification", "ringing_sound"]
        );
    }
    // Nothing changed: the same signing secret, processing still on, the provider never asked.
    assert_eq!(signing_secret_hint(&world).await, hint);
    let active: i64 = sqlx::query_scalar("SELECT CASE WHEN active THEN 1 ELSE 0 END FROM widget_settings")
        .fetch_one(world.store.pool())
        .await
        .unwrap();
    assert_eq!(active, 1, "a non-admin cannot turn the integration off");
    // An admin still gets everything, with the claim or, without it, after asking Kommo.
    for claim in [Claim::Says(true), Claim::Omitted] {
        let (status, users) = json_of(call_as(&world, ADMIN, claim, Method::GET, "/widget/v1/users", None).await).await;
        assert_eq!(status, StatusCode::OK, "{claim:?}: {users}");
        assert!(users.as_array().is_some_and(|users| users.len() >= 3));
    }
    let (status, revealed) =
        json_of(call_as(&world, ADMIN, Claim::Omitted, Method::POST, "/widget/v1/settings/webhook/reveal", None).await)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revealed["signing_secret"], issued.as_str());
    // A claim that says "admin" for a user Kommo calls a non-admin is Kommo's word: the claim wins,
    // and without a claim Kommo's answer is asked once and kept (not once per request).
    let stats = world.stats().await;
    let asked = |stats: &Value, user: u64| {
        stats["accounts"][ACCOUNT.to_string()]["by_path"][format!("GET /api/v4/users/{user}")].as_u64().unwrap_or(0)
    };
    assert_eq!(asked(&stats, MARIA), 1, "Maria's role was asked once, then remembered: {stats}");
    // The admin's: once by the install (whose consent it was), once for the widget, then remembered.
    assert_eq!(asked(&stats, ADMIN), 2, "the admin's role was asked once per purpose: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_webhook_secret_again_whenever_needed_and_no_cache_keeps_it() {
    let world = world().await;
    let (path, issued) = world.configure(ACCOUNT, shared::CallHandling::default()).await;
    let reveal = || call_as(&world, ADMIN, Claim::Says(true), Method::POST, "/widget/v1/settings/webhook/reveal", None);
    let response = reveal().await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, shown) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["signing_secret"], issued.as_str());
    assert_eq!(shown["url"], format!("{}{path}", world.server));
    // After a rotation, the reveal shows the new secret; the rotation's own answer is not cached either.
    let rotated =
        call_as(&world, ADMIN, Claim::Says(true), Method::POST, "/widget/v1/settings/webhook-secret", None).await;
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let (_, rotated) = json_of(rotated).await;
    let (_, shown) = json_of(reveal().await).await;
    assert_eq!(shown["signing_secret"], rotated["signing_secret"]);
    assert_ne!(shown["signing_secret"], issued.as_str());
    // The settings read never carries it.
    let (_, settings) =
        json_of(call_as(&world, ADMIN, Claim::Says(true), Method::GET, "/widget/v1/settings", None).await).await;
    assert!(!settings.to_string().contains("whsec_"), "{settings}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_save_there_is_nothing_to_reveal() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (status, reply) = json_of(
        call_as(&world, ADMIN, Claim::Says(true), Method::POST, "/widget/v1/settings/webhook/reveal", None).await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(reply["error"]["code"], "settings_missing");
}

fn ringing(call_id: &str, extension: &str) -> Value {
    json!({"callId": call_id, "voipAccountId": "sandbox-voip", "from": CALLER, "to": "+551133334444",
           "status": "ringing", "direction": "inbound", "extension": extension, "startTime": unix_secs()})
}

fn result(entity: Option<Value>) -> Value {
    let mut body = json!({"call_status": 4, "note": "Spoke about the renewal"});
    if let Some(entity) = entity {
        body["entity"] = entity;
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_result_comes_from_the_calls_manager_or_an_admin_and_only_for_a_card_of_its_number() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let mut settings = world.valid_settings();
    settings.extensions.entries = vec![shared::ExtensionEntry { extension: "101".into(), user_id: MARIA as i64 }];
    let (status, saved) =
        world.widget(Method::PUT, "/widget/v1/settings", ACCOUNT, Some(serde_json::to_value(&settings).unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let path = saved["webhook"]["url"].as_str().unwrap().strip_prefix(&world.server).unwrap().to_owned();
    let secret = WebhookSecret::parse(saved["webhook"]["signing_secret"].as_str().unwrap()).unwrap();
    let seeded = world.seed_contact(ACCOUNT, "Ana Costa", &[CALLER], &["Renewal"]).await;
    let (contact_id, lead_id) = (seeded["contact_id"].as_u64().unwrap(), seeded["lead_ids"][0].as_u64().unwrap());
    let stranger = world.seed_contact(ACCOUNT, "Someone Else", &["+5521999990000"], &["Other deal"]).await;
    for call in ["call-maria-1", "call-maria-2", "call-maria-3"] {
        assert_eq!(
            world.post_signed(&path, &secret, &format!("msg-{call}"), &ringing(call, "101").to_string()).await.status(),
            StatusCode::OK
        );
    }
    let post = |user: u64, claim: Claim, call: &'static str, body: Value| {
        let world = &world;
        async move {
            call_as(world, user, claim, Method::POST, &format!("/widget/v1/calls/{call}/result"), Some(body)).await
        }
    };

    // Juan, another manager of the account, cannot record Maria's call.
    let (status, reply) = json_of(post(JUAN, Claim::Says(false), "call-maria-1", result(None)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert_eq!(reply["error"]["code"], "not_your_call");
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM call_results").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(stored, 0, "a refused result stores nothing");

    // Maria can, but only on a card tied to the caller's number.
    for elsewhere in [
        json!({"type": "contacts", "id": stranger["contact_id"]}),
        json!({"type": "leads", "id": stranger["lead_ids"][0]}),
        json!({"type": "companies", "id": 999_999}),
    ] {
        let (status, reply) =
            json_of(post(MARIA, Claim::Says(false), "call-maria-1", result(Some(elsewhere.clone()))).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{elsewhere}: {reply}");
        assert_eq!(reply["error"]["fields"], json!([{"field": "entity", "code": "not_tied_to_call"}]));
    }
    let own_card = Some(json!({"type": "leads", "id": lead_id}));
    let (status, reply) = json_of(post(MARIA, Claim::Says(false), "call-maria-1", result(own_card)).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");

    // An admin may record any call of the account (with the claim, or as Kommo's users API says).
    let contact_card = Some(json!({"type": "contacts", "id": contact_id}));
    let (status, _) = json_of(post(ADMIN, Claim::Says(true), "call-maria-2", result(contact_card)).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = json_of(post(ADMIN, Claim::Omitted, "call-maria-3", result(None)).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Another account's call id is simply unknown here.
    let (status, _) = json_of(post(ADMIN, Claim::Says(true), "call-of-nobody", result(None)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn token_row(world: &World) -> (String, String) {
    sqlx::query_as("SELECT access_token, refresh_token FROM kommo_auth_tokens")
        .fetch_one(world.store.pool())
        .await
        .unwrap()
}

/// Waits (bounded) until every received authorization code was exchanged or given up.
async fn codes_settled(world: &World) -> Vec<(String, Option<String>)> {
    for _ in 0..200 {
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_codes WHERE state IN ('pending', 'exchanging')")
            .fetch_one(world.store.pool())
            .await
            .unwrap();
        if open == 0 {
            return sqlx::query_as("SELECT state, last_error FROM oauth_codes ORDER BY id")
                .fetch_all(world.store.pool())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("authorization codes are still waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admins_consent_replaces_the_accounts_tokens() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let before = token_row(&world).await;
    let reply = world.kommo_control("/sandbox/kommo/install", json!({"account_id": ACCOUNT, "user_id": MARIA})).await;
    assert_eq!(reply["status"], 200, "Kommo's request is answered at once either way");
    let codes = codes_settled(&world).await;
    let (state, error) = codes.last().unwrap();
    assert_eq!(state, "failed");
    assert!(error.as_deref().unwrap_or_default().contains("not an admin"), "{error:?}");
    assert_eq!(token_row(&world).await, before, "the admin's tokens stay");
    // The admin's own consent still works (and replaces them).
    world.kommo_control("/sandbox/kommo/install", json!({"account_id": ACCOUNT})).await;
    let codes = codes_settled(&world).await;
    assert_eq!(codes.last().unwrap().0, "done");
    assert_ne!(token_row(&world).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_accepted_once_even_inside_the_expiry_leeway() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let world = world().await;
    world.install(ACCOUNT).await;
    let now = unix_secs();
    // Expired 30 s ago: still inside the verifier's 60 s leeway for clock skew.
    let claims = json!({
        "iss": format!("https://acct{ACCOUNT}.kommo.com"), "aud": world.server, "jti": "replayed-in-the-leeway",
        "iat": now - 1000, "nbf": now - 1000, "exp": now - 30, "account_id": ACCOUNT, "user_id": ADMIN,
        "subdomain": format!("acct{ACCOUNT}"), "client_uuid": CLIENT_ID, "is_admin": true,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
    )
    .unwrap();
    let send =
        || world.http.get(format!("{}/widget/v1/connection", world.server)).header("X-Auth-Token", &token).send();
    assert_eq!(send().await.unwrap().status(), StatusCode::OK, "first use, inside the leeway");
    // Any other request in between prunes expired token ids; the replayed one must still be remembered.
    world.widget(Method::GET, "/widget/v1/connection", ACCOUNT, None).await;
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.text().await.unwrap().contains("already used"));
}
