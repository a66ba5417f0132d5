//! The real GitHub client: one [`GitHubClient`] per (GitHub host, credential),
//! handed out and shared by [`CachingConnector`].
//!
//! It owns everything between the reconciler and the wire: endpoint checks,
//! authentication (token or GitHub App), headers, pagination, conditional
//! requests, retries of idempotent calls, rate-limit tracking with fail-fast
//! blocking, mapping GitHub's answers to
//! [`GitHubError`](crate::github::GitHubError), and request counters for
//! metrics. Secrets (tokens, JWTs, private keys, JIT configs) never reach an
//! error message, a log line or a `Debug` output.
//!
//! Wiring: build one `CachingConnector::new(ClientOptions { observer, .. })` at
//! startup and share it; each reconcile calls `connect(&endpoint, &credentials)`,
//! which returns the same client for the same host and credential. For metrics,
//! `CachingConnector::clients()` yields every live client with its
//! `rate_limit()` snapshot and `request_counts()`, labelled by `api_base()` and
//! `credential_fingerprint()`.
//!
//! This module only declares its parts and re-exports their public names; the
//! parts import from each other, never from here:
//! - `options`: [`ClientOptions`], [`RequestRecord`], [`CredentialFingerprint`]
//!   and the API base check;
//! - [`endpoints`]: the endpoint templates requests are counted under;
//! - `wire`: calls, answers, body shapes, headers and decoding;
//! - `requests`: [`GitHubClient`] and its request loop;
//! - `runners` and `groups`: the runner and runner-group endpoints;
//! - `jobs`: the workflow-job read; `deliveries`: a webhook's delivery log;
//! - `proxy`: [`OutboundProxy`], the proxy every client goes through;
//! - `connector`: [`CachingConnector`].

mod connector;
mod deliveries;
pub mod endpoints;
mod groups;
mod jobs;
mod options;
mod proxy;
mod requests;
mod runners;
mod wire;

pub use crate::github::rate_limit::RateLimitSnapshot;
pub use connector::CachingConnector;
pub use options::{
    ClientOptions, CredentialFingerprint, RequestObserver, RequestRecord, WriteGate, is_loopback,
    validate_api_base,
};
pub use proxy::{OutboundProxy, ProxyError};
pub use requests::GitHubClient;
pub use wire::{API_VERSION, failure_kind, http_client_builder};

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod tests;
