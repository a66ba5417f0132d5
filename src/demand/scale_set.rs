//! Demand of scale-set pools, as GitHub's Actions service tells it: per pool,
//! the scale set, the statistics of its last message and the runners a job
//! started on, and the listener task that keeps them current.
//!
//! Nothing here is the only record of capacity: the statistics are also
//! written to the pool's status (`status.scaleSet.statistics`) and a new
//! session starts with the service's own figures, so a restarted or new
//! leader sizes the pool from GitHub, not from a memory it lost.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::PoolDemand;
use crate::crd::{ScaleSetStatistics, ScaleSetStatus};
use crate::github::GitHubApi;
use crate::mutex::lock;
use crate::scaleset::{ActionsService, Statistics};

/// What the listener of one pool learnt, shared with the reconciles.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    pub scale_set_id: u64,
    pub scale_set_name: String,
    /// The session the listener holds open.
    pub session_id: Option<String>,
    /// The statistics of the session's start or of its last message.
    pub statistics: Option<Statistics>,
    /// Runners a job started on (`JobStarted`) and that have not completed it.
    pub busy: BTreeSet<u64>,
    /// The session is open and polled.
    pub healthy: bool,
}

impl Observed {
    /// What the pool's status shows of it.
    pub fn status(&self) -> ScaleSetStatus {
        ScaleSetStatus {
            id: Some(self.scale_set_id as i64),
            name: Some(self.scale_set_name.clone()),
            session_id: self.session_id.clone(),
            statistics: self.statistics.map(|s| statistics_status(&s)),
        }
    }
}

/// The service's statistics as the pool's status shows them.
pub fn statistics_status(s: &Statistics) -> ScaleSetStatistics {
    ScaleSetStatistics {
        available_jobs: s.total_available_jobs as i64,
        acquired_jobs: s.total_acquired_jobs as i64,
        assigned_jobs: s.total_assigned_jobs as i64,
        running_jobs: s.total_running_jobs as i64,
        registered_runners: s.total_registered_runners as i64,
        busy_runners: s.total_busy_runners as i64,
        idle_runners: s.total_idle_runners as i64,
    }
}

/// Jobs assigned to the scale set that no runner runs yet: the planner adds
/// them to the busy runners (running jobs) and the idle runners it keeps, so
/// a pool is sized `assigned + idleRunners` within its bounds.
pub fn waiting(assigned: i64, running: i64) -> u32 {
    (assigned - running).clamp(0, u32::MAX as i64) as u32
}

/// One scale-set pool: its service, what its listener learnt and the
/// listener itself (aborted when the entry goes).
struct Entry {
    /// The REST client the service was made with: credentials rotated since
    /// make a new one.
    github: Arc<dyn GitHubApi>,
    service: ActionsService,
    observed: Arc<Mutex<Observed>>,
    listener: Option<tokio::task::AbortHandle>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// The scale-set pools this replica serves while it leads, by pool UID.
#[derive(Default)]
pub struct ScaleSets {
    pools: Mutex<HashMap<String, Entry>>,
}

/// A pool's scale set and its listener's view, for one reconcile.
#[derive(Clone)]
pub struct Served {
    pub github: Arc<dyn GitHubApi>,
    pub service: ActionsService,
    pub observed: Arc<Mutex<Observed>>,
}

impl ScaleSets {
    /// The pool's scale set, if this replica serves it.
    pub fn served(&self, pool: &str) -> Option<Served> {
        lock(&self.pools).get(pool).map(|e| Served {
            github: e.github.clone(),
            service: e.service.clone(),
            observed: e.observed.clone(),
        })
    }

    /// Whether the pool's listener is running.
    pub fn listening(&self, pool: &str) -> bool {
        lock(&self.pools)
            .get(pool)
            .and_then(|e| e.listener.as_ref())
            .is_some_and(|l| !l.is_finished())
    }

