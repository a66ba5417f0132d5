//! actions-runner-controller (ARC) v0.27.6 in its scale-set mode
//! (AutoscalingRunnerSet, `actions.github.com`), for the side-by-side
//! benchmark (`benches/vs_arc.rs`). Its `manager` runs the scale-set
//! controllers outside the cluster against the local control plane and the
//! GitHub fake, built by `tests/cluster/arc.sh` with the legacy side's
//! binaries. The listener pod the controller creates cannot run on kwok, so
//! [`ArcScaleSetController`] runs its process here instead, as the kubelet
//! would: the config file from the pod's Secret volume, the pod's environment,
//! and the pod's ServiceAccount token and the cluster CA at the in-cluster
//! paths, in a private mount namespace. The EphemeralRunner pods are played by
//! `simulator::simulate_runner_pods`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::arc;
use super::cluster;

/// The label ARC puts on every EphemeralRunner pod.
pub const RUNNER_POD_LABEL: &str = "actions-ephemeral-runner";
/// The label selecting the listener pods ARC creates.
const LISTENER_POD_SELECTOR: &str = "app.kubernetes.io/component=runner-scale-set-listener";
/// The Secret holding the credentials the AutoscalingRunnerSets name.
pub const GITHUB_SECRET: &str = "arc-github";
/// The image the controller writes into listener pods; never pulled here.
const LISTENER_IMAGE: &str = "ghcr.io/actions/gha-runner-scale-set-controller:0.6.1";
/// How long a listener gets to close its session after SIGTERM.
const LISTENER_STOP_GRACE: Duration = Duration::from_secs(10);

/// ARC's manager with the scale-set controllers, watching one namespace
/// (its own: the listener pods go there too), and the listener processes of
/// its listener pods.
pub struct ArcScaleSetController {
    manager: Child,
    listeners: Arc<Mutex<Listeners>>,
    task: tokio::task::JoinHandle<()>,
    pub logs: PathBuf,
}

impl ArcScaleSetController {
    /// Creates the credentials Secret (`github_token`) and starts the manager
    /// and the task that runs listener pods' processes.
    pub async fn start(bin: &Path, client: kube::Client, ns: &str, token: &str) -> Self {
        super::operator::create_secret(&client, ns, GITHUB_SECRET, &[("github_token", token)])
            .await;
        let logs = arc::log_dir(ns);
        // Metrics off ("0", the listeners' too); the admission webhook port
        // free. Everything else: ARC's defaults.
        let manager = arc::spawn(
            bin,
            "manager",
            &logs,
            &[
                "--auto-scaling-runner-set-only".into(),
                "--metrics-addr=0".into(),
                "--listener-metrics-addr=0".into(),
                format!("--port={}", arc::free_port()),
                format!("--watch-namespace={ns}"),
            ],
            &[
                ("CONTROLLER_MANAGER_POD_NAMESPACE", ns.to_string()),
                ("CONTROLLER_MANAGER_CONTAINER_IMAGE", LISTENER_IMAGE.into()),
            ],
        );
        let listeners = Arc::new(Mutex::new(Listeners::default()));
        let task = tokio::spawn(run_listener_pods(
            client,
            ns.to_string(),
            bin.join("githubrunnerscalesetlistener"),
            logs.clone(),
            listeners.clone(),
        ));
        ArcScaleSetController {
            manager,
            listeners,
            task,
            logs,
        }
    }

    /// Resident memory of the manager and the listeners running now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let mut pids = vec![self.manager.id()];
        pids.extend(
            self.listeners
                .lock()
                .unwrap()
                .running
                .values()
                .map(Child::id),
        );
        arc::rss_kib(pids)
    }

    /// Listener processes running now.
    pub fn listeners(&self) -> usize {
        self.listeners.lock().unwrap().running.len()
    }
}

impl Drop for ArcScaleSetController {
    fn drop(&mut self) {
        self.task.abort();
        let listeners = std::mem::take(&mut *self.listeners.lock().unwrap());
        let stopping = listeners.stopping.into_iter().map(|(child, _)| child);
        for mut child in listeners.running.into_values().chain(stopping) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.manager.kill();
        let _ = self.manager.wait();
    }
}

/// The listener processes: running, by listener pod uid, and stopping (sent
/// SIGTERM when their pod went, since when).
#[derive(Default)]
struct Listeners {
    running: BTreeMap<String, Child>,
    stopping: Vec<(Child, Instant)>,
}

/// An AutoscalingRunnerSet of runners for the scope of `config_url` (e.g.
/// `http://127.0.0.1:PORT/acme/app`) between `min` and `max`, with the
/// runner container of ARC's chart. Its version label must be the manager's
/// build version: the controller deletes a set of another version.
pub fn autoscaling_runner_set_yaml(name: &str, config_url: &str, min: u32, max: u32) -> String {
    format!(
        r#"apiVersion: actions.github.com/v1alpha1
kind: AutoscalingRunnerSet
metadata:
  name: {name}
  labels:
    app.kubernetes.io/component: autoscaling-runner-set
    app.kubernetes.io/version: {version}
spec:
  githubConfigUrl: {config_url}
  githubConfigSecret: {GITHUB_SECRET}
  minRunners: {min}
  maxRunners: {max}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: runner
        image: ghcr.io/actions/actions-runner:latest
        command: ["/home/runner/run.sh"]
"#,
        version = arc_version()
    )
}

/// ARC's version as the build stamps it (`tests/cluster/tool-versions.sh`).
fn arc_version() -> String {
    let versions = std::fs::read_to_string(cluster::repo_path("tests/cluster/tool-versions.sh"))
        .expect("tests/cluster/tool-versions.sh");
    versions
        .lines()
        .find_map(|l| l.strip_prefix("ARC_VERSION="))
        .expect("ARC_VERSION in tool-versions.sh")
        .trim()
        .to_string()
}

