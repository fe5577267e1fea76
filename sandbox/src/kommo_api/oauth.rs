//! Kommo's OAuth 2.0 as the server meets it: `POST /oauth2/access_token` (code exchange, rotating refresh)
//! and the consent page at `/oauth` that sends the browser back to the Redirect URI (KOMMO.md §3.1-3.2).

use std::time::Instant;

use axum::Form;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::faults;
use super::ledger::{FaultScope, FaultTarget, GrantRefusal, Issued};
use super::problem::{oauth_problem, problem, too_many_requests};
use super::{CALLBACK_PATH, unix_now};

/// The token endpoint's JSON body; every field optional so a missing one is Kommo's 400, not a parse error.
#[derive(Debug, Default, Deserialize)]
struct TokenRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
    code: Option<String>,
    refresh_token: Option<String>,
    redirect_uri: Option<String>,
}

/// Kommo's token response, fields in Kommo's order.
#[derive(Serialize)]
struct TokenResponse {
    token_type: &'static str,
    expires_in: u64,
    server_time: i64,
    access_token: String,
    refresh_token: String,
}

enum Grant {
    Code(String),
    Refresh(String),
}

fn bad_request(detail: &str, hint: &str) -> Response {
    oauth_problem(StatusCode::BAD_REQUEST, detail, hint)
}

/// `POST /oauth2/access_token`.
///
/// Checks, in order: the JSON body, the client (401), the Redirect URI (400), the grant's fields (400), the
/// account's request window (429: a token request counts against the account of its code or refresh token,
/// like any API request), injected faults, then the grant itself (400 `invalid_grant`-style when refused).
pub(crate) async fn access_token(State(state): State<crate::State>, body: Bytes) -> Response {
    let stand_in = &state.stand_in;
    stand_in.ledger().count_request("POST", "/oauth2/access_token");
    let Ok(request) = serde_json::from_slice::<TokenRequest>(&body) else {
        return bad_request("The request body must be a JSON object", "invalid_request");
    };
    let kommo = &state.config.kommo;
    if request.client_id.as_deref() != Some(kommo.client_id.as_str())
        || request.client_secret.as_deref() != Some(kommo.client_secret.as_str())
    {
        let mut ledger = stand_in.ledger();
        ledger.count_unauthorized(None);
        drop(ledger);
        return oauth_problem(StatusCode::UNAUTHORIZED, "Client authentication failed", "invalid_client");
    }
    let expected_redirect = format!("{}{CALLBACK_PATH}", kommo.audience);
    if request.redirect_uri.as_deref() != Some(expected_redirect.as_str()) {
        return bad_request("redirect_uri does not match the integration's Redirect URI", "invalid_request");
    }
    let grant = match (request.grant_type.as_deref(), request.code, request.refresh_token) {
        (Some("authorization_code"), Some(code), _) if !code.is_empty() => Grant::Code(code),
        (Some("refresh_token"), _, Some(token)) if !token.is_empty() => Grant::Refresh(token),
        (Some("authorization_code"), ..) => return bad_request("code is required", "invalid_request"),
        (Some("refresh_token"), ..) => return bad_request("refresh_token is required", "invalid_request"),
        _ => return bad_request("grant_type is not supported", "unsupported_grant_type"),
    };

    let now = Instant::now();
    let fault = {
        let mut ledger = stand_in.ledger();
        let account = match &grant {
            Grant::Code(code) => ledger.account_of_code(code),
            Grant::Refresh(token) => ledger.account_of_refresh_token(token),
        };
        if let Some(account) = account
            && !ledger.admit(account, "POST /oauth2/access_token", now)
        {
            return too_many_requests(1);
        }
        let scope = FaultScope {
            account_id: account,
            target: FaultTarget::Oauth,
            method: "POST",
            path: "/oauth2/access_token",
        };
        ledger.take_fault(&scope).map(|fault| (fault, account))
    };
    let mut deferred = None;
    if let Some((fault, account)) = fault {
        if fault.after_commit {
            deferred = Some((fault, account));
        } else if let Some(response) = faults::before(stand_in, &fault, account).await {
            return response;
        }
    }
    let response = grant_response(stand_in, grant);
    match deferred {
        // The grant was carried out (a code used up, a refresh token rotated), but the client never learns it.
        Some((fault, account)) => faults::after(stand_in, &fault, account, response).await,
        None => response,
    }
}

/// Carries out the grant and answers Kommo's token response or its refusal.
fn grant_response(stand_in: &super::StandIn, grant: Grant) -> Response {
    let ttl = stand_in.settings.access_token_ttl;
    let outcome = {
        let mut ledger = stand_in.ledger();
        match &grant {
            Grant::Code(code) => ledger.exchange_code(code, ttl, Instant::now()),
            Grant::Refresh(token) => ledger.refresh(token, ttl, Instant::now()),
        }
    };
    match outcome {
        Ok(Issued { access_token, refresh_token }) => {
            let body = TokenResponse {
                token_type: "Bearer",
                expires_in: ttl.as_secs(),
                server_time: unix_now(),
                access_token,
                refresh_token,
            };
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(refusal) => {
            tracing::info!(hint = refusal.hint(), "the Kommo stand-in refused a grant");
            let detail = match refusal {
                GrantRefusal::CodeReused => {
                    "The authorization code was already used; tokens issued from it are revoked"
                }
                _ => "The grant is invalid, expired or revoked",
            };
            bad_request(detail, &format!("invalid_grant: {}", refusal.hint()))
        }
    }
}

/// `GET /oauth` query: Kommo's consent URL parameters, plus `account` to choose who grants.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsentQuery {
    client_id: Option<String>,
    state: Option<String>,
    mode: Option<String>,
    account: Option<u64>,
}

