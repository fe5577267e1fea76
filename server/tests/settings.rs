//! The settings API end to end (`/widget/v1/settings*`): our server, Kommo's stand-in (the account's
//! users) and the VoIP provider stand-in (the credentials check), on real loopback sockets. What is saved
//! comes back; refusals name the field and store nothing; inactive accounts get no call processing;
//! secrets never come back.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{
    CallHandling, ExtensionEntry, ExtensionMap, IntegrationSettings, LeadPlacement, MissedCall, TaskResponsible,
    UnknownCallerEntity, UnsortedAccept, VoipCredentials,
};
use support::{ACCOUNT, ADMIN, VOIP_PASSWORD, World, world};

const OTHER_ACCOUNT: u64 = 31_000_002;

fn json_of(settings: &IntegrationSettings) -> Value {
    serde_json::to_value(settings).unwrap()
}

impl World {
    async fn save(&self, account: u64, settings: Value) -> (StatusCode, Value) {
        self.widget(Method::PUT, "/widget/v1/settings", account, Some(settings)).await
    }

    async fn read(&self, account: u64) -> Value {
        let (status, body) = self.widget(Method::GET, "/widget/v1/settings", account, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn user_ids(&self, account: u64) -> Vec<i64> {
        let (status, users) = self.widget(Method::GET, "/widget/v1/users", account, None).await;
        assert_eq!(status, StatusCode::OK, "{users}");
        users.as_array().unwrap().iter().map(|user| user["id"].as_i64().unwrap()).collect()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(self.store.pool()).await.unwrap()
    }

    /// Posts a call event signed with `secret`, as the provider does.
    async fn post_call(&self, webhook_url: &str, secret: &str) -> StatusCode {
        let event = json!({"callId": "c-1", "voipAccountId": "sandbox-voip", "from": "+5511987654321",
                           "to": "+551133334444", "status": "ringing", "startTime": 1_764_000_000})
        .to_string();
        let now = server::clock::unix_secs();
        let signature = webhook_signing::WebhookSecret::parse(secret).unwrap().sign("msg_c1", now, event.as_bytes());
        let request = self
            .http
            .post(webhook_url)
            .header("content-type", "application/json")
            .header("webhook-id", "msg_c1")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature);
        request.body(event).send().await.unwrap().status()
    }
}

/// Settings that change every option from its default.
fn every_option(world: &World, users: &[i64]) -> IntegrationSettings {
    let mut settings = world.valid_settings();
    let mut handling = CallHandling::default();
    handling.widget.ringing_sound = !handling.widget.ringing_sound;
    handling.widget.call_feedback_modal = !handling.widget.call_feedback_modal;
    handling.widget.auto_open_card = !handling.widget.auto_open_card;
    handling.widget.call_quality_rating = !handling.widget.call_quality_rating;
    handling.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
    handling.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer;
    handling.known_incoming.create_lead_when_no_active_lead = !handling.known_incoming.create_lead_when_no_active_lead;
    handling.known_incoming.note_number_when_several = !handling.known_incoming.note_number_when_several;
    handling.missed = MissedCall {
        create_task: true,
        due_in_minutes: 90,
        link_to_lead: false,
        responsible: TaskResponsible::User { user_id: users[1] },
    };
    handling.outgoing_new.create_contact_and_lead = !handling.outgoing_new.create_contact_and_lead;
    handling.placement = LeadPlacement { pipeline_id: Some(7001), status_id: Some(142) };
    settings.call_handling = handling;
    settings.extensions = ExtensionMap {
        entries: vec![
            ExtensionEntry { extension: "101".into(), user_id: users[0] },
            ExtensionEntry { extension: "102".into(), user_id: users[1] },
        ],
        fallback_user_id: Some(users[0]),
    };
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_option_saved_comes_back_for_any_admin_without_the_password() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let users = world.user_ids(ACCOUNT).await;
    let settings = every_option(&world, &users);
    let (status, saved) = world.save(ACCOUNT, json_of(&settings)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");

    let read = world.read(ACCOUNT).await;
    assert_eq!(read["active"], true);
    assert_eq!(
        read["credentials"],
        json!({"method": "password", "provider_url": world.provider_url(), "login": "agent", "has_password": true})
    );
    assert_eq!(read["call_handling"], serde_json::to_value(&settings.call_handling).unwrap());
    assert_eq!(read["extensions"], serde_json::to_value(&settings.extensions).unwrap());
    assert!(read["webhook"]["url"].as_str().unwrap().starts_with(&format!("{}/hooks/voip/", world.server)));

    // The signing secret was shown once, in the save that issued it; afterwards only its hint.
    let secret = saved["webhook"]["signing_secret"].as_str().expect("issued on the first save").to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(read["webhook"]["signing_secret"].is_null());
    assert!(secret.ends_with(read["webhook"]["signing_secret_hint"].as_str().unwrap().trim_start_matches('…')));

    let sealed: String =
        sqlx::query_scalar("SELECT voip_token FROM widget_settings").fetch_one(world.store.pool()).await.unwrap();
    assert!(sealed.starts_with("v1.") && !sealed.contains(VOIP_PASSWORD));
    let stored_secret: String =
        sqlx::query_scalar("SELECT webhook_secret FROM widget_settings").fetch_one(world.store.pool()).await.unwrap();
    assert!(!stored_secret.contains(&secret[6..]), "the signing secret is sealed at rest");
    world.assert_no_secret_leaked(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_again_without_the_password_keeps_it_and_the_webhook() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (_, first) = world.save(ACCOUNT, json_of(&world.valid_settings())).await;
    let before: String =
        sqlx::query_scalar("SELECT voip_token FROM widget_settings").fetch_one(world.store.pool()).await.unwrap();
    let mut again = world.valid_settings();
    again.credentials =
        VoipCredentials::Password { provider_url: world.provider_url(), login: "agent".into(), password: None };
    let (status, second) = world.save(ACCOUNT, json_of(&again)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["webhook"]["url"], first["webhook"]["url"]);
    assert!(second["webhook"]["signing_secret"].is_null(), "not issued again");
    let after: String =
        sqlx::query_scalar("SELECT voip_token FROM widget_settings").fetch_one(world.store.pool()).await.unwrap();
    assert_eq!(before, after);

    // Sending the stored password to another host would need it typed again.
    let mut moved = again.clone();
    moved.credentials = VoipCredentials::Password {
        provider_url: "https://provider.example.org/api".into(),
        login: "agent".into(),
        password: None,
    };
    let (status, refused) = world.save(ACCOUNT, json_of(&moved)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["error"]["fields"], json!([{"field": "credentials.password", "code": "required"}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_field_and_store_nothing() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let users = world.user_ids(ACCOUNT).await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let with_credentials = |provider_url: String, password: &str| {
        let mut settings = world.valid_settings();
        settings.credentials =
            VoipCredentials::Password { provider_url, login: "agent".into(), password: Some(password.into()) };
        json_of(&settings)
    };
    let mut duplicate = world.valid_settings();
    duplicate.extensions.entries = vec![
        ExtensionEntry { extension: "101".into(), user_id: users[0] },
        ExtensionEntry { extension: "101".into(), user_id: users[1] },
    ];
    let mut stranger = world.valid_settings();
    stranger.extensions.entries = vec![ExtensionEntry { extension: "103".into(), user_id: 999_999 }];
    let mut no_such_group = world.valid_settings();
    no_such_group.call_handling.unmapped_calls =
        shared::UnmappedCalls { to: shared::PopupAudience::Groups, user_ids: vec![], group_ids: vec![0, 424_242] };
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "refused credentials",
            with_credentials(world.provider_url(), "wrong-password"),
            json!([{"field": "credentials.password", "code": "credentials_refused"}]),
        ),
        (
            "unreachable provider",
            with_credentials(format!("http://127.0.0.1:{closed_port}/voip"), "x"),
            json!([{"field": "credentials.provider_url", "code": "unreachable"}]),
        ),
        (
            "metadata address",
            with_credentials("https://169.254.169.254/latest".into(), "x"),
            json!([{"field": "credentials.provider_url", "code": "forbidden_address"}]),
        ),
        (
            // Private networks are allowed with the local stand-in's setting (on here); link-local never is.
            "link-local address",
            with_credentials("https://169.254.10.10/api".into(), "x"),
            json!([{"field": "credentials.provider_url", "code": "forbidden_address"}]),
        ),
        (
            "duplicate extension",
            json_of(&duplicate),
            json!([{"field": "extensions.entries[1].extension", "code": "duplicate"}]),
        ),
        (
            "a user outside the account",
            json_of(&stranger),
            json!([{"field": "extensions.entries[0].user_id", "code": "unknown_user"}]),
        ),
        (
            // The main group (0) has users in the local Kommo; no user is in 424242.
            "a group no active user is in",
            json_of(&no_such_group),
            json!([{"field": "call_handling.unmapped_calls.group_ids[1]", "code": "unknown_group"}]),
        ),
    ];
    world.http.post(format!("{}/sandbox/voip/reset-stats", world.kommo)).send().await.unwrap();
    for (case, body, fields) in cases {
        let (status, reply) = world.save(ACCOUNT, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {reply}");
        assert_eq!(reply["error"]["fields"], fields, "{case}");
    }
    let (status, _) = world.save(ACCOUNT, json!({"active": true, "account_id": 2})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(world.count("widget_settings").await, 0);
    assert_eq!(world.count("voip_users").await, 0);
    let provider: Value =
        world.http.get(format!("{}/sandbox/voip/stats", world.kommo)).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        provider["requests"]["GET /voip/v1/account"]["unauthorized"], 1,
        "only the refused password reached the provider: {provider}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_the_widget_off_stops_call_processing() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (status, saved) = world.save(ACCOUNT, json_of(&world.valid_settings())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let webhook_url = saved["webhook"]["url"].as_str().unwrap().to_owned();
    let secret = saved["webhook"]["signing_secret"].as_str().unwrap().to_owned();
    assert_eq!(world.post_call(&webhook_url, &secret).await, StatusCode::OK);

    let mut off = world.valid_settings();
    off.active = false;
    let (status, view) = world.save(ACCOUNT, json_of(&off)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(world.read(ACCOUNT).await["active"], false);
    assert_eq!(world.post_call(&webhook_url, &secret).await, StatusCode::CONFLICT);

    let (status, _) = world.save(ACCOUNT, json_of(&world.valid_settings())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.post_call(&webhook_url, &secret).await, StatusCode::OK, "on again, same webhook and secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_never_sees_these_settings() {
    let world = world().await;
    world.kommo_control("/sandbox/kommo/accounts", json!({"id": OTHER_ACCOUNT, "subdomain": "other"})).await;
    world.install(ACCOUNT).await;
    world.install(OTHER_ACCOUNT).await;
    world.save(ACCOUNT, json_of(&world.valid_settings())).await;
    let other = world.read(OTHER_ACCOUNT).await;
    assert_eq!(other["active"], false);
    assert_eq!(other["credentials"]["login"], "");
    assert!(other["webhook"].is_null());
    let (status, _) = world.widget(Method::POST, "/widget/v1/settings/webhook-secret", OTHER_ACCOUNT, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to rotate in the other account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connection_asks_the_provider_and_stores_nothing() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let good = json!({"method": "api_key", "provider_url": world.provider_url(), "key": "sandbox-voip-api-key"});
    let (status, reply) = world.widget(Method::POST, "/widget/v1/settings/check", ACCOUNT, Some(good)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["name"], "Sandbox VoIP");
    let bad = json!({"method": "api_key", "provider_url": world.provider_url(), "key": "not-the-key"});
    let (status, reply) = world.widget(Method::POST, "/widget/v1/settings/check", ACCOUNT, Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply["error"]["fields"], json!([{"field": "credentials.key", "code": "credentials_refused"}]));
    assert_eq!(world.count("widget_settings").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_signing_secret_shows_the_new_one_once() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let (status, _) = world.widget(Method::POST, "/widget/v1/settings/webhook-secret", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "no webhook before the first save");
    let (_, saved) = world.save(ACCOUNT, json_of(&world.valid_settings())).await;
    let first = saved["webhook"]["signing_secret"].as_str().unwrap().to_owned();
    let (status, rotated) = world.widget(Method::POST, "/widget/v1/settings/webhook-secret", ACCOUNT, None).await;
    assert_eq!(status, StatusCode::OK);
    let second = rotated["signing_secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(rotated["url"], saved["webhook"]["url"]);
    let read = world.read(ACCOUNT).await;
    assert!(read["webhook"]["signing_secret"].is_null());
    assert!(second.ends_with(read["webhook"]["signing_secret_hint"].as_str().unwrap().trim_start_matches('…')));
    let previous: Option<String> = sqlx::query_scalar("SELECT previous_webhook_secret FROM widget_settings")
        .fetch_one(world.store.pool())
        .await
        .unwrap();
    assert!(previous.is_some(), "the previous secret keeps verifying for a while");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_saving_at_once_leave_one_whole_configuration() {
    let world = world().await;
    world.install(ACCOUNT).await;
    let users = world.user_ids(ACCOUNT).await;
    let first = every_option(&world, &users);
    let mut second = world.valid_settings();
    second.extensions.entries = vec![ExtensionEntry { extension: "105".into(), user_id: ADMIN as i64 }];
    let (a, b) = tokio::join!(world.save(ACCOUNT, json_of(&first)), world.save(ACCOUNT, json_of(&second)));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let read = world.read(ACCOUNT).await;
    let whole = |settings: &IntegrationSettings| {
        read["call_handling"] == serde_json::to_value(&settings.call_handling).unwrap()
            && read["extensions"] == serde_json::to_value(&settings.extensions).unwrap()
    };
    assert!(whole(&first) || whole(&second), "one save or the other, never a mix: {read}");
    assert_eq!(world.count("widget_settings").await, 1);
}
