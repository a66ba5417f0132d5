//! One pass over a RunnerGroup: connect → resolve repositories → find or
//! create the group → put settings and repository access back → status; and
//! its deletion, which waits for the group to have no runner.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::context::Context;
use super::plan;
use crate::RunnerPool;
use crate::crd::{RunnerGroup, RunnerGroupStatus};
use crate::github::{GitHubApi, GitHubError, GroupVisibility, RunnerGroupInfo};
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::kit::retry::{backoff, jittered, key};
use crate::kit::status::apply_status;
use crate::kit::{credentials, events};

/// The GitHub client for the group's organization and credentials.
/// `Ok(Err(_))` is a problem shown in status; `Err(_)` a failed read of the
/// credentials Secret, retried soon.
async fn connect(
    group: &RunnerGroup,
    ctx: &Context,
) -> Result<Result<Arc<dyn GitHubApi>, Blocked>, Error> {
    let spec = group.spec.github.as_github_spec();
    let namespace = group.namespace().unwrap_or_default();
    let secret = match credentials::credentials_secret(&ctx.client, &namespace, &spec).await? {
        Ok(secret) => secret,
        Err(blocked) => return Ok(Err(blocked)),
    };
    Ok(credentials::connect(ctx.github.as_ref(), &spec, &secret).map(|(api, _)| api))
}

/// The ids of the spec's repositories.
async fn repository_ids(api: &dyn GitHubApi, group: &RunnerGroup) -> Result<Vec<u64>, Blocked> {
    let mut ids = Vec::new();
    for (owner, name) in plan::repositories(group) {
        match api.repository_id(&owner, &name).await {
            Ok(id) => ids.push(id),
            Err(GitHubError::NotFound(_)) => {
                return Err(Blocked::new(
                    Problem::RepositoryNotFound,
                    format!(
                        "repository {owner}/{name} does not exist or the credentials cannot see it; the group's repository access is left as it is"
                    ),
                ));
            }
            Err(e) => {
                return Err(Blocked::github(
                    &e,
                    &format!("cannot look up {owner}/{name}"),
                ));
            }
        }
    }
    Ok(ids)
}

/// Keeps the group on GitHub as the spec says.
pub async fn apply(group: Arc<RunnerGroup>, ctx: &Context) -> Result<Action, Error> {
    let api = match connect(&group, ctx).await? {
        Ok(api) => api,
        Err(blocked) => return degraded(&group, ctx, blocked).await,
    };
    // Status written along the way (a new group's id) is kept in this copy,
    // so a later problem never writes a status without it.
    let mut group = (*group).clone();
    match sync(&mut group, ctx, api.as_ref()).await {
        Ok((info, runners)) => {
            ctx.attempts.succeeded(&key(&group));
            let status = plan::status(
                &group,
                Some((info.id, &info.settings.name)),
                Some(runners),
                None,
                Timestamp::now(),
            );
            write_status(&group, ctx, &status).await?;
            Ok(Action::requeue(jittered(ctx.settings.github_sync_interval)))
        }
        Err(Step::Blocked(blocked)) => degraded(&group, ctx, blocked).await,
        Err(Step::Kube(e)) => Err(e),
    }
}

enum Step {
    Blocked(Blocked),
    Kube(Error),
}

impl From<Blocked> for Step {
    fn from(b: Blocked) -> Self {
        Step::Blocked(b)
    }
}

