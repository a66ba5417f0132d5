//! The chaos soak: jobs through webhook-driven pools on the local control
//! plane while everything that can go wrong does — GitHub 5xx, answers lost
//! after GitHub applied the request (502 and dropped connections), secondary
//! rate-limit windows, webhooks lost on the way, an operator SIGKILL about
//! every minute, pod evictions and one kube-apiserver restart — then checks
//! the invariants: every job served, no busy runner deleted, no registration,
//! pod or Secret leaked. Used by `benches/soak.rs` (`make soak`, 30 minutes)
//! and `tests/soak.rs` (one minute, in `make test`).
//!
//! The soak runs on a cluster of its own (`target/soak-cluster`): restarting
//! the API server would disturb other tests sharing a cluster. The operator
//! runs with the production sync interval (120 s) and reads the webhook's
//! delivery log (`--webhook-delivery-log`, read every 5 s by default): a job
//! whose webhooks were lost is served by a warm idle runner or found in the
//! log at its next read, so both intervals are part of what is being tested.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant, SystemTime};

use fake_github::{Fault, JobStatus, Scope, SecondaryLimit};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, EvictParams, ListParams};
use rand::Rng;
use runnerpool::runner::RUNNER_ID_LABEL;

use super::cluster;
use super::operator::{Base, Env, autoscaling, pool_yaml, runner_id};

const SECRET: &str = "soak-webhook-secret";
/// The soak's own cluster, under `target/`.
pub const CLUSTER: &str = "soak-cluster";
/// The production default of `--github-sync-interval-seconds`.
const SYNC_INTERVAL: &str = "120";
const POOLS: [(&str, &str); 2] = [("soak-a", "blue"), ("soak-b", "green")];
const MAX_RUNNERS: u32 = 40;
const IDLE_RUNNERS: u32 = 2;
const TICK: Duration = Duration::from_millis(200);
/// Jobs outside the faults that waited longer than this are listed, with
/// what happened during their wait.
const SLOW: Duration = Duration::from_secs(5);

/// What one soak does.
#[derive(Clone, Debug)]
pub struct Soak {
    /// How long jobs are queued and chaos is made.
    pub duration: Duration,
    /// Jobs queued over `duration`, evenly.
    pub jobs: usize,
    /// A job runs this long on its runner, at random.
    pub job_run: (Duration, Duration),
    /// Mean time between operator SIGKILLs (each ±25%).
    pub kill_every: Duration,
    /// Mean time between evictions of a random runner pod.
    pub evict_every: Duration,
    /// Time between secondary rate-limit windows (the first at a quarter of it).
    pub rate_limit_every: Duration,
    pub rate_limit_window: Duration,
    /// Share of GitHub requests answered 500.
    pub error_rate: f64,
    /// Share of applied GitHub requests whose answer is lost (half 502,
    /// half a dropped connection).
    pub lost_answer_rate: f64,
    /// Share of webhook deliveries lost.
    pub webhook_drop_rate: f64,
    /// When kube-apiserver is restarted, once.
    pub apiserver_restart_at: Option<Duration>,
}

impl Soak {
    /// The soak of issue 11 scaled to `minutes`: 2,000 jobs per 30 minutes.
    pub fn for_minutes(minutes: f64) -> Soak {
        let duration = Duration::from_secs_f64(minutes * 60.0);
        Soak {
            duration,
            jobs: ((2000.0 * minutes / 30.0).round() as usize).max(10),
            job_run: (Duration::from_secs(3), Duration::from_secs(20)),
            // A short soak still sees a kill, and not only at its end.
            kill_every: Duration::from_secs(60).min(duration / 2),
            evict_every: Duration::from_secs(20),
            rate_limit_every: Duration::from_secs(240).min(duration),
            rate_limit_window: Duration::from_secs(15),
            error_rate: 0.05,
            lost_answer_rate: 0.02,
            webhook_drop_rate: 0.05,
            apiserver_restart_at: Some(duration.mul_f64(0.45)),
        }
    }
}

