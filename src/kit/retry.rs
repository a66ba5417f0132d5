//! When a controller looks at an object again after a failure: exponential
//! backoff with jitter per object, except where waiting longer would be
//! wrong (a pass cut by the reconcile bound made progress; an API server
//! hiccup says nothing of GitHub; a rate limit says exactly how long), and
//! polls for deletions that wait on running jobs. Also each object's failure
//! streak and the problem last announced with an event, so a lasting problem
//! is announced once rather than on every retry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rand::Rng;
use tracing::warn;

use super::error::Error;
use crate::github::GitHubError;
use crate::mutex::lock;

/// The longest wait after a pass cut by the reconcile bound.
pub const TIMEOUT_RETRY_MAX: Duration = Duration::from_secs(2);

/// The longest wait after a failed Kubernetes request.
pub const KUBE_RETRY_MAX: Duration = Duration::from_secs(15);

/// How often a deleted pool with busy runners looks again.
pub const CLEANUP_POLL: Duration = Duration::from_secs(2);

/// How often a RunnerGroup being deleted looks again for runners in it.
pub const DELETION_POLL: Duration = Duration::from_secs(3);

/// The wait after the `streak`-th failure in a row: 1 s, 2 s, 4 s ... 5 minutes.
pub fn backoff(streak: u32) -> Duration {
    Duration::from_secs(1 << (streak.clamp(1, 10) - 1)).min(Duration::from_secs(300))
}

/// A jittered duration, so objects don't come back in lockstep.
pub fn jittered(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..1.1);
    base.mul_f64(factor)
}

/// How long to wait after `error`, the `streak`-th failure in a row. Errors
/// arrive wrapped by the finalizer, so the object's own error is looked at: a
/// pending deletion is polled every few seconds (busy runners finish at their
/// own pace, and doubling would leave a finished deletion waiting minutes),
/// and a rate limit waits exactly as long as GitHub asked. A pass cut by the
/// reconcile bound made progress (its creations go on as tasks): it is
/// taken up again soon, not after a growing backoff.
pub fn retry_delay(error: &Error, streak: u32) -> Duration {
    match error.unwrapped() {
        Error::CleanupPending(_) => CLEANUP_POLL,
        Error::DeletionPending(_) => DELETION_POLL,
        Error::ReconcileTimeout(_) => backoff(streak).min(TIMEOUT_RETRY_MAX),
        // The streak also counts the object's GitHub problems (rate limits,
        // bad credentials); they say nothing of the API server, and a short
        // outage of it must not leave every object waiting minutes.
        Error::Kube(_) => backoff(streak).min(KUBE_RETRY_MAX),
        Error::GitHub(GitHubError::RateLimited { retry_after, .. }) => {
            (*retry_after).max(Duration::from_secs(1))
        }
        _ => backoff(streak),
    }
}

/// The first wait after a watch of the API server fails.
pub const WATCH_RETRY_MIN: Duration = Duration::from_millis(250);

/// The longest wait between attempts to watch again. kube's default grows to
/// 30 s, so an API server back from a minute's outage could stay unseen for
/// half a minute, and the controller's merged trigger stream (pool changes
/// and demand alike) waits out the same backoff.
pub const WATCH_RETRY_MAX: Duration = Duration::from_secs(2);

/// Backoff for the watches (and a controller's trigger stream): from
/// [`WATCH_RETRY_MIN`], doubling up to [`WATCH_RETRY_MAX`], jittered; reset
/// by the first event after an error.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_RETRY_MIN,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (wait * 2).min(WATCH_RETRY_MAX);
        Some(jittered(wait))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_RETRY_MIN;
    }
}

/// Each object's failures in a row and the problem last announced, by key
/// (the object's UID). In memory: a restart starts every streak afresh.
#[derive(Default)]
pub struct Attempts {
    objects: Mutex<HashMap<String, Attempt>>,
}

#[derive(Default)]
struct Attempt {
    streak: u32,
    announced: Option<String>,
}

impl Attempts {
    /// Counts one more failure; returns the streak.
    pub fn failed(&self, key: &str) -> u32 {
        let mut objects = lock(&self.objects);
        let attempt = objects.entry(key.to_string()).or_default();
        attempt.streak = attempt.streak.saturating_add(1);
        attempt.streak
    }

    /// The object works again: the streak ends, and a problem coming back
    /// is announced again.
    pub fn succeeded(&self, key: &str) {
        if let Some(attempt) = lock(&self.objects).get_mut(key) {
            *attempt = Attempt::default();
        }
    }

