//! The listener of a scale-set pool: one message session with GitHub's
//! Actions service, held by the leader only, long-polled for as long as the
//! pool lives.
//!
//! Each message is handled in the order clients rely on: its statistics are
//! recorded, it is acknowledged, the jobs offered (`JobAvailable`, GHES) are
//! acquired, started jobs mark their runners busy and completed ones clear
//! them; then the pool is reconciled with the new figures. A queue token is
//! refreshed when the service answers 401, a session the service lost is
//! opened again, and a session still open from an earlier leader (recorded
//! in the pool's status) is closed first, so a restart never waits out the
//! service's session timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::pod::cached::CachedPod;
use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::scale_set::Observed;
use crate::RunnerPool;
use crate::crd::ScaleSetStatus;
use crate::inventory::ScopeInventory;
use crate::kit::retry::{backoff, jittered};
use crate::metrics::Metrics;
use crate::metrics::jobs::{Job, Source};
use crate::mutex::lock;
use crate::pod::job;
use crate::scaleset::{ActionsService, JobMessage, Message, ScaleSetError, Session};

/// The field manager of `status.scaleSet`: the listener and the reconcile
/// that creates the scale set write it; the rest of the status is the
/// reconcile's own.
pub const STATUS_MANAGER: &str = "runnerpool-operator/scale-set";

/// Everything a pool's listener works with.
pub struct Listener {
    pub service: ActionsService,
    pub observed: Arc<Mutex<Observed>>,
    pub client: kube::Client,
    pub pool: Arc<RunnerPool>,
    /// Sent the pool whenever its figures changed: it is reconciled at once.
    pub wake: UnboundedSender<ObjectRef<RunnerPool>>,
    pub pods: Store<CachedPod>,
    /// The scope's shared view of GitHub's runners: a runner a job started
    /// on is busy there at once, until the next list says so itself.
    pub inventory: Arc<ScopeInventory>,
    pub metrics: Arc<Metrics>,
    pub recorder: crate::kit::events::Recorder,
    /// `X-ScaleSetMaxCapacity`: the pool's maxRunners.
    pub max_capacity: u32,
    /// The session owner the service shows (this replica's name).
    pub owner: String,
    /// A session an earlier leader recorded in the pool's status.
    pub stale_session: Option<String>,
}

