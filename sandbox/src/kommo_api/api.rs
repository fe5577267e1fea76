//! Every `/api/v4/...` request (and `POST /api/v2/events`) goes through [`dispatch`]: counted by method and path, the bearer token (401),
//! the account's one-second window (429), injected faults (before the handler, or after it with
//! `after_commit`), the handler itself under the ledger's lock, and, for writes, the write log.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::check::{FieldError, INVALID_TYPE, ItemErrors, NOT_SUPPORTED_CHOICE};
use super::crm::EntityType;
use super::ledger::{Bearer, Desk, FaultScope, FaultTarget, Ledger, Write};
use super::problem::{problem, too_many_requests, validation_failed};
use super::{faults, handlers, rest, unix_now, webhooks};

/// Kommo's page size when `limit` is absent, and its maximum.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 250;

/// What a handler answers when it succeeds.
pub(crate) enum Reply {
    /// 200 `application/hal+json`.
    Hal(Value),
    /// 204 with no body: an empty search, list or page.
    NoContent,
    /// 202 with no body: a call notification was accepted.
    Accepted,
}

/// What a handler answers when it refuses.
#[derive(Debug)]
pub(crate) enum Refusal {
    Problem(StatusCode, String),
    /// 400 with `validation-errors`.
    Validation(Vec<ItemErrors>),
}

impl Refusal {
    pub fn bad_request(detail: impl Into<String>) -> Refusal {
        Refusal::Problem(StatusCode::BAD_REQUEST, detail.into())
    }

    pub fn not_found(detail: impl Into<String>) -> Refusal {
        Refusal::Problem(StatusCode::NOT_FOUND, detail.into())
    }
}

pub(crate) type Outcome = Result<Reply, Refusal>;

