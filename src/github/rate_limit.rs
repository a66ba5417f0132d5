//! Rate-limit bookkeeping for one credential on one GitHub host.
//!
//! Owns the last `x-ratelimit-*` headers GitHub sent, how a 403/429 answer is
//! read (primary limit, secondary limit with or without `retry-after`), and the
//! gate that makes later calls fail fast instead of hammering GitHub while the
//! credential has to wait.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::header::HeaderMap;

use super::GitHubError;
use crate::mutex::lock;

/// The rate-limit window of a credential as GitHub last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// Requests allowed per window (`x-ratelimit-limit`).
    pub limit: u64,
    /// Requests left in this window (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// Requests spent in this window (`x-ratelimit-used`).
    pub used: u64,
    /// When the window starts afresh (`x-ratelimit-reset`, epoch seconds).
    pub reset: SystemTime,
    /// Which budget this is, e.g. `core` (`x-ratelimit-resource`).
    pub resource: String,
}

impl RateLimitSnapshot {
    /// Reads the `x-ratelimit-*` headers; `None` when GitHub did not send the
    /// three that matter (some GHES setups disable rate limiting).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let limit = header_u64(headers, "x-ratelimit-limit")?;
        let remaining = header_u64(headers, "x-ratelimit-remaining")?;
        let reset = header_u64(headers, "x-ratelimit-reset")?;
        Some(RateLimitSnapshot {
            limit,
            remaining,
            used: header_u64(headers, "x-ratelimit-used")
                .unwrap_or(limit.saturating_sub(remaining)),
            reset: UNIX_EPOCH + Duration::from_secs(reset),
            resource: header_str(headers, "x-ratelimit-resource")
                .unwrap_or("core")
                .to_owned(),
        })
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.parse().ok())
}

/// How long from `now` until an epoch-seconds instant; zero if it has passed.
fn until_epoch(reset: SystemTime, now: SystemTime) -> Duration {
    reset.duration_since(now).unwrap_or(Duration::ZERO)
}

/// What a 403 or 429 answer means, when it is about rate limits at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Throttle {
    /// The hourly budget is spent; wait until the window resets.
    Primary { wait: Duration },
    /// A secondary (abuse) limit. `wait` is GitHub's `retry-after` when it gave one;
    /// without it GitHub asks for at least a minute, growing exponentially.
    Secondary { wait: Option<Duration> },
}

/// Reads a 403/429 answer the way GitHub's rate-limit guide describes.
/// `None` means the answer is not about rate limits (e.g. a missing permission).
pub(crate) fn classify_throttle(
    status: u16,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Throttle> {
    if status != 403 && status != 429 {
        return None;
    }
    let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        let until_reset = header_u64(headers, "x-ratelimit-reset")
            .map(|reset| until_epoch(UNIX_EPOCH + Duration::from_secs(reset), now));
        // Whichever GitHub says is later wins; with neither, a minute is GitHub's own floor.
        let wait = match (until_reset, retry_after) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Duration::from_secs(60),
        };
        return Some(Throttle::Primary { wait });
    }
    if let Some(wait) = retry_after {
        return Some(Throttle::Secondary { wait: Some(wait) });
    }
    let message = message.to_ascii_lowercase();
    // 429 is always throttling; older GHES words secondary limits as "abuse detection".
    if status == 429 || message.contains("rate limit") || message.contains("abuse") {
        return Some(Throttle::Secondary { wait: None });
    }
    None
}

/// Tunables for the exponential backoff after secondary limits without `retry-after`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SecondaryBackoff {
    pub base: Duration,
    pub max: Duration,
}

impl SecondaryBackoff {
    /// The wait after `strikes` earlier secondary limits in a row: base·2^strikes,
    /// capped, plus up to 20 % jitter so clients sharing a host do not retry in lockstep.
    pub fn wait(&self, strikes: u32, jitter: f64) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32.checked_shl(strikes.min(16)).unwrap_or(u32::MAX));
        doubled
            .min(self.max)
            .mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
    }
}

#[derive(Debug, Default)]
struct GateState {
    snapshot: Option<RateLimitSnapshot>,
    blocked_until: Option<(Instant, bool)>,
    /// Secondary limits hit in a row, for the exponential backoff.
    secondary_strikes: u32,
}

/// Per-credential rate-limit state shared by every pool that uses the credential.
#[derive(Debug)]
pub(crate) struct RateLimitGate {
    state: Mutex<GateState>,
    backoff: SecondaryBackoff,
}