    /// Serves the pool's scale set from now on, with a listener started by
    /// `start` (given what the listener shares); an earlier entry of the pool
    /// (another scale set, a listener that ended) is replaced.
    pub fn serve(
        &self,
        pool: &str,
        github: Arc<dyn GitHubApi>,
        service: ActionsService,
        observed: Observed,
        start: impl FnOnce(Arc<Mutex<Observed>>) -> tokio::task::AbortHandle,
    ) -> Served {
        let observed = Arc::new(Mutex::new(observed));
        let listener = start(observed.clone());
        lock(&self.pools).insert(
            pool.to_string(),
            Entry {
                github: github.clone(),
                service: service.clone(),
                observed: observed.clone(),
                listener: Some(listener),
            },
        );
        Served {
            github,
            service,
            observed,
        }
    }

    /// Stops serving the pool: its listener ends at once. Returns the
    /// service and what was observed, so the caller can close the session.
    pub fn stop(&self, pool: &str) -> Option<(ActionsService, Observed)> {
        let entry = lock(&self.pools).remove(pool)?;
        let observed = lock(&entry.observed).clone();
        Some((entry.service.clone(), observed))
    }

    /// Stops every listener (shutdown): returns what each held, so their
    /// sessions can be closed and a successor opens its own at once.
    pub fn stop_all(&self) -> Vec<(ActionsService, Observed)> {
        let entries: Vec<Entry> = lock(&self.pools).drain().map(|(_, e)| e).collect();
        entries
            .iter()
            .map(|e| (e.service.clone(), lock(&e.observed).clone()))
            .collect()
    }

    /// Closes the sessions `stopped` held, each within `within` (best
    /// effort: a session not closed times out on the service, and the next
    /// leader closes it from the pool's status).
    pub async fn close_sessions(stopped: Vec<(ActionsService, Observed)>, within: Duration) {
        let closing = stopped.into_iter().filter_map(|(service, observed)| {
            let session = observed.session_id?;
            Some(async move {
                let _ = tokio::time::timeout(
                    within,
                    service.delete_session(observed.scale_set_id, &session),
                )
                .await;
            })
        });
        futures::future::join_all(closing).await;
    }

    fn with<T>(&self, pool: &str, f: impl FnOnce(&mut Observed) -> T) -> Option<T> {
        let observed = lock(&self.pools).get(pool)?.observed.clone();
        let mut observed = lock(&observed);
        Some(f(&mut observed))
    }

    /// Jobs assigned to the pool's scale set, running or not, from its
    /// listener; `None` before the listener has statistics.
    pub fn assigned_for(&self, pool: &str) -> Option<u32> {
        self.with(pool, |o| o.statistics.map(|s| s.total_assigned_jobs))
            .flatten()
    }

    /// Jobs assigned to the pool's scale set that no runner runs yet, by the
    /// service's own count; `None` before the listener has statistics.
    pub fn waiting_for(&self, pool: &str) -> Option<u32> {
        self.with(pool, |o| {
            o.statistics
                .map(|s| waiting(s.total_assigned_jobs as i64, s.total_running_jobs as i64))
        })
        .flatten()
    }
}

impl PoolDemand for ScaleSets {
    fn queued_for(&self, pool: &str, _now: Instant) -> u32 {
        self.waiting_for(pool).unwrap_or(0)
    }

    fn busy_runners(&self, pool: &str) -> BTreeSet<u64> {
        self.with(pool, |o| o.busy.clone()).unwrap_or_default()
    }

    fn retain_busy(&self, pool: &str, existing: &BTreeSet<u64>) {
        self.with(pool, |o| o.busy.retain(|id| existing.contains(id)));
    }

    /// The service assigns jobs to runners itself: a new runner serves no
    /// job of its own, and the statistics say when a job is taken.
    fn serve_oldest(&self, _pool: &str, _now: Instant) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_jobs_are_the_assigned_ones_no_runner_runs() {
        assert_eq!(waiting(5, 2), 3);
        assert_eq!(waiting(2, 2), 0);
        // Figures taken at different moments never make demand negative.
        assert_eq!(waiting(1, 3), 0);
    }
}
