//! Demand learnt from webhooks, in memory: the jobs queued for each pool and
//! the runners known busy because a job started on them.
//!
//! Kept apart from GitHub's runner list on purpose: the list is a view of
//! GitHub refreshed now and then (one inventory shared by every pool of a
//! scope, see [`crate::inventory`]); this is what webhooks said since. The planner
//! reads both. Lost on restart by design: the list tells busy runners again,
//! and jobs still queued are re-announced by GitHub only if redelivered, so
//! unanswered demand also expires after a TTL rather than holding runners
//! forever.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::PoolDemand;
use crate::mutex::lock;

/// How long a runner counts as busy from an `in_progress` alone: GitHub's
/// longest self-hosted job (5 days). The runner list says so too meanwhile.
const BUSY_MAX_AGE: Duration = Duration::from_secs(5 * 24 * 3600);

/// A queued job waiting for a runner of its pool.
#[derive(Clone, Debug)]
struct QueuedJob {
    pool: String,
    queued_at: Instant,
    /// A runner was created for it (its queued-to-pod latency is recorded).
    served: bool,
}

/// A runner a job started on.
#[derive(Clone, Debug)]
struct BusyRunner {
    pool: String,
    since: Instant,
}

#[derive(Default)]
struct State {
    queued: HashMap<u64, QueuedJob>,
    /// Jobs that started or completed: a late `queued` for them is stale.
    settled: HashMap<u64, Instant>,
    busy: HashMap<u64, BusyRunner>,
}

/// Queued jobs and busy runners per pool (keyed by the pool's UID).
pub struct WebhookDemand {
    ttl: Duration,
    state: Mutex<State>,
}

impl WebhookDemand {
    /// `ttl`: how long a queued job counts as demand without a runner taking it.
    pub fn new(ttl: Duration) -> Self {
        WebhookDemand {
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = lock(&self.state);
        f(&mut state)
    }

    /// A job was queued for `pool`. False when it was already known (or has
    /// already started): nothing changed.
    pub fn queued(&self, job_id: u64, pool: &str, now: Instant) -> bool {
        self.with(|s| {
            if s.settled.contains_key(&job_id) || s.queued.contains_key(&job_id) {
                return false;
            }
            s.queued.insert(
                job_id,
                QueuedJob {
                    pool: pool.to_string(),
                    queued_at: now,
                    served: false,
                },
            );
            true
        })
    }

    /// A job started on runner `runner_id` of `runner_pool` (when known): the
    /// job is no longer demand and the runner is busy. Returns the pool the job
    /// had been queued for, if any.
    pub fn started(
        &self,
        job_id: u64,
        runner: Option<(u64, &str)>,
        now: Instant,
    ) -> Option<String> {
        self.with(|s| {
            s.settled.insert(job_id, now);
            if let Some((id, pool)) = runner {
                s.busy.insert(
                    id,
                    BusyRunner {
                        pool: pool.to_string(),
                        since: now,
                    },
                );
            }
            s.queued.remove(&job_id).map(|j| j.pool)
        })
    }

    /// A job completed (or was cancelled): it is neither demand nor keeps its
    /// runner busy. Returns the pools affected.
    pub fn completed(&self, job_id: u64, runner_id: Option<u64>, now: Instant) -> Vec<String> {
        self.with(|s| {
            s.settled.insert(job_id, now);
            let mut pools: Vec<String> = s
                .queued
                .remove(&job_id)
                .map(|j| j.pool)
                .into_iter()
                .collect();
            if let Some(busy) = runner_id.and_then(|id| s.busy.remove(&id)) {
                pools.push(busy.pool);
            }
            pools.dedup();
            pools
        })
    }

    /// Jobs queued and not yet taken, per pool (one pass for all pools).
    pub fn queued_by_pool(&self, now: Instant) -> HashMap<String, u32> {
        self.with(|s| {
            self.expire(s, now);
            let mut counts: HashMap<String, u32> = HashMap::new();
            for job in s.queued.values() {
                *counts.entry(job.pool.clone()).or_default() += 1;
            }
            counts
        })
    }

    fn expire(&self, s: &mut State, now: Instant) {
        let ttl = self.ttl;
        // Runners of deleted pools, or whose `completed` was lost, age out.
        s.busy
            .retain(|_, b| now.saturating_duration_since(b.since) < BUSY_MAX_AGE);
        s.queued
            .retain(|_, j| now.saturating_duration_since(j.queued_at) < ttl);
        // Settled job ids only guard against late `queued` deliveries.
        s.settled
            .retain(|_, at| now.saturating_duration_since(*at) < ttl);
    }

    /// Drops everything about a deleted pool.
    pub fn forget_pool(&self, pool: &str) {
        self.with(|s| {
            s.queued.retain(|_, j| j.pool != pool);
            s.busy.retain(|_, b| b.pool != pool);
        })
    }
}

impl PoolDemand for WebhookDemand {
    /// Jobs queued for `pool` and not yet taken, after dropping expired ones.
    fn queued_for(&self, pool: &str, now: Instant) -> u32 {
        self.with(|s| {
            self.expire(s, now);
            s.queued.values().filter(|j| j.pool == pool).count() as u32
        })
    }

