//! The leader's mark on its own pod, so that Services and the ReplicaSet can
//! tell it from the standbys: the label [`LEADER_LABEL`] (valued with the
//! Lease's name, so two installations in one namespace never mix) that the
//! chart's webhook Service selects, and a pod deletion cost that makes a
//! rollout or a scale-down remove standbys before the leader.
//!
//! The leader marks its pod from the moment it holds the Lease and clears
//! the mark from any other pod (one left by a leader that was killed); a
//! replica clears its own pod's mark when it starts (a container restarted
//! in a pod that led) and when it stops leading. Marking goes through the
//! fenced client, so a replica that lost the Lease cannot mark itself late;
//! clearing its own mark never needs a claim. Needs `list` and `patch` on
//! pods of the pod's namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tracing::{debug, info, warn};

/// The label the leader's pod carries, valued with the Lease's name.
pub const LEADER_LABEL: &str = "actions.runnerpool.dev/leader";
/// Higher costs are removed last when a ReplicaSet scales down.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
const LEADER_DELETION_COST: &str = "100";

/// This replica's own pod, known from the downward API.
#[derive(Clone)]
pub struct LeaderPod {
    name: String,
    /// The label's value: the Lease's name.
    lease: String,
    /// Writes of a claim (fenced).
    acting: Api<Pod>,
    /// Clearing this pod's own mark, allowed without a claim.
    plain: Api<Pod>,
}

impl LeaderPod {
    /// The pod named by `POD_NAME` in `POD_NAMESPACE` (`env`), or none when
    /// either is unset (not in a pod) or the Lease's name cannot be a label
    /// value (more than 63 characters).
    pub fn from_env(
        plain: &kube::Client,
        acting: &kube::Client,
        lease: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<LeaderPod> {
        let set = |name: &str| env(name).filter(|s| !s.is_empty());
        let (name, namespace) = (set("POD_NAME")?, set("POD_NAMESPACE")?);
        if lease.len() > 63 {
            warn!(
                lease,
                "the Lease's name is too long for a label value: the leader's pod is not labelled"
            );
            return None;
        }
        Some(LeaderPod {
            name,
            lease: lease.to_string(),
            acting: Api::namespaced(acting.clone(), &namespace),
            plain: Api::namespaced(plain.clone(), &namespace),
        })
    }

    /// A merge patch setting the mark (valued with `lease`) or, with none,
    /// removing it.
    fn mark_patch(lease: Option<&str>) -> Patch<serde_json::Value> {
        Patch::Merge(json!({
            "metadata": {
                "labels": { LEADER_LABEL: lease },
                "annotations": { DELETION_COST_ANNOTATION: lease.map(|_| LEADER_DELETION_COST) },
            }
        }))
    }

    /// Marks this pod as the leader's and clears the mark from every other
    /// pod of the same Lease.
    pub async fn mark(&self) -> Result<(), kube::Error> {
        let params = PatchParams::default();
        let mark = Self::mark_patch(Some(&self.lease));
        self.acting.patch(&self.name, &params, &mark).await?;
        let selector = format!("{LEADER_LABEL}={}", self.lease);
        let marked = self
            .acting
            .list(&ListParams::default().labels(&selector))
            .await?;
        for pod in marked.items.iter().filter(|p| p.name_any() != self.name) {
            info!(pod = %pod.name_any(), "clearing the leader mark a former leader left");
            let clear = Self::mark_patch(None);
            match self.acting.patch(&pod.name_any(), &params, &clear).await {
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                answer => {
                    answer?;
                }
            }
        }
        info!(pod = %self.name, "this pod is marked as the leader's");
        Ok(())
    }

    /// Marks this pod, retrying every `retry` until it worked; run while
    /// leading (the task is dropped when leading ends).
    pub async fn mark_until_done(self, retry: Duration) {
        while let Err(e) = self.mark().await {
            warn!(error = %e, pod = %self.name, "cannot mark this pod as the leader's; retrying");
            tokio::time::sleep(retry).await;
        }
    }

    /// Clears this pod's own mark (a no-op without one), within `timeout`.
    pub async fn unmark(&self, timeout: Duration) {
        let (params, patch) = (PatchParams::default(), Self::mark_patch(None));
        let clear = self.plain.patch(&self.name, &params, &patch);
        match tokio::time::timeout(timeout, clear).await {
            Ok(Ok(_)) => debug!(pod = %self.name, "no leader mark on this pod"),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(e)) => {
                warn!(error = %e, pod = %self.name, "cannot clear the leader mark from this pod")
            }
            Err(_) => warn!(pod = %self.name, "clearing the leader mark from this pod timed out"),
        }
    }
}
