//! The `RunnerPool` custom resource: a pool of ephemeral GitHub Actions
//! runners, its spec (scaling, scheduled capacity, container modes, volumes,
//! the pod template) and the status the operator reports.
//!
//! The doc comments are what `kubectl explain runnerpool.spec` prints, and
//! the CEL rules are what the API server answers when a spec is wrong.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::github::GitHubSpec;
use super::scale_set::{ScaleSetSpec, ScaleSetStatus};

/// GitHub allows 100 labels a runner; the operator keeps one for its ownership mark.
pub const MAX_USER_LABELS: usize = 99;
/// Runner names are `<prefix>-<10 random chars>` and must fit GitHub's 64
/// characters and a Kubernetes label value (63).
pub const MAX_NAME_PREFIX: usize = 52;

/// A pool of ephemeral GitHub Actions runners. Each runner is registered with
/// its own just-in-time configuration, runs exactly one job in its own pod and
/// is replaced by a fresh one afterwards.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "actions.runnerpool.dev",
    version = "v1alpha1",
    kind = "RunnerPool",
    namespaced,
    shortname = "rp",
    category = "runnerpool-operator",
    status = "RunnerPoolStatus",
    derive = "PartialEq",
    doc = "A pool of ephemeral, just-in-time GitHub Actions runners, one pod per runner.",
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredRunners"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Idle", type_ = "integer", json_path = ".status.idleRunners"),
    printcolumn(name = "Busy", type_ = "integer", json_path = ".status.busyRunners"),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.queuedJobs"),
    printcolumn(name = "Scale-Set", type_ = "string", json_path = ".status.scaleSet.name"),
    printcolumn(name = "Assigned", type_ = "integer", json_path = ".status.scaleSet.statistics.assignedJobs"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters (it is used as a label value)"),
    validation = Rule::new("has(self.spec.runnerNamePrefix) || size(self.metadata.name) <= 52").message("metadata.name is longer than 52 characters: set spec.runnerNamePrefix of at most 52 characters (runner names are the prefix, a dash and 10 random characters, and must fit in 63)")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either replicas or autoscaling, not both"))]
#[x_kube(validation = Rule::new("!has(self.containerMode) || self.containerMode != 'kubernetes' || has(self.workVolumeClaimTemplate)").message("containerMode kubernetes needs workVolumeClaimTemplate (e.g. { size: 10Gi }): the job pods share the runner's work directory through that volume claim"))]
#[x_kube(validation = Rule::new("!has(self.jobPodTemplate) || (has(self.containerMode) && self.containerMode == 'kubernetes')").message("jobPodTemplate applies to containerMode kubernetes only: it is the template of the pods the container hooks create for jobs"))]
#[x_kube(validation = Rule::new("!(has(self.runnerGroup) && has(self.runnerGroupId))").message("set either runnerGroup or runnerGroupId, not both"))]
#[x_kube(validation = Rule::new("!has(self.github.repository) || !(has(self.runnerGroup) || has(self.runnerGroupId))").message("runnerGroup and runnerGroupId apply to organization and enterprise runners only: repository runners have no runner groups"))]
#[x_kube(validation = Rule::new("!has(self.runnerGroupRef) || !(has(self.runnerGroup) || has(self.runnerGroupId))").message("set one of runnerGroupRef, runnerGroup or runnerGroupId"))]
#[x_kube(validation = Rule::new("!has(self.runnerGroupRef) || has(self.github.organization)").message("runnerGroupRef applies to organization runners only: a RunnerGroup is an organization's group"))]
#[x_kube(validation = Rule::new("has(self.scaleSet) == has(oldSelf.scaleSet)").message("scaleSet cannot be added to or removed from a live pool: its runners belong to a scale set or they do not. Create a new RunnerPool (and delete this one)"))]
#[x_kube(validation = Rule::new("!has(self.scaleSet) || !has(oldSelf.scaleSet) || (has(self.scaleSet.name) ? self.scaleSet.name : '') == (has(oldSelf.scaleSet.name) ? oldSelf.scaleSet.name : '')").message("scaleSet.name cannot change on a live pool: workflows target the scale set by that name. Create a new RunnerPool for another name"))]
#[x_kube(validation = Rule::new("!has(self.scaleSet) || self.labels == oldSelf.labels").message("labels cannot change on a scale-set pool: a scale set's labels are fixed when it is created (the Actions service does not change them on every version). Create a new RunnerPool for other labels"))]
#[x_kube(validation = Rule::new("!has(self.scaleSet) || !has(self.runnerGroupRef)").message("runnerGroupRef is not available in scale-set mode yet: name the group with runnerGroup or runnerGroupId"))]
pub struct RunnerPoolSpec {
    /// Where the runners register and the Secret with the credentials to do so.
    /// The scope (enterprise, organization, repository) and apiUrl are fixed
    /// for the pool's life: its runners are registered there.
    pub github: GitHubSpec,

    /// Name of the runner group the runners join (organization or enterprise
    /// scope; not allowed for a repository). Resolved to an id through
    /// GitHub's runner-groups API. The default group when neither this nor
    /// runnerGroupId is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub runner_group: Option<String>,

    /// Id of the runner group the runners join, instead of runnerGroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub runner_group_id: Option<i64>,

    /// A RunnerGroup in the pool's namespace whose group the runners join
    /// (organization runners only), instead of runnerGroup or runnerGroupId.
    /// No runner is registered until that group exists on GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group_ref: Option<LocalObjectReference>,

    /// Labels of every runner, used by workflows' `runs-on`. Standard labels
    /// such as `self-hosted`, `linux` or `x64` are read-only on GitHub; the
    /// others are kept in sync on live runners when this list changes.
    #[schemars(length(min = 1, max = 99), inner(length(min = 1, max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(l, !l.contains(','))").message("labels must not contain commas"))]
    pub labels: Vec<String>,

    /// Scale-set mode: the pool is a runner scale set of GitHub's Actions
    /// service, which holds its job queue (no inbound webhook needed). The
    /// operator creates the scale set in the pool's runner group with the
    /// pool's labels, keeps one message session open to it (the leader
    /// only) and sizes the pool as `assigned jobs + idleRunners` within
    /// minRunners and maxRunners. Workflows target it with
    /// `runs-on: <scaleSet.name>`. Cannot be added or removed on a live pool;
    /// the pool's labels are then fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_set: Option<ScaleSetSpec>,

    /// A fixed number of runners. Defaults to 1 when autoscaling is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: Option<i32>,

    /// Scale between bounds instead of a fixed number of runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Prefix of runner, pod and Secret names; a dash and 10 random characters
    /// are added. Defaults to the pool's name. At most 52 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 52),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub runner_name_prefix: Option<String>,

    /// The runner's work directory, relative to the runner's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub work_folder: Option<String>,

    /// How long a runner may take from creation to coming online on GitHub
    /// (image pull, start-up) before it is removed and replaced. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86400))]
    pub bootstrap_timeout_seconds: Option<i32>,

    /// The runner release the `runner` container's image carries, as
    /// `major.minor.patch` (e.g. `2.330.0`), for an image whose tag does not
    /// name it (`:latest`, a digest, a custom tag). Compared with the newest
    /// release GitHub serves (status.runnerVersion, condition
    /// RunnerVersionOutdated). A tag that names a version wins over this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+[.][0-9]+[.][0-9]+$')").message("runnerVersion must be a runner release as major.minor.patch, such as 2.330.0 (digits only, no v prefix or suffix)"))]
    pub runner_version: Option<String>,

    /// What the runner pod is built for, around the template's `runner` container:
    ///
    /// - `none` (default): the template as written, with what the
    ///   "restricted" Pod Security level asks filled in where the template
    ///   leaves it unset: runAsNonRoot as the runner image's user (uid 1001,
    ///   gid 123), the RuntimeDefault seccomp profile, no privilege
    ///   escalation and every capability dropped (not for a template with a
    ///   privileged container).
    /// - `dind`: Docker-in-Docker. A Docker daemon (a pinned
    ///   `docker:<version>-dind`; a template init container named `dind`
    ///   with its own `image` replaces it) runs as a native
    ///   sidecar (an init container with `restartPolicy: Always` and a
    ///   startup probe: the runner starts once the daemon answers, and the pod
    ///   ends when the runner ends). It is the only privileged container, so
    ///   the namespace needs the `privileged` Pod Security level. The
    ///   runner gets `DOCKER_HOST` (the daemon's Unix socket on a shared
    ///   volume) and shares its work directory with the daemon, so jobs can
    ///   `docker build` and use `container:` and `services:`.
    /// - `kubernetes`: jobs with `container:` and `services:` run as pods of
    ///   their own, through the runner's Kubernetes container hooks
    ///   (`ACTIONS_RUNNER_CONTAINER_HOOKS`, `ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER`),
    ///   with the work directory on an ephemeral volume claim
    ///   (workVolumeClaimTemplate, required). The pool gets a ServiceAccount,
    ///   Role and RoleBinding with the rights the hooks need in its namespace
    ///   (the operator's chart grants it those rights only with
    ///   `containerModes.kubernetes.enabled`). The runner pod gets the
    ///   restricted settings as with `none`; jobPodTemplate shapes the job pods.
    ///
    /// Containers, volumes and settings the template already defines under
    /// the same names win over what a mode adds.
    #[serde(default)]
    pub container_mode: ContainerMode,

    /// The runner's work directory as a volume claim made for each runner
    /// (an ephemeral volume, deleted with the runner's pod) instead of an
    /// emptyDir. Required by containerMode `kubernetes`, whose job pods mount
    /// the same claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_volume_claim_template: Option<VolumeClaimSpec>,

    /// containerMode `kubernetes` only: the template of the pods the container
    /// hooks create for jobs and container steps (node selector,
    /// tolerations, resources, volumes, labels…), handed to them as the file
    /// `ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE` names. The hooks merge it into
    /// each pod they make: metadata labels and annotations are added; the
    /// container `$job` extends the job container and `$<name>` the service
    /// container `<name>` (their env, volumeMounts and ports are appended,
    /// other fields replace the hooks'; name and image are ignored); a
    /// container of any other name is added as is; volumes are appended;
    /// every other pod field replaces the hooks' own. A change reaches new
    /// runners; a runner keeps the template it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!has(self.metadata) || !(has(self.metadata.name) || has(self.metadata.generateName) || has(self.metadata.namespace))").message("jobPodTemplate.metadata: only labels and annotations reach the job pods; the container hooks name them and create them in the runner's namespace"))]
    #[x_kube(validation = Rule::new("!has(self.spec) || !has(self.spec.containers) || self.spec.containers.all(c, c.name.startsWith('$') || (has(c.image) && size(c.image) > 0))").message("jobPodTemplate.spec.containers: $job extends the job container and $<name> the service container <name>; a container of any other name is added to the job pod as is and needs an image"))]
    #[x_kube(validation = Rule::new("!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !(v.name in ['work', 'externals', 'github']))").message("jobPodTemplate.spec.volumes: work, externals and github are the container hooks' own volumes of a job pod; give yours other names"))]
    #[x_kube(validation = Rule::new("!has(self.spec) || !has(self.spec.restartPolicy) || self.spec.restartPolicy == 'Never'").message("jobPodTemplate.spec.restartPolicy must be Never or unset: a job pod runs its job once"))]
    #[x_kube(validation = Rule::new("!has(self.spec) || !has(self.spec.nodeName)").message("jobPodTemplate.spec.nodeName cannot be set: the container hooks put a job pod on its runner's node, where the runner's work volume claim is mounted"))]
    pub job_pod_template: Option<PodTemplateSpec>,

    /// Volumes mounted into the `runner` container, e.g. a shared
    /// ReadOnlyMany claim with a tool cache, or a claim made for each runner
    /// (ephemeral) for a dependency cache. A volume of the template with the
    /// same name is used instead of the source given here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.name == v.name))").message("cacheVolumes: every name must be unique"))]
    #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.mountPath == v.mountPath))").message("cacheVolumes: every mountPath must be unique"))]
    pub cache_volumes: Vec<CacheVolume>,

    /// The pod of every runner. The container named `runner` receives the
    /// just-in-time configuration in `ACTIONS_RUNNER_INPUT_JITCONFIG`, from a
    /// Secret the operator creates; the official runner image reads it when
    /// started as `/home/runner/run.sh`. `restartPolicy` is always `Never`;
    /// `automountServiceAccountToken` defaults to false. Jobs are untrusted:
    /// a template that uses the credentials Secret (volume, env valueFrom,
    /// envFrom) gets no runners and the pool turns Degraded (InvalidSpec).
    #[x_kube(validation = Rule::new("self.spec.containers.exists(c, c.name == 'runner')").message("template.spec.containers must contain a container named 'runner'"))]
    #[x_kube(validation = Rule::new("self.spec.containers.all(c, c.name != 'runner' || (has(c.image) && size(c.image) > 0))").message("the 'runner' container of template.spec.containers needs an image"))]
    pub template: PodTemplateSpec,
}

/// How the runner pod is built around the `runner` container.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum ContainerMode {
    #[default]
    None,
    Dind,
    Kubernetes,
}

