//! What every reconcile of a pool shares: the settings from the command
//! line, the clients, the watch caches and their per-pool indexes, the
//! memory kept between passes, the shared GitHub inventories and releases,
//! and the source of demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::demand::scale_set::ScaleSets;
use crate::kit::events::{EventType, Recorder};
use crate::scaleset::HttpSettings;
use futures::channel::mpsc::UnboundedSender;
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use tokio::sync::Notify;

use super::index::{PoolIndex, SecretEntry};
use super::memory::{Leftovers, Memory};
use crate::RunnerPool;
use crate::demand::PoolDemand;
use crate::github::GitHubConnector;
use crate::inventory::Inventories;
use crate::kit::error::Error;
use crate::kit::retry::Attempts;
use crate::metrics::Metrics;
use crate::pod::cached::CachedPod;
use crate::versions::releases::LatestReleases;

/// Settings of the controllers (from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Distinguishes this installation's runners from other clusters' in one organization.
    pub install_id: String,
    /// Watch only this namespace; all namespaces when `None`.
    pub watch_namespace: Option<String>,
    /// Where the credentials Secrets of GitHubConnections are read.
    pub connections_namespace: String,
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
    /// This replica's name (its leader-election identity): the owner of the
    /// scale-set sessions it holds.
    pub identity: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            install_id: "default".to_string(),
            identity: "runnerpool-operator".to_string(),
            watch_namespace: None,
            connections_namespace: "default".to_string(),
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
    pub pods: Store<CachedPod>,
    /// The caches' pods and Secrets by pool.
    pub pod_index: Arc<PoolIndex>,
    /// Runner Secrets: the index is all that is kept of them.
    pub secret_index: Arc<PoolIndex<SecretEntry>>,
    pub recorder: Recorder,
    pub memory: Memory,
    /// Each pool's failures in a row and the problem last announced.
    pub attempts: Attempts,
    pub metrics: Arc<Metrics>,
    /// Queued jobs and busy runners (empty without a source of demand).
    pub demand: Arc<dyn PoolDemand>,
    /// Set once the watch caches have their first full list.
    pub synced: AtomicBool,
    /// Connections of deleted pools whose runners the sweep still removes.
    pub leftovers: Leftovers,
    /// GitHub's runners, one view per scope shared by its pools.
    pub inventory: Inventories,
    /// The newest runner release per scope, shared by its pools.
    pub releases: LatestReleases,
    /// Runner creations under way in every pool, which a shutdown finishes.
    pub creations: Creations,
    /// The scale sets of scale-set pools and their listeners.
    pub scale_sets: Arc<ScaleSets>,
    /// How the Actions service clients of scale sets talk HTTP.
    pub scale_set_http: HttpSettings,
    /// Reconciles a pool at once (its demand changed).
    pub wake: UnboundedSender<ObjectRef<RunnerPool>>,
}

/// Runner creations under way: each runs as a task of its own and may
/// outlive the pass that started it. A shutdown waits for them (within its
/// grace), so no registration is left between its mint and its pod.
#[derive(Default)]
pub struct Creations {
    under_way: AtomicUsize,
    ended: Notify,
}

impl Creations {
    pub fn started(&self) {
        self.under_way.fetch_add(1, Ordering::SeqCst);
    }

    pub fn ended(&self) {
        self.under_way.fetch_sub(1, Ordering::SeqCst);
        self.ended.notify_waiters();
    }

    /// Resolves once no creation is under way.
    pub async fn finished(&self) {
        loop {
            let ended = self.ended.notified();
            if self.under_way.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

impl Context {
    pub async fn wait_for_caches(&self) -> Result<(), Error> {
        if self.synced.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ready = async {
            store_ready(&self.pods).await;
            self.secret_index.listed().await;
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
        crate::kit::events::publish(&self.recorder, pool, type_, reason, action, note).await;
    }
}

/// Waits until `store` holds its first full list. Its readiness signal wakes
/// only the waiter that polled it last (kube-runtime's `DelayedInit` keeps one
/// waker) and the controller's applier polls the same signal, so ask again now
/// and then instead of waiting for a wake-up that may never come.
pub async fn store_ready<K>(store: &Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    while tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// The pool's UID, the key of everything kept per pool.
pub fn uid(pool: &RunnerPool) -> String {
    pool.metadata.uid.clone().unwrap_or_default()
}