/// Finds, creates or adopts the group and puts its settings and repository
/// access back; returns it with its number of runners.
async fn sync(
    group: &mut RunnerGroup,
    ctx: &Context,
    api: &dyn GitHubApi,
) -> Result<(RunnerGroupInfo, usize), Step> {
    let org = group.spec.github.organization.clone();
    let org = org.as_str();
    let desired = plan::desired_settings(group);
    let repositories = repository_ids(api, group).await?;
    let selected = desired.visibility == GroupVisibility::Selected;
    let known = group
        .status
        .as_ref()
        .and_then(|s| s.group_id)
        .map(|id| id as u64);

    let mut existing = match known {
        Some(id) => match api.get_runner_group(org, id).await {
            Ok(info) => Some(info),
            // Deleted by hand: it is created again below.
            Err(GitHubError::NotFound(_)) => None,
            Err(e) => return Err(Blocked::github(&e, "cannot read the runner group").into()),
        },
        None => None,
    };
    if known.is_none() {
        existing = api
            .find_runner_group(org, &desired.name)
            .await
            .map_err(|e| Blocked::github(&e, "cannot list runner groups"))?;
        if let Some(found) = &existing {
            if found.default {
                return Err(Blocked::new(
                    Problem::Rejected,
                    format!(
                        "{:?} is the organization's default group, which cannot be managed",
                        found.settings.name
                    ),
                )
                .into());
            }
            if !group.spec.adopt.unwrap_or(false) {
                return Err(Blocked::new(
                    Problem::AlreadyExists,
                    format!(
                        "a runner group named {:?} (id {}) already exists in {org}: set spec.adopt: true to manage it (it is then deleted with this RunnerGroup)",
                        found.settings.name, found.id
                    ),
                )
                .into());
            }
            // Adopted: from now on its id is in status, so it is managed
            // (and deleted) as if the operator had created it.
            record_group(group, ctx, found).await?;
            announce(
                ctx,
                group,
                "Adopted",
                format!(
                    "Adopted runner group {:?} (id {})",
                    found.settings.name, found.id
                ),
            )
            .await;
        }
    }

    let info = match existing {
        Some(info) if plan::settings_drifted(&info.settings, &desired) => {
            let updated = api
                .update_runner_group(org, info.id, &desired)
                .await
                .map_err(|e| Blocked::github(&e, "cannot update the runner group"))?;
            info!(runner_group = %group.name_any(), id = info.id, "runner group settings put back");
            announce(
                ctx,
                group,
                "Updated",
                format!(
                    "Set the settings of runner group {:?} (id {})",
                    desired.name, info.id
                ),
            )
            .await;
            updated
        }
        Some(info) => info,
        None => {
            let ids: &[u64] = if selected { &repositories } else { &[] };
            let created = api
                .create_runner_group(org, &desired, ids)
                .await
                .map_err(|e| Blocked::github(&e, "cannot create the runner group"))?;
            // Recorded at once: only a group whose id is in status is ever deleted.
            record_group(group, ctx, &created).await?;
            info!(runner_group = %group.name_any(), id = created.id, "runner group created");
            announce(
                ctx,
                group,
                "Created",
                format!(
                    "Created runner group {:?} (id {})",
                    desired.name, created.id
                ),
            )
            .await;
            created
        }
    };

    if selected {
        let actual = api
            .list_group_repositories(org, info.id)
            .await
            .map_err(|e| Blocked::github(&e, "cannot list the group's repositories"))?;
        let (add, remove) = plan::repository_changes(&repositories, &actual);
        for id in &add {
            api.add_group_repository(org, info.id, *id)
                .await
                .map_err(|e| Blocked::github(&e, &format!("cannot give repository {id} access")))?;
        }
        for id in &remove {
            api.remove_group_repository(org, info.id, *id)
                .await
                .map_err(|e| Blocked::github(&e, &format!("cannot remove repository {id}")))?;
        }
        if !add.is_empty() || !remove.is_empty() {
            announce(
                ctx,
                group,
                "RepositoriesSynced",
                format!(
                    "Repository access: {} added, {} removed",
                    add.len(),
                    remove.len()
                ),
            )
            .await;
        }
    }
    let runners = api
        .list_group_runners(org, info.id)
        .await
        .map_err(|e| Blocked::github(&e, "cannot list the group's runners"))?;
    Ok((info, runners.len()))
}

/// Writes the group's id into status before anything else happens to it.
async fn record_group(
    group: &mut RunnerGroup,
    ctx: &Context,
    info: &RunnerGroupInfo,
) -> Result<(), Step> {
    let status = plan::status(
        group,
        Some((info.id, &info.settings.name)),
        None,
        None,
        Timestamp::now(),
    );
    write_status(group, ctx, &status)
        .await
        .map_err(Step::Kube)?;
    group.status = Some(status);
    Ok(())
}

