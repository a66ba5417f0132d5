//! Events on the objects the controllers own. A failure to publish one is
//! logged and never fails a reconcile: the event is for people, the status
//! already says the same.

use kube::Resource;
use kube::ResourceExt;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// Publishes an event on `object`.
pub async fn publish<K>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
        warn!(kind = %K::kind(&()), name = %object.name_any(), error = %e, "could not publish event");
    }
}
