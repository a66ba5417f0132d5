//! What each pool needs beyond its bounds: the jobs waiting for it and the
//! runners known busy before GitHub's runner list says so.
//!
//! The controller reads demand through one seam, [`PoolDemand`], whatever
//! its source. Today's source is GitHub's `workflow_job` webhooks:
//! - [`store`]: queued jobs and busy runners learnt from webhooks, per pool;
//! - [`matching`]: which pool a queued job belongs to (pure, documented rule);
//! - [`routing`]: applies each webhook event to the store and wakes the pool;
//! - [`strays`]: queued jobs no pool matched yet, matched again when the
//!   pools change;
//! - [`recheck`]: reads jobs queued long (or learnt after a restart) from
//!   GitHub, the only way besides a delivery that a queued job leaves demand.
//!
//! The other source is a scale set of GitHub's Actions service:
//! - [`scale_set`]: per scale-set pool, the service's statistics and busy
//!   runners, and the listener that keeps them;
//! - [`listener`]: the pool's message session, long-polled by the leader.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::crd::WaitingJob;

pub mod listener;
pub mod matching;
pub mod recheck;
pub mod routing;
pub mod scale_set;
pub mod store;
pub mod strays;

/// What a pool's reconcile asks of a source of demand, by the pool's UID.
pub trait PoolDemand: Send + Sync {
    /// Jobs waiting for the pool that no runner has been created for yet.
    fn queued_for(&self, pool: &str, now: Instant) -> u32;

    /// Runners of the pool a job started on, busy whatever an older runner
    /// list says.
    fn busy_runners(&self, pool: &str) -> BTreeSet<u64>;

    /// Forgets busy runners of the pool that no longer exist.
    fn retain_busy(&self, pool: &str, existing: &BTreeSet<u64>);

    /// A runner pod was created for the pool: the oldest job waiting for it
    /// is served. Returns how long that job waited.
    fn serve_oldest(&self, pool: &str, now: Instant) -> Option<Duration>;

    /// The pool's queued jobs to keep in its status, so a restarted leader
    /// knows them; `None` when this source keeps nothing there (or not yet:
    /// the status then keeps what it had).
    fn kept_jobs(&self, _pool: &str) -> Option<Vec<WaitingJob>> {
        None
    }
}
