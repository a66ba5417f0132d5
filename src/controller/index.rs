//! The watch caches' objects indexed by pool, so a reconcile reads its own
//! pods and Secrets, not the whole cache.
//!
//! Fed by the watch events. For pods, the names it holds are looked up in the
//! reflector's store. Runner Secrets have no store: the index keeps, with
//! each name, the little the operator reads of a Secret ([`SecretEntry`]),
//! which is all of the Secret cache. A relist (`Init` … `InitDone`) builds a
//! new index and replaces the old one at its end, as a store does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Resource;
use kube::api::ObjectMeta;
use kube::runtime::watcher::Event;

use crate::mutex::lock;
use crate::runner::{POOL_LABEL, POOL_UID_LABEL, RUNNER_ID_LABEL};

/// (namespace, pool name) → name → what is kept of each object labelled
/// with that pool.
type ByPool<V> = HashMap<(String, String), BTreeMap<String, V>>;

pub struct PoolIndex<V = ()> {
    current: Mutex<ByPool<V>>,
    /// Being rebuilt by a relist.
    next: Mutex<Option<ByPool<V>>>,
    /// What is kept of an object besides its name.
    keep: fn(&ObjectMeta) -> V,
    /// The first list is in.
    listed: AtomicBool,
}

/// What the operator reads of a runner Secret: whose runner it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretEntry {
    pub runner_id: Option<u64>,
    /// The pool-UID label.
    pub pool_uid: Option<Box<str>>,
    /// Without that label (made by an older operator): the UID of the
    /// Secret's controlling owner.
    pub controller_uid: Option<Box<str>>,
}

impl SecretEntry {
    pub fn of(meta: &ObjectMeta) -> SecretEntry {
        let label = |key: &str| meta.labels.as_ref()?.get(key);
        let pool_uid = label(POOL_UID_LABEL).map(|u| u.as_str().into());
        let controller_uid = match pool_uid {
            Some(_) => None,
            None => meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.as_str().into()),
        };
        SecretEntry {
            runner_id: label(RUNNER_ID_LABEL).and_then(|id| id.parse().ok()),
            pool_uid,
            controller_uid,
        }
    }

    /// Whether it belongs to the pool of UID `pool_uid` (its name label was
    /// matched by the index): by the pool-UID label, so that a new pool of
    /// the same name never adopts a deleted one's, else by its controller.
    pub fn is_pools(&self, pool_uid: &str) -> bool {
        match &self.pool_uid {
            Some(uid) => **uid == *pool_uid,
            None => self.controller_uid.as_deref() == Some(pool_uid),
        }
    }
}

impl Default for PoolIndex<()> {
    fn default() -> Self {
        PoolIndex::keeping(|_| ())
    }
}

impl PoolIndex<SecretEntry> {
    pub fn of_secrets() -> Self {
        PoolIndex::keeping(SecretEntry::of)
    }
}

fn key(meta: &ObjectMeta) -> Option<((String, String), String)> {
    let pool = meta.labels.as_ref()?.get(POOL_LABEL)?;
    Some(((meta.namespace.clone()?, pool.clone()), meta.name.clone()?))
}

impl<V: Clone> PoolIndex<V> {
    fn keeping(keep: fn(&ObjectMeta) -> V) -> Self {
        PoolIndex {
            current: Mutex::default(),
            next: Mutex::default(),
            keep,
            listed: AtomicBool::new(false),
        }
    }

