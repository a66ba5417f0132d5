//! `helm upgrade` from the previous release of the chart (issue 20 item 4,
//! issue 23 item 5), with live pools, a busy runner and jobs arriving all
//! along: the CRDs are upgraded, no busy runner is disrupted, every job gets
//! a runner, and the webhook Service routes to the leader only.
//!
//! kwok runs no containers, so this test plays the kubelet for the
//! operator's pods: for each pod of the release it starts the real operator
//! binary with the arguments the chart rendered into that pod (listeners on
//! loopback ports, files at local paths) and `POD_NAME`/`POD_NAMESPACE` as
//! the downward API gives them, and sends it SIGTERM when its pod is
//! deleted. GitHub's deliveries go through a stand-in for the webhook
//! Service: each goes to the pod behind the Service in its EndpointSlices
//! (as kube-controller-manager computes them from the Service's selector
//! and the pods' labels and readiness), ready endpoints first, then serving
//! terminating ones, as kube-proxy does; none, and it is refused with 503
//! (what an ingress answers).
//!
//! The previous release's chart is kept as text in tests/data/chart-0.1.0
//! (CI clones without history).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_github::{FakeGitHub, JobStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use support::cluster::{self, expect_success, helm, kubectl, repo_path, wait_for};
use support::operator::{TOKEN, autoscaling, create_secret, operator_binary, pool_yaml};

const PREVIOUS_CHART: &str = "tests/data/chart-0.1.0";
const CHART: &str = "charts/runnerpool-operator";
const SECRET: &str = "upgrade-webhook-secret";
const HOOK_TOKEN: &str = "ghp_upgradehooklog0000000000000000000000";
const T: Duration = Duration::from_secs(60);

/// A field of the RunnerPool spec that the previous release's CRD is made
/// to lack (the copy of that release carries today's CRD, which has it).
const NEW_FIELD: &str = "workFolder";