impl RateLimitGate {
    pub fn new(backoff: SecondaryBackoff) -> Self {
        RateLimitGate {
            state: Mutex::new(GateState::default()),
            backoff,
        }
    }

    /// Fails fast with the remaining wait while the credential is blocked, so
    /// no request is sent that GitHub would refuse (and count against us).
    pub fn check(&self, now: Instant) -> Result<(), GitHubError> {
        let mut state = lock(&self.state);
        match state.blocked_until {
            Some((until, secondary)) if until > now => Err(GitHubError::RateLimited {
                retry_after: until - now,
                secondary,
            }),
            Some(_) => {
                state.blocked_until = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Remembers the rate-limit headers of any answer. A spent budget blocks
    /// the credential right away: the next request would only be refused.
    pub fn observe(&self, headers: &HeaderMap, now: Instant, wall_now: SystemTime) {
        let Some(snapshot) = RateLimitSnapshot::from_headers(headers) else {
            return;
        };
        let mut state = lock(&self.state);
        if snapshot.remaining == 0 {
            let wait = until_epoch(snapshot.reset, wall_now);
            if !wait.is_zero() {
                extend_block(&mut state, now + wait, false);
            }
        }
        state.snapshot = Some(snapshot);
    }

    /// A request went through: secondary-limit backoff starts from scratch next time.
    pub fn record_success(&self) {
        lock(&self.state).secondary_strikes = 0;
    }

    /// Blocks the credential for a throttle answer and returns the error to report.
    pub fn record_throttle(&self, throttle: Throttle, now: Instant) -> GitHubError {
        let mut state = lock(&self.state);
        let (wait, secondary) = match throttle {
            Throttle::Primary { wait } => (wait, false),
            Throttle::Secondary { wait } => {
                let backoff = self
                    .backoff
                    .wait(state.secondary_strikes, rand::rng().random::<f64>());
                state.secondary_strikes = state.secondary_strikes.saturating_add(1);
                (wait.unwrap_or(backoff), true)
            }
        };
        // A zero wait (reset already passed by our clock) still deserves a breath.
        let wait = wait.max(Duration::from_secs(1));
        extend_block(&mut state, now + wait, secondary);
        GitHubError::RateLimited {
            retry_after: wait,
            secondary,
        }
    }

    pub fn snapshot(&self) -> Option<RateLimitSnapshot> {
        lock(&self.state).snapshot.clone()
    }
}

/// Never shortens an existing block: concurrent answers may arrive out of order.
fn extend_block(state: &mut GateState, until: Instant, secondary: bool) {
    match state.blocked_until {
        Some((current, _)) if current >= until => {}
        _ => state.blocked_until = Some((until, secondary)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn epoch(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const BACKOFF: SecondaryBackoff = SecondaryBackoff {
        base: Duration::from_secs(60),
        max: Duration::from_secs(900),
    };

    #[test]
    fn snapshot_reads_all_rate_limit_headers() {
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4990"),
            ("x-ratelimit-used", "10"),
            ("x-ratelimit-reset", "1700000000"),
            ("x-ratelimit-resource", "core"),
        ]);
        assert_eq!(
            RateLimitSnapshot::from_headers(&h),
            Some(RateLimitSnapshot {
                limit: 5000,
                remaining: 4990,
                used: 10,
                reset: epoch(1_700_000_000),
                resource: "core".into(),
            })
        );
    }

    #[test]
    fn snapshot_needs_limit_remaining_and_reset() {
        assert_eq!(
            RateLimitSnapshot::from_headers(&headers(&[("x-ratelimit-limit", "5000")])),
            None
        );
        let h = headers(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "58"),
            ("x-ratelimit-reset", "10"),
        ]);
        let snapshot = RateLimitSnapshot::from_headers(&h).unwrap();
        assert_eq!((snapshot.used, snapshot.resource.as_str()), (2, "core"));
    }

    #[test]
    fn spent_budget_is_a_primary_limit_until_reset() {
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1000"),
        ]);
        assert_eq!(
            classify_throttle(403, &h, "API rate limit exceeded", epoch(970)),
            Some(Throttle::Primary {
                wait: Duration::from_secs(30)
            })
        );
        // A reset already passed by our clock means no wait of its own.
        assert_eq!(
            classify_throttle(429, &h, "", epoch(2000)),
            Some(Throttle::Primary {
                wait: Duration::ZERO
            })
        );
    }