/// What a soak measured.
#[derive(Debug, Default)]
pub struct Report {
    pub minutes: f64,
    pub jobs_queued: usize,
    pub jobs_succeeded: usize,
    /// Jobs whose runner pod the soak evicted while they ran: they end as
    /// `failure`, as GitHub ends a job whose runner vanished.
    pub jobs_lost_to_evictions: usize,
    pub jobs_not_served: usize,
    /// DELETEs the operator sent for a runner that GitHub knew busy: GitHub
    /// refuses them (422) and the operator keeps the runner, the designed
    /// guard for a runner that took a job the operator has not heard of yet
    /// (PRODUCT.md, invariant 3). Reported, not a failure: a busy runner
    /// deleted would show as a busy pod removed or a job never finished.
    pub busy_deletes: u64,
    /// Busy runners whose pod went away without the soak evicting it.
    pub busy_pods_removed: Vec<String>,
    /// After convergence: registrations without a pod, pods without a
    /// registration or Secret, Secrets without a pod.
    pub leaked_registrations: usize,
    pub leaked_pods: usize,
    pub leaked_secrets: usize,
    /// After the pools were deleted: whatever was left.
    pub left_after_deletion: (usize, usize, usize),
    pub jit_answered: u64,
    pub jit_requests: u64,
    pub queued_to_started_p50: Duration,
    pub queued_to_started_p99: Duration,
    pub queued_to_started_max: Duration,
    /// The same, for the jobs whose wait did not overlap the API server's
    /// restart (no operator can create a pod while it is down).
    pub outside_outage_p50: Duration,
    pub outside_outage_p99: Duration,
    pub outside_outage_jobs: usize,
    /// The same, for the jobs whose wait overlapped neither the API server's
    /// restart nor a rate-limit window (GitHub refuses every call then: no
    /// runner can be registered): what the operator itself adds.
    pub outside_faults_p50: Duration,
    pub outside_faults_p99: Duration,
    pub outside_faults_jobs: usize,
    /// The jobs of `outside_faults` that waited longer than [`SLOW`],
    /// slowest first.
    pub slow_jobs: Vec<SlowJob>,
    pub apiserver_down: Duration,
    /// From the start of the API server's restart until a pod created after
    /// it ran again: the scheduler's and kwok's watches recover after the
    /// API server answers (its authorizer refuses them for a moment, and
    /// they back off). No operator can start a runner before.
    pub pods_down: Duration,
    pub peak_rss_mib: f64,
    pub kills: usize,
    pub evictions: usize,
    pub apiserver_restarts: usize,
    pub rate_limit_windows: usize,
    pub webhooks_sent: usize,
    pub webhooks_dropped: usize,
    pub faults_injected: u64,
    pub answers_lost: u64,
    pub rate_limited_answers: u64,
    pub github_requests: u64,
    pub converged_after: Option<Duration>,
    /// The restart was due but `cluster.sh restart-apiserver` failed.
    pub apiserver_restart_failed: bool,
    pub log: String,
}

impl Report {
    /// The invariants that broke, in words (empty: all held).
    pub fn failures(&self) -> Vec<String> {
        let mut f = vec![];
        if self.jobs_not_served > 0 {
            f.push(format!("{} jobs were never served", self.jobs_not_served));
        }
        if !self.busy_pods_removed.is_empty() {
            f.push(format!(
                "busy runners' pods removed: {:?}",
                self.busy_pods_removed
            ));
        }
        if self.leaked_registrations + self.leaked_pods + self.leaked_secrets > 0 {
            f.push(format!(
                "no convergence to runners == pods == Secrets: {} registrations, {} pods, {} Secrets too many",
                self.leaked_registrations, self.leaked_pods, self.leaked_secrets
            ));
        }
        if self.apiserver_restart_failed {
            f.push("the API server restart failed (see the soak's stderr)".into());
        }
        let (r, p, s) = self.left_after_deletion;
        if r + p + s > 0 {
            f.push(format!(
                "after the pools were deleted: {r} registrations, {p} pods, {s} Secrets left"
            ));
        }
        f
    }

