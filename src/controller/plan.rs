//! Decides what a pool needs, from what was observed, without touching anything.
//!
//! Input: the pool's pods and Secrets (from the watch caches), the last view of
//! its runners on GitHub, and what this process is still waiting to see. Output:
//! how many runners to create, which to remove (and whether their GitHub
//! registration must go first), which need their labels set, the counts for
//! status, and when to look again. Pure and unit-tested; the reconciler
//! carries the plan out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::github::{Runner, RunnerStatus};
use crate::inventory::GitHubView;
use crate::pod::cached::RunnerPodStatus;

/// What the planner needs to know of a runner pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub name: String,
    pub runner_id: Option<u64>,
    pub phase: PodPhase,
    pub deleting: bool,
    pub created: Timestamp,
    /// When the pod became Ready (its runner process started).
    pub started: Option<Timestamp>,
    pub labels_hash: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn from_status(phase: Option<&str>) -> Self {
        match phase {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Pending,
        }
    }

    /// The runner's phase: the pod's, unless its `runner` container has
    /// terminated. A sidecar (docker:dind is the common one) keeps the pod
    /// Running after the runner process exits, and a runner that is gone must
    /// be replaced at once rather than after the bootstrap timeout.
    pub fn of_runner(status: &RunnerPodStatus) -> Self {
        let phase = Self::from_status(status.phase.as_deref());
        if matches!(phase, PodPhase::Succeeded | PodPhase::Failed) {
            return phase;
        }
        match status.runner_exit_code {
            Some(0) => PodPhase::Succeeded,
            Some(_) => PodPhase::Failed,
            None => phase,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretView {
    pub name: String,
    pub runner_id: Option<u64>,
}

/// How many runners the pool wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    Fixed(u32),
    Auto {
        min: u32,
        max: u32,
        idle: u32,
        scale_down_delay: Duration,
    },
}

/// The jobs a pool's source of demand says it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Jobs queued for the pool that no runner was created for yet
    /// (webhooks).
    Queued(u32),
    /// Jobs GitHub's Actions service assigned to the pool's scale set,
    /// running or not. Each busy runner runs one, so the jobs still waiting
    /// are those beyond the busy runners. (Subtracting the service's running
    /// jobs instead counted a job twice whenever the runner list showed its
    /// runner busy before the statistics did: a burst of 200 made 7 extra
    /// runners.)
    Assigned(u32),
}

pub struct Inputs<'a> {
    pub now: Timestamp,
    pub scaling: Scaling,
    pub bootstrap_timeout: Duration,
    pub ownership_label: &'a str,
    pub desired_labels: &'a [String],
    pub desired_labels_hash: &'a str,
    pub pods: &'a [PodView],
    pub secrets: &'a [SecretView],
    pub github: Option<&'a GitHubView>,
    /// Runners this process created whose pod the cache has not shown yet.
    pub creating: &'a BTreeSet<String>,
    /// Runners this process is removing; they are left alone until gone.
    pub removing: &'a BTreeSet<String>,
    /// Runners whose pod and Secret both vanished from the caches (a Secret
    /// goes with its pod) while this process knew them: their registration
    /// must still go.
    pub vanished: &'a [SecretView],
    /// Since when the pool has had more idle runners than it wants.
    pub surplus_since: Option<Timestamp>,
    /// The jobs the pool's source of demand says it has.
    pub waiting: Waiting,
    /// Runners a job started on (from webhooks), busy whatever the GitHub
    /// view, which may be older, says.
    pub known_busy: &'a BTreeSet<u64>,
    /// Delete the Secret of a runner once it is online (its process read
    /// the JIT configuration, and with `restartPolicy: Never` never reads
    /// it again): in kubernetes mode, whose jobs may read the namespace's
    /// Secrets.
    pub release_consumed_secrets: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemovalReason {
    /// The pod finished its job; GitHub removed the ephemeral runner itself.
    Finished,
    /// The pod failed (crash, OOM, eviction that left a Failed pod).
    Failed,
    /// The pod is gone (deleted, evicted, node lost) but its Secret remains.
    Vanished,
    /// The runner did not come online within the bootstrap timeout.
    BootstrapTimeout,
    /// More runners than wanted.
    ScaleDown,
    /// A registration of this pool on GitHub with no pod and no Secret.
    Orphan,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalReason::Finished => "finished",
            RemovalReason::Failed => "failed",
            RemovalReason::Vanished => "vanished",
            RemovalReason::BootstrapTimeout => "bootstrap_timeout",
            RemovalReason::ScaleDown => "scale_down",
            RemovalReason::Orphan => "orphan",
        }
    }
}

