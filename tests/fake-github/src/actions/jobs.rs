//! Jobs as a scale set sees them. A job whose only label is the name of a
//! scale set the repository can reach goes to that scale set: assigned at
//! once (github.com) or offered until acquired (GHES acquire mode), started
//! on an idle online runner of the scale set, re-offered when no runner
//! takes it in time, and completed. Every step is a job message for the
//! scale set's session; statistics are counted from this state.

use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::{MAX_REASSIGNMENTS, Statistics, tokens};
use crate::model::{Model, ScopeKey};
use crate::util;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Offered (`JobAvailable`), not acquired yet (acquire mode).
    Available,
    /// Assigned to the scale set (`JobAssigned`), waiting for a runner.
    Assigned,
    /// On one of the scale set's runners (`JobStarted`).
    Running,
}

#[derive(Clone, Debug)]
pub(crate) struct ScaleSetJob {
    pub scale_set_id: u64,
    pub request_id: u64,
    pub state: JobState,
    /// When it was (last) assigned: the reassignment clock.
    assigned_at: Option<Instant>,
    reassigned: u32,
    scale_set_assign_time: Option<SystemTime>,
}

impl ScaleSetJob {
    pub fn started(&self) -> bool {
        self.state == JobState::Running
    }
}

/// Go's zero time: what the service sends for a moment not reached yet.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(t: Option<SystemTime>) -> String {
    t.map(util::rfc3339)
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

/// The `result` of `JobCompleted` for a job's conclusion.
fn result_of(conclusion: Option<&str>) -> String {
    match conclusion.unwrap_or("canceled") {
        "success" => "succeeded".into(),
        "failure" => "failed".into(),
        "cancelled" | "canceled" => "canceled".into(),
        other => other.to_string(),
    }
}

impl Model {
    /// The scale set job `job_id` goes to: its only label names a scale set
    /// the repository may use (repository scale sets first, then the
    /// owner organization's, then its enterprise's).
    pub(crate) fn scale_set_for_job(&self, job_id: u64) -> Option<u64> {
        let job = self.jobs.get(&job_id)?;
        let [name] = job.labels.as_slice() else {
            return None;
        };
        let repo = self.repos.get(&job.repository.to_lowercase())?;
        let owner = repo.owner.to_lowercase();
        let repo_key = ScopeKey::Repo(format!("{owner}/{}", repo.name.to_lowercase()));
        let enterprise = self.orgs.get(&owner).and_then(|o| o.enterprise.clone());
        let mut keys = vec![repo_key];
        if self.orgs.contains_key(&owner) {
            keys.push(ScopeKey::Org(owner.clone()));
        }
        if let Some(e) = enterprise {
            keys.push(ScopeKey::Ent(e));
        }
        for key in keys {
            let Some(s) = self
                .actions
                .scale_sets
                .values()
                .find(|s| s.scope.key() == key && s.name.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            let visible = match &key {
                ScopeKey::Repo(_) => true,
                ScopeKey::Org(_) => self
                    .group(&key, s.runner_group_id)
                    .is_ok_and(|g| self.group_visible_to(&key, g, &repo.name).unwrap_or(false)),
                ScopeKey::Ent(_) => self
                    .group(&key, s.runner_group_id)
                    .is_ok_and(|g| self.group_visible_to(&key, g, &owner).unwrap_or(false)),
            };
            if visible {
                return Some(s.id);
            }
        }
        None
    }

    /// A new job for a scale set: assigned at once, or offered in acquire mode.
    pub(crate) fn offer_to_scale_set(&mut self, job_id: u64, scale_set_id: u64) {
        let request_id = self.actions.next_request_id;
        self.actions.next_request_id += 1;
        let acquire = self.actions.settings.acquire_mode;
        let now = SystemTime::now();
        self.actions.jobs.insert(
            job_id,
            ScaleSetJob {
                scale_set_id,
                request_id,
                state: if acquire {
                    JobState::Available
                } else {
                    JobState::Assigned
                },
                assigned_at: (!acquire).then(Instant::now),
                reassigned: 0,
                scale_set_assign_time: (!acquire).then_some(now),
            },
        );
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.scale_set_id = Some(scale_set_id);
            job.runner_request_id = Some(request_id);
        }
        let kind = if acquire {
            "JobAvailable"
        } else {
            "JobAssigned"
        };
        self.post_job_message(job_id, kind);
    }

