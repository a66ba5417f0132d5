//! The security settings runner pods get by default, so that pods of modes
//! `none` and `kubernetes` pass the "restricted" Pod Security level: the pod
//! runs as the official runner image's non-root user under the runtime's
//! seccomp profile, and no container may gain privileges or keep a
//! capability. Only what the template leaves unset is filled in. Pure,
//! called by [`super::container_mode::expand`].

use k8s_openapi::api::core::v1::{Capabilities, Container, PodSpec, SeccompProfile};

/// The `runner` user of the official runner image (`ghcr.io/actions/actions-runner`).
/// Its Dockerfile says `USER runner`, a name: the kubelet cannot tell that
/// a named user is not root, so `runAsNonRoot` needs the uid spelled out.
pub const RUNNER_UID: i64 = 1001;
/// The image's `docker` group, which owns `/home/runner` and the dind socket.
pub const DOCKER_GID: i64 = 123;

/// Fills in the pod's and its containers' security settings the template
/// leaves unset. A template with a privileged container asked for more than
/// the restricted level allows: it is left as it is (running it as a
/// non-root user would only break that container).
pub fn restrict(spec: &mut PodSpec) {
    let mut containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    if containers.any(is_privileged) {
        return;
    }
    let pod = spec.security_context.get_or_insert_with(Default::default);
    if *pod.run_as_non_root.get_or_insert(true) {
        pod.run_as_user.get_or_insert(RUNNER_UID);
        pod.run_as_group.get_or_insert(DOCKER_GID);
        // Volume claims (the work directory, caches) writable by the runner.
        pod.fs_group.get_or_insert(DOCKER_GID);
    }
    pod.seccomp_profile.get_or_insert_with(|| SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    });
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(&mut spec.containers);
    for container in containers {
        let context = container
            .security_context
            .get_or_insert_with(Default::default);
        context.allow_privilege_escalation.get_or_insert(false);
        context
            .capabilities
            .get_or_insert_with(Capabilities::default)
            .drop
            .get_or_insert_with(|| vec!["ALL".to_string()]);
    }
}

/// Whether the container asks to run privileged.
pub fn is_privileged(container: &Container) -> bool {
    container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::build::runner_pod;
    use crate::pod::build::tests::{POOL, pool_from_yaml};

    fn spec_of(yaml: &str) -> PodSpec {
        runner_pod(&pool_from_yaml(yaml), "ci-abcde", 1, "h")
            .spec
            .unwrap()
    }

    fn assert_restricted(spec: &PodSpec) {
        let pod = spec
            .security_context
            .as_ref()
            .expect("a pod securityContext");
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(
            (pod.run_as_user, pod.run_as_group, pod.fs_group),
            (Some(RUNNER_UID), Some(DOCKER_GID), Some(DOCKER_GID))
        );
        let seccomp = pod.seccomp_profile.as_ref().map(|p| p.type_.as_str());
        assert_eq!(seccomp, Some("RuntimeDefault"));
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let context = c.security_context.as_ref().expect("a securityContext");
            assert_eq!(
                context.allow_privilege_escalation,
                Some(false),
                "{}",
                c.name
            );
            let drop = context.capabilities.as_ref().and_then(|c| c.drop.clone());
            assert_eq!(drop, Some(vec!["ALL".to_string()]), "{}", c.name);
        }
    }

    #[test]
    fn modes_none_and_kubernetes_are_restricted_by_default() {
        assert_restricted(&spec_of(POOL));
        let kubernetes = POOL.replace(
            "  replicas: 2",
            "  replicas: 2\n  containerMode: kubernetes\n  workVolumeClaimTemplate: { size: 1Gi }",
        );
        let spec = spec_of(&kubernetes);
        assert_eq!(spec.automount_service_account_token, Some(true));
        assert_restricted(&spec);
    }

    #[test]
    fn dind_pods_are_left_as_the_mode_builds_them() {
        let spec = spec_of(&POOL.replace("  replicas: 2", "  replicas: 2\n  containerMode: dind"));
        assert!(spec.security_context.is_none());
        let unprivileged = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter(|c| c.name != crate::pod::container_mode::DIND_CONTAINER);
        for c in unprivileged {
            assert!(c.security_context.is_none(), "{}", c.name);
        }
    }

    #[test]
    fn the_templates_own_settings_win() {
        let yaml = POOL
            .replace(
                "      restartPolicy: Always",
                "      restartPolicy: Always\n      securityContext: { runAsUser: 2000, seccompProfile: { type: Localhost, localhostProfile: runner.json } }",
            )
            .replace(
                "          image: busybox",
                "          image: busybox\n          securityContext: { allowPrivilegeEscalation: true, capabilities: { add: [NET_BIND_SERVICE], drop: [NET_RAW] } }",
            );
        let spec = spec_of(&yaml);
        let pod = spec.security_context.as_ref().unwrap();
        assert_eq!(
            (pod.run_as_user, pod.run_as_group),
            (Some(2000), Some(DOCKER_GID))
        );
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(pod.seccomp_profile.as_ref().unwrap().type_, "Localhost");
        let sidecar = spec
            .containers
            .iter()
            .find(|c| c.name == "sidecar")
            .unwrap();
        let context = sidecar.security_context.as_ref().unwrap();
        assert_eq!(context.allow_privilege_escalation, Some(true));
        let capabilities = context.capabilities.as_ref().unwrap();
        assert_eq!(capabilities.drop, Some(vec!["NET_RAW".to_string()]));
        assert_eq!(capabilities.add, Some(vec!["NET_BIND_SERVICE".to_string()]));

        // A pod the template lets run as root gets no user or group.
        let root = POOL.replace(
            "      restartPolicy: Always",
            "      restartPolicy: Always\n      securityContext: { runAsNonRoot: false }",
        );
        let pod = spec_of(&root).security_context.unwrap();
        assert_eq!(pod.run_as_non_root, Some(false));
        assert_eq!(
            (pod.run_as_user, pod.run_as_group, pod.fs_group),
            (None, None, None)
        );
    }

    #[test]
    fn a_template_with_a_privileged_container_is_left_alone() {
        let yaml = POOL.replace(
            "          image: busybox",
            "          image: docker:29.9.0-dind\n          securityContext: { privileged: true }",
        );
        let spec = spec_of(&yaml);
        assert!(spec.security_context.is_none());
        let runner = spec.containers.iter().find(|c| c.name == "runner").unwrap();
        assert!(runner.security_context.is_none());
    }
}
