//! Pure decisions of the RunnerGroup controller: the settings GitHub should
//! show, the access-list edits that get there, whether a group found by name
//! may be managed, and the status.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{RunnerGroup, RunnerGroupStatus, Visibility};
use crate::github::{GroupVisibility, RunnerGroupInfo, RunnerGroupSettings};
use crate::kit::conditions::{Value, condition};
use crate::kit::problem::{Blocked, Problem};

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

/// Organization logins of an enterprise group's spec, in order, without
/// repeats (case-insensitive).
pub fn organizations(group: &RunnerGroup) -> Vec<String> {
    let mut seen = BTreeSet::new();
    group
        .spec
        .selected_organizations
        .iter()
        .flatten()
        .filter(|o| seen.insert(o.to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// Why a group of the desired name, found while no id is in status, is
/// managed from now on.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// `spec.adopt: true`.
    Adopted,
    /// The operator recorded that it was creating a group of this name
    /// (`status.creating`): the create call went through, but its answer or
    /// the status write that followed was lost.
    Ours,
}

/// Whether a group found by name may be managed, and why; otherwise what
/// stands in the way. An enterprise's shared group and the default group
/// are never managed, whatever the spec says.
pub fn claim(object: &RunnerGroup, found: &RunnerGroupInfo, scope: &str) -> Result<Claim, Blocked> {
    let name = &found.settings.name;
    if found.default {
        return Err(Blocked::new(
            Problem::Rejected,
            format!("{name:?} is the default group of {scope}, which cannot be managed"),
        ));
    }
    if found.inherited {
        return Err(Blocked::new(
            Problem::Inherited,
            format!(
                "runner group {name:?} (id {}) is shared with {scope} by its enterprise: an organization can neither change nor delete it, so it is left alone. Manage it with an enterprise RunnerGroup, or choose another spec.name",
                found.id
            ),
        ));
    }
    if group_intended(object, name) {
        return Ok(Claim::Ours);
    }
    if object.spec.adopt.unwrap_or(false) {
        return Ok(Claim::Adopted);
    }
    Err(Blocked::new(
        Problem::AlreadyExists,
        format!(
            "a runner group named {name:?} (id {}) already exists in {scope}: set spec.adopt: true to manage it (it is then deleted with this RunnerGroup unless deletionPolicy is Retain)",
            found.id
        ),
    ))
}

/// Whether status records that the operator was creating a group `name`.
fn group_intended(object: &RunnerGroup, name: &str) -> bool {
    object
        .status
        .as_ref()
        .and_then(|s| s.creating.as_deref())
        .is_some_and(|c| c.eq_ignore_ascii_case(name))
}

/// The status to write before creating group `name`: the intent, kept until
/// the group's id is recorded.
pub fn creating(object: &RunnerGroup, name: &str) -> RunnerGroupStatus {
    RunnerGroupStatus {
        creating: Some(name.to_string()),
        ..object.status.clone().unwrap_or_default()
    }
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
        // The intent to create is done with once the group is known.
        creating: previous.creating.filter(|_| group.is_none()),
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

    fn found(name: &str) -> RunnerGroupInfo {
        RunnerGroupInfo {
            id: 7,
            default: false,
            inherited: false,
            settings: desired_settings(&group(&SELECTED.replace("team-a", name))),
        }
    }

    #[test]
    fn a_group_found_by_name_is_managed_only_when_adopted_or_being_created() {
        let mut g = group(SELECTED);
        let refused = claim(&g, &found("team-a"), "orgs/acme").unwrap_err();
        assert_eq!(refused.problem, Problem::AlreadyExists);
        // The create call went out, its answer or the status write was lost.
        g.status = Some(creating(&g, "team-a"));
        assert_eq!(
            claim(&g, &found("Team-A"), "orgs/acme").ok(),
            Some(Claim::Ours)
        );
        // ... but only for the name being created.
        let other = claim(&g, &found("team-b"), "orgs/acme").unwrap_err();
        assert_eq!(other.problem, Problem::AlreadyExists);
        g.spec.adopt = Some(true);
        assert_eq!(
            claim(&g, &found("team-b"), "orgs/acme").ok(),
            Some(Claim::Adopted)
        );
        // Never an enterprise's shared group or the default one.
        let mut shared = found("team-a");
        shared.inherited = true;
        let refused = claim(&g, &shared, "orgs/acme").unwrap_err();
        assert_eq!(refused.problem, Problem::Inherited);
        let mut default = found("Default");
        default.default = true;
        assert_eq!(
            claim(&g, &default, "orgs/acme").unwrap_err().problem,
            Problem::Rejected
        );
        // The intent is forgotten once the group's id is recorded.
        let s = status(&g, Some((7, "team-a")), None, None, Timestamp::now());
        assert_eq!(s.creating, None);
        g.status = Some(creating(&g, "team-a"));
        let s = status(&g, None, None, None, Timestamp::now());
        assert_eq!(s.creating.as_deref(), Some("team-a"));
    }

    #[test]
    fn organizations_are_deduplicated_case_insensitively() {
        let mut g = group(SELECTED);
        g.spec.selected_organizations = Some(vec!["acme".into(), "ACME".into(), "beta".into()]);
        assert_eq!(organizations(&g), ["acme", "beta"]);
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
