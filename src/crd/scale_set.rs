//! Scale-set mode of a `RunnerPool`: [`ScaleSetSpec`] (`spec.scaleSet`) and
//! what the operator reports of the scale set ([`ScaleSetStatus`]).
//!
//! In this mode GitHub's Actions service holds the pool's job queue: the
//! operator registers a runner scale set, keeps one message session open to
//! it and sizes the pool from the service's own statistics, so no inbound
//! webhook is needed.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The pool's runner scale set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetSpec {
    /// The scale set's name on GitHub, which workflows target with
    /// `runs-on: <name>`. Defaults to the pool's name. Unique within the
    /// runner group. Cannot change once the pool exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: Option<String>,
}

/// The scale set as the operator last saw it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetStatus {
    /// The scale set's id in the Actions service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The scale set's name (what workflows put in `runs-on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The message session the leader holds open, recorded so that the next
    /// leader (after a crash or a failover) closes it at once instead of
    /// waiting for the service to time it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The service's figures for the scale set, as of the last message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<ScaleSetStatistics>,
}

/// The Actions service's statistics of a scale set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetStatistics {
    /// Jobs offered to the scale set and not yet acquired (GHES).
    #[serde(default)]
    pub available_jobs: i64,
    /// Jobs acquired and waiting for assignment.
    #[serde(default)]
    pub acquired_jobs: i64,
    /// Jobs assigned to the scale set, running ones included: what the pool
    /// is sized on.
    #[serde(default)]
    pub assigned_jobs: i64,
    /// Jobs running on the scale set's runners.
    #[serde(default)]
    pub running_jobs: i64,
    /// Runners registered in the scale set.
    #[serde(default)]
    pub registered_runners: i64,
    /// Registered runners running a job.
    #[serde(default)]
    pub busy_runners: i64,
    /// Registered runners waiting for a job.
    #[serde(default)]
    pub idle_runners: i64,
}
