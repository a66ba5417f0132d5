//! `runnerpool-operator`: parses configuration and wires the parts together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use runnerpool::admin::{self, AdminState};
use runnerpool::controller::{self, DemandFeed, Settings};
use runnerpool::github::client::{CachingConnector, ClientOptions, WriteGate};
use runnerpool::leader::{Fence, FenceLayer, LeaderElector, LeaseConfig};
use runnerpool::metrics::{GitHubRequestLabels, Metrics};
use runnerpool::{groups, webhook};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "runnerpool-operator",
    version,
    about = "Ephemeral, just-in-time GitHub Actions runners on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (RunnerPool, RunnerGroup) as YAML.
    Crd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig to use; in-cluster configuration (or the default kubeconfig) when unset.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Watch RunnerPools, pods and Secrets in this namespace only (all namespaces when unset).
    #[arg(long, env = "RUNNERPOOL_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Identifies this installation in the ownership label of its runners, so
    /// several clusters can share one organization without touching each other's runners.
    #[arg(long, env = "RUNNERPOOL_INSTALL_ID", default_value = "default")]
    install_id: String,

    /// Seconds between listings of a pool's runners on GitHub (conditional
    /// requests: an unchanged list costs no rate-limit budget).
    #[arg(
        long,
        env = "RUNNERPOOL_GITHUB_SYNC_INTERVAL_SECONDS",
        default_value_t = 120
    )]
    github_sync_interval_seconds: u64,

    /// Seconds a deleted pool waits for an unreachable GitHub before it is
    /// released with a Warning event (busy runners are waited for without limit).
    #[arg(
        long,
        env = "RUNNERPOOL_CLEANUP_TIMEOUT_SECONDS",
        default_value_t = 300
    )]
    cleanup_timeout_seconds: u64,

    /// Runners of one pool registered concurrently.
    #[arg(long, env = "RUNNERPOOL_CREATE_CONCURRENCY", default_value_t = 16)]
    create_concurrency: usize,

    /// Pools reconciled at once; the others wait their turn (a start-up
    /// with many pools does not fire every pool's GitHub calls together).
    #[arg(long, env = "RUNNERPOOL_RECONCILE_CONCURRENCY", default_value_t = 16)]
    reconcile_concurrency: u16,

    /// Seconds the newest runner release of a scope (GitHub's
    /// `…/actions/runners/downloads`) is reused before it is read again; one
    /// conditional read per scope and interval, whatever the number of pools.
    #[arg(
        long,
        env = "RUNNERPOOL_RUNNER_VERSION_REFRESH_SECONDS",
        default_value_t = runnerpool::versions::DEFAULT_REFRESH.as_secs()
    )]
    runner_version_refresh_seconds: u64,

    /// Timeout of one GitHub request, in seconds.
    #[arg(long, env = "RUNNERPOOL_GITHUB_TIMEOUT_SECONDS", default_value_t = 30)]
    github_timeout_seconds: u64,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "RUNNERPOOL_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease: only the leader
    /// reconciles, other replicas stand by (and report not ready).
    #[arg(long, env = "RUNNERPOOL_LEADER_ELECT")]
    leader_elect: bool,

    /// Namespace of the leader-election Lease; defaults to $POD_NAMESPACE,
    /// then the watched namespace, then "default".
    #[arg(long, env = "RUNNERPOOL_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease (one per installation).
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_LEASE",
        default_value = "runnerpool-operator"
    )]
    leader_election_lease: String,

    /// This replica's identity in the Lease; defaults to $POD_NAME, else a random name.
    #[arg(long, env = "RUNNERPOOL_LEADER_ELECTION_IDENTITY")]
    leader_election_identity: Option<String>,

    /// Seconds a leader's claim is honoured after its last renewal; a
    /// standby takes over once it saw no renewal for this long. Every
    /// reconcile is bounded by half of it.
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    leader_election_lease_duration_seconds: u64,

    /// Seconds the leader keeps trying to renew before it stops acting; must
    /// be shorter than the lease duration.
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    leader_election_renew_deadline_seconds: u64,

    /// Seconds between attempts to acquire or renew the Lease; must be
    /// shorter than the renew deadline.
    #[arg(
        long,
        env = "RUNNERPOOL_LEADER_ELECTION_RETRY_PERIOD_SECONDS",
        default_value_t = 2
    )]
    leader_election_retry_period_seconds: u64,

    /// Address of the webhook listener serving `POST /webhook` for GitHub's
    /// `workflow_job` events (its own port, never the admin one). Off when unset.
    #[arg(long, env = "RUNNERPOOL_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,

    /// File holding the webhook secret (e.g. a mounted Secret); otherwise the
    /// secret is read from $RUNNERPOOL_WEBHOOK_SECRET. Required with --webhook-listen.
    #[arg(long, env = "RUNNERPOOL_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,

    /// Seconds a queued job counts as demand when no runner takes it.
    #[arg(
        long,
        env = "RUNNERPOOL_WEBHOOK_DEMAND_TTL_SECONDS",
        default_value_t = 600
    )]
    webhook_demand_ttl_seconds: u64,

    /// Log format.
    #[arg(
        long,
        env = "RUNNERPOOL_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUNNERPOOL_LOG", default_value = "info")]
    log: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", runnerpool::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Run(args) => {
            init_logging(&args);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    error!(error = %e, "cannot start the async runtime");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "operator stopped");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(args: &RunArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn kube_config(
    kubeconfig: Option<&PathBuf>,
) -> Result<kube::Config, Box<dyn std::error::Error>> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(config)
}

