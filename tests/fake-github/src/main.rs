//! `fake-github`: the fake GitHub as a process, for the demo, benchmarks and
//! chaos tests. See the README for the flags and the `/_fake` control API.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fake_github::{
    AppSpec, Config, FakeGitHub, InstallationSpec, ServiceBom, ServiceSettings, TokenSpec,
    WebhookConfig,
};

#[derive(Parser, Debug)]
#[command(
    name = "fake-github",
    version,
    about = "A strict, stateful fake of GitHub's self-hosted runner API"
)]
struct Args {
    /// Address to listen on (loopback); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A classic token and its scopes: `TOKEN:scope,scope` (repeatable).
    #[arg(long = "token", value_name = "TOKEN:SCOPES")]
    tokens: Vec<String>,
    /// An organization (repeatable).
    #[arg(long = "org", value_name = "NAME")]
    orgs: Vec<String>,
    /// A repository `OWNER/NAME` (repeatable).
    #[arg(long = "repo", value_name = "OWNER/NAME")]
    repos: Vec<String>,
    /// An enterprise (repeatable).
    #[arg(long = "enterprise", value_name = "NAME")]
    enterprises: Vec<String>,
    /// An organization that belongs to an enterprise: `ENTERPRISE/ORG` (repeatable).
    #[arg(long = "enterprise-org", value_name = "ENTERPRISE/ORG")]
    enterprise_orgs: Vec<String>,
    /// A GitHub App: `ID[/CLIENT_ID]:INSTALLATION[@OWNER]:PEM_PATH` (repeatable).
    /// The PEM may be the app's private key or its public key. Without
    /// `@OWNER` the installation covers every account of the fake.
    #[arg(long = "app", value_name = "ID:INSTALLATION:PEM_PATH")]
    apps: Vec<String>,
    /// Where to send `workflow_job` webhooks.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Secret for `X-Hub-Signature-256`.
    #[arg(long, env = "FAKE_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Primary rate limit per credential per window.
    #[arg(long, default_value_t = 5000)]
    rate_limit: u32,
    /// Length of the rate-limit window in seconds.
    #[arg(long, default_value_t = 3600)]
    rate_limit_window: u64,
    /// Status of an exhausted primary limit (403 or 429).
    #[arg(long, default_value_t = 403)]
    rate_limit_status: u16,
    /// Chance (0..1) that an API request fails.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Status of those failures.
    #[arg(long, default_value_t = 500)]
    error_status: u16,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// JIT runners that never come online are removed after this many seconds.
    #[arg(long, default_value_t = 86_400.0)]
    jit_offline_expiry: f64,
    /// Lifetime of installation tokens in seconds.
    #[arg(long, default_value_t = 3600.0)]
    app_token_ttl: f64,
    /// Requests kept in the request log.
    #[arg(long, default_value_t = 100_000)]
    request_log_capacity: usize,
    /// Scale sets, GHES style: jobs are offered (`JobAvailable`) and must be acquired.
    #[arg(long)]
    acquire_mode: bool,
    /// How long a message poll of a scale-set session waits, in seconds.
    #[arg(long, default_value_t = 50.0)]
    long_poll: f64,
    /// A scale-set session nobody polls for this many seconds is gone.
    #[arg(long, default_value_t = 120.0)]
    session_timeout: f64,
    /// Lifetime of message-queue tokens in seconds.
    #[arg(long, default_value_t = 3000.0)]
    queue_token_ttl: f64,
    /// Lifetime of Actions admin tokens in seconds.
    #[arg(long, default_value_t = 3600.0)]
    admin_token_ttl: f64,
    /// Re-offer a scale-set job no runner started within this many seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    reassign_after: f64,
    /// Which Actions service answers start with a UTF-8 BOM.
    #[arg(long, value_enum, default_value_t = Bom::Always)]
    service_bom: Bom,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Bom {
    Never,
    Always,
    Random,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn fail(msg: String) -> ! {
    eprintln!("fake-github: {msg}");
    std::process::exit(2)
}

fn parse_app(s: &str) -> AppSpec {
    let mut parts = s.splitn(3, ':');
    let (Some(id), Some(inst), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        fail(format!(
            "--app {s:?}: expected ID[/CLIENT_ID]:INSTALLATION[@OWNER]:PEM_PATH"
        ))
    };
    let (id, client_id) = match id.split_once('/') {
        Some((i, c)) => (i, Some(c.to_string())),
        None => (id, None),
    };
    let (inst, owner) = match inst.split_once('@') {
        Some((i, o)) => (i, Some(o)),
        None => (inst, None),
    };
    let app_id: u64 = id
        .parse()
        .unwrap_or_else(|_| fail(format!("--app: bad app id {id:?}")));
    let inst_id: u64 = inst
        .parse()
        .unwrap_or_else(|_| fail(format!("--app: bad installation id {inst:?}")));
    let key_pem = std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(format!("--app: cannot read {path}: {e}")));
    AppSpec {
        app_id,
        client_id,
        key_pem,
        installations: vec![InstallationSpec::new(inst_id, owner)],
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    if !a.listen.ip().is_loopback() {
        fail(format!(
            "--listen {}: only loopback addresses are allowed",
            a.listen
        ));
    }
    let mut cfg = Config {
        listen: a.listen,
        rate_limit: a.rate_limit,
        rate_limit_window: Duration::from_secs(a.rate_limit_window.max(1)),
        rate_limit_status: a.rate_limit_status,
        error_rate: a.error_rate,
        error_status: a.error_status,
        latency: Duration::from_millis(a.latency_ms),
        jit_offline_expiry: Duration::from_secs_f64(a.jit_offline_expiry.max(0.0)),
        app_token_ttl: Duration::from_secs_f64(a.app_token_ttl.max(0.0)),
        request_log_capacity: a.request_log_capacity,
        actions: ServiceSettings {
            acquire_mode: a.acquire_mode,
            long_poll: secs(a.long_poll),
            session_timeout: secs(a.session_timeout),
            queue_token_ttl: secs(a.queue_token_ttl),
            admin_token_ttl: secs(a.admin_token_ttl),
            reassign_after: (a.reassign_after > 0.0).then(|| secs(a.reassign_after)),
            bom: match a.service_bom {
                Bom::Never => ServiceBom::Never,
                Bom::Always => ServiceBom::Always,
                Bom::Random => ServiceBom::Random,
            },
        },
        orgs: a.orgs,
        enterprises: a.enterprises,
        ..Config::default()
    };
    for t in &a.tokens {
        let (token, scopes) = t.split_once(':').unwrap_or((t.as_str(), ""));
        let scopes: Vec<&str> = scopes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        cfg.tokens.push(TokenSpec::new(token, &scopes));
    }
    for r in &a.repos {
        let Some((o, n)) = r.split_once('/') else {
            fail(format!("--repo {r:?}: expected OWNER/NAME"))
        };
        cfg.repos.push((o.to_string(), n.to_string()));
    }
    for eo in &a.enterprise_orgs {
        let Some((e, o)) = eo.split_once('/') else {
            fail(format!("--enterprise-org {eo:?}: expected ENTERPRISE/ORG"))
        };
        cfg.enterprise_orgs.push((e.to_string(), o.to_string()));
    }
    for app in &a.apps {
        cfg.apps.push(parse_app(app));
    }
    if let Some(url) = a.webhook_url {
        cfg.webhook = Some(WebhookConfig {
            url,
            secret: a.webhook_secret,
        });
    }
    let fake = match FakeGitHub::start(cfg).await {
        Ok(f) => f,
        Err(e) => fail(e.to_string()),
    };
    println!("listening on {}", fake.base_url());
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    fake.shutdown().await;
}
