//! Deleting a pool: every idle runner leaves GitHub at once, busy runners are
//! waited for (however long their jobs take), then pods and Secrets go. No
//! pod goes unless GitHub confirmed its runner gone or idle: a runner the
//! scope's list does not show as the pool's (a paged list is not a snapshot,
//! labels can be edited by hand) is read directly first. Runner creations
//! still under way are waited for, so none lands after the pool is released.
//!
//! Runner pods carry no ownerReference to their pool, so no propagation mode
//! (background, foreground, orphan) lets the garbage collector reach a busy
//! runner; this finalizer is what removes them. While busy runners remain the
//! pool says so (`Ready` False, reason `WaitingForJobs`, and an event naming
//! how many jobs still run). Only when GitHub cannot be reached (or the
//! credentials are gone and no earlier connection is remembered) is the pool
//! released after the cleanup timeout, with a Warning event; what it leaves
//! behind is then collected by the installation-wide sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::connect::connect;
use super::context::{Context, uid};
use super::memory::Leftover;
use super::observe::observe;
use super::plan::{PodPhase, PodView, Removal, RemovalReason, SecretView};
use super::remove::remove_runner;
use super::scale_set;
use super::status;
use crate::RunnerPool;
use crate::connection::Target;
use crate::crd::ContainerMode;
use crate::github::{GitHubApi, GitHubError, Runner, Scope};
use crate::kit::error::Error;
use crate::kit::status::apply_status;
use crate::pod::hooks;
use crate::runner;

pub async fn cleanup(pool: Arc<RunnerPool>, ctx: &Context) -> Result<Action, Error> {
    let pool_uid = uid(&pool);
    // Runner creations a pass left running finish first (a mint takes at
    // most one GitHub request): removing a registration whose pod is about
    // to appear, or releasing the pool before it does, would leave that pod.
    if let Some(pending) = creations_pending(&pool, ctx) {
        info!(pool = %pool.name_any(), pending, "waiting for runner creations under way before removing the pool's runners");
        return Err(Error::CleanupPending(pending));
    }
    let removed = match remove_everything(&pool, ctx).await {
        // The scale set goes once its runners are gone.
        Ok(0) if pool.spec.scale_set.is_some() => remove_scale_set(&pool, ctx).await.map(|()| 0),
        other => other,
    };
    match removed {
        Ok(0) => {
            info!(pool = %pool.name_any(), "all runners removed");
            if pool.container_mode() == ContainerMode::Kubernetes {
                let namespace = pool.namespace().unwrap_or_default();
                hooks::remove(&ctx.client, &namespace, &pool.name_any(), &pool_uid).await?;
            }
            release(&pool, ctx, false);
            Ok(Action::await_change())
        }
        Ok(busy) => {
            // GitHub answers: wait for the jobs, however long they take.
            ctx.memory.with(&pool_uid, |m| m.unreachable_since = None);
            let waiting = format!("{}/{busy}", status::WAITING_FOR_JOBS);
            let announce = ctx.attempts.announce(&pool_uid, &waiting);
            if announce {
                ctx.event(
                    &pool,
                    EventType::Normal,
                    status::WAITING_FOR_JOBS,
                    "Delete",
                    format!(
                        "Waiting for {busy} running job(s) to finish before removing their runners; idle runners were removed"
                    ),
                )
                .await;
            }
            write_waiting_status(&pool, ctx, busy as u32).await?;
            Err(Error::CleanupPending(busy))
        }
        Err(why) => {
            let since = ctx.memory.with(&pool_uid, |m| {
                *m.unreachable_since.get_or_insert_with(Instant::now)
            });
            if since.elapsed() < ctx.settings.cleanup_timeout {
                warn!(pool = %pool.name_any(), %why, "cannot remove the deleted pool's runners yet");
                return Err(Error::CleanupPending(1));
            }
            warn!(pool = %pool.name_any(), %why, "giving up on cleanup: GitHub unreachable for the cleanup timeout");
            ctx.event(
                &pool,
                EventType::Warning,
                "CleanupIncomplete",
                "Delete",
                format!(
                    "Released the pool after GitHub was unreachable for {}s ({why}); no runner pod was deleted while its runner might be busy, and registrations left behind carry label {} and are removed by the operator's sweep once GitHub answers",
                    ctx.settings.cleanup_timeout.as_secs(),
                    runner::ownership_label(&ctx.settings.install_id, &pool_uid),
                ),
            )
            .await;
            release(&pool, ctx, true);
            Ok(Action::await_change())
        }
    }
}