    /// Whether `what` should be announced now: true unless it is what was
    /// announced last for the object.
    pub fn announce(&self, key: &str, what: &str) -> bool {
        let mut objects = lock(&self.objects);
        let attempt = objects.entry(key.to_string()).or_default();
        let announce = attempt.announced.as_deref() != Some(what);
        attempt.announced = Some(what.to_string());
        announce
    }

    /// The object is gone.
    pub fn forget(&self, key: &str) {
        lock(&self.objects).remove(key);
    }
}

/// The key of an object in [`Attempts`]: its UID, else its name.
pub fn key<K: Resource>(object: &K) -> String {
    object
        .meta()
        .uid
        .clone()
        .unwrap_or_else(|| object.name_any())
}

/// Per-object exponential backoff with jitter (see [`retry_delay`]), for a
/// controller's error policy.
pub fn error_policy<K>(object: &K, error: &Error, attempts: &Attempts) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let streak = attempts.failed(&key(object));
    let delay = retry_delay(error, streak);
    warn!(kind = %K::kind(&()), namespace = object.namespace().unwrap_or_default(), name = %object.name_any(), category = error.category(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(jittered(delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_retry_within_two_seconds_and_start_over_after_an_event() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = b.by_ref().take(6).collect();
        let bounds = [250, 500, 1000, 2000, 2000, 2000];
        for (wait, ms) in waits.iter().zip(bounds) {
            let base = Duration::from_millis(ms);
            assert!(
                *wait >= base.mul_f64(0.9) && *wait <= base.mul_f64(1.1),
                "{wait:?} is not {base:?} jittered"
            );
        }
        b.reset();
        assert!(b.next().unwrap() <= WATCH_RETRY_MIN.mul_f64(1.1));
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_five_minutes() {
        let secs: Vec<u64> = [0, 1, 2, 3, 9, 10, 50]
            .map(|n| backoff(n).as_secs())
            .to_vec();
        assert_eq!(secs, [1, 1, 2, 4, 256, 300, 300]);
    }

    fn wrapped(error: Error, cleanup: bool) -> Error {
        use kube::runtime::finalizer::Error as F;
        Error::Finalizer(Box::new(if cleanup {
            F::CleanupFailed(error)
        } else {
            F::ApplyFailed(error)
        }))
    }

    #[test]
    fn retry_delay_looks_inside_finalizer_errors() {
        let streak = 9; // deep into the generic backoff: 256 s
        assert_eq!(
            retry_delay(&wrapped(Error::CleanupPending(2), true), streak),
            CLEANUP_POLL
        );
        assert_eq!(
            retry_delay(
                &wrapped(Error::DeletionPending("runners".into()), true),
                streak
            ),
            DELETION_POLL
        );
        let limited = || {
            Error::GitHub(GitHubError::RateLimited {
                retry_after: Duration::from_secs(42),
                secondary: false,
            })
        };
        assert_eq!(
            retry_delay(&wrapped(limited(), false), streak),
            Duration::from_secs(42)
        );
        assert_eq!(
            retry_delay(&wrapped(limited(), true), 1),
            Duration::from_secs(42)
        );
        assert_eq!(
            retry_delay(&wrapped(Error::CachesNotReady, false), streak),
            backoff(streak)
        );
        assert_eq!(
            retry_delay(
                &Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject)),
                3
            ),
            backoff(3)
        );
        // Unwrapped errors (before the finalizer runs) are classified too.
        assert_eq!(retry_delay(&Error::CleanupPending(1), streak), CLEANUP_POLL);
    }

    #[test]
    fn a_pass_cut_by_the_bound_is_taken_up_again_soon() {
        let cut = Error::ReconcileTimeout(Duration::from_millis(7500));
        assert_eq!(retry_delay(&cut, 9), TIMEOUT_RETRY_MAX);
        assert_eq!(retry_delay(&cut, 1), backoff(1).min(TIMEOUT_RETRY_MAX));
        assert!(
            backoff(9) > TIMEOUT_RETRY_MAX,
            "the generic backoff would be longer"
        );
    }

    #[test]
    fn attempts_count_a_streak_and_announce_a_problem_once() {
        let attempts = Attempts::default();
        assert_eq!(attempts.failed("a"), 1);
        assert_eq!(attempts.failed("a"), 2);
        assert_eq!(attempts.failed("b"), 1, "streaks are per object");
        assert!(attempts.announce("a", "RateLimited"));
        assert!(!attempts.announce("a", "RateLimited"), "announced once");
        assert!(attempts.announce("a", "CredentialsInvalid"));
        attempts.succeeded("a");
        assert_eq!(attempts.failed("a"), 1, "success ends the streak");
        assert!(
            attempts.announce("a", "CredentialsInvalid"),
            "a problem coming back after a success is announced again"
        );
        attempts.forget("a");
        assert_eq!(attempts.failed("a"), 1);
    }
}