    pub fn print(&self) {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        println!("\n## Chaos soak: {:.1} minutes\n", self.minutes);
        println!("| what | measured |");
        println!("| --- | --- |");
        let rows: Vec<(&str, String)> = vec![
            (
                "jobs queued / succeeded / ended by an eviction of their pod / never served",
                format!(
                    "{} / {} / {} / {}",
                    self.jobs_queued,
                    self.jobs_succeeded,
                    self.jobs_lost_to_evictions,
                    self.jobs_not_served
                ),
            ),
            (
                "busy runners' pods removed / DELETEs refused by GitHub as busy (422, runner kept)",
                format!("{} / {}", self.busy_pods_removed.len(), self.busy_deletes),
            ),
            (
                "leaked after convergence: registrations / pods / Secrets",
                format!(
                    "{} / {} / {}",
                    self.leaked_registrations, self.leaked_pods, self.leaked_secrets
                ),
            ),
            (
                "left after deleting the pools: registrations / pods / Secrets",
                format!(
                    "{} / {} / {}",
                    self.left_after_deletion.0,
                    self.left_after_deletion.1,
                    self.left_after_deletion.2
                ),
            ),
            (
                "converged (runners == pods == Secrets) after the chaos stopped",
                self.converged_after
                    .map(|d| format!("{:.1} s", d.as_secs_f64()))
                    .unwrap_or_else(|| "no".into()),
            ),
            (
                "JIT configs minted per job (201 answers, plus answers lost after apply / jobs)",
                format!(
                    "{:.3} ({} answered of {} requests)",
                    self.jit_answered as f64 / self.jobs_queued.max(1) as f64,
                    self.jit_answered,
                    self.jit_requests
                ),
            ),
            (
                "queued → job running on a runner: p50 / p99 / worst",
                format!(
                    "{} / {} / {}",
                    ms(self.queued_to_started_p50),
                    ms(self.queued_to_started_p99),
                    ms(self.queued_to_started_max)
                ),
            ),
            (
                "the same, for jobs whose wait did not overlap the API server restart or the cluster's recovery from it: jobs / p50 / p99 (the API server was down / no pod ran)",
                format!(
                    "{} / {} / {} ({} / {})",
                    self.outside_outage_jobs,
                    ms(self.outside_outage_p50),
                    ms(self.outside_outage_p99),
                    ms(self.apiserver_down),
                    ms(self.pods_down)
                ),
            ),
            (
                "the same, for jobs whose wait overlapped neither the API server restart nor a rate-limit window: jobs / p50 / p99",
                format!(
                    "{} / {} / {}",
                    self.outside_faults_jobs,
                    ms(self.outside_faults_p50),
                    ms(self.outside_faults_p99)
                ),
            ),
            ("operator peak RSS", format!("{:.1} MiB", self.peak_rss_mib)),
            (
                "chaos: operator SIGKILLs / pod evictions / API server restarts / rate-limit windows",
                format!(
                    "{} / {} / {} / {}",
                    self.kills, self.evictions, self.apiserver_restarts, self.rate_limit_windows
                ),
            ),
            (
                "chaos: webhooks dropped of sent / GitHub faults injected / answers lost after apply / rate-limited answers / GitHub requests",
                format!(
                    "{} of {} / {} / {} / {} / {}",
                    self.webhooks_dropped,
                    self.webhooks_sent,
                    self.faults_injected,
                    self.answers_lost,
                    self.rate_limited_answers,
                    self.github_requests
                ),
            ),
        ];
        for (what, value) in rows {
            println!("| {what} | {value} |");
        }
        if !self.slow_jobs.is_empty() {
            let n = self.slow_jobs.len();
            let count =
                |f: &dyn Fn(&SlowJob) -> bool| self.slow_jobs.iter().filter(|j| f(j)).count();
            println!(
                "\nJobs outside the faults that waited over {} s: {n}; with their queued webhook lost: {}; \
                 with a SIGKILL restart in their wait: {}; with a failed generate-jitconfig in their wait: {}; \
                 with an eviction in their wait: {}; with none of these: {}\n",
                SLOW.as_secs(),
                count(&|j| j.queued_webhook_lost),
                count(&|j| j.kills > 0),
                count(&|j| j.jit_failures > 0),
                count(&|j| j.evictions > 0),
                count(&|j| !j.queued_webhook_lost
                    && j.kills == 0
                    && j.jit_failures == 0
                    && j.evictions == 0),
            );
            println!("| job | queued at | waited | during its wait |");
            println!("| --- | --- | --- | --- |");
            for j in self.slow_jobs.iter().take(20) {
                println!(
                    "| {} | {:.1} s | {} | {} |",
                    j.id,
                    j.queued_at.as_secs_f64(),
                    ms(j.waited),
                    j.causes()
                );
            }
        }
        println!("\noperator log: {}", self.log);
        for failure in self.failures() {
            println!("INVARIANT BROKEN: {failure}");
        }
    }
}

/// A job outside the faults that waited longer than [`SLOW`], and what
/// happened while it waited.
#[derive(Debug)]
pub struct SlowJob {
    pub id: u64,
    /// Since the soak began.
    pub queued_at: Duration,
    pub waited: Duration,
    /// Its `queued` webhook did not reach the operator (dropped, or sent
    /// while no process listened): only the delivery log tells of it.
    pub queued_webhook_lost: bool,
    /// Operator SIGKILLs from a second before it was queued to its start.
    pub kills: usize,
    /// `generate-jitconfig` requests answered 5xx or cut, in its wait.
    pub jit_failures: usize,
    /// Runner pods evicted in its wait.
    pub evictions: usize,
}

