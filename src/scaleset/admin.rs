//! The admin token of the Actions service for one scope, and the tenant URL
//! it comes with. It is bought with the scope's registration token (from the
//! REST API) at `POST {api}/actions/runner-registration`, cached, and bought
//! again when less than a minute of it is left, as its JWT `exp` claim says
//! (read, not verified: the service checks it, this client only schedules).
//! Also here: the scope's html URL that registration names.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use url::{Host, Url};

use super::endpoints::REGISTER;
use super::error::ScaleSetError;
use super::http::{Outgoing, Transport, token_url};
use super::wire::{AdminAnswer, decode};
use crate::github::{GitHubApi, GitHubError, Scope};

/// The admin token is bought again once less than this is left of it.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long an admin token whose expiry cannot be read is used: short, so a
/// service that changed its token format costs a registration every few
/// minutes rather than a failure on every call.
const UNREADABLE_EXPIRY_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The admin token with the tenant it is for. Never formatted by `Debug`.
#[derive(Clone)]
pub(super) struct AdminToken {
    /// The Actions service URL every call of the scope starts with.
    pub(super) tenant: Url,
    pub(super) token: String,
    expires_at: SystemTime,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("tenant", &self.tenant.as_str())
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AdminToken {
    fn is_fresh(&self, now: SystemTime) -> bool {
        now + REFRESH_MARGIN < self.expires_at
    }
}

/// The admin token of one scope, shared by every call of its service.
pub(super) struct AdminTokens {
    github: Arc<dyn GitHubApi>,
    pub(super) scope: Scope,
    pub(super) html_url: Url,
    registration_url: Url,
    /// Held across a registration, so concurrent callers wait for one.
    slot: tokio::sync::Mutex<Option<AdminToken>>,
}

impl AdminTokens {
    pub(super) fn new(
        github: Arc<dyn GitHubApi>,
        scope: Scope,
        api_base: &Url,
    ) -> Result<Self, ScaleSetError> {
        let mut registration_url = api_base.clone();
        registration_url
            .path_segments_mut()
            .map_err(|_| ScaleSetError::InvalidEndpoint("the API URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["actions", "runner-registration"]);
        Ok(AdminTokens {
            github,
            html_url: html_url(api_base, &scope)?,
            scope,
            registration_url,
            slot: tokio::sync::Mutex::new(None),
        })
    }

    /// The cached admin token, or a new one when it is missing or about to expire.
    pub(super) async fn current(&self, transport: &Transport) -> Result<AdminToken, ScaleSetError> {
        let mut slot = self.slot.lock().await;
        if let Some(admin) = slot.as_ref()
            && admin.is_fresh(SystemTime::now())
        {
            return Ok(admin.clone());
        }
        let admin = self.register(transport).await?;
        *slot = Some(admin.clone());
        Ok(admin)
    }

    /// Forgets the admin token the service just refused, unless another call
    /// already replaced it.
    pub(super) async fn forget(&self, refused: &str) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|admin| admin.token == refused) {
            *slot = None;
        }
    }

    #[tracing::instrument(skip_all, fields(scope = %self.scope))]
    async fn register(&self, transport: &Transport) -> Result<AdminToken, ScaleSetError> {
        let registration = self
            .github
            .registration_token(&self.scope)
            .await
            .map_err(|error| match error {
                GitHubError::NotLeading => ScaleSetError::NotLeading,
                error => ScaleSetError::RegistrationToken(error),
            })?;
        let body = serde_json::to_vec(&serde_json::json!({
            "url": self.html_url.as_str(),
            "runner_event": "register",
        }))
        .map_err(|_| ScaleSetError::Protocol("cannot encode the registration".into()))?;
        let settings = &transport.settings;
        let attempts = settings.registration_attempts.max(1);
        let mut attempt = 1;
        let fault = loop {
            let answer = transport
                .send(Outgoing {
                    endpoint: REGISTER,
                    method: Method::POST,
                    url: self.registration_url.clone(),
                    scheme: "RemoteAuth",
                    token: &registration.token,
                    body: Some(body.clone()),
                    poll_capacity: None,
                })
                .await?;
            match answer {
                Ok(success) => return self.admin_token(&success.body),
                // A registration token GitHub just issued is not always
                // accepted at once.
                Err(fault) if matches!(fault.status.as_u16(), 401 | 403) && attempt < attempts => {
                    tokio::time::sleep(settings.registration_backoff * attempt).await;
                    attempt += 1;
                }
                Err(fault) => break fault,
            }
        };
        Err(match fault.status.as_u16() {
            401 | 403 => ScaleSetError::Unauthorized(format!(
                "runner registration for {} refused after {attempts} attempts ({}): {}",
                self.html_url,
                fault.status.as_u16(),
                fault.message
            )),
            404 => ScaleSetError::Rejected(format!(
                "{} has no runner registration endpoint (runner scale sets need github.com or GHES 3.9 or later)",
                self.registration_url
            )),
            _ => fault.into(),
        })
    }

