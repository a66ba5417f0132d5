//! actions-runner-controller (ARC) v0.27.6 in its legacy mode (RunnerDeployment
//! and HorizontalRunnerAutoscaler), for the side-by-side benchmark
//! (`benches/vs_arc.rs`): its two processes run outside the cluster against
//! the local control plane and the GitHub fake, built by
//! `tests/cluster/arc.sh`; and the runner side of its pods, which kwok does
//! not run: a Running runner pod registers itself with the shared
//! registration token, as `config.sh` would, and finishes like ours.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_github::{FakeGitHub, Scope};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::cluster;
use super::simulator::COMPLETE_ANNOTATION;

/// The label ARC puts on every runner pod.
pub const RUNNER_POD_LABEL: &str = "actions-runner";

/// Runs `tests/cluster/arc.sh ARGS` and returns its answer (a path).
pub fn arc_sh(args: &[&str]) -> PathBuf {
    let out = Command::new(cluster::repo_path("tests/cluster/arc.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/cluster/arc.sh");
    assert!(out.status.success(), "tests/cluster/arc.sh {args:?} failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Builds ARC if missing and applies its CRDs, both modes' (server-side:
/// they are too large for a client-side apply's annotation).
pub fn install_arc() -> PathBuf {
    let bin = arc_sh(&["build"]);
    let crds = arc_sh(&["crd-dir"]);
    let crds = crds.to_str().expect("utf-8 path");
    cluster::expect_success(
        "applying ARC's CRDs",
        &cluster::kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds]),
    );
    for crd in [
        "runnerdeployments.actions.summerwind.dev",
        "horizontalrunnerautoscalers.actions.summerwind.dev",
        "runnerreplicasets.actions.summerwind.dev",
        "runners.actions.summerwind.dev",
        "autoscalingrunnersets.actions.github.com",
        "ephemeralrunnersets.actions.github.com",
        "ephemeralrunners.actions.github.com",
        "autoscalinglisteners.actions.github.com",
    ] {
        cluster::expect_success(
            "waiting for ARC's CRDs",
            &cluster::kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}"),
            ]),
        );
    }
    bin
}

/// Where the ARC processes of namespace `ns` log, with their TMPDIR:
/// controller-runtime reads its serving certificate from
/// $TMPDIR/k8s-webhook-server/serving-certs, and a private TMPDIR (with a
/// fresh self-signed certificate) keeps it apart from anything else on the
/// machine.
pub fn log_dir(ns: &str) -> PathBuf {
    let logs = cluster::repo_root()
        .join("target/test-logs")
        .join(format!("arc-{ns}"));
    arc_sh(&[
        "serving-cert",
        logs.join("tmp/k8s-webhook-server/serving-certs")
            .to_str()
            .expect("utf-8 path"),
    ]);
    logs
}