impl SlowJob {
    fn causes(&self) -> String {
        let mut c = vec![];
        if self.queued_webhook_lost {
            c.push("queued webhook lost".to_string());
        }
        if self.kills > 0 {
            c.push(format!("{} SIGKILL restart(s)", self.kills));
        }
        if self.jit_failures > 0 {
            c.push(format!("{} failed generate-jitconfig", self.jit_failures));
        }
        if self.evictions > 0 {
            c.push(format!("{} eviction(s)", self.evictions));
        }
        if c.is_empty() {
            "none of these".into()
        } else {
            c.join(", ")
        }
    }
}

/// One job the soak queued.
struct SoakJob {
    queued: Instant,
    started: Option<Instant>,
    runner: Option<u64>,
    run_for: Duration,
    done: bool,
}

/// Runs the soak on its own cluster ([`CLUSTER`], started if needed; stop it
/// with [`cluster::stop_own_cluster`]).
pub async fn run(soak: &Soak) -> Report {
    cluster::use_own_cluster(CLUSTER);
    let (mut env, _) = Env::start_with_webhooks(
        "soak",
        SECRET,
        SYNC_INTERVAL,
        &["--cleanup-timeout-seconds", "300"],
    )
    .await;
    // A GitHub App installation's budget (15,000 an hour): 2,000 jobs in
    // half an hour with retries would use up a personal token's 5,000.
    env.fake.set_rate_limit(15_000);
    // As the README advises for production: deliveries that never reached
    // the operator (dropped, or sent while it restarted) are read back from
    // the webhook's delivery log.
    let mut chaos = Chaos::new(soak);
    chaos.listener_from = Some(
        std::fs::metadata(&env.operator.log)
            .map(|m| m.len())
            .unwrap_or(0),
    );
    let flags = env.delivery_log_flags("soak");
    env.operator
        .restart_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    env.fake
        .reset_rate_limit(&env.fake.token_key(super::operator::TOKEN));
    for (name, label) in POOLS {
        let yaml = pool_yaml(
            name,
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &["linux", label],
            "",
        );
        env.apply_pool(&autoscaling(&yaml, 0, MAX_RUNNERS, IDLE_RUNNERS))
            .await;
    }
    for (name, _) in POOLS {
        env.wait_for_online_runners(name, IDLE_RUNNERS as usize, Duration::from_secs(120))
            .await;
    }

    let mut report = Report {
        minutes: soak.duration.as_secs_f64() / 60.0,
        log: env.operator.log.display().to_string(),
        ..Default::default()
    };
    env.fake.set_error_rate(soak.error_rate, 500);
    for status in [502, fake_github::DROP_CONNECTION] {
        env.fake.inject_fault(Fault {
            probability: soak.lost_answer_rate / 2.0,
            count: None,
            after_apply: true,
            ..Fault::always(None, status)
        });
    }
    env.fake.set_webhook_drop_rate(soak.webhook_drop_rate);

    let mut jobs: BTreeMap<u64, SoakJob> = BTreeMap::new();
    let mut evicted: BTreeSet<u64> = BTreeSet::new();
    let mut rng = rand::rng();
    let start = Instant::now();
    let start_wall = SystemTime::now();
    let drain_limit = Duration::from_secs(600);
    let mut last_rss = Instant::now();
    loop {
        let now = Instant::now();
        let elapsed = now - start;
        let chaos_on = elapsed < soak.duration;
        // Queue what is due.
        let due = if chaos_on {
            (soak.jobs as f64 * elapsed.as_secs_f64() / soak.duration.as_secs_f64()) as usize + 1
        } else {
            soak.jobs
        };
        while jobs.len() < due.min(soak.jobs) {
            let label = POOLS[rng.random_range(0..POOLS.len())].1;
            let id = env
                .fake
                .queue_job("acme/app", &["linux", label])
                .expect("queueing a job");
            let secs = rng.random_range(soak.job_run.0.as_secs_f64()..soak.job_run.1.as_secs_f64());
            jobs.insert(
                id,
                SoakJob {
                    queued: Instant::now(),
                    started: None,
                    runner: None,
                    run_for: Duration::from_secs_f64(secs),
                    done: false,
                },
            );
        }
        if chaos_on {
            chaos.step(&mut env, elapsed, &mut evicted).await;
        } else {
            chaos.stop(&env);
        }
        if last_rss.elapsed() >= Duration::from_secs(1) {
            last_rss = Instant::now();
            if let Some(kib) = env.operator.rss_kib() {
                report.peak_rss_mib = report.peak_rss_mib.max(kib as f64 / 1024.0);
            }
        }
        follow_jobs(&env, &mut jobs, &evicted, &mut report).await;
        let all_done = jobs.len() == soak.jobs && jobs.values().all(|j| j.done);
        if all_done || elapsed > soak.duration + drain_limit {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    chaos.stop(&env);
    chaos.finish(&mut report).await;

    // Outcomes of the jobs.
    let fake_jobs: BTreeMap<u64, fake_github::Job> =
        env.fake.jobs().into_iter().map(|j| (j.id, j)).collect();
    // GitHub's own times of queueing and start, as instants of this clock:
    // the soak's loop notices a start a tick late, or later while the API
    // server it also lists pods from is slow.
    let instant = |t: SystemTime| start + t.duration_since(start_wall).unwrap_or_default();
    for (id, job) in jobs.iter_mut() {
        let fake = fake_jobs.get(id);
        if let Some(q) = fake.and_then(|j| j.queued_at()) {
            job.queued = instant(q);
        }
        if let (Some(_), Some(s)) = (job.started, fake.and_then(|j| j.started_at())) {
            job.started = Some(instant(s));
        }
    }
    let deliveries = env.fake.webhook_deliveries();
    let jit_failed: Vec<Instant> = env
        .fake
        .request_log()
        .into_iter()
        .filter(|r| {
            r.endpoint.ends_with("/generate-jitconfig") && (r.status >= 500 || r.status == 0)
        })
        .map(|r| instant(SystemTime::UNIX_EPOCH + Duration::from_millis(r.at_ms)))
        .collect();
    let mut latencies = vec![];
    let mut outside_outage = vec![];
    let mut outside_faults = vec![];
    let outage = chaos.apiserver_outage();
    report.apiserver_down = chaos
        .apiserver_answering()
        .map(|(from, to)| to - from)
        .unwrap_or_default();
    report.pods_down = outage.map(|(from, to)| to - from).unwrap_or_default();
    for (id, job) in &jobs {
        let conclusion = fake_jobs.get(id).and_then(|j| j.conclusion.clone());
        match (job.started, conclusion.as_deref()) {
            (Some(_), Some("success")) => report.jobs_succeeded += 1,
            (Some(_), Some("failure")) => report.jobs_lost_to_evictions += 1,
            _ => report.jobs_not_served += 1,
        }
        if let Some(s) = job.started {
            latencies.push(s - job.queued);
            let overlaps = |(from, to): (Instant, Instant)| s >= from && job.queued <= to;
            if !outage.is_some_and(overlaps) {
                outside_outage.push(s - job.queued);
                if !chaos.rate_limited.iter().copied().any(overlaps) {
                    outside_faults.push(s - job.queued);
                    if s - job.queued > SLOW {
                        let within =
                            |t: &&Instant| **t + Duration::from_secs(1) >= job.queued && **t <= s;
                        report.slow_jobs.push(SlowJob {
                            id: *id,
                            queued_at: job.queued - start,
                            waited: s - job.queued,
                            queued_webhook_lost: deliveries
                                .iter()
                                .find(|d| d.job_id == *id && d.action == "queued")
                                .is_none_or(|d| !d.status.is_some_and(|c| (200..300).contains(&c))),
                            kills: chaos.killed_at.iter().filter(within).count(),
                            jit_failures: jit_failed.iter().filter(within).count(),
                            evictions: chaos.evicted_at.iter().filter(within).count(),
                        });
                    }
                }
            }
        }
    }
    report.jobs_queued = jobs.len();
    latencies.sort();
    outside_outage.sort();
    outside_faults.sort();
    report
        .slow_jobs
        .sort_by_key(|j| std::cmp::Reverse(j.waited));
    if let Some(&worst) = latencies.last() {
        report.queued_to_started_p50 = percentile(&latencies, 0.5);
        report.queued_to_started_p99 = percentile(&latencies, 0.99);
        report.queued_to_started_max = worst;
    }
    if !outside_outage.is_empty() {
        report.outside_outage_jobs = outside_outage.len();
        report.outside_outage_p50 = percentile(&outside_outage, 0.5);
        report.outside_outage_p99 = percentile(&outside_outage, 0.99);
    }
    if !outside_faults.is_empty() {
        report.outside_faults_jobs = outside_faults.len();
        report.outside_faults_p50 = percentile(&outside_faults, 0.5);
        report.outside_faults_p99 = percentile(&outside_faults, 0.99);
    }

    // Convergence: runners == pods == Secrets, with the chaos over.
    let settle = Instant::now();
    let settle_limit = Duration::from_secs(2 * 120 + 60);
    loop {
        let (r, p, s) = surplus(&env).await;
        (
            report.leaked_registrations,
            report.leaked_pods,
            report.leaked_secrets,
        ) = (r, p, s);
        if r + p + s == 0 {
            report.converged_after = Some(settle.elapsed());
            break;
        }
        if settle.elapsed() > settle_limit {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let counters = env.fake.counters();
    report.busy_deletes = counters.busy_delete_attempts;
    report.faults_injected = counters.faults_injected;
    report.answers_lost = counters.answers_lost;
    report.rate_limited_answers = counters.primary_rate_limited + counters.secondary_rate_limited;
    report.github_requests = counters.total;
    let jit: Vec<_> = env
        .fake
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint.ends_with("/generate-jitconfig"))
        .collect();
    report.jit_requests = jit.len() as u64;
    report.jit_answered = jit.iter().filter(|r| r.status == 201).count() as u64;
    let deliveries = env.fake.webhook_deliveries();
    report.webhooks_sent = deliveries.len();
    report.webhooks_dropped = deliveries
        .iter()
        .filter(|d| d.error.as_deref() == Some(fake_github::DROPPED))
        .count();

    // Finally the pools go: nothing may be left.
    for (name, _) in POOLS {
        let _ = env.pools().delete(name, &DeleteParams::default()).await;
    }
    let gone = Instant::now();
    loop {
        let left = remaining(&env).await;
        report.left_after_deletion = left;
        if left == (0, 0, 0) || gone.elapsed() > Duration::from_secs(180) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    report
}

/// Follows the jobs on the fake: notes when each starts, finishes those
/// that ran their time, ends as `failure` those whose runner pod the soak
/// evicted, and records busy runners whose pod went away otherwise.
async fn follow_jobs(
    env: &Env,
    jobs: &mut BTreeMap<u64, SoakJob>,
    evicted: &BTreeSet<u64>,
    report: &mut Report,
) {
    let snapshot = env.fake.jobs();
    // Listed after the job snapshot: a runner busy in the snapshot had its
    // pod when it came online, so a pod missing now went away while busy.
    let pods = env
        .pods()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
        .ok()
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(runner_id)
                .collect::<BTreeSet<u64>>()
        });
    for fj in snapshot {
        let Some(job) = jobs.get_mut(&fj.id) else {
            continue;
        };
        if job.done {
            continue;
        }
        match fj.status {
            JobStatus::Completed => job.done = true,
            JobStatus::Queued => {}
            JobStatus::InProgress => {
                let started = *job.started.get_or_insert_with(Instant::now);
                job.runner = fj.runner_id;
                let rid = fj.runner_id.unwrap_or_default();
                let pod_gone = pods.as_ref().is_some_and(|p| !p.contains(&rid));
                if pod_gone {
                    if !evicted.contains(&rid) {
                        report
                            .busy_pods_removed
                            .push(format!("runner {rid} (job {})", fj.id));
                    }
                    // GitHub fails a job whose runner vanished.
                    if env.fake.finish_job_with(fj.id, "failure").is_ok() {
                        job.done = true;
                    }
                } else if started.elapsed() >= job.run_for && env.fake.finish_job(fj.id).is_ok() {
                    job.done = true;
                }
            }
        }
    }
}

/// Registrations without a live pod, live pods without a registration or
/// Secret, and runner Secrets without a pod.
async fn surplus(env: &Env) -> (usize, usize, usize) {
    let Ok(pods) = env
        .pods()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
    else {
        return (usize::MAX / 4, 0, 0);
    };
    let Ok(secrets) = env
        .secrets()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
    else {
        return (usize::MAX / 4, 0, 0);
    };
    let registered: BTreeSet<u64> = env
        .fake
        .runners(&Scope::org("acme"))
        .iter()
        .map(|r| r.id)
        .collect();
    let pod_ids: BTreeSet<u64> = pods.items.iter().filter_map(runner_id).collect();
    let pod_names: BTreeSet<String> = pods.items.iter().map(|p| p.name_any()).collect();
    let secret_names: BTreeSet<String> = secrets
        .items
        .iter()
        .map(|s: &Secret| s.name_any())
        .collect();
    let registrations = registered.difference(&pod_ids).count();
    let pods =
        pod_ids.difference(&registered).count() + pod_names.difference(&secret_names).count();
    let secrets = secret_names.difference(&pod_names).count();
    (registrations, pods, secrets)
}

/// Registrations, pods and runner Secrets left.
async fn remaining(env: &Env) -> (usize, usize, usize) {
    let pods = env
        .pods()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX / 4);
    let secrets = env
        .secrets()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX / 4);
    (env.fake.runners(&Scope::org("acme")).len(), pods, secrets)
}

