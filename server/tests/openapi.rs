//! The OpenAPI document (`server/openapi.json`) checked against the code, both ways: every documented
//! operation is routed by the real router, every `.route(` in the source is documented, the examples
//! are real wire values of the `shared` types, and `GET /openapi.json` serves the file itself.

#[path = "support/database.rs"]
mod database;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use server::config::Config;
use server::http::{AppState, app};
use server::store::Store;
use shared::api::{
    ConnectionCheck, ConnectionState, ConnectionView, ErrorBody, FailedDelivery, IncomingCall, KommoUserView,
    PushTicket,
};
use shared::rules::CallResult;
use shared::{
    CallStatus, FieldError, FromWebhook, IntegrationSettings, IntegrationSettingsView, ValidationCode, VoipCredentials,
    WebhookEndpoint,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// HTTP methods as OpenAPI names them in a path item.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn document_path() -> PathBuf {
    manifest_dir().join("openapi.json")
}

fn document() -> Value {
    let text = std::fs::read_to_string(document_path()).unwrap();
    serde_json::from_str(&text).expect("server/openapi.json is valid JSON")
}

/// `(METHOD, path template)` of every operation the document describes.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("the document has paths") {
        for (key, _) in item.as_object().unwrap() {
            if METHODS.contains(&key.as_str()) {
                operations.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

struct TestRouter {
    router: Router,
    _dir: tempfile::TempDir,
}

async fn router() -> TestRouter {
    let dir = tempfile::tempdir().unwrap();
    let db_url = database::database_url(dir.path(), "test").await;
    let vars: HashMap<&str, &str> = HashMap::from([
        ("KOMMO_CLIENT_ID", "c0ffee00-0000-4000-8000-000000000000"),
        ("KOMMO_CLIENT_SECRET", "openapi-test-client-secret"),
        ("SECRET_KEYS", "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ("PUBLIC_BASE_URL", "https://voip.example.org"),
        ("DATABASE_URL", db_url.as_str()),
        // With a token, the operator endpoints are on the public router too (behind the token).
        ("OPERATOR_TOKEN", "openapi-test-operator-token-0123456789abcdef"),
    ]);
    let config = Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
    let store = Store::connect(&db_url).await.unwrap();
    TestRouter { router: app(AppState::new(config, store, CancellationToken::new())), _dir: dir }
}

impl TestRouter {
    async fn send(&self, method: &str, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let request = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(uri);
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|value| value.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, content_type, bytes)
    }

    /// Whether the router has a route for `method` + `uri`. Unmatched requests get axum's bare 404 or
    /// 405 with an empty body; a 404 of our own (an unknown webhook id) carries the JSON envelope.
    async fn routes(&self, method: &str, uri: &str) -> bool {
        let (status, _, body) = self.send(method, uri).await;
        let own_not_found =
            || serde_json::from_slice::<ErrorBody>(&body).is_ok_and(|envelope| envelope.error.code == "not_found");
        match status {
            StatusCode::METHOD_NOT_ALLOWED => false,
            StatusCode::NOT_FOUND => own_not_found(),
            _ => true,
        }
    }
}

/// `/hooks/voip/{hook_id}` becomes `/hooks/voip/placeholder`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| if segment.starts_with('{') && segment.ends_with('}') { "placeholder" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let server = router().await;
    // The probe itself tells routed from unrouted.
    assert!(server.routes("POST", "/hooks/voip/placeholder").await, "an unknown hook id is our own 404");
    assert!(!server.routes("GET", "/widget/v1/not-a-route").await, "an unknown path is unrouted");
    assert!(!server.routes("DELETE", "/widget/v1/settings").await, "an unknown method is unrouted");

    let operations = documented_operations(&document());
    assert!(!operations.is_empty());
    let mut unrouted = Vec::new();
    for (method, path) in &operations {
        if !server.routes(method, &concrete(path)).await {
            unrouted.push(format!("{method} {path}"));
        }
    }
    assert!(unrouted.is_empty(), "documented in server/openapi.json but not routed: {unrouted:?}");
}

/// Follows a local `$ref` (`#/components/...`), or returns the value itself.
fn dereference<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => document.pointer(reference.trim_start_matches('#')).expect("the reference resolves"),
        None => value,
    }
}

#[tokio::test]
async fn a_request_without_credentials_gets_a_documented_answer() {
    let server = router().await;
    let document = document();
    for (method, path) in documented_operations(&document) {
        let (status, content_type, body) = server.send(&method, &concrete(&path)).await;
        let operation = &document["paths"][&path][method.to_lowercase()];
        let response = operation["responses"]
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{method} {path} answered {status}, which the document does not list"));
        let content = dereference(&document, response).get("content").and_then(Value::as_object);
        match (content, content_type) {
            (Some(content), Some(content_type)) => {
                let media_type = content_type.split(';').next().unwrap().trim();
                assert!(
                    content.contains_key(media_type),
                    "{method} {path} answered {status} as {media_type}, which the document does not list"
                );
            }
            (None, _) => assert!(body.is_empty(), "{method} {path} answered {status} with an undocumented body"),
            (Some(_), None) => panic!("{method} {path} answered {status} without a content type"),
        }
    }
}

