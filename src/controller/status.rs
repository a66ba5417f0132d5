//! The pool's status: counts and the `Ready` and `Degraded` conditions, built
//! the way Kubernetes conventions (and so `kubectl wait`, Argo CD and Flux)
//! expect: `observedGeneration`, and `lastTransitionTime` that moves only when
//! a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::plan::Counts;
use crate::crd::RunnerPoolStatus;

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";

/// Why a pool cannot do its work, as the `Degraded` condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    InvalidSpec,
    CredentialsInvalid,
    RunnerGroupNotFound,
    RateLimited,
    GitHubUnavailable,
    /// Runners fail before they come online; new ones are created with backoff.
    RunnersFailing,
    /// The API server refuses the runner pods (Pod Security, quota, admission).
    PodRejected,
}

impl Problem {
    pub fn reason(self) -> &'static str {
        match self {
            Problem::InvalidSpec => "InvalidSpec",
            Problem::CredentialsInvalid => "CredentialsInvalid",
            Problem::RunnerGroupNotFound => "RunnerGroupNotFound",
            Problem::RateLimited => "RateLimited",
            Problem::GitHubUnavailable => "GitHubUnavailable",
            Problem::RunnersFailing => "RunnersFailing",
            Problem::PodRejected => "PodRejected",
        }
    }
}

/// The status for what was observed. `previous` keeps transition times and
/// the last known counts when GitHub could not be asked.
pub fn build(
    previous: Option<&RunnerPoolStatus>,
    generation: Option<i64>,
    counts: Option<Counts>,
    runner_group_id: Option<i64>,
    problem: Option<(Problem, String)>,
    now: Timestamp,
) -> RunnerPoolStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    if let Some(c) = counts {
        status.desired_runners = c.desired as i32;
        status.pending_runners = c.pending as i32;
        status.idle_runners = c.idle as i32;
        status.busy_runners = c.busy as i32;
        status.failed_runners = c.failed as i32;
        status.queued_jobs = c.queued.min(i32::MAX as u32) as i32;
    }
    if runner_group_id.is_some() {
        status.runner_group_id = runner_group_id;
    }

    let available = status.pending_runners + status.idle_runners + status.busy_runners;
    let (ready, ready_reason, ready_message) = match (&problem, counts) {
        (Some((p, message)), _) => (false, p.reason(), message.clone()),
        (None, _) if available >= status.desired_runners => (
            true,
            "RunnersAvailable",
            format!("{available} of {} runners exist", status.desired_runners),
        ),
        (None, _) => (
            false,
            "ScalingUp",
            format!("{available} of {} runners exist", status.desired_runners),
        ),
    };
    let (degraded, degraded_reason, degraded_message) = match &problem {
        Some((p, message)) => (true, p.reason(), message.clone()),
        None => (
            false,
            "AsExpected",
            "GitHub and Kubernetes answer as expected".to_string(),
        ),
    };

    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    status.conditions = vec![
        condition(
            previous_conditions,
            READY,
            ready,
            ready_reason,
            ready_message,
            generation,
            now,
        ),
        condition(
            previous_conditions,
            DEGRADED,
            degraded,
            degraded_reason,
            degraded_message,
            generation,
            now,
        ),
    ];
    status
}

/// The status of a deleted pool that waits for its busy runners' jobs: `Ready`
/// is False with reason `WaitingForJobs`, naming how many jobs still run.
pub fn waiting_for_jobs(
    previous: Option<&RunnerPoolStatus>,
    generation: Option<i64>,
    busy: u32,
    now: Timestamp,
) -> RunnerPoolStatus {
    let counts = Counts {
        busy,
        ..Default::default()
    };
    let mut status = build(previous, generation, Some(counts), None, None, now);
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let waiting = condition(
        previous_conditions,
        READY,
        false,
        WAITING_FOR_JOBS,
        format!(
            "The pool is being deleted: waiting for {busy} running job(s) to finish before removing their runners"
        ),
        generation,
        now,
    );
    for c in status.conditions.iter_mut().filter(|c| c.type_ == READY) {
        *c = waiting.clone();
    }
    status
}

pub const WAITING_FOR_JOBS: &str = "WaitingForJobs";

fn condition(
    previous: &[Condition],
    type_: &str,
    value: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if value { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(desired: u32, idle: u32) -> Counts {
        Counts {
            desired,
            idle,
            ..Default::default()
        }
    }

    fn get<'a>(status: &'a RunnerPoolStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn ready_when_all_runners_exist() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let s = build(None, Some(3), Some(counts(2, 2)), Some(1), None, now);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, READY).observed_generation, Some(3));
        assert_eq!(get(&s, DEGRADED).status, "False");
        let s = build(None, Some(3), Some(counts(3, 2)), Some(1), None, now);
        assert_eq!(get(&s, READY).reason, "ScalingUp");
    }

    #[test]
    fn a_deleted_pool_waiting_for_jobs_is_not_ready_and_says_how_many() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let ok = build(None, Some(1), Some(counts(2, 2)), Some(1), None, now);
        let s = waiting_for_jobs(Some(&ok), Some(1), 2, now);
        let ready = get(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", WAITING_FOR_JOBS)
        );
        assert!(
            ready.message.contains("2 running job(s)"),
            "{}",
            ready.message
        );
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(
            (s.busy_runners, s.desired_runners, s.idle_runners),
            (2, 0, 0)
        );
    }

    #[test]
    fn degraded_keeps_counts_and_transition_times_move_only_on_change() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let ok = build(None, Some(1), Some(counts(2, 2)), Some(1), None, t0);
        let bad = build(
            Some(&ok),
            Some(1),
            None,
            None,
            Some((
                Problem::CredentialsInvalid,
                "Secret \"gh\" not found".into(),
            )),
            t1,
        );
        assert_eq!(bad.idle_runners, 2);
        assert_eq!(bad.runner_group_id, Some(1));
        assert_eq!(get(&bad, DEGRADED).status, "True");
        assert_eq!(get(&bad, DEGRADED).reason, "CredentialsInvalid");
        assert_eq!(get(&bad, DEGRADED).last_transition_time.0, t1);
        assert_eq!(get(&bad, READY).status, "False");
        let still_bad = build(
            Some(&bad),
            Some(1),
            None,
            None,
            Some((Problem::CredentialsInvalid, "x".into())),
            t1 + std::time::Duration::from_secs(5),
        );
        assert_eq!(get(&still_bad, DEGRADED).last_transition_time.0, t1);
    }
}
