//! Kommo REST API v4 as the server reads it for installing and settings: `GET /api/v4/account` and
//! `GET /api/v4/users`, `GET /api/v4/users/{id}` (HAL JSON, KOMMO.md §2.8-2.9). [`super::api::dispatch`] admits the request first.

use serde_json::{Value, json};

use super::api::{DEFAULT_LIMIT, Outcome, Refusal, Reply, Request, positive};
use super::ledger::{Account, GROUPS, User, group_name};

/// `GET /api/v4/account`.
pub(super) fn account(account: &Account, request: &Request) -> Outcome {
    let with: Vec<&str> =
        request.param("with").map(|with| with.split(',').map(str::trim).collect()).unwrap_or_default();
    Ok(Reply::Hal(account_json(account, request.bearer.user_id, &request.api_base, &with)))
}

/// The account as Kommo describes it, with the `with=` extras the stand-in knows.
pub fn account_json(account: &Account, current_user_id: u64, api_base: &str, with: &[&str]) -> Value {
    let (currency, currency_symbol) = account.currency();
    let mut body = json!({
        "id": account.id,
        "name": account.name,
        "subdomain": account.subdomain,
        "created_at": account.created_at,
        "created_by": 0,
        "updated_at": account.created_at,
        "updated_by": 0,
        "current_user_id": current_user_id,
        "country": account.country,
        "currency": currency,
        "currency_symbol": currency_symbol,
        "customers_mode": "disabled",
        "is_unsorted_on": true,
        "mobile_feature_version": 0,
        "is_loss_reason_enabled": true,
        "is_helpbot_enabled": false,
        "is_technical_account": false,
        "contact_name_display_order": 1,
        "_links": { "self": { "href": format!("{api_base}/api/v4/account") } },
    });
    let stable_uuid = |salt: u64| format!("{:08x}-{salt:04x}-4000-8000-{:012x}", account.id & 0xffff_ffff, account.id);
    if with.contains(&"uuid") {
        body["uuid"] = json!(stable_uuid(1));
    }
    if with.contains(&"amojo_id") {
        body["amojo_id"] = json!(stable_uuid(2));
    }
    if with.contains(&"version") {
        body["version"] = json!(1);
    }
    let mut embedded = serde_json::Map::new();
    if with.contains(&"amojo_rights") {
        embedded.insert("amojo_rights".into(), json!({ "can_direct": true, "can_create_groups": true }));
    }
    if with.contains(&"users_groups") {
        let groups: Vec<Value> = GROUPS.iter().map(|(id, name)| json!({ "id": id, "name": name })).collect();
        embedded.insert("users_groups".into(), Value::Array(groups));
    }
    if with.contains(&"datetime_settings") {
        embedded.insert(
            "datetime_settings".into(),
            json!({
                "date_pattern": "d.m.Y H:i",
                "short_date_pattern": "d.m.Y",
                "short_time_pattern": "H:i",
                "date_format": "d.m.Y",
                "time_format": "H:i",
                "timezone": "America/Sao_Paulo",
                "timezone_offset": "-03:00",
            }),
        );
    }
    if !embedded.is_empty() {
        body["_embedded"] = Value::Object(embedded);
    }
    body
}

/// Whether the request asks for the users' groups (`with=group`).
fn with_group(request: &Request) -> bool {
    request.param("with").is_some_and(|with| with.split(',').any(|part| part.trim() == "group"))
}

/// A user as Kommo lists it; `with_group` adds its group (`_embedded.groups`), as `with=group` does.
pub fn user_json_with(user: &User, api_base: &str, with_group: bool) -> Value {
    let mut body = user_json(user, api_base);
    if with_group {
        let groups: Vec<Value> = user.group_id.iter().map(|id| json!({ "id": id, "name": group_name(*id) })).collect();
        body["_embedded"] = json!({ "groups": groups });
    }
    body
}

/// A user as Kommo lists it.
pub fn user_json(user: &User, api_base: &str) -> Value {
    let all = json!({ "view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A" });
    let (entity, tasks) = if user.is_admin {
        (all, json!({ "edit": "A", "delete": "A" }))
    } else {
        (
            json!({ "view": "A", "edit": "M", "add": "A", "delete": "M", "export": "D" }),
            json!({ "edit": "M", "delete": "M" }),
        )
    };
    json!({
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "lang": user.lang,
        "rights": {
            "leads": entity,
            "contacts": entity,
            "companies": entity,
            "tasks": tasks,
            "mail_access": true,
            "catalog_access": true,
            "status_rights": [],
            "is_admin": user.is_admin,
            "is_free": false,
            "is_active": user.is_active,
            "group_id": user.group_id,
            "role_id": null,
        },
        "_links": { "self": { "href": format!("{api_base}/api/v4/users/{}", user.id) } },
    })
}

/// `GET /api/v4/users/{id}`: one user of the account, with its rights; another account's user is 404.
pub(super) fn user(account: &Account, request: &Request, id: u64) -> Outcome {
    match account.users.iter().find(|user| user.id == id) {
        Some(user) => Ok(Reply::Hal(user_json_with(user, &request.api_base, with_group(request)))),
        None => Err(Refusal::not_found(format!("User {id} not found"))),
    }
}

/// `GET /api/v4/users?page&limit&with=group`: 1-based pages of at most 250; an empty page is 204 with no body.
pub(super) fn users(account: &Account, request: &Request) -> Outcome {
    let with_group = with_group(request);
    let users = account.users.iter().map(|user| user_json_with(user, &request.api_base, with_group)).collect();
    let mut list = request.page("users", users)?;
    if let Reply::Hal(body) = &mut list {
        let limit = positive(request.param("limit"), "limit", DEFAULT_LIMIT)?;
        body["_total_items"] = json!(account.users.len());
        body["_page_count"] = json!(account.users.len().div_ceil(limit));
        body["_links"]["first"] = json!({ "href": format!("{}/api/v4/users?page=1&limit={limit}", request.api_base) });
    }
    Ok(list)
}
