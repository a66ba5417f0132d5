//! Routes `workflow_job` events from the webhook receiver to pools: a queued
//! job becomes demand of the one pool that matches it (and that pool is
//! reconciled at once), a started job marks its runner busy, a completed one
//! clears both. The pools come from the controller's cache, the runner's
//! pool from the pod cache (the pod is named after its runner).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::pod::cached::CachedPod;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Notify;
use tokio::sync::mpsc::{Receiver, Sender};
use tracing::{debug, info};

use super::matching::{self, Candidate};
use super::store::WebhookDemand;
use super::strays::{self, Strays};
use crate::RunnerPool;
use crate::connection;
use crate::controller::context::{Context, store_ready, uid};
use crate::controller::observe::inventory_of;
use crate::controller::plan::Scaling;
use crate::controller::scaling::scaling;
use crate::metrics::jobs::{Job, Source};
use crate::pod::job;
use crate::runner;
use crate::webhook::payload::{JobAction, JobEvent};
use crate::webhook::recovery::DeliveryLog;

/// `workflow_job` events from the webhook receiver, and where their demand is kept.
pub struct WebhookFeed {
    pub events: Receiver<JobEvent>,
    /// Where deliveries recovered from GitHub's delivery log go (the
    /// receiver's queue), and that log when one is configured.
    pub sender: Sender<JobEvent>,
    pub delivery_log: Option<DeliveryLog>,
    pub demand: Arc<WebhookDemand>,
    /// How long a queued job waits before GitHub is asked about it (see
    /// [`super::recheck`]).
    pub check_after: std::time::Duration,
}

/// Applies events until the receiver closes; every pool whose demand or busy
/// runners changed is sent to `trigger` for an immediate reconcile. Queued
/// jobs no pool matched are matched again when `pools_changed` is notified
/// (see [`super::strays`]).
pub async fn route_jobs(
    mut events: Receiver<JobEvent>,
    demand: Arc<WebhookDemand>,
    pools: Store<RunnerPool>,
    pods: Store<CachedPod>,
    ctx: Arc<Context>,
    trigger: UnboundedSender<ObjectRef<RunnerPool>>,
    pools_changed: Arc<Notify>,
) {
    // Deliveries are accepted from the start; they wait here until the pools
    // and runners they name are known, rather than being matched to nothing.
    store_ready(&pools).await;
    let restored = restore(&pools, &demand);
    wake(&pools, &trigger, restored);
    store_ready(&pods).await;
    let mut strays = Strays::default();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            () = pools_changed.notified(), if !strays.is_empty() => {
                let touched = match_strays(&mut strays, &pools, &demand, &ctx);
                wake(&pools, &trigger, touched);
                continue;
            }
        };
        let now = Instant::now();
        let touched: Vec<String> = match event.action {
            JobAction::Waiting => vec![],
            JobAction::Queued => match queued(&event, &pools, &demand, &ctx, now) {
                Routed::To(pool) => vec![pool],
                Routed::Known => vec![],
                Routed::Unmatched => {
                    ctx.metrics.webhook_unmatched_jobs.inc();
                    info!(job_id = event.job_id, repository = %event.repository, labels = ?event.labels, "no RunnerPool matches the queued job (yet)");
                    strays.add(event, now);
                    vec![]
                }
            },
            JobAction::InProgress => {
                strays.settle(event.job_id);
                record_on_pod(&event, &pods, &ctx);
                let runner = event.runner_id.and_then(|id| {
                    runner_pool(&pods, id, event.runner_name.as_deref()).map(|p| (id, p))
                });
                if let Some((id, pool_uid)) = &runner {
                    // The GitHub view learns it too, until the next list says so itself.
                    let target = ctx.memory.with(pool_uid, |m| m.target.clone());
                    if let Some(target) = target {
                        inventory_of(&ctx, &target).busy(*id);
                    }
                }
                let queued_for = demand.started(
                    event.job_id,
                    runner.as_ref().map(|(id, pool)| (*id, pool.as_str())),
                    now,
                );
                count_job(
                    &event,
                    &pools,
                    &ctx,
                    runner.as_ref().map(|(_, p)| p.as_str()),
                );
                runner
                    .map(|(_, p)| p)
                    .into_iter()
                    .chain(queued_for)
                    .collect()
            }
            JobAction::Completed => {
                strays.settle(event.job_id);
                record_on_pod(&event, &pods, &ctx);
                let ran_on = event
                    .runner_id
                    .and_then(|id| runner_pool(&pods, id, event.runner_name.as_deref()));
                let touched = demand.completed(event.job_id, event.runner_id, now);
                // The runner's pool, else the pool it was busy or queued in.
                count_job(
                    &event,
                    &pools,
                    &ctx,
                    ran_on.as_deref().or(touched.first().map(String::as_str)),
                );
                touched
            }
        };
        wake(&pools, &trigger, touched);
    }
}