    fn admin_token(&self, body: &[u8]) -> Result<AdminToken, ScaleSetError> {
        let answer: AdminAnswer = decode(REGISTER, body)?;
        if answer.token.is_empty() {
            return Err(ScaleSetError::Protocol(
                "the runner registration answered without a token".into(),
            ));
        }
        let tenant = token_url(&answer.url, "Actions service URL")?;
        let expires_at = jwt_expiry(&answer.token).unwrap_or_else(|| {
            tracing::warn!(
                scope = %self.scope,
                "the admin token's expiry cannot be read; it will be replaced in a few minutes"
            );
            SystemTime::now() + UNREADABLE_EXPIRY_LIFETIME
        });
        tracing::debug!(scope = %self.scope, tenant = %tenant, "got an Actions service admin token");
        Ok(AdminToken {
            tenant,
            token: answer.token,
            expires_at,
        })
    }
}

/// The `exp` claim of a JWT, read without checking the signature.
pub(super) fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let claims = token.split('.').nth(1)?;
    let claims = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp.is_finite() && exp > 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(exp))
}

/// The scope's page on the web, which the runner registration names:
/// `https://github.com/acme` for `https://api.github.com` and organization
/// `acme`; `https://HOST/owner/repo` for GHES at `https://HOST/api/v3`;
/// `…/enterprises/e` for an enterprise. Other API URLs (loopback fakes,
/// proxies) keep their host and path.
pub(super) fn html_url(api_base: &Url, scope: &Scope) -> Result<Url, ScaleSetError> {
    let mut html = api_base.clone();
    html.set_query(None);
    html.set_fragment(None);
    let path = api_base.path().trim_end_matches('/').to_owned();
    if let Some(root) = path.strip_suffix("/api/v3") {
        html.set_path(root);
    } else if path.is_empty()
        && let Some(Host::Domain(domain)) = api_base.host()
        && let Some(web) = domain
            .get(..4)
            .filter(|api| api.eq_ignore_ascii_case("api."))
            .and_then(|_| domain.get(4..))
    {
        let web = web.to_owned();
        html.set_host(Some(&web)).map_err(|_| {
            ScaleSetError::InvalidEndpoint(format!("cannot derive the web host from {api_base}"))
        })?;
    }
    let segments: Vec<&str> = match scope {
        Scope::Enterprise(enterprise) => vec!["enterprises", enterprise],
        Scope::Organization(org) => vec![org],
        Scope::Repository { owner, repo } => vec![owner, repo],
    };
    html.path_segments_mut()
        .map_err(|_| ScaleSetError::InvalidEndpoint(format!("{api_base} cannot have a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(api: &str, scope: Scope) -> String {
        html_url(&Url::parse(api).unwrap(), &scope)
            .unwrap()
            .to_string()
    }

    fn org() -> Scope {
        Scope::Organization("acme".into())
    }

    #[test]
    fn html_urls_of_every_kind_of_api_url() {
        assert_eq!(
            html("https://api.github.com", org()),
            "https://github.com/acme"
        );
        assert_eq!(
            html("https://api.github.com/", org()),
            "https://github.com/acme"
        );
        assert_eq!(
            html("https://API.acme.ghe.com", org()),
            "https://acme.ghe.com/acme"
        );
        let repo = Scope::Repository {
            owner: "acme".into(),
            repo: "app".into(),
        };
        assert_eq!(
            html("https://ghe.example/api/v3", repo.clone()),
            "https://ghe.example/acme/app"
        );
        assert_eq!(
            html("https://ghe.example/api/v3/", repo),
            "https://ghe.example/acme/app"
        );
        let enterprise = Scope::Enterprise("big".into());
        assert_eq!(
            html("https://ghe.example:8443/api/v3", enterprise.clone()),
            "https://ghe.example:8443/enterprises/big"
        );
        assert_eq!(
            html("https://api.github.com", enterprise),
            "https://github.com/enterprises/big"
        );
        assert_eq!(
            html("http://127.0.0.1:8080", org()),
            "http://127.0.0.1:8080/acme"
        );
        assert_eq!(
            html("http://localhost:1/api/v3", org()),
            "http://localhost:1/acme"
        );
        assert_eq!(
            html("https://proxy.example/github", org()),
            "https://proxy.example/github/acme"
        );
    }

    fn jwt(claims: &str) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn the_expiry_is_read_without_a_signature_check() {
        let at = jwt_expiry(&jwt(r#"{"exp": 2000000000, "aud": "x"}"#)).unwrap();
        assert_eq!(at, UNIX_EPOCH + Duration::from_secs(2_000_000_000));
        let padded = format!("h.{}==.s", URL_SAFE_NO_PAD.encode(r#"{"exp":1700000000}"#));
        assert!(jwt_expiry(&padded).is_some());
        for unreadable in [
            "opaque-token",
            "a.b.c",
            &jwt(r#"{"nbf": 1}"#),
            &jwt(r#"{"exp": "soon"}"#),
        ] {
            assert_eq!(jwt_expiry(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn a_token_is_fresh_until_a_minute_before_it_expires() {
        let now = SystemTime::now();
        let token = |left: u64| AdminToken {
            tenant: Url::parse("https://t.example/").unwrap(),
            token: "eyJadmin".into(),
            expires_at: now + Duration::from_secs(left),
        };
        assert!(token(3600).is_fresh(now));
        assert!(!token(59).is_fresh(now));
        assert!(!format!("{:?}", token(1)).contains("eyJadmin"));
    }
}
