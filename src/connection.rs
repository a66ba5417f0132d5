//! Turns a pool's `spec.github` and its credentials Secret into what the
//! GitHub client needs: a scope, an endpoint and credentials; and
//! [`Target`], the GitHub side of a pool once connected. Pure functions;
//! errors name the Secret and the key, never a value.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use crate::crd::GitHubSpec;
use crate::github::{Credentials, Endpoint, GitHubApi, Scope};

/// The GitHub side of a pool, once connected: the client for its host and
/// credential, the host (with the CA bundle to trust for it), its scope and
/// its runner group.
#[derive(Clone)]
pub struct Target {
    pub api: Arc<dyn GitHubApi>,
    pub endpoint: Endpoint,
    pub scope: Scope,
    pub runner_group_id: u64,
}

pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const TOKEN_KEY: &str = "token";
pub const APP_ID_KEY: &str = "appId";
pub const INSTALLATION_ID_KEY: &str = "installationId";
pub const PRIVATE_KEY_KEY: &str = "privateKey";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionError {
    #[error("spec.github must name exactly one of enterprise, organization or repository")]
    NoScope,
    #[error("spec.github.repository must be owner/name, got {0:?}")]
    BadRepository(String),
    #[error("spec.github.apiUrl is not a usable URL: {0}")]
    BadApiUrl(String),
    #[error(
        "spec.github.apiUrl {url:?} has no path: GitHub Enterprise Server's REST API is at {suggestion:?} (only api.github.com and api.SUBDOMAIN.ghe.com serve it at the root)"
    )]
    GhesWithoutApiPath { url: String, suggestion: String },
    #[error(
        "Secret {secret:?} has neither key {TOKEN_KEY:?} nor the keys {APP_ID_KEY:?}, {INSTALLATION_ID_KEY:?} and {PRIVATE_KEY_KEY:?}"
    )]
    NoCredentials { secret: String },
    #[error("Secret {secret:?} key {key:?} is not valid: {reason}")]
    BadKey {
        secret: String,
        key: &'static str,
        reason: &'static str,
    },
    #[error(
        "enterprise runners need a classic personal access token with manage_runners:enterprise; GitHub does not accept GitHub App tokens there (Secret {secret:?})"
    )]
    AppAtEnterprise { secret: String },
}

pub fn scope(github: &GitHubSpec) -> Result<Scope, ConnectionError> {
    match (&github.enterprise, &github.organization, &github.repository) {
        (Some(e), None, None) => Ok(Scope::Enterprise(e.clone())),
        (None, Some(o), None) => Ok(Scope::Organization(o.clone())),
        (None, None, Some(r)) => match r.split_once('/') {
            Some((owner, repo)) if !owner.is_empty() && !repo.is_empty() && !repo.contains('/') => {
                Ok(Scope::Repository {
                    owner: owner.to_string(),
                    repo: repo.to_string(),
                })
            }
            _ => Err(ConnectionError::BadRepository(r.clone())),
        },
        _ => Err(ConnectionError::NoScope),
    }
}

pub fn endpoint(github: &GitHubSpec) -> Result<Endpoint, ConnectionError> {
    let raw = github.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
    let api_base = url::Url::parse(raw.trim_end_matches('/'))
        .map_err(|e| ConnectionError::BadApiUrl(e.to_string()))?;
    if !matches!(api_base.scheme(), "http" | "https") || api_base.host().is_none() {
        return Err(ConnectionError::BadApiUrl(format!(
            "{raw:?} is not an http(s) URL"
        )));
    }
    if needs_api_path(&api_base) {
        let mut suggestion = api_base.clone();
        suggestion.set_path("/api/v3");
        return Err(ConnectionError::GhesWithoutApiPath {
            url: raw.to_string(),
            suggestion: suggestion.as_str().to_string(),
        });
    }
    Ok(Endpoint {
        api_base,
        ca_bundle: github.ca_bundle.clone().filter(|b| !b.trim().is_empty()),
    })
}

/// A host's root that cannot be a REST API: GitHub Enterprise Server serves
/// it under `/api/v3`; only github.com (`api.github.com`) and GHE.com
/// (`api.SUBDOMAIN.ghe.com`) serve it at the root. Without this check such a
/// URL reads as 404s, which look like wrong credentials. Loopback hosts are
/// left alone (local proxies, test fakes).
fn needs_api_path(api_base: &url::Url) -> bool {
    if !matches!(api_base.path(), "" | "/") {
        return false;
    }
    match api_base.host() {
        Some(url::Host::Domain(domain)) => {
            let domain = domain.to_ascii_lowercase();
            let ghe_com = domain.starts_with("api.") && domain.ends_with(".ghe.com");
            domain != "api.github.com" && domain != "localhost" && !ghe_com
        }
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        None => false,
    }
}