/// Offers the unmatched queued jobs to the pools again when these changed;
/// returns the pools that took some.
fn match_strays(
    strays: &mut Strays,
    pools: &Store<RunnerPool>,
    demand: &WebhookDemand,
    ctx: &Context,
) -> Vec<String> {
    let now = Instant::now();
    let mut touched = Vec::new();
    let shape = strays::shape(&pools.state());
    let taken = strays.retry(shape, now, |event| {
        match queued(event, pools, demand, ctx, now) {
            Routed::To(pool) => {
                debug!(
                    job_id = event.job_id,
                    "queued job matched a pool that came after it"
                );
                touched.push(pool);
                true
            }
            Routed::Known => true,
            Routed::Unmatched => false,
        }
    });
    if taken > 0 {
        info!(
            jobs = taken,
            waiting = strays.len(),
            "queued jobs no pool matched went to a pool that changed since"
        );
    }
    touched
}

/// Reads back the queued jobs each pool's status kept (an earlier leader
/// wrote them), then lets statuses be written from the store. Returns the
/// pools that got jobs back, to reconcile at once.
pub fn restore(pools: &Store<RunnerPool>, demand: &WebhookDemand) -> Vec<String> {
    let now = Instant::now();
    let mut restored = 0;
    let mut touched = Vec::new();
    for pool in pools.state() {
        if let Some(status) = &pool.status {
            let added = demand.restore(&uid(&pool), &status.waiting_jobs, now);
            if added > 0 {
                restored += added;
                touched.push(uid(&pool));
            }
        }
    }
    demand.mark_restored();
    if restored > 0 {
        info!(
            jobs = restored,
            "queued jobs read back from the pools' status"
        );
    }
    touched
}

/// Sends each pool of `pool_uids` to `trigger` for an immediate reconcile.
pub fn wake(
    pools: &Store<RunnerPool>,
    trigger: &UnboundedSender<ObjectRef<RunnerPool>>,
    pool_uids: impl IntoIterator<Item = String>,
) {
    let pool_uids: BTreeSet<String> = pool_uids.into_iter().collect();
    if pool_uids.is_empty() {
        return;
    }
    for pool in pools.state() {
        if pool_uids.contains(&uid(&pool)) {
            let _ = trigger.unbounded_send(ObjectRef::from_obj(pool.as_ref()));
        }
    }
}

/// Records the job on its runner's pod (see [`crate::pod::job`]).
fn record_on_pod(event: &JobEvent, pods: &Store<CachedPod>, ctx: &Arc<Context>) {
    if let Some(id) = event.runner_id {
        let annotations = job::job_annotations(event, Timestamp::now());
        job::record_on_pod(
            &ctx.client,
            pods,
            id,
            event.runner_name.as_deref(),
            annotations,
        );
    }
}