    /// `POST RSS/{id}/acquirejobs`: the offered jobs among `request_ids`
    /// become assigned; answers the ids this scale set now holds.
    pub(crate) fn acquire_jobs(&mut self, scale_set_id: u64, request_ids: &[u64]) -> Vec<u64> {
        let mut acquired = Vec::new();
        let mut newly = Vec::new();
        for (jid, j) in self.actions.jobs.iter_mut() {
            if j.scale_set_id != scale_set_id || !request_ids.contains(&j.request_id) {
                continue;
            }
            if j.state == JobState::Available {
                j.state = JobState::Assigned;
                j.assigned_at = Some(Instant::now());
                j.scale_set_assign_time = Some(SystemTime::now());
                newly.push(*jid);
            }
            acquired.push(j.request_id);
        }
        for jid in newly {
            self.post_job_message(jid, "JobAssigned");
        }
        self.assign_jobs();
        acquired
    }

    /// `GET RSS/{id}/acquirablejobs`: the jobs offered and not acquired.
    pub(crate) fn acquirable_jobs(&self, scale_set_id: u64) -> Value {
        let value: Vec<Value> = self
            .actions
            .jobs
            .iter()
            .filter(|(_, j)| j.scale_set_id == scale_set_id && j.state == JobState::Available)
            .filter_map(|(jid, _)| self.job_message(*jid, "JobAvailable"))
            .collect();
        json!({"count": value.len(), "value": value})
    }

