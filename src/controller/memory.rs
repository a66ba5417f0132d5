//! What the operator remembers about each pool between reconciles, in memory.
//!
//! The watch caches lag the API server by a moment, so a pod just created may
//! not be in the cache at the next reconcile, nor a pod just deleted gone from
//! it. Without remembering those, the pool would overshoot on scale-up and ask
//! GitHub twice to delete the same runner. Also kept: the last connection,
//! when a surplus began, the runners failing before they come online, and
//! the connections of pools released before all their runners were removed
//! ([`Leftovers`]). Lost on restart by design: the first reconcile lists
//! GitHub again and the caches are complete by then. GitHub's side is kept
//! per scope, not per pool (see [`crate::inventory`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use super::failures::FailureStreak;
use super::plan::{PodView, SecretView};
use crate::connection::Target;
use crate::mutex::lock;

/// How long an expectation is trusted before the caches are believed again.
const EXPECTATION_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct PoolMemory {
    creating: BTreeMap<String, Instant>,
    removing: BTreeMap<String, Instant>,
    /// The runner id of every pod and Secret seen, until the runner is
    /// removed: a Secret goes with its pod, so once both vanished this is the
    /// only record of which registration to delete.
    known: BTreeMap<String, u64>,
    /// Pods whose start time was already recorded in the metrics.
    started: BTreeSet<String>,
    pub surplus_since: Option<Timestamp>,
    /// The last connection to GitHub that worked, so a deleted pool's runners
    /// can still be removed when its credentials Secret went first (a
    /// namespace deletion, `kubectl delete -f dir/`, a GitOps prune).
    pub target: Option<Arc<Target>>,
    /// Runners failing before they come online, and the pause they impose.
    pub failures: FailureStreak,
    /// Since when a deleted pool's cleanup could not reach GitHub.
    pub unreachable_since: Option<Instant>,
    /// Whether the pool's runners were last seen outdated (their Warning
    /// event is published once).
    pub outdated_announced: bool,
    /// Runner creations started and not finished yet: each runs as a task of
    /// its own and outlives the pass that started it.
    creations_in_flight: usize,
    /// When the hooks objects of kubernetes mode were last applied.
    hooks_applied: Option<Instant>,
    /// The last `SharedNamespace` warning published (kubernetes mode).
    pub shared_namespace: Option<String>,
    /// The repositories (`owner/name`, lower case) the pool's runner group
    /// admits, when known (a RunnerGroup of visibility `selected`): queued
    /// jobs of other repositories are not routed to the pool.
    pub group_repositories: Option<BTreeSet<String>>,
}

impl PoolMemory {
    pub fn creating(&self) -> BTreeSet<String> {
        self.creating.keys().cloned().collect()
    }

    pub fn removing(&self) -> BTreeSet<String> {
        self.removing.keys().cloned().collect()
    }

    pub fn expect_created(&mut self, name: &str) {
        self.creating.insert(name.to_string(), Instant::now());
    }

    pub fn forget_created(&mut self, name: &str) {
        self.creating.remove(name);
    }

    pub fn expect_removed(&mut self, name: &str) {
        self.removing.insert(name.to_string(), Instant::now());
    }

    pub fn forget_removed(&mut self, name: &str) {
        self.removing.remove(name);
    }

    /// Records the runners seen and returns those known before whose pod and
    /// Secret are both gone from the caches.
    pub fn vanished(&mut self, pods: &[PodView], secrets: &[SecretView]) -> Vec<SecretView> {
        let seen: BTreeSet<&str> = pods
            .iter()
            .map(|p| p.name.as_str())
            .chain(secrets.iter().map(|s| s.name.as_str()))
            .collect();
        let mut gone: Vec<SecretView> = self
            .known
            .iter()
            .filter(|(name, _)| !seen.contains(name.as_str()))
            .map(|(name, id)| SecretView {
                name: name.clone(),
                runner_id: Some(*id),
            })
            .collect();
        gone.retain(|g| !self.creating.contains_key(&g.name));
        // What is being removed (by this process or by someone deleting a
        // pod) is not recorded anew: a runner removed here is forgotten.
        let records = pods
            .iter()
            .filter(|p| !p.deleting)
            .map(|p| (&p.name, p.runner_id))
            .chain(secrets.iter().map(|s| (&s.name, s.runner_id)));
        for (name, id) in records {
            if self.removing.contains_key(name) {
                continue;
            }
            if let Some(id) = id {
                self.known.insert(name.clone(), id);
            }
        }
        gone
    }

    /// The runner is removed: nothing is left to deregister.
    pub fn forget_known(&mut self, name: &str) {
        self.known.remove(name);
    }

