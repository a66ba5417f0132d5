//! One pass over a RunnerGroup: connect → resolve the access list's ids →
//! find, create or take over the group → put settings and the access list
//! back → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::access::access_ids;
use super::context::Context;
use super::plan::{self, Claim};
use crate::crd::{RunnerGroup, RunnerGroupStatus};
use crate::github::{
    GitHubApi, GitHubError, GroupVisibility, RunnerGroupInfo, RunnerGroupSettings, Scope,
};
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::kit::retry::{backoff, jittered, key};
use crate::kit::status::apply_status;
use crate::kit::{credentials, events};

/// The GitHub client for the group's organization or enterprise and its
/// scope. GitHub App credentials are refused for an enterprise
/// (`CredentialsInvalid`: GitHub accepts only a classic token there).
/// `Ok(Err(_))` is a problem shown in status; `Err(_)` a failed read of the
/// credentials Secret, retried soon.
pub async fn connect(
    group: &RunnerGroup,
    ctx: &Context,
) -> Result<Result<(Arc<dyn GitHubApi>, Scope), Blocked>, Error> {
    let spec = group.spec.github.as_github_spec();
    let namespace = group.namespace().unwrap_or_default();
    let connections = &ctx.settings.connections_namespace;
    let found =
        credentials::credentials_secret(&ctx.client, connections, &namespace, &spec).await?;
    let (secret, github) = match found {
        Ok(found) => found,
        Err(blocked) => return Ok(Err(blocked)),
    };
    Ok(credentials::connect(ctx.github.as_ref(), &github, &secret))
}

