//! Removing runners: the GitHub registration first (GitHub's 422 "still
//! running a job" keeps the runner and its pod), then the pod and Secret,
//! and only for runners whose ownership a direct read confirmed.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use tracing::{debug, info, instrument, warn};

use super::context::{Context, uid};
use super::observe::last_inventory;
use super::plan::{Removal, RemovalReason};
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::{GitHubApi, GitHubError, Scope};
use crate::kit::error::{Error, successes};

/// Carries out removals. Returns how many were removed, by reason.
pub async fn remove_runners(
    pool: &RunnerPool,
    target: &Target,
    ctx: &Context,
    removals: Vec<Removal>,
    first_error: &mut Option<GitHubError>,
) -> Result<Vec<(RemovalReason, usize)>, Error> {
    let results: Vec<(RemovalReason, Result<bool, Error>)> = futures::stream::iter(removals)
        .map(|removal| async move {
            let reason = removal.reason;
            (
                reason,
                remove_runner(pool, &target.api, &target.scope, ctx, &removal).await,
            )
        })
        .buffer_unordered(ctx.settings.create_concurrency.max(1))
        .collect()
        .await;
    let outcomes = successes(
        results
            .into_iter()
            .map(|(reason, r)| r.map(|removed| (reason, removed))),
        first_error,
    )?;
    let mut by_reason: std::collections::BTreeMap<RemovalReason, usize> = Default::default();
    for (reason, _) in outcomes.into_iter().filter(|(_, removed)| *removed) {
        *by_reason.entry(reason).or_default() += 1;
    }
    Ok(by_reason.into_iter().collect())
}

/// Removes one runner: its GitHub registration first, then pod and Secret.
/// Returns `Ok(false)` when GitHub says the runner is busy: then nothing is touched.
#[instrument(skip_all, fields(pool = %pool.name_any(), runner = %removal.name, reason = removal.reason.as_str()))]
pub async fn remove_runner(
    pool: &RunnerPool,
    api: &Arc<dyn GitHubApi>,
    scope: &Scope,
    ctx: &Context,
    removal: &Removal,
) -> Result<bool, Error> {
    let pool_uid = uid(pool);
    let inventory = ctx.inventory.of(api, scope);
    ctx.memory
        .with(&pool_uid, |m| m.expect_removed(&removal.name));
    if let (Some(id), false) = (removal.runner_id, removal.deregister) {
        inventory.removed(id);
    }
    let owned = match (removal.runner_id, removal.deregister) {
        (Some(id), true) => inventory.is_runner_named(id, &removal.name).await,
        _ => Ok(true),
    };
    let owned = match owned {
        Ok(owned) => owned,
        Err(e) => {
            ctx.memory
                .with(&pool_uid, |m| m.forget_removed(&removal.name));
            return Err(e.into());
        }
    };
    if !owned {
        // The id on the pod or Secret names a runner without the pool's
        // ownership label (edited by hand, or by a job that could patch
        // pods): it is not ours to delete. A dead pod still goes; a live one
        // is kept, as it may run a job.
        warn!(runner_id = ?removal.runner_id, "the runner id does not name one of the pool's runners; no DELETE is sent");
        if !matches!(
            removal.reason,
            RemovalReason::Failed | RemovalReason::Finished | RemovalReason::Vanished
        ) {
            ctx.memory
                .with(&pool_uid, |m| m.forget_removed(&removal.name));
            return Ok(false);
        }
    }
    if let (Some(id), true, true) = (removal.runner_id, removal.deregister, owned) {
        let deleted = match api.delete_runner(scope, id).await {
            Err(GitHubError::NotFound(_)) => inventory.confirm_gone(id).await,
            other => other,
        };
        match deleted {
            Ok(()) => inventory.removed(id),
            Err(GitHubError::Busy) => {
                info!(runner_id = id, "runner is running a job; keeping it");
                ctx.metrics.busy_runners_kept.inc();
                ctx.memory
                    .with(&pool_uid, |m| m.forget_removed(&removal.name));
                inventory.busy(id);
                return Ok(false);
            }
            Err(e) => {
                ctx.memory
                    .with(&pool_uid, |m| m.forget_removed(&removal.name));
                return Err(e.into());
            }
        }
    }
    delete_runner_objects(pool, ctx, removal).await?;
    Ok(true)
}

/// Removes the runners of `removals` whose registration needs no DELETE
/// (finished ones): their pods and Secrets only.
pub async fn remove_finished_runners(
    pool: &RunnerPool,
    ctx: &Context,
    removals: &[Removal],
) -> Result<(), Error> {
    let pool_uid = uid(pool);
    let inventory = last_inventory(&pool_uid, ctx);
    for removal in removals.iter().filter(|r| !r.deregister) {
        ctx.memory
            .with(&pool_uid, |m| m.expect_removed(&removal.name));
        if let (Some(inventory), Some(id)) = (&inventory, removal.runner_id) {
            inventory.removed(id);
        }
        delete_runner_objects(pool, ctx, removal).await?;
    }
    Ok(())
}

/// Deletes a runner's pod and Secret (those the removal names); already gone is fine.
async fn delete_runner_objects(
    pool: &RunnerPool,
    ctx: &Context,
    removal: &Removal,
) -> Result<(), Error> {
    let namespace = pool.namespace().unwrap_or_default();
    delete_pod_and_secret(&ctx.client, &namespace, removal).await?;
    // Removed: nothing is left to deregister, nor still to appear.
    ctx.memory.with(&uid(pool), |m| {
        m.forget_known(&removal.name);
        m.forget_created(&removal.name);
    });
    ctx.metrics
        .runners_removed
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: removal.reason.as_str(),
        })
        .inc();
    debug!(runner = %removal.name, "runner removed");
    Ok(())
}

/// Deletes the pod and Secret a removal names; already gone is fine.
pub async fn delete_pod_and_secret(
    client: &kube::Client,
    namespace: &str,
    removal: &Removal,
) -> Result<(), kube::Error> {
    let gone_ok = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    };
    if removal.pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        gone_ok(
            pods.delete(&removal.name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
    }
    if removal.secret {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        gone_ok(
            secrets
                .delete(&removal.name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
    }
    Ok(())
}

/// Deletes the Secrets of runners that are online: their process read the
/// JIT configuration and, its container never restarted, never reads it
/// again. In kubernetes mode a job may read the namespace's Secrets; once
/// released, a runner's configuration is out of its reach. Already gone is
/// fine; the runner is still known by its pod (see `PoolMemory::vanished`).
pub async fn release_consumed_secrets(
    pool: &RunnerPool,
    ctx: &Context,
    names: &[String],
) -> Result<(), Error> {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    for name in names {
        match secrets.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                debug!(runner = %name, "JIT configuration Secret released: the runner is online")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