/// The text of a file of the workspace, relative to the server crate.
fn source(relative: &str) -> String {
    let path = manifest_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// The files whose `.route(` calls build the router.
fn router_sources() -> Vec<(String, String)> {
    let mut files: Vec<String> = std::fs::read_dir(manifest_dir().join("src/http"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".rs"))
        .map(|name| format!("src/http/{name}"))
        .collect();
    files.push("src/oauth.rs".to_owned());
    files.sort();
    files.into_iter().map(|file| (source(&file), file)).map(|(text, file)| (file, without_comments(&text))).collect()
}

/// Drops comment lines, so that a `.route(` in a doc comment is not mistaken for code.
fn without_comments(text: &str) -> String {
    text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The arguments of the call whose `(` precedes `text`: split at top-level commas, up to the matching `)`.
fn call_arguments(text: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            current.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => {
                arguments.push(current.trim().to_owned());
                return arguments;
            }
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                arguments.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    panic!("unbalanced call: {text:.80}");
}

/// Names of the calls at the top level of a method-router expression, e.g.
/// `get(a).put(b).layer(c)` gives `["get", "put", "layer"]`.
fn top_level_calls(expression: &str) -> Vec<String> {
    let mut calls = Vec::new();
    let mut depth = 0usize;
    let mut name = String::new();
    for c in expression.chars() {
        match c {
            '(' if depth == 0 => {
                // `hooks::receive` inside is at depth 1; a path prefix like `routing::get` keeps its last segment.
                let last = name.rsplit("::").next().unwrap_or_default().trim().to_owned();
                calls.push(last);
                name.clear();
                depth += 1;
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' if depth == 0 => name.clear(),
            _ if depth == 0 => name.push(c),
            _ => {}
        }
    }
    calls
}

/// The value of `const NAME: &str = "…";` wherever the path constants live.
fn resolve_constant(expression: &str) -> String {
    let name = expression.rsplit("::").next().unwrap();
    let needle = format!("const {name}: &str = \"");
    let files = ["../shared/src/api.rs", "src/oauth.rs", "src/http/mod.rs", "src/http/widget.rs", "src/http/hooks.rs"];
    let values: BTreeSet<String> = files
        .iter()
        .map(|file| source(file))
        .flat_map(|text| {
            text.match_indices(&needle)
                .map(|(at, _)| text[at + needle.len()..].split('"').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(values.len(), 1, "route path constant `{expression}` resolves to {values:?}");
    values.into_iter().next().unwrap()
}

/// `(METHOD, path)` of every `.route(` call in the router's source files.
fn routed_operations() -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (file, text) in router_sources() {
        for unsupported in [".nest(", ".nest_service(", ".route_service(", "on(MethodFilter"] {
            assert!(!text.contains(unsupported), "{file} uses `{unsupported}`: teach this test to read it");
        }
        for (at, _) in text.match_indices(".route(") {
            let mut arguments = call_arguments(&text[at + ".route(".len()..]);
            // rustfmt ends a call it spreads over lines with a comma: no argument follows it.
            if arguments.last().is_some_and(|last| last.trim().is_empty()) {
                arguments.pop();
            }
            let [path, method_router] = arguments.as_slice() else {
                panic!("{file}: `.route(` with {} arguments: {arguments:?}", arguments.len());
            };
            let path = match path.strip_prefix('"') {
                Some(literal) => literal.trim_end_matches('"').to_owned(),
                None => resolve_constant(path),
            };
            for call in top_level_calls(method_router) {
                match call.as_str() {
                    "layer" | "route_layer" | "with_state" => {}
                    method if METHODS.contains(&method) => {
                        operations.insert((method.to_uppercase(), path.clone()));
                    }
                    other => panic!("{file}: `.route({path}, …)` calls `{other}`: teach this test to read it"),
                }
            }
        }
    }
    operations
}

#[test]
fn the_route_scanner_reads_our_router_style() {
    assert_eq!(
        call_arguments(r#"paths::SETTINGS, get(get_settings).put(put_settings))"#),
        ["paths::SETTINGS", "get(get_settings).put(put_settings)"]
    );
    assert_eq!(
        top_level_calls("post(hooks::receive).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))"),
        ["post", "layer"]
    );
    assert_eq!(resolve_constant("oauth::CALLBACK_PATH"), "/oauth/kommo/callback");
    assert_eq!(resolve_constant("paths::PUSH_EVENTS"), "/widget/v1/push/events");
}

#[test]
fn every_routed_operation_is_documented_and_nothing_else() {
    let routed = routed_operations();
    assert!(routed.contains(&("GET".to_owned(), "/health".to_owned())), "the scanner found {routed:?}");
    let documented = documented_operations(&document());
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routed in server/src but missing from server/openapi.json: {undocumented:?}");
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(extra.is_empty(), "documented in server/openapi.json but no `.route(` in server/src: {extra:?}");
}

/// Deserialises `example` into `T` and serialises it back: a faithful example comes back unchanged.
fn round_trip<T: DeserializeOwned + Serialize>(example: &Value) -> Result<Value, String> {
    let value: T = serde_json::from_value(example.clone()).map_err(|error| error.to_string())?;
    Ok(serde_json::to_value(value).unwrap())
}

type RoundTrip = fn(&Value) -> Result<Value, String>;

/// The document's schemas that are `shared` wire types, with their Rust type.
fn wire_types() -> BTreeMap<&'static str, RoundTrip> {
    BTreeMap::from([
        ("FromWebhook", round_trip::<FromWebhook> as RoundTrip),
        ("IntegrationSettings", round_trip::<IntegrationSettings>),
        ("IntegrationSettingsView", round_trip::<IntegrationSettingsView>),
        ("VoipCredentials", round_trip::<VoipCredentials>),
        ("WebhookEndpoint", round_trip::<WebhookEndpoint>),
        ("ConnectionCheck", round_trip::<ConnectionCheck>),
        ("ConnectionView", round_trip::<ConnectionView>),
        ("KommoUserView", round_trip::<KommoUserView>),
        ("KommoGroupView", round_trip::<shared::api::KommoGroupView>),
        ("PushTicket", round_trip::<PushTicket>),
        ("IncomingCall", round_trip::<IncomingCall>),
        ("Caller", round_trip::<shared::api::Caller>),
        ("ActiveCalls", round_trip::<shared::api::ActiveCalls>),
        ("FieldError", round_trip::<FieldError>),
        ("ErrorBody", round_trip::<ErrorBody>),
        ("CallResult", round_trip::<CallResult>),
        ("FailedDelivery", round_trip::<FailedDelivery>),
        ("OriginateRequest", round_trip::<shared::api::OriginateRequest>),
        ("Originated", round_trip::<shared::api::Originated>),
        ("NewCallList", round_trip::<shared::api::NewCallList>),
        ("CallListView", round_trip::<shared::api::CallListView>),
        ("CurrentCallList", round_trip::<shared::api::CurrentCallList>),
        ("CallListCommand", round_trip::<shared::api::CallListCommand>),
    ])
}

/// Every example in the document: `(schema name, example)`, from schemas' `examples` and from media
/// types whose schema is a `$ref` to a component.
fn examples(document: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (name, schema) in document["components"]["schemas"].as_object().unwrap() {
        for example in schema["examples"].as_array().into_iter().flatten() {
            found.push((name.clone(), example.clone()));
        }
    }
    fn walk(value: &Value, found: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(object) => {
                let reference = object.get("schema").and_then(|schema| schema["$ref"].as_str());
                if let (Some(reference), Some(example)) = (reference, object.get("example")) {
                    let name = reference.trim_start_matches("#/components/schemas/").to_owned();
                    found.push((name, example.clone()));
                }
                object.values().for_each(|child| walk(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| walk(child, found)),
            _ => {}
        }
    }
    walk(&document["paths"], &mut found);
    walk(&document["components"]["responses"], &mut found);
    found
}

#[test]
fn examples_are_real_wire_values() {
    let document = document();
    let found = examples(&document);
    for required in ["IntegrationSettings", "IntegrationSettingsView", "FromWebhook", "ErrorBody"] {
        assert!(found.iter().any(|(name, _)| name == required), "{required} has no example");
    }
    let wire_types = wire_types();
    for (name, example) in &found {
        let schema = &document["components"]["schemas"][name];
        // The schema's own shape: no property it does not declare, every property it requires (for a
        // `oneOf`, in one of its branches).
        let branches: Vec<&Value> = match schema["oneOf"].as_array() {
            Some(branches) => branches.iter().collect(),
            None => vec![schema],
        };
        let example_object = example.as_object().unwrap();
        let fits = |branch: &Value| {
            let properties = branch["properties"].as_object().unwrap();
            example_object.keys().all(|key| properties.contains_key(key))
                && branch["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|key| example_object.contains_key(key.as_str().unwrap()))
        };
        assert!(
            branches.into_iter().any(fits),
            "{name} example declares a property its schema does not, or lacks a required one: {example}"
        );
        let Some(round_trip) = wire_types.get(name.as_str()) else {
            assert!(name == "HealthStatus", "{name} has an example but no Rust type in this test");
            continue;
        };
        match round_trip(example) {
            Ok(back) => assert_eq!(&back, example, "{name} example changes through serde"),
            Err(error) => panic!("{name} example does not deserialise: {error}\n{example:#}"),
        }
    }
    for name in wire_types.keys() {
        assert!(document["components"]["schemas"][name].is_object(), "{name} has no schema");
    }
}

/// The enum schema's values in document order.
fn enum_values(document: &Value, schema: &str) -> BTreeSet<String> {
    let values = document["components"]["schemas"][schema]["enum"].as_array();
    values.unwrap_or_else(|| panic!("{schema} has no enum")).iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

fn wire_names<T: Serialize>(values: &[T]) -> BTreeSet<String> {
    values.iter().map(|value| serde_json::to_value(value).unwrap().as_str().unwrap().to_owned()).collect()
}

#[test]
fn enums_match_the_shared_types() {
    let document = document();
    // Each `match` is exhaustive, so a new variant fails to compile here until it is listed.
    let statuses = [
        CallStatus::Ringing,
        CallStatus::Answered,
        CallStatus::Ended,
        CallStatus::Missed,
        CallStatus::Busy,
        CallStatus::Failed,
    ];
    statuses.iter().for_each(|status| match status {
        CallStatus::Ringing
        | CallStatus::Answered
        | CallStatus::Ended
        | CallStatus::Missed
        | CallStatus::Busy
        | CallStatus::Failed => {}
    });
    assert_eq!(enum_values(&document, "CallStatus"), wire_names(&statuses));

    let states = [
        ConnectionState::NotInstalled,
        ConnectionState::Installed,
        ConnectionState::NeedsReauth,
        ConnectionState::Suspended,
        ConnectionState::Disabled,
    ];
    states.iter().for_each(|state| match state {
        ConnectionState::NotInstalled
        | ConnectionState::Installed
        | ConnectionState::NeedsReauth
        | ConnectionState::Suspended
        | ConnectionState::Disabled => {}
    });
    assert_eq!(enum_values(&document, "ConnectionState"), wire_names(&states));

    let codes = ValidationCode::ALL;
    assert_eq!(enum_values(&document, "ValidationCode"), wire_names(&codes));
}

#[test]
fn error_codes_match_the_error_envelope_source() {
    // The codes are the snake_case string literals of `ApiError::into_response`.
    let text = source("src/http/error.rs");
    let body = &text[text.find("fn into_response").expect("error.rs has into_response")..];
    let codes: BTreeSet<String> = body
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| !literal.is_empty() && literal.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    assert!(codes.contains("validation") && codes.contains("internal"), "found {codes:?}");
    // ... and the codes handlers pass into the envelope: `Conflict("…"`, `Denied("…"`, and
    // `TooManyRequests { code: "…"`.
    let mut codes = codes;
    for (_, handler) in router_sources() {
        for marker in ["Conflict(\"", "Denied(\"", "TooManyRequests { code: \""] {
            for piece in handler.split(marker).skip(1) {
                codes.insert(piece.split('"').next().unwrap_or_default().to_owned());
            }
        }
    }
    assert!(codes.contains("admin_only") && codes.contains("not_your_call"), "found {codes:?}");
    let documented = document()["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect::<BTreeSet<_>>();
    assert_eq!(documented, codes);
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    found.push(reference.clone());
                }
                object.values().for_each(|child| references(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| references(child, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(document.pointer(pointer).is_some(), "{reference} does not resolve");
    }
    // Operations that need the disposable token (or the operator token) say so; every other one says it
    // needs none.
    let schemes = document["components"]["securitySchemes"].as_object().unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let operator = path == "/metrics" || path.starts_with("/operator/");
            let needs_token = operator || (path.starts_with("/widget/v1/") && path != "/widget/v1/push/events");
            let security = operation.get("security").and_then(Value::as_array);
            match security {
                Some(requirements) if needs_token => {
                    assert!(
                        requirements.iter().all(|r| r.as_object().unwrap().keys().all(|k| schemes.contains_key(k)))
                    );
                    assert!(!requirements.is_empty(), "{method} {path} names no security scheme");
                }
                Some(requirements) => assert!(requirements.is_empty(), "{method} {path} needs no token"),
                None => assert!(!needs_token, "{method} {path} must name its security"),
            }
        }
    }
}

#[tokio::test]
async fn openapi_json_serves_exactly_the_file() {
    let server = router().await;
    let (status, content_type, body) = server.send("GET", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(body, std::fs::read(document_path()).unwrap());
}
