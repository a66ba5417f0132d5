//! Connecting a pool to GitHub: its credentials (a Secret of its namespace
//! or a GitHubConnection), its scope and endpoint, and its runner group (by
//! id, by name through the runner-groups API, or through a `RunnerGroup` of
//! its namespace). A pool whose runners could read its credentials is
//! refused first (see [`super::isolation`]).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::context::{Context, uid};
use super::isolation::credentials_within_reach;
use crate::RunnerPool;
use crate::connection::Target;
use crate::crd::{GitHubSpec, Visibility};
use crate::github::Scope;
use crate::kit::credentials;
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::pod::job_pod_template;

/// Connects a live pool. A template that would hand the credentials to
/// every job, or a kubernetes-mode pool keeping them in its namespace, is
/// refused before anything is registered, and so is a job pod template the
/// runner's own variable would hide.
pub async fn connect_pool(
    pool: &RunnerPool,
    ctx: &Context,
) -> Result<Result<Target, Blocked>, Error> {
    if let Some(refusal) = credentials_within_reach(pool, &ctx.settings.connections_namespace) {
        return Ok(Err(refusal));
    }
    if let Some(hidden) = job_pod_template::hidden_by_the_template(pool) {
        return Ok(Err(Blocked::new(Problem::InvalidSpec, hidden)));
    }
    connect(pool, ctx).await
}

/// Reads the pool's credentials Secret and connects with it. `Ok(Err(_))`
/// is a problem shown in status; `Err(_)` a failed read, retried soon.
pub async fn connect(pool: &RunnerPool, ctx: &Context) -> Result<Result<Target, Blocked>, Error> {
    let namespace = pool.namespace().unwrap_or_default();
    let connections = &ctx.settings.connections_namespace;
    let spec = &pool.spec.github;
    Ok(
        match credentials::credentials_secret(&ctx.client, connections, &namespace, spec).await? {
            Ok((secret, github)) => connect_with(pool, ctx, &github, &secret).await,
            Err(blocked) => Err(blocked),
        },
    )
}

/// Resolves scope, endpoint and runner group with the credentials in
/// `secret`, for `github` (the pool's, with its connection's endpoint).
async fn connect_with(
    pool: &RunnerPool,
    ctx: &Context,
    github: &GitHubSpec,
    secret: &Secret,
) -> Result<Target, Blocked> {
    let (api, scope) = credentials::connect(ctx.github.as_ref(), github, secret)?;
    // Checked by the connect above: a bad endpoint never gets this far.
    let endpoint = crate::connection::endpoint(github)
        .map_err(|e| Blocked::new(Problem::InvalidSpec, e.to_string()))?;

    if let Some(reference) = &pool.spec.runner_group_ref {
        let runner_group_id = referenced_group_id(pool, &reference.name, ctx).await?;
        return Ok(Target {
            api,
            endpoint,
            scope,
            runner_group_id,
        });
    }
    // Only a RunnerGroup tells the group's repository access.
    ctx.memory.with(&uid(pool), |m| m.group_repositories = None);
    let runner_group_id = match (&pool.spec.runner_group_id, &pool.spec.runner_group, &scope) {
        (Some(id), _, _) => *id as u64,
        (None, None, _) | (None, Some(_), Scope::Repository { .. }) => DEFAULT_RUNNER_GROUP,
        (None, Some(name), _) => {
            let groups = api
                .list_runner_groups(&scope)
                .await
                .map_err(|e| Blocked::github(&e, "cannot list runner groups"))?;
            match groups.iter().find(|g| g.name == *name) {
                Some(group) => group.id,
                None => {
                    return Err(Blocked::new(
                        Problem::RunnerGroupNotFound,
                        format!("runner group {name:?} does not exist in {scope}"),
                    ));
                }
            }
        }
    };
    Ok(Target {
        api,
        endpoint,
        scope,
        runner_group_id,
    })
}

/// The id of the group a `RunnerGroup` of the pool's namespace manages; no
/// runner is registered before that group exists.
async fn referenced_group_id(pool: &RunnerPool, name: &str, ctx: &Context) -> Result<u64, Blocked> {
    let namespace = pool.namespace().unwrap_or_default();
    let group = Api::<crate::crd::RunnerGroup>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(name)
        .await
        .map_err(|e| Blocked::new(Problem::RunnerGroupNotFound, format!("cannot read RunnerGroup {name:?}: {e}")))?
        .ok_or_else(|| {
            Blocked::new(
                Problem::RunnerGroupNotFound,
                format!("RunnerGroup {name:?} (spec.runnerGroupRef) not found in namespace {namespace:?}"),
            )
        })?;
    let github = &group.spec.github;
    let Some(organization) = github.organization.as_deref() else {
        let enterprise = github.enterprise.as_deref().unwrap_or_default();
        return Err(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "RunnerGroup {name:?} is a group of enterprise {enterprise:?}: runnerGroupRef names an organization's group (name an enterprise group with spec.runnerGroup)"
            ),
        ));
    };
    if !pool
        .spec
        .github
        .organization
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(organization))
    {
        return Err(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "RunnerGroup {name:?} belongs to organization {organization:?}, not to the pool's"
            ),
        ));
    }
    // Which repositories may use the group, for the routing of queued jobs.
    let admitted = (group.spec.visibility == Some(Visibility::Selected)).then(|| {
        let repositories = group.spec.selected_repositories.iter().flatten();
        repositories.map(|r| r.to_lowercase()).collect()
    });
    ctx.memory
        .with(&uid(pool), |m| m.group_repositories = admitted);
    group
        .status
        .and_then(|s| s.group_id)
        .map(|id| id as u64)
        .ok_or_else(|| {
            Blocked::new(
                Problem::RunnerGroupNotFound,
                format!("RunnerGroup {name:?} has no group on GitHub yet (see its status)"),
            )
        })
}

/// GitHub's default runner group.
pub const DEFAULT_RUNNER_GROUP: u64 = 1;
