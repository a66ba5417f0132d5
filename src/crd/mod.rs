//! The custom resources of `actions.runnerpool.dev/v1alpha1`: `RunnerPool`,
//! `RunnerGroup` and `GitHubConnection`.
//!
//! The schema generated from these types is the CRD in `crds/`; the doc
//! comments are what `kubectl explain runnerpool.spec` prints, and the CEL
//! rules are what the API server answers when a spec is wrong.
//!
//! This module only declares its parts and re-exports their public names; the
//! parts import from each other, never from here:
//! - `runner_pool`: [`RunnerPool`] and the types of its spec and status;
//! - `runner_group`: [`RunnerGroup`] and the types of its spec and status;
//! - `scale_set`: [`ScaleSetSpec`] and [`ScaleSetStatus`], a pool's scale-set
//!   mode;
//! - `github`: [`GitHubSpec`], [`SecretReference`] and
//!   [`ConnectionReference`], which both kinds use;
//! - `github_connection`: [`GitHubConnection`] (cluster-scoped), credentials
//!   held outside the runners' namespaces;
//! - `definition`: [`custom_resource_definition`] and [`crd_yaml`], the CRDs
//!   to install.

mod definition;
mod github;
mod github_connection;
mod runner_group;
mod runner_pool;
mod scale_set;

pub use definition::{crd_yaml, custom_resource_definition};
pub use github::{ConnectionReference, GitHubSpec, SecretReference};
pub use github_connection::{GitHubConnection, GitHubConnectionSpec};
pub use runner_group::{
    DeletionPolicy, GroupGitHubSpec, RunnerGroup, RunnerGroupSpec, RunnerGroupStatus, Visibility,
};
pub use runner_pool::{
    AutoscalingSpec, CacheVolume, CacheVolumeSource, CapacitySchedule, ClaimReference,
    ContainerMode, LocalObjectReference, MAX_NAME_PREFIX, MAX_USER_LABELS, RunnerPool,
    RunnerPoolSpec, RunnerPoolStatus, RunnerVersionStatus, ScheduleStatus, VolumeClaimSpec,
    WaitingJob, Weekday,
};
pub use scale_set::{ScaleSetSpec, ScaleSetStatistics, ScaleSetStatus};
