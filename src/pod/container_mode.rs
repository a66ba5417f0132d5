//! How `spec.containerMode` expands a runner pod around the template's
//! `runner` container: the Docker-in-Docker sidecar, the shared work volume
//! and the environment each mode needs, and which modes get the restricted
//! security defaults of [`super::security`]. Pure functions over a `PodSpec`,
//! called by [`super::build::runner_pod`]; what the template already sets
//! under the same names wins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    EphemeralVolumeSource, ExecAction, ObjectFieldSelector, PersistentVolumeClaimSpec,
    PersistentVolumeClaimTemplate, PersistentVolumeClaimVolumeSource, PodSpec, Probe,
    SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::hooks::hooks_account_name;
use super::job_pod_template::{
    self, HOOK_TEMPLATE_ENV, JOB_POD_TEMPLATE_DIR, JOB_POD_TEMPLATE_VOLUME,
};
use super::security::{self, DOCKER_GID};
use crate::RunnerPool;
use crate::crd::{ContainerMode, VolumeClaimSpec};
use crate::runner::{MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, RUNNER_CONTAINER};

/// The runner's home in the official runner image; a relative
/// `spec.workFolder` is relative to it.
pub const RUNNER_HOME: &str = "/home/runner";
/// The volume holding the runner's work directory.
pub const WORK_VOLUME: &str = "work";
/// The Docker-in-Docker sidecar.
pub const DIND_CONTAINER: &str = "dind";
/// Its image: a released Docker Engine, pinned so that a pod does not run
/// whatever `docker:dind` moved to since the last one. A template init
/// container named `dind` with an `image` replaces it.
pub const DIND_IMAGE: &str = "docker:29.9.0-dind";
/// Where the daemon's socket lives, on a volume shared with the runner.
pub const DIND_SOCKET_DIR: &str = "/var/run/dind";
pub const DIND_SOCKET_VOLUME: &str = "dind-sock";
pub const DIND_HOST: &str = "unix:///var/run/dind/docker.sock";
/// The daemon's storage: on an emptyDir, because overlayfs does not stack on
/// the container's own overlay root (dockerd would fall back to slow vfs).
pub const DIND_STORAGE_VOLUME: &str = "dind-storage";
/// The runner's `externals` (node for JavaScript actions), copied to a
/// volume the daemon mounts at the same path, so `container:` jobs find them.
pub const DIND_EXTERNALS_VOLUME: &str = "dind-externals";
pub const DIND_EXTERNALS_INIT: &str = "init-dind-externals";
/// The Kubernetes container hooks of the official runner image.
pub const CONTAINER_HOOKS_PATH: &str = "/home/runner/k8s/index.js";

/// The runner's work directory: `spec.workFolder` under the runner's home
/// unless it is absolute.
pub fn work_dir(pool: &RunnerPool) -> String {
    let folder = pool.work_folder();
    if folder.starts_with('/') {
        folder.to_string()
    } else {
        format!("{RUNNER_HOME}/{}", folder.trim_end_matches('/'))
    }
}

/// Expands `spec` for the pool's container mode, work and cache volumes,
/// and fills in the restricted Pod Security settings where the mode allows
/// them (not dind: its daemon is privileged).
pub fn expand(pool: &RunnerPool, spec: &mut PodSpec) {
    add_cache_volumes(pool, spec);
    let work = work_volume(pool);
    match pool.container_mode() {
        ContainerMode::None => {
            if pool.spec.work_volume_claim_template.is_some() {
                add_volume(spec, WORK_VOLUME, work);
                if let Some(runner) = runner_container(spec) {
                    add_mount(runner, WORK_VOLUME, &work_dir(pool));
                }
            }
            security::restrict(spec);
        }
        ContainerMode::Dind => expand_dind(pool, spec, work),
        ContainerMode::Kubernetes => {
            expand_kubernetes(pool, spec, work);
            security::restrict(spec);
        }
    }
}

