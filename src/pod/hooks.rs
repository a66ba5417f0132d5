//! The ServiceAccount, Role and RoleBinding that the runners of a pool in
//! `kubernetes` container mode use to run their jobs' containers as pods:
//! built here (pure), and applied before the pool's runner pods are created
//! (the API server refuses a pod naming a ServiceAccount that does not
//! exist), and again now and then, so that an object deleted or edited by
//! hand is put back. They carry no ownerReference to the pool: a pool
//! released while runners still run (GitHub unreachable for the cleanup
//! timeout) must not have the garbage collector take the account from under
//! them. The operator removes them once the pool's last runner is gone.
//! The ConfigMaps of the pool's job pod template
//! ([`super::job_pod_template`]) are applied and removed with them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde::Serialize;
use tracing::warn;

use super::job_pod_template::{delete_unused, job_pod_template_config_map};
use crate::RunnerPool;
use crate::kit::FIELD_MANAGER;
use crate::kit::problem::{Blocked, Problem};
use crate::runner::pool_labels;

/// The name of the ServiceAccount, Role and RoleBinding of a pool in
/// `kubernetes` mode.
pub fn hooks_account_name(pool: &RunnerPool) -> String {
    hooks_name(&pool.name_any())
}

/// The hooks objects' name for the pool named `pool_name`.
pub fn hooks_name(pool_name: &str) -> String {
    format!("{pool_name}-container-hooks")
}

/// What the runner's Kubernetes hooks do in the pool's namespace: run job
/// and service containers as pods (and container steps as Jobs), exec into
/// them and read their logs, and pass them their environment in Secrets.
pub fn hooks_rules() -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    vec![
        rule("", "pods", &["get", "list", "create", "delete"]),
        rule("", "pods/exec", &["get", "create"]),
        rule("", "pods/log", &["get", "list", "watch"]),
        rule("batch", "jobs", &["get", "list", "create", "delete"]),
        rule("", "secrets", &["get", "list", "create", "delete"]),
    ]
}

/// Metadata of the pool's hooks objects: in its namespace, marked as the
/// pool's by labels (no ownerReference, see above).
fn hooks_meta(pool: &RunnerPool) -> ObjectMeta {
    ObjectMeta {
        name: Some(hooks_account_name(pool)),
        namespace: pool.namespace(),
        labels: Some(pool_labels(pool)),
        ..Default::default()
    }
}

pub fn hooks_service_account(pool: &RunnerPool) -> ServiceAccount {
    ServiceAccount {
        metadata: hooks_meta(pool),
        ..Default::default()
    }
}

pub fn hooks_role(pool: &RunnerPool) -> Role {
    Role {
        metadata: hooks_meta(pool),
        rules: Some(hooks_rules()),
    }
}

pub fn hooks_role_binding(pool: &RunnerPool) -> RoleBinding {
    RoleBinding {
        metadata: hooks_meta(pool),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: hooks_account_name(pool),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: hooks_account_name(pool),
            namespace: pool.namespace(),
            api_group: None,
        }]),
    }
}

/// The chart value that grants the operator what it needs to set up
/// `kubernetes` mode.
pub const KUBERNETES_MODE_CHART_VALUE: &str = "containerModes.kubernetes.enabled=true";

/// Applies the pool's hooks objects by server-side apply, and the ConfigMap
/// of its job pod template as it is now (see [`super::job_pod_template`]). A
/// refusal is returned for status: 403 (the operator's own role lacks a
/// right it would grant, or may not write these objects at all) as
/// [`Problem::ContainerModeNotPermitted`] naming the chart value that grants
/// them, anything else as [`Problem::PodRejected`] with the API server's message.
pub async fn ensure(pool: &RunnerPool, client: &kube::Client) -> Result<(), Blocked> {
    let namespace = pool.namespace().unwrap_or_default();
    let name = hooks_account_name(pool);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let refused = |what: &str, e: kube::Error| refusal(pool, what, &name, e);
    apply(
        client,
        &namespace,
        &name,
        &params,
        &hooks_service_account(pool),
    )
    .await
    .map_err(|e| refused("ServiceAccount", e))?;
    apply(client, &namespace, &name, &params, &hooks_role(pool))
        .await
        .map_err(|e| refused("Role", e))?;
    apply(
        client,
        &namespace,
        &name,
        &params,
        &hooks_role_binding(pool),
    )
    .await
    .map_err(|e| refused("RoleBinding", e))?;
    if let Some(template) = job_pod_template_config_map(pool) {
        let name = template.name_any();
        apply(client, &namespace, &name, &params, &template)
            .await
            .map_err(|e| refusal(pool, "ConfigMap", &name, e))?;
    }
    Ok(())
}

