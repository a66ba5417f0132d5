//! The operator's configuration: every flag of `runnerpool-operator run`,
//! each with its environment variable, and what the parts of the process
//! are built from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::controller::Settings;
use crate::github::deliveries::HookRef;
use crate::leader::LeaseConfig;
use crate::metrics::jobs::JobMetricsOptions;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Config {
    /// Kubeconfig to use; in-cluster configuration (or the default kubeconfig) when unset.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch RunnerPools, pods and Secrets in this namespace only (all namespaces when unset).
    #[arg(long, env = "RUNNERPOOL_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// The namespace whose Secrets GitHubConnections name (the credentials
    /// kept out of the runners' namespaces); defaults to $POD_NAMESPACE
    /// (the operator's own), then the watched namespace, then "default".
    #[arg(long, env = "RUNNERPOOL_CONNECTIONS_NAMESPACE")]
    pub connections_namespace: Option<String>,

    /// Identifies this installation in the ownership label of its runners, so
    /// several clusters can share one organization without touching each other's runners.
    #[arg(long, env = "RUNNERPOOL_INSTALL_ID", default_value = "default")]
    pub install_id: String,

    /// Seconds between listings of a pool's runners on GitHub (conditional
    /// requests: an unchanged list costs no rate-limit budget).
    #[arg(
        long,
        env = "RUNNERPOOL_GITHUB_SYNC_INTERVAL_SECONDS",
        default_value_t = 120
    )]
    pub github_sync_interval_seconds: u64,

    /// Seconds a deleted pool waits for an unreachable GitHub before it is
    /// released with a Warning event (busy runners are waited for without limit).
    #[arg(
        long,
        env = "RUNNERPOOL_CLEANUP_TIMEOUT_SECONDS",
        default_value_t = 300
    )]
    pub cleanup_timeout_seconds: u64,

    /// Runners of one pool registered concurrently.
    #[arg(long, env = "RUNNERPOOL_CREATE_CONCURRENCY", default_value_t = 16)]
    pub create_concurrency: usize,

    /// Pools reconciled at once; the others wait their turn (a start-up
    /// with many pools does not fire every pool's GitHub calls together).
    #[arg(long, env = "RUNNERPOOL_RECONCILE_CONCURRENCY", default_value_t = 16)]
    pub reconcile_concurrency: u16,

    /// Seconds the newest runner release of a scope (GitHub's
    /// `…/actions/runners/downloads`) is reused before it is read again; one
    /// conditional read per scope and interval, whatever the number of pools.
    #[arg(
        long,
        env = "RUNNERPOOL_RUNNER_VERSION_REFRESH_SECONDS",
        default_value_t = crate::versions::DEFAULT_REFRESH.as_secs()
    )]
    pub runner_version_refresh_seconds: u64,

    /// Timeout of one GitHub request, in seconds.
    #[arg(long, env = "RUNNERPOOL_GITHUB_TIMEOUT_SECONDS", default_value_t = 30)]
    pub github_timeout_seconds: u64,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "RUNNERPOOL_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease: only the leader
    /// reconciles and takes webhook deliveries, other replicas stand by (and
    /// report ready). In a pod ($POD_NAME, $POD_NAMESPACE) the leader labels
    /// it actions.runnerpool.dev/leader=<Lease name> while it leads.
    #[arg(long, env = "RUNNERPOOL_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease; defaults to $POD_NAMESPACE,
    /// then the watched namespace, then "default".
    #[arg(long, env = "RUNNERPOOL_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease (one per installation).
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_LEASE",
        default_value = "runnerpool-operator"
    )]
    pub leader_election_lease: String,

    /// This replica's identity in the Lease; defaults to $POD_NAME, else a random name.
    #[arg(long, env = "RUNNERPOOL_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,

    /// Seconds a leader's claim is honoured after its last renewal; a
    /// standby takes over once it saw no renewal for this long. Every
    /// reconcile is bounded by half of it.
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub leader_election_lease_duration_seconds: u64,

    /// Seconds the leader keeps trying to renew before it stops acting; must
    /// be shorter than the lease duration.
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    pub leader_election_renew_deadline_seconds: u64,

    /// Seconds between attempts to acquire or renew the Lease; must be
    /// shorter than the renew deadline.
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_RETRY_PERIOD_SECONDS",
        default_value_t = 2
    )]
    pub leader_election_retry_period_seconds: u64,

    /// Address of the webhook listener serving `POST /webhook` for GitHub's
    /// `workflow_job` events (its own port, never the admin one). Off when unset.
    #[arg(long, env = "RUNNERPOOL_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,

    /// File holding the webhook secret (e.g. a mounted Secret); otherwise the
    /// secret is read from $RUNNERPOOL_WEBHOOK_SECRET. Required with --webhook-listen.
    #[arg(long, env = "RUNNERPOOL_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Seconds a queued job waits before GitHub is asked whether it still
    /// does (`GET …/actions/jobs/{job_id}`, then again every such interval):
    /// a queued job leaves demand only when GitHub says it started, ended or
    /// is gone, or after GitHub's own 24 h limit. Formerly
    /// --webhook-demand-ttl-seconds, still accepted.
    #[arg(
        long,
        env = "RUNNERPOOL_QUEUED_JOB_CHECK_SECONDS",
        alias = "webhook-demand-ttl-seconds",
        default_value_t = 600
    )]
    pub queued_job_check_seconds: u64,

    /// Webhooks whose delivery log is read on becoming leader and every
    /// --webhook-delivery-log-interval-seconds, to take the `workflow_job`
    /// deliveries that never arrived (failed, or sent while no leader answered):
    /// `orgs/ORG/hooks/ID`, `repos/OWNER/REPO/hooks/ID` or `app` (the GitHub
    /// App's own webhook), comma-separated. Needs --webhook-listen and
    /// --webhook-delivery-log-credentials.
    #[arg(long, env = "RUNNERPOOL_WEBHOOK_DELIVERY_LOG", value_delimiter = ',')]
    pub webhook_delivery_log: Vec<HookRef>,

    /// Directory (a mounted Secret) with the credentials that read the
    /// delivery log: the file `token` (classic: admin:org_hook for an
    /// organization's hook, admin:repo_hook or read:repo_hook for a
    /// repository's), or `appId`, `installationId` and `privateKey` (an
    /// installation with Webhooks read; the App's own hook uses its JWT).
    #[arg(long, env = "RUNNERPOOL_WEBHOOK_DELIVERY_LOG_CREDENTIALS")]
    pub webhook_delivery_log_credentials: Option<PathBuf>,

    /// The GitHub API the hooks are on: https://api.github.com, or
    /// https://HOST/api/v3 for GitHub Enterprise Server.
    #[arg(
        long,
        env = "RUNNERPOOL_WEBHOOK_DELIVERY_LOG_API_URL",
        default_value = "https://api.github.com"
    )]
    pub webhook_delivery_log_api_url: String,

    /// Seconds between two reads of the delivery log: how long a lost
    /// delivery waits at most. A read whose first page did not change is
    /// answered 304 and costs no rate limit; while deliveries flow, one
    /// call per hook per interval.
    #[arg(
        long,
        env = "RUNNERPOOL_WEBHOOK_DELIVERY_LOG_INTERVAL_SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub webhook_delivery_log_interval_seconds: u64,

    /// Label the job metrics (queue wait, duration, results) with the job's
    /// repository too. Off: per pool only.
    #[arg(long, env = "RUNNERPOOL_JOB_METRICS_REPOSITORY_LABEL")]
    pub job_metrics_repository_label: bool,

    /// With --job-metrics-repository-label, the most repositories labelled
    /// by name; jobs of any other repository are labelled `other`.
    #[arg(
        long,
        env = "RUNNERPOOL_JOB_METRICS_MAX_REPOSITORIES",
        default_value_t = JobMetricsOptions::default().max_repositories
    )]
    pub job_metrics_max_repositories: usize,

    /// Log format.
    #[arg(
        long,
        env = "RUNNERPOOL_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUNNERPOOL_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// What the job metrics are labelled with.
    pub fn job_metrics(&self) -> JobMetricsOptions {
        JobMetricsOptions {
            repository_label: self.job_metrics_repository_label,
            max_repositories: self.job_metrics_max_repositories,
        }
    }

    /// The controllers' settings; every reconcile is bounded by
    /// `reconcile_timeout`. `env` reads the pod's `POD_NAMESPACE`.
    pub fn settings(
        &self,
        reconcile_timeout: Duration,
        env: impl Fn(&str) -> Option<String>,
    ) -> Settings {
        Settings {
            install_id: self.install_id.clone(),
            watch_namespace: self.watch_namespace.clone(),
            connections_namespace: self.own_namespace(self.connections_namespace.as_ref(), &env),
            github_sync_interval: Duration::from_secs(self.github_sync_interval_seconds.max(1)),
            cleanup_timeout: Duration::from_secs(self.cleanup_timeout_seconds),
            create_concurrency: self.create_concurrency.max(1),
            reconcile_concurrency: self.reconcile_concurrency.max(1),
            reconcile_timeout,
            runner_version_refresh: Duration::from_secs(self.runner_version_refresh_seconds.max(1)),
            identity: "runnerpool-operator".to_string(),
        }
    }

    /// The leader election's Lease and timings, validated (also without
    /// leader election: the reconcile bound derives from them). `env` reads
    /// the pod's downward-API variables `POD_NAMESPACE` and `POD_NAME`.
    pub fn lease_config(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<LeaseConfig, String> {
        let set = |name: &str| env(name).filter(|s| !s.is_empty());
        let namespace = self.own_namespace(self.leader_election_namespace.as_ref(), &env);
        let identity = self
            .leader_election_identity
            .clone()
            .or_else(|| set("POD_NAME"))
            .unwrap_or_else(|| format!("runnerpool-operator-{:08x}", rand::random::<u32>()));
        let config = LeaseConfig {
            lease_duration: Duration::from_secs(self.leader_election_lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.leader_election_renew_deadline_seconds),
            retry_period: Duration::from_secs(self.leader_election_retry_period_seconds),
            ..LeaseConfig::new(&namespace, &self.leader_election_lease, &identity)
        };
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    /// `flag`, else the operator's own namespace ($POD_NAMESPACE), else the
    /// watched one, else "default".
    fn own_namespace(
        &self,
        flag: Option<&String>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> String {
        flag.cloned()
            .filter(|s| !s.is_empty())
            .or_else(|| env("POD_NAMESPACE").filter(|s| !s.is_empty()))
            .or_else(|| self.watch_namespace.clone())
            .unwrap_or_else(|| "default".to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        config: Config,
    }

    /// The configuration of `run` with `args`.
    pub(crate) fn parse(args: &[&str]) -> Config {
        Run::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .expect("valid flags")
            .config
    }

    #[test]
    fn the_lease_namespace_is_the_flag_then_the_pod_then_the_watched_one() {
        let none = |_: &str| None;
        let pod = |name: &str| (name == "POD_NAMESPACE").then(|| "ops".to_string());
        let flagged = parse(&[
            "--leader-election-namespace",
            "lease-ns",
            "--watch-namespace",
            "ci",
        ]);
        assert_eq!(flagged.lease_config(pod).unwrap().namespace, "lease-ns");
        let watching = parse(&["--watch-namespace", "ci"]);
        assert_eq!(watching.lease_config(pod).unwrap().namespace, "ops");
        assert_eq!(watching.lease_config(none).unwrap().namespace, "ci");
        assert_eq!(parse(&[]).lease_config(none).unwrap().namespace, "default");
    }

    #[test]
    fn the_connections_namespace_is_the_flag_then_the_operators_own() {
        let pod = |name: &str| (name == "POD_NAMESPACE").then(|| "ops".to_string());
        let t = Duration::from_secs(5);
        let flagged = parse(&[
            "--connections-namespace",
            "vault",
            "--watch-namespace",
            "ci",
        ]);
        assert_eq!(flagged.settings(t, pod).connections_namespace, "vault");
        let watching = parse(&["--watch-namespace", "ci"]);
        assert_eq!(watching.settings(t, pod).connections_namespace, "ops");
        assert_eq!(watching.settings(t, |_| None).connections_namespace, "ci");
        assert_eq!(
            parse(&[]).settings(t, |_| None).connections_namespace,
            "default"
        );
    }

    #[test]
    fn the_identity_is_the_flag_then_the_pod_name_then_random() {
        let pod = |name: &str| (name == "POD_NAME").then(|| "operator-0".to_string());
        let empty = |_: &str| Some(String::new());
        assert_eq!(parse(&[]).lease_config(pod).unwrap().identity, "operator-0");
        let named = parse(&["--leader-election-identity", "me"]);
        assert_eq!(named.lease_config(pod).unwrap().identity, "me");
        let random = parse(&[]).lease_config(empty).unwrap().identity;
        assert!(random.starts_with("runnerpool-operator-"), "{random}");
    }

    #[test]
    fn lease_timings_are_validated_and_bound_the_reconciles() {
        let none = |_: &str| None;
        let lease = parse(&[]).lease_config(none).unwrap();
        assert_eq!(lease.reconcile_timeout(), Duration::from_millis(7500));
        let inverted = parse(&["--leader-election-renew-deadline-seconds", "20"]);
        assert!(
            inverted.lease_config(none).is_err(),
            "renew deadline past the lease"
        );
    }

    #[test]
    fn settings_never_take_a_zero_interval_or_concurrency() {
        let config = parse(&[
            "--github-sync-interval-seconds",
            "0",
            "--create-concurrency",
            "0",
            "--reconcile-concurrency",
            "0",
        ]);
        let settings = config.settings(Duration::from_secs(5), |_| None);
        assert_eq!(settings.github_sync_interval, Duration::from_secs(1));
        assert_eq!(settings.create_concurrency, 1);
        assert_eq!(settings.reconcile_concurrency, 1);
        assert_eq!(settings.reconcile_timeout, Duration::from_secs(5));
    }
}
