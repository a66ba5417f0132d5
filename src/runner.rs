//! A runner's identity.
//!
//! Every runner is three things with one name: a registration on GitHub, a
//! Secret holding its just-in-time configuration, and a pod that uses it. This
//! module names them and marks them as the pool's: the labels that tie a pod
//! or Secret to its pool and runner, the ownership label on GitHub, and the
//! labels a runner registers with. [`crate::pod`] builds the objects.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::RunnerPool;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "runnerpool-operator";
/// The pool a pod or Secret belongs to (the pool's name).
pub const POOL_LABEL: &str = "actions.runnerpool.dev/pool";
/// The UID of the pool a pod or Secret belongs to. Runner pods carry no
/// ownerReference to their pool (the garbage collector would then delete busy
/// runners with it); this label is their tie to the pool, and tells runners of
/// a deleted pool from those of a new pool of the same name.
pub const POOL_UID_LABEL: &str = "actions.runnerpool.dev/pool-uid";
/// The GitHub runner id a pod or Secret stands for.
pub const RUNNER_ID_LABEL: &str = "actions.runnerpool.dev/runner-id";
/// Hash of the custom labels last set on the runner, so label changes are
/// pushed once per runner rather than on every reconcile.
pub const LABELS_HASH_ANNOTATION: &str = "actions.runnerpool.dev/labels-hash";
/// The Secret key holding the encoded JIT configuration.
pub const JIT_CONFIG_KEY: &str = "jitconfig";
/// The variable the official runner image reads its JIT configuration from.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
pub const RUNNER_CONTAINER: &str = "runner";
pub const DEFAULT_RUNNER_COMMAND: &str = "/home/runner/run.sh";

/// Labels GitHub gives every self-hosted runner and types `read-only`: they
/// can be set when a runner registers but not changed on a live runner.
pub const READ_ONLY_LABELS: &[&str] = &[
    "self-hosted",
    "linux",
    "windows",
    "macos",
    "x64",
    "arm",
    "arm64",
];

pub fn is_read_only_label(label: &str) -> bool {
    READ_ONLY_LABELS
        .iter()
        .any(|l| l.eq_ignore_ascii_case(label))
}

/// The label that marks a GitHub runner as registered by this pool of this
/// operator installation. Garbage collection only ever touches runners that
/// carry it. It is derived from the pool's UID (unique per object, so a pool
/// deleted and recreated under the same name is a different owner) and the
/// install id (so clusters sharing an organization never collect each other's).
pub fn ownership_label(install_id: &str, pool_uid: &str) -> String {
    let digest = Sha256::digest(format!("{install_id}/{pool_uid}").as_bytes());
    format!("runnerpool-{}", &hex::encode(digest)[..16])
}

/// Random characters in a runner name. With 27 symbols, 10 characters give
/// 27^10 ≈ 2·10^14 names: the chance that any two of 10,000 live runners
/// share one is about 2.5·10^-7, so a 409 on generate-jitconfig is a rarity
/// to retry, never a signal to act on.
pub const NAME_SUFFIX_LEN: usize = 10;

/// A fresh runner name: the pool's prefix, a dash and [`NAME_SUFFIX_LEN`]
/// random characters (no vowels, so no words; no 0/1/3 lookalikes).
pub fn new_runner_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..NAME_SUFFIX_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let prefix = prefix.trim_end_matches('-');
    let prefix = &prefix[..prefix.len().min(crate::crd::MAX_NAME_PREFIX)];
    format!("{prefix}-{suffix}")
}

