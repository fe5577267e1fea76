//! Injected faults at work: the answer a fault gives, and when it gives it: before the request is served
//! (a delay, a hang, a status) or, with `after_commit`, after the request was carried out.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::StandIn;
use super::ledger::{Fault, HANG};
use super::problem::{problem, too_many_requests};

impl Fault {
    /// The status the client is answered, if the fault answers one (a delay-only fault does not).
    pub fn answer_status(&self) -> Option<u16> {
        match (self.status, self.timeout) {
            (Some(status), _) => Some(status),
            (None, true) => Some(StatusCode::GATEWAY_TIMEOUT.as_u16()),
            (None, false) => None,
        }
    }
}

/// The answer an injected fault gives, if it names a status (or hangs: 504 after the hang).
pub(super) fn fault_response(stand_in: &StandIn, fault: &Fault, account_id: Option<u64>) -> Option<Response> {
    let status = StatusCode::from_u16(fault.answer_status()?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::TOO_MANY_REQUESTS {
        stand_in.ledger().count_injected_429(account_id);
        return Some(too_many_requests(fault.retry_after.unwrap_or(1)));
    }
    let detail = match status.as_u16() {
        402 => "Payment required: the account's subscription has ended",
        403 => "Access forbidden",
        504 => "Gateway timeout (injected by the sandbox)",
        500..=599 => "Internal server error (injected by the sandbox)",
        _ => "Request refused (injected by the sandbox)",
    };
    let mut response = problem(status, detail);
    if let Some(after) = fault.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    Some(response)
}

/// Waits what the fault asks (its delay, then the hang of a `timeout`).
async fn wait(fault: &Fault) {
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fault.timeout {
        tokio::time::sleep(HANG).await;
    }
}

/// A fault without `after_commit`: waits, then answers instead of the request (`None`: serve it as usual).
pub(super) async fn before(stand_in: &StandIn, fault: &Fault, account_id: Option<u64>) -> Option<Response> {
    wait(fault).await;
    fault_response(stand_in, fault, account_id)
}

/// A fault with `after_commit`: the request was carried out and `served` is its answer; waits, then answers
/// the fault's status instead (or `served` when the fault only delays).
pub(super) async fn after(stand_in: &StandIn, fault: &Fault, account_id: Option<u64>, served: Response) -> Response {
    wait(fault).await;
    fault_response(stand_in, fault, account_id).unwrap_or(served)
}