    /// Applies one watch event.
    pub fn observe<K: Resource>(&self, event: &Event<K>) {
        match event {
            Event::Apply(object) => {
                let meta = object.meta();
                if let Some((pool, name)) = key(meta) {
                    let value = (self.keep)(meta);
                    lock(&self.current)
                        .entry(pool)
                        .or_default()
                        .insert(name, value);
                }
            }
            Event::Delete(object) => {
                if let Some((pool, name)) = key(object.meta()) {
                    let mut current = lock(&self.current);
                    if let Some(names) = current.get_mut(&pool) {
                        names.remove(&name);
                        if names.is_empty() {
                            current.remove(&pool);
                        }
                    }
                }
            }
            Event::Init => *lock(&self.next) = Some(ByPool::new()),
            Event::InitApply(object) => {
                let meta = object.meta();
                if let (Some((pool, name)), Some(next)) = (key(meta), lock(&self.next).as_mut()) {
                    next.entry(pool)
                        .or_default()
                        .insert(name, (self.keep)(meta));
                }
            }
            Event::InitDone => {
                if let Some(next) = lock(&self.next).take() {
                    *lock(&self.current) = next;
                }
                self.listed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Names of the objects labelled with the pool `name` in `namespace`.
    pub fn names(&self, namespace: &str, name: &str) -> Vec<String> {
        self.entries(namespace, name)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// The objects labelled with the pool `name` in `namespace`, by name.
    pub fn entries(&self, namespace: &str, name: &str) -> Vec<(String, V)> {
        lock(&self.current)
            .get(&(namespace.to_string(), name.to_string()))
            .map(|objects| {
                objects
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every object: namespace, name and what is kept of it.
    pub fn all(&self) -> Vec<(String, String, V)> {
        lock(&self.current)
            .iter()
            .flat_map(|((namespace, _), objects)| {
                objects
                    .iter()
                    .map(|(n, v)| (namespace.clone(), n.clone(), v.clone()))
            })
            .collect()
    }

    /// Waits until the first full list is in.
    pub async fn listed(&self) {
        while !self.listed.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn pod(ns: &str, name: &str, pool: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: pool.map(|p| [(POOL_LABEL.to_string(), p.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let index = PoolIndex::default();
        index.observe(&Event::Apply(pod("a", "ci-1", Some("ci"))));
        index.observe(&Event::Apply(pod("a", "ci-2", Some("ci"))));
        index.observe(&Event::Apply(pod("b", "ci-3", Some("ci"))));
        index.observe(&Event::Apply(pod("a", "other", None)));
        assert_eq!(index.names("a", "ci"), ["ci-1", "ci-2"]);
        assert_eq!(index.names("b", "ci"), ["ci-3"]);

        index.observe(&Event::Delete(pod("a", "ci-1", Some("ci"))));
        assert_eq!(index.names("a", "ci"), ["ci-2"]);

        // A relist replaces the index only once complete.
        index.observe(&Event::<Pod>::Init);
        index.observe(&Event::InitApply(pod("a", "ci-4", Some("ci"))));
        assert_eq!(index.names("a", "ci"), ["ci-2"]);
        index.observe(&Event::<Pod>::InitDone);
        assert_eq!(index.names("a", "ci"), ["ci-4"]);
        assert!(index.names("b", "ci").is_empty());
    }

    fn secret(name: &str, labels: &[(&str, &str)], controller: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                owner_references: controller.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    #[tokio::test]
    async fn a_secret_is_kept_as_its_runner_and_pool() {
        let index = PoolIndex::of_secrets();
        assert!(
            futures::FutureExt::now_or_never(index.listed()).is_none(),
            "not listed before the first list"
        );
        index.observe(&Event::<Secret>::Init);
        index.observe(&Event::InitApply(secret(
            "ci-1",
            &[
                (POOL_LABEL, "ci"),
                (POOL_UID_LABEL, "u1"),
                (RUNNER_ID_LABEL, "7"),
            ],
            // The owner the operator ties it to is its pod, not the pool.
            Some("pod-uid"),
        )));
        // Made by an older operator: no pool-UID label, the pool its controller.
        index.observe(&Event::InitApply(secret(
            "ci-old",
            &[(POOL_LABEL, "ci")],
            Some("u1"),
        )));
        index.observe(&Event::<Secret>::InitDone);
        assert!(futures::FutureExt::now_or_never(index.listed()).is_some());

        let entries = index.entries("ns", "ci");
        assert_eq!(entries.len(), 2);
        let (name, first) = &entries[0];
        assert_eq!(name, "ci-1");
        assert_eq!(first.runner_id, Some(7));
        assert!(first.is_pools("u1"));
        assert!(!first.is_pools("pod-uid"), "the label decides when present");
        assert!(!first.is_pools("u2"));
        let (_, old) = &entries[1];
        assert_eq!(old.runner_id, None);
        assert!(old.is_pools("u1"));
        assert!(!old.is_pools("u2"));

        assert_eq!(
            index
                .all()
                .into_iter()
                .map(|(ns, name, _)| format!("{ns}/{name}"))
                .collect::<Vec<_>>(),
            ["ns/ci-1", "ns/ci-old"]
        );
    }
}
