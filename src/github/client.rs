//! The real GitHub client: one [`GitHubClient`] per (GitHub host, credential),
//! handed out and shared by [`CachingConnector`].
//!
//! It owns everything between the reconciler and the wire: endpoint checks,
//! authentication (token or GitHub App), headers, pagination, conditional
//! requests, retries of idempotent calls, rate-limit tracking with fail-fast
//! blocking, mapping GitHub's answers to [`GitHubError`], and request counters
//! for metrics. Secrets (tokens, JWTs, private keys, JIT configs) never reach an
//! error message, a log line or a `Debug` output.
//!
//! Wiring: build one `CachingConnector::new(ClientOptions { observer, .. })` at
//! startup and share it; each reconcile calls `connect(&endpoint, &credentials)`,
//! which returns the same client for the same host and credential. For metrics,
//! `CachingConnector::clients()` yields every live client with its
//! `rate_limit()` snapshot and `request_counts()`, labelled by `api_base()` and
//! `credential_fingerprint()`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use rand::Rng;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use url::{Host, Url};

use super::app_auth::{AccessTokenAnswer, AppAuthenticator, InstallationToken};
use super::etag_cache::{CachedAnswer, EtagCache};
use super::pagination::next_page_url;
use super::rate_limit::{RateLimitGate, SecondaryBackoff, classify_throttle};
use super::{
    Credentials, Endpoint, GitHubApi, GitHubConnector, GitHubError, JitConfig, JitRequest, Result,
    Runner, RunnerGroup, RunnerLabel, Scope,
};

pub use super::rate_limit::RateLimitSnapshot;

/// The API version every request pins, so GitHub does not change shapes under us.
pub const API_VERSION: &str = "2022-11-28";
const USER_AGENT: &str = concat!("runnerpool-operator/", env!("CARGO_PKG_VERSION"));
/// GitHub's maximum page size; fewer pages means fewer requests.
const PER_PAGE: &str = "100";
/// A guard against a server whose `Link` never ends (100 000 runners at 100 a page).
const MAX_PAGES: usize = 1000;
/// GitHub's error `message` is shown to people; a bounded excerpt is enough.
const MAX_MESSAGE_CHARS: usize = 300;

/// Endpoint templates: the bounded label under which requests are counted.
pub mod endpoints {
    pub const LIST_RUNNERS: &str = "GET /{scope}/actions/runners";
    pub const GET_RUNNER: &str = "GET /{scope}/actions/runners/{runner_id}";
    pub const GENERATE_JITCONFIG: &str = "POST /{scope}/actions/runners/generate-jitconfig";
    pub const DELETE_RUNNER: &str = "DELETE /{scope}/actions/runners/{runner_id}";
    pub const SET_CUSTOM_LABELS: &str = "PUT /{scope}/actions/runners/{runner_id}/labels";
    pub const LIST_RUNNER_GROUPS: &str = "GET /{scope}/actions/runner-groups";
    pub const CREATE_RUNNER_GROUP: &str = "POST /orgs/{org}/actions/runner-groups";
    pub const RUNNER_GROUP: &str = "GET /orgs/{org}/actions/runner-groups/{runner_group_id}";
    pub const UPDATE_RUNNER_GROUP: &str =
        "PATCH /orgs/{org}/actions/runner-groups/{runner_group_id}";
    pub const DELETE_RUNNER_GROUP: &str =
        "DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}";
    pub const GROUP_REPOSITORIES: &str =
        "GET /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories";
    pub const SET_GROUP_REPOSITORIES: &str =
        "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories";
    pub const ADD_GROUP_REPOSITORY: &str =
        "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
    pub const REMOVE_GROUP_REPOSITORY: &str =
        "DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
    pub const GROUP_RUNNERS: &str =
        "GET /orgs/{org}/actions/runner-groups/{runner_group_id}/runners";
    pub const SET_GROUP_RUNNERS: &str =
        "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/runners";
    pub const ADD_GROUP_RUNNER: &str =
        "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/runners/{runner_id}";
    pub const REMOVE_GROUP_RUNNER: &str =
        "DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/runners/{runner_id}";
    pub const GET_REPOSITORY: &str = "GET /repos/{owner}/{repo}";
    pub const RUNNER_DOWNLOADS: &str = "GET /{scope}/actions/runners/downloads";
    pub const CREATE_INSTALLATION_TOKEN: &str =
        "POST /app/installations/{installation_id}/access_tokens";
}

