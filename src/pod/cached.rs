//! What the operator keeps of a runner pod in its watch cache: the metadata
//! (without managed fields) and the few status fields it reads, the pod's
//! phase, its `Ready` condition and how the `runner` container ended. The
//! spec, IPs, images and the other conditions and containers are dropped as
//! each pod arrives, so a cache of thousands of runners stays small.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodStatus,
};
use kube::ResourceExt;

use crate::runner::RUNNER_CONTAINER;

/// Trims `pod` to what the operator reads.
pub fn trim(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    pod.spec = None;
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    last_transition_time: c.last_transition_time,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .filter(|c| c.name == RUNNER_CONTAINER)
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c.state.and_then(|s| s.terminated).map(|t| ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: t.exit_code,
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::observe::pod_view;
    use crate::versions::exited_deprecated;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn what_the_operator_reads_of_a_pod_survives_the_trim() {
        let full = pod(serde_json::json!({
            "metadata": {
                "name": "ci-abc", "namespace": "ns",
                "labels": {"actions.runnerpool.dev/runner-id": "42"},
                "annotations": {"actions.runnerpool.dev/labels-hash": "h"},
                "creationTimestamp": "2026-12-07T00:00:00Z",
                "managedFields": [{"manager": "x"}]
            },
            "spec": {"containers": [{"name": "runner", "image": "i"}]},
            "status": {
                "phase": "Running",
                "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "qosClass": "BestEffort",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T00:00:05Z", "reason": "r", "message": "m"}
                ],
                "containerStatuses": [
                    {"name": "runner", "image": "i", "imageID": "x", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 7, "reason": "Error", "startedAt": "2026-12-07T00:00:01Z"}}},
                    {"name": "sidecar", "image": "j", "imageID": "y", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": "2026-12-07T00:00:01Z"}}}
                ]
            }
        }));
        let mut trimmed = full.clone();
        trim(&mut trimmed);
        assert_eq!(pod_view(&trimmed), pod_view(&full));
        assert!(exited_deprecated(&trimmed));
        assert!(trimmed.spec.is_none());
        assert!(trimmed.metadata.managed_fields.is_none_or(|m| m.is_empty()));
        let status = trimmed.status.unwrap();
        assert_eq!(status.host_ip, None);
        assert_eq!(status.conditions.unwrap().len(), 1);
        assert_eq!(status.container_statuses.unwrap().len(), 1);
    }
}
