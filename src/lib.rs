//! runnerpool-operator: ephemeral, just-in-time GitHub Actions runners as Kubernetes pods.
#![forbid(unsafe_code)]

pub mod github;