/// A volume claim made for each runner.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimSpec {
    /// The StorageClass of the claim; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,

    /// The requested size, a Kubernetes quantity such as `10Gi`.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    )]
    pub size: String,

    /// Access modes of the claim. Default `[ReadWriteOnce]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 4),
        inner(regex(pattern = r"^(ReadWriteOnce|ReadOnlyMany|ReadWriteMany|ReadWriteOncePod)$"))
    )]
    pub access_modes: Option<Vec<String>>,
}

/// A volume mounted into the `runner` container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.name in ['work', 'dind-sock', 'dind-storage', 'dind-externals', 'job-pod-template'])").message("cacheVolumes: the names work, dind-sock, dind-storage, dind-externals and job-pod-template are the operator's own volumes"))]
pub struct CacheVolume {
    /// The volume's name in the pod (a DNS label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Where the runner sees it: an absolute path.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("cacheVolumes: mountPath must be an absolute path (start with /)"))]
    pub mount_path: String,

    /// Mount it read-only. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,

    /// Where the volume comes from: exactly one of persistentVolumeClaim or ephemeral.
    pub source: CacheVolumeSource,
}

/// The source of a cache volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.persistentVolumeClaim), has(self.ephemeral)].filter(x, x).size() == 1").message("cacheVolumes: set exactly one source, persistentVolumeClaim or ephemeral"))]
pub struct CacheVolumeSource {
    /// An existing claim in the pool's namespace, shared by every runner
    /// (ReadOnlyMany or ReadWriteMany for more than one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimReference>,