/// The consent form's post.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsentDecision {
    client_id: String,
    state: Option<String>,
    account: u64,
    decision: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html_page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Kommo (local): Allow access</title>\
         <style>body{{font-family:sans-serif;background:#f5f5f5;margin:0}}\
         .consent{{max-width:420px;margin:8vh auto;background:#fff;border-radius:6px;padding:28px;\
         box-shadow:0 2px 12px rgba(0,0,0,.12)}}.consent h1{{font-size:20px;margin:0 0 12px}}\
         .consent button{{padding:9px 18px;margin-right:8px;border-radius:4px;border:1px solid #c3c3c3;\
         background:#fff;cursor:pointer}}.consent button[value=allow]{{background:#1f7cf2;color:#fff;border:0}}\
         .consent select{{width:100%;margin:6px 0 16px;padding:6px}}</style></head>\
         <body><div class=\"consent\">{body}</div></body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /oauth?client_id&state&mode&account`: Kommo's "Allow access" page with Allow and Decline.
pub(crate) async fn consent_page(State(state): State<crate::State>, Query(query): Query<ConsentQuery>) -> Response {
    let kommo = &state.config.kommo;
    if query.client_id.as_deref() != Some(kommo.client_id.as_str()) {
        return html_page(StatusCode::BAD_REQUEST, "<h1>Integration not found</h1><p>Check the client_id.</p>");
    }
    let chosen = query.account.unwrap_or(kommo.account_id);
    if let Some(account) = query.account {
        state.stand_in.ensure_account(account, None);
    }
    let options: String = state
        .stand_in
        .ledger()
        .accounts()
        .map(|account| {
            let selected = if account.id == chosen { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{selected}>{} ({}.kommo.com)</option>",
                account.id,
                escape(&account.name),
                escape(&account.subdomain)
            )
        })
        .collect();
    let state_field = query
        .state
        .as_deref()
        .map(|value| format!("<input type=\"hidden\" name=\"state\" value=\"{}\">", escape(value)))
        .unwrap_or_default();
    let mode = escape(query.mode.as_deref().unwrap_or("popup"));
    let body = format!(
        "<h1>Allow access</h1><p>The integration <b>{client}</b> asks for access to your account's data.</p>\
         <form method=\"post\" action=\"/oauth\" id=\"kommo-consent\">\
         <input type=\"hidden\" name=\"client_id\" value=\"{client}\">{state_field}\
         <input type=\"hidden\" name=\"mode\" value=\"{mode}\">\
         <label>Account<select name=\"account\">{options}</select></label>\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"kommo-allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"decline\" id=\"kommo-decline\">Decline</button>\
         </form>",
        client = escape(&kommo.client_id)
    );
    html_page(StatusCode::OK, &body)
}

/// `POST /oauth`: Allow issues a code and sends the browser to the Redirect URI with
/// `code&state&referer&client_id`; Decline sends `error=access_denied&state&client_id`.
pub(crate) async fn consent_decision(State(state): State<crate::State>, Form(form): Form<ConsentDecision>) -> Response {
    let kommo = &state.config.kommo;
    if form.client_id != kommo.client_id {
        return html_page(StatusCode::BAD_REQUEST, "<h1>Integration not found</h1>");
    }
    let Ok(mut url) = reqwest::Url::parse(&format!("{}{CALLBACK_PATH}", kommo.audience)) else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "the Redirect URI is not a URL");
    };
    {
        let mut query = url.query_pairs_mut();
        if form.decision == "allow" {
            let stand_in = &state.stand_in;
            let mut ledger = stand_in.ledger();
            let Some(user) = ledger.account(form.account).and_then(|account| account.admin()).map(|user| user.id)
            else {
                drop(ledger);
                return html_page(StatusCode::BAD_REQUEST, "<h1>Unknown account</h1>");
            };
            let code = ledger.issue_code(form.account, user, stand_in.settings.code_ttl, Instant::now());
            query.append_pair("code", &code);
            if let Some(consent_state) = &form.state {
                query.append_pair("state", consent_state);
            }
            query.append_pair("referer", &stand_in.settings.api_host);
        } else {
            query.append_pair("error", "access_denied");
            if let Some(consent_state) = &form.state {
                query.append_pair("state", consent_state);
            }
        }
        query.append_pair("client_id", &kommo.client_id);
    }
    Redirect::to(url.as_str()).into_response()
}
