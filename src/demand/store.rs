//! Demand learnt from webhooks: the jobs queued for each pool and the
//! runners known busy because a job started on them.
//!
//! Kept apart from GitHub's runner list on purpose: the list is a view of
//! GitHub refreshed now and then (one inventory shared by every pool of a
//! scope, see [`crate::inventory`]); this is what webhooks said since. The
//! planner reads both.
//!
//! Queued jobs are not only in memory: each pool's are written to its
//! `status.waitingJobs` (the newest [`MAX_KEPT_JOBS`] are kept) and read back
//! by a restarted or new leader ([`WebhookDemand::restore`]) before its first
//! status write. A queued job leaves demand only when GitHub says so: its
//! `in_progress` or `completed` delivery, a direct read of the job (see
//! [`super::recheck`]) for one queued long or learnt from a status, or
//! GitHub's own limit of [`QUEUED_MAX_AGE`] for a job to wait. Busy runners
//! are learnt again from the runner list after a restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use super::PoolDemand;
use crate::crd::WaitingJob;
use crate::mutex::lock;

/// How long a runner counts as busy from an `in_progress` alone: GitHub's
/// longest self-hosted job (5 days). The runner list says so too meanwhile.
const BUSY_MAX_AGE: Duration = Duration::from_secs(5 * 24 * 3600);

/// GitHub cancels a job that waited this long for a runner.
pub const QUEUED_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long a started or completed job is remembered, so that a late or
/// recovered `queued` for it is known to be stale.
const SETTLED_MEMORY: Duration = Duration::from_secs(6 * 3600);

/// The most queued jobs of one pool written to its status. Beyond it the
/// newest are not kept; they are still demand in memory, and a new leader
/// finds them again in the webhook's delivery log when one is configured.
pub const MAX_KEPT_JOBS: usize = 500;

/// A queued job waiting for a runner of its pool.
#[derive(Clone, Debug)]
struct QueuedJob {
    pool: String,
    /// `owner/name`.
    repository: String,
    queued_at: Instant,
    /// The same moment by the wall clock, for the status.
    queued_wall: Timestamp,
    /// A runner was created for it (its queued-to-pod latency is recorded).
    served: bool,
    /// When GitHub was last asked about it directly.
    checked_at: Option<Instant>,
    /// Learnt from a status or the delivery log, not from a delivery just
    /// received: read from GitHub at the next check, whatever its age.
    recovered: bool,
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

/// A queued job to read from GitHub: its id, repository and pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobToCheck {
    pub job_id: u64,
    pub repository: String,
    pub pool: String,
}

/// Queued jobs and busy runners per pool (keyed by the pool's UID).
#[derive(Default)]
pub struct WebhookDemand {
    state: Mutex<State>,
    /// Set once the pools' kept jobs were read back: until then no status
    /// may be written from this store (it would erase them).
    restored: AtomicBool,
}

impl WebhookDemand {
    pub fn new() -> Self {
        WebhookDemand::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = lock(&self.state);
        f(&mut state)
    }

    /// A job of `repository` was queued for `pool`. False when it was
    /// already known (or has already started): nothing changed.
    pub fn queued(&self, job_id: u64, pool: &str, repository: &str, now: Instant) -> bool {
        self.insert(job_id, pool, repository, now, Timestamp::now(), false)
    }

    fn insert(
        &self,
        job_id: u64,
        pool: &str,
        repository: &str,
        now: Instant,
        wall: Timestamp,
        recovered: bool,
    ) -> bool {
        self.with(|s| {
            if s.settled.contains_key(&job_id) || s.queued.contains_key(&job_id) {
                return false;
            }
            s.queued.insert(
                job_id,
                QueuedJob {
                    pool: pool.to_string(),
                    repository: repository.to_string(),
                    queued_at: now,
                    queued_wall: wall,
                    served: false,
                    checked_at: None,
                    recovered,
                },
            );
            true
        })
    }

