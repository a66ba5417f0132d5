//! Side by side with actions-runner-controller (ARC v0.27.6) in both its
//! modes (legacy RunnerDeployment + HorizontalRunnerAutoscaler on webhooks;
//! scale sets: AutoscalingRunnerSet and its listener), and our operator in
//! both its modes (webhooks, scale set): the same workloads on the same local
//! control plane and the same GitHub fake (a fresh instance per side, same
//! accounts and settings), one operator after the other; prints one Markdown
//! table (for the README). `make bench-vs-arc`.
//!
//! Workloads (sizes from the environment, defaults in brackets):
//! 1. scale from zero on demand (webhooks; the message session on the
//!    scale-set sides, once it is open), one autoscaling pool (min 0,
//!    max = burst): `RUNNERPOOL_VS_ARC_SINGLES` (10) single jobs, each after
//!    the previous one's pod is gone, then a burst of `RUNNERPOOL_VS_ARC_BURST`
//!    (200) jobs: queued → runner pod created.
//! 2. a fixed pool of `RUNNERPOOL_VS_ARC_RUNNERS` (200): 0 → all online; every
//!    runner takes a job, the jobs finish → replacements online; then
//!    `RUNNERPOOL_VS_ARC_DOWN_TO` (20) runners get jobs and the pool is
//!    scaled down to that many; then it is deleted while those jobs still run
//!    (they finish 10 s later).
//!
//! Pick sides with arguments `ours`, `scale-set`, `arc`, `arc-scale-set`
//! (default: all).
//! Under `cargo test` it does nothing: it measures, it does not assert.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_github::{FakeGitHub, JobStatus, RunnerStatus, Scope};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use support::arc::{self, ArcController};
use support::arc_scale_set::{self, ArcScaleSetController};
use support::bench::load;
use support::cluster;
use support::operator::{self, Base, Env, autoscaling, pool_yaml};