/// Mounts `spec.cacheVolumes` into the runner container.
fn add_cache_volumes(pool: &RunnerPool, spec: &mut PodSpec) {
    for cache in &pool.spec.cache_volumes {
        let volume = match (
            &cache.source.persistent_volume_claim,
            &cache.source.ephemeral,
        ) {
            (Some(claim), _) => Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.claim_name.clone(),
                    read_only: cache.read_only,
                }),
                ..Default::default()
            },
            (None, Some(claim)) => ephemeral_volume(pool, claim),
            // Refused by the CRD's rules; nothing to mount.
            (None, None) => continue,
        };
        add_volume(spec, &cache.name, volume);
        if let Some(runner) = runner_container(spec) {
            let mounts = runner.volume_mounts.get_or_insert_with(Vec::new);
            if mounts.iter().all(|m| m.mount_path != cache.mount_path) {
                mounts.push(VolumeMount {
                    name: cache.name.clone(),
                    mount_path: cache.mount_path.clone(),
                    read_only: cache.read_only,
                    ..Default::default()
                });
            }
        }
    }
}

fn runner_container(spec: &mut PodSpec) -> Option<&mut Container> {
    spec.containers
        .iter_mut()
        .find(|c| c.name == RUNNER_CONTAINER)
}

/// The work volume: a claim per runner when the pool asks for one, else an emptyDir.
fn work_volume(pool: &RunnerPool) -> Volume {
    match &pool.spec.work_volume_claim_template {
        Some(claim) => ephemeral_volume(pool, claim),
        None => empty_dir(),
    }
}

/// An ephemeral volume: a claim made with the pod and deleted with it.
pub(crate) fn ephemeral_volume(pool: &RunnerPool, claim: &VolumeClaimSpec) -> Volume {
    let access_modes = claim
        .access_modes
        .clone()
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_string()]);
    Volume {
        ephemeral: Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([
                        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                        (POOL_LABEL.to_string(), pool.name_any()),
                    ])),
                    ..Default::default()
                }),
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(access_modes),
                    storage_class_name: claim.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(claim.size.clone()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }),
        }),
        ..Default::default()
    }
}

/// Jobs' containers run as pods of their own, made by the runner's
/// Kubernetes hooks with the pool's ServiceAccount; they share the runner's
/// work directory through its claim (`<pod>-work`, the name the hooks look for).
fn expand_kubernetes(pool: &RunnerPool, spec: &mut PodSpec, work: Volume) {
    add_volume(spec, WORK_VOLUME, work);
    if spec.service_account_name.is_none() {
        spec.service_account_name = Some(hooks_account_name(pool));
    }
    // The hooks call the API server: the token is needed in this mode only.
    // `runner_pod` defaulted it to false; only an explicit template setting wins.
    let template_token = pool
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token);
    spec.automount_service_account_token = Some(template_token.unwrap_or(true));
    let work_dir = work_dir(pool);
    if let Some(runner) = runner_container(spec) {
        add_env(
            runner,
            "ACTIONS_RUNNER_CONTAINER_HOOKS",
            CONTAINER_HOOKS_PATH,
        );
        add_env(runner, "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "true");
        let vars = runner.env.get_or_insert_with(Vec::new);
        if vars.iter().all(|e| e.name != "ACTIONS_RUNNER_POD_NAME") {
            vars.push(EnvVar {
                name: "ACTIONS_RUNNER_POD_NAME".to_string(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_string(),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
            });
        }
        add_mount(runner, WORK_VOLUME, &work_dir);
    }
    add_job_pod_template(pool, spec);
}

/// The pool's job pod template, from its ConfigMap as it is now, as the
/// file the hooks read.
fn add_job_pod_template(pool: &RunnerPool, spec: &mut PodSpec) {
    let Some(name) = job_pod_template::config_map_name(pool) else {
        return;
    };
    let source = ConfigMapVolumeSource {
        name,
        ..Default::default()
    };
    let volume = Volume {
        config_map: Some(source),
        ..Default::default()
    };
    add_volume(spec, JOB_POD_TEMPLATE_VOLUME, volume);
    if let Some(runner) = runner_container(spec) {
        add_env(
            runner,
            HOOK_TEMPLATE_ENV,
            &job_pod_template::template_path(),
        );
        add_mount(runner, JOB_POD_TEMPLATE_VOLUME, JOB_POD_TEMPLATE_DIR);
    }
}

fn expand_dind(pool: &RunnerPool, spec: &mut PodSpec, work: Volume) {
    let work_dir = work_dir(pool);
    let runner_image = spec
        .containers
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)
        .and_then(|c| c.image.clone());

    for (name, source) in [
        (WORK_VOLUME, work),
        (DIND_SOCKET_VOLUME, empty_dir()),
        (DIND_STORAGE_VOLUME, empty_dir()),
        (DIND_EXTERNALS_VOLUME, empty_dir()),
    ] {
        add_volume(spec, name, source);
    }

    if let Some(runner) = spec
        .containers
        .iter_mut()
        .find(|c| c.name == RUNNER_CONTAINER)
    {
        add_env(runner, "DOCKER_HOST", DIND_HOST);
        add_mount(runner, WORK_VOLUME, &work_dir);
        add_mount(runner, DIND_SOCKET_VOLUME, DIND_SOCKET_DIR);
    }

    // A template that runs its own `dind` as a regular container keeps it:
    // two containers of one name would be refused.
    if spec.containers.iter().any(|c| c.name == DIND_CONTAINER) {
        return;
    }
    let mut sidecars = Vec::new();
    if let Some(image) = runner_image {
        let externals = format!("{RUNNER_HOME}/externals");
        sidecars.push(Container {
            name: DIND_EXTERNALS_INIT.to_string(),
            image: Some(image),
            command: Some(vec![
                "cp".into(),
                "-a".into(),
                format!("{externals}/."),
                "/mnt/externals/".into(),
            ]),
            volume_mounts: Some(vec![mount(DIND_EXTERNALS_VOLUME, "/mnt/externals")]),
            ..Default::default()
        });
    }
    sidecars.push(dind_sidecar(&work_dir));

    let init = spec.init_containers.get_or_insert_with(Vec::new);
    // The template's own settings for these containers win: each of its
    // fields replaces the one built here, and it keeps its place.
    let mut prepend = Vec::new();
    for built in sidecars {
        match init.iter_mut().find(|c| c.name == built.name) {
            Some(theirs) => *theirs = overlay(&built, theirs),
            None => prepend.push(built),
        }
    }
    init.splice(0..0, prepend);
}

