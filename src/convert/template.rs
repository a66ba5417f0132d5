//! ARC's runner pod template read as a pool's `spec.template`, with the
//! container mode it implies. ARC writes its modes into the template (the
//! chart expands `containerMode`; a customized mode is a template with the
//! same parts); the operator builds them itself, so those parts are taken
//! out again and become `containerMode` (and `workVolumeClaimTemplate`).

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Volume};
use serde_json::Value;

use crate::crd::{ContainerMode, VolumeClaimSpec};
use crate::pod::container_mode::{
    DIND_CONTAINER, DIND_EXTERNALS_INIT, DIND_EXTERNALS_VOLUME, DIND_SOCKET_VOLUME, WORK_VOLUME,
};
use crate::pod::job_pod_template::HOOK_TEMPLATE_ENV;
use crate::runner::RUNNER_CONTAINER;

use super::draft::Notes;

/// The official runner image, which reads `ACTIONS_RUNNER_INPUT_JITCONFIG`.
pub const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:latest";

/// The runner environment of ARC's Kubernetes mode, which the operator sets itself.
const KUBERNETES_MODE_ENV: [&str; 3] = [
    "ACTIONS_RUNNER_CONTAINER_HOOKS",
    "ACTIONS_RUNNER_POD_NAME",
    "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER",
];

/// A pool's template and the mode read from it.
pub struct Converted {
    pub template: PodTemplateSpec,
    pub mode: ContainerMode,
    pub work_claim: Option<VolumeClaimSpec>,
}

/// Reads ARC's template at `path` (absent: the chart's default, a `runner`
/// container with the official image).
pub fn convert_template(
    path: &str,
    value: Option<Value>,
    notes: &mut Notes,
) -> Result<Converted, String> {
    let given = value.is_some();
    let mut template: PodTemplateSpec = match value {
        None => PodTemplateSpec::default(),
        Some(v) => serde_json::from_value(v).map_err(|e| format!("{path}: {e}"))?,
    };
    let spec = template.spec.get_or_insert_with(PodSpec::default);
    let mut mode = ContainerMode::None;
    let mut work_claim = None;
    if let Some(dind) = take_container(&mut spec.containers, DIND_CONTAINER) {
        mode = ContainerMode::Dind;
        strip_dind(spec, dind, path, notes);
    }
    let runner = runner_container(spec, given.then_some(path), notes);
    let hooks = runner
        .env
        .iter()
        .flatten()
        .any(|e| e.name == KUBERNETES_MODE_ENV[0]);
    if hooks {
        mode = ContainerMode::Kubernetes;
        if let Some(env) = runner.env.as_mut() {
            env.retain(|e| !KUBERNETES_MODE_ENV.contains(&e.name.as_str()));
        }
        work_claim = take_work_claim(spec, path, notes);
        note_hook_template(spec, path, notes);
    }
    if let Some(account) = spec.service_account_name.as_deref()
        && (account.ends_with("-gha-rs-no-permission") || account.ends_with("-gha-rs-kube-mode"))
    {
        notes.not_converted(
            &format!("{path}.spec.serviceAccountName"),
            &format!(
                "{account} is an account ARC's chart makes; the pool's pods use the namespace's \
                 default account without a token (containerMode kubernetes: one the operator makes)"
            ),
        );
        spec.service_account_name = None;
    }
    drop_empty(spec);
    Ok(Converted {
        template,
        mode,
        work_claim,
    })
}

/// The `runner` container, made if missing, with an image.
/// `path` is that of a template given (not the chart's default one).
fn runner_container<'a>(
    spec: &'a mut PodSpec,
    path: Option<&str>,
    notes: &mut Notes,
) -> &'a mut Container {
    let index = match spec
        .containers
        .iter()
        .position(|c| c.name == RUNNER_CONTAINER)
    {
        Some(index) => index,
        None => {
            if let Some(path) = path {
                notes.note(format!(
                    "{path} had no container named runner: one with {RUNNER_IMAGE} was added"
                ));
            }
            spec.containers.insert(
                0,
                Container {
                    name: RUNNER_CONTAINER.to_string(),
                    ..Container::default()
                },
            );
            0
        }
    };
    let runner = &mut spec.containers[index];
    if runner.image.as_deref().is_none_or(str::is_empty) {
        runner.image = Some(RUNNER_IMAGE.to_string());
    }
    runner
}

