//! The RunnerPool controller: wiring, the shared [`Context`], errors and backoff.
//!
//! `reconcile` runs the finalizer as its only top-level action: [`reconcile`]
//! (the pipeline observe → connect → plan → act → status) while the pool
//! lives, [`cleanup`] when it is deleted.

pub mod cleanup;
pub mod confirm;
pub mod container_hooks;
pub mod demand;
pub mod failures;
pub mod index;
pub mod inventory;
pub mod memory;
pub mod plan;
pub mod reconcile;
pub mod runner_version;
pub mod schedule;
pub mod status;
pub mod sweep;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use tracing::{info, instrument, warn};

use crate::RunnerPool;
use crate::github::{GitHubConnector, GitHubError};
use crate::metrics::Metrics;
use crate::runner::{MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL};
use crate::webhook::{Demand, JobEvent};

pub const FINALIZER: &str = "actions.runnerpool.dev/cleanup";
pub const FIELD_MANAGER: &str = "runnerpool-operator";

/// Settings of the controller (from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Distinguishes this installation's runners from other clusters' in one organization.
    pub install_id: String,
    /// Watch only this namespace; all namespaces when `None`.
    pub watch_namespace: Option<String>,
    /// How often each pool's runners are listed on GitHub (conditional requests).
    pub github_sync_interval: Duration,
    /// How long deleting a pool may wait for an unreachable GitHub before giving
    /// up with a Warning (busy runners are waited for without limit).
    pub cleanup_timeout: Duration,
    /// How many runners of one pool are registered at once.
    pub create_concurrency: usize,
    /// Pools reconciled at once.
    pub reconcile_concurrency: u16,
    /// The longest one reconcile may run before it is abandoned (and
    /// retried): half the leader Lease's duration, so a replica's work is
    /// over long before a successor may act.
    pub reconcile_timeout: Duration,
    /// How long the newest runner release of a scope is reused before
    /// GitHub's downloads endpoint is read again.
    pub runner_version_refresh: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            install_id: "default".to_string(),
            watch_namespace: None,
            github_sync_interval: Duration::from_secs(120),
            cleanup_timeout: Duration::from_secs(300),
            create_concurrency: 16,
            reconcile_concurrency: 16,
            reconcile_timeout: Duration::from_millis(7500),
            runner_version_refresh: crate::versions::DEFAULT_REFRESH,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub github: Arc<dyn GitHubConnector>,
    pub settings: Settings,
    pub pods: Store<Pod>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// The caches' pods and Secrets by pool.
    pub pod_index: Arc<index::PoolIndex>,
    pub secret_index: Arc<index::PoolIndex>,
    pub recorder: Recorder,
    pub memory: memory::Memory,
    pub metrics: Arc<Metrics>,
    /// Queued jobs and busy runners learnt from webhooks (empty without them).
    pub demand: Arc<Demand>,
    /// Set once the watch caches have their first full list.
    pub synced: AtomicBool,
    /// Connections of deleted pools whose runners the sweep still removes.
    pub leftovers: sweep::Leftovers,
    /// GitHub's runners, one view per scope shared by its pools.
    pub inventory: inventory::Inventories,
    /// The newest runner release per scope, shared by its pools.
    pub releases: crate::versions::LatestReleases,
}

/// `workflow_job` events from the webhook receiver, and where their demand is kept.
pub struct DemandFeed {
    pub events: tokio::sync::mpsc::Receiver<JobEvent>,
    pub demand: Arc<Demand>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
    #[error("GitHub API error: {0}")]
    GitHub(#[source] GitHubError),
    #[error("RunnerPool has no namespace")]
    NotNamespaced,
    #[error("the watch caches did not sync")]
    CachesNotReady,
    #[error("still removing {0} runner(s) of the deleted pool")]
    CleanupPending(usize),
    #[error("the reconcile did not finish within {0:?}; abandoned, to be retried")]
    ReconcileTimeout(Duration),
    #[error("a runner's creation task failed: {0}")]
    CreateTask(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A bounded name for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::GitHub(e) => e.category(),
            Error::NotNamespaced => "not_namespaced",
            Error::CachesNotReady => "caches_not_ready",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::ReconcileTimeout(_) => "reconcile_timeout",
            Error::CreateTask(_) => "create_task",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                _ => "finalizer",
            },
        }
    }
}

impl Error {
    /// The pool's own error inside a finalizer error (the apply or cleanup that
    /// failed); any other error as it is.
    pub fn unwrapped(&self) -> &Error {
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.unwrapped(),
                _ => self,
            },
            other => other,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl From<GitHubError> for Error {
    fn from(e: GitHubError) -> Self {
        Error::GitHub(e)
    }
}

/// The wait after the `streak`-th failure in a row: 1 s, 2 s, 4 s ... 5 minutes.
pub fn backoff(streak: u32) -> Duration {
    Duration::from_secs(1 << (streak.clamp(1, 10) - 1)).min(Duration::from_secs(300))
}

/// A jittered duration, so pools don't come back in lockstep.
pub fn jittered(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..1.1);
    base.mul_f64(factor)
}

