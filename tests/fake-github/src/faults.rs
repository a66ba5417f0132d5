//! GitHub's failures on demand: injected errors, latency, primary and
//! secondary rate limits.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Matches endpoints by name: `*` (all), `GET /orgs/{org}/actions/runners`
/// (one method and route template), `/orgs/{org}/actions/runners` (any
/// method), or `POST *` (every route of a method).
pub(crate) fn endpoint_matches(pattern: &str, method: &str, template: &str) -> bool {
    let p = pattern.trim();
    if p == "*" || p.is_empty() {
        return true;
    }
    match p.split_once(' ') {
        Some((m, t)) => m.eq_ignore_ascii_case(method) && (t == "*" || t == template),
        None => p == template,
    }
}

/// An injected failure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    /// Endpoint pattern (see the README); `None` = every API endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only requests of this credential key (`token:…`, `installation:ID`).
    #[serde(default)]
    pub credential: Option<String>,
    /// Status to answer (500, 502, 503, 404, ...), or [`DROP_CONNECTION`]
    /// to close the connection without any answer.
    pub status: u16,
    /// Chance that a matching request fails (default 1.0).
    #[serde(default = "one")]
    pub probability: f64,
    /// Fail only this many matching requests, then remove the fault.
    #[serde(default)]
    pub count: Option<u32>,
    /// Apply the request first, then answer `status` instead of its result:
    /// GitHub did the work but the client never learns it ("registration
    /// created, answer lost"). Only requests that succeed count against
    /// `count`; a request that fails on its own keeps its own answer.
    #[serde(default)]
    pub after_apply: bool,
}

/// A fault `status` that closes the connection instead of answering (the
/// client sees a transport error, as when a proxy or the network drops it).
pub const DROP_CONNECTION: u16 = 0;

fn one() -> f64 {
    1.0
}

impl Fault {
    /// Every matching request answers `status`.
    pub fn always(endpoint: Option<&str>, status: u16) -> Self {
        Fault {
            endpoint: endpoint.map(str::to_string),
            credential: None,
            status,
            probability: 1.0,
            count: None,
            after_apply: false,
        }
    }
    /// The next `count` matching requests answer `status`.
    pub fn times(endpoint: Option<&str>, status: u16, count: u32) -> Self {
        Fault {
            count: Some(count),
            ..Self::always(endpoint, status)
        }
    }
    /// The next `count` matching requests that succeed are applied, then
    /// answered `status` (their answer is lost).
    pub fn lost_answers(endpoint: Option<&str>, status: u16, count: u32) -> Self {
        Fault {
            after_apply: true,
            ..Self::times(endpoint, status, count)
        }
    }
}

/// A secondary rate limit in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecondaryLimit {
    /// Only this credential key; `None` = everyone.
    #[serde(default)]
    pub credential: Option<String>,
    /// Endpoint pattern; `None` = every endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Refuse this many requests, then lift the limit.
    #[serde(default)]
    pub requests: Option<u32>,
    /// Or refuse everything for this long (seconds).
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// 403 (GitHub's usual answer) or 429.
    #[serde(default = "forbidden")]
    pub status: u16,
    /// `retry-after` seconds to send.
    #[serde(default = "sixty")]
    pub retry_after_secs: u64,
}

fn forbidden() -> u16 {
    403
}
fn sixty() -> u64 {
    60
}

impl SecondaryLimit {
    /// Refuse the next `requests` requests of everyone with 403 and `retry-after`.
    pub fn next_requests(requests: u32, retry_after_secs: u64) -> Self {
        SecondaryLimit {
            credential: None,
            endpoint: None,
            requests: Some(requests),
            duration_secs: None,
            status: 403,
            retry_after_secs,
        }
    }
}

pub(crate) struct ActiveSecondary {
    pub spec: SecondaryLimit,
    pub until: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct Faults {
    pub error_rate: f64,
    pub error_status: u16,
    pub faults: Vec<Fault>,
    pub latency: Duration,
    pub endpoint_latency: Vec<(String, Duration)>,
    pub secondary: Vec<ActiveSecondary>,
}

impl Faults {
    pub fn latency_for(&self, method: &str, template: &str) -> Duration {
        let extra: Duration = self
            .endpoint_latency
            .iter()
            .filter(|(p, _)| endpoint_matches(p, method, template))
            .map(|(_, d)| *d)
            .sum();
        self.latency + extra
    }

    /// The status of an injected failure for this request, if any: with
    /// `after_apply` false, a failure answered instead of applying the
    /// request (including the global error rate); with true, one that
    /// replaces the answer of a request already applied successfully.
    pub fn injected(
        &mut self,
        method: &str,
        template: &str,
        credential: &str,
        after_apply: bool,
    ) -> Option<u16> {
        let mut rng = rand::rng();
        let mut hit = None;
        for f in self.faults.iter_mut() {
            if f.after_apply != after_apply
                || f.endpoint
                    .as_deref()
                    .is_some_and(|p| !endpoint_matches(p, method, template))
                || f.credential.as_deref().is_some_and(|c| c != credential)
                || f.count == Some(0)
            {
                continue;
            }
            if f.probability >= 1.0 || rng.random::<f64>() < f.probability {
                if let Some(c) = f.count.as_mut() {
                    *c -= 1;
                }
                hit = Some(f.status);
                break;
            }
        }
        self.faults.retain(|f| f.count != Some(0));
        if hit.is_none()
            && !after_apply
            && self.error_rate > 0.0
            && rng.random::<f64>() < self.error_rate
        {
            hit = Some(if self.error_status == 0 {
                500
            } else {
                self.error_status
            });
        }
        hit
    }

    /// A secondary limit refusing this request: `(status, retry_after)`.
    pub fn secondary_hit(
        &mut self,
        method: &str,
        template: &str,
        credential: &str,
        now: Instant,
    ) -> Option<(u16, u64)> {
        self.secondary
            .retain(|s| s.spec.requests != Some(0) && s.until.is_none_or(|u| u > now));
        for s in self.secondary.iter_mut() {
            if s.spec
                .credential
                .as_deref()
                .is_some_and(|c| c != credential)
                || s.spec
                    .endpoint
                    .as_deref()
                    .is_some_and(|p| !endpoint_matches(p, method, template))
            {
                continue;
            }
            if let Some(r) = s.spec.requests.as_mut() {
                *r -= 1;
            }
            let retry = match s.until {
                Some(u) => u.saturating_duration_since(now).as_secs().max(1),
                None => s.spec.retry_after_secs,
            };
            return Some((s.spec.status, retry));
        }
        None
    }
}

/// One credential's primary rate-limit budget.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub limit: u32,
    pub used: u32,
    pub reset: SystemTime,
}

pub(crate) struct Limits {
    pub default_limit: u32,
    pub window: Duration,
    /// 403 (GitHub's usual answer) or 429.
    pub status: u16,
    pub budgets: HashMap<String, Budget>,
}

impl Limits {
    pub fn budget(&mut self, key: &str, limit: Option<u32>, now: SystemTime) -> &mut Budget {
        let window = self.window;
        let default_limit = self.default_limit;
        let b = self
            .budgets
            .entry(key.to_string())
            .or_insert_with(|| Budget {
                limit: limit.unwrap_or(default_limit),
                used: 0,
                reset: now + window,
            });
        if now >= b.reset {
            b.used = 0;
            b.reset = now + window;
        }
        b
    }
}
