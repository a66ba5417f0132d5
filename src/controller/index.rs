//! The watch caches' objects indexed by pool, so a reconcile reads its own
//! pods and Secrets, not the whole cache.
//!
//! Fed by the watch events after the reflector stored them; the names it
//! holds are looked up in the reflector's store. A relist (`Init` …
//! `InitDone`) builds a new index and replaces the old one at its end, as the
//! store does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::Resource;
use kube::runtime::watcher::Event;

use crate::mutex::lock;
use crate::runner::POOL_LABEL;

/// (namespace, pool name) → names of the objects labelled with that pool.
type ByPool = HashMap<(String, String), BTreeSet<String>>;

#[derive(Default)]
pub struct PoolIndex {
    current: Mutex<ByPool>,
    /// Being rebuilt by a relist.
    next: Mutex<Option<ByPool>>,
}

fn key<K: Resource>(object: &K) -> Option<((String, String), String)> {
    let meta = object.meta();
    let pool = meta.labels.as_ref()?.get(POOL_LABEL)?;
    Some(((meta.namespace.clone()?, pool.clone()), meta.name.clone()?))
}

impl PoolIndex {
    /// Applies one watch event.
    pub fn observe<K: Resource>(&self, event: &Event<K>) {
        match event {
            Event::Apply(object) => {
                if let Some((pool, name)) = key(object) {
                    lock(&self.current).entry(pool).or_default().insert(name);
                }
            }
            Event::Delete(object) => {
                if let Some((pool, name)) = key(object) {
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
                if let (Some((pool, name)), Some(next)) = (key(object), lock(&self.next).as_mut()) {
                    next.entry(pool).or_default().insert(name);
                }
            }
            Event::InitDone => {
                if let Some(next) = lock(&self.next).take() {
                    *lock(&self.current) = next;
                }
            }
        }
    }

    /// Names of the objects labelled with the pool `name` in `namespace`.
    pub fn names(&self, namespace: &str, name: &str) -> Vec<String> {
        lock(&self.current)
            .get(&(namespace.to_string(), name.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

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
}
