//! Conditions as Kubernetes conventions (and so `kubectl wait`, Argo CD,
//! Flux and kstatus) expect them: `lastTransitionTime` moves only when a
//! condition's status changes, `observedGeneration` says which spec it is about.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// One condition's value: status, reason and message.
pub struct Value {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Value {
    pub fn new(status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Value {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Condition `type_` with `value`, keeping the transition time of the
/// previous condition of that type when its status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    value: Value,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if value.status { "True" } else { "False" };
    condition_of(
        previous,
        type_,
        status,
        value.reason,
        value.message,
        generation,
        now,
    )
}

/// A condition whose transition time moves only when its status changes;
/// `status` is "True", "False" or "Unknown".
pub fn condition_of(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let first = condition(&[], "Ready", Value::new(true, "Synced", "ok"), Some(1), t0);
        let same = condition(
            std::slice::from_ref(&first),
            "Ready",
            Value::new(true, "Synced", "still ok"),
            Some(2),
            t1,
        );
        assert_eq!(same.last_transition_time, Time(t0));
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition(
            &[same],
            "Ready",
            Value::new(false, "Broken", "no"),
            Some(2),
            t1,
        );
        assert_eq!(flipped.last_transition_time, Time(t1));
        assert_eq!(
            (flipped.status.as_str(), flipped.reason.as_str()),
            ("False", "Broken")
        );
    }
}