impl Listener {
    /// Runs until aborted (the pool is released, or this replica stops
    /// leading).
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.open().await {
                Ok(session) => {
                    failures = 0;
                    self.session_up(&session).await;
                    // Closed before the next one opens, in case the service
                    // still holds it (a poll that kept failing).
                    self.stale_session = Some(session.session_id.clone());
                    let ended = self.poll(session).await;
                    self.session_down(&ended).await;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        self.announce(
                            EventType::Warning,
                            "ScaleSetSessionFailed",
                            format!("cannot open a message session with the scale set: {e}"),
                        )
                        .await;
                    }
                    warn!(pool = %self.pool.name_any(), error = %e, "cannot open a scale-set session; retrying");
                    let wait = match e {
                        // Another session is open: an earlier leader's (closed
                        // at once when its id was recorded) or a foreign one,
                        // which the service times out.
                        ScaleSetError::SessionConflict => Duration::from_secs(5),
                        _ => jittered(backoff(failures)),
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn scale_set_id(&self) -> u64 {
        lock(&self.observed).scale_set_id
    }

    /// Opens a session, closing first the one an earlier leader left open.
    async fn open(&mut self) -> Result<Session, ScaleSetError> {
        let id = self.scale_set_id();
        if let Some(stale) = self.stale_session.take() {
            match self.service.delete_session(id, &stale).await {
                Ok(()) => {
                    info!(pool = %self.pool.name_any(), "closed the session an earlier leader left open")
                }
                Err(e) => {
                    debug!(pool = %self.pool.name_any(), error = %e, "could not close an earlier session")
                }
            }
        }
        self.service.create_session(id, &self.owner).await
    }

    async fn session_up(&self, session: &Session) {
        let was_lost = {
            let mut o = lock(&self.observed);
            let was_lost = o.session_id.is_some() && !o.healthy;
            o.session_id = Some(session.session_id.clone());
            if session.statistics.is_some() {
                o.statistics = session.statistics;
            }
            o.healthy = true;
            was_lost
        };
        info!(pool = %self.pool.name_any(), "scale-set session open");
        if was_lost {
            self.announce(
                EventType::Normal,
                "ScaleSetSessionRegained",
                "message session with the scale set open again".to_string(),
            )
            .await;
        }
        self.changed().await;
    }

    async fn session_down(&self, why: &ScaleSetError) {
        lock(&self.observed).healthy = false;
        self.set_metrics();
        self.announce(
            EventType::Warning,
            "ScaleSetSessionLost",
            format!("message session with the scale set lost ({why}); opening a new one"),
        )
        .await;
    }

    /// Long-polls the session until it is lost; returns why.
    async fn poll(&self, mut session: Session) -> ScaleSetError {
        let mut last: Option<u64> = None;
        let mut failures = 0u32;
        loop {
            match self
                .service
                .get_message(&session, last, self.max_capacity)
                .await
            {
                Ok(None) => failures = 0,
                Ok(Some(message)) => {
                    failures = 0;
                    last = Some(message.message_id);
                    self.handle(&session, message).await;
                }
                Err(ScaleSetError::QueueTokenExpired) => {
                    match self.service.refresh_session(&session).await {
                        Ok(fresh) => session = fresh,
                        Err(e) => return e,
                    }
                }
                Err(ScaleSetError::SessionNotFound) => return ScaleSetError::SessionNotFound,
                Err(e) => {
                    failures += 1;
                    debug!(pool = %self.pool.name_any(), error = %e, "polling the scale set failed");
                    if failures >= 5 {
                        return e;
                    }
                    tokio::time::sleep(jittered(backoff(failures))).await;
                }
            }
        }
    }

    /// One message, in the order clients rely on.
    async fn handle(&self, session: &Session, message: Message) {
        if let Some(statistics) = message.statistics {
            lock(&self.observed).statistics = Some(statistics);
        }
        if let Err(e) = self
            .service
            .delete_message(session, message.message_id)
            .await
        {
            // Delivered again: every job message is idempotent here.
            debug!(pool = %self.pool.name_any(), error = %e, "could not acknowledge a message");
        }
        let offered: Vec<i64> = message
            .jobs
            .iter()
            .filter_map(|j| match j {
                JobMessage::Available { request_id, .. } => Some(*request_id),
                _ => None,
            })
            .collect();
        if !offered.is_empty()
            && let Err(e) = self.service.acquire_jobs(session, &offered).await
        {
            warn!(pool = %self.pool.name_any(), error = %e, jobs = offered.len(), "could not acquire offered jobs; the service offers them again");
        }
        for j in &message.jobs {
            self.count_job(j);
            match j {
                JobMessage::Started {
                    runner_id,
                    runner_name,
                    job,
                    ..
                } => {
                    lock(&self.observed).busy.insert(*runner_id);
                    self.inventory.busy(*runner_id);
                    let annotations = job::started_annotations(job);
                    job::record_on_pod(
                        &self.client,
                        &self.pods,
                        *runner_id,
                        Some(runner_name.as_str()).filter(|n| !n.is_empty()),
                        annotations,
                    );
                }
                JobMessage::Completed {
                    runner_id: Some(runner_id),
                    runner_name,
                    result,
                    job,
                    ..
                } => {
                    // Still counted busy until its pod is gone: GitHub
                    // removes the ephemeral runner and its process exits,
                    // so scaling in never picks (and deletes on GitHub) a
                    // runner that is already going.
                    let annotations = job::completed_annotations(job, result);
                    job::record_on_pod(
                        &self.client,
                        &self.pods,
                        *runner_id,
                        Some(runner_name.as_str()).filter(|n| !n.is_empty()),
                        annotations,
                    );
                }
                _ => {}
            }
        }
        self.changed().await;
    }

    /// Counts a started or completed job in the pool's job metrics. A job
    /// no runner took is not counted: the service ends a job it offers again
    /// the same way (`canceled`, no runner).
    fn count_job(&self, message: &JobMessage) {
        let (namespace, name) = (
            self.pool.namespace().unwrap_or_default(),
            self.pool.name_any(),
        );
        let info = message.job();
        let job = Job {
            source: Source::ScaleSet,
            id: &info.job_id,
            namespace: &namespace,
            pool: &name,
            repository: &info.repository,
        };
        match message {
            JobMessage::Started { .. } => self.metrics.jobs.started(
                &job,
                info.queue_time,
                info.runner_assign_time.unwrap_or_else(Timestamp::now),
            ),
            JobMessage::Completed {
                runner_id: Some(_),
                result,
                ..
            } => self.metrics.jobs.completed(
                &job,
                Some(result),
                info.runner_assign_time.zip(info.finish_time),
            ),
            _ => {}
        }
    }

    /// The figures changed: status, metrics and an immediate reconcile.
    async fn changed(&self) {
        let status = lock(&self.observed).status();
        if let Err(e) = write_status(&self.client, &self.pool, &status).await {
            debug!(pool = %self.pool.name_any(), error = %e, "could not record the scale set in status");
        }
        self.set_metrics();
        let _ = self
            .wake
            .unbounded_send(ObjectRef::from_obj(self.pool.as_ref()));
    }

    fn set_metrics(&self) {
        let o = lock(&self.observed).clone();
        let (namespace, name) = (
            self.pool.namespace().unwrap_or_default(),
            self.pool.name_any(),
        );
        self.metrics
            .set_scale_set(&namespace, &name, o.statistics.as_ref(), o.healthy);
    }

    async fn announce(&self, type_: EventType, reason: &str, note: String) {
        crate::kit::events::publish(
            &self.recorder,
            self.pool.as_ref(),
            type_,
            reason,
            "Listen",
            note,
        )
        .await;
    }
}

#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ScaleSetPatch<'a> {
    api_version: String,
    kind: String,
    status: ScaleSetOnly<'a>,
}

#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ScaleSetOnly<'a> {
    scale_set: &'a ScaleSetStatus,
}

/// Writes `status.scaleSet` of `pool` (with its own field manager).
pub async fn write_status(
    client: &kube::Client,
    pool: &RunnerPool,
    status: &ScaleSetStatus,
) -> Result<(), kube::Error> {
    let api: Api<RunnerPool> =
        Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
    let patch = ScaleSetPatch {
        api_version: RunnerPool::api_version(&()).into_owned(),
        kind: RunnerPool::kind(&()).into_owned(),
        status: ScaleSetOnly { scale_set: status },
    };
    api.patch_status(
        &pool.name_any(),
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}