/// One request GitHub answered (or did not), as reported to a [`RequestObserver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// One of [`endpoints`].
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

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(domain) => domain.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a few plain assignments).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Auth {
    Token(String),
    App(AppAuthenticator),
}

/// The credential as it was sent on one request, to retry a 401 and to scrub
/// it from anything GitHub echoes back.
struct SentCredential {
    bearer: String,
    is_installation_token: bool,
}

/// What a call sends, described for the request loop.
struct Call {
    endpoint: &'static str,
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    /// What the call is about, for `NotFound` messages ("runner 42 in orgs/acme").
    subject: String,
}

impl Call {
    fn get(endpoint: &'static str, url: Url, subject: String) -> Self {
        Call {
            endpoint,
            method: Method::GET,
            url,
            body: None,
            subject,
        }
    }

    fn is_idempotent(&self) -> bool {
        matches!(self.method, Method::GET | Method::PUT | Method::DELETE)
    }
}

/// A successful answer: its body (possibly replayed from the ETag cache) and
/// the next page, if GitHub said there is one.
struct Answer {
    body: Arc<[u8]>,
    next_page: Option<Url>,
}

#[derive(Deserialize)]
struct RunnerPage {
    #[serde(default)]
    total_count: Option<u64>,
    runners: Vec<Runner>,
}

#[derive(Deserialize)]
struct RunnerGroupPage {
    runner_groups: Vec<RunnerGroup>,
}

#[derive(Deserialize)]
struct LabelsAnswer {
    labels: Vec<RunnerLabel>,
}

