//! The local Kubernetes control plane of `tests/cluster/cluster.sh`, for tests.
//!
//! `test_cluster()` uses `$RUNNERPOOL_TEST_KUBECONFIG` when it is set
//! (`scripts/test.sh` starts one cluster for the whole suite). Otherwise it runs
//! `tests/cluster/cluster.sh up <target>/test-cluster` once per test process; `up`
//! is idempotent and locked, so concurrent test binaries share that cluster,
//! which stays up after the tests (stop it with
//! `tests/cluster/cluster.sh down target/test-cluster`).
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A running control plane: its admin kubeconfig and the directory holding
/// the binaries it was built with (kubectl, helm, kwok, ...).
pub struct TestCluster {
    pub kubeconfig: PathBuf,
    pub bin_dir: PathBuf,
}

/// The repository root (the directory holding `tests/cluster/cluster.sh`).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        if dir.join("tests/cluster/cluster.sh").is_file() {
            return dir;
        }
        if !dir.pop() {
            panic!(
                "tests/cluster/cluster.sh not found above {}",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
}

fn cluster_sh() -> PathBuf {
    repo_root().join("tests/cluster/cluster.sh")
}

/// Runs `tests/cluster/cluster.sh ARGS`; returns its stdout (a path), panics
/// with its stderr.
pub fn run_cluster_sh(args: &[&str]) -> PathBuf {
    run_rig_script(&cluster_sh(), args)
}

/// The path of a lint tool built from Go modules by `tests/cluster/tools.sh`
/// (actionlint, kube-score), built into the cache first if missing.
pub fn lint_tool(name: &str) -> PathBuf {
    run_rig_script(&repo_root().join("tests/cluster/tools.sh"), &["path", name])
}

fn run_rig_script(script: &Path, args: &[&str]) -> PathBuf {
    let shown = script.strip_prefix(repo_root()).unwrap_or(script).display();
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    if !out.status.success() {
        panic!(
            "{shown} {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "{shown} {} printed nothing",
        args.join(" ")
    );
    PathBuf::from(path)
}

/// The Cargo target directory (`$CARGO_TARGET_DIR` or `target/` at the root).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        _ => repo_root().join("target"),
    }
}

static OWN_CLUSTER_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes this process use its own cluster in `target/NAME` (started on first
/// use, stopped with [`stop_own_cluster`]) instead of the shared test
/// cluster: for a test that disturbs its cluster (an API server restart).
/// Call it before anything else touches the cluster.
pub fn use_own_cluster(name: &str) -> PathBuf {
    OWN_CLUSTER_DIR
        .get_or_init(|| target_dir().join(name))
        .clone()
}

/// Stops the cluster of [`use_own_cluster`], if any.
pub fn stop_own_cluster() {
    if let Err(e) = own_cluster_down() {
        panic!("{e}");
    }
}

/// Stops the cluster of [`use_own_cluster`] when dropped, also when the test
/// panics (a cluster left running holds ports and two cores' worth of work
/// for whatever runs next). Declare it first, so it drops last.
#[allow(dead_code)]
pub struct StopOwnClusterOnDrop;

impl Drop for StopOwnClusterOnDrop {
    fn drop(&mut self) {
        // Never a panic here: it would abort a test already unwinding.
        if let Err(e) = own_cluster_down() {
            eprintln!("{e}");
        }
    }
}

fn own_cluster_down() -> Result<(), String> {
    let Some(dir) = OWN_CLUSTER_DIR.get() else {
        return Ok(());
    };
    // `down` prints nothing on stdout: not through run_cluster_sh.
    let out = Command::new("bash")
        .arg(cluster_sh())
        .arg("down")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cluster.sh down {}: {e}", dir.display()))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "cluster.sh down {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The cluster shared by every test of this process (started on first use).
pub fn test_cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let own = OWN_CLUSTER_DIR.get().map(|d| d.display().to_string());
        let shared = std::env::var_os("RUNNERPOOL_TEST_KUBECONFIG");
        let kubeconfig = match (own, shared) {
            (Some(dir), _) => run_cluster_sh(&["up", &dir]),
            (None, Some(k)) if !k.is_empty() => {
                let k = PathBuf::from(k);
                assert!(
                    k.is_file(),
                    "RUNNERPOOL_TEST_KUBECONFIG={} is not a file",
                    k.display()
                );
                k
            }
            (None, _) => {
                let dir = target_dir().join("test-cluster");
                let dir = dir.to_str().expect("target dir is not UTF-8");
                run_cluster_sh(&["up", dir])
            }
        };
        let bin_dir = run_cluster_sh(&["bin-dir"]);
        assert!(
            bin_dir.join("kubectl").is_file(),
            "no kubectl in {} (run tests/cluster/cluster.sh build)",
            bin_dir.display()
        );
        TestCluster {
            kubeconfig,
            bin_dir,
        }
    })
}