/// Deletes the group once no runner is in it, if the operator created or
/// adopted it; a group it never managed is left alone.
pub async fn cleanup(group: Arc<RunnerGroup>, ctx: &Context) -> Result<Action, Error> {
    let Some(id) = group.status.as_ref().and_then(|s| s.group_id) else {
        return Ok(Action::await_change());
    };
    let id = id as u64;
    let org = group.spec.github.organization.as_str();
    let api = match connect(&group, ctx).await? {
        Ok(api) => api,
        Err(blocked) => return give_up_or_wait(&group, ctx, id, blocked).await,
    };
    let runners = match api.list_group_runners(org, id).await {
        Ok(runners) => runners,
        Err(GitHubError::NotFound(_)) => return Ok(Action::await_change()),
        Err(e) => {
            let blocked = Blocked::github(&e, "cannot list the group's runners");
            return give_up_or_wait(&group, ctx, id, blocked).await;
        }
    };
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
    match api.delete_runner_group(org, id).await {
        Ok(()) | Err(GitHubError::NotFound(_)) => {
            info!(runner_group = %group.name_any(), id, "runner group deleted");
            Ok(Action::await_change())
        }
        Err(e) => {
            let blocked = Blocked::github(&e, "cannot delete the runner group");
            give_up_or_wait(&group, ctx, id, blocked).await
        }
    }
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

/// GitHub cannot be asked: wait, but not forever. After the cleanup timeout
/// the object is released with a Warning naming the group left on GitHub.
async fn give_up_or_wait(
    group: &RunnerGroup,
    ctx: &Context,
    id: u64,
    blocked: Blocked,
) -> Result<Action, Error> {
    let deleted_for = group
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or(Duration::ZERO);
    if deleted_for >= ctx.settings.cleanup_timeout {
        let note = format!(
            "Released without deleting runner group {:?} (id {id}) from GitHub after {}s: {}",
            group.group_name(),
            ctx.settings.cleanup_timeout.as_secs(),
            blocked.message
        );
        warn!(runner_group = %group.name_any(), id, "{note}");
        publish(ctx, group, EventType::Warning, "GroupLeftOnGitHub", note).await;
        return Ok(Action::await_change());
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

/// Shows the problem in status (and once as a Warning event) and retries with backoff.
async fn degraded(group: &RunnerGroup, ctx: &Context, blocked: Blocked) -> Result<Action, Error> {
    let reason = blocked.problem.reason();
    let streak = ctx.attempts.failed(&key(group));
    let already = !ctx.attempts.announce(&key(group), reason);
    warn!(runner_group = %group.name_any(), reason, message = %blocked.message, "runner group degraded");
    if !already {
        publish(
            ctx,
            group,
            EventType::Warning,
            reason,
            blocked.message.clone(),
        )
        .await;
    }
    let status = plan::status(
        group,
        None,
        None,
        Some((blocked.problem, blocked.message)),
        Timestamp::now(),
    );
    write_status(group, ctx, &status).await?;
    // An existing group waits for a person; everything else for GitHub.
    let wait = match blocked.problem {
        Problem::AlreadyExists | Problem::RepositoryNotFound => ctx.settings.github_sync_interval,
        _ => blocked
            .retry_in
            .unwrap_or(backoff(streak).max(Duration::from_secs(2))),
    };
    Ok(Action::requeue(jittered(wait)))
}

async fn announce(ctx: &Context, group: &RunnerGroup, reason: &str, note: String) {
    publish(ctx, group, EventType::Normal, reason, note).await;
}

async fn publish(ctx: &Context, group: &RunnerGroup, type_: EventType, reason: &str, note: String) {
    events::publish(&ctx.recorder, group, type_, reason, "Reconcile", note).await;
}

/// Writes status through server-side apply, only when it changed.
async fn write_status(
    group: &RunnerGroup,
    ctx: &Context,
    status: &RunnerGroupStatus,
) -> Result<(), Error> {
    apply_status(&ctx.client, group, group.status.as_ref(), status).await
}
