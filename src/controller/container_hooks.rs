//! The ServiceAccount, Role and RoleBinding that the runners of a pool in
//! `kubernetes` container mode use to run their jobs' containers as pods.
//! Applied before the pool's runner pods are created (the API server refuses
//! a pod naming a ServiceAccount that does not exist); owned by the pool, so
//! the garbage collector removes them with it.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;

use super::reconcile::Unreachable;
use super::status::Problem;
use super::{Context, FIELD_MANAGER};
use crate::RunnerPool;
use crate::container_mode::{hooks_role, hooks_role_binding, hooks_service_account};

/// Applies the pool's hooks objects by server-side apply. A refusal (e.g. the
/// operator's own role lacks a right it would grant) is returned for status.
pub async fn ensure(pool: &RunnerPool, ctx: &Context) -> Result<(), Unreachable> {
    let namespace = pool.namespace().unwrap_or_default();
    let name = crate::container_mode::hooks_account_name(pool);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let refused = |what: &str, e: kube::Error| {
        Unreachable::new(
            Problem::PodRejected,
            format!(
                "cannot apply the {what} {name:?} the container hooks of containerMode kubernetes need: {e}"
            ),
        )
    };
    apply(
        &ctx.client,
        &namespace,
        &name,
        &params,
        &hooks_service_account(pool),
    )
    .await
    .map_err(|e| refused("ServiceAccount", e))?;
    apply(&ctx.client, &namespace, &name, &params, &hooks_role(pool))
        .await
        .map_err(|e| refused("Role", e))?;
    apply(
        &ctx.client,
        &namespace,
        &name,
        &params,
        &hooks_role_binding(pool),
    )
    .await
    .map_err(|e| refused("RoleBinding", e))?;
    Ok(())
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
