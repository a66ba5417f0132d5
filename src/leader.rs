//! Leader election through a `coordination.k8s.io/v1` Lease, following
//! client-go's `leaderelection` package: the same default timings (15 s lease,
//! 10 s renew deadline, 2 s retry period), expiry judged by this process's own
//! clock from when it last saw the Lease change (never by comparing clocks
//! across machines), optimistic concurrency through the Lease's
//! resourceVersion, and an empty holder on release so a successor takes over
//! at once. It needs `get`, `create` and `update` on Leases, nothing else.
//!
//! A [`Fence`] tells the rest of the process whether it may still act: only
//! while less than the renew deadline has passed since the start of its last
//! successful renewal, judged by the monotonic clock. A process that was
//! paused (SIGSTOP, a long stall) therefore knows on resuming that its claim
//! is stale before any reply to it arrives. [`FenceLayer`] applies the fence
//! to every Kubernetes write of a client; the GitHub client checks it before
//! every write too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::Rng;
use tracing::{debug, info, warn};

/// Where the Lease lives, who we are, and client-go's timings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per process (the pod name in a cluster).
    pub identity: String,
    /// How long a holder's claim is honoured after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failing renewal before it steps down.
    pub renew_deadline: Duration,
    /// The pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseConfig {
    /// Refuses timings under which two replicas could act at once: the
    /// leader must give up (renew deadline) before a standby may take over
    /// (lease duration), and retry more than once within the deadline.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be positive and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    /// The bound of one reconcile: half the lease duration, so work started
    /// just before a lost renewal is over long before a successor may act.
    pub fn reconcile_timeout(&self) -> Duration {
        self.lease_duration / 2
    }
}

/// Whether this process may still act as the leader; cheap to clone and to
/// ask. Never true before the first successful acquisition, false for good
/// once [`Fence::lose`] was called.
#[derive(Clone, Debug)]
pub struct Fence {
    inner: Arc<FenceState>,
}

#[derive(Debug)]
struct FenceState {
    origin: Instant,
    /// Milliseconds after `origin` at which the claim ends; 0 = none yet.
    valid_until_ms: AtomicU64,
    lost: AtomicBool,
    valid_for: Duration,
}

impl Fence {
    /// A fence whose claim lasts `valid_for` after each renewal.
    pub fn new(valid_for: Duration) -> Fence {
        Fence {
            inner: Arc::new(FenceState {
                origin: Instant::now(),
                valid_until_ms: AtomicU64::new(0),
                lost: AtomicBool::new(false),
                valid_for,
            }),
        }
    }

    /// Records a renewal whose request was sent at `sent`: the claim counts
    /// from then, not from the answer, as the Lease's renew time does.
    pub fn renewed(&self, sent: Instant) {
        let until = sent.saturating_duration_since(self.inner.origin) + self.inner.valid_for;
        let ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner.valid_until_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// Ends the claim for good.
    pub fn lose(&self) {
        self.inner.lost.store(true, Ordering::SeqCst);
    }

    /// True while the last renewal is fresh and leadership was not lost.
    pub fn may_act(&self) -> bool {
        if self.inner.lost.load(Ordering::SeqCst) {
            return false;
        }
        let until = self.inner.valid_until_ms.load(Ordering::SeqCst);
        let now = u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        until != 0 && now < until
    }
}

/// The error a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("this replica no longer holds the leader Lease: write refused")]
pub struct NotLeading;

/// A tower layer refusing every Kubernetes write (anything but GET, HEAD and
/// OPTIONS) once the [`Fence`] says this process may no longer act. Reads,
/// watches included, pass.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> tower::Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<axum::http::Request<B>> for Fenced<S>
where
    S: tower::Service<axum::http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let read = matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        );
        if !read && !self.fence.may_act() {
            return Box::pin(std::future::ready(Err(Box::new(NotLeading) as BoxError)));
        }
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map_err(Into::into) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leadership lost: the Lease was not renewed within {0:?}")]
    RenewDeadlineExceeded(Duration),
    #[error("leadership lost: {0} holds the Lease")]
    TakenOver(String),
}

