//! Events on the objects the controllers own. A failure to publish one is
//! logged and never fails a reconcile: the event is for people, the status
//! already says the same.
//!
//! Events are `events.k8s.io/v1` Events. The same event on the same object
//! within [`SERIES_WINDOW`] is not created again: the first one becomes a
//! series (`series.count`, `series.lastObservedTime`), as kube's own recorder
//! does. What is remembered for that is a hash of the event and where its
//! first copy lives (a few dozen bytes), not the whole Event as kube's
//! recorder keeps it: with a thousand pools that was megabytes.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use crate::mutex::lock;

pub use kube::runtime::events::EventType;

/// How long a published event is remembered to make a series of its repeats.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Who publishes: the controller's name and this process's pod.
const CONTROLLER: &str = "runnerpool-operator";

/// Publishes events, with a series for repeats.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    instance: String,
    sent: Arc<Mutex<Sent>>,
}

#[derive(Default)]
struct Sent {
    /// Hash of (object, type, reason, action, note) → the event made for it.
    series: HashMap<u64, Series>,
    swept: Option<Instant>,
}

struct Series {
    namespace: Box<str>,
    name: Box<str>,
    count: i32,
    last: Instant,
}

impl Recorder {
    /// A recorder reporting as this process (`POD_NAME`, else the controller).
    pub fn new(client: Client) -> Self {
        Recorder {
            client,
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| CONTROLLER.to_string()),
            sent: Arc::default(),
        }
    }

    /// Publishes `event`, or counts it in the series of the same event
    /// published within [`SERIES_WINDOW`].
    async fn publish(&self, event: K8sEvent) -> Result<(), kube::Error> {
        let key = key(&event);
        let now = Instant::now();
        let repeat = {
            let mut sent = lock(&self.sent);
            sent.sweep(now);
            sent.series.get_mut(&key).map(|s| {
                s.count += 1;
                s.last = now;
                (s.namespace.to_string(), s.name.to_string(), s.count)
            })
        };
        if let Some((namespace, name, count)) = repeat {
            let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            let series = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(Timestamp::now()),
            }});
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 404 => {} // gone: made anew below
                other => return other.map(|_| ()),
            }
        }
        let namespace = event.namespace().unwrap_or_default();
        let name = event.name_any();
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        lock(&self.sent).series.insert(
            key,
            Series {
                namespace: namespace.into(),
                name: name.into(),
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn event(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> K8sEvent {
        let now = Timestamp::now();
        // Cluster-scoped objects' events go to `default`, as kubectl looks for them.
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(CONTROLLER),
            now.as_nanosecond()
        );
        K8sEvent {
            metadata: ObjectMeta {
                namespace: Some(namespace),
                name: Some(name),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            regarding: Some(regarding),
            reporting_controller: Some(CONTROLLER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..K8sEvent::default()
        }
    }
}

impl Sent {
    /// Forgets events older than the window, at most once a minute.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.swept = Some(now);
        self.series
            .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
    }
}

/// The same object, type, reason, action and note: the same event.
fn key(event: &K8sEvent) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(o) = &event.regarding {
        (&o.api_version, &o.kind, &o.namespace, &o.name, &o.uid).hash(&mut h);
    }
    (&event.type_, &event.reason, &event.action, &event.note).hash(&mut h);
    h.finish()
}

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
    let event = recorder.event(object.object_ref(&()), type_, reason, action, note);
    if let Err(e) = recorder.publish(event).await {
        warn!(kind = %K::kind(&()), name = %object.name_any(), error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("actions.runnerpool.dev/v1alpha1".into()),
            kind: Some("RunnerPool".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }
    }

    #[tokio::test]
    async fn the_same_event_on_the_same_object_is_one_series() {
        // A client that is never used: building events makes no request.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let recorder = Recorder::new(Client::try_from(config).unwrap());
        let key = |o: &str, uid: &str, type_, reason: &str, action: &str, note: &str| {
            key(&recorder.event(object(o, uid), type_, reason, action, note.into()))
        };
        let a = key("a", "1", EventType::Normal, "Scaled", "Reconcile", "to 3");
        // Made at another instant, under another name: the same event.
        assert_eq!(
            a,
            key("a", "1", EventType::Normal, "Scaled", "Reconcile", "to 3")
        );
        for other in [
            key("a", "2", EventType::Normal, "Scaled", "Reconcile", "to 3"),
            key("b", "1", EventType::Normal, "Scaled", "Reconcile", "to 3"),
            key("a", "1", EventType::Warning, "Scaled", "Reconcile", "to 3"),
            key("a", "1", EventType::Normal, "Stalled", "Reconcile", "to 3"),
            key("a", "1", EventType::Normal, "Scaled", "Listen", "to 3"),
            key("a", "1", EventType::Normal, "Scaled", "Reconcile", "to 4"),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn events_older_than_the_window_are_forgotten_at_most_once_a_minute() {
        let start = Instant::now();
        let mut sent = Sent::default();
        let series = |last| Series {
            namespace: "ns".into(),
            name: "a.1".into(),
            count: 1,
            last,
        };
        sent.series.insert(1, series(start));
        sent.series
            .insert(2, series(start + Duration::from_secs(300)));
        sent.sweep(start + SERIES_WINDOW - Duration::from_secs(10));
        assert_eq!(sent.series.len(), 2);
        // Past the first one's window, but within a minute of the last sweep.
        sent.sweep(start + SERIES_WINDOW + Duration::from_secs(20));
        assert_eq!(sent.series.len(), 2);
        sent.sweep(start + SERIES_WINDOW + Duration::from_secs(60));
        assert_eq!(sent.series.keys().collect::<Vec<_>>(), [&2]);
    }
}
