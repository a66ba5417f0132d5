//! How many runners a pool wants now: its fixed replicas, or its
//! autoscaling bounds as raised by the schedule windows open now.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::plan::Scaling;
use super::schedule;
use crate::RunnerPool;

/// The pool's bounds now: autoscaling's minRunners and idleRunners as
/// raised by its active schedule windows.
pub fn scaling(pool: &RunnerPool) -> Scaling {
    match &pool.spec.autoscaling {
        Some(auto) => {
            let scheduled = schedule::effective(auto, Timestamp::now());
            Scaling::Auto {
                min: scheduled.min,
                max: auto.max_runners.max(0) as u32,
                idle: scheduled.idle,
                scale_down_delay: Duration::from_secs(
                    auto.scale_down_delay_seconds.unwrap_or(60).max(0) as u64,
                ),
            }
        }
        None => Scaling::Fixed(pool.spec.replicas.unwrap_or(1).max(0) as u32),
    }
}

/// The pool's scheduled capacity now, if it has schedules.
pub fn schedule_now(pool: &RunnerPool) -> Option<schedule::Effective> {
    let auto = pool.spec.autoscaling.as_ref()?;
    (!auto.schedules.is_empty()).then(|| schedule::effective(auto, Timestamp::now()))
}
