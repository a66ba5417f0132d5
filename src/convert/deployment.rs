//! ARC's legacy mode as webhook pools: a `RunnerDeployment` (its runner
//! settings and pod settings) becomes a pool matched by labels, sized by its
//! `HorizontalRunnerAutoscaler` (see `autoscaler`) or by `replicas`.

use serde_json::{Map, Value, json};

use crate::crd::{ContainerMode, GitHubSpec, SecretReference, VolumeClaimSpec};
use crate::pod::container_mode::DIND_CONTAINER;
use crate::runner::RUNNER_CONTAINER;

use super::draft::{Draft, Fields, Notes, new_pool};
use super::scope::{existing_secret_notes, new_secret_notes};
use super::template::{RUNNER_IMAGE, convert_template};

/// The Secret named when ARC used its controller's credentials.
pub const DEFAULT_SECRET: &str = "github-credentials";

/// The labels ARC's runners register with besides their own (config.sh's defaults).
const DEFAULT_LABELS: [&str; 3] = ["self-hosted", "linux", "x64"];

/// Settings of ARC's runner spec that are the pod's own, under the same name.
const POD_SETTINGS: [&str; 17] = [
    "initContainers",
    "volumes",
    "nodeSelector",
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "imagePullSecrets",
    "affinity",
    "tolerations",
    "priorityClassName",
    "terminationGracePeriodSeconds",
    "hostAliases",
    "topologySpreadConstraints",
    "runtimeClassName",
    "dnsPolicy",
    "dnsConfig",
    "enableServiceLinks",
];

/// Settings of ARC's runner spec that belong to the runner container.
const RUNNER_SETTINGS: [&str; 5] = [
    "imagePullPolicy",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
];

/// Settings of ARC's docker sidecar that the operator's `dind` init container takes.
const DOCKER_SETTINGS: [(&str, &str); 3] = [
    ("dockerdContainerResources", "resources"),
    ("dockerEnv", "env"),
    ("dockerVolumeMounts", "volumeMounts"),
];

/// A webhook pool from a RunnerDeployment's `spec`.
pub fn convert_deployment(
    source: String,
    name: &str,
    namespace: Option<&str>,
    mut spec: Fields,
) -> Result<Draft, String> {
    let mut notes = Notes::default();
    let replicas = spec.int("replicas")?;
    spec.take("selector");
    spec.take("effectiveTime");
    let mut template = spec.object("template")?;
    let metadata = template.take("metadata");
    let mut runner = template.object("spec")?;
    template.finish(&mut notes);

    let github = scope(&mut runner, namespace, &mut notes)?;
    let labels = labels(&mut runner)?;
    let (pod, mut mode) = pod_template(&mut runner, metadata, &mut notes)?;
    let template_path = spec.path("template");
    let converted = convert_template(&template_path, Some(pod), &mut notes)?;
    if converted.mode != ContainerMode::None {
        mode = converted.mode;
    }
    let mut pool = new_pool(name, namespace, github, labels, converted.template)?;
    pool.spec.container_mode = mode;
    pool.spec.work_volume_claim_template =
        work_claim(&mut runner, &mut notes)?.or(converted.work_claim);
    if let Some(group) = runner.string("group")? {
        pool.spec.runner_group = Some(group);
    }
    pool.spec.replicas = replicas.map(|r| r.clamp(0, 10000) as i32);
    if runner.bool("ephemeral")? == Some(false) {
        notes.not_converted(
            &runner.path("ephemeral"),
            "every runner here is ephemeral: one job, then a fresh runner",
        );
    }
    runner.not_converted(
        "workDir",
        "the official image works in /home/runner/_work; spec.workFolder is relative to /home/runner",
        &mut notes,
    );
    let without = [
        (
            "dockerMTU",
            "the operator's daemon takes no MTU; set one through a template init container named dind (args)",
        ),
        (
            "dockerRegistryMirror",
            "configure the mirror in the daemon's image or the jobs",
        ),
        (
            "dockerVarRunVolumeSizeLimit",
            "the daemon's socket volume is an emptyDir without a limit",
        ),
        (
            "volumeSizeLimit",
            "use workVolumeClaimTemplate for a bounded work directory",
        ),
        (
            "volumeStorageMedium",
            "use workVolumeClaimTemplate or a template volume named work",
        ),
        (
            "ephemeralContainers",
            "ephemeral containers are added to running pods, not templates",
        ),
    ];
    for (key, why) in without {
        runner.not_converted(key, why, &mut notes);
    }
    runner.finish(&mut notes);
    spec.finish(&mut notes);
    Ok(Draft {
        source,
        pool,
        notes,
    })
}

