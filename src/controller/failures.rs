//! Runners that fail before they come online, and pods the API server
//! refuses: neither may mint JIT configurations without bound.
//!
//! Every runner that fails before coming online (its pod `Failed`, or not
//! online within the bootstrap timeout) lengthens a per-pool pause before new
//! runners are registered: 1 s, 2 s, 4 s ... 5 minutes; a runner that comes
//! online ends it. A pool about to register runners first asks the API server
//! whether it would admit their pod (a server-side dry run): a refusal (Pod
//! Security, a ResourceQuota, an admission webhook) mints nothing and shows as
//! `Degraded` with reason `PodRejected` and the API server's message.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::plan::{Plan, RemovalReason};
use super::reconcile::Unreachable;
use super::status::Problem;
use super::{Context, Error, backoff, uid};
use crate::RunnerPool;
use crate::runner;

/// A pool's run of runner failures.
#[derive(Default)]
pub struct FailureStreak {
    /// Runners in a row that failed before coming online (or pods refused).
    count: u32,
    /// No new runner is registered before this.
    hold_until: Option<Instant>,
    /// What the last failure was, for the Degraded condition.
    last: Option<(Problem, String)>,
    /// Runners seen online, so each counts once towards ending the streak.
    online: BTreeSet<u64>,
}

impl FailureStreak {
    /// Counts `n` more failures and starts (or lengthens) the pause.
    pub fn failed(&mut self, n: u32, problem: Problem, message: String) {
        self.count = self.count.saturating_add(n);
        self.hold_until = Some(Instant::now() + backoff(self.count));
        self.last = Some((problem, message));
    }

    /// A runner is online: the streak ends the first time each one is seen.
    pub fn online(&mut self, runner_id: u64) {
        if self.online.insert(runner_id) {
            *self = FailureStreak {
                online: std::mem::take(&mut self.online),
                ..Default::default()
            };
        }
    }

    /// Whether the runner was ever seen online.
    pub fn was_online(&self, runner_id: u64) -> bool {
        self.online.contains(&runner_id)
    }

    /// Forgets runners whose pods are gone.
    pub fn retain_online(&mut self, runner_ids: &BTreeSet<u64>) {
        self.online.retain(|id| runner_ids.contains(id));
    }

