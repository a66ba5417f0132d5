//! The Actions service's controls over HTTP (`/_fake/…`), mirroring the
//! handle's methods; settings go through `PUT /_fake/settings`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::FakeGitHub;

pub(crate) fn router() -> Router<FakeGitHub> {
    Router::new()
        .route("/scale-sets", get(scale_sets))
        .route("/scale-sets/{id}", get(scale_set))
        .route("/sessions", get(sessions).delete(drop_sessions))
        .route("/queue-tokens/expire", post(expire_queue_tokens))
        .route("/admin-tokens/expire", post(expire_admin_tokens))
}

async fn scale_sets(State(f): State<FakeGitHub>) -> Response {
    Json(f.scale_sets()).into_response()
}

async fn scale_set(State(f): State<FakeGitHub>, Path(id): Path<u64>) -> Response {
    match f.scale_set(id) {
        Some(s) => {
            Json(json!({"scale_set": s, "statistics": f.scale_set_statistics(id)})).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("scale set {id}")})),
        )
            .into_response(),
    }
}

async fn sessions(State(f): State<FakeGitHub>) -> Response {
    Json(f.sessions()).into_response()
}

async fn drop_sessions(State(f): State<FakeGitHub>) -> Response {
    f.drop_sessions();
    StatusCode::NO_CONTENT.into_response()
}

async fn expire_queue_tokens(State(f): State<FakeGitHub>) -> Response {
    f.expire_queue_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn expire_admin_tokens(State(f): State<FakeGitHub>) -> Response {
    f.expire_admin_tokens();
    StatusCode::NO_CONTENT.into_response()
}