/// No `Debug`: holds the JIT config.
#[derive(Deserialize)]
struct JitAnswer {
    runner: Runner,
    encoded_jit_config: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// The client for one GitHub host and one credential. Cheap to share behind an
/// `Arc`; all state (installation token, ETags, rate limits, counters) is inside.
pub struct GitHubClient {
    http: reqwest::Client,
    api_base: Url,
    fingerprint: CredentialFingerprint,
    auth: Auth,
    options: ClientOptions,
    rate_limit: RateLimitGate,
    etags: EtagCache,
    runner_groups: Mutex<HashMap<Scope, (Instant, Vec<RunnerGroup>)>>,
    request_counts: Mutex<BTreeMap<(&'static str, Option<u16>), u64>>,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_base", &self.api_base.as_str())
            .field("credential", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// Builds a client after checking the endpoint and the credential material.
    /// Sends nothing: a wrong token shows on the first call as `Unauthorized`.
    pub fn new(
        endpoint: &Endpoint,
        credentials: &Credentials,
        options: ClientOptions,
    ) -> Result<Self> {
        validate_api_base(&endpoint.api_base)?;
        let auth = match credentials {
            Credentials::Token(token) => {
                let token = token.trim();
                if token.is_empty() {
                    return Err(GitHubError::InvalidCredentials("the token is empty".into()));
                }
                if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                    return Err(GitHubError::InvalidCredentials(
                        "the token contains characters not allowed in an HTTP header".into(),
                    ));
                }
                Auth::Token(token.to_owned())
            }
            Credentials::App {
                app_id,
                installation_id,
                private_key_pem,
            } => Auth::App(AppAuthenticator::new(
                app_id,
                *installation_id,
                private_key_pem,
            )?),
        };
        let http = build_http_client(endpoint, &options)?;
        Ok(GitHubClient {
            http,
            api_base: endpoint.api_base.clone(),
            fingerprint: CredentialFingerprint::of(credentials),
            auth,
            rate_limit: RateLimitGate::new(SecondaryBackoff {
                base: options.secondary_backoff_base,
                max: options.secondary_backoff_max,
            }),
            etags: EtagCache::new(options.etag_cache_entries, options.etag_cache_bytes),
            runner_groups: Mutex::new(HashMap::new()),
            request_counts: Mutex::new(BTreeMap::new()),
            options,
        })
    }

    pub fn api_base(&self) -> &Url {
        &self.api_base
    }

    pub fn credential_fingerprint(&self) -> &CredentialFingerprint {
        &self.fingerprint
    }

    /// The credential's rate-limit window as of the last answer, for metrics.
    pub fn rate_limit(&self) -> Option<RateLimitSnapshot> {
        self.rate_limit.snapshot()
    }

    /// Requests sent so far by (endpoint template, HTTP status or `None` for no answer).
    pub fn request_counts(&self) -> BTreeMap<(&'static str, Option<u16>), u64> {
        lock(&self.request_counts).clone()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn scope_url(&self, scope: &Scope, rest: &[&str]) -> Url {
        let mut segments: Vec<&str> = match scope {
            Scope::Enterprise(enterprise) => vec!["enterprises", enterprise],
            Scope::Organization(org) => vec!["orgs", org],
            Scope::Repository { owner, repo } => vec!["repos", owner, repo],
        };
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    fn record(&self, endpoint: &'static str, status: Option<u16>, elapsed: Duration) {
        tracing::debug!(
            endpoint,
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            "GitHub request"
        );
        *lock(&self.request_counts)
            .entry((endpoint, status))
            .or_insert(0) += 1;
        if let Some(observer) = &self.options.observer {
            observer(&RequestRecord {
                endpoint,
                status,
                elapsed,
            });
        }
    }

    /// The bearer credential for the next request, buying an installation token
    /// first when the cached one is missing or close to expiry.
    async fn credential(&self) -> Result<SentCredential> {
        match &self.auth {
            Auth::Token(token) => Ok(SentCredential {
                bearer: token.clone(),
                is_installation_token: false,
            }),
            Auth::App(app) => Ok(SentCredential {
                bearer: self.installation_token(app).await?,
                is_installation_token: true,
            }),
        }
    }

    async fn installation_token(&self, app: &AppAuthenticator) -> Result<String> {
        let mut slot = app.token.lock().await;
        if let Some(token) = slot.as_ref()
            && token.is_fresh(Instant::now(), self.options.token_refresh_margin)
        {
            return Ok(token.token.clone());
        }
        self.rate_limit.check(Instant::now())?;
        let jwt = app.sign_jwt(SystemTime::now()).await?;
        let installation_id = app.installation_id.to_string();
        let url = self.url(&["app", "installations", &installation_id, "access_tokens"]);
        let endpoint = endpoints::CREATE_INSTALLATION_TOKEN;
        let started = Instant::now();
        let sent = self.http.post(url).bearer_auth(&jwt).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                self.record(endpoint, None, started.elapsed());
                return Err(transport_error(endpoint, &error));
            }
        };
        let status = response.status();
        self.record(endpoint, Some(status.as_u16()), started.elapsed());
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error(endpoint, &error))?;
        if status.is_success() {
            let answer: AccessTokenAnswer = decode(endpoint, &body)?;
            let token = InstallationToken::from_answer(
                answer.token,
                &answer.expires_at,
                Instant::now(),
                SystemTime::now(),
            );
            let bearer = token.token.clone();
            *slot = Some(token);
            return Ok(bearer);
        }
        let message = error_message(&body, &[&jwt]);
        let who = format!(
            "GitHub App {} installation {}",
            app.app_id, app.installation_id
        );
        Err(match status.as_u16() {
            401 | 404 => GitHubError::Unauthorized {
                status: status.as_u16(),
                message: format!("{who}: {message}"),
            },
            403 | 429 => {
                match classify_throttle(status.as_u16(), &headers, &message, SystemTime::now()) {
                    Some(throttle) => self.rate_limit.record_throttle(throttle, Instant::now()),
                    None => GitHubError::Unauthorized {
                        status: 403,
                        message: format!("{who}: {message}"),
                    },
                }
            }
            _ => self.map_failure(endpoint, &who, status, &headers, message),
        })
    }

    /// Forgets the installation token GitHub just refused, unless another call
    /// already replaced it.
    async fn forget_installation_token(&self, refused: &str) {
        if let Auth::App(app) = &self.auth {
            let mut slot = app.token.lock().await;
            if slot.as_ref().is_some_and(|t| t.token == refused) {
                *slot = None;
            }
        }
    }