    #[test]
    fn retry_after_marks_a_secondary_limit() {
        let h = headers(&[("retry-after", "42"), ("x-ratelimit-remaining", "100")]);
        assert_eq!(
            classify_throttle(
                403,
                &h,
                "You have exceeded a secondary rate limit",
                epoch(0)
            ),
            Some(Throttle::Secondary {
                wait: Some(Duration::from_secs(42))
            })
        );
    }

    #[test]
    fn secondary_limit_message_without_retry_after_backs_off() {
        let h = headers(&[("x-ratelimit-remaining", "100")]);
        assert_eq!(
            classify_throttle(
                403,
                &h,
                "You have exceeded a Secondary Rate Limit.",
                epoch(0)
            ),
            Some(Throttle::Secondary { wait: None })
        );
        assert_eq!(
            classify_throttle(429, &HeaderMap::new(), "", epoch(0)),
            Some(Throttle::Secondary { wait: None })
        );
    }

    #[test]
    fn other_403_is_not_a_throttle() {
        let h = headers(&[("x-ratelimit-remaining", "100")]);
        assert_eq!(
            classify_throttle(403, &h, "Resource not accessible by integration", epoch(0)),
            None
        );
        assert_eq!(classify_throttle(404, &h, "rate limit", epoch(0)), None);
    }

    #[test]
    fn secondary_backoff_doubles_from_a_minute_and_is_capped() {
        assert_eq!(BACKOFF.wait(0, 0.0), Duration::from_secs(60));
        assert_eq!(BACKOFF.wait(1, 0.0), Duration::from_secs(120));
        assert_eq!(BACKOFF.wait(3, 0.0), Duration::from_secs(480));
        assert_eq!(BACKOFF.wait(4, 0.0), Duration::from_secs(900));
        assert_eq!(BACKOFF.wait(u32::MAX, 0.0), Duration::from_secs(900));
        assert_eq!(BACKOFF.wait(0, 1.0), Duration::from_secs(72));
    }

    #[test]
    fn gate_fails_fast_until_the_wait_is_over() {
        let gate = RateLimitGate::new(BACKOFF);
        let now = Instant::now();
        assert!(gate.check(now).is_ok());
        let err = gate.record_throttle(
            Throttle::Secondary {
                wait: Some(Duration::from_secs(30)),
            },
            now,
        );
        assert!(
            matches!(err, GitHubError::RateLimited { secondary: true, retry_after } if retry_after == Duration::from_secs(30))
        );
        match gate.check(now + Duration::from_secs(10)) {
            Err(GitHubError::RateLimited {
                retry_after,
                secondary: true,
            }) => {
                assert_eq!(retry_after, Duration::from_secs(20))
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        assert!(gate.check(now + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn gate_grows_secondary_backoff_until_a_success() {
        let gate = RateLimitGate::new(BACKOFF);
        let now = Instant::now();
        let first = gate.record_throttle(Throttle::Secondary { wait: None }, now);
        let second = gate.record_throttle(Throttle::Secondary { wait: None }, now);
        let wait = |e: GitHubError| match e {
            GitHubError::RateLimited { retry_after, .. } => retry_after,
            other => panic!("expected RateLimited, got {other:?}"),
        };
        let (first, second) = (wait(first), wait(second));
        assert!(
            first >= Duration::from_secs(60) && first <= Duration::from_secs(72),
            "{first:?}"
        );
        assert!(
            second >= Duration::from_secs(120) && second <= Duration::from_secs(144),
            "{second:?}"
        );
        gate.record_success();
        let third = wait(gate.record_throttle(Throttle::Secondary { wait: None }, now));
        assert!(third <= Duration::from_secs(72), "{third:?}");
    }

    #[test]
    fn spent_budget_in_a_successful_answer_blocks_the_next_call() {
        let gate = RateLimitGate::new(BACKOFF);
        let now = Instant::now();
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1060"),
        ]);
        gate.observe(&h, now, epoch(1000));
        assert_eq!(gate.snapshot().map(|s| s.remaining), Some(0));
        match gate.check(now) {
            Err(GitHubError::RateLimited {
                retry_after,
                secondary: false,
            }) => {
                assert_eq!(retry_after, Duration::from_secs(60))
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    #[test]
    fn a_shorter_block_never_replaces_a_longer_one() {
        let gate = RateLimitGate::new(BACKOFF);
        let now = Instant::now();
        gate.record_throttle(
            Throttle::Primary {
                wait: Duration::from_secs(600),
            },
            now,
        );
        gate.record_throttle(
            Throttle::Secondary {
                wait: Some(Duration::from_secs(5)),
            },
            now,
        );
        assert!(gate.check(now + Duration::from_secs(60)).is_err());
    }
}
