//! The pool's status: counts and the conditions, built the way Kubernetes
//! conventions (and so `kubectl wait`, Argo CD, Flux and kstatus) expect:
//! `observedGeneration`, and `lastTransitionTime` that moves only when a
//! condition's status changes.
//!
//! - `Ready`: True only when the desired runners are online on GitHub (idle or
//!   busy), not merely created, and nothing is wrong.
//! - `Reconciling` (kstatus): True while the pool converges (runners starting,
//!   surplus runners going, a problem the operator retries by itself).
//! - `Stalled` (kstatus): True for a problem only a person can fix: an invalid
//!   spec, wrong credentials, a missing runner group, refused runner pods.
//! - `Degraded`: True for any problem, with its reason.
//! - `RunnerVersionOutdated`: True when the runners are older than the newest
//!   release GitHub serves (see [`crate::versions`]); a warning that none of
//!   the others look at.
//!
//! Messages depend only on what changes the state (counts, the problem), never
//! on time, so a pass that changes nothing writes nothing.

use k8s_openapi::jiff::Timestamp;

use super::plan::Counts;
use crate::crd::RunnerPoolStatus;
use crate::kit::conditions::{Value, condition, condition_of};
use crate::kit::problem::Problem;
use crate::versions::{self, Assessment};

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// `Ready`, `Reconciling` and `Stalled` for the counts and problem observed.
fn kstatus(counts: &RunnerPoolStatus, problem: Option<&(Problem, String)>) -> [Value; 3] {
    let online = counts.idle_runners + counts.busy_runners;
    let existing = online + counts.pending_runners;
    let desired = counts.desired_runners;
    let online_message = format!("{online} of {desired} runners online");
    match problem {
        Some((p, message)) if p.needs_a_person() => [
            Value::new(false, p.reason(), message.clone()),
            Value::new(
                false,
                STALLED,
                "the operator cannot progress until the problem in the Stalled condition is fixed",
            ),
            Value::new(true, p.reason(), message.clone()),
        ],
        Some((p, message)) => [
            Value::new(false, p.reason(), message.clone()),
            Value::new(true, p.reason(), message.clone()),
            Value::new(false, NO_PROBLEM, NO_PROBLEM_MESSAGE),
        ],
        None => {
            let ready = if online >= desired {
                Value::new(true, "RunnersOnline", online_message.clone())
            } else {
                Value::new(
                    false,
                    "RunnersStarting",
                    format!("{online_message}, {} starting", counts.pending_runners),
                )
            };
            let reconciling = if online < desired || existing < desired {
                Value::new(true, "ScalingUp", ready.message.clone())
            } else if existing > desired {
                Value::new(
                    true,
                    "ScalingDown",
                    format!(
                        "{existing} runners, {desired} wanted (busy runners finish their job first)"
                    ),
                )
            } else {
                Value::new(false, "Converged", online_message)
            };
            [
                ready,
                reconciling,
                Value::new(false, NO_PROBLEM, NO_PROBLEM_MESSAGE),
            ]
        }
    }
}

const NO_PROBLEM: &str = "AsExpected";
const NO_PROBLEM_MESSAGE: &str = "GitHub and Kubernetes answer as expected";

