//! Job metrics per pool: how long jobs waited for a runner, how long they
//! ran and how they ended, from the `workflow_job` deliveries of webhook
//! pools and the job messages of scale-set pools.
//!
//! Each job is counted once: a delivery received twice, recovered from the
//! delivery log or a message delivered again changes nothing (the jobs
//! recently counted are remembered, a bounded number of them). Times are
//! GitHub's own (`created_at` → `started_at` → `completed_at`, or the
//! service's `queueTime` → `runnerAssignTime` → `finishTime`), so a slow or
//! late delivery does not stretch them; a negative span (clock skew between
//! GitHub's machines) counts as 0.
//!
//! Labels are bounded: the pool (namespace and name), the result folded
//! into GitHub's conclusions, and the repository only when asked for, its
//! first `max_repositories` values by name and every other one as `other`.

use std::collections::HashSet;
use std::sync::Mutex;

use jiff::Timestamp;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::registrar::Registrar;
use crate::kit::recent::Recent;
use crate::mutex::lock;

/// Seconds to hours: a job waits from about a second (a warm runner) to
/// GitHub's 24 h limit, and runs up to days.
pub const BUCKETS: [f64; 17] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0, 86400.0, 259200.0,
];

/// The `result` values: GitHub's conclusions, and `other` for anything else.
pub const RESULTS: [&str; 10] = [
    "success",
    "failure",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
    "neutral",
    "stale",
    "startup_failure",
    OTHER,
];

/// The label value of whatever is beyond a bound.
pub const OTHER: &str = "other";

/// How many job transitions are remembered to count each once.
const SEEN_CAPACITY: usize = 16_384;

/// What `--job-metrics-repository-label` and `--job-metrics-max-repositories` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobMetricsOptions {
    pub repository_label: bool,
    pub max_repositories: usize,
}

impl Default for JobMetricsOptions {
    fn default() -> Self {
        JobMetricsOptions {
            repository_label: false,
            max_repositories: 100,
        }
    }
}

/// A pool's job series: `namespace`, `pool` and, when asked for, `repository`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct JobLabels {
    pub namespace: String,
    pub pool: String,
    pub repository: Option<String>,
}

impl EncodeLabelSet for JobLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let mut labels = vec![
            ("namespace", self.namespace.as_str()),
            ("pool", self.pool.as_str()),
        ];
        if let Some(repository) = &self.repository {
            labels.push(("repository", repository));
        }
        labels.encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct JobResultLabels {
    #[prometheus(flatten)]
    pub job: JobLabels,
    pub result: &'static str,
}

/// Where a job was learnt: the two number their jobs apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Webhook,
    ScaleSet,
}

/// One job of a pool.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    pub source: Source,
    pub id: &'a str,
    pub namespace: &'a str,
    pub pool: &'a str,
    /// `owner/name`.
    pub repository: &'a str,
}

impl Job<'_> {
    fn key(&self, step: &str) -> String {
        let source = match self.source {
            Source::Webhook => "w",
            Source::ScaleSet => "s",
        };
        format!("{source}:{}:{step}", self.id)
    }
}

type Histograms = Family<JobLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

struct State {
    seen: Recent<String>,
    /// The repositories that have a label value of their own.
    repositories: HashSet<String>,
    /// Every label set used, to drop a deleted pool's series.
    series: HashSet<JobLabels>,
}

pub struct JobMetrics {
    options: JobMetricsOptions,
    pub queue_wait: Histograms,
    pub duration: Histograms,
    pub completed: Family<JobResultLabels, Counter>,
    state: Mutex<State>,
}

