//! The RunnerGroup controller: keeps an organization's or an enterprise's
//! runner group on GitHub as a `RunnerGroup` declares it.
//!
//! `reconcile` runs the finalizer as its only top-level action:
//! [`reconcile::apply`] (find or create → put settings and the access list
//! back → status) while the object lives, [`deletion::cleanup`] when it is
//! deleted (the group goes only once no runner is in it, or stays with
//! `deletionPolicy: Retain`).

pub mod access;
pub mod context;
pub mod deletion;
pub mod plan;
pub mod reconcile;

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};

use context::Context;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::instrument;

use crate::controller::Settings;
use crate::crd::RunnerGroup;
use crate::github::GitHubConnector;
use crate::kit::bound::finalize_within;
use crate::kit::error::Error;
use crate::kit::events::Recorder;
use crate::kit::retry::{self, Attempts, WatchBackoff};

pub const FINALIZER: &str = "actions.runnerpool.dev/runner-group";

#[instrument(skip_all, fields(namespace = group.namespace().unwrap_or_default(), runner_group = %group.name_any()))]
async fn reconcile(group: Arc<RunnerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = group
        .namespace()
        .ok_or(Error::NotNamespaced("RunnerGroup"))?;
    let api: Api<RunnerGroup> = Api::namespaced(ctx.client.clone(), &namespace);
    // Bounded like a pool's reconcile (see `Settings::reconcile_timeout`).
    let bound = ctx.settings.reconcile_timeout;
    finalize_within(&api, FINALIZER, group, bound, |event| async {
        match event {
            FinalizerEvent::Apply(group) => reconcile::apply(group, &ctx).await,
            FinalizerEvent::Cleanup(group) => deletion::cleanup(group, &ctx).await,
        }
    })
    .await
}

fn error_policy(group: Arc<RunnerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    retry::error_policy(group.as_ref(), error, &ctx.attempts)
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
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone()),
        client,
        github,
        settings,
        attempts: Attempts::default(),
        ids: Default::default(),
        unreachable_since: Default::default(),
    });
    Controller::new(groups, watcher::Config::default())
        .trigger_backoff(WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