/// The part of a status the reconcile writes: all of it but
/// `status.scaleSet`, which the scale set's listener writes under a field
/// manager of its own.
pub fn reconciled_part(status: &RunnerPoolStatus) -> RunnerPoolStatus {
    RunnerPoolStatus {
        scale_set: None,
        ..status.clone()
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
    let mut status = previous.map(reconciled_part).unwrap_or_default();
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

    let [ready, reconciling, stalled] = kstatus(&status, problem.as_ref());
    let degraded = match &problem {
        Some((p, message)) => Value::new(true, p.reason(), message.clone()),
        None => Value::new(false, NO_PROBLEM, NO_PROBLEM_MESSAGE),
    };
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let kstatus_types = [READY, DEGRADED, RECONCILING, STALLED];
    // Other conditions (RunnerVersionOutdated) stay as they were until their
    // own observation updates them.
    let others = previous_conditions
        .iter()
        .filter(|c| !kstatus_types.contains(&c.type_.as_str()))
        .cloned();
    status.conditions = kstatus_types
        .into_iter()
        .zip([ready, degraded, reconciling, stalled])
        .map(|(type_, value)| condition(previous_conditions, type_, value, generation, now))
        .chain(others)
        .collect();
    status
}

/// Sets `status.runnerVersion` and the `RunnerVersionOutdated` condition from
/// an assessment. The condition is a warning only: Ready, Degraded and
/// Stalled do not look at it, because runners of an outdated version still
/// take jobs until GitHub's deadline, and a pool that turned not Ready on
/// every runner release would fail GitOps health checks for days.
pub fn set_runner_version(
    status: &mut RunnerPoolStatus,
    previous: Option<&RunnerPoolStatus>,
    assessment: &Assessment,
    generation: Option<i64>,
    now: Timestamp,
) {
    status.runner_version = assessment.status.clone();
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let value = &assessment.condition;
    let updated = condition_of(
        previous_conditions,
        versions::OUTDATED,
        value.status,
        value.reason,
        value.message.clone(),
        generation,
        now,
    );
    match status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == versions::OUTDATED)
    {
        Some(c) => *c = updated,
        None => status.conditions.push(updated),
    }
}

/// The status of a deleted pool that waits for its busy runners' jobs: `Ready`
/// False and `Reconciling` True with reason `WaitingForJobs`, naming how many
/// jobs still run.
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
    let message = format!(
        "The pool is being deleted: waiting for {busy} running job(s) to finish before removing their runners"
    );
    for (type_, value) in [(READY, false), (RECONCILING, true)] {
        let waiting = condition(
            previous_conditions,
            type_,
            Value::new(value, WAITING_FOR_JOBS, message.clone()),
            generation,
            now,
        );
        for c in status.conditions.iter_mut().filter(|c| c.type_ == type_) {
            *c = waiting.clone();
        }
    }
    status
}