    /// Sends a call with the retry, rate-limit, auth-refresh and ETag rules of
    /// this client and returns the body of a 2xx (or the cached body on 304).
    async fn execute(&self, call: Call) -> Result<Answer> {
        let mut attempt: u32 = 0;
        let mut refreshed_after_401 = false;
        loop {
            // Checked on every attempt, after every wait: a process paused
            // past its Lease must not send a write it decided on before.
            if call.method != Method::GET
                && self.options.may_write.as_ref().is_some_and(|may| !may())
            {
                return Err(GitHubError::NotLeading);
            }
            self.rate_limit.check(Instant::now())?;
            let credential = self.credential().await?;
            let cached = (call.method == Method::GET)
                .then(|| self.etags.get(call.url.as_str()))
                .flatten();

            let mut request = self
                .http
                .request(call.method.clone(), call.url.clone())
                .header(header::AUTHORIZATION, bearer_header(&credential.bearer)?);
            if let Some(cached) = &cached {
                request = request.header(header::IF_NONE_MATCH, cached.etag.as_str());
            }
            if let Some(body) = &call.body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }

            let started = Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    self.record(call.endpoint, None, started.elapsed());
                    // A timeout already cost a full request deadline; only quick
                    // connection failures are worth another try.
                    if error.is_connect()
                        && call.is_idempotent()
                        && attempt < self.options.max_retries
                    {
                        attempt += 1;
                        self.pause_before_retry(attempt).await;
                        continue;
                    }
                    return Err(transport_error(call.endpoint, &error));
                }
            };
            let status = response.status();
            self.record(call.endpoint, Some(status.as_u16()), started.elapsed());
            let headers = response.headers().clone();
            self.rate_limit
                .observe(&headers, Instant::now(), SystemTime::now());

            if status == StatusCode::NOT_MODIFIED {
                let Some(cached) = cached else {
                    return Err(GitHubError::Protocol(format!(
                        "{} answered 304 to a request that was not conditional",
                        call.endpoint
                    )));
                };
                self.rate_limit.record_success();
                let next_page = cached
                    .next_page
                    .as_deref()
                    .map(|next| self.same_origin(call.endpoint, next))
                    .transpose()?;
                return Ok(Answer {
                    body: cached.body,
                    next_page,
                });
            }

            let body = match response.bytes().await {
                Ok(body) => body,
                Err(error) => {
                    if call.is_idempotent()
                        && attempt < self.options.max_retries
                        && !error.is_timeout()
                    {
                        attempt += 1;
                        self.pause_before_retry(attempt).await;
                        continue;
                    }
                    return Err(transport_error(call.endpoint, &error));
                }
            };

            if status.is_success() {
                self.rate_limit.record_success();
                let next_link = headers
                    .get(header::LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_page_url);
                let next_page = next_link
                    .map(|next| self.same_origin(call.endpoint, next))
                    .transpose()?;
                let body: Arc<[u8]> = Arc::from(body.as_ref());
                if call.method == Method::GET
                    && let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
                {
                    self.etags.insert(
                        call.url.as_str(),
                        CachedAnswer {
                            etag: etag.to_owned(),
                            body: body.clone(),
                            next_page: next_link.map(str::to_owned),
                        },
                    );
                }
                return Ok(Answer { body, next_page });
            }

            if status == StatusCode::UNAUTHORIZED
                && credential.is_installation_token
                && !refreshed_after_401
            {
                // The installation token may have been revoked or expired early;
                // one fresh token settles whether the credential itself is bad.
                refreshed_after_401 = true;
                self.forget_installation_token(&credential.bearer).await;
                continue;
            }
            if status.is_server_error()
                && call.is_idempotent()
                && attempt < self.options.max_retries
            {
                attempt += 1;
                self.pause_before_retry(attempt).await;
                continue;
            }
            if status == StatusCode::NOT_FOUND && call.method == Method::GET {
                self.etags.remove(call.url.as_str());
            }