    /// A claim made for each runner and deleted with its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<VolumeClaimSpec>,
}

/// A PersistentVolumeClaim in the pool's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimReference {
    /// Name of the claim.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
}

/// An object in the same namespace, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Its metadata.name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// Scale the number of runners with demand.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minRunners) || self.minRunners <= self.maxRunners").message("minRunners must not exceed maxRunners"))]
#[x_kube(validation = Rule::new("!has(self.schedules) || self.schedules.all(w, !has(w.minRunners) || w.minRunners <= self.maxRunners)").message("schedules: minRunners of a window must not exceed maxRunners"))]
pub struct AutoscalingSpec {
    /// Never fewer runners than this. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_runners: Option<i32>,

    /// Never more runners than this.
    #[schemars(range(min = 0, max = 10000))]
    pub max_runners: i32,

    /// Idle runners to keep ready on top of the busy ones. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub idle_runners: Option<i32>,

    /// How long a surplus of idle runners must last before they are removed,
    /// so short lulls don't churn runners. Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_delay_seconds: Option<i32>,

    /// Windows of time that raise minRunners and idleRunners while they are
    /// active, e.g. more warm runners during working hours. A window whose
    /// end is before its start spans midnight; where windows overlap, the
    /// highest values apply. The pool is reconciled at every window's start
    /// and end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub schedules: Vec<CapacitySchedule>,
}

