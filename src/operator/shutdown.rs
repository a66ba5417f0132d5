//! Stopping: SIGTERM (or Ctrl-C) asks the controllers to finish their
//! reconciles in flight, each bounded by the reconcile timeout, and a
//! shutdown waits a little longer than that bound, never more.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::warn;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Stops taking webhook deliveries once `shutdown` resolved: the
/// controllers are stopping and would never keep what arrives now, so it is
/// refused (503) for a successor to recover from the delivery log.
pub async fn stop_taking_on(shutdown: impl Future<Output = ()>, taking: Arc<AtomicBool>) {
    shutdown.await;
    taking.store(false, Ordering::Relaxed);
}

/// The wait a shutdown gives the controllers: the reconcile bound, plus a
/// little for their last status writes.
pub fn grace(reconcile_timeout: Duration) -> Duration {
    reconcile_timeout + Duration::from_secs(2)
}

/// Runs `work` until it ends, or until `grace` after `shutdown` resolved.
/// Returns whether the work ended by itself.
pub async fn within_grace(
    work: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    tokio::select! {
        _ = work => true,
        _ = async { shutdown.await; tokio::time::sleep(grace).await } => {
            warn!(grace = ?grace, "reconciles still running after the shutdown grace period; abandoned");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_stuck_past_the_grace_is_abandoned_after_it() {
        let began = tokio::time::Instant::now();
        let ended = within_grace(
            std::future::pending(),
            tokio::time::sleep(Duration::from_secs(3)),
            grace(Duration::from_secs(5)),
        )
        .await;
        assert!(!ended);
        assert_eq!(began.elapsed(), Duration::from_secs(3 + 7));
    }

    #[tokio::test(start_paused = true)]
    async fn work_finishing_within_the_grace_ends_the_wait_at_once() {
        let began = tokio::time::Instant::now();
        let ended = within_grace(
            tokio::time::sleep(Duration::from_secs(4)),
            tokio::time::sleep(Duration::from_secs(1)),
            Duration::from_secs(60),
        )
        .await;
        assert!(ended);
        assert_eq!(began.elapsed(), Duration::from_secs(4));
    }
}