const SECRET: &str = "bench-webhook-secret";
const REPO: &str = "acme/app";
const JOB_LABELS: &[&str] = &["self-hosted", "linux"];
/// A JIT runner has only the labels it is given; ARC's runners get
/// `self-hosted` (and OS, arch) from `config.sh`.
const OUR_LABELS: &[&str] = &["self-hosted", "linux"];
/// How long one phase may take before the bench records a timeout.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long removals may take before the bench counts what is left: three
/// of ARC's default sync periods (1 min).
const GONE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long busy runners keep their jobs after their pool's deletion.
const JOBS_AFTER_DELETE: Duration = Duration::from_secs(10);

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sizes {
    singles: usize,
    burst: usize,
    runners: usize,
    down_to: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("timeout".into(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("timeout".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// Polls `probe` every 200 ms until it holds; the time since `start`, or
/// `None` once `timeout` has passed.
async fn time_until<F, Fut>(start: Instant, timeout: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if probe().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One operator under test, in its own namespace with its own fake.
enum Operator {
    Ours(Box<Env>),
    /// Ours in scale-set mode: no webhook, pools are scale sets of the
    /// fake's Actions service and jobs target them by name.
    OursScaleSet(Box<Env>),
    Arc {
        controller: ArcController,
        simulator: tokio::task::JoinHandle<()>,
    },
    /// ARC's scale-set mode: an AutoscalingRunnerSet per pool, jobs target
    /// its scale set by name.
    ArcScaleSet {
        controller: ArcScaleSetController,
        simulator: tokio::task::JoinHandle<()>,
    },
}

struct Side {
    client: kube::Client,
    ns: String,
    fake: FakeGitHub,
    operator: Operator,
}

impl Side {
    async fn ours() -> Side {
        let (env, _) = Env::start_with_webhooks(
            "vs-arc-ours",
            SECRET,
            // The operator's defaults (the test harness lowers them).
            "120",
            &["--cleanup-timeout-seconds", "300", "--log", "info"],
        )
        .await;
        Side::of(env, Operator::Ours)
    }

    /// A side of ours, `env` wrapped as `operator`.
    fn of(env: Env, operator: fn(Box<Env>) -> Operator) -> Side {
        Side {
            client: env.client.clone(),
            ns: env.ns.clone(),
            fake: env.fake.clone(),
            operator: operator(Box::new(env)),
        }
    }

    async fn ours_scale_set() -> Side {
        let env = Env::start_with(
            "vs-arc-scale-set",
            &["--cleanup-timeout-seconds", "300", "--log", "info"],
        )
        .await;
        Side::of(env, Operator::OursScaleSet)
    }

    async fn arc() -> Side {
        let bin = arc::install_arc();
        let client = cluster::client().await;
        let ns = cluster::fresh_namespace(&client, "vs-arc-arc").await;
        let fake = operator::start_fake().await;
        let controller = ArcController::start(&bin, &ns, &fake.base_url(), operator::TOKEN, SECRET);
        fake.set_webhook(Some(fake_github::WebhookConfig {
            url: controller.webhook_url.clone(),
            secret: Some(SECRET.into()),
        }));
        let simulator = tokio::spawn(arc::simulate_arc_runners(
            client.clone(),
            ns.clone(),
            fake.clone(),
        ));
        Side {
            client,
            ns,
            fake,
            operator: Operator::Arc {
                controller,
                simulator,
            },
        }
    }

    async fn arc_scale_set() -> Side {
        let bin = arc::install_arc();
        let client = cluster::client().await;
        let ns = cluster::fresh_namespace(&client, "vs-arc-arc-scale-set").await;
        let fake = operator::start_fake().await;
        let controller =
            ArcScaleSetController::start(&bin, client.clone(), &ns, operator::TOKEN).await;
        let simulator = tokio::spawn(support::simulator::simulate_runner_pods(
            client.clone(),
            ns.clone(),
            fake.clone(),
            Default::default(),
            arc_scale_set::RUNNER_POD_LABEL,
        ));
        Side {
            client,
            ns,
            fake,
            operator: Operator::ArcScaleSet {
                controller,
                simulator,
            },
        }
    }

    fn name(&self) -> &'static str {
        match self.operator {
            Operator::Ours(_) => "runnerpool-operator (webhooks)",
            Operator::OursScaleSet(_) => "runnerpool-operator (scale set)",
            Operator::Arc { .. } => "ARC v0.27.6 (legacy, webhooks)",
            Operator::ArcScaleSet { .. } => "ARC v0.27.6 (scale set)",
        }
    }

    /// The label every runner pod of this side has (ARC's listener pod
    /// lives beside them on the scale-set side).
    fn runner_pod_label(&self) -> &'static str {
        match self.operator {
            Operator::Ours(_) | Operator::OursScaleSet(_) => runnerpool::runner::RUNNER_ID_LABEL,
            Operator::Arc { .. } => arc::RUNNER_POD_LABEL,
            Operator::ArcScaleSet { .. } => arc_scale_set::RUNNER_POD_LABEL,
        }
    }

    /// Whether jobs go to a scale set by its name (not by labels).
    fn scale_sets(&self) -> bool {
        matches!(
            self.operator,
            Operator::OursScaleSet(_) | Operator::ArcScaleSet { .. }
        )
    }

    /// An ARC AutoscalingRunnerSet for the repository (its scope from the
    /// config URL: GHES paths on the fake, as ARC derives them for a host
    /// that is not github.com).
    fn arc_scale_set_yaml(&self, name: &str, min: u32, max: u32) -> String {
        let url = format!("{}/{REPO}", self.fake.base_url().trim_end_matches('/'));
        arc_scale_set::autoscaling_runner_set_yaml(name, &url, min, max)
    }

    /// Waits until the scale set of pool `pool` has a message session (on
    /// the scale-set sides; at once on the others).
    async fn wait_for_session(&self, pool: &str) {
        if !self.scale_sets() {
            return;
        }
        time_until(Instant::now(), PHASE_TIMEOUT, || async {
            let ids: BTreeSet<u64> = self
                .fake
                .scale_sets()
                .into_iter()
                .filter(|s| s.name == pool)
                .map(|s| s.id)
                .collect();
            self.fake
                .sessions()
                .iter()
                .any(|s| ids.contains(&s.scale_set_id))
        })
        .await;
    }

    fn rss_kib(&self) -> u64 {
        match &self.operator {
            Operator::Ours(env) | Operator::OursScaleSet(env) => {
                env.operator.rss_kib().unwrap_or(0)
            }
            Operator::Arc { controller, .. } => controller.rss_kib(),
            Operator::ArcScaleSet { controller, .. } => controller.rss_kib(),
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Applies YAML documents to the side's namespace (server-side).
    fn kubectl_apply(&self, yaml: &str) {
        let file = std::env::temp_dir().join(format!("vs-arc-{}-{}.yaml", self.ns, rand_suffix()));
        std::fs::write(&file, yaml).expect("manifest");
        cluster::expect_success(
            "applying a manifest",
            &cluster::kubectl(&[
                "apply",
                "--server-side",
                "--field-manager=vs-arc",
                "--force-conflicts",
                "-n",
                &self.ns,
                "-f",
                file.to_str().expect("utf-8 path"),
            ]),
        );
        let _ = std::fs::remove_file(file);
    }

    /// Our pool of `replicas` runners for the repository (a scale set of
    /// the pool's name on the scale-set side).
    fn our_pool(&self, env: &Env, name: &str, replicas: u32) -> String {
        let scope = format!("repository: {REPO}");
        let extra = match self.operator {
            Operator::OursScaleSet(_) => "  scaleSet: {}",
            _ => "",
        };
        pool_yaml(
            name,
            &scope,
            &env.api_url(Base::Root),
            replicas,
            OUR_LABELS,
            extra,
        )
    }

    /// An autoscaling pool (min 0, max `max`) scaled by webhooks.
    async fn apply_autoscaling(&self, name: &str, max: u32) {
        match &self.operator {
            Operator::Ours(env) | Operator::OursScaleSet(env) => {
                let yaml = self.our_pool(env, name, 0);
                env.apply_pool(&autoscaling(&yaml, 0, max, 0)).await;
            }
            Operator::Arc { .. } => {
                // ARC's default scale-down delay after a scale-out is 10
                // minutes: with it, a second job would find the first one's
                // replacement waiting and scale-from-zero could not be
                // measured; ours runs with 0 here too. replicas 0 at first:
                // unset means 1 until the autoscaler's first reconcile, an
                // idle runner the first job would take.
                let rd = arc::runner_deployment_yaml(name, REPO, &["linux"], Some(0));
                let hra = arc::webhook_autoscaler_yaml(
                    name,
                    name,
                    0,
                    max,
                    "  scaleDownDelaySecondsAfterScaleOut: 0\n",
                );
                self.kubectl_apply(&format!("{rd}---\n{hra}"));
            }
            Operator::ArcScaleSet { .. } => {
                self.kubectl_apply(&self.arc_scale_set_yaml(name, 0, max));
            }
        }
    }

    async fn apply_fixed(&self, name: &str, replicas: u32) {
        match &self.operator {
            Operator::Ours(env) | Operator::OursScaleSet(env) => {
                env.apply_pool(&self.our_pool(env, name, replicas)).await;
            }
            Operator::Arc { .. } => {
                self.kubectl_apply(&arc::runner_deployment_yaml(
                    name,
                    REPO,
                    &["linux"],
                    Some(replicas),
                ));
            }
            Operator::ArcScaleSet { .. } => {
                self.kubectl_apply(&self.arc_scale_set_yaml(name, replicas, replicas));
            }
        }
    }

    fn delete(&self, name: &str) {
        let objects = match self.operator {
            Operator::Ours(_) | Operator::OursScaleSet(_) => vec![format!("runnerpool/{name}")],
            Operator::Arc { .. } => vec![
                format!("runnerdeployment/{name}"),
                format!("horizontalrunnerautoscaler/{name}"),
            ],
            Operator::ArcScaleSet { .. } => vec![format!("autoscalingrunnerset/{name}")],
        };
        let mut args = vec![
            "delete",
            "-n",
            &self.ns,
            "--ignore-not-found",
            "--wait=false",
        ];
        args.extend(objects.iter().map(String::as_str));
        cluster::expect_success("deleting a pool", &cluster::kubectl(&args));
    }

    /// How this side's runners register, outside the REST calls counted.
    fn registration(&self) -> &'static str {
        match self.operator {
            Operator::Ours(_) => {
                "none: each runner's JIT config is minted by the operator (`generate-jitconfig`, counted above)"
            }
            Operator::OursScaleSet(_) => {
                "none: each runner's JIT config is minted by the operator from the scale set (`generatejitconfig`, counted above)"
            }
            Operator::Arc { .. } => {
                "each runner registers itself with the scope's shared registration token (in the pod's environment, cached ~30 min by ARC)"
            }
            Operator::ArcScaleSet { .. } => {
                "none: each runner's JIT config is minted by ARC's EphemeralRunner controller from the scale set (`generatejitconfig`, counted above)"
            }
        }
    }

    /// Runner pods not being deleted and not finished.
    async fn live_pods(&self) -> usize {
        let runners = ListParams::default().labels(self.runner_pod_label());
        let Ok(list) = self.pods().list(&runners).await else {
            return usize::MAX;
        };
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .count()
    }

    /// Every pod, ARC's listener pods included.
    async fn all_pods(&self) -> usize {
        self.pods()
            .list(&ListParams::default())
            .await
            .map_or(usize::MAX, |l| l.items.len())
    }

    /// Registrations of pool `pool` (both name runners `POOL-…`).
    fn registrations(&self, pool: &str) -> Vec<fake_github::Runner> {
        let prefix = format!("{pool}-");
        self.fake
            .runners(&Scope::repo("acme", "app"))
            .into_iter()
            .filter(|r| r.name.starts_with(&prefix))
            .collect()
    }

    fn online_idle(&self) -> BTreeSet<u64> {
        self.registrations("fixed")
            .into_iter()
            .filter(|r| r.status == RunnerStatus::Online && !r.busy)
            .map(|r| r.id)
            .collect()
    }

    /// Queues `n` jobs for pool `pool`: by labels, or on the scale-set
    /// side by the scale set's name.
    fn queue(&self, pool: &str, n: usize) -> Vec<u64> {
        let labels: &[&str] = if self.scale_sets() {
            &[pool]
        } else {
            JOB_LABELS
        };
        (0..n)
            .map(|_| self.fake.queue_job(REPO, labels).expect("queue a job"))
            .collect()
    }

    fn in_progress(&self, jobs: &[u64]) -> bool {
        jobs.iter().all(|j| {
            self.fake
                .job(*j)
                .is_some_and(|j| j.status == JobStatus::InProgress)
        })
    }

    fn finish(&self, jobs: &[u64]) {
        for j in jobs {
            if self
                .fake
                .job(*j)
                .is_some_and(|j| j.status != JobStatus::Completed)
            {
                let _ = self.fake.finish_job(*j);
            }
        }
    }

    /// Deletes the namespace; ARC's finalizers need ARC running until it is gone.
    async fn shutdown(self) {
        let _ = cluster::kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
        if let Operator::Arc { simulator, .. } | Operator::ArcScaleSet { simulator, .. } =
            &self.operator
        {
            let _ = cluster::kubectl(&[
                "wait",
                "--for=delete",
                &format!("namespace/{}", self.ns),
                "--timeout=120s",
            ]);
            simulator.abort();
        }
    }
}

fn rand_suffix() -> u32 {
    rand::random()
}

/// Counts busy runners whose pod went away (deleted, or marked for deletion)
/// while their job ran: each one a job killed.
fn watch_for_killed_busy_runners(side: &Side) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let killed = Arc::new(AtomicUsize::new(0));
    let pods = side.pods();
    let fake = side.fake.clone();
    let count = killed.clone();
    let task = tokio::spawn(async move {
        let mut alive: BTreeSet<String> = BTreeSet::new();
        let mut counted: BTreeSet<String> = BTreeSet::new();
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                let now: BTreeSet<String> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                let busy: BTreeSet<String> = fake
                    .all_runners()
                    .into_iter()
                    .filter(|r| r.busy)
                    .map(|r| r.name)
                    .collect();
                for gone in alive.difference(&now) {
                    if busy.contains(gone) && counted.insert(gone.clone()) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                alive = now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (killed, task)
}

/// Records the runner pods seen (by name: every side names a runner after
/// its pod) until aborted; whether their runners came online is the fake's
/// record ([`SeenRunners::never_online`]), which also knows a runner online
/// for less than the time between two looks.
fn watch_runner_pods(side: &Side) -> (SeenRunners, tokio::task::JoinHandle<()>) {
    let seen = SeenRunners::default();
    let pods = side.pods();
    let runners = ListParams::default().labels(side.runner_pod_label());
    let record = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&runners).await {
                let now = Instant::now();
                let mut seen = record.0.lock().unwrap();
                for name in list.items.into_iter().filter_map(|p| p.metadata.name) {
                    seen.entry(name).or_insert((now, now)).1 = now;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (seen, task)
}

/// Runner pods seen: name → first and last seen.
#[derive(Clone, Default)]
struct SeenRunners(Arc<std::sync::Mutex<BTreeMap<String, (Instant, Instant)>>>);

impl SeenRunners {
    /// Runner pods seen whose runner never came online (by the fake's
    /// record) and ran no job: name, first and last seen.
    fn never_online(&self, fake: &FakeGitHub) -> Vec<(String, Instant, Instant)> {
        let mut online = fake.runners_came_online();
        online.extend(fake.jobs().into_iter().filter_map(|j| j.runner_name));
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| !online.contains(*name))
            .map(|(name, (first, last))| (name.clone(), *first, *last))
            .collect()
    }
}

#[derive(Default)]
struct Results {
    registration: &'static str,
    singles: Vec<Duration>,
    burst: Vec<Duration>,
    burst_all: Option<Duration>,
    burst_busy: Option<Duration>,
    auto_deleted: Option<Duration>,
    up: Option<Duration>,
    replaced: Option<Duration>,
    rss_kib: u64,
    down: Option<Duration>,
    down_killed: usize,
    deleted: Option<Duration>,
    leftover_registrations: usize,
    leftover_pods: usize,
    delete_killed: usize,
    busy_delete_refused: u64,
    never_online: Vec<(String, Instant, Instant)>,
    /// When each workload began, for placing the pods above.
    marks: Vec<(&'static str, Instant)>,
    jobs: usize,
    calls: BTreeMap<String, u64>,
}

async fn run(side: &Side, sizes: &Sizes) -> Results {
    let mut r = Results {
        registration: side.registration(),
        ..Results::default()
    };
    side.fake.set_rate_limit(1_000_000);
    let before = side.fake.counters();
    let (seen, seen_task) = watch_runner_pods(side);
    r.marks.push(("autoscaling pool applied", Instant::now()));

    // 1. Scale from zero on webhooks.
    side.apply_autoscaling("auto", sizes.burst as u32).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    side.wait_for_session("auto").await;
    time_until(Instant::now(), PHASE_TIMEOUT, || async {
        side.live_pods().await == 0
    })
    .await;
    let mut added = operator::pod_additions_matching(side.pods(), Some(side.runner_pod_label()));
    for _ in 0..sizes.singles {
        while added.try_recv().is_ok() {}
        let queued = Instant::now();
        let jobs = side.queue("auto", 1);
        match tokio::time::timeout(PHASE_TIMEOUT, added.recv()).await {
            Ok(Some(at)) => r.singles.push(at.duration_since(queued)),
            _ => break,
        }
        let ran = time_until(Instant::now(), GONE_TIMEOUT, || async {
            side.in_progress(&jobs)
        })
        .await;
        side.finish(&jobs);
        r.jobs += 1;
        let idle = time_until(Instant::now(), GONE_TIMEOUT, || async {
            side.live_pods().await == 0
        })
        .await;
        if ran.is_none() || idle.is_none() {
            break;
        }
    }
    while added.try_recv().is_ok() {}
    let queued = Instant::now();
    r.marks.push(("burst queued", queued));
    let jobs = side.queue("auto", sizes.burst);
    let deadline = queued + PHASE_TIMEOUT;
    while r.burst.len() < sizes.burst {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, added.recv()).await {
            Ok(Some(at)) => r.burst.push(at.duration_since(queued)),
            _ => break,
        }
    }
    if r.burst.len() == sizes.burst {
        r.burst_all = Some(queued.elapsed());
    }
    r.burst_busy = time_until(queued, PHASE_TIMEOUT, || async { side.in_progress(&jobs) }).await;
    side.finish(&jobs);
    r.jobs += sizes.burst;
    time_until(Instant::now(), GONE_TIMEOUT, || async {
        side.live_pods().await == 0
    })
    .await;
    side.delete("auto");
    let start = Instant::now();
    r.marks.push(("autoscaling pool deleted", start));
    r.auto_deleted = time_until(start, GONE_TIMEOUT, || async {
        side.all_pods().await == 0 && side.registrations("auto").is_empty()
    })
    .await;
    r.leftover_registrations += side.registrations("auto").len();
    r.leftover_pods += side.all_pods().await;

    // 2. A fixed pool: up, replacements, scale-down, deletion.
    let n = sizes.runners;
    let start = Instant::now();
    r.marks.push(("fixed pool applied", start));
    side.apply_fixed("fixed", n as u32).await;
    r.up = time_until(start, PHASE_TIMEOUT, || async {
        side.online_idle().len() >= n
    })
    .await;
    r.rss_kib = side.rss_kib();
    let first = side.online_idle();
    let jobs = side.queue("fixed", n);
    time_until(Instant::now(), PHASE_TIMEOUT, || async {
        side.in_progress(&jobs)
    })
    .await;
    let finished = Instant::now();
    r.marks.push(("fixed pool's jobs finished", finished));
    side.finish(&jobs);
    r.jobs += n;
    r.replaced = time_until(finished, PHASE_TIMEOUT, || async {
        side.online_idle().difference(&first).count() >= n
    })
    .await;

    let busy = side.queue("fixed", sizes.down_to);
    time_until(Instant::now(), PHASE_TIMEOUT, || async {
        side.in_progress(&busy)
    })
    .await;
    r.jobs += sizes.down_to;
    let refused_before = side.fake.busy_delete_attempts();
    let (killed, watcher) = watch_for_killed_busy_runners(side);
    let start = Instant::now();
    r.marks.push(("scale-down", start));
    side.apply_fixed("fixed", sizes.down_to as u32).await;
    r.down = time_until(start, GONE_TIMEOUT, || async {
        side.live_pods().await == sizes.down_to
            && side.registrations("fixed").len() == sizes.down_to
    })
    .await;
    r.down_killed = killed.load(Ordering::SeqCst);

    let start = Instant::now();
    r.marks.push(("fixed pool deleted", start));
    side.delete("fixed");
    tokio::time::sleep(JOBS_AFTER_DELETE).await;
    side.finish(&busy);
    r.deleted = time_until(start, GONE_TIMEOUT, || async {
        side.all_pods().await == 0 && side.registrations("fixed").is_empty()
    })
    .await;
    r.delete_killed = killed.load(Ordering::SeqCst) - r.down_killed;
    watcher.abort();
    r.busy_delete_refused = side.fake.busy_delete_attempts() - refused_before;
    r.leftover_registrations += side.registrations("fixed").len();
    r.leftover_pods += side.all_pods().await;

    seen_task.abort();
    r.never_online = seen.never_online(&side.fake);
    let after = side.fake.counters();
    r.calls = after
        .by_endpoint
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v - before.by_endpoint.get(k).copied().unwrap_or(0),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    r
}

fn table(sides: &[(&str, Results)], sizes: &Sizes) {
    let row = |what: &str, f: &dyn Fn(&Results) -> String| {
        let cells: Vec<String> = sides.iter().map(|(_, r)| f(r)).collect();
        println!("| {what} | {} |", cells.join(" | "));
    };
    let sorted = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    println!(
        "\nvs ARC: {} (UTC), load {}, {} cores, our operator: {}, sizes: {} single jobs, burst {}, {} runners, scale-down to {}",
        date(),
        load(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        operator::operator_build(),
        sizes.singles,
        sizes.burst,
        sizes.runners,
        sizes.down_to
    );
    println!(
        "\n| what | {} |",
        sides
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("| --- |{}", " --- |".repeat(sides.len()));
    let latencies = |v: &[Duration], unit: &str| {
        let s = sorted(v);
        format!(
            "{} / {} ({} {unit})",
            ms(percentile(&s, 0.5)),
            ms(percentile(&s, 0.99)),
            s.len()
        )
    };
    row(
        "single jobs from zero: queued → pod created, p50 / p99",
        &|r| latencies(&r.singles, "jobs"),
    );
    row(
        &format!("burst of {}: queued → pod created, p50 / p99", sizes.burst),
        &|r| latencies(&r.burst, "pods"),
    );
    row(
        &format!(
            "burst of {}: all pods created / all jobs running",
            sizes.burst
        ),
        &|r| format!("{} / {}", secs(r.burst_all), secs(r.burst_busy)),
    );
    row(
        "autoscaling pool deleted (idle): pods and registrations gone",
        &|r| secs(r.auto_deleted),
    );
    row(
        &format!("fixed pool 0 → {} runners online", sizes.runners),
        &|r| secs(r.up),
    );
    row(
        &format!("{} finished jobs → replacements online", sizes.runners),
        &|r| secs(r.replaced),
    );
    row(
        &format!(
            "scale-down {} → {} ({} busy): pods and registrations down",
            sizes.runners, sizes.down_to, sizes.down_to
        ),
        &|r| secs(r.down),
    );
    row(
        &format!(
            "deletion with {} busy (jobs end after {} s): all gone",
            sizes.down_to,
            JOBS_AFTER_DELETE.as_secs()
        ),
        &|r| secs(r.deleted),
    );
    row(
        "leftovers after both deletions (registrations + pods)",
        &|r| format!("{} + {}", r.leftover_registrations, r.leftover_pods),
    );
    row("runner pods whose runner never came online", &|r| {
        r.never_online.len().to_string()
    });
    row("busy runners killed: scale-down / deletion", &|r| {
        format!("{} / {}", r.down_killed, r.delete_killed)
    });
    row(
        "removal of a busy runner refused (REST 422, Actions service 400)",
        &|r| r.busy_delete_refused.to_string(),
    );
    row(
        &format!("operator RSS at {} runners", sizes.runners),
        &|r| format!("{:.1} MiB", r.rss_kib as f64 / 1024.0),
    );
    let per_job = |r: &Results, service: bool| {
        let calls: u64 = r
            .calls
            .iter()
            .filter(|(e, _)| actions_service(e) == service)
            .map(|(_, n)| n)
            .sum();
        calls as f64 / r.jobs.max(1) as f64
    };
    row(
        "GitHub calls per job: REST + Actions service (every request the fake answered)",
        &|r| {
            format!(
                "{:.2} + {:.2} ({} jobs)",
                per_job(r, false),
                per_job(r, true),
                r.jobs
            )
        },
    );
    let endpoints: BTreeSet<&String> = sides.iter().flat_map(|(_, r)| r.calls.keys()).collect();
    for e in endpoints {
        row(&format!("… `{e}`"), &|r| {
            format!(
                "{:.3}",
                r.calls.get(e).copied().unwrap_or(0) as f64 / r.jobs.max(1) as f64
            )
        });
    }
    row("runner registration outside the calls counted", &|r| {
        r.registration.to_string()
    });
    println!(
        "\nGitHub calls are the controllers' (ARC's listener included); the runners are \
         simulated, so their own traffic (session, job acquisition, logs) is neither made nor \
         counted, on every side."
    );
    for (name, r) in sides {
        never_online_report(name, r);
    }
}

/// Where the runner pods whose runner never came online were in the run:
/// each with the workload it was first seen in and how long it was seen.
fn never_online_report(side: &str, r: &Results) {
    if r.never_online.is_empty() {
        return;
    }
    let Some(&(_, zero)) = r.marks.first() else {
        return;
    };
    let at = |t: Instant| t.saturating_duration_since(zero).as_secs_f64();
    println!("\n{side}: runner pods whose runner never came online, by workload:");
    let mut by_mark: BTreeMap<usize, Vec<&(String, Instant, Instant)>> = BTreeMap::new();
    for pod in &r.never_online {
        let mark = r.marks.iter().rposition(|(_, t)| *t <= pod.1).unwrap_or(0);
        by_mark.entry(mark).or_default().push(pod);
    }
    for (mark, pods) in by_mark {
        let (what, t) = r.marks[mark];
        println!(
            "- {} first seen after \"{what}\" ({:.1} s):",
            pods.len(),
            at(t)
        );
        for (name, first, last) in pods.iter().take(10) {
            println!(
                "  - {name}: seen from {:.1} s to {:.1} s",
                at(*first),
                at(*last)
            );
        }
    }
}

/// Whether `endpoint` (the fake's name of it) is one of the Actions service's
/// (scale sets, their sessions and message queues, and the registration
/// that yields the service's admin token), not GitHub's REST API.
fn actions_service(endpoint: &str) -> bool {
    endpoint.contains(" /_apis/") || endpoint.ends_with(" /actions/runner-registration")
}

fn date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output();
    out.map_or(String::new(), |o| {
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let sizes = Sizes {
        singles: size("RUNNERPOOL_VS_ARC_SINGLES", 10),
        burst: size("RUNNERPOOL_VS_ARC_BURST", 200),
        runners: size("RUNNERPOOL_VS_ARC_RUNNERS", 200),
        down_to: size("RUNNERPOOL_VS_ARC_DOWN_TO", 20),
    };
    let only = |what: &str| {
        let picked: Vec<&String> = args
            .iter()
            .filter(|a| ["ours", "scale-set", "arc", "arc-scale-set"].contains(&a.as_str()))
            .collect();
        picked.is_empty() || picked.iter().any(|a| *a == what)
    };
    let mut results = vec![];
    if only("ours") {
        let side = Side::ours().await;
        let r = run(&side, &sizes).await;
        results.push((side.name(), r));
        side.shutdown().await;
    }
    if only("scale-set") {
        let side = Side::ours_scale_set().await;
        let r = run(&side, &sizes).await;
        results.push((side.name(), r));
        side.shutdown().await;
    }
    if only("arc") {
        let side = Side::arc().await;
        let r = run(&side, &sizes).await;
        results.push((side.name(), r));
        side.shutdown().await;
    }
    if only("arc-scale-set") {
        let side = Side::arc_scale_set().await;
        let r = run(&side, &sizes).await;
        results.push((side.name(), r));
        side.shutdown().await;
    }
    table(&results, &sizes);
}
