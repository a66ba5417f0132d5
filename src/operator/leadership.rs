//! Acting as the leader: the client every controller writes through (fenced,
//! so a replica that lost the Lease writes nothing), and holding the Lease
//! while the controllers work. Losing it stops them at once: their futures
//! are dropped with every reconcile in flight, and the fence already refuses
//! their writes; the process then exits (its pod restarts as a candidate).
//! On an ordinary shutdown the Lease is released only after the controllers
//! stopped, so a successor takes over at once. While leading, the pod is
//! marked as the leader's (see [`super::leader_pod`]); the mark goes when
//! leading ends, however it ends.

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use super::leader_pod::LeaderPod;
use crate::leader::{self, Fence, FenceLayer, LeaderElector};

/// How long clearing the pod's leader mark may hold up a start or a stop.
pub const UNMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// The client the controllers act with: with a fence, every write is refused
/// once this replica may no longer act as the leader.
pub fn acting_client(
    config: kube::Config,
    fence: Option<&Fence>,
) -> Result<kube::Client, kube::Error> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match fence {
        Some(fence) => builder.with_layer(&FenceLayer(fence.clone())).build(),
        None => builder.build(),
    })
}

/// Why leading ended.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    /// The Lease was lost (another holder, or no renewal within the renew
    /// deadline): the controllers were dropped at once.
    #[error(transparent)]
    Lost(leader::Error),
    #[error("the Lease holder task failed: {0}")]
    Holder(#[source] tokio::task::JoinError),
}

/// Runs `work` (the controllers, already bounded by the shutdown grace)
/// while holding the Lease, renewing it on a task of its own so the
/// controllers never slow the renewals, and with `pod` marked as the
/// leader's. Returns once the work ended (and the Lease was released), or
/// at once when the Lease was lost.
pub async fn lead(
    mut elector: LeaderElector,
    work: impl Future<Output = ()>,
    pod: Option<LeaderPod>,
) -> Result<(), Ended> {
    let identity = elector.config().identity.clone();
    let retry = elector.config().retry_period;
    let marking = pod
        .clone()
        .map(|pod| tokio::spawn(pod.mark_until_done(retry)));
    let (stop_holding, holding) = tokio::sync::oneshot::channel::<()>();
    let mut holder = tokio::spawn(async move {
        let held = elector
            .hold(async {
                let _ = holding.await;
            })
            .await;
        (elector, held)
    });
    let lost = tokio::select! {
        _ = work => None,
        joined = &mut holder => Some(joined),
    };
    if let Some(marking) = marking {
        marking.abort();
    }
    let (mut elector, held) = match lost {
        Some(Err(failed)) => {
            unmark(pod.as_ref()).await;
            return Err(Ended::Holder(failed));
        }
        Some(Ok((_, Err(lost)))) => {
            warn!(identity = %identity, error = %lost, "leadership lost: stopped acting at once, reconciles in flight abandoned");
            unmark(pod.as_ref()).await;
            return Err(Ended::Lost(lost));
        }
        Some(Ok(done)) => done,
        None => {
            let _ = stop_holding.send(());
            holder.await.map_err(Ended::Holder)?
        }
    };
    // Before the release: the successor marks its own pod once it leads.
    unmark(pod.as_ref()).await;
    info!("controller stopped");
    match held {
        Ok(()) => {
            elector.release().await;
            Ok(())
        }
        Err(e) => Err(Ended::Lost(e)),
    }
}

async fn unmark(pod: Option<&LeaderPod>) {
    if let Some(pod) = pod {
        pod.unmark(UNMARK_TIMEOUT).await;
    }
}
