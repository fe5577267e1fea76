//! Kommo REST API v4 as the server reads it: `GET /api/v4/account` and `GET /api/v4/users` (HAL JSON,
//! KOMMO.md §2.8-2.9), behind Kommo's bearer check, per-account rate limit and the tests' injected faults.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::StandIn;
use super::ledger::{Account, Bearer, Fault, FaultTarget, User};
use super::problem::{problem, too_many_requests};

/// Kommo's page size when `limit` is absent, and its maximum.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 250;

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// The answer an injected fault gives, if it names a status (a delay-only fault gives none).
pub(super) fn fault_response(stand_in: &StandIn, fault: &Fault, account_id: Option<u64>) -> Option<Response> {
    let status = StatusCode::from_u16(fault.status?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::TOO_MANY_REQUESTS {
        stand_in.ledger().count_injected_429(account_id);
        return Some(too_many_requests(fault.retry_after.unwrap_or(1)));
    }
    let detail = match status.as_u16() {
        402 => "Payment required: the account's subscription has ended",
        403 => "Access forbidden",
        500..=599 => "Internal server error (injected by the sandbox)",
        _ => "Request refused (injected by the sandbox)",
    };
    let mut response = problem(status, detail);
    if let Some(after) = fault.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    Some(response)
}

/// What every API request goes through: counted by method and path, the bearer token (401), the account's
/// one-second window (429 with `Retry-After: 1`), then injected faults.
async fn guard(stand_in: &StandIn, method: &Method, path: &str, headers: &HeaderMap) -> Result<Bearer, Response> {
    let fault = {
        let mut ledger = stand_in.ledger();
        ledger.count_request(method.as_str(), path);
        let now = Instant::now();
        let bearer = match ledger.bearer(bearer_token(headers), now) {
            Ok(bearer) => bearer,
            Err(refusal) => return Err(problem(StatusCode::UNAUTHORIZED, refusal.detail())),
        };
        if !ledger.admit(bearer.account_id, now) {
            return Err(too_many_requests(1));
        }
        match ledger.take_fault(Some(bearer.account_id), FaultTarget::Api) {
            None => return Ok(bearer),
            Some(fault) => (bearer, fault),
        }
    };
    let (bearer, fault) = fault;
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match fault_response(stand_in, &fault, Some(bearer.account_id)) {
        Some(response) => Err(response),
        None => Ok(bearer),
    }
}

fn hal(body: Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/hal+json"));
    response
}

fn withs(query: &HashMap<String, String>) -> Vec<&str> {
    query.get("with").map(|with| with.split(',').map(str::trim).collect()).unwrap_or_default()
}

/// `GET /api/v4/account`.
pub(crate) async fn account(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let stand_in = &state.stand_in;
    let bearer = match guard(stand_in, &Method::GET, "/api/v4/account", &headers).await {
        Ok(bearer) => bearer,
        Err(response) => return response,
    };
    let Some(account) = stand_in.ledger().account(bearer.account_id).cloned() else {
        return problem(StatusCode::NOT_FOUND, "Account not found");
    };
    hal(account_json(&account, bearer.user_id, &stand_in.api_base(), &withs(&query)))
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
        embedded.insert("users_groups".into(), json!([{ "id": 0, "name": "Sales" }]));
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
            "group_id": null,
            "role_id": null,
        },
        "_links": { "self": { "href": format!("{api_base}/api/v4/users/{}", user.id) } },
    })
}

/// A positive integer query parameter; the error is the 400's detail.
fn positive(query: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, String> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|value| *value > 0)
            .ok_or_else(|| format!("`{name}` must be a positive integer")),
    }
}

/// `GET /api/v4/users?page&limit`: 1-based pages of at most 250; an empty page is 204 with no body.
pub(crate) async fn users(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let stand_in = &state.stand_in;
    let bearer = match guard(stand_in, &Method::GET, "/api/v4/users", &headers).await {
        Ok(bearer) => bearer,
        Err(response) => return response,
    };
    let (page, limit) = match (positive(&query, "page", 1), positive(&query, "limit", DEFAULT_LIMIT)) {
        (Ok(page), Ok(limit)) => (page, limit),
        (Err(detail), _) | (_, Err(detail)) => return problem(StatusCode::BAD_REQUEST, &detail),
    };
    if limit > MAX_LIMIT {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "Limit 250 per page");
    }
    let Some(account) = stand_in.ledger().account(bearer.account_id).cloned() else {
        return problem(StatusCode::NOT_FOUND, "Account not found");
    };
    let total = account.users.len();
    let items: Vec<Value> = account
        .users
        .iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|user| user_json(user, &stand_in.api_base()))
        .collect();
    if items.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let base = stand_in.api_base();
    let href = |page: usize| json!({ "href": format!("{base}/api/v4/users?page={page}&limit={limit}") });
    let pages = total.div_ceil(limit);
    let mut links = json!({ "self": href(page), "first": href(1) });
    if page > 1 {
        links["prev"] = href(page - 1);
    }
    if page < pages {
        links["next"] = href(page + 1);
    }
    hal(json!({
        "_total_items": total,
        "_page": page,
        "_page_count": pages,
        "_links": links,
        "_embedded": { "users": items },
    }))
}

/// Any other `/api/v4/...`: authenticated and counted like the rest, then Kommo's 404.
pub(crate) async fn unknown(
    State(state): State<crate::State>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = guard(&state.stand_in, &method, uri.path(), &headers).await {
        return response;
    }
    problem(StatusCode::NOT_FOUND, "The stand-in does not implement this method")
}