/// Takes out the parts of ARC's Docker-in-Docker expansion; the daemon's own
/// image and resources are kept as the operator's `dind` init container.
fn strip_dind(spec: &mut PodSpec, dind: Container, path: &str, notes: &mut Notes) {
    let containers_path = format!("{path}.spec.containers");
    let mut daemon = Container {
        name: DIND_CONTAINER.to_string(),
        ..Container::default()
    };
    let image = dind.image.unwrap_or_default();
    if !image.is_empty() && image != "docker:dind" {
        daemon.image = Some(image);
    }
    daemon.resources = dind.resources;
    if dind.args.is_some() || dind.command.is_some() || dind.env.is_some() {
        notes.not_converted(
            &format!("{containers_path}[dind].args/env"),
            "the operator runs the daemon as a native sidecar with its own socket and arguments",
        );
    }
    if daemon.image.is_some() || daemon.resources.is_some() {
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .push(daemon);
    }
    if let Some(init) = spec.init_containers.as_mut() {
        init.retain(|c| c.name != DIND_EXTERNALS_INIT);
    }
    let built = [DIND_SOCKET_VOLUME, DIND_EXTERNALS_VOLUME, WORK_VOLUME];
    let removed = remove_volumes(spec, |v| {
        built.contains(&v.name.as_str()) && (v.empty_dir.is_some() || v.name != WORK_VOLUME)
    });
    if let Some(runner) = spec
        .containers
        .iter_mut()
        .find(|c| c.name == RUNNER_CONTAINER)
    {
        if let Some(env) = runner.env.as_mut() {
            env.retain(|e| e.name != "DOCKER_HOST");
        }
        if let Some(mounts) = runner.volume_mounts.as_mut() {
            mounts.retain(|m| !removed.contains(&m.name));
        }
    }
}

/// The `work` volume's ephemeral claim of ARC's Kubernetes mode, as
/// `workVolumeClaimTemplate`; the volume and its mount are the operator's.
fn take_work_claim(spec: &mut PodSpec, path: &str, notes: &mut Notes) -> Option<VolumeClaimSpec> {
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == WORK_VOLUME)?;
    let claim = volume.ephemeral.as_ref()?.volume_claim_template.as_ref()?;
    let size = claim
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let Some(size) = size else {
        notes.note(format!(
            "{path}: the work volume's claim requests no storage: set workVolumeClaimTemplate.size"
        ));
        return None;
    };
    let claim = VolumeClaimSpec {
        storage_class_name: claim.spec.storage_class_name.clone(),
        size,
        access_modes: claim.spec.access_modes.clone(),
    };
    let removed = remove_volumes(spec, |v| v.name == WORK_VOLUME);
    if let Some(runner) = spec
        .containers
        .iter_mut()
        .find(|c| c.name == RUNNER_CONTAINER)
        && let Some(mounts) = runner.volume_mounts.as_mut()
    {
        mounts.retain(|m| !removed.contains(&m.name));
    }
    Some(claim)
}

/// ARC's way to shape job pods, a hook template file on a ConfigMap volume,
/// works unchanged (the template's variable wins); the operator's own is
/// `spec.jobPodTemplate`, whose content the converter cannot read.
fn note_hook_template(spec: &PodSpec, path: &str, notes: &mut Notes) {
    let Some(file) = spec
        .containers
        .iter()
        .filter(|c| c.name == RUNNER_CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == HOOK_TEMPLATE_ENV)
        .and_then(|e| e.value.as_deref())
    else {
        return;
    };
    notes.note(format!(
        "{path}: the runner's {HOOK_TEMPLATE_ENV} ({file}) and its volume are kept as they are; \
         to have the operator manage the job pods' template, put that file's content into \
         spec.jobPodTemplate and remove the variable and the volume"
    ));
}

/// Removes the volumes `matches` picks; returns their names.
fn remove_volumes(spec: &mut PodSpec, matches: impl Fn(&Volume) -> bool) -> Vec<String> {
    let Some(volumes) = spec.volumes.as_mut() else {
        return Vec::new();
    };
    let removed = volumes
        .iter()
        .filter(|v| matches(v))
        .map(|v| v.name.clone())
        .collect();
    volumes.retain(|v| !matches(v));
    removed
}

fn take_container(containers: &mut Vec<Container>, name: &str) -> Option<Container> {
    let index = containers.iter().position(|c| c.name == name)?;
    Some(containers.remove(index))
}