/// A window of scheduled capacity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end").message("schedules: start and end must differ (a window from 22:00 to 06:00 spans midnight)"))]
#[x_kube(validation = Rule::new("has(self.minRunners) || has(self.idleRunners)").message("schedules: set minRunners or idleRunners (or both): a window raises them while active"))]
pub struct CapacitySchedule {
    /// A name shown in status while the window is active. Default `start-end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,

    /// When the window opens, `HH:MM` (24-hour clock) in timeZone.
    #[schemars(length(min = 5, max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("schedules: start must be a time of day as HH:MM, 00:00 to 23:59"))]
    pub start: String,

    /// When the window closes, `HH:MM` in timeZone; before start means the
    /// next day.
    #[schemars(length(min = 5, max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("schedules: end must be a time of day as HH:MM, 00:00 to 23:59"))]
    pub end: String,

    /// The days the window opens on (a window spanning midnight closes the
    /// next day). Default: every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 7))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub days: Option<Vec<Weekday>>,

    /// An IANA time zone such as `Europe/Berlin`. Default `UTC`. An unknown
    /// zone leaves the window out and shows in status (Degraded, InvalidSpec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: Option<String>,

    /// minRunners while the window is active (when higher than the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_runners: Option<i32>,

    /// idleRunners while the window is active (when higher than the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub idle_runners: Option<i32>,
}