/// How many runners of the pool may still appear (creations under way, or
/// created and not yet in the cache), if any.
fn creations_pending(pool: &RunnerPool, ctx: &Context) -> Option<usize> {
    let (pods, secrets) = observe(pool, ctx);
    let pod_names = pods.into_iter().map(|p| p.name).collect();
    let secret_names = secrets.into_iter().map(|s| s.name).collect();
    let pending = ctx.memory.with(&uid(pool), |m| {
        m.settle(&pod_names, &secret_names);
        m.creations_pending()
    });
    (pending > 0).then_some(pending)
}

fn release(pool: &RunnerPool, ctx: &Context, leftovers: bool) {
    // Whatever is left (pods of runners GitHub could not confirm idle) is the
    // sweep's, through the pool's last working connection; the hooks objects
    // of kubernetes mode stay while those runners run.
    let target = ctx.memory.with(&uid(pool), |m| m.target.clone());
    let hooks = (pool.container_mode() == ContainerMode::Kubernetes)
        .then(|| (pool.namespace().unwrap_or_default(), pool.name_any()));
    if leftovers && (target.is_some() || hooks.is_some()) {
        ctx.leftovers.keep(&uid(pool), Leftover { target, hooks });
    }
    ctx.memory.forget(&uid(pool));
    ctx.attempts.forget(&uid(pool));
    // A listener still serving the pool stops (its session times out on the
    // service when it could not be closed).
    ctx.scale_sets.stop(&uid(pool));
    ctx.metrics
        .forget_pool(&pool.namespace().unwrap_or_default(), &pool.name_any());
}

async fn write_waiting_status(pool: &RunnerPool, ctx: &Context, busy: u32) -> Result<(), Error> {
    let new = status::waiting_for_jobs(
        pool.status.as_ref(),
        pool.metadata.generation,
        busy,
        Timestamp::now(),
    );
    let shown = pool.status.as_ref().map(status::reconciled_part);
    apply_status(&ctx.client, pool, shown.as_ref(), &new).await
}

/// The GitHub connection for the deleted pool: a fresh one, or the last one
/// that worked when the credentials Secret is already gone.
async fn target(pool: &RunnerPool, ctx: &Context) -> Result<Arc<Target>, String> {
    let connected = match connect(pool, ctx).await {
        Ok(Ok(target)) => Ok(target),
        Ok(Err(blocked)) => Err(blocked.message),
        Err(e) => Err(e.to_string()),
    };
    match connected {
        Ok(target) => Ok(Arc::new(target)),
        Err(message) => ctx
            .memory
            .with(&uid(pool), |m| m.target.clone())
            .ok_or(message),
    }
}

/// Removes the pool's scale set, its session first.
async fn remove_scale_set(pool: &RunnerPool, ctx: &Context) -> Result<(), String> {
    let target = target(pool, ctx).await?;
    scale_set::remove(pool, ctx, &target).await
}

