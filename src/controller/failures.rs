//! A pool's run of runner failures: every runner that fails before coming
//! online (its pod `Failed`, or not online within the bootstrap timeout), and
//! every pod the API server refuses, lengthens a pause before new runners are
//! registered: 1 s, 2 s, 4 s ... 5 minutes; a runner that comes online ends
//! it. [`super::hold`] applies it to a pass's plan.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::kit::problem::Problem;
use crate::kit::retry::backoff;

/// A pool's run of runner failures.
#[derive(Default)]
pub struct FailureStreak {
    /// Runners in a row that failed before coming online (or pods refused).
    pub(super) count: u32,
    /// No new runner is registered before this.
    hold_until: Option<Instant>,
    /// What the last failure was, for the Degraded condition.
    last: Option<(Problem, String)>,
    /// Runners seen online, so each counts once towards ending the streak.
    online: BTreeSet<u64>,
}

impl FailureStreak {
    /// Counts `n` more failures and starts (or lengthens) the pause.
    pub fn failed(&mut self, n: u32, problem: Problem, message: String) {
        self.count = self.count.saturating_add(n);
        self.hold_until = Some(Instant::now() + backoff(self.count));
        self.last = Some((problem, message));
    }

    /// A runner is online: the streak ends the first time each one is seen.
    pub fn online(&mut self, runner_id: u64) {
        if self.online.insert(runner_id) {
            *self = FailureStreak {
                online: std::mem::take(&mut self.online),
                ..Default::default()
            };
        }
    }

    /// Whether the runner was ever seen online.
    pub fn was_online(&self, runner_id: u64) -> bool {
        self.online.contains(&runner_id)
    }

    /// Forgets runners whose pods are gone.
    pub fn retain_online(&mut self, runner_ids: &BTreeSet<u64>) {
        self.online.retain(|id| runner_ids.contains(id));
    }

    /// How long new runners must still wait.
    pub fn held_for(&self, now: Instant) -> Option<Duration> {
        self.hold_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// The problem to show while the streak lasts.
    pub fn problem(&self) -> Option<&(Problem, String)> {
        self.last.as_ref().filter(|_| self.count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_pause_creations_longer_each_time_until_a_runner_comes_online() {
        let mut streak = FailureStreak::default();
        let now = Instant::now();
        assert_eq!(streak.held_for(now), None);
        streak.failed(1, Problem::RunnersFailing, "x".into());
        let first = streak.held_for(now).unwrap();
        streak.failed(2, Problem::RunnersFailing, "y".into());
        let third = streak.held_for(now).unwrap();
        assert!(third > first, "{first:?} then {third:?}");
        assert!(
            third <= Duration::from_secs(5),
            "4 s after three failures: {third:?}"
        );
        assert_eq!(streak.problem().unwrap().1, "y");

        streak.online(7);
        assert_eq!(streak.held_for(now), None);
        assert!(streak.problem().is_none());
        assert!(streak.was_online(7));
        streak.failed(1, Problem::RunnersFailing, "z".into());
        streak.online(7);
        assert!(
            streak.problem().is_some(),
            "a runner seen online before does not end a new streak"
        );
    }
}