/// Keeps the group on GitHub as the spec says.
pub async fn apply(group: Arc<RunnerGroup>, ctx: &Context) -> Result<Action, Error> {
    let (api, scope) = match connect(&group, ctx).await? {
        Ok(connected) => connected,
        Err(blocked) => return degraded(&group, ctx, blocked).await,
    };
    // Status written along the way (the intent to create, a new group's id)
    // is kept in this copy, so a later problem never writes a status without it.
    let mut group = (*group).clone();
    match sync(&mut group, ctx, api.as_ref(), &scope).await {
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

/// Finds, creates or takes over the group and puts its settings and access
/// list back; returns it with its number of runners.
async fn sync(
    group: &mut RunnerGroup,
    ctx: &Context,
    api: &dyn GitHubApi,
    scope: &Scope,
) -> Result<(RunnerGroupInfo, usize), Step> {
    let desired = plan::desired_settings(group);
    let selected = desired.visibility == GroupVisibility::Selected;
    let access = if selected {
        access_ids(api, group, scope, &ctx.ids).await?
    } else {
        Vec::new()
    };
    let known = group
        .status
        .as_ref()
        .and_then(|s| s.group_id)
        .map(|id| id as u64);

    let recorded = match known {
        Some(id) => match api.get_runner_group(scope, id).await {
            Ok(info) => Some(info),
            // Deleted by hand: it is looked for by name (a re-creation whose
            // answer was lost is the operator's own), else created again below.
            Err(GitHubError::NotFound(_)) => None,
            Err(e) => return Err(Blocked::github(&e, "cannot read the runner group").into()),
        },
        None => None,
    };
    let existing = match recorded {
        Some(info) => Some(info),
        None => find_and_claim(group, ctx, api, scope, &desired.name).await?,
    };

    let info = match existing {
        Some(info) if plan::settings_drifted(&info.settings, &desired) => {
            let updated = api
                .update_runner_group(scope, info.id, &desired)
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
        None => create(group, ctx, api, scope, &desired, &access).await?,
    };

    if selected {
        put_access_back(group, ctx, api, scope, info.id, &access).await?;
    }
    let runners = api
        .list_group_runners(scope, info.id)
        .await
        .map_err(|e| Blocked::github(&e, "cannot list the group's runners"))?;
    Ok((info, runners.len()))
}

/// The group named `name` when none is recorded yet: managed from now on if
/// it is adopted or the operator's own (see [`plan::claim`]).
async fn find_and_claim(
    group: &mut RunnerGroup,
    ctx: &Context,
    api: &dyn GitHubApi,
    scope: &Scope,
    name: &str,
) -> Result<Option<RunnerGroupInfo>, Step> {
    let Some(found) = api
        .find_runner_group(scope, name)
        .await
        .map_err(|e| Blocked::github(&e, "cannot list runner groups"))?
    else {
        return Ok(None);
    };
    let claim = plan::claim(group, &found, &scope.to_string())?;
    // From now on its id is in status, so it is managed (and deleted) as if
    // the operator had just created it.
    record_group(group, ctx, &found).await?;
    let (reason, note) = match claim {
        Claim::Adopted => ("Adopted", "Adopted"),
        Claim::Ours => ("Created", "Took over (its creation was not recorded)"),
    };
    announce(
        ctx,
        group,
        reason,
        format!(
            "{note} runner group {:?} (id {})",
            found.settings.name, found.id
        ),
    )
    .await;
    Ok(Some(found))
}

/// Creates the group, its intent recorded first: if the answer or the status
/// write after it is lost, the next pass finds a group of that name and
/// knows it for its own.
async fn create(
    group: &mut RunnerGroup,
    ctx: &Context,
    api: &dyn GitHubApi,
    scope: &Scope,
    desired: &RunnerGroupSettings,
    access: &[u64],
) -> Result<RunnerGroupInfo, Step> {
    let intent = plan::creating(group, &desired.name);
    write_status(group, ctx, &intent)
        .await
        .map_err(Step::Kube)?;
    group.status = Some(intent);
    let created = match api.create_runner_group(scope, desired, access).await {
        Ok(created) => created,
        Err(e) => {
            if matches!(e, GitHubError::Invalid(_)) {
                // Perhaps an id of the access list no longer names what it did.
                ctx.ids.forget(group);
            }
            return Err(Blocked::github(&e, "cannot create the runner group").into());
        }
    };
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
    Ok(created)
}

/// Makes the access list equal to the spec's, in one call for the whole list.
async fn put_access_back(
    group: &RunnerGroup,
    ctx: &Context,
    api: &dyn GitHubApi,
    scope: &Scope,
    id: u64,
    access: &[u64],
) -> Result<(), Step> {
    let actual = api
        .list_group_access(scope, id)
        .await
        .map_err(|e| Blocked::github(&e, "cannot list the group's access list"))?;
    let (add, remove) = plan::repository_changes(access, &actual);
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    if let Err(e) = api.set_group_access(scope, id, access).await {
        if matches!(e, GitHubError::Invalid(_) | GitHubError::NotFound(_)) {
            // An id no longer names what it did (deleted, renamed away): the
            // next pass reads the names again.
            ctx.ids.forget(group);
        }
        return Err(Blocked::github(&e, "cannot set the group's access list").into());
    }
    announce(
        ctx,
        group,
        "AccessSynced",
        format!(
            "Access list set: {} added, {} removed",
            add.len(),
            remove.len()
        ),
    )
    .await;
    Ok(())
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

/// Shows the problem in status (and once as a Warning event) and retries with backoff.
pub async fn degraded(
    group: &RunnerGroup,
    ctx: &Context,
    blocked: Blocked,
) -> Result<Action, Error> {
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
        Problem::AlreadyExists
        | Problem::Inherited
        | Problem::RepositoryNotFound
        | Problem::OrganizationNotFound => ctx.settings.github_sync_interval,
        _ => blocked
            .retry_in
            .unwrap_or(backoff(streak).max(Duration::from_secs(2))),
    };
    Ok(Action::requeue(jittered(wait)))
}

async fn announce(ctx: &Context, group: &RunnerGroup, reason: &str, note: String) {
    publish(ctx, group, EventType::Normal, reason, note).await;
}

pub async fn publish(
    ctx: &Context,
    group: &RunnerGroup,
    type_: EventType,
    reason: &str,
    note: String,
) {
    events::publish(&ctx.recorder, group, type_, reason, "Reconcile", note).await;
}

/// Writes status through server-side apply, only when it changed.
pub async fn write_status(
    group: &RunnerGroup,
    ctx: &Context,
    status: &RunnerGroupStatus,
) -> Result<(), Error> {
    apply_status(&ctx.client, group, group.status.as_ref(), status).await
}