/// The chaos schedule and its counters.
struct Chaos {
    soak: Soak,
    next_kill: Duration,
    next_evict: Duration,
    next_rate_limit: Duration,
    apiserver: Option<tokio::task::JoinHandle<()>>,
    apiserver_done: bool,
    /// When the API server restart began, and when it answered again.
    apiserver_down_from: Option<Instant>,
    apiserver_down_to: Option<Instant>,
    /// Creates a pod once the API server answers, and returns when it runs.
    canary: Option<tokio::task::JoinHandle<Instant>>,
    pods_back: Option<Instant>,
    /// Where in the operator's log to look for the webhook listener of the
    /// process started last, while it is not known yet.
    listener_from: Option<u64>,
    kills: usize,
    evictions: usize,
    killed_at: Vec<Instant>,
    evicted_at: Vec<Instant>,
    /// When each rate-limit window began and ended.
    rate_limited: Vec<(Instant, Instant)>,
    stopped: bool,
}

impl Chaos {
    fn new(soak: &Soak) -> Chaos {
        Chaos {
            soak: soak.clone(),
            next_kill: jitter(soak.kill_every),
            next_evict: jitter(soak.evict_every),
            next_rate_limit: soak.rate_limit_every / 4,
            apiserver: None,
            apiserver_done: false,
            apiserver_down_from: None,
            apiserver_down_to: None,
            canary: None,
            pods_back: None,
            listener_from: None,
            kills: 0,
            evictions: 0,
            killed_at: Vec::new(),
            evicted_at: Vec::new(),
            rate_limited: Vec::new(),
            stopped: false,
        }
    }

