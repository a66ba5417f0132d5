//! What goes on and comes off the wire: the [`Call`] a request loop sends and
//! the [`Answer`] it returns, the shapes of GitHub's answer bodies, the HTTP
//! client with the headers every request carries, and the decoding of bodies
//! and errors (which never quotes a secret).

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::options::ClientOptions;
use super::proxy::OutboundProxy;
use crate::github::{Endpoint, GitHubError, Result, Runner, RunnerGroup, RunnerLabel};

/// The API version every request pins, so GitHub does not change shapes under us.
pub const API_VERSION: &str = "2022-11-28";
pub(super) const USER_AGENT: &str = concat!("runnerpool-operator/", env!("CARGO_PKG_VERSION"));
/// GitHub's maximum page size; fewer pages means fewer requests.
pub(super) const PER_PAGE: &str = "100";
/// A guard against a server whose `Link` never ends (100 000 runners at 100 a page).
pub(super) const MAX_PAGES: usize = 1000;
/// GitHub's error `message` is shown to people; a bounded excerpt is enough.
pub(super) const MAX_MESSAGE_CHARS: usize = 300;

/// What a call sends, described for the request loop.
pub(super) struct Call {
    pub(super) endpoint: &'static str,
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) body: Option<Vec<u8>>,
    /// What the call is about, for `NotFound` messages ("runner 42 in orgs/acme").
    pub(super) subject: String,
}

impl Call {
    pub(super) fn get(endpoint: &'static str, url: Url, subject: String) -> Self {
        Call {
            endpoint,
            method: Method::GET,
            url,
            body: None,
            subject,
        }
    }

    pub(super) fn is_idempotent(&self) -> bool {
        matches!(self.method, Method::GET | Method::PUT | Method::DELETE)
    }
}

/// A successful answer: its body (possibly replayed from the ETag cache) and
/// the next page, if GitHub said there is one.
pub(super) struct Answer {
    pub(super) body: Arc<[u8]>,
    pub(super) next_page: Option<Url>,
}

#[derive(Deserialize)]
pub(super) struct RunnerPage {
    #[serde(default)]
    pub(super) total_count: Option<u64>,
    pub(super) runners: Vec<Runner>,
}

#[derive(Deserialize)]
pub(super) struct RunnerGroupPage {
    pub(super) runner_groups: Vec<RunnerGroup>,
}

#[derive(Deserialize)]
pub(super) struct LabelsAnswer {
    pub(super) labels: Vec<RunnerLabel>,
}

/// No `Debug`: holds the JIT config.
#[derive(Deserialize)]
pub(super) struct JitAnswer {
    pub(super) runner: Runner,
    pub(super) encoded_jit_config: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

pub(super) fn build_http_client(
    endpoint: &Endpoint,
    options: &ClientOptions,
) -> Result<reqwest::Client> {
    let mut default_headers = HeaderMap::new();
    default_headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    default_headers.insert(
        "x-github-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    http_client_builder(endpoint, options)?
        .default_headers(default_headers)
        .build()
        .map_err(|error| {
            GitHubError::InvalidEndpoint(format!("cannot set up the HTTP client: {error}"))
        })
}

/// The HTTP setup every client of a GitHub host shares, the REST client and
/// the Actions service client alike: user agent, timeouts, redirects, the
/// endpoint's extra CAs, and the [`OutboundProxy`] of the environment.
/// Callers add their own default headers and build it.
pub fn http_client_builder(
    endpoint: &Endpoint,
    options: &ClientOptions,
) -> Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
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
    let proxy = OutboundProxy::from_env()
        .map_err(|error| GitHubError::InvalidEndpoint(error.to_string()))?;
    proxy.apply(builder).map_err(|error| {
        // Without the URL, which could be the proxy's with its credentials.
        GitHubError::InvalidEndpoint(format!("cannot set up the proxy: {}", error.without_url()))
    })
}

pub(super) fn bearer_header(bearer: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(|_| {
        GitHubError::InvalidCredentials(
            "the token contains characters not allowed in an HTTP header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

pub(super) fn transport_error(endpoint: &'static str, error: &reqwest::Error) -> GitHubError {
    // reqwest's own text names the URL and cause, never headers.
    GitHubError::Unavailable(format!("{endpoint} {}: {error}", failure_kind(error)))
}

/// How a request that got no answer failed, in a few words for messages.
pub fn failure_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    }
}

/// Decodes a JSON body. Only the position goes into the error: serde's
/// message can quote the offending value, which might be a JIT config.
pub(super) fn decode<T: DeserializeOwned>(endpoint: &'static str, body: &[u8]) -> Result<T> {
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
pub(super) fn error_message(body: &[u8], secrets: &[&str]) -> String {
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