/// Removes every runner of the pool it can. Returns how many remain busy, or
/// why GitHub could not be asked.
async fn remove_everything(pool: &RunnerPool, ctx: &Context) -> Result<usize, String> {
    let target = target(pool, ctx).await?;
    let ownership = runner::ownership_label(&ctx.settings.install_id, &uid(pool));
    let runners = target
        .api
        .list_runners(&target.scope)
        .await
        .map_err(|e| format!("cannot list runners of {}: {e}", target.scope))?;
    let (pods, secrets) = observe(pool, ctx);
    let (mut removals, mut busy) = plan_cleanup(&pods, &secrets, &runners, &ownership);
    busy += confirm_unlisted(
        target.api.as_ref(),
        &target.scope,
        &mut removals,
        &runners,
        &ownership,
    )
    .await
    .map_err(|e| format!("cannot read runners of {}: {e}", target.scope))?;

    let mut failure = None;
    for removal in removals {
        match remove_runner(pool, &target.api, &target.scope, ctx, &removal).await {
            Ok(true) => {}
            Ok(false) => busy += 1,
            Err(e) => {
                failure.get_or_insert(e.to_string());
            }
        }
    }
    match failure {
        Some(message) => Err(message),
        None => Ok(busy),
    }
}

/// What deleting a pool removes now, and how many busy runners it waits for.
/// `runners` is a fresh list of the pool's scope: a runner busy there is not
/// even asked about, one absent from it needs no DELETE.
pub fn plan_cleanup(
    pods: &[PodView],
    secrets: &[SecretView],
    runners: &[Runner],
    ownership: &str,
) -> (Vec<Removal>, usize) {
    // name → (runner id, pod phase, has Secret)
    let mut all: BTreeMap<&str, (Option<u64>, Option<PodPhase>, bool)> = BTreeMap::new();
    for pod in pods {
        let entry = all.entry(&pod.name).or_default();
        entry.0 = entry.0.or(pod.runner_id);
        entry.1 = Some(pod.phase);
    }
    for secret in secrets {
        let entry = all.entry(&secret.name).or_default();
        entry.0 = entry.0.or(secret.runner_id);
        entry.2 = true;
    }
    for r in runners.iter().filter(|r| r.has_label(ownership)) {
        all.entry(&r.name).or_default().0 = Some(r.id);
    }

    let mut removals = Vec::new();
    let mut busy = 0;
    for (name, (runner_id, phase, secret)) in all {
        // Only a runner with the pool's ownership label is the pool's: an id
        // edited onto a pod never sends a DELETE for someone else's runner.
        let registered = runner_id.and_then(|id| {
            runners
                .iter()
                .find(|r| r.id == id && r.has_label(ownership))
        });
        if registered.is_some_and(|r| r.busy) {
            busy += 1;
            continue;
        }
        removals.push(Removal {
            name: name.to_string(),
            runner_id,
            reason: match phase {
                Some(PodPhase::Succeeded) => RemovalReason::Finished,
                Some(PodPhase::Failed) => RemovalReason::Failed,
                Some(_) => RemovalReason::ScaleDown,
                None if secret => RemovalReason::Vanished,
                None => RemovalReason::Orphan,
            },
            deregister: registered.is_some(),
            pod: phase.is_some(),
            secret,
        });
    }
    (removals, busy)
}

