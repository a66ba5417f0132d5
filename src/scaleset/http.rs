//! The HTTP side of the Actions service client: [`HttpSettings`] (the
//! project's [`ClientOptions`] and the endpoint's CA bundle, plus the message
//! poll's own deadline), and the transport every call goes through. The
//! transport is built with the REST client's setup (user agent, timeouts,
//! extra CAs, no proxy for loopback), retries idempotent calls after a 5xx
//! or a failed connection as the REST client does, refuses writes without
//! the leader Lease, reports every request to the options' observer, and
//! scrubs the credential it sent from whatever the service answers.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::{Fault, ScaleSetError};
use super::wire::strip_bom;
use crate::github::Endpoint;
use crate::github::client::{
    ClientOptions, RequestRecord, failure_kind, http_client_builder, is_loopback,
};

/// How the Actions service client talks HTTP.
#[derive(Clone)]
pub struct HttpSettings {
    /// The REST client's options: connect and request timeouts, retries and
    /// their backoff, the request observer (metrics) and the write gate.
    pub options: ClientOptions,
    /// PEM bundle of extra CAs to trust (GHES with a private CA): the
    /// endpoint's `ca_bundle`.
    pub ca_bundle: Option<String>,
    /// Deadline of one message poll. The service holds a poll about 50 s
    /// before it answers 202, so this must be longer; `options.request_timeout`
    /// does not apply to the poll.
    pub poll_timeout: Duration,
    /// Attempts at the runner registration while it answers 401 or 403: a
    /// fresh registration token can take a moment to be accepted.
    pub registration_attempts: u32,
    /// Wait before the second registration attempt; grows linearly.
    pub registration_backoff: Duration,
}

impl HttpSettings {
    pub fn new(options: ClientOptions, ca_bundle: Option<String>) -> Self {
        HttpSettings {
            options,
            ca_bundle,
            poll_timeout: Duration::from_secs(70),
            registration_attempts: 4,
            registration_backoff: Duration::from_secs(1),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings::new(ClientOptions::default(), None)
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("options", &self.options)
            .field("ca_bundle", &self.ca_bundle.as_ref().map(|_| "<pem>"))
            .field("poll_timeout", &self.poll_timeout)
            .field("registration_attempts", &self.registration_attempts)
            .field("registration_backoff", &self.registration_backoff)
            .finish()
    }
}

/// One request, described for [`Transport::send`].
pub(super) struct Outgoing<'a> {
    /// The bounded label it is counted and logged under.
    pub(super) endpoint: &'static str,
    pub(super) method: Method,
    pub(super) url: Url,
    /// `Bearer` or `RemoteAuth`.
    pub(super) scheme: &'static str,
    pub(super) token: &'a str,
    pub(super) body: Option<Vec<u8>>,
    /// The message poll: its own deadline, its own `Accept`, never retried
    /// (the listener polls again anyway).
    pub(super) poll_capacity: Option<u32>,
}

/// A 2xx answer, byte-order mark stripped.
pub(super) struct Success {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

/// What the service said: a 2xx, or its refusal.
pub(super) type Answer = Result<Success, Fault>;

/// The HTTP client of one [`ActionsService`](super::service::ActionsService).
pub(super) struct Transport {
    client: reqwest::Client,
    pub(super) settings: HttpSettings,
}

impl Transport {
    /// Built for the REST API at `api_base`, with its CA bundle.
    pub(super) fn new(api_base: &Url, settings: HttpSettings) -> Result<Self, ScaleSetError> {
        let endpoint = Endpoint {
            api_base: api_base.clone(),
            ca_bundle: settings.ca_bundle.clone(),
        };
        let client = http_client_builder(&endpoint, &settings.options)
            .and_then(|builder| {
                builder.build().map_err(|error| {
                    crate::github::GitHubError::InvalidEndpoint(format!(
                        "cannot set up the HTTP client: {error}"
                    ))
                })
            })
            .map_err(|error| ScaleSetError::InvalidEndpoint(error.to_string()))?;
        Ok(Transport { client, settings })
    }