/// Reads a token, or a GitHub App's id, installation id and private key.
pub fn credentials(secret: &Secret, scope: &Scope) -> Result<Credentials, ConnectionError> {
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let value = |key: &'static str| -> Result<Option<String>, ConnectionError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            });
        match bytes {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| ConnectionError::BadKey {
                    secret: secret_name.clone(),
                    key,
                    reason: "not UTF-8 text",
                }),
        }
    };

    if let Some(token) = value(TOKEN_KEY)? {
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConnectionError::BadKey {
                secret: secret_name,
                key: TOKEN_KEY,
                reason: "contains whitespace",
            });
        }
        return Ok(Credentials::Token(token));
    }

    match (
        value(APP_ID_KEY)?,
        value(INSTALLATION_ID_KEY)?,
        value(PRIVATE_KEY_KEY)?,
    ) {
        (Some(app_id), Some(installation_id), Some(private_key_pem)) => {
            if matches!(scope, Scope::Enterprise(_)) {
                return Err(ConnectionError::AppAtEnterprise {
                    secret: secret_name,
                });
            }
            let installation_id = installation_id
                .parse()
                .map_err(|_| ConnectionError::BadKey {
                    secret: secret_name.clone(),
                    key: INSTALLATION_ID_KEY,
                    reason: "not a number",
                })?;
            if !private_key_pem.contains("PRIVATE KEY-----") {
                return Err(ConnectionError::BadKey {
                    secret: secret_name,
                    key: PRIVATE_KEY_KEY,
                    reason: "not a PEM private key",
                });
            }
            Ok(Credentials::App {
                app_id,
                installation_id,
                private_key_pem,
            })
        }
        _ => Err(ConnectionError::NoCredentials {
            secret: secret_name,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("gh".into()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn github(yaml: &str) -> GitHubSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn scopes_and_endpoints() {
        let spec = github("{repository: acme/app, credentialsSecret: {name: gh}}");
        assert_eq!(
            scope(&spec),
            Ok(Scope::Repository {
                owner: "acme".into(),
                repo: "app".into()
            })
        );
        assert_eq!(
            endpoint(&spec).unwrap().api_base.as_str(),
            "https://api.github.com/"
        );
        let ghes = github(
            "{enterprise: big, apiUrl: 'https://ghe.example/api/v3/', credentialsSecret: {name: gh}}",
        );
        assert_eq!(scope(&ghes), Ok(Scope::Enterprise("big".into())));
        assert_eq!(
            endpoint(&ghes).unwrap().api_base.as_str(),
            "https://ghe.example/api/v3"
        );
        let both = github("{enterprise: big, organization: acme, credentialsSecret: {name: gh}}");
        assert_eq!(scope(&both), Err(ConnectionError::NoScope));
        assert!(
            endpoint(&github(
                "{organization: a, apiUrl: 'ftp://x', credentialsSecret: {name: gh}}"
            ))
            .is_err()
        );
    }

    #[test]
    fn a_ghes_url_without_api_path_gets_a_hint() {
        let at = |url: &str| {
            endpoint(&github(&format!(
                "{{organization: a, apiUrl: '{url}', credentialsSecret: {{name: gh}}}}"
            )))
        };
        let err = at("https://ghe.example.com/").unwrap_err();
        assert!(
            err.to_string()
                .contains("\"https://ghe.example.com/api/v3\""),
            "{err}"
        );
        assert!(at("https://10.1.2.3:8443").is_err());
        for fine in [
            "https://api.github.com",
            "https://API.GitHub.com/",
            "https://api.acme.ghe.com",
            "https://ghe.example.com/api/v3",
            "https://proxy.example.com/github",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:1/",
        ] {
            assert!(at(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn token_and_app_credentials() {
        let org = Scope::Organization("acme".into());
        assert_eq!(
            credentials(&secret(&[("token", "ghp_abc\n")]), &org),
            Ok(Credentials::Token("ghp_abc".into()))
        );
        // Shaped like a PEM key, assembled so no key-like text sits in the tree.
        let kind = "RSA PRIVATE KEY";
        let pem = format!("-----BEGIN {kind}-----\nMII\n-----END {kind}-----");
        let app = secret(&[
            ("appId", "12"),
            ("installationId", "34"),
            ("privateKey", &pem),
        ]);
        assert!(matches!(
            credentials(&app, &org),
            Ok(Credentials::App {
                installation_id: 34,
                ..
            })
        ));
        assert_eq!(
            credentials(&app, &Scope::Enterprise("big".into())),
            Err(ConnectionError::AppAtEnterprise {
                secret: "gh".into()
            })
        );
    }

    #[test]
    fn bad_secrets_name_the_key_and_never_the_value() {
        let org = Scope::Organization("acme".into());
        let err = credentials(&secret(&[("tokn", "ghp_secret")]), &org).unwrap_err();
        assert!(matches!(err, ConnectionError::NoCredentials { .. }));
        let err = credentials(
            &secret(&[
                ("appId", "1"),
                ("installationId", "x1"),
                ("privateKey", "ghp_secret PRIVATE KEY-----"),
            ]),
            &org,
        )
        .unwrap_err();
        assert!(err.to_string().contains("installationId"));
        assert!(!err.to_string().contains("secret PRIVATE"));
        let err = credentials(
            &secret(&[
                ("appId", "1"),
                ("installationId", "1"),
                ("privateKey", "ghp_secret"),
            ]),
            &org,
        )
        .unwrap_err();
        assert!(err.to_string().contains("privateKey") && !err.to_string().contains("ghp_secret"));
        let err = credentials(&secret(&[("token", "ghp_a b")]), &org).unwrap_err();
        assert!(!err.to_string().contains("ghp_a"));
    }
}
