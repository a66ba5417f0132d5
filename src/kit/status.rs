//! Status written through server-side apply with the operator's one field
//! manager, from a typed struct (never hand-built JSON).

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FIELD_MANAGER;
use super::error::Error;

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a, S> {
    api_version: String,
    kind: String,
    status: &'a S,
}

/// Applies `status` as the status of `object`, only when it differs from
/// `shown`, what the object shows now: a pass that changes nothing writes
/// nothing.
pub async fn apply_status<K, S>(
    client: &kube::Client,
    object: &K,
    shown: Option<&S>,
    status: &S,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq + std::fmt::Debug,
{
    if shown == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = StatusPatch {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        status,
    };
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
