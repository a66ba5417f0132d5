//! Removals decided on a stale view are confirmed with direct reads first.
//!
//! The planner works from the watch caches and the last GitHub list. Both can
//! be wrong in one direction: a pod the cache has not shown (the watch lags,
//! and the expectation that covered the new runner expired) makes its runner
//! look vanished or orphaned; a paged list is not a snapshot, so a runner
//! shifted off a page while it was read looks absent, and a runner absent past
//! its bootstrap deadline looks like it never came online. Before such a
//! removal the pod is read from the API server (not the cache), or the runner
//! from GitHub (`GET …/runners/{id}`); a removal that is not confirmed is
//! dropped from the plan, and the runner counts as live again. These reads
//! are rare: only removals of these kinds pay for them.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use tracing::{debug, info};

use super::context::{Context, uid};
use super::observe::inventory_of;
use super::plan::{Plan, Removal, RemovalReason};
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::{GitHubError, RunnerStatus};
use crate::kit::error::Error;

/// What a direct read says about a planned removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing to read: the removal does not rest on a possibly stale view.
    None,
    /// The runner's pod may exist although the cache lacks it.
    Pod,
    /// The runner may be online although the last list lacked it.
    Runner(u64),
}

/// Which read confirms `removal`. `listed` says whether the runner was in the
/// last GitHub list.
pub fn check_for(removal: &Removal, listed: bool) -> Check {
    match (removal.reason, removal.runner_id) {
        (RemovalReason::Vanished | RemovalReason::Orphan, _) => Check::Pod,
        (RemovalReason::BootstrapTimeout, Some(id)) if !listed => Check::Runner(id),
        _ => Check::None,
    }
}

/// Drops the plan's removals that a direct read contradicts; each runner so
/// kept counts as live again (one creation fewer).
pub async fn confirm_removals(
    pool: &RunnerPool,
    target: &Target,
    ctx: &Context,
    plan: &mut Plan,
) -> Result<(), Error> {
    let pool_uid = uid(pool);
    let inventory = inventory_of(ctx, target);
    let listed = |id: Option<u64>| id.is_some_and(|id| inventory.runner(id).is_some());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let mut kept = Vec::new();
    for (at, removal) in plan.remove.iter().enumerate() {
        let contradicted = match check_for(removal, listed(removal.runner_id)) {
            Check::None => false,
            Check::Pod => {
                let live = pods.get_opt(&removal.name).await?;
                let exists = live.is_some_and(|p| p.metadata.deletion_timestamp.is_none());
                if exists {
                    // Counted as being created until the cache shows it.
                    ctx.memory
                        .with(&pool_uid, |m| m.expect_created(&removal.name));
                }
                exists
            }
            Check::Runner(id) => match target.api.get_runner(&target.scope, id).await {
                Ok(runner) if runner.busy || runner.status == RunnerStatus::Online => {
                    inventory.added(runner);
                    true
                }
                Ok(_) | Err(GitHubError::NotFound(_)) => false,
                // Cannot tell: keep the runner; the next pass asks again.
                Err(e) => {
                    debug!(runner = %removal.name, error = %e, "cannot confirm the runner's state; keeping it for now");
                    true
                }
            },
        };
        if contradicted {
            info!(pool = %pool.name_any(), runner = %removal.name, reason = removal.reason.as_str(), "a direct read contradicts the cached view; runner kept");
            kept.push(at);
        }
    }
    for at in kept.into_iter().rev() {
        let removal = plan.remove.remove(at);
        plan.create = plan.create.saturating_sub(1);
        if removal.reason == RemovalReason::BootstrapTimeout {
            plan.counts.failed = plan.counts.failed.saturating_sub(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(reason: RemovalReason) -> Removal {
        Removal {
            name: "r".into(),
            runner_id: Some(7),
            reason,
            deregister: true,
            pod: false,
            secret: true,
        }
    }

    #[test]
    fn only_removals_resting_on_a_stale_view_are_read_again() {
        use RemovalReason::*;
        assert_eq!(check_for(&removal(Vanished), true), Check::Pod);
        assert_eq!(check_for(&removal(Orphan), true), Check::Pod);
        assert_eq!(
            check_for(&removal(BootstrapTimeout), false),
            Check::Runner(7)
        );
        assert_eq!(check_for(&removal(BootstrapTimeout), true), Check::None);
        for reason in [Failed, Finished, ScaleDown] {
            assert_eq!(check_for(&removal(reason), false), Check::None);
        }
    }
}
