//! The installation-wide sweep: what pools that no longer exist left behind.
//!
//! A deleted pool is normally released only once its runners are gone. When
//! it was released earlier (GitHub unreachable for the cleanup timeout) its
//! runner pods keep running: they carry no ownerReference, so no busy runner
//! was killed. This sweep removes them once GitHub answers again, through the
//! last connection the pool used: a runner busy on GitHub is kept until its
//! job ends, an idle one is deregistered and its pod and Secret deleted, and
//! registrations of the pool's ownership mark without a pod go too. Of a
//! deleted pool whose connection is not known (released cleanly, or before
//! a restart), what can hold no job goes: finished pods and Secrets whose
//! pod is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tracing::{info, warn};

use super::cleanup::{confirm_unlisted, plan_cleanup};
use super::context::Context;
use super::observe::{pod_view, secret_view};
use super::plan::{PodPhase, PodView, Removal, RemovalReason, SecretView};
use super::remove::delete_pod_and_secret;
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::GitHubError;
use crate::kit::error::Error;
use crate::pod::hooks;
use crate::runner::{self, pool_uid_of};

/// Sweeps every sync interval until the process ends.
pub async fn run(ctx: Arc<Context>, pools: Store<RunnerPool>) {
    loop {
        tokio::time::sleep(ctx.settings.github_sync_interval).await;
        if ctx.synced.load(Ordering::Relaxed) {
            sweep(&ctx, &pools).await;
        }
    }
}

async fn sweep(ctx: &Context, pools: &Store<RunnerPool>) {
    let live: BTreeSet<String> = pools
        .state()
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    // pool UID → (namespace, pods, Secrets) of pools that no longer exist
    let mut left: BTreeMap<String, (String, Vec<PodView>, Vec<SecretView>)> = BTreeMap::new();
    for pod in ctx.pods.state() {
        if let Some(uid) = pool_uid_of(pod.as_ref()).filter(|u| !live.contains(*u)) {
            let entry = left.entry(uid.to_string()).or_default();
            entry.0 = pod.namespace().unwrap_or_default();
            entry.1.push(pod_view(&pod));
        }
    }
    for (namespace, name, secret) in ctx.secret_index.all() {
        if let Some(uid) = secret.pool_uid.as_deref().filter(|u| !live.contains(*u)) {
            let entry = left.entry(uid.to_string()).or_default();
            entry.0 = namespace;
            entry.2.push(secret_view(name, &secret));
        }
    }
    for (uid, leftover) in ctx.leftovers.all() {
        let finished = match &leftover.target {
            Some(target) => {
                let (namespace, pods, secrets) = left.remove(&uid).unwrap_or_default();
                sweep_through(ctx, &uid, target, &namespace, &pods, &secrets).await
            }
            // No connection to ask GitHub with: the finished pods go below,
            // and the pool's runners are done once none runs.
            None => left.get(&uid).is_none_or(|(_, pods, _)| {
                pods.iter()
                    .all(|p| matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
            }),
        };
        if !finished {
            continue;
        }
        if let Some((namespace, pool)) = &leftover.hooks
            && let Err(e) = hooks::remove(&ctx.client, namespace, pool, &uid).await
        {
            warn!(pool_uid = %uid, error = %e, "sweep: cannot remove the container hooks' account yet");
            continue;
        }
        ctx.leftovers.done(&uid);
    }
    // Pools released without leftovers (and before a restart) have no
    // connection left to ask GitHub with. What of them can hold no job goes:
    // finished pods (their runner process ended) and Secrets whose pod is
    // gone; a runner pod still running is left to finish.
    for (uid, (namespace, pods, secrets)) in left {
        let running: BTreeSet<&str> = pods
            .iter()
            .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
            .map(|p| p.name.as_str())
            .collect();
        let finished = pods.iter().filter(|p| !running.contains(p.name.as_str()));
        let names: BTreeSet<&str> = finished
            .map(|p| p.name.as_str())
            .chain(secrets.iter().map(|s| s.name.as_str()))
            .filter(|name| !running.contains(name))
            .collect();
        for name in names {
            let removal = Removal {
                name: name.to_string(),
                runner_id: None,
                reason: RemovalReason::Finished,
                deregister: false,
                pod: pods.iter().any(|p| p.name == name),
                secret: secrets.iter().any(|s| s.name == name),
            };
            match delete_pod_and_secret(&ctx.client, &namespace, &removal).await {
                Ok(()) => {
                    info!(pool_uid = %uid, runner = name, "sweep: removed a finished runner of a deleted pool")
                }
                Err(e) => {
                    warn!(pool_uid = %uid, runner = name, error = %e, "sweep: cannot remove a finished runner of a deleted pool")
                }
            }
        }
    }
}

/// Removes what a released pool left, through its last connection: idle
/// runners are deregistered and their pods and Secrets deleted, busy ones
/// kept. Returns whether nothing of it is left.
async fn sweep_through(
    ctx: &Context,
    uid: &str,
    target: &Target,
    namespace: &str,
    pods: &[PodView],
    secrets: &[SecretView],
) -> bool {
    let runners = match target.api.list_runners(&target.scope).await {
        Ok(runners) => runners,
        Err(e) => {
            warn!(pool_uid = %uid, error = %e, "sweep: cannot list runners yet");
            return false;
        }
    };
    let ownership = runner::ownership_label(&ctx.settings.install_id, uid);
    let (mut removals, mut busy) = plan_cleanup(pods, secrets, &runners, &ownership);
    let api = target.api.as_ref();
    match confirm_unlisted(api, &target.scope, &mut removals, &runners, &ownership).await {
        Ok(more) => busy += more,
        Err(e) => {
            warn!(pool_uid = %uid, error = %e, "sweep: cannot read runners yet");
            return false;
        }
    }
    let mut failed = false;
    let mut removed = 0;
    for removal in &removals {
        match remove(ctx, namespace, target, removal).await {
            Ok(true) => removed += 1,
            Ok(false) => busy += 1,
            Err(e) => {
                warn!(pool_uid = %uid, runner = %removal.name, error = %e, "sweep: cannot remove a leftover runner");
                failed = true;
            }
        }
    }
    if removed > 0 {
        info!(pool_uid = %uid, removed, busy, "sweep: removed runners of a deleted pool");
    }
    busy == 0 && !failed
}

/// Removes a leftover runner: registration first, then pod and Secret.
/// Returns `Ok(false)` when GitHub says the runner is busy: nothing is
/// touched. A 404 on DELETE is "gone" only once confirmed (see
/// [`crate::inventory::confirm`]).
async fn remove(
    ctx: &Context,
    namespace: &str,
    target: &Target,
    removal: &Removal,
) -> Result<bool, Error> {
    if let (Some(id), true) = (removal.runner_id, removal.deregister) {
        let deleted = match target.api.delete_runner(&target.scope, id).await {
            Err(GitHubError::NotFound(_)) => {
                ctx.inventory
                    .of(&target.api, &target.scope)
                    .confirm_gone(id)
                    .await
            }
            other => other,
        };
        match deleted {
            Ok(()) => {}
            Err(GitHubError::Busy) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    delete_pod_and_secret(&ctx.client, namespace, removal).await?;
    Ok(true)
}