    /// A queued job learnt from the webhook's delivery log rather than from
    /// a delivery: demand at once, and read from GitHub at the next check
    /// (it may have started meanwhile).
    pub fn recovered(&self, job_id: u64, pool: &str, repository: &str, now: Instant) -> bool {
        self.insert(job_id, pool, repository, now, Timestamp::now(), true)
    }

    /// Reads back the jobs a pool's status kept (written by an earlier
    /// leader). Jobs already known, started, or older than GitHub's limit
    /// are skipped. Returns how many were added.
    pub fn restore(&self, pool: &str, jobs: &[WaitingJob], now: Instant) -> usize {
        let wall_now = Timestamp::now();
        jobs.iter()
            .filter(|job| {
                let Ok(wall) = job.queued_at.parse::<Timestamp>() else {
                    return false;
                };
                // A time ahead of this replica's clock (another node's clock
                // runs ahead) counts as just now.
                let age = match wall > wall_now {
                    true => Duration::ZERO,
                    false => wall_now.duration_since(wall).unsigned_abs(),
                };
                if age >= QUEUED_MAX_AGE {
                    return false;
                }
                let at = now.checked_sub(age).unwrap_or(now);
                self.insert(job.id, pool, &job.repository, at, wall, true)
            })
            .count()
    }