    /// Assigned jobs start on idle online runners of their scale set,
    /// oldest job and lowest runner id first.
    pub(crate) fn start_scale_set_jobs(&mut self) {
        let waiting: Vec<(u64, u64)> = self
            .actions
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Assigned)
            .map(|(jid, j)| (*jid, j.scale_set_id))
            .collect();
        for (jid, ss) in waiting {
            let Some(key) = self.actions.scale_sets.get(&ss).map(|s| s.scope.key()) else {
                continue;
            };
            let runner = self
                .scale_set_runners(ss)
                .find(|r| r.online() && !r.busy)
                .map(|r| r.id);
            let Some(rid) = runner else { continue };
            self.start_job(jid, rid, &key);
            if let Some(j) = self.actions.jobs.get_mut(&jid) {
                j.state = JobState::Running;
            }
            self.post_job_message(jid, "JobStarted");
        }
    }

    /// The job ended (finished, failed or cancelled): `JobCompleted`.
    pub(crate) fn scale_set_job_finished(&mut self, job_id: u64) {
        if self.actions.jobs.contains_key(&job_id) {
            self.post_job_message(job_id, "JobCompleted");
            self.actions.jobs.remove(&job_id);
        }
    }

    /// Re-offers assigned jobs no runner started in time: `JobCompleted`
    /// (`canceled`) then `JobAssigned`, up to [`MAX_REASSIGNMENTS`] times,
    /// the n-th after n × `reassign_after`.
    pub(crate) fn reassign_stale_jobs(&mut self, now: Instant) {
        let Some(after) = self.actions.settings.reassign_after else {
            return;
        };
        let stale: Vec<u64> = self
            .actions
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.state == JobState::Assigned
                    && j.reassigned < MAX_REASSIGNMENTS
                    && j.assigned_at.is_some_and(|t| {
                        now.saturating_duration_since(t) >= after * (j.reassigned + 1)
                    })
            })
            .map(|(jid, _)| *jid)
            .collect();
        for jid in stale {
            if let Some(canceled) = self.job_message(jid, "JobCompleted").map(|mut m| {
                m["result"] = json!("canceled");
                m
            }) {
                self.push_message(jid, canceled);
            }
            if let Some(j) = self.actions.jobs.get_mut(&jid) {
                j.reassigned += 1;
                j.assigned_at = Some(now);
                j.scale_set_assign_time = Some(SystemTime::now());
            }
            self.post_job_message(jid, "JobAssigned");
        }
    }

    /// A scale set's statistics, counted from its jobs and runners.
    pub(crate) fn statistics(&self, scale_set_id: u64) -> Statistics {
        let mut s = Statistics::default();
        for j in self
            .actions
            .jobs
            .values()
            .filter(|j| j.scale_set_id == scale_set_id)
        {
            match j.state {
                JobState::Available => s.total_available_jobs += 1,
                JobState::Assigned => {
                    s.total_acquired_jobs += 1;
                    s.total_assigned_jobs += 1;
                }
                JobState::Running => {
                    s.total_assigned_jobs += 1;
                    s.total_running_jobs += 1;
                }
            }
        }
        for r in self.scale_set_runners(scale_set_id) {
            s.total_registered_runners += 1;
            if r.busy {
                s.total_busy_runners += 1;
            } else if r.online() {
                s.total_idle_runners += 1;
            }
        }
        s
    }

    /// The job message of `kind` for a scale-set job, as of now.
    fn job_message(&self, job_id: u64, kind: &str) -> Option<Value> {
        let sj = self.actions.jobs.get(&job_id)?;
        let job = self.jobs.get(&job_id)?;
        let (owner, repo) = job
            .repository
            .split_once('/')
            .unwrap_or(("", &job.repository));
        let mut m = json!({
            "messageType": kind,
            "runnerRequestId": sj.request_id,
            "repositoryName": repo,
            "ownerName": owner,
            "jobId": job.id.to_string(),
            "jobWorkflowRef": job.workflow_ref,
            "jobDisplayName": job.name,
            "workflowRunId": job.run_id,
            "eventName": "push",
            "requestLabels": job.labels,
            "queueTime": time(job.created_at),
            "scaleSetAssignTime": time(sj.scale_set_assign_time),
            "runnerAssignTime": time(job.started_at),
            "finishTime": time(job.completed_at),
        });
        match kind {
            "JobAvailable" => {
                let scope = &self.actions.scale_sets.get(&sj.scale_set_id)?.scope;
                m["acquireJobUrl"] = json!(format!(
                    "{}{}/{}/_apis/runtime/runnerscalesets/{}/acquirejobs",
                    self.actions.base_url,
                    super::routes::TENANT_PREFIX.trim_end_matches('/'),
                    tokens::tenant_of(scope),
                    sj.scale_set_id
                ));
            }
            "JobStarted" => {
                m["runnerId"] = json!(job.runner_id.unwrap_or(0));
                m["runnerName"] = json!(job.runner_name.clone().unwrap_or_default());
            }
            "JobCompleted" => {
                m["result"] = json!(result_of(job.conclusion.as_deref()));
                m["runnerId"] = json!(job.runner_id.unwrap_or(0));
                m["runnerName"] = json!(job.runner_name.clone().unwrap_or_default());
            }
            _ => {}
        }
        Some(m)
    }

    fn post_job_message(&mut self, job_id: u64, kind: &str) {
        if let Some(m) = self.job_message(job_id, kind) {
            self.push_message(job_id, m);
        }
    }

    /// Queues a job message for the session of the job's scale set (none
    /// open: it is lost, and the next session's statistics tell the state).
    fn push_message(&mut self, job_id: u64, message: Value) {
        let Some(ss) = self.actions.jobs.get(&job_id).map(|j| j.scale_set_id) else {
            return;
        };
        if let Some(session) = self.actions.sessions.get_mut(&ss) {
            session.pending.push(message);
        }
    }
}