fn uid(pool: &RunnerPool) -> String {
    pool.metadata.uid.clone().unwrap_or_default()
}

impl Context {
    async fn wait_for_caches(&self) -> Result<(), Error> {
        if self.synced.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ready = async {
            store_ready(&self.pods).await;
            store_ready(&self.secrets).await;
        };
        tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .map_err(|_| Error::CachesNotReady)?;
        self.synced.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes an event on the pool; a failure to publish is logged, not fatal.
    pub async fn event(
        &self,
        pool: &RunnerPool,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &pool.object_ref(&())).await {
            warn!(pool = %pool.name_any(), error = %e, "could not publish event");
        }
    }
}

#[instrument(skip_all, fields(namespace = pool.namespace().unwrap_or_default(), pool = %pool.name_any()))]
async fn reconcile(pool: Arc<RunnerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.wait_for_caches().await?;
    let namespace = pool.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), &namespace);
    // Bounded so that no work outlives this replica's claim on the Lease by
    // much, and a shutdown never waits long. An abandoned pass is like a
    // crash at that point: the next pass finds what it left.
    let bound = ctx.settings.reconcile_timeout;
    let work = finalizer(&api, FINALIZER, pool, |event| async {
        match event {
            FinalizerEvent::Apply(pool) => reconcile::apply(pool, &ctx).await,
            FinalizerEvent::Cleanup(pool) => cleanup::cleanup(pool, &ctx).await,
        }
    });
    let result = match tokio::time::timeout(bound, work).await {
        Ok(done) => done.map_err(|e| Error::Finalizer(Box::new(e))),
        Err(_) => Err(Error::ReconcileTimeout(bound)),
    };
    let category = result.as_ref().err().map(Error::category);
    ctx.metrics.observe_reconcile(started.elapsed(), category);
    result
}