/// Counts a started or completed job in the job metrics of pool `pool_uid`
/// (none: not a job of this operator's pools).
fn count_job(event: &JobEvent, pools: &Store<RunnerPool>, ctx: &Context, pool_uid: Option<&str>) {
    let Some(pool) = pool_uid.and_then(|key| pools.state().into_iter().find(|p| uid(p) == key))
    else {
        return;
    };
    let (namespace, name, id) = (
        pool.namespace().unwrap_or_default(),
        pool.name_any(),
        event.job_id.to_string(),
    );
    let job = Job {
        source: Source::Webhook,
        id: &id,
        namespace: &namespace,
        pool: &name,
        repository: &event.repository,
    };
    let times = event.times;
    match event.action {
        JobAction::InProgress => ctx.metrics.jobs.started(
            &job,
            times.created_at,
            times.started_at.unwrap_or_else(Timestamp::now),
        ),
        JobAction::Completed => {
            // Only a job that reached a runner ran.
            let ran = event
                .runner_id
                .and(times.started_at)
                .zip(times.completed_at);
            let conclusion = event.details.conclusion.as_deref();
            ctx.metrics.jobs.completed(&job, conclusion, ran);
        }
        JobAction::Queued | JobAction::Waiting => {}
    }
}

/// Where a queued job went.
enum Routed {
    /// Demand of the pool of this UID.
    To(String),
    /// Known already (queued before, or started or completed since).
    Known,
    /// No pool matches it.
    Unmatched,
}

/// The pool a queued job goes to, by the rule in [`matching`].
fn queued(
    event: &JobEvent,
    pools: &Store<RunnerPool>,
    demand: &WebhookDemand,
    ctx: &Context,
    now: Instant,
) -> Routed {
    let queued = demand.queued_by_pool(now);
    let candidates: Vec<Candidate<String>> = pools
        .state()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| candidate(p, &queued))
        .filter(|c| group_admits(ctx, &c.key, &event.repository))
        .collect();
    let job = matching::Job {
        id: event.job_id,
        repository: &event.repository,
        owner: &event.owner,
        enterprise: event.enterprise.as_deref(),
        labels: &event.labels,
    };
    let Some(chosen) = matching::choose(&job, &candidates) else {
        return Routed::Unmatched;
    };
    debug!(job_id = event.job_id, namespace = %chosen.namespace, pool = %chosen.name, "queued job matched");
    let added = match event.recovered {
        true => demand.recovered(event.job_id, &chosen.key, &event.repository, now),
        false => demand.queued(event.job_id, &chosen.key, &event.repository, now),
    };
    match added {
        true => Routed::To(chosen.key.clone()),
        false => Routed::Known,
    }
}

/// Whether the runner group of pool `pool_uid` admits jobs of `repository`:
/// unknown (no RunnerGroup, or visibility `all`/`private`) admits any.
fn group_admits(ctx: &Context, pool_uid: &str, repository: &str) -> bool {
    let admitted = ctx
        .memory
        .with_existing(pool_uid, |m| m.group_repositories.clone())
        .flatten();
    admitted.is_none_or(|repositories| repositories.contains(&repository.to_lowercase()))
}

fn candidate(pool: &RunnerPool, queued: &HashMap<String, u32>) -> Option<Candidate<String>> {
    // A scale-set pool's jobs are the ones the Actions service assigns it.
    if pool.spec.scale_set.is_some() {
        return None;
    }
    let scope = connection::scope(&pool.spec.github).ok()?;
    let pool_uid = uid(pool);
    let capacity = match scaling(pool) {
        Scaling::Fixed(n) => n,
        Scaling::Auto { max, .. } => max,
    };
    let busy = pool
        .status
        .as_ref()
        .map_or(0, |s| s.busy_runners.max(0) as u32);
    let taken = busy.saturating_add(queued.get(&pool_uid).copied().unwrap_or(0));
    Some(Candidate {
        key: pool_uid,
        namespace: pool.namespace().unwrap_or_default(),
        name: pool.name_any(),
        scope,
        labels: pool.spec.labels.clone(),
        has_free_capacity: taken < capacity,
    })
}

/// The UID of the pool whose pod runs runner `id` (named `name`): its
/// pool-UID label, or the ownerReference of pods made before that label.
fn runner_pool(pods: &Store<CachedPod>, id: u64, name: Option<&str>) -> Option<String> {
    let pod = job::runner_pod(pods, id, name)?;
    if let Some(pool_uid) = runner::pool_uid_of(pod.as_ref()) {
        return Some(pool_uid.to_string());
    }
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "RunnerPool")
        .map(|o| o.uid.clone())
}