/// The labels a new runner registers with: the pool's labels, then the ownership mark.
pub fn registration_labels(pool: &RunnerPool, ownership: &str) -> Vec<String> {
    let mut labels: Vec<String> = Vec::with_capacity(pool.spec.labels.len() + 1);
    for label in &pool.spec.labels {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    labels.push(ownership.to_string());
    labels
}

/// The custom labels a live runner should carry: the pool's labels that GitHub
/// lets us change, plus the ownership mark. Sorted, so it compares as a set.
pub fn desired_custom_labels(pool: &RunnerPool, ownership: &str) -> Vec<String> {
    let mut labels: Vec<String> = pool
        .spec
        .labels
        .iter()
        .filter(|l| !is_read_only_label(l))
        .cloned()
        .chain(std::iter::once(ownership.to_string()))
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

pub fn labels_hash(custom_labels: &[String]) -> String {
    let mut hasher = Sha256::new();
    for label in custom_labels {
        hasher.update(label.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Labels marking an object as the pool's: its runners' pods and Secrets,
/// and the objects of kubernetes mode (by label, not ownerReference).
pub fn pool_labels(pool: &RunnerPool) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (POOL_LABEL.to_string(), pool.name_any()),
        (
            POOL_UID_LABEL.to_string(),
            pool.metadata.uid.clone().unwrap_or_default(),
        ),
    ])
}

/// Labels shared by a runner's pod and Secret.
pub fn runner_labels(pool: &RunnerPool, runner_id: u64) -> BTreeMap<String, String> {
    let mut labels = pool_labels(pool);
    labels.insert(RUNNER_ID_LABEL.to_string(), runner_id.to_string());
    labels
}

/// The label selector that finds every pod and Secret of a pool.
pub fn pool_selector(pool_name: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{POOL_LABEL}={pool_name}")
}

/// The UID of the pool a pod or Secret belongs to, by its label.
pub fn pool_uid_of<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .labels
        .as_ref()?
        .get(POOL_UID_LABEL)
        .map(String::as_str)
}

/// The GitHub runner id recorded on a pod or Secret.
pub fn runner_id_of<K: Resource>(object: &K) -> Option<u64> {
    object
        .meta()
        .labels
        .as_ref()?
        .get(RUNNER_ID_LABEL)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::build::tests::{POOL, pool_from_yaml};

    #[test]
    fn names_fit_github_and_kubernetes_limits() {
        let long = "a".repeat(80);
        let longest = "b".repeat(crate::crd::MAX_NAME_PREFIX);
        for prefix in ["ci", "ci-", long.as_str(), longest.as_str()] {
            let name = new_runner_name(prefix);
            assert!(name.len() <= 63, "{name}");
            assert!(name.starts_with(&prefix[..prefix.len().min(2)]));
            assert!(!name.contains("--"));
            let (_, suffix) = name.rsplit_once('-').unwrap();
            assert_eq!(suffix.len(), NAME_SUFFIX_LEN);
        }
        // The longest prefix the CRD accepts is used whole.
        assert!(new_runner_name(&longest).starts_with(&format!("{longest}-")));
        assert_ne!(new_runner_name("ci"), new_runner_name("ci"));
    }

    #[test]
    fn name_collisions_are_negligible_at_ten_thousand_runners() {
        // Birthday bound: P(any clash among n) <= n^2 / (2 * 27^len).
        let n = 10_000f64;
        let names = 27f64.powi(NAME_SUFFIX_LEN as i32);
        assert!(n * n / (2.0 * names) < 1e-6);
        // And drawn names really are spread: 20,000 draws, no repeat.
        let drawn: std::collections::HashSet<String> =
            (0..20_000).map(|_| new_runner_name("ci")).collect();
        assert_eq!(drawn.len(), 20_000);
    }

    #[test]
    fn ownership_label_depends_on_install_and_pool() {
        let a = ownership_label("cluster-a", "uid-1");
        assert_eq!(a, ownership_label("cluster-a", "uid-1"));
        assert_ne!(a, ownership_label("cluster-b", "uid-1"));
        assert_ne!(a, ownership_label("cluster-a", "uid-2"));
        assert!(a.starts_with("runnerpool-") && a.len() < 64);
    }

    #[test]
    fn registration_and_custom_labels() {
        let pool = pool_from_yaml(POOL);
        assert_eq!(
            registration_labels(&pool, "runnerpool-x"),
            ["self-hosted", "linux", "gpu", "big", "runnerpool-x"]
        );
        assert_eq!(
            desired_custom_labels(&pool, "runnerpool-x"),
            ["big", "gpu", "runnerpool-x"]
        );
        assert_ne!(
            labels_hash(&["a".into(), "bc".into()]),
            labels_hash(&["ab".into(), "c".into()])
        );
    }
}