fn respond(outcome: Outcome) -> Response {
    match outcome {
        Ok(Reply::Hal(body)) => {
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/hal+json"));
            response
        }
        Ok(Reply::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Ok(Reply::Accepted) => StatusCode::ACCEPTED.into_response(),
        Err(Refusal::Problem(status, detail)) => problem(status, &detail),
        Err(Refusal::Validation(items)) => validation_failed(&items),
    }
}

/// An admitted API request as handlers see it.
pub(crate) struct Request {
    /// `/api/v4/...` (or `/api/v2/events`), without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub bearer: Bearer,
    /// `http://{api_host}`: the base of `_links`.
    pub api_base: String,
    /// Unix seconds.
    pub now: i64,
}

impl Request {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, `name[]` and `name[N]` (`filter[id][]=1&filter[id][]=2`).
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(key, _)| {
                key == name
                    || key
                        .strip_prefix(name)
                        .and_then(|rest| rest.strip_prefix('['))
                        .and_then(|rest| rest.strip_suffix(']'))
                        .is_some_and(|index| index.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Every value of a filter given as numbers; a value that is not one is a 400.
    pub fn ids(&self, name: &str) -> Result<Vec<u64>, Refusal> {
        self.params(name)
            .iter()
            .flat_map(|value| value.split(','))
            .map(|value| {
                value.trim().parse::<u64>().map_err(|_| Refusal::bad_request(format!("`{name}` must hold ids")))
            })
            .collect()
    }

    /// Whether `with=` names `extra`.
    pub fn with(&self, extra: &str) -> bool {
        self.param("with").is_some_and(|with| with.split(',').any(|item| item.trim() == extra))
    }

    /// One page of `items` as a HAL list under `_embedded.{key}`: 1-based `page`, `limit` ≤ 250 (else 422),
    /// `_links.next` while more pages exist; an empty page is 204.
    pub fn page(&self, key: &str, items: Vec<Value>) -> Outcome {
        self.page_of(key, items, |item| item)
    }

    /// [`Request::page`] of entities that are rendered only once their page is cut: `render` runs for the
    /// page's items alone.
    pub fn page_of<T>(&self, key: &str, items: Vec<T>, render: impl FnMut(T) -> Value) -> Outcome {
        let page = positive(self.param("page"), "page", 1)?;
        let limit = positive(self.param("limit"), "limit", DEFAULT_LIMIT)?;
        if limit > MAX_LIMIT {
            return Err(Refusal::Problem(StatusCode::UNPROCESSABLE_ENTITY, "Limit 250 per page".into()));
        }
        let total = items.len();
        let items: Vec<Value> =
            items.into_iter().skip((page - 1).saturating_mul(limit)).take(limit).map(render).collect();
        if items.is_empty() {
            return Ok(Reply::NoContent);
        }
        let mut links = json!({ "self": { "href": self.href(page, limit) } });
        if page > 1 {
            links["prev"] = json!({ "href": self.href(page - 1, limit) });
        }
        if page.saturating_mul(limit) < total {
            links["next"] = json!({ "href": self.href(page + 1, limit) });
        }
        Ok(Reply::Hal(json!({ "_page": page, "_links": links, "_embedded": { key: items } })))
    }

    /// A listing of entities as Kommo pages it: kept when `filter[updated_at]` admits their `updated_at`
    /// ([`Request::updated_window`]), sorted by `order[...]` ([`Request::order`]; ties by id ascending), then
    /// one page of them rendered by `render` ([`Request::page_of`]).
    pub fn listing<T>(
        &self,
        key: &str,
        mut items: Vec<T>,
        stamp: impl Fn(&T) -> (u64, i64),
        render: impl FnMut(T) -> Value,
    ) -> Outcome {
        let window = self.updated_window()?;
        let order = self.order()?;
        items.retain(|item| window.admits(stamp(item).1));
        match order {
            Order::Id(Direction::Asc) => items.sort_by_key(|item| stamp(item).0),
            Order::Id(Direction::Desc) => items.sort_by_key(|item| std::cmp::Reverse(stamp(item).0)),
            Order::UpdatedAt(direction) => items.sort_by(|a, b| {
                let ((a_id, a_at), (b_id, b_at)) = (stamp(a), stamp(b));
                let by_time = match direction {
                    Direction::Asc => a_at.cmp(&b_at),
                    Direction::Desc => b_at.cmp(&a_at),
                };
                by_time.then(a_id.cmp(&b_id))
            }),
        }
        self.page_of(key, items, render)
    }

    /// `filter[updated_at][from]` and `filter[updated_at][to]` (unix seconds, both inclusive), or
    /// `filter[updated_at]=` one second; a value that is not an integer is a 400 `validation-errors`.
    pub fn updated_window(&self) -> Result<Window, Refusal> {
        let seconds = |key: &str, path: &str| -> Result<Option<i64>, Refusal> {
            match self.param(key).map(str::trim).filter(|value| !value.is_empty()) {
                None => Ok(None),
                Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                    query_refusal(INVALID_TYPE, path, format!("`{key}` must be unix seconds, got `{text}`."))
                }),
            }
        };
        let exact = seconds("filter[updated_at]", "filter.updated_at")?;
        let from = seconds("filter[updated_at][from]", "filter.updated_at.from")?.or(exact);
        let to = seconds("filter[updated_at][to]", "filter.updated_at.to")?.or(exact);
        Ok(Window { from, to })
    }

    /// `order[updated_at]` or `order[id]` = `asc` | `desc`; by id ascending when absent (stable across pages).
    /// Another field or value is a 400 `validation-errors`.
    pub fn order(&self) -> Result<Order, Refusal> {
        let Some((key, value)) = self.query.iter().find(|(key, _)| key == "order" || key.starts_with("order[")) else {
            return Ok(Order::Id(Direction::Asc));
        };
        let field = key.strip_prefix("order[").and_then(|rest| rest.strip_suffix(']')).unwrap_or_default();
        let path = format!("order.{field}");
        let direction = match value.trim().to_ascii_lowercase().as_str() {
            "asc" => Direction::Asc,
            "desc" => Direction::Desc,
            other => {
                let detail = format!("`{key}` must be asc or desc, got `{other}`.");
                return Err(query_refusal(NOT_SUPPORTED_CHOICE, &path, detail));
            }
        };
        match field {
            "id" => Ok(Order::Id(direction)),
            "updated_at" => Ok(Order::UpdatedAt(direction)),
            _ => Err(query_refusal(NOT_SUPPORTED_CHOICE, &path, format!("`{key}`: order by updated_at or id."))),
        }
    }

    /// This request's URL with `page` and `limit` set.
    fn href(&self, page: usize, limit: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in self.query.iter().filter(|(key, _)| key != "page" && key != "limit") {
            query.append_pair(key, value);
        }
        query.append_pair("page", &page.to_string()).append_pair("limit", &limit.to_string());
        format!("{}{}?{}", self.api_base, self.path, query.finish())
    }
}

/// A refused query parameter, as Kommo's validation errors name it: `request_id` "0", the dotted `path`.
fn query_refusal(code: &'static str, path: &str, detail: String) -> Refusal {
    let errors = vec![FieldError { code, path: path.to_owned(), detail }];
    Refusal::Validation(vec![ItemErrors { request_id: "0".to_owned(), errors }])
}

/// The `updated_at` seconds a listing keeps (inclusive bounds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    pub fn admits(&self, updated_at: i64) -> bool {
        self.from.is_none_or(|from| updated_at >= from) && self.to.is_none_or(|to| updated_at <= to)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Asc,
    Desc,
}

