//! Deleting a pool: every runner leaves GitHub, then its pod and Secret go.
//!
//! Busy runners are waited for. GitHub being unreachable, or the credentials
//! being gone, never wedges the deletion: after the cleanup timeout (counted
//! from the deletion request) the finalizer is released with a Warning event
//! naming what may be left on GitHub.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::plan::{Removal, RemovalReason};
use super::reconcile::{connect, observe, remove_runner};
use super::{Context, Error, uid};
use crate::RunnerPool;
use crate::github::GitHubError;
use crate::runner;

pub async fn cleanup(pool: Arc<RunnerPool>, ctx: &Context) -> Result<Action, Error> {
    let deleted_at = pool
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let waited =
        Duration::try_from(Timestamp::now().duration_since(deleted_at)).unwrap_or_default();
    let out_of_time = waited >= ctx.settings.cleanup_timeout;

    let outcome = remove_everything(&pool, ctx).await;
    let remaining = match &outcome {
        Ok(0) => {
            info!(pool = %pool.name_any(), "all runners removed");
            ctx.memory.forget(&uid(&pool));
            ctx.metrics
                .forget_pool(&pool.namespace().unwrap_or_default(), &pool.name_any());
            return Ok(Action::await_change());
        }
        Ok(n) => *n,
        Err(_) => usize::MAX,
    };
    if out_of_time {
        let why = match &outcome {
            Err(message) => message.clone(),
            Ok(n) => format!("{n} runner(s) still busy"),
        };
        warn!(pool = %pool.name_any(), %why, "giving up on cleanup after the timeout");
        ctx.event(
            &pool,
            EventType::Warning,
            "CleanupIncomplete",
            "Delete",
            format!(
                "Released the pool after {}s without removing every runner from GitHub ({why}); leftover registrations carry label {} and can be removed by hand",
                ctx.settings.cleanup_timeout.as_secs(),
                runner::ownership_label(&ctx.settings.install_id, &uid(&pool)),
            ),
        )
        .await;
        ctx.memory.forget(&uid(&pool));
        ctx.metrics
            .forget_pool(&pool.namespace().unwrap_or_default(), &pool.name_any());
        return Ok(Action::await_change());
    }
    Err(Error::CleanupPending(if remaining == usize::MAX {
        1
    } else {
        remaining
    }))
}

/// Removes every runner of the pool it can. Returns how many remain (busy),
/// or why GitHub could not be asked.
async fn remove_everything(pool: &RunnerPool, ctx: &Context) -> Result<usize, String> {
    let target = connect(pool, ctx).await.map_err(|u| u.message)?;
    let ownership = runner::ownership_label(&ctx.settings.install_id, &uid(pool));
    let runners = target
        .api
        .list_runners(&target.scope)
        .await
        .map_err(|e| format!("cannot list runners: {e}"))?;

    // name → (runner id, has pod, has Secret)
    let mut all: BTreeMap<String, (Option<u64>, bool, bool)> = BTreeMap::new();
    let (pods, secrets) = observe(pool, ctx);
    for pod in &pods {
        let entry = all.entry(pod.name.clone()).or_default();
        entry.1 = true;
        entry.0 = entry.0.or(pod.runner_id);
    }
    for secret in &secrets {
        let entry = all.entry(secret.name.clone()).or_default();
        entry.2 = true;
        entry.0 = entry.0.or(secret.runner_id);
    }
    for r in runners.iter().filter(|r| r.has_label(&ownership)) {
        all.entry(r.name.clone()).or_default().0 = Some(r.id);
    }

    let mut remaining = 0;
    let mut failure = None;
    for (name, (runner_id, pod, secret)) in all {
        // Known busy runners are not even asked about: their job is waited for.
        if runner_id.is_some_and(|id| runners.iter().any(|r| r.id == id && r.busy)) {
            remaining += 1;
            continue;
        }
        let removal = Removal {
            name,
            runner_id,
            reason: RemovalReason::ScaleDown,
            deregister: true,
            pod,
            secret,
        };
        match remove_runner(pool, &target.api, &target.scope, ctx, &removal).await {
            Ok(true) => {}
            Ok(false) => remaining += 1,
            Err(Error::GitHub(
                e @ (GitHubError::Unavailable(_)
                | GitHubError::Server { .. }
                | GitHubError::RateLimited { .. }),
            )) => {
                failure.get_or_insert(format!("GitHub: {e}"));
                remaining += 1;
            }
            Err(e) => {
                failure.get_or_insert(e.to_string());
                remaining += 1;
            }
        }
    }
    match failure {
        Some(message) => Err(message),
        None => Ok(remaining),
    }
}
