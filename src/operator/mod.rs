//! The operator process: what `runnerpool-operator run` starts, in order,
//! and how it stops.
//!
//! - [`config`]: every flag, and the settings built from them;
//! - [`servers`]: the admin listener and the webhook receiver;
//! - [`leadership`]: the fenced client and holding the Lease while acting;
//! - [`shutdown`]: SIGTERM, and the bounded wait for reconciles in flight;
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`;
//! - [`leader_pod`]: the leader's mark on its own pod (the webhook Service
//!   selects it).
//!
//! With leader election, a replica takes webhook deliveries and reconciles
//! only once it holds the Lease, and marks its pod from that moment (before
//! its caches synced: deliveries wait for them in the receiver's queue).
//! Every replica that serves is ready, standbys included, so a rolling
//! update proceeds. From SIGTERM on, deliveries are refused (503): the
//! controllers stopping would never keep them, and a successor recovers
//! them from the delivery log.

pub mod admin;
pub mod config;
pub mod leader_pod;
pub mod leadership;
pub mod servers;
pub mod shutdown;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tracing::info;

use crate::controller::Settings;
use crate::github::client::{CachingConnector, ClientOptions, OutboundProxy, WriteGate};
use crate::leader::LeaderElector;
use crate::metrics::{GitHubRequestLabels, Metrics};
use crate::scaleset::HttpSettings;
use crate::{controller, groups};
use admin::AdminState;
use config::Config;
use leader_pod::LeaderPod;

async fn kube_config(
    kubeconfig: Option<&PathBuf>,
) -> Result<kube::Config, Box<dyn std::error::Error>> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    };
    // The Kubernetes API is reached directly, whatever the proxy variables
    // say: kube-rs takes HTTPS_PROXY (ignoring NO_PROXY) for a kubeconfig,
    // though never in a pod, and this build carries no proxy connector for it.
    config.proxy_url = None;
    Ok(config)
}

/// The options of every GitHub client (the REST connector every controller
/// shares, and the Actions service clients of scale sets), counting each request in
/// the metrics and, with a fence, refusing every write once this replica
/// may no longer act.
fn github_options(
    config: &Config,
    metrics: &Arc<Metrics>,
    may_write: Option<WriteGate>,
) -> ClientOptions {
    let observed = metrics.clone();
    ClientOptions {
        request_timeout: Duration::from_secs(config.github_timeout_seconds.max(1)),
        observer: Some(Arc::new(move |record| {
            observed
                .github_requests
                .get_or_create(&GitHubRequestLabels {
                    endpoint: record.endpoint,
                    status: record.status.unwrap_or(0),
                })
                .inc();
        })),
        may_write,
        ..ClientOptions::default()
    }
}

/// Runs the operator until SIGTERM, or until this replica loses the Lease.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Arc::new(Metrics::new(config.job_metrics()));
    let synced = Arc::new(AtomicBool::new(false));
    // Whether this replica takes webhook deliveries: it does from the moment
    // it acts (at once, or once it leads), before its caches are synced,
    // because GitHub does not redeliver a refused delivery by itself. The
    // events wait in the feed until the controller can route them.
    let taking = Arc::new(AtomicBool::new(!config.leader_elect));
    // First, so a missing webhook secret is the error reported, whatever else.
    let mut feed = servers::start_webhook_listener(&config, &metrics, &taking).await?;
    // Before any client: a malformed proxy URL stops the operator rather
    // than letting GitHub calls go direct.
    let proxy = OutboundProxy::from_env()?;
    if proxy.is_set() {
        info!(%proxy, "GitHub and Actions service calls go through a proxy");
    }
    let kube = kube_config(config.kubeconfig.as_ref()).await?;
    // Validated with or without leader election: the reconcile bound derives from it.
    let timings = config.lease_config(|name| std::env::var(name).ok())?;
    // The Lease is written with a client of its own: the fence must never
    // stop the elector itself.
    let plain = kube::Client::try_from(kube.clone())?;
    let mut elector = match config.leader_elect {
        true => Some(LeaderElector::new(plain.clone(), timings.clone())),
        false => None,
    };
    let fence = elector.as_ref().map(LeaderElector::fence);
    let client = leadership::acting_client(kube, fence.as_ref())?;
    let leader_pod = match config.leader_elect {
        true => LeaderPod::from_env(&plain, &client, &timings.name, |name| {
            std::env::var(name).ok()
        }),
        false => None,
    };
    let may_write = fence
        .clone()
        .map(|fence| -> WriteGate { Arc::new(move || fence.may_act()) });
    let options = github_options(&config, &metrics, may_write);
    let scale_set_http = HttpSettings::new(options.clone(), None);
    let github = Arc::new(CachingConnector::new(options));
    let delivery_log = servers::delivery_log(&config, &github, feed.is_some())?;
    if let Some(feed) = feed.as_mut() {
        feed.delivery_log = delivery_log;
    }
    let admin_state = AdminState {
        acting: taking.clone(),
        synced: synced.clone(),
        metrics: metrics.clone(),
        github: github.clone(),
    };
    servers::start_admin(config.admin_listen, admin_state).await?;

    let shutdown = shutdown::signal().boxed().shared();
    tokio::spawn(shutdown::stop_taking_on(shutdown.clone(), taking.clone()));
    if let Some(elector) = elector.as_mut() {
        // A mark left from before this process (its container restarted).
        if let Some(pod) = &leader_pod {
            pod.unmark(leadership::UNMARK_TIMEOUT).await;
        }
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shutdown.clone() => return Ok(()),
        }
        taking.store(true, Ordering::Relaxed);
    }

    let reconcile_timeout = timings.reconcile_timeout();
    let settings = Settings {
        identity: timings.identity.clone(),
        ..config.settings(reconcile_timeout, |name| std::env::var(name).ok())
    };
    info!(install_id = %settings.install_id, namespace = ?settings.watch_namespace, connections_namespace = %settings.connections_namespace, reconcile_timeout = ?reconcile_timeout, "starting the RunnerPool and RunnerGroup controllers");
    let groups = groups::run(
        client.clone(),
        github.clone(),
        settings.clone(),
        shutdown.clone(),
    );
    let pools = controller::run(
        client,
        github,
        settings,
        metrics,
        synced.clone(),
        controller::DemandSources {
            webhooks: feed.take(),
            scale_sets: scale_set_http,
        },
        shutdown.clone(),
    );
    // On SIGTERM the controllers finish their reconciles in flight (each
    // bounded by the reconcile timeout) and stop; a little more than that
    // bound is all the wait a shutdown gets.
    let work = async {
        tokio::join!(pools, groups);
    };
    let bounded =
        shutdown::within_grace(work, shutdown.clone(), shutdown::grace(reconcile_timeout))
            .map(|_| ());
    let Some(elector) = elector else {
        bounded.await;
        info!("controller stopped");
        return Ok(());
    };
    let led = leadership::lead(elector, bounded, leader_pod).await;
    taking.store(false, Ordering::Relaxed);
    synced.store(false, Ordering::Relaxed);
    Ok(led?)
}