/// A day of the week.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// What the operator observed, for people, `kubectl wait` and GitOps health checks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPoolStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many runners the pool should have now.
    #[serde(default)]
    pub desired_runners: i32,
    /// Runners whose pod exists but which are not yet online on GitHub.
    #[serde(default)]
    pub pending_runners: i32,
    /// Runners online on GitHub and waiting for a job.
    #[serde(default)]
    pub idle_runners: i32,
    /// Runners running a job.
    #[serde(default)]
    pub busy_runners: i32,
    /// Runners whose pod failed and that are being removed.
    #[serde(default)]
    pub failed_runners: i32,
    /// Jobs queued for this pool (learnt from `workflow_job` webhooks) that no
    /// runner has taken yet. Always 0 without webhooks.
    #[serde(default)]
    pub queued_jobs: i32,
    /// The queued jobs themselves (at most 500, oldest first), kept so that a
    /// restarted or new leader knows them at once; see
    /// [`crate::demand::store`]. Absent without webhooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_jobs: Vec<WaitingJob>,
    /// The runner group the runners join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group_id: Option<i64>,
    /// Scheduled capacity (spec.autoscaling.schedules): the windows active
    /// now and the bounds in effect. Absent without schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleStatus>,
    /// The pool's runner version and the newest release GitHub serves to its
    /// scope. Absent while neither is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_version: Option<RunnerVersionStatus>,
    /// Scale-set mode: the scale set, its session and the service's last
    /// statistics. Absent in webhook mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_set: Option<ScaleSetStatus>,
    /// `Ready`: True (RunnersOnline) only when the desired runners are online
    /// on GitHub; False with RunnersStarting, WaitingForJobs (the pool is
    /// being deleted) or the problem's reason. `Reconciling` (kstatus): True
    /// while converging (ScalingUp, ScalingDown, WaitingForJobs, RateLimited,
    /// GitHubUnavailable, RunnersFailing), False (Converged, or Stalled).
    /// `Stalled` (kstatus): True for what needs a person (InvalidSpec,
    /// CredentialsInvalid, RunnerGroupNotFound, Rejected, PodRejected,
    /// ContainerModeNotPermitted, RunnerVersionDeprecated), else False
    /// (AsExpected). `Degraded`: True with the reason of any of those problems,
    /// else False (AsExpected). `RunnerVersionOutdated` (a warning: it never
    /// makes the pool not Ready): True (NewerReleaseAvailable) when the
    /// runners are older than the newest release, with the date by which
    /// GitHub stops sending them jobs at the latest; False (UpToDate);
    /// Unknown (VersionUnknown, LatestUnknown) when a version cannot be told.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A job queued for the pool that no runner has taken yet, as GitHub named it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WaitingJob {
    /// The job's id (`workflow_job.id`).
    pub id: u64,
    /// `owner/name` of the job's repository (where its jobs API read goes).
    pub repository: String,
    /// When the operator first learnt the job was queued (RFC 3339).
    pub queued_at: String,
}

/// The pool's runner version against the newest release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerVersionStatus {
    /// The newest runner release GitHub serves to the pool's scope (its
    /// `…/actions/runners/downloads`, read at most once an hour per scope by
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    /// When this operator first saw GitHub serve `latest` (RFC 3339). GitHub
    /// does not say when a release came out; it may be earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_first_seen: Option<String>,
    /// The pool's runner version: from the runner image's tag, else
    /// spec.runnerVersion. Absent when neither tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Whether `image` is older than `latest`. Absent when either is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated: Option<bool>,
}

/// The windows of scheduled capacity in effect.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The active windows, by name (or `start-end`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_windows: Vec<String>,
    /// minRunners in effect: the pool's, raised by the active windows.
    pub effective_min_runners: i32,
    /// idleRunners in effect: the pool's, raised by the active windows.
    pub effective_idle_runners: i32,
    /// When a window opens or closes next (RFC 3339); the pool is reconciled then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_change: Option<String>,
}

impl RunnerPool {
    pub fn runner_name_prefix(&self) -> &str {
        self.spec
            .runner_name_prefix
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or("runner")
    }

    pub fn work_folder(&self) -> &str {
        self.spec.work_folder.as_deref().unwrap_or("_work")
    }

    /// The image of the `runner` container.
    pub fn runner_image(&self) -> Option<&str> {
        self.spec
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == "runner")?
            .image
            .as_deref()
    }

    /// The scale set's name in scale-set mode (`spec.scaleSet.name`, by
    /// default the pool's name); `None` in webhook mode.
    pub fn scale_set_name(&self) -> Option<&str> {
        let spec = self.spec.scale_set.as_ref()?;
        spec.name.as_deref().or(self.metadata.name.as_deref())
    }

    pub fn container_mode(&self) -> ContainerMode {
        self.spec.container_mode
    }

    pub fn bootstrap_timeout(&self) -> std::time::Duration {
        let secs = self.spec.bootstrap_timeout_seconds.unwrap_or(600).max(1);
        std::time::Duration::from_secs(secs as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_status_subresource_short_name_and_columns() {
        let crd = RunnerPool::crd();
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["rp".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Desired",
                "Ready",
                "Idle",
                "Busy",
                "Queued",
                "Scale-Set",
                "Assigned",
                "Age"
            ]
        );
    }
}
