//! A reconcile is the object's finalizer and nothing else (kube-runtime's
//! `finalizer`: apply while the object lives, clean up once it is deleted),
//! bounded in time so that no work outlives this replica's claim on the
//! leader Lease by much and a shutdown never waits long. An abandoned pass is
//! like a crash at that point: the next pass finds what it left.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;

/// Runs `reconcile` through the finalizer `name` on `object`, abandoning it
/// after `bound` ([`Error::ReconcileTimeout`]).
pub async fn finalize_within<K, F, Fut>(
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
    bound: Duration,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
    F: FnOnce(Event<K>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let work = finalizer(api, name, object, reconcile);
    match tokio::time::timeout(bound, work).await {
        Ok(done) => done.map_err(|e| Error::Finalizer(Box::new(e))),
        Err(_) => Err(Error::ReconcileTimeout(bound)),
    }
}
