//! Which pool a job belongs to. Pure: the controller hands in what it knows of
//! each pool and the job; the answer is at most one pool.
//!
//! The rule (also in the README):
//! 1. The job's repository must be in the pool's scope: the repository itself
//!    for a repository pool, its owner for an organization pool, the payload's
//!    enterprise for an enterprise pool (names compared case-insensitively).
//! 2. Every label of the job's `runs-on` must be among the pool's labels,
//!    case-insensitively; `self-hosted` always matches.
//! 3. When several pools match, exactly one gets the job: the most specific
//!    (fewest labels beyond the job's), then one with free capacity, then the
//!    first by namespace and name.

use std::collections::BTreeSet;

use crate::github::Scope;

/// A pool, as matching sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<K> {
    /// What the caller uses to find the pool again (e.g. its UID or ObjectRef).
    pub key: K,
    pub namespace: String,
    pub name: String,
    pub scope: Scope,
    pub labels: Vec<String>,
    /// Whether the pool can still add a runner.
    pub has_free_capacity: bool,
}

/// A job, as matching sees it.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    pub repository: &'a str,
    pub owner: &'a str,
    pub enterprise: Option<&'a str>,
    pub labels: &'a [String],
}

const SELF_HOSTED: &str = "self-hosted";

fn in_scope(scope: &Scope, job: &Job<'_>) -> bool {
    match scope {
        Scope::Repository { owner, repo } => {
            let (job_owner, job_repo) = job.repository.split_once('/').unwrap_or(("", ""));
            owner.eq_ignore_ascii_case(job_owner) && repo.eq_ignore_ascii_case(job_repo)
        }
        Scope::Organization(org) => org.eq_ignore_ascii_case(job.owner),
        Scope::Enterprise(slug) => job.enterprise.is_some_and(|e| slug.eq_ignore_ascii_case(e)),
    }
}

/// How many labels the pool has beyond the job's, or `None` when the pool
/// lacks one of the job's labels.
fn extra_labels(pool_labels: &[String], job_labels: &[String]) -> Option<usize> {
    let pool: BTreeSet<String> = pool_labels
        .iter()
        .map(|l| l.to_lowercase())
        .filter(|l| l != SELF_HOSTED)
        .collect();
    let job: BTreeSet<String> = job_labels
        .iter()
        .map(|l| l.to_lowercase())
        .filter(|l| l != SELF_HOSTED)
        .collect();
    job.is_subset(&pool).then(|| pool.difference(&job).count())
}

/// The one pool that gets `job`, by the rule above; `None` when none matches.
pub fn choose<'c, K>(job: &Job<'_>, pools: &'c [Candidate<K>]) -> Option<&'c Candidate<K>> {
    pools
        .iter()
        .filter(|p| in_scope(&p.scope, job))
        .filter_map(|p| extra_labels(&p.labels, job.labels).map(|extra| (extra, p)))
        .min_by(|(a_extra, a), (b_extra, b)| {
            a_extra
                .cmp(b_extra)
                .then(b.has_free_capacity.cmp(&a.has_free_capacity))
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        })
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, scope: Scope, labels: &[&str], free: bool) -> Candidate<String> {
        Candidate {
            key: name.to_string(),
            namespace: "ci".into(),
            name: name.into(),
            scope,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            has_free_capacity: free,
        }
    }

    fn org(o: &str) -> Scope {
        Scope::Organization(o.into())
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    fn job<'a>(labels: &'a [String]) -> Job<'a> {
        Job {
            repository: "Acme/App",
            owner: "Acme",
            enterprise: Some("bigcorp"),
            labels,
        }
    }

    fn chosen(job: &Job<'_>, pools: &[Candidate<String>]) -> Option<String> {
        choose(job, pools).map(|p| p.key.clone())
    }

    #[test]
    fn scope_must_contain_the_repository() {
        let l = labels(&["self-hosted", "linux"]);
        let repo = |o: &str, r: &str| Scope::Repository {
            owner: o.into(),
            repo: r.into(),
        };
        for (scope, matches) in [
            (org("acme"), true),
            (org("other"), false),
            (repo("acme", "app"), true),
            (repo("acme", "web"), false),
            (Scope::Enterprise("BigCorp".into()), true),
            (Scope::Enterprise("smallcorp".into()), false),
        ] {
            let pools = [pool("p", scope.clone(), &["linux"], true)];
            assert_eq!(chosen(&job(&l), &pools).is_some(), matches, "{scope:?}");
        }
        let no_enterprise = Job {
            enterprise: None,
            ..job(&l)
        };
        let pools = [pool(
            "p",
            Scope::Enterprise("bigcorp".into()),
            &["linux"],
            true,
        )];
        assert_eq!(chosen(&no_enterprise, &pools), None);
    }

    #[test]
    fn every_job_label_must_be_a_pool_label_case_insensitively() {
        let pools = [pool("p", org("acme"), &["Linux", "GPU"], true)];
        for (job_labels, matches) in [
            (&["self-hosted"][..], true),
            (&["SELF-HOSTED", "linux"], true),
            (&["linux", "gpu"], true),
            (&["linux", "arm64"], false),
            (&[], true),
        ] {
            let l = labels(job_labels);
            assert_eq!(
                chosen(&job(&l), &pools).is_some(),
                matches,
                "{job_labels:?}"
            );
        }
    }

    #[test]
    fn the_most_specific_pool_wins_then_free_capacity_then_name() {
        let l = labels(&["self-hosted", "linux"]);
        let pools = [
            pool("big", org("acme"), &["linux", "gpu", "x64"], true),
            pool("gpu", org("acme"), &["linux", "gpu"], true),
            pool("plain-b", org("acme"), &["linux"], true),
            pool("plain-a", org("acme"), &["linux", "self-hosted"], true),
        ];
        assert_eq!(chosen(&job(&l), &pools).as_deref(), Some("plain-a"));
        let mut full = pools.clone();
        full[3].has_free_capacity = false;
        assert_eq!(chosen(&job(&l), &full).as_deref(), Some("plain-b"));
        let gpu = labels(&["linux", "gpu"]);
        assert_eq!(chosen(&job(&gpu), &pools).as_deref(), Some("gpu"));
        let none = labels(&["windows"]);
        assert_eq!(chosen(&job(&none), &pools), None);
    }

    #[test]
    fn the_choice_does_not_depend_on_the_order_of_pools() {
        let l = labels(&["linux"]);
        let mut pools = vec![
            pool("c", org("acme"), &["linux"], false),
            pool("b", org("acme"), &["linux"], true),
            pool("a", org("acme"), &["linux", "gpu"], true),
            pool("d", org("acme"), &["linux"], true),
        ];
        let first = chosen(&job(&l), &pools);
        assert_eq!(first.as_deref(), Some("b"));
        for _ in 0..pools.len() {
            pools.rotate_left(1);
            assert_eq!(chosen(&job(&l), &pools), first);
        }
    }
}
