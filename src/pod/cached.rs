//! What the operator keeps of a runner pod in its watch cache: a
//! [`CachedPod`], the metadata (without managed fields) and the three things
//! it reads of the status: the pod's phase, since when it is `Ready`, and how
//! the `runner` container ended. Pods are read straight into it from the
//! watch, so the spec, IPs, images and the other conditions and containers
//! are never held: a `Pod` is 2.4 KB before any of its strings, this a sixth
//! of that, which is most of the cache of thousands of runners.

use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use kube::api::ObjectMeta;
use serde::Deserialize;

use crate::pod::job_pod_template::JOB_POD_TEMPLATE_ANNOTATION;
use crate::runner::{
    LABELS_HASH_ANNOTATION, POOL_LABEL, POOL_UID_LABEL, RUNNER_CONTAINER, RUNNER_ID_LABEL,
};

/// A runner pod as the watch cache keeps it (read through an
/// `Api<CachedPod>`, which lists and watches pods).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedPod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: RunnerPodStatus,
}

/// What the operator reads of a runner pod's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Option<StatusWire>")]
pub struct RunnerPodStatus {
    pub phase: Option<String>,
    /// When the pod became Ready, while it is (its runner process started).
    pub ready_since: Option<Timestamp>,
    /// The exit code of the `runner` container, once it terminated.
    pub runner_exit_code: Option<i32>,
}

impl k8s_openapi::Resource for CachedPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = NamespaceResourceScope;
}

impl k8s_openapi::Metadata for CachedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drops what the operator does not read of a cached pod's metadata.
pub fn trim(pod: &mut CachedPod) {
    trim_meta(&mut pod.metadata);
}

/// Keeps of a runner pod's metadata only what the operator reads: the name,
/// namespace, creation and deletion times, the labels saying whose runner it
/// is, and the annotations it wrote for itself (the labels hash, the job pod
/// template). A template's own labels and annotations, the job annotations
/// put on busy runners, UID, resource version and managed fields are never
/// read back, and with thousands of runners are megabytes. Owner references
/// are kept only on a pod without the pool-UID label (made by an older
/// operator: its pool is known by them).
fn trim_meta(meta: &mut ObjectMeta) {
    let labelled = meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(POOL_UID_LABEL));
    let kept = ObjectMeta {
        owner_references: if labelled {
            None
        } else {
            meta.owner_references.take()
        },
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        creation_timestamp: meta.creation_timestamp.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        labels: only(
            meta.labels.take(),
            &[POOL_LABEL, POOL_UID_LABEL, RUNNER_ID_LABEL],
        ),
        annotations: only(
            meta.annotations.take(),
            &[LABELS_HASH_ANNOTATION, JOB_POD_TEMPLATE_ANNOTATION],
        ),
        ..ObjectMeta::default()
    };
    *meta = kept;
}

fn only(map: Option<BTreeMap<String, String>>, keys: &[&str]) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = map?
        .into_iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

// The parts of a pod's status on the wire that are read; serde skips the rest
// without keeping it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusWire {
    phase: Option<String>,
    conditions: Option<Vec<ConditionWire>>,
    container_statuses: Option<Vec<ContainerWire>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConditionWire {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    last_transition_time: Option<Time>,
}

#[derive(Deserialize)]
struct ContainerWire {
    name: String,
    state: Option<StateWire>,
}

