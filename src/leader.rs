//! Leader election through a `coordination.k8s.io/v1` Lease, following
//! client-go's `leaderelection` package: the same default timings (15 s lease,
//! 10 s renew deadline, 2 s retry period), expiry judged by this process's own
//! clock from when it last saw the Lease change (never by comparing clocks
//! across machines), optimistic concurrency through the Lease's
//! resourceVersion, and an empty holder on release so a successor takes over
//! at once. It needs `get`, `create` and `update` on Leases, nothing else.

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
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
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
                    Ok(Attempt::Held)
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
                Ok(Attempt::Held)
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
    pub async fn hold(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(stop);
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            let remaining = self
                .config
                .renew_deadline
                .saturating_sub(last_renewal.elapsed());
            match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => last_renewal = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => return Err(Error::TakenOver(holder)),
                Ok(Ok(Attempt::Conflict)) => debug!("the Lease changed under a renewal; retrying"),
                Ok(Err(e)) => warn!(error = %e, "cannot renew the leader Lease"),
                Err(_) => warn!("renewing the leader Lease timed out"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                return Err(Error::RenewDeadlineExceeded(self.config.renew_deadline));
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