    /// How long new runners must still wait.
    pub fn held_for(&self, now: Instant) -> Option<Duration> {
        self.hold_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// The problem to show while the streak lasts.
    pub fn problem(&self) -> Option<&(Problem, String)> {
        self.last.as_ref().filter(|_| self.count > 0)
    }
}

/// Counts the plan's runners that failed before coming online, holds the
/// plan's creations while the pause lasts, and asks the API server whether it
/// would admit a runner pod before any JIT configuration is minted. Returns
/// the problem to show, if any.
pub async fn hold_creations(
    pool: &RunnerPool,
    ctx: &Context,
    plan: &mut Plan,
    labels_hash: &str,
) -> Result<Option<Unreachable>, Error> {
    let pool_uid = uid(pool);
    let deprecated = deprecated_runners(pool, ctx, plan);
    let held = ctx.memory.with(&pool_uid, |m| {
        let failed: Vec<&str> = plan
            .remove
            .iter()
            .filter(|r| matches!(r.reason, RemovalReason::Failed | RemovalReason::BootstrapTimeout))
            // A deprecated runner may have shown online a moment: it counts anyway.
            .filter(|r| {
                !r.runner_id.is_some_and(|id| m.failures.was_online(id))
                    || deprecated.contains(&r.name)
            })
            .map(|r| r.name.as_str())
            .collect();
        if let Some(last) = deprecated.last() {
            let n = failed.len().max(1) as u32;
            tracing::warn!(pool = %pool.name_any(), runner = %last, "runner exited with code 7: its version is deprecated");
            let message = format!(
                "runners exit with code 7: GitHub refuses their runner version as deprecated; upgrade the image {} of the runner container (new runners are registered with exponential backoff, up to 5 minutes)",
                pool.runner_image().unwrap_or("(none)")
            );
            m.failures.failed(n, Problem::RunnerVersionDeprecated, message);
        } else if let Some(last) = failed.last() {
            let n = failed.len() as u32;
            tracing::info!(pool = %pool.name_any(), runner = %last, in_a_row = m.failures.count.saturating_add(n), "runner failed before coming online");
            // No count or name in the message: status is rewritten only when
            // the pool's state changes, not on every failure.
            let message = "runners failed before coming online; new runners are registered with exponential backoff (up to 5 minutes) until one comes online".to_string();
            m.failures.failed(n, Problem::RunnersFailing, message);
        }
        m.failures.held_for(Instant::now())
    });
    if let Some(wait) = held {
        plan.create = 0;
        return Ok(Some(problem(ctx, &pool_uid, wait)));
    }
    if plan.create > 0
        && let Some(refusal) = refused(pool, ctx, labels_hash).await?
    {
        plan.create = 0;
        let wait = ctx.memory.with(&pool_uid, |m| {
            let message = format!("the API server refuses the runner pods: {refusal}");
            m.failures.failed(1, Problem::PodRejected, message);
            m.failures.held_for(Instant::now()).unwrap_or_default()
        });
        return Ok(Some(problem(ctx, &pool_uid, wait)));
    }
    Ok(ctx.memory.with(&pool_uid, |m| {
        m.failures.problem().map(|(p, message)| Unreachable {
            problem: *p,
            message: message.clone(),
            retry_in: None,
        })
    }))
}

/// Names of the plan's failed runners whose `runner` container exited with
/// the "deprecated" code (7), from the pod cache.
fn deprecated_runners(pool: &RunnerPool, ctx: &Context, plan: &Plan) -> Vec<String> {
    let namespace = pool.namespace().unwrap_or_default();
    plan.remove
        .iter()
        .filter(|r| matches!(r.reason, RemovalReason::Failed))
        .filter(|r| {
            let key = kube::runtime::reflector::ObjectRef::new(&r.name).within(&namespace);
            ctx.pods
                .get(&key)
                .is_some_and(|pod| crate::versions::exited_deprecated(&pod))
        })
        .map(|r| r.name.clone())
        .collect()
}

fn problem(ctx: &Context, pool_uid: &str, wait: Duration) -> Unreachable {
    let (problem, message) = ctx
        .memory
        .with(pool_uid, |m| m.failures.problem().cloned())
        .unwrap_or((Problem::RunnersFailing, "runners failing".to_string()));
    Unreachable {
        problem,
        message,
        retry_in: Some(wait.max(Duration::from_secs(1))),
    }
}

/// Asks the API server, without creating anything, whether it would admit a
/// runner pod of the pool. Returns its refusal message.
async fn refused(
    pool: &RunnerPool,
    ctx: &Context,
    labels_hash: &str,
) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let name = runner::new_runner_name(pool.runner_name_prefix());
    let pod = runner::runner_pod(pool, &name, 0, labels_hash);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match pods.create(&dry_run, &pod).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status))
            if (400..500).contains(&status.code) && status.code != 429 =>
        {
            Ok(Some(status.message))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_pause_creations_longer_each_time_until_a_runner_comes_online() {
        let mut streak = FailureStreak::default();
        let now = Instant::now();
        assert_eq!(streak.held_for(now), None);
        streak.failed(1, Problem::RunnersFailing, "x".into());
        let first = streak.held_for(now).unwrap();
        streak.failed(2, Problem::RunnersFailing, "y".into());
        let third = streak.held_for(now).unwrap();
        assert!(third > first, "{first:?} then {third:?}");
        assert!(
            third <= Duration::from_secs(5),
            "4 s after three failures: {third:?}"
        );
        assert_eq!(streak.problem().unwrap().1, "y");

        streak.online(7);
        assert_eq!(streak.held_for(now), None);
        assert!(streak.problem().is_none());
        assert!(streak.was_online(7));
        streak.failed(1, Problem::RunnersFailing, "z".into());
        streak.online(7);
        assert!(
            streak.problem().is_some(),
            "a runner seen online before does not end a new streak"
        );
    }
}
