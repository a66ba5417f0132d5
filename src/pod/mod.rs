//! A runner's pod and everything it needs: its Secret and pod built from the
//! pool's template ([`build`]), the expansion for the pool's container mode
//! ([`container_mode`]: Docker-in-Docker, Kubernetes container hooks, work
//! and cache volumes), the hooks' ServiceAccount and Role ([`hooks`]) and
//! the template of the pods they make for jobs ([`job_pod_template`]), and
//! the restricted Pod Security settings runner pods get by default
//! ([`security`]), which job a runner runs, on its pod ([`job`]), and what
//! the operator keeps of a pod in its cache ([`cached`]).

pub mod build;
pub mod cached;
pub mod container_mode;
pub mod hooks;
pub mod job;
pub mod job_pod_template;
pub mod security;
