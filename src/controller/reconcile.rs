//! One pass over a live pool: observe → connect → plan → act → status.
//!
//! Observing reads only the watch caches. Connecting reads the credentials
//! Secret and resolves the runner group. GitHub is listed only when the last
//! view is older than the sync interval (or a bootstrap deadline needs a fresh
//! one); on the hot path a new runner costs one generate-jitconfig call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{instrument, warn};

use super::confirm::confirm_removals;
use super::connect::connect_pool;
use super::context::{Context, uid};
use super::create::create_runners;
use super::hold::hold_creations;
use super::isolation::warn_if_shared;
use super::observe::{inventory_of, make_plan, pool_pods};
use super::relabel::relabel_runners;
use super::remove::{release_consumed_secrets, remove_finished_runners, remove_runners};
use super::report::{self, degraded, requeue, write_status};
use super::scale_set;
use super::scaling::schedule_now;
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::GitHubError;
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::pod::{hooks, job_pod_template};
use crate::runner;

#[instrument(skip_all, fields(pool = %pool.name_any()))]
pub async fn apply(pool: Arc<RunnerPool>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let pool_uid = uid(&pool);
    let ownership = runner::ownership_label(&ctx.settings.install_id, &pool_uid);
    let desired_labels = runner::desired_custom_labels(&pool, &ownership);
    let desired_hash = runner::labels_hash(&desired_labels);

    let connected = connect_pool(&pool, ctx).await?;
    let target = match connected {
        Ok(target) => Arc::new(target),
        Err(unreachable) => {
            // Finished runners need no GitHub call (GitHub removed them when
            // their job ended): their pods and Secrets go regardless.
            let plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash);
            remove_finished_runners(&pool, ctx, &plan.remove).await?;
            return degraded(&pool, ctx, unreachable, None, None).await;
        }
    };
    ctx.memory
        .with(&pool_uid, |m| m.target = Some(target.clone()));

    // About one list per scope and sync interval, whatever the number of
    // pools. Each pool comes back once per interval (jittered); refreshing at
    // 80 % of it keeps every pool's view younger than the interval at the
    // cost of at most 1.25 lists per interval.
    let inventory = inventory_of(ctx, &target);
    let pass_began = Instant::now();
    let mut github_problem = inventory
        .refresh_if_older_than(ctx.settings.github_sync_interval.mul_f64(0.8))
        .await
        .err()
        .map(|e| list_problem(&e, &target));

    // A scale-set pool's demand and runners come from its scale set, served
    // by a listener of this replica from the first pass on.
    if pool.spec.scale_set.is_some() {
        match scale_set::ensure(&pool, &target, ctx).await? {
            Ok(_) => {}
            Err(blocked) => {
                let plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash);
                remove_finished_runners(&pool, ctx, &plan.remove).await?;
                return degraded(&pool, ctx, blocked, None, None).await;
            }
        }
    }
    let mut plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash);
    if plan.needs_github_view && github_problem.is_none() {
        // A view asked for during this pass (by any pool) will do.
        match inventory.refresh_since(pass_began).await {
            Ok(_) => plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash),
            Err(e) => github_problem = Some(list_problem(&e, &target)),
        }
    }
    ctx.memory
        .with(&pool_uid, |m| m.surplus_since = plan.surplus_since);
    if pool.spec.scale_set.is_some() {
        // A scale set's labels are fixed when it is created.
        plan.relabel.clear();
    }
    confirm_removals(&pool, &target, ctx, &mut plan).await?;
    // Runner pods of kubernetes mode name the pool's ServiceAccount: it must
    // exist before they are created (and before their dry run).
    // They are applied again now and then too, so that one deleted or
    // edited by hand is put back.
    // What shares the namespace with their jobs is looked at as often.
    let mut hooks_problem = None;
    if pool.container_mode() == crate::crd::ContainerMode::Kubernetes {
        let due = ctx.memory.with(&pool_uid, |m| {
            m.hooks_due(ctx.settings.github_sync_interval)
        });
        if due {
            warn_if_shared(&pool, ctx).await;
        }
        if (plan.create > 0 || due)
            && let Err(refused) = hooks::ensure(&pool, &ctx.client).await
        {
            ctx.memory.with(&pool_uid, |m| m.hooks_not_applied());
            plan.create = 0;
            hooks_problem = Some(refused);
        }
        if due && hooks_problem.is_none() {
            delete_unused_job_pod_templates(&pool, ctx).await;
        }
    }
    let failing = hold_creations(&pool, ctx, &mut plan, &desired_hash).await?;

    // Removals first: they free capacity and never depend on creations.
    let mut first_error: Option<GitHubError> = None;
    let removed =
        remove_runners(&pool, &target, ctx, plan.remove.clone(), &mut first_error).await?;
    release_consumed_secrets(&pool, ctx, &plan.consumed_secrets).await?;
    let created = create_runners(
        &pool,
        &target,
        ctx,
        plan.create,
        &ownership,
        &desired_hash,
        &mut first_error,
    )
    .await?;
    relabel_runners(
        &pool,
        &target,
        ctx,
        &plan.relabel,
        &desired_labels,
        &desired_hash,
        &mut first_error,
    )
    .await?;

    if created > 0 {
        ctx.event(
            &pool,
            EventType::Normal,
            "RunnersCreated",
            "Scale",
            format!("Registered {created} runner(s) with new JIT configurations"),
        )
        .await;
    }
    if !removed.is_empty() {
        let summary: Vec<String> = removed
            .iter()
            .map(|(reason, n)| format!("{n} {}", reason.as_str()))
            .collect();
        ctx.event(
            &pool,
            EventType::Normal,
            "RunnersRemoved",
            "Scale",
            format!("Removed runner(s): {}", summary.join(", ")),
        )
        .await;
    }

    // After the runners' work: the hourly downloads read never delays it.
    let version = report::runner_version(&pool, ctx, &target).await;
    let problem = github_problem.or_else(|| {
        first_error
            .as_ref()
            .map(|e| Blocked::github(e, "GitHub call failed"))
            .or(hooks_problem)
            .or(failing)
            .or_else(|| {
                let problem = schedule_now(&pool)?.problem()?;
                Some(Blocked::new(Problem::InvalidSpec, problem))
            })
    });
    let counts = plan.counts;
    match problem {
        Some(unreachable) => {
            degraded(
                &pool,
                ctx,
                unreachable,
                Some((counts, target.runner_group_id)),
                Some(&version),
            )
            .await
        }
        None => {
            ctx.attempts.succeeded(&pool_uid);
            write_status(
                &pool,
                ctx,
                Some(counts),
                Some(target.runner_group_id as i64),
                None,
                Some(&version),
            )
            .await?;
            let mut next = ctx.settings.github_sync_interval;
            if let Some(recheck) = plan.recheck_in {
                next = next.min(recheck);
            }
            if created < plan.create {
                next = next.min(Duration::from_secs(1));
            }
            Ok(requeue(&pool, next))
        }
    }
}

/// Deletes the pool's job pod template ConfigMaps that neither the pool's
/// template as it is now nor any of its runner pods names. Not while a
/// runner creation is under way or its pod not yet in the cache: that pod
/// may name one of them. A failure is logged; the next interval tries again.
async fn delete_unused_job_pod_templates(pool: &RunnerPool, ctx: &Context) {
    let pending = ctx.memory.with(&uid(pool), |m| m.creations_pending());
    if pending > 0 {
        return;
    }
    let pods = pool_pods(pool, ctx);
    let mut keep = job_pod_template::in_use(pods.iter().map(|p| &p.metadata));
    keep.extend(job_pod_template::config_map_name(pool));
    let namespace = pool.namespace().unwrap_or_default();
    if let Err(e) =
        job_pod_template::delete_unused(&ctx.client, &namespace, &uid(pool), &keep).await
    {
        warn!(pool = %pool.name_any(), error = %e, "cannot delete unused job pod template ConfigMaps");
    }
}

fn list_problem(error: &GitHubError, target: &Target) -> Blocked {
    Blocked::github(error, &format!("cannot list runners of {}", target.scope))
}