/// The client the controllers act with: with a fence, every write is refused
/// once this replica may no longer act as the leader.
fn acting_client(
    config: kube::Config,
    fence: Option<&Fence>,
) -> Result<kube::Client, Box<dyn std::error::Error>> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match fence {
        Some(fence) => builder.with_layer(&FenceLayer(fence.clone())).build(),
        None => builder.build(),
    })
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    // Whether this replica takes webhook deliveries: it does from the moment
    // it acts (at once, or once it leads), before its caches are synced,
    // because GitHub does not redeliver a refused delivery by itself. The
    // events wait in the feed until the controller can route them.
    let taking = Arc::new(AtomicBool::new(!args.leader_elect));
    // First, so a missing webhook secret is the error reported, whatever else.
    let mut feed = start_webhook_listener(&args, &metrics, &taking).await?;
    let config = kube_config(args.kubeconfig.as_ref()).await?;
    // Validated with or without leader election: the reconcile bound derives from it.
    let timings = lease_config(&args)?;
    let lease = args.leader_elect.then(|| timings.clone());
    // The Lease is written with a client of its own: the fence must never
    // stop the elector itself.
    let mut elector = match &lease {
        Some(lease) => Some(LeaderElector::new(
            kube::Client::try_from(config.clone())?,
            lease.clone(),
        )),
        None => None,
    };
    let fence = elector.as_ref().map(LeaderElector::fence);
    let client = acting_client(config, fence.as_ref())?;
    let may_write = fence
        .clone()
        .map(|fence| -> WriteGate { Arc::new(move || fence.may_act()) });
    let observed = metrics.clone();
    let github = Arc::new(CachingConnector::new(ClientOptions {
        request_timeout: Duration::from_secs(args.github_timeout_seconds.max(1)),
        observer: Some(Arc::new(move |record| {
            observed
                .github_requests
                .get_or_create(&GitHubRequestLabels {
                    endpoint: record.endpoint,
                    status: record.status.unwrap_or(0),
                })
                .inc();
        })),
        may_write,
        ..ClientOptions::default()
    }));

    let listener = tokio::net::TcpListener::bind(args.admin_listen).await?;
    info!(address = %listener.local_addr()?, "admin listener serving /healthz, /readyz and /metrics");
    let admin_state = AdminState {
        ready: ready.clone(),
        metrics: metrics.clone(),
        github: github.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, admin::router(admin_state)).await {
            error!(error = %e, "admin listener stopped");
        }
    });

    let shutdown = shutdown_signal().boxed().shared();
    if let Some(elector) = elector.as_mut() {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shutdown.clone() => return Ok(()),
        }
        taking.store(true, Ordering::Relaxed);
    }

    let reconcile_timeout = timings.reconcile_timeout();
    let settings = Settings {
        install_id: args.install_id,
        watch_namespace: args.watch_namespace,
        github_sync_interval: Duration::from_secs(args.github_sync_interval_seconds.max(1)),
        cleanup_timeout: Duration::from_secs(args.cleanup_timeout_seconds),
        create_concurrency: args.create_concurrency.max(1),
        reconcile_concurrency: args.reconcile_concurrency.max(1),
        reconcile_timeout,
        runner_version_refresh: Duration::from_secs(args.runner_version_refresh_seconds.max(1)),
    };
    info!(install_id = %settings.install_id, namespace = ?settings.watch_namespace, reconcile_timeout = ?reconcile_timeout, "starting the RunnerPool and RunnerGroup controllers");
    let groups = groups::run(
        client.clone(),
        github.clone(),
        settings.clone(),
        shutdown.clone(),
    );
    let pools = controller::run(
        client,
        github,
        settings,
        metrics,
        ready.clone(),
        feed.take(),
        shutdown.clone(),
    );
    // On SIGTERM the controllers finish their reconciles in flight (each
    // bounded by the reconcile timeout) and stop; a little more than that
    // bound is all the wait a shutdown gets.
    let grace = reconcile_timeout + Duration::from_secs(2);
    let work = async {
        tokio::join!(pools, groups);
    };
    let bounded = async {
        tokio::select! {
            _ = work => {}
            _ = async { shutdown.clone().await; tokio::time::sleep(grace).await } => {
                warn!(grace = ?grace, "reconciles still running after the shutdown grace period; abandoned");
            }
        }
    };
    let Some(mut elector) = elector else {
        bounded.await;
        info!("controller stopped");
        return Ok(());
    };
    // The controllers act while the Lease is held. Losing it stops them at
    // once: their futures are dropped with every reconcile in flight, and
    // the fence already refuses their writes. The process then exits (its
    // pod restarts as a candidate). On an ordinary shutdown the Lease is
    // released only after the controllers stopped.
    let (stop_holding, holding) = tokio::sync::oneshot::channel::<()>();
    // Renewals run on a task of their own, never slowed by the controllers'.
    let mut holder = tokio::spawn(async move {
        let held = elector
            .hold(async {
                let _ = holding.await;
            })
            .await;
        (elector, held)
    });
    let lost = tokio::select! {
        _ = bounded => None,
        joined = &mut holder => Some(joined?),
    };
    taking.store(false, Ordering::Relaxed);
    ready.store(false, Ordering::Relaxed);
    let (mut elector, held) = match lost {
        Some((_, Err(lost))) => {
            warn!(identity = %timings.identity, error = %lost, "leadership lost: stopped acting at once, reconciles in flight abandoned");
            return Err(Box::new(lost));
        }
        Some(done) => done,
        None => {
            let _ = stop_holding.send(());
            holder.await?
        }
    };
    info!("controller stopped");
    match held {
        Ok(()) => {
            elector.release().await;
            Ok(())
        }
        Err(e) => Err(Box::new(e)),
    }
}