/// A listing's `order[...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Id(Direction),
    UpdatedAt(Direction),
}

/// A positive integer query parameter; the error is a 400.
pub fn positive(value: Option<&str>, name: &str, default: usize) -> Result<usize, Refusal> {
    match value {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|value| *value > 0)
            .ok_or_else(|| Refusal::bad_request(format!("`{name}` must be a positive integer"))),
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

fn is_write(method: &Method) -> bool {
    [Method::POST, Method::PATCH, Method::PUT, Method::DELETE].contains(method)
}

/// Any `/api/v4/...` request, and `/api/v2/events`.
pub(crate) async fn dispatch(
    State(state): State<crate::State>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stand_in = &state.stand_in;
    let path = uri.path().to_owned();
    let write = is_write(&method);
    let parsed: Result<Value, serde_json::Error> =
        if body.iter().all(u8::is_ascii_whitespace) { Ok(Value::Null) } else { serde_json::from_slice(&body) };
    let logged_body = match &parsed {
        Ok(value) => value.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let log = |ledger: &mut Ledger, account_id: u64, status: u16, committed: bool| {
        if write {
            let (method, path, body) = (method.to_string(), path.clone(), logged_body.clone());
            ledger.record_write(Write { account_id, method, path, body, status, committed });
        }
    };

    let (bearer, fault) = {
        let mut ledger = stand_in.ledger();
        ledger.count_request(method.as_str(), &path);
        let now = Instant::now();
        let bearer = match ledger.bearer(bearer_token(&headers), now) {
            Ok(bearer) => bearer,
            Err(refusal) => return problem(StatusCode::UNAUTHORIZED, refusal.detail()),
        };
        if !ledger.admit(bearer.account_id, &format!("{method} {path}"), now) {
            log(&mut ledger, bearer.account_id, 429, false);
            return too_many_requests(1);
        }
        let scope = FaultScope {
            account_id: Some(bearer.account_id),
            target: FaultTarget::Api,
            method: method.as_str(),
            path: &path,
        };
        let fault = ledger.take_fault(&scope);
        if let Some(fault) = &fault
            && !fault.after_commit
            && let Some(status) = fault.answer_status()
        {
            log(&mut ledger, bearer.account_id, status, false);
        }
        (bearer, fault)
    };
    let account_id = bearer.account_id;
    let deferred = match fault {
        Some(fault) if fault.after_commit => Some(fault),
        Some(fault) => match faults::before(stand_in, &fault, Some(account_id)).await {
            Some(response) => return response,
            None => None,
        },
        None => None,
    };

    let served = {
        let mut ledger = stand_in.ledger();
        let outcome = match parsed {
            Err(_) => Err(Refusal::bad_request("The request body is not valid JSON")),
            Ok(body) => {
                let request = Request {
                    path: path.clone(),
                    query: form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect(),
                    body,
                    bearer,
                    api_base: stand_in.api_base(),
                    now: unix_now(),
                };
                match ledger.desk(account_id) {
                    Some(mut desk) => route(&mut desk, &method, &request),
                    None => Err(Refusal::not_found("Account not found")),
                }
            }
        };
        let response = respond(outcome);
        let status = response.status().as_u16();
        let answered = deferred.as_ref().and_then(|fault| fault.answer_status()).unwrap_or(status);
        log(&mut ledger, account_id, answered, response.status().is_success());
        stand_in.notify(ledger, account_id);
        response
    };
    match deferred {
        Some(fault) => faults::after(stand_in, &fault, Some(account_id), served).await,
        None => served,
    }
}

/// The handler of `METHOD /api/v4/...` (and of `/api/v2/events`); what the stand-in does not implement is
/// Kommo's 404.
fn route(desk: &mut Desk<'_>, method: &Method, request: &Request) -> Outcome {
    if request.path.trim_end_matches('/') == "/api/v2/events" {
        return match method.as_str() {
            "POST" => handlers::create_events(desk, request),
            _ => Err(Refusal::Problem(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed".into())),
        };
    }
    let rest = request.path.strip_prefix("/api/v4/").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').filter(|segment| !segment.is_empty()).collect();
    let id = |text: &str| text.parse::<u64>().ok();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["account"]) => rest::account(desk.account, request),
        ("GET", ["users"]) => rest::users(desk.account, request),
        ("GET", ["users", user]) if id(user).is_some() => {
            rest::user(desk.account, request, id(user).unwrap_or_default())
        }
        ("GET", ["contacts"]) => handlers::list_contacts(desk, request),
        ("POST", ["contacts"]) => handlers::create_contacts(desk, request),
        ("GET", ["contacts", contact]) if id(contact).is_some() => {
            handlers::show_contact(desk, request, id(contact).unwrap_or_default())
        }
        ("GET", ["companies"]) => handlers::list_companies(desk, request),
        ("GET", ["companies", company]) if id(company).is_some() => {
            handlers::show_company(desk, request, id(company).unwrap_or_default())
        }
        ("GET", ["leads", "pipelines"]) => handlers::list_pipelines(desk, request),
        ("GET", ["leads", "pipelines", pipeline]) if id(pipeline).is_some() => {
            handlers::show_pipeline(desk, request, id(pipeline).unwrap_or_default())
        }
        ("GET", ["leads"]) => handlers::list_leads(desk, request),
        ("POST", ["leads"]) => handlers::create_leads(desk, request),
        ("POST", ["leads", "complex"]) => handlers::create_complex(desk, request),
        ("GET", ["leads", "unsorted"]) => handlers::list_unsorted(desk, request),
        ("POST", ["leads", "unsorted", "sip"]) => handlers::create_sip(desk, request),
        ("GET", ["leads", "unsorted", uid]) => handlers::show_unsorted(desk, request, uid),
        ("POST", ["leads", "unsorted", uid, "accept"]) => handlers::accept_unsorted(desk, request, uid),
        ("GET", ["leads", lead]) if id(lead).is_some() => {
            handlers::show_lead(desk, request, id(lead).unwrap_or_default())
        }
        ("POST", ["calls"]) => handlers::create_calls(desk, request),
        ("POST", ["webhooks"]) => webhooks::subscribe(desk, request),
        ("GET", ["webhooks"]) => webhooks::list(desk, request),
        ("DELETE", ["webhooks"]) => webhooks::unsubscribe(desk, request),
        ("GET", ["tasks"]) => handlers::list_tasks(desk, request),
        ("POST", ["tasks"]) => handlers::create_tasks(desk, request),
        (_, [entity_type, "notes"]) | (_, [entity_type, _, "notes"]) => {
            let Some(entity_type) = EntityType::parse(entity_type) else {
                return Err(Refusal::not_found(format!("Unknown entity type `{entity_type}`")));
            };
            let entity_id = match segments.as_slice() {
                [_, entity_id, "notes"] => match id(entity_id) {
                    Some(entity_id) => Some(entity_id),
                    None => return Err(Refusal::not_found(format!("`{entity_id}` is not an entity id"))),
                },
                _ => None,
            };
            match method.as_str() {
                "GET" => handlers::list_notes(desk, request, entity_type, entity_id),
                "POST" => handlers::create_notes(desk, request, entity_type, entity_id),
                _ => Err(Refusal::Problem(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed".into())),
            }
        }
        _ => Err(Refusal::not_found("The stand-in does not implement this method")),
    }
}
