//! A strict, stateful fake of GitHub's self-hosted runner REST API.
//!
//! Start one with [`FakeGitHub::start`], point a GitHub client at
//! [`FakeGitHub::base_url`] (github.com style) or [`FakeGitHub::ghes_url`]
//! (`/api/v3`, GitHub Enterprise Server style), and drive the runner side and
//! GitHub's failures with the handle's methods. The same controls are served
//! over HTTP under `/_fake/…` (see the README).
//!
//! ```no_run
//! # async fn demo() -> Result<(), fake_github::FakeError> {
//! use fake_github::{Config, FakeGitHub, Scope};
//! let fake = FakeGitHub::start(Config::default()).await?;
//! fake.add_token("ghp_test", &["admin:org"]);
//! fake.add_org("acme");
//! // ... the code under test creates a JIT runner through the API ...
//! for r in fake.runners(&Scope::org("acme")) {
//!     fake.set_online(r.id, true)?;
//! }
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

#![recursion_limit = "256"]

mod accounting;
mod actions;
mod api_error;
mod auth;
mod body;
mod control;
mod deliveries;
mod faults;
mod jit;
mod model;
mod routes;
mod server;
mod util;
mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use accounting::{Counters, LoggedRequest};
pub use actions::{ScaleSet, ScaleSetSession, ServiceBom, ServiceSettings, Statistics};
pub use auth::{AppSpec, InstallationSpec, TokenSpec, default_permissions};
pub use faults::{DROP_CONNECTION, Fault, SecondaryLimit};
pub use jit::{JitDecodeError, JitRunnerInfo, decode_jit_config};
pub use model::{
    Job, JobStatus, Label, LabelType, Runner, RunnerGroup, RunnerStatus, Scope, Visibility,
    is_standard_label,
};
pub use webhook::{DROPPED, WebhookConfig, WebhookDelivery, signature_256};

use api_error::ApiError;
use server::{Shared, State};

/// The runner release the downloads endpoint serves until
/// [`FakeGitHub::set_runner_version`] names another.
pub const DEFAULT_RUNNER_VERSION: &str = "2.330.0";

/// How the fake starts. `Config::default()` listens on a free loopback port
/// with no accounts, no credentials and GitHub's defaults for everything else.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind (default `127.0.0.1:0`, a free port).
    pub listen: SocketAddr,
    pub tokens: Vec<TokenSpec>,
    pub apps: Vec<AppSpec>,
    pub enterprises: Vec<String>,
    pub orgs: Vec<String>,
    /// `(owner, name)`.
    pub repos: Vec<(String, String)>,
    /// `(enterprise, org)`: the organization belongs to the enterprise.
    pub enterprise_orgs: Vec<(String, String)>,
    pub webhook: Option<WebhookConfig>,
    /// Primary rate limit per credential per window (GitHub: 5000/hour).
    pub rate_limit: u32,
    pub rate_limit_window: Duration,
    /// Status for an exhausted primary limit: 403 (GitHub's usual) or 429.
    pub rate_limit_status: u16,
    /// Chance (0..1) that any API request fails with `error_status`.
    pub error_rate: f64,
    pub error_status: u16,
    /// Added to every API request.
    pub latency: Duration,
    /// JIT runners that never come online are removed after this (GitHub: a day).
    pub jit_offline_expiry: Duration,
    /// Lifetime of installation tokens (GitHub: an hour).
    pub app_token_ttl: Duration,
    /// Requests kept in the request log (oldest dropped first).
    pub request_log_capacity: usize,
    /// The Actions service of runner scale sets: modes and timings.
    pub actions: ServiceSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: vec![],
            apps: vec![],
            enterprises: vec![],
            orgs: vec![],
            repos: vec![],
            enterprise_orgs: vec![],
            webhook: None,
            rate_limit: 5000,
            rate_limit_window: Duration::from_secs(3600),
            rate_limit_status: 403,
            error_rate: 0.0,
            error_status: 500,
            latency: Duration::ZERO,
            jit_offline_expiry: Duration::from_secs(24 * 3600),
            app_token_ttl: Duration::from_secs(3600),
            request_log_capacity: 100_000,
            actions: ServiceSettings::default(),
        }
    }
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

