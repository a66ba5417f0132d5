//! The webhook receiver: `POST /webhook` on its own listener (never the admin
//! port). It checks the signature on the raw body before reading anything,
//! answers GitHub at once, and hands accepted `workflow_job` events to the
//! controller through a bounded channel.
//!
//! Answers: 401 missing or bad signature, 413 body over 1 MiB, 400 malformed,
//! 200 `ping`, 202 `workflow_job` accepted (duplicates included, applied
//! once), 204 any other event, 503 when the replica is not taking events
//! (a standby, or overloaded): GitHub shows that as a failed delivery, which
//! it does not redeliver by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::payload::{JobEvent, PayloadError, parse_workflow_job};
use super::signature;
use crate::kit::recent::Recent;
use crate::metrics::Metrics;
use crate::mutex::lock;

/// Largest body accepted; GitHub caps payloads at 25 MB, `workflow_job`
/// deliveries are a few KiB.
pub const MAX_BODY: usize = 1 << 20;
/// How many delivery ids and job transitions are remembered to spot duplicates.
const RECENT_CAPACITY: usize = 16_384;

#[derive(Clone)]
pub struct ReceiverState {
    secret: Arc<[u8]>,
    /// Whether the controller takes events: caches synced, and this replica
    /// leads when leader election is on (the readiness signal).
    taking: Arc<AtomicBool>,
    events: mpsc::Sender<JobEvent>,
    recent: Arc<Mutex<Recent<String>>>,
    metrics: Arc<Metrics>,
}

impl ReceiverState {
    pub fn new(
        secret: Vec<u8>,
        taking: Arc<AtomicBool>,
        events: mpsc::Sender<JobEvent>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ReceiverState {
            secret: secret.into(),
            taking,
            events,
            recent: Arc::new(Mutex::new(Recent::new(RECENT_CAPACITY))),
            metrics,
        }
    }

    fn seen(&self, key: &str) -> bool {
        lock(&self.recent).contains(key)
    }

    fn remember(&self, key: String) {
        lock(&self.recent).insert(key);
    }

    fn answer(&self, result: &'static str, status: StatusCode) -> StatusCode {
        self.metrics.observe_webhook_delivery(result);
        status
    }
}

pub fn router(state: ReceiverState) -> Router {
    Router::new()
        .route("/webhook", post(receive))
        .with_state(state)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Body) -> StatusCode {
    let too_large = header(&headers, "content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > MAX_BODY as u64);
    if too_large {
        return state.answer("too_large", StatusCode::PAYLOAD_TOO_LARGE);
    }
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return state.answer("too_large", StatusCode::PAYLOAD_TOO_LARGE);
    };
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    if let Err(e) = signature::verify(&state.secret, &body, signature) {
        debug!(reason = e.category(), "webhook refused");
        return state.answer("unauthorized", StatusCode::UNAUTHORIZED);
    }
    let delivery = header(&headers, "x-github-delivery").unwrap_or_default();
    match header(&headers, "x-github-event") {
        Some("ping") => state.answer("ping", StatusCode::OK),
        Some("workflow_job") => {
            let event = match parse_workflow_job(&body) {
                Ok(event) => event,
                // An action GitHub added later: nothing the operator acts on.
                Err(PayloadError::UnknownAction(_)) => {
                    return state.answer("ignored", StatusCode::NO_CONTENT);
                }
                Err(e) => {
                    warn!(delivery, reason = e.category(), error = %e, "malformed workflow_job delivery");
                    return state.answer("malformed", StatusCode::BAD_REQUEST);
                }
            };
            let keys = [
                (!delivery.is_empty()).then(|| format!("d:{delivery}")),
                Some(format!("j:{}:{:?}", event.job_id, event.action)),
            ];
            if keys.iter().flatten().any(|k| state.seen(k)) {
                return state.answer("duplicate", StatusCode::ACCEPTED);
            }
            if !state.taking.load(Ordering::Relaxed) {
                // A standby (out of the webhook Service: it carries no leader
                // label), or a replica stopping.
                debug!(delivery, "webhook refused: not taking events");
                return state.answer("unavailable", StatusCode::SERVICE_UNAVAILABLE);
            }
            debug!(delivery, job_id = event.job_id, action = ?event.action, "workflow_job received");
            match state.events.try_send(event) {
                Ok(()) => {
                    // Remembered only once handed over, so a delivery refused
                    // with 503 is taken when GitHub redelivers it.
                    for key in keys.into_iter().flatten() {
                        state.remember(key);
                    }
                    state.answer("accepted", StatusCode::ACCEPTED)
                }
                Err(e) => {
                    warn!(delivery, error = %e, "webhook refused: the event queue does not take it");
                    state.answer("unavailable", StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        }
        Some(_) => state.answer("ignored", StatusCode::NO_CONTENT),
        None => state.answer("malformed", StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::JobAction;
    use crate::webhook::payload::tests::sample;

    /// The receiver on a loopback port; returns its URL, the readiness flag
    /// and what it hands to the controller.
    async fn receiver() -> (String, Arc<AtomicBool>, mpsc::Receiver<JobEvent>) {
        let taking = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(16);
        let state = ReceiverState::new(
            b"s3cret".to_vec(),
            taking.clone(),
            tx,
            Arc::new(Metrics::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        (url, taking, rx)
    }

    async fn post(url: &str, delivery: &str, body: &[u8]) -> u16 {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(url)
            .header("x-github-event", "workflow_job")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature::sign(b"s3cret", body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn a_replica_not_taking_events_answers_503_and_takes_the_redelivery() {
        let (url, taking, mut events) = receiver().await;
        let body = serde_json::to_vec(&sample("queued")).unwrap();
        assert_eq!(post(&url, "a", &body).await, 503, "standby");
        assert!(events.try_recv().is_err(), "nothing handed over");
        taking.store(true, Ordering::Relaxed);
        assert_eq!(post(&url, "a", &body).await, 202, "the redelivery is taken");
        let event = events.try_recv().unwrap();
        assert_eq!((event.job_id, event.action), (42, JobAction::Queued));
        assert_eq!(post(&url, "a", &body).await, 202);
        assert!(events.try_recv().is_err(), "a duplicate is not handed over");
    }
}