/// Lists emptied by the stripping are left out rather than printed as `[]`.
fn drop_empty(spec: &mut PodSpec) {
    if spec.volumes.as_ref().is_some_and(Vec::is_empty) {
        spec.volumes = None;
    }
    if spec.init_containers.as_ref().is_some_and(Vec::is_empty) {
        spec.init_containers = None;
    }
    for container in &mut spec.containers {
        if container.env.as_ref().is_some_and(Vec::is_empty) {
            container.env = None;
        }
        if container.volume_mounts.as_ref().is_some_and(Vec::is_empty) {
            container.volume_mounts = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_missing_template_is_a_runner_with_the_official_image() {
        let converted = convert_template("template", None, &mut Notes::default()).unwrap();
        let spec = converted.template.spec.unwrap();
        assert_eq!(spec.containers[0].name, "runner");
        assert_eq!(spec.containers[0].image.as_deref(), Some(RUNNER_IMAGE));
        assert_eq!(converted.mode, ContainerMode::None);
    }

    #[test]
    fn the_charts_dind_expansion_becomes_the_dind_mode() {
        let template = json!({"spec": {
            "initContainers": [{"name": "init-dind-externals", "image": "ghcr.io/actions/actions-runner:latest"}],
            "containers": [
                {"name": "runner", "image": "ghcr.io/actions/actions-runner:2.330.0",
                 "env": [{"name": "DOCKER_HOST", "value": "unix:///run/docker/docker.sock"}, {"name": "A", "value": "1"}],
                 "volumeMounts": [{"name": "work", "mountPath": "/home/runner/_work"}, {"name": "dind-sock", "mountPath": "/run/docker"}, {"name": "cache", "mountPath": "/cache"}]},
                {"name": "dind", "image": "docker:dind", "args": ["dockerd"], "securityContext": {"privileged": true}}
            ],
            "volumes": [{"name": "work", "emptyDir": {}}, {"name": "dind-sock", "emptyDir": {}}, {"name": "dind-externals", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
        }});
        let mut notes = Notes::default();
        let converted = convert_template("template", Some(template), &mut notes).unwrap();
        assert_eq!(converted.mode, ContainerMode::Dind);
        let spec = converted.template.spec.unwrap();
        assert_eq!(spec.containers.len(), 1);
        let runner = &spec.containers[0];
        assert_eq!(runner.env.as_ref().unwrap().len(), 1);
        assert_eq!(runner.volume_mounts.as_ref().unwrap()[0].name, "cache");
        assert_eq!(spec.volumes.as_ref().unwrap().len(), 1);
        assert!(
            spec.init_containers.is_none(),
            "plain docker:dind: the operator's pinned daemon"
        );
        assert!(notes.lines()[0].starts_with("not converted: template.spec.containers[dind]"));
    }

    #[test]
    fn the_charts_kubernetes_expansion_becomes_the_kubernetes_mode() {
        let template = json!({"spec": {
            "serviceAccountName": "linux-gha-rs-kube-mode",
            "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
                "env": [{"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s/index.js"},
                        {"name": "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "value": "true"}],
                "volumeMounts": [{"name": "work", "mountPath": "/home/runner/_work"}]}],
            "volumes": [{"name": "work", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                "resources": {"requests": {"storage": "1Gi"}}}}}}]
        }});
        let mut notes = Notes::default();
        let converted = convert_template("t", Some(template), &mut notes).unwrap();
        assert_eq!(converted.mode, ContainerMode::Kubernetes);
        let claim = converted.work_claim.unwrap();
        assert_eq!(claim.size, "1Gi");
        assert_eq!(claim.storage_class_name.as_deref(), Some("local-path"));
        let spec = converted.template.spec.unwrap();
        assert!(spec.volumes.is_none() && spec.service_account_name.is_none());
        assert!(spec.containers[0].env.is_none() && spec.containers[0].volume_mounts.is_none());
        assert!(
            notes.lines().iter().all(|n| !n.contains("jobPodTemplate")),
            "{:?}",
            notes.lines()
        );
    }

    #[test]
    fn a_hook_template_file_is_kept_and_the_job_pod_template_named() {
        let template = json!({"spec": {
            "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
                "env": [{"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s/index.js"},
                        {"name": "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE", "value": "/home/runner/pod-templates/default.yaml"}],
                "volumeMounts": [{"name": "work", "mountPath": "/home/runner/_work"},
                                 {"name": "pod-templates", "mountPath": "/home/runner/pod-templates"}]}],
            "volumes": [{"name": "work", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "resources": {"requests": {"storage": "1Gi"}}}}}},
                {"name": "pod-templates", "configMap": {"name": "hook-template"}}]
        }});
        let mut notes = Notes::default();
        let converted = convert_template("t", Some(template), &mut notes).unwrap();
        assert_eq!(converted.mode, ContainerMode::Kubernetes);
        let spec = converted.template.spec.unwrap();
        let kept = spec.volumes.as_deref().unwrap_or_default();
        assert!(
            kept.len() == 1 && kept[0].name == "pod-templates",
            "{kept:?}"
        );
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env[0].name, HOOK_TEMPLATE_ENV);
        assert_eq!(notes.lines().len(), 1);
        assert!(
            notes.lines()[0].contains("/home/runner/pod-templates/default.yaml")
                && notes.lines()[0].contains("spec.jobPodTemplate"),
            "{:?}",
            notes.lines()
        );
    }
}
