//! What keeps the jobs of a pool away from what is not theirs, decided from
//! the pool alone: a pool whose runners could read its GitHub credentials is
//! refused (a template using the credentials Secret; in kubernetes mode, whose
//! jobs may read the namespace's Secrets, a credentials Secret beside the
//! runners or the connections namespace itself). What the operator cannot
//! decide alone, other pools and credentials sharing a kubernetes-mode pool's
//! namespace, is a Warning event.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use tracing::warn;

use super::context::{Context, uid};
use crate::RunnerPool;
use crate::crd::{ContainerMode, RunnerGroup};
use crate::kit::problem::{Blocked, Problem};
use crate::pod::build::credentials_exposure as runner_credentials_exposure;

/// Why the pool's runners could read its credentials, if they could. In
/// kubernetes mode the container hooks' Role lets every job read the
/// namespace's Secrets, so a credentials Secret there, or the connections
/// namespace itself, is refused (not merely warned about: the mode is opted
/// into, and a warning would leave an organization's admin token readable
/// by every job).
pub fn credentials_within_reach(pool: &RunnerPool, connections_namespace: &str) -> Option<Blocked> {
    let kubernetes = pool.container_mode() == ContainerMode::Kubernetes;
    let namespace = pool.namespace().unwrap_or_default();
    if kubernetes && namespace == connections_namespace {
        return Some(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "containerMode kubernetes cannot run in namespace {namespace:?}: it is the operator's connections namespace, which holds the credentials of every GitHubConnection, and the container hooks' Role lets every job read its Secrets. Move the pool to a namespace of its own"
            ),
        ));
    }
    let secret = pool.spec.github.credentials_secret.as_ref()?;
    if kubernetes {
        return Some(Blocked::new(
            Problem::InvalidSpec,
            format!(
                "containerMode kubernetes cannot use spec.github.credentialsSecret {:?}: the container hooks' Role lets every job read the Secrets of namespace {:?}. Keep the credentials in a GitHubConnection (spec.github.connectionRef) and delete the Secret from this namespace; no runner is created until then",
                secret.name, namespace
            ),
        ));
    }
    let place = runner_credentials_exposure(pool)?;
    Some(Blocked::new(
        Problem::InvalidSpec,
        format!(
            "spec.template uses the credentials Secret {:?} ({place}); runner pods run untrusted jobs and must not see it: no runner is created until it is removed",
            secret.name
        ),
    ))
}

/// In kubernetes mode every job may read the Secrets of its namespace, exec
/// into its pods and run pods as any of its ServiceAccounts: other pools
/// there (their runners' JIT Secrets, their pods), and RunnerPools or
/// RunnerGroups keeping credentials there, are within its reach. Announces
/// them as one Warning event `SharedNamespace` each time what it names
/// changes. A failed list is logged and tried again at the next interval.
pub async fn warn_if_shared(pool: &RunnerPool, ctx: &Context) {
    let namespace = pool.namespace().unwrap_or_default();
    let pools = Api::<RunnerPool>::namespaced(ctx.client.clone(), &namespace);
    let groups = Api::<RunnerGroup>::namespaced(ctx.client.clone(), &namespace);
    let (pools, groups) = match (
        pools.list(&ListParams::default()).await,
        groups.list(&ListParams::default()).await,
    ) {
        (Ok(pools), Ok(groups)) => (pools.items, groups.items),
        (Err(e), _) | (_, Err(e)) => {
            warn!(pool = %pool.name_any(), error = %e, "cannot list the namespace's pools and groups");
            return;
        }
    };
    let others: BTreeSet<String> = pools
        .iter()
        .filter(|p| p.name_any() != pool.name_any())
        .map(|p| format!("RunnerPool {:?}", p.name_any()))
        .collect();
    let with_credentials: BTreeSet<String> = pools
        .iter()
        .filter(|p| p.spec.github.credentials_secret.is_some())
        .map(|p| format!("RunnerPool {:?}", p.name_any()))
        .chain(
            groups
                .iter()
                .filter(|g| g.spec.github.credentials_secret.is_some())
                .map(|g| format!("RunnerGroup {:?}", g.name_any())),
        )
        .collect();
    let note = shared_namespace_note(&namespace, &others, &with_credentials);
    let changed = ctx.memory.with(&uid(pool), |m| {
        std::mem::replace(&mut m.shared_namespace, note.clone()) != note
    });
    if let (true, Some(note)) = (changed, note) {
        ctx.event(
            pool,
            EventType::Warning,
            "SharedNamespace",
            "Reconcile",
            note,
        )
        .await;
    }
}