    /// Runners of `pool` a job started on and that have not completed.
    fn busy_runners(&self, pool: &str) -> BTreeSet<u64> {
        self.with(|s| {
            s.busy
                .iter()
                .filter(|(_, b)| b.pool == pool)
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Forgets busy runners of `pool` that no longer exist (their pod is gone
    /// and a `completed` was lost).
    fn retain_busy(&self, pool: &str, existing: &BTreeSet<u64>) {
        self.with(|s| {
            s.busy
                .retain(|id, b| b.pool != pool || existing.contains(id))
        })
    }

    /// A runner was created for `pool`: the oldest job it serves, and how long
    /// that job has waited (for the queued-to-pod latency).
    fn serve_oldest(&self, pool: &str, now: Instant) -> Option<Duration> {
        self.with(|s| {
            let job = s
                .queued
                .values_mut()
                .filter(|j| j.pool == pool && !j.served)
                .min_by_key(|j| j.queued_at)?;
            job.served = true;
            Some(now.saturating_duration_since(job.queued_at))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_demand_from_queued_until_it_starts() {
        let demand = WebhookDemand::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(demand.queued(1, "p", t0));
        assert!(!demand.queued(1, "p", t0), "the same job counts once");
        assert!(demand.queued(2, "p", t0));
        assert!(demand.queued(3, "q", t0));
        assert_eq!(demand.queued_for("p", t0), 2);
        assert_eq!(
            demand.queued_by_pool(t0),
            HashMap::from([("p".to_string(), 2), ("q".to_string(), 1)])
        );
        assert_eq!(demand.started(1, Some((77, "p")), t0).as_deref(), Some("p"));
        assert_eq!(demand.queued_for("p", t0), 1);
        assert_eq!(demand.busy_runners("p"), BTreeSet::from([77]));
        assert!(
            !demand.queued(1, "p", t0),
            "a late queued for a started job is stale"
        );
        assert_eq!(demand.completed(1, Some(77), t0), vec!["p".to_string()]);
        assert!(demand.busy_runners("p").is_empty());
        assert_eq!(demand.completed(2, None, t0), vec!["p".to_string()]);
        assert_eq!(demand.queued_for("p", t0), 0);
        assert_eq!(demand.queued_for("q", t0), 1);
    }

    #[test]
    fn unanswered_demand_expires_after_the_ttl() {
        let demand = WebhookDemand::new(Duration::from_secs(600));
        let t0 = Instant::now();
        demand.queued(1, "p", t0);
        demand.queued(2, "p", t0 + Duration::from_secs(300));
        assert_eq!(demand.queued_for("p", t0 + Duration::from_secs(599)), 2);
        assert_eq!(demand.queued_for("p", t0 + Duration::from_secs(600)), 1);
        assert_eq!(demand.queued_for("p", t0 + Duration::from_secs(900)), 0);
    }

    #[test]
    fn each_created_runner_serves_the_oldest_waiting_job_once() {
        let demand = WebhookDemand::new(Duration::from_secs(600));
        let t0 = Instant::now();
        demand.queued(1, "p", t0 + Duration::from_secs(1));
        demand.queued(2, "p", t0);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            demand.serve_oldest("p", later),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            demand.serve_oldest("p", later),
            Some(Duration::from_secs(2))
        );
        assert_eq!(demand.serve_oldest("p", later), None);
        assert_eq!(
            demand.queued_for("p", later),
            2,
            "served is still demand until taken"
        );
    }

    #[test]
    fn busy_runners_without_a_pod_are_forgotten() {
        let demand = WebhookDemand::new(Duration::from_secs(600));
        let t0 = Instant::now();
        demand.started(1, Some((10, "p")), t0);
        demand.started(2, Some((11, "p")), t0);
        demand.started(3, Some((12, "q")), t0);
        demand.retain_busy("p", &BTreeSet::from([10]));
        assert_eq!(demand.busy_runners("p"), BTreeSet::from([10]));
        assert_eq!(demand.busy_runners("q"), BTreeSet::from([12]));
        demand.forget_pool("q");
        assert!(demand.busy_runners("q").is_empty());
    }
}
