//! The RunnerPool controller: the pipeline that keeps each pool's runners
//! as its spec says, and its wiring.
//!
//! Each reconcile runs the pool's finalizer as its only top-level action
//! (bounded, see [`crate::kit::bound`]): [`reconcile::apply`] while the pool
//! lives, [`cleanup::cleanup`] once it is deleted. A pass reads as a pipeline:
//! - observe: [`observe`] (the watch caches through [`index`], the scope's
//!   shared GitHub view, the demand), with [`memory`] of what the caches do
//!   not show yet;
//! - connect: [`connect`] (credentials, scope, runner group), refused by
//!   [`isolation`] when the pool's jobs could read its credentials;
//! - plan: [`plan`] (pure), bounded by [`scaling`] and [`schedule`], checked
//!   by [`confirm`] (direct reads) and [`hold`] (failures, a dry run);
//! - act: [`remove`], [`create`], [`relabel`];
//! - status: [`status`] (pure) written by [`report`].
//!
//! [`scale_set`] is a scale-set pool's scale set and listener; [`sweep`]
//! collects what pools released early left behind.

pub mod cleanup;
pub mod confirm;
pub mod connect;
pub mod context;
pub mod create;
pub mod failures;
pub mod hold;
pub mod index;
pub mod isolation;
pub mod memory;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod relabel;
pub mod remove;
pub mod report;
pub mod scale_set;
pub mod scaling;
pub mod schedule;
pub mod status;
pub mod sweep;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::{info, instrument};

pub use context::{Context, Settings};

use crate::RunnerPool;
use crate::demand::recheck;
use crate::demand::routing::{self, WebhookFeed};
use crate::demand::scale_set::ScaleSets;
use crate::demand::store::WebhookDemand;
use crate::github::GitHubConnector;
use crate::inventory::Inventories;
use crate::kit::bound::finalize_within;
use crate::kit::error::Error;
use crate::kit::events::Recorder;
use crate::kit::retry::{self, WatchBackoff};
use crate::metrics::Metrics;
use crate::pod::cached::{self, CachedPod};
use crate::runner::{MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL};
use crate::scaleset::HttpSettings;
use crate::versions::releases::LatestReleases;
use crate::webhook;
use context::store_ready;
use memory::{Leftovers, Memory};

pub const FINALIZER: &str = "actions.runnerpool.dev/cleanup";

#[instrument(skip_all, fields(namespace = pool.namespace().unwrap_or_default(), pool = %pool.name_any()))]
async fn reconcile(pool: Arc<RunnerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.wait_for_caches().await?;
    let namespace = pool.namespace().ok_or(Error::NotNamespaced("RunnerPool"))?;
    let api: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), &namespace);
    let bound = ctx.settings.reconcile_timeout;
    let result = finalize_within(&api, FINALIZER, pool, bound, |event| async {
        match event {
            FinalizerEvent::Apply(pool) => reconcile::apply(pool, &ctx).await,
            FinalizerEvent::Cleanup(pool) => cleanup::cleanup(pool, &ctx).await,
        }
    })
    .await;
    let category = result.as_ref().err().map(Error::category);
    ctx.metrics.observe_reconcile(started.elapsed(), category);
    result
}

fn error_policy(pool: Arc<RunnerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    retry::error_policy(pool.as_ref(), error, &ctx.attempts)
}

