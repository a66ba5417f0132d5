//! The admin listener: `/healthz` (the process serves), `/readyz` (this
//! replica acts: always without leader election, while it leads with it) and
//! `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::github::client::CachingConnector;
use crate::metrics::{CredentialLabels, Metrics};

#[derive(Clone)]
pub struct AdminState {
    /// This replica acts: at once without leader election, from the moment
    /// it leads with it (before its caches sync: deliveries are held until
    /// they can be routed, so the webhook Service must reach it at once).
    pub ready: Arc<AtomicBool>,
    /// The watch caches hold their first full list (shown, not required).
    pub synced: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    pub github: Arc<CachingConnector>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        match state.synced.load(Ordering::Relaxed) {
            true => (StatusCode::OK, "ready"),
            false => (StatusCode::OK, "ready, caches syncing"),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    // Rate-limit gauges are read from the clients at scrape time.
    for client in state.github.clients() {
        if let Some(snapshot) = client.rate_limit() {
            let labels = CredentialLabels {
                credential: client.credential_fingerprint().short().to_string(),
            };
            state
                .metrics
                .rate_limit_remaining
                .get_or_create(&labels)
                .set(snapshot.remaining as i64);
            state
                .metrics
                .rate_limit_limit
                .get_or_create(&labels)
                .set(snapshot.limit as i64);
            let reset = snapshot
                .reset
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            state
                .metrics
                .rate_limit_reset
                .get_or_create(&labels)
                .set(reset);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
