//! The process's two listeners, each on its own port: the admin listener
//! (`/healthz`, `/readyz`, `/metrics`) and, when configured, the webhook
//! receiver for GitHub's `workflow_job` deliveries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tracing::{error, info};

use super::admin::{self, AdminState};
use super::config::Config;
use crate::demand::routing::WebhookFeed;
use crate::demand::store::WebhookDemand;
use crate::github::client::CachingConnector;
use crate::metrics::Metrics;
use crate::webhook;
use crate::webhook::listener::{BoundedListener, CONNECTION_LIFETIME, MAX_CONNECTIONS};
use crate::webhook::recovery::{self, DeliveryLog, DeliveryLogError};

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("--webhook-listen must differ from --admin-listen")]
    SameAddress,
    #[error(transparent)]
    Secret(#[from] webhook::SecretError),
    #[error(transparent)]
    DeliveryLog(#[from] DeliveryLogError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, ListenerError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ListenerError::Bind { address, source })
}

/// Serves the admin endpoints on `address`; returns the bound address.
pub async fn start_admin(
    address: SocketAddr,
    state: AdminState,
) -> Result<SocketAddr, ListenerError> {
    let listener = bind(address).await?;
    let bound = listener.local_addr().unwrap_or(address);
    info!(address = %bound, "admin listener serving /healthz, /readyz and /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, admin::router(state)).await {
            error!(error = %e, "admin listener stopped");
        }
    });
    Ok(bound)
}

/// Starts the webhook receiver when `--webhook-listen` is set; the events it
/// accepts go to the controller through the returned feed. Events are taken
/// only while `taking` is set (while this replica acts): otherwise the
/// receiver answers 503, and the delivery shows failed on GitHub.
pub async fn start_webhook_listener(
    config: &Config,
    metrics: &Arc<Metrics>,
    taking: &Arc<AtomicBool>,
) -> Result<Option<WebhookFeed>, ListenerError> {
    let Some(address) = config.webhook_listen else {
        return Ok(None);
    };
    if address == config.admin_listen && address.port() != 0 {
        return Err(ListenerError::SameAddress);
    }
    let secret = webhook::load_secret(
        config.webhook_secret_file.as_deref(),
        std::env::var(webhook::SECRET_ENV).ok(),
    )?;
    // Bounded: an overloaded replica answers 503 rather than queueing
    // without end (the delivery shows failed on GitHub, to redeliver).
    let (events, received) = tokio::sync::mpsc::channel(4096);
    let listener = bind(address).await?;
    info!(address = %listener.local_addr().unwrap_or(address), "webhook listener serving POST /webhook");
    let events_in = events.clone();
    let state =
        webhook::server::ReceiverState::new(secret, taking.clone(), events, metrics.clone());
    let listener = BoundedListener::new(listener, MAX_CONNECTIONS, CONNECTION_LIFETIME);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, webhook::server::router(state)).await {
            error!(error = %e, "webhook listener stopped");
        }
    });
    Ok(Some(WebhookFeed {
        events: received,
        sender: events_in,
        delivery_log: None,
        demand: Arc::new(WebhookDemand::new()),
        check_after: Duration::from_secs(config.queued_job_check_seconds.max(1)),
    }))
}

/// The delivery log to read, when `--webhook-delivery-log` names hooks:
/// its credentials and API checked now, so a mistake stops the start with
/// a message saying what is wrong.
pub fn delivery_log(
    config: &Config,
    github: &CachingConnector,
    listening: bool,
) -> Result<Option<DeliveryLog>, ListenerError> {
    if config.webhook_delivery_log.is_empty() {
        return Ok(None);
    }
    if !listening {
        return Err(DeliveryLogError::NoListener.into());
    }
    let dir = config
        .webhook_delivery_log_credentials
        .as_deref()
        .ok_or(DeliveryLogError::NoCredentials)?;
    let credentials = recovery::read_credentials(dir, &config.webhook_delivery_log)?;
    let endpoint = recovery::endpoint(&config.webhook_delivery_log_api_url)?;
    let api = github
        .client(&endpoint, &credentials)
        .map_err(|e| DeliveryLogError::Invalid(e.to_string()))?;
    Ok(Some(DeliveryLog {
        api,
        hooks: config.webhook_delivery_log.clone(),
        credentials_dir: dir.to_path_buf(),
        every: Duration::from_secs(config.webhook_delivery_log_interval_seconds),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::config::tests::parse as config;

    #[tokio::test]
    async fn no_webhook_listener_unless_asked() {
        let feed = start_webhook_listener(&config(&[]), &Default::default(), &Default::default())
            .await
            .expect("nothing to start");
        assert!(feed.is_none());
    }

    #[tokio::test]
    async fn the_webhook_listener_refuses_the_admin_address() {
        let same = config(&[
            "--admin-listen",
            "127.0.0.1:18080",
            "--webhook-listen",
            "127.0.0.1:18080",
        ]);
        let refused = start_webhook_listener(&same, &Default::default(), &Default::default()).await;
        assert!(
            matches!(refused, Err(ListenerError::SameAddress)),
            "{:?}",
            refused.as_ref().err()
        );
    }

    #[tokio::test]
    async fn the_webhook_listener_needs_its_secret_file_to_exist() {
        let missing = config(&[
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-secret-file",
            "/nonexistent/runnerpool-webhook-secret",
        ]);
        let refused =
            start_webhook_listener(&missing, &Default::default(), &Default::default()).await;
        assert!(
            matches!(refused, Err(ListenerError::Secret(_))),
            "{:?}",
            refused.as_ref().err()
        );
    }

    #[tokio::test]
    async fn the_admin_listener_serves_health_on_its_port() {
        let state = AdminState {
            acting: Default::default(),
            synced: Default::default(),
            metrics: Default::default(),
            github: Default::default(),
        };
        let bound = start_admin("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let stream = tokio::net::TcpStream::connect(bound).await;
        assert!(
            stream.is_ok(),
            "the admin listener accepts connections on {bound}"
        );
    }
}