/// One runner to remove. When `deregister` is set its GitHub registration is
/// deleted first; pod and Secret go only once GitHub confirms (or says it is
/// already gone). A busy answer keeps everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub name: String,
    pub runner_id: Option<u64>,
    pub reason: RemovalReason,
    /// Delete the GitHub registration first. Not for finished runners: GitHub
    /// removed those itself when their job ended.
    pub deregister: bool,
    pub pod: bool,
    pub secret: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relabel {
    pub name: String,
    pub runner_id: u64,
    /// Whether the pod exists to record the new labels hash on.
    pub pod: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: u32,
    pub pending: u32,
    pub idle: u32,
    pub busy: u32,
    pub failed: u32,
    /// Jobs queued for the pool and not yet taken by a runner.
    pub queued: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub create: u32,
    pub remove: Vec<Removal>,
    pub relabel: Vec<Relabel>,
    pub counts: Counts,
    /// The GitHub view is too old to decide about some runner: list again.
    pub needs_github_view: bool,
    /// The pool has more runners than wanted, waiting out the scale-down delay.
    pub surplus_since: Option<Timestamp>,
    /// When something will be due without any event (a bootstrap deadline,
    /// the end of a scale-down delay).
    pub recheck_in: Option<Duration>,
    /// Secrets of live runners that are online: their JIT configuration is
    /// used, and the Secret goes (with `release_consumed_secrets`).
    pub consumed_secrets: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LiveState {
    Pending,
    Idle,
    Busy,
}

pub fn plan(input: &Inputs<'_>) -> Plan {
    let mut plan = Plan::default();
    let github_by_id: HashMap<u64, &Runner> = input
        .github
        .map(|g| g.runners.iter().map(|r| (r.id, r)).collect())
        .unwrap_or_default();
    let pods: BTreeMap<&str, &PodView> = input.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let secrets: BTreeMap<&str, &SecretView> =
        input.secrets.iter().map(|s| (s.name.as_str(), s)).collect();

    // (name, state, created) of runners that count towards the pool's size.
    let mut live: Vec<(&str, LiveState, Option<Timestamp>, Option<u64>)> = Vec::new();

    for pod in input.pods {
        if input.removing.contains(&pod.name) || pod.deleting {
            continue;
        }
        let secret = secrets.contains_key(pod.name.as_str());
        let listed = pod.runner_id.and_then(|id| github_by_id.get(&id).copied());
        // A runner is named after its pod: an id on the pod naming a runner
        // of another name was edited (by hand, or by a job that can patch
        // pods) and names someone else's runner, which is neither relabelled
        // nor deleted.
        let foreign = listed.is_some_and(|r| r.name != pod.name);
        let runner = listed.filter(|_| !foreign);
        match pod.phase {
            PodPhase::Succeeded => plan.remove.push(Removal {
                name: pod.name.clone(),
                runner_id: pod.runner_id,
                reason: RemovalReason::Finished,
                deregister: false,
                pod: true,
                secret,
            }),
            PodPhase::Failed => {
                plan.counts.failed += 1;
                plan.remove.push(Removal {
                    name: pod.name.clone(),
                    runner_id: pod.runner_id,
                    reason: RemovalReason::Failed,
                    deregister: !foreign,
                    pod: true,
                    secret,
                });
            }
            PodPhase::Pending | PodPhase::Running => {
                let known_busy = pod
                    .runner_id
                    .is_some_and(|id| input.known_busy.contains(&id));
                let state = match runner {
                    _ if known_busy => LiveState::Busy,
                    Some(r) if r.busy => LiveState::Busy,
                    Some(r) if r.status == RunnerStatus::Online => LiveState::Idle,
                    _ => LiveState::Pending,
                };
                if input.release_consumed_secrets && secret && state != LiveState::Pending {
                    plan.consumed_secrets.push(pod.name.clone());
                }
                if state == LiveState::Pending {
                    let deadline = pod.created + input.bootstrap_timeout;
                    if input.now >= deadline {
                        // A pod that never started needs no GitHub view to be judged;
                        // a running one is only judged on a view taken after its deadline.
                        let view_is_recent = input.github.is_some_and(|g| g.taken >= deadline);
                        if pod.phase == PodPhase::Pending || view_is_recent {
                            plan.counts.failed += 1;
                            plan.remove.push(Removal {
                                name: pod.name.clone(),
                                runner_id: pod.runner_id,
                                reason: RemovalReason::BootstrapTimeout,
                                deregister: true,
                                pod: true,
                                secret,
                            });
                            continue;
                        }
                        plan.needs_github_view = true;
                    } else {
                        recheck(&mut plan, duration_until(input.now, deadline));
                        look_for_started_runner(&mut plan, input, pod);
                    }
                }
                if let Some(id) = pod.runner_id.filter(|_| !foreign) {
                    let drifted = runner.is_some_and(|r| !same_labels(r, input.desired_labels));
                    if drifted || pod.labels_hash.as_deref() != Some(input.desired_labels_hash) {
                        plan.relabel.push(Relabel {
                            name: pod.name.clone(),
                            runner_id: id,
                            pod: true,
                        });
                    }
                }
                live.push((pod.name.as_str(), state, Some(pod.created), pod.runner_id));
            }
        }
    }

    // A Secret without its pod, or a runner whose pod and Secret are both
    // gone: the registration must go.
    let with_secret = input.secrets.iter().map(|s| (s, true));
    let without = input.vanished.iter().map(|s| (s, false));
    for (record, secret) in with_secret.chain(without) {
        let name = record.name.as_str();
        if pods.contains_key(name)
            || (!secret && secrets.contains_key(name))
            || input.removing.contains(name)
            || input.creating.contains(name)
        {
            continue;
        }
        plan.remove.push(Removal {
            name: record.name.clone(),
            runner_id: record.runner_id,
            reason: RemovalReason::Vanished,
            deregister: true,
            pod: false,
            secret,
        });
    }

    for name in input.creating {
        if !pods.contains_key(name.as_str()) && !input.removing.contains(name) {
            live.push((name.as_str(), LiveState::Pending, None, None));
        }
    }

    if let Some(github) = input.github {
        for runner in &github.runners {
            let known = pods.contains_key(runner.name.as_str())
                || secrets.contains_key(runner.name.as_str())
                || input.creating.contains(&runner.name)
                || input.removing.contains(&runner.name);
            if known || !runner.has_label(input.ownership_label) {
                continue;
            }
            if runner.status == RunnerStatus::Offline && !runner.busy {
                plan.remove.push(Removal {
                    name: runner.name.clone(),
                    runner_id: Some(runner.id),
                    reason: RemovalReason::Orphan,
                    deregister: true,
                    pod: false,
                    secret: false,
                });
            }
        }
    }

    for (_, state, _, _) in &live {
        match state {
            LiveState::Pending => plan.counts.pending += 1,
            LiveState::Idle => plan.counts.idle += 1,
            LiveState::Busy => plan.counts.busy += 1,
        }
    }

    let queued = match input.waiting {
        Waiting::Queued(n) => n,
        Waiting::Assigned(n) => n.saturating_sub(plan.counts.busy),
    };
    plan.counts.queued = queued;
    let (desired, delay) = match input.scaling {
        Scaling::Fixed(n) => (n, Duration::ZERO),
        Scaling::Auto {
            min,
            max,
            idle,
            scale_down_delay,
        } => (
            (plan.counts.busy.saturating_add(queued).saturating_add(idle)).clamp(min, max.max(min)),
            scale_down_delay,
        ),
    };
    plan.counts.desired = desired;
    let current = live.len() as u32;

    if current < desired {
        plan.create = desired - current;
    } else if current > desired {
        let since = input.surplus_since.unwrap_or(input.now);
        let due = since + delay;
        if input.now >= due {
            plan.remove
                .extend(scale_down_candidates(&live, (current - desired) as usize));
        } else {
            plan.surplus_since = Some(since);
            recheck(&mut plan, duration_until(input.now, due));
        }
    }
    plan
}

/// How long after its process started a runner is looked for on GitHub once
/// (a registration takes a few seconds), so `Ready` follows runners coming
/// online without waiting for the next periodic list.
pub const ONLINE_LOOK_DELAY: Duration = Duration::from_secs(10);

/// Asks for one GitHub list taken after a started runner had time to come
/// online: one list serves every runner started before it.
fn look_for_started_runner(plan: &mut Plan, input: &Inputs<'_>, pod: &PodView) {
    let Some(started) = pod.started else { return };
    let look = started + ONLINE_LOOK_DELAY;
    if input.github.is_some_and(|g| g.taken >= look) {
        return;
    }
    if input.now >= look {
        plan.needs_github_view = true;
    } else {
        recheck(plan, duration_until(input.now, look));
    }
}

/// Which runners to remove when there are too many: never a busy one, never
/// one whose pod the cache has not shown yet; the not-yet-online first (they
/// cost nothing to replace), then idle ones, newest first.
fn scale_down_candidates(
    live: &[(&str, LiveState, Option<Timestamp>, Option<u64>)],
    surplus: usize,
) -> Vec<Removal> {
    let mut candidates: Vec<_> = live
        .iter()
        .filter(|(_, state, created, _)| *state != LiveState::Busy && created.is_some())
        .collect();
    candidates.sort_by_key(|(name, state, created, _)| {
        (
            *state == LiveState::Idle,
            std::cmp::Reverse(*created),
            *name,
        )
    });
    candidates
        .into_iter()
        .take(surplus)
        .map(|(name, _, _, id)| Removal {
            name: name.to_string(),
            runner_id: *id,
            reason: RemovalReason::ScaleDown,
            deregister: true,
            pod: true,
            secret: true,
        })
        .collect()
}

/// Whether a runner's custom labels are exactly the wanted ones.
fn same_labels(runner: &Runner, desired: &[String]) -> bool {
    let have: BTreeSet<&str> = runner.custom_labels().collect();
    let want: BTreeSet<&str> = desired.iter().map(String::as_str).collect();
    have == want
}

fn duration_until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn recheck(plan: &mut Plan, after: Duration) {
    let after = after.max(Duration::from_secs(1));
    plan.recheck_in = Some(plan.recheck_in.map_or(after, |d| d.min(after)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{LabelType, RunnerLabel};

    const OWNER: &str = "runnerpool-abc";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn pod(name: &str, id: u64, phase: PodPhase, created: i64) -> PodView {
        PodView {
            name: name.into(),
            runner_id: Some(id),
            phase,
            deleting: false,
            created: at(created),
            started: None,
            labels_hash: Some("h".into()),
        }
    }

    fn secret(name: &str, id: u64) -> SecretView {
        SecretView {
            name: name.into(),
            runner_id: Some(id),
        }
    }

    fn runner(name: &str, id: u64, online: bool, busy: bool) -> Runner {
        Runner {
            id,
            name: name.into(),
            os: "linux".into(),
            status: if online {
                RunnerStatus::Online
            } else {
                RunnerStatus::Offline
            },
            busy,
            ephemeral: true,
            runner_group_id: Some(1),
            labels: [
                ("self-hosted", LabelType::ReadOnly),
                ("gpu", LabelType::Custom),
                (OWNER, LabelType::Custom),
            ]
            .into_iter()
            .map(|(n, kind)| RunnerLabel {
                id: None,
                name: n.into(),
                kind,
            })
            .collect(),
        }
    }

    struct Case {
        scaling: Scaling,
        pods: Vec<PodView>,
        secrets: Vec<SecretView>,
        github: Option<GitHubView>,
        creating: BTreeSet<String>,
        removing: BTreeSet<String>,
        vanished: Vec<SecretView>,
        surplus_since: Option<Timestamp>,
        now: Timestamp,
        waiting: Waiting,
        known_busy: BTreeSet<u64>,
        release_consumed_secrets: bool,
    }

    impl Case {
        fn new(scaling: Scaling) -> Self {
            Case {
                scaling,
                pods: vec![],
                secrets: vec![],
                github: None,
                creating: BTreeSet::new(),
                removing: BTreeSet::new(),
                vanished: vec![],
                surplus_since: None,
                now: at(100),
                waiting: Waiting::Queued(0),
                known_busy: BTreeSet::new(),
                release_consumed_secrets: false,
            }
        }

        /// A runner with pod, Secret and GitHub registration.
        fn with_runner(
            mut self,
            name: &str,
            id: u64,
            phase: PodPhase,
            online: bool,
            busy: bool,
        ) -> Self {
            self.pods.push(pod(name, id, phase, 0));
            self.secrets.push(secret(name, id));
            self.github
                .get_or_insert(GitHubView {
                    runners: vec![],
                    taken: at(99),
                })
                .runners
                .push(runner(name, id, online, busy));
            self
        }

        fn plan(&self) -> Plan {
            let desired = vec!["gpu".to_string(), OWNER.to_string()];
            plan(&Inputs {
                now: self.now,
                scaling: self.scaling,
                bootstrap_timeout: Duration::from_secs(600),
                ownership_label: OWNER,
                desired_labels: &desired,
                desired_labels_hash: "h",
                pods: &self.pods,
                secrets: &self.secrets,
                github: self.github.as_ref(),
                creating: &self.creating,
                removing: &self.removing,
                vanished: &self.vanished,
                surplus_since: self.surplus_since,
                waiting: self.waiting,
                known_busy: &self.known_busy,
                release_consumed_secrets: self.release_consumed_secrets,
            })
        }
    }

    fn reasons(plan: &Plan) -> Vec<(&str, RemovalReason, Option<u64>)> {
        plan.remove
            .iter()
            .map(|r| (r.name.as_str(), r.reason, r.runner_id))
            .collect()
    }

    #[test]
    fn a_terminated_runner_container_ends_the_runner_while_a_sidecar_runs() {
        let status = |runner_state: &str| -> RunnerPodStatus {
            serde_json::from_value(serde_json::json!({
                "phase": "Running",
                "containerStatuses": [
                    { "name": "dind", "image": "docker:dind", "imageID": "", "ready": true,
                      "restartCount": 0, "state": { "running": {} } },
                    { "name": "runner", "image": "runner", "imageID": "", "ready": false,
                      "restartCount": 0, "state": serde_json::from_str::<serde_json::Value>(runner_state).unwrap() },
                ]
            }))
            .unwrap()
        };
        let of = |s: &str| PodPhase::of_runner(&status(s));
        assert_eq!(of(r#"{"running": {}}"#), PodPhase::Running);
        assert_eq!(
            of(r#"{"terminated": {"exitCode": 0}}"#),
            PodPhase::Succeeded
        );
        assert_eq!(of(r#"{"terminated": {"exitCode": 137}}"#), PodPhase::Failed);
        assert_eq!(of(r#"{"waiting": {}}"#), PodPhase::Running);
        let mut finished = status(r#"{"running": {}}"#);
        finished.phase = Some("Failed".into());
        assert_eq!(PodPhase::of_runner(&finished), PodPhase::Failed);
        assert_eq!(
            PodPhase::of_runner(&RunnerPodStatus::default()),
            PodPhase::Pending
        );
    }

    #[test]
    fn empty_pool_creates_the_desired_runners() {
        let plan = Case::new(Scaling::Fixed(3)).plan();
        assert_eq!(plan.create, 3);
        assert!(plan.remove.is_empty());
        assert_eq!(plan.counts.desired, 3);
    }

    #[test]
    fn runners_being_created_count_until_the_cache_shows_them() {
        let mut case =
            Case::new(Scaling::Fixed(3)).with_runner("a", 1, PodPhase::Running, true, false);
        case.creating.insert("b".into());
        case.creating.insert("a".into());
        let plan = case.plan();
        assert_eq!(plan.create, 1, "a is seen, b is on its way: one more");
        assert_eq!(plan.counts.pending, 1);
        assert_eq!(plan.counts.idle, 1);
    }

    #[test]
    fn finished_pod_is_removed_without_a_github_call_and_replaced() {
        let plan = Case::new(Scaling::Fixed(1))
            .with_runner("a", 1, PodPhase::Succeeded, false, false)
            .plan();
        assert_eq!(reasons(&plan), [("a", RemovalReason::Finished, Some(1))]);
        assert!(
            !plan.remove[0].deregister,
            "GitHub removed the finished runner itself"
        );
        assert_eq!(plan.create, 1);
    }

    #[test]
    fn failed_pod_deletes_its_registration_and_is_replaced() {
        let plan = Case::new(Scaling::Fixed(1))
            .with_runner("a", 7, PodPhase::Failed, false, false)
            .plan();
        assert_eq!(reasons(&plan), [("a", RemovalReason::Failed, Some(7))]);
        assert!(plan.remove[0].pod && plan.remove[0].secret);
        assert_eq!(plan.create, 1);
        assert_eq!(plan.counts.failed, 1);
    }

    #[test]
    fn vanished_pod_deletes_registration_by_the_secret_record() {
        let mut case =
            Case::new(Scaling::Fixed(1)).with_runner("a", 7, PodPhase::Running, true, false);
        case.pods.clear();
        let plan = case.plan();
        assert_eq!(reasons(&plan), [("a", RemovalReason::Vanished, Some(7))]);
        assert!(!plan.remove[0].pod && plan.remove[0].secret);
        assert_eq!(plan.create, 1);
    }

    #[test]
    fn a_runner_whose_pod_and_secret_vanished_is_deregistered() {
        let mut case = Case::new(Scaling::Fixed(1));
        case.vanished.push(secret("a", 7));
        let plan = case.plan();
        assert_eq!(reasons(&plan), [("a", RemovalReason::Vanished, Some(7))]);
        assert!(plan.remove[0].deregister && !plan.remove[0].pod && !plan.remove[0].secret);
        assert_eq!(plan.create, 1);
        case.removing.insert("a".into());
        assert!(case.plan().remove.is_empty(), "already being removed");
    }

    #[test]
    fn scale_down_never_picks_busy_runners_and_prefers_pending_ones() {
        let mut case = Case::new(Scaling::Fixed(1))
            .with_runner("busy", 1, PodPhase::Running, true, true)
            .with_runner("idle", 2, PodPhase::Running, true, false)
            .with_runner("pending", 3, PodPhase::Pending, false, false);
        let plan = case.plan();
        assert_eq!(plan.create, 0);
        assert_eq!(
            reasons(&plan),
            [
                ("pending", RemovalReason::ScaleDown, Some(3)),
                ("idle", RemovalReason::ScaleDown, Some(2))
            ]
        );
        case.scaling = Scaling::Fixed(0);
        let plan = case.plan();
        assert!(
            reasons(&plan).iter().all(|(name, _, _)| *name != "busy"),
            "{plan:?}"
        );
    }

    #[test]
    fn orphans_with_the_mark_are_collected_foreign_and_online_ones_are_not() {
        let mut case = Case::new(Scaling::Fixed(0));
        let mut foreign = runner("foreign", 10, false, false);
        foreign.labels.retain(|l| l.name != OWNER);
        case.github = Some(GitHubView {
            runners: vec![
                runner("orphan", 11, false, false),
                foreign,
                runner("online-orphan", 12, true, false),
                runner("busy-orphan", 13, false, true),
            ],
            taken: at(99),
        });
        assert_eq!(
            reasons(&case.plan()),
            [("orphan", RemovalReason::Orphan, Some(11))]
        );
    }

    #[test]
    fn a_runner_being_created_is_not_an_orphan() {
        let mut case = Case::new(Scaling::Fixed(1));
        case.github = Some(GitHubView {
            runners: vec![runner("new", 11, false, false)],
            taken: at(99),
        });
        case.creating.insert("new".into());
        let plan = case.plan();
        assert!(plan.remove.is_empty());
        assert_eq!(plan.create, 0);
    }

    #[test]
    fn bootstrap_timeout_needs_a_recent_view_for_running_pods() {
        let mut case = Case::new(Scaling::Fixed(2))
            .with_runner("started", 1, PodPhase::Running, false, false)
            .with_runner("pulling", 2, PodPhase::Pending, false, false);
        case.now = at(700);
        let plan = case.plan();
        assert_eq!(
            reasons(&plan),
            [("pulling", RemovalReason::BootstrapTimeout, Some(2))]
        );
        assert!(
            plan.needs_github_view,
            "the view is older than started's deadline"
        );
        case.github.as_mut().unwrap().taken = at(650);
        let plan = case.plan();
        assert_eq!(plan.remove.len(), 2);
        assert_eq!(plan.create, 2);
        assert!(!plan.needs_github_view);
    }

    #[test]
    fn a_pod_naming_another_runner_neither_relabels_nor_deregisters_it() {
        let mut case = Case::new(Scaling::Fixed(2))
            .with_runner("a", 1, PodPhase::Running, true, false)
            .with_runner("b", 2, PodPhase::Failed, true, false);
        // Both pods' runner ids edited to name runner 9, someone else's.
        case.pods[0].runner_id = Some(9);
        case.pods[0].labels_hash = Some("old".into());
        case.pods[1].runner_id = Some(9);
        case.github
            .as_mut()
            .unwrap()
            .runners
            .push(runner("someone-elses", 9, true, false));
        let plan = case.plan();
        assert!(plan.relabel.is_empty(), "{:?}", plan.relabel);
        assert_eq!(reasons(&plan), [("b", RemovalReason::Failed, Some(9))]);
        assert!(!plan.remove[0].deregister);
    }

    #[test]
    fn a_started_runner_is_looked_for_once_after_it_had_time_to_come_online() {
        let mut case =
            Case::new(Scaling::Fixed(1)).with_runner("a", 1, PodPhase::Running, false, false);
        case.pods[0].started = Some(at(100));
        case.github.as_mut().unwrap().taken = at(99);
        case.now = at(105);
        let plan = case.plan();
        assert!(!plan.needs_github_view);
        assert_eq!(plan.recheck_in, Some(Duration::from_secs(5)));
        case.now = at(111);
        assert!(case.plan().needs_github_view, "the view predates the look");
        case.github.as_mut().unwrap().taken = at(111);
        let plan = case.plan();
        assert!(!plan.needs_github_view, "one look only");
        assert_eq!(plan.recheck_in, Some(Duration::from_secs(489)));
    }

    #[test]
    fn pending_runner_schedules_a_recheck_at_its_deadline() {
        let case =
            Case::new(Scaling::Fixed(1)).with_runner("a", 1, PodPhase::Running, false, false);
        assert_eq!(case.plan().recheck_in, Some(Duration::from_secs(500)));
    }

    #[test]
    fn label_drift_and_spec_changes_are_relabelled() {
        let mut case = Case::new(Scaling::Fixed(2))
            .with_runner("a", 1, PodPhase::Running, true, false)
            .with_runner("b", 2, PodPhase::Running, true, false);
        assert!(case.plan().relabel.is_empty());
        case.pods[0].labels_hash = Some("old".into());
        case.github.as_mut().unwrap().runners[1]
            .labels
            .push(RunnerLabel {
                id: None,
                name: "by-hand".into(),
                kind: LabelType::Custom,
            });
        let names: Vec<_> = case.plan().relabel.into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn autoscaling_keeps_idle_runners_above_busy_ones_within_bounds() {
        let auto = Scaling::Auto {
            min: 1,
            max: 3,
            idle: 1,
            scale_down_delay: Duration::from_secs(60),
        };
        let case = Case::new(auto)
            .with_runner("a", 1, PodPhase::Running, true, true)
            .with_runner("b", 2, PodPhase::Running, true, true);
        let plan = case.plan();
        assert_eq!(plan.counts.desired, 3);
        assert_eq!(plan.create, 1);
        let case = Case::new(auto).plan();
        assert_eq!(case.counts.desired, 1);
    }

    #[test]
    fn autoscaling_waits_out_the_scale_down_delay() {
        let auto = Scaling::Auto {
            min: 0,
            max: 5,
            idle: 0,
            scale_down_delay: Duration::from_secs(60),
        };
        let mut case = Case::new(auto).with_runner("a", 1, PodPhase::Running, true, false);
        let plan = case.plan();
        assert!(plan.remove.is_empty());
        assert_eq!(plan.surplus_since, Some(at(100)));
        assert_eq!(plan.recheck_in, Some(Duration::from_secs(60)));
        case.surplus_since = Some(at(30));
        let plan = case.plan();
        assert_eq!(reasons(&plan), [("a", RemovalReason::ScaleDown, Some(1))]);
    }

    const FROM_ZERO: Scaling = Scaling::Auto {
        min: 0,
        max: 10,
        idle: 0,
        scale_down_delay: Duration::from_secs(0),
    };

    #[test]
    fn queued_jobs_scale_a_pool_from_zero_within_its_bounds() {
        let mut case = Case::new(FROM_ZERO);
        assert_eq!(case.plan().create, 0, "no demand, no runner");
        case.waiting = Waiting::Queued(3);
        let plan = case.plan();
        assert_eq!(
            (plan.create, plan.counts.desired, plan.counts.queued),
            (3, 3, 3)
        );
        case.waiting = Waiting::Queued(30);
        assert_eq!(case.plan().create, 10, "never above maxRunners");
        case.scaling = Scaling::Auto {
            min: 0,
            max: 10,
            idle: 2,
            scale_down_delay: Duration::from_secs(0),
        };
        case.waiting = Waiting::Queued(1);
        let case = case.with_runner("a", 1, PodPhase::Running, true, true);
        assert_eq!(case.plan().counts.desired, 4, "busy + queued + idle");
        let fixed = Case {
            waiting: Waiting::Queued(5),
            ..Case::new(Scaling::Fixed(2))
        };
        assert_eq!(fixed.plan().create, 2, "a fixed pool ignores demand");
    }

    #[test]
    fn a_scale_set_job_whose_runner_shows_busy_is_not_counted_twice() {
        // The service assigned 3 jobs; the runner list already shows two
        // runners busy with them, its statistics do not yet.
        let mut case = Case::new(FROM_ZERO)
            .with_runner("a", 1, PodPhase::Running, true, true)
            .with_runner("b", 2, PodPhase::Running, true, true);
        case.waiting = Waiting::Assigned(3);
        let plan = case.plan();
        assert_eq!(
            (plan.create, plan.counts.desired, plan.counts.queued),
            (1, 3, 1)
        );
        // Statistics older still (one job assigned): the busy runners stay.
        case.waiting = Waiting::Assigned(1);
        let plan = case.plan();
        assert_eq!((plan.create, plan.counts.desired), (0, 2));
        assert!(plan.remove.is_empty(), "{:?}", reasons(&plan));
    }

    #[test]
    fn a_pool_scales_back_to_zero_when_jobs_are_done() {
        let case = Case::new(FROM_ZERO)
            .with_runner("done", 1, PodPhase::Succeeded, false, false)
            .with_runner("idle", 2, PodPhase::Running, true, false);
        let plan = case.plan();
        assert_eq!(plan.create, 0);
        assert_eq!(
            reasons(&plan),
            [
                ("done", RemovalReason::Finished, Some(1)),
                ("idle", RemovalReason::ScaleDown, Some(2))
            ]
        );
    }

    #[test]
    fn a_runner_known_busy_from_a_webhook_is_busy_before_any_list() {
        let mut case = Case::new(FROM_ZERO)
            .with_runner("started", 1, PodPhase::Running, true, false)
            .with_runner("idle", 2, PodPhase::Running, true, false);
        case.known_busy.insert(1);
        let plan = case.plan();
        assert_eq!(plan.counts.busy, 1);
        assert_eq!(plan.counts.desired, 1);
        assert_eq!(
            reasons(&plan),
            [("idle", RemovalReason::ScaleDown, Some(2))],
            "the truly idle runner goes, the busy one stays"
        );
        // Not even online in the (old) view yet: still busy.
        let mut case = Case::new(FROM_ZERO);
        case.pods.push(pod("new", 5, PodPhase::Running, 90));
        case.secrets.push(secret("new", 5));
        case.known_busy.insert(5);
        let plan = case.plan();
        assert_eq!((plan.counts.busy, plan.counts.desired), (1, 1));
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn runners_being_removed_are_left_alone() {
        let mut case =
            Case::new(Scaling::Fixed(0)).with_runner("a", 1, PodPhase::Failed, false, false);
        case.removing.insert("a".into());
        let plan = case.plan();
        assert!(plan.remove.is_empty(), "{plan:?}");
    }

    #[test]
    fn the_secrets_of_online_runners_are_released_only_when_asked() {
        let mut case = Case::new(Scaling::Fixed(3))
            .with_runner("starting", 1, PodPhase::Running, false, false)
            .with_runner("idle", 2, PodPhase::Running, true, false)
            .with_runner("busy", 3, PodPhase::Running, true, true);
        assert!(case.plan().consumed_secrets.is_empty(), "not asked");
        case.release_consumed_secrets = true;
        let plan = case.plan();
        assert_eq!(plan.consumed_secrets, ["idle", "busy"]);
        assert!(plan.remove.is_empty() && plan.create == 0, "{plan:?}");

        // Released: the runners stay as they are, and the pod of one that
        // vanishes is still deregistered (the memory of its pod).
        case.secrets.clear();
        let plan = case.plan();
        assert!(plan.consumed_secrets.is_empty());
        assert!(plan.remove.is_empty() && plan.create == 0, "{plan:?}");
        case.pods.retain(|p| p.name != "idle");
        case.vanished.push(secret("idle", 2));
        let plan = case.plan();
        assert_eq!(reasons(&plan), [("idle", RemovalReason::Vanished, Some(2))]);
        assert!(plan.remove[0].deregister && !plan.remove[0].secret);
    }
}
