//! An operator under test: the real binary, watching one fresh namespace of the
//! local control plane, talking to an in-process GitHub fake, with a runner
//! simulator playing the runner processes that kwok does not run.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_github::{Config, FakeGitHub};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use runnerpool::RunnerPool;
use runnerpool::runner::{POOL_LABEL, RUNNER_ID_LABEL};

use super::cluster::{self, wait_for};
use super::simulator;

/// Leader-election timings of 4 s, 3 s and 1 s (reconciles bounded at 2 s).
pub const SHORT_LEASE: [&str; 6] = [
    "--leader-election-lease-duration-seconds",
    "4",
    "--leader-election-renew-deadline-seconds",
    "3",
    "--leader-election-retry-period-seconds",
    "1",
];

pub const TOKEN: &str = "ghp_integrationtesttoken0000000000000000";
pub const INSTALL_ID: &str = "it";

/// Which GitHub base the pool uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Root,
    Ghes,
}

pub struct Env {
    pub client: kube::Client,
    pub ns: String,
    pub fake: FakeGitHub,
    pub operator: Operator,
    /// Every JIT config the operator wrote into a Secret (to grep logs for).
    pub seen_jit_configs: Arc<Mutex<BTreeSet<String>>>,
    simulator: tokio::task::JoinHandle<()>,
}

pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
    args: Vec<String>,
    /// Environment variables set on the process (the proxy variables of
    /// the test run itself are never passed on).
    env: Vec<(String, String)>,
}

/// The variables that send the operator's GitHub calls through a proxy.
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

impl Operator {
    /// The operator with the cluster's admin credentials.
    pub fn start(ns: &str, extra: &[&str]) -> Operator {
        Self::start_with_kubeconfig(ns, &cluster::test_cluster().kubeconfig, extra)
    }

