//! Pure decisions of the RunnerGroup controller: the settings GitHub should
//! show, the repository-access edits that get there, and the status.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{RunnerGroup, RunnerGroupStatus, Visibility};
use crate::github::{GroupVisibility, RunnerGroupSettings};
use crate::kit::conditions::{Value, condition};
use crate::kit::problem::Problem;

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";

/// The settings the group must have on GitHub.
pub fn desired_settings(group: &RunnerGroup) -> RunnerGroupSettings {
    let spec = &group.spec;
    let restricted = spec.restricted_to_workflows.unwrap_or(false);
    RunnerGroupSettings {
        name: group.group_name().to_string(),
        visibility: match spec.visibility.unwrap_or_default() {
            Visibility::All => GroupVisibility::All,
            Visibility::Selected => GroupVisibility::Selected,
            Visibility::Private => GroupVisibility::Private,
        },
        allows_public_repositories: spec.allows_public_repositories.unwrap_or(false),
        restricted_to_workflows: restricted,
        selected_workflows: if restricted {
            spec.selected_workflows.clone().unwrap_or_default()
        } else {
            Vec::new()
        },
    }
}

/// Whether GitHub's settings differ from the desired ones. Workflow lists
/// are compared as sets: GitHub may return them in another order.
pub fn settings_drifted(actual: &RunnerGroupSettings, desired: &RunnerGroupSettings) -> bool {
    let set = |s: &RunnerGroupSettings| {
        s.selected_workflows
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    actual.name != desired.name
        || actual.visibility != desired.visibility
        || actual.allows_public_repositories != desired.allows_public_repositories
        || actual.restricted_to_workflows != desired.restricted_to_workflows
        || (desired.restricted_to_workflows && set(actual) != set(desired))
}

/// `owner/name` pairs of the spec's repositories, in order, without repeats
/// (GitHub's names are case-insensitive).
pub fn repositories(group: &RunnerGroup) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    group
        .spec
        .selected_repositories
        .iter()
        .flatten()
        .filter_map(|r| r.split_once('/'))
        .filter(|(o, n)| seen.insert(format!("{o}/{n}").to_ascii_lowercase()))
        .map(|(o, n)| (o.to_string(), n.to_string()))
        .collect()
}

/// Repository ids to add to and remove from the group's access list.
pub fn repository_changes(desired: &[u64], actual: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let desired: BTreeSet<u64> = desired.iter().copied().collect();
    let actual: BTreeSet<u64> = actual.iter().copied().collect();
    (
        desired.difference(&actual).copied().collect(),
        actual.difference(&desired).copied().collect(),
    )
}

/// What the status should say now. `group` is the id and name on GitHub
/// once created or adopted; `problem` is what stands in the way.
pub fn status(
    object: &RunnerGroup,
    group: Option<(u64, &str)>,
    runners: Option<usize>,
    problem: Option<(Problem, String)>,
    now: Timestamp,
) -> RunnerGroupStatus {
    let previous = object.status.clone().unwrap_or_default();
    let generation = object.metadata.generation;
    let (ready, ready_reason, ready_message) = match (&problem, group) {
        (Some((p, message)), _) => (false, p.reason(), message.clone()),
        (None, Some((id, name))) => (
            true,
            "Synced",
            format!("runner group {name:?} (id {id}) matches the spec"),
        ),
        (None, None) => (false, "Pending", "the group is not created yet".to_string()),
    };
    let (degraded, degraded_reason, degraded_message) = match &problem {
        Some((p, message)) => (true, p.reason(), message.clone()),
        None => (
            false,
            "AsExpected",
            "GitHub answers as expected".to_string(),
        ),
    };
    RunnerGroupStatus {
        observed_generation: generation,
        group_id: group.map(|(id, _)| id as i64).or(previous.group_id),
        group_name: group
            .map(|(_, name)| name.to_string())
            .or(previous.group_name),
        runners: runners
            .map(|n| n.min(i32::MAX as usize) as i32)
            .or(previous.runners),
        conditions: vec![
            condition(
                &previous.conditions,
                READY,
                Value::new(ready, ready_reason, ready_message),
                generation,
                now,
            ),
            condition(
                &previous.conditions,
                DEGRADED,
                Value::new(degraded, degraded_reason, degraded_message),
                generation,
                now,
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn group(yaml: &str) -> RunnerGroup {
        serde_yaml::from_str(yaml).unwrap()
    }

    const SELECTED: &str = r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerGroup
metadata: { name: team-a, namespace: ci, generation: 3 }
spec:
  github: { organization: acme, credentialsSecret: { name: gh } }
  visibility: selected
  selectedRepositories: [acme/app, ACME/App, acme/lib]
  selectedWorkflows: [acme/app/.github/workflows/ci.yml@refs/heads/main]
"#;

    #[test]
    fn settings_default_to_the_object_name_and_drop_workflows_unless_restricted() {
        let g = group(SELECTED);
        let s = desired_settings(&g);
        assert_eq!(s.name, "team-a");
        assert_eq!(s.visibility, GroupVisibility::Selected);
        assert!(!s.restricted_to_workflows);
        assert!(s.selected_workflows.is_empty());
        let mut named = g.clone();
        named.spec.name = Some("Team A".into());
        named.spec.restricted_to_workflows = Some(true);
        let s = desired_settings(&named);
        assert_eq!(s.name, "Team A");
        assert_eq!(s.selected_workflows.len(), 1);
    }

    #[test]
    fn drift_ignores_workflow_order_but_not_settings() {
        let mut desired = desired_settings(&group(SELECTED));
        desired.restricted_to_workflows = true;
        desired.selected_workflows = vec!["a/b/w.yml@x".into(), "a/b/v.yml@x".into()];
        let mut actual = desired.clone();
        actual.selected_workflows.reverse();
        assert!(!settings_drifted(&actual, &desired));
        actual.allows_public_repositories = true;
        assert!(settings_drifted(&actual, &desired));
        let mut renamed = desired.clone();
        renamed.name = "other".into();
        assert!(settings_drifted(&renamed, &desired));
    }

    #[test]
    fn repositories_are_deduplicated_case_insensitively() {
        assert_eq!(
            repositories(&group(SELECTED)),
            [
                ("acme".to_string(), "app".to_string()),
                ("acme".to_string(), "lib".to_string())
            ]
        );
    }

    #[test]
    fn repository_changes_add_the_missing_and_remove_the_extra() {
        assert_eq!(
            repository_changes(&[1, 2, 3], &[3, 4]),
            (vec![1, 2], vec![4])
        );
        assert_eq!(repository_changes(&[], &[]), (vec![], vec![]));
    }

    #[test]
    fn status_keeps_the_group_id_and_transition_times() {
        let mut g = group(SELECTED);
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let s = status(&g, Some((42, "team-a")), Some(2), None, t0);
        assert_eq!(
            (s.group_id, s.runners, s.observed_generation),
            (Some(42), Some(2), Some(3))
        );
        assert_eq!(s.conditions[0].status, "True");
        g.status = Some(s);
        let problem = (
            Problem::RepositoryNotFound,
            "repository acme/x not found".into(),
        );
        let s = status(&g, None, None, Some(problem), t1);
        assert_eq!(s.group_id, Some(42), "a problem never forgets the group");
        assert_eq!(s.conditions[0].reason, "RepositoryNotFound");
        assert_eq!(s.conditions[1].status, "True");
        assert_eq!(s.conditions[1].last_transition_time, Time(t1));
        g.status = Some(s);
        let s = status(&g, Some((42, "team-a")), Some(0), None, t1);
        assert_eq!(s.conditions[0].status, "True");
    }
}