    async fn step(&mut self, env: &mut Env, elapsed: Duration, evicted: &mut BTreeSet<u64>) {
        if elapsed >= self.next_kill {
            let offset = std::fs::metadata(&env.operator.log)
                .map(|m| m.len())
                .unwrap_or(0);
            // SIGKILL, then a new process (as a Deployment would restart it).
            self.killed_at.push(Instant::now());
            env.operator.restart();
            self.kills += 1;
            self.listener_from = Some(offset);
            self.next_kill = elapsed + jitter(self.soak.kill_every);
        }
        self.repoint_webhook(env);
        if self.apiserver.as_ref().is_some_and(|h| h.is_finished())
            && self.apiserver_down_to.is_none()
        {
            self.apiserver_down_to = Some(Instant::now());
            self.canary = Some(tokio::spawn(pod_runs(env.pods())));
        }
        if self.canary.as_ref().is_some_and(|h| h.is_finished())
            && let Some(handle) = self.canary.take()
        {
            self.pods_back = handle.await.ok();
        }
        if elapsed >= self.next_evict {
            self.next_evict = elapsed + jitter(self.soak.evict_every);
            if let Some(id) = self.evict_one(env).await {
                evicted.insert(id);
                self.evictions += 1;
                self.evicted_at.push(Instant::now());
            }
        }
        if elapsed >= self.next_rate_limit {
            self.next_rate_limit = elapsed + self.soak.rate_limit_every;
            let secs = self.soak.rate_limit_window.as_secs();
            env.fake.secondary_limit(SecondaryLimit {
                requests: None,
                duration_secs: Some(secs as f64),
                retry_after_secs: secs,
                // 403 and 429 in turn: GitHub answers both.
                status: if self.rate_limited.len().is_multiple_of(2) {
                    403
                } else {
                    429
                },
                ..SecondaryLimit::next_requests(0, secs)
            });
            let now = Instant::now();
            self.rate_limited
                .push((now, now + self.soak.rate_limit_window));
        }
        if let Some(at) = self.soak.apiserver_restart_at
            && elapsed >= at
            && self.apiserver.is_none()
        {
            let dir = cluster::use_own_cluster(CLUSTER);
            self.apiserver_down_from = Some(Instant::now());
            self.apiserver = Some(tokio::task::spawn_blocking(move || {
                let dir = dir.display().to_string();
                cluster::run_cluster_sh(&["restart-apiserver", &dir]);
            }));
        }
    }

