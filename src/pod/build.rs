//! The Kubernetes objects of one runner: the immutable Secret holding its
//! JIT configuration and the pod that reads it, built from the pool's
//! template (expanded for its container mode by [`super::container_mode`]).
//! Pure: no client, unit-tested.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Pod, PodSpec, Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::container_mode;
use super::job_pod_template::{self, JOB_POD_TEMPLATE_ANNOTATION};
use crate::RunnerPool;
use crate::github::JitConfig;
use crate::runner::{
    DEFAULT_RUNNER_COMMAND, JIT_CONFIG_ENV, JIT_CONFIG_KEY, LABELS_HASH_ANNOTATION,
    RUNNER_CONTAINER, runner_labels,
};

/// The Secret that holds one runner's JIT configuration, immutable (a config
/// is used once). It is created before its pod (the pod reads it at start)
/// and then given an ownerReference to the pod ([`secret_owner_patch`]), so it
/// goes with the pod and never before it.
pub fn runner_secret(pool: &RunnerPool, jit: &JitConfig) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(jit.runner.name.clone()),
            namespace: pool.namespace(),
            labels: Some(runner_labels(pool, jit.runner.id)),
            ..Default::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            JIT_CONFIG_KEY.to_string(),
            ByteString(jit.encoded_jit_config.clone().into_bytes()),
        )])),
        ..Default::default()
    }
}

/// The merge patch that makes a runner's Secret a dependent of its pod.
pub fn secret_owner_patch(pod: &Pod) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
                "controller": true,
            }]
        }
    })
}

