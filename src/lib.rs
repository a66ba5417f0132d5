//! runnerpool-operator: ephemeral, just-in-time GitHub Actions runners as Kubernetes pods.
#![forbid(unsafe_code)]

pub mod connection;
pub mod controller;
pub mod convert;
pub mod crd;
pub mod demand;
pub mod github;
pub mod groups;
pub mod inventory;
pub mod kit;
pub mod leader;
pub mod metrics;
pub mod mutex;
pub mod operator;
pub mod pod;
pub mod runner;
pub mod scaleset;
pub mod versions;
pub mod webhook;

pub use crd::{RunnerGroup, RunnerPool, RunnerPoolSpec, RunnerPoolStatus, crd_yaml};
