//! The admin listener: `/healthz` (the process serves), `/readyz` (the
//! process serves, as the leader or a standby: its body says which; a
//! Service that must reach the leader only selects its pod's leader mark)
//! and `/metrics` (Prometheus text format).

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
    /// it leads with it, until SIGTERM.
    pub acting: Arc<AtomicBool>,
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
    let body = match (
        state.acting.load(Ordering::Relaxed),
        state.synced.load(Ordering::Relaxed),
    ) {
        (true, true) => "ready, acting",
        (true, false) => "ready, acting, caches syncing",
        (false, _) => "ready, standing by",
    };
    (StatusCode::OK, body)
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
