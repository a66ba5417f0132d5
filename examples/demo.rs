//! The local demo (`make demo`): the operator, a GitHub fake and a sample
//! RunnerPool on the local control plane, with simulated jobs, so you can
//! watch runners being registered, taking jobs and being replaced.
//!
//! Usage: `cargo run --example demo -- KUBECONFIG KUBECTL OPERATOR_BINARY [SECONDS]`
//! (scripts/demo.sh passes them).

#[path = "../tests/support/simulator.rs"]
mod simulator;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_github::{Config, FakeGitHub, JobStatus, Scope};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use runnerpool::RunnerPool;
use runnerpool::runner::POOL_LABEL;

const NS: &str = "runnerpool-demo";
const TOKEN: &str = "ghp_demotoken000000000000000000000000000";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kubeconfig, kubectl, operator_bin, rest @ ..] = args.as_slice() else {
        eprintln!("usage: demo KUBECONFIG KUBECTL OPERATOR_BINARY [SECONDS]");
        std::process::exit(2);
    };
    let seconds: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(45);

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
    run(
        kubectl,
        &[
            "--kubeconfig",
            kubeconfig,
            "wait",
            "--for=condition=Established",
            "crd/runnerpools.actions.runnerpool.dev",
        ],
    )?;

    step("Starting a fake GitHub (organization acme, repository acme/app)");
    let fake = FakeGitHub::start(Config::default()).await?;
    fake.add_token(TOKEN, &["repo", "admin:org"]);
    fake.add_org("acme");
    fake.add_repo("acme", "app");
    println!("  API at {}", fake.base_url());

    let namespaces: Api<Namespace> = Api::all(client.clone());
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
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    let log = std::fs::File::create(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/demo-operator.log"
    ))?;
    let mut operator = Command::new(operator_bin)
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
        .spawn()?;

    step("Applying RunnerPool demo: 3 runners labelled linux, x64, demo");
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
    let pools: Api<RunnerPool> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    pools
        .patch(
            "demo",
            &PatchParams::apply("demo").force(),
            &Patch::Apply(&pool),
        )
        .await?;
    let sim = tokio::spawn(simulator::simulate_runners(
        client.clone(),
        NS.into(),
        fake.clone(),
        Arc::new(Mutex::new(BTreeSet::new())),
    ));

    step(&format!(
        "Queueing a job every 3 s and finishing each after 4 s, for {seconds} s"
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut next_job = Instant::now() + Duration::from_secs(3);
    let mut running: Vec<(u64, Instant)> = vec![];
    let mut finished = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        if Instant::now() >= next_job {
            let id = fake.queue_job("acme/app", &["linux", "demo"])?;
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
        running.retain(|(id, _)| {
            fake.job(*id)
                .is_some_and(|j| j.status != JobStatus::Completed)
        });
        print_state(&pods, &fake, started, finished).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Busy runners are never removed; let their jobs finish first.
    for job in fake
        .jobs()
        .into_iter()
        .filter(|j| j.status != JobStatus::Completed)
    {
        let _ = fake.finish_job(job.id);
    }
    step("Deleting the pool: every runner leaves GitHub, pods and Secrets go");
    pools.delete("demo", &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(40);
    while pools.get_opt("demo").await?.is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    print_state(&pods, &fake, started, finished).await;
    let left = fake.runners(&Scope::org("acme")).len();
    println!("  registrations left on GitHub: {left}");
    let calls = fake.counters();
    println!("  GitHub calls by endpoint:");
    for (endpoint, n) in &calls.by_endpoint {
        println!("    {n:>5}  {endpoint}");
    }
    sim.abort();
    let _ = operator.kill();
    let _ = operator.wait();
    fake.shutdown().await;
    Ok(())
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn run(cmd: &str, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
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

async fn print_state(pods: &Api<Pod>, fake: &FakeGitHub, started: Instant, finished: usize) {
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("{POOL_LABEL}=demo")))
        .await
    else {
        return;
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
}
