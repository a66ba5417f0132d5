//! Which pool a job belongs to. Pure: the controller hands in what it knows of
//! each pool and the job; the answer is at most one pool.
//!
//! The rule (also in the README):
//! 1. The job's repository must be in the pool's scope: the repository itself
//!    for a repository pool, its owner for an organization pool, the payload's
//!    enterprise for an enterprise pool (names compared case-insensitively).
//! 2. Every label of the job's `runs-on` must be among the pool's labels,
//!    case-insensitively; `self-hosted` always matches.
//!    (The caller drops pools whose runner group does not admit the job's
//!    repository before asking.)
//! 3. When several pools match, exactly one gets the job: the most specific
//!    (fewest labels beyond the job's), then one with free capacity; among
//!    pools still tied, the one whose [`spread`] score for the job is the
//!    highest (rendezvous hashing of the job id and the pool's
//!    namespace/name): the same job always goes to the same pool whatever
//!    the order pools are listed in, and tied pools take jobs about equally.

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
    /// GitHub's job id (breaks ties between pools, see [`spread`]).
    pub id: u64,
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

/// A pool's score for a job among tied pools: FNV-1a (64 bit) of the pool's
/// `namespace/name`, a `/` and the job id in decimal, mixed by MurmurHash3's
/// 64-bit finalizer. Fixed here (not
/// Rust's hasher, which may change) so every replica and version agrees.
pub fn spread(job_id: u64, namespace: &str, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let key = format!("{namespace}/{name}/{job_id}");
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // MurmurHash3's 64-bit finalizer: FNV alone scores keys that differ in
    // one late byte too alike, and some tied pools would starve.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
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
                .then_with(|| {
                    let score = |p: &Candidate<K>| spread(job.id, &p.namespace, &p.name);
                    score(b).cmp(&score(a))
                })
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
            id: 7,
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
    fn the_most_specific_pool_wins_then_free_capacity_then_the_spread() {
        let l = labels(&["self-hosted", "linux"]);
        let pools = [
            pool("big", org("acme"), &["linux", "gpu", "x64"], true),
            pool("gpu", org("acme"), &["linux", "gpu"], true),
            pool("plain-b", org("acme"), &["linux"], true),
            pool("plain-a", org("acme"), &["linux", "self-hosted"], true),
        ];
        let first = chosen(&job(&l), &pools).unwrap();
        assert!(first.starts_with("plain-"), "{first}");
        let mut full = pools.clone();
        let at = pools.iter().position(|p| p.key == first).unwrap();
        full[at].has_free_capacity = false;
        let other = chosen(&job(&l), &full).unwrap();
        assert!(other.starts_with("plain-") && other != first, "{other}");
        let gpu = labels(&["linux", "gpu"]);
        assert_eq!(chosen(&job(&gpu), &pools).as_deref(), Some("gpu"));
        let none = labels(&["windows"]);
        assert_eq!(chosen(&job(&none), &pools), None);
    }

    #[test]
    fn tied_pools_share_jobs_and_a_job_keeps_its_pool() {
        let l = labels(&["linux"]);
        let pools: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| pool(n, org("acme"), &["linux"], true))
            .collect();
        let mut taken = std::collections::BTreeMap::<String, u32>::new();
        for id in 0..4000 {
            let job = Job { id, ..job(&l) };
            let pool = chosen(&job, &pools).unwrap();
            assert_eq!(chosen(&job, &pools).unwrap(), pool, "stable");
            *taken.entry(pool).or_default() += 1;
        }
        assert_eq!(taken.len(), 4, "{taken:?}");
        assert!(taken.values().all(|n| (800..1200).contains(n)), "{taken:?}");
        assert_eq!(spread(7, "ci", "a"), spread(7, "ci", "a"));
        assert_ne!(spread(7, "ci", "a"), spread(8, "ci", "a"));
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
        assert!(matches!(first.as_deref(), Some("b" | "d")), "{first:?}");
        for _ in 0..pools.len() {
            pools.rotate_left(1);
            assert_eq!(chosen(&job(&l), &pools), first);
        }
    }
}