/// The Docker daemon as a native sidecar: started before the runner and
/// ready once `docker info` answers, stopped when the runner's container ends.
fn dind_sidecar(work_dir: &str) -> Container {
    Container {
        name: DIND_CONTAINER.to_string(),
        image: Some(DIND_IMAGE.to_string()),
        restart_policy: Some("Always".to_string()),
        args: Some(vec![
            "dockerd".into(),
            format!("--host={DIND_HOST}"),
            "--group=$(DOCKER_GROUP_GID)".into(),
        ]),
        env: Some(vec![
            // The official runner image's `docker` group, owner of the socket.
            env("DOCKER_GROUP_GID", &DOCKER_GID.to_string()),
            // The socket is the only endpoint: no TCP listener, no certificates.
            env("DOCKER_TLS_CERTDIR", ""),
        ]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        startup_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "docker".into(),
                    format!("--host={DIND_HOST}"),
                    "info".into(),
                ]),
            }),
            period_seconds: Some(1),
            timeout_seconds: Some(5),
            failure_threshold: Some(120),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(WORK_VOLUME, work_dir),
            mount(DIND_SOCKET_VOLUME, DIND_SOCKET_DIR),
            mount(DIND_STORAGE_VOLUME, "/var/lib/docker"),
            mount(DIND_EXTERNALS_VOLUME, &format!("{RUNNER_HOME}/externals")),
        ]),
        ..Default::default()
    }
}

