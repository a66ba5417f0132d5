//! The local demo (`make demo`): the operator, a GitHub fake and a sample
//! RunnerPool on the local control plane, with simulated jobs, so you can
//! watch runners being registered, taking jobs and being replaced.
//!
//! Usage: `cargo run --example demo -- KUBECONFIG KUBECTL OPERATOR_BINARY [SECONDS]`
//! (scripts/demo.sh passes them).

#[path = "../tests/support/simulator.rs"]
mod simulator;

use std::collections::BTreeSet;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_github::{Config, FakeGitHub, JobStatus, Scope};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use runnerpool::RunnerPool;
use runnerpool::runner::{POOL_LABEL, RUNNER_ID_LABEL};

const NS: &str = "runnerpool-demo";
const TOKEN: &str = "ghp_demotoken000000000000000000000000000";
const CRD_NAME: &str = "runnerpools.actions.runnerpool.dev";
const OPERATOR_LOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/demo-operator.log");
/// Bounds of the waits on the cluster: generous, a loaded 2-core machine is slow.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long past the planned run the demo waits for its first served job.
const FIRST_JOB_GRACE: Duration = Duration::from_secs(60);
const DELETION_TIMEOUT: Duration = Duration::from_secs(60);
/// The scale-set pool, and its scale set's name.
const SCALE_SET: &str = "demo-scale-set";

type Error = Box<dyn std::error::Error>;

/// Exits non-zero, with the reason and the end of the operator's log, when
/// the demo did not show what it promises: runners online, jobs served and
/// nothing left behind after the pool's deletion.
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kubeconfig, kubectl, operator_bin, rest @ ..] = args.as_slice() else {
        eprintln!("usage: demo KUBECONFIG KUBECTL OPERATOR_BINARY [SECONDS]");
        std::process::exit(2);
    };
    let seconds: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(45);
    if let Err(e) = demo(kubeconfig, kubectl, operator_bin, seconds).await {
        eprintln!("\ndemo failed: {e}");
        if let Ok(log) = std::fs::read_to_string(OPERATOR_LOG) {
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("last lines of {OPERATOR_LOG}:");
            for line in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("  {line}");
            }
        }
        std::process::exit(1);
    }
    println!("\ndemo ok");
}