/// Runs the listener process of every Running listener pod in `ns` until the
/// pod goes (SIGTERM, then SIGKILL after a grace period); a process that
/// exits on its own ends its pod (Failed unless it exited 0), as the kubelet
/// would report it, and ARC replaces a failed listener pod.
async fn run_listener_pods(
    client: kube::Client,
    ns: String,
    listener: PathBuf,
    logs: PathBuf,
    listeners: Arc<Mutex<Listeners>>,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    // pods whose process has ended: never started again
    let mut ended: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        listeners
            .lock()
            .unwrap()
            .stopping
            .retain_mut(|(child, since)| {
                if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                    return false;
                }
                if since.elapsed() > LISTENER_STOP_GRACE {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
                true
            });
        let Ok(list) = pods
            .list(&ListParams::default().labels(LISTENER_POD_SELECTOR))
            .await
        else {
            continue;
        };
        let live: BTreeMap<String, &Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
            .collect();
        let mut exited = vec![];
        {
            let mut listeners = listeners.lock().unwrap();
            let Listeners { running, stopping } = &mut *listeners;
            let gone: Vec<String> = running
                .keys()
                .filter(|uid| !live.contains_key(*uid))
                .cloned()
                .collect();
            for uid in gone {
                let child = running.remove(&uid).expect("listed");
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                stopping.push((child, Instant::now()));
            }
            running.retain(|uid, child| match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    exited.push((uid.clone(), status.code().unwrap_or(1)));
                    false
                }
                Err(_) => {
                    exited.push((uid.clone(), 1));
                    false
                }
            });
        }
        for (uid, code) in exited {
            ended.insert(uid.clone());
            if let Some(pod) = live.get(&uid) {
                end_pod(&pods, pod, code).await;
            }
        }
        for (uid, pod) in &live {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase != Some("Running")
                || ended.contains(uid)
                || listeners.lock().unwrap().running.contains_key(uid)
            {
                continue;
            }
            match start_listener(&listener, &logs, &secrets, pod).await {
                Ok(child) => {
                    listeners.lock().unwrap().running.insert(uid.clone(), child);
                }
                Err(e) => eprintln!("ARC listener pod {uid}: not started yet: {e}"),
            }
        }
    }
}

/// Starts the listener process of `pod` as its container would run: the
/// container's literal environment, the config file from the Secret volume
/// mounted over `LISTENER_CONFIG_PATH` (written to a private directory, the
/// variable pointing there), and in-cluster credentials of the pod's
/// ServiceAccount (a token from the TokenRequest API and the cluster CA at
/// /var/run/secrets/kubernetes.io/serviceaccount, mounted in a private mount
/// namespace; `KUBERNETES_SERVICE_HOST`/`_PORT` the API server's loopback
/// address).
async fn start_listener(
    listener: &Path,
    logs: &Path,
    secrets: &Api<Secret>,
    pod: &Pod,
) -> Result<Child, String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let container = spec.containers.first().ok_or("no container")?;
    let env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let config_path = env
        .iter()
        .find(|(k, _)| k == "LISTENER_CONFIG_PATH")
        .map(|(_, v)| v.clone())
        .ok_or("no LISTENER_CONFIG_PATH")?;
    // The volume mounted over the config file's directory, and its Secret.
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| config_path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/'))))
        .ok_or("no volume holds the config")?;
    let key = config_path[mount.mount_path.trim_end_matches('/').len() + 1..].to_string();
    let secret_name = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.secret.as_ref()?.secret_name.clone())
        .ok_or("the config volume is no Secret")?;
    let secret = secrets
        .get(&secret_name)
        .await
        .map_err(|e| format!("Secret {secret_name}: {e}"))?;
    let config = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .ok_or_else(|| format!("no {key} in Secret {secret_name}"))?;

    let dir = logs.join(format!("listener-{name}-{}", rand::random::<u32>()));
    let sa_dir = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa_dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.json"), &config.0).map_err(|e| e.to_string())?;
    let account = spec
        .service_account_name
        .clone()
        .unwrap_or("default".into());
    let token = cluster::kubectl(&["create", "token", &account, "-n", &ns, "--duration=6h"]);
    if !token.status.success() {
        return Err(format!(
            "token for ServiceAccount {account}: {}",
            String::from_utf8_lossy(&token.stderr)
        ));
    }
    std::fs::write(sa_dir.join("token"), token.stdout.trim_ascii()).map_err(|e| e.to_string())?;
    std::fs::write(sa_dir.join("namespace"), &ns).map_err(|e| e.to_string())?;
    let (server, ca) = cluster::server_and_ca();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .map_err(|e| e.to_string())?;
    std::fs::write(sa_dir.join("ca.crt"), ca).map_err(|e| e.to_string())?;
    let (host, port) = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .ok_or("API server URL without a port")?;

    let log = std::fs::File::create(dir.join("listener.log")).map_err(|e| e.to_string())?;
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /var/run \
             && mkdir -p /var/run/secrets/kubernetes.io/serviceaccount \
             && cp \"$1\"/* /var/run/secrets/kubernetes.io/serviceaccount/ \
             && exec \"$2\"",
        )
        .arg("sh")
        .arg(&sa_dir)
        .arg(listener)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .env("LISTENER_CONFIG_PATH", dir.join("config.json"))
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting the listener: {e}"))
}

/// Writes `pod`'s end as its kubelet would once its only container exited
/// with `code`.
async fn end_pod(pods: &Api<Pod>, pod: &Pod, code: i32) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let patch = serde_json::json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": container,
            "image": "",
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}},
        }],
    }});
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}