    /// The operator with the credentials of `kubeconfig` (e.g. a ServiceAccount token).
    pub fn start_with_kubeconfig(ns: &str, kubeconfig: &Path, extra: &[&str]) -> Operator {
        let log_dir = cluster::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let log = log_dir.join(format!("operator-{ns}.log"));
        let mut args: Vec<String> = vec![
            "run".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--watch-namespace".into(),
            ns.into(),
            "--install-id".into(),
            INSTALL_ID.into(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--github-sync-interval-seconds".into(),
            "2".into(),
            "--cleanup-timeout-seconds".into(),
            "15".into(),
            "--log".into(),
            "info,runnerpool=debug".into(),
        ];
        // A flag in `extra` replaces its default above (clap refuses a flag twice).
        for flag in extra.iter().filter(|a| a.starts_with("--")) {
            if let Some(at) = args.iter().position(|a| a == flag) {
                args.drain(at..at + 2);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut operator = Operator {
            child: None,
            log,
            args,
            env: Vec::new(),
        };
        operator.spawn();
        operator
    }

    /// Starts the process (again, after [`Operator::kill`]).
    pub fn spawn(&mut self) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log file");
        let mut command = Command::new(operator_binary());
        for name in PROXY_VARIABLES {
            command.env_remove(name);
        }
        let child = command
            .args(&self.args)
            .env_remove("KUBECONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("starting the operator");
        self.child = Some(child);
    }

    /// Kills the process and starts it again with `extra` flags too (each
    /// replacing the same flag given before).
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill();
        for flag in extra.iter().filter(|a| a.starts_with("--")) {
            if let Some(at) = self.args.iter().position(|a| a == flag) {
                self.args.drain(at..at + 2);
            }
        }
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn();
    }

    /// Kills the process and starts it again with the environment variables `env`.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn();
    }

    /// How the process ended, once it has within `timeout`; `None` while it runs.
    pub async fn exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (no graceful shutdown) and starts it again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory of the operator process, in KiB (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The loopback ports the listeners named `what` (`admin`, `webhook`)
    /// were bound to, from the log, oldest first.
    pub fn listener_ports(&self, what: &str) -> Vec<u16> {
        let marker = format!("{what} listener serving");
        self.logs()
            .lines()
            .filter(|l| l.contains(&marker))
            .filter_map(|l| {
                let at = l.find("127.0.0.1:")? + "127.0.0.1:".len();
                let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Env {
    /// A namespace, a fake GitHub with org `acme` (repo `acme/app`) and
    /// enterprise `bigcorp`, a credentials Secret `gh` holding a token with
    /// every runner scope, and the operator watching the namespace.
    pub async fn start(prefix: &str) -> Env {
        Self::start_with(prefix, &[]).await
    }

    pub async fn start_with(prefix: &str, operator_args: &[&str]) -> Env {
        Self::start_with_kubeconfig(prefix, operator_args, |_, _| async {
            cluster::test_cluster().kubeconfig.clone()
        })
        .await
    }

    /// Like [`Env::start_with`], with the operator using the kubeconfig that
    /// `kubeconfig(admin_client, namespace)` returns once the namespace and
    /// the credentials Secret exist (e.g. a ServiceAccount's, after its RBAC is installed).
    pub async fn start_with_kubeconfig<F, Fut>(
        prefix: &str,
        operator_args: &[&str],
        kubeconfig: F,
    ) -> Env
    where
        F: FnOnce(kube::Client, String) -> Fut,
        Fut: Future<Output = PathBuf>,
    {
        install_crd();
        let client = cluster::client().await;
        let ns = cluster::fresh_namespace(&client, prefix).await;
        let fake = start_fake().await;
        create_secret(&client, &ns, "gh", &[("token", TOKEN)]).await;
        let kubeconfig = kubeconfig(client.clone(), ns.clone()).await;
        let operator = Operator::start_with_kubeconfig(&ns, &kubeconfig, operator_args);
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let simulator = tokio::spawn(simulator::simulate_runners(
            client.clone(),
            ns.clone(),
            fake.clone(),
            seen.clone(),
        ));
        Env {
            client,
            ns,
            fake,
            operator,
            seen_jit_configs: seen,
            simulator,
        }
    }

    /// An environment whose reconciles are bounded at 2 s (a 4 s lease
    /// duration; no leader election needed) and whose JIT mints take `mint`:
    /// creations outlive the pass that started them, as in a large burst on
    /// a loaded machine.
    #[allow(dead_code)]
    pub async fn start_with_slow_mints(prefix: &str, mint: Duration) -> Env {
        let env = Env::start_with(prefix, &SHORT_LEASE).await;
        env.fake
            .set_endpoint_latency("POST /orgs/{org}/actions/runners/generate-jitconfig", mint);
        env
    }

    /// Waits until pool `pool` is Ready.
    pub async fn wait_for_ready(&self, pool: &str, timeout: Duration) {
        wait_for(&format!("pool {pool} to be Ready"), timeout, || async {
            let pool = self.pools().get(pool).await.ok()?;
            let ready = pool
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(())
        })
        .await;
    }

    /// What went on, for a failure message: the answer to each webhook
    /// delivery and the last `lines` lines of the operator's log (which
    /// never holds a secret: see [`Env::assert_no_secret_leaked`]).
    #[allow(dead_code)]
    pub fn story(&self, lines: usize) -> String {
        let deliveries: Vec<String> = self
            .fake
            .webhook_deliveries()
            .iter()
            .map(|d| {
                format!(
                    "job {} {}: {:?} {:?}",
                    d.job_id, d.action, d.status, d.error
                )
            })
            .collect();
        let logs = self.operator.logs();
        let all: Vec<&str> = logs.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("deliveries: {deliveries:#?}\noperator log, last {lines} lines:\n{tail}")
    }

    /// Waits until the operator's log says `what` (e.g. `reconcile_timeout`,
    /// `controller stopped`).
    #[allow(dead_code)]
    pub async fn wait_for_log(&self, what: &str, timeout: Duration) {
        wait_for(
            &format!("the operator to log {what:?}"),
            timeout,
            || async { self.operator.logs().contains(what).then_some(()) },
        )
        .await;
    }

    /// A token that may read organization `acme`'s hook log, in a directory
    /// as the chart mounts the Secret; returns the flags that read that log
    /// (hook 1, the fake's webhook).
    pub fn delivery_log_flags(&self, name: &str) -> Vec<String> {
        const HOOK_TOKEN: &str = "ghp_hooklog000000000000000000000000000000";
        self.fake.add_token(HOOK_TOKEN, &["admin:org_hook"]);
        let dir = super::cluster::repo_root()
            .join("target/test-logs")
            .join(format!("delivery-log-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the hook token");
        std::fs::write(dir.join("token"), format!("{HOOK_TOKEN}\n")).expect("the hook token");
        vec![
            "--webhook-delivery-log".into(),
            "orgs/acme/hooks/1".into(),
            "--webhook-delivery-log-credentials".into(),
            dir.display().to_string(),
            "--webhook-delivery-log-api-url".into(),
            self.api_url(Base::Root),
        ]
    }

    pub fn api_url(&self, base: Base) -> String {
        match base {
            Base::Root => self.fake.base_url(),
            Base::Ghes => self.fake.ghes_url(),
        }
    }

    pub fn pools(&self) -> Api<RunnerPool> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The names of the runner Secrets in the test namespace; `None` when
    /// the list fails (for use inside `wait_for`).
    pub async fn runner_secret_names(&self) -> Option<BTreeSet<String>> {
        let list = self
            .secrets()
            .list(&ListParams::default().labels(RUNNER_ID_LABEL))
            .await
            .ok()?;
        Some(list.items.iter().map(|s| s.name_any()).collect())
    }

    /// Applies a RunnerPool from YAML (namespace filled in) with server-side apply.
    pub async fn apply_pool(&self, yaml: &str) -> RunnerPool {
        let mut value: serde_json::Value = serde_yaml::from_str(yaml).expect("pool YAML");
        value["metadata"]["namespace"] = self.ns.clone().into();
        let name = value["metadata"]["name"]
            .as_str()
            .expect("pool name")
            .to_string();
        self.pools()
            .patch(
                &name,
                &PatchParams::apply("integration-test").force(),
                &Patch::Apply(&value),
            )
            .await
            .unwrap_or_else(|e| panic!("applying pool {name}: {e}"))
    }

    /// Applies a pool of `replicas` runners labelled `linux` for organization `acme`.
    pub async fn apply_org_pool(&self, name: &str, replicas: u32) -> RunnerPool {
        self.apply_pool(&self.org_pool_yaml(name, replicas)).await
    }

    /// The manifest of a pool of `replicas` runners labelled `linux` for
    /// organization `acme`.
    pub fn org_pool_yaml(&self, name: &str, replicas: u32) -> String {
        pool_yaml(
            name,
            "organization: acme",
            &self.api_url(Base::Root),
            replicas,
            &["linux"],
            "",
        )
    }

    /// Applies `yaml` in the namespace (server-side) and expects the API
    /// server to refuse it; returns what it answered.
    #[allow(dead_code)]
    pub fn apply_refused(&self, yaml: &str) -> String {
        let path = std::env::temp_dir().join(format!("{}-{}.yaml", self.ns, rand::random::<u32>()));
        std::fs::write(&path, yaml).unwrap();
        let out = cluster::kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-n",
            &self.ns,
            "-f",
            path.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(&path);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Waits until a deleted pool's object is gone (its finalizer released).
    pub async fn wait_for_pool_released(&self, name: &str, timeout: Duration) {
        let what = format!("pool {name} to be gone");
        cluster::wait_for_gone(&what, &self.pools(), name, timeout).await;
    }

    /// Waits until a deleted pool is gone, with its pods and runner Secrets.
    pub async fn wait_for_pool_gone(&self, name: &str, timeout: Duration) {
        self.wait_for_pool_released(name, timeout).await;
        wait_for("its pods and Secrets to go", timeout, || async {
            let pods = self.live_pods(name).await.is_empty();
            let lp = ListParams::default().labels(&format!("{POOL_LABEL}={name}"));
            let secrets = self.secrets().list(&lp).await.ok()?.items.is_empty();
            (pods && secrets).then_some(())
        })
        .await;
    }

    /// Merge-patches pod `name` (labels, annotations) as a person would.
    pub async fn merge_patch_pod(&self, name: &str, patch: serde_json::Value) {
        self.pods()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patching pod {name}: {e}"));
    }

    /// Pods of a pool that are not being deleted.
    pub async fn live_pods(&self, pool: &str) -> Vec<Pod> {
        let lp = ListParams::default().labels(&format!("{POOL_LABEL}={pool}"));
        self.pods()
            .list(&lp)
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Waits until the pool has exactly `n` live pods that are Running and
    /// whose runners are online on GitHub; returns their runner ids.
    pub async fn wait_for_online_runners(
        &self,
        pool: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<u64> {
        wait_for(
            &format!("{n} online runners in pool {pool}"),
            timeout,
            || async {
                let pods = self.live_pods(pool).await;
                if pods.len() != n {
                    return None;
                }
                let mut ids = vec![];
                for pod in &pods {
                    let id: u64 = pod
                        .metadata
                        .labels
                        .as_ref()?
                        .get(RUNNER_ID_LABEL)?
                        .parse()
                        .ok()?;
                    let runner = self.fake.runner(id)?;
                    if runner.status != fake_github::RunnerStatus::Online {
                        return None;
                    }
                    ids.push(id);
                }
                ids.sort();
                Some(ids)
            },
        )
        .await
    }

    /// The request count of one fake endpoint (`METHOD /route/{template}`).
    pub fn calls(&self, endpoint_contains: &str) -> u64 {
        self.fake
            .counters()
            .by_endpoint
            .iter()
            .filter(|(k, _)| k.contains(endpoint_contains))
            .map(|(_, v)| *v)
            .sum()
    }

    pub fn calls_by_endpoint(&self) -> BTreeMap<String, u64> {
        self.fake.counters().by_endpoint
    }

    /// Pool `pool`'s condition `type_` while it is True, as (reason, message).
    pub async fn true_condition(&self, pool: &str, type_: &str) -> Option<(String, String)> {
        let pool = self.pools().get(pool).await.ok()?;
        pool.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_ && c.status == "True")
            .map(|c| (c.reason, c.message))
    }

    /// The events.k8s.io events of reason `reason` about pool `pool`, as (count, note).
    pub fn events_about(&self, pool: &str, reason: &str) -> Vec<(u64, String)> {
        let out = cluster::kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            &self.ns,
            "-o",
            "json",
        ]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == reason && e["regarding"]["name"] == pool)
            .map(|e| {
                let count = e["series"]["count"].as_u64().unwrap_or(1);
                (count, e["note"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// Asserts no JIT config seen in a Secret appears in the operator's log or
    /// the namespace's events.
    /// The operator's `/metrics` page.
    #[allow(dead_code)]
    /// The metrics of the running process (the newest admin listener).
    pub async fn metrics(&self) -> String {
        let port = *self
            .operator
            .listener_ports("admin")
            .last()
            .expect("an admin listener");
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Waits for a pass over `pool` that began after this call. A change of
    /// `spec.bootstrapTimeoutSeconds` by one second (600, the default, to 601
    /// and back), which no runner notices, bumps the pool's generation; every pass ends by
    /// writing status with the generation it saw, so `observedGeneration`
    /// reaching the new one proves such a pass finished. For negative checks:
    /// what that pass did not do, the operator does not do.
    #[allow(dead_code)]
    pub async fn wait_for_a_fresh_pass(&self, pool: &str) {
        let current = self.pools().get(pool).await.expect("the pool");
        let timeout = current.spec.bootstrap_timeout_seconds.unwrap_or(600) ^ 1;
        let poke = serde_json::json!({ "spec": { "bootstrapTimeoutSeconds": timeout } });
        let poked = self
            .pools()
            .patch(pool, &PatchParams::default(), &Patch::Merge(&poke))
            .await
            .expect("poking the pool");
        let generation = poked.metadata.generation;
        cluster::wait_for(
            &format!("a pass over pool {pool}"),
            Duration::from_secs(40),
            || async {
                let seen = self
                    .pools()
                    .get(pool)
                    .await
                    .ok()?
                    .status?
                    .observed_generation;
                (seen >= generation).then_some(())
            },
        )
        .await;
    }

    /// When each new pod of the namespace is first seen in a watch.
    #[allow(dead_code)]
    pub fn pod_additions(&self) -> tokio::sync::mpsc::UnboundedReceiver<std::time::Instant> {
        pod_additions(self.pods())
    }

    pub async fn assert_no_secret_leaked(&self) {
        let logs = self.operator.logs();
        let events = cluster::kubectl(&["get", "events", "-n", &self.ns, "-o", "yaml"]);
        let events = String::from_utf8_lossy(&events.stdout).into_owned();
        let pools = cluster::kubectl(&["get", "runnerpools", "-n", &self.ns, "-o", "yaml"]);
        let pools = String::from_utf8_lossy(&pools.stdout).into_owned();
        let seen = self.seen_jit_configs.lock().unwrap().clone();
        assert!(!seen.is_empty(), "the simulator saw no JIT config at all");
        for jit in seen {
            // Any 24-character slice would do; the whole config is the obvious leak.
            let probe = &jit[..jit.len().min(40)];
            assert!(
                !logs.contains(probe),
                "a JIT config appears in the operator log"
            );
            assert!(!events.contains(probe), "a JIT config appears in an event");
            assert!(
                !pools.contains(probe),
                "a JIT config appears in a RunnerPool"
            );
        }
        assert!(
            !logs.contains(TOKEN),
            "the token appears in the operator log"
        );
        assert!(!events.contains(TOKEN), "the token appears in an event");
    }
}

impl Drop for Env {
    /// Frees the cluster for the next tests: the namespace's pods go with it
    /// (a pool left behind may keep the namespace Terminating once the
    /// operator is gone; that holds no capacity).
    fn drop(&mut self) {
        self.simulator.abort();
        let _ = cluster::kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// A fake GitHub with org `acme` (repo `acme/app`) in enterprise `bigcorp`
/// and the token [`TOKEN`] with every runner scope.
pub async fn start_fake() -> FakeGitHub {
    let fake = FakeGitHub::start(Config::default())
        .await
        .expect("fake GitHub starts");
    fake.add_token(TOKEN, &["repo", "admin:org", "manage_runners:enterprise"]);
    fake.add_enterprise("bigcorp");
    fake.add_org("acme");
    fake.add_org_to_enterprise("bigcorp", "acme");
    fake.add_repo("acme", "app");
    fake
}

/// Installs the committed CRD (server-side apply, so every test process may)
/// and waits until the API server serves it.
pub fn install_crd() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let crd = cluster::repo_path("crds/runnerpool.yaml");
        let crd = crd.to_str().expect("UTF-8 path");
        let out = cluster::kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crd]);
        cluster::expect_success("installing the CRD", &out);
        // A CRD created a moment ago may not be visible to `wait` yet: ask again.
        let mut out = None;
        for _ in 0..10 {
            let attempt = cluster::kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/runnerpools.actions.runnerpool.dev",
                "crd/runnergroups.actions.runnerpool.dev",
                "crd/githubconnections.actions.runnerpool.dev",
            ]);
            let ok = attempt.status.success();
            out = Some(attempt);
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        cluster::expect_success("waiting for the CRD", &out.expect("at least one attempt"));
    });
}

/// A GitHub App of id `app_id` installed (`installation`) on organization
/// `acme` of the fake, and a credentials Secret `name` in `env`'s namespace
/// holding its private key.
pub async fn app_credentials(env: &Env, name: &str, app_id: u64, installation: u64) {
    let key = std::process::Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .expect("openssl genrsa");
    let pem = String::from_utf8(key.stdout).unwrap();
    env.fake
        .add_app(fake_github::AppSpec {
            app_id,
            client_id: None,
            key_pem: pem.clone(),
            installations: vec![fake_github::InstallationSpec::new(
                installation,
                Some("acme"),
            )],
        })
        .unwrap();
    create_secret(
        &env.client,
        &env.ns,
        name,
        &[
            ("appId", &app_id.to_string()),
            ("installationId", &installation.to_string()),
            ("privateKey", &pem),
        ],
    )
    .await;
}

pub async fn create_secret(client: &kube::Client, ns: &str, name: &str, pairs: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

/// A pool manifest for the fake: `scope` is e.g. `organization: acme`.
pub fn pool_yaml(
    name: &str,
    scope: &str,
    api_url: &str,
    replicas: u32,
    labels: &[&str],
    extra: &str,
) -> String {
    let labels = labels
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerPool
metadata:
  name: {name}
spec:
  github:
    {scope}
    apiUrl: "{api_url}"
    credentialsSecret:
      name: gh
  labels: [{labels}]
  replicas: {replicas}
{extra}
  template:
    spec:
      containers:
        - name: runner
          image: ghcr.io/actions/actions-runner:latest
"#
    )
}

/// A namespace of its own holding the credentials Secret `gh` (the token
/// [`TOKEN`]): the operator's `--connections-namespace` for
/// [`Env::use_connection`].
pub async fn connections_namespace(client: &kube::Client) -> String {
    let ns = cluster::fresh_namespace(client, "connections").await;
    create_secret(client, &ns, "gh", &[("token", TOKEN)]).await;
    ns
}

/// Applies the GitHubConnection `name` for the fake's `api_url`, whose
/// credentials are the Secret `gh` of the connections namespace, allowing
/// the namespaces `namespaces` (and, when given, those its
/// `namespace_selector` JSON selects).
pub async fn apply_connection(
    client: &kube::Client,
    name: &str,
    api_url: &str,
    namespaces: &[&str],
    namespace_selector: Option<serde_json::Value>,
) {
    let mut spec = serde_json::json!({
        "apiUrl": api_url,
        "credentialsSecret": { "name": "gh" },
        "namespaces": namespaces,
    });
    if let Some(selector) = namespace_selector {
        spec["namespaceSelector"] = selector;
    }
    let connection = serde_json::json!({
        "apiVersion": "actions.runnerpool.dev/v1alpha1",
        "kind": "GitHubConnection",
        "metadata": { "name": name },
        "spec": spec,
    });
    Api::<runnerpool::crd::GitHubConnection>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(&connection),
        )
        .await
        .unwrap_or_else(|e| panic!("applying GitHubConnection {name}: {e}"));
}

/// `yaml` (from [`pool_yaml`]) with its credentials from the GitHubConnection
/// `name` instead of the Secret `gh` of its namespace.
pub fn connected(yaml: &str, name: &str) -> String {
    let replaced = yaml.replace(
        "credentialsSecret:\n      name: gh",
        &format!("connectionRef:\n      name: {name}"),
    );
    assert_ne!(replaced, yaml, "a pool_yaml manifest");
    replaced
}

/// The `extra` of [`pool_yaml`] for `containerMode: kubernetes`, each
/// runner's work claim of StorageClass `class` (see [`create_pvs`]).
pub fn kubernetes_mode(class: &str) -> String {
    format!(
        "  containerMode: kubernetes\n  workVolumeClaimTemplate: {{ storageClassName: {class}, size: 1Gi }}"
    )
}

/// `yaml` (from [`pool_yaml`] with 0 replicas) autoscaling between `min` and
/// `max` with `idle` idle runners and no scale-down delay.
pub fn autoscaling(yaml: &str, min: u32, max: u32, idle: u32) -> String {
    yaml.replace(
        "  replicas: 0\n",
        &format!(
            "  autoscaling: {{ minRunners: {min}, maxRunners: {max}, idleRunners: {idle}, scaleDownDelaySeconds: 0 }}\n"
        ),
    )
}

/// `yaml` with pods the runner simulator never brings online (so no job is
/// ever assigned to them).
pub fn staying_offline(yaml: &str) -> String {
    yaml.replace(
        "  template:\n    spec:",
        &format!(
            "  template:\n    metadata:\n      annotations: {{ {}: \"yes\" }}\n    spec:",
            simulator::STAY_OFFLINE_ANNOTATION
        ),
    )
}

impl Env {
    /// Like [`Env::start_with`], with the credentials kept out of the test
    /// namespace: in a connections namespace of their own (the operator's
    /// `--connections-namespace`), used through the GitHubConnection named
    /// after the test namespace (see [`Env::use_connection`]), as
    /// kubernetes-mode pools need. Returns the connections namespace too.
    pub async fn start_connected(prefix: &str, extra: &[&str]) -> (Env, String) {
        install_crd();
        let connections = connections_namespace(&cluster::client().await).await;
        let mut args = vec!["--connections-namespace", connections.as_str()];
        args.extend_from_slice(extra);
        let env = Env::start_with(prefix, &args).await;
        env.use_connection().await;
        (env, connections)
    }

    /// Moves the credentials out of the test namespace: deletes its Secret
    /// `gh` and applies the GitHubConnection named after the namespace,
    /// allowing it, whose Secret is `gh` of the operator's connections
    /// namespace.
    pub async fn use_connection(&self) {
        self.secrets()
            .delete("gh", &Default::default())
            .await
            .expect("deleting the test namespace's credentials Secret");
        let url = self.api_url(Base::Root);
        apply_connection(&self.client, &self.ns, &url, &[&self.ns], None).await;
    }

    /// Like [`Env::start_with`], with the operator's webhook listener on
    /// (secret `secret`, sync interval `sync_interval` seconds, plus `extra`
    /// flags) and the fake sending it signed `workflow_job` deliveries.
    /// Returns the listener's URL too.
    pub async fn start_with_webhooks(
        prefix: &str,
        secret: &str,
        sync_interval: &str,
        extra: &[&str],
    ) -> (Env, String) {
        let dir = cluster::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let secret_file = dir.join(format!("webhook-secret-{prefix}-{}", std::process::id()));
        std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
        let secret_file = secret_file.display().to_string();
        let mut args = vec![
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-secret-file",
            &secret_file,
            "--github-sync-interval-seconds",
            sync_interval,
        ];
        args.extend_from_slice(extra);
        let env = Env::start_with(prefix, &args).await;
        let port = wait_for("the webhook listener", Duration::from_secs(40), || async {
            env.operator.listener_ports("webhook").first().copied()
        })
        .await;
        let url = format!("http://127.0.0.1:{port}/webhook");
        env.fake.set_webhook(Some(fake_github::WebhookConfig {
            url: url.clone(),
            secret: Some(secret.into()),
        }));
        (env, url)
    }

    /// Kills the operator and starts it again, and points the fake's
    /// `workflow_job` deliveries (signed with `secret`) at the new process's
    /// webhook listener once it is bound (a new port), before its caches sync.
    pub async fn restart_operator_with_webhooks(&mut self, secret: &str) {
        let listeners = self.operator.listener_ports("webhook").len();
        self.operator.restart();
        let port = wait_for(
            "the new webhook listener",
            Duration::from_secs(30),
            || async {
                self.operator
                    .listener_ports("webhook")
                    .get(listeners)
                    .copied()
            },
        )
        .await;
        self.fake.set_webhook(Some(fake_github::WebhookConfig {
            url: format!("http://127.0.0.1:{port}/webhook"),
            secret: Some(secret.into()),
        }));
    }
}

/// `n` PersistentVolumes of StorageClass name `class` (no StorageClass object:
/// the rig's PV binder matches claims by name), for runner pods with volume
/// claims. They are cluster-scoped: remove them with [`delete_pvs`].
pub async fn create_pvs(client: &kube::Client, class: &str, n: usize) {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for i in 0..n {
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("{class}-{i}"), "labels": { "test-class": class } },
            "spec": {
                "storageClassName": class,
                "capacity": { "storage": "1Gi" },
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": { "path": format!("/tmp/{class}-{i}") },
            }
        }))
        .expect("PV");
        pvs.create(&PostParams::default(), &pv)
            .await
            .expect("creating a PV");
    }
}

pub async fn delete_pvs(client: &kube::Client, class: &str) {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let _ = pvs
        .delete_collection(
            &Default::default(),
            &ListParams::default().labels(&format!("test-class={class}")),
        )
        .await;
}

/// The operator binary the tests and benches start: this build's, or the one
/// `RUNNERPOOL_OPERATOR_BIN` names (e.g. the release build `make image`
/// leaves under target/image-build, so a bench compiled in the dev profile
/// can measure a release operator without a second release build).
pub fn operator_binary() -> std::path::PathBuf {
    std::env::var_os("RUNNERPOOL_OPERATOR_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_runnerpool-operator").into())
}

/// How the operator under test was built, for the benches' tables.
pub fn operator_build() -> String {
    match std::env::var("RUNNERPOOL_OPERATOR_BIN") {
        Ok(path) => format!("operator from {path}"),
        Err(_) if cfg!(debug_assertions) => "debug build".into(),
        Err(_) => "release build".into(),
    }
}

/// When each new pod of `pods` is first seen in a watch (any operator's pods).
pub fn pod_additions(pods: Api<Pod>) -> tokio::sync::mpsc::UnboundedReceiver<std::time::Instant> {
    pod_additions_matching(pods, None)
}

/// When each new pod of `pods` matching the label `selector` (all without
/// one) is first seen in a watch.
pub fn pod_additions_matching(
    pods: Api<Pod>,
    selector: Option<&str>,
) -> tokio::sync::mpsc::UnboundedReceiver<std::time::Instant> {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let (added_tx, added) = tokio::sync::mpsc::unbounded_channel();
    let mut config = watcher::Config::default();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let mut events = std::pin::pin!(watcher(pods, config));
        while let Some(Ok(event)) = events.next().await {
            if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
                let pod: Pod = pod;
                if let Some(name) = pod.metadata.name
                    && seen.insert(name)
                {
                    let _ = added_tx.send(std::time::Instant::now());
                }
            }
        }
    });
    added
}

/// The runner id a runner pod's label names.
pub fn runner_id(pod: &Pod) -> Option<u64> {
    pod.metadata
        .labels
        .as_ref()?
        .get(RUNNER_ID_LABEL)?
        .parse()
        .ok()
}