/// `spec.github` from the runner spec's scope and credentials.
fn scope(
    runner: &mut Fields,
    namespace: Option<&str>,
    notes: &mut Notes,
) -> Result<GitHubSpec, String> {
    let mut github = GitHubSpec {
        enterprise: runner.string("enterprise")?,
        organization: runner.string("organization")?,
        repository: runner.string("repository")?,
        ..GitHubSpec::default()
    };
    let scopes = [&github.enterprise, &github.organization, &github.repository];
    if scopes.iter().filter(|s| s.is_some()).count() != 1 {
        return Err(format!(
            "{} must set exactly one of enterprise, organization or repository",
            runner.path("").trim_end_matches('.')
        ));
    }
    let mut from = runner.object("githubAPICredentialsFrom")?;
    let secret = from
        .take("secretRef")
        .and_then(|r| r.get("name").and_then(Value::as_str).map(str::to_string));
    from.finish(notes);
    github.credentials_secret = Some(SecretReference {
        name: match secret {
            Some(name) => {
                existing_secret_notes(&name, namespace, notes);
                name
            }
            None => {
                notes.note(
                    "credentials: ARC used its controller's (Secret controller-manager in its namespace); \
                     if it talks to GitHub Enterprise Server, set spec.github.apiUrl: https://HOST/api/v3",
                );
                new_secret_notes(DEFAULT_SECRET, namespace, false, notes);
                DEFAULT_SECRET.to_string()
            }
        },
    });
    Ok(github)
}

/// ARC's runners carry config.sh's default labels besides their own.
fn labels(runner: &mut Fields) -> Result<Vec<String>, String> {
    let own = runner.typed::<Vec<String>>("labels")?.unwrap_or_default();
    let mut labels: Vec<String> = Vec::new();
    for label in DEFAULT_LABELS.iter().map(|l| l.to_string()).chain(own) {
        if !labels.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
            labels.push(label);
        }
    }
    Ok(labels)
}

/// The pod template from ARC's runner spec, and the container mode its
/// Docker settings ask for.
fn pod_template(
    runner: &mut Fields,
    metadata: Option<Value>,
    notes: &mut Notes,
) -> Result<(Value, ContainerMode), String> {
    let mut container = Map::new();
    container.insert("name".into(), json!(RUNNER_CONTAINER));
    let image = runner.string("image")?;
    container.insert(
        "image".into(),
        json!(runner_image(image, &runner.path("image"), notes)),
    );
    for key in RUNNER_SETTINGS {
        if let Some(value) = runner.take(key) {
            container.insert(key.into(), value);
        }
    }
    let mut pod = Map::new();
    for key in POD_SETTINGS {
        if let Some(value) = runner.take(key) {
            pod.insert(key.into(), value);
        }
    }
    let mut containers = vec![];
    let path = runner.path("containers");
    for listed in ["containers", "sidecarContainers"] {
        for extra in runner
            .typed::<Vec<Map<String, Value>>>(listed)?
            .unwrap_or_default()
        {
            match extra.get("name").and_then(Value::as_str) {
                Some(RUNNER_CONTAINER) => container.extend(extra),
                Some("docker") => notes.not_converted(
                    &format!("{path}[docker]"),
                    "the operator builds the Docker daemon (containerMode dind); set its image and resources on a template init container named dind",
                ),
                _ => containers.push(Value::Object(extra)),
            }
        }
    }
    containers.insert(0, Value::Object(container));
    pod.insert("containers".into(), Value::Array(containers));
    let kubernetes = match runner.string("containerMode")?.as_deref() {
        None => false,
        Some("kubernetes") => true,
        Some(other) => {
            return Err(format!(
                "{} must be kubernetes, not {other:?}",
                runner.path("containerMode")
            ));
        }
    };
    let mode = docker_mode(runner, kubernetes, &mut pod, notes)?;
    Ok((json!({"metadata": metadata, "spec": pod}), mode))
}