/// Starts the webhook receiver when `--webhook-listen` is set; the events it
/// accepts go to the controller through the returned feed.
async fn start_webhook_listener(
    args: &RunArgs,
    metrics: &Arc<Metrics>,
    taking: &Arc<AtomicBool>,
) -> Result<Option<DemandFeed>, Box<dyn std::error::Error>> {
    let Some(address) = args.webhook_listen else {
        return Ok(None);
    };
    if address == args.admin_listen && address.port() != 0 {
        return Err("--webhook-listen must differ from --admin-listen".into());
    }
    let secret = webhook::load_secret(
        args.webhook_secret_file.as_deref(),
        std::env::var(webhook::SECRET_ENV).ok(),
    )?;
    // Bounded: an overloaded replica answers 503 rather than queueing
    // without end (the delivery shows failed on GitHub, to redeliver).
    let (events, received) = tokio::sync::mpsc::channel(4096);
    let listener = tokio::net::TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, "webhook listener serving POST /webhook");
    // Events are taken only while this replica acts (leads, with leader
    // election): a standby answers 503, and its readiness keeps it out of
    // the Service meanwhile.
    let state =
        webhook::server::ReceiverState::new(secret, taking.clone(), events, metrics.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, webhook::server::router(state)).await {
            error!(error = %e, "webhook listener stopped");
        }
    });
    Ok(Some(DemandFeed {
        events: received,
        demand: Arc::new(webhook::Demand::new(Duration::from_secs(
            args.webhook_demand_ttl_seconds.max(1),
        ))),
    }))
}

fn lease_config(args: &RunArgs) -> Result<LeaseConfig, String> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| args.watch_namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let identity = args
        .leader_election_identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("runnerpool-operator-{:08x}", rand::random::<u32>()));
    let config = LeaseConfig {
        lease_duration: Duration::from_secs(args.leader_election_lease_duration_seconds),
        renew_deadline: Duration::from_secs(args.leader_election_renew_deadline_seconds),
        retry_period: Duration::from_secs(args.leader_election_retry_period_seconds),
        ..LeaseConfig::new(&namespace, &args.leader_election_lease, &identity)
    };
    config.validate()?;
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
