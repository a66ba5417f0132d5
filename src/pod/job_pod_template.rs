//! The job pod template of a pool in `kubernetes` container mode
//! (`spec.jobPodTemplate`): the file the runner's container hooks read,
//! through `ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE`, for every pod they
//! create for a job or a container step.
//!
//! The template is rendered into an immutable ConfigMap named after its
//! content, which each runner pod mounts (see [`super::container_mode`]) and
//! names in an annotation. A changed template is a new ConfigMap: new runners
//! get it, and a runner reads the one it was created with for its whole life,
//! so no job sees its pods' template change under it. Like the hooks' account
//! ([`super::hooks`], which applies and removes these ConfigMaps with it),
//! they are the pool's by label and carry no ownerReference: the garbage
//! collector never takes one from a runner that still runs. One that no
//! runner pod names any more is deleted by the operator.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use sha2::{Digest, Sha256};

use crate::RunnerPool;
use crate::crd::ContainerMode;
use crate::runner::{MANAGED_BY, MANAGED_BY_LABEL, POOL_UID_LABEL, RUNNER_CONTAINER, pool_labels};

/// The variable naming the hooks' template file.
pub const HOOK_TEMPLATE_ENV: &str = "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE";
/// The runner pod's volume holding the ConfigMap, and where it is mounted.
pub const JOB_POD_TEMPLATE_VOLUME: &str = "job-pod-template";
pub const JOB_POD_TEMPLATE_DIR: &str = "/home/runner/job-pod-template";
/// The ConfigMap's key, the file's name.
pub const JOB_POD_TEMPLATE_KEY: &str = "template.yaml";
/// On a runner pod: the name of the ConfigMap it mounts (the operator's cache
/// keeps no pod spec, so which ConfigMaps are in use is read from here).
pub const JOB_POD_TEMPLATE_ANNOTATION: &str = "actions.runnerpool.dev/job-pod-template";

/// The path of the file in the runner container.
pub fn template_path() -> String {
    format!("{JOB_POD_TEMPLATE_DIR}/{JOB_POD_TEMPLATE_KEY}")
}

/// The file the hooks read: the pool's job pod template as YAML. `None`
/// outside kubernetes mode or without a template.
pub fn rendered(pool: &RunnerPool) -> Option<String> {
    if pool.container_mode() != ContainerMode::Kubernetes {
        return None;
    }
    serde_yaml::to_string(pool.spec.job_pod_template.as_ref()?).ok()
}

/// The name of the ConfigMap holding the pool's template as it is now:
/// `<pool>-job-pod-<first 10 hex digits of the file's SHA-256>`.
pub fn config_map_name(pool: &RunnerPool) -> Option<String> {
    let file = rendered(pool)?;
    let digest = Sha256::digest(file.as_bytes());
    Some(format!(
        "{}-job-pod-{}",
        pool.name_any(),
        hex::encode(&digest[..5])
    ))
}

/// The immutable ConfigMap of the pool's template as it is now.
pub fn job_pod_template_config_map(pool: &RunnerPool) -> Option<ConfigMap> {
    let name = config_map_name(pool)?;
    let file = rendered(pool)?;
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: pool.namespace(),
            labels: Some(pool_labels(pool)),
            ..Default::default()
        },
        immutable: Some(true),
        data: Some(BTreeMap::from([(JOB_POD_TEMPLATE_KEY.to_string(), file)])),
        ..Default::default()
    })
}

/// The template ConfigMaps that pods mount, by the annotation in their
/// metadata.
pub fn in_use<'a>(pods: impl IntoIterator<Item = &'a ObjectMeta>) -> BTreeSet<String> {
    pods.into_iter()
        .filter_map(|p| {
            p.annotations
                .as_ref()?
                .get(JOB_POD_TEMPLATE_ANNOTATION)
                .cloned()
        })
        .collect()
}

/// Why the pool's job pod template would not reach its jobs, if it would
/// not: a `runner` container of `spec.template` naming a template file of
/// its own (which wins over the operator's variable). The API server cannot
/// check it (the rule costs too much over a pod template's lists).
pub fn hidden_by_the_template(pool: &RunnerPool) -> Option<String> {
    pool.spec.job_pod_template.as_ref()?;
    let spec = pool.spec.template.spec.as_ref()?;
    let runner = spec
        .containers
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)?;
    runner.env.iter().flatten().any(|e| e.name == HOOK_TEMPLATE_ENV).then(|| {
        format!(
            "spec.template's runner container sets {HOOK_TEMPLATE_ENV} itself, so the container hooks would never read spec.jobPodTemplate: remove one of them (the operator sets the variable for jobPodTemplate); no runner is created until then"
        )
    })
}

