//! [`GitHubClient`]: the client for one GitHub host and one credential, and
//! the request loop every endpoint goes through: construction, authentication
//! (token, or GitHub App installation tokens bought and refreshed here),
//! retries of idempotent calls, rate-limit blocking, conditional requests
//! with the ETag cache, mapping failures to [`GitHubError`], pagination and
//! request counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::endpoints;
use super::options::{ClientOptions, CredentialFingerprint, RequestRecord, validate_api_base};
use super::wire::{
    Answer, Call, MAX_PAGES, bearer_header, build_http_client, decode, error_message,
    transport_error,
};
use crate::github::app_auth::{AccessTokenAnswer, AppAuthenticator, InstallationToken};
use crate::github::etag_cache::{CachedAnswer, EtagCache};
use crate::github::pagination::next_page_url;
use crate::github::rate_limit::{
    RateLimitGate, RateLimitSnapshot, SecondaryBackoff, classify_throttle,
};
use crate::github::{Credentials, Endpoint, GitHubError, Result, RunnerGroup, Scope};
use crate::mutex::lock;

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

/// The client for one GitHub host and one credential. Cheap to share behind an
/// `Arc`; all state (installation token, ETags, rate limits, counters) is inside.
pub struct GitHubClient {
    http: reqwest::Client,
    api_base: Url,
    fingerprint: CredentialFingerprint,
    auth: Auth,
    pub(super) options: ClientOptions,
    rate_limit: RateLimitGate,
    pub(super) etags: EtagCache,
    pub(super) runner_groups: Mutex<HashMap<Scope, (Instant, Vec<RunnerGroup>)>>,
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

    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub(super) fn scope_url(&self, scope: &Scope, rest: &[&str]) -> Url {
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

    /// The App's own JWT, for the App's endpoints (its webhook's log).
    async fn app_credential(&self) -> Result<SentCredential> {
        match &self.auth {
            Auth::App(app) => Ok(SentCredential {
                bearer: app.sign_jwt(SystemTime::now()).await?,
                is_installation_token: false,
            }),
            Auth::Token(_) => Err(GitHubError::InvalidCredentials(
                "the GitHub App's own endpoints need the App's credentials (appId, installationId, privateKey), not a token".into(),
            )),
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
    pub(super) async fn execute(&self, call: Call) -> Result<Answer> {
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
            let credential = match endpoints::is_app_endpoint(call.endpoint) {
                true => self.app_credential().await?,
                false => self.credential().await?,
            };
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
        tokio::time::sleep(self.options.retry_delay(attempt)).await;
    }

    /// Fetches every page of a list endpoint and hands each page's body to `take_page`.
    pub(super) async fn for_each_page(
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
}