fn scratch(name: &str) -> PathBuf {
    let dir = cluster::repo_root()
        .join("target/test-logs")
        .join(format!("upgrade-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One operator process playing the container of one pod.
struct Replica {
    child: Child,
    log: PathBuf,
    terminated: bool,
}

impl Replica {
    fn webhook_port(&self) -> Option<u16> {
        let logs = std::fs::read_to_string(&self.log).ok()?;
        let line = logs
            .lines()
            .find(|l| l.contains("webhook listener serving"))?;
        let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    fn terminate(&mut self) {
        if !self.terminated {
            self.terminated = true;
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Replicas = Arc<Mutex<BTreeMap<String, Replica>>>;

/// The arguments of the pod's operator container, with what only makes
/// sense in a container replaced: listeners on loopback ports of their
/// own, the mounted files at local paths, and the cluster's kubeconfig.
fn process_args(pod: &Pod, files: &Files) -> Vec<String> {
    let spec = pod.spec.as_ref().expect("a pod spec");
    let container = spec
        .containers
        .iter()
        .find(|c| c.name == "operator")
        .expect("the operator container");
    let replaced = [
        "--admin-listen=",
        "--webhook-listen=",
        "--webhook-secret-file=",
        "--webhook-delivery-log-credentials=",
    ];
    let mut args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !replaced.iter().any(|r| a.starts_with(r)))
        .collect();
    args.extend([
        "--kubeconfig".into(),
        cluster::test_cluster().kubeconfig.display().to_string(),
        "--admin-listen=127.0.0.1:0".into(),
        "--webhook-listen=127.0.0.1:0".into(),
        format!("--webhook-secret-file={}", files.webhook_secret.display()),
        format!(
            "--webhook-delivery-log-credentials={}",
            files.delivery_log.display()
        ),
    ]);
    args
}

struct Files {
    webhook_secret: PathBuf,
    delivery_log: PathBuf,
    logs: PathBuf,
}

/// Runs an operator process for every pod of release `release` in `ns`
/// from the moment kwok runs it, and SIGTERMs it when the pod is deleted.
fn play_the_kubelet(client: &kube::Client, ns: &str, release: &str, files: Files) -> Replicas {
    let replicas: Replicas = Default::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let config =
        watcher::Config::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let running = replicas.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(pods, config));
        while let Some(event) = events.next().await {
            let (pod, deleted) = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                Ok(watcher::Event::Delete(pod)) => (pod, true),
                _ => continue,
            };
            let name = pod.name_any();
            let mut replicas = running.lock().unwrap();
            if deleted || pod.metadata.deletion_timestamp.is_some() {
                if let Some(replica) = replicas.get_mut(&name) {
                    replica.terminate();
                }
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase != Some("Running") || replicas.contains_key(&name) {
                continue;
            }
            let log = files.logs.join(format!("{name}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(operator_binary())
                .args(process_args(&pod, &files))
                .env_remove("KUBECONFIG")
                .env("POD_NAME", &name)
                .env("POD_NAMESPACE", pod.namespace().unwrap())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("starting the operator");
            replicas.insert(
                name,
                Replica {
                    child,
                    log,
                    terminated: false,
                },
            );
        }
    });
    replicas
}

/// What the stand-in Service saw and did with one delivery.
#[derive(Clone, Debug)]
struct Routed {
    /// The pods of the ready endpoints when it arrived.
    ready: Vec<String>,
    to: Option<String>,
    status: u16,
}

/// The pods behind Service `service`: those of its ready endpoints, else
/// (kube-proxy's fallback) those of its serving, terminating ones.
async fn endpoint_pods(slices: &Api<EndpointSlice>, service: &str) -> (Vec<String>, Vec<String>) {
    let selector = format!("kubernetes.io/service-name={service}");
    let Ok(list) = slices.list(&ListParams::default().labels(&selector)).await else {
        return Default::default();
    };
    let (mut ready, mut serving) = (Vec::new(), Vec::new());
    for endpoint in list.items.iter().flat_map(|s| s.endpoints.iter().flatten()) {
        let Some(pod) = endpoint.target_ref.as_ref().and_then(|r| r.name.clone()) else {
            continue;
        };
        let conditions = endpoint.conditions.clone().unwrap_or_default();
        if conditions.ready == Some(true) {
            ready.push(pod);
        } else if conditions.serving == Some(true) {
            serving.push(pod);
        }
    }
    (ready, serving)
}

/// The stand-in for the webhook Service; returns its URL and its record.
async fn webhook_service(
    client: &kube::Client,
    ns: &str,
    service: String,
    replicas: Replicas,
) -> (String, Arc<Mutex<Vec<Routed>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let record: Arc<Mutex<Vec<Routed>>> = Default::default();
    let routed = record.clone();
    let forward = move |headers: HeaderMap, body: axum::body::Bytes| {
        let (slices, service, replicas, routed) = (
            slices.clone(),
            service.clone(),
            replicas.clone(),
            routed.clone(),
        );
        async move {
            let (ready, serving) = endpoint_pods(&slices, &service).await;
            let to = ready.first().or(serving.first()).cloned();
            let port = to
                .as_ref()
                .and_then(|pod| replicas.lock().unwrap().get(pod)?.webhook_port());
            let status = match port {
                None => 503,
                Some(port) => {
                    let mut request = reqwest::Client::new()
                        .post(format!("http://127.0.0.1:{port}/webhook"))
                        .body(body);
                    for (name, value) in headers.iter() {
                        if name.as_str().starts_with("x-") || name == "content-type" {
                            request = request.header(name.as_str(), value.as_bytes());
                        }
                    }
                    match request.send().await {
                        Ok(answer) => answer.status().as_u16(),
                        Err(_) => 502,
                    }
                }
            };
            routed.lock().unwrap().push(Routed { ready, to, status });
            StatusCode::from_u16(status).unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/webhook", axum::routing::post(forward));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, record)
}

/// Whether the API server accepts a pool using [`NEW_FIELD`] (server-side
/// dry run, unknown fields refused rather than dropped).
fn accepts_the_new_field(ns: &str, api_url: &str) -> Result<(), String> {
    let yaml = pool_yaml(
        "probe",
        "organization: acme",
        api_url,
        0,
        &["linux"],
        &format!("  {NEW_FIELD}: /work"),
    );
    let file = scratch("probe").join("pool.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = kubectl(&[
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        ns,
        "-f",
        file.to_str().unwrap(),
    ]);
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn jobs_in(fake: &FakeGitHub, status: JobStatus) -> usize {
    fake.jobs().iter().filter(|j| j.status == status).count()
}

/// Deletes the test's namespace when dropped, as `Env` does: its runner
/// pods go with it, and nothing is left for later tests' operators.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

async fn lease_holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_upgrade_from_the_previous_release_loses_no_job_and_disrupts_no_runner() {
    support::operator::install_crd();
    let client = cluster::client().await;
    let ns = cluster::fresh_namespace(&client, "upgrade").await;
    let _cleanup = Namespace(ns.clone());
    let release = format!("up-{:08x}", rand::random::<u32>());
    let full = format!("{release}-runnerpool-operator");
    let fake = support::operator::start_fake().await;
    fake.add_token(HOOK_TOKEN, &["admin:org_hook"]);
    create_secret(&client, &ns, "gh", &[("token", TOKEN)]).await;
    let api_url = fake.base_url();
    tokio::spawn(support::simulator::simulate_runners(
        client.clone(),
        ns.clone(),
        fake.clone(),
        Default::default(),
    ));

    // The kubelet's side: local files for what the chart mounts.
    let dir = scratch("files");
    let webhook_secret = dir.join("webhook-secret");
    std::fs::write(&webhook_secret, SECRET).unwrap();
    let delivery_log = dir.join("delivery-log");
    std::fs::create_dir_all(&delivery_log).unwrap();
    std::fs::write(delivery_log.join("token"), HOOK_TOKEN).unwrap();
    let replicas = play_the_kubelet(
        &client,
        &ns,
        &release,
        Files {
            webhook_secret,
            delivery_log,
            logs: scratch("logs"),
        },
    );
    let (service_url, routed) =
        webhook_service(&client, &ns, format!("{full}-webhook"), replicas.clone()).await;
    fake.set_webhook(Some(fake_github::WebhookConfig {
        url: service_url,
        secret: Some(SECRET.into()),
    }));

    // The previous release, installed with its defaults and the values of a
    // webhook-driven installation with a standby.
    let values = [
        format!("installId=upgrade,watchNamespace={ns},githubSyncIntervalSeconds=5,replicaCount=2"),
        "webhook.enabled=true,webhook.secret.name=webhook".into(),
        "webhook.deliveryLog.hooks={orgs/acme/hooks/1},webhook.deliveryLog.secretName=hook-log"
            .into(),
        format!("webhook.deliveryLog.apiUrl={api_url}"),
    ];
    let mut install = vec!["install".to_string(), release.clone()];
    install.push(repo_path(PREVIOUS_CHART).display().to_string());
    install.extend(["--namespace".into(), ns.clone()]);
    for value in &values {
        install.extend(["--set".into(), value.clone()]);
    }
    let install: Vec<&str> = install.iter().map(String::as_str).collect();
    expect_success("helm install (previous release)", &helm(&install));
    // The previous release's CRD, as one lacking a field of today's.
    let path =
        format!("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/{NEW_FIELD}");
    expect_success(
        "removing a field from the CRD",
        &kubectl(&[
            "patch",
            "crd",
            "runnerpools.actions.runnerpool.dev",
            "--type=json",
            "-p",
            &format!(r#"[{{"op":"remove","path":"{path}"}}]"#),
        ]),
    );
    wait_for("the CRD without the field", T, || async {
        accepts_the_new_field(&ns, &api_url).is_err().then_some(())
    })
    .await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let first_leader = wait_for("a leader", T, || lease_holder(&leases, &full)).await;

    // A live pool growing on demand only, with a busy runner.
    let pool = autoscaling(
        &pool_yaml(
            "ci",
            "organization: acme",
            &api_url,
            0,
            &["self-hosted", "linux"],
            "",
        ),
        0,
        100,
        0,
    );
    let file = scratch("pool").join("pool.yaml");
    std::fs::write(&file, pool).unwrap();
    expect_success(
        "kubectl apply (pool)",
        &kubectl(&["apply", "-n", &ns, "-f", file.to_str().unwrap()]),
    );
    // Queued once the leader knows the pool (else no pool matches the job).
    expect_success(
        "the pool to be Ready",
        &kubectl(&[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "--timeout=60s",
            "runnerpool/ci",
        ]),
    );
    let busy_job = fake.queue_job("acme/app", &["linux"]).unwrap();
    let busy_runner = wait_for("the first job to run", T, || async {
        let job = fake.job(busy_job)?;
        (job.status == JobStatus::InProgress).then_some(job.runner_name?)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let busy_pod_uid = pods
        .get(&busy_runner)
        .await
        .expect("the busy runner's pod")
        .uid();

    // Jobs arrive all along the upgrade.
    let arriving = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let queueing = {
        let (fake, arriving) = (fake.clone(), arriving.clone());
        tokio::spawn(async move {
            let mut queued = 0;
            while arriving.load(std::sync::atomic::Ordering::SeqCst) && queued < 90 {
                fake.queue_job("acme/app", &["linux"]).unwrap();
                queued += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            queued
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let began = Instant::now();
    let mut upgrade = vec!["upgrade".to_string(), release.clone()];
    upgrade.push(repo_path(CHART).display().to_string());
    upgrade.extend(["--namespace".into(), ns.clone()]);
    // Today's defaults with the values set at install; Helm takes over the
    // CRDs the previous release installed from its crds/ directory. A new
    // release runs a new image (its appVersion): the pods roll.
    upgrade.extend([
        "--reset-then-reuse-values".into(),
        "--take-ownership".into(),
    ]);
    upgrade.extend(["--set".into(), "image.tag=next".into()]);
    let upgrade: Vec<&str> = upgrade.iter().map(String::as_str).collect();
    expect_success("helm upgrade", &helm(&upgrade));
    // From here the webhook Service is today's.
    let upgraded_at = routed.lock().unwrap().len();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let new_leader = wait_for("the rollout to end with a new leader", T, || async {
        let deployment = deployments.get(&full).await.ok()?;
        let status = deployment.status?;
        let spec = deployment.spec?;
        let done = status.observed_generation == deployment.metadata.generation
            && status.updated_replicas == spec.replicas
            && status.replicas == spec.replicas
            && status.ready_replicas == spec.replicas;
        let holder = lease_holder(&leases, &full).await?;
        let live = pods.get_opt(&holder).await.ok()??;
        (done && live.metadata.deletion_timestamp.is_none()).then_some(holder)
    })
    .await;
    let rolled = began.elapsed();
    // The Service routes to the new leader alone.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the webhook Service to route to the new leader",
        T,
        || async {
            let (ready, _) = endpoint_pods(&slices, &format!("{full}-webhook")).await;
            (ready == [new_leader.clone()]).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    arriving.store(false, std::sync::atomic::Ordering::SeqCst);
    let queued = queueing.await.unwrap() + 1;

    // The CRDs are today's.
    accepts_the_new_field(&ns, &api_url).expect("the upgraded CRD takes the new field");
    // Every job gets a runner, the busy one still runs on its pod.
    wait_for("every job to run", Duration::from_secs(90), || async {
        (jobs_in(&fake, JobStatus::InProgress) == queued).then_some(())
    })
    .await;
    let all_running = began.elapsed();
    let busy = fake.job(busy_job).unwrap();
    assert_eq!(
        busy.status,
        JobStatus::InProgress,
        "the busy job was disrupted"
    );
    assert_eq!(busy.runner_name.as_deref(), Some(busy_runner.as_str()));
    assert_eq!(
        pods.get(&busy_runner).await.map(|p| p.uid()).ok().flatten(),
        busy_pod_uid,
        "the busy runner's pod was replaced"
    );
    assert_eq!(
        jobs_in(&fake, JobStatus::Completed),
        0,
        "no job ended early"
    );

    let routed = routed.lock().unwrap().clone();
    let most_behind = routed[upgraded_at..]
        .iter()
        .map(|r| r.ready.len())
        .max()
        .unwrap_or(0);
    let refused = |routed: &[Routed]| routed.iter().filter(|r| r.status != 202).count();
    let (before, after) = routed.split_at(upgraded_at);
    let mut taken_by: BTreeMap<String, usize> = BTreeMap::new();
    for r in routed.iter().filter(|r| r.status == 202) {
        *taken_by
            .entry(r.to.clone().unwrap_or_default())
            .or_default() += 1;
    }
    println!(
        "helm upgrade, leader {first_leader} -> {new_leader}: rollout done in {:.1} s, every one of {queued} jobs running after {:.1} s; deliveries refused (then recovered from the delivery log): {} of {} before the upgrade (the previous chart's Service routes to the standby too), {} of {} from then on; taken by {taken_by:?}",
        rolled.as_secs_f64(),
        all_running.as_secs_f64(),
        refused(before),
        before.len(),
        refused(after),
        after.len()
    );
    assert_ne!(first_leader, new_leader, "the pods rolled");
    assert!(
        most_behind <= 1,
        "the upgraded webhook Service had {most_behind} ready endpoints at once: {:?}",
        &routed[upgraded_at..]
    );
    for replica in replicas.lock().unwrap().values() {
        let logs = std::fs::read_to_string(&replica.log).unwrap_or_default();
        assert!(!logs.contains(TOKEN) && !logs.contains(HOOK_TOKEN));
    }
    expect_success(
        "helm uninstall",
        &helm(&["uninstall", &release, "--namespace", &ns, "--wait"]),
    );
    expect_success(
        "the CRD outlives the release",
        &kubectl(&["get", "crd", "runnerpools.actions.runnerpool.dev"]),
    );
}