    /// Every pool's kept jobs were read back: statuses may now be written.
    pub fn mark_restored(&self) {
        self.restored.store(true, Ordering::SeqCst);
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

    /// A job completed (or was cancelled): it is no longer demand. Its runner
    /// stays counted busy until its pod is gone (GitHub removes the
    /// ephemeral runner and its process exits), so scaling in never picks
    /// and deletes a runner that is already going. Returns the pools affected.
    pub fn completed(&self, job_id: u64, runner_id: Option<u64>, now: Instant) -> Vec<String> {
        self.with(|s| {
            s.settled.insert(job_id, now);
            let mut pools: Vec<String> = s
                .queued
                .remove(&job_id)
                .map(|j| j.pool)
                .into_iter()
                .collect();
            if let Some(busy) = runner_id.and_then(|id| s.busy.get(&id)) {
                pools.push(busy.pool.clone());
            }
            pools.dedup();
            pools
        })
    }

    /// Jobs queued and not yet taken, per pool (one pass for all pools).
    pub fn queued_by_pool(&self, now: Instant) -> HashMap<String, u32> {
        self.with(|s| {
            expire(s, now);
            let mut counts: HashMap<String, u32> = HashMap::new();
            for job in s.queued.values() {
                *counts.entry(job.pool.clone()).or_default() += 1;
            }
            counts
        })
    }

    /// Queued jobs to read from GitHub now: those recovered and not read
    /// yet, and those queued at least `after` ago and not read for `after`.
    pub fn due_for_check(&self, now: Instant, after: Duration) -> Vec<JobToCheck> {
        self.with(|s| {
            expire(s, now);
            let mut due: Vec<(Instant, JobToCheck)> = s
                .queued
                .iter()
                .filter(|(_, j)| {
                    let long = now.saturating_duration_since(j.queued_at) >= after
                        && j.checked_at
                            .is_none_or(|at| now.saturating_duration_since(at) >= after);
                    (j.recovered && j.checked_at.is_none()) || long
                })
                .map(|(id, j)| {
                    (
                        j.queued_at,
                        JobToCheck {
                            job_id: *id,
                            repository: j.repository.clone(),
                            pool: j.pool.clone(),
                        },
                    )
                })
                .collect();
            due.sort_by_key(|(at, job)| (*at, job.job_id));
            due.into_iter().map(|(_, job)| job).collect()
        })
    }

    /// GitHub says the job still waits.
    pub fn checked(&self, job_id: u64, now: Instant) {
        self.with(|s| {
            if let Some(job) = s.queued.get_mut(&job_id) {
                job.checked_at = Some(now);
            }
        })
    }

    /// GitHub no longer knows the job (its run or repository was deleted):
    /// it is no longer demand. Returns its pool.
    pub fn gone(&self, job_id: u64, now: Instant) -> Option<String> {
        self.with(|s| {
            s.settled.insert(job_id, now);
            s.queued.remove(&job_id).map(|j| j.pool)
        })
    }

    /// Drops everything about a deleted pool.
    pub fn forget_pool(&self, pool: &str) {
        self.with(|s| {
            s.queued.retain(|_, j| j.pool != pool);
            s.busy.retain(|_, b| b.pool != pool);
        })
    }
}

fn expire(s: &mut State, now: Instant) {
    // Runners of deleted pools, or whose `completed` was lost, age out.
    s.busy
        .retain(|_, b| now.saturating_duration_since(b.since) < BUSY_MAX_AGE);
    // GitHub cancels a job that waited this long; its `completed` may be lost.
    s.queued
        .retain(|_, j| now.saturating_duration_since(j.queued_at) < QUEUED_MAX_AGE);
    s.settled
        .retain(|_, at| now.saturating_duration_since(*at) < SETTLED_MEMORY);
}

impl PoolDemand for WebhookDemand {
    /// Jobs queued for `pool` and not yet taken.
    fn queued_for(&self, pool: &str, now: Instant) -> u32 {
        self.with(|s| {
            expire(s, now);
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

    /// The pool's queued jobs for its status, oldest first, at most
    /// [`MAX_KEPT_JOBS`]; `None` until the kept jobs were read back.
    fn kept_jobs(&self, pool: &str) -> Option<Vec<WaitingJob>> {
        if !self.restored.load(Ordering::SeqCst) {
            return None;
        }
        self.with(|s| {
            let mut jobs: Vec<(&u64, &QueuedJob)> =
                s.queued.iter().filter(|(_, j)| j.pool == pool).collect();
            jobs.sort_by_key(|(id, j)| (j.queued_wall, **id));
            Some(
                jobs.into_iter()
                    .take(MAX_KEPT_JOBS)
                    .map(|(id, j)| WaitingJob {
                        id: *id,
                        repository: j.repository.clone(),
                        queued_at: j.queued_wall.to_string(),
                    })
                    .collect(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "acme/app";

    #[test]
    fn a_job_is_demand_from_queued_until_it_starts() {
        let demand = WebhookDemand::new();
        let t0 = Instant::now();
        assert!(demand.queued(1, "p", REPO, t0));
        assert!(!demand.queued(1, "p", REPO, t0), "the same job counts once");
        assert!(demand.queued(2, "p", REPO, t0));
        assert!(demand.queued(3, "q", REPO, t0));
        assert_eq!(demand.queued_for("p", t0), 2);
        assert_eq!(
            demand.queued_by_pool(t0),
            HashMap::from([("p".to_string(), 2), ("q".to_string(), 1)])
        );
        assert_eq!(demand.started(1, Some((77, "p")), t0).as_deref(), Some("p"));
        assert_eq!(demand.queued_for("p", t0), 1);
        assert_eq!(demand.busy_runners("p"), BTreeSet::from([77]));
        assert!(
            !demand.queued(1, "p", REPO, t0),
            "a late queued for a started job is stale"
        );
        assert_eq!(demand.completed(1, Some(77), t0), vec!["p".to_string()]);
        assert_eq!(
            demand.busy_runners("p"),
            BTreeSet::from([77]),
            "busy until its pod is gone"
        );
        demand.retain_busy("p", &BTreeSet::new());
        assert!(demand.busy_runners("p").is_empty());
        assert_eq!(demand.completed(2, None, t0), vec!["p".to_string()]);
        assert_eq!(demand.queued_for("p", t0), 0);
        assert_eq!(demand.queued_for("q", t0), 1);
    }

    #[test]
    fn a_queued_job_stays_demand_until_github_says_otherwise_or_a_day_passed() {
        let demand = WebhookDemand::new();
        let t0 = Instant::now();
        demand.queued(1, "p", REPO, t0);
        demand.queued(2, "p", REPO, t0 + Duration::from_secs(300));
        let hour = Duration::from_secs(3600);
        assert_eq!(demand.queued_for("p", t0 + 5 * hour), 2, "no fixed drop");
        assert_eq!(demand.gone(2, t0 + 5 * hour).as_deref(), Some("p"));
        assert_eq!(demand.queued_for("p", t0 + 5 * hour), 1);
        assert_eq!(demand.queued_for("p", t0 + QUEUED_MAX_AGE), 0);
    }

    #[test]
    fn jobs_queued_long_or_recovered_are_due_for_a_check() {
        let demand = WebhookDemand::new();
        let t0 = Instant::now();
        let after = Duration::from_secs(600);
        demand.queued(1, "p", REPO, t0);
        demand.queued(2, "p", "acme/web", t0 + Duration::from_secs(500));
        demand.recovered(3, "q", REPO, t0 + Duration::from_secs(500));
        let ids = |due: Vec<JobToCheck>| due.into_iter().map(|j| j.job_id).collect::<Vec<_>>();
        assert_eq!(
            ids(demand.due_for_check(t0 + Duration::from_secs(501), after)),
            vec![3]
        );
        let at = t0 + Duration::from_secs(600);
        let due = demand.due_for_check(at, after);
        assert_eq!(ids(due.clone()), vec![1, 3], "oldest first");
        assert_eq!(
            due[0],
            JobToCheck {
                job_id: 1,
                repository: REPO.into(),
                pool: "p".into()
            }
        );
        demand.checked(1, at);
        demand.checked(3, at);
        assert!(demand.due_for_check(at, after).is_empty());
        let later = at + after;
        assert_eq!(ids(demand.due_for_check(later, after)), vec![1, 2, 3]);
    }

    #[test]
    fn kept_jobs_round_trip_through_the_status_and_wait_for_the_restore() {
        let demand = WebhookDemand::new();
        let t0 = Instant::now();
        demand.queued(1, "p", REPO, t0);
        demand.queued(2, "p", "acme/web", t0);
        demand.queued(3, "q", REPO, t0);
        assert_eq!(demand.kept_jobs("p"), None, "not before the restore");
        demand.mark_restored();
        let kept = demand.kept_jobs("p").unwrap();
        assert_eq!(kept.iter().map(|j| j.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(kept[1].repository, "acme/web");

        let next = WebhookDemand::new();
        next.started(2, None, t0);
        let stale = WaitingJob {
            id: 9,
            repository: REPO.into(),
            queued_at: "2001-01-01T00:00:00Z".into(),
        };
        let garbled = WaitingJob {
            queued_at: "yesterday".into(),
            ..stale.clone()
        };
        let ahead = WaitingJob {
            id: 10,
            queued_at: (Timestamp::now() + Duration::from_secs(5)).to_string(),
            ..stale.clone()
        };
        let mut status = kept.clone();
        status.extend([stale, garbled, ahead]);
        assert_eq!(
            next.restore("p", &status, t0),
            2,
            "started and old jobs skipped, one from a clock running ahead kept"
        );
        assert_eq!(next.queued_for("p", t0), 2);
        assert_eq!(
            next.due_for_check(t0, Duration::from_secs(600))
                .into_iter()
                .map(|j| j.job_id)
                .collect::<Vec<_>>(),
            vec![1, 10],
            "a restored job is read from GitHub at the next check"
        );
        next.mark_restored();
        assert_eq!(next.kept_jobs("p").unwrap()[0], kept[0]);
    }

    #[test]
    fn at_most_the_oldest_jobs_are_kept_in_the_status() {
        let demand = WebhookDemand::new();
        demand.mark_restored();
        let t0 = Instant::now();
        for id in (0..MAX_KEPT_JOBS as u64 + 20).rev() {
            demand.queued(id, "p", REPO, t0);
        }
        let kept = demand.kept_jobs("p").unwrap();
        assert_eq!(kept.len(), MAX_KEPT_JOBS);
        assert_eq!(demand.queued_for("p", t0), MAX_KEPT_JOBS as u32 + 20);
    }

    #[test]
    fn each_created_runner_serves_the_oldest_waiting_job_once() {
        let demand = WebhookDemand::new();
        let t0 = Instant::now();
        demand.queued(1, "p", REPO, t0 + Duration::from_secs(1));
        demand.queued(2, "p", REPO, t0);
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
        let demand = WebhookDemand::new();
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