/// Starts ARC's binary `name` from `bin` with the rig's kubeconfig and the
/// TMPDIR of `logs` ([`log_dir`]), logging to `logs/NAME.log`.
pub fn spawn(
    bin: &Path,
    name: &str,
    logs: &Path,
    args: &[String],
    env: &[(&str, String)],
) -> Child {
    let tmp = logs.join("tmp");
    let file = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
    Command::new(bin.join(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("KUBECONFIG", &cluster::test_cluster().kubeconfig)
        .env("TMPDIR", &tmp)
        .env_remove("GITHUB_ENTERPRISE_URL")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting ARC's {name}: {e}"))
}

/// Resident memory of the processes `pids`, in KiB (Linux).
pub fn rss_kib(pids: impl IntoIterator<Item = u32>) -> u64 {
    pids.into_iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// ARC's controller manager and its `githubwebhookserver`, watching one
/// namespace, authenticating to the fake with a token.
pub struct ArcController {
    manager: Child,
    webhook_server: Child,
    /// Where the fake sends `workflow_job` deliveries.
    pub webhook_url: String,
    pub logs: PathBuf,
}

impl ArcController {
    /// Starts both processes. `github_url` is the fake's github.com-style
    /// API base; `secret` the webhook secret.
    pub fn start(bin: &Path, ns: &str, github_url: &str, token: &str, secret: &str) -> Self {
        let logs = log_dir(ns);
        let env = [
            ("GITHUB_TOKEN", token.to_string()),
            (
                "GITHUB_URL",
                format!("{}/", github_url.trim_end_matches('/')),
            ),
            ("GITHUB_WEBHOOK_SECRET_TOKEN", secret.to_string()),
        ];
        // Metrics off ("0"); the admission webhook (always started; nothing
        // calls it) on a free port. Everything else: ARC's defaults.
        let manager = spawn(
            bin,
            "manager",
            &logs,
            &[
                "--metrics-addr=0".into(),
                format!("--port={}", free_port()),
                format!("--watch-namespace={ns}"),
            ],
            &env,
        );
        let port = free_port();
        let webhook_server = spawn(
            bin,
            "githubwebhookserver",
            &logs,
            &[
                "--metrics-addr=0".into(),
                format!("--webhook-addr=127.0.0.1:{port}"),
                format!("--watch-namespace={ns}"),
            ],
            &env,
        );
        ArcController {
            manager,
            webhook_server,
            webhook_url: format!("http://127.0.0.1:{port}/"),
            logs,
        }
    }

    /// Resident memory of both processes, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        rss_kib([self.manager.id(), self.webhook_server.id()])
    }

    /// Both processes still run.
    pub fn running(&mut self) -> bool {
        matches!(self.manager.try_wait(), Ok(None))
            && matches!(self.webhook_server.try_wait(), Ok(None))
    }
}

impl Drop for ArcController {
    fn drop(&mut self) {
        for child in [&mut self.manager, &mut self.webhook_server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A RunnerDeployment of repository `repo` runners labelled `labels`; without
/// `replicas`, a HorizontalRunnerAutoscaler sets them.
pub fn runner_deployment_yaml(
    name: &str,
    repo: &str,
    labels: &[&str],
    replicas: Option<u32>,
) -> String {
    let replicas = replicas.map_or(String::new(), |r| format!("  replicas: {r}\n"));
    let labels = labels.join(", ");
    format!(
        r#"apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: {name}
spec:
{replicas}  template:
    spec:
      repository: {repo}
      labels: [{labels}]
"#
    )
}

/// A HorizontalRunnerAutoscaler scaling RunnerDeployment `target` on
/// `workflow_job` webhooks between `min` and `max`; `extra` is appended to
/// its spec (two-space indented lines).
pub fn webhook_autoscaler_yaml(
    name: &str,
    target: &str,
    min: u32,
    max: u32,
    extra: &str,
) -> String {
    format!(
        r#"apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef:
    kind: RunnerDeployment
    name: {target}
  minReplicas: {min}
  maxReplicas: {max}
  scaleUpTriggers:
    - githubEvent:
        workflowJob: {{}}
      duration: "30m"
{extra}"#
    )
}

fn runner_env(pod: &Pod, key: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == "runner")?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == key)?
        .value
        .clone()
        .filter(|v| !v.is_empty())
}

/// Where the runner registers, from its environment (RUNNER_REPO,
/// RUNNER_ORG or RUNNER_ENTERPRISE), as the runner image's entrypoint does.
fn runner_scope(pod: &Pod) -> Option<Scope> {
    if let Some(repo) = runner_env(pod, "RUNNER_REPO") {
        let (owner, name) = repo.split_once('/')?;
        return Some(Scope::repo(owner, name));
    }
    if let Some(org) = runner_env(pod, "RUNNER_ORG") {
        return Some(Scope::org(org));
    }
    runner_env(pod, "RUNNER_ENTERPRISE").map(Scope::enterprise)
}

/// Plays the runner processes of ARC's pods in namespace `ns`: a Running
/// pod's runner registers (name = RUNNER_NAME, labels = RUNNER_LABELS,
/// ephemeral unless RUNNER_EPHEMERAL=false) with the token in its
/// environment and comes online; once its registration is gone (GitHub
/// removed the ephemeral runner after its job, or ARC deleted it), the
/// process exits 0 and the pod completes (also while the pod is being
/// deleted: ARC keeps it with a finalizer until then). A runner whose pod is
/// gone goes offline.
pub async fn simulate_arc_runners(client: kube::Client, ns: String, fake: FakeGitHub) {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    // pod uid → runner id
    let mut started: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(list) = pods
            .list(&ListParams::default().labels(RUNNER_POD_LABEL))
            .await
        else {
            continue;
        };
        // A pod being deleted still runs until ARC releases its finalizer:
        // its runner got SIGTERM and, as ARC's entrypoint does, keeps its job
        // until it ends (the bench counts that deletion as a killed job).
        let alive: BTreeMap<String, &Pod> = list
            .items
            .iter()
            .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
            .collect();
        for (uid, id) in started.clone() {
            if !alive.contains_key(&uid) {
                let _ = fake.set_online(id, false);
                started.remove(&uid);
            }
        }
        for (uid, pod) in alive {
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if !running {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            match started.get(&uid) {
                None => {
                    // config.sh refuses to run without a registration token.
                    if pod.metadata.deletion_timestamp.is_some()
                        || runner_env(pod, "RUNNER_TOKEN").is_none()
                    {
                        continue;
                    }
                    let Some(scope) = runner_scope(pod) else {
                        continue;
                    };
                    let runner_name = runner_env(pod, "RUNNER_NAME").unwrap_or(name);
                    let labels = runner_env(pod, "RUNNER_LABELS").unwrap_or_default();
                    let labels: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
                    let ephemeral = runner_env(pod, "RUNNER_EPHEMERAL").as_deref() != Some("false");
                    if let Ok(runner) =
                        fake.register_runner(&scope, &runner_name, &labels, ephemeral)
                        && fake.set_online(runner.id, true).is_ok()
                    {
                        started.insert(uid, runner.id);
                    }
                }
                // The runner process exits when its registration is gone
                // (removed by GitHub after its job, or deleted by ARC), and
                // on SIGTERM (pod deleted) once it has no job.
                Some(&id) => {
                    let exits = match fake.runner(id) {
                        None => true,
                        Some(r) => pod.metadata.deletion_timestamp.is_some() && !r.busy,
                    };
                    if exits {
                        let _ = fake.set_online(id, false);
                        exit_runner(&pods, pod).await;
                    }
                }
            }
        }
    }
}

/// The runner's containers exit 0. A live pod gets the rig's completion
/// annotation (kwok's stage); kwok leaves a pod being deleted alone, so for
/// one held by ARC's finalizer the status is written as its kubelet would.
async fn exit_runner(pods: &Api<Pod>, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_none() {
        let patch =
            serde_json::json!({"metadata": {"annotations": {COMPLETE_ANNOTATION: "succeeded"}}});
        let _ = pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        return;
    }
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    for c in &mut statuses {
        c.ready = false;
        c.started = Some(false);
        c.state = Some(k8s_openapi::api::core::v1::ContainerState {
            terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                exit_code: 0,
                reason: Some("Completed".into()),
                finished_at: Some(now.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let patch =
        serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": statuses}});
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}