async fn demo(
    kubeconfig: &str,
    kubectl: &str,
    operator_bin: &str,
    seconds: u64,
) -> Result<(), Error> {
    let kube_config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kube_config, &Default::default()).await?,
    )?;

    step("Installing the RunnerPool CRD");
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/runnerpool.yaml");
    run(
        kubectl,
        &[
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd,
        ],
    )?;
    // `kubectl wait` gives up at once when the API server has not written any
    // condition on the new CRD yet; poll until Established is there and True.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    poll(
        "the RunnerPool CRD to be Established",
        SETUP_TIMEOUT,
        || async {
            let crd = crds.get_opt(CRD_NAME).await.ok()??;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        },
    )
    .await?;

    step("Starting a fake GitHub (organization acme, repository acme/app)");
    let fake = FakeGitHub::start(Config::default()).await?;
    fake.add_token(TOKEN, &["repo", "admin:org"]);
    fake.add_org("acme");
    fake.add_repo("acme", "app");
    println!("  API at {}", fake.base_url());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    // A namespace left Terminating by an earlier run must be gone first.
    poll("an earlier demo namespace to go", SETUP_TIMEOUT, || async {
        match namespaces.get_opt(NS).await {
            Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some() => None,
            Ok(_) => Some(()),
            Err(_) => None,
        }
    })
    .await?;
    if namespaces.get_opt(NS).await?.is_none() {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    // Pods are refused until the namespace's default ServiceAccount exists.
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    poll(
        "the demo namespace's default ServiceAccount",
        SETUP_TIMEOUT,
        || async { service_accounts.get_opt("default").await.ok()?.map(|_| ()) },
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let _ = secrets.delete("github", &DeleteParams::default()).await;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("github".into()),
            ..Default::default()
        },
        string_data: Some([("token".to_string(), TOKEN.to_string())].into()),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &secret).await?;

    step("Starting the operator (log: target/demo-operator.log)");
    let log = std::fs::File::create(OPERATOR_LOG)?;
    let mut operator = OperatorProcess(
        Command::new(operator_bin)
            .args([
                "run",
                "--kubeconfig",
                kubeconfig,
                "--watch-namespace",
                NS,
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--github-sync-interval-seconds",
                "5",
                "--cleanup-timeout-seconds",
                "20",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );

    step("Applying RunnerPool demo: 3 runners labelled linux, x64, demo");
    step(
        "Applying RunnerPool demo-scale-set: a scale set of the Actions service, 0 to 3 runners for the jobs GitHub assigns it (runs-on: demo-scale-set)",
    );
    let pool: serde_json::Value = serde_yaml::from_str(&format!(
        r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerPool
metadata: {{ name: demo, namespace: {NS} }}
spec:
  github:
    organization: acme
    apiUrl: "{}"
    credentialsSecret: {{ name: github }}
  labels: [self-hosted, linux, x64, demo]
  replicas: 3
  template:
    spec:
      containers:
        - name: runner
          image: ghcr.io/actions/actions-runner:latest
"#,
        fake.base_url()
    ))?;
    let scale_set_pool: serde_json::Value = serde_yaml::from_str(&format!(
        r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerPool
metadata: {{ name: {SCALE_SET}, namespace: {NS} }}
spec:
  github:
    organization: acme
    apiUrl: "{}"
    credentialsSecret: {{ name: github }}
  scaleSet: {{}}
  labels: [self-hosted, linux]
  autoscaling: {{ minRunners: 0, maxRunners: 3, idleRunners: 0, scaleDownDelaySeconds: 0 }}
  template:
    spec:
      containers:
        - name: runner
          image: ghcr.io/actions/actions-runner:latest
"#,
        fake.base_url()
    ))?;
    let pools: Api<RunnerPool> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    pools
        .patch(
            "demo",
            &PatchParams::apply("demo").force(),
            &Patch::Apply(&pool),
        )
        .await?;
    pools
        .patch(
            SCALE_SET,
            &PatchParams::apply("demo").force(),
            &Patch::Apply(&scale_set_pool),
        )
        .await?;
    let sim = tokio::spawn(simulator::simulate_runners(
        client.clone(),
        NS.into(),
        fake.clone(),
        Arc::new(Mutex::new(BTreeSet::new())),
    ));

    step(&format!(
        "Queueing a job every 3 s, in turn for demo and for demo-scale-set, and finishing each after 4 s, for {seconds} s"
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut next_job = Instant::now() + Duration::from_secs(3);
    let mut running: Vec<(u64, Instant)> = vec![];
    let mut finished = 0;
    let mut queued = 0u64;
    // Jobs whose runner's pod annotations were shown, and scale-set jobs.
    let mut shown: BTreeSet<u64> = BTreeSet::new();
    let mut scale_set_jobs: BTreeSet<u64> = BTreeSet::new();
    let mut most_online = 0;
    let planned = Duration::from_secs(seconds);
    // Runs at least until one job has been served, so a short run on a slow
    // machine still shows (and checks) the whole cycle.
    while started.elapsed() < planned
        || (finished == 0 && started.elapsed() < planned + FIRST_JOB_GRACE)
    {
        if let Some(status) = operator.0.try_wait()? {
            return Err(format!("the operator exited ({status})").into());
        }
        if Instant::now() >= next_job {
            let id = match queued % 2 {
                0 => fake.queue_job("acme/app", &["linux", "demo"])?,
                _ => {
                    let id = fake.queue_job("acme/app", &[SCALE_SET])?;
                    scale_set_jobs.insert(id);
                    id
                }
            };
            queued += 1;
            running.push((id, Instant::now()));
            next_job += Duration::from_secs(3);
        }
        for (id, _) in running
            .iter()
            .filter(|(_, since)| since.elapsed() >= Duration::from_secs(4))
        {
            if fake
                .job(*id)
                .is_some_and(|j| j.status == JobStatus::InProgress)
                && fake.finish_job(*id).is_ok()
            {
                finished += 1;
            }
        }
        for (id, _) in &running {
            if !shown.contains(id) && show_job(&pods, fake.job(*id)).await {
                shown.insert(*id);
            }
        }
        running.retain(|(id, _)| {
            fake.job(*id)
                .is_some_and(|j| j.status != JobStatus::Completed)
        });
        most_online = most_online.max(print_state(&pods, &fake, started, finished).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if most_online == 0 {
        return Err(format!(
            "no runner came online in {:.0} s",
            started.elapsed().as_secs_f64()
        )
        .into());
    }
    let scale_set_served = fake
        .jobs()
        .iter()
        .filter(|j| scale_set_jobs.contains(&j.id) && j.status != JobStatus::Queued)
        .count();
    if scale_set_served == 0 {
        return Err(format!(
            "no job of the scale set was served in {:.0} s",
            started.elapsed().as_secs_f64()
        )
        .into());
    }
    if finished == 0 {
        return Err(format!(
            "no job was served in {:.0} s although runners came online",
            started.elapsed().as_secs_f64()
        )
        .into());
    }

    // Busy runners are never removed; let their jobs finish first.
    for job in fake
        .jobs()
        .into_iter()
        .filter(|j| j.status != JobStatus::Completed)
    {
        let _ = fake.finish_job(job.id);
    }
    step(
        "Deleting the pools: every runner leaves GitHub, pods and Secrets go, the scale set and its session too",
    );
    pools.delete("demo", &DeleteParams::default()).await?;
    pools.delete(SCALE_SET, &DeleteParams::default()).await?;
    let of_pool = ListParams::default().labels(&format!("{POOL_LABEL} in (demo,{SCALE_SET})"));
    let leftovers = || async {
        let mut left = vec![];
        for name in ["demo", SCALE_SET] {
            if pools.get_opt(name).await.ok()?.is_some() {
                left.push(format!("the RunnerPool {name}"));
            }
        }
        if !fake.scale_sets().is_empty() || !fake.sessions().is_empty() {
            left.push("the scale set or its session".to_string());
        }
        let registrations = fake.runners(&Scope::org("acme")).len();
        if registrations > 0 {
            left.push(format!("{registrations} registrations on GitHub"));
        }
        let pods_left = pods.list(&of_pool).await.ok()?.items.len();
        if pods_left > 0 {
            left.push(format!("{pods_left} pods"));
        }
        let secrets_left = secrets.list(&of_pool).await.ok()?.items.len();
        if secrets_left > 0 {
            left.push(format!("{secrets_left} runner Secrets"));
        }
        Some(left)
    };
    let deadline = Instant::now() + DELETION_TIMEOUT;
    let left = loop {
        let left = leftovers().await;
        match &left {
            Some(left) if left.is_empty() => break vec![],
            _ if Instant::now() >= deadline => {
                break left.unwrap_or_else(|| vec!["(the cluster did not answer)".into()]);
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    print_state(&pods, &fake, started, finished).await;
    let registrations = fake.runners(&Scope::org("acme")).len();
    println!("  registrations left on GitHub: {registrations}");
    let calls = fake.counters();
    println!("  GitHub calls by endpoint:");
    for (endpoint, n) in &calls.by_endpoint {
        println!("    {n:>5}  {endpoint}");
    }
    sim.abort();
    drop(operator);
    fake.shutdown().await;
    if !left.is_empty() {
        return Err(format!(
            "{} s after the pool's deletion, still there: {}",
            DELETION_TIMEOUT.as_secs(),
            left.join(", ")
        )
        .into());
    }
    Ok(())
}

/// The operator's process, stopped whenever the demo ends, error or not.
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks `probe` every half second until it answers, at most `timeout`.
async fn poll<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<()>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(
                format!("timed out after {} s waiting for {what}", timeout.as_secs()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn run(cmd: &str, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Prints one line of the pool's state; returns how many runners are online.
async fn print_state(
    pods: &Api<Pod>,
    fake: &FakeGitHub,
    started: Instant,
    finished: usize,
) -> usize {
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("{POOL_LABEL} in (demo,{SCALE_SET})")))
        .await
    else {
        return 0;
    };
    let runners = fake.runners(&Scope::org("acme"));
    let online = runners
        .iter()
        .filter(|r| r.status == fake_github::RunnerStatus::Online)
        .count();
    let busy = runners.iter().filter(|r| r.busy).count();
    let names: Vec<String> = list
        .items
        .iter()
        .map(|p| {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            format!("{name}({phase})")
        })
        .collect();
    println!(
        "  t={:>4.1}s  pods={} registered={} online={} busy={} jobs-done={}  {}",
        started.elapsed().as_secs_f64(),
        list.items.len(),
        runners.len(),
        online,
        busy,
        finished,
        names.join(" ")
    );
    online
}

/// Shows which job a runner runs, as its pod's annotations say, once the
/// job started; returns whether it did.
async fn show_job(pods: &Api<Pod>, job: Option<fake_github::Job>) -> bool {
    let Some(job) = job.filter(|j| j.status == JobStatus::InProgress) else {
        return false;
    };
    let Some(runner) = job.runner_id else {
        return false;
    };
    let selector = format!("{RUNNER_ID_LABEL}={runner}");
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return false;
    };
    let Some(pod) = list.items.first() else {
        return false;
    };
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let get = |key: &str| {
        annotations
            .get(&format!("actions.runnerpool.dev/job-{key}"))
            .cloned()
    };
    let Some(started) = get("started-at") else {
        return false;
    };
    println!(
        "  pod {} runs job {} of {} (annotations: job-id, job-repository, job-started-at={started})",
        pod.metadata.name.clone().unwrap_or_default(),
        get("id").unwrap_or_default(),
        get("repository").unwrap_or_default(),
    );
    true
}
