//! Drives the sandbox's router: disposable tokens checked independently, archive serving, the host page's
//! options and the provider stand-in posting to a real listener.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use sandbox::{Archive, ArchiveError, Config, Kommo, Vendor, app, demo_app};
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;

const SECRET: &str = "test-client-secret";
const CLIENT_ID: &str = "6f1d6c8e-0000-4000-8000-000000000001";
const WASM_MAGIC: &[u8] = b"\0asm\x01\0\0\0";

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in files {
        zip.start_file(*name, options).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn widget_zip() -> Vec<u8> {
    zip_of(&[
        ("manifest.json", br#"{"widget":{"name":"widget.name","short_description":"widget.short_description","version":"1.2.3"},"settings":{}}"#),
        ("script.js", b"define(['jquery'], function ($) { return function () { this.callbacks = {}; }; });"),
        ("style.css", b".kvoip-settings{}"),
        ("widget_bg.wasm", WASM_MAGIC),
        ("i18n/en.json", br#"{"widget":{"name":"Kommo VoIP","short_description":"Calls in Kommo"}}"#),
        ("i18n/es.json", br#"{"widget":{"name":"VoIP para Kommo","short_description":"Llamadas"}}"#),
    ])
}

fn config() -> Config {
    Config {
        archive: Archive::from_zip(&widget_zip()).unwrap(),
        vendor: Vendor {
            require_js: Bytes::from_static(b"/* require */"),
            jquery_js: Bytes::from_static(b"/* jquery */"),
        },
        kommo: Kommo {
            client_id: CLIENT_ID.to_owned(),
            client_secret: SECRET.to_owned(),
            audience: sandbox::token::audience_of("http://127.0.0.1:8080/").unwrap(),
            subdomain: "sandbox".to_owned(),
            account_id: 31_000_001,
            user_id: 5_500_001,
        },
        stand_in: sandbox::kommo_api::Settings::default(),
    }
}

async fn send(request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let response = app(config()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.into_body().collect().await.unwrap().to_bytes())
}

async fn get(uri: &str, cookie: Option<&str>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(request.body(Body::empty()).unwrap()).await
}

async fn post_json(uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_owned()));
    let (status, _, bytes) = send(request.unwrap()).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Checks an HS256 JWT's signature by hand (no JWT library).
fn hs256_signature_is_valid(token: &str, secret: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact token has three parts");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    mac.verify_slice(&signature).is_ok()
}

/// Verifies an HS256 JWT keyed with `secret`, returning its header and claims.
fn verify_hs256(token: &str, secret: &str) -> (Value, Value) {
    assert!(hs256_signature_is_valid(token, secret), "the signature is HMAC-SHA256 keyed with the client secret");
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn token_is_a_kommo_disposable_jwt_signed_with_the_client_secret() {
    let (status, body) = post_json("/sandbox/token", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in"], 1800);
    let (header, claims) = verify_hs256(body["token"].as_str().unwrap(), SECRET);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["iss"], "https://sandbox.kommo.com");
    assert_eq!(claims["aud"], "http://127.0.0.1:8080");
    assert_eq!(claims["account_id"], 31_000_001);
    assert_eq!(claims["user_id"], 5_500_001);
    assert_eq!(claims["subdomain"], "sandbox");
    assert_eq!(claims["client_uuid"], CLIENT_ID);
    assert_eq!(claims["is_admin"], true);
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - unix_now()).abs() <= 5, "iat is now");
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 1800);
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 36, "jti is a UUID: {jti}");
}

#[tokio::test]
async fn token_signed_with_another_secret_does_not_verify() {
    let (_, body) = post_json("/sandbox/token", "{}").await;
    let token = body["token"].as_str().unwrap();
    assert!(hs256_signature_is_valid(token, SECRET));
    assert!(!hs256_signature_is_valid(token, "another-secret"));
}

