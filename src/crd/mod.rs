//! The custom resources of `actions.runnerpool.dev/v1alpha1`: `RunnerPool`
//! and `RunnerGroup`.
//!
//! The schema generated from these types is the CRD in `crds/`; the doc
//! comments are what `kubectl explain runnerpool.spec` prints, and the CEL
//! rules are what the API server answers when a spec is wrong.
//!
//! This module only declares its parts and re-exports their public names; the
//! parts import from each other, never from here:
//! - `runner_pool`: [`RunnerPool`] and the types of its spec and status;
//! - `runner_group`: [`RunnerGroup`] and the types of its spec and status;
//! - `github`: [`GitHubSpec`] and [`SecretReference`], which both kinds use;
//! - `definition`: [`custom_resource_definition`] and [`crd_yaml`], the CRDs
//!   to install.

mod definition;
mod github;
mod runner_group;
mod runner_pool;

pub use definition::{crd_yaml, custom_resource_definition};
pub use github::{GitHubSpec, SecretReference};
pub use runner_group::{
    DeletionPolicy, GroupGitHubSpec, RunnerGroup, RunnerGroupSpec, RunnerGroupStatus, Visibility,
};
pub use runner_pool::{
    AutoscalingSpec, CacheVolume, CacheVolumeSource, CapacitySchedule, ClaimReference,
    ContainerMode, LocalObjectReference, MAX_NAME_PREFIX, MAX_USER_LABELS, RunnerPool,
    RunnerPoolSpec, RunnerPoolStatus, RunnerVersionStatus, ScheduleStatus, VolumeClaimSpec,
    WaitingJob, Weekday,
};
