//! The request log and counters tests and benchmarks read.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// One API request as the fake saw it. Holds no secrets: the credential is
/// named by its key (`token:<hash>`, `installation:<id>`, `app:<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub method: String,
    /// Path as requested (with `/api/v3` if used), without the query.
    pub path: String,
    pub query: Option<String>,
    /// `METHOD /route/{template}`, or `METHOD unknown` for a 404 route.
    pub endpoint: String,
    pub status: u16,
    pub credential: String,
    pub duration_us: u64,
    /// Answered from an injected fault, rate limit or `set_unavailable`.
    pub injected: bool,
}

/// Request counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub total: u64,
    /// By `METHOD /route/{template}` (GHES `/api/v3` requests count under
    /// the same name).
    pub by_endpoint: BTreeMap<String, u64>,
    /// By endpoint, then by status.
    pub by_endpoint_status: BTreeMap<String, BTreeMap<u16, u64>>,
    pub by_status: BTreeMap<u16, u64>,
    /// By credential key.
    pub by_credential: BTreeMap<String, u64>,
    /// 304 answers (not charged to the rate limit).
    pub not_modified: u64,
    /// `DELETE` of a runner that was busy (answered 422).
    pub busy_delete_attempts: u64,
    /// Answers from injected faults (error rate, `inject_fault`, unavailable).
    pub faults_injected: u64,
    /// Requests applied whose answer was then replaced by an injected
    /// failure (`Fault::after_apply`); also counted in `faults_injected`.
    #[serde(default)]
    pub answers_lost: u64,
    /// Answers refused by the primary rate limit.
    pub primary_rate_limited: u64,
    /// Answers refused by a secondary rate limit.
    pub secondary_rate_limited: u64,
}

impl Counters {
    /// Count of one endpoint, e.g. `"GET /orgs/{org}/actions/runners"`.
    pub fn endpoint(&self, name: &str) -> u64 {
        self.by_endpoint.get(name).copied().unwrap_or(0)
    }
    /// Count of one credential key.
    pub fn credential(&self, key: &str) -> u64 {
        self.by_credential.get(key).copied().unwrap_or(0)
    }
    /// Count of one endpoint answered with `status`.
    pub fn endpoint_status(&self, name: &str, status: u16) -> u64 {
        self.by_endpoint_status
            .get(name)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }
}

pub(crate) struct Accounting {
    pub total: u64,
    pub by_endpoint: HashMap<(&'static str, &'static str), HashMap<u16, u64>>,
    pub by_credential: HashMap<String, u64>,
    pub not_modified: u64,
    pub busy_delete_attempts: u64,
    pub faults_injected: u64,
    pub answers_lost: u64,
    pub primary_rate_limited: u64,
    pub secondary_rate_limited: u64,
    pub log: VecDeque<LoggedRequest>,
    pub log_capacity: usize,
    pub seq: u64,
    /// Requests received by endpoint (`METHOD template`), counted when they
    /// arrive, before any latency: what is under way shows here before the
    /// log and the counters, which count answers.
    pub received: HashMap<(&'static str, &'static str), u64>,
}

pub(crate) struct Record<'a> {
    pub method: &'static str,
    pub template: &'static str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub status: u16,
    pub credential: &'a str,
    pub duration_us: u64,
    pub injected: bool,
}

impl Accounting {
    pub fn new(log_capacity: usize) -> Self {
        Accounting {
            total: 0,
            by_endpoint: HashMap::new(),
            by_credential: HashMap::new(),
            not_modified: 0,
            busy_delete_attempts: 0,
            faults_injected: 0,
            answers_lost: 0,
            primary_rate_limited: 0,
            secondary_rate_limited: 0,
            log: VecDeque::new(),
            log_capacity,
            seq: 0,
            received: HashMap::new(),
        }
    }

    pub fn record(&mut self, r: Record<'_>) {
        self.total += 1;
        *self
            .by_endpoint
            .entry((r.method, r.template))
            .or_default()
            .entry(r.status)
            .or_default() += 1;
        match self.by_credential.get_mut(r.credential) {
            Some(c) => *c += 1,
            None => {
                self.by_credential.insert(r.credential.to_string(), 1);
            }
        }
        if r.status == 304 {
            self.not_modified += 1;
        }
        self.seq += 1;
        if self.log_capacity > 0 {
            if self.log.len() >= self.log_capacity {
                self.log.pop_front();
            }
            self.log.push_back(LoggedRequest {
                seq: self.seq,
                at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                method: r.method.to_string(),
                path: r.path.to_string(),
                query: r.query.map(str::to_string),
                endpoint: format!("{} {}", r.method, r.template),
                status: r.status,
                credential: r.credential.to_string(),
                duration_us: r.duration_us,
                injected: r.injected,
            });
        }
    }

    pub fn snapshot(&self) -> Counters {
        let mut c = Counters {
            total: self.total,
            not_modified: self.not_modified,
            busy_delete_attempts: self.busy_delete_attempts,
            faults_injected: self.faults_injected,
            answers_lost: self.answers_lost,
            primary_rate_limited: self.primary_rate_limited,
            secondary_rate_limited: self.secondary_rate_limited,
            by_credential: self
                .by_credential
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            ..Default::default()
        };
        for ((m, t), statuses) in &self.by_endpoint {
            let name = format!("{m} {t}");
            let sum: u64 = statuses.values().sum();
            *c.by_endpoint.entry(name.clone()).or_default() += sum;
            let e = c.by_endpoint_status.entry(name).or_default();
            for (s, n) in statuses {
                *e.entry(*s).or_default() += n;
                *c.by_status.entry(*s).or_default() += n;
            }
        }
        c
    }

    pub fn reset(&mut self) {
        let cap = self.log_capacity;
        *self = Accounting::new(cap);
    }
}
