//! The Kommo stand-in's answers checked against an outside oracle: the third-party OpenAPI description of
//! amoCRM/Kommo API v4 in the steering repository (`shared/vendor/amocrm-openapi/openapi.yaml`).
//!
//! The oracle is `sandbox::oracle` (feature `oracle`). For each operation the test resolves the 200 response's
//! schema, takes its success branch (the file models every answer as `anyOf: [<entity>, Problem]`, and
//! `Problem` alone accepts any object), and validates the stand-in's JSON against it twice: as written, and
//! "closed" (no property the description does not name). The CRM endpoints are checked request by request in
//! `kommo_crm.rs` and `kommo_faults.rs` (`support::Api`).
//! The file does not describe `/oauth2/access_token`; the token response is checked against a schema written
//! here from KOMMO.md §3.1.
//!
//! The file is found at `$KOMMO_OPENAPI`, else at `<repo>/../shared/vendor/amocrm-openapi/openapi.yaml`;
//! without it these tests fail, they are never skipped.

mod support;

use sandbox::oracle::{Oracle, success_branch};
use serde_json::{Value, json};
use support::{Harness, assert_problem};

fn oracle() -> &'static Oracle {
    Oracle::load()
}

fn openapi() -> &'static Value {
    oracle().document()
}

/// The JSON schema of the operation's 200 `application/json` response.
fn response_schema(path: &str, method: &str) -> Value {
    let schema = &openapi()["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "openapi.yaml has no 200 application/json response for {method} {path}");
    schema.clone()
}

fn component(name: &str) -> Value {
    oracle().component(name).unwrap_or_else(|| panic!("openapi.yaml has no schema {name}"))
}

fn errors(schema: &Value, instance: &Value, strict: bool) -> Vec<String> {
    oracle().errors(schema, instance, strict)
}

/// Valid as written and when closed.
fn assert_conforms(what: &str, schema: &Value, instance: &Value) {
    for strict in [false, true] {
        let found = errors(schema, instance, strict);
        let mode = if strict { "closed" } else { "as written" };
        assert!(found.is_empty(), "{what} does not match openapi.yaml ({mode}):\n{}\n{instance:#}", found.join("\n"));
    }
}

fn access(pair: &Value) -> String {
    pair["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn account_matches_the_vendor_account_info() {
    let kommo = Harness::start().await;
    let token = access(&kommo.connected(301).await);
    let schema = response_schema("/api/v4/account", "get");
    let entity = success_branch(&schema);
    assert_eq!(entity, component("AccountInfo"));
    for query in ["", "?with=uuid,amojo_id,version,amojo_rights,users_groups,datetime_settings"] {
        let body: Value = kommo.get(&format!("/api/v4/account{query}"), Some(&token)).await.json().await.unwrap();
        assert_conforms(&format!("GET /api/v4/account{query}"), &schema, &body);
        assert_conforms(&format!("GET /api/v4/account{query}"), &entity, &body);
        // KOMMO.md §2.8's base fields are all there.
        for field in [
            "id",
            "name",
            "subdomain",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
            "current_user_id",
            "country",
            "currency",
            "currency_symbol",
            "customers_mode",
            "is_unsorted_on",
            "is_loss_reason_enabled",
            "is_helpbot_enabled",
            "is_technical_account",
            "contact_name_display_order",
            "mobile_feature_version",
        ] {
            assert!(body.get(field).is_some(), "GET /api/v4/account{query} lacks {field}");
        }
    }
}

#[tokio::test]
async fn users_pages_match_the_vendor_user_list_response() {
    let kommo = Harness::start().await;
    let token = access(&kommo.connected(302).await);
    let schema = response_schema("/api/v4/users", "get");
    let entity = success_branch(&schema);
    assert_eq!(entity, component("UserListResponse"));
    for query in ["?page=1&limit=2", "?page=2&limit=2", "?limit=250", "?limit=250&with=group"] {
        let body: Value = kommo.get(&format!("/api/v4/users{query}"), Some(&token)).await.json().await.unwrap();
        assert!(!body["_embedded"]["users"].as_array().unwrap().is_empty());
        assert_conforms(&format!("GET /api/v4/users{query}"), &schema, &body);
        assert_conforms(&format!("GET /api/v4/users{query}"), &entity, &body);
        for user in body["_embedded"]["users"].as_array().unwrap() {
            for field in ["id", "name", "email", "lang", "rights"] {
                assert!(user.get(field).is_some(), "a user lacks {field}: {user}");
            }
            assert!(user["rights"]["is_active"].is_boolean() && user["rights"]["is_admin"].is_boolean());
            // KOMMO.md §2.9: the group's id in the rights, the group itself only with `with=group`.
            assert!(user["rights"]["group_id"].is_i64(), "{user}");
            let groups = &user["_embedded"]["groups"];
            if query.contains("with=group") {
                assert_eq!(groups[0]["id"], user["rights"]["group_id"], "{user}");
                assert!(groups[0]["name"].is_string(), "{user}");
            } else {
                assert!(groups.is_null(), "{user}");
            }
        }
    }
    let body: Value = kommo.get("/api/v4/users?limit=250&with=group", Some(&token)).await.json().await.unwrap();
    let mut groups: Vec<i64> = body["_embedded"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["rights"]["group_id"].as_i64().unwrap())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    assert!(groups.len() >= 2, "the seeded users are in at least two groups: {groups:?}");
}

#[tokio::test]
async fn api_errors_match_the_vendor_problem_with_all_four_fields() {
    let kommo = Harness::start().await;
    let token = access(&kommo.connected(303).await);
    let mut problem = component("Problem");
    problem["required"] = json!(["title", "type", "status", "detail"]);
    let unauthorized = assert_problem(kommo.get("/api/v4/account", Some("kat_unknown")).await, 401).await;
    let too_big = assert_problem(kommo.get("/api/v4/users?limit=251", Some(&token)).await, 422).await;
    kommo.post("/sandbox/kommo/faults", json!({ "status": 429 })).await;
    let limited = assert_problem(kommo.get("/api/v4/account", Some(&token)).await, 429).await;
    for body in [unauthorized, too_big, limited] {
        assert_conforms("an API problem", &problem, &body);
    }
}

#[tokio::test]
async fn token_responses_match_kommos_documented_shape() {
    // The vendor file does not describe the token endpoint (its README says so); if it ever does, use it here.
    assert!(
        openapi()["paths"]["/oauth2/access_token"].is_null(),
        "openapi.yaml now describes /oauth2/access_token: validate the token response against it"
    );
    // KOMMO.md §3.1: exactly these five fields.
    let schema = json!({
        "type": "object",
        "required": ["token_type", "expires_in", "server_time", "access_token", "refresh_token"],
        "properties": {
            "token_type": { "const": "Bearer" },
            "expires_in": { "type": "integer", "minimum": 1 },
            "server_time": { "type": "integer", "minimum": 1_600_000_000 },
            "access_token": { "type": "string", "minLength": 32 },
            "refresh_token": { "type": "string", "minLength": 32 },
        },
        "additionalProperties": false,
    });
    let kommo = Harness::start().await;
    let first = kommo.connected(304).await;
    assert_conforms("the code exchange's answer", &schema, &first);
    let refreshed: Value = kommo.refresh(first["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_conforms("the refresh's answer", &schema, &refreshed);
    // Refusals are problem+json too (with Kommo's OAuth `hint` besides the four fields).
    let refused = assert_problem(kommo.refresh("def50200unknown").await, 400).await;
    assert!(errors(&component("Problem"), &refused, false).is_empty(), "{refused}");
}

#[test]
fn the_oracle_catches_a_wrong_body() {
    let entity = success_branch(&response_schema("/api/v4/account", "get"));
    let wrong = json!({ "id": "31000001", "subdomain": 7, "_links": {} });
    assert_eq!(errors(&entity, &wrong, false).len(), 2, "{:?}", errors(&entity, &wrong, false));
    let extra = json!({ "id": 1, "surprise": true });
    assert!(errors(&entity, &extra, false).is_empty());
    assert_eq!(errors(&entity, &extra, true).len(), 1);
}

#[test]
fn nullable_from_openapi_3_0_becomes_a_null_type() {
    let mut schema = json!({ "type": "object", "properties": { "a": { "type": "integer", "nullable": true } } });
    sandbox::oracle::to_json_schema(&mut schema);
    assert_eq!(schema["properties"]["a"]["type"], json!(["integer", "null"]));
}

#[tokio::test]
async fn account_and_users_pass_the_oracle_by_concrete_path() {
    let kommo = Harness::start().await;
    let token = access(&kommo.connected(305).await);
    for path in ["/api/v4/account?with=uuid,amojo_id", "/api/v4/users?limit=2"] {
        let response = kommo.get(path, Some(&token)).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(oracle().validate_response("GET", path, status, &body), Ok(()));
        assert_eq!(oracle().validate_response_closed("GET", path, status, &body), Ok(()));
    }
    let empty = kommo.get("/api/v4/users?page=9", Some(&token)).await;
    assert_eq!(empty.status(), 204);
    assert_eq!(oracle().validate_response("GET", "/api/v4/users?page=9", 204, &Value::Null), Ok(()));
}