/// Asks GitHub about each removal whose runner the list did not show as the
/// pool's, before anything of it goes: a paged list is not a snapshot
/// (ephemeral runners shift pages all the time) and labels can be edited by
/// hand, so absence from one list proves nothing. A runner GitHub answers 404
/// for is gone (the scope answered the list just now). A runner of the
/// removal's name is the pool's whatever its labels: kept while busy,
/// deregistered first otherwise. A runner of another name is not the pool's:
/// no DELETE for it, and a live pod naming it is kept, as it may run a job.
/// Returns how many more runners are busy; the removals kept are dropped.
pub async fn confirm_unlisted(
    api: &dyn GitHubApi,
    scope: &Scope,
    removals: &mut Vec<Removal>,
    runners: &[Runner],
    ownership: &str,
) -> Result<usize, GitHubError> {
    let listed: BTreeSet<u64> = runners
        .iter()
        .filter(|r| r.has_label(ownership))
        .map(|r| r.id)
        .collect();
    let mut busy = 0;
    let mut kept = Vec::new();
    for (at, removal) in removals.iter_mut().enumerate() {
        // A finished pod's runner took its one job and GitHub removed it.
        let Some(id) = removal.runner_id.filter(|id| !listed.contains(id)) else {
            continue;
        };
        if removal.reason == RemovalReason::Finished {
            continue;
        }
        match api.get_runner(scope, id).await {
            Ok(runner) if runner.name == removal.name => {
                if runner.busy {
                    busy += 1;
                    kept.push(at);
                } else {
                    removal.deregister = true;
                }
            }
            Ok(_) => {
                removal.deregister = false;
                if !matches!(
                    removal.reason,
                    RemovalReason::Failed | RemovalReason::Vanished
                ) {
                    busy += 1;
                    kept.push(at);
                }
            }
            Err(GitHubError::NotFound(_)) => removal.deregister = false,
            Err(e) => return Err(e),
        }
    }
    for at in kept.into_iter().rev() {
        removals.remove(at);
    }
    Ok(busy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{LabelType, RunnerLabel, RunnerStatus};

    const OWNER: &str = "runnerpool-abc";

    fn pod(name: &str, id: u64, phase: PodPhase) -> PodView {
        PodView {
            name: name.into(),
            runner_id: Some(id),
            phase,
            deleting: false,
            created: Timestamp::from_second(1_700_000_000).unwrap(),
            started: None,
            labels_hash: None,
        }
    }

    fn secret(name: &str, id: u64) -> SecretView {
        SecretView {
            name: name.into(),
            runner_id: Some(id),
        }
    }

    fn runner(name: &str, id: u64, busy: bool, mark: &str) -> Runner {
        Runner {
            id,
            name: name.into(),
            os: "linux".into(),
            status: RunnerStatus::Online,
            busy,
            ephemeral: true,
            runner_group_id: Some(1),
            labels: vec![RunnerLabel {
                id: None,
                name: mark.into(),
                kind: LabelType::Custom,
            }],
        }
    }

    #[test]
    fn busy_runners_are_waited_for_and_everything_else_goes() {
        let pods = [
            pod("busy", 1, PodPhase::Running),
            pod("idle", 2, PodPhase::Running),
            pod("done", 3, PodPhase::Succeeded),
        ];
        let secrets = [secret("busy", 1), secret("idle", 2), secret("lost", 4)];
        let runners = [
            runner("busy", 1, true, OWNER),
            runner("idle", 2, false, OWNER),
            runner("lost", 4, false, OWNER),
            runner("orphan", 5, false, OWNER),
            runner("foreign", 6, false, "someone-else"),
        ];
        let (removals, busy) = plan_cleanup(&pods, &secrets, &runners, OWNER);
        assert_eq!(busy, 1);
        let got: Vec<_> = removals
            .iter()
            .map(|r| (r.name.as_str(), r.reason, r.deregister, r.pod, r.secret))
            .collect();
        assert_eq!(
            got,
            [
                ("done", RemovalReason::Finished, false, true, false),
                ("idle", RemovalReason::ScaleDown, true, true, true),
                ("lost", RemovalReason::Vanished, true, false, true),
                ("orphan", RemovalReason::Orphan, true, false, false),
            ],
            "the busy runner is not even asked about; a finished one needs no DELETE"
        );
    }

    #[test]
    fn a_pod_naming_a_foreign_runner_sends_no_delete_for_it() {
        let pods = [pod("edited", 6, PodPhase::Failed)];
        let runners = [runner("foreign", 6, true, "someone-else")];
        let (removals, busy) = plan_cleanup(&pods, &[], &runners, OWNER);
        assert_eq!(busy, 0, "a foreign job is not waited for");
        assert_eq!(removals.len(), 1);
        assert!(!removals[0].deregister, "{removals:?}");
        assert!(removals[0].pod);
    }
}
