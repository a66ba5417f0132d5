//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Label values are bounded: error categories and removal reasons are fixed
//! sets, endpoints are route templates, pools are the pools that exist.
//! A pool's gauges are set from the status it shows, when that status is
//! written, so they agree with `kubectl get rp`; its job metrics are in
//! [`jobs`].

pub mod jobs;
pub mod registrar;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use self::jobs::{JobMetrics, JobMetricsOptions};
use self::registrar::Registrar;
use crate::crd::RunnerPoolStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolStateLabels {
    pub namespace: String,
    pub pool: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub namespace: String,
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolConditionLabels {
    pub namespace: String,
    pub pool: String,
    pub condition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitHubRequestLabels {
    pub endpoint: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// A short hash of the credential, never the credential.
    pub credential: String,
}

pub struct Metrics {
    pub registry: Registrar,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<CategoryLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub runners: Family<PoolStateLabels, Gauge>,
    pub runners_created: Counter,
    pub runners_removed: Family<ReasonLabels, Counter>,
    pub busy_runners_kept: Counter,
    pub jit_mint_duration: Histogram,
    pub runner_start_duration: Histogram,
    pub github_requests: Family<GitHubRequestLabels, Counter>,
    pub rate_limit_remaining: Family<CredentialLabels, Gauge>,
    pub rate_limit_limit: Family<CredentialLabels, Gauge>,
    pub rate_limit_reset: Family<CredentialLabels, Gauge>,
    pub webhook_deliveries: Family<ResultLabels, Counter>,
    pub webhook_unmatched_jobs: Counter,
    pub queued_jobs: Family<PoolLabels, Gauge>,
    pub queued_to_pod_duration: Histogram,
    pub runner_version_outdated: Family<PoolLabels, Gauge>,
    pub scale_set_jobs: Family<PoolStateLabels, Gauge>,
    pub scale_set_session_up: Family<PoolLabels, Gauge>,
    pub desired_runners: Family<PoolLabels, Gauge>,
    pub pool_condition: Family<PoolConditionLabels, Gauge>,
    pub oldest_queued_job: Family<PoolLabels, Gauge>,
    pub jobs: JobMetrics,
}

/// The pool conditions exported as `runnerpool_pool_condition`.
pub const POOL_CONDITIONS: [&str; 4] = ["Ready", "Degraded", "Stalled", "Reconciling"];

/// The runner states of `runnerpool_runners`, as the pool's status counts them.
const RUNNER_STATES: [&str; 4] = ["pending", "idle", "busy", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(JobMetricsOptions::default())
    }
}

impl Metrics {
    pub fn new(job_options: JobMetricsOptions) -> Self {
        let mut registry = Registrar::new();
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of RunnerPools by result",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile of a RunnerPool takes",
            reconcile_duration.clone(),
        );
        let runners = Family::<PoolStateLabels, Gauge>::default();
        registry.register(
            "runners",
            "Runners by pool and state (pending, idle, busy, failed)",
            runners.clone(),
        );
        let runners_created = Counter::default();
        registry.register(
            "runners_created",
            "Runners registered with a new JIT config",
            runners_created.clone(),
        );
        let runners_removed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "runners_removed",
            "Runners removed, by reason",
            runners_removed.clone(),
        );
        let busy_runners_kept = Counter::default();
        registry.register(
            "busy_runners_kept",
            "Removals GitHub refused because the runner was running a job",
            busy_runners_kept.clone(),
        );
        let jit_mint_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "jit_mint_duration_seconds",
            "Latency of generate-jitconfig calls",
            jit_mint_duration.clone(),
        );
        let runner_start_duration = Histogram::new(exponential_buckets(0.25, 2.0, 12));
        registry.register(
            "runner_start_duration_seconds",
            "Time from a runner's creation to its pod running",
            runner_start_duration.clone(),
        );
        let github_requests = Family::<GitHubRequestLabels, Counter>::default();
        registry.register(
            "github_requests",
            "GitHub API requests by endpoint and status code (304s included)",
            github_requests.clone(),
        );
        let rate_limit_remaining = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "github_rate_limit_remaining",
            "GitHub rate-limit budget left, per credential",
            rate_limit_remaining.clone(),
        );
        let rate_limit_limit = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "github_rate_limit_limit",
            "GitHub rate-limit budget per hour, per credential",
            rate_limit_limit.clone(),
        );
        let rate_limit_reset = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "github_rate_limit_reset_timestamp_seconds",
            "When GitHub resets the rate-limit budget, per credential (Unix time)",
            rate_limit_reset.clone(),
        );
        let webhook_deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by result (accepted, duplicate, ping, ignored, unauthorized, too_large, malformed, unavailable)",
            webhook_deliveries.clone(),
        );
        let webhook_unmatched_jobs = Counter::default();
        registry.register(
            "webhook_unmatched_jobs",
            "Queued workflow jobs that no RunnerPool matches",
            webhook_unmatched_jobs.clone(),
        );
        let queued_jobs = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "queued_jobs",
            "Jobs queued for a pool (from workflow_job webhooks) and not yet started",
            queued_jobs.clone(),
        );
        let queued_to_pod_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "queued_to_pod_seconds",
            "Time from a queued workflow_job webhook to the runner pod created for it",
            queued_to_pod_duration.clone(),
        );
        let runner_version_outdated = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "runner_version_outdated",
            "1 when a pool's runner version is older than the newest release GitHub serves to its scope, else 0 (absent while either version is unknown)",
            runner_version_outdated.clone(),
        );
        let scale_set_jobs = Family::<PoolStateLabels, Gauge>::default();
        registry.register(
            "scale_set_jobs",
            "Jobs of a scale-set pool as GitHub's Actions service counts them (state: available, acquired, assigned, running)",
            scale_set_jobs.clone(),
        );
        let scale_set_session_up = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "scale_set_session_up",
            "1 while a scale-set pool's message session is open and polled, else 0",
            scale_set_session_up.clone(),
        );
        let desired_runners = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "desired_runners",
            "Runners a pool wants (status.desiredRunners, the Desired column of kubectl get rp)",
            desired_runners.clone(),
        );
        let pool_condition = Family::<PoolConditionLabels, Gauge>::default();
        registry.register(
            "pool_condition",
            "1 when a pool's condition (Ready, Degraded, Stalled, Reconciling) is True, 0 when False; absent while Unknown",
            pool_condition.clone(),
        );
        let oldest_queued_job = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "oldest_queued_job_timestamp_seconds",
            "When the longest-waiting job a webhook pool holds as demand was queued (Unix time); absent when none waits",
            oldest_queued_job.clone(),
        );
        let jobs = JobMetrics::register(&mut registry, job_options);
        Metrics {
            registry,
            desired_runners,
            pool_condition,
            oldest_queued_job,
            jobs,
            scale_set_jobs,
            scale_set_session_up,
            runner_version_outdated,
            webhook_deliveries,
            webhook_unmatched_jobs,
            queued_jobs,
            queued_to_pod_duration,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            runners,
            runners_created,
            runners_removed,
            busy_runners_kept,
            jit_mint_duration,
            runner_start_duration,
            github_requests,
            rate_limit_remaining,
            rate_limit_limit,
            rate_limit_reset,
        }
    }

    /// Every series name the `/metrics` page can hold.
    pub fn series_names(&self) -> std::collections::BTreeSet<String> {
        self.registry.series_names()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.registry);
        out
    }

    pub fn observe_reconcile(&self, took: Duration, error_category: Option<&'static str>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        let result = if error_category.is_some() {
            "error"
        } else {
            "ok"
        };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(category) = error_category {
            self.reconcile_errors
                .get_or_create(&CategoryLabels { category })
                .inc();
        }
    }

    /// A pool's gauges from the status it shows: its runners by state,
    /// desired runners, queued jobs, conditions and oldest queued job.
    pub fn set_pool_status(&self, namespace: &str, pool: &str, status: &RunnerPoolStatus) {
        let labels = pool_labels(namespace, pool);
        for (state, value) in RUNNER_STATES.into_iter().zip([
            status.pending_runners,
            status.idle_runners,
            status.busy_runners,
            status.failed_runners,
        ]) {
            self.runners
                .get_or_create(&PoolStateLabels {
                    namespace: namespace.to_string(),
                    pool: pool.to_string(),
                    state,
                })
                .set(value.into());
        }
        self.desired_runners
            .get_or_create(&labels)
            .set(status.desired_runners.into());
        self.queued_jobs
            .get_or_create(&labels)
            .set(status.queued_jobs.into());
        for condition in POOL_CONDITIONS {
            let series = PoolConditionLabels {
                namespace: namespace.to_string(),
                pool: pool.to_string(),
                condition,
            };
            let value = status
                .conditions
                .iter()
                .find(|c| c.type_ == condition)
                .and_then(|c| match c.status.as_str() {
                    "True" => Some(1),
                    "False" => Some(0),
                    _ => None,
                });
            match value {
                Some(value) => {
                    self.pool_condition.get_or_create(&series).set(value);
                }
                None => {
                    self.pool_condition.remove(&series);
                }
            }
        }
        let oldest = status
            .waiting_jobs
            .iter()
            .filter_map(|j| j.queued_at.parse::<jiff::Timestamp>().ok())
            .min();
        match oldest {
            Some(at) => {
                self.oldest_queued_job
                    .get_or_create(&labels)
                    .set(at.as_second());
            }
            None => {
                self.oldest_queued_job.remove(&labels);
            }
        }
    }

    pub fn observe_webhook_delivery(&self, result: &'static str) {
        self.webhook_deliveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// 1 or 0 for an outdated or current pool; no series while unknown.
    pub fn set_runner_version_outdated(&self, namespace: &str, pool: &str, outdated: Option<bool>) {
        let labels = pool_labels(namespace, pool);
        match outdated {
            Some(outdated) => {
                self.runner_version_outdated
                    .get_or_create(&labels)
                    .set(i64::from(outdated));
            }
            None => {
                self.runner_version_outdated.remove(&labels);
            }
        }
    }

    /// A scale-set pool's job figures (when known) and session health.
    pub fn set_scale_set(
        &self,
        namespace: &str,
        pool: &str,
        statistics: Option<&crate::scaleset::Statistics>,
        session_up: bool,
    ) {
        let labels = pool_labels(namespace, pool);
        self.scale_set_session_up
            .get_or_create(&labels)
            .set(session_up as i64);
        let Some(s) = statistics else { return };
        for (state, value) in [
            ("available", s.total_available_jobs),
            ("acquired", s.total_acquired_jobs),
            ("assigned", s.total_assigned_jobs),
            ("running", s.total_running_jobs),
        ] {
            self.scale_set_jobs
                .get_or_create(&PoolStateLabels {
                    namespace: namespace.to_string(),
                    pool: pool.to_string(),
                    state,
                })
                .set(value as i64);
        }
    }

    pub fn forget_pool(&self, namespace: &str, pool: &str) {
        let labels = pool_labels(namespace, pool);
        self.scale_set_session_up.remove(&labels);
        for state in ["available", "acquired", "assigned", "running"] {
            self.scale_set_jobs.remove(&PoolStateLabels {
                namespace: namespace.to_string(),
                pool: pool.to_string(),
                state,
            });
        }
        self.queued_jobs.remove(&labels);
        self.runner_version_outdated.remove(&labels);
        self.desired_runners.remove(&labels);
        self.oldest_queued_job.remove(&labels);
        for state in RUNNER_STATES {
            self.runners.remove(&PoolStateLabels {
                namespace: namespace.to_string(),
                pool: pool.to_string(),
                state,
            });
        }
        for condition in POOL_CONDITIONS {
            self.pool_condition.remove(&PoolConditionLabels {
                namespace: namespace.to_string(),
                pool: pool.to_string(),
                condition,
            });
        }
        self.jobs.forget_pool(namespace, pool);
    }
}

fn pool_labels(namespace: &str, pool: &str) -> PoolLabels {
    PoolLabels {
        namespace: namespace.to_string(),
        pool: pool.to_string(),
    }
}