impl From<ApiError> for FakeError {
    fn from(e: ApiError) -> Self {
        match e.status {
            404 => FakeError::NotFound(e.message),
            409 => FakeError::Conflict(e.message),
            _ => FakeError::Invalid(e.message),
        }
    }
}

/// A primary rate-limit budget as the fake holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateLimitStatus {
    pub limit: u32,
    pub used: u32,
    pub remaining: u32,
    /// Unix seconds.
    pub reset: u64,
}

struct Tasks {
    shutdown: watch::Sender<bool>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

/// A running fake. Cheap to clone; every clone controls the same fake.
#[derive(Clone)]
pub struct FakeGitHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitHub")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeGitHub {
    /// Binds, serves, and returns the handle. Must run inside a Tokio runtime.
    pub async fn start(config: Config) -> Result<Self, FakeError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| FakeError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| FakeError::Bind(config.listen, e))?;
        let (hook_tx, hook_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut model = model::Model::new(
            model::Settings {
                jit_offline_expiry: config.jit_offline_expiry,
                app_token_ttl: config.app_token_ttl,
                runner_version: DEFAULT_RUNNER_VERSION.to_string(),
            },
            config.actions.clone(),
        );
        model.webhook = Some(hook_tx);
        model.actions.base_url = format!("http://{addr}");
        let hooks = Arc::new(webhook::Webhooks {
            config: Mutex::new(config.webhook.clone()),
            ..Default::default()
        });
        let state = State {
            model,
            auth: auth::Auth::default(),
            limits: faults::Limits {
                default_limit: config.rate_limit,
                window: config.rate_limit_window,
                status: config.rate_limit_status,
                budgets: Default::default(),
            },
            faults: faults::Faults {
                error_rate: config.error_rate,
                error_status: config.error_status,
                latency: config.latency,
                ..Default::default()
            },
            acct: accounting::Accounting::new(config.request_log_capacity),
            hooks: hooks.clone(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            unavailable: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            base_url: format!("http://{addr}"),
            hooks: hooks.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let fake = FakeGitHub {
            shared: shared.clone(),
            addr,
            tasks: Arc::new(Tasks {
                shutdown,
                handles: Mutex::new(Vec::new()),
                stopped: AtomicBool::new(false),
            }),
        };
        for t in &config.tokens {
            fake.add_token_spec(t.clone());
        }
        for a in &config.apps {
            fake.add_app(a.clone())?;
        }
        for e in &config.enterprises {
            fake.add_enterprise(e);
        }
        for o in &config.orgs {
            fake.add_org(o);
        }
        for (e, o) in &config.enterprise_orgs {
            fake.add_org_to_enterprise(e, o);
        }
        for (o, r) in &config.repos {
            fake.add_repo(o, r);
        }

        let app = axum::Router::new()
            .nest("/_fake", control::router().with_state(fake.clone()))
            .fallback(server::api)
            .with_state(shared.clone());
        let mut rx = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
        let sweeper = {
            let shared = shared.clone();
            let mut rx = shutdown_rx.clone();
            tokio::spawn(async move {
                loop {
                    let expiry = shared.lock().model.settings.jit_offline_expiry;
                    let tick =
                        (expiry / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
                    tokio::select! {
                        _ = tokio::time::sleep(tick) => {}
                        _ = rx.wait_for(|s| *s) => break,
                    }
                    shared.lock().model.sweep(Instant::now());
                }
            })
        };
        let actions_clock = actions::spawn_clock(shared.clone(), shutdown_rx.clone());
        let sender = tokio::spawn(webhook::run(hooks, hook_rx, shutdown_rx));
        fake.tasks
            .handles
            .lock()
            .expect("lock")
            .extend([server, sweeper, actions_clock, sender]);
        Ok(fake)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — the API root, github.com style.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/api/v3` — the API root, GHES style.
    pub fn ghes_url(&self) -> String {
        format!("{}/api/v3", self.shared.base_url)
    }

    /// Stops serving and ends the background tasks.
    pub async fn shutdown(&self) {
        if self.tasks.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.tasks.shutdown.send(true);
        let handles: Vec<_> = std::mem::take(&mut *self.tasks.handles.lock().expect("lock"));
        for h in handles {
            // Keep-alive connections may hold graceful shutdown open: bound it.
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), h)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }

    // ----- accounts and credentials --------------------------------------

    /// Adds a classic token with its OAuth scopes (`admin:org`, `repo`,
    /// `manage_runners:enterprise`, ...). Returns its credential key.
    pub fn add_token(&self, token: &str, scopes: &[&str]) -> String {
        self.add_token_spec(TokenSpec::new(token, scopes))
    }

    pub fn add_token_spec(&self, spec: TokenSpec) -> String {
        let key = auth::token_key(&spec);
        self.lock().auth.add_token(&spec);
        key
    }

    /// The key a classic token is counted and rate limited under.
    pub fn token_key(&self, token: &str) -> String {
        self.lock()
            .auth
            .tokens
            .get(token)
            .map(|t| t.key.clone())
            .unwrap_or_else(|| format!("token:{}", util::fingerprint(token)))
    }

    /// Adds a GitHub App (its key may be the public key or the private key PEM).
    pub fn add_app(&self, spec: AppSpec) -> Result<(), FakeError> {
        self.lock().auth.add_app(&spec).map_err(FakeError::Invalid)
    }

    pub fn add_enterprise(&self, slug: &str) -> u64 {
        self.lock().model.add_enterprise(slug)
    }

    /// Adds an organization; returns its id.
    pub fn add_org(&self, login: &str) -> u64 {
        self.lock().model.add_org(login)
    }

    /// Makes `org` part of `enterprise` (enterprise runners can then take
    /// its jobs). Creates both if needed.
    pub fn add_org_to_enterprise(&self, enterprise: &str, org: &str) {
        self.lock().model.link_org(enterprise, org)
    }

    /// Adds a (private) repository; returns its id. The owner may be an
    /// organization added with `add_org` or a user.
    pub fn add_repo(&self, owner: &str, name: &str) -> u64 {
        self.lock().model.add_repo(owner, name)
    }

    // ----- runners and groups ----------------------------------------------

    /// The runners of a scope, by id.
    pub fn runners(&self, scope: &Scope) -> Vec<Runner> {
        self.lock()
            .model
            .list_runners(&scope.key(), None)
            .map(|v| v.into_iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every runner of every scope, by id.
    pub fn all_runners(&self) -> Vec<Runner> {
        self.lock().model.all_runners()
    }

    pub fn runner(&self, id: u64) -> Option<Runner> {
        self.lock().model.runner_by_id(id).cloned()
    }

    /// Registers a runner as `config.sh` would (labels `self-hosted`, `Linux`,
    /// `X64` plus `labels`), offline until `set_online`.
    pub fn register_runner(
        &self,
        scope: &Scope,
        name: &str,
        labels: &[&str],
        ephemeral: bool,
    ) -> Result<Runner, FakeError> {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        Ok(self
            .lock()
            .model
            .register_runner(scope, name, &labels, ephemeral, None)?)
    }

    /// The runner process connects (`true`) or goes away (`false`). Online
    /// idle runners are given queued jobs at once.
    pub fn set_online(&self, runner_id: u64, online: bool) -> Result<Runner, FakeError> {
        Ok(self.lock().model.set_online(runner_id, online)?)
    }

    /// The next `lists` runner-list answers of its scope omit the runner, as
    /// a paged list does when the runner shifts pages while it is read. A
    /// direct `GET` of the runner still finds it.
    pub fn hide_from_lists(&self, runner_id: u64, lists: u32) {
        let mut state = self.lock();
        state.model.hidden_from_lists.insert(runner_id, lists);
    }

    /// How many more list answers omit the runner.
    pub fn hidden_from_lists(&self, runner_id: u64) -> u32 {
        let state = self.lock();
        state
            .model
            .hidden_from_lists
            .get(&runner_id)
            .copied()
            .unwrap_or(0)
    }

    /// The runner removes itself (as `config.sh remove` would).
    pub fn remove_runner(&self, runner_id: u64) -> Result<Runner, FakeError> {
        self.lock()
            .model
            .remove_runner(runner_id)
            .ok_or_else(|| FakeError::NotFound(format!("runner {runner_id}")))
    }

    /// Removes JIT runners that never came online within the expiry now,
    /// instead of waiting for the background sweep. Returns their ids.
    pub fn sweep_expired_runners(&self) -> Vec<u64> {
        self.lock().model.sweep(Instant::now())
    }

    /// Runner groups of an organization or enterprise.
    pub fn groups(&self, scope: &Scope) -> Vec<RunnerGroup> {
        self.lock()
            .model
            .groups(&scope.key())
            .map(|v| v.into_iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates a runner group visible to all repositories (organizations).
    pub fn create_group(&self, scope: &Scope, name: &str) -> Result<RunnerGroup, FakeError> {
        Ok(self.lock().model.create_group(
            &scope.key(),
            name,
            None,
            &[],
            &[],
            false,
            false,
            vec![],
            None,
        )?)
    }

    // ----- jobs ------------------------------------------------------------

    /// Queues a job of repository `owner/name` that needs all of `labels`.
    /// It goes at once to an idle online runner whose labels include them,
    /// or waits for one.
    pub fn queue_job(&self, repository: &str, labels: &[&str]) -> Result<u64, FakeError> {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        Ok(self.lock().model.queue_job(repository, &labels, None)?)
    }

    /// Completes a job with `success` (a queued job is cancelled). Its
    /// runner is freed, or removed if ephemeral (every JIT runner is).
    pub fn finish_job(&self, job_id: u64) -> Result<Job, FakeError> {
        self.finish_job_with(job_id, "success")
    }

    pub fn finish_job_with(&self, job_id: u64, conclusion: &str) -> Result<Job, FakeError> {
        Ok(self.lock().model.finish_job(job_id, conclusion)?)
    }

    /// Names of the runners that ever came online, removed ones included.
    pub fn runners_came_online(&self) -> std::collections::HashSet<String> {
        self.lock().model.came_online.clone()
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.lock().model.jobs.values().cloned().collect()
    }

    pub fn job(&self, job_id: u64) -> Option<Job> {
        self.lock().model.jobs.get(&job_id).cloned()
    }

    // ----- failures ----------------------------------------------------------

    /// While `true`, every API request (not `/_fake`) answers 503.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.unavailable.store(unavailable, Ordering::SeqCst);
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.lock().faults.faults.push(fault);
    }

    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults.faults.clear();
        st.faults.error_rate = 0.0;
    }

    /// Every API request fails with `status` with probability `rate`.
    pub fn set_error_rate(&self, rate: f64, status: u16) {
        let mut st = self.lock();
        st.faults.error_rate = rate.clamp(0.0, 1.0);
        st.faults.error_status = status;
    }

    /// Latency added to every API request.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().faults.latency = latency;
    }

    /// Latency added to the endpoints `pattern` matches (on top of the global one).
    pub fn set_endpoint_latency(&self, pattern: &str, latency: Duration) {
        let mut st = self.lock();
        st.faults.endpoint_latency.retain(|(p, _)| p != pattern);
        if !latency.is_zero() {
            st.faults
                .endpoint_latency
                .push((pattern.to_string(), latency));
        }
    }

    /// Uses up the primary rate limit of a credential key until its reset.
    pub fn exhaust_rate_limit(&self, credential: &str) {
        let mut st = self.lock();
        let limit = limit_override(&st, credential);
        let b = st
            .limits
            .budget(credential, limit, std::time::SystemTime::now());
        b.used = b.limit;
    }

    /// Gives a credential key its full budget back (a new window).
    pub fn reset_rate_limit(&self, credential: &str) {
        self.lock().limits.budgets.remove(credential);
    }

    /// Sets the default budget for credentials (existing windows keep theirs
    /// until `reset_rate_limit`).
    pub fn set_rate_limit(&self, limit: u32) {
        self.lock().limits.default_limit = limit;
    }

    pub fn rate_limit(&self, credential: &str) -> RateLimitStatus {
        let mut st = self.lock();
        let limit = limit_override(&st, credential);
        let b = st
            .limits
            .budget(credential, limit, std::time::SystemTime::now());
        RateLimitStatus {
            limit: b.limit,
            used: b.used,
            remaining: b.limit.saturating_sub(b.used),
            reset: util::unix_secs(b.reset),
        }
    }

    /// Puts a secondary rate limit in force.
    pub fn secondary_limit(&self, limit: SecondaryLimit) {
        let until = limit
            .duration_secs
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        self.lock()
            .faults
            .secondary
            .push(faults::ActiveSecondary { spec: limit, until });
    }

    pub fn clear_secondary_limits(&self) {
        self.lock().faults.secondary.clear();
    }

    // ----- accounting ----------------------------------------------------------

    pub fn counters(&self) -> Counters {
        self.lock().acct.snapshot()
    }

    /// Requests received so far whose `METHOD template` contains `endpoint`,
    /// answered or not (the log and the counters count answers).
    pub fn received(&self, endpoint: &str) -> u64 {
        self.lock()
            .acct
            .received
            .iter()
            .filter(|((method, template), _)| format!("{method} {template}").contains(endpoint))
            .map(|(_, n)| n)
            .sum()
    }

    /// The most recent requests, oldest first (at most `request_log_capacity`).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.lock().acct.log.iter().cloned().collect()
    }

    /// Attempts to `DELETE` a busy runner so far.
    pub fn busy_delete_attempts(&self) -> u64 {
        self.lock().acct.busy_delete_attempts
    }

    /// Zeroes the counters and empties the request log.
    pub fn reset_counters(&self) {
        self.lock().acct.reset();
    }

    // ----- settings and webhooks ------------------------------------------------

    pub fn set_jit_offline_expiry(&self, expiry: Duration) {
        self.lock().model.settings.jit_offline_expiry = expiry;
    }

    pub fn set_app_token_ttl(&self, ttl: Duration) {
        self.lock().model.settings.app_token_ttl = ttl;
    }

    /// Makes `version` (`major.minor.patch`) the newest runner release, the
    /// one `GET …/actions/runners/downloads` serves to every scope.
    pub fn set_runner_version(&self, version: &str) -> Result<(), FakeError> {
        let plain = version.split('.').count() == 3
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !plain {
            return Err(FakeError::Invalid(format!(
                "runner version {version:?} is not major.minor.patch"
            )));
        }
        self.lock().model.settings.runner_version = version.to_string();
        Ok(())
    }

    /// The runner release the downloads endpoint serves.
    pub fn runner_version(&self) -> String {
        self.lock().model.settings.runner_version.clone()
    }

    pub fn set_webhook(&self, webhook: Option<WebhookConfig>) {
        *self.shared.hooks.config.lock().expect("lock") = webhook;
    }

    /// Loses each webhook delivery with chance `rate` (0 to 1): it is
    /// recorded with the error [`DROPPED`] and never sent.
    pub fn set_webhook_drop_rate(&self, rate: f64) {
        *self.shared.hooks.drop_rate.lock().expect("lock") = rate.clamp(0.0, 1.0);
    }

    /// Loses the next `n` webhook deliveries: they are never sent, and the
    /// delivery log lists them as failed (see the hook endpoints).
    pub fn drop_next_webhooks(&self, n: u32) {
        *self.shared.hooks.drop_next.lock().expect("lock") = n;
    }

    /// Webhooks sent so far (or recorded unsent when no URL is configured).
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.hooks.deliveries.lock().expect("lock").clone()
    }

    /// Waits until at least `n` webhooks were handled, or `timeout`.
    pub async fn wait_for_webhooks(&self, n: usize, timeout: Duration) -> Vec<WebhookDelivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.webhook_deliveries();
            if d.len() >= n || Instant::now() >= deadline {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn limit_override(st: &State, credential: &str) -> Option<u32> {
    st.auth
        .tokens
        .values()
        .find(|t| t.key == credential)
        .and_then(|t| t.rate_limit)
}
