//! Credentials: classic tokens with OAuth scopes, GitHub App JWTs and the
//! installation tokens they are exchanged for.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api_error::ApiError;
use crate::util;

/// A classic personal access token and the OAuth scopes it was granted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenSpec {
    pub token: String,
    pub scopes: Vec<String>,
    /// Name used for this credential in counters and the request log
    /// (default: `token:` and a short hash of the token).
    #[serde(default)]
    pub name: Option<String>,
    /// Primary rate-limit budget per window (default: `Config::rate_limit`).
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

impl TokenSpec {
    pub fn new(token: impl Into<String>, scopes: &[&str]) -> Self {
        TokenSpec {
            token: token.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            name: None,
            rate_limit: None,
        }
    }
}

/// A GitHub App: its id, client id, key and installations.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub app_id: u64,
    /// Also accepted as the JWT's `iss`.
    pub client_id: Option<String>,
    /// The app's key: an RSA public key, or the private key itself (PKCS#1
    /// or PKCS#8 PEM) from which the public half is derived.
    pub key_pem: String,
    pub installations: Vec<InstallationSpec>,
}

/// One installation of an app.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallationSpec {
    pub id: u64,
    /// The organization or user it is installed on; `None` = every account
    /// of the fake (handy for demos).
    #[serde(default)]
    pub owner: Option<String>,
    /// Granted permissions (`administration`, `organization_self_hosted_runners`,
    /// ... → `read`/`write`). Default: both of those `write`, `metadata` `read`.
    #[serde(default = "default_permissions")]
    pub permissions: BTreeMap<String, String>,
}

impl InstallationSpec {
    pub fn new(id: u64, owner: Option<&str>) -> Self {
        InstallationSpec {
            id,
            owner: owner.map(str::to_string),
            permissions: default_permissions(),
        }
    }
}

pub fn default_permissions() -> BTreeMap<String, String> {
    [
        ("administration", "write"),
        ("metadata", "read"),
        ("organization_self_hosted_runners", "write"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub(crate) struct App {
    pub client_id: Option<String>,
    pub key: DecodingKey,
    pub installations: HashMap<u64, InstallationSpec>,
}

#[derive(Clone, Debug)]
pub(crate) struct InstallationToken {
    pub installation_id: u64,
    pub owner: Option<String>,
    pub permissions: BTreeMap<String, String>,
    pub repositories: Option<Vec<String>>,
    pub expires: SystemTime,
}

/// Who made a request.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    Anonymous,
    Token {
        key: String,
        scopes: Vec<String>,
        rate_limit: Option<u32>,
    },
    AppJwt {
        app_id: u64,
    },
    Installation(InstallationToken),
}

impl Credential {
    /// The name of this credential in counters, logs and rate-limit budgets.
    pub fn key(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".into(),
            Credential::Token { key, .. } => key.clone(),
            Credential::AppJwt { app_id } => format!("app:{app_id}"),
            Credential::Installation(t) => format!("installation:{}", t.installation_id),
        }
    }
}

/// The key a classic token is counted under.
pub fn token_key(spec: &TokenSpec) -> String {
    match &spec.name {
        Some(n) => format!("token:{n}"),
        None => format!("token:{}", util::fingerprint(&spec.token)),
    }
}

pub(crate) struct TokenEntry {
    pub key: String,
    pub scopes: Vec<String>,
    pub rate_limit: Option<u32>,
}

#[derive(Default)]
pub(crate) struct Auth {
    pub tokens: HashMap<String, TokenEntry>,
    pub apps: HashMap<u64, App>,
    pub installation_tokens: HashMap<String, InstallationToken>,
}

/// Public key of an app from a public or private PEM.
pub(crate) fn decoding_key(pem: &str) -> Result<DecodingKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    if pem.contains("PRIVATE KEY") {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
            .map_err(|e| format!("cannot read the app's private key: {e}"))?;
        Ok(DecodingKey::from_rsa_raw_components(
            &key.n().to_bytes_be(),
            &key.e().to_bytes_be(),
        ))
    } else {
        DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| format!("cannot read the app's public key: {e}"))
    }
}

const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";

impl Auth {
    pub fn add_token(&mut self, spec: &TokenSpec) {
        self.tokens.insert(
            spec.token.clone(),
            TokenEntry {
                key: token_key(spec),
                scopes: spec.scopes.clone(),
                rate_limit: spec.rate_limit,
            },
        );
    }

    pub fn add_app(&mut self, spec: &AppSpec) -> Result<(), String> {
        let key = decoding_key(&spec.key_pem)?;
        self.apps.insert(
            spec.app_id,
            App {
                client_id: spec.client_id.clone(),
                key,
                installations: spec
                    .installations
                    .iter()
                    .map(|i| (i.id, i.clone()))
                    .collect(),
            },
        );
        Ok(())
    }