pub const WAITING_FOR_JOBS: &str = "WaitingForJobs";

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

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

    fn pending(desired: u32, idle: u32, pending: u32) -> Counts {
        Counts {
            desired,
            idle,
            pending,
            ..Default::default()
        }
    }

    /// (status, reason) of each condition, in the order Ready, Reconciling, Stalled.
    fn kstatus_of(s: &RunnerPoolStatus) -> [(String, String); 3] {
        [READY, RECONCILING, STALLED].map(|t| {
            let c = get(s, t);
            (c.status.clone(), c.reason.clone())
        })
    }

    fn pair(status: &str, reason: &str) -> (String, String) {
        (status.to_string(), reason.to_string())
    }

    #[test]
    fn ready_when_all_runners_exist() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let s = build(None, Some(3), Some(counts(2, 2)), Some(1), None, now);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, READY).observed_generation, Some(3));
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(
            kstatus_of(&s),
            [
                pair("True", "RunnersOnline"),
                pair("False", "Converged"),
                pair("False", "AsExpected")
            ]
        );
        let s = build(None, Some(3), Some(counts(3, 2)), Some(1), None, now);
        assert_eq!(get(&s, READY).reason, "RunnersStarting");
        assert_eq!(get(&s, RECONCILING).reason, "ScalingUp");
    }

    #[test]
    fn runners_whose_pods_exist_but_are_not_online_are_not_ready() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let s = build(None, Some(1), Some(pending(2, 1, 1)), Some(1), None, now);
        assert_eq!(
            kstatus_of(&s),
            [
                pair("False", "RunnersStarting"),
                pair("True", "ScalingUp"),
                pair("False", "AsExpected")
            ]
        );
        assert_eq!(get(&s, READY).message, "1 of 2 runners online, 1 starting");
        // More runners than wanted: Ready, still converging.
        let s = build(None, Some(1), Some(pending(2, 3, 0)), Some(1), None, now);
        assert_eq!(
            kstatus_of(&s),
            [
                pair("True", "RunnersOnline"),
                pair("True", "ScalingDown"),
                pair("False", "AsExpected")
            ]
        );
    }

    #[test]
    fn problems_a_person_must_fix_stall_the_others_keep_reconciling() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let with = |p: Problem| {
            let s = build(
                None,
                Some(1),
                Some(counts(2, 2)),
                Some(1),
                Some((p, "why".into())),
                now,
            );
            assert_eq!(get(&s, DEGRADED).status, "True");
            assert_eq!(get(&s, READY).status, "False", "{p:?}");
            kstatus_of(&s)
        };
        for p in [
            Problem::InvalidSpec,
            Problem::CredentialsInvalid,
            Problem::RunnerGroupNotFound,
            Problem::PodRejected,
            Problem::ContainerModeNotPermitted,
        ] {
            assert_eq!(
                with(p),
                [
                    pair("False", p.reason()),
                    pair("False", STALLED),
                    pair("True", p.reason())
                ]
            );
        }
        for p in [
            Problem::RateLimited,
            Problem::GitHubUnavailable,
            Problem::RunnersFailing,
        ] {
            assert_eq!(
                with(p),
                [
                    pair("False", p.reason()),
                    pair("True", p.reason()),
                    pair("False", "AsExpected")
                ]
            );
        }
    }

    #[test]
    fn a_pass_that_changes_nothing_builds_the_same_status() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let later = t0 + std::time::Duration::from_secs(600);
        for (counts, problem) in [
            (counts(2, 2), None),
            (pending(2, 0, 2), None),
            (
                counts(1, 0),
                Some((Problem::RunnersFailing, "fails".to_string())),
            ),
        ] {
            let first = build(None, Some(1), Some(counts), Some(1), problem.clone(), t0);
            let again = build(Some(&first), Some(1), Some(counts), Some(1), problem, later);
            assert_eq!(first, again, "the status patch is skipped");
        }
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
        assert_eq!(get(&s, RECONCILING).reason, WAITING_FOR_JOBS);
        assert_eq!(get(&s, RECONCILING).status, "True");
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

    fn assessment(status: &'static str, message: &str) -> Assessment {
        Assessment {
            status: Some(crate::crd::RunnerVersionStatus {
                latest: Some("2.330.0".into()),
                latest_first_seen: Some("2026-11-20T10:00:00Z".into()),
                image: Some("2.329.0".into()),
                outdated: Some(status == "True"),
            }),
            condition: versions::ConditionValue {
                status,
                reason: versions::NEWER_RELEASE,
                message: message.into(),
            },
        }
    }

    #[test]
    fn an_outdated_runner_version_warns_without_touching_ready_and_stays_put() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = t0 + std::time::Duration::from_secs(60);
        let mut s = build(None, Some(1), Some(counts(2, 2)), Some(1), None, t0);
        set_runner_version(&mut s, None, &assessment("True", "older"), Some(1), t0);
        assert_eq!(get(&s, READY).status, "True", "a warning only");
        assert_eq!(get(&s, DEGRADED).status, "False");
        let outdated = get(&s, versions::OUTDATED);
        assert_eq!(
            (outdated.status.as_str(), outdated.message.as_str()),
            ("True", "older")
        );
        assert_eq!(s.runner_version.as_ref().unwrap().outdated, Some(true));

        // A later pass without an assessment (GitHub unreachable) keeps it;
        // one with the same assessment changes nothing.
        let kept = build(
            Some(&s),
            Some(1),
            None,
            None,
            Some((Problem::GitHubUnavailable, "down".into())),
            t1,
        );
        assert_eq!(get(&kept, versions::OUTDATED), outdated);
        assert_eq!(kept.runner_version, s.runner_version);
        let mut again = build(Some(&s), Some(1), Some(counts(2, 2)), Some(1), None, t1);
        set_runner_version(
            &mut again,
            Some(&s),
            &assessment("True", "older"),
            Some(1),
            t1,
        );
        assert_eq!(again, s, "no status patch");

        // Upgraded: False, with a new transition time.
        let mut upgraded = build(Some(&s), Some(1), Some(counts(2, 2)), Some(1), None, t1);
        set_runner_version(
            &mut upgraded,
            Some(&s),
            &assessment("False", "current"),
            Some(1),
            t1,
        );
        let c = get(&upgraded, versions::OUTDATED);
        assert_eq!((c.status.as_str(), c.last_transition_time.0), ("False", t1));
        assert_eq!(upgraded.conditions.len(), 5);
    }
}