#[tokio::test]
async fn token_request_can_act_as_another_account_user_and_subdomain() {
    let (status, body) =
        post_json("/sandbox/token", r#"{"account_id": 42, "user_id": 7, "subdomain": "other-shop"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (_, claims) = verify_hs256(body["token"].as_str().unwrap(), SECRET);
    assert_eq!(claims["account_id"], 42);
    assert_eq!(claims["user_id"], 7);
    assert_eq!(claims["subdomain"], "other-shop");
    assert_eq!(claims["iss"], "https://other-shop.kommo.com");
}

#[tokio::test]
async fn each_token_has_its_own_jti() {
    let (_, first) = post_json("/sandbox/token", "").await;
    let (_, second) = post_json("/sandbox/token", "").await;
    let jti = |body: &Value| verify_hs256(body["token"].as_str().unwrap(), SECRET).1["jti"].clone();
    assert_ne!(jti(&first), jti(&second));
}

#[tokio::test]
async fn token_request_with_a_bad_subdomain_or_unknown_field_is_refused() {
    let (status, body) = post_json("/sandbox/token", r#"{"subdomain": "evil.com/x"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, _) = post_json("/sandbox/token", r#"{"role": "admin"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_admin_claim_is_minted_as_asked_or_left_out() {
    let claims_of = |body: &Value| verify_hs256(body["token"].as_str().unwrap(), SECRET).1;
    let (_, body) = post_json("/sandbox/token", r#"{"is_admin": false}"#).await;
    assert_eq!(claims_of(&body)["is_admin"], false);
    let (_, body) = post_json("/sandbox/token", r#"{"user_id": 42}"#).await;
    assert_eq!(claims_of(&body)["is_admin"], false, "only the configured user is the sandbox's admin");
    let (_, body) = post_json("/sandbox/token", r#"{"omit_is_admin": true}"#).await;
    assert!(claims_of(&body).get("is_admin").is_none(), "as in Kommo's documented example");
}

#[tokio::test]
async fn archive_files_are_served_with_browser_content_types() {
    let (status, headers, body) = get("/widget/widget_bg.wasm?v=1.2.3", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/wasm");
    assert_eq!(&body[..], WASM_MAGIC);

    let (status, headers, body) = get("/widget/script.js?v=1.2.3", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(body.starts_with(b"define("));

    let (_, headers, _) = get("/widget/style.css", None).await;
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let (_, headers, _) = get("/widget/i18n/en.json", None).await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn files_outside_the_archive_are_not_found() {
    for uri in ["/widget/nope.js", "/widget/../Cargo.toml", "/widget/i18n", "/vendor/underscore.js"] {
        let (status, _, _) = get(uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn vendored_require_and_jquery_are_served_as_javascript() {
    for (uri, content) in [("/vendor/require.js", "/* require */"), ("/vendor/jquery.js", "/* jquery */")] {
        let (status, headers, body) = get(uri, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(&body[..], content.as_bytes());
    }
}

#[tokio::test]
async fn block_wasm_page_sets_a_cookie_that_hides_only_the_wasm() {
    let (status, headers, _) = get("/?block_wasm=1", None).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("sandbox_block_wasm=1;"), "{cookie}");
    assert!(cookie.contains("Path=/widget"));

    let (status, _, _) = get("/widget/widget_bg.wasm", Some("sandbox_block_wasm=1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get("/widget/script.js", Some("sandbox_block_wasm=1")).await;
    assert_eq!(status, StatusCode::OK);

    let (_, headers, _) = get("/", None).await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("Max-Age=0"), "a normal page load clears the block: {cookie}");
}

#[tokio::test]
async fn strict_csp_page_forbids_compiling_wasm() {
    let (_, headers, _) = get("/?csp=strict", None).await;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, "script-src 'self' 'unsafe-inline'");
    let (_, headers, _) = get("/", None).await;
    assert!(headers.get("content-security-policy").is_none());
}

#[tokio::test]
async fn host_page_boots_the_archive_script_in_the_requested_language() {
    let (status, headers, body) = get("/?lang=es", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(body.to_vec()).unwrap();
    let start = html.find(r#"<script type="application/json" id="sandbox-boot">"#).unwrap();
    let json_start = html[start..].find('>').unwrap() + start + 1;
    let json_end = html[json_start..].find("</script>").unwrap() + json_start;
    let boot: Value = serde_json::from_str(&html[json_start..json_end]).unwrap();
    assert_eq!(boot["lang"], "es");
    assert_eq!(boot["script_url"], "/widget/script.js?v=1.2.3");
    assert_eq!(boot["widget"]["name"], "VoIP para Kommo");
    assert_eq!(boot["widget"]["code"], "kvoip");
    assert_eq!(boot["settings"], json!({ "active": "N" }));
    assert_eq!(boot["account"]["id"], 31_000_001);
    assert!(html.contains(r#"<script src="/vendor/require.js"></script>"#));

    let (_, _, body) = get("/?lang=xx", None).await;
    assert!(String::from_utf8(body.to_vec()).unwrap().contains(r#""lang":"en""#), "unknown languages fall back to en");
}

/// The page's boot JSON and its HTML.
fn boot_of(body: &Bytes) -> (Value, String) {
    let html = String::from_utf8(body.to_vec()).unwrap();
    let start = html.find(r#"<script type="application/json" id="sandbox-boot">"#).unwrap();
    let json_start = html[start..].find('>').unwrap() + start + 1;
    let json_end = html[json_start..].find("</script>").unwrap() + json_start;
    (serde_json::from_str(&html[json_start..json_end]).unwrap(), html)
}

#[tokio::test]
async fn the_demo_page_shows_the_sample_lead_and_offers_the_sample_callers() {
    let demo = || demo_app(config(), sandbox::voip::Settings::default());
    let response = demo().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    let (boot, html) = boot_of(&response.into_body().collect().await.unwrap().to_bytes());
    // The card is the sample contact's lead, and Kommo's current card is that lead.
    assert_eq!(boot["card_id"], 30_000_001);
    for shown in [
        "<h1 class=\"sandbox-card__title\">Website redesign</h1>",
        ">Qualified<",
        ">R$ 12,500<",
        ">Juan Pérez<",
        ">Maria Silva<",
        // Kommo's links for add_action: plain text until the widget registers a handler (host.js).
        r#"<a class="sandbox-phone" data-action="phone" data-value="+55 11 98765-4321">+55 11 98765-4321</a>"#,
        r#"<a class="sandbox-email" data-action="email" data-value="maria.silva@example.com">maria.silva@example.com</a>"#,
    ] {
        assert!(html.contains(shown), "the card lacks {shown}");
    }
    // The call panel offers the three callers (the first picked), a typed number, and the provider's extensions.
    let numbers: Vec<&str> =
        boot["samples"].as_array().unwrap().iter().map(|c| c["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["+5511987654321", "+551134567800", "+5521976543210"]);
    for option in [
        r#"<option value="+5511987654321" data-hint="Contact of Juan Pérez, one open lead: Website redesign (R$ 12,500, Qualified)">Maria Silva · +55 11 98765-4321</option>"#,
        r#"<option value="+551134567800""#,
        r#"<option value="+5521976543210""#,
        r#"<option value="">Another number…</option>"#,
        r#"id="sandbox-call-from" value="+5511987654321""#,
        r#"<option value="105">"#,
    ] {
        assert!(html.contains(option), "the panel lacks {option}");
    }
    for id in
        ["sandbox-simulate-call", "sandbox-call-answer", "sandbox-call-end", "sandbox-call-miss", "sandbox-call-state"]
    {
        assert!(html.contains(&format!(r#"id="{id}""#)), "the panel lacks #{id}");
    }
    let response = demo().oneshot(Request::get("/sandbox/samples").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Another account (a browser test's) gets a placeholder card and no samples.
    let response = demo().oneshot(Request::get("/?account=77").body(Body::empty()).unwrap()).await.unwrap();
    let (boot, html) = boot_of(&response.into_body().collect().await.unwrap().to_bytes());
    assert_eq!((boot["card_id"].as_u64(), boot["samples"].clone()), (Some(1), json!([])));
    assert!(html.contains("Sandbox deal #1") && !html.contains("Website redesign"));
    assert!(html.contains(
        r#"<select name="caller" id="sandbox-call-caller"><option value="">Another number…</option></select>"#
    ));
}

/// `GET /sandbox/lists?account_id=` of the demo sandbox.
async fn demo_lists(account: u64) -> (StatusCode, Value) {
    let demo = demo_app(config(), sandbox::voip::Settings::default());
    let uri = format!("/sandbox/lists?account_id={account}");
    let response = demo.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    (status, serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap_or(Value::Null))
}

fn column<'a>(rows: &'a Value, key: &str) -> Vec<&'a Value> {
    rows.as_array().unwrap().iter().map(|row| &row[key]).collect()
}

#[tokio::test]
async fn the_demo_lists_hold_five_contacts_and_five_leads_with_and_without_numbers() {
    let (status, lists) = demo_lists(31_000_001).await;
    assert_eq!(status, StatusCode::OK);
    let contacts = &lists["contacts"];
    assert_eq!(
        column(contacts, "name"),
        ["Maria Silva", "Bruno Costa", "Carla Dias", "Diego Ramos", "Elisa Moura"]
            .map(|name| json!(name))
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(column(contacts, "id")[0], &json!(20_000_001), "the sample contact keeps the first id");
    assert_eq!(contacts[0]["type"], "contact");
    assert_eq!(contacts[0]["phones"], json!(["+55 11 98765-4321"]));
    assert_eq!(contacts[2]["phones"], json!([]), "Carla Dias has no number");
    assert_eq!(contacts[3]["phones"], json!([sandbox::samples::NO_ANSWER_PHONE]));
    assert_eq!(contacts[4]["phones"].as_array().unwrap().len(), 2, "Elisa Moura has two");

    let companies = &lists["companies"];
    assert_eq!(column(companies, "name"), [&json!("Acme Ltda"), &json!("Globex Brasil"), &json!("Initech ME")]);
    assert_eq!((companies[0]["id"].as_u64(), companies[0]["type"].as_str()), (Some(25_000_001), Some("company")));
    assert_eq!(companies[2]["phones"], json!([]));

    let leads = lists["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 5);
    assert_eq!((leads[0]["id"].as_u64(), leads[0]["type"].as_str()), (Some(30_000_001), Some("lead")));
    let lead = |name: &str| leads.iter().find(|lead| lead["name"] == name).unwrap();
    assert_eq!(lead("Website redesign")["contact"], "Maria Silva");
    assert_eq!(lead("Website redesign")["phones"], json!(["+55 11 98765-4321"]), "the main contact's number");
    assert_eq!(
        (lead("Office move")["contact"].as_str(), lead("Office move")["phones"].clone()),
        (Some("Carla Dias"), json!([]))
    );
    let pilot = lead("Call center pilot");
    assert_eq!((pilot["contact"].clone(), pilot["company"].as_str()), (Value::Null, Some("Globex Brasil")));
    assert_eq!(pilot["phones"], json!(["+55 11 2222-3333"]), "no contact: the company's number");
    assert_eq!(lead("Website redesign")["stage"], "Qualified");

    // An account the Kommo stand-in does not know is 404.
    let (status, _) = demo_lists(77).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_opens_on_a_list_in_its_area_and_knows_the_provider_account() {
    for (query, view, area) in [
        ("", "card", "lcard"),
        ("?area=clist", "contacts", "clist"),
        ("?area=llist", "leads", "llist"),
        ("?view=companies", "companies", "clist"),
        ("?view=leads", "leads", "llist"),
        ("?view=card&area=ccard", "card", "ccard"),
        ("?view=nonsense", "card", "lcard"),
    ] {
        let (_, _, body) = get(&format!("/{query}"), None).await;
        let (boot, _) = boot_of(&body);
        assert_eq!((boot["view"].as_str(), boot["area"].as_str()), (Some(view), Some(area)), "{query}");
    }
    let (_, _, body) = get("/", None).await;
    let (boot, html) = boot_of(&body);
    assert_eq!(boot["provider"], json!({ "account_id": "sandbox-voip", "webhook": false }));
    assert_eq!(boot["reveal_url"], "http://127.0.0.1:8080/widget/v1/settings/webhook/reveal");
    assert_eq!(boot["demo"], false);
    // The lists, their selection and Kommo's "More" menu with the widget's entry, for browser tests to drive.
    for id in [
        "sandbox-nav-leads",
        "sandbox-nav-contacts",
        "sandbox-tab-contacts",
        "sandbox-tab-companies",
        "sandbox-view-card",
        "sandbox-view-list",
        "sandbox-list-rows",
        "sandbox-list-actions",
        "sandbox-list-more",
        "sandbox-list-more-menu",
        "sandbox-list-widget-action",
        "sandbox-kommo-messages",
        "sandbox-provider-wired",
    ] {
        assert!(html.contains(&format!(r#"id="{id}""#)), "the page lacks #{id}");
    }
    assert!(html.contains(r#"data-widget-code="kvoip""#));
    // The placeholder card has no number to click.
    assert!(html.contains(r#"<dd class="sandbox-card__phones">—</dd>"#));
}

#[tokio::test]
async fn host_page_can_act_as_another_account() {
    let (_, _, body) = get("/?account=77", None).await;
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains(r#""account":{"id":77,"#), "{html}");
    // The page installs a fresh account before loading the widget, then waits for the server's connection.
    assert!(
        html.contains(r#""install":{"connection_url":"http://127.0.0.1:8080/widget/v1/connection","installed":false}"#)
    );
}

#[test]
fn archive_without_a_root_manifest_is_refused() {
    let nested = zip_of(&[("kvoip/manifest.json", br#"{"widget":{"version":"1"}}"#)]);
    assert!(matches!(Archive::from_zip(&nested), Err(ArchiveError::NoManifest)));
    let no_version = zip_of(&[("manifest.json", br#"{"widget":{}}"#)]);
    assert!(matches!(Archive::from_zip(&no_version), Err(ArchiveError::NoVersion)));
    assert!(matches!(Archive::from_zip(b"not a zip"), Err(ArchiveError::Zip(_))));
}

/// A stand-in webhook receiver on a real port, remembering what it received.
async fn webhook_receiver(status: StatusCode) -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let router = axum::Router::new().route(
        "/hooks/voip/{hook}",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                (status, axum::Json(json!({ "stored": status == StatusCode::OK })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}/hooks/voip/h1"), received)
}

#[tokio::test]
async fn provider_call_posts_a_from_webhook_event_and_mirrors_the_upstream_status() {
    let (url, received) = webhook_receiver(StatusCode::OK).await;
    let request = json!({ "webhook_url": url, "call_id": "c-7", "from": "+5511999990000", "to": "+5511333330000",
        "status": "ringing", "extension": "101" });
    let (status, body) = post_json("/sandbox/provider/call", &request.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["upstream_status"], 200);
    assert_eq!(body["upstream_body"], json!({ "stored": true }));

    let event = received.lock().unwrap().pop().unwrap();
    let parsed: shared::FromWebhook = serde_json::from_value(event.clone()).expect("the wire form of FromWebhook");
    assert_eq!(parsed.call_id, "c-7");
    assert_eq!(parsed.voip_account_id, "sandbox-voip");
    assert_eq!(parsed.status, shared::CallStatus::Ringing);
    assert_eq!(parsed.extension.as_deref(), Some("101"));
    assert!((parsed.start_time - unix_now()).abs() <= 5);
    assert!(event.get("startTime").is_some() && event.get("callId").is_some(), "camelCase on the wire: {event}");
}

#[tokio::test]
async fn provider_call_reports_a_refusing_webhook_with_its_status() {
    let (url, _) = webhook_receiver(StatusCode::NOT_FOUND).await;
    let request = json!({ "webhook_url": url, "from": "1", "to": "2", "status": "missed" });
    let (status, body) = post_json("/sandbox/provider/call", &request.to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["upstream_status"], 404);
    assert!(body["call_id"].as_str().unwrap().starts_with("sandbox-"));
}

#[tokio::test]
async fn provider_call_never_leaves_this_machine() {
    let request =
        json!({ "webhook_url": "http://example.com/hooks/voip/x", "from": "1", "to": "2", "status": "ringing" });
    let (status, _) = post_json("/sandbox/provider/call", &request.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn provider_call_to_a_closed_port_is_a_bad_gateway() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let request =
        json!({ "webhook_url": format!("http://{addr}/hooks/voip/x"), "from": "1", "to": "2", "status": "ringing" });
    let (status, body) = post_json("/sandbox/provider/call", &request.to_string()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn provider_calls_play_one_call_from_ring_to_its_end() {
    let (url, received) = webhook_receiver(StatusCode::OK).await;
    let post = |body: Value| async move { post_json("/sandbox/provider/call", &body.to_string()).await };
    let call = |status: &str| {
        json!({ "webhook_url": url, "from": "+5511987654321", "to": "+5511333330000",
        "extension": "102", "status": status })
    };
    let (status, rang) = post(call("ringing")).await;
    assert_eq!(status, StatusCode::OK);
    let (call_id, start_time) = (rang["call_id"].as_str().unwrap().to_owned(), rang["start_time"].as_i64().unwrap());
    assert!((start_time - unix_now()).abs() <= 5);
    // Later events of the same call repeat its id and start time; the end carries the duration.
    let later = |status: &str, extra: Value| {
        let mut body = call(status);
        body["call_id"] = json!(call_id);
        body["start_time"] = json!(start_time - 30);
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    assert_eq!(post(later("answered", json!({}))).await.0, StatusCode::OK);
    let (status, ended) = post(later("ended", json!({ "duration": 42 }))).await;
    assert_eq!((status, ended["call_id"].as_str()), (StatusCode::OK, Some(call_id.as_str())));
    assert_eq!(ended["start_time"], start_time - 30);

    let events: Vec<shared::FromWebhook> =
        received.lock().unwrap().iter().map(|event| serde_json::from_value(event.clone()).unwrap()).collect();
    let played: Vec<(&str, shared::CallStatus, Option<u32>)> =
        events.iter().map(|event| (event.call_id.as_str(), event.status, event.duration)).collect();
    assert_eq!(
        played,
        [
            (call_id.as_str(), shared::CallStatus::Ringing, None),
            (call_id.as_str(), shared::CallStatus::Answered, None),
            (call_id.as_str(), shared::CallStatus::Ended, Some(42)),
        ]
    );
    assert_eq!((events[1].start_time, events[2].start_time), (start_time - 30, start_time - 30));
    assert!(events.iter().all(|event| event.extension.as_deref() == Some("102")));
    // A field the provider stand-in does not know is still refused.
    let (status, _) =
        post(json!({ "webhook_url": url, "from": "1", "to": "2", "status": "missed", "recording": "x" })).await;
    assert!(status.is_client_error(), "{status}");
}
