//! A runner's pod and everything it needs: its Secret and pod built from the
//! pool's template ([`build`]), the expansion for the pool's container mode
//! ([`container_mode`]: Docker-in-Docker, Kubernetes container hooks, work
//! and cache volumes), the hooks' ServiceAccount and Role ([`hooks`]), and
//! the restricted Pod Security settings runner pods get by default
//! ([`security`]), and which job a runner runs, on its pod ([`job`]).

pub mod build;
pub mod container_mode;
pub mod hooks;
pub mod job;
pub mod security;
