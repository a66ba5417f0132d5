//! Observing a pool: its pods and Secrets from the watch caches (through
//! the per-pool indexes), its part of the scope's shared GitHub view, and
//! the demand for it, turned into a [`Plan`] by the pure planner.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::context::{Context, uid};
use super::index::SecretEntry;
use super::plan::{self, Inputs, PodPhase, PodView, SecretView, Waiting};
use super::scale_set;
use super::scaling::scaling;
use crate::RunnerPool;
use crate::connection::Target;
use crate::crd::ContainerMode;
use crate::demand::PoolDemand;
use crate::github::RunnerStatus;
use crate::inventory::ScopeInventory;
use crate::pod::cached::CachedPod;
use crate::runner::{self, POOL_LABEL, POOL_UID_LABEL};

/// The pool's pods and Secrets, from the watch caches.
pub fn observe(pool: &RunnerPool, ctx: &Context) -> (Vec<PodView>, Vec<SecretView>) {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let pods = pool_pods(pool, ctx).iter().map(|p| pod_view(p)).collect();
    // Through the per-pool indexes: O(the pool's objects), not the cache's.
    let pool_uid = uid(pool);
    let secrets = ctx
        .secret_index
        .entries(&ns, &name)
        .into_iter()
        .filter(|(_, s)| s.is_pools(&pool_uid))
        .map(|(name, s)| secret_view(name, &s))
        .collect();
    (pods, secrets)
}

/// The pool's pods in the watch cache (trimmed: metadata and a few status
/// fields), through the per-pool index.
pub fn pool_pods(pool: &RunnerPool, ctx: &Context) -> Vec<Arc<CachedPod>> {
    let ns = pool.namespace().unwrap_or_default();
    ctx.pod_index
        .names(&ns, &pool.name_any())
        .into_iter()
        .filter_map(|n| ctx.pods.get(&ObjectRef::new(&n).within(&ns)))
        .filter(|p| is_pools(pool, &p.metadata))
        .collect()
}

/// Whether an object is the pool's: by the pool-UID label, so that a new
/// pool of the same name never adopts the runners of a deleted one. Pods
/// made before that label existed are recognised by their ownerReference.
fn is_pools(pool: &RunnerPool, meta: &kube::api::ObjectMeta) -> bool {
    let pool_uid = uid(pool);
    let labels = meta.labels.as_ref();
    meta.namespace == pool.namespace()
        && match labels.and_then(|l| l.get(POOL_UID_LABEL)) {
            Some(owner) => *owner == pool_uid,
            None => {
                labels.and_then(|l| l.get(POOL_LABEL)) == Some(&pool.name_any())
                    && meta
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == pool_uid && o.controller == Some(true))
            }
        }
}

/// What the planner needs of a runner pod.
pub fn pod_view(p: &CachedPod) -> PodView {
    PodView {
        name: p.name_any(),
        runner_id: runner::runner_id_of(p),
        phase: PodPhase::of_runner(&p.status),
        deleting: p.metadata.deletion_timestamp.is_some(),
        created: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now),
        started: p.status.ready_since,
        labels_hash: p.annotations().get(runner::LABELS_HASH_ANNOTATION).cloned(),
    }
}

/// What the planner needs of a runner Secret.
pub fn secret_view(name: String, s: &SecretEntry) -> SecretView {
    SecretView {
        name,
        runner_id: s.runner_id,
    }
}

/// The shared view of the pool's scope on GitHub (see [`inventory`]).
pub fn inventory_of(ctx: &Context, target: &Target) -> Arc<ScopeInventory> {
    ctx.inventory.of(&target.api, &target.scope)
}

/// The inventory the pool last reached GitHub through, if any.
pub fn last_inventory(pool_uid: &str, ctx: &Context) -> Option<Arc<ScopeInventory>> {
    let target = ctx.memory.with(pool_uid, |m| m.target.clone())?;
    Some(inventory_of(ctx, &target))
}

pub fn make_plan(
    pool: &RunnerPool,
    ctx: &Context,
    ownership: &str,
    desired_labels: &[String],
    desired_hash: &str,
) -> plan::Plan {
    let (pods, secrets) = observe(pool, ctx);
    let pod_names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let secret_names: BTreeSet<String> = secrets.iter().map(|s| s.name.clone()).collect();
    let pool_uid = uid(pool);
    let runner_ids: BTreeSet<u64> = pods.iter().filter_map(|p| p.runner_id).collect();
    // The runners GitHub knows for this pool: those its pods and Secrets
    // name, and those carrying its ownership label.
    let named: BTreeSet<u64> = runner_ids
        .iter()
        .copied()
        .chain(secrets.iter().filter_map(|s| s.runner_id))
        .collect();
    let github = last_inventory(&pool_uid, ctx).and_then(|inv| inv.pool_view(&named, ownership));
    // A scale-set pool's demand is its scale set's; the others' the webhooks'.
    let (demand, waiting): (&dyn PoolDemand, Waiting) = match pool.spec.scale_set {
        Some(_) => (
            ctx.scale_sets.as_ref(),
            Waiting::Assigned(scale_set::assigned_jobs(pool, ctx)),
        ),
        None => (
            ctx.demand.as_ref(),
            Waiting::Queued(ctx.demand.queued_for(&pool_uid, Instant::now())),
        ),
    };
    demand.retain_busy(&pool_uid, &runner_ids);
    let known_busy = demand.busy_runners(&pool_uid);
    ctx.memory.with(&pool_uid, |m| {
        m.settle(&pod_names, &secret_names);
        let vanished = m.vanished(&pods, &secrets);
        let online: Vec<u64> = github
            .iter()
            .flat_map(|view| &view.runners)
            .filter(|r| runner_ids.contains(&r.id) && (r.busy || r.status == RunnerStatus::Online))
            .map(|r| r.id)
            .collect();
        m.failures.retain_online(&runner_ids);
        for id in online {
            m.failures.online(id);
        }
        for pod in &pods {
            if let Some(started) = pod.started
                && m.first_seen_started(&pod.name)
            {
                let took = started.duration_since(pod.created).as_secs_f64().max(0.0);
                ctx.metrics.runner_start_duration.observe(took);
            }
        }
        plan::plan(&Inputs {
            now: Timestamp::now(),
            scaling: scaling(pool),
            bootstrap_timeout: pool.bootstrap_timeout(),
            ownership_label: ownership,
            desired_labels,
            desired_labels_hash: desired_hash,
            pods: &pods,
            secrets: &secrets,
            github: github.as_ref(),
            creating: &m.creating(),
            removing: &m.removing(),
            vanished: &vanished,
            surplus_since: m.surplus_since,
            waiting,
            known_busy: &known_busy,
            release_consumed_secrets: pool.container_mode() == ContainerMode::Kubernetes,
        })
    })
}