impl JobMetrics {
    pub fn register(registry: &mut Registrar, options: JobMetricsOptions) -> Self {
        let queue_wait = Histograms::new_with_constructor(histogram);
        registry.register(
            "job_queue_wait_seconds",
            "Time a job of the pool waited for a runner: GitHub's created_at to started_at (scale sets: queueTime to runnerAssignTime)",
            queue_wait.clone(),
        );
        let duration = Histograms::new_with_constructor(histogram);
        registry.register(
            "job_duration_seconds",
            "Time a job ran on a runner of the pool: GitHub's started_at to completed_at (scale sets: runnerAssignTime to finishTime)",
            duration.clone(),
        );
        let completed = Family::<JobResultLabels, Counter>::default();
        registry.register(
            "jobs_completed",
            "Jobs of the pool that ended, by result (GitHub's conclusion)",
            completed.clone(),
        );
        JobMetrics {
            options,
            queue_wait,
            duration,
            completed,
            state: Mutex::new(State {
                seen: Recent::new(SEEN_CAPACITY),
                repositories: HashSet::new(),
                series: HashSet::new(),
            }),
        }
    }

    /// A job started on a runner: its wait, once.
    pub fn started(&self, job: &Job, queued_at: Option<Timestamp>, started_at: Timestamp) {
        let Some(labels) = self.first(job, "started") else {
            return;
        };
        if let Some(queued_at) = queued_at {
            self.queue_wait
                .get_or_create(&labels)
                .observe(seconds_between(queued_at, started_at));
        }
    }

    /// A job ended, with GitHub's `result`; `ran` is when it started and
    /// ended on a runner (none for a job that never reached one). Once.
    pub fn completed(&self, job: &Job, result: Option<&str>, ran: Option<(Timestamp, Timestamp)>) {
        let Some(labels) = self.first(job, "completed") else {
            return;
        };
        if let Some((started, ended)) = ran {
            self.duration
                .get_or_create(&labels)
                .observe(seconds_between(started, ended));
        }
        self.completed
            .get_or_create(&JobResultLabels {
                job: labels,
                result: result_label(result),
            })
            .inc();
    }

    /// The job's labels the first time `step` is seen for it, else `None`.
    fn first(&self, job: &Job, step: &str) -> Option<JobLabels> {
        let mut state = lock(&self.state);
        if !state.seen.insert(job.key(step)) {
            return None;
        }
        let repository = self.options.repository_label.then(|| {
            let known = state.repositories.contains(job.repository);
            if known || state.repositories.len() < self.options.max_repositories {
                state.repositories.insert(job.repository.to_string());
                job.repository.to_string()
            } else {
                OTHER.to_string()
            }
        });
        let labels = JobLabels {
            namespace: job.namespace.to_string(),
            pool: job.pool.to_string(),
            repository,
        };
        state.series.insert(labels.clone());
        Some(labels)
    }

    /// Drops the series of a deleted pool.
    pub fn forget_pool(&self, namespace: &str, pool: &str) {
        let mut state = lock(&self.state);
        state.series.retain(|labels| {
            if labels.namespace != namespace || labels.pool != pool {
                return true;
            }
            self.queue_wait.remove(labels);
            self.duration.remove(labels);
            for result in RESULTS {
                self.completed.remove(&JobResultLabels {
                    job: labels.clone(),
                    result,
                });
            }
            false
        });
    }
}

/// Seconds from `from` to `to`, 0 when `to` is earlier (clock skew).
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()).max(0) as f64 / 1000.0
}

