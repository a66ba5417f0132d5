//! What the client is built with and what it reports: [`ClientOptions`] with
//! the [`RequestObserver`] and [`WriteGate`] hooks, the [`RequestRecord`] each
//! request yields, the [`CredentialFingerprint`] clients are keyed and
//! labelled by, and the check that an API base URL is safe to send a token to.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};
use url::{Host, Url};

use crate::github::{Credentials, GitHubError, Result};

/// One request GitHub answered (or did not), as reported to a [`RequestObserver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// One of [`endpoints`](super::endpoints).
    pub endpoint: &'static str,
    /// The HTTP status; `None` when no answer came (connect error, timeout).
    pub status: Option<u16>,
    pub elapsed: Duration,
}

/// Called after every request sent to GitHub, e.g. to feed Prometheus counters.
/// Calls refused locally because the credential is rate limited are not requests
/// and are not reported.
pub type RequestObserver = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// Tunables of the client; `ClientOptions::default()` is what production uses.
#[derive(Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Whole-request deadline, including reading the body.
    pub request_timeout: Duration,
    /// Extra attempts for idempotent requests (GET, PUT, DELETE) after a 5xx or a
    /// failed connection. POST is never retried: a second generate-jitconfig
    /// would conflict with the runner the first one may have created.
    pub max_retries: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_backoff: Duration,
    /// Installation tokens are replaced once less than this is left of their hour.
    pub token_refresh_margin: Duration,
    /// How long `list_runner_groups` answers are reused without asking GitHub.
    pub runner_group_ttl: Duration,
    pub etag_cache_entries: usize,
    pub etag_cache_bytes: usize,
    /// First wait after a secondary rate limit without `retry-after`; doubles per
    /// repeat up to `secondary_backoff_max`.
    pub secondary_backoff_base: Duration,
    pub secondary_backoff_max: Duration,
    /// A cached client unused this long (and held by nobody) is dropped by the connector.
    pub idle_client_ttl: Duration,
    pub observer: Option<RequestObserver>,
    /// Asked before every request that changes something on GitHub (any
    /// method but GET); a `false` refuses it with [`GitHubError::NotLeading`].
    /// With leader election, whether this replica still holds a fresh Lease.
    pub may_write: Option<WriteGate>,
}

impl ClientOptions {
    /// How long to wait before retry number `attempt` (from 1):
    /// `retry_backoff` doubled per attempt, with jitter.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .retry_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(10));
        exponential.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

/// See [`ClientOptions::may_write`].
pub type WriteGate = Arc<dyn Fn() -> bool + Send + Sync>;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            token_refresh_margin: Duration::from_secs(5 * 60),
            runner_group_ttl: Duration::from_secs(10 * 60),
            etag_cache_entries: 1024,
            etag_cache_bytes: 16 * 1024 * 1024,
            secondary_backoff_base: Duration::from_secs(60),
            secondary_backoff_max: Duration::from_secs(15 * 60),
            idle_client_ttl: Duration::from_secs(60 * 60),
            observer: None,
            may_write: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("token_refresh_margin", &self.token_refresh_margin)
            .field("runner_group_ttl", &self.runner_group_ttl)
            .field("etag_cache_entries", &self.etag_cache_entries)
            .field("etag_cache_bytes", &self.etag_cache_bytes)
            .field("secondary_backoff_base", &self.secondary_backoff_base)
            .field("secondary_backoff_max", &self.secondary_backoff_max)
            .field("idle_client_ttl", &self.idle_client_ttl)
            .field("observer", &self.observer.as_ref().map(|_| "<fn>"))
            .field("may_write", &self.may_write.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// A stable, non-reversible name for a credential: SHA-256 over the secret
/// material, so clients can be keyed and labelled without holding the secret
/// in a map key or printing it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialFingerprint(String);

impl CredentialFingerprint {
    pub fn of(credentials: &Credentials) -> Self {
        let mut hash = Sha256::new();
        match credentials {
            Credentials::Token(token) => {
                hash.update(b"token\0");
                hash.update(token.trim().as_bytes());
            }
            Credentials::App {
                app_id,
                installation_id,
                private_key_pem,
            } => {
                hash.update(b"app\0");
                hash.update(app_id.trim().as_bytes());
                hash.update(b"\0");
                hash.update(installation_id.to_string().as_bytes());
                hash.update(b"\0");
                hash.update(private_key_pem.trim().as_bytes());
            }
        }
        CredentialFingerprint(hex::encode(hash.finalize()))
    }

    /// The first 12 hex digits: enough to tell credentials apart in metrics and logs.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Debug for CredentialFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialFingerprint({})", self.short())
    }
}

impl fmt::Display for CredentialFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Checks an API base URL: `https` anywhere, plain `http` only to loopback
/// (tests and local fakes), so a token is never sent in clear over a network.
pub fn validate_api_base(api_base: &Url) -> Result<()> {
    let invalid = |why: &str| Err(GitHubError::InvalidEndpoint(why.to_owned()));
    // Never echo the URL when it carries userinfo: that part may be a secret.
    if !api_base.username().is_empty() || api_base.password().is_some() {
        return invalid("the API URL must not contain a user name or password");
    }
    if api_base.query().is_some() || api_base.fragment().is_some() {
        return invalid(&format!(
            "the API URL {api_base} must not have a query or fragment"
        ));
    }
    let Some(host) = api_base.host() else {
        return invalid(&format!("the API URL {api_base} has no host"));
    };
    if let Host::Domain(domain) = &host
        && domain.eq_ignore_ascii_case("github.com")
    {
        return invalid("github.com's API lives at https://api.github.com, not https://github.com");
    }
    match api_base.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&host) => Ok(()),
        "http" => invalid(&format!(
            "the API URL {api_base} uses plain http, which is only allowed for loopback hosts; use https"
        )),
        other => invalid(&format!("the API URL scheme must be https, not {other}")),
    }
}

/// Whether a host is this machine: the only place plain `http` may carry a token.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(domain) => domain.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}
