//! The RunnerGroup controller: keeps an organization's runner group on
//! GitHub as a `RunnerGroup` declares it.
//!
//! `reconcile` runs the finalizer as its only top-level action:
//! [`reconcile::apply`] (find or create → put settings and repository access
//! back → status) while the object lives, [`reconcile::cleanup`] when it is
//! deleted (the group goes only once no runner is in it).

pub mod plan;
pub mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{instrument, warn};

use crate::controller::{Settings, backoff, jittered};
use crate::crd::RunnerGroup;
use crate::github::{GitHubConnector, GitHubError};

pub const FINALIZER: &str = "actions.runnerpool.dev/runner-group";

/// What every reconcile of a RunnerGroup shares.
pub struct Context {
    pub client: Client,
    pub github: Arc<dyn GitHubConnector>,
    pub settings: Settings,
    pub recorder: Recorder,
    /// Failures in a row per object, for the backoff.
    streaks: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
    #[error("GitHub API error: {0}")]
    GitHub(#[source] GitHubError),
    #[error("RunnerGroup has no namespace")]
    NotNamespaced,
    /// Deleting: the group still has runners (or GitHub cannot be asked yet).
    #[error("waiting to delete the runner group: {0}")]
    DeletionPending(String),
    #[error("the reconcile did not finish within {0:?}; abandoned, to be retried")]
    ReconcileTimeout(std::time::Duration),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A bounded name for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::GitHub(e) => e.category(),
            Error::NotNamespaced => "not_namespaced",
            Error::DeletionPending(_) => "deletion_pending",
            Error::ReconcileTimeout(_) => "reconcile_timeout",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                _ => "finalizer",
            },
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

/// How often a group being deleted looks again for runners in it.
pub const DELETION_POLL: Duration = Duration::from_secs(3);

impl Context {
    fn streak(&self, key: &str, failed: bool) -> u32 {
        let mut streaks = self
            .streaks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed {
            let n = streaks.entry(key.to_string()).or_default();
            *n = n.saturating_add(1);
            *n
        } else {
            streaks.remove(key);
            0
        }
    }
}

fn key(group: &RunnerGroup) -> String {
    group
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| group.name_any())
}

#[instrument(skip_all, fields(namespace = group.namespace().unwrap_or_default(), runner_group = %group.name_any()))]
async fn reconcile(group: Arc<RunnerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = group.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<RunnerGroup> = Api::namespaced(ctx.client.clone(), &namespace);
    // Bounded like a pool's reconcile (see `Settings::reconcile_timeout`).
    let bound = ctx.settings.reconcile_timeout;
    let work = finalizer(&api, FINALIZER, group, |event| async {
        match event {
            FinalizerEvent::Apply(group) => reconcile::apply(group, &ctx).await,
            FinalizerEvent::Cleanup(group) => reconcile::cleanup(group, &ctx).await,
        }
    });
    match tokio::time::timeout(bound, work).await {
        Ok(done) => done.map_err(|e| Error::Finalizer(Box::new(e))),
        Err(_) => Err(Error::ReconcileTimeout(bound)),
    }
}

fn error_policy(group: Arc<RunnerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    let pending = matches!(
        error,
        Error::Finalizer(inner) if matches!(
            inner.as_ref(),
            kube::runtime::finalizer::Error::CleanupFailed(Error::DeletionPending(_))
        )
    );
    let delay = if pending {
        DELETION_POLL
    } else {
        backoff(ctx.streak(&key(&group), true))
    };
    warn!(runner_group = %group.name_any(), category = error.category(), error = %error, retry_in = ?delay, "runner group reconcile failed");
    Action::requeue(jittered(delay))
}

/// Runs the RunnerGroup controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    github: Arc<dyn GitHubConnector>,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let groups: Api<RunnerGroup> = match settings.watch_namespace.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let reporter = Reporter {
        controller: "runnerpool-operator".to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        github,
        settings,
        streaks: Default::default(),
    });
    Controller::new(groups, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