/// GitHub's conclusion (or the Actions service's result) as a label value.
pub fn result_label(result: Option<&str>) -> &'static str {
    let result = result.unwrap_or_default().to_ascii_lowercase();
    let result = match result.as_str() {
        // The Actions service's words for them.
        "succeeded" => "success",
        "failed" => "failure",
        "canceled" => "cancelled",
        other => other,
    };
    RESULTS
        .iter()
        .find(|r| **r == result)
        .copied()
        .unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn job<'a>(id: &'a str, repository: &'a str) -> Job<'a> {
        Job {
            source: Source::Webhook,
            id,
            namespace: "ci",
            pool: "linux",
            repository,
        }
    }

    fn metrics(options: JobMetricsOptions) -> (Registrar, JobMetrics) {
        let mut registry = Registrar::new();
        let jobs = JobMetrics::register(&mut registry, options);
        (registry, jobs)
    }

    fn text(registry: &Registrar) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry.registry).unwrap();
        out
    }

    /// The value of one sample (`name{labels}` exactly as exposed), 0 when absent.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn a_job_is_counted_once_however_often_it_is_delivered() {
        let (registry, jobs) = metrics(JobMetricsOptions::default());
        let queued = at("2026-01-02T03:04:05Z");
        let started = at("2026-01-02T03:05:35Z");
        let ended = at("2026-01-02T03:15:35Z");
        for _ in 0..3 {
            jobs.started(&job("42", "acme/app"), Some(queued), started);
            jobs.completed(
                &job("42", "acme/app"),
                Some("success"),
                Some((started, ended)),
            );
        }
        // The same number from a scale set is another job.
        jobs.completed(
            &Job {
                source: Source::ScaleSet,
                ..job("42", "acme/app")
            },
            Some("Failed"),
            None,
        );
        let text = text(&registry);
        let pool = "namespace=\"ci\",pool=\"linux\"";
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_job_queue_wait_seconds_count{{{pool}}}")
            ),
            1.0,
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_job_queue_wait_seconds_sum{{{pool}}}")
            ),
            90.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_job_queue_wait_seconds_bucket{{le=\"60.0\",{pool}}}")
            ),
            0.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_job_queue_wait_seconds_bucket{{le=\"120.0\",{pool}}}")
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_job_duration_seconds_sum{{{pool}}}")
            ),
            600.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_jobs_completed_total{{{pool},result=\"success\"}}")
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("runnerpool_jobs_completed_total{{{pool},result=\"failure\"}}")
            ),
            1.0
        );
        assert!(
            !text.contains("repository="),
            "no repository label unless asked"
        );
    }

    #[test]
    fn clock_skew_counts_as_no_wait() {
        let (registry, jobs) = metrics(JobMetricsOptions::default());
        let started = at("2026-01-02T03:04:05Z");
        let later = at("2026-01-02T03:04:07Z");
        jobs.started(&job("1", "acme/app"), Some(later), started);
        let text = text(&registry);
        assert!(
            text.contains(
                "runnerpool_job_queue_wait_seconds_bucket{le=\"1.0\",namespace=\"ci\",pool=\"linux\"} 1"
            ),
            "{text}"
        );
        assert_eq!(seconds_between(later, started), 0.0);
        assert_eq!(seconds_between(started, later), 2.0);
    }

    #[test]
    fn repositories_beyond_the_cap_are_other() {
        let (registry, jobs) = metrics(JobMetricsOptions {
            repository_label: true,
            max_repositories: 2,
        });
        for (id, repository) in [
            ("1", "acme/a"),
            ("2", "acme/b"),
            ("3", "acme/c"),
            ("4", "acme/a"),
        ] {
            jobs.completed(&job(id, repository), Some("success"), None);
        }
        let text = text(&registry);
        let count = |repository: &str| {
            sample(
                &text,
                &format!(
                    "runnerpool_jobs_completed_total{{namespace=\"ci\",pool=\"linux\",repository=\"{repository}\",result=\"success\"}}"
                ),
            )
        };
        assert_eq!(
            (count("acme/a"), count("acme/b"), count("other")),
            (2.0, 1.0, 1.0),
            "{text}"
        );
        assert!(!text.contains("acme/c"));
    }

    #[test]
    fn results_are_githubs_conclusions_or_other() {
        assert_eq!(result_label(Some("success")), "success");
        assert_eq!(result_label(Some("Succeeded")), "success");
        assert_eq!(result_label(Some("canceled")), "cancelled");
        assert_eq!(result_label(Some("timed_out")), "timed_out");
        assert_eq!(result_label(Some("<script>")), "other");
        assert_eq!(result_label(None), "other");
    }

    #[test]
    fn a_deleted_pools_series_go() {
        let (registry, jobs) = metrics(JobMetricsOptions::default());
        let t = at("2026-01-02T03:04:05Z");
        jobs.started(&job("1", "acme/app"), Some(t), t);
        jobs.completed(&job("1", "acme/app"), Some("failure"), Some((t, t)));
        jobs.forget_pool("ci", "linux");
        let text = text(&registry);
        assert!(!text.contains("pool=\"linux\""), "{text}");
    }
}