/// Where `kubectl apply` (client-side) keeps the last object it applied.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The pool a runner pod or Secret belongs to, by its labels: runner pods
/// carry no ownerReference to their pool (see [`crate::runner::POOL_UID_LABEL`]).
fn pool_of<K: Resource>(object: K) -> Option<ObjectRef<RunnerPool>> {
    let name = object.meta().labels.as_ref()?.get(POOL_LABEL)?;
    let namespace = object.meta().namespace.as_deref()?;
    Some(ObjectRef::new(name).within(namespace))
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Where pools learn their demand: `workflow_job` webhooks (when the
/// listener is on) and, for scale-set pools, GitHub's Actions service.
pub struct DemandSources {
    pub webhooks: Option<WebhookFeed>,
    /// How the Actions service clients of scale sets talk HTTP.
    pub scale_sets: HttpSettings,
}

/// Runs the controller until `shutdown` resolves. `ready` is set once the
/// watch caches are complete, for the readiness probe. A job queued through
/// a webhook, or a scale set's message, reconciles its pool at once.
pub async fn run(
    client: Client,
    github: Arc<dyn GitHubConnector>,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    sources: DemandSources,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = settings.watch_namespace.clone();
    let pools: Api<RunnerPool> = scoped(&client, namespace.as_deref());
    // Pods are read into what the operator keeps of them (see `CachedPod`).
    let pods: Api<CachedPod> = scoped(&client, namespace.as_deref());
    // Only the Secrets' metadata is watched: the operator never reads JIT configs back.
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));

    let (pod_store, pod_writer) = reflector::store();
    let pod_index = Arc::new(index::PoolIndex::default());
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(pods, managed.clone()).modify(cached::trim),
    )
    .inspect_ok({
        let index = pod_index.clone();
        move |event| index.observe(event)
    })
    .touched_objects()
    .backoff(WatchBackoff::default());
    // No store of Secrets: the index keeps what is read of them.
    let secret_index = Arc::new(index::PoolIndex::of_secrets());
    let secret_events = watcher(secrets, managed)
        .inspect_ok({
            let index = secret_index.clone();
            move |event| index.observe(event)
        })
        .touched_objects()
        .backoff(WatchBackoff::default());

    // Pools whose demand changed (a queued job, a scale set's message) are
    // reconciled at once.
    let (trigger, triggered) = futures::channel::mpsc::unbounded();
    let DemandSources {
        webhooks: feed,
        scale_sets: scale_set_http,
    } = sources;
    let mut recovery = None;
    let (events, demand, check_after) = match feed {
        Some(feed) => {
            recovery = feed.delivery_log.map(|log| (log, feed.sender));
            (Some(feed.events), feed.demand, feed.check_after)
        }
        None => {
            // No webhooks, no queued jobs: statuses keep none.
            let demand = Arc::new(WebhookDemand::new());
            demand.mark_restored();
            (None, demand, Duration::ZERO)
        }
    };
    let ctx = Arc::new(Context {
        releases: LatestReleases::new(settings.runner_version_refresh),
        recorder: Recorder::new(client.clone()),
        client,
        github,
        settings,
        pods: pod_store.clone(),
        pod_index,
        secret_index,
        memory: Memory::default(),
        attempts: Default::default(),
        metrics,
        demand: demand.clone(),
        synced: AtomicBool::new(false),
        leftovers: Leftovers::default(),
        inventory: Inventories::default(),
        creations: Default::default(),
        scale_sets: Default::default(),
        scale_set_http,
        wake: trigger.clone(),
    });

    // Pools are cached without their managed fields and without the copy of
    // themselves `kubectl apply` keeps in an annotation: nothing reads them,
    // and they outweigh the rest of a pool many times over.
    let (pool_store, pool_writer) = reflector::store();
    // Told of every pool event once the cache holds it: queued jobs no pool
    // matched are matched again when a pool was added or edited.
    let pools_changed = Arc::new(Notify::new());
    let changed = pools_changed.clone();
    let pool_events = reflector::reflector(
        pool_writer,
        watcher(pools, watcher::Config::default()).modify(|p| {
            p.managed_fields_mut().clear();
            p.annotations_mut().remove(LAST_APPLIED_ANNOTATION);
        }),
    )
    .applied_objects()
    .inspect(move |_| changed.notify_one());
    let mut controller = Controller::for_stream(pool_events, pool_store.clone())
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(ctx.settings.reconcile_concurrency),
        )
        // Each watch also backs off on its own (above): it then sleeps alone,
        // and the merged stream, demand triggers included, keeps being polled
        // (with only this backoff a job queued as the API server came back
        // waited 2.0 s for its pod, with both 31 ms and 109 ms in two runs).
        .trigger_backoff(WatchBackoff::default());
    controller = controller.reconcile_on(triggered);
    // Tasks that act for this controller end with it, also when its future
    // is dropped (leadership lost): nothing keeps writing behind its back.
    let mut background = AbortOnDrop(Vec::new());
    if let Some(events) = events {
        let recheck = recheck::run(
            demand.clone(),
            pool_store.clone(),
            ctx.clone(),
            trigger.clone(),
            check_after,
        );
        let router = routing::route_jobs(
            events,
            demand,
            pool_store.clone(),
            pod_store.clone(),
            ctx.clone(),
            trigger,
            pools_changed,
        );
        background.0.push(tokio::spawn(router));
        background.0.push(tokio::spawn(recheck));
    }
    if let Some((log, sender)) = recovery {
        // From the moment this replica acts: what failed while no leader
        // answered is taken first.
        let metrics = ctx.metrics.clone();
        background
            .0
            .push(tokio::spawn(webhook::recovery::run(log, sender, metrics)));
    }
    background
        .0
        .push(tokio::spawn(sweep::run(ctx.clone(), pool_store.clone())));
    let secrets_listed = ctx.clone();
    tokio::spawn(async move {
        store_ready(&pool_store).await;
        store_ready(&pod_store).await;
        secrets_listed.secret_index.listed().await;
        info!("watch caches synced");
        ready.store(true, Ordering::Relaxed);
    });

    controller
        .watches_stream(pod_events, pool_of)
        .watches_stream(secret_events, pool_of)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()))
        .await;
    drop(background);
    // Creations a cut pass left running are finished, not abandoned between
    // their mint and their pod (the caller bounds the wait).
    ctx.creations.finished().await;
    // Sessions closed now let a successor open its own at once.
    ScaleSets::close_sessions(ctx.scale_sets.stop_all(), scale_set::SESSION_CLOSE_TIMEOUT).await;
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