#[derive(Deserialize)]
struct StateWire {
    terminated: Option<TerminatedWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TerminatedWire {
    exit_code: i32,
}

impl From<Option<StatusWire>> for RunnerPodStatus {
    fn from(status: Option<StatusWire>) -> Self {
        let Some(status) = status else {
            return RunnerPodStatus::default();
        };
        RunnerPodStatus {
            phase: status.phase,
            ready_since: status
                .conditions
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Ready" && c.status == "True")
                .and_then(|c| c.last_transition_time)
                .map(|t| t.0),
            runner_exit_code: status
                .container_statuses
                .into_iter()
                .flatten()
                .find(|c| c.name == RUNNER_CONTAINER)
                .and_then(|c| c.state?.terminated)
                .map(|t| t.exit_code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn cached(json: serde_json::Value) -> CachedPod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn what_the_operator_reads_of_a_pod_is_kept() {
        let mut pod = cached(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "ci-abc", "namespace": "ns",
                "labels": {
                    "actions.runnerpool.dev/runner-id": "42",
                    "actions.runnerpool.dev/pool-uid": "p",
                    "app.kubernetes.io/managed-by": "runnerpool-operator",
                    "team": "infra"
                },
                "annotations": {
                    "actions.runnerpool.dev/labels-hash": "h",
                    "actions.runnerpool.dev/job-repository": "acme/app",
                    "note": "kept by the template"
                },
                "uid": "u", "resourceVersion": "7",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u2"}],
                "creationTimestamp": "2026-12-07T00:00:00Z",
                "managedFields": [{"manager": "x"}]
            },
            "spec": {"containers": [{"name": "runner", "image": "i"}]},
            "status": {
                "phase": "Running",
                "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "qosClass": "BestEffort",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T00:00:01Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T00:00:05Z", "reason": "r", "message": "m"}
                ],
                "containerStatuses": [
                    {"name": "sidecar", "image": "j", "imageID": "y", "ready": true, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 1}}},
                    {"name": "runner", "image": "i", "imageID": "x", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 7, "reason": "Error", "startedAt": "2026-12-07T00:00:01Z"}}}
                ]
            }
        }));
        trim(&mut pod);
        assert_eq!(
            pod.status,
            RunnerPodStatus {
                phase: Some("Running".into()),
                ready_since: Some("2026-12-07T00:00:05Z".parse().unwrap()),
                runner_exit_code: Some(7),
            }
        );
        assert_eq!(pod.name_any(), "ci-abc");
        assert_eq!(pod.namespace().as_deref(), Some("ns"));
        assert_eq!(
            pod.labels().keys().collect::<Vec<_>>(),
            [POOL_UID_LABEL, RUNNER_ID_LABEL]
        );
        assert_eq!(
            pod.annotations().keys().collect::<Vec<_>>(),
            [LABELS_HASH_ANNOTATION]
        );
        assert!(pod.metadata.creation_timestamp.is_some());
        assert_eq!(
            pod.metadata,
            ObjectMeta {
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                creation_timestamp: pod.metadata.creation_timestamp.clone(),
                labels: pod.metadata.labels.clone(),
                annotations: pod.metadata.annotations.clone(),
                ..ObjectMeta::default()
            },
            "nothing else is kept"
        );
    }

    #[test]
    fn a_pod_without_the_pool_uid_label_keeps_its_owners() {
        let mut pod = cached(serde_json::json!({
            "metadata": {
                "name": "p",
                "labels": {"actions.runnerpool.dev/pool": "ci"},
                "ownerReferences": [{"apiVersion": "actions.runnerpool.dev/v1alpha1", "kind": "RunnerPool",
                                     "name": "ci", "uid": "u", "controller": true}]
            }
        }));
        trim(&mut pod);
        assert_eq!(pod.owner_references().len(), 1);
    }

    #[test]
    fn a_pod_not_ready_or_without_status_reads_as_nothing_known() {
        let not_ready = cached(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-07T00:00:05Z"}],
                "containerStatuses": [{"name": "runner", "state": {"waiting": {"reason": "ContainerCreating"}}}]
            }
        }));
        assert_eq!(not_ready.status.phase.as_deref(), Some("Pending"));
        assert_eq!(not_ready.status.ready_since, None);
        assert_eq!(not_ready.status.runner_exit_code, None);
        for json in [
            serde_json::json!({"metadata": {"name": "p"}}),
            serde_json::json!({"metadata": {"name": "p"}, "status": null}),
        ] {
            assert_eq!(cached(json).status, RunnerPodStatus::default());
        }
    }
}
