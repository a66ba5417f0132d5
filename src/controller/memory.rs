//! What the operator remembers about each pool between reconciles, in memory.
//!
//! The watch caches lag the API server by a moment, so a pod just created may
//! not be in the cache at the next reconcile, nor a pod just deleted gone from
//! it. Without remembering those, the pool would overshoot on scale-up and ask
//! GitHub twice to delete the same runner. Also kept: the last GitHub view
//! (so the hot path needs no list call), when a surplus began, and the error
//! streak for backoff. Lost on restart by design: the first reconcile lists
//! GitHub again and the caches are complete by then.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use super::plan::GitHubView;
use crate::github::{Runner, RunnerLabel};

/// How long an expectation is trusted before the caches are believed again.
const EXPECTATION_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct PoolMemory {
    creating: BTreeMap<String, Instant>,
    removing: BTreeMap<String, Instant>,
    /// Pods whose start time was already recorded in the metrics.
    started: BTreeSet<String>,
    pub github: Option<GitHubView>,
    pub surplus_since: Option<Timestamp>,
    pub error_streak: u32,
    /// Condition reasons already announced with an event, so a lasting problem
    /// is reported once rather than on every retry.
    pub announced: Option<String>,
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

    /// True the first time it is asked about a started pod.
    pub fn first_seen_started(&mut self, name: &str) -> bool {
        self.started.insert(name.to_string())
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

    pub fn github_runner_added(&mut self, runner: Runner) {
        if let Some(view) = self.github.as_mut() {
            view.runners.retain(|r| r.id != runner.id);
            view.runners.push(runner);
        }
    }

    pub fn github_runner_removed(&mut self, id: u64) {
        if let Some(view) = self.github.as_mut() {
            view.runners.retain(|r| r.id != id);
        }
    }

    pub fn github_runner_busy(&mut self, id: u64) {
        if let Some(r) = self
            .github
            .as_mut()
            .and_then(|v| v.runners.iter_mut().find(|r| r.id == id))
        {
            r.busy = true;
        }
    }

    pub fn github_runner_labels(&mut self, id: u64, labels: Vec<RunnerLabel>) {
        if let Some(r) = self
            .github
            .as_mut()
            .and_then(|v| v.runners.iter_mut().find(|r| r.id == id))
        {
            r.labels = labels;
        }
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
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(pools.entry(uid.to_string()).or_default())
    }

    pub fn forget(&self, uid: &str) {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pools.remove(uid);
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
}