    /// After a restart, points the fake's webhooks at the new process's
    /// listener (it binds a new port) once its log names it.
    fn repoint_webhook(&mut self, env: &Env) {
        let Some(offset) = self.listener_from else {
            return;
        };
        let Some(port) = listener_port_after(&env.operator.log, offset) else {
            return;
        };
        env.fake.set_webhook(Some(fake_github::WebhookConfig {
            url: format!("http://127.0.0.1:{port}/webhook"),
            secret: Some(SECRET.into()),
        }));
        self.listener_from = None;
    }

    /// Evicts one random runner pod through the Eviction API; its runner id.
    async fn evict_one(&self, env: &Env) -> Option<u64> {
        let pods = env
            .pods()
            .list(&ListParams::default().labels(RUNNER_ID_LABEL))
            .await
            .ok()?;
        let live: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if live.is_empty() {
            return None;
        }
        let pod = live[rand::rng().random_range(0..live.len())];
        let api: Api<Pod> = env.pods();
        api.evict(&pod.name_any(), &EvictParams::default())
            .await
            .ok()?;
        runner_id(pod)
    }

    /// Ends the chaos: GitHub well again, webhooks delivered, the
    /// operator's listener known.
    fn stop(&mut self, env: &Env) {
        if !self.stopped {
            self.stopped = true;
            env.fake.clear_faults();
            env.fake.clear_secondary_limits();
            env.fake.set_webhook_drop_rate(0.0);
        }
        // A process started just before the end still needs its webhooks.
        self.repoint_webhook(env);
    }