    /// Sends `call`; `Err` only when no answer came (or the call was refused
    /// locally), `Ok(Err(fault))` when the service refused it.
    pub(super) async fn send(&self, call: Outgoing<'_>) -> Result<Answer, ScaleSetError> {
        let options = &self.settings.options;
        let retries = match (&call.method, call.poll_capacity) {
            (_, Some(_)) => 0,
            (&Method::GET | &Method::PUT | &Method::DELETE, None) => options.max_retries,
            _ => 0,
        };
        let authorization = authorization(call.scheme, call.token)?;
        let mut attempt = 0;
        loop {
            // Checked on every attempt: a process paused past its Lease must
            // not send a write it decided on before.
            if call.method != Method::GET && options.may_write.as_ref().is_some_and(|may| !may()) {
                return Err(ScaleSetError::NotLeading);
            }
            let mut request = self
                .client
                .request(call.method.clone(), call.url.clone())
                .header(header::AUTHORIZATION, authorization.clone());
            if let Some(body) = &call.body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            if let Some(capacity) = call.poll_capacity {
                request = request
                    .header(header::ACCEPT, super::wire::QUEUE_ACCEPT)
                    .header("X-ScaleSetMaxCapacity", capacity)
                    .timeout(self.settings.poll_timeout);
            }
            let started = Instant::now();
            let sent = request.send().await;
            self.record(
                call.endpoint,
                sent.as_ref().ok().map(|r| r.status()),
                started,
            );
            let read = match sent {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|body| (status, body))
                }
                Err(error) => Err(error),
            };
            let (status, body) = match read {
                Ok(read) => read,
                // A timeout already cost a whole deadline; only quick failures
                // are worth another try.
                Err(error) if attempt < retries && !error.is_timeout() => {
                    attempt += 1;
                    tokio::time::sleep(options.retry_delay(attempt)).await;
                    continue;
                }
                Err(error) => return Err(transport_error(call.endpoint, error)),
            };
            if status.is_server_error() && attempt < retries {
                attempt += 1;
                tokio::time::sleep(options.retry_delay(attempt)).await;
                continue;
            }
            let body = strip_bom(&body).to_vec();
            return Ok(if status.is_success() {
                Ok(Success { status, body })
            } else {
                Err(Fault::read(status, &body, &[call.token]))
            });
        }
    }

    fn record(&self, endpoint: &'static str, status: Option<StatusCode>, started: Instant) {
        let status = status.map(|s| s.as_u16());
        let elapsed = started.elapsed();
        tracing::debug!(
            endpoint,
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            "Actions service request"
        );
        if let Some(observer) = &self.settings.options.observer {
            observer(&RequestRecord {
                endpoint,
                status,
                elapsed,
            });
        }
    }
}

fn authorization(scheme: &str, token: &str) -> Result<HeaderValue, ScaleSetError> {
    let mut value = HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| {
        ScaleSetError::Protocol("a token holds characters not allowed in an HTTP header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// reqwest's text without the URL: the endpoint template says where.
fn transport_error(endpoint: &'static str, error: reqwest::Error) -> ScaleSetError {
    let what = failure_kind(&error);
    ScaleSetError::Unavailable(format!("{endpoint} {what}: {}", error.without_url()))
}

/// Checks a URL the service handed out before a token is sent to it:
/// `https`, or plain `http` to a loopback host (tests and local fakes).
pub(super) fn token_url(raw: &str, what: &str) -> Result<Url, ScaleSetError> {
    let invalid = |why: String| Err(ScaleSetError::InvalidEndpoint(format!("the {what} {why}")));
    let Ok(url) = Url::parse(raw) else {
        return invalid("is not a URL".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return invalid("carries a user name or password".into());
    }
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => Ok(url),
        ("http", Some(host)) if is_loopback(&host) => Ok(url),
        (scheme, _) => invalid(format!(
            "{} is not https (plain http only to loopback hosts; scheme {scheme})",
            url.host_str().unwrap_or("?")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_only_to_https_or_loopback() {
        assert!(
            token_url(
                "https://pipelines.actions.githubusercontent.com/abc/",
                "tenant"
            )
            .is_ok()
        );
        assert!(token_url("http://127.0.0.1:9/tenant", "tenant").is_ok());
        assert!(token_url("http://localhost/q?sessionId=1", "queue").is_ok());
        for bad in [
            "http://example.com/t",
            "ftp://example.com",
            "https://u:p@example.com",
            "nope",
        ] {
            let err = token_url(bad, "tenant").unwrap_err();
            assert!(matches!(err, ScaleSetError::InvalidEndpoint(_)), "{bad}");
            assert!(!err.to_string().contains("u:p"), "{err}");
        }
    }

    #[test]
    fn settings_show_no_ca_bundle_and_wait_longer_than_the_long_poll() {
        let settings = HttpSettings::new(ClientOptions::default(), Some("-----BEGIN".into()));
        assert!(!format!("{settings:?}").contains("BEGIN"));
        assert!(settings.poll_timeout > Duration::from_secs(50));
        assert!(settings.poll_timeout > settings.options.request_timeout);
    }

    #[test]
    fn the_authorization_header_is_sensitive() {
        let value = authorization("RemoteAuth", "AABBCC").unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("AABBCC"));
        assert!(authorization("Bearer", "bad\ntoken").is_err());
    }
}