/// `built` with every field `theirs` sets replaced by theirs (objects
/// merged field by field, lists and values replaced whole).
fn overlay(built: &Container, theirs: &Container) -> Container {
    fn merge(base: &mut serde_json::Value, top: serde_json::Value) {
        match (base, top) {
            (serde_json::Value::Object(base), serde_json::Value::Object(top)) => {
                for (key, value) in top {
                    match base.get_mut(&key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (slot, top) => *slot = top,
        }
    }
    let (Ok(mut base), Ok(top)) = (serde_json::to_value(built), serde_json::to_value(theirs))
    else {
        return theirs.clone();
    };
    merge(&mut base, top);
    serde_json::from_value(base).unwrap_or_else(|_| theirs.clone())
}

fn empty_dir() -> Volume {
    Volume {
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// Adds volume `name` unless the template has one of that name.
pub(crate) fn add_volume(spec: &mut PodSpec, name: &str, mut volume: Volume) {
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if volumes.iter().all(|v| v.name != name) {
        volume.name = name.to_string();
        volumes.push(volume);
    }
}

/// Sets variable `name` unless the container sets it already.
pub(crate) fn add_env(container: &mut Container, name: &str, value: &str) {
    let vars = container.env.get_or_insert_with(Vec::new);
    if vars.iter().all(|e| e.name != name) {
        vars.push(env(name, value));
    }
}

/// Mounts volume `name` at `path` unless the container mounts that volume
/// or something at that path already.
pub(crate) fn add_mount(container: &mut Container, name: &str, path: &str) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if mounts
        .iter()
        .all(|m| m.name != name && m.mount_path != path)
    {
        mounts.push(mount(name, path));
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::build::runner_pod;
    use crate::pod::hooks::{hooks_role, hooks_role_binding, hooks_service_account};
    use crate::pod::job_pod_template::JOB_POD_TEMPLATE_ANNOTATION;
    use crate::pod::security::is_privileged;

    fn pool(mode: &str, template_spec: &str) -> RunnerPool {
        let yaml = format!(
            r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerPool
metadata: {{ name: ci, namespace: builds, uid: u-1 }}
spec:
  github: {{ organization: acme, credentialsSecret: {{ name: gh }} }}
  labels: [linux]
  {mode}
  template:
    spec:
{template_spec}
"#
        );
        serde_yaml::from_str(&yaml).expect("fixture parses")
    }

    const RUNNER_ONLY: &str =
        "      containers: [{ name: runner, image: ghcr.io/actions/actions-runner:2.330.0 }]";

    fn spec_of(pool: &RunnerPool) -> PodSpec {
        runner_pod(pool, "ci-abc", 1, "h").spec.expect("spec")
    }

    fn container<'a>(list: &'a [Container], name: &str) -> &'a Container {
        list.iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("container {name}"))
    }

    fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    fn volume<'a>(spec: &'a PodSpec, name: &str) -> &'a Volume {
        spec.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    }

    fn mount_path<'a>(c: &'a Container, volume: &str) -> Option<&'a str> {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume)
            .map(|m| m.mount_path.as_str())
    }

    #[test]
    fn no_mode_adds_no_container_volume_or_variable() {
        for mode in ["", "containerMode: none"] {
            let spec = spec_of(&pool(mode, RUNNER_ONLY));
            assert!(spec.init_containers.is_none(), "{mode}");
            assert!(spec.volumes.is_none(), "{mode}");
            assert!(env_value(&spec.containers[0], "DOCKER_HOST").is_none());
        }
    }

    #[test]
    fn dind_runs_the_daemon_as_the_only_privileged_native_sidecar() {
        let spec = spec_of(&pool("containerMode: dind", RUNNER_ONLY));
        let init = spec.init_containers.as_deref().expect("init containers");
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [DIND_EXTERNALS_INIT, DIND_CONTAINER]);

        let dind = container(init, DIND_CONTAINER);
        assert_eq!(dind.image.as_deref(), Some(DIND_IMAGE));
        // A released Docker Engine, not a moving tag, and the one the README names.
        let version = DIND_IMAGE
            .strip_prefix("docker:")
            .and_then(|t| t.strip_suffix("-dind"))
            .unwrap_or_default();
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{DIND_IMAGE} is not a pinned docker:<version>-dind"
        );
        assert!(include_str!("../../README.md").contains(&format!("`{DIND_IMAGE}`")));
        assert_eq!(
            dind.restart_policy.as_deref(),
            Some("Always"),
            "a native sidecar: the pod ends with the runner"
        );
        let probe = dind.startup_probe.as_ref().expect("startup probe");
        let probe_command = probe.exec.as_ref().and_then(|e| e.command.clone()).unwrap();
        assert_eq!(probe_command.last().map(String::as_str), Some("info"));
        assert!(probe_command.contains(&format!("--host={DIND_HOST}")));
        assert!(
            dind.args
                .as_ref()
                .unwrap()
                .contains(&format!("--host={DIND_HOST}"))
        );

        let privileged: Vec<&str> = init
            .iter()
            .chain(&spec.containers)
            .filter(|c| is_privileged(c))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(privileged, [DIND_CONTAINER]);

        // The externals copy uses the runner's own image.
        assert_eq!(
            container(init, DIND_EXTERNALS_INIT).image.as_deref(),
            Some("ghcr.io/actions/actions-runner:2.330.0")
        );
        assert!(
            container(init, DIND_EXTERNALS_INIT)
                .restart_policy
                .is_none()
        );
    }

    #[test]
    fn dind_shares_the_work_directory_and_socket_with_the_runner() {
        let spec = spec_of(&pool("containerMode: dind", RUNNER_ONLY));
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        let dind = container(spec.init_containers.as_deref().unwrap(), DIND_CONTAINER);
        assert_eq!(env_value(runner, "DOCKER_HOST"), Some(DIND_HOST));
        for c in [runner, dind] {
            assert_eq!(
                mount_path(c, WORK_VOLUME),
                Some("/home/runner/_work"),
                "{}",
                c.name
            );
            assert_eq!(mount_path(c, DIND_SOCKET_VOLUME), Some(DIND_SOCKET_DIR));
        }
        assert_eq!(
            mount_path(dind, DIND_EXTERNALS_VOLUME),
            Some("/home/runner/externals")
        );
        assert_eq!(
            mount_path(dind, DIND_STORAGE_VOLUME),
            Some("/var/lib/docker")
        );
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        for name in [
            WORK_VOLUME,
            DIND_SOCKET_VOLUME,
            DIND_STORAGE_VOLUME,
            DIND_EXTERNALS_VOLUME,
        ] {
            assert!(volumes.contains(&name), "{name} in {volumes:?}");
        }
        // The runner is neither privileged nor given an API token.
        assert!(runner.security_context.is_none());
        assert_eq!(spec.automount_service_account_token, Some(false));
        // The JIT config still comes from the Secret only.
        assert!(
            runner
                .env
                .iter()
                .flatten()
                .any(|e| e.name == crate::runner::JIT_CONFIG_ENV && e.value.is_none())
        );
    }

    #[test]
    fn dind_follows_the_work_folder() {
        let mut p = pool("containerMode: dind", RUNNER_ONLY);
        p.spec.work_folder = Some("build/".into());
        let spec = spec_of(&p);
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(mount_path(runner, WORK_VOLUME), Some("/home/runner/build"));
        p.spec.work_folder = Some("/data/work".into());
        assert_eq!(work_dir(&p), "/data/work");
    }

    #[test]
    fn the_templates_own_settings_win_in_dind_mode() {
        let template = r#"      initContainers:
        - name: setup
          image: busybox
        - name: dind
          image: mirror.example/docker:27-dind
          resources: { limits: { memory: 4Gi } }
          env: [{ name: DOCKER_GROUP_GID, value: "1001" }]
      containers:
        - name: runner
          image: my-runner
          env: [{ name: DOCKER_HOST, value: "tcp://localhost:2375" }]
          volumeMounts: [{ name: scratch, mountPath: /home/runner/_work }]
      volumes:
        - name: scratch
          emptyDir: { medium: Memory }
        - name: work
          ephemeral: { volumeClaimTemplate: { spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } } } }"#;
        let spec = spec_of(&pool("containerMode: dind", template));
        let init = spec.init_containers.as_deref().unwrap();
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [DIND_EXTERNALS_INIT, "setup", DIND_CONTAINER]);
        let dind = container(init, DIND_CONTAINER);
        assert_eq!(dind.image.as_deref(), Some("mirror.example/docker:27-dind"));
        assert!(dind.resources.is_some());
        assert_eq!(env_value(dind, "DOCKER_GROUP_GID"), Some("1001"));
        // What the template left unset is still built.
        assert_eq!(dind.restart_policy.as_deref(), Some("Always"));
        assert!(dind.startup_probe.is_some());
        assert_eq!(
            dind.security_context.as_ref().and_then(|s| s.privileged),
            Some(true)
        );

        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(
            env_value(runner, "DOCKER_HOST"),
            Some("tcp://localhost:2375")
        );
        let mounts: Vec<(&str, &str)> = runner
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("scratch", "/home/runner/_work"),
                (DIND_SOCKET_VOLUME, DIND_SOCKET_DIR)
            ]
        );
        let work = volume(&spec, WORK_VOLUME);
        assert!(work.ephemeral.is_some() && work.empty_dir.is_none());
    }

    #[test]
    fn a_dind_container_of_the_template_is_not_doubled() {
        let template = r#"      containers:
        - { name: runner, image: r }
        - { name: dind, image: docker:dind, securityContext: { privileged: true } }"#;
        let spec = spec_of(&pool("containerMode: dind", template));
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter(|c| c.name == DIND_CONTAINER)
            .count();
        assert_eq!(all, 1);
    }

    const KUBERNETES: &str = "containerMode: kubernetes\n  workVolumeClaimTemplate: { storageClassName: fast, size: 10Gi }";

    #[test]
    fn kubernetes_mode_configures_the_hooks_and_a_claim_per_runner() {
        let p = pool(KUBERNETES, RUNNER_ONLY);
        let spec = spec_of(&p);
        assert!(spec.init_containers.is_none(), "no sidecar in this mode");
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("ci-container-hooks")
        );
        assert_eq!(
            spec.automount_service_account_token,
            Some(true),
            "the hooks call the API server"
        );
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(
            env_value(runner, "ACTIONS_RUNNER_CONTAINER_HOOKS"),
            Some(CONTAINER_HOOKS_PATH)
        );
        assert_eq!(
            env_value(runner, "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER"),
            Some("true")
        );
        let pod_name = runner
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "ACTIONS_RUNNER_POD_NAME")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(pod_name, Some("metadata.name"));
        assert_eq!(mount_path(runner, WORK_VOLUME), Some("/home/runner/_work"));
        let work = volume(&spec, WORK_VOLUME);
        let claim = work
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
            .expect("an ephemeral claim");
        assert_eq!(claim.spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim.spec.access_modes.as_deref(),
            Some(&["ReadWriteOnce".to_string()][..])
        );
        let size = &claim
            .spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"];
        assert_eq!(size.0, "10Gi");
        assert!(!spec.containers.iter().any(is_privileged));
    }

    #[test]
    fn kubernetes_mode_keeps_the_templates_account_and_token_setting() {
        let template = format!(
            "      serviceAccountName: mine\n      automountServiceAccountToken: false\n{RUNNER_ONLY}"
        );
        let spec = spec_of(&pool(KUBERNETES, &template));
        assert_eq!(spec.service_account_name.as_deref(), Some("mine"));
        assert_eq!(spec.automount_service_account_token, Some(false));
    }

    #[test]
    fn a_job_pod_template_reaches_the_hooks_as_a_mounted_file() {
        let with = format!(
            "{KUBERNETES}\n  jobPodTemplate:\n    spec: {{ nodeSelector: {{ pool: jobs }} }}"
        );
        let p = pool(&with, RUNNER_ONLY);
        let pod = runner_pod(&p, "ci-abc", 1, "h");
        let name = job_pod_template::config_map_name(&p).expect("a ConfigMap");
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[JOB_POD_TEMPLATE_ANNOTATION],
            name
        );
        let spec = pod.spec.unwrap();
        let source = volume(&spec, JOB_POD_TEMPLATE_VOLUME)
            .config_map
            .as_ref()
            .expect("a ConfigMap volume");
        assert_eq!(source.name, name);
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(
            mount_path(runner, JOB_POD_TEMPLATE_VOLUME),
            Some(JOB_POD_TEMPLATE_DIR)
        );
        assert_eq!(
            env_value(runner, HOOK_TEMPLATE_ENV),
            Some("/home/runner/job-pod-template/template.yaml")
        );
        assert!(!spec.containers.iter().any(is_privileged));

        // Without a template, none of it.
        let pod = runner_pod(&pool(KUBERNETES, RUNNER_ONLY), "ci-abc", 1, "h");
        let annotations = pod.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(JOB_POD_TEMPLATE_ANNOTATION));
        let spec = pod.spec.unwrap();
        assert!(
            spec.volumes
                .iter()
                .flatten()
                .all(|v| v.name != JOB_POD_TEMPLATE_VOLUME)
        );
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(env_value(runner, HOOK_TEMPLATE_ENV), None);
    }

    #[test]
    fn other_modes_get_no_token_and_a_claim_only_when_asked() {
        let spec = spec_of(&pool(
            "workVolumeClaimTemplate: { size: 5Gi, accessModes: [ReadWriteOncePod] }",
            RUNNER_ONLY,
        ));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert!(spec.service_account_name.is_none());
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(mount_path(runner, WORK_VOLUME), Some("/home/runner/_work"));
        let work = &spec.volumes.as_ref().unwrap()[0];
        let claim = work
            .ephemeral
            .as_ref()
            .unwrap()
            .volume_claim_template
            .as_ref()
            .unwrap();
        assert_eq!(
            claim.spec.access_modes.as_deref(),
            Some(&["ReadWriteOncePod".to_string()][..])
        );
        assert!(claim.spec.storage_class_name.is_none());
        // dind puts its work directory on the claim too.
        let spec = spec_of(&pool(
            "containerMode: dind\n  workVolumeClaimTemplate: { size: 5Gi }",
            RUNNER_ONLY,
        ));
        let work = volume(&spec, WORK_VOLUME);
        assert!(work.ephemeral.is_some());
    }

    #[test]
    fn the_hooks_role_grants_exactly_what_the_hooks_use_and_belongs_to_the_pool() {
        let p = pool(KUBERNETES, RUNNER_ONLY);
        let role = hooks_role(&p);
        let rules: Vec<(String, String, String)> = role
            .rules
            .iter()
            .flatten()
            .map(|r| {
                (
                    r.api_groups.as_ref().unwrap().join(","),
                    r.resources.as_ref().unwrap().join(","),
                    r.verbs.join(","),
                )
            })
            .collect();
        let want = [
            ("", "pods", "get,list,create,delete"),
            ("", "pods/exec", "get,create"),
            ("", "pods/log", "get,list,watch"),
            ("batch", "jobs", "get,list,create,delete"),
            ("", "secrets", "get,list,create,delete"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
            .collect();
        assert_eq!(rules, want);
        let binding = hooks_role_binding(&p);
        assert_eq!(binding.role_ref.name, "ci-container-hooks");
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "ci-container-hooks", Some("builds"))
        );
        for meta in [
            &role.metadata,
            &binding.metadata,
            &hooks_service_account(&p).metadata,
        ] {
            assert_eq!(meta.namespace.as_deref(), Some("builds"));
            // The pool's by label, never by an ownerReference: the garbage
            // collector must not take them from a released pool's runners.
            assert_eq!(
                meta.labels.as_ref().expect("labels")[crate::runner::POOL_UID_LABEL],
                "u-1"
            );
            assert!(meta.owner_references.is_none());
        }
    }

    #[test]
    fn cache_volumes_are_mounted_into_the_runner_only() {
        let caches = r#"cacheVolumes:
    - { name: tools, mountPath: /opt/hostedtoolcache, readOnly: true, source: { persistentVolumeClaim: { claimName: toolcache } } }
    - { name: deps, mountPath: /home/runner/.cache, source: { ephemeral: { storageClassName: fast, size: 20Gi } } }"#;
        let spec = spec_of(&pool(caches, RUNNER_ONLY));
        let tools = volume(&spec, "tools");
        let claim = tools.persistent_volume_claim.as_ref().expect("a claim");
        assert_eq!(claim.claim_name, "toolcache");
        assert_eq!(claim.read_only, Some(true));
        let deps = volume(&spec, "deps");
        let template = deps
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
            .expect("an ephemeral claim");
        assert_eq!(template.spec.storage_class_name.as_deref(), Some("fast"));
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        let mounts: Vec<(&str, &str, Option<bool>)> = runner
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("tools", "/opt/hostedtoolcache", Some(true)),
                ("deps", "/home/runner/.cache", None)
            ]
        );

        // With dind, the daemon does not see them; a template volume of the
        // same name wins, a template mount at the same path too.
        let template = r#"      containers:
        - name: runner
          image: r
          volumeMounts: [{ name: mine, mountPath: /home/runner/.cache }]
      volumes:
        - { name: tools, emptyDir: {} }
        - { name: mine, emptyDir: {} }"#;
        let spec = spec_of(&pool(&format!("containerMode: dind\n  {caches}"), template));
        assert!(volume(&spec, "tools").empty_dir.is_some());
        let dind = container(spec.init_containers.as_deref().unwrap(), DIND_CONTAINER);
        assert_eq!(mount_path(dind, "tools"), None);
        let runner = container(&spec.containers, RUNNER_CONTAINER);
        assert_eq!(mount_path(runner, "tools"), Some("/opt/hostedtoolcache"));
        assert_eq!(mount_path(runner, "deps"), None);
        assert_eq!(mount_path(runner, "mine"), Some("/home/runner/.cache"));
    }
}