/// The pod of one runner, from the pool's template. The `runner` container gets
/// the JIT configuration from the runner's Secret, never as a literal. It has
/// no ownerReference: nothing but the operator, which asks GitHub first, may
/// delete a runner's pod (see [`crate::runner::POOL_UID_LABEL`]).
pub fn runner_pod(pool: &RunnerPool, runner_name: &str, runner_id: u64, labels_hash: &str) -> Pod {
    let template = &pool.spec.template;
    let template_meta = template.metadata.clone().unwrap_or_default();

    let mut labels = template_meta.labels.unwrap_or_default();
    labels.extend(runner_labels(pool, runner_id));
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(LABELS_HASH_ANNOTATION.to_string(), labels_hash.to_string());
    if let Some(template) = job_pod_template::config_map_name(pool) {
        annotations.insert(JOB_POD_TEMPLATE_ANNOTATION.to_string(), template);
    }

    let mut spec: PodSpec = template.spec.clone().unwrap_or_default();
    // One job, then the pod is done: a restarted container would reuse the config.
    spec.restart_policy = Some("Never".to_string());
    // A job needs no Kubernetes API credentials unless the template asks for them.
    spec.automount_service_account_token.get_or_insert(false);
    container_mode::expand(pool, &mut spec);
    for container in spec
        .containers
        .iter_mut()
        .filter(|c| c.name == RUNNER_CONTAINER)
    {
        let env = container.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != JIT_CONFIG_ENV);
        env.push(EnvVar {
            name: JIT_CONFIG_ENV.to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: runner_name.to_string(),
                    key: JIT_CONFIG_KEY.to_string(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
        if container.command.as_ref().is_none_or(|c| c.is_empty()) && container.args.is_none() {
            container.command = Some(vec![DEFAULT_RUNNER_COMMAND.to_string()]);
        }
    }

    Pod {
        metadata: ObjectMeta {
            name: Some(runner_name.to_string()),
            namespace: pool.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Where the pool's template uses the credentials Secret (a volume, a
/// projected volume source, an env `valueFrom` or an `envFrom`), if it does.
/// Runner pods run whatever a workflow says: the credential that registers
/// runners must stay out of their reach.
pub fn credentials_exposure(pool: &RunnerPool) -> Option<String> {
    let secret = pool.spec.github.credentials_secret.as_ref()?.name.as_str();
    let spec = pool.spec.template.spec.as_ref()?;
    for volume in spec.volumes.iter().flatten() {
        let direct = volume
            .secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(secret));
        let projected = volume.projected.as_ref().is_some_and(|p| {
            p.sources
                .iter()
                .flatten()
                .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
        });
        if direct || projected {
            return Some(format!("volume {:?}", volume.name));
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for container in containers {
        let in_env = container.env.iter().flatten().find(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == secret)
        });
        if let Some(env) = in_env {
            return Some(format!(
                "env {:?} of container {:?}",
                env.name, container.name
            ));
        }
        let in_env_from = container
            .env_from
            .iter()
            .flatten()
            .any(|f| f.secret_ref.as_ref().is_some_and(|r| r.name == secret));
        if in_env_from {
            return Some(format!("envFrom of container {:?}", container.name));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::github::{Runner, RunnerStatus};
    use crate::runner::{POOL_LABEL, RUNNER_ID_LABEL, pool_uid_of, runner_id_of};

    pub(crate) fn pool_from_yaml(yaml: &str) -> RunnerPool {
        let mut pool: RunnerPool = serde_yaml::from_str(yaml).expect("fixture parses");
        pool.metadata.uid = Some("0b0e6f7e-1111-2222-3333-444455556666".to_string());
        pool
    }

    pub(crate) const POOL: &str = r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerPool
metadata: { name: ci, namespace: builds }
spec:
  github: { organization: acme, credentialsSecret: { name: gh } }
  labels: [self-hosted, linux, gpu, big]
  replicas: 2
  template:
    metadata: { labels: { team: infra }, annotations: { note: kept } }
    spec:
      restartPolicy: Always
      containers:
        - name: runner
          image: ghcr.io/actions/actions-runner:latest
          env: [{ name: ACTIONS_RUNNER_INPUT_JITCONFIG, value: "literal-must-go" }, { name: KEEP, value: "1" }]
        - name: sidecar
          image: busybox
"#;

    fn jit(name: &str, id: u64) -> JitConfig {
        JitConfig {
            runner: Runner {
                id,
                name: name.to_string(),
                os: "unknown".to_string(),
                status: RunnerStatus::Offline,
                busy: false,
                ephemeral: true,
                runner_group_id: Some(1),
                labels: vec![],
            },
            encoded_jit_config: "c2VjcmV0LWNvbmZpZw==".to_string(),
        }
    }

    #[test]
    fn pod_gets_jit_config_from_its_secret_never_as_literal() {
        let pool = pool_from_yaml(POOL);
        let pod = runner_pod(&pool, "ci-abcde", 42, "h");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let runner = spec.containers.iter().find(|c| c.name == "runner").unwrap();
        let env = runner.env.as_ref().unwrap();
        let jit: Vec<_> = env.iter().filter(|e| e.name == JIT_CONFIG_ENV).collect();
        assert_eq!(jit.len(), 1, "exactly one JIT variable");
        assert!(jit[0].value.is_none(), "no literal value");
        let secret_ref = jit[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(secret_ref.name, "ci-abcde");
        assert_eq!(secret_ref.key, JIT_CONFIG_KEY);
        assert!(env.iter().any(|e| e.name == "KEEP"));
        assert_eq!(
            runner.command.as_deref(),
            Some(&[DEFAULT_RUNNER_COMMAND.to_string()][..])
        );
        let sidecar = spec
            .containers
            .iter()
            .find(|c| c.name == "sidecar")
            .unwrap();
        assert!(
            sidecar.env.is_none(),
            "other containers never see the config"
        );
        let serialized = serde_json::to_string(&pod).unwrap();
        assert!(!serialized.contains("literal-must-go"));
        assert!(!serialized.contains("c2VjcmV0LWNvbmZpZw=="));
    }

    #[test]
    fn pod_and_secret_are_marked_by_label_and_not_owned_by_the_pool() {
        let pool = pool_from_yaml(POOL);
        let pod = runner_pod(&pool, "ci-abcde", 42, "hash1");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get(POOL_LABEL).map(String::as_str), Some("ci"));
        assert_eq!(labels.get(RUNNER_ID_LABEL).map(String::as_str), Some("42"));
        assert_eq!(labels.get("team").map(String::as_str), Some("infra"));
        let annotations = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
        assert_eq!(
            annotations.get(LABELS_HASH_ANNOTATION).map(String::as_str),
            Some("hash1")
        );
        assert_eq!(pod.metadata.namespace.as_deref(), Some("builds"));
        assert!(
            pod.metadata.owner_references.is_none(),
            "the garbage collector must never reach a runner pod through its pool"
        );
        assert_eq!(pool_uid_of(&pod), pool.metadata.uid.as_deref());
        assert_eq!(runner_id_of(&pod), Some(42));

        let secret = runner_secret(&pool, &jit("ci-abcde", 42));
        assert_eq!(secret.metadata.name.as_deref(), Some("ci-abcde"));
        assert_eq!(secret.immutable, Some(true));
        assert_eq!(runner_id_of(&secret), Some(42));
        assert_eq!(
            secret.data.as_ref().unwrap()[JIT_CONFIG_KEY].0,
            b"c2VjcmV0LWNvbmZpZw==".to_vec()
        );
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(pool_uid_of(&secret), pool.metadata.uid.as_deref());

        let mut created = pod.clone();
        created.metadata.uid = Some("pod-uid".into());
        let patch = secret_owner_patch(&created);
        let owner = &patch["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Pod");
        assert_eq!(owner["name"], "ci-abcde");
        assert_eq!(owner["uid"], "pod-uid");
    }

    #[test]
    fn service_account_token_is_not_mounted_unless_the_template_asks() {
        let pod = runner_pod(&pool_from_yaml(POOL), "ci-abcde", 1, "h");
        assert_eq!(
            pod.spec.unwrap().automount_service_account_token,
            Some(false)
        );
        let yaml = POOL.replace(
            "      restartPolicy: Always",
            "      restartPolicy: Always\n      automountServiceAccountToken: true",
        );
        let pod = runner_pod(&pool_from_yaml(&yaml), "ci-abcde", 1, "h");
        assert_eq!(
            pod.spec.unwrap().automount_service_account_token,
            Some(true)
        );
    }

    #[test]
    fn templates_using_the_credentials_secret_are_found() {
        assert_eq!(credentials_exposure(&pool_from_yaml(POOL)), None);
        let with = |extra: &str| {
            credentials_exposure(&pool_from_yaml(&POOL.replace(
                "      restartPolicy: Always",
                &format!("      restartPolicy: Always\n{extra}"),
            )))
        };
        let cases = [
            (
                "      volumes: [{ name: creds, secret: { secretName: gh } }]",
                "volume \"creds\"",
            ),
            (
                "      volumes: [{ name: p, projected: { sources: [{ configMap: { name: x } }, { secret: { name: gh } }] } }]",
                "volume \"p\"",
            ),
            (
                "      initContainers: [{ name: init, image: x, env: [{ name: T, valueFrom: { secretKeyRef: { name: gh, key: token } } }] }]",
                "env \"T\" of container \"init\"",
            ),
            (
                "      initContainers: [{ name: init, image: x, envFrom: [{ secretRef: { name: gh } }] }]",
                "envFrom of container \"init\"",
            ),
        ];
        for (extra, found) in cases {
            assert_eq!(with(extra).as_deref(), Some(found), "{extra}");
        }
        // Other Secrets are the template's business.
        assert_eq!(
            with("      volumes: [{ name: certs, secret: { secretName: ca } }]"),
            None
        );
        let env_in_runner = POOL.replace(
            "{ name: KEEP, value: \"1\" }",
            "{ name: KEEP, value: \"1\" }, { name: GH, valueFrom: { secretKeyRef: { name: gh, key: token } } }",
        );
        assert_eq!(
            credentials_exposure(&pool_from_yaml(&env_in_runner)).as_deref(),
            Some("env \"GH\" of container \"runner\"")
        );
    }

    #[test]
    fn runner_command_is_kept_when_the_template_sets_one() {
        let yaml = POOL.replace(
            "image: ghcr.io/actions/actions-runner:latest",
            "image: x\n          command: [/bin/sh, -c, run]",
        );
        let pod = runner_pod(&pool_from_yaml(&yaml), "ci-abcde", 1, "h");
        let runner = &pod.spec.unwrap().containers[0];
        assert_eq!(runner.command.as_ref().unwrap()[0], "/bin/sh");
    }
}
