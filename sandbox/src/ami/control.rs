//! The host page's handle on the AMI stand-in: `GET /sandbox/ami` (its address and the sessions logged in)
//! and `POST /sandbox/ami/play` (a call played at a person's pace to every logged-in session: the
//! connector, when one runs, turns it into call events for the server).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AmiStandIn, scenarios};

/// The number the stand-in's trunk is called on.
const DID: &str = "551130000000";

pub fn router(ami: AmiStandIn) -> Router {
    Router::new().route("/sandbox/ami", get(status)).route("/sandbox/ami/play", post(play)).with_state(ami)
}

async fn status(State(ami): State<AmiStandIn>) -> Json<serde_json::Value> {
    Json(json!({"addr": ami.addr().to_string(), "sessions": ami.sessions(), "logins": ami.logins()}))
}

#[derive(Deserialize)]
struct Play {
    /// `answered`, `missed` or `outgoing`.
    scenario: String,
    /// The client's number (digits, a leading `+` is dropped as trunks report it).
    #[serde(default = "default_caller")]
    caller: String,
    #[serde(default = "default_extension")]
    extension: String,
    /// Pause between two events, in milliseconds (at most 5 s).
    #[serde(default = "default_gap_ms")]
    gap_ms: u64,
}

fn default_caller() -> String {
    "5511988887777".into()
}
fn default_extension() -> String {
    "101".into()
}
fn default_gap_ms() -> u64 {
    400
}

/// Plays the call in the background and answers its `linkedid` (the call id the connector reports) at once;
/// 409 when no session is logged in, since Asterisk keeps no backlog and the call would reach nobody.
async fn play(State(ami): State<AmiStandIn>, Json(play): Json<Play>) -> Response {
    let caller: String = play.caller.chars().filter(char::is_ascii_digit).collect();
    let extension: String = play.extension.chars().filter(char::is_ascii_digit).collect();
    if caller.is_empty() || extension.is_empty() || extension.len() > 6 {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "caller and extension must be numbers"})))
            .into_response();
    }
    if ami.sessions() == 0 {
        let error = format!(
            "no connector is logged in to the AMI stand-in at {}: start it (README, Asterisk), then play again",
            ami.addr()
        );
        return (StatusCode::CONFLICT, Json(json!({"error": error}))).into_response();
    }
    let ids = ami.ids();
    let t0 = scenarios::now();
    let call = match play.scenario.as_str() {
        "answered" => scenarios::inbound_answered(&ids, t0, &caller, DID, &extension, 3.0, 42.0),
        "missed" => scenarios::inbound_missed(&ids, t0, &caller, DID, &extension, 20.0),
        "outgoing" => scenarios::outgoing(&ids, t0, &extension, &caller, Some(4.0), 27.0),
        other => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("unknown scenario {other:?}")})))
                .into_response();
        }
    };
    let gap = Duration::from_millis(play.gap_ms.min(5_000));
    let (linkedid, sessions) = (call.linkedid.clone(), ami.sessions());
    tokio::spawn(async move { ami.play_events(call.events, gap).await });
    Json(json!({"call_id": linkedid, "sessions": sessions})).into_response()
}