    /// From the start of the API server's restart to the moment it answered
    /// again (the restart script waits for that).
    fn apiserver_answering(&self) -> Option<(Instant, Instant)> {
        Some((self.apiserver_down_from?, self.apiserver_down_to?))
    }

    /// From the start of the API server's restart until a pod ran again.
    fn apiserver_outage(&self) -> Option<(Instant, Instant)> {
        let (from, answering) = self.apiserver_answering()?;
        Some((from, self.pods_back.unwrap_or(answering).max(answering)))
    }

    async fn finish(&mut self, report: &mut Report) {
        if let Some(handle) = self.apiserver.take() {
            self.apiserver_done = handle.await.is_ok();
            self.apiserver_down_to.get_or_insert_with(Instant::now);
        }
        if let Some(handle) = self.canary.take() {
            self.pods_back = handle.await.ok();
        }
        report.kills = self.kills;
        report.evictions = self.evictions;
        report.rate_limit_windows = self.rate_limited.len();
        report.apiserver_restarts = usize::from(self.apiserver_done);
        report.apiserver_restart_failed =
            self.soak.apiserver_restart_at.is_some() && !self.apiserver_done;
    }
}

/// Creates a pod (not a runner's) and waits until it runs: the moment the
/// cluster schedules and starts pods again. Deletes it after.
async fn pod_runs(pods: Api<Pod>) -> Instant {
    let name = format!("soak-canary-{}", rand::rng().random_range(0..1_000_000));
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "canary", "image": "canary"}]}
    }))
    .expect("a pod");
    let mut created = false;
    let ran = loop {
        // Tried again while the API server refuses.
        if !created {
            created = match pods.create(&Default::default(), &pod).await {
                Ok(_) => true,
                Err(kube::Error::Api(e)) => e.code == 409,
                Err(_) => false,
            };
        }
        if created
            && let Ok(p) = pods.get(&name).await
            && p.status.and_then(|s| s.phase).as_deref() == Some("Running")
        {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = pods.delete(&name, &DeleteParams::default()).await;
    ran
}

/// The `p` quantile of `sorted` (not empty), nearest rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `mean` ±25%, at random.
fn jitter(mean: Duration) -> Duration {
    mean.mul_f64(rand::rng().random_range(0.75..1.25))
}

/// The port of the first webhook listener the log names after `offset`.
fn listener_port_after(log: &std::path::Path, offset: u64) -> Option<u16> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("webhook listener serving"))?;
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}
