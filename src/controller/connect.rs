//! Connecting a pool to GitHub: its credentials (a Secret of its namespace
//! or a GitHubConnection), its scope and endpoint, and its runner group (by
//! id, by name through the runner-groups API, or through a `RunnerGroup` of
//! its namespace). A pool whose runners could read its credentials is
//! refused first.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use crate::RunnerPool;
use crate::connection::Target;
use crate::crd::{ContainerMode, GitHubSpec};
use crate::github::Scope;
use crate::kit::credentials;
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::pod::build::credentials_exposure as runner_credentials_exposure;

/// Connects a live pool. A template that would hand the credentials to
/// every job, or a kubernetes-mode pool keeping them in its namespace, is
/// refused before anything is registered.
pub async fn connect_pool(
    pool: &RunnerPool,
    ctx: &Context,
) -> Result<Result<Target, Blocked>, Error> {
    match credentials_within_reach(pool, &ctx.settings.connections_namespace) {
        Some(refusal) => Ok(Err(refusal)),
        None => connect(pool, ctx).await,
    }
}

/// Why the pool's runners could read its credentials, if they could. In
/// kubernetes mode the container hooks' Role lets every job read the
/// namespace's Secrets, so a credentials Secret there, or the connections
/// namespace itself, is refused (not merely warned about: the mode is opted
/// into, and a warning would leave an organization's admin token readable
/// by every job).
pub fn credentials_within_reach(pool: &RunnerPool, connections_namespace: &str) -> Option<Blocked> {
    let kubernetes = pool.container_mode() == ContainerMode::Kubernetes;
    let namespace = pool.namespace().unwrap_or_default();
    if kubernetes && namespace == connections_namespace {
        return Some(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "containerMode kubernetes cannot run in namespace {namespace:?}: it is the operator's connections namespace, which holds the credentials of every GitHubConnection, and the container hooks' Role lets every job read its Secrets. Move the pool to a namespace of its own"
            ),
        ));
    }
    let secret = pool.spec.github.credentials_secret.as_ref()?;
    if kubernetes {
        return Some(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "containerMode kubernetes cannot use spec.github.credentialsSecret {:?}: the container hooks' Role lets every job read the Secrets of namespace {:?}. Keep the credentials in a GitHubConnection (spec.github.connectionRef) and delete the Secret from this namespace; no runner is created until then",
                secret.name, namespace
            ),
        ));
    }
    let place = runner_credentials_exposure(pool)?;
    Some(Blocked::new(
        Problem::InvalidSpec,
        format!(
            "spec.template uses the credentials Secret {:?} ({place}); runner pods run untrusted jobs and must not see it: no runner is created until it is removed",
            secret.name
        ),
    ))
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

    if let Some(reference) = &pool.spec.runner_group_ref {
        let runner_group_id = referenced_group_id(pool, &reference.name, ctx).await?;
        return Ok(Target {
            api,
            scope,
            runner_group_id,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::credentials_within_reach;
    use crate::pod::build::tests::{POOL, pool_from_yaml};

    #[test]
    fn kubernetes_mode_keeps_no_credentials_within_its_jobs_reach() {
        let plain = pool_from_yaml(POOL);
        assert!(credentials_within_reach(&plain, "ops").is_none());
        let kube = |github: &str| {
            let yaml = POOL
                .replace("\nspec:\n", "\nspec:\n  containerMode: kubernetes\n  workVolumeClaimTemplate: { size: 1Gi }\n")
                .replace("credentialsSecret: { name: gh }", github);
            pool_from_yaml(&yaml)
        };
        let in_namespace =
            credentials_within_reach(&kube("credentialsSecret: { name: gh }"), "ops")
                .expect("a credentials Secret beside kubernetes-mode runners is refused");
        assert_eq!(in_namespace.problem.reason(), "InvalidSpec");
        assert!(
            in_namespace.message.contains("GitHubConnection"),
            "{}",
            in_namespace.message
        );
        let connected = kube("connectionRef: { name: acme }");
        assert!(credentials_within_reach(&connected, "ops").is_none());
        let ns = connected.metadata.namespace.clone().unwrap();
        let beside =
            credentials_within_reach(&connected, &ns).expect("not in the connections namespace");
        assert!(
            beside.message.contains("connections namespace"),
            "{}",
            beside.message
        );
    }
}