            let message = error_message(&body, &[&credential.bearer]);
            if status == StatusCode::UNPROCESSABLE_ENTITY
                && call.endpoint == endpoints::DELETE_RUNNER
                && message.to_ascii_lowercase().contains("still running a job")
            {
                return Err(GitHubError::Busy);
            }
            return Err(self.map_failure(call.endpoint, &call.subject, status, &headers, message));
        }
    }

    /// Turns a non-2xx answer into the error the reconciler acts on.
    fn map_failure(
        &self,
        endpoint: &'static str,
        subject: &str,
        status: StatusCode,
        headers: &HeaderMap,
        message: String,
    ) -> GitHubError {
        let code = status.as_u16();
        match code {
            404 => GitHubError::NotFound(format!("{subject}: {message}")),
            409 => GitHubError::Conflict(message),
            400 | 422 => GitHubError::Invalid(message),
            401 => GitHubError::Unauthorized {
                status: code,
                message,
            },
            403 | 429 => match classify_throttle(code, headers, &message, SystemTime::now()) {
                Some(throttle) => self.rate_limit.record_throttle(throttle, Instant::now()),
                None => GitHubError::Unauthorized {
                    status: code,
                    message,
                },
            },
            500..=599 => GitHubError::Server { status: code },
            _ => GitHubError::Protocol(format!(
                "{endpoint} answered with unexpected status {code}: {message}"
            )),
        }
    }

    /// Follows a `Link` only to the host we were configured with: the bearer
    /// token must never travel to a URL a response chose.
    fn same_origin(&self, endpoint: &'static str, link: &str) -> Result<Url> {
        let url = self.api_base.join(link).map_err(|_| {
            GitHubError::Protocol(format!("{endpoint} sent an unreadable next-page link"))
        })?;
        if url.origin() != self.api_base.origin() {
            return Err(GitHubError::Protocol(format!(
                "{endpoint} sent a next-page link to another host ({})",
                url.host_str().unwrap_or("?")
            )));
        }
        Ok(url)
    }

    async fn pause_before_retry(&self, attempt: u32) {
        let exponential = self
            .options
            .retry_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(10));
        let jittered = exponential.mul_f64(rand::rng().random_range(0.5..1.5));
        tokio::time::sleep(jittered).await;
    }

    /// Fetches every page of a list endpoint and hands each page's body to `take_page`.
    async fn for_each_page(
        &self,
        endpoint: &'static str,
        first: Url,
        subject: &str,
        mut take_page: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(GitHubError::Protocol(format!(
                    "{endpoint} returned more than {MAX_PAGES} pages"
                )));
            }
            let answer = self
                .execute(Call::get(endpoint, url, subject.to_owned()))
                .await?;
            take_page(&answer.body)?;
            next = answer.next_page;
        }
        Ok(())
    }

    async fn runners_matching(&self, scope: &Scope, name: Option<&str>) -> Result<Vec<Runner>> {
        let mut url = self.scope_url(scope, &["actions", "runners"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(name) = name {
                query.append_pair("name", name);
            }
            query.append_pair("per_page", PER_PAGE);
        }
        let mut runners = Vec::new();
        let mut seen = HashSet::new();
        let mut last_total = None;
        self.for_each_page(
            endpoints::LIST_RUNNERS,
            url,
            &format!("runners in {scope}"),
            |body| {
                let page: RunnerPage = decode(endpoints::LIST_RUNNERS, body)?;
                last_total = page.total_count.or(last_total);
                // Pages are offsets into a list that may change while we read it;
                // a runner shifted onto the next page must not appear twice.
                runners.extend(page.runners.into_iter().filter(|r| seen.insert(r.id)));
                Ok(())
            },
        )
        .await?;
        if let Some(total) = last_total
            && total != runners.len() as u64
        {
            tracing::debug!(
                total,
                listed = runners.len(),
                "runner list changed while it was being paged"
            );
        }
        Ok(runners)
    }
}