/// A client with the cluster's admin (system:masters) credentials.
pub async fn client() -> kube::Client {
    kube::Client::try_from(admin_config().await).unwrap_or_else(|e| panic!("kube client: {e}"))
}

/// The admin client configuration, to adjust before building a client.
///
/// Note: kube's default client retries 429/503/504 answers (up to 15 times,
/// with exponential backoff), so e.g. an eviction refused by a
/// PodDisruptionBudget only returns its 429 after minutes. Set
/// `default_retry = false` to see such answers at once.
pub async fn admin_config() -> kube::Config {
    let tc = test_cluster();
    let kc = Kubeconfig::read_from(&tc.kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", tc.kubeconfig.display()));
    config_from_kubeconfig(kc).await
}

async fn config_from_kubeconfig(kc: Kubeconfig) -> kube::Config {
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig of the test cluster: {e}"))
}

/// A client from a kubeconfig (e.g. one carrying a ServiceAccount token).
pub async fn client_from_kubeconfig(kc: Kubeconfig) -> kube::Client {
    kube::Client::try_from(config_from_kubeconfig(kc).await)
        .unwrap_or_else(|e| panic!("kube client: {e}"))
}

/// The API server's URL (`https://127.0.0.1:PORT`) and CA (base64 PEM), as in
/// the admin kubeconfig.
pub fn server_and_ca() -> (String, String) {
    let kc = Kubeconfig::read_from(&test_cluster().kubeconfig).expect("admin kubeconfig");
    let cluster = kc
        .clusters
        .into_iter()
        .next()
        .and_then(|c| c.cluster)
        .expect("a cluster in the admin kubeconfig");
    (
        cluster.server.expect("server in kubeconfig"),
        cluster
            .certificate_authority_data
            .expect("certificate-authority-data in kubeconfig"),
    )
}

/// A client that authenticates with a bearer token (e.g. from the TokenRequest API).
pub async fn client_with_token(token: &str) -> kube::Client {
    let (server, ca) = server_and_ca();
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
    );
    client_from_kubeconfig(Kubeconfig::from_yaml(&yaml).expect("token kubeconfig")).await
}

/// Creates a namespace with a unique name starting with `prefix` and waits
/// until its `default` ServiceAccount exists (pods are refused before that).
pub async fn fresh_namespace(client: &kube::Client, prefix: &str) -> String {
    let mut p: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    p.truncate(40);
    let p = p.trim_matches('-');
    let p = if p.is_empty() { "test" } else { p };
    let name = format!("{p}-{:08x}", rand::random::<u32>());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("runnerpool.dev/test".to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for(
        &format!("the default ServiceAccount of namespace {name}"),
        Duration::from_secs(30),
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await;
    name
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `timeout`
/// with a message naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the object `name` is gone from `api` (deleted, finalizers released).
#[allow(dead_code)]
pub async fn wait_for_gone<K>(what: &str, api: &Api<K>, name: &str, timeout: Duration)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(what, timeout, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

fn tool(name: &str) -> Command {
    let tc = test_cluster();
    let mut cmd = Command::new(tc.bin_dir.join(name));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs the rig's own kubectl (not whatever is on PATH) against the cluster.
pub fn kubectl(args: &[&str]) -> Output {
    let tc = test_cluster();
    tool("kubectl")
        .arg("--kubeconfig")
        .arg(&tc.kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl")
}

/// Runs the rig's helm against the cluster, with its state kept under `target/`.
pub fn helm(args: &[&str]) -> Output {
    let tc = test_cluster();
    let home = target_dir().join("test-helm");
    tool("helm")
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .arg("--kubeconfig")
        .arg(&tc.kubeconfig)
        .args(args)
        .output()
        .expect("running helm")
}

/// Panics with the command's output unless it succeeded; returns its stdout.
pub fn expect_success(what: &str, out: &Output) -> String {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path under the repository (e.g. `tests/cluster/testdata/rig-chart`).
pub fn repo_path(rel: impl AsRef<Path>) -> PathBuf {
    repo_root().join(rel)
}
