//! The installation-wide sweep: what pools that no longer exist left behind.
//!
//! A deleted pool is normally released only once its runners are gone. When
//! it was released earlier (GitHub unreachable for the cleanup timeout) its
//! runner pods keep running: they carry no ownerReference, so no busy runner
//! was killed. This sweep removes them once GitHub answers again, through the
//! last connection the pool used: a runner busy on GitHub is kept until its
//! job ends, an idle one is deregistered and its pod and Secret deleted, and
//! registrations of the pool's ownership mark without a pod go too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tracing::{info, warn};

use super::cleanup::plan_cleanup;
use super::context::Context;
use super::observe::{pod_view, secret_view};
use super::plan::{PodView, Removal, SecretView};
use super::remove::delete_pod_and_secret;
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::GitHubError;
use crate::kit::error::Error;
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
    for secret in ctx.secrets.state() {
        if let Some(uid) = pool_uid_of(secret.as_ref()).filter(|u| !live.contains(*u)) {
            let entry = left.entry(uid.to_string()).or_default();
            entry.0 = secret.namespace().unwrap_or_default();
            entry.2.push(secret_view(&secret));
        }
    }
    for (uid, target) in ctx.leftovers.all() {
        let (namespace, pods, secrets) = left.remove(&uid).unwrap_or_default();
        let runners = match target.api.list_runners(&target.scope).await {
            Ok(runners) => runners,
            Err(e) => {
                warn!(pool_uid = %uid, error = %e, "sweep: cannot list runners yet");
                continue;
            }
        };
        let ownership = runner::ownership_label(&ctx.settings.install_id, &uid);
        let (removals, busy) = plan_cleanup(&pods, &secrets, &runners, &ownership);
        let mut failed = false;
        for removal in &removals {
            if let Err(e) = remove(ctx, &namespace, &target, removal).await {
                warn!(pool_uid = %uid, runner = %removal.name, error = %e, "sweep: cannot remove a leftover runner");
                failed = true;
            }
        }
        if !removals.is_empty() {
            info!(pool_uid = %uid, removed = removals.len(), busy, "sweep: removed runners of a deleted pool");
        }
        if busy == 0 && !failed {
            ctx.leftovers.done(&uid);
        }
    }
}

/// Removes a leftover runner: registration first (a busy one is kept), then
/// pod and Secret.
async fn remove(
    ctx: &Context,
    namespace: &str,
    target: &Target,
    removal: &Removal,
) -> Result<(), Error> {
    if let (Some(id), true) = (removal.runner_id, removal.deregister) {
        match target.api.delete_runner(&target.scope, id).await {
            Ok(()) | Err(GitHubError::NotFound(_)) => {}
            Err(GitHubError::Busy) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    delete_pod_and_secret(&ctx.client, namespace, removal).await?;
    Ok(())
}
