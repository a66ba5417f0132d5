//! Whether new runners may be registered now. Runners that fail before
//! they come online, and pods the API server refuses, may not mint JIT
//! configurations without bound: failures pause registrations (see
//! [`super::failures`]), and a pool about to register runners first asks the
//! API server whether it would admit their pod (a server-side dry run). A
//! refusal (Pod Security, a ResourceQuota, an admission webhook) mints nothing
//! and shows as `Degraded` with reason `PodRejected` and the API server's
//! message.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::context::{Context, uid};
use super::plan::{Plan, RemovalReason};
use crate::RunnerPool;
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::pod::build::runner_pod;
use crate::runner;

/// Counts the plan's runners that failed before coming online, holds the
/// plan's creations while the pause lasts, and asks the API server whether it
/// would admit a runner pod before any JIT configuration is minted. Returns
/// the problem to show, if any.
pub async fn hold_creations(
    pool: &RunnerPool,
    ctx: &Context,
    plan: &mut Plan,
    labels_hash: &str,
) -> Result<Option<Blocked>, Error> {
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
        m.failures.problem().map(|(p, message)| Blocked {
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

fn problem(ctx: &Context, pool_uid: &str, wait: Duration) -> Blocked {
    let (problem, message) = ctx
        .memory
        .with(pool_uid, |m| m.failures.problem().cloned())
        .unwrap_or((Problem::RunnersFailing, "runners failing".to_string()));
    Blocked {
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
    let pod = runner_pod(pool, &name, 0, labels_hash);
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