/// Deletes the pool's template ConfigMaps in `namespace` except those named
/// in `keep`; pass an empty `keep` once the pool's last runner is gone.
pub async fn delete_unused(
    client: &kube::Client,
    namespace: &str,
    pool_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{POOL_UID_LABEL}={pool_uid}");
    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    for name in listed.items.iter().map(|c| c.name_any()) {
        if keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Err(kube::Error::Api(status)) if status.code != 404 => {
                return Err(kube::Error::Api(status));
            }
            Err(e) if !matches!(e, kube::Error::Api(_)) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::build::tests::{POOL, pool_from_yaml};
    use k8s_openapi::api::core::v1::PodTemplateSpec;

    const KUBERNETES: &str =
        "\nspec:\n  containerMode: kubernetes\n  workVolumeClaimTemplate: { size: 1Gi }\n";

    pub(crate) const TEMPLATE: &str = r#"  jobPodTemplate:
    metadata: { labels: { team: builds } }
    spec:
      nodeSelector: { pool: jobs }
      tolerations: [{ key: dedicated, value: ci, effect: NoSchedule }]
      containers:
        - name: $job
          resources: { requests: { cpu: "2" }, limits: { memory: 4Gi } }
          volumeMounts: [{ name: cache, mountPath: /cache }]
      volumes: [{ name: cache, emptyDir: {} }]
"#;

    fn pool(extra: &str) -> RunnerPool {
        pool_from_yaml(&POOL.replace("\nspec:\n", &format!("{KUBERNETES}{extra}")))
    }

    #[test]
    fn the_file_is_the_template_the_hooks_parse_in_a_configmap_named_after_it() {
        let p = pool(TEMPLATE);
        let map = job_pod_template_config_map(&p).expect("a ConfigMap");
        assert_eq!(map.immutable, Some(true));
        assert_eq!(map.metadata.namespace.as_deref(), Some("builds"));
        assert!(map.metadata.owner_references.is_none());
        assert_eq!(
            map.metadata.labels.as_ref().unwrap()[POOL_UID_LABEL],
            p.metadata.uid.clone().unwrap()
        );
        let file = &map.data.as_ref().unwrap()[JOB_POD_TEMPLATE_KEY];
        // What the hooks load (a YAML PodTemplateSpec) is the pool's template.
        let parsed: PodTemplateSpec = serde_yaml::from_str(file).unwrap();
        assert_eq!(Some(&parsed), p.spec.job_pod_template.as_ref());
        let value: serde_yaml::Value = serde_yaml::from_str(file).unwrap();
        assert_eq!(
            value["spec"]["containers"][0]["name"].as_str(),
            Some("$job")
        );
        assert_eq!(value["spec"]["nodeSelector"]["pool"].as_str(), Some("jobs"));
        assert_eq!(value["metadata"]["labels"]["team"].as_str(), Some("builds"));

        let name = map.metadata.name.unwrap();
        assert!(name.starts_with("ci-job-pod-") && name.len() == "ci-job-pod-".len() + 10);
        // Another template, another ConfigMap; the same, the same.
        let changed = pool(&TEMPLATE.replace("cpu: \"2\"", "cpu: \"3\""));
        assert_ne!(config_map_name(&changed), Some(name.clone()));
        assert_eq!(config_map_name(&pool(TEMPLATE)), Some(name));
    }

    #[test]
    fn no_template_or_another_mode_makes_no_configmap() {
        assert!(job_pod_template_config_map(&pool("")).is_none());
        let dind = pool_from_yaml(&POOL.replace(
            "\nspec:\n",
            &format!("\nspec:\n  containerMode: dind\n{TEMPLATE}"),
        ));
        assert!(job_pod_template_config_map(&dind).is_none());
    }

    #[test]
    fn a_template_file_of_the_runner_container_hides_the_job_pod_template() {
        assert!(hidden_by_the_template(&pool(TEMPLATE)).is_none());
        let keep = "{ name: KEEP, value: \"1\" }";
        let own = POOL.replace(
            keep,
            &format!("{keep}, {{ name: {HOOK_TEMPLATE_ENV}, value: /mine.yaml }}"),
        );
        assert_ne!(own, POOL, "the fixture's runner container");
        let both = pool_from_yaml(&own.replace("\nspec:\n", &format!("{KUBERNETES}{TEMPLATE}")));
        let message = hidden_by_the_template(&both).expect("refused");
        assert!(message.contains(HOOK_TEMPLATE_ENV), "{message}");
        // Without a jobPodTemplate, a file of one's own is fine.
        let alone = pool_from_yaml(&own.replace("\nspec:\n", KUBERNETES));
        assert!(hidden_by_the_template(&alone).is_none());
    }
}