/// Per-pool exponential backoff with jitter (see [`retry_delay`]).
fn error_policy(pool: Arc<RunnerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    let streak = ctx.memory.with(&uid(&pool), |m| {
        m.error_streak = m.error_streak.saturating_add(1);
        m.error_streak
    });
    let delay = retry_delay(error, streak);
    warn!(pool = %pool.name_any(), category = error.category(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(jittered(delay))
}

/// How long to wait after `error`, the `streak`-th failure in a row. Errors
/// arrive wrapped by the finalizer, so the pool's own error is looked at: a
/// pending cleanup is polled every few seconds (busy runners finish at their
/// own pace, and doubling would leave a finished pool waiting minutes), and a
/// rate limit waits exactly as long as GitHub asked. A pass cut by the
/// reconcile bound made progress (its creations go on as tasks): it is
/// taken up again soon, not after a growing backoff.
pub fn retry_delay(error: &Error, streak: u32) -> Duration {
    match error.unwrapped() {
        Error::CleanupPending(_) => CLEANUP_POLL,
        Error::ReconcileTimeout(_) => backoff(streak).min(TIMEOUT_RETRY_MAX),
        // The streak also counts the pool's GitHub problems (rate limits, bad
        // credentials); they say nothing of the API server, and a short
        // outage of it must not leave every pool waiting minutes.
        Error::Kube(_) => backoff(streak).min(KUBE_RETRY_MAX),
        Error::GitHub(GitHubError::RateLimited { retry_after, .. }) => {
            (*retry_after).max(Duration::from_secs(1))
        }
        _ => backoff(streak),
    }
}

/// The longest wait after a pass cut by the reconcile bound.
pub const TIMEOUT_RETRY_MAX: Duration = Duration::from_secs(2);

/// The longest wait after a failed Kubernetes request.
pub const KUBE_RETRY_MAX: Duration = Duration::from_secs(15);

/// How often a deleted pool with busy runners looks again.
pub const CLEANUP_POLL: Duration = Duration::from_secs(2);

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

/// Waits until `store` holds its first full list. Its readiness signal wakes
/// only the waiter that polled it last (kube-runtime's `DelayedInit` keeps one
/// waker) and the controller's applier polls the same signal, so ask again now
/// and then instead of waiting for a wake-up that may never come.
async fn store_ready<K>(store: &Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    while tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Runs the controller until `shutdown` resolves. `ready` is set once the
/// watch caches are complete, for the readiness probe. With a `feed`, queued
/// jobs reconcile their pool at once.
pub async fn run(
    client: Client,
    github: Arc<dyn GitHubConnector>,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    feed: Option<DemandFeed>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = settings.watch_namespace.clone();
    let pools: Api<RunnerPool> = scoped(&client, namespace.as_deref());
    let pods: Api<Pod> = scoped(&client, namespace.as_deref());
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
        watcher(pods, managed.clone()).modify(|pod: &mut Pod| {
            // The cache keeps what the planner reads: metadata and status.
            pod.managed_fields_mut().clear();
            pod.spec = None;
        }),
    )
    .inspect_ok({
        let index = pod_index.clone();
        move |event| index.observe(event)
    })
    .touched_objects()
    .default_backoff();
    let (secret_store, secret_writer) = reflector::store();
    let secret_index = Arc::new(index::PoolIndex::default());
    let secret_events = reflector::reflector(
        secret_writer,
        watcher(secrets, managed).modify(|s| s.managed_fields_mut().clear()),
    )
    .inspect_ok({
        let index = secret_index.clone();
        move |event| index.observe(event)
    })
    .touched_objects()
    .default_backoff();

    let reporter = Reporter {
        controller: "runnerpool-operator".to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let (events, demand) = match feed {
        Some(feed) => (Some(feed.events), feed.demand),
        None => (None, Arc::new(Demand::new(Duration::from_secs(600)))),
    };
    let ctx = Arc::new(Context {
        releases: crate::versions::LatestReleases::new(settings.runner_version_refresh),
        recorder: Recorder::new(client.clone(), reporter),
        client,
        github,
        settings,
        pods: pod_store.clone(),
        secrets: secret_store.clone(),
        pod_index,
        secret_index,
        memory: memory::Memory::default(),
        metrics,
        demand,
        synced: AtomicBool::new(false),
        leftovers: sweep::Leftovers::default(),
        inventory: inventory::Inventories::default(),
    });

    let mut controller = Controller::new(pools, watcher::Config::default()).with_config(
        kube::runtime::controller::Config::default()
            .concurrency(ctx.settings.reconcile_concurrency),
    );
    let pool_store = controller.store();
    // Tasks that act for this controller end with it, also when its future
    // is dropped (leadership lost): nothing keeps writing behind its back.
    let mut background = AbortOnDrop(Vec::new());
    if let Some(events) = events {
        let (trigger, triggered) = futures::channel::mpsc::unbounded();
        controller = controller.reconcile_on(triggered);
        let router = demand::route_jobs(
            events,
            pool_store.clone(),
            pod_store.clone(),
            ctx.clone(),
            trigger,
        );
        background.0.push(tokio::spawn(router));
    }
    background
        .0
        .push(tokio::spawn(sweep::run(ctx.clone(), pool_store.clone())));
    tokio::spawn(async move {
        store_ready(&pool_store).await;
        store_ready(&pod_store).await;
        store_ready(&secret_store).await;
        info!("watch caches synced");
        ready.store(true, Ordering::Relaxed);
    });

    controller
        .watches_stream(pod_events, pool_of)
        .watches_stream(secret_events, pool_of)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    drop(background);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_five_minutes() {
        let secs: Vec<u64> = [0, 1, 2, 3, 9, 10, 50]
            .map(|n| backoff(n).as_secs())
            .to_vec();
        assert_eq!(secs, [1, 1, 2, 4, 256, 300, 300]);
    }

    fn wrapped(error: Error, cleanup: bool) -> Error {
        use kube::runtime::finalizer::Error as F;
        Error::Finalizer(Box::new(if cleanup {
            F::CleanupFailed(error)
        } else {
            F::ApplyFailed(error)
        }))
    }

    #[test]
    fn retry_delay_looks_inside_finalizer_errors() {
        let streak = 9; // deep into the generic backoff: 256 s
        assert_eq!(
            retry_delay(&wrapped(Error::CleanupPending(2), true), streak),
            CLEANUP_POLL
        );
        let limited = || {
            Error::GitHub(GitHubError::RateLimited {
                retry_after: Duration::from_secs(42),
                secondary: false,
            })
        };
        assert_eq!(
            retry_delay(&wrapped(limited(), false), streak),
            Duration::from_secs(42)
        );
        assert_eq!(
            retry_delay(&wrapped(limited(), true), 1),
            Duration::from_secs(42)
        );
        assert_eq!(
            retry_delay(&wrapped(Error::CachesNotReady, false), streak),
            backoff(streak)
        );
        assert_eq!(
            retry_delay(
                &Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject)),
                3
            ),
            backoff(3)
        );
        // Unwrapped errors (before the finalizer runs) are classified too.
        assert_eq!(retry_delay(&Error::CleanupPending(1), streak), CLEANUP_POLL);
    }

    #[test]
    fn a_pass_cut_by_the_bound_is_taken_up_again_soon() {
        let cut = Error::ReconcileTimeout(Duration::from_millis(7500));
        assert_eq!(retry_delay(&cut, 9), TIMEOUT_RETRY_MAX);
        assert_eq!(retry_delay(&cut, 1), backoff(1).min(TIMEOUT_RETRY_MAX));
        assert!(
            backoff(9) > TIMEOUT_RETRY_MAX,
            "the generic backoff would be longer"
        );
    }
}