impl Error {
    /// A bounded name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::RenewDeadlineExceeded(_) => "renew_deadline_exceeded",
            Error::TakenOver(_) => "taken_over",
        }
    }
}

/// What a holder last wrote; a change to it restarts the expiry clock.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: String,
    renew_time: Option<Timestamp>,
    transitions: i32,
    duration: Duration,
}

impl Record {
    fn from_spec(spec: &LeaseSpec, default_duration: Duration) -> Record {
        Record {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(default_duration),
        }
    }
}

/// Outcome of one attempt to acquire or renew.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease now.
    Held,
    /// Someone else holds an unexpired Lease.
    HeldBy(String),
    /// Another candidate wrote the Lease between our read and our write.
    Conflict,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<(Record, Instant)>,
    fence: Fence,
    /// When the request of the last successful acquisition or renewal was sent.
    last_renewal: Option<Instant>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            fence: Fence::new(config.renew_deadline),
            config,
            observed: None,
            last_renewal: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The fence the rest of the process checks before acting: valid for the
    /// renew deadline after each successful renewal.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    fn held_since(&mut self, sent: Instant) -> Attempt {
        self.last_renewal = Some(sent);
        self.fence.renewed(sent);
        Attempt::Held
    }

    fn observe(&mut self, record: Record) {
        let changed = self.observed.as_ref().is_none_or(|(r, _)| *r != record);
        if changed {
            self.observed = Some((record, Instant::now()));
        }
    }

    fn spec(&self, now: Timestamp, acquire_time: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquire_time)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: create the Lease, renew our claim, or take over an
    /// expired or released one.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let sent = Instant::now();
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe_written(&created);
                    Ok(self.held_since(sent))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = Record::from_spec(&spec, self.config.lease_duration);
        self.observe(record.clone());
        let ours = record.holder == self.config.identity;
        if !ours && !record.holder.is_empty() {
            let since_change = self.observed.as_ref().map(|(_, at)| at.elapsed());
            if since_change.is_some_and(|d| d < record.duration) {
                return Ok(Attempt::HeldBy(record.holder));
            }
        }
        let (acquire_time, transitions) = if ours {
            (
                spec.acquire_time.as_ref().map(|t| t.0).unwrap_or(now),
                record.transitions,
            )
        } else {
            (now, record.transitions.saturating_add(1))
        };
        lease.spec = Some(self.spec(now, acquire_time, transitions));
        // replace carries the resourceVersion we read: a concurrent writer makes it fail with 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe_written(&written);
                Ok(self.held_since(sent))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    fn observe_written(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some((
            Record::from_spec(&spec, self.config.lease_duration),
            Instant::now(),
        ));
    }

    /// Waits until this process holds the Lease, retrying every retry period
    /// with client-go's jitter (up to 1.2 extra periods).
    pub async fn acquire(&mut self) {
        let mut last_holder = String::new();
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    info!(lease = %self.config.name, namespace = %self.config.namespace, identity = %self.config.identity, "acquired the leader Lease");
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if holder != last_holder {
                        info!(leader = %holder, "another replica leads; standing by");
                        last_holder = holder;
                    }
                }
                Ok(Attempt::Conflict) => debug!("lost a race for the Lease; retrying"),
                Err(e) => warn!(error = %e, "cannot read or write the leader Lease"),
            }
            let jitter = rand::rng().random_range(0.0..1.2);
            tokio::time::sleep(self.config.retry_period.mul_f64(1.0 + jitter)).await;
        }
    }

    /// Renews the Lease every retry period until `stop` resolves (`Ok`) or
    /// leadership is lost (`Err`): another holder took the Lease, or no
    /// renewal succeeded within the renew deadline.
    ///
    /// The deadline counts from when the last successful renewal was sent and
    /// is checked before every attempt, so a process resumed after a pause
    /// longer than the deadline steps down without asking the API server, and
    /// an unreachable API server costs at most the deadline. The [`Fence`]
    /// is closed before this returns an error.
    pub async fn hold(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), Error> {
        let held = self.renew_until(stop).await;
        if held.is_err() {
            self.fence.lose();
        }
        held
    }

    async fn renew_until(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(stop);
        let deadline = self.config.renew_deadline;
        let mut last_renewal = self.last_renewal.unwrap_or_else(Instant::now);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            if last_renewal.elapsed() >= deadline {
                return Err(Error::RenewDeadlineExceeded(deadline));
            }
            let remaining = deadline.saturating_sub(last_renewal.elapsed());
            match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => {
                    last_renewal = self.last_renewal.unwrap_or_else(Instant::now);
                }
                Ok(Ok(Attempt::HeldBy(holder))) => return Err(Error::TakenOver(holder)),
                Ok(Ok(Attempt::Conflict)) => debug!("the Lease changed under a renewal; retrying"),
                Ok(Err(e)) => warn!(error = %e, "cannot renew the leader Lease"),
                Err(_) => warn!("renewing the leader Lease timed out"),
            }
            if last_renewal.elapsed() >= deadline {
                return Err(Error::RenewDeadlineExceeded(deadline));
            }
        }
    }

    /// Gives the Lease up (when we hold it) so a successor need not wait for
    /// it to expire: an empty holder and a one-second duration, as client-go does.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = Timestamp::now();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(MicroTime(now));
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.config.name, "released the leader Lease"),
            Err(e) => warn!(error = %e, "could not release the leader Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_opens_on_a_renewal_and_closes_after_its_validity_or_a_loss() {
        let fence = Fence::new(Duration::from_millis(200));
        assert!(!fence.may_act(), "no claim before the first renewal");
        fence.renewed(Instant::now());
        assert!(fence.may_act());
        std::thread::sleep(Duration::from_millis(250));
        assert!(!fence.may_act(), "a stale renewal is no claim");
        fence.renewed(Instant::now());
        assert!(fence.may_act());
        fence.lose();
        fence.renewed(Instant::now());
        assert!(!fence.may_act(), "a lost claim stays lost");
    }

    #[test]
    fn the_claim_counts_from_when_the_renewal_was_sent() {
        let fence = Fence::new(Duration::from_millis(300));
        let sent = Instant::now();
        std::thread::sleep(Duration::from_millis(350));
        fence.renewed(sent);
        assert!(!fence.may_act());
    }

    #[test]
    fn timings_under_which_two_replicas_could_act_are_refused() {
        let config = LeaseConfig::new("ns", "lease", "me");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.reconcile_timeout(), Duration::from_millis(7500));
        let late = LeaseConfig {
            renew_deadline: Duration::from_secs(15),
            ..config.clone()
        };
        assert!(late.validate().unwrap_err().contains("renew deadline"));
        let slow = LeaseConfig {
            retry_period: Duration::from_secs(10),
            ..config
        };
        assert!(slow.validate().unwrap_err().contains("retry period"));
    }

    #[tokio::test]
    async fn the_fence_layer_refuses_writes_and_lets_reads_pass() {
        use tower::{Layer, Service};
        let fence = Fence::new(Duration::from_secs(60));
        let inner = tower::service_fn(|_: axum::http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(()))
        });
        let mut service = FenceLayer(fence.clone()).layer(inner);
        let request = |method: axum::http::Method| {
            axum::http::Request::builder()
                .method(method)
                .body(())
                .unwrap()
        };
        assert!(
            service
                .call(request(axum::http::Method::POST))
                .await
                .is_err()
        );
        assert!(service.call(request(axum::http::Method::GET)).await.is_ok());
        fence.renewed(Instant::now());
        assert!(
            service
                .call(request(axum::http::Method::PATCH))
                .await
                .is_ok()
        );
        fence.lose();
        let refused = service.call(request(axum::http::Method::DELETE)).await;
        assert!(refused.unwrap_err().to_string().contains("no longer holds"));
        assert!(service.call(request(axum::http::Method::GET)).await.is_ok());
    }
}