    /// True the first time it is asked about a started pod.
    pub fn first_seen_started(&mut self, name: &str) -> bool {
        self.started.insert(name.to_string())
    }

    /// Whether the hooks objects are due to be applied again (put back if
    /// deleted or edited by hand): never applied, or not for `every`.
    /// Counts as applied now.
    pub fn hooks_due(&mut self, every: Duration) -> bool {
        let due = self.hooks_applied.is_none_or(|at| at.elapsed() >= every);
        if due {
            self.hooks_applied = Some(Instant::now());
        }
        due
    }

    /// The hooks objects must be applied at the next pass.
    pub fn hooks_not_applied(&mut self) {
        self.hooks_applied = None;
    }

    /// A runner creation task is about to start.
    pub fn creation_started(&mut self) {
        self.creations_in_flight += 1;
    }

    /// A runner creation task ended, whatever its outcome.
    pub fn creation_ended(&mut self) {
        self.creations_in_flight = self.creations_in_flight.saturating_sub(1);
    }

    /// Runners that may still appear: creations under way, and runners
    /// created whose pod the cache has not shown yet.
    pub fn creations_pending(&self) -> usize {
        self.creations_in_flight + self.creating.len()
    }

    /// Drops expectations the caches have caught up with, or that are too old.
    pub fn settle(&mut self, pod_names: &BTreeSet<String>, secret_names: &BTreeSet<String>) {
        let now = Instant::now();
        self.started.retain(|name| pod_names.contains(name));
        self.creating.retain(|name, since| {
            !pod_names.contains(name) && now.duration_since(*since) < EXPECTATION_TTL
        });
        self.removing.retain(|name, since| {
            (pod_names.contains(name) || secret_names.contains(name))
                && now.duration_since(*since) < EXPECTATION_TTL
        });
    }
}

/// Every pool's memory, keyed by the pool's UID.
#[derive(Default)]
pub struct Memory {
    pools: Mutex<HashMap<String, PoolMemory>>,
}

impl Memory {
    /// Runs `f` with the pool's memory. Never held across an await.
    pub fn with<R>(&self, uid: &str, f: impl FnOnce(&mut PoolMemory) -> R) -> R {
        f(lock(&self.pools).entry(uid.to_string()).or_default())
    }

    /// Runs `f` with the pool's memory if it has any (a released pool has none).
    pub fn with_existing<R>(&self, uid: &str, f: impl FnOnce(&mut PoolMemory) -> R) -> Option<R> {
        lock(&self.pools).get_mut(uid).map(f)
    }

    pub fn forget(&self, uid: &str) {
        lock(&self.pools).remove(uid);
    }
}

/// What a pool released before all its runners were removed left for the
/// sweep, by pool UID (lost on restart): its last connection, and, in
/// kubernetes container mode, its hooks objects (namespace and pool name),
/// kept while its runners run.
#[derive(Default)]
pub struct Leftovers {
    pools: Mutex<HashMap<String, Leftover>>,
}

#[derive(Clone)]
pub struct Leftover {
    /// The last connection that worked, if the pool ever had one.
    pub target: Option<Arc<Target>>,
    /// `(namespace, pool name)` of hooks objects to remove at the end.
    pub hooks: Option<(String, String)>,
}

impl Leftovers {
    pub fn keep(&self, pool_uid: &str, leftover: Leftover) {
        lock(&self.pools).insert(pool_uid.to_string(), leftover);
    }

    /// Every pool with leftovers.
    pub fn all(&self) -> Vec<(String, Leftover)> {
        lock(&self.pools)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Nothing of the pool is left.
    pub fn done(&self, pool_uid: &str) {
        lock(&self.pools).remove(pool_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_settle_when_the_cache_catches_up() {
        let mut memory = PoolMemory::default();
        memory.expect_created("a");
        memory.expect_created("b");
        memory.expect_removed("c");
        memory.expect_removed("d");
        let pods = BTreeSet::from(["a".to_string(), "c".to_string()]);
        memory.settle(&pods, &BTreeSet::new());
        assert_eq!(memory.creating(), BTreeSet::from(["b".to_string()]));
        assert_eq!(memory.removing(), BTreeSet::from(["c".to_string()]));
    }

    #[test]
    fn runners_seen_once_are_remembered_until_removed() {
        let mut memory = PoolMemory::default();
        let secret = |name: &str, id| SecretView {
            name: name.into(),
            runner_id: Some(id),
        };
        assert!(
            memory
                .vanished(&[], &[secret("a", 1), secret("b", 2)])
                .is_empty()
        );
        assert_eq!(memory.vanished(&[], &[secret("b", 2)]), [secret("a", 1)]);
        memory.forget_known("a");
        assert!(memory.vanished(&[], &[secret("b", 2)]).is_empty());
    }
}