/// The Warning for a kubernetes-mode pool sharing `namespace` with `others`
/// and with objects keeping credentials there; `None` when it shares nothing.
fn shared_namespace_note(
    namespace: &str,
    others: &BTreeSet<String>,
    with_credentials: &BTreeSet<String>,
) -> Option<String> {
    let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
    match (others.is_empty(), with_credentials.is_empty()) {
        (true, true) => None,
        (_, false) => Some(format!(
            "every job of this containerMode kubernetes pool may read the Secrets of namespace {namespace:?}, where {} keep(s) GitHub credentials (spec.github.credentialsSecret): move them to a GitHubConnection, or this pool to a namespace of its own",
            list(with_credentials)
        )),
        (false, true) => Some(format!(
            "every job of this containerMode kubernetes pool may read the Secrets and exec into the pods of namespace {namespace:?}, which it shares with {}: their runners' jobs and JIT configurations are within its reach. Give each kubernetes-mode pool a namespace of its own",
            list(others)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{credentials_within_reach, shared_namespace_note};
    use crate::pod::build::tests::{POOL, pool_from_yaml};

    #[test]
    fn kubernetes_mode_keeps_no_credentials_within_its_jobs_reach() {
        let plain = pool_from_yaml(POOL);
        assert!(credentials_within_reach(&plain, "ops").is_none());
        let kube = |github: &str| {
            let yaml = POOL
                .replace("\nspec:\n", "\nspec:\n  containerMode: kubernetes\n  workVolumeClaimTemplate: { size: 1Gi }\n")
                .replace("credentialsSecret: { name: gh }", github);
            pool_from_yaml(&yaml)
        };
        let in_namespace =
            credentials_within_reach(&kube("credentialsSecret: { name: gh }"), "ops")
                .expect("a credentials Secret beside kubernetes-mode runners is refused");
        assert_eq!(in_namespace.problem.reason(), "InvalidSpec");
        assert!(
            in_namespace.message.contains("GitHubConnection"),
            "{}",
            in_namespace.message
        );
        let connected = kube("connectionRef: { name: acme }");
        assert!(credentials_within_reach(&connected, "ops").is_none());
        let ns = connected.metadata.namespace.clone().unwrap();
        let beside =
            credentials_within_reach(&connected, &ns).expect("not in the connections namespace");
        assert!(
            beside.message.contains("connections namespace"),
            "{}",
            beside.message
        );
    }

    #[test]
    fn a_shared_namespace_is_named_and_credentials_there_come_first() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        assert_eq!(shared_namespace_note("ci", &set(&[]), &set(&[])), None);
        let others = shared_namespace_note("ci", &set(&["RunnerPool \"b\""]), &set(&[])).unwrap();
        assert!(
            others.contains("RunnerPool \"b\"") && others.contains("namespace of its own"),
            "{others}"
        );
        let credentials = shared_namespace_note(
            "ci",
            &set(&["RunnerPool \"b\""]),
            &set(&["RunnerGroup \"g\""]),
        )
        .unwrap();
        assert!(
            credentials.contains("RunnerGroup \"g\"") && credentials.contains("GitHubConnection"),
            "{credentials}"
        );
    }
}