/// ARC runs a Docker sidecar unless `dockerEnabled: false`, or dockerd in the
/// runner container (`dockerdWithinRunnerContainer`); both are `dind` here.
/// `containerMode: kubernetes` runs no daemon.
fn docker_mode(
    runner: &mut Fields,
    kubernetes: bool,
    pod: &mut Map<String, Value>,
    notes: &mut Notes,
) -> Result<ContainerMode, String> {
    let enabled = runner.bool("dockerEnabled")?.unwrap_or(true);
    let within = runner
        .bool("dockerdWithinRunnerContainer")?
        .unwrap_or(false);
    let mode = if kubernetes {
        ContainerMode::Kubernetes
    } else if enabled || within {
        ContainerMode::Dind
    } else {
        ContainerMode::None
    };
    if kubernetes {
        // No daemon: its settings are noted below.
    } else if within {
        notes.note(
            "dockerdWithinRunnerContainer: the daemon runs as a sidecar here (containerMode dind)",
        );
    } else if enabled {
        notes.note("containerMode dind: ARC gives runners Docker unless dockerEnabled is false; set none if jobs need no Docker");
    }
    let mut daemon = Map::new();
    for (arc, ours) in DOCKER_SETTINGS {
        // A cluster's copy holds `{}` for settings never set.
        let set = runner
            .take(arc)
            .filter(|v| v != &json!({}) && v != &json!([]));
        if let Some(value) = set {
            if mode == ContainerMode::Dind {
                daemon.insert(ours.into(), value);
            } else {
                notes.not_converted(&runner.path(arc), "no Docker daemon in this container mode");
            }
        }
    }
    if !daemon.is_empty() {
        daemon.insert("name".into(), json!(DIND_CONTAINER));
        let init = pod.entry("initContainers").or_insert_with(|| json!([]));
        if let Value::Array(init) = init {
            init.push(Value::Object(daemon));
        }
    }
    Ok(mode)
}

/// The runner image: ARC's own images register with a token at start and
/// cannot take a JIT configuration, so they become the official one.
fn runner_image(image: Option<String>, path: &str, notes: &mut Notes) -> String {
    match image {
        None => RUNNER_IMAGE.to_string(),
        Some(image)
            if image.contains("summerwind/actions-runner")
                || image.contains("actions-runner-controller/actions-runner") =>
        {
            notes.not_converted(
                path,
                &format!(
                    "{image} is ARC's runner image, which registers itself; {RUNNER_IMAGE} starts from a JIT configuration \
                     (rebuild custom images FROM it)"
                ),
            );
            RUNNER_IMAGE.to_string()
        }
        Some(image) => {
            notes.note(format!(
                "image {image}: it must start the runner as the official image does (/home/runner/run.sh reading ACTIONS_RUNNER_INPUT_JITCONFIG)"
            ));
            image
        }
    }
}

/// `workVolumeClaimTemplate`: a claim spec, of which size, class and access modes are kept.
fn work_claim(runner: &mut Fields, notes: &mut Notes) -> Result<Option<VolumeClaimSpec>, String> {
    let mut claim = runner.object("workVolumeClaimTemplate")?;
    if claim.is_empty() {
        return Ok(None);
    }
    let path = claim.path("resources.requests.storage");
    let size = claim
        .take("resources")
        .and_then(|r| {
            r.pointer("/requests/storage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| format!("{path} is missing"))?;
    let spec = VolumeClaimSpec {
        storage_class_name: claim.string("storageClassName")?,
        size,
        access_modes: claim.typed("accessModes")?,
    };
    claim.finish(notes);
    Ok(Some(spec))
}
