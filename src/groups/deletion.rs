//! A deleted RunnerGroup: its group on GitHub goes once no runner is in it
//! (or stays, with `deletionPolicy: Retain`). Only GitHub being unreachable
//! for `--cleanup-timeout-seconds` in a row releases the object early.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::context::Context;
use super::plan;
use super::reconcile::{connect, publish, write_status};
use crate::RunnerPool;
use crate::crd::{DeletionPolicy, RunnerGroup};
use crate::github::GitHubError;
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::kit::retry::key;
use crate::mutex::lock;

/// Deletes the group once no runner is in it, if the operator created or
/// adopted it and the policy is `Delete`; a group it never managed is left
/// alone.
pub async fn cleanup(group: Arc<RunnerGroup>, ctx: &Context) -> Result<Action, Error> {
    let Some(id) = group.status.as_ref().and_then(|s| s.group_id) else {
        return Ok(released(&group, ctx));
    };
    let id = id as u64;
    if group.spec.deletion_policy.unwrap_or_default() == DeletionPolicy::Retain {
        let note = format!(
            "Left runner group {:?} (id {id}) on GitHub: deletionPolicy is Retain",
            group.group_name()
        );
        info!(runner_group = %group.name_any(), id, "{note}");
        publish(ctx, &group, EventType::Normal, "GroupRetained", note).await;
        return Ok(released(&group, ctx));
    }
    let (api, scope) = match connect(&group, ctx).await? {
        Ok(connected) => connected,
        Err(blocked) => return give_up_or_wait(&group, ctx, id, blocked).await,
    };
    let runners = match api.list_group_runners(&scope, id).await {
        Ok(runners) => runners,
        Err(GitHubError::NotFound(_)) => return Ok(released(&group, ctx)),
        Err(e) => {
            let blocked = Blocked::github(&e, "cannot list the group's runners");
            return give_up_or_wait(&group, ctx, id, blocked).await;
        }
    };
    // GitHub answers: whatever came before does not count toward the timeout.
    lock(&ctx.unreachable_since).remove(&key(group.as_ref()));
    if !runners.is_empty() {
        let pools = pools_using(&group, ctx).await?;
        let users = if pools.is_empty() {
            "no RunnerPool of this namespace refers to it".to_string()
        } else {
            format!("pools still using it: {}", pools.join(", "))
        };
        let message = format!(
            "{} runner(s) are still in runner group {:?} (id {id}); it is deleted once they are gone; {users}",
            runners.len(),
            group.group_name()
        );
        let status = plan::status(
            &group,
            None,
            Some(runners.len()),
            Some((Problem::WaitingForRunners, message.clone())),
            Timestamp::now(),
        );
        write_status(&group, ctx, &status).await?;
        return Err(Error::DeletionPending(message));
    }
    match api.delete_runner_group(&scope, id).await {
        Ok(()) | Err(GitHubError::NotFound(_)) => {
            info!(runner_group = %group.name_any(), id, "runner group deleted");
            Ok(released(&group, ctx))
        }
        Err(e) => {
            let blocked = Blocked::github(&e, "cannot delete the runner group");
            give_up_or_wait(&group, ctx, id, blocked).await
        }
    }
}

/// The object may go: nothing about it is kept.
fn released(group: &RunnerGroup, ctx: &Context) -> Action {
    lock(&ctx.unreachable_since).remove(&key(group));
    ctx.ids.forget(group);
    Action::await_change()
}

/// Names of the namespace's pools whose `runnerGroupRef` names this group.
async fn pools_using(group: &RunnerGroup, ctx: &Context) -> Result<Vec<String>, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let pools = Api::<RunnerPool>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await?;
    let mut names: Vec<String> = pools
        .items
        .iter()
        .filter(|p| {
            p.spec
                .runner_group_ref
                .as_ref()
                .is_some_and(|r| r.name == group.name_any())
        })
        .map(|p| p.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// GitHub cannot be asked: wait, but not forever. Once it could not be asked
/// for the cleanup timeout in a row (any answer starts the count again), the
/// object is released with a Warning naming the group left on GitHub.
async fn give_up_or_wait(
    group: &RunnerGroup,
    ctx: &Context,
    id: u64,
    blocked: Blocked,
) -> Result<Action, Error> {
    let since = *lock(&ctx.unreachable_since)
        .entry(key(group))
        .or_insert_with(Instant::now);
    if since.elapsed() >= ctx.settings.cleanup_timeout {
        let note = format!(
            "Released without deleting runner group {:?} (id {id}) from GitHub after it could not be asked for {}s in a row: {}",
            group.group_name(),
            ctx.settings.cleanup_timeout.as_secs(),
            blocked.message
        );
        warn!(runner_group = %group.name_any(), id, "{note}");
        publish(ctx, group, EventType::Warning, "GroupLeftOnGitHub", note).await;
        return Ok(released(group, ctx));
    }
    let status = plan::status(
        group,
        None,
        None,
        Some((blocked.problem, blocked.message.clone())),
        Timestamp::now(),
    );
    write_status(group, ctx, &status).await?;
    Err(Error::DeletionPending(blocked.message))
}