/// Removes the hooks objects and job pod template ConfigMaps of pool
/// `pool_name` (UID `pool_uid`) in `namespace` (once its last runner is
/// gone); those already gone are fine.
pub async fn remove(
    client: &kube::Client,
    namespace: &str,
    pool_name: &str,
    pool_uid: &str,
) -> Result<(), kube::Error> {
    let name = hooks_name(pool_name);
    let params = DeleteParams::background();
    let gone_ok = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    };
    // An operator that may not list ConfigMaps (a chart older than job pod
    // templates) made none: that is no reason to hold the pool's deletion.
    match delete_unused(client, namespace, pool_uid, &BTreeSet::new()).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            warn!(%namespace, pool = pool_name, refusal = %status.message, "cannot list the pool's job pod template ConfigMaps");
        }
        other => other?,
    }
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    gone_ok(bindings.delete(&name, &params).await.map(|_| ()))?;
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    gone_ok(roles.delete(&name, &params).await.map(|_| ()))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    gone_ok(accounts.delete(&name, &params).await.map(|_| ()))
}

/// How a refused apply of the hooks object `what` named `name` shows in the
/// pool's status.
fn refusal(pool: &RunnerPool, what: &str, name: &str, error: kube::Error) -> Blocked {
    match error {
        kube::Error::Api(status) if status.code == 403 => {
            // The API server's message lists every rule missing: too long
            // for a condition, useful in the log.
            warn!(pool = %pool.name_any(), refusal = %status.message, "{what} {name:?} refused");
            Blocked::new(
                Problem::ContainerModeNotPermitted,
                format!(
                    "the operator may not set up containerMode kubernetes in namespace {:?}: \
                     the API server refused it the {what} {name:?} (403 Forbidden). Set \
                     {KUBERNETES_MODE_CHART_VALUE} in the operator's Helm chart: it grants the \
                     operator the rights this mode needs, those of the container hooks' Role among them",
                    pool.namespace().unwrap_or_default()
                ),
            )
        }
        e => Blocked::new(
            Problem::PodRejected,
            format!(
                "cannot apply the {what} {name:?} the container hooks of containerMode kubernetes need: {e}"
            ),
        ),
    }
}

async fn apply<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    params: &PatchParams,
    object: &K,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut value = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
    // Server-side apply needs the kind and version in the body.
    let dt = K::DynamicType::default();
    value["apiVersion"] = K::api_version(&dt).into();
    value["kind"] = K::kind(&dt).into();
    api.patch(name, params, &Patch::Apply(&value)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::build::tests::{POOL, pool_from_yaml};
    use kube::core::Status;

    #[test]
    fn a_forbidden_hooks_object_names_the_chart_value_and_nothing_else_does() {
        let pool = pool_from_yaml(POOL);
        let api = |code| {
            kube::Error::Api(Box::new(
                Status::failure("roles.rbac.authorization.k8s.io is forbidden", "Forbidden")
                    .with_code(code),
            ))
        };
        let forbidden = refusal(&pool, "Role", "ci-container-hooks", api(403));
        assert_eq!(forbidden.problem, Problem::ContainerModeNotPermitted);
        assert!(forbidden.problem.needs_a_person());
        assert!(
            forbidden.message.contains("Role \"ci-container-hooks\"")
                && forbidden.message.contains(KUBERNETES_MODE_CHART_VALUE)
                && !forbidden.message.contains("is forbidden"),
            "{}",
            forbidden.message
        );
        let invalid = refusal(&pool, "Role", "ci-container-hooks", api(422));
        assert_eq!(invalid.problem, Problem::PodRejected);
        assert!(
            invalid.message.contains("is forbidden"),
            "{}",
            invalid.message
        );
    }
}
