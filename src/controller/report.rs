//! What a pool shows: its status (written by server-side apply, only when
//! it changed), a Warning event once per problem, and when to look again.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::warn;

use super::context::{Context, uid};
use super::plan;
use super::scaling::schedule_now;
use super::status;
use crate::RunnerPool;
use crate::connection::Target;
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::kit::retry::{backoff, jittered};
use crate::kit::status::apply_status;
use crate::versions::pool::assess_pool;
use crate::versions::{self, Assessment};

/// Records a problem in status and as a Warning event (once per problem), and
/// retries later with backoff; returns Ok so the reason shows in status rather
/// than only in the operator's log.
pub async fn degraded(
    pool: &RunnerPool,
    ctx: &Context,
    unreachable: Blocked,
    counts: Option<(plan::Counts, u64)>,
    version: Option<&Assessment>,
) -> Result<Action, Error> {
    let reason = unreachable.problem.reason();
    let key = uid(pool);
    let streak = ctx.attempts.failed(&key);
    let announce = ctx.attempts.announce(&key, reason);
    warn!(pool = %pool.name_any(), reason, message = %unreachable.message, "pool degraded");
    if announce {
        ctx.event(
            pool,
            EventType::Warning,
            reason,
            "Reconcile",
            unreachable.message.clone(),
        )
        .await;
    }
    write_status(
        pool,
        ctx,
        counts.map(|(c, _)| c),
        counts.map(|(_, g)| g as i64),
        Some((unreachable.problem, unreachable.message)),
        version,
    )
    .await?;
    let backoff = backoff(streak).max(Duration::from_secs(2));
    Ok(requeue(
        pool,
        unreachable
            .retry_in
            .unwrap_or(backoff)
            .max(Duration::from_secs(1)),
    ))
}

/// Writes status through server-side apply, only when it changed, and sets
/// the pool's gauges from it (so they agree with `kubectl get rp`). Without
/// a runner version assessment, the last one shown stays.
pub async fn write_status(
    pool: &RunnerPool,
    ctx: &Context,
    counts: Option<plan::Counts>,
    runner_group_id: Option<i64>,
    problem: Option<(Problem, String)>,
    version: Option<&Assessment>,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let mut new = status::build(
        pool.status.as_ref(),
        pool.metadata.generation,
        counts,
        runner_group_id,
        problem,
        now,
    );
    if let Some(assessment) = version {
        status::set_runner_version(
            &mut new,
            pool.status.as_ref(),
            assessment,
            pool.metadata.generation,
            now,
        );
    }
    new.schedule = schedule_now(pool).map(|s| s.status());
    if let Some(jobs) = ctx.demand.kept_jobs(&uid(pool)) {
        new.waiting_jobs = jobs;
    }
    let shown = pool.status.as_ref().map(status::reconciled_part);
    apply_status(&ctx.client, pool, shown.as_ref(), &new).await?;
    ctx.metrics.set_pool_status(
        &pool.namespace().unwrap_or_default(),
        &pool.name_any(),
        &new,
    );
    Ok(())
}

/// Requeue after about `next`, and never after the next opening or closing
/// of a schedule window (one second past it, so the window has changed):
/// boundaries need no polling.
pub fn requeue(pool: &RunnerPool, next: Duration) -> Action {
    let mut after = jittered(next);
    if let Some(change) = schedule_now(pool).and_then(|s| s.until_next_change(Timestamp::now())) {
        after = after.min(change + Duration::from_secs(1));
    }
    Action::requeue(after)
}

/// Compares the pool's runner version with its scope's newest release,
/// updates the gauge and announces a pool that just became outdated (one
/// Warning event; a restart does not send it again). A failed read of the
/// releases never stops a pass.
pub async fn runner_version(pool: &RunnerPool, ctx: &Context, target: &Target) -> Assessment {
    let assessment = assess_pool(pool, &ctx.releases, &target.api, &target.scope).await;
    let namespace = pool.namespace().unwrap_or_default();
    ctx.metrics
        .set_runner_version_outdated(&namespace, &pool.name_any(), assessment.outdated());
    let outdated = assessment.outdated() == Some(true);
    let was_outdated = pool
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == versions::OUTDATED && c.status == "True");
    // The memory keeps a pass that read a stale pool from announcing twice.
    let announce = ctx.memory.with(&uid(pool), |m| {
        let announce = outdated && !was_outdated && !m.outdated_announced;
        m.outdated_announced = outdated;
        announce
    });
    if announce {
        ctx.event(
            pool,
            EventType::Warning,
            versions::OUTDATED,
            "CheckRunnerVersion",
            assessment.condition.message.clone(),
        )
        .await;
    }
    assessment
}