    /// Identifies the caller from the `Authorization` header.
    pub fn identify(&self, header: Option<&str>, now: SystemTime) -> Result<Credential, ApiError> {
        let Some(h) = header else {
            return Ok(Credential::Anonymous);
        };
        let (scheme, secret) = h.trim().split_once(' ').unwrap_or(("", h));
        let mut secret = secret.trim();
        // Basic authentication with the token as the password, as GitHub
        // takes it (actions-runner-controller asks for registration tokens so).
        let basic = scheme
            .eq_ignore_ascii_case("basic")
            .then(|| {
                base64::engine::general_purpose::STANDARD
                    .decode(secret)
                    .ok()
            })
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some(pair) = &basic {
            secret = pair.split_once(':').map_or("", |(_, password)| password);
        }
        let known_scheme = basic.is_some()
            || scheme.eq_ignore_ascii_case("bearer")
            || scheme.eq_ignore_ascii_case("token");
        if !known_scheme || secret.is_empty() {
            return Err(ApiError::new(401, "Bad credentials"));
        }
        if let Some(t) = self.tokens.get(secret) {
            return Ok(Credential::Token {
                key: t.key.clone(),
                scopes: t.scopes.clone(),
                rate_limit: t.rate_limit,
            });
        }
        if let Some(t) = self.installation_tokens.get(secret) {
            if t.expires <= now {
                return Err(ApiError::new(401, "Bad credentials"));
            }
            return Ok(Credential::Installation(t.clone()));
        }
        if secret.split('.').count() == 3 {
            return self.verify_jwt(secret, now);
        }
        Err(ApiError::new(401, "Bad credentials"))
    }

    fn verify_jwt(&self, jwt: &str, now: SystemTime) -> Result<Credential, ApiError> {
        let undecodable = || ApiError::new(401, JWT_UNDECODABLE);
        let mut parts = jwt.split('.');
        let header: Value = parts
            .next()
            .and_then(|p| B64URL.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(undecodable)?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(undecodable());
        }
        let claims: Value = parts
            .next()
            .and_then(|p| B64URL.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(undecodable)?;
        let iss = match claims.get("iss") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(ApiError::new(
                    401,
                    "'Issuer' claim ('iss') must be an Integer or the app's client ID",
                ));
            }
        };
        let (app_id, app) = self
            .apps
            .iter()
            .find(|(id, app)| id.to_string() == iss || app.client_id.as_deref() == Some(&iss))
            .ok_or_else(|| ApiError::new(401, "Integration not found"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(jwt, &app.key, &validation).map_err(|_| undecodable())?;
        let now = util::unix_secs(now) as i64;
        let iat = claims.get("iat").and_then(Value::as_i64).ok_or_else(|| {
            ApiError::new(
                401,
                "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.",
            )
        })?;
        if iat > now {
            return Err(ApiError::new(
                401,
                "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
            ));
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= now {
            return Err(ApiError::new(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.",
            ));
        }
        if exp > now + 600 {
            return Err(ApiError::new(
                401,
                "'Expiration time' claim ('exp') is too far in the future.",
            ));
        }
        Ok(Credential::AppJwt { app_id: *app_id })
    }

    /// `POST /app/installations/{id}/access_tokens`.
    pub fn create_installation_token(
        &mut self,
        app_id: u64,
        installation_id: u64,
        body: &serde_json::Map<String, Value>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(String, InstallationToken), ApiError> {
        let app = self.apps.get(&app_id).ok_or_else(ApiError::not_found)?;
        let inst = app
            .installations
            .get(&installation_id)
            .ok_or_else(ApiError::not_found)?;
        let mut permissions = inst.permissions.clone();
        match body.get("permissions") {
            None => {}
            Some(Value::Object(req)) => {
                let mut narrowed = BTreeMap::new();
                for (k, v) in req {
                    let Some(level) = v.as_str() else {
                        return Err(ApiError::validation(format!(
                            "Invalid request.\n\nFor 'properties/permissions/{k}', {v} is not a string."
                        )));
                    };
                    let granted = inst.permissions.get(k).map(String::as_str);
                    let ok = matches!(
                        (granted, level),
                        (Some("write"), "read" | "write") | (Some("read"), "read")
                    );
                    if !ok {
                        return Err(ApiError::validation(
                            "The permissions requested are not granted to this installation."
                                .into(),
                        ));
                    }
                    narrowed.insert(k.clone(), level.to_string());
                }
                permissions = narrowed;
            }
            Some(v) => {
                return Err(ApiError::validation(format!(
                    "Invalid request.\n\nFor 'properties/permissions', {v} is not an object."
                )));
            }
        }
        let repositories = crate::body::opt_str_array(body, "repositories")
            .map_err(|e| ApiError::validation(e.message))?;
        if crate::body::opt_u64_array(body, "repository_ids")
            .map_err(|e| ApiError::validation(e.message))?
            .is_some_and(|ids| !ids.is_empty())
        {
            return Err(ApiError::validation(
                "The fake does not support narrowing a token by repository_ids; use repositories."
                    .into(),
            ));
        }
        let token = format!("ghs_{}", util::random_string(36, util::ALNUM));
        let t = InstallationToken {
            installation_id,
            owner: inst.owner.clone(),
            permissions,
            repositories: repositories.filter(|r| !r.is_empty()),
            expires: now + ttl,
        };
        self.installation_tokens.insert(token.clone(), t.clone());
        // Forget long-expired tokens so the map does not grow forever.
        if self.installation_tokens.len() > 10_000 {
            self.installation_tokens.retain(|_, t| t.expires > now);
        }
        Ok((token, t))
    }
}

/// Whether the OAuth scopes include `needed` (with GitHub's scope hierarchy).
pub(crate) fn has_scope(scopes: &[String], needed: &str) -> bool {
    scopes.iter().any(|s| {
        s == needed
            || (needed == "manage_runners:enterprise" && s == "admin:enterprise")
            || (needed == "repo" && s == "repo")
    })
}