#[async_trait]
impl GitHubApi for GitHubClient {
    /// Every runner in the scope. Pages are separate requests, so the list is
    /// not an atomic snapshot: a runner removed while paging can shift another
    /// one past us. Confirm absence with `get_runner` before acting on it.
    #[tracing::instrument(skip_all, fields(scope = %scope))]
    async fn list_runners(&self, scope: &Scope) -> Result<Vec<Runner>> {
        self.runners_matching(scope, None).await
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner = %name))]
    async fn find_runner_by_name(&self, scope: &Scope, name: &str) -> Result<Option<Runner>> {
        let runners = self.runners_matching(scope, Some(name)).await?;
        // GitHub's filter may match case-insensitively; an exact match wins.
        let exact = runners.iter().position(|runner| runner.name == name);
        let loose = || {
            runners
                .iter()
                .position(|runner| runner.name.eq_ignore_ascii_case(name))
        };
        Ok(exact.or_else(loose).map(|at| runners[at].clone()))
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_id = id))]
    async fn get_runner(&self, scope: &Scope, id: u64) -> Result<Runner> {
        let url = self.scope_url(scope, &["actions", "runners", &id.to_string()]);
        let answer = self
            .execute(Call::get(
                endpoints::GET_RUNNER,
                url,
                format!("runner {id} in {scope}"),
            ))
            .await?;
        decode(endpoints::GET_RUNNER, &answer.body)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner = %request.name, runner_group_id = request.runner_group_id))]
    async fn generate_jitconfig(&self, scope: &Scope, request: &JitRequest) -> Result<JitConfig> {
        let url = self.scope_url(scope, &["actions", "runners", "generate-jitconfig"]);
        let body = serde_json::to_vec(request).map_err(|_| {
            GitHubError::Invalid("the JIT request cannot be encoded as JSON".into())
        })?;
        let answer = self
            .execute(Call {
                endpoint: endpoints::GENERATE_JITCONFIG,
                method: Method::POST,
                url,
                body: Some(body),
                subject: format!("runner group {} in {scope}", request.runner_group_id),
            })
            .await?;
        let jit: JitAnswer = decode(endpoints::GENERATE_JITCONFIG, &answer.body)?;
        Ok(JitConfig {
            runner: jit.runner,
            encoded_jit_config: jit.encoded_jit_config,
        })
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_id = id))]
    async fn delete_runner(&self, scope: &Scope, id: u64) -> Result<()> {
        let url = self.scope_url(scope, &["actions", "runners", &id.to_string()]);
        let get_url = url.clone();
        self.execute(Call {
            endpoint: endpoints::DELETE_RUNNER,
            method: Method::DELETE,
            url,
            body: None,
            subject: format!("runner {id} in {scope}"),
        })
        .await?;
        // The runner's cached GET answer describes something that no longer exists.
        self.etags.remove(get_url.as_str());
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_id = id, labels = ?labels))]
    async fn set_custom_labels(
        &self,
        scope: &Scope,
        id: u64,
        labels: &[String],
    ) -> Result<Vec<RunnerLabel>> {
        let url = self.scope_url(scope, &["actions", "runners", &id.to_string(), "labels"]);
        let body = serde_json::to_vec(&serde_json::json!({ "labels": labels }))
            .map_err(|_| GitHubError::Invalid("the labels cannot be encoded as JSON".into()))?;
        let answer = self
            .execute(Call {
                endpoint: endpoints::SET_CUSTOM_LABELS,
                method: Method::PUT,
                url,
                body: Some(body),
                subject: format!("runner {id} in {scope}"),
            })
            .await?;
        let labels: LabelsAnswer = decode(endpoints::SET_CUSTOM_LABELS, &answer.body)?;
        Ok(labels.labels)
    }

    /// Runner groups, reused for `runner_group_ttl`: group names change rarely and
    /// every pool resolves its group on every reconcile.
    #[tracing::instrument(skip_all, fields(scope = %scope))]
    async fn list_runner_groups(&self, scope: &Scope) -> Result<Vec<RunnerGroup>> {
        if let Scope::Repository { .. } = scope {
            return Err(GitHubError::Invalid(
                "runner groups exist only for organizations and enterprises; repository runners use the default group"
                    .into(),
            ));
        }
        if let Some((fetched, groups)) = lock(&self.runner_groups).get(scope)
            && fetched.elapsed() < self.options.runner_group_ttl
        {
            return Ok(groups.clone());
        }
        let mut url = self.scope_url(scope, &["actions", "runner-groups"]);
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let mut groups = Vec::new();
        self.for_each_page(
            endpoints::LIST_RUNNER_GROUPS,
            url,
            &format!("runner groups of {scope}"),
            |body| {
                let page: RunnerGroupPage = decode(endpoints::LIST_RUNNER_GROUPS, body)?;
                groups.extend(page.runner_groups);
                Ok(())
            },
        )
        .await?;
        lock(&self.runner_groups).insert(scope.clone(), (Instant::now(), groups.clone()));
        Ok(groups)
    }
}

