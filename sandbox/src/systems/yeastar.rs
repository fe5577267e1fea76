//! The yeastar stand-in: not written yet, so it serves nothing.

use axum::Router;

pub fn router() -> Router {
    Router::new()
}
