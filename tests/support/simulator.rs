//! The runner side of a runner pod, which kwok does not run: a Running pod's
//! runner reads its JIT config and comes online on the GitHub fake; once the
//! fake has removed an ephemeral runner after its job, the process "exits 0"
//! and the pod completes through the rig's kwok stage. Shared by the
//! integration tests, the demo and the benchmarks (included with `#[path]`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_github::FakeGitHub;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use runnerpool::runner::{JIT_CONFIG_ENV, RUNNER_ID_LABEL};

/// The kwok stage annotation that finishes a runner pod (tests/cluster/README.md).
pub const COMPLETE_ANNOTATION: &str = "kwok.runnerpool.dev/complete";
/// A pod with this annotation plays a runner that never manages to come online.
pub const STAY_OFFLINE_ANNOTATION: &str = "simulator.runnerpool.dev/stay-offline";

/// Plays the runner processes of our pods (see [`simulate_runner_pods`]).
pub async fn simulate_runners(
    client: kube::Client,
    ns: String,
    fake: FakeGitHub,
    seen: Arc<Mutex<BTreeSet<String>>>,
) {
    simulate_runner_pods(client, ns, fake, seen, RUNNER_ID_LABEL).await
}

/// Plays the runner processes of the pods matching `selector` (ours, or
/// actions-runner-controller's EphemeralRunner pods): a Running pod's runner
/// reads its JIT config as the kubelet hands it over (the Secret key that
/// `ACTIONS_RUNNER_INPUT_JITCONFIG` refers to) and comes online; once GitHub
/// has removed an ephemeral runner after its job, the process exits 0 and the
/// pod completes (through the kwok stage). A runner whose pod is gone goes
/// offline. A pod that names its runner in [`RUNNER_ID_LABEL`] must be given
/// that runner's config.
pub async fn simulate_runner_pods(
    client: kube::Client,
    ns: String,
    fake: FakeGitHub,
    seen: Arc<Mutex<BTreeSet<String>>>,
    selector: &str,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    // pod uid → the runner id its process came online as
    let mut started: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(list) = pods.list(&ListParams::default().labels(selector)).await else {
            continue;
        };
        let jobs = fake.jobs();
        // A runner whose pod is gone (deleted, evicted) lost its process:
        // GitHub shows it offline, as it would a real one.
        let alive: BTreeSet<&str> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        started.retain(|uid, id| {
            let keep = alive.contains(uid.as_str());
            if !keep {
                let _ = fake.set_online(*id, false);
            }
            keep
        });
        for pod in &list.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if !running || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if pod
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(STAY_OFFLINE_ANNOTATION))
            {
                continue;
            }
            let Some(&id) = started.get(&uid) else {
                let Some((secret, key)) = jit_config_ref(pod) else {
                    continue;
                };
                let Ok(secret) = secrets.get(&secret).await else {
                    continue;
                };
                let Some(data) = secret.data.as_ref().and_then(|d| d.get(&key)) else {
                    continue;
                };
                let encoded = String::from_utf8_lossy(&data.0).into_owned();
                let Ok(info) = fake_github::decode_jit_config(&encoded) else {
                    continue;
                };
                seen.lock().unwrap().insert(encoded);
                // The runner's own identity must be the pod's: one config, one pod.
                let labelled = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(RUNNER_ID_LABEL))
                    .map(|v| v.parse::<u64>().ok());
                if labelled.is_none_or(|l| l == Some(info.id))
                    && fake.set_online(info.id, true).is_ok()
                {
                    started.insert(uid, info.id);
                }
                continue;
            };
            let job_done = jobs
                .iter()
                .any(|j| j.runner_id == Some(id) && j.status == fake_github::JobStatus::Completed);
            if job_done && fake.runner(id).is_none() {
                let patch = serde_json::json!({"metadata": {"annotations": {COMPLETE_ANNOTATION: "succeeded"}}});
                let _ = pods
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
        }
    }
}

/// The Secret and key the pod's `ACTIONS_RUNNER_INPUT_JITCONFIG` comes from.
fn jit_config_ref(pod: &Pod) -> Option<(String, String)> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == JIT_CONFIG_ENV)?
        .value_from
        .as_ref()?
        .secret_key_ref
        .as_ref()
        .map(|r| (r.name.clone(), r.key.clone()))
}