fn build_http_client(endpoint: &Endpoint, options: &ClientOptions) -> Result<reqwest::Client> {
    let mut default_headers = HeaderMap::new();
    default_headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    default_headers.insert(
        "x-github-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(default_headers)
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        // GitHub redirects renamed organizations and repositories; reqwest drops
        // the Authorization header if a redirect leaves the host.
        .redirect(reqwest::redirect::Policy::limited(5));
    if let Some(bundle) = &endpoint.ca_bundle {
        let certificates = reqwest::Certificate::from_pem_bundle(bundle.as_bytes())
            .map_err(|_| GitHubError::InvalidEndpoint("the CA bundle is not valid PEM".into()))?;
        if certificates.is_empty() {
            return Err(GitHubError::InvalidEndpoint(
                "the CA bundle contains no certificate".into(),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if endpoint
        .api_base
        .host()
        .is_some_and(|host| is_loopback(&host))
    {
        // A proxy from the environment must not intercept loopback test traffic.
        builder = builder.no_proxy();
    }
    builder.build().map_err(|error| {
        GitHubError::InvalidEndpoint(format!("cannot set up the HTTP client: {error}"))
    })
}

fn bearer_header(bearer: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(|_| {
        GitHubError::InvalidCredentials(
            "the token contains characters not allowed in an HTTP header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn transport_error(endpoint: &'static str, error: &reqwest::Error) -> GitHubError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // reqwest's own text names the URL and cause, never headers.
    GitHubError::Unavailable(format!("{endpoint} {what}: {error}"))
}

/// Decodes a JSON body. Only the position goes into the error: serde's
/// message can quote the offending value, which might be a JIT config.
fn decode<T: DeserializeOwned>(endpoint: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|error| {
        GitHubError::Protocol(format!(
            "cannot read the answer of {endpoint}: {:?} error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        ))
    })
}

/// GitHub's `message` from an error body, shortened and with any secret we
/// sent scrubbed, in case something between us and GitHub echoes it.
fn error_message(body: &[u8], secrets: &[&str]) -> String {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|body| body.message)
        .unwrap_or_else(|| "no message".to_owned());
    let mut message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret, "<redacted>");
    }
    message
}

struct CachedClient {
    client: Arc<GitHubClient>,
    last_used: Instant,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    endpoint: Endpoint,
    credential: CredentialFingerprint,
}

/// The production [`GitHubConnector`]: one [`GitHubClient`] per (endpoint,
/// credential fingerprint), so every pool using a credential shares its
/// installation token, ETag cache and rate-limit state.
pub struct CachingConnector {
    options: ClientOptions,
    clients: Mutex<HashMap<ClientKey, CachedClient>>,
}

impl CachingConnector {
    pub fn new(options: ClientOptions) -> Self {
        CachingConnector {
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Like [`GitHubConnector::connect`], but returns the concrete client (for
    /// rate-limit snapshots and request counters).
    pub fn client(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
    ) -> Result<Arc<GitHubClient>> {
        let key = ClientKey {
            endpoint: endpoint.clone(),
            credential: CredentialFingerprint::of(credentials),
        };
        let now = Instant::now();
        let mut clients = lock(&self.clients);
        // Rotated credentials leave their old client behind; drop those nobody holds.
        let idle_ttl = self.options.idle_client_ttl;
        clients.retain(|_, cached| {
            Arc::strong_count(&cached.client) > 1 || now.duration_since(cached.last_used) < idle_ttl
        });
        if let Some(cached) = clients.get_mut(&key) {
            cached.last_used = now;
            return Ok(cached.client.clone());
        }
        let client = Arc::new(GitHubClient::new(
            endpoint,
            credentials,
            self.options.clone(),
        )?);
        clients.insert(
            key,
            CachedClient {
                client: client.clone(),
                last_used: now,
            },
        );
        Ok(client)
    }

    /// Every live client, e.g. to export rate-limit gauges and request counters
    /// labelled by `api_base()` and `credential_fingerprint()`.
    pub fn clients(&self) -> Vec<Arc<GitHubClient>> {
        lock(&self.clients)
            .values()
            .map(|cached| cached.client.clone())
            .collect()
    }
}

impl Default for CachingConnector {
    fn default() -> Self {
        CachingConnector::new(ClientOptions::default())
    }
}

impl fmt::Debug for CachingConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingConnector")
            .field("clients", &lock(&self.clients).len())
            .finish_non_exhaustive()
    }
}

impl GitHubConnector for CachingConnector {
    fn connect(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
    ) -> Result<Arc<dyn GitHubApi>> {
        Ok(self.client(endpoint, credentials)?)
    }
}

mod groups;

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod tests;
